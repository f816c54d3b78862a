package gguf

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
)

// HFConfig is the Hugging Face config of a llama-architecture file (the
// architecture Convert writes, and llama.cpp's converter writes for Llama
// and Mistral models): LlamaForCausalLM with the llama.* hyperparameters
// (a qwen2 file's: Qwen2ForCausalLM with the qwen2.* ones, its q/k/v
// biases bound by ModelWeights; a qwen3 file's: Qwen3ForCausalLM with the
// qwen3.* ones, head_dim the key length, its attn_q_norm/attn_k_norm bound
// as q_norm/k_norm; a phi3 file's: Phi3ForCausalLM with the phi3.* ones,
// its window and longrope factors, phi3Config; a llama file with
// experts: MixtralForCausalLM, a qwen3moe file's: Qwen3MoeForCausalLM,
// moeConfig), the tokenizer's special ids, and tied embeddings where the file has no
// output weight. RoPE scaling is read as llama.cpp reads it: a linear one
// (llama.rope.scaling.type "linear", or absent, llama.cpp's default, with
// rope.scaling.factor or the older rope.scale_linear other than 0 or 1) as
// RopeScaling linear, none with type "none" whatever the factor says, the
// rope_freqs tensor (what llama.cpp's converter writes for a llama3
// scaling) as a llama3 RopeScaling of its FreqFactors, and type "yarn" as
// llama.cpp runs it on a llama file (yarnScaling). A file whose
// metadata or tensors ask llama.cpp for more than the runtime computes
// (another scaling type, a linear factor below 1, rope_freqs with a linear
// factor or yarn, an attention factor without yarn, yarn_* keys, partial
// rotary, experts in an architecture other than llama, qwen3moe, qwen2moe and olmoe,
// biases) is refused, wrapping ErrUnsupportedModel: run, it would silently be another
// model than llama.cpp's. Errors name the file and the key or tensor.
func (f *File) HFConfig() (*hfconfig.Config, error) {
	arch, _ := Value[string](f, "general.architecture")
	a := arch + "." // the hyperparameters' prefix
	if base, ok := map[string]string{"qwen2vl": "qwen2", "qwen3vl": "qwen3", "qwen3vlmoe": "qwen3moe"}[arch]; ok {
		// A Qwen VL text model: qwen2's or qwen3's graph with M-RoPE, which
		// rotates text as plain RoPE where the sections cover the head.
		if err := f.checkMRoPE(a); err != nil {
			return nil, err
		}
		arch = base
	}
	if arch != "llama" && arch != "qwen2" && arch != "qwen3" && arch != "qwen3moe" && arch != "qwen2moe" && arch != "olmoe" && arch != "phi3" && arch != "gemma" && arch != "gemma2" && arch != "gemma3" && arch != "granite" && arch != "olmo2" {
		return nil, fmt.Errorf("%s: general.architecture %q: want llama (Llama, Mistral and Mixtral models), qwen2, qwen2vl, qwen3, qwen3vl, qwen3moe, qwen3vlmoe, qwen2moe, olmoe, phi3, gemma, gemma2, gemma3, granite or olmo2", f.path, arch)
	}
	refuse := func(key string, v any, why string) error {
		return fmt.Errorf("%s: %s %v: %s: %w", f.path, key, v, why, ErrUnsupportedModel)
	}
	// u reads llama.key: absent is (0, false) where it is optional; a value
	// of another type (a per-layer array included) is an error either way.
	u := func(key string, req bool) (uint32, bool, error) {
		if _, ok := f.Get(a + key); !ok && !req {
			return 0, false, nil
		}
		v, err := Value[uint32](f, a+key)
		return v, err == nil, err
	}
	f32 := func(key string) (float32, bool, error) {
		if _, ok := f.Get(key); !ok {
			return 0, false, nil
		}
		v, err := Value[float32](f, key)
		return v, err == nil, err
	}
	// torch_dtype (what --dtype auto runs in on a 16-bit backend) follows
	// the file's type where that is a float one: BF16 stays bf16 (fp16 may
	// overflow a bf16-trained model's activations), F32 fp32; quantized
	// types and F16 run in fp16.
	dtype := "float16"
	if ft, err := Value[uint32](f, "general.file_type"); err == nil {
		switch ft {
		case fileTypes[TypeF32]:
			dtype = "float32"
		case fileTypes[TypeBF16]:
			dtype = "bfloat16"
		}
	}
	c := map[string]any{"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama", "torch_dtype": dtype, "hidden_act": "silu"}
	if arch == "qwen2" {
		// (llama.cpp's qwen2 graph: q/k/v biases, RoPE by halves)
		c["architectures"], c["model_type"] = []string{"Qwen2ForCausalLM"}, "qwen2"
	}
	if arch == "qwen3" {
		// (llama.cpp's qwen3 graph: per-head q/k norms, no biases, RoPE
		// by halves)
		c["architectures"], c["model_type"] = []string{"Qwen3ForCausalLM"}, "qwen3"
	}
	if arch == "phi3" {
		// (llama.cpp's phi3 graph: fused attn_qkv and ffn_up, RoPE by
		// halves, the longrope factor tensors)
		c["architectures"], c["model_type"] = []string{"Phi3ForCausalLM"}, "phi3"
	}
	if arch == "gemma3" {
		// (llama.cpp's gemma3 graph: scaled embeddings, 1 + w norms read
		// as stored, q/k norms, post norms, GELU-tanh MLP, RoPE by halves;
		// gemma3Config reads its fixed pattern, base and scale)
		c["architectures"], c["model_type"], c["hidden_activation"] = []string{"Gemma3ForCausalLM"}, "gemma3_text", "gelu_pytorch_tanh"
		delete(c, "hidden_act")
	}
	if arch == "gemma2" {
		// (llama.cpp's gemma2 graph: gemma3's without q/k norms, the
		// scores and logits soft-capped; gemma2Config reads the window,
		// the caps, its fixed pattern and scale)
		c["architectures"], c["model_type"], c["hidden_activation"] = []string{"Gemma2ForCausalLM"}, "gemma2", "gelu_pytorch_tanh"
		delete(c, "hidden_act")
	}
	if arch == "olmo2" {
		// (llama.cpp's olmo2 graph: no input norms, the sublayers'
		// outputs normalized, q/k norms over the whole projections, RoPE
		// by halves)
		c["architectures"], c["model_type"] = []string{"Olmo2ForCausalLM"}, "olmo2"
	}
	if arch == "granite" {
		// (llama.cpp's granite graph: llama's with the four multipliers,
		// which graniteConfig reads)
		c["architectures"], c["model_type"] = []string{"GraniteForCausalLM"}, "granite"
	}
	if arch == "gemma" {
		// (llama.cpp's gemma graph: Llama's layer with scaled embeddings,
		// 1 + w norms read as stored, a GELU-tanh MLP, RoPE by halves,
		// scores scaled by head_dim**-0.5)
		c["architectures"], c["model_type"], c["hidden_act"] = []string{"GemmaForCausalLM"}, "gemma", "gelu_pytorch_tanh"
	}
	for key, field := range map[string]string{
		"embedding_length": "hidden_size", "feed_forward_length": "intermediate_size", "block_count": "num_hidden_layers",
		"attention.head_count": "num_attention_heads", "context_length": "max_position_embeddings",
	} {
		v, _, err := u(key, true)
		if err != nil {
			return nil, err
		}
		c[field] = v
	}
	if n, ok, err := u("expert_count", false); err != nil {
		return nil, err
	} else if ok && n > 0 || arch == "qwen3moe" || arch == "qwen2moe" || arch == "olmoe" {
		if arch != "llama" && arch != "qwen3moe" && arch != "qwen2moe" && arch != "olmoe" {
			return nil, refuse(a+"expert_count", n, "a mixture of experts in an architecture whose experts the runtime does not run (llama's, qwen3moe's, qwen2moe's and olmoe's it does)")
		}
		if err := f.moeConfig(c, a, n); err != nil {
			return nil, err
		}
	}
	kv, ok, err := u("attention.head_count_kv", false)
	if err != nil {
		return nil, err
	}
	if !ok || kv == 0 {
		kv = c["num_attention_heads"].(uint32)
	}
	c["num_key_value_heads"] = kv
	headDim := uint32(0)
	if h := c["num_attention_heads"].(uint32); h > 0 {
		headDim = c["hidden_size"].(uint32) / h
	}
	if hd, ok, err := u("attention.key_length", false); err != nil {
		return nil, err
	} else if ok && hd != 0 {
		c["head_dim"] = hd
		headDim = hd
	}
	if arch == "qwen3" || arch == "qwen3moe" || arch == "gemma" || arch == "gemma2" || arch == "gemma3" {
		// Qwen3Config's head_dim defaults to 128 (GemmaConfig's,
		// Gemma2Config's and Gemma3TextConfig's to 256), llama.cpp's key length to
		// hidden/heads: the config says which the file has.
		c["head_dim"] = headDim
	}
	if vd, ok, err := u("attention.value_length", false); err != nil {
		return nil, err
	} else if ok && vd != headDim {
		return nil, refuse(a+"attention.value_length", vd, fmt.Sprintf("the runtime needs it equal to the key length %d", headDim))
	}
	// llama.cpp refuses a llama file whose n_rot is not the head size too.
	// A phi3 file's may be less (Phi-4-mini's 96 of 128): partial RoPE,
	// read back as the partial_rotary_factor that gives it.
	rotary := headDim
	if r, ok, err := u("rope.dimension_count", false); err != nil {
		return nil, err
	} else if ok && r != headDim {
		if arch != "phi3" || r == 0 || r%2 != 0 || r > headDim {
			return nil, refuse(a+"rope.dimension_count", r, fmt.Sprintf("RoPE over part of the head (size %d), which the runtime computes for phi3 alone, over an even part", headDim))
		}
		rotary = r
		c["partial_rotary_factor"] = float64(r) / float64(headDim)
	}
	eps, err := Value[float32](f, a+"attention.layer_norm_rms_epsilon")
	if err != nil {
		return nil, err
	}
	c["rms_norm_eps"] = eps
	c["rope_theta"] = float32(10000) // llama.cpp's default
	if v, ok, err := f32(a + "rope.freq_base"); err != nil {
		return nil, err
	} else if ok {
		c["rope_theta"] = v
	}
	// RoPE scaling as llama.cpp's loader reads it (llama_model::load_hparams,
	// llama_context): the type, "linear" when absent; the factor,
	// rope.scaling.factor or else the older rope.scale_linear, 0 meaning 1;
	// type "none" scales nothing whatever the factor.
	scaling := "linear"
	if t, err := Value[string](f, a+"rope.scaling.type"); err == nil {
		if t != "none" && t != "linear" && t != "yarn" {
			return nil, refuse(a+"rope.scaling.type", strconv.Quote(t), "RoPE scaling of a type the runtime does not compute (none, linear and yarn are)")
		}
		scaling = t
	} else if _, ok := f.Get(a + "rope.scaling.type"); ok {
		return nil, err
	}
	factorKey, factor := "", float32(0)
	for _, key := range []string{a + "rope.scaling.factor", a + "rope.scale_linear"} {
		if v, ok, err := f32(key); err != nil {
			return nil, err
		} else if ok {
			factorKey, factor = key, v
			break
		}
	}
	linear := scaling == "linear" && factor != 0 && factor != 1
	if linear {
		if !(factor >= 1) || math.IsInf(float64(factor), 0) {
			return nil, refuse(factorKey, factor, "a linear RoPE scaling factor below 1 or not finite, which the runtime does not compute")
		}
		c["rope_scaling"] = map[string]any{"rope_type": "linear", "factor": float64(factor)} // the file's float32, exactly
	}
	attn, hasAttn, err := f32(a + "rope.scaling.attn_factor")
	if err != nil {
		return nil, err
	}
	longrope := false
	if arch == "gemma3" {
		if err := f.gemma3Config(c, a, scaling, headDim); err != nil {
			return nil, err
		}
	}
	if arch == "gemma2" {
		if err := f.gemma2Config(c, a, scaling, linear, headDim); err != nil {
			return nil, err
		}
	}
	if arch == "gemma" {
		if err := f.gemma1Config(a, scaling, linear); err != nil {
			return nil, err
		}
	}
	if arch == "granite" {
		if err := f.graniteConfig(c, a, scaling, linear, headDim); err != nil {
			return nil, err
		}
	}
	if arch == "olmo2" || arch == "olmoe" {
		family := map[string]string{"olmo2": "OLMo 2", "olmoe": "OLMoE"}[arch]
		if err := f.noScaling(a, family, scaling, linear); err != nil {
			return nil, err
		}
	}
	if arch == "phi3" {
		if longrope, err = f.phi3Config(c, a, int(rotary), scaling, linear, factorKey, factor, attn, hasAttn); err != nil {
			return nil, err
		}
	}
	if longrope {
		// (the attention factor is longrope's: phi3Config took it)
	} else if scaling == "yarn" {
		y, err := f.yarnScaling(c, a, factorKey, factor, attn, hasAttn)
		if err != nil {
			return nil, err
		}
		c["rope_scaling"] = y
	} else if hasAttn && attn != 1 {
		return nil, refuse(a+"rope.scaling.attn_factor", attn, "an attention factor without yarn, which the runtime does not compute")
	}
	te, ok := f.Tensor("token_embd.weight")
	if !ok || len(te.Shape) != 2 {
		return nil, fmt.Errorf("%s: tensor token_embd.weight: want a 2-D embedding", f.path)
	}
	c["vocab_size"] = te.Shape[0]
	_, hasOutput := f.Tensor("output.weight")
	c["tie_word_embeddings"] = !hasOutput
	for key, field := range map[string]string{"bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id", "padding_token_id": "pad_token_id"} {
		if v, err := Value[uint32](f, "tokenizer.ggml."+key); err == nil {
			c[field] = v
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	cfg, err := hfconfig.Parse(b, f.path)
	if err != nil {
		return nil, err
	}
	if cfg.RoPEDim() != int(rotary) {
		return nil, refuse(a+"rope.dimension_count", rotary, fmt.Sprintf("read back as %d rotated channels of %d", cfg.RoPEDim(), headDim))
	}
	if ti, ok := f.Tensor(RopeFreqsTensor); ok && arch != "phi3" { // (phi3: refused below, as llama.cpp's phi3 loader does)
		ff, err := f.ropeFreqs(ti, cfg.HeadDim)
		if err != nil {
			return nil, err
		}
		if linear {
			return nil, fmt.Errorf("%s: tensor %q with %s %g: RoPE frequency factors and a linear scaling both, which the runtime does not compute: %w", f.path, RopeFreqsTensor, factorKey, factor, ErrUnsupportedModel)
		}
		if cfg.RopeScaling.Type == hfconfig.RopeYarn {
			return nil, fmt.Errorf("%s: tensor %q with %srope.scaling.type \"yarn\": RoPE frequency factors and yarn both, which the runtime does not compute: %w", f.path, RopeFreqsTensor, a, ErrUnsupportedModel)
		}
		cfg.RopeScaling = hfconfig.RopeScaling{Type: hfconfig.RopeLlama3, FreqFactors: ff}
	}
	// Every tensor must be one the runtime computes with: llama.cpp applies
	// the optional ones its llama graph knows (biases, rope_freqs, experts).
	known := map[string]bool{}
	for _, s := range tensorSpecs(cfg) {
		known[s.name] = true
		// A fused tensor's rows are cut by the config (ModelWeights):
		// checked here, where the runtime checks only the parts it is given.
		if ti, ok := f.Tensor(s.name); ok && s.parts != nil && !slices.Equal(ti.Shape, s.shape) {
			return nil, fmt.Errorf("%s: tensor %q: shape %v, want %v%s from the metadata", f.path, s.name, ti.Shape, s.shape, partsNote(s))
		}
		// So are a stacked tensor's experts; and the metadata's experts
		// must have their tensors in every layer (llama.cpp requires them).
		if ti, ok := f.Tensor(s.name); ok && s.experts != nil && !slices.Equal(ti.Shape, s.shape) {
			return nil, fmt.Errorf("%s: tensor %q: shape %v, want %v (experts, rows, row length) from the metadata", f.path, s.name, ti.Shape, s.shape)
		} else if !ok && (s.experts != nil || s.router) {
			return nil, fmt.Errorf("%s: tensor %q missing: %sexpert_count %d makes every layer a mixture of experts: %w", f.path, s.name, a, cfg.MoE.Experts, ErrUnsupportedModel)
		}
	}
	for _, t := range f.tensors {
		if known[t.Name] {
			continue
		}
		why := "a tensor the runtime has no use for (llama.cpp's llama graph may apply it)"
		switch {
		case strings.HasSuffix(t.Name, ".bias"):
			why = "a bias, which the runtime does not add"
		case strings.Contains(t.Name, "_exps") || strings.Contains(t.Name, "ffn_gate_inp"):
			why = "an expert (a mixture of experts), which the runtime does not run"
		}
		return nil, fmt.Errorf("%s: tensor %q: %s: %w", f.path, t.Name, why, ErrUnsupportedModel)
	}
	return cfg, nil
}

// noScaling refuses, in a file of a family whose configs have no RoPE
// scaling (named as family), what llama.cpp would scale its RoPE by: the
// scaling type yarn, a linear factor (a the keys' prefix), or the
// rope_freqs tensor.
func (f *File) noScaling(a, family, scaling string, linear bool) error {
	if scaling == "yarn" || linear {
		return fmt.Errorf("%s: %srope.scaling.type %q: a scaling %s configs do not have: %w", f.path, a, scaling, family, ErrUnsupportedModel)
	}
	if _, ok := f.Tensor(RopeFreqsTensor); ok {
		return fmt.Errorf("%s: tensor %q: a scaling %s configs do not have: %w", f.path, RopeFreqsTensor, family, ErrUnsupportedModel)
	}
	return nil
}

// moeConfig completes c for a file with experts (a the keys' prefix,
// n its expert_count) as llama.cpp runs it: a llama file as Mixtral
// (model_type mixtral: every layer's experts of feed_forward_length
// channels, the chosen weights renormalized, as llama.cpp's llama graph
// does), a qwen3moe file as Qwen3-MoE (model_type qwen3_moe: every layer
// sparse, experts of expert_feed_forward_length channels, else
// feed_forward_length / expert_used_count as llama.cpp takes them,
// norm_topk_prob true: its qwen3moe graph renormalizes), an olmoe file as
// OLMoE (experts of feed_forward_length, norm_topk_prob false), a qwen2moe file
// as Qwen2-MoE likewise (norm_topk_prob false; a shared expert of
// expert_shared_feed_forward_length channels, else feed_forward_length,
// as llama.cpp takes them). expert_used_count is required, from 1 to n.
func (f *File) moeConfig(c map[string]any, a string, n uint32) error {
	refuse := func(key string, v any, why string) error {
		return fmt.Errorf("%s: %s %v: %s: %w", f.path, key, v, why, ErrUnsupportedModel)
	}
	if n == 0 {
		return refuse(a+"expert_count", n, "want a positive number of experts")
	}
	used, err := Value[uint32](f, a+"expert_used_count")
	if err != nil {
		return err
	}
	if used == 0 || used > n {
		return refuse(a+"expert_used_count", used, fmt.Sprintf("want 1 to expert_count (%d)", n))
	}
	c["num_experts_per_tok"] = used
	if a == "llama." {
		c["architectures"], c["model_type"] = []string{"MixtralForCausalLM"}, "mixtral"
		c["num_local_experts"] = n
		return nil
	}
	if a == "olmoe." {
		// (llama.cpp's olmoe graph: q/k norms over the whole projections,
		// experts of feed_forward_length channels, the chosen weights not
		// renormalized, RoPE by halves)
		c["architectures"], c["model_type"] = []string{"OlmoeForCausalLM"}, "olmoe"
		c["num_experts"], c["norm_topk_prob"] = n, false
		return nil
	}
	c["architectures"], c["model_type"] = []string{"Qwen3MoeForCausalLM"}, "qwen3_moe"
	c["num_experts"], c["norm_topk_prob"] = n, true
	c["decoder_sparse_step"], c["mlp_only_layers"] = 1, []int{}
	if a == "qwen2moe." {
		// (llama.cpp's qwen2moe graph: qwen2's attention with its q/k/v
		// biases, the chosen weights not renormalized, the shared expert
		// of expert_shared_feed_forward_length channels, else
		// feed_forward_length, weighted by its sigmoid gate)
		c["architectures"], c["model_type"] = []string{"Qwen2MoeForCausalLM"}, "qwen2_moe"
		// (q/k/v biases where the file has them: llama.cpp's are
		// optional, and another converter may leave them out)
		_, biased := f.Tensor("blk.0.attn_q.bias")
		c["norm_topk_prob"], c["qkv_bias"] = false, biased
		shared, err := f.positiveOr(a+"expert_shared_feed_forward_length", c["intermediate_size"].(uint32), "a positive shared expert size")
		if err != nil {
			return err
		}
		c["shared_expert_intermediate_size"] = shared
	}
	size, err := f.positiveOr(a+"expert_feed_forward_length", c["intermediate_size"].(uint32)/used, "a positive expert size")
	if err != nil {
		return err
	}
	c["moe_intermediate_size"] = size
	return nil
}

// positiveOr reads the uint32 key, def where it is absent; a value of
// another type is an error, and 0 (given or def) is refused as not want.
func (f *File) positiveOr(key string, def uint32, want string) (uint32, error) {
	v := def
	if got, err := Value[uint32](f, key); err == nil {
		v = got
	} else if _, ok := f.Get(key); ok {
		return 0, err
	}
	if v == 0 {
		return 0, fmt.Errorf("%s: %s %v: want %s: %w", f.path, key, v, want, ErrUnsupportedModel)
	}
	return v, nil
}

// phi3Config completes c for a phi3 file (a the keys' prefix "phi3.") as
// llama.cpp's phi3 architecture runs it: sliding_window from
// phi3.attention.sliding_window (0 or absent: none; llama.cpp disables
// the window, the runtime applies it as transformers does),
// original_max_position_embeddings from
// phi3.rope.scaling.original_context_length (absent: context_length,
// llama.cpp's n_ctx_orig_yarn), and where the file has
// rope_factors_long.weight and rope_factors_short.weight a longrope
// rope_scaling of those factors ([rotary/2] each, rotary the file's
// rope.dimension_count) with attention_factor
// phi3.rope.scaling.attn_factor (1 where absent, as llama.cpp runs it);
// longrope reports that. One factor tensor without the other, RoPE
// scaling keys that llama.cpp would apply besides (a type other than none
// or linear, a linear factor), and an attention factor without the
// factor tensors are refused.
func (f *File) phi3Config(c map[string]any, a string, rotary int, scaling string, linear bool, factorKey string, factor, attn float32, hasAttn bool) (longrope bool, err error) {
	refuse := func(key string, v any, why string) error {
		return fmt.Errorf("%s: %s %v: %s: %w", f.path, key, v, why, ErrUnsupportedModel)
	}
	if sw, err := Value[uint32](f, a+"attention.sliding_window"); err == nil {
		if sw > 0 {
			c["sliding_window"] = sw
		}
	} else if _, ok := f.Get(a + "attention.sliding_window"); ok {
		return false, err
	}
	orig := c["max_position_embeddings"].(uint32)
	if v, err := Value[uint32](f, a+"rope.scaling.original_context_length"); err == nil {
		orig = v
	} else if _, ok := f.Get(a + "rope.scaling.original_context_length"); ok {
		return false, err
	}
	if orig == 0 {
		return false, refuse(a+"rope.scaling.original_context_length", orig, "want a positive context length")
	}
	c["original_max_position_embeddings"] = orig
	switch {
	case scaling != "none" && scaling != "linear":
		return false, refuse(a+"rope.scaling.type", strconv.Quote(scaling), "a RoPE scaling llama.cpp applies to a phi3 file and Phi-3 configs do not have")
	case linear:
		return false, refuse(factorKey, factor, "a linear RoPE scaling llama.cpp applies to a phi3 file and Phi-3 configs do not have")
	}
	long, hasLong := f.Tensor(RopeFactorsLongTensor)
	short, hasShort := f.Tensor(RopeFactorsShortTensor)
	if hasLong != hasShort {
		missing := RopeFactorsShortTensor
		if !hasLong {
			missing = RopeFactorsLongTensor
		}
		return false, fmt.Errorf("%s: tensor %q missing beside the other longrope factors: llama.cpp would rotate with the factors for one context and plainly for the other: %w", f.path, missing, ErrUnsupportedModel)
	}
	if !hasLong {
		if hasAttn && attn != 1 {
			return false, refuse(a+"rope.scaling.attn_factor", attn, "an attention factor without the longrope factors, which the runtime does not compute")
		}
		return false, nil
	}
	var lists [2][]float64
	for i, ti := range []TensorInfo{long, short} {
		ff, err := f.ropeFreqs(ti, rotary)
		if err != nil {
			return false, err
		}
		lists[i] = make([]float64, len(ff))
		for j, v := range ff {
			lists[i][j] = float64(v)
		}
	}
	if !hasAttn {
		attn = 1
	}
	if !(attn > 0) || math.IsInf(float64(attn), 0) {
		return false, refuse(a+"rope.scaling.attn_factor", attn, "want a positive finite attention factor")
	}
	c["rope_scaling"] = map[string]any{"rope_type": "longrope", "long_factor": lists[0], "short_factor": lists[1],
		"attention_factor": float64(attn), "original_max_position_embeddings": orig}
	return true, nil
}

// yarnScaling returns the rope_scaling block of a file whose
// {arch}.rope.scaling.type is "yarn" (arch the keys' prefix: "llama.",
// "qwen2."), as llama.cpp runs it: factor from factorKey (0 or absent is
// 1, llama.cpp's freq_scale 1), the original context from
// {arch}.rope.scaling.original_context_length (absent:
// {arch}.context_length, c's max_position_embeddings), betas 32 and 1,
// the range rounded out, and the attention factor get_mscale(factor)
// times {arch}.rope.scaling.attn_factor (1 where absent). The
// {arch}.rope.scaling.yarn_* keys, which llama.cpp's llama and qwen2
// architectures do not read (its converter writes them for a config's
// explicit values), are taken where they say what llama.cpp runs (ext_factor 1,
// attn_factor that magnitude, betas 32 and 1, log_multiplier 0) and
// refused otherwise: the checkpoint meant a scaling llama.cpp does not
// compute from this file.
func (f *File) yarnScaling(c map[string]any, arch, factorKey string, factor, attn float32, hasAttn bool) (map[string]any, error) {
	refuse := func(key string, v any, why string) error {
		return fmt.Errorf("%s: %s %v: %s: %w", f.path, key, v, why, ErrUnsupportedModel)
	}
	if factor == 0 {
		factor = 1
	}
	if !(factor >= 1) || math.IsInf(float64(factor), 0) {
		return nil, refuse(factorKey, factor, "a yarn factor below 1 or not finite, which the runtime does not compute")
	}
	a := hfconfig.YarnMscale(float64(factor), 1)
	if hasAttn {
		if !(attn > 0) || math.IsInf(float64(attn), 0) {
			return nil, refuse(arch+"rope.scaling.attn_factor", attn, "want a positive finite attention factor")
		}
		a *= float64(attn)
	}
	// What llama.cpp runs in place of each: a key saying the same is
	// taken, another value is what the checkpoint meant and llama.cpp
	// does not compute.
	for _, k := range []struct {
		key  string
		runs float32
	}{{"yarn_ext_factor", 1}, {"yarn_attn_factor", float32(a)}, {"yarn_beta_fast", hfconfig.YarnBetaFast}, {"yarn_beta_slow", hfconfig.YarnBetaSlow}, {"yarn_log_multiplier", 0}} {
		key := arch + "rope.scaling." + k.key
		if v, ok, err := f.f32(key); err != nil {
			return nil, err
		} else if ok && v != k.runs {
			return nil, refuse(key, v, fmt.Sprintf("a yarn parameter llama.cpp's %s architecture does not read (it runs %g)", strings.TrimSuffix(arch, "."), k.runs))
		}
	}
	orig := c["max_position_embeddings"].(uint32)
	if v, err := Value[uint32](f, arch+"rope.scaling.original_context_length"); err == nil {
		orig = v
	} else if _, ok := f.Get(arch + "rope.scaling.original_context_length"); ok {
		return nil, err
	}
	return map[string]any{"rope_type": "yarn", "factor": float64(factor), "original_max_position_embeddings": orig, "attention_factor": a}, nil
}

// f32 reads the float32 key: (0, false, nil) where absent, an error where
// it holds another type.
func (f *File) f32(key string) (float32, bool, error) {
	if _, ok := f.Get(key); !ok {
		return 0, false, nil
	}
	v, err := Value[float32](f, key)
	return v, err == nil, err
}

// ropeFreqs reads the rope_freqs tensor ti: head_dim/2 positive finite
// factors (llama.cpp creates it of shape {n_rot/2}).
func (f *File) ropeFreqs(ti TensorInfo, headDim int) ([]float32, error) {
	if len(ti.Shape) != 1 || ti.Shape[0] != headDim/2 {
		return nil, fmt.Errorf("%s: tensor %q: shape %v, want [%d] (head_dim/2)", f.path, ti.Name, ti.Shape, headDim/2)
	}
	ff, err := f.Float32(ti.Name)
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.path, ti.Name, err)
	}
	for j, v := range ff {
		if !(v > 0) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("%s: tensor %q: element %d is %g: want positive finite frequency factors", f.path, ti.Name, j, v)
		}
	}
	return ff, nil
}

