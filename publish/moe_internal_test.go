package publish

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/internal/fixtures"
)

// TestLinearShapesMoE: the shapes exllamaOK hands gptq.Loaders for a
// Qwen3-MoE config are each sparse layer's 4 attention Linears and 16
// experts' (48 channels: down_proj K 48) and the dense last layer's MLP
// (intermediate_size 128), not a dense MLP in every layer.
func TestLinearShapesMoE(t *testing.T) {
	raw, err := json.Marshal(fixtures.Qwen3MoEConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := hfconfig.Parse(raw, "config.json")
	if err != nil {
		t.Fatal(err)
	}
	shapes := linearShapes(cfg, cfg.NumHiddenLayers)
	if want := 2*(4+16*3) + 7; len(shapes) != want {
		t.Fatalf("%d shapes, want %d", len(shapes), want)
	}
	for _, want := range []gptq.LinearShape{
		{Name: "model.layers.0.mlp.experts.15.down_proj", K: 48, N: 64},
		{Name: "model.layers.1.mlp.experts.0.gate_proj", K: 64, N: 48},
		{Name: "model.layers.2.mlp.down_proj", K: 128, N: 64},
	} {
		if !slices.Contains(shapes, want) {
			t.Errorf("no %+v among the shapes", want)
		}
	}
	if slices.ContainsFunc(shapes, func(s gptq.LinearShape) bool { return s.Name == "model.layers.0.mlp.gate_proj" }) {
		t.Error("a dense mlp.gate_proj in sparse layer 0")
	}
}
