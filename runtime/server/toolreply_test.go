package server

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gptqtool/gptqtool/runtime/server/openai"
)

// scanned is what a stream of a reply's pieces makes: the response's text,
// the calls reassembled from their deltas (as a client merges them, by
// index), and whether the scanner saw the reply complete.
type scanned struct {
	content string
	pieces  []string // the content pieces, one per Feed that gave one
	calls   []openai.ToolCall
	done    bool
	form    string
}

// scan feeds pieces to a new scanner and merges what it gives, checking
// the deltas' shape on the way: a call's first delta carries its id, type
// "function", name (the grammar's never empty) and arguments "", the next
// ones only arguments.
func scan(t *testing.T, pieces []string) scanned {
	t.Helper()
	n := 0
	s := newReplyScanner(func() string { n++; return fmt.Sprintf("id%d", n) })
	var out scanned
	for _, p := range pieces {
		content, deltas := s.Feed(p)
		if content != "" {
			if !utf8.ValidString(content) {
				t.Fatalf("%q: content piece %q is not valid UTF-8", pieces, content)
			}
			out.content += content
			out.pieces = append(out.pieces, content)
		}
		for _, d := range deltas {
			switch {
			case d.Index == len(out.calls):
				if d.ID == "" || d.Type != "function" || d.Function.Arguments != "" {
					t.Fatalf("%q: call %d's first delta %+v, want id, type function, name and arguments \"\"", pieces, d.Index, d)
				}
				out.calls = append(out.calls, openai.ToolCall{ID: d.ID, Type: d.Type, Function: openai.FunctionCall{Name: d.Function.Name}})
			case d.Index == len(out.calls)-1:
				if d.ID != "" || d.Type != "" || d.Function.Name != "" || d.Function.Arguments == "" {
					t.Fatalf("%q: call %d's later delta %+v, want only arguments", pieces, d.Index, d)
				}
				out.calls[d.Index].Function.Arguments += d.Function.Arguments
			default:
				t.Fatalf("%q: a delta of call %d after %d calls", pieces, d.Index, len(out.calls))
			}
		}
	}
	out.done, out.form = s.Done(), s.Form()
	if out.done {
		// What the scanner kept equals what it sent.
		got := s.Calls()
		if len(got) != len(out.calls) {
			t.Fatalf("%q: Calls has %d calls, the deltas %d", pieces, len(got), len(out.calls))
		}
		for i := range got {
			if got[i] != out.calls[i] {
				t.Fatalf("%q: Calls()[%d] = %+v, the deltas make %+v", pieces, i, got[i], out.calls[i])
			}
		}
	}
	return out
}

// splits returns text cut in every way into two pieces and three pieces
// (at byte boundaries: UTF-8 characters are cut too), byte by byte, and
// in some random ways.
func splits(text string) [][]string {
	out := [][]string{{text}}
	for i := 1; i < len(text); i++ {
		out = append(out, []string{text[:i], text[i:]})
		for j := i + 1; j < len(text) && len(text) < 80; j++ {
			out = append(out, []string{text[:i], text[i:j], text[j:]})
		}
	}
	var bytes []string
	for i := range len(text) {
		bytes = append(bytes, text[i:i+1])
	}
	out = append(out, bytes)
	r := rand.New(rand.NewPCG(1, uint64(len(text))))
	for range 50 {
		var p []string
		for rest := text; rest != ""; {
			k := min(len(rest), 1+r.IntN(6))
			p = append(p, rest[:k])
			rest = rest[k:]
		}
		out = append(out, p)
	}
	return out
}

