package publish

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gptqtool/gptqtool/formats/fused"
	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/quantized"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/formats/weights"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// ConvertOptions configure Convert.
type ConvertOptions struct {
	In, Out string
	// DType converts the floating-point tensors: "f32", "f16", "bf16", or
	// "" to keep each tensor's own.
	DType string
	// MaxShardBytes shards the output as transformers does (0: one file).
	MaxShardBytes int64
	// Dequantize writes a GPTQ checkpoint's Linears back as floating-point
	// weights (DType, default f16), with a config without
	// quantization_config.
	Dequantize bool
	// Format rewrites a GPTQ checkpoint's zero points for another
	// checkpoint format (gptq = v1, gptq_v2); "" keeps it.
	Format gptq.Format
	// AllowOverflow converts to f16 even where values exceed its range
	// (they are clamped to ±65504); otherwise such tensors are refused.
	// It applies to a GGUF file's F16 weights too.
	AllowOverflow bool
	// GGUF writes GGUF files for llama.cpp instead, GPTQ weights
	// dequantized first: one a target of this comma-separated list
	// (gguf.ParseTargets: "q4_k_m", "q4_k_m,q5_k_m,q8_0"), at Out for one,
	// into the directory Out for several (MODEL.Q4_K_M.gguf).
	GGUF string
	// Imatrix is an importance matrix file (llama-imatrix's GGUF or .dat,
	// or gptqtool imatrix's) weighing the K-type GGUF weights' error
	// (gguf.ConvertOptions.Imatrix); only with GGUF.
	Imatrix string
	// OutputTensorType and TokenEmbeddingType name the GGUF type of the
	// output weight and of token_embd (llama-quantize's
	// --output-tensor-type and --token-embedding-type, e.g. "q8_0" for
	// the "_L" files some repositories publish); "" keeps the mix's.
	OutputTensorType, TokenEmbeddingType string
	// Pure, TensorTypes, LeaveOutputTensor, IncludeWeights and
	// ExcludeWeights are llama-quantize's --pure, --tensor-type
	// (PATTERN=TYPE, gguf.ParseTensorTypeOverride), --leave-output-tensor,
	// --include-weights and --exclude-weights (gguf.ConvertOptions' Pure,
	// TensorTypes, LeaveOutput, IncludeWeights, ExcludeWeights), applied
	// to every GGUF file; only with GGUF, the last two with Imatrix.
	Pure, LeaveOutputTensor        bool
	TensorTypes                    []string
	IncludeWeights, ExcludeWeights []string
	// KVOverrides are llama-quantize's --override-kv KEY=TYPE:VALUE
	// (gguf.ParseKVOverride), set in every GGUF file's metadata over what
	// gptqtool derives (gguf.ConvertOptions.KVOverrides); only with GGUF.
	KVOverrides []string
	// DryRun plans every GGUF file as the conversion would, with the same
	// checks and refusals, and writes nothing: the summary lists each
	// file's tensors, types and size (GGUFFile.Tensors). Of the weights it
	// reads only the Linear biases (refused unless zeros), so values beyond
	// fp16's range are not found. Only with GGUF.
	DryRun bool
	Force  bool
	// Version is gptqtool's, recorded in the model card (converted_by).
	Version string
	Log     io.Writer
	// Progress is called after each tensor with the count done and the total.
	Progress func(done, total int)
}

