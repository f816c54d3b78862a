package calibrate

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
)

// rendered is one record made ready for the tokenizer: chat messages, or
// text (encoded with special tokens recognised when special is set).
type rendered struct {
	msgs    []tokenizer.Message
	text    string
	special bool
	// blank is set when every value the record contributed is empty or
	// whitespace only (template literals and chat roles do not count).
	blank bool
}

// renderer turns records into rendered items; skip reports a record with
// nothing to encode (null or empty text).
type renderer struct {
	kind string // describes the rendering in logs, e.g. "chat template over instruction/input/output"
	// cols are the column paths read as text, for the parquet schema check.
	cols []string
	fn   func(r Record) (out rendered, skip bool, err error)
}

// isBlank reports whether s is empty or whitespace only.
func isBlank(s string) bool { return strings.TrimSpace(s) == "" }

// Column names recognised for instruction rows, in order of preference.
var (
	userColumns      = []string{"instruction", "prompt", "question"}
	assistantColumns = []string{"output", "response", "completion", "answer"}
	chatColumns      = []string{"conversations", "messages"}
)

// newRenderer chooses how records become text from the options and the
// dataset's top-level columns (see the package documentation).
func newRenderer(opts Options, cols []string) (renderer, error) {
	has := map[string]bool{}
	for _, c := range cols {
		has[c] = true
	}
	if opts.Template != "" {
		parts, err := parseTemplate(opts.Template)
		if err != nil {
			return renderer{}, err
		}
		for _, p := range parts {
			if p.path != "" && !p.optional && !has[p.path] && !has[strings.SplitN(p.path, ".", 2)[0]] {
				return renderer{}, fmt.Errorf("template: column %q not found (columns: %s)", p.path, strings.Join(cols, ", "))
			}
		}
		var cols []string
		for _, p := range parts {
			if p.path != "" {
				cols = append(cols, p.path)
			}
		}
		return renderer{kind: "row template", cols: cols, fn: func(r Record) (rendered, bool, error) {
			s, blank, err := renderTemplate(parts, r)
			return rendered{text: s, special: true, blank: blank}, s == "", err
		}}, nil
	}
	if c := opts.TextColumn; c != "" {
		if !has[c] && !has[strings.SplitN(c, ".", 2)[0]] {
			return renderer{}, fmt.Errorf("text column %q not found (columns: %s)", c, strings.Join(cols, ", "))
		}
		return columnRenderer(c), nil
	}
	for _, c := range chatColumns {
		if has[c] {
			return columnRenderer(c), nil
		}
	}
	user, asst := first(has, userColumns), first(has, assistantColumns)
	if user != "" && asst != "" {
		return instructRenderer(user, asst, has["input"] && user == "instruction", has["system"]), nil
	}
	if has["text"] {
		return columnRenderer("text"), nil
	}
	return renderer{}, fmt.Errorf("%w: found no text column, instruction/output pair or conversation list; set a text column or a row template (columns: %s)", ErrNoTextColumn, strings.Join(cols, ", "))
}

func first(has map[string]bool, names []string) string {
	for _, n := range names {
		if has[n] {
			return n
		}
	}
	return ""
}

// instructRenderer renders instruction rows as one user turn (the
// instruction, then "\n" and the input when there is one, as Alpaca does)
// and one assistant turn, with an optional system turn first.
func instructRenderer(user, asst string, withInput, withSystem bool) renderer {
	kind := "chat template over " + user
	if withInput {
		kind += "/input"
	}
	kind += "/" + asst
	cols := []string{user}
	if withInput {
		cols = append(cols, "input")
	}
	cols = append(cols, asst)
	if withSystem {
		cols = append(cols, "system")
	}
	return renderer{kind: kind, cols: cols, fn: func(r Record) (rendered, bool, error) {
		// A record holding none of the columns (not even as null) has
		// another layout, e.g. a text file read beside instruction rows:
		// skipping it would drop that data unseen.
		if !hasAny(r.Fields, cols) {
			return rendered{}, false, fmt.Errorf("%s: no column %s (columns: %s): the dataset's records are rendered as instruction rows (%s, "+
				"chosen from the columns of all files) and this one has another layout: calibrate on files of one layout",
				r.where(), orList(cols), strings.Join(sortedKeys(r.Fields), ", "), kind)
		}
		get := func(col string) (string, error) {
			v, ok := lookup(r.Fields, col)
			if !ok {
				return "", nil
			}
			s, err := valueText(v)
			if err != nil {
				return "", fmt.Errorf("%s, column %q: %w", r.where(), col, err)
			}
			return s, nil
		}
		u, err := get(user)
		if err != nil {
			return rendered{}, false, err
		}
		if withInput {
			in, err := get("input")
			if err != nil {
				return rendered{}, false, err
			}
			if in != "" {
				if u != "" {
					u += "\n"
				}
				u += in
			}
		}
		a, err := get(asst)
		if err != nil {
			return rendered{}, false, err
		}
		if u == "" && a == "" {
			return rendered{}, true, nil
		}
		var msgs []tokenizer.Message
		blank := isBlank(u) && isBlank(a)
		if withSystem {
			s, err := get("system")
			if err != nil {
				return rendered{}, false, err
			}
			if s != "" {
				msgs = append(msgs, tokenizer.Message{Role: "system", Content: s})
				blank = blank && isBlank(s)
			}
		}
		msgs = append(msgs, tokenizer.Message{Role: "user", Content: u})
		if a != "" {
			msgs = append(msgs, tokenizer.Message{Role: "assistant", Content: a})
		}
		return rendered{msgs: msgs, blank: blank}, false, nil
	}}
}

