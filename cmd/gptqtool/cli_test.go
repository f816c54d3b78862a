package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/cuda"
	"github.com/gptqtool/gptqtool/runtime/server"
)

func fixturePath(t *testing.T, rel string) string { t.Helper(); return fixtures.Path(t, rel) }

// foxText writes a short English text (a sentence n times) for verify kl
// and perplexity runs and returns its path.
func foxText(t *testing.T, n int) string {
	t.Helper()
	text := filepath.Join(t.TempDir(), "text.txt")
	if err := os.WriteFile(text, []byte(strings.Repeat("The quick brown fox jumps over the lazy dog. ", n)), 0o644); err != nil {
		t.Fatal(err)
	}
	return text
}

// q8Arch converts the checkpoint in to a Q8_0 GGUF file with convert
// --gguf and returns the file's general.architecture.
func q8Arch(t *testing.T, in string) string {
	t.Helper()
	gg := filepath.Join(t.TempDir(), "q.gguf")
	if _, stderr, err := run(t, "convert", "--in", in, "--out", gg, "--gguf", "q8_0"); err != nil {
		t.Fatalf("convert --gguf: %v\n%s", err, stderr)
	}
	f, err := gguf.Open(gg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, _ := gguf.Value[string](f, "general.architecture")
	return a
}

// meanKL runs verify kl with args (and --json) and returns its mean KL,
// failing the test where the command fails or its JSON does not read.
func meanKL(t *testing.T, args ...string) float64 {
	t.Helper()
	out, stderr, err := run(t, append([]string{"verify", "kl", "--json"}, args...)...)
	if err != nil {
		t.Fatalf("verify kl: %v\n%s", err, stderr)
	}
	var doc struct {
		Result struct {
			MeanKL float64 `json:"mean_kl"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("verify kl --json: %v\n%s", err, out)
	}
	return doc.Result.MeanKL
}

// run runs the root command, returning stdout, stderr and the error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errb.String(), err
}

func TestVersion(t *testing.T) {
	out, _, err := run(t, "--version")
	if err != nil || !strings.Contains(out, version) {
		t.Fatalf("--version: %q, %v", out, err)
	}
}

func TestInspectCmd(t *testing.T) {
	for _, tc := range []struct {
		dir    string
		params int64
		layers int
		text   []string
	}{
		{"models/openchat-tiny", 13504256, 6, []string{"MistralForCausalLM", "13504256", "F16×56", "tied to embed_tokens", "quantization   none"}},
		{"models/stories260K-hf-mistral", 292800, 5, []string{"292800", "F32×48", "untied lm_head", "8 heads, 4 kv heads, head_dim 8"}},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			dir := fixturePath(t, tc.dir)
			out, _, err := run(t, "inspect", dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.text {
				if !strings.Contains(out, w) {
					t.Errorf("inspect output lacks %q:\n%s", w, out)
				}
			}
			out, _, err = run(t, "inspect", "--json", dir)
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			dec := json.NewDecoder(strings.NewReader(out))
			dec.UseNumber()
			if err := dec.Decode(&doc); err != nil {
				t.Fatal(err)
			}
			// HF key names, and the parameter count as a plain integer.
			if got := doc["num_parameters"].(json.Number).String(); got != jsonInt(tc.params) {
				t.Errorf("num_parameters = %s, want %d", got, tc.params)
			}
			if got := doc["num_hidden_layers"].(json.Number).String(); got != jsonInt(int64(tc.layers)) {
				t.Errorf("num_hidden_layers = %s, want %d", got, tc.layers)
			}
		})
	}
}

// TestInspectRopeScaling: inspect names a config's RoPE scaling, in the
// text and as rope_scaling under config.json's keys in the JSON (yarn's
// defaults and attention factor resolved, 0.1·ln 4 + 1), and leaves the
// key out for plain RoPE.
func TestInspectRopeScaling(t *testing.T) {
	src := fixturePath(t, "models/stories260K-hf-mistral")
	scaled := func(scaling, want string) string {
		dir := t.TempDir()
		for _, f := range []string{"config.json", "model.safetensors"} {
			data, err := os.ReadFile(filepath.Join(src, f))
			if err != nil {
				t.Fatal(err)
			}
			if f == "config.json" {
				data = bytes.Replace(data, []byte(`"rope_theta": 10000,`), []byte(`"rope_theta": 10000, "rope_scaling": `+scaling+`,`), 1)
			}
			if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out, _, err := run(t, "inspect", dir)
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("inspect: %v, output lacks %q:\n%s", err, want, out)
		}
		return dir
	}
	dir := scaled(`{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}`,
		"rope_theta 10000, rope scaling llama3 (factor 8, low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 8192), sliding window")
	yarn := scaled(`{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128}`,
		"rope_theta 10000, rope scaling yarn (factor 4, original_max_position_embeddings 128, beta_fast 32, beta_slow 1, truncate true, attention_factor 1.13863), sliding window")
	for _, tc := range []struct {
		dir  string
		want string // rope_scaling's JSON; "" for none
	}{
		{dir, `{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":8192}`},
		{yarn, `{"rope_type":"yarn","factor":4,"original_max_position_embeddings":128,"beta_fast":32,"beta_slow":1,"truncate":true,"attention_factor":1.138629436111989}`},
		{src, ""},
	} {
		out, _, err := run(t, "inspect", "--json", tc.dir)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]json.RawMessage
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if raw, ok := doc["rope_scaling"]; ok {
			json.Compact(&got, raw)
		}
		if got.String() != tc.want {
			t.Errorf("%s: rope_scaling %s, want %q", tc.dir, got.String(), tc.want)
		}
	}
}

func jsonInt(v int64) string { b, _ := json.Marshal(v); return string(b) }

func TestInspectRefusesTruncated(t *testing.T) {
	src := fixturePath(t, "models/stories260K-hf-mistral")
	dir := t.TempDir()
	cfg, _ := os.ReadFile(filepath.Join(src, "config.json"))
	weights, _ := os.ReadFile(filepath.Join(src, "model.safetensors"))
	os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644)
	os.WriteFile(filepath.Join(dir, "model.safetensors"), weights[:len(weights)-100], 0o644)
	_, _, err := run(t, "inspect", dir)
	var ue usageError
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "model.safetensors") {
		t.Fatalf("err = %v, want a (non-usage) error naming model.safetensors", err)
	}
}

