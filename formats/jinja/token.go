package jinja

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// token kinds inside a tag.
const (
	tokEOF = iota
	tokName
	tokInt
	tokFloat
	tokString
	tokOp
)

type token struct {
	kind int
	s    string // name, operator, or the decoded string literal
	pos  int    // byte offset in the template
}

// operators, longest first.
var operators = []string{"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"}

// tokens splits the inside of a tag, starting at byte offset base.
func tokens(src string, base int) ([]token, error) {
	var out []token
	i := 0
	for {
		for i < len(src) && (src[i] == ' ' || src[i] == '\t' || src[i] == '\n' || src[i] == '\r') {
			i++
		}
		if i >= len(src) {
			return append(out, token{tokEOF, "", base + i}), nil
		}
		c, pos := src[i], base+i
		switch {
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i + 1
			for j < len(src) && (src[j] == '_' || src[j] >= 'a' && src[j] <= 'z' || src[j] >= 'A' && src[j] <= 'Z' || src[j] >= '0' && src[j] <= '9') {
				j++
			}
			out = append(out, token{tokName, src[i:j], pos})
			i = j
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '_') {
				j++
			}
			kind := tokInt
			if j+1 < len(src) && src[j] == '.' && src[j+1] >= '0' && src[j+1] <= '9' {
				kind = tokFloat
				j++
				for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '_') {
					j++
				}
			}
			if j < len(src) && (src[j] == 'e' || src[j] == 'E') {
				k := j + 1
				if k < len(src) && (src[k] == '+' || src[k] == '-') {
					k++
				}
				if k < len(src) && src[k] >= '0' && src[k] <= '9' {
					kind = tokFloat
					for j = k; j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '_'); j++ {
					}
				}
			}
			if kind == tokInt && j-i > 1 && src[i] == '0' {
				return nil, &Error{Pos: pos, Msg: fmt.Sprintf("integer %s has a leading zero", src[i:j])}
			}
			out = append(out, token{kind, strings.ReplaceAll(src[i:j], "_", ""), pos})
			i = j
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(src) && src[j] != c {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(src) {
				return nil, &Error{Pos: pos, Msg: "string literal is not closed"}
			}
			s, err := unescape(src[i+1 : j])
			if err != nil {
				return nil, &Error{Pos: pos, Msg: err.Error()}
			}
			out = append(out, token{tokString, s, pos})
			i = j + 1
		default:
			op := ""
			for _, o := range operators {
				if strings.HasPrefix(src[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				r, _ := utf8.DecodeRuneInString(src[i:])
				return nil, &Error{Pos: pos, Msg: fmt.Sprintf("unexpected character %q", r)}
			}
			out = append(out, token{tokOp, op, pos})
			i += len(op)
		}
	}
}

// unescape decodes a string literal's body as jinja2 does (Python's
// unicode-escape codec): \n \t \r \\ \' \" \a \b \f \v, octal \ooo, \xhh,
// \uhhhh, \Uhhhhhhhh; any other backslash stays as written.
func unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch c := s[i]; c {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'v':
			b.WriteByte('\v')
		case '\\', '\'', '"':
			b.WriteByte(c)
		case '\n':
			// A backslash-newline is a line continuation.
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := i
			for j < len(s) && j < i+3 && s[j] >= '0' && s[j] <= '7' {
				j++
			}
			n, _ := strconv.ParseUint(s[i:j], 8, 32)
			b.WriteRune(rune(n))
			i = j - 1
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
			if i+1+n > len(s) {
				return "", fmt.Errorf(`truncated \%c escape`, c)
			}
			v, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32)
			if err != nil || v > utf8.MaxRune {
				return "", fmt.Errorf(`bad \%c escape`, c)
			}
			b.WriteRune(rune(v))
			i += n
		case 'N':
			return "", fmt.Errorf(`\N{…} escapes are not supported`)
		default:
			b.WriteByte('\\')
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}
