package jinja

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"slices"
	"strings"
	"time"
)

// Error is a template that cannot be parsed or rendered: Line and Col
// (1-based, Col in bytes) locate the construct, Msg says what is wrong.
type Error struct {
	Pos       int // byte offset in the template
	Line, Col int
	Msg       string
}

func (e *Error) Error() string { return "jinja: " + e.Where() }

// Where is the error without its package's prefix, "line L col C: Msg",
// for messages that say where a template came from themselves.
func (e *Error) Where() string { return fmt.Sprintf("line %d col %d: %s", e.Line, e.Col, e.Msg) }

// ErrRaised is wrapped by the error of a render that called
// raise_exception(msg); RaiseError carries msg.
var ErrRaised = errors.New("template raised an exception")

// RaiseError is raise_exception(Msg) called by a template.
type RaiseError struct{ Msg string }

func (e *RaiseError) Error() string { return e.Msg }
func (e *RaiseError) Unwrap() error { return ErrRaised }

// Template is a parsed template, safe for concurrent use.
type Template struct {
	src  string
	body []stmt
}

// Chunk is a run of rendered text; Data is set where it came from a Data
// input.
type Chunk struct {
	Text string
	Data bool
}

// Parse parses src with jinja2's settings for Hugging Face chat templates
// (trim_blocks, lstrip_blocks, no trailing newline kept).
func Parse(src string) (*Template, error) {
	src = normalize(src)
	body, err := parseTemplate(src)
	if err != nil {
		return nil, locate(src, err)
	}
	return &Template{src, body}, nil
}

// locate fills an *Error's line and column.
func locate(src string, err error) error {
	var e *Error
	if errors.As(err, &e) && e.Line == 0 {
		pos := min(max(e.Pos, 0), len(src))
		e.Line = strings.Count(src[:pos], "\n") + 1
		e.Col = pos - strings.LastIndexByte(src[:pos], '\n')
	}
	return err
}

// Options are a render's settings besides its variables.
type Options struct {
	// Now is the time strftime_now formats; zero is the clock's time at
	// the call, as transformers' strftime_now reads it.
	Now time.Time
}

// Render renders t with vars as its global variables: strings, bools,
// ints, *big.Ints (of at most 131072 bits), float64s, nil, []any, *Dict,
// and Data strings. A variable not in
// vars is undefined. Besides them the template may call raise_exception
// (its error is a *RaiseError), namespace, range and strftime_now.
func (t *Template) Render(vars map[string]any) ([]Chunk, error) {
	return t.RenderWith(vars, Options{})
}

// RenderWith is Render with opts.
func (t *Template) RenderWith(vars map[string]any, opts Options) ([]Chunk, error) {
	g := map[string]value{}
	for k, v := range vars {
		g[k] = convert(v)
	}
	r := &renderer{buf: &strBuf{}, now: opts.Now}
	sc := &scope{vars: g}
	if err := r.exec(t.body, sc); err != nil {
		return nil, locate(t.src, err)
	}
	return chunks(r.buf.str()), nil
}

// chunks cuts s into runs of template text and of data.
func chunks(s str) []Chunk {
	var out []Chunk
	pos := 0
	for _, sp := range s.data {
		if sp.lo > pos {
			out = append(out, Chunk{s.s[pos:sp.lo], false})
		}
		out = append(out, Chunk{s.s[sp.lo:sp.hi], true})
		pos = sp.hi
	}
	if pos < len(s.s) {
		out = append(out, Chunk{s.s[pos:], false})
	}
	return out
}

// RenderString is Render's text.
func (t *Template) RenderString(vars map[string]any) (string, error) {
	chunks, err := t.Render(vars)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, c := range chunks {
		b.WriteString(c.Text)
	}
	return b.String(), nil
}

type scope struct {
	vars   map[string]value
	parent *scope
}

func (s *scope) lookup(name string) (value, bool) {
	for ; s != nil; s = s.parent {
		if v, ok := s.vars[name]; ok {
			return v, true
		}
	}
	return nil, false
}

// child is a new scope inside s: what is set in it is gone after.
func (s *scope) child() *scope { return &scope{vars: map[string]value{}, parent: s} }

type renderer struct {
	// buf is the output being written: the render's, or that of a
	// macro call, block set or filter block.
	buf   *strBuf
	steps int
	units int // work short of a step (see work)
	depth int // eval calls inside one another
	now   time.Time
}

// maxSteps bounds the work of one render (statements and loop
// iterations, and a step for each stepBytes of strings and each
// stepItems elements of lists the template makes or outputs), maxLen the
// length of a string value and of the output, maxItems the length of a
// list.
const (
	maxSteps  = 1_000_000
	maxLen    = 1 << 24
	maxItems  = 1 << 20
	stepBytes = 1 << 6
	stepItems = 1 << 4
)

type loopSignal struct{ brk bool }

func (loopSignal) Error() string { return "loop control" }

// emit appends s to the output being written.
func (r *renderer) emit(s str, pos int) error {
	if r.buf.len()+len(s.s) > maxLen {
		return &Error{Pos: pos, Msg: "output too long"}
	}
	if r.steps += len(s.s) / stepBytes; r.steps > maxSteps {
		return &Error{Pos: pos, Msg: "render takes too many steps"}
	}
	r.buf.add(s)
	return nil
}

// capture renders body in sc and returns its output instead of writing
// it; what was written is dropped on an error (a break or continue
// too, as in jinja2).
func (r *renderer) capture(body []stmt, sc *scope) (str, error) {
	saved := r.buf
	r.buf = &strBuf{}
	err := r.exec(body, sc)
	out := r.buf.str()
	r.buf = saved
	return out, err
}

// work counts units of work (a byte of a string, or stepBytes/stepItems
// an element of a list or dict walked) against maxSteps, for what walks
// values without making them: comparisons, lookups, filters.
func (r *renderer) work(units int) error {
	r.units += units
	if r.steps += r.units / stepBytes; r.steps > maxSteps {
		return errors.New("render takes too many steps")
	}
	r.units %= stepBytes
	return nil
}

