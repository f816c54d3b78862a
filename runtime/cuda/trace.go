package cuda

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// The kernel timeline: with GPTQTOOL_TRACE=FILE every module is compiled
// with -DGPTQTOOL_TRACE=N (GPTQTOOL_TRACE_RECORDS, default traceRecords),
// which makes thread 0 of each block of the decode step's kernels (qmma,
// paged attention, the norms, sample_rows, gemv_rows) record the global timer and its
// SM's clock at the marks of kernels/common.cuh into the module's g_trace:
// the first N/traceSMs blocks of the module's kernels on each SM. WriteTrace (called by
// `gptqtool bench decode|prefill`) sums them up by launch into FILE: where
// a replayed step's time goes, kernel by kernel, that Nsight Compute
// (kernels one at a time) cannot show.

// traceRecords is the default of GPTQTOOL_TRACE_RECORDS: 8,192 an SM,
// about 27 decode steps of the 7B shape's products at batch 1 (40,000
// blocks a step, about 300 an SM; 176 MB of device memory a module).
const traceRecords = 1 << 21

// traceRecBytes is sizeof(TraceRec) in kernels/common.cuh, and traceSMs
// its TRACE_SMS: g_trace is that many equal shares, one an SM, whose used
// records g_trace_n [traceSMs] counts.
const (
	traceRecBytes = 88
	traceSMs      = 256
)

// traceRec is one block's record.
type traceRec struct {
	grid                 uint64
	kind, block, sm, gxy uint32
	g                    [5]uint64 // global timer (ns) at marks 0-4; 0: not reached
	c                    [5]uint32 // SM clock at marks 0-4
	cl                   uint32    // the block's cluster: its index << 5 | its blocks
}

func parseTraceRec(b []byte) traceRec {
	le := binary.LittleEndian
	r := traceRec{grid: le.Uint64(b), kind: le.Uint32(b[8:]), block: le.Uint32(b[12:]), sm: le.Uint32(b[16:]), gxy: le.Uint32(b[20:])}
	for k := range 5 {
		r.g[k] = le.Uint64(b[24+8*k:])
		r.c[k] = le.Uint32(b[64+4*k:])
	}
	r.cl = le.Uint32(b[84:])
	return r
}

// TraceLaunch sums up one launch (one grid) of a traced kernel: times in
// µs from the trace's first block start, cycles of the SM clock.
type TraceLaunch struct {
	Module string `json:"module"`
	Kind   string `json:"kind"`
	Grid   [2]int `json:"grid"`
	Blocks int    `json:"blocks"`
	SMs    int    `json:"sms"`
	// Start is the first block's start, End the last block's end.
	Start float64 `json:"start_us"`
	End   float64 `json:"end_us"`
	// Marks 1-3 (the kernel's wait returned, x staged, main loop done;
	// paged attention: its wait returned, its loop done, its combine's
	// barrier passed): the earliest, the median and the latest block's, 0
	// where the kernel has no such mark.
	Mark [3][3]float64 `json:"marks_us"`
	// Cycles are the median block's SM clock cycles from each mark to the
	// next one it reached (start → 1 → 2 → 3 → end).
	Cycles []uint32 `json:"cycles"`
	// Partial: the launch ended after an SM's share of its module's
	// records filled, so some of its blocks may be missing.
	Partial bool `json:"partial,omitempty"`
	// SMLoad counts the SMs by how many of the launch's blocks each ran;
	// LoadEnd is the latest block end on the SMs of each such count (µs
	// from the trace's first block start, as Start and End).
	SMLoad  map[int]int     `json:"sm_load"`
	LoadEnd map[int]float64 `json:"load_end_us"`
	// GPCLoad is, for each of the trace's GPCs (TraceSummary.GPCs, in
	// that order), the launch's blocks that ran there, the SMs they ran on
	// and the latest block end (µs from the launch's first block start).
	GPCLoad []GPCLoad `json:"gpc_load,omitempty"`
	// SMMarks, for the kinds GPTQTOOL_TRACE_SM names, are each SM's main
	// loop done (mark 3) and end, µs as Start (of an SM that ran several of
	// the launch's blocks, the latest of each): which SMs end late, launch
	// after launch.
	SMMarks map[int][2]float64 `json:"sm_marks_us,omitempty"`
}

