package hfconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"unicode/utf8"
)

// SupportedModelTypes lists the config.json model_type values this package
// accepts, in the order error messages list them.
var SupportedModelTypes = []string{"mistral", "llama", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "gemma3_text", "granite", "olmo2", "mixtral", "qwen3_moe", "qwen2_moe", "olmoe", "ministral3"}

// ErrUnsupported is wrapped by errors for configurations that parse but that
// the project does not implement (model_type, activation, RoPE scaling, dtype).
var ErrUnsupported = errors.New("unsupported")

// Config is the subset of a Mistral/Llama/Qwen2/Qwen3/Phi-3 config.json the project
// uses, with defaults applied (see the package documentation), plus the raw
// document.
type Config struct {
	ModelType             string
	Architectures         []string
	HiddenSize            int
	IntermediateSize      int
	NumHiddenLayers       int
	NumAttentionHeads     int
	NumKeyValueHeads      int
	HeadDim               int
	VocabSize             int
	MaxPositionEmbeddings int
	RMSNormEps            float64
	RopeTheta             float64
	// RopeScaling is the RoPE scaling of rope_scaling (4.x) or
	// rope_parameters (5.x): Type "default" (none), "linear", "llama3",
	// "yarn" or (phi3 only) "longrope" with their parameters, or, from
	// LoadAny only, another type whose parameters are not read.
	RopeScaling RopeScaling
	// RotaryDim is the number of leading channels of each head that RoPE
	// rotates (by halves of that part; the rest pass through):
	// int(head_dim · partial_rotary_factor) as transformers' rope init
	// computes it, head_dim where the factor is absent or 1. Only phi3
	// takes another (Phi-4-mini's 0.75: 96 of 128); it is even and in
	// [2, head_dim].
	RotaryDim int
	// SlidingWindow is the attention window in tokens; 0 means none (null,
	// or absent in a llama config). An absent key in a mistral config is
	// MistralConfig's default, 4096.
	SlidingWindow int
	// LayerTypes is each layer's attention, "sliding_attention" (under
	// SlidingWindow) or "full_attention": gemma2's and gemma3_text's
	// layer_types, else gemma3_text's sliding_window_pattern (gemma2's
	// layers alternate, the first sliding); nil in the other model types, whose layers
	// all attend alike (LayerWindow, LayerRope).
	LayerTypes []string
	// RopeLocalTheta is the RoPE base of gemma3_text's sliding layers
	// (rope_local_base_freq, 10000), which rotate without RopeScaling; 0
	// elsewhere.
	RopeLocalTheta float64
	// QueryPreAttnScalar is gemma2's and gemma3_text's
	// query_pre_attn_scalar (256): attention scores are scaled by its -0.5
	// power, not head_dim's; 0 elsewhere.
	QueryPreAttnScalar float64
	// AttnSoftcap and FinalSoftcap are gemma2's attn_logit_softcapping
	// (50) and final_logit_softcapping (30): the scaled attention scores,
	// and the logits, s become cap·tanh(s/cap). 0 (null, and in every
	// other model type): none.
	AttnSoftcap, FinalSoftcap float64
	// Granite is granite's multipliers (GraniteConfig); nil in every other
	// model type.
	Granite           *Granite
	TieWordEmbeddings bool
	// DType is "float16", "bfloat16" or "float32", from torch_dtype (4.x) or dtype (5.x).
	DType     string
	HiddenAct string
	// BOSTokenID and EOSTokenID are -1 when absent. EOSTokenID is the first of
	// EOSTokenIDs when eos_token_id is a list.
	BOSTokenID  int
	EOSTokenID  int
	EOSTokenIDs []int
	// MoE is the sparse mixture-of-experts MLP of a mixtral or qwen3_moe
	// config (Sparse says which layers have it); nil in the other model
	// types.
	MoE *MoE
	// QuantizationConfig is the raw quantization_config block, nil if absent or null.
	QuantizationConfig json.RawMessage
	// Raw is the whole parsed document; numbers are json.Number.
	Raw map[string]any
	// File is the path the config was read from, used in errors.
	File string
	// Outer is the whole document of a multimodal config (model_type
	// gemma3, mistral3, qwen2_vl, qwen2_5_vl or qwen3_vl: multimodal.go),
	// whose text model the rest of Config describes: Raw is then its
	// text_config (or a flat config's top level) with the text model's
	// defaults filled in, and MarshalWith and DTypeKeys work on Outer.
	// Nil for every other config.
	Outer map[string]any
	// Wrapper is a multimodal config's own model_type; "" for others.
	Wrapper string
	// QueryScale is a ministral3 text model's position-dependent query
	// scale, nil where it has none (or its beta is 0).
	QueryScale *QueryScale
	// MRoPESection is a Qwen VL text model's rope_scaling.mrope_section
	// (temporal, height, width counts of frequencies; nil for others),
	// which plain RoPE computes for text (multimodal.go); MRoPEInterleaved
	// is Qwen3-VL's mrope_interleaved.
	MRoPESection     []int
	MRoPEInterleaved bool
}

// LoadAny is Load that accepts RoPE scalings the project does not
// implement, naming them in Config.RopeScaling.Type, and partial RoPE:
// for work that copies a checkpoint's
// tensors without running it (a dtype or shard conversion).
func LoadAny(dir string) (*Config, error) {
	file, data, err := read(dir)
	if err != nil {
		return nil, err
	}
	return parse(data, file, true)
}

// Load reads and parses dir/config.json.
func Load(dir string) (*Config, error) {
	file, data, err := read(dir)
	if err != nil {
		return nil, err
	}
	return Parse(data, file)
}

// read reads dir/config.json. A dir that is a file (a GGUF file, a
// model.safetensors or pytorch_model.bin passed for its directory) is named
// as such, where the open's "not a directory" left the user to work out
// which path was wrong.
func read(dir string) (string, []byte, error) {
	file := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(file)
	if err == nil {
		return file, data, nil
	}
	if fi, serr := os.Stat(dir); serr == nil && !fi.IsDir() {
		if strings.EqualFold(filepath.Ext(dir), ".gguf") {
			return "", nil, fmt.Errorf("hfconfig: %s is a GGUF file, not a Hugging Face checkpoint directory (config.json and the weights)", dir)
		}
		parent := filepath.Dir(dir)
		if parent == "." {
			parent = "the current directory"
		}
		return "", nil, fmt.Errorf("hfconfig: %s is a file, not a checkpoint directory: want the directory that holds config.json and the weights (%s?)", dir, parent)
	}
	return "", nil, fmt.Errorf("hfconfig: %w", err)
}

// Parse parses and validates a config.json document. file names the source in
// errors.
func Parse(data []byte, file string) (*Config, error) {
	return parse(data, file, false)
}

