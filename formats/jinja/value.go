package jinja

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
)

// value is a template value: nil (none), bool, int64, float64, str,
// []value (list), tuple, *Dict, *namespace, undefined, method, builtin
// or *macro.
type value = any

// str is a string value. data lists the byte ranges that came from Data
// inputs (message content), so a caller can tell them from template text
// after any concatenation and slicing.
type str struct {
	s    string
	data []span
}

type span struct{ lo, hi int }

// Data marks s as data (not template text) in a Render's input; the
// chunks of the output it ends up in have Data set.
func Data(s string) any { return str{s: s, data: []span{{0, len(s)}}} }

// Dict is an ordered mapping with string keys, as a Render input or value.
type Dict struct {
	keys []string
	m    map[string]value
}

// NewDict returns an empty Dict.
func NewDict() *Dict { return &Dict{m: map[string]value{}} }

// Set sets key to v (converted as Render's inputs are), keeping the first
// position of key.
func (d *Dict) Set(key string, v any) { d.set(key, convert(v)) }

// set is Set of a value already converted: what a template computed,
// which may be of types Render's inputs are not (tuple, namespace).
func (d *Dict) set(key string, v value) {
	if _, ok := d.m[key]; !ok {
		d.keys = append(d.keys, key)
	}
	d.m[key] = v
}

func (d *Dict) get(key string) (value, bool) {
	v, ok := d.m[key]
	return v, ok
}

// namespace is namespace(): attributes assignable from inner scopes.
type namespace struct{ d *Dict }

// undefined is jinja2's default Undefined: falsy, printed as "", iterated
// as empty; any other use is an error naming what was missing.
type undefined struct{ what string }

// method is an attribute of a value that is callable (str.strip, dict.items).
type method struct {
	recv value
	name string
}

// tuple is a Python tuple (a tuple literal, a dict item): a list that
// prints in parentheses and equals only tuples.
type tuple []value

// seq returns a tuple as a list, anything else as it is, for the uses
// where the two do not differ.
func seq(v value) value {
	if t, ok := v.(tuple); ok {
		return []value(t)
	}
	return v
}

// builtin is a global function (raise_exception, namespace, range,
// strftime_now).
type builtin struct{ name string }

// macro is a macro defined by {% macro %} (or a call block's caller),
// with the scope it was defined in, where its body looks up the names it
// does not set itself when it is called.
type macro struct {
	def   *macroStmt
	scope *scope
}

// convert turns Go inputs into values.
func convert(v any) value {
	switch x := v.(type) {
	case nil, bool, int64, float64, str, *Dict, undefined:
		return x
	case int:
		return int64(x)
	case float32:
		return float64(x)
	case string:
		return str{s: x}
	case []any:
		out := make([]value, len(x))
		for i, e := range x {
			out[i] = convert(e)
		}
		return out
	case []string:
		out := make([]value, len(x))
		for i, e := range x {
			out[i] = str{s: e}
		}
		return out
	case map[string]any:
		panic("jinja: map inputs have no order; use *Dict")
	}
	panic(fmt.Sprintf("jinja: unsupported input type %T", v))
}

// errTooLong is a string value, or the text of a list or dict printed,
// past maxLen.
var errTooLong = errors.New("string too long")

// strBuf builds a str from pieces in time linear in its length, where
// repeated concatStr copies all that came before.
type strBuf struct {
	b    strings.Builder
	data []span
}

func (w *strBuf) add(s str) {
	off := w.b.Len()
	w.b.WriteString(s.s)
	for _, sp := range s.data {
		sp.lo += off
		sp.hi += off
		if n := len(w.data); n > 0 && w.data[n-1].hi == sp.lo {
			w.data[n-1].hi = sp.hi
			continue
		}
		w.data = append(w.data, sp)
	}
}

func (w *strBuf) len() int { return w.b.Len() }

func (w *strBuf) str() str { return str{s: w.b.String(), data: w.data} }

