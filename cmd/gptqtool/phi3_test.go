package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"slices"
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
	text := foxText(t, 30)
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

// TestPhi3LongropeServeGenerate: generate and serve load a longrope Phi-3
// (512 positions over an original 64) for the context they run. generate's
// greedy ids are the runtime's with the model loaded for the prompt plus
// --max-tokens: at 64 in all (the original, boundary included) the short
// factors', at 100 the long ones' (the two tables' greedy ids differ over
// the first run, so the check tells them). serve --max-len 64 gives the
// next token's log-probability of the short table, serve at its default
// (max_position_embeddings) that of the long one (the two differ).
func TestPhi3LongropeServeGenerate(t *testing.T) {
	tok := fixturePath(t, "models/openchat-tiny")
	short := []float64{1, 1.25, 1.5, 2, 2, 3, 4, 4}
	long := []float64{1, 2, 4, 8, 12, 16, 24, 32}
	dir := fixtures.Phi3(t, map[string]any{"vocab_size": 32002, "max_position_embeddings": 512, "original_max_position_embeddings": 64,
		"rope_scaling": map[string]any{"type": "longrope", "short_factor": short, "long_factor": long}},
		synth.Options{DType: "f32", Seed: 7, TokenizerDir: tok})
	const prompt = "The quick brown fox jumps over the lazy dog. The quick brown fox"
	load := func(ctx int) *model.Model {
		t.Helper()
		m, err := model.LoadWith(dir, cpu.New(0), model.Options{Context: ctx})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return m
	}
	shortM, longM := load(64), load(0)
	generate := func(maxTokens int) generateJSON {
		t.Helper()
		out, stderr, err := run(t, "generate", "--model", dir, "--prompt", prompt, "--max-tokens", strconv.Itoa(maxTokens),
			"--device", "cpu", "--dtype", "f32", "--json")
		if err != nil {
			t.Fatalf("generate --max-tokens %d: %v\n%s", maxTokens, err, stderr)
		}
		var doc generateJSON
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("generate --json: %v\n%s", err, out)
		}
		return doc
	}
	promptIDs := generate(1).PromptIDs
	// greedy is the runtime's greedy continuation of promptIDs by m, n ids.
	greedy := func(m *model.Model, n int) []int {
		t.Helper()
		c := m.NewCache(len(promptIDs) + n)
		defer c.Free()
		var ids []int
		next := promptIDs
		for len(ids) < n {
			lg, err := m.ForwardLast(next, c, nil)
			if err != nil {
				t.Fatal(err)
			}
			id := 0
			for i, v := range lg {
				if v > lg[id] {
					id = i
				}
			}
			if slices.Contains(m.EOSTokenIDs, id) {
				t.Fatalf("the greedy continuation ends at id %d: the test wants another model seed", id)
			}
			ids = append(ids, id)
			next = []int{id}
		}
		return ids
	}
	n64 := 64 - len(promptIDs)
	if n64 < 8 {
		t.Fatalf("a prompt of %d ids leaves %d to 64", len(promptIDs), n64)
	}
	if slices.Equal(greedy(shortM, n64), greedy(longM, n64)) {
		t.Fatalf("the short and long tables continue the prompt alike over %d ids: the test could not tell", n64)
	}
	for _, tc := range []struct {
		total int
		m     *model.Model
		table string
	}{{64, shortM, "short"}, {100, longM, "long"}} {
		n := tc.total - len(promptIDs)
		if got, want := generate(n).IDs, greedy(tc.m, n); !slices.Equal(got, want) {
			t.Errorf("generate of %d positions: ids %v, want the %s table's %v", tc.total, got, tc.table, want)
		}
	}

	// The next token's log-probability after the prompt, as serve reports
	// it and as each table gives it.
	logprob := func(m *model.Model) float64 {
		t.Helper()
		c := m.NewCache(len(promptIDs))
		defer c.Free()
		lg, err := m.ForwardLast(promptIDs, c, nil)
		if err != nil {
			t.Fatal(err)
		}
		best, mx := 0, lg[0]
		for i, v := range lg {
			if v > mx {
				best, mx = i, v
			}
		}
		var sum float64
		for _, v := range lg {
			sum += math.Exp(float64(v - mx))
		}
		return float64(lg[best]-mx) - math.Log(sum)
	}
	shortLP, longLP := logprob(shortM), logprob(longM)
	if !(math.Abs(shortLP-longLP) > 1e-3) {
		t.Fatalf("next-token log-probabilities %g and %g with either table: the test could not tell", shortLP, longLP)
	}
	body, err := json.Marshal(map[string]any{"prompt": promptIDs, "max_tokens": 1, "temperature": 0, "logprobs": 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args  []string
		want  float64
		table string
	}{{[]string{"--max-len", "64"}, shortLP, "short"}, {nil, longLP, "long"}} {
		p := startServe(t, dir, append([]string{"--dtype", "f32"}, tc.args...)...)
		resp, err := http.Post(p.url+"/v1/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("serve %v: status %d (%v):\n%s", tc.args, resp.StatusCode, err, raw)
		}
		var doc struct {
			Choices []struct {
				Logprobs struct {
					TokenLogprobs []*float64 `json:"token_logprobs"`
				} `json:"logprobs"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil || len(doc.Choices) != 1 || len(doc.Choices[0].Logprobs.TokenLogprobs) != 1 || doc.Choices[0].Logprobs.TokenLogprobs[0] == nil {
			t.Fatalf("serve %v: no token log-probability (%v):\n%s", tc.args, err, raw)
		}
		if got := *doc.Choices[0].Logprobs.TokenLogprobs[0]; !(math.Abs(got-tc.want) <= 1e-4) {
			t.Errorf("serve %v: log-probability %g, want the %s table's %g (short %g, long %g)", tc.args, got, tc.table, tc.want, shortLP, longLP)
		}
	}
}
