package grammar

import (
	"encoding/binary"
	"math/bits"
	"slices"
)

// Bounds of what the recognizer makes.
const (
	// MaxIndent bounds the spaces and tabs after the newlines of a run of
	// whitespace between JSON tokens (see spaced).
	MaxIndent = 20
	// MaxDepth bounds the nesting of objects and arrays.
	MaxDepth = 32
	// MaxNumber bounds a number's length in bytes.
	MaxNumber = 24
	// MaxExponent bounds the digits of a number's exponent, so that every
	// number is a finite float64 (1e999 is not, to encoding/json).
	MaxExponent = 2
	// MaxStacks bounds the stacks of a state (alternatives of a union
	// still alive): a byte that would make more is refused, so that an
	// ambiguous schema cannot make a step cost their product.
	MaxStacks = 256
	// maxUnion bounds the unions expanded in one another (a $ref may
	// make a union an alternative of itself).
	maxUnion = 8
)

// op is what a frame is reading.
type op uint8

const (
	opDone    op = iota // below the value: nothing more
	opValue             // a value of n, whitespace first
	opObject            // an object of n, in phase
	opKey               // a declared key of the object below (up)
	opArray             // an array of n, in phase
	opString            // a string of n, in phase
	opNumber            // a number of n, in phase
	opLiteral           // one of n.lits
	opRegex             // a raw text of n.re (Regex)
	opSeq               // a sequence of n: part a of n.seq (b 0) or n.loop (b 1) next
)

// Phases of an object.
const (
	objOpen  = iota // after '{': a key or '}'
	objKey          // after ',': a key
	objColon        // after a key: ':'
	objNext         // after a value: ',' or '}'
)

// Phases of an array.
const (
	arrOpen = iota // after '[': a value or ']'
	arrNext        // after a value: ',' or ']'
)

// Phases of a string.
const (
	strChar   = iota // a character or the closing '"'
	strEscape        // after '\'
	strHex           // in \uXXXX, b digits read (c: surrogate, hi: the low one)
	strCont          // in a UTF-8 character: b bytes left, the next in [lo, hi]
	strLow           // after a high surrogate's escape: the '\' of the low one
	strLowU          // after its '\': the 'u'
)

// In strHex, c says what the digits read make: hexD after a first digit
// d, hexHigh a high surrogate (D800-DBFF), which a low one must follow;
// hi is lowEscape where the escape is that low surrogate (DC00-DFFF).
const (
	hexD      = 1
	hexHigh   = 2
	lowEscape = 1
)

// Phases of a number (the JSON grammar's states).
const (
	numMinus     = iota // after '-'
	numZero             // after a leading 0 (complete)
	numInt              // in the integer's digits (complete)
	numDot              // after '.'
	numFrac             // in the fraction's digits (complete)
	numExp              // after 'e'
	numExpSign          // after the exponent's sign
	numExpDigits        // in the exponent's digits (complete)
)

// frame is one level of the recognizer's stack. Frames are immutable once
// made: a step copies the top and shares the rest.
type frame struct {
	up    *frame
	n     *node
	op    op
	phase uint8
	space uint8 // the current run of whitespace (spaced)
	depth uint8 // objects and arrays open, this one included
	lo    byte  // strCont: the next byte's range
	hi    byte
	// opObject: a is the first property that may still come, b the one
	// whose key was read (objColon). opKey: a is the bytes of the key
	// matched, keys the candidates alive (bit i: property up.a+i).
	// opArray: a counts the items begun, where the node bounds them.
	// opString: a counts the characters, where the node bounds them.
	// opNumber: a counts the bytes. opLiteral: a bytes matched of the
	// texts lits[b:c].
	a, b, c int32
	// re is the state of n.re: the automaton of a string's decoded
	// characters (opString) or of the text (opRegex).
	re   int32
	keys uint64
}

// done is the bottom of every stack.
var done = &frame{op: opDone}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// Whitespace goes where JSON written compact or indented (json.dumps,
// JSON.stringify) has it, and in no run a model could extend without end:
// after '{', '[' and ',', and before '}' and ']', one space, or one or two
// newlines and then at most MaxIndent spaces and tabs (llama.cpp's JSON
// grammars' run); after ':' and before the value, one space; before ':' and
// ',', none. frame.space holds the run so far: 0 none, spaceOne, or
// newlines<<5 | indent.
const spaceOne = 1 << 7

