package server

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/gptqtool/gptqtool/runtime/server/openai"
)

// replyScanner reads a tool-calling reply (the generic format of tools.go:
// {"tool_calls": [{"name": ..., "arguments": ...}, ...]} or {"response":
// "..."}) as it is generated, piece by piece, and says what a stream
// sends for each piece: the response's text, decoded as encoding/json
// decodes the whole string (escapes split across pieces, \uXXXX and
// surrogate pairs included), and each call's name once it is known and its
// arguments as they come, with the whitespace between JSON tokens left
// out (json.Compact's text). The grammar makes the shape; text of another
// shape is read as JSON still and what has no place in the format is left
// out, never a panic.
type replyScanner struct {
	stack []scope // the open objects and arrays, outermost first
	state scanState
	str   jsonString // the string being read (state stInString)
	// key is a string read as an object's key (else a value).
	key  bool
	done bool // the root value is complete

	// form is the root's key, "tool_calls" or "response", once read.
	form string
	// calls are the calls so far, each complete once its object closes;
	// a call is counted once its name is read, call is the last one's
	// index (-1 before the first).
	call  int
	calls []openai.ToolCall
	// inCall: a call's object is being read; named: its name is read
	// and its header (id and name) sent; args holds the arguments' text
	// not yet sent; inArgs: the arguments value is being read,
	// argsDepth its depth.
	inCall    bool
	named     bool
	args      strings.Builder
	inArgs    bool
	argsDepth int
	// full is the current call's arguments so far (calls[call] gets it
	// at the end of each piece).
	full []byte

	// out collects one piece's output.
	content strings.Builder
	deltas  []openai.ToolCallDelta
	// newID makes the id of each call (newCallID; tests give their own).
	newID func() string
	// argsKey is the key of a call's arguments: "arguments", or Llama
	// 3's "parameters" (nativeScanner).
	argsKey string
}

// scope is an open object (its current key) or array (its items so far).
type scope struct {
	object bool
	key    string
	items  int
}

type scanState uint8

const (
	stValue    scanState = iota // a value (or, after '[', the array's end)
	stKey                       // an object's key (or, after '{', its end)
	stColon                     // the ':' after a key
	stNext                      // ',' or the end of the innermost scope
	stInString                  // inside a string
	stInScalar                  // inside a number or a literal
	stAfter                     // after the root value
)

func newReplyScanner(newID func() string) *replyScanner {
	return &replyScanner{call: -1, newID: newID, argsKey: "arguments"}
}

// Feed reads the next piece of the reply and returns the response text it
// completes and the tool call deltas it makes: a call's first delta
// carries its id, type and name with arguments "", the next ones pieces of
// its arguments.
func (s *replyScanner) Feed(piece string) (content string, deltas []openai.ToolCallDelta) {
	s.content.Reset()
	s.deltas = nil
	for i := 0; i < len(piece); i++ {
		s.byte(piece[i])
	}
	if s.inResponse() {
		// The decoded text, but a character not yet complete (held for
		// the next piece).
		s.content.WriteString(s.str.take(false))
	}
	s.flushArgs()
	return s.content.String(), s.deltas
}

// Finish is the text held at the reply's end: none (a response's text
// is sent as it comes).
func (s *replyScanner) Finish() string { return "" }

// Done says whether the reply is complete JSON.
func (s *replyScanner) Done() bool { return s.done }

// Form is the root's key, "tool_calls" or "response" ("" before it).
func (s *replyScanner) Form() string { return s.form }

// Calls are the tool calls read so far (the last one's arguments may be
// incomplete until Done).
func (s *replyScanner) Calls() []openai.ToolCall { return s.calls }

// The reply's parts are found by where they are in it:

// inResponse: the string being read is the root's "response" value.
func (s *replyScanner) inResponse() bool {
	return s.state == stInString && !s.key && len(s.stack) == 1 && s.stack[0].key == "response"
}

// atCall: the value starting now is an item of the root's tool_calls.
func (s *replyScanner) atCall() bool {
	return len(s.stack) == 2 && s.stack[0].key == "tool_calls" && !s.stack[1].object
}

// atCallField: the value starting now is field k of a call.
func (s *replyScanner) atCallField(k string) bool {
	return len(s.stack) == 3 && s.stack[0].key == "tool_calls" && !s.stack[1].object && s.stack[2].object && s.stack[2].key == k
}