// hasAny reports whether fields hold at least one of the column paths.
func hasAny(fields map[string]any, cols []string) bool {
	for _, c := range cols {
		if _, ok := lookup(fields, c); ok {
			return true
		}
	}
	return false
}

// orList joins names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// columnRenderer renders one column (a dotted path): a list of turns
// ({from, value} or {role, content}) through the chat template, anything
// else as plain text.
func columnRenderer(col string) renderer {
	return renderer{kind: "column " + col, cols: []string{col}, fn: func(r Record) (rendered, bool, error) {
		v, ok := lookup(r.Fields, col)
		if !ok {
			return rendered{}, false, fmt.Errorf("%s, column %q not found (columns: %s)", r.where(), col, strings.Join(sortedKeys(r.Fields), ", "))
		}
		if msgs, isChat, err := turns(v); isChat {
			if err != nil {
				return rendered{}, false, fmt.Errorf("%s, column %q: %w", r.where(), col, err)
			}
			blank := true
			for _, m := range msgs {
				blank = blank && isBlank(m.Content)
			}
			return rendered{msgs: msgs, blank: blank}, len(msgs) == 0, nil
		}
		s, err := valueText(v)
		if err != nil {
			return rendered{}, false, fmt.Errorf("%s, column %q: %w", r.where(), col, err)
		}
		return rendered{text: s, blank: isBlank(s)}, s == "", nil
	}}
}

// roles maps ShareGPT and OpenAI speaker names to chat-template roles.
var roles = map[string]string{
	"human": "user", "user": "user",
	"gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bot": "assistant", "model": "assistant",
	"system": "system",
}

// turns converts a list of {from, value} or {role, content} objects into
// chat messages. isChat is false when v is not such a list (an empty list
// counts as one, with no messages).
func turns(v any) (msgs []tokenizer.Message, isChat bool, err error) {
	list, ok := v.([]any)
	if !ok {
		return nil, false, nil
	}
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			if i == 0 {
				return nil, false, nil
			}
			return nil, true, fmt.Errorf("turn %d: want an object, got %s", i, jsonKind(e))
		}
		role, rok := pick(m, "role", "from")
		content, cok := pick(m, "content", "value")
		if !rok || !cok {
			if i == 0 {
				return nil, false, nil
			}
			return nil, true, fmt.Errorf("turn %d: want fields from/value or role/content, got %s", i, strings.Join(sortedKeys(m), ", "))
		}
		rs, err := valueText(role)
		if err != nil {
			return nil, true, fmt.Errorf("turn %d: role: %w", i, err)
		}
		cs, err := valueText(content)
		if err != nil {
			return nil, true, fmt.Errorf("turn %d: content: %w", i, err)
		}
		if r, ok := roles[strings.ToLower(rs)]; ok {
			rs = r
		}
		msgs = append(msgs, tokenizer.Message{Role: rs, Content: cs})
	}
	return msgs, true, nil
}

func pick(m map[string]any, keys ...string) (any, bool) {
	for _, k := range keys {
		if v, ok := m[k]; ok {
			return v, true
		}
	}
	return nil, false
}

// lookup resolves a dotted column path: struct fields by name, lists
// element-wise (giving a list), and the "list"/"element"/"item" levels of
// parquet LIST columns skipped, so that both "conversations.value" and
// "conversations.list.element.value" address the values of a list of
// structs. A name holding dots is matched whole first.
func lookup(fields map[string]any, path string) (any, bool) {
	if v, ok := fields[path]; ok {
		return v, true
	}
	head, rest, found := strings.Cut(path, ".")
	if !found {
		return nil, false
	}
	v, ok := fields[head]
	if !ok {
		return nil, false
	}
	return lookupIn(v, rest)
}

