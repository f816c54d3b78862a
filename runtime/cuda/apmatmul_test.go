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

// TestPagedAttentionMatMul checks runtime.AttentionProjector on the device:
// attention left in per-split parts and combined by the product's kernel
// (qgemv.cu's _a) against attention combined by itself, written in the
// weight's input order, and multiplied by InOrder(w)
// (SetAttentionDefer(false)), for 1, 2 and 4 rows at positions whose
// rows take 1, 2, 8 and more than 8 splits (the last, past apSplits,
// combined by attention itself), 7B heads, 4 and 8 bits with and without
// act order, fp16 and bf16, and a window of 100 positions (every row then
// of few splits). The rows attention left in parts must be the ones it did
// not write (att filled with NaN first); more rows than one, fp32
// activations and a weight whose groups are not whole chunks must take the
// other way.
func TestPagedAttentionMatMul(t *testing.T) {
	b := gputest.Backend(t)
	defer b.SetAttentionDefer(true)
	r := rand.New(rand.NewPCG(91, 92))
	rand32 := normals(r)
	const hq, hkv, hd, bs, width, N = 32, 8, 128, 16, 128, 384
	const K = hq * hd
	allPos := []int32{255, 0, 1500, 37}
	splits := []int{8, 1, 9, 2} // (the third: 9 to 12, as the grid allows)
	for _, M := range []int{1, 2, 4} {
		pos := allPos[:M]
		blocks := M * width
		tables, slot := ownBlocks(r, pos, width, bs)
		pt, st, tt := i32Tensor(t, b, pos), i32Tensor(t, b, slot), i32Tensor(t, b, tables)
		cache := rand32(blocks*bs*hkv*hd, 1)
		q0, k0, v0 := rand32(M*hq*hd, 1), rand32(M*hkv*hd, 1), rand32(M*hkv*hd, 1)
		for _, c := range []struct {
			bits, gs int
			act      bool
			dt       runtime.DType
			window   int
		}{
			{4, 128, true, runtime.F16, 0}, {4, 128, false, runtime.F16, 0}, {8, 128, true, runtime.F16, 0},
			{4, 128, true, runtime.BF16, 0}, {8, 64, false, runtime.BF16, 0}, {4, 32, true, runtime.F16, 0},
			{4, 128, true, runtime.F16, 100}, {4, 128, true, runtime.F32, 0},
		} {
			t.Run(fmt.Sprintf("M%d-%dbit-g%d-act%v-%v-window%d", M, c.bits, c.gs, c.act, c.dt, c.window), func(t *testing.T) {
				w, err := b.LoadQuant(randomQuant(r, K, N, c.bits, c.gs, c.act))
				if err != nil {
					t.Fatal(err)
				}
				defer b.Free(w)
				p := runtime.AttentionParams{HeadDim: hd, Window: c.window, Scale: float32(1 / math.Sqrt(hd)), CacheSettled: true}
				nan := make([]float32, M*K)
				for i := range nan {
					nan[i] = float32(math.NaN())
				}
				run := func(deferred bool) (y, att []float32) {
					b.SetAttentionDefer(deferred)
					q, _ := upload(t, b, c.dt, q0, M, hq*hd)
					k, _ := upload(t, b, c.dt, k0, M, hkv*hd)
					v, _ := upload(t, b, c.dt, v0, M, hkv*hd)
					kc, _ := upload(t, b, c.dt, cache, blocks*bs, hkv*hd)
					vc, _ := upload(t, b, c.dt, cache, blocks*bs, hkv*hd)
					at, _ := upload(t, b, c.dt, nan, M, K)
					out, _ := upload(t, b, c.dt, make([]float32, M*N), M, N)
					for _, x := range []runtime.Tensor{q, k, v, kc, vc, at, out} {
						defer b.Free(x)
					}
					b.RoPEStore(q, k, v, kc, vc, pt, st, hd, 10000)
					b.PagedAttentionMatMul(out, at, q, kc, vc, tt, pt, bs, p, w)
					return download(t, b, out), download(t, b, at)
				}
				want, _ := run(false)
				got, att := run(true)
				w64 := make([]float64, len(want))
				for i, v := range want {
					w64[i] = float64(v)
				}
				tol := map[runtime.DType]float64{runtime.F16: 1e-6, runtime.BF16: 1e-5, runtime.F32: 1e-6}[c.dt]
				if nmse := backendtest.NMSE(got, w64); !(nmse < tol) {
					t.Errorf("parts combined by the product: nmse %.3g against attention's own combine, want < %.1g", nmse, tol)
				}
				// Parts are left for one row (the backend's apRows) of 16-bit
				// activations and at most 8 splits (every row within a
				// window of 100: 4 splits at most), with groups of whole
				// chunks.
				whole := c.gs%map[int]int{4: 64, 8: 32}[c.bits] == 0 && M == 1 && c.dt != runtime.F32
				for m := range M {
					left := whole && (splits[m] <= 8 || c.window > 0)
					if isNaN := math.IsNaN(float64(att[m*K])); isNaN != left {
						t.Errorf("row %d (%d splits): attention's output unwritten %v, want %v", m, splits[m], isNaN, left)
					}
				}
			})
		}
		b.Free(pt)
		b.Free(st)
		b.Free(tt)
	}
}

