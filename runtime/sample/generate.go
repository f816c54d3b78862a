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
	// Never past the model's context: the cache is allocated up front.
	if ctx := m.Config.MaxPositionEmbeddings; ctx > 0 {
		if len(prompt) >= ctx {
			return nil, fmt.Errorf("sample: generate: the prompt has %d tokens; the model's context (max_position_embeddings) is %d, and a prompt must leave a position to generate (at most %d tokens)", len(prompt), ctx, ctx-1)
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
		_, toks, err := m.StepSample(cache, []model.StepSeq{{Seq: &kv, Tokens: next, Sample: &rule}})
		if err != nil {
			return res, fmt.Errorf("sample: generate: %w", err)
		}
		id := toks[0]
		if id < 0 {
			return res, fmt.Errorf("sample: generate: %w: logit %d of step %d is NaN or infinite (a damaged checkpoint?)", ErrNonFinite, -1-id, len(res.IDs))
		}
		if len(res.IDs) == 0 && len(next) == len(prompt) {
			res.Prefill += time.Since(start)
		} else {
			res.Decode += time.Since(start)
		}
		if slices.Contains(opts.StopIDs, id) {
			res.Stopped = true
			break
		}
		if g := opts.Grammar; g != nil {
			if err := g.Accept(id); err != nil {
				return res, fmt.Errorf("sample: generate: %w", err)
			}
		}
		res.IDs = append(res.IDs, id)
		if fn != nil {
			if err := fn(id); err != nil {
				if errors.Is(err, ErrStop) {
					break
				}
				return res, err
			}
		}
		next = []int{id}
	}
	return res, nil
}
