package runtime

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
)

// SampleParams is the rule of one token draw (DrawToken, TokenSampler).
type SampleParams struct {
	// Temperature divides the logits; 0 (or less) means greedy.
	Temperature float64
	// TopK keeps the K most likely tokens and every token whose logit
	// equals the K-th's (transformers' and vLLM's top-k keep such ties);
	// 0 keeps all.
	TopK int
	// TopP keeps the smallest set of most likely tokens (after TopK) whose
	// probability reaches TopP; 0 or >= 1 keeps all.
	TopP float64
	// U is the draw's uniform number in [0, 1).
	U float64
	// Allow, where non-nil, holds the tokens that may be drawn (bit id%64
	// of word id/64; structured output's grammar mask): every other
	// token's logit is lowered by Banned first, before Adjust, so that it
	// is drawn only where no allowed token is left (and then the lowest id
	// greedily, as all such logits are equal).
	Allow []uint64
	// Adjust changes logits before everything else (penalties); at most one
	// entry a token.
	Adjust []LogitAdjust
}

// GrammarMask makes a draw's Allow from what a grammar allows next
// (allowed, bit id%64 of word id/64, over a vocabulary that may be smaller
// or larger than the model's vocab: ids past either are not allowed) and
// whether the output is complete (end): the stop tokens are allowed where
// it is, and only there. It reuses dst and returns it with the tokens of text it
// allows (stop tokens not counted): none with end means the output must
// stop there, none without end that nothing can follow.
func GrammarMask(dst, allowed []uint64, end bool, stops []int, vocab int) ([]uint64, int) {
	// (ids past the vocabulary, where the grammar's covers more, cannot
	// be drawn: neither allowed nor counted)
	words := (vocab + 63) / 64
	dst = append(dst[:0], allowed[:min(len(allowed), words)]...)
	for len(dst) < words {
		dst = append(dst, 0)
	}
	if r := vocab % 64; r != 0 {
		dst[words-1] &= 1<<r - 1
	}
	for _, t := range stops {
		if t >= 0 && t < vocab {
			dst[t>>6] &^= 1 << (t & 63)
		}
	}
	text := 0
	for _, w := range dst {
		text += bits.OnesCount64(w)
	}
	if end {
		for _, t := range stops {
			if t >= 0 && t < vocab {
				dst[t>>6] |= 1 << (t & 63)
			}
		}
	}
	return dst, text
}

// Banned is what a logit Allow refuses is lowered by: finite, so that a
// draw's check for non-finite logits still holds, and far below any
// logit (float32 v − Banned is −Banned for every |v| < 1e22).
const Banned float32 = 1e30

// Greedy reports whether p takes the largest logit (after Adjust):
// temperature 0 (or less) or TopK 1.
func (p SampleParams) Greedy() bool { return p.Temperature <= 0 || p.TopK == 1 }

// LogitAdjust changes one token's logit: Bias added first (OpenAI's
// logit_bias, which vLLM adds before its penalties), then divided by Rep
// when positive, multiplied by it otherwise (transformers' repetition
// penalty; 1 leaves it), then Sub subtracted (OpenAI's presence and
// frequency penalties).
type LogitAdjust struct {
	Token          int
	Bias, Rep, Sub float32
}

// Apply returns v adjusted by a.
func (a LogitAdjust) Apply(v float32) float32 {
	v += a.Bias
	if a.Rep != 1 && a.Rep != 0 {
		if v > 0 {
			v /= a.Rep
		} else {
			v *= a.Rep
		}
	}
	return v - a.Sub
}

// TokenSampler is a Backend that draws tokens from logits where they are,
// so that a step's logits need not come back to the host.
type TokenSampler interface {
	// SampleTokens sets dst[i] to DrawFinite of row rows[i] of logits (F32
	// [rows, vocab]) under p[i]: the token DrawToken draws, or -1-j when
	// that row's logit j is the first that is not finite. It waits for the
	// result.
	SampleTokens(dst []int32, logits Tensor, rows []int, p []SampleParams) error
}

// TokenFeeder is a TokenSampler whose decode steps can read the tokens an
// earlier draw left on the backend, so that a step can be issued before the
// tokens of the step ahead of it come back to the host (the host's part of
// a step then overlaps the device's).
type TokenFeeder interface {
	TokenSampler
	// SampleTokensTo draws as SampleTokens does, into dst (I32, at least
	// len(rows) entries, on the backend), in stream order and without
	// waiting; the returned PendingTokens brings the tokens to the host.
	// The rules are consumed before it returns.
	SampleTokensTo(dst, logits Tensor, rows []int, p []SampleParams) (PendingTokens, error)
	// EmbeddingFed is PagedDecoder.EmbeddingAt where an id -1-j takes the
	// token fed[j] (I32) instead, as the ops ahead of it left it; a
	// negative fed token (a draw that found a non-finite logit) reads row
	// 0.
	EmbeddingFed(dst, table, ids, fed Tensor)
}