func TestUsageErrors(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	for _, args := range [][]string{
		{"inspect"},
		{"inspect", "a", "b"},
		{"inspect", "--no-such-flag", "x"},
		{"quantize", "--model", model, "--out", "x", "--dataset", "d.json", "--branches", "main", "--bits", "8"},
		{"quantize", "--model", model, "--out", "x", "--dataset", "d.json", "--bits", "5"},
		{"quantize", "--model", model, "--out", "x", "--dataset", "d.json", "--branches", "gptq-5bit-7g-nope"},
		{"quantize", "--model", model, "--out", "x", "--dataset", "d.json", "--max-shard-size", "4XB"},
		{"quantize", "--model", model, "--out", "x", "--dataset", "d.json", "--device", "tpu"},
		{"quantize", "--model", model, "--dataset", "d.json"},
		{"quantize", "--model", model, "--out", "x", "--dataset", "d.json", "--max-shard-size", "nan"},
		{"quantize", "--model", model, "--out", "x", "--dataset", "d.json", "--sym=false", "--checkpoint-format", "gptq"},
		{"quantize", "--model", model, "--out", "x", "--dataset", "d.json", "--threads", "-1"},
		// Flags of the GPU driver that a CPU run ignored silently (a QA
		// pass).
		{"quantize", "--model", model, "--out", filepath.Join(t.TempDir(), "x"), "--dataset", "d.json", "--device", "cpu", "--gpu-memory", "16GiB"},
		{"quantize", "--model", model, "--out", filepath.Join(t.TempDir(), "x"), "--dataset", "d.json", "--device", "cpu", "--chunk-rows", "64"},
		// Round to nearest has no column order: --act-order was dropped
		// silently, the plan and checkpoint saying act_order=false (a QA
		// pass).
		{"quantize", "--model", model, "--out", filepath.Join(t.TempDir(), "x"), "--rtn", "--act-order"},
		// Round to nearest without --dataset reads no data: the sampling
		// flags did nothing, silently (a QA pass).
		{"quantize", "--model", model, "--out", filepath.Join(t.TempDir(), "x"), "--rtn", "--nsamples", "8", "--seq-len", "64"},
		{"verify", "perplexity", "--model", model, "--text", "t.txt", "--ctx", "1"},
		// Both ends of --ctx are usage errors (issue 11, finding 7).
		{"verify", "perplexity", "--model", model, "--text", "t.txt", "--ctx", "5000"},
		{"verify", "kl", "--model", model, "--baseline", model, "--text", "t.txt", "--ctx", "99999"},
		{"quantize", "--model", model, "--out", "x", "--dataset", "d.json", "--seq-len", "0"},
		{"quantize", "--model", model, "--out", "x", "--dataset", "d.json", "--resume", "--force"},
		{"verify", "perplexity", "--model", model, "--text", "t.txt", "--max-windows", "-3"},
		{"verify", "perplexity"},
		{"no-such-command"},
		// NaN fails every comparison: refused explicitly (issue 11, finding 7).
		{"generate", "--model", model, "--prompt", "x", "--temperature", "NaN"},
		{"generate", "--model", model, "--prompt", "x", "--temperature", "+Inf"},
		{"generate", "--model", model, "--prompt", "x", "--top-p", "NaN"},
		{"bench", "serve", "--url", "http://127.0.0.1:1", "--temperature", "NaN"},
		{"bench", "serve", "--url", "http://127.0.0.1:1", "--response-format", "json"},
		{"serve", "--model", model, "--kv-cache", "0%"},
		{"serve", "--model", model, "--kv-cache", "150%"},
		{"serve", "--model", model, "--kv-cache", "lots"},
		{"serve", "--model", model, "--allowed-origins", "app.example"},
		{"serve", "--model", model, "--allowed-origins", "https://app.example/chat"},
		{"convert", "--out", "x"},
		{"convert", "--in", model, "--out", "x", "--dtype", "fp8"},
		{"convert", "--in", model, "--out", "x", "--checkpoint-format", "marlin"},
		{"convert", "--in", model, "--out", "x", "--max-shard-size", "lots"},
		{"convert", "--in", model, "--out", "x", "--max-shard-size", "0.5"},
		{"convert", "--in", model, "--out", "x.gguf", "--gguf", "tq1_0"},
		{"calibrate", "--model", model, "--dataset", "d.json", "--dataset-format", "csv"},
		// A row template renders the whole row: --text-column was ignored
		// silently (a QA pass).
		{"calibrate", "--model", model, "--dataset", "d.json", "--template", "{instruction}", "--text-column", "output"},
		{"quantize", "--model", model, "--out", filepath.Join(t.TempDir(), "x"), "--dataset", "d.json", "--template", "{instruction}", "--text-column", "output"},
		{"generate", "--model", model, "--prompt", "x", "--chat-template", "chatml"},
		{"tokenize", "--model", model, "--chat-template", "llama3", "x"},
		{"serve", "--model", model, "--chat-template", "chatml"},
		{"serve", "--model", model, "--step-tokens", "-1"},
		// Refused before the model loads, naming the flag (a QA pass:
		// exit 1 after the load with "verify: decode bench batch 0", and
		// --repeat 0 ran once).
		{"bench", "decode", "--model", model, "--device", "cpu", "--batch", "1,0"},
		{"bench", "decode", "--model", model, "--device", "cpu", "--batch", ""},
		{"bench", "decode", "--model", model, "--device", "cpu", "--new", "0"},
		{"bench", "decode", "--model", model, "--device", "cpu", "--prompt", "0"},
		{"bench", "prefill", "--model", model, "--device", "cpu", "--prompts", "0"},
		{"bench", "prefill", "--model", model, "--device", "cpu", "--prompts", "8", "--repeat", "0"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_, _, err := run(t, args...)
			var ue usageError
			if err == nil {
				t.Fatal("no error, want a usage error (exit 2)")
			}
			if !errors.As(err, &ue) && !cobraUsage(err) {
				t.Errorf("err = %v, want a usage error (exit 2)", err)
			}
		})
	}
}

// TestQuantizeVerifyCmd runs quantize (round to nearest: instant), the
// format check and perplexity through the commands, and the refusals of an
// existing output and of a GPTQ checkpoint as input.
func TestQuantizeVerifyCmd(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	wiki := fixturePath(t, "datasets/wikitext-2-raw/wiki.test.raw")
	out := filepath.Join(t.TempDir(), "rtn")
	stdout, _, err := run(t, "quantize", "--model", model, "--rtn", "--bits", "8", "--group", "-1", "--out", out, "--json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, `"size_bytes"`) {
		t.Errorf("--json summary lacks size_bytes: %s", stdout)
	}
	stdout, _, err = run(t, "verify", "format", out)
	if err != nil || strings.Contains(stdout, "FAIL") {
		t.Fatalf("verify format: %v\n%s", err, stdout)
	}
	stdout, _, err = run(t, "inspect", out)
	if err != nil || !strings.Contains(stdout, "GPTQ 8-bit, group none (per channel)") || !strings.Contains(stdout, "no  ExLlama v1") {
		t.Fatalf("inspect of the quantized checkpoint: %v\n%s", err, stdout)
	}
	stdout, _, err = run(t, "verify", "perplexity", "--model", out, "--text", wiki, "--ctx", "256", "--max-windows", "2", "--baseline", model)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"ppl ", "tokens 512 windows 2 ctx 256", "baseline ppl", "delta"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("perplexity output lacks %q:\n%s", w, stdout)
		}
	}
	if _, _, err := run(t, "quantize", "--model", model, "--rtn", "--out", out); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("existing output: err = %v, want a refusal naming --force", err)
	}
	// --force replaces a gptqtool checkpoint, but not one holding a file
	// the user put there since.
	notes := filepath.Join(out, "notes.txt")
	os.WriteFile(notes, []byte("mine\n"), 0o644)
	if _, _, err := run(t, "quantize", "--model", model, "--rtn", "--out", out, "--force"); err == nil || !strings.Contains(err.Error(), "notes.txt") {
		t.Errorf("--force over a checkpoint holding notes.txt: err = %v, want a refusal naming it", err)
	}
	if _, err := os.Stat(notes); err != nil {
		t.Errorf("notes.txt: %v", err)
	}
	if _, _, err := run(t, "quantize", "--model", out, "--rtn", "--out", out+"2"); err == nil || !strings.Contains(err.Error(), "already a GPTQ checkpoint") {
		t.Errorf("GPTQ input: err = %v", err)
	}
}

