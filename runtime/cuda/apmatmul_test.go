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

// TestPagedAttentionMatMul checks runtime.AttentionProjector (and
// runtime.ResidualAttentionProjector, the same adding into a residual) on
// the device:
// attention left in per-split parts and combined by the product's kernel
// (qgemv.cu's _a) against attention combined by itself, written in the
// weight's input order, and multiplied by InOrder(w)
// (SetAttentionDefer(false)), for 1, 2 and 4 rows at positions whose
// rows take 1, 2, 8 and more than 8 splits (past apSplits, combined by
// attention itself; one row of 1,501 positions takes 8 longer splits
// instead, common.cuh pa_splits), 7B heads, 4 and 8 bits with and without
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
	const hq, hkv, hd, bs, width, N = 32, 8, 128, 16, 288, 384
	const K = hq * hd
	// At the default fewest positions a split (defaultAttnSplit, 48): 383
	// takes 8 splits, 0 one, 60 two; 1500 takes 12 of 128 positions (9 at 4
	// rows, as the grid allows), or 8 where attention leaves its parts (up
	// to apSplits·512 positions); 4500 takes more than 8 either way.
	for _, pos := range [][]int32{{383}, {1500}, {4500}, {383, 0}, {383, 0, 1500, 60}} {
		M := len(pos)
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
			t.Run(fmt.Sprintf("M%d-pos%d-%dbit-g%d-act%v-%v-window%d", M, pos[0], c.bits, c.gs, c.act, c.dt, c.window), func(t *testing.T) {
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
				res0 := rand32(M*N, 1)
				run := func(deferred, add bool) (y, att []float32) {
					b.SetAttentionDefer(deferred)
					q, _ := upload(t, b, c.dt, q0, M, hq*hd)
					k, _ := upload(t, b, c.dt, k0, M, hkv*hd)
					v, _ := upload(t, b, c.dt, v0, M, hkv*hd)
					kc, _ := upload(t, b, c.dt, cache, blocks*bs, hkv*hd)
					vc, _ := upload(t, b, c.dt, cache, blocks*bs, hkv*hd)
					at, _ := upload(t, b, c.dt, nan, M, K)
					o0 := make([]float32, M*N)
					if add {
						o0 = res0
					}
					out, _ := upload(t, b, c.dt, o0, M, N)
					for _, x := range []runtime.Tensor{q, k, v, kc, vc, at, out} {
						defer b.Free(x)
					}
					b.RoPEStore(q, k, v, kc, vc, pt, st, hd, plainRoPE(t, hd, 10000))
					if add {
						b.PagedAttentionMatMulAdd(out, at, q, kc, vc, tt, pt, bs, p, w)
					} else {
						b.PagedAttentionMatMul(out, at, q, kc, vc, tt, pt, bs, p, w)
					}
					return download(t, b, out), download(t, b, at)
				}
				want, _ := run(false, false)
				got, att := run(true, false)
				tol := map[runtime.DType]float64{runtime.F16: 1e-6, runtime.BF16: 1e-5, runtime.F32: 1e-6}[c.dt]
				if nmse := backendtest.NMSE(got, widen(want)); !(nmse < tol) {
					t.Errorf("parts combined by the product: nmse %.3g against attention's own combine, want < %.1g", nmse, tol)
				}
				// PagedAttentionMatMulAdd: both ways against each other and
				// against the residual plus the product above (rounded
				// twice there: within the same bound).
				wantAdd, _ := run(false, true)
				gotAdd, _ := run(true, true)
				if nmse := backendtest.NMSE(gotAdd, widen(wantAdd)); !(nmse < tol) {
					t.Errorf("added into the residual, parts combined by the product: nmse %.3g against attention's own combine, want < %.1g", nmse, tol)
				}
				_, resd := upload(t, b, c.dt, res0, M, N) // (as the device holds it)
				sum := make([]float64, len(want))
				for i, v := range want {
					sum[i] = float64(v) + float64(resd[i])
				}
				if nmse := backendtest.NMSE(wantAdd, sum); !(nmse < tol) {
					t.Errorf("added into the residual: nmse %.3g against the residual plus the product, want < %.1g", nmse, tol)
				}
				// Parts are left for one row (the backend's apRows) of 16-bit
				// activations and at most 8 splits (up to 4,096 positions;
				// every row within a window of 100: 3 splits at most), with
				// groups of whole chunks.
				whole := c.gs%map[int]int{4: 64, 8: 32}[c.bits] == 0 && M == 1 && c.dt != runtime.F32
				for m := range M {
					left := whole && (pos[m] < 4096 || c.window > 0)
					if isNaN := math.IsNaN(float64(att[m*K])); isNaN != left {
						t.Errorf("row %d (position %d): attention's output unwritten %v, want %v", m, pos[m], isNaN, left)
					}
				}
			})
		}
		b.Free(pt)
		b.Free(st)
		b.Free(tt)
	}
}

// TestResidualProjects checks runtime.ResidualProjector's rule on the
// device's backend: o_proj added into the stream for steps of 2 to
// SetResidualProjection's rows (by default 8), never at one row (whose
// product takes attention's parts), none with 0.
func TestResidualProjects(t *testing.T) {
	b := gputest.Backend(t)
	defer b.SetResidualProjection(b.ResidualProjection())
	for _, most := range []int{8, 4, 0} {
		b.SetResidualProjection(most)
		var got []int
		for rows := 1; rows <= 64; rows++ {
			if b.ResidualProjects(rows) {
				got = append(got, rows)
			}
		}
		if len(got) != max(0, most-1) || (len(got) > 0 && (got[0] != 2 || got[len(got)-1] != most)) {
			t.Errorf("SetResidualProjection(%d): steps of %v rows project into the stream, want 2 to %d", most, got, most)
		}
	}
}
