package server

import (
	"testing"

	"github.com/gptqtool/gptqtool/runtime/server/openai"
)

// TestGLMValue: arguments' values read by their parameters' types, as
// vLLM's glm45 parser reads them.
func TestGLMValue(t *testing.T) {
	for _, c := range []struct{ text, typ, want string }{
		{"Paris", "string", `"Paris"`},
		{" 12 \n", "string", `" 12 \n"`},
		{"null", "string", `"null"`},
		{" 12 ", "integer", `12`},
		{"2.5", "integer", `2.5`},
		{"123456789012345678901234567890", "number", `123456789012345678901234567890`},
		{"true", "boolean", `true`},
		{"True", "boolean", `true`},
		{"None", "", `null`},
		{"no", "boolean", `"no"`},
		{` {"a": [1, 2]} `, "object", `{"a":[1,2]}`},
		{`[1, 2`, "array", `"[1, 2"`},
		{"Dallas", "", `"Dallas"`},
		{"2025-08-01", "", `"2025-08-01"`},
		{`"q"`, "", `"q"`},
	} {
		if got := glmValue(c.text, c.typ); got != c.want {
			t.Errorf("glmValue(%q, %q) = %s, want %s", c.text, c.typ, got, c.want)
		}
	}
}

// TestGLMGrammar: GLM's calls under the grammar of a request's tools, as
// GLM-4.6's template writes them (GLM-4.7's without the newlines):
// arguments in the schema's order, the optional ones left out or not,
// strings raw (code with "<" and "</b>" in it, an enum's), other values
// JSON of their schema, a call of a named tool only, and what is
// refused.
func TestGLMGrammar(t *testing.T) {
	tools := `"tools": [{"type": "function", "function": {"name": "write", "parameters": {"type": "object", "properties": {
		"path": {"type": "string"}, "mode": {"type": "string", "enum": ["w", "a"]}, "opts": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"], "additionalProperties": false},
		"force": {"type": "boolean"}}, "required": ["path"]}}},
		{"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "number"}}, "required": ["a", "b"]}}},
		{"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}]`
	call := func(sep, name string, args ...string) string {
		text := "<tool_call>" + name + sep
		for i := 0; i < len(args); i += 2 {
			text += "<arg_key>" + args[i] + "</arg_key>" + sep + "<arg_value>" + args[i+1] + "</arg_value>" + sep
		}
		return text + "</tool_call>"
	}
	for _, f := range []struct {
		f        *toolFormat
		template string
	}{{glm45Format, "GLM-4.6"}, {glm47Format, "GLM-4.7-Flash"}} {
		sep := f.f.sep
		b := &Backend{Tokenizer: templateTokenizer(t, readTemplate(t, f.template), "", false)}
		for _, c := range []struct {
			name, choice, text string
			ok, complete       bool
		}{
			{"required only", `"required"`, call(sep, "write", "path", "/tmp/x"), true, true},
			{"all, code", `"required"`, call(sep, "write", "path", "a b\n  if x < 3 and y<</b>:\n    y = \"\\\\\" <", "mode", "a", "opts", `{"n": 3}`, "force", "true"), true, true},
			{"no arguments", `"required"`, call(sep, "now"), true, true},
			{"two calls", `"required"`, call(sep, "add", "a", "1", "b", "-2.5e3") + sep + call(sep, "write", "path", "p"), true, true},
			{"text, then a call", `"auto"`, "Let me see." + sep + call(sep, "add", "a", "-7", "b", "0"), true, true},
			{"the named tool", `{"type": "function", "function": {"name": "add"}}`, call(sep, "add", "a", "1", "b", "2"), true, true},
			{"another tool than the named", `{"type": "function", "function": {"name": "add"}}`, call(sep, "write", "path", "p"), false, false},
			{"a required argument left out", `"required"`, call(sep, "add", "b", "2"), false, false},
			{"out of order", `"required"`, call(sep, "add", "b", "2", "a", "1"), false, false},
			{"not an integer", `"required"`, call(sep, "add", "a", "1.5", "b", "2"), false, false},
			{"a string as JSON", `"required"`, call(sep, "write", "path", "p", "force", `"true"`), false, false},
			{"not in the enum", `"required"`, call(sep, "write", "path", "p", "mode", "x"), false, false},
			{"the object's properties", `"required"`, call(sep, "write", "path", "p", "opts", `{"m": 1}`), false, false},
			{"an argument not declared", `"required"`, call(sep, "write", "path", "p", "size", "3"), false, false},
			{"a value that ends early", `"required"`, call(sep, "write", "path", "a</arg_value>"), false, false},
			{"a tool not given", `"required"`, call(sep, "sub", "a", "1"), false, false},
			{"cut", `"required"`, call(sep, "add", "a", "1", "b", "2")[:30], true, false},
		} {
			t.Run(f.f.name+"/"+c.name, func(t *testing.T) {
				req, err := openai.Parse([]byte(`{"messages": [{"role": "user", "content": "x"}], `+tools+`, "tool_choice": `+c.choice+`}`), true)
				if err != nil {
					t.Fatal(err)
				}
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
}

// TestGLMReasoningGrammar: under GLM-4.6's template, whose replies may
// open a block ("\n<think>" as the template writes it in history), the
// grammar of required calls takes a block, with the newline before it or
// not, before the calls; and under GLM-4.7's, whose prompt opens the
// block, the rest of the block first.
func TestGLMReasoningGrammar(t *testing.T) {
	call := map[string]string{"GLM-4.6": "<tool_call>add\n<arg_key>a</arg_key>\n<arg_value>1</arg_value>\n<arg_key>b</arg_key>\n<arg_value>2</arg_value>\n</tool_call>",
		"GLM-4.7-Flash": "<tool_call>add<arg_key>a</arg_key><arg_value>1</arg_value><arg_key>b</arg_key><arg_value>2</arg_value></tool_call>"}
	for _, c := range []struct {
		template, prompt, reply string
		ok                      bool
	}{
		{"GLM-4.6", "", "\n<think>I should add.</think>\n" + call["GLM-4.6"], true},
		{"GLM-4.6", "", "<think>I should add.</think>" + call["GLM-4.6"], true},
		{"GLM-4.6", "", call["GLM-4.6"], true},
		{"GLM-4.6", "", "\nI should add." + call["GLM-4.6"], false},
		{"GLM-4.7-Flash", "", "I should add.</think>" + call["GLM-4.7-Flash"], true},
		{"GLM-4.7-Flash", `, "chat_template_kwargs": {"enable_thinking": false}`, call["GLM-4.7-Flash"], true},
		{"GLM-4.7-Flash", `, "chat_template_kwargs": {"enable_thinking": false}`, "I should add.</think>" + call["GLM-4.7-Flash"], false},
	} {
		t.Run(c.template+"/"+c.reply, func(t *testing.T) {
			b := &Backend{Tokenizer: templateTokenizer(t, readTemplate(t, c.template), "", false)}
			s := &Server{}
			req, err := openai.Parse([]byte(`{"messages": [{"role": "user", "content": "1+2?"}], "tools": [`+addTool+`], "tool_choice": "required"`+c.prompt+`}`), true)
			if err != nil {
				t.Fatal(err)
			}
			_, prompt, err := s.chatPrompt(b, req, true)
			if err != nil {
				t.Fatal(err)
			}
			g, err := s.grammar(b, req, requestThinking(b, req, prompt))
			if err != nil {
				t.Fatal(err)
			}
			m := g.matcher()
			type texter interface{ AcceptText(string) error }
			err = m.(texter).AcceptText(c.reply)
			if _, end := m.Allowed(); (err == nil && end) != c.ok {
				t.Errorf("accepted %v (%v), complete %v; want %v", err == nil, err, end, c.ok)
			}
		})
	}
}