// parse is Parse; anyRoPE accepts every RoPE scaling type (LoadAny).
func parse(data []byte, file string, anyRoPE bool) (*Config, error) {
	raw, err := decodeObject(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	r := reader{m: raw, file: file, anyRoPE: anyRoPE}
	c := &Config{Raw: raw, File: file}

	c.ModelType = r.requiredString("model_type")
	if w, ok := wrappers[c.ModelType]; ok && r.err == nil {
		return parseWrapped(raw, file, c.ModelType, w, anyRoPE)
	}
	ministral3 := c.ModelType == "ministral3"
	if ministral3 {
		// Ministral3ForCausalLM (Ministral 3, Devstral 2; Mistral 3's text
		// model): Mistral's layers, RoPE from rope_parameters, queries
		// scaled by position past original_max_position_embeddings
		// (QueryScale).
		c.ModelType = "mistral"
	}
	if r.err == nil && !isSupported(c.ModelType) {
		return nil, fmt.Errorf("%s: model_type %q: %w (supported: %s; the text models of %s)", file, c.ModelType, ErrUnsupported, strings.Join(SupportedModelTypes, ", "), strings.Join(MultimodalTypes, ", "))
	}
	c.Architectures = r.stringList("architectures")
	c.HiddenSize = r.requiredInt("hidden_size")
	c.IntermediateSize = r.requiredInt("intermediate_size")
	c.NumHiddenLayers = r.requiredInt("num_hidden_layers")
	c.NumAttentionHeads = r.requiredInt("num_attention_heads")
	c.VocabSize = r.requiredInt("vocab_size")
	if r.err != nil {
		return nil, r.err
	}

	kvDefault, maxPosDefault, swDefault, epsDefault := c.NumAttentionHeads, 2048, 0, 1e-6
	switch c.ModelType {
	case "phi3":
		// Phi3Config: num_key_value_heads None (num_attention_heads),
		// max_position_embeddings 4096, rms_norm_eps 1e-5, sliding_window
		// None.
		maxPosDefault, epsDefault = 4096, 1e-5
	case "mistral":
		kvDefault, maxPosDefault, swDefault = 8, 4096*32, 4096
		if ministral3 {
			// Ministral3Config: max_position_embeddings 262144,
			// rms_norm_eps 1e-5, sliding_window None.
			maxPosDefault, swDefault, epsDefault = 262144, 0, 1e-5
		}
	case "mixtral":
		// MixtralConfig: num_key_value_heads 8, max_position_embeddings
		// 4096*32, rms_norm_eps 1e-5, sliding_window None.
		kvDefault, maxPosDefault, epsDefault = 8, 4096*32, 1e-5
	case "qwen3_moe":
		// Qwen3MoeConfig: num_key_value_heads 4, max_position_embeddings
		// 32768; no window unless use_sliding_window.
		kvDefault, maxPosDefault = 4, 32768
	case "qwen2_moe":
		// Qwen2MoeConfig: num_key_value_heads 16, max_position_embeddings
		// 32768; no window unless use_sliding_window.
		kvDefault, maxPosDefault = 16, 32768
	case "gemma3_text":
		// Gemma3TextConfig: num_key_value_heads 4, max_position_embeddings
		// 131072, rms_norm_eps 1e-6, sliding_window 4096.
		kvDefault, maxPosDefault, swDefault = 4, 131072, 4096
	case "gemma2":
		// Gemma2Config: num_key_value_heads 4, max_position_embeddings
		// 8192, rms_norm_eps 1e-6, sliding_window 4096.
		kvDefault, maxPosDefault, swDefault = 4, 8192, 4096
	case "olmo2":
		// Olmo2Config: num_key_value_heads None (num_attention_heads),
		// max_position_embeddings 2048, rms_norm_eps 1e-5.
		epsDefault = 1e-5
	case "olmoe":
		// OlmoeConfig: num_key_value_heads None (num_attention_heads),
		// max_position_embeddings 4096, rms_norm_eps 1e-5; no window.
		maxPosDefault, epsDefault = 4096, 1e-5
	case "gemma":
		// GemmaConfig: num_key_value_heads 16, max_position_embeddings
		// 8192, rms_norm_eps 1e-6; no window (GemmaAttention has none).
		kvDefault, maxPosDefault = 16, 8192
	case "qwen2", "qwen3":
		// Qwen2Config, Qwen3Config: num_key_value_heads=32 when absent
		// (None, null, is num_attention_heads); no window unless
		// use_sliding_window.
		maxPosDefault = 32768
		if _, ok := raw["num_key_value_heads"]; !ok {
			kvDefault = 32
		}
	}
	c.NumKeyValueHeads = r.optionalInt("num_key_value_heads", kvDefault)
	kvGiven := r.present("num_key_value_heads")
	headDimGiven := r.present("head_dim")
	c.HeadDim = r.optionalInt("head_dim", 0)
	if c.ModelType == "qwen3" && !headDimGiven {
		// Qwen3Config: head_dim=128, not hidden_size/num_attention_heads.
		c.HeadDim, headDimGiven = 128, true
	}
	if ministral3 && !headDimGiven {
		// Ministral3Config: head_dim=128.
		c.HeadDim, headDimGiven = 128, true
	}
	if c.Gemma() && !headDimGiven {
		// GemmaConfig, Gemma2Config, Gemma3TextConfig: head_dim=256.
		c.HeadDim, headDimGiven = 256, true
	}
	c.MaxPositionEmbeddings = r.optionalInt("max_position_embeddings", maxPosDefault)
	c.RMSNormEps = r.optionalFloat("rms_norm_eps", epsDefault)
	thetaDefault := 10000.0
	if c.ModelType == "gemma3_text" || c.ModelType == "mixtral" {
		thetaDefault = 1e6 // Gemma3TextConfig's and MixtralConfig's rope_theta
	}
	c.RopeTheta = r.optionalFloat("rope_theta", thetaDefault)
	if _, ok := raw["sliding_window"]; ok && c.ModelType != "gemma" && c.ModelType != "granite" && c.ModelType != "olmo2" && c.ModelType != "olmoe" {
		// (GemmaAttention, GraniteAttention, Olmo2Attention and
		// OlmoeAttention have no window: the key means nothing there.)
		c.SlidingWindow = r.optionalInt("sliding_window", 0) // null: no window
	} else {
		c.SlidingWindow = swDefault
	}
	if c.ModelType == "qwen2" || c.ModelType == "qwen3" || c.ModelType == "qwen3_moe" || c.ModelType == "qwen2_moe" {
		r.qwen2Window(c)
	}
	if c.ModelType == "qwen3" || c.ModelType == "qwen3_moe" || c.ModelType == "qwen2_moe" {
		r.layerTypes(c)
	}
	r.moe(c)
	c.TieWordEmbeddings = r.optionalBool("tie_word_embeddings", c.Gemma())
	if c.Gemma1() {
		c.HiddenAct = r.gemmaActivation()
	} else if c.Gemma() {
		// Gemma2Config and Gemma3TextConfig read hidden_activation (a
		// hidden_act goes to their kwargs, unread).
		c.HiddenAct = r.optionalString("hidden_activation", "gelu_pytorch_tanh")
	} else {
		c.HiddenAct = r.optionalString("hidden_act", "silu")
	}
	c.DType = r.optionalString("torch_dtype", "")
	if d := r.optionalString("dtype", ""); d != "" {
		c.DType = d
	}
	if c.DType == "" {
		c.DType = "float32"
	}
	c.BOSTokenID = r.optionalInt("bos_token_id", -1)
	c.EOSTokenIDs = r.tokenIDs("eos_token_id")
	c.EOSTokenID = -1
	if len(c.EOSTokenIDs) > 0 {
		c.EOSTokenID = c.EOSTokenIDs[0]
	}
	r.modelType = c.ModelType
	switch c.ModelType {
	case "granite":
		r.granite(c)
	case "gemma":
		r.gemma(c)
	case "gemma2":
		r.gemma2(c)
	case "gemma3_text":
		r.gemma3(c)
	}
	if ministral3 && !r.present("rope_parameters") && !r.present("rope_scaling") {
		// (Ministral3Config fills a missing block with yarn and a query
		// scale: read as plain RoPE, it would run another model.)
		r.fail("model_type \"ministral3\": missing required key \"rope_parameters\" (its yarn and llama_4_scaling_beta)")
	}
	r.rope(c)
	if ministral3 {
		r.queryScale(c)
	}
	partial, partialKey := r.partialRotary()
	if q, ok := raw["quantization_config"]; ok && q != nil {
		if _, isObj := q.(map[string]any); !isObj {
			r.fail("quantization_config: got %s, want an object", jsonKind(q))
		} else {
			b, err := json.Marshal(q)
			if err != nil {
				r.fail("quantization_config: %v", err)
			}
			c.QuantizationConfig = b
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if err := c.validate(headDimGiven, kvGiven); err != nil {
		return nil, err
	}
	c.RotaryDim = c.HeadDim
	if partial != 1 {
		// transformers' rope init: dim = int(head_dim * partial_rotary_factor).
		c.RotaryDim = int(float64(c.HeadDim) * partial)
		if (c.RotaryDim < 2 || c.RotaryDim > c.HeadDim || c.RotaryDim%2 != 0) && anyRoPE {
			c.RotaryDim = c.HeadDim
		} else if c.RotaryDim < 2 || c.RotaryDim > c.HeadDim || c.RotaryDim%2 != 0 {
			return nil, fmt.Errorf("%s: %s: %g of head_dim %d gives %d rotary dimensions, want an even number from 2 to head_dim", c.File, partialKey, partial, c.HeadDim, c.RotaryDim)
		}
	}
	if s := c.RopeScaling; s.Type == RopeLongrope && c.ModelType == "phi3" && len(s.ShortFactor) != c.RotaryDim/2 {
		// Phi3Config.validate_rope: one factor a rotated pair.
		want := fmt.Sprintf("head_dim/2 = %d", c.HeadDim/2)
		if c.RotaryDim != c.HeadDim {
			want = fmt.Sprintf("the rotary dimensions/2 = %d (head_dim %d · partial_rotary_factor %g)", c.RotaryDim/2, c.HeadDim, partial)
		}
		return nil, fmt.Errorf("%s: %s: short_factor and long_factor hold %d factors, want %s", c.File, r.ropeKey, len(s.ShortFactor), want)
	}
	return c, nil
}

func (c *Config) validate(headDimGiven, kvGiven bool) error {
	dims := []struct {
		key string
		v   int
	}{
		{"hidden_size", c.HiddenSize},
		{"intermediate_size", c.IntermediateSize},
		{"num_hidden_layers", c.NumHiddenLayers},
		{"num_attention_heads", c.NumAttentionHeads},
		{"num_key_value_heads", c.NumKeyValueHeads},
		{"vocab_size", c.VocabSize},
		{"max_position_embeddings", c.MaxPositionEmbeddings},
	}
	for _, d := range dims {
		if d.v <= 0 {
			return fmt.Errorf("%s: %s: got %d, want a positive integer", c.File, d.key, d.v)
		}
	}
	if headDimGiven {
		if c.HeadDim <= 0 {
			return fmt.Errorf("%s: head_dim: got %d, want a positive integer", c.File, c.HeadDim)
		}
	} else {
		if c.HiddenSize%c.NumAttentionHeads != 0 {
			return fmt.Errorf("%s: hidden_size %d is not divisible by num_attention_heads %d (and head_dim is not given)", c.File, c.HiddenSize, c.NumAttentionHeads)
		}
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	if c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		absent := ""
		if !kvGiven {
			// MistralConfig's default of 8 fits Mistral-7B alone: name
			// it, where the message read as if the file said 8.
			absent = fmt.Sprintf(" (num_key_value_heads is absent: %s's default)", c.ModelType)
		}
		return fmt.Errorf("%s: num_attention_heads %d is not divisible by num_key_value_heads %d%s", c.File, c.NumAttentionHeads, c.NumKeyValueHeads, absent)
	}
	if c.SlidingWindow < 0 {
		return fmt.Errorf("%s: sliding_window: got %d, want a positive integer or null", c.File, c.SlidingWindow)
	}
	if !(c.RMSNormEps > 0) {
		return fmt.Errorf("%s: rms_norm_eps: got %g, want a positive number", c.File, c.RMSNormEps)
	}
	if !(c.RopeTheta > 0) {
		return fmt.Errorf("%s: rope_theta: got %g, want a positive number", c.File, c.RopeTheta)
	}
	if c.Gemma() {
		if c.HiddenAct != "gelu_pytorch_tanh" {
			return fmt.Errorf("%s: hidden_activation %q: %w (supported: gelu_pytorch_tanh)", c.File, c.HiddenAct, ErrUnsupported)
		}
	} else if c.HiddenAct != "silu" {
		return fmt.Errorf("%s: hidden_act %q: %w (supported: silu)", c.File, c.HiddenAct, ErrUnsupported)
	}
	switch c.DType {
	case "float16", "bfloat16", "float32":
	default:
		return fmt.Errorf("%s: dtype %q: %w (supported: float16, bfloat16, float32)", c.File, c.DType, ErrUnsupported)
	}
	return nil
}

// qwen2Window reads use_sliding_window (default false): transformers'
// Qwen2 applies sliding_window only when it is true, and then only to the
// layers from max_window_layers on, so that without it sliding_window and
// max_window_layers mean nothing and c.SlidingWindow is 0. Per-layer
// windows are not implemented: true is refused (every released Qwen2 and
// Qwen2.5 model sets it false).
func (r *reader) qwen2Window(c *Config) {
	if r.err != nil {
		return
	}
	if r.optionalBool("use_sliding_window", false) {
		r.fail("use_sliding_window: true: %w (sliding-window attention in the layers from max_window_layers on is not implemented; released %s models set it false)", ErrUnsupported, qwenName(c.ModelType))
		return
	}
	c.SlidingWindow = 0
}

func qwenName(modelType string) string {
	switch modelType {
	case "qwen3":
		return "Qwen3"
	case "qwen3_moe":
		return "Qwen3-MoE"
	case "qwen2_moe":
		return "Qwen2-MoE"
	}
	return "Qwen2"
}

// layerTypes reads Qwen3Config's layer_types (default: every layer
// "full_attention", since use_sliding_window is false): given, it must
// hold num_hidden_layers entries, each "full_attention"; a
// "sliding_attention" layer is refused as unsupported, as
// use_sliding_window is.
func (r *reader) layerTypes(c *Config) {
	v, ok := r.m["layer_types"]
	if r.err != nil || !ok || v == nil {
		return
	}
	list, isList := v.([]any)
	if !isList {
		r.fail("layer_types: got %s, want a list of strings", jsonKind(v))
		return
	}
	if len(list) != c.NumHiddenLayers {
		r.fail("layer_types: %d entries for num_hidden_layers %d", len(list), c.NumHiddenLayers)
		return
	}
	for i, e := range list {
		switch e {
		case "full_attention":
		case "sliding_attention":
			r.fail("layer_types[%d]: \"sliding_attention\": %w (per-layer sliding-window attention is not implemented)", i, ErrUnsupported)
			return
		default:
			r.fail("layer_types[%d]: got %v, want \"full_attention\"", i, e)
			return
		}
	}
}

// RoPEDim returns the channels of each head RoPE rotates: RotaryDim, or
// HeadDim where RotaryDim is 0 (a Config built in code rather than
// parsed, which rotates whole heads).
func (c *Config) RoPEDim() int {
	if c.RotaryDim == 0 {
		return c.HeadDim
	}
	return c.RotaryDim
}

// LinearBias reports whether config.json gives the Linear module of a
// decoder layer (module as the tensor names spell it: "self_attn.q_proj",
// "mlp.down_proj") a bias: in qwen2, q_proj, k_proj and v_proj
// (transformers' Qwen2Attention, bias=True; o_proj and the MLP have none);
// in llama, attention_bias for the four attention projections and
// mlp_bias for the MLP's (LlamaConfig, default false); none in mistral
// (MistralAttention and MistralMLP have none, whatever the keys say).
func (c *Config) LinearBias(module string) bool {
	switch c.ModelType {
	case "qwen2":
		switch module {
		case "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj":
			return true
		}
	case "qwen2_moe":
		// Qwen2MoeAttention: q/k/v biases by qkv_bias (default true; the
		// configs of transformers before the key have none: bias=True).
		switch module {
		case "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj":
			b, ok := c.Raw["qkv_bias"].(bool)
			return b || !ok
		}
	case "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3_text", "olmo2", "olmoe":
		// Qwen3Attention, Qwen3MoeAttention, GemmaAttention, Gemma2Attention, Gemma3Attention,
		// Olmo2Attention, OlmoeAttention:
		// bias=config.attention_bias on all four projections; their MLPs
		// and experts have none.
		if strings.HasPrefix(module, "self_attn.") {
			b, _ := c.Raw["attention_bias"].(bool)
			return b
		}
	case "llama", "granite":
		// (GraniteAttention and GraniteMLP are Llama's.)
		key := "attention_bias"
		if strings.HasPrefix(module, "mlp.") {
			key = "mlp_bias"
		}
		b, _ := c.Raw[key].(bool)
		return b
	}
	return false
}

// QKNorm reports whether each attention layer normalizes every head of
// q and of k by an RMSNorm of its own (self_attn.q_norm.weight and
// self_attn.k_norm.weight [head_dim], eps rms_norm_eps) after the
// projections (and their biases) and before RoPE: transformers'
// Qwen3Attention, model_type qwen3 (and qwen3_moe, gemma3_text); or, in
// olmo2 and olmoe, q and k each by one RMSNorm over the whole projection
// (QKNormWidths).
func (c *Config) QKNorm() bool {
	return c.ModelType == "qwen3" || c.ModelType == "qwen3_moe" || c.ModelType == "gemma3_text" || c.ModelType == "olmo2" || c.ModelType == "olmoe"
}

func isSupported(modelType string) bool {
	for _, s := range SupportedModelTypes {
		if s == modelType {
			return true
		}
	}
	return false
}

// NumParameters returns the parameter count implied by the shapes: token
// embedding, per layer q/k/v/o projections, gate/up/down projections and the
// two RMSNorm weights, the final norm, and lm_head unless tied to the embedding,
// plus the Linear biases that LinearBias gives (Qwen2's q/k/v) and the
// per-head q/k norms' weights where QKNorm (Qwen3's, [head_dim] each).
func (c *Config) NumParameters() int64 {
	h := int64(c.HiddenSize)
	qDim := int64(c.NumAttentionHeads) * int64(c.HeadDim)
	kvDim := int64(c.NumKeyValueHeads) * int64(c.HeadDim)
	inter := int64(c.IntermediateSize)
	embed := int64(c.VocabSize) * h
	attn := h*qDim + 2*h*kvDim + qDim*h
	mlp := 3 * h * inter
	for _, b := range []struct {
		module string
		n      int64
	}{{"self_attn.q_proj", qDim}, {"self_attn.k_proj", kvDim}, {"self_attn.v_proj", kvDim}, {"self_attn.o_proj", h},
		{"mlp.gate_proj", inter}, {"mlp.up_proj", inter}, {"mlp.down_proj", h}} {
		if c.LinearBias(b.module) {
			attn += b.n
		}
	}
	layer := attn + 2*h
	if c.MoE == nil {
		layer += mlp
	}
	if c.GemmaPostNorms() {
		layer += 2 * h // pre_feedforward_layernorm's and post_feedforward_layernorm's
	}
	if c.QKNorm() {
		qw, kw := c.QKNormWidths()
		layer += int64(qw + kw)
	}
	n := embed + int64(c.NumHiddenLayers)*layer + h
	if c.MoE != nil {
		n += c.moeParameters()
	}
	if !c.TieWordEmbeddings {
		n += embed
	}
	return n
}

// Remove, as a value of MarshalWith's extra, drops the key from the output.
var Remove = removeKey{}

type removeKey struct{}

// DTypeKeys returns the keys that give the weights' dtype in this config,
// for a writer that changes it: "dtype" (transformers 5.x, read before
// torch_dtype) and "torch_dtype" (4.x), each where the config has it;
// "torch_dtype" where it has neither.
func (c *Config) DTypeKeys() []string {
	var keys []string
	doc := c.Raw
	if c.Outer != nil {
		doc = c.Outer
	}
	for _, k := range []string{"dtype", "torch_dtype"} {
		if _, ok := doc[k]; ok {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		keys = []string{"torch_dtype"}
	}
	return keys
}

// MarshalWith renders config.json: the original keys of Raw (Outer where
// set: a multimodal checkpoint's whole document) plus extra (which
// override keys of the same name), like transformers' to_json_string: keys
// sorted at every level (extra values included), 2-space indent, non-ASCII
// escaped, trailing newline. A nil value in extra writes null; Remove drops
// the key.
func (c *Config) MarshalWith(extra map[string]any) ([]byte, error) {
	src := c.Raw
	if c.Outer != nil {
		src = c.Outer
	}
	doc := make(map[string]any, len(src)+len(extra))
	for k, v := range src {
		doc[k] = v
	}
	for k, v := range extra {
		if v == Remove {
			delete(doc, k)
			continue
		}
		// Round-trip through JSON so that ordered types (structs, MarshalJSON
		// values) are sorted like the rest of the document.
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%s: marshal key %q: %w", c.File, k, err)
		}
		norm, err := decodeAny(b)
		if err != nil {
			return nil, fmt.Errorf("%s: marshal key %q: %w", c.File, k, err)
		}
		doc[k] = norm
	}
	if c.Outer != nil {
		textDType(doc, extra)
	}
	return marshalSorted(doc)
}

// textDType gives a multimodal document's text_config the dtype extra sets
// at the top level, where text_config names one (Qwen3-VL's "dtype"):
// transformers' dtype "auto" loads each sub-model in its own config's
// dtype, which would otherwise stay the source's.
func textDType(doc, extra map[string]any) {
	var dtype any
	for _, k := range []string{"dtype", "torch_dtype"} {
		if v, ok := extra[k]; ok && v != Remove {
			dtype = doc[k]
		}
	}
	tc, ok := doc["text_config"].(map[string]any)
	if dtype == nil || !ok {
		return
	}
	tc = maps.Clone(tc)
	for _, k := range []string{"dtype", "torch_dtype"} {
		if _, ok := tc[k]; ok {
			tc[k] = dtype
		}
	}
	doc["text_config"] = tc
}

// marshalSorted writes v as json.dumps(v, indent=2, sort_keys=True) does.
func marshalSorted(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return escapeNonASCII(buf.Bytes()), nil
}

// escapeNonASCII replaces every non-ASCII rune with \uXXXX (a surrogate pair
// above U+FFFF), as Python's json.dumps does with ensure_ascii=True. Non-ASCII
// bytes only occur inside JSON strings, so this is safe on encoder output.
func escapeNonASCII(b []byte) []byte {
	ascii := true
	for _, c := range b {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		switch {
		case r < utf8.RuneSelf:
			out = append(out, byte(r))
		case r > 0xFFFF:
			r -= 0x10000
			out = fmt.Appendf(out, `\u%04x\u%04x`, 0xD800+(r>>10), 0xDC00+(r&0x3FF))
		default:
			out = fmt.Appendf(out, `\u%04x`, r)
		}
	}
	return out
}

// decodeObject decodes a JSON object with numbers kept as json.Number and
// rejects trailing data.
func decodeObject(data []byte) (map[string]any, error) {
	v, err := decodeAny(data)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("got a JSON %s, want an object", jsonKind(v))
	}
	return m, nil
}

func decodeAny(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("invalid JSON: trailing data after the top-level value")
	}
	return v, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// reader extracts typed values from a decoded document, recording the first
// error (which names the key and the file).
type reader struct {
	m       map[string]any
	file    string
	err     error
	anyRoPE bool // what the runtime does not compute passes (LoadAny): RoPE scalings, partial RoPE
	// modelType is the config's model_type where a RoPE scaling depends
	// on it (phi3's longrope); ropeKey the key the scaling was read from.
	modelType, ropeKey string
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%s: "+format, append([]any{r.file}, args...)...)
	}
}

// present reports whether key exists with a non-null value.
func (r *reader) present(key string) bool {
	v, ok := r.m[key]
	return ok && v != nil
}

// required reports whether a required key has a value, recording the
// error where it has none: absent, or null (want says what it should be).
func (r *reader) required(key, want string) bool {
	v, ok := r.m[key]
	switch {
	case !ok:
		r.fail("missing required key %q", key)
	case v == nil:
		r.fail("%s: got null, want %s", key, want)
	}
	return ok && v != nil
}

func (r *reader) requiredString(key string) string {
	if !r.required(key, "a string") {
		return ""
	}
	return r.optionalString(key, "")
}

func (r *reader) optionalString(key, def string) string {
	if !r.present(key) {
		return def
	}
	s, ok := r.m[key].(string)
	if !ok {
		r.fail("%s: got %s, want a string", key, jsonKind(r.m[key]))
		return def
	}
	return s
}

func (r *reader) stringList(key string) []string {
	if !r.present(key) {
		return nil
	}
	list, ok := r.m[key].([]any)
	if !ok {
		r.fail("%s: got %s, want an array of strings", key, jsonKind(r.m[key]))
		return nil
	}
	out := make([]string, 0, len(list))
	for i, v := range list {
		s, ok := v.(string)
		if !ok {
			r.fail("%s[%d]: got %s, want a string", key, i, jsonKind(v))
			return nil
		}
		out = append(out, s)
	}
	return out
}

// requiredInt reads a required dimension (validate wants it positive).
func (r *reader) requiredInt(key string) int {
	if !r.required(key, "a positive integer") {
		return 0
	}
	return r.optionalInt(key, 0)
}

func (r *reader) optionalInt(key string, def int) int {
	if !r.present(key) {
		return def
	}
	n, err := toInt(r.m[key])
	if err != nil {
		r.fail("%s: %v", key, err)
		return def
	}
	return n
}

// toInt accepts a JSON number with an integral value in the int32 range
// (every dimension and token id fits).
func toInt(v any) (int, error) {
	num, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("got %s, want an integer", jsonKind(v))
	}
	if i, err := num.Int64(); err == nil {
		if i < math.MinInt32 || i > math.MaxInt32 {
			return 0, fmt.Errorf("%d out of range", i)
		}
		return int(i), nil
	}
	f, err := num.Float64()
	if err != nil || f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32 {
		return 0, fmt.Errorf("got %s, want an integer", num)
	}
	return int(f), nil
}

