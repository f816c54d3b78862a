package cuda

import "testing"

// ring4 and ring8 are a qmma block's rings of more than one tile at the
// default depths (qmmaRing): 4 and 8 chunks a warp at 4 and 8 bits.
const (
	ring4 = 8 * defaultQST4 * 512
	ring8 = 8 * defaultQST8 * 512
)

// TestQmmaSplit checks the K split of quantized products on an H200's
// figures (132 SMs, 227 KiB of shared memory a block, 228 KiB an SM) for
// the 7B shape's products, worked out by hand: the blocks fill the SMs
// qfill times, one-tile kernels stage their whole slice, clusters hold at
// most 8 blocks, and kernels of more tiles stay within one wave.
func TestQmmaSplit(t *testing.T) {
	b := &Backend{sms: 132, shared: 232448, smemSM: 233472, clusters: true, waveCap: true, qfill: defaultFill}
	for _, c := range []struct {
		name          string
		fill          [4]int
		M, K, N, bits int
		S, cps, P     int
		cluster       bool
	}{
		// 48 column blocks; three times 132 blocks: 9 splits wanted, 8 of 8
		// chunks in a cluster (twice: 6 splits of 11).
		{"qkv M1", defaultFill, 1, 4096, 6144, 4, 8, 8, 8, true},
		{"qkv M1 fill 2", [4]int{2, 4, 1, 1}, 1, 4096, 6144, 4, 6, 11, 11, true},
		// 224 column blocks: 2 splits of 32 chunks.
		{"gate/up M1", defaultFill, 1, 4096, 28672, 4, 2, 32, 32, true},
		// 32 column blocks, 224 chunks: 13 splits wanted, 8 in a cluster.
		{"down M1", defaultFill, 1, 14336, 4096, 4, 8, 28, 28, true},
		// Four times 132 blocks at 8 rows: 3 splits (no wave cap for one tile).
		{"gate/up M8", defaultFill, 8, 4096, 28672, 4, 3, 22, 22, true},
		// Once 132 blocks at 32 rows: one split, x staged 20 chunks at a time
		// ((100 KiB - 16 KiB of ring) / (32 rows × 2 bytes) - 8 = 1336
		// inputs, 20 chunks: a multiple of the ring's 4).
		{"gate/up M32", defaultFill, 32, 4096, 28672, 4, 1, 64, 20, false},
		// Fill 2 at 32 rows would be 448 blocks, 1.7 waves: capped to one.
		{"gate/up M32 fill 2", [4]int{2, 4, 2, 2}, 32, 4096, 28672, 4, 1, 64, 20, false},
		// o_proj at 32 rows, fill 2: 9 splits wanted, 8 (256 blocks) fit a wave.
		{"o M32 fill 2", [4]int{2, 4, 2, 2}, 32, 4096, 4096, 4, 8, 8, 8, true},
		// TestQuantMatMul's phased shapes: 17 rows (three tiles) stage 36
		// chunks at a time ((100 KiB - 16 KiB) / 34 - 8 = 2521 inputs, 39
		// chunks, 36 a multiple of 4), 8-bit 32 rows 32 of 64 (rings of 8),
		// 3 splits of 22 chunks 20.
		{"gate/up M17", defaultFill, 17, 4096, 28672, 4, 1, 64, 36, false},
		{"8-bit M32", defaultFill, 32, 4096, 14336, 8, 2, 64, 32, true},
		{"N 8192 M32", defaultFill, 32, 4096, 8192, 4, 3, 22, 20, true},
		// 8-bit chunks are 32 inputs: 128 chunks, 8 splits of 16.
		{"qkv M1 8-bit", defaultFill, 1, 4096, 6144, 8, 8, 16, 16, true},
	} {
		b.qfill = c.fill
		p := b.qmmaSplit(c.M, c.K, c.N, c.bits, false)
		if p.S != c.S || p.cps != c.cps || p.P != c.P || p.cluster != c.cluster {
			t.Errorf("%s: S %d cps %d P %d cluster %v, want %d %d %d %v", c.name, p.S, p.cps, p.P, p.cluster, c.S, c.cps, c.P, c.cluster)
		}
		if p.shared > qmmaShared {
			t.Errorf("%s: %d bytes of shared memory, over %d", c.name, p.shared, qmmaShared)
		}
	}
	// The warpgroup-MMA kernels stage x in blocks of 64 inputs for 8·MT
	// rows (4 KiB a 4-bit chunk at 32 rows), 1 KiB-aligned after the ring
	// (16 KiB at 4 bits, 32 at 8): (100 KiB - 17 KiB) / 4 KiB = 20 chunks
	// at 32 rows, 40 at 16 rows (41, a multiple of 4), for 8-bit chunks (32
	// inputs) (100 KiB - 33 KiB) / 4 KiB = 16 blocks of 64 inputs, 32
	// chunks; o_proj's 5 splits of 13 chunks fit.
	b.qfill, b.qmmaFit = defaultFill, true
	for _, c := range []struct {
		name                  string
		M, K, N, bits         int
		S, cps, P, sharedWant int
	}{
		{"wg gate/up M32", 32, 4096, 28672, 4, 1, 64, 20, ring4 + 1024 + 20*4096},
		{"wg gate/up M16", 16, 4096, 28672, 4, 1, 64, 40, ring4 + 1024 + 40*2048},
		{"wg 8-bit M32", 32, 4096, 14336, 8, 2, 64, 32, ring8 + 1024 + 16*4096},
		{"wg o M32", 32, 4096, 4096, 4, 5, 13, 13, ring4 + 1024 + 13*4096},
		// 64 rows in one pass of eight tiles: 8 KiB a chunk, 10 fit, 8 at a
		// time.
		{"wg gate/up M64", 64, 4096, 28672, 4, 1, 64, 8, ring4 + 1024 + 8*8192},
		// 17-24 rows on three tiles, 33-56 on five to seven: 3, 5, 6 and 7
		// KiB a chunk, 27, 16, 13 and 11 fit, 24, 16, 12 and 8 at a time
		// (multiples of the ring's 4); o_proj's 5 splits of 13 chunks still
		// fit at 40 rows (82 KiB).
		{"wg gate/up M24", 24, 4096, 28672, 4, 1, 64, 24, ring4 + 1024 + 24*3072},
		{"wg gate/up M40", 40, 4096, 28672, 4, 1, 64, 16, ring4 + 1024 + 16*5120},
		{"wg gate/up M48", 48, 4096, 28672, 4, 1, 64, 12, ring4 + 1024 + 12*6144},
		{"wg gate/up M56", 56, 4096, 28672, 4, 1, 64, 8, ring4 + 1024 + 8*7168},
		{"wg o M40", 40, 4096, 4096, 4, 5, 13, 13, ring4 + 1024 + 13*5120},
	} {
		p := b.qmmaSplit(c.M, c.K, c.N, c.bits, true)
		if p.S != c.S || p.cps != c.cps || p.P != c.P || p.shared != c.sharedWant {
			t.Errorf("%s: S %d cps %d P %d shared %d, want %d %d %d %d", c.name, p.S, p.cps, p.P, p.shared, c.S, c.cps, c.P, c.sharedWant)
		}
	}
	// Without GPTQTOOL_QMMA_FIT, 40 rows take eight tiles as 64 do, 24
	// four as 32.
	b.qmmaFit = false
	if p := b.qmmaSplit(40, 4096, 28672, 4, true); p.P != 8 || p.shared != ring4+1024+8*8192 {
		t.Errorf("wg gate/up M40 on eight tiles: P %d shared %d, want 8 %d", p.P, p.shared, ring4+1024+8*8192)
	}
	if p := b.qmmaSplit(24, 4096, 28672, 4, true); p.P != 20 || p.shared != ring4+1024+20*4096 {
		t.Errorf("wg gate/up M24 on four tiles: P %d shared %d, want 20 %d", p.P, p.shared, ring4+1024+20*4096)
	}
	// The default depths: one-tile kernels' rings of 4 chunks a warp (16
	// KiB a block, x after them) at either width, the others' of 4 at 4
	// bits and 8 at 8; GPTQTOOL_QMMA_QST=8 sets 8 for all (the warpgroup
	// gate/up of 32 rows stages 16 chunks at a time again).
	if p := b.qmmaSplit(1, 4096, 28672, 4, false); p.S != 2 || p.cps != 32 || p.shared != 16384+32*64*2+16 {
		t.Errorf("gate/up M1: S %d cps %d shared %d, want 2 32 %d", p.S, p.cps, p.shared, 16384+32*64*2+16)
	}
	if p := b.qmmaSplit(1, 4096, 14336, 8, false); p.shared != 16384+(p.P*32+8)*2 {
		t.Errorf("8-bit gate M1: shared %d, want %d (P %d)", p.shared, 16384+(p.P*32+8)*2, p.P)
	}
	b.qst = [2]int{8, 8}
	if p := b.qmmaSplit(1, 4096, 28672, 4, false); p.S != 2 || p.cps != 32 || p.shared != ring8+32*64*2+16 {
		t.Errorf("gate/up M1, rings of 8: S %d cps %d shared %d, want 2 32 %d", p.S, p.cps, p.shared, ring8+32*64*2+16)
	}
	b.qmmaFit = true
	if p := b.qmmaSplit(32, 4096, 28672, 4, true); p.P != 16 || p.shared != ring8+1024+16*4096 {
		t.Errorf("wg gate/up M32, rings of 8: P %d shared %d, want 16 %d", p.P, p.shared, ring8+1024+16*4096)
	}
	b.qst = [2]int{}
	// Without the cap, fill 2 at 32 rows splits gate/up in two.
	b.waveCap, b.qfill = false, [4]int{2, 4, 2, 2}
	if p := b.qmmaSplit(32, 4096, 28672, 4, false); p.S != 2 {
		t.Errorf("gate/up M32 fill 2 without the wave cap: %d splits, want 2", p.S)
	}
}

