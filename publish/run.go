package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gptqtool/gptqtool/formats/fused"
	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/quantized"
	"github.com/gptqtool/gptqtool/formats/weights"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// RunOptions configure Quantize.
type RunOptions struct {
	ModelDir string
	Out      string
	// Branches are the recipes to write. With Table false there must be one,
	// written to Out; with Table true each goes to Out/<name>/ and Out gets a
	// README with the whole table.
	Branches []Branch
	Table    bool
	// GitRepo, when set, is a bare git repository to create with each branch
	// as a git branch (GitRepo).
	GitRepo string

	Sym            bool
	TrueSequential bool
	MSE            bool
	RTN            bool // round to nearest instead of GPTQ (a baseline)
	// ReferenceGroups finds group params on the block-level weights as
	// REF/AutoGPTQ do (Options.StaleGroupParams), for comparisons.
	ReferenceGroups bool
	Format          gptq.Format // FormatV1 unless asymmetric zeros need v2
	BlockSize       int         // 0: 128
	// SkipModules leaves Linear modules unquantized, in fp16: exact names
	// or "re:REGEX" (quantize.ParseSkip), for every branch.
	SkipModules []string

	Samples     []quantize.Sample
	DatasetName string // for the model card
	SeqLen      int

	MaxShardBytes int64
	Force         bool
	// Resume continues the partial outputs an interrupted run left (and,
	// for a table, skips the branches it completed) when model, samples and
	// options match; the result is byte-identical to an uninterrupted run.
	Resume  bool
	Backend runtime.Backend
	// Solver selects the device driver (DriverOptions.Solver); nil runs the
	// reference driver on Backend.
	Solver quantize.Solver
	// ChunkRows, Profile and Stats pass through to DriverOptions.
	ChunkRows   int
	Activations string
	Profile     bool
	Stats       *quantize.Stats
	Log         io.Writer
	Progress    func(job string, done, total int)
	Command     string // recorded in the model card
	Version     string
}

// BranchSummary is what Quantize reports per branch.
type BranchSummary struct {
	Name      string  `json:"name"`
	Dir       string  `json:"dir"`
	Bits      int     `json:"bits"`
	GroupSize int     `json:"group_size"`
	DescAct   bool    `json:"desc_act"`
	Damp      float64 `json:"damp_percent"`
	SizeBytes int64   `json:"size_bytes"`
	Modules   int     `json:"modules"`
	TotalLoss float64 `json:"total_loss"`
	MaxDamp   float64 `json:"max_damp_used"`
	Seconds   float64 `json:"seconds"`
	ExLlama   bool    `json:"exllama"`
	// Reused marks a branch an interrupted run completed (resumed tables).
	Reused bool `json:"reused,omitempty"`
}

// SuspendedError is a failed or interrupted run that kept partial outputs
// with complete layers: rerunning with Resume continues them.
type SuspendedError struct {
	Err  error
	Kept []string // partial directories, with how far each got
}

func (e *SuspendedError) Error() string {
	return fmt.Sprintf("%v; kept for --resume: %s", e.Err, strings.Join(e.Kept, ", "))
}

func (e *SuspendedError) Unwrap() error { return e.Err }

// tableFile is a table run's record in its directory, removed when the
// table is complete.
const (
	tableFile  = "gptqtool-table.json"
	tableMagic = "gptqtool-table/1"
)

// tableRecord says which branches of an interrupted table run are complete.
type tableRecord struct {
	Format      string      `json:"format"`
	Started     time.Time   `json:"started"`
	Command     string      `json:"command"`
	Fingerprint Fingerprint `json:"fingerprint"`
	Done        []string    `json:"done"`
}

func readTableRecord(dir string) (*tableRecord, error) {
	var r tableRecord
	return &r, readRecord(filepath.Join(dir, tableFile), &r, func() bool { return r.Format == tableMagic })
}

// rtnBranches are branches as round to nearest writes them: it takes the
// columns in order (g_idx k/group_size), so desc_act is false in their
// configs and cards, and loaders keep their fast path for checkpoints
// without act order.
func rtnBranches(branches []Branch) []Branch {
	out := slices.Clone(branches)
	for i := range out {
		out[i].DescAct = false
	}
	return out
}

