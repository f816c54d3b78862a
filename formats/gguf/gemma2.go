package gguf

import (
	"fmt"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
)

// Gemma 2 (model_type gemma2) converts to llama.cpp's gemma2 architecture
// as convert_hf_to_gguf.py's Gemma2Model writes it: gemma3's tensors
// without the q/k norms (every norm shifted by 1, q/k rows in Hugging
// Face's order, the tied head left out), gemma2.* keys with the window
// and both soft-capping values.
//
// llama.cpp's loader (llama_model::load_hparams, LLM_ARCH_GEMMA2) fixes
// the rest: the layers alternate, the first sliding; every layer
// soft-caps its scores; scores are scaled by head_dim**-0.5 (the 46-layer
// 27B's by (hidden/heads)**-0.5). checkGemma2 refuses a config that would
// run otherwise there.

// gemma2Scalar is the query_pre_attn_scalar llama.cpp's gemma2
// architecture runs a model of layers layers with: head_dim, or
// hidden/heads at 46 layers (its LLM_TYPE_27B).
func gemma2Scalar(layers, headDim, hidden, heads int) int {
	if layers == 46 {
		return hidden / max(heads, 1)
	}
	return headDim
}

// checkGemma2 refuses a gemma2 config that llama.cpp's gemma2
// architecture would run as another model, naming the key.
func checkGemma2(cfg *hfconfig.Config) error {
	for i, t := range cfg.LayerTypes {
		want := "sliding_attention"
		if i%2 == 1 {
			want = "full_attention"
		}
		if t != want {
			return fmt.Errorf("%s: layer_types[%d] %q: llama.cpp's gemma2 architecture alternates sliding and full layers, the first sliding: %w", cfg.File, i, t, ErrUnsupportedModel)
		}
	}
	if cfg.SlidingWindow <= 0 {
		return fmt.Errorf("%s: sliding_window null: llama.cpp's gemma2 architecture requires a window: %w", cfg.File, ErrUnsupportedModel)
	}
	if cfg.AttnSoftcap <= 0 {
		return fmt.Errorf("%s: attn_logit_softcapping null: llama.cpp's gemma2 architecture always soft-caps the scores: %w", cfg.File, ErrUnsupportedModel)
	}
	if cfg.FinalSoftcap <= 0 {
		return fmt.Errorf("%s: final_logit_softcapping null: llama.cpp's gemma2 architecture always soft-caps the logits: %w", cfg.File, ErrUnsupportedModel)
	}
	if s := gemma2Scalar(cfg.NumHiddenLayers, cfg.HeadDim, cfg.HiddenSize, cfg.NumAttentionHeads); cfg.QueryPreAttnScalar != float64(s) {
		return fmt.Errorf("%s: query_pre_attn_scalar %g: llama.cpp's gemma2 architecture scales scores by %d**-0.5 at %d layers: %w", cfg.File, cfg.QueryPreAttnScalar, s, cfg.NumHiddenLayers, ErrUnsupportedModel)
	}
	return tiedUnscaled(cfg, "gemma2", "Gemma2Model")
}

// gemma2KVs are a gemma2 file's hyperparameters, the keys
// Gemma2Model.set_gguf_parameters writes, in its order, and
// rope.freq_base (rope_theta; llama.cpp's default 10000 where absent,
// which the converter leaves it to).
func gemma2KVs(cfg *hfconfig.Config) []KV {
	const a = "gemma2."
	return []KV{
		{a + "context_length", uint32(cfg.MaxPositionEmbeddings)},
		{a + "embedding_length", uint32(cfg.HiddenSize)},
		{a + "block_count", uint32(cfg.NumHiddenLayers)},
		{a + "feed_forward_length", uint32(cfg.IntermediateSize)},
		{a + "attention.head_count", uint32(cfg.NumAttentionHeads)},
		{a + "attention.head_count_kv", uint32(cfg.NumKeyValueHeads)},
		{a + "attention.layer_norm_rms_epsilon", float32(cfg.RMSNormEps)},
		{a + "attention.key_length", uint32(cfg.HeadDim)},
		{a + "attention.value_length", uint32(cfg.HeadDim)},
		{a + "attn_logit_softcapping", float32(cfg.AttnSoftcap)},
		{a + "final_logit_softcapping", float32(cfg.FinalSoftcap)},
		{a + "attention.sliding_window", uint32(cfg.SlidingWindow)},
		{a + "rope.freq_base", float32(cfg.RopeTheta)},
	}
}

