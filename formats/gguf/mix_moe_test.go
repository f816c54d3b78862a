package gguf

import (
	"testing"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
)

// TestMixLowIQExperts: the 1- and 2-bit IQ file types' rules for a model
// with experts (llama_tensor_get_type_impl's first branch), whose weights
// need an importance matrix: attn_v in Q4_K with 4 or more
// experts whatever the grouped-query attention, attn_k in Q4_K and
// attn_output in Q5_K with 8 experts only.
func TestMixLowIQExperts(t *testing.T) {
	mix, _ := ParseMix("IQ2_XXS")
	for _, tc := range []struct {
		experts                        int
		attnV, attnK, attnOut, ffnGate TensorType
	}{
		{8, TypeQ4_K, TypeQ4_K, TypeQ5_K, TypeIQ2_XXS},
		{16, TypeQ4_K, TypeIQ2_XXS, TypeIQ2_XXS, TypeIQ2_XXS},
	} {
		// 4 heads over 2 KV heads: the dense rule gives attn_v Q2_K.
		cfg := &hfconfig.Config{NumHiddenLayers: 8, NumAttentionHeads: 4, NumKeyValueHeads: 2, HiddenSize: 256,
			MoE: &hfconfig.MoE{Experts: tc.experts, TopK: 2}}
		for name, want := range map[string]TensorType{"blk.3.attn_v.weight": tc.attnV, "blk.3.attn_k.weight": tc.attnK,
			"blk.3.attn_output.weight": tc.attnOut, "blk.3.ffn_gate_exps.weight": tc.ffnGate, "blk.0.ffn_down_exps.weight": TypeQ2_K} {
			if got := mix.typeAt(name, layerOf(name), cfg, true); got != want {
				t.Errorf("%d experts: %s: %s, want %s", tc.experts, name, got, want)
			}
		}
	}
}
