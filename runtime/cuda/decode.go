package cuda

import (
	"errors"
	"fmt"

	"github.com/gptqtool/gptqtool/runtime"
)

// index returns an I32 tensor of at least n elements.
func (b *Backend) index(op string, t runtime.Tensor, n int) *Tensor {
	it := b.tensor(t)
	if it.dt != runtime.I32 || it.n < n {
		panic(fmt.Sprintf("cuda: %s: index tensor %v %v, want I32 of at least %d", op, it.dt, it.shape, n))
	}
	return it
}

// EmbeddingAt implements runtime.PagedDecoder.
func (b *Backend) EmbeddingAt(dst, table, ids runtime.Tensor) {
	b.EmbeddingFed(dst, table, ids, nil)
}

// EmbeddingFed implements runtime.TokenFeeder (fed nil: every id is the
// host's).
func (b *Backend) EmbeddingFed(dst, table, ids, fed runtime.Tensor) {
	d, tb := b.tensor(dst), b.tensor(table)
	h := runtime.Cols(tb)
	rows := runtime.Rows(d)
	it := b.index("embedding", ids, rows)
	if runtime.Cols(d) != h || d.dt != tb.dt {
		panic(fmt.Sprintf("cuda: embedding dst %v %v from table %v %v", d.dt, d.shape, tb.dt, tb.shape))
	}
	var fp uint64
	if fed != nil {
		fp = b.index("embedding", fed, 1).ptr
	}
	b.enter()
	defer b.exit()
	b.run("elementwise.cu", "embedding_"+suffix(d.dt), grid1(int64(d.n)), Dim{X: threads}, 0, d.ptr, tb.ptr, it.ptr, fp, int32(rows), int32(h))
}

// RoPEStore implements runtime.PagedDecoder.
func (b *Backend) RoPEStore(q, k, v, kc, vc, pos, slot runtime.Tensor, headDim int, invf []float32) {
	qt, kt, vt, kct, vct := b.tensor(q), b.tensor(k), b.tensor(v), b.tensor(kc), b.tensor(vc)
	rows, kvc := runtime.Rows(qt), runtime.Cols(kt)
	if headDim <= 0 || headDim%2 != 0 || len(invf) == 0 || 2*len(invf) > headDim || runtime.Cols(qt)%headDim != 0 || kvc%headDim != 0 || runtime.Rows(kt) != rows ||
		vt.n != kt.n || runtime.Cols(kct) != kvc || kct.n != vct.n || kt.dt != qt.dt || vt.dt != qt.dt || kct.dt != qt.dt || vct.dt != qt.dt {
		panic(fmt.Sprintf("cuda: rope-store q %v k %v v %v into %v %v, head dim %d", qt.shape, kt.shape, vt.shape, kct.shape, vct.shape, headDim))
	}
	pt, st := b.index("rope-store", pos, rows), b.index("rope-store", slot, rows)
	b.enter()
	defer b.exit()
	inv, err := b.ropeFreqs(invf)
	if err != nil {
		b.fail(err)
		return
	}
	hq, hkv := runtime.Cols(qt)/headDim, kvc/headDim
	n := int64(rows)*int64(hq+hkv)*int64(headDim/2) + int64(rows)*int64(kvc)
	b.run("decode.cu", "rope_store_"+suffix(qt.dt), grid1(n), Dim{X: threads}, 0,
		qt.ptr, kt.ptr, vt.ptr, kct.ptr, vct.ptr, pt.ptr, st.ptr, inv, int32(rows), int32(hq), int32(hkv), int32(headDim), int32(2*len(invf)))
}

// pagedNames are the paged attention kernels by dimensions a lane (hd <=
// 32·C), query heads a kv head (at most G) and dtype; pagedPreNames their
// _pre kernels (a settled cache's rows fetched before the wait);
// pagedTCNames the _tc kernels (on tensor cores: 16-bit caches, hd = 32·C
// of 64 or 128 only) and pagedTCPreNames their _tcpre kernels (a settled
// cache's rows fetched before the wait, but the query's own).
var (
	pagedNames, pagedPreNames = pagedKernelNames("", []int{1, 2, 4, 8}, runtime.F32, runtime.F16, runtime.BF16),
		pagedKernelNames("_pre", []int{1, 2, 4, 8}, runtime.F32, runtime.F16, runtime.BF16)
	pagedTCNames, pagedTCPreNames = pagedKernelNames("_tc", []int{2, 4}, runtime.F16, runtime.BF16),
		pagedKernelNames("_tcpre", []int{2, 4}, runtime.F16, runtime.BF16)
)

func pagedKernelNames(suf string, cs []int, dts ...runtime.DType) map[[2]int]map[runtime.DType]string {
	n := map[[2]int]map[runtime.DType]string{}
	for _, c := range cs {
		for _, g := range []int{1, 2, 4, 8} {
			n[[2]int{c, g}] = map[runtime.DType]string{}
			for _, dt := range dts {
				n[[2]int{c, g}][dt] = fmt.Sprintf("paged_attn_c%d_g%d%s_%s", c, g, suf, suffix(dt))
			}
		}
	}
	return n
}

// pow2 is the least power of two >= n (n >= 1).
func pow2(n int) int {
	p := 1
	for p < n {
		p *= 2
	}
	return p
}

