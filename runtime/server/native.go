package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/runtime/grammar"
	"github.com/gptqtool/gptqtool/runtime/server/openai"
)

// Native tool calling: a model whose chat template has a tool-call format
// of its own gets the request's tools through the template, its history's
// calls and results as the template renders them, and writes calls in
// that format, which the server constrains and reads (llama.cpp's
// common/chat.cpp, vLLM's tool parsers). The format is found in the
// way the template writes a call (detectToolFormat):
//
//   - hermes (Hermes 2 Pro and 3, Qwen 2.5 and 3, QwQ, Granite 4, ...):
//     each call is "<tool_call>\n" {"name": NAME,
//     "arguments": {...}} "\n</tool_call>", calls one after another with a
//     newline between, after text or instead of it.
//   - llama3 (Llama 3.1 to 3.3): the whole
//     reply is one call {"name": NAME, "parameters": {...}} (the template
//     refuses more than one).
//   - mistral (Mistral Nemo, Small 2409): "[TOOL_CALLS]"
//     and a JSON list of {"name": NAME, "arguments": {...}}, after text or
//     instead of it; call ids are 9 letters and digits (the template
//     refuses others).
//   - mistral-args (mistral-common's tokenizer v11 and later: Devstral,
//     Magistral, Ministral 3, Mistral Small 3.1): each call is
//     "[TOOL_CALLS]" NAME "[ARGS]" {...}, calls one after another with
//     nothing between, after text or instead of it.
//   - mistral-call-id (tokenizer v13: Mistral Small 3.2): the same, with
//     "[CALL_ID]" and the call's 9-character id after the name in
//     history; the model may write one ("[TOOL_CALLS]" NAME "[CALL_ID]"
//     ID "[ARGS]" {...}), which is then the call's id, or leave it out.
//   - qwen3-xml (Qwen3-Coder, Qwen 3.5): each call is "<tool_call>\n
//     <function=NAME>\n" and its parameters, "<parameter=P>\n" VALUE
//     "\n</parameter>\n" each, then "</function>\n</tool_call>", the values
//     raw text read by their parameters' types (xmlcalls.go), calls one
//     after another with a newline between, after text or instead of it.
//   - glm45 (GLM-4.5, GLM-4.6): each call is "<tool_call>" NAME "\n"
//     and its arguments, "<arg_key>" K "</arg_key>\n<arg_value>" V
//     "</arg_value>\n" each, then "</tool_call>", a string's value raw
//     text and another's JSON (glmcalls.go), calls one after another with
//     a newline between, after text or instead of it.
//   - glm47 (GLM-4.7): the same without those newlines.
//
// (Poolside's Laguna templates write GLM's calls too.)
//
// Templates that write calls otherwise (functionary's <function=...>,
// Kimi's, DeepSeek's), or not at all, and the openchat templates keep
// the generic format (tools.go).
//
// Under tool_choice "required" or a named function the reply is
// constrained from its first token to the format's calls; under "auto" it
// is free text until the format's trigger ("<tool_call>", "[TOOL_CALLS]",
// or Llama 3's "{" at the start), and constrained from there on
// (grammar.Lazy). Each call's arguments match its tool's parameters, as
// in the generic format.
type toolFormat struct {
	name string
	// markers are the format's texts that a vocabulary may hold as
	// added or control tokens: the grammar allows them as their text
	// (grammar.NewVocabWith), and the decoded reply keeps them.
	markers []string
	// trigger starts the calls; atStart: only at the reply's start,
	// after whitespace at most.
	trigger string
	atStart bool
	// argsKey is the key of a call's arguments.
	argsKey string
	// newID makes a call's id.
	newID func() string
	// shortIDs: the template takes call ids of 9 characters only
	// (Mistral's).
	shortIDs bool
	// nameText: a call's name is text before its JSON arguments, each
	// call after the trigger ("[TOOL_CALLS]" NAME "[ARGS]" {...});
	// callID: an id may come between them ("[CALL_ID]" ID).
	nameText, callID bool
	// xml: Qwen3-Coder's calls (xmlcalls.go).
	xml bool
	// glm: GLM's calls (glmcalls.go), sep what the template writes
	// after a call's name, a key and a value, and between calls.
	glm bool
	sep string
}