// TestQmmaSplitWide checks the wide GLU kernels' plans on an H200's
// figures (132 SMs, two blocks an SM), worked out by hand: the 7B
// gate/up's 128 slabs split in two (256 blocks, one wave), x staged whole,
// the ring 14 warps × 4 chunks × 512 bytes at either width; a
// product of a few slabs splits into a cluster's 8 at most.
func TestQmmaSplitWide(t *testing.T) {
	b := &Backend{sms: 132, shared: 232448, smemSM: 233472, clusters: true}
	for _, c := range []struct {
		M, K, N, bits     int
		nb, S, cps, share int
	}{
		{1, 4096, 28672, 4, 128, 2, 32, 14*4*512 + (32*64+8)*2},
		{8, 4096, 28672, 4, 128, 2, 32, 14*4*512 + 8*(32*64+8)*2},
		{1, 4096, 28672, 8, 128, 2, 64, 14*4*512 + (64*32+8)*2},
		// 12 tiles of outputs: 2 slabs, 8 splits of 1 chunk (x then
		// smaller than the block's sums, 224 columns a row).
		{4, 512, 384, 4, 2, 8, 1, 14*4*512 + 4*224*4},
	} {
		p, nb, ok := b.qmmaSplitWide(c.M, c.K, c.N, c.bits)
		if !ok || nb != c.nb || p.S != c.S || p.cps != c.cps || p.P != c.cps || p.shared != c.share || p.cluster != (c.S > 1) {
			t.Errorf("M%d K%d N%d %d-bit: ok %v nb %d S %d cps %d P %d shared %d cluster %v, want nb %d S %d cps %d shared %d",
				c.M, c.K, c.N, c.bits, ok, nb, p.S, p.cps, p.P, p.shared, p.cluster, c.nb, c.S, c.cps, c.share)
		}
	}
	// x of 64 rows' whole slice does not fit: no plan.
	if _, _, ok := b.qmmaSplitWide(64, 14336, 28672, 4); ok {
		t.Error("a slice over the shared memory cap was planned")
	}
	// GPTQTOOL_QMMA_WIDE_SPLIT=1 and GPTQTOOL_QMMA_WIDE_QST=8: one block
	// a slab (the whole 64 chunks of x staged), rings of 8 at 4 bits.
	b.wideSplit, b.qstWide = 1, 8
	if p, nb, ok := b.qmmaSplitWide(1, 4096, 28672, 4); !ok || nb != 128 || p.S != 1 || p.cps != 64 || p.cluster || p.shared != 14*8*512+(64*64+8)*2 {
		t.Errorf("one split, rings of 8: ok %v nb %d S %d cps %d cluster %v shared %d", ok, nb, p.S, p.cps, p.cluster, p.shared)
	}
}