// TestQuantizeSmallDataset: a dataset smaller than nsamples × seq-len is
// used with a warning, not refused.
func TestQuantizeSmallDataset(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	data := filepath.Join(t.TempDir(), "small.json")
	os.WriteFile(data, []byte(`[{"instruction":"Name a color.","input":"","output":"Blue."},{"instruction":"Add 2 and 3.","input":"","output":"5"}]`), 0o644)
	out := filepath.Join(t.TempDir(), "q")
	_, stderr, err := run(t, "quantize", "--model", model, "--dataset", data, "--nsamples", "2", "--seq-len", "64", "--out", out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "warning") {
		t.Errorf("no warning about the small dataset:\n%s", stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "model.safetensors")); err != nil {
		t.Error(err)
	}
}

// TestGenerateStoriesGreedy: greedy generation reproduces the fixture's
// independently produced continuation exactly.
func TestGenerateStoriesGreedy(t *testing.T) {
	dir := fixturePath(t, "models/stories260K-hf-mistral")
	raw, err := os.ReadFile(filepath.Join(dir, "expected_greedy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Prompt    string `json:"prompt"`
		GreedyIDs []int  `json:"greedy_ids"`
		Prefix    string `json:"greedy_text_prefix"`
	}
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	n := fmt.Sprint(len(want.GreedyIDs) - 5) // the prompt is 5 ids with BOS
	out, _, err := run(t, "generate", "--model", dir, "--prompt", want.Prompt, "--max-tokens", n, "--ids")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(out); strings.Join(got, " ") != strings.Trim(fmt.Sprint(want.GreedyIDs), "[]") {
		t.Errorf("generate --ids:\n got %v\nwant %v", got, want.GreedyIDs)
	}
	text, _, err := run(t, "generate", "--model", dir, "--prompt", want.Prompt, "--max-tokens", n)
	if err != nil {
		t.Fatal(err)
	}
	// generate prints the continuation after the prompt.
	if !strings.HasPrefix(want.Prompt+text, want.Prefix) {
		t.Errorf("prompt + generated text %q does not start with %q", want.Prompt+text, want.Prefix)
	}
}

// cudaHere reports whether this machine opens a CUDA device (then the
// no-GPU behaviour cannot be observed).
func cudaHere() bool {
	b, err := cuda.New(cuda.Options{})
	if err == nil {
		b.Close()
		return true
	}
	return false
}

// TestDeviceWithoutCUDA checks the device flag where no CUDA loads: cuda is
// an error naming the missing driver; auto falls back to the CPU and says
// so on one line.
func TestDeviceWithoutCUDA(t *testing.T) {
	if cudaHere() {
		t.Skip("a CUDA device is present")
	}
	model := fixturePath(t, "models/openchat-tiny")
	data := fixturePath(t, "datasets/instruct/alpaca_en_demo.json")
	_, _, err := run(t, "quantize", "--model", model, "--dataset", data, "--nsamples", "2", "--seq-len", "64",
		"--out", filepath.Join(t.TempDir(), "q"), "--device", "cuda")
	driver := "libcuda.so.1"
	if goruntime.GOOS == "windows" {
		driver = "nvcuda.dll"
	}
	if err == nil || !strings.Contains(err.Error(), driver) || !errors.Is(err, cuda.ErrNotAvailable) {
		t.Errorf("--device cuda without a driver: %v, want an error naming %s", err, driver)
	}
	_, stderr, err := run(t, "verify", "perplexity", "--model", model, "--text",
		fixturePath(t, "datasets/wikitext-2-raw/wiki.test.raw"), "--ctx", "64", "--max-windows", "1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "device: cpu") || !strings.Contains(stderr, driver) {
		t.Errorf("auto did not say it fell back to the CPU and why:\n%s", stderr)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestParseKVCache(t *testing.T) {
	for in, want := range map[string]kvSize{"1GiB": {bytes: 1 << 30}, "90%": {fraction: 0.9}, " 100 % ": {fraction: 1}, "0.5%": {fraction: 0.005}} {
		got, err := parseKVCache(in)
		if err != nil || got != want {
			t.Errorf("parseKVCache(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"0%", "-5%", "101%", "NaN%", "%", "0", "lots"} {
		if _, err := parseKVCache(in); err == nil {
			t.Errorf("parseKVCache(%q) accepted", in)
		}
	}
}

// TestServeKVCacheBelowContext: a --max-len the KV cache cannot hold is
// refused before serving (a request of the whole context could never run);
// a context taken from the config is lowered to what the cache holds.
func TestServeKVCacheBelowContext(t *testing.T) {
	model := fixturePath(t, "models/stories260K-hf-mistral") // 1,280 bytes a position in f32
	_, _, err := run(t, "serve", "--model", model, "--port", "0", "--device", "cpu", "--kv-cache", "40KiB", "--max-len", "64")
	if err == nil || !strings.Contains(err.Error(), "--max-len 64") || !strings.Contains(err.Error(), "holds 32 positions") {
		t.Errorf("--max-len past the cache: err = %v", err)
	}
	root := newRootCmd()
	var errb syncBuffer
	root.SetOut(io.Discard)
	root.SetErr(&errb)
	root.SetArgs([]string{"serve", "--model", model, "--port", "0", "--device", "cpu", "--kv-cache", "40KiB"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(errb.String(), "ready on") {
		if time.Now().After(deadline) {
			t.Fatalf("serve never became ready:\n%s", errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve ended with %v", err)
	}
	if logs := errb.String(); !strings.Contains(logs, "context lowered from 512") || !strings.Contains(logs, "to 32 positions") || !strings.Contains(logs, "context 32,") {
		t.Errorf("no line lowering the context:\n%s", logs)
	}
}

// TestServeCommand runs `serve` on a free port: /health answers, a
// completion is served and logged, and cancelling the command's context
// (what SIGTERM does) stops it cleanly.
func TestServeCommand(t *testing.T) {
	model := fixturePath(t, "models/stories260K-hf-mistral")
	root := newRootCmd()
	var errb syncBuffer
	root.SetOut(io.Discard)
	root.SetErr(&errb)
	// The KV cache as a share of the memory free after loading.
	// (With drafts by prompt lookup, whose counters /metrics shows.)
	root.SetArgs([]string{"serve", "--model", model, "--port", "0", "--device", "cpu", "--kv-cache", "0.05%", "--api-keys", "secret",
		"--speculate", "4", "--speculate-ngram", "1:3"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	addr := regexp.MustCompile(`ready on (http://[0-9.:]+)`)
	var url string
	deadline := time.Now().Add(30 * time.Second)
	for url == "" {
		if m := addr.FindStringSubmatch(errb.String()); m != nil {
			url = m[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve never became ready:\n%s", errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	req, _ := http.NewRequest("POST", url+"/v1/completions", strings.NewReader(`{"prompt": "Once upon a time", "max_tokens": 5, "temperature": 0}`))
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"completion_tokens":5`) {
		t.Errorf("completion: %d %s", resp.StatusCode, body)
	}
	req, _ = http.NewRequest("GET", url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer secret")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"gptqtool_spec_decode_draft_tokens_total", "gptqtool_spec_decode_accepted_tokens_total"} {
		if !strings.Contains(string(body), "\n"+name+" ") {
			t.Errorf("/metrics has no %s:\n%s", name, body)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve ended with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	logs := errb.String()
	if !strings.Contains(logs, `"path":"/v1/completions"`) || !strings.Contains(logs, `"status":200`) || !strings.Contains(logs, "serve: stopped") {
		t.Errorf("no access log record or stop line:\n%s", logs)
	}
	if !regexp.MustCompile(`kv cache: [0-9.]+ [KMG]?B of [0-9.]+ [KMG]?B \(`).MatchString(logs) {
		t.Errorf("no line sizing the KV cache from the free memory:\n%s", logs)
	}
}

// TestBenchQuantize runs bench quantize on the CPU: its JSON names the
// backend and the phases of a run whose backend is closed before the
// figures are written (on CUDA the device and memory figures are read
// before it is closed; reading them after panicked).
func TestBenchQuantize(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	data := fixturePath(t, "datasets/instruct/alpaca_en_demo.json")
	out := filepath.Join(t.TempDir(), "q")
	stdout, _, err := run(t, "bench", "quantize", "--model", model, "--dataset", data, "--nsamples", "2", "--seq-len", "64",
		"--device", "cpu", "--out", out)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Backend string             `json:"backend"`
		Wall    float64            `json:"wall_s"`
		Phases  map[string]float64 `json:"phases_s"`
		Device  *string            `json:"device"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("bench quantize output: %v\n%s", err, stdout)
	}
	if !strings.HasPrefix(got.Backend, "cpu") || got.Wall <= 0 || len(got.Phases) == 0 || got.Device != nil {
		t.Errorf("bench quantize: backend %q, wall %g s, phases %v, device %v", got.Backend, got.Wall, got.Phases, got.Device)
	}
}

// TestBenchDecodeSettings runs bench decode on the CPU with one runtime
// switch set: the report lists it (and not the kernel cache's folder) and
// the batch's figures.
func TestBenchDecodeSettings(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	// Only the switch under test: any other GPTQTOOL_ variable of the
	// environment is unset for the test (t.Setenv restores it after).
	for _, kv := range os.Environ() {
		if name, v, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "GPTQTOOL_") && name != "GPTQTOOL_FIXTURES" {
			t.Setenv(name, v)
			os.Unsetenv(name)
		}
	}
	t.Setenv("GPTQTOOL_PDL", "0")
	t.Setenv("GPTQTOOL_KERNEL_CACHE", t.TempDir())
	stdout, _, err := run(t, "bench", "decode", "--model", model, "--device", "cpu", "--batch", "2", "--prompt", "8", "--new", "4")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Settings []string         `json:"settings"`
		Runs     []map[string]any `json:"runs"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("bench decode output: %v\n%s", err, stdout)
	}
	if len(got.Settings) != 1 || got.Settings[0] != "GPTQTOOL_PDL=0" {
		t.Errorf("settings %q, want [GPTQTOOL_PDL=0]", got.Settings)
	}
	if len(got.Runs) != 1 || got.Runs[0]["batch"] != 2.0 || !(got.Runs[0]["tok_per_s"].(float64) > 0) {
		t.Errorf("runs %v, want one of batch 2 with its tok/s", got.Runs)
	}
}

// TestStepTokens checks --step-tokens: a value given is kept, and 0 means
// 512 on the CPU (2048 on a CUDA device, where one loads).
func TestStepTokens(t *testing.T) {
	c := cpu.New(1)
	if got := stepTokens(300, c); got != 300 {
		t.Errorf("stepTokens(300, cpu) = %d, want 300", got)
	}
	if got := stepTokens(0, c); got != 512 {
		t.Errorf("stepTokens(0, cpu) = %d, want 512", got)
	}
	g, err := cuda.New(cuda.Options{})
	if err != nil {
		t.Skipf("no CUDA device for the cuda default: %v", err)
	}
	defer g.Close()
	if got := stepTokens(0, g); got != 2048 {
		t.Errorf("stepTokens(0, cuda) = %d, want 2048", got)
	}
}

// TestBenchServeAllFailed checks that bench serve still prints its result
// when no request succeeds, and exits with an error naming the first one.
func TestBenchServeAllFailed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: every request is refused
	stdout, _, err := run(t, "bench", "serve", "--url", "http://"+addr, "--requests", "2", "--concurrency", "1", "--max-tokens", "1")
	if err == nil || !strings.Contains(err.Error(), "all 2 requests failed") || !strings.Contains(err.Error(), addr) {
		t.Errorf("err = %v, want all 2 requests failed, naming %s", err, addr)
	}
	if !strings.Contains(stdout, `"errors": 2`) {
		t.Errorf("stdout %q: want the result with 2 errors", stdout)
	}
}

// TestBenchServeSomeFailed: bench serve prints its result and exits 1,
// saying how many of its requests failed and the first error, when some
// (not all) failed, where it exited 0 and a script took the run's numbers
// for a clean one. The server answers every other request with a 503.
func TestBenchServeSomeFailed(t *testing.T) {
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		fail := n%2 == 0
		mu.Unlock()
		if fail {
			http.Error(w, `{"error": {"message": "busy", "type": "server_error"}}`, http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"choices\": [{\"index\": 0, \"text\": \"hi\"}]}\n\n")
		fmt.Fprint(w, "data: {\"choices\": [], \"usage\": {\"prompt_tokens\": 3, \"completion_tokens\": 1}}\n\n")
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	c := gptqtool(t, t.TempDir(), nil, "bench", "serve", "--url", srv.URL, "--requests", "4", "--concurrency", "1", "--max-tokens", "1")
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	if code := exitStatus(t, err); code != 1 {
		t.Errorf("exit status %d, want 1:\n%s", code, stderr.String())
	}
	if want := "bench serve: 2 of 4 requests failed; the first: status 503"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q does not say %q", stderr.String(), want)
	}
	if !strings.Contains(stdout.String(), `"errors": 2`) || !strings.Contains(stdout.String(), `"completion_tokens": 2`) {
		t.Errorf("stdout %q: want the result, with 2 errors and the others' 2 tokens", stdout.String())
	}
}

// TestBenchServeResponseFormat: --response-format sends its object (given
// inline or as @FILE) as every request's response_format.
func TestBenchServeResponseFormat(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			ResponseFormat json.RawMessage `json:"response_format"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Error(err)
		}
		mu.Lock()
		got = append(got, string(body.ResponseFormat))
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"choices\": [{\"index\": 0, \"text\": \"{}\"}]}\n\n")
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	defer srv.Close()
	dir := t.TempDir()
	const schema = `{"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "integer"}}}`
	if err := os.WriteFile(filepath.Join(dir, "rf.json"), []byte(schema), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, arg := range []string{`{"type": "json_object"}`, "@rf.json"} {
		got = nil
		c := gptqtool(t, dir, nil, "bench", "serve", "--url", srv.URL, "--requests", "2", "--concurrency", "1", "--max-tokens", "1", "--response-format", arg)
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", arg, err, out)
		}
		want := arg
		if arg == "@rf.json" {
			want = schema
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, []byte(want)); err != nil {
			t.Fatal(err)
		}
		if want = compact.String(); len(got) != 2 || got[0] != want || got[1] != want {
			t.Errorf("--response-format %s: the server saw %q, want %q twice", arg, got, want)
		}
	}
}

// TestVerifyChecksBaselineFirst: perplexity --baseline and kl refuse a
// baseline they cannot evaluate before the model runs, naming it: a --ctx
// past its max_position_embeddings is a usage error naming its config.json
// (it was an error about "the model's" limit, raised after the model's
// windows had run), and a truncated weight file of the baseline is named
// before the model is evaluated. The text is shorter than one window, so
// that evaluating the model first fails on that instead.
func TestVerifyChecksBaselineFirst(t *testing.T) {
	stories := fixturePath(t, "models/stories260K-hf-mistral") // max_position_embeddings 512
	dir := t.TempDir()
	long := filepath.Join(dir, "long") // stories260K given a context of 4096
	copyDir(t, stories, long)
	cfg, err := os.ReadFile(filepath.Join(long, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	longCfg := bytes.Replace(cfg, []byte(`"max_position_embeddings": 512`), []byte(`"max_position_embeddings": 4096`), 1)
	if bytes.Equal(longCfg, cfg) {
		t.Fatalf("%s/config.json: no max_position_embeddings of 512 to change", stories)
	}
	if err := os.WriteFile(filepath.Join(long, "config.json"), longCfg, 0o644); err != nil {
		t.Fatal(err)
	}
	trunc := filepath.Join(dir, "trunc")
	copyDir(t, stories, trunc)
	if err := os.Truncate(filepath.Join(trunc, "model.safetensors"), 600_000); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "short.txt")
	if err := os.WriteFile(text, []byte("Once upon a time, there was a little girl."), 0o644); err != nil {
		t.Fatal(err)
	}
	ctxErr := fmt.Sprintf("--ctx 1024 exceeds the baseline's context of 512 positions (max_position_embeddings in %s)", filepath.Join(stories, "config.json"))
	for _, c := range []struct {
		name  string
		args  []string
		want  string
		usage bool
	}{
		{"perplexity ctx", []string{"verify", "perplexity", "--model", long, "--baseline", stories, "--ctx", "1024"}, ctxErr, true},
		{"kl ctx", []string{"verify", "kl", "--model", long, "--baseline", stories, "--ctx", "1024"}, ctxErr, true},
		{"perplexity truncated", []string{"verify", "perplexity", "--model", stories, "--baseline", trunc, "--ctx", "256"}, filepath.Join(trunc, "model.safetensors") + ": tensor ", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := run(t, append(c.args, "--text", text, "--device", "cpu")...)
			var ue usageError
			if err == nil || !strings.Contains(err.Error(), c.want) || errors.As(err, &ue) != c.usage {
				t.Errorf("err = %v (usage error: %v), want one containing %q (usage error: %v)", err, errors.As(err, &ue), c.want, c.usage)
			}
		})
	}
}

// TestUnknownSubcommand: a subcommand of bench or verify that does not
// exist is a usage error naming it and what it may have meant (exit 2,
// nothing on stdout), as an unknown command is; bench and verify alone
// still print their help. Cobra printed the group's help on stdout and
// exited 0 for "bench decod", which a script read as success (a QA pass).
func TestUnknownSubcommand(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		code      int
		stderr    []string
		helpOnOut bool
	}{
		{[]string{"bench", "decod"}, 2, []string{`unknown command "decod" for "gptqtool bench"`, "Did you mean this?", "decode"}, false},
		{[]string{"verify", "perplexty", "--model", "m"}, 2, []string{`unknown command "perplexty" for "gptqtool verify"`, "perplexity"}, false},
		{[]string{"bench", "nosuch"}, 2, []string{`unknown command "nosuch" for "gptqtool bench"`}, false},
		{[]string{"bench"}, 0, nil, true},
		{[]string{"verify"}, 0, nil, true},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			c := gptqtool(t, t.TempDir(), nil, tc.args...)
			var stdout, stderr strings.Builder
			c.Stdout, c.Stderr = &stdout, &stderr
			if code := exitStatus(t, c.Run()); code != tc.code {
				t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout.String(), stderr.String())
			}
			for _, want := range tc.stderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr %q lacks %q", stderr.String(), want)
				}
			}
			if got := strings.Contains(stdout.String(), "Available Commands:"); got != tc.helpOnOut {
				t.Errorf("help on stdout: %v, want %v\nstdout:\n%s", got, tc.helpOnOut, stdout.String())
			}
		})
	}
}

// TestCalibrateOutChecked: an --out that cannot be written (its directory
// missing, a file in its path, an existing directory) is refused before the
// dataset is read, naming --out and what is wrong, where calibrate read and
// tokenized the whole dataset and then named its temporary file ("open
// cal/.x.json.tmp123: no such file or directory", "rename ./.adir.tmp1
// adir: file exists") (a QA pass).
func TestCalibrateOutChecked(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	dir := t.TempDir()
	data := filepath.Join(dir, "d.jsonl")
	if err := os.WriteFile(data, []byte(`{"text": "one two three four five six seven eight nine ten"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "afile"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, out, want string }{
		{"no directory", filepath.Join(dir, "missing", "s.json"), "--out " + filepath.Join(dir, "missing", "s.json") + ": directory " + filepath.Join(dir, "missing") + " does not exist"},
		{"under a file", filepath.Join(dir, "afile", "s.json"), "--out " + filepath.Join(dir, "afile", "s.json") + ": " + filepath.Join(dir, "afile") + " is a file, not a directory"},
		{"a directory", filepath.Join(dir, "adir"), "--out " + filepath.Join(dir, "adir") + " is a directory: give a file name"},
		{"deeper under a file", filepath.Join(dir, "afile", "sub", "s.json"), ": " + filepath.Join(dir, "afile", "sub") + " lies under a file, not in a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := run(t, "calibrate", "--model", model, "--dataset", data, "--nsamples", "1", "--seq-len", "4", "--out", tc.out)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), ".tmp") {
				t.Errorf("err = %v, want one with %q", err, tc.want)
			}
			if strings.Contains(stderr, "calibrate: read") {
				t.Errorf("the dataset was read first:\n%s", stderr)
			}
		})
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "adir"))
	if len(entries) != 0 {
		t.Errorf("adir holds %d entries, want none", len(entries))
	}
}

// TestCalibrateOutExisting: an --out that exists is refused without
// --force, before the dataset is read, and left as it was, as the other
// commands' --out; calibrate overwrote any file there, the dataset it
// read (--dataset d.json --out d.json) or the model's config.json
// included (a QA pass). With --force it is replaced by the samples.
func TestCalibrateOutExisting(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	dir := t.TempDir()
	data := filepath.Join(dir, "d.jsonl")
	rows := []byte(`{"text": "one two three four five six seven eight nine ten"}` + "\n")
	if err := os.WriteFile(data, rows, 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := run(t, "calibrate", "--model", model, "--dataset", data, "--nsamples", "1", "--seq-len", "4", "--out", data)
	if want := "--out " + data + " exists (use --force to replace it)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("--out the dataset: err = %v, want one with %q", err, want)
	}
	if strings.Contains(stderr, "calibrate: read") {
		t.Errorf("the dataset was read first:\n%s", stderr)
	}
	if got, err := os.ReadFile(data); err != nil || !bytes.Equal(got, rows) {
		t.Errorf("the dataset after the refusal: %q, %v; want it unchanged, %q", got, err, rows)
	}
	out := filepath.Join(dir, "s.json")
	if err := os.WriteFile(out, []byte("notes"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := run(t, "calibrate", "--model", model, "--dataset", data, "--nsamples", "1", "--seq-len", "4", "--out", out, "--force"); err != nil {
		t.Fatalf("--force: %v\n%s", err, stderr)
	}
	var doc struct {
		Samples []struct {
			InputIDs []int `json:"input_ids"`
		} `json:"samples"`
	}
	if b, err := os.ReadFile(out); err != nil || json.Unmarshal(b, &doc) != nil || len(doc.Samples) != 1 || len(doc.Samples[0].InputIDs) != 4 {
		t.Errorf("--force: %s holds %+v (%v), want the one sample of 4 ids", out, doc, err)
	}
}

// TestServeMaxLenPastContext: a --max-len past the model's
// max_position_embeddings is a usage error naming both, as calibrate's
// --seq-len and verify's --ctx are, where serve started and advertised a
// context of positions the model was never trained on (a QA pass: 100000
// over openchat-tiny's 4096).
func TestServeMaxLenPastContext(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := gptqtool(t, t.TempDir(), nil, "serve", "--model", model, "--port", "0", "--device", "cpu", "--max-len", "5000")
	c = exec.CommandContext(ctx, c.Path, c.Args[1:]...)
	c.Env = append(os.Environ(), "GPTQTOOL_TEST_MAIN=1")
	var stderr strings.Builder
	c.Stderr = &stderr
	code := exitStatus(t, c.Run())
	if ctx.Err() != nil {
		t.Fatalf("serve started:\n%s", stderr.String())
	}
	want := "--max-len 5000 exceeds the model's context of 4096 positions (max_position_embeddings in " + filepath.Join(model, "config.json") + ")"
	if code != 2 || !strings.Contains(stderr.String(), want) {
		t.Errorf("exit status %d, want 2 with %q:\n%s", code, want, stderr.String())
	}
}

// TestServeHelpRoutes: serve --help lists every route the server answers
// and none it does not, where the list left out GET /tokenizer_info (a QA
// pass). A pattern's wildcard is listed without its "..." and "GET /{$}" as
// "GET /".
func TestServeHelpRoutes(t *testing.T) {
	c := gptqtool(t, t.TempDir(), nil, "serve", "--help")
	out, err := c.Output()
	if err != nil {
		t.Fatalf("serve --help: %v", err)
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`\b(GET|POST|PUT|DELETE) +(/\S*)`).FindAllStringSubmatch(string(out), -1) {
		listed[m[1]+" "+m[2]] = true
	}
	routed := map[string]bool{}
	for _, p := range server.New(server.Options{}).Routes() {
		p = strings.NewReplacer("...}", "}", "{$}", "").Replace(p)
		routed[p] = true
		if !listed[p] {
			t.Errorf("serve --help does not list %s:\n%s", p, out)
		}
	}
	for p := range listed {
		if !routed[p] {
			t.Errorf("serve --help lists %s, which the server does not route", p)
		}
	}
}

// TestSynthCountFlags: a --layers below 0 or a --shards below 1 is a usage
// error naming that flag alone, and nothing is written, where --shards 0
// wrote three shards and --layers -1's error also named "--shards 3" (a QA
// pass).
func TestSynthCountFlags(t *testing.T) {
	for _, tc := range []struct {
		flag, value, other string
	}{
		{"--layers", "-1", "--shards"},
		{"--shards", "0", "--layers"},
		{"--shards", "-2", "--layers"},
	} {
		t.Run(tc.flag+" "+tc.value, func(t *testing.T) {
			dir := t.TempDir()
			c := gptqtool(t, dir, nil, "synth", "--config", "cfg", "--tokenizer", "cfg", "--out", "out", tc.flag, tc.value)
			var stderr strings.Builder
			c.Stderr = &stderr
			if code := exitStatus(t, c.Run()); code != 2 {
				t.Errorf("exit status %d, want 2 (stderr %q)", code, stderr.String())
			}
			if s := stderr.String(); !strings.Contains(s, tc.flag+" "+tc.value) || strings.Contains(s, tc.other) {
				t.Errorf("stderr %q: want %s %s named and %s not", s, tc.flag, tc.value, tc.other)
			}
			if _, err := os.Stat(filepath.Join(dir, "out")); !os.IsNotExist(err) {
				t.Errorf("out: %v, want nothing written", err)
			}
		})
	}
}

// TestBenchServeURLChecked: a --url that is not an http or https URL with a
// host is a usage error naming --url, before any request, where bench serve
// sent all 64 requests to "notaurl" and then exited 1 (a QA pass).
func TestBenchServeURLChecked(t *testing.T) {
	for _, u := range []string{"notaurl", "127.0.0.1:18888", "ftp://127.0.0.1:18888", "http://", "http:///v1", "http://[::1"} {
		t.Run(u, func(t *testing.T) {
			c := gptqtool(t, t.TempDir(), nil, "bench", "serve", "--url", u, "--requests", "1", "--concurrency", "1")
			var stdout, stderr strings.Builder
			c.Stdout, c.Stderr = &stdout, &stderr
			if code := exitStatus(t, c.Run()); code != 2 {
				t.Errorf("exit status %d, want 2\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stderr.String(), "--url") || stdout.Len() != 0 {
				t.Errorf("stderr %q, stdout %q: want --url named and no result", stderr.String(), stdout.String())
			}
		})
	}
}

// TestQuantizeHalfActivationsCPU: --activations f16 and bf16 on the CPU
// run the device driver with the GPU's rounding (the CPU backend's
// WithHalf) and say so, with codes of their own: f16's differ from
// bf16's (the dtype is used) and both from the fp32 reference run's.
func TestQuantizeHalfActivationsCPU(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	data := filepath.Join(t.TempDir(), "small.json")
	if err := os.WriteFile(data, []byte(`[{"instruction":"Name a color and say why you like it.","input":"","output":"Blue, because it is the color of the sea and of a clear sky."},{"instruction":"Add 2 and 3.","input":"","output":"2 and 3 make 5."}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	qweight := func(activations string) []byte {
		t.Helper()
		out := filepath.Join(t.TempDir(), "q")
		args := []string{"quantize", "--model", model, "--dataset", data, "--nsamples", "2", "--seq-len", "64", "--device", "cpu", "--out", out}
		if activations != "" {
			args = append(args, "--activations", activations)
		}
		_, stderr, err := run(t, args...)
		if err != nil {
			t.Fatalf("--activations %q: %v\n%s", activations, err, stderr)
		}
		emulated := "device: cpu, " + activations + " activations emulated as the GPU computes them"
		if (activations != "") != strings.Contains(stderr, emulated) {
			t.Errorf("--activations %q: the log says %q: %v\n%s", activations, emulated, strings.Contains(stderr, emulated), stderr)
		}
		set, err := safetensors.OpenDir(out)
		if err != nil {
			t.Fatal(err)
		}
		defer set.Close()
		qw, err := set.Tensor("model.layers.5.mlp.down_proj.qweight")
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Clone(qw.Data)
	}
	ref, f16, bf16 := qweight(""), qweight("f16"), qweight("bf16")
	if bytes.Equal(ref, f16) || bytes.Equal(ref, bf16) || bytes.Equal(f16, bf16) {
		t.Errorf("codes equal across activation dtypes (fp32/f16 %v, fp32/bf16 %v, f16/bf16 %v): the dtype was not used",
			bytes.Equal(ref, f16), bytes.Equal(ref, bf16), bytes.Equal(f16, bf16))
	}
}

// TestBenchSpeedPastContext: bench decode's --prompt + --new and bench
// prefill's --prompts past the model's max_position_embeddings are a usage
// error (exit 2) naming the flags, the sum and the limit with its
// config.json, before the model loads (the directory holds only the
// config: a load would fail otherwise), where both measured positions the
// model never saw. At the limit they run.
func TestBenchSpeedPastContext(t *testing.T) {
	src := fixturePath(t, "models/stories260K-hf-mistral") // max_position_embeddings 512
	dir := t.TempDir()
	raw, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.json")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "decode", "--model", dir, "--prompt", "500", "--new", "100", "--batch", "1"},
			"--prompt 500 + --new 100 = 600 tokens exceeds the model's max_position_embeddings 512 (" + cfg + ")"},
		{[]string{"bench", "prefill", "--model", dir, "--prompts", "128,600,513"},
			"--prompts 600 exceeds the model's max_position_embeddings 512 (" + cfg + ")"},
	} {
		t.Run(c.args[1], func(t *testing.T) {
			out, err := gptqtool(t, t.TempDir(), nil, append(c.args, "--device", "cpu")...).CombinedOutput()
			if code := exitStatus(t, err); code != 2 || !strings.Contains(string(out), c.want) {
				t.Errorf("exit status %d, output:\n%s\nwant 2 and %q", code, out, c.want)
			}
		})
	}
	t.Run("at the limit", func(t *testing.T) {
		if _, _, err := run(t, "bench", "decode", "--model", src, "--prompt", "500", "--new", "12", "--batch", "1", "--device", "cpu"); err != nil {
			t.Errorf("bench decode at max_position_embeddings: %v", err)
		}
		if _, _, err := run(t, "bench", "prefill", "--model", src, "--prompts", "512", "--repeat", "1", "--device", "cpu"); err != nil {
			t.Errorf("bench prefill at max_position_embeddings: %v", err)
		}
	})
}

// TestVerifyDefaultCtx: without --ctx, verify perplexity and kl take
// windows of 2048 tokens, or of the model's max_position_embeddings where
// that is smaller (stories260K: 512), where they refused a flag the user
// never gave ("--ctx 2048 exceeds the model's context of 512"); an
// explicit --ctx past the context is still a usage error.
func TestVerifyDefaultCtx(t *testing.T) {
	model := fixturePath(t, "models/stories260K-hf-mistral")
	wiki := fixturePath(t, "datasets/wikitext-2-raw/wiki.test.raw")
	out, _, err := run(t, "verify", "perplexity", "--model", model, "--text", wiki, "--max-windows", "1")
	if err != nil {
		t.Fatalf("verify perplexity without --ctx: %v", err)
	}
	if !strings.Contains(out, "tokens 512 windows 1 ctx 512") {
		t.Errorf("verify perplexity without --ctx:\n%s\nwant one window of the model's 512 positions", out)
	}
	out, _, err = run(t, "verify", "kl", "--model", model, "--baseline", model, "--text", wiki, "--max-windows", "1")
	if err != nil || !strings.Contains(out, "ctx 512") {
		t.Errorf("verify kl without --ctx: %v\n%s\nwant windows of 512", err, out)
	}
	_, _, err = run(t, "verify", "perplexity", "--model", model, "--text", wiki, "--ctx", "2048", "--max-windows", "1")
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--ctx 2048 exceeds the model's context of 512") {
		t.Errorf("an explicit --ctx 2048: %v, want the usage error", err)
	}
}

// TestQuantizeEmptyBranches: an explicitly empty --branches (or one of
// commas and spaces only) is a usage error naming the flag and its forms,
// where it ran as an ordinary single quantization of --bits/--group.
func TestQuantizeEmptyBranches(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	for _, spec := range []string{"", " ", ",", " , "} {
		t.Run(fmt.Sprintf("%q", spec), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "q")
			_, _, err := run(t, "quantize", "--model", model, "--rtn", "--out", out, "--branches", spec)
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("err = %v, want a usage error (exit 2)", err)
			}
			for _, want := range []string{"--branches", `"all"`, ".json"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("err = %q, want it to name %s", err, want)
				}
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("%s: %v, want nothing written", out, err)
			}
		})
	}
}

// TestAutoCPUWarnsGPUFlags: where --device auto falls back to the cpu,
// --gpu-memory and --chunk-rows (fp32 activations) are named as ignored on
// stderr, where they were ignored silently (--device cpu refuses them:
// TestUsageErrors).
func TestAutoCPUWarnsGPUFlags(t *testing.T) {
	if cudaHere() {
		t.Skip("a CUDA device loads here: --device auto does not fall back to the cpu")
	}
	model := fixturePath(t, "models/openchat-tiny")
	data := fixturePath(t, "datasets/instruct/alpaca_en_demo.json")
	_, stderr, err := run(t, "quantize", "--model", model, "--dataset", data, "--nsamples", "2", "--seq-len", "16", "--estimate=false",
		"--dry-run", "--out", filepath.Join(t.TempDir(), "q"), "--gpu-memory", "8GiB", "--chunk-rows", "9")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"warning: --gpu-memory 8GiB ignored: running on the cpu", "warning: --chunk-rows 9 ignored"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
}

// TestServeAllowedOriginsFlag: --allowed-origins takes origins
// (scheme://host[:port]) or *, and anything else is a usage error naming
// the flag, before the model is read.
func TestServeAllowedOriginsFlag(t *testing.T) {
	for _, v := range []string{"app.example", "https://app.example/chat", "https://app.example?x=1", "*,"} {
		_, _, err := run(t, "serve", "--model", filepath.Join(t.TempDir(), "none"), "--allowed-origins", v)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--allowed-origins") || !strings.Contains(err.Error(), "want an origin") {
			t.Errorf("--allowed-origins %q: %v, want a usage error naming the flag and what it takes", v, err)
		}
	}
}

