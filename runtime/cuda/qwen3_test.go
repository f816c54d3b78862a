package cuda_test

import (
	"maps"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
)

// qwen3Synth writes a random-weight Qwen3 checkpoint (per-head q/k norms)
// of Qwen3-0.6B's attention proportions at openchat-tiny's width: hidden
// 256, 4 heads of 128 (q 512 wide, not hidden) over 2 KV heads,
// intermediate 896, 2 layers, vocab 2000, with the keys of edit: dtype
// "f32", "f16" or "bf16", or with q a GPTQ one (f16 besides).
func qwen3Synth(t *testing.T, dtype string, q *gptq.QuantizeConfig, edit map[string]any) string {
	t.Helper()
	e := map[string]any{"hidden_size": 256, "intermediate_size": 896, "num_attention_heads": 4,
		"num_key_value_heads": 2, "head_dim": 128, "vocab_size": 2000}
	maps.Copy(e, edit)
	return fixtures.Qwen3(t, e, synth.Options{DType: dtype, Seed: 11, GPTQ: q})
}

// TestQwen3DecodeOnDevice decodes three sequences of Qwen3 checkpoints
// through the paged decode step, with CUDA graphs and op by op: 4-bit
// act-order GPTQ ones in fp16 (without and with attention_bias), whose
// q/k/v are one fused quantized product that must not rotate in its
// epilogue (the per-head q/k norms, and the biases, come first) and so
// take the product, AddBias where biased, the RMSNorm of each head over a
// Reshape of q and of k, then RoPEStore; and a bf16 one. Replayed and
// op-by-op steps must agree exactly, and the last step match the fp32 CPU
// reference of each sequence alone (the CPU path that
// runtime/model's TestQwen3MatchesReference holds to float64).
func TestQwen3DecodeOnDevice(t *testing.T) {
	b := gputest.Backend(t)
	q := gptq.DefaultQuantizeConfig()
	q.Bits, q.GroupSize, q.DescAct = 4, 128, true
	for _, tc := range []struct {
		name string
		dir  string
		dt   runtime.DType
	}{
		{"gptq-4bit", qwen3Synth(t, "", &q, nil), runtime.F16},
		{"gptq-4bit-attention_bias", qwen3Synth(t, "", &q, map[string]any{"attention_bias": true}), runtime.F16},
		{"bf16", qwen3Synth(t, "bf16", nil, nil), runtime.BF16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			decodeMatchesCPU(t, b, tc.dir, tc.dt)
		})
	}
}