var (
	hermesFormat  = &toolFormat{name: "hermes", markers: []string{"<tool_call>", "</tool_call>"}, trigger: "<tool_call>", argsKey: "arguments", newID: newCallID}
	llama3Format  = &toolFormat{name: "llama3", trigger: "{", atStart: true, argsKey: "parameters", newID: newCallID}
	mistralFormat = &toolFormat{name: "mistral", markers: []string{"[TOOL_CALLS]"}, trigger: "[TOOL_CALLS]", argsKey: "arguments", newID: newMistralID, shortIDs: true}
	// (Their vocabularies hold [CALL_ID] either way.)
	mistralArgsFormat   = &toolFormat{name: "mistral-args", markers: []string{"[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"}, trigger: "[TOOL_CALLS]", argsKey: "arguments", newID: newMistralID, shortIDs: true, nameText: true}
	mistralCallIDFormat = &toolFormat{name: "mistral-call-id", markers: []string{"[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"}, trigger: "[TOOL_CALLS]", argsKey: "arguments", newID: newMistralID, shortIDs: true, nameText: true, callID: true}
)

var qwenXMLFormat = &toolFormat{name: "qwen3-xml", markers: []string{"<tool_call>", "</tool_call>"}, trigger: "<tool_call>", argsKey: "arguments", newID: newCallID, xml: true}

// GLM's formats: GLM-4.5's and 4.6's calls, and GLM-4.7's, which have no
// newlines.
var (
	glmMarkers  = []string{"<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"}
	glm45Format = &toolFormat{name: "glm45", markers: glmMarkers, trigger: "<tool_call>", argsKey: "arguments", newID: newCallID, glm: true, sep: "\n"}
	glm47Format = &toolFormat{name: "glm47", markers: glmMarkers, trigger: "<tool_call>", argsKey: "arguments", newID: newCallID, glm: true}
)

// mistralIDPattern is a Mistral call id (mistral-common's: 9 letters and
// digits).
const mistralIDPattern = "[a-zA-Z0-9]{9}"

// formatProbe is a conversation with one call, which detectToolFormat
// renders to see how the template writes calls (as llama.cpp probes a
// template's capabilities); its id has the 9 characters Mistral's
// templates require.
var formatProbe = []tokenizer.Message{{Role: "user", Content: "Hi"},
	{Role: "assistant", ToolCalls: []tokenizer.ToolCall{{ID: "call00001", Name: "probe_tool", Arguments: `{"arg": "value"}`}}},
	{Role: "tool", ToolCallID: "call00001", Name: "probe_tool", Content: "ok"}}

const formatProbeTools = `[{"type": "function", "function": {"name": "probe_tool", "description": "A probe.", "parameters": {"type": "object", "properties": {"arg": {"type": "string"}}, "required": ["arg"]}}}]`

// formatCache holds detectToolFormat's answer by template text.
var formatCache sync.Map

// detectToolFormat returns the tool-call format of t's chat template, nil
// for the generic one: the format in which the template writes formatProbe's
// call (a template that fails on it, or writes it otherwise, is generic).
func detectToolFormat(t *tokenizer.Tokenizer) *toolFormat {
	src := t.ChatTemplate()
	if name, err := t.TemplateName(tokenizer.ChatOptions{}); err != nil || name != tokenizer.JinjaTemplate {
		return nil
	}
	if f, ok := formatCache.Load(src); ok {
		return f.(*toolFormat)
	}
	var f *toolFormat
	text, err := t.RenderChat(formatProbe, tokenizer.ChatOptions{Tools: []byte(formatProbeTools)})
	switch {
	case err != nil:
	case strings.Contains(text, "<tool_call>\n{\"name\": \"probe_tool\", \"arguments\": {\"arg\": \"value\"}}\n</tool_call>"):
		f = hermesFormat
	case strings.Contains(text, `{"name": "probe_tool", "parameters": {"arg": "value"}}`):
		f = llama3Format
	case strings.Contains(text, `[TOOL_CALLS][{"name": "probe_tool", "arguments": {"arg": "value"}`):
		f = mistralFormat
	case strings.Contains(text, `[TOOL_CALLS]probe_tool[ARGS]{"arg": "value"}`):
		f = mistralArgsFormat
	case strings.Contains(text, `[TOOL_CALLS]probe_tool[CALL_ID]call00001[ARGS]{"arg": "value"}`):
		f = mistralCallIDFormat
	case strings.Contains(text, "<tool_call>\n<function=probe_tool>\n<parameter=arg>\nvalue\n</parameter>\n</function>\n</tool_call>"):
		f = qwenXMLFormat
	case strings.Contains(text, "<tool_call>probe_tool\n<arg_key>arg</arg_key>\n<arg_value>value</arg_value>\n</tool_call>"):
		f = glm45Format
	case strings.Contains(text, "<tool_call>probe_tool<arg_key>arg</arg_key><arg_value>value</arg_value></tool_call>"):
		f = glm47Format
	}
	formatCache.Store(src, f)
	return f
}

