package tokenizer

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// onigRegex is a split pattern of HF tokenizers (an Oniguruma regex, which
// tokenizers runs through the onig crate with the default syntax and no
// options) compiled for a backtracking matcher that gives Oniguruma's
// matches for the subset of its syntax that published pre-tokenizers use:
//
//   - alternation, leftmost first; groups (...), (?:...) and (?i:...)
//     (capturing groups capture nothing: no back-references);
//   - greedy ?, *, +, {n}, {n,}, {,m}, {n,m} (lazy and possessive forms
//     refused, as is a repeated sub-pattern that can match nothing);
//   - lookahead (?=...) and (?!...); $ (before "\n" or at the end, as with
//     Oniguruma's default options), \A and \z;
//   - classes [...] and [^...] of characters, ranges and escapes; . (any
//     character but "\n");
//   - \s (Unicode White_Space), \d (Nd), \p{X} and \P{X} for a general
//     category (L, Lu, N, P, M, ...) or a script (Han, Latin, ...), their
//     negations \S and \D, \t \n \r \f \v \a \e, \xHH, \x{H...}, \uHHHH and
//     escaped punctuation.
//
// Inside (?i:...) only ASCII characters and ASCII classes are accepted,
// matched with Unicode simple case folding ('s' also matches U+017F LONG S,
// 'k' U+212A KELVIN SIGN, as Oniguruma does); letter pairs that a
// multi-character folding could match (ss, st, ff, fi, fl: ß, ﬆ, ﬀ, ﬁ, ﬂ)
// are refused, since Oniguruma would match the ligature. Anything else
// (look-behind, \w, \b, back-references, nested classes, inline options,
// Unicode properties other than categories and scripts) is refused with an
// error naming it. Character properties come from Go's unicode tables
// (Unicode 15.0), which may differ from the bundled Oniguruma's for
// characters assigned since.
type onigRegex struct {
	src   string
	prog  []inst
	looks []*onigRegex // lookaheads, by opLook's x
	// lookClass is the class of a lookahead that is one character class
	// ((?!\S)): matched without running its program.
	lookClass *charClass
	// first is the set of ASCII characters a match can start with (all
	// where it can start with an assertion): find skips the others.
	first [2]uint64
}

type instOp uint8

const (
	opClass instOp = iota // one character in cls
	opSplit               // try x first, then y
	opJmp                 // continue at x
	opEOL                 // $: at the end or before "\n"
	opBOT                 // \A: at the start
	opEOT                 // \z: at the end
	opLook                // lookahead looks[x]; neg: must not match
	opMatch
)

type inst struct {
	op   instOp
	neg  bool
	x, y int32
	cls  *charClass
	// For opSplit: the ASCII characters that can come first on the way
	// through x and through y (all where an assertion or the end may come
	// first): a branch that cannot start with the next ASCII character is
	// not tried. Matches are those of trying it.
	firstX, firstY [2]uint64
}

// charClass is a set of characters: a bitmap for ASCII, and for other
// characters ranges and Unicode tables (positive or negated), the whole
// negated when neg.
type charClass struct {
	ascii     [2]uint64
	neg       bool
	ranges    []unicode.Range32
	tables    []*unicode.RangeTable
	notTables []*unicode.RangeTable
}

func (c *charClass) has(r rune) bool {
	if r < utf8.RuneSelf {
		return c.ascii[r>>6]>>(r&63)&1 != 0
	}
	return c.hasWide(r) != c.neg
}

// hasWide reports whether a non-ASCII r is in the class's items (before
// negation).
func (c *charClass) hasWide(r rune) bool {
	for _, rg := range c.ranges {
		if uint32(r) >= rg.Lo && uint32(r) <= rg.Hi {
			return true
		}
	}
	for _, t := range c.tables {
		if unicode.Is(t, r) {
			return true
		}
	}
	for _, t := range c.notTables {
		if !unicode.Is(t, r) {
			return true
		}
	}
	return false
}

// seal fills the ASCII bitmap from the items and the negation.
func (c *charClass) seal() {
	c.ascii = [2]uint64{}
	for r := rune(0); r < utf8.RuneSelf; r++ {
		if c.hasWide(r) != c.neg {
			c.ascii[r>>6] |= 1 << (r & 63)
		}
	}
}

func (c *charClass) addRange(lo, hi rune) {
	c.ranges = append(c.ranges, unicode.Range32{Lo: uint32(lo), Hi: uint32(hi), Stride: 1})
}

