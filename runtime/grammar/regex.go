package grammar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxRegexStates bounds a regular expression's automaton: the states the
// subset construction makes for it, and those of its combination with a
// string's minLength and maxLength or with a format. A pattern past it, or
// whose table of transitions (states × classes of bytes) passes
// MaxRegexStates × 64 entries (8 MiB), is refused.
const MaxRegexStates = 1 << 15

// maxNFA bounds the states of the nondeterministic automaton a pattern
// compiles to (counted repetition copies its operand), and maxWork the
// work of all the automata of a pattern or of a schema's patterns (see
// budget), so that a request costs a fraction of a second at most to
// compile or refuse.
const (
	maxNFA  = 1 << 17
	maxWork = 1 << 26
)

// budget counts the work spent on automata (NFA states made, states and
// edges the subset construction visits, entries of a product's table),
// within maxWork: one pattern's, or the patterns of a Compiler's schemas
// together, so that many patterns cost no more than one.
type budget struct{ used int }

// spend adds n to the work, or returns an error past maxWork.
func (b *budget) spend(n int) error {
	if b.used += n; b.used > maxWork {
		return fmt.Errorf("its automaton is too costly to build (more than %d steps, for all the patterns compiled together)", maxWork)
	}
	return nil
}

// errNoMatch is a regular expression that no text matches.
var errNoMatch = errors.New("no text matches it")

// dfa is a deterministic automaton over the bytes of UTF-8 text, every
// state live (an accepting state is reachable from it: a byte that leads
// nowhere has no transition). State 0 is the start. Bytes fall in classes
// that no transition tells apart.
type dfa struct {
	class  [256]uint8
	nclass int
	// next is the state after a byte, -1 for none: next[s*nclass+class[c]].
	next   []int32
	accept []bool
	// ctl has bit c where control character c (below 0x20) may come
	// next: a JSON string holds it escaped.
	ctl []uint32
}

// step returns the state after byte c from state s, -1 for none.
func (d *dfa) step(s int32, c byte) int32 { return d.next[int(s)*d.nclass+int(d.class[c])] }

// states returns the number of states.
func (d *dfa) states() int { return len(d.accept) }

// matches reports whether d accepts text t.
func (d *dfa) matches(t string) bool {
	s := int32(0)
	for i := 0; i < len(t) && s >= 0; i++ {
		s = d.step(s, t[i])
	}
	return s >= 0 && d.accept[s]
}

// compileRegex compiles a regular expression (RE2 syntax, as Go's regexp
// takes it: ^ and $ are the text's start and end, . is any character but
// \n) to an automaton: of the texts it matches whole where full, of the
// texts that contain a match otherwise (JSON Schema's pattern). The
// multi-line anchors of (?m) and word boundaries are refused.
func compileRegex(pattern string, full bool) (*dfa, error) {
	return compileRegexIn(pattern, full, false, &budget{})
}

// compileRegexIn is compileRegex, its work spent from w; with ecma, ., \s
// and \S are ECMA-262's (ecmaClasses), as JSON Schema validators take a
// pattern.
func compileRegexIn(pattern string, full, ecma bool, w *budget) (*dfa, error) {
	pattern = ecmaEscapes(pattern)
	if ecma {
		pattern = ecmaClasses(pattern)
	}
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil, err
	}
	n := &nfa{}
	in, out, err := n.frag(re)
	if err != nil {
		return nil, err
	}
	sink := int32(-1)
	if !full {
		// A search: any text around the match.
		pre, post := n.anyStar(), n.anyStar()
		n.eps(pre[1], in)
		n.eps(out, post[0])
		in, out, sink = pre[0], post[1], post[0]
	}
	if len(n.edges) > maxNFA {
		return nil, fmt.Errorf("too large: more than %d states before determinization", maxNFA)
	}
	if err := w.spend(len(n.edges)); err != nil {
		return nil, err
	}
	d, err := n.determinize(in, out, sink, w)
	if err != nil {
		return nil, err
	}
	if err := w.spend(d.trimCost()); err != nil {
		return nil, err
	}
	if d = d.trim(); d == nil {
		return nil, errNoMatch
	}
	return d, nil
}

