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

// TestQmmaPush checks the clustered products whose splits add up their
// sums by pushing them into the shared memory of the block that owns them
// (qgemv.cu QF_PUSH; by default at up to 4 rows) against the same products
// reading each other's sums: the same bits, since each output adds the same
// sums in the same rank order. A plain product with a residual, a split
// fusion of three outputs and a GLU product on the 8-warp kernels, 4 and 8
// bits, with and without act order, at 1, 3 and 8 rows (clusters of 6, 7
// and 8 blocks among them; the plain wide kernels, which take one row's
// plain products by default, off); the plain ones also against float64.
func TestQmmaPush(t *testing.T) {
	b := gputest.Backend(t)
	if !b.Clusters() {
		t.Skip("no thread-block clusters on this device")
	}
	defer b.SetQMMAPush(b.QMMAPush())
	defer b.SetQMMAWide(b.QMMAWide())
	defer b.SetQMMAPlain(b.QMMAPlain())
	b.SetQMMAWide(0)
	b.SetQMMAPlain(0, 1)
	r := rand.New(rand.NewPCG(25, 26))
	// both runs f with the pushed (at any rows up to a tile) and then the
	// read reduction.
	both := func(f func(pushed bool)) {
		for _, p := range []bool{true, false} {
			b.SetQMMAPush(0)
			if p {
				b.SetQMMAPush(8)
			}
			f(p)
		}
	}
	zeros := func(M, N int) runtime.Tensor {
		z, _ := upload(t, b, runtime.F16, make([]float32, M*N), M, N)
		return z
	}
	for _, c := range []struct{ K, N, bits int }{{4096, 4096, 4}, {4096, 4096, 8}, {1024, 384, 4}} {
		for _, perm := range []bool{false, true} {
			for _, M := range []int{1, 3, 8} {
				t.Run(fmt.Sprintf("K%d-N%d-%dbit-M%d-perm=%v", c.K, c.N, c.bits, M, perm), func(t *testing.T) {
					x, xr := upload(t, b, runtime.F16, normals(r)(M*c.K, 8/math.Sqrt(float64(c.K))), M, c.K)
					// A plain product with a residual.
					q := randomQuant(r, c.K, c.N, c.bits, 128, perm)
					w, err := b.LoadQuant(q)
					if err != nil {
						t.Fatal(err)
					}
					defer b.Free(w)
					add, ar := upload(t, b, runtime.F16, normals(r)(M*c.N, 1), M, c.N)
					want := backendtest.RefMatMul(xr, q.Dequantize(), M, c.N, c.K)
					for i := range want {
						want[i] += float64(ar[i])
					}
					op, or := zeros(M, c.N), zeros(M, c.N)
					both(func(pushed bool) {
						o := or
						if pushed {
							o = op
						}
						b.MatMulAdd(o, x, w, add)
					})
					got := download(t, b, op)
					if nmse := backendtest.NMSE(got, want); !(nmse < 1e-5) {
						t.Errorf("plain, pushed: nmse %.3g against float64", nmse)
					}
					sameBits(t, "plain", got, download(t, b, or))
					// A split fusion of three outputs (half, a quarter and a
					// quarter of N, as q/k/v's) and a GLU product of N/2
					// outputs.
					n1, n2 := c.N/2, c.N/4
					qs := []*runtime.QuantWeight{randomQuant(r, c.K, n1, c.bits, 128, perm), randomQuant(r, c.K, n2, c.bits, 128, false), randomQuant(r, c.K, n2, c.bits, 128, false)}
					qs[1].Perm, qs[2].Perm = qs[0].Perm, qs[0].Perm
					split, err := b.LoadQuantSplit(qs)
					if err != nil {
						t.Fatal(err)
					}
					defer b.Free(split)
					sp := []runtime.Tensor{zeros(M, n1), zeros(M, n2), zeros(M, n2)}
					sr := []runtime.Tensor{zeros(M, n1), zeros(M, n2), zeros(M, n2)}
					gate, up := randomQuant(r, c.K, n1, c.bits, 128, perm), randomQuant(r, c.K, n1, c.bits, 128, false)
					up.Perm = gate.Perm
					glu, err := b.LoadQuantGLU(gate, up)
					if err != nil {
						t.Fatal(err)
					}
					defer b.Free(glu)
					gp, gr := zeros(M, n1), zeros(M, n1)
					both(func(pushed bool) {
						s, g := sr, gr
						if pushed {
							s, g = sp, gp
						}
						b.MatMulSplit(s, x, split)
						b.MatMulGLU(g, x, glu)
					})
					for i := range sp {
						sameBits(t, fmt.Sprintf("split output %d", i), download(t, b, sp[i]), download(t, b, sr[i]))
					}
					sameBits(t, "glu", download(t, b, gp), download(t, b, gr))
				})
			}
		}
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
}