// openModel opens the unquantized checkpoint a run quantizes: its config,
// and its weights when they are what the config explains, each in a float
// dtype and the shape the config gives it. A fused module (Phi-3's
// qkv_proj and gate_up_proj) reads as its parts (package fused): the
// driver quantizes the parts with their shared Hessian, the Checkpoint
// writes them fused again.
func openModel(dir string) (*hfconfig.Config, weights.Set, error) {
	cfg, err := hfconfig.Load(dir)
	if err != nil {
		return nil, nil, err
	}
	if qc, err := quantized.ReadConfig(dir); err == nil {
		method := map[quantized.Method]string{quantized.GPTQ: "a GPTQ", quantized.AWQ: "an AWQ", quantized.CompressedTensors: "a compressed-tensors"}[qc.Method]
		return nil, nil, fmt.Errorf("quantize: %s is already %s checkpoint: quantize the unquantized model", dir, method)
	}
	// generation_config.json is copied into the checkpoint, whose load
	// (gptqtool's, transformers') would refuse it: refused now, as the
	// configs are, not found there. (Missing, it is not written.)
	if _, err := hfconfig.LoadGeneration(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("quantize: %w (it would be copied into the checkpoint: fix it, or remove it to write none)", err)
	}
	st, err := weights.OpenText(dir, cfg)
	if err != nil {
		return nil, nil, err
	}
	// (A qwen3_vl_moe's fused experts are quantized, and written, as
	// per-expert Linears: GPTQModel's and vLLM's names.)
	set, err := fused.View(st, cfg)
	if err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("quantize: %w", err)
	}
	if err := model.CheckWeights(set, cfg, nil); err != nil {
		set.Close()
		return nil, nil, err
	}
	// Every tensor the run reads: a missing or unusable one is found now,
	// not after an hour of GPTQ.
	if err := checkReadable(set, cfg); err != nil {
		set.Close()
		return nil, nil, err
	}
	return cfg, set, nil
}

// normalized is o as a run uses it: the checkpoint format defaulted, the
// skip patterns trimmed and without empty entries (as a run records them;
// nil when none), and for round to nearest the dataset named as none and
// the branches without act order (rtnBranches).
func (o RunOptions) normalized() RunOptions {
	if o.Format == "" {
		o.Format = gptq.FormatV1
	}
	var skip []string
	for _, p := range o.SkipModules {
		if p = strings.TrimSpace(p); p != "" {
			skip = append(skip, p)
		}
	}
	o.SkipModules = skip
	if o.RTN {
		o.DatasetName = "none (round to nearest)"
		o.Branches = rtnBranches(o.Branches)
	}
	return o
}

// ResolveSkip resolves patterns (RunOptions.SkipModules) against the
// layers of the model in modelDir, as a run will: for checking them
// before a run.
func ResolveSkip(modelDir string, patterns []string) (quantize.Skip, error) {
	cfg, err := hfconfig.Load(modelDir)
	if err != nil {
		return quantize.Skip{}, err
	}
	return quantize.ParseSkipFor(patterns, cfg)
}

// skip resolves SkipModules against the model's layers. A part of a
// fused module (Phi-3's q/k/v_proj, gate/up_proj) is refused, naming the
// fused module: GPTQModel quantizes the fused module as one, so its
// dynamic rules name qkv_proj and gate_up_proj and cannot address a part,
// and rules naming the parts would not match its modules either.
func (o RunOptions) skip(cfg *hfconfig.Config) (quantize.Skip, error) {
	s, err := quantize.ParseSkipFor(o.SkipModules, cfg)
	if err != nil {
		return quantize.Skip{}, fmt.Errorf("quantize: skip modules: %w", err)
	}
	for li := range cfg.NumHiddenLayers {
		for _, m := range fused.Modules(cfg) {
			for _, p := range m.Parts {
				if s.Has(li, p.Module) {
					return quantize.Skip{}, fmt.Errorf("quantize: skip modules: %w: %s.%s is part of %s.%s, which a %s checkpoint quantizes as one module (GPTQModel's dynamic rules cannot address its parts): skipping it is not supported",
						quantize.ErrSkip, model.LayerPrefix(li), p.Module, model.LayerPrefix(li), m.Name, cfg.ModelType)
				}
			}
		}
	}
	return s, nil
}

