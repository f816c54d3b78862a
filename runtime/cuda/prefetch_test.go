package cuda_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
	"github.com/gptqtool/gptqtool/runtime/cuda"
)

// TestAttentionPrefetch checks paged attention that loads a settled cache's
// rows before waiting for the kernel ahead (SetAttentionPrefetch) against
// the same attention loading them after, bit for bit, right after
// RoPEStore wrote each row's own position (which must be read after the
// wait): rows at positions 0 (its own only), 37, 255 and 1,000 in blocks
// of their own, 7B heads (32 query, 8 kv, 128 wide), fp16 and bf16, with
// and without a window. The tensor-core kernel (SetAttentionTC), which
// reads everything after the wait, must match them within its rounding of
// the probabilities to the cache's dtype, with 2, 3 and 4 tiles in flight a
// warp.
func TestAttentionPrefetch(t *testing.T) {
	b := gputest.Backend(t)
	defer b.SetAttentionPrefetch(b.AttentionPrefetch())
	defer b.SetAttentionTC(b.AttentionTC())
	defer b.SetAttentionTCStages(b.AttentionTCStages())
	r := rand.New(rand.NewPCG(81, 82))
	rand32 := normals(r)
	const hq, hkv, hd, bs, width = 32, 8, 128, 16, 64
	pos := []int32{255, 37, 1000, 0}
	rows := len(pos)
	blocks := rows * width
	tables, slot := ownBlocks(r, pos, width, bs)
	pt, st, tt := i32Tensor(t, b, pos), i32Tensor(t, b, slot), i32Tensor(t, b, tables)
	defer b.Free(pt)
	defer b.Free(st)
	defer b.Free(tt)
	for _, dt := range []runtime.DType{runtime.F16, runtime.BF16} {
		cache := rand32(blocks*bs*hkv*hd, 1)
		q0, k0, v0 := rand32(rows*hq*hd, 1), rand32(rows*hkv*hd, 1), rand32(rows*hkv*hd, 1)
		for _, window := range []int{0, 100} {
			t.Run(fmt.Sprintf("%v-window%d", dt, window), func(t *testing.T) {
				p := runtime.AttentionParams{HeadDim: hd, Window: window, Scale: float32(1 / math.Sqrt(hd)), CacheSettled: true}
				run := func(preRows, tcRows int) []float32 {
					b.SetAttentionPrefetch(preRows)
					b.SetAttentionTC(tcRows)
					q, _ := upload(t, b, dt, q0, rows, hq*hd)
					k, _ := upload(t, b, dt, k0, rows, hkv*hd)
					v, _ := upload(t, b, dt, v0, rows, hkv*hd)
					kc, _ := upload(t, b, dt, cache, blocks*bs, hkv*hd)
					vc, _ := upload(t, b, dt, cache, blocks*bs, hkv*hd)
					out, _ := upload(t, b, dt, make([]float32, rows*hq*hd), rows, hq*hd)
					for _, x := range []runtime.Tensor{q, k, v, kc, vc, out} {
						defer b.Free(x)
					}
					b.RoPEStore(q, k, v, kc, vc, pt, st, hd, plainRoPE(t, hd, 10000))
					b.PagedAttention(out, q, kc, vc, tt, pt, bs, p)
					return download(t, b, out)
				}
				// Four rows: prefetching (the default's most rows or
				// more), and not (fewer than the rows).
				plain := run(rows-1, 0)
				sameBits(t, "attention", run(rows, 0), plain)
				w64 := make([]float64, len(plain))
				for i, v := range plain {
					w64[i] = float64(v)
				}
				tol := map[runtime.DType]float64{runtime.F16: 1e-5, runtime.BF16: 1e-4}[dt]
				// The tensor-core kernel, and its _tcpre form (the rows but
				// the own position's fetched before the wait, the own ones
				// after it: RoPEStore writes them just before), which must
				// give the same bits. The rows take each of its paths: the
				// own position in a tile fetched before the wait (37: its
				// second split's second tile; 0: a one-position row; 255) and
				// in a tile fetched in the loop (1000 without a window at two
				// stages: its last split's eighth tile, warp 3's second).
				pre := cuda.PagedTCPreKernel(hd, hq/hkv, dt)
				for _, stages := range []int{2, 3, 4} {
					b.SetAttentionTCStages(stages)
					tc := run(0, 1)
					if nmse := backendtest.NMSE(tc, w64); !(nmse < tol) {
						t.Errorf("tensor-core attention, %d stages: nmse %.3g against the plain kernel's, want < %.1g", stages, nmse, tol)
					}
					n0 := b.Launches("decode.cu", pre)
					sameBits(t, fmt.Sprintf("tensor-core attention fetching before its wait, %d stages", stages), run(rows, 1), tc)
					if n := b.Launches("decode.cu", pre) - n0; n != 1 {
						t.Errorf("%d stages: %s launched %d times, want 1", stages, pre, n)
					}
				}
			})
		}
	}
}

// ownBlocks gives each of len(pos) rows width cache blocks of its own, in a
// random order over the pool (tables [rows, width]), and the cache slot of
// each row's position pos[i] (bs positions a block).
func ownBlocks(r *rand.Rand, pos []int32, width, bs int) (tables, slot []int32) {
	tables, slot = make([]int32, len(pos)*width), make([]int32, len(pos))
	for i, p := range r.Perm(len(tables)) {
		tables[i] = int32(p)
	}
	for i, p := range pos {
		slot[i] = tables[i*width+int(p)/bs]*int32(bs) + p%int32(bs)
	}
	return tables, slot
}
