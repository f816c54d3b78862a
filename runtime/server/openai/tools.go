package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
)

// Tool is one function of a chat request's tools.
type Tool struct {
	Name        string
	Description string
	// Parameters is the JSON Schema of the arguments, as sent;
	// DefaultParameters where the tool gives none.
	Parameters json.RawMessage
	// Strict is the tool's strict flag; the server constrains every
	// tool's arguments to its schema either way.
	Strict bool
}

// DefaultParameters is the parameters schema of a tool that gives none
// (OpenAI's: a function of no arguments, its arguments {}; an object
// schema without additionalProperties false would take any keys).
var DefaultParameters = json.RawMessage(`{"type":"object","properties":{},"additionalProperties":false}`)

// The values of Request.ToolChoice.
const (
	ToolChoiceNone     = "none"     // no tool is called, nor described
	ToolChoiceAuto     = "auto"     // the model calls tools or answers
	ToolChoiceRequired = "required" // the model calls one tool or more
	ToolChoiceFunction = "function" // the model calls Request.ToolName
)

// toolName is the form of a function's name (OpenAI's).
var toolName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// CallsTools says whether the reply is a tool-calling one: tools given and
// tool_choice other than none.
func (r *Request) CallsTools() bool { return len(r.Tools) > 0 && r.ToolChoice != ToolChoiceNone }

// parseTools reads a chat's tools, tool_choice and parallel_tool_calls,
// and refuses the legacy functions and function_call (but their neutral
// values: none, an empty list, "none" or "auto").
func parseTools(f fields, r *Request) error {
	if f.has("functions") {
		var list []json.RawMessage
		if json.Unmarshal(f["functions"], &list) != nil || len(list) > 0 {
			return &FieldError{"functions", "the legacy function calling API is not supported: send the functions as tools ([{\"type\": \"function\", \"function\": {...}}])"}
		}
	}
	if f.has("function_call") {
		var s string
		if json.Unmarshal(f["function_call"], &s) != nil || s != "none" && s != "auto" {
			return &FieldError{"function_call", "the legacy function calling API is not supported: send tool_choice (with tools) instead"}
		}
	}
	if f.has("tools") {
		var list []json.RawMessage
		if err := json.Unmarshal(f["tools"], &list); err != nil {
			return &FieldError{"tools", "must be an array of tools ({\"type\": \"function\", \"function\": {\"name\": ...}})"}
		}
		seen := map[string]int{}
		for i, raw := range list {
			t, err := parseTool(raw, fmt.Sprintf("tools[%d]", i))
			if err != nil {
				return err
			}
			if j, ok := seen[t.Name]; ok {
				return &FieldError{fmt.Sprintf("tools[%d].function.name", i), fmt.Sprintf("%q is the name of tools[%d] too: names must be unique", t.Name, j)}
			}
			seen[t.Name] = i
			r.Tools = append(r.Tools, t)
		}
	}
	var err error
	if f.has("parallel_tool_calls") {
		if r.ParallelToolCalls, err = f.boolean("parallel_tool_calls"); err != nil {
			return err
		}
	} else {
		r.ParallelToolCalls = true
	}
	r.ToolChoice = ToolChoiceNone
	if len(r.Tools) > 0 {
		r.ToolChoice = ToolChoiceAuto
	}
	if !f.has("tool_choice") {
		return nil
	}
	const want = `want "none", "auto", "required" or {"type": "function", "function": {"name": ...}}`
	var s string
	if err := json.Unmarshal(f["tool_choice"], &s); err == nil {
		switch s {
		case ToolChoiceNone, ToolChoiceAuto, ToolChoiceRequired:
			r.ToolChoice = s
		default:
			return &FieldError{"tool_choice", fmt.Sprintf("%q: %s", s, want)}
		}
	} else {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(f["tool_choice"], &obj); err != nil {
			return &FieldError{"tool_choice", want}
		}
		of := fields(obj)
		if typ, err := of.str("type"); err != nil || typ != "function" {
			return &FieldError{"tool_choice.type", `must be "function"`}
		}
		var fn map[string]json.RawMessage
		if !of.has("function") || json.Unmarshal(obj["function"], &fn) != nil {
			return &FieldError{"tool_choice.function", `must be an object naming the tool ({"name": ...})`}
		}
		name, err := fields(fn).str("name")
		if err != nil || name == "" {
			return &FieldError{"tool_choice.function.name", "must be the name of one of the tools"}
		}
		r.ToolChoice, r.ToolName = ToolChoiceFunction, name
	}
	if r.ToolChoice != ToolChoiceNone && len(r.Tools) == 0 {
		return &FieldError{"tool_choice", fmt.Sprintf("%q needs tools: send tools, or leave tool_choice out", r.ToolChoice)}
	}
	if r.ToolChoice == ToolChoiceFunction && !hasTool(r.Tools, r.ToolName) {
		return &FieldError{"tool_choice.function.name", fmt.Sprintf("%q is not among the tools", r.ToolName)}
	}
	return nil
}