// unitsPerItem is the work units of one element of a list or dict.
const unitsPerItem = stepBytes / stepItems

// shallow is the work of walking v itself: its bytes, or its elements
// (what a filter that looks at each of them does).
func shallow(v value) int {
	switch x := seq(v).(type) {
	case bigInt:
		return len(x.v.Bits()) * 8
	case str:
		return len(x.s)
	case markup:
		return len(x.s)
	case []value:
		return len(x) * unitsPerItem
	case *Dict:
		return len(x.keys) * unitsPerItem
	case *view:
		return len(x.items) * unitsPerItem
	case *iterator:
		return (len(x.items) - x.pos) * unitsPerItem
	}
	return 0
}

// deep is the work of walking v whole (comparing it with another value):
// the bytes of its strings and its elements, at every depth; it stops
// counting past limit.
func deep(v value, limit int) int {
	n := 0
	var walk func(v value)
	walk = func(v value) {
		if n > limit {
			return
		}
		n += shallow(v)
		switch x := seq(v).(type) {
		case []value:
			for _, e := range x {
				walk(e)
			}
		case *Dict:
			for i, k := range x.keys {
				walk(k)
				walk(x.at(i))
			}
		case *view:
			for _, e := range x.items {
				walk(e)
			}
		case *iterator:
			for _, e := range x.items[x.pos:] {
				walk(e)
			}
		}
	}
	walk(v)
	return n
}

// eq is equal(a, b), its work counted: that of walking the smaller of a
// and b (equal stops at the first difference), or of comparing every
// item of two dict views with every other.
func (r *renderer) eq(a, b value) (bool, error) {
	limit := (maxSteps - r.steps + 1) * stepBytes
	units := unitsPerItem + min(deep(a, limit), deep(b, limit))
	if x, ok := a.(*view); ok {
		if y, ok := b.(*view); ok {
			units += len(x.items) * len(y.items) * unitsPerItem
		}
	}
	if err := r.work(units); err != nil {
		return false, err
	}
	return equal(a, b), nil
}

// charge counts the work of making v, a value an operator, filter or call
// returned, against maxSteps.
func (r *renderer) charge(v value, pos int) error {
	switch x := v.(type) {
	case str:
		r.steps += len(x.s) / stepBytes
	case []value:
		r.steps += len(x) / stepItems
	case tuple:
		r.steps += len(x) / stepItems
	}
	if r.steps > maxSteps {
		return &Error{Pos: pos, Msg: "render takes too many steps"}
	}
	return nil
}

func (r *renderer) exec(body []stmt, sc *scope) error {
	for _, st := range body {
		r.steps++
		if r.steps > maxSteps {
			return &Error{Msg: "render takes too many steps"}
		}
		switch s := st.(type) {
		case textStmt:
			if err := r.emit(str{s: s.s}, s.pos); err != nil {
				return err
			}
		case outStmt:
			v, err := r.eval(s.x, sc)
			if err != nil {
				return err
			}
			out, err := toStr(v)
			if err != nil {
				return &Error{Pos: s.x.at(), Msg: err.Error()}
			}
			if err := r.emit(out, s.x.at()); err != nil {
				return err
			}
		case ifStmt:
			done := false
			for i, c := range s.conds {
				v, err := r.eval(c, sc)
				if err != nil {
					return err
				}
				if truthy(v) {
					if err := r.exec(s.bodies[i], sc); err != nil {
						return err
					}
					done = true
					break
				}
			}
			if !done {
				if err := r.exec(s.els, sc); err != nil {
					return err
				}
			}
		case *forStmt:
			if err := r.loop(s, sc); err != nil {
				return err
			}
		case setStmt:
			v, err := r.eval(s.x, sc)
			if err != nil {
				return err
			}
			if s.tuple != nil {
				if err := bindTarget(*s.tuple, v, sc, s.pos); err != nil {
					return err
				}
				continue
			}
			if err := assign(sc, s.pos, s.name, s.attr, v); err != nil {
				return err
			}
		case setBlockStmt:
			out, err := r.capture(s.body, sc.child())
			if err != nil {
				return err
			}
			v, err := r.filterChain(s.filters, out, sc)
			if err != nil {
				return err
			}
			if err := assign(sc, s.pos, s.name, s.attr, v); err != nil {
				return err
			}
		case filterBlockStmt:
			out, err := r.capture(s.body, sc.child())
			if err != nil {
				return err
			}
			v, err := r.filterChain(s.filters, out, sc)
			if err != nil {
				return err
			}
			text, err := toStr(v)
			if err != nil {
				return &Error{Pos: s.pos, Msg: err.Error()}
			}
			if err := r.emit(text, s.pos); err != nil {
				return err
			}
		case scopeStmt:
			if err := r.exec(s.body, sc.child()); err != nil {
				return err
			}
		case printStmt:
			if err := r.exec(s, sc); err != nil {
				return err
			}
		case withStmt:
			inner := sc.child()
			for _, set := range s.sets {
				v, err := r.eval(set.x, sc)
				if err != nil {
					return err
				}
				if set.tuple != nil {
					err = bindTarget(*set.tuple, v, inner, set.pos)
				} else {
					err = assign(inner, set.pos, set.name, "", v)
				}
				if err != nil {
					return err
				}
			}
			if err := r.exec(s.body, inner); err != nil {
				return err
			}
		case *macroStmt:
			sc.vars[s.name] = &macro{s, sc}
		case callBlockStmt:
			v, err := r.callWith(s.call, sc, &macro{s.caller, sc})
			if err != nil {
				return err
			}
			text, err := toStr(v)
			if err != nil {
				return &Error{Pos: s.pos, Msg: err.Error()}
			}
			if err := r.emit(text, s.pos); err != nil {
				return err
			}
		case loopCtl:
			return loopSignal{s.brk}
		}
	}
	return nil
}

