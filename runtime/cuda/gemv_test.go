package cuda_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
)

// TestGEMVRows checks gemv.cu's products of one to four rows of fp16 and
// bf16 x and w into fp32 (SetGEMV, the head's logits), and head.cu's of 5
// to 64 rows (sm_90, inputs a multiple of 64), against float64 products of
// the same values, with cuBLAS's for scale: a last block of columns part
// full (1,000 outputs: 16 a gemv.cu block, 128 a head.cu block), K = 520
// (65 pieces of 8, not a multiple of the 32 lanes, nor of head.cu's 64: it
// goes to cuBLAS) and K = 192 (three of head.cu's stages, fewer than its
// ring holds); each count of x's tiles (8, 16, 32, 64 rows) full and part
// full.
func TestGEMVRows(t *testing.T) {
	b := gputest.Backend(t)
	defer b.SetGEMV(b.GEMV())
	r := rand.New(rand.NewPCG(71, 72))
	rand32 := normals(r)
	for _, K := range []int{4096, 520, 192} {
		const N = 1000
		for _, dt := range []runtime.DType{runtime.F16, runtime.BF16} {
			w, wr := upload(t, b, dt, rand32(N*K, 0.05), N, K)
			defer b.Free(w)
			for _, M := range []int{1, 2, 3, 4, 5, 8, 9, 16, 17, 31, 32, 33, 64} {
				x, xr := upload(t, b, dt, rand32(M*K, 1), M, K)
				defer b.Free(x)
				want := backendtest.RefMatMul(xr, wr, M, N, K)
				for _, on := range []bool{true, false} {
					t.Run(fmt.Sprintf("K%d-%v-M%d-gemv=%v", K, dt, M, on), func(t *testing.T) {
						b.SetGEMV(on)
						// head.cu takes what it should on sm_90 (and only that).
						head := b.HeadKernel(M, K, dt)
						if wantHead := on && b.WarpgroupMMA() && M > 4 && K%64 == 0; (head != "") != wantHead {
							t.Errorf("head.cu kernel %q, want one: %v", head, wantHead)
						}
						y, _ := upload(t, b, runtime.F32, make([]float32, M*N), M, N)
						defer b.Free(y)
						b.MatMul(y, x, w)
						if nmse := backendtest.NMSE(download(t, b, y), want); !(nmse < 1e-9) {
							t.Errorf("nmse %.3g", nmse)
						}
					})
				}
			}
		}
	}
}
