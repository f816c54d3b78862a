package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/x448/float16"

	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/internal/fixtures"
)

// quantizedTiny writes a 4-bit g128 round-to-nearest checkpoint of
// openchat-tiny (instant) into a fresh directory.
func quantizedTiny(t *testing.T) (model, out string) {
	t.Helper()
	model = fixturePath(t, "models/openchat-tiny")
	out = filepath.Join(t.TempDir(), "q")
	if _, _, err := run(t, "quantize", "--model", model, "--rtn", "--bits", "4", "--group", "128", "--out", out); err != nil {
		t.Fatal(err)
	}
	return model, out
}

// rewriteTensor rewrites dir/model.safetensors with fn applied to the
// bytes of one tensor.
func rewriteTensor(t *testing.T, dir, name string, fn func(data []byte)) {
	t.Helper()
	found := false
	fixtures.RewriteTensors(t, dir, func(tt *safetensors.Tensor) bool {
		if tt.Name == name {
			fn(tt.Data)
			found = true
		}
		return true
	})
	if !found {
		t.Fatalf("no tensor %s in %s", name, dir)
	}
}

// TestDamagedScalesRefused: a GPTQ checkpoint whose scales hold NaN, Inf
// or 0 is refused at load by every command that runs it, naming the
// tensor, and the format check fails on it (issue 11, finding 1).
func TestDamagedScalesRefused(t *testing.T) {
	base, clean := quantizedTiny(t)
	wiki := fixturePath(t, "datasets/wikitext-2-raw/wiki.test.raw")
	const tensor = "model.layers.1.mlp.down_proj.scales"
	for _, tc := range []struct {
		name string
		bits uint16
		want string
	}{
		{"NaN", 0x7e00, "is NaN"},
		{"Inf", 0x7c00, "is +Inf"},
		{"zero", 0x0000, "is 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "q")
			copyDir(t, clean, dir)
			rewriteTensor(t, dir, tensor, func(d []byte) { binary.LittleEndian.PutUint16(d[2*37:], tc.bits) })
			for _, args := range [][]string{
				{"verify", "perplexity", "--model", dir, "--text", wiki, "--ctx", "128", "--max-windows", "1", "--json"},
				{"verify", "kl", "--model", dir, "--baseline", base, "--text", wiki, "--ctx", "128", "--max-windows", "1"},
				{"generate", "--model", dir, "--prompt", "Hello", "--max-tokens", "4"},
			} {
				stdout, _, err := run(t, args...)
				var ue usageError
				if err == nil || errors.As(err, &ue) {
					t.Fatalf("%s: err = %v (stdout %q), want a load error", args[0]+" "+args[1], err, stdout)
				}
				for _, w := range []string{tensor, "scales[0][37]", tc.want, "model.safetensors"} {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s: error %q lacks %q", args[0], err, w)
					}
				}
				if strings.Contains(stdout, "NaN") {
					t.Errorf("%s printed NaN: %s", args[0], stdout)
				}
			}
			stdout, _, err := run(t, "verify", "format", dir)
			if err == nil || !strings.Contains(stdout, "FAIL scales finite and positive: "+tensor) {
				t.Errorf("verify format: err %v\n%s", err, stdout)
			}
		})
	}
}

// copyDir copies the files of src (no subdirectories) into a new dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNonFiniteResultIsAnError: a floating-point checkpoint whose weights
// hold a NaN (nothing to refuse at load: any value is a valid float) gives
// an error from perplexity, kl and generate, never a printed NaN with exit 0
// (issue 11, finding 1).
func TestNonFiniteResultIsAnError(t *testing.T) {
	src := fixturePath(t, "models/stories260K-hf-mistral")
	dir := filepath.Join(t.TempDir(), "nan")
	copyDir(t, src, dir)
	rewriteTensor(t, dir, "model.norm.weight", func(d []byte) { binary.LittleEndian.PutUint32(d[4*5:], 0x7fc00000) })
	text := filepath.Join(t.TempDir(), "text.txt")
	if err := os.WriteFile(text, []byte(strings.Repeat("Once upon a time there was a little girl. ", 40)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"verify", "perplexity", "--model", dir, "--text", text, "--ctx", "64", "--json"},
		{"verify", "kl", "--model", dir, "--baseline", src, "--text", text, "--ctx", "64", "--json"},
		{"generate", "--model", dir, "--prompt", "Once upon a time", "--max-tokens", "4", "--json"},
	} {
		stdout, _, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), "non-finite") || !strings.Contains(err.Error(), "NaN") {
			t.Errorf("%s: err = %v, want a non-finite error", strings.Join(args[:2], " "), err)
		}
		if stdout != "" {
			t.Errorf("%s printed a result: %s", strings.Join(args[:2], " "), stdout)
		}
	}
}

// withLayers copies a checkpoint and rewrites its config.json to claim n
// layers.
func withLayers(t *testing.T, src string, n int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "cfg")
	copyDir(t, src, dir)
	editConfig(t, dir, func(doc map[string]any) { doc["num_hidden_layers"] = n })
	return dir
}