// assign sets name, or name.attr of a namespace, to v in sc.
func assign(sc *scope, pos int, name, attr string, v value) error {
	if attr == "" {
		sc.vars[name] = v
		return nil
	}
	obj, _ := sc.lookup(name)
	ns, ok := obj.(*namespace)
	if !ok {
		return &Error{Pos: pos, Msg: fmt.Sprintf("cannot assign attribute on non-namespace object %s", name)}
	}
	ns.d.set(attr, v)
	return nil
}

// unpack assigns the items of v to the names of s, as Python unpacks.
// bindTarget sets t's names in sc to v, unpacking v as Python does
// where t is a tuple (any iterable, as many items as names).
func bindTarget(t target, v value, sc *scope, pos int) error {
	if t.items == nil {
		sc.vars[t.name] = v
		return nil
	}
	if !isIterable(v) {
		return &Error{Pos: pos, Msg: fmt.Sprintf("cannot unpack non-iterable %s object", typeName(v))}
	}
	items, err := iterate(v)
	if err != nil {
		return &Error{Pos: pos, Msg: err.Error()}
	}
	switch n := len(t.items); {
	case len(items) < n:
		return &Error{Pos: pos, Msg: fmt.Sprintf("not enough values to unpack (expected %d, got %d)", n, len(items))}
	case len(items) > n:
		return &Error{Pos: pos, Msg: fmt.Sprintf("too many values to unpack (expected %d)", n)}
	}
	for i, sub := range t.items {
		if err := bindTarget(sub, items[i], sc, pos); err != nil {
			return err
		}
	}
	return nil
}

// isIterable reports whether Python can iterate v (undefined can, as
// jinja2's Undefined, and is empty).
func isIterable(v value) bool {
	switch seq(v).(type) {
	case []value, *Dict, *view, *iterator, str, markup, undefined:
		return true
	}
	return false
}

func (r *renderer) loop(s *forStmt, sc *scope) error {
	it, err := r.eval(s.iter, sc)
	if err != nil {
		return err
	}
	return r.runLoop(s, sc, it, s.iter.at(), 1)
}

// runLoop runs s over the items of it, in sc, at depth (loop.depth: 1,
// or one more each time a recursive loop calls loop(items)). As jinja2
// compiles it, the else body runs when no iteration reached the end of
// the body: none at all, or each ended by break or continue.
func (r *renderer) runLoop(s *forStmt, sc *scope, it value, pos int, depth int64) error {
	items, err := iterate(it)
	if err != nil {
		return &Error{Pos: pos, Msg: err.Error()}
	}
	inner := sc.child()
	bind := func(item value) error {
		return bindTarget(s.vars, item, inner, s.pos)
	}
	if s.cond != nil {
		var kept []value
		for _, item := range items {
			if r.steps++; r.steps > maxSteps {
				return &Error{Pos: s.pos, Msg: "render takes too many steps"}
			}
			if err := bind(item); err != nil {
				return err
			}
			v, err := r.eval(s.cond, inner)
			if err != nil {
				return err
			}
			if truthy(v) {
				kept = append(kept, item)
			}
		}
		items = kept
	}
	run := &loopRun{depth: depth}
	if s.recursive {
		run.s, run.sc = s, sc
	}
	completed := false
	n := int64(len(items))
	for i, item := range items {
		if r.steps++; r.steps > maxSteps {
			return &Error{Pos: s.pos, Msg: "render takes too many steps"}
		}
		// Each iteration has its own scope: a set in one is gone in the next.
		inner = sc.child()
		if err := bind(item); err != nil {
			return err
		}
		lp := NewDict()
		idx := int64(i)
		lp.Set("index", idx+1)
		lp.Set("index0", idx)
		lp.Set("revindex", n-idx)
		lp.Set("revindex0", n-idx-1)
		lp.Set("first", i == 0)
		lp.Set("last", idx == n-1)
		lp.Set("length", n)
		lp.Set("depth", depth)
		lp.Set("depth0", depth-1)
		if i > 0 {
			lp.set("previtem", items[i-1])
		} else {
			lp.set("previtem", undefined{"there is no previous item"})
		}
		if idx < n-1 {
			lp.set("nextitem", items[i+1])
		} else {
			lp.set("nextitem", undefined{"there is no next item"})
		}
		lp.set("cycle", cycler{idx})
		lp.set("changed", changer{run})
		inner.vars["loop"] = &loopCtx{lp, idx + 1, n, run}
		err := r.exec(s.body, inner)
		var sig loopSignal
		if errors.As(err, &sig) {
			if sig.brk {
				break
			}
			continue
		}
		if err != nil {
			return err
		}
		completed = true
	}
	if !completed && s.els != nil {
		return r.exec(s.els, sc.child())
	}
	return nil
}

// recurse is loop(items) of a recursive loop's run: the loop's body over
// items one level deeper, its output the value.
func (r *renderer) recurse(run *loopRun, items value, pos int) (value, error) {
	if r.depth++; r.depth > maxDepth {
		return nil, &Error{Pos: pos, Msg: "recursive loop calls nested too deeply"}
	}
	defer func() { r.depth-- }()
	saved := r.buf
	r.buf = &strBuf{}
	err := r.runLoop(run.s, run.sc, items, pos, run.depth+1)
	out := r.buf.str()
	r.buf = saved
	return out, err
}

// iterate returns the items of a list or a dict view, the keys of a
// dict, the characters of a string, what an iterator has left (using it
// up); undefined is empty.
func iterate(v value) ([]value, error) {
	switch x := seq(v).(type) {
	case []value:
		return x, nil
	case *Dict:
		return slices.Clone(x.keys), nil
	case *view:
		return x.items, nil
	case *iterator:
		return x.rest(), nil
	case str:
		var out []value
		for i, r := range x.s {
			out = append(out, x.sub(i, i+len(string(r))))
		}
		return out, nil
	case markup:
		return iterate(x.str) // str's characters, as Python's Markup gives
	case undefined:
		return nil, nil
	}
	return nil, fmt.Errorf("'%s' object is not iterable", typeName(v))
}

