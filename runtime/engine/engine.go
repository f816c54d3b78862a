// Package engine serves generation requests with continuous batching over
// a model (package runtime/model) and a paged KV cache: requests wait in a
// bounded queue, are admitted when the cache has blocks for their prompt
// (and one block for each running sequence's next token), and join the
// running batch between steps. Blocks are taken as sequences grow, not for
// their whole token budget up front, so a request that leaves max_tokens
// to the context holds only what it has written. When a running sequence
// needs a block and none is free, the most recently admitted sequence is
// preempted, as vLLM does by default: its blocks go back, and it returns
// to the head of the queue to be recomputed from its prompt and the tokens
// it has generated (which its client has already received) once blocks
// are free; its sampling goes on where it stopped. A step decodes one
// token for every generating sequence and spends what is left of a token
// budget on prompt chunks (chunked prefill), so a long prompt never stalls
// the others. Sampling is per request (seeded),
// with presence, frequency and repetition penalties and log-probabilities,
// of the generated tokens and, on request, of the prompt's own (its chunks
// then bring back every row's logits: echo with logprobs, lm-eval's
// loglikelihood requests; MaxTokens 0 then only scores the prompt).
// A cancelled request (its context done: the client went away, a timeout)
// leaves at the next step and its blocks are free at once. The engine
// knows nothing of HTTP; package runtime/server puts the API on it.
package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	goruntime "runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/kvcache"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/runtime/sample"
)

// Errors of Submit.
var (
	ErrQueueFull = errors.New("engine: the queue is full")
	ErrClosed    = errors.New("engine: closed")
	ErrTooLong   = errors.New("engine: prompt too long")
)

// Params are one request's generation settings.
type Params struct {
	// MaxTokens bounds the generated tokens; 0 only runs the prompt (to
	// score it, with PromptLogprobs) and ends with "length".
	MaxTokens int
	// Temperature (0: greedy), TopP, TopK as package sample.
	Temperature, TopP float64
	TopK              int
	// Seed seeds the sampler; without SeedSet the engine draws one.
	Seed    uint64
	SeedSet bool
	// PresencePenalty and FrequencyPenalty (OpenAI): logit -= presence·[count>0]
	// + frequency·count over the tokens generated so far.
	PresencePenalty, FrequencyPenalty float64
	// RepetitionPenalty (transformers, 1 = off): a logit of a token seen in the
	// prompt or the output is divided by it when positive, multiplied when not.
	RepetitionPenalty float64
	// StopTokens end the generation with finish reason "stop" and are not
	// emitted (they count in CompletionTokens, as OpenAI's usage counts
	// the end token).
	StopTokens []int
	// MinTokens (vLLM's min_tokens): the stop tokens cannot be drawn
	// before this many tokens are generated.
	MinTokens int
	// LogitBias (OpenAI's logit_bias) is added to the tokens' logits
	// before the draw (before the penalties, vLLM's order; not to
	// log-probabilities).
	LogitBias map[int]float32
	// Logprobs asks for each token's log-probability and TopLogprobs (≤ 20)
	// alternatives, from the model's distribution before penalties.
	Logprobs    bool
	TopLogprobs int
	// PromptLogprobs asks for the log-probability of every prompt token
	// after the first given the ones before it, with TopLogprobs
	// alternatives each: one event (Event.Prompt, empty for a prompt of one
	// token) once the prompt is in, before the first token (echo with
	// logprobs; scoring).
	PromptLogprobs bool
	// Grammar, where non-nil, constrains the output (structured output):
	// each sequence of the request gets a Matcher of its own, and each
	// token is drawn among those the Matcher allows (the draw's
	// runtime.SampleParams.Allow, on the backend where it draws), a stop
	// token only where it says the output is complete. Where it is
	// complete and allows no more text, the sequence stops there
	// ("stop"), even before MinTokens. Such a sequence keeps the steps of
	// its batch from being issued ahead (Options.NoAhead): its next mask
	// depends on the token in flight.
	Grammar func() sample.Matcher
}

// Request is a prompt to continue.
type Request struct {
	Prompt []int
	Params Params
}

// TokenLogprob is a token and its log-probability.
type TokenLogprob struct {
	Token   int
	Logprob float64
}

// PromptToken is a prompt token's log-probability given the tokens before
// it, and the most likely tokens there (Params.PromptLogprobs).
type PromptToken struct {
	TokenLogprob
	Top []TokenLogprob
}

// Event is one generated token, the end of the request (Done), or, with
// Params.PromptLogprobs, the prompt's log-probabilities (Prompt, non-nil,
// for its tokens 1, 2, ...; no token).
type Event struct {
	Token   int
	Logprob float64
	Top     []TokenLogprob
	Prompt  []PromptToken
	// Stop marks the stop token that ended the generation, sent (before
	// Done) only with Params.Logprobs, for its log-probability: it is not
	// part of the output.
	Stop bool
	// Done ends the stream: FinishReason is "stop", "length", "cancelled"
	// or "error" (with Err); the token counts are final.
	Done             bool
	FinishReason     string
	Err              error
	PromptTokens     int
	CompletionTokens int
}

// Observer receives timings (the server's metrics). Methods are called
// from the engine's goroutine.
type Observer interface {
	// FirstToken: from Submit to the first generated token.
	FirstToken(d time.Duration)
	// InterToken: between two tokens of a request.
	InterToken(d time.Duration)
	// Finished: a request ended, with its token counts.
	Finished(reason string, prompt, generated int)
}

