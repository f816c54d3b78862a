package grammar

import (
	"testing"
)

// callSchema is a tool call as Hermes' format writes it: a name of the
// tools, and that tool's arguments.
const callSchema = `{"anyOf": [
	{"type": "object", "properties": {"name": {"const": "get_weather"}, "arguments": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}, "required": ["name", "arguments"], "additionalProperties": false},
	{"type": "object", "properties": {"name": {"const": "add"}, "arguments": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"], "additionalProperties": false}}, "required": ["name", "arguments"], "additionalProperties": false}]}`

// hermesCalls is Hermes' (Qwen's) tool calls: one or more, each in its
// tags, a newline between.
func hermesCalls(t *testing.T, v *Vocab) *Grammar {
	t.Helper()
	call := []Part{{Text: "<tool_call>\n"}, {Value: true}, {Text: "\n</tool_call>"}}
	loop := append([]Part{{Text: "\n"}}, call...)
	g, err := new(Compiler).Sequence([]byte(callSchema), call, loop, v)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestSequence: texts and values in order, the loop any number of
// times, no whitespace around the values but the texts', and the value
// complete only where the parts (or a round of the loop) are.
func TestSequence(t *testing.T) {
	g := hermesCalls(t, newVocab(nil))
	one := "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"
	two := one + "\n<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":2.5}}\n</tool_call>"
	for _, c := range []struct {
		name, text   string
		ok, complete bool
	}{
		{"one call", one, true, true},
		{"two calls", two, true, true},
		{"three calls", two + "\n" + one, true, true},
		{"a prefix", one[:30], true, false},
		{"between calls", one + "\n", true, false},
		{"the second's tag", one + "\n<tool_call>\n", true, false},
		{"space before the text", " " + one, false, false},
		{"space before the value", "<tool_call>\n {\"name\": \"add\"", false, false},
		{"newline after the value", "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n\n", false, false},
		{"a tool not given", "<tool_call>\n{\"name\": \"sub\"", false, false},
		{"arguments of another tool", "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"city\"", false, false},
		{"text after", one + " ok", false, false},
		{"no tag", "{\"name\": \"add\"", false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ok, complete := matches(t, g, c.text)
			if ok != c.ok || complete != c.complete {
				t.Errorf("%q: accepted %v, complete %v; want %v, %v", c.text, ok, complete, c.ok, c.complete)
			}
		})
	}
	if _, err := new(Compiler).Sequence([]byte(callSchema), nil, nil, newVocab(nil)); err == nil {
		t.Error("a sequence of no parts compiled")
	}
	if _, err := new(Compiler).Sequence([]byte(callSchema), []Part{{Text: ""}, {Value: true}}, nil, newVocab(nil)); err == nil {
		t.Error("a sequence with an empty text compiled")
	}
}

// TestSequenceMask: the mask of a sequence's states against the bytes of
// every token of the real openchat vocabulary accepted one by one, along
// two calls.
func TestSequenceMask(t *testing.T) {
	v, _ := openchatVocab(t)
	g := hermesCalls(t, v)
	first := "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"
	text := first + "\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>"
	m := g.NewMatcher()
	for i := 0; i <= len(text); i++ {
		if id, in, ref := maskMismatch(v, m); id >= 0 {
			t.Fatalf("after %q: token %d %q in the mask %v, accepted byte by byte %v", text[:i], id, v.Text(id), in, ref)
		}
		_, end := m.Allowed()
		if want := i == len(first) || i == len(text); end != want {
			t.Errorf("after %q: complete %v, want %v", text[:i], end, want)
		}
		if i < len(text) {
			if err := m.AcceptText(text[i : i+1]); err != nil {
				t.Fatal(err)
			}
		}
	}
}
