package quantize

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// Stats are the phase and layer timings of a device-driver run, for
// `gptqtool bench quantize`. With DriverOptions.Profile the backend is
// synchronised at phase boundaries so that device time lands in the phase
// that queued it; without, queued work is billed to whichever phase waits.
type Stats struct {
	// Phases maps a phase to seconds: load (weights to the device), embed,
	// forward, hessian (Gram products), solve (GPTQ, packing, download),
	// write (waiting for the checkpoint writer).
	Phases map[string]float64 `json:"phases_s"`
	// Layers holds one entry per job and layer, in order.
	Layers []LayerStats `json:"layers"`
	// ChunkRows is the rows of one forward chunk; DType the activations'.
	ChunkRows int    `json:"chunk_rows"`
	DType     string `json:"activation_dtype"`
	// DeviceBytes is the driver's estimate of the device memory it needs.
	DeviceBytes int64 `json:"device_bytes_estimate"`
}

// LayerStats is one layer of one job.
type LayerStats struct {
	Job     string             `json:"job"`
	Layer   int                `json:"layer"`
	Seconds float64            `json:"seconds"`
	Phases  map[string]float64 `json:"phases_s"`
}

// breakdown renders the layer's time and where it went, in the order of
// the work, so that the log's layer lines add up to the run.
func (ls *LayerStats) breakdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%.2fs =", ls.Seconds)
	sum := 0.0
	for i, p := range []string{"load", "embed", "forward", "hessian", "solve", "write"} {
		v, ok := ls.Phases[p]
		if !ok {
			continue
		}
		sep := " +"
		if i == 0 || sum == 0 {
			sep = ""
		}
		fmt.Fprintf(&b, "%s %s %.2fs", sep, p, v)
		sum += v
	}
	if other := ls.Seconds - sum; other >= 0.005 {
		fmt.Fprintf(&b, " + other %.2fs", other)
	}
	return b.String()
}

// MemoryReporter is a backend that knows its free memory (bytes).
type MemoryReporter interface {
	Memory() (free, total int64)
}

// WorkspaceReporter is a solver that can say how much backend memory it
// needs for an [N, K] module.
type WorkspaceReporter interface {
	Workspace(N, K int) int64
}

// chunkBudget bounds the per-chunk scratch of the device driver.
const chunkBudget = 2 << 30

// devRun is one device-driver run: the calibration activations of all
// samples live on the backend in x (and, true-sequential, the attention
// outputs in att); layers run over them chunk by chunk.
type devRun struct {
	ctx     context.Context
	w       model.Weights
	cfg     *hfconfig.Config
	b       runtime.Backend
	solver  Solver
	log     io.Writer
	opts    DriverOptions
	samples []Sample
	dt      runtime.DType
	T, S    int // tokens per sample, samples
	rows    int // S*T
	chunk   int // rows per chunk, a multiple of T
	ids     []int
	x, att  runtime.Tensor // [rows, hidden], [rows, q]
	xc      runtime.Tensor // [chunk, hidden] copy for non-true-sequential passes
	mask    runtime.Tensor // F32 [rows] or nil
	table   runtime.Tensor // embedding [vocab, hidden]
	stats   *Stats
	layer   *LayerStats
	done    int
	total   int
}

func (d *devRun) phase(name string, start time.Time) {
	if d.opts.Profile {
		d.b.Sync()
	}
	s := time.Since(start).Seconds()
	if d.stats != nil {
		d.stats.Phases[name] += s
	}
	if d.layer != nil {
		d.layer.Phases[name] += s
	}
}

// activationDType is the checkpoint's dtype when the backend computes in it
// (bf16 for openchat), else F32.
func activationDType(w model.Weights, b runtime.Backend) runtime.DType {
	t, err := w.Tensor(model.LayerPrefix(0) + ".self_attn.q_proj.weight")
	if err != nil {
		return runtime.F32
	}
	dt := runtime.F32
	switch t.DType {
	case safetensors.F16:
		dt = runtime.F16
	case safetensors.BF16:
		dt = runtime.BF16
	}
	if !runtime.Supports(b, dt) {
		return runtime.F32
	}
	return dt
}

