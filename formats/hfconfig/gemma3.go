package hfconfig

import (
	"math"
)

// Gemma 3's text model (transformers Gemma3TextConfig, model_type
// gemma3_text: gemma-3-270m, gemma-3-1b). Its decoder layers differ from
// Llama's in ways the runtime reads through Config's methods:
//
//   - every RMSNorm (the four a layer, q_norm/k_norm, the final one)
//     multiplies by 1 + weight (Gemma3RMSNorm), in fp32;
//   - post_attention_layernorm normalizes the attention output before
//     the residual add, pre_feedforward_layernorm is the MLP's input norm
//     and post_feedforward_layernorm normalizes the MLP's output;
//   - the MLP is gelu_pytorch_tanh(gate_proj(x)) * up_proj(x);
//   - embeddings are scaled by sqrt(hidden_size), rounded to the dtype;
//   - attention is scaled by query_pre_attn_scalar**-0.5;
//   - the layers alternate sliding-window attention (LayerTypes, under
//     sliding_window, RoPE base rope_local_base_freq without scaling) and
//     full attention (rope_theta with rope_scaling).

// Gemma3 reports whether the config is Gemma 3's text model.
func (c *Config) Gemma3() bool { return c.ModelType == "gemma3_text" }

// LayerWindow returns layer i's attention window (0: none): SlidingWindow
// in every layer but gemma3_text's full-attention ones.
func (c *Config) LayerWindow(i int) int {
	if c.LayerTypes != nil && c.LayerTypes[i] == "full_attention" {
		return 0
	}
	return c.SlidingWindow
}

// LayerRope returns the RoPE base and scaling of layer i: RopeTheta and
// RopeScaling, but in gemma3_text's sliding layers RopeLocalTheta
// unscaled (Gemma3TextModel's rotary_emb_local; Gemma 2's layers all
// rotate alike).
func (c *Config) LayerRope(i int) (float64, RopeScaling) {
	if c.Gemma3() && c.LayerTypes != nil && c.LayerTypes[i] == "sliding_attention" {
		return c.RopeLocalTheta, RopeScaling{Type: RopeDefault}
	}
	return c.RopeTheta, c.RopeScaling
}

// AttentionScale returns the scale of the attention scores before the
// softmax: query_pre_attn_scalar**-0.5 in Gemma (head_dim's in the first
// version), attention_multiplier in granite, head_dim**-0.5 elsewhere
// (before any RoPE attention factor).
func (c *Config) AttentionScale() float64 {
	if c.Granite != nil {
		return c.Granite.AttentionMultiplier
	}
	if c.Gemma() {
		return 1 / math.Sqrt(c.QueryPreAttnScalar)
	}
	return 1 / math.Sqrt(float64(c.HeadDim))
}

// gemmaFull returns the full-attention block of gemma3_text's 5.x
// rope_parameters by layer type ({"full_attention": {...},
// "sliding_attention": {...}}).
func (r *reader) gemmaFull(key string, m map[string]any) (map[string]any, bool) {
	if r.modelType != "gemma3_text" || key != "rope_parameters" {
		return nil, false
	}
	full, ok := m["full_attention"].(map[string]any)
	return full, ok
}

// gemma3 reads Gemma3TextConfig's keys of its own: layer_types (else
// sliding_window_pattern, 6: layer i slides unless (i+1) % 6 == 0),
// rope_local_base_freq (10000; 5.x's
// rope_parameters.sliding_attention.rope_theta, whose type must be
// default), query_pre_attn_scalar (256). attn_logit_softcapping and
// final_logit_softcapping must be null or absent (Gemma 3 has none; a
// value is Gemma 2's, refused naming the key), use_bidirectional_attention
// false (EmbeddingGemma's true is refused).
func (r *reader) gemma3(c *Config) {
	for _, key := range []string{"attn_logit_softcapping", "final_logit_softcapping"} {
		if r.present(key) {
			r.fail("%s: %v: %w (Gemma 3 has no soft-capping; want null)", key, r.m[key], ErrUnsupported)
			return
		}
	}
	if !r.causal() {
		return
	}
	c.QueryPreAttnScalar = r.optionalFloat("query_pre_attn_scalar", 256)
	if r.err == nil && !(c.QueryPreAttnScalar > 0) {
		r.fail("query_pre_attn_scalar: got %g, want a positive number", c.QueryPreAttnScalar)
	}
	c.RopeLocalTheta = r.optionalFloat("rope_local_base_freq", 10000)
	if p, ok := r.m["rope_parameters"].(map[string]any); ok {
		if sl, ok := p["sliding_attention"].(map[string]any); ok {
			sub := reader{m: sl, file: r.file}
			if t := sub.optionalString("rope_type", RopeDefault); t != RopeDefault {
				r.fail("rope_parameters.sliding_attention.rope_type %q: %w (Gemma 3's sliding layers rotate unscaled)", t, ErrUnsupported)
			}
			c.RopeLocalTheta = sub.optionalFloat("rope_theta", c.RopeLocalTheta)
			if sub.err != nil {
				r.fail("rope_parameters.sliding_attention: %v", sub.err)
			}
		}
	}
	if r.err == nil && !(c.RopeLocalTheta > 0) {
		r.fail("rope_local_base_freq: got %g, want a positive number", c.RopeLocalTheta)
	}
	// (transformers 4.53+ keeps the pattern as _sliding_window_pattern
	// beside layer_types.)
	pattern := r.optionalInt("_sliding_window_pattern", 6)
	pattern = r.optionalInt("sliding_window_pattern", pattern)
	r.slidingLayers(c, pattern)
}

// slidingLayers reads layer_types (Gemma3TextConfig, Gemma2Config): given,
// num_hidden_layers entries, each "sliding_attention" or
// "full_attention"; absent, layer i slides unless (i+1) % pattern == 0
// (transformers' default, "sliding_attention" if bool((i + 1) %
// pattern)).
func (r *reader) slidingLayers(c *Config, pattern int) {
	n := c.NumHiddenLayers
	if v, ok := r.m["layer_types"]; ok && v != nil {
		list, isList := v.([]any)
		if !isList {
			r.fail("layer_types: got %s, want a list of strings", jsonKind(v))
			return
		}
		if len(list) != n {
			r.fail("layer_types: %d entries for num_hidden_layers %d", len(list), n)
			return
		}
		c.LayerTypes = make([]string, n)
		for i, e := range list {
			switch e {
			case "full_attention", "sliding_attention":
				c.LayerTypes[i] = e.(string)
			default:
				r.fail("layer_types[%d]: got %v, want \"sliding_attention\" or \"full_attention\"", i, e)
				return
			}
		}
		return
	}
	if r.err == nil && pattern <= 0 {
		r.fail("sliding_window_pattern: got %d, want a positive integer", pattern)
	}
	if r.err != nil || n <= 0 {
		return
	}
	c.LayerTypes = make([]string, n)
	for i := range c.LayerTypes {
		c.LayerTypes[i] = "sliding_attention"
		if (i+1)%pattern == 0 {
			c.LayerTypes[i] = "full_attention"
		}
	}
}

// gemma3TextDefaults are Gemma3TextConfig's defaults for the keys Parse
// otherwise requires (gemma-3-4b-it's text_config, for one, names neither
// vocab_size nor num_attention_heads) and for its token ids.
var gemma3TextDefaults = map[string]any{
	"pad_token_id":        0,
	"eos_token_id":        1,
	"bos_token_id":        2,
	"vocab_size":          262208,
	"hidden_size":         2304,
	"intermediate_size":   9216,
	"num_hidden_layers":   26,
	"num_attention_heads": 8,
}