// TestQmmaMaxS checks the cap on a product's K splits on an H200's
// figures: the 7B down product at one row (K 14,336, N 4,096: 8 splits of
// 28 chunks uncapped) in 7 splits of 32 chunks, still one cluster a slab,
// and maxSplits' choice of the cap.
func TestQmmaMaxS(t *testing.T) {
	b := &Backend{sms: 132, shared: 232448, smemSM: 233472, clusters: true, qfill: defaultFill, waveCap: true}
	if p := b.qmmaSplit(1, 14336, 4096, 4, false); p.S != 8 || p.cps != 28 || !p.cluster {
		t.Errorf("default: S %d cps %d cluster %v, want 8 splits of 28 chunks in a cluster", p.S, p.cps, p.cluster)
	}
	b.qmmaMaxS = 7
	if p := b.qmmaSplit(1, 14336, 4096, 4, false); p.S != 7 || p.cps != 32 || !p.cluster {
		t.Errorf("at most 7: S %d cps %d cluster %v, want 7 splits of 32 chunks in a cluster", p.S, p.cps, p.cluster)
	}
	// maxSplits: by default 7 for 1-8 rows in at most 33 slabs (2·132/8:
	// down's and o_proj's 32), none for more slabs (q/k/v's 48) or more
	// rows; none for attention's parts; GPTQTOOL_QMMA_MAXS for every row
	// count.
	b.qmmaMaxS = 0
	for _, c := range []struct {
		M, nb int
		ap    bool
		env   int
		want  int
	}{
		{1, 32, false, 0, 7}, {4, 32, false, 0, 7}, {1, 33, false, 0, 7}, {1, 34, false, 0, 0}, {1, 48, false, 0, 0},
		{5, 32, false, 0, 7}, {8, 32, false, 0, 7}, {8, 34, false, 0, 0}, {9, 32, false, 0, 0}, {1, 32, true, 0, 0},
		{1, 48, false, 8, 8}, {8, 32, false, 6, 6}, {1, 32, true, 6, 0},
	} {
		b.qmmaMaxS = c.env
		if got := b.maxSplits(c.M, c.nb, c.ap); got != c.want {
			t.Errorf("maxSplits(%d rows, %d slabs, ap %v) with GPTQTOOL_QMMA_MAXS=%d: %d, want %d", c.M, c.nb, c.ap, c.env, got, c.want)
		}
	}
}