// spaceRaw is the space of a raw grammar's value (Choice): no run of
// whitespace comes before it, and whitespace is its text's own.
const spaceRaw = 0xff

// spaced is f after whitespace byte c, if the run may take it; a run that
// is not full is one space at most.
func spaced(a *arena, f *frame, c byte, full bool, out []*frame) []*frame {
	nl, indent := f.space>>5, f.space&31
	var next uint8
	switch {
	case f.space == 0 && c == ' ':
		next = spaceOne
	case !full:
		return out
	case f.space == 0 && c == '\n':
		next = 1 << 5
	case c == '\n' && nl == 1 && indent == 0:
		next = 2 << 5
	case (c == ' ' || c == '\t') && nl >= 1 && f.space != spaceOne && indent < MaxIndent:
		next = f.space + 1
	default:
		return out
	}
	g := *f
	g.space = next
	return append(out, a.put(g))
}

// feed appends to out the stacks that follow f's after byte c.
func feed(a *arena, f *frame, c byte, out []*frame) []*frame {
	switch f.op {
	case opValue:
		if isSpace(c) && f.space != spaceRaw {
			// An array's item after ',' is on a line of its own where
			// the array is indented; an object's value and the whole
			// value are not.
			return spaced(a, f, c, f.up.op == opArray, out)
		}
		return start(a, f.up, f.n, c, f.depth, out, 0)
	case opObject:
		return feedObject(a, f, c, out)
	case opKey:
		return feedKey(a, f, c, out)
	case opArray:
		return feedArray(a, f, c, out)
	case opString:
		return feedString(a, f, c, out)
	case opNumber:
		return feedNumber(a, f, c, out)
	case opRegex:
		if s := f.n.re.step(f.re, c); s >= 0 {
			g := *f
			g.re = s
			out = append(out, a.put(g))
		}
		if f.n.re.accept[f.re] {
			// (In a Sequence the text may end here and the next part
			// go on.)
			return feed(a, f.up, c, out)
		}
	case opSeq:
		parts := f.n.seq
		if f.b == 1 {
			parts = f.n.loop
		}
		if int(f.a) < len(parts) {
			g := *f
			g.a++
			return start(a, a.put(g), parts[f.a], c, f.depth, out, 0)
		}
		if len(f.n.loop) > 0 {
			// The loop again (or a first time); the sequence may also
			// end here, where nothing follows.
			g := *f
			g.a, g.b = 0, 1
			out = feed(a, &g, c, out)
		}
		return feed(a, f.up, c, out)
	case opLiteral:
		lits := f.n.lits
		lo, hi := int32(-1), int32(-1)
		for i := f.b; i < f.c; i++ {
			if l := lits[i]; int(f.a) < len(l) && l[f.a] == c {
				if lo < 0 {
					lo = i
				}
				hi = i + 1
			}
		}
		if lo >= 0 {
			g := *f
			g.a++
			g.b, g.c = lo, hi
			return append(out, a.put(g))
		}
		if len(lits[f.b]) == int(f.a) { // complete (the shortest sorts first)
			return feed(a, f.up, c, out)
		}
	}
	return out
}

// start appends the stacks that begin a value of n above up with byte c;
// depth counts the containers open around it.
func start(a *arena, up *frame, n *node, c byte, depth uint8, out []*frame, unions int) []*frame {
	switch n.kind {
	case kUnion:
		if unions >= maxUnion {
			return out
		}
		for _, alt := range n.alts {
			out = start(a, up, alt, c, depth, out, unions+1)
		}
	case kObject:
		if c == '{' && fits(n, depth) {
			out = append(out, a.put(frame{up: up, n: n, op: opObject, phase: objOpen, depth: depth + 1}))
		}
	case kArray:
		if c == '[' && fits(n, depth) {
			out = append(out, a.put(frame{up: up, n: n, op: opArray, phase: arrOpen, depth: depth + 1}))
		}
	case kString:
		if c == '"' {
			out = append(out, a.put(frame{up: up, n: n, op: opString, depth: depth}))
		}
	case kRegex:
		if s := n.re.step(0, c); s >= 0 {
			out = append(out, a.put(frame{up: up, n: n, op: opRegex, re: s, depth: depth}))
		}
	case kNumber:
		ph := -1
		switch {
		case c == '-':
			ph = numMinus
		case c == '0':
			ph = numZero
		case c >= '1' && c <= '9':
			ph = numInt
		}
		if ph >= 0 {
			out = append(out, a.put(frame{up: up, n: n, op: opNumber, phase: uint8(ph), a: 1, depth: depth}))
		}
	case kSeq:
		return feed(a, a.put(frame{up: up, n: n, op: opSeq, depth: depth}), c, out)
	case kLiteral:
		lo, hi := int32(-1), int32(-1)
		for i, l := range n.lits {
			if l[0] == c {
				if lo < 0 {
					lo = int32(i)
				}
				hi = int32(i) + 1
			}
		}
		if lo >= 0 {
			out = append(out, a.put(frame{up: up, n: n, op: opLiteral, a: 1, b: lo, c: hi, depth: depth}))
		}
	}
	return out
}

