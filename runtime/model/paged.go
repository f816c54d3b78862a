package model

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/kvcache"
)

// PagedCache is a model's KV cache in blocks of positions (package
// kvcache keeps the block tables): per layer, K and V pools [blocks ·
// blockSize, kvHeads·headDim] allocated once on the backend. Sequences of
// any length share it without fragmenting it; a sequence's rows are
// written at its slots and gathered in position order for attention.
type PagedCache struct {
	// Pool hands out the blocks; the engine reserves a sequence's blocks
	// before a Step writes them.
	Pool   *kvcache.Pool
	b      runtime.Backend
	k, v   []runtime.Tensor
	gk, gv runtime.Tensor // [maxLen, kvDim] gather scratch
	maxLen int
	width  int // block table entries a sequence of maxLen positions needs

	// NoGraphs makes decode steps run their ops one by one even on a
	// backend that records graphs (runtime.Grapher): the reference the
	// replayed steps are checked against. The caches of a mixture-of-experts
	// model that routes on the host start with it set.
	NoGraphs bool
	dec      map[int]*decodeState // by row count
	graphErr error                // why recording failed; steps then run op by op

	// The last step issued on the cache and where its draws are: drawn
	// maps a sequence to its draw's index in last's draws (and, when
	// onDevice, in fed, I32 [maxDecodeRows], where a runtime.TokenFeeder
	// left them), for the Fed sequences of the next step.
	fed      runtime.Tensor
	last     *Pending
	drawn    map[*kvcache.Seq]int
	onDevice bool

	// A general step's index inputs on a runtime.PagedDecoder (stepIndex):
	// gidx I32 on the backend, ghost its host bytes.
	gidx  runtime.Tensor
	ghost []byte
	// blockCopies (tests) takes the block-by-block path on any backend.
	blockCopies bool
}

// stepIndex is what a general step (prompt chunks, several tokens a
// sequence) reads on a runtime.PagedDecoder, uploaded once for all its
// layers: each row's position and cache slot, for one RoPEStore over all
// rows a layer, and each sequence's slots of positions 0.., for one
// EmbeddingAt a layer that gathers its K (and one its V) for attention.
// Without it every sequence took a copy a block of its context a layer,
// launched one by one: thousands a step once contexts are long.
type stepIndex struct {
	pos, slot runtime.Tensor // I32 [rows]
	// one rows 0..one-1 are sequences of one token each (the engine's
	// generating sequences, which come first), whose attention runs as
	// one PagedAttention over their block tables, I32 [one, width].
	one    int
	tables runtime.Tensor
}

// GraphErr reports why decode steps could not be recorded as graphs (nil
// when they are, or when the backend does not record).
func (c *PagedCache) GraphErr() error { return c.graphErr }

// NewPagedCache allocates a paged cache of blocks blocks of blockSize
// positions for sequences of at most maxLen positions, plus one block that
// the padding rows of a replayed decode step write to. A maxLen past the
// model's Context is refused.
func (m *Model) NewPagedCache(blocks, blockSize, maxLen int) (*PagedCache, error) {
	pool, err := kvcache.NewPool(blocks, blockSize)
	if err != nil {
		return nil, err
	}
	if maxLen <= 0 {
		return nil, fmt.Errorf("model: paged cache for sequences of %d positions", maxLen)
	}
	if m.ctx > 0 && maxLen > m.ctx {
		// Past the context its RoPE table was chosen for (Options.Context).
		return nil, fmt.Errorf("model: paged cache for sequences of %d positions: the model was loaded for a context of %d", maxLen, m.ctx)
	}
	c := &PagedCache{Pool: pool, b: m.b, maxLen: maxLen, width: pool.BlocksFor(maxLen)}
	// A mixture of experts that routes on the host mid-step (moe) runs its
	// steps op by op, never recorded; one routed on the backend
	// (moeRouted) records the steps of the batches it routes.
	c.NoGraphs = m.d.moe != nil && !m.routesOnDevice(1)
	alloc := func(rows int) (runtime.Tensor, error) {
		t, err := m.b.Alloc(m.dtype(), rows, m.d.kvDim())
		if err != nil {
			c.Free()
			return nil, fmt.Errorf("model: kv cache of %d blocks of %d: %w", blocks, blockSize, err)
		}
		return t, nil
	}
	for range m.layers {
		for _, dst := range []*[]runtime.Tensor{&c.k, &c.v} {
			t, err := alloc((blocks + 1) * blockSize)
			if err != nil {
				return nil, err
			}
			*dst = append(*dst, t)
		}
	}
	if c.gk, err = alloc(maxLen); err != nil {
		return nil, err
	}
	if c.gv, err = alloc(maxLen); err != nil {
		return nil, err
	}
	if _, ok := m.b.(runtime.TokenFeeder); ok {
		if c.fed, err = m.b.Alloc(runtime.I32, maxDecodeRows); err != nil {
			c.Free()
			return nil, fmt.Errorf("model: paged cache's token buffer: %w", err)
		}
	}
	return c, nil
}

