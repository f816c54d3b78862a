package jinja

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
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

// Dict is an ordered mapping, as a Render input or value. Its keys are
// strings (Data ones too), ints, floats, bools or none, equal where
// Python finds them equal (1, 1.0 and true are one key).
type Dict struct {
	keys []value       // in the order first set
	m    map[any]value // by hashKey
}

// NewDict returns an empty Dict.
func NewDict() *Dict { return &Dict{m: map[any]value{}} }

// Set sets key (a string, a Data string, an int, a float64, a bool or
// nil) to v, both converted as Render's inputs are, keeping the first
// position (and the first form) of key.
func (d *Dict) Set(key, v any) {
	if err := d.setKey(convert(key), convert(v)); err != nil {
		panic("jinja: Dict.Set: " + err.Error())
	}
}

// noneKey is none's hashKey.
type noneKey struct{}

// hashKey is the Go map key of k as a dict key: one for keys Python finds
// equal (1, 1.0 and true).
func hashKey(k value) (any, error) {
	switch x := k.(type) {
	case str:
		return x.s, nil
	case int64:
		return x, nil
	case bigInt:
		return keyOfBig(x.v), nil
	case bool:
		return b2i(x), nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<63 {
			return int64(x), nil
		}
		if x == math.Trunc(x) && !math.IsInf(x, 0) {
			// A whole float past int64 is the key of the int it equals.
			b, _ := big.NewFloat(x).Int(nil)
			return keyOfBig(b), nil
		}
		return x, nil
	case nil:
		return noneKey{}, nil
	case []value, *Dict:
		return nil, fmt.Errorf("unhashable type: '%s'", typeName(k))
	}
	return nil, fmt.Errorf("a %s as a dict key is not supported", typeName(k))
}

// setKey is Set of values already converted: what a template computed,
// which may be of types Render's inputs are not (tuple, namespace).
func (d *Dict) setKey(k, v value) error {
	h, err := hashKey(k)
	if err != nil {
		return err
	}
	if _, ok := d.m[h]; !ok {
		d.keys = append(d.keys, k)
	}
	d.m[h] = v
	return nil
}

// set sets a string key.
func (d *Dict) set(key string, v value) {
	if _, ok := d.m[key]; !ok {
		d.keys = append(d.keys, str{s: key})
	}
	d.m[key] = v
}

// get looks a string key up.
func (d *Dict) get(key string) (value, bool) {
	v, ok := d.m[key]
	return v, ok
}

// lookup looks any key up; a key no dict can hold is not in it.
func (d *Dict) lookup(k value) (value, bool) {
	h, err := hashKey(k)
	if err != nil {
		return nil, false
	}
	v, ok := d.m[h]
	return v, ok
}

// at is the value of d.keys[i].
func (d *Dict) at(i int) value {
	h, _ := hashKey(d.keys[i])
	return d.m[h]
}

// bigKey is the Go map key of a bigInt (its sign and magnitude's
// bytes), apart from a string key's.
type bigKey string

// keyOfBig is b's bigKey, made in time linear in its size (decimal
// digits are not).
func keyOfBig(b *big.Int) bigKey {
	return bigKey(fmt.Sprint(b.Sign()) + string(b.Bytes()))
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
	switch x := v.(type) {
	case tuple:
		return []value(x)
	case *groupTuple:
		return []value(x.t)
	case *pyRange:
		return x.items
	}
	return v
}

// groupTuple is an item of the groupby filter's list: jinja2's
// _GroupTuple, a tuple (grouper, list) with those two attributes.
// Wherever a tuple and it differ only in type, asTuple makes it the
// tuple.
type groupTuple struct{ t tuple }

// asTuple is a groupTuple as its tuple, anything else as it is.
func asTuple(v value) value {
	if g, ok := v.(*groupTuple); ok {
		return g.t
	}
	return v
}

// pyRange is range(): a sequence of its items wherever it is used as
// one, printed as Python prints it ("range(0, 3)"), without JSON and
// equal to ranges only.
type pyRange struct {
	start, stop, step int64
	items             []value
}

// markup is a string the safe filter marked safe: jinja2's Markup, which
// HTML-escapes a string + adds to it (either side), though ~ and
// printing take it as it is.
type markup struct{ str }

