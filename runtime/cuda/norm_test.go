package cuda_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cuda"
)

// TestNormRows checks the 16-bit norm kernels against float64 norms of the
// same rounded inputs, with and without output slots: rows of 4,096, 5,000
// (a thread's last item only in some threads) and 8,192 elements (held in
// registers, their weights and slots loaded before the wait) and of 8,200
// (past the 8,192 a block holds: the loops of rms_row_v8), RMSNorm (also
// in place, without slots) and the residual add + RMSNorm (whose x must
// come back as the rounded sum).
func TestNormRows(t *testing.T) {
	b := gputest.Backend(t)
	r := rand.New(rand.NewPCG(91, 92))
	rand32 := normals(r)
	const rows, eps = 3, 1e-5
	for _, h := range []int{4096, 5000, 8192, 8200} {
		for _, dt := range []runtime.DType{runtime.F16, runtime.BF16} {
			for _, slotted := range []bool{false, true} {
				t.Run(fmt.Sprintf("h%d-%v-slots=%v", h, dt, slotted), func(t *testing.T) {
					x0, d0, w0 := rand32(rows*h, 1), rand32(rows*h, 1), rand32(h, 0.5)
					slots, perm := normSlots(t, b, r, h, slotted)
					x, xr := upload(t, b, dt, x0, rows, h)
					d, dr := upload(t, b, dt, d0, rows, h)
					w, wr := upload(t, b, dt, w0, 1, h)
					out, _ := upload(t, b, dt, make([]float32, rows*h), rows, h)
					defer b.Free(x)
					defer b.Free(d)
					defer b.Free(w)
					defer b.Free(out)
					// round: v as the kernel's dtype holds it.
					round := func(v float32) float32 {
						if dt == runtime.F16 {
							return half.F16ToF32(half.F32ToF16(v))
						}
						return half.BF16ToF32(half.F32ToBF16(v))
					}
					// want: the norm of rows v (rounded inputs), in slot order.
					want := func(v []float64) []float64 {
						o := make([]float64, len(v))
						for m := range rows {
							ss := 0.0
							for i := range h {
								ss += v[m*h+i] * v[m*h+i]
							}
							inv := 1 / math.Sqrt(ss/float64(h)+eps)
							for i := range h {
								o[m*h+int(perm[i])] = float64(wr[i]) * v[m*h+i] * inv
							}
						}
						return o
					}
					tol := map[runtime.DType]float64{runtime.F16: 2e-3, runtime.BF16: 1.6e-2}[dt]
					check := func(what string, got []float32, want []float64) {
						t.Helper()
						for i, g := range got {
							if e := math.Abs(float64(g) - want[i]); e > tol*(1+math.Abs(want[i])) {
								t.Fatalf("%s: element %d = %g, want %g", what, i, g, want[i])
							}
						}
					}
					xv := make([]float64, rows*h)
					for i, v := range xr {
						xv[i] = float64(v)
					}
					b.RMSNormTo(out, x, w, slots, eps)
					check("rmsnorm", download(t, b, out), want(xv))
					if !slotted {
						in, _ := upload(t, b, dt, x0, rows, h)
						defer b.Free(in)
						b.RMSNormTo(in, in, w, nil, eps)
						check("rmsnorm in place", download(t, b, in), want(xv))
					}
					b.AddRMSNormTo(out, x, d, w, slots, eps)
					// x comes back as the sum rounded (fp32 sum of the two
					// rounded inputs, then rounded to dt).
					gx := download(t, b, x)
					sx := make([]float64, rows*h)
					for i, v := range gx {
						if s := round(xr[i] + dr[i]); v != s {
							t.Fatalf("add: x[%d] = %g, want the rounded sum %g", i, v, s)
						}
						sx[i] = float64(v)
					}
					check("add_rmsnorm", download(t, b, out), want(sx))
				})
			}
		}
	}
}

// normSlots returns a norm's output slots for rows of h elements: a random
// permutation on the device where slotted (freed as the test ends), else
// none; and the permutation (the identity without slots).
func normSlots(t *testing.T, b *cuda.Backend, r *rand.Rand, h int, slotted bool) (runtime.Tensor, []int32) {
	perm := make([]int32, h)
	for i := range perm {
		perm[i] = int32(i)
	}
	if !slotted {
		return nil, perm
	}
	for i, p := range r.Perm(h) {
		perm[i] = int32(p)
	}
	slots := i32Tensor(t, b, perm)
	t.Cleanup(func() { b.Free(slots) })
	return slots, perm
}