// node is a parsed pattern.
type node struct {
	kind     nodeKind
	cls      *charClass
	subs     []*node
	min, max int // nRepeat; max -1 for no bound
	neg      bool
}

type nodeKind uint8

const (
	nClass nodeKind = iota
	nConcat
	nAlt
	nRepeat
	nLook
	nEOL
	nBOT
	nEOT
)

// maxRepeat bounds {n,m} counts and maxProg the compiled size, so that a
// pattern cannot make the program huge.
const (
	maxRepeat = 1000
	maxProg   = 100000
)

// compileOnig parses and compiles an Oniguruma pattern; an error says what
// is not supported and where.
func compileOnig(src string) (*onigRegex, error) {
	if !utf8.ValidString(src) {
		return nil, errors.New("pattern is not valid utf-8")
	}
	p := &onigParser{src: src}
	n, err := p.alt(false)
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.src) {
		return nil, p.errorf("unmatched )")
	}
	if nullable(n) {
		return nil, errors.New("the pattern can match the empty string")
	}
	re := &onigRegex{src: src}
	if err := re.emit(n); err != nil {
		return nil, err
	}
	re.prog = append(re.prog, inst{op: opMatch})
	if len(re.prog) > maxProg {
		return nil, fmt.Errorf("the pattern compiles to %d instructions, more than %d", len(re.prog), maxProg)
	}
	re.setFirsts()
	return re, nil
}

// allASCII is the first set that filters nothing.
var allASCII = [2]uint64{^uint64(0), ^uint64(0)}

// setFirsts computes the first sets of every split (and of the lookaheads').
func (re *onigRegex) setFirsts() {
	memo := make(map[int32][2]uint64)
	var first func(pc int32) [2]uint64
	first = func(pc int32) [2]uint64 {
		if f, ok := memo[pc]; ok {
			return f
		}
		// A repeat's body consumes before it comes back (nullable bodies
		// are refused), so a pc in progress is never reached again
		// without a character: all is a safe answer for it.
		memo[pc] = allASCII
		var f [2]uint64
		switch in := &re.prog[pc]; in.op {
		case opClass:
			f = in.cls.ascii
		case opJmp:
			f = first(in.x)
		case opSplit:
			x, y := first(in.x), first(in.y)
			f = [2]uint64{x[0] | y[0], x[1] | y[1]}
		default: // assertions, the end: anything may follow
			f = allASCII
		}
		memo[pc] = f
		return f
	}
	for pc := range re.prog {
		if in := &re.prog[pc]; in.op == opSplit {
			in.firstX, in.firstY = first(in.x), first(in.y)
		}
	}
	re.first = first(0)
	for _, l := range re.looks {
		l.setFirsts()
	}
}

type onigParser struct {
	src string
	pos int
}

func (p *onigParser) errorf(format string, args ...any) error {
	return fmt.Errorf("at offset %d: %s", p.pos, fmt.Sprintf(format, args...))
}

func (p *onigParser) peek() (rune, int) {
	if p.pos >= len(p.src) {
		return -1, 0
	}
	return utf8.DecodeRuneInString(p.src[p.pos:])
}