// backendFormat is the tool-call format of b's chat template (nil: the
// generic format; so under an openchat template).
func backendFormat(b *Backend) *toolFormat {
	if b.Chat.Template != "" {
		return nil
	}
	return detectToolFormat(b.Tokenizer)
}

// requestFormat is the format req's chat is rendered and read in: the
// backend's, but the generic one under an openchat condition.
func requestFormat(b *Backend, req *openai.Request) *toolFormat {
	if req.Condition != "" {
		return nil
	}
	return backendFormat(b)
}

// keepIDs are the special tokens of markers (a format's, the reasoning
// block's) in t's vocabulary, by id, with their text: the decoded reply
// keeps them where it leaves other special tokens out.
func keepIDs(t *tokenizer.Tokenizer, markers []string) map[int]string {
	keep := map[int]string{}
	for _, m := range markers {
		if id, ok := t.TokenID(m); ok && t.IsSpecial(id) {
			keep[id] = m
		}
	}
	return keep
}

// newMistralID returns a Mistral call id: 9 random letters and digits (as
// vLLM's MistralToolCall).
func newMistralID() string { return randomID("", 9) }

// templateTools is req's tools as a chat template takes them (OpenAI's
// list: {"type": "function", "function": {"name", "description",
// "parameters"}}), nil where the reply calls none.
func templateTools(req *openai.Request) []byte {
	if !req.CallsTools() {
		return nil
	}
	type function struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Parameters  json.RawMessage `json:"parameters"`
	}
	type tool struct {
		Type     string   `json:"type"`
		Function function `json:"function"`
	}
	list := make([]tool, len(req.Tools))
	for i, t := range req.Tools {
		list[i] = tool{"function", function{t.Name, t.Description, t.Parameters}}
	}
	return []byte(compactJSON(list))
}

// nativeMessages turns a chat request's messages into the template's as
// they are: an assistant message's calls as tool_calls, a tool message
// with its tool_call_id and the name of the earlier call of that id. In
// Mistral's formats an id longer than the 9 characters their templates
// take (another server's, call_…) is cut to its last 9, as vLLM cuts it.
func nativeMessages(req *openai.Request, f *toolFormat) (msgs []tokenizer.Message, from []int) {
	id := func(s string) string {
		if f.shortIDs && len(s) > 9 {
			return s[len(s)-9:]
		}
		return s
	}
	names := map[string]string{}
	for i, m := range req.Messages {
		tm := tokenizer.Message{Role: m.Role, Content: m.Content, ToolCallID: id(m.ToolCallID), ReasoningContent: m.ReasoningContent}
		if m.Role == "tool" {
			tm.Name = names[m.ToolCallID]
		}
		for _, c := range m.ToolCalls {
			args := strings.TrimSpace(c.Arguments)
			if args == "" {
				args = "{}"
			}
			tm.ToolCalls = append(tm.ToolCalls, tokenizer.ToolCall{ID: id(c.ID), Name: c.Name, Arguments: args})
			if c.ID != "" {
				names[c.ID] = c.Name
			}
		}
		msgs = append(msgs, tm)
		from = append(from, i)
	}
	return msgs, from
}

