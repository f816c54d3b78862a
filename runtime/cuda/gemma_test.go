package cuda_test

import (
	"testing"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
)

// gemmaSynth writes a random-weight Gemma checkpoint (fixtures.Gemma, the
// first version: two norms a layer of 1 + w, GELU-tanh MLP and scaled
// embeddings, no windows, caps or post norms) with 2 heads of 128 over
// hidden 256, one KV head (multi-query, as gemma-2b), 4 layers.
func gemmaSynth(t *testing.T, dtype string) string {
	t.Helper()
	return fixtures.Gemma(t, map[string]any{"hidden_size": 256, "intermediate_size": 896, "num_attention_heads": 2,
		"num_key_value_heads": 1, "head_dim": 128, "vocab_size": 2000, "max_position_embeddings": 1024},
		synth.Options{DType: dtype, Seed: 19})
}

// graniteSynth writes a random-weight Granite checkpoint (fixtures.Granite:
// Llama's layer with embedding_multiplier 12, attention_multiplier 1,
// residual_multiplier 0.22 and logits_scaling 8) with 2 heads of 128 over
// hidden 256, one KV head, 4 layers.
func graniteSynth(t *testing.T, dtype string) string {
	t.Helper()
	return fixtures.Granite(t, map[string]any{"hidden_size": 256, "intermediate_size": 896, "num_attention_heads": 2,
		"num_key_value_heads": 1, "vocab_size": 2000, "max_position_embeddings": 1024, "attention_multiplier": 0.03125},
		synth.Options{DType: dtype, Seed: 23})
}

// TestGraniteDecodeOnDevice decodes three sequences of a Granite
// checkpoint (graniteSynth) as TestGemmaDecodeOnDevice does: the
// multipliers in unfusedDecodeOps' op-by-op step (Scale on the embeddings,
// the residual adds and the logits).
func TestGraniteDecodeOnDevice(t *testing.T) {
	halfDecodeMatchesCPU(t, graniteSynth)
}

// olmo2Synth writes a random-weight OLMo 2 checkpoint (fixtures.Olmo2: no
// input norms, the sublayers' outputs normalized, q/k norms over the whole
// projections, an untied head) with 2 heads of 128 over hidden 256, one
// KV head, 4 layers.
func olmo2Synth(t *testing.T, dtype string) string {
	t.Helper()
	return fixtures.Olmo2(t, map[string]any{"hidden_size": 256, "intermediate_size": 896, "num_attention_heads": 2,
		"num_key_value_heads": 1, "vocab_size": 2000, "max_position_embeddings": 1024}, synth.Options{DType: dtype, Seed: 29})
}

// TestOlmo2DecodeOnDevice decodes three sequences of an OLMo 2 checkpoint
// (olmo2Synth) as TestGemmaDecodeOnDevice does: unfusedDecodeOps with no
// input norms (copies) and the q/k norms over whole rows.
func TestOlmo2DecodeOnDevice(t *testing.T) {
	halfDecodeMatchesCPU(t, olmo2Synth)
}

// TestGemmaDecodeOnDevice decodes three sequences of a Gemma checkpoint
// (gemmaSynth) through the paged decode step in fp16 and bf16, with CUDA
// graphs and op by op (decodeMatchesCPU): unfusedDecodeOps without the post
// norms.
func TestGemmaDecodeOnDevice(t *testing.T) {
	halfDecodeMatchesCPU(t, gemmaSynth)
}
