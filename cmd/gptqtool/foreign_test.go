package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
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

// TestForeignQwen2CLI runs the commands on a random Qwen2 (q/k/v biases
// beside the packed weights) stored as AWQ and as compressed-tensors:
// generate gives the ids of the same codes stored as GPTQ v2 and not those
// of that checkpoint with its biases zeroed, serve's greedy completion is
// generate's text, verify format passes, verify kl against the GPTQ
// checkpoint is 0, and convert writes a GPTQ checkpoint that generates
// alike and a GGUF file.
func TestForeignQwen2CLI(t *testing.T) {
	tok := fixturePath(t, "models/openchat-tiny")
	base := fixtures.Qwen2(t, map[string]any{"vocab_size": 32002}, synth.Options{DType: "f16", Seed: 12, TokenizerDir: tok})
	cfg, err := hfconfig.Load(base)
	if err != nil {
		t.Fatal(err)
	}
	linears, err := model.QuantLinears(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mods := quantpack.Draw(3, linears, 4, 64, false, false)
	dir := t.TempDir()
	gptqBlock := map[string]any{"quant_method": "gptq", "bits": 4, "group_size": 64, "desc_act": false, "sym": false, "checkpoint_format": "gptq_v2"}
	packGPTQ := func(m quantpack.Module) []safetensors.Tensor { return quantpack.GPTQ(m, gptq.FormatV2) }
	ref, noBias := filepath.Join(dir, "gptq"), filepath.Join(dir, "nobias")
	quantpack.Write(t, base, ref, gptqBlock, nil, mods, packGPTQ)
	quantpack.Write(t, base, noBias, gptqBlock, nil, mods, packGPTQ)
	fixtures.RewriteTensors(t, noBias, func(tn *safetensors.Tensor) bool {
		if strings.HasSuffix(tn.Name, ".bias") {
			clear(tn.Data)
		}
		return true
	})
	gen := func(m string) generateJSON {
		t.Helper()
		doc, _ := generateJSONOut(t, "--model", m, "--prompt", "Once upon a time", "--max-tokens", "8", "--temperature", "0", "--device", "cpu", "--dtype", "f32")
		return doc
	}
	want := gen(ref)
	if len(want.IDs) == 0 {
		t.Fatal("no ids from the GPTQ checkpoint")
	}
	if slices.Equal(gen(noBias).IDs, want.IDs) {
		t.Fatal("the checkpoint without its biases generates the same ids: the test cannot tell a dropped bias")
	}
	for _, tc := range []struct {
		name  string
		block map[string]any
		pack  func(quantpack.Module) []safetensors.Tensor
	}{
		{"awq", map[string]any{"quant_method": "awq", "bits": 4, "group_size": 64, "zero_point": true, "version": "gemm"}, quantpack.AWQ},
		{"compressed-tensors", map[string]any{"quant_method": "compressed-tensors", "format": "pack-quantized",
			"config_groups": map[string]any{"group_0": map[string]any{"targets": []string{"Linear"},
				"weights": map[string]any{"num_bits": 4, "symmetric": false, "strategy": "group", "group_size": 64}}},
			"ignore": []string{"lm_head"}},
			func(m quantpack.Module) []safetensors.Tensor { return quantpack.Compressed(m, false) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := filepath.Join(t.TempDir(), tc.name)
			quantpack.Write(t, base, in, tc.block, nil, mods, tc.pack)
			if got := gen(in); !slices.Equal(got.IDs, want.IDs) {
				t.Errorf("generate: %v, want the GPTQ checkpoint's %v", got.IDs, want.IDs)
			}
			if out, _, err := run(t, "verify", "format", in); err != nil || !strings.Contains(out, tc.name+" checkpoint checked as the GPTQ checkpoint") {
				t.Errorf("verify format: %v\n%s", err, out)
			}
			text := foxText(t, 20)
			if kl := meanKL(t, "--model", in, "--baseline", ref, "--text", text, "--ctx", "64", "--device", "cpu"); kl != 0 {
				t.Errorf("verify kl against the GPTQ checkpoint: mean KL %g, want 0", kl)
			}
			p := startServe(t, in, "--dtype", "f32")
			resp, err := http.Post(p.url+"/v1/completions", "application/json",
				strings.NewReader(`{"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}`))
			if err != nil {
				t.Fatal(err)
			}
			var comp struct {
				Choices []struct {
					Text string `json:"text"`
				} `json:"choices"`
			}
			err = json.NewDecoder(resp.Body).Decode(&comp)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || len(comp.Choices) != 1 || comp.Choices[0].Text != want.Text {
				t.Errorf("serve: status %d, %v, %+v: want generate's text %q", resp.StatusCode, err, comp, want.Text)
			}
			converted := filepath.Join(t.TempDir(), "gptq")
			if _, stderr, err := run(t, "convert", "--in", in, "--out", converted); err != nil {
				t.Fatalf("convert: %v\n%s", err, stderr)
			}
			if got := gen(converted); !slices.Equal(got.IDs, want.IDs) {
				t.Errorf("generate on the converted GPTQ checkpoint: %v, want %v", got.IDs, want.IDs)
			}
			if _, stderr, err := run(t, "convert", "--in", in, "--out", filepath.Join(t.TempDir(), "m.gguf"), "--gguf", "q8_0"); err != nil {
				t.Fatalf("convert --gguf: %v\n%s", err, stderr)
			}
		})
	}
}
