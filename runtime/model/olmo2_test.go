package model

import (
	"testing"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
)

// TestOlmo2MatchesReference runs a small random-weight OLMo 2 checkpoint
// (fixtures.Olmo2: no input norms, the sublayers' outputs normalized, q
// and k normalized over their whole projections) on the CPU backend as
// gemmaMatches does (the forward, the paged decode steps, layer by layer),
// against refForward in float64; the reference without the q/k norms, or
// with them after RoPE, is far off.
func TestOlmo2MatchesReference(t *testing.T) {
	dir := fixtures.Olmo2(t, nil, synth.Options{DType: "f32", Seed: 13})
	ref := loadRef(t, dir)
	if _, ok := ref.t["model.layers.0.input_layernorm.weight"]; ok || len(ref.t["model.layers.0.self_attn.q_norm.weight"]) != 64 ||
		len(ref.t["model.layers.0.self_attn.k_norm.weight"]) != 32 || len(ref.t["model.layers.0.post_feedforward_layernorm.weight"]) != 64 {
		t.Fatal("fixture: not OLMo 2's norms")
	}
	want := ref.forward(qwen2IDs, false)
	for _, at := range []qkNormAt{qkNone, qkAfterRoPE} {
		wrong := *ref
		wrong.qkNorm = at
		if d := nmseRows(splitRows(flatten(wrong.forward(qwen2IDs, false)), ref.cfg.VocabSize), want); !(d > 1e-3) {
			t.Errorf("the reference with the q/k norms at %d is within nmse %.3g: the test could not tell", at, d)
		}
	}
	gemmaMatches(t, dir, want)
}
