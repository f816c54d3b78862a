package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/publish"
	"github.com/gptqtool/gptqtool/verify"
)

func init() { subcommands = append(subcommands, newInspectCmd) }

func newInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect DIR|FILE.gguf",
		Short: "Describe a checkpoint: architecture, tensors, size, GPTQ parameters and loaders",
		Long: `inspect reads a Hugging Face checkpoint directory (config.json and safetensors weights,
single file or sharded) and reports its architecture and shape, tensor dtypes, parameter
count and size on disk; for GPTQ checkpoints also bits, group size, act order, sym,
checkpoint format and which loaders accept it. PyTorch .bin checkpoints are read without
executing anything. A .gguf file is described from its header: architecture, hyperparameters,
tokenizer, tensor types, size.

Disagreements between config.json, the quantization configs and the weights are printed as
PROBLEM lines (the "problems" key with --json); the command then exits with status 1 after
printing its report.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if st, err := os.Stat(args[0]); err == nil && st.Mode().IsRegular() && strings.HasSuffix(args[0], ".gguf") {
				r, err := verify.InspectGGUF(args[0])
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(cmd.OutOrStdout(), r)
				}
				printGGUF(cmd.OutOrStdout(), r)
				return nil
			}
			r, err := verify.Inspect(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), r); err != nil {
					return err
				}
			} else {
				printReport(cmd.OutOrStdout(), r)
			}
			return problemsError(r)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return cmd
}

// problemsError is the error that ends an inspect whose report has
// problems (after the report is printed), so that the exit status says
// whether the checkpoint is sound.
func problemsError(r *verify.Report) error {
	switch len(r.Problems) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("%s: 1 problem found", r.Dir)
	}
	return fmt.Errorf("%s: %d problems found", r.Dir, len(r.Problems))
}

func printReport(w io.Writer, r *verify.Report) {
	fmt.Fprintf(w, "%s\n", r.Dir)
	fmt.Fprintf(w, "  architecture   %s (%s)\n", strings.Join(r.Architectures, ","), r.ModelType)
	fmt.Fprintf(w, "  layers         %d, hidden %d, intermediate %d\n", r.NumHiddenLayers, r.HiddenSize, r.IntermediateSize)
	if m := r.MoE; m != nil {
		norm := ""
		if m.NormTopKProb {
			norm = ", weights renormalized"
		}
		if m.SharedExpertIntermediateSize > 0 {
			norm += fmt.Sprintf(", and a shared expert of intermediate %d", m.SharedExpertIntermediateSize)
		}
		fmt.Fprintf(w, "  experts        %d of intermediate %d in %d of %d layers, %d a token%s\n", m.NumExperts, m.MoEIntermediateSize, m.SparseLayers, r.NumHiddenLayers, m.NumExpertsPerTok, norm)
	}
	partial := ""
	if r.RotaryDim != 0 {
		partial = fmt.Sprintf(", RoPE over %d of them (partial_rotary_factor %g)", r.RotaryDim, r.PartialRotaryFactor)
	}
	fmt.Fprintf(w, "  attention      %d heads, %d kv heads, head_dim %d%s\n", r.NumAttentionHeads, r.NumKeyValueHeads, r.HeadDim, partial)
	sw := "none"
	if r.SlidingWindow > 0 {
		sw = fmt.Sprint(r.SlidingWindow)
	}
	rope := ""
	if r.RopeScaling != nil {
		rope = ", rope scaling " + r.RopeScaling.String()
	}
	if r.LayerTypes != nil {
		// Gemma: the window (Gemma 3: and the local base) in the sliding
		// layers alone.
		n := 0
		for _, t := range r.LayerTypes {
			if t == "sliding_attention" {
				n++
			}
		}
		local := ""
		if r.RopeLocalBaseFreq > 0 {
			local = fmt.Sprintf("rope_local_base_freq %g there; ", r.RopeLocalBaseFreq)
		}
		sw = fmt.Sprintf("%s in %d of %d layers (%sthe others full attention)", sw, n, len(r.LayerTypes), local)
	}
	fmt.Fprintf(w, "  context        %d positions, rope_theta %g%s, sliding window %s\n", r.MaxPositionEmbeddings, r.RopeTheta, rope, sw)
	if q := r.QueryScale; q != nil {
		fmt.Fprintf(w, "                 of max_position_embeddings %d: queries past position %d are scaled by 1 + %g·ln(1 + ⌊p/%d⌋) (llama_4_scaling_beta), which is not run\n", q.Declared, q.Original, q.Beta, q.Original)
	}
	if r.QueryPreAttnScalar > 0 {
		fmt.Fprintf(w, "  attention      scores scaled by query_pre_attn_scalar %g^-0.5\n", r.QueryPreAttnScalar)
	}
	if g := r.Granite; g != nil {
		fmt.Fprintf(w, "  multipliers    embeddings ×%g, scores ×%g, residual adds ×%g, logits ÷%g\n", g.EmbeddingMultiplier,
			g.AttentionMultiplier, g.ResidualMultiplier, g.LogitsScaling)
	}
	if r.AttnLogitSoftcapping > 0 || r.FinalLogitSoftcapping > 0 {
		fmt.Fprintf(w, "  soft-capping   scores at %g, logits at %g (c·tanh(x/c); 0: none)\n", r.AttnLogitSoftcapping, r.FinalLogitSoftcapping)
	}
	head := "untied lm_head"
	if r.TieWordEmbeddings {
		head = "tied to embed_tokens"
	}
	fmt.Fprintf(w, "  vocab          %d, head %s\n", r.VocabSize, head)
	fmt.Fprintf(w, "  parameters     %d (%s)\n", r.NumParameters, humanCount(r.NumParameters))
	if r.VisionParameters > 0 {
		fmt.Fprintf(w, "  vision         %d parameters (%s) in the vision tower and projector, kept, not run (multimodal %s: the language model above runs text-only)\n", r.VisionParameters, humanCount(r.VisionParameters), r.Wrapper)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  PROBLEM        %s\n", p)
	}
	var dts []string
	for d, n := range r.DTypes {
		dts = append(dts, fmt.Sprintf("%s×%d", d, n))
	}
	sort.Strings(dts)
	fmt.Fprintf(w, "  tensors        %d (%s), torch_dtype %s\n", r.NumTensors, strings.Join(dts, " "), r.TorchDType)
	fmt.Fprintf(w, "  size on disk   %s in %d %s file(s)\n", publish.FormatSize(r.SizeBytes), len(r.Files), r.Format)
	q := r.Quantization
	if q == nil {
		fmt.Fprintf(w, "  quantization   none\n")
		return
	}
	gs := "none (per channel)"
	if q.GroupSize > 0 {
		gs = fmt.Sprint(q.GroupSize)
	}
	if q.QuantMethod != "" && q.QuantMethod != "gptq" {
		// (AWQ or compressed-tensors, read as GPTQ: GPTQ's loader table
		// is not theirs.)
		fmt.Fprintf(w, "  quantization   %s %d-bit, group %s, act order %v, sym %v (%s), read as GPTQ %s\n",
			q.QuantMethod, q.Bits, gs, q.DescAct, q.Sym, q.Source, q.CheckpointFormat)
		fmt.Fprintf(w, "  quantized      %d modules\n", q.QuantizedModules)
		return
	}
	fmt.Fprintf(w, "  quantization   GPTQ %d-bit, group %s, act order %v, static groups %v, sym %v, damp %g, format %s (%s)\n",
		q.Bits, gs, q.DescAct, q.StaticGroups, q.Sym, q.DampPercent, q.CheckpointFormat, q.Source)
	fmt.Fprintf(w, "  quantized      %d modules\n", q.QuantizedModules)
	fmt.Fprintf(w, "  loaders\n")
	for _, l := range q.Loaders {
		mark := "yes"
		if !l.OK {
			mark = "no "
		}
		reason := ""
		if l.Reason != "" {
			reason = "  " + l.Reason
		}
		fmt.Fprintf(w, "    %s %s%s\n", mark, l.Loader, reason)
	}
}

func printGGUF(w io.Writer, r *verify.GGUFReport) {
	fmt.Fprintf(w, "%s\n", r.Path)
	ft := fmt.Sprint(r.FileType)
	if n := gguf.FileTypeName(r.FileType); n != "" {
		ft += " (" + n + ")"
	}
	fmt.Fprintf(w, "  architecture   %s (%s), file type %s\n", r.Architecture, r.Name, ft)
	var keys []string
	for k := range r.Hyperparams {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-38s %v\n", k, r.Hyperparams[k])
	}
	fmt.Fprintf(w, "  tokenizer      %s, %d tokens, chat template %v\n", r.TokenizerModel, r.VocabSize, r.ChatTemplate)
	var types []string
	for t, n := range r.Types {
		types = append(types, fmt.Sprintf("%s×%d", t, n))
	}
	sort.Strings(types)
	fmt.Fprintf(w, "  tensors        %d (%s), %d parameters (%s)\n", r.NumTensors, strings.Join(types, " "), r.NumParameters, humanCount(r.NumParameters))
	fmt.Fprintf(w, "  size           %s, %d metadata keys\n", publish.FormatSize(r.SizeBytes), r.Metadata)
}

func humanCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// exactArgs is cobra.ExactArgs with the error marked as a usage error (exit 2).
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
