package grammar

import (
	"strings"
	"testing"
)

// blockTexts is a small vocabulary of a reasoning model's replies: the
// markers whole and split, text, and the pieces of a Hermes call.
var blockTexts = []string{"<think>", "</think>", "<th", "ink>", "</th", "\n", "\n\n", "Let me think.", " ok", "<tool_call>", "<tool_call>\n",
	"{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}", "\n</tool_call>", "</think>\n\n<tool_call>\n", "</think> x", "{", "<", "think>\n</think>"}

// TestBlock follows texts through a Hermes grammar after a <think>
// block, opened by the prompt or not, and through a Lazy one: the block
// free, a trigger inside it not counting, the value after it and
// whitespace; the output's end where the value is complete (or, lazily,
// anywhere but inside a call).
func TestBlock(t *testing.T) {
	v := newVocab(blockTexts)
	g := hermesCalls(t, v)
	call := "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>"
	for _, c := range []struct {
		name   string
		opened bool
		lazy   bool
		text   string
		ok     bool
		end    bool
		in     bool // InBlock after the text
	}{
		{"a call alone", false, false, call, true, true, false},
		{"a block, then a call", false, false, "<think>\nLet me think.\n</think>\n\n" + call, true, true, false},
		{"a block without space", false, false, "<think></think>" + call, true, true, false},
		{"inside the block", false, false, "<think>\nLet me think. <tool_call>", true, false, true},
		{"the block not closed", false, false, "<think>\nLet me think.", true, false, true},
		{"text before the block", false, false, "ok<think></think>" + call, false, false, false},
		{"whitespace before the block", false, false, "\n<think></think>\n" + call, true, true, false},
		{"whitespace alone", false, false, " \n", true, false, false},
		{"whitespace before a call", false, false, "\n" + call, false, false, false},
		{"text after the block", false, false, "<think></think>\n\nok" + call, false, false, false},
		{"a second block", false, false, "<think></think><think></think>" + call, false, false, false},
		{"opened: reasoning, then a call", true, false, "Let me think.\n</think>\n\n" + call, true, true, false},
		{"opened: the block must close first", true, false, call, true, false, true},
		{"opened: closed at once", true, false, "</think>" + call, true, true, false},
		{"opened: text after the close", true, false, "</think> x", false, false, false},
		{"lazy: text after the block", false, true, "<think>\nLet me think.\n</think>\n\nok", true, true, false},
		{"lazy: a trigger in the block", false, true, "<think><tool_call> ok</think>ok", true, true, false},
		{"lazy: a call after the block", false, true, "<think>\n</think>\n\nok\n" + call, true, true, false},
		{"lazy: in a call after the block", false, true, "<think>\n</think>\n\n<tool_call>\n{", true, false, false},
		{"lazy, opened: inside", true, true, "Let me think.", true, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b *Block
			if c.lazy {
				b = g.Lazy("<tool_call>", false).After("<think>", "</think>", c.opened)
			} else {
				b = g.After("<think>", "</think>", c.opened)
			}
			// Whole, and byte by byte.
			for _, split := range []bool{false, true} {
				m := b.NewMatcher()
				var err error
				if split {
					for i := 0; i < len(c.text) && err == nil; i++ {
						err = m.AcceptText(c.text[i : i+1])
					}
				} else {
					err = m.AcceptText(c.text)
				}
				if (err == nil) != c.ok {
					t.Fatalf("split %v: error %v, want ok %v", split, err, c.ok)
				}
				if !c.ok {
					continue
				}
				if _, end := m.Allowed(); end != c.end || m.InBlock() != c.in {
					t.Errorf("split %v: end %v, in the block %v; want %v, %v", split, end, m.InBlock(), c.end, c.in)
				}
			}
		})
	}
}

// TestBlockMasks: along token sequences through each kind of Block, a
// token is in the mask exactly where the matcher accepts it (the masks
// are walked phase by phase, Accept reads the text).
func TestBlockMasks(t *testing.T) {
	v := newVocab(blockTexts)
	g := hermesCalls(t, v)
	id := func(s string) int {
		for i, x := range blockTexts {
			if x == s {
				return i
			}
		}
		t.Fatalf("no token %q", s)
		return -1
	}
	seqs := [][]string{
		{"<think>", "Let me think.", "</think>", "\n\n", "<tool_call>\n", "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}", "\n</tool_call>"},
		{"<th", "ink>", "\n", "</th", " ok", "</think>\n\n<tool_call>\n"},
		{"<", "think>\n</think>", "<tool_call>"},
		{"<tool_call>\n", "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}"},
	}
	blocks := map[string]*Block{
		"optional": g.After("<think>", "</think>", false),
		"opened":   g.After("<think>", "</think>", true),
		"lazy":     g.Lazy("<tool_call>", false).After("<think>", "</think>", false),
	}
	for name, b := range blocks {
		for _, seq := range seqs {
			t.Run(name+"/"+strings.Join(seq, "|"), func(t *testing.T) {
				m := b.NewMatcher()
				for _, tok := range seq {
					mask, _ := m.Allowed()
					for i, x := range blockTexts {
						f := m.Fork().(*BlockMatcher)
						accepted := f.Accept(i) == nil
						if in := mask[i>>6]>>(i&63)&1 == 1; in != accepted {
							t.Errorf("before %q: %q in the mask %v, accepted %v", tok, x, in, accepted)
						}
					}
					if err := m.Accept(id(tok)); err != nil {
						return // (the sequence leaves this block's language here)
					}
				}
			})
		}
	}
}
