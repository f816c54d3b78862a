package hfconfig

// Gemma 2 (transformers Gemma2Config, model_type gemma2: gemma-2-2b,
// gemma-2-9b, gemma-2-27b and their -it versions) has Gemma 3's decoder
// layer (the four norms multiplying by 1 + weight, the GELU-tanh GLU, the
// embeddings scaled by sqrt(hidden_size), the scores scaled by
// query_pre_attn_scalar**-0.5, sliding and full layers alternating)
// without q_norm and k_norm, every layer rotating by rope_theta, and with
// soft-capping: the scaled attention scores s (before the mask) become
// attn_logit_softcapping·tanh(s/attn_logit_softcapping), and the logits
// final_logit_softcapping·tanh(logits/final_logit_softcapping).

// Gemma reports whether the config has Gemma's decoder layer: gemma,
// gemma2 or gemma3_text (a multimodal gemma3's text model too).
func (c *Config) Gemma() bool {
	return c.ModelType == "gemma" || c.ModelType == "gemma2" || c.ModelType == "gemma3_text"
}

// Gemma2 reports whether the config is Gemma 2's.
func (c *Config) Gemma2() bool { return c.ModelType == "gemma2" }

// gemma2 reads Gemma2Config's keys of its own: query_pre_attn_scalar
// (256), attn_logit_softcapping (50) and final_logit_softcapping (30), each
// a positive number or null (none), and layer_types (else the layers
// alternate, the first sliding: Gemma2Config's "sliding_attention" if
// bool((i + 1) % 2)); use_bidirectional_attention must be false
// (causal).
func (r *reader) gemma2(c *Config) {
	if !r.causal() {
		return
	}
	c.QueryPreAttnScalar = r.optionalFloat("query_pre_attn_scalar", 256)
	if r.err == nil && !(c.QueryPreAttnScalar > 0) {
		r.fail("query_pre_attn_scalar: got %g, want a positive number", c.QueryPreAttnScalar)
	}
	c.AttnSoftcap = r.softcap("attn_logit_softcapping", 50)
	c.FinalSoftcap = r.softcap("final_logit_softcapping", 30)
	r.slidingLayers(c, 2)
}

// causal refuses use_bidirectional_attention true (Gemma2Config's and
// Gemma3TextConfig's key; EmbeddingGemma's encoder attends without a
// causal mask), reporting whether the config attends causally.
func (r *reader) causal() bool {
	if r.optionalBool("use_bidirectional_attention", false) {
		r.fail("use_bidirectional_attention: true: %w (causal attention, false, is implemented)", ErrUnsupported)
		return false
	}
	return true
}

// softcap reads a soft-capping key: def where absent, 0 where null, else
// a positive number.
func (r *reader) softcap(key string, def float64) float64 {
	v, ok := r.m[key]
	if !ok {
		return def
	}
	if v == nil {
		return 0
	}
	f := r.optionalFloat(key, def)
	if r.err == nil && !(f > 0) {
		r.fail("%s: got %g, want a positive number or null", key, f)
	}
	return f
}
