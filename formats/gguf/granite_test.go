package gguf_test

import (
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// graniteCheckpoint writes a random-weight Granite checkpoint
// (fixtures.Granite, fp32: embedding_multiplier 12, attention_multiplier 1,
// residual_multiplier 0.22, logits_scaling 8) with Qwen's tokenizer, 6
// layers.
func graniteCheckpoint(t *testing.T, edit map[string]any) *checkpoint {
	t.Helper()
	return familyCheckpoint(t, fixtures.Granite, 12, map[string]any{"num_hidden_layers": 6}, edit)
}

// TestConvertGranite converts a Granite checkpoint: general.architecture
// granite with the llama keys under granite.* and GraniteModel's four
// multipliers; an F32 file read back runs as the checkpoint bit for bit;
// a head_dim other than hidden/heads and a RoPE scaling are refused.
func TestConvertGranite(t *testing.T) {
	ck := graniteCheckpoint(t, nil)
	c := convertWith(t, ck, gguf.TypeF16, gguf.ConvertOptions{Type: gguf.TypeF16})
	hasKVs(t, c, map[string]any{
		"general.architecture": "granite", "granite.block_count": uint32(6), "granite.embedding_length": uint32(64),
		"granite.attention.head_count": uint32(4), "granite.attention.head_count_kv": uint32(2), "granite.rope.freq_base": float32(5e6),
		"granite.attention.layer_norm_rms_epsilon": float32(1e-5), "granite.attention.scale": float32(1),
		"granite.embedding_scale": float32(12), "granite.residual_scale": float32(0.22), "granite.logit_scale": float32(8),
	})
	if _, ok := c.file.Tensor("output.weight"); ok {
		t.Error("output.weight in a tied granite file")
	}
	t.Run("read back", func(t *testing.T) {
		hc := readsBack(t, ck)
		if hc.ModelType != "granite" || hc.Granite == nil || *hc.Granite != (hfconfig.Granite{EmbeddingMultiplier: 12, AttentionMultiplier: 1,
			ResidualMultiplier: float64(float32(0.22)), LogitsScaling: 8}) {
			t.Fatalf("HFConfig: %s, granite %+v", hc.ModelType, hc.Granite)
		}
	})
	for _, tc := range []struct {
		name string
		edit map[string]any
		want string
	}{
		{"head_dim", map[string]any{"head_dim": 32}, "head_dim 32"},
		{"scaling", map[string]any{"rope_scaling": map[string]any{"rope_type": "linear", "factor": 2.0}}, "no Granite config has one"},
	} {
		t.Run(tc.name, func(t *testing.T) { convertRefused(t, graniteCheckpoint(t, tc.edit), tc.want) })
	}
}

// TestLlamaCppGranite loads an F32 granite file in llama.cpp
// (node-llama-cpp) and compares its next-token log-probabilities with our
// runtime on the checkpoint: llama.cpp's granite graph (llama's, the Q/K
// rows permuted, with the embedding, attention, residual and logit
// multipliers) matches our runtime; our runtime without any one of the
// multipliers is far off, so the comparison tells each.
func TestLlamaCppGranite(t *testing.T) {
	node := llamaCppAvailable(t)
	ck := graniteCheckpoint(t, nil)
	llama, prompts := llamaCppF32(t, node, ck)
	d := runtimeDiff(t, ck, ck.cfg, cpu.New(0), llama, prompts)
	t.Logf("F32: llama.cpp vs our runtime: %v", d)
	// (Measured: max|Δlogp| 3.8e-7, NMSE 1.1e-13; without the multipliers
	// 1.17, 0.10, 0.67 and 12.8.)
	tolerance{1e-3, 1e-8, 1e-8}.check(t, "llama.cpp vs our runtime on F32", d)
	for _, w := range []struct {
		name string
		edit func(*hfconfig.Granite)
	}{
		{"embedding", func(g *hfconfig.Granite) { g.EmbeddingMultiplier = 1 }},
		{"attention", func(g *hfconfig.Granite) { g.AttentionMultiplier = 0.25 }},
		{"residual", func(g *hfconfig.Granite) { g.ResidualMultiplier = 1 }},
		{"logits", func(g *hfconfig.Granite) { g.LogitsScaling = 1 }},
	} {
		cfg, g := *ck.cfg, *ck.cfg.Granite
		w.edit(&g)
		cfg.Granite = &g
		dw := runtimeDiff(t, ck, &cfg, cpu.New(0), llama, prompts)
		t.Logf("F32: llama.cpp vs our runtime without the %s multiplier: %v", w.name, dw)
		if !(dw.maxAbs > 0.05) {
			t.Errorf("our runtime without the %s multiplier is within %v of llama.cpp: the comparison cannot tell it", w.name, dw)
		}
	}
}