// ModelWeights serves a llama-architecture file's tensors under their
// Hugging Face names (the names Convert reads them by) as F32: every
// type Decode reads dequantized, q_proj's and k_proj's rows put back in
// Hugging Face's head order (UnpermuteQK). It is what the runtime loads a
// GGUF model from (model.Weights).
//
// A phi3 file's fused attn_qkv and ffn_up read as their parts (q_proj,
// k_proj, v_proj; gate_proj, up_proj: their rows of the fused tensor),
// the names the runtime binds, as package fused presents a checkpoint's;
// a mixture of experts' stacked ffn_*_exps tensors read as each expert's
// Linears ("model.layers.0.block_sparse_moe.experts.3.w1.weight", its
// rows of the stack). Only a part's rows are read and dequantized
// (File.Float32Rows).
type ModelWeights struct {
	f     *File
	names map[string]string   // Hugging Face name → GGUF name
	heads map[string]int      // Hugging Face name → heads to unpermute by
	parts map[string]rowRange // a fused or stacked tensor's part → its rows
	// shifted are gemma3's norms, stored as 1 + w: read back as the
	// stored value - 1 (exact where it is at least 0.5), which the
	// runtime's Gemma norm adds 1 to again: the stored value.
	shifted map[string]bool
	// oneRow are the weights of one row ([1, hidden]: Qwen2-MoE's shared
	// expert gate) that a file may hold as a 1-D [hidden] tensor, as
	// llama.cpp creates it: read back as [1, hidden].
	oneRow map[string]bool
}