// TestHelpUnknownTopic: "help" of a command that does not exist is a usage
// error (exit 2) naming it, as "gptqtool nosuch" is, where cobra's help
// printed "Unknown help topic" and the usage and exited 0, and "help bench
// nosuch" printed bench's help, so that a script could not tell a typo from
// help it asked for (a QA pass). Help of real commands still exits 0.
func TestHelpUnknownTopic(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string // in stderr for an error, in stdout for help
	}{
		{[]string{"help", "nosuch"}, 2, "nosuch"},
		{[]string{"help", "bench", "decod"}, 2, "decod"},
		{[]string{"help", "verify", "nosuch"}, 2, "nosuch"},
		{[]string{"help", "inspect"}, 0, "gptqtool inspect"},
		{[]string{"help", "bench", "decode"}, 0, "gptqtool bench decode"},
		{[]string{"help"}, 0, "Available Commands"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			c := gptqtool(t, t.TempDir(), nil, tc.args...)
			var stdout, stderr strings.Builder
			c.Stdout, c.Stderr = &stdout, &stderr
			if code := exitStatus(t, c.Run()); code != tc.code {
				t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout.String(), stderr.String())
			}
			got := stdout.String()
			if tc.code != 0 {
				got = stderr.String()
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("output %q lacks %q", got, tc.want)
			}
		})
	}
}

