package engine

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// TestSpeculativeMatchesPlain: with drafts by prompt lookup
// (Options.Speculate) every request gives exactly the tokens and finish of
// the engine without them: greedy and seeded sampled requests (each row of
// a draft drawn with the uniform number its position takes without
// drafts), with repetition, presence and frequency penalties counting the
// draft's tokens before each row, with min_tokens banning stop tokens
// within a draft, requests ended by max_tokens, by the context, and by a
// stop token inside an accepted draft, alone, batched and under
// preemption. Drafts were fed and some held, so the path ran.
func TestSpeculativeMatchesPlain(t *testing.T) {
	m, prompt, greedy := stories(t)
	// A prompt that holds the greedy continuation once already, so that
	// lookups find runs the model may confirm, and a prompt of no repeats.
	echo := append(slices.Clone(greedy), prompt...)
	short := []int{1, 403, 407, 261, 378, 432, 383}
	// A token the greedy continuation draws twice, as a stop token.
	var stop int
	seen := map[int]int{}
	for _, tok := range greedy[len(prompt):] {
		if seen[tok]++; seen[tok] == 2 && stop == 0 {
			stop = tok
		}
	}
	type req struct {
		prompt []int
		p      Params
	}
	reqs := []req{
		{prompt, Params{MaxTokens: 120}},
		{echo, Params{MaxTokens: 60}},
		{short, Params{MaxTokens: 3}},
		{prompt, Params{MaxTokens: 200, StopTokens: []int{stop}}},
		{echo, Params{MaxTokens: 40, Temperature: 0.8, Seed: 7, SeedSet: true}},
		{echo, Params{MaxTokens: 40, Temperature: 0.5, TopP: 0.9, TopK: 20, Seed: 9, SeedSet: true}},
		{prompt, Params{MaxTokens: 40, RepetitionPenalty: 1.3}},
		{echo, Params{MaxTokens: 40, PresencePenalty: 0.5, FrequencyPenalty: 0.3, Temperature: 0.7, Seed: 5, SeedSet: true}},
		{echo, Params{MaxTokens: 30, MinTokens: 10, StopTokens: []int{stop}}},
		{echo, Params{MaxTokens: 30, LogitBias: map[int]float32{stop: 2}}},
	}
	run := func(o Options, together bool) ([][]int, []Event, Stats) {
		e := newEngine(t, m, o)
		toks, dones := make([][]int, len(reqs)), make([]Event, len(reqs))
		if together {
			ps := make([]Params, len(reqs))
			for i, r := range reqs {
				ps[i] = r.p
			}
			toks, dones = submitAll(t, e, ps, func(i int) []int { return reqs[i].prompt })
		} else {
			for i, r := range reqs {
				ch, err := e.Submit(context.Background(), Request{Prompt: r.prompt, Params: r.p})
				if err != nil {
					t.Fatal(err)
				}
				toks[i], dones[i] = collect(t, ch)
			}
		}
		st := e.Stats()
		if st.BlocksUsed != 0 {
			t.Errorf("%+v: %d blocks still used", o, st.BlocksUsed)
		}
		return toks, dones, st
	}
	want, wantDone, _ := run(Options{MaxLen: 512}, false)
	if wantDone[3].FinishReason != "stop" {
		t.Fatalf("the stop token %d did not end request 3: %+v", stop, wantDone[3])
	}
	for _, c := range []struct {
		name     string
		o        Options
		together bool
	}{
		{"alone", Options{MaxLen: 512, Speculate: 4}, false},
		{"alone, drafts of 1, unigrams", Options{MaxLen: 512, Speculate: 1, LookupMin: 1, LookupMax: 1}, false},
		{"together", Options{MaxLen: 512, Speculate: 5, SpeculateRows: 64}, true},
		{"together, rows of 8", Options{MaxLen: 512, Speculate: 3}, true},
		{"preempting", Options{MaxLen: 512, Speculate: 4, SpeculateRows: 64, Blocks: 40, BlockSize: 8}, true},
	} {
		got, done, st := run(c.o, c.together)
		for i := range reqs {
			if !slices.Equal(got[i], want[i]) || done[i].FinishReason != wantDone[i].FinishReason ||
				done[i].CompletionTokens != wantDone[i].CompletionTokens {
				t.Errorf("%s: request %d gave %v (%s, %d tokens), want %v (%s, %d)", c.name, i, got[i], done[i].FinishReason,
					done[i].CompletionTokens, want[i], wantDone[i].FinishReason, wantDone[i].CompletionTokens)
			}
		}
		if st.Drafted == 0 || st.Accepted == 0 || st.Accepted > st.Drafted {
			t.Errorf("%s: %d draft tokens fed, %d held", c.name, st.Drafted, st.Accepted)
		}
		if c.name == "preempting" && st.Preemptions == 0 {
			t.Errorf("%s: nothing was preempted", c.name)
		}
		t.Logf("%s: %d steps, %d draft tokens fed, %d held", c.name, st.Steps, st.Drafted, st.Accepted)
	}
	// The sampled, penalized and banning requests take drafts themselves,
	// and keep some.
	for _, i := range []int{4, 5, 7, 8} {
		e := newEngine(t, m, Options{MaxLen: 512, Speculate: 4})
		ch, err := e.Submit(context.Background(), Request{Prompt: reqs[i].prompt, Params: reqs[i].p})
		if err != nil {
			t.Fatal(err)
		}
		collect(t, ch)
		if st := e.Stats(); st.Accepted == 0 {
			t.Errorf("request %d (%+v) alone: %d draft tokens fed, %d held", i, reqs[i].p, st.Drafted, st.Accepted)
		}
	}
	// The context's end: a request that runs into MaxLen.
	e0 := newEngine(t, m, Options{MaxLen: len(echo) + 9})
	e1 := newEngine(t, m, Options{MaxLen: len(echo) + 9, Speculate: 4})
	var outs [2][]int
	var dones [2]Event
	for j, e := range []*Engine{e0, e1} {
		ch, err := e.Submit(context.Background(), Request{Prompt: echo, Params: Params{MaxTokens: 9}})
		if err != nil {
			t.Fatal(err)
		}
		outs[j], dones[j] = collect(t, ch)
	}
	if !slices.Equal(outs[0], outs[1]) || dones[1].FinishReason != "length" || len(outs[1]) != 9 {
		t.Errorf("at the context's end: %v (%s), without drafts %v (%s)", outs[1], dones[1].FinishReason, outs[0], dones[0].FinishReason)
	}
}

