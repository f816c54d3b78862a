package engine

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/gptqtool/gptqtool/runtime/sample"
)

// TestRuleAdjust: a sequence's logit adjustments against a hand-derived
// vector. Prompt [5 6], generated [6 7 7]; repetition penalty 2 (over the
// prompt and the output, transformers'), presence 0.5 and frequency 0.25
// (over the output only, vLLM's), logit bias {8: +1, 5: -1, 7: +1} before
// the penalties (vLLM's order), stop token 9 banned before min_tokens 4 (3
// generated):
//
//	5: (2.0 - 1) / 2          = 0.5   (prompt only: no presence/frequency)
//	6: -1.0 * 2 - (0.5+0.25)  = -2.75 (negative: multiplied)
//	7: (3.0 + 1) / 2 - (0.5+0.5) = 1
//	8: 1.0 + 1                = 2
//	9: 0 - 1e30
//
// the rest unchanged.
func TestRuleAdjust(t *testing.T) {
	s := &seq{req: Request{Prompt: []int{5, 6}, Params: Params{MaxTokens: 10, RepetitionPenalty: 2, PresencePenalty: 0.5, FrequencyPenalty: 0.25,
		LogitBias: map[int]float32{8: 1, 5: -1, 7: 1}, MinTokens: 4, StopTokens: []int{9}}},
		counts: map[int]int{6: 1, 7: 2}, seen: map[int]bool{5: true, 6: true, 7: true}, gen: 3, sampler: sample.New(sample.Options{})}
	got := []float32{0.1, 0.2, 0.3, 0.4, 0.5, 2.0, -1.0, 3.0, 1.0, 0.0}
	want := []float32{0.1, 0.2, 0.3, 0.4, 0.5, 0.5, -2.75, 1, 2, -1e30}
	r := s.rule()
	for _, a := range r.Adjust {
		got[a.Token] = a.Apply(got[a.Token])
	}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-6*max(1, math.Abs(float64(want[i]))) {
			t.Errorf("adjusted logits %v, want %v", got, want)
			break
		}
	}
	// From min_tokens on, the stop token is no longer banned.
	s.gen = 4
	r = s.rule()
	for _, a := range r.Adjust {
		if a.Token == 9 {
			t.Errorf("stop token 9 adjusted after min_tokens: %+v", a)
		}
	}
}

// TestSeededAloneOrBatched: a seeded request's tokens are its own, alone
// or running beside other sampled requests (each sequence draws from its
// own generator, as vLLM's per-request generators).
func TestSeededAloneOrBatched(t *testing.T) {
	m, prompt, _ := stories(t)
	p := Params{MaxTokens: 30, Temperature: 1, Seed: 7, SeedSet: true}
	e := newEngine(t, m, Options{})
	ch, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: p})
	if err != nil {
		t.Fatal(err)
	}
	alone, _ := collect(t, ch)
	var chs []<-chan Event
	for _, q := range []Params{{MaxTokens: 30, Temperature: 1, Seed: 1, SeedSet: true}, p, {MaxTokens: 30, Temperature: 0.7}} {
		ch, err := e.Submit(context.Background(), Request{Prompt: prompt, Params: q})
		if err != nil {
			t.Fatal(err)
		}
		chs = append(chs, ch)
	}
	var got [][]int
	for _, ch := range chs {
		toks, _ := collect(t, ch)
		got = append(got, toks)
	}
	if !slices.Equal(got[1], alone) {
		t.Errorf("seed 7 beside others: %v, alone %v", got[1], alone)
	}
	if slices.Equal(got[0], got[1]) {
		t.Errorf("seeds 1 and 7 drew the same tokens: %v", got[0])
	}
}