// TestSynthDTypeUsage: a --dtype synth does not write is a usage error
// (exit 2) naming the flag, before anything is read or written, as a bad
// --layers or --shards is, where it exited 1 with "synth: dtype" (a QA
// pass).
func TestSynthDTypeUsage(t *testing.T) {
	for _, v := range []string{"fp8", "F16", "float16", ""} {
		t.Run(v, func(t *testing.T) {
			dir := t.TempDir()
			c := gptqtool(t, dir, nil, "synth", "--config", "cfg", "--tokenizer", "cfg", "--out", "out", "--dtype", v)
			var stderr strings.Builder
			c.Stderr = &stderr
			if code := exitStatus(t, c.Run()); code != 2 {
				t.Errorf("exit status %d, want 2 (stderr %q)", code, stderr.String())
			}
			if s := stderr.String(); !strings.Contains(s, fmt.Sprintf("--dtype %q", v)) {
				t.Errorf("stderr %q: want --dtype %q named", s, v)
			}
			if _, err := os.Stat(filepath.Join(dir, "out")); !os.IsNotExist(err) {
				t.Errorf("out: %v, want nothing written", err)
			}
		})
	}
}

// TestSynthTokenizerChecked: a --tokenizer that does not exist, is a file,
// or holds neither tokenizer.json nor tokenizer.model is refused naming it,
// before anything is written, where synth wrote a checkpoint without
// tokenizer files and exited 0 (a QA pass). A directory with a tokenizer
// gives the checkpoint its files.
func TestSynthTokenizerChecked(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, tok string
		ok        bool
	}{
		{"missing", filepath.Join(dir, "nosuch"), false},
		{"file", filepath.Join(model, "config.json"), false},
		{"empty", filepath.Join(dir, "empty"), false},
		{"model", model, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, "out-"+tc.name)
			_, _, err := run(t, "synth", "--config", model, "--tokenizer", tc.tok, "--out", out, "--layers", "1", "--shards", "1")
			if !tc.ok {
				if err == nil || !strings.Contains(err.Error(), tc.tok) {
					t.Errorf("err %v: want an error naming %s", err, tc.tok)
				}
				if _, err := os.Stat(out); !os.IsNotExist(err) {
					t.Errorf("out: %v, want nothing written", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
				if _, err := os.Stat(filepath.Join(out, f)); err != nil {
					t.Errorf("%s: %v", f, err)
				}
			}
		})
	}
}