// rowRange is a part's rows [row0, row0+n) of the fused or stacked GGUF
// tensor gguf (a stack's rows counted across its experts).
type rowRange struct {
	gguf    string
	row0, n int
}

// Weights returns f's tensors for cfg (HFConfig's) under Hugging Face names.
func (f *File) Weights(cfg *hfconfig.Config) *ModelWeights {
	w := &ModelWeights{f: f, names: map[string]string{}, heads: map[string]int{}, parts: map[string]rowRange{}, shifted: map[string]bool{}, oneRow: map[string]bool{}}
	for _, s := range tensorSpecs(cfg) {
		if s.source == "" {
			continue // derived from the config (rope_freqs: cfg.RopeScaling)
		}
		if s.experts != nil {
			out := s.shape[1] // (the stack is [experts, out, in])
			for e, src := range s.experts {
				w.parts[src] = rowRange{gguf: s.name, row0: e * out, n: out}
			}
			continue
		}
		row := 0
		for _, p := range s.parts {
			w.parts[p.source] = rowRange{gguf: s.name, row0: row, n: p.rows}
			row += p.rows
		}
		w.names[s.source] = s.name
		if s.permuteHeads > 0 {
			w.heads[s.source] = s.permuteHeads
		}
		if s.addOne {
			w.shifted[s.source] = true
		}
		if len(s.shape) == 2 && s.shape[0] == 1 {
			w.oneRow[s.source] = true
		}
	}
	return w
}