func concatStr(a, b str) str {
	out := str{s: a.s + b.s}
	out.data = append(out.data, a.data...)
	for _, sp := range b.data {
		sp.lo += len(a.s)
		sp.hi += len(a.s)
		if n := len(out.data); n > 0 && out.data[n-1].hi == sp.lo {
			out.data[n-1].hi = sp.hi
			continue
		}
		out.data = append(out.data, sp)
	}
	return out
}

// sub returns s[lo:hi], its data ranges clipped.
func (s str) sub(lo, hi int) str {
	out := str{s: s.s[lo:hi]}
	for _, sp := range s.data {
		a, b := max(sp.lo, lo), min(sp.hi, hi)
		if a < b {
			out.data = append(out.data, span{a - lo, b - lo})
		}
	}
	return out
}

// mapped returns t, the result of a whole-string transformation of s: data
// when any of s was (a mix cannot be told apart after such a change).
func (s str) mapped(t string) str {
	if len(s.data) == 0 || t == "" {
		return str{s: t}
	}
	return str{s: t, data: []span{{0, len(t)}}}
}

// typeName names v's type as Python does, for errors.
func typeName(v value) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case str:
		return "str"
	case []value:
		return "list"
	case tuple:
		return "tuple"
	case *Dict:
		return "dict"
	case *namespace:
		return "Namespace"
	case undefined:
		return "Undefined"
	case *macro:
		return "Macro"
	}
	return "function"
}

func truthy(v value) bool {
	switch x := seq(v).(type) {
	case nil, undefined:
		return false
	case bool:
		return x
	case int64:
		return x != 0
	case float64:
		return x != 0
	case str:
		return x.s != ""
	case []value:
		return len(x) > 0
	case *Dict:
		return len(x.keys) > 0
	}
	return true
}

// toStr is Python's str() as jinja2 prints values; lists and dicts are
// refused rather than printed in Python's repr.
func toStr(v value) (str, error) {
	switch x := v.(type) {
	case str:
		return x, nil
	case nil:
		return str{s: "None"}, nil
	case undefined:
		return str{}, nil
	case bool:
		if x {
			return str{s: "True"}, nil
		}
		return str{s: "False"}, nil
	case int64:
		return str{s: strconv.FormatInt(x, 10)}, nil
	case float64:
		return str{s: pyFloat(x)}, nil
	case *macro:
		return str{s: fmt.Sprintf("<Macro '%s'>", x.def.name)}, nil
	case []value, tuple, *Dict:
		var b strings.Builder
		if err := pyRepr(&b, v); err != nil {
			return str{}, err
		}
		// Data inside is not tracked through repr: the whole is data if
		// any part was.
		if hasData(v) {
			return str{s: b.String(), data: []span{{0, b.Len()}}}, nil
		}
		return str{s: b.String()}, nil
	}
	return str{}, fmt.Errorf("printing a %s is not supported", typeName(v))
}

func hasData(v value) bool {
	switch x := seq(v).(type) {
	case str:
		return len(x.data) > 0
	case []value:
		for _, e := range x {
			if hasData(e) {
				return true
			}
		}
	case *Dict:
		for _, k := range x.keys {
			if hasData(x.m[k]) {
				return true
			}
		}
	}
	return false
}

