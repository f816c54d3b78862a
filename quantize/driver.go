package quantize

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gptqtool/gptqtool/calibrate"
	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// Sample is one calibration sequence. Mask, when not nil, marks real tokens
// (true) and padding (false); padding never enters a Hessian.
type Sample struct {
	IDs  []int
	Mask []bool
}

// totalModules is the Linear modules of every layer of cfg (a sparse
// layer's experts counted), for progress.
func totalModules(cfg *hfconfig.Config) int {
	n := 0
	for li := range cfg.NumHiddenLayers {
		n += len(model.LayerModules(cfg, li))
	}
	return n
}

// ModuleResult is one Linear of one layer: quantized (Result set), or
// left unquantized by Job.Skip (Skipped, Result nil: the checkpoint keeps
// the source weight).
type ModuleResult struct {
	Layer  int
	Module string // e.g. "self_attn.q_proj"
	*Result
	Skipped bool
	Seconds float64
}

// Name is the HF module name, e.g. "model.layers.3.self_attn.q_proj".
func (m ModuleResult) Name() string { return model.LayerPrefix(m.Layer) + "." + m.Module }

// Job is one quantization recipe run by the driver: the GPTQ options, the
// module grouping and where the quantized layers go.
type Job struct {
	Name           string // branch name, used in logs
	GPTQ           Options
	TrueSequential bool
	// RTN quantizes with plain round-to-nearest (the same quantizer and
	// layout, no Hessian, no error feedback): the baseline GPTQ is measured
	// against.
	RTN bool
	// Layer receives the modules of one layer once the whole layer is done,
	// all of them in LayerModules order (a sparse layer's experts after its
	// attention): those in Skip with Skipped set and no Result.
	Layer func(layer int, modules []ModuleResult) error
	// Done is called once the last layer has been handed to Layer, with the
	// seconds the job took. May be nil.
	Done func(seconds float64) error
	// Format is the checkpoint format results are packed for (a device
	// solver packs on the device); "" means gptq (v1).
	Format gptq.Format
	// Start, when > 0, resumes an interrupted job: the layers before Start
	// were quantized by an earlier run, and Replay returns the quantized
	// weights of one of them ([N, K] per module, as Result.W). The driver
	// only runs those layers forward, with the passes the uninterrupted run
	// made, so that the next layer's inputs are bit for bit what that run
	// computed; Layer is not called for them.
	Start  int
	Replay func(layer int) (map[string][]float32, error)
	// Skip lists the modules left unquantized: they are not solved, the
	// layer's forward keeps their source weights (so that, true-sequential,
	// the modules after them see the unquantized module's outputs), and
	// no Hessian is formed for an input that only skipped modules read.
	// Replay need not return them.
	Skip Skip
}

// replayWeights loads layer li's quantized weights from j.Replay into
// layer.
func (j Job) replayWeights(layer *model.Layer, cfg *hfconfig.Config, li int) error {
	if j.Replay == nil {
		return fmt.Errorf("layer %d: resumed at layer %d without the earlier layers' weights", li, j.Start)
	}
	ws, err := j.Replay(li)
	if err != nil {
		return fmt.Errorf("layer %d: %w", li, err)
	}
	for _, m := range model.LayerModules(cfg, li) {
		if j.Skip.Has(li, m) {
			continue // the source weight, as the interrupted run had it
		}
		w, ok := ws[m]
		if !ok {
			return fmt.Errorf("layer %d: no replayed weight for %s", li, m)
		}
		if err := layer.SetWeight(m, w); err != nil {
			return err
		}
	}
	return nil
}

// DriverOptions configure Run.
type DriverOptions struct {
	Log io.Writer // per-module losses and warnings; nil = discard
	// Progress is called after each module with the job name, the number of
	// modules done and the total (for progress bars). May be nil.
	Progress func(job string, done, total int)
	// Solver, when set, selects the device driver (runDevice): the
	// calibration activations stay on the backend in its compute dtype,
	// Hessians are formed there with Backend.Gram and the Solver quantizes
	// each module group. Without it Run is the reference driver: host
	// activations, float64 Hessians folded per sequence, host GPTQ.
	Solver Solver
	// ChunkRows bounds the rows of one forward chunk of the device driver
	// (0: automatic, about 2 GiB of layer scratch).
	ChunkRows int
	// Activations is the device driver's activation dtype: "" or "auto" for
	// the checkpoint's (bf16 for openchat) where the backend has it, or
	// "f32", "f16", "bf16".
	Activations string
	// Profile synchronises the backend at phase boundaries so that Stats
	// attribute device time to phases.
	Profile bool
	// Stats, when not nil, receives the device driver's timings.
	Stats *Stats
}

