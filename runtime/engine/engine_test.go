package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/runtime/sample"
)

// stories loads stories260K on the portable CPU backend, whose batched
// rows are bit-identical to single ones, and its greedy reference.
func stories(t *testing.T) (*model.Model, []int, []int) {
	t.Helper()
	m := storiesOn(t, cpu.NewPortable(2))
	prompt, greedy := fixtures.StoriesGreedy(t)
	return m, prompt, greedy
}

// storiesOn loads stories260K on b.
func storiesOn(t *testing.T, b runtime.Backend) *model.Model {
	t.Helper()
	m, err := model.Load(fixtures.Path(t, "models/stories260K-hf-mistral"), b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func newEngine(t *testing.T, m *model.Model, o Options) *Engine {
	t.Helper()
	o.Model = m
	if o.MaxLen == 0 {
		o.MaxLen = 256
	}
	if o.Blocks == 0 {
		o.Blocks = 256
	}
	e, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

// submitAll submits a request of each of ps at once (prompt(i) the i-th's
// prompt) and reads each one's tokens and last event.
func submitAll(t *testing.T, e *Engine, ps []Params, prompt func(i int) []int) ([][]int, []Event) {
	t.Helper()
	chs := make([]<-chan Event, len(ps))
	for i, p := range ps {
		ch, err := e.Submit(context.Background(), Request{Prompt: prompt(i), Params: p})
		if err != nil {
			t.Fatal(err)
		}
		chs[i] = ch
	}
	toks := make([][]int, len(ps))
	dones := make([]Event, len(ps))
	for i, ch := range chs {
		toks[i], dones[i] = collect(t, ch)
	}
	return toks, dones
}

// collect reads a request's events to the end.
func collect(t *testing.T, ch <-chan Event) ([]int, Event) {
	t.Helper()
	var toks []int
	for ev := range ch {
		switch {
		case ev.Done:
			return toks, ev
		case ev.Prompt == nil && !ev.Stop:
			toks = append(toks, ev.Token)
		}
	}
	return toks, Event{FinishReason: "closed"}
}

// TestGreedyMatchesReference: llama2.c's greedy continuation of
// stories260K, with the prompt fed in chunks of 2 tokens.
func TestGreedyMatchesReference(t *testing.T) {
	m, prompt, greedy := stories(t)
	e := newEngine(t, m, Options{StepTokens: 2, BlockSize: 4})
	ch, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: Params{MaxTokens: len(greedy) - len(prompt)}})
	if err != nil {
		t.Fatal(err)
	}
	toks, done := collect(t, ch)
	if got := append(slices.Clone(prompt), toks...); !slices.Equal(got, greedy) {
		t.Errorf("greedy\n got %v\nwant %v", got, greedy)
	}
	if done.FinishReason != "length" || done.CompletionTokens != len(toks) || done.PromptTokens != len(prompt) {
		t.Errorf("done %+v", done)
	}
	if st := e.Stats(); st.BlocksUsed != 0 {
		t.Errorf("%d blocks still used after the request", st.BlocksUsed)
	}
}

// TestConcurrentRequestsMatchSolo: requests that run together in one batch
// (different prompts, lengths and arrival) give exactly what each gives
// alone.
func TestConcurrentRequestsMatchSolo(t *testing.T) {
	m, prompt, _ := stories(t)
	prompts := [][]int{prompt, prompt[:3], {1, 403, 407, 261, 378, 432, 383}, {1, 261}, {1, 378, 400, 500, 290}}
	solo := make([][]int, len(prompts))
	e1 := newEngine(t, m, Options{})
	for i, p := range prompts {
		ch, err := e1.Submit(context.Background(), Request{Prompt: p, Params: Params{MaxTokens: 20 + i}})
		if err != nil {
			t.Fatal(err)
		}
		solo[i], _ = collect(t, ch)
	}
	e := newEngine(t, m, Options{StepTokens: 5, BlockSize: 8})
	var wg sync.WaitGroup
	got := make([][]int, len(prompts))
	for i, p := range prompts {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * time.Millisecond)
			ch, err := e.Submit(context.Background(), Request{Prompt: p, Params: Params{MaxTokens: 20 + i}})
			if err != nil {
				t.Error(err)
				return
			}
			got[i], _ = collect(t, ch)
		})
	}
	wg.Wait()
	for i := range prompts {
		if !slices.Equal(got[i], solo[i]) {
			t.Errorf("request %d batched %v, alone %v", i, got[i], solo[i])
		}
	}
}

