package cuda

import (
	"encoding/binary"
	"fmt"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/kernels"
	"github.com/gptqtool/gptqtool/runtime"
)

// quant is the device form of a runtime.QuantWeight (kernels/qgemv.cu): the
// tensor's own memory holds qw [K*bits/32, N] u32; sz [G, N] u32 holds the
// fp16 pairs (scale, 1024 + zero); where every zero is 2^(bits-1) and
// Backend.scalesOnly, szh [G, N] u16 holds the scales alone too, for the
// kernels' builds named with kernels.ScalesOnly (the mma.sync kernels and
// the warpgroup kernels of up to Backend.scalesWG tiles; the larger ones
// read the pairs); perm [K] i32 is nil without act order.
type quant struct {
	bits, k, n, gs int
	sz, szh, perm  *Buffer
	// slots, the inverse of perm (input column c is the slots[c]-th read),
	// and the views InputSlots and InOrder return, made at load.
	slots         *Buffer
	slotsT, inSeq *Tensor
	// A fused weight (LoadQuantSplit): output columns [0, seg1), [seg1,
	// seg2) and [seg2, n) go to separate tensors; seg1 = seg2 = n for one.
	// glu (LoadQuantGLU): gate and up interleaved in runs of 64 columns.
	seg1, seg2 int
	glu        bool
	// f16w: every scale·(code − zero) is finite in fp16, so the _w
	// kernels, which decode the weights with their scales into fp16, may
	// run this weight.
	f16w bool
}

// segments returns the fused weight's output widths.
func (q *quant) segments() []int {
	if q.glu {
		return []int{q.n / 2}
	}
	w := []int{q.seg1}
	if q.seg2 > q.seg1 {
		w = append(w, q.seg2-q.seg1)
	}
	if q.n > q.seg2 {
		w = append(w, q.n-q.seg2)
	}
	return w
}

// qnames are the kernel names of qgemv.cu by bits/8 (0: 4 bits, 1: 8 bits),
// batch tiles (qmmaTiles) and dtype, made once so that a decode step formats
// no strings.
var qnames = func() (n struct {
	gemv     [2][2][len(qmmaTiles)]map[runtime.DType]string // [bits/8][groups not whole chunks][tile]
	norm     [2][2]map[runtime.DType]string                 // one tile, normalizing x (NormFuser)
	rope     [2][len(qmmaTiles)]map[runtime.DType]string    // with the q/k/v epilogue's RoPE (RoPEFuser)
	normRoPE [2]map[runtime.DType]string                    // both
	wg       [2][len(qmmaTiles)]map[runtime.DType]string    // warpgroup MMA (tiles past the first; groups of whole chunks)
	wgRoPE   [2][len(qmmaTiles)]map[runtime.DType]string    // the same with the q/k/v epilogue's RoPE
	ap       [2]map[runtime.DType]string                    // one tile, reading paged attention's parts (AttentionProjector)
	wide     [2]map[runtime.DType]string                    // one tile, GLU, blocks of qmmaWideWarps (GPTQTOOL_QMMA_WIDE)
	plain    [2]map[runtime.DType]string                    // one tile, plain, blocks of qmmaPlainWarps (GPTQTOOL_QMMA_PLAIN)
	expert   [2][2]map[runtime.DType]string                 // one tile a slot of a mixture of experts (ExpertMatMul) [bits/8][groups not whole chunks]
	runs     [2][2]map[runtime.DType]string                 // one tile a run of up to 8 slots of one expert (ExpertMatMul) [bits/8][groups not whole chunks]
	dequant  [2]map[runtime.DType]string
	gather   map[runtime.DType]string
	glu      map[runtime.DType]string
}) {
	n.gather = map[runtime.DType]string{}
	n.glu = map[runtime.DType]string{}
	for i, bits := range []int{4, 8} {
		n.dequant[i] = map[runtime.DType]string{}
		for j := range qmmaTiles {
			n.gemv[i][0][j] = map[runtime.DType]string{}
			n.gemv[i][1][j] = map[runtime.DType]string{}
		}
		// (The eight-tile pass exists on warpgroup MMA only: its other
		// tables stay empty.)
		n.norm[i][0], n.norm[i][1] = map[runtime.DType]string{}, map[runtime.DType]string{}
		n.normRoPE[i] = map[runtime.DType]string{}
		n.ap[i] = map[runtime.DType]string{}
		n.wide[i] = map[runtime.DType]string{}
		n.plain[i] = map[runtime.DType]string{}
		n.expert[i][0], n.expert[i][1] = map[runtime.DType]string{}, map[runtime.DType]string{}
		n.runs[i][0], n.runs[i][1] = map[runtime.DType]string{}, map[runtime.DType]string{}
		for j := range qmmaTiles {
			n.rope[i][j] = map[runtime.DType]string{}
			if j > 0 {
				n.wg[i][j], n.wgRoPE[i][j] = map[runtime.DType]string{}, map[runtime.DType]string{}
			}
		}
		for _, dt := range []runtime.DType{runtime.F16, runtime.BF16, runtime.F32} {
			n.dequant[i][dt] = fmt.Sprintf("qdequant%d_%s", bits, suffix(dt))
			n.gather[dt] = "gather_cols_" + suffix(dt)
			n.glu[dt] = "glu_rows_" + suffix(dt)
			for j, mt := range qmmaTiles {
				if qmmaSync(mt) {
					n.gemv[i][0][j][dt] = fmt.Sprintf("qmma%d_t%d_%s", bits, mt, suffix(dt))
					n.gemv[i][1][j][dt] = fmt.Sprintf("qmma%d_t%d_sg_%s", bits, mt, suffix(dt))
				}
			}
			n.norm[i][0][dt] = fmt.Sprintf("qmma%d_t1_n_%s", bits, suffix(dt))
			n.norm[i][1][dt] = fmt.Sprintf("qmma%d_t1_sg_n_%s", bits, suffix(dt))
			n.normRoPE[i][dt] = fmt.Sprintf("qmma%d_t1_n_r_%s", bits, suffix(dt))
			n.ap[i][dt] = fmt.Sprintf("qmma%d_t1_a_%s", bits, suffix(dt))
			n.wide[i][dt] = fmt.Sprintf("qmma%d_t1_g_%s", bits, suffix(dt))
			n.plain[i][dt] = fmt.Sprintf("qmma%d_t1_p_%s", bits, suffix(dt))
			n.expert[i][0][dt] = fmt.Sprintf("qmma%d_t1_e_%s", bits, suffix(dt))
			n.expert[i][1][dt] = fmt.Sprintf("qmma%d_t1_sg_e_%s", bits, suffix(dt))
			n.runs[i][0][dt] = fmt.Sprintf("qmma%d_t1_x_%s", bits, suffix(dt))
			n.runs[i][1][dt] = fmt.Sprintf("qmma%d_t1_sg_x_%s", bits, suffix(dt))
			for j, mt := range qmmaTiles {
				if qmmaSync(mt) {
					n.rope[i][j][dt] = fmt.Sprintf("qmma%d_t%d_r_%s", bits, mt, suffix(dt))
				}
				if j > 0 {
					n.wg[i][j][dt] = fmt.Sprintf("qmma%d_t%d_w_%s", bits, mt, suffix(dt))
					n.wgRoPE[i][j][dt] = fmt.Sprintf("qmma%d_t%d_w_r_%s", bits, mt, suffix(dt))
				}
			}
		}
	}
	return n
}()

// qmmaTiles are the batch tiles of 8 rows the qmma kernels are built for;
// qgemvRows, the most rows they take: more rows dequantize the weight into
// a scratch and multiply with cuBLAS. One, two and four tiles (qmmaSync)
// have mma.sync kernels, which take up to 32 rows a pass (passes of
// qmmaPass). (An eight-tile mma.sync kernel for 64 rows in one pass needed
// 182 registers and ~100 KiB of shared memory, one block an SM: on the
// H200 its gate/up product of a 7B layer took 238 µs against 81 µs for a
// pass of 32 rows.) On sm_90 the warpgroup-MMA kernels, of two to eight
// tiles, also take 33-64 rows in one pass (123 registers at eight tiles, two
// blocks an SM), so that a batch of 64 reads the weights once; their MMAs
// set the pace there, so a pass takes as few tiles as its rows need
// (qmmaTileFor: the 7B shape's decode step took 4.07 ms at 40 rows on eight
// tiles, 3.49 on five, against 3.14 at 32 rows on four).
var qmmaTiles = [...]int{1, 2, 3, 4, 5, 6, 7, 8}

// qmmaSync reports whether there are mma.sync kernels of tiles tiles.
func qmmaSync(tiles int) bool { return tiles == 1 || tiles == 2 || tiles == 4 }

// qmmaTileFor is the index in qmmaTiles of the fewest tiles that hold M
// rows (at most qgemvRows) on warpgroup MMA when wg, else of mma.sync
// kernels (M at most qmmaPass); with GPTQTOOL_QMMA_FIT=0 three tiles are
// four and five to seven eight, as before the fitted kernels (measured on
// the H200, 7B shape, 256 new tokens, the forty-first session: +4.7% /
// +4.5% at batch 20 / 24 and +17.1% / +8.9% / +3.2% at batch 40 / 48 / 56
// at 4 bits; +3.3% / +15.1% / +7.3% at batch 24 / 40 / 48 at 8 bits).
func (b *Backend) qmmaTileFor(M int, wg bool) int {
	tile := 0
	for {
		mt := qmmaTiles[tile]
		if mt*8 >= M && (wg || qmmaSync(mt)) && (b.qmmaFit || mt != 3 && (mt <= 4 || mt == 8)) {
			return tile
		}
		tile++
	}
}

const (
	qgemvRows = 64
	qmmaPass  = 32
)

// defaultFill is how many times a quantized product's blocks fill the SMs
// (the inputs split to reach it) by qfillClass, measured on the H200 with
// the 7B shape's decode (docs/benchmarks.md, "K split"): one-tile products
// of 1-4 rows are latency-bound and gain from three times the SMs' blocks
// (in the 7B, q/k/v then splits in 8 instead of the 6 of twice: +0.6-0.8%
// at batch 1 in the nineteenth session; o_proj and down reach a cluster's
// 8, or maxSplits' 7, either way), 5-8 rows from four times, and the two-
// and four-tile kernels (two blocks an SM) from one block an SM, which
// halves the split and its reduction.
var defaultFill = [4]int{3, 4, 1, 1}

// qfillClass is the class of a product of M rows (a pass) for
// defaultFill: 1-4, 5-8, 9-16 and 17-32 rows (or more, one pass of 33-64).
func qfillClass(M int) int {
	switch {
	case M <= 4:
		return 0
	case M <= 8:
		return 1
	case M <= 16:
		return 2
	}
	return 3
}

// parseFill reads GPTQTOOL_QMMA_FILL: empty (defaultFill), one count for
// every class, or four comma-separated counts by qfillClass; 0 does not
// split the inputs beyond what shared memory needs.
func parseFill(v string) ([4]int, error) {
	f := defaultFill
	if v == "" {
		return f, nil
	}
	parts, ok := settingValues(v, len(f))
	if !ok {
		return f, fmt.Errorf("cuda: GPTQTOOL_QMMA_FILL=%q: want one count or %d comma-separated counts", v, len(f))
	}
	for i := range f {
		n, err := strconv.Atoi(parts[i])
		if err != nil || n < 0 || n > 64 {
			return f, fmt.Errorf("cuda: GPTQTOOL_QMMA_FILL=%q: counts are integers 0-64", v)
		}
		f[i] = n
	}
	return f, nil
}