// freeKeys reports whether n's keys are of any name.
func freeKeys(n *node) bool { return len(n.props) == 0 }

// fits reports whether a value of n may start inside depth containers:
// the nesting it needs stays within MaxDepth.
func fits(n *node, depth uint8) bool { return int(depth)+n.minDepth <= MaxDepth }

// candidates returns the declared properties whose key may come next in
// an object of n (depth containers open, it included) whose properties
// from a on may still come: those up to and including the first required
// one, an optional one only where its value fits (bit i: property a+i).
// (A required one fits: the object opened only where its values do.)
func candidates(n *node, a int32, depth uint8) uint64 {
	var m uint64
	for i := int(a); i < len(n.props); i++ {
		if n.props[i].required {
			m |= 1 << (i - int(a))
			break
		}
		if fits(n.props[i].val, depth) {
			m |= 1 << (i - int(a))
		}
	}
	return m
}

// closable reports whether an object of n may end with properties from a
// on left out: none of them is required.
func closable(n *node, a int32) bool {
	for i := int(a); i < len(n.props); i++ {
		if n.props[i].required {
			return false
		}
	}
	return true
}

func feedObject(a *arena, f *frame, c byte, out []*frame) []*frame {
	if isSpace(c) {
		// (After a value, whitespace comes before '}' only.)
		if f.phase == objColon || f.phase == objNext && !freeKeys(f.n) && !closable(f.n, f.a) {
			return out
		}
		return spaced(a, f, c, true, out)
	}
	n := f.n
	switch f.phase {
	case objOpen, objKey:
		if c == '}' && f.phase == objOpen && (freeKeys(n) || closable(n, f.a)) {
			return append(out, f.up)
		}
		if c != '"' {
			return out
		}
		if freeKeys(n) {
			if n.extra == nil || !fits(n.extra, f.depth) {
				return out
			}
			g := *f
			g.phase, g.space = objColon, 0
			return append(out, a.put(frame{up: a.put(g), n: keyNode, op: opString, depth: f.depth}))
		}
		if m := candidates(n, f.a, f.depth); m != 0 {
			g := *f
			g.space = 0
			return append(out, a.put(frame{up: a.put(g), n: n, op: opKey, a: 1, keys: m, depth: f.depth}))
		}
	case objColon:
		if c == ':' {
			g := *f
			g.phase, g.space = objNext, 0
			v := n.extra
			if !freeKeys(n) {
				v = n.props[f.b].val
			}
			return append(out, a.put(frame{up: a.put(g), n: v, op: opValue, depth: f.depth}))
		}
	case objNext:
		if c == '}' && (freeKeys(n) || closable(n, f.a)) {
			return append(out, f.up)
		}
		if c == ',' && f.space == 0 && (freeKeys(n) || candidates(n, f.a, f.depth) != 0) {
			g := *f
			g.phase, g.space = objKey, 0
			return append(out, a.put(g))
		}
	}
	return out
}

// keyNode is the string of a key of any name.
var keyNode = &node{id: -2, kind: kString, maxLen: -1}

func feedKey(a *arena, f *frame, c byte, out []*frame) []*frame {
	obj := f.up
	props := obj.n.props
	var alive uint64
	complete := int32(-1)
	for m := f.keys; m != 0; m &= m - 1 {
		i := int32(bits.TrailingZeros64(m))
		k := props[obj.a+i].key
		if int(f.a) < len(k) && k[f.a] == c {
			alive |= 1 << i
			if int(f.a)+1 == len(k) {
				complete = obj.a + i
			}
		}
	}
	switch {
	case alive == 0:
		return out
	case complete >= 0: // the closing quote: no key is a prefix of another
		g := *obj
		g.phase, g.space, g.a, g.b = objColon, 0, complete+1, complete
		return append(out, a.put(g))
	}
	g := *f
	g.a++
	g.keys = alive
	return append(out, a.put(g))
}