// GPCLoad is a launch's share of one GPC.
type GPCLoad struct {
	Blocks int     `json:"blocks"`
	SMs    int     `json:"sms"`
	End    float64 `json:"end_us"`
}

// TraceSummary is WriteTrace's file.
type TraceSummary struct {
	// Records are the blocks of each module's kernels that ran and the
	// most it holds (past an SM's share of it, that SM's blocks are not
	// recorded, and launches still running then are marked Partial).
	// (past it, blocks are not recorded).
	Records  map[string][2]int `json:"records"`
	Launches []TraceLaunch     `json:"launches"`
	// GPCs are the SMs grouped by the clusters that ran on them (a
	// cluster's blocks run within one GPC), each group sorted, the groups
	// by their first SM; SMs no cluster of two or more blocks ran on are
	// groups of one.
	GPCs [][]int `json:"gpcs,omitempty"`
}

var traceKinds = map[uint32]string{1: "qmma", 2: "paged_attn", 3: "rmsnorm", 4: "add_rmsnorm", 5: "sample_rows", 6: "gemv_rows", 7: "argmax_rows", 8: "fmlp", 9: "qglu"}

// traceSetup reads GPTQTOOL_TRACE, GPTQTOOL_TRACE_RECORDS and
// GPTQTOOL_TRACE_AT.
func (b *Backend) traceSetup() error {
	b.tracePath = os.Getenv("GPTQTOOL_TRACE")
	if b.tracePath == "" {
		return nil
	}
	var err error
	if b.traceCap, err = envInt("GPTQTOOL_TRACE_RECORDS", traceRecords, traceSMs, 1<<24, fmt.Sprintf("%d to %d records a module", traceSMs, 1<<24)); err != nil {
		return err
	}
	b.traceCap = b.traceCap / traceSMs * traceSMs // whole shares of the SMs
	// GPTQTOOL_TRACE_AT: the kernels' other mark placements (TRACE_MARK_AT
	// in kernels/common.cuh); paged attention's 1 marks its combine, 2 its
	// first tile, 3 runs a combining cluster's last part twice
	// (kernels/decode.cu); the products' 1 marks the loop once every warp
	// is done, and the _a kernels' 4 their staging's splits' weights (mark
	// 2) and x staged (mark 3), 5 thread 0's first loads back (mark 2) and
	// the splits' weights (mark 3), 6 x staged (mark 2, the default's) and
	// the last warp's first parts back, after the weights' barrier (mark 3),
	// and the clustered products' 7 their epilogue: the block's sums
	// written (mark 2; where the blocks push their sums, every warp's,
	// else thread 0's as it reaches the barrier) and the cluster's barrier
	// passed (mark 3) (kernels/qgemv.cu).
	if b.traceAt, err = envInt("GPTQTOOL_TRACE_AT", 0, 0, 7, "0 (the default marks) to 7"); err != nil {
		return err
	}
	// GPTQTOOL_TRACE_SM=KIND[,KIND]: each SM's marks of those kinds'
	// launches (TraceLaunch.SMMarks), e.g. fmlp.
	b.traceSM = map[string]bool{}
	if v := os.Getenv("GPTQTOOL_TRACE_SM"); v != "" {
		known := map[string]bool{}
		for _, k := range traceKinds {
			known[k] = true
		}
		for k := range strings.SplitSeq(v, ",") {
			if !known[k] {
				return fmt.Errorf("cuda: GPTQTOOL_TRACE_SM=%s: no kernel kind %q (kinds: %s)", v, k, strings.Join(slices.Sorted(maps.Keys(known)), ", "))
			}
			b.traceSM[k] = true
		}
	}
	if drv.cuModuleGetGlobal == nil {
		return fmt.Errorf("cuda: GPTQTOOL_TRACE: the driver has no cuModuleGetGlobal")
	}
	return nil
}