// Run quantizes every layer of a checkpoint for each job, layer by layer
// (spec §4.5): it embeds the calibration samples once (shared by all jobs),
// then for each job and layer loads the layer, accumulates the Hessians of
// each module group's inputs while running the samples through it, quantizes
// the group, and continues with the quantized weights so that later groups
// and the next layer see the quantized layer's outputs. Memory holds one
// layer, the calibration activations (twice while more than one job
// remains: the shared layer-0 inputs and the job's own) and, per layer, one
// attention output per sample (reused once q/k/v are quantized).
func Run(ctx context.Context, w model.Weights, cfg *hfconfig.Config, b runtime.Backend, samples []Sample, jobs []Job, opts DriverOptions) error {
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	for _, j := range jobs {
		if err := j.GPTQ.Validate(cfg.HiddenSize); err != nil {
			return fmt.Errorf("quantize: job %s: %w", j.Name, err)
		}
		if j.Start < 0 || j.Start > cfg.NumHiddenLayers {
			return fmt.Errorf("quantize: job %s: start layer %d of %d", j.Name, j.Start, cfg.NumHiddenLayers)
		}
		if len(samples) == 0 && !j.RTN {
			return fmt.Errorf("quantize: job %s: GPTQ needs calibration samples", j.Name)
		}
	}
	if cfg.RopeScaling.Type == hfconfig.RopeLongrope {
		n := CalibrationContext(cfg, samples)
		fmt.Fprintf(log, "calibration context: %d positions, rope %s\n", n, cfg.RopeScaling.ForContext(n))
	}
	if opts.Solver != nil {
		return runDevice(ctx, w, cfg, b, samples, jobs, opts)
	}
	if opts.Stats != nil {
		opts.Stats.Phases = map[string]float64{}
	}
	// The layer-0 inputs are the same for every job: embed once.
	t0 := time.Now()
	embedded := make([][]float32, len(samples))
	errs := make([]error, len(samples))
	forRanges(len(samples), 1, func(lo, hi int) {
		for s := lo; s < hi; s++ {
			embedded[s], errs[s] = model.Embed(w, cfg, samples[s].IDs)
		}
	})
	for s, err := range errs {
		if err != nil {
			return fmt.Errorf("quantize: embedding sample %d: %w", s, err)
		}
	}
	if opts.Stats != nil {
		opts.Stats.Phases["embed"] += time.Since(t0).Seconds()
	}
	// The Hessian of layer 0's first group is the same for every job too.
	shared := map[string]*Hessian{}
	for i, j := range jobs {
		if err := runJob(ctx, w, cfg, b, samples, embedded, i == len(jobs)-1, j, shared, log, opts.Progress, opts.Stats); err != nil {
			return fmt.Errorf("quantize: %s: %w", j.Name, err)
		}
	}
	return nil
}

// CalibrationContext is the context, in positions, the drivers load the
// layers for: the longest sample, at most max_position_embeddings (0, a
// run without samples: max_position_embeddings). It chooses Phi-3's
// longrope factors (model.Options.Context) as transformers does for a
// sequence of that length, so that GPTQModel's calibration at --seq-len
// within original_max_position_embeddings (short factors) gives the same
// Hessians here.
func CalibrationContext(cfg *hfconfig.Config, samples []Sample) int {
	n := 0
	for _, s := range samples {
		n = max(n, len(s.IDs))
	}
	if n == 0 || cfg.MaxPositionEmbeddings > 0 && n > cfg.MaxPositionEmbeddings {
		return cfg.MaxPositionEmbeddings
	}
	return n
}