func (r *reader) optionalFloat(key string, def float64) float64 {
	if !r.present(key) {
		return def
	}
	f, err := toFloat(r.m[key])
	if err != nil {
		r.fail("%s: %v", key, err)
		return def
	}
	return f
}

func toFloat(v any) (float64, error) {
	num, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("got %s, want a number", jsonKind(v))
	}
	f, err := num.Float64()
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("got %s, want a finite number", num)
	}
	return f, nil
}

func (r *reader) optionalBool(key string, def bool) bool {
	if !r.present(key) {
		return def
	}
	b, ok := r.m[key].(bool)
	if !ok {
		r.fail("%s: got %s, want a boolean", key, jsonKind(r.m[key]))
		return def
	}
	return b
}

// tokenIDs reads an id or a list of ids; absent or null gives nil.
func (r *reader) tokenIDs(key string) []int {
	if !r.present(key) {
		return nil
	}
	if list, ok := r.m[key].([]any); ok {
		out := make([]int, 0, len(list))
		for i, v := range list {
			n, err := toInt(v)
			if err != nil {
				r.fail("%s[%d]: %v", key, i, err)
				return nil
			}
			out = append(out, n)
		}
		return out
	}
	n, err := toInt(r.m[key])
	if err != nil {
		r.fail("%s: %v (or a list of integers)", key, err)
		return nil
	}
	return []int{n}
}

