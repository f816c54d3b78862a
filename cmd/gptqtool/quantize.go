package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gptqtool/gptqtool/calibrate"
	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/publish"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/quantize/gpu"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/cuda"
	"github.com/gptqtool/gptqtool/runtime/model"
)

func init() { subcommands = append(subcommands, newQuantizeCmd) }

type quantizeFlags struct {
	model, out, device, branches, format string
	gitRepo                              string
	bits, group, threads                 int
	damp                                 float64
	actOrder, staticGroups, sym, trueSeq bool
	mse, rtn, refGroups, force, asJSON   bool
	resume, dryRun, allowUnportable      bool
	estimate                             bool
	maxShard                             string
	chunkRows                            int
	gpuMemory, activations               string
	skipModules                          string
	cal                                  calibrationFlags
}

func newQuantizeCmd() *cobra.Command {
	var f quantizeFlags
	cmd := &cobra.Command{
		RunE:  func(cmd *cobra.Command, args []string) error { return runQuantize(cmd, f, nil) },
		Use:   "quantize --model DIR --dataset FILE --out DIR [--bits 4 --group 128 --act-order --damp 0.1 | --branches LIST]",
		Short: "Quantize a checkpoint with GPTQ (one recipe, or a whole branch table in one run)",
		Long: `quantize runs GPTQ (IST-DASLab/AutoGPTQ algorithm, layer by layer, true-sequential)
over a Mistral/Llama checkpoint with calibration samples from --dataset, and writes a
checkpoint that AutoGPTQ, GPTQModel, transformers/optimum, ExLlama, vLLM and TGI load:
model.safetensors (sharded past --max-shard-size), config.json with quantization_config,
quantize_config.json, the tokenizer and generation files, and a model card.

With --branches (names of the published branch table such as main,gptq-4bit-32g-actorder_True,
"all" for the whole table, or a JSON file of custom rows) every branch is written to
OUT/<branch>/ in one run, sharing the model load, the calibration samples and the
layer-0 capture, plus OUT/README.md with the whole table.`,
		Args: exactArgs(0),
	}
	addQuantizeFlags(cmd, &f)
	return cmd
}

