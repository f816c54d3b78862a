package quantize_test

import (
	"context"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// TestCollectImportanceRefusesMoE: the importance matrix of a small
// Mixtral is refused before any sample runs (progress is never called),
// naming its config.json and model_type.
func TestCollectImportanceRefusesMoE(t *testing.T) {
	dir := fixtures.Mixtral(t, nil, synth.Options{DType: "f32", Seed: 1})
	m, err := model.Load(dir, cpu.New(1))
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	_, err = quantize.CollectImportance(context.Background(), m, []quantize.Sample{{IDs: []int{1, 2, 3}}}, func(int, int) { ran = true })
	if err == nil {
		t.Fatal("CollectImportance of a mixture-of-experts model: no error")
	}
	for _, want := range []string{m.Config.File, "model_type mixtral", "mixture-of-experts models are not supported"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not name %q", err, want)
		}
	}
	if ran {
		t.Error("a sample ran before the refusal")
	}
}
