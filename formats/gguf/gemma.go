package gguf

import (
	"fmt"
	"strconv"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
)

// Gemma (model_type gemma) converts to llama.cpp's gemma architecture as
// convert_hf_to_gguf.py's GemmaModel writes it: Llama's tensor names with
// every norm shifted by 1 (GemmaRMSNorm multiplies by 1 + w), q/k rows in
// Hugging Face's order (llama.cpp rotates gemma by halves), the tied head
// left out (LLM_ARCH_GEMMA takes token_embd as its head), and gemma.* keys
// without a window or caps. llama.cpp's gemma graph scales the embeddings
// by sqrt(n_embd), q by head_dim**-0.5 and runs a GELU-tanh GLU:
// GemmaForCausalLM's forward. checkGemma1 refuses what it would run
// otherwise.

// checkGemma1 refuses a gemma config that llama.cpp's gemma architecture
// would run as another model, naming the key.
func checkGemma1(cfg *hfconfig.Config) error { return tiedUnscaled(cfg, "gemma", "GemmaModel") }

// tiedUnscaled refuses a config that llama.cpp's arch architecture (gemma,
// gemma2) would run as another model: a RoPE scaling (its converter
// writes none), an untied head (the architecture creates no output tensor:
// the head is always token_embd, and the converter leaves lm_head out) or
// attention biases.
func tiedUnscaled(cfg *hfconfig.Config, arch, converter string) error {
	if s := cfg.RopeScaling; !s.IsDefault() {
		return fmt.Errorf("%s: rope scaling %s: %s writes none: %w", cfg.File, s, converter, ErrUnsupportedModel)
	}
	if !cfg.TieWordEmbeddings {
		return fmt.Errorf("%s: tie_word_embeddings false: llama.cpp's %s architecture always takes the embedding as the head: %w", cfg.File, arch, ErrUnsupportedModel)
	}
	return noAttentionBias(cfg, arch)
}

// gemma1TensorSpecs lists a gemma file's tensors (LLM_ARCH_GEMMA's
// create_tensor calls, GemmaModel's names): token_embd; each layer's
// attn_norm (input_layernorm), attn_q/k/v, attn_output, ffn_norm
// (post_attention_layernorm), ffn_gate/up/down; output_norm. Norms are F32
// [n] of 1 + the checkpoint's weights (GemmaModel.modify_tensors).
func gemma1TensorSpecs(cfg *hfconfig.Config) []tensorSpec {
	h, hd, ff, v := cfg.HiddenSize, cfg.HeadDim, cfg.IntermediateSize, cfg.VocabSize
	q, kv := cfg.NumAttentionHeads*hd, cfg.NumKeyValueHeads*hd
	norm := func(name, source string) tensorSpec {
		return tensorSpec{name: name, source: source, shape: []int{h}, addOne: true}
	}
	specs := []tensorSpec{{name: "token_embd.weight", source: "model.embed_tokens.weight", shape: []int{v, h}}}
	for i := range cfg.NumHiddenLayers {
		blk, hf := "blk."+strconv.Itoa(i)+".", "model.layers."+strconv.Itoa(i)+"."
		specs = append(specs,
			norm(blk+"attn_norm.weight", hf+"input_layernorm.weight"),
			tensorSpec{name: blk + "attn_q.weight", source: hf + "self_attn.q_proj.weight", shape: []int{q, h}},
			tensorSpec{name: blk + "attn_k.weight", source: hf + "self_attn.k_proj.weight", shape: []int{kv, h}},
			tensorSpec{name: blk + "attn_v.weight", source: hf + "self_attn.v_proj.weight", shape: []int{kv, h}},
			tensorSpec{name: blk + "attn_output.weight", source: hf + "self_attn.o_proj.weight", shape: []int{h, q}},
			norm(blk+"ffn_norm.weight", hf+"post_attention_layernorm.weight"),
			tensorSpec{name: blk + "ffn_gate.weight", source: hf + "mlp.gate_proj.weight", shape: []int{ff, h}},
			tensorSpec{name: blk + "ffn_up.weight", source: hf + "mlp.up_proj.weight", shape: []int{ff, h}},
			tensorSpec{name: blk + "ffn_down.weight", source: hf + "mlp.down_proj.weight", shape: []int{h, ff}},
		)
	}
	return append(specs, norm("output_norm.weight", "model.norm.weight"))
}

// gemma1KVs are a gemma file's hyperparameters, the keys
// GemmaModel.set_gguf_parameters writes, in its order, and rope.freq_base
// (rope_theta; llama.cpp's default 10000 where absent, which the converter
// leaves it to).
func gemma1KVs(cfg *hfconfig.Config) []KV {
	const a = "gemma."
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
		{a + "rope.freq_base", float32(cfg.RopeTheta)},
	}
}

// gemma1Config completes c for a gemma file (a the keys' prefix "gemma.")
// as llama.cpp's gemma architecture runs it: every layer a full one,
// scores scaled by head_dim**-0.5 (GemmaConfig's, nothing to read). A RoPE
// scaling is refused, and so is an output tensor (llama.cpp's gemma has no
// head of its own).
func (f *File) gemma1Config(a, scaling string, linear bool) error {
	if _, ok := f.Tensor("output.weight"); ok {
		return fmt.Errorf("%s: tensor output.weight in a gemma file: llama.cpp's gemma architecture takes token_embd as the head: %w", f.path, ErrUnsupportedModel)
	}
	return f.noScaling(a, "Gemma", scaling, linear)
}
