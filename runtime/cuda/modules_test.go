package cuda

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gptqtool/gptqtool/kernels"
	"github.com/gptqtool/gptqtool/runtime"
)

// launchedKernels lists, by source file, every kernel of qgemv.cu and
// decode.cu that the backend launches, from the name tables it launches
// them by.
func launchedKernels() map[string][]string {
	out := map[string][]string{}
	add := func(file string, m map[runtime.DType]string) {
		for _, n := range m {
			out[file] = append(out[file], n)
		}
	}
	for i := range 2 {
		for sg := range 2 {
			for j := range qmmaTiles {
				add("qgemv.cu", qnames.gemv[i][sg][j])
			}
			add("qgemv.cu", qnames.norm[i][sg])
		}
		for j := range qmmaTiles {
			add("qgemv.cu", qnames.rope[i][j])
			add("qgemv.cu", qnames.wg[i][j])
			add("qgemv.cu", qnames.wgRoPE[i][j])
		}
		add("qgemv.cu", qnames.normRoPE[i])
		add("qgemv.cu", qnames.ap[i])
		add("qgemv.cu", qnames.wide[i])
		add("qgemv.cu", qnames.plain[i])
		add("qgemv.cu", qnames.dequant[i])
	}
	// Each product again as its build for weights whose scales come alone
	// (QG_SZ16).
	for _, n := range out["qgemv.cu"] {
		if strings.HasPrefix(n, "qmma") {
			out["qgemv.cu"] = append(out["qgemv.cu"], n+kernels.ScalesOnly)
		}
	}
	add("qgemv.cu", qnames.gather)
	add("qgemv.cu", qnames.glu)
	for _, m := range pagedNames {
		add("decode.cu", m)
	}
	for _, m := range pagedPreNames {
		add("decode.cu", m)
	}
	for _, m := range pagedTCNames {
		add("decode.cu", m)
	}
	for _, m := range pagedTCPreNames {
		add("decode.cu", m)
	}
	for _, dt := range []runtime.DType{runtime.F32, runtime.F16, runtime.BF16} {
		out["decode.cu"] = append(out["decode.cu"], "rope_store_"+suffix(dt))
		// The pieces GLU kernel (GPTQTOOL_QGLU_PIECES) in its default shapes
		// (one row's and more rows'), both scale builds, and its kernels
		// that normalize x (GPTQTOOL_QGLU_NORM).
		for _, bits := range []int{4, 8} {
			for _, M := range []int{1, 2} {
				w, d := defaultQGLUShape(bits, M)
				for _, n := range []string{qgluName(bits, w, d, dt), qgluNormName(bits, w, d, dt)} {
					out["qglu.cu"] = append(out["qglu.cu"], n, n+kernels.ScalesOnly)
				}
			}
		}
	}
	for _, names := range out {
		slices.Sort(names)
	}
	return out
}

// TestModuleOfLaunchedKernels checks that every kernel the backend
// launches from qgemv.cu and decode.cu is in a part of its file, not the
// whole file, and that a model of one bit width and dtype needs few parts:
// those of 4-bit f16 decoding are the plain products, the GLU and gather
// kernels, one paged attention kernel and rope_store.
func TestModuleOfLaunchedKernels(t *testing.T) {
	parts := map[string]int{}
	for file, names := range launchedKernels() {
		for _, n := range names {
			m := kernels.ModuleOf(file, n)
			if len(m.Defines) == 0 {
				t.Errorf("%s: kernel %s compiles with the whole file", file, n)
			}
			parts[m.Key()]++
		}
	}
	// 2 bit widths × 3 dtypes × (plain, normalizing, warpgroup MMA of 2-4
	// and of 5-8 tiles, each also with the scales alone) + glu/gather; 16
	// paged attention kernels × 3 dtypes × (plain, _pre) + rope_store; 8
	// _tc kernels (64 and 128 wide) × 2 dtypes × (_tc, _tcpre); qglu.cu's
	// 3 shapes (one at 4 bits, two at 8) × 3 dtypes × 2 scale builds.
	if len(parts) != 49+97+32+18 {
		t.Errorf("%d parts, want %d: %v", len(parts), 49+97+32+18, parts)
	}
	want := map[string]int{
		"qgemv.cu[QG_BITS=4,KDT=1,QG_NRM=0]":           3*3 + 4, // t1/t2/t4 × plain, _sg, _r; t1_a, t1_g, t1_p; qdequant
		"qgemv.cu[QG_BITS=4,KDT=1,QG_NRM=1]":           3,       // _n, _sg_n, _n_r
		"qgemv.cu[QG_BITS=4,KDT=1,QG_WG=1]":            6,       // t2-t4 × _w, _w_r
		"qgemv.cu[QG_BITS=4,KDT=1,QG_WG=2]":            8,       // t5-t8 × _w, _w_r
		"qgemv.cu[QG_BITS=4,KDT=1,QG_NRM=0,QG_SZ16=1]": 3*3 + 3, // as above but qdequant, which reads the pairs
		"qgemv.cu[QG_BITS=8,KDT=2,QG_NRM=1,QG_SZ16=1]": 3,
		"qgemv.cu[QG_BITS=4,KDT=1,QG_WG=1,QG_SZ16=1]":  6,
		"qgemv.cu[QG_BITS=8,KDT=0,QG_WG=2,QG_SZ16=1]":  8,
		"qgemv.cu[QG_BITS=0]":                          6, // glu_rows and gather_cols, 3 dtypes
		"decode.cu[PA_C=4,PA_G=4,KDT=1]":               1,
		"decode.cu[PA_C=0]":                            3,
	}
	for k, n := range want {
		if parts[k] != n {
			t.Errorf("part %s holds %d launched kernels, want %d", k, parts[k], n)
		}
	}
}