// KVBytesPerPosition is the memory one position takes in every layer's K
// and V.
func (m *Model) KVBytesPerPosition() int64 {
	return int64(len(m.layers)) * 2 * int64(m.d.kvDim()) * int64(m.dtype().Size())
}

// Free releases the cache's memory and its decode graphs.
func (c *PagedCache) Free() {
	for _, ds := range c.dec {
		ds.free(c.b)
	}
	c.dec = nil
	for _, t := range slices.Concat(c.k, c.v, []runtime.Tensor{c.gk, c.gv}) {
		if t != nil {
			c.b.Free(t)
		}
	}
	c.k, c.v, c.gk, c.gv = nil, nil, nil, nil
	if c.fed != nil {
		c.b.Free(c.fed)
		c.fed = nil
	}
	if c.gidx != nil {
		c.b.Free(c.gidx)
		c.gidx, c.ghost = nil, nil
	}
	c.last, c.drawn = nil, nil
}

// index uploads a general step's stepIndex for spans (rows 0..rows-1 of
// the step, in span order) and sets each span's ix and ids, where the
// backend is a runtime.PagedDecoder; elsewhere it does nothing and the
// layers write and gather block by block. With paged, the leading spans of
// one row each attend through PagedAttention (the model's heads within its
// limits).
func (c *PagedCache) index(spans []span, rows int, paged bool) error {
	if _, ok := c.b.(runtime.PagedDecoder); !ok || c.blockCopies {
		return nil
	}
	bs := c.Pool.BlockSize()
	one := 0
	for paged && one < len(spans) && spans[one].rows == 1 {
		one++
	}
	n := 2*rows + one*c.width
	for _, sp := range spans[one:] {
		n += sp.pos0 + sp.rows
	}
	if c.gidx == nil || c.gidx.Len() < n {
		if c.gidx != nil {
			c.b.Free(c.gidx)
			c.gidx = nil
		}
		t, err := c.b.Alloc(runtime.I32, max(n, 2*c.maxLen))
		if err != nil {
			return fmt.Errorf("model: step index of %d entries: %w", n, err)
		}
		c.gidx = t
	}
	c.ghost = slices.Grow(c.ghost[:0], 4*c.gidx.Len())[:4*c.gidx.Len()]
	put := func(i, v int) { binary.LittleEndian.PutUint32(c.ghost[4*i:], uint32(int32(v))) }
	for _, sp := range spans {
		for r := range sp.rows {
			put(sp.row0+r, sp.pos0+r)
			put(rows+sp.row0+r, sp.seq.Slot(sp.pos0+r, bs))
		}
	}
	// (Table entries past a sequence's blocks are never read.)
	at := 2 * rows
	for _, sp := range spans[:one] {
		for j := range c.width {
			v := 0
			if j < len(sp.seq.Blocks) {
				v = int(sp.seq.Blocks[j])
			}
			put(at+j, v)
		}
		at += c.width
	}
	for _, sp := range spans[one:] {
		for p := range sp.pos0 + sp.rows {
			put(at+p, sp.seq.Slot(p, bs))
		}
		at += sp.pos0 + sp.rows
	}
	clear(c.ghost[4*at:])
	if err := c.b.UploadRaw(c.gidx, c.ghost, runtime.I32); err != nil {
		return fmt.Errorf("model: step index: %w", err)
	}
	ix := &stepIndex{pos: c.b.View(c.gidx, 0, rows), slot: c.b.View(c.gidx, rows, rows), one: one}
	at = 2 * rows
	if one > 0 {
		ix.tables = c.b.View(c.gidx, at, one*c.width)
		at += one * c.width
	}
	for i := range spans {
		spans[i].ix = ix
		if i < one {
			continue
		}
		m := spans[i].pos0 + spans[i].rows
		spans[i].ids = c.b.View(c.gidx, at, m)
		at += m
	}
	return nil
}