// Options configure New.
type Options struct {
	Model *model.Model
	// Blocks and BlockSize size the paged KV cache (BlockSize 0: 16).
	Blocks, BlockSize int
	// MaxLen bounds prompt + generated tokens (the model's context).
	MaxLen int
	// MaxQueue bounds the waiting requests (0: 64).
	MaxQueue int
	// MaxRunning bounds the sequences in a batch (0: 64).
	MaxRunning int
	// StepTokens is the token budget of a step: decoding takes one per
	// sequence, prompt chunks the rest (0: 512).
	StepTokens int
	Observer   Observer
	// NoAhead issues each step only once the tokens of the one before are
	// back. By default a step of sequences that only decode, whose next
	// draws do not depend on the tokens in flight (no penalties, no
	// log-probabilities) and that the tokens in flight cannot end by
	// length, is issued before those tokens are read (model.StepAhead):
	// the host's part of a step overlaps the device's. A sequence that the
	// token in flight stops has then decoded one token more, which is
	// dropped.
	NoAhead bool
	// NoPrefixCache turns prefix caching off. By default every full block a
	// sequence has written (prompt and generated tokens) stays cached
	// after it ends, under the hash of its tokens and all before them
	// (kvcache.ChainKeys), until its blocks are needed; a sequence admitted
	// later whose prompt starts with those tokens shares the blocks and is
	// fed only the rest (vLLM's automatic prefix caching): a long system
	// prompt, the turns of a conversation, a preempted sequence's own
	// blocks. At least the prompt's last token is always fed (its logits
	// draw the next). A prompt whose log-probabilities are asked for is
	// computed whole (as vLLM's), though its blocks are cached for others.
	// Results are those without the cache on a batch-invariant backend
	// (the portable CPU one); elsewhere equal up to rounding, which can
	// flip a near tie, as in vLLM.
	NoPrefixCache bool
	// Speculate turns on speculative decoding by prompt lookup (vLLM's
	// "ngram" method) with drafts of up to this many tokens: a sequence
	// (any without log-probabilities; under a grammar, one whose matcher
	// is a sample.Forker, its draft cut before the first token the grammar
	// refuses and each row drawing under the mask after the draft's tokens
	// before it) whose last
	// LookupMax..LookupMin tokens occurred before in its prompt or output
	// is fed, in the same step, the tokens that followed them there
	// (model.StepSeq.Draft), each row drawing as the token at its position
	// would be drawn without the draft (its uniform number, the penalties
	// and bans after the draft tokens before it), and keeps the longest
	// run the model's own draws confirm, plus the model's token after it:
	// one to Speculate+1 tokens a step, the same tokens as without drafts
	// on a batch-invariant backend (the portable CPU one; elsewhere up to
	// rounding, as with batching). Drafts are made only for steps of
	// generating sequences (no prompt chunk) that take the decode path
	// (model.CanDraft; New refuses a model that has none), of at most
	// SpeculateRows rows with their drafts (0: 8, the rows whose products
	// read the weights once), and
	// such sequences' steps are not issued ahead (their drafts need the
	// token in flight). A sequence whose drafts find no n-gram or keep no
	// token twice in a row looks again only after 2, 4, then 8 steps,
	// which may go ahead.
	Speculate     int
	SpeculateRows int
	// LookupMin and LookupMax bound the n-grams looked up (0: 2 and 4).
	LookupMin, LookupMax int
}

// Stats is a snapshot for metrics.
type Stats struct {
	Queued, Running         int
	BlocksUsed, BlocksTotal int
	PromptTokens, Generated int64
	Steps                   int64
	// Ahead counts the steps issued before the previous step's tokens
	// were read (Options.NoAhead).
	Ahead int64
	// Preemptions counts the sequences preempted for want of blocks.
	Preemptions int64
	// PrefixQueries and PrefixHits count the prompt positions admission
	// looked for in the prefix cache and found there (not fed); a
	// preempted sequence's readmission is not counted.
	PrefixQueries, PrefixHits int64
	// BlocksCached counts the free blocks still caching a prefix.
	BlocksCached int
	// Drafted and Accepted count the draft tokens fed (Options.Speculate)
	// and those the model's draws confirmed.
	Drafted, Accepted int64
}

type seq struct {
	req       Request
	ctx       context.Context
	out       *mailbox
	kv        kvcache.Seq
	tokens    []int        // prompt then generated
	pre       int          // tokens fed as prompt chunks: the prompt, or all of tokens after a preemption
	fed       int          // tokens already in the cache
	gen       int          // generated tokens
	counts    map[int]int  // generated tokens
	seen      map[int]bool // prompt and generated tokens, under a repetition penalty
	adjust    []runtime.LogitAdjust
	sampler   *sample.Sampler
	submit    time.Time
	last      time.Time
	cancelled bool // by Close
	done      bool // finished: a step still in flight for it is dropped
	preempted bool // waiting in the queue after a preemption
	// promptLP gathers the prompt's log-probabilities (PromptLogprobs)
	// until promptSent.
	promptLP   []PromptToken
	promptSent bool
	// keys are the prefix-cache keys of tokens' full blocks, as far as
	// computed; published counts the leading blocks of kv cached (shared
	// or published).
	keys      []kvcache.Key
	published int
	// match constrains the tokens (Params.Grammar): allowed (read only,
	// the matcher's) and end are what it allows next, allow the draw's
	// mask made of them whenever they change (grammarMask: the stop
	// tokens set where end, cleared elsewhere); stale says a token was
	// accepted since.
	match   sample.Matcher
	vocab   int // the model's
	allowed []uint64
	end     bool
	allow   []uint64
	stale   bool
	// misses counts the latest drafts in a row that found no n-gram or
	// kept no token (Options.Speculate), wait the steps s takes without a
	// draft before it looks again, and so may be issued ahead.
	misses, wait int
}

// inflight is a step issued and not yet read.
type inflight struct {
	p     *model.Pending
	steps []model.StepSeq
	order []*seq
}