// iterator is a one-pass iterator: what jinja2's map, select, reject,
// selectattr, rejectattr, unique and items filters return (Python
// generators), and reverse of a list or dict (a reverse iterator).
// Iterating it uses it up; it is true even when empty, has no length,
// no index and no JSON, and does not print.
type iterator struct {
	kind  string // Python's type name, for errors
	items []value
	pos   int // items[:pos] are used up
}

// rest uses up it and returns the items it had left.
func (it *iterator) rest() []value {
	out := it.items[it.pos:]
	it.pos = len(it.items)
	return out
}

// view is dict.items(), keys() or values(): iterable, sized, compared by
// its items, printed as Python prints it ("dict_keys(['a'])"), with no
// index and no JSON.
type view struct {
	kind  string // dict_items, dict_keys, dict_values
	items []value
}

// builtin is a global function (raise_exception, namespace, range,
// strftime_now).
type builtin struct{ name string }

// loopCtx is a for loop's loop variable: its attributes (index, first,
// cycle, …), its length as len(loop) and printed as jinja2's
// LoopContext ("<LoopContext 1/2>").
type loopCtx struct {
	d             *Dict
	index, length int64
	run           *loopRun
}

// loopRun is one run of a for loop (one level of a recursive loop),
// which its iterations share: the arguments loop.changed last saw and,
// for a recursive loop, what loop(items) renders again.
type loopRun struct {
	last    tuple // loop.changed's last arguments
	changed bool  // loop.changed has been called
	s       *forStmt
	sc      *scope // the scope the loop statement runs in
	depth   int64  // loop.depth
}

// pyCycler is jinja2's cycler(*items): next() gives its items round,
// current the one next() gives next, reset() starts again.
type pyCycler struct {
	items []value
	pos   int
}

// pyJoiner is jinja2's joiner(sep): calling it gives "" the first time,
// sep after.
type pyJoiner struct {
	sep  str
	used bool
}

// changer is loop.changed of a loop run.
type changer struct{ run *loopRun }

// cycler is loop.cycle of iteration i (0-based): its i-th argument,
// round.
type cycler struct{ i int64 }

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
	case nil, bool, int64, bigInt, float64, str, *Dict, undefined:
		return x
	case int:
		return int64(x)
	case *big.Int:
		n, err := mkInt(new(big.Int).Set(x))
		if err != nil {
			panic("jinja: input *big.Int: " + err.Error())
		}
		return n
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
	switch x := asTuple(v).(type) {
	case nil:
		return "NoneType"
	case bool:
		return "bool"
	case int64, bigInt:
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
	case markup:
		return "Markup"
	case *iterator:
		return x.kind
	case *view:
		return x.kind
	case *pyRange:
		return "range"
	case *loopCtx:
		return "LoopContext"
	case *pyCycler:
		return "Cycler"
	case *pyJoiner:
		return "Joiner"
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
	case bigInt:
		return true
	case float64:
		return x != 0
	case str:
		return x.s != ""
	case markup:
		return x.s != ""
	case []value:
		return len(x) > 0
	case *Dict:
		return len(x.keys) > 0
	case *view:
		return len(x.items) > 0
	}
	return true // an iterator too, as a Python generator
}