// qmmaBlocksPerSM is how many blocks of a qmma kernel of tile index tile
// an SM holds by their registers (the kernels' launch bounds); shared
// memory may allow fewer.
func qmmaBlocksPerSM(tile int) int {
	if tile == 0 {
		return 4
	}
	return 2
}

// qmmaWideWarps is the warps of a block of the wide GLU kernels (qgemv.cu
// _g: gate and up tiles of qmmaWideWarps/2 tiles of outputs, 16 columns
// each), which an SM holds qmmaWideBlocks of by their registers.
//
// defaultQmmaWide: GLU products of 1-8 rows run on them. On an H200 the
// 7B decode at batch 8 measured 3.4% faster with them (8 bits: 8.3%). At
// batch 1 they were first 2.9% slower: gate/up took 1.7 µs less, but
// down's blocks, launched while gate/up's held whole SMs' registers, went
// four to an SM on a quarter of the SMs and took 4 µs more. With down
// launched only as a wide product ends (lateAfterWide), batch 1 measured 492.3
// and 493.6 tok/s against 486.7 and 487.7 from 5 rows, 8 bits 346.0
// against 341.3 (docs/benchmarks.md, the eighteenth session).
const (
	qmmaWideWarps   = 14
	qmmaWideBlocks  = 2
	defaultQmmaWide = 1
)

// qmmaSplitWide plans a GLU product of M rows (at most 8: one tile) by a
// weight of K inputs and N columns (gate and up in runs of 64) on the wide
// kernels: N/32 tiles of outputs in slabs of qmmaWideWarps/2, each slab
// split along K into as many blocks as fill the SMs once at
// qmmaWideBlocks an SM (at most a cluster's maxClusterBlocks), x staged
// whole. On an H200 the 7B shape's gate/up (K 4,096, N 28,672) is 128
// slabs in 2 splits of 32 chunks: 256 blocks, two on each of 124 SMs and
// one on the other 8 (the 8-warp kernels' 448 blocks leave 66 SMs with
// four, 56 with three). ok is false where x's slice does not fit.
func (b *Backend) qmmaSplitWide(M, K, N, bits int) (p qmmaPlan, nb int, ok bool) {
	kb := chunkInputs(bits)
	CK := K / kb
	const half = qmmaWideWarps / 2
	nb = (N/32 + half - 1) / half
	ring := qmmaWideWarps * b.qstWideDepth(bits) * 512
	shared := func(P int) int { return ring + max(M*(P*kb+8)*2, M*qmmaWideWarps*16*4) }
	S := max(1, min(qmmaWideBlocks*b.sms/nb, CK, maxClusterBlocks))
	if b.wideSplit > 0 {
		S = min(S, b.wideSplit)
	}
	S, cps, ok := b.wholeSplit(CK, S, shared)
	if !ok {
		return p, nb, false
	}
	return qmmaPlan{S: S, cps: cps, P: cps, cluster: b.clusters && S > 1, shared: shared(cps)}, nb, true
}

// wholeSplit is the split of CK chunks in at least S blocks (more, up to
// maxClusterBlocks, while a block's slice does not fit) for the wide
// kernels, which stage x's whole slice: shared(cps) is a block's shared
// memory at cps chunks a block. ok is false where the slice of the most
// blocks does not fit either.
func (b *Backend) wholeSplit(CK, S int, shared func(cps int) int) (int, int, bool) {
	cps := (CK + S - 1) / S
	limit := min(b.shared, qmmaShared)
	for shared(cps) > limit && S < min(CK, maxClusterBlocks) {
		S++
		cps = (CK + S - 1) / S
	}
	return (CK + cps - 1) / cps, cps, shared(cps) <= limit
}

// defaultScalesWG is the most tiles (8 rows each) of a warpgroup product
// that reads a symmetric weight's scales alone rather than its pairs. On
// the H200 (docs/benchmarks.md, the forty-sixth session) the 4-bit step
// with them took +0.7% to +1.8% at 12-56 rows (two to seven tiles) and 8
// bits +0.7% to +1.4% at 16 and 32, but 64 rows (eight tiles) lost 0.8%,
// so the kernels of eight tiles keep the pairs.
const defaultScalesWG = 7

// defaultQmmaPush: the clustered products of one tile and 8 warps of up
// to this many rows add up their splits by pushing their sums (QF_PUSH).
// On an H200 (7B shape, 4-bit g128 act order) batch 1 measured 506.1 and
// 506.5 tok/s against 497.8 and 498.8 (+1.5%), batch 2 960.7 against
// 939.0 and batch 4 1,856.7 against 1,821.3; batch 8 lost 1.7% (3,407.5
// against 3,461.2) and 8 bits at batch 1 were even (347.4 against 347.5)
// (docs/benchmarks.md, the twentieth session).
const defaultQmmaPush = 4

// qmmaPlainWarps is the warps of a block of the plain wide kernels
// (qgemv.cu _p: 16 tiles of 16 columns), one block an SM.
//
// defaultQmmaPlain to defaultQmmaPlainMax: plain products of these rows
// (down_proj's, in a decode step) run on them, their splits added up
// through global memory (GPTQTOOL_QMMA_PLAIN_CLUSTER=1: in clusters), and
// a wide GLU product of those rows lets them launch as its loops end
// (lateAfterWide). In clusters they lose: at one block an SM an H200 holds
// only 15 clusters of 8, so the 7B down product's 16th waits for one of
// them (down 21.1 µs against 14.3, the eighteenth session; 8-bit batch 1
// 328.7 tok/s against 361.9, the twenty-seventh). Through global memory
// and launched early, on an H200 (7B shape, g128 act order, the
// twenty-eighth session's first call, each against GPTQTOOL_NONE=1 on the
// same machine): batch 1 519.9 tok/s against 512.2 at 4 bits (+1.5%) and
// 366.7 against 361.0 at 8 bits (+1.6%); at batch 2 -0.2% at 4 bits
// (971.5 against 974.0) and +0.8% at 8 (698.4 against 692.7); at batch 4
// -1.0% at 4 bits and even at 8; at batch 8 -5.8% and -3.6% (the
// twenty-seventh session). So one row.
const (
	qmmaPlainWarps      = 16
	defaultQmmaPlain    = 1
	defaultQmmaPlainMax = 1
)

// qmmaSplitPlain plans a plain product of M rows (at most 8: one tile) by
// a weight of K inputs and N outputs on the plain wide kernels: slabs of
// qmmaPlainWarps tiles, each split along K into as many blocks as fill the
// SMs once at one block an SM (at most a cluster's maxClusterBlocks), x
// staged whole, and shared memory past half an SM's, so that an SM never
// holds two of them. On an H200 the 7B shape's down product (K 14,336, N
// 4,096) is 16 slabs in 8 splits of 28 chunks: 128 blocks. ok is false
// where x's slice does not fit or there is no room to keep the blocks one
// an SM.
func (b *Backend) qmmaSplitPlain(M, K, N, bits int) (p qmmaPlan, nb int, ok bool) {
	kb := chunkInputs(bits)
	CK := K / kb
	nb = (N + 16*qmmaPlainWarps - 1) / (16 * qmmaPlainWarps)
	ring := qmmaPlainWarps * b.qstWideDepth(bits) * 512
	shared := func(P int) int { return ring + max(M*(P*kb+8)*2, M*qmmaPlainWarps*16*4) }
	S, cps, ok := b.wholeSplit(CK, max(1, min(b.sms/nb, CK, maxClusterBlocks)), shared)
	if !ok {
		return p, nb, false
	}
	sh := shared(cps)
	// One block an SM: more than half of its shared memory (spreadShared
	// with the SMs' share of nb·S blocks, one where they fit at once).
	if nb*S <= b.sms {
		if sh = b.spreadShared(sh, nb*S, 2); 2*(sh+1<<10) <= b.smemSM {
			return p, nb, false
		}
	}
	return qmmaPlan{S: S, cps: cps, P: cps, cluster: b.clusters && !b.plainGlobal && S > 1, shared: sh}, nb, true
}

// defaultMaxS1 is the most K splits of a product of 1-4 rows whose
// clusters of maxClusterBlocks would take at most two blocks an SM (a
// cluster of 7 blocks at most): an H200's GPCs hold 30 clusters of 8 at
// two blocks an SM, so that two of the 7B down product's 32 ran three
// blocks to an SM on 16 SMs, and every cluster waited for them; in 7
// splits its body took 11.9 µs against 14.3 at batch 1 (docs/benchmarks.md,
// the eighteenth session).
const defaultMaxS1 = 7

// maxSplits is the most K splits of a qmma product of M rows in nb column
// slabs (0: no cap): GPTQTOOL_QMMA_MAXS where set, else defaultMaxS1 for
// 1-8 rows whose clusters of maxClusterBlocks would make at most two
// blocks an SM (nb·8 <= 2·SMs, where the GPCs' shapes may not hold them
// all: 30 of 8 on the H200, not 33). Products of more slabs run a third
// block on most SMs whatever their split: the 7B q/k/v product (48 slabs)
// measured faster in 8 splits than in 7 or 6 (the nineteenth session).
// Products of attention's parts (ap: o_proj at 1-4 rows) keep theirs: in 7
// splits the 7B o_proj staged its larger slices in 2.9 µs against 1.7. At
// 5-8 rows the 7B o_proj (then a plain product) in 7 splits gave batch 8
// 3,552 tok/s against 3,508 (the twenty-first session).
func (b *Backend) maxSplits(M, nb int, ap bool) int {
	switch {
	case ap:
		return 0
	case b.qmmaMaxS > 0:
		return b.qmmaMaxS
	case qfillClass(M) <= 1 && nb*maxClusterBlocks <= 2*b.sms:
		return defaultMaxS1
	}
	return 0
}

// qstWideDepth is the wide kernels' (_g and _p) chunks in flight a warp:
// defaultQSTWide unless GPTQTOOL_QMMA_WIDE_QST sets another (QSTG in
// qgemv.cu).
func (b *Backend) qstWideDepth(bits int) int {
	if b.qstWide != 0 {
		return b.qstWide
	}
	return defaultQSTWide
}

// defaultQSTWide is the wide kernels' ring depth at either width (QSTG in
// qgemv.cu). At 8 bits it had been the one-tile kernels' 8: on the H200
// (7B shape, 8-bit g128 act order) 4 gave batch 1 352.8 and 352.9 tok/s
// against 350.0, 350.4 and 350.5 in two calls, 2 gave 349.2, 16 342.0, and
// batch 8 was even at 4 (docs/benchmarks.md, the twenty-first session).
const defaultQSTWide = 4

// qmmaSharedReserve is shared memory a qmma block takes beyond its dynamic
// share: its static arrays and the 1 KiB the driver reserves a block.
const qmmaSharedReserve = 3 << 10

// maxClusterBlocks is the largest portable thread-block cluster: the most
// blocks of a split product that reduce in shared memory.
const maxClusterBlocks = 8

