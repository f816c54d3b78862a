package cuda

import (
	"fmt"
	goruntime "runtime"
	"sync"
	"time"

	"github.com/gptqtool/gptqtool/kernels"
	"github.com/gptqtool/gptqtool/runtime"
)

// maxCompileJobs bounds the modules compiled at once: a running NVRTC
// program holds a few hundred MB of host memory.
const maxCompileJobs = 8

// compileJob is one module's compile (kernels.Module): started by Prepare
// ahead of use, or by the first launch that needs the module, and waited for
// by whoever needs it next.
type compileJob struct {
	done  chan struct{}
	cubin []byte
	err   error
}

// compileJobs are the backend's module compiles by kernels.Module.Key.
type compileJobs struct {
	mu   sync.Mutex
	jobs map[string]*compileJob
}

// job returns module m's compile and whether this call created it (the
// caller then runs it).
func (c *compileJobs) job(m kernels.Module) (*compileJob, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.jobs == nil {
		c.jobs = map[string]*compileJob{}
	}
	if j := c.jobs[m.Key()]; j != nil {
		return j, false
	}
	j := &compileJob{done: make(chan struct{})}
	c.jobs[m.Key()] = j
	return j, true
}

// forget drops module m's CUBIN once it is loaded; a failed compile stays,
// so that every later launch reports the same error.
func (c *compileJobs) forget(m kernels.Module) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if j := c.jobs[m.Key()]; j != nil && j.err == nil {
		delete(c.jobs, m.Key())
	}
}

// run compiles m (or reads it from the kernel cache) and marks j done.
func (j *compileJob) run(b *Backend, m kernels.Module) {
	defer close(j.done)
	text, err := kernels.Source(m.File)
	if err != nil {
		j.err = err
		return
	}
	start := time.Now()
	var compiled bool
	j.cubin, compiled, j.err = compile(m.File, text, b.arch, b.driver, b.cacheDir, m.Options()...)
	if compiled && b.log != nil {
		where := "not cached"
		if b.cacheDir != "" {
			where = "cached in " + b.cacheDir
		}
		fmt.Fprintf(b.log, "cuda: compiled %s for sm_%d in %.1f s (%s)\n", m.Key(), b.arch, time.Since(start).Seconds(), where)
	}
}

// cubin returns module m's CUBIN: compiled now, or the result of a compile
// under way (Prepare).
func (b *Backend) cubin(m kernels.Module) ([]byte, error) {
	j, mine := b.compiles.job(m)
	if mine {
		j.run(b, m)
	}
	<-j.done
	return j.cubin, j.err
}

// Prepare implements runtime.Preparer: it starts compiling (or reading from
// the kernel cache) the modules a model of spec s runs, up to
// maxCompileJobs at once, and returns at once; a launch that needs one
// of them waits for it. NVRTC compiles a program on one thread, so a first
// run on a machine waits about as long as the longest module instead of
// their sum, and the compiles overlap the weights' upload.
func (b *Backend) Prepare(s runtime.ModelSpec) {
	var mods []kernels.Module
	add := func(file, name string) {
		mods = append(mods, kernels.ModuleOf(file, name))
	}
	dt := s.DType
	if dt != runtime.F32 && dt != runtime.F16 && dt != runtime.BF16 {
		return
	}
	// The largest first: they bound the wait.
	for _, bits := range s.Bits {
		if bits != 4 && bits != 8 {
			continue
		}
		add("qgemv.cu", qnames.gemv[bits/8][0][0][dt])
		if b.normFuseRows > 0 {
			add("qgemv.cu", qnames.norm[bits/8][0][dt])
		}
	}
	if len(s.Bits) > 0 {
		add("qgemv.cu", qnames.glu[dt])
	}
	if s.HeadDim > 0 && s.KVHeads > 0 && s.QueryHeads >= s.KVHeads {
		if n := pagedNames[[2]int{pow2((s.HeadDim + 31) / 32), pow2(s.QueryHeads / s.KVHeads)}][dt]; n != "" {
			add("decode.cu", n)
		}
	}
	add("decode.cu", "rope_store_"+suffix(dt))
	for _, f := range []string{"attention.cu", "norm.cu", "rope.cu", "elementwise.cu", "sample.cu"} {
		add(f, "")
	}
	sem := make(chan struct{}, min(maxCompileJobs, max(1, goruntime.NumCPU())))
	for _, m := range mods {
		j, mine := b.compiles.job(m)
		if !mine {
			continue
		}
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			j.run(b, m)
		}()
	}
}

// moduleError names the kernel a failed module was compiled for.
func moduleError(err error, m kernels.Module, name string) error {
	return fmt.Errorf("%w (kernel %s, module %s)", err, name, m.Key())
}