// pyRepr writes Python's repr of a list or dict value (how jinja2 prints
// them).
func pyRepr(b *strings.Builder, v value) error {
	if b.Len() > maxLen {
		return errTooLong
	}
	switch x := v.(type) {
	case str:
		pyStrRepr(b, x.s)
	case []value:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			if err := pyRepr(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case *Dict:
		b.WriteByte('{')
		for i, k := range x.keys {
			if i > 0 {
				b.WriteString(", ")
			}
			pyStrRepr(b, k)
			b.WriteString(": ")
			if err := pyRepr(b, x.m[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case tuple:
		b.WriteByte('(')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			if err := pyRepr(b, e); err != nil {
				return err
			}
		}
		if len(x) == 1 {
			b.WriteByte(',')
		}
		b.WriteByte(')')
	case nil, bool, int64, float64:
		s, _ := toStr(x)
		b.WriteString(s.s)
	default:
		return fmt.Errorf("printing a %s inside a list or dict is not supported", typeName(v))
	}
	return nil
}

// pyStrRepr is Python's repr of a str: single quotes unless the text has
// ' and no ", escapes for the quote, backslash and unprintable runes.
func pyStrRepr(b *strings.Builder, s string) {
	q := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		q = '"'
	}
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == ' ' || unicode.IsPrint(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(b, `\x%02x`, r)
		case r < 0x10000:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			fmt.Fprintf(b, `\U%08x`, r)
		}
	}
	b.WriteByte(q)
}

// pyFloat is Python's repr of a float.
func pyFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	if a := math.Abs(f); a != 0 && (a < 1e-4 || a >= 1e16) {
		s := strconv.FormatFloat(f, 'e', -1, 64)
		// Python writes e-05 and e+16.
		mant, exp, _ := strings.Cut(s, "e")
		sign := exp[0]
		exp = strings.TrimLeft(exp[1:], "0")
		if len(exp) < 2 {
			exp = strings.Repeat("0", 2-len(exp)) + exp
		}
		return mant + "e" + string(sign) + exp
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// equal is Python's ==.
func equal(a, b value) bool {
	if x, ok := num(a); ok {
		if y, ok := num(b); ok {
			return x == y
		}
		return false
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case str:
		y, ok := b.(str)
		return ok && x.s == y.s
	case undefined:
		_, ok := b.(undefined)
		return ok
	case tuple:
		y, ok := b.(tuple)
		return ok && equal([]value(x), []value(y))
	case []value:
		y, ok := b.([]value)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case *Dict:
		y, ok := b.(*Dict)
		if !ok || len(x.keys) != len(y.keys) {
			return false
		}
		for _, k := range x.keys {
			w, ok := y.m[k]
			if !ok || !equal(x.m[k], w) {
				return false
			}
		}
		return true
	}
	return a == b
}

// num returns a bool, int or float as float64 (Python compares them by value).
func num(v value) (float64, bool) {
	switch x := v.(type) {
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case int64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// toJSON is json.dumps(v, ensure_ascii=False) (transformers' tojson):
// ", " and ": " separators, indent when indent >= 0.
func toJSON(b *strings.Builder, v value, indent, depth int) error {
	if b.Len() > maxLen || indent > maxLen || depth > maxLen || indent*(depth+1) > maxLen {
		return errTooLong
	}
	v = seq(v)
	nl := func(d int) {
		if indent >= 0 {
			b.WriteByte('\n')
			b.WriteString(strings.Repeat(" ", indent*d))
		}
	}
	itemSep := ", "
	if indent >= 0 {
		itemSep = ","
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case float64:
		switch {
		case math.IsInf(x, 1):
			b.WriteString("Infinity")
		case math.IsInf(x, -1):
			b.WriteString("-Infinity")
		case math.IsNaN(x):
			b.WriteString("NaN")
		default:
			b.WriteString(pyFloat(x))
		}
	case str:
		jsonString(b, x.s)
	case []value:
		if len(x) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(itemSep)
			}
			nl(depth + 1)
			if err := toJSON(b, e, indent, depth+1); err != nil {
				return err
			}
		}
		nl(depth)
		b.WriteByte(']')
	case *Dict:
		if len(x.keys) == 0 {
			b.WriteString("{}")
			return nil
		}
		b.WriteByte('{')
		for i, k := range x.keys {
			if i > 0 {
				b.WriteString(itemSep)
			}
			nl(depth + 1)
			jsonString(b, k)
			b.WriteString(": ")
			if err := toJSON(b, x.m[k], indent, depth+1); err != nil {
				return err
			}
		}
		nl(depth)
		b.WriteByte('}')
	default:
		return fmt.Errorf("tojson: a %s is not JSON serializable", typeName(v))
	}
	return nil
}

// jsonString writes s as Python's json.dumps with ensure_ascii=False does.
func jsonString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if r < 0x20 {
				fmt.Fprintf(b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}