// TestDraftLookup checks the prompt-lookup drafts on hand-made token
// histories: the longest n-gram first, its latest earlier occurrence, and
// at most k tokens, never past the history.
func TestDraftLookup(t *testing.T) {
	e := &Engine{o: Options{Speculate: 4}}
	for _, c := range []struct {
		toks []int
		k    int
		lo   int
		want []int
	}{
		{[]int{1, 2, 3, 9, 9, 1, 2, 3}, 4, 0, []int{9, 9, 1, 2}},             // trigram, then capped at k
		{[]int{1, 2, 3, 4, 5, 7, 2, 3, 6, 1, 2, 3}, 4, 0, []int{4, 5, 7, 2}}, // "1 2 3", not the later "2 3"
		{[]int{5, 6, 7, 8, 6, 7}, 3, 0, []int{8, 6, 7}},
		{[]int{5, 6, 7, 8, 6, 7}, 1, 0, []int{8}},
		{[]int{1, 2, 3, 4}, 4, 0, nil},            // no repeat
		{[]int{4, 1, 2, 4}, 4, 0, nil},            // only a unigram repeats
		{[]int{4, 1, 2, 4}, 4, 1, []int{1, 2, 4}}, // taken with LookupMin 1
		{[]int{7, 7, 7}, 4, 0, []int{7}},          // the bigram at 0 is followed by one token
	} {
		e.o.LookupMin = c.lo
		if got := e.draft(&seq{tokens: c.toks}, c.k); !slices.Equal(got, c.want) {
			t.Errorf("draft(%v, %d) = %v, want %v", c.toks, c.k, got, c.want)
		}
	}
}

// TestSpeculateBackOff: a request whose text rarely repeats (sampled at
// temperature 1.5) stops looking for drafts after misses, and its steps
// are issued ahead meanwhile (Stats.Ahead), with the same tokens as
// without drafts.
func TestSpeculateBackOff(t *testing.T) {
	m, prompt, _ := stories(t)
	p := Params{MaxTokens: 150, Temperature: 1.5, Seed: 3, SeedSet: true}
	var toks [2][]int
	var st [2]Stats
	for j, k := range []int{0, 4} {
		e := newEngine(t, m, Options{Speculate: k})
		ch, err := e.Submit(context.Background(), Request{Prompt: prompt[:4], Params: p})
		if err != nil {
			t.Fatal(err)
		}
		toks[j], _ = collect(t, ch)
		st[j] = e.Stats()
	}
	if !slices.Equal(toks[0], toks[1]) {
		t.Errorf("with drafts %v, without %v", toks[1], toks[0])
	}
	// Without drafts nearly every step goes ahead; with them, the steps
	// between looks do.
	if st[1].Ahead < st[0].Ahead/2 || st[1].Ahead == 0 {
		t.Errorf("%d steps issued ahead with drafts (%d fed, %d held), %d without", st[1].Ahead, st[1].Drafted, st[1].Accepted, st[0].Ahead)
	}
	t.Logf("ahead %d of %d steps with drafts (%d fed, %d held), %d of %d without", st[1].Ahead, st[1].Steps, st[1].Drafted, st[1].Accepted, st[0].Ahead, st[0].Steps)
}

