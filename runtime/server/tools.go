package server

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/runtime/server/openai"
)

// Tool calling for models without a tool-call format of their own (the
// generic format, as llama.cpp has it for such models): the tools and the
// reply's form are described in a system message, and the whole reply is
// constrained to one JSON object, either
//
//	{"tool_calls": [{"name": NAME, "arguments": {...}}, ...]}
//
// or, under tool_choice "auto", {"response": "text"}. The schema of that
// object (toolSchema) holds each tool's parameters, so that the grammar
// makes arguments valid against them; the server turns the reply into
// OpenAI's message (tool_calls, or content) and, streamed, its deltas
// (replyScanner). History is rendered in the same format: an assistant
// message's tool_calls as the JSON the model would have written, a tool
// message as a user message {"tool_response": {...}}.

// toolDef is the $defs key of tools[i]'s parameters in toolSchema's
// document.
func toolDef(i int) string { return fmt.Sprintf("tool%d", i) }

// toolSchema is the JSON Schema a tool-calling reply must match: see
// above; the call's object is an anyOf over the functions tool_choice
// allows, each {"name": {"const": NAME}, "arguments": PARAMETERS} in that
// order. Each such tool's parameters sit under $defs (their local
// references moved there with them), reached by a $ref; the others' are
// left out (grammar builds a named schema for each tool of a request).
func toolSchema(req *openai.Request) ([]byte, error) {
	defs, calls, err := toolDefs(req, "arguments", false)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(`{"$defs":{` + defs + `},`)
	items := fmt.Sprintf(`"items":{"anyOf":[%s]},"minItems":1`, strings.Join(calls, ","))
	if req.ToolChoice == openai.ToolChoiceFunction || !req.ParallelToolCalls {
		items += `,"maxItems":1`
	}
	toolCalls := fmt.Sprintf(`"type":"object","properties":{"tool_calls":{"type":"array",%s}},"required":["tool_calls"],"additionalProperties":false`, items)
	if req.ToolChoice == openai.ToolChoiceAuto {
		fmt.Fprintf(&b, `"anyOf":[{%s},{"type":"object","properties":{"response":{"type":"string"}},"required":["response"],"additionalProperties":false}]}`, toolCalls)
	} else {
		fmt.Fprintf(&b, "%s}", toolCalls)
	}
	return b.Bytes(), nil
}

// toolDefs are the $defs members (compact JSON text) of the tools
// tool_choice allows, each one's parameters rebased there (toolDef), and
// the schema of a call of each, {"name": {"const": NAME}, argsKey:
// {"$ref": its parameters}}, both keys required; with mistralID an
// optional "id" of 9 letters and digits after them (Mistral's format).
func toolDefs(req *openai.Request, argsKey string, mistralID bool) (string, []string, error) {
	allowed := func(t openai.Tool) bool { return req.ToolChoice != openai.ToolChoiceFunction || t.Name == req.ToolName }
	var b bytes.Buffer
	n := 0
	for i, t := range req.Tools {
		if !allowed(t) {
			continue
		}
		if n++; n > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:", toolDef(i))
		if err := rebase(&b, t.Parameters, "#/$defs/"+toolDef(i)); err != nil {
			return "", nil, &openai.FieldError{Field: fmt.Sprintf("tools[%d].function.parameters", i), Msg: err.Error()}
		}
	}
	id := ""
	if mistralID {
		id = `,"id":{"type":"string","pattern":"^[a-zA-Z0-9]{9}$"}`
	}
	var calls []string
	for i, t := range req.Tools {
		if !allowed(t) {
			continue
		}
		name, _ := json.Marshal(t.Name)
		key, _ := json.Marshal(argsKey)
		calls = append(calls, fmt.Sprintf(`{"type":"object","properties":{"name":{"const":%s},%s:{"$ref":"#/$defs/%s"}%s},"required":["name",%s],"additionalProperties":false}`, name, key, toolDef(i), id, key))
	}
	return b.String(), calls, nil
}

// Schema positions, for rebase: a schema, an object whose values are
// schemas (properties, $defs, ...), or data (const, enum, ...).
const (
	inSchema = iota
	inSchemas
	inData
)

// rebase writes schema compactly to out with its local references
// ("#", "#/...") moved under prefix, so that it means the same embedded
// in another document at prefix, and without a root $id (one elsewhere
// than at the root is refused by the grammar, and a local reference
// resolves without it). Only schema keywords are rewritten: a "$ref" in
// a const or an enum is data, and so is a property named "$ref".
func rebase(out *bytes.Buffer, schema []byte, prefix string) error {
	dec := json.NewDecoder(bytes.NewReader(schema))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if err := rebaseValue(out, dec, tok, prefix, inSchema, true); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("more than one JSON value")
	}
	return nil
}