// byte reads one byte of the reply.
func (s *replyScanner) byte(c byte) {
	switch s.state {
	case stInString:
		s.keep(c)
		if s.str.add(c) {
			s.endString()
		}
		return
	case stInScalar:
		if !isDelim(c) {
			s.keep(c)
			return
		}
		s.endValue()
		// The delimiter is read in the state the value's end left.
	}
	if isSpace(c) {
		return
	}
	switch s.state {
	case stValue:
		if c == ']' && len(s.stack) > 0 && !s.top().object && s.top().items == 0 {
			s.close(c)
			return
		}
		s.startValue(c)
	case stKey:
		switch {
		case c == '"':
			s.keep(c)
			s.str.reset()
			s.key, s.state = true, stInString
		case c == '}' && len(s.stack) > 0 && s.top().object:
			s.close(c)
		}
	case stColon:
		if c == ':' {
			s.keep(c)
			s.state = stValue
		}
	case stNext:
		if len(s.stack) == 0 {
			return
		}
		switch t := s.top(); {
		case c == ',':
			s.keep(c)
			if t.object {
				s.state = stKey
			} else {
				s.state = stValue
			}
		case c == '}' && t.object, c == ']' && !t.object:
			s.close(c)
		}
	}
}

func (s *replyScanner) top() *scope { return &s.stack[len(s.stack)-1] }

// startValue reads the first byte of a value.
func (s *replyScanner) startValue(c byte) {
	if s.atCall() {
		s.flushArgs() // (the call before's last arguments)
		s.inCall, s.named = c == '{', false
		s.args.Reset()
		s.full = s.full[:0]
	}
	if s.atCallField(s.argsKey) && s.inCall {
		s.inArgs, s.argsDepth = true, len(s.stack)
	}
	if len(s.stack) > 0 && !s.top().object {
		s.top().items++
	}
	s.keep(c)
	switch c {
	case '{':
		s.stack = append(s.stack, scope{object: true})
		s.state = stKey
	case '[':
		s.stack = append(s.stack, scope{})
		s.state = stValue
	case '"':
		s.str.reset()
		s.key, s.state = false, stInString
	default:
		s.state = stInScalar
	}
}

// close reads the '}' or ']' that closes the innermost scope.
func (s *replyScanner) close(c byte) {
	s.keep(c)
	s.stack = s.stack[:len(s.stack)-1]
	s.endValue()
}

// endString ends the string being read: a key, or a value.
func (s *replyScanner) endString() {
	if s.key {
		k := s.str.take(true)
		if len(s.stack) > 0 {
			s.top().key = k
		}
		if len(s.stack) == 1 && s.form == "" {
			s.form = k
		}
		s.key, s.state = false, stColon
		return
	}
	if s.inResponse() {
		s.content.WriteString(s.str.take(true))
	} else if s.atCallField("name") && s.inCall && !s.named {
		name := s.str.take(true)
		s.calls = append(s.calls, openai.ToolCall{ID: s.newID(), Type: "function", Function: openai.FunctionCall{Name: name}})
		s.call = len(s.calls) - 1
		s.deltas = append(s.deltas, openai.ToolCallDelta{Index: s.call, ID: s.calls[s.call].ID, Type: "function", Function: openai.FunctionDelta{Name: name}})
		s.named = true
		s.flushArgs() // (arguments read before the name)
	}
	s.endValue()
}

// endValue ends a value: the state goes on in its scope, or the reply is
// complete.
func (s *replyScanner) endValue() {
	if s.inArgs && len(s.stack) == s.argsDepth {
		s.inArgs = false
	}
	if len(s.stack) == 0 {
		s.done, s.state = true, stAfter
		return
	}
	s.state = stNext
}

// keep adds a byte of the reply's JSON tokens (no whitespace between
// them) to the arguments being read.
func (s *replyScanner) keep(c byte) {
	if s.inArgs {
		s.args.WriteByte(c)
		s.full = append(s.full, c)
	}
}