// TestPreemption: a cache with room for one request's whole budget runs
// four at once, taking blocks as they grow; when none is free the newest
// is preempted and later recomputed from its prompt and the tokens it had
// (its sampler going on where it stopped), so every request gives exactly
// what it gives alone, greedy and seeded. A request that can never fit is
// refused.
func TestPreemption(t *testing.T) {
	m, prompt, _ := stories(t)
	params := []Params{
		{MaxTokens: 20},
		{MaxTokens: 20, Temperature: 0.9, Seed: 3, SeedSet: true},
		{MaxTokens: 18, Temperature: 1.2, TopK: 30, Seed: 4, SeedSet: true, FrequencyPenalty: 0.5},
		{MaxTokens: 20, Logprobs: true, TopLogprobs: 2},
	}
	solo := make([][]int, len(params))
	soloLP := make([][]float64, len(params))
	e1 := newEngine(t, m, Options{})
	for i, p := range params {
		ch, err := e1.Submit(context.Background(), Request{Prompt: prompt, Params: p})
		if err != nil {
			t.Fatal(err)
		}
		for ev := range ch {
			if !ev.Done {
				solo[i] = append(solo[i], ev.Token)
				soloLP[i] = append(soloLP[i], ev.Logprob)
			}
		}
	}
	for _, noAhead := range []bool{true, false} {
		e := newEngine(t, m, Options{Blocks: 4, BlockSize: 8, NoAhead: noAhead}) // 32 positions: one budget
		chs := make([]<-chan Event, len(params))
		for i, p := range params {
			ch, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: p})
			if err != nil {
				t.Fatal(err)
			}
			chs[i] = ch
		}
		for i, ch := range chs {
			var toks []int
			var lps []float64
			var done Event
			for ev := range ch {
				if ev.Done {
					done = ev
				} else {
					toks, lps = append(toks, ev.Token), append(lps, ev.Logprob)
				}
			}
			if !slices.Equal(toks, solo[i]) || done.FinishReason != "length" || done.CompletionTokens != len(solo[i]) {
				t.Errorf("NoAhead %v, request %d: %v (%s, %d tokens), alone %v", noAhead, i, toks, done.FinishReason, done.CompletionTokens, solo[i])
			}
			if params[i].Logprobs && !slices.Equal(lps, soloLP[i]) {
				t.Errorf("NoAhead %v, request %d: logprobs %v, alone %v", noAhead, i, lps, soloLP[i])
			}
		}
		st := e.Stats()
		if st.Preemptions == 0 {
			t.Errorf("NoAhead %v: no preemption with room for one budget of four", noAhead)
		}
		if st.BlocksUsed != 0 {
			t.Errorf("NoAhead %v: %d blocks still used", noAhead, st.BlocksUsed)
		}
		t.Logf("NoAhead %v: %d preemptions, %d steps", noAhead, st.Preemptions, st.Steps)
	}
	e := newEngine(t, m, Options{Blocks: 4, BlockSize: 8})
	if _, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: Params{MaxTokens: 40}}); !errors.Is(err, ErrTooLong) {
		t.Errorf("a request larger than the cache: %v, want ErrTooLong", err)
	}
}

// TestNoBudgetUpFront: a request that leaves its budget to the context
// (max_tokens omitted) holds only the blocks it has written, so a short
// request beside it is admitted at once rather than after it.
func TestNoBudgetUpFront(t *testing.T) {
	m, prompt, _ := stories(t)
	e := newEngine(t, m, Options{MaxLen: 256, Blocks: 16, BlockSize: 16}) // 256 positions: one whole context
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	long, err := e.Submit(ctx, Request{Prompt: prompt, Params: Params{MaxTokens: 256 - len(prompt)}})
	if err != nil {
		t.Fatal(err)
	}
	<-long // generating
	short, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: Params{MaxTokens: 5}})
	if err != nil {
		t.Fatal(err)
	}
	toks, done := collect(t, short)
	if len(toks) != 5 || done.FinishReason != "length" {
		t.Errorf("short request: %d tokens, %+v", len(toks), done)
	}
	if st := e.Stats(); st.Running != 1 || st.Generated < 5 {
		t.Errorf("the short request did not run beside the long one: %+v", st)
	}
	cancel()
	for range long {
	}
}

func TestQueueFullAndTooLong(t *testing.T) {
	m, prompt, _ := stories(t)
	e := newEngine(t, m, Options{MaxQueue: 1, MaxRunning: 1, MaxLen: 64})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var err error
	for i := 0; i < 10 && err == nil; i++ {
		_, err = e.Submit(ctx, Request{Prompt: prompt, Params: Params{MaxTokens: 50}})
	}
	if !errors.Is(err, ErrQueueFull) {
		t.Errorf("submitting past the queue: %v, want ErrQueueFull", err)
	}
	if _, err := e.Submit(ctx, Request{Prompt: make([]int, 64), Params: Params{MaxTokens: 1}}); !errors.Is(err, ErrTooLong) {
		t.Errorf("a prompt of the whole context: %v, want ErrTooLong", err)
	}
	if _, err := e.Submit(ctx, Request{Prompt: prompt, Params: Params{MaxTokens: 60}}); !errors.Is(err, ErrTooLong) {
		t.Errorf("prompt + max tokens past the context: %v, want ErrTooLong", err)
	}
}