// Engine runs requests on one model. Its methods are safe for concurrent
// use.
type Engine struct {
	o      Options
	m      *model.Model
	cache  *model.PagedCache
	mu     sync.Mutex
	wake   chan struct{}
	queue  []*seq
	run    []*seq
	closed bool
	done   chan struct{}
	rng    *rand.Rand
	stats  Stats
	pend   *inflight // owned by the loop
	// preempted counts the preempted sequences in queue.
	preempted int
}

// New starts an engine: it allocates the KV cache and the step loop.
func New(o Options) (*Engine, error) {
	if o.Model == nil || o.MaxLen <= 0 || o.Blocks <= 0 {
		return nil, fmt.Errorf("engine: need a model, a context length and KV blocks")
	}
	if o.BlockSize <= 0 {
		o.BlockSize = 16
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = 64
	}
	if o.MaxRunning <= 0 {
		o.MaxRunning = 64
	}
	if o.StepTokens <= 0 {
		o.StepTokens = 512
	}
	if o.Speculate > 0 && !o.Model.CanDraft(nil) {
		// (Its steps would never carry a draft, nor be issued ahead.)
		return nil, errors.New("engine: speculative decoding (Options.Speculate) takes the decode path, which this model lacks on its backend (model.CanDraft)")
	}
	c, err := o.Model.NewPagedCache(o.Blocks, o.BlockSize, o.MaxLen)
	if err != nil {
		return nil, err
	}
	// Every batch size's decode step is recorded now, not when a request
	// first needs it.
	if err := o.Model.WarmDecode(c, o.MaxRunning); err != nil {
		c.Free()
		return nil, fmt.Errorf("engine: readying the decode steps: %w", err)
	}
	e := &Engine{o: o, m: o.Model, cache: c, wake: make(chan struct{}, 1), done: make(chan struct{}),
		rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))}
	go e.loop()
	return e, nil
}

// MaxLen is the longest prompt + completion the engine runs.
func (e *Engine) MaxLen() int { return e.o.MaxLen }

// MaxQueue is the most requests that can wait at once (Options.MaxQueue).
func (e *Engine) MaxQueue() int { return e.o.MaxQueue }

// Submit queues a request; its events arrive on the returned channel, the
// last with Done set, then the channel closes. Cancelling ctx ends the
// request at the next step; events not yet read are then dropped and the
// channel closes (possibly without a Done event).
// Errors: ErrQueueFull (retry later), ErrTooLong (the prompt leaves no room
// or can never fit the cache), ErrClosed.
func (e *Engine) Submit(ctx context.Context, r Request) (<-chan Event, error) {
	p := r.Params
	if len(r.Prompt) == 0 {
		return nil, errors.New("engine: empty prompt")
	}
	if p.MaxTokens < 0 {
		return nil, fmt.Errorf("engine: max tokens %d, want 0 or more", p.MaxTokens)
	}
	need := len(r.Prompt) + max(p.MaxTokens, 1) // (admission holds the prompt and one more)
	if len(r.Prompt) >= e.o.MaxLen {
		return nil, fmt.Errorf("%w: %d tokens, the context holds %d", ErrTooLong, len(r.Prompt), e.o.MaxLen)
	}
	if need > e.o.MaxLen {
		return nil, fmt.Errorf("%w: %d prompt + %d new tokens exceed the context of %d", ErrTooLong, len(r.Prompt), p.MaxTokens, e.o.MaxLen)
	}
	if e.cache.Pool.BlocksFor(need) > e.cache.Pool.Blocks() {
		return nil, fmt.Errorf("%w: %d positions need more than the whole KV cache (%d blocks of %d)", ErrTooLong, need, e.cache.Pool.Blocks(), e.o.BlockSize)
	}
	if p.TopLogprobs < 0 || p.TopLogprobs > 20 {
		return nil, fmt.Errorf("engine: top logprobs %d, want 0 to 20", p.TopLogprobs)
	}
	if p.MinTokens < 0 || p.MinTokens > p.MaxTokens {
		return nil, fmt.Errorf("engine: min tokens %d, want 0 to the max tokens %d", p.MinTokens, p.MaxTokens)
	}
	for t := range p.LogitBias {
		if t < 0 || t >= e.m.Vocab() {
			return nil, fmt.Errorf("engine: logit bias for token %d, outside the vocabulary of %d", t, e.m.Vocab())
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	// (Preempted sequences wait in the queue too, ahead of the new ones,
	// but do not take a new request's place.)
	if len(e.queue)-e.preempted >= e.o.MaxQueue {
		return nil, ErrQueueFull
	}
	seed := p.Seed
	if !p.SeedSet {
		seed = e.rng.Uint64()
	}
	s := &seq{req: r, ctx: ctx, out: newMailbox(ctx), tokens: slices.Clone(r.Prompt), pre: len(r.Prompt), counts: map[int]int{},
		sampler: sample.New(sample.Options{Temperature: p.Temperature, TopK: p.TopK, TopP: p.TopP, Seed: seed}),
		submit:  time.Now()}
	if p.Grammar != nil {
		s.match, s.vocab = p.Grammar(), e.m.Vocab()
		s.allowed, s.end = s.match.Allowed()
		if _, text := s.grammarMask(); text == 0 {
			return nil, errors.New("engine: the grammar allows no token at its start")
		}
	}
	if rp := p.RepetitionPenalty; rp != 0 && rp != 1 {
		s.seen = map[int]bool{}
		for _, t := range r.Prompt {
			s.seen[t] = true
		}
	}
	e.queue = append(e.queue, s)
	e.signal()
	return s.out.ch, nil
}

func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Stats returns a snapshot.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.Queued, s.Running = len(e.queue), len(e.run)
	s.BlocksTotal = e.cache.Pool.Blocks()
	s.BlocksUsed = s.BlocksTotal - e.cache.Pool.Free()
	s.BlocksCached = e.cache.Pool.Cached()
	return s
}

// Close stops accepting requests and waits for the running and queued ones
// to finish until ctx is done; then it cancels what is left and frees the
// cache. It returns ctx's error if requests had to be cancelled.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.signal()
	var err error
	select {
	case <-e.done:
	case <-ctx.Done():
		err = ctx.Err()
		e.mu.Lock()
		for _, s := range slices.Concat(e.queue, e.run) {
			s.cancelled = true
		}
		e.mu.Unlock()
		e.signal()
		<-e.done
	}
	e.cache.Free()
	return err
}