// addQuantizeFlags declares the flags of quantize (shared with bench quantize).
func addQuantizeFlags(cmd *cobra.Command, f *quantizeFlags) {
	fs := cmd.Flags()
	fs.StringVar(&f.model, "model", "", "the unquantized checkpoint directory (config.json, safetensors, tokenizer)")
	fs.StringVar(&f.out, "out", "", "output directory (refused if it exists, unless --force)")
	fs.IntVar(&f.bits, "bits", 4, "bits per weight: 2, 3, 4 or 8")
	fs.IntVar(&f.group, "group", 128, "group size: -1 (per channel), 32, 64, 128, ...")
	fs.BoolVar(&f.actOrder, "act-order", false, "quantize columns in order of decreasing Hessian diagonal (desc_act)")
	fs.BoolVar(&f.staticGroups, "static-groups", false, "fix group parameters before act-order permutation (trivial g_idx)")
	fs.Float64Var(&f.damp, "damp", 0.01, "dampening, as a fraction of the mean Hessian diagonal (AutoGPTQ damp_percent)")
	fs.BoolVar(&f.sym, "sym", true, "symmetric quantization (zero point 2^(bits-1)); --sym=false writes gptq_v2 zeros")
	fs.BoolVar(&f.trueSeq, "true-sequential", true, "quantize attention and MLP module groups in sequence within each layer")
	fs.BoolVar(&f.mse, "mse", false, "search a clipped scale per group minimizing |q-w|^2.4 (GPTQ's mse option)")
	fs.BoolVar(&f.refGroups, "reference-groups", false, "find the params of groups smaller than the 128-column block on the block-level weights, exactly as IST-DASLab GPTQ and AutoGPTQ do (default: on the error-updated weights, as the GPTQ paper's algorithm)")
	fs.BoolVar(&f.rtn, "rtn", false, "plain round-to-nearest instead of GPTQ (the baseline GPTQ is measured against; same format)")
	fs.StringVar(&f.branches, "branches", "", `write several branches to OUT/<branch>/: names from the published table, "all", or a .json file`)
	fs.StringVar(&f.gitRepo, "git-repo", "", "also write a bare git repository with each branch as a git branch of that name, as on the Hub (needs git)")
	fs.StringVar(&f.format, "checkpoint-format", "", "gptq (v1, default for sym) or gptq_v2 (default for --sym=false)")
	fs.StringVar(&f.maxShard, "max-shard-size", "4GB", "split model.safetensors into shards of at most this size (0 = never)")
	fs.StringVar(&f.device, "device", "auto", deviceHelp)
	fs.IntVar(&f.threads, "threads", 0, "CPU threads (0 = all cores)")
	fs.BoolVar(&f.force, "force", false, "replace the output directory if it exists (only what gptqtool wrote), discard an interrupted run's partial output")
	fs.BoolVar(&f.dryRun, "dry-run", false, "check and plan the run (sizes, memory against what is free, disk, estimated time), print the plan and stop")
	fs.BoolVar(&f.estimate, "estimate", true, "time one layer on this machine before the run to estimate its time (false skips it)")
	fs.BoolVar(&f.allowUnportable, "allow-unportable", false, "write group sizes, or --skip-modules skipping part of q/k/v or gate/up, that some loaders cannot load (they are named in a warning instead of refusing the run)")
	fs.StringVar(&f.skipModules, "skip-modules", "", `leave these Linear modules unquantized (fp16), comma-separated: exact names (model.layers.0.mlp.down_proj) or re:REGEX matching the whole name; written as GPTQModel's dynamic "-:" rules`)
	fs.BoolVar(&f.resume, "resume", false, "continue an interrupted run from its last complete layer (same model, dataset and options; the result is byte-identical)")
	fs.BoolVar(&f.asJSON, "json", false, "print a JSON summary")
	fs.StringVar(&f.gpuMemory, "gpu-memory", "", "GPU: cap the device memory used, e.g. 16GiB (as on a smaller card); the job is refused up front if it cannot fit")
	fs.StringVar(&f.activations, "activations", "auto", "calibration activation dtype: auto (on cuda the checkpoint's, bf16 for openchat; f32 on the cpu), f32, f16 or bf16 (on the cpu: the GPU's forward and Hessians in that dtype, emulated; the host solver solves)")
	fs.IntVar(&f.chunkRows, "chunk-rows", 0, "GPU (and --activations f16|bf16 on the cpu): rows of one calibration chunk (0 = automatic, about 2 GiB of scratch)")
	addCalibrationFlags(fs, &f.cal)
}

// gpuFigures are a CUDA backend's device and memory statistics.
type gpuFigures struct {
	device string
	mem    cuda.MemStats
}

// quantizeRun is what bench quantize learns from a run.
type quantizeRun struct {
	summary     *publish.Summary
	stats       quantize.Stats
	calibrateS  float64
	backendName string
	calibration calibrate.Stats
	// gpu is the CUDA backend's device and memory figures, read before the
	// backend is closed (nil on the CPU).
	gpu *gpuFigures
	// solverPhases are the device solver's own phases (its share of solve).
	solverPhases map[string]float64
}

