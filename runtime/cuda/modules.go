package cuda

import (
	"fmt"
	goruntime "runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gptqtool/gptqtool/kernels"
	"github.com/gptqtool/gptqtool/runtime"
)

// maxCompileJobs bounds the modules compiled at once: a running NVRTC
// program holds a few hundred MB of host memory.
const maxCompileJobs = 8

// compileJob is one module's compile (kernels.Module): claimed by whoever
// needs it first (a Prepare worker ahead of use, or the first launch of one
// of its kernels) and waited for by the others.
type compileJob struct {
	m       kernels.Module
	started atomic.Bool
	done    chan struct{}
	cubin   []byte
	err     error
}

// compileJobs are the backend's module compiles by kernels.Module.Key.
type compileJobs struct {
	mu    sync.Mutex
	jobs  map[string]*compileJob
	logMu sync.Mutex // the log's writes (compiles end on several goroutines)
}

// job returns module m's compile, made now if there is none.
func (c *compileJobs) job(m kernels.Module) *compileJob {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.jobs == nil {
		c.jobs = map[string]*compileJob{}
	}
	if j := c.jobs[m.Key()]; j != nil {
		return j
	}
	j := &compileJob{m: m, done: make(chan struct{})}
	c.jobs[m.Key()] = j
	return j
}

// loaded drops module m's CUBIN once the module is loaded (the job stays,
// so that a later Prepare does not compile it again).
func (c *compileJobs) loaded(m kernels.Module) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if j := c.jobs[m.Key()]; j != nil {
		j.cubin = nil
	}
}

// failed forgets j, a failed compile, so that a later launch tries again.
func (c *compileJobs) failed(j *compileJob) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.jobs[j.m.Key()] == j {
		delete(c.jobs, j.m.Key())
	}
}

// claim runs j on this goroutine unless someone else started it, and
// reports whether it did.
func (j *compileJob) claim(b *Backend) bool {
	if !j.started.CompareAndSwap(false, true) {
		return false
	}
	j.run(b)
	return true
}

// run compiles j's module (or reads it from the kernel cache) and marks j
// done.
func (j *compileJob) run(b *Backend) {
	defer close(j.done)
	text, err := kernels.Source(j.m.File)
	if err != nil {
		j.err = err
		return
	}
	start := time.Now()
	var compiled bool
	j.cubin, compiled, j.err = compile(j.m.File, text, j.m.Arch(b.arch), b.driver, b.cacheDir, append(j.m.Options(), b.traceDefines(j.m.File)...)...)
	if compiled && b.log != nil {
		where := "not cached"
		if b.cacheDir != "" {
			where = "cached in " + b.cacheDir
		}
		b.compiles.logMu.Lock()
		fmt.Fprintf(b.log, "cuda: compiled %s for sm_%s in %.1f s (%s)\n", j.m.Key(), j.m.Arch(b.arch), time.Since(start).Seconds(), where)
		b.compiles.logMu.Unlock()
	}
}

// cubin returns module m's CUBIN: compiled now, or the result of a compile
// under way (Prepare). A failed compile is forgotten once reported.
func (b *Backend) cubin(m kernels.Module) ([]byte, error) {
	j := b.compiles.job(m)
	j.claim(b)
	<-j.done
	if j.err != nil {
		b.compiles.failed(j)
	}
	return j.cubin, j.err
}

// Prepare implements runtime.Preparer: it starts compiling (or reading from
// the kernel cache) the modules a model of spec s runs, up to
// maxCompileJobs at once, and returns at once; a launch that needs one
// of them waits for it. NVRTC compiles a program on one thread, so a first
// run on a machine waits about as long as the longest module instead of
// their sum, and the compiles overlap the weights' upload.
func (b *Backend) Prepare(s runtime.ModelSpec) {
	mods := b.prepareModules(s)
	// Workers take the jobs in this order; a launch that needs a job no
	// worker has started runs it itself.
	var jobs []*compileJob
	for _, m := range mods {
		if j := b.compiles.job(m); !j.started.Load() {
			jobs = append(jobs, j)
		}
	}
	var next atomic.Int32
	for range min(len(jobs), maxCompileJobs, max(1, goruntime.NumCPU())) {
		go func() {
			for i := int(next.Add(1)) - 1; i < len(jobs); i = int(next.Add(1)) - 1 {
				jobs[i].claim(b)
			}
		}()
	}
}