// nativeCallSchema is the JSON Schema of one call of f (Hermes', Llama
// 3's) or of the list of calls (Mistral's): {"name": {"const": NAME},
// f.argsKey: PARAMETERS} for each tool tool_choice allows, their
// parameters under $defs (as toolSchema), a Mistral call's model-written
// id optional.
func nativeCallSchema(req *openai.Request, f *toolFormat) ([]byte, error) {
	if f.xml {
		return xmlCallSchema(req)
	}
	if f.glm {
		return glmCallSchema(req)
	}
	defs, calls, err := toolDefs(req, f.argsKey, f == mistralFormat)
	if err != nil {
		return nil, err
	}
	anyOf := fmt.Sprintf(`"anyOf":[%s]`, strings.Join(calls, ","))
	if f != mistralFormat {
		return []byte(fmt.Sprintf(`{"$defs":{%s},%s}`, defs, anyOf)), nil
	}
	list := fmt.Sprintf(`"type":"array","items":{%s},"minItems":1`, anyOf)
	if req.ToolChoice == openai.ToolChoiceFunction || !req.ParallelToolCalls {
		list += `,"maxItems":1`
	}
	return []byte(fmt.Sprintf(`{"$defs":{%s},%s}`, defs, list)), nil
}

// nativeGrammar compiles what constrains a reply of f to req's tools: a
// grammar.Sequence of the format's texts and calls, and, under
// tool_choice auto, the trigger that starts it. Where the name is text
// (mistral-args), a call is one of the allowed tools' texts, each
// followed by its own parameters (a grammar.Part's Ref into the schema).
func nativeGrammar(gc *grammar.Compiler, req *openai.Request, f *toolFormat, v *grammar.Vocab) (*grammar.Grammar, error) {
	schema, err := nativeCallSchema(req, f)
	if err != nil {
		return nil, err
	}
	if f.xml {
		return xmlGrammar(gc, req, v)
	}
	if f.glm {
		return glmGrammar(gc, req, f, v)
	}
	call := grammar.Part{Value: true}
	var parts, loop []grammar.Part
	if f.nameText {
		var alts [][]grammar.Part
		for i, t := range req.Tools {
			if req.ToolChoice == openai.ToolChoiceFunction && t.Name != req.ToolName {
				continue
			}
			args := grammar.Part{Ref: "#/$defs/" + toolDef(i)}
			alts = append(alts, []grammar.Part{{Text: f.trigger + t.Name + "[ARGS]"}, args})
			if f.callID {
				alts = append(alts, []grammar.Part{{Text: f.trigger + t.Name + "[CALL_ID]"}, {Pattern: mistralIDPattern}, {Text: "[ARGS]"}, args})
			}
		}
		parts = []grammar.Part{{Alts: alts}}
		if req.ToolChoice != openai.ToolChoiceFunction && req.ParallelToolCalls {
			loop = parts
		}
		return gc.Sequence(schema, parts, loop, v)
	}
	switch f {
	case hermesFormat:
		parts = []grammar.Part{{Text: "<tool_call>\n"}, call, {Text: "\n</tool_call>"}}
		if req.ToolChoice != openai.ToolChoiceFunction && req.ParallelToolCalls {
			loop = []grammar.Part{{Text: "\n<tool_call>\n"}, call, {Text: "\n</tool_call>"}}
		}
	case mistralFormat:
		parts = []grammar.Part{{Text: "[TOOL_CALLS]"}, call}
	default:
		parts = []grammar.Part{call}
	}
	return gc.Sequence(schema, parts, loop, v)
}

// nativeScanner reads a reply of a native format as it is generated and
// says what a stream sends for each piece: the text before the calls as
// content (a possible start of the trigger, and whitespace before it,
// held until what follows says; whitespace before the calls is left
// out), and each call's id and name once its name is read and its
// arguments as they come (a replyScanner reads the calls' JSON as the
// generic format's {"tool_calls": [...]}).
type nativeScanner struct {
	f     *toolFormat
	phase uint8
	held  string          // free text not yet sent
	sent  strings.Builder // the content sent
	// calls reads the calls' JSON; opened: its {"tool_calls": [ is fed;
	// seen holds text after a Hermes call, where the next may start.
	calls  *replyScanner
	opened bool
	seen   string
	raw    strings.Builder // the whole reply
	// name and id are a text-named call's (nameText) as read so far.
	name, id string
	// xml reads Qwen3-Coder's calls, paramTypes the types of the
	// request's tools' parameters (toolParamTypes).
	xml        xmlCalls
	paramTypes map[string]map[string]string
	// glm reads GLM's calls (paramTypes: glmParamTypes).
	glm glmCalls
}