// flushArgs sends the arguments read since the last delta, once the
// call's header is out.
func (s *replyScanner) flushArgs() {
	if !s.named {
		return
	}
	s.calls[s.call].Function.Arguments = string(s.full)
	if s.args.Len() > 0 {
		s.deltas = append(s.deltas, openai.ToolCallDelta{Index: s.call, Function: openai.FunctionDelta{Arguments: s.args.String()}})
		s.args.Reset()
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isDelim(c byte) bool { return isSpace(c) || c == ',' || c == ']' || c == '}' }

// jsonString decodes a JSON string's content byte by byte, as
// encoding/json decodes it: escapes, \uXXXX with surrogate pairs joined
// (a surrogate without its pair is U+FFFD), and invalid UTF-8 as U+FFFD
// per byte. It holds what may still change: a high surrogate waiting for
// its pair, a character whose bytes are not all in.
type jsonString struct {
	out  []byte // decoded, not yet taken
	esc  int    // 0: none; 1: after '\'; 2 to 5: the hex digits of \u read
	u    rune   // the \u escape's value so far
	high rune   // a high surrogate waiting for its low half (0: none)
}

func (j *jsonString) reset() { *j = jsonString{out: j.out[:0]} }

// add reads one byte after the opening quote; it returns true at the
// closing quote.
func (j *jsonString) add(c byte) bool {
	switch {
	case j.esc == 1:
		j.esc = 0
		if c == 'u' {
			j.esc, j.u = 2, 0
			return false
		}
		j.unpair()
		if r, ok := escapes[c]; ok {
			j.out = append(j.out, r)
		} else {
			j.out = append(j.out, c) // (not JSON: the grammar makes none)
		}
		return false
	case j.esc >= 2:
		j.u = j.u<<4 | rune(hexValue(c))
		if j.esc++; j.esc == 6 {
			j.esc = 0
			j.rune(j.u)
		}
		return false
	case c == '\\':
		j.esc = 1
		return false
	}
	j.unpair()
	if c == '"' {
		return true
	}
	j.out = append(j.out, c)
	return false
}

var escapes = map[byte]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

// rune adds a \u escape's code unit.
func (j *jsonString) rune(r rune) {
	if j.high != 0 {
		high := j.high
		j.high = 0
		if p := utf16.DecodeRune(high, r); p != utf8.RuneError {
			j.out = utf8.AppendRune(j.out, p)
			return
		}
		j.out = utf8.AppendRune(j.out, utf8.RuneError)
	}
	switch {
	case r >= 0xD800 && r < 0xDC00:
		j.high = r
	case utf16.IsSurrogate(r):
		j.out = utf8.AppendRune(j.out, utf8.RuneError)
	default:
		j.out = utf8.AppendRune(j.out, r)
	}
}

// unpair ends a high surrogate that no low half follows.
func (j *jsonString) unpair() {
	if j.high != 0 {
		j.high = 0
		j.out = utf8.AppendRune(j.out, utf8.RuneError)
	}
}

func hexValue(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 0 // (not JSON: the grammar makes none)
}

// take returns the text decoded so far and forgets it; but for final, an
// incomplete character at its end stays for the next bytes. Invalid UTF-8
// is U+FFFD per byte, as encoding/json has it.
func (j *jsonString) take(final bool) string {
	n := len(j.out)
	if !final {
		// Back to the start of a last character that is not complete.
		for k := 1; k <= utf8.UTFMax-1 && k <= n; k++ {
			if c := j.out[n-k]; c < utf8.RuneSelf {
				break
			} else if utf8.RuneStart(c) {
				if !utf8.FullRune(j.out[n-k:]) {
					n -= k
				}
				break
			}
		}
	}
	var b strings.Builder
	for rest := j.out[:n]; len(rest) > 0; {
		r, size := utf8.DecodeRune(rest)
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.Write(rest[:size])
		}
		rest = rest[size:]
	}
	j.out = append(j.out[:0], j.out[n:]...)
	return b.String()
}

// toolReply is a complete tool-calling reply's meaning: the calls it
// makes, or (calls nil) its response text.
type toolReply struct {
	calls    []openai.FunctionCall
	response string
}

// parseReply reads a whole tool-calling reply with encoding/json; ok is
// false where it is not one (cut by max_tokens, a stop string).
func parseReply(text string) (r toolReply, ok bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal([]byte(text), &top) != nil || len(top) != 1 || repeatsKey(text) {
		return r, false
	}
	if raw, ok := top["response"]; ok {
		return r, json.Unmarshal(raw, &r.response) == nil
	}
	// (Maps, not structs: encoding/json matches a struct's keys without
	// case.)
	var calls []json.RawMessage
	if json.Unmarshal(top["tool_calls"], &calls) != nil || len(calls) == 0 {
		return r, false
	}
	for _, raw := range calls {
		var c map[string]json.RawMessage
		var name string
		if json.Unmarshal(raw, &c) != nil || repeatsKey(string(raw)) || len(c) != 2 || c["arguments"] == nil ||
			!bytes.HasPrefix(c["name"], []byte(`"`)) || json.Unmarshal(c["name"], &name) != nil {
			return r, false
		}
		r.calls = append(r.calls, openai.FunctionCall{Name: name, Arguments: compactText(c["arguments"])})
	}
	return r, true
}

// repeatsKey says whether the object of JSON text has one of its own keys
// twice (which encoding/json takes, the last value winning, where the
// scanner reads the first): the reply's root and call objects. Keys
// repeated deeper, in a call's arguments, are the arguments' text, sent
// as written either way.
func repeatsKey(text string) bool {
	dec := json.NewDecoder(strings.NewReader(text))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		k, _ := tok.(string)
		if seen[k] {
			return true
		}
		seen[k] = true
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
	return false
}

// compactText is a JSON text's compact form (the text itself where it is
// not JSON).
func compactText(text []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, text) != nil {
		return string(text)
	}
	return b.String()
}