// RoPE scaling types (transformers' rope_type) the runtime computes.
const (
	RopeDefault = "default" // plain RoPE
	RopeLinear  = "linear"  // every inverse frequency divided by Factor
	RopeLlama3  = "llama3"  // Llama 3.1's banded scaling
	RopeYarn    = "yarn"    // YaRN: interpolation ramped by dimension, attention factor
	// RopeLongrope is Phi-3's LongRoPE: every frequency divided by a
	// factor of its own, an attention factor (phi3 configs only).
	RopeLongrope = "longrope"
)

// Yarn's parameter defaults where a config leaves them out (transformers'
// _compute_yarn_parameters, from the YaRN paper).
const (
	YarnBetaFast = 32
	YarnBetaSlow = 1
)

// RopeScaling is a config's RoPE scaling, typed: what transformers'
// rope_scaling (4.x) or rope_parameters (5.x) holds besides rope_theta.
// The zero value is plain RoPE, as is Type "default".
type RopeScaling struct {
	// Type is RopeDefault, RopeLinear, RopeLlama3 or RopeYarn; LoadAny
	// also passes other types (dynamic, longrope, ...), their parameters
	// unread.
	Type string
	// Factor (linear, llama3 and yarn, at least 1): linear divides every
	// inverse frequency by it, which is positions divided by it
	// (_compute_linear_scaling_rope_parameters); llama3 and yarn the low
	// frequencies.
	Factor float64
	// LowFreqFactor, HighFreqFactor and OriginalMaxPositionEmbeddings are
	// llama3's (_compute_llama3_parameters): a frequency whose wavelength
	// 2π/inv exceeds original/low is divided by Factor, one below
	// original/high is kept, and those between are interpolated smoothly.
	// LowFreqFactor > 0, HighFreqFactor >= LowFreqFactor, original > 0.
	// OriginalMaxPositionEmbeddings is also yarn's pretraining context,
	// which sets its correction range.
	LowFreqFactor, HighFreqFactor float64
	OriginalMaxPositionEmbeddings int
	// BetaFast, BetaSlow, Truncate and AttentionFactor are yarn's
	// (_compute_yarn_parameters): the dimensions that turn fewer than
	// BetaSlow times over OriginalMaxPositionEmbeddings positions are
	// interpolated (divided by Factor), those that turn more than BetaFast
	// times kept, with a linear ramp between; Truncate rounds the ramp's
	// ends out to whole dimensions (the config's "truncate", default
	// true). BetaFast >= BetaSlow > 0. AttentionFactor > 0 is what
	// transformers multiplies cos and sin by, resolved from
	// attention_factor, mscale and mscale_all_dim at parse (the runtime
	// multiplies the attention logits by its square instead).
	BetaFast, BetaSlow float64
	Truncate           bool
	AttentionFactor    float64
	// FreqFactors, when not nil, are the divisors of the plain inverse
	// frequencies, one a frequency (head_dim/2 of them), in place of what
	// the parameters above compute: llama.cpp's rope_freqs tensor, which
	// its converter computes from a llama3 scaling and keeps instead of
	// the parameters. Only formats/gguf sets it (Type is then llama3, the
	// parameters zero); config.json has no key for it.
	FreqFactors []float32
	// ShortFactor and LongFactor are longrope's (_compute_longrope_parameters):
	// inverse frequency j is divided by ShortFactor[j], or LongFactor[j]
	// where Long, head_dim/2 positive factors each. Factor and
	// AttentionFactor are longrope's too (the latter multiplies cos and
	// sin, as yarn's does), and OriginalMaxPositionEmbeddings the
	// pretraining context past which transformers takes the long factors.
	// Long says the table takes LongFactor: as read, max_position_embeddings
	// > OriginalMaxPositionEmbeddings (the config's own context); a model
	// run with a context of its own chooses again by it (ForContext; see
	// readLongrope for why).
	ShortFactor, LongFactor []float64
	Long                    bool
}

