package cuda

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"strconv"
	"testing"

	"github.com/gptqtool/gptqtool/kernels"
)

// TestTraceSummary checks the kernel timeline's host side on hand-made
// records: the byte layout of kernels/common.cuh's TraceRec (88 bytes:
// grid, kind, block, SM, grid dims, five timer and five clock marks, the
// cluster), the GPCs found from the clusters and a launch's load on each, the
// grouping by launch, the marks' earliest / median / latest, the median
// block's cycles between the marks it reached (across the clock's wrap),
// the SMs by the blocks they ran, and the order of launches.
func TestTraceSummary(t *testing.T) {
	rec := func(grid uint64, kind, block, sm uint32, gx, gy int, g [5]uint64, c [5]uint32, cl ...uint32) []byte {
		b := make([]byte, traceRecBytes)
		le := binary.LittleEndian
		le.PutUint64(b, grid)
		le.PutUint32(b[8:], kind)
		le.PutUint32(b[12:], block)
		le.PutUint32(b[16:], sm)
		le.PutUint32(b[20:], uint32(gx<<16|gy))
		for k := range 5 {
			le.PutUint64(b[24+8*k:], g[k])
			le.PutUint32(b[64+4*k:], c[k])
		}
		le.PutUint32(b[84:], 1)
		if len(cl) > 0 {
			le.PutUint32(b[84:], cl[0])
		}
		return b
	}
	const base = 1_000_000_000
	raw := [][]byte{
		// A qmma launch of three blocks on two SMs (grid 32 × 8); blocks 0
		// and 1 are cluster 5 of two blocks, block 2 cluster 6 (of one
		// record here).
		rec(7, 1, 0, 3, 32, 8, [5]uint64{base + 2000, base + 5000, base + 6000, base + 9000, base + 10000}, [5]uint32{100, 200, 300, 400, 500}, 5<<5|2),
		rec(7, 1, 1, 4, 32, 8, [5]uint64{base + 2100, base + 5200, base + 6100, base + 9500, base + 11000}, [5]uint32{0xfffffff0, 0x10, 0x30, 0x60, 0x100}, 5<<5|2),
		rec(7, 1, 2, 3, 32, 8, [5]uint64{base + 2200, base + 5100, base + 6200, base + 9100, base + 10500}, [5]uint32{1000, 1100, 1300, 1600, 2000}, 6<<5|2),
		// A norm launch before it: no marks 2 and 3.
		rec(5, 3, 0, 9, 1, 1, [5]uint64{base, base + 1000, 0, 0, base + 1800}, [5]uint32{10, 20, 0, 0, 50}),
		// A block of the norm that returned before its wait: not the
		// median block of the cycles.
		rec(5, 3, 2, 9, 1, 1, [5]uint64{base + 5, 0, 0, 0, base + 1700}, [5]uint32{10, 0, 0, 0, 5000}),
		// A block that never ended: left out.
		rec(5, 3, 1, 9, 1, 1, [5]uint64{base + 10, 0, 0, 0, 0}, [5]uint32{}),
		// The norm's graph node replayed: the same grid id, block 0 again.
		rec(5, 3, 0, 2, 1, 1, [5]uint64{base + 20000, base + 20500, 0, 0, base + 21000}, [5]uint32{10, 20, 0, 0, 50}),
	}
	recs := map[string][]traceRec{}
	for i, b := range raw {
		mod := "qgemv.cu"
		if i >= 3 {
			mod = "norm.cu"
		}
		recs[mod] = append(recs[mod], parseTraceRec(b))
	}
	if r := recs["qgemv.cu"][1]; r.grid != 7 || r.kind != 1 || r.block != 1 || r.sm != 4 || r.gxy != 32<<16|8 || r.g[3] != base+9500 || r.c[0] != 0xfffffff0 {
		t.Fatalf("parsed %+v", r)
	}
	s := summarizeTrace(recs, map[string]uint64{"norm.cu": base + 20500}, map[string]bool{"qmma": true})
	if len(s.Launches) != 3 {
		t.Fatalf("%d launches, want 3: %+v", len(s.Launches), s.Launches)
	}
	n, q := s.Launches[0], s.Launches[1]
	if r := s.Launches[2]; r.Kind != "rmsnorm" || r.Blocks != 1 || r.Start != 20 || r.End != 21 || r.SMs != 1 || !r.Partial {
		t.Errorf("replayed norm launch %+v (partial: it ended after the norm module's cutoff)", r)
	}
	if s.Launches[0].Partial || s.Launches[1].Partial {
		t.Errorf("launches that ended before the cutoff (or of a module without one) marked partial: %+v", s.Launches[:2])
	}
	if n.Kind != "rmsnorm" || n.Blocks != 2 || n.Start != 0 || n.End != 1.8 || n.Mark[0] != [3]float64{1, 1, 1} || n.Mark[1] != [3]float64{} {
		t.Errorf("norm launch %+v", n)
	}
	if len(n.Cycles) != 2 || n.Cycles[0] != 10 || n.Cycles[1] != 30 {
		t.Errorf("norm cycles %v, want [10 30]", n.Cycles)
	}
	if q.Kind != "qmma" || q.Grid != [2]int{32, 8} || q.Blocks != 3 || q.SMs != 2 || q.Start != 2 || q.End != 11 {
		t.Errorf("qmma launch %+v", q)
	}
	if q.Mark[0] != [3]float64{5, 5.1, 5.2} || q.Mark[2] != [3]float64{9, 9.1, 9.5} {
		t.Errorf("qmma marks %v", q.Mark)
	}
	// Each SM's loop end and end (GPTQTOOL_TRACE_SM=qmma): SM 3 the later
	// of its two blocks' (9.1 and 10.5), SM 4 its one block's; none for
	// the norm, a kind not named.
	if m := q.SMMarks; len(m) != 2 || m[3] != [2]float64{9.1, 10.5} || m[4] != [2]float64{9.5, 11} {
		t.Errorf("qmma SM marks %v, want map[3:[9.1 10.5] 4:[9.5 11]]", m)
	}
	if n.SMMarks != nil {
		t.Errorf("norm SM marks %v, want none", n.SMMarks)
	}
	// SM 3 ran two of its blocks (ending at 10 and 10.5 µs), SM 4 one (11).
	if len(q.SMLoad) != 2 || q.SMLoad[1] != 1 || q.SMLoad[2] != 1 || q.LoadEnd[1] != 11 || q.LoadEnd[2] != 10.5 {
		t.Errorf("qmma SM load %v, ends by load %v; want map[1:1 2:1] and map[1:11 2:10.5]", q.SMLoad, q.LoadEnd)
	}
	// The GPCs: SMs 3 and 4 ran one cluster; SMs 2 and 9 none.
	if len(s.GPCs) != 3 || len(s.GPCs[0]) != 1 || s.GPCs[0][0] != 2 || len(s.GPCs[1]) != 2 || s.GPCs[1][0] != 3 || s.GPCs[1][1] != 4 || len(s.GPCs[2]) != 1 || s.GPCs[2][0] != 9 {
		t.Errorf("GPCs %v, want [[2] [3 4] [9]]", s.GPCs)
	}
	if g := q.GPCLoad; len(g) != 3 || g[0] != (GPCLoad{}) || g[1] != (GPCLoad{Blocks: 3, SMs: 2, End: 9}) || g[2] != (GPCLoad{}) {
		t.Errorf("qmma GPC load %+v, want the three blocks on GPC 1's two SMs, ending 9 µs after the launch's start", g)
	}
	// Spans 400, 0x110 = 272 (across the wrap), 1000 cycles: the median
	// block is the first.
	if want := []uint32{100, 100, 100, 100}; len(q.Cycles) != 4 || q.Cycles[0] != want[0] || q.Cycles[3] != want[3] {
		t.Errorf("qmma cycles %v, want %v", q.Cycles, want)
	}
}

