package gguf

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
)

// ErrUnsupportedModel is wrapped by conversion errors for checkpoints
// outside the Llama/Mistral family (Mixtral included) that llama.cpp's
// "llama" architecture runs, the Qwen2 family of its "qwen2" architecture,
// dense Qwen3 of its "qwen3", Qwen3-MoE of its "qwen3moe" and Phi-3 of
// its "phi3" (another model_type or architectures entry, a Linear bias
// other than zeros that the architecture has no tensor for, a mixture of
// experts the architecture would run otherwise).
var ErrUnsupportedModel = errors.New("unsupported model")

// ErrF16Overflow is wrapped by Convert's error for F16 weights holding
// values beyond fp16's range, which F16 would store as ±Inf, unless
// ConvertOptions.AllowOverflow clamps them.
var ErrF16Overflow = errors.New("values beyond fp16's range (±65504)")

// SupportedArchitectures lists the config.json architectures entries the
// converter accepts. The ForConditionalGeneration ones are multimodal
// checkpoints' (hfconfig.MultimodalTypes), whose text model converts as
// its own type's: Gemma3ForConditionalGeneration as Gemma3ForCausalLM
// (llama.cpp's Gemma3Model registers both), Mistral3ForConditionalGeneration
// as a llama file (its Mistral3Model is a LlamaModel), the Qwen VL ones as
// qwen2vl and qwen3vl files (FileArch); the vision tower goes to
// llama.cpp's mmproj file.
var SupportedArchitectures = []string{"LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Qwen3MoeForCausalLM", "Qwen2MoeForCausalLM", "OlmoeForCausalLM", "Phi3ForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM", "GraniteForCausalLM", "Olmo2ForCausalLM", "Gemma3ForCausalLM",
	"Gemma3ForConditionalGeneration", "Mistral3ForConditionalGeneration", "Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration", "Qwen3VLForConditionalGeneration", "Qwen3VLMoeForConditionalGeneration"}

// FileArch is general.architecture of cfg's file and the prefix of its
// hyperparameter keys: Arch, but for a Qwen VL text model (a qwen2_vl,
// qwen2_5_vl, qwen3_vl or qwen3_vl_moe checkpoint's,
// hfconfig.Config.MRoPESection) the architecture llama.cpp's converter
// writes it as, "qwen2vl", "qwen3vl" or "qwen3vlmoe": Arch's qwen2, qwen3
// and qwen3moe graphs rotating by M-RoPE
// (rope.dimension_sections), as an mmproj file's image tokens need. A text
// token's positions are equal there, so qwen2vl rotates it as plain RoPE
// does; qwen3vl's interleaved sections leave the frequency pairs past
// 3·section (two of Qwen3-VL's 64, the slowest) to a fourth position,
// which llama.cpp sets to 0 for text, a difference from transformers below
// 1e-6 radians a position.
func FileArch(cfg *hfconfig.Config) string {
	if cfg.MRoPESection != nil {
		switch Arch(cfg) {
		case "qwen2":
			return "qwen2vl"
		case "qwen3":
			return "qwen3vl"
		case "qwen3moe":
			return "qwen3vlmoe"
		}
	}
	return Arch(cfg)
}

// mropeKVs are a qwen2vl, qwen3vl or qwen3vlmoe file's M-RoPE keys, as
// the converter's Qwen2VLModel, Qwen3VLTextModel and Qwen3VLMoeTextModel
// write them: rope.dimension_sections, mrope_section padded with 0 to four
// counts (INT32); qwen3vl's and qwen3vlmoe's n_deepstack_layers, the
// vision tower's deepstack_visual_indexes count.
func mropeKVs(cfg *hfconfig.Config) []KV {
	a := FileArch(cfg)
	if a == Arch(cfg) {
		return nil
	}
	sec := make([]int32, 4)
	for i, n := range cfg.MRoPESection {
		sec[i] = int32(n)
	}
	kvs := []KV{{a + ".rope.dimension_sections", sec}}
	if a == "qwen3vl" || a == "qwen3vlmoe" {
		n := 0
		if vc, ok := cfg.Outer["vision_config"].(map[string]any); ok {
			if idx, ok := vc["deepstack_visual_indexes"].([]any); ok {
				n = len(idx)
			}
		}
		kvs = append(kvs, KV{a + ".n_deepstack_layers", uint32(n)})
	}
	return kvs
}

// Arch is the general.architecture a checkpoint of cfg converts to, and
// the prefix of its hyperparameter keys: "qwen2" for model_type qwen2
// (convert_hf_to_gguf.py's Qwen2Model, MODEL_ARCH.QWEN2), "qwen3" for
// qwen3 (Qwen3Model, MODEL_ARCH.QWEN3), "phi3" for phi3 (Phi3MiniModel,
// MODEL_ARCH.PHI3), "qwen3moe" for qwen3_moe (Qwen3MoeModel,
// MODEL_ARCH.QWEN3MOE), "qwen2moe" for qwen2_moe (Qwen2MoeModel,
// MODEL_ARCH.QWEN2MOE), "olmoe" for olmoe (OlmoeModel, MODEL_ARCH.OLMOE),
// else "llama" (mixtral included: LlamaModel writes Mixtral as a llama
// file with experts).
func Arch(cfg *hfconfig.Config) string {
	switch cfg.ModelType {
	case "qwen2", "qwen3", "phi3":
		return cfg.ModelType
	case "gemma3_text":
		return "gemma3"
	case "gemma", "gemma2", "granite", "olmo2", "olmoe":
		return cfg.ModelType
	case "qwen3_moe":
		return "qwen3moe"
	case "qwen2_moe":
		return "qwen2moe"
	}
	return "llama"
}

// QuantizationVersion is general.quantization_version: the version of
// ggml's quantized block formats (GGML_QNT_VERSION).
const QuantizationVersion = 2

// Weights gives checkpoint tensors by Hugging Face name;
// *safetensors.Set satisfies it.
type Weights interface {
	Tensor(name string) (safetensors.Tensor, error)
}

// TensorFunc returns a checkpoint tensor by Hugging Face name as float32
// values, row-major, with its shape ([out, in] for a linear weight). A GPTQ
// checkpoint is converted through a TensorFunc that dequantizes each
// linear weight.
type TensorFunc func(name string) (data []float32, shape []int, err error)

// FromWeights returns a TensorFunc reading F32, F16 and BF16 tensors from
// w, converted exactly to float32.
func FromWeights(w Weights) TensorFunc {
	return func(name string) ([]float32, []int, error) {
		t, err := w.Tensor(name)
		if err != nil {
			return nil, nil, err
		}
		v, err := t.Float32()
		if err != nil {
			return nil, nil, err
		}
		return v, t.Shape, nil
	}
}

// ConvertOptions configures a conversion.
type ConvertOptions struct {
	// Type is the tensor type of the 2-D weights and of a mixture of
	// experts' stacked 3-D ones: TypeF32 (the zero value), or any type
	// Encode writes. 1-D tensors (the RMSNorm weights) and the routers
	// (ffn_gate_inp) are always F32. A weight whose rows (the input dimension) are not a
	// multiple of the type's block size falls back as llama-quantize's
	// does (weightType: Q2_K and Q3_K to Q4_0, Q4_K to Q5_0, Q5_K to Q5_1,
	// Q6_K to Q8_0, IQ4_XS and the IQ1, IQ2 and IQ3 types to IQ4_NL, to
	// F16 where that does not fit either); ConvertResult.Fallbacks lists
	// them. Weights in the IQ1 and IQ2 types and IQ3_XXS need Imatrix, as
	// in llama-quantize (checkNeedsImatrix).
	Type TensorType
	// Mix, when its Name is set, is one of llama-quantize's file types
	// (Mixes): it picks each 2-D weight's type, and general.file_type, in
	// place of Type. Fallbacks apply as for Type.
	Mix Mix
	// OutputType and TokenEmbeddingType, when set, are llama-quantize's
	// --output-tensor-type and --token-embedding-type: the type of the
	// output weight and of token_embd, in place of what Type or Mix give
	// them (a tied token_embd, which is the output, takes
	// TokenEmbeddingType if set, else OutputType, unless Pure or a
	// TensorTypes pattern that matches it). Fallbacks apply.
	OutputType, TokenEmbeddingType *TensorType
	// Pure is llama-quantize's --pure: every 2-D weight in the file type's
	// base type (Mix.Base), the mix's rules off, the output and a tied
	// token_embd included (not Q6_K); OutputType, TokenEmbeddingType and
	// TensorTypes still apply, and so do fallbacks (the output's too:
	// Q4_K to Q5_0, where the mix's rule would give Q8_0). No effect on a
	// uniform Type, whose weights are all in it anyway.
	Pure bool
	// TensorTypes are llama-quantize's --tensor-type overrides
	// (ParseTensorTypeOverride): a 2-D weight whose GGUF name the first
	// matching pattern matches takes its type in place of the mix's (or of
	// Pure's), after TokenEmbeddingType and OutputType, which win over
	// them; fallbacks apply. As in llama-quantize they apply to quantized
	// file types only, not to F32, F16 or BF16 files. A pattern that
	// matches none of the model's 2-D weights is an error.
	TensorTypes []TensorTypeOverride
	// LeaveOutput is llama-quantize's --leave-output-tensor: output.weight
	// is written unquantized, in F16 (the type of the F16 GGUF file
	// llama-quantize quantizes from; in the file's own type for F32 and
	// BF16 files), over OutputType and TensorTypes. A model whose output
	// is tied to token_embd has no output.weight: an error, as is
	// LeaveOutput with OutputType.
	LeaveOutput bool
	// IncludeWeights and ExcludeWeights are llama-quantize's
	// --include-weights and --exclude-weights: Imatrix is used only for
	// (not for) the weights whose GGUF name contains one of the strings
	// (a substring, not a pattern: "attn_v", "blk.0."), as if the importance
	// matrix had only those entries (quantize.imatrix.entries_count
	// counts them; none left, the file is converted as without Imatrix).
	// Not both; each needs Imatrix, and an entry that contains it.
	IncludeWeights, ExcludeWeights []string
	// Imatrix, when set, weighs the quantization error of every weight
	// but Q8_0 and the float types by its columns' importance
	// (Imatrix.Importance, by GGUF name), as llama-quantize --imatrix does;
	// weights it has no entry for are quantized without
	// (ConvertResult.Warnings says which; a weight that needs one refuses
	// instead, as llama-quantize's: checkNeedsImatrix), and an entry whose
	// length is not the weight's row length is an error. Some mixes' rules
	// depend on whether it is set.
	Imatrix *Imatrix
	// Name is general.name. Default: the base name of the directory holding
	// the config.json (cfg.File), or "model" when cfg.File is empty.
	Name string
	// Vocab, when set, is written as tokenizer.ggml.tokens, scores and
	// token_type in place of the tokenizer's VocabEntries: the vocabulary
	// SentencePieceVocab builds from tokenizer.model as llama.cpp's
	// converter does. Ids past its end up to vocab_size are [PADn] pieces.
	Vocab []tokenizer.VocabEntry
	// PadTokenID sets tokenizer.ggml.padding_token_id; nil writes no pad
	// token.
	PadTokenID *int
	// Progress, when set, is called before each tensor is read, with its
	// index, the tensor count and its GGUF name.
	Progress func(i, n int, name string)
	// AllowOverflow writes the values of F16 weights beyond fp16's range
	// clamped to ±65504 (counted in ConvertResult.Overflows); otherwise
	// Convert refuses them with ErrF16Overflow, naming each tensor.
	AllowOverflow bool
	// KVOverrides are llama-quantize's --override-kv (ParseKVOverride),
	// set over the metadata Convert derives as llama-quantize sets them: a
	// key already there is removed and the pair appended, the last of a
	// key winning (applyKVOverrides). Refused before anything is written:
	// the keys the tensors' layout depends on (CheckKVOverride), a special
	// token id outside the vocabulary, quantize.imatrix.* with an
	// importance matrix (checkKVOverrides), a key Convert writes overridden
	// with a value of another type.
	KVOverrides []KV
}