// ForContext returns s as a model run with a context of n positions (its
// longest sequence, prompt and generated tokens) applies it: for longrope,
// the long factors where n > OriginalMaxPositionEmbeddings, the short ones
// where n is within it (transformers' choice for a sequence of n positions,
// llama.cpp's for n_ctx n); other types unchanged. The attention factor
// stays: transformers and vLLM multiply both tables by the same one.
func (s RopeScaling) ForContext(n int) RopeScaling {
	if s.Type == RopeLongrope {
		s.Long = n > s.OriginalMaxPositionEmbeddings
	}
	return s
}

// IsDefault reports whether s is plain RoPE (no scaling).
func (s RopeScaling) IsDefault() bool {
	return (s.Type == "" || s.Type == RopeDefault) && s.FreqFactors == nil
}

// String describes s as the config spells it: "default", "linear
// (factor 2)", "llama3 (factor 8, low_freq_factor 1, high_freq_factor 4,
// original_max_position_embeddings 8192)", "llama3 (64 frequency
// factors)", "yarn (factor 4, original_max_position_embeddings 32768,
// beta_fast 32, beta_slow 1, truncate true, attention_factor 1.1386)".
func (s RopeScaling) String() string {
	switch {
	case s.Type == "":
		return RopeDefault
	case s.FreqFactors != nil:
		return fmt.Sprintf("%s (%d frequency factors)", s.Type, len(s.FreqFactors))
	case s.Type == RopeLinear:
		return fmt.Sprintf("linear (factor %g)", s.Factor)
	case s.Type == RopeLlama3:
		return fmt.Sprintf("llama3 (factor %g, low_freq_factor %g, high_freq_factor %g, original_max_position_embeddings %d)",
			s.Factor, s.LowFreqFactor, s.HighFreqFactor, s.OriginalMaxPositionEmbeddings)
	case s.Type == RopeYarn:
		return fmt.Sprintf("yarn (factor %g, original_max_position_embeddings %d, beta_fast %g, beta_slow %g, truncate %v, attention_factor %g)",
			s.Factor, s.OriginalMaxPositionEmbeddings, s.BetaFast, s.BetaSlow, s.Truncate, s.AttentionFactor)
	case s.Type == RopeLongrope:
		which := "short"
		if s.Long {
			which = "long"
		}
		return fmt.Sprintf("longrope (%d factors, the %s ones applying, factor %g, original_max_position_embeddings %d, attention_factor %g)",
			len(s.ShortFactor), which, s.Factor, s.OriginalMaxPositionEmbeddings, s.AttentionFactor)
	}
	return s.Type
}