// TestTraceGPCs checks the grouping of SMs into GPCs: clusters of two or
// more blocks join the SMs they ran on, across launches (SMs 1 and 2 in one
// launch, 2 and 5 in another: one group), a cluster of one joins nothing,
// the same cluster index in two launches is two clusters, and the groups
// are numbered by their first SM.
func TestTraceGPCs(t *testing.T) {
	r := func(sm, cl uint32) traceRec { return traceRec{sm: sm, cl: cl} }
	got := traceGPCs([][]traceRec{
		{r(2, 0<<5|2), r(1, 0<<5|2), r(7, 1<<5|1), r(9, 2<<5|2), r(8, 2<<5|2)},
		{r(5, 0<<5|2), r(2, 0<<5|2), r(3, 1<<5|1), r(0, 3<<5|1)},
	})
	want := map[uint32]int{0: 0, 1: 1, 2: 1, 5: 1, 3: 2, 7: 3, 8: 4, 9: 4}
	if len(got) != len(want) {
		t.Fatalf("GPCs %v, want %v", got, want)
	}
	for sm, g := range want {
		if got[sm] != g {
			t.Errorf("SM %d in GPC %d, want %d (all: %v)", sm, got[sm], g, got)
		}
	}
}

// TestTraceCompiles compiles, where NVRTC loads (no GPU needed), the parts
// that hold the traced kernels with -DGPTQTOOL_TRACE=512, and checks that
// each holds g_trace_n, traceSMs counts, and a g_trace of 512 records of
// traceRecBytes: the host's reading of kernels/common.cuh's TraceRec.
func TestTraceCompiles(t *testing.T) {
	if err := loadNVRTC(); err != nil {
		t.Skipf("%v", err)
	}
	const n = 2 * traceSMs
	for _, k := range []struct{ file, kernel, at string }{
		{"qgemv.cu", "qmma4_t1_f16", ""}, {"decode.cu", "paged_attn_c4_g4_f16", ""}, {"norm.cu", "rmsnorm_v8_f16", ""},
		{"sample.cu", "sample_rows", ""}, {"gemv.cu", "gemv_rows_m1_f16", ""},
		// Attention's other mark placements (GPTQTOOL_TRACE_AT).
		{"decode.cu", "paged_attn_c4_g4_f16", "-DTRACE_AT=1"}, {"decode.cu", "paged_attn_c4_g4_f16", "-DTRACE_AT=2"},
		{"decode.cu", "paged_attn_c4_g4_f16", "-DTRACE_AT=3"},
		// The products' loop mark once every warp is done (GPTQTOOL_TRACE_AT=1).
		{"qgemv.cu", "qmma4_t1_f16", "-DTRACE_AT=1"},
		// The _a kernels' staging marks (GPTQTOOL_TRACE_AT=4).
		{"qgemv.cu", "qmma4_t1_a_f16", "-DTRACE_AT=4"}, {"qgemv.cu", "qmma4_t1_a_f16", "-DTRACE_AT=5"},
		{"qgemv.cu", "qmma4_t1_a_f16", "-DTRACE_AT=6"},
		// The clustered products' epilogue (GPTQTOOL_TRACE_AT=7).
		{"qgemv.cu", "qmma4_t1_f16", "-DTRACE_AT=7"}, {"qgemv.cu", "qmma4_t1_g_f16", "-DTRACE_AT=7"},
	} {
		m := kernels.ModuleOf(k.file, k.kernel)
		src, err := kernels.Source(m.File)
		if err != nil {
			t.Fatal(err)
		}
		opts := append(m.Options(), "-DGPTQTOOL_TRACE="+strconv.Itoa(n))
		if k.at != "" {
			opts = append(opts, k.at)
		}
		cubin, _, err := compile(m.File, src, m.Arch(90), 0, "", opts...)
		if err != nil {
			t.Fatalf("%s %s: %v", m.Key(), k.at, err)
		}
		c := append([]byte(nil), cubin...)
		binary.LittleEndian.PutUint32(c[20:], 1) // e_version, as kernelSymbols does
		f, err := elf.NewFile(bytes.NewReader(c))
		if err != nil {
			t.Fatal(err)
		}
		syms, err := f.Symbols()
		if err != nil {
			t.Fatal(err)
		}
		sizes := map[string]uint64{}
		for _, s := range syms {
			sizes[s.Name] = s.Size
		}
		if sizes["g_trace"] != n*traceRecBytes || sizes["g_trace_n"] != 4*traceSMs {
			t.Errorf("%s: g_trace %d bytes, g_trace_n %d; want %d and %d", m.Key(), sizes["g_trace"], sizes["g_trace_n"], n*traceRecBytes, 4*traceSMs)
		}
	}
}