// withSkip is qc with the keys that tell loaders which modules skip
// leaves unquantized: GPTQModel's dynamic (read by GPTQModel and vLLM)
// and, where the same modules are skipped in every layer, optimum's
// modules_in_block_to_quantize (transformers/optimum, vLLM).
func withSkip(qc gptq.QuantizeConfig, skip quantize.Skip) gptq.QuantizeConfig {
	qc.Dynamic, qc.ModulesInBlockToQuantize = skip.Dynamic(), skip.ModulesInBlock()
	return qc
}

// fingerprints returns what identifies each branch of the run o
// (normalized) of the model with fingerprint modelFP on the samples with
// fingerprint samplesFP, and (for a table) the table.
func (o RunOptions) fingerprints(modelFP, samplesFP string, nsamples int) (branch func(Branch) Fingerprint, table Fingerprint) {
	solverName := ""
	if o.Solver != nil {
		solverName = o.Solver.Name()
	}
	branch = func(br Branch) Fingerprint {
		opt := struct {
			Version                                 string
			Branch                                  Branch
			Sym, TrueSeq, MSE, RTN, RefGroups       bool
			Format                                  gptq.Format
			BlockSize, ChunkRows, SeqLen            int
			MaxShard                                int64
			Solver, Activations, Dataset, BaseModel string
			Skip                                    string `json:",omitempty"` // the patterns, comma-separated (absent from records of runs without it)
		}{o.Version, br, o.Sym, o.TrueSequential, o.MSE, o.RTN, o.ReferenceGroups, o.Format, o.BlockSize, o.ChunkRows, o.SeqLen,
			o.MaxShardBytes, solverName, o.Activations, o.DatasetName, filepath.Base(filepath.Clean(o.ModelDir)), strings.Join(o.SkipModules, ",")}
		if o.Solver == nil {
			opt.ChunkRows, opt.Activations = 0, "" // the reference driver reads neither
		}
		return Fingerprint{Model: modelFP, Samples: samplesFP, Options: optionsFingerprint(opt), Values: optionValues(opt), NSamples: nsamples}
	}
	if o.Table {
		// (The table's hash is over its branches' fingerprints without
		// their values, as records of earlier versions have it.)
		var fps []Fingerprint
		var values []json.RawMessage
		for _, br := range o.Branches {
			fp := branch(br)
			values = append(values, fp.Values)
			fp.Values, fp.NSamples = nil, 0
			fps = append(fps, fp)
		}
		table = Fingerprint{Model: modelFP, Samples: samplesFP, Options: optionsFingerprint(fps), Values: optionValues(values), NSamples: nsamples}
	}
	return branch, table
}

func (r *tableRecord) write(dir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, tableFile), append(b, '\n'))
}

func (r *tableRecord) describe() string {
	return fmt.Sprintf("%d branches complete (%s), started %s", len(r.Done), strings.Join(r.Done, ", "), r.Started.Local().Format("2006-01-02 15:04:05"))
}

// Summary is what Quantize reports.
type Summary struct {
	Model    string          `json:"model"`
	Out      string          `json:"out"`
	Samples  int             `json:"nsamples"`
	SeqLen   int             `json:"seq_len"`
	Branches []BranchSummary `json:"branches"`
	Seconds  float64         `json:"seconds"`
}

// CompleteSummary is the summary of a --resume run o whose outputs are
// already complete (Preflight's NothingToResume): each branch as it is,
// marked reused.
func CompleteSummary(o RunOptions) *Summary {
	o = o.normalized() // round to nearest's branches have no act order
	sum := &Summary{Model: o.ModelDir, Out: o.Out, Samples: len(o.Samples), SeqLen: o.SeqLen}
	for _, br := range o.Branches {
		dir := o.Out
		if o.Table {
			dir = filepath.Join(o.Out, br.Name)
		}
		size, _ := weightBytes(dir)
		sum.Branches = append(sum.Branches, BranchSummary{Name: br.Name, Dir: dir, Bits: br.Bits, GroupSize: br.GroupSize, DescAct: br.DescAct,
			Damp: br.Damp, SizeBytes: size, Reused: true})
	}
	return sum
}