// SetClusters turns thread-block clusters off (split products and
// attention then reduce through global memory, as GPTQTOOL_CLUSTER=0 does)
// or back on where the device has them, for tests of both paths.
func (b *Backend) SetClusters(on bool) {
	b.enter()
	defer b.exit()
	b.clusters = on && b.arch >= 90 && drv.cuLaunchKernelEx != nil
}

// Clusters reports whether split products and attention reduce in
// thread-block clusters.
func (b *Backend) Clusters() bool { return b.clusters }

// SetGEMV chooses gemv.cu and head.cu (on, the default) or cuBLAS (off, as
// GPTQTOOL_GEMV=0 does) for products of a few rows of 16-bit x and w into
// fp32, for tests of both.
func (b *Backend) SetGEMV(on bool) {
	b.enter()
	defer b.exit()
	b.gemv = on
}

// GEMV reports SetGEMV's setting.
func (b *Backend) GEMV() bool { return b.gemv }

// defaultAttnPrefetch is the most rows whose paged attention prefetches
// (GPTQTOOL_ATTN_PREFETCH=N overrides it). Measured on the H200 (7B shape,
// 4-bit, docs/benchmarks.md, the day's seventh session): +2.5% at batch 1,
// +1.6% at batch 8, -7.6% at batch 32. On tensor cores (the _tcpre
// kernels, the 2026-12-02 twenty-ninth session): +0.55% / +0.7% at batch
// 1 / 8 at 4 bits, +0.4% / +0.5% at 8 bits.
const defaultAttnPrefetch = 8

// SetAttentionPrefetch sets the most rows whose paged attention loads the
// rows of a settled cache (AttentionParams.CacheSettled) before its wait
// for the kernel ahead (0: none), for tests of both kernels.
func (b *Backend) SetAttentionPrefetch(rows int) {
	b.enter()
	defer b.exit()
	b.attnPrefetch = rows
}

// AttentionPrefetch reports the most rows whose paged attention prefetches.
func (b *Backend) AttentionPrefetch() int { return b.attnPrefetch }

// SetAttentionSplit sets the fewest positions a block of split paged
// attention takes where a context too short for eight splits of 128 is
// split into up to eight (0: the default, defaultAttnSplit), for benchmarks
// that tune it.
func (b *Backend) SetAttentionSplit(positions int) {
	b.enter()
	defer b.exit()
	if positions <= 0 {
		positions = defaultAttnSplit
	}
	b.attnSplit = positions
}

// SetAttentionTC sets the fewest rows whose paged attention runs on
// tensor cores (0: never), for tests and comparisons of both kernels.
func (b *Backend) SetAttentionTC(rows int) {
	b.enter()
	defer b.exit()
	b.attnTC = rows
}

// AttentionTC reports SetAttentionTC's setting.
func (b *Backend) AttentionTC() int { return b.attnTC }

// SetAttentionTCStages sets the tiles of 16 positions a warp of the
// tensor-core kernel has in flight, 2 to 4 (0: by the step's rows,
// tcStages), for tests of each.
func (b *Backend) SetAttentionTCStages(stages int) {
	b.enter()
	defer b.exit()
	if stages <= 0 {
		b.attnTCStages = 0
		return
	}
	b.attnTCStages = min(4, max(2, stages))
}

// tcStages is the tensor-core kernel's stages for a step of rows rows
// over kvHeads kv heads hd wide: SetAttentionTCStages' (GPTQTOOL_ATTN_TC_STAGES)
// where set, otherwise 3 up to tc3Rows rows, and from tc3From rows on where
// the rows·kvHeads blocks of one split each fit one wave with three stages
// or fit none with two (pagedTCSlots), 2 otherwise.
func (b *Backend) tcStages(rows, kvHeads, hd int) int {
	switch {
	case b.attnTCStages > 0:
		return b.attnTCStages
	case rows <= tc3Rows:
		return 3
	case rows >= tc3From:
		blocks := rows * kvHeads
		if blocks <= b.pagedTCSlots(pagedTCStageBytes(3, hd)) || blocks > b.pagedTCSlots(pagedTCStageBytes(2, hd)) {
			return 3
		}
	}
	return 2
}

// AttentionTCStages reports SetAttentionTCStages's setting.
func (b *Backend) AttentionTCStages() int { return b.attnTCStages }

