package cuda

import "testing"

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
		// 48 column blocks; twice 132 blocks: 6 splits of 11 chunks.
		{"qkv M1", defaultFill, 1, 4096, 6144, 4, 6, 11, 11, true},
		// 224 column blocks: 2 splits of 32 chunks.
		{"gate/up M1", defaultFill, 1, 4096, 28672, 4, 2, 32, 32, true},
		// 32 column blocks, 224 chunks: 9 splits wanted, 8 in a cluster.
		{"down M1", defaultFill, 1, 14336, 4096, 4, 8, 28, 28, true},
		// Four times 132 blocks at 8 rows: 3 splits (no wave cap for one tile).
		{"gate/up M8", defaultFill, 8, 4096, 28672, 4, 3, 22, 22, true},
		// Once 132 blocks at 32 rows: one split, x staged 16 chunks at a time
		// ((100 KiB - 32 KiB of ring) / (32 rows × 2 bytes) - 8 = 1080 inputs).
		{"gate/up M32", defaultFill, 32, 4096, 28672, 4, 1, 64, 16, false},
		// Fill 2 at 32 rows would be 448 blocks, 1.7 waves: capped to one.
		{"gate/up M32 fill 2", [4]int{2, 4, 2, 2}, 32, 4096, 28672, 4, 1, 64, 16, false},
		// o_proj at 32 rows, fill 2: 9 splits wanted, 8 (256 blocks) fit a wave.
		{"o M32 fill 2", [4]int{2, 4, 2, 2}, 32, 4096, 4096, 4, 8, 8, 8, true},
		// TestQuantMatMul's phased shapes: 17 rows stage 24 chunks at a
		// time, 8-bit 32 rows 32 of 64, 3 splits of 22 chunks 16.
		{"gate/up M17", defaultFill, 17, 4096, 28672, 4, 1, 64, 24, false},
		{"8-bit M32", defaultFill, 32, 4096, 14336, 8, 2, 64, 32, true},
		{"N 8192 M32", defaultFill, 32, 4096, 8192, 4, 3, 22, 16, true},
		// 8-bit chunks are 32 inputs: 128 chunks, 6 splits of 22.
		{"qkv M1 8-bit", defaultFill, 1, 4096, 6144, 8, 6, 22, 22, true},
	} {
		b.qfill = c.fill
		p := b.qmmaSplit(c.M, c.K, c.N, c.bits)
		if p.S != c.S || p.cps != c.cps || p.P != c.P || p.cluster != c.cluster {
			t.Errorf("%s: S %d cps %d P %d cluster %v, want %d %d %d %v", c.name, p.S, p.cps, p.P, p.cluster, c.S, c.cps, c.P, c.cluster)
		}
		if p.shared > qmmaShared {
			t.Errorf("%s: %d bytes of shared memory, over %d", c.name, p.shared, qmmaShared)
		}
	}
	// Without the cap, fill 2 at 32 rows splits gate/up in two.
	b.waveCap, b.qfill = false, [4]int{2, 4, 2, 2}
	if p := b.qmmaSplit(32, 4096, 28672, 4); p.S != 2 {
		t.Errorf("gate/up M32 fill 2 without the wave cap: %d splits, want 2", p.S)
	}
}

// TestQmmaTPB checks which products of the 7B shape split their inputs
// inside blocks, and how many tiles a block takes, on an H200's figures,
// worked out by hand: plain weights one tile (256 blocks of eight 1/8
// slices for o_proj and down), q/k/v two (48 slabs × 4 blocks, four slices
// of 16 chunks), gate/up four (224 slabs × 2 = 448 blocks, two slices of
// 32); not at 3 rows, nor where x does not fit (2 rows × 32768 inputs).
func TestQmmaTPB(t *testing.T) {
	b := &Backend{sms: 132, shared: 232448, smemSM: 233472, clusters: true, waveCap: true, qfill: defaultFill, qib: qibPlain | qibSplit | qibGLU}
	plain := func(K, N int) *quant { return &quant{k: K, n: N, bits: 4, seg1: N, seg2: N} }
	split := &quant{k: 4096, n: 6144, bits: 4, seg1: 4096, seg2: 5120}
	glu := &quant{k: 4096, n: 28672, bits: 4, glu: true}
	for _, c := range []struct {
		name      string
		q         *quant
		M, tpb    int
		cps, P    int
		blocksPer int
	}{
		{"o_proj M1", plain(4096, 4096), 1, 1, 8, 64, 8},
		{"down M2", plain(14336, 4096), 2, 1, 28, 224, 8},
		{"qkv M1", split, 1, 2, 16, 64, 4},
		{"gate/up M1", glu, 1, 4, 32, 64, 2},
		{"gate/up M3", glu, 3, 0, 0, 0, 0},
		{"K 32768 M2", plain(32768, 4096), 2, 0, 0, 0, 0},
	} {
		tpb := b.qmmaTPB(c.q, c.M)
		if tpb != c.tpb {
			t.Errorf("%s: %d tiles a block, want %d", c.name, tpb, c.tpb)
			continue
		}
		if tpb == 0 {
			continue
		}
		p := inBlockPlan(c.M, c.q.k, c.q.bits, tpb)
		if p.S != 1 || p.cps != c.cps || p.P != c.P || p.cluster || 8/tpb != c.blocksPer {
			t.Errorf("%s: S %d cps %d P %d cluster %v, want 1 %d %d false", c.name, p.S, p.cps, p.P, p.cluster, c.cps, c.P)
		}
		if p.shared > qmmaShared {
			t.Errorf("%s: %d bytes of shared memory, over %d", c.name, p.shared, qmmaShared)
		}
	}
	b.qib = qibPlain | qibSplit
	if tpb := b.qmmaTPB(glu, 1); tpb != 0 {
		t.Errorf("GPTQTOOL_QMMA_IB=3: gate/up %d tiles a block, want none", tpb)
	}
	if tpb := b.qmmaTPB(split, 1); tpb != 2 {
		t.Errorf("GPTQTOOL_QMMA_IB=3: q/k/v %d tiles a block, want 2", tpb)
	}
}