// TestCancelFreesBlocks: a cancelled request ends and its blocks are free.
func TestCancelFreesBlocks(t *testing.T) {
	m, prompt, _ := stories(t)
	e := newEngine(t, m, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := e.Submit(ctx, Request{Prompt: prompt, Params: Params{MaxTokens: 200}})
	if err != nil {
		t.Fatal(err)
	}
	<-ch // the first token
	if st := e.Stats(); st.BlocksUsed == 0 || st.Running != 1 {
		t.Fatalf("running %d with %d blocks", st.Running, st.BlocksUsed)
	}
	cancel()
	for range ch {
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.Stats().BlocksUsed != 0 || e.Stats().Running != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("blocks still used after cancel: %+v", e.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSampling: seeds reproduce, stop tokens stop, penalties change the
// choice, log-probabilities are consistent.
func TestSampling(t *testing.T) {
	m, prompt, greedy := stories(t)
	e := newEngine(t, m, Options{})
	run := func(p Params) ([]int, Event, []Event) {
		ch, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: p})
		if err != nil {
			t.Fatal(err)
		}
		var evs []Event
		var toks []int
		for ev := range ch {
			if ev.Done {
				return toks, ev, evs
			}
			toks = append(toks, ev.Token)
			evs = append(evs, ev)
		}
		t.Fatal("no done event")
		return nil, Event{}, nil
	}
	a, _, _ := run(Params{MaxTokens: 30, Temperature: 1, Seed: 7, SeedSet: true})
	b, _, _ := run(Params{MaxTokens: 30, Temperature: 1, Seed: 7, SeedSet: true})
	c, _, _ := run(Params{MaxTokens: 30, Temperature: 1, Seed: 8, SeedSet: true})
	if !slices.Equal(a, b) || slices.Equal(a, c) {
		t.Errorf("seed 7 twice: %v / %v; seed 8: %v", a, b, c)
	}
	stopAt := greedy[len(prompt)+3]
	toks, done, _ := run(Params{MaxTokens: 30, StopTokens: []int{stopAt}})
	if done.FinishReason != "stop" || slices.Contains(toks, stopAt) || !slices.Equal(toks, greedy[len(prompt):len(prompt)+3]) {
		t.Errorf("stop at %d: %v, %+v", stopAt, toks, done)
	}
	toks, _, _ = run(Params{MaxTokens: 25, PresencePenalty: 100})
	seen := map[int]bool{}
	for _, tk := range toks {
		if seen[tk] {
			t.Errorf("token %d repeated under a presence penalty of 100: %v", tk, toks)
			break
		}
		seen[tk] = true
	}
	_, _, evs := run(Params{MaxTokens: 5, Logprobs: true, TopLogprobs: 3})
	for _, ev := range evs {
		if len(ev.Top) != 3 || ev.Top[0].Token != ev.Token || ev.Top[0].Logprob != ev.Logprob ||
			ev.Top[1].Logprob > ev.Top[0].Logprob || ev.Logprob > 0 {
			t.Errorf("greedy logprobs inconsistent: %+v", ev)
		}
	}
}

// TestClose: closing waits for running requests; with an expired context
// it cancels them.
func TestClose(t *testing.T) {
	m, prompt, _ := stories(t)
	e, err := New(Options{Model: m, MaxLen: 512, Blocks: 64})
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := e.Submit(context.Background(), Request{Prompt: prompt, Params: Params{MaxTokens: 10}})
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if toks, done := collect(t, ch); len(toks) != 10 || done.FinishReason != "length" {
		t.Errorf("a request running at Close: %d tokens, %+v", len(toks), done)
	}
	if _, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: Params{MaxTokens: 1}}); !errors.Is(err, ErrClosed) {
		t.Errorf("submit after Close: %v", err)
	}
	e2, err := New(Options{Model: m, MaxLen: 512, Blocks: 64})
	if err != nil {
		t.Fatal(err)
	}
	ch, _ = e2.Submit(context.Background(), Request{Prompt: prompt, Params: Params{MaxTokens: 400}})
	<-ch
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := e2.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("close with a deadline: %v", err)
	}
	_, done := collect(t, ch)
	if done.FinishReason != "cancelled" {
		t.Errorf("a request cut by Close: %+v", done)
	}
}

