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

// argsSchema is two tools' arguments under $defs, the root the union of
// both (which makes the references used), as the server writes it for a
// format whose call's name is text.
const argsSchema = `{"$defs": {
	"w": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false},
	"a": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"], "additionalProperties": false}},
	"anyOf": [{"$ref": "#/$defs/w"}, {"$ref": "#/$defs/a"}]}`

// mistralCalls is Mistral's v11 calls: each "[TOOL_CALLS]" NAME, an
// optional "[CALL_ID]" and 9 letters and digits, "[ARGS]" and that tool's
// arguments; one or more.
func mistralCalls(t *testing.T, v *Vocab) *Grammar {
	t.Helper()
	var alts [][]Part
	for _, tool := range []struct{ name, ref string }{{"get_weather", "#/$defs/w"}, {"add", "#/$defs/a"}} {
		alts = append(alts,
			[]Part{{Text: "[TOOL_CALLS]" + tool.name + "[ARGS]"}, {Ref: tool.ref}},
			[]Part{{Text: "[TOOL_CALLS]" + tool.name + "[CALL_ID]"}, {Pattern: "[a-zA-Z0-9]{9}"}, {Text: "[ARGS]"}, {Ref: tool.ref}})
	}
	call := []Part{{Alts: alts}}
	g, err := new(Compiler).Sequence([]byte(argsSchema), call, call, v)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestSequenceAlternatives: a part that is one of several sequences,
// each with its tool's arguments (Ref) and an id (Pattern): the
// arguments are the named tool's only, the id is a whole match, and the
// loop repeats the choice.
func TestSequenceAlternatives(t *testing.T) {
	g := mistralCalls(t, newVocab(nil))
	one := `[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}`
	two := one + `[TOOL_CALLS]add[CALL_ID]abc123DEF[ARGS]{"a":1,"b":2.5}`
	for _, c := range []struct {
		name, text   string
		ok, complete bool
	}{
		{"one call", one, true, true},
		{"two calls, an id", two, true, true},
		{"three calls", two + one, true, true},
		{"a prefix", one[:20], true, false},
		{"in the id", `[TOOL_CALLS]add[CALL_ID]abc12`, true, false},
		{"a short id", `[TOOL_CALLS]add[CALL_ID]abc12[ARGS]`, false, false},
		{"a long id", `[TOOL_CALLS]add[CALL_ID]abc123DEFG`, false, false},
		{"arguments of another tool", `[TOOL_CALLS]add[ARGS]{"city"`, false, false},
		{"a tool not given", `[TOOL_CALLS]sub[ARGS]`, false, false},
		{"space before the arguments", `[TOOL_CALLS]add[ARGS] {`, false, false},
		{"text after", one + " ok", false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ok, complete := matches(t, g, c.text)
			if ok != c.ok || complete != c.complete {
				t.Errorf("%q: accepted %v, complete %v; want %v, %v", c.text, ok, complete, c.ok, c.complete)
			}
		})
	}
	for _, bad := range [][]Part{{{Ref: "#/$defs/x"}}, {{Alts: [][]Part{}}}, {{Pattern: "("}}} {
		if _, err := new(Compiler).Sequence([]byte(argsSchema), bad, nil, newVocab(nil)); err == nil {
			t.Errorf("a sequence %+v compiled", bad)
		}
	}
}

// TestSequenceAlternativesMask: the masks along two such calls against the
// real openchat vocabulary, byte by byte.
func TestSequenceAlternativesMask(t *testing.T) {
	v, _ := openchatVocab(t)
	g := mistralCalls(t, v)
	first := `[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}`
	text := first + `[TOOL_CALLS]add[CALL_ID]abc123DEF[ARGS]{"a": 1, "b": 2}`
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

// TestSequenceOptional: an alternative of no parts makes a part optional
// (Qwen3-Coder's optional parameters), before a text and at the end.
func TestSequenceOptional(t *testing.T) {
	opt := Part{Alts: [][]Part{{}, {{Text: "<p=unit>\n"}, {Pattern: "celsius|fahrenheit"}, {Text: "\n</p>\n"}}}}
	g, err := new(Compiler).Sequence([]byte(argsSchema), []Part{{Text: "<f>\n"}, opt, {Text: "</f>"}, opt}, nil, newVocab(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		text         string
		ok, complete bool
	}{
		{"<f>\n</f>", true, true},
		{"<f>\n<p=unit>\ncelsius\n</p>\n</f>", true, true},
		{"<f>\n</f><p=unit>\nfahrenheit\n</p>\n", true, true},
		{"<f>\n</f><p=unit>\nfahrenheit", true, false},
		{"<f>\n<p=unit>\nkelvin", false, false},
		{"<f>\n<p=unit>\ncelsius\n</p>\n<p=unit>", false, false},
	} {
		ok, complete := matches(t, g, c.text)
		if ok != c.ok || complete != c.complete {
			t.Errorf("%q: accepted %v, complete %v; want %v, %v", c.text, ok, complete, c.ok, c.complete)
		}
	}
}