// TestPagedAttentionMatMulAdd checks runtime.ResidualAttentionProjector on
// the device: x + attention·wᵀ added by the product (qgemv.cu's _a kernel
// adding the residual before it rounds, at one row; attention combined
// by itself and MatMulAdd at two) against PagedAttentionMatMul's output
// added to x on the host (rounded twice: within the activations' rounding),
// 4 and 8 bits with act order, fp16 and bf16, 7B heads. The sum must
// differ from x (the product added), and at one row the _a kernel must be
// the product launched.
func TestPagedAttentionMatMulAdd(t *testing.T) {
	b := gputest.Backend(t)
	r := rand.New(rand.NewPCG(93, 94))
	rand32 := normals(r)
	const hq, hkv, hd, bs, width, N = 32, 8, 128, 16, 128, 4096
	const K = hq * hd
	for _, M := range []int{1, 2} {
		pos := []int32{255, 37}[:M]
		tables, slot := ownBlocks(r, pos, width, bs)
		pt, st, tt := i32Tensor(t, b, pos), i32Tensor(t, b, slot), i32Tensor(t, b, tables)
		cache := rand32(M*width*bs*hkv*hd, 1)
		q0, k0, v0, x0 := rand32(M*hq*hd, 1), rand32(M*hkv*hd, 1), rand32(M*hkv*hd, 1), rand32(M*N, 1)
		for _, bits := range []int{4, 8} {
			for _, dt := range []runtime.DType{runtime.F16, runtime.BF16} {
				t.Run(fmt.Sprintf("M%d-%dbit-%v", M, bits, dt), func(t *testing.T) {
					w, err := b.LoadQuant(randomQuant(r, K, N, bits, 128, true))
					if err != nil {
						t.Fatal(err)
					}
					defer b.Free(w)
					p := runtime.AttentionParams{HeadDim: hd, Scale: float32(1 / math.Sqrt(hd)), CacheSettled: true}
					// run: the product into out (add false: written; true:
					// added to x0 as uploaded), and x0 as the device holds it.
					run := func(add bool) (y, xr []float32) {
						q, _ := upload(t, b, dt, q0, M, hq*hd)
						k, _ := upload(t, b, dt, k0, M, hkv*hd)
						v, _ := upload(t, b, dt, v0, M, hkv*hd)
						kc, _ := upload(t, b, dt, cache, M*width*bs, hkv*hd)
						vc, _ := upload(t, b, dt, cache, M*width*bs, hkv*hd)
						at, _ := upload(t, b, dt, make([]float32, M*K), M, K)
						init := make([]float32, M*N)
						if add {
							init = x0
						}
						out, xr := upload(t, b, dt, init, M, N)
						b.RoPEStore(q, k, v, kc, vc, pt, st, hd, 10000)
						if add {
							b.PagedAttentionMatMulAdd(out, at, q, kc, vc, tt, pt, bs, p, w)
						} else {
							b.PagedAttentionMatMul(out, at, q, kc, vc, tt, pt, bs, p, w)
						}
						return download(t, b, out), xr
					}
					o, _ := run(false)
					name := fmt.Sprintf("qmma%d_t1_a_%s", bits, map[runtime.DType]string{runtime.F16: "f16", runtime.BF16: "bf16"}[dt])
					n0 := b.Launches("qgemv.cu", name)
					got, xr := run(true)
					if n, want := b.Launches("qgemv.cu", name)-n0, map[bool]int{true: 1, false: 0}[M == 1]; n != want {
						t.Errorf("%s launched %d times, want %d", name, n, want)
					}
					want, x64 := make([]float64, len(o)), make([]float64, len(o))
					for i := range o {
						want[i], x64[i] = float64(xr[i])+float64(o[i]), float64(xr[i])
					}
					tol := map[runtime.DType]float64{runtime.F16: 1e-6, runtime.BF16: 1e-4}[dt]
					if nmse := backendtest.NMSE(got, want); !(nmse < tol) {
						t.Errorf("x + the product: nmse %.3g against x plus PagedAttentionMatMul's output, want < %.0g", nmse, tol)
					}
					if nmse := backendtest.NMSE(got, x64); !(nmse > 1e-2) {
						t.Errorf("x + the product: nmse %.3g against x alone: the product was not added", nmse)
					}
				})
			}
		}
		b.Free(pt)
		b.Free(st)
		b.Free(tt)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
}
