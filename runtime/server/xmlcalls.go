package server

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"

	"github.com/gptqtool/gptqtool/runtime/grammar"
	"github.com/gptqtool/gptqtool/runtime/server/openai"
)

// Qwen3-Coder's tool calls (the qwen3-xml format; vLLM's qwen3_coder
// parser, llama.cpp's Qwen3-Coder handler): each call is
//
//	<tool_call>
//	<function=NAME>
//	<parameter=P>
//	VALUE
//	</parameter>
//	...
//	</function>
//	</tool_call>
//
// calls one after another with a newline between, after text or instead
// of it. A value is raw text, not JSON: the server reads it by the type
// its parameter's schema gives (xmlValue), and the grammar makes each
// parameter's value of that type (xmlValuePart): a string any text
// without "\n</" in it (or one of its enum), a number or a boolean as
// JSON writes it, an object or an array, or a value whose schema says
// more than a scalar type (a string's maxLength, a $ref), a JSON value
// of the parameter's schema, which reads back as that JSON.

// xmlParams are a tool's parameters in the schema's order: name, schema
// (compact JSON) and whether it is required.
type xmlParam struct {
	name     string
	schema   json.RawMessage
	required bool
}

// xmlParams reads the properties of a tool's parameters schema in order
// (encoding/json's maps lose it); none where the schema has none.
func xmlParams(parameters json.RawMessage) []xmlParam {
	var top struct {
		Properties json.RawMessage `json:"properties"`
		Required   []string        `json:"required"`
	}
	if json.Unmarshal(parameters, &top) != nil || len(top.Properties) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(top.Properties))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	var out []xmlParam
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return out
		}
		name, _ := tok.(string)
		var schema json.RawMessage
		if dec.Decode(&schema) != nil {
			return out
		}
		required := false
		for _, r := range top.Required {
			required = required || r == name
		}
		out = append(out, xmlParam{name, schema, required})
	}
	return out
}

// paramType is the JSON type a parameter's schema gives its value: its
// "type" (the first not "null" of a list), "string" for an enum of
// strings, "" where the schema says none.
func paramType(schema json.RawMessage) string {
	var s struct {
		Type json.RawMessage `json:"type"`
		Enum []any           `json:"enum"`
	}
	if json.Unmarshal(schema, &s) != nil {
		return ""
	}
	var one string
	var list []string
	switch {
	case json.Unmarshal(s.Type, &one) == nil:
		return one
	case json.Unmarshal(s.Type, &list) == nil:
		for _, t := range list {
			if t != "null" {
				return t
			}
		}
	}
	for _, e := range s.Enum {
		if _, ok := e.(string); ok {
			return "string"
		}
	}
	return ""
}

// xmlValue is a parameter's raw value as JSON, read as vLLM's
// qwen3_coder parser reads it, typ the parameter's type (toolParamTypes):
// "null" (any case) is null; a string parameter's, or one not declared
// (typ ""), is a string; a number or an integer one JSON's number where
// it is one (as written), a boolean one true or false (any case), an
// object's, an array's or one of no scalar type (typ "json") its JSON
// where it is JSON; else the text as a string.
func xmlValue(text, typ string) string {
	if strings.EqualFold(text, "null") {
		return "null"
	}
	t := strings.TrimSpace(text)
	switch typ {
	case "integer":
		// (Of any size, as Python's int reads it.)
		if integerText.MatchString(t) {
			return t
		}
	case "number":
		var n json.Number
		if json.Unmarshal([]byte(t), &n) == nil && !strings.HasPrefix(t, `"`) {
			return t
		}
	case "boolean":
		if b := strings.ToLower(t); b == "true" || b == "false" {
			return b
		}
	case "object", "array", "json":
		if json.Valid([]byte(t)) {
			return compactText([]byte(t))
		}
	}
	return compactJSON(text)
}

// integerText is JSON's integer.
var integerText = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

// xmlStringPattern is a string parameter's raw value: any text without
// "\n</" in it (which would end it early), nor "\n<\n"; the value's end is
// "\n</parameter>".
const xmlStringPattern = `(?s)([^\n]|\n+[^\n<]|\n+<[^/\n])*\n*`

// xmlScalarPatterns are the raw values of the other scalar types, as JSON
// writes them.
var xmlScalarPatterns = map[string]string{
	"integer": `-?(0|[1-9][0-9]*)`,
	"number":  `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`,
	"boolean": `true|false`,
	"null":    `null`,
}

// xmlRef is the schema reference of tools[i]'s parameter p in
// nativeCallSchema's document (a JSON pointer: ~ and / escaped).
func xmlRef(i int, p string) string {
	return "#/$defs/" + toolDef(i) + "/properties/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(p)
}

// xmlCallSchema is the schema document of a qwen3-xml reply: the allowed
// tools' parameters under $defs, and a root that uses the parameters
// whose values are JSON (objects, arrays, those of no scalar type), so
// that the grammar's Refs reach them.
func xmlCallSchema(req *openai.Request) ([]byte, error) {
	return paramsSchema(req, xmlJSONValue)
}

