package server

import (
	"testing"

	"github.com/gptqtool/gptqtool/runtime/server/openai"
)

// TestXMLValue: raw parameter values read by their types, as vLLM's
// qwen3_coder parser reads them.
func TestXMLValue(t *testing.T) {
	for _, c := range []struct{ text, typ, want string }{
		{"Paris", "string", `"Paris"`},
		{" 12 ", "string", `" 12 "`},
		{"12", "integer", `12`},
		{"123456789012345678901234567890", "integer", `123456789012345678901234567890`},
		{"2.5", "integer", `"2.5"`},
		{"2.5e3", "number", `2.5e3`},
		{"-0.5", "number", `-0.5`},
		{`"3"`, "number", `"\"3\""`},
		{"abc", "number", `"abc"`},
		{"True", "boolean", `true`},
		{"no", "boolean", `"no"`},
		{"NULL", "string", `null`},
		{`{"a": [1, 2]}`, "object", `{"a":[1,2]}`},
		{`[1, 2`, "array", `"[1, 2"`},
		{`"c"`, "json", `"c"`},
		{`c`, "json", `"c"`},
		{"x <y>\n\"z\"", "", `"x <y>\n\"z\""`},
	} {
		if got := xmlValue(c.text, c.typ); got != c.want {
			t.Errorf("xmlValue(%q, %q) = %s, want %s", c.text, c.typ, got, c.want)
		}
	}
}

// TestXMLGrammar: Qwen3-Coder's calls under the grammar of a request's
// tools: parameters in the schema's order, the optional ones left out or
// not, each value of its type (raw strings with code in them, an enum, a
// JSON object, a string whose maxLength makes it JSON), a call of a named
// tool only, and what is refused.
func TestXMLGrammar(t *testing.T) {
	tools := `"tools": [{"type": "function", "function": {"name": "write", "parameters": {"type": "object", "properties": {
		"path": {"type": "string"}, "mode": {"type": "string", "enum": ["w", "a"]}, "opts": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"], "additionalProperties": false},
		"tag": {"type": "string", "maxLength": 3}, "force": {"type": "boolean"}}, "required": ["path"]}}},
		{"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "number"}}, "required": ["a", "b"]}}}]`
	call := func(name string, params ...string) string {
		text := "<tool_call>\n<function=" + name + ">\n"
		for i := 0; i < len(params); i += 2 {
			text += "<parameter=" + params[i] + ">\n" + params[i+1] + "\n</parameter>\n"
		}
		return text + "</function>\n</tool_call>"
	}
	for _, c := range []struct {
		name, choice, text string
		ok, complete       bool
	}{
		{"required only", `"required"`, call("write", "path", "/tmp/x"), true, true},
		{"all, code", `"required"`, call("write", "path", "a b\n  if x < 3:\n    y = \"\\\\\"\n", "mode", "a", "opts", `{"n": 3}`, "tag", `"abc"`, "force", "true"), true, true},
		{"two calls", `"required"`, call("add", "a", "1", "b", "-2.5e3") + "\n" + call("write", "path", "p"), true, true},
		{"text, then a call", `"auto"`, "Let me see.\n\n" + call("add", "a", "-7", "b", "0"), true, true},
		{"the named tool", `{"type": "function", "function": {"name": "add"}}`, call("add", "a", "1", "b", "2"), true, true},
		{"another tool than the named", `{"type": "function", "function": {"name": "add"}}`, call("write", "path", "p"), false, false},
		{"a required parameter left out", `"required"`, call("add", "b", "2"), false, false},
		{"out of order", `"required"`, call("add", "b", "2", "a", "1"), false, false},
		{"not an integer", `"required"`, call("add", "a", "1.5", "b", "2"), false, false},
		{"not in the enum", `"required"`, call("write", "path", "p", "mode", "x"), false, false},
		{"a raw string past maxLength's JSON", `"required"`, call("write", "path", "p", "tag", "abcd"), false, false},
		{"the object's parameters", `"required"`, call("write", "path", "p", "opts", `{"m": 1}`), false, false},
		{"a parameter not declared", `"required"`, call("write", "path", "p", "size", "3"), false, false},
		{"a value that ends the parameter early", `"required"`, call("write", "path", "a\n</parameter>"), false, false},
		{"a closing tag in a line of a value", `"required"`, call("write", "path", "s = '</parameter>'"), true, true},
		{"a tool not given", `"required"`, call("sub", "a", "1"), false, false},
		{"cut", `"required"`, call("add", "a", "1", "b", "2")[:40], true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, err := openai.Parse([]byte(`{"messages": [{"role": "user", "content": "x"}], `+tools+`, "tool_choice": `+c.choice+`}`), true)
			if err != nil {
				t.Fatal(err)
			}
			b := &Backend{Tokenizer: templateTokenizer(t, readTemplate(t, "Qwen3-Coder"), "", false)}
			g, err := (&Server{}).grammar(b, req, nil)
			if err != nil {
				t.Fatal(err)
			}
			m := g.matcher()
			type texter interface{ AcceptText(string) error }
			err = m.(texter).AcceptText(c.text)
			_, end := m.Allowed()
			if ok := err == nil; ok != c.ok || ok && end != c.complete {
				t.Errorf("%q: accepted %v (%v), complete %v; want %v, %v", c.text, ok, err, end, c.ok, c.complete)
			}
		})
	}
}
