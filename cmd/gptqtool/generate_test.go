package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/runtime/server"
)

// generateJSONOut runs generate --json and decodes its document.
func generateJSONOut(t *testing.T, args ...string) (generateJSON, string) {
	t.Helper()
	out, stderr, err := run(t, append([]string{"generate", "--json"}, args...)...)
	if err != nil {
		t.Fatalf("generate %v: %v\n%s", args, err, stderr)
	}
	var doc generateJSON
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("generate --json: %v\n%s", err, out)
	}
	return doc, stderr
}

// TestGenerateMaxTokensPastContext: a --max-tokens that the prompt leaves
// no room for in the model's context (stories260K: max_position_embeddings
// 512) is cut to what is left, and stderr says so, naming the context and
// the tokens left; one that fits is not warned about.
func TestGenerateMaxTokensPastContext(t *testing.T) {
	dir := fixturePath(t, "models/stories260K-hf-mistral")
	prompt := strings.Repeat("Once upon a time ", 100) // 402 tokens with BOS
	doc, stderr := generateJSONOut(t, "--model", dir, "--prompt", prompt, "--max-tokens", "500")
	left := 512 - doc.PromptTokens
	if doc.GeneratedTokens > left {
		t.Errorf("%d tokens generated after a prompt of %d in a context of 512", doc.GeneratedTokens, doc.PromptTokens)
	}
	for _, s := range []string{"--max-tokens 500", "512", "max_position_embeddings", "at most " + strconv.Itoa(left)} {
		if !strings.Contains(stderr, s) {
			t.Errorf("stderr does not say %q of the cut --max-tokens:\n%s", s, stderr)
		}
	}
	_, stderr = generateJSONOut(t, "--model", dir, "--prompt", prompt, "--max-tokens", strconv.Itoa(left))
	if strings.Contains(stderr, "max_position_embeddings") {
		t.Errorf("--max-tokens %d fits the context, yet:\n%s", left, stderr)
	}
}

// TestGenerateSeed: without --seed each sampling run draws its own seed
// (as the server does for a request without one, and transformers without
// a set seed), reported in --json and on stderr; --seed with a reported
// seed reproduces that run's tokens. Before, every run without --seed
// sampled with seed 0: the same "random" text every time.
func TestGenerateSeed(t *testing.T) {
	dir := fixturePath(t, "models/stories260K-hf-mistral")
	args := []string{"--model", dir, "--prompt", "Once upon a time", "--max-tokens", "20", "--temperature", "1"}
	a, stderrA := generateJSONOut(t, args...)
	b, _ := generateJSONOut(t, args...)
	if a.Seed == nil || b.Seed == nil {
		t.Fatalf("--json without --seed reports no seed: %+v", a)
	}
	if *a.Seed == *b.Seed { // two draws of 64 bits
		t.Errorf("two runs without --seed both sampled with seed %d", *a.Seed)
	}
	if s := "seed " + strconv.FormatUint(*a.Seed, 10); !strings.Contains(stderrA, s) {
		t.Errorf("stderr does not say %q:\n%s", s, stderrA)
	}
	again, _ := generateJSONOut(t, append(args, "--seed", strconv.FormatUint(*a.Seed, 10))...)
	if !slices.Equal(again.IDs, a.IDs) || again.Seed == nil || *again.Seed != *a.Seed {
		t.Errorf("--seed %d: ids %v (seed %v), want %v as the run that reported it", *a.Seed, again.IDs, again.Seed, a.IDs)
	}
	zero, _ := generateJSONOut(t, append(args, "--seed", "0")...)
	if zero.Seed == nil || *zero.Seed != 0 {
		t.Errorf("--seed 0 reports seed %v", zero.Seed)
	}
}

// TestGenerateTopKOff: --top-k -1 turns top-k off as 0 does (vLLM's -1,
// which serve's top_k takes too), where it was a usage error; below -1 is
// still one.
func TestGenerateTopKOff(t *testing.T) {
	dir := fixturePath(t, "models/stories260K-hf-mistral")
	args := []string{"--model", dir, "--prompt", "Once upon a time", "--max-tokens", "20", "--temperature", "1.5", "--seed", "3"}
	want, _ := generateJSONOut(t, append(args, "--top-k", "0")...)
	got, _ := generateJSONOut(t, append(args, "--top-k", "-1")...)
	if !slices.Equal(got.IDs, want.IDs) {
		t.Errorf("--top-k -1: %v, want %v as --top-k 0", got.IDs, want.IDs)
	}
	if _, _, err := run(t, append([]string{"generate", "--top-k", "-2"}, args...)...); err == nil || !strings.Contains(err.Error(), "--top-k -2") {
		t.Errorf("--top-k -2: %v, want a usage error naming it", err)
	}
}