// defaultAttnTC is the fewest rows whose paged attention runs on tensor
// cores (GPTQTOOL_ATTN_TC=N overrides it; 0: never), and tc3Rows the most
// rows whose steps give a warp of it three tiles of 16 positions in flight
// instead of two (tcStages; GPTQTOOL_ATTN_TC_STAGES sets one count for
// all). Measured on the H200 (7B shape, 4-bit g128 act order, 256 new
// tokens; docs/benchmarks.md, the day's ninth session), against the plain
// kernel: +4.3% at batch 1, +6% at batch 8, +9% at batch 32 (5% more once
// its grid kept to one wave, pagedTCSplits), +18% at batch 64, with two
// stages. Three stages (104 KB a block, two blocks an SM) ran batch 8's 320
// blocks in two waves and lost 6% there; at one and two rows they hold
// the grid in one wave (two blocks an SM; pagedTCSplits) and gave batch 1
// / 2 +0.4% / +0.6%, +0.3% / +1.6% and +0.5% / +3.3% with 1,024, 2,048
// and 4,096-token prompts, even with 128 (four stages at 2,048: −1.1% /
// −9.8%; docs/benchmarks.md, the thirty-fourth session). At three rows they
// gave +1.4–1.5% / +2.9% with 2,048 / 4,096-token prompts but −0.5% with 128,
// at four rows −7% to −10% at every length, at eight −10% (the thirty-fifth
// session): two rows stay the most. From tc3From rows on, where every
// (row, kv head) of the 7B shape is one block whatever the stages
// (pagedTCSplits), three stages measured +1.45% at batch 32 with 256 new
// tokens (10,217 tok/s against 10,071 and 10,073; four lost 3.3%, two
// splits a (row, kv head) in two waves 6.9%), +1.3% with 128-token prompts
// and +8.4% with 2,048 (the fortieth session); but −3.2% at batch 48, whose
// 384 blocks fill one wave of three an SM with two stages and need two of
// two an SM with three, and +0.6% at 64, two waves either way. So from
// tc3From rows three stages are kept where the blocks fit one wave with
// them or none with two (tcStages).
const (
	defaultAttnTC = 1
	tc3Rows       = 2
	tc3From       = 32
)

// pagedTCTile is the bytes of one tile of K (or V) of the tensor-core
// kernel: 16 positions of hd + 8 elements of 2 bytes (decode.cu paged_tc).
func pagedTCTile(hd int) int { return 16 * (hd + 8) * 2 }

// pagedTCShared is the tensor-core kernel's dynamic shared memory for a
// step of rows rows, heads hd wide (at most 32·c) and g query heads a kv
// head: its four warps' stages of K and V tiles (tcStages), which the
// warps' partial outputs (4 × g × 32c fp32) reuse after the loop.
func (b *Backend) pagedTCShared(rows, kvHeads, hd, g, c int) int {
	return max(pagedTCStageBytes(b.tcStages(rows, kvHeads, hd), hd), 4*g*32*c*4)
}

// pagedTCStageBytes is the shared memory of the tensor-core kernel's four
// warps' K and V tiles with stages tiles of each in flight.
func pagedTCStageBytes(stages, hd int) int { return 4 * stages * 2 * pagedTCTile(hd) }

// pagedTCSlots is how many blocks of the tensor-core kernel with shared
// bytes of dynamic shared memory the SMs hold at once.
func (b *Backend) pagedTCSlots(shared int) int {
	return b.sms * max(1, b.smemSM/(shared+pagedTCStatic))
}

// pagedTCStatic bounds the tensor-core kernel's static shared memory (6.5
// KB with eight query heads a kv head) plus the 1 KB the driver keeps a
// block.
const pagedTCStatic = 8 << 10

// pagedTCSplits caps S, the splits of one (row, kv head), so that the
// tensor-core kernel's blocks (shared bytes of dynamic shared memory each)
// run in one wave where the rows and kv heads alone do: an SM holds fewer
// of them than of the plain kernel's (three with two stages of 128-wide
// heads), and a second wave of a split grid cost more than the splits
// gained (batch 32 of the 7B shape: 512 blocks, 396 at once).
func (b *Backend) pagedTCSplits(S, rows, kvHeads, shared int) int {
	return max(1, min(S, b.pagedTCSlots(shared)/(rows*kvHeads)))
}

// attnTCFor reports whether paged attention of rows rows with head size
// hd (at most 32·c) and dtype dt runs on tensor cores when those of tcRows
// rows or more do (SetAttentionTC).
func attnTCFor(tcRows, rows, hd, c int, dt runtime.DType) bool {
	return tcRows > 0 && rows >= tcRows && (dt == runtime.F16 || dt == runtime.BF16) && hd == 32*c && (c == 2 || c == 4)
}

// fitClusters picks S, the splits of each of pairs (row, kv head) of
// paged attention's tensor-core grid, given S run in clusters of clu
// blocks (S up to maxClusterBlocks, else a multiple of it), by the waves
// its clusters take: active(c) is how many clusters of c blocks the device
// runs at once (c 1: blocks without clusters; 0 where it cannot say: S
// kept). A split's work is the positions over S, and a wave that starts
// after another costs a whole block's time, so of S and the fewer splits
// it could take (a cluster at a time past maxClusterBlocks, one at a time
// below), the one of the fewest waves per split wins, the most splits
// where even. It returns the splits and their cluster (0: one split,
// none). pagedTCSplits counts the SMs' slots, but a cluster must fit one
// GPC: on the H200 only 124 of the 132 SMs took clusters, so the 7B
// shape's batch 16 (128 pairs in 3 splits, three blocks an SM) ran 4 of
// its 128 clusters in a second wave, and attention took 15.4 µs a layer
// against 7.4 at batch 8; in 2 splits batch 16 measured +6.9% and +7.1%
// in two calls (docs/benchmarks.md, the forty-second session). Batch 12
// runs the same step (the graph is its bucket's, 16 rows) with four rows
// of padding, whose blocks exit at once: its working clusters fit one
// wave in three splits, and two cost it 0.2-0.4%. Fewer splits in one wave
// where two waves take no more a split (3 and 4 rows' 16 splits in
// clusters of 8, against 8) measured 1% slower with 2,048-token prompts,
// so they keep theirs.
func fitClusters(S, clu, pairs int, active func(c int) int) (int, int) {
	// waves of s splits in clusters of c (0 where the device cannot say).
	waves := func(s, c int) int {
		c = max(c, 1)
		n := active(c)
		if n <= 0 {
			return 0
		}
		return (pairs*s/c + n - 1) / n
	}
	best, bw := S, waves(S, clu)
	for s := S; bw > 0 && s > 1; {
		if s > maxClusterBlocks {
			s -= maxClusterBlocks
		} else {
			s--
		}
		// Fewer waves a split: w/s < bw/best.
		if w := waves(s, min(s, maxClusterBlocks)); w > 0 && w*best < bw*s {
			best, bw = s, w
		}
	}
	clu = min(best, maxClusterBlocks)
	if clu < 2 {
		clu = 0
	}
	return best, clu
}