// qmmaShared caps a qmma block's shared memory so that several blocks share
// an SM; defaultQST4 and defaultQST8 are the chunks in flight per warp of
// the 4- and 8-bit kernels of more than one tile (QST_4, QST_8 in
// qgemv.cu; GPTQTOOL_QMMA_QST sets another for both), and the kernels of
// one tile's rings are defaultQST1 deep (QST1_4, QST1_8). The kernels of
// more tiles at 4 bits, 7B decode with 256 new tokens: rings of 4 gave
// 5,815 / 8,104 / 11,694 / 12,999 / 14,799 tok/s at batch 16 / 24 / 40 /
// 48 / 64 against 5,763 / 7,990 / 11,439 / 12,856 / 14,765 with 8
// (+0.2-2.2%), even at 32; at 8 bits 4 lost 5.9% / 3.3% / 1.3% at 16 /
// 32 / 64 (docs/benchmarks.md, the forty-second session; the forty-third
// repeated the 4-bit gains). The kernels of one tile, measured on an H200
// with the 7B decode: at 4 bits, 4 chunks ran batch 1 and 8 4.2% and 2.8%
// faster than 8 (2 chunks: 2.8% slower; the seventeenth session); at 8
// bits 4 chunks were then 5.7% slower, but with today's kernels 358.98
// tok/s against 352.47 and 352.59 at batch 1 (+1.8%) and 2,614 against
// 2,540 and 2,538 at batch 8 (+2.9%), 16 chunks 317.6 (docs/benchmarks.md,
// the twenty-first session).
const (
	qmmaShared  = 100 << 10
	defaultQST4 = 4
	defaultQST8 = 8
	defaultQST1 = 4
)

// defaultQSTRoPE8 is the depth of the 8-bit q/k/v kernels of one tile
// (the _r kernels, RoPE in their epilogue; QSTR8 in qgemv.cu) where
// GPTQTOOL_QMMA_ROPE_QST sets none: half of a 7B block's slice of 16
// chunks a warp in flight before its wait. On the H200 (7B shape, 8-bit
// g128 act order, batch 1) 364.3 tok/s against 362.8 and 362.7, in a
// second call 361.1 and 361.1 against 359.0 and 359.0, and as the default
// 360.9 and 360.8 against 358.4 and 358.5 (+0.4-0.7%); batch 8 lost 0.5%
// (2,621 against 2,632-2,634), and 16 chunks gave 337.3 at batch 1. At 4
// bits 8 chunks (the whole slice) were 2.5% slower (499.7 against 512.7),
// so those keep the one-tile depth (docs/benchmarks.md, the
// twenty-seventh session).
const defaultQSTRoPE8 = 8

// ropeDepth is the ring depth of the bits-bit _r kernels of one tile (0:
// the one-tile kernels' own, qstDepth): GPTQTOOL_QMMA_ROPE_QST where set,
// else defaultQSTRoPE8 at 8 bits, as qgemv.cu's QD works it out.
func (b *Backend) ropeDepth(bits int) int {
	switch {
	case b.qstRoPE != 0:
		return b.qstRoPE
	case bits == 8:
		return defaultQSTRoPE8
	}
	return 0
}

// qstDepth is the chunks in flight per warp of the bits-bit qmma kernels
// of tile index tile (QST1_4 or QST1_8 in qgemv.cu for one tile, QST_4 or
// QST_8 for more), and qmmaRing a block's ring: eight warps' rings of
// qstDepth 512-byte chunks.
func (b *Backend) qstDepth(tile, bits int) int {
	switch d := b.qst[min(tile, 1)]; {
	case d != 0:
		return d
	case tile == 0:
		return defaultQST1
	case bits == 4:
		return defaultQST4
	}
	return defaultQST8
}

func (b *Backend) qmmaRing(tile, bits int) int { return 8 * b.qstDepth(tile, bits) * 512 }

// parseQST reads GPTQTOOL_QMMA_QST: empty (zeros: the defaults of
// qstDepth), one depth for every qmma kernel, or two comma-separated
// depths, the kernels of one tile's first; depths are 2, 4, 8 or 16
// chunks.
func parseQST(v string) ([2]int, error) {
	var d [2]int
	if v == "" {
		return d, nil
	}
	parts, ok := settingValues(v, len(d))
	if !ok {
		return d, fmt.Errorf("cuda: GPTQTOOL_QMMA_QST=%q: want one depth or two comma-separated depths", v)
	}
	for i := range d {
		n, err := strconv.Atoi(parts[i])
		if err != nil || !qstDepthOK(n) {
			return [2]int{}, fmt.Errorf("cuda: GPTQTOOL_QMMA_QST=%q: depths are 2, 4, 8 or 16 chunks", v)
		}
		d[i] = n
	}
	return d, nil
}

// parseSplits reads GPTQTOOL_QMMA_S: comma-separated KxN:S items, each
// splitting the inputs of the qmma products by weights of K inputs and N
// outputs in S blocks (for measuring one product's splits at a time, e.g.
// 4096x6144:8 for the 7B q/k/v product); empty: none.
func parseSplits(v string) (map[[2]int]int, error) {
	if v == "" {
		return nil, nil
	}
	m := map[[2]int]int{}
	for _, it := range strings.Split(v, ",") {
		var k, n, sp int
		var rest string
		c, _ := fmt.Sscanf(strings.TrimSpace(it)+"|", "%dx%d:%d%s", &k, &n, &sp, &rest)
		if c != 4 || rest != "|" || k < 1 || n < 1 || sp < 1 || sp > maxClusterBlocks {
			return nil, fmt.Errorf("cuda: GPTQTOOL_QMMA_S=%q: want KxN:S items (S 1-%d), comma-separated; %q is not one", v, maxClusterBlocks, it)
		}
		m[[2]int{k, n}] = sp
	}
	return m, nil
}

// qstDepthOK reports whether n chunks a warp is a ring depth the qmma
// kernels take: 2, 4, 8 or 16 (qgemv.cu QST_OK).
func qstDepthOK(n int) bool { return n == 2 || n == 4 || n == 8 || n == 16 }

// settingValues splits a setting of one value for each of n places, or one
// for all of them, into the n values (spaces around each trimmed); ok is
// false for any other number of comma-separated values.
func settingValues(v string, n int) (vals []string, ok bool) {
	parts := strings.Split(v, ",")
	if len(parts) != 1 && len(parts) != n {
		return nil, false
	}
	vals = make([]string, n)
	for i := range vals {
		vals[i] = strings.TrimSpace(parts[min(i, len(parts)-1)])
	}
	return vals, true
}

// qstDefines are the NVRTC defines of depths set by GPTQTOOL_QMMA_QST
// (none for the defaults): QST1 sets the one-tile kernels' depth for both
// bit widths.
func qstDefines(d [2]int) []string {
	if d == [2]int{} {
		return nil
	}
	return []string{"-DQST=" + strconv.Itoa(d[1]), "-DQST1=" + strconv.Itoa(d[0])}
}

// LoadQuant implements runtime.QuantLoader for 4- and 8-bit weights whose
// K is a multiple of 64 (4 bits) or 32 (8 bits), groups a multiple of 16
// inputs and N a multiple of 16; other weights get
// runtime.ErrQuantUnsupported.
func (b *Backend) LoadQuant(q *runtime.QuantWeight) (runtime.Tensor, error) {
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("cuda: %w", err)
	}
	return b.loadQuant(q, columnSource{ws: []*runtime.QuantWeight{q}}, quant{seg1: q.N, seg2: q.N})
}

// LoadQuantSplit implements runtime.FusedQuantLoader for two or three
// weights LoadQuant takes that share K, bits, group size and permutation:
// their columns side by side.
func (b *Backend) LoadQuantSplit(ws []*runtime.QuantWeight) (runtime.Tensor, error) {
	if len(ws) < 2 || len(ws) > 3 || !runtime.SamePermutation(ws...) {
		return nil, fmt.Errorf("cuda: %w: %d weights to fuse, or different layouts", runtime.ErrQuantUnsupported, len(ws))
	}
	var idx [][2]int // fused column -> (weight, column)
	for i, w := range ws {
		if err := w.Validate(); err != nil {
			return nil, fmt.Errorf("cuda: %w", err)
		}
		for n := range w.N {
			idx = append(idx, [2]int{i, n})
		}
	}
	f := fuseGroups(ws, idx)
	lay := quant{seg1: ws[0].N, seg2: f.N}
	if len(ws) == 3 {
		lay.seg2 = ws[0].N + ws[1].N
	}
	return b.loadQuant(f, columnSource{ws, idx}, lay)
}

// LoadQuantGLU implements runtime.FusedQuantLoader: gate and up columns
// interleaved in runs of 64 (N a multiple of 64).
func (b *Backend) LoadQuantGLU(gate, up *runtime.QuantWeight) (runtime.Tensor, error) {
	if gate.N != up.N || gate.N%(qcolsGLU) != 0 || !runtime.SamePermutation(gate, up) {
		return nil, fmt.Errorf("cuda: %w: gate [%d %d] and up [%d %d] do not fuse", runtime.ErrQuantUnsupported, gate.N, gate.K, up.N, up.K)
	}
	for _, w := range []*runtime.QuantWeight{gate, up} {
		if err := w.Validate(); err != nil {
			return nil, fmt.Errorf("cuda: %w", err)
		}
	}
	idx := make([][2]int, 2*gate.N)
	for c := range idx {
		run, j := c/(2*qcolsGLU), c%(2*qcolsGLU)
		idx[c] = [2]int{j / qcolsGLU, run*qcolsGLU + j%qcolsGLU}
	}
	ws := []*runtime.QuantWeight{gate, up}
	return b.loadQuant(fuseGroups(ws, idx), columnSource{ws, idx}, quant{seg1: len(idx), seg2: len(idx), glu: true})
}

// qcolsGLU is the run of gate (then up) columns in a GLU weight: half the
// GEMV block's 128 columns (QCOLS in qgemv.cu).
const qcolsGLU = 64

// columnSource is where the columns of a weight being loaded come from:
// column c is column idx[c][1] of ws[idx[c][0]] (the same K, group size
// and permutation), or with idx nil the columns of ws[0] as they are.
type columnSource struct {
	ws  []*runtime.QuantWeight
	idx [][2]int
}

// fuseGroups builds the weight whose column c is column idx[c][1] of
// ws[idx[c][0]], but for its codes (nil): tileCodes reads them from the
// weights themselves.
func fuseGroups(ws []*runtime.QuantWeight, idx [][2]int) *runtime.QuantWeight {
	w0 := ws[0]
	N, G := len(idx), w0.Groups()
	f := &runtime.QuantWeight{Bits: w0.Bits, K: w0.K, N: N, GroupSize: w0.GroupSize, Perm: w0.Perm,
		Scales: make([]uint16, G*N), Zeros: make([]uint16, G*N)}
	for g := range G {
		for c, wn := range idx {
			w := ws[wn[0]]
			f.Scales[g*N+c] = w.Scales[g*w.N+wn[1]]
			f.Zeros[g*N+c] = w.Zeros[g*w.N+wn[1]]
		}
	}
	return f
}