// TestAheadMatchesNoAhead: requests of every kind running together give
// the same tokens and endings whether steps are issued ahead of the last
// step's tokens or not: greedy and seeded draws, a stop token reached with
// a step in flight, penalties and log-probabilities (whose steps are not
// issued ahead: their draws would differ, or their log-probabilities be
// missing), token budgets; every block comes back.
func TestAheadMatchesNoAhead(t *testing.T) {
	m, prompt, greedy := stories(t)
	reqs := []Params{
		{MaxTokens: 40},
		{MaxTokens: 33, Temperature: 0.9, TopP: 0.95, Seed: 3, SeedSet: true},
		{MaxTokens: 30, StopTokens: []int{greedy[len(prompt)+6]}},
		{MaxTokens: 12, Temperature: 1.1, TopK: 40, Seed: 5, SeedSet: true},
		{MaxTokens: 64 - len(prompt)}, // the whole context
	}
	run := func(noAhead bool, extra ...Params) ([][]int, []Event, Stats) {
		obs := &countObserver{}
		e := newEngine(t, m, Options{NoAhead: noAhead, MaxLen: 64, BlockSize: 4, Observer: obs})
		ps := append(slices.Clone(reqs), extra...)
		toks, dones := submitAll(t, e, ps, func(i int) []int {
			if i >= len(reqs) {
				return prompt[:1] // fewer tokens that a repetition penalty changes from the start
			}
			return prompt
		})
		st := e.Stats()
		if st.BlocksUsed != 0 {
			t.Errorf("%d blocks still used", st.BlocksUsed)
		}
		// The tokens dropped after a stop are not timed.
		n := 0
		for _, d := range dones {
			n += d.CompletionTokens
		}
		if st.Generated != int64(n) || obs.tokens() != n { // the stop token is timed and counted, not emitted
			t.Errorf("%d tokens generated, %d counted, %d timed (want %d, the stop's among them)", n, st.Generated, obs.tokens(), n)
		}
		return toks, dones, st
	}
	check := func(what string, extra ...Params) {
		want, wantDone, st0 := run(true, extra...)
		got, gotDone, st := run(false, extra...)
		for i := range want {
			if !slices.Equal(got[i], want[i]) || gotDone[i].FinishReason != wantDone[i].FinishReason || gotDone[i].CompletionTokens != wantDone[i].CompletionTokens {
				t.Errorf("%s: request %d ahead %v (%s), not ahead %v (%s)", what, i, got[i], gotDone[i].FinishReason, want[i], wantDone[i].FinishReason)
			}
		}
		if st0.Ahead != 0 {
			t.Errorf("%s: %d steps issued ahead with NoAhead", what, st0.Ahead)
		}
		if st.Ahead == 0 {
			t.Errorf("%s: no step issued ahead", what)
		}
	}
	check("plain")
	if t.Failed() {
		return
	}
	// Alone, a request of n tokens takes n steps either way: no step is
	// issued ahead for a token its budget has no room for.
	for _, noAhead := range []bool{true, false} {
		e := newEngine(t, m, Options{NoAhead: noAhead})
		ch, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: Params{MaxTokens: 10}})
		if err != nil {
			t.Fatal(err)
		}
		collect(t, ch)
		if st, ahead := e.Stats(), map[bool]int64{true: 0, false: 9}[noAhead]; st.Steps != 10 || st.Ahead != ahead {
			t.Errorf("NoAhead %v: %d steps, %d ahead, for 10 tokens (want 10, %d)", noAhead, st.Steps, st.Ahead, ahead)
		}
	}
	// Penalties that pull the draws to the tokens already drawn (from a
	// prompt of one token), so that a rule made before the token in flight
	// is counted would draw differently: each check fails if its penalty
	// is let go ahead.
	check("presence", Params{MaxTokens: 45, PresencePenalty: -50, Temperature: 0.8, Seed: 9, SeedSet: true})
	check("frequency", Params{MaxTokens: 45, FrequencyPenalty: -20})
	check("repetition", Params{MaxTokens: 45, RepetitionPenalty: 0.5})
	check("logprobs", Params{MaxTokens: 45, Logprobs: true, TopLogprobs: 2})
}

// countObserver counts the timings of tokens.
type countObserver struct {
	mu sync.Mutex
	n  int
}

func (o *countObserver) FirstToken(time.Duration)  { o.mu.Lock(); o.n++; o.mu.Unlock() }
func (o *countObserver) InterToken(time.Duration)  { o.mu.Lock(); o.n++; o.mu.Unlock() }
func (o *countObserver) Finished(string, int, int) {}
func (o *countObserver) tokens() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n
}

