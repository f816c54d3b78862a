package cuda_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
)

// TestDownNormParts checks MatMulAddNormTo (runtime.ResidualNormer): x +=
// h·wᵀ, then the RMSNorm of x, with SetDownNorm on (a product on the plain
// wide kernels leaves its splits in parts, qgemv.cu QF_PARTS, and the norm
// adds them up, norm.cu rmsnorm_parts_v8) and off (the product's last
// block adds them up, then rmsnorm_v8): the same bits in x and in the
// norm, with and without output slots, 4 and 8 bits, fp16 and bf16, the 7B
// down product at one row; the parts kernel launched once with it on and
// never without, nor for two rows (which the plain kernels do not take by
// default: the op falls back to the product and the norm). x is also
// checked against float64, so that both paths cannot agree on a wrong sum,
// and the parts' scratch holds another product's sums (of -h) before the
// run with the switch on, so that a product that left no parts of its own
// cannot pass on what an earlier run left. The plain kernels are pinned
// to their default rows, adding up through global memory.
func TestDownNormParts(t *testing.T) {
	b := gputest.Backend(t)
	defer b.SetDownNorm(b.DownNorm())
	defer b.SetQMMAPlain(b.QMMAPlain())
	defer b.SetPlainClusters(b.PlainClusters())
	b.SetQMMAPlain(1, 1)
	b.SetPlainClusters(false)
	r := rand.New(rand.NewPCG(27, 28))
	const K, N, eps = 14336, 4096, 1e-5
	for _, bits := range []int{4, 8} {
		dq := randomQuant(r, K, N, bits, 128, true)
		w, err := b.LoadQuant(dq)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Free(w)
		deq := dq.Dequantize()
		for _, dt := range []runtime.DType{runtime.F16, runtime.BF16} {
			for _, rows := range []int{1, 2} {
				for _, slotted := range []bool{false, true} {
					t.Run(fmt.Sprintf("%dbit-%v-rows%d-slots=%v", bits, dt, rows, slotted), func(t *testing.T) {
						// h scaled so that x stays well within fp16 (8-bit
						// codes less their zeros are about 16 times 4-bit ones).
						hs := 512 / float64(K)
						if bits == 8 {
							hs /= 16
						}
						h0, x0, w0 := normals(r)(rows*K, hs), normals(r)(rows*N, 1), normals(r)(N, 0.5)
						slots, _ := normSlots(t, b, r, N, slotted)
						// (upload frees its tensors as the subtest ends.)
						ht, hr := upload(t, b, dt, h0, rows, K)
						nw, _ := upload(t, b, dt, w0, 1, N)
						var xRounded []float32
						name := "rmsnorm_parts_v8_" + map[runtime.DType]string{runtime.F16: "f16", runtime.BF16: "bf16"}[dt]
						// run: x and the norm with SetDownNorm(on), and how
						// many times the parts kernel ran.
						run := func(on bool) (x, norm []float32, launches int) {
							b.SetDownNorm(on)
							xt, xr := upload(t, b, dt, x0, rows, N)
							out, _ := upload(t, b, dt, make([]float32, rows*N), rows, N)
							xRounded = xr
							n0 := b.Launches("norm.cu", name)
							b.MatMulAddNormTo(xt, ht, w, out, nw, slots, eps)
							x, norm = download(t, b, xt), download(t, b, out)
							return x, norm, b.Launches("norm.cu", name) - n0
						}
						// Another product of the same shape (-h) first: its sums
						// are what the parts' scratch then holds.
						neg := make([]float32, len(h0))
						for i, v := range h0 {
							neg[i] = -v
						}
						hn, _ := upload(t, b, dt, neg, rows, K)
						scrap, _ := upload(t, b, dt, make([]float32, rows*N), rows, N)
						b.MatMulAdd(scrap, hn, w, scrap)
						xOn, nOn, lOn := run(true)
						xOff, nOff, lOff := run(false)
						sameBits(t, "x", xOn, xOff)
						sameBits(t, "the norm", nOn, nOff)
						wantOn := 0
						if rows == 1 {
							wantOn = 1
						}
						if lOff != 0 || lOn != wantOn {
							t.Errorf("%s ran %d times off and %d on, want 0 and %d", name, lOff, lOn, wantOn)
						}
						// x against float64: the rounded x0 plus the product
						// of the rounded h.
						want := backendtest.RefMatMul(hr, deq, rows, N, K)
						for i := range want {
							want[i] += float64(xRounded[i])
							if !(math.Abs(want[i]) < 65504) {
								t.Fatalf("the test's data: x %d is %g in float64, beyond fp16", i, want[i])
							}
						}
						tol := map[runtime.DType]float64{runtime.F16: 1e-5, runtime.BF16: 1e-4}[dt]
						if nmse := backendtest.NMSE(xOn, want); !(nmse < tol) {
							t.Errorf("x: nmse %.3g against float64, want < %.0g", nmse, tol)
						}
					})
				}
			}
		}
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
}