// alt parses alternatives up to ")" or the end.
func (p *onigParser) alt(fold bool) (*node, error) {
	var alts []*node
	for {
		c, err := p.concat(fold)
		if err != nil {
			return nil, err
		}
		alts = append(alts, c)
		if r, _ := p.peek(); r != '|' {
			break
		}
		p.pos++
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return &node{kind: nAlt, subs: alts}, nil
}

// concat parses a sequence of quantified atoms up to "|", ")" or the end.
func (p *onigParser) concat(fold bool) (*node, error) {
	seq := &node{kind: nConcat}
	for {
		r, _ := p.peek()
		if r == -1 || r == '|' || r == ')' {
			break
		}
		a, err := p.atom(fold)
		if err != nil {
			return nil, err
		}
		if a, err = p.quantifier(a); err != nil {
			return nil, err
		}
		if fold && len(seq.subs) > 0 {
			if err := checkFoldPair(seq.subs[len(seq.subs)-1], a); err != nil {
				return nil, p.errorf("%v", err)
			}
		}
		seq.subs = append(seq.subs, a)
	}
	return seq, nil
}

// checkFoldPair refuses, inside (?i:...), two literal letters that a
// multi-character case folding matches (Oniguruma would match "ss" with ß).
func checkFoldPair(a, b *node) error {
	la, okA := foldLetter(a)
	lb, okB := foldLetter(b)
	if !okA || !okB {
		return nil
	}
	switch string([]rune{la, lb}) {
	case "ss", "st", "ff", "fi", "fl":
		return fmt.Errorf("(?i) letters %q: a multi-character case folding (ß, ﬀ, ﬁ, ﬂ, ﬅ, ﬆ) would match them; not supported", string([]rune{la, lb}))
	}
	return nil
}

// foldLetter returns the lower-case letter a case-folded literal matches.
func foldLetter(n *node) (rune, bool) {
	if n.kind != nClass || n.cls.neg {
		return 0, false
	}
	var found rune
	for r := rune('a'); r <= 'z'; r++ {
		if n.cls.has(r) {
			if found != 0 {
				return 0, false
			}
			found = r
		}
	}
	return found, found != 0
}

func (p *onigParser) atom(fold bool) (*node, error) {
	r, size := p.peek()
	start := p.pos
	switch r {
	case '(':
		return p.group(fold)
	case '[':
		p.pos++
		cls, err := p.class(fold)
		if err != nil {
			return nil, err
		}
		return &node{kind: nClass, cls: cls}, nil
	case '.':
		p.pos++
		cls := &charClass{neg: true}
		cls.addRange('\n', '\n')
		cls.seal()
		return &node{kind: nClass, cls: cls}, nil
	case '$':
		p.pos++
		return &node{kind: nEOL}, nil
	case '^':
		return nil, p.errorf("^ is not supported")
	case '*', '+', '?':
		return nil, p.errorf("%c repeats nothing", r)
	case '{':
		return nil, p.errorf("a literal { is not supported")
	case '\\':
		p.pos++
		if p.pos < len(p.src) {
			switch p.src[p.pos] {
			case 'A':
				p.pos++
				return &node{kind: nBOT}, nil
			case 'z':
				p.pos++
				return &node{kind: nEOT}, nil
			}
		}
		cls, lit, err := p.escape(false)
		if err != nil {
			return nil, err
		}
		if cls == nil {
			return p.literal(lit, fold, start)
		}
		if fold {
			p.pos = start
			return nil, p.errorf("%s inside (?i:...) is not supported", p.src[start:start+2])
		}
		cls.seal()
		return &node{kind: nClass, cls: cls}, nil
	}
	p.pos += size
	return p.literal(r, fold, start)
}

// literal is the node of one character, its case folds too with fold.
func (p *onigParser) literal(r rune, fold bool, start int) (*node, error) {
	cls := &charClass{}
	if fold {
		if r >= utf8.RuneSelf {
			p.pos = start
			return nil, p.errorf("non-ASCII %q inside (?i:...) is not supported", r)
		}
		addFolds(cls, r)
	} else {
		cls.addRange(r, r)
	}
	cls.seal()
	return &node{kind: nClass, cls: cls}, nil
}

// addFolds adds r and every character that simple case folding equates
// with it (s: S, U+017F; k: K, U+212A).
func addFolds(c *charClass, r rune) {
	c.addRange(r, r)
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		c.addRange(f, f)
	}
}

func (p *onigParser) group(fold bool) (*node, error) {
	open := p.pos
	p.pos++ // (
	kind, neg := nConcat, false
	if strings.HasPrefix(p.src[p.pos:], "?") {
		switch {
		case strings.HasPrefix(p.src[p.pos:], "?:"):
			p.pos += 2
		case strings.HasPrefix(p.src[p.pos:], "?i:"):
			p.pos += 3
			fold = true
		case strings.HasPrefix(p.src[p.pos:], "?="):
			p.pos += 2
			kind = nLook
		case strings.HasPrefix(p.src[p.pos:], "?!"):
			p.pos += 2
			kind, neg = nLook, true
		case strings.HasPrefix(p.src[p.pos:], "?<=") || strings.HasPrefix(p.src[p.pos:], "?<!"):
			p.pos = open
			return nil, p.errorf("look-behind %s is not supported", p.src[open:open+4])
		default:
			p.pos = open
			return nil, p.errorf("group %q is not supported (want (...), (?:...), (?i:...), (?=...) or (?!...))", p.src[open:min(open+4, len(p.src))])
		}
	}
	inner, err := p.alt(fold)
	if err != nil {
		return nil, err
	}
	if r, _ := p.peek(); r != ')' {
		p.pos = open
		return nil, p.errorf("( without )")
	}
	p.pos++
	if kind == nLook {
		return &node{kind: nLook, subs: []*node{inner}, neg: neg}, nil
	}
	return inner, nil
}