// refLogprobs is, from the model's own full forward (model.Forward, every
// row's logits), the log-probability of each token of ids after the first
// given those before it, and the most likely token there, in float64.
func refLogprobs(t *testing.T, m *model.Model, ids []int) (lps []float64, best []int) {
	t.Helper()
	logits, err := m.Forward(ids, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	lps, best, _ = backendtest.NextLogprobs(logits, m.Vocab(), ids)
	return lps, best
}

// TestPromptLogprobs: the prompt's log-probabilities (echo with logprobs,
// lm-eval's loglikelihood requests) are those of the model's full
// forward, whatever the chunking, come in one event before the first
// token, and with MaxTokens 0 are all there is; a prompt cut short by a
// preemption is scored again from its start.
func TestPromptLogprobs(t *testing.T) {
	m, _, greedy := stories(t)
	want, best := refLogprobs(t, m, greedy[:40])
	// With the rows scored on the host (the logits brought back), and by a
	// backend that scores rows where they are (runtime.RowScorer).
	ms := storiesOn(t, &rowScoring{Backend: cpu.NewPortable(2)})
	t.Run("host", func(t *testing.T) { testPromptLogprobs(t, m, greedy, want, best) })
	t.Run("backend", func(t *testing.T) {
		testPromptLogprobs(t, ms, greedy, want, best)
		if ms.Backend().(*rowScoring).calls.Load() == 0 {
			t.Error("the backend scored no rows")
		}
	})
}

// rowScoring is the CPU backend as a runtime.RowScorer: it downloads the
// logits and scores them with the conformance suite's reference.
type rowScoring struct {
	*cpu.Backend
	calls atomic.Int64
}

func (b *rowScoring) ScoresRows() bool { return true }

func (b *rowScoring) ScoreRows(logits runtime.Tensor, targets []int, k int) ([]float64, []int32, []float64, error) {
	b.calls.Add(1)
	rows, V := runtime.Rows(logits), runtime.Cols(logits)
	all := make([]float32, rows*V)
	if err := b.Download(all, logits); err != nil {
		return nil, nil, nil, err
	}
	lp, ids, top := backendtest.ScoreRows(all, V, targets, k)
	return lp, ids, top, nil
}

func testPromptLogprobs(t *testing.T, m *model.Model, greedy []int, want []float64, best []int) {
	prompt := greedy[:40]
	check := func(t *testing.T, got []PromptToken, top int) {
		t.Helper()
		if len(got) != len(prompt)-1 {
			t.Fatalf("%d prompt log-probabilities, want %d", len(got), len(prompt)-1)
		}
		for i, pt := range got {
			if pt.Token != prompt[i+1] || math.Abs(pt.Logprob-want[i]) > 1e-4 {
				t.Errorf("prompt token %d: %d %.6f, want %d %.6f", i+1, pt.Token, pt.Logprob, prompt[i+1], want[i])
			}
			if len(pt.Top) != top {
				t.Errorf("prompt token %d: %d alternatives, want %d", i+1, len(pt.Top), top)
			} else if top > 0 && pt.Top[0].Token != best[i] {
				t.Errorf("prompt token %d: most likely %d, want %d", i+1, pt.Top[0].Token, best[i])
			}
		}
	}
	for _, chunk := range []int{512, 7, 1} {
		t.Run(fmt.Sprintf("chunks of %d", chunk), func(t *testing.T) {
			e := newEngine(t, m, Options{StepTokens: chunk, BlockSize: 4})
			ch, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: Params{PromptLogprobs: true, TopLogprobs: 2}})
			if err != nil {
				t.Fatal(err)
			}
			var events []Event
			for ev := range ch {
				events = append(events, ev)
			}
			if len(events) != 2 || events[0].Prompt == nil || !events[1].Done {
				t.Fatalf("events %+v, want the prompt's then the end", events)
			}
			check(t, events[0].Prompt, 2)
			if d := events[1]; d.FinishReason != "length" || d.CompletionTokens != 0 || d.PromptTokens != len(prompt) {
				t.Errorf("end %+v, want length with no token", d)
			}
			if st := e.Stats(); st.BlocksUsed != 0 {
				t.Errorf("%d blocks still used", st.BlocksUsed)
			}
		})
	}
	t.Run("then generate", func(t *testing.T) {
		e := newEngine(t, m, Options{StepTokens: 16})
		ch, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: Params{MaxTokens: 10, PromptLogprobs: true}})
		if err != nil {
			t.Fatal(err)
		}
		first, ok := <-ch
		if !ok || first.Prompt == nil {
			t.Fatalf("first event %+v, want the prompt's", first)
		}
		check(t, first.Prompt, 0)
		toks, done := collect(t, ch)
		if !slices.Equal(toks, greedy[40:50]) || done.CompletionTokens != 10 {
			t.Errorf("generated %v (%+v), want %v", toks, done, greedy[40:50])
		}
	})
	t.Run("preempted", func(t *testing.T) {
		// 8 blocks of 8. A short request runs beside the scored one, which
		// is fed a token a step; when the short one needs its third block
		// none is free, and the scored one, the newest, is preempted
		// mid-prompt and scored again once readmitted.
		e := newEngine(t, m, Options{Blocks: 8, BlockSize: 8, StepTokens: 2, NoAhead: true})
		short, err := e.Submit(context.Background(), Request{Prompt: greedy[:2], Params: Params{MaxTokens: 30}})
		if err != nil {
			t.Fatal(err)
		}
		scored, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: Params{MaxTokens: 12, PromptLogprobs: true, TopLogprobs: 1}})
		if err != nil {
			t.Fatal(err)
		}
		if toks, _ := collect(t, short); !slices.Equal(toks, greedy[2:32]) {
			t.Errorf("short request: %v, want %v", toks, greedy[2:32])
		}
		first := <-scored
		if first.Prompt == nil {
			t.Fatalf("first event %+v, want the prompt's", first)
		}
		check(t, first.Prompt, 1)
		if toks, _ := collect(t, scored); !slices.Equal(toks, greedy[40:52]) {
			t.Errorf("generated %v, want %v", toks, greedy[40:52])
		}
		if st := e.Stats(); st.Preemptions == 0 {
			t.Error("no preemption")
		}
	})
	t.Run("edges", func(t *testing.T) {
		e := newEngine(t, m, Options{})
		if _, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: Params{MaxTokens: -1}}); err == nil {
			t.Error("MaxTokens -1 was accepted")
		}
		ch, err := e.Submit(context.Background(), Request{Prompt: prompt[:1], Params: Params{PromptLogprobs: true}})
		if err != nil {
			t.Fatal(err)
		}
		if ev := <-ch; ev.Prompt == nil || len(ev.Prompt) != 0 {
			t.Errorf("a prompt of one token: first event %+v, want an empty Prompt", ev)
		}
	})
}