// traceDefines are the NVRTC defines tracing and GPTQTOOL_KERNEL_DEFINES
// add to a module of file: every one, but those GPTQTOOL_KERNEL_DEFINES
// names for another file.
func (b *Backend) traceDefines(file string) []string {
	var d []string
	if b.tracePath != "" {
		d = append(d, "-DGPTQTOOL_TRACE="+strconv.Itoa(b.traceCap))
		if b.traceAt != 0 {
			d = append(d, "-DTRACE_AT="+strconv.Itoa(b.traceAt))
		}
	}
	for _, o := range b.extraDefines {
		if f, opt, ok := strings.Cut(o, ":"); ok {
			if f != file {
				continue
			}
			o = opt
		}
		d = append(d, o)
	}
	return d
}

// WriteTrace sums up the kernel timeline into GPTQTOOL_TRACE's file; it
// does nothing without GPTQTOOL_TRACE.
func (b *Backend) WriteTrace() error {
	if b.tracePath == "" {
		return nil
	}
	b.enter()
	defer b.exit()
	if err := b.syncLocked(); err != nil {
		return err
	}
	records := map[string][2]int{}
	recs := map[string][]traceRec{}
	cutoffs := map[string]uint64{} // by module: the earliest start of the last block an SM's full share holds
	for key, mod := range b.mods {
		var nPtr, recPtr, nBytes, recBytes uint64
		if drv.cuModuleGetGlobal(&nPtr, &nBytes, mod, "g_trace_n") != 0 || drv.cuModuleGetGlobal(&recPtr, &recBytes, mod, "g_trace") != 0 {
			continue // a module without traced kernels' globals
		}
		if recBytes != uint64(b.traceCap)*traceRecBytes || nBytes != 4*traceSMs {
			return fmt.Errorf("cuda: trace of %s: g_trace is %d bytes and g_trace_n %d, want %d records of %d and %d counts", key, recBytes, nBytes, b.traceCap, traceRecBytes, traceSMs)
		}
		counts := make([]byte, nBytes)
		if err := b.dtoh(counts, nPtr); err != nil {
			return fmt.Errorf("cuda: trace of %s: %w", key, err)
		}
		per := b.traceCap / traceSMs
		total := 0
		for sm := range traceSMs {
			n := int(binary.LittleEndian.Uint32(counts[4*sm:]))
			total += n
			kept := min(n, per)
			if kept == 0 {
				continue
			}
			raw := make([]byte, kept*traceRecBytes)
			if err := b.dtoh(raw, recPtr+uint64(sm*per*traceRecBytes)); err != nil {
				return fmt.Errorf("cuda: trace of %s: %w", key, err)
			}
			for i := range kept {
				recs[key] = append(recs[key], parseTraceRec(raw[i*traceRecBytes:]))
			}
			if last := recs[key][len(recs[key])-1].g[0]; n > per && (cutoffs[key] == 0 || last < cutoffs[key]) {
				cutoffs[key] = last
			}
		}
		records[key] = [2]int{total, b.traceCap}
	}
	sum := summarizeTrace(recs, cutoffs, b.traceSM)
	sum.Records = records
	out, err := json.MarshalIndent(sum, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(b.tracePath, append(out, '\n'), 0o644)
}

// summarizeTrace groups the modules' block records by launch and sums each
// launch up, in the order the launches started; a record whose block had
// not ended (no end mark) is left out. A launch of a module with a cutoff
// (the global timer from which one of its SMs recorded no more blocks)
// that ended after it is Partial. A launch is a module and a grid id,
// except that every replay of a CUDA graph's kernel node has the node's
// grid id: one key's records, in the order their blocks started, begin a
// new launch where a block index repeats (a replay's blocks all start
// before the next replay's, which the stream orders after it).
func summarizeTrace(recs map[string][]traceRec, cutoffs map[string]uint64, smKinds map[string]bool) TraceSummary {
	type launchKey struct {
		mod  string
		grid uint64
	}
	byKey := map[launchKey][]traceRec{}
	var t0 uint64
	for key, rs := range recs {
		for _, r := range rs {
			if r.g[0] == 0 || r.g[4] == 0 {
				continue
			}
			k := launchKey{key, r.grid}
			byKey[k] = append(byKey[k], r)
			if t0 == 0 || r.g[0] < t0 {
				t0 = r.g[0]
			}
		}
	}
	type launch struct {
		mod string
		rs  []traceRec
	}
	var launches []launch
	for k, rs := range byKey {
		sort.Slice(rs, func(i, j int) bool { return rs[i].g[0] < rs[j].g[0] })
		seen := map[uint32]bool{}
		first := 0
		for i, r := range rs {
			if seen[r.block] {
				launches = append(launches, launch{k.mod, rs[first:i]})
				clear(seen)
				first = i
			}
			seen[r.block] = true
		}
		launches = append(launches, launch{k.mod, rs[first:]})
	}
	us := func(g uint64) float64 { return float64(g-t0) / 1e3 }
	var sum TraceSummary
	all := make([][]traceRec, len(launches))
	for i, ln := range launches {
		all[i] = ln.rs
	}
	gpcOf := traceGPCs(all)
	for sm, g := range gpcOf {
		for len(sum.GPCs) <= g {
			sum.GPCs = append(sum.GPCs, nil)
		}
		sum.GPCs[g] = append(sum.GPCs[g], int(sm))
	}
	for _, g := range sum.GPCs {
		slices.Sort(g)
	}
	for _, ln := range launches {
		rs := ln.rs
		l := TraceLaunch{Module: ln.mod, Kind: traceKinds[rs[0].kind], Grid: [2]int{int(rs[0].gxy >> 16), int(rs[0].gxy & 0xffff)}, Blocks: len(rs)}
		start, end := rs[0].g[0], rs[0].g[4]
		perSM := map[uint32]int{}
		for _, r := range rs {
			perSM[r.sm]++
			start, end = min(start, r.g[0]), max(end, r.g[4])
		}
		l.Start, l.End = us(start), us(end)
		l.SMLoad, l.LoadEnd = map[int]int{}, map[int]float64{}
		for _, n := range perSM {
			l.SMLoad[n]++
		}
		for _, r := range rs {
			n := perSM[r.sm]
			l.LoadEnd[n] = max(l.LoadEnd[n], us(r.g[4]))
		}
		if len(sum.GPCs) > 0 {
			l.GPCLoad = make([]GPCLoad, len(sum.GPCs))
			for sm := range perSM {
				l.GPCLoad[gpcOf[sm]].SMs++
			}
			for _, r := range rs {
				g := &l.GPCLoad[gpcOf[r.sm]]
				g.Blocks++
				g.End = max(g.End, us(r.g[4])-l.Start)
			}
		}
		if smKinds[l.Kind] {
			l.SMMarks = map[int][2]float64{}
			for _, r := range rs {
				m := l.SMMarks[int(r.sm)]
				if r.g[3] != 0 {
					m[0] = max(m[0], us(r.g[3]))
				}
				m[1] = max(m[1], us(r.g[4]))
				l.SMMarks[int(r.sm)] = m
			}
		}
		c := cutoffs[ln.mod]
		l.Partial = c != 0 && end > c
		l.SMs = len(perSM)
		for m := 1; m <= 3; m++ {
			var ts []float64
			for _, r := range rs {
				if r.g[m] != 0 {
					ts = append(ts, us(r.g[m]))
				}
			}
			if len(ts) > 0 {
				slices.Sort(ts)
				l.Mark[m-1] = [3]float64{ts[0], ts[len(ts)/2], ts[len(ts)-1]}
			}
		}
		// Cycles between the marks the median block (by its whole span)
		// reached, of the blocks that waited for the kernel ahead where
		// some did (attention's blocks past a row's splits return before
		// it); the SM clock wraps at 32 bits, the differences do not.
		sort.Slice(rs, func(i, j int) bool { return rs[i].c[4]-rs[i].c[0] < rs[j].c[4]-rs[j].c[0] })
		if waited := slices.DeleteFunc(slices.Clone(rs), func(r traceRec) bool { return r.g[1] == 0 }); len(waited) > 0 {
			rs = waited
		}
		r := rs[len(rs)/2]
		prev := r.c[0]
		for m := 1; m <= 4; m++ {
			if r.g[m] != 0 {
				l.Cycles = append(l.Cycles, r.c[m]-prev)
				prev = r.c[m]
			}
		}
		sum.Launches = append(sum.Launches, l)
	}
	sort.Slice(sum.Launches, func(i, j int) bool { return sum.Launches[i].Start < sum.Launches[j].Start })
	return sum
}

// traceGPCs groups the SMs of the launches' records by the clusters of two
// or more blocks that ran on them (union-find: a cluster's blocks share a
// GPC) and numbers the groups in the order of their first SM.
func traceGPCs(launches [][]traceRec) map[uint32]int {
	parent := map[uint32]uint32{}
	var find func(uint32) uint32
	find = func(x uint32) uint32 {
		p, ok := parent[x]
		if !ok || p == x {
			parent[x] = x
			return x
		}
		r := find(p)
		parent[x] = r
		return r
	}
	for _, rs := range launches {
		first := map[uint32]uint32{} // cluster -> an SM it ran on
		for _, r := range rs {
			find(r.sm)
			if r.cl&31 < 2 {
				continue
			}
			if sm, ok := first[r.cl]; ok {
				a, b := find(sm), find(r.sm)
				if a != b {
					parent[max(a, b)] = min(a, b)
				}
			} else {
				first[r.cl] = r.sm
			}
		}
	}
	sms := make([]uint32, 0, len(parent))
	for sm := range parent {
		sms = append(sms, sm)
	}
	slices.Sort(sms)
	num := map[uint32]int{}
	out := map[uint32]int{}
	for _, sm := range sms {
		root := find(sm)
		if _, ok := num[root]; !ok {
			num[root] = len(num)
		}
		out[sm] = num[root]
	}
	return out
}

// parseKernelDefines reads GPTQTOOL_KERNEL_DEFINES, NAME=INTEGER pairs
// separated by spaces or commas, that every module is compiled with (kernel variants
// for measurements, such as qgemv.cu's QU; the kernel cache keys them), or
// with FILE.cu: before the pair, the modules of that file alone (so that
// the others are not compiled again): -DNAME=INTEGER, or FILE.cu:-DNAME=INTEGER.
func parseKernelDefines(v string) ([]string, error) {
	var out []string
	for _, f := range strings.Fields(strings.ReplaceAll(v, ",", " ")) {
		file, pair, scoped := strings.Cut(f, ":")
		if !scoped {
			file, pair = "", f
		}
		name, val, ok := strings.Cut(pair, "=")
		_, err := strconv.Atoi(val)
		if !ok || err != nil || !kernelDefineName(name) || scoped && !kernelFileName(file) {
			return nil, fmt.Errorf("cuda: GPTQTOOL_KERNEL_DEFINES=%q: %q is not NAME=INTEGER or FILE.cu:NAME=INTEGER (NAME of A-Z, 0-9 and _, not starting with a digit)", v, f)
		}
		if scoped {
			out = append(out, file+":-D"+pair)
		} else {
			out = append(out, "-D"+pair)
		}
	}
	return out, nil
}

// kernelFileName: a kernels/ source's name, letters, digits and _ then .cu.
func kernelFileName(s string) bool {
	base, ok := strings.CutSuffix(s, ".cu")
	if !ok || base == "" {
		return false
	}
	for _, c := range base {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func kernelDefineName(s string) bool {
	for i, c := range s {
		if !(c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}