// gatherAt is gather with one EmbeddingAt each for K and V: ids holds the
// sequence's slots of positions 0..n-1 (stepIndex).
func (c *PagedCache) gatherAt(b runtime.Backend, li int, ids runtime.Tensor, n int) (runtime.Tensor, runtime.Tensor) {
	pd := b.(runtime.PagedDecoder)
	gk, gv := b.View(c.gk, 0, n), b.View(c.gv, 0, n)
	pd.EmbeddingAt(gk, c.k[li], ids)
	pd.EmbeddingAt(gv, c.v[li], ids)
	return gk, gv
}

// write copies rows of new keys and values, at positions pos0..., into the
// sequence's slots of layer li, one copy per run of slots in a block.
func (c *PagedCache) write(b runtime.Backend, li int, seq *kvcache.Seq, pos0 int, k, v runtime.Tensor) {
	bs := c.Pool.BlockSize()
	rows := runtime.Rows(k)
	for r := 0; r < rows; {
		p := pos0 + r
		n := min(bs-p%bs, rows-r)
		slot := seq.Slot(p, bs)
		b.Copy(b.View(c.k[li], slot, n), b.View(k, r, n))
		b.Copy(b.View(c.v[li], slot, n), b.View(v, r, n))
		r += n
	}
}

// gather copies positions 0..n-1 of the sequence in layer li into the
// scratch and returns views of them, [n, kvDim] each.
func (c *PagedCache) gather(b runtime.Backend, li int, seq *kvcache.Seq, n int) (runtime.Tensor, runtime.Tensor) {
	bs := c.Pool.BlockSize()
	for p := 0; p < n; p += bs {
		m := min(bs, n-p)
		slot := seq.Slot(p, bs)
		b.Copy(b.View(c.gk, p, m), b.View(c.k[li], slot, m))
		b.Copy(b.View(c.gv, p, m), b.View(c.v[li], slot, m))
	}
	return b.View(c.gk, 0, n), b.View(c.gv, 0, n)
}

// StepSeq is one sequence's part of a Step.
type StepSeq struct {
	// Seq is the sequence's block table; Tokens go to positions Seq.Len...,
	// which its blocks must already hold (Pool.Reserve).
	Seq *kvcache.Seq
	// Tokens are the new tokens: a prompt or a chunk of it, or the last
	// sampled token.
	Tokens []int
	// Fed, with no Tokens, makes the new token the one this sequence drew
	// in the last step issued on the cache (its Sample), read where that
	// step left it: a step of Fed sequences can be issued (StepAhead)
	// before the step ahead of it has brought its tokens back. A draw that
	// found a non-finite logit feeds token 0.
	Fed bool
	// Logits asks for the last token's logits.
	Logits bool
	// AllLogits asks for the logits of every one of Tokens, row after row
	// ([len(Tokens)·vocab], the last row the last token's): a prompt's own
	// log-probabilities (echo with logprobs, scoring).
	AllLogits bool
	// Score, with AllLogits, asks instead for the scores of the first
	// len(Score.Targets) rows where the backend scores rows where they are
	// (a runtime.RowScorer that ScoresRows): they come back in
	// Pending.Scores and the sequence's logits are only the last row's,
	// when Logits asks for them. Elsewhere AllLogits's rows come back.
	Score *Score
	// Sample draws the sequence's next token from the last token's logits
	// under this rule (StepSample), on the backend where it is a
	// runtime.TokenSampler.
	Sample *runtime.SampleParams
	// Draft (speculative decoding) feeds these tokens at the positions
	// after the sequence's one new token (Tokens of one, or Fed), each in a
	// row of its own of the decode path, and draws a token after every
	// one: Pending.Drafted has the 1+len(Draft) draws. Draw j is the
	// model's token after the draft's first j tokens, so the draft holds
	// up to the first j where Draft[j] differs from draw j, and the cache's
	// rows past it must be written again (the caller sets Seq.Len back).
	// A Draft needs a Sample rule and no Logits. Row j >= 1
	// draws under DraftRules[j-1], or Sample where DraftRules is nil: rules
	// of their own let each row draw as the sequence's token at that
	// position would be drawn (its uniform number, its penalties).
	Draft      []int
	DraftRules []runtime.SampleParams
}