// Phases of a nativeScanner.
const (
	nsFree    = iota // before the trigger
	nsText           // text that no call can follow (Llama 3's, once not JSON)
	nsOpen           // after the trigger, before the call's (list's) first byte
	nsJSON           // in a call's JSON (Mistral: the list's)
	nsBetween        // after a call: the next one's trigger, or the end
	nsName           // in a call's name (nameText), up to [ARGS] or [CALL_ID]
	nsID             // in a call's id, up to [ARGS]
)

// newNativeScanner returns a scanner of a reply of f to a request with
// tools (which qwen3-xml reads parameter values by).
func newNativeScanner(f *toolFormat, tools []openai.Tool) *nativeScanner {
	s := &nativeScanner{f: f, calls: newReplyScanner(f.newID)}
	s.calls.argsKey = f.argsKey
	switch {
	case f.xml:
		s.paramTypes = toolParamTypes(tools)
	case f.glm:
		s.paramTypes = glmParamTypes(tools)
	}
	return s
}

// Feed reads the next piece of the reply, as replyScanner.Feed.
func (s *nativeScanner) Feed(piece string) (content string, deltas []openai.ToolCallDelta) {
	s.raw.WriteString(piece)
	s.calls.content.Reset()
	s.calls.deltas = nil
	var out strings.Builder
	switch s.phase {
	case nsText:
		out.WriteString(piece)
	case nsFree:
		text := s.held + piece
		s.held = ""
		if s.f.atStart {
			t := strings.TrimLeft(text, " \t\r\n")
			switch {
			case t == "":
				s.held = text
			case strings.HasPrefix(t, s.f.trigger):
				s.phase = nsOpen
				s.json(t)
			default:
				s.phase = nsText
				out.WriteString(text)
			}
			break
		}
		if i := strings.Index(text, s.f.trigger); i >= 0 {
			out.WriteString(strings.TrimRight(text[:i], " \t\r\n"))
			s.phase = nsOpen
			s.json(text[i+len(s.f.trigger):])
			break
		}
		// Hold a possible start of the trigger, and whitespace
		// before it.
		keep := len(text)
		for n := min(len(s.f.trigger)-1, len(text)); n > 0; n-- {
			if strings.HasSuffix(text, s.f.trigger[:n]) {
				keep = len(text) - n
				break
			}
		}
		keep = len(strings.TrimRight(text[:keep], " \t\r\n"))
		out.WriteString(text[:keep])
		s.held = text[keep:]
	default:
		s.json(piece)
	}
	s.calls.flushArgs()
	s.sent.WriteString(out.String())
	return out.String(), s.calls.deltas
}

// json reads text after the trigger: the calls' JSON, and between Hermes
// calls the next one's trigger.
func (s *nativeScanner) json(text string) {
	if s.f.xml || s.f.glm {
		s.xmlText(text)
		return
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch s.phase {
		case nsOpen, nsName:
			if s.f.nameText {
				s.phase = nsName
				s.name += string(c)
				if name, ok := strings.CutSuffix(s.name, "[ARGS]"); ok {
					s.startCall(name, "")
				} else if name, ok := strings.CutSuffix(s.name, "[CALL_ID]"); ok {
					s.name, s.id, s.phase = name, "", nsID
				}
				continue
			}
			start := byte('{')
			if s.f == mistralFormat {
				start = '['
			}
			if c != start {
				continue // (whitespace; the grammar allows no other)
			}
			switch {
			case s.f == mistralFormat:
				s.feed(`{"tool_calls":`)
			case !s.opened:
				s.feed(`{"tool_calls":[`)
			default:
				s.feed(",")
			}
			s.opened = true
			s.phase = nsJSON
			s.calls.byte(c)
		case nsID:
			s.id += string(c)
			if id, ok := strings.CutSuffix(s.id, "[ARGS]"); ok {
				s.startCall(s.name, id)
			}
		case nsJSON:
			s.calls.byte(c)
			// A call ends where its object closes (Mistral: the list;
			// a text-named call: its arguments, in the object the
			// scanner opened).
			n := len(s.calls.stack)
			switch {
			case s.f == mistralFormat && n == 1:
				s.phase = nsBetween
				s.feed("}")
			case s.f.nameText && n == 3 && s.calls.state == stNext:
				s.phase = nsBetween
				s.feed("}")
			case s.f != mistralFormat && !s.f.nameText && n == 2 && s.calls.state == stNext:
				s.phase = nsBetween
			}
		case nsBetween:
			if s.f != hermesFormat && !s.f.nameText {
				continue
			}
			s.seen += string(c)
			if len(s.seen) > len(s.f.trigger) {
				s.seen = s.seen[1:]
			}
			if strings.HasSuffix(s.seen, s.f.trigger) {
				s.seen = ""
				s.phase = nsOpen
			}
		}
	}
}