// runDevice is Run for a run whose activations stay on the backend: the
// samples are embedded there once per job; each layer is loaded in the
// activation dtype and run over the stacked samples in chunks, its Linear
// inputs folded into Hessians with Backend.Gram (a device tap; nothing is
// downloaded but the results), and each module group is quantized by the
// solver, which replaces the weights in place. True-sequential runs pass
// over the samples five times per layer (spec §4.5): Hessians of the q/k/v
// input; attention with the quantized q/k/v, kept in att, and o_proj's
// Hessian; o_proj and the residual, in place, and the MLP input's Hessian;
// the activation product and down_proj's Hessian; and the quantized MLP,
// which leaves the next layer's input in x. Finished layers are written by
// a goroutine while the next layer runs.
func runDevice(ctx context.Context, w model.Weights, cfg *hfconfig.Config, b runtime.Backend, samples []Sample, jobs []Job, opts DriverOptions) error {
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	d := &devRun{ctx: ctx, w: w, cfg: cfg, b: b, solver: opts.Solver, log: log, opts: opts, samples: samples,
		total: totalModules(cfg) * len(jobs), stats: opts.Stats}
	if d.stats != nil {
		d.stats.Phases = map[string]float64{}
	}
	needActs := false
	for _, j := range jobs {
		needActs = needActs || !j.RTN
	}
	if needActs {
		if err := d.setup(jobs); err != nil {
			return err
		}
		defer d.free()
	}
	for _, j := range jobs {
		if err := d.job(j); err != nil {
			return fmt.Errorf("quantize: %s: %w", j.Name, err)
		}
	}
	return nil
}

func (d *devRun) free() {
	for _, t := range []runtime.Tensor{d.x, d.att, d.xc, d.mask, d.table} {
		if t != nil {
			d.b.Free(t)
		}
	}
}

// DevicePlan is how the device driver will run a job list: the activation
// dtype, the chunking and the device memory it needs, part by part.
type DevicePlan struct {
	DType      runtime.DType
	T, S, Rows int // tokens per sample, samples, S·T
	Chunk      int // rows per chunk, a multiple of T
	TrueSeq    bool
	Plain      bool // some job is not true-sequential
	HasMask    bool
	// Host: the backend keeps its tensors in host memory (it is no
	// MemoryReporter: the CPU backend, whose F16/BF16 tensors hold fp32
	// values), so Parts are host memory, sized at 4 bytes an element.
	Host  bool
	Parts []PlanPart
	Need  int64
}

// PlanPart is one item of the device memory estimate.
type PlanPart struct {
	What  string
	Bytes int64
}

func (p *DevicePlan) String() string {
	var desc []string
	for _, q := range p.Parts {
		desc = append(desc, fmt.Sprintf("%s %s", q.What, formatBytes(q.Bytes)))
	}
	return fmt.Sprintf("≈ %s (%s)", formatBytes(p.Need), strings.Join(desc, ", "))
}

// PlanDevice sizes a device-driver run without allocating anything;
// activations is DriverOptions.Activations.
func PlanDevice(w model.Weights, cfg *hfconfig.Config, b runtime.Backend, solver Solver, samples []Sample, jobs []Job, chunkRows int, activations string) (*DevicePlan, error) {
	S, T := len(samples), 0
	if S > 0 {
		T = len(samples[0].IDs)
		for i, s := range samples {
			if len(s.IDs) != T {
				return nil, fmt.Errorf("quantize: sample %d has %d tokens, sample 0 %d: the device driver needs samples of one length", i, len(s.IDs), T)
			}
		}
	}
	masked := slices.ContainsFunc(samples, func(s Sample) bool { return s.Mask != nil })
	return PlanDeviceShape(w, cfg, b, solver, S, T, masked, jobs, chunkRows, activations)
}

