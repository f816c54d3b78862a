package hfconfig

import "math"

// Granite (transformers GraniteConfig, model_type granite:
// granite-3.0/3.1/3.2/3.3-2b/8b-base and -instruct) is Llama's decoder with
// four multipliers: the embeddings are multiplied by
// embedding_multiplier, the attention scores scaled by
// attention_multiplier (not head_dim**-0.5), each layer's attention and
// MLP outputs multiplied by residual_multiplier before their residual
// adds, and the logits divided by logits_scaling.
type Granite struct {
	EmbeddingMultiplier, AttentionMultiplier, ResidualMultiplier, LogitsScaling float64
}

// granite reads GraniteConfig's multipliers (each 1.0 where absent), each
// a positive finite number.
func (r *reader) granite(c *Config) {
	g := &Granite{}
	for _, k := range []struct {
		key string
		v   *float64
	}{{"embedding_multiplier", &g.EmbeddingMultiplier}, {"attention_multiplier", &g.AttentionMultiplier},
		{"residual_multiplier", &g.ResidualMultiplier}, {"logits_scaling", &g.LogitsScaling}} {
		*k.v = r.optionalFloat(k.key, 1)
		if r.err == nil && !(*k.v > 0 && !math.IsInf(*k.v, 0)) {
			r.fail("%s: got %g, want a positive number", k.key, *k.v)
		}
	}
	c.Granite = g
}