// GreedyDrawer is a TokenFeeder whose greedy draws can be recorded in a
// decode step's graph, after its head: the draw then takes no launch or
// upload of its own, and its tokens reach the host without a copy. A step
// may draw this way where every row draws greedily without penalties.
type GreedyDrawer interface {
	TokenFeeder
	// GreedySlot picks the host slot (0 or 1) that the next greedy draw is
	// to write, waiting for the tokens of an earlier draw still pending in
	// it; -1 where greedy draws cannot be recorded (then SampleTokensTo).
	GreedySlot() int
	// DrawGreedy issues, recordably, the draw of every row of logits (F32
	// [n, vocab]) by SampleTokens' rule for a greedy row without
	// penalties, into dst (I32, at least n) and into the host slot that
	// slot (I32, one entry, set before the draw runs) names.
	DrawGreedy(dst, logits, slot Tensor)
	// GreedyPending returns the first n tokens of the draw last issued into
	// host slot s, once the stream is past this call.
	GreedyPending(s, n int) (PendingTokens, error)
}

// PendingTokens are tokens drawn by TokenFeeder.SampleTokensTo.
type PendingTokens interface {
	// Wait waits for the draw and sets dst[i] (len(dst) = the draw's rows)
	// as SampleTokens does; it may be called more than once.
	Wait(dst []int32) error
}

// DrawToken is the reference rule of a draw from logits [vocab]: after
// p.Allow and p.Adjust, greedy (the largest logit, the lowest id among equals) at
// temperature 0 or with TopK 1; otherwise softmax(logits/T) restricted to
// the TopK most likely tokens and the ties of the TopK-th, renormalised,
// then to the smallest set of most likely tokens (the lower id first among
// equals) whose probability reaches TopP, renormalised; the token is the
// first, in id order, whose cumulative probability within the kept set
// exceeds p.U. NaN logits are never drawn (unless all are:
// then 0). Backends' TokenSamplers follow this rule up to rounding.
func DrawToken(logits []float32, p SampleParams) int {
	if p.Allow != nil || len(p.Adjust) > 0 {
		logits = slices.Clone(logits)
	}
	if p.Allow != nil {
		for id := range logits {
			if p.Allow[id>>6]>>(id&63)&1 == 0 {
				logits[id] -= Banned
			}
		}
	}
	for _, a := range p.Adjust {
		if a.Token >= 0 && a.Token < len(logits) {
			logits[a.Token] = a.Apply(logits[a.Token])
		}
	}
	if p.Greedy() {
		return greedy(logits)
	}
	mx := math.Inf(-1)
	for _, v := range logits {
		if v == v {
			mx = math.Max(mx, float64(v))
		}
	}
	if math.IsInf(mx, -1) {
		return 0
	}
	// (v − max)/T, not v/T − max/T: a tiny T takes v/T out of float64's
	// range, while (v − max)/T only goes to −Inf (weight 0) and is 0 at
	// the largest logit, as the CUDA draw's (v − mx)·(1/T).
	weight := func(v float32) float64 { return math.Exp((float64(v) - mx) / p.Temperature) }
	topK := p.TopK > 0 && p.TopK < len(logits)
	topP := p.TopP > 0 && p.TopP < 1
	var kept []bool // nil: every token that is not NaN
	if topK || topP {
		// Most likely first, the lower id first among equals.
		order := make([]int, 0, len(logits))
		for id, v := range logits {
			if v == v {
				order = append(order, id)
			}
		}
		slices.SortFunc(order, func(a, b int) int {
			if r := cmp.Compare(logits[b], logits[a]); r != 0 {
				return r
			}
			return a - b
		})
		if topK && p.TopK < len(order) {
			k, kth := p.TopK, logits[order[p.TopK-1]]
			for k < len(order) && logits[order[k]] == kth {
				k++
			}
			order = order[:k]
		}
		if topP {
			var sum float64
			for _, id := range order {
				sum += weight(logits[id])
			}
			var acc float64
			for i, id := range order {
				acc += weight(logits[id]) / sum
				if acc >= p.TopP {
					order = order[:i+1]
					break
				}
			}
		}
		kept = make([]bool, len(logits))
		for _, id := range order {
			kept[id] = true
		}
	}
	in := func(id int) bool { return logits[id] == logits[id] && (kept == nil || kept[id]) }
	var sum float64
	for id, v := range logits {
		if in(id) {
			sum += weight(v)
		}
	}
	r := p.U * sum
	last := 0
	for id, v := range logits {
		if !in(id) {
			continue
		}
		last = id
		r -= weight(v)
		if r < 0 {
			return id
		}
	}
	return last
}

// greedy returns the index of the largest logit, the lowest on ties; NaN
// logits are never chosen unless all are NaN (then 0).
func greedy(logits []float32) int {
	best := -1
	for i, v := range logits {
		if v != v {
			continue
		}
		if best < 0 || v > logits[best] {
			best = i
		}
	}
	return max(best, 0)
}

// DrawFinite is one row of a TokenSampler: DrawToken's token, or -1-j when
// logit j is the first that is not finite (no token drawn).
func DrawFinite(logits []float32, p SampleParams) int {
	if j := FirstNonFinite(logits); j >= 0 {
		return -1 - j
	}
	return DrawToken(logits, p)
}

// FirstNonFinite returns the index of the first NaN or ±Inf in v, or -1.
func FirstNonFinite(v []float32) int {
	for i, x := range v {
		if x-x != 0 {
			return i
		}
	}
	return -1
}
