package server

import (
	"strings"
	"testing"
)

func TestStopper(t *testing.T) {
	for _, c := range []struct {
		stops  []string
		pieces []string
		want   string
		stop   bool
		min    int // the pieces pushed unarmed (min_tokens)
	}{
		{nil, []string{"a", "b"}, "ab", false, 0},
		{[]string{"END"}, []string{"hello E", "N", "D world"}, "hello ", true, 0},
		{[]string{"END"}, []string{"hello E", "N", "x"}, "hello ENx", false, 0},
		{[]string{"\n\n", "###"}, []string{"one\n", "\ntwo"}, "one", true, 0},
		{[]string{"ab", "b"}, []string{"xa", "b"}, "x", true, 0}, // the earliest match wins
		{[]string{"abc"}, []string{"ab"}, "ab", false, 0},        // held text is flushed at the end
		// Under min_tokens a stop string is passed; one ending past it stops.
		{[]string{"."}, []string{".", "a", "b.", "c"}, ".ab", true, 2},
		{[]string{"END"}, []string{"x E", "ND", "y"}, "x ", true, 1}, // a match may start in the unarmed text
		{[]string{"END"}, []string{"x END", "y"}, "x ENDy", false, 1},
		{[]string{"abc", "b"}, []string{"ab", "x"}, "abx", false, 1}, // held unarmed text is not matched alone
	} {
		s := stopper{stops: c.stops}
		var got strings.Builder
		for i, p := range c.pieces {
			got.WriteString(s.push(p, i >= c.min))
		}
		got.WriteString(s.flush())
		if got.String() != c.want || s.stopped != c.stop {
			t.Errorf("stops %q pieces %q: %q (stopped %v), want %q (%v)", c.stops, c.pieces, got.String(), s.stopped, c.want, c.stop)
		}
	}
}

// TestStopperFence: with a native format's trigger as the fence, stop
// strings cut the text before it and never the calls from it on (a stop
// string inside the trigger, or after it, passes), a possible start of
// the trigger waits for what follows, and Llama 3's "{" fences only at
// the reply's start.
func TestStopperFence(t *testing.T) {
	for _, c := range []struct {
		stops   []string
		fence   string
		atStart bool
		pieces  []string
		want    string
		stop    bool
	}{
		{[]string{"END"}, "<tool_call>", false, []string{"I'll look. E", "ND more"}, "I'll look. ", true},
		{[]string{"END"}, "<tool_call>", false, []string{"ok <tool_", "call>\n{\"name\": \"END\"}"}, "ok <tool_call>\n{\"name\": \"END\"}", false},
		{[]string{"call"}, "<tool_call>", false, []string{"<tool_", "call>{}"}, "<tool_call>{}", false},
		{[]string{"call"}, "<tool_call>", false, []string{"<tool_", "x call"}, "<tool_x ", true},
		{[]string{"[TOOL"}, "[TOOL_CALLS]", false, []string{"a [TOOL", "_CALLS]get[ARGS]{}"}, "a [TOOL_CALLS]get[ARGS]{}", false},
		{[]string{"[TOOL"}, "[TOOL_CALLS]", false, []string{"a [TOOL", "S] b"}, "a ", true},
		{[]string{"a"}, "[TOOL_CALLS]", false, []string{"x[TOOL_CALLS]a"}, "x[TOOL_CALLS]a", false},
		{[]string{"\n"}, "{", true, []string{"\n ", " {\"name\": \"x\",\n \"parameters\": {}}"}, "\n  {\"name\": \"x\",\n \"parameters\": {}}", false},
		{[]string{"\nm"}, "{", true, []string{"\n ", "Hi {x}\nmore"}, "\n Hi {x}", true},
		{[]string{"}"}, "{", true, []string{"text {a}"}, "text {a", true},
	} {
		s := stopper{stops: c.stops, fence: c.fence, fenceAtStart: c.atStart}
		var got strings.Builder
		for _, p := range c.pieces {
			got.WriteString(s.push(p, true))
		}
		got.WriteString(s.flush())
		if got.String() != c.want || s.stopped != c.stop {
			t.Errorf("stops %q fence %q pieces %q: %q (stopped %v), want %q (%v)", c.stops, c.fence, c.pieces, got.String(), s.stopped, c.want, c.stop)
		}
	}
}

// FuzzStopperFence: any text in three pieces, a stop string and a fence
// (at the start or anywhere): what comes out is a prefix of the text,
// all of it unless stopped; stopped, the stop string follows it, its
// first match, ending before the fence (before the reply's first
// non-space where the fence is at the start).
func FuzzStopperFence(f *testing.F) {
	f.Add("I'll look. END<tool_call>x", "END", "<tool_call>", false, uint(3), uint(9))
	f.Add("a [TOOL_CALLS]get[ARGS]{}", "[TOOL", "[TOOL_CALLS]", false, uint(7), uint(8))
	f.Add("\n {\"name\": \"x\"}", "\n", "{", true, uint(1), uint(2))
	f.Fuzz(func(t *testing.T, text, stop, fence string, atStart bool, i, j uint) {
		if stop == "" || fence == "" {
			return
		}
		a := int(i % uint(len(text)+1))
		b := a + int(j%uint(len(text)-a+1))
		s := stopper{stops: []string{stop}, fence: fence, fenceAtStart: atStart}
		var out strings.Builder
		for _, p := range []string{text[:a], text[a:b], text[b:]} {
			out.WriteString(s.push(p, true))
		}
		out.WriteString(s.flush())
		got := out.String()
		if !strings.HasPrefix(text, got) {
			t.Fatalf("%q: out %q is not a prefix", text, got)
		}
		fenceAt := strings.Index(text, fence)
		if atStart {
			fenceAt = -1
			if rest := strings.TrimLeft(text, " \t\r\n"); strings.HasPrefix(rest, fence) {
				fenceAt = 0
			}
		}
		if fenceAt < 0 {
			fenceAt = len(text)
		}
		first := strings.Index(text, stop)
		wantStop := first >= 0 && first+len(stop) <= fenceAt
		if s.stopped != wantStop || wantStop && got != text[:first] || !wantStop && got != text {
			t.Fatalf("%q stop %q fence %q (at start %v): out %q, stopped %v", text, stop, fence, atStart, got, s.stopped)
		}
	})
}