func hasTool(tools []Tool, name string) bool {
	for _, t := range tools {
		if t.Name == name {
			return true
		}
	}
	return false
}

// parseTool reads one tool, at field (tools[i]).
func parseTool(raw json.RawMessage, field string) (Tool, error) {
	var t Tool
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return t, &FieldError{field, "must be an object ({\"type\": \"function\", \"function\": {\"name\": ...}})"}
	}
	of := fields(obj)
	if typ, err := of.str("type"); err != nil || typ != "function" {
		return t, &FieldError{field + ".type", `must be "function"`}
	}
	var fn map[string]json.RawMessage
	if !of.has("function") || json.Unmarshal(obj["function"], &fn) != nil {
		return t, &FieldError{field + ".function", "must be an object with the function's name, description and parameters"}
	}
	ff := fields(fn)
	name, err := ff.str("name")
	if err != nil || !toolName.MatchString(name) {
		return t, &FieldError{field + ".function.name", fmt.Sprintf("must be 1 to 64 letters, digits, _ or - (^[a-zA-Z0-9_-]{1,64}$)%s", gotString(fn["name"]))}
	}
	t.Name = name
	if t.Description, err = ff.str("description"); err != nil {
		return t, &FieldError{field + ".function.description", "must be a string"}
	}
	if t.Strict, err = ff.boolean("strict"); err != nil {
		return t, &FieldError{field + ".function.strict", "must be a boolean"}
	}
	t.Parameters = DefaultParameters
	if ff.has("parameters") {
		var schema map[string]json.RawMessage
		if json.Unmarshal(fn["parameters"], &schema) != nil {
			return t, &FieldError{field + ".function.parameters", "must be a JSON Schema object"}
		}
		// A call's arguments are a JSON object: {} is no arguments (as none
		// given), a schema of an object's keywords without a type is taken
		// as an object's, and one of another type is refused. (One that
		// refers or combines, $ref or anyOf, is left as it is.)
		_, ref := schema["$ref"]
		objectish := false
		for _, k := range []string{"properties", "required", "additionalProperties"} {
			_, on := schema[k]
			objectish = objectish || on
		}
		switch typ, has := schema["type"]; {
		case len(schema) == 0:
		case !has && objectish && !ref:
			schema["type"] = json.RawMessage(`"object"`)
			t.Parameters, _ = json.Marshal(schema)
		case !has:
			t.Parameters = bytes.TrimSpace(fn["parameters"])
		case !bytes.Equal(bytes.TrimSpace(typ), []byte(`"object"`)):
			return t, &FieldError{field + ".function.parameters.type", fmt.Sprintf("must be \"object\": a call's arguments are a JSON object; got %s", bytes.TrimSpace(typ))}
		default:
			t.Parameters = bytes.TrimSpace(fn["parameters"])
		}
	}
	return t, nil
}

// gotString says what a name field held, where it was a string.
func gotString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return fmt.Sprintf("; got %q", s)
}

// parseMessageToolCalls reads an assistant message's tool_calls, at field.
func parseMessageToolCalls(raw json.RawMessage, field string) ([]MessageToolCall, error) {
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, &FieldError{field, "must be an array of tool calls ({\"id\": ..., \"type\": \"function\", \"function\": {\"name\": ..., \"arguments\": ...}})"}
	}
	var out []MessageToolCall
	for j, c := range list {
		at := fmt.Sprintf("%s[%d]", field, j)
		if c == nil {
			return nil, &FieldError{at, "must be an object"}
		}
		cf := fields(c)
		var call MessageToolCall
		var err error
		if call.ID, err = cf.str("id"); err != nil {
			return nil, &FieldError{at + ".id", "must be a string"}
		}
		if cf.has("type") {
			if typ, err := cf.str("type"); err != nil || typ != "function" {
				return nil, &FieldError{at + ".type", `must be "function"`}
			}
		}
		var fn map[string]json.RawMessage
		if !cf.has("function") || json.Unmarshal(c["function"], &fn) != nil {
			return nil, &FieldError{at + ".function", "must be an object with the function's name and arguments"}
		}
		ff := fields(fn)
		if call.Name, err = ff.str("name"); err != nil || call.Name == "" {
			return nil, &FieldError{at + ".function.name", "must be a non-empty string"}
		}
		// arguments: a string holding JSON (OpenAI's form); an object is
		// taken as its text; none is no arguments.
		switch args := bytes.TrimSpace(fn["arguments"]); {
		case !ff.has("arguments"):
			call.Arguments = "{}"
		case args[0] == '{':
			call.Arguments = string(args)
		default:
			if call.Arguments, err = ff.str("arguments"); err != nil {
				return nil, &FieldError{at + ".function.arguments", "must be a string holding the arguments' JSON"}
			}
		}
		out = append(out, call)
	}
	return out, nil
}