// Score is what StepSeq.Score asks: row r's log-probability of Targets[r]
// and its Top most likely tokens.
type Score struct {
	Targets []int
	Top     int
}

// RowScore is a row's score (StepSeq.Score): the log-probability of its
// target and the most likely tokens with theirs, most likely first.
type RowScore struct {
	Logprob float64
	Top     []TokenLogprob
}

// TokenLogprob is a token and its log-probability.
type TokenLogprob struct {
	Token   int
	Logprob float64
}

// Step runs one step of continuous batching: every sequence's new tokens,
// at their own positions, stacked into one pass over the layers (row-wise
// ops and MatMuls once over all rows, attention per sequence over its
// paged K and V). It returns, per sequence, the last token's logits
// [vocab] when asked (Logits), every token's with AllLogits, else nil, and
// advances each Seq.Len. Nothing runs when an argument is invalid.
func (m *Model) Step(c *PagedCache, seqs []StepSeq) ([][]float32, error) {
	logits, _, err := m.StepSample(c, seqs)
	return logits, err
}

// StepSample is Step that also draws the next token of every sequence with
// a Sample rule: tokens[i] is that token, or -1-j when logit j of its row is
// not finite (then no token is drawn); tokens of other sequences are 0. A
// decode step on a runtime.TokenSampler draws on the backend and brings
// back only the tokens (and the logits asked for).
func (m *Model) StepSample(c *PagedCache, seqs []StepSeq) (logits [][]float32, tokens []int, err error) {
	p, err := m.StepAhead(c, seqs)
	if err != nil {
		return nil, nil, err
	}
	return p.Wait()
}

// Pending is a step issued by StepAhead: its logits (those asked for) are
// back, its tokens may still be on their way.
type Pending struct {
	seqs   int
	logits [][]float32
	scores [][]RowScore // by sequence, where StepSeq.Score was answered
	draws  []int        // the sequences that draw, in draw order
	pend   runtime.PendingTokens
	drawn  []int32 // by draw, once back
	tokens []int
	err    error
	done   bool
	// drafts marks, in a step with drafts, the sequences with one;
	// drafted holds their rows' draws once back.
	drafts  []bool
	drafted [][]int
}

// Drafted returns, once Wait has, sequence i's draws in the rows of its
// StepSeq.Draft step: the token after its new token, then after each
// draft token; nil for a sequence without a draft.
func (p *Pending) Drafted(i int) []int {
	if p.drafted == nil {
		return nil
	}
	return p.drafted[i]
}

// Scores returns, by sequence, the rows' scores StepSeq.Score asked for,
// nil for a sequence whose rows came back as logits instead (or that did
// not ask). They are there once StepAhead returns.
func (p *Pending) Scores() [][]RowScore { return p.scores }

// Wait returns the step's results as StepSample does, waiting for its
// tokens; it may be called more than once.
func (p *Pending) Wait() (logits [][]float32, tokens []int, err error) {
	if !p.done {
		p.done = true
		if p.pend != nil {
			p.drawn = make([]int32, len(p.draws))
			p.err = p.pend.Wait(p.drawn)
			p.pend = nil
		}
		p.tokens = make([]int, p.seqs)
		if p.drafts != nil {
			p.drafted = make([][]int, p.seqs)
		}
		// (A sequence's draws are consecutive: its token is the first.)
		prev := -1
		for j, i := range p.draws {
			if i != prev {
				p.tokens[i] = int(p.drawn[j])
			}
			prev = i
			if p.drafts != nil && p.drafts[i] {
				p.drafted[i] = append(p.drafted[i], int(p.drawn[j]))
			}
		}
	}
	if p.err != nil {
		return nil, nil, p.err
	}
	return p.logits, p.tokens, nil
}