// TestQmmaSplitDepth checks a plan for a kernel of its own ring depth
// (GPTQTOOL_QMMA_AP_QST, GPTQTOOL_QMMA_ROPE_QST): the 7B o_proj at one row
// in 8 splits of 8 chunks, whose block holds 8 warps' rings of 8 chunks
// (32 KiB) and its row of x (8 chunks of 64 inputs and 8 of padding, in
// fp16) at depth 8, against the rings of 4 of qstDepth's default.
func TestQmmaSplitDepth(t *testing.T) {
	b := &Backend{sms: 132, shared: 232448, smemSM: 233472, clusters: true, qfill: defaultFill, waveCap: true}
	x := (8*64 + 8) * 2
	for _, c := range []struct{ qd, ring int }{{0, 8 * 4 * 512}, {8, 8 * 8 * 512}, {16, 8 * 16 * 512}} {
		p := b.qmmaSplitS(1, 4096, 4096, 4, false, 0, c.qd)
		if p.S != 8 || p.cps != 8 || p.P != 8 || p.shared != c.ring+x {
			t.Errorf("depth %d: S %d cps %d P %d shared %d, want 8 8 8 %d", c.qd, p.S, p.cps, p.P, p.shared, c.ring+x)
		}
	}
	// The q/k/v kernels with RoPE (_r): rings of 8 at 8 bits, the one-tile
	// depth at 4 (0); GPTQTOOL_QMMA_ROPE_QST sets both. The 7B q/k/v at 8
	// bits and one row: 8 splits of 16 chunks, 8 warps' rings of 8 chunks
	// and x's 512 inputs.
	for _, c := range []struct{ env, bits, want int }{{0, 4, 0}, {0, 8, 8}, {2, 4, 2}, {2, 8, 2}, {16, 8, 16}} {
		b.qstRoPE = c.env
		if d := b.ropeDepth(c.bits); d != c.want {
			t.Errorf("GPTQTOOL_QMMA_ROPE_QST=%d: %d-bit depth %d, want %d", c.env, c.bits, d, c.want)
		}
	}
	b.qstRoPE = 0
	if p := b.qmmaSplitS(1, 4096, 6144, 8, false, 0, b.ropeDepth(8)); p.S != 8 || p.cps != 16 || p.shared != 8*8*512+(16*32+8)*2 {
		t.Errorf("8-bit q/k/v with RoPE: S %d cps %d shared %d, want 8 16 %d", p.S, p.cps, p.shared, 8*8*512+(16*32+8)*2)
	}
}

