package hfconfig

// Gemma (transformers GemmaConfig, model_type gemma: gemma-2b, gemma-7b,
// gemma-1.1-2b-it, gemma-1.1-7b-it, codegemma-2b and -7b, ...) is Llama's
// decoder layer with Gemma's details: RMSNorm multiplying by 1 + weight,
// the embeddings scaled by sqrt(hidden_size), the GLU's activation
// GELU-tanh, scores scaled by head_dim**-0.5, a tied head. It has Gemma 2's
// and 3's two norms around attention and the MLP only before each (no
// post-norms), no window, no soft-capping and no q/k norms.

// Gemma1 reports whether the config is Gemma's (the first version).
func (c *Config) Gemma1() bool { return c.ModelType == "gemma" }

// gemma sets what GemmaConfig leaves fixed: scores scaled by
// head_dim**-0.5 (GemmaAttention's scaling; AttentionScale reads it as
// query_pre_attn_scalar), every layer a full one. use_bidirectional_attention
// must be false (causal).
func (r *reader) gemma(c *Config) {
	if !r.causal() {
		return
	}
	c.QueryPreAttnScalar = float64(c.HeadDim)
}

// gemmaActivation reads GemmaMLP's activation: hidden_activation where the
// config has one (transformers 4.38 to 4.5x), else hidden_act (5.x's
// GemmaConfig, default gelu_pytorch_tanh). Gemma was trained with GELU's
// tanh approximation, and a hidden_act of "gelu" (the first releases'
// configs) runs as that: transformers 4.38's GemmaMLP and the 4.x versions
// after it ignore hidden_act where hidden_activation is absent and take
// gelu_pytorch_tanh, and vLLM's and llama.cpp's Gemma run GELU-tanh
// whatever it says. (transformers 5.x's GemmaMLP takes hidden_act as it
// is: exact GELU for "gelu".) Other activations are refused, naming the
// key.
func (r *reader) gemmaActivation() string {
	if r.present("hidden_activation") {
		return r.optionalString("hidden_activation", "")
	}
	switch a := r.optionalString("hidden_act", "gelu_pytorch_tanh"); a {
	case "gelu", "gelu_pytorch_tanh":
		return "gelu_pytorch_tanh"
	default:
		if r.err == nil {
			r.fail("hidden_act %q: %w (supported: gelu_pytorch_tanh, and gelu, which Gemma runs as it)", a, ErrUnsupported)
		}
		return a
	}
}

// GemmaPostNorms reports whether each decoder layer has Gemma 2's and 3's
// four norms (input_layernorm, post_attention_layernorm after attention,
// pre_feedforward_layernorm before the MLP, post_feedforward_layernorm
// after it) in place of Llama's two (input_layernorm, and
// post_attention_layernorm before the MLP: Gemma's).
func (c *Config) GemmaPostNorms() bool { return c.Gemma() && !c.Gemma1() }