// TestModuleParts compiles every part of qgemv.cu and decode.cu, and
// head.cu, with NVRTC for sm_90 (where NVRTC loads; no GPU needed) and
// checks that each
// launched kernel is in its part's CUBIN and that each part holds only
// kernels that map to it: a kernel missing from its part would fail at its
// first launch, one compiled into two parts would cost compile time.
func TestModuleParts(t *testing.T) {
	if err := loadNVRTC(); err != nil {
		t.Skipf("%v", err)
	}
	type result struct {
		syms []string
		err  error
	}
	mods := map[string]kernels.Module{}
	for file, names := range launchedKernels() {
		for _, n := range names {
			m := kernels.ModuleOf(file, n)
			mods[m.Key()] = m
		}
	}
	// head.cu compiles whole, for sm_90a.
	mods["head.cu"] = kernels.ModuleOf("head.cu", "head_wg_t4_f16")
	res := map[string]*result{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, min(maxCompileJobs, goruntime.NumCPU()))
	for key, m := range mods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			r := &result{}
			src, err := kernels.Source(m.File)
			if err == nil {
				var cubin []byte
				if cubin, _, err = compile(m.File, src, m.Arch(90), 0, os.Getenv("GPTQTOOL_KERNEL_CACHE"), m.Options()...); err == nil {
					r.syms, err = kernelSymbols(cubin)
				}
			}
			r.err = err
			mu.Lock()
			res[key] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	for key, r := range res {
		if r.err != nil {
			t.Errorf("%s: %v", key, r.err)
			continue
		}
		for _, s := range r.syms {
			if slices.Contains(mods[key].Defines, "QG_SZ16=1") {
				s += kernels.ScalesOnly
			}
			if k := kernels.ModuleOf(mods[key].File, s).Key(); k != key {
				t.Errorf("%s holds kernel %s, which maps to %s", key, s, k)
			}
		}
	}
	for file, names := range launchedKernels() {
		for _, n := range names {
			m := kernels.ModuleOf(file, n)
			if r := res[m.Key()]; r != nil && r.err == nil && !slices.Contains(r.syms, kernels.Symbol(n)) {
				t.Errorf("kernel %s is not in its part %s (which holds %d kernels)", n, m.Key(), len(r.syms))
			}
		}
	}
}

// kernelSymbols lists a CUBIN's kernels: its global function symbols.
func kernelSymbols(cubin []byte) ([]string, error) {
	// NVRTC writes its version into the header's e_version (118 for 11.8),
	// which debug/elf rejects unless it is 1 (EV_CURRENT).
	c := append([]byte(nil), cubin...)
	if len(c) < 24 {
		return nil, fmt.Errorf("cubin: %d bytes, not an ELF file", len(c))
	}
	binary.LittleEndian.PutUint32(c[20:], 1)
	f, err := elf.NewFile(bytes.NewReader(c))
	if err != nil {
		return nil, fmt.Errorf("cubin: %w", err)
	}
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("cubin symbols: %w", err)
	}
	var out []string
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && elf.ST_BIND(s.Info) == elf.STB_GLOBAL && !strings.HasPrefix(s.Name, "$") {
			out = append(out, s.Name)
		}
	}
	return out, nil
}