// TestQmmaSplitPlain checks the plain wide kernels' plans on an H200's
// figures: one block an SM (more than half an SM's shared memory, even
// with only the driver's KiB a block besides) where the blocks fit at
// once, x staged whole.
func TestQmmaSplitPlain(t *testing.T) {
	b := &Backend{sms: 132, shared: 232448, smemSM: 233472, clusters: true}
	for _, c := range []struct {
		M, K, N, bits    int
		nb, S, cps, ring int
		spread           bool
	}{
		// The 7B down product: 16 slabs of 256 columns, 8 splits of 28 chunks.
		{1, 14336, 4096, 4, 16, 8, 28, 16 * 4 * 512, true},
		{8, 4096, 4096, 8, 16, 8, 16, 16 * 8 * 512, true},
		// One slab: 8 splits of one chunk.
		{1, 512, 256, 4, 1, 8, 1, 16 * 4 * 512, true},
		// 256 slabs, more than the SMs: one block a slab, not spread.
		{1, 4096, 65536, 4, 256, 1, 64, 16 * 4 * 512, false},
	} {
		p, nb, ok := b.qmmaSplitPlain(c.M, c.K, c.N, c.bits)
		kb := chunkInputs(c.bits)
		least := c.ring + max(c.M*(c.cps*kb+8)*2, c.M*256*4)
		if !ok || nb != c.nb || p.S != c.S || p.cps != c.cps || p.P != c.cps || p.cluster != (c.S > 1) || p.shared < least {
			t.Errorf("M%d K%d N%d %d-bit: ok %v nb %d S %d cps %d P %d shared %d cluster %v, want nb %d S %d cps %d shared >= %d",
				c.M, c.K, c.N, c.bits, ok, nb, p.S, p.cps, p.P, p.shared, p.cluster, c.nb, c.S, c.cps, least)
			continue
		}
		if one := 2*(p.shared+1<<10) > b.smemSM; one != c.spread || (!c.spread && p.shared != least) {
			t.Errorf("M%d K%d N%d %d-bit: shared %d (one block an SM: %v), want one block an SM %v", c.M, c.K, c.N, c.bits, p.shared, one, c.spread)
		}
	}
	// x of 8 rows' slice of 128 chunks (K 65,536 in 8 splits) does not fit.
	if _, _, ok := b.qmmaSplitPlain(8, 65536, 4096, 4); ok {
		t.Error("a slice over the shared memory cap was planned")
	}
}