// counted reports whether an array of n counts its items.
func counted(n *node) bool { return n.minItems > 0 || n.maxItems >= 0 }

func feedArray(a *arena, f *frame, c byte, out []*frame) []*frame {
	if isSpace(c) {
		if f.phase == arrNext && int(f.a) < f.n.minItems {
			return out
		}
		return spaced(a, f, c, true, out)
	}
	n := f.n
	switch f.phase {
	case arrOpen:
		if c == ']' {
			if n.minItems == 0 {
				out = append(out, f.up)
			}
			return out
		}
		if n.maxItems == 0 {
			return out
		}
		g := *f
		g.phase, g.space = arrNext, 0
		if counted(n) {
			g.a = 1
		}
		return start(a, a.put(g), n.items, c, f.depth, out, 0)
	case arrNext:
		if c == ']' && int(f.a) >= n.minItems {
			return append(out, f.up)
		}
		if c == ',' && f.space == 0 && (n.maxItems < 0 || int(f.a) < n.maxItems) {
			g := *f
			g.space = 0
			if counted(n) {
				g.a++
			}
			return append(out, a.put(frame{up: a.put(g), n: n.items, op: opValue, depth: f.depth}))
		}
	}
	return out
}

func feedString(a *arena, f *frame, c byte, out []*frame) []*frame {
	n := f.n
	if n.re != nil {
		return feedPattern(a, f, c, out)
	}
	bounded := n.minLen > 0 || n.maxLen >= 0
	g := *f
	switch f.phase {
	case strChar:
		if c == '"' {
			if int(f.a) >= n.minLen {
				out = append(out, f.up)
			}
			return out
		}
		if n.maxLen >= 0 && int(f.a) >= n.maxLen {
			return out
		}
		if bounded {
			g.a++
		}
		switch {
		case c == '\\':
			g.phase = strEscape
		case c < 0x20:
			return out
		case c < 0x80:
		case c >= 0xc2 && c <= 0xdf:
			g.phase, g.b, g.lo, g.hi = strCont, 1, 0x80, 0xbf
		case c == 0xe0:
			g.phase, g.b, g.lo, g.hi = strCont, 2, 0xa0, 0xbf
		case c == 0xed:
			g.phase, g.b, g.lo, g.hi = strCont, 2, 0x80, 0x9f
		case c >= 0xe1 && c <= 0xef:
			g.phase, g.b, g.lo, g.hi = strCont, 2, 0x80, 0xbf
		case c == 0xf0:
			g.phase, g.b, g.lo, g.hi = strCont, 3, 0x90, 0xbf
		case c >= 0xf1 && c <= 0xf3:
			g.phase, g.b, g.lo, g.hi = strCont, 3, 0x80, 0xbf
		case c == 0xf4:
			g.phase, g.b, g.lo, g.hi = strCont, 3, 0x80, 0x8f
		default:
			return out
		}
	case strEscape:
		switch c {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			g.phase = strChar
		case 'u':
			g.phase, g.b, g.c = strHex, 0, 0
		default:
			return out
		}
	case strHex:
		// Surrogates come in pairs (a lone one is no character: strict
		// parsers refuse it), the pair one character of the length.
		if !isHex(c) {
			return out
		}
		d := c | 0x20 // (lower case)
		switch {
		case g.b == 0 && f.hi == lowEscape:
			if d != 'd' {
				return out
			}
		case g.b == 0:
			if d == 'd' {
				g.c = hexD
			}
		case g.b == 1 && f.hi == lowEscape:
			if d < 'c' || d > 'f' {
				return out
			}
		case g.b == 1 && f.c == hexD:
			switch {
			case d >= 'c' && d <= 'f':
				return out // a low surrogate first
			case d >= '8' && d <= '9' || d >= 'a' && d <= 'b':
				g.c = hexHigh
			default:
				g.c = 0
			}
		}
		if g.b++; g.b == 4 {
			g.phase = strChar
			if g.c == hexHigh {
				g.phase = strLow
			}
			g.b, g.c, g.hi = 0, 0, 0
		}
	case strLow:
		if c != '\\' {
			return out
		}
		g.phase = strLowU
	case strLowU:
		if c != 'u' {
			return out
		}
		g.phase, g.b, g.hi = strHex, 0, lowEscape
	case strCont:
		if c < f.lo || c > f.hi {
			return out
		}
		g.lo, g.hi = 0x80, 0xbf
		if g.b--; g.b == 0 {
			g.phase, g.lo, g.hi = strChar, 0, 0
		}
	}
	if g == *f { // a character of an unbounded string: the same state
		return append(out, f)
	}
	return append(out, a.put(g))
}