// ConvertedTensor describes one tensor of the output.
type ConvertedTensor struct {
	Name string // GGUF name, "blk.0.attn_q.weight"
	// Source is the Hugging Face name, "model.layers.0.self_attn.q_proj.weight";
	// for a mixture of experts' stacked tensor, the experts' names with
	// the expert's index left out, as llama.cpp's converter names the
	// merged tensor ("model.layers.0.block_sparse_moe.experts.w1.weight").
	Source string
	Shape  []int      // row-major, as TensorInfo.Shape
	Type   TensorType // type written
	Size   int64      // bytes of its data, the padding after it aside
}

// Fallback records a weight written in another type than requested.
type Fallback struct {
	Tensor string // GGUF name
	Want   TensorType
	Got    TensorType
	Reason string
}

// ConvertResult reports what a conversion wrote.
type ConvertResult struct {
	Path     string
	FileType uint32            // general.file_type, as written (an override's)
	Tensors  []ConvertedTensor // in file order
	// SizeBytes is the file's size: header, metadata, padding and tensor
	// data (FileSize).
	SizeBytes int64
	Fallbacks []Fallback
	// Overflows counts, by Hugging Face name, the values of F16 weights
	// beyond fp16's range (clamped with AllowOverflow).
	Overflows map[string]int
	// Warnings notes behaviour llama.cpp will not reproduce (a Mistral
	// sliding window shorter than the context).
	Warnings []string
}

// FromCheckpoint converts a floating-point Hugging Face checkpoint (F32,
// F16 or BF16 tensors) to a GGUF file at path; see Convert.
func FromCheckpoint(path string, w Weights, cfg *hfconfig.Config, tok *tokenizer.Tokenizer, opts ConvertOptions) (*ConvertResult, error) {
	return Convert(path, FromWeights(w), cfg, tok, opts)
}

// Convert writes a Llama/Mistral-family model to a GGUF file at path that
// llama.cpp loads as general.architecture "llama": hyperparameters from
// cfg, the vocabulary of tok as a "llama" (SentencePiece-style) tokenizer
// or, byte-level, as a "gpt2" one, and the tensors given by get under
// llama.cpp's names, q_proj and k_proj rows permuted for llama.cpp's RoPE (PermuteQK). Tensors are read, encoded
// and written one at a time; the file appears at path only when complete.
func Convert(path string, get TensorFunc, cfg *hfconfig.Config, tok *tokenizer.Tokenizer, opts ConvertOptions) (*ConvertResult, error) {
	if cfg == nil || tok == nil || get == nil {
		return nil, errors.New("gguf convert: config, tokenizer and tensor source are required")
	}
	res, specs, infos, kvs, err := prepare(cfg, tok, opts)
	if err != nil {
		return nil, err
	}
	res.Path = path
	// The importance matrix Include/ExcludeWeights leave weighs the
	// weights.
	if opts.Imatrix, err = opts.weightedImatrix(); err != nil {
		return nil, err
	}
	if err := CheckBiases(get, cfg); err != nil {
		return nil, err
	}
	w, err := Create(path, kvs, infos)
	if err != nil {
		return nil, err
	}
	for i, s := range specs {
		if opts.Progress != nil {
			opts.Progress(i, len(specs), s.name)
		}
		vals, err := readTensor(get, s, cfg)
		if err != nil {
			w.Abort()
			return nil, err
		}
		if infos[i].Type == TypeF16 {
			var n int
			if vals, n = clampF16(vals); n > 0 {
				if res.Overflows == nil {
					res.Overflows = map[string]int{}
				}
				res.Overflows[s.source] += n
			}
		}
		var qw []float32
		if opts.Imatrix != nil && s.weight() && takesImportance(infos[i].Type) {
			qw = opts.Imatrix.Importance(s.name) // nil without an entry
		}
		if qw == nil {
			err = w.WriteFloat32(s.name, vals)
		} else {
			var data []byte
			if data, err = encodeWeighted(infos[i].Type, vals, s.shape, qw); err == nil {
				err = w.WriteTensor(s.name, data)
			} else {
				err = fmt.Errorf("gguf convert: tensor %q: %w", s.name, err)
			}
		}
		if err != nil {
			w.Abort()
			return nil, err
		}
	}
	if len(res.Overflows) > 0 && !opts.AllowOverflow {
		w.Abort()
		var parts []string
		for _, n := range slices.Sorted(maps.Keys(res.Overflows)) {
			parts = append(parts, fmt.Sprintf("%s (%d)", n, res.Overflows[n]))
		}
		return nil, fmt.Errorf("gguf convert: F16 weights: %w in %s", ErrF16Overflow, strings.Join(parts, ", "))
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return res, nil
}

// encodeWeighted is EncodeWeighted for a weight of shape [out, in], or a
// mixture of experts' stack [experts, out, in] with importances qw of one
// row of in an expert (Imatrix.Importance), each expert's rows weighed by
// its own.
func encodeWeighted(t TensorType, vals []float32, shape []int, qw []float32) ([]byte, error) {
	if len(shape) == 2 {
		return EncodeWeighted(t, vals, shape[1], qw)
	}
	n, in := len(vals)/shape[0], shape[2]
	var out []byte
	for e := range shape[0] {
		data, err := EncodeWeighted(t, vals[e*n:(e+1)*n], in, qw[e*in:(e+1)*in])
		if err != nil {
			return nil, fmt.Errorf("expert %d: %w", e, err)
		}
		out = append(out, data...)
	}
	return out, nil
}

// Check returns the error Convert would return for a model of config cfg
// converted with opts before it reads a tensor: a model outside the
// families Convert writes (or a mixture of experts llama.cpp would run
// otherwise), a type Convert does not write, a mix that needs an
// importance matrix (or an entry) it is not given, an importance matrix
// entry whose length is not its weight's row length (a stack's: a row an
// expert), a TensorTypes
// pattern that does not compile or matches no 2-D weight, LeaveOutput on
// a tied model or with OutputType, Include/ExcludeWeights together, without
// an importance matrix or naming no entry of it, a KVOverrides key that
// no file can take or (a token id) that the vocabulary cannot (Plan checks
// the metadata further). A caller writing several files from one
// checkpoint checks each before the first.
func Check(cfg *hfconfig.Config, opts ConvertOptions) error {
	if cfg == nil {
		return errors.New("gguf convert: config is required")
	}
	_, _, _, err := plan(cfg, opts)
	return err
}

// Plan returns what Convert would write for cfg, tok and opts, without
// reading a tensor or writing anything: general.file_type, every tensor's
// name, shape, type and size, the fallbacks, the warnings (but for
// Convert's overflow counts) and the file's size in bytes (SizeBytes:
// header, metadata, padding and data, the size of the file Convert
// writes). Its errors are those Convert returns before it reads a
// weight: Check's and the metadata's (KVOverrides). Convert reads the
// weights and can still refuse what only their values show: a Linear bias
// other than zeros, a tensor of another shape than cfg gives, F16 values
// beyond fp16's range.
func Plan(cfg *hfconfig.Config, tok *tokenizer.Tokenizer, opts ConvertOptions) (*ConvertResult, error) {
	if cfg == nil || tok == nil {
		return nil, errors.New("gguf convert: config and tokenizer are required")
	}
	res, _, _, _, err := prepare(cfg, tok, opts)
	return res, err
}

// prepare is plan with the metadata: the pairs Convert writes, overrides
// applied, and the file's size in res.
func prepare(cfg *hfconfig.Config, tok *tokenizer.Tokenizer, opts ConvertOptions) (*ConvertResult, []tensorSpec, []TensorInfo, []KV, error) {
	res, specs, infos, err := plan(cfg, opts)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	// The metadata records the importance matrix Include/ExcludeWeights
	// leave (quantize.imatrix.entries_count).
	if opts.Imatrix, err = opts.weightedImatrix(); err != nil {
		return nil, nil, nil, nil, err
	}
	kvs, err := modelKVs(cfg, tok, opts, res.FileType)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if kvs, err = applyKVOverrides(kvs, opts.KVOverrides); err != nil {
		return nil, nil, nil, nil, err
	}
	if i := indexKV(kvs, "general.file_type"); i >= 0 {
		if ft, ok := kvs[i].Value.(uint32); ok {
			res.FileType = ft
		}
	}
	if res.SizeBytes, err = FileSize(kvs, infos); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("gguf convert: %w", err)
	}
	return res, specs, infos, kvs, nil
}