// toStr is Python's str() as jinja2 prints values; lists and dicts are
// refused rather than printed in Python's repr.
func toStr(v value) (str, error) {
	v = asTuple(v)
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
	case bigInt:
		s, err := intString(x.v)
		return str{s: s}, err
	case float64:
		return str{s: pyFloat(x)}, nil
	case *macro:
		return str{s: fmt.Sprintf("<Macro '%s'>", x.def.name)}, nil
	case markup:
		return x.str, nil
	case *loopCtx:
		return str{s: fmt.Sprintf("<LoopContext %d/%d>", x.index, x.length)}, nil
	case *namespace:
		// jinja2's Namespace.__repr__: <Namespace {…}> of its attributes.
		var b strings.Builder
		b.WriteString("<Namespace ")
		if err := pyRepr(&b, x.d); err != nil {
			return str{}, err
		}
		b.WriteByte('>')
		if hasData(x.d) {
			return str{s: b.String(), data: []span{{0, b.Len()}}}, nil
		}
		return str{s: b.String()}, nil
	case *pyRange:
		if x.step == 1 {
			return str{s: fmt.Sprintf("range(%d, %d)", x.start, x.stop)}, nil
		}
		return str{s: fmt.Sprintf("range(%d, %d, %d)", x.start, x.stop, x.step)}, nil
	case []value, tuple, *Dict, *view:
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
	case markup:
		return len(x.data) > 0
	case *view:
		return hasData(x.items)
	case []value:
		for _, e := range x {
			if hasData(e) {
				return true
			}
		}
	case *Dict:
		for i, k := range x.keys {
			if hasData(k) || hasData(x.at(i)) {
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
	v = asTuple(v)
	switch x := v.(type) {
	case str:
		pyStrRepr(b, x.s)
	case markup:
		b.WriteString("Markup(")
		pyStrRepr(b, x.s)
		b.WriteByte(')')
	case *pyRange:
		t, _ := toStr(x)
		b.WriteString(t.s)
	case *view:
		b.WriteString(x.kind)
		b.WriteByte('(')
		if err := pyRepr(b, x.items); err != nil {
			return err
		}
		b.WriteByte(')')
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
			if err := pyRepr(b, k); err != nil {
				return err
			}
			b.WriteString(": ")
			if err := pyRepr(b, x.at(i)); err != nil {
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
	case undefined:
		b.WriteString("Undefined") // jinja2's Undefined.__repr__, whatever is missing
	case *namespace:
		s, err := toStr(x)
		if err != nil {
			return err
		}
		b.WriteString(s.s)
	case nil, bool, int64, bigInt, float64:
		s, err := toStr(x)
		if err != nil {
			return err
		}
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
	a, b = asTuple(a), asTuple(b)
	if _, ok := num(a); ok {
		if _, ok := num(b); ok {
			c, ok := cmpNum(a, b)
			return ok && c == 0
		}
		return false
	}
	if m, ok := a.(markup); ok {
		a = m.str
	}
	if m, ok := b.(markup); ok {
		b = m.str
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case str:
		y, ok := b.(str)
		return ok && x.s == y.s
	case *view:
		y, ok := b.(*view)
		return ok && x.kind == y.kind && x.kind != "dict_values" && sameItems(x.items, y.items)
	case *pyRange:
		y, ok := b.(*pyRange)
		return ok && equal(x.items, y.items)
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
		for i, k := range x.keys {
			w, ok := y.lookup(k)
			if !ok || !equal(x.at(i), w) {
				return false
			}
		}
		return true
	case *namespace, *macro, *iterator, *loopCtx, builtin, cycler, changer:
		return a == b
	}
	return false
}

// sameItems reports whether a and b hold equal items in any order (dict
// keys and items views compare as sets).
func sameItems(a, b []value) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.ContainsFunc(b, func(y value) bool { return equal(x, y) }) {
			return false
		}
	}
	return true
}

// num returns a bool, int or float as float64, an int past float64's
// range as an infinity (bigFloat is Python's float(), an error there).
func num(v value) (float64, bool) {
	switch x := v.(type) {
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case int64:
		return float64(x), true
	case bigInt:
		f, _ := new(big.Float).SetInt(x.v).Float64()
		return f, true
	case float64:
		return x, true
	}
	return 0, false
}

// jsonOpts are json.dumps's arguments that transformers' tojson passes
// on: indent, separators, sort_keys and ensure_ascii.
type jsonOpts struct {
	indented        bool   // indent is not None: a newline before each item
	indent          string // repeated per level
	itemSep, keySep string
	sortKeys, ascii bool
}

// defaultJSON is json.dumps's defaults with ensure_ascii=False, as
// transformers' tojson calls it.
var defaultJSON = jsonOpts{itemSep: ", ", keySep: ": "}

// toJSON is json.dumps(v, …) with o.
func toJSON(b *strings.Builder, v value, o *jsonOpts, depth int) error {
	if b.Len() > maxLen || depth > maxLen || len(o.indent)*(depth+1) > maxLen {
		return errTooLong
	}
	if _, ok := v.(*pyRange); ok {
		return errors.New("Object of type range is not JSON serializable")
	}
	v = seq(v)
	nl := func(d int) {
		if o.indented {
			b.WriteByte('\n')
			b.WriteString(strings.Repeat(o.indent, d))
		}
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case bigInt:
		s, err := intString(x.v)
		if err != nil {
			return err
		}
		b.WriteString(s)
	case float64:
		b.WriteString(jsonFloat(x))
	case str:
		jsonString(b, x.s, o.ascii)
	case markup:
		jsonString(b, x.s, o.ascii)
	case []value:
		if len(x) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(o.itemSep)
			}
			nl(depth + 1)
			if err := toJSON(b, e, o, depth+1); err != nil {
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
		order, err := jsonKeyOrder(x, o.sortKeys)
		if err != nil {
			return err
		}
		b.WriteByte('{')
		for n, i := range order {
			if n > 0 {
				b.WriteString(o.itemSep)
			}
			nl(depth + 1)
			jsonString(b, jsonKey(x.keys[i]), o.ascii)
			b.WriteString(o.keySep)
			if err := toJSON(b, x.at(i), o, depth+1); err != nil {
				return err
			}
		}
		nl(depth)
		b.WriteByte('}')
	default:
		return fmt.Errorf("Object of type %s is not JSON serializable", typeName(v))
	}
	return nil
}

// jsonFloat is a float as json.dumps writes it.
func jsonFloat(x float64) string {
	switch {
	case math.IsInf(x, 1):
		return "Infinity"
	case math.IsInf(x, -1):
		return "-Infinity"
	case math.IsNaN(x):
		return "NaN"
	}
	return pyFloat(x)
}

// jsonKey is a dict key as json.dumps writes it: a string as it is, a
// number or bool or none as its JSON.
func jsonKey(k value) string {
	switch x := k.(type) {
	case str:
		return x.s
	case int64:
		return strconv.FormatInt(x, 10)
	case bigInt:
		return x.v.String()
	case float64:
		return jsonFloat(x)
	case bool:
		return strconv.FormatBool(x)
	}
	return "null"
}

// jsonKeyOrder lists the indices of d's keys in the order json.dumps
// writes them: as set, or sorted (strings by code point, numbers by
// value; Python cannot sort a mix).
func jsonKeyOrder(d *Dict, sorted bool) ([]int, error) {
	order := make([]int, len(d.keys))
	for i := range order {
		order[i] = i
	}
	if !sorted {
		return order, nil
	}
	var err error
	slices.SortStableFunc(order, func(i, j int) int {
		c, e := pyCompare(d.keys[i], d.keys[j])
		if e != nil && err == nil {
			err = e
		}
		return c
	})
	return order, err
}

func isRange(v value) bool {
	_, ok := v.(*pyRange)
	return ok
}

func isTuple(v value) bool {
	_, ok := v.(tuple)
	return ok
}

// pyCompare orders a and b as Python's < does: numbers (bools too) by
// value, strings by code point; any other pair cannot be ordered.
func pyCompare(a, b value) (int, error) {
	a, b = asTuple(a), asTuple(b)
	if x, ok := num(a); ok {
		if y, ok := num(b); ok {
			if c, ok := cmpNum(a, b); ok {
				return c, nil
			}
			return cmpF(x, y), nil // NaN, ordered as Python's sort leaves it
		}
	} else if x, ok := a.(str); ok {
		if y, ok := b.(str); ok {
			return strings.Compare(x.s, y.s), nil // UTF-8 byte order is code point order
		}
	} else if _, ok := a.(tuple); ok == isTuple(b) && !isRange(a) && !isRange(b) {
		// Lists with lists and tuples with tuples: item by item.
		x, xok := seq(a).([]value)
		y, yok := seq(b).([]value)
		if xok && yok {
			for i := range min(len(x), len(y)) {
				if equal(x[i], y[i]) {
					continue
				}
				return pyCompare(x[i], y[i])
			}
			return cmpF(float64(len(x)), float64(len(y))), nil
		}
	}
	return 0, fmt.Errorf("'<' not supported between instances of '%s' and '%s'", typeName(a), typeName(b))
}

// jsonString writes s as Python's json.dumps does; ascii is its
// ensure_ascii (every rune past ASCII as \\u escapes, UTF-16 pairs past
// the BMP).
func jsonString(b *strings.Builder, s string, ascii bool) {
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
			switch {
			case r < 0x20 || ascii && r >= 0x7f && r < 0x10000:
				fmt.Fprintf(b, `\u%04x`, r)
			case ascii && r >= 0x10000:
				r1, r2 := utf16.EncodeRune(r)
				fmt.Fprintf(b, `\u%04x\u%04x`, r1, r2)
			default:
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}
