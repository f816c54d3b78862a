package gguf

import (
	"fmt"
	"math"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
)

// Granite (model_type granite) converts to llama.cpp's granite
// architecture as convert_hf_to_gguf.py's GraniteModel writes it: a llama
// file under granite.* keys (Q/K rows permuted as LlamaModel permutes
// them) plus the four multipliers as attention.scale (attention_multiplier),
// embedding_scale, residual_scale and logit_scale (logits_scaling). The
// converter writes a multiplier only where the config has it; this writer
// always writes all four, since llama.cpp's defaults where a key is absent
// are not GraniteConfig's (no attention.scale scales scores by
// head_dim**-0.5, where transformers takes attention_multiplier's 1).

// checkGranite refuses a granite config that llama.cpp's granite
// architecture would run as another model, naming the key.
func checkGranite(cfg *hfconfig.Config) error {
	// (GraniteModel drops head_dim.)
	if err := headDimHidden(cfg, "granite"); err != nil {
		return err
	}
	if s := cfg.RopeScaling; !s.IsDefault() {
		return fmt.Errorf("%s: rope scaling %s: no Granite config has one, and llama.cpp's granite architecture is not checked with it: %w", cfg.File, s, ErrUnsupportedModel)
	}
	return nil
}

// graniteKVs are the multipliers GraniteModel.set_gguf_parameters adds to
// the llama keys, in its order.
func graniteKVs(cfg *hfconfig.Config) []KV {
	const a = "granite."
	g := cfg.Granite
	return []KV{
		{a + "attention.scale", float32(g.AttentionMultiplier)},
		{a + "embedding_scale", float32(g.EmbeddingMultiplier)},
		{a + "residual_scale", float32(g.ResidualMultiplier)},
		{a + "logit_scale", float32(g.LogitsScaling)},
	}
}

// graniteConfig reads a granite file's multipliers into c as llama.cpp's
// granite architecture runs them (a the keys' prefix "granite."): each
// key's value, or where absent llama.cpp's default, which leaves the
// embeddings, residual adds and logits unscaled and scales scores by
// head_dim**-0.5. A RoPE scaling, rope_freqs or a multiplier that is not a
// positive number is refused.
func (f *File) graniteConfig(c map[string]any, a, scaling string, linear bool, headDim uint32) error {
	if err := f.noScaling(a, "Granite", scaling, linear); err != nil {
		return err
	}
	for _, k := range []struct {
		key, field string
		def        float64
	}{
		{"attention.scale", "attention_multiplier", 1 / math.Sqrt(float64(headDim))},
		{"embedding_scale", "embedding_multiplier", 1},
		{"residual_scale", "residual_multiplier", 1},
		{"logit_scale", "logits_scaling", 1},
	} {
		v := k.def
		if _, ok := f.Get(a + k.key); ok {
			x, err := Value[float32](f, a+k.key)
			if err != nil {
				return err
			}
			if !(x > 0) {
				return fmt.Errorf("%s: %s%s %g: want a positive multiplier: %w", f.path, a, k.key, x, ErrUnsupportedModel)
			}
			v = float64(x)
		}
		c[k.field] = v
	}
	return nil
}
