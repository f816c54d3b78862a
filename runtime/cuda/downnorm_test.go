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
// h·wᵀ, then the RMSNorm of x, with SetDownNorm 1 (a product on the plain
// wide kernels leaves its splits in parts, qgemv.cu QF_PARTS, and the norm
// adds them up in one block a row, norm.cu rmsnorm_parts_v8), 2 (in a
// cluster of 8, rmsnorm_parts_cl_v8) and 0 (the product's last block adds
// them up, then rmsnorm_v8): the same bits in x, and in the norm with 1
// (with 2 within an nmse of 1e-6), with and without output slots, 4 and 8
// bits, fp16 and bf16, the 7B down product. One row, and two rows on the
// plain kernels (their parts strided by the rows): each parts kernel
// launched once in its mode and never with the switch off; two rows where
// the plain kernels take only one (the default): the op falls back to the
// product and the norm, no parts kernel. x is also checked against
// float64, so that the paths cannot agree on a wrong sum, and before each
// run the parts' scratch holds another product's sums (of -h), so that a
// product that left no parts of its own cannot pass on what an earlier run
// left. The plain kernels add up through global memory, and clusters are
// on (mode 2's norm).
func TestDownNormParts(t *testing.T) {
	b := gputest.Backend(t)
	defer b.SetDownNorm(b.DownNorm())
	defer b.SetQMMAPlain(b.QMMAPlain())
	defer b.SetPlainClusters(b.PlainClusters())
	defer b.SetClusters(b.Clusters())
	b.SetPlainClusters(false)
	b.SetClusters(true) // (the cluster norm of mode 2)
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
			// rows, and the most rows of the plain kernels: two rows with
			// them too (the parts of 2 rows), and without (no parts).
			for _, c := range []struct{ rows, most int }{{1, 1}, {2, 2}, {2, 1}} {
				rows := c.rows
				for _, slotted := range []bool{false, true} {
					t.Run(fmt.Sprintf("%dbit-%v-rows%d-plain%d-slots=%v", bits, dt, rows, c.most, slotted), func(t *testing.T) {
						b.SetQMMAPlain(1, c.most)
						h0, x0, w0 := normals(r)(rows*K, inputScale(K, bits)), normals(r)(rows*N, 1), normals(r)(N, 0.5)
						slots, _ := normSlots(t, b, r, N, slotted)
						// (upload frees its tensors as the subtest ends.)
						ht, hr := upload(t, b, dt, h0, rows, K)
						nw, _ := upload(t, b, dt, w0, 1, N)
						var xRounded []float32
						sfx := map[runtime.DType]string{runtime.F16: "f16", runtime.BF16: "bf16"}[dt]
						names := []string{"rmsnorm_parts_v8_" + sfx, "rmsnorm_parts_cl_v8_" + sfx}
						// run: x and the norm with SetDownNorm(mode), and how
						// many times each parts kernel ran.
						run := func(mode int) (x, norm []float32, launches [2]int) {
							// Another product of the same shape (-h) first: its
							// sums are what the parts' scratch then holds.
							neg := make([]float32, len(h0))
							for i, v := range h0 {
								neg[i] = -v
							}
							hn, _ := upload(t, b, dt, neg, rows, K)
							scrap, _ := upload(t, b, dt, make([]float32, rows*N), rows, N)
							b.MatMulAdd(scrap, hn, w, scrap)
							b.SetDownNorm(mode)
							xt, xr := upload(t, b, dt, x0, rows, N)
							out, _ := upload(t, b, dt, make([]float32, rows*N), rows, N)
							xRounded = xr
							var n0 [2]int
							for k, n := range names {
								n0[k] = b.Launches("norm.cu", n)
							}
							b.MatMulAddNormTo(xt, ht, w, out, nw, slots, eps)
							x, norm = download(t, b, xt), download(t, b, out)
							for k, n := range names {
								launches[k] = b.Launches("norm.cu", n) - n0[k]
							}
							return x, norm, launches
						}
						xOff, nOff, lOff := run(0)
						for mode := 1; mode <= 2; mode++ {
							xOn, nOn, l := run(mode)
							sameBits(t, fmt.Sprintf("mode %d: x", mode), xOn, xOff)
							if mode == 1 {
								sameBits(t, "mode 1: the norm", nOn, nOff)
							} else {
								// (The cluster's blocks add the squares up in
								// another order: the last place may differ.)
								n64 := make([]float64, len(nOff))
								for i, v := range nOff {
									n64[i] = float64(v)
								}
								if nmse := backendtest.NMSE(nOn, n64); !(nmse < 1e-6) {
									t.Errorf("mode 2: the norm's nmse %.3g against the norm kernel's, want < 1e-6", nmse)
								}
							}
							want := [2]int{}
							if rows <= c.most {
								want[mode-1] = 1
							}
							if lOff != [2]int{} || l != want {
								t.Errorf("mode %d: %v ran %v times, %v with the switch off; want %v and none", mode, names, l, lOff, want)
							}
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
						if nmse := backendtest.NMSE(xOff, want); !(nmse < tol) {
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
