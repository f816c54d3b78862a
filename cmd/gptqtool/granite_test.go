package main

import (
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
)

// TestGraniteCommands runs a random Granite checkpoint (fixtures.Granite:
// embedding_multiplier 12, attention_multiplier 1, residual_multiplier
// 0.22, logits_scaling 8) through the commands: inspect (model_type
// granite, the parameter count equal to the config's, the multipliers
// reported), then modelCommands (granite).
func TestGraniteCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("quantizes a model")
	}
	tok := fixturePath(t, "models/openchat-tiny")
	dir := fixtures.Granite(t, map[string]any{"hidden_size": 128, "intermediate_size": 256, "vocab_size": 32002},
		synth.Options{DType: "f16", Seed: 4, TokenizerDir: tok})
	var rep struct {
		inspectCounts
		Granite map[string]float64 `json:"granite"`
	}
	inspectJSON(t, dir, &rep)
	if !rep.counted("granite") || rep.Granite["embedding_multiplier"] != 12 ||
		rep.Granite["attention_multiplier"] != 1 || rep.Granite["residual_multiplier"] != 0.22 || rep.Granite["logits_scaling"] != 8 {
		t.Errorf("inspect --json: %+v", rep)
	}
	if out, _, err := run(t, "inspect", dir); err != nil || !strings.Contains(out, "multipliers    embeddings ×12, scores ×1, residual adds ×0.22, logits ÷8") {
		t.Errorf("inspect: %v, want the multipliers reported\n%s", err, out)
	}
	modelCommands(t, dir, "granite")
}