// TestSpeculateBesideOneTokenScoredChunk: a step whose only prompt chunk
// is one token whose prompt log-probabilities are asked for (every row's
// logits: not the decode path) gives no sequence beside it a draft, so
// neither request fails and both give the tokens of the engine without
// drafts. The chunk's request is submitted with a one-token prompt once
// the other is generating from a prompt that holds its continuation.
func TestSpeculateBesideOneTokenScoredChunk(t *testing.T) {
	m, prompt, greedy := stories(t)
	echo := append(slices.Clone(greedy), prompt...)
	pa := Params{MaxTokens: 200}
	pb := Params{MaxTokens: 5, PromptLogprobs: true}
	run := func(o Options) ([2][]int, [2]Event, Stats) {
		e := newEngine(t, m, o)
		cha, err := e.Submit(context.Background(), Request{Prompt: echo, Params: pa})
		if err != nil {
			t.Fatal(err)
		}
		first := <-cha // a generated token: a is generating
		chb, err := e.Submit(context.Background(), Request{Prompt: []int{1}, Params: pb})
		if err != nil {
			t.Fatal(err)
		}
		var toks [2][]int
		var dones [2]Event
		toks[0], dones[0] = collect(t, cha)
		toks[0] = append([]int{first.Token}, toks[0]...)
		toks[1], dones[1] = collect(t, chb)
		return toks, dones, e.Stats()
	}
	want, wantDone, _ := run(Options{MaxLen: 512})
	got, done, st := run(Options{MaxLen: 512, Speculate: 4})
	for i := range got {
		if !slices.Equal(got[i], want[i]) || done[i].FinishReason != wantDone[i].FinishReason {
			t.Errorf("request %d: %v (%s %v), without drafts %v (%s)", i, got[i], done[i].FinishReason, done[i].Err, want[i], wantDone[i].FinishReason)
		}
	}
	if st.Accepted == 0 {
		t.Errorf("no draft token held (%d fed)", st.Drafted)
	}
}

// TestSpeculateRowsPastDecode: with SpeculateRows above the decode path's
// rows (model.CanDraft), drafts stop where the step would leave it, and
// the requests give the tokens of the engine without drafts.
func TestSpeculateRowsPastDecode(t *testing.T) {
	m, prompt, greedy := stories(t)
	echo := append(slices.Clone(greedy), prompt...)
	ps := make([]Params, 48) // 48 sequences with drafts of 7: 384 rows
	for i := range ps {
		ps[i] = Params{MaxTokens: 16}
	}
	in := func(int) []int { return echo }
	want, _ := submitAll(t, newEngine(t, m, Options{MaxLen: 512, Blocks: 1024}), ps, in)
	e := newEngine(t, m, Options{MaxLen: 512, Blocks: 1024, Speculate: 7, SpeculateRows: 1000})
	got, done := submitAll(t, e, ps, in)
	for i := range got {
		if !slices.Equal(got[i], want[i]) || done[i].FinishReason != "length" {
			t.Errorf("request %d: %v (%s %v), without drafts %v", i, got[i], done[i].FinishReason, done[i].Err, want[i])
		}
	}
	if st := e.Stats(); st.Accepted == 0 {
		t.Errorf("no draft token held (%d fed)", st.Drafted)
	}
}

// plainBackend is the CPU backend as no more than a runtime.Backend: no
// decode path (runtime.PagedDecoder), which drafts need.
type plainBackend struct{ runtime.Backend }

// TestSpeculateNeedsDecodePath: where the model has no decode path on its
// backend (model.CanDraft), drafts can never be fed, and New says so
// rather than running with steps that are never issued ahead.
func TestSpeculateNeedsDecodePath(t *testing.T) {
	m := storiesOn(t, plainBackend{cpu.NewPortable(2)})
	_, err := New(Options{Model: m, MaxLen: 64, Blocks: 16, Speculate: 4})
	if err == nil || !strings.Contains(err.Error(), "decode path") {
		t.Fatalf("New with drafts on a backend without the decode path: %v, want an error saying so", err)
	}
	e := newEngine(t, m, Options{MaxLen: 64, Blocks: 16})
	ch, err := e.Submit(context.Background(), Request{Prompt: []int{1, 403, 407}, Params: Params{MaxTokens: 4}})
	if err != nil {
		t.Fatal(err)
	}
	if toks, done := collect(t, ch); len(toks) != 4 || done.FinishReason != "length" {
		t.Errorf("without drafts: %v, %+v", toks, done)
	}
}