// defaultAttnSplit is the fewest positions a block of split paged
// attention takes (GPTQTOOL_ATTN_MINSPLIT=N overrides it). Measured on the
// H200 (7B shape, act order, 128-token prompts, 128 new tokens; the
// thirty-second session in docs/benchmarks.md), against 32 in the same
// call, two runs each: 4 bits +0.5% at batch 1, +0.2% at batch 8; 8 bits
// +0.3% at batch 1, even at batch 8 (64: +0.25% / +0.15% at 4 bits, +0.15%
// / −0.35% at 8). From 1,024 positions up, eight splits of 128 are reached
// either way.
const defaultAttnSplit = 48

// pagedSplits is how many blocks share one kv head's positions in
// PagedAttention: enough blocks for attnWaves (default 2) waves over the
// SMs, at most 32.
func (b *Backend) pagedSplits(rows, kvHeads int) int {
	return max(1, min(pagedMaxSplits, (b.attnWaves*b.sms+rows*kvHeads-1)/(rows*kvHeads)))
}

// defaultAttnWaves is how many times paged attention's grid fills the SMs
// (GPTQTOOL_ATTN_WAVES=N overrides it, for comparisons).
const defaultAttnWaves = 2

// pagedMaxSplits is PA_SPLITS and pagedThreads PA_TILE of decode.cu: the
// most blocks that split one (row, kv head), whose combine keeps a weight a
// split in shared memory, and a block's threads (one position each).
const (
	pagedMaxSplits = 32
	pagedThreads   = 128
)

// PagedAttention implements runtime.PagedDecoder for head sizes up to 256
// and up to 8 query heads a kv head.
func (b *Backend) PagedAttention(dst, q, kc, vc, tables, pos runtime.Tensor, blockSize int, p runtime.AttentionParams) {
	b.PagedAttentionTo(dst, q, kc, vc, tables, pos, blockSize, p, nil)
}

// PagedAttentionTo implements runtime.InputOrderer.
func (b *Backend) PagedAttentionTo(dst, q, kc, vc, tables, pos runtime.Tensor, blockSize int, p runtime.AttentionParams, slots runtime.Tensor) {
	b.pagedAttention(dst, q, kc, vc, tables, pos, blockSize, p, slots, false)
}