// TestCompletionUnknownShell: "completion" with a shell it has no script
// for is a usage error (exit 2) naming it, as "bench decod" is, where
// cobra printed the completion command's help on stdout and exited 0, so
// that "gptqtool completion bsh > file" wrote help text as a script (a QA
// pass). A real shell still gets its script.
func TestCompletionUnknownShell(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string // in stderr for an error, in stdout otherwise
	}{
		{[]string{"completion", "bsh"}, 2, `unknown command "bsh"`},
		{[]string{"completion", "bash"}, 0, "bash completion"},
		{[]string{"completion"}, 0, "Available Commands"},
		{[]string{"completion", "--help"}, 0, "Available Commands"},
		{[]string{"completion", "zsh", "--help"}, 0, "zsh"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			c := gptqtool(t, t.TempDir(), nil, tc.args...)
			var stdout, stderr strings.Builder
			c.Stdout, c.Stderr = &stdout, &stderr
			if code := exitStatus(t, c.Run()); code != tc.code {
				t.Errorf("exit status %d, want %d\nstdout:\n%.300s\nstderr:\n%s", code, tc.code, stdout.String(), stderr.String())
			}
			got := stdout.String()
			if tc.code != 0 {
				got = stderr.String()
				if stdout.Len() != 0 {
					t.Errorf("stdout %.200q, want nothing", stdout.String())
				}
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("output %.300q lacks %q", got, tc.want)
			}
		})
	}
}