// TestPrefixCache: a prompt that starts with tokens an earlier request
// wrote (its prompt, or its prompt and answer: the next turn of a
// conversation) shares their cached blocks and is fed only the rest, with
// exactly the tokens and log-probabilities computed without the cache; a
// prompt whose log-probabilities are asked for is computed whole; cached
// blocks give way when the cache is needed.
func TestPrefixCache(t *testing.T) {
	m, _, greedy := stories(t)
	type result struct {
		toks []int
		lps  []float64
	}
	run := func(t *testing.T, e *Engine, prompt []int, p Params) result {
		t.Helper()
		ch, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: p})
		if err != nil {
			t.Fatal(err)
		}
		var r result
		for ev := range ch {
			if !ev.Done && ev.Prompt == nil {
				r.toks, r.lps = append(r.toks, ev.Token), append(r.lps, ev.Logprob)
			}
		}
		return r
	}
	sampled := Params{MaxTokens: 10, Temperature: 0.8, Seed: 5, SeedSet: true, Logprobs: true}
	plain := newEngine(t, m, Options{BlockSize: 8, NoPrefixCache: true})
	e := newEngine(t, m, Options{BlockSize: 8, StepTokens: 16})
	first := run(t, e, greedy[:40], Params{MaxTokens: 10})
	if st := e.Stats(); st.PrefixHits != 0 || st.BlocksCached != 6 {
		t.Errorf("after one request: %d positions hit, %d blocks cached; want 0 and 6 (48 positions written)", st.PrefixHits, st.BlocksCached)
	}
	for _, c := range []struct {
		name   string
		prompt []int
		p      Params
		hits   int64 // positions shared
	}{
		{"the same prompt", greedy[:40], Params{MaxTokens: 10}, 32},                                    // (39 fed at least: 4 blocks)
		{"the same prompt sampled", greedy[:40], sampled, 32},                                          //
		{"the next turn", slices.Concat(greedy[:40], first.toks[:9]), Params{MaxTokens: 10}, 48},       // the answer's blocks too
		{"a shorter prompt", greedy[:20], Params{MaxTokens: 10}, 16},                                   //
		{"another prompt", slices.Concat([]int{1}, greedy[30:60]), Params{MaxTokens: 10}, 0},           //
		{"scored prompt", greedy[:40], Params{MaxTokens: 3, PromptLogprobs: true, TopLogprobs: 1}, -1}, // not looked up
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.Stats()
			got := run(t, e, c.prompt, c.p)
			want := run(t, plain, c.prompt, c.p)
			if !slices.Equal(got.toks, want.toks) || !slices.Equal(got.lps, want.lps) {
				t.Errorf("with the cache %v %v\nwithout        %v %v", got.toks, got.lps, want.toks, want.lps)
			}
			st := e.Stats()
			q, h := st.PrefixQueries-before.PrefixQueries, st.PrefixHits-before.PrefixHits
			if c.hits < 0 && q != 0 || c.hits >= 0 && (h != c.hits || q != int64(len(c.prompt))) {
				t.Errorf("%d of %d positions hit, want %d of %d", h, q, c.hits, len(c.prompt))
			}
			if st.BlocksUsed != 0 {
				t.Errorf("%d blocks still held", st.BlocksUsed)
			}
		})
	}
	if want := greedy[40:50]; !slices.Equal(first.toks, want) {
		t.Errorf("greedy %v, want %v", first.toks, want)
	}
	t.Run("evicted", func(t *testing.T) {
		// 8 blocks of 8: each prompt of 40 caches 6 blocks, so the second
		// evicts most of the first's, and the first again finds only what
		// is left of it, with the right tokens still.
		e := newEngine(t, m, Options{Blocks: 8, BlockSize: 8, StepTokens: 16})
		a, b := greedy[:40], slices.Concat([]int{1}, greedy[25:64])
		wantHits := []int64{0, 0, 16, 16} // what is left of each after the other
		for i, prompt := range [][]int{a, b, a, b} {
			before := e.Stats()
			got, want := run(t, e, prompt, Params{MaxTokens: 8}), run(t, plain, prompt, Params{MaxTokens: 8})
			if !slices.Equal(got.toks, want.toks) {
				t.Errorf("request %d: %v, without the cache %v", i, got.toks, want.toks)
			}
			st := e.Stats()
			t.Logf("request %d: %d of %d positions hit, %d blocks cached", i, st.PrefixHits-before.PrefixHits, len(prompt), st.BlocksCached)
			if st.BlocksUsed != 0 || st.PrefixHits-before.PrefixHits != wantHits[i] {
				t.Errorf("request %d: %d blocks held, %d positions hit; want 0 and %d", i, st.BlocksUsed, st.PrefixHits-before.PrefixHits, wantHits[i])
			}
		}
	})
}

