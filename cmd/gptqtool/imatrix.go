package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/publish"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newImatrixCmd) }

func newImatrixCmd() *cobra.Command {
	var (
		cf      calibrationFlags
		model   string
		out     string
		device  string
		threads int
		dtype   string
		force   bool
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "imatrix --model DIR --dataset PATH... --out FILE.gguf [--nsamples N] [--seq-len N] [--device cpu|cuda|auto]",
		Short: "Compute an importance matrix (llama.cpp's imatrix) for GGUF quantization",
		Long: `imatrix runs the calibration samples (the same flags and defaults as quantize) through the
model, unquantized, and sums for every Linear weight the squares of its input features: the
importance matrix llama.cpp's llama-imatrix computes. It is written as llama.cpp's GGUF imatrix
under the GGUF tensor names, for convert --gguf q4_k_m --imatrix FILE (or llama-quantize
--imatrix), which then weighs each weight's quantization error by its column's importance.
As llama-imatrix does by default, the output weight (lm_head) is left out.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageError{errors.New("--out is required (a .gguf path)")}
			}
			if err := checkDeviceFlags(device, threads); err != nil {
				return err
			}
			if err := publish.CheckImatrixOut(out, force); err != nil {
				return usageError{err}
			}
			// A model whose GGUF file convert would refuse (whose names the
			// matrix is written under: a Qwen3-MoE with dense layers, say)
			// is refused before the dataset is read (a config that does
			// not load is the model load's to report).
			if cfg, err := modelConfig(model); err == nil {
				if err := gguf.CheckModel(cfg); err != nil {
					return fmt.Errorf("imatrix: %w", err)
				}
			}
			log := cmd.ErrOrStderr()
			opts, err := cf.options(model, log)
			if err != nil {
				return err
			}
			ds, err := loadDataset(opts)
			if err != nil {
				return err
			}
			b, err := newBackend(device, threads, log)
			if err != nil {
				return err
			}
			defer closeBackend(b)
			// The calibration samples are the context (--seq-len positions
			// at most), as llama.cpp's imatrix runs at its -c.
			m, err := loadModel(model, b, dtype, ds.SeqLen)
			if err != nil {
				return err
			}
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			bar := newProgress(log, "imatrix", len(ds.Samples))
			sum, err := publish.WriteImatrix(ctx, m, quantize.SamplesOf(ds.Samples), cf.datasets, out, bar.set, log)
			bar.finish()
			if err != nil {
				return err
			}
			if jsonOut {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(sum)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d weights, %d samples, %d tokens\n", sum.Out, sum.Weights, sum.Samples, sum.Tokens)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "model directory (fp16/bf16/fp32 checkpoint)")
	addCalibrationFlags(f, &cf)
	f.StringVar(&out, "out", "", "the importance matrix to write (llama.cpp's GGUF imatrix, FILE.gguf)")
	f.StringVar(&device, "device", "auto", deviceHelp)
	f.IntVar(&threads, "threads", 0, "CPU threads (0 = all cores)")
	f.StringVar(&dtype, "dtype", "auto", dtypeHelp)
	f.BoolVar(&force, "force", false, "replace --out if it exists")
	f.BoolVar(&jsonOut, "json", false, "print the summary as one JSON document")
	return cmd
}