// pagedAttention is PagedAttentionTo; with deferred, rows of at most
// apSplits splits are left in parts for the product that reads dst
// (decode.cu dfr, qgemv.cu's _a kernels; in slots' order too), and the
// launch makes no clusters. It returns where the parts are.
func (b *Backend) pagedAttention(dst, q, kc, vc, tables, pos runtime.Tensor, blockSize int, p runtime.AttentionParams, slots runtime.Tensor, deferred bool) apArg {
	d, qt, kt, vt := b.tensor(dst), b.tensor(q), b.tensor(kc), b.tensor(vc)
	hd := p.HeadDim
	rows := runtime.Rows(qt)
	if hd <= 0 || hd > 256 || runtime.Cols(qt)%hd != 0 || runtime.Cols(kt)%hd != 0 || d.n != qt.n || kt.n != vt.n || blockSize <= 0 || rows == 0 ||
		d.dt != qt.dt || kt.dt != qt.dt || vt.dt != qt.dt {
		panic(fmt.Sprintf("cuda: paged attention dst %v q %v kc %v vc %v head dim %d block %d", d.shape, qt.shape, kt.shape, vt.shape, hd, blockSize))
	}
	hq, hkv := runtime.Cols(qt)/hd, runtime.Cols(kt)/hd
	if hq%hkv != 0 || hq/hkv > 8 {
		panic(fmt.Sprintf("cuda: paged attention with %d query and %d kv heads", hq, hkv))
	}
	tt := b.tensor(tables)
	width := tt.n / rows
	tt = b.index("paged attention", tables, rows*width)
	pt := b.index("paged attention", pos, rows)
	sp := b.slotsPtr("paged attention", slots, runtime.Cols(qt), d, qt)
	b.enter()
	defer b.exit()
	c, g := pow2((hd+31)/32), pow2(hq/hkv)
	tc := attnTCFor(b.attnTC, rows, hd, c, qt.dt)
	shared := max(pagedThreads*32*c*qt.dt.Size(), 4*g*32*c*4)
	names := pagedNames
	S := b.pagedSplits(rows, hkv)
	switch {
	case tc:
		// Four warps, each with its stages of K and V tiles; the warps'
		// partial outputs reuse the space after the loop.
		names = pagedTCNames
		if p.CacheSettled && rows <= b.attnPrefetch {
			names = pagedTCPreNames
		}
		shared = b.pagedTCShared(rows, hkv, hd, g, c)
		if b.attnTCCap {
			S = b.pagedTCSplits(S, rows, hkv, shared)
		}
	case p.CacheSettled && rows <= b.attnPrefetch:
		names = pagedPreNames
	}
	// On sm_90 the splits run in clusters of up to maxClusterBlocks, which
	// combine a row of that many splits or fewer in shared memory (the grid's
	// split count then rounded up to a multiple of the cluster's).
	clu := 0
	if b.clusters && S > 1 && !deferred {
		if S > maxClusterBlocks {
			S = min(pagedMaxSplits, (S+maxClusterBlocks-1)/maxClusterBlocks*maxClusterBlocks)
		}
		clu = min(S, maxClusterBlocks)
	}
	if tc && b.attnTCCap && b.attnFit && clu > 1 {
		name := names[[2]int{c, g}][qt.dt]
		S, clu = fitClusters(S, clu, rows*hkv, func(blocks int) int {
			if blocks == 1 {
				return b.pagedTCSlots(shared)
			}
			return b.activeClusters("decode.cu", name, pagedThreads, shared, blocks)
		})
	}
	var part, cnt uint64
	if S > 1 || deferred {
		// (Deferred: the parts left for the product, then those of the
		// rows attention combines itself.)
		n := int64(rows) * int64(hq) * int64(S) * int64(hd+2) * 4
		if deferred {
			n *= 2
		}
		pb, err := b.scratch(&b.apart, n)
		if err != nil {
			b.fail(err)
			return apArg{}
		}
		if cnt, err = b.counters(&b.acount, rows*hkv); err != nil {
			b.fail(err)
			return apArg{}
		}
		part = pb.Ptr
	}
	late, dfr := attnLate, int32(0)
	if deferred {
		// The product launches as this kernel's wait returns (apLate), its
		// weights streaming under attention's loop: no combine follows it.
		late, dfr = apLate, apSplits
	}
	b.runCluster("decode.cu", names[[2]int{c, g}][qt.dt], Dim{X: hkv, Y: S, Z: rows}, Dim{X: pagedThreads}, shared, clu,
		d.ptr, qt.ptr, kt.ptr, vt.ptr, tt.ptr, int32(width), pt.ptr, int32(blockSize), int32(hq), int32(hkv), int32(hd),
		int32(p.Window), p.Scale, part, cnt, int32(b.attnSplit), sp, int32(clu), late, dfr, max(p.Softcap, 0))
	return apArg{part: part, pos: pt.ptr, sg: int32(S), hq: int32(hq), hd: int32(hd), window: int32(p.Window), minsplit: int32(b.attnSplit), dfr: dfr}
}

// Graph is a recorded CUDA graph (runtime.Graph).
type Graph struct {
	b    *Backend
	exec uintptr
}

// captureRelaxed is CU_STREAM_CAPTURE_MODE_RELAXED: other threads may make
// calls that are unsafe during capture (the allocator's cuMemGetInfo).
const captureRelaxed = 2

// Capture implements runtime.Grapher: the stream's work issued by fn is
// recorded, instantiated and returned as a Graph. An op that would allocate
// fails the capture with an error instead.
func (b *Backend) Capture(fn func() error) (runtime.Graph, error) {
	b.enter()
	if b.err != nil {
		b.exit()
		return nil, fmt.Errorf("cuda: capture: the backend is in error since an earlier operation: %w", b.err)
	}
	if err := cuErr("cuStreamBeginCapture", drv.cuStreamBeginCapture(b.stream, captureRelaxed)); err != nil {
		b.exit()
		return nil, err
	}
	b.capturing = true
	b.exit()

	ferr := fn()

	b.enter()
	defer b.exit()
	b.capturing = false
	var g uintptr
	eerr := cuErr("cuStreamEndCapture", drv.cuStreamEndCapture(b.stream, &g))
	if g != 0 {
		defer drv.cuGraphDestroy(g)
	}
	switch {
	case ferr != nil:
		return nil, ferr
	case b.err != nil:
		// An op failed while recording; the capture is void, the backend
		// usable again.
		err := b.err
		b.err = nil
		return nil, fmt.Errorf("cuda: capture: %w", err)
	case eerr != nil:
		return nil, eerr
	}
	var exec uintptr
	if err := cuErr("cuGraphInstantiateWithFlags", drv.cuGraphInstantiate(&exec, g, 0)); err != nil {
		return nil, err
	}
	b.graphs++
	return &Graph{b: b, exec: exec}, nil
}