// TestStopTokenLogprob: with log-probabilities, the stop token that ends a
// generation comes (marked Stop, not part of the output) with its
// log-probability, before the end; without, it does not come.
func TestStopTokenLogprob(t *testing.T) {
	m, prompt, greedy := stories(t)
	j := len(prompt) + 3 // the fourth generated token stops it
	for slices.Contains(greedy[len(prompt):j], greedy[j]) {
		j++
	}
	stop := greedy[j]
	want, _ := refLogprobs(t, m, greedy[:j+1])
	e := newEngine(t, m, Options{})
	for _, lp := range []bool{true, false} {
		ch, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: Params{MaxTokens: 50, StopTokens: []int{stop}, Logprobs: lp}})
		if err != nil {
			t.Fatal(err)
		}
		var evs []Event
		for ev := range ch {
			evs = append(evs, ev)
		}
		n := j - len(prompt) // tokens emitted before the stop
		last := evs[len(evs)-1]
		if !last.Done || last.FinishReason != "stop" || last.CompletionTokens != n+1 {
			t.Fatalf("logprobs %v: end %+v, want stop after %d tokens and the stop token", lp, last, n)
		}
		switch {
		case lp && (len(evs) != n+2 || !evs[n].Stop || evs[n].Token != stop || math.Abs(evs[n].Logprob-want[j-1]) > 1e-4):
			t.Errorf("logprobs: events %+v, want %d tokens, then the stop token %d (log-probability %.5f), then the end", evs, n, stop, want[j-1])
		case !lp && len(evs) != n+1:
			t.Errorf("no logprobs: %d events, want %d tokens and the end", len(evs), n)
		}
	}
}

// BenchmarkRowLogprobs: one prompt row's log-probability and best token
// over openchat's vocabulary, the host's share of scoring a prompt (a
// 512-token chunk is 512 rows, shared out among the cores).
func BenchmarkRowLogprobs(b *testing.B) {
	row := make([]float32, 32002)
	for i := range row {
		row[i] = float32(math.Sin(float64(i))) * 8
	}
	b.SetBytes(int64(4 * len(row)))
	for b.Loop() {
		rowLogprobs(row, 1234, 1)
	}
}

// TestLogitBiasAndMinTokens: OpenAI's logit_bias moves the draw (a token
// banned gives the next most likely, one favoured is drawn every time),
// and vLLM's min_tokens keeps the stop tokens from ending a generation
// early, steps issued ahead or not.
func TestLogitBiasAndMinTokens(t *testing.T) {
	m, prompt, greedy := stories(t)
	logits, err := m.Forward(prompt, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	row := logits[len(logits)-m.Vocab():]
	second := -1
	for id, v := range row {
		if id != greedy[len(prompt)] && (second < 0 || v > row[second]) {
			second = id
		}
	}
	for _, noAhead := range []bool{false, true} {
		e := newEngine(t, m, Options{NoAhead: noAhead})
		gen := func(p Params) ([]int, Event) {
			ch, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: p})
			if err != nil {
				t.Fatal(err)
			}
			return collect(t, ch)
		}
		if toks, _ := gen(Params{MaxTokens: 3, LogitBias: map[int]float32{greedy[len(prompt)]: -100}}); toks[0] != second {
			t.Errorf("NoAhead %v: the greedy token banned: first token %d, want the next most likely %d", noAhead, toks[0], second)
		}
		if toks, _ := gen(Params{MaxTokens: 6, LogitBias: map[int]float32{300: 100}}); !slices.Equal(toks, []int{300, 300, 300, 300, 300, 300}) {
			t.Errorf("NoAhead %v: token 300 favoured by 100: %v", noAhead, toks)
		}
		// The fourth greedy token as a stop token: it ends the generation,
		// unless min_tokens asks for more.
		j := len(prompt) + 3
		for slices.Contains(greedy[len(prompt):j], greedy[j]) {
			j++
		}
		stop := []int{greedy[j]}
		n := j - len(prompt)
		if toks, done := gen(Params{MaxTokens: 30, StopTokens: stop}); len(toks) != n || done.FinishReason != "stop" {
			t.Fatalf("NoAhead %v: stop token %d: %d tokens (%s), want %d and stop", noAhead, stop[0], len(toks), done.FinishReason, n)
		}
		toks, done := gen(Params{MaxTokens: 30, StopTokens: stop, MinTokens: n + 5})
		if len(toks) < n+5 || !slices.Equal(toks[:n], greedy[len(prompt):j]) || slices.Contains(toks[:n+5], stop[0]) {
			t.Errorf("NoAhead %v: min_tokens %d: %v (%s)", noAhead, n+5, toks, done.FinishReason)
		}
		if _, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: Params{MaxTokens: 3, MinTokens: 4}}); err == nil {
			t.Error("min tokens over max tokens accepted")
		}
		if _, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: Params{MaxTokens: 3, LogitBias: map[int]float32{1 << 20: 1}}}); err == nil {
			t.Error("a logit bias outside the vocabulary accepted")
		}
	}
}