func (r *renderer) eval(e expr, sc *scope) (value, error) {
	// Parsing bounds nesting; chains (a + b + …, x|f|g…, x.a.b…) are
	// parsed in a loop but evaluated recursively.
	if r.depth++; r.depth > maxDepth {
		return nil, &Error{Pos: e.at(), Msg: "expression nested too deeply"}
	}
	defer func() { r.depth-- }()
	switch x := e.(type) {
	case *litExpr:
		return x.v, nil
	case *nameExpr:
		if v, ok := sc.lookup(x.name); ok {
			return v, nil
		}
		switch x.name {
		case "raise_exception", "namespace", "range", "strftime_now", "dict", "joiner", "cycler", "lipsum":
			return builtin{x.name}, nil
		}
		return undefined{fmt.Sprintf("'%s' is undefined", x.name)}, nil
	case *listExpr:
		out := make([]value, len(x.items))
		for i, it := range x.items {
			v, err := r.eval(it, sc)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		if x.tuple {
			return tuple(out), nil
		}
		return out, nil
	case *dictExpr:
		d := NewDict()
		for i := range x.keys {
			k, err := r.eval(x.keys[i], sc)
			if err != nil {
				return nil, err
			}
			v, err := r.eval(x.vals[i], sc)
			if err != nil {
				return nil, err
			}
			if err := d.setKey(k, v); err != nil {
				return nil, &Error{Pos: x.keys[i].at(), Msg: err.Error()}
			}
		}
		return d, nil
	case *attrExpr:
		v, err := r.eval(x.x, sc)
		if err != nil {
			return nil, err
		}
		out, err := getAttr(v, x.name, true)
		if err != nil {
			return nil, &Error{Pos: x.pos, Msg: err.Error()}
		}
		return out, nil
	case *indexExpr:
		v, err := r.eval(x.x, sc)
		if err != nil {
			return nil, err
		}
		i, err := r.eval(x.i, sc)
		if err != nil {
			return nil, err
		}
		// A string's runes are counted to index it; a key is hashed.
		if _, ok := v.(str); ok {
			if err := r.work(shallow(v)); err != nil {
				return nil, &Error{Pos: x.pos, Msg: err.Error()}
			}
		}
		if err := r.work(shallow(i)); err != nil {
			return nil, &Error{Pos: x.pos, Msg: err.Error()}
		}
		out, err := getItem(v, i)
		if err != nil {
			return nil, &Error{Pos: x.pos, Msg: err.Error()}
		}
		return out, nil
	case *sliceExpr:
		return r.slice(x, sc)
	case *callExpr:
		v, err := r.call(x, sc)
		if err != nil {
			return nil, err
		}
		return v, r.charge(v, x.at())
	case *filterExpr:
		v, err := r.filter(x, sc)
		if err != nil {
			return nil, err
		}
		return v, r.charge(v, x.at())
	case *testExpr:
		return r.test(x, sc)
	case *unaryExpr:
		v, err := r.eval(x.x, sc)
		if err != nil {
			return nil, err
		}
		switch x.op {
		case "not":
			return !truthy(v), nil
		case "-":
			switch n := v.(type) {
			case int64:
				if n == math.MinInt64 {
					return bigInt{new(big.Int).Neg(big.NewInt(n))}, nil
				}
				return -n, nil
			case bigInt:
				return mkInt(new(big.Int).Neg(n.v))
			case float64:
				return -n, nil
			case bool:
				return -b2i(n), nil
			}
		case "+":
			switch n := v.(type) {
			case int64, float64, bigInt:
				return v, nil
			case bool:
				return b2i(n), nil
			}
		}
		return nil, &Error{Pos: x.pos, Msg: fmt.Sprintf("bad operand type for unary %s: %s", x.op, typeName(v))}
	case *binaryExpr:
		v, err := r.binary(x, sc)
		if err != nil {
			return nil, err
		}
		return v, r.charge(v, x.at())
	case *compareExpr:
		l, err := r.eval(x.first, sc)
		if err != nil {
			return nil, err
		}
		for i, op := range x.ops {
			rv, err := r.eval(x.rest[i], sc)
			if err != nil {
				return nil, err
			}
			ok, err := r.compare(op, l, rv)
			if err != nil {
				return nil, &Error{Pos: x.rest[i].at(), Msg: err.Error()}
			}
			if !ok {
				return false, nil
			}
			l = rv
		}
		return true, nil
	case *condExpr:
		c, err := r.eval(x.cond, sc)
		if err != nil {
			return nil, err
		}
		if truthy(c) {
			return r.eval(x.then, sc)
		}
		if x.els == nil {
			return undefined{"the inline if-expression evaluated to false and no else section was defined"}, nil
		}
		return r.eval(x.els, sc)
	}
	return nil, &Error{Pos: e.at(), Msg: fmt.Sprintf("unknown expression %T", e)}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func (r *renderer) binary(x *binaryExpr, sc *scope) (value, error) {
	l, err := r.eval(x.l, sc)
	if err != nil {
		return nil, err
	}
	switch x.op {
	case "and":
		if !truthy(l) {
			return l, nil
		}
		return r.eval(x.r, sc)
	case "or":
		if truthy(l) {
			return l, nil
		}
		return r.eval(x.r, sc)
	}
	rv, err := r.eval(x.r, sc)
	if err != nil {
		return nil, err
	}
	if x.op == "~" {
		a, err := toStr(l)
		if err != nil {
			return nil, &Error{Pos: x.l.at(), Msg: err.Error()}
		}
		b, err := toStr(rv)
		if err != nil {
			return nil, &Error{Pos: x.r.at(), Msg: err.Error()}
		}
		if len(a.s)+len(b.s) > maxLen {
			return nil, &Error{Pos: x.pos, Msg: "string too long"}
		}
		return concatStr(a, b), nil
	}
	m, esc := l.(markup)
	if s, ok := l.(str); (ok || esc) && x.op == "%" {
		// Printf-style formatting, which takes an undefined argument as
		// Python's str % does (str() of it is "").
		if esc {
			s = m.str
		}
		if err := r.work(shallow(s) + deep(rv, maxLen)); err != nil {
			return nil, &Error{Pos: x.pos, Msg: err.Error()}
		}
		out, err := percentFormat(s, rv, esc)
		if err != nil {
			return nil, &Error{Pos: x.pos, Msg: err.Error()}
		}
		return out, nil
	}
	for _, v := range []value{l, rv} {
		if u, ok := v.(undefined); ok {
			return nil, &Error{Pos: x.pos, Msg: u.what}
		}
	}
	if err := r.work(intWork(l, rv)); err != nil {
		return nil, &Error{Pos: x.pos, Msg: err.Error()}
	}
	out, err := arith(x.op, l, rv)
	if err != nil {
		return nil, &Error{Pos: x.pos, Msg: err.Error()}
	}
	if err := r.work(intWork(out, out)); err != nil {
		// What made a bigInt (a power of small ints, say) is as much
		// work as multiplying it by itself.
		return nil, &Error{Pos: x.pos, Msg: err.Error()}
	}
	return out, nil
}

func arith(op string, l, r value) (value, error) {
	l, r = asTuple(l), asTuple(r)
	_, lmok := l.(markup)
	_, rmok := r.(markup)
	if op == "+" && (lmok || rmok) {
		// Markup + str escapes the str (either side); the sum is Markup.
		var parts [2]str
		for i, v := range []value{l, r} {
			switch x := v.(type) {
			case markup:
				parts[i] = x.str
			case str:
				parts[i] = escapeHTML(x)
			default:
				return nil, operandError(op, l, r)
			}
		}
		if len(parts[0].s)+len(parts[1].s) > maxLen {
			return nil, errors.New("string too long")
		}
		return markup{concatStr(parts[0], parts[1])}, nil
	}
	if op == "*" && (lmok || rmok) {
		// Markup.__mul__ and __rmul__: the str repeated, as Markup.
		other := l
		if lmok {
			other = r
		}
		if _, ok := intOf(other); !ok {
			return nil, fmt.Errorf("'%s' object cannot be interpreted as an integer", typeName(other))
		}
		out, err := arith(op, plain(l), plain(r))
		if err != nil {
			return nil, err
		}
		return markup{out.(str)}, nil
	}
	ls, lok := l.(str)
	rs, rok := r.(str)
	switch {
	case lok && rok && op == "+":
		if len(ls.s)+len(rs.s) > maxLen {
			return nil, errors.New("string too long")
		}
		return concatStr(ls, rs), nil
	case op == "+":
		if a, ok := l.([]value); ok {
			if b, ok := r.([]value); ok {
				if len(a)+len(b) > maxItems {
					return nil, errors.New("list too long")
				}
				return append(append([]value{}, a...), b...), nil
			}
		}
		if a, ok := l.(tuple); ok {
			if b, ok := r.(tuple); ok {
				if len(a)+len(b) > maxItems {
					return nil, errors.New("tuple too long")
				}
				return append(append(tuple{}, a...), b...), nil
			}
		}
	case op == "*" && (lok || rok):
		s, n := ls, r
		if rok {
			s, n = rs, l
		}
		if _, ok := n.(bigInt); ok {
			return nil, errIndexSize
		}
		if k, ok := intOf(n); ok {
			if k <= 0 {
				return str{}, nil
			}
			if int64(len(s.s))*k > maxLen {
				return nil, errors.New("string repetition too large")
			}
			out := str{s: strings.Repeat(s.s, int(k))}
			for i := range int(k) {
				for _, sp := range s.data {
					off := i * len(s.s)
					out.data = append(out.data, span{sp.lo + off, sp.hi + off})
				}
			}
			return out, nil
		}
	case op == "*":
		// A list or tuple repeated (an int or bool on either side).
		seqv, n := l, r
		if isInt(l) {
			seqv, n = r, l
		}
		items, isList := seqv.([]value)
		t, isTuple := seqv.(tuple)
		if isTuple {
			items = t
		}
		if _, ok := n.(bigInt); ok && (isList || isTuple) {
			return nil, errIndexSize
		}
		if k, ok := intOf(n); ok && (isList || isTuple) {
			k = max(k, 0)
			if int64(len(items))*k > maxItems {
				return nil, errors.New("list too long")
			}
			out := make([]value, 0, int64(len(items))*k)
			for range k {
				out = append(out, items...)
			}
			if isTuple {
				return tuple(out), nil
			}
			return out, nil
		}
	}
	if op == "**" {
		return pyPow(l, r)
	}
	if lb, ok := l.(bigInt); ok && isInt(r) {
		rb, _ := bigOf(r)
		return bigArith(op, lb.v, rb)
	}
	if rb, ok := r.(bigInt); ok && isInt(l) {
		lb, _ := bigOf(l)
		return bigArith(op, lb, rb.v)
	}
	li, liok := intOf(l)
	ri, riok := intOf(r)
	if liok && riok {
		switch op {
		case "+", "-", "*":
			return intArith(op, li, ri)
		case "/":
			if ri == 0 {
				return nil, errors.New("division by zero")
			}
			if li > 1<<53 || li < -1<<53 || ri > 1<<53 || ri < -1<<53 {
				// Python rounds the quotient once; the ints' own
				// conversions to float would round first.
				q, _ := new(big.Rat).SetFrac64(li, ri).Float64()
				return q, nil
			}
			return float64(li) / float64(ri), nil
		case "//", "%":
			if ri == 0 {
				return nil, zeroDivision(op, false)
			}
			if op == "//" && li == math.MinInt64 && ri == -1 {
				return bigArith(op, big.NewInt(li), big.NewInt(ri))
			}
			q, m := li/ri, li%ri
			if m != 0 && (m < 0) != (ri < 0) {
				q--
				m += ri
			}
			if op == "//" {
				return q, nil
			}
			return m, nil
		}
	}
	lf, lfok := num(l)
	rf, rfok := num(r)
	if lfok && rfok {
		for _, v := range []value{l, r} {
			if b, ok := v.(bigInt); ok {
				if _, err := bigFloat(b.v); err != nil {
					return nil, err
				}
			}
		}
		switch op {
		case "+":
			return lf + rf, nil
		case "-":
			return lf - rf, nil
		case "*":
			return lf * rf, nil
		case "/", "//", "%":
			if rf == 0 {
				return nil, zeroDivision(op, true)
			}
			if op == "/" {
				return lf / rf, nil
			}
			div, mod := pyDivmod(lf, rf)
			if op == "//" {
				return div, nil
			}
			return mod, nil
		}
	}
	return nil, operandError(op, l, r)
}

// zeroDivision is Python 3.11's ZeroDivisionError for op (/, // or %)
// by zero, of floats where float.
func zeroDivision(op string, float bool) error {
	switch {
	case op == "/" && float:
		return errors.New("float division by zero")
	case op == "/":
		return errors.New("division by zero")
	case op == "//" && float:
		return errors.New("float floor division by zero")
	case op == "//":
		return errors.New("integer division or modulo by zero")
	case float:
		return errors.New("float modulo")
	}
	return errors.New("integer modulo by zero")
}

// operandError is Python's TypeError for l op r.
func operandError(op string, l, r value) error {
	if op == "**" {
		op = "** or pow()"
	}
	if op == "+" {
		switch l.(type) {
		case str, markup, []value, tuple:
			return fmt.Errorf("can only concatenate %s (not \"%s\") to %s", typeName(l), typeName(r), typeName(l))
		}
	}
	return fmt.Errorf("unsupported operand type(s) for %s: '%s' and '%s'", op, typeName(l), typeName(r))
}

// pyDivmod is Python's divmod of floats (float_divmod), whose quotient
// // gives: from fmod, so that -3 // (1/3) is -10.0 where floor(-3 /
// (1/3)) is -9.0.
func pyDivmod(vx, wx float64) (div, mod float64) {
	mod = math.Mod(vx, wx)
	div = (vx - mod) / wx
	if mod != 0 {
		if (wx < 0) != (mod < 0) {
			mod += wx
			div -= 1
		}
	} else {
		mod = math.Copysign(0, wx)
	}
	if div != 0 {
		fl := math.Floor(div)
		if div-fl > 0.5 {
			fl++
		}
		div = fl
	} else {
		div = math.Copysign(0, vx/wx)
	}
	return div, mod
}

// intArith is a + b, a - b or a * b of ints, a bigInt where the result
// is past int64.
func intArith(op string, a, b int64) (value, error) {
	var out int64
	var ok bool
	switch op {
	case "+":
		out = a + b
		ok = (out > a) == (b > 0)
	case "-":
		out = a - b
		ok = (out < a) == (b > 0)
	default:
		ua, ub := uint64(a), uint64(b)
		if a < 0 {
			ua = -ua
		}
		if b < 0 {
			ub = -ub
		}
		hi, lo := bits.Mul64(ua, ub)
		out = a * b
		ok = hi == 0 && (lo <= math.MaxInt64 || (a < 0) != (b < 0) && lo == 1<<63)
	}
	if !ok {
		return bigArith(op, big.NewInt(a), big.NewInt(b))
	}
	return out, nil
}

// pyPow is Python's l ** r for numbers (bools as ints): an int for ints
// with a non-negative exponent, else a float (C's pow, correctly
// rounded here: the exponent must be a whole number, as templates use
// it; a fractional one is refused, as Go's math.Pow may differ from C's
// in the last bit and a negative base gives Python a complex number).
func pyPow(l, r value) (value, error) {
	li, liok := bigOf(l)
	ri, riok := bigOf(r)
	if liok && riok && ri.Sign() >= 0 {
		return bigPow(li, ri)
	}
	x, xok := num(l)
	y, yok := num(r)
	if !xok || !yok {
		return nil, operandError("**", l, r)
	}
	for _, v := range []value{l, r} {
		if b, ok := v.(bigInt); ok {
			if _, err := bigFloat(b.v); err != nil {
				return nil, err
			}
		}
	}
	return floatPow(x, y)
}

// floatPow is C's pow(x, y) as Python's float ** float calls it, for a
// whole-number y: computed in 256-bit precision, rounded once.
func floatPow(x, y float64) (float64, error) {
	switch {
	case y == 0:
		return 1, nil
	case math.IsNaN(x) || math.IsInf(x, 0) || math.IsNaN(y) || math.IsInf(y, 0) || x == 1:
		// Annex F's special cases, which Go's Pow follows.
		return math.Pow(x, y), nil
	case x == 0 && y < 0:
		return 0, errors.New("0.0 cannot be raised to a negative power")
	case x == 0:
		return math.Pow(x, y), nil
	case y != math.Trunc(y):
		return 0, fmt.Errorf("** with a fractional exponent (%s) is not supported", pyFloat(y))
	}
	odd := math.Mod(y, 2) != 0
	neg := x < 0 && odd
	if l := y * math.Log2(math.Abs(x)); l > 1100 {
		return 0, errors.New("(34, 'Numerical result out of range')")
	} else if l < -1200 {
		if neg {
			return math.Copysign(0, -1), nil
		}
		return 0, nil
	}
	const prec = 256
	z := new(big.Float).SetPrec(prec).SetInt64(1)
	b := new(big.Float).SetPrec(prec).SetFloat64(math.Abs(x))
	for e := uint64(math.Abs(y)); e > 0; e >>= 1 {
		if e&1 == 1 {
			z.Mul(z, b)
		}
		if e > 1 {
			b.Mul(b, b)
		}
	}
	if y < 0 {
		z.Quo(new(big.Float).SetPrec(prec).SetInt64(1), z)
	}
	out, _ := z.Float64()
	if math.IsInf(out, 0) {
		return 0, errors.New("(34, 'Numerical result out of range')")
	}
	if neg {
		out = -out
	}
	return out, nil
}

// intOf returns an int or bool as int64.
func intOf(v value) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case bool:
		return b2i(x), true
	}
	return 0, false
}