// gemma2Config completes c for a gemma2 file (a the keys' prefix
// "gemma2.") as llama.cpp's gemma2 architecture runs it: the window from
// attention.sliding_window (4096 where absent, llama.cpp's default), the
// caps from attn_logit_softcapping and final_logit_softcapping (50 and 30
// where absent), the layers alternating (the first sliding), scores
// scaled by head_dim**-0.5 (at 46 layers (hidden/heads)**-0.5:
// query_pre_attn_scalar). A RoPE scaling is refused, and so are what
// llama.cpp's loader also reads but Gemma2Model never writes and the
// runtime does not compute: attention.sliding_window_pattern other than
// 2, rope.freq_base_swa other than rope.freq_base, an output tensor
// (llama.cpp's gemma2 has no head of its own).
func (f *File) gemma2Config(c map[string]any, a, scaling string, linear bool, headDim uint32) error {
	if _, ok := f.Tensor("output.weight"); ok {
		return fmt.Errorf("%s: tensor output.weight in a gemma2 file: llama.cpp's gemma2 architecture takes token_embd as the head: %w", f.path, ErrUnsupportedModel)
	}
	if _, ok := f.Get(a + "attention.sliding_window_pattern"); ok {
		p, err := Value[uint32](f, a+"attention.sliding_window_pattern")
		if err != nil {
			return err
		}
		if p != 2 {
			return fmt.Errorf("%s: %sattention.sliding_window_pattern %d: gemma2's layers alternate (2): %w", f.path, a, p, ErrUnsupportedModel)
		}
	}
	if _, ok := f.Get(a + "rope.freq_base_swa"); ok {
		swa, err := Value[float32](f, a+"rope.freq_base_swa")
		if err != nil {
			return err
		}
		if base, ok := c["rope_theta"].(float32); !ok || swa != base {
			return fmt.Errorf("%s: %srope.freq_base_swa %g: gemma2's sliding layers rotate by rope.freq_base (%v): %w", f.path, a, swa, c["rope_theta"], ErrUnsupportedModel)
		}
	}
	sw := uint32(4096)
	if _, ok := f.Get(a + "attention.sliding_window"); ok {
		v, err := Value[uint32](f, a+"attention.sliding_window")
		if err != nil {
			return err
		}
		sw = v
	}
	if sw == 0 {
		return fmt.Errorf("%s: %sattention.sliding_window 0: want a window: %w", f.path, a, ErrUnsupportedModel)
	}
	for _, k := range []struct {
		key, field string
		def        float32
	}{{"attn_logit_softcapping", "attn_logit_softcapping", 50}, {"final_logit_softcapping", "final_logit_softcapping", 30}} {
		v := k.def
		if _, ok := f.Get(a + k.key); ok {
			var err error
			if v, err = Value[float32](f, a+k.key); err != nil {
				return err
			}
		}
		if !(v > 0) {
			return fmt.Errorf("%s: %s%s %g: want a positive cap: %w", f.path, a, k.key, v, ErrUnsupportedModel)
		}
		c[k.field] = v
	}
	if err := f.noScaling(a, "Gemma 2", scaling, linear); err != nil {
		return err
	}
	c["sliding_window"] = sw
	c["query_pre_attn_scalar"] = gemma2Scalar(int(c["num_hidden_layers"].(uint32)), int(headDim), int(c["hidden_size"].(uint32)), int(c["num_attention_heads"].(uint32)))
	return nil
}
