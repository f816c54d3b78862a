package main

import (
	"testing"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
)

// TestOlmo2Commands runs a random OLMo 2 checkpoint (fixtures.Olmo2: no
// input norms, the sublayers' outputs normalized, q/k norms over the whole
// projections) through the commands: inspect (model_type olmo2, the
// parameter count equal to the config's), then modelCommands (olmo2).
func TestOlmo2Commands(t *testing.T) {
	if testing.Short() {
		t.Skip("quantizes a model")
	}
	tok := fixturePath(t, "models/openchat-tiny")
	dir := fixtures.Olmo2(t, map[string]any{"hidden_size": 128, "intermediate_size": 256, "vocab_size": 32002},
		synth.Options{DType: "f16", Seed: 4, TokenizerDir: tok})
	var rep inspectCounts
	inspectJSON(t, dir, &rep)
	if !rep.counted("olmo2") {
		t.Errorf("inspect --json: %+v", rep)
	}
	modelCommands(t, dir, "olmo2")
}
