package grammar

import (
	"fmt"
	"sync"

	"github.com/gptqtool/gptqtool/runtime/sample"
)

// MaxMemo bounds the masks a Grammar keeps (4 KB each for a vocabulary of
// 32,000); past it the memo starts over.
const MaxMemo = 1024

// Grammar is a compiled schema over a vocabulary.
type Grammar struct {
	root *node
	v    *Vocab
	raw  bool // the value is a text as it is, with no whitespace (Choice)

	mu   sync.Mutex
	memo map[string][]uint64
}

func newGrammar(root *node, v *Vocab) *Grammar {
	return &Grammar{root: root, v: v, memo: map[string][]uint64{}}
}

// Matcher follows one sequence's tokens through g.
type Matcher struct {
	g  *Grammar
	st state
}

// NewMatcher returns a Matcher at the start of the value.
func (g *Grammar) NewMatcher() *Matcher {
	f := &frame{up: done, n: g.root, op: opValue}
	if g.raw {
		f.space = spaceRaw
	}
	return &Matcher{g: g, st: state{f}}
}

// Fork returns a copy of m at the same place, which moves on its own
// (sample.Forker): the states' frames are immutable and shared.
func (m *Matcher) Fork() sample.Matcher { return &Matcher{g: m.g, st: m.st} }

// Allowed returns the tokens that may come next, as a bitmask over the
// vocabulary (bit id%64 of word id/64; shared: the caller must not change
// it), and whether the value is complete, so that a stop token may come
// (and, where mask is all zero, must).
func (m *Matcher) Allowed() (mask []uint64, end bool) {
	return m.g.mask(m.st), m.st.accepts()
}

// Accept moves m past token id; a token the grammar does not allow here
// is an error, and m is left unchanged.
func (m *Matcher) Accept(id int) error {
	t := m.g.v.Text(id)
	if t == "" {
		return fmt.Errorf("grammar: token %d has no text the grammar allows", id)
	}
	if i := m.advance(t); i >= 0 {
		return fmt.Errorf("grammar: token %d (%q) cannot follow here (byte %d)", id, t, i)
	}
	return nil
}

// AcceptText moves m past bytes t (a test's or a prefix's text), as Accept.
func (m *Matcher) AcceptText(t string) error {
	if i := m.advance(t); i >= 0 {
		return fmt.Errorf("grammar: %q cannot follow here (byte %d)", t, i)
	}
	return nil
}

// advance moves m past bytes t, or returns the index of the first byte
// that cannot follow (-1: none) and leaves m unchanged.
func (m *Matcher) advance(t string) int {
	st := m.st
	for i := 0; i < len(t); i++ {
		if st = st.step(nil, t[i], nil); len(st) == 0 {
			return i
		}
	}
	m.st = st
	return -1
}

// mask returns the memoized mask of state s, walking the trie on a miss.
func (g *Grammar) mask(s state) []uint64 {
	k := s.key()
	g.mu.Lock()
	m, ok := g.memo[k]
	g.mu.Unlock()
	if ok {
		return m
	}
	m = make([]uint64, (g.v.size+63)/64)
	w := walker{m: m, t: &g.v.all}
	if f := s[0]; len(s) == 1 && f.op == opString && f.phase == strChar && f.n.re == nil {
		// Inside a string: the plain tokens that fit, then a walk of
		// the others. (A string with a pattern walks them all: its
		// automaton must take every byte.)
		if f.n.maxLen < 0 {
			copy(m, g.v.plainMask)
		} else {
			left := int32(f.n.maxLen) - f.a
			for i, id := range g.v.plain {
				if g.v.runes[i] <= left {
					m[id>>6] |= 1 << (id & 63)
				}
			}
		}
		w.t = &g.v.rest
	}
	w.walk(0, s, 0)
	g.mu.Lock()
	if len(g.memo) >= MaxMemo {
		clear(g.memo)
	}
	g.memo[k] = m
	g.mu.Unlock()
	return m
}

// walker walks the trie for a mask: its frames from one arena, its
// states in one slice a depth of the trie (a state lives only while the
// walk is below its node).
type walker struct {
	t      *trie
	m      []uint64
	a      arena
	states []state
}

// walk sets in w.m the tokens below trie node i (at depth d) that state s
// accepts, leaving the subtrees whose first byte it refuses.
func (w *walker) walk(i int32, s state, d int) {
	v := w.t
	if d == len(w.states) {
		w.states = append(w.states, nil)
	}
	for e := v.first[i]; e < v.first[i+1]; e++ {
		next := s.step(&w.a, v.edgeByte[e], w.states[d])
		w.states[d] = next
		if len(next) == 0 {
			continue
		}
		to := v.edgeTo[e]
		for _, id := range v.ids[v.idFirst[to]:v.idFirst[to+1]] {
			w.m[id>>6] |= 1 << (id & 63)
		}
		w.walk(to, next, d+1)
	}
}
