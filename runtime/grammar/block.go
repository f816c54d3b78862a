package grammar

import (
	"errors"
	"strings"
	"sync"

	"github.com/gptqtool/gptqtool/runtime/sample"
)

// Block is a Grammar or a Lazy that applies after a block of free text
// between two markers: a reasoning model's "<think>" … "</think>", which
// comes before its answer and which a schema or a tool-call format must
// not constrain (llama.cpp's grammars for thinking models). The output is
//
//	[WHITESPACE open FREE close WHITESPACE] VALUE
//
// where FREE is any text without close, and VALUE is what the inner
// Grammar or Lazy allows (whitespace may come before open as after
// close: GLM-4.5's and 4.6's replies start "\n<think>", as their
// templates write them in history). With opened the output starts inside FREE (the
// prompt opened the block, as DeepSeek-R1's and QwQ's generation prompts
// do); without, the block is optional: the output starts with open or
// with VALUE. Inside the block every token is allowed but those that
// complete close with bytes VALUE refuses after it; the output may end
// there only where VALUE may be empty (a Lazy's free text). A Block is
// safe for concurrent use.
type Block struct {
	inner       source
	v           *Vocab
	open, close string
	opened      bool

	mu   sync.Mutex
	memo map[[2]int][]uint64 // masks of the block's phases, by phase and k
	// empty says whether VALUE may be empty: the output may then end
	// inside the block or after it (set once).
	emptyOnce sync.Once
	empty     bool
}

// source is what a Block applies after its block: a Grammar or a Lazy.
type source interface {
	newText() textMatcher
}

// textMatcher is a Matcher that also takes text.
type textMatcher interface {
	sample.Matcher
	sample.Forker
	AcceptText(t string) error
}

func (g *Grammar) newText() textMatcher { return g.NewMatcher() }
func (l *Lazy) newText() textMatcher    { return l.NewMatcher() }

// After returns g applied after a block from open to close (see Block);
// open and close must not be empty.
func (g *Grammar) After(open, close string, opened bool) *Block {
	return newBlock(g, g.v, open, close, opened)
}

// After returns l applied after a block from open to close (see Block):
// a trigger inside the block does not count.
func (l *Lazy) After(open, close string, opened bool) *Block {
	return newBlock(l, l.g.v, open, close, opened)
}

func newBlock(inner source, v *Vocab, open, close string, opened bool) *Block {
	if open == "" || close == "" {
		panic("grammar: After: empty marker")
	}
	return &Block{inner: inner, v: v, open: open, close: close, opened: opened, memo: map[[2]int][]uint64{}}
}

// Phases of a BlockMatcher.
const (
	blStart = iota // before the block: open's first k bytes, or VALUE
	blFree         // inside the block; close's first k bytes end the text
	blGap          // after close: whitespace, then VALUE
	blValue        // in VALUE
)

// BlockMatcher follows one sequence's tokens through a Block.
type BlockMatcher struct {
	b     *Block
	phase int
	k     int
	// m is VALUE's matcher: in blStart the branch without a block (nil
	// once the text left it), in blValue the value's.
	m textMatcher
	// openDead: in blStart, the text is no longer a start of open.
	openDead bool
}

// NewMatcher returns a BlockMatcher at the start of the output.
func (b *Block) NewMatcher() *BlockMatcher {
	if b.opened {
		return &BlockMatcher{b: b, phase: blFree}
	}
	return &BlockMatcher{b: b, phase: blStart, m: b.inner.newText()}
}

// InBlock says whether the text so far ends inside the block (after open,
// before close).
func (m *BlockMatcher) InBlock() bool { return m.phase == blFree }

// Fork returns a copy of m that moves on its own (sample.Forker).
func (m *BlockMatcher) Fork() sample.Matcher {
	c := *m
	if m.m != nil {
		c.m = m.m.Fork().(textMatcher)
	}
	return &c
}

