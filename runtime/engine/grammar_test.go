package engine

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/grammar"
	"github.com/gptqtool/gptqtool/runtime/sample"
)

// fixedMatcher allows the same tokens at every step and never completes.
type fixedMatcher struct {
	mask []uint64
	end  bool
}

func (m *fixedMatcher) Allowed() ([]uint64, bool) { return m.mask, m.end }
func (m *fixedMatcher) Accept(int) error          { return nil }

func allow(words int, ids ...int) []uint64 {
	m := make([]uint64, words)
	for _, id := range ids {
		m[id>>6] |= 1 << (id & 63)
	}
	return m
}

// TestGrammarMaskShorterThanVocab: a grammar's mask covers its tokenizer's
// vocabulary, which may be smaller than the model's (a padded embedding:
// verify accepts fewer tokens than vocab_size). Ids past the mask are not
// allowed; the engine must not index past it.
func TestGrammarMaskShorterThanVocab(t *testing.T) {
	m, prompt, _ := stories(t) // vocabulary 512: 8 words
	e := newEngine(t, m, Options{})
	ch, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: Params{MaxTokens: 3,
		Grammar: func() sample.Matcher { return &fixedMatcher{mask: allow(7, 100, 200)} }}}) // a tokenizer of 448 tokens
	if err != nil {
		t.Fatal(err)
	}
	toks, done := collect(t, ch)
	if done.FinishReason != "length" || len(toks) != 3 {
		t.Fatalf("%v (%s, %v)", toks, done.FinishReason, done.Err)
	}
	for _, tok := range toks {
		if tok != 100 && tok != 200 {
			t.Errorf("token %d drawn, not allowed", tok)
		}
	}
}

// TestGrammarStopTokenWithText: a stop token the grammar allows as text
// (stop_token_ids naming a text token) must not end the output before the
// value is complete (Params.Grammar: "a stop token only where it says the
// output is complete").
func TestGrammarStopTokenWithText(t *testing.T) {
	m, prompt, _ := stories(t)
	e := newEngine(t, m, Options{})
	ch, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: Params{MaxTokens: 3, StopTokens: []int{100},
		LogitBias: map[int]float32{100: 50},
		Grammar:   func() sample.Matcher { return &fixedMatcher{mask: allow(8, 100, 200)} }}})
	if err != nil {
		t.Fatal(err)
	}
	toks, done := collect(t, ch)
	if done.FinishReason != "length" || !slices.Equal(toks, []int{200, 200, 200}) {
		t.Errorf("%v (%s): the stop token ended an incomplete value", toks, done.FinishReason)
	}
}

const engineSchema = `{"type": "object", "properties": {
  "a": {"type": "integer"},
  "b": {"type": "string", "maxLength": 4},
  "c": {"type": "array", "items": {"enum": [1, 12, "x"]}, "maxItems": 3}
}, "required": ["a", "b", "c"], "additionalProperties": false}`

// storiesGrammar is stories260K's tokenizer and schema compiled over its
// vocabulary.
func storiesGrammar(t *testing.T, schema string) (*tokenizer.Tokenizer, *grammar.Grammar) {
	t.Helper()
	tok, err := tokenizer.Load(fixtures.Path(t, "models/stories260K-hf-mistral"))
	if err != nil {
		t.Fatal(err)
	}
	v := grammar.NewVocab(tok)
	g, err := grammar.Compile([]byte(schema), v)
	if err != nil {
		t.Fatal(err)
	}
	return tok, g
}

