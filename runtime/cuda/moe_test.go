package cuda_test

import (
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
)

// TestMoEDecodeOnDevice decodes three sequences of mixture-of-experts
// checkpoints through the paged decode step on the device (op by op: a
// model that routes on the host mid-step is never recorded, so the
// "replayed" steps of decodeMatchesCPU run op by op too) against the fp32
// CPU reference: a 4-bit act-order GPTQ Mixtral (8 experts, 2 a token) in
// fp16 and a bf16 Qwen3-MoE (16 experts, 4 a token, q/k norms, a dense
// last layer). The experts' rows are gathered, scaled (ScaleRows) and
// added back by the backend's ops.
func TestMoEDecodeOnDevice(t *testing.T) {
	b := gputest.Backend(t)
	q := gptq.DefaultQuantizeConfig()
	q.Bits, q.GroupSize, q.DescAct = 4, 128, true
	shape := map[string]any{"hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 2000}
	mixtral := map[string]any{"intermediate_size": 512}
	qwen := map[string]any{"moe_intermediate_size": 256, "head_dim": 64}
	for k, v := range shape {
		mixtral[k], qwen[k] = v, v
	}
	for _, tc := range []struct {
		name string
		dir  string
		dt   runtime.DType
	}{
		{"mixtral-gptq-4bit", fixtures.Mixtral(t, mixtral, synth.Options{Seed: 11, GPTQ: &q}), runtime.F16},
		{"qwen3_moe-bf16", fixtures.Qwen3MoE(t, qwen, synth.Options{DType: "bf16", Seed: 11}), runtime.BF16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			decodeMatchesCPU(t, b, tc.dir, tc.dt)
		})
	}
}
