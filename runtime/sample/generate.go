package sample

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/kvcache"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// GenerateOptions configures Generate.
type GenerateOptions struct {
	// MaxTokens is the most tokens to generate (> 0).
	MaxTokens int
	// StopIDs end generation when sampled (for example the model's
	// EOSTokenIDs); the stop id is not passed to the callback.
	StopIDs []int
	// Sampling selects the sampling rule.
	Sampling Options
	// Grammar, where non-nil, constrains the tokens (structured output,
	// package grammar's Matcher): each is drawn among those it allows,
	// a stop id only where it says the output is complete; where it is
	// complete and allows no more text, generation stops there.
	Grammar Matcher
	// Speculate drafts up to this many tokens a step by prompt lookup
	// (Lookup over the prompt and the output, n-grams of LookupMin to
	// LookupMax tokens, 0: 2 and 4) and verifies them in the step
	// (model.StepSeq.Draft), each row drawn with the uniform number and the
	// mask its position takes without a draft: the same tokens, fewer steps
	// where text repeats. Under a Grammar, only one that is a Forker.
	Speculate            int
	LookupMin, LookupMax int
}

// Lookup is prompt lookup's draft for tokens (speculative decoding, vLLM's
// "ngram" method): the tokens that followed the latest earlier occurrence
// of the last n tokens, for the longest n from hi down to lo that occurred
// (0: 2 and 4), at most k of them; nil where none did.
func Lookup(tokens []int, k, lo, hi int) []int {
	if lo <= 0 {
		lo = 2
	}
	if hi <= 0 {
		hi = max(4, lo)
	}
	L := len(tokens)
	for n := min(hi, L-1); n >= lo; n-- {
		tail := tokens[L-n:]
		for i := L - n - 1; i >= 0; i-- {
			if slices.Equal(tokens[i:i+n], tail) {
				return tokens[i+n : min(i+n+k, L)]
			}
		}
	}
	return nil
}

// Held is how many of draft's tokens hold against drawn, the draws of a
// step with the draft (model.Pending.Drafted): drawn[j] is the token after
// the draft's first j, so the draft holds up to its first token that
// differs from the draw before it.
func Held(draft, drawn []int) int {
	n := 0
	for n < len(draft) && draft[n] == drawn[n] {
		n++
	}
	return n
}

// DraftMasks follows draft d with a copy of m (a Forker): the draft up to
// its first token m refuses, or after which the output is complete with
// no text to follow (where generation stops), and the mask of each of its
// rows after the first (runtime.GrammarMask after the draft's tokens up
// to that row's, stops the stop ids). Nothing where m cannot be copied.
func DraftMasks(m Matcher, d, stops []int, vocab int) ([]int, [][]uint64) {
	f, ok := m.(Forker)
	if !ok {
		return nil, nil
	}
	c := f.Fork()
	var masks [][]uint64
	for j, tok := range d {
		if c.Accept(tok) != nil {
			return d[:j], masks
		}
		allowed, end := c.Allowed()
		mask, text := runtime.GrammarMask(nil, allowed, end, stops, vocab)
		if text == 0 {
			return d[:j], masks
		}
		masks = append(masks, mask)
	}
	return d, masks
}

// Matcher follows the generated tokens through a grammar.
type Matcher interface {
	// Allowed returns the tokens that may come next (bit id%64 of word
	// id/64, read only) and whether the output is complete.
	Allowed() (mask []uint64, end bool)
	// Accept moves past the token drawn.
	Accept(id int) error
}

// A Forker is a Matcher that can be copied: the copy moves on its own
// (the masks of a draft's rows in speculative decoding).
type Forker interface {
	Fork() Matcher
}

// Result describes one generation.
type Result struct {
	// IDs are the generated ids, the stop id excluded.
	IDs []int
	// Stopped reports that a stop id ended generation (else MaxTokens).
	Stopped bool
	// Prefill is the time of the prompt's forward pass, Decode that of the
	// following steps.
	Prefill, Decode time.Duration
	// Drafted and Accepted count the draft tokens fed (Speculate) and
	// those that held.
	Drafted, Accepted int
}

// ErrStop may be returned by a Generate callback to end generation early
// without an error.
var ErrStop = errors.New("sample: stop")

// ErrNonFinite is wrapped by errors about NaN or infinite logits: no token
// can be sampled from them.
var ErrNonFinite = errors.New("non-finite logits")

