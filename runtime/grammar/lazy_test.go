package grammar

import (
	"testing"
)

// TestLazy follows token sequences through a Lazy Hermes grammar over a
// small vocabulary: free text first, every token allowed but those that
// complete the trigger with bytes the grammar refuses; from the trigger
// on the grammar's mask; the end allowed in free text and where the
// grammar completes.
func TestLazy(t *testing.T) {
	texts := []string{"Hi", " there", "<tool", "_call>", "<tool_call>", "\n", "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}",
		"\n</tool_call>", "<tool_call>\n", "<tool_call> x", "_call> x", "", "{"}
	v := newVocab(texts)
	id := func(s string) int {
		for i, x := range texts {
			if x == s {
				return i
			}
		}
		t.Fatalf("no token %q", s)
		return -1
	}
	in := func(mask []uint64, i int) bool { return mask[i>>6]>>(i&63)&1 == 1 }
	l := hermesCalls(t, v).Lazy("<tool_call>", false)
	for _, c := range []struct {
		name    string
		tokens  []string
		allowed []string // in the mask after the tokens
		refused []string
		end     bool
		fired   bool
	}{
		{"start", nil, []string{"Hi", "<tool", "<tool_call>", "<tool_call>\n", "{", ""}, []string{"<tool_call> x"}, true, false},
		{"free text", []string{"Hi", " there"}, []string{"Hi", "<tool_call>", "_call> x"}, []string{"<tool_call> x"}, true, false},
		{"the trigger's start", []string{"Hi", "<tool"}, []string{"_call>", "Hi"}, []string{"_call> x"}, true, false},
		{"the trigger split", []string{"Hi", "<tool", "_call>"}, []string{"\n"}, []string{"Hi", "_call>", "{"}, false, true},
		{"the trigger token", []string{"<tool_call>"}, []string{"\n"}, []string{"Hi", ""}, false, true},
		{"in the call", []string{"<tool_call>\n", "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}"}, []string{"\n</tool_call>", "\n"}, []string{"Hi", "<tool_call>\n", "{"}, false, true},
		{"a call", []string{"Hi", "<tool_call>\n", "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}", "\n</tool_call>"}, []string{"\n"}, []string{"Hi", "<tool_call>\n"}, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := l.NewMatcher()
			for _, tok := range c.tokens {
				if err := m.Accept(id(tok)); err != nil {
					t.Fatalf("Accept(%q): %v", tok, err)
				}
			}
			mask, end := m.Allowed()
			for _, s := range c.allowed {
				if !in(mask, id(s)) {
					t.Errorf("%q not allowed", s)
				}
			}
			for _, s := range c.refused {
				if in(mask, id(s)) {
					t.Errorf("%q allowed", s)
				}
			}
			if end != c.end || m.Triggered() != c.fired {
				t.Errorf("end %v, triggered %v; want %v, %v", end, m.Triggered(), c.end, c.fired)
			}
			f := m.Fork().(*LazyMatcher)
			if f.Triggered() != m.Triggered() {
				t.Error("a fork triggered otherwise")
			}
		})
	}

	// At the start only (Llama 3's bare JSON call): the trigger after
	// whitespace counts, after text not.
	g, err := Compile([]byte(callSchema), v)
	if err != nil {
		t.Fatal(err)
	}
	start := g.Lazy("{", true)
	m := start.NewMatcher()
	if mask, _ := m.Allowed(); !in(mask, id("{")) || !in(mask, id("Hi")) {
		t.Error("{ or text refused at the start")
	}
	if err := m.Accept(id("\n")); err != nil {
		t.Fatal(err)
	}
	if err := m.Accept(id("{")); err != nil || !m.Triggered() {
		t.Fatalf("{ after a newline: %v, triggered %v", err, m.Triggered())
	}
	m = start.NewMatcher()
	for _, s := range []string{"Hi", "{"} {
		if err := m.Accept(id(s)); err != nil {
			t.Fatal(err)
		}
	}
	if mask, end := m.Allowed(); m.Triggered() || !end || !in(mask, id("<tool_call> x")) {
		t.Errorf("after text, { triggered %v (end %v)", m.Triggered(), end)
	}
}
