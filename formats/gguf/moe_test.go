package gguf_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/internal/fixtures"
)

// TestCheckRefusesMoE: a Mixtral or Qwen3-MoE config is refused before any
// tensor is read, wrapping ErrUnsupportedModel and naming the config file,
// its model_type and the mixture of experts (llama.cpp's stacked
// ffn_*_exps tensors are not written).
func TestCheckRefusesMoE(t *testing.T) {
	for name, doc := range map[string]map[string]any{"mixtral": fixtures.MixtralConfig(), "qwen3_moe": fixtures.Qwen3MoEConfig()} {
		t.Run(name, func(t *testing.T) {
			raw, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := hfconfig.Parse(raw, "m/config.json")
			if err != nil {
				t.Fatal(err)
			}
			err = gguf.Check(cfg, gguf.ConvertOptions{Type: gguf.TypeF16})
			if !errors.Is(err, gguf.ErrUnsupportedModel) {
				t.Fatalf("got %v, want ErrUnsupportedModel", err)
			}
			for _, want := range []string{`m/config.json: model_type "` + name + `"`, "mixture of experts", "ffn_*_exps"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%q does not name %q", err, want)
				}
			}
		})
	}
}