// TestSpreadShared checks spreadShared (which qmmaSplitPlain asks whether
// its blocks take one SM each) on an H200's figures: a grid of 256 blocks (two an SM at most) or 288 (three)
// asks for more than 1/3 (1/4) of the SM's memory but no more than 1/2
// (1/3), counting the reserve a block takes besides; a grid of 448 (four
// an SM, what the registers allow anyway) or one that already takes more
// is left as it is.
func TestSpreadShared(t *testing.T) {
	b := &Backend{sms: 132, shared: 232448, smemSM: 233472}
	// fits: the blocks an SM holds, counting qmmaSharedReserve a block
	// and, for the least a block can take besides, the driver's KiB alone.
	for _, c := range []struct{ shared, blocks, perSM int }{{40 << 10, 256, 2}, {40 << 10, 288, 3}, {40 << 10, 384, 3}, {40 << 10, 132, 1}} {
		got := b.spreadShared(c.shared, c.blocks, 4)
		if per, least := b.smemSM/(got+qmmaSharedReserve), b.smemSM/(got+1<<10); per != c.perSM || least != c.perSM {
			t.Errorf("%d blocks of %d bytes: %d bytes, %d blocks an SM (%d with only the driver's KiB); want %d", c.blocks, c.shared, got, per, least, c.perSM)
		}
	}
	for _, c := range []struct{ shared, blocks int }{{40 << 10, 448}, {100 << 10, 256}} {
		if got := b.spreadShared(c.shared, c.blocks, 4); got != c.shared {
			t.Errorf("%d blocks of %d bytes: %d bytes, want them unchanged", c.blocks, c.shared, got)
		}
	}
}

// TestQmmaFlags checks the qmma launch flags against qgemv.cu's QF_ bits:
// x staged with cp.async (1), evict_first (2) except on a pass whose
// weights the next pass reads again.
func TestQmmaFlags(t *testing.T) {
	for _, c := range []struct {
		xasync      int32
		evict, keep bool
		want        int32
	}{
		{1, true, false, 3},
		{1, true, true, 1},
		{0, false, false, 0},
		{0, true, false, 2},
	} {
		b := &Backend{xasync: c.xasync, evictFirst: c.evict, passKeep: c.keep}
		if got := b.qmmaFlags(); got != c.want {
			t.Errorf("xasync %d evictFirst %v passKeep %v: flags %d, want %d", c.xasync, c.evict, c.keep, got, c.want)
		}
	}
}

// TestPagedTCSplits checks the tensor-core attention's splits on an H200's
// figures (7B heads: 8 kv heads, 128 wide, two stages: 69,632 bytes a
// block, three an SM): batch 32 keeps to one wave of 256 blocks instead of
// two splits (512 blocks, 396 at once), batch 8 to six splits at most,
// batch 1 to the plain kernel's 32, and batch 64 (a wave and a third
// whatever the splits) to one.
func TestPagedTCSplits(t *testing.T) {
	b := &Backend{sms: 132, smemSM: 233472, attnWaves: defaultAttnWaves}
	shared := 4 * 2 * 2 * pagedTCTile(128)
	for _, c := range []struct{ rows, want int }{{1, 32}, {8, 5}, {32, 1}, {64, 1}} {
		if got := b.pagedTCSplits(b.pagedSplits(c.rows, 8), c.rows, 8, shared); got != c.want {
			t.Errorf("%d rows: %d splits, want %d", c.rows, got, c.want)
		}
	}
}

// TestPushRecvBytes checks the receive slots of a QF_PUSH block against
// hand-counted shares: 128 items of one plain row in 32 quads, 4 to each of
// 8 blocks, one float4 each (8 · 4 · 16); 8 GLU rows of 64 items, 128 quads,
// 16 to each of 8 blocks, two float4s each (8 · 16 · 32); 3 GLU rows, 48
// quads among 7 blocks, at most 7 each (7 · 7 · 32).
func TestPushRecvBytes(t *testing.T) {
	for _, c := range []struct {
		M, S int
		half bool
		want int
	}{{1, 8, false, 512}, {8, 8, true, 4096}, {3, 7, true, 1568}, {8, 8, false, 4096}, {1, 6, true, 576}} {
		if got := pushRecvBytes(c.M, c.S, c.half); got != c.want {
			t.Errorf("pushRecvBytes(%d rows, %d blocks, half %v) = %d, want %d", c.M, c.S, c.half, got, c.want)
		}
	}
}