// editConfig rewrites dir/config.json with edit applied to its document.
func editConfig(t *testing.T, dir string, edit func(doc map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	raw, _ = json.Marshal(doc)
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConfigFewerLayersThanWeights: config.json claiming fewer layers than
// the weights hold is refused by generate, perplexity and quantize (which
// leaves nothing behind), flagged by inspect (which counts the parameters
// the files hold) and by the format check (issue 11, finding 2).
func TestConfigFewerLayersThanWeights(t *testing.T) {
	dir := withLayers(t, fixturePath(t, "models/stories260K-hf-mistral"), 3)
	text := filepath.Join(t.TempDir(), "t.txt")
	os.WriteFile(text, []byte(strings.Repeat("Once upon a time there was a cat. ", 30)), 0o644)
	out := filepath.Join(t.TempDir(), "q")
	for _, args := range [][]string{
		{"generate", "--model", dir, "--prompt", "Once upon a time", "--max-tokens", "3"},
		{"verify", "perplexity", "--model", dir, "--text", text, "--ctx", "32"},
		{"quantize", "--model", dir, "--rtn", "--bits", "8", "--group", "-1", "--out", out},
	} {
		_, _, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), "model.layers.3.") || !strings.Contains(err.Error(), "hold 5 layers") || !strings.Contains(err.Error(), "num_hidden_layers 3") {
			t.Errorf("%s: err = %v, want a refusal naming the layers the config leaves out", args[0], err)
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
		t.Errorf("quantize left %v behind", entries)
	}
	stdout, _, err := run(t, "inspect", "--json", dir)
	if err == nil || !strings.Contains(err.Error(), "2 problems found") {
		t.Errorf("inspect: err = %v, want 2 problems found", err)
	}
	var rep struct {
		NumParameters    int64    `json:"num_parameters"`
		ConfigParameters int64    `json:"config_parameters"`
		Problems         []string `json:"problems"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.NumParameters != 292800 || rep.ConfigParameters != 201920 || len(rep.Problems) != 2 {
		t.Errorf("inspect: %+v, want 292800 parameters held, 201920 implied and 2 problems", rep)
	}
	stdout, _, _ = run(t, "inspect", dir)
	if !strings.Contains(stdout, "PROBLEM") || !strings.Contains(stdout, "292800") {
		t.Errorf("inspect text does not flag the disagreement:\n%s", stdout)
	}

	// A quantized checkpoint whose config was cut afterwards fails the
	// format check.
	_, q := quantizedTiny(t)
	cut := withLayers(t, q, 5)
	stdout, _, err = run(t, "verify", "format", cut)
	if err == nil || !strings.Contains(stdout, "FAIL every tensor explained by config.json: model.layers.5.") {
		t.Errorf("verify format of a cut config: err %v\n%s", err, stdout)
	}
}

// TestConfigMoreLayersThanWeights: config.json claiming more layers than
// the weights hold is refused by generate and convert, and inspect names
// the missing tensors, not only the parameter counts that differ.
func TestConfigMoreLayersThanWeights(t *testing.T) {
	dir := withLayers(t, fixturePath(t, "models/stories260K-hf-mistral"), 7)
	out := filepath.Join(t.TempDir(), "c")
	for _, args := range [][]string{
		{"generate", "--model", dir, "--prompt", "Once upon a time", "--max-tokens", "3"},
		{"convert", "--in", dir, "--out", out},
	} {
		if _, _, err := run(t, args...); err == nil || !strings.Contains(err.Error(), "model.layers.5.") {
			t.Errorf("%s: err = %v, want a refusal naming the missing layers", args[0], err)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("convert left %s behind (%v)", out, err)
	}
	stdout, _, err := run(t, "inspect", "--json", dir)
	if err == nil || !strings.Contains(err.Error(), "problems found") {
		t.Errorf("inspect: err = %v, want problems found", err)
	}
	var rep struct {
		Problems []string `json:"problems"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(rep.Problems, func(p string) bool {
		return strings.Contains(p, "model.layers.5.input_layernorm.weight") && strings.Contains(p, "hold 5 layers")
	}) {
		t.Errorf("inspect problems %q name no missing tensor", rep.Problems)
	}
}

// TestInspectExitStatus: inspect prints its whole report, PROBLEM lines
// included (or the JSON document with its problems), and then exits 1 with
// a line counting the problems, so that a script can rely on its status; a
// sound checkpoint exits 0.
func TestInspectExitStatus(t *testing.T) {
	src := fixturePath(t, "models/stories260K-hf-mistral")
	dir := withLayers(t, src, 7) // missing tensors, and a parameter count that differs
	for _, tc := range []struct {
		name, dir string
		json      bool
		code      int
		stderr    string
	}{
		{"problems", dir, false, 1, dir + ": 2 problems found"},
		{"problems json", dir, true, 1, dir + ": 2 problems found"},
		{"sound", src, false, 0, ""},
		{"sound json", src, true, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"inspect", tc.dir}
			if tc.json {
				args = append(args, "--json")
			}
			c := gptqtool(t, t.TempDir(), nil, args...)
			var stdout, stderr strings.Builder
			c.Stdout, c.Stderr = &stdout, &stderr
			code := exitStatus(t, c.Run())
			if code != tc.code {
				t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout.String(), stderr.String())
			}
			if tc.stderr != "" && !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.stderr)
			}
			if tc.json {
				var rep struct {
					Problems []string `json:"problems"`
				}
				if err := json.Unmarshal([]byte(stdout.String()), &rep); err != nil {
					t.Fatalf("stdout is not one JSON document: %v\n%s", err, stdout.String())
				}
				if got := len(rep.Problems); (got > 0) != (tc.code != 0) {
					t.Errorf("%d problems in the report, exit status %d", got, code)
				}
				return
			}
			// The report is complete: its last line (size on disk,
			// quantization) comes after the PROBLEM lines.
			if got, want := strings.Count(stdout.String(), "PROBLEM"), map[int]int{0: 0, 1: 2}[tc.code]; got != want {
				t.Errorf("%d PROBLEM lines, want %d:\n%s", got, want, stdout.String())
			}
			if !strings.Contains(stdout.String(), "quantization   none") {
				t.Errorf("the report stops early:\n%s", stdout.String())
			}
		})
	}
}

