package verify_test

import (
	"testing"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/verify"
)

// TestInspectPhi3: inspect counts a phi3 checkpoint's fused qkv_proj and
// gate_up_proj as their parts and finds no problem; the parameters it
// counts from the tensors equal the config's count (hfconfig's test checks
// that count against Phi-3-mini-4k-instruct's published 3,821,079,552).
func TestInspectPhi3(t *testing.T) {
	dir := fixtures.Phi3(t, nil, synth.Options{DType: "bf16", Seed: 1})
	r, err := verify.Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	// By hand: embed and lm_head 2·256·64 = 32,768; a layer's qkv 128·64
	// + o 64·64 + gate_up 192·64 + down 64·96 + norms 128 = 30,848, x2 =
	// 61,696; final norm 64.
	const want = 32_768 + 61_696 + 64
	if r.NumParameters != want || r.ConfigParameters != want || len(r.Problems) != 0 || r.ModelType != "phi3" {
		t.Errorf("parameters %d (config %d), problems %v, model_type %q; want %d, none, phi3", r.NumParameters, r.ConfigParameters, r.Problems, r.ModelType, want)
	}
	if r.RotaryDim != 0 || r.PartialRotaryFactor != 0 {
		t.Errorf("whole heads rotated: rotary_dim %d, partial_rotary_factor %g, want neither", r.RotaryDim, r.PartialRotaryFactor)
	}
	// Phi-4-mini's partial RoPE: 12 of head_dim 16, the same parameters.
	r, err = verify.Inspect(fixtures.Phi3(t, map[string]any{"partial_rotary_factor": 0.75}, synth.Options{DType: "bf16", Seed: 1}))
	if err != nil {
		t.Fatal(err)
	}
	if r.RotaryDim != 12 || r.PartialRotaryFactor != 0.75 || r.NumParameters != want || len(r.Problems) != 0 {
		t.Errorf("partial: rotary_dim %d, partial_rotary_factor %g, parameters %d, problems %v; want 12, 0.75, %d, none", r.RotaryDim, r.PartialRotaryFactor, r.NumParameters, r.Problems, want)
	}
}