// runJob quantizes every layer for one job. The last job works on embedded
// itself; earlier ones on a copy.
func runJob(ctx context.Context, w model.Weights, cfg *hfconfig.Config, b runtime.Backend, samples []Sample, embedded [][]float32, last bool, j Job, shared map[string]*Hessian, log io.Writer, progress func(string, int, int), stats *Stats) error {
	start := time.Now()
	var xs [][]float32
	switch {
	case j.RTN: // round to nearest needs no activations
	case last:
		xs = embedded
	default:
		xs = make([][]float32, len(embedded))
		for s := range embedded {
			xs[s] = append([]float32(nil), embedded[s]...)
		}
	}
	st := &jobState{job: j, log: log, progress: progress, shared: shared, stats: stats,
		total: totalModules(cfg), context: CalibrationContext(cfg, samples)}
	for li := 0; li < cfg.NumHiddenLayers; li++ {
		ls := &LayerStats{Job: j.Name, Layer: li, Phases: map[string]float64{}}
		st.ls = ls
		t0 := time.Now()
		if li < j.Start {
			if err := st.replay(ctx, w, cfg, b, li, xs); err != nil {
				return err
			}
			continue
		}
		mods, err := st.layer(ctx, w, cfg, b, li, xs, samples)
		if err != nil {
			return err
		}
		if j.Layer != nil {
			t := time.Now()
			if err := j.Layer(li, mods); err != nil {
				return err
			}
			st.phase("write", t)
		}
		ls.Seconds = time.Since(t0).Seconds()
		if stats != nil {
			stats.Layers = append(stats.Layers, *ls)
		}
		fmt.Fprintf(log, "%s layer %d: %s\n", j.Name, li, ls.breakdown())
	}
	if j.Done != nil {
		return j.Done(time.Since(start).Seconds())
	}
	return nil
}

// jobState is what one job carries from layer to layer.
type jobState struct {
	job      Job
	log      io.Writer
	progress func(string, int, int)
	shared   map[string]*Hessian // Hessians every job shares (layer 0's first group)
	done     int
	total    int
	stats    *Stats      // run totals, nil if not wanted
	ls       *LayerStats // the current layer's phases
	context  int         // the layers' context (CalibrationContext)
}

// phase adds the time since start to phase name of the layer and the run.
func (st *jobState) phase(name string, start time.Time) {
	st.add(name, time.Since(start).Seconds())
}

func (st *jobState) add(name string, s float64) {
	if st.ls != nil {
		st.ls.Phases[name] += s
	}
	if st.stats != nil {
		st.stats.Phases[name] += s
	}
}