// Launch implements runtime.Graph.
func (g *Graph) Launch() error {
	b := g.b
	b.enter()
	defer b.exit()
	if g.exec == 0 {
		return fmt.Errorf("cuda: launch of a freed graph")
	}
	if b.err != nil {
		return fmt.Errorf("cuda: the backend is in error since an earlier operation: %w", b.err)
	}
	if !b.gt.on {
		return cuErr("cuGraphLaunch", drv.cuGraphLaunch(g.exec, b.stream))
	}
	// The pair of events of the replay before last: collecting it waits
	// for nothing where the caller has waited for that step's tokens, so
	// a step issued ahead of the last one's tokens stays ahead.
	s := b.gt.slot
	b.gt.slot ^= 1
	if err := b.collectGraphTime(s); err != nil {
		return err
	}
	if err := cuErr("cuEventRecord", drv.cuEventRecord(b.gt.start[s], b.stream)); err != nil {
		return err
	}
	if err := cuErr("cuGraphLaunch", drv.cuGraphLaunch(g.exec, b.stream)); err != nil {
		return err
	}
	if err := cuErr("cuEventRecord", drv.cuEventRecord(b.gt.end[s], b.stream)); err != nil {
		return err
	}
	b.gt.pending[s] = true
	return nil
}

// graphTimes times graph replays for benchmarks (TimeGraphs): events
// recorded around each launch in two alternating pairs, a pair's interval
// added up when it is next used or when asked.
type graphTimes struct {
	on         bool
	pending    [2]bool
	start, end [2]uintptr // events, made on first use
	slot       int        // the pair the next replay records
	n          int
	seconds    float64
}

// TimeGraphs turns the timing of graph replays on (with the totals at
// zero) or off (GraphTime still has them), and reports whether this driver
// can time them: the device
// time of each replay (bench decode's graph_ms against its step_ms, the
// difference being the host's share of a step).
func (b *Backend) TimeGraphs(on bool) bool {
	b.enter()
	defer b.exit()
	if drv.cuEventCreate == nil {
		return false
	}
	if on && b.gt.end[1] == 0 {
		for s := range 2 {
			if cuErr("cuEventCreate", drv.cuEventCreate(&b.gt.start[s], 0)) != nil || cuErr("cuEventCreate", drv.cuEventCreate(&b.gt.end[s], 0)) != nil {
				return false
			}
		}
	}
	if on {
		b.collectGraphTime(0)
		b.collectGraphTime(1)
		b.gt.n, b.gt.seconds = 0, 0
	}
	b.gt.on = on
	return true
}

// GraphTime returns the replays timed since TimeGraphs(true) and their
// device time in seconds.
func (b *Backend) GraphTime() (int, float64, error) {
	b.enter()
	defer b.exit()
	err := errors.Join(b.collectGraphTime(0), b.collectGraphTime(1))
	return b.gt.n, b.gt.seconds, err
}

// collectGraphTime adds the interval of pair s's replay, once it is done.
func (b *Backend) collectGraphTime(s int) error {
	if !b.gt.pending[s] {
		return nil
	}
	b.gt.pending[s] = false
	if err := cuErr("cuEventSynchronize", drv.cuEventSynchronize(b.gt.end[s])); err != nil {
		return err
	}
	var ms float32
	if err := cuErr("cuEventElapsedTime", drv.cuEventElapsedTime(&ms, b.gt.start[s], b.gt.end[s])); err != nil {
		return err
	}
	b.gt.n++
	b.gt.seconds += float64(ms) / 1e3
	return nil
}

// Free implements runtime.Graph. Scratch retired while graphs were alive is
// released with the last one.
func (g *Graph) Free() {
	if g == nil || g.exec == 0 {
		return
	}
	b := g.b
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		g.exec = 0 // went with the context
		return
	}
	b.enter()
	defer b.exit()
	drv.cuStreamSynchronize(b.stream)
	drv.cuGraphExecDestroy(g.exec)
	g.exec = 0
	b.graphs--
	if b.graphs == 0 {
		for _, buf := range b.retired {
			b.alloc.release(buf.Ptr, buf.cls)
		}
		b.retired = nil
	}
}

var (
	_ runtime.PagedDecoder = (*Backend)(nil)
	_ runtime.Grapher      = (*Backend)(nil)
	_ runtime.RoPEFuser    = (*Backend)(nil)
)

// ropeArg is a q/k/v product's RoPE and cache store in its epilogue
// (qgemv.cu QRope): device addresses of the rows' positions and cache
// slots (I32), the rotary frequencies and the two caches.
type ropeArg struct {
	pos, slot, inv, kc, vc uint64
}

// rows is r for the rows from r0 on (a pass of a longer product); nil
// stays nil.
func (r *ropeArg) rows(r0 int) *ropeArg {
	if r == nil {
		return nil
	}
	c := *r
	c.pos += 4 * uint64(r0)
	c.slot += 4 * uint64(r0)
	return &c
}