// TestInspectNamesMisshapenTensors: a config.json whose intermediate_size
// disagrees with the weights gets a PROBLEM naming the first tensors with
// their shape and the config's, beside the parameter counts that differ,
// for a floating-point and a GPTQ checkpoint (a QA pass: only the counts
// were reported, where loading names the tensor).
func TestInspectNamesMisshapenTensors(t *testing.T) {
	_, q := quantizedTiny(t)
	for _, tc := range []struct {
		name, src    string
		intermediate int
		want         string
	}{
		{"float", fixturePath(t, "models/stories260K-hf-mistral"), 200, `tensor "model.layers.0.mlp.gate_proj.weight": shape [172 64], want [200 64]`},
		{"gptq", q, 1024, `tensor "model.layers.0.mlp.down_proj.qweight": shape [112 256], want [128 256]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "m")
			copyDir(t, tc.src, dir)
			editConfig(t, dir, func(doc map[string]any) { doc["intermediate_size"] = tc.intermediate })
			stdout, _, err := run(t, "inspect", "--json", dir)
			if err == nil {
				t.Errorf("inspect of a config that disagrees with its weights: no error")
			}
			var rep struct {
				Problems []string `json:"problems"`
			}
			if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(rep.Problems, func(p string) bool {
				return strings.Contains(p, tc.want) && strings.Contains(p, "intermediate_size "+strconv.Itoa(tc.intermediate))
			}) {
				t.Errorf("inspect problems %q do not say %s", rep.Problems, tc.want)
			}
		})
	}
}

// dropTensors rewrites dir/model.safetensors without the named tensors.
func dropTensors(t *testing.T, dir string, names ...string) {
	t.Helper()
	dropped := 0
	fixtures.RewriteTensors(t, dir, func(tt *safetensors.Tensor) bool {
		if slices.Contains(names, tt.Name) {
			dropped++
			return false
		}
		return true
	})
	if dropped != len(names) {
		t.Fatalf("%s lacks some of %v", dir, names)
	}
}

// TestMissingTensorsNamed: a checkpoint lacking several tensors is refused
// by generate, perplexity and quantize naming every one, where each named
// only the first it asked for (a QA pass); a tensor under a wrong name is
// both unexplained and missing, two PROBLEM lines of inspect.
func TestMissingTensorsNamed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	copyDir(t, fixturePath(t, "models/stories260K-hf-mistral"), dir)
	dropTensors(t, dir, "model.layers.1.mlp.up_proj.weight", "model.layers.3.self_attn.o_proj.weight", "model.norm.weight")
	text := filepath.Join(t.TempDir(), "t.txt")
	os.WriteFile(text, []byte(strings.Repeat("Once upon a time there was a cat. ", 30)), 0o644)
	want := "3 tensors that the config needs are missing (model.layers.1.mlp.up_proj.weight, model.layers.3.self_attn.o_proj.weight, model.norm.weight)"
	for _, args := range [][]string{
		{"generate", "--model", dir, "--prompt", "Once upon a time", "--max-tokens", "3"},
		{"verify", "perplexity", "--model", dir, "--text", text, "--ctx", "32"},
		{"quantize", "--model", dir, "--rtn", "--bits", "8", "--group", "-1", "--out", filepath.Join(t.TempDir(), "q")},
	} {
		if _, _, err := run(t, args...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want one that says %q", args[0], err, want)
		}
	}

	// A renamed tensor.
	fixtures.RewriteTensors(t, dir, func(tt *safetensors.Tensor) bool {
		if tt.Name == "model.layers.2.mlp.down_proj.weight" {
			tt.Name = "model.layers.2.mlp.down.weight"
		}
		return true
	})
	stdout, _, _ := run(t, "inspect", "--json", dir)
	var rep struct {
		Problems []string `json:"problems"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 3 || !strings.Contains(rep.Problems[0], "does not explain (model.layers.2.mlp.down.weight)") ||
		!strings.Contains(rep.Problems[1], "4 tensors that the config needs are missing (model.layers.1.mlp.up_proj.weight, model.layers.2.mlp.down_proj.weight,") {
		t.Errorf("inspect problems %q, want the unexplained tensor, the missing ones and the parameter count", rep.Problems)
	}
}

// TestConfigsDisagree: a GPTQ checkpoint whose config.json
// quantization_config gives other bits than its quantize_config.json (vLLM
// would read one, AutoGPTQ the other) is refused by generate and convert
// and flagged by inspect, naming both files and the key.
func TestConfigsDisagree(t *testing.T) {
	_, q := quantizedTiny(t)
	editConfig(t, q, func(doc map[string]any) { doc["quantization_config"].(map[string]any)["bits"] = 8 })
	out := filepath.Join(t.TempDir(), "c")
	for _, args := range [][]string{
		{"generate", "--model", q, "--prompt", "Hello", "--max-tokens", "2"},
		{"convert", "--in", q, "--out", out, "--checkpoint-format", "gptq_v2"},
	} {
		_, _, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), "quantize_config.json") || !strings.Contains(err.Error(), "bits 4 vs 8") {
			t.Errorf("%s: err = %v, want a refusal naming the disagreement", args[0], err)
		}
	}
	stdout, _, err := run(t, "inspect", q)
	if err == nil || !strings.Contains(stdout, "PROBLEM") || !strings.Contains(stdout, "bits 4 vs 8") {
		t.Errorf("inspect: %v\n%s", err, stdout)
	}
}

// TestGeneratePromptFromStdin: --prompt - drops the one newline that ends
// standard input, so that a piped prompt is the prompt typed in the flag.
func TestGeneratePromptFromStdin(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	want, _, err := run(t, "generate", "--model", model, "--prompt", "Hello there", "--chat", "--max-tokens", "1", "--ids")
	if err != nil {
		t.Fatal(err)
	}
	got, err := runRoot(t, "Hello there\n", "generate", "--model", model, "--prompt", "-", "--chat", "--max-tokens", "1", "--ids")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("--prompt - with \"Hello there\\n\": ids %q, want %q as for --prompt \"Hello there\"", got, want)
	}
}

// TestGenerateChatTemplate: generate takes --chat-template like tokenize,
// calibrate and serve, and renders the prompt with it (issue 11, finding 8).
func TestGenerateChatTemplate(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	msgs := filepath.Join(t.TempDir(), "m.json")
	os.WriteFile(msgs, []byte(`[{"role":"user","content":"Hello"}]`), 0o644)
	for _, tmpl := range []string{"openchat", "openchat-math"} {
		want, _, err := run(t, "tokenize", "--model", model, "--chat", msgs, "--chat-template", tmpl)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := run(t, "generate", "--model", model, "--prompt", "Hello", "--chat-template", tmpl, "--max-tokens", "1", "--ids")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got, strings.TrimSpace(want)+" ") {
			t.Errorf("%s: generate ids %q do not start with the rendered prompt %q", tmpl, got, want)
		}
	}
	if _, _, err := run(t, "generate", "--model", model, "--prompt", "x", "--chat-template", "llama3"); err == nil || !strings.Contains(err.Error(), "llama3") {
		t.Errorf("unknown template: err = %v", err)
	}
}

// TestJSONKeysSnakeCase: every key of inspect's and verify format's JSON
// documents is snake_case, the loader entries included (issue 11, finding
// 8). The dtypes map is keyed by safetensors dtype names.
func TestJSONKeysSnakeCase(t *testing.T) {
	_, q := quantizedTiny(t)
	snake := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if !snake.MatchString(k) {
					t.Errorf("%s: key %q is not snake_case", path, k)
				}
				if k != "dtypes" {
					walk(path+"."+k, c)
				}
			}
		case []any:
			for _, c := range v {
				walk(path+"[]", c)
			}
		}
	}
	for _, args := range [][]string{{"inspect", "--json", q}, {"verify", "format", "--json", q}} {
		stdout, _, err := run(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
			t.Fatal(err)
		}
		walk(args[0], doc)
		if !strings.Contains(stdout, `"loader": "ExLlamaV2"`) {
			t.Errorf("%s: no loader entries:\n%s", args[0], stdout)
		}
	}
}

