package publish_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/publish"
)

// TestPhi3Refused: quantizing a phi3 checkpoint and converting one (to
// another dtype or to GGUF) are refused as not implemented, naming the
// model type, before anything is written: their fused qkv_proj and
// gate_up_proj have no GPTQ or copy path yet.
func TestPhi3Refused(t *testing.T) {
	src := fixtures.Phi3(t, nil, synth.Options{DType: "f32", Seed: 1})
	for _, tc := range []struct {
		name string
		run  func(out string) error
	}{
		{"quantize", func(out string) error {
			_, err := publish.Quantize(context.Background(), publish.RunOptions{ModelDir: src, Out: out,
				Branches: []publish.Branch{{Name: "main", Bits: 4, GroupSize: 32, Damp: 0.1}}, Sym: true})
			return err
		}},
		{"convert", func(out string) error {
			_, err := publish.Convert(context.Background(), publish.ConvertOptions{In: src, Out: out, DType: "bf16"})
			return err
		}},
		{"convert gguf", func(out string) error {
			_, err := publish.Convert(context.Background(), publish.ConvertOptions{In: src, Out: out + ".gguf", GGUF: "f32"})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			err := tc.run(out)
			if !errors.Is(err, hfconfig.ErrUnsupported) || !strings.Contains(err.Error(), "config.json: model_type phi3") {
				t.Fatalf("err = %v, want phi3 refused as unsupported, naming the config and model type", err)
			}
			for _, p := range []string{out, out + ".gguf"} {
				if _, serr := os.Stat(p); !errors.Is(serr, fs.ErrNotExist) {
					t.Errorf("%s written (stat: %v)", p, serr)
				}
			}
		})
	}
}