// ecmaEscapes rewrites ECMA-262's \uXXXX and \u{X...} escapes (JSON
// Schema's patterns are ECMA-262's), a surrogate pair as the character
// it encodes, as RE2's \x{X...}; RE2 has no \u, so that no pattern it
// takes changes meaning.
func ecmaEscapes(p string) string {
	if !strings.Contains(p, `\u`) {
		return p
	}
	hex4 := func(s string) (rune, bool) {
		if len(s) < 4 {
			return 0, false
		}
		v, err := strconv.ParseUint(s[:4], 16, 32)
		return rune(v), err == nil
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '\\' || i+1 == len(p) {
			b.WriteByte(p[i])
			continue
		}
		if p[i+1] != 'u' {
			b.WriteString(p[i : i+2]) // an escape pair: \\u stays
			i++
			continue
		}
		if j := strings.IndexByte(p[i:], '}'); strings.HasPrefix(p[i+2:], "{") && j > 0 {
			fmt.Fprintf(&b, `\x%s`, p[i+2:i+j+1])
			i += j
			continue
		}
		r, ok := hex4(p[i+2:])
		if !ok {
			b.WriteString(p[i : i+2]) // (RE2 refuses it)
			i++
			continue
		}
		i += 5
		if lo, ok := hex4(strings.TrimPrefix(p[i+1:], `\u`)); ok && utf16.IsSurrogate(r) && strings.HasPrefix(p[i+1:], `\u`) {
			if pair := utf16.DecodeRune(r, lo); pair != utf8.RuneError {
				r = pair
				i += 6
			}
		}
		fmt.Fprintf(&b, `\x{%x}`, r)
	}
	return b.String()
}

// roomFor says whether an automaton of n states, with classes byte
// classes a state's row, may take one more: at most MaxRegexStates states
// and a table of at most MaxRegexStates·64 entries.
func roomFor(n, classes int) error {
	if n >= MaxRegexStates || (n+1)*classes > MaxRegexStates*64 {
		return fmt.Errorf("its automaton needs more than %d states (MaxRegexStates)", MaxRegexStates)
	}
	return nil
}

// ecmaSpace is ECMA-262's \s (WhiteSpace and LineTerminator) as the
// ranges of an RE2 class.
const ecmaSpace = `\t\n\x0b\f\r \x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}\x{feff}`