// TestGoVersionAgrees: the README's "Go X or later" is the go line of
// go.mod, so that the Go it names builds the module without fetching a
// newer toolchain (issue 11, finding 8).
func TestGoVersionAgrees(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)(\.0)?$`).FindSubmatch(mod)
	if m == nil {
		t.Fatalf("go.mod: no go line of the form 1.N or 1.N.0 (a patch release would make Go 1.N fetch a toolchain)")
	}
	if want := "Go " + string(m[1]) + " or later"; !strings.Contains(string(readme), want) {
		t.Errorf("README.md does not say %q (go.mod: go %s%s)", want, m[1], m[2])
	}
}

// badDataset is a dataset file that fails to parse: a check that reports
// its own problem instead ran before the dataset was read.
func badDataset(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(p, []byte(`[{"instruction": not json`), 0o644)
	return p
}

// TestPreflightRefusesOversized: a job that cannot fit in memory is refused
// before the dataset is read, with the estimate, the limit and what to
// change; under prlimit (address space, data segment) the limit is named
// (issue 11, finding 5 and the preflight).
func TestPreflightRefusesOversized(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	data := badDataset(t)
	out := filepath.Join(t.TempDir(), "q")
	args := []string{"quantize", "--model", model, "--dataset", data, "--nsamples", "1000000", "--seq-len", "1024", "--out", out}
	_, _, err := run(t, args...)
	var ue usageError
	if err == nil || errors.As(err, &ue) {
		t.Fatalf("err = %v, want a refusal (exit 1)", err)
	}
	for _, w := range []string{"refused before any work", "needs about", "activations 1048.58 GB", "--nsamples (1000000)", "--seq-len (1024)"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("refusal %q lacks %q", err, w)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("the refused run left %s", out)
	}
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("prlimit not installed")
	}
	for _, tc := range []struct{ limit, want string }{
		{"--as=3000000000", "address-space limit"},
		{"--data=2000000000", "data-segment limit"},
	} {
		c := gptqtool(t, t.TempDir(), []string{"prlimit", tc.limit}, "quantize", "--model", model, "--dataset", data,
			"--nsamples", "100000", "--seq-len", "1024", "--out", "q")
		outb, err := c.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("prlimit %s: %v (want exit 1)\n%s", tc.limit, err, outb)
		}
		for _, w := range []string{"refused before any work", tc.want, "activations 104.86 GB", "lower --nsamples (100000)"} {
			if !strings.Contains(string(outb), w) {
				t.Errorf("prlimit %s: output lacks %q:\n%s", tc.limit, w, outb)
			}
		}
		if strings.Contains(string(outb), "invalid character") {
			t.Errorf("prlimit %s: the dataset was read before the refusal:\n%s", tc.limit, outb)
		}
	}
}

// TestDryRun: --dry-run plans without writing anything: per branch the
// planned checkpoint size (within 0.1% of what a run writes), memory
// against what is free, disk, and an estimated time.
func TestDryRun(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	data, _ := filepath.Abs("../../testdata/datasets/alpaca_en_demo.parquet")
	out := filepath.Join(t.TempDir(), "q")
	stdout, _, err := run(t, "quantize", "--model", model, "--dataset", data, "--nsamples", "8", "--seq-len", "128",
		"--bits", "4", "--group", "32", "--out", out, "--dry-run", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Branches []struct {
			PlannedSizeBytes int64  `json:"planned_size_bytes"`
			State            string `json:"state"`
		} `json:"branches"`
		HostNeed  int64   `json:"host_bytes_needed"`
		HostAvail int64   `json:"host_bytes_available"`
		DiskNeed  int64   `json:"disk_bytes_needed"`
		Seconds   float64 `json:"estimated_seconds"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if len(rep.Branches) != 1 || rep.Branches[0].State != "new" || rep.HostNeed <= 0 || rep.HostAvail <= 0 || rep.Seconds <= 0 || rep.DiskNeed != rep.Branches[0].PlannedSizeBytes {
		t.Errorf("dry run report: %+v", rep)
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
		t.Fatalf("--dry-run wrote %v", entries)
	}
	if _, _, err := run(t, "quantize", "--model", model, "--rtn", "--bits", "4", "--group", "32", "--out", out); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(out, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if got, plan := st.Size(), rep.Branches[0].PlannedSizeBytes; got < plan || float64(got-plan) > 0.001*float64(plan) {
		t.Errorf("model.safetensors is %d bytes, planned %d", got, plan)
	}
	stdout, _, err = run(t, "quantize", "--model", model, "--dataset", data, "--nsamples", "8", "--seq-len", "128", "--out", out, "--dry-run", "--estimate=false")
	if err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("dry run onto an existing output: %v\n%s", err, stdout)
	}
}

// TestChecksBeforeWork: problems with the output, the weights or the
// group size are reported before the dataset is read (which would fail
// here), and --force refuses to delete what gptqtool did not write
// (issue 11, findings 6 and 7).
func TestChecksBeforeWork(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	data := badDataset(t)
	truncated := filepath.Join(t.TempDir(), "m")
	copyDir(t, model, truncated)
	w, _ := os.ReadFile(filepath.Join(truncated, "model.safetensors"))
	os.WriteFile(filepath.Join(truncated, "model.safetensors"), w[:len(w)/2], 0o644)
	foreign := t.TempDir()
	os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("mine"), 0o644)
	cwd := t.TempDir()
	base := []string{"quantize", "--dataset", data, "--nsamples", "4", "--seq-len", "64"}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"out inside the model", []string{"--model", model, "--out", filepath.Join(model, "q")}, []string{"lies inside the model directory"}},
		{"out is the model", []string{"--model", model, "--out", model, "--force"}, []string{"holds the model"}},
		{"truncated weights", []string{"--model", truncated, "--out", filepath.Join(t.TempDir(), "q")}, []string{"model.safetensors"}},
		{"force on a foreign directory", []string{"--model", model, "--out", foreign, "--force"}, []string{"not a gptqtool output", "notes.txt"}},
		{"force on the working directory", []string{"--model", model, "--out", cwd, "--force"}, []string{"working directory"}},
		{"group 7", []string{"--model", model, "--out", filepath.Join(t.TempDir(), "q"), "--group", "7"}, []string{"--group 7", "GPTQModel", "ExLlamaV2", "vLLM gptq_marlin", "--allow-unportable"}},
		{"group 1024", []string{"--model", model, "--out", filepath.Join(t.TempDir(), "q"), "--group", "1024"}, []string{"--group 1024", "ExLlama v1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := gptqtool(t, cwd, nil, append(append(base, tc.args...), "--estimate=false")...)
			out, err := c.CombinedOutput()
			if err == nil {
				t.Fatalf("accepted:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), "invalid character") {
				t.Errorf("the dataset was read before the check:\n%s", out)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(foreign, "notes.txt")); err != nil {
		t.Errorf("--force deleted a foreign directory: %v", err)
	}
	// With the explicit flag the group size is a warning naming the loaders.
	stdout, _, err := run(t, "quantize", "--model", model, "--rtn", "--group", "7", "--allow-unportable", "--out", filepath.Join(t.TempDir(), "q"), "--dry-run")
	if err != nil || !strings.Contains(stdout, "warning      branch q: --group 7: GPTQModel, ExLlama v1") {
		t.Errorf("--allow-unportable: %v\n%s", err, stdout)
	}
}

// TestStaticChecksBeforeTiming: with the preflight's timing on (the
// default), what static checks refuse (flags, a shard whose header claims
// more bytes than the file holds) is refused before any layer is timed,
// naming the flag or the file; a run that passes them times a layer. A QA
// pass read "preflight: timing one layer" before such refusals (the line
// came before the checks), and --activations and --chunk-rows were not
// checked at all on the CPU: a layer was timed and the dataset read.
func TestStaticChecksBeforeTiming(t *testing.T) {
	src := fixturePath(t, "models/stories260K-hf-mistral")
	sharded := filepath.Join(t.TempDir(), "sharded")
	if _, _, err := run(t, "convert", "--in", src, "--out", sharded, "--max-shard-size", "500KB"); err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(t.TempDir(), "truncated")
	copyDir(t, sharded, truncated)
	shard := filepath.Join(truncated, "model-00003-of-00003.safetensors")
	st, err := os.Stat(shard)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(shard, st.Size()-100); err != nil {
		t.Fatal(err)
	}
	data := badDataset(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"truncated shard", []string{"--model", truncated}, 1, []string{"model-00003-of-00003.safetensors", "truncated"}},
		{"group 100", []string{"--model", sharded, "--group", "100"}, 1, []string{"--group 100", "--allow-unportable"}},
		{"damp", []string{"--model", sharded, "--damp", "1.5"}, 2, []string{"--bits 8 --group 128 --damp 1.5", "want in (0, 1)"}},
		{"activations", []string{"--model", sharded, "--activations", "fp8"}, 2, []string{`--activations "fp8"`, "want auto, f32, f16 or bf16"}},
		{"chunk rows", []string{"--model", sharded, "--chunk-rows", "-1"}, 2, []string{"--chunk-rows -1"}},
		{"sound, dry run", []string{"--model", sharded, "--dry-run"}, 0, []string{"preflight: timing one layer", "time         about"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"quantize", "--dataset", data, "--bits", "8", "--nsamples", "2", "--seq-len", "32", "--out", filepath.Join(t.TempDir(), "q")}, tc.args...)
			out, err := gptqtool(t, t.TempDir(), nil, args...).CombinedOutput()
			code := exitStatus(t, err)
			if code != tc.code {
				t.Errorf("exit status %d, want %d:\n%s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if tc.code != 0 && strings.Contains(string(out), "timing one layer") {
				t.Errorf("a layer was timed before the refusal:\n%s", out)
			}
			if strings.Contains(string(out), "invalid character") {
				t.Errorf("the dataset was read:\n%s", out)
			}
		})
	}
}

