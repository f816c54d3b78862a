package gguf

import (
	"fmt"
	"strconv"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
)

// Gemma 3's text model (model_type gemma3_text) converts to llama.cpp's
// gemma3 architecture as convert_hf_to_gguf.py's Gemma3Model writes it:
// every norm weight shifted by 1 (Gemma3RMSNorm multiplies by 1 + w,
// llama.cpp's graph by the weight), q/k rows in Hugging Face's order
// (llama.cpp rotates gemma3 by halves), the tied head left out.
//
// llama.cpp's loader fixes what config.json could say otherwise
// (llama_model::load_hparams, LLM_ARCH_GEMMA3): every sixth layer attends
// in full and the others within attention.sliding_window, the sliding
// layers rotate by base 10000 unscaled, and scores are scaled by
// head_dim**-0.5 (the 62-layer 27B's by (hidden/heads)**-0.5).
// checkGemma3 refuses a config that would run otherwise there.

// checkGemma3 refuses a gemma3_text config that llama.cpp's gemma3
// architecture would run as another model, naming the key.
func checkGemma3(cfg *hfconfig.Config) error {
	for i, t := range cfg.LayerTypes {
		want := "sliding_attention"
		if (i+1)%6 == 0 {
			want = "full_attention"
		}
		if t != want {
			return fmt.Errorf("%s: layer_types[%d] %q: llama.cpp's gemma3 architecture makes every sixth layer full_attention and the others sliding: %w", cfg.File, i, t, ErrUnsupportedModel)
		}
	}
	if cfg.SlidingWindow <= 0 {
		return fmt.Errorf("%s: sliding_window null: llama.cpp's gemma3 architecture requires a window: %w", cfg.File, ErrUnsupportedModel)
	}
	if cfg.RopeLocalTheta != 10000 {
		return fmt.Errorf("%s: rope_local_base_freq %g: llama.cpp's gemma3 architecture rotates the sliding layers by 10000: %w", cfg.File, cfg.RopeLocalTheta, ErrUnsupportedModel)
	}
	scalar := float64(cfg.HeadDim)
	if cfg.NumHiddenLayers == 62 {
		scalar = float64(cfg.HiddenSize / cfg.NumAttentionHeads)
	}
	if cfg.QueryPreAttnScalar != scalar {
		return fmt.Errorf("%s: query_pre_attn_scalar %g: llama.cpp's gemma3 architecture scales scores by %g**-0.5 at %d layers: %w", cfg.File, cfg.QueryPreAttnScalar, scalar, cfg.NumHiddenLayers, ErrUnsupportedModel)
	}
	if s := cfg.RopeScaling; !s.IsDefault() && s.Type != hfconfig.RopeLinear {
		return fmt.Errorf("%s: rope scaling %s: Gemma3Model writes linear alone: %w", cfg.File, s, ErrUnsupportedModel)
	}
	return noAttentionBias(cfg, "gemma3")
}

// gemma3TensorSpecs lists a gemma3 file's tensors (LLM_ARCH_GEMMA3's
// create_tensor calls, Gemma3Model's names): token_embd; each layer's
// attn_norm (input_layernorm), attn_q/k/v, attn_q_norm and attn_k_norm,
// attn_output, post_attention_norm, ffn_norm (pre_feedforward_layernorm),
// ffn_gate/up/down and post_ffw_norm; output_norm. Norms are F32 [n] of
// 1 + the checkpoint's weights (Gemma3Model.modify_tensors' norm_shift).
func gemma3TensorSpecs(cfg *hfconfig.Config) []tensorSpec { return gemmaTensorSpecs(cfg, true) }

