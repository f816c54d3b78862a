package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuantizeSkipModules: --skip-modules refuses, as usage errors naming
// the pattern, a name or regular expression that matches no Linear module,
// one that does not compile, and part of a group vLLM fuses (written with
// --allow-unportable, the card saying vLLM cannot load it); a whole group
// is written and passes verify format.
func TestQuantizeSkipModules(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	for _, tc := range []struct{ skip, want string }{
		{"model.layers.0.mlp.down_prj", `"model.layers.0.mlp.down_prj" matches no quantizable Linear module`},
		{`re:model\.layers\.(0`, "missing closing )"},
		{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj, model.layers.0.self_attn.v_proj quantized"},
		{"model.layers.1.mlp.up_proj", "--allow-unportable"},
		{" , ", "no module named"},
	} {
		out := filepath.Join(t.TempDir(), "q")
		_, _, err := run(t, "quantize", "--model", model, "--rtn", "--bits", "8", "--group", "-1", "--out", out, "--skip-modules", tc.skip)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--skip-modules %q: err = %v, want a usage error saying %q", tc.skip, err, tc.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("--skip-modules %q: refused, yet %s was written", tc.skip, out)
		}
	}
	out := filepath.Join(t.TempDir(), "partial")
	_, stderr, err := run(t, "quantize", "--model", model, "--rtn", "--bits", "8", "--group", "-1", "--out", out,
		"--skip-modules", "model.layers.1.mlp.up_proj", "--allow-unportable")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "vLLM cannot load") {
		t.Errorf("--allow-unportable: no warning naming vLLM:\n%s", stderr)
	}
	card, _ := os.ReadFile(filepath.Join(out, "README.md"))
	if !strings.Contains(string(card), "vLLM gptq_marlin: cannot load them: model.layers.1.mlp.up_proj unquantized but model.layers.1.mlp.gate_proj quantized") {
		t.Errorf("card of a partial fused group does not say vLLM cannot load it:\n%s", card)
	}
	// inspect's loaders see the fp16 modules too (gptq.SkipSupport).
	if stdout, _, err := run(t, "inspect", out); err != nil || !strings.Contains(stdout, "TGI  modules left unquantized") {
		t.Errorf("inspect of a checkpoint with skipped modules: %v, TGI not refused:\n%s", err, stdout)
	}
	out = filepath.Join(t.TempDir(), "whole")
	if _, _, err := run(t, "quantize", "--model", model, "--rtn", "--bits", "8", "--group", "-1", "--out", out,
		"--skip-modules", `model.layers.0.mlp.down_proj,re:model\.layers\.[1-2]\.mlp\.(gate|up)_proj,re:model\.layers\.5\.self_attn\.[qkv]_proj`); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := run(t, "verify", "format", out)
	if err != nil || strings.Contains(stdout, "FAIL") {
		t.Fatalf("verify format: %v\n%s", err, stdout)
	}
	if !strings.Contains(stdout, "8 modules") {
		t.Errorf("verify format does not count the 8 skipped modules:\n%s", stdout)
	}
}