// StepAhead issues a step as StepSample runs it, and returns without
// waiting for it where the backend draws its tokens where the logits are
// (a runtime.TokenFeeder; at most maxDecodeRows draws) and no logits are
// asked for; otherwise the step is done when it returns. The next step may
// then be issued at once, its sequences Fed the tokens of this one, before
// Wait: the host's part of a step overlaps the device's work on the one
// ahead of it. Every sequence's Len advances now.
func (m *Model) StepAhead(c *PagedCache, seqs []StepSeq) (*Pending, error) {
	if len(seqs) == 0 {
		return nil, errors.New("model: step of no sequences")
	}
	bs := c.Pool.BlockSize()
	spans := make([]span, len(seqs))
	var ids []int
	rows := 0
	for i, s := range seqs {
		if s.Seq == nil || len(s.Tokens) == 0 && !s.Fed {
			return nil, fmt.Errorf("model: step sequence %d: no sequence or no tokens", i)
		}
		if s.Fed {
			if len(s.Tokens) > 0 {
				return nil, fmt.Errorf("model: step sequence %d: fed the last draw's token and given %d tokens", i, len(s.Tokens))
			}
			if _, ok := c.drawn[s.Seq]; !ok {
				return nil, fmt.Errorf("model: step sequence %d: fed the last draw's token, and the last step drew none for it", i)
			}
		}
		if len(s.Draft) > 0 {
			switch {
			case len(s.Tokens) > 1:
				return nil, fmt.Errorf("model: step sequence %d: a draft follows one new token, not %d", i, len(s.Tokens))
			case s.Sample == nil || s.Logits || s.AllLogits:
				return nil, fmt.Errorf("model: step sequence %d: a draft needs a draw and no logits", i)
			case s.DraftRules != nil && len(s.DraftRules) != len(s.Draft):
				return nil, fmt.Errorf("model: step sequence %d: %d draft rules for %d draft tokens", i, len(s.DraftRules), len(s.Draft))
			}
			for _, id := range s.Draft {
				if id < 0 || id >= m.d.vocab {
					return nil, fmt.Errorf("model: step sequence %d: draft token id %d outside vocab [0, %d)", i, id, m.d.vocab)
				}
			}
		}
		n := max(len(s.Tokens), 1) + len(s.Draft)
		end := s.Seq.Len + n
		if end > s.Seq.Cap(bs) || end > c.maxLen {
			return nil, fmt.Errorf("model: step sequence %d: %d positions, its blocks hold %d (at most %d)", i, end, s.Seq.Cap(bs), c.maxLen)
		}
		for j := range seqs[:i] {
			if seqs[j].Seq == s.Seq {
				return nil, fmt.Errorf("model: step sequence %d repeats sequence %d", i, j)
			}
		}
		for _, id := range s.Tokens {
			if id < 0 || id >= m.d.vocab {
				return nil, fmt.Errorf("model: step sequence %d: token id %d outside vocab [0, %d)", i, id, m.d.vocab)
			}
		}
		spans[i] = span{row0: rows, rows: n, pos0: s.Seq.Len, paged: c, seq: s.Seq}
		rows += n
	}
	if m.canDecode(seqs) {
		return m.decode(c, seqs)
	}
	for i, s := range seqs {
		if len(s.Draft) > 0 {
			return nil, fmt.Errorf("model: step sequence %d: a draft takes the decode path, which this step cannot (%d rows, or a prompt chunk beside it)", i, decodeRows(seqs))
		}
	}
	for i, s := range seqs {
		if !s.Fed {
			ids = append(ids, s.Tokens...)
			continue
		}
		// The general path takes its ids from the host.
		tok, err := c.fedToken(s.Seq)
		if err != nil {
			return nil, fmt.Errorf("model: step sequence %d: %w", i, err)
		}
		ids = append(ids, tok)
	}
	if err := c.index(spans, rows, m.d.headDim <= 256 && m.d.heads/m.d.kvHeads <= 8); err != nil {
		return nil, err
	}
	x, err := m.run(spans, ids, observer{})
	if err != nil {
		return nil, err
	}
	b := m.b
	all, scores, err := m.allLogits(x, spans, seqs)
	if err != nil {
		return nil, err
	}
	var want []int
	for i, s := range seqs {
		if s.Logits || s.Sample != nil {
			m.d.norm(b, b.View(m.s.xn, len(want), 1), b.View(x, spans[i].row0+spans[i].rows-1, 1), m.norm)
			want = append(want, i)
		}
	}
	if len(want) == 0 {
		c.noteDraws(nil, nil, false)
		return &Pending{seqs: len(seqs), logits: all, scores: scores, err: b.Sync()}, nil
	}
	if err := m.ensureLogits(len(want)); err != nil {
		return nil, err
	}
	lg := b.View(m.logits, 0, len(want))
	m.headInto(lg, b.View(m.s.xn, 0, len(want)))
	at := make([]int, len(seqs))
	for i := range at {
		at[i] = -1
	}
	for j, i := range want {
		at[i] = j
	}
	p, err := m.readOut(c, lg, seqs, at)
	if err != nil {
		return nil, err
	}
	for i, rows := range all {
		if rows != nil {
			p.logits[i] = rows
		}
	}
	p.scores = scores
	return p, nil
}