// loop runs steps while there is work; it ends once closed and idle. A
// step is issued, then the one before it is read: either the next step
// is issued ahead of that read (planAhead), or the read comes first.
func (e *Engine) loop() {
	defer close(e.done)
	for {
		e.mu.Lock()
		e.reap()
		e.admit()
		if e.pend != nil {
			if steps, order, ok := e.planAhead(); ok {
				e.mu.Unlock()
				p, err := e.m.StepAhead(e.cache, steps)
				e.mu.Lock()
				e.stats.Ahead++
				e.read()
				e.issued(p, err, steps, order)
			} else {
				e.read()
			}
			e.mu.Unlock()
			continue
		}
		if len(e.run) == 0 {
			idle := len(e.queue) == 0
			closed := e.closed
			e.mu.Unlock()
			if closed && idle {
				return
			}
			<-e.wake
			continue
		}
		e.grow()
		if len(e.run) == 0 {
			e.mu.Unlock()
			continue
		}
		steps, order := e.plan()
		e.mu.Unlock()
		p, err := e.m.StepAhead(e.cache, steps)
		e.mu.Lock()
		e.issued(p, err, steps, order)
		e.mu.Unlock()
	}
}

// issued counts a step just issued and keeps it as the one in flight, or
// ends its sequences (those not finished meanwhile) with its error.
func (e *Engine) issued(p *model.Pending, err error, steps []model.StepSeq, order []*seq) {
	e.stats.Steps++
	if err == nil {
		e.pend = &inflight{p: p, steps: steps, order: order}
		return
	}
	for _, s := range order {
		if !s.done {
			e.finish(s, "error", err)
		}
	}
}

// read waits for the step in flight (with e.mu released meanwhile) and
// emits its tokens, skipping sequences that finished since it was issued.
func (e *Engine) read() {
	f := e.pend
	e.pend = nil
	e.mu.Unlock()
	out, tokens, err := f.p.Wait()
	var scored [][]PromptToken
	if err == nil {
		// (Sequences' steps are the loop's own: no lock needed, and
		// Submit and Stats do not wait for this.)
		scored = e.scorePrompts(f, out, f.p.Scores())
	}
	e.mu.Lock()
	for i, s := range f.order {
		if s.done {
			continue
		}
		if err != nil {
			e.finish(s, "error", err)
			continue
		}
		st := f.steps[i]
		if len(st.Draft) > 0 {
			e.verify(s, st.Draft, f.p.Drafted(i))
			continue
		}
		if s.wait > 0 {
			s.wait--
		}
		if st.AllLogits {
			s.promptLP = append(s.promptLP, scored[i]...)
		}
		s.fed += max(len(st.Tokens), 1) // a Fed sequence took one
		e.publish(s)
		if s.fed == s.pre && st.AllLogits {
			e.sendPrompt(s)
		}
		switch {
		case st.Sample != nil:
			lg := out[i]
			if st.AllLogits && lg != nil {
				lg = lg[len(lg)-e.m.Vocab():] // the last token's row
			}
			e.emit(s, lg, tokens[i])
		case s.fed >= s.pre && s.req.Params.MaxTokens == 0: // scored, nothing to generate
			e.finish(s, "length", nil)
			e.drop(s)
		}
	}
	e.match(f.order)
}

// verify takes the tokens of s's step with draft: drawn[j] is the model's
// token after its new token and draft[:j], so the draft holds up to its
// first token that differs from the draw before it. The cache keeps the
// positions of the new token and the draft tokens that held (s.kv.Len is
// set back past the others, which the next step writes again), and the
// draws up to the first that differs are emitted: the tokens the model
// would have drawn one step at a time.
func (e *Engine) verify(s *seq, draft, drawn []int) {
	n := sample.Held(draft, drawn)
	e.stats.Drafted += int64(len(draft))
	e.stats.Accepted += int64(n)
	if n == 0 {
		s.miss()
	} else {
		s.misses = 0
	}
	s.sampler.Skip(n) // the draws of the kept rows after the first (rule took its own)
	s.fed += 1 + n
	s.kv.Len = s.fed
	// (Under a grammar, a token after which the output is complete with no
	// text to follow, where match stops the sequence, is never a draft's
	// (draftMasks), so it can only be the last of these.)
	for _, tok := range drawn[:n+1] {
		e.emit(s, nil, tok)
		if s.done {
			return
		}
	}
	e.publish(s)
}

// draft is the draft of s's next step (Options.Speculate): prompt
// lookup over its tokens (sample.Lookup), at most k tokens.
func (e *Engine) draft(s *seq, k int) []int {
	return sample.Lookup(s.tokens, k, e.o.LookupMin, e.o.LookupMax)
}