// loadQuant uploads a validated q, its codes those of the columns of src,
// with the fused layout of lay (seg1, seg2, glu).
func (b *Backend) loadQuant(q *runtime.QuantWeight, src columnSource, lay quant) (runtime.Tensor, error) {
	if q.Bits != 4 && q.Bits != 8 {
		return nil, fmt.Errorf("cuda: %w: %d bits", runtime.ErrQuantUnsupported, q.Bits)
	}
	kb := chunkInputs(q.Bits)
	if q.K%kb != 0 || q.GroupSize%16 != 0 || q.N%16 != 0 {
		return nil, fmt.Errorf("cuda: %w: K %d, N %d, group size %d with %d bits", runtime.ErrQuantUnsupported, q.K, q.N, q.GroupSize, q.Bits)
	}
	N := q.N
	qw := tileCodes(q.K, N, q.Bits, src)
	sz := make([]byte, 4*len(q.Scales))
	var szh []byte
	if b.scalesOnly && symmetricZeros(q) {
		szh = make([]byte, 2*len(q.Scales))
	}
	var maxScale uint16 // the largest |scale|'s bits (fp16 magnitudes order as their bits)
	for i, s := range q.Scales {
		// 1024 + z is exact in fp16 (spacing 1 in [1024, 2048)): 0x6400 + z.
		binary.LittleEndian.PutUint32(sz[4*i:], uint32(s)|uint32(0x6400+q.Zeros[i])<<16)
		if szh != nil {
			binary.LittleEndian.PutUint16(szh[2*i:], s)
		}
		maxScale = max(maxScale, s&0x7fff)
	}
	// The largest weight the _w kernels round to fp16 is the largest
	// scale times 2^bits (a code minus a zero in [0, 2^bits]).
	lay.f16w = half.F16ToF32(maxScale)*float32(int(1)<<q.Bits) <= 65504
	var perm, slots []byte
	if q.Perm != nil {
		perm, slots = make([]byte, 4*q.K), make([]byte, 4*q.K)
		for k, p := range q.Perm {
			binary.LittleEndian.PutUint32(perm[4*k:], uint32(p))
			binary.LittleEndian.PutUint32(slots[4*p:], uint32(k))
		}
	}

	b.enter()
	defer b.exit()
	t := &Tensor{dt: runtime.I32, shape: []int{N, q.K}, n: len(qw) / 4,
		q: &quant{bits: q.Bits, k: q.K, n: N, gs: q.GroupSize, seg1: lay.seg1, seg2: lay.seg2, glu: lay.glu, f16w: lay.f16w}}
	var err error
	up := func(raw []byte) (*Buffer, error) {
		buf, err := b.allocBufferLocked(int64(len(raw)))
		if err != nil {
			return nil, err
		}
		return buf, b.htod(buf.Ptr, raw)
	}
	var w *Buffer
	if w, err = up(qw); err == nil {
		t.ptr, t.cls = w.Ptr, w.cls
		if t.q.sz, err = up(sz); err == nil && szh != nil {
			t.q.szh, err = up(szh)
		}
		if err == nil && perm != nil {
			if t.q.perm, err = up(perm); err == nil {
				t.q.slots, err = up(slots)
			}
		}
	}
	if err != nil {
		b.releaseQuant(t)
		return nil, fmt.Errorf("cuda: quantized weight [%d %d]: %w", N, q.K, err)
	}
	if t.q.perm != nil {
		t.q.slotsT = &Tensor{dt: runtime.I32, shape: []int{q.K}, n: q.K, ptr: t.q.slots.Ptr}
		seq := *t.q
		seq.perm, seq.slots, seq.slotsT = nil, nil, nil
		t.q.inSeq = &Tensor{dt: t.dt, shape: t.shape, n: t.n, ptr: t.ptr, q: &seq}
	}
	return t, nil
}

// symmetricZeros reports whether every zero of q is 2^(bits-1), the
// symmetric quantizer's, which qgemv.cu's QG_SZ16 kernels take as a
// constant.
func symmetricZeros(q *runtime.QuantWeight) bool {
	z := uint16(1) << (q.Bits - 1)
	for _, v := range q.Zeros {
		if v != z {
			return false
		}
	}
	return len(q.Zeros) > 0
}

// scales are the kernel name and the scales' address for a product of
// this weight by kernel name: its kernels.ScalesOnly build and szh where
// the weight has them and the kernel may read them (alone), else name and
// the pairs.
func (q *quant) scales(name string, alone bool) (string, uint64) {
	if q.szh != nil && alone {
		return name + kernels.ScalesOnly, q.szh.Ptr
	}
	return name, q.sz.Ptr
}

// InputSlots implements runtime.InputOrderer: the inverse of the act-order
// permutation a quantized weight was loaded with (one tensor a weight; a
// fused weight's parts share theirs). GPTQTOOL_INPUT_ORDER=0 reports none,
// for comparisons.
func (b *Backend) InputSlots(w runtime.Tensor) runtime.Tensor {
	if wt := b.tensor(w); wt.q != nil && wt.q.slotsT != nil && b.inputOrder {
		return wt.q.slotsT
	}
	return nil
}

// InOrder implements runtime.InputOrderer: the weight without its
// permutation (the same codes and scales), whose products read x as it is.
func (b *Backend) InOrder(w runtime.Tensor) runtime.Tensor {
	if wt := b.tensor(w); wt.q != nil && wt.q.inSeq != nil {
		return wt.q.inSeq
	}
	return w
}

// chunkInputs is the inputs of one 16-byte lane chunk of the tiled layout:
// four mma steps of 16 at 4 bits, two at 8.
func chunkInputs(bits int) int {
	if bits == 4 {
		return 64
	}
	return 32
}

// tileCodes packs the codes of the weight [K, N] of bits whose columns
// come from src in qgemv.cu's tiled layout: per 16-column tile and chunk of
// inputs, 32 lanes of 4 words holding each lane's A fragments.
//
// Work goes by chunks of inputs (rows of the codes) across GOMAXPROCS
// goroutines; a chunk's tiles, left to right, copy their 16 columns of the
// chunk's rows into a block first (a tile whose columns are not one run of
// one weight gathers them one by one), so that the codes are read along
// their rows.
func tileCodes(K, N, bits int, src columnSource) []byte {
	kb := chunkInputs(bits)
	CK, NT := K/kb, N/16
	out := make([]byte, K*N*bits/8)
	// run[nt]: the weight and first column of tile nt's 16 columns, or
	// weight -1 where they are not one run.
	type tileRun struct{ w, c int }
	run := make([]tileRun, NT)
	for nt := range run {
		if src.idx == nil {
			run[nt] = tileRun{0, 16 * nt}
			continue
		}
		cols := src.idx[16*nt : 16*nt+16]
		run[nt] = tileRun{cols[0][0], cols[0][1]}
		for i, wc := range cols {
			if wc[0] != cols[0][0] || wc[1] != cols[0][1]+i {
				run[nt].w = -1
				break
			}
		}
	}
	// A chunk of every tile is 512 bytes a tile written (N/16 tiles): one
	// chunk is work enough for a goroutine (a 4096-input weight has only
	// 64 chunks; the first version took 64 a goroutine and ran on one CPU,
	// most of a 7B model's 30 s load on the H200 machine).
	parallelRows(CK, 1, func(c0, c1 int) {
		// pairs[p][n]: the codes of column n of a tile at inputs 2p and
		// 2p+1 of a chunk, in bits 0-7 and 16-23 (as a lane packs them).
		var pairs [32][16]uint32
		var row [2][16]uint8
		for kc := c0; kc < c1; kc++ {
			for nt, tr := range run {
				for p := range kb / 2 {
					for h := range 2 {
						k := kc*kb + 2*p + h
						if tr.w >= 0 {
							w := src.ws[tr.w]
							copy(row[h][:], w.Codes[k*w.N+tr.c:k*w.N+tr.c+16])
							continue
						}
						for n, wc := range src.idx[16*nt : 16*nt+16] {
							w := src.ws[wc[0]]
							row[h][n] = w.Codes[k*w.N+wc[1]]
						}
					}
					for n := range 16 {
						pairs[p][n] = uint32(row[0][n]) | uint32(row[1][n])<<16
					}
				}
				base := ((nt*CK + kc) * 32) * 16
				tileBlock((*[32 * 16]byte)(out[base:base+32*16]), &pairs, bits)
			}
		}
	})
	return out
}

// tileBlock writes the 32 lanes' 4 words of one tile and chunk of inputs
// from its pairs of codes (pairs[p][n]: column n at inputs 2p and 2p+1, in
// bits 0-7 and 16-23).
//
// Lane (g, t) = (lane/4, lane%4) holds, per mma step of 16 inputs at k0,
// the codes of columns g and g+8 at inputs k0+2t, +1, +8 and +9: pair i
// (columns g + 8(i&1), inputs k0 + 2t + 8(i>>1) and the next) goes to bits
// (bits·i, low input) and (bits·i + 16, high input) of its word.
func tileBlock(out *[32 * 16]byte, pairs *[32][16]uint32, bits int) {
	for lane := range 32 {
		g, t := lane/4, lane%4
		var words [4]uint32
		if bits == 4 {
			for j := range 4 {
				p := 8*j + t // inputs 16j + 2t
				words[j] = pairs[p][g] | pairs[p][g+8]<<4 | pairs[p+4][g]<<8 | pairs[p+4][g+8]<<12
			}
		} else {
			for j := range 4 {
				p := 8*(j/2) + t + 4*(j&1) // inputs 16(j/2) + 2t + 8(j&1)
				words[j] = pairs[p][g] | pairs[p][g+8]<<8
			}
		}
		for j, w := range words {
			binary.LittleEndian.PutUint32(out[16*lane+4*j:], w)
		}
	}
}

// parallelRows calls fn on row ranges covering [0, rows) from one
// goroutine per CPU, each range at least grain rows (but one).
func parallelRows(rows, grain int, fn func(r0, r1 int)) {
	workers := min(goruntime.GOMAXPROCS(0), max(rows/grain, 1))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(rows*w/workers, rows*(w+1)/workers)
		}()
	}
	wg.Wait()
}

// releaseQuant gives back a quantized tensor's buffers.
func (b *Backend) releaseQuant(t *Tensor) {
	for _, buf := range []*Buffer{t.q.sz, t.q.szh, t.q.perm, t.q.slots} {
		b.freeBufferLocked(buf)
	}
	if t.cls != 0 {
		b.alloc.release(t.ptr, t.cls)
	}
}

// WarpgroupMMA reports whether the device runs the _w kernels (sm_90:
// wgmma).
func (b *Backend) WarpgroupMMA() bool { return b.arch == 90 }

// defaultQmmaWG is the fewest tiles of the mma.sync kernels' 1, 2, 4 that
// a pass needs to run on warpgroup MMA instead: two, from 9 rows. Measured
// on the H200 (7B shape, g128 act order, 256 new tokens; docs/benchmarks.md,
// the forty-first and forty-second sessions) against four (from 17 rows,
// the default since the 2026-12-01 seventh session, when two were slower
// at batch 16): at 4 bits +14.1% at batch 12 and +13.2% at batch 16 (4,385
// / 5,393 tok/s against 3,843 / 4,764), at 8 bits +20.5% and +18.6%
// (3,820 / 4,768 against 3,171 / 4,022).
const defaultQmmaWG = 2

// parseQmmaWG reads GPTQTOOL_QMMA_WG: empty (defaultQmmaWG), 0 (no
// warpgroup MMA: mma.sync in passes of 32 rows), 1 (warpgroup MMA from two
// tiles, 9 rows: the default) or 2 (from four tiles, 17 rows: the default
// before the forty-first session).
func parseQmmaWG(v string) (int, error) {
	switch v {
	case "":
		return defaultQmmaWG, nil
	case "0":
		return 0, nil
	case "1":
		return 2, nil
	case "2":
		return 4, nil
	}
	return 0, fmt.Errorf("cuda: GPTQTOOL_QMMA_WG=%q: want 0 (mma.sync only), 1 (warpgroup MMA from 9 rows, the default) or 2 (from 17 rows)", v)
}

// SetQMMAWG sets the fewest tiles of 8 rows a pass (2, 4 or 8) whose
// products run on warpgroup MMA (groups of whole chunks, weights whose
// decode fits fp16; 33-64 rows then in one pass), or none (0: mma.sync in
// passes of 32), as GPTQTOOL_QMMA_WG does; for tests and comparisons.
// None where WarpgroupMMA is false, whatever tiles says.
func (b *Backend) SetQMMAWG(tiles int) {
	b.enter()
	defer b.exit()
	b.qmmaWG = tiles
}

// QMMAWG is SetQMMAWG's setting.
func (b *Backend) QMMAWG() int {
	b.enter()
	defer b.exit()
	return b.qmmaWG
}