// feedPattern is feedString for a string whose characters n.re must
// accept: each, decoded, goes through the automaton, a byte at a time, and
// a byte that leaves it no state is refused; the closing quote comes only
// where it accepts. (The automaton takes UTF-8 only: it checks what
// strCont does.) Escapes are those JSON needs: \" \\ \/ \b \f \n \r \t,
// and \u00XX for control characters (below 0x20), each only where the
// character it stands for keeps the automaton alive. Every character has
// a way to be written (raw, or escaped where JSON needs it), so that every
// prefix allowed can finish.
func feedPattern(a *arena, f *frame, c byte, out []*frame) []*frame {
	d := f.n.re
	g := *f
	switch f.phase {
	case strChar:
		switch {
		case c == '"':
			if d.accept[f.re] {
				out = append(out, f.up)
			}
			return out
		case c == '\\':
			if d.ctl[f.re] == 0 && d.step(f.re, '"') < 0 && d.step(f.re, '\\') < 0 && d.step(f.re, '/') < 0 {
				return out
			}
			g.phase = strEscape
			return append(out, a.put(g))
		case c < 0x20:
			return out
		}
	case strEscape:
		switch c {
		case '"', '\\', '/':
		case 'b':
			c = '\b'
		case 'f':
			c = '\f'
		case 'n':
			c = '\n'
		case 'r':
			c = '\r'
		case 't':
			c = '\t'
		case 'u':
			if d.ctl[f.re] == 0 {
				return out
			}
			g.phase, g.b, g.c = strHex, 0, 0
			return append(out, a.put(g))
		default:
			return out
		}
		g.phase = strChar
	case strHex:
		// \u00XX, XX below 20: the third digit 0 or 1 (c holds it as
		// 0 or 16) where a control character of that half may come.
		ctl := d.ctl[f.re]
		switch f.b {
		case 0, 1:
			if c != '0' {
				return out
			}
		case 2:
			switch {
			case c == '0' && ctl&0xffff != 0:
			case c == '1' && ctl>>16 != 0:
				g.c = 16
			default:
				return out
			}
		case 3:
			if !isHex(c) {
				return out
			}
			v := f.c + int32(hexValue(c))
			if ctl>>v&1 == 0 {
				return out
			}
			c = byte(v)
			g.phase, g.b, g.c = strChar, 0, 0
		}
		if g.phase == strHex {
			g.b++
			return append(out, a.put(g))
		}
	default:
		return out
	}
	s := d.step(f.re, c)
	if s < 0 {
		return out
	}
	g.re = s
	return append(out, a.put(g))
}