// PlanDeviceShape is PlanDevice for S samples of T tokens (masked: some
// with padding), before the samples exist.
func PlanDeviceShape(w model.Weights, cfg *hfconfig.Config, b runtime.Backend, solver Solver, S, T int, masked bool, jobs []Job, chunkRows int, activations string) (*DevicePlan, error) {
	p := &DevicePlan{}
	for _, j := range jobs {
		if !j.RTN {
			p.TrueSeq = p.TrueSeq || j.TrueSequential
			p.Plain = p.Plain || !j.TrueSequential
		}
	}
	if !p.TrueSeq && !p.Plain {
		return p, nil // round to nearest only: no activations
	}
	if S == 0 || T == 0 {
		return nil, fmt.Errorf("quantize: GPTQ needs calibration samples")
	}
	p.S, p.T = S, T
	p.Rows = p.S * p.T
	switch activations {
	case "", "auto":
		p.DType = activationDType(w, b)
	case "f32":
		p.DType = runtime.F32
	case "f16":
		p.DType = runtime.F16
	case "bf16":
		p.DType = runtime.BF16
	default:
		return nil, fmt.Errorf("quantize: activations %q: want auto, f32, f16 or bf16", activations)
	}
	if !runtime.Supports(b, p.DType) {
		return nil, fmt.Errorf("quantize: backend %s has no %v activations", b.Name(), p.DType)
	}
	es := int64(p.DType.Size())
	if _, dev := b.(MemoryReporter); !dev {
		p.Host, es = true, 4
	}
	hidden, q, kv, inter := int64(cfg.HiddenSize), int64(cfg.NumAttentionHeads*cfg.HeadDim), int64(cfg.NumKeyValueHeads*cfg.HeadDim), int64(cfg.IntermediateSize)
	mlp := mlpSizes(cfg)
	rowBytes := (3*hidden + 2*q + 2*kv + 2*inter) * es // one row of layer scratch
	if m := cfg.MoE; m != nil {
		// The MoE scratch (mlpSizes), its TopK routing weights in fp32.
		K := int64(m.TopK)
		rowBytes += (mlp.scratch-K)*es + 4*K
	}
	perSample := rowBytes * int64(p.T)
	k := max(1, min(int64(p.S), chunkBudget/max(perSample, 1)))
	if chunkRows > 0 {
		k = max(1, min(int64(p.S), int64(chunkRows/p.T)))
	}
	p.Chunk = int(k) * p.T
	rows := int64(p.Rows)
	p.HasMask = masked
	add := func(what string, n int64) { p.Parts = append(p.Parts, PlanPart{what, n}) }
	add("activations", rows*hidden*es)
	add("chunk scratch", int64(p.Chunk)*rowBytes)
	add("layer weights", (2*hidden+hidden*(q+2*kv)+q*hidden+mlp.params)*es)
	add("embedding table", int64(cfg.VocabSize)*hidden*es)
	if p.TrueSeq {
		add("attention outputs", rows*q*es)
	}
	grams := mlp.group * 4
	if p.Plain {
		grams += (2*hidden*hidden + q*q) * 4
		if m := cfg.MoE; m != nil {
			grams += int64(m.Experts) * int64(cfg.HiddenSize) * int64(cfg.HiddenSize) * 4 // (inputs and outputs at once)
		}
		add("input copy", int64(p.Chunk)*hidden*es)
	}
	add("Hessians", grams)
	if p.HasMask {
		add("masks", rows*4+int64(p.Chunk)*inter*es)
	}
	// (The host solver's workspace is host memory: counted here only
	// where the plan's parts are.)
	if _, host := solver.(HostSolver); host && !p.Host {
		solver = nil
	}
	if wr, ok := solver.(WorkspaceReporter); ok {
		var ws int64
		for _, m := range mlp.modules {
			K, N, _ := model.LinearShape(cfg, m)
			ws = max(ws, wr.Workspace(N, K))
		}
		add("solver", ws)
	}
	for _, part := range p.Parts {
		p.Need += part.Bytes
	}
	return p, nil
}