func rebaseValue(out *bytes.Buffer, dec *json.Decoder, tok json.Token, prefix string, mode int, root bool) error {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			out.WriteByte('[')
			for n := 0; dec.More(); n++ {
				if n > 0 {
					out.WriteByte(',')
				}
				v, err := dec.Token()
				if err != nil {
					return err
				}
				if err := rebaseValue(out, dec, v, prefix, mode, false); err != nil {
					return err
				}
			}
			_, err := dec.Token()
			out.WriteByte(']')
			return err
		}
		out.WriteByte('{')
		for n := 0; dec.More(); {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := k.(string)
			v, err := dec.Token()
			if err != nil {
				return err
			}
			vmode := inData
			switch mode {
			case inSchemas:
				vmode = inSchema
			case inSchema:
				switch key {
				case "const", "enum", "default", "examples":
				case "properties", "patternProperties", "$defs", "definitions", "dependentSchemas":
					vmode = inSchemas
				case "$id":
					if root {
						// Its value is skipped whole.
						if err := skipValue(dec, v); err != nil {
							return err
						}
						continue
					}
					vmode = inSchema
				case "$ref":
					if ref, ok := v.(string); ok && (ref == "#" || strings.HasPrefix(ref, "#/")) {
						v = prefix + ref[1:]
					}
					vmode = inSchema
				default:
					vmode = inSchema
				}
			}
			if n > 0 {
				out.WriteByte(',')
			}
			n++
			writeJSONString(out, key)
			out.WriteByte(':')
			if err := rebaseValue(out, dec, v, prefix, vmode, false); err != nil {
				return err
			}
		}
		_, err := dec.Token()
		out.WriteByte('}')
		return err
	case string:
		writeJSONString(out, t)
	case json.Number:
		out.WriteString(t.String())
	case bool:
		fmt.Fprint(out, t)
	case nil:
		out.WriteString("null")
	}
	return nil
}

// skipValue reads the rest of a value whose first token is tok.
func skipValue(dec *json.Decoder, tok json.Token) error {
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	for depth := 1; depth > 0; {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		if d, ok = t.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
	}
	return nil
}

// compactJSON is v's JSON text without spaces, and without encoding/json's
// HTML escapes (the text goes to a model, not a page).
func compactJSON(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(v) // (of our own values: cannot fail)
	return strings.TrimSuffix(b.String(), "\n")
}

func writeJSONString(out *bytes.Buffer, s string) { out.WriteString(compactJSON(s)) }

// toolPrompt describes req's tools and the reply's form to the model:
// each tool's name, description and parameters (compact JSON), and the
// forms tool_choice allows.
func toolPrompt(req *openai.Request) string {
	var b strings.Builder
	b.WriteString("You can call these tools:\n")
	for _, t := range req.Tools {
		b.WriteString("- " + t.Name)
		if d := strings.TrimSpace(t.Description); d != "" {
			b.WriteString(": " + d)
		}
		b.WriteString("\n  parameters: " + compactText(t.Parameters) + "\n")
	}
	name, more := `"<tool name>"`, `, ...`
	if req.ToolChoice == openai.ToolChoiceFunction {
		name = compactJSON(req.ToolName)
	}
	if req.ToolChoice == openai.ToolChoiceFunction || !req.ParallelToolCalls {
		more = ""
	}
	calls := fmt.Sprintf(`{"tool_calls": [{"name": %s, "arguments": <arguments object>}%s]}`, name, more)
	switch req.ToolChoice {
	case openai.ToolChoiceAuto:
		what := "one or more tools"
		if !req.ParallelToolCalls {
			what = "one tool"
		}
		fmt.Fprintf(&b, "\nReply with one JSON object and nothing else, either\n%s\nto call %s, or\n{\"response\": \"<your reply>\"}\nto reply to the user directly.", calls, what)
	case openai.ToolChoiceRequired:
		what := "one or more of the tools"
		if !req.ParallelToolCalls {
			what = "one of the tools"
		}
		fmt.Fprintf(&b, "\nReply with one JSON object and nothing else:\n%s\nto call %s.", calls, what)
	default:
		fmt.Fprintf(&b, "\nReply with one JSON object and nothing else:\n%s\nto call %s.", calls, req.ToolName)
	}
	b.WriteString(" The arguments must match the tool's parameters. Each result comes back as {\"tool_response\": {\"tool_call_id\": ..., \"name\": ..., \"content\": ...}}.")
	return b.String()
}

// historyCall is a call of an assistant message as the model writes it.
type historyCall struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// toolResponse is a tool message as the model reads it.
type toolResponse struct {
	ToolCallID string `json:"tool_call_id"`
	Name       string `json:"name,omitempty"`
	Content    string `json:"content"`
}

