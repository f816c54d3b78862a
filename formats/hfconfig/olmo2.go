package hfconfig

// OLMo 2 (transformers Olmo2Config, model_type olmo2: OLMo-2-1124-7B and
// -13B, OLMo-2-0325-32B, OLMo-2-0425-1B and their -SFT, -DPO and -Instruct
// versions) is Llama's decoder with its norms moved after the sublayers:
// h = x + post_attention_layernorm(attn(x)), out = h +
// post_feedforward_layernorm(mlp(h)), no input_layernorm; and q and k
// each RMS-normalized over the whole projection (q_norm [heads·head_dim],
// k_norm [kv_heads·head_dim]) before RoPE.

// Olmo2 reports whether the config is OLMo 2's.
func (c *Config) Olmo2() bool { return c.ModelType == "olmo2" }

// PreNorms reports whether each decoder layer normalizes its attention's
// and its MLP's inputs (input_layernorm, and post_attention_layernorm or
// Gemma 2's and 3's pre_feedforward_layernorm): every model type but
// olmo2.
func (c *Config) PreNorms() bool { return !c.Olmo2() }

// FullQKNorm reports whether the q and k norms each span the whole
// projection rather than one head: OLMo 2's and OLMoE's.
func (c *Config) FullQKNorm() bool { return c.Olmo2() || c.ModelType == "olmoe" }

// QKNormWidths returns the widths of the q and k norms' weights where
// QKNorm: head_dim each (one norm a head: Qwen3, Gemma 3), or
// num_attention_heads·head_dim and num_key_value_heads·head_dim (one norm
// over the whole projection: OLMo 2, OLMoE; FullQKNorm).
func (c *Config) QKNormWidths() (q, k int) {
	if c.FullQKNorm() {
		return c.NumAttentionHeads * c.HeadDim, c.NumKeyValueHeads * c.HeadDim
	}
	return c.HeadDim, c.HeadDim
}