// TestGrammarUnderPreemption: constrained requests (greedy, sampled, with
// logprobs, several of one grammar) beside unconstrained ones give under
// preemption what each gives alone, and every one that stopped decodes to
// JSON of the schema.
func TestGrammarUnderPreemption(t *testing.T) {
	m, prompt, _ := stories(t)
	tok, g := storiesGrammar(t, engineSchema)
	gm := func() sample.Matcher { return g.NewMatcher() }
	stop := []int{tok.EOS()}
	params := []Params{
		{MaxTokens: 40, Grammar: gm, StopTokens: stop},
		{MaxTokens: 40},
		{MaxTokens: 40, Grammar: gm, StopTokens: stop, Temperature: 0.9, Seed: 3, SeedSet: true},
		{MaxTokens: 40, Grammar: gm, StopTokens: stop, Temperature: 1.2, Seed: 4, SeedSet: true, Logprobs: true, TopLogprobs: 2, MinTokens: 3},
		{MaxTokens: 40, Temperature: 0.9, Seed: 5, SeedSet: true},
		{MaxTokens: 40, Grammar: gm, StopTokens: stop, Temperature: 1.5, Seed: 6, SeedSet: true, FrequencyPenalty: 0.5},
	}
	run := func(e *Engine, ps []Params) ([][]int, []Event) {
		return submitAll(t, e, ps, func(int) []int { return prompt })
	}
	solo := make([][]int, len(params))
	e1 := newEngine(t, m, Options{})
	for i, p := range params {
		toks, dones := run(e1, []Params{p})
		solo[i] = toks[0]
		if dones[0].Err != nil {
			t.Fatalf("request %d alone: %v", i, dones[0].Err)
		}
		if p.Grammar != nil && dones[0].FinishReason == "stop" {
			text, _ := tok.Decode(toks[0])
			var val map[string]any
			if err := json.Unmarshal([]byte(text), &val); err != nil {
				t.Errorf("request %d: %q: %v", i, text, err)
			}
		}
		t.Logf("request %d alone: %s %q", i, dones[0].FinishReason, func() string { s, _ := tok.Decode(toks[0]); return s }())
	}
	for _, o := range []Options{{Blocks: 12, BlockSize: 8, StepTokens: 3}, {Blocks: 12, BlockSize: 8, NoAhead: true},
		{Blocks: 12, BlockSize: 8, Speculate: 4, SpeculateRows: 64}} {
		e := newEngine(t, m, o)
		toks, dones := run(e, params)
		for i := range params {
			if !slices.Equal(toks[i], solo[i]) || dones[i].Err != nil {
				t.Errorf("%+v: request %d: %v (%s %v), alone %v", o, i, toks[i], dones[i].FinishReason, dones[i].Err, solo[i])
			}
		}
		if st := e.Stats(); st.Preemptions == 0 || st.BlocksUsed != 0 {
			t.Errorf("%+v: %d preemptions, %d blocks used", o, st.Preemptions, st.BlocksUsed)
		}
	}
}

// TestGrammarPenaltiesKeepRefused: penalties must not lift a token the
// grammar refuses over the ones it allows. A refused token is lowered by
// runtime.Banned first; a repetition penalty then multiplied a refused
// prompt token's -1e30 by 1e-35, up to -1e-5, above an allowed token
// whose logit a bias of -100 made negative.
func TestGrammarPenaltiesKeepRefused(t *testing.T) {
	m, prompt, _ := stories(t)
	e := newEngine(t, m, Options{})
	ch, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: Params{MaxTokens: 3, RepetitionPenalty: 1e-35,
		LogitBias: map[int]float32{100: -100},
		Grammar:   func() sample.Matcher { return &fixedMatcher{mask: allow(8, 100)} }}})
	if err != nil {
		t.Fatal(err)
	}
	toks, done := collect(t, ch)
	if done.Err != nil || !slices.Equal(toks, []int{100, 100, 100}) {
		t.Errorf("%v (%s %v), want [100 100 100]: the only token allowed", toks, done.FinishReason, done.Err)
	}
}

// TestSpeculateGrammar: constrained requests take drafts (each row under
// the mask after the draft's tokens before it, made by a copy of the
// matcher) and give the tokens they give without drafts; with a JSON
// document of the schema in the prompt, drafts copied from it hold where
// the grammar forces the token.
func TestSpeculateGrammar(t *testing.T) {
	m, prompt, _ := stories(t)
	tok, g := storiesGrammar(t, engineSchema)
	doc, err := tok.Encode(`{"a": 12, "b": "ab", "c": [1, 12, "x"]} {"a": 7, "b": "ab", "c": [12]}`)
	if err != nil {
		t.Fatal(err)
	}
	p2 := append(slices.Clone(prompt), doc...)
	gm := func() sample.Matcher { return g.NewMatcher() }
	stop := []int{tok.EOS()}
	params := []Params{
		{MaxTokens: 60, Grammar: gm, StopTokens: stop},
		{MaxTokens: 60, Grammar: gm, StopTokens: stop, Temperature: 0.8, Seed: 2, SeedSet: true},
		{MaxTokens: 60, Grammar: gm, StopTokens: stop, RepetitionPenalty: 1.2, MinTokens: 5},
	}
	var want [][]int
	var wantDone []Event
	for j, k := range []int{0, 4} {
		e := newEngine(t, m, Options{Speculate: k})
		toks, dones := submitAll(t, e, params, func(int) []int { return p2 })
		if j == 0 {
			want, wantDone = toks, dones
			continue
		}
		for i := range params {
			if !slices.Equal(toks[i], want[i]) || dones[i].FinishReason != wantDone[i].FinishReason || dones[i].CompletionTokens != wantDone[i].CompletionTokens {
				t.Errorf("request %d with drafts %v (%s, %d), without %v (%s, %d)", i, toks[i], dones[i].FinishReason, dones[i].CompletionTokens,
					want[i], wantDone[i].FinishReason, wantDone[i].CompletionTokens)
			}
		}
		st := e.Stats()
		if st.Accepted == 0 {
			t.Errorf("%d draft tokens fed, %d held", st.Drafted, st.Accepted)
		}
		t.Logf("%d steps, %d draft tokens fed, %d held", st.Steps, st.Drafted, st.Accepted)
	}
	for i := range params {
		text, _ := tok.Decode(want[i])
		t.Logf("request %d: %s %q", i, wantDone[i].FinishReason, text)
	}
}
