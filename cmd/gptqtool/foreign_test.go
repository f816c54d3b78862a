package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/quantpack"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// TestForeignCLI runs the commands on an AWQ checkpoint (quantpack's
// packer) of openchat-tiny's shape: generate gives the ids the equivalent
// GPTQ checkpoint gives, and the GPTQ checkpoint convert writes from it
// too; verify format passes; quantize refuses it as already quantized.
func TestForeignCLI(t *testing.T) {
	src := fixturePath(t, "models/openchat-tiny")
	dir := t.TempDir()
	base := filepath.Join(dir, "fp")
	if _, err := synth.Write(context.Background(), synth.Options{ConfigDir: src, TokenizerDir: src, Out: base, Layers: 2, Seed: 8, DType: "f16", Shards: 1}); err != nil {
		t.Fatal(err)
	}
	cfg, err := hfconfig.Load(base)
	if err != nil {
		t.Fatal(err)
	}
	linears, err := model.QuantLinears(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mods := quantpack.Draw(9, linears, 4, 128, false, false)
	awqDir, ref := filepath.Join(dir, "awq"), filepath.Join(dir, "gptq")
	quantpack.Write(t, base, awqDir, map[string]any{"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": true, "version": "gemm"}, nil, mods, quantpack.AWQ)
	quantpack.Write(t, base, ref, map[string]any{"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": false, "sym": false, "checkpoint_format": "gptq_v2"},
		nil, mods, func(m quantpack.Module) []safetensors.Tensor { return quantpack.GPTQ(m, gptq.FormatV2) })
	converted := filepath.Join(dir, "converted")
	if _, _, err := run(t, "convert", "--in", awqDir, "--out", converted); err != nil {
		t.Fatal(err)
	}
	gen := func(model string) string {
		t.Helper()
		out, _, err := run(t, "generate", "--model", model, "--prompt", "Hello there", "--max-tokens", "8", "--ids", "--temperature", "0")
		if err != nil {
			t.Fatalf("generate --model %s: %v", model, err)
		}
		return out
	}
	want := gen(ref)
	if len(strings.Fields(want)) == 0 {
		t.Fatalf("no ids from the GPTQ checkpoint: %q", want)
	}
	for _, m := range []string{awqDir, converted} {
		if got := gen(m); got != want {
			t.Errorf("generate --model %s: %q, want %q (the GPTQ checkpoint's)", filepath.Base(m), got, want)
		}
	}
	if out, _, err := run(t, "verify", "format", awqDir); err != nil || !strings.Contains(out, "awq checkpoint checked as the GPTQ checkpoint") {
		t.Errorf("verify format: %v\n%s", err, out)
	}
	if _, _, err := run(t, "quantize", "--model", awqDir, "--rtn", "--out", filepath.Join(dir, "q")); err == nil || !strings.Contains(err.Error(), "already an AWQ checkpoint") {
		t.Errorf("quantize of AWQ: err = %v", err)
	}
}
