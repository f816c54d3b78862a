package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// TestQwen2Commands runs the commands on a random-weight Qwen2 checkpoint
// (q/k/v biases; openchat's tokenizer for text): inspect names it qwen2 and
// counts its biases as config.json does; generate's greedy ids are the
// runtime's; quantize writes a GPTQ checkpoint that verify kl measures
// against it and that converts to a qwen2 GGUF.
func TestQwen2Commands(t *testing.T) {
	tok := fixturePath(t, "models/openchat-tiny")
	dir := fixtures.Qwen2(t, map[string]any{"hidden_size": 128, "intermediate_size": 256, "vocab_size": 32002, "max_position_embeddings": 512},
		synth.Options{DType: "f16", Seed: 4, TokenizerDir: tok})
	qwenCommands(t, dir, "qwen2")
}

// TestQwen3Commands runs the commands of TestQwen2Commands on a
// random-weight Qwen3 checkpoint (per-head q/k norms, head_dim 64 where
// hidden/heads is 32): inspect names it qwen3 and counts its norms as
// config.json does, and the rest as for Qwen2, the GGUF file qwen3's.
func TestQwen3Commands(t *testing.T) {
	tok := fixturePath(t, "models/openchat-tiny")
	dir := fixtures.Qwen3(t, map[string]any{"hidden_size": 128, "intermediate_size": 256, "vocab_size": 32002, "head_dim": 64},
		synth.Options{DType: "f16", Seed: 4, TokenizerDir: tok})
	qwenCommands(t, dir, "qwen3")
}

// qwenCommands runs inspect, generate, serve, quantize, verify kl and
// convert --gguf on dir, a checkpoint of modelType.
func qwenCommands(t *testing.T, dir, modelType string) {
	t.Helper()
	var rep inspectCounts
	inspectJSON(t, dir, &rep)
	if !rep.counted(modelType) {
		t.Errorf("inspect: model_type %q, %d parameters, config's %d: want %s and equal counts", rep.ModelType, rep.NumParameters, rep.ConfigParameters, modelType)
	}

	doc := generateGreedyMatches(t, dir)

	// serve's greedy completion is generate's text.
	p := startServe(t, dir, "--dtype", "f32")
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
	if err != nil || resp.StatusCode != 200 || len(comp.Choices) != 1 || comp.Choices[0].Text != doc.Text {
		t.Errorf("serve: status %d, %v, %+v: want generate's text %q", resp.StatusCode, err, comp, doc.Text)
	}

	q := filepath.Join(t.TempDir(), "q")
	if _, stderr, err := run(t, "quantize", "--model", dir, "--out", q, "--bits", "4", "--group", "128",
		"--dataset", fixturePath(t, "datasets/instruct/alpaca_en_demo.json"), "--nsamples", "4", "--seq-len", "64", "--device", "cpu"); err != nil {
		t.Fatalf("quantize: %v\n%s", err, stderr)
	}
	text := foxText(t, 40)
	if kl := meanKL(t, "--model", q, "--baseline", dir, "--text", text, "--ctx", "128", "--device", "cpu"); !(kl > 0 && kl < 0.5) {
		t.Errorf("verify kl: mean KL %g: want a small positive one", kl)
	}
	if a := q8Arch(t, q); a != modelType {
		t.Errorf("convert --gguf: general.architecture %q, want %s", a, modelType)
	}
}

// generateGreedyMatches runs generate on the checkpoint dir (8 greedy
// tokens after "Once upon a time", on the CPU in fp32) and checks its ids
// against the runtime's own greedy loop over whole forwards, which shares
// no code with generate's decode steps; it returns generate's document.
func generateGreedyMatches(t *testing.T, dir string) generateJSON {
	t.Helper()
	doc, stderr := generateJSONOut(t, "--model", dir, "--prompt", "Once upon a time", "--max-tokens", "8", "--temperature", "0", "--device", "cpu", "--dtype", "f32")
	m, err := model.Load(dir, cpu.New(0))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ids := slices.Clone(doc.PromptIDs)
	for range 8 {
		lg, err := m.Forward(ids, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		last := lg[(len(ids)-1)*m.Vocab():]
		best := 0
		for i, v := range last {
			if v > last[best] {
				best = i
			}
		}
		ids = append(ids, best)
		if slices.Contains(m.EOSTokenIDs, best) {
			break
		}
	}
	if got := append(slices.Clone(doc.PromptIDs), doc.IDs...); len(doc.IDs) == 0 || !slices.Equal(got, ids[:len(got)]) {
		t.Errorf("generate: ids %v, the runtime's greedy %v\n%s", got, ids, stderr)
	}
	return doc
}
