package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/runtime/cuda"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/verify"
)

// speedFlags are the flags bench decode and bench prefill share.
type speedFlags struct {
	model, device, dtype string
	threads              int
	ceiling              float64
}

func (f *speedFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.model, "model", "", "checkpoint directory (fp16/bf16/fp32 or GPTQ)")
	fs.StringVar(&f.device, "device", "auto", deviceHelp)
	fs.StringVar(&f.dtype, "dtype", "auto", dtypeHelp)
	fs.IntVar(&f.threads, "threads", 0, "CPU threads (0 = all cores)")
	fs.Float64Var(&f.ceiling, "ceiling", 4.24e12, "the device's memory bandwidth in bytes/s, for the ratio to the ceiling (4.24e12: this project's H200, measured copy)")
	cmd.MarkFlagRequired("model")
}

// checkContext refuses, before the model loads, n positions (what says
// which flags make them) past the model's max_position_embeddings: a usage
// error naming the flags, n, the limit and its config.json, as serve's
// --max-len and verify's --ctx are. Positions the model never saw measure
// a run no server of the model makes.
func (f *speedFlags) checkContext(n int, what string) error {
	cfg, err := hfconfig.Load(f.model)
	if err != nil {
		return err
	}
	if limit := cfg.MaxPositionEmbeddings; limit > 0 && n > limit {
		return usageError{fmt.Errorf("%s exceeds the model's max_position_embeddings %d (%s)", what, limit, cfg.File)}
	}
	return nil
}

// load opens the backend and the model and returns the fields every
// speed report starts with.
func (f *speedFlags) load(cmd *cobra.Command) (*model.Model, map[string]any, error) {
	start := time.Now()
	b, err := newBackend(f.device, f.threads, cmd.ErrOrStderr())
	if err != nil {
		return nil, nil, err
	}
	// (The RoPE table of max_position_embeddings, as serve's default: its
	// values do not change the speed.)
	m, err := loadModel(f.model, b, f.dtype, 0)
	if err != nil {
		return nil, nil, err
	}
	out := map[string]any{
		"command":           "gptqtool " + strings.Join(os.Args[1:], " "),
		"model":             f.model,
		"backend":           b.Name(),
		"dtype":             m.DType().String(),
		"step_weight_bytes": m.StepBytes(),
		// The backend and the model ready, weights on the device.
		"load_s": time.Since(start).Seconds(),
	}
	if cb, ok := b.(*cuda.Backend); ok {
		out["device"] = cb.Device()
	}
	if s := runtimeSettings(os.Environ()); len(s) > 0 {
		out["settings"] = s
	}
	return m, out, nil
}

// runtimeSettings are the GPTQTOOL_ variables of env that change how the
// runtime runs (its switches, README "generate"), as NAME=value, sorted:
// a report says which build of the step it measured. The kernel cache's
// folder and the fixtures' are left out.
func runtimeSettings(env []string) []string {
	var s []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "GPTQTOOL_") && name != "GPTQTOOL_KERNEL_CACHE" && name != "GPTQTOOL_FIXTURES" {
			s = append(s, kv)
		}
	}
	slices.Sort(s)
	return s
}

// run loads the model, measures it and prints the report: the fields of
// load, the measure's runs and the device's memory peaks.
func (f *speedFlags) run(cmd *cobra.Command, measure func(*model.Model) (any, error)) error {
	m, out, err := f.load(cmd)
	if err != nil {
		return err
	}
	defer m.Close()
	runs, err := measure(m)
	if err != nil {
		return err
	}
	out["runs"] = runs
	if cb, ok := m.Backend().(*cuda.Backend); ok {
		// GPTQTOOL_TRACE: the kernel timeline of the runs.
		if err := cb.WriteTrace(); err != nil {
			return err
		}
		s := cb.MemStats()
		out["peak_gpu_in_use_bytes"] = s.PeakInUse
		out["peak_gpu_reserved_bytes"] = s.PeakReserved
		out["peak_gpu_device_used_bytes"] = s.PeakDeviceUsed
	}
	return writeJSON(cmd.OutOrStdout(), out)
}

