package server

import (
	"bytes"
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/grammar"
	"github.com/gptqtool/gptqtool/runtime/server/openai"
)

// weatherTool and addTool are the tools of these tests: bounded strings
// and an enum (so that openchat-tiny's calls end), integers, and a $defs
// reference (moved with the parameters into the reply's schema).
const (
	weatherTool = `{"type": "function", "function": {"name": "get_weather", "description": "Get the weather in a city.",
		"parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"$ref": "#/$defs/unit"}},
			"required": ["city", "unit"], "additionalProperties": false, "$defs": {"unit": {"enum": ["c", "f"]}}}}}`
	addTool = `{"type": "function", "function": {"name": "add", "parameters": {"type": "object",
		"properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"], "additionalProperties": false}}}`
)

// parseTools parses a chat request of these tools and tool_choice.
func parseTools(t *testing.T, tools, extra string) *openai.Request {
	t.Helper()
	req, err := openai.Parse([]byte(`{"messages": [{"role": "user", "content": "x"}], "tools": [`+tools+`]`+extra+`}`), true)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// tinyVocab is openchat-tiny's vocabulary for the grammar.
func tinyVocab(t *testing.T) *grammar.Vocab {
	t.Helper()
	tok, err := tokenizer.Load(fixtures.Path(t, "models/openchat-tiny"))
	if err != nil {
		t.Fatal(err)
	}
	return grammar.NewVocab(tok)
}

// TestToolSchema: the reply's schema, compiled by the grammar, takes the
// replies tool_choice allows and refuses the others (checked by walking
// each text through a matcher: refused, or accepted but not complete).
func TestToolSchema(t *testing.T) {
	v := tinyVocab(t)
	const (
		paris    = `{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}]}`
		add      = `{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": -2}}]}`
		both     = `{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "get_weather", "arguments": {"city": "Rome", "unit": "f"}}]}`
		response = `{"response": "Hello \"you\""}`
	)
	refusedByAll := []string{
		`{"tool_calls": []}`,
		`{"tool_calls": [{"name": "get_time", "arguments": {}}]}`,
		`{"tool_calls": [{"name": "add", "arguments": {"a": 1}}]}`,
		`{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": "2"}}]}`,
		`{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "k"}}]}`,
		`{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Ouagadougou-Nord", "unit": "c"}}]}`,
		`{"tool_calls": [{"arguments": {"a": 1, "b": 2}, "name": "add"}]}`,
		`{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}, "id": "x"}]}`,
		`{"response": "hi", "tool_calls": []}`,
		`{"response": 5}`,
		`{"answer": "hi"}`,
		`"hi"`,
	}
	for _, c := range []struct {
		name, extra    string
		takes, refuses []string
	}{
		{"auto", ``, []string{paris, add, both, response}, nil},
		{"auto, one call", `, "parallel_tool_calls": false`, []string{paris, add, response}, []string{both}},
		{"required", `, "tool_choice": "required"`, []string{paris, add, both}, []string{response}},
		{"required, one call", `, "tool_choice": "required", "parallel_tool_calls": false`, []string{paris, add}, []string{both, response}},
		{"named", `, "tool_choice": {"type": "function", "function": {"name": "add"}}`, []string{add}, []string{paris, both, response}},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := parseTools(t, weatherTool+","+addTool, c.extra)
			schema, err := toolSchema(req)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(schema) {
				t.Fatalf("the schema is not JSON: %s", schema)
			}
			g, err := grammar.Compile(schema, v)
			if err != nil {
				t.Fatalf("%v\n%s", err, schema)
			}
			accepts := func(text string) bool {
				m := g.NewMatcher()
				if m.AcceptText(text) != nil {
					return false
				}
				_, end := m.Allowed()
				return end
			}
			for _, text := range c.takes {
				if !accepts(text) {
					t.Errorf("refused %s", text)
				}
			}
			for _, text := range append(c.refuses, refusedByAll...) {
				if accepts(text) {
					t.Errorf("took %s", text)
				}
			}
		})
	}
}

// TestToolSchemaDefs: the reply's schema holds the parameters of the tools
// tool_choice lets it call, and only those: grammar checks each tool of a
// request in a schema of its own (named), which would otherwise hold
// every tool's parameters, n schemas of n tools each (seconds under the
// grammar cache's lock for a few hundred tools).
func TestToolSchemaDefs(t *testing.T) {
	for _, c := range []struct {
		extra string
		want  []string
	}{
		{``, []string{"tool0", "tool1"}},
		{`, "tool_choice": "required"`, []string{"tool0", "tool1"}},
		{`, "tool_choice": {"type": "function", "function": {"name": "add"}}`, []string{"tool1"}},
	} {
		schema, err := toolSchema(parseTools(t, weatherTool+","+addTool, c.extra))
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Defs map[string]json.RawMessage `json:"$defs"`
		}
		if err := json.Unmarshal(schema, &doc); err != nil {
			t.Fatal(err)
		}
		got := slices.Sorted(maps.Keys(doc.Defs))
		if !slices.Equal(got, c.want) {
			t.Errorf("tool_choice%s: $defs %q, want %q", c.extra, got, c.want)
		}
	}
}