// TestPlainRows checks which rows' plain products run on the plain wide
// kernels (GPTQTOOL_QMMA_PLAIN, GPTQTOOL_QMMA_PLAIN_MAX) and that a wide
// GLU product lets the product after it launch early exactly for those
// rows (lateAfterWide), by the rule's truth table.
func TestPlainRows(t *testing.T) {
	for _, c := range []struct {
		plain, max int
		rows       []int // the rows of 1-8 on the plain kernels
	}{
		{0, 8, nil},
		{defaultQmmaPlain, defaultQmmaPlainMax, []int{1}}, // the default: one row
		{2, 1, nil},
		{1, 4, []int{1, 2, 3, 4}},
		{5, 8, []int{5, 6, 7, 8}},
		{1, 8, []int{1, 2, 3, 4, 5, 6, 7, 8}},
	} {
		b := &Backend{qmmaPlain: c.plain, qmmaPlainMax: c.max}
		on := map[int]bool{}
		for _, m := range c.rows {
			on[m] = true
		}
		for m := 1; m <= 8; m++ {
			if got := b.plainRows(m); got != on[m] {
				t.Errorf("plain %d, max %d: %d rows on the plain kernels %v, want %v", c.plain, c.max, m, got, on[m])
			}
			if got, want := b.lateAfterWide(m), !on[m]; got != want {
				t.Errorf("plain %d, max %d: %d rows, the next kernel launched late %v, want %v", c.plain, c.max, m, got, want)
			}
		}
	}
}

// TestTCStages checks the tensor-core attention's stages by a step's rows,
// and its grid on an H200's figures (132 SMs, 228 KiB of shared memory an
// SM) for the 7B shape's 8 kv heads of 128 dimensions, worked out by hand:
// three stages (4 warps × 3 × 2 tiles of 16 × 136 × 2 bytes, 104,448 bytes,
// two blocks an SM, 264 slots) at one and two rows, two (69,632 bytes, three
// an SM, 396 slots) from three to 31 rows; from 32 rows on three where the
// rows' blocks fit 264 slots (32 and 33 rows: 256 and 264 blocks) or
// overflow 396 (50 and 64 rows: 400 and 512), two between (34 and 48 rows:
// 272 and 384 blocks, one wave with two stages, two with three); and a
// setting applying to every step.
func TestTCStages(t *testing.T) {
	b := &Backend{sms: 132, smemSM: 233472}
	for _, c := range []struct{ set, rows, stages, shared, S int }{
		{0, 1, 3, 104448, 32}, // 264 slots: 33 splits a kv head, 32 at most
		{0, 2, 3, 104448, 16}, // 264 / 16
		{0, 3, 2, 69632, 16},  // 396 / 24
		{0, 8, 2, 69632, 6},   // 396 / 64
		{0, 31, 2, 69632, 1},  // 396 / 248
		{0, 32, 3, 104448, 1}, // 264 / 256
		{0, 33, 3, 104448, 1}, // 264 / 264
		{0, 34, 2, 69632, 1},  // 396 / 272
		{0, 48, 2, 69632, 1},  // 396 / 384
		{0, 49, 2, 69632, 1},  // 396 / 392
		{0, 50, 3, 104448, 1}, // 264 / 400: one split at least
		{0, 64, 3, 104448, 1}, // 264 / 512
		{2, 1, 2, 69632, 32},  // 396 / 8, 32 at most
		{2, 32, 2, 69632, 1},  // 396 / 256
		{4, 2, 4, 139264, 8},  // one block an SM: 132 / 16
	} {
		b.attnTCStages = c.set
		st := b.tcStages(c.rows, 8, 128)
		shared := b.pagedTCShared(c.rows, 8, 128, 4, 4)
		if S := b.pagedTCSplits(pagedMaxSplits, c.rows, 8, shared); st != c.stages || shared != c.shared || S != c.S {
			t.Errorf("setting %d, %d rows: %d stages, %d bytes, %d splits; want %d, %d, %d", c.set, c.rows, st, shared, S, c.stages, c.shared, c.S)
		}
	}
}