// prepareModules lists the modules Prepare compiles for a model of spec s,
// the largest first.
func (b *Backend) prepareModules(s runtime.ModelSpec) []kernels.Module {
	var mods []kernels.Module
	add := func(file, name string) {
		mods = append(mods, kernels.ModuleOf(file, name))
	}
	dt := s.DType
	if dt != runtime.F32 && dt != runtime.F16 && dt != runtime.BF16 {
		return nil
	}
	b.mu.Lock()
	normFuse := b.normFuseRows > 0
	tcRows, preRows := b.attnTC, b.attnPrefetch
	head := b.gemv && b.headWG && b.WarpgroupMMA()
	wg := b.qmmaWG > 0 && b.WarpgroupMMA()
	// A symmetric model's weights load with their scales alone too, which
	// the mma.sync kernels and the warpgroup kernels of up to scalesWG
	// tiles read (loadQuant checks each weight's zeros; one that is not
	// runs the other build, compiled at its first launch).
	sym, scalesWG := s.Sym && b.scalesOnly, b.scalesWG
	// (The pieces GLU kernel runs where the wide kernels would.)
	// Its shapes: one row's and, for more, two rows'.
	pieces := map[int][][2]int{}
	for _, bits := range []int{4, 8} {
		for M := 1; M <= min(b.qgluRows(bits), 2) && b.qmmaWide > 0; M++ {
			w, d := b.qgluShape(bits, M)
			if !qgluTurns(bits, w, d) {
				continue // (a shape qglu declines)
			}
			if sh := [2]int{w, d}; !slices.Contains(pieces[bits], sh) {
				pieces[bits] = append(pieces[bits], sh)
			}
		}
	}
	qk := func(name string) string {
		if sym {
			return name + kernels.ScalesOnly
		}
		return name
	}
	b.mu.Unlock()
	// The largest first: they bound the wait.
	for _, bits := range s.Bits {
		if bits != 4 && bits != 8 {
			continue
		}
		add("qgemv.cu", qk(qnames.gemv[bits/8][0][0][dt]))
		if normFuse {
			add("qgemv.cu", qk(qnames.norm[bits/8][0][dt]))
		}
		for _, sh := range pieces[bits] {
			add("qglu.cu", qk(qgluName(bits, sh[0], sh[1], dt)))
		}
	}
	if len(s.Bits) > 0 {
		add("qgemv.cu", qnames.glu[dt])
	}
	if s.HeadDim > 0 && s.KVHeads > 0 && s.QueryHeads >= s.KVHeads {
		cg := [2]int{pow2((s.HeadDim + 31) / 32), pow2(s.QueryHeads / s.KVHeads)}
		if n := pagedNames[cg][dt]; n != "" {
			add("decode.cu", n)
		}
		if attnTCFor(tcRows, tcRows, s.HeadDim, cg[0], dt) {
			add("decode.cu", pagedTCNames[cg][dt])
			if preRows > 0 {
				add("decode.cu", pagedTCPreNames[cg][dt])
			}
		}
	}
	add("decode.cu", "rope_store_"+suffix(dt))
	if head && dt != runtime.F32 {
		add("head.cu", "") // the head's logits at 5-64 rows
	}
	for _, f := range []string{"attention.cu", "norm.cu", "rope.cu", "elementwise.cu", "sample.cu"} {
		add(f, "")
	}
	if s.MoE {
		add("moe.cu", "") // (the experts' _e and _x products are in the one-tile products' module)
	}
	// Last, the warpgroup-MMA products of decode steps of 9-64 rows (their
	// two parts: two to four tiles, five to eight), which a server's
	// warm-up (model.WarmDecode up to its largest batch) runs at once, and
	// a run of one sequence not at all: started behind every module a
	// first step needs, their compiles overlap the weights' upload instead
	// of following it.
	// A symmetric model's parts of up to scalesWG tiles run their scales
	// alone build, the others (all of a model that is not) the pairs'.
	if wg {
		for _, bits := range s.Bits {
			if bits != 4 && bits != 8 {
				continue
			}
			// Each part's first and last tile indices (qmmaTiles[0], one
			// tile, has no warpgroup kernel): a part's build is named by
			// its first kernel.
			for _, part := range wgParts() {
				name := qnames.wg[bits/8][part[0]][dt]
				if sym && qmmaTiles[part[0]] <= scalesWG {
					add("qgemv.cu", name+kernels.ScalesOnly)
				}
				if !sym || qmmaTiles[part[1]] > scalesWG {
					add("qgemv.cu", name)
				}
			}
		}
	}
	return mods
}

// wgParts lists, for each part of qgemv.cu's warpgroup kernels in order
// (kernels.WarpgroupPart), the first and last index into qmmaTiles of the
// tiles it holds.
func wgParts() [][2]int {
	var parts [][2]int
	for i := 1; i < len(qmmaTiles); i++ {
		p := kernels.WarpgroupPart(qmmaTiles[i])
		if len(parts) < p {
			parts = append(parts, [2]int{i, i})
		}
		parts[p-1][1] = i
	}
	return parts
}

// moduleError names the kernel a failed module was compiled for.
func moduleError(err error, m kernels.Module, name string) error {
	return fmt.Errorf("%w (kernel %s, module %s)", err, name, m.Key())
}