// partialRotary reads partial_rotary_factor (default 1), top-level or in
// the RoPE block (transformers 5.x's standardize_rope_params moves it into
// rope_parameters, where a config it saved keeps it; where given in more
// than one place they must agree), returning it and the key it was read
// from. transformers honours it in phi3 alone: Phi3's apply_rotary_pos_emb
// rotates the first rotary_dim channels of each head and passes the rest,
// while Llama's, Mistral's and Qwen2/3's multiply the whole head by cos
// and sin of rotary_dim entries (which fails for any factor but 1), so
// another model type's factor other than 1 is refused as unsupported.
// LoadAny, which only copies tensors, passes what it cannot check and
// reads the factor as 1 then.
func (r *reader) partialRotary() (float64, string) {
	if r.err != nil {
		return 1, ""
	}
	f, key := 1.0, ""
	if r.present("partial_rotary_factor") {
		f, key = r.optionalFloat("partial_rotary_factor", 1), "partial_rotary_factor"
	}
	for _, block := range []string{"rope_scaling", "rope_parameters"} {
		m, ok := r.m[block].(map[string]any)
		if !ok || r.err != nil {
			continue
		}
		sub := reader{m: m, file: r.file}
		if !sub.present("partial_rotary_factor") {
			continue
		}
		g := sub.optionalFloat("partial_rotary_factor", 1)
		switch {
		case sub.err != nil:
			r.fail("%s.%v", block, strings.TrimPrefix(sub.err.Error(), r.file+": "))
		case key != "" && g != f:
			r.fail("%s.partial_rotary_factor: %g, but %s is %g: they must agree", block, g, key, f)
		default:
			f, key = g, block+".partial_rotary_factor"
		}
	}
	switch {
	case r.err != nil:
		if r.anyRoPE {
			r.err = nil
		}
		return 1, ""
	case f == 1:
		return 1, key
	case r.anyRoPE && (r.modelType != "phi3" || !(f > 0 && f <= 1)):
		return 1, key
	case r.modelType != "phi3":
		r.fail("%s: %g: %w (transformers' %s rotates the whole head, partial_rotary_factor 1; phi3 takes another)", key, f, ErrUnsupported, r.modelType)
		return 1, key
	case !(f > 0 && f <= 1):
		r.fail("%s: got %g, want a number in (0, 1]", key, f)
		return 1, key
	}
	return f, key
}

// rope reads the 4.x rope_scaling and the 5.x rope_parameters into
// c.RopeScaling: plain RoPE, linear or llama3 (others are refused, or
// passed by type for LoadAny). Where a config has both they must agree
// (transformers 4.x reads rope_scaling alone, 5.x prefers it).
// rope_parameters.rope_theta overrides a top-level rope_theta.
func (r *reader) rope(c *Config) {
	c.RopeScaling = RopeScaling{Type: RopeDefault}
	var first string
	for _, key := range []string{"rope_scaling", "rope_parameters"} {
		if !r.present(key) {
			continue
		}
		m, ok := r.m[key].(map[string]any)
		if !ok {
			r.fail("%s: got %s, want an object or null", key, jsonKind(r.m[key]))
			return
		}
		s, ok := r.ropeScaling(key, m, c.MaxPositionEmbeddings)
		if !ok {
			return
		}
		if first != "" && !reflect.DeepEqual(s, c.RopeScaling) {
			r.fail("%s: %s, but %s says %s: they must agree", key, s, first, c.RopeScaling)
			return
		}
		first, c.RopeScaling, r.ropeKey = key, s, key
		if full, ok := r.gemmaFull(key, m); ok {
			m = full
		}
		if v, ok := m["rope_theta"]; ok && v != nil && key == "rope_parameters" {
			f, err := toFloat(v)
			if err != nil {
				r.fail("%s.rope_theta: %v", key, err)
				return
			}
			c.RopeTheta = f
		}
	}
}

// ropeScaling reads one rope_scaling or rope_parameters object m (under
// key): its type ("rope_type", or 4.x's older "type"; absent is plain
// RoPE, as transformers reads it) and that type's parameters, each
// required but yarn's optional ones (readYarn). It records the error and
// returns false on a missing or invalid one.
func (r *reader) ropeScaling(key string, m map[string]any, maxPos int) (RopeScaling, bool) {
	if full, ok := r.gemmaFull(key, m); ok {
		// gemma3_text's 5.x parameters by layer type: the full layers'
		// scaling (the sliding layers' base is read by gemma3).
		key, m = key+".full_attention", full
	}
	sub := reader{m: m, file: r.file}
	typ := sub.optionalString("rope_type", "")
	if typ == "" {
		typ = sub.optionalString("type", RopeDefault)
	}
	if sub.err != nil {
		r.fail("%s.%v", key, strings.TrimPrefix(sub.err.Error(), r.file+": "))
		return RopeScaling{}, false
	}
	for _, lt := range []string{"full_attention", "sliding_attention"} {
		// transformers 5.x's parameters by layer type (Gemma's): a
		// "default" read off the top level would silently be wrong.
		if _, ok := m[lt]; ok {
			if r.anyRoPE {
				return RopeScaling{Type: "by layer type"}, true
			}
			r.fail("%s: RoPE parameters by layer type (%q): %w (one set for every layer is implemented)", key, lt, ErrUnsupported)
			return RopeScaling{}, false
		}
	}
	if r.modelType == "phi3" {
		switch typ {
		case "su", RopeYarn:
			// Phi3Config.convert_rope_params_to_dict: the names of
			// longrope in the first Phi-3 configs.
			typ = RopeLongrope
		case RopeDefault, RopeLongrope:
		default:
			// Phi3Config.validate_rope refuses every other type.
			r.fail("%s: rope type %q: %w (Phi3Config takes default and longrope)", key, typ, ErrUnsupported)
			return RopeScaling{}, false
		}
	}
	s := RopeScaling{Type: typ}
	num := func(name string) float64 {
		v, ok := m[name]
		switch {
		case !ok:
			r.fail("%s: missing required key %q (rope type %q)", key, name, typ)
			return 0
		case v == nil:
			r.fail("%s.%s: got null, want a number (rope type %q)", key, name, typ)
			return 0
		}
		f, err := toFloat(v)
		if err != nil {
			r.fail("%s.%s: %v", key, name, err)
		}
		return f
	}
	switch typ {
	case RopeDefault:
	case RopeLinear:
		s.Factor = num("factor")
	case RopeLlama3:
		s.Factor = num("factor")
		s.LowFreqFactor = num("low_freq_factor")
		s.HighFreqFactor = num("high_freq_factor")
		if v, ok := m["original_max_position_embeddings"]; !ok {
			r.fail("%s: missing required key %q (rope type %q)", key, "original_max_position_embeddings", typ)
		} else if n, err := toInt(v); err != nil {
			r.fail("%s.original_max_position_embeddings: %v", key, err)
		} else {
			s.OriginalMaxPositionEmbeddings = n
		}
	case RopeYarn:
		s.Factor = num("factor")
		if r.err == nil {
			r.readYarn(key, m, maxPos, &s)
		}
	case RopeLongrope:
		if r.modelType != "phi3" {
			if r.anyRoPE {
				return s, true
			}
			r.fail("%s: rope type %q: %w (implemented for phi3 alone)", key, typ, ErrUnsupported)
			return RopeScaling{}, false
		}
		r.readLongrope(key, m, maxPos, &s)
	default:
		if !r.anyRoPE {
			why := ""
			switch typ {
			case "dynamic":
				why = "its frequencies change with the sequence length; "
			}
			r.fail("%s: rope type %q: %w (%simplemented: %s)", key, typ, ErrUnsupported, why, strings.Join(ImplementedRopeTypes, ", "))
			return RopeScaling{}, false
		}
		return s, true
	}
	if r.err != nil {
		return RopeScaling{}, false
	}
	if err := s.Validate(); err != nil {
		r.fail("%s.%v", key, err)
		return RopeScaling{}, false
	}
	return s, true
}

// ImplementedRopeTypes lists the RoPE scaling types the runtime computes
// for every model type, in the order error messages list them (phi3's
// longrope besides).
var ImplementedRopeTypes = []string{RopeDefault, RopeLinear, RopeLlama3, RopeYarn}

// Phi3OriginalMaxPositionEmbeddings is Phi3Config's default
// original_max_position_embeddings.
const Phi3OriginalMaxPositionEmbeddings = 4096