// Tensor implements model.Weights.
func (w *ModelWeights) Tensor(name string) (safetensors.Tensor, error) {
	gname, ok := w.names[name]
	part, isPart := w.parts[name]
	if isPart {
		gname = part.gguf
	} else if !ok {
		return safetensors.Tensor{}, fmt.Errorf("%s: no GGUF tensor for %q: %w", w.f.path, name, fs.ErrNotExist)
	}
	ti, ok := w.f.Tensor(gname)
	if !ok {
		return safetensors.Tensor{}, fmt.Errorf("%s: tensor %q (%s): %w", w.f.path, gname, name, fs.ErrNotExist)
	}
	var vals []float32
	var err error
	if isPart {
		// HFConfig has checked the fused or stacked tensor's shape
		// against the config.
		vals, err = w.f.Float32Rows(gname, part.row0, part.n)
		ti.Shape = []int{part.n, ti.Shape[len(ti.Shape)-1]}
	} else {
		vals, err = w.f.Float32(gname)
	}
	if err != nil {
		return safetensors.Tensor{}, fmt.Errorf("%s: tensor %q: %w", w.f.path, gname, err)
	}
	if err := w.finite(gname, ti.Type, vals); err != nil {
		return safetensors.Tensor{}, err
	}
	if w.oneRow[name] && len(ti.Shape) == 1 {
		ti.Shape = []int{1, ti.Shape[0]}
	}
	if w.shifted[name] {
		out := make([]float32, len(vals))
		for i, v := range vals {
			out[i] = v - 1
		}
		vals = out
	}
	if h := w.heads[name]; h > 0 {
		out := make([]float32, len(vals))
		if err := UnpermuteQK(out, vals, ti.Shape[0], ti.Shape[1], h); err != nil {
			return safetensors.Tensor{}, fmt.Errorf("%s: tensor %q: %w", w.f.path, gname, err)
		}
		vals = out
	}
	return w.f32Tensor(name, vals, ti.Shape), nil
}