// Quantize runs GPTQ for each branch over one loaded model and one set of
// calibration samples, and writes each as a complete checkpoint. Loading,
// tokenizing, the layer-0 capture and layer 0's first Hessian are shared by
// all branches.
func Quantize(ctx context.Context, o RunOptions) (*Summary, error) {
	start := time.Now()
	if len(o.Branches) == 0 {
		return nil, fmt.Errorf("quantize: no branch to write")
	}
	if !o.Table && len(o.Branches) != 1 {
		return nil, fmt.Errorf("quantize: %d branches need the table layout", len(o.Branches))
	}
	log := o.Log
	if log == nil {
		log = io.Discard
	}
	cfg, set, err := openModel(o.ModelDir)
	if err != nil {
		return nil, err
	}
	defer set.Close()
	o = o.normalized()
	format := o.Format
	skip, err := o.skip(cfg)
	if err != nil {
		return nil, err
	}
	// What a resumed run must match: the model files, the samples and,
	// per branch, everything else that decides its bytes.
	modelFP, err := ModelFingerprint(o.ModelDir)
	if err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	fingerprint, tableFP := o.fingerprints(modelFP, SamplesFingerprint(o.Samples), len(o.Samples))
	// A table resumes in its own directory; everything else must be new or
	// replaceable.
	var table *tableRecord
	if o.Table {
		if rec, err := readTableRecord(o.Out); err == nil {
			switch {
			case !o.Resume && !o.Force:
				return nil, fmt.Errorf("%s holds an interrupted table run (%s): --resume continues it, --force discards it", o.Out, rec.describe())
			case o.Resume:
				if diff := rec.Fingerprint.diff(tableFP); len(diff) > 0 {
					return nil, fmt.Errorf("cannot resume the table in %s (%s): %s changed since: rerun with what it was made from, or --force to discard it", o.Out, rec.describe(), strings.Join(diff, ", "))
				}
				table = rec
			}
		}
	}
	if table == nil && o.Resume {
		// Nothing was interrupted: the outputs are complete (as a resumed
		// table's complete branches are, they are kept as they are).
		done, err := completeOutputs(o)
		if err != nil {
			return nil, err
		}
		if done {
			sum := CompleteSummary(o)
			fmt.Fprintf(log, "%s is already complete: nothing left to resume\n", o.Out)
			sum.Seconds = time.Since(start).Seconds()
			return sum, nil
		}
	}
	if table == nil {
		if err := CheckOut(o.Out, o.ModelDir, o.Force); err != nil {
			return nil, err
		}
	}
	if o.Solver != nil {
		// Refuse a job that cannot fit the device before any work.
		var jobs []quantize.Job
		for _, br := range o.Branches {
			jobs = append(jobs, quantize.Job{Name: br.Name, RTN: o.RTN, TrueSequential: o.TrueSequential, Skip: skip})
		}
		p, err := quantize.PlanDevice(set, cfg, o.Backend, o.Solver, o.Samples, jobs, o.ChunkRows, o.Activations)
		if err != nil {
			return nil, err
		}
		if err := p.Check(o.Backend); err != nil {
			return nil, err
		}
	}
	if o.GitRepo != "" {
		if err := CheckOut(o.GitRepo, o.ModelDir, o.Force); err != nil {
			return nil, fmt.Errorf("--git-repo: %w", err)
		}
	}
	sum := &Summary{Model: o.ModelDir, Out: o.Out, Samples: len(o.Samples), SeqLen: o.SeqLen}
	command := o.Command
	if o.Table {
		// The table's directory holds the branches and, until the table is
		// complete, its record; a run that fails before any branch is
		// complete leaves no directory of its own behind.
		_, statErr := os.Stat(o.Out)
		if err := os.MkdirAll(o.Out, 0o755); err != nil {
			return nil, err
		}
		if table == nil {
			table = &tableRecord{Format: tableMagic, Fingerprint: tableFP, Command: o.Command, Started: time.Now().UTC().Truncate(time.Second)}
			if err := table.write(o.Out); err != nil {
				return nil, err
			}
		}
		command = table.Command
		if os.IsNotExist(statErr) {
			defer func() {
				if len(sum.Branches) == 0 {
					os.Remove(filepath.Join(o.Out, tableFile))
					os.Remove(o.Out) // only if empty
				}
			}()
		}
	}
	var jobs []quantize.Job
	var cps []*Checkpoint
	// On failure or interrupt the partial outputs with complete layers
	// stay for --resume; the others go.
	fail := func(err error) (*Summary, error) {
		if errors.Is(err, quantize.ErrNonFiniteWeight) {
			// The model's own values: resuming would fail alike, so
			// nothing is kept for it.
			for _, c := range cps {
				c.Abort()
			}
			return nil, err
		}
		var kept []string
		for _, c := range cps {
			if c.Suspend() {
				kept = append(kept, fmt.Sprintf("%s (%d of %d layers)", c.tmp, c.LayersDone(), cfg.NumHiddenLayers))
			}
		}
		if table != nil && len(table.Done) > 0 {
			// The complete branches stay too: a resumed table reuses them.
			kept = append(kept, fmt.Sprintf("%s (%d of %d branches complete)", o.Out, len(table.Done), len(o.Branches)))
		}
		if len(kept) > 0 {
			return nil, &SuspendedError{Err: err, Kept: kept}
		}
		return nil, err
	}
	baseModel, _ := modelID(o.ModelDir)
	for i := range o.Branches {
		br := o.Branches[i]
		qc := gptq.DefaultQuantizeConfig()
		qc.Bits, qc.GroupSize, qc.DescAct, qc.StaticGroups = br.Bits, br.GroupSize, br.DescAct, br.StaticGroups
		qc.DampPercent, qc.Sym, qc.TrueSequential = br.Damp, o.Sym, o.TrueSequential
		qc.CheckpointFormat = string(format)
		base := "model"
		qc.ModelFileBaseName = &base
		qc = withSkip(qc, skip)
		if err := qc.Validate(); err != nil {
			return fail(fmt.Errorf("branch %s: %w", br.Name, err))
		}
		dir := o.Out
		if o.Table {
			dir = filepath.Join(o.Out, br.Name)
		}
		bs := &BranchSummary{Name: br.Name, Dir: dir, Bits: br.Bits, GroupSize: br.GroupSize, DescAct: br.DescAct, Damp: br.Damp}
		bs.ExLlama = exllamaOK(qc, cfg)
		if table != nil && slices.Contains(table.Done, br.Name) {
			// Completed by the interrupted run.
			size, err := weightBytes(dir)
			if err != nil || size == 0 {
				return fail(fmt.Errorf("branch %s: the table record says it is complete, but %s holds no weights (%v): --force starts the table again", br.Name, dir, err))
			}
			bs.SizeBytes, bs.Reused = size, true
			sum.Branches = append(sum.Branches, *bs)
			fmt.Fprintf(log, "%s: complete from the interrupted run (%s)\n", br.Name, dir)
			continue
		}
		cp, err := NewCheckpoint(dir, o.ModelDir, set, cfg, qc, CheckpointOptions{
			MaxShardBytes: o.MaxShardBytes, Force: o.Force, Resume: o.Resume, Log: log,
			Record: Progress{Command: command, Version: o.Version, Branch: br.Name, Fingerprint: fingerprint(br)},
		})
		if err != nil {
			return fail(fmt.Errorf("branch %s: %w", br.Name, err))
		}
		cps = append(cps, cp)
		opts := quantize.Options{
			Bits: br.Bits, GroupSize: br.GroupSize, Sym: o.Sym, ActOrder: br.DescAct, StaticGroups: br.StaticGroups,
			Damp: br.Damp, BlockSize: o.BlockSize, MSE: o.MSE, Fp16Scales: true, StaleGroupParams: o.ReferenceGroups,
		}
		if o.MSE {
			d := quantize.DefaultOptions()
			opts.MSENorm, opts.MSEGrid, opts.MSEMaxShrink = d.MSENorm, d.MSEGrid, d.MSEMaxShrink
		}
		job := quantize.Job{
			Name: br.Name, GPTQ: opts, TrueSequential: o.TrueSequential, RTN: o.RTN, Format: format,
			Start: cp.Start, Skip: skip,
			Layer: func(li int, mods []quantize.ModuleResult) error {
				for _, m := range mods {
					if m.Skipped {
						continue
					}
					bs.Modules++
					bs.TotalLoss += m.Loss
					if m.Damp > bs.MaxDamp {
						bs.MaxDamp = m.Damp
					}
				}
				return cp.Layer(li, mods)
			},
			Done: func(seconds float64) error {
				card := func(size int64) []byte {
					return ModelCard(CardInfo{BaseModel: baseModel, Command: cp.Command(), Version: o.Version, Sym: o.Sym, Format: format,
						Rows:    []CardRow{{Branch: br, Dataset: o.DatasetName, SeqLen: o.SeqLen, Bytes: size, ExLlama: bs.ExLlama}},
						Skipped: skip.Names(), Uniform: qc.ModulesInBlockToQuantize != nil, Support: gptq.SkipSupport(qc, linearShapes(cfg, cfg.NumHiddenLayers))})
				}
				size, err := cp.Commit(card)
				if err != nil {
					return err
				}
				bs.SizeBytes = size
				bs.Seconds = seconds
				sum.Branches = append(sum.Branches, *bs)
				if table != nil {
					table.Done = append(table.Done, br.Name)
					if err := table.write(o.Out); err != nil {
						return err
					}
				}
				fmt.Fprintf(log, "%s: wrote %s (%s) in %.1fs\n", br.Name, dir, FormatSize(size), bs.Seconds)
				return nil
			},
		}
		if cp.Start > 0 {
			job.Replay = cp.Replay
		}
		jobs = append(jobs, job)
	}
	dopts := quantize.DriverOptions{Log: log, Progress: o.Progress, Solver: o.Solver, ChunkRows: o.ChunkRows, Activations: o.Activations, Profile: o.Profile, Stats: o.Stats}
	if len(jobs) > 0 {
		if err := quantize.Run(ctx, set, cfg, o.Backend, o.Samples, jobs, dopts); err != nil {
			return fail(err)
		}
	}
	if o.Table {
		rows := make([]CardRow, len(sum.Branches))
		for i, b := range sum.Branches {
			rows[i] = CardRow{Branch: o.Branches[i], Dataset: o.DatasetName, SeqLen: o.SeqLen, Bytes: b.SizeBytes, ExLlama: b.ExLlama}
		}
		card := ModelCard(CardInfo{BaseModel: baseModel, Rows: rows, Command: command, Version: o.Version, Sym: o.Sym, Format: format,
			Skipped: skip.Names(), Uniform: skip.ModulesInBlock() != nil,
			Support: gptq.SkipSupport(withSkip(gptq.DefaultQuantizeConfig(), skip), linearShapes(cfg, cfg.NumHiddenLayers))})
		if err := writeFileAtomic(filepath.Join(o.Out, "README.md"), card); err != nil {
			return nil, err
		}
		if err := os.Remove(filepath.Join(o.Out, tableFile)); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
	}
	if o.GitRepo != "" {
		if err := GitRepo(ctx, o.GitRepo, sum.Branches, o.Force); err != nil {
			return nil, err
		}
	}
	sum.Seconds = time.Since(start).Seconds()
	return sum, nil
}

// exllamaOK reports whether ExLlama (v1) loads the checkpoint (spec §3).
func exllamaOK(qc gptq.QuantizeConfig, cfg *hfconfig.Config) bool {
	for _, l := range gptq.Loaders(qc, linearShapes(cfg, cfg.NumHiddenLayers)) {
		if strings.HasPrefix(l.Loader, "ExLlama v1") {
			return l.OK
		}
	}
	return false
}

// weightBytes is the size of the weight files in dir.
func weightBytes(dir string) (int64, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return 0, err
		}
		n += st.Size()
	}
	return n, nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