// scoreRows bounds the rows of one head MatMul of allLogits, and so the
// logits buffer a prompt's scoring needs (256 × 32,002 fp32: 33 MB).
const scoreRows = 256

// allLogits returns the logits of every row of the sequences of a step
// that ask for them (AllLogits; nil for the others), or, for those that ask
// for scores (Score) on a backend that scores rows, their rows' scores
// instead. The head runs over at most scoreRows rows at a time. It uses
// the norm buffer's first rows, which the last rows' logits take
// afterwards.
func (m *Model) allLogits(x runtime.Tensor, spans []span, seqs []StepSeq) ([][]float32, [][]RowScore, error) {
	b, V := m.b, m.d.vocab
	rs, _ := b.(runtime.RowScorer)
	if rs != nil && !rs.ScoresRows() {
		rs = nil
	}
	out := make([][]float32, len(seqs))
	var scores [][]RowScore
	for i, s := range seqs {
		if !s.AllLogits {
			continue
		}
		sp := spans[i]
		if s.Score != nil && rs != nil {
			n := len(s.Score.Targets)
			if n > sp.rows || s.Score.Top < 0 {
				return nil, nil, fmt.Errorf("model: step sequence %d: %d targets to score in %d rows, the top %d", i, n, sp.rows, s.Score.Top)
			}
			if scores == nil {
				scores = make([][]RowScore, len(seqs))
			}
			scores[i] = make([]RowScore, n)
			for r0 := 0; r0 < n; r0 += scoreRows {
				c := min(n-r0, scoreRows)
				xn := b.View(m.s.xn, 0, c)
				m.d.norm(b, xn, b.View(x, sp.row0+r0, c), m.norm)
				if err := m.ensureLogits(c); err != nil {
					return nil, nil, err
				}
				lg := b.View(m.logits, 0, c)
				m.headInto(lg, xn)
				k := s.Score.Top
				lp, ids, top, err := rs.ScoreRows(lg, s.Score.Targets[r0:r0+c], k)
				if err != nil {
					return nil, nil, fmt.Errorf("model: scores: %w", err)
				}
				for r := range c {
					sc := RowScore{Logprob: lp[r]}
					if k > 0 {
						sc.Top = make([]TokenLogprob, 0, k)
						for j := range k {
							// (Id -1: the row has fewer than k numbers.)
							if id := ids[r*k+j]; id >= 0 {
								sc.Top = append(sc.Top, TokenLogprob{Token: int(id), Logprob: top[r*k+j]})
							}
						}
					}
					scores[i][r0+r] = sc
				}
			}
			continue
		}
		rows := make([]float32, sp.rows*V)
		for r0 := 0; r0 < sp.rows; r0 += scoreRows {
			n := min(sp.rows-r0, scoreRows)
			xn := b.View(m.s.xn, 0, n)
			m.d.norm(b, xn, b.View(x, sp.row0+r0, n), m.norm)
			if err := m.logitsOf(xn, rows[r0*V:(r0+n)*V]); err != nil {
				return nil, nil, err
			}
		}
		out[i] = rows
	}
	return out, scores, nil
}

// fedToken is the token seq drew in the last step issued on c, on the
// host (waiting for it); a draw that found a non-finite logit gives 0.
func (c *PagedCache) fedToken(seq *kvcache.Seq) (int, error) {
	j, ok := c.drawn[seq]
	if !ok || c.last == nil {
		return 0, errors.New("fed the last draw's token, and the last step drew none for it")
	}
	if _, _, err := c.last.Wait(); err != nil {
		return 0, err
	}
	return max(int(c.last.drawn[j]), 0), nil
}

// noteDraws records p as the last step issued on c, whose draws (seqs
// drawing, in order) are in c.fed when onDevice.
func (c *PagedCache) noteDraws(p *Pending, seqs []StepSeq, onDevice bool) {
	c.last, c.onDevice = p, onDevice
	clear(c.drawn)
	if p == nil {
		return
	}
	if c.drawn == nil {
		c.drawn = map[*kvcache.Seq]int{}
	}
	for j, i := range p.draws {
		if len(seqs[i].Draft) == 0 { // (a draft's next token is the caller's choice)
			c.drawn[seqs[i].Seq] = j
		}
	}
}