// Check refuses a plan that does not fit the backend's free memory (where
// the backend reports it), with the estimate and what to change.
func (p *DevicePlan) Check(b runtime.Backend) error {
	mr, ok := b.(MemoryReporter)
	if !ok || p.Need == 0 {
		return nil
	}
	free, total := mr.Memory()
	if total > 0 && p.Need > free {
		return fmt.Errorf("quantize: the calibration needs %s of device memory but %s has %s free of %s: lower --nsamples (%d) or --seq-len (%d), or quantize on the CPU",
			p, b.Name(), formatBytes(free), formatBytes(total), p.S, p.T)
	}
	return nil
}

// setup sizes the run, checks it fits the device, and allocates the
// activation buffers and the embedding table.
func (d *devRun) setup(jobs []Job) error {
	cfg, b := d.cfg, d.b
	p, err := PlanDevice(d.w, cfg, b, d.solver, d.samples, jobs, d.opts.ChunkRows, d.opts.Activations)
	if err != nil {
		return err
	}
	d.S, d.T, d.rows, d.chunk, d.dt = p.S, p.T, p.Rows, p.Chunk, p.DType
	trueSeq, plain, hasMask := p.TrueSeq, p.Plain, p.HasMask
	q := int64(cfg.NumAttentionHeads * cfg.HeadDim)
	if d.stats != nil {
		d.stats.ChunkRows, d.stats.DType, d.stats.DeviceBytes = d.chunk, d.dt.String(), p.Need
	}
	where := "device memory"
	if p.Host {
		where = "host memory for the backend's tensors"
	}
	fmt.Fprintf(d.log, "quantize: %s on %s: %d samples × %d tokens in chunks of %d rows, %v activations; %s needed %s\n",
		d.solver.Name(), b.Name(), d.S, d.T, d.chunk, d.dt, where, p)
	if err := p.Check(b); err != nil {
		return err
	}
	alloc := func(dt runtime.DType, shape ...int) (runtime.Tensor, error) {
		t, err := b.Alloc(dt, shape...)
		if err != nil {
			d.free()
			return nil, fmt.Errorf("quantize: device buffer %v: %w", shape, err)
		}
		return t, nil
	}
	if d.x, err = alloc(d.dt, d.rows, cfg.HiddenSize); err != nil {
		return err
	}
	if trueSeq {
		if d.att, err = alloc(d.dt, d.rows, int(q)); err != nil {
			return err
		}
	}
	if plain {
		if d.xc, err = alloc(d.dt, d.chunk, cfg.HiddenSize); err != nil {
			return err
		}
	}
	if hasMask {
		if d.mask, err = alloc(runtime.F32, d.rows); err != nil {
			return err
		}
		m := make([]float32, d.rows)
		for s, smp := range d.samples {
			for t := range d.T {
				if smp.Mask == nil || smp.Mask[t] {
					m[s*d.T+t] = 1
				}
			}
		}
		if err := b.Upload(d.mask, m); err != nil {
			d.free()
			return err
		}
	}
	start := time.Now()
	if _, scaled := model.EmbedScale(cfg, d.dt); scaled {
		if _, ok := b.(runtime.Scaler); !ok {
			d.free()
			return fmt.Errorf("quantize: backend %s has no Scale (runtime.Scaler), which %s's embedding scale needs", b.Name(), cfg.ModelType)
		}
	}
	if d.table, err = model.LoadTensor(d.w, b, d.dt, "model.embed_tokens.weight", cfg.VocabSize, cfg.HiddenSize); err != nil {
		d.free()
		return err
	}
	d.phase("load", start)
	d.ids = make([]int, 0, d.rows)
	for _, s := range d.samples {
		d.ids = append(d.ids, s.IDs...)
	}
	return nil
}

// embed fills x with the samples' embeddings (layer 0's input), scaled
// as the model scales them (model.EmbedScale: Gemma's, Granite's).
func (d *devRun) embed() {
	start := time.Now()
	s, scaled := model.EmbedScale(d.cfg, d.dt)
	for r0 := 0; r0 < d.rows; r0 += d.chunk {
		n := min(d.chunk, d.rows-r0)
		x := d.b.View(d.x, r0, n)
		d.b.Embedding(x, d.table, d.ids[r0:r0+n])
		if scaled {
			d.b.(runtime.Scaler).Scale(x, x, s)
		}
	}
	d.phase("embed", start)
}