// SetQMMAWide runs the GLU products of rows rows or more, up to a tile of
// 8, on the wide kernels (GPTQTOOL_QMMA_WIDE; 0: none), for tests and
// measurements.
func (b *Backend) SetQMMAWide(rows int) {
	b.enter()
	defer b.exit()
	b.qmmaWide = rows
}

// QMMAWide is SetQMMAWide's setting.
func (b *Backend) QMMAWide() int {
	b.enter()
	defer b.exit()
	return b.qmmaWide
}

// SetQGLUPieces runs the GLU products of 1 to rows rows (at most
// qgluMaxRows) that the wide kernels would run on the pieces kernel
// instead, at both widths (GPTQTOOL_QGLU_PIECES; 0: none, -1: the
// default, qgluRows), for tests and measurements.
func (b *Backend) SetQGLUPieces(rows int) {
	b.enter()
	defer b.exit()
	b.qgluPieces = min(rows, qgluMaxRows)
}

// SetQGLUBlocks caps the pieces kernel's grid at n blocks (0: the blocks
// the SMs hold at once), for tests: its outputs do not depend on it.
func (b *Backend) SetQGLUBlocks(n int) {
	b.enter()
	defer b.exit()
	b.qgluBlocks = n
}

// SetQGLUShape sets the pieces kernel's warps a block (16 or 32) and
// chunks in flight a warp (0, 0: qgluShape's defaults), for tests.
func (b *Backend) SetQGLUShape(warps, depth int) {
	if err := qgluShapeErr(warps, depth); err != nil {
		panic("cuda: " + err.Error())
	}
	b.enter()
	defer b.exit()
	b.qgluW, b.qgluD = warps, depth
}

// SetQGLUPad sets the shared memory the pieces kernel's blocks take beyond
// their need (as GPTQTOOL_QGLU_SMEM does; -1: qgluShared's rule), for
// tests and benchmarks.
func (b *Backend) SetQGLUPad(n int) {
	b.enter()
	defer b.exit()
	b.qgluPad = max(n, -1)
}

// qgluRows is the most rows of a GLU product of bits that the pieces
// kernel runs where the wide kernels would: SetQGLUPieces' setting, or by
// default four rows at 8 bits, where pieces even out gate/up's end (+3.2%
// at batch 1 on the H200, 391.6 tok/s against 379.3, and +1.3% at batch 2,
// 700.2 against 691.2, the fiftieth session; at 3 and 4 rows even until
// the pieces kernel took its counter by one instruction (ql_take), then
// 1,052.2 against 1,017.6 and 1,397.4 against 1,352.1, the fifty-second;
// docs/benchmarks.md); and one row at 4 bits, where the wide kernels were
// faster until then (509.0 against 547.1 at batch 1, the fiftieth
// session) and the pieces kernel is now (562.2 and 562.3 against 546.2
// and 546.7, in two calls); and two rows at 4 bits with 8 chunks in
// flight a warp (defaultQGLUShape: 992.4 and 992.7 against 977.5 and
// 976.9, two calls of the fifty-third session; with 4 chunks 938.9), but
// not three or four (1,399.4 / 1,858.9 against 1,426.1 / 1,894.8).
func (b *Backend) qgluRows(bits int) int {
	if b.qgluPieces >= 0 {
		return b.qgluPieces
	}
	switch bits {
	case 8:
		return defaultQGLURows8
	case 4:
		return defaultQGLURows4
	}
	return 0
}

// defaultQGLURows8 and defaultQGLURows4 are qgluRows' defaults at 8 and 4
// bits.
const (
	defaultQGLURows8 = 4
	defaultQGLURows4 = 2
)

// QGLUPieces is SetQGLUPieces' setting.
func (b *Backend) QGLUPieces() int {
	b.enter()
	defer b.exit()
	return b.qgluPieces
}

// plainRows reports whether the plain products of M rows run on the plain
// wide kernels (GPTQTOOL_QMMA_PLAIN, GPTQTOOL_QMMA_PLAIN_MAX).
func (b *Backend) plainRows(M int) bool {
	return b.qmmaPlain > 0 && M >= b.qmmaPlain && M <= b.qmmaPlainMax
}

// lateAfterWide reports whether the kernel after a wide GLU product of M
// rows launches only as the product ends (QF_LATE) rather than as its loops
// end. Launched once its loops were done, down's blocks took the SMs its
// blocks left first, four to an SM on a quarter of them: on the H200 (7B
// shape, 4-bit g128 act order) batch 8 gave 3,467 tok/s late against 3,326
// (+4.2%), and batch 1 with wide kernels from one row 486.4 against 485.1
// (docs/benchmarks.md, the eighteenth session; the switch that launched it
// early, GPTQTOOL_QMMA_WIDE_LATE=0, is removed). That kernel is
// down_proj's product of the same rows: where it runs on the plain wide kernels (plainRows), whose
// blocks take an SM each by their shared memory, it launches early, its
// blocks starting on the SMs that gate/up's leave and copying their first
// weights meanwhile without crowding four to an SM as the 8-warp kernels'
// do (launched early, those lost 5.3% at 8-bit batch 1; the plain kernels
// gain 1.5%: defaultQmmaPlain).
func (b *Backend) lateAfterWide(M int) bool {
	return !b.plainRows(M)
}

// SetQMMAPlain runs the plain products of rows to most rows on the plain
// wide kernels (GPTQTOOL_QMMA_PLAIN, GPTQTOOL_QMMA_PLAIN_MAX; rows 0:
// none), for tests and measurements.
func (b *Backend) SetQMMAPlain(rows, most int) {
	b.enter()
	defer b.exit()
	b.qmmaPlain, b.qmmaPlainMax = rows, most
}

// QMMAPlain is SetQMMAPlain's setting.
func (b *Backend) QMMAPlain() (rows, most int) {
	b.enter()
	defer b.exit()
	return b.qmmaPlain, b.qmmaPlainMax
}

// SetPlainClusters has the plain wide kernels add up their splits in
// thread-block clusters where clusters are on (GPTQTOOL_QMMA_PLAIN_CLUSTER=1)
// or through global memory (off, the default), for tests of both.
func (b *Backend) SetPlainClusters(on bool) {
	b.enter()
	defer b.exit()
	b.plainGlobal = !on
}

// PlainClusters is SetPlainClusters' setting.
func (b *Backend) PlainClusters() bool {
	b.enter()
	defer b.exit()
	return !b.plainGlobal
}

// SetQMMAPush has the clustered products of one tile and 8 warps of at
// most rows rows add up their splits by pushing their sums (QF_PUSH), the
// others by reading each other's; 0: none (for tests).
func (b *Backend) SetQMMAPush(rows int) {
	b.enter()
	defer b.exit()
	b.qmmaPush = rows
}

// QMMAPush is SetQMMAPush's setting.
func (b *Backend) QMMAPush() int {
	b.enter()
	defer b.exit()
	return b.qmmaPush
}

// SetDequantGEMM makes every product with a quantized weight dequantize it
// and multiply with cuBLAS (the reference the qmma kernels are checked
// against), or restores the kernels.
func (b *Backend) SetDequantGEMM(on bool) {
	b.enter()
	defer b.exit()
	b.dequantGEMM = on
}

// MatMulAdd implements runtime.ResidualMatMuler.
func (b *Backend) MatMulAdd(dst, x, w, add runtime.Tensor) {
	d, xt, wt, at := b.tensor(dst), b.tensor(x), b.tensor(w), b.tensor(add)
	if at.n != d.n || at.dt != d.dt {
		panic(fmt.Sprintf("cuda: matmul-add dst %v %v, add %v %v", d.dt, d.shape, at.dt, at.shape))
	}
	b.enter()
	defer b.exit()
	b.matmul(d, xt, wt, at)
}

// MatMulSplit implements runtime.FusedQuantLoader.
func (b *Backend) MatMulSplit(dsts []runtime.Tensor, x, w runtime.Tensor) {
	b.matmulSplit(dsts, x, w, nil, 0)
}

// matmulSplit is MatMulSplit, of the RMSNorm of x by nw (a FuseNorm
// weight) when nw is not nil.
func (b *Backend) matmulSplit(dsts []runtime.Tensor, x, w, nw runtime.Tensor, eps float32) {
	xt, wt := b.tensor(x), b.tensor(w)
	if wt.q == nil || wt.q.glu || len(dsts) != len(wt.q.segments()) {
		panic(fmt.Sprintf("cuda: split matmul into %d outputs with a weight that is not a split fusion of as many", len(dsts)))
	}
	var nrm *normArg
	if nw != nil {
		nrm = b.normOf(nw, eps, wt, xt)
	}
	var outs [3]*Tensor
	for i, d := range dsts {
		outs[i] = b.tensor(d)
	}
	b.enter()
	defer b.exit()
	b.qmatmul(outs, xt, wt, nil, 0, nrm, nil)
}

// MatMulGLU implements runtime.FusedQuantLoader.
func (b *Backend) MatMulGLU(dst, x, w runtime.Tensor) {
	b.MatMulGLUTo(dst, x, w, nil)
}

// MatMulGLUTo implements runtime.InputOrderer.
func (b *Backend) MatMulGLUTo(dst, x, w, slots runtime.Tensor) {
	b.matmulGLU(dst, x, w, slots, nil, 0)
}

// matmulGLU is the GLU product of x by w, its outputs written to slots,
// of the RMSNorm of x by nw (a FuseNorm or FuseGLUNorm weight for w) where
// nw is not nil.
func (b *Backend) matmulGLU(dst, x, w, slots, nw runtime.Tensor, eps float32) {
	d, xt, wt := b.tensor(dst), b.tensor(x), b.tensor(w)
	if wt.q == nil || !wt.q.glu {
		panic("cuda: glu matmul with a weight that is not a GLU fusion")
	}
	var nrm *normArg
	if nw != nil {
		nrm = b.normOf(nw, eps, wt, xt)
	}
	sp := b.slotsPtr("glu matmul", slots, wt.q.n/2, d, xt)
	b.enter()
	defer b.exit()
	b.qmatmul([3]*Tensor{d}, xt, wt, nil, sp, nrm, nil)
}

// normArg is a product's RMSNorm of its input (runtime.NormFuser): w from
// FuseNorm, eps.
type normArg struct {
	w   *Tensor
	eps float32
}

// FuseNorm implements runtime.NormFuser: the norm weight in w's sequential
// input order (gathered through its act-order permutation), for the
// products by w whose one-tile kernels normalize x as they stage it.
// GPTQTOOL_NORM_FUSE=N sets the most rows that do (defaultNormFuse; 0:
// none, FuseNorm then returns nil). A GLU weight gets none while the wide
// kernels (which do not normalize) take its products from qmmaWide rows
// up: the model then keeps its unfused attention block (o_proj from
// attention's parts, the add + norm kernel) for the rows it would fuse.
func (b *Backend) FuseNorm(weight, w runtime.Tensor) (runtime.Tensor, error) {
	nt, wt := b.tensor(weight), b.tensor(w)
	if b.normFuseRows == 0 || wt.q == nil || nt.q != nil || nt.n != wt.q.k || nt.dt == runtime.I32 {
		return nil, nil
	}
	if wt.q.glu && b.qmmaWide > 0 && b.qmmaWide <= b.normFuseRows {
		return nil, nil
	}
	return b.normWeight(nt, wt)
}

// FuseGLUNorm implements runtime.GLUNormer: the norm weight in w's
// sequential input order, as FuseNorm makes it, for w's GLU products of up
// to GLUNormRows rows, which the pieces kernel normalizes as it stages x
// (GPTQTOOL_QGLU_NORM; none by default, FuseGLUNorm then returns nil).
func (b *Backend) FuseGLUNorm(weight, w runtime.Tensor) (runtime.Tensor, error) {
	nt, wt := b.tensor(weight), b.tensor(w)
	if b.qgluNorm == 0 || wt.q == nil || !wt.q.glu || nt.q != nil || nt.n != wt.q.k || nt.dt == runtime.I32 {
		return nil, nil
	}
	return b.normWeight(nt, wt)
}