// TestBenchQuantizeNothingToMeasure: bench quantize with --dry-run, or
// with --resume of a checkpoint already complete, runs no quantization: the
// first is a usage error naming --dry-run, the second an error saying the
// checkpoint is complete, where both panicked on the missing summary (a
// nil pointer, exit status 2 with a goroutine dump) after printing the
// plan (a QA pass). Neither prints a bench document.
func TestBenchQuantizeNothingToMeasure(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	dir := t.TempDir()
	data := filepath.Join(dir, "small.txt")
	if err := os.WriteFile(data, []byte("The lighthouse keeper climbed the stairs every evening.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "q")
	args := []string{"bench", "quantize", "--model", model, "--dataset", data, "--nsamples", "2", "--seq-len", "16", "--device", "cpu", "--out", out}
	for _, tc := range []struct {
		name  string
		extra []string
		code  int
		want  string
	}{
		{"dry run", []string{"--dry-run"}, 2, "--dry-run"},
		{"first run", nil, 0, ""},
		{"resume complete", []string{"--resume"}, 1, "already complete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := gptqtool(t, dir, nil, append(append([]string(nil), args...), tc.extra...)...)
			var stdout, stderr strings.Builder
			c.Stdout, c.Stderr = &stdout, &stderr
			code := exitStatus(t, c.Run())
			if code != tc.code || strings.Contains(stderr.String(), "panic") {
				t.Fatalf("exit status %d, want %d\nstderr:\n%.2000s", code, tc.code, stderr.String())
			}
			if tc.code == 0 {
				var doc map[string]any
				if err := json.Unmarshal([]byte(stdout.String()), &doc); err != nil || doc["summary"] == nil {
					t.Errorf("stdout is not a bench document with a summary (%v):\n%.500s", err, stdout.String())
				}
				return
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.want)
			}
			if strings.Contains(stdout.String(), `"wall_s"`) {
				t.Errorf("stdout holds a bench document:\n%.500s", stdout.String())
			}
		})
	}
}