// finite refuses weights that are not finite.
func (w *ModelWeights) finite(gname string, t TensorType, vals []float32) error {
	for i, v := range vals {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%s: tensor %q (%s): element %d is %g: want finite weights", w.f.path, gname, t, i, v)
		}
	}
	return nil
}

// f32Tensor is vals as an F32 tensor of the given shape.
func (w *ModelWeights) f32Tensor(name string, vals []float32, shape []int) safetensors.Tensor {
	data := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	return safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: name, DType: safetensors.F32, Shape: slices.Clone(shape)}, Data: data, File: w.f.path}
}

// IsFile reports whether path names a GGUF file by its extension.
func IsFile(path string) bool { return strings.HasSuffix(strings.ToLower(path), ".gguf") }

// checkMRoPE checks a qwen2vl or qwen3vl file's rope.dimension_sections
// (under the prefix a): four counts, the fourth 0 and the first three
// summing to half the rotated dimension. llama.cpp then rotates a text
// token (its three first positions equal, the fourth 0) by one position
// in every frequency pair, plain RoPE, as transformers does (but for the
// pairs qwen3vl's interleaving leaves to the fourth position: FileArch);
// other counts would leave pairs unrotated.
func (f *File) checkMRoPE(a string) error {
	key := a + "rope.dimension_sections"
	sec, err := Value[[]int32](f, key)
	if err != nil {
		if u, uerr := Value[[]uint32](f, key); uerr == nil {
			sec, err = make([]int32, len(u)), nil
			for i, v := range u {
				sec[i] = int32(v)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %s: %w (an M-RoPE architecture needs its four section counts)", f.path, key, err)
	}
	rot, err := Value[uint32](f, a+"rope.dimension_count")
	if err != nil {
		return fmt.Errorf("%s: %s: %w", f.path, a+"rope.dimension_count", err)
	}
	if len(sec) != 4 || sec[3] != 0 || sec[0] < 0 || sec[1] < 0 || sec[2] < 0 || int(sec[0]+sec[1]+sec[2]) != int(rot)/2 {
		return fmt.Errorf("%s: %s %v: want four counts, the last 0, the first three summing to %d (half of rope.dimension_count): other sections rotate text unlike plain RoPE: %w", f.path, key, sec, rot/2, ErrUnsupportedModel)
	}
	return nil
}
