package gguf_test

import (
	"encoding/json"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// gemma2Checkpoint writes a random-weight Gemma 2 checkpoint
// (fixtures.Gemma2, fp32: sliding layers within 3 positions alternating
// with full ones, the scores soft-capped at 2 and the logits at 3) with
// Qwen's tokenizer, in the shape llama.cpp's gemma2 architecture runs: 6
// layers, query_pre_attn_scalar the head_dim 32 (hidden/heads is 16).
func gemma2Checkpoint(t *testing.T, edit map[string]any) *checkpoint {
	t.Helper()
	return familyCheckpoint(t, fixtures.Gemma2, 9, map[string]any{"num_hidden_layers": 6, "query_pre_attn_scalar": 32}, edit)
}

// TestConvertGemma2 converts a Gemma 2 checkpoint: general.architecture
// gemma2 with Gemma2Model's gemma2.* keys (both caps and the window), every
// norm 1 + the checkpoint's weights (F32), gemma3's tensor names without
// q/k norms; an F32 file read back runs as the checkpoint bit for bit; the
// configs llama.cpp's gemma2 architecture would run otherwise are refused.
func TestConvertGemma2(t *testing.T) {
	ck := gemma2Checkpoint(t, nil)
	c := convertWith(t, ck, gguf.TypeF16, gguf.ConvertOptions{Type: gguf.TypeF16})
	hasKVs(t, c, map[string]any{
		"general.architecture": "gemma2", "gemma2.block_count": uint32(6), "gemma2.embedding_length": uint32(64),
		"gemma2.feed_forward_length": uint32(96), "gemma2.context_length": uint32(512),
		"gemma2.attention.head_count": uint32(4), "gemma2.attention.head_count_kv": uint32(2), "gemma2.rope.freq_base": float32(10000),
		"gemma2.attention.key_length": uint32(32), "gemma2.attention.value_length": uint32(32),
		"gemma2.attention.sliding_window": uint32(3), "gemma2.attention.layer_norm_rms_epsilon": float32(1e-6),
		"gemma2.attn_logit_softcapping": float32(2), "gemma2.final_logit_softcapping": float32(3),
	})
	shiftedNorms(t, c, ck, map[string]string{
		"blk.3.attn_norm.weight": "model.layers.3.input_layernorm.weight", "blk.3.post_attention_norm.weight": "model.layers.3.post_attention_layernorm.weight",
		"blk.3.ffn_norm.weight": "model.layers.3.pre_feedforward_layernorm.weight", "blk.3.post_ffw_norm.weight": "model.layers.3.post_feedforward_layernorm.weight",
		"output_norm.weight": "model.norm.weight",
	})
	for _, name := range []string{"blk.0.attn_q_norm.weight", "output.weight"} {
		if _, ok := c.file.Tensor(name); ok {
			t.Errorf("%s in a gemma2 file", name)
		}
	}
	t.Run("read back", func(t *testing.T) {
		hc := readsBack(t, ck)
		if hc.ModelType != "gemma2" || hc.HeadDim != 32 || hc.SlidingWindow != 3 || hc.QueryPreAttnScalar != 32 || hc.AttnSoftcap != 2 ||
			hc.FinalSoftcap != 3 || hc.LayerWindow(4) != 3 || hc.LayerWindow(5) != 0 || !hc.TieWordEmbeddings || hc.HiddenAct != "gelu_pytorch_tanh" {
			t.Errorf("HFConfig: %s, head_dim %d, window %d, scalar %g, caps %g %g, layer types %v, tied %v, act %q", hc.ModelType, hc.HeadDim,
				hc.SlidingWindow, hc.QueryPreAttnScalar, hc.AttnSoftcap, hc.FinalSoftcap, hc.LayerTypes, hc.TieWordEmbeddings, hc.HiddenAct)
		}
	})
	null := json.RawMessage("null")
	for _, tc := range []struct {
		name string
		edit map[string]any
		want string
	}{
		{"layer types", map[string]any{"layer_types": []string{"full_attention", "sliding_attention", "sliding_attention", "full_attention",
			"sliding_attention", "full_attention"}}, "layer_types[0]"},
		{"scalar", map[string]any{"query_pre_attn_scalar": 24}, "query_pre_attn_scalar 24"},
		{"no attention cap", map[string]any{"attn_logit_softcapping": null}, "attn_logit_softcapping null"},
		{"no final cap", map[string]any{"final_logit_softcapping": null}, "final_logit_softcapping null"},
		{"no window", map[string]any{"sliding_window": null}, "sliding_window null"},
		{"scaling", map[string]any{"rope_scaling": map[string]any{"rope_type": "linear", "factor": 2.0}}, "Gemma2Model writes none"},
		{"untied", map[string]any{"tie_word_embeddings": false}, "tie_word_embeddings false"},
	} {
		t.Run(tc.name, func(t *testing.T) { convertRefused(t, gemma2Checkpoint(t, tc.edit), tc.want) })
	}
}

// TestLlamaCppGemma2 loads an F32 gemma2 file in llama.cpp (node-llama-cpp)
// and compares its next-token log-probabilities with our runtime on the
// checkpoint: llama.cpp's gemma2 graph (scaled embeddings, the shifted
// norms, sliding layers within the window, post norms, GELU-tanh MLP, the
// scores and the logits soft-capped) matches our runtime run with ggml's
// fp16-table GELU; our runtime without either cap is far off, so the
// comparison tells both.
func TestLlamaCppGemma2(t *testing.T) {
	node := llamaCppAvailable(t)
	ck := gemma2Checkpoint(t, nil)
	llama, prompts := llamaCppF32(t, node, ck)
	dg := runtimeDiff(t, ck, ck.cfg, ggmlGELU{cpu.New(0)}, llama, prompts)
	t.Logf("F32: llama.cpp vs our runtime with ggml's fp16 GELU: %v", dg)
	// (Measured: max|Δlogp| 1.0e-4, NMSE 1.5e-10.)
	tolerance{1e-3, 1e-8, 1e-8}.check(t, "llama.cpp vs our runtime with ggml's GELU on F32", dg)
	for _, w := range []struct {
		name       string
		attn, last float64
	}{{"without the scores' cap", 0, 3}, {"without the logits' cap", 2, 0}} {
		cfg := *ck.cfg
		cfg.AttnSoftcap, cfg.FinalSoftcap = w.attn, w.last
		dw := runtimeDiff(t, ck, &cfg, ggmlGELU{cpu.New(0)}, llama, prompts)
		t.Logf("F32: llama.cpp vs our runtime %s: %v", w.name, dw)
		if !(dw.maxAbs > 0.05) {
			t.Errorf("our runtime %s is within %v of llama.cpp: the comparison cannot tell it", w.name, dw)
		}
	}
}