func (d *devRun) job(j Job) error {
	start := time.Now()
	if !j.RTN {
		d.embed()
	}
	wr := &asyncWriter{}
	for li := 0; li < d.cfg.NumHiddenLayers; li++ {
		if err := d.ctx.Err(); err != nil {
			wr.wait()
			return err
		}
		ls := LayerStats{Job: j.Name, Layer: li, Phases: map[string]float64{}}
		d.layer = &ls
		ls0 := time.Now()
		if li < j.Start {
			if err := d.replay(j, li); err != nil {
				wr.wait()
				return err
			}
			d.layer = nil
			continue
		}
		mods, err := d.layerOf(j, li)
		if err != nil {
			wr.wait()
			return err
		}
		if j.Layer != nil {
			t := time.Now()
			if err := wr.submit(func() error { return j.Layer(li, mods) }); err != nil {
				return err
			}
			d.phase("write", t)
		}
		ls.Seconds = time.Since(ls0).Seconds()
		if d.stats != nil {
			d.stats.Layers = append(d.stats.Layers, ls)
		}
		fmt.Fprintf(d.log, "%s layer %d: %s\n", j.Name, li, ls.breakdown())
		d.layer = nil
	}
	t := time.Now()
	if err := wr.wait(); err != nil {
		return err
	}
	d.phase("write", t)
	if j.Done != nil {
		return j.Done(time.Since(start).Seconds())
	}
	return nil
}

// replay runs layer li, quantized by an interrupted run, over x with the
// passes layerOf makes (no Hessians, no solves), leaving in x bit for bit
// the output the uninterrupted run computed.
func (d *devRun) replay(j Job, li int) error {
	d.done += len(model.LayerModules(d.cfg, li))
	if d.opts.Progress != nil {
		d.opts.Progress(j.Name, d.done, d.total)
	}
	if j.RTN {
		return nil
	}
	start := time.Now()
	layer, err := model.LoadLayerWith(d.w, d.cfg, li, d.b, model.Options{DType: d.dt, Context: CalibrationContext(d.cfg, d.samples)})
	if err != nil {
		return err
	}
	defer layer.Free()
	if err := j.replayWeights(layer, d.cfg, li); err != nil {
		return err
	}
	d.phase("load", start)
	mlpIn, mlpAct := mlpStops(d.cfg, li)
	type step struct {
		from model.Stage
		stop string
		att  bool
	}
	steps := []step{{model.FromInput, "out", false}}
	if j.TrueSequential {
		steps = []step{
			{model.FromInput, "attn_norm", false},
			{model.FromInput, "attn_out", true},
			{model.FromAttention, mlpIn, true},
			{model.FromResidual, mlpAct, false},
			{model.FromResidual, "out", false},
		}
	}
	for _, s := range steps {
		if _, err := d.pass(layer, s.from, s.stop, s.att, false, nil); err != nil {
			return err
		}
	}
	fmt.Fprintf(d.log, "%s layer %d: replayed (quantized by the interrupted run)\n", j.Name, li)
	return nil
}

