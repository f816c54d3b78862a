package publish

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
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

	Samples     []quantize.Sample
	DatasetName string // for the model card
	SeqLen      int

	MaxShardBytes int64
	Force         bool
	Backend       runtime.Backend
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
	cfg, err := hfconfig.Load(o.ModelDir)
	if err != nil {
		return nil, err
	}
	if _, _, err := gptq.ReadQuantizeConfig(o.ModelDir); err == nil {
		return nil, fmt.Errorf("quantize: %s is already a GPTQ checkpoint: quantize the unquantized model", o.ModelDir)
	}
	set, err := safetensors.OpenDir(o.ModelDir)
	if err != nil {
		return nil, err
	}
	defer set.Close()
	if err := model.CheckWeights(set, cfg, nil); err != nil {
		return nil, err
	}
	if err := CheckOut(o.Out, o.ModelDir, o.Force); err != nil {
		return nil, err
	}
	if o.Solver != nil {
		// Refuse a job that cannot fit the device before any work.
		var jobs []quantize.Job
		for _, br := range o.Branches {
			jobs = append(jobs, quantize.Job{Name: br.Name, RTN: o.RTN, TrueSequential: o.TrueSequential})
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
	if o.Table {
		// The table's directory holds the branches; a run that fails before
		// any branch is complete leaves no empty directory behind.
		_, statErr := os.Stat(o.Out)
		if err := os.MkdirAll(o.Out, 0o755); err != nil {
			return nil, err
		}
		if os.IsNotExist(statErr) {
			defer func() {
				if len(sum.Branches) == 0 {
					os.Remove(o.Out) // only if empty
				}
			}()
		}
	}
	format := o.Format
	if format == "" {
		format = gptq.FormatV1
	}
	if o.RTN {
		o.DatasetName = "none (round to nearest)"
	}
	var jobs []quantize.Job
	var cps []*Checkpoint
	abort := func() {
		for _, c := range cps {
			c.Abort()
		}
	}
	for i := range o.Branches {
		br := o.Branches[i]
		qc := gptq.DefaultQuantizeConfig()
		qc.Bits, qc.GroupSize, qc.DescAct, qc.StaticGroups = br.Bits, br.GroupSize, br.DescAct, br.StaticGroups
		qc.DampPercent, qc.Sym, qc.TrueSequential = br.Damp, o.Sym, o.TrueSequential
		qc.CheckpointFormat = string(format)
		base := "model"
		qc.ModelFileBaseName = &base
		if err := qc.Validate(); err != nil {
			abort()
			return nil, fmt.Errorf("branch %s: %w", br.Name, err)
		}
		dir := o.Out
		if o.Table {
			dir = filepath.Join(o.Out, br.Name)
		}
		cp, err := NewCheckpoint(dir, o.ModelDir, set, cfg, qc, CheckpointOptions{MaxShardBytes: o.MaxShardBytes, Force: o.Force})
		if err != nil {
			abort()
			return nil, fmt.Errorf("branch %s: %w", br.Name, err)
		}
		cps = append(cps, cp)
		bs := &BranchSummary{Name: br.Name, Dir: dir, Bits: br.Bits, GroupSize: br.GroupSize, DescAct: br.DescAct, Damp: br.Damp}
		bs.ExLlama = exllamaOK(qc, cfg)
		opts := quantize.Options{
			Bits: br.Bits, GroupSize: br.GroupSize, Sym: o.Sym, ActOrder: br.DescAct, StaticGroups: br.StaticGroups,
			Damp: br.Damp, BlockSize: o.BlockSize, MSE: o.MSE, Fp16Scales: true, StaleGroupParams: o.ReferenceGroups,
		}
		if o.MSE {
			d := quantize.DefaultOptions()
			opts.MSENorm, opts.MSEGrid, opts.MSEMaxShrink = d.MSENorm, d.MSEGrid, d.MSEMaxShrink
		}
		jobs = append(jobs, quantize.Job{
			Name: br.Name, GPTQ: opts, TrueSequential: o.TrueSequential, RTN: o.RTN, Format: format,
			Layer: func(li int, mods []quantize.ModuleResult) error {
				for _, m := range mods {
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
					return ModelCard(CardInfo{BaseModel: filepath.Base(filepath.Clean(o.ModelDir)), Command: o.Command, Version: o.Version,
						Rows: []CardRow{{Branch: br, Dataset: o.DatasetName, SeqLen: o.SeqLen, Bytes: size, ExLlama: bs.ExLlama}}})
				}
				size, err := cp.Commit(card)
				if err != nil {
					return err
				}
				bs.SizeBytes = size
				bs.Seconds = seconds
				sum.Branches = append(sum.Branches, *bs)
				fmt.Fprintf(log, "%s: wrote %s (%s) in %.1fs\n", br.Name, dir, FormatSize(size), bs.Seconds)
				return nil
			},
		})
	}
	dopts := quantize.DriverOptions{Log: log, Progress: o.Progress, Solver: o.Solver, ChunkRows: o.ChunkRows, Activations: o.Activations, Profile: o.Profile, Stats: o.Stats}
	if err := quantize.Run(ctx, set, cfg, o.Backend, o.Samples, jobs, dopts); err != nil {
		abort()
		return nil, err
	}
	if o.Table {
		rows := make([]CardRow, len(sum.Branches))
		for i, b := range sum.Branches {
			rows[i] = CardRow{Branch: o.Branches[i], Dataset: o.DatasetName, SeqLen: o.SeqLen, Bytes: b.SizeBytes, ExLlama: b.ExLlama}
		}
		card := ModelCard(CardInfo{BaseModel: filepath.Base(filepath.Clean(o.ModelDir)), Rows: rows, Command: o.Command, Version: o.Version})
		if err := writeFileAtomic(filepath.Join(o.Out, "README.md"), card); err != nil {
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
	var shapes []gptq.LinearShape
	for _, m := range model.LinearModules {
		K, N, _ := model.LinearShape(cfg, m)
		shapes = append(shapes, gptq.LinearShape{Name: m, K: K, N: N})
	}
	for _, l := range gptq.Loaders(qc, shapes) {
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