// TestLogAddsUp: each layer's log line is the sum of its phases, and the
// layers add up to the branch's time (issue 11, finding 8).
func TestLogAddsUp(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	data, _ := filepath.Abs("../../testdata/datasets/alpaca_en_demo.parquet")
	_, stderr, err := run(t, "quantize", "--model", model, "--dataset", data, "--nsamples", "8", "--seq-len", "128",
		"--out", filepath.Join(t.TempDir(), "q"), "--estimate=false")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^q layer \d+: ([0-9.]+)s = (.*)$`)
	phase := regexp.MustCompile(`[a-z]+ ([0-9.]+)s`)
	var layers float64
	for _, m := range line.FindAllStringSubmatch(stderr, -1) {
		total, _ := strconv.ParseFloat(m[1], 64)
		var sum float64
		ps := phase.FindAllStringSubmatch(m[2], -1)
		for _, p := range ps {
			v, _ := strconv.ParseFloat(p[1], 64)
			sum += v
		}
		// Each printed figure is rounded to 0.01 s, and an "other" under
		// 0.005 s is not printed.
		if math.Abs(sum-total) > 0.005*float64(len(ps)+2)+0.01*total {
			t.Errorf("layer line %q: phases add to %.2fs", m[0], sum)
		}
		layers += total
	}
	branch := regexp.MustCompile(`(?m)^q: wrote .* in ([0-9.]+)s$`).FindStringSubmatch(stderr)
	nl := len(line.FindAllString(stderr, -1))
	if branch == nil || nl != 6 {
		t.Fatalf("log lacks the layer or branch lines:\n%s", stderr)
	}
	// The branch's time is printed to 0.1 s and each layer's to 0.01 s, so
	// their rounding alone moves the sum by up to 0.05 + nl × 0.005 s (a run
	// on a loaded 2-core machine had layers adding to 2.05 s against a
	// branch printed as 2.0).
	total, _ := strconv.ParseFloat(branch[1], 64)
	if slack := 0.05 + 0.005*float64(nl) + 0.01; layers > total+slack || layers < 0.9*total-slack {
		t.Errorf("layers add to %.2fs, the branch took %.1fs", layers, total)
	}
}

// TestInspectPyTorch: inspect reads .bin checkpoints without executing
// them (issue 12, item 7), and refuses a pickle that names os.system.
func TestInspectPyTorch(t *testing.T) {
	stdout, _, err := run(t, "inspect", "--json", "../../publish/testdata/stories-sharded")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Format        string   `json:"weights_format"`
		NumParameters int64    `json:"num_parameters"`
		Files         []string `json:"files"`
		Problems      []string `json:"problems"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Format != "pytorch" || rep.NumParameters != 292800 || len(rep.Files) != 2 || len(rep.Problems) != 0 {
		t.Errorf("inspect of a sharded .bin checkpoint: %+v", rep)
	}
	dir := filepath.Join(t.TempDir(), "m")
	copyDir(t, "../../publish/testdata/stories-bin", dir)
	bad, _ := os.ReadFile("../../formats/pytorch/testdata/malicious_os.bin")
	os.WriteFile(filepath.Join(dir, "pytorch_model.bin"), bad, 0o644)
	if _, _, err := run(t, "inspect", dir); err == nil || !strings.Contains(err.Error(), "system") {
		t.Errorf("malicious pickle: err = %v", err)
	}
}