// hexValue is hex digit c's value.
func hexValue(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// numComplete reports whether a number in phase ph may end there.
func numComplete(ph uint8) bool {
	return ph == numZero || ph == numInt || ph == numFrac || ph == numExpDigits
}

func feedNumber(a *arena, f *frame, c byte, out []*frame) []*frame {
	digit := c >= '0' && c <= '9'
	next := -1
	switch f.phase {
	case numMinus:
		switch {
		case c == '0':
			next = numZero
		case digit:
			next = numInt
		}
	case numZero, numInt, numFrac:
		switch {
		case digit && f.phase != numZero:
			next = int(f.phase)
		case c == '.' && f.phase != numFrac && !f.n.integer:
			next = numDot
		case (c == 'e' || c == 'E') && !f.n.integer:
			next = numExp
		}
	case numDot:
		if digit {
			next = numFrac
		}
	case numExp:
		switch {
		case c == '+' || c == '-':
			next = numExpSign
		case digit:
			next = numExpDigits
		}
	case numExpSign, numExpDigits:
		if digit {
			next = numExpDigits
		}
	}
	if next >= 0 {
		// A phase that is not complete needs room for one more byte.
		if f.a >= MaxNumber || !numComplete(uint8(next)) && f.a+1 >= MaxNumber {
			return out
		}
		g := *f
		g.phase = uint8(next)
		g.a++
		if next == numExpDigits { // c: the exponent's digits
			if f.phase != numExpDigits {
				g.c = 0
			}
			if g.c >= MaxExponent {
				return out
			}
			g.c++
		}
		return append(out, a.put(g))
	}
	if numComplete(f.phase) {
		return feed(a, f.up, c, out)
	}
	return out
}

// accepts reports whether the value of stack f is complete: every frame
// above the bottom may end where it is.
func accepts(f *frame) bool {
	for ; f.op != opDone; f = f.up {
		switch {
		case f.op == opNumber && numComplete(f.phase):
		case f.op == opLiteral && len(f.n.lits[f.b]) == int(f.a):
		case f.op == opRegex && f.n.re.accept[f.re]:
		case f.op == opSeq && seqRestEmpty(f):
		case f.op == opValue && f.n.kind == kRegex && f.n.re.accept[0]: // the empty text
		default:
			return false
		}
	}
	return true
}

// seqRestEmpty reports whether a sequence's frame may end where it is:
// its parts still to come may all be empty (optional ones, Alts with an
// alternative of no parts).
func seqRestEmpty(f *frame) bool {
	parts := f.n.seq
	if f.b == 1 {
		parts = f.n.loop
	}
	for _, p := range parts[f.a:] {
		if !mayBeEmpty(p, 0) {
			return false
		}
	}
	return true
}

// mayBeEmpty reports whether n's output may be empty: a sequence whose
// parts all may, a union with an alternative that may (depth bounds
// the walk).
func mayBeEmpty(n *node, depth int) bool {
	if depth > maxUnion {
		return false
	}
	switch n.kind {
	case kSeq:
		for _, p := range n.seq {
			if !mayBeEmpty(p, depth+1) {
				return false
			}
		}
		return true
	case kUnion:
		for _, a := range n.alts {
			if mayBeEmpty(a, depth+1) {
				return true
			}
		}
	}
	return false
}

// state is the recognizer's state: the stacks it may be in.
type state []*frame

// step returns the state after byte c (empty: c cannot come), its new
// frames from a, appended to out[:0].
func (s state) step(a *arena, c byte, out state) state {
	out = out[:0]
	for _, f := range s {
		out = feed(a, f, c, out)
	}
	if len(out) > 1 {
		out = out.dedupe()
	}
	if len(out) > MaxStacks {
		return nil
	}
	return out
}

// accepts reports whether the value may end in s.
func (s state) accepts() bool {
	for _, f := range s {
		if accepts(f) {
			return true
		}
	}
	return false
}

// dedupe drops stacks equal to an earlier one.
func (s state) dedupe() state {
	seen := make(map[string]bool, len(s))
	out := s[:0]
	for _, f := range s {
		k := string(appendKey(nil, f))
		if !seen[k] {
			seen[k] = true
			out = append(out, f)
		}
	}
	return out
}

// key returns a string that equal states share: the memo's key.
func (s state) key() string {
	if len(s) == 1 {
		return string(appendKey(nil, s[0]))
	}
	keys := make([]string, len(s))
	for i, f := range s {
		keys[i] = string(appendKey(nil, f))
	}
	slices.Sort(keys)
	var b []byte
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return string(b)
}

// appendKey appends stack f's frames, top first.
func appendKey(b []byte, f *frame) []byte {
	for ; f != nil; f = f.up {
		id := int64(-1)
		if f.n != nil {
			id = int64(f.n.id)
		}
		b = binary.AppendVarint(b, id)
		b = append(b, byte(f.op), f.phase, f.space, f.depth, f.lo, f.hi)
		b = binary.AppendVarint(b, int64(f.a))
		b = binary.AppendVarint(b, int64(f.b))
		b = binary.AppendVarint(b, int64(f.c))
		b = binary.AppendVarint(b, int64(f.re))
		b = binary.AppendUvarint(b, f.keys)
	}
	return b
}

// arena hands out frames from slabs, one allocation for many: a walk of
// the trie makes a frame a byte and keeps none of them. A nil arena
// allocates each frame on its own.
type arena struct{ slab []frame }

// arenaSlab bounds a slab's frames: slabs start at 64 and double.
const arenaSlab = 4096

func (a *arena) put(f frame) *frame {
	if a == nil {
		p := new(frame)
		*p = f
		return p
	}
	if len(a.slab) == cap(a.slab) {
		a.slab = make([]frame, 0, min(max(2*cap(a.slab), 64), arenaSlab))
	}
	a.slab = append(a.slab, f)
	return &a.slab[len(a.slab)-1]
}