// quantifier wraps a in the repetition that follows it, if any.
func (p *onigParser) quantifier(a *node) (*node, error) {
	start := p.pos
	r, _ := p.peek()
	lo, hi := 0, 0
	switch r {
	case '?':
		lo, hi = 0, 1
		p.pos++
	case '*':
		lo, hi = 0, -1
		p.pos++
	case '+':
		lo, hi = 1, -1
		p.pos++
	case '{':
		var ok bool
		if lo, hi, ok = p.interval(); !ok {
			return nil, p.errorf("malformed interval %q", p.src[start:min(start+12, len(p.src))])
		}
	default:
		return a, nil
	}
	switch a.kind {
	case nLook, nEOL, nBOT, nEOT:
		p.pos = start
		return nil, p.errorf("a repeated assertion is not supported")
	}
	if r, _ := p.peek(); r == '?' || r == '+' || r == '*' || r == '{' {
		return nil, p.errorf("lazy, possessive or nested repetition %q is not supported", p.src[start:p.pos+1])
	}
	if hi != 1 && nullable(a) {
		p.pos = start
		return nil, p.errorf("a repeated sub-pattern that can match the empty string is not supported")
	}
	return &node{kind: nRepeat, subs: []*node{a}, min: lo, max: hi}, nil
}

// interval parses {n}, {n,}, {,m} or {n,m} at p.pos.
func (p *onigParser) interval() (lo, hi int, ok bool) {
	end := strings.IndexByte(p.src[p.pos:], '}')
	if end < 0 {
		return 0, 0, false
	}
	body := p.src[p.pos+1 : p.pos+end]
	num := func(s string) (int, bool) {
		if s == "" || len(s) > 4 {
			return 0, false
		}
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
		}
		v, err := strconv.Atoi(s)
		return v, err == nil && v <= maxRepeat
	}
	a, b, comma := strings.Cut(body, ",")
	switch {
	case !comma:
		n, ok := num(a)
		if !ok {
			return 0, 0, false
		}
		lo, hi = n, n
	case a == "":
		n, ok := num(b)
		if !ok {
			return 0, 0, false
		}
		lo, hi = 0, n
	case b == "":
		n, ok := num(a)
		if !ok {
			return 0, 0, false
		}
		lo, hi = n, -1
	default:
		n, ok1 := num(a)
		m, ok2 := num(b)
		if !ok1 || !ok2 || m < n {
			return 0, 0, false
		}
		lo, hi = n, m
	}
	if hi == 0 {
		return 0, 0, false
	}
	p.pos += end + 1
	return lo, hi, true
}

// escape parses the escape after a backslash: a class (\s, \p{L}) or a
// single character.
func (p *onigParser) escape(inClass bool) (*charClass, rune, error) {
	start := p.pos - 1
	r, size := p.peek()
	if r == -1 {
		return nil, 0, p.errorf("trailing backslash")
	}
	p.pos += size
	switch r {
	case 't':
		return nil, '\t', nil
	case 'n':
		return nil, '\n', nil
	case 'r':
		return nil, '\r', nil
	case 'f':
		return nil, '\f', nil
	case 'v':
		return nil, '\v', nil
	case 'a':
		return nil, '\a', nil
	case 'e':
		return nil, 0x1b, nil
	case 's', 'S':
		return &charClass{tables: tableIf(r == 's', unicode.White_Space), notTables: tableIf(r == 'S', unicode.White_Space)}, 0, nil
	case 'd', 'D':
		return &charClass{tables: tableIf(r == 'd', unicode.Nd), notTables: tableIf(r == 'D', unicode.Nd)}, 0, nil
	case 'p', 'P':
		if !strings.HasPrefix(p.src[p.pos:], "{") {
			p.pos = start
			return nil, 0, p.errorf("\\%c without {name}", r)
		}
		end := strings.IndexByte(p.src[p.pos:], '}')
		if end < 0 {
			p.pos = start
			return nil, 0, p.errorf("\\%c{ without }", r)
		}
		name := p.src[p.pos+1 : p.pos+end]
		neg := r == 'P'
		if strings.HasPrefix(name, "^") {
			name, neg = name[1:], !neg
		}
		t := unicodeProperty(name)
		if t == nil {
			p.pos = start
			return nil, 0, p.errorf("property %s is not supported (want a general category or a script)", p.src[start:start+3+end])
		}
		p.pos += end + 1
		return &charClass{tables: tableIf(!neg, t), notTables: tableIf(neg, t)}, 0, nil
	case 'x':
		if strings.HasPrefix(p.src[p.pos:], "{") {
			end := strings.IndexByte(p.src[p.pos:], '}')
			if end < 0 {
				return nil, 0, p.errorf("\\x{ without }")
			}
			v, err := strconv.ParseUint(p.src[p.pos+1:p.pos+end], 16, 32)
			if err != nil || !utf8.ValidRune(rune(v)) {
				return nil, 0, p.errorf("bad \\x{...}")
			}
			p.pos += end + 1
			return nil, rune(v), nil
		}
		return p.hex(2)
	case 'u':
		return p.hex(4)
	}
	if r < utf8.RuneSelf && !isAlnum(byte(r)) {
		return nil, r, nil // escaped punctuation
	}
	p.pos = start
	return nil, 0, p.errorf("escape \\%c is not supported", r)
}