// GLUNormRows implements runtime.GLUNormer (GPTQTOOL_QGLU_NORM).
func (b *Backend) GLUNormRows() int { return b.qgluNorm }

// SetQGLUNorm sets the most rows whose GLU products normalize their input
// on the pieces kernel (as GPTQTOOL_QGLU_NORM does; 0: none), for tests;
// norm weights are made by FuseGLUNorm after it.
func (b *Backend) SetQGLUNorm(rows int) {
	b.enter()
	defer b.exit()
	b.qgluNorm = max(0, min(rows, qgluMaxRows))
}

// MatMulGLUNormTo implements runtime.GLUNormer: on the pieces kernel,
// normalizing x as it stages it, where it runs the product (qglu), else
// the norm kernel into a scratch first.
func (b *Backend) MatMulGLUNormTo(dst, x, nw runtime.Tensor, eps float32, w, slots runtime.Tensor) {
	if nw == nil {
		panic("cuda: norm-fused glu matmul without a norm weight")
	}
	b.matmulGLU(dst, x, w, slots, nw, eps)
}

// normWeight makes nt, a norm weight, in wt's sequential input order
// (FuseNorm, FuseGLUNorm).
func (b *Backend) normWeight(nt, wt *Tensor) (runtime.Tensor, error) {
	b.enter()
	defer b.exit()
	buf, err := b.allocBufferLocked(int64(nt.Bytes()))
	if err != nil {
		return nil, fmt.Errorf("cuda: fused norm weight: %w", err)
	}
	t := &Tensor{dt: nt.dt, shape: []int{nt.n}, n: nt.n, ptr: buf.Ptr, cls: buf.cls, nat: nt, normq: wt.q}
	if wt.q.perm == nil {
		err = cuErr("cuMemcpyDtoDAsync", drv.cuMemcpyDtoDAsync(t.ptr, nt.ptr, uint64(nt.Bytes()), b.stream))
	} else {
		err = b.launch("qgemv.cu", qnames.gather[nt.dt], grid1(int64(nt.n)), Dim{X: threads}, 0, t.ptr, nt.ptr, wt.q.perm.Ptr, int32(1), int32(nt.n))
	}
	if err != nil {
		b.alloc.release(t.ptr, t.cls)
		return nil, fmt.Errorf("cuda: fused norm weight: %w", err)
	}
	return t, nil
}

// defaultNormFuse is the most rows whose products normalize their input:
// none. On the H200 (7B shape, 4-bit, the fifth session's build, where the
// normalizing kernels are kernels of their own) norm fusing made batch 1
// slower: 350.0 against 368.4 tok/s with act order, 363.2 against 372.4
// without; a separate norm kernel runs while the product's blocks, already
// launched (PDL), fetch their first weights, whereas a normalizing block
// sums the squares of x on its critical path (Nsight Compute: 31.9 µs for
// gate/up against 27.3 + 4.3 for the product and the norm). At 8 rows it
// lost 30% (docs/benchmarks.md). Measured again in the nineteenth session,
// with only q/k/v normalizing (gate/up on the wide kernels): 489.2 against
// 494.0 tok/s at batch 1.
const defaultNormFuse = 0

// NormFusedRows implements runtime.NormFuser: up to the one-tile
// kernels' 8 rows (GPTQTOOL_NORM_FUSE).
func (b *Backend) NormFusedRows() int { return b.normFuseRows }

// SetNormFuse sets the most rows whose products normalize their input
// (as GPTQTOOL_NORM_FUSE does; 0: none), for tests and benchmarks; norm
// weights are made by FuseNorm after it.
func (b *Backend) SetNormFuse(rows int) {
	b.enter()
	defer b.exit()
	b.normFuseRows = max(0, min(rows, 8*qmmaTiles[0]))
}

// normOf checks a FuseNorm weight for w.
func (b *Backend) normOf(nw runtime.Tensor, eps float32, w *Tensor, x *Tensor) *normArg {
	n := b.tensor(nw)
	if n.nat == nil || n.normq != w.q || n.dt != x.dt {
		panic(fmt.Sprintf("cuda: norm-fused product with norm weight %v %v, want one FuseNorm made for this weight of %d inputs, %v", n.dt, n.shape, w.q.k, x.dt))
	}
	return &normArg{w: n, eps: eps}
}

// MatMulSplitNorm implements runtime.NormFuser.
func (b *Backend) MatMulSplitNorm(dsts []runtime.Tensor, x, nw runtime.Tensor, eps float32, w runtime.Tensor) {
	if nw == nil {
		panic("cuda: norm-fused split matmul without a norm weight")
	}
	b.matmulSplit(dsts, x, w, nw, eps)
}

// MatMulGLUNorm implements runtime.NormFuser.
func (b *Backend) MatMulGLUNorm(dst, x, nw runtime.Tensor, eps float32, w runtime.Tensor) {
	b.MatMulGLUNormTo(dst, x, nw, eps, w, nil)
}

// qmmaPlan is how a qmma product of M rows is split: S blocks along K for
// each column slab, cps chunks each, x staged P chunks at a time, the S
// blocks one cluster or not, and the block's shared memory.
type qmmaPlan struct {
	S, cps, P int
	cluster   bool
	shared    int
}

// qmmaSplit plans a product of M rows (a pass: at most qmmaPass, or
// qgemvRows on warpgroup MMA) by a weight of K
// inputs, N outputs and bits-bit codes on this device, for the _w kernels
// (warpgroup MMA) when wg: those stage x as whole tiles of 8 rows, without
// the rows' padding.
func (b *Backend) qmmaSplit(M, K, N, bits int, wg bool) qmmaPlan {
	return b.qmmaSplitS(M, K, N, bits, wg, b.qmmaMaxS, 0)
}

// qmmaSplitS is qmmaSplit with at most maxS splits (0: no cap), for a
// kernel whose ring is qd chunks a warp deep (0: qstDepth's).
func (b *Backend) qmmaSplitS(M, K, N, bits int, wg bool, maxS, qd int) qmmaPlan {
	tile := b.qmmaTileFor(M, wg)
	kb := chunkInputs(bits)
	CK := K / kb
	nb := (N + 127) / 128
	// Split the inputs so that the blocks fill the SMs qfill times (by the
	// rows' class: defaultFill unless GPTQTOOL_QMMA_FILL says otherwise;
	// kernels of more than one tile in one wave). A block stages x for P of its cps chunks at a time: all
	// of them where they fit in shared memory, else a multiple of the
	// ring's depth (qst), and the inputs are split further only while qst
	// chunks do not fit (the kernels of one tile stage once: their inputs
	// split until all fit).
	// The weight ring, then x staged in fp16, whose space the block's sums
	// take after the loop.
	ring, qst := b.qmmaRing(tile, bits), b.qstDepth(tile, bits)
	if qd != 0 {
		ring, qst = 8*qd*512, qd
	}
	shared := func(P int) int { return ring + max(M*(P*kb+8)*2, M*128*4) }
	if wg {
		// Blocks of 64 inputs for the 8·MT rows of the wgmma's operand
		// (128 bytes a row), 1,024-byte aligned (the 128-byte swizzle).
		shared = func(P int) int { return ring + 1024 + max((P*kb+63)/64*qmmaTiles[tile]*1024, M*128*4) }
	}
	limit := min(b.shared, qmmaShared)
	phase := qst
	if tile == 0 {
		phase = CK
	}
	S := max(1, min((b.qfill[qfillClass(M)]*b.sms+nb-1)/nb, CK))
	if maxS > 0 {
		S = min(S, maxS)
	}
	if sp, ok := b.qmmaS[[2]int{K, N}]; ok {
		S = min(sp, CK)
	}
	if b.waveCap && tile > 0 {
		// Kernels of more than one tile: no more blocks than the SMs hold
		// at once (one wave; a gate/up product of 224 column blocks split
		// in two at 2 blocks an SM would run 1.7 waves). (One-tile kernels
		// are latency-bound and were measured faster with more blocks than
		// a wave: batch 8 at fill 4, 1.7 waves of gate/up, beat fill 2.)
		for S > 1 {
			bps := min(qmmaBlocksPerSM(tile), b.smemSM/(shared(min((CK+S-1)/S, phase))+qmmaSharedReserve))
			if nb*S <= bps*b.sms {
				break
			}
			S = max(1, min(S-1, bps*b.sms/nb))
		}
	}
	cps := (CK + S - 1) / S
	for shared(min(cps, phase)) > limit && cps > 1 {
		S++
		cps = (CK + S - 1) / S
	}
	S = (CK + cps - 1) / cps
	// On sm_90 the S blocks of a column slab form one thread-block
	// cluster and add up their sums in shared memory (at most
	// maxClusterBlocks: fewer, longer slices where a one-tile kernel's x
	// still fits).
	cluster := b.clusters && S > 1
	if cluster && S > maxClusterBlocks {
		if c := (CK + maxClusterBlocks - 1) / maxClusterBlocks; tile != 0 || shared(c) <= limit {
			cps = c
			S = (CK + cps - 1) / cps
		} else {
			cluster = false
		}
	}
	if b.clusterMaxS > 0 && S > b.clusterMaxS {
		cluster = false
	}
	P := cps
	if shared(P) > limit {
		if wg {
			P = max((limit-ring-1024)/(qmmaTiles[tile]*1024)*64/kb/qst*qst, qst)
		} else {
			P = max(((limit-ring)/(2*M)-8)/kb/qst*qst, qst)
		}
	}
	return qmmaPlan{S: S, cps: cps, P: P, cluster: cluster, shared: shared(P)}
}

// qmatmul sets the outputs of x·wᵀ for a quantized w: outs[0] = (res or 0) +
// x·wᵀ for a plain weight (res nil or of outs[0]'s shape, possibly outs[0]),
// one output per segment of a split fusion, silu(gate)·up for a GLU one
// (its column c at column slots[c] when slots, a device I32 address, is not
// 0). The
// qmma kernels take up to qgemvRows rows; more rows (or the forced
// reference) dequantize the weight in x's dtype and multiply with cuBLAS.
// With rp (a split q/k/v fusion that ropeFits), the kernels also rotate q
// and k and store k and v in the paged cache (runtime.RoPEFuser).
func (b *Backend) qmatmul(outs [3]*Tensor, x, w, res *Tensor, slots uint64, nrm *normArg, rp *ropeArg) {
	b.qmatmulAP(outs, x, w, res, slots, nrm, rp, nil)
}

