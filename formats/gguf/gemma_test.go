package gguf_test

import (
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// gemmaCheckpoint writes a random-weight Gemma checkpoint (fixtures.Gemma,
// fp32: multi-query, head_dim 32 where hidden/heads is 16, hidden_act
// "gelu") with Qwen's tokenizer, 6 layers.
func gemmaCheckpoint(t *testing.T, edit map[string]any) *checkpoint {
	t.Helper()
	return familyCheckpoint(t, fixtures.Gemma, 10, map[string]any{"num_hidden_layers": 6}, edit)
}

// TestConvertGemma converts a Gemma checkpoint: general.architecture gemma
// with GemmaModel's gemma.* keys, every norm 1 + the checkpoint's weights
// (F32), Llama's tensor names without a head; an F32 file read back runs as
// the checkpoint bit for bit; the configs llama.cpp's gemma architecture
// would run otherwise are refused.
func TestConvertGemma(t *testing.T) {
	ck := gemmaCheckpoint(t, nil)
	c := convertWith(t, ck, gguf.TypeF16, gguf.ConvertOptions{Type: gguf.TypeF16})
	hasKVs(t, c, map[string]any{
		"general.architecture": "gemma", "gemma.block_count": uint32(6), "gemma.embedding_length": uint32(64),
		"gemma.feed_forward_length": uint32(96), "gemma.context_length": uint32(512),
		"gemma.attention.head_count": uint32(4), "gemma.attention.head_count_kv": uint32(1), "gemma.rope.freq_base": float32(10000),
		"gemma.attention.key_length": uint32(32), "gemma.attention.value_length": uint32(32),
		"gemma.attention.layer_norm_rms_epsilon": float32(1e-6),
	})
	shiftedNorms(t, c, ck, map[string]string{
		"blk.3.attn_norm.weight": "model.layers.3.input_layernorm.weight", "blk.3.ffn_norm.weight": "model.layers.3.post_attention_layernorm.weight",
		"output_norm.weight": "model.norm.weight",
	})
	for _, name := range []string{"blk.0.post_attention_norm.weight", "blk.0.post_ffw_norm.weight", "output.weight"} {
		if _, ok := c.file.Tensor(name); ok {
			t.Errorf("%s in a gemma file", name)
		}
	}
	t.Run("read back", func(t *testing.T) {
		hc := readsBack(t, ck)
		if hc.ModelType != "gemma" || hc.HeadDim != 32 || hc.NumKeyValueHeads != 1 || hc.AttentionScale() != ck.cfg.AttentionScale() ||
			hc.LayerWindow(4) != 0 || !hc.TieWordEmbeddings || hc.HiddenAct != "gelu_pytorch_tanh" {
			t.Errorf("HFConfig: %s, head_dim %d, kv heads %d, scale %g, window %d, tied %v, act %q", hc.ModelType, hc.HeadDim,
				hc.NumKeyValueHeads, hc.AttentionScale(), hc.LayerWindow(4), hc.TieWordEmbeddings, hc.HiddenAct)
		}
	})
	for _, tc := range []struct {
		name string
		edit map[string]any
		want string
	}{
		{"scaling", map[string]any{"rope_scaling": map[string]any{"rope_type": "linear", "factor": 2.0}}, "GemmaModel writes none"},
		{"untied", map[string]any{"tie_word_embeddings": false}, "tie_word_embeddings false"},
		{"attention bias", map[string]any{"attention_bias": true}, "attention_bias true"},
	} {
		t.Run(tc.name, func(t *testing.T) { convertRefused(t, gemmaCheckpoint(t, tc.edit), tc.want) })
	}
}

// TestLlamaCppGemma loads an F32 gemma file in llama.cpp (node-llama-cpp)
// and compares its next-token log-probabilities with our runtime on the
// checkpoint: llama.cpp's gemma graph (scaled embeddings, the shifted
// norms, multi-query attention with scores scaled by head_dim**-0.5,
// GELU-tanh MLP) matches our runtime run with ggml's fp16-table GELU; our
// runtime with the scores scaled by (hidden/heads)**-0.5 instead is far
// off, so the comparison tells the scale.
func TestLlamaCppGemma(t *testing.T) {
	node := llamaCppAvailable(t)
	ck := gemmaCheckpoint(t, nil)
	llama, prompts := llamaCppF32(t, node, ck)
	dg := runtimeDiff(t, ck, ck.cfg, ggmlGELU{cpu.New(0)}, llama, prompts)
	t.Logf("F32: llama.cpp vs our runtime with ggml's fp16 GELU: %v", dg)
	// (Measured: max|Δlogp| 2.5e-5, NMSE 6.9e-12.)
	tolerance{1e-3, 1e-8, 1e-8}.check(t, "llama.cpp vs our runtime with ggml's GELU on F32", dg)
	cfg := *ck.cfg
	cfg.QueryPreAttnScalar = float64(cfg.HiddenSize / cfg.NumAttentionHeads)
	dw := runtimeDiff(t, ck, &cfg, ggmlGELU{cpu.New(0)}, llama, prompts)
	t.Logf("F32: llama.cpp vs our runtime scaled by (hidden/heads)**-0.5: %v", dw)
	if !(dw.maxAbs > 0.05) {
		t.Errorf("our runtime scaled by (hidden/heads)**-0.5 is within %v of llama.cpp: the comparison cannot tell it", dw)
	}
}