func (p *onigParser) hex(n int) (*charClass, rune, error) {
	if p.pos+n > len(p.src) {
		return nil, 0, p.errorf("short hexadecimal escape")
	}
	v, err := strconv.ParseUint(p.src[p.pos:p.pos+n], 16, 32)
	if err != nil || !utf8.ValidRune(rune(v)) {
		return nil, 0, p.errorf("bad hexadecimal escape %q", p.src[p.pos:p.pos+n])
	}
	p.pos += n
	return nil, rune(v), nil
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func tableIf(ok bool, t *unicode.RangeTable) []*unicode.RangeTable {
	if !ok {
		return nil
	}
	return []*unicode.RangeTable{t}
}

// unicodeProperty returns the table of a general category ("L", "Lu") or
// script ("Han"), matched case-insensitively as Oniguruma matches names.
func unicodeProperty(name string) *unicode.RangeTable {
	for k, t := range unicode.Categories {
		if strings.EqualFold(k, name) {
			return t
		}
	}
	for k, t := range unicode.Scripts {
		if strings.EqualFold(k, name) {
			return t
		}
	}
	return nil
}

// class parses a bracket expression after "[".
func (p *onigParser) class(fold bool) (*charClass, error) {
	open := p.pos - 1
	cls := &charClass{}
	if strings.HasPrefix(p.src[p.pos:], "^") {
		cls.neg = true
		p.pos++
	}
	first := true
	for {
		r, _ := p.peek()
		switch {
		case r == -1:
			p.pos = open
			return nil, p.errorf("[ without ]")
		case r == ']' && !first:
			p.pos++
			if fold {
				if err := foldClass(cls); err != nil {
					p.pos = open
					return nil, p.errorf("%v", err)
				}
			}
			cls.seal()
			return cls, nil
		case r == ']':
			return nil, p.errorf("empty class or a leading ] is not supported")
		case r == '[':
			return nil, p.errorf("a nested class or [: :] is not supported")
		case r == '&' && strings.HasPrefix(p.src[p.pos:], "&&"):
			return nil, p.errorf("class intersection && is not supported")
		}
		first = false
		itemStart := p.pos
		lo, sub, err := p.classAtom()
		if err != nil {
			return nil, err
		}
		if sub != nil {
			cls.ranges = append(cls.ranges, sub.ranges...)
			cls.tables = append(cls.tables, sub.tables...)
			cls.notTables = append(cls.notTables, sub.notTables...)
			if r, _ := p.peek(); r == '-' && !strings.HasPrefix(p.src[p.pos:], "-]") {
				return nil, p.errorf("a range from a class escape is not supported")
			}
			continue
		}
		// A range lo-hi, unless "-" ends the class.
		if strings.HasPrefix(p.src[p.pos:], "-") && !strings.HasPrefix(p.src[p.pos:], "-]") {
			p.pos++
			hi, sub, err := p.classAtom()
			if err != nil {
				return nil, err
			}
			if sub != nil || hi < lo {
				p.pos = itemStart
				return nil, p.errorf("bad range in class")
			}
			cls.addRange(lo, hi)
			if strings.HasPrefix(p.src[p.pos:], "-") && !strings.HasPrefix(p.src[p.pos:], "-]") {
				return nil, p.errorf("a - after a range is not supported")
			}
			continue
		}
		cls.addRange(lo, lo)
	}
}

// classAtom parses one character or class escape inside a bracket
// expression.
func (p *onigParser) classAtom() (rune, *charClass, error) {
	r, size := p.peek()
	if r == '\\' {
		p.pos++
		cls, lit, err := p.escape(true)
		return lit, cls, err
	}
	if r == '[' {
		return 0, nil, p.errorf("a nested class is not supported")
	}
	p.pos += size
	return r, nil, nil
}

// foldClass adds the case folds of an ASCII class inside (?i:...) (before
// negation, as Oniguruma folds inside negated classes too).
func foldClass(c *charClass) error {
	if len(c.tables) > 0 || len(c.notTables) > 0 {
		return errors.New("a class with \\s, \\d or \\p inside (?i:...) is not supported")
	}
	var add []unicode.Range32
	for _, rg := range c.ranges {
		if rg.Hi >= utf8.RuneSelf {
			return errors.New("a class with non-ASCII characters inside (?i:...) is not supported")
		}
		for r := rune(rg.Lo); r <= rune(rg.Hi); r++ {
			for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
				add = append(add, unicode.Range32{Lo: uint32(f), Hi: uint32(f), Stride: 1})
			}
		}
	}
	c.ranges = append(c.ranges, add...)
	return nil
}

