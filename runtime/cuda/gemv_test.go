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
// bf16 x and w into fp32 (SetGEMV, the head's logits) against float64
// products of the same values, with cuBLAS's for scale: a last block of
// columns part full (1,000 outputs, 16 a block) and K = 520 (65 pieces of
// 8, not a multiple of the 32 lanes).
func TestGEMVRows(t *testing.T) {
	b := gputest.Backend(t)
	defer b.SetGEMV(b.GEMV())
	r := rand.New(rand.NewPCG(71, 72))
	rand32 := normals(r)
	for _, K := range []int{4096, 520} {
		const N = 1000
		for _, dt := range []runtime.DType{runtime.F16, runtime.BF16} {
			w, wr := upload(t, b, dt, rand32(N*K, 0.05), N, K)
			defer b.Free(w)
			for M := 1; M <= 4; M++ {
				x, xr := upload(t, b, dt, rand32(M*K, 1), M, K)
				defer b.Free(x)
				want := backendtest.RefMatMul(xr, wr, M, N, K)
				for _, on := range []bool{true, false} {
					t.Run(fmt.Sprintf("K%d-%v-M%d-gemv=%v", K, dt, M, on), func(t *testing.T) {
						b.SetGEMV(on)
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