// TestConvertCommand runs convert end to end: PyTorch .bin → safetensors
// → GGUF, and inspect of the GGUF file (issue 12).
func TestConvertCommand(t *testing.T) {
	tmp := t.TempDir()
	st := filepath.Join(tmp, "st")
	stdout, _, err := run(t, "convert", "--in", "../../publish/testdata/stories-bin", "--out", st, "--json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, `"source_format": "pytorch"`) {
		t.Errorf("convert summary: %s", stdout)
	}
	g := filepath.Join(tmp, "stories.gguf")
	if _, _, err := run(t, "convert", "--in", st, "--out", g, "--gguf", "q8_0"); err != nil {
		t.Fatal(err)
	}
	stdout, _, err = run(t, "inspect", "--json", g)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Architecture  string         `json:"architecture"`
		VocabSize     int            `json:"vocab_size"`
		NumParameters int64          `json:"num_parameters"`
		Types         map[string]int `json:"tensor_types"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Architecture != "llama" || rep.VocabSize != 512 || rep.NumParameters != 292800 || rep.Types["Q8_0"] == 0 {
		t.Errorf("inspect of the GGUF: %+v", rep)
	}
	if _, _, err := run(t, "convert", "--in", st, "--out", g, "--gguf", "q5_x"); err == nil || !strings.Contains(err.Error(), "q5_x") {
		t.Errorf("unknown GGUF type: %v", err)
	}
	// A llama-quantize mix: openchat-tiny (tied, 6 layers) in Q4_K_M has
	// its token_embd (the output) and layers 2 and 5's attn_v in Q6_K,
	// ffn_down (rows of 896) falling back to Q8_0 there (from Q6_K) and to
	// Q5_0 in the other 4 layers (from Q4_K), the rest of the 2-D weights
	// in Q4_K.
	mixed := filepath.Join(tmp, "oc.gguf")
	if _, stderr, err := run(t, "convert", "--in", fixturePath(t, "models/openchat-tiny"), "--out", mixed, "--gguf", "Q4_K_M"); err != nil || !strings.Contains(stderr, "GGUF Q4_K_M") {
		t.Fatalf("convert --gguf Q4_K_M: %v\n%s", err, stderr)
	}
	if stdout, _, err = run(t, "inspect", "--json", mixed); err != nil {
		t.Fatal(err)
	}
	rep.Types = nil
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"F32": 13, "Q4_K": 34, "Q6_K": 3, "Q8_0": 2, "Q5_0": 4}; !maps.Equal(rep.Types, want) {
		t.Errorf("Q4_K_M tensor types %v, want %v", rep.Types, want)
	}
	// llama-quantize's --token-embedding-type on the tied token_embd
	// (the output): Q8_0 in place of Q6_K.
	large := filepath.Join(tmp, "oc-l.gguf")
	if _, stderr, err := run(t, "convert", "--in", fixturePath(t, "models/openchat-tiny"), "--out", large, "--gguf", "q4_k_m", "--token-embedding-type", "q8_0"); err != nil {
		t.Fatalf("convert --token-embedding-type q8_0: %v\n%s", err, stderr)
	}
	if stdout, _, err = run(t, "inspect", "--json", large); err != nil {
		t.Fatal(err)
	}
	rep.Types = nil
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"F32": 13, "Q4_K": 34, "Q6_K": 2, "Q8_0": 3, "Q5_0": 4}; !maps.Equal(rep.Types, want) {
		t.Errorf("Q4_K_M with --token-embedding-type q8_0: tensor types %v, want %v", rep.Types, want)
	}
	for _, args := range [][]string{
		{"--out", filepath.Join(tmp, "x"), "--output-tensor-type", "q8_0"},
		{"--out", filepath.Join(tmp, "y.gguf"), "--gguf", "q4_k_m", "--output-tensor-type", "tq1_0"},
	} {
		if _, _, err := run(t, append([]string{"convert", "--in", st}, args...)...); err == nil || !strings.Contains(err.Error(), "--output-tensor-type") {
			t.Errorf("convert %v: %v, want an error naming --output-tensor-type", args, err)
		}
	}
	// A list of types: one file each in the directory --out, listed.
	table := filepath.Join(tmp, "table")
	stdout, _, err = run(t, "convert", "--in", st, "--out", table, "--gguf", "q8_0,q4_0")
	if err != nil || !strings.Contains(stdout, "2 weight file(s)") || !strings.Contains(stdout, ".Q4_0.gguf: Q4_0, ") {
		t.Errorf("convert --gguf q8_0,q4_0: %v\n%s", err, stdout)
	}
	if names, _ := filepath.Glob(filepath.Join(table, "*.gguf")); len(names) != 2 {
		t.Errorf("--gguf q8_0,q4_0 wrote %v", names)
	}
	// Resharded, the summary counts the weight files written (not the
	// shards' index).
	sh := filepath.Join(tmp, "sh")
	stdout, _, err = run(t, "convert", "--in", st, "--out", sh, "--max-shard-size", "400KB")
	if err != nil {
		t.Fatal(err)
	}
	shards, _ := filepath.Glob(filepath.Join(sh, "*.safetensors"))
	if want := fmt.Sprintf("in %d weight file(s)", len(shards)); len(shards) < 2 || !strings.Contains(stdout, want) {
		t.Errorf("convert --max-shard-size 400KB wrote %d shards; summary %q, want %q", len(shards), stdout, want)
	}
}

// TestGenerateContinuesPrompt checks that generate's text continues its
// prompt's as the server's completions do: the prompt's text and the
// generated text together are the tokenizer's decoding of all the ids, so a
// first token's leading space (openchat-tiny's " tree" after "The Linux
// kernel") is kept.
func TestGenerateContinuesPrompt(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	out, _, err := run(t, "generate", "--model", model, "--device", "cpu", "--prompt", "The Linux kernel", "--max-tokens", "6", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var g generateJSON
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	prompt, err := tok.Decode(g.PromptIDs)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := tok.Decode(append(slices.Clone(g.PromptIDs), g.IDs...))
	if err != nil {
		t.Fatal(err)
	}
	if prompt+g.Text != whole || !strings.HasPrefix(g.Text, " ") {
		t.Errorf("prompt %q + text %q, want %q with the text's leading space", prompt, g.Text, whole)
	}
}

// TestNoTextColumnNamesFlags: a dataset with no column known to hold text is
// refused naming the flags that choose one, where the message said only "set
// a text column or a row template" (a QA pass).
func TestNoTextColumnNamesFlags(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	data := filepath.Join(t.TempDir(), "notext.json")
	if err := os.WriteFile(data, []byte(`[{"foo":"bar"},{"foo":"baz"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"calibrate", "--model", model, "--dataset", data, "--nsamples", "1", "--seq-len", "16"},
		{"quantize", "--device", "cpu", "--model", model, "--dataset", data, "--nsamples", "1", "--seq-len", "16", "--estimate=false", "--out", filepath.Join(t.TempDir(), "q")},
	} {
		t.Run(args[0], func(t *testing.T) {
			_, _, err := run(t, args...)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, want := range []string{"notext.json", "columns: foo", "--text-column", "--template"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
		})
	}
}

// exitStatus is the exit status of a finished command whose Run (or
// Output) returned err: 0 for nil, the process's status for an
// *exec.ExitError; any other error (the command did not run) fails t.
func exitStatus(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

// TestBrokenGenerationConfigRefused: a generation_config.json in the model
// directory that is not JSON, or holds a value of the wrong type, is
// refused before any work (before the dataset is read and a layer timed),
// naming the file and what is wrong, as gptqtool's own load refuses it in
// the output, where quantize copied it into the checkpoint unchecked.
func TestBrokenGenerationConfigRefused(t *testing.T) {
	src := fixturePath(t, "models/openchat-tiny")
	data := badDataset(t)
	for _, tc := range []struct{ name, doc, want string }{
		{"not json", `{"eos_token_id": 32000,`, "invalid JSON"},
		{"wrong type", `{"eos_token_id": 32000, "do_sample": "yes"}`, `do_sample: got string, want a boolean`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			m := filepath.Join(dir, "m")
			copyDir(t, src, m)
			gen := filepath.Join(m, "generation_config.json")
			if err := os.WriteFile(gen, []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "q")
			c := gptqtool(t, dir, nil, "quantize", "--model", m, "--dataset", data, "--nsamples", "2", "--seq-len", "32", "--out", out)
			b, err := c.CombinedOutput()
			if code := exitStatus(t, err); code != 1 {
				t.Errorf("exit status %d, want 1:\n%s", code, b)
			}
			for _, w := range []string{gen + ": ", tc.want} {
				if !strings.Contains(string(b), w) {
					t.Errorf("output lacks %q:\n%s", w, b)
				}
			}
			if strings.Contains(string(b), "timing one layer") || strings.Contains(string(b), "invalid character") {
				t.Errorf("work was done before the refusal:\n%s", b)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("%s was made: %v", out, err)
			}
		})
	}
}

// withBias copies the GPTQ checkpoint src into a new directory with an F16
// bias [256] for layer 0's q_proj (what AutoGPTQ's QuantLinear writes): zeros
// but for v at element 7 (none where v is 0).
func withBias(t *testing.T, src string, v float32) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "q")
	copyDir(t, src, dir)
	data := make([]byte, 2*256)
	binary.LittleEndian.PutUint16(data[2*7:], float16.Fromfloat32(v).Bits())
	fixtures.RewriteTensors(t, dir, nil, safetensors.Tensor{
		TensorInfo: safetensors.TensorInfo{Name: "model.layers.0.self_attn.q_proj.bias", DType: safetensors.F16, Shape: []int{256}},
		Data:       data,
	})
	return dir
}