// nullable reports whether n can match the empty string.
func nullable(n *node) bool {
	switch n.kind {
	case nClass:
		return false
	case nConcat:
		for _, s := range n.subs {
			if !nullable(s) {
				return false
			}
		}
		return true
	case nAlt:
		for _, s := range n.subs {
			if nullable(s) {
				return true
			}
		}
		return false
	case nRepeat:
		return n.min == 0 || nullable(n.subs[0])
	}
	return true // assertions
}

// emit appends the program of n.
func (re *onigRegex) emit(n *node) error {
	if len(re.prog) > maxProg {
		return fmt.Errorf("the pattern compiles to more than %d instructions", maxProg)
	}
	switch n.kind {
	case nClass:
		re.prog = append(re.prog, inst{op: opClass, cls: n.cls})
	case nConcat:
		for _, s := range n.subs {
			if err := re.emit(s); err != nil {
				return err
			}
		}
	case nAlt:
		// split L1 next; L1: a; jmp end; next: split L2 next2; ... last
		var jumps []int
		for i, s := range n.subs {
			if i < len(n.subs)-1 {
				split := len(re.prog)
				re.prog = append(re.prog, inst{op: opSplit, x: int32(split + 1)})
				if err := re.emit(s); err != nil {
					return err
				}
				jumps = append(jumps, len(re.prog))
				re.prog = append(re.prog, inst{op: opJmp})
				re.prog[split].y = int32(len(re.prog))
				continue
			}
			if err := re.emit(s); err != nil {
				return err
			}
		}
		for _, j := range jumps {
			re.prog[j].x = int32(len(re.prog))
		}
	case nRepeat:
		sub := n.subs[0]
		for range n.min {
			if err := re.emit(sub); err != nil {
				return err
			}
		}
		if n.max < 0 {
			// loop: split body end; body: sub; jmp loop
			loop := len(re.prog)
			re.prog = append(re.prog, inst{op: opSplit, x: int32(loop + 1)})
			if err := re.emit(sub); err != nil {
				return err
			}
			re.prog = append(re.prog, inst{op: opJmp, x: int32(loop)})
			re.prog[loop].y = int32(len(re.prog))
			return nil
		}
		// Optional copies, each entered only after the one before matched.
		var splits []int
		for range n.max - n.min {
			splits = append(splits, len(re.prog))
			re.prog = append(re.prog, inst{op: opSplit, x: int32(len(re.prog) + 1)})
			if err := re.emit(sub); err != nil {
				return err
			}
		}
		for _, s := range splits {
			re.prog[s].y = int32(len(re.prog))
		}
	case nLook:
		// A lookahead is a regex of its own, run at the position reached.
		sub := &onigRegex{}
		if err := sub.emit(n.subs[0]); err != nil {
			return err
		}
		sub.prog = append(sub.prog, inst{op: opMatch})
		if len(sub.prog) == 2 && sub.prog[0].op == opClass {
			sub.lookClass = sub.prog[0].cls
		}
		re.prog = append(re.prog, inst{op: opLook, neg: n.neg, x: int32(len(re.looks))})
		re.looks = append(re.looks, sub)
	case nEOL:
		re.prog = append(re.prog, inst{op: opEOL})
	case nBOT:
		re.prog = append(re.prog, inst{op: opBOT})
	case nEOT:
		re.prog = append(re.prog, inst{op: opEOT})
	}
	return nil
}