// readLongrope reads longrope's parameters from m (under key) into s as
// transformers 5.x's Phi3Config and _compute_longrope_parameters take
// them:
//
//	short_factor, long_factor         required lists of positive numbers, as
//	                                  many in each (head_dim/2, checked once
//	                                  head_dim is known)
//	original_max_position_embeddings  the top-level key, else Phi3Config's
//	                                  4096 (standardize_rope_params gives the
//	                                  top-level attribute priority over the
//	                                  block's; a block's that differs is
//	                                  refused, not silently overridden)
//	factor                            the block's; else max_position_embeddings
//	                                  / original
//	attention_factor                  the block's; else 1 for factor <= 1,
//	                                  else sqrt(1 + ln(factor)/ln(original))
//
// Long says which factors the table uses at the config's own context,
// max_position_embeddings (ForContext chooses for another): transformers
// starts every sequence with the short ones and switches to the long ones
// once a sequence passes original positions (dynamic_rope_update's
// longrope_frequency_update, with the attention factor fixed); the runtime
// has one table per loaded model, so it takes the factors of the context
// the model is run with: long where that context > original (Phi-3-mini-128k,
// Phi-3.5-mini, Phi-4-mini at max_position_embeddings: transformers' table
// for a sequence past 4096), short within it. llama.cpp chooses the same
// way by its context length (n_ctx_per_seq > n_ctx_orig_yarn).
func (r *reader) readLongrope(key string, m map[string]any, maxPos int, s *RopeScaling) {
	factors := func(name string) []float64 {
		v, ok := m[name]
		if !ok {
			r.fail("%s: missing required key %q (rope type %q)", key, name, RopeLongrope)
			return nil
		}
		list, ok := v.([]any)
		if !ok || len(list) == 0 {
			r.fail("%s.%s: got %s, want a list of numbers", key, name, jsonKind(v))
			return nil
		}
		out := make([]float64, len(list))
		for i, e := range list {
			f, err := toFloat(e)
			if err == nil && !(f > 0) {
				err = fmt.Errorf("got %g, want a positive number", f)
			}
			if err != nil {
				r.fail("%s.%s[%d]: %v", key, name, i, err)
				return nil
			}
			out[i] = f
		}
		return out
	}
	s.ShortFactor, s.LongFactor = factors("short_factor"), factors("long_factor")
	if r.err != nil {
		return
	}
	if len(s.ShortFactor) != len(s.LongFactor) {
		r.fail("%s: short_factor has %d factors, long_factor %d: want as many", key, len(s.ShortFactor), len(s.LongFactor))
		return
	}
	sub := reader{m: m, file: r.file}
	orig := r.optionalInt("original_max_position_embeddings", Phi3OriginalMaxPositionEmbeddings)
	block := sub.optionalInt("original_max_position_embeddings", orig)
	factor := sub.optionalFloat("factor", 0)
	att := sub.optionalFloat("attention_factor", 0)
	switch {
	case sub.err != nil:
		r.fail("%s.%v", key, strings.TrimPrefix(sub.err.Error(), r.file+": "))
		return
	case r.err != nil:
		return
	case orig <= 0:
		r.fail("original_max_position_embeddings: got %d, want a positive integer", orig)
		return
	case block != orig:
		r.fail("%s.original_max_position_embeddings: %d, but the top-level original_max_position_embeddings is %d (Phi3Config's default 4096 where absent), which transformers uses: they must agree", key, block, orig)
		return
	}
	s.OriginalMaxPositionEmbeddings = orig
	s.Factor = float64(maxPos) / float64(orig)
	if sub.present("factor") {
		s.Factor = factor
	}
	switch {
	case sub.present("attention_factor"):
		s.AttentionFactor = att
	case s.Factor <= 1:
		s.AttentionFactor = 1
	default:
		s.AttentionFactor = math.Sqrt(1 + math.Log(s.Factor)/math.Log(float64(orig)))
	}
	*s = s.ForContext(maxPos)
}

// readYarn reads yarn's parameters other than factor from m (under key)
// into s, as transformers' _compute_yarn_parameters and the 5.x
// standardize_rope_params take them:
//
//	original_max_position_embeddings  the block's; else the config's top-level
//	                                   key (5.x moves it in); else
//	                                   max_position_embeddings (maxPos)
//	beta_fast, beta_slow               32 and 1 where absent, null or 0
//	                                   (transformers' `or` default)
//	truncate                           true where absent
//	attention_factor                   where absent or null: with mscale and
//	                                   mscale_all_dim both given and non-zero,
//	                                   get_mscale(factor, mscale) /
//	                                   get_mscale(factor, mscale_all_dim); else
//	                                   get_mscale(factor) = 0.1·ln(factor) + 1
//	                                   (1 for factor 1)
//
// The block's and the top-level original_max_position_embeddings must
// agree where both are given (4.x reads the block's, 5.x the other).
// Transformers releases 4.45 to 4.5x took factor as
// max_position_embeddings / original_max_position_embeddings whenever the
// block named the latter; today's take the factor given, as here.
func (r *reader) readYarn(key string, m map[string]any, maxPos int, s *RopeScaling) {
	sub := reader{m: m, file: r.file}
	orig := sub.optionalInt("original_max_position_embeddings", 0)
	top := r.optionalInt("original_max_position_embeddings", 0)
	s.BetaFast = sub.optionalFloat("beta_fast", 0)
	s.BetaSlow = sub.optionalFloat("beta_slow", 0)
	s.Truncate = sub.optionalBool("truncate", true)
	att := sub.optionalFloat("attention_factor", 0)
	mscale := sub.optionalFloat("mscale", 0)
	mscaleAll := sub.optionalFloat("mscale_all_dim", 0)
	if sub.err != nil {
		r.fail("%s.%v", key, strings.TrimPrefix(sub.err.Error(), r.file+": "))
		return
	}
	switch {
	case sub.present("original_max_position_embeddings") && r.present("original_max_position_embeddings") && orig != top:
		r.fail("%s.original_max_position_embeddings: %d, but the top-level original_max_position_embeddings is %d: they must agree (transformers 4.x reads the first, 5.x the second)", key, orig, top)
		return
	case sub.present("original_max_position_embeddings"):
		s.OriginalMaxPositionEmbeddings = orig
	case r.present("original_max_position_embeddings"):
		s.OriginalMaxPositionEmbeddings = top
	default:
		s.OriginalMaxPositionEmbeddings = maxPos
	}
	if s.BetaFast == 0 {
		s.BetaFast = YarnBetaFast
	}
	if s.BetaSlow == 0 {
		s.BetaSlow = YarnBetaSlow
	}
	switch {
	case sub.present("attention_factor"):
		if !(att > 0) {
			r.fail("%s.attention_factor: got %g, want a positive number", key, att)
			return
		}
		s.AttentionFactor = att
	case mscale != 0 && mscaleAll != 0:
		s.AttentionFactor = YarnMscale(s.Factor, mscale) / YarnMscale(s.Factor, mscaleAll)
		if !(s.AttentionFactor > 0) || math.IsInf(s.AttentionFactor, 0) {
			r.fail("%s: mscale %g and mscale_all_dim %g give the attention factor %g, want a positive number", key, mscale, mscaleAll, s.AttentionFactor)
			return
		}
	default:
		s.AttentionFactor = YarnMscale(s.Factor, 1)
	}
}

// YarnMscale is transformers' get_mscale(scale, mscale) of
// _compute_yarn_parameters (YaRN's √(1/t) = 0.1·ln(s) + 1, scaled by
// mscale): 1 for scale <= 1, else 0.1·mscale·ln(scale) + 1.
func YarnMscale(scale, mscale float64) float64 {
	if scale <= 1 {
		return 1
	}
	return 0.1*mscale*math.Log(scale) + 1
}