// ecmaClasses rewrites what RE2 and ECMA-262 (JSON Schema's patterns,
// which validators such as Ajv run as JavaScript's RegExp) read
// differently, so that every text the automaton makes is one they
// match: . outside a class is any character but the line terminators (\n,
// \r, U+2028, U+2029), not only \n; \s is ECMA's whitespace, with Unicode's
// spaces and U+FEFF, not only ASCII's, and \S outside a class its
// complement. (\S inside a class keeps RE2's meaning, which takes more:
// the Unicode spaces.)
func ecmaClasses(p string) string {
	if !strings.ContainsAny(p, `.\`) {
		return p
	}
	var b strings.Builder
	class := false // within [...]
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\' && i+1 < len(p):
			switch e := p[i+1]; {
			case e == 's' && class:
				b.WriteString(ecmaSpace)
			case e == 's':
				b.WriteString("[" + ecmaSpace + "]")
			case e == 'S' && !class:
				b.WriteString("[^" + ecmaSpace + "]")
			default:
				b.WriteString(p[i : i+2])
			}
			i++
		case c == '[' && !class:
			class = true
			b.WriteByte(c)
			// (A ] first in a class, after ^ too, is a character of it, as
			// RE2 reads it.)
			if strings.HasPrefix(p[i+1:], "^") {
				b.WriteByte('^')
				i++
			}
			if strings.HasPrefix(p[i+1:], "]") {
				b.WriteByte(']')
				i++
			}
		case c == ']' && class:
			class = false
			b.WriteByte(c)
		case c == '.' && !class:
			b.WriteString(`[^\n\r\x{2028}\x{2029}]`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// edgeKind is what an NFA edge takes: a byte in a range, nothing, or
// nothing where the text starts (^) or ends ($).
type edgeKind uint8

const (
	eByte edgeKind = iota
	eEps
	eBegin
	eEnd
)

type nedge struct {
	kind   edgeKind
	lo, hi byte
	to     int32
}

// nfa is a nondeterministic automaton over bytes (Thompson's
// construction), its states' edges by state: those that take a byte in
// edges, the others (nothing, ^, $) in empty, so that a closure reads
// only these.
type nfa struct {
	edges, empty [][]nedge
}

func (n *nfa) add() int32 {
	n.edges = append(n.edges, nil)
	n.empty = append(n.empty, nil)
	return int32(len(n.edges) - 1)
}

func (n *nfa) eps(from, to int32) {
	n.empty[from] = append(n.empty[from], nedge{kind: eEps, to: to})
}

// anyStar makes a loop of any characters: its entry and exit.
func (n *nfa) anyStar() [2]int32 {
	in, out := n.add(), n.add()
	cin, cout := n.runes([]rune{0, unicode.MaxRune})
	n.eps(in, cin)
	n.eps(cout, in)
	n.eps(in, out)
	return [2]int32{in, out}
}

// frag compiles re between an entry and an exit state of its own.
func (n *nfa) frag(re *syntax.Regexp) (in, out int32, err error) {
	if len(n.edges) > maxNFA {
		return 0, 0, fmt.Errorf("too large: more than %d states before determinization", maxNFA)
	}
	switch re.Op {
	case syntax.OpNoMatch:
		return n.add(), n.add(), nil
	case syntax.OpEmptyMatch:
		in, out = n.add(), n.add()
		n.eps(in, out)
		return in, out, nil
	case syntax.OpLiteral:
		in = n.add()
		out = in
		for _, r := range re.Rune {
			pairs := []rune{r, r}
			if re.Flags&syntax.FoldCase != 0 {
				pairs = foldPairs(r)
			}
			ci, co := n.runes(pairs)
			n.eps(out, ci)
			out = co
		}
		return in, out, nil
	case syntax.OpCharClass:
		in, out = n.runes(re.Rune)
		return in, out, nil
	case syntax.OpAnyCharNotNL:
		in, out = n.runes([]rune{0, '\n' - 1, '\n' + 1, unicode.MaxRune})
		return in, out, nil
	case syntax.OpAnyChar:
		in, out = n.runes([]rune{0, unicode.MaxRune})
		return in, out, nil
	case syntax.OpBeginText, syntax.OpEndText:
		in, out = n.add(), n.add()
		k := eBegin
		if re.Op == syntax.OpEndText {
			k = eEnd
		}
		n.empty[in] = append(n.empty[in], nedge{kind: k, to: out})
		return in, out, nil
	case syntax.OpBeginLine, syntax.OpEndLine:
		return 0, 0, errors.New("the anchors of a line ((?m)) are not supported: ^ and $ are the text's start and end")
	case syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return 0, 0, errors.New(`word boundaries (\b, \B) are not supported`)
	case syntax.OpCapture:
		return n.frag(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest:
		si, so, err := n.frag(re.Sub[0])
		if err != nil {
			return 0, 0, err
		}
		in, out = n.add(), n.add()
		n.eps(in, si)
		n.eps(so, out)
		if re.Op != syntax.OpPlus {
			n.eps(in, out)
		}
		if re.Op != syntax.OpQuest {
			n.eps(so, si)
		}
		return in, out, nil
	case syntax.OpRepeat:
		// x{min,max}: min copies, then max-min optional ones (or a
		// loop where max is -1).
		in, out = n.add(), n.add()
		cur := in
		for i := 0; i < re.Min || re.Max < 0 && i == re.Min; i++ {
			si, so, err := n.frag(re.Sub[0])
			if err != nil {
				return 0, 0, err
			}
			n.eps(cur, si)
			if i == re.Min { // the loop
				n.eps(so, si)
				n.eps(cur, so)
			}
			cur = so
		}
		for i := re.Min; i < re.Max; i++ {
			si, so, err := n.frag(re.Sub[0])
			if err != nil {
				return 0, 0, err
			}
			n.eps(cur, si)
			n.eps(cur, out)
			cur = so
		}
		n.eps(cur, out)
		return in, out, nil
	case syntax.OpConcat:
		in = n.add()
		out = in
		for _, sub := range re.Sub {
			si, so, err := n.frag(sub)
			if err != nil {
				return 0, 0, err
			}
			n.eps(out, si)
			out = so
		}
		return in, out, nil
	case syntax.OpAlternate:
		in, out = n.add(), n.add()
		for _, sub := range re.Sub {
			si, so, err := n.frag(sub)
			if err != nil {
				return 0, 0, err
			}
			n.eps(in, si)
			n.eps(so, out)
		}
		return in, out, nil
	}
	return 0, 0, fmt.Errorf("%v is not supported", re.Op)
}

// foldPairs returns the ranges of r and the characters it folds to
// (case-insensitive matching), one a character.
func foldPairs(r rune) []rune {
	orbit := []rune{r}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		orbit = append(orbit, f)
	}
	slices.Sort(orbit)
	var pairs []rune
	for _, x := range orbit {
		pairs = append(pairs, x, x)
	}
	return pairs
}

// runes compiles a character class (ranges of code points, lo and hi
// pairs) to the UTF-8 byte sequences of its characters, surrogates left
// out (no UTF-8 text holds them).
func (n *nfa) runes(pairs []rune) (in, out int32) {
	in, out = n.add(), n.add()
	for i := 0; i+1 < len(pairs); i += 2 {
		utf8Seqs(pairs[i], pairs[i+1], func(seq []byteRange) {
			cur := in
			for j, r := range seq {
				to := out
				if j < len(seq)-1 {
					to = n.add()
				}
				n.edges[cur] = append(n.edges[cur], nedge{kind: eByte, lo: r.lo, hi: r.hi, to: to})
				cur = to
			}
		})
	}
	return in, out
}

// byteRange is the bytes lo through hi.
type byteRange struct{ lo, hi byte }

// utf8Seqs calls emit with sequences of byte ranges whose products are,
// together and each once, the UTF-8 encodings of the code points lo
// through hi (surrogates excepted). A range is split until its ends have
// one length and, at each continuation byte, either share the bytes
// above it or span all of them below: then every byte ranges freely
// between its ends' bytes.
func utf8Seqs(lo, hi rune, emit func([]byteRange)) {
	hi = min(hi, unicode.MaxRune)
	if lo > hi {
		return
	}
	if lo <= 0xdfff && hi >= 0xd800 {
		if lo < 0xd800 {
			utf8Seqs(lo, 0xd7ff, emit)
		}
		if hi > 0xdfff {
			utf8Seqs(0xe000, hi, emit)
		}
		return
	}
	for _, m := range []rune{0x7f, 0x7ff, 0xffff} { // the last of each length
		if lo <= m && hi > m {
			utf8Seqs(lo, m, emit)
			utf8Seqs(m+1, hi, emit)
			return
		}
	}
	n := utf8.RuneLen(lo)
	for i := 1; i < n; i++ {
		m := rune(1)<<(6*i) - 1 // the bits of the last i bytes
		if lo&^m == hi&^m {
			continue
		}
		if lo&m != 0 {
			utf8Seqs(lo, lo|m, emit)
			utf8Seqs(lo|m+1, hi, emit)
			return
		}
		if hi&m != m {
			utf8Seqs(lo, hi&^m-1, emit)
			utf8Seqs(hi&^m, hi, emit)
			return
		}
	}
	var a, b [utf8.UTFMax]byte
	utf8.EncodeRune(a[:], lo)
	utf8.EncodeRune(b[:], hi)
	seq := make([]byteRange, n)
	for i := range seq {
		seq[i] = byteRange{a[i], b[i]}
	}
	emit(seq)
}

// closure returns the states reached from set by edges that take no
// byte: ^ edges where begin (the text's start), $ edges where end.
func (n *nfa) closure(set []int32, begin, end bool, seen []bool) []int32 {
	out := slices.Clone(set)
	for _, s := range set {
		seen[s] = true
	}
	for i := 0; i < len(out); i++ {
		for _, e := range n.empty[out[i]] {
			if e.kind == eBegin && !begin || e.kind == eEnd && !end || seen[e.to] {
				continue
			}
			seen[e.to] = true
			out = append(out, e.to)
		}
	}
	for _, s := range out {
		seen[s] = false
	}
	slices.Sort(out)
	return out
}

// determinize makes the automaton of the texts that lead from state in
// to state out (the subset construction), at most MaxRegexStates states.
// A set that holds sink (where >= 0: a search's match found, any text
// after it) is sink's alone: what else it holds can add no text, and
// would make a set for every way the text matched.
func (n *nfa) determinize(in, out, sink int32, w *budget) (*dfa, error) {
	d := &dfa{}
	var cut [257]bool
	cut[0] = true
	for _, es := range n.edges {
		for _, e := range es {
			if e.kind == eByte {
				cut[e.lo], cut[int(e.hi)+1] = true, true
			}
		}
	}
	var reps []byte // a byte of each class
	for c := 0; c < 256; c++ {
		if cut[c] {
			reps = append(reps, byte(c))
		}
		d.class[c] = uint8(len(reps) - 1)
	}
	d.nclass = len(reps)
	seen := make([]bool, len(n.edges))
	var sets [][]int32
	index := map[string]int32{}
	key := func(set []int32, first bool) string {
		var b []byte
		if first { // the start state: ^ holds there, and nowhere else
			b = append(b, 0xff)
		}
		for _, s := range set {
			b = binary.AppendUvarint(b, uint64(s))
		}
		return string(b)
	}
	sets = append(sets, n.closure([]int32{in}, true, false, seen))
	index[key(sets[0], true)] = 0
	// The work is the states and edges visited: each byte edge of a set
	// once for each class of bytes it takes, and the states and edges of
	// its successors' closures (and their sorting).
	cost := func(set []int32) int {
		c := len(set) * (1 + bits.Len(uint(len(set))))
		for _, s := range set {
			c += len(n.empty[s])
		}
		return c
	}
	// nexts[ci] gathers the successors of a set on class ci, held[s]
	// marks those of set i on class ci (i*classes+ci+1) that hold s.
	nexts := make([][]int32, len(reps))
	held := make([]int32, len(n.edges))
	for i := 0; i < len(sets); i++ {
		set := sets[i]
		work := cost(set) // (the accepting closure)
		for _, s := range set {
			for _, e := range n.edges[s] {
				work += int(d.class[e.hi]) - int(d.class[e.lo]) + 1
			}
		}
		if err := w.spend(work); err != nil {
			return nil, err
		}
		d.accept = append(d.accept, slices.Contains(n.closure(set, i == 0, true, seen), out))
		for ci := range nexts {
			nexts[ci] = nexts[ci][:0]
		}
		for _, s := range set {
			for _, e := range n.edges[s] {
				for ci := int(d.class[e.lo]); ci <= int(d.class[e.hi]); ci++ {
					nexts[ci] = append(nexts[ci], e.to)
				}
			}
		}
		for ci := range reps {
			next := nexts[ci][:0]
			mark := int32(i*len(reps) + ci + 1)
			for _, s := range nexts[ci] {
				if held[s] != mark {
					held[s] = mark
					next = append(next, s)
				}
			}
			if len(next) == 0 {
				d.next = append(d.next, -1)
				continue
			}
			next = n.closure(next, false, false, seen)
			if sink >= 0 && slices.Contains(next, sink) {
				next = n.closure([]int32{sink}, false, false, seen)
			}
			if err := w.spend(cost(next)); err != nil {
				return nil, err
			}
			k := key(next, false)
			t, ok := index[k]
			if !ok {
				if err := roomFor(len(sets), len(reps)); err != nil {
					return nil, err
				}
				t = int32(len(sets))
				index[k] = t
				sets = append(sets, next)
			}
			d.next = append(d.next, t)
		}
	}
	return d, nil
}

// trim returns d without the states from which no accepting state can be
// reached, equivalent states merged (Hopcroft's refinement) and byte classes
// that no state tells apart merged; nil where the start is such a state
// (d matches nothing). States are numbered in breadth-first order from
// the start.
func (d *dfa) trim() *dfa {
	ns, nc := d.states(), d.nclass
	rev := make([][]int32, ns)
	for s := range ns {
		for c := range nc {
			if t := d.next[s*nc+c]; t >= 0 {
				rev[t] = append(rev[t], int32(s))
			}
		}
	}
	live := make([]bool, ns)
	var queue []int32
	for s, acc := range d.accept {
		if acc {
			live[s] = true
			queue = append(queue, int32(s))
		}
	}
	for i := 0; i < len(queue); i++ {
		for _, p := range rev[queue[i]] {
			if !live[p] {
				live[p] = true
				queue = append(queue, p)
			}
		}
	}
	if !live[0] {
		return nil
	}
	block, blocks := hopcroft(d, live)
	// Number the blocks from the start, breadth first.
	num := make([]int32, blocks)
	for i := range num {
		num[i] = -1
	}
	rep := make([]int32, 0, blocks) // a state of each new state
	num[block[0]] = 0
	rep = append(rep, 0)
	for i := 0; i < len(rep); i++ {
		s := int(rep[i])
		for c := range nc {
			if t := d.next[s*nc+c]; t >= 0 && block[t] >= 0 && num[block[t]] < 0 {
				num[block[t]] = int32(len(rep))
				rep = append(rep, t)
			}
		}
	}
	// Classes whose columns agree are one.
	colID := map[string]uint8{}
	merged := make([]uint8, nc)
	var cols []int // an old class of each new one
	for c := range nc {
		var col []byte
		for _, s := range rep {
			t := d.next[int(s)*nc+c]
			v := int32(-1)
			if t >= 0 && block[t] >= 0 {
				v = num[block[t]]
			}
			col = binary.AppendVarint(col, int64(v))
		}
		id, ok := colID[string(col)]
		if !ok {
			id = uint8(len(cols))
			colID[string(col)] = id
			cols = append(cols, c)
		}
		merged[c] = id
	}
	out := &dfa{nclass: len(cols)}
	for b := range 256 {
		out.class[b] = merged[d.class[b]]
	}
	for _, s := range rep {
		out.accept = append(out.accept, d.accept[s])
		for _, c := range cols {
			t := d.next[int(s)*nc+c]
			v := int32(-1)
			if t >= 0 && block[t] >= 0 {
				v = num[block[t]]
			}
			out.next = append(out.next, v)
		}
	}
	out.ctl = make([]uint32, len(rep))
	for s := range out.ctl {
		for c := range 0x20 {
			if out.step(int32(s), byte(c)) >= 0 {
				out.ctl[s] |= 1 << c
			}
		}
	}
	return out
}

// trimCost is trim's work: Hopcroft's, the table's entries times the
// logarithm of the states.
func (d *dfa) trimCost() int {
	return len(d.next) * bits.Len(uint(d.states()))
}

// hopcroft partitions d's live states into classes of equivalence (states
// from which the same texts are accepted): Hopcroft's algorithm, a sink
// standing for the dead states and missing transitions. block[s] is s's
// class, -1 for a dead state; blocks bounds the classes' numbers.
func hopcroft(d *dfa, live []bool) (block []int32, blocks int) {
	ns, nc := d.states(), d.nclass
	sink := int32(ns)
	n := ns + 1
	delta := func(s int32, c int) int32 {
		if s == sink {
			return sink
		}
		if t := d.next[int(s)*nc+c]; t >= 0 && live[t] {
			return t
		}
		return sink
	}
	// The transitions backwards, by class and target: inv[start[c*n+t]:
	// start[c*n+t+1]] are the states that go to t on class c.
	start := make([]int32, nc*n+1)
	for c := range nc {
		for s := range n {
			if s == ns || live[s] {
				start[c*n+int(delta(int32(s), c))+1]++
			}
		}
	}
	for i := 1; i < len(start); i++ {
		start[i] += start[i-1]
	}
	inv := make([]int32, start[len(start)-1])
	fill := slices.Clone(start)
	for c := range nc {
		for s := range n {
			if s == ns || live[s] {
				k := c*n + int(delta(int32(s), c))
				inv[fill[k]] = int32(s)
				fill[k]++
			}
		}
	}
	// The partition: elems holds each block's states in a run
	// [first, end), loc where each state is, marked how many of a
	// block's states (at its run's start) the current splitter reaches.
	var elems []int32
	loc := make([]int32, n)
	of := make([]int32, n)
	var first, end, marked []int32
	for _, acc := range []bool{true, false} {
		b := int32(len(first))
		first = append(first, int32(len(elems)))
		for s := range n {
			if (s == ns && !acc) || s < ns && live[s] && d.accept[s] == acc {
				loc[s] = int32(len(elems))
				of[s] = b
				elems = append(elems, int32(s))
			}
		}
		end = append(end, int32(len(elems)))
		marked = append(marked, 0)
	}
	type splitter struct{ b, c int32 }
	var work []splitter
	inWork := make([]bool, n*nc)
	size := func(b int32) int32 { return end[b] - first[b] }
	small := int32(0) // the accepting block, unless the other is smaller
	if size(1) < size(0) {
		small = 1
	}
	for c := range nc {
		work = append(work, splitter{small, int32(c)})
		inWork[int(small)*nc+c] = true
	}
	var members, touched []int32
	for len(work) > 0 {
		sp := work[len(work)-1]
		work = work[:len(work)-1]
		inWork[int(sp.b)*nc+int(sp.c)] = false
		members = append(members[:0], elems[first[sp.b]:end[sp.b]]...)
		touched = touched[:0]
		for _, t := range members {
			k := int(sp.c)*n + int(t)
			for _, s := range inv[start[k]:start[k+1]] {
				b := of[s]
				i := first[b] + marked[b]
				if loc[s] < i {
					continue // marked already
				}
				o := elems[i]
				elems[i], elems[loc[s]] = s, o
				loc[o], loc[s] = loc[s], i
				if marked[b]++; marked[b] == 1 {
					touched = append(touched, b)
				}
			}
		}
		for _, b := range touched {
			m := marked[b]
			marked[b] = 0
			if m == size(b) {
				continue
			}
			nb := int32(len(first))
			first = append(first, first[b])
			end = append(end, first[b]+m)
			marked = append(marked, 0)
			first[b] += m
			for _, s := range elems[first[nb]:end[nb]] {
				of[s] = nb
			}
			for c := range nc {
				switch {
				case inWork[int(b)*nc+c]:
					work = append(work, splitter{nb, int32(c)})
					inWork[int(nb)*nc+c] = true
				case size(nb) <= size(b):
					work = append(work, splitter{nb, int32(c)})
					inWork[int(nb)*nc+c] = true
				default:
					work = append(work, splitter{b, int32(c)})
					inWork[int(b)*nc+c] = true
				}
			}
		}
	}
	block = make([]int32, ns)
	for s := range ns {
		block[s] = -1
		if live[s] {
			block[s] = of[s]
		}
	}
	return block, len(first)
}

// pairs builds the automaton of pairs of states reached from start, step
// giving the pair after a byte (false: none) and accept whether a pair
// accepts, bytes in the classes of key (bytes of one key are one class);
// then trims it. Each state's row of the table is spent from w.
func pairs(w *budget, key func(c byte) int, start [2]int32, step func(p [2]int32, c byte) ([2]int32, bool), accept func([2]int32) bool) (*dfa, error) {
	d := &dfa{}
	ids := map[int]uint8{}
	var reps []byte
	for c := range 256 {
		k := key(byte(c))
		id, ok := ids[k]
		if !ok {
			id = uint8(len(reps))
			ids[k] = id
			reps = append(reps, byte(c))
		}
		d.class[c] = id
	}
	d.nclass = len(reps)
	states := [][2]int32{start}
	index := map[[2]int32]int32{start: 0}
	for i := 0; i < len(states); i++ {
		p := states[i]
		if err := w.spend(len(reps) + 1); err != nil {
			return nil, err
		}
		d.accept = append(d.accept, accept(p))
		for _, c := range reps {
			q, ok := step(p, c)
			if !ok {
				d.next = append(d.next, -1)
				continue
			}
			t, ok := index[q]
			if !ok {
				if err := roomFor(len(states), len(reps)); err != nil {
					return nil, err
				}
				t = int32(len(states))
				index[q] = t
				states = append(states, q)
			}
			d.next = append(d.next, t)
		}
	}
	if err := w.spend(d.trimCost()); err != nil {
		return nil, err
	}
	if d = d.trim(); d == nil {
		return nil, errNoMatch
	}
	return d, nil
}

// intersect returns the automaton of the texts both a and b accept, its
// work spent from w.
func intersect(a, b *dfa, w *budget) (*dfa, error) {
	return pairs(w, func(c byte) int { return int(a.class[c])<<8 | int(b.class[c]) }, [2]int32{},
		func(p [2]int32, c byte) ([2]int32, bool) {
			x, y := a.step(p[0], c), b.step(p[1], c)
			return [2]int32{x, y}, x >= 0 && y >= 0
		},
		func(p [2]int32) bool { return a.accept[p[0]] && b.accept[p[1]] })
}

// first reports whether byte c starts a character (is no UTF-8
// continuation byte).
func first(c byte) bool { return c < 0x80 || c >= 0xc0 }

// span returns the fewest and the most characters of the texts d accepts
// (most -1: no bound, d has a loop).
func (d *dfa) span() (fewest, most int) {
	ns := d.states()
	// Fewest: breadth first, a continuation byte costing nothing.
	dist := make([]int, ns)
	for s := range dist {
		dist[s] = -1
	}
	dist[0] = 0
	// A deque: front (a stack) for states reached at no cost, back (a
	// queue) for those a character further.
	front, back := []int32{0}, []int32(nil)
	for len(front)+len(back) > 0 {
		var s int32
		if n := len(front); n > 0 {
			s, front = front[n-1], front[:n-1]
		} else {
			s, back = back[0], back[1:]
		}
		for c := range 256 {
			t := d.step(s, byte(c))
			if t < 0 {
				continue
			}
			w := 0
			if first(byte(c)) {
				w = 1
			}
			if dist[t] < 0 || dist[s]+w < dist[t] {
				dist[t] = dist[s] + w
				if w == 0 {
					front = append(front, t)
				} else {
					back = append(back, t)
				}
			}
		}
	}
	fewest = -1
	for s, acc := range d.accept {
		if acc && (fewest < 0 || dist[s] < fewest) {
			fewest = dist[s]
		}
	}
	// Most: the longest path, where no loop (every state is live and
	// reached from the start, so a loop makes texts of any length).
	longest := make([]int, ns) // from each state to its last accepting one, -1 where none
	state := make([]uint8, ns) // 0 unseen, 1 on the path, 2 done
	var visit func(s int32) bool
	visit = func(s int32) bool {
		state[s] = 1
		longest[s] = -1
		if d.accept[s] {
			longest[s] = 0
		}
		for c := range 256 {
			t := d.step(s, byte(c))
			if t < 0 {
				continue
			}
			if state[t] == 1 || state[t] == 0 && !visit(t) {
				return false
			}
			w := 0
			if first(byte(c)) {
				w = 1
			}
			if longest[t] >= 0 && longest[t]+w > longest[s] {
				longest[s] = longest[t] + w
			}
		}
		state[s] = 2
		return true
	}
	if !visit(0) {
		return fewest, -1
	}
	return fewest, longest[0]
}

// bounded returns the automaton of the texts d accepts that hold between
// lo and hi characters (code points; hi -1: no bound). A character is
// counted at its first byte. Its work is spent from w.
func bounded(d *dfa, lo, hi int, w *budget) (*dfa, error) {
	if err := w.spend(d.states() * 256); err != nil { // (span)
		return nil, err
	}
	if min, max := d.span(); lo <= min && (hi < 0 || max >= 0 && max <= hi) {
		return d, nil // every text d accepts is within the bounds
	}
	top := int32(hi)
	if hi < 0 {
		top = int32(lo) // past lo, the count no longer matters
	}
	return pairs(w, func(c byte) int {
		k := int(d.class[c]) << 1
		if first(c) {
			k |= 1
		}
		return k
	}, [2]int32{},
		func(p [2]int32, c byte) ([2]int32, bool) {
			x, n := d.step(p[0], c), p[1]
			if first(c) {
				if hi >= 0 && n >= top {
					return p, false
				}
				n = min(n+1, top)
			}
			return [2]int32{x, n}, x >= 0
		},
		func(p [2]int32) bool { return d.accept[p[0]] && int(p[1]) >= lo })
}