// scriptMatcher is a Matcher that allows, at its i-th token, the tokens of
// allow(i) and says the output is complete from token end on; it records
// the tokens accepted.
type scriptMatcher struct {
	vocab    int
	allow    func(i int) []int
	end      int
	accepted []int
}

func (m *scriptMatcher) Allowed() ([]uint64, bool) {
	mask := make([]uint64, (m.vocab+63)/64)
	for _, id := range m.allow(len(m.accepted)) {
		mask[id>>6] |= 1 << (id & 63)
	}
	return mask, len(m.accepted) >= m.end
}

func (m *scriptMatcher) Accept(tok int) error {
	if !slices.Contains(m.allow(len(m.accepted)), tok) {
		return fmt.Errorf("token %d not allowed", tok)
	}
	m.accepted = append(m.accepted, tok)
	return nil
}

// TestGrammarDraws checks draws under a Params.Grammar against what the
// mask alone decides: a forced sequence is generated whatever the model
// prefers, then the sequence stops where the matcher allows no more text;
// a stop token favoured by a logit bias of 100 still waits for the output
// to be complete; the most likely allowed token is drawn greedily; a
// matcher that allows nothing ends the request with an error. Each runs
// beside an unconstrained request, which decodes as it does alone.
func TestGrammarDraws(t *testing.T) {
	m, prompt, greedy := stories(t)
	V := m.Vocab()
	eos := 2
	logits, err := m.Forward(prompt, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	row := logits[len(logits)-V:]
	for _, noAhead := range []bool{false, true} {
		e := newEngine(t, m, Options{NoAhead: noAhead})
		run := func(p Params, mt *scriptMatcher) ([]int, Event) {
			p.Grammar = func() sample.Matcher { return mt }
			ch, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: p})
			if err != nil {
				t.Fatal(err)
			}
			free, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: Params{MaxTokens: 20}})
			if err != nil {
				t.Fatal(err)
			}
			toks, done := collect(t, ch)
			if f, _ := collect(t, free); !slices.Equal(f, greedy[len(prompt):len(prompt)+20]) {
				t.Errorf("NoAhead %v: the unconstrained request beside: %v, want the greedy %v", noAhead, f, greedy[len(prompt):len(prompt)+20])
			}
			return toks, done
		}
		forced := []int{300, 17, 300, 42}
		mt := &scriptMatcher{vocab: V, end: len(forced), allow: func(i int) []int {
			if i < len(forced) {
				return forced[i : i+1]
			}
			return nil
		}}
		toks, done := run(Params{MaxTokens: 30, StopTokens: []int{eos}, MinTokens: 10, Temperature: 1}, mt)
		if !slices.Equal(toks, forced) || done.FinishReason != "stop" || !slices.Equal(mt.accepted, forced) {
			t.Errorf("NoAhead %v: forced %v: %v (%s), accepted %v; want the forced tokens and stop", noAhead, forced, toks, done.FinishReason, mt.accepted)
		}

		any := make([]int, V)
		for i := range any {
			any[i] = i
		}
		mt = &scriptMatcher{vocab: V, end: 5, allow: func(int) []int { return any }}
		toks, done = run(Params{MaxTokens: 30, StopTokens: []int{eos}, LogitBias: map[int]float32{eos: 100}}, mt)
		if len(toks) != 5 || done.FinishReason != "stop" || slices.Contains(toks, eos) {
			t.Errorf("NoAhead %v: EOS favoured by 100, complete after 5 tokens: %v (%s), want 5 tokens and stop", noAhead, toks, done.FinishReason)
		}

		// Greedy among {a, b}: the one of the larger logit.
		a, b := 100, 200
		want := a
		if row[b] > row[a] {
			want = b
		}
		mt = &scriptMatcher{vocab: V, end: 1, allow: func(i int) []int {
			if i == 0 {
				return []int{a, b}
			}
			return nil
		}}
		if toks, _ = run(Params{MaxTokens: 5}, mt); !slices.Equal(toks, []int{want}) {
			t.Errorf("NoAhead %v: greedy among %d (%g) and %d (%g): %v, want [%d]", noAhead, a, row[a], b, row[b], toks, want)
		}

		// A matcher that allows nothing: refused at once; one that allows
		// nothing after its first token ends the request with an error.
		mt = &scriptMatcher{vocab: V, end: 1 << 30, allow: func(int) []int { return nil }}
		if _, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: Params{MaxTokens: 5, Grammar: func() sample.Matcher { return mt }}}); err == nil {
			t.Errorf("NoAhead %v: a grammar that allows nothing was accepted", noAhead)
		}
		mt = &scriptMatcher{vocab: V, end: 1 << 30, allow: func(i int) []int {
			if i == 0 {
				return []int{300}
			}
			return nil
		}}
		if toks, done = run(Params{MaxTokens: 5}, mt); done.FinishReason != "error" || done.Err == nil || !slices.Equal(toks, []int{300}) {
			t.Errorf("NoAhead %v: nothing allowed after a token: %v, %s (%v), want [300] and an error", noAhead, toks, done.FinishReason, done.Err)
		}
	}
}