// MatMulSplitRoPE implements runtime.RoPEFuser: where ropeFits, the q/k/v
// product's kernel rotates q and k and stores k and v in the caches as it
// writes them (one kernel fewer a layer, the rotation bit for bit
// rope_store's); otherwise the product, then RoPEStore. The epilogue
// rotates whole heads (qgemv.cu QRope: a block's columns j and j+64), so
// a table shorter than headDim/2 (partial RoPE, Phi-4-mini's) takes the
// composed form.
func (b *Backend) MatMulSplitRoPE(dsts []runtime.Tensor, x, nw runtime.Tensor, eps float32, w runtime.Tensor,
	kc, vc, pos, slot runtime.Tensor, headDim int, invf []float32) {
	if 2*len(invf) != headDim || !b.ropeFits(dsts, x, w, kc, vc, headDim) {
		b.matmulSplit(dsts, x, w, nw, eps)
		b.RoPEStore(dsts[0], dsts[1], dsts[2], kc, vc, pos, slot, headDim, invf)
		return
	}
	if len(invf) != headDim/2 {
		panic(fmt.Sprintf("cuda: rope-fused matmul head dim %d with %d inverse frequencies", headDim, len(invf)))
	}
	xt, wt := b.tensor(x), b.tensor(w)
	var nrm *normArg
	if nw != nil {
		nrm = b.normOf(nw, eps, wt, xt)
	}
	rows := runtime.Rows(xt)
	pt, st := b.index("rope-fused matmul", pos, rows), b.index("rope-fused matmul", slot, rows)
	var outs [3]*Tensor
	for i, d := range dsts {
		outs[i] = b.tensor(d)
	}
	b.enter()
	defer b.exit()
	inv, err := b.ropeFreqs(invf)
	if err != nil {
		b.fail(err)
		return
	}
	b.qmatmul(outs, xt, wt, nil, 0, nrm, &ropeArg{pos: pt.ptr, slot: st.ptr, inv: inv, kc: b.tensor(kc).ptr, vc: b.tensor(vc).ptr})
}

// FusesRoPE reports whether MatMulSplitRoPE with these tensors and a
// whole-head table (headDim/2 frequencies; a partial one never fuses)
// runs as one kernel (ropeFits), for tests.
func (b *Backend) FusesRoPE(dsts []runtime.Tensor, x, w, kc, vc runtime.Tensor, headDim int) bool {
	return b.ropeFits(dsts, x, w, kc, vc, headDim)
}

// ropeFits reports whether a q/k/v product can rotate and store in its
// epilogue: the switch on (GPTQTOOL_ROPE_FUSE), the qmma kernels (not the
// dequantize + cuBLAS path), groups of whole chunks (the kernels with the
// epilogue), heads of the kernels' 128 columns a block, so that a block's
// columns are one head, and caches of k's width and dtype.
func (b *Backend) ropeFits(dsts []runtime.Tensor, x, w, kc, vc runtime.Tensor, headDim int) bool {
	wt, xt := b.tensor(w), b.tensor(x)
	q := wt.q
	if !b.ropeFuse || b.dequantGEMM || q == nil || q.glu || len(dsts) != 3 || len(q.segments()) != 3 ||
		runtime.Rows(xt) > qgemvRows || headDim != 128 || q.gs%chunkInputs(q.bits) != 0 {
		return false
	}
	kw := q.seg2 - q.seg1
	kct, vct := b.tensor(kc), b.tensor(vc)
	return q.seg1%headDim == 0 && kw%headDim == 0 && q.n-q.seg2 == kw && runtime.Cols(kct) == kw &&
		kct.n == vct.n && kct.dt == xt.dt && vct.dt == xt.dt
}

// apSplits is the most splits of a row that paged attention leaves in parts
// for the product reading its output (decode.cu dfr; a row of up to 4,096
// positions takes no more than that many, common.cuh pa_splits), apRows the most rows
// and apHeads the most query heads of such a product (the weights qgemv.cu's
// _a kernels hold in shared memory: 4 rows, 64 heads, 8 splits). One row:
// two and four rows measured slower than attention's own combine on the
// H200 (849 and 1,501 tok/s against 868 and 1,666; the staging takes a
// round trip a row).
const (
	apSplits = 8
	apRows   = 1
	apHeads  = 64
)

// apArg is where paged attention left its output in parts (pagedAttention
// with defer): qgemv.cu's QAttn.
type apArg struct {
	part, pos                         uint64
	sg, hq, hd, window, minsplit, dfr int32
}

// PagedAttentionMatMul implements runtime.AttentionProjector. Where apFits,
// attention leaves each row of at most apSplits splits in parts (in w's
// input order, InputSlots) and the product (qgemv.cu's _a kernel) combines
// them as it stages its input, so that attention ends with its slowest
// split's loop rather than a combine after it, and the product's prologue
// overlaps attention; att then holds only the rows attention combined
// itself. Elsewhere it is PagedAttentionTo into att in w's input order
// (InputSlots) and MatMul by InOrder(w). SetAttentionDefer(false) always
// takes the second way.
func (b *Backend) PagedAttentionMatMul(dst, att, q, kc, vc, tables, pos runtime.Tensor, blockSize int, p runtime.AttentionParams, w runtime.Tensor) {
	b.pagedAttentionMatMul(dst, att, q, kc, vc, tables, pos, blockSize, p, w, false)
}

// PagedAttentionMatMulAdd implements runtime.ResidualAttentionProjector:
// PagedAttentionMatMul whose product adds into x (qgemv.cu's epilogue adds
// the residual to the fp32 sum and rounds once), for decode steps whose
// gate/up then normalizes x itself (GPTQTOOL_QGLU_NORM).
func (b *Backend) PagedAttentionMatMulAdd(x, att, q, kc, vc, tables, pos runtime.Tensor, blockSize int, p runtime.AttentionParams, w runtime.Tensor) {
	b.pagedAttentionMatMul(x, att, q, kc, vc, tables, pos, blockSize, p, w, true)
}

