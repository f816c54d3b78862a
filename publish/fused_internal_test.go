package publish

import (
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/quantize"
)

// TestCheckFusedPerms: the parts of a fused module quantized in different
// act orders are refused naming both and the fused module; equal orders,
// no act order, and another model's modules pass.
func TestCheckFusedPerms(t *testing.T) {
	cfg, err := hfconfig.Parse([]byte(`{"model_type": "phi3", "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
		"num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 8}`), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	mods := func(kPerm []int) []quantize.ModuleResult {
		var out []quantize.ModuleResult
		for _, m := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj"} {
			p := []int{1, 0, 2}
			if m == "self_attn.k_proj" {
				p = kPerm
			}
			out = append(out, quantize.ModuleResult{Module: m, Result: &quantize.Result{Perm: p}})
		}
		return out
	}
	if err := checkFusedPerms(cfg, mods([]int{1, 0, 2})); err != nil {
		t.Errorf("equal orders: %v", err)
	}
	err = checkFusedPerms(cfg, mods([]int{0, 1, 2}))
	if want := "model.layers.0.self_attn.q_proj and model.layers.0.self_attn.k_proj, parts of model.layers.0.self_attn.qkv_proj, were quantized in different act orders"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("k_proj in another order: err = %v, want %q", err, want)
	}
	llama := *cfg
	llama.ModelType = "llama"
	if err := checkFusedPerms(&llama, mods([]int{0, 1, 2})); err != nil {
		t.Errorf("llama: %v", err)
	}
}
