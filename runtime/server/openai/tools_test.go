package openai

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// weather is a tool as OpenAI's documentation writes one.
const weather = `{"type": "function", "function": {"name": "get_weather", "description": "Get the weather.", "strict": true,
	"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}}`

func TestParseTools(t *testing.T) {
	const user = `"messages": [{"role": "user", "content": "x"}]`
	for _, c := range []struct {
		name, body       string
		choice, toolName string
		parallel         bool
		tools            []string // the tools' names
	}{
		{"auto by default", `{` + user + `, "tools": [` + weather + `]}`, ToolChoiceAuto, "", true, []string{"get_weather"}},
		{"none by default without tools", `{` + user + `}`, ToolChoiceNone, "", true, nil},
		{"an empty list is no tools", `{` + user + `, "tools": [], "tool_choice": "none"}`, ToolChoiceNone, "", true, nil},
		{"null is no tools", `{` + user + `, "tools": null, "tool_choice": null}`, ToolChoiceNone, "", true, nil},
		{"required", `{` + user + `, "tools": [` + weather + `], "tool_choice": "required", "parallel_tool_calls": false}`, ToolChoiceRequired, "", false, []string{"get_weather"}},
		{"none with tools", `{` + user + `, "tools": [` + weather + `], "tool_choice": "none"}`, ToolChoiceNone, "", true, []string{"get_weather"}},
		{"named", `{` + user + `, "tools": [` + weather + `, {"type": "function", "function": {"name": "a-b_9"}}], "tool_choice": {"type": "function", "function": {"name": "a-b_9"}}}`,
			ToolChoiceFunction, "a-b_9", true, []string{"get_weather", "a-b_9"}},
		{"the legacy fields' neutral values", `{` + user + `, "functions": [], "function_call": "none"}`, ToolChoiceNone, "", true, nil},
		{"with another constraint under none", `{` + user + `, "tools": [` + weather + `], "tool_choice": "none", "response_format": {"type": "json_object"}}`, ToolChoiceNone, "", true, []string{"get_weather"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := Parse([]byte(c.body), true)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, tool := range r.Tools {
				names = append(names, tool.Name)
			}
			if r.ToolChoice != c.choice || r.ToolName != c.toolName || r.ParallelToolCalls != c.parallel || !slices.Equal(names, c.tools) {
				t.Errorf("tool_choice %q %q, parallel %v, tools %q; want %q %q, %v, %q", r.ToolChoice, r.ToolName, r.ParallelToolCalls, names, c.choice, c.toolName, c.parallel, c.tools)
			}
		})
	}
	r, err := Parse([]byte(`{`+user+`, "tools": [`+weather+`, {"type": "function", "function": {"name": "now"}}]}`), true)
	if err != nil {
		t.Fatal(err)
	}
	if w := r.Tools[0]; w.Description != "Get the weather." || !w.Strict || !strings.HasPrefix(string(w.Parameters), `{"type": "object"`) {
		t.Errorf("tools[0] = %+v", w)
	}
	if now := r.Tools[1]; string(now.Parameters) != string(DefaultParameters) || now.Description != "" || now.Strict {
		t.Errorf("a tool without parameters: %+v, want the default parameters %s", now, DefaultParameters)
	}
	// An empty schema is no arguments; one without a type an object's.
	r, err = Parse([]byte(`{`+user+`, "tools": [{"type": "function", "function": {"name": "a", "parameters": {}}},
		{"type": "function", "function": {"name": "b", "parameters": {"properties": {"x": {"type": "integer"}}}}}]}`), true)
	if err != nil {
		t.Fatal(err)
	}
	if a := r.Tools[0]; string(a.Parameters) != string(DefaultParameters) {
		t.Errorf("parameters {}: %s, want the default %s", a.Parameters, DefaultParameters)
	}
	var b map[string]any
	if err := json.Unmarshal(r.Tools[1].Parameters, &b); err != nil || b["type"] != "object" || b["properties"] == nil {
		t.Errorf("parameters without a type: %s (%v), want it with type object", r.Tools[1].Parameters, err)
	}

	// Each mistake names its field.
	for _, c := range []struct{ body, field, says string }{
		{`"tools": {}`, "tools", "array"},
		{`"tools": [5]`, "tools[0]", "object"},
		{`"tools": [{"function": {"name": "f"}}]`, "tools[0].type", `"function"`},
		{`"tools": [{"type": "retrieval", "function": {"name": "f"}}]`, "tools[0].type", `"function"`},
		{`"tools": [{"type": "function"}]`, "tools[0].function", "object"},
		{`"tools": [{"type": "function", "function": "f"}]`, "tools[0].function", "object"},
		{`"tools": [` + weather + `, {"type": "function", "function": {}}]`, "tools[1].function.name", "^[a-zA-Z0-9_-]{1,64}$"},
		{`"tools": [{"type": "function", "function": {"name": "get weather"}}]`, "tools[0].function.name", `got "get weather"`},
		{`"tools": [{"type": "function", "function": {"name": "` + strings.Repeat("a", 65) + `"}}]`, "tools[0].function.name", "64"},
		{`"tools": [{"type": "function", "function": {"name": "f.g"}}]`, "tools[0].function.name", "letters, digits"},
		{`"tools": [{"type": "function", "function": {"name": 5}}]`, "tools[0].function.name", "letters, digits"},
		{`"tools": [` + weather + `, ` + weather + `]`, "tools[1].function.name", "tools[0] too"},
		{`"tools": [{"type": "function", "function": {"name": "f", "description": 1}}]`, "tools[0].function.description", "string"},
		{`"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]`, "tools[0].function.parameters", "JSON Schema object"},
		{`"tools": [{"type": "function", "function": {"name": "f", "parameters": [1]}}]`, "tools[0].function.parameters", "JSON Schema object"},
		{`"tools": [{"type": "function", "function": {"name": "f", "strict": "yes"}}]`, "tools[0].function.strict", "boolean"},
		{`"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]`, "tools[0].function.parameters.type", `must be "object"`},
		{`"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": ["object", "null"]}}}]`, "tools[0].function.parameters.type", `got ["object", "null"]`},
		{`"tools": [` + weather + `], "tool_choice": "any"`, "tool_choice", `"any": want "none", "auto", "required"`},
		{`"tools": [` + weather + `], "tool_choice": 1`, "tool_choice", "want"},
		{`"tools": [` + weather + `], "tool_choice": {"type": "tool", "function": {"name": "get_weather"}}`, "tool_choice.type", `"function"`},
		{`"tools": [` + weather + `], "tool_choice": {"type": "function"}`, "tool_choice.function", "object"},
		{`"tools": [` + weather + `], "tool_choice": {"type": "function", "function": {}}`, "tool_choice.function.name", "one of the tools"},
		{`"tools": [` + weather + `], "tool_choice": {"type": "function", "function": {"name": "get_time"}}`, "tool_choice.function.name", `"get_time" is not among the tools`},
		{`"tool_choice": "auto"`, "tool_choice", "needs tools"},
		{`"tools": [], "tool_choice": "required"`, "tool_choice", "needs tools"},
		{`"tool_choice": {"type": "function", "function": {"name": "f"}}`, "tool_choice", `"function" needs tools`},
		{`"tools": [` + weather + `], "parallel_tool_calls": "no"`, "parallel_tool_calls", "boolean"},
		{`"tools": [` + weather + `], "response_format": {"type": "json_object"}`, "response_format", `tool_choice "auto"`},
		{`"tools": [` + weather + `], "tool_choice": "required", "guided_json": {"type": "object"}`, "guided_json", "both constrain"},
		{`"tools": [` + weather + `], "guided_choice": ["a"]`, "guided_choice", "tool_choice \"none\""},
		{`"tools": [` + weather + `], "structured_outputs": {"json": {}}`, "structured_outputs", "tools"},
		{`"functions": [{"name": "f"}]`, "functions", "send the functions as tools"},
		{`"function_call": {"name": "f"}`, "function_call", "tool_choice"},
	} {
		_, err := Parse([]byte(`{`+user+`, `+c.body+`}`), true)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !strings.Contains(fe.Msg, c.says) {
			t.Errorf("%s: %v, want an error naming %s saying %q", c.body, err, c.field, c.says)
		}
	}
	// Text completions do no tool calling; their neutral values pass.
	for _, body := range []string{`{"prompt": "x", "tools": [` + weather + `]}`, `{"prompt": "x", "tool_choice": "required"}`, `{"prompt": "x", "functions": [{"name": "f"}]}`} {
		_, err := Parse([]byte(body), false)
		var fe *FieldError
		if !errors.As(err, &fe) || !strings.Contains(fe.Msg, "chat completions only") {
			t.Errorf("completion %s: %v, want an error saying chat completions only", body, err)
		}
	}
	if r, err := Parse([]byte(`{"prompt": "x", "tools": [], "tool_choice": "auto"}`), false); err != nil || r.Tools != nil {
		t.Errorf("a completion with no tools: %+v, %v", r, err)
	}
}

