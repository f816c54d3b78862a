package cuda_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
	"github.com/gptqtool/gptqtool/runtime/cuda"
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

// TestGEMMTuning checks the products of 5 to 64 rows of 16-bit x and w
// into fp32 (the head's logits in a decode step of more rows than
// gemv.cu takes) under each way of picking their algorithm: cuBLASLt's
// fastest candidate, the fastest by timing, cublasGemmEx's own; against
// float64 products of the same values. It logs the plans' times at the
// head's shape (32,002 outputs of 4,096 inputs).
func TestGEMMTuning(t *testing.T) {
	b := gputest.Backend(t)
	defer b.SetGEMMTuning(b.GEMMTuning())
	r := rand.New(rand.NewPCG(73, 74))
	rand32 := normals(r)
	for _, s := range []struct{ N, K int }{{1000, 520}, {32002, 4096}} {
		for _, dt := range []runtime.DType{runtime.F16, runtime.BF16} {
			w, wr := upload(t, b, dt, rand32(s.N*s.K, 0.05), s.N, s.K)
			defer b.Free(w)
			for _, M := range []int{5, 8, 17, 32, 64} {
				x, xr := upload(t, b, dt, rand32(M*s.K, 1), M, s.K)
				defer b.Free(x)
				want := backendtest.RefMatMul(xr, wr, M, s.N, s.K)
				for _, mode := range []int{cuda.GEMMLt, cuda.GEMMTimed, cuda.GEMMDefault} {
					t.Run(fmt.Sprintf("N%d-K%d-%v-M%d-mode%d", s.N, s.K, dt, M, mode), func(t *testing.T) {
						b.SetGEMMTuning(mode)
						y, _ := upload(t, b, runtime.F32, make([]float32, M*s.N), M, s.N)
						defer b.Free(y)
						for range 2 { // planned, then planned already
							b.MatMul(y, x, w)
							if nmse := backendtest.NMSE(download(t, b, y), want); !(nmse < 1e-9) {
								t.Errorf("nmse %.3g", nmse)
							}
						}
						plans := b.GEMMPlans()
						if mode == cuda.GEMMDefault && len(plans) != 0 || mode != cuda.GEMMDefault && len(plans) != 1 {
							t.Fatalf("plans %+v", plans)
						}
						if mode == cuda.GEMMLt && !plans[0].Lt {
							t.Errorf("plan %+v does not run cuBLASLt", plans[0])
						}
						if mode == cuda.GEMMTimed && s.N == 32002 && dt == runtime.F16 {
							t.Logf("head at %d rows: cublasGemmEx %.1f µs, the plan %.1f µs (cuBLASLt %v)", M, plans[0].GemmExUS, plans[0].BestUS, plans[0].Lt)
						}
					})
				}
			}
		}
	}
}