// TestBenchJSONFlag: every bench command takes --json (its output is one
// JSON document either way), as the other commands and the style guide's
// "gptqtool bench … --json" have it, where decode, prefill and serve
// refused it as an unknown flag, exit 2 (a QA pass).
func TestBenchJSONFlag(t *testing.T) {
	for _, sub := range []string{"decode", "prefill", "quantize", "serve"} {
		t.Run(sub, func(t *testing.T) {
			if _, _, err := run(t, "bench", sub, "--json", "--help"); err != nil {
				t.Errorf("bench %s --json --help: %v", sub, err)
			}
		})
	}
	t.Run("decode runs", func(t *testing.T) {
		model := fixturePath(t, "models/openchat-tiny")
		out, _, err := run(t, "bench", "decode", "--model", model, "--device", "cpu", "--batch", "1", "--prompt", "2", "--new", "1", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Runs []map[string]any `json:"runs"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Runs) != 1 {
			t.Errorf("stdout is not one bench document with one run (%v):\n%s", err, out)
		}
	})
}

// TestHelpCompletesCommands: shell completion after "help" offers the
// commands (and a group's subcommands), as cobra's own help command did
// before gptqtool replaced it to make unknown topics usage errors.
func TestHelpCompletesCommands(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"__complete", "help", "insp"}, "inspect"},
		{[]string{"__complete", "help", "bench", "dec"}, "decode"},
	} {
		out, _, err := run(t, tc.args...)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("%v: %q, %v; want %q offered", tc.args, out, err, tc.want)
		}
	}
}

// TestServeSpeculateFlags: --speculate and --speculate-ngram values that
// make no sense are refused by name, as usage errors, before anything
// loads (the --model given holds no model: its absence is not what is
// said).
func TestServeSpeculateFlags(t *testing.T) {
	model := t.TempDir()
	for _, c := range []struct{ flag, val, want string }{
		{"--speculate-ngram", "3:2", "--speculate-ngram \"3:2\": want MIN:MAX"},
		{"--speculate-ngram", "0:2", "1 <= MIN <= MAX"},
		{"--speculate-ngram", "2", "such as 2:4"},
		{"--speculate", "-1", "--speculate -1: want 0 (off)"},
	} {
		_, _, err := run(t, "serve", "--model", model, "--port", "0", "--device", "cpu", c.flag, c.val)
		var ue usageError
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.As(err, &ue) {
			t.Errorf("serve %s %s: %v, want a usage error saying %q", c.flag, c.val, err, c.want)
		}
	}
}

// inspectJSON runs inspect --json on dir and decodes its report into rep.
func inspectJSON(t *testing.T, dir string, rep any) {
	t.Helper()
	out, stderr, err := run(t, "inspect", dir, "--json")
	if err != nil {
		t.Fatalf("inspect: %v\n%s", err, stderr)
	}
	if err := json.Unmarshal([]byte(out), rep); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, out)
	}
}

// inspectCounts is the part of inspect --json's report that every model
// command test checks: the model type, and the parameters counted from the
// tensors and from the config.
type inspectCounts struct {
	ModelType        string `json:"model_type"`
	NumParameters    int64  `json:"num_parameters"`
	ConfigParameters int64  `json:"config_parameters"`
}

// counted reports whether the report is of modelType with equal, nonzero
// counts.
func (c inspectCounts) counted(modelType string) bool {
	return c.ModelType == modelType && c.NumParameters == c.ConfigParameters && c.NumParameters != 0
}