// replay runs layer li, quantized by an earlier run, over xs with the
// passes layer makes that shape its output (the attention outputs
// recorded once q/k/v are quantized, then the output pass), so that xs
// becomes bit for bit what the uninterrupted run computed.
func (st *jobState) replay(ctx context.Context, w model.Weights, cfg *hfconfig.Config, b runtime.Backend, li int, xs [][]float32) error {
	j := st.job
	st.done += len(model.LayerModules(cfg, li))
	if st.progress != nil {
		st.progress(j.Name, st.done, st.total)
	}
	if j.RTN {
		return nil // no activations to rebuild
	}
	layer, err := model.LoadLayerWith(w, cfg, li, b, model.Options{Context: st.context})
	if err != nil {
		return err
	}
	defer layer.Free()
	if err := j.replayWeights(layer, cfg, li); err != nil {
		return err
	}
	pass := &layerPass{layer: layer, atts: make([][]float32, len(xs)), attFinal: true}
	defer pass.free()
	if j.TrueSequential {
		// The o_proj group's Hessian pass recorded the attention outputs.
		err := pass.forEach(ctx, len(xs), func(l *model.Layer, s int) error {
			if _, err := pass.run(l, s, xs[s], "attn_out", nil); err != nil {
				return fmt.Errorf("layer %d: %w", li, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := pass.output(ctx, li, xs); err != nil {
		return err
	}
	fmt.Fprintf(st.log, "%s layer %d: replayed (quantized by the interrupted run)\n", j.Name, li)
	return nil
}

// layer quantizes layer li group by group and replaces xs with the
// quantized layer's outputs. It returns the modules in LayerModules order.
func (st *jobState) layer(ctx context.Context, w model.Weights, cfg *hfconfig.Config, b runtime.Backend, li int, xs [][]float32, samples []Sample) ([]ModuleResult, error) {
	j := st.job
	t0 := time.Now()
	layer, err := model.LoadLayerWith(w, cfg, li, b, model.Options{Context: st.context})
	if err != nil {
		return nil, err
	}
	defer layer.Free()
	st.phase("load", t0)
	pass := &layerPass{layer: layer, atts: make([][]float32, len(xs))}
	defer pass.free()
	results := map[string]ModuleResult{}
	inputs := model.LayerInputs(cfg, li)
	for gi, group := range model.LayerModuleGroups(cfg, li, j.TrueSequential) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		todo := j.Skip.filter(li, group)
		var hs map[string]*Hessian
		if !j.RTN && len(todo) > 0 {
			// Only layer 0's first group sees inputs that no job has changed.
			if hs, err = st.hessians(ctx, b, cfg, pass, li, inputs, gi == 0 && li == 0, todo, xs, samples); err != nil {
				return nil, err
			}
		}
		for _, m := range group {
			if !slices.Contains(todo, m) {
				results[m] = st.skipped(li, m)
				continue
			}
			r, err := st.module(layer, cfg, li, m, inputs[m], hs)
			if err != nil {
				return nil, err
			}
			results[m] = r
		}
		pass.attFinal = hasAll(results, "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
	}
	// Re-run the quantized layer: its outputs are the next layer's inputs.
	t1 := time.Now()
	if err := pass.output(ctx, li, xs); err != nil {
		return nil, err
	}
	st.phase("forward", t1)
	ordered := make([]ModuleResult, 0, len(results))
	for _, m := range model.LayerModules(cfg, li) {
		ordered = append(ordered, results[m])
	}
	return ordered, nil
}

// hessians returns the Hessians of the inputs of a module group, from the
// shared cache when cacheable.
func (st *jobState) hessians(ctx context.Context, b runtime.Backend, cfg *hfconfig.Config, pass *layerPass, li int, inputs map[string]string, cacheable bool, group []string, xs [][]float32, samples []Sample) (map[string]*Hessian, error) {
	want := map[string]*Hessian{}
	missing := false
	for _, m := range group {
		name := inputs[m]
		h, ok := st.shared[name]
		if cacheable && ok {
			want[name] = h
		} else {
			want[name] = nil
			missing = true
		}
	}
	if !missing {
		return want, nil
	}
	t0 := time.Now()
	hs, hessSecs, err := collectHessians(ctx, b, pass, model.LayerIntermediates(cfg, li), li, xs, samples, want)
	st.add("hessian", hessSecs)
	st.add("forward", time.Since(t0).Seconds()-hessSecs)
	if err != nil {
		return nil, err
	}
	if cacheable {
		for name, h := range hs {
			st.shared[name] = h
		}
	}
	return hs, nil
}

// module quantizes one Linear (GPTQ with its input's Hessian, or round to
// nearest) and puts the quantized weight in the layer.
func (st *jobState) module(layer *model.Layer, cfg *hfconfig.Config, li int, m, input string, hs map[string]*Hessian) (ModuleResult, error) {
	j := st.job
	start := time.Now()
	name := model.LayerPrefix(li) + "." + m
	K, N, _ := model.LinearShape(cfg, m)
	w, err := layer.Weight(m)
	if err != nil {
		return ModuleResult{}, err
	}
	var res *Result
	h := hs[input]
	rtn := j.RTN || (h != nil && h.Empty())
	if rtn {
		res, err = RTN(w, N, K, j.GPTQ)
	} else {
		res, err = GPTQ(w, N, K, h, j.GPTQ, prefixWriter{st.log, name})
	}
	if err != nil {
		return ModuleResult{}, fmt.Errorf("%s: %w", name, err)
	}
	if err := layer.SetWeight(m, res.W); err != nil {
		return ModuleResult{}, fmt.Errorf("%s: %w", name, err)
	}
	secs := time.Since(start).Seconds()
	st.add("solve", secs)
	switch {
	case j.RTN:
		fmt.Fprintf(st.log, "%s %s: round to nearest %.2fs\n", j.Name, name, secs)
	case rtn:
		fmt.Fprintf(st.log, "%s %s: no calibration token reached it (an expert the router never chose): round to nearest %.2fs\n", j.Name, name, secs)
	default:
		fmt.Fprintf(st.log, "%s %s: loss %.6g damp %.3g solve %.2fs\n", j.Name, name, res.Loss, res.Damp, secs)
	}
	st.done++
	if st.progress != nil {
		st.progress(j.Name, st.done, st.total)
	}
	return ModuleResult{Layer: li, Module: m, Result: res, Seconds: secs}, nil
}

// skipped is the result of a module the job leaves unquantized: its
// source weight stays in the layer.
func (st *jobState) skipped(li int, m string) ModuleResult {
	fmt.Fprintf(st.log, "%s %s.%s: skipped (kept unquantized)\n", st.job.Name, model.LayerPrefix(li), m)
	st.done++
	if st.progress != nil {
		st.progress(st.job.Name, st.done, st.total)
	}
	return ModuleResult{Layer: li, Module: m, Skipped: true}
}

func hasAll(results map[string]ModuleResult, modules ...string) bool {
	for _, m := range modules {
		if _, ok := results[m]; !ok {
			return false
		}
	}
	return true
}

// layerPass runs calibration samples through one layer. Once the layer's
// q/k/v projections are quantized (attFinal) the attention outputs no
// longer change: the first pass after that records each sample's, and later
// passes resume from it instead of recomputing attention. It costs one
// attention output per sample in memory.
//
// Samples run on several workers at once (forEach), each with its own fork
// of the layer and a share of the backend's threads: one sequence's ops are
// too small to keep many cores busy. Every sample's result is the same
// whichever worker runs it (the backend's results do not depend on its
// thread count), and what is summed over samples is summed in sample order,
// so the output does not depend on the number of workers.
type layerPass struct {
	layer    *model.Layer
	attFinal bool
	atts     [][]float32 // per sample, once recorded
	forks    []*model.Layer
}

// splitter is a backend that can give a worker a share of its threads
// (cpu.Backend).
type splitter interface {
	Threads() int
	WithThreads(n int) runtime.Backend
}

// workers is the number of samples run at once: one per thread, at most
// one per sample, one where the backend cannot share out its threads.
func (p *layerPass) workers(n int) int {
	sp, ok := p.layer.Backend().(splitter)
	if !ok {
		return 1
	}
	return max(1, min(sp.Threads(), n))
}

// forEach calls fn for every sample index in [0, n), in increasing order of
// start, on p.workers(n) goroutines, each with its own fork of the layer.
func (p *layerPass) forEach(ctx context.Context, n int, fn func(l *model.Layer, s int) error) error {
	w := p.workers(n)
	if w <= 1 {
		for s := range n {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(p.layer, s); err != nil {
				return err
			}
		}
		return nil
	}
	sp := p.layer.Backend().(splitter)
	for len(p.forks) < w {
		p.forks = append(p.forks, p.layer.Fork(sp.WithThreads(max(1, sp.Threads()/w))))
	}
	var next atomic.Int64
	var failed atomic.Bool
	errs := make([]error, w)
	var wg sync.WaitGroup
	for i := range w {
		wg.Go(func() {
			for !failed.Load() {
				s := int(next.Add(1) - 1)
				if s >= n {
					return
				}
				err := ctx.Err()
				if err == nil {
					err = fn(p.forks[i], s)
				}
				if err != nil {
					errs[i] = err
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// free releases the forks' scratch.
func (p *layerPass) free() {
	for _, f := range p.forks {
		f.Free()
	}
	p.forks = nil
}

func (p *layerPass) run(l *model.Layer, s int, x []float32, stop string, hook model.Hook) ([]float32, error) {
	switch {
	case p.attFinal && p.atts[s] != nil:
		return l.ForwardFromAttention(x, p.atts[s], stop, hook)
	case p.attFinal:
		prefix := model.LayerPrefix(l.Index) + "."
		record := func(name string, v []float32, rows, cols int) {
			if name == prefix+"attn_out" {
				p.atts[s] = v // emit hands each hook a copy of its own
			}
			if hook != nil {
				hook(name, v, rows, cols)
			}
		}
		return l.ForwardUntil(x, stop, record)
	}
	return l.ForwardUntil(x, stop, hook)
}

// output replaces every xs[s] with the layer's output for it (the next
// layer's input).
func (p *layerPass) output(ctx context.Context, li int, xs [][]float32) error {
	return p.forEach(ctx, len(xs), func(l *model.Layer, s int) error {
		out, err := p.run(l, s, xs[s], "", nil)
		if err != nil {
			return fmt.Errorf("layer %d: %w", li, err)
		}
		xs[s] = out
		return nil
	})
}

// collectHessians runs every sample through the layer (up to the last
// intermediate it needs) and accumulates, for each intermediate named in
// want, the Hessian of that Linear input, with the backend's GEMM. The
// samples' forwards run on several workers; their intermediates are folded
// into the Hessians in sample order (a float64 running mean depends on the
// order), by one folder with all of the backend's threads, while the
// workers run ahead by at most a few samples each.
func collectHessians(ctx context.Context, b runtime.Backend, pass *layerPass, inters []string, li int, xs [][]float32, samples []Sample, want map[string]*Hessian) (map[string]*Hessian, float64, error) {
	hs := map[string]*Hessian{}
	grams := map[string]*gram{}
	defer func() {
		for _, g := range grams {
			g.free()
		}
	}()
	prefix := model.LayerPrefix(li) + "."
	stop := lastIntermediate(inters, want)
	var names []string // the fold order of one sample's intermediates
	for _, n := range inters {
		if _, ok := want[n]; ok {
			names = append(names, n)
		}
	}
	type captured struct {
		x          []float32
		rows, cols int
	}
	var (
		mu       sync.Mutex
		cond     = sync.NewCond(&mu)
		pending  = map[int]map[string]captured{}
		next     int // the next sample to fold
		foldErr  error
		hessSecs float64
	)
	ahead := 2 * pass.workers(len(xs)) // samples a worker may run ahead of the fold
	// fold folds every complete sample from next on, in order; mu is held.
	fold := func() {
		for foldErr == nil {
			inter, ok := pending[next]
			if !ok {
				return
			}
			delete(pending, next)
			mask := samples[next].Mask
			mu.Unlock()
			t := time.Now()
			var err error
			for _, name := range names {
				c, ok := inter[name]
				if !ok {
					err = fmt.Errorf("layer %d: sample %d never produced intermediate %q", li, next, name)
					break
				}
				g := grams[name]
				if g == nil || g.rows != c.rows {
					if g != nil {
						g.free()
					}
					if g, err = newGram(b, c.cols, c.rows); err != nil {
						break
					}
					grams[name] = g
				}
				if hs[name] == nil {
					hs[name] = NewHessian(c.cols)
				}
				if err = g.add(hs[name], c.x, mask); err != nil {
					break
				}
			}
			secs := time.Since(t).Seconds()
			mu.Lock()
			hessSecs += secs
			foldErr = err
			next++
			cond.Broadcast()
		}
	}
	err := pass.forEach(ctx, len(xs), func(l *model.Layer, s int) error {
		mu.Lock()
		for s >= next+ahead && foldErr == nil {
			cond.Wait()
		}
		mu.Unlock()
		inter := map[string]captured{}
		hook := func(name string, x []float32, rows, cols int) {
			if n, ok := strings.CutPrefix(name, prefix); ok {
				if _, wanted := want[n]; wanted {
					inter[n] = captured{x, rows, cols}
				}
			}
		}
		if _, err := pass.run(l, s, xs[s], stop, hook); err != nil {
			return fmt.Errorf("layer %d: %w", li, err)
		}
		mu.Lock()
		defer mu.Unlock()
		pending[s] = inter
		// Whoever completes the sample the fold waits for folds; the
		// others go on with their next sample.
		if s == next {
			fold()
		}
		return foldErr
	})
	if err != nil {
		return nil, 0, err
	}
	if foldErr != nil {
		return nil, 0, foldErr
	}
	for inter := range want {
		if hs[inter] == nil {
			return nil, 0, fmt.Errorf("layer %d: the model never produced intermediate %q", li, inter)
		}
	}
	return hs, hessSecs, nil
}

// lastIntermediate is the latest in forward order (inters, the layer's
// model.LayerIntermediates) of the intermediates in want, so the forward
// pass can stop once it has been produced.
func lastIntermediate(inters []string, want map[string]*Hessian) string {
	last, pos := "", -1
	for name := range want {
		for i, n := range inters {
			if n == name && i > pos {
				last, pos = n, i
			}
		}
	}
	return last
}

// prefixWriter prefixes each write with a module name, so the GPTQ core's
// messages (damp retries) say which module they concern.
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := fmt.Fprintf(p.w, "%s: %s", p.prefix, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// SamplesOf converts calibration samples to driver samples (no copy of
// the ids or masks).
func SamplesOf(cal []calibrate.Sample) []Sample {
	out := make([]Sample, len(cal))
	for i, s := range cal {
		out[i] = Sample{IDs: s.IDs, Mask: s.Mask}
	}
	return out
}