// Allowed returns the tokens that may come next and whether the output
// may end (as Matcher.Allowed).
func (m *BlockMatcher) Allowed() (mask []uint64, end bool) {
	switch m.phase {
	case blValue:
		return m.m.Allowed()
	case blStart:
		if m.m == nil {
			return m.b.mask(blStart, m.k), false
		}
		direct, end := m.m.Allowed()
		if m.openDead {
			return direct, end
		}
		open := m.b.mask(blStart, m.k)
		out := make([]uint64, len(direct))
		for i := range out {
			out[i] = direct[i] | open[i]
		}
		return out, end
	}
	m.b.emptyOnce.Do(func() { _, m.b.empty = m.b.inner.newText().Allowed() })
	return m.b.mask(m.phase, m.k), m.b.empty
}

// Accept moves m past token id.
func (m *BlockMatcher) Accept(id int) error {
	t := m.b.v.Text(id)
	if t == "" {
		return errors.New("grammar: a token without text cannot follow here")
	}
	return m.AcceptText(t)
}

// AcceptText moves m past bytes t, as Accept; on an error m is unchanged.
func (m *BlockMatcher) AcceptText(t string) error {
	next, err := m.b.advance(*m, t)
	if err != nil {
		return err
	}
	*m = next
	return nil
}

// advance returns the state after text t from st (whose matcher it
// forks, leaving st as it was).
func (b *Block) advance(st BlockMatcher, t string) (BlockMatcher, error) {
	if st.m != nil {
		st.m = st.m.Fork().(textMatcher)
	}
	switch st.phase {
	case blValue:
		if err := st.m.AcceptText(t); err != nil {
			return st, err
		}
		return st, nil
	case blStart:
		direct := st.m
		if direct != nil && direct.AcceptText(t) != nil {
			direct = nil
		}
		if !st.openDead {
			s := b.open[:st.k] + t
			if st.k == 0 {
				s = strings.TrimLeft(t, " \t\r\n")
			}
			switch {
			case strings.HasPrefix(s, b.open):
				return b.advance(BlockMatcher{b: b, phase: blFree}, s[len(b.open):])
			case strings.HasPrefix(b.open, s):
				return BlockMatcher{b: b, phase: blStart, k: len(s), m: direct}, nil
			}
		}
		if direct == nil {
			return st, errors.New("grammar: the text neither opens the block nor starts the value")
		}
		return BlockMatcher{b: b, phase: blStart, m: direct, openDead: true}, nil
	case blFree:
		s := b.close[:st.k] + t
		if i := strings.Index(s, b.close); i >= 0 {
			return b.advance(BlockMatcher{b: b, phase: blGap}, s[i+len(b.close):])
		}
		// The longest end of s that begins close.
		for n := min(len(b.close)-1, len(s)); n > 0; n-- {
			if strings.HasSuffix(s, b.close[:n]) {
				return BlockMatcher{b: b, phase: blFree, k: n}, nil
			}
		}
		return BlockMatcher{b: b, phase: blFree}, nil
	}
	s := strings.TrimLeft(t, " \t\r\n")
	if s == "" {
		return st, nil
	}
	m := b.inner.newText()
	if err := m.AcceptText(s); err != nil {
		return st, errors.New("grammar: after the block: " + err.Error())
	}
	return BlockMatcher{b: b, phase: blValue, m: m}, nil
}

// mask is the mask of the block's own tokens in phase (blStart: those
// that go on opening it), k bytes of its marker matched.
func (b *Block) mask(phase, k int) []uint64 {
	key := [2]int{phase, k}
	b.mu.Lock()
	defer b.mu.Unlock()
	if m, ok := b.memo[key]; ok {
		return m
	}
	m := make([]uint64, (b.v.size+63)/64)
	st := BlockMatcher{b: b, phase: phase, k: k}
	for id := range b.v.size {
		if t := b.v.text[id]; t != "" {
			if _, err := b.advance(st, t); err == nil {
				m[id>>6] |= 1 << (id & 63)
			}
		}
	}
	b.memo[key] = m
	return m
}