// pagedAttentionMatMul is PagedAttentionMatMul, adding into dst with add.
func (b *Backend) pagedAttentionMatMul(dst, att, q, kc, vc, tables, pos runtime.Tensor, blockSize int, p runtime.AttentionParams, w runtime.Tensor, add bool) {
	d, at, wt := b.tensor(dst), b.tensor(att), b.tensor(w)
	slots := b.InputSlots(w)
	if !b.apFits(at, wt, p) || (wt.q.perm != nil && slots == nil) {
		wi := w
		if slots != nil {
			wi = b.InOrder(w)
		}
		b.PagedAttentionTo(att, q, kc, vc, tables, pos, blockSize, p, slots)
		if add {
			b.MatMulAdd(dst, att, wi, dst)
		} else {
			b.MatMul(dst, att, wi)
		}
		return
	}
	// att and the parts in w's input order: the product reads them
	// contiguously, and w's permutation only for each input's head.
	ap := b.pagedAttention(att, q, kc, vc, tables, pos, blockSize, p, slots, true)
	if ap.part == 0 {
		return // failed (b.fail)
	}
	var res *Tensor
	if add {
		res = d
	}
	b.enter()
	defer b.exit()
	b.qmatmulAP([3]*Tensor{d}, at, wt, res, 0, nil, nil, &ap)
}

// ResidualProjects implements runtime.ResidualProjector: steps of more
// rows than apRows (whose o_proj products do not take attention's parts)
// and at most GPTQTOOL_OPROJ_ADD=N rows (SetResidualProjection; by default
// defaultOprojAdd). At one row the _a kernel adding the residual in its
// epilogue, with a plain norm after it, measured slower than the default
// (533.3 and 532.9 tok/s against 537.1-537.3 at 4 bits, 371.4 and 371.8
// against 374.2-374.3 at 8; the product's splits left to the norm instead,
// 530.5 and 531.2), so one row keeps PagedAttentionMatMul and AddRMSNorm.
func (b *Backend) ResidualProjects(rows int) bool {
	b.enter()
	defer b.exit()
	return rows > apRows && rows <= b.oprojAdd
}

// defaultOprojAdd is ResidualProjects' most rows: at batch 8 on the H200
// (7B shape, g128 act order) o_proj added into the stream gave 3,654-3,663
// tok/s against 3,633-3,641 at 4 bits and 2,641-2,646 against 2,635-2,642
// at 8, in two calls (docs/benchmarks.md, the thirty-first session); at 2,
// 3 and 4 rows it is even with the plain norm's way (980.7 / 1,418.5 /
// 1,887.9 against 980.0 / 1,417.9 / 1,887.9 at 4 bits, the thirty-third);
// more rows were not measured.
const defaultOprojAdd = 8

// SetResidualProjection sets ResidualProjects' most rows (0: none), for
// tests and measurements. A model reads it as it issues a step, so decode
// steps already recorded as graphs keep the way they were recorded with.
func (b *Backend) SetResidualProjection(rows int) {
	b.enter()
	defer b.exit()
	b.oprojAdd = max(0, rows)
}

// attnLate is decode.cu's late for paged attention that combines its own
// splits: 1, the next kernel (o_proj) launches only as attention ends:
// +2.3% / +2.5% at batch 1 / 8 on the H200 (docs/benchmarks.md, 2026-12-01
// fourth session). Launched once attention's loop was done (0), o_proj's
// 256 blocks ran on 78 SMs, four on 46 of them, and filled their rings
// during attention's combine; launched at its end, they run on 124 (at 2 /
// 3 / 4 rows: +3.3% / +3.9% / +3.8%, the thirty-third session; batch 8 5.1%
// in the thirty-sixth). Its switch, GPTQTOOL_ATTN_LATE=0, is removed.
const attnLate int32 = 1

// apLate is decode.cu's late for an attention whose parts the product
// combines: 2, the product launches once attention's wait returns (0, once
// attention's loop is done, measured 1.2% slower at batch 1 in the
// fourteenth session, docs/benchmarks.md).
const apLate int32 = 2

// apFits reports whether PagedAttentionMatMul's product of att by w takes
// paged attention's parts: a plain quantized weight whose groups are whole
// chunks, one tile's rows (at most apRows) of 16-bit activations (the
// dtypes measured and tested that way), at most apHeads heads of
// p.HeadDim making w's inputs, and the switch on.
func (b *Backend) apFits(att, w *Tensor, p runtime.AttentionParams) bool {
	q := w.q
	if !b.apDefer || q == nil || q.glu || len(q.segments()) > 1 || b.dequantGEMM || p.HeadDim <= 0 ||
		(att.dt != runtime.F16 && att.dt != runtime.BF16) {
		return false
	}
	M := runtime.Rows(att)
	return M >= 1 && M <= apRows && q.gs%chunkInputs(q.bits) == 0 && runtime.Cols(att) == q.k &&
		q.k%p.HeadDim == 0 && q.k/p.HeadDim <= apHeads
}

// SetAttentionDefer turns PagedAttentionMatMul's parts on or off
// (off: attention combines its rows itself), for tests and comparisons of
// both ways.
func (b *Backend) SetAttentionDefer(on bool) {
	b.enter()
	defer b.exit()
	b.apDefer = on
}
