package model

import (
	"math"
	"testing"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
)

// TestEmbedMatchesModel: Embed, the GPTQ reference driver's layer-0 input,
// is the model's own (its model.embed intermediate), Gemma's and Granite's
// embedding scales included, as Llama's (no scale).
func TestEmbedMatchesModel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(t *testing.T) string
		scale float64 // (the fixture's: sqrt(64), embedding_multiplier)
	}{
		{"gemma", func(t *testing.T) string { return fixtures.Gemma(t, nil, synth.Options{DType: "f32", Seed: 13}) }, 8},
		{"gemma2", func(t *testing.T) string { return fixtures.Gemma2(t, nil, synth.Options{DType: "f32", Seed: 13}) }, 8},
		{"granite", func(t *testing.T) string { return fixtures.Granite(t, nil, synth.Options{DType: "f32", Seed: 13}) }, 12},
		{"qwen2", func(t *testing.T) string { return fixtures.Qwen2(t, nil, synth.Options{DType: "f32", Seed: 13}) }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.write(t)
			m := loadModel(t, dir)
			var want []float32
			if _, err := m.Forward(qwen2IDs, nil, func(name string, v []float32, _, _ int) {
				if name == "model.embed" {
					want = append([]float32(nil), v...)
				}
			}); err != nil {
				t.Fatal(err)
			}
			set, cfg := fixtures.OpenCheckpoint(t, dir)
			got, err := Embed(set, cfg, qwen2IDs)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("Embed: %d values, model.embed %d", len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("Embed[%d] %g, model.embed %g (ratio %g)", i, got[i], want[i], want[i]/got[i])
				}
			}
			// The scale is the fixture's: the raw row times it.
			tn, err := set.Tensor("model.embed_tokens.weight")
			if err != nil {
				t.Fatal(err)
			}
			raw, err := tn.Float32()
			if err != nil {
				t.Fatal(err)
			}
			id, h := qwen2IDs[0], cfg.HiddenSize
			if r := float64(got[0]) / float64(raw[id*h]); math.Abs(r-tc.scale) > 1e-5*tc.scale {
				t.Errorf("Embed's scale %g, want %g", r, tc.scale)
			}
		})
	}
}