// TestServeGenerationDefaults: serve's defaults from generation_config.json:
// the keys it sets (repetition_penalty among them, as vLLM applies it to
// requests without one) and OpenAI's for the rest; a repetition_penalty
// that is not a positive number is refused naming the file.
func TestServeGenerationDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      server.Backend
		err       string
	}{
		{"none", `{}`, server.Backend{Temperature: 1, TopP: 1}, ""},
		{"sampling", `{"temperature": 0.7, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1}`,
			server.Backend{Temperature: 0.7, TopP: 0.9, TopK: 40, RepetitionPenalty: 1.1}, ""},
		{"repetition only", `{"repetition_penalty": 1.05}`, server.Backend{Temperature: 1, TopP: 1, RepetitionPenalty: 1.05}, ""},
		{"repetition 0", `{"repetition_penalty": 0}`, server.Backend{}, "g.json: repetition_penalty 0: want a finite value > 0"},
		{"repetition negative", `{"repetition_penalty": -1.2}`, server.Backend{}, "g.json: repetition_penalty -1.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gen, err := hfconfig.ParseGeneration([]byte(tc.doc), "g.json")
			if err != nil {
				t.Fatal(err)
			}
			got := server.Backend{Temperature: 1, TopP: 1}
			err = generationDefaults(&got, gen, "g.json")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Temperature != tc.want.Temperature || got.TopP != tc.want.TopP || got.TopK != tc.want.TopK || got.RepetitionPenalty != tc.want.RepetitionPenalty {
				t.Errorf("defaults %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestGeneratePromptSpecialTokens: generate encodes its prompt as a Hugging
// Face tokenizer does with add_special_tokens (and serve's completions do):
// added tokens such as <|end_of_turn|> written in the text are matched, so
// openchat's README prompt, typed out, gives the ids the model card asserts
// (tokenizers/openchat-3.5-1210/expected_chat_ids.json, single_turn_readme,
// checked with four tokenizers), where "<|end_of_turn|>" was spelled with
// eight ordinary pieces.
func TestGeneratePromptSpecialTokens(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	raw, err := os.ReadFile(filepath.Join(fixturePath(t, "tokenizers/openchat-3.5-1210"), "expected_chat_ids.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Readme struct {
			Text string `json:"text"`
			IDs  []int  `json:"input_ids_with_bos"`
		} `json:"single_turn_readme"`
	}
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	doc, _ := generateJSONOut(t, "--model", model, "--prompt", want.Readme.Text, "--max-tokens", "1")
	if !slices.Equal(doc.PromptIDs, want.Readme.IDs) {
		t.Errorf("prompt ids of %q:\n got %v\nwant %v", want.Readme.Text, doc.PromptIDs, want.Readme.IDs)
	}
}

// TestGeneratedTextSkipsSpecial: generate's text leaves special tokens out,
// as serve's completions do (vLLM's skip_special_tokens): openchat's
// "Hello world!" (ids 22557 1526 28808, the fixture's hello_world) with
// <|end_of_turn|> (32000), <|pad_0|> (32001) and BOS (1) drawn among them
// reads "Hello world!", where the added tokens' text was printed.
func TestGeneratedTextSkipsSpecial(t *testing.T) {
	tok, err := tokenizer.Load(fixturePath(t, "models/openchat-tiny"))
	if err != nil {
		t.Fatal(err)
	}
	dec := tok.NewDecoder()
	var got strings.Builder
	for _, id := range []int{22557, 32000, 1526, 32001, 1, 28808} {
		s, err := generatedText(tok, dec, id)
		if err != nil {
			t.Fatal(err)
		}
		got.WriteString(s)
	}
	got.WriteString(dec.Flush())
	if want := "Hello world!"; got.String() != want {
		t.Errorf("text %q, want %q", got.String(), want)
	}
}

// TestGeneratePromptFillsContext: a prompt that leaves no position to
// generate in the model's context (stories260K: 512) is refused naming
// its tokens, the context and the most a prompt may have (511), as serve
// answers it, where the message gave the two numbers alone ("the prompt has
// 512 tokens, the model's context ... 512").
func TestGeneratePromptFillsContext(t *testing.T) {
	dir := fixturePath(t, "models/stories260K-hf-mistral")
	// "Once upon a time " is 4 tokens; with BOS and 127 of them, "Once" 1.
	prompt := strings.Repeat("Once upon a time ", 127) + "Once upon a"
	_, _, err := run(t, "generate", "--model", dir, "--prompt", prompt, "--max-tokens", "1", "--ids")
	if err == nil {
		t.Fatal("a prompt filling the context was run")
	}
	for _, s := range []string{"512 tokens", "context", "at most 511"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
}

// TestGenerateJSONSchema: --json-schema constrains generate's output to JSON
// of the schema (checked with encoding/json and by hand), --json-object to a
// JSON object, over seeds; a schema the compiler refuses names the file and
// the keyword.
func TestGenerateJSONSchema(t *testing.T) {
	dir := fixturePath(t, "models/openchat-tiny")
	schema := filepath.Join(t.TempDir(), "person.json")
	if err := os.WriteFile(schema, []byte(`{"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
		"age": {"type": "integer"}, "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}},
		"required": ["name", "age", "tags"], "additionalProperties": false}`), 0o644); err != nil {
		t.Fatal(err)
	}
	stopped := 0
	for seed := range 4 {
		for _, flag := range []string{"--json-schema=" + schema, "--json-object"} {
			doc, _ := generateJSONOut(t, "--model", dir, "--chat", "--prompt", "Describe a person as JSON.", flag,
				"--max-tokens", "120", "--temperature", "0.8", "--seed", strconv.Itoa(seed))
			if doc.StopReason != "eos" {
				continue
			}
			stopped++
			var v map[string]any
			if err := json.Unmarshal([]byte(doc.Text), &v); err != nil {
				t.Fatalf("%s seed %d: %q is not a JSON object: %v", flag, seed, doc.Text, err)
			}
			if flag == "--json-object" {
				continue
			}
			name, _ := v["name"].(string)
			age, isNum := v["age"].(float64)
			tags, isList := v["tags"].([]any)
			if len(v) != 3 || len([]rune(name)) > 12 || !isNum || age != float64(int64(age)) || !isList || len(tags) > 3 {
				t.Errorf("seed %d: %q does not match the schema", seed, doc.Text)
			}
			for _, tag := range tags {
				if tag != "a" && tag != "b" {
					t.Errorf("seed %d: %q: tag %v outside the enum", seed, doc.Text, tag)
				}
			}
		}
	}
	if stopped < 3 {
		t.Errorf("%d of 8 generations completed their JSON within 120 tokens", stopped)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"type": "string", "format": "uri"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, "generate", "--model", dir, "--prompt", "x", "--json-schema", bad)
	if err == nil || !strings.Contains(err.Error(), "bad.json") || !strings.Contains(err.Error(), "/format") {
		t.Errorf("a schema with format: %v, want an error naming bad.json and /format", err)
	}
}

// TestGenerateRegex: --regex constrains generate's output to a text the
// pattern matches whole (Go's regexp checks it), a chat answer's leading
// space kept; a pattern the compiler refuses, or --regex beside
// --json-schema, is a usage error naming the flag.
func TestGenerateRegex(t *testing.T) {
	dir := fixturePath(t, "models/openchat-tiny")
	for _, c := range []struct {
		pattern string
		chat    bool
	}{
		{`[a-z]{2,8}( [a-z]{2,8}){0,2}\.`, false},
		{` (yes|no), \d{1,3}`, true},
	} {
		re := regexp.MustCompile(`^(?:` + c.pattern + `)$`)
		for seed := range 3 {
			args := []string{"--model", dir, "--prompt", "Say something.", "--regex", c.pattern,
				"--max-tokens", "40", "--temperature", "1", "--seed", strconv.Itoa(seed)}
			if c.chat {
				args = append(args, "--chat")
			}
			doc, _ := generateJSONOut(t, args...)
			if doc.StopReason != "eos" || !re.MatchString(doc.Text) {
				t.Errorf("--regex %q seed %d: %q (%s), want a full match and eos", c.pattern, seed, doc.Text, doc.StopReason)
			}
		}
	}
	for _, args := range [][]string{
		{"--regex", "(?<=a)b"},
		{"--regex", ""},
		{"--regex", "a+", "--json-object"},
	} {
		_, _, err := run(t, append([]string{"generate", "--model", dir, "--prompt", "x"}, args...)...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--regex") {
			t.Errorf("generate %q: %v, want a usage error naming --regex", args, err)
		}
	}
}

// TestGenerateSpeculate: generate --speculate gives the ids of generate
// without it (greedy, and seeded sampling), says how many draft tokens it
// fed and kept (stderr and --json), and refuses a negative count.
func TestGenerateSpeculate(t *testing.T) {
	dir := fixturePath(t, "models/stories260K-hf-mistral")
	// A prompt that repeats, so that lookups find drafts.
	prompt := "Once upon a time, there was a little girl named Lily. Once upon a time, there was a little"
	for _, extra := range [][]string{nil, {"--temperature", "0.8", "--seed", "5"}} {
		args := append([]string{"--model", dir, "--prompt", prompt, "--max-tokens", "40"}, extra...)
		plain, _ := generateJSONOut(t, args...)
		spec, stderr := generateJSONOut(t, append(args, "--speculate", "4")...)
		if !slices.Equal(spec.IDs, plain.IDs) || spec.StopReason != plain.StopReason {
			t.Errorf("%v: --speculate 4 gave %v (%s), without %v (%s)", extra, spec.IDs, spec.StopReason, plain.IDs, plain.StopReason)
		}
		if plain.DraftTokens != nil || spec.DraftTokens == nil || spec.AcceptedTokens == nil || *spec.DraftTokens == 0 || *spec.AcceptedTokens > *spec.DraftTokens {
			t.Errorf("%v: draft counts %v / %v without, %v / %v with --speculate", extra, plain.DraftTokens, plain.AcceptedTokens, spec.DraftTokens, spec.AcceptedTokens)
		} else if want := fmt.Sprintf("drafts: %d tokens fed, %d held", *spec.DraftTokens, *spec.AcceptedTokens); !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	if _, _, err := run(t, "generate", "--model", dir, "--prompt", "x", "--speculate", "-1"); err == nil || !strings.Contains(err.Error(), "--speculate -1") {
		t.Errorf("--speculate -1: %v, want a usage error naming it", err)
	}
}