// TestReplyScannerResponse: the response's text streamed in any pieces is
// encoding/json's decoding of the string, and the hand-written one: escapes
// and \uXXXX split anywhere, surrogate pairs joined, lone surrogates as
// U+FFFD, multi-byte characters never cut in a piece.
func TestReplyScannerResponse(t *testing.T) {
	for _, c := range []struct{ reply, want string }{
		{`{"response": "Hello!"}`, "Hello!"},
		{`{"response":""}`, ""},
		{"{\n  \"response\" :\t\"a b\"\n}", "a b"},
		{`{"response": "a\"b\\c\/d\n\t\r\b\f"}`, "a\"b\\c/d\n\t\r\b\f"},
		{`{"response": "caf\u00e9 \u00E9t\u00e9"}`, "café été"},
		{`{"response": "smile \ud83d\ude00!"}`, "smile 😀!"},
		{`{"response": "\uD83D\uDE00\uD83D\uDE01"}`, "😀😁"},
		{`{"response": "lone \ud83d x"}`, "lone \uFFFD x"},
		{`{"response": "lone \ude00 x"}`, "lone \uFFFD x"},
		{`{"response": "high then escape \ud83d\n"}`, "high then escape \uFFFD\n"},
		{`{"response": "two highs \ud83d\ud83d\ude00"}`, "two highs \uFFFD😀"},
		{`{"response": "high at the end \ud83d"}`, "high at the end \uFFFD"},
		{`{"response": "raw UTF-8: naïve 日本語 😀"}`, "raw UTF-8: naïve 日本語 😀"},
		{`{"response": "{\"tool_calls\": []}"}`, `{"tool_calls": []}`},
	} {
		var ref struct{ Response string }
		if err := json.Unmarshal([]byte(c.reply), &ref); err != nil || ref.Response != c.want {
			t.Fatalf("%s: encoding/json decodes %q (%v), the table says %q", c.reply, ref.Response, err, c.want)
		}
		for _, pieces := range splits(c.reply) {
			got := scan(t, pieces)
			if got.content != c.want || !got.done || got.form != "response" || got.calls != nil {
				t.Fatalf("%q: content %q, done %v, form %q, calls %v; want %q, done, response, no calls", pieces, got.content, got.done, got.form, got.calls, c.want)
			}
		}
	}
	// Token by token, the text comes as it is generated: each piece that
	// completes characters gives them.
	got := scan(t, []string{`{"response": "`, "Hel", "lo", ` wor\u00`, `e9ld`, `"}`})
	if want := []string{"Hel", "lo", " wor", "éld"}; !slices.Equal(got.pieces, want) {
		t.Errorf("pieces %q, want %q", got.pieces, want)
	}
	// A reply cut short (max_tokens) gives the text so far, never a part
	// of a character or of an escape.
	got = scan(t, []string{`{"response": "ab\u00`, `e9 \ud83d`, `\ude0`})
	if got.content != "abé " || got.done {
		t.Errorf("a reply cut short: %q, done %v; want %q, not done", got.content, got.done, "abé ")
	}
	got = scan(t, []string{`{"response": "ab`, "\xc3"})
	if got.content != "ab" {
		t.Errorf("a character cut: %q, want %q", got.content, "ab")
	}
}

// TestReplyScannerCalls: tool calls streamed in any pieces reassemble into
// the calls of the whole reply: names, and arguments as json.Compact
// writes them (the hand-written text).
func TestReplyScannerCalls(t *testing.T) {
	for _, c := range []struct {
		reply string
		want  []openai.FunctionCall
	}{
		{`{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}]}`,
			[]openai.FunctionCall{{Name: "get_weather", Arguments: `{"city":"Paris","unit":"c"}`}}},
		{"{\n\t\"tool_calls\" : [ {\n  \"name\":\"add\" ,\n  \"arguments\" : { \"a\" : 1 , \"b\" : [ 2 , -3.5e2 , true , null ] }\n } , {\"name\": \"now\", \"arguments\": {}} ]\n}",
			[]openai.FunctionCall{{Name: "add", Arguments: `{"a":1,"b":[2,-3.5e2,true,null]}`}, {Name: "now", Arguments: `{}`}}},
		// Strings inside the arguments keep their escapes and spaces as
		// written (json.Compact does not touch strings).
		{`{"tool_calls": [{"name": "say", "arguments": {"text": "a , b\n\"c\" \u00e9 }]"}}]}`,
			[]openai.FunctionCall{{Name: "say", Arguments: `{"text":"a , b\n\"c\" \u00e9 }]"}`}}},
		{`{"tool_calls":[{"name":"n","arguments":{"deep":{"x":[{"y":{}}],"z":"]}"}}},{"name":"n","arguments":{}},{"name":"m","arguments":{"k":[]}}]}`,
			[]openai.FunctionCall{{Name: "n", Arguments: `{"deep":{"x":[{"y":{}}],"z":"]}"}}`}, {Name: "n", Arguments: `{}`}, {Name: "m", Arguments: `{"k":[]}`}}},
	} {
		ref, ok := parseReply(c.reply)
		if !ok || !slices.Equal(ref.calls, c.want) {
			t.Fatalf("%s: parseReply gives %+v (%v), the table says %+v", c.reply, ref.calls, ok, c.want)
		}
		for _, pieces := range splits(c.reply) {
			got := scan(t, pieces)
			if !got.done || got.form != "tool_calls" || got.content != "" || len(got.calls) != len(c.want) {
				t.Fatalf("%q: done %v, form %q, content %q, %d calls; want done, tool_calls, no content, %d calls", pieces, got.done, got.form, got.content, len(got.calls), len(c.want))
			}
			for i, call := range got.calls {
				if call.Function != c.want[i] || call.ID != fmt.Sprintf("id%d", i+1) {
					t.Fatalf("%q: call %d is %+v, want %+v with id%d", pieces, i, call, c.want[i], i+1)
				}
			}
		}
	}
	// Token by token: the header once the name is complete, then the
	// arguments as they come, without the spaces between tokens.
	n := 0
	s := newReplyScanner(func() string { n++; return "id" })
	var got [][]openai.ToolCallDelta
	for _, p := range []string{`{"tool_calls": [{"name": "get_`, `weather", "arguments": {`, ` "city"`, `: "Par`, `is" } } ] }`} {
		_, d := s.Feed(p)
		got = append(got, d)
	}
	want := [][]openai.ToolCallDelta{
		nil,
		{{Index: 0, ID: "id", Type: "function", Function: openai.FunctionDelta{Name: "get_weather"}}, {Index: 0, Function: openai.FunctionDelta{Arguments: "{"}}},
		{{Index: 0, Function: openai.FunctionDelta{Arguments: `"city"`}}},
		{{Index: 0, Function: openai.FunctionDelta{Arguments: `:"Par`}}},
		{{Index: 0, Function: openai.FunctionDelta{Arguments: `is"}`}}},
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("piece %d: deltas %+v, want %+v", i, got[i], want[i])
		}
	}
	if !s.Done() || n != 1 {
		t.Errorf("done %v with %d ids made, want done and 1", s.Done(), n)
	}
}