// xmlText reads text after the trigger in Qwen3-Coder's format or GLM's:
// a call, and between calls the next one's trigger.
func (s *nativeScanner) xmlText(text string) {
	for text != "" {
		if s.phase != nsBetween {
			s.phase = nsJSON
			var done bool
			var rest string
			if s.f.glm {
				done, rest = s.glm.feed(s, text)
			} else {
				done, rest = s.xml.feed(s, text)
			}
			if !done {
				return
			}
			s.phase, text = nsBetween, rest
			continue
		}
		s.seen += text
		i := strings.Index(s.seen, s.f.trigger)
		if i < 0 {
			s.seen = s.seen[max(0, len(s.seen)-len(s.f.trigger)+1):]
			return
		}
		text = s.seen[i+len(s.f.trigger):]
		s.seen, s.phase = "", nsOpen
	}
}

// startCall reads a text-named call's name and id (the model's, or "":
// the format's new one) and goes on to its arguments, which the
// replyScanner reads as a call's of the generic format.
func (s *nativeScanner) startCall(name, id string) {
	if id != "" {
		s.calls.newID = func() string { return id }
	}
	s.openCall(name)
	s.calls.newID = s.f.newID
	s.name, s.id, s.phase = "", "", nsJSON
}

// openCall feeds the generic format's text up to a call's arguments: the
// calls' opening (or the comma after the call before) and the call's name.
func (s *nativeScanner) openCall(name string) {
	if s.opened {
		s.feed(",")
	} else {
		s.feed(`{"tool_calls":[`)
	}
	s.opened = true
	s.feed(`{"name":` + compactJSON(name) + `,"arguments":`)
}

func (s *nativeScanner) feed(text string) {
	for i := 0; i < len(text); i++ {
		s.calls.byte(text[i])
	}
}

// Finish is the text held at the reply's end: free text that turned out
// not to start the trigger (none once calls came).
func (s *nativeScanner) Finish() string {
	if s.phase != nsFree {
		return ""
	}
	out := s.held
	s.held = ""
	s.sent.WriteString(out)
	return out
}

// Done says whether the reply's calls are complete (the reply is calls,
// not text; cut midway, it is neither).
func (s *nativeScanner) Done() bool { return s.phase == nsBetween }

// Form is "tool_calls" for a reply of calls, "response" otherwise.
func (s *nativeScanner) Form() string {
	if s.Done() {
		return "tool_calls"
	}
	return "response"
}

// Calls are the calls read so far.
func (s *nativeScanner) Calls() []openai.ToolCall { return s.calls.Calls() }

// message is the whole reply's message and finish reason: its calls and
// the text before them (null where none), or, where no call came, the
// text; a reply whose calls were cut (max_tokens), or are not JSON calls
// (which the grammar makes none of), is its raw text, as vLLM gives it,
// and finish as it is.
func (s *nativeScanner) message(finish, callsFinish string) (openai.ChatMessage, string) {
	m := openai.ChatMessage{Role: "assistant"}
	valid := len(s.Calls()) > 0
	for _, c := range s.Calls() {
		valid = valid && c.Function.Name != "" && json.Valid([]byte(c.Function.Arguments))
	}
	switch {
	case s.Done() && valid:
		if text := s.sent.String(); text != "" {
			m.Content = &text
		}
		m.ToolCalls = s.Calls()
		return m, callsFinish
	case s.phase != nsFree && s.phase != nsText:
		text := s.raw.String()
		m.Content = &text
		return m, finish
	}
	text := s.sent.String()
	m.Content = &text
	return m, finish
}

// nativeMessage reads a whole reply of f (nativeScanner.message).
func nativeMessage(f *toolFormat, tools []openai.Tool, text, finish, callsFinish string) (openai.ChatMessage, string) {
	s := newNativeScanner(f, tools)
	s.Feed(text)
	s.Finish()
	return s.message(finish, callsFinish)
}
