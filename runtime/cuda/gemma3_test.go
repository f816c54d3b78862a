package cuda_test

import (
	"testing"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
)

// gemma3Synth writes a random-weight Gemma 3 text checkpoint
// (fixtures.Gemma3: four norms a layer of 1 + w, q/k norms, GELU-tanh
// MLP, scaled embeddings) with 2 heads of 128 over hidden 256, one KV
// head, 4 layers alternating sliding (a window of 100, RoPE base 10000)
// and full attention (rope_theta 1e6 with Gemma 3 4B's linear scaling
// of 8), query_pre_attn_scalar 128.
func gemma3Synth(t *testing.T, dtype string) string {
	t.Helper()
	return fixtures.Gemma3(t, map[string]any{"hidden_size": 256, "intermediate_size": 896, "num_attention_heads": 2,
		"num_key_value_heads": 1, "head_dim": 128, "query_pre_attn_scalar": 128, "vocab_size": 2000, "sliding_window": 100,
		"max_position_embeddings": 1024, "rope_scaling": map[string]any{"rope_type": "linear", "factor": 8.0}},
		synth.Options{DType: dtype, Seed: 13})
}

// TestGemma3DecodeOnDevice decodes three sequences of a Gemma 3 text
// checkpoint (gemma3Synth: per-layer windows and RoPE tables, Gemma's
// norms, GELU-tanh GLU and embedding scale) through the paged decode step
// in fp16 and bf16, with CUDA graphs and op by op (decodeMatchesCPU): the
// step's fusions are off for Gemma's layers, the norm.cu and
// elementwise.cu kernels of its own run.
func TestGemma3DecodeOnDevice(t *testing.T) {
	halfDecodeMatchesCPU(t, gemma3Synth)
}