// layerOf quantizes layer li for job j and leaves its output in x.
func (d *devRun) layerOf(j Job, li int) ([]ModuleResult, error) {
	start := time.Now()
	layer, err := model.LoadLayerWith(d.w, d.cfg, li, d.b, model.Options{DType: d.dt, Context: CalibrationContext(d.cfg, d.samples)})
	if err != nil {
		return nil, err
	}
	defer layer.Free()
	if r, ok := d.w.(interface{ Release(...string) }); ok {
		r.Release(model.LayerWeightNames(d.cfg, li)...)
	}
	if p, ok := d.w.(interface{ Prefetch(...string) }); ok && li+1 < d.cfg.NumHiddenLayers {
		p.Prefetch(model.LayerWeightNames(d.cfg, li+1)...)
	}
	d.phase("load", start)
	results := map[string]ModuleResult{}
	// skip records the modules of mods the job leaves unquantized (their
	// source weights stay in the layer) and returns the others.
	skip := func(mods []string) []string {
		todo := j.Skip.filter(li, mods)
		for _, m := range mods {
			if !slices.Contains(todo, m) {
				results[m] = ModuleResult{Layer: li, Module: m, Skipped: true}
				fmt.Fprintf(d.log, "%s %s.%s: skipped (kept unquantized)\n", j.Name, model.LayerPrefix(li), m)
				d.done++
				if d.opts.Progress != nil {
					d.opts.Progress(j.Name, d.done, d.total)
				}
			}
		}
		return todo
	}
	// solve quantizes mods, whose inputs' Gram matrix is g (nil: none), by
	// the job's solver, or to nearest where the job does or rtn says (an
	// expert no calibration token reached).
	solve := func(mods []string, g runtime.Tensor, rtn bool) error {
		t := time.Now()
		ws := make([]runtime.Tensor, len(mods))
		for i, m := range mods {
			if ws[i], err = layer.WeightTensor(m); err != nil {
				return err
			}
		}
		solver := d.solver
		if j.RTN || rtn {
			solver, g = HostSolver{RTN: true}, nil
		}
		res, err := solver.Solve(d.ctx, SolveRequest{Backend: d.b, Layer: li, Modules: mods, Weights: ws, Gram: g,
			Samples: d.S, Options: j.GPTQ, Format: j.Format, Log: prefixWriter{d.log, model.LayerPrefix(li)}})
		if err != nil {
			var names []string
			for _, m := range mods {
				names = append(names, model.LayerPrefix(li)+"."+m)
			}
			return fmt.Errorf("%s: %w", strings.Join(names, ", "), err)
		}
		d.phase("solve", t)
		secs := time.Since(t).Seconds() / float64(len(mods))
		for i, m := range mods {
			mr := ModuleResult{Layer: li, Module: m, Result: res[i], Seconds: secs}
			results[m] = mr
			switch {
			case j.RTN:
				fmt.Fprintf(d.log, "%s %s: round to nearest %.2fs\n", j.Name, mr.Name(), secs)
			case rtn:
				fmt.Fprintf(d.log, "%s %s: no calibration token reached it (an expert the router never chose): round to nearest %.2fs\n", j.Name, mr.Name(), secs)
			default:
				fmt.Fprintf(d.log, "%s %s: loss %.6g damp %.3g solve %.2fs\n", j.Name, mr.Name(), res[i].Loss, res[i].Damp, secs)
			}
			d.done++
			if d.opts.Progress != nil {
				d.opts.Progress(j.Name, d.done, d.total)
			}
		}
		return nil
	}
	// solveInputs quantizes the modules of todo by the Gram matrices gs of
	// their inputs, one solve per input (an expert's up and gate share
	// theirs), in todo's order of inputs; an expert input no routed row
	// reached (routed, from the pass that tapped it) is rounded to nearest.
	inputs := model.LayerInputs(d.cfg, li)
	solveInputs := func(todo []string, gs map[string]runtime.Tensor, routed []int) error {
		var ins []string
		byIn := map[string][]string{}
		for _, m := range todo {
			in := inputs[m]
			if _, ok := byIn[in]; !ok {
				ins = append(ins, in)
			}
			byIn[in] = append(byIn[in], m)
		}
		for _, in := range ins {
			rtn, err := d.unrouted(in, gs[in], routed)
			if err != nil {
				return err
			}
			if err := solve(byIn[in], gs[in], rtn); err != nil {
				return err
			}
		}
		return nil
	}
	freeAll := func(gs map[string]runtime.Tensor) {
		for _, g := range gs {
			d.b.Free(g)
		}
	}
	mlpIn, mlpAct := mlpStops(d.cfg, li)
	switch {
	case j.RTN:
		for _, g := range model.LayerModuleGroups(d.cfg, li, true) {
			if g = skip(g); len(g) == 0 {
				continue
			}
			if err := solve(g, nil, false); err != nil {
				return nil, err
			}
		}
	case j.TrueSequential:
		// effect: the pass changes what later passes read (the attention
		// outputs in att, the residual in x), so it runs even where the
		// group's modules are all skipped and no Hessian is wanted.
		steps := []struct {
			from   model.Stage
			stop   string
			att    bool
			effect bool
		}{
			{model.FromInput, "attn_norm", false, false},
			{model.FromInput, "attn_out", true, true},
			{model.FromAttention, mlpIn, true, true},
			{model.FromResidual, mlpAct, false, false},
		}
		for gi, mods := range model.LayerModuleGroups(d.cfg, li, true) {
			s := steps[gi]
			if mods = skip(mods); len(mods) == 0 {
				if s.effect {
					if _, err := d.pass(layer, s.from, s.stop, s.att, false, nil); err != nil {
						return nil, err
					}
				}
				continue
			}
			var taps []string
			for _, m := range mods {
				if in := inputs[m]; !slices.Contains(taps, in) {
					taps = append(taps, in)
				}
			}
			gs, err := d.pass(layer, s.from, s.stop, s.att, false, taps)
			if err != nil {
				return nil, err
			}
			err = solveInputs(mods, gs, layer.ExpertRows())
			freeAll(gs)
			if err != nil {
				return nil, err
			}
		}
		if _, err := d.pass(layer, model.FromResidual, "out", false, false, nil); err != nil {
			return nil, err
		}
	default:
		// One pass with the layer's own weights for all four inputs (on a
		// copy: x must stay the layer input), then every module; an input
		// that only skipped modules read is not tapped.
		todo := skip(model.LayerModuleGroups(d.cfg, li, false)[0])
		read := map[string]bool{}
		for _, m := range todo {
			read[inputs[m]] = true
		}
		inters := model.LayerIntermediates(d.cfg, li)
		var tapped []string
		for _, in := range inters {
			if read[in] {
				tapped = append(tapped, in)
			}
		}
		var gs map[string]runtime.Tensor
		if len(tapped) > 0 {
			if gs, err = d.pass(layer, model.FromInput, lastInput(inters, tapped), false, true, tapped); err != nil {
				return nil, err
			}
		}
		err := solveInputs(todo, gs, layer.ExpertRows())
		freeAll(gs)
		if err != nil {
			return nil, err
		}
		if _, err := d.pass(layer, model.FromInput, "out", false, false, nil); err != nil {
			return nil, err
		}
	}
	ordered := make([]ModuleResult, 0, len(results))
	for _, m := range model.LayerModules(d.cfg, li) {
		ordered = append(ordered, results[m])
	}
	return ordered, nil
}