// drafts gives the generating sequences of steps (order's) their drafts
// (Options.Speculate), in order while the step's rows stay within
// SpeculateRows; only where steps has no prompt chunk.
func (e *Engine) drafts(steps []model.StepSeq, order []*seq) {
	if e.o.Speculate <= 0 {
		return
	}
	rows := len(steps)
	for _, st := range steps {
		if len(st.Tokens) != 1 {
			return // a prompt chunk, or a sequence to recompute
		}
	}
	if !e.m.CanDraft(steps) {
		return // not the decode path (a one-token chunk scoring its prompt, the model)
	}
	limit := e.speculateRows()
	bs := e.cache.Pool.BlockSize()
	for i, s := range order {
		st := &steps[i]
		p := s.req.Params
		if rows >= limit || s.fed < s.pre || !e.speculates(s) || s.wait > 0 || st.Sample == nil || st.Logits || st.AllLogits {
			continue
		}
		// The step emits up to k+1 tokens and writes positions up to
		// fed+k; no more than the request and the context take, nor than
		// the blocks held or free without preempting.
		k := min(e.o.Speculate, limit-rows, p.MaxTokens-s.gen-1, e.o.MaxLen-s.fed-1)
		if k <= 0 {
			continue
		}
		d := e.draft(s, k)
		if len(d) > 0 && e.cache.Pool.Reserve(&s.kv, s.fed+1+len(d)) != nil {
			d = d[:max(min(len(d), s.kv.Cap(bs)-s.fed-1), 0)]
		}
		// Under a grammar, the draft ends before its first token the
		// grammar refuses, and each of its rows draws under the mask after
		// the draft's tokens before it.
		var masks [][]uint64
		if s.match != nil {
			d, masks = s.draftMasks(d)
		}
		if len(d) == 0 {
			s.miss()
			continue
		}
		if st.Draft = d; !e.m.CanDraft(steps) {
			st.Draft = nil // past the decode path's rows (SpeculateRows above them)
			break
		}
		rows += len(d)
		// Each row draws as the token at its position would be drawn
		// without the draft: the sampler's next uniform numbers (taken as
		// the tokens are kept, verify) and the penalties and bans after the
		// draft's tokens before it. A greedy rule that none of those
		// change is the same for every row.
		if p.Temperature > 0 && p.TopK != 1 || s.seen != nil || p.PresencePenalty != 0 || p.FrequencyPenalty != 0 || s.gen < p.MinTokens ||
			masks != nil {
			st.DraftRules = s.sampler.Peek(len(d))
			for j := range st.DraftRules {
				var mask []uint64
				if masks != nil {
					mask = masks[j]
				}
				s.adjustments(&st.DraftRules[j], nil, d[:j+1], mask)
			}
		}
	}
}

// draftMasks cuts draft d where s's grammar refuses it and gives its
// rows' masks (sample.DraftMasks, a copy of the matcher).
func (s *seq) draftMasks(d []int) ([]int, [][]uint64) {
	return sample.DraftMasks(s.match, d, s.req.Params.StopTokens, s.vocab)
}

// miss notes a draft of s that found no n-gram or kept no token: after
// two in a row, s takes 2, 4, then 8 steps without drafts (which may be
// issued ahead) before it looks again, so that text that does not repeat
// costs little more than one step in eight not issued ahead, and text
// that starts repeating later is found within 8 steps.
func (s *seq) miss() {
	s.misses++
	if s.misses >= 2 {
		s.wait = 1 << min(s.misses-1, 3)
	}
}

// speculates says whether s's steps may carry drafts: any sequence but
// those that bring back log-probabilities (every row's logits) or follow a
// grammar whose matcher cannot be copied (sample.Forker: a draft row's
// mask is made by a copy).
func (e *Engine) speculates(s *seq) bool {
	if e.o.Speculate <= 0 || s.req.Params.Logprobs {
		return false
	}
	_, forks := s.match.(sample.Forker)
	return s.match == nil || forks
}

// speculateRows is Options.SpeculateRows or its default.
func (e *Engine) speculateRows() int {
	if e.o.SpeculateRows > 0 {
		return e.o.SpeculateRows
	}
	return 8
}

