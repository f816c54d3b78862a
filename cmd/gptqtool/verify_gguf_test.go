package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/internal/fixtures"
)

// tokenizerFiles are openchat-tiny's tokenizer files, put beside a GGUF
// file of it.
var tokenizerFiles = []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "tokenizer.model"}

// TestVerifyGGUF: verify perplexity and kl take a GGUF file as --model,
// tokenizing with the tokenizer files beside it: an F16 file of the fp16
// checkpoint scores exactly as the checkpoint, a Q4_K_M file a little
// worse, against the checkpoint as --baseline; a GGUF with no tokenizer
// beside it, or another model's, is refused, saying where the files go or
// which token differs.
func TestVerifyGGUF(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	text := fixturePath(t, "datasets/wikitext-2-raw/wiki.test.raw")
	dir := t.TempDir()
	fixtures.CopyFiles(t, model, dir, tokenizerFiles...)
	ppl := func(args ...string) string {
		t.Helper()
		stdout, stderr, err := run(t, append([]string{"verify", "perplexity", "--text", text, "--ctx", "128", "--max-windows", "3", "--device", "cpu"}, args...)...)
		if err != nil {
			t.Fatalf("verify perplexity %v: %v\n%s", args, err, stderr)
		}
		return strings.SplitN(stdout, "\n", 2)[0]
	}
	for _, typ := range []string{"f16", "q4_k_m"} {
		if _, _, err := run(t, "convert", "--in", model, "--out", filepath.Join(dir, typ+".gguf"), "--gguf", typ); err != nil {
			t.Fatal(err)
		}
	}
	hf, f16 := ppl("--model", model), ppl("--model", filepath.Join(dir, "f16.gguf"))
	if hf != f16 || !strings.HasPrefix(hf, "ppl ") {
		t.Errorf("the checkpoint: %q, its F16 GGUF: %q, want the same", hf, f16)
	}
	stdout, _, err := run(t, "verify", "kl", "--model", filepath.Join(dir, "q4_k_m.gguf"), "--baseline", model, "--text", text, "--ctx", "128", "--max-windows", "3", "--device", "cpu")
	if err != nil {
		t.Fatal(err)
	}
	var kl float64
	if _, err := fmt.Sscanf(stdout, "kl %g", &kl); err != nil || !(kl > 0 && kl < 0.1) {
		t.Errorf("Q4_K_M against the checkpoint: kl %g (%v), want in (0, 0.1):\n%s", kl, err, stdout)
	}
	// Tokenizer files of another vocabulary of the same size: refused,
	// naming the first token that differs.
	other := t.TempDir()
	for _, f := range append(tokenizerFiles, "f16.gguf") {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(f, ".gguf") && !strings.HasSuffix(f, ".model") {
			b = []byte(strings.ReplaceAll(string(b), "<|pad_0|>", "<|pad_9|>"))
		}
		os.WriteFile(filepath.Join(other, f), b, 0o644)
	}
	if _, _, err := run(t, "verify", "perplexity", "--model", filepath.Join(other, "f16.gguf"), "--text", text, "--device", "cpu"); err == nil || !strings.Contains(err.Error(), `token 32001 is "<|pad_0|>"`) {
		t.Errorf("another vocabulary beside the GGUF: %v", err)
	}
	bare := t.TempDir()
	fixtures.CopyFiles(t, dir, bare, "f16.gguf")
	if _, _, err := run(t, "verify", "perplexity", "--model", filepath.Join(bare, "f16.gguf"), "--text", text, "--device", "cpu"); err == nil || !strings.Contains(err.Error(), "tokenizer files beside it") {
		t.Errorf("a GGUF without its tokenizer: %v", err)
	}
}

// TestGenerateAndServeGGUF: generate and serve take a GGUF file as --model,
// with the tokenizer files beside it: an F16 file of the fp16 checkpoint
// generates the checkpoint's greedy ids, and serves its greedy completion;
// without tokenizer files beside it, generate says where they go.
func TestGenerateAndServeGGUF(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	dir := t.TempDir()
	fixtures.CopyFiles(t, model, dir, tokenizerFiles...)
	file := filepath.Join(dir, "f16.gguf")
	if _, _, err := run(t, "convert", "--in", model, "--out", file, "--gguf", "f16"); err != nil {
		t.Fatal(err)
	}
	ids := func(m string) string {
		t.Helper()
		out, stderr, err := run(t, "generate", "--model", m, "--prompt", "Once upon a time", "--max-tokens", "24", "--ids", "--device", "cpu")
		if err != nil {
			t.Fatalf("generate --model %s: %v\n%s", m, err, stderr)
		}
		return out
	}
	if a, b := ids(model), ids(file); a != b || a == "" {
		t.Errorf("greedy ids: the checkpoint %q, its F16 GGUF %q", a, b)
	}
	complete := func(url string) string {
		t.Helper()
		resp, err := http.Post(url+"/v1/completions", "application/json", strings.NewReader(`{"prompt": "The sea", "max_tokens": 16, "temperature": 0}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r struct {
			Choices []struct {
				Text string `json:"text"`
			} `json:"choices"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || len(r.Choices) != 1 {
			t.Fatalf("completion: %v %+v", err, r)
		}
		return r.Choices[0].Text
	}
	if a, b := complete(startServe(t, model).url), complete(startServe(t, file).url); a != b || a == "" {
		t.Errorf("served greedy completions: the checkpoint %q, its F16 GGUF %q", a, b)
	}
	alone := t.TempDir()
	fixtures.CopyFiles(t, dir, alone, "f16.gguf")
	if _, _, err := run(t, "generate", "--model", filepath.Join(alone, "f16.gguf"), "--prompt", "x"); err == nil || !strings.Contains(err.Error(), "beside it") {
		t.Errorf("a GGUF without tokenizer files: %v, want an error saying where they go", err)
	}
}
