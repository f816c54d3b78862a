package runtime

import (
	"math"
	"testing"
)

// TestDrawToken: hand-derived draws of DrawToken's rule (kept set, then
// the first token in id order whose cumulative probability exceeds U).
func TestDrawToken(t *testing.T) {
	logs := func(p ...float64) []float32 {
		out := make([]float32, len(p))
		for i, v := range p {
			out[i] = float32(math.Log(v))
		}
		return out
	}
	p4 := logs(0.1, 0.2, 0.3, 0.4)
	nan := float32(math.NaN())
	for _, c := range []struct {
		name   string
		logits []float32
		p      SampleParams
		want   int
	}{
		{"greedy", p4, SampleParams{}, 3},
		{"greedy ties lowest", []float32{1, 5, 5, 2}, SampleParams{}, 1},
		{"greedy skips NaN", []float32{nan, 1, 2}, SampleParams{}, 2},
		{"all NaN", []float32{nan, nan}, SampleParams{Temperature: 1, U: 0.5}, 0},
		{"top-k 1 is greedy", p4, SampleParams{Temperature: 2, TopK: 1, U: 0.01}, 3},
		// Cumulative 0.1, 0.3, 0.6, 1.0.
		{"u 0.05", p4, SampleParams{Temperature: 1, U: 0.05}, 0},
		{"u 0.15", p4, SampleParams{Temperature: 1, U: 0.15}, 1},
		{"u 0.35", p4, SampleParams{Temperature: 1, U: 0.35}, 2},
		{"u 0.95", p4, SampleParams{Temperature: 1, U: 0.95}, 3},
		// T = 0.5 squares: 0.01, 0.04, 0.09, 0.16 over 0.30; cumulative
		// 0.033, 0.167, 0.467.
		{"temperature 0.5", p4, SampleParams{Temperature: 0.5, U: 0.4}, 2},
		// Top-2 keeps 0.3 and 0.4 (3/7, 4/7).
		{"top-k 2 low", p4, SampleParams{Temperature: 1, TopK: 2, U: 0.4}, 2},
		{"top-k 2 high", p4, SampleParams{Temperature: 1, TopK: 2, U: 0.5}, 3},
		// Top-p 0.75: 0.4 + 0.3 < 0.75, + 0.2 reaches it: ids 1..3 (mass 0.9).
		{"top-p", p4, SampleParams{Temperature: 1, TopP: 0.75, U: 0.2}, 1},
		{"top-p next", p4, SampleParams{Temperature: 1, TopP: 0.75, U: 0.3}, 2},
		// Top-k keeps every tie of the k-th (as transformers and vLLM):
		// top-2 of {1, 2, 2, 2, 0} keeps ids 1..3, a third each.
		{"top-k keeps a class", []float32{1, 2, 2, 2, 0}, SampleParams{Temperature: 1, TopK: 2, U: 0.99}, 3},
		{"top-k keeps a class low", []float32{1, 2, 2, 2, 0}, SampleParams{Temperature: 1, TopK: 2, U: 0.3}, 1},
		// Top-3 of {3, 1, 1, 2}: 3 and 2, then both tied 1s: weights e^3,
		// e, e, e^2 (sum 32.911), cumulative in id order 0.610, 0.693,
		// 0.776, so u 0.75 draws id 2 (with id 1 alone of the tie kept,
		// id 1: cumulative 0.665, 0.755).
		{"top-k ties past k", []float32{3, 1, 1, 2}, SampleParams{Temperature: 1, TopK: 3, U: 0.75}, 2},
		// Top-p cuts a class: the lower ids are kept.
		{"top-p in a class", []float32{2, 2, 2, 2}, SampleParams{Temperature: 1, TopP: 0.3, U: 0.99}, 1},
		// A positive logit is divided by the repetition penalty, a negative
		// one multiplied; then Sub comes off.
		{"repetition positive", []float32{1, 3, 2}, SampleParams{Adjust: []LogitAdjust{{Token: 1, Rep: 2}}}, 2},
		{"repetition negative", []float32{-1, -0.5}, SampleParams{Adjust: []LogitAdjust{{Token: 1, Rep: 3}}}, 0},
		{"presence", []float32{1, 3, 2}, SampleParams{Adjust: []LogitAdjust{{Token: 1, Rep: 1, Sub: 1.5}}}, 2},
		// The bias comes before the repetition penalty (vLLM's order):
		// (3 + 1) / 2 = 2 ties id 2's 2 and the lower id wins; after the
		// penalty it would be 3 / 2 + 1 = 2.5.
		{"bias before repetition", []float32{1, 3, 2}, SampleParams{Adjust: []LogitAdjust{{Token: 1, Bias: 1, Rep: 2}}}, 1},
		{"bias before repetition below", []float32{1, 3, 2.01}, SampleParams{Adjust: []LogitAdjust{{Token: 1, Bias: 1, Rep: 2}}}, 2},
		// A temperature so small that logit/T leaves float64's range (the
		// JSON temperature 1e-320 is a valid one): the limit T -> 0+ is
		// the argmax, whatever the logits' sign.
		{"tiny temperature positive", []float32{1, 3, 2}, SampleParams{Temperature: 1e-320, U: 0.5}, 1},
		{"tiny temperature negative", []float32{-5, -3, -4}, SampleParams{Temperature: 1e-320, U: 0.5}, 1},
		{"tiny temperature top-p", []float32{-5, -3, -4}, SampleParams{Temperature: 1e-320, TopP: 0.5, U: 0.99}, 1},
	} {
		in := append([]float32(nil), c.logits...)
		if got := DrawToken(c.logits, c.p); got != c.want {
			t.Errorf("%s: DrawToken = %d, want %d", c.name, got, c.want)
		}
		for i := range in {
			if math.Float32bits(in[i]) != math.Float32bits(c.logits[i]) {
				t.Errorf("%s: the logits changed", c.name)
				break
			}
		}
	}
}

// TestGrammarMaskVocab: a grammar's mask may cover more ids than the
// model's vocabulary (a tokenizer with tokens past the embedding); those
// ids cannot be drawn, so they are neither allowed nor counted as text:
// a mask of only such ids allows nothing.
func TestGrammarMaskVocab(t *testing.T) {
	const vocab = 100 // two words, ids 100..127 of the second past it
	allowed := []uint64{0, 1 << (104 - 64), 1 << 3}
	dst, text := GrammarMask(nil, allowed, false, []int{2}, vocab)
	if text != 0 || len(dst) != 2 || dst[0] != 0 || dst[1] != 0 {
		t.Errorf("mask %x, %d tokens of text; want two zero words and none", dst, text)
	}
	dst, text = GrammarMask(dst, []uint64{1<<5 | 1<<2}, true, []int{2, 130}, vocab)
	if text != 1 || len(dst) != 2 || dst[0] != 1<<5|1<<2 || dst[1] != 0 {
		t.Errorf("mask %x, %d tokens of text; want 5 and the stop token 2, one of text", dst, text)
	}
}