// plain is a Markup string as the str it is, anything else as it is.
func plain(v value) value {
	if m, ok := v.(markup); ok {
		return m.str
	}
	return v
}

func (r *renderer) compare(op string, a, b value) (bool, error) {
	l, rv := plain(a), plain(b)
	switch op {
	case "==":
		return r.eq(l, rv)
	case "!=":
		ok, err := r.eq(l, rv)
		return !ok, err
	case "in", "not in":
		in, err := r.contains(rv, l)
		if err != nil {
			return false, err
		}
		return in == (op == "in"), nil
	}
	if err := r.work(min(shallow(l), shallow(rv))); err != nil {
		return false, err
	}
	c, err := pyCompare(l, rv)
	if err != nil {
		return false, fmt.Errorf("'%s' not supported between instances of '%s' and '%s'", op, typeName(l), typeName(rv))
	}
	if _, ok := cmpNum(l, rv); !ok && isNumber(l) && isNumber(rv) {
		return false, nil // NaN: no order holds
	}
	switch op {
	case "<":
		return c < 0, nil
	case ">":
		return c > 0, nil
	case "<=":
		return c <= 0, nil
	}
	return c >= 0, nil
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// contains is Python's item in container.
func (r *renderer) contains(container, item value) (bool, error) {
	item = plain(item)
	find := func(items []value) (int, error) {
		for i, e := range items {
			ok, err := r.eq(e, item)
			if ok || err != nil {
				return i, err
			}
		}
		return -1, nil
	}
	switch c := seq(plain(container)).(type) {
	case str:
		s, ok := item.(str)
		if !ok {
			return false, fmt.Errorf("'in <string>' requires string as left operand, not %s", typeName(item))
		}
		if err := r.work(len(c.s)); err != nil {
			return false, err
		}
		return strings.Contains(c.s, s.s), nil
	case []value:
		i, err := find(c)
		return i >= 0, err
	case *Dict:
		switch item.(type) {
		case []value, *Dict:
			return false, fmt.Errorf("unhashable type: '%s'", typeName(item))
		}
		if err := r.work(shallow(item)); err != nil {
			return false, err
		}
		_, in := c.lookup(item)
		return in, nil
	case *view:
		i, err := find(c.items)
		return i >= 0, err
	case *iterator:
		// Python's in takes items until it finds one: the rest stay.
		i, err := find(c.items[c.pos:])
		if i < 0 {
			c.pos = len(c.items)
			return false, err
		}
		c.pos += i + 1
		return true, err
	case undefined:
		return false, nil // Undefined iterates as empty
	}
	return false, fmt.Errorf("argument of type '%s' is not iterable", typeName(container))
}

// listMutators and dictMutators are the methods that change a list or a
// dict, which jinja2's ImmutableSandboxedEnvironment (transformers') makes
// an undefined that fails when used.
var (
	listMutators = map[string]bool{"append": true, "extend": true, "insert": true, "pop": true, "remove": true, "reverse": true, "sort": true, "clear": true}
	dictMutators = map[string]bool{"pop": true, "popitem": true, "setdefault": true, "update": true, "clear": true}
)

// getAttr is jinja2's getattr (x.name): a dict's methods and then its
// keys, a string's methods, a namespace's attributes, loop's fields.
func getAttr(v value, name string, attrFirst bool) (value, error) {
	if g, ok := v.(*groupTuple); ok {
		switch name {
		case "grouper":
			return g.t[0], nil
		case "list":
			return g.t[1], nil
		}
		v = g.t
	}
	switch x := v.(type) {
	case undefined:
		return nil, errors.New(x.what)
	case *Dict:
		if attrFirst && isMethod(v, name) {
			return method{v, name}, nil
		}
		if attrFirst && dictMutators[name] {
			return undefined{fmt.Sprintf("access to attribute '%s' of 'dict' object is unsafe.", name)}, nil
		}
		if attrFirst && pyMethods["dict"][name] {
			return method{v, name}, nil
		}
		if e, ok := x.get(name); ok {
			return e, nil
		}
		if !attrFirst && isMethod(v, name) {
			return method{v, name}, nil
		}
		return undefined{fmt.Sprintf("'dict object' has no attribute '%s'", name)}, nil
	case *namespace:
		if e, ok := x.d.get(name); ok {
			return e, nil
		}
	case *loopCtx:
		if e, ok := x.d.get(name); ok {
			return e, nil
		}
	case *macro:
		// jinja2's Macro has name, arguments and other attributes.
		return nil, fmt.Errorf("the attributes of a macro (.%s) are not supported", name)
	case *pyCycler:
		switch name {
		case "next", "reset":
			return method{v, name}, nil
		case "current":
			return x.items[x.pos], nil
		}
	default:
		if isMethod(v, name) || pyMethods[typeName(v)][name] {
			return method{v, name}, nil
		}
		if a, ok := numberAttr(v, name); ok {
			return a, nil
		}
		if _, ok := seq(v).([]value); ok && listMutators[name] {
			return undefined{fmt.Sprintf("access to attribute '%s' of '%s' object is unsafe.", name, typeName(v))}, nil
		}
	}
	return undefined{fmt.Sprintf("'%s' has no attribute '%s'", objectRepr(v), name)}, nil
}

// objectRepr is jinja2's object_type_repr, which its undefined messages
// name a value by: "None", or "list object".
func objectRepr(v value) string {
	if v == nil {
		return "None"
	}
	return typeName(v) + " object"
}

// noElement is jinja2's message for v[i] that v does not have.
func noElement(v, i value) string {
	var b strings.Builder
	if err := pyRepr(&b, i); err != nil {
		b.WriteString(typeName(i))
	}
	return objectRepr(v) + " has no element " + b.String()
}

// getItem is jinja2's getitem (x[i]): an index, a key, else an attribute.
func getItem(v value, i value) (value, error) {
	if m, ok := v.(markup); ok {
		// Markup's index is Markup.
		out, err := getItem(m.str, i)
		if s, ok := out.(str); ok {
			return markup{s}, err
		}
		return out, err
	}
	if b, ok := i.(bigInt); ok {
		// Python's IndexError (past any index), which jinja2's getitem
		// makes undefined.
		switch seq(v).(type) {
		case []value, str:
			return undefined{fmt.Sprintf("%s object has no element %s", typeName(v), b.v)}, nil
		}
	}
	switch x := seq(v).(type) {
	case undefined:
		return nil, errors.New(x.what)
	case []value:
		if n, ok := intOf(i); ok {
			if n < 0 {
				n += int64(len(x))
			}
			if n < 0 || n >= int64(len(x)) {
				return undefined{"list object has no element " + fmt.Sprint(n)}, nil
			}
			return x[n], nil
		}
	case str:
		if n, ok := intOf(i); ok {
			runes := []rune(x.s)
			if n < 0 {
				n += int64(len(runes))
			}
			if n < 0 || n >= int64(len(runes)) {
				return undefined{"str object has no element " + fmt.Sprint(n)}, nil
			}
			lo := len(string(runes[:n]))
			return x.sub(lo, lo+len(string(runes[n]))), nil
		}
	case *Dict:
		if k, ok := i.(str); ok {
			return getAttr(v, k.s, false)
		}
		if e, ok := x.lookup(i); ok {
			return e, nil
		}
		return undefined{noElement(v, i)}, nil
	}
	if k, ok := i.(str); ok {
		return getAttr(v, k.s, false)
	}
	return undefined{noElement(v, i)}, nil
}

func (r *renderer) slice(x *sliceExpr, sc *scope) (value, error) {
	v, err := r.eval(x.x, sc)
	if err != nil {
		return nil, err
	}
	var bounds [3]*int64
	for k, e := range []expr{x.lo, x.hi, x.step} {
		if e == nil {
			continue
		}
		b, err := r.eval(e, sc)
		if err != nil {
			return nil, err
		}
		if b == nil {
			continue
		}
		n, ok := intOf(b)
		if bb, isBig := b.(bigInt); isBig {
			// Python clamps a slice's ints to a C ssize_t's range, and
			// a step to -(2**63 - 1) at least.
			n, ok = math.MaxInt64, true
			if bb.v.Sign() < 0 {
				n = math.MinInt64
				if k == 2 {
					n = -math.MaxInt64
				}
			}
		}
		if !ok {
			return nil, &Error{Pos: e.at(), Msg: "slice indices must be integers or None"}
		}
		bounds[k] = &n
	}
	step := int64(1)
	if bounds[2] != nil {
		step = *bounds[2]
	}
	if step == 0 {
		return nil, &Error{Pos: x.pos, Msg: "slice step cannot be zero"}
	}
	if err := r.work(shallow(v)); err != nil {
		return nil, &Error{Pos: x.pos, Msg: err.Error()}
	}
	if _, ok := v.(*pyRange); ok {
		// Python's slice of a range is a range.
		return nil, &Error{Pos: x.pos, Msg: "slicing a range is not supported"}
	}
	if m, ok := v.(markup); ok {
		// Markup's slice is Markup.
		out, err := r.sliceOf(x, m.str, bounds, step)
		if s, ok := out.(str); ok {
			return markup{s}, err
		}
		return out, err
	}
	return r.sliceOf(x, v, bounds, step)
}

// sliceOf is v[bounds] (a list, tuple or string).
func (r *renderer) sliceOf(x *sliceExpr, v value, bounds [3]*int64, step int64) (value, error) {
	v = asTuple(v)
	_, isTuple := v.(tuple)
	v = seq(v)
	var n int64
	var runes []rune
	switch y := v.(type) {
	case []value:
		n = int64(len(y))
	case str:
		runes = []rune(y.s)
		n = int64(len(runes))
	case undefined:
		return nil, &Error{Pos: x.pos, Msg: y.what}
	default:
		return nil, &Error{Pos: x.pos, Msg: fmt.Sprintf("'%s' object is not subscriptable", typeName(v))}
	}
	idx := pySlice(n, bounds[0], bounds[1], step)
	switch y := v.(type) {
	case []value:
		out := make([]value, 0, len(idx))
		for _, i := range idx {
			out = append(out, y[i])
		}
		if isTuple {
			return tuple(out), nil
		}
		return out, nil
	default:
		s := v.(str)
		// Byte offset of each rune, to keep data ranges.
		offs := make([]int, 0, n+1)
		for i := range s.s {
			offs = append(offs, i)
		}
		offs = append(offs, len(s.s))
		var out strBuf
		for _, i := range idx {
			out.add(s.sub(offs[i], offs[i+1]))
		}
		_ = runes
		return out.str(), nil
	}
}

// pySlice lists the indices Python's slice(lo, hi, step) takes of a
// sequence of n.
func pySlice(n int64, lo, hi *int64, step int64) []int64 {
	clamp := func(p *int64, def, lower, upper int64) int64 {
		if p == nil {
			return def
		}
		v := *p
		if v < 0 {
			v += n
			if v < lower {
				v = lower
			}
		} else if v > upper {
			v = upper
		}
		return v
	}
	var out []int64
	if step > 0 {
		a, b := clamp(lo, 0, 0, n), clamp(hi, n, 0, n)
		for i := a; i < b; i += step {
			out = append(out, i)
		}
	} else {
		a, b := clamp(lo, n-1, -1, n-1), clamp(hi, -1, -1, n-1)
		for i := a; i > b; i += step {
			out = append(out, i)
		}
	}
	return out
}
