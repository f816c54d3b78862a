package grammar

import (
	"errors"
	"strings"
	"sync"

	"github.com/gptqtool/gptqtool/runtime/sample"
)

// Lazy is a Grammar that applies from a trigger on (llama.cpp's lazy
// grammars): a model's reply may be free text, and once the text
// generated holds trigger, the text from the trigger on (the trigger
// included) must be a value of the Grammar, which then ends the output
// (tool_choice "auto": a reply may call tools, in the model's format,
// after text or instead of it). With atStart the trigger counts only at
// the start of the output, after whitespace at most (Llama 3's calls are
// the whole reply); text that starts otherwise stays free.
//
// Before the trigger, every token is allowed but one whose text would
// complete the trigger with bytes after it that the Grammar refuses, so
// that a trigger generated can always go on; the output may end anywhere
// there. A Lazy is safe for concurrent use.
type Lazy struct {
	g       *Grammar
	trigger string
	atStart bool

	mu   sync.Mutex
	memo map[int][]uint64 // free masks, by the trigger's bytes matched
}

// Lazy returns g applied from trigger on; trigger must not be empty.
func (g *Grammar) Lazy(trigger string, atStart bool) *Lazy {
	if trigger == "" {
		panic("grammar: Lazy: empty trigger")
	}
	return &Lazy{g: g, trigger: trigger, atStart: atStart, memo: map[int][]uint64{}}
}

// LazyMatcher follows one sequence's tokens through a Lazy.
type LazyMatcher struct {
	l *Lazy
	// Before the trigger: k bytes of it end the text so far; dead: with
	// atStart, text other than whitespace and the trigger's start came
	// (the trigger can no longer count).
	k    int
	dead bool
	m    *Matcher // from the trigger on
}

// NewMatcher returns a LazyMatcher at the start of the output.
func (l *Lazy) NewMatcher() *LazyMatcher { return &LazyMatcher{l: l} }

// Triggered says whether the trigger came: the Grammar applies.
func (m *LazyMatcher) Triggered() bool { return m.m != nil }

// Fork returns a copy of m that moves on its own (sample.Forker).
func (m *LazyMatcher) Fork() sample.Matcher {
	c := *m
	if m.m != nil {
		c.m = m.m.Fork().(*Matcher)
	}
	return &c
}

// Allowed returns the tokens that may come next and whether the output
// may end (as Matcher.Allowed).
func (m *LazyMatcher) Allowed() (mask []uint64, end bool) {
	if m.m != nil {
		return m.m.Allowed()
	}
	return m.l.freeMask(m.k, m.dead), true
}

// Accept moves m past token id.
func (m *LazyMatcher) Accept(id int) error {
	if m.m != nil {
		return m.m.Accept(id)
	}
	return m.AcceptText(m.l.g.v.Text(id))
}

// AcceptText moves m past bytes t, as Accept.
func (m *LazyMatcher) AcceptText(t string) error {
	if m.m != nil {
		return m.m.AcceptText(t)
	}
	k, dead, rest, fired := m.l.scan(m.k, m.dead, t)
	if !fired {
		m.k, m.dead = k, dead
		return nil
	}
	inner := m.l.g.NewMatcher()
	if err := inner.AcceptText(rest); err != nil {
		return errors.New("grammar: after the trigger: " + err.Error())
	}
	m.m = inner
	return nil
}

// scan reads text t after a text whose last k bytes are the trigger's
// first (dead: see LazyMatcher): the state after it, or, where the
// trigger completes, the text from the trigger on.
func (l *Lazy) scan(k int, dead bool, t string) (int, bool, string, bool) {
	if dead {
		return 0, true, "", false
	}
	tr := l.trigger
	if l.atStart {
		s := t
		if k == 0 {
			s = strings.TrimLeft(s, " \t\r\n")
		}
		s = tr[:k] + s
		switch {
		case strings.HasPrefix(s, tr):
			return 0, false, s, true
		case strings.HasPrefix(tr, s):
			return len(s), false, "", false
		}
		return 0, true, "", false
	}
	s := tr[:k] + t
	if i := strings.Index(s, tr); i >= 0 {
		return 0, false, s[i:], true
	}
	// The longest end of s that begins the trigger.
	for n := min(len(tr)-1, len(s)); n > 0; n-- {
		if strings.HasSuffix(s, tr[:n]) {
			return n, false, "", false
		}
	}
	return 0, false, "", false
}

// freeMask is the mask before the trigger: every token, but those that
// complete it with bytes the Grammar refuses after.
func (l *Lazy) freeMask(k int, dead bool) []uint64 {
	key := k
	if dead {
		key = -1
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if m, ok := l.memo[key]; ok {
		return m
	}
	v := l.g.v
	m := make([]uint64, (v.size+63)/64)
	for id := range v.size {
		if _, _, rest, fired := l.scan(k, dead, v.text[id]); fired && l.g.NewMatcher().AcceptText(rest) != nil {
			continue
		}
		m[id>>6] |= 1 << (id & 63)
	}
	l.memo[key] = m
	return m
}