// TestToolSchemaNoParameters: a tool without parameters is, as OpenAI
// defines it, a function of an empty parameter list: its call's arguments
// are {} and nothing else.
func TestToolSchemaNoParameters(t *testing.T) {
	v := tinyVocab(t)
	schema, err := toolSchema(parseTools(t, `{"type": "function", "function": {"name": "now"}}`, `, "tool_choice": "required"`))
	if err != nil {
		t.Fatal(err)
	}
	g, err := grammar.Compile(schema, v)
	if err != nil {
		t.Fatalf("%v\n%s", err, schema)
	}
	for _, c := range []struct {
		reply string
		want  bool
	}{
		{`{"tool_calls": [{"name": "now", "arguments": {}}]}`, true},
		{`{"tool_calls": [{"name": "now", "arguments": {"tz": "UTC"}}]}`, false},
	} {
		m := g.NewMatcher()
		end := false
		if m.AcceptText(c.reply) == nil {
			_, end = m.Allowed()
		}
		if end != c.want {
			t.Errorf("%s: taken %v, want %v", c.reply, end, c.want)
		}
	}
}

// TestRebase: a tool's parameters keep their meaning inside the reply's
// schema: local references move with them, data and names that look like
// references do not, a root $id goes.
func TestRebase(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"type": "object"}`, `{"type":"object"}`},
		{`{"$id": "https://x/y", "$schema": "s", "$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#"}, "$ref": {"$ref": "#/$defs/a"}}}`,
			`{"$schema":"s","$ref":"#/$defs/tool3/$defs/a","$defs":{"a":{"$ref":"#/$defs/tool3"},"$ref":{"$ref":"#/$defs/tool3/$defs/a"}}}`},
		{`{"properties": {"$ref": {"const": {"$ref": "#/x"}}, "$id": {"enum": [{"$ref": "#"}]}, "const": {"items": {"$ref": "#/properties/const"}}}}`,
			`{"properties":{"$ref":{"const":{"$ref":"#/x"}},"$id":{"enum":[{"$ref":"#"}]},"const":{"items":{"$ref":"#/$defs/tool3/properties/const"}}}}`},
		{`{"anyOf": [{"$ref": "#/definitions/a"}, {"$ref": "other.json#/a"}, {"$ref": "#anchor"}], "definitions": {"a": {"default": {"$ref": "#"}, "$id": "inner"}}}`,
			`{"anyOf":[{"$ref":"#/$defs/tool3/definitions/a"},{"$ref":"other.json#/a"},{"$ref":"#anchor"}],"definitions":{"a":{"default":{"$ref":"#"},"$id":"inner"}}}`},
		{`{"enum": ["<&>", 1e400, 12345678901234567890, -0.5, true, null]}`, `{"enum":["<&>",1e400,12345678901234567890,-0.5,true,null]}`},
	} {
		var b bytes.Buffer
		if err := rebase(&b, []byte(c.in), "#/$defs/tool3"); err != nil || b.String() != c.want {
			t.Errorf("rebase(%s) =\n%s (%v), want\n%s", c.in, b.String(), err, c.want)
		}
	}
}

// toolsPrompt is the system text toolPrompt writes for weatherTool and
// addTool under tool_choice auto, written out by hand.
const toolsPrompt = "You can call these tools:\n" +
	"- get_weather: Get the weather in a city.\n" +
	`  parameters: {"type":"object","properties":{"city":{"type":"string","maxLength":12},"unit":{"$ref":"#/$defs/unit"}},"required":["city","unit"],"additionalProperties":false,"$defs":{"unit":{"enum":["c","f"]}}}` + "\n" +
	"- add\n" +
	`  parameters: {"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"required":["a","b"],"additionalProperties":false}` + "\n" +
	"\nReply with one JSON object and nothing else, either\n" +
	`{"tool_calls": [{"name": "<tool name>", "arguments": <arguments object>}, ...]}` + "\n" +
	"to call one or more tools, or\n" +
	`{"response": "<your reply>"}` + "\n" +
	"to reply to the user directly. The arguments must match the tool's parameters. " +
	`Each result comes back as {"tool_response": {"tool_call_id": ..., "name": ..., "content": ...}}.`

func TestToolPrompt(t *testing.T) {
	if got := toolPrompt(parseTools(t, weatherTool+","+addTool, "")); got != toolsPrompt {
		t.Errorf("auto:\n%s\nwant\n%s", got, toolsPrompt)
	}
	got := toolPrompt(parseTools(t, weatherTool+","+addTool, `, "tool_choice": {"type": "function", "function": {"name": "add"}}`))
	if want := "\nReply with one JSON object and nothing else:\n" + `{"tool_calls": [{"name": "add", "arguments": <arguments object>}]}` + "\nto call add."; !strings.Contains(got, want) {
		t.Errorf("named:\n%s\nwant it to hold\n%s", got, want)
	}
	got = toolPrompt(parseTools(t, weatherTool, `, "tool_choice": "required", "parallel_tool_calls": false`))
	if want := "\nReply with one JSON object and nothing else:\n" + `{"tool_calls": [{"name": "<tool name>", "arguments": <arguments object>}]}` + "\nto call one of the tools."; !strings.Contains(got, want) || strings.Contains(got, "- add") {
		t.Errorf("required, one call:\n%s\nwant it to hold\n%s", got, want)
	}
}

// history is a conversation with tool calls: a system message, the user's
// question, the assistant's calls (content null, arguments as a string
// and as an object), their results, one for an id no call has.
const history = `[
	{"role": "system", "content": "Be brief."},
	{"role": "user", "content": "Weather in Paris? And 1+2?"},
	{"role": "assistant", "content": null, "tool_calls": [
		{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"c\"}"}},
		{"id": "call_2", "type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 2}}}]},
	{"role": "tool", "tool_call_id": "call_1", "content": "22 <b>C</b>"},
	{"role": "tool", "tool_call_id": "call_9", "content": [{"type": "text", "text": "3"}]}]`

// historyPrompt is history rendered under openchat's template with system
// messages kept and tool_choice auto, written out by hand.
const historyPrompt = "<s>GPT4 Correct System: Be brief.\n\n" + toolsPrompt + "<|end_of_turn|>" +
	"GPT4 Correct User: Weather in Paris? And 1+2?<|end_of_turn|>" +
	`GPT4 Correct Assistant: {"tool_calls":[{"name":"get_weather","arguments":{"city":"Paris","unit":"c"}},{"name":"add","arguments":{"a":1,"b":2}}]}<|end_of_turn|>` +
	`GPT4 Correct User: {"tool_response":{"tool_call_id":"call_1","name":"get_weather","content":"22 <b>C</b>"}}<|end_of_turn|>` +
	`GPT4 Correct User: {"tool_response":{"tool_call_id":"call_9","content":"3"}}<|end_of_turn|>` +
	"GPT4 Correct Assistant:"

// TestChatMessages renders history under openchat's template: with system
// messages kept (the tools join the system message), dropped (they go
// before the first user message's text), under tool_choice none (not
// described; the history as it is), and without a system message (one is
// added).
func TestChatMessages(t *testing.T) {
	tok, err := tokenizer.Load(fixtures.Path(t, "models/openchat-tiny"))
	if err != nil {
		t.Fatal(err)
	}
	render := func(t *testing.T, messages, extra string, keep bool) string {
		t.Helper()
		req, err := openai.Parse([]byte(`{"messages": `+messages+`, "tools": [`+weatherTool+","+addTool+`]`+extra+`}`), true)
		if err != nil {
			t.Fatal(err)
		}
		msgs, _ := chatMessages(req, keep)
		text, err := tok.RenderChat(msgs, tokenizer.ChatOptions{Template: "openchat", SystemMessages: keep, AddGenerationPrompt: true})
		if err != nil {
			t.Fatal(err)
		}
		return text
	}
	if got := render(t, history, "", true); got != historyPrompt {
		t.Errorf("system messages kept:\n%s\nwant\n%s", got, historyPrompt)
	}
	dropped := strings.Replace(historyPrompt, "GPT4 Correct System: Be brief.\n\n"+toolsPrompt+"<|end_of_turn|>GPT4 Correct User: ", "GPT4 Correct User: "+toolsPrompt+"\n\n", 1)
	if got := render(t, history, "", false); got != dropped {
		t.Errorf("system messages dropped:\n%s\nwant\n%s", got, dropped)
	}
	none := strings.Replace(historyPrompt, "\n\n"+toolsPrompt, "", 1)
	if got := render(t, history, `, "tool_choice": "none"`, true); got != none {
		t.Errorf("tool_choice none:\n%s\nwant\n%s", got, none)
	}
	want := "<s>GPT4 Correct System: " + toolsPrompt + "<|end_of_turn|>GPT4 Correct User: Hi<|end_of_turn|>GPT4 Correct Assistant:"
	if got := render(t, `[{"role": "user", "content": "Hi"}]`, "", true); got != want {
		t.Errorf("no system message:\n%s\nwant\n%s", got, want)
	}
}

// callID is the form of a tool call's id: OpenAI's, or Mistral's 9
// letters and digits (native.go).
var callID = regexp.MustCompile(`^(call_[a-zA-Z0-9]{24}|[a-zA-Z0-9]{9})$`)

func TestNewCallID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newCallID()
		if !callID.MatchString(id) || !strings.HasPrefix(id, "call_") || seen[id] {
			t.Fatalf("id %q: want call_ and 24 letters and digits, each id new", id)
		}
		seen[id] = true
		id = newMistralID()
		if !callID.MatchString(id) || len(id) != 9 || seen[id] {
			t.Fatalf("Mistral id %q: want 9 letters and digits, each id new", id)
		}
		seen[id] = true
	}
}
