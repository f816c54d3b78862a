package server

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gptqtool/gptqtool/runtime/grammar"
	"github.com/gptqtool/gptqtool/runtime/server/openai"
)

// GLM's tool calls (GLM-4.5, 4.6 and 4.7; vLLM's glm45 and glm47
// parsers, llama.cpp's GLM 4.5 handler): each call is
//
//	<tool_call>NAME
//	<arg_key>K</arg_key>
//	<arg_value>V</arg_value>
//	...
//	</tool_call>
//
// calls one after another with a newline between, after text or instead
// of it (the glm45 format: GLM-4.5's and GLM-4.6's templates); GLM-4.7's
// template writes the same without any of those newlines (glm47). A
// value is raw text where its parameter is a string and JSON otherwise,
// as the templates write an argument ("v | tojson if v is not string
// else v"); the server reads it back so, by its parameter's type
// (glmValue), and the grammar makes each parameter's value so
// (glmValuePart): a string any text without "</a" in it (which would
// start "</arg_value>"), or one of its enum; any other value JSON of its
// parameter's schema. A string parameter's other keywords (a pattern,
// a length) constrain nothing: the grammar honours them in JSON only.

// glmStringPattern is a string parameter's raw value: any text in which
// "</" is not followed by "a". A "<" run, and a "</" pair, may end it;
// "</a" never comes, so that the value ends at "</arg_value>" only.
const glmStringPattern = `(?s)([^<]|<(<|/<)*([^</]|/[^<a]))*(<(<|/<)*/?)?`

// glmJSONValue says whether a parameter's value is JSON in GLM's calls:
// every one but a string's.
func glmJSONValue(schema json.RawMessage) bool { return paramType(schema) != "string" }

// glmCallSchema is the schema document of a GLM reply: the allowed
// tools' parameters under $defs, and a root that uses the parameters
// whose values are JSON, so that the grammar's Refs reach them.
func glmCallSchema(req *openai.Request) ([]byte, error) {
	return paramsSchema(req, glmJSONValue)
}

// glmGrammar compiles a GLM reply's grammar: a choice of the allowed
// tools' calls, each its parameters in the schema's order (the optional
// ones may be left out), each value raw or JSON by its type; one call,
// or (parallel calls) more, each after sep (the format's newline, or
// none).
func glmGrammar(gc *grammar.Compiler, req *openai.Request, f *toolFormat, v *grammar.Vocab) (*grammar.Grammar, error) {
	schema, err := glmCallSchema(req)
	if err != nil {
		return nil, err
	}
	sep := f.sep
	var calls [][]grammar.Part
	for i, t := range req.Tools {
		if !toolAllowed(req, t) {
			continue
		}
		call := []grammar.Part{{Text: "<tool_call>" + t.Name + sep}}
		for _, p := range xmlParams(t.Parameters) {
			param := []grammar.Part{{Text: "<arg_key>" + p.name + "</arg_key>" + sep + "<arg_value>"}, glmValuePart(i, p), {Text: "</arg_value>" + sep}}
			if p.required {
				call = append(call, param...)
			} else {
				call = append(call, grammar.Part{Alts: [][]grammar.Part{{}, param}})
			}
		}
		calls = append(calls, append(call, grammar.Part{Text: "</tool_call>"}))
	}
	parts := []grammar.Part{{Alts: calls}}
	var loop []grammar.Part
	if req.ToolChoice != openai.ToolChoiceFunction && req.ParallelToolCalls {
		loop = []grammar.Part{{Alts: calls}}
		if sep != "" {
			loop = []grammar.Part{{Text: sep}, {Alts: calls}}
		}
	}
	return gc.Sequence(schema, parts, loop, v)
}

// glmValuePart is the grammar of tools[i]'s parameter p's value.
func glmValuePart(i int, p xmlParam) grammar.Part {
	if glmJSONValue(p.schema) {
		return grammar.Part{Ref: xmlRef(i, p.name)}
	}
	if enum := xmlEnum(p.schema); enum != nil {
		var alts [][]grammar.Part
		for _, e := range enum {
			alts = append(alts, []grammar.Part{{Text: e}})
		}
		return grammar.Part{Alts: alts}
	}
	return grammar.Part{Pattern: glmStringPattern}
}