// Generate runs prompt through m and then samples up to opts.MaxTokens
// tokens (fewer where the model's max_position_embeddings ends first), one
// forward step each, with a paged KV cache sized for prompt plus MaxTokens
// (model.StepSample, as the server runs: tokens drawn on the backend). fn,
// if not nil, is called with each generated id as soon as it is sampled;
// an error from fn ends generation (ErrStop without error).
func Generate(m *model.Model, prompt []int, opts GenerateOptions, fn func(id int) error) (*Result, error) {
	if len(prompt) == 0 {
		return nil, errors.New("sample: generate: empty prompt")
	}
	if opts.MaxTokens <= 0 {
		return nil, fmt.Errorf("sample: generate: max tokens %d, want > 0", opts.MaxTokens)
	}
	// Never past the model's context (max_position_embeddings, or the
	// context it was loaded for): the cache is allocated up front.
	if ctx := m.Context(); ctx > 0 {
		if len(prompt) >= ctx {
			return nil, fmt.Errorf("sample: generate: the prompt has %d tokens; the model's context is %d, and a prompt must leave a position to generate (at most %d tokens)", len(prompt), ctx, ctx-1)
		}
		opts.MaxTokens = min(opts.MaxTokens, ctx-len(prompt))
	}
	// The serving path: a paged cache and model.Step, whose decode steps a
	// GPU backend replays from graphs.
	const blockSize = 16
	L := len(prompt) + opts.MaxTokens
	cache, err := m.NewPagedCache((L+blockSize-1)/blockSize, blockSize, L)
	if err != nil {
		return nil, fmt.Errorf("sample: generate: %w", err)
	}
	defer cache.Free()
	var kv kvcache.Seq
	if err := cache.Pool.Reserve(&kv, L); err != nil {
		return nil, fmt.Errorf("sample: generate: %w", err)
	}
	s := New(opts.Sampling)
	res := &Result{}
	next := prompt
	var allow []uint64
	// take handles a drawn token: false where generation ends (a stop id,
	// the callback's ErrStop), with err for an error.
	// hist is the prompt and the ids so far, where Speculate looks up.
	var hist []int
	if opts.Speculate > 0 {
		hist = slices.Clone(prompt)
	}
	take := func(id int) (bool, error) {
		if id < 0 {
			return false, fmt.Errorf("sample: generate: %w: logit %d of step %d is NaN or infinite (a damaged checkpoint?)", ErrNonFinite, -1-id, len(res.IDs))
		}
		if slices.Contains(opts.StopIDs, id) {
			res.Stopped = true
			return false, nil
		}
		if g := opts.Grammar; g != nil {
			if err := g.Accept(id); err != nil {
				return false, fmt.Errorf("sample: generate: %w", err)
			}
		}
		res.IDs = append(res.IDs, id)
		if hist != nil {
			hist = append(hist, id)
		}
		if fn != nil {
			if err := fn(id); err != nil {
				if errors.Is(err, ErrStop) {
					return false, nil
				}
				return false, err
			}
		}
		return true, nil
	}
	for len(res.IDs) < opts.MaxTokens {
		start := time.Now()
		rule := s.Next()
		if g := opts.Grammar; g != nil {
			mask, end := g.Allowed()
			var text int
			allow, text = runtime.GrammarMask(allow, mask, end, opts.StopIDs, m.Vocab())
			switch {
			case text == 0 && end:
				res.Stopped = true
				return res, nil
			case text == 0:
				return res, errors.New("sample: generate: the grammar allows no token here")
			}
			rule.Allow = allow
		}
		st := model.StepSeq{Seq: &kv, Tokens: next, Sample: &rule}
		// A draft (Speculate) once decoding: at most what the request and
		// the cache have room for after this step's token.
		if k := min(opts.Speculate, opts.MaxTokens-len(res.IDs)-1, L-kv.Len-1); k > 0 && len(next) == 1 {
			d := Lookup(hist, k, opts.LookupMin, opts.LookupMax)
			var masks [][]uint64
			if opts.Grammar != nil {
				d, masks = DraftMasks(opts.Grammar, d, opts.StopIDs, m.Vocab())
			}
			if st.Draft = d; len(d) > 0 && m.CanDraft([]model.StepSeq{st}) {
				// (A greedy rule without a mask is every row's: the step
				// may then draw in its graph.)
				if !rule.Greedy() || opts.Grammar != nil {
					st.DraftRules = s.Peek(len(d))
					for j := range masks {
						st.DraftRules[j].Allow = masks[j]
					}
				}
			} else {
				st.Draft = nil
			}
		}
		p, err := m.StepAhead(cache, []model.StepSeq{st})
		if err != nil {
			return res, fmt.Errorf("sample: generate: %w", err)
		}
		_, toks, err := p.Wait()
		if err != nil {
			return res, fmt.Errorf("sample: generate: %w", err)
		}
		if len(res.IDs) == 0 && len(next) == len(prompt) {
			res.Prefill += time.Since(start)
		} else {
			res.Decode += time.Since(start)
		}
		drawn := toks[:1]
		if st.Draft != nil {
			// The draft holds up to its first token that differs from the
			// draw before it; the cache keeps what held.
			drawn = p.Drafted(0)
			n := Held(st.Draft, drawn)
			s.Skip(n)
			kv.Len -= len(st.Draft) - n
			drawn = drawn[:n+1]
			res.Drafted += len(st.Draft)
			res.Accepted += n
		}
		for _, id := range drawn {
			more, err := take(id)
			if err != nil {
				return res, err
			}
			if !more {
				return res, nil
			}
			if len(res.IDs) == opts.MaxTokens {
				break
			}
			next = []int{id}
		}
	}
	return res, nil
}