// onigMatcher is the scratch space of matching: one per encode call.
type onigMatcher struct {
	stack []backtrack
	memo  map[[2]int32]struct{}
	sub   *onigMatcher // for lookaheads
}

// backtrack is a state to resume: program counter and input offset.
type backtrack struct{ pc, pos int32 }

// memoAfter is the number of steps of one match attempt after which
// states already explored are remembered, so that no pattern takes more
// than (program size × input length) steps; patterns that backtrack
// little never pay for it.
const memoAfter = 4096

// matchAt returns the end of the match of re that starts at s[pos:],
// choosing among alternatives and repetitions as Oniguruma does (first
// alternative, longest repetition first, backtracking on failure).
func (re *onigRegex) matchAt(m *onigMatcher, s string, pos int) (int, bool) {
	if re.lookClass != nil {
		if pos >= len(s) {
			return 0, false
		}
		r, n := rune(s[pos]), 1
		if r >= utf8.RuneSelf {
			r, n = utf8.DecodeRuneInString(s[pos:])
		}
		return pos + n, re.lookClass.has(r)
	}
	stack := append(m.stack[:0], backtrack{0, int32(pos)})
	steps := 0
	var memo map[[2]int32]struct{}
	for len(stack) > 0 {
		b := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		pc, i := int(b.pc), int(b.pos)
	run:
		for {
			if steps++; steps > memoAfter {
				if memo == nil {
					if m.memo == nil {
						m.memo = make(map[[2]int32]struct{})
					}
					clear(m.memo)
					memo = m.memo
				}
				key := [2]int32{int32(pc), int32(i)}
				if _, seen := memo[key]; seen {
					break run
				}
				memo[key] = struct{}{}
			}
			in := &re.prog[pc]
			switch in.op {
			case opClass:
				if i >= len(s) {
					break run
				}
				r, n := rune(s[i]), 1
				if r >= utf8.RuneSelf {
					r, n = utf8.DecodeRuneInString(s[i:])
				}
				if !in.cls.has(r) {
					break run
				}
				i += n
				pc++
			case opSplit:
				if i < len(s) && s[i] < utf8.RuneSelf {
					c := s[i]
					okX := in.firstX[c>>6]>>(c&63)&1 != 0
					okY := in.firstY[c>>6]>>(c&63)&1 != 0
					switch {
					case okX && okY:
						stack = append(stack, backtrack{in.y, int32(i)})
						pc = int(in.x)
					case okX:
						pc = int(in.x)
					case okY:
						pc = int(in.y)
					default:
						break run
					}
					continue
				}
				stack = append(stack, backtrack{in.y, int32(i)})
				pc = int(in.x)
			case opJmp:
				pc = int(in.x)
			case opEOL:
				if i < len(s) && s[i] != '\n' {
					break run
				}
				pc++
			case opBOT:
				if i != 0 {
					break run
				}
				pc++
			case opEOT:
				if i != len(s) {
					break run
				}
				pc++
			case opLook:
				if m.sub == nil {
					m.sub = &onigMatcher{}
				}
				if _, ok := re.looks[in.x].matchAt(m.sub, s, i); ok == in.neg {
					break run
				}
				pc++
			case opMatch:
				m.stack = stack
				return i, true
			}
		}
	}
	m.stack = stack
	return 0, false
}

// find returns the leftmost match of re in s at or after from.
func (re *onigRegex) find(m *onigMatcher, s string, from int) (start, end int, ok bool) {
	for i := from; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf && re.first[c>>6]>>(c&63)&1 == 0 {
			i++
			continue
		}
		if e, ok := re.matchAt(m, s, i); ok {
			return i, e, true
		}
		if s[i] < utf8.RuneSelf {
			i++
		} else {
			_, n := utf8.DecodeRuneInString(s[i:])
			i += n
		}
	}
	return 0, 0, false
}
