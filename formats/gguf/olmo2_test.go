package gguf_test

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// olmo2Checkpoint writes a random-weight OLMo 2 checkpoint
// (fixtures.Olmo2, fp32: no input norms, the sublayers' outputs
// normalized, q/k norms over the whole projections, 4 heads over 2 KV
// heads, an untied head) with Qwen's tokenizer, 6 layers.
func olmo2Checkpoint(t *testing.T, edit map[string]any) *checkpoint {
	t.Helper()
	return familyCheckpoint(t, fixtures.Olmo2, 14, map[string]any{"num_hidden_layers": 6}, edit)
}

// TestConvertOlmo2 converts an OLMo 2 checkpoint: general.architecture
// olmo2 with the llama keys under olmo2.*, the q/k norms as attn_q_norm
// [heads·head_dim] and attn_k_norm [kv_heads·head_dim], the output norms
// as post_attention_norm and post_ffw_norm, no attn_norm or ffn_norm; an
// F32 file read back runs as the checkpoint bit for bit; a RoPE scaling,
// attention biases, a head_dim other than hidden/heads and a tied head
// (llama.cpp's olmo2 requires an output tensor) are refused.
func TestConvertOlmo2(t *testing.T) {
	ck := olmo2Checkpoint(t, nil)
	c := convertWith(t, ck, gguf.TypeF16, gguf.ConvertOptions{Type: gguf.TypeF16})
	hasKVs(t, c, map[string]any{
		"general.architecture": "olmo2", "olmo2.block_count": uint32(6), "olmo2.embedding_length": uint32(64),
		"olmo2.attention.head_count": uint32(4), "olmo2.attention.head_count_kv": uint32(2), "olmo2.rope.freq_base": float32(500000),
		"olmo2.attention.layer_norm_rms_epsilon": float32(1e-6),
	})
	for name, n := range map[string]int{"blk.2.attn_q_norm.weight": 64, "blk.2.attn_k_norm.weight": 32, "blk.2.post_attention_norm.weight": 64,
		"blk.2.post_ffw_norm.weight": 64, "output.weight": 0} {
		ti, ok := c.file.Tensor(name)
		if !ok || (n > 0 && (len(ti.Shape) != 1 || ti.Shape[0] != n)) {
			t.Errorf("tensor %s: %+v (%v), want [%d]", name, ti, ok, n)
		}
	}
	for _, name := range []string{"blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"} {
		if _, ok := c.file.Tensor(name); ok {
			t.Errorf("%s in an olmo2 file", name)
		}
	}
	t.Run("read back", func(t *testing.T) {
		hc := readsBack(t, ck)
		if hc.ModelType != "olmo2" || hc.TieWordEmbeddings || hc.HeadDim != 16 || hc.NumKeyValueHeads != 2 {
			t.Fatalf("HFConfig: %s, tied %v, head_dim %d, kv heads %d", hc.ModelType, hc.TieWordEmbeddings, hc.HeadDim, hc.NumKeyValueHeads)
		}
	})
	for _, tc := range []struct {
		name string
		edit map[string]any
		want string
	}{
		{"scaling", map[string]any{"rope_scaling": map[string]any{"rope_type": "linear", "factor": 2.0}}, "no OLMo 2 config has one"},
		{"attention bias", map[string]any{"attention_bias": true}, "attention_bias true"},
		{"head_dim", map[string]any{"head_dim": 32}, "head_dim 32"},
		{"tied", map[string]any{"tie_word_embeddings": true}, "tie_word_embeddings true"},
	} {
		t.Run(tc.name, func(t *testing.T) { convertRefused(t, olmo2Checkpoint(t, tc.edit), tc.want) })
	}
}

// TestLlamaCppOlmo2 loads an F32 olmo2 file in llama.cpp (node-llama-cpp)
// and compares its next-token log-probabilities with our runtime on the
// checkpoint: llama.cpp's olmo2 graph (no input norms, q/k norms over the
// whole projections, the sublayers' outputs normalized, RoPE by halves)
// matches our runtime; the same file with its q/k norm weights set to one
// (norms with a unit scale) is far off, so the comparison tells them.
func TestLlamaCppOlmo2(t *testing.T) {
	node := llamaCppAvailable(t)
	ck := olmo2Checkpoint(t, nil)
	llama, prompts := llamaCppF32(t, node, ck)
	d := runtimeDiff(t, ck, ck.cfg, cpu.New(0), llama, prompts)
	t.Logf("F32: llama.cpp vs our runtime: %v", d)
	// (Measured: max|Δlogp| 6.8e-6, NMSE 5.5e-13.)
	tolerance{1e-3, 1e-8, 1e-8}.check(t, "llama.cpp vs our runtime on F32", d)
	// The same weights with unit q/k norm scales.
	q2 := qwen2Checkpoint(t)
	dir := fixtures.Olmo2(t, map[string]any{"vocab_size": q2.cfg.VocabSize, "num_hidden_layers": 6}, synth.Options{DType: "f32", Seed: 14, TokenizerDir: q2.dir})
	fixtures.RewriteTensors(t, dir, func(tn *safetensors.Tensor) bool {
		if strings.HasSuffix(tn.Name, "q_norm.weight") || strings.HasSuffix(tn.Name, "k_norm.weight") {
			for i := 0; i < len(tn.Data); i += 4 {
				binary.LittleEndian.PutUint32(tn.Data[i:], math.Float32bits(1))
			}
		}
		return true
	})
	unit := openCheckpointDir(t, dir)
	du := runtimeDiff(t, unit, unit.cfg, cpu.New(0), llama, prompts)
	t.Logf("F32: llama.cpp vs our runtime with unit q/k norm scales: %v", du)
	if !(du.maxAbs > 0.05) {
		t.Errorf("our runtime with unit q/k norm scales is within %v of llama.cpp: the comparison cannot tell them", du)
	}
}