func lookupIn(v any, path string) (any, bool) {
	if path == "" {
		return v, true
	}
	switch v := v.(type) {
	case map[string]any:
		return lookup(v, path)
	case []any:
		head, rest, _ := strings.Cut(path, ".")
		if head == "list" || head == "element" || head == "item" {
			return lookupIn(v, rest)
		}
		out := make([]any, 0, len(v))
		for _, e := range v {
			x, ok := lookupIn(e, path)
			if !ok {
				return nil, false
			}
			out = append(out, x)
		}
		return out, true
	case nil:
		return nil, true // a null struct: its fields are null too
	}
	return nil, false
}

// valueText returns the text of a value read from a column used as text: a
// string as is, null as empty, a list of those (nested lists too) joined
// with newlines, empty elements dropped. Anything else is not text and is
// an error that says what was found: a number, boolean, object (struct),
// binary value or other type.
func valueText(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case []any:
		var parts []string
		for i, e := range v {
			s, err := valueText(e)
			if err != nil {
				return "", fmt.Errorf("element %d: %w", i, err)
			}
			if s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, "\n"), nil
	case map[string]any:
		return "", fmt.Errorf("object with fields %s, want a string (address one field with a dotted path)", clip(strings.Join(sortedKeys(v), ", ")))
	}
	return "", fmt.Errorf("%s, want a string", describe(v))
}

// describe names a non-text value for errors: its kind and, for scalars,
// its value.
func describe(v any) string {
	switch v := v.(type) {
	case json.Number:
		return "number " + clip(v.String())
	case bool:
		return "boolean " + strconv.FormatBool(v)
	case float32:
		return "number " + strconv.FormatFloat(float64(v), 'g', -1, 32)
	case float64:
		return "number " + strconv.FormatFloat(v, 'g', -1, 64)
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint("number ", v)
	case []byte:
		return fmt.Sprintf("binary value of %d bytes", len(v))
	}
	return fmt.Sprintf("value of type %T", v)
}

// clip shortens s for an error message.
func clip(s string) string {
	const limit = 40
	if len(s) <= limit {
		return s
	}
	i := limit
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// tmplPart is a literal or a placeholder of a row template.
type tmplPart struct {
	lit      string
	path     string // column path; "" for a literal
	optional bool
}

// parseTemplate parses the row template syntax: {column} or {a.b.c} (a
// dotted path) is replaced by the column's text; {column?} renders empty
// when the column is absent; {{ and }} are literal braces; \n, \t and \\
// are a newline, a tab and a backslash (other backslashes are literal).
func parseTemplate(s string) ([]tmplPart, error) {
	var parts []tmplPart
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, tmplPart{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && strings.IndexByte(`nt\`, s[i+1]) >= 0:
			lit.WriteByte(map[byte]byte{'n': '\n', 't': '\t', '\\': '\\'}[s[i+1]])
			i++
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			lit.WriteByte('{')
			i++
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte('}')
			i++
		case c == '}':
			return nil, fmt.Errorf("template: unmatched } at byte %d (write }} for a literal brace)", i)
		case c == '{':
			end := strings.IndexByte(s[i+1:], '}')
			if end < 0 {
				return nil, fmt.Errorf("template: unclosed { at byte %d", i)
			}
			name := strings.TrimSpace(s[i+1 : i+1+end])
			opt := strings.HasSuffix(name, "?")
			name = strings.TrimSpace(strings.TrimSuffix(name, "?"))
			if name == "" || strings.ContainsAny(name, "{") {
				return nil, fmt.Errorf("template: bad placeholder %q at byte %d: want {column} or {column?}", s[i:i+2+end], i)
			}
			flush()
			parts = append(parts, tmplPart{path: name, optional: opt})
			i += end + 1
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	hasPlaceholder := false
	for _, p := range parts {
		hasPlaceholder = hasPlaceholder || p.path != ""
	}
	if !hasPlaceholder {
		return nil, fmt.Errorf("template %q: no {column} placeholder", s)
	}
	return parts, nil
}

// renderTemplate renders a record; the result is empty when every
// placeholder is empty (a record with no data), whatever the literals.
// blank reports that every placeholder is empty or whitespace only.
func renderTemplate(parts []tmplPart, r Record) (s string, blank bool, err error) {
	var b strings.Builder
	empty, blank := true, true
	for _, p := range parts {
		if p.path == "" {
			b.WriteString(p.lit)
			continue
		}
		v, ok := lookup(r.Fields, p.path)
		if !ok && !p.optional {
			return "", false, fmt.Errorf("%s, template column %q not found (columns: %s)", r.where(), p.path, strings.Join(sortedKeys(r.Fields), ", "))
		}
		s, err := valueText(v)
		if err != nil {
			return "", false, fmt.Errorf("%s, template column %q: %w", r.where(), p.path, err)
		}
		empty = empty && s == ""
		blank = blank && isBlank(s)
		b.WriteString(s)
	}
	if empty {
		return "", true, nil
	}
	return b.String(), blank, nil
}