// plan decides what Convert writes before any tensor is read: the result
// it reports (general.file_type, every tensor's type, the fallbacks, the
// warnings) and the output tensors, in file order; its errors are Check's.
func plan(cfg *hfconfig.Config, opts ConvertOptions) (*ConvertResult, []tensorSpec, []TensorInfo, error) {
	if err := CheckModel(cfg); err != nil {
		return nil, nil, nil, err
	}
	fileType, ok := fileTypes[opts.Type]
	if opts.Mix.Name != "" {
		fileType, ok = opts.Mix.FileType, true
	}
	if !ok {
		return nil, nil, nil, fmt.Errorf("gguf convert: tensor type %s: want %s", opts.Type, TypeNames())
	}
	for _, o := range []struct {
		what string
		t    *TensorType
	}{{"output tensor type", opts.OutputType}, {"token embedding type", opts.TokenEmbeddingType}} {
		if o.t != nil && !o.t.Convertible() {
			return nil, nil, nil, fmt.Errorf("gguf convert: %s %s: want %s", o.what, *o.t, TypeNames())
		}
	}
	res := &ConvertResult{FileType: fileType}
	specs := tensorSpecs(cfg)
	given := opts.Imatrix
	var err error
	if opts.Imatrix, err = opts.weightedImatrix(); err != nil {
		return nil, nil, nil, err
	}
	if err := checkKVOverrides(cfg, opts); err != nil {
		return nil, nil, nil, err
	}
	rules, err := newTypeRules(cfg, opts, specs)
	if err != nil {
		return nil, nil, nil, err
	}
	infos := make([]TensorInfo, len(specs))
	for i, s := range specs {
		typ := TypeF32
		if s.weight() {
			want, fallback := rules.want(s)
			typ = want
			if fallback {
				var fb *Fallback
				typ, fb = weightType(want, s)
				if fb != nil {
					res.Fallbacks = append(res.Fallbacks, *fb)
				}
			}
		}
		infos[i] = TensorInfo{Name: s.name, Shape: s.shape, Type: typ}
		size, err := infos[i].Size()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("gguf convert: tensor %q: shape %v %s: %w", s.name, s.shape, typ, err)
		}
		res.Tensors = append(res.Tensors, ConvertedTensor{Name: s.name, Source: s.source, Shape: slices.Clone(s.shape), Type: typ, Size: size})
	}
	if cfg.SlidingWindow > 0 && cfg.SlidingWindow < cfg.MaxPositionEmbeddings && Arch(cfg) == "phi3" {
		// The file carries phi3.attention.sliding_window, but llama.cpp's
		// phi3 loader turns the window off (llama_model_phi3::load_arch_hparams).
		res.Warnings = append(res.Warnings, fmt.Sprintf("%s: sliding_window %d < max_position_embeddings %d: llama.cpp's phi3 architecture disables the window it reads and attends to the whole context, so its outputs differ from transformers' (and gptqtool's) beyond %d tokens", cfg.File, cfg.SlidingWindow, cfg.MaxPositionEmbeddings, cfg.SlidingWindow))
	} else if cfg.SlidingWindow > 0 && cfg.SlidingWindow < cfg.MaxPositionEmbeddings && !cfg.Gemma() {
		// (gemma2's and gemma3's sliding layers attend within their
		// attention.sliding_window.)
		res.Warnings = append(res.Warnings, fmt.Sprintf("%s: sliding_window %d < max_position_embeddings %d: llama.cpp's llama architecture attends to the whole context, so outputs differ from transformers beyond %d tokens", cfg.File, cfg.SlidingWindow, cfg.MaxPositionEmbeddings, cfg.SlidingWindow))
	}
	// Weights the importance matrix as given has no entry for are
	// quantized without one (a weight that needs one was refused above).
	var unweighted []string
	for _, ti := range infos {
		if given != nil && len(ti.Shape) >= 2 && takesImportance(ti.Type) {
			if _, ok := given.Entries[ti.Name]; !ok {
				unweighted = append(unweighted, ti.Name)
			}
		}
	}
	if len(unweighted) > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the importance matrix has no entry for %s: quantized without it (llama-imatrix leaves out output.weight unless --process-output)", strings.Join(unweighted, ", ")))
	}
	for _, ti := range infos {
		if !ti.Type.Convertible() { // a guard: no mix's rule gives one (TestMixesWritten)
			return nil, nil, nil, fmt.Errorf("gguf convert: %s puts %s in %s, which gptqtool does not write: %w", targetName(opts), ti.Name, ti.Type, ErrUnsupportedType)
		}
	}
	if m := opts.Imatrix; m != nil {
		for _, ti := range infos {
			e, ok := m.Entries[ti.Name]
			if !ok || len(ti.Shape) < 2 || !takesImportance(ti.Type) {
				continue
			}
			// A weight's entry is a row of its inputs; a stack's, one an
			// expert, with a count each (or one for all: a legacy .dat
			// file's means).
			in := ti.Shape[len(ti.Shape)-1]
			switch {
			case len(ti.Shape) == 2 && (len(e.Sum2) != in || e.Counts != nil):
				if e.Counts != nil {
					return nil, nil, nil, fmt.Errorf("gguf convert: imatrix entry %q has %d counts, one a stacked weight's expert, for the weight of rows %d (an importance matrix of another model?)", ti.Name, len(e.Counts), in)
				}
				return nil, nil, nil, fmt.Errorf("gguf convert: imatrix entry %q has %d values, the weight's rows %d (an importance matrix of another model?)", ti.Name, len(e.Sum2), in)
			case len(ti.Shape) == 3 && (len(e.Sum2) != ti.Shape[0]*in || (e.Counts != nil && len(e.Counts) != ti.Shape[0])):
				return nil, nil, nil, fmt.Errorf("gguf convert: imatrix entry %q has %d values and %d counts, the stacked weight's %d experts' rows of %d (an importance matrix of another model?)", ti.Name, len(e.Sum2), max(len(e.Counts), 1), ti.Shape[0], in)
			}
		}
	}
	if err := checkNeedsImatrix(opts, infos); err != nil {
		return nil, nil, nil, err
	}
	return res, specs, infos, nil
}