// mlpStops are where the true-sequential passes of layer li of cfg stop
// for the MLP's two groups: ffn_norm and ffn_act, or in a sparse layer
// the last expert's input and SwiGLU output (every expert's then emitted),
// or the shared expert's SwiGLU output where the layer has one (it comes
// after the experts'; its input, ffn_norm, before theirs).
func mlpStops(cfg *hfconfig.Config, li int) (in, act string) {
	if !cfg.Sparse(li) {
		return "ffn_norm", "ffn_act"
	}
	if cfg.MoE.SharedSize > 0 {
		return model.ExpertInput(cfg.MoE, cfg.MoE.Experts-1), model.SharedAct(cfg.MoE)
	}
	return model.ExpertInput(cfg.MoE, cfg.MoE.Experts-1), model.ExpertAct(cfg.MoE, cfg.MoE.Experts-1)
}

// unrouted reports whether in is an expert's input that no calibration
// token reached: no row was routed to it in the pass (routed), or, where
// samples have padding, only padding rows were (their Gram g, masked, is
// then zero, as the reference driver's Hessian.Empty finds; a positive
// semidefinite matrix's column is zero where its diagonal is).
func (d *devRun) unrouted(in string, g runtime.Tensor, routed []int) (bool, error) {
	e, _, ok := model.ExpertOf(d.cfg.MoE, in)
	switch {
	case !ok:
		return false, nil // (not an expert's input)
	case routed != nil && routed[e] == 0:
		return true, nil
	case d.mask == nil || g == nil:
		return false, nil // (no padding)
	}
	sq, err := runtime.ColumnSquares(d.b, g)
	if err != nil {
		return false, fmt.Errorf("hessian of %s: %w", in, err)
	}
	return !slices.ContainsFunc(sq, func(v float64) bool { return v != 0 }), nil
}