// TestQmmaTileFor checks the tiles of 8 rows a product's pass takes: on
// mma.sync the fewest of 1, 2 and 4 that hold its rows; on warpgroup MMA
// the fewest of 2, 4 and 8, or with GPTQTOOL_QMMA_FIT of 2-8, as the rows
// need.
func TestQmmaTileFor(t *testing.T) {
	for _, c := range []struct{ M, sync, wg, fit int }{
		{1, 1, 1, 1}, {8, 1, 1, 1}, {9, 2, 2, 2}, {16, 2, 2, 2}, {17, 4, 4, 3}, {24, 4, 4, 3}, {25, 4, 4, 4}, {32, 4, 4, 4},
		{33, 0, 8, 5}, {40, 0, 8, 5}, {41, 0, 8, 6}, {48, 0, 8, 6}, {49, 0, 8, 7}, {56, 0, 8, 7}, {57, 0, 8, 8}, {64, 0, 8, 8},
	} {
		for _, fit := range []bool{false, true} {
			b := &Backend{qmmaFit: fit}
			want := c.wg
			if fit {
				want = c.fit
			}
			if got := qmmaTiles[b.qmmaTileFor(c.M, true)]; got != want {
				t.Errorf("%d rows, fit %v, warpgroup MMA: %d tiles, want %d", c.M, fit, got, want)
			}
			if c.sync == 0 {
				continue
			}
			if got := qmmaTiles[b.qmmaTileFor(c.M, false)]; got != c.sync {
				t.Errorf("%d rows, fit %v, mma.sync: %d tiles, want %d", c.M, fit, got, c.sync)
			}
		}
	}
}

// TestFitClusters checks how paged attention's tensor-core splits give way
// to the clusters the device runs at once, worked out by hand with an
// H200's counts at three blocks an SM (396 blocks at once without
// clusters; 198 clusters of two and 124 of three, as
// TestPagedAttentionFitsClusters measured; 93, 74, 62, 53 and 46 of four to
// eight on 124 SMs): batch 16 of the 7B shape (128 pairs in 3 splits: two
// waves, 2/3 of a wave a split) goes to two splits (one wave, 1/2); 12
// rows (96 pairs) and 24 (192 pairs in two) keep theirs; 200 pairs in two
// take two waves, as many a split as one split's one wave, and keep two; 3
// and 4 rows' 16 splits in clusters of 8 (48 and 64 clusters: two waves)
// take no more waves a split than 8 (one wave) and keep 16; 24 splits of
// 8 pairs where 16 clusters of 8 run at once go to 16; a device that cannot
// say keeps the splits.
func TestFitClusters(t *testing.T) {
	h200 := func(c int) int { return map[int]int{1: 396, 2: 198, 3: 124, 4: 93, 5: 74, 6: 62, 7: 53, 8: 46}[c] }
	for _, c := range []struct {
		S, clu, pairs int
		active        func(int) int
		S2, clu2      int
	}{
		{3, 3, 128, h200, 2, 2},
		{3, 3, 96, h200, 3, 3},
		{2, 2, 192, h200, 2, 2},
		{2, 2, 200, h200, 2, 2},
		{16, 8, 24, h200, 16, 8},
		{16, 8, 32, h200, 16, 8},
		{24, 8, 8, func(c int) int { return map[int]int{8: 16}[c] }, 16, 8}, // 24 clusters: two waves, 1/12 a split; 16: one, 1/16
		{3, 3, 128, func(int) int { return 0 }, 3, 3},
	} {
		if S, clu := fitClusters(c.S, c.clu, c.pairs, c.active); S != c.S2 || clu != c.clu2 {
			t.Errorf("%d splits in clusters of %d, %d pairs: %d splits, clusters of %d; want %d, %d", c.S, c.clu, c.pairs, S, clu, c.S2, c.clu2)
		}
	}
}
