package main

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/verify"
)

// TestPhi3LongropeContext: verify perplexity loads a longrope Phi-3
// (max_position_embeddings 512 over an original 64, as Phi-3.5-mini's
// 131072 over 4096) for its --ctx: at --ctx 64 (the original, boundary
// included) its perplexity is the runtime's with the short factors, at
// --ctx 128 with the long ones (the tables' perplexities at 64 differ);
// a window past a model's context is refused; inspect says which
// factors apply at which context.
func TestPhi3LongropeContext(t *testing.T) {
	tok := fixturePath(t, "models/openchat-tiny")
	short := []float64{1, 1.25, 1.5, 2, 2, 3, 4, 4}
	long := []float64{1, 2, 4, 8, 12, 16, 24, 32}
	dir := fixtures.Phi3(t, map[string]any{"vocab_size": 32002, "max_position_embeddings": 512, "original_max_position_embeddings": 64,
		"rope_scaling": map[string]any{"type": "longrope", "short_factor": short, "long_factor": long}},
		synth.Options{DType: "f32", Seed: 7, TokenizerDir: tok})
	text := filepath.Join(t.TempDir(), "text.txt")
	if err := os.WriteFile(text, []byte(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 30)), 0o644); err != nil {
		t.Fatal(err)
	}
	ids, err := loadText(dir, text) // (the command's tokenization)
	if err != nil {
		t.Fatal(err)
	}
	// want is the runtime's perplexity of 2 windows of ctx with the model
	// loaded for context load.
	want := func(ctx, load int) float64 {
		t.Helper()
		m, err := model.LoadWith(dir, cpu.New(0), model.Options{Context: load})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		r, err := verify.Perplexity(context.Background(), m, ids, verify.PerplexityOptions{Ctx: ctx, MaxWindows: 2})
		if err != nil {
			t.Fatal(err)
		}
		return r.PPL
	}
	// (A model loaded for 64 positions runs no window of 128: the long
	// table's is the only perplexity there.)
	short64, long64 := want(64, 64), want(64, 0)
	if !(math.Abs(short64-long64) > 1e-6*short64) {
		t.Fatalf("--ctx 64: perplexities %g and %g with either table: the test could not tell", short64, long64)
	}
	for _, tc := range []struct {
		ctx         int
		same, other float64
	}{
		{64, short64, long64},
		{128, want(128, 0), math.NaN()},
	} {
		out, stderr, err := run(t, "verify", "perplexity", "--model", dir, "--text", text, "--ctx", strconv.Itoa(tc.ctx), "--max-windows", "2",
			"--device", "cpu", "--dtype", "f32", "--json")
		if err != nil {
			t.Fatalf("verify perplexity --ctx %d: %v\n%s", tc.ctx, err, stderr)
		}
		var doc struct {
			Result verify.PerplexityResult `json:"result"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("verify perplexity --json: %v\n%s", err, out)
		}
		if got := doc.Result.PPL; !(math.Abs(got-tc.same) <= 1e-9*tc.same) {
			t.Errorf("verify perplexity --ctx %d: ppl %.10g, want %.10g (the table of that context; the other's %.10g)", tc.ctx, got, tc.same, tc.other)
		}
	}

	m, err := model.LoadWith(dir, cpu.New(0), model.Options{Context: 64})
	if err != nil {
		t.Fatal(err)
	}
	_, err = verify.Perplexity(context.Background(), m, ids, verify.PerplexityOptions{Ctx: 65, MaxWindows: 1})
	m.Close()
	if err == nil || !strings.Contains(err.Error(), "ctx 65 exceeds the context of 64 the model was loaded for") {
		t.Errorf("Perplexity(ctx 65) of a model loaded for 64: %v, want refused", err)
	}

	out, stderr, err := run(t, "inspect", dir)
	if err != nil {
		t.Fatalf("inspect: %v\n%s", err, stderr)
	}
	if w := "long_factor at the default context (max_position_embeddings, past the original), short_factor for a context of at most 64"; !strings.Contains(out, w) {
		t.Errorf("inspect: no %q in\n%s", w, out)
	}
}