// pass runs the layer over every chunk of x from stage from to stop and
// returns the Gram matrices of the named intermediates. With att the
// attention outputs go to (or come from) d.att; with copyIn the layer runs
// on a copy of each chunk, leaving x unchanged.
func (d *devRun) pass(layer *model.Layer, from model.Stage, stop string, att, copyIn bool, taps []string) (map[string]runtime.Tensor, error) {
	b := d.b
	grams := map[string]runtime.Tensor{}
	fail := func(err error) (map[string]runtime.Tensor, error) {
		for _, g := range grams {
			b.Free(g)
		}
		return nil, err
	}
	var widths map[string]int
	if len(taps) > 0 {
		widths = d.inputWidths(layer.Index)
	}
	for _, in := range taps {
		K, ok := widths[in]
		if !ok {
			panic("quantize: unknown linear input " + in)
		}
		g, err := b.Alloc(runtime.F32, K, K)
		if err != nil {
			return fail(fmt.Errorf("hessian of %s: %w", in, err))
		}
		grams[in] = g
	}
	prefix := model.LayerPrefix(layer.Index) + "."
	for r0 := 0; r0 < d.rows; r0 += d.chunk {
		if err := d.ctx.Err(); err != nil {
			return fail(err)
		}
		n := min(d.chunk, d.rows-r0)
		x := b.View(d.x, r0, n)
		if copyIn {
			xc := b.View(d.xc, 0, n)
			b.Copy(xc, x)
			x = xc
		}
		var a, mask runtime.Tensor
		if att {
			a = b.View(d.att, r0, n)
		}
		if d.mask != nil {
			mask = b.View(d.mask, r0, n)
		}
		t0 := time.Now()
		tap := func(name string, act runtime.Tensor) error {
			g := grams[strings.TrimPrefix(name, prefix)]
			if g == nil {
				return nil
			}
			d.phase("forward", t0)
			t1 := time.Now()
			b.Gram(g, act, mask)
			d.phase("hessian", t1)
			t0 = time.Now()
			return nil
		}
		var t model.Tap
		if len(taps) > 0 {
			t = tap // (no tap where nothing is tapped: a mixture-of-experts layer then emits no padded inputs)
		}
		if err := layer.Run(x, d.T, from, a, stop, t); err != nil {
			return fail(err)
		}
		d.phase("forward", t0)
	}
	if err := b.Sync(); err != nil {
		return fail(err)
	}
	return grams, nil
}

// lastInput is the latest in forward order (inters, the layer's
// model.LayerIntermediates) of the Linear inputs ins, where a pass tapping
// them can stop.
func lastInput(inters, ins []string) string {
	want := map[string]*Hessian{}
	for _, in := range ins {
		want[in] = nil
	}
	return lastIntermediate(inters, want)
}

// inputWidths maps each Linear input intermediate of layer li
// (model.LayerLinears: a sparse layer's experts' and shared expert's too)
// to its column count.
func (d *devRun) inputWidths(li int) map[string]int {
	out := map[string]int{}
	for _, l := range model.LayerLinears(d.cfg, li) {
		K, _, _ := model.LinearShape(d.cfg, l.Name)
		out[l.Input] = K
	}
	return out
}

// asyncWriter runs one layer write at a time in the background.
type asyncWriter struct {
	done chan error
}

// submit waits for the previous write and starts fn.
func (a *asyncWriter) submit(fn func() error) error {
	if err := a.wait(); err != nil {
		return err
	}
	a.done = make(chan error, 1)
	go func() { a.done <- fn() }()
	return nil
}

func (a *asyncWriter) wait() error {
	if a.done == nil {
		return nil
	}
	err := <-a.done
	a.done = nil
	return err
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", (n+1023)/1024)
}