// ConvertSummary is what Convert did.
type ConvertSummary struct {
	In        string         `json:"in"`
	Out       string         `json:"out"`
	Source    string         `json:"source_format"`
	Tensors   int            `json:"tensors"` // of each file, for a GGUF list
	Files     []string       `json:"files"`
	SizeBytes int64          `json:"size_bytes"`
	Overflows map[string]int `json:"fp16_overflows,omitempty"` // values clamped, by tensor
	Dropped   []string       `json:"dropped,omitempty"`
	// Fallbacks are GGUF weights written in another type than asked (rows
	// that are not a whole number of blocks), Warnings what llama.cpp will
	// not reproduce.
	Fallbacks []string `json:"gguf_fallbacks,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
	// GGUF lists the GGUF files written, in --gguf's order.
	GGUF []GGUFFile `json:"gguf_files,omitempty"`
	// DryRun: nothing was written; Files, SizeBytes and GGUF are what the
	// conversion would write.
	DryRun  bool    `json:"dry_run,omitempty"`
	Seconds float64 `json:"seconds"`
}

// GGUFFile is one GGUF file a conversion wrote (or, in a dry run, would
// write).
type GGUFFile struct {
	File string `json:"file"`
	Type string `json:"type"` // "Q4_K_M", "Q8_0"
	// FileType is general.file_type (llama.h llama_ftype; an override's).
	FileType  uint32 `json:"file_type"`
	SizeBytes int64  `json:"size_bytes"`
	// TensorBytes is the tensors' data without padding, Parameters their
	// elements (norms included) and BitsPerWeight the one in bits per the
	// other: llama-quantize's "quant size" and "BPW".
	TensorBytes   int64   `json:"tensor_bytes"`
	Parameters    int64   `json:"parameters"`
	BitsPerWeight float64 `json:"bits_per_weight"`
	Seconds       float64 `json:"seconds"`
	// Tensors lists a dry run's tensors, in file order.
	Tensors []GGUFTensor `json:"tensors,omitempty"`
}

// GGUFTensor is one tensor of a planned GGUF file.
type GGUFTensor struct {
	Name string `json:"name"` // GGUF name, "blk.0.attn_q.weight"
	// Shape is row-major, [out, in] for a weight, as Hugging Face gives it
	// (llama.cpp prints ggml's ne, the reverse).
	Shape     []int  `json:"shape"`
	Type      string `json:"type"`
	SizeBytes int64  `json:"size_bytes"` // its data, without padding
	// Fallback is the type the rules asked for when the rows are not whole
	// blocks of it, and why ("" for none).
	Fallback       string `json:"fallback_from,omitempty"`
	FallbackReason string `json:"fallback_reason,omitempty"`
}

// Source is a checkpoint's weights as Convert reads them: safetensors (a
// safetensors.Set) or PyTorch files, as weights.OpenDir opens them.
type Source interface {
	Names() []string
	Tensor(name string) (safetensors.Tensor, error)
	Close() error
}

// dtypeOf maps a --dtype name (safetensors.ParseFloatDType) to its
// safetensors dtype and its torch name.
func dtypeOf(name string) (safetensors.DType, string, error) {
	if d, ok := safetensors.ParseFloatDType(name); ok {
		return d, d.TorchName(), nil
	}
	return "", "", fmt.Errorf("dtype %q: want f32, f16 or bf16", name)
}

// plainDTypes names the dtypes of a GPTQ checkpoint's floating-point
// tensors outside its packed modules (embedding, norms, head), as --dtype
// spells them: "f16", "bf16" or "bf16, f32".
func plainDTypes(infos []safetensors.TensorInfo) string {
	packed := map[string]bool{}
	for _, in := range infos {
		if m, ok := strings.CutSuffix(in.Name, ".qweight"); ok {
			packed[m] = true
		}
	}
	var names []string
	for _, in := range infos {
		if m, _ := splitModule(in.Name); !packed[m] && isFloat(in.DType) {
			names = append(names, strings.ToLower(string(in.DType)))
		}
	}
	slices.Sort(names)
	return strings.Join(slices.Compact(names), ", ")
}

func isFloat(dt safetensors.DType) bool {
	return dt == safetensors.F32 || dt == safetensors.F16 || dt == safetensors.BF16
}

// outTensor is one tensor of the output and how to make it.
type outTensor struct {
	info safetensors.TensorInfo
	make func() ([]byte, error)
	// toF16 names the source tensor of a plain tensor converted to fp16
	// from another float dtype, whose values are checked before writing.
	toF16 string
}

// CheckFlags reports options that contradict each other, before any file
// is read (the command's usage errors): a GGUF output with a dtype, a
// checkpoint format or dequantization (it takes its type from GGUF and
// dequantizes GPTQ weights itself), or a checkpoint format with
// dequantization (a dequantized checkpoint has none).
func (o ConvertOptions) CheckFlags() error {
	if o.GGUF != "" {
		var given []string
		if o.DType != "" {
			given = append(given, "--dtype")
		}
		if o.Format != "" {
			given = append(given, "--checkpoint-format")
		}
		if o.Dequantize {
			given = append(given, "--dequantize")
		}
		if len(given) > 0 {
			return fmt.Errorf("--gguf %s: a GGUF file takes its type from --gguf (GPTQ weights are dequantized): drop %s", o.GGUF, strings.Join(given, ", "))
		}
	}
	for _, f := range []struct{ flag, v string }{{"--output-tensor-type", o.OutputTensorType}, {"--token-embedding-type", o.TokenEmbeddingType}} {
		if f.v != "" && o.GGUF == "" {
			return fmt.Errorf("%s %s sets a GGUF file's type: add --gguf TYPE (e.g. q4_k_m)", f.flag, f.v)
		}
	}
	if o.Imatrix != "" && o.GGUF == "" {
		return fmt.Errorf("--imatrix %s weighs a GGUF file's quantization: add --gguf TYPE (e.g. q4_k_m)", o.Imatrix)
	}
	if o.DryRun && o.GGUF == "" {
		return errors.New("--dry-run plans GGUF files: add --gguf TYPE (e.g. q4_k_m)")
	}
	for _, v := range o.KVOverrides {
		if o.GGUF == "" {
			return fmt.Errorf("--override-kv %s sets a GGUF file's metadata: add --gguf TYPE (e.g. q4_k_m)", v)
		}
		if _, err := gguf.ParseKVOverride(v); err != nil {
			return fmt.Errorf("--override-kv %w", err)
		}
	}
	if err := o.checkTensorFlags(); err != nil {
		return err
	}
	// An --out named like a GGUF file without --gguf would be written as a
	// safetensors directory of that name.
	if o.GGUF == "" && strings.EqualFold(filepath.Ext(o.Out), ".gguf") {
		return fmt.Errorf("--out %s names a GGUF file, and a GGUF file is written with --gguf TYPE (%s); without it --out is a checkpoint directory: add --gguf, or name the directory otherwise", o.Out, GGUFTypes)
	}
	if o.Format != "" && o.Dequantize {
		return fmt.Errorf("--checkpoint-format %s with --dequantize: a dequantized checkpoint has no GPTQ checkpoint format: drop one of them", o.Format)
	}
	return nil
}

// checkTensorFlags is CheckFlags for llama-quantize's per-tensor flags:
// each needs --gguf; --tensor-type values parse; --include-weights and
// --exclude-weights need --imatrix and not each other;
// --leave-output-tensor and --output-tensor-type contradict each other.
func (o ConvertOptions) checkTensorFlags() error {
	given := []struct {
		flag string
		set  bool
	}{
		{"--pure", o.Pure}, {"--leave-output-tensor", o.LeaveOutputTensor}, {"--tensor-type", len(o.TensorTypes) > 0},
		{"--include-weights", len(o.IncludeWeights) > 0}, {"--exclude-weights", len(o.ExcludeWeights) > 0},
	}
	for _, f := range given {
		if f.set && o.GGUF == "" {
			return fmt.Errorf("%s sets how a GGUF file is quantized: add --gguf TYPE (e.g. q4_k_m)", f.flag)
		}
	}
	for _, v := range o.TensorTypes {
		if _, err := gguf.ParseTensorTypeOverride(v); err != nil {
			return fmt.Errorf("--tensor-type %w", err)
		}
	}
	switch {
	case len(o.IncludeWeights) > 0 && len(o.ExcludeWeights) > 0:
		return errors.New("--include-weights and --exclude-weights: use one of them, as llama-quantize")
	case (len(o.IncludeWeights) > 0 || len(o.ExcludeWeights) > 0) && o.Imatrix == "":
		return errors.New("--include-weights and --exclude-weights select the entries of an importance matrix: add --imatrix FILE")
	case o.LeaveOutputTensor && o.OutputTensorType != "":
		return fmt.Errorf("--leave-output-tensor leaves output.weight unquantized, --output-tensor-type %s would quantize it: drop one of them", o.OutputTensorType)
	}
	return nil
}

// Convert rewrites the checkpoint in o.In to o.Out, tensor by tensor (memory
// stays near one tensor): PyTorch .bin or safetensors in,
// safetensors out ("format":"pt", sharded with an index past
// MaxShardBytes), floating-point tensors in another dtype, GPTQ zero points
// in another checkpoint format, or GPTQ Linears dequantized. The output is
// built in Out's partial directory and renamed into place when complete.
func Convert(ctx context.Context, o ConvertOptions) (*ConvertSummary, error) {
	if err := o.CheckFlags(); err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	start := time.Now()
	log := o.Log
	if log == nil {
		log = io.Discard
	}
	// A dtype, shard or format conversion copies tensors without running
	// the model: a RoPE scaling the runtime does not implement does not
	// stop it (GGUF, whose metadata would have to carry it, still refuses).
	load := hfconfig.LoadAny
	if o.GGUF != "" {
		load = hfconfig.Load
	}
	cfg, err := load(o.In)
	if err != nil {
		return nil, err
	}
	if o.GGUF != "" {
		// A model GGUF does not carry (another family, a mixture of
		// experts llama.cpp would run otherwise) is refused before its
		// tokenizer or weights are read.
		if err := gguf.CheckModel(cfg); err != nil {
			return nil, fmt.Errorf("convert: --gguf %s: %w", o.GGUF, err)
		}
	}
	// An AWQ or compressed-tensors checkpoint is read as the GPTQ (v2)
	// checkpoint it equals (quantized.Config.Open) and written as one.
	var qc *gptq.QuantizeConfig
	qconf, err := quantized.ReadConfig(o.In)
	switch {
	case errors.Is(err, gptq.ErrNotQuantized):
		qconf = nil
	case err != nil:
		return nil, err
	case qconf.Method == quantized.GPTQ:
		qc = qconf.GPTQ
		// (The output's configs are written from qc alone: a disagreement
		// would be settled silently.)
		if err := gptq.CheckAgreement(o.In, qc, qconf.Source, false); err != nil {
			return nil, fmt.Errorf("convert: %w", err)
		}
	default:
		// (qc is set once its weights are opened: Open gives it.)
		qc = &gptq.QuantizeConfig{}
	}
	var target safetensors.DType
	torchDType := ""
	if o.DType != "" {
		if target, torchDType, err = dtypeOf(o.DType); err != nil {
			return nil, err
		}
	}
	switch {
	case o.Dequantize && qc == nil:
		return nil, fmt.Errorf("convert: %s is not a GPTQ checkpoint: nothing to dequantize", o.In)
	case o.Format != "" && qc == nil:
		return nil, fmt.Errorf("convert: %s is not a GPTQ checkpoint: it has no checkpoint format to change", o.In)
	case o.Format != "" && o.Format != gptq.FormatV1 && o.Format != gptq.FormatV2:
		return nil, fmt.Errorf("convert: checkpoint format %q: want %q or %q", o.Format, gptq.FormatV1, gptq.FormatV2)
	}
	if o.Dequantize && target == "" {
		target, torchDType = safetensors.F16, "float16"
	}
	src, kind, err := weights.OpenDir(o.In)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	// A multimodal checkpoint's text model is read under its own names, the
	// vision tower and projector as they are (written back under the
	// checkpoint's names: DiskName).
	if err := weights.ForText(src, cfg); err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	// A fused module (Phi-3's qkv_proj, gate_up_proj) is converted as its
	// parts (package fused) and written fused again (fused.Joiner).
	base, mods := src, fused.Modules(cfg)
	var fset *fused.Set
	if mods != nil {
		if fset, err = fused.Open(src, cfg.NumHiddenLayers, mods); err != nil {
			return nil, fmt.Errorf("convert: %w", err)
		}
		src = fset
	}
	// A qwen3_vl_moe's fused experts (floating point) read as per-expert
	// Linears, which GGUF stacks as llama.cpp's converter does; a
	// safetensors output would have to fuse them again for transformers'
	// Qwen3VLMoe, which is not written.
	if x, err := fused.OpenExperts(src, cfg); err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	} else if x != weights.Set(src) {
		if o.GGUF == "" {
			return nil, fmt.Errorf("convert: %s: a qwen3_vl_moe checkpoint whose experts are fused (mlp.experts.gate_up_proj and down_proj): %w: of its conversions only --gguf is written (quantize reads it as it is)", o.In, hfconfig.ErrUnsupported)
		}
		src = x
	}
	fromGPTQ := qconf == nil || qconf.Method == quantized.GPTQ
	from := "" // the quant_method of an AWQ or compressed-tensors input
	if !fromGPTQ {
		from = string(qconf.Method)
	}
	if !fromGPTQ {
		linears, err := model.QuantLinears(cfg)
		if err != nil {
			return nil, fmt.Errorf("convert: %w", err)
		}
		if src, qc, err = qconf.Open(src, linears); err != nil {
			return nil, fmt.Errorf("convert: %w", err)
		}
	}
	if cfg.FusedExperts() && o.GGUF == "" && (qc == nil || o.Dequantize) {
		// transformers' Qwen3VLMoe holds its experts fused: a
		// floating-point checkpoint of per-expert Linears would load
		// without them.
		return nil, fmt.Errorf("convert: %s: a floating-point qwen3_vl_moe checkpoint would be written with per-expert Linears, which transformers' Qwen3VLMoe does not read (it fuses its experts): %w: of its conversions to floating point only --gguf is written", o.In, hfconfig.ErrUnsupported)
	}
	if qc != nil && !o.Dequantize && o.DType != "" {
		return nil, fmt.Errorf("convert: --dtype %s needs --dequantize on a GPTQ checkpoint: without it the plain tensors are copied as they are (%s), not converted", o.DType, plainDTypes(src.Infos()))
	}
	// A checkpoint that config.json does not describe is refused before
	// anything is written, as every loading command refuses it: tensors the
	// config has no place for would be copied forward (or, into GGUF,
	// dropped), and missing ones would make an output no loader runs.
	if err := model.CheckExplained(o.In, src.Names(), cfg, qc); err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	if err := model.CheckComplete(o.In, src.Names(), cfg, qc); err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	// Tensors of other shapes than the configs give (a hidden_size or bits
	// that disagrees with the weights) would be copied into a checkpoint no
	// loader runs, or a GPTQ format change would unpack them wrongly.
	if err := model.CheckShapes(o.In, src.Infos(), cfg, qc); err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	// A dequantized checkpoint and GGUF are written without the Linear
	// biases the config gives none: one that is not zeros, which AutoGPTQ's
	// QuantLinear adds or a config's mlp_bias allows, would be dropped.
	// Biases absent or zeros are a no-op and pass, whatever the config
	// says. The biases the model adds (Qwen2's q/k/v, llama's
	// attention_bias: model.CheckBiases passes them) are kept; GGUF refuses
	// a llama file's (gguf.Convert). Other outputs copy them all.
	if (qc != nil && o.Dequantize) || o.GGUF != "" {
		if err := model.CheckBiases(src, cfg); err != nil {
			return nil, fmt.Errorf("convert: %w (the output would be written without it)", err)
		}
	}
	if o.GGUF != "" {
		// (a llama config's attention_bias: the runtime adds it, the GGUF
		// file has no tensor for it; refused here for a dry run too)
		if err := gguf.CheckBiases(gguf.FromWeights(src), cfg); err != nil {
			return nil, fmt.Errorf("convert: %w", err)
		}
	}
	if o.GGUF != "" {
		return convertGGUF(ctx, o, cfg, qc, src, kind, start, log)
	}
	if err := CheckOut(o.Out, o.In, o.Force); err != nil {
		return nil, err
	}
	sum := &ConvertSummary{In: o.In, Out: o.Out, Source: kind, Overflows: map[string]int{}}
	// Safetensors keep their layout (tensor order, metadata); other sources
	// are written in state-dict order.
	names := slices.SortedFunc(slices.Values(src.Names()), compareNames)
	meta := map[string]string{}
	// (An AWQ or compressed-tensors input is written in state-dict order:
	// its files' names are not the GPTQ view's.)
	if set, ok := base.(*safetensors.Set); ok && fromGPTQ {
		names = set.FileOrder()
		if fset != nil {
			names = fset.Expand(names)
		}
		meta = set.Metadata()
		if _, ok := meta["gptq_checkpoint_format"]; ok && o.Format != "" {
			meta["gptq_checkpoint_format"] = string(o.Format)
		}
		if o.Dequantize {
			for k := range meta {
				if strings.HasPrefix(k, "gptq_") {
					delete(meta, k)
				}
			}
		}
	}
	var plan []outTensor
	quantized := map[string]bool{} // module names of GPTQ Linears
	if qc != nil {
		for _, n := range names {
			if m, ok := strings.CutSuffix(n, ".qweight"); ok {
				quantized[m] = true
			}
		}
	}
	for _, n := range names {
		t, err := src.Tensor(n)
		if err != nil {
			return nil, err
		}
		module, suffix := splitModule(n)
		// A bias the config gives the module stays beside its dequantized
		// weight, in the weights' dtype.
		keepBias := o.Dequantize && suffix == "bias" && configBias(cfg, module)
		switch {
		case quantized[module] && o.Dequantize && !keepBias:
			if suffix != "qweight" {
				continue // qzeros, scales and g_idx go into the weight
			}
			mod, lin := module, gptq.Linear{Bits: qc.Bits, GroupSize: qc.GroupSize, Format: qc.Format()}
			// qweight [K*bits/32, N]; g_idx [K] gives K.
			g, err := src.Tensor(mod + ".g_idx")
			if err != nil {
				return nil, err
			}
			if len(t.Shape) != 2 || len(g.Shape) != 1 {
				return nil, fmt.Errorf("%s: tensor %q %v or %q %v: want 2-D qweight and 1-D g_idx", t.File, n, t.Shape, mod+".g_idx", g.Shape)
			}
			lin.K, lin.N = g.Shape[0], t.Shape[1]
			dt := target
			plan = append(plan, outTensor{
				info: safetensors.TensorInfo{Name: mod + ".weight", DType: dt, Shape: []int{lin.N, lin.K}},
				make: func() ([]byte, error) {
					w, err := readLinear(src, mod, lin)
					if err != nil {
						return nil, err
					}
					return encodeFloats(w, dt, mod+".weight", o.AllowOverflow, sum.Overflows)
				},
			})
		case quantized[module] && suffix == "qzeros" && o.Format != "" && o.Format != qc.Format():
			name, from, to := n, qc.Format(), o.Format
			G, cols := t.Shape[0], 0
			if len(t.Shape) == 2 {
				cols = t.Shape[1]
			}
			N := cols * 32 / qc.Bits
			plan = append(plan, outTensor{info: t.TensorInfo, make: func() ([]byte, error) {
				return convertZeros(src, name, G, N, qc.Bits, from, to)
			}})
		case isFloat(t.DType) && target != "" && !(qc != nil && quantized[module] && !keepBias):
			name, dt := n, target
			info := t.TensorInfo
			info.DType = dt
			toF16 := ""
			if dt == safetensors.F16 && t.DType != dt {
				toF16 = name
			}
			plan = append(plan, outTensor{info: info, toF16: toF16, make: func() ([]byte, error) {
				t, err := src.Tensor(name)
				if err != nil {
					return nil, err
				}
				if t.DType == dt {
					return t.Data, nil
				}
				f, err := t.Float32()
				if err != nil {
					return nil, err
				}
				return encodeFloats(f, dt, name, o.AllowOverflow, sum.Overflows)
			}})
		default:
			name := n
			plan = append(plan, outTensor{info: t.TensorInfo, make: func() ([]byte, error) {
				t, err := src.Tensor(name)
				return t.Data, err
			}})
		}
	}
	// PyTorch checkpoints store tied weights twice (one storage, two names);
	// safetensors keeps one and transformers ties the other at load.
	if cfg.TieWordEmbeddings && kind != "safetensors" {
		if i := slices.IndexFunc(plan, func(p outTensor) bool { return p.info.Name == "lm_head.weight" }); i >= 0 {
			plan = slices.Delete(plan, i, i+1)
			sum.Dropped = append(sum.Dropped, "lm_head.weight (tied to model.embed_tokens.weight)")
		}
	}
	// Plain tensors whose values fp16 cannot hold are refused before
	// anything is written, one tensor read at a time, where the refusal
	// came after the last tensor was written.
	if target == safetensors.F16 && !o.AllowOverflow {
		over := map[string]int{}
		for _, p := range plan {
			if p.toF16 == "" {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			t, err := src.Tensor(p.toF16)
			if err != nil {
				return nil, err
			}
			f, err := t.Float32()
			if err != nil {
				return nil, err
			}
			if n := f16Overflows(f); n > 0 {
				over[p.toF16] = n
			}
			release(src, p.toF16)
		}
		if len(over) > 0 {
			return nil, overflowError(over)
		}
	}
	tmp := PartialDir(o.Out)
	if _, err := os.Lstat(tmp); err == nil {
		if !o.Force {
			return nil, fmt.Errorf("%s exists (left by an interrupted convert?): remove it or use --force", tmp)
		}
		if err := os.RemoveAll(tmp); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	infos := make([]safetensors.TensorInfo, len(plan))
	for i, p := range plan {
		infos[i] = p.info
	}
	join, err := fused.Join(infos, cfg.NumHiddenLayers, mods)
	if err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	wopts := safetensors.WriterOptions{MaxShardBytes: o.MaxShardBytes, Metadata: meta}
	if set, ok := base.(*safetensors.Set); ok {
		// A multimodal checkpoint's text model under the input's prefix.
		wopts.Rename = set.DiskName
	}
	w, err := safetensors.Create(tmp, join.Infos(), wopts)
	if err != nil {
		return nil, err
	}
	write := func(name string, data []byte) error {
		out, err := join.Add(name, data)
		for _, t := range out {
			if err := w.Write(t.Name, t.Data); err != nil {
				return err
			}
		}
		return err
	}
	for i, p := range plan {
		if err := ctx.Err(); err != nil {
			w.Abort()
			return nil, err
		}
		data, err := p.make()
		if err == nil {
			err = write(p.info.Name, data)
		}
		if err != nil {
			w.Abort()
			return nil, fmt.Errorf("convert: %w", err)
		}
		// A dequantized weight is checked as it is made (dequantizing
		// twice would double the work): the first refuses at once.
		if len(sum.Overflows) > 0 && !o.AllowOverflow {
			w.Abort()
			return nil, overflowError(sum.Overflows)
		}
		release(src, p.info.Name)
		if o.Progress != nil {
			o.Progress(i+1, len(plan))
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	sum.Files = w.Shards()
	if len(sum.Files) > 1 {
		sum.Files = append(sum.Files, "model"+safetensors.IndexSuffix)
	}
	// Configs and the files that go along unchanged.
	extra := map[string]any{}
	if torchDType != "" {
		for _, k := range cfg.DTypeKeys() {
			extra[k] = torchDType
		}
		// The vision tensors are converted too: a vision_config that
		// names its dtype says the new one (transformers loads each
		// sub-model in its config's dtype).
		if vc, ok := cfg.Outer["vision_config"].(map[string]any); ok {
			vc = maps.Clone(vc)
			named := false
			for _, k := range []string{"dtype", "torch_dtype"} {
				if _, ok := vc[k]; ok {
					vc[k], named = torchDType, true
				}
			}
			if named {
				extra["vision_config"] = vc
			}
		}
	}
	var qcOut *gptq.QuantizeConfig
	var qcExtraOut map[string]any
	if qc != nil && !o.Dequantize {
		c := *qc
		if o.Format != "" {
			c.CheckpointFormat = string(o.Format)
		}
		if c.ModelFileBaseName == nil || *c.ModelFileBaseName != "model" {
			base := "model"
			c.ModelFileBaseName = &base
		}
		// The input's dynamic and modules_in_block_to_quantize (which say
		// which modules it left unquantized) go over as they are, with
		// the other keys of gptqExtraKeys: quantize_config.json's rules of
		// every kind in their order (config.json's block is sorted).
		blockExtra, qcExtra := map[string]any{}, map[string]any{}
		if fromGPTQ {
			c.Dynamic, c.ModulesInBlockToQuantize = nil, nil
			if blockExtra, qcExtra, err = gptqExtraKeys(cfg, qconf.Source, c.Format()); err != nil {
				return nil, err
			}
		}
		// (From AWQ or compressed-tensors, c.Dynamic holds a skip rule for
		// each module they leave unquantized: written as GPTQModel's
		// dynamic key; none of their own keys go over.)
		qcOut = &c
		block := map[string]any{}
		b, err := json.Marshal(c.ConfigJSONBlock())
		if err == nil {
			err = json.Unmarshal(b, &block)
		}
		if err != nil {
			return nil, err
		}
		for k, v := range blockExtra {
			if _, ok := block[k]; !ok {
				block[k] = v
			}
		}
		extra["quantization_config"] = block
		qcExtraOut = qcExtra
	}
	if o.Dequantize {
		extra["quantization_config"] = hfconfig.Remove
	}
	cfgJSON, err := cfg.MarshalWith(extra)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "config.json"), cfgJSON, 0o644); err != nil {
		return nil, err
	}
	if qcOut != nil {
		b, err := qcOut.MarshalQuantizeConfigWith(qcExtraOut)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(tmp, "quantize_config.json"), b, 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "README.md"), convertCard(o, cfg, qc, from, kind, torchDType), 0o644); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(o.In)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		n := e.Name()
		if skipOnConvert(n) {
			continue
		}
		// A link to a file is copied as the file: a Hugging Face cache
		// snapshot's files are links to ../../blobs/<hash>.
		fi, err := os.Stat(filepath.Join(o.In, n))
		if err != nil {
			// A link whose blob is missing (a download cut short).
			return nil, fmt.Errorf("convert: %s cannot be copied to the output: %w", filepath.Join(o.In, n), err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		if err := copyFile(filepath.Join(o.In, n), filepath.Join(tmp, n)); err != nil {
			return nil, err
		}
	}
	if err := copyChatTemplates(o.In, tmp); err != nil {
		return nil, err
	}
	if sum.SizeBytes, err = weightBytes(tmp); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(o.Out); err != nil { // --force, checked by CheckOut
		return nil, err
	}
	if err := os.Rename(tmp, o.Out); err != nil {
		return nil, err
	}
	done = true
	syncParent(o.Out)
	sum.Tensors = len(join.Infos())
	if len(sum.Overflows) == 0 {
		sum.Overflows = nil
	}
	sum.Seconds = time.Since(start).Seconds()
	fmt.Fprintf(log, "convert: %s (%s) → %s: %d tensors, %s\n", o.In, kind, o.Out, sum.Tensors, FormatSize(sum.SizeBytes))
	return sum, nil
}

// gptqExtraKeys returns the keys of the input's GPTQ configs that Convert
// does not write itself (GPTQModel's dynamic, lm_head and meta,
// Transformers' modules_in_block_to_quantize, use_exllama, ...), which
// loaders read to know which modules are quantized and how: those of
// config.json's quantization_config (else of the file qsrc) for the
// output's block, those of qsrc (else of the block) for its
// quantize_config.json. GPTQModel's older "format" key, a checkpoint
// format, is set to format.
func gptqExtraKeys(cfg *hfconfig.Config, qsrc string, format gptq.Format) (block, qc map[string]any, err error) {
	inConfig, _ := cfg.Raw["quantization_config"].(map[string]any)
	var inFile map[string]any
	var fileDynamic json.RawMessage
	if filepath.Base(qsrc) != "config.json" {
		b, err := os.ReadFile(qsrc)
		if err != nil {
			return nil, nil, err
		}
		d := json.NewDecoder(strings.NewReader(string(b)))
		d.UseNumber()
		if err := d.Decode(&inFile); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", qsrc, err)
		}
		// GPTQModel's dynamic rules apply in file order (the first match
		// decides): as raw JSON they keep it, where a map would sort them.
		// (config.json's block is written sorted, as transformers does.)
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(b, &raw); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", qsrc, err)
		}
		fileDynamic = raw["dynamic"]
	}
	clean := func(m map[string]any, fileKeys bool) map[string]any {
		out := maps.Clone(m)
		if fileKeys {
			// AutoGPTQ's names of the weight file: quantize_config.json's only.
			delete(out, "model_name_or_path")
			delete(out, "model_file_base_name")
		}
		if _, ok := out["format"]; ok {
			out["format"] = string(format)
		}
		return out
	}
	fileKeys := func() map[string]any {
		out := clean(inFile, false)
		if fileDynamic != nil {
			out["dynamic"] = fileDynamic
		}
		return out
	}
	switch {
	case inConfig != nil && inFile != nil:
		return clean(inConfig, false), fileKeys(), nil
	case inConfig != nil:
		return clean(inConfig, false), clean(inConfig, false), nil
	default:
		return clean(inFile, true), fileKeys(), nil
	}
}

// convertCard is the output's README.md: the input's model card (license,
// usage) with "converted_by: gptqtool" added to its front matter, or for
// a dequantized checkpoint (whose card described the quantization) a short
// card saying where it came from. The key also marks the directory as one
// --force may replace.
// from is the quant_method of an AWQ or compressed-tensors input ("" for
// others): its card then says that the output is GPTQ.
func convertCard(o ConvertOptions, cfg *hfconfig.Config, qc *gptq.QuantizeConfig, from, kind, dtype string) []byte {
	mark := "converted_by: gptqtool " + o.Version + "\n"
	// A GPTQ checkpoint given the other checkpoint format: the card says
	// so, and a gptqtool card's zero points phrase names the new format.
	note, oldZeros, newZeros := "", "", ""
	if qc != nil && o.Format != "" && o.Format != qc.Format() {
		how := zeroPoints(qc.Sym, o.Format)
		if o.Format == gptq.FormatV2 {
			how += "; ExLlama v1 reads checkpoint_format gptq only" // spec §1.4, §3
		}
		note = fmt.Sprintf("%s%s (%s).\n\n", formatNotePrefix, o.Format, how)
		oldZeros, newZeros = zeroPoints(qc.Sym, qc.Format()), zeroPoints(qc.Sym, o.Format)
	}
	in, err := os.ReadFile(filepath.Join(o.In, "README.md"))
	if err == nil && !o.Dequantize {
		card := string(in)
		front, body := "", card
		if rest, ok := strings.CutPrefix(card, "---\n"); ok {
			if f, b, ok := strings.Cut(rest, "\n---\n"); ok {
				// A card of an earlier conversion: its converted_by line is
				// replaced, as YAML readers (the Hub's) refuse a key twice.
				var lines []string
				for _, l := range strings.Split(f, "\n") {
					if !strings.HasPrefix(l, "converted_by:") {
						lines = append(lines, l)
					}
				}
				front, body = strings.Join(lines, "\n")+"\n", b
			}
		}
		if from != "" {
			body = fmt.Sprintf("Converted by gptqtool from %s to GPTQ (checkpoint_format %s): the same codes, scales and zero points.\n\n", from, outFormat(o, qc)) + strings.TrimLeft(body, "\n")
		}
		if note != "" && from == "" {
			// An earlier conversion's note of the format goes.
			var kept []string
			for _, l := range strings.SplitAfter(body, "\n") {
				if !strings.HasPrefix(l, formatNotePrefix) {
					kept = append(kept, l)
				}
			}
			body = strings.ReplaceAll(strings.TrimLeft(strings.Join(kept, ""), "\n"), oldZeros, newZeros)
			body = note + cardExLlama(body, cfg, *qc, o.Format)
		}
		return []byte("---\n" + mark + front + "---\n\n" + strings.TrimLeft(body, "\n"))
	}
	name, _ := modelID(o.In)
	what := fmt.Sprintf("Converted from %s (%s weights)", name, kind)
	if qc != nil && o.Dequantize {
		gs := fmt.Sprint(qc.GroupSize)
		if qc.GroupSize == -1 {
			gs = "none"
		}
		// The runtime dequantizes to fp32: fp16 and bf16 round once more.
		how := "each weight as gptqtool's runtime dequantizes it, rounded once more to " + dtype
		if dtype == "float32" {
			how = "exactly as gptqtool's runtime dequantizes it"
		}
		method := "GPTQ"
		if from != "" {
			method = from
		}
		what = fmt.Sprintf("Dequantized from %s (%s %d-bit, group size %s, act order %v) to %s by gptqtool %s, %s", name, method, qc.Bits, gs, qc.DescAct, dtype, o.Version, how)
		return []byte(fmt.Sprintf("---\nbase_model: %s\n%s---\n\n# %s\n\n%s.\n", name, mark, name, what))
	}
	if from != "" {
		note, what = "", fmt.Sprintf("Converted from %s (%s, %s weights) to GPTQ (checkpoint_format %s, the same codes, scales and zero points)", name, from, kind, outFormat(o, qc))
	}
	return []byte(fmt.Sprintf("---\nbase_model: %s\n%s---\n\n# %s\n\n%s%s by gptqtool %s.\n", name, mark, name, note, what, o.Version))
}

// outFormat is the checkpoint format of Convert's GPTQ output.
func outFormat(o ConvertOptions, qc *gptq.QuantizeConfig) gptq.Format {
	if o.Format != "" {
		return o.Format
	}
	return qc.Format()
}

// formatNotePrefix begins the line of a converted card that names the
// checkpoint format convert gave it.
const formatNotePrefix = "Converted by gptqtool to checkpoint_format "

// release drops the pages of the source tensors behind an output tensor
// from resident memory (mapped safetensors; others hold nothing), so that
// converting a 15 GB checkpoint does not make a 15 GB process.
// cardExLlama rewrites the ExLlama column of a model card's branch table
// (ModelCard's) for checkpoints in format to: each row's Bits, GS and Act
// Order, with qc's sym, give what ExLlama v1 makes of it (never Yes of
// gptq_v2, spec §3). A row it cannot read keeps its cell, but gptq_v2
// makes it No all the same.
func cardExLlama(body string, cfg *hfconfig.Config, qc gptq.QuantizeConfig, to gptq.Format) string {
	lines := strings.SplitAfter(body, "\n")
	col := map[string]int{}
	for i, l := range lines {
		if !strings.HasPrefix(l, "|") {
			col = map[string]int{} // a table ended
			continue
		}
		cells := strings.Split(strings.TrimRight(l, "\n"), "|")
		if len(col) == 0 {
			for j, c := range cells {
				col[strings.TrimSpace(c)] = j
			}
			if _, ok := col["ExLlama"]; !ok {
				col = map[string]int{"": -1} // another table: left alone
			}
			continue
		}
		e, ok := col["ExLlama"]
		if !ok || e >= len(cells) || strings.HasPrefix(l, "|---") {
			continue
		}
		yes := false
		if to != gptq.FormatV2 {
			row := qc
			row.CheckpointFormat = string(to)
			cell := func(k string) string {
				if j, ok := col[k]; ok && j < len(cells) {
					return strings.TrimSpace(cells[j])
				}
				return ""
			}
			bits, err := strconv.Atoi(cell("Bits"))
			gs, act := cell("GS"), cell("Act Order")
			if err != nil || (act != "Yes" && act != "No") {
				continue
			}
			row.Bits, row.DescAct, row.GroupSize = bits, act == "Yes", -1
			if gs != "None" {
				if row.GroupSize, err = strconv.Atoi(gs); err != nil {
					continue
				}
			}
			yes = exllamaOK(row, cfg)
		}
		cells[e] = " " + yesNo(yes) + " "
		lines[i] = strings.Join(cells, "|") + strings.TrimPrefix(l, strings.TrimRight(l, "\n"))
	}
	return strings.Join(lines, "")
}

func release(src Source, name string) {
	r, ok := src.(interface{ Release(...string) })
	if !ok {
		return
	}
	names := []string{name}
	if module, ok := strings.CutSuffix(name, ".weight"); ok {
		names = append(names, module+".qweight", module+".qzeros", module+".scales", module+".g_idx")
	}
	r.Release(names...)
}

// skipOnConvert names the files of the input that Convert writes itself or
// drops: weights, their indexes, configs it rewrites, and the model card
// (which describes the input).
func skipOnConvert(name string) bool {
	switch name {
	case "config.json", "quantize_config.json", "quant_config.json", "README.md", progressFile, lockFile:
		return true
	}
	for _, suffix := range []string{".safetensors", ".bin", ".index.json", ".pt", ".pth", ".gguf"} {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

// splitModule splits "model.layers.0.self_attn.q_proj.qweight" into the
// module and the last name component.
// configBias reports whether cfg gives module, a decoder layer's Linear
// ("model.layers.3.self_attn.q_proj"), a bias (hfconfig.Config.LinearBias).
func configBias(cfg *hfconfig.Config, module string) bool {
	rest, ok := strings.CutPrefix(module, "model.layers.")
	if !ok {
		return false
	}
	_, m, _ := strings.Cut(rest, ".")
	return cfg.LinearBias(m)
}

func splitModule(name string) (string, string) {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return "", name
	}
	return name[:i], name[i+1:]
}

// compareNames orders tensor names with their numbers compared as numbers
// (model.layers.2 before model.layers.10), as a state dict lists them.
func compareNames(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := range min(len(pa), len(pb)) {
		if pa[i] == pb[i] {
			continue
		}
		na, ea := strconv.Atoi(pa[i])
		nb, eb := strconv.Atoi(pb[i])
		if ea == nil && eb == nil {
			return cmp.Compare(na, nb)
		}
		return strings.Compare(pa[i], pb[i])
	}
	return cmp.Compare(len(pa), len(pb))
}

// readLinear reads and dequantizes one GPTQ Linear (spec §1.1) to [N, K]
// float32, exactly as the runtime does.
func readLinear(src Source, module string, l gptq.Linear) ([]float32, error) {
	ints := func(suffix string) ([]int32, error) {
		t, err := src.Tensor(module + suffix)
		if err != nil {
			return nil, err
		}
		if t.DType != safetensors.I32 {
			return nil, fmt.Errorf("%s: tensor %q is %s, want I32", t.File, module+suffix, t.DType)
		}
		return t.Int32()
	}
	var err error
	if l.QWeight, err = ints(".qweight"); err != nil {
		return nil, err
	}
	if l.QZeros, err = ints(".qzeros"); err != nil {
		return nil, err
	}
	if l.GIdx, err = ints(".g_idx"); err != nil {
		return nil, err
	}
	st, err := src.Tensor(module + ".scales")
	if err != nil {
		return nil, err
	}
	if st.DType != safetensors.F16 {
		return nil, fmt.Errorf("%s: tensor %q is %s, want F16", st.File, module+".scales", st.DType)
	}
	l.Scales = make([]uint16, len(st.Data)/2)
	for i := range l.Scales {
		l.Scales[i] = binary.LittleEndian.Uint16(st.Data[2*i:])
	}
	if err := l.Validate(module); err != nil {
		return nil, fmt.Errorf("%s: %w", st.File, err)
	}
	return l.Dequantize()
}

// convertZeros rewrites one qzeros tensor from one checkpoint format to
// the other (spec §1.4: v1 stores zero-1, v2 the zero itself).
func convertZeros(src Source, name string, G, N, bits int, from, to gptq.Format) ([]byte, error) {
	t, err := src.Tensor(name)
	if err != nil {
		return nil, err
	}
	words, err := t.Int32()
	if err != nil {
		return nil, err
	}
	z, err := gptq.UnpackQZeros(words, G, N, bits, from)
	if err == nil {
		for i, v := range z {
			if int(v) >= 1<<bits && to == gptq.FormatV2 {
				err = fmt.Errorf("zero point %d at [%d, %d] does not fit %d bits in format %q", v, i/N, i%N, bits, to)
				break
			}
		}
	}
	var out []int32
	if err == nil {
		out, err = gptq.PackQZeros(z, G, N, bits, to)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", t.File, name, err)
	}
	b := make([]byte, 4*len(out))
	for i, v := range out {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
	}
	return b, nil
}

// encodeFloats writes f in dtype dt. For f16, values past its range are
// counted in overflows[name] and clamped to ±65504 (the caller refuses the
// conversion unless allowed).
// f16Overflows counts the finite values of f that round to ±Inf in fp16
// (|v| >= 65520, half way past 65504).
func f16Overflows(f []float32) int {
	n := 0
	for _, v := range f {
		if math.Abs(float64(v)) >= 65520 && !math.IsInf(float64(v), 0) {
			n++
		}
	}
	return n
}

// overflowError refuses the tensors of over (name → count of values beyond
// fp16's range), naming each.
func overflowError(over map[string]int) error {
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(over)) {
		parts = append(parts, fmt.Sprintf("%s (%d)", n, over[n]))
	}
	return fmt.Errorf("convert: values beyond fp16's range (±65504) in %s: use bf16 or f32, or --allow-overflow to clamp them", strings.Join(parts, ", "))
}

func encodeFloats(f []float32, dt safetensors.DType, name string, allow bool, overflows map[string]int) ([]byte, error) {
	switch dt {
	case safetensors.F32:
		b := make([]byte, 4*len(f))
		for i, v := range f {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		return b, nil
	case safetensors.BF16:
		b := make([]byte, 2*len(f))
		half.F32ToBF16Bytes(b, f)
		return b, nil
	case safetensors.F16:
		const maxF16 = 65504
		n := 0
		for i, v := range f {
			// Values that round to ±Inf (|v| >= 65520) overflow.
			if math.Abs(float64(v)) >= 65520 && !math.IsInf(float64(v), 0) {
				n++
				f[i] = float32(math.Copysign(maxF16, float64(v)))
			}
		}
		if n > 0 {
			overflows[name] += n
		}
		b := make([]byte, 2*len(f))
		half.F32ToF16Bytes(b, f)
		return b, nil
	}
	return nil, fmt.Errorf("tensor %q: cannot write dtype %s", name, dt)
}

// GGUFTypes lists what --gguf takes: a tensor type for every weight, or
// one of llama-quantize's file types (gguf.ParseTarget).
var GGUFTypes = gguf.TargetNames()

// checkGGUFOut refuses to write a GGUF file at out where something is:
// a directory or other non-file always, a file unless force.
func checkGGUFOut(out string, force bool) error {
	fi, err := os.Stat(out)
	if err != nil {
		return nil
	}
	switch {
	case fi.IsDir():
		return fmt.Errorf("%s exists and is a directory, not a file: --force replaces only a .gguf file: choose another --out", out)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s exists and is not a file: --force replaces only a .gguf file: choose another --out", out)
	case !force:
		return fmt.Errorf("%s exists (use --force to replace it)", out)
	}
	return nil
}

// ggufFile is one GGUF file of a conversion: its target and path.
type ggufFile struct {
	target gguf.Target
	path   string
}

// ggufFiles resolves --gguf and --out: one target is written at --out (a
// .gguf path), several into the directory --out, each named as model
// repositories name them (MODEL.Q4_K_M.gguf). Every path is checked: none
// may be taken, unless by a file --force replaces.
func ggufFiles(o ConvertOptions, model string) ([]ggufFile, error) {
	targets, err := gguf.ParseTargets(o.GGUF)
	if err != nil {
		return nil, fmt.Errorf("convert: --gguf: %w", err)
	}
	var files []ggufFile
	switch {
	case len(targets) == 1:
		// A GGUF file is named *.gguf, which is also what --force checks
		// before it replaces one: a file written under another name could
		// not be replaced later.
		if !strings.EqualFold(filepath.Ext(o.Out), ".gguf") {
			return nil, fmt.Errorf("convert: --gguf writes one file: --out %s, want a path ending in .gguf", o.Out)
		}
		files = []ggufFile{{targets[0], o.Out}}
	case strings.EqualFold(filepath.Ext(o.Out), ".gguf"):
		return nil, fmt.Errorf("convert: --gguf %s writes %d files into the directory --out: %s names a file", o.GGUF, len(targets), o.Out)
	default:
		for _, t := range targets {
			files = append(files, ggufFile{t, filepath.Join(o.Out, model+"."+t.Name()+".gguf")})
		}
	}
	for _, f := range files {
		if err := checkGGUFOut(f.path, o.Force); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// ggufError is the error of a conversion whose file k failed: of a list,
// it names the file, the files written before it (complete, and kept:
// hours of work for a large model) and those not written.
func ggufError(files []ggufFile, k int, err error) error {
	if len(files) == 1 {
		return fmt.Errorf("convert: %w", err)
	}
	var tail string
	if k > 0 {
		var kept []string
		for _, f := range files[:k] {
			kept = append(kept, filepath.Base(f.path))
		}
		tail += "; written before it, complete and kept: " + strings.Join(kept, ", ")
	}
	if k < len(files)-1 {
		var left []string
		for _, f := range files[k+1:] {
			left = append(left, f.target.Name())
		}
		tail += "; not written: " + strings.Join(left, ", ")
	}
	return fmt.Errorf("convert: %s: %w%s", files[k].path, err, tail)
}

// convertGGUF writes the checkpoint as GGUF files for llama.cpp, one a
// target of --gguf, each from the checkpoint's weights (GPTQ weights
// dequantized as they are read).
func convertGGUF(ctx context.Context, o ConvertOptions, cfg *hfconfig.Config, qc *gptq.QuantizeConfig, src Source, kind string, start time.Time, log io.Writer) (*ConvertSummary, error) {
	_, name := modelID(o.In)
	files, err := ggufFiles(o, name)
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.Load(o.In)
	if err != nil {
		return nil, fmt.Errorf("convert: the GGUF file carries the tokenizer: %w", err)
	}
	if cfg.Multimodal() {
		// llama.cpp's convert_hf_to_gguf.py writes the vision tower and
		// projector to a separate mmproj file (--mmproj).
		n := 0
		for _, t := range src.Names() {
			if !hfconfig.TextModelName(t) {
				n++
			}
		}
		fmt.Fprintf(log, "convert: %s is a multimodal %s checkpoint: the GGUF file holds its text model alone, as llama.cpp's %s architecture; the vision tower and projector (%d tensors) are left out (llama.cpp reads them from a separate mmproj file, which gptqtool does not write)\n", o.In, cfg.Wrapper, gguf.FileArch(cfg), n)
	}
	fromWeights := gguf.FromWeights(src)
	plain := func(name string) ([]float32, []int, error) {
		v, shape, err := fromWeights(name)
		release(src, name)
		return v, shape, err
	}
	get := func(name string) ([]float32, []int, error) {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		module, ok := strings.CutSuffix(name, ".weight")
		if qc == nil || !ok {
			return plain(name)
		}
		qw, err := src.Tensor(module + ".qweight")
		if errors.Is(err, fs.ErrNotExist) {
			return plain(name) // a module left unquantized
		}
		if err != nil {
			return nil, nil, err
		}
		g, err := src.Tensor(module + ".g_idx")
		if err != nil {
			return nil, nil, err
		}
		if len(qw.Shape) != 2 || len(g.Shape) != 1 {
			return nil, nil, fmt.Errorf("%s: tensor %q %v or g_idx %v: want 2-D qweight and 1-D g_idx", qw.File, module+".qweight", qw.Shape, g.Shape)
		}
		l := gptq.Linear{K: g.Shape[0], N: qw.Shape[1], Bits: qc.Bits, GroupSize: qc.GroupSize, Format: qc.Format()}
		w, err := readLinear(src, module, l)
		release(src, name)
		return w, []int{l.N, l.K}, err
	}
	opts := gguf.ConvertOptions{Name: name, AllowOverflow: o.AllowOverflow, Pure: o.Pure, LeaveOutput: o.LeaveOutputTensor,
		IncludeWeights: o.IncludeWeights, ExcludeWeights: o.ExcludeWeights}
	for _, v := range o.TensorTypes {
		t, err := gguf.ParseTensorTypeOverride(v)
		if err != nil {
			return nil, fmt.Errorf("convert: --tensor-type %w", err)
		}
		opts.TensorTypes = append(opts.TensorTypes, t)
	}
	for _, f := range []struct {
		flag, v string
		t       **gguf.TensorType
	}{{"--output-tensor-type", o.OutputTensorType, &opts.OutputType}, {"--token-embedding-type", o.TokenEmbeddingType, &opts.TokenEmbeddingType}} {
		if f.v == "" {
			continue
		}
		t, err := gguf.ParseTensorType(f.v)
		if err != nil || !t.Convertible() {
			return nil, fmt.Errorf("convert: %s %s: want a type gptqtool writes (%s)", f.flag, f.v, strings.ToLower(gguf.TypeNames()))
		}
		*f.t = &t
	}
	if o.Imatrix != "" {
		if opts.Imatrix, err = gguf.ReadImatrix(o.Imatrix); err != nil {
			return nil, fmt.Errorf("convert: --imatrix: %w", err)
		}
	}
	// With tokenizer.model, the tokens, scores and types are those that
	// llama.cpp's converter writes (SentencePiece scores, its typing of
	// added tokens, [PADn] up to vocab_size); without, the tokenizer's.
	vocabOf := gguf.SentencePieceVocab
	if gguf.Arch(cfg) == "phi3" {
		vocabOf = gguf.Phi3SentencePieceVocab // (Phi3MiniModel.set_vocab's typing)
	}
	switch vocab, err := vocabOf(o.In, cfg.VocabSize); {
	case err == nil:
		opts.Vocab = vocab
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("convert: %w", err)
	}
	if v, ok := cfg.Raw["pad_token_id"].(json.Number); ok {
		if id, err := strconv.Atoi(v.String()); err == nil && id >= 0 && id < cfg.VocabSize {
			opts.PadTokenID = &id
		}
	}
	for _, v := range o.KVOverrides {
		kv, err := gguf.ParseKVOverride(v)
		if err != nil {
			return nil, fmt.Errorf("convert: --override-kv %w", err)
		}
		opts.KVOverrides = append(opts.KVOverrides, kv)
	}
	// What each file would be refused for before a tensor is read (a
	// Q2_K_S without an importance matrix, an importance matrix of another
	// model, an override the metadata cannot take) stops the run before the
	// first file is written; a dry run stops there, with the plans.
	plans := make([]*gguf.ConvertResult, len(files))
	for i, f := range files {
		opts.Type, opts.Mix = f.target.Type, f.target.Mix
		if plans[i], err = gguf.Plan(cfg, tok, opts); err != nil {
			return nil, fmt.Errorf("convert: --gguf %s: %w", f.target.Name(), err)
		}
	}
	if o.DryRun {
		return planGGUF(o, files, plans, kind, start, log), nil
	}
	// Their folders are made as a directory output's are.
	if err := os.MkdirAll(filepath.Dir(files[0].path), 0o755); err != nil {
		return nil, fmt.Errorf("convert: --out %s: %w", o.Out, err)
	}
	sum := &ConvertSummary{In: o.In, Out: o.Out, Source: kind}
	for k, f := range files {
		if o.Progress != nil {
			// One count over every file's tensors.
			opts.Progress = func(i, n int, _ string) { o.Progress(k*n+i, len(files)*n) }
		}
		// A run killed before it removed its temporary file left it hidden
		// beside the output: this run's file replaces what it was for.
		if stale, err := gguf.PartialFiles(f.path); err == nil {
			for _, p := range stale {
				if os.Remove(p) == nil {
					fmt.Fprintf(log, "convert: removed %s, the partial file of an interrupted run\n", p)
				}
			}
		}
		began := time.Now()
		opts.Type, opts.Mix = f.target.Type, f.target.Mix
		res, err := gguf.Convert(f.path, get, cfg, tok, opts)
		if errors.Is(err, gguf.ErrF16Overflow) {
			err = fmt.Errorf("%w: use --gguf bf16 or f32, or --allow-overflow to clamp them", err)
		}
		if err != nil {
			return nil, ggufError(files, k, err)
		}
		file := describeGGUF(f, res, false)
		file.Seconds = time.Since(began).Seconds()
		if fi, err := os.Stat(f.path); err == nil {
			file.SizeBytes = fi.Size()
		}
		sum.GGUF = append(sum.GGUF, file)
		sum.Files = append(sum.Files, file.File)
		sum.SizeBytes += file.SizeBytes
		sum.Tensors = len(res.Tensors)
		prefix := ""
		if len(files) > 1 {
			prefix = file.File + ": "
		}
		sum.Fallbacks = append(sum.Fallbacks, fallbacks(prefix, res)...)
		for n, c := range res.Overflows {
			if sum.Overflows == nil {
				sum.Overflows = map[string]int{}
			}
			sum.Overflows[n] = max(sum.Overflows[n], c)
		}
		for _, w := range res.Warnings {
			if !slices.Contains(sum.Warnings, w) {
				sum.Warnings = append(sum.Warnings, w)
				fmt.Fprintf(log, "warning: %s\n", w)
			}
		}
		fmt.Fprintf(log, "convert: %s (%s) → %s: %d tensors, GGUF %s, %s\n", o.In, kind, f.path, sum.Tensors, file.Type, FormatSize(file.SizeBytes))
	}
	sum.Seconds = time.Since(start).Seconds()
	return sum, nil
}

// describeGGUF describes the file f of a conversion from its result or
// plan, with its tensors if asked.
func describeGGUF(f ggufFile, res *gguf.ConvertResult, tensors bool) GGUFFile {
	file := GGUFFile{File: filepath.Base(f.path), Type: f.target.Name(), FileType: res.FileType, SizeBytes: res.SizeBytes}
	fallback := map[string]gguf.Fallback{}
	for _, fb := range res.Fallbacks {
		fallback[fb.Tensor] = fb
	}
	for _, t := range res.Tensors {
		n := int64(1)
		for _, d := range t.Shape {
			n *= int64(d)
		}
		file.Parameters += n
		file.TensorBytes += t.Size
		if tensors {
			gt := GGUFTensor{Name: t.Name, Shape: t.Shape, Type: t.Type.String(), SizeBytes: t.Size}
			if fb, ok := fallback[t.Name]; ok {
				gt.Fallback, gt.FallbackReason = fb.Want.String(), fb.Reason
			}
			file.Tensors = append(file.Tensors, gt)
		}
	}
	if file.Parameters > 0 {
		file.BitsPerWeight = float64(file.TensorBytes) * 8 / float64(file.Parameters)
	}
	return file
}

// fallbacks lists res's fallbacks as the summary does, each after prefix
// (the file's name in a list).
func fallbacks(prefix string, res *gguf.ConvertResult) []string {
	var out []string
	for _, fb := range res.Fallbacks {
		out = append(out, fmt.Sprintf("%s%s: %s instead of %s (%s)", prefix, fb.Tensor, fb.Got, fb.Want, fb.Reason))
	}
	return out
}

// planGGUF is a dry run's summary: every file of the list as its plan
// gives it, nothing written.
func planGGUF(o ConvertOptions, files []ggufFile, plans []*gguf.ConvertResult, kind string, start time.Time, log io.Writer) *ConvertSummary {
	sum := &ConvertSummary{In: o.In, Out: o.Out, Source: kind, DryRun: true}
	for i, f := range files {
		file := describeGGUF(f, plans[i], true)
		sum.GGUF = append(sum.GGUF, file)
		sum.Files = append(sum.Files, file.File)
		sum.SizeBytes += file.SizeBytes
		sum.Tensors = len(plans[i].Tensors)
		prefix := ""
		if len(files) > 1 {
			prefix = file.File + ": "
		}
		sum.Fallbacks = append(sum.Fallbacks, fallbacks(prefix, plans[i])...)
		for _, w := range plans[i].Warnings {
			if !slices.Contains(sum.Warnings, w) {
				sum.Warnings = append(sum.Warnings, w)
				fmt.Fprintf(log, "warning: %s\n", w)
			}
		}
	}
	sum.Seconds = time.Since(start).Seconds()
	return sum
}
