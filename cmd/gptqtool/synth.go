package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/synth"
)

func init() { subcommands = append(subcommands, newSynthCmd) }

func newSynthCmd() *cobra.Command {
	var o synth.Options
	var asJSON, actOrder bool
	var bits, group int
	cmd := &cobra.Command{
		Use:   "synth --config DIR --tokenizer DIR --out DIR [--layers N] [--dtype bf16] [--seed S] [--bits 2|3|4|8 --group 128 --act-order]",
		Short: "Write a random-weight checkpoint of a real model's shape (for benchmarks)",
		Long: `synth writes a checkpoint with the config of --config (config.json, generation_config.json),
the tokenizer files of --tokenizer and random weights of that shape, sharded like the Hugging Face
repository (three safetensors shards and an index by default), at disk speed. Weights are drawn with
statistics close to a trained model's (Linear std 0.9/sqrt(in), mildly heavy tails, norms near 1),
so GPTQ has real work to do; speed and memory do not depend on the values.

With --bits the Linear modules are written already quantized: a GPTQ checkpoint (v1, sym, --group,
--act-order with one random processing order per input, as GPTQ's Hessians give) of random codes
whose dequantized weights have the float synth's spread, the other tensors in f16; for runtime
benchmarks that need no float checkpoint and no calibration.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.ConfigDir == "" || o.Out == "" {
				return usageError{errors.New("--config and --out are required")}
			}
			if o.Layers < 0 {
				return usageError{fmt.Errorf("--layers %d: want 0 (the config's) or more", o.Layers)}
			}
			if o.Shards < 1 {
				return usageError{fmt.Errorf("--shards %d: want 1 or more", o.Shards)}
			}
			switch o.DType {
			case "bf16", "f16", "f32":
			default:
				return usageError{fmt.Errorf("--dtype %q: want bf16, f16 or f32", o.DType)}
			}
			if bits != 0 {
				q := gptq.DefaultQuantizeConfig()
				q.Bits, q.GroupSize, q.DescAct = bits, group, actOrder
				if err := q.Validate(); err != nil {
					return usageError{err}
				}
				if cmd.Flags().Changed("dtype") && o.DType != "f16" {
					return usageError{fmt.Errorf("--dtype %s with --bits: a GPTQ checkpoint's other tensors are f16", o.DType)}
				}
				o.DType, o.GPTQ = "f16", &q
			} else if cmd.Flags().Changed("group") || actOrder {
				return usageError{errors.New("--group and --act-order describe a GPTQ checkpoint: give --bits too")}
			}
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			start := time.Now()
			sum, err := synth.Write(ctx, o)
			if err != nil && ctx.Err() != nil {
				return fmt.Errorf("interrupted: nothing was left for %s (it is written under a temporary name, removed)", o.Out)
			}
			if err != nil {
				return err
			}
			secs := time.Since(start).Seconds()
			w := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(w, map[string]any{"summary": sum, "seconds": secs, "bytes_per_second": float64(sum.Bytes) / secs})
			}
			fmt.Fprintf(w, "%s: %d tensors, %d parameters, %d shards, %.2f GB in %.1fs (%.2f GB/s)\n",
				sum.Out, sum.Tensors, sum.Parameters, sum.Shards, float64(sum.Bytes)/1e9, secs, float64(sum.Bytes)/1e9/secs)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.ConfigDir, "config", "", "directory with the model's config.json (e.g. ../shared/fixtures/configs/openchat-3.5-1210)")
	fs.StringVar(&o.TokenizerDir, "tokenizer", "", "directory with the tokenizer files to copy")
	fs.StringVar(&o.Out, "out", "", "output checkpoint directory (must not exist)")
	fs.IntVar(&o.Layers, "layers", 0, "number of decoder layers (0 = the config's)")
	fs.StringVar(&o.DType, "dtype", "bf16", "weight dtype: bf16, f16 or f32")
	fs.Uint64Var(&o.Seed, "seed", 0, "random seed (the same seed gives the same bytes)")
	fs.IntVar(&o.Shards, "shards", 3, "number of safetensors shards")
	fs.IntVar(&o.Threads, "threads", 0, "generator threads (0 = all cores)")
	fs.BoolVar(&asJSON, "json", false, "print a JSON summary")
	fs.IntVar(&bits, "bits", 0, "write a GPTQ checkpoint of this many bits (2, 3, 4 or 8; 0: floating point)")
	fs.IntVar(&group, "group", 128, "GPTQ group size (-1: one group), with --bits")
	fs.BoolVar(&actOrder, "act-order", false, "GPTQ desc_act (a random processing order per input), with --bits")
	return cmd
}
