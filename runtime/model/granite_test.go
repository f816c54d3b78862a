package model

import (
	"testing"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
)

// TestGraniteMatchesReference runs a small random-weight Granite
// checkpoint (fixtures.Granite: embedding_multiplier 12,
// attention_multiplier 1, residual_multiplier 0.22, logits_scaling 8)
// on the CPU backend as gemmaMatches does (the forward, the paged decode
// steps, layer by layer), against refForward in float64; the reference
// without any one multiplier is far off.
func TestGraniteMatchesReference(t *testing.T) {
	dir := fixtures.Granite(t, nil, synth.Options{DType: "f32", Seed: 11})
	ref := loadRef(t, dir)
	if g := ref.cfg.Granite; g == nil || g.EmbeddingMultiplier != 12 || g.AttentionMultiplier != 1 || g.ResidualMultiplier != 0.22 ||
		g.LogitsScaling != 8 {
		t.Fatalf("fixture: granite %+v", ref.cfg.Granite)
	}
	want := ref.forward(qwen2IDs, false)
	for _, drop := range []string{"embedding", "attention", "residual", "logits"} {
		wrong := *ref
		wrong.dropGranite = drop
		if d := nmseRows(splitRows(flatten(wrong.forward(qwen2IDs, false)), ref.cfg.VocabSize), want); !(d > 1e-3) {
			t.Errorf("the reference without the %s multiplier is within nmse %.3g: the test could not tell", drop, d)
		}
	}
	gemmaMatches(t, dir, want)
}