// scorePrompts returns, for each sequence of step f that asked for every
// row's logits (out[i]), the log-probabilities those rows give the prompt
// tokens after them (its tokens from s.fed on): the scores the model
// brought back where the backend scored the rows (rs[i]), else computed
// here from the logits, the rows shared out among the host's cores (a
// chunk of 512 rows over a vocabulary of 32,002 is 16M exponentials).
func (e *Engine) scorePrompts(f *inflight, out [][]float32, rs [][]model.RowScore) [][]PromptToken {
	V := e.m.Vocab()
	type job struct{ i, r int }
	var jobs []job
	scored := make([][]PromptToken, len(f.order))
	for i, s := range f.order {
		if !f.steps[i].AllLogits || s.done {
			continue
		}
		if i < len(rs) && rs[i] != nil {
			scored[i] = make([]PromptToken, len(rs[i]))
			for r, sc := range rs[i] {
				pt := PromptToken{TokenLogprob: TokenLogprob{Token: s.req.Prompt[s.fed+r+1], Logprob: sc.Logprob}}
				if sc.Top != nil {
					pt.Top = make([]TokenLogprob, len(sc.Top))
					for j, t := range sc.Top {
						pt.Top[j] = TokenLogprob{Token: t.Token, Logprob: t.Logprob}
					}
				}
				scored[i][r] = pt
			}
			continue
		}
		n := min(len(out[i])/V, len(s.req.Prompt)-1-s.fed) // the last prompt token predicts no prompt token
		scored[i] = make([]PromptToken, max(n, 0))
		for r := range n {
			jobs = append(jobs, job{i, r})
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(goruntime.GOMAXPROCS(0), len(jobs)) {
		wg.Go(func() {
			for j := next.Add(1) - 1; j < int64(len(jobs)); j = next.Add(1) - 1 {
				i, r := jobs[j].i, jobs[j].r
				s := f.order[i]
				tok := s.req.Prompt[s.fed+r+1]
				lp, top := rowLogprobs(out[i][r*V:(r+1)*V], tok, s.req.Params.TopLogprobs)
				scored[i][r] = PromptToken{TokenLogprob: TokenLogprob{Token: tok, Logprob: lp}, Top: top}
			}
		})
	}
	wg.Wait()
	return scored
}

// sendPrompt sends s's prompt log-probabilities, once.
func (e *Engine) sendPrompt(s *seq) {
	if s.promptSent {
		return
	}
	s.promptSent = true
	lp := s.promptLP
	if lp == nil {
		lp = []PromptToken{} // (a prompt of one token)
	}
	s.out.send(Event{Prompt: lp})
	s.promptLP = nil
}

// planAhead makes the next step while e.pend is in flight, when every
// running sequence can take it (Options.NoAhead): each drew in e.pend,
// decodes the token it drew there (Fed), draws without penalties or
// log-probabilities (its rule does not depend on that token), and is not
// ended by that token's length.
func (e *Engine) planAhead() ([]model.StepSeq, []*seq, bool) {
	if e.o.NoAhead || len(e.run) == 0 {
		return nil, nil, false
	}
	drew := make(map[*seq]bool, len(e.pend.order))
	for i, s := range e.pend.order {
		// (A draft's next token is chosen on the host, as is a sequence's
		// that may take a draft.)
		drew[s] = e.pend.steps[i].Sample != nil && len(e.pend.steps[i].Draft) == 0
	}
	for _, s := range e.run {
		p := s.req.Params
		mayDraft := e.speculates(s) && s.wait == 0 && len(e.run) < e.speculateRows()
		if !drew[s] || mayDraft || p.Logprobs || s.match != nil || s.seen != nil || p.PresencePenalty != 0 || p.FrequencyPenalty != 0 ||
			s.gen < p.MinTokens || s.gen+1 >= p.MaxTokens || len(s.tokens)+1 >= e.o.MaxLen {
			return nil, nil, false
		}
	}
	// The token in flight goes to position Len, which its blocks must
	// hold; without a free block it waits for the read (then grow may
	// preempt, which it never does to a sequence with a step in flight).
	for _, s := range e.run {
		if e.cache.Pool.Reserve(&s.kv, s.kv.Len+1) != nil {
			return nil, nil, false
		}
	}
	steps := make([]model.StepSeq, len(e.run))
	for i, s := range e.run {
		steps[i] = model.StepSeq{Seq: &s.kv, Fed: true, Sample: s.rule()}
	}
	return steps, slices.Clone(e.run), true
}

// reap ends the requests whose context is done.
func (e *Engine) reap() {
	keep := e.queue[:0]
	for _, s := range e.queue {
		if s.cancelled || s.ctx.Err() != nil {
			e.dequeue(s)
			e.finish(s, "cancelled", nil)
			continue
		}
		keep = append(keep, s)
	}
	e.queue = keep
	run := e.run[:0]
	for _, s := range e.run {
		if s.cancelled || s.ctx.Err() != nil {
			e.finish(s, "cancelled", nil)
			continue
		}
		run = append(run, s)
	}
	e.run = run
}

// admit moves queued requests, in order, into the batch while the cache
// has blocks for their prompt (all of a preempted sequence's tokens) and
// the first token after it, and keeps one block free for each running
// sequence's next token, so that admitting does not make the next step
// preempt what it admitted. The prompt's leading blocks that the prefix
// cache holds are shared rather than taken, and not fed.
func (e *Engine) admit() {
	pool := e.cache.Pool
	bs := pool.BlockSize()
	for len(e.queue) > 0 && len(e.run) < e.o.MaxRunning {
		s := e.queue[0]
		need := min(s.pre+1, e.o.MaxLen)
		hit, idle := 0, 0
		if e.shares(s) {
			s.keys = kvcache.ChainKeys(s.keys, s.tokens[:s.pre], bs)
			// (At least the last prompt token is fed: its logits draw.)
			hit, idle = pool.Match(s.keys[:min(len(s.keys), (s.pre-1)/bs)])
		}
		take := pool.BlocksFor(need) - hit + idle // blocks leaving Free
		if take > pool.Free() || len(e.run) > 0 && pool.Free()-take < len(e.run) {
			return // wait for blocks
		}
		if hit > 0 {
			pool.Share(&s.kv, s.keys, hit)
			s.fed, s.published = s.kv.Len, hit
		}
		if err := pool.Reserve(&s.kv, need); err != nil {
			pool.Release(&s.kv)
			s.fed, s.published = 0, 0
			return
		}
		if e.shares(s) && !s.preempted { // (a recompute's own blocks are not a prefix hit)
			e.stats.PrefixQueries += int64(s.pre)
			e.stats.PrefixHits += int64(s.fed)
		}
		e.queue = e.queue[1:]
		e.dequeue(s)
		e.run = append(e.run, s)
	}
}

// shares says whether s may take its prompt's leading blocks from the
// prefix cache: not when the prompt's own log-probabilities are still to
// be computed.
func (e *Engine) shares(s *seq) bool {
	return !e.o.NoPrefixCache && !(s.req.Params.PromptLogprobs && !s.promptSent)
}

// publish caches s's full blocks written since the last call (those of
// positions below s.fed).
func (e *Engine) publish(s *seq) {
	if e.o.NoPrefixCache {
		return
	}
	bs := e.cache.Pool.BlockSize()
	full := min(s.fed, len(s.tokens)) / bs
	if full <= s.published {
		return
	}
	s.keys = kvcache.ChainKeys(s.keys, s.tokens[:full*bs], bs)
	for i := s.published; i < full; i++ {
		e.cache.Pool.Publish(&s.kv, i, s.keys[i])
	}
	s.published = full
}

// grow gives every generating sequence the blocks for the tokens the next
// step feeds it. Where none is free, the most recently admitted sequence
// is preempted (the one growing, if it is that one) until the block is
// there. Only called with no step in flight.
func (e *Engine) grow() {
	pool := e.cache.Pool
	for i := 0; i < len(e.run); i++ {
		s := e.run[i]
		if s.fed < s.pre {
			continue // its prompt's blocks were reserved at admission
		}
		for pool.Reserve(&s.kv, len(s.tokens)) != nil {
			victim := e.run[len(e.run)-1]
			e.preempt(victim)
			if victim == s {
				i--
				break
			}
		}
	}
}

// preempt takes s out of the batch: its blocks go back, and it goes to the
// head of the queue to be recomputed from all its tokens, whose last
// chunk then draws its next token with the sampler where it stopped.
func (e *Engine) preempt(s *seq) {
	e.cache.Pool.Release(&s.kv)
	s.pre, s.fed, s.published = len(s.tokens), 0, 0
	s.promptLP = nil // (a prompt cut short is scored again from the start)
	e.drop(s)
	e.queue = slices.Insert(e.queue, 0, s)
	s.preempted = true
	e.preempted++
	e.stats.Preemptions++
}

// dequeue notes that s left the queue (admitted or ended).
func (e *Engine) dequeue(s *seq) {
	if s.preempted {
		s.preempted = false
		e.preempted--
	}
}

// plan makes a step: one token for every generating sequence, then prompt
// chunks in admission order while the token budget lasts. A sequence whose
// last fed token is in the step draws its next token (on the backend where
// it can); its logits come back only for log-probabilities.
func (e *Engine) plan() ([]model.StepSeq, []*seq) {
	budget := e.o.StepTokens
	var steps []model.StepSeq
	var order []*seq
	for _, s := range e.run {
		if s.fed >= s.pre { // generating: feed the last token
			steps = append(steps, model.StepSeq{Seq: &s.kv, Tokens: s.tokens[s.fed:], Logits: s.req.Params.Logprobs, Sample: s.rule()})
			order = append(order, s)
			budget -= len(s.tokens) - s.fed
		}
	}
	for _, s := range e.run {
		if s.fed < s.pre && budget > 0 {
			n := min(s.pre-s.fed, budget)
			st := model.StepSeq{Seq: &s.kv, Tokens: s.tokens[s.fed : s.fed+n], AllLogits: s.req.Params.PromptLogprobs && !s.promptSent}
			if st.AllLogits {
				// Rows the backend may score where they are: each predicts
				// the prompt token after it (the prompt's last none).
				lo := min(s.fed+1, len(s.req.Prompt))
				t := s.req.Prompt[lo : lo+max(min(n, len(s.req.Prompt)-1-s.fed), 0)]
				st.Score = &model.Score{Targets: t, Top: s.req.Params.TopLogprobs}
			}
			if s.fed+n == s.pre && s.req.Params.MaxTokens > 0 {
				st.Logits, st.Sample = s.req.Params.Logprobs, s.rule()
			}
			steps = append(steps, st)
			order = append(order, s)
			budget -= n
		}
	}
	e.drafts(steps, order)
	return steps, order
}

// match makes the next masks of the constrained sequences whose matchers
// took a token in the step just read (emit), one goroutine each (a mask of
// a state not seen before walks the vocabulary). A sequence whose output
// is complete and that may take no more text stops there; one that may
// take nothing ends with an error.
func (e *Engine) match(seqs []*seq) {
	var wg sync.WaitGroup
	for _, s := range seqs {
		if s.done || !s.stale {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.allowed, s.end = s.match.Allowed()
		}()
	}
	wg.Wait()
	for _, s := range seqs {
		if s.done || !s.stale {
			continue
		}
		s.stale = false
		switch _, text := s.grammarMask(); {
		case text == 0 && s.end:
			e.finish(s, "stop", nil)
			e.drop(s)
		case text == 0:
			e.finish(s, "error", errors.New("engine: the grammar allows no token here"))
		}
	}
}

// grammarMask makes the mask of s's next draw (runtime.GrammarMask) and
// returns it with the tokens of text it allows.
func (s *seq) grammarMask() ([]uint64, int) {
	var text int
	s.allow, text = runtime.GrammarMask(s.allow, s.allowed, s.end, s.req.Params.StopTokens, s.vocab)
	return s.allow, text
}

// banned is subtracted from a logit that must not be drawn (a stop token
// before MinTokens).
const banned = runtime.Banned

// rule is the sampling rule of s's next token: the sampler's next draw,
// the logit bias, then the penalties (OpenAI's presence and frequency
// penalties over the tokens generated so far, transformers' repetition
// penalty over the prompt's and those; vLLM's order) and, before
// MinTokens, the stop tokens banned.
func (s *seq) rule() *runtime.SampleParams {
	r := s.sampler.Next()
	s.adjust = s.adjustments(&r, s.adjust[:0], nil, s.allow)
	return &r
}

// adjustments sets r's Adjust (appended to adj, which it returns) and mask
// for the token after s's tokens and then extra (a draft's first tokens:
// the rule of the draft's row after them, drafts); allow is the grammar's
// mask there, where s has a grammar.
func (s *seq) adjustments(r *runtime.SampleParams, adj []runtime.LogitAdjust, extra []int, allow []uint64) []runtime.LogitAdjust {
	p := s.req.Params
	count := func(t int) int {
		c := s.counts[t]
		for _, x := range extra {
			if x == t {
				c++
			}
		}
		return c
	}
	sub := func(t int) float32 {
		if c := count(t); c > 0 {
			return float32(p.PresencePenalty + p.FrequencyPenalty*float64(c))
		}
		return 0
	}
	// The tokens penalized: those seen (repetition penalty) or generated,
	// and extra's not among them.
	var more []int
	for _, t := range extra {
		if (s.seen != nil && !s.seen[t] || s.seen == nil && s.counts[t] == 0) && !slices.Contains(more, t) {
			more = append(more, t)
		}
	}
	if s.seen != nil {
		for t := range s.seen {
			adj = append(adj, runtime.LogitAdjust{Token: t, Rep: float32(p.RepetitionPenalty), Sub: sub(t)})
		}
		for _, t := range more {
			adj = append(adj, runtime.LogitAdjust{Token: t, Rep: float32(p.RepetitionPenalty), Sub: sub(t)})
		}
	} else if p.PresencePenalty != 0 || p.FrequencyPenalty != 0 {
		for t := range s.counts {
			adj = append(adj, runtime.LogitAdjust{Token: t, Rep: 1, Sub: sub(t)})
		}
		for _, t := range more {
			adj = append(adj, runtime.LogitAdjust{Token: t, Rep: 1, Sub: sub(t)})
		}
	}
	ban := s.gen+len(extra) < p.MinTokens
	if len(p.LogitBias) > 0 || ban {
		// (At most one entry a token: what is there takes the rest.)
		at := make(map[int]int, len(adj))
		for i, a := range adj {
			at[a.Token] = i
		}
		entry := func(t int) *runtime.LogitAdjust {
			if i, ok := at[t]; ok {
				return &adj[i]
			}
			at[t] = len(adj)
			adj = append(adj, runtime.LogitAdjust{Token: t, Rep: 1})
			return &adj[len(adj)-1]
		}
		for t, b := range p.LogitBias {
			entry(t).Bias += b
		}
		if ban {
			for _, t := range p.StopTokens {
				entry(t).Sub += banned
			}
		}
	}
	if s.match != nil {
		r.Allow = allow // (s.allow, made with s.allowed: Submit, match; a draft row's, drafts)
		// Penalties on the allowed tokens only: a refused one stays
		// lowered by runtime.Banned (a repetition penalty below 1
		// multiplied its -1e30 up past the allowed ones' logits).
		keep := adj[:0]
		for _, a := range adj {
			if a.Token >= 0 && a.Token < 64*len(r.Allow) && r.Allow[a.Token>>6]>>(a.Token&63)&1 == 1 {
				keep = append(keep, a)
			}
		}
		adj = keep
	}
	r.Adjust = adj
	return adj
}

// emit sends s's drawn token tok (or ends s): logits are its row's, for
// log-probabilities. A negative tok -1-j says logit j was not finite.
func (e *Engine) emit(s *seq, logits []float32, tok int) {
	p := s.req.Params
	if tok < 0 {
		e.finish(s, "error", fmt.Errorf("engine: %w: logit %d after %d tokens", sample.ErrNonFinite, -1-tok, s.gen))
		return
	}
	var ev Event
	if p.Logprobs {
		ev.Logprob, ev.Top = rowLogprobs(logits, tok, p.TopLogprobs)
	}
	now := time.Now()
	if obs := e.o.Observer; obs != nil {
		if s.gen == 0 {
			obs.FirstToken(now.Sub(s.submit))
		} else {
			obs.InterToken(now.Sub(s.last))
		}
	}
	s.last = now
	if slices.Contains(p.StopTokens, tok) {
		s.gen++ // (counted, not emitted)
		if p.Logprobs {
			// Its log-probability is still given (OpenAI's and vLLM's
			// logprobs end with the end token; lm-eval reads them).
			ev.Token, ev.Stop = tok, true
			s.out.send(ev)
		}
		e.finish(s, "stop", nil)
		e.drop(s)
		return
	}
	if s.match != nil {
		if err := s.match.Accept(tok); err != nil {
			e.finish(s, "error", fmt.Errorf("engine: %w", err))
			return
		}
		s.stale = true
	}
	s.gen++
	s.counts[tok]++
	if s.seen != nil {
		s.seen[tok] = true
	}
	s.tokens = append(s.tokens, tok)
	ev.Token = tok
	s.out.send(ev)
	if s.gen >= p.MaxTokens || len(s.tokens) >= e.o.MaxLen {
		e.finish(s, "length", nil)
		e.drop(s)
	}
}

// drop removes a finished sequence from the batch.
func (e *Engine) drop(s *seq) {
	if i := slices.Index(e.run, s); i >= 0 {
		e.run = slices.Delete(e.run, i, i+1)
	}
}

// finish ends s: its blocks go back, the last event goes out.
func (e *Engine) finish(s *seq, reason string, err error) {
	s.done = true
	e.cache.Pool.Release(&s.kv)
	prompt := len(s.req.Prompt)
	e.stats.PromptTokens += int64(prompt)
	e.stats.Generated += int64(s.gen)
	if obs := e.o.Observer; obs != nil {
		obs.Finished(reason, prompt, s.gen)
	}
	s.out.send(Event{Done: true, FinishReason: reason, Err: err, PromptTokens: prompt, CompletionTokens: s.gen})
	s.out.close()
	if reason == "error" {
		e.drop(s)
	}
}

// rowLogprobs returns log softmax(logits)[tok] in float64 and, for k > 0,
// the k most likely tokens (ties: the lower id first) with theirs: one
// pass for the maximum and the k best, one for the sum of exponentials.
func rowLogprobs(logits []float32, tok, k int) (float64, []TokenLogprob) {
	mx := float32(math.Inf(-1))
	var top []TokenLogprob
	if k > 0 {
		top = make([]TokenLogprob, 0, k+1)
	}
	for id, v := range logits {
		mx = max(mx, v)
		if k == 0 || len(top) == k && float64(v) <= top[k-1].Logprob {
			continue
		}
		i := len(top)
		for i > 0 && top[i-1].Logprob < float64(v) {
			i--
		}
		top = slices.Insert(top, i, TokenLogprob{Token: id, Logprob: float64(v)})
		if len(top) > k {
			top = top[:k]
		}
	}
	var sum float64
	m := float64(mx)
	for _, v := range logits {
		sum += math.Exp(float64(v) - m)
	}
	lse := m + math.Log(sum)
	for i := range top {
		top[i].Logprob -= lse
	}
	return float64(logits[tok]) - lse, top
}