// TestGPTQBiasRefused: a GPTQ checkpoint whose q_proj.bias is not zeros is
// refused by every command that would run it without the bias or write it
// without the bias (convert --dequantize and --gguf), naming the tensor and
// its largest |value|, and inspect reports it; one of zeros runs and
// converts, and a conversion that keeps GPTQ tensors keeps the bias (a QA
// pass: every loader accepted the bias and ignored it).
func TestGPTQBiasRefused(t *testing.T) {
	_, clean := quantizedTiny(t)
	text := foxText(t, 40)
	const tensor = `tensor "model.layers.0.self_attn.q_proj.bias": largest |value| 0.5 (element 7), want all zeros: a Linear bias that gptqtool does not apply`
	loads := func(dir, out string) [][]string {
		return [][]string{
			{"verify", "perplexity", "--model", dir, "--device", "cpu", "--text", text, "--ctx", "128", "--max-windows", "1"},
			{"generate", "--model", dir, "--device", "cpu", "--prompt", "Hello", "--max-tokens", "2"},
			{"convert", "--in", dir, "--out", filepath.Join(out, "deq"), "--dequantize"},
			{"convert", "--in", dir, "--out", filepath.Join(out, "m.gguf"), "--gguf", "f16"},
		}
	}
	t.Run("nonzero", func(t *testing.T) {
		dir, out := withBias(t, clean, -0.5), t.TempDir()
		for _, args := range loads(dir, out) {
			_, _, err := run(t, args...)
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "model.safetensors")+": "+tensor) {
				t.Errorf("%s: err = %v, want one saying %s", strings.Join(args, " "), err, tensor)
			}
		}
		if entries, _ := os.ReadDir(out); len(entries) > 0 {
			t.Errorf("convert wrote %s", entries[0].Name())
		}
		stdout, _, err := run(t, "inspect", dir)
		if err == nil || !strings.Contains(stdout, "PROBLEM        "+filepath.Join(dir, "model.safetensors")+": "+tensor) {
			t.Errorf("inspect: err %v, stdout lacks the bias:\n%s", err, stdout)
		}
		v2 := filepath.Join(out, "v2")
		if _, _, err := run(t, "convert", "--in", dir, "--out", v2, "--checkpoint-format", "gptq_v2"); err != nil {
			t.Fatalf("convert --checkpoint-format: %v", err)
		}
		set, err := safetensors.OpenDir(v2)
		if err != nil {
			t.Fatal(err)
		}
		defer set.Close()
		if b, err := set.Tensor("model.layers.0.self_attn.q_proj.bias"); err != nil || binary.LittleEndian.Uint16(b.Data[2*7:]) != float16.Fromfloat32(-0.5).Bits() {
			t.Errorf("convert --checkpoint-format: bias %v, %v; want it copied", b.Data[:16], err)
		}
	})
	t.Run("zeros", func(t *testing.T) {
		dir, out := withBias(t, clean, 0), t.TempDir()
		for _, args := range loads(dir, out) {
			if _, _, err := run(t, args...); err != nil {
				t.Errorf("%s: %v", strings.Join(args, " "), err)
			}
		}
	})
}