// TestPrepareCompilesOnce checks Prepare where NVRTC loads (no GPU needed):
// the modules a 4-bit fp16 model of 128-wide heads (32 query, 8 kv heads)
// runs on an sm_90 device are compiled once each, in the background, and
// hold the kernels its decode launches (the warpgroup-MMA products of 9-64
// rows among them); a launch's request waits for the compile under way; a
// second Prepare compiles nothing.
func TestPrepareCompilesOnce(t *testing.T) {
	if err := loadNVRTC(); err != nil {
		t.Skipf("%v", err)
	}
	var log bytes.Buffer
	b := &Backend{arch: 90, log: &log, qmmaWG: defaultQmmaWG}
	spec := runtime.ModelSpec{DType: runtime.F16, Bits: []int{4}, HeadDim: 128, QueryHeads: 32, KVHeads: 8}
	b.Prepare(spec)
	// Prepare made the jobs of the warpgroup-MMA parts (no launch asked
	// for them yet).
	for _, name := range []string{qnames.wg[0][1][runtime.F16], qnames.wg[0][len(qmmaTiles)-1][runtime.F16]} {
		key := kernels.ModuleOf("qgemv.cu", name).Key()
		b.compiles.mu.Lock()
		j := b.compiles.jobs[key]
		b.compiles.mu.Unlock()
		if j == nil {
			t.Errorf("Prepare started no compile of %s (kernel %s)", key, name)
		}
	}
	want := map[string]string{
		"qgemv.cu": qnames.gemv[0][0][0][runtime.F16], "decode.cu": pagedNames[[2]int{4, 4}][runtime.F16],
	}
	others := [][2]string{{"qgemv.cu", qnames.rope[0][3][runtime.F16]}, {"qgemv.cu", qnames.glu[runtime.F16]},
		{"qgemv.cu", qnames.gather[runtime.F16]}, {"decode.cu", "rope_store_f16"},
		{"qgemv.cu", qnames.wg[0][1][runtime.F16]}, {"qgemv.cu", qnames.wgRoPE[0][3][runtime.F16]},
		{"qgemv.cu", qnames.wg[0][4][runtime.F16]}, {"qgemv.cu", qnames.wgRoPE[0][7][runtime.F16]}}
	for file, name := range want {
		others = append(others, [2]string{file, name})
	}
	for _, fn := range others {
		if fn[1] == "" {
			t.Fatalf("%s: a kernel name is empty (a table index past the kernels built)", fn[0])
		}
		m := kernels.ModuleOf(fn[0], fn[1])
		cubin, err := b.cubin(m)
		if err != nil {
			t.Fatalf("%s: %v", m.Key(), err)
		}
		syms, err := kernelSymbols(cubin)
		if err != nil || !slices.Contains(syms, fn[1]) {
			t.Errorf("%s: kernel %s missing (%v)", m.Key(), fn[1], err)
		}
	}
	for _, f := range []string{"attention.cu", "norm.cu", "rope.cu", "elementwise.cu", "sample.cu"} {
		if _, err := b.cubin(kernels.ModuleOf(f, "")); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	// 4-bit f16 products, glu/gather, one paged attention kernel,
	// rope_store, five whole files and the two warpgroup-MMA parts: eleven
	// compiles, one each.
	count := func() int {
		b.compiles.logMu.Lock()
		defer b.compiles.logMu.Unlock()
		return strings.Count(log.String(), "cuda: compiled ")
	}
	if n := count(); n != 11 {
		t.Errorf("%d compiles logged, want 11:\n%s", n, log.String())
	}
	b.Prepare(spec)
	for _, j := range b.compiles.jobs {
		<-j.done
	}
	if n := count(); n != 11 {
		t.Errorf("a second Prepare compiled again: %d compiles logged", n)
	}
}

// TestPrepareWarpgroupScales checks which builds of the warpgroup-MMA parts
// (2-4 tiles, 5-8) Prepare starts for a 4-bit model: a symmetric one's
// scales alone build where a part holds a kernel of at most scalesWG
// tiles, the pairs' where it holds a larger one, and the pairs' alone for
// a model that is not symmetric or without the scales alone.
func TestPrepareWarpgroupScales(t *testing.T) {
	f16 := runtime.F16
	small, large := qnames.wg[0][1][f16], qnames.wg[0][len(qmmaTiles)-1][f16]
	so := kernels.ScalesOnly
	for _, c := range []struct {
		sym, scalesOnly bool
		scalesWG        int
		want            []string
	}{
		{true, true, defaultScalesWG, []string{small + so, large + so, large}},
		{true, true, 4, []string{small + so, large}},
		{true, true, 0, []string{small, large}},                        // GPTQTOOL_SZ16=1
		{true, true, len(qmmaTiles), []string{small + so, large + so}}, // =2
		{true, false, defaultScalesWG, []string{small, large}},         // =0
		{false, true, defaultScalesWG, []string{small, large}},
	} {
		b := &Backend{arch: 90, qmmaWG: defaultQmmaWG, scalesOnly: c.scalesOnly, scalesWG: c.scalesWG}
		var got []string
		for _, m := range b.prepareModules(runtime.ModelSpec{DType: f16, Bits: []int{4}, Sym: c.sym}) {
			if slices.Contains(m.Defines, "QG_WG=1") || slices.Contains(m.Defines, "QG_WG=2") {
				got = append(got, m.Key())
			}
		}
		var want []string
		for _, n := range c.want {
			want = append(want, kernels.ModuleOf("qgemv.cu", n).Key())
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("sym %v, scales alone %v, scalesWG %d: warpgroup parts %v, want %v", c.sym, c.scalesOnly, c.scalesWG, got, want)
		}
	}
}

// TestPreparePieces checks that Prepare compiles the pieces GLU kernel
// (qglu.cu) for the widths whose GLU products run it by default (8 bits
// at one to four rows, 4 bits at one), in one row's shape and more rows', with the
// scales alone for a symmetric model, in a shape of GPTQTOOL_QGLU_WARPS
// and GPTQTOOL_QGLU_DEPTH, for one row's shape alone under
// GPTQTOOL_QGLU_PIECES=1, and for none under GPTQTOOL_QGLU_PIECES=0 or
// with the wide kernels off.
func TestPreparePieces(t *testing.T) {
	f16 := runtime.F16
	one, two := []string{"qglu8_w16d8_f16"}, []string{"qglu8_w16d8_f16", "qglu8_w16d4_f16"}
	for _, c := range []struct {
		pieces, wide int
		bits         []int
		sym          bool
		w, d         int
		want         []string
	}{
		{-1, 1, []int{8}, false, 0, 0, two},
		{-1, 1, []int{8}, true, 0, 0, []string{"qglu8_w16d8_f16" + kernels.ScalesOnly, "qglu8_w16d4_f16" + kernels.ScalesOnly}},
		{-1, 1, []int{4}, false, 0, 0, []string{"qglu4_w16d8_f16"}},
		{-1, 1, []int{4, 8}, false, 0, 0, append([]string{"qglu4_w16d8_f16"}, two...)},
		{0, 1, []int{8}, false, 0, 0, nil},
		{-1, 0, []int{8}, false, 0, 0, nil}, // GPTQTOOL_QMMA_WIDE=0,
		// (At 4 bits two rows keep 8 chunks in flight too: one module.)
		{2, 1, []int{4, 8}, false, 0, 0, []string{"qglu4_w16d8_f16", "qglu8_w16d8_f16", "qglu8_w16d4_f16"}},
		{1, 1, []int{8}, false, 0, 0, one},
		{-1, 1, []int{8}, false, 32, 4, []string{"qglu8_w32d4_f16"}},
		{-1, 1, []int{8}, false, 0, 2, []string{"qglu8_w16d2_f16"}},
	} {
		b := &Backend{arch: 90, qgluPieces: c.pieces, qmmaWide: c.wide, scalesOnly: true, qgluW: c.w, qgluD: c.d}
		var got, want []string
		for _, m := range b.prepareModules(runtime.ModelSpec{DType: f16, Bits: c.bits, Sym: c.sym}) {
			if m.File == "qglu.cu" {
				got = append(got, m.Key())
			}
		}
		for _, n := range c.want {
			want = append(want, kernels.ModuleOf("qglu.cu", n).Key())
		}
		if !slices.Equal(got, want) {
			t.Errorf("pieces %d, wide %d, bits %v, sym %v: qglu.cu modules %v, want %v", c.pieces, c.wide, c.bits, c.sym, got, want)
		}
	}
}