// glmValue is a GLM argument's value as JSON, read as vLLM's glm45
// parser reads it, typ its parameter's type (paramType): a string
// parameter's value is its text as it is; another's is the JSON its text
// is, without its surrounding whitespace, Python's True, False and None
// as JSON's literals (ast.literal_eval's, which vLLM tries next), and
// else the text, trimmed, as a string.
func glmValue(text, typ string) string {
	if typ == "string" {
		return compactJSON(text)
	}
	t := strings.TrimSpace(text)
	if json.Valid([]byte(t)) {
		return compactText([]byte(t))
	}
	switch t {
	case "True":
		return "true"
	case "False":
		return "false"
	case "None":
		return "null"
	}
	return compactJSON(t)
}

// glmParamTypes are the types of each tool's parameters (paramType), by
// tool and parameter name.
func glmParamTypes(tools []openai.Tool) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, t := range tools {
		m := map[string]string{}
		for _, p := range xmlParams(t.Parameters) {
			m[p.name] = paramType(p.schema)
		}
		out[t.Name] = m
	}
	return out
}

// glmCalls reads GLM calls for a nativeScanner: text after a
// "<tool_call>", fed as it comes; the call's name once it ends (at a
// newline, an "<arg_key>" or the "</tool_call>"), each argument once its
// "</arg_value>" is read, as the generic format's JSON to the scanner's
// replyScanner. Whitespace around a name, a key and between a key and
// its value is left out, as vLLM's parsers leave it.
type glmCalls struct {
	buf    string
	inCall bool // the call's name is read
	args   int  // the call's arguments so far
	tool   string
}

// feed reads text of a call; done: the call's "</tool_call>" came (text
// after it is left in rest).
func (g *glmCalls) feed(s *nativeScanner, text string) (done bool, rest string) {
	g.buf += text
	for {
		if !g.inCall {
			g.buf = strings.TrimLeft(g.buf, " \t\r\n")
			end := len(g.buf)
			for _, m := range []string{"\n", "<arg_key>", "</tool_call>"} {
				if i := strings.Index(g.buf, m); i >= 0 {
					end = min(end, i)
				}
			}
			if end == len(g.buf) {
				return false, ""
			}
			g.tool = strings.TrimSpace(g.buf[:end])
			g.buf = g.buf[end:]
			s.openCall(g.tool)
			s.feed("{")
			g.inCall, g.args = true, 0
			continue
		}
		k := strings.Index(g.buf, "<arg_key>")
		e := strings.Index(g.buf, "</tool_call>")
		if e >= 0 && (k < 0 || e < k) {
			s.feed("}}")
			rest = g.buf[e+len("</tool_call>"):]
			*g = glmCalls{}
			return true, rest
		}
		if k < 0 {
			return false, ""
		}
		kEnd := strings.Index(g.buf[k:], "</arg_key>")
		if kEnd < 0 {
			return false, ""
		}
		kEnd += k
		v := strings.Index(g.buf[kEnd:], "<arg_value>")
		if v < 0 {
			return false, ""
		}
		v += kEnd + len("<arg_value>")
		vEnd := strings.Index(g.buf[v:], "</arg_value>")
		if vEnd < 0 {
			return false, ""
		}
		vEnd += v
		key := strings.TrimSpace(g.buf[k+len("<arg_key>") : kEnd])
		value := g.buf[v:vEnd]
		g.buf = g.buf[vEnd+len("</arg_value>"):]
		if g.args++; g.args > 1 {
			s.feed(",")
		}
		s.feed(compactJSON(key) + ":" + glmValue(value, s.paramTypes[g.tool][key]))
	}
}

// paramsSchema is the schema document of a reply whose calls' values are
// raw text or JSON (qwen3-xml's, GLM's): the allowed tools' parameters
// under $defs, and a root that uses the parameters whose values are
// JSON (isJSON), so that the grammar's Refs reach them.
func paramsSchema(req *openai.Request, isJSON func(json.RawMessage) bool) ([]byte, error) {
	defs, _, err := toolDefs(req, "arguments", false)
	if err != nil {
		return nil, err
	}
	var refs []string
	for i, t := range req.Tools {
		if !toolAllowed(req, t) {
			continue
		}
		for _, p := range xmlParams(t.Parameters) {
			if isJSON(p.schema) {
				refs = append(refs, fmt.Sprintf(`{"$ref":%s}`, compactJSON(xmlRef(i, p.name))))
			}
		}
	}
	if len(refs) == 0 {
		return []byte(fmt.Sprintf(`{"$defs":{%s}}`, defs)), nil
	}
	return []byte(fmt.Sprintf(`{"$defs":{%s},"anyOf":[%s]}`, defs, strings.Join(refs, ","))), nil
}
