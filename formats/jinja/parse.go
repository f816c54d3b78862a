package jinja

import (
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
)

// expr is an expression node; at is its byte offset in the template.
type expr interface{ at() int }

type node struct{ pos int }

func (n node) at() int { return n.pos }

type (
	litExpr struct {
		node
		v value
	}
	nameExpr struct {
		node
		name string
	}
	listExpr struct {
		node
		items []expr
		tuple bool
	}
	dictExpr struct {
		node
		keys, vals []expr
	}
	attrExpr struct {
		node
		x    expr
		name string
	}
	indexExpr struct {
		node
		x, i expr
	}
	sliceExpr struct {
		node
		x, lo, hi, step expr // nil when left out
	}
	callExpr struct {
		node
		fn     expr
		args   []expr
		kwargs []kwarg
		dyn    dynArgs
	}
	filterExpr struct {
		node
		x      expr
		name   string
		args   []expr
		kwargs []kwarg
		dyn    dynArgs
	}
	testExpr struct {
		node
		x    expr
		name string
		args []expr
		dyn  dynArgs
		neg  bool
	}
	// dynArgs are a call's *args and **kwargs (nil when left out): the
	// items of an iterable after the positional arguments, a dict's
	// entries after the keyword arguments.
	dynArgs   struct{ args, kwargs expr }
	unaryExpr struct {
		node
		op string
		x  expr
	}
	binaryExpr struct {
		node
		op   string
		l, r expr
	}
	compareExpr struct {
		node
		first expr
		ops   []string
		rest  []expr
	}
	condExpr struct {
		node
		then, cond, els expr // els nil: undefined
	}
)

type kwarg struct {
	name string
	x    expr
}

// stmt is a statement node.
type stmt interface{}

type (
	textStmt struct {
		s   string
		pos int
	}
	outStmt struct{ x expr }
	ifStmt  struct {
		conds  []expr
		bodies [][]stmt
		els    []stmt
	}
	forStmt struct {
		node
		vars      target
		iter      expr
		cond      expr // nil: no filter
		body      []stmt
		els       []stmt // {% else %}: rendered when no iteration ran to its end
		recursive bool   // loop(items) renders the body again, one level deeper
	}
	setStmt struct {
		node
		name, attr string  // attr: set name.attr = x
		tuple      *target // set a, (b, c) = x: the tuple, name ""
		x          expr
	}
	// setBlockStmt is {% set name[.attr] [| filters] %}body{% endset %}:
	// the body rendered in a scope of its own, filtered, assigned.
	setBlockStmt struct {
		node
		name, attr string
		filters    []*filterExpr // x nil: applied to the body's text
		body       []stmt
	}
	// filterBlockStmt is {% filter f | g %}body{% endfilter %}.
	filterBlockStmt struct {
		node
		filters []*filterExpr
		body    []stmt
	}
	// scopeStmt renders body in a scope of its own: transformers'
	// {% generation %}, a call block whose caller() jinja2 prints.
	scopeStmt struct {
		node
		body []stmt
	}
	// withStmt is {% with a = x, b = y %}body{% endwith %}: the values
	// evaluated in the enclosing scope, set in the body's own.
	withStmt struct {
		node
		sets []setStmt
		body []stmt
	}
	// printStmt is {% print x, y %}: its expressions printed.
	printStmt []stmt
	// macroStmt defines a macro (or, in a callBlockStmt, the caller).
	macroStmt struct {
		node
		name     string
		params   []string
		defaults []expr // one per param, nil where it has none
		body     []stmt
		// The body reads varargs, kwargs or caller (as jinja2 decides
		// whether a macro takes extra arguments and a caller).
		catchVarargs, catchKwargs, catchCaller bool
	}
	// callBlockStmt is {% call(params) f(args) %}body{% endcall %}: f
	// called with caller, a macro of params whose body is body.
	callBlockStmt struct {
		node
		call   *callExpr
		caller *macroStmt
	}
	loopCtl struct {
		node
		brk bool
	}
)

// parser builds statements from the pieces of a template.
type parser struct {
	pieces []piece
	i      int
	// current tag's tokens
	toks []token
	t    int
	// depth counts the statements and expressions being parsed inside
	// one another, bounded by maxDepth.
	depth int
	// loops counts the for loops around the statement being parsed,
	// within the macro, call or generation body it is in: break and
	// continue need one.
	loops int
	// loads collects the names read inside the macro body being parsed
	// (nil outside one).
	loads map[string]bool
}

// maxDepth bounds how deep statements and expressions nest, in parsing
// and in rendering, so that a template cannot exhaust the stack (a fatal
// error, not an error Render could return).
const maxDepth = 1000

