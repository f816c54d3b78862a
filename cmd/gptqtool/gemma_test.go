package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
)

// TestGemma2Commands runs a random Gemma 2 checkpoint (fixtures.Gemma2:
// the scores soft-capped at 2, the logits at 3) through the commands:
// inspect (model_type gemma2, the parameter count equal to the config's,
// the soft-capping reported), then modelCommands (gemma2).
func TestGemma2Commands(t *testing.T) {
	if testing.Short() {
		t.Skip("quantizes a model")
	}
	tok := fixturePath(t, "models/openchat-tiny")
	dir := fixtures.Gemma2(t, map[string]any{"hidden_size": 128, "intermediate_size": 256, "vocab_size": 32002, "head_dim": 64,
		"query_pre_attn_scalar": 64, "sliding_window": 16, "num_hidden_layers": 4}, synth.Options{DType: "f16", Seed: 4, TokenizerDir: tok})
	var rep struct {
		inspectCounts
		LayerTypes []string `json:"layer_types"`
		AttnCap    float64  `json:"attn_logit_softcapping"`
		FinalCap   float64  `json:"final_logit_softcapping"`
	}
	inspectJSON(t, dir, &rep)
	if !rep.counted("gemma2") || rep.AttnCap != 2 || rep.FinalCap != 3 ||
		!slices.Equal(rep.LayerTypes, []string{"sliding_attention", "full_attention", "sliding_attention", "full_attention"}) {
		t.Errorf("inspect --json: %+v", rep)
	}
	if out, _, err := run(t, "inspect", dir); err != nil || !strings.Contains(out, "sliding window 16 in 2 of 4 layers (the others full attention)") ||
		!strings.Contains(out, "soft-capping   scores at 2, logits at 3") {
		t.Errorf("inspect: %v, want the sliding layers and the soft-capping reported\n%s", err, out)
	}

	modelCommands(t, dir, "gemma2")
}

// modelCommands runs a checkpoint dir of a family that converts to
// llama.cpp's arch architecture (Gemma's, Granite's, OLMo 2's) through the commands
// every such family takes alike: generate (the runtime's greedy ids),
// quantize with calibration (verify format passes, the KL to the source
// small), convert --gguf to llama.cpp's arch architecture, and generate on
// an F32 GGUF of the checkpoint gives its ids.
func modelCommands(t *testing.T, dir, arch string) {
	t.Helper()
	doc := generateGreedyMatches(t, dir)

	q := filepath.Join(t.TempDir(), "q")
	if _, stderr, err := run(t, "quantize", "--model", dir, "--out", q, "--bits", "4", "--group", "128", "--dataset",
		fixturePath(t, "datasets/instruct/alpaca_en_demo.json"), "--nsamples", "4", "--seq-len", "64", "--device", "cpu"); err != nil {
		t.Fatalf("quantize: %v\n%s", err, stderr)
	}
	if _, stderr, err := run(t, "verify", "format", q); err != nil {
		t.Errorf("verify format: %v\n%s", err, stderr)
	}
	text := foxText(t, 40)
	if kl := meanKL(t, "--model", q, "--baseline", dir, "--text", text, "--ctx", "128", "--device", "cpu"); !(kl > 0 && kl < 1) {
		t.Errorf("verify kl: mean KL %g: want a small positive one", kl)
	}
	if a := q8Arch(t, q); a != arch {
		t.Errorf("convert --gguf: general.architecture %q, want %s", a, arch)
	}
	g32 := filepath.Join(dir, "f32.gguf") // (beside the tokenizer files)
	if _, stderr, err := run(t, "convert", "--in", dir, "--out", g32, "--gguf", "f32"); err != nil {
		t.Fatalf("convert --gguf f32: %v\n%s", err, stderr)
	}
	gdoc, stderr := generateJSONOut(t, "--model", g32, "--prompt", "Once upon a time", "--max-tokens", "8", "--temperature", "0", "--device", "cpu", "--dtype", "f32")
	if !slices.Equal(gdoc.IDs, doc.IDs) {
		t.Errorf("generate on the F32 GGUF: ids %v, the checkpoint's %v\n%s", gdoc.IDs, doc.IDs, stderr)
	}
}

// TestGemmaCommands runs a random Gemma checkpoint (fixtures.Gemma, the
// first version: multi-query, hidden_act "gelu") through the commands:
// inspect (model_type gemma, the parameter count equal to the config's,
// no window or soft-capping reported), then modelCommands (gemma).
func TestGemmaCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("quantizes a model")
	}
	tok := fixturePath(t, "models/openchat-tiny")
	dir := fixtures.Gemma(t, map[string]any{"hidden_size": 128, "intermediate_size": 256, "vocab_size": 32002, "head_dim": 64},
		synth.Options{DType: "f16", Seed: 4, TokenizerDir: tok})
	var rep inspectCounts
	inspectJSON(t, dir, &rep)
	if !rep.counted("gemma") {
		t.Errorf("inspect --json: %+v", rep)
	}
	if out, _, err := run(t, "inspect", dir); err != nil || strings.Contains(out, "soft-capping") || strings.Contains(out, "query_pre_attn_scalar") ||
		!strings.Contains(out, "sliding window none") {
		t.Errorf("inspect: %v, want no window, soft-capping or query_pre_attn_scalar reported\n%s", err, out)
	}
	modelCommands(t, dir, "gemma")
}