// checkNeedsImatrix refuses, before anything is written, a conversion
// that llama-quantize refuses without an importance matrix: as its
// tensor_requires_imatrix, each weight in a type too coarse without one
// (requiresImatrix), token_embd and output aside, needs an entry (none
// when every such weight falls back to another type). token_embd and
// output in IQ2_XXS, IQ2_XS or IQ1_S (--token-embedding-type,
// --output-tensor-type) need one too: ggml quantizes those types only
// with importances (needsImportance), and llama-quantize aborts there.
func checkNeedsImatrix(opts ConvertOptions, infos []TensorInfo) error {
	var missing []string
	var types []TensorType
	for _, ti := range infos {
		if opts.Imatrix != nil && opts.Imatrix.Importance(ti.Name) != nil {
			continue
		}
		if ti.Name == "token_embd.weight" || ti.Name == "output.weight" {
			if needsImportance(ti.Type) {
				why := "no importance matrix is given"
				if opts.Imatrix != nil {
					why = "the importance matrix has no entry for it"
				}
				return fmt.Errorf("gguf convert: %s in %s needs importances, and %s: ggml quantizes %s only with them (llama-imatrix leaves out output.weight unless --process-output, and never has token_embd.weight)", ti.Name, ti.Type, why, ti.Type)
			}
			continue
		}
		if requiresImatrix(ti.Type, opts.Mix) {
			missing = append(missing, ti.Name)
			if !slices.Contains(types, ti.Type) {
				types = append(types, ti.Type)
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = t.String()
	}
	// opts.Imatrix is what Include/ExcludeWeights left of the one given.
	var sel string
	switch {
	case len(opts.ExcludeWeights) > 0:
		sel = "--exclude-weights " + strings.Join(opts.ExcludeWeights, ",")
	case len(opts.IncludeWeights) > 0:
		sel = "--include-weights " + strings.Join(opts.IncludeWeights, ",")
	}
	switch {
	case opts.Imatrix == nil && sel != "":
		return fmt.Errorf("gguf convert: %s needs the importance matrix's entry for each %s weight, as llama-quantize does: %s leaves it none", targetName(opts), strings.Join(names, " and "), sel)
	case opts.Imatrix == nil:
		return fmt.Errorf("gguf convert: %s needs an importance matrix (gptqtool imatrix, then --imatrix FILE), as llama-quantize does: its %s weights are too coarse without one", targetName(opts), strings.Join(names, " and "))
	case sel != "":
		sel = " (after " + sel + ")"
	}
	return fmt.Errorf("gguf convert: %s needs the importance matrix's entry for each %s weight: none for %s%s", targetName(opts), strings.Join(names, " and "), strings.Join(missing, ", "), sel)
}

// requiresImatrix reports whether llama-quantize refuses to write a weight
// (token_embd and output aside) of type t in a file of mix m without its
// importances (tensor_requires_imatrix): IQ3_XXS (and the 1- and 2-bit
// i-quants) in any file, Q2_K in Q2_K_S (Mix.NeedsImatrix).
func requiresImatrix(t TensorType, m Mix) bool {
	switch t {
	case TypeIQ3_XXS, TypeIQ2_XXS, TypeIQ2_XS, TypeIQ2_S, TypeIQ1_S, TypeIQ1_M:
		return true
	}
	return m.NeedsImatrix && t == m.Base
}

// targetName names what opts converts to: the mix, else the type.
func targetName(opts ConvertOptions) string {
	return Target{Type: opts.Type, Mix: opts.Mix}.Name()
}

// clampF16 returns vals with the values that F16 would round to ±Inf
// (|v| >= 65520, Inf itself aside) clamped to ±65504, and how many there
// were; vals itself when there are none, else a copy (get's slices are
// not ours to change).
func clampF16(vals []float32) ([]float32, int) {
	const maxF16 = 65504
	over := func(v float32) bool { return math.Abs(float64(v)) >= 65520 && !math.IsInf(float64(v), 0) }
	if !slices.ContainsFunc(vals, over) {
		return vals, 0
	}
	out := slices.Clone(vals)
	n := 0
	for i, v := range out {
		if over(v) {
			out[i] = float32(math.Copysign(maxF16, float64(v)))
			n++
		}
	}
	return out, n
}

// fileTypes maps the requested type to general.file_type (llama.h
// llama_ftype): ALL_F32, MOSTLY_F16, MOSTLY_BF16, MOSTLY_Q8_0, and for
// the other types the llama_ftype of their name (MOSTLY_Q4_0, MOSTLY_Q2_K,
// MOSTLY_IQ4_XS, …) or, where llama.h has none, the _S mix, whose rules
// keep the fewest weights in more bits (MOSTLY_Q3_K_S, MOSTLY_Q4_K_S,
// MOSTLY_Q5_K_S; Q3_K_S leaves every weight of a dense model but the
// output, and a 70B's attn_v, in Q3_K). The id only labels the file:
// llama.cpp takes each tensor's type from its tensor info.
var fileTypes = map[TensorType]uint32{
	TypeF32:  0,
	TypeF16:  1,
	TypeQ8_0: 7,
	TypeQ2_K: 10,
	TypeQ3_K: 11,
	TypeQ4_K: 14,
	TypeQ5_K: 16,
	TypeQ6_K: 18,
	TypeBF16: 32,

	TypeQ4_0:   2,
	TypeQ4_1:   3,
	TypeQ5_0:   8,
	TypeQ5_1:   9,
	TypeIQ4_NL: 25,
	TypeIQ4_XS: 30,

	TypeIQ2_XXS: 19,
	TypeIQ2_XS:  20,
	TypeIQ3_XXS: 23,
	TypeIQ1_S:   24,
	TypeIQ3_S:   26,
	TypeIQ2_S:   28,
	TypeIQ1_M:   31,
}

// TypeNames lists the types Convert writes, in llama.h's order of
// their file types.
func TypeNames() string {
	ts := slices.SortedFunc(maps.Keys(fileTypes), func(a, b TensorType) int { return cmp.Compare(fileTypes[a], fileTypes[b]) })
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.String()
	}
	return orList(names)
}

// CheckModel refuses, wrapping ErrUnsupportedModel and naming the config
// file, a model Convert does not write (Check's first check, which needs
// no options): a model_type or architecture
// outside its list, a mixture of experts llama.cpp would run otherwise
// (checkMoE), Gemma 3 settings it does not carry, odd head sizes and RoPE
// scalings llama.cpp does not compute.
func CheckModel(cfg *hfconfig.Config) error {
	if !slices.Contains(supportedModelTypes, cfg.ModelType) {
		return fmt.Errorf("%s: model_type %q: %w (supported: %s)", cfg.File, cfg.ModelType, ErrUnsupportedModel, strings.Join(supportedModelTypes, ", "))
	}
	if err := checkMoE(cfg); err != nil {
		return err
	}
	if cfg.Gemma3() {
		if err := checkGemma3(cfg); err != nil {
			return err
		}
	}
	if cfg.Gemma2() {
		if err := checkGemma2(cfg); err != nil {
			return err
		}
	}
	if cfg.Gemma1() {
		if err := checkGemma1(cfg); err != nil {
			return err
		}
	}
	if cfg.Granite != nil {
		if err := checkGranite(cfg); err != nil {
			return err
		}
	}
	if cfg.Olmo2() || cfg.ModelType == "olmoe" {
		if err := checkOlmo2(cfg); err != nil {
			return err
		}
	}
	if Arch(cfg) == "qwen2" {
		// llama.cpp's qwen2 (and qwen2vl) loader creates attn_q as
		// {n_embd, n_embd}: a head_dim other than hidden/heads (which
		// transformers' Qwen2Attention takes from config.json) fails its
		// load.
		if err := headDimHidden(cfg, FileArch(cfg)); err != nil {
			return err
		}
	}
	if Arch(cfg) == "qwen2moe" {
		// llama.cpp's qwen2moe creates output.weight as required (no
		// fallback to token_embd) and its q and o weights {n_embd, n_embd}.
		if cfg.TieWordEmbeddings {
			return fmt.Errorf("%s: tie_word_embeddings true: llama.cpp's qwen2moe architecture requires an output tensor, which a tied checkpoint does not have: %w", cfg.File, ErrUnsupportedModel)
		}
		if err := headDimHidden(cfg, "qwen2moe"); err != nil {
			return err
		}
	}
	for i, a := range cfg.Architectures {
		if !slices.Contains(SupportedArchitectures, a) {
			return fmt.Errorf("%s: architectures[%d] %q: %w (supported: %v)", cfg.File, i, a, ErrUnsupportedModel, SupportedArchitectures)
		}
	}
	if cfg.HeadDim%2 != 0 {
		return fmt.Errorf("%s: head_dim %d: %w (RoPE needs an even head size)", cfg.File, cfg.HeadDim, ErrUnsupportedModel)
	}
	if q := cfg.QueryScale; q != nil {
		// llama.cpp's converter writes Ministral 3 as its mistral3
		// architecture, which carries the scale; a llama file would run
		// past original_max_position_embeddings without it.
		return fmt.Errorf("%s: llama_4_scaling_beta %g: a query scale past %d positions, which a llama file does not carry (llama.cpp's mistral3 architecture, not written): %w", cfg.File, q.Beta, q.Original, ErrUnsupportedModel)
	}
	// RoPE scaling as convert_hf_to_gguf.py writes it: linear as
	// {arch}.rope.scaling.type and .factor, llama3 as the rope_freqs
	// tensor (ropeFreqFactors), yarn as its keys (yarnKVs); nothing else.
	s := cfg.RopeScaling
	if err := s.Validate(); err != nil {
		return fmt.Errorf("%s: rope scaling: %w: %w", cfg.File, err, ErrUnsupportedModel)
	}
	// longrope is llama.cpp's phi3 architecture's alone (its
	// rope_factors_long/short tensors); phi3's graph has no other scaling
	// that config.json can ask for (hfconfig refuses the others for phi3).
	if (s.Type == hfconfig.RopeLongrope) != (Arch(cfg) == "phi3") && !s.IsDefault() {
		return fmt.Errorf("%s: rope scaling %s: llama.cpp's %s architecture does not compute it (longrope is its phi3 architecture's, and that one's only scaling): %w", cfg.File, s, FileArch(cfg), ErrUnsupportedModel)
	}
	if s.Type == hfconfig.RopeLlama3 && Arch(cfg) != "llama" {
		// rope_freqs is no tensor of llama.cpp's qwen2 or qwen3
		// architecture (LLM_TENSOR_NAMES): its loader would refuse the
		// file for a tensor it did not create.
		return fmt.Errorf("%s: rope scaling %s: llama.cpp's %s architecture has no rope_freqs tensor to carry it: %w", cfg.File, s, FileArch(cfg), ErrUnsupportedModel)
	}
	if s.Type == hfconfig.RopeYarn {
		// llama.cpp's llama and qwen2 graphs take yarn's betas from its
		// context parameters (32 and 1; the loader reads no yarn_beta_*
		// key for either architecture) and always round the correction
		// range out (ggml_rope_yarn_corr_dims): a file of other values
		// would run as another model there.
		switch {
		case s.BetaFast != hfconfig.YarnBetaFast || s.BetaSlow != hfconfig.YarnBetaSlow:
			return fmt.Errorf("%s: rope scaling %s: beta_fast %g and beta_slow %g, but llama.cpp runs a %s file's yarn with 32 and 1: %w", cfg.File, s, s.BetaFast, s.BetaSlow, FileArch(cfg), ErrUnsupportedModel)
		case !s.Truncate:
			return fmt.Errorf("%s: rope scaling %s: truncate false, but llama.cpp rounds yarn's correction range out: %w", cfg.File, s, ErrUnsupportedModel)
		}
	}
	if s.FreqFactors != nil && len(s.FreqFactors) != cfg.HeadDim/2 {
		return fmt.Errorf("%s: %d RoPE frequency factors for head_dim %d: want %d: %w", cfg.File, len(s.FreqFactors), cfg.HeadDim, cfg.HeadDim/2, ErrUnsupportedModel)
	}
	return nil
}

// noAttentionBias refuses a config whose attention has biases
// (attention_bias true), which llama.cpp's arch architecture does not
// have (gemma, gemma2, gemma3, olmo2).
func noAttentionBias(cfg *hfconfig.Config, arch string) error {
	for _, m := range []string{"self_attn.q_proj", "self_attn.o_proj"} {
		if cfg.LinearBias(m) {
			return fmt.Errorf("%s: attention_bias true: llama.cpp's %s architecture has no attention biases: %w", cfg.File, arch, ErrUnsupportedModel)
		}
	}
	return nil
}

// headDimHidden refuses a config whose head_dim is not hidden/heads, the
// head size llama.cpp's arch architecture takes (granite, olmo2).
func headDimHidden(cfg *hfconfig.Config, arch string) error {
	if hd := cfg.HiddenSize / cfg.NumAttentionHeads; cfg.HeadDim != hd {
		return fmt.Errorf("%s: head_dim %d: llama.cpp's %s architecture takes hidden/heads %d: %w", cfg.File, cfg.HeadDim, arch, hd, ErrUnsupportedModel)
	}
	return nil
}

// supportedModelTypes are the model_type values Convert writes.
var supportedModelTypes = []string{"llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "qwen2_moe", "olmoe", "phi3", "gemma", "gemma2", "gemma3_text", "granite", "olmo2"}

// checkMoE refuses a mixture of experts that llama.cpp's architecture
// would run as another model: a qwen3_moe with dense layers
// (mlp_only_layers, decoder_sparse_step above 1), which llama.cpp's
// qwen3moe architecture does not have (every layer's ffn_gate_inp and
// ffn_*_exps are required), or with norm_topk_prob false (its graph
// always renormalizes the top k weights: build_moe_ffn's norm_w true); a
// qwen2_moe likewise with dense layers, or with norm_topk_prob true (its
// qwen2moe graph never renormalizes: norm_w false), and an olmoe with
// norm_topk_prob true (neither does its olmoe graph).
// (Mixtral's router always renormalizes, as llama.cpp's llama graph with
// experts does.)
func checkMoE(cfg *hfconfig.Config) error {
	m := cfg.MoE
	if m == nil {
		return nil
	}
	if m.Dense != nil {
		var dense []string
		for li, d := range m.Dense {
			if d {
				dense = append(dense, strconv.Itoa(li))
			}
		}
		return fmt.Errorf("%s: model_type %q: layers %s have a dense MLP (mlp_only_layers, decoder_sparse_step), but llama.cpp's %s architecture makes every layer a mixture of experts: %w", cfg.File, cfg.ModelType, strings.Join(dense, ", "), FileArch(cfg), ErrUnsupportedModel)
	}
	never := Arch(cfg) == "qwen2moe" || Arch(cfg) == "olmoe"
	if never && m.NormTopK {
		return fmt.Errorf("%s: model_type %q: norm_topk_prob true, but llama.cpp's %s architecture never renormalizes the chosen experts' weights: %w", cfg.File, cfg.ModelType, FileArch(cfg), ErrUnsupportedModel)
	}
	if !never && !m.NormTopK {
		return fmt.Errorf("%s: model_type %q: norm_topk_prob false, but llama.cpp's %s architecture always renormalizes the chosen experts' weights: %w", cfg.File, cfg.ModelType, FileArch(cfg), ErrUnsupportedModel)
	}
	return nil
}

// CheckBiases returns an error naming the first Linear bias that get
// gives (a decoder layer's q, k, v, o, gate, up and down projections, then
// lm_head) holding a value other than 0, wrapping ErrUnsupportedModel,
// among those the file has no tensor for: all but Qwen2's q/k/v biases
// (attn_q.bias …, tensorSpecs), so that a llama config's attention_bias
// or mlp_bias, or a qwen3 config's attention_bias (llama.cpp's qwen3
// graph adds no bias), with biases other than zeros is refused, though the runtime
// adds attention_bias's (llama.cpp's llama architecture would take them
// permuted too; gptqtool does not write them). A config's attention_bias
// or mlp_bias alone is no reason to refuse: biases that are absent
// (transformers zero-initialises them) or zeros (AutoGPTQ's QuantLinear
// writes them) are a no-op.
// Convert checks them before it writes; a caller that plans files without
// converting (a dry run) calls it to refuse what Convert would.
func CheckBiases(get TensorFunc, cfg *hfconfig.Config) error {
	modules := []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}
	var names []string
	for i := range cfg.NumHiddenLayers {
		for _, m := range modules {
			if qkvBiasArch(cfg) && cfg.LinearBias(m) {
				continue // written
			}
			names = append(names, "model.layers."+strconv.Itoa(i)+"."+m+".bias")
		}
		if Arch(cfg) == "phi3" {
			for _, m := range []string{"self_attn.qkv_proj", "mlp.gate_up_proj"} {
				names = append(names, "model.layers."+strconv.Itoa(i)+"."+m+".bias")
			}
		}
	}
	for _, name := range append(names, "lm_head.bias") {
		vals, _, err := get(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("gguf convert: tensor %q: %w", name, err)
		}
		for i, v := range vals {
			if v != 0 { // NaN included
				largest := v
				if v == v {
					for _, x := range vals {
						largest = max(largest, float32(math.Abs(float64(x))))
					}
				}
				return fmt.Errorf("gguf convert: tensor %q: largest |value| %g (first nonzero element %d), want all zeros: %w (the file is written without Linear biases)", name, largest, i, ErrUnsupportedModel)
			}
		}
	}
	return nil
}

// qkvBiasArch reports whether cfg's architecture has q/k/v bias tensors
// (attn_q.bias …): llama.cpp's qwen2 and qwen2moe.
func qkvBiasArch(cfg *hfconfig.Config) bool {
	return Arch(cfg) == "qwen2" || Arch(cfg) == "qwen2moe"
}

// tensorSpec is one output tensor: its GGUF name, its Hugging Face source,
// the shape the config implies, and for q/k the head count to permute by.
// A tensor the converter derives from the config (rope_freqs) has no
// source and its values.
type tensorSpec struct {
	name, source string
	shape        []int
	permuteHeads int
	values       []float32
	// addOne writes 1 + the source's values (gemma3's norms).
	addOne bool
	// parts are the modules a fused tensor (phi3's attn_qkv, ffn_up)
	// stacks, in row order: read and stacked where get has no source (a
	// checkpoint read through package fused, which gives the parts).
	parts []tensorPart
	// experts are the Hugging Face weights a mixture of experts' stacked
	// tensor [experts, out, in] holds, expert by expert, each [out, in]
	// (source then only names the stack).
	experts []string
	// router marks a router (ffn_gate_inp), which llama.cpp's converter
	// writes in F32 and llama-quantize never quantizes.
	router bool
}

// weight reports whether s is a weight whose type the options pick: a 2-D
// weight or a stacked 3-D one, the routers aside (F32 as the 1-D tensors).
func (s tensorSpec) weight() bool {
	return len(s.shape) >= 2 && !s.router
}

// tensorPart is a module whose rows a fused tensor holds: its Hugging
// Face name and its rows.
type tensorPart struct {
	source string
	rows   int
}

// tensorSpecs lists the output tensors in file order with llama.cpp's names
// (llama-arch.cpp LLM_TENSOR_NAMES for LLM_ARCH_LLAMA and LLM_ARCH_QWEN2):
// a llama3 RoPE scaling's rope_freqs first, as convert_hf_to_gguf.py
// writes the tensors of generate_extra_tensors before the checkpoint's.
// Qwen2's attn_q, attn_k and attn_v have biases ([N], F32, as the
// converter writes 1-D tensors); Qwen3 has attn_q_norm and attn_k_norm
// ([head_dim], F32; LLM_ARCH_QWEN3's LLM_TENSOR_ATTN_Q_NORM/K_NORM) and no
// biases. Both keep q/k's rows in Hugging Face's order: llama.cpp rotates
// qwen2 and qwen3 by halves (LLAMA_ROPE_TYPE_NEOX, as transformers does),
// llama by interleaved pairs, for which LlamaModel's converter permutes
// them (PermuteQK).
func tensorSpecs(cfg *hfconfig.Config) []tensorSpec {
	switch Arch(cfg) {
	case "phi3":
		return phi3TensorSpecs(cfg)
	case "gemma3":
		return gemma3TensorSpecs(cfg)
	case "gemma2":
		return gemmaTensorSpecs(cfg, false)
	case "gemma":
		return gemma1TensorSpecs(cfg)
	case "olmo2":
		return olmo2TensorSpecs(cfg)
	}
	h, hd, ff, v := cfg.HiddenSize, cfg.HeadDim, cfg.IntermediateSize, cfg.VocabSize
	q, kv := cfg.NumAttentionHeads*hd, cfg.NumKeyValueHeads*hd
	qHeads, kvHeads := cfg.NumAttentionHeads, cfg.NumKeyValueHeads
	qwen2 := qkvBiasArch(cfg)
	if a := Arch(cfg); a != "llama" && a != "granite" {
		// (GraniteModel permutes as LlamaModel does.)
		qHeads, kvHeads = 0, 0
	}
	var specs []tensorSpec
	if cfg.RopeScaling.Type == hfconfig.RopeLlama3 {
		specs = append(specs, tensorSpec{name: RopeFreqsTensor, shape: []int{hd / 2}, values: ropeFreqFactors(cfg)})
	}
	specs = append(specs, tensorSpec{name: "token_embd.weight", source: "model.embed_tokens.weight", shape: []int{v, h}})
	for i := range cfg.NumHiddenLayers {
		blk, hf := "blk."+strconv.Itoa(i)+".", "model.layers."+strconv.Itoa(i)+"."
		specs = append(specs,
			tensorSpec{name: blk + "attn_norm.weight", source: hf + "input_layernorm.weight", shape: []int{h}},
			tensorSpec{name: blk + "attn_q.weight", source: hf + "self_attn.q_proj.weight", shape: []int{q, h}, permuteHeads: qHeads},
			tensorSpec{name: blk + "attn_k.weight", source: hf + "self_attn.k_proj.weight", shape: []int{kv, h}, permuteHeads: kvHeads},
			tensorSpec{name: blk + "attn_v.weight", source: hf + "self_attn.v_proj.weight", shape: []int{kv, h}},
		)
		if qwen2 && cfg.LinearBias("self_attn.q_proj") {
			specs = append(specs,
				tensorSpec{name: blk + "attn_q.bias", source: hf + "self_attn.q_proj.bias", shape: []int{q}},
				tensorSpec{name: blk + "attn_k.bias", source: hf + "self_attn.k_proj.bias", shape: []int{kv}},
				tensorSpec{name: blk + "attn_v.bias", source: hf + "self_attn.v_proj.bias", shape: []int{kv}},
			)
		} else if qwen2 {
			// A qwen2_moe without them (qkv_bias false): llama.cpp's
			// qwen2moe requires the three, written as zeros.
			specs = append(specs,
				tensorSpec{name: blk + "attn_q.bias", shape: []int{q}, values: make([]float32, q)},
				tensorSpec{name: blk + "attn_k.bias", shape: []int{kv}, values: make([]float32, kv)},
				tensorSpec{name: blk + "attn_v.bias", shape: []int{kv}, values: make([]float32, kv)},
			)
		}
		if cfg.QKNorm() {
			// ([head_dim] each; OLMoE's over the whole projections,
			// llama.cpp's olmoe {n_embd} both: no GQA, checkOlmo2)
			qw, kw := cfg.QKNormWidths()
			specs = append(specs,
				tensorSpec{name: blk + "attn_q_norm.weight", source: hf + "self_attn.q_norm.weight", shape: []int{qw}},
				tensorSpec{name: blk + "attn_k_norm.weight", source: hf + "self_attn.k_norm.weight", shape: []int{kw}},
			)
		}
		specs = append(specs,
			tensorSpec{name: blk + "attn_output.weight", source: hf + "self_attn.o_proj.weight", shape: []int{h, q}},
			tensorSpec{name: blk + "ffn_norm.weight", source: hf + "post_attention_layernorm.weight", shape: []int{h}},
		)
		if cfg.Sparse(i) {
			specs = append(specs, moeTensorSpecs(cfg, i)...)
			continue
		}
		specs = append(specs,
			tensorSpec{name: blk + "ffn_gate.weight", source: hf + "mlp.gate_proj.weight", shape: []int{ff, h}},
			tensorSpec{name: blk + "ffn_up.weight", source: hf + "mlp.up_proj.weight", shape: []int{ff, h}},
			tensorSpec{name: blk + "ffn_down.weight", source: hf + "mlp.down_proj.weight", shape: []int{h, ff}},
		)
	}
	specs = append(specs, tensorSpec{name: "output_norm.weight", source: "model.norm.weight", shape: []int{h}})
	if !cfg.TieWordEmbeddings {
		specs = append(specs, tensorSpec{name: "output.weight", source: "lm_head.weight", shape: []int{v, h}})
	}
	return specs
}

// moeTensorSpecs lists the mixture-of-experts tensors of layer li
// (LLM_TENSOR_FFN_GATE_INP and LLM_TENSOR_FFN_*_EXPS; llama.cpp creates
// them as ne {hidden, experts}, {hidden, expert size, experts} for gate
// and up, {expert size, hidden, experts} for down, which in PyTorch order
// are the shapes below): the router [experts, hidden] as
// blk.N.ffn_gate_inp.weight (F32), then the experts' Linears each stacked
// over the experts (torch.stack(dim=0)) in the order llama.cpp's
// converter merges them: Mixtral's w1, w2, w3 (LlamaModel.modify_tensors:
// gate, down, up), Qwen3-MoE's down_proj, gate_proj, up_proj
// (Qwen2MoeModel.modify_tensors); Qwen2-MoE's likewise, then its shared
// expert's gate and Linears.
//
//	block_sparse_moe.gate / mlp.gate      blk.N.ffn_gate_inp.weight  [E, hidden]
//	experts.*.w1 / gate_proj              blk.N.ffn_gate_exps.weight [E, size, hidden]
//	experts.*.w3 / up_proj                blk.N.ffn_up_exps.weight   [E, size, hidden]
//	experts.*.w2 / down_proj              blk.N.ffn_down_exps.weight [E, hidden, size]
func moeTensorSpecs(cfg *hfconfig.Config, li int) []tensorSpec {
	m := cfg.MoE
	h, ff, n := cfg.HiddenSize, m.ExpertSize, m.Experts
	blk, hf := "blk."+strconv.Itoa(li)+".", "model.layers."+strconv.Itoa(li)+"."
	stack := func(kind string, module string, shape []int) tensorSpec {
		s := tensorSpec{name: blk + kind + ".weight", source: hf + m.Block + ".experts." + module + ".weight", shape: shape}
		for e := range n {
			mods := m.ExpertModules(e)
			s.experts = append(s.experts, hf+mods[slices.Index([]string{m.Gate, m.Up, m.Down}, module)]+".weight")
		}
		return s
	}
	gate := stack("ffn_gate_exps", m.Gate, []int{n, ff, h})
	up := stack("ffn_up_exps", m.Up, []int{n, ff, h})
	down := stack("ffn_down_exps", m.Down, []int{n, h, ff})
	specs := []tensorSpec{{name: blk + "ffn_gate_inp.weight", source: m.RouterName(li), shape: []int{n, h}, router: true}}
	switch Arch(cfg) {
	case "qwen3moe", "olmoe":
		return append(specs, down, gate, up)
	case "qwen2moe":
		// The shared expert (LLM_TENSOR_FFN_*_SHEXP): its gate [1,
		// hidden] (llama.cpp's {hidden}; F32 as the router) and its
		// Linears as a dense MLP's.
		sh, s := m.SharedModules(), m.SharedSize
		return append(specs, down, gate, up,
			tensorSpec{name: blk + "ffn_gate_inp_shexp.weight", source: m.SharedGateName(li), shape: []int{1, h}, router: true},
			tensorSpec{name: blk + "ffn_gate_shexp.weight", source: hf + sh[0] + ".weight", shape: []int{s, h}},
			tensorSpec{name: blk + "ffn_up_shexp.weight", source: hf + sh[1] + ".weight", shape: []int{s, h}},
			tensorSpec{name: blk + "ffn_down_shexp.weight", source: hf + sh[2] + ".weight", shape: []int{h, s}})
	}
	return append(specs, gate, down, up)
}

// phi3TensorSpecs lists a phi3 file's tensors (LLM_ARCH_PHI3's
// create_tensor calls; Phi3MiniModel's names): a longrope scaling's
// rope_factors_long.weight and rope_factors_short.weight first (F32
// [rotary dimension/2]: head_dim/2, or Phi-4-mini's 96/2 with its
// partial_rotary_factor; generate_extra_tensors' order), then the llama tensors
// with self_attn.qkv_proj as blk.N.attn_qkv.weight [q+2·kv, hidden] (rows
// q, k, v, as llama.cpp's build_qkv splits it) and mlp.gate_up_proj as
// blk.N.ffn_up.weight [2·intermediate, hidden] (rows gate, then up:
// llama.cpp's phi3 graph runs ffn_up through ggml_swiglu, silu of the
// first half times the second, as Phi3MLP's gate_up.chunk(2) does). The
// rows keep Hugging Face's order: llama.cpp rotates phi3 by halves
// (LLAMA_ROPE_TYPE_NEOX).
func phi3TensorSpecs(cfg *hfconfig.Config) []tensorSpec {
	h, hd, ff, v := cfg.HiddenSize, cfg.HeadDim, cfg.IntermediateSize, cfg.VocabSize
	q, kv := cfg.NumAttentionHeads*hd, cfg.NumKeyValueHeads*hd
	var specs []tensorSpec
	if s := cfg.RopeScaling; s.Type == hfconfig.RopeLongrope {
		specs = append(specs,
			tensorSpec{name: RopeFactorsLongTensor, shape: []int{cfg.RoPEDim() / 2}, values: toFloat32(s.LongFactor)},
			tensorSpec{name: RopeFactorsShortTensor, shape: []int{cfg.RoPEDim() / 2}, values: toFloat32(s.ShortFactor)})
	}
	specs = append(specs, tensorSpec{name: "token_embd.weight", source: "model.embed_tokens.weight", shape: []int{v, h}})
	for i := range cfg.NumHiddenLayers {
		blk, hf := "blk."+strconv.Itoa(i)+".", "model.layers."+strconv.Itoa(i)+"."
		specs = append(specs,
			tensorSpec{name: blk + "attn_norm.weight", source: hf + "input_layernorm.weight", shape: []int{h}},
			tensorSpec{name: blk + "attn_qkv.weight", source: hf + "self_attn.qkv_proj.weight", shape: []int{q + 2*kv, h},
				parts: []tensorPart{{hf + "self_attn.q_proj.weight", q}, {hf + "self_attn.k_proj.weight", kv}, {hf + "self_attn.v_proj.weight", kv}}},
			tensorSpec{name: blk + "attn_output.weight", source: hf + "self_attn.o_proj.weight", shape: []int{h, q}},
			tensorSpec{name: blk + "ffn_norm.weight", source: hf + "post_attention_layernorm.weight", shape: []int{h}},
			tensorSpec{name: blk + "ffn_up.weight", source: hf + "mlp.gate_up_proj.weight", shape: []int{2 * ff, h},
				parts: []tensorPart{{hf + "mlp.gate_proj.weight", ff}, {hf + "mlp.up_proj.weight", ff}}},
			tensorSpec{name: blk + "ffn_down.weight", source: hf + "mlp.down_proj.weight", shape: []int{h, ff}},
		)
	}
	specs = append(specs, tensorSpec{name: "output_norm.weight", source: "model.norm.weight", shape: []int{h}})
	if !cfg.TieWordEmbeddings {
		specs = append(specs, tensorSpec{name: "output.weight", source: "lm_head.weight", shape: []int{v, h}})
	}
	return specs
}

// RopeFactorsLongTensor and RopeFactorsShortTensor are the longrope
// factors of llama.cpp's phi3 architecture (LLM_TENSOR_ROPE_FACTORS_LONG,
// _SHORT): F32 [rotary dimension/2], llama.cpp dividing each inverse frequency by
// the long ones where its context per sequence exceeds
// {arch}.rope.scaling.original_context_length, else by the short ones.
const (
	RopeFactorsLongTensor  = "rope_factors_long.weight"
	RopeFactorsShortTensor = "rope_factors_short.weight"
)

func toFloat32(xs []float64) []float32 {
	out := make([]float32, len(xs))
	for i, x := range xs {
		out[i] = float32(x)
	}
	return out
}

// yarnKVs are the keys of a yarn scaling s, a the architecture's key
// prefix ("llama.", "qwen2."): what TextModel.set_gguf_parameters writes
// ({arch}.rope.scaling.type "yarn", .factor, .original_context_length)
// and, where s's attention factor A is not YaRN's default
// get_mscale(factor) = 0.1·ln(factor) + 1, the key llama.cpp's loader
// reads into it for every architecture: {arch}.rope.scaling.attn_factor =
// A/get_mscale(factor). llama.cpp rotates a llama or qwen2 file's yarn
// with the magnitude get_mscale(factor) times that key (llama_context:
// yarn_attn_factor, then ggml's rope_yarn multiplying in 1 + 0.1·ln(factor)
// after the context divided it out). The converter's own
// rope.scaling.yarn_attn_factor for an explicit attention_factor is not
// read for either architecture (their load_arch_hparams read no yarn_*
// key), nor are its yarn_beta_fast/slow (CheckModel refuses betas other
// than 32 and 1).
func yarnKVs(a string, s hfconfig.RopeScaling) []KV {
	kvs := []KV{{a + "rope.scaling.type", "yarn"}, {a + "rope.scaling.factor", float32(s.Factor)},
		{a + "rope.scaling.original_context_length", uint32(s.OriginalMaxPositionEmbeddings)}}
	if m := hfconfig.YarnMscale(s.Factor, 1); s.AttentionFactor != m {
		kvs = append(kvs, KV{a + "rope.scaling.attn_factor", float32(s.AttentionFactor / m)})
	}
	return kvs
}

// RopeFreqsTensor is the tensor of RoPE frequency factors that
// llama.cpp's converter writes for a llama3 scaling (LLM_TENSOR_ROPE_FREQS):
// F32 [head_dim/2], llama.cpp dividing each inverse frequency by its factor.
const RopeFreqsTensor = "rope_freqs.weight"

// ropeFreqFactors returns rope_freqs' values for cfg's llama3 scaling:
// the FreqFactors it was read with (a GGUF file's), else what
// LlamaModel.generate_extra_tensors computes, by the wavelength λ = 2π/f
// of each plain inverse frequency f = 1/theta^(2j/head_dim), with o =
// original_max_position_embeddings: 1 where λ < o/high_freq_factor,
// factor where λ > o/low_freq_factor, else 1/((1-σ)/factor + σ) with σ =
// (o/λ - low_freq_factor)/(high_freq_factor - low_freq_factor). The
// converter does this in float32 (torch); here it is float64 rounded to
// float32 once, which gives 1 and factor exactly and the smoothed band
// within a unit in the last place of the converter's values. f divided by
// its factor is transformers' scaled frequency (runtime.RoPEFreqs) up to
// rounding. CheckModel has validated the parameters.
func ropeFreqFactors(cfg *hfconfig.Config) []float32 {
	s := cfg.RopeScaling
	if s.FreqFactors != nil {
		return slices.Clone(s.FreqFactors)
	}
	d2 := cfg.HeadDim / 2
	out := make([]float32, d2)
	orig := float64(s.OriginalMaxPositionEmbeddings)
	lowWavelen, highWavelen := orig/s.LowFreqFactor, orig/s.HighFreqFactor
	for j := range out {
		freq := 1 / math.Pow(cfg.RopeTheta, float64(2*j)/float64(cfg.HeadDim))
		wavelen := 2 * math.Pi / freq
		switch {
		case wavelen < highWavelen:
			out[j] = 1
		case wavelen > lowWavelen:
			out[j] = float32(s.Factor)
		case s.HighFreqFactor == s.LowFreqFactor:
			out[j] = 1 // the bands meet at λ: kept, as runtime.RoPEFreqs keeps it
		default:
			smooth := (orig/wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
			out[j] = float32(1 / ((1-smooth)/s.Factor + smooth))
		}
	}
	return out
}

// weightType picks the type of a 2-D weight, falling back as
// llama-quantize does (tensor_type_fallback) when its rows do not split
// into whole blocks: IQ4_XS and the IQ1, IQ2 and IQ3 types to IQ4_NL,
// Q2_K and Q3_K to Q4_0, Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0; to F16
// when that does not fit either, or for a type of 32-value blocks (where
// llama-quantize gives up).
func weightType(want TensorType, s tensorSpec) (TensorType, *Fallback) {
	row := s.shape[len(s.shape)-1]
	if row%want.BlockSize() == 0 {
		return want, nil
	}
	got, ok := map[TensorType]TensorType{
		TypeIQ4_XS: TypeIQ4_NL, TypeQ2_K: TypeQ4_0, TypeQ3_K: TypeQ4_0,
		TypeQ4_K: TypeQ5_0, TypeQ5_K: TypeQ5_1, TypeQ6_K: TypeQ8_0,
		TypeIQ1_S: TypeIQ4_NL, TypeIQ1_M: TypeIQ4_NL, TypeIQ2_XXS: TypeIQ4_NL, TypeIQ2_XS: TypeIQ4_NL,
		TypeIQ2_S: TypeIQ4_NL, TypeIQ3_XXS: TypeIQ4_NL, TypeIQ3_S: TypeIQ4_NL,
	}[want]
	if !ok || row%got.BlockSize() != 0 {
		got = TypeF16
	}
	return got, &Fallback{
		Tensor: s.name, Want: want, Got: got,
		Reason: fmt.Sprintf("row length %d is not a multiple of the %s block size %d", row, want, want.BlockSize()),
	}
}

func readTensor(get TensorFunc, s tensorSpec, cfg *hfconfig.Config) ([]float32, error) {
	if s.values != nil {
		return s.values, nil
	}
	if s.experts != nil {
		return readExperts(get, s, cfg)
	}
	vals, shape, err := get(s.source)
	if s.parts != nil && errors.Is(err, fs.ErrNotExist) {
		return readParts(get, s, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("gguf convert: tensor %q: %w", s.source, err)
	}
	if !slices.Equal(shape, s.shape) {
		return nil, fmt.Errorf("gguf convert: tensor %q: shape %v, %s implies %v%s", s.source, shape, cfg.File, s.shape, partsNote(s))
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	if len(vals) != n {
		return nil, fmt.Errorf("gguf convert: tensor %q: %d values for shape %v", s.source, len(vals), shape)
	}
	if s.addOne {
		out := make([]float32, len(vals))
		for i, v := range vals {
			out[i] = 1 + v
		}
		return out, nil
	}
	if s.permuteHeads == 0 {
		return vals, nil
	}
	out := make([]float32, len(vals))
	if err := PermuteQK(out, vals, s.shape[0], s.shape[1], s.permuteHeads); err != nil {
		return nil, fmt.Errorf("gguf convert: tensor %q: %w", s.source, err)
	}
	return out, nil
}

// readParts reads a fused tensor's parts from get and stacks their rows.
func readParts(get TensorFunc, s tensorSpec, cfg *hfconfig.Config) ([]float32, error) {
	k := s.shape[1]
	out := make([]float32, 0, s.shape[0]*k)
	for _, p := range s.parts {
		vals, shape, err := get(p.source)
		if err != nil {
			return nil, fmt.Errorf("gguf convert: tensor %q (no %q): %w", p.source, s.source, err)
		}
		if want := []int{p.rows, k}; !slices.Equal(shape, want) {
			return nil, fmt.Errorf("gguf convert: tensor %q: shape %v, %s implies %v", p.source, shape, cfg.File, want)
		}
		if len(vals) != p.rows*k {
			return nil, fmt.Errorf("gguf convert: tensor %q: %d values for shape %v", p.source, len(vals), shape)
		}
		out = append(out, vals...)
	}
	return out, nil
}

// readExperts reads the experts of a stacked tensor [experts, out, in]
// from get, each [out, in], and stacks them in expert order (the
// converter's torch.stack(datas, dim=0)).
func readExperts(get TensorFunc, s tensorSpec, cfg *hfconfig.Config) ([]float32, error) {
	want := s.shape[1:]
	n := want[0] * want[1]
	out := make([]float32, 0, len(s.experts)*n)
	for _, src := range s.experts {
		vals, shape, err := get(src)
		if err != nil {
			return nil, fmt.Errorf("gguf convert: tensor %q (for %s): %w", src, s.name, err)
		}
		if !slices.Equal(shape, want) {
			return nil, fmt.Errorf("gguf convert: tensor %q: shape %v, %s implies %v", src, shape, cfg.File, want)
		}
		if len(vals) != n {
			return nil, fmt.Errorf("gguf convert: tensor %q: %d values for shape %v", src, len(vals), shape)
		}
		out = append(out, vals...)
	}
	return out, nil
}

// partsNote describes a fused tensor's rows for errors: " (q_proj's 64
// rows, then k_proj's 32, then v_proj's 32)"; "" for another tensor.
func partsNote(s tensorSpec) string {
	if s.parts == nil {
		return ""
	}
	var b strings.Builder
	for i, p := range s.parts {
		sep := " ("
		if i > 0 {
			sep = ", then "
		}
		name := strings.TrimSuffix(p.source[strings.LastIndex(strings.TrimSuffix(p.source, ".weight"), ".")+1:], ".weight")
		fmt.Fprintf(&b, "%s%s's %d rows", sep, name, p.rows)
	}
	return b.String() + ")"
}

// modelKVs builds the metadata: general.*, the llama hyperparameters and
// the tokenizer (the keys convert_hf_to_gguf.py writes for LlamaModel, with
// the types llama.cpp's loader checks).
func modelKVs(cfg *hfconfig.Config, tok *tokenizer.Tokenizer, opts ConvertOptions, fileType uint32) ([]KV, error) {
	name := opts.Name
	if name == "" {
		name = "model"
		if cfg.File != "" {
			name = filepath.Base(filepath.Dir(cfg.File))
		}
	}
	kvs := []KV{
		{"general.architecture", FileArch(cfg)},
		{"general.type", "model"},
		{"general.name", name},
		{"general.file_type", fileType},
		{"general.quantization_version", uint32(QuantizationVersion)},
	}
	switch Arch(cfg) {
	case "phi3":
		kvs = append(kvs, phi3KVs(cfg)...)
	case "gemma3":
		kvs = append(kvs, gemma3KVs(cfg)...)
	case "gemma2":
		kvs = append(kvs, gemma2KVs(cfg)...)
	case "gemma":
		kvs = append(kvs, gemma1KVs(cfg)...)
	default:
		kvs = append(kvs, llamaKVs(cfg)...)
	}
	return imatrixVocabKVs(cfg, tok, opts, kvs)
}

// llamaKVs are the hyperparameters of a llama, qwen2 or qwen3 file
// (LlamaModel's and TextModel's set_gguf_parameters).
func llamaKVs(cfg *hfconfig.Config) []KV {
	a := FileArch(cfg) + "." // qwen2 and qwen3 (and qwen2vl, qwen3vl) take the llama keys under their own names
	kvs := []KV{
		{a + "vocab_size", uint32(cfg.VocabSize)},
		{a + "context_length", uint32(cfg.MaxPositionEmbeddings)},
		{a + "embedding_length", uint32(cfg.HiddenSize)},
		{a + "block_count", uint32(cfg.NumHiddenLayers)},
		{a + "feed_forward_length", uint32(cfg.IntermediateSize)},
		{a + "attention.head_count", uint32(cfg.NumAttentionHeads)},
		{a + "attention.head_count_kv", uint32(cfg.NumKeyValueHeads)},
		{a + "attention.key_length", uint32(cfg.HeadDim)},
		{a + "attention.value_length", uint32(cfg.HeadDim)},
		{a + "rope.dimension_count", uint32(cfg.HeadDim)},
	}
	switch s := cfg.RopeScaling; s.Type {
	case hfconfig.RopeLinear:
		// As TextModel.set_gguf_parameters writes a linear scaling, before
		// the base; llama3's is the rope_freqs tensor.
		kvs = append(kvs, KV{a + "rope.scaling.type", "linear"}, KV{a + "rope.scaling.factor", float32(s.Factor)})
	case hfconfig.RopeYarn:
		kvs = append(kvs, yarnKVs(a, s)...)
	}
	kvs = append(kvs,
		KV{a + "rope.freq_base", float32(cfg.RopeTheta)},
		KV{a + "attention.layer_norm_rms_epsilon", float32(cfg.RMSNormEps)},
	)
	if m := cfg.MoE; m != nil {
		// TextModel.set_gguf_parameters' expert_count and
		// expert_used_count; Qwen2MoeModel's expert_feed_forward_length
		// (llama.cpp's llama architecture sizes the experts by
		// feed_forward_length, Mixtral's intermediate_size).
		kvs = append(kvs, KV{a + "expert_count", uint32(m.Experts)}, KV{a + "expert_used_count", uint32(m.TopK)})
		if Arch(cfg) == "qwen3moe" || Arch(cfg) == "qwen2moe" {
			kvs = append(kvs, KV{a + "expert_feed_forward_length", uint32(m.ExpertSize)})
		}
		if m.SharedSize > 0 {
			// Qwen2MoeModel's expert_shared_feed_forward_length.
			kvs = append(kvs, KV{a + "expert_shared_feed_forward_length", uint32(m.SharedSize)})
		}
	}
	if cfg.Granite != nil {
		kvs = append(kvs, graniteKVs(cfg)...)
	}
	return append(kvs, mropeKVs(cfg)...)
}

// phi3KVs are a phi3 file's hyperparameters, the keys
// Phi3MiniModel.set_gguf_parameters writes, in its order (no vocab_size,
// key_length or value_length: llama.cpp takes hidden/heads):
// context_length; rope.scaling.original_context_length, the scaling's
// original context or else config.json's top-level
// original_max_position_embeddings (Phi3Config's 4096 where absent; the
// converter fails there); the sizes and head counts;
// attention.layer_norm_rms_epsilon; rope.dimension_count the rotary
// dimension (the head size, or with partial_rotary_factor its rotated
// part, as the converter's int(partial_rotary_factor · hidden) / heads:
// llama.cpp's n_rot, whose ggml_rope_ext rotates the first n_rot channels
// of each head and copies the rest, its attention factor on the rotated
// ones alone, as transformers);
// rope.freq_base; attention.sliding_window, 0 for none (the converter's
// "Phi-4" marker; llama.cpp's phi3 loader disables any window). A longrope
// scaling adds rope.scaling.attn_factor, its attention factor: the
// converter's sqrt(1 + ln(max/original)/ln(original)) (1 where max <=
// original) unless config.json's rope_scaling gives factor or
// attention_factor, which the converter ignores and transformers (and
// gptqtool) apply. llama.cpp multiplies cos and sin by it, as transformers
// does, with the long or short factors alike.
func phi3KVs(cfg *hfconfig.Config) []KV {
	const a = "phi3."
	orig := hfconfig.Phi3OriginalMaxPositionEmbeddings
	if s := cfg.RopeScaling; s.Type == hfconfig.RopeLongrope {
		orig = s.OriginalMaxPositionEmbeddings
	} else if v, ok := cfg.Raw["original_max_position_embeddings"].(json.Number); ok {
		if n, err := strconv.Atoi(v.String()); err == nil && n > 0 {
			orig = n
		}
	}
	kvs := []KV{
		{a + "context_length", uint32(cfg.MaxPositionEmbeddings)},
		{a + "rope.scaling.original_context_length", uint32(orig)},
		{a + "embedding_length", uint32(cfg.HiddenSize)},
		{a + "feed_forward_length", uint32(cfg.IntermediateSize)},
		{a + "block_count", uint32(cfg.NumHiddenLayers)},
		{a + "attention.head_count", uint32(cfg.NumAttentionHeads)},
		{a + "attention.head_count_kv", uint32(cfg.NumKeyValueHeads)},
		{a + "attention.layer_norm_rms_epsilon", float32(cfg.RMSNormEps)},
		{a + "rope.dimension_count", uint32(cfg.RoPEDim())},
		{a + "rope.freq_base", float32(cfg.RopeTheta)},
		{a + "attention.sliding_window", uint32(cfg.SlidingWindow)},
	}
	if s := cfg.RopeScaling; s.Type == hfconfig.RopeLongrope {
		kvs = append(kvs, KV{a + "rope.scaling.attn_factor", float32(s.AttentionFactor)})
	}
	return kvs
}

// imatrixVocabKVs ends modelKVs: the importance matrix's keys and the
// tokenizer's.
func imatrixVocabKVs(cfg *hfconfig.Config, tok *tokenizer.Tokenizer, opts ConvertOptions, kvs []KV) ([]KV, error) {
	if m := opts.Imatrix; m != nil {
		// The keys llama-quantize records an importance matrix under, its
		// counts as uint32 (it writes every int override so) and the
		// chunks only where the matrix says how many.
		kvs = append(kvs, KV{"quantize.imatrix.file", m.Path},
			KV{"quantize.imatrix.entries_count", uint32(len(m.Entries))})
		if m.Chunks > 0 {
			kvs = append(kvs, KV{"quantize.imatrix.chunks_count", uint32(m.Chunks)})
		}
		if len(m.Datasets) > 0 {
			kvs = append(kvs, KV{"quantize.imatrix.dataset", m.Datasets[0]})
		}
	}
	vocab, err := tokenizerKVs(cfg, tok, opts)
	if err != nil {
		return nil, err
	}
	return append(kvs, vocab...), nil
}

func tokenizerKVs(cfg *hfconfig.Config, tok *tokenizer.Tokenizer, opts ConvertOptions) ([]KV, error) {
	if tok.ByteLevel() {
		// Any architecture's, phi3's too: Phi3MiniModel.set_vocab hands
		// a GPT2Tokenizer (Phi-4, Phi-4-mini) to _set_vocab_gpt2. (It
		// goes by tokenizer_class: a byte-level tokenizer of another
		// class it would read as SentencePiece and fail without
		// tokenizer.model; here it is written as what it is.)
		return byteLevelKVs(cfg, tok, opts)
	}
	entries := opts.Vocab
	if entries == nil {
		entries = tok.VocabEntries()
	}
	n := cfg.VocabSize
	if len(entries) > n {
		return nil, fmt.Errorf("gguf convert: tokenizer has %d ids, %s vocab_size is %d", len(entries), cfg.File, n)
	}
	phi3 := Arch(cfg) == "phi3"
	tokens := make([]string, n)
	scores := make([]float32, n)
	types := make([]int32, n)
	for id := range n {
		// Ids the tokenizer lacks (vocab_size padding) become unused
		// [PADn] pieces, as convert_hf_to_gguf.py writes them.
		e := tokenizer.VocabEntry{Type: tokenizer.TokenTypeUnused}
		if phi3 {
			e.Score = padTokenScore // (Phi3MiniModel.set_vocab's)
		}
		if id < len(entries) {
			e = entries[id]
		}
		if e.Piece == "" {
			e.Piece = "[PAD" + strconv.Itoa(id) + "]"
			e.Type = tokenizer.TokenTypeUnused
		}
		tokens[id], scores[id], types[id] = e.Piece, e.Score, int32(e.Type)
	}
	if phi3 {
		return phi3VocabKVs(cfg, tok, opts, tokens, scores, types)
	}
	kvs := []KV{
		{"tokenizer.ggml.model", "llama"},
		{"tokenizer.ggml.tokens", tokens},
		{"tokenizer.ggml.scores", scores},
		{"tokenizer.ggml.token_type", types},
	}
	ids := []struct {
		key string
		id  int
	}{
		{"tokenizer.ggml.bos_token_id", tok.BOS()},
		{"tokenizer.ggml.eos_token_id", tok.EOS()},
		{"tokenizer.ggml.unknown_token_id", tok.UnknownID()},
	}
	if opts.PadTokenID != nil {
		ids = append(ids, struct {
			key string
			id  int
		}{"tokenizer.ggml.padding_token_id", *opts.PadTokenID})
	}
	for _, x := range ids {
		if x.id < 0 {
			continue // the tokenizer has none
		}
		if x.id >= n {
			return nil, fmt.Errorf("gguf convert: %s %d outside the vocabulary of %d", x.key, x.id, n)
		}
		kvs = append(kvs, KV{x.key, uint32(x.id)})
	}
	kvs = append(kvs,
		KV{"tokenizer.ggml.add_bos_token", tok.AddBOS()},
		KV{"tokenizer.ggml.add_eos_token", tok.AddEOS()},
		KV{"tokenizer.ggml.add_space_prefix", tok.AddsSpacePrefix()},
	)
	return append(kvs, chatTemplateKVs(tok)...), nil
}

// phi3VocabKVs are a phi3 file's SentencePiece tokenizer keys, as
// Phi3MiniModel.set_vocab writes them: tokenizer.ggml.model "llama" and
// tokenizer.ggml.pre "default", the tokens, scores and types, then what
// gguf-py's SpecialVocab adds: the bos, eos, unknown and padding ids (the
// tokenizer's, else config.json's), add_bos_token and add_eos_token only
// where the tokenizer's configs decide them, the chat templates. The
// converter writes no add_space_prefix, which llama.cpp then takes as
// true for a llama vocabulary: written (false) only for a tokenizer that
// adds no space prefix, so that llama.cpp tokenizes as it does.
func phi3VocabKVs(cfg *hfconfig.Config, tok *tokenizer.Tokenizer, opts ConvertOptions, tokens []string, scores []float32, types []int32) ([]KV, error) {
	n := len(tokens)
	kvs := []KV{
		{"tokenizer.ggml.model", "llama"},
		{"tokenizer.ggml.pre", "default"},
		{"tokenizer.ggml.tokens", tokens},
		{"tokenizer.ggml.scores", scores},
		{"tokenizer.ggml.token_type", types},
	}
	special, err := specialTokenKVs(cfg, tok, opts, n)
	if err != nil {
		return nil, err
	}
	kvs = append(kvs, special...)
	if !tok.AddsSpacePrefix() {
		kvs = append(kvs, KV{"tokenizer.ggml.add_space_prefix", false})
	}
	return append(kvs, chatTemplateKVs(tok)...), nil
}

// chatTemplateKVs gives tokenizer.chat_template and the named templates.
func chatTemplateKVs(tok *tokenizer.Tokenizer) []KV {
	var kvs []KV
	if tmpl := tok.ChatTemplate(); tmpl != "" {
		kvs = append(kvs, KV{"tokenizer.chat_template", tmpl})
	}
	// Named templates besides the default, as gguf-py's add_chat_template
	// writes them: tokenizer.chat_template.<name> each (names with other
	// characters than ASCII letters and digits replaced by '_'), and their
	// names in tokenizer.chat_templates.
	var names []string
	for _, nt := range tok.NamedChatTemplates() {
		name := strings.Map(func(r rune) rune {
			if r < 0x80 && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
				return r
			}
			return '_'
		}, nt.Name)
		if name == "" || slices.Contains(names, name) {
			continue
		}
		names = append(names, name)
		kvs = append(kvs, KV{"tokenizer.chat_template." + name, nt.Template})
	}
	if len(names) > 0 {
		kvs = append(kvs, KV{"tokenizer.chat_templates", names})
	}
	return kvs
}