// FuzzReplyScanner: any text, in any two pieces, never panics the
// scanner, and where the text is a whole reply (parseReply, with
// encoding/json) the scanner makes its response or calls.
func FuzzReplyScanner(f *testing.F) {
	for _, s := range []string{`{"response": "a\u00e9\ud83d\ude00"}`, `{"tool_calls": [{"name": "f", "arguments": {"a": [1, "x"]}}]}`,
		`{"tool_calls": [{"arguments": {}, "name": "f"}]}`, `[1, {"a": "b"}]`, `{"response": "\ud83d`, `"x"`, `{"a":}`} {
		f.Add(s, uint(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, text string, cut uint) {
		k := int(cut % uint(len(text)+1))
		got := scan(t, []string{text[:k], text[k:]})
		ref, ok := parseReply(text)
		if !ok {
			return
		}
		if !got.done {
			t.Fatalf("%q: a whole reply, not done", text)
		}
		if ref.calls == nil {
			if got.content != ref.response {
				t.Fatalf("%q: content %q, encoding/json %q", text, got.content, ref.response)
			}
			return
		}
		var calls []openai.FunctionCall
		for _, c := range got.calls {
			calls = append(calls, c.Function)
		}
		if !slices.Equal(calls, ref.calls) {
			t.Fatalf("%q: calls %+v, encoding/json %+v", text, calls, ref.calls)
		}
	})
}

// TestReplyScannerNotAReply: JSON of other shapes, and text that is not
// JSON, give nothing and no panic.
func TestReplyScannerNotAReply(t *testing.T) {
	for _, text := range []string{`[1, 2, {"response": "x"}]`, `"response"`, `{"x": {"response": "no"}}`, `}}]]"\`, `{"tool_calls": 5}`, `{"tool_calls": [1, "a", {"name": 3}]}`} {
		got := scan(t, strings.SplitAfter(text, " "))
		if got.content != "" || got.calls != nil {
			t.Errorf("%q: content %q, calls %+v; want none", text, got.content, got.calls)
		}
	}
}

// TestParseReplyRepeatedArgument: arguments whose object repeats a key
// (which the grammar makes where parameters declare no properties, as
// {"type": "object"}) are still a call, whole as streamed: the arguments'
// text goes to the client as written; only keys repeated in the reply's
// own objects (the root, a call) make it no reply.
func TestParseReplyRepeatedArgument(t *testing.T) {
	const reply = `{"tool_calls": [{"name": "f", "arguments": {"a": 1, "a": 2, "b": {"c": [{"d": 0, "d": 1}]}}}]}`
	want := []openai.FunctionCall{{Name: "f", Arguments: `{"a":1,"a":2,"b":{"c":[{"d":0,"d":1}]}}`}}
	got := scan(t, []string{reply})
	if !got.done || len(got.calls) != 1 || got.calls[0].Function != want[0] {
		t.Fatalf("streamed: %+v, want %+v", got.calls, want)
	}
	m, finish := toolMessage(reply, "stop", "tool_calls")
	if finish != "tool_calls" || m.Content != nil || len(m.ToolCalls) != 1 || m.ToolCalls[0].Function != want[0] {
		t.Errorf("whole: %s %+v, content %s; want tool_calls %+v, content null", finish, m.ToolCalls, str(m.Content), want)
	}
	for _, text := range []string{
		`{"response": "a", "response": "b"}`,
		`{"tool_calls": [{"name": "f", "name": "g", "arguments": {}}]}`,
		`{"tool_calls": [{"name": "f", "arguments": {}, "arguments": {"a": 1}}]}`,
	} {
		if r, ok := parseReply(text); ok {
			t.Errorf("%s: a reply %+v, want none (the stream reads the first key, encoding/json the last)", text, r)
		}
	}
}

func TestRepeatsKey(t *testing.T) {
	for _, c := range []struct {
		text string
		want bool
	}{
		{`{"a": 1, "b": {"a": 2}, "c": [{"a": 1}, {"a": 2}]}`, false},
		{`{"a": 1, "a": 2}`, true},
		{`{"x": [{"k": "a", "k": "b"}]}`, false}, // (not its own keys)
		{`{"x": {"y": [1, {"z": 1}], "y2": 3}, "x": 0}`, true},
		{`["a", "a"]`, false},
	} {
		if got := repeatsKey(c.text); got != c.want {
			t.Errorf("repeatsKey(%s) = %v, want %v", c.text, got, c.want)
		}
	}
}
