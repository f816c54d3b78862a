package publish

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/weights"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// PreflightOptions describe a run before its dataset is read: RunOptions
// without samples, plus their number and length.
type PreflightOptions struct {
	RunOptions
	NSamples, SeqLen int
	// Masked: the samples may hold padding (record mode).
	Masked bool
	// DatasetBytes is the size of the dataset files (read later), for the
	// memory their tokens take.
	DatasetBytes int64
	// AllowUnportable accepts group sizes that some loaders reject, and
	// SkipModules that skip part of a group vLLM fuses (they are named in
	// a warning instead of refusing the run).
	AllowUnportable bool
	// Estimate times a one-layer run on this machine to estimate the
	// run's time (Estimate in the report), once every other check has
	// passed; RunOptions.Log, when set, gets a line when the timing starts.
	Estimate bool
}

// PreflightReport is what a run will do and whether it can: the checks
// that refuse it are in Problems, each with the numbers and what to change.
type PreflightReport struct {
	Model       string          `json:"model"`
	Params      int64           `json:"num_parameters"`
	Layers      int             `json:"num_hidden_layers"`
	Device      string          `json:"device"`
	Solver      string          `json:"solver,omitempty"`
	NSamples    int             `json:"nsamples"`
	SeqLen      int             `json:"seq_len"`
	Branches    []PlannedBranch `json:"branches"`
	HostNeed    int64           `json:"host_bytes_needed"`
	HostPeak    int64           `json:"host_bytes_peak_unlimited"`
	HostParts   []planPart      `json:"host_bytes_by_item"`
	HostFree    int64           `json:"host_bytes_available,omitempty"`
	HostLimit   string          `json:"host_limit,omitempty"`
	DeviceNeed  int64           `json:"device_bytes_needed,omitempty"`
	DeviceParts []planPart      `json:"device_bytes_by_item,omitempty"`
	DeviceFree  int64           `json:"device_bytes_free,omitempty"`
	DiskNeed    int64           `json:"disk_bytes_needed"`
	DiskFree    int64           `json:"disk_bytes_free,omitempty"`
	Seconds     float64         `json:"estimated_seconds,omitempty"`
	Basis       string          `json:"estimate_basis,omitempty"`
	// PlainFrom lists the source dtypes (lower case, "bf16") of the
	// non-quantized tensors that the checkpoint converts to fp16; empty
	// where they are fp16 already.
	PlainFrom []string `json:"plain_tensors_converted_from,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
	Problems  []string `json:"problems,omitempty"`
	// NothingToResume is set for a --resume whose outputs are complete
	// checkpoints of its options: there is no work left.
	NothingToResume bool `json:"nothing_to_resume,omitempty"`
	// MemoryLimit, when set, is the heap limit the run should run under
	// (runtime/debug.SetMemoryLimit): the job fits in what is free only
	// if the collector is held to it.
	MemoryLimit int64 `json:"memory_limit,omitempty"`
}

type planPart struct {
	What  string `json:"item"`
	Bytes int64  `json:"bytes"`
}

// PlannedBranch is one branch of a PreflightReport.
type PlannedBranch struct {
	Branch
	Dir       string   `json:"dir"`
	SizeBytes int64    `json:"planned_size_bytes"`
	Rejected  []string `json:"loaders_rejecting,omitempty"`
	State     string   `json:"state"` // new, replace, resume at layer N (layers numbered from 0), complete (resumed table)
}

// ErrPreflight is wrapped by the error of a run the preflight refuses.
var ErrPreflight = errors.New("refused before any work")

// Err returns the refusal, or nil when the run can go ahead.
func (r *PreflightReport) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrPreflight, strings.Join(r.Problems, "; "))
}

// Preflight checks everything about a run that can be checked before its
// dataset is read or its first layer quantized: the model (config,
// readable weights that the config explains), the output directory (new,
// replaceable, or an interrupted run to resume), the group sizes against
// the loaders, host and device memory against what is free, disk space;
// and with Estimate it times one layer on this machine. It returns the
// report; report.Err says whether the run is refused.
func Preflight(ctx context.Context, o PreflightOptions) (*PreflightReport, error) {
	cfg, set, err := openModel(o.ModelDir)
	if err != nil {
		return nil, err
	}
	defer set.Close()
	r := &PreflightReport{Model: o.ModelDir, Params: cfg.NumParameters(), Layers: cfg.NumHiddenLayers, NSamples: o.NSamples, SeqLen: o.SeqLen,
		PlainFrom: plainFrom(set, cfg)}
	if o.Backend != nil {
		r.Device = o.Backend.Name()
	}
	if o.Solver != nil {
		r.Solver = o.Solver.Name()
	}
	format := o.Format
	if format == "" {
		format = gptq.FormatV1
	}
	shapes := linearShapes(cfg, 1)
	if o.RunOptions.SeqLen == 0 {
		// The samples' length, as a complete checkpoint's card records it.
		o.RunOptions.SeqLen = o.SeqLen
	}
	if err := r.checkOut(o.RunOptions); err != nil {
		return nil, err
	}
	skip, err := o.skip(cfg)
	if err != nil {
		return nil, err
	}
	if partial := skip.PartialFused(); len(partial) > 0 {
		msg := "--skip-modules: " + strings.Join(partial, "; ") + ": vLLM cannot load the result"
		if o.AllowUnportable {
			r.Warnings = append(r.Warnings, msg)
		} else {
			r.Problems = append(r.Problems, msg+" (skip the whole group, or --allow-unportable to write it anyway)")
		}
	}
	for _, n := range skip.Names() {
		// Written in fp16, as the plain tensors are.
		t, err := set.Tensor(n + ".weight")
		if err != nil {
			return nil, err
		}
		if err := checkFP16Range(t); err != nil {
			r.Problems = append(r.Problems, "--skip-modules: "+err.Error())
		}
	}
	if o.Resume {
		if err := checkResume(o, cfg); err != nil {
			return nil, err
		}
	}
	var jobs []quantize.Job
	if o.RTN {
		o.Branches = rtnBranches(o.Branches)
	}
	for _, br := range o.Branches {
		qc := gptq.DefaultQuantizeConfig()
		qc.Bits, qc.GroupSize, qc.DescAct, qc.StaticGroups = br.Bits, br.GroupSize, br.DescAct, br.StaticGroups
		qc.DampPercent, qc.Sym, qc.CheckpointFormat = br.Damp, o.Sym, string(format)
		infos, err := Plan(cfg, withSkip(qc, skip))
		if err != nil {
			return nil, fmt.Errorf("branch %s: %w", br.Name, err)
		}
		pb := PlannedBranch{Branch: br, Dir: o.Out}
		if o.Table {
			pb.Dir = filepath.Join(o.Out, br.Name)
		}
		for _, t := range infos {
			pb.SizeBytes += int64(t.ByteSize())
		}
		pb.Rejected, pb.State = lostLoaders(qc, shapes), branchState(pb.Dir, br, o.RunOptions)
		if len(pb.Rejected) > 0 {
			// A single branch's group size is the --group flag's.
			gs := fmt.Sprintf("group size %d", br.GroupSize)
			if !o.Table {
				gs = fmt.Sprintf("--group %d", br.GroupSize)
			}
			msg := fmt.Sprintf("branch %s: %s: %s cannot load the result", br.Name, gs, strings.Join(pb.Rejected, ", "))
			if o.AllowUnportable {
				r.Warnings = append(r.Warnings, msg)
			} else {
				r.Problems = append(r.Problems, msg+" (use a group size of 32, 64 or 128 or -1, or --allow-unportable to write it anyway)")
			}
		}
		if pb.State != "complete" {
			r.DiskNeed += pb.SizeBytes
			jobs = append(jobs, quantize.Job{Name: br.Name, RTN: o.RTN, TrueSequential: o.TrueSequential, Skip: skip})
		}
		r.Branches = append(r.Branches, pb)
	}
	if o.GitRepo != "" {
		for _, b := range r.Branches {
			r.DiskNeed += b.SizeBytes // the repository holds each branch's files again
		}
	}
	if _, err := readTableRecord(o.Out); o.Resume && len(jobs) == 0 && (!o.Table || err != nil) {
		r.NothingToResume = true
	}
	S, T := o.NSamples, o.SeqLen
	if o.RTN {
		S, T = 0, 0
	}
	r.memory(cfg, set, o, S, T, jobs)
	if free, ok := diskFree(o.Out); ok {
		r.DiskFree = free
		if r.DiskNeed > free {
			r.Problems = append(r.Problems, fmt.Sprintf("the checkpoints need %s on disk but %s has %s free: free space or choose another --out",
				FormatSize(r.DiskNeed), existingParent(o.Out), FormatSize(free)))
		}
	}
	// The timing is real work: it runs only once every check above has
	// passed.
	if o.Estimate && len(r.Problems) == 0 && len(jobs) > 0 {
		if o.Log != nil {
			fmt.Fprintf(o.Log, "preflight: timing one layer on %s...\n", r.Device)
		}
		if err := r.estimate(ctx, set, cfg, o, jobs); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// checkReadable finds every floating-point tensor the run reads and checks
// its dtype (bind checks the shapes per layer), and the values of the
// plain tensors that the checkpoint holds in fp16 (checkFP16Range).
func checkReadable(set weights.Set, cfg *hfconfig.Config) error {
	plain := plainTensorNames(cfg)
	names := slices.Clone(plain)
	for li := range cfg.NumHiddenLayers {
		names = append(names, model.LayerTensorNames(cfg, li)...)
		for _, n := range model.LayerBiasNames(cfg, li) {
			// (written in fp16 beside the module's GPTQ tensors; a llama
			// config's attention_bias may have none, written as zeros)
			if _, err := set.Tensor(n); err == nil || cfg.ModelType == "qwen2" || cfg.ModelType == "qwen2_moe" {
				names = append(names, n)
				plain = append(plain, n)
			}
		}
	}
	infos := map[string]safetensors.TensorInfo{}
	for _, ti := range set.Infos() {
		infos[ti.Name] = ti
	}
	for _, n := range names {
		// The dtype and shape are the listing's; the data is read only
		// for the plain tensors' range check, or for an error's file (an
		// ExpertSet's per-expert weights are transposed copies: a pass
		// over them all would cost minutes).
		t := safetensors.Tensor{TensorInfo: infos[n]}
		if t.Name != n || slices.Contains(plain, n) {
			var err error
			if t, err = set.Tensor(n); err != nil {
				return fmt.Errorf("quantize: %w", err)
			}
		}
		file := func() string {
			if t.File == "" {
				if ft, err := set.Tensor(n); err == nil {
					return ft.File
				}
			}
			return t.File
		}
		switch t.DType {
		case safetensors.F32, safetensors.F16, safetensors.BF16:
		default:
			return fmt.Errorf("quantize: %s: tensor %q is %s, want F32, F16 or BF16", file(), n, t.DType)
		}
		if want := model.WantShape(n, cfg, nil); want != nil && !slices.Equal(t.Shape, want) {
			return fmt.Errorf("quantize: %s: tensor %q: shape %v, want %v from %s (hidden_size %d, vocab_size %d, intermediate_size %d)",
				file(), n, t.Shape, want, cfg.File, cfg.HiddenSize, cfg.VocabSize, cfg.IntermediateSize)
		}
		if slices.Contains(plain, n) {
			if err := checkFP16Range(t); err != nil {
				return fmt.Errorf("quantize: %w", err)
			}
		}
	}
	return nil
}

// plainTensorNames lists the tensors a GPTQ checkpoint of cfg keeps
// unquantized (spec §1.6): the embedding, the norms and the untied head,
// which Checkpoint writes in fp16 whatever the source's dtype, as AutoGPTQ
// does (it loads the model in float16; vLLM's gptq runs fp16 alone).
func plainTensorNames(cfg *hfconfig.Config) []string {
	names := []string{"model.embed_tokens.weight", "model.norm.weight"}
	if !cfg.TieWordEmbeddings {
		names = append(names, "lm_head.weight")
	}
	for li := range cfg.NumHiddenLayers {
		names = append(names, model.LayerNormNames(cfg, li)...)
	}
	return names
}

// plainFrom returns the dtypes other than F16 of the plain tensors of set
// (plainTensorNames), lower case and sorted ("bf16"): those the checkpoint
// converts to fp16.
func plainFrom(set weights.Set, cfg *hfconfig.Config) []string {
	var out []string
	for _, n := range plainTensorNames(cfg) {
		if t, err := set.Tensor(n); err == nil && t.DType != safetensors.F16 {
			if d := strings.ToLower(string(t.DType)); !slices.Contains(out, d) {
				out = append(out, d)
			}
		}
	}
	slices.Sort(out)
	return out
}

// checkFP16Range refuses a BF16 or F32 tensor holding a finite value that
// fp16 cannot hold (magnitude 65520 or more rounds to Inf: fp16's largest
// is 65504): written in fp16 it would be ±Inf, and every logit after it
// NaN. It names the tensor, the count and the first such value, and reads
// the bytes in place (an embedding of 32000×4096 converts to no copy).
func checkFP16Range(t safetensors.Tensor) error {
	var size int
	var at func(i int) float32
	switch t.DType {
	case safetensors.BF16:
		size, at = 2, func(i int) float32 { return half.BF16ToF32(binary.LittleEndian.Uint16(t.Data[2*i:])) }
	case safetensors.F32:
		size, at = 4, func(i int) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:])) }
	default:
		return nil
	}
	n, first, firstV := 0, -1, float32(0)
	for i := range len(t.Data) / size {
		v := at(i)
		if a := math.Abs(float64(v)); a >= 65520 && !math.IsInf(a, 0) {
			if n == 0 {
				first, firstV = i, v
			}
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return fmt.Errorf("%s: tensor %q (%s): %d values beyond fp16's range (±65504), the first %g at element %d: a GPTQ checkpoint holds its non-quantized tensors in fp16 (as AutoGPTQ writes them, and GPTQ loaders run fp16), where they would be ±Inf",
		t.File, t.Name, t.DType, n, firstV, first)
}

// linearShapes lists the Linear modules of cfg's first `layers` layers
// (at most cfg.NumHiddenLayers; a mixture-of-experts layer's experts in
// place of its MLP), named in full, for gptq.Loaders.
func linearShapes(cfg *hfconfig.Config, layers int) []gptq.LinearShape {
	var shapes []gptq.LinearShape
	for li := range min(cfg.NumHiddenLayers, layers) {
		for _, m := range model.LayerModules(cfg, li) {
			K, N, _ := model.LinearShape(cfg, m)
			shapes = append(shapes, gptq.LinearShape{Name: model.LayerPrefix(li) + "." + m, K: K, N: N})
		}
	}
	return shapes
}

// lostLoaders names the loaders that would load the branch with group
// size 128 but not with its own: what the group size costs.
func lostLoaders(qc gptq.QuantizeConfig, shapes []gptq.LinearShape) []string {
	if qc.GroupSize == 128 || qc.GroupSize == -1 {
		return nil
	}
	ref := qc
	ref.GroupSize = 128
	base := gptq.Loaders(ref, shapes)
	var out []string
	for i, l := range gptq.Loaders(qc, shapes) {
		if !l.OK && base[i].OK {
			out = append(out, l.Loader)
		}
	}
	return out
}

// branchState says what a run will do with a branch's directory.
func branchState(dir string, br Branch, o RunOptions) string {
	if p, err := readProgress(PartialDir(dir)); err == nil && o.Resume {
		return fmt.Sprintf("resume at layer %d (%d of %d layers kept)", p.LayersDone, p.LayersDone, p.Layers)
	}
	if _, err := os.Stat(dir); err == nil {
		if o.Table && o.Resume {
			if rec, err := readTableRecord(filepath.Dir(dir)); err == nil && slices.Contains(rec.Done, filepath.Base(dir)) {
				return "complete"
			}
		}
		if ok, differs := completeCheckpoint(dir, br, o); o.Resume && ok && differs == "" {
			return "complete"
		}
		return "replace"
	}
	return "new"
}

// completeCheckpoint reports whether dir is a complete checkpoint that
// gptqtool wrote (no partial output beside it), and how its quantization
// options differ from branch br of the run o ("" where they do not):
// what --resume finds where a run was not interrupted.
func completeCheckpoint(dir string, br Branch, o RunOptions) (ok bool, differs string) {
	if _, err := os.Lstat(PartialDir(dir)); err == nil {
		return false, ""
	}
	if ours, _ := IsOurs(dir); !ours {
		return false, ""
	}
	qc, _, err := gptq.ReadQuantizeConfig(dir)
	if err != nil {
		return false, ""
	}
	o = o.normalized()
	if o.RTN {
		br.DescAct = false
	}
	var out []string
	for _, c := range []struct {
		key         string
		there, here any
	}{
		{"bits", qc.Bits, br.Bits}, {"group_size", qc.GroupSize, br.GroupSize}, {"desc_act", qc.DescAct, br.DescAct},
		{"damp_percent", qc.DampPercent, br.Damp}, {"static_groups", qc.StaticGroups, br.StaticGroups},
		{"sym", qc.Sym, o.Sym}, {"checkpoint_format", qc.CheckpointFormat, string(o.Format)},
		{"true_sequential", qc.TrueSequential, o.TrueSequential},
	} {
		if c.there != c.here {
			out = append(out, fmt.Sprintf("%s: %v there, %v now", c.key, c.there, c.here))
		}
	}
	if dataset, seqLen, ok := cardRow(dir, br.Name); ok {
		// What quantize_config.json does not record: the calibration
		// data (round to nearest's is none) and its sequence length.
		if dataset != o.DatasetName {
			out = append(out, fmt.Sprintf("dataset: %s there, %s now", dataset, o.DatasetName))
		}
		if o.SeqLen > 0 && seqLen != o.SeqLen {
			out = append(out, fmt.Sprintf("seq_len: %d there, %d now", seqLen, o.SeqLen))
		}
	}
	return true, strings.Join(out, ", ")
}

// cardRow reads the GPTQ dataset and Seq Len columns of branch name's row
// in the table of dir's model card (ModelCard); ok is false where the card
// has no such row.
func cardRow(dir, name string) (dataset string, seqLen int, ok bool) {
	card, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		return "", 0, false
	}
	for line := range strings.SplitSeq(string(card), "\n") {
		cols := strings.Split(line, " | ")
		// | Branch | Bits | GS | Act Order | Damp % | GPTQ dataset | Seq Len | Size | ExLlama | Description |
		if len(cols) != 10 || cols[0] != "| "+name {
			continue
		}
		n, err := strconv.Atoi(cols[6])
		if err != nil {
			return "", 0, false
		}
		return cols[5], n, true
	}
	return "", 0, false
}

// completeOutputs reports whether every output of the run o is a
// complete checkpoint of its options, refusing one of other options.
func completeOutputs(o RunOptions) (bool, error) {
	for _, br := range o.Branches {
		dir := o.Out
		if o.Table {
			dir = filepath.Join(o.Out, br.Name)
		}
		ok, differs := completeCheckpoint(dir, br, o)
		if !ok {
			return false, nil
		}
		if differs != "" {
			return false, fmt.Errorf("%s is a complete checkpoint of other options (%s): nothing to resume there: --force replaces it, or choose another --out", dir, differs)
		}
	}
	return len(o.Branches) > 0, nil
}

// checkResume refuses, before the samples exist, a --resume of partial
// outputs that cannot be resumed: made with other options or from other
// model files than this run's (compared by their values; the samples are
// compared once they exist), of another model or branch, or damaged
// (a record or shard file that is not what it says).
func checkResume(o PreflightOptions, cfg *hfconfig.Config) error {
	ro := o.RunOptions.normalized()
	ro.SeqLen = o.SeqLen // as the samples will have it
	var branchFP func(Branch) Fingerprint
	var tableFP Fingerprint
	fingerprints := func() error {
		if branchFP != nil {
			return nil
		}
		modelFP, err := ModelFingerprint(ro.ModelDir)
		if err != nil {
			return fmt.Errorf("quantize: %w", err)
		}
		branchFP, tableFP = ro.fingerprints(modelFP, "", o.NSamples)
		return nil
	}
	if ro.Table {
		if rec, err := readTableRecord(ro.Out); err == nil {
			if err := fingerprints(); err != nil {
				return err
			}
			if diff := rec.Fingerprint.diffBeforeSamples(tableFP); len(diff) > 0 {
				return fmt.Errorf("cannot resume the table in %s (%s): %s changed since: rerun with what it was made from, or --force to discard it", ro.Out, rec.describe(), strings.Join(diff, ", "))
			}
		}
	}
	for _, br := range ro.Branches {
		dir := ro.Out
		if ro.Table {
			dir = filepath.Join(ro.Out, br.Name)
		}
		tmp := PartialDir(dir)
		prev, err := readProgress(tmp)
		if _, serr := os.Lstat(tmp); err != nil && serr == nil && onlyPartialFiles(tmp) {
			// Ours (its files are a partial output's), but its record is
			// missing or not JSON: nothing says how far it got.
			return fmt.Errorf("cannot resume %s: the partial output is damaged: %v: --force discards it and starts again", tmp, err)
		}
		if err != nil {
			continue // none, or not ours (checkOut refused it)
		}
		if err := fingerprints(); err != nil {
			return err
		}
		if diff := prev.Fingerprint.diffBeforeSamples(branchFP(br)); len(diff) > 0 {
			return fmt.Errorf("cannot resume %s (%s): %s changed since: rerun with what it was made from, or --force to discard it", tmp, prev.describe(), strings.Join(diff, ", "))
		}
		if prev.Layers != cfg.NumHiddenLayers || prev.Branch != br.Name {
			return fmt.Errorf("cannot resume %s (%s): it is not this branch of this model (--force discards it)", tmp, prev.describe())
		}
		qc := gptq.DefaultQuantizeConfig()
		qc.Bits, qc.GroupSize, qc.DescAct, qc.StaticGroups = br.Bits, br.GroupSize, br.DescAct, br.StaticGroups
		qc.DampPercent, qc.Sym, qc.CheckpointFormat = br.Damp, ro.Sym, string(ro.Format)
		skip, err := ro.skip(cfg)
		if err != nil {
			return err
		}
		infos, err := Plan(cfg, withSkip(qc, skip))
		if err != nil {
			return fmt.Errorf("branch %s: %w", br.Name, err)
		}
		if err := safetensors.CheckResume(tmp, infos, writerOptions(qc, ro.MaxShardBytes), prev.Writer); err != nil {
			return fmt.Errorf("cannot resume %s (%s): the partial output is damaged: %v: --force discards it and starts again", tmp, prev.describe(), err)
		}
	}
	return nil
}

// checkOut applies Quantize's checks of the output directories (and of a
// partial output left by an interrupted run) without writing anything.
func (r *PreflightReport) checkOut(o RunOptions) error {
	if o.Table {
		if rec, err := readTableRecord(o.Out); err == nil {
			if !o.Resume && !o.Force {
				return fmt.Errorf("%s holds an interrupted table run (%s): --resume continues it, --force discards it", o.Out, rec.describe())
			}
			if o.Resume {
				return nil // fingerprints are compared once the samples exist
			}
		}
	}
	complete := false
	if o.Resume {
		var err error
		if complete, err = completeOutputs(o); err != nil {
			return err
		}
	}
	if !complete {
		if err := CheckOut(o.Out, o.ModelDir, o.Force); err != nil {
			return err
		}
	}
	dirs := []string{o.Out}
	if o.Table {
		dirs = dirs[:0]
		for _, br := range o.Branches {
			dirs = append(dirs, filepath.Join(o.Out, br.Name))
		}
	}
	for _, d := range dirs {
		tmp := PartialDir(d)
		if _, err := os.Lstat(tmp); err != nil {
			continue
		}
		// A run in progress first: its output is not an interrupted run.
		// (Only a lock that exists is tried: the preflight makes no file.)
		if _, err := os.Stat(filepath.Join(tmp, lockFile)); err == nil {
			if lock, err := lockDir(filepath.Join(tmp, lockFile)); errors.Is(err, errBusy) {
				return fmt.Errorf("%s is being written by another gptqtool run: wait for it, or choose another --out", tmp)
			} else if err == nil {
				lock.Close()
			}
		}
		prev, err := readProgress(tmp)
		switch {
		case err != nil && !o.Force && onlyPartialFiles(tmp) && o.Resume:
			// (checkResume says what is damaged.)
		case err != nil && !o.Force && onlyPartialFiles(tmp):
			return fmt.Errorf("%s holds a damaged partial output (%v): --force discards it", tmp, err)
		case err != nil && !o.Force:
			return fmt.Errorf("%s exists and is not a gptqtool partial output (%v): remove it, or choose another --out", tmp, err)
		case err == nil && !o.Resume && !o.Force:
			return fmt.Errorf("%s holds an interrupted run (%s): --resume continues it, --force discards it", tmp, prev.describe())
		}
	}
	if o.GitRepo != "" {
		if err := CheckOut(o.GitRepo, o.ModelDir, o.Force); err != nil {
			return fmt.Errorf("--git-repo: %w", err)
		}
		// (Checked again when the repository is made, after the run.)
		if _, err := exec.LookPath("git"); err != nil {
			return fmt.Errorf("--git-repo %s: %w (install git, or drop --git-repo)", o.GitRepo, err)
		}
		for _, br := range o.Branches {
			// git's own rules, asked of git: the repository is made after
			// the run, where a name it refuses would fail last.
			if out, err := exec.Command("git", "check-ref-format", "refs/heads/"+br.Name).CombinedOutput(); err != nil {
				return fmt.Errorf("--git-repo: branch %q is not a valid git branch name (git check-ref-format: %v%s): rename it, or drop --git-repo",
					br.Name, err, strings.TrimSpace(" "+string(out)))
			}
		}
	}
	return nil
}

// memory sizes host and device memory and compares them with what is free.
func (r *PreflightReport) memory(cfg *hfconfig.Config, set weights.Set, o PreflightOptions, S, T int, jobs []quantize.Job) {
	device := o.Solver != nil
	extra := []quantize.PlanPart{{What: "dataset (from its file sizes)", Bytes: 12 * o.DatasetBytes}}
	if o.RTN {
		extra = nil
	}
	var dp *quantize.DevicePlan
	if device && S > 0 {
		var err error
		if dp, err = quantize.PlanDeviceShape(set, cfg, o.Backend, o.Solver, S, T, o.Masked, jobs, o.ChunkRows, o.Activations); err != nil {
			r.Problems = append(r.Problems, err.Error())
			return
		}
		if dp.Host {
			// The device driver on the CPU: its tensors are host memory.
			extra = append(extra, dp.Parts...)
		}
	}
	workers := 1
	if th, ok := o.Backend.(interface{ Threads() int }); ok {
		workers = th.Threads()
	}
	hp := quantize.PlanHost(cfg, S, T, workers, jobs, device, extra)
	r.HostNeed, r.HostPeak = hp.Need, hp.Peak // what the run uses (reported)
	for _, p := range hp.Parts {
		r.HostParts = append(r.HostParts, planPart{p.What, p.Bytes})
	}
	// The tightest limit decides. Go's heap takes more address space than
	// memory (arena reservations, stacks, fragmentation): measured on
	// openchat-tiny, a run needs about 1.5× its memory plus 256 MB of
	// address space, so an address-space limit is compared with that.
	lim := hostLimits()
	need, peak, avail, limit := hp.Need, hp.Peak, lim.Available, lim.Binding
	what := fmt.Sprintf("%s of host memory (%s)", FormatSize(need), describeParts(hp.Parts))
	asNeed := func(n int64) int64 { return n + n/2 + 256<<20 }
	if lim.AddressSpace > 0 && (limit == "" || lim.AddressSpace-asNeed(need)+need < avail) {
		need, peak, avail, limit = asNeed(need), asNeed(peak), lim.AddressSpace, lim.AddressLimit
		what = fmt.Sprintf("%s of address space (1.5× its %s of memory plus 256 MB; %s)", FormatSize(need), FormatSize(hp.Need), describeParts(hp.Parts))
	}
	if limit != "" {
		r.HostFree, r.HostLimit = avail, limit
		switch {
		case need > avail:
			r.Problems = append(r.Problems, fmt.Sprintf("the run needs about %s but %s leaves %s: %s",
				what, limit, FormatSize(avail), memoryHint(o, S, T, device)))
		case peak > avail:
			// Fits only if the collector holds the heap near its live size.
			r.MemoryLimit = hp.Need + (avail-need)*hp.Need/need
		}
	}
	if dp == nil || dp.Host {
		return
	}
	r.DeviceNeed = dp.Need
	for _, p := range dp.Parts {
		r.DeviceParts = append(r.DeviceParts, planPart{p.What, p.Bytes})
	}
	if mr, ok := o.Backend.(quantize.MemoryReporter); ok {
		free, total := mr.Memory()
		if total > 0 {
			r.DeviceFree = free
		}
	}
	if err := dp.Check(o.Backend); err != nil {
		r.Problems = append(r.Problems, err.Error())
	}
}

func describeParts(parts []quantize.PlanPart) string {
	sorted := slices.Clone(parts)
	slices.SortStableFunc(sorted, func(a, b quantize.PlanPart) int { return int((b.Bytes - a.Bytes) >> 20) })
	var out []string
	for _, p := range sorted[:min(len(sorted), 4)] {
		out = append(out, fmt.Sprintf("%s %s", p.What, FormatSize(p.Bytes)))
	}
	return strings.Join(out, ", ")
}

func memoryHint(o PreflightOptions, S, T int, device bool) string {
	if S == 0 {
		return "free memory, or raise the limit"
	}
	hint := fmt.Sprintf("lower --nsamples (%d) or --seq-len (%d)", S, T)
	if !device {
		hint += ", use a GPU"
	}
	if o.Table && len(o.Branches) > 1 {
		hint += ", quantize fewer branches per run"
	}
	return hint + ", or raise the limit"
}

// estimate times a one-layer run of the first job's recipe on a few random
// samples and scales it: per layer and job, the solves, plus the forward
// and Hessian work per token (attention grows with the sequence, the rest
// does not).
func (r *PreflightReport) estimate(ctx context.Context, set weights.Set, cfg *hfconfig.Config, o PreflightOptions, jobs []quantize.Job) error {
	start := time.Now()
	one := *cfg
	one.NumHiddenLayers = 1
	S, T := o.NSamples, o.SeqLen
	// The CPU's cost per token is the same at 2K tokens as at 500K; a GPU
	// needs a real chunk of work (64K tokens, at full length) before its
	// per-token time stops falling.
	Tc := min(T, 512)
	Sc := max(1, min(S, 2048/max(Tc, 1)))
	if _, dev := o.Backend.(quantize.MemoryReporter); o.Solver != nil && dev {
		Tc = T
		Sc = max(1, min(S, 65536/max(Tc, 1)))
	}
	if o.RTN {
		S, T, Tc, Sc = 0, 0, 0, 0
	}
	rng := rand.New(rand.NewPCG(1, 2))
	samples := make([]quantize.Sample, Sc)
	for i := range samples {
		ids := make([]int, Tc)
		for t := range ids {
			ids[t] = rng.IntN(cfg.VocabSize)
		}
		samples[i] = quantize.Sample{IDs: ids}
	}
	br := o.Branches[0]
	opts := quantize.Options{Bits: br.Bits, GroupSize: br.GroupSize, Sym: o.Sym, ActOrder: br.DescAct, StaticGroups: br.StaticGroups,
		Damp: br.Damp, Fp16Scales: true, MSE: o.MSE, StaleGroupParams: o.ReferenceGroups}
	if o.MSE {
		d := quantize.DefaultOptions()
		opts.MSENorm, opts.MSEGrid, opts.MSEMaxShrink = d.MSENorm, d.MSEGrid, d.MSEMaxShrink
	}
	var stats quantize.Stats
	skip, err := o.skip(cfg) // (by name: layer 0's apply to the one layer)
	if err != nil {
		return err
	}
	job := quantize.Job{Name: "calibration", GPTQ: opts, TrueSequential: o.TrueSequential, RTN: o.RTN, Format: o.Format, Skip: skip}
	err = quantize.Run(ctx, set, &one, o.Backend, samples, []quantize.Job{job}, quantize.DriverOptions{
		Solver: o.Solver, ChunkRows: o.ChunkRows, Activations: o.Activations, Profile: true, Stats: &stats})
	if err != nil {
		return fmt.Errorf("timing one layer on this machine: %w", err)
	}
	if len(stats.Layers) != 1 {
		return fmt.Errorf("timing one layer on this machine: the driver reported %d layers", len(stats.Layers))
	}
	ph := stats.Layers[0].Phases
	perLayer := ph["load"] + ph["solve"] + ph["write"]
	if Sc > 0 {
		h, q := float64(cfg.HiddenSize), float64(cfg.NumAttentionHeads*cfg.HeadDim)
		kv, I := float64(cfg.NumKeyValueHeads*cfg.HeadDim), float64(cfg.IntermediateSize)
		lin := 2 * (h*(q+2*kv) + q*h + 3*h*I)
		grow := (lin + 2*float64(T)*q) / (lin + 2*float64(Tc)*q)
		tokens := float64(S) * float64(T) / (float64(Sc) * float64(Tc))
		perLayer += (ph["forward"]*grow + ph["hessian"]) * tokens
	}
	r.Seconds = perLayer * float64(cfg.NumHiddenLayers) * float64(len(jobs))
	if Sc > 0 {
		r.Seconds += stats.Phases["embed"] * float64(S) * float64(T) / (float64(Sc) * float64(Tc))
	}
	r.Basis = fmt.Sprintf("layer 0 timed on %d random samples × %d tokens here (%.1fs), scaled to %d layers × %d branches × %d×%d tokens; reading the dataset not included",
		Sc, Tc, time.Since(start).Seconds(), cfg.NumHiddenLayers, len(jobs), S, T)
	return nil
}

// Print renders the report for a terminal.
func (r *PreflightReport) Print(w io.Writer) {
	fmt.Fprintf(w, "plan: %s (%s parameters, %d layers) on %s", r.Model, humanCount(r.Params), r.Layers, r.Device)
	if r.Solver != "" {
		fmt.Fprintf(w, " (%s solver)", r.Solver)
	}
	fmt.Fprintln(w)
	if r.NSamples > 0 {
		fmt.Fprintf(w, "  calibration  %d samples × %d tokens\n", r.NSamples, r.SeqLen)
	}
	if len(r.PlainFrom) > 0 {
		fmt.Fprintf(w, "  tensors      non-quantized tensors written as fp16 (from %s), as AutoGPTQ writes them\n", strings.Join(r.PlainFrom, ", "))
	}
	for _, b := range r.Branches {
		gs := fmt.Sprint(b.GroupSize)
		if b.GroupSize == -1 {
			gs = "none"
		}
		fmt.Fprintf(w, "  branch %-28s %d-bit g%s act_order=%v damp=%g  %s  → %s (%s)\n", b.Name, b.Bits, gs, b.DescAct, b.Damp, FormatSize(b.SizeBytes), b.Dir, b.State)
	}
	avail := ""
	if r.HostLimit != "" {
		avail = fmt.Sprintf("; available %s (%s)", FormatSize(r.HostFree), r.HostLimit)
	}
	fmt.Fprintf(w, "  host memory  needs %s (%s)%s\n", FormatSize(r.HostNeed), describeParts(toParts(r.HostParts)), avail)
	if r.MemoryLimit > 0 {
		fmt.Fprintf(w, "               the run will hold its heap under %s (without a limit it would grow to %s)\n", FormatSize(r.MemoryLimit), FormatSize(r.HostPeak))
	}
	if r.DeviceNeed > 0 {
		free := ""
		if r.DeviceFree > 0 {
			free = fmt.Sprintf("; free %s", FormatSize(r.DeviceFree))
		}
		fmt.Fprintf(w, "  device       needs %s (%s)%s\n", FormatSize(r.DeviceNeed), describeParts(toParts(r.DeviceParts)), free)
	}
	disk := ""
	if r.DiskFree > 0 {
		disk = fmt.Sprintf("; free %s", FormatSize(r.DiskFree))
	}
	fmt.Fprintf(w, "  disk         needs %s%s\n", FormatSize(r.DiskNeed), disk)
	if r.Seconds > 0 {
		fmt.Fprintf(w, "  time         about %s (%s)\n", formatDuration(r.Seconds), r.Basis)
	}
	for _, m := range r.Warnings {
		fmt.Fprintf(w, "  warning      %s\n", m)
	}
	for _, m := range r.Problems {
		fmt.Fprintf(w, "  REFUSED      %s\n", m)
	}
}

func toParts(ps []planPart) []quantize.PlanPart {
	out := make([]quantize.PlanPart, len(ps))
	for i, p := range ps {
		out[i] = quantize.PlanPart{What: p.What, Bytes: p.Bytes}
	}
	return out
}

func formatDuration(s float64) string {
	switch {
	case s < 90:
		return fmt.Sprintf("%.0fs", s)
	case s < 5400:
		return fmt.Sprintf("%.0f min", s/60)
	}
	return fmt.Sprintf("%.1f h", s/3600)
}

func humanCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	}
	return fmt.Sprint(n)
}

// parentDir is filepath.Dir that stops at the root.
func parentDir(p string) string { return filepath.Dir(filepath.Clean(p)) }

// existingParent is the nearest existing directory at or above p.
func existingParent(p string) string {
	for {
		if _, err := os.Stat(p); err == nil || parentDir(p) == p {
			return p
		}
		p = parentDir(p)
	}
}

// memLimits is what hostLimits found.
type memLimits struct {
	Available    int64  // bytes this process may still use, tightest limit
	Binding      string // that limit, described
	AddressSpace int64  // bytes of address space left under RLIMIT_AS, 0 if unlimited
	AddressLimit string
}
