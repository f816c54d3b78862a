package grammar

import (
	"fmt"
	"sync"
)

// MaxMemo bounds the masks a Grammar keeps; past it the memo starts over.
const MaxMemo = 4096

// Grammar is a compiled schema over a vocabulary.
type Grammar struct {
	root  *node
	nodes int
	v     *Vocab

	mu   sync.Mutex
	memo map[string][]uint64
}

func newGrammar(root *node, nodes []*node, v *Vocab) *Grammar {
	return &Grammar{root: root, nodes: len(nodes), v: v, memo: map[string][]uint64{}}
}

// Vocab returns the vocabulary g constrains.
func (g *Grammar) Vocab() *Vocab { return g.v }

// Matcher follows one sequence's tokens through g.
type Matcher struct {
	g  *Grammar
	st state
}

// NewMatcher returns a Matcher at the start of the value.
func (g *Grammar) NewMatcher() *Matcher {
	return &Matcher{g: g, st: state{{up: done, n: g.root, op: opValue}}}
}

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
	st := m.st
	for i := 0; i < len(t); i++ {
		if st = st.step(t[i]); len(st) == 0 {
			return fmt.Errorf("grammar: token %d (%q) cannot follow here (byte %d)", id, t, i)
		}
	}
	m.st = st
	return nil
}

// AcceptText moves m past bytes t (a test's or a prefix's text), as Accept.
func (m *Matcher) AcceptText(t string) error {
	st := m.st
	for i := 0; i < len(t); i++ {
		if st = st.step(t[i]); len(st) == 0 {
			return fmt.Errorf("grammar: %q cannot follow here (byte %d)", t, i)
		}
	}
	m.st = st
	return nil
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
	g.walk(0, s, m)
	g.mu.Lock()
	if len(g.memo) >= MaxMemo {
		clear(g.memo)
	}
	g.memo[k] = m
	g.mu.Unlock()
	return m
}

// walk sets in m the tokens below trie node i that state s accepts,
// leaving the subtrees whose first byte it refuses.
func (g *Grammar) walk(i int32, s state, m []uint64) {
	v := g.v
	for e := v.first[i]; e < v.first[i+1]; e++ {
		next := s.step(v.edgeByte[e])
		if len(next) == 0 {
			continue
		}
		to := v.edgeTo[e]
		for _, id := range v.ids[v.idFirst[to]:v.idFirst[to+1]] {
			m[id>>6] |= 1 << (id & 63)
		}
		g.walk(to, next, m)
	}
}
