package gguf

import (
	"fmt"
	"strconv"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
)

// OLMo 2 (model_type olmo2) converts to llama.cpp's olmo2 architecture as
// convert_hf_to_gguf.py's Olmo2Model writes it: the llama keys under
// olmo2.*, q/k rows in Hugging Face's order (llama.cpp rotates olmo2 by
// halves; the converter does not permute), the q/k norms over the whole
// projections as attn_q_norm and attn_k_norm, the sublayers' output norms
// as post_attention_norm and post_ffw_norm, and no attn_norm or ffn_norm.

// checkOlmo2 refuses an olmo2 (or olmoe) config that llama.cpp's olmo2
// (olmoe) architecture would run as another model, naming the key: a
// head_dim other than hidden/heads (its q_norm is {n_embd}), fewer KV heads
// than heads in olmoe (its k_norm is {n_embd} too), a tied head, a RoPE
// scaling, attention biases.
func checkOlmo2(cfg *hfconfig.Config) error {
	arch, family := Arch(cfg), "OLMo 2"
	if arch == "olmoe" {
		family = "OLMoE"
	}
	if err := headDimHidden(cfg, arch); err != nil {
		return err
	}
	if arch == "olmoe" && cfg.NumKeyValueHeads != cfg.NumAttentionHeads {
		// (llama.cpp's olmoe creates attn_k_norm {n_embd}: as many KV
		// heads as heads, as OLMoE-1B-7B has.)
		return fmt.Errorf("%s: num_key_value_heads %d: llama.cpp's olmoe architecture takes as many KV heads as heads (%d): %w", cfg.File, cfg.NumKeyValueHeads, cfg.NumAttentionHeads, ErrUnsupportedModel)
	}
	if cfg.TieWordEmbeddings {
		return fmt.Errorf("%s: tie_word_embeddings true: llama.cpp's %s architecture requires an output tensor, which a tied checkpoint does not have: %w", cfg.File, arch, ErrUnsupportedModel)
	}
	if s := cfg.RopeScaling; !s.IsDefault() {
		return fmt.Errorf("%s: rope scaling %s: no %s config has one, and llama.cpp's %s architecture is not checked with it: %w", cfg.File, s, family, arch, ErrUnsupportedModel)
	}
	return noAttentionBias(cfg, arch)
}

// olmo2TensorSpecs lists an olmo2 file's tensors (LLM_ARCH_OLMO2's
// create_tensor calls, Olmo2Model's names): token_embd; each layer's
// attn_q/k/v, attn_q_norm [heads·head_dim] and attn_k_norm
// [kv_heads·head_dim] (F32), attn_output, post_attention_norm,
// ffn_gate/up/down and post_ffw_norm; output_norm; output unless tied.
func olmo2TensorSpecs(cfg *hfconfig.Config) []tensorSpec {
	h, hd, ff, v := cfg.HiddenSize, cfg.HeadDim, cfg.IntermediateSize, cfg.VocabSize
	q, kv := cfg.NumAttentionHeads*hd, cfg.NumKeyValueHeads*hd
	specs := []tensorSpec{{name: "token_embd.weight", source: "model.embed_tokens.weight", shape: []int{v, h}}}
	for i := range cfg.NumHiddenLayers {
		blk, hf := "blk."+strconv.Itoa(i)+".", "model.layers."+strconv.Itoa(i)+"."
		specs = append(specs,
			tensorSpec{name: blk + "attn_q.weight", source: hf + "self_attn.q_proj.weight", shape: []int{q, h}},
			tensorSpec{name: blk + "attn_k.weight", source: hf + "self_attn.k_proj.weight", shape: []int{kv, h}},
			tensorSpec{name: blk + "attn_v.weight", source: hf + "self_attn.v_proj.weight", shape: []int{kv, h}},
			tensorSpec{name: blk + "attn_q_norm.weight", source: hf + "self_attn.q_norm.weight", shape: []int{q}},
			tensorSpec{name: blk + "attn_k_norm.weight", source: hf + "self_attn.k_norm.weight", shape: []int{kv}},
			tensorSpec{name: blk + "attn_output.weight", source: hf + "self_attn.o_proj.weight", shape: []int{h, q}},
			tensorSpec{name: blk + "post_attention_norm.weight", source: hf + "post_attention_layernorm.weight", shape: []int{h}},
			tensorSpec{name: blk + "ffn_gate.weight", source: hf + "mlp.gate_proj.weight", shape: []int{ff, h}},
			tensorSpec{name: blk + "ffn_up.weight", source: hf + "mlp.up_proj.weight", shape: []int{ff, h}},
			tensorSpec{name: blk + "ffn_down.weight", source: hf + "mlp.down_proj.weight", shape: []int{h, ff}},
			tensorSpec{name: blk + "post_ffw_norm.weight", source: hf + "post_feedforward_layernorm.weight", shape: []int{h}},
		)
	}
	specs = append(specs, tensorSpec{name: "output_norm.weight", source: "model.norm.weight", shape: []int{h}})
	if !cfg.TieWordEmbeddings {
		specs = append(specs, tensorSpec{name: "output.weight", source: "lm_head.weight", shape: []int{v, h}})
	}
	return specs
}
