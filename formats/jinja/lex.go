package jinja

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// tag kinds of the template's top level.
const (
	tagText = iota
	tagVar
	tagBlock
	tagComment
)

// piece is template text or the inside of one tag, after whitespace
// control: {{ … }}, {% … %} or {# … #}.
type piece struct {
	kind int
	text string // text, or the tag's inside
	pos  int    // byte offset of the text or of the tag's inside
}

// pyIsSpace is Python's str.isspace, which rstrip() and \s follow: Go's
// unicode.IsSpace plus the separators U+001C..U+001F.
func pyIsSpace(r rune) bool { return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f }

// normalize does what jinja2's lexer does to the source first: every
// newline sequence becomes "\n" and one trailing newline is dropped
// (keep_trailing_newline=False).
func normalize(src string) string {
	src = strings.ReplaceAll(src, "\r\n", "\n")
	src = strings.ReplaceAll(src, "\r", "\n")
	return strings.TrimSuffix(src, "\n")
}

// split cuts src into text and tags, applying '-' whitespace control,
// trim_blocks (the first newline after a block or comment tag is dropped)
// and lstrip_blocks (spaces and tabs from a line's start to a block or
// comment tag are dropped), as jinja2's lexer does.
func split(src string) ([]piece, error) {
	var out []piece
	lineStarting := true // the last match ended with a newline (or none yet)
	i := 0
	for i < len(src) {
		j := indexTag(src, i)
		if j < 0 {
			out = append(out, piece{tagText, src[i:], i})
			break
		}
		text := src[i:j]
		var kind int
		var end string
		switch src[j+1] {
		case '{':
			kind, end = tagVar, "}}"
		case '%':
			kind, end = tagBlock, "%}"
		default:
			kind, end = tagComment, "#}"
		}
		k := j + 2
		sign := byte(0)
		if k < len(src) && (src[k] == '-' || src[k] == '+') {
			sign = src[k]
			k++
		}
		switch {
		case sign == '-':
			text = strings.TrimRightFunc(text, pyIsSpace)
		case sign != '+' && kind != tagVar:
			lpos := strings.LastIndexByte(text, '\n') + 1
			if (lpos > 0 || lineStarting) && strings.Trim(text[lpos:], " \t") == "" {
				text = text[:lpos]
			}
		}
		if text != "" {
			out = append(out, piece{tagText, text, i})
		}
		// The tag's end: the first end marker outside string literals.
		e, err := tagEnd(src, k, kind, end)
		if err != nil {
			return nil, err
		}
		inner, innerPos := src[k:e], k
		i = e + 2
		if kind == tagBlock && strings.TrimFunc(strings.TrimSuffix(inner, "-"), pyIsSpace) == "raw" {
			var err error
			if out, i, err = rawBlock(src, out, j, i, strings.HasSuffix(inner, "-")); err != nil {
				return nil, err
			}
			lineStarting = i > 0 && src[i-1] == '\n'
			continue
		}
		if strings.HasSuffix(inner, "-") {
			inner = inner[:len(inner)-1]
			for i < len(src) {
				r, n := utf8.DecodeRuneInString(src[i:])
				if !pyIsSpace(r) {
					break
				}
				i += n
			}
		} else if kind != tagVar && i < len(src) && src[i] == '\n' {
			i++ // trim_blocks
		}
		lineStarting = i > 0 && src[i-1] == '\n'
		if kind == tagBlock || kind == tagVar {
			out = append(out, piece{kind, inner, innerPos})
		}
	}
	return out, nil
}

// rawBlock appends the text of a {% raw %} block whose tag starts at
// tag and ends before i (strip: it ends with "-%}") and returns the
// offset past its {% endraw %}. As jinja2's lexer has it, the raw tag
// drops the blanks after it only with '-' (trim_blocks does not apply
// to it); the endraw tag strips the text before it as any block tag does
// ('-', or lstrip_blocks) and trim_blocks applies after it.
func rawBlock(src string, out []piece, tag, i int, strip bool) ([]piece, int, error) {
	if strip {
		i += len(src[i:]) - len(strings.TrimLeftFunc(src[i:], pyIsSpace))
	}
	lineStarting := i > 0 && src[i-1] == '\n'
	for q := i; ; {
		k := strings.Index(src[q:], "{%")
		if k < 0 {
			return nil, 0, &Error{Pos: tag, Msg: "Missing end of raw directive"}
		}
		q += k
		p := q + 2
		sign := byte(0)
		if p < len(src) && (src[p] == '-' || src[p] == '+') {
			sign = src[p]
			p++
		}
		rest := strings.TrimLeftFunc(src[p:], pyIsSpace)
		if !strings.HasPrefix(rest, "endraw") {
			q += 2
			continue
		}
		rest = strings.TrimLeftFunc(rest[len("endraw"):], pyIsSpace)
		var end string
		for _, e := range []string{"+%}", "-%}", "%}"} {
			if strings.HasPrefix(rest, e) {
				end = e
				break
			}
		}
		if end == "" {
			q += 2
			continue
		}
		text := src[i:q]
		switch {
		case sign == '-':
			text = strings.TrimRightFunc(text, pyIsSpace)
		case sign != '+':
			lpos := strings.LastIndexByte(text, '\n') + 1
			if (lpos > 0 || lineStarting) && strings.Trim(text[lpos:], " \t") == "" {
				text = text[:lpos]
			}
		}
		if text != "" {
			out = append(out, piece{tagText, text, i})
		}
		next := len(src) - len(rest) + len(end)
		switch end {
		case "-%}":
			next += len(src[next:]) - len(strings.TrimLeftFunc(src[next:], pyIsSpace))
		case "%}":
			if next < len(src) && src[next] == '\n' {
				next++
			}
		}
		return out, next, nil
	}
}

// indexTag returns the offset of the next "{{", "{%" or "{#" at or after i, or -1.
func indexTag(src string, i int) int {
	for {
		j := strings.IndexByte(src[i:], '{')
		if j < 0 || i+j+1 >= len(src) {
			return -1
		}
		switch src[i+j+1] {
		case '{', '%', '#':
			return i + j
		}
		i += j + 1
	}
}

// tagEnd returns the offset of the end marker closing a tag whose inside
// starts at k; string literals inside {{ }} and {% %} may hold the
// marker, and, as jinja2's lexer decides, so may brackets: {{ {'a': {}}}}
// ends at the last "}}".
func tagEnd(src string, k, kind int, end string) (int, error) {
	if kind == tagComment {
		e := strings.Index(src[k:], end)
		if e < 0 {
			return 0, &Error{Pos: k - 2, Msg: "comment is not closed (missing #})"}
		}
		return k + e, nil
	}
	depth := 0
	for p := k; p < len(src); p++ {
		switch c := src[p]; {
		case c == '\'' || c == '"':
			q := p + 1
			for q < len(src) && src[q] != c {
				if src[q] == '\\' {
					q++
				}
				q++
			}
			p = q
		case depth == 0 && strings.HasPrefix(src[p:], end):
			return p, nil
		case c == '(' || c == '[' || c == '{':
			depth++
		case (c == ')' || c == ']' || c == '}') && depth > 0:
			depth--
		}
	}
	return 0, &Error{Pos: k - 2, Msg: fmt.Sprintf("tag is not closed (missing %s)", end)}
}