// runQuantize runs the quantize command; with bench set it profiles the
// run (phases synchronised) and returns what it measured instead of
// printing the summary.
func runQuantize(cmd *cobra.Command, f quantizeFlags, bench *quantizeRun) error {
	if f.model == "" {
		return usageError{errors.New("--model is required")}
	}
	if f.out == "" {
		return usageError{errors.New("--out is required")}
	}
	if f.resume && f.force {
		return usageError{errors.New("--resume continues an interrupted run, --force discards it: choose one")}
	}
	if f.rtn && f.actOrder {
		// Round to nearest has no column order (a table's act-order rows
		// are written without it, as their RTN baseline).
		return usageError{errors.New("--rtn has no column order to choose: --act-order (desc_act) would be dropped: choose one")}
	}
	maxShard, err := parseShardSize(f.maxShard)
	if err != nil {
		return usageError{fmt.Errorf("--max-shard-size: %w", err)}
	}
	format := gptq.FormatV1
	switch {
	case f.format != "":
		format = gptq.Format(f.format)
		if format != gptq.FormatV1 && format != gptq.FormatV2 {
			return usageError{fmt.Errorf("--checkpoint-format %q: want gptq or gptq_v2", f.format)}
		}
		if !f.sym && format == gptq.FormatV1 {
			// v1 stores zero-1: an asymmetric zero of 0 cannot be written (spec §1.4).
			return usageError{errors.New("--sym=false needs --checkpoint-format gptq_v2: the gptq (v1) format cannot store a zero point of 0")}
		}
	case !f.sym:
		// v1 stores zero-1 and cannot hold an asymmetric zero of 0 (spec §1.4).
		format = gptq.FormatV2
	}
	var branches []publish.Branch
	// An explicitly empty --branches (a variable that expanded to nothing)
	// is refused, not run as one quantization of --bits/--group.
	table := f.branches != "" || cmd.Flags().Changed("branches")
	if table && strings.Trim(f.branches, ", \t") == "" {
		return usageError{fmt.Errorf("--branches %q: no branch named: want branch names from the published table (e.g. main,gptq-4bit-32g-actorder_True), \"all\", or a .json file; leave the flag out for one quantization of --bits/--group", f.branches)}
	}
	if table {
		if cmd.Flags().Changed("bits") || cmd.Flags().Changed("group") || cmd.Flags().Changed("act-order") || cmd.Flags().Changed("damp") {
			return usageError{errors.New("--branches sets bits, group, act order and damp per branch: drop --bits/--group/--act-order/--damp")}
		}
		if branches, err = publish.ParseBranches(f.branches); err != nil {
			return usageError{err}
		}
	} else {
		b := publish.Branch{Name: filepath.Base(filepath.Clean(f.out)), Bits: f.bits, GroupSize: f.group, DescAct: f.actOrder, Damp: f.damp, StaticGroups: f.staticGroups}
		b.Description = fmt.Sprintf("%d-bit, group size %d, act order %v", f.bits, f.group, f.actOrder)
		branches = []publish.Branch{b}
	}
	for i := range branches {
		branches[i].StaticGroups = branches[i].StaticGroups || f.staticGroups
		if err := (quantize.Options{Bits: branches[i].Bits, GroupSize: branches[i].GroupSize, Damp: branches[i].Damp}).Validate(1); err != nil {
			if !table {
				return usageError{fmt.Errorf("--bits %d --group %d --damp %g: %w", f.bits, f.group, f.damp, err)}
			}
			return usageError{fmt.Errorf("branch %s: %w", branches[i].Name, err)}
		}
	}
	var gpuLimit int64
	if f.gpuMemory != "" {
		if gpuLimit, err = parseSize(f.gpuMemory); err != nil || gpuLimit <= 0 {
			return usageError{fmt.Errorf("--gpu-memory %q: want a size such as 16GiB", f.gpuMemory)}
		}
	}
	switch f.activations {
	case "auto", "f32", "f16", "bf16":
	default:
		return usageError{fmt.Errorf("--activations %q: want auto, f32, f16 or bf16", f.activations)}
	}
	if f.chunkRows < 0 {
		return usageError{fmt.Errorf("--chunk-rows %d: want 0 (automatic) or more", f.chunkRows)}
	}
	halfOnCPU := f.activations == "f16" || f.activations == "bf16"
	if f.device == "cpu" {
		// Flags of the device driver, which a CPU run would ignore.
		if f.gpuMemory != "" {
			return usageError{fmt.Errorf("--gpu-memory %s caps a GPU's memory: --device cpu uses none (the preflight checks host memory)", f.gpuMemory)}
		}
		if f.chunkRows > 0 && !halfOnCPU {
			return usageError{fmt.Errorf("--chunk-rows %d sizes the chunks of the GPU driver (or of --activations f16|bf16 on the cpu): the cpu's fp32 driver has none", f.chunkRows)}
		}
	}
	if err := checkDeviceFlags(f.device, f.threads); err != nil {
		return err
	}
	var skipList []string
	if cmd.Flags().Changed("skip-modules") {
		if skipList = quantize.SplitSkipList(f.skipModules); len(skipList) == 0 {
			return usageError{fmt.Errorf("--skip-modules %q: no module named: want module names or re:REGEX, comma-separated", f.skipModules)}
		}
		skip, err := publish.ResolveSkip(f.model, skipList)
		switch {
		case errors.Is(err, quantize.ErrSkip):
			return usageError{fmt.Errorf("--skip-modules: %w", err)}
		case err != nil:
			return err // the model's config
		}
		if partial := skip.PartialFused(); len(partial) > 0 && !f.allowUnportable {
			return usageError{fmt.Errorf("--skip-modules: %s: vLLM cannot load that: skip the whole group, or --allow-unportable to write it anyway", strings.Join(partial, "; "))}
		}
	}
	log := cmd.ErrOrStderr()
	// Every flag is checked before the backend starts, and everything else
	// that can be checked before the dataset is read, in the preflight,
	// before it times a layer.
	needData := !f.rtn || len(f.cal.datasets) > 0 // round to nearest needs no data
	if !needData {
		var given []string
		for _, name := range []string{"nsamples", "seq-len", "seed", "mode", "dataset-format", "text-column", "template", "chat-template", "system-messages"} {
			if cmd.Flags().Changed(name) {
				given = append(given, "--"+name)
			}
		}
		if len(given) > 0 {
			return usageError{fmt.Errorf("--rtn without --dataset reads no calibration data: %s would do nothing (drop them, or pass --dataset)", strings.Join(given, ", "))}
		}
	}
	var copts calibrate.Options
	var datasetBytes int64
	if needData {
		if copts, err = f.cal.options(f.model, log); err != nil {
			return err
		}
		files, err := calibrate.ResolvePaths(copts.Paths)
		if err != nil {
			return err
		}
		for _, file := range files {
			if st, err := os.Stat(file); err == nil {
				datasetBytes += st.Size()
			}
		}
	}
	backend, err := newBackendLimit(f.device, f.threads, gpuLimit, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	defer closeBackend(backend)
	solver := solverFor(backend, bench != nil)
	if _, ok := backend.(*cpu.Backend); ok && f.device != "cpu" {
		// --device auto fell back to the cpu: say what it ignores.
		if f.gpuMemory != "" {
			fmt.Fprintf(log, "warning: --gpu-memory %s ignored: running on the cpu\n", f.gpuMemory)
		}
		if f.chunkRows > 0 && !halfOnCPU {
			fmt.Fprintf(log, "warning: --chunk-rows %d ignored: the cpu's fp32 driver has no chunks\n", f.chunkRows)
		}
	}
	if cb, ok := backend.(*cpu.Backend); ok && halfOnCPU {
		// The device driver on the host: activations rounded where the
		// CUDA kernels round them, the host solver on its Hessians.
		backend, solver = cb.WithHalf(), quantize.HostSolver{}
		fmt.Fprintf(log, "device: cpu, %s activations emulated as the GPU computes them\n", f.activations)
	}

	ctx, stop := interruptible(cmd.Context())
	defer stop()
	ro := publish.RunOptions{
		ModelDir: f.model, Out: f.out, Branches: branches, Table: table, GitRepo: f.gitRepo,
		Sym: f.sym, TrueSequential: f.trueSeq, MSE: f.mse, RTN: f.rtn, ReferenceGroups: f.refGroups, Format: format, SkipModules: skipList,
		DatasetName:   datasetName(f.cal.datasets),
		MaxShardBytes: maxShard, Force: f.force, Resume: f.resume, Backend: backend, Solver: solver,
		ChunkRows: f.chunkRows, Activations: f.activations, Profile: bench != nil,
		Command: "gptqtool " + strings.Join(os.Args[1:], " "), Version: version,
	}
	pre := publish.PreflightOptions{RunOptions: ro, AllowUnportable: f.allowUnportable, Estimate: f.estimate && bench == nil, DatasetBytes: datasetBytes}
	pre.Log = log // says when the timing starts
	if needData {
		pre.NSamples, pre.SeqLen, pre.Masked = copts.NSamples, copts.SeqLen, copts.Mode == calibrate.ModeRecord
		if pre.SeqLen == 0 {
			pre.SeqLen = calibrate.DefaultSeqLen
			if copts.MaxPositions > 0 {
				pre.SeqLen = min(pre.SeqLen, copts.MaxPositions)
			}
		}
	}
	report, err := publish.Preflight(ctx, pre)
	if err != nil {
		return err
	}
	if f.dryRun {
		if f.asJSON {
			if err := writeJSON(cmd.OutOrStdout(), report); err != nil {
				return err
			}
		} else {
			report.Print(cmd.OutOrStdout())
		}
		return report.Err()
	}
	report.Print(log)
	if err := report.Err(); err != nil {
		return err
	}
	if report.NothingToResume {
		fmt.Fprintf(log, "%s is already complete: nothing left to resume\n", f.out)
		if bench != nil {
			return nil
		}
		ro.SeqLen = pre.SeqLen
		// (No dataset was read: "calibration" is null.)
		return printQuantizeSummary(cmd.OutOrStdout(), f, nil, publish.CompleteSummary(ro))
	}
	if report.MemoryLimit > 0 {
		// The job fits only if the collector keeps the heap near its live
		// size.
		debug.SetMemoryLimit(report.MemoryLimit)
	}
	calStart := time.Now()
	ds := &calibrate.Dataset{}
	if needData {
		if ds, err = loadDataset(copts); err != nil {
			return err
		}
	}
	ro.Samples, ro.SeqLen = quantize.SamplesOf(ds.Samples), ds.SeqLen
	calSeconds := time.Since(calStart).Seconds()
	bar := newProgress(log, "quantize", 1)
	if bench != nil {
		ro.Stats = &bench.stats
	}
	ro.Log = progressLog{bar, log}
	// Each layer's modules, cumulative (a mixture-of-experts layer has its
	// experts'), for the layer a module count falls in; a config that
	// does not load leaves the count by dense layers (the run reports it).
	var ends []int
	if cfg, err := hfconfig.Load(f.model); err == nil {
		n := 0
		for li := range cfg.NumHiddenLayers {
			n += len(model.LayerModules(cfg, li))
			ends = append(ends, n)
		}
	}
	ro.Progress = func(job string, done, total int) {
		bar.describe(fmt.Sprintf("%s layer %s", job, layerOfModules(ends, done, total)))
		bar.set(done, total)
	}
	sum, err := publish.Quantize(ctx, ro)
	bar.finish()
	if err != nil {
		var se *publish.SuspendedError
		switch {
		case ctx.Err() != nil && errors.As(err, &se):
			return fmt.Errorf("interrupted; kept for --resume: %s (rerun the same command with --resume to continue)", strings.Join(se.Kept, ", "))
		case ctx.Err() != nil:
			return fmt.Errorf("interrupted before any layer was complete: nothing was left in %s", f.out)
		case errors.As(err, &se):
			return fmt.Errorf("%w (rerun the same command with --resume to continue)", err)
		}
		return err
	}
	if bench != nil {
		bench.summary, bench.calibrateS, bench.backendName, bench.calibration = sum, calSeconds, backend.Name(), ds.Stats
		if cb, ok := backend.(*cuda.Backend); ok {
			bench.gpu = &gpuFigures{device: cb.Device(), mem: cb.MemStats()}
		}
		if gs, ok := solver.(*gpu.Solver); ok {
			bench.solverPhases = gs.Phases
		}
		return nil
	}
	return printQuantizeSummary(cmd.OutOrStdout(), f, ds.Stats, sum)
}

// printQuantizeSummary prints a run's summary on w: one JSON document
// with --json (stats are the calibration's, a calibrate.Stats or nil),
// else a line per branch.
func printQuantizeSummary(w io.Writer, f quantizeFlags, stats any, sum *publish.Summary) error {
	if f.asJSON {
		return writeJSON(w, map[string]any{"calibration": stats, "summary": sum})
	}
	for _, b := range sum.Branches {
		fmt.Fprintf(w, "%s\t%s\t%d-bit g%d act_order=%v damp=%g\t%s\t%.1fs\n", b.Name, b.Dir, b.Bits, b.GroupSize, b.DescAct, b.Damp, publish.FormatSize(b.SizeBytes), b.Seconds)
	}
	fmt.Fprintf(w, "done in %.1fs\n", sum.Seconds)
	return nil
}

// progressLog writes log lines above the progress bar.
type progressLog struct {
	bar *progress
	w   io.Writer
}

func (p progressLog) Write(b []byte) (int, error) {
	if p.bar.bar != nil {
		p.bar.bar.Clear()
	}
	return p.w.Write(b)
}

// datasetName names the calibration data in the model card.
func datasetName(paths []string) string {
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	return strings.Join(names, ", ")
}

// parseShardSize reads --max-shard-size as transformers'
// convert_file_size_to_int (utils/hub.py) reads max_shard_size: GB, MB and KB
// are powers of ten, GiB, MiB and KiB powers of two (either in any case), and
// a lowercase final "b" after GB, MB or KB means bits, so "5Gb" is 5·10^9/8
// bytes. A plain byte count is read too, 0 meaning one file.
func parseShardSize(in string) (int64, error) {
	n, err := parseSize(in)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(in)
	if u := strings.ToUpper(s); strings.HasSuffix(s, "b") && !strings.HasSuffix(u, "IB") &&
		(strings.HasSuffix(u, "GB") || strings.HasSuffix(u, "MB") || strings.HasSuffix(u, "KB")) {
		if n /= 8; n == 0 {
			return 0, fmt.Errorf("%q: less than a byte: want a size such as 4GB, 500MB or 0", in)
		}
	}
	return n, nil
}

// parseSize reads sizes like 4GB, 500MB, 2GiB or a plain byte count.
func parseSize(in string) (int64, error) {
	s := strings.TrimSpace(strings.ToUpper(in))
	units := []struct {
		suffix string
		mult   int64
	}{{"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v >= 0) || math.IsInf(v, 0) || v*float64(mult) > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q: want a size such as 4GB, 500MB or 0", in)
	}
	if n := int64(v * float64(mult)); n > 0 || v == 0 {
		return n, nil
	}
	// (0.5 bytes would truncate to 0, which means something else.)
	return 0, fmt.Errorf("%q: less than a byte: want a size such as 4GB, 500MB or 0", in)
}

// layerOfModules says which layer the done-th module of a run falls in, as
// "i/n": ends are each layer's cumulative module counts (nil: dense layers
// of model.LinearModules each), repeated for every job of a run whose
// total counts several.
func layerOfModules(ends []int, done, total int) string {
	if len(ends) == 0 || ends[len(ends)-1] == 0 || total%ends[len(ends)-1] != 0 {
		per := len(model.LinearModules)
		return fmt.Sprintf("%d/%d", min(done/per+1, total/per), total/per)
	}
	perJob := ends[len(ends)-1]
	jobs := total / perJob
	n := len(ends) * jobs
	j, r := done/perJob, done%perJob
	li := sort.SearchInts(ends, r+1) // the first layer whose modules reach past r
	return fmt.Sprintf("%d/%d", min(j*len(ends)+li+1, n), n)
}
