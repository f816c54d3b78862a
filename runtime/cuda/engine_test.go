package cuda_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/engine"
	"github.com/gptqtool/gptqtool/runtime/grammar"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/runtime/sample"
)

// cpuLogprobs is, from the CPU reference's full forward over ids, each
// token's log-probability given those before it (index i for token i+1)
// and the best log-probability there.
func cpuLogprobs(t *testing.T, m *model.Model, ids []int) (lps, best []float64) {
	t.Helper()
	logits, err := m.Forward(ids, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	lps, _, best = backendtest.NextLogprobs(logits, m.Vocab(), ids)
	return lps, best
}

// submitPrompt runs one request on e and returns its events.
func submitPrompt(t *testing.T, e *engine.Engine, prompt []int, p engine.Params) []engine.Event {
	t.Helper()
	ch, err := e.Submit(context.Background(), engine.Request{Prompt: prompt, Params: p})
	if err != nil {
		t.Fatal(err)
	}
	var evs []engine.Event
	for ev := range ch {
		evs = append(evs, ev)
	}
	return evs
}

// TestEngineOnDevice runs the serving engine on the device (openchat-tiny
// in fp16) against the CPU reference: a prompt's own log-probabilities
// (every row's logits of its chunks), and greedy generations whose prompt
// comes from the prefix cache (its first 96 positions shared, the rest
// fed) or is computed whole: each generated token's log-probability is the
// reference's for that token after the same tokens, and the token is the
// reference's most likely one, within fp16's rounding.
func TestEngineOnDevice(t *testing.T) {
	b := gputest.Backend(t)
	mc := load(t, fixtures.Path(t, "models/openchat-tiny"), cpu.New(0))
	mg, ids, _ := tinyF16(t, b)
	prompt := ids[:100]
	const tol = 3e-2
	for _, noCache := range []bool{false, true} {
		e, err := engine.New(engine.Options{Model: mg, Blocks: 64, BlockSize: 16, MaxLen: 256, StepTokens: 64, NoPrefixCache: noCache})
		if err != nil {
			t.Fatal(err)
		}
		submit := func(p engine.Params) []engine.Event { return submitPrompt(t, e, prompt, p) }
		// The prompt scored, in chunks of 64 and 36.
		want, _ := cpuLogprobs(t, mc, prompt)
		evs := submit(engine.Params{PromptLogprobs: true, TopLogprobs: 1})
		if len(evs) != 2 || len(evs[0].Prompt) != len(prompt)-1 {
			t.Fatalf("no prefix cache %v: scoring events %+v", noCache, evs)
		}
		for i, pt := range evs[0].Prompt {
			if math.Abs(pt.Logprob-want[i]) > tol {
				t.Errorf("no prefix cache %v: prompt token %d: %.4f on the device, %.4f on the CPU", noCache, i+1, pt.Logprob, want[i])
			}
		}
		// Twice: the second time (with the cache) from 96 cached positions;
		// then a prompt of 97, whose one token left to feed takes the
		// decode path.
		for run := range 3 {
			p := prompt
			if run == 2 {
				p = prompt[:97]
			}
			evs := submitPrompt(t, e, p, engine.Params{MaxTokens: 12, Logprobs: true})
			seq := append([]int(nil), p...)
			var got []float64
			for _, ev := range evs {
				if !ev.Done && ev.Prompt == nil {
					seq, got = append(seq, ev.Token), append(got, ev.Logprob)
				}
			}
			lps, best := cpuLogprobs(t, mc, seq)
			for i, lp := range got {
				r := len(p) - 1 + i
				if math.Abs(lp-lps[r]) > tol || lps[r] < best[r]-tol {
					t.Errorf("no prefix cache %v, run %d: token %d (%d): %.4f on the device, %.4f on the CPU, best there %.4f",
						noCache, run, i, seq[r+1], lp, lps[r], best[r])
				}
			}
		}
		st := e.Stats()
		wantHits := int64(3 * 96) // every run, after the scoring has cached 96 positions
		if noCache {
			wantHits = 0
		}
		if st.PrefixHits != wantHits || st.BlocksUsed != 0 {
			t.Errorf("no prefix cache %v: %d positions from the cache (want %d), %d blocks held", noCache, st.PrefixHits, wantHits, st.BlocksUsed)
		}
		if err := e.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGrammarOnDevice runs a request constrained by a JSON schema
// (structured output) on the device engine, whose draws it makes on the
// host from the rows' logits brought back, beside an unconstrained one:
// every token is one the schema's matcher allows there, its
// log-probability is the CPU reference's within fp16's rounding, no token
// the matcher allows is more likely on the CPU beyond that rounding
// (greedy among the allowed), and a request that stops is JSON.
func TestGrammarOnDevice(t *testing.T) {
	mc, mg, ids, tok, v, g := tinyGrammar(t, `{"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string", "maxLength": 6}}, "required": ["a", "b"]}`)
	e, err := engine.New(engine.Options{Model: mg, Blocks: 64, BlockSize: 16, MaxLen: 256, StepTokens: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	prompt := ids[:50]
	free, err := e.Submit(context.Background(), engine.Request{Prompt: ids[50:80], Params: engine.Params{MaxTokens: 40}})
	if err != nil {
		t.Fatal(err)
	}
	evs := submitPrompt(t, e, prompt, engine.Params{MaxTokens: 60, Logprobs: true, StopTokens: []int{tok.EOS(), 32000},
		Grammar: func() sample.Matcher { return g.NewMatcher() }})
	for range free {
	}
	m := g.NewMatcher()
	seq := append([]int(nil), prompt...)
	var got []float64
	var done engine.Event
	for _, ev := range evs {
		switch {
		case ev.Done:
			done = ev
		case ev.Prompt == nil && !ev.Stop:
			mask, _ := m.Allowed()
			if mask[ev.Token>>6]>>(ev.Token&63)&1 == 0 {
				t.Fatalf("token %d (%q) after %d generated: not allowed", ev.Token, v.Text(ev.Token), len(got))
			}
			if err := m.Accept(ev.Token); err != nil {
				t.Fatal(err)
			}
			seq, got = append(seq, ev.Token), append(got, ev.Logprob)
		}
	}
	if done.Err != nil || len(got) == 0 {
		t.Fatalf("%s (%v) after %d tokens", done.FinishReason, done.Err, len(got))
	}
	logits, err := mc.Forward(seq, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	V := mc.Vocab()
	replay := g.NewMatcher()
	const tol = 3e-2
	for i, lp := range got {
		r := len(prompt) - 1 + i
		row := logits[r*V : (r+1)*V]
		lse := 0.0
		hi := math.Inf(-1)
		for _, x := range row {
			hi = math.Max(hi, float64(x))
		}
		for _, x := range row {
			lse += math.Exp(float64(x) - hi)
		}
		lse = hi + math.Log(lse)
		mask, _ := replay.Allowed()
		best := bestAllowed(row, mask) - lse
		want := float64(row[seq[r+1]]) - lse
		if math.Abs(lp-want) > tol || want < best-tol {
			t.Errorf("token %d (%q): %.4f on the device, %.4f on the CPU, the best allowed there %.4f", i, v.Text(seq[r+1]), lp, want, best)
		}
		if err := replay.Accept(seq[r+1]); err != nil {
			t.Fatal(err)
		}
	}
	text, err := tok.Decode(seq[len(prompt):])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s after %d tokens: %q", done.FinishReason, len(got), text)
	if done.FinishReason == "stop" && !json.Valid([]byte(text)) {
		t.Errorf("%q stopped, and is not JSON", text)
	}
}

// bestAllowed is the largest of row's logits that mask allows (bit id%64
// of word id/64).
func bestAllowed(row []float32, mask []uint64) float64 {
	best := math.Inf(-1)
	for id, x := range row {
		if mask[id>>6]>>(id&63)&1 == 1 {
			best = math.Max(best, float64(x))
		}
	}
	return best
}

// tinyGrammar is openchat-tiny on the CPU (the reference) and in fp16 on
// the device, WikiText's first ids, its tokenizer and vocabulary, and
// schema compiled over it.
func tinyGrammar(t *testing.T, schema string) (mc, mg *model.Model, ids []int, tok *tokenizer.Tokenizer, v *grammar.Vocab, g *grammar.Grammar) {
	t.Helper()
	b := gputest.Backend(t)
	dir := fixtures.Path(t, "models/openchat-tiny")
	mc = load(t, dir, cpu.New(0))
	mg, ids, _ = tinyF16(t, b)
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	v = grammar.NewVocab(tok)
	if g, err = grammar.Compile([]byte(schema), v); err != nil {
		t.Fatal(err)
	}
	return mc, mg, ids, tok, v, g
}

// TestSpeculateOnDevice runs the engine with drafts by prompt lookup
// (engine.Options.Speculate) on the device, openchat-tiny in fp16: its
// steps verify a sequence's draft in rows of their own (recorded as
// graphs of their own, attention reading the rows the same step writes),
// and every token a greedy request gets is the CPU reference's most likely
// one after the same tokens, within fp16's rounding. The prompt repeats a
// stretch, so that drafts are found and some held. Two requests run
// together, one of them sampled (its draft rows drawn under rules of their
// own, model.StepSeq.DraftRules; only checked to finish).
func TestSpeculateOnDevice(t *testing.T) {
	b := gputest.Backend(t)
	mc := load(t, fixtures.Path(t, "models/openchat-tiny"), cpu.New(0))
	mg, ids, _ := tinyF16(t, b)
	prompt := append(append([]int(nil), ids[:80]...), ids[1:60]...)
	const tol = 3e-2
	e, err := engine.New(engine.Options{Model: mg, Blocks: 64, BlockSize: 16, MaxLen: 256, StepTokens: 256, Speculate: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	// Both submitted before either is read, so that they run together.
	sampled, err := e.Submit(context.Background(), engine.Request{Prompt: prompt, Params: engine.Params{MaxTokens: 24, Temperature: 0.7, Seed: 3, SeedSet: true}})
	if err != nil {
		t.Fatal(err)
	}
	evs := submitPrompt(t, e, prompt, engine.Params{MaxTokens: 48})
	for range sampled {
	}
	seq := append([]int(nil), prompt...)
	for _, ev := range evs {
		if !ev.Done {
			seq = append(seq, ev.Token)
		}
	}
	if last := evs[len(evs)-1]; !last.Done || last.FinishReason != "length" || len(seq)-len(prompt) != 48 {
		t.Fatalf("greedy request: %d tokens, last event %+v", len(seq)-len(prompt), last)
	}
	lps, best := cpuLogprobs(t, mc, seq)
	for i := len(prompt); i < len(seq); i++ {
		if r := i - 1; lps[r] < best[r]-tol {
			t.Errorf("token %d (%d): %.4f on the CPU, its best there %.4f", i-len(prompt), seq[i], lps[r], best[r])
		}
	}
	st := e.Stats()
	if st.Drafted == 0 || st.Accepted == 0 {
		t.Errorf("%d draft tokens fed, %d held: the drafts' path did not run", st.Drafted, st.Accepted)
	}
	t.Logf("%d steps, %d draft tokens fed, %d held", st.Steps, st.Drafted, st.Accepted)
}

// BenchmarkSpeculate times a greedy request of 128 tokens on the engine on
// the device (openchat-tiny in fp16) without drafts and with drafts of 3
// and 7 (engine.Options.Speculate), on a prompt that repeats a stretch of
// WikiText and on one that does not: tok/s is the request's generated
// tokens over its wall time, held the draft tokens kept a step.
func BenchmarkSpeculate(b *testing.B) {
	be := gputest.Backend(b)
	mg, err := model.LoadWith(fixtures.Path(b, "models/openchat-tiny"), be, model.Options{DType: runtime.F16})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(mg.Close)
	ids := fixtures.WikiIDs(b)[:400]
	prompts := map[string][]int{
		"repeat": append(append([]int(nil), ids[:200]...), ids[1:120]...),
		"plain":  ids[:320],
	}
	for _, name := range []string{"repeat", "plain"} {
		for _, k := range []int{0, 3, 7} {
			b.Run(fmt.Sprintf("%s/speculate%d", name, k), func(b *testing.B) {
				e, err := engine.New(engine.Options{Model: mg, Blocks: 64, BlockSize: 16, MaxLen: 512, Speculate: k})
				if err != nil {
					b.Fatal(err)
				}
				defer e.Close(context.Background())
				run := func() {
					ch, err := e.Submit(context.Background(), engine.Request{Prompt: prompts[name], Params: engine.Params{MaxTokens: 128}})
					if err != nil {
						b.Fatal(err)
					}
					for range ch {
					}
				}
				run() // graphs recorded, kernels loaded
				before := e.Stats()
				start := time.Now()
				for b.Loop() {
					run()
				}
				st := e.Stats()
				b.ReportMetric(float64(128*b.N)/time.Since(start).Seconds(), "tok/s")
				b.ReportMetric(float64(st.Steps-before.Steps)/float64(b.N), "steps/req")
				b.ReportMetric(float64(st.Accepted-before.Accepted)/float64(st.Steps-before.Steps), "held/step")
			})
		}
	}
}

// TestSpeculateGrammarOnDevice: a greedy request under a JSON schema with
// drafts (engine.Options.Speculate) on the device, openchat-tiny in fp16,
// its prompt holding documents of the schema for the lookups to copy: each
// draft row draws under its own mask (sample_rows), and every token is
// allowed and the CPU reference's best allowed one after the same tokens,
// within fp16's rounding; some draft tokens hold.
func TestSpeculateGrammarOnDevice(t *testing.T) {
	mc, mg, ids, tok, v, g := tinyGrammar(t, `{"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "items": {"type": "array", "items": {"enum": ["apple", "pear"]}, "maxItems": 4}}, "required": ["name", "items"], "additionalProperties": false}`)
	docs, err := tok.Encode(` {"name": "fruit", "items": ["apple", "pear", "apple"]} {"name": "fruit", "items": ["pear", "apple"]}`)
	if err != nil {
		t.Fatal(err)
	}
	prompt := append(append([]int(nil), ids[:40]...), docs...)
	e, err := engine.New(engine.Options{Model: mg, Blocks: 64, BlockSize: 16, MaxLen: 256, StepTokens: 256, Speculate: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	evs := submitPrompt(t, e, prompt, engine.Params{MaxTokens: 60, StopTokens: []int{tok.EOS(), 32000},
		Grammar: func() sample.Matcher { return g.NewMatcher() }})
	seq := append([]int(nil), prompt...)
	var done engine.Event
	for _, ev := range evs {
		if ev.Done {
			done = ev
		} else {
			seq = append(seq, ev.Token)
		}
	}
	if done.Err != nil || len(seq) == len(prompt) {
		t.Fatalf("%s (%v) after %d tokens", done.FinishReason, done.Err, len(seq)-len(prompt))
	}
	logits, err := mc.Forward(seq, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	V := mc.Vocab()
	replay := g.NewMatcher()
	const tol = 3e-2
	for i := len(prompt); i < len(seq); i++ {
		row := logits[(i-1)*V : i*V]
		mask, _ := replay.Allowed()
		if mask[seq[i]>>6]>>(seq[i]&63)&1 == 0 {
			t.Fatalf("token %d (%q): not allowed", i-len(prompt), v.Text(seq[i]))
		}
		best := bestAllowed(row, mask)
		// (Logits, not log-probabilities: the same shift in a row.)
		if got := float64(row[seq[i]]); got < best-tol {
			t.Errorf("token %d (%q): logit %.4f on the CPU, the best allowed there %.4f", i-len(prompt), v.Text(seq[i]), got, best)
		}
		if err := replay.Accept(seq[i]); err != nil {
			t.Fatal(err)
		}
	}
	st := e.Stats()
	text, _ := tok.Decode(seq[len(prompt):])
	t.Logf("%s after %d tokens, %d steps, %d draft tokens fed, %d held: %q", done.FinishReason, len(seq)-len(prompt), st.Steps, st.Drafted, st.Accepted, text)
	if st.Accepted == 0 {
		t.Errorf("%d draft tokens fed, %d held: the drafts' path did not run", st.Drafted, st.Accepted)
	}
	if done.FinishReason == "stop" && !json.Valid([]byte(text)) {
		t.Errorf("%q stopped, and is not JSON", text)
	}
}