// enter counts one level of nesting at pos; leave undoes it.
func (p *parser) enter(pos int) error {
	if p.depth++; p.depth > maxDepth {
		return &Error{Pos: pos, Msg: "template nested too deeply"}
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

func parseTemplate(src string) ([]stmt, error) {
	pieces, err := split(src)
	if err != nil {
		return nil, err
	}
	p := &parser{pieces: pieces}
	body, end, err := p.block()
	if err != nil {
		return nil, err
	}
	if end != "" {
		return nil, &Error{Pos: p.toks[0].pos, Msg: fmt.Sprintf("unexpected {%% %s %%} outside a block", end)}
	}
	return body, nil
}

// block parses statements up to a closing tag (endif, elif, else, endfor)
// or the end; it returns that tag's keyword ("" at the end), with p.toks
// holding its tokens after the keyword.
func (p *parser) block() ([]stmt, string, error) {
	var body []stmt
	for p.i < len(p.pieces) {
		pc := p.pieces[p.i]
		p.i++
		switch pc.kind {
		case tagText:
			body = append(body, textStmt{pc.text, pc.pos})
		case tagVar:
			if err := p.start(pc); err != nil {
				return nil, "", err
			}
			x, err := p.expression()
			if err != nil {
				return nil, "", err
			}
			if err := p.end(); err != nil {
				return nil, "", err
			}
			body = append(body, outStmt{x})
		case tagBlock:
			if err := p.start(pc); err != nil {
				return nil, "", err
			}
			kw := p.next()
			if kw.kind != tokName {
				return nil, "", &Error{Pos: kw.pos, Msg: "expected a statement name after {%"}
			}
			switch kw.s {
			case "endif", "elif", "else", "endfor", "endmacro", "endset", "endfilter", "endcall", "endgeneration", "endwith":
				return body, kw.s, nil
			}
			s, err := p.statement(kw)
			if err != nil {
				return nil, "", err
			}
			body = append(body, s)
		}
	}
	return body, "", nil
}

func (p *parser) statement(kw token) (stmt, error) {
	if err := p.enter(kw.pos); err != nil {
		return nil, err
	}
	defer p.leave()
	switch kw.s {
	case "if":
		return p.ifStatement(kw)
	case "for":
		return p.forStatement(kw)
	case "set":
		return p.setStatement(kw)
	case "macro":
		return p.macroStatement(kw)
	case "call":
		return p.callStatement(kw)
	case "filter":
		return p.filterStatement(kw)
	case "with":
		return p.withStatement(kw)
	case "generation":
		if err := p.end(); err != nil {
			return nil, err
		}
		body, err := p.frameBody(kw, "generation", "endgeneration")
		if err != nil {
			return nil, err
		}
		return scopeStmt{node{kw.pos}, body}, nil
	case "break", "continue":
		if p.loops == 0 {
			return nil, &Error{Pos: kw.pos, Msg: fmt.Sprintf("'%s' outside loop", kw.s)}
		}
		if err := p.end(); err != nil {
			return nil, err
		}
		return loopCtl{node{kw.pos}, kw.s == "break"}, nil
	case "print":
		// {% print x, y %} is {{ x }}{{ y }} (none: nothing), as
		// jinja2's parse_print reads it.
		var out []stmt
		for p.toks[p.t].kind != tokEOF {
			if len(out) > 0 {
				if err := p.expect(","); err != nil {
					return nil, err
				}
			}
			x, err := p.expression()
			if err != nil {
				return nil, err
			}
			out = append(out, outStmt{x})
		}
		return printStmt(out), nil
	}
	switch kw.s {
	case "block", "extends", "include", "import", "from", "autoescape":
		return nil, &Error{Pos: kw.pos, Msg: fmt.Sprintf("{%% %s %%} is not supported", kw.s)}
	}
	// A tag transformers' environment does not know either.
	return nil, &Error{Pos: kw.pos, Msg: fmt.Sprintf("Encountered unknown tag '%s'.", kw.s)}
}

func (p *parser) ifStatement(kw token) (stmt, error) {
	var s ifStmt
	for {
		c, err := p.expression()
		if err != nil {
			return nil, err
		}
		if err := p.end(); err != nil {
			return nil, err
		}
		body, end, err := p.block()
		if err != nil {
			return nil, err
		}
		s.conds = append(s.conds, c)
		s.bodies = append(s.bodies, body)
		switch end {
		case "elif":
			continue
		case "else":
			if err := p.end(); err != nil {
				return nil, err
			}
			els, end, err := p.block()
			if err != nil {
				return nil, err
			}
			if end != "endif" {
				return nil, p.unclosed(kw, "if", "endif", end)
			}
			s.els = els
			return s, p.end()
		case "endif":
			return s, p.end()
		}
		return nil, p.unclosed(kw, "if", "endif", end)
	}
}

// unclosed is the error for a block closed by the wrong tag (got) or by
// the end of the template (got "").
func (p *parser) unclosed(kw token, what, want, got string) error {
	if got == "" {
		return &Error{Pos: kw.pos, Msg: fmt.Sprintf("{%% %s %%} is not closed (missing {%% %s %%})", what, want)}
	}
	return &Error{Pos: p.toks[0].pos, Msg: fmt.Sprintf("{%% %s %%} inside {%% %s %%}, want {%% %s %%}", got, what, want)}
}

func (p *parser) forStatement(kw token) (stmt, error) {
	s := &forStmt{node: node{kw.pos}}
	vars, err := p.target("a loop variable name")
	if err != nil {
		return nil, err
	}
	s.vars = vars
	if n := p.next(); n.kind != tokName || n.s != "in" {
		return nil, &Error{Pos: n.pos, Msg: "expected 'in' in {% for %}"}
	}
	iter, err := p.orExpr(false)
	if err != nil {
		return nil, err
	}
	s.iter = iter
	if p.isName("if") {
		p.t++
		if s.cond, err = p.orExpr(true); err != nil {
			return nil, err
		}
	}
	if p.isName("recursive") {
		p.t++
		s.recursive = true
	}
	if err := p.end(); err != nil {
		return nil, err
	}
	p.loops++
	body, end, err := p.block()
	p.loops--
	if err != nil {
		return nil, err
	}
	s.body = body
	if end == "else" {
		if err := p.end(); err != nil {
			return nil, err
		}
		// The else body is outside the loop: a break in it is the
		// enclosing loop's; a recursive loop's else is inside its loop
		// function in jinja2, where no loop encloses it.
		loops := p.loops
		if s.recursive {
			p.loops = 0
		}
		s.els, end, err = p.block()
		p.loops = loops
		if err != nil {
			return nil, err
		}
	}
	if end != "endfor" {
		return nil, p.unclosed(kw, "for", "endfor", end)
	}
	return s, p.end()
}

// target is an assignment target (for, set, with): a name, or a tuple
// of targets (items not nil), which unpacks an iterable.
type target struct {
	name  string
	items []target
}

// target parses names and parenthesized tuples of them separated by
// commas, as jinja2's parse_assign_target: "a", "a, b", "a, (b, c)",
// "(a)" (a name). what names the name wanted, for errors.
func (p *parser) target(what string) (target, error) {
	t, err := p.targetAtom(what)
	if err != nil || !p.isOp(",") {
		return t, err
	}
	tuple := target{items: []target{t}}
	for p.isOp(",") {
		p.t++
		if p.isOp(")") {
			break // (a, b,): a trailing comma inside parentheses
		}
		t, err := p.targetAtom(what)
		if err != nil {
			return target{}, err
		}
		tuple.items = append(tuple.items, t)
	}
	return tuple, nil
}

// targetAtom parses a name or a parenthesized target.
func (p *parser) targetAtom(what string) (target, error) {
	if p.isOp("(") {
		p.t++
		t, err := p.target(what)
		if err != nil {
			return target{}, err
		}
		return t, p.expect(")")
	}
	n := p.next()
	if n.kind != tokName {
		return target{}, &Error{Pos: n.pos, Msg: "expected " + what}
	}
	return target{name: n.s}, nil
}

func (p *parser) setStatement(kw token) (stmt, error) {
	tgt, err := p.target("a variable name after set")
	if err != nil {
		return nil, err
	}
	s := setStmt{node: node{kw.pos}, name: tgt.name}
	if tgt.items != nil {
		s.name, s.tuple = "", &tgt
	} else if p.isOp(".") {
		p.t++
		a := p.next()
		if a.kind != tokName {
			return nil, &Error{Pos: a.pos, Msg: "expected an attribute name"}
		}
		s.attr = a.s
	}
	if s.tuple == nil && (p.isOp("|") || p.toks[p.t].kind == tokEOF) {
		// A block set: {% set x %}…{% endset %}.
		filters, err := p.filterChain()
		if err != nil {
			return nil, err
		}
		if err := p.end(); err != nil {
			return nil, err
		}
		body, end, err := p.block()
		if err != nil {
			return nil, err
		}
		if end != "endset" {
			return nil, p.unclosed(kw, "set", "endset", end)
		}
		return setBlockStmt{node{kw.pos}, s.name, s.attr, filters, body}, p.end()
	}
	if !p.isOp("=") {
		return nil, &Error{Pos: p.toks[p.t].pos, Msg: "expected '=' in {% set %}"}
	}
	p.t++
	x, err := p.expression()
	if err != nil {
		return nil, err
	}
	// set a, b = 1, 2: the value is a tuple without parentheses.
	if p.isOp(",") {
		l := &listExpr{node: node{x.at()}, items: []expr{x}, tuple: true}
		for p.isOp(",") {
			p.t++
			if p.toks[p.t].kind == tokEOF {
				break
			}
			e, err := p.expression()
			if err != nil {
				return nil, err
			}
			l.items = append(l.items, e)
		}
		x = l
	}
	s.x = x
	return s, p.end()
}

// filterChain parses "| f(args) | g …" (none at all too), the filters of
// a block set or a filter block.
func (p *parser) filterChain() ([]*filterExpr, error) {
	var out []*filterExpr
	for p.isOp("|") {
		p.t++
		f, err := p.filter(nil)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// withStatement parses {% with %} as jinja2's parse_with: assignments
// (a name or names) separated by commas, then the body to endwith.
func (p *parser) withStatement(kw token) (stmt, error) {
	w := withStmt{node: node{kw.pos}}
	for p.toks[p.t].kind != tokEOF {
		if len(w.sets) > 0 {
			if err := p.expect(","); err != nil {
				return nil, err
			}
		}
		tgt, err := p.target("a variable name in {% with %}")
		if err != nil {
			return nil, err
		}
		if err := p.expect("="); err != nil {
			return nil, err
		}
		x, err := p.expression()
		if err != nil {
			return nil, err
		}
		st := setStmt{node: node{kw.pos}, name: tgt.name, x: x}
		if tgt.items != nil {
			st.name, st.tuple = "", &tgt
		}
		w.sets = append(w.sets, st)
	}
	body, end, err := p.block()
	if err != nil {
		return nil, err
	}
	if end != "endwith" {
		return nil, p.unclosed(kw, "with", "endwith", end)
	}
	w.body = body
	return w, p.end()
}

func (p *parser) filterStatement(kw token) (stmt, error) {
	if p.toks[p.t].kind == tokEOF {
		return nil, &Error{Pos: p.toks[p.t].pos, Msg: "expected a filter name after {% filter"}
	}
	f, err := p.filter(nil)
	if err != nil {
		return nil, err
	}
	more, err := p.filterChain()
	if err != nil {
		return nil, err
	}
	if err := p.end(); err != nil {
		return nil, err
	}
	body, end, err := p.block()
	if err != nil {
		return nil, err
	}
	if end != "endfilter" {
		return nil, p.unclosed(kw, "filter", "endfilter", end)
	}
	return filterBlockStmt{node{kw.pos}, append([]*filterExpr{f}, more...), body}, p.end()
}

// frameBody parses the body of a macro, call block or generation tag up
// to its end tag: a frame of its own in jinja2, where break and continue
// need a loop inside it.
func (p *parser) frameBody(kw token, what, want string) ([]stmt, error) {
	loops := p.loops
	p.loops = 0
	body, end, err := p.block()
	p.loops = loops
	if err != nil {
		return nil, err
	}
	if end != want {
		return nil, p.unclosed(kw, what, want, end)
	}
	return body, p.end()
}

// signature parses a macro's "(a, b=default, …)", the "(" current.
func (p *parser) signature(m *macroStmt) error {
	if err := p.expect("("); err != nil {
		return err
	}
	for !p.isOp(")") {
		n := p.next()
		if n.kind != tokName {
			return &Error{Pos: n.pos, Msg: "expected an argument name"}
		}
		if slices.Contains(m.params, n.s) {
			return &Error{Pos: n.pos, Msg: fmt.Sprintf("duplicate argument '%s'", n.s)}
		}
		var def expr
		if p.isOp("=") {
			p.t++
			x, err := p.expression()
			if err != nil {
				return err
			}
			def = x
		} else if len(m.defaults) > 0 && m.defaults[len(m.defaults)-1] != nil {
			return &Error{Pos: n.pos, Msg: "non-default argument follows default argument"}
		}
		m.params = append(m.params, n.s)
		m.defaults = append(m.defaults, def)
		if !p.isOp(",") {
			break
		}
		p.t++
	}
	return p.expect(")")
}

// macroBody parses m's body, noting whether it reads varargs, kwargs or
// caller (anywhere, nested macros included, as jinja2 looks).
func (p *parser) macroBody(kw token, m *macroStmt, what, want string) error {
	outer := p.loads
	p.loads = map[string]bool{}
	body, err := p.frameBody(kw, what, want)
	loads := p.loads
	p.loads = outer
	if err != nil {
		return err
	}
	for n := range loads {
		if outer != nil {
			outer[n] = true
		}
	}
	m.body = body
	m.catchVarargs, m.catchKwargs, m.catchCaller = loads["varargs"], loads["kwargs"], loads["caller"]
	return nil
}

func (p *parser) macroStatement(kw token) (stmt, error) {
	n := p.next()
	if n.kind != tokName {
		return nil, &Error{Pos: n.pos, Msg: "expected a macro name"}
	}
	m := &macroStmt{node: node{kw.pos}, name: n.s}
	if err := p.signature(m); err != nil {
		return nil, err
	}
	if err := p.end(); err != nil {
		return nil, err
	}
	if err := p.macroBody(kw, m, "macro", "endmacro"); err != nil {
		return nil, err
	}
	return m, nil
}

func (p *parser) callStatement(kw token) (stmt, error) {
	m := &macroStmt{node: node{kw.pos}, name: "caller"}
	if p.isOp("(") {
		if err := p.signature(m); err != nil {
			return nil, err
		}
	}
	x, err := p.expression()
	if err != nil {
		return nil, err
	}
	c, ok := x.(*callExpr)
	if !ok {
		return nil, &Error{Pos: x.at(), Msg: "expected a call after {% call"}
	}
	if err := p.end(); err != nil {
		return nil, err
	}
	if err := p.macroBody(kw, m, "call", "endcall"); err != nil {
		return nil, err
	}
	return callBlockStmt{node{kw.pos}, c, m}, nil
}

// start makes pc's tokens current.
func (p *parser) start(pc piece) error {
	toks, err := tokens(pc.text, pc.pos)
	if err != nil {
		return err
	}
	p.toks, p.t = toks, 0
	return nil
}

// end checks that the current tag has no tokens left.
func (p *parser) end() error {
	if t := p.toks[p.t]; t.kind != tokEOF {
		return &Error{Pos: t.pos, Msg: fmt.Sprintf("unexpected %q", t.s)}
	}
	return nil
}

func (p *parser) next() token {
	t := p.toks[p.t]
	if t.kind != tokEOF {
		p.t++
	}
	return t
}

func (p *parser) isOp(op string) bool {
	t := p.toks[p.t]
	return t.kind == tokOp && t.s == op
}

func (p *parser) isName(n string) bool {
	t := p.toks[p.t]
	return t.kind == tokName && t.s == n
}

func (p *parser) expect(op string) error {
	if !p.isOp(op) {
		t := p.toks[p.t]
		what := fmt.Sprintf("%q", t.s)
		if t.kind == tokEOF {
			what = "end of tag"
		}
		return &Error{Pos: t.pos, Msg: fmt.Sprintf("expected %q, found %s", op, what)}
	}
	p.t++
	return nil
}

// expression: or-expression [if or-expression [else expression]].
func (p *parser) expression() (expr, error) {
	if err := p.enter(p.toks[p.t].pos); err != nil {
		return nil, err
	}
	defer p.leave()
	x, err := p.orExpr(true)
	if err != nil {
		return nil, err
	}
	for p.isName("if") {
		pos := p.toks[p.t].pos
		p.t++
		c, err := p.orExpr(true)
		if err != nil {
			return nil, err
		}
		var els expr
		if p.isName("else") {
			p.t++
			if els, err = p.orExpr(true); err != nil {
				return nil, err
			}
		}
		x = &condExpr{node{pos}, x, c, els}
	}
	return x, nil
}

// orExpr parses or/and/not/comparisons and below (inline if is the
// caller's: {% for %}'s iterable and filter take none).
func (p *parser) orExpr(_ bool) (expr, error) {
	l, err := p.andExpr()
	if err != nil {
		return nil, err
	}
	for p.isName("or") {
		pos := p.toks[p.t].pos
		p.t++
		r, err := p.andExpr()
		if err != nil {
			return nil, err
		}
		l = &binaryExpr{node{pos}, "or", l, r}
	}
	return l, nil
}

func (p *parser) andExpr() (expr, error) {
	l, err := p.notExpr()
	if err != nil {
		return nil, err
	}
	for p.isName("and") {
		pos := p.toks[p.t].pos
		p.t++
		r, err := p.notExpr()
		if err != nil {
			return nil, err
		}
		l = &binaryExpr{node{pos}, "and", l, r}
	}
	return l, nil
}

func (p *parser) notExpr() (expr, error) {
	if p.isName("not") {
		pos := p.toks[p.t].pos
		p.t++
		if err := p.enter(pos); err != nil {
			return nil, err
		}
		defer p.leave()
		x, err := p.notExpr()
		if err != nil {
			return nil, err
		}
		return &unaryExpr{node{pos}, "not", x}, nil
	}
	return p.compare()
}

func (p *parser) compare() (expr, error) {
	first, err := p.concat()
	if err != nil {
		return nil, err
	}
	c := &compareExpr{node: node{first.at()}, first: first}
	for {
		t := p.toks[p.t]
		var op string
		switch {
		case t.kind == tokOp && (t.s == "==" || t.s == "!=" || t.s == "<" || t.s == ">" || t.s == "<=" || t.s == ">="):
			op = t.s
			p.t++
		case t.kind == tokName && t.s == "in":
			op = "in"
			p.t++
		case t.kind == tokName && t.s == "not" && p.toks[p.t+1].kind == tokName && p.toks[p.t+1].s == "in":
			op = "not in"
			p.t += 2
		}
		if op == "" {
			break
		}
		r, err := p.concat()
		if err != nil {
			return nil, err
		}
		c.ops = append(c.ops, op)
		c.rest = append(c.rest, r)
	}
	if len(c.ops) == 0 {
		return first, nil
	}
	return c, nil
}

func (p *parser) concat() (expr, error) {
	l, err := p.math1()
	if err != nil {
		return nil, err
	}
	for p.isOp("~") {
		pos := p.toks[p.t].pos
		p.t++
		r, err := p.math1()
		if err != nil {
			return nil, err
		}
		l = &binaryExpr{node{pos}, "~", l, r}
	}
	return l, nil
}

func (p *parser) math1() (expr, error) {
	l, err := p.math2()
	if err != nil {
		return nil, err
	}
	for p.isOp("+") || p.isOp("-") {
		t := p.next()
		r, err := p.math2()
		if err != nil {
			return nil, err
		}
		l = &binaryExpr{node{t.pos}, t.s, l, r}
	}
	return l, nil
}

func (p *parser) math2() (expr, error) {
	l, err := p.pow()
	if err != nil {
		return nil, err
	}
	for p.isOp("*") || p.isOp("/") || p.isOp("//") || p.isOp("%") {
		t := p.next()
		r, err := p.pow()
		if err != nil {
			return nil, err
		}
		l = &binaryExpr{node{t.pos}, t.s, l, r}
	}
	return l, nil
}

func (p *parser) pow() (expr, error) {
	l, err := p.unary(true)
	if err != nil {
		return nil, err
	}
	// Left-associative, as jinja2 parses it (2 ** 3 ** 2 is 64), and
	// below a sign (-2 ** 2 is 4).
	for p.isOp("**") {
		t := p.next()
		r, err := p.unary(true)
		if err != nil {
			return nil, err
		}
		// jinja2 folds a constant base and, with an exponent it cannot
		// fold, writes a negative one into its Python code as a bare
		// literal: -2 ** n compiles to Python's -2 ** n, which is
		// -(2 ** n) (-4 for n = 2, where -2 ** 2 folds to 4).
		if lv, ok := constNum(l); ok && negative(lv) {
			if _, rok := constNum(r); !rok {
				abs := lv
				if f, isFloat := lv.(float64); isFloat {
					abs = math.Abs(f)
				} else {
					b, _ := bigOf(lv)
					abs, _ = mkInt(new(big.Int).Neg(b))
				}
				l = &unaryExpr{node{l.at()}, "-", &binaryExpr{node{t.pos}, "**", &litExpr{node{l.at()}, abs}, r}}
				continue
			}
		}
		l = &binaryExpr{node{t.pos}, "**", l, r}
	}
	return l, nil
}

// constNum is the number jinja2's optimizer makes of x when it compiles
// the template (a number literal, signs and arithmetic of them), if any.
func constNum(x expr) (value, bool) {
	switch e := x.(type) {
	case *litExpr:
		switch e.v.(type) {
		case int64, bigInt, float64, bool:
			return e.v, true
		}
	case *unaryExpr:
		v, ok := constNum(e.x)
		if !ok {
			return nil, false
		}
		if n, isInt := bigOf(v); isInt {
			if e.op == "-" {
				n = new(big.Int).Neg(n)
			}
			out, err := mkInt(n)
			return out, err == nil
		} else if f, isFloat := v.(float64); isFloat {
			if e.op == "+" {
				return f, true
			}
			return -f, true
		}
	case *binaryExpr:
		l, lok := constNum(e.l)
		r, rok := constNum(e.r)
		if !lok || !rok {
			return nil, false
		}
		switch e.op {
		case "+", "-", "*", "/", "//", "%", "**":
			if v, err := arith(e.op, l, r); err == nil {
				return v, true
			}
		}
	}
	return nil, false
}

// negative reports whether jinja2 writes the number v into Python code
// with a minus sign (-0.0 too; not NaN).
func negative(v value) bool {
	switch n := v.(type) {
	case bigInt:
		return n.v.Sign() < 0
	case int64:
		return n < 0
	case float64:
		return math.Signbit(n) && !math.IsNaN(n) && !math.IsInf(n, 0)
	}
	return false
}

// unary parses a value with its postfixes, signs and (withFilters) its
// filters and tests, which apply after a sign as in jinja2: -x|f is (-x)|f.
func (p *parser) unary(withFilters bool) (expr, error) {
	var x expr
	if p.isOp("-") || p.isOp("+") {
		t := p.next()
		if err := p.enter(t.pos); err != nil {
			return nil, err
		}
		defer p.leave()
		inner, err := p.unary(false)
		if err != nil {
			return nil, err
		}
		x = &unaryExpr{node{t.pos}, t.s, inner}
	} else {
		var err error
		if x, err = p.primary(); err != nil {
			return nil, err
		}
		if x, err = p.postfix(x); err != nil {
			return nil, err
		}
	}
	if !withFilters {
		return x, nil
	}
	return p.filters(x)
}

func (p *parser) primary() (expr, error) {
	t := p.next()
	pos := node{t.pos}
	switch t.kind {
	case tokName:
		switch t.s {
		case "true", "True":
			return &litExpr{pos, true}, nil
		case "false", "False":
			return &litExpr{pos, false}, nil
		case "none", "None":
			return &litExpr{pos, nil}, nil
		}
		if p.loads != nil {
			p.loads[t.s] = true
		}
		return &nameExpr{pos, t.s}, nil
	case tokInt:
		if n, err := strconv.ParseInt(t.s, 10, 64); err == nil {
			return &litExpr{pos, n}, nil
		}
		b, ok := new(big.Int).SetString(t.s, 10)
		if !ok {
			return nil, &Error{Pos: t.pos, Msg: fmt.Sprintf("bad integer %s", t.s)}
		}
		if len(t.s) > maxStrDigits {
			return nil, &Error{Pos: t.pos, Msg: fmt.Sprintf("Exceeds the limit (%d digits) for integer string conversion: value has %d digits; use sys.set_int_max_str_digits() to increase the limit", maxStrDigits, len(t.s))}
		}
		n, err := mkInt(b)
		if err != nil {
			return nil, &Error{Pos: t.pos, Msg: err.Error()}
		}
		return &litExpr{pos, n}, nil
	case tokFloat:
		f, err := strconv.ParseFloat(t.s, 64)
		if err != nil {
			return nil, &Error{Pos: t.pos, Msg: fmt.Sprintf("bad number %s", t.s)}
		}
		return &litExpr{pos, f}, nil
	case tokString:
		s := t.s
		// Adjacent string literals concatenate, as in Python.
		for p.toks[p.t].kind == tokString {
			s += p.next().s
		}
		return &litExpr{pos, str{s: s}}, nil
	case tokOp:
		switch t.s {
		case "(":
			if p.isOp(")") {
				p.t++
				return &listExpr{node: pos, tuple: true}, nil // ()
			}
			x, err := p.expression()
			if err != nil {
				return nil, err
			}
			if p.isOp(",") {
				l := &listExpr{node: pos, items: []expr{x}, tuple: true}
				for p.isOp(",") {
					p.t++
					if p.isOp(")") {
						break
					}
					e, err := p.expression()
					if err != nil {
						return nil, err
					}
					l.items = append(l.items, e)
				}
				return l, p.expect(")")
			}
			return x, p.expect(")")
		case "[":
			l := &listExpr{node: pos}
			for !p.isOp("]") {
				x, err := p.expression()
				if err != nil {
					return nil, err
				}
				l.items = append(l.items, x)
				if !p.isOp(",") {
					break
				}
				p.t++
			}
			return l, p.expect("]")
		case "{":
			d := &dictExpr{node: pos}
			for !p.isOp("}") {
				k, err := p.expression()
				if err != nil {
					return nil, err
				}
				if err := p.expect(":"); err != nil {
					return nil, err
				}
				v, err := p.expression()
				if err != nil {
					return nil, err
				}
				d.keys = append(d.keys, k)
				d.vals = append(d.vals, v)
				if !p.isOp(",") {
					break
				}
				p.t++
			}
			return d, p.expect("}")
		}
	case tokEOF:
		return nil, &Error{Pos: t.pos, Msg: "expected an expression, found end of tag"}
	}
	return nil, &Error{Pos: t.pos, Msg: fmt.Sprintf("unexpected %q", t.s)}
}

func (p *parser) postfix(x expr) (expr, error) {
	for {
		t := p.toks[p.t]
		switch {
		case t.kind == tokOp && t.s == ".":
			p.t++
			n := p.next()
			switch n.kind {
			case tokName:
				x = &attrExpr{node{n.pos}, x, n.s}
			case tokInt:
				i, _ := strconv.ParseInt(n.s, 10, 64)
				x = &indexExpr{node{n.pos}, x, &litExpr{node{n.pos}, i}}
			default:
				return nil, &Error{Pos: n.pos, Msg: "expected an attribute name after '.'"}
			}
		case t.kind == tokOp && t.s == "[":
			p.t++
			var parts [3]expr
			n, colon := 0, false
			for {
				if !p.isOp(":") && !p.isOp("]") {
					e, err := p.expression()
					if err != nil {
						return nil, err
					}
					parts[n] = e
				}
				if p.isOp(":") {
					if n == 2 {
						return nil, &Error{Pos: p.toks[p.t].pos, Msg: "too many ':' in a slice"}
					}
					p.t++
					n++
					colon = true
					continue
				}
				break
			}
			if err := p.expect("]"); err != nil {
				return nil, err
			}
			switch {
			case colon:
				x = &sliceExpr{node{t.pos}, x, parts[0], parts[1], parts[2]}
			case parts[0] == nil:
				return nil, &Error{Pos: t.pos, Msg: "empty subscript"}
			default:
				x = &indexExpr{node{t.pos}, x, parts[0]}
			}
		case t.kind == tokOp && t.s == "(":
			p.t++
			args, kwargs, dyn, err := p.callArgs()
			if err != nil {
				return nil, err
			}
			x = &callExpr{node{t.pos}, x, args, kwargs, dyn}
		default:
			return x, nil
		}
	}
}

// callArgs parses arguments up to and including ")": positional ones,
// then keyword ones, with at most one *args (after the positional ones)
// and one **kwargs (last), in the order jinja2's parse_call_args takes.
func (p *parser) callArgs() ([]expr, []kwarg, dynArgs, error) {
	var args []expr
	var kwargs []kwarg
	var dyn dynArgs
	for !p.isOp(")") {
		t := p.toks[p.t]
		bad := false
		switch {
		case p.isOp("*"):
			bad = dyn.args != nil || dyn.kwargs != nil
		case p.isOp("**"):
			bad = dyn.kwargs != nil
		case t.kind == tokName && p.toks[p.t+1].kind == tokOp && p.toks[p.t+1].s == "=":
			bad = dyn.kwargs != nil
		default:
			if len(kwargs) > 0 && dyn.args == nil && dyn.kwargs == nil {
				return nil, nil, dyn, &Error{Pos: t.pos, Msg: "positional argument after keyword argument"}
			}
			bad = dyn.args != nil || dyn.kwargs != nil
		}
		if bad {
			return nil, nil, dyn, &Error{Pos: t.pos, Msg: "invalid syntax for function call expression"}
		}
		var name string
		switch {
		case p.isOp("*"), p.isOp("**"):
			p.t++
		case t.kind == tokName && p.toks[p.t+1].kind == tokOp && p.toks[p.t+1].s == "=":
			name = p.next().s
			p.t++
		}
		x, err := p.expression()
		if err != nil {
			return nil, nil, dyn, err
		}
		switch {
		case t.kind == tokOp && t.s == "*":
			dyn.args = x
		case t.kind == tokOp && t.s == "**":
			dyn.kwargs = x
		case name != "":
			kwargs = append(kwargs, kwarg{name, x})
		default:
			args = append(args, x)
		}
		if !p.isOp(",") {
			break
		}
		p.t++
	}
	return args, kwargs, dyn, p.expect(")")
}

// filters parses "| name(args)" and "is [not] name args" after a value,
// and calls of what they give: x|attr('f')() (jinja2's
// parse_filter_expr).
func (p *parser) filters(x expr) (expr, error) {
	for {
		switch {
		case p.isOp("(") && x != nil:
			if _, ok := x.(*filterExpr); !ok {
				if _, ok := x.(*testExpr); !ok {
					return x, nil
				}
			}
			t := p.next()
			args, kwargs, dyn, err := p.callArgs()
			if err != nil {
				return nil, err
			}
			x = &callExpr{node{t.pos}, x, args, kwargs, dyn}
		case p.isOp("|"):
			p.t++
			f, err := p.filter(x)
			if err != nil {
				return nil, err
			}
			x = f
		case p.isName("is"):
			p.t++
			te := &testExpr{node: node{p.toks[p.t].pos}, x: x}
			if p.isName("not") {
				p.t++
				te.neg = true
			}
			n := p.next()
			if n.kind != tokName && !(n.kind == tokOp && (n.s == "==" || n.s == "!=" || n.s == "<" || n.s == ">" || n.s == "<=" || n.s == ">=")) {
				return nil, &Error{Pos: n.pos, Msg: "expected a test name after 'is'"}
			}
			te.name = n.s
			if n.s == "none" || n.s == "None" {
				te.name = "none"
			}
			if n.s == "true" || n.s == "false" {
				te.name = n.s
			}
			switch {
			case p.isOp("("):
				p.t++
				args, kwargs, dyn, err := p.callArgs()
				if err != nil {
					return nil, err
				}
				if len(kwargs) > 0 {
					return nil, &Error{Pos: n.pos, Msg: "keyword arguments to tests are not supported"}
				}
				te.args, te.dyn = args, dyn
			case p.startsPrimary():
				// A test takes one argument without parentheses: "is
				// divisibleby 3"; jinja2 takes any name but else, or
				// and and as one ("x is defined if c" fails to parse).
				if p.isName("is") {
					return nil, &Error{Pos: p.toks[p.t].pos, Msg: "You cannot chain multiple tests with is"}
				}
				a, err := p.primary()
				if err != nil {
					return nil, err
				}
				if a, err = p.postfix(a); err != nil {
					return nil, err
				}
				te.args = []expr{a}
			}
			x = te
		default:
			return x, nil
		}
	}
}

// filter parses a filter's name and arguments after "|", applied to x.
func (p *parser) filter(x expr) (*filterExpr, error) {
	n := p.next()
	if n.kind != tokName {
		return nil, &Error{Pos: n.pos, Msg: "expected a filter name after '|'"}
	}
	f := &filterExpr{node: node{n.pos}, x: x, name: n.s}
	if p.isOp("(") {
		p.t++
		var err error
		if f.args, f.kwargs, f.dyn, err = p.callArgs(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// startsPrimary reports whether the next token can start a test's bare
// argument, as jinja2 decides it.
func (p *parser) startsPrimary() bool {
	t := p.toks[p.t]
	switch t.kind {
	case tokInt, tokFloat, tokString:
		return true
	case tokName:
		return t.s != "else" && t.s != "or" && t.s != "and"
	case tokOp:
		return t.s == "[" || t.s == "{"
	}
	return false
}