// TestParseToolMessages: an assistant message's tool_calls (its content
// null or absent) and tool messages with their tool_call_id, and the
// mistakes in them, named by field.
func TestParseToolMessages(t *testing.T) {
	r, err := Parse([]byte(`{"messages": [
		{"role": "user", "content": "Weather in Paris and Rome?"},
		{"role": "assistant", "content": null, "tool_calls": [
			{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
			{"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}},
			{"id": "call_3", "function": {"name": "now"}}]},
		{"role": "tool", "tool_call_id": "call_1", "content": "22 C"},
		{"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "19"}, {"type": "text", "text": "C"}]},
		{"role": "assistant", "tool_calls": []}]}`), true)
	if err != nil {
		t.Fatal(err)
	}
	want := []Message{
		{Role: "user", Content: "Weather in Paris and Rome?"},
		{Role: "assistant", ToolCalls: []MessageToolCall{{"call_1", "get_weather", `{"city": "Paris"}`}, {"call_2", "get_weather", `{"city": "Rome"}`}, {"call_3", "now", "{}"}}},
		{Role: "tool", Content: "22 C", ToolCallID: "call_1"},
		{Role: "tool", Content: "19\nC", ToolCallID: "call_2"},
		{Role: "assistant"},
	}
	if len(r.Messages) != len(want) {
		t.Fatalf("%d messages, want %d", len(r.Messages), len(want))
	}
	for i := range want {
		g, w := r.Messages[i], want[i]
		if g.Role != w.Role || g.Content != w.Content || g.ToolCallID != w.ToolCallID || !slices.Equal(g.ToolCalls, w.ToolCalls) {
			t.Errorf("messages[%d] = %+v, want %+v", i, g, w)
		}
	}
	for _, c := range []struct{ msg, field string }{
		{`{"role": "tool", "content": "42"}`, "messages[1].tool_call_id"},
		{`{"role": "tool", "tool_call_id": 7, "content": "42"}`, "messages[1].tool_call_id"},
		{`{"role": "user", "content": "x", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{}"}}]}`, "messages[1].tool_calls"},
		{`{"role": "assistant", "tool_calls": {"id": "a"}}`, "messages[1].tool_calls"},
		{`{"role": "assistant", "tool_calls": [null]}`, "messages[1].tool_calls[0]"},
		{`{"role": "assistant", "tool_calls": [{"id": 1, "function": {"name": "f"}}]}`, "messages[1].tool_calls[0].id"},
		{`{"role": "assistant", "tool_calls": [{"id": "a", "type": "code", "function": {"name": "f"}}]}`, "messages[1].tool_calls[0].type"},
		{`{"role": "assistant", "tool_calls": [{"id": "a"}]}`, "messages[1].tool_calls[0].function"},
		{`{"role": "assistant", "tool_calls": [{"id": "a", "function": {"arguments": "{}"}}]}`, "messages[1].tool_calls[0].function.name"},
		{`{"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": 5}}]}`, "messages[1].tool_calls[0].function.arguments"},
		{`{"role": "function", "name": "f", "content": "1"}`, "messages[1].role"},
	} {
		_, err := Parse([]byte(`{"messages": [{"role": "user", "content": "x"}, `+c.msg+`]}`), true)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: %v, want an error naming %s", c.msg, err, c.field)
		}
	}
}