// gemmaTensorSpecs lists a gemma3 file's tensors (qkNorm) or a gemma2
// file's (LLM_ARCH_GEMMA2's: the same without attn_q_norm and
// attn_k_norm).
func gemmaTensorSpecs(cfg *hfconfig.Config, qkNorm bool) []tensorSpec {
	h, hd, ff, v := cfg.HiddenSize, cfg.HeadDim, cfg.IntermediateSize, cfg.VocabSize
	q, kv := cfg.NumAttentionHeads*hd, cfg.NumKeyValueHeads*hd
	norm := func(name, source string, n int) tensorSpec {
		return tensorSpec{name: name, source: source, shape: []int{n}, addOne: true}
	}
	specs := []tensorSpec{{name: "token_embd.weight", source: "model.embed_tokens.weight", shape: []int{v, h}}}
	for i := range cfg.NumHiddenLayers {
		blk, hf := "blk."+strconv.Itoa(i)+".", "model.layers."+strconv.Itoa(i)+"."
		specs = append(specs,
			norm(blk+"attn_norm.weight", hf+"input_layernorm.weight", h),
			tensorSpec{name: blk + "attn_q.weight", source: hf + "self_attn.q_proj.weight", shape: []int{q, h}},
			tensorSpec{name: blk + "attn_k.weight", source: hf + "self_attn.k_proj.weight", shape: []int{kv, h}},
			tensorSpec{name: blk + "attn_v.weight", source: hf + "self_attn.v_proj.weight", shape: []int{kv, h}})
		if qkNorm {
			specs = append(specs,
				norm(blk+"attn_q_norm.weight", hf+"self_attn.q_norm.weight", hd),
				norm(blk+"attn_k_norm.weight", hf+"self_attn.k_norm.weight", hd))
		}
		specs = append(specs,
			tensorSpec{name: blk + "attn_output.weight", source: hf + "self_attn.o_proj.weight", shape: []int{h, q}},
			norm(blk+"post_attention_norm.weight", hf+"post_attention_layernorm.weight", h),
			norm(blk+"ffn_norm.weight", hf+"pre_feedforward_layernorm.weight", h),
			tensorSpec{name: blk + "ffn_gate.weight", source: hf + "mlp.gate_proj.weight", shape: []int{ff, h}},
			tensorSpec{name: blk + "ffn_up.weight", source: hf + "mlp.up_proj.weight", shape: []int{ff, h}},
			tensorSpec{name: blk + "ffn_down.weight", source: hf + "mlp.down_proj.weight", shape: []int{h, ff}},
			norm(blk+"post_ffw_norm.weight", hf+"post_feedforward_layernorm.weight", h),
		)
	}
	specs = append(specs, norm("output_norm.weight", "model.norm.weight", h))
	if !cfg.TieWordEmbeddings {
		specs = append(specs, tensorSpec{name: "output.weight", source: "lm_head.weight", shape: []int{v, h}})
	}
	return specs
}

// gemma3KVs are a gemma3 file's hyperparameters, the keys
// Gemma3Model.set_gguf_parameters writes, in its order: context_length,
// embedding_length, block_count, feed_forward_length,
// attention.head_count, attention.layer_norm_rms_epsilon,
// attention.key_length and value_length (head_dim), rope.freq_base
// (rope_theta, the full layers'), attention.sliding_window,
// attention.head_count_kv, and a linear scaling's rope.scaling.type and
// factor (llama.cpp applies it to the full layers alone).
func gemma3KVs(cfg *hfconfig.Config) []KV {
	const a = "gemma3."
	kvs := []KV{
		{a + "context_length", uint32(cfg.MaxPositionEmbeddings)},
		{a + "embedding_length", uint32(cfg.HiddenSize)},
		{a + "block_count", uint32(cfg.NumHiddenLayers)},
		{a + "feed_forward_length", uint32(cfg.IntermediateSize)},
		{a + "attention.head_count", uint32(cfg.NumAttentionHeads)},
		{a + "attention.layer_norm_rms_epsilon", float32(cfg.RMSNormEps)},
		{a + "attention.key_length", uint32(cfg.HeadDim)},
		{a + "attention.value_length", uint32(cfg.HeadDim)},
		{a + "rope.freq_base", float32(cfg.RopeTheta)},
		{a + "attention.sliding_window", uint32(cfg.SlidingWindow)},
		{a + "attention.head_count_kv", uint32(cfg.NumKeyValueHeads)},
	}
	if s := cfg.RopeScaling; s.Type == hfconfig.RopeLinear {
		kvs = append(kvs, KV{a + "rope.scaling.type", "linear"}, KV{a + "rope.scaling.factor", float32(s.Factor)})
	}
	return kvs
}

// gemma3Config completes c for a gemma3 file (a the keys' prefix
// "gemma3.") as llama.cpp's gemma3 architecture runs it:
// sliding_window from gemma3.attention.sliding_window (required, as
// llama.cpp's loader requires it), every sixth layer full
// (sliding_window_pattern 6), the sliding layers' base 10000, scores
// scaled by head_dim**-0.5 (the 62-layer 27B's by (hidden/heads)**-0.5:
// query_pre_attn_scalar). A RoPE scaling other than none or linear is
// refused.
func (f *File) gemma3Config(c map[string]any, a, scaling string, headDim uint32) error {
	sw, err := Value[uint32](f, a+"attention.sliding_window")
	if err != nil {
		return err
	}
	if sw == 0 {
		return fmt.Errorf("%s: %sattention.sliding_window 0: want a window: %w", f.path, a, ErrUnsupportedModel)
	}
	if scaling != "none" && scaling != "linear" {
		return fmt.Errorf("%s: %srope.scaling.type %q: a scaling Gemma 3 configs do not have: %w", f.path, a, scaling, ErrUnsupportedModel)
	}
	c["sliding_window"], c["sliding_window_pattern"], c["rope_local_base_freq"] = sw, 6, 10000
	c["query_pre_attn_scalar"] = headDim
	if c["num_hidden_layers"].(uint32) == 62 {
		c["query_pre_attn_scalar"] = c["hidden_size"].(uint32) / max(c["num_attention_heads"].(uint32), 1)
	}
	return nil
}
