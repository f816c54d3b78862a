package cuda_test

import (
	"testing"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
)

// gemma2Synth writes a random-weight Gemma 2 checkpoint (fixtures.Gemma2:
// Gemma's four norms a layer of 1 + w, GELU-tanh MLP and scaled
// embeddings, no q/k norms; the logits soft-capped at 3) with 2 heads of
// 128 over hidden 256, one KV head, 4 layers alternating sliding (a window
// of 100) and full attention, all rotating by rope_theta,
// query_pre_attn_scalar 128, and the scores capped at 0.5 (at fixtures'
// 2 the cap moves this model's logits by an NMSE of 3e-4 only, under the
// bf16 tolerance).
func gemma2Synth(t *testing.T, dtype string) string {
	t.Helper()
	return fixtures.Gemma2(t, map[string]any{"hidden_size": 256, "intermediate_size": 896, "num_attention_heads": 2,
		"num_key_value_heads": 1, "head_dim": 128, "query_pre_attn_scalar": 128, "vocab_size": 2000, "sliding_window": 100,
		"max_position_embeddings": 1024, "attn_logit_softcapping": 0.5}, synth.Options{DType: dtype, Seed: 17})
}

// TestGemma2DecodeOnDevice decodes three sequences of a Gemma 2
// checkpoint (gemma2Synth) through the paged decode step in fp16 and
// bf16, with CUDA graphs and op by op (decodeMatchesCPU): the soft-capped
// scores in the tensor-core paged attention and the flash prefill, the
// soft-capped logits in elementwise.cu's softcap.
func TestGemma2DecodeOnDevice(t *testing.T) {
	halfDecodeMatchesCPU(t, gemma2Synth)
}