// TestInspectZeroBiasSound: a GPTQ checkpoint with a Linear bias of zeros
// (as AutoGPTQ writes one for each module) inspects as sound, exit 0, where
// the bias's elements made a PROBLEM of the parameter count (a QA pass).
func TestInspectZeroBiasSound(t *testing.T) {
	_, clean := quantizedTiny(t)
	dir := withBias(t, clean, 0)
	stdout, _, err := run(t, "inspect", dir)
	if err != nil || strings.Contains(stdout, "PROBLEM") {
		t.Errorf("inspect: err %v\n%s", err, stdout)
	}
}

// TestQuantizeBF16Plain: quantizing a bf16 checkpoint says that its
// non-quantized tensors are written as fp16 (a fp16 one says nothing), and
// one whose norm holds a value beyond fp16's range is refused before any
// work, naming the tensor, where the value was written as +Inf and every
// logit of the checkpoint was NaN (a QA pass).
func TestQuantizeBF16Plain(t *testing.T) {
	src := fixturePath(t, "models/openchat-tiny")
	bf := filepath.Join(t.TempDir(), "bf")
	if _, _, err := run(t, "convert", "--in", src, "--out", bf, "--dtype", "bf16"); err != nil {
		t.Fatal(err)
	}
	const line = "non-quantized tensors written as fp16 (from bf16)"
	for _, tc := range []struct {
		model string
		want  bool
	}{{bf, true}, {src, false}} {
		out := filepath.Join(t.TempDir(), "q")
		stdout, _, err := run(t, "quantize", "--model", tc.model, "--rtn", "--out", out, "--dry-run", "--estimate=false")
		if err != nil || strings.Contains(stdout, line) != tc.want {
			t.Errorf("%s: err %v; says %q: %v, want %v\n%s", filepath.Base(tc.model), err, line, !tc.want, tc.want, stdout)
		}
	}
	stdout, _, err := run(t, "quantize", "--model", bf, "--rtn", "--out", filepath.Join(t.TempDir(), "q"), "--dry-run", "--estimate=false", "--json")
	var rep struct {
		PlainFrom []string `json:"plain_tensors_converted_from"`
	}
	if err != nil || json.Unmarshal([]byte(stdout), &rep) != nil || !slices.Equal(rep.PlainFrom, []string{"bf16"}) {
		t.Errorf("--json: err %v, plain_tensors_converted_from %v, want [bf16]\n%s", err, rep.PlainFrom, stdout)
	}

	const tensor = "model.layers.2.post_attention_layernorm.weight"
	rewriteTensor(t, bf, tensor, func(d []byte) { binary.LittleEndian.PutUint16(d[2*9:], 0x47c8) }) // bf16 102400
	out := filepath.Join(t.TempDir(), "q")
	_, _, err = run(t, "quantize", "--model", bf, "--rtn", "--out", out)
	want := `tensor "` + tensor + `" (BF16): 1 values beyond fp16's range (±65504), the first 102400 at element 9`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want one saying %s", err, want)
	}
	if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused run left %s: %v", out, err)
	}
}

// TestConvertFormatDequantize: --checkpoint-format with --dequantize is a
// usage error naming both flags, found before the checkpoint is read (a
// plain checkpoint would otherwise fail with "not a GPTQ checkpoint").
func TestConvertFormatDequantize(t *testing.T) {
	model := fixturePath(t, "models/stories260K-hf-mistral")
	for _, format := range []string{"gptq", "gptq_v2"} {
		t.Run(format, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			_, _, err := run(t, "convert", "--in", model, "--out", out, "--checkpoint-format", format, "--dequantize")
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--checkpoint-format") || !strings.Contains(err.Error(), "--dequantize") {
				t.Errorf("err = %v, want a usage error (exit 2) naming --checkpoint-format and --dequantize", err)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("%s: %v, want nothing written", out, err)
			}
		})
	}
}

// TestConvertOutGGUFWithoutFlag: an --out named like a GGUF file without
// --gguf is a usage error naming --gguf, where a safetensors directory of
// that name was written.
func TestConvertOutGGUFWithoutFlag(t *testing.T) {
	model := fixturePath(t, "models/stories260K-hf-mistral")
	for _, name := range []string{"m.gguf", "M.GGUF"} {
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), name)
			_, _, err := run(t, "convert", "--in", model, "--out", out)
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--gguf TYPE") {
				t.Errorf("err = %v, want a usage error (exit 2) naming --gguf", err)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("%s: %v, want nothing written", out, err)
			}
		})
	}
}

// TestConvertGGUFFlagConflicts: --gguf with --dtype, --checkpoint-format or
// --dequantize is a usage error (exit 2) naming the flags given, as other
// misused flags are, where it exited 1 after the checkpoint was opened.
func TestConvertGGUFFlagConflicts(t *testing.T) {
	model := fixturePath(t, "models/stories260K-hf-mistral")
	for _, tc := range []struct {
		extra []string
		flag  string
	}{
		{[]string{"--dtype", "f16"}, "--dtype"},
		{[]string{"--checkpoint-format", "gptq_v2"}, "--checkpoint-format"},
		{[]string{"--dequantize"}, "--dequantize"},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "m.gguf")
			_, _, err := run(t, append([]string{"convert", "--in", model, "--out", out, "--gguf", "q8_0"}, tc.extra...)...)
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--gguf") || !strings.Contains(err.Error(), tc.flag) {
				t.Errorf("err = %v, want a usage error (exit 2) naming --gguf and %s", err, tc.flag)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("%s: %v, want nothing written", out, err)
			}
		})
	}
}

// TestNonFiniteWeightNotKept: a checkpoint whose weight holds a NaN fails
// quantize at that module, named, saying it is the checkpoint's value;
// nothing is kept for --resume (which met the same NaN every time, a QA
// pass) and nothing is left beside the output.
func TestNonFiniteWeightNotKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nan")
	copyDir(t, fixturePath(t, "models/openchat-tiny"), dir)
	rewriteTensor(t, dir, "model.layers.1.mlp.up_proj.weight", func(d []byte) { binary.LittleEndian.PutUint16(d[2*1000:], 0x7e00) })
	parent := t.TempDir()
	_, _, err := run(t, "quantize", "--model", dir, "--dataset", "../../testdata/datasets/alpaca_en_demo.parquet",
		"--nsamples", "4", "--seq-len", "64", "--bits", "4", "--group", "128", "--out", filepath.Join(parent, "q"))
	if err == nil {
		t.Fatal("quantize of a checkpoint holding a NaN weight succeeded")
	}
	for _, want := range []string{"model.layers.1.mlp.up_proj", "=NaN is not finite", "the checkpoint holds this value"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "kept for --resume") || strings.Contains(err.Error(), "rerun the same command") {
		t.Errorf("error %q offers --resume", err)
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("left beside the output: %v", left)
	}
}
