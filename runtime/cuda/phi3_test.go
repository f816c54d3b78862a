package cuda_test

import (
	"math"
	"testing"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
)

// phi3Synth writes a random-weight Phi-3 checkpoint (fixtures.Phi3: fused
// qkv_proj and gate_up_proj, read as their parts) with 2 heads of 128
// over hidden 256, one KV head, a sliding window of 100 positions and a
// longrope scaling past an original context of 128: 64 short and 64 long
// factors between 1 and about 4, and longrope's attention factor.
func phi3Synth(t *testing.T, dtype string) string {
	t.Helper()
	short, long := make([]float64, 64), make([]float64, 64)
	for i := range short {
		short[i] = 1 + 0.5*float64(i)/63
		long[i] = 1 + 3*math.Sqrt(float64(i)/63)
	}
	return fixtures.Phi3(t, map[string]any{"hidden_size": 256, "intermediate_size": 896, "num_attention_heads": 2,
		"num_key_value_heads": 1, "vocab_size": 2000, "sliding_window": 100, "max_position_embeddings": 1024,
		"original_max_position_embeddings": 128,
		"rope_scaling":                     map[string]any{"type": "longrope", "short_factor": short, "long_factor": long}},
		synth.Options{DType: dtype, Seed: 11})
}

// TestPhi3DecodeOnDevice decodes three sequences of a Phi-3 checkpoint
// (phi3Synth: the fused modules read as their parts, longrope's table and
// attention factor, a window of 100 positions that the longest sequence
// passes) through the paged decode step in fp16 and bf16, with CUDA
// graphs and op by op (decodeMatchesCPU): the same kernels as llama's, fed
// the scaled frequencies and the windowed cache.
func TestPhi3DecodeOnDevice(t *testing.T) {
	halfDecodeMatchesCPU(t, phi3Synth)
}

// phi4MiniSynth is phi3Synth with Phi-4-mini's partial RoPE: 96 of each
// head's 128 channels rotated (partial_rotary_factor 0.75), 48 short and
// 48 long factors, longrope's attention factor on the rotated channels
// alone.
func phi4MiniSynth(t *testing.T, dtype string) string {
	t.Helper()
	short, long := make([]float64, 48), make([]float64, 48)
	for i := range short {
		short[i] = 1 + 0.5*float64(i)/47
		long[i] = 1 + 3*math.Sqrt(float64(i)/47)
	}
	return fixtures.Phi3(t, map[string]any{"hidden_size": 256, "intermediate_size": 896, "num_attention_heads": 2,
		"num_key_value_heads": 1, "vocab_size": 2000, "sliding_window": 100, "max_position_embeddings": 1024,
		"original_max_position_embeddings": 128, "partial_rotary_factor": 0.75,
		"rope_scaling": map[string]any{"type": "longrope", "short_factor": short, "long_factor": long}},
		synth.Options{DType: dtype, Seed: 13})
}

// TestPhi4MiniDecodeOnDevice is TestPhi3DecodeOnDevice on phi4MiniSynth:
// rope_seq (prefill) and rope_store (decode steps) rotate the first 96
// channels and keep the rest (k's stored to the cache too), rope_tail
// scales q's kept channels by 1/af², in fp16 and bf16, with CUDA graphs
// and op by op, against the fp32 CPU.
func TestPhi4MiniDecodeOnDevice(t *testing.T) {
	halfDecodeMatchesCPU(t, phi4MiniSynth)
}