// Validate checks that s is a scaling the runtime computes, with its
// parameters in the bounds transformers' _validate_*_parameters state;
// the error names the parameter ("factor: got 0.5, want a number >= 1").
// Another type is an error wrapping ErrUnsupported.
func (s RopeScaling) Validate() error {
	switch s.Type {
	case "", RopeDefault:
		if s.FreqFactors != nil {
			return fmt.Errorf("rope type %q with frequency factors: want llama3", s.Type)
		}
		return nil
	case RopeLinear, RopeLlama3, RopeYarn:
	case RopeLongrope:
		return s.validateLongrope()
	default:
		return fmt.Errorf("rope type %q: %w (implemented: %s)", s.Type, ErrUnsupported, strings.Join(ImplementedRopeTypes, ", "))
	}
	if s.FreqFactors != nil {
		if s.Type != RopeLlama3 {
			return fmt.Errorf("rope type %q with frequency factors: want llama3", s.Type)
		}
		for j, f := range s.FreqFactors {
			if !(f > 0) || math.IsInf(float64(f), 0) {
				return fmt.Errorf("frequency factor %d: got %g, want a positive finite number", j, f)
			}
		}
		return nil
	}
	if !(s.Factor >= 1) || math.IsInf(s.Factor, 0) {
		return fmt.Errorf("factor: got %g, want a number >= 1", s.Factor)
	}
	if s.Type == RopeLinear {
		return nil
	}
	if s.Type == RopeYarn {
		switch {
		case s.OriginalMaxPositionEmbeddings <= 0:
			return fmt.Errorf("original_max_position_embeddings: got %d, want a positive integer", s.OriginalMaxPositionEmbeddings)
		case !(s.BetaSlow > 0) || math.IsInf(s.BetaSlow, 0):
			return fmt.Errorf("beta_slow: got %g, want a positive number", s.BetaSlow)
		case !(s.BetaFast >= s.BetaSlow) || math.IsInf(s.BetaFast, 0):
			return fmt.Errorf("beta_fast: got %g, want at least beta_slow %g", s.BetaFast, s.BetaSlow)
		case !(s.AttentionFactor > 0) || math.IsInf(s.AttentionFactor, 0):
			return fmt.Errorf("attention_factor: got %g, want a positive number", s.AttentionFactor)
		}
		return nil
	}
	switch {
	case !(s.LowFreqFactor > 0) || math.IsInf(s.LowFreqFactor, 0):
		return fmt.Errorf("low_freq_factor: got %g, want a positive number", s.LowFreqFactor)
	case !(s.HighFreqFactor >= s.LowFreqFactor) || math.IsInf(s.HighFreqFactor, 0):
		return fmt.Errorf("high_freq_factor: got %g, want at least low_freq_factor %g", s.HighFreqFactor, s.LowFreqFactor)
	case s.OriginalMaxPositionEmbeddings <= 0:
		return fmt.Errorf("original_max_position_embeddings: got %d, want a positive integer", s.OriginalMaxPositionEmbeddings)
	}
	return nil
}

func (s RopeScaling) validateLongrope() error {
	if s.FreqFactors != nil {
		return fmt.Errorf("rope type %q with frequency factors: want llama3", s.Type)
	}
	if len(s.ShortFactor) == 0 || len(s.ShortFactor) != len(s.LongFactor) {
		return fmt.Errorf("short_factor and long_factor: %d and %d factors, want as many, at least one", len(s.ShortFactor), len(s.LongFactor))
	}
	for i, fs := range [][]float64{s.ShortFactor, s.LongFactor} {
		for j, f := range fs {
			if !(f > 0) || math.IsInf(f, 0) {
				return fmt.Errorf("%s[%d]: got %g, want a positive finite number", [...]string{"short_factor", "long_factor"}[i], j, f)
			}
		}
	}
	switch {
	case s.OriginalMaxPositionEmbeddings <= 0:
		return fmt.Errorf("original_max_position_embeddings: got %d, want a positive integer", s.OriginalMaxPositionEmbeddings)
	case !(s.Factor > 0) || math.IsInf(s.Factor, 0):
		return fmt.Errorf("factor: got %g, want a positive number", s.Factor)
	case !(s.AttentionFactor > 0) || math.IsInf(s.AttentionFactor, 0):
		return fmt.Errorf("attention_factor: got %g, want a positive number", s.AttentionFactor)
	}
	return nil
}

// GenerationConfig holds generation_config.json with transformers'
// GenerationConfig defaults for absent keys: temperature 1.0, top_p 1.0,
// top_k 50, repetition_penalty 1.0, do_sample false, max_length 20; token
// ids -1 when absent.
type GenerationConfig struct {
	BOSTokenID  int
	EOSTokenIDs []int
	PadTokenID  int
	Temperature float64
	TopP        float64
	TopK        int
	// RepetitionPenalty is transformers' (1: none).
	RepetitionPenalty float64
	DoSample          bool
	MaxLength         int
	// Raw is the whole parsed document; numbers are json.Number.
	Raw map[string]any
}

// LoadGeneration reads dir/generation_config.json. A missing file gives an
// error wrapping fs.ErrNotExist.
func LoadGeneration(dir string) (*GenerationConfig, error) {
	file := filepath.Join(dir, "generation_config.json")
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("hfconfig: %w", err)
	}
	return ParseGeneration(data, file)
}

// ParseGeneration parses a generation_config.json document; file names the
// source in errors.
func ParseGeneration(data []byte, file string) (*GenerationConfig, error) {
	raw, err := decodeObject(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	r := reader{m: raw, file: file}
	g := &GenerationConfig{
		BOSTokenID:        r.optionalInt("bos_token_id", -1),
		EOSTokenIDs:       r.tokenIDs("eos_token_id"),
		PadTokenID:        r.optionalInt("pad_token_id", -1),
		Temperature:       r.optionalFloat("temperature", 1.0),
		TopP:              r.optionalFloat("top_p", 1.0),
		TopK:              r.optionalInt("top_k", 50),
		RepetitionPenalty: r.optionalFloat("repetition_penalty", 1.0),
		DoSample:          r.optionalBool("do_sample", false),
		MaxLength:         r.optionalInt("max_length", 20),
		Raw:               raw,
	}
	if r.err != nil {
		return nil, r.err
	}
	return g, nil
}

// QueryScale is Ministral 3's attention temperature (transformers'
// get_llama_4_attn_scale): the query at position p is multiplied by
// 1 + Beta·ln(1 + floor(p / Original)), Original the RoPE block's
// original_max_position_embeddings. Below Original the factor is exactly 1,
// and the runtime runs no further: Parse sets MaxPositionEmbeddings to
// min(Declared, Original), Declared being config.json's
// max_position_embeddings (written back unchanged).
type QueryScale struct {
	Beta     float64
	Original int
	Declared int
}

// ContextLimit names, for an error, the positions a model of c runs to
// (MaxPositionEmbeddings) and where they come from: config.json's
// max_position_embeddings, or a ministral3 query scale's original length.
func (c *Config) ContextLimit() string {
	if q := c.QueryScale; q != nil && c.MaxPositionEmbeddings < q.Declared {
		return fmt.Sprintf("context of %d positions (%s: past original_max_position_embeddings the llama_4_scaling_beta query scale, not implemented; max_position_embeddings %d)", c.MaxPositionEmbeddings, c.File, q.Declared)
	}
	return fmt.Sprintf("context of %d positions (max_position_embeddings in %s)", c.MaxPositionEmbeddings, c.File)
}

// queryScale reads a ministral3 text model's llama_4_scaling_beta from its
// RoPE block (rope_parameters or rope_scaling) and, where it is not 0,
// caps the context at the positions the scale leaves at 1 (QueryScale).
func (r *reader) queryScale(c *Config) {
	if r.err != nil || r.ropeKey == "" {
		return
	}
	var m map[string]any
	beta, from := 0.0, ""
	for _, key := range []string{"rope_scaling", "rope_parameters"} {
		b, _ := r.m[key].(map[string]any)
		v, ok := b["llama_4_scaling_beta"]
		if !ok || v == nil {
			continue
		}
		f, err := toFloat(v)
		if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
			r.fail("%s.llama_4_scaling_beta: got %v, want a non-negative number", key, v)
			return
		}
		if from != "" && f != beta {
			r.fail("%s.llama_4_scaling_beta %g, but %s's is %g: they must agree", key, f, from, beta)
			return
		}
		m, beta, from = b, f, key
	}
	if beta == 0 {
		return
	}
	orig := c.RopeScaling.OriginalMaxPositionEmbeddings
	if o, ok := m["original_max_position_embeddings"]; ok && o != nil {
		if n, err := toInt(o); err == nil {
			orig = n
		}
	}
	if orig <= 0 {
		r.fail("%s.llama_4_scaling_beta %g: missing original_max_position_embeddings, the positions the query scale counts in", r.ropeKey, beta)
		return
	}
	c.QueryScale = &QueryScale{Beta: beta, Original: orig, Declared: c.MaxPositionEmbeddings}
	c.MaxPositionEmbeddings = min(c.MaxPositionEmbeddings, orig)
}