// qmatmulAP is qmatmul; with ap (a plain weight, apFits), x is paged
// attention's output left partly in parts (pagedAttention with defer),
// which the _a kernel combines as it stages x.
func (b *Backend) qmatmulAP(outs [3]*Tensor, x, w, res *Tensor, slots uint64, nrm *normArg, rp *ropeArg, ap *apArg) {
	q := w.q
	M := runtime.Rows(x)
	widths := q.segments()
	for i, wd := range widths {
		d := outs[i]
		if d == nil || runtime.Cols(x) != q.k || runtime.Rows(d) != M || runtime.Cols(d) != wd || d.dt != x.dt {
			panic(fmt.Sprintf("cuda: matmul output %d of %d = x %v %v · quantized w [%d %d]ᵀ: want [%d %d] %v", i, len(widths), x.dt, x.shape, q.n, q.k, M, wd, x.dt))
		}
	}
	if M == 0 {
		return
	}
	// GLU products of up to qgluNorm rows normalize x on the pieces kernel
	// where it runs them (GPTQTOOL_QGLU_NORM).
	if nrm != nil && q.glu && M <= b.qgluNorm && !b.dequantGEMM && b.qmmaWide > 0 && M >= b.qmmaWide &&
		q.gs%chunkInputs(q.bits) == 0 && b.qglu(outs[0], x, q, w, slots, M, nrm) {
		return
	}
	if nrm != nil && (M > b.normFuseRows || b.dequantGEMM) {
		// Only the kernels of one tile normalize while staging (up to
		// normFuseRows rows): the norm kernel writes the rows to a scratch
		// first. (Its first use allocates the scratch: a decode step that
		// takes this path must run once before it is recorded in a graph,
		// as model.WarmDecode does.)
		xb, err := b.scratch(&b.xnorm, int64(x.Bytes()))
		if err != nil {
			b.fail(err)
			return
		}
		xn := &Tensor{dt: x.dt, shape: x.shape, n: x.n, ptr: xb.Ptr}
		b.normRows(xn, x, nrm.w.nat, nrm.eps, 0)
		x, nrm = xn, nil
	}
	if M > qgemvRows || b.dequantGEMM {
		if rp != nil {
			panic("cuda: rope-fused matmul on the dequantize + cuBLAS path")
		}
		b.qdequantGEMM(outs, x, w, res, slots)
		return
	}
	kb := chunkInputs(q.bits)
	sg := 0
	if q.gs%kb != 0 {
		sg = 1
	}
	// Warpgroup MMA (sm_90 only) for passes that need at least qmmaWG
	// tiles of the mma.sync kernels' 1, 2, 4 (by default two: 9-32 rows,
	// and 33-64 rows in one pass), groups of whole chunks, weights whose
	// decode fits fp16; on as few tiles as the rows need (qmmaTileFor).
	from := b.qmmaWG
	wg := from > 0 && M > 4*from && b.WarpgroupMMA() && sg == 0 && q.f16w
	if M > qmmaPass && !wg {
		rows := func(t *Tensor, r0, n int) *Tensor {
			if t == nil {
				return nil
			}
			return b.View(t, r0, n).(*Tensor)
		}
		// Every pass but the last streams the weights under the normal L2
		// policy, so that the next pass may find them there.
		defer func() { b.passKeep = false }()
		for r0 := 0; r0 < M; r0 += qmmaPass {
			n := min(qmmaPass, M-r0)
			var o [3]*Tensor
			for i := range widths {
				o[i] = rows(outs[i], r0, n)
			}
			b.passKeep = r0+n < M
			b.qmatmul(o, rows(x, r0, n), w, rows(res, r0, n), slots, nil, rp.rows(r0))
		}
		return
	}
	var resPtr uint64
	if res != nil {
		resPtr = res.ptr
	}
	tile := b.qmmaTileFor(M, wg)
	nb := (q.n + 127) / 128
	// (The _a and _r kernels of one tile: their own ring depth where
	// GPTQTOOL_QMMA_AP_QST or GPTQTOOL_QMMA_ROPE_QST sets one.)
	qd := 0
	switch {
	case ap != nil:
		qd = b.qstAP
	case rp != nil && tile == 0 && !wg:
		qd = b.ropeDepth(q.bits)
	}
	sp := b.qmmaSplitS(M, q.k, q.n, q.bits, wg, b.maxSplits(M, nb, ap != nil), qd)
	// GLU products of qmmaWide rows or more, up to a tile (groups of whole
	// chunks, no norm), on the wide kernels; plain products of qmmaPlain
	// rows or more, up to a tile, on the plain wide kernels.
	threads, wide, plain := 256, false, false
	if b.qmmaWide > 0 && M >= b.qmmaWide && q.glu && tile == 0 && sg == 0 && nrm == nil && rp == nil && ap == nil {
		if wp, wnb, ok := b.qmmaSplitWide(M, q.k, q.n, q.bits); ok {
			sp, nb, threads, wide = wp, wnb, 32*qmmaWideWarps, true
		}
	}
	if wide && M <= b.qgluRows(q.bits) && b.qglu(outs[0], x, q, w, slots, M, nil) {
		return
	}
	if b.plainRows(M) && !q.glu && tile == 0 && sg == 0 && nrm == nil && rp == nil && ap == nil {
		if pp, pnb, ok := b.qmmaSplitPlain(M, q.k, q.n, q.bits); ok {
			sp, nb, threads, plain = pp, pnb, 32*qmmaPlainWarps, true
		}
	}
	S, cps, P, cluster := sp.S, sp.cps, sp.P, sp.cluster
	shared := sp.shared
	// QF_PUSH: the receive slots after x's space (which the plan's shared
	// memory ends with).
	push := M <= b.qmmaPush && cluster && S > 1 && tile == 0 && !wg && !wide && !plain
	if push {
		shared += pushRecvBytes(M, S, q.glu || rp != nil)
	}
	var part, count uint64
	clusterY := 0
	if cluster {
		clusterY = S
	} else if S > 1 {
		pb, err := b.scratch(&b.qpart, int64(S)*int64(M)*int64(q.n)*4)
		if err != nil {
			b.fail(err)
			return
		}
		if count, err = b.counters(&b.qcount, nb); err != nil {
			b.fail(err)
			return
		}
		part = pb.Ptr
	}
	if ap != nil && (tile != 0 || wg || nrm != nil || rp != nil || sg != 0) {
		panic("cuda: a product of paged attention's parts that is not one tile's plain mma.sync product")
	}
	// More rows than a tile gather x through the permutation once, for all
	// blocks, which then stage it with 16-byte loads (as they do x itself
	// when it is aligned and there is no permutation); a tile or fewer rows
	// are gathered while staged.
	// (Kernels of more than one tile ignore perm: their x must be gathered.)
	xp, perm := x.ptr, uint64(0)
	if q.perm != nil && tile == 0 {
		perm = q.perm.Ptr
	} else if (q.perm != nil || xp%16 != 0) && ap == nil { // (the _a kernel reads x an element at a time)
		var err error
		if xp, err = b.sequentialX(x, q); err != nil {
			b.fail(err)
			return
		}
	}
	var o [3]uint64
	for i := range widths {
		o[i] = outs[i].ptr
	}
	glu := int32(0)
	if q.glu {
		glu = 1
	}
	cl := int32(0)
	if clusterY > 0 {
		cl = 1
	}
	var nw uint64
	var eps float32
	nv8 := int32(0)
	if nrm != nil {
		nw, eps = nrm.w.ptr, nrm.eps
		if vec8(q.k, x, nrm.w.nat) && xp == x.ptr {
			nv8 = 1
		}
	}
	name := qnames.gemv[q.bits/8][sg][tile][x.dt]
	switch {
	case ap != nil:
		name = qnames.ap[q.bits/8][x.dt]
	case nrm != nil && rp != nil: // tile 0 (at most normFuseRows <= 8 rows), sg 0 (ropeFits)
		name = qnames.normRoPE[q.bits/8][x.dt]
	case nrm != nil:
		name = qnames.norm[q.bits/8][sg][x.dt]
	case rp != nil && wg:
		name = qnames.wgRoPE[q.bits/8][tile][x.dt]
	case rp != nil:
		name = qnames.rope[q.bits/8][tile][x.dt]
	case wg:
		name = qnames.wg[q.bits/8][tile][x.dt]
	case wide:
		name = qnames.wide[q.bits/8][x.dt]
	case plain:
		name = qnames.plain[q.bits/8][x.dt]
	}
	var r ropeArg
	if rp != nil {
		if sg != 0 {
			panic("cuda: rope-fused matmul with groups that are not whole chunks (no such kernel)")
		}
		r = *rp
	}
	// The _w kernels take x's tensor map last: fp16 x is staged by the
	// tensor memory accelerator where the driver makes one (QF_TMA), else
	// with cp.async as the others stage it.
	flags := b.qmmaFlags()
	if wide && b.lateAfterWide(M) {
		flags |= qfLate
	}
	if push {
		flags |= qfPush
	}
	// MatMulAddNormTo: a plain wide product of one output that adds its
	// splits up through global memory, into its own residual, leaves them
	// in part for the norm that follows (QF_PARTS).
	if b.partsWant && plain && !cluster && S > 1 && S <= partsMax && len(widths) == 1 && res != nil && res.ptr == outs[0].ptr {
		flags |= qfParts
		b.partsGot = partsArg{part: part, S: S, rows: M}
	}
	var tm TensorMap
	if wg && x.dt == runtime.F16 && b.qmmaTMA {
		m, ok, err := b.rowsMap(xp, x.dt, M, q.k, 8*qmmaTiles[tile])
		if err != nil {
			b.fail(err)
			return
		}
		if ok {
			tm, flags = m, flags|qfTMA
		}
	}
	name, szp := q.scales(name, !wg || qmmaTiles[tile] <= b.scalesWG)
	args := []any{o[0], o[1], o[2], int32(q.seg1), int32(q.seg2), glu, resPtr, xp, w.ptr, szp, perm, part, count,
		int32(q.k), int32(q.n), int32(M), int32(q.gs), int32(cps), int32(P), slots, cl, flags, nw, eps, nv8,
		r.pos, r.slot, r.inv, r.kc, r.vc}
	if wg {
		args = append(args, tm)
	}
	if ap != nil {
		args = append(args, ap.part, ap.pos, ap.sg, ap.hq, ap.hd, ap.window, ap.minsplit, ap.dfr)
	}
	b.runCluster("qgemv.cu", name, Dim{X: nb, Y: S}, Dim{X: threads}, shared, clusterY, args...)
}

// The pieces kernel (qglu.cu): its rows at most, a tile's inputs all its
// block's warps take (QL_IN · QL_W), its slots of pieces' sums
// (QL_SLOTS), its list of a block's pieces (QL_LIST), the wide kernels'
// slab (qgluCols), the pairs of counters its launches take in turn, and
// the shared memory its blocks leave of what a block may take
// (qgluShared).
const (
	qgluMaxRows = 4
	qgluBlockIn = 8192
	qgluSlots   = 4
	qgluList    = 64
	qgluCols    = 224
	qgluPairs   = 512
	qgluLeave   = 8 << 10
)

// defaultQGLUShape is the pieces kernel's block shape for a product of M
// rows at bits: 16 warps (QL_W) with 8 chunks in flight each (QL_D) at one
// row, and at 8 bits 4 from two. On the H200 at 8 bits (7B shape, blocks
// holding their SM, qgluShared), against 32 warps with 4 chunks in flight,
// the former default: one row 393.1–393.3 tok/s against 391.4 (+0.45%),
// two rows 712.6–712.8 against 701.5 (+1.6%; with 8 chunks 691.4–692.0,
// below); 32 KB in flight an SM lost at one row (4 chunks of 16 warps,
// 388.8; 2 of 32 warps, 372.7), 128 KB too (8 chunks of 32 warps, 389.3).
// At 4 bits two rows keep 8 chunks (a piece's whole share a warp): 992.4
// and 992.7 tok/s against 938.9 with 4 (the fifty-third and fifty-second
// sessions).
func defaultQGLUShape(bits, M int) (warps, depth int) {
	if M == 1 || bits == 4 {
		return 16, 8
	}
	return 16, 4
}