// ChatMessages returns the messages of a chat request as the chat
// template opts select renders them, and the tools it is given: in the
// model's own tool-call format where its template has one (native.go:
// the messages as they are, the tools where the reply calls them), else
// in the generic format (chatMessages: tool calls and results as its
// JSON, the tools described in a system message, where the template keeps
// those). from[k] is the request's index of msgs[k], -1 for a message
// added.
func ChatMessages(req *openai.Request, t *tokenizer.Tokenizer, opts tokenizer.ChatOptions) (msgs []tokenizer.Message, from []int, tools []byte) {
	if f := detectToolFormat(t); opts.Template == "" && f != nil {
		msgs, from = nativeMessages(req, f)
		inlineReasoning(msgs, reasoningTemplate(t))
		return msgs, from, templateTools(req)
	}
	systemKept := true
	if name, err := t.TemplateName(opts); err == nil && name != tokenizer.JinjaTemplate {
		systemKept = opts.SystemMessages
	}
	msgs, from = chatMessages(req, systemKept)
	if opts.Template == "" {
		inlineReasoning(msgs, reasoningTemplate(t))
	}
	return msgs, from, nil
}

// chatMessages turns a chat request's messages into the chat template's:
// an assistant message's tool_calls become the JSON text of the generic
// format (its content, which that format cannot hold beside them, is left
// out), a tool message a user message {"tool_response": {"tool_call_id",
// "name" (of the earlier call of that id, where there is one), "content"}};
// and, where the reply calls tools, toolPrompt joins the first system
// message (after its text) or, where there is none, comes first as one.
// Under a template that drops system messages (openchat's, without
// serve --system-messages) it goes before the first user message's text
// instead, as llama.cpp does for templates without a system role, so that
// the model still reads it. from[k] is the request's index of msgs[k], -1
// for a message added.
func chatMessages(req *openai.Request, systemKept bool) (msgs []tokenizer.Message, from []int) {
	names := map[string]string{} // call id -> function name, of the calls so far
	for i, m := range req.Messages {
		tm := tokenizer.Message{Role: m.Role, Content: m.Content, ReasoningContent: m.ReasoningContent}
		switch {
		case m.Role == "tool":
			tm = tokenizer.Message{Role: "user", Content: compactJSON(map[string]toolResponse{
				"tool_response": {ToolCallID: m.ToolCallID, Name: names[m.ToolCallID], Content: m.Content}})}
		case len(m.ToolCalls) > 0:
			calls := make([]historyCall, len(m.ToolCalls))
			for j, c := range m.ToolCalls {
				args := json.RawMessage(strings.TrimSpace(c.Arguments))
				switch {
				case len(args) == 0:
					args = json.RawMessage("{}")
				case !json.Valid(args):
					// (Arguments that are not JSON are kept as a string.)
					args = json.RawMessage(compactJSON(c.Arguments))
				}
				calls[j] = historyCall{Name: c.Name, Arguments: args}
				if c.ID != "" {
					names[c.ID] = c.Name
				}
			}
			tm.Content = compactJSON(map[string][]historyCall{"tool_calls": calls})
		}
		msgs = append(msgs, tm)
		from = append(from, i)
	}
	if !req.CallsTools() {
		return msgs, from
	}
	prompt := toolPrompt(req)
	role := "system"
	if !systemKept {
		role = "user"
	}
	for k := range msgs {
		if msgs[k].Role != role || from[k] < 0 || req.Messages[from[k]].Role == "tool" {
			continue
		}
		if role == "system" {
			msgs[k].Content = joinText(msgs[k].Content, prompt)
		} else {
			msgs[k].Content = joinText(prompt, msgs[k].Content)
		}
		return msgs, from
	}
	return append([]tokenizer.Message{{Role: role, Content: prompt}}, msgs...), append([]int{-1}, from...)
}

// joinText joins two texts with a blank line, or is the one not empty.
func joinText(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + "\n\n" + b
}

// callIDChars are the characters of a tool call's id.
const callIDChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// newCallID returns a tool call's id: "call_" and 24 random letters and
// digits, as OpenAI's.
func newCallID() string { return randomID("call_", 24) }

// randomID returns prefix and n random letters and digits (callIDChars).
func randomID(prefix string, n int) string {
	id := make([]byte, 0, len(prefix)+n)
	id = append(id, prefix...)
	var buf [64]byte
	for len(id) < cap(id) {
		rand.Read(buf[:])
		for _, c := range buf {
			// (Bytes past the largest multiple of 62 would favour
			// the first characters.)
			if c < 248 && len(id) < cap(id) {
				id = append(id, callIDChars[c%62])
			}
		}
	}
	return string(id)
}