// xmlJSONValue says whether a parameter's value is written as JSON: an
// object's or an array's, one whose schema gives no scalar type (an
// anyOf, a $ref), and a scalar one whose schema says more than its type
// (a string's pattern, format or length bounds, a number's enum: the
// grammar honours them in JSON only); a string of an enum of strings is
// one of them, raw.
func xmlJSONValue(schema json.RawMessage) bool {
	switch paramType(schema) {
	case "string", "integer", "number", "boolean", "null":
	default:
		return true
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(schema, &m) != nil {
		return true
	}
	for k := range m {
		switch k {
		case "type", "description", "title", "default", "examples", "$comment":
		case "enum":
			if xmlEnum(schema) == nil {
				return true
			}
		default:
			return true
		}
	}
	return false
}

// xmlEnum is a string parameter's enum, where it is one of strings, none
// empty (nil otherwise).
func xmlEnum(schema json.RawMessage) []string {
	var s struct {
		Enum []any `json:"enum"`
	}
	if json.Unmarshal(schema, &s) != nil || paramType(schema) != "string" {
		return nil
	}
	var out []string
	for _, e := range s.Enum {
		str, ok := e.(string)
		if !ok || str == "" {
			return nil
		}
		out = append(out, str)
	}
	return out
}

// toolAllowed says whether tool_choice lets the reply call t.
func toolAllowed(req *openai.Request, t openai.Tool) bool {
	return req.ToolChoice != openai.ToolChoiceFunction || t.Name == req.ToolName
}

// xmlGrammar compiles a qwen3-xml reply's grammar: a choice of the
// allowed tools' calls, each its parameters in the schema's order (the
// optional ones may be left out), each value of its type; one call, or
// (parallel calls) more with a newline between.
func xmlGrammar(gc *grammar.Compiler, req *openai.Request, v *grammar.Vocab) (*grammar.Grammar, error) {
	schema, err := xmlCallSchema(req)
	if err != nil {
		return nil, err
	}
	var calls [][]grammar.Part
	for i, t := range req.Tools {
		if !toolAllowed(req, t) {
			continue
		}
		call := []grammar.Part{{Text: "<tool_call>\n<function=" + t.Name + ">\n"}}
		for _, p := range xmlParams(t.Parameters) {
			param := []grammar.Part{{Text: "<parameter=" + p.name + ">\n"}, xmlValuePart(i, p), {Text: "\n</parameter>\n"}}
			if p.required {
				call = append(call, param...)
			} else {
				call = append(call, grammar.Part{Alts: [][]grammar.Part{{}, param}})
			}
		}
		calls = append(calls, append(call, grammar.Part{Text: "</function>\n</tool_call>"}))
	}
	parts := []grammar.Part{{Alts: calls}}
	var loop []grammar.Part
	if req.ToolChoice != openai.ToolChoiceFunction && req.ParallelToolCalls {
		loop = []grammar.Part{{Text: "\n"}, {Alts: calls}}
	}
	return gc.Sequence(schema, parts, loop, v)
}

// xmlValuePart is the grammar of tools[i]'s parameter p's raw value.
func xmlValuePart(i int, p xmlParam) grammar.Part {
	if xmlJSONValue(p.schema) {
		return grammar.Part{Ref: xmlRef(i, p.name)}
	}
	if enum := xmlEnum(p.schema); enum != nil {
		var alts [][]grammar.Part
		for _, e := range enum {
			alts = append(alts, []grammar.Part{{Text: e}})
		}
		return grammar.Part{Alts: alts}
	}
	if pat, ok := xmlScalarPatterns[paramType(p.schema)]; ok {
		return grammar.Part{Pattern: pat}
	}
	return grammar.Part{Pattern: xmlStringPattern}
}

// xmlCalls reads qwen3-xml calls for a nativeScanner: text after a
// "<tool_call>", fed as it comes; each call's name once its
// "<function=NAME>" is read, each parameter once its "</parameter>" is,
// as the generic format's JSON to the scanner's replyScanner.
type xmlCalls struct {
	buf    string
	inCall bool // the call's name is read
	params int  // the call's parameters so far
	tool   string
}

// feed reads text of a call; done: the call's "</function>" came (text
// after it is left in rest).
func (x *xmlCalls) feed(s *nativeScanner, text string) (done bool, rest string) {
	x.buf += text
	for {
		if !x.inCall {
			start := strings.Index(x.buf, "<function=")
			if start < 0 {
				return false, ""
			}
			end := strings.IndexByte(x.buf[start:], '>')
			if end < 0 {
				return false, ""
			}
			x.tool = x.buf[start+len("<function=") : start+end]
			x.buf = x.buf[start+end+1:]
			s.openCall(x.tool)
			s.feed("{")
			x.inCall, x.params = true, 0
			continue
		}
		p := strings.Index(x.buf, "<parameter=")
		f := strings.Index(x.buf, "</function>")
		if f >= 0 && (p < 0 || f < p) {
			s.feed("}}")
			rest = x.buf[f+len("</function>"):]
			*x = xmlCalls{}
			return true, rest
		}
		if p < 0 {
			return false, ""
		}
		gt := strings.IndexByte(x.buf[p:], '>')
		if gt < 0 {
			return false, ""
		}
		// A value ends at "\n</parameter>", which the grammar keeps out
		// of a value (a "</parameter>" of its own, in code, is text).
		end := strings.Index(x.buf[p+gt+1:], "\n</parameter>")
		if end < 0 {
			return false, ""
		}
		name := x.buf[p+len("<parameter=") : p+gt]
		value := strings.TrimPrefix(x.buf[p+gt+1:p+gt+1+end], "\n")
		x.buf = x.buf[p+gt+1+end+len("\n</parameter>"):]
		if x.params++; x.params > 1 {
			s.feed(",")
		}
		s.feed(compactJSON(name) + ":" + xmlValue(value, s.paramTypes[x.tool][name]))
	}
}

// toolParamTypes are the types of each tool's parameters (paramType, or
// "json" for one whose value is JSON: xmlJSONValue), by tool and
// parameter name.
func toolParamTypes(tools []openai.Tool) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, t := range tools {
		m := map[string]string{}
		for _, p := range xmlParams(t.Parameters) {
			m[p.name] = paramType(p.schema)
			if xmlJSONValue(p.schema) {
				m[p.name] = "json"
			}
		}
		out[t.Name] = m
	}
	return out
}
