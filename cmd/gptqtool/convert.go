package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/publish"
)

func init() { subcommands = append(subcommands, newConvertCmd) }

func newConvertCmd() *cobra.Command {
	var (
		o                publish.ConvertOptions
		maxShard, format string
		asJSON           bool
	)
	cmd := &cobra.Command{
		Use:   "convert --in DIR --out DIR|FILE.gguf [--dtype f16|bf16|f32] [--max-shard-size SIZE] [--dequantize] [--checkpoint-format gptq|gptq_v2] [--gguf TYPE[,TYPE...] [--pure] [--tensor-type PATTERN=TYPE]... [--tensor-type-file FILE] [--override-kv KEY=TYPE:VALUE]... [--dry-run]]",
		Short: "Convert a checkpoint: PyTorch .bin to safetensors, dtypes, shards, GPTQ v1/v2, GPTQ to fp16, GGUF",
		Long: `convert rewrites a Hugging Face checkpoint directory tensor by tensor (memory stays near one
tensor) into --out, built under a temporary name and renamed when complete:

  PyTorch .bin (pytorch_model.bin or a directory's only .bin file, or shards with
  pytorch_model.bin.index.json; read without executing anything) or safetensors in;
  safetensors out ("format":"pt"), sharded past --max-shard-size with
  model.safetensors.index.json (0: one file).
  --dtype f32|f16|bf16 converts the floating-point tensors (round to nearest even); values
  beyond fp16's range are reported by tensor and refused unless --allow-overflow (clamped).
  --checkpoint-format gptq|gptq_v2 rewrites a GPTQ checkpoint's zero points for the other
  format (v1 stores zero-1; a zero point of 0 cannot be stored in v1 and is refused, naming
  the tensor).
  --dequantize writes a GPTQ checkpoint back as fp16 (or --dtype) weights as the runtime
  dequantizes them (bit for bit with --dtype f32; fp16 and bf16 round each weight once more),
  with a config without quantization_config.
  --gguf TYPE writes one GGUF v3 file (--out FILE.gguf) that llama.cpp and ollama load:
  llama.cpp's tensor names and Q/K layout, its metadata and the tokenizer (tokens, scores,
  types, special ids, chat template). TYPE is f32, f16, bf16, q8_0, q6_k, q5_k, q4_k or q3_k
  (every 2-D weight in that type, the output included: not llama-quantize's Q4_K, which is
  its Q4_K_M), or one of llama-quantize's file types q2_k, q2_k_s, iq1_s, iq1_m, iq2_xxs,
  iq2_xs, iq2_s, iq2_m, iq3_xs, iq3_xxs, q3_k_s, q3_k_m, q3_k_l, q4_0, q4_1, q5_0, q5_1,
  q4_k_s, q4_k_m, q5_k_s, q5_k_m, iq4_nl, iq3_s, iq3_m, iq4_xs (the output weight in q6_k,
  q5_k for the iq1 and iq2 ones and iq3_xxs, and some layers' attn_v, attn_output and
  ffn_down in other types, as llama.cpp picks them; q2_k_s, the iq1 and iq2 ones, iq3_xs and
  iq3_xxs need --imatrix, as llama-quantize does). A comma-separated list
  writes one file a type into the directory --out (MODEL.Q4_K_M.gguf), every path and type
  checked first; a file that fails once begun leaves the files before it, complete, and the
  error names them and the types not written. Rows that are not whole blocks fall back as
  llama-quantize's do, and are listed. GPTQ weights are dequantized first.
  F16 weights holding values beyond fp16's range are refused as above unless --allow-overflow.
  --output-tensor-type and --token-embedding-type (with --gguf) set those two weights' types as
  llama-quantize's flags of the same names do (q8_0 for both makes the "_L" files some
  repositories publish); a tied token_embd is the output.
  --imatrix FILE (with --gguf) weighs the quantized weights' error by the importance
  of their columns, as llama-quantize --imatrix does (gptqtool imatrix makes one).
  llama-quantize's per-tensor flags (with --gguf; for every file of a list):
  --pure puts every 2-D weight in the file type's base type (q4_k_m: Q4_K), the output
  and token_embd included, without the mix's rules; rows that are not whole blocks still
  fall back. --tensor-type PATTERN=TYPE (repeatable) gives TYPE (a ggml type: q8_0, q4_k,
  f16, …) to the 2-D weights whose GGUF name the regular expression matches anywhere
  (ffn_down=q8_0, '^blk\.0\.=q8_0'); the first matching flag wins; the pattern is
  lowercased, as llama-quantize does, and is Go's RE2 (llama-quantize's is ECMAScript: no
  backreferences or lookaround here); it applies to quantized types only (not f32, f16,
  bf16), and --output-tensor-type and --token-embedding-type win over it.
  --tensor-type-file FILE reads such values from FILE, separated by white space (spaces,
  newlines), as if each were given by a --tensor-type flag where the file is named.
  --leave-output-tensor writes output.weight in F16 (llama-quantize leaves it in the F16
  file it quantizes); refused for a model whose output is tied to token_embd.
  --include-weights NAME / --exclude-weights NAME (repeatable, with --imatrix, not both)
  use the importance matrix only for / not for the weights whose GGUF name contains NAME.
  --override-kv KEY=TYPE:VALUE (repeatable, with --gguf) sets or replaces a metadata key in
  every file, as llama-quantize's flag does: TYPE int (written as uint32, 0 to 4294967295),
  float (float32), bool (true or false) or str (at most 127 bytes); KEY at most 127 bytes; the
  last of a key wins (general.name=str:my-model, tokenizer.ggml.add_bos_token=bool:false,
  general.file_type=int:7, which, as in llama-quantize, replaces the file type's). A key
  gptqtool writes keeps its type (an int for llama.context_length). Refused, as they describe
  the tensors: general.architecture, llama.vocab_size, llama.embedding_length,
  llama.block_count, llama.feed_forward_length, llama.attention.head_count(_kv),
  llama.attention.key_length and value_length, llama.rope.dimension_count, tokenizer.ggml.model,
  tokens, scores and token_type; a tokenizer.ggml.*_token_id outside the vocabulary;
  quantize.imatrix.* with --imatrix. general.alignment=int:N (a power of two, at least 8) lays
  the file out by N.
  --dry-run (with --gguf) plans every file as the conversion would, with its checks and
  refusals (an existing file without --force, an IQ type without --imatrix, a bad
  override, a Linear bias other than zeros), reads no weight (but the biases) and writes
  nothing, and prints per file each tensor's name, shape ([out, in]), type and bytes (and
  the type a fallback replaced), the file's size in bytes (header, metadata, padding and
  data: the size of the file the conversion writes) and the bits per weight (tensor data
  over every tensor's elements, as llama-quantize reports them); --json gives them as one
  document. F16 values beyond fp16's range are found only when the weights are read.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.In == "" || o.Out == "" {
				return usageError{errors.New("--in and --out are required")}
			}
			var err error
			if o.MaxShardBytes, err = parseShardSize(maxShard); err != nil {
				return usageError{fmt.Errorf("--max-shard-size: %w", err)}
			}
			if o.Format = gptq.Format(format); format != "" && o.Format != gptq.FormatV1 && o.Format != gptq.FormatV2 {
				return usageError{fmt.Errorf("--checkpoint-format %q: want gptq or gptq_v2", format)}
			}
			o.DType = dtypeFlag(o.DType)
			switch o.DType {
			case "", "f32", "f16", "bf16":
			default:
				return usageError{fmt.Errorf("--dtype %q: want f32, f16 or bf16", o.DType)}
			}
			if o.GGUF != "" {
				if _, err := gguf.ParseTargets(o.GGUF); err != nil {
					return usageError{fmt.Errorf("--gguf: %w", err)}
				}
				if cmd.Flags().Changed("max-shard-size") {
					return usageError{fmt.Errorf("--gguf %s: a GGUF file is written whole (gptqtool writes no split GGUF): drop --max-shard-size", o.GGUF)}
				}
			} else if cmd.Flags().Changed("tensor-type-file") {
				return usageError{errors.New("--tensor-type-file sets how a GGUF file is quantized: add --gguf TYPE (e.g. q4_k_m)")}
			}
			if err := o.CheckFlags(); err != nil {
				return usageError{err}
			}
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			log := cmd.ErrOrStderr()
			bar := newProgress(log, "convert", 1)
			o.Log, o.Progress, o.Version = progressLog{bar, log}, bar.set, version
			sum, err := publish.Convert(ctx, o)
			bar.finish()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(w, sum)
			}
			if sum.DryRun {
				printGGUFPlan(w, sum)
				return nil
			}
			weights := 0 // the files listed less the shards' index
			for _, f := range sum.Files {
				if !strings.HasSuffix(f, ".json") {
					weights++
				}
			}
			fmt.Fprintf(w, "%s: %d tensors in %d weight file(s), %s, from %s (%s) in %.1fs\n", sum.Out, sum.Tensors, weights, publish.FormatSize(sum.SizeBytes), sum.In, sum.Source, sum.Seconds)
			if len(sum.GGUF) > 1 {
				for _, f := range sum.GGUF {
					fmt.Fprintf(w, "  %s: %s, %s\n", f.File, f.Type, publish.FormatSize(f.SizeBytes))
				}
			}
			for n, c := range sum.Overflows {
				fmt.Fprintf(w, "clamped %d values of %s to fp16's range\n", c, n)
			}
			for _, d := range sum.Dropped {
				fmt.Fprintf(w, "dropped %s\n", d)
			}
			for _, f := range sum.Fallbacks {
				fmt.Fprintf(w, "fallback %s\n", f)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.In, "in", "", "the checkpoint directory to convert")
	fs.StringVar(&o.Out, "out", "", "output directory (refused if it exists, unless --force); with --gguf TYPE the .gguf file, with --gguf LIST the directory of its files")
	fs.StringVar(&o.DType, "dtype", "", "floating-point tensors in f32, f16 or bf16 (default: as they are; f16 with --dequantize)")
	fs.StringVar(&maxShard, "max-shard-size", "4GB", "split the safetensors weights into shards of at most this size (0 = one file; not with --gguf, whose file is written whole)")
	fs.BoolVar(&o.Dequantize, "dequantize", false, "write a GPTQ checkpoint as floating-point weights")
	fs.StringVar(&format, "checkpoint-format", "", "rewrite a GPTQ checkpoint for gptq (v1) or gptq_v2")
	fs.BoolVar(&o.AllowOverflow, "allow-overflow", false, "clamp values beyond fp16's range instead of refusing (f16 tensors, GGUF F16 weights included)")
	fs.StringVar(&o.Imatrix, "imatrix", "", "with --gguf: an importance matrix (gptqtool imatrix's, or llama-imatrix's GGUF or .dat) that weighs the quantized weights' error by their columns' importance (all but q8_0's), as llama-quantize --imatrix does")
	fs.StringVar(&o.OutputTensorType, "output-tensor-type", "", "with --gguf: the output weight's type (llama-quantize's --output-tensor-type, e.g. q8_0), in place of the mix's")
	fs.StringVar(&o.TokenEmbeddingType, "token-embedding-type", "", "with --gguf: token_embd's type (llama-quantize's --token-embedding-type, e.g. q8_0), in place of the mix's")
	fs.BoolVar(&o.Pure, "pure", false, "with --gguf: every 2-D weight in the file type's base type, without its per-tensor rules (llama-quantize's --pure)")
	fs.Var(tensorTypeFlag{&o.TensorTypes}, "tensor-type", "with --gguf, repeatable: `PATTERN=TYPE`: the 2-D weights whose GGUF name the regular expression matches (the first flag that does) in TYPE (llama-quantize's --tensor-type, e.g. ffn_down=q8_0)")
	fs.Var(tensorTypeFileFlag{&o.TensorTypes}, "tensor-type-file", "with --gguf, repeatable: a `FILE` of --tensor-type values separated by white space, taken in place among the --tensor-type flags (llama-quantize's --tensor-type-file)")
	fs.BoolVar(&o.LeaveOutputTensor, "leave-output-tensor", false, "with --gguf: output.weight unquantized, in F16 (llama-quantize's --leave-output-tensor)")
	fs.StringArrayVar(&o.IncludeWeights, "include-weights", nil, "with --imatrix, repeatable: use the importance matrix only for the weights whose GGUF name contains `NAME` (llama-quantize's --include-weights)")
	fs.StringArrayVar(&o.KVOverrides, "override-kv", nil, "with --gguf, repeatable: `KEY=TYPE:VALUE` (TYPE int, float, bool or str) sets or replaces a metadata key in every file (llama-quantize's --override-kv, e.g. general.name=str:my-model); keys that describe the tensors are refused")
	fs.BoolVar(&o.DryRun, "dry-run", false, "with --gguf: plan every file (each tensor's type, the file's exact size, bits per weight) with the conversion's checks, read no weight, write nothing (llama-quantize's --dry-run)")
	fs.StringArrayVar(&o.ExcludeWeights, "exclude-weights", nil, "with --imatrix, repeatable: do not use the importance matrix for the weights whose GGUF name contains `NAME` (llama-quantize's --exclude-weights)")
	fs.StringVar(&o.GGUF, "gguf", "", "write a GGUF file (--out FILE.gguf) for llama.cpp/ollama, or one a type of a comma-separated list (into the directory --out): every weight in f32, f16, bf16, q8_0, q6_k, q5_k, q4_k or q3_k, or a llama-quantize file type (q2_k … q5_k_m, q4_0, iq3_s, iq4_xs; see the help) (GPTQ weights dequantized, then requantized)")
	fs.BoolVar(&o.Force, "force", false, "replace the output directory if it exists (only what gptqtool wrote); with --gguf, the .gguf files it writes")
	fs.BoolVar(&asJSON, "json", false, "print a JSON summary")
	return cmd
}

// printGGUFPlan prints a dry run: per file its tensors (name, shape,
// type, bytes, the type a fallback replaced), then its size, tensor data,
// weights and bits per weight; a list ends with the total.
func printGGUFPlan(w io.Writer, sum *publish.ConvertSummary) {
	for _, f := range sum.GGUF {
		fmt.Fprintf(w, "%s: %s (general.file_type %d), %d tensors, not written (--dry-run)\n", f.File, f.Type, f.FileType, len(f.Tensors))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, t := range f.Tensors {
			fmt.Fprintf(tw, "  %s\t%v\t%s\t%d bytes", t.Name, t.Shape, t.Type, t.SizeBytes)
			if t.Fallback != "" {
				fmt.Fprintf(tw, "\tfallback from %s: %s", t.Fallback, t.FallbackReason)
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
		fmt.Fprintf(w, "  size %d bytes (%s): tensor data %d bytes, %d weights, %.4f bits per weight\n", f.SizeBytes, publish.FormatSize(f.SizeBytes), f.TensorBytes, f.Parameters, f.BitsPerWeight)
	}
	if len(sum.GGUF) > 1 {
		fmt.Fprintf(w, "%d files, %d bytes (%s), into %s\n", len(sum.GGUF), sum.SizeBytes, publish.FormatSize(sum.SizeBytes), sum.Out)
	}
}

// tensorTypeFlag is --tensor-type: each value appended to the list that
// --tensor-type-file also appends to, so that the first matching pattern
// is the first given, whichever flag gave it (llama-quantize keeps one
// list for both). Values are checked with the other flags (CheckFlags).
type tensorTypeFlag struct{ list *[]string }

func (f tensorTypeFlag) Set(v string) error {
	*f.list = append(*f.list, v)
	return nil
}
func (f tensorTypeFlag) String() string { return "" }
func (f tensorTypeFlag) Type() string   { return "stringArray" }

// tensorTypeFileFlag is --tensor-type-file: the file's values, separated by
// white space as llama-quantize's parse_tensor_type_file reads them
// (`file >> arg`), appended in order to the --tensor-type list. Each is
// checked as it is read, so that a bad one is named with its file.
type tensorTypeFileFlag struct{ list *[]string }

func (f tensorTypeFileFlag) Set(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// C's isspace in the "C" locale, which std::istream's >> skips.
	for i, v := range strings.FieldsFunc(string(b), func(r rune) bool { return strings.ContainsRune(" \t\n\v\f\r", r) }) {
		if _, err := gguf.ParseTensorTypeOverride(v); err != nil {
			return fmt.Errorf("%s: value %d: %w", path, i+1, err)
		}
		*f.list = append(*f.list, v)
	}
	return nil
}
func (f tensorTypeFileFlag) String() string { return "" }
func (f tensorTypeFileFlag) Type() string   { return "stringArray" }