func newBenchDecodeCmd() *cobra.Command {
	var f speedFlags
	var o verify.DecodeOptions
	cmd := &cobra.Command{
		Use:   "decode --model DIR [--batch 1,8] [--prompt 128] [--new 256]",
		Short: "Greedy decode speed at several batch sizes: tok/s, step time, the ratio to the bandwidth ceiling",
		Long: `bench decode loads the model, prefills --batch random prompts of --prompt tokens and decodes
--new tokens for each, one step for the whole batch at a time, and prints one JSON document: per batch
size the decode tokens per second (all sequences), the step time, and the weight bytes a step reads over
the step time as a fraction of --ceiling; with the peak device memory and the runtime's GPTQTOOL_
settings in effect.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := positive("--batch", o.Batch...); err != nil {
				return err
			}
			if err := positive("--prompt", o.Prompt); err != nil {
				return err
			}
			if err := positive("--new", o.New); err != nil {
				return err
			}
			if err := f.checkContext(o.Prompt+o.New, fmt.Sprintf("--prompt %d + --new %d = %d tokens", o.Prompt, o.New, o.Prompt+o.New)); err != nil {
				return err
			}
			o.Ceiling = f.ceiling
			return f.run(cmd, func(m *model.Model) (any, error) { return verify.DecodeBench(m, o) })
		},
	}
	f.register(cmd)
	fs := cmd.Flags()
	fs.IntSliceVar(&o.Batch, "batch", []int{1, 8}, "batch sizes")
	fs.IntVar(&o.Prompt, "prompt", 128, "prompt tokens per sequence")
	fs.IntVar(&o.New, "new", 256, "tokens generated per sequence (--prompt + --new at most the model's max_position_embeddings)")
	fs.Uint64Var(&o.Seed, "seed", 0, "seed of the random prompts")
	fs.BoolVar(&o.Ahead, "ahead", aheadDefault(), "issue each step before the previous step's tokens are read, as serve does (GPTQTOOL_AHEAD=0 turns the default off)")
	return cmd
}

// positive refuses, before the model loads, a flag's value (each of a
// list's) below 1, or an empty list, as a usage error naming the flag.
func positive(flag string, v ...int) error {
	if len(v) == 0 {
		return usageError{fmt.Errorf("%s: give at least one value", flag)}
	}
	for _, n := range v {
		if n < 1 {
			return usageError{fmt.Errorf("%s %d: want 1 or more", flag, n)}
		}
	}
	return nil
}

// aheadDefault is the default of --ahead: on, unless GPTQTOOL_AHEAD=0 (so
// that a benchmark's settings can switch it off).
func aheadDefault() bool { return os.Getenv("GPTQTOOL_AHEAD") != "0" }

func newBenchPrefillCmd() *cobra.Command {
	var f speedFlags
	var lengths []int
	var repeat int
	cmd := &cobra.Command{
		Use:   "prefill --model DIR [--prompts 128,512,2048,4096] [--repeat 3]",
		Short: "Prefill speed and time to first token for prompts of several lengths",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := positive("--prompts", lengths...); err != nil {
				return err
			}
			if err := positive("--repeat", repeat); err != nil {
				return err
			}
			longest := slices.Max(lengths)
			if err := f.checkContext(longest, fmt.Sprintf("--prompts %d", longest)); err != nil {
				return err
			}
			return f.run(cmd, func(m *model.Model) (any, error) { return verify.PrefillBench(m, lengths, repeat, 0) })
		},
	}
	f.register(cmd)
	cmd.Flags().IntSliceVar(&lengths, "prompts", []int{128, 512, 2048, 4096}, "prompt lengths in tokens (each at most the model's max_position_embeddings)")
	cmd.Flags().IntVar(&repeat, "repeat", 3, "timed runs per length (the median is reported)")
	return cmd
}