// qgluShapeErr reports a block shape the pieces kernel cannot build (0 for
// warps or depth: qgluShape's default): warps other than 16 or 32, chunks
// in flight other than 2, 4 or 8.
func qgluShapeErr(warps, depth int) error {
	if warps != 0 && warps != 16 && warps != 32 || depth != 0 && (depth < 2 || depth > 8 || depth&(depth-1) != 0) {
		return fmt.Errorf("pieces kernel of %d warps, %d chunks in flight: want 16 or 32 warps, 2, 4 or 8 chunks", warps, depth)
	}
	return nil
}

// qgluTurns reports whether a piece's chunks a warp of the block shape
// warps × depth at bits are whole turns of its ring (QL_C % QL_D in
// qglu.cu, which builds no other shape).
func qgluTurns(bits, warps, depth int) bool {
	return (qgluBlockIn/warps/chunkInputs(bits))%depth == 0
}

// qgluName is the pieces kernel of bits and dt for the block shape warps ×
// depth (before Quant.scales' suffix).
func qgluName(bits, warps, depth int, dt runtime.DType) string {
	return fmt.Sprintf("qglu%d_w%dd%d_%s", bits, warps, depth, suffix(dt))
}

// qgluNormName is qgluName's kernel that normalizes x as it stages it
// (NRM, the _n kernels).
func qgluNormName(bits, warps, depth int, dt runtime.DType) string {
	return fmt.Sprintf("qglu%d_w%dd%d_n_%s", bits, warps, depth, suffix(dt))
}

// qgluShared is the dynamic shared memory a pieces kernel block takes that
// needs need: by default all but qgluLeave of what a block may take, so
// that a block starts on an SM only once the kernels before it have left
// it and no block of theirs shares its SM (the products before gate/up
// otherwise start it beside them, early, and its first copies then slow
// the add + norm kernel between: 16 warps, 8 chunks, one row, 392.2 tok/s
// without against 395.2 with); GPTQTOOL_QGLU_SMEM=N: need plus N.
func (b *Backend) qgluShared(need int) int {
	if b.qgluPad >= 0 {
		return need + b.qgluPad
	}
	return max(need, b.shared-qgluLeave)
}

// qglu runs a GLU product of M rows (at most qgluMaxRows) by q on the
// pieces kernel (qglu.cu, GPTQTOOL_QGLU_PIECES): one block an SM takes
// pieces, each an output tile's gate and up tiles over the whole of K,
// from a counter, and adds each piece's warps' sums up itself. It reports
// false, launching nothing, where the shape does not fit the kernel: whole
// slabs of the wide kernels' 224 columns (the kernel itself needs only the
// GLU layout's runs of 64 gate and 64 up columns, but has run on no other
// shape), K a multiple of a warp's 256 inputs and at most 16 warps' (4096),
// groups within a warp's inputs or its inputs within groups, shared memory
// beyond the device's, and at most a list's worth of pieces a block.
//
// Each launch takes the next of qgluPairs pairs of counters, so that two
// launches in a step never share one (each leaves its pair zeroed as it
// ends; a pair comes round again qgluPairs launches later).
func (b *Backend) qglu(out, x *Tensor, q *quant, w *Tensor, slots uint64, M int, nrm *normArg) bool {
	kb := chunkInputs(q.bits)
	warps, depth := b.qgluShape(q.bits, M)
	in := qgluBlockIn / warps // a warp's inputs of a piece (QL_IN)
	if q.n%qgluCols != 0 || q.k%in != 0 || q.k > in*warps/2 || q.gs%kb != 0 || (in%q.gs != 0 && q.gs%in != 0) || !qgluTurns(q.bits, warps, depth) {
		return false
	}
	if q.perm == nil && x.ptr%16 != 0 {
		return false
	}
	chunks := in / kb
	gp := chunks / min(q.gs/kb, chunks)
	szb := 4
	kname := qgluName(q.bits, warps, depth, x.dt)
	if nrm != nil {
		kname = qgluNormName(q.bits, warps, depth, x.dt)
	}
	name, szp := q.scales(kname, true)
	if strings.HasSuffix(name, kernels.ScalesOnly) {
		szb = 2
	}
	// Shared memory, as qglu.cu lays it out: each warp's ring and two
	// pieces' scales, x, the slots of the warps' sums; normalizing, the
	// permutation and the norm weight.
	need := warps*depth*512 + warps*2*gp*16*szb + M*(q.k+8)*2 + qgluSlots*warps*M*16*4
	if nrm != nil {
		need += q.k * (4 + x.dt.Size())
	}
	shared := b.qgluShared(need)
	if shared > b.shared {
		return false
	}
	// (A device short of shared memory runs the wide kernels instead, above;
	// activeBlocks' 0 for a kernel that did not compile leaves the launch to
	// report the compiler's log.)
	np := q.n / 32
	nb := min(max(b.activeBlocks("qglu.cu", name, 32*warps, shared), 1)*b.sms, np)
	if b.qgluBlocks > 0 {
		nb = min(nb, b.qgluBlocks)
	}
	if np > nb*(qgluList-1) {
		return false
	}
	count, err := b.counters(&b.lcount, 2*qgluPairs)
	if err != nil {
		b.fail(err)
		return true
	}
	count += uint64(8 * (b.qgluSeq % qgluPairs))
	b.qgluSeq++
	perm := uint64(0)
	if q.perm != nil {
		perm = q.perm.Ptr
	}
	flags := b.qmmaFlags()
	if b.lateAfterWide(M) {
		flags |= qfLate
	}
	args := []any{out.ptr, x.ptr, w.ptr, szp, perm, slots, count, int32(q.k), int32(q.n), int32(M), int32(q.gs), flags}
	if nrm != nil {
		args = append(args, nrm.w.ptr, nrm.eps)
	}
	b.run("qglu.cu", name, Dim{X: nb}, Dim{X: 32 * warps}, shared, args...)
	return true
}

// pushRecvBytes is the shared memory of a QF_PUSH block's receive slots
// (qgemv.cu's pushed reduction): from each of the S blocks of its slab, the
// sums of its own share of the M × W items in quads of 4, one float4 a
// quad, or two where an item has two sums (half: glu and RoPE products,
// whose W is half the block's 128 columns).
func pushRecvBytes(M, S int, half bool) int {
	w, p := 128, 1
	if half {
		w, p = 64, 2
	}
	q4 := M * w / 4
	return S * ((q4 + S - 1) / S) * p * 16
}

// qfTMA, qfLate, qfPush and qfParts are qgemv.cu's QF_TMA, QF_LATE,
// QF_PUSH and QF_PARTS.
const (
	qfTMA   = 16
	qfLate  = 8
	qfPush  = 128
	qfParts = 256
)

// qmmaFlags are qgemv.cu's flags for every qmma launch: QF_XASYNC (1) and
// QF_EVICT (2; not for a pass whose weights the next pass reads again).
// (QF_EARLY, 4, the next kernel launched as a product starts, and QF_LATE
// for every product measured 5% and 7% slower at batch 1; their switches
// are removed, and QF_EARLY is set by no launch.)
func (b *Backend) qmmaFlags() int32 {
	f := b.xasync
	if b.evictFirst && !b.passKeep {
		f |= 2
	}
	return f
}

// spreadShared is the dynamic shared memory a qmma block of a grid of
// blocks asks for so that an SM holds at most its even share of them,
// ceil(blocks / SMs): where the previous kernel's blocks end unevenly (a
// launch overlapped with it places blocks wherever room is freed first),
// no SM is left with more of the grid than the others. At least shared;
// shared itself where the share is as many as the SM holds anyway (most:
// the blocks its registers allow).
func (b *Backend) spreadShared(shared, blocks, most int) int {
	c := (blocks + b.sms - 1) / b.sms
	if c >= most {
		return shared
	}
	// Past what c+1 blocks could take even with no static memory (only
	// the driver's KiB a block), in whole 128-byte units, so long as c
	// blocks still fit with qmmaSharedReserve each.
	want := (b.smemSM/(c+1) - 1<<10 + 128) / 128 * 128
	if want <= shared || want > b.shared || c*(want+qmmaSharedReserve) > b.smemSM {
		return shared
	}
	return want
}

// sequentialX copies x [M, K] into the xperm scratch in q's sequential input
// order (x[m, perm[k]]; a plain copy without a permutation, which aligns it)
// and returns the copy's address.
func (b *Backend) sequentialX(x *Tensor, q *quant) (uint64, error) {
	M := runtime.Rows(x)
	xb, err := b.scratch(&b.xperm, int64(M)*int64(q.k)*int64(x.dt.Size()))
	if err != nil {
		return 0, err
	}
	if q.perm == nil {
		return xb.Ptr, cuErr("cuMemcpyDtoDAsync", drv.cuMemcpyDtoDAsync(xb.Ptr, x.ptr, uint64(x.Bytes()), b.stream))
	}
	return xb.Ptr, b.launch("qgemv.cu", qnames.gather[x.dt], grid1(int64(M)*int64(q.k)), Dim{X: threads}, 0, xb.Ptr, x.ptr, q.perm.Ptr, int32(M), int32(q.k))
}

// qdequantGEMM is qmatmul through the weight dequantized in sequential input
// order (coalesced) and the activation permuted instead.
func (b *Backend) qdequantGEMM(outs [3]*Tensor, x, w, res *Tensor, slots uint64) {
	q := w.q
	M := runtime.Rows(x)
	es := int64(x.dt.Size())
	wb, err := b.scratch(&b.deq, int64(q.n)*int64(q.k)*es)
	if err != nil {
		b.fail(err)
		return
	}
	tk := 8 * chunkInputs(q.bits)
	if err := b.launch("qgemv.cu", qnames.dequant[q.bits/8][x.dt], Dim{X: q.n / 16, Y: (q.k + tk - 1) / tk}, Dim{X: 256}, 0,
		wb.Ptr, w.ptr, q.sz.Ptr, int32(q.k), int32(q.n), int32(q.gs)); err != nil {
		b.fail(err)
		return
	}
	xp := x.ptr
	if q.perm != nil {
		if xp, err = b.sequentialX(x, q); err != nil {
			b.fail(err)
			return
		}
	}
	switch {
	case q.glu:
		gb, err := b.scratch(&b.glu, int64(M)*int64(q.n)*es)
		if err != nil {
			b.fail(err)
			return
		}
		full := &Tensor{dt: x.dt, shape: []int{M, q.n}, n: M * q.n, ptr: gb.Ptr}
		b.linear(full, nil, M, q.n, q.k, xp, x.dt, wb.Ptr, x.dt)
		b.run("qgemv.cu", qnames.glu[x.dt], grid1(int64(M)*int64(q.n/2)), Dim{X: threads}, 0, outs[0].ptr, gb.Ptr, int32(M), int32(q.n), slots)
	default:
		n0 := 0
		for i, wd := range q.segments() {
			r := res
			if i > 0 {
				r = nil
			}
			b.linear(outs[i], r, M, wd, q.k, xp, x.dt, wb.Ptr+uint64(int64(n0)*int64(q.k)*es), x.dt)
			n0 += wd
		}
	}
}

var (
	_ runtime.FusedQuantLoader = (*Backend)(nil)
	_ runtime.QuantLoader      = (*Backend)(nil)
	_ runtime.ResidualMatMuler = (*Backend)(nil)
)

// ReadBytes is what a product of one row reads of the tensor's data: for a
// quantized weight its codes, its scales alone where it has them (szh, the
// one-row kernels' read) or else its (scale, zero) pairs, its permutation
// and the permutation's inverse.
func (t *Tensor) ReadBytes() int64 {
	if t.q == nil {
		return t.Bytes()
	}
	scales := t.q.sz
	if t.q.szh != nil {
		scales = t.q.szh
	}
	n := t.Bytes() + scales.Size
	if t.q.perm != nil {
		n += t.q.perm.Size + t.q.slots.Size
	}
	return n
}
