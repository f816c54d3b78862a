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
	"unicode/utf8"
)

// moreFilter applies the filters of jinja2 3.1's filters.py past the
// ones filterValue runs itself: float, round, sum, format, escape (e),
// forceescape, wordcount, center, truncate, striptags, urlencode,
// groupby, batch and slice.
func (r *renderer) moreFilter(name string, v value, args []value, kw map[string]value) (value, error) {
	switch name {
	case "float":
		// do_float: float(value), its default where that raises
		// TypeError or ValueError.
		p, err := bind(args, kw, "default")
		if err != nil {
			return nil, err
		}
		def := value(0.0)
		if len(args) > 0 || kw["default"] != nil {
			def = p[0]
		}
		switch x := plain(v).(type) {
		case float64:
			return x, nil
		case int64, bool:
			f, _ := num(x)
			return f, nil
		case bigInt:
			return bigFloat(x.v) // OverflowError, which do_float does not catch
		case str:
			f, err := pyFloatStr(x.s)
			if err != nil {
				return def, nil
			}
			return f, nil
		case undefined:
			return nil, errors.New(x.what)
		}
		return def, nil
	case "round":
		if len(args) > 0 {
			// Rounding at n digits multiplies and divides numbers of
			// about n digits.
			if n, ok := intOf(args[0]); ok {
				d := min(max(n, -n), 400) // past 400 digits it is refused or trivial
				if err := r.work(int(d + d*d/8)); err != nil {
					return nil, err
				}
			}
		}
		return roundFilter(v, args, kw)
	case "sum":
		// sync_do_sum: sum(iterable, start), of an attribute of each
		// item where one is given; Python 3.11's sum, which adds floats
		// one by one.
		p, err := bind(args, kw, "attribute", "start")
		if err != nil {
			return nil, err
		}
		items, err := attrItems(v, p[0])
		if err != nil {
			return nil, err
		}
		total := value(int64(0))
		if len(args) > 1 || kw["start"] != nil {
			total = p[1]
		}
		switch total.(type) {
		case str, markup:
			return nil, errors.New("sum() can't sum strings [use ''.join(seq) instead]")
		}
		for _, it := range items {
			if u, ok := it.(undefined); ok {
				return nil, errors.New(u.what)
			}
			if total, err = arith("+", total, it); err != nil {
				return nil, err
			}
			if err := r.work(shallow(total) + intWork(total, it)); err != nil {
				return nil, err
			}
		}
		return total, nil
	case "format":
		// do_format: soft_str(value) % (kwargs or args).
		if len(args) > 0 && kw != nil {
			return nil, errors.New("can't handle positional and keyword arguments at the same time")
		}
		operand := value(tuple(args))
		if kw != nil {
			d := NewDict()
			for k, e := range kw {
				d.set(k, e)
			}
			operand = d
		}
		if m, ok := v.(markup); ok {
			return percentFormat(m.str, operand, true)
		}
		s, err := toStr(v)
		if err != nil {
			return nil, err
		}
		return percentFormat(s, operand, false)
	case "escape", "e", "forceescape":
		// markupsafe's escape: Markup as it is (forceescape escapes its
		// text too), anything else str() escaped, as Markup.
		if len(args) > 0 || kw != nil {
			return nil, errors.New("takes no arguments")
		}
		if m, ok := v.(markup); ok {
			if name != "forceescape" {
				return m, nil
			}
			return markup{escapeHTML(m.str)}, nil
		}
		s, err := toStr(v)
		if err != nil {
			return nil, err
		}
		return markup{escapeHTML(s)}, nil
	case "wordcount":
		// do_wordcount: the matches of \\w+ (Unicode letters, digits,
		// underscore) in str(value).
		if len(args) > 0 || kw != nil {
			return nil, errors.New("takes no arguments")
		}
		s, err := toStr(v)
		if err != nil {
			return nil, err
		}
		n, in := int64(0), false
		for _, c := range s.s {
			w := c == '_' || unicode.IsLetter(c) || unicode.IsNumber(c)
			if w && !in {
				n++
			}
			in = w
		}
		return n, nil
	case "center":
		p, err := bind(args, kw, "width")
		if err != nil {
			return nil, err
		}
		if p[0] == nil {
			p[0] = int64(80)
		}
		s, err := toStr(v)
		if err != nil {
			return nil, err
		}
		out, err := moreStrMethod(s, "center", p[:1])
		if _, ok := v.(markup); ok && err == nil {
			return markup{out.(str)}, nil // Markup's center is Markup
		}
		return out, err
	case "truncate":
		return truncate(v, args, kw)
	case "groupby":
		return r.groupBy(v, args, kw)
	case "striptags", "urlencode":
		if len(args) > 0 || kw != nil {
			return nil, errors.New("takes no arguments")
		}
		var out string
		var err error
		if name == "striptags" {
			s, serr := toStr(v)
			if serr != nil {
				return nil, serr
			}
			out, err = stripTags(s.s)
		} else {
			out, err = urlencode(v)
		}
		if err != nil {
			return nil, err
		}
		if hasData(v) && out != "" {
			return str{s: out, data: []span{{0, len(out)}}}, nil
		}
		return str{s: out}, nil
	case "batch", "slice":
		out, err := batchSlice(name, v, args, kw)
		if it, ok := out.(*iterator); ok {
			// A step per list made, however short.
			if err := r.work(len(it.items) * stepBytes); err != nil {
				return nil, err
			}
		}
		return out, err
	}
	return nil, errors.New("not supported")
}

// roundFilter is do_round: Python's round(value, precision) ("common"),
// or math.ceil or math.floor of value * 10**precision over 10**precision.
func roundFilter(v value, args []value, kw map[string]value) (value, error) {
	p, err := bind(args, kw, "precision", "method")
	if err != nil {
		return nil, err
	}
	prec := value(int64(0))
	if p[0] != nil {
		prec = p[0]
	}
	method := "common"
	if p[1] != nil {
		m, ok := p[1].(str)
		if !ok {
			return nil, errors.New("method must be common, ceil or floor")
		}
		method = m.s
	}
	if method != "common" && method != "ceil" && method != "floor" {
		return nil, errors.New("method must be common, ceil or floor")
	}
	n, ok := intOf(prec)
	if !ok {
		return nil, fmt.Errorf("'%s' object cannot be interpreted as an integer", typeName(prec))
	}
	if u, ok := v.(undefined); ok {
		return nil, errors.New(u.what)
	}
	if method != "common" {
		if n > 400 || n < -400 {
			// 10**n past a float's range either way: value * 10**n or
			// its reciprocal overflow or vanish, the int made is huge.
			return nil, fmt.Errorf("round(%s) with a precision of %d is not supported", method, n)
		}
		scale, err := pyPow(int64(10), prec)
		if err != nil {
			return nil, err
		}
		x, err := arith("*", v, scale)
		if err != nil {
			return nil, err
		}
		var whole value
		switch y := x.(type) {
		case float64:
			if math.IsInf(y, 0) {
				return nil, errors.New("cannot convert float infinity to integer")
			}
			if math.IsNaN(y) {
				return nil, errors.New("cannot convert float NaN to integer")
			}
			if method == "ceil" {
				y = math.Ceil(y)
			} else {
				y = math.Floor(y)
			}
			if whole, err = intFromFloat(y); err != nil {
				return nil, err
			}
		case int64, bool, bigInt:
			whole = y
		default:
			return nil, fmt.Errorf("must be real number, not %s", typeName(x))
		}
		return arith("/", whole, scale)
	}
	switch x := v.(type) {
	case bool, int64, bigInt:
		// round(int, n): the int, or rounded half to even to a multiple of
		// 10**-n; an int either way (0 where 10**-n is past twice the
		// int, which holds at most maxStrDigits*10 digits).
		b, _ := bigOf(x)
		switch {
		case n >= 0:
			return mkInt(new(big.Int).Set(b))
		case n < -maxIntBits/3:
			return int64(0), nil
		}
		return mkInt(roundHalfEven(new(big.Rat).SetInt(b), n))
	case float64:
		// round(float, n): the float nearest the exact value rounded half
		// to even at n decimals, as CPython's double_round computes it;
		// past its NDIGITS_MAX (323) the float itself, below NDIGITS_MIN
		// (-308) a zero of its sign.
		switch {
		case math.IsInf(x, 0) || math.IsNaN(x) || x == 0 || n > 323:
			return x, nil
		case n < -308:
			return math.Copysign(0, x), nil
		}
		q := new(big.Rat).SetInt(roundHalfEven(new(big.Rat).SetFloat64(x), n))
		if n > 0 {
			q.Quo(q, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(n), nil)))
		}
		f, _ := q.Float64()
		if math.IsInf(f, 0) {
			return nil, errors.New("rounded value too large to represent")
		}
		if f == 0 {
			f = math.Copysign(0, x)
		}
		return f, nil
	}
	return nil, fmt.Errorf("type %s doesn't define __round__ method", typeName(v))
}

// roundHalfEven is x * 10**n rounded to an integer, ties to even; for
// a negative n, that integer times 10**-n (x rounded to a multiple of
// 10**-n).
func roundHalfEven(x *big.Rat, n int64) *big.Int {
	ten := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(math.Abs(float64(n)))), nil)
	y := new(big.Rat).Set(x)
	if n >= 0 {
		y.Mul(y, new(big.Rat).SetInt(ten))
	} else {
		y.Quo(y, new(big.Rat).SetInt(ten))
	}
	q, m := new(big.Int).QuoRem(y.Num(), y.Denom(), new(big.Int))
	// |m| / denom against one half: twice |m| against denom.
	twice := new(big.Int).Abs(m)
	twice.Lsh(twice, 1)
	switch c := twice.Cmp(y.Denom()); {
	case c > 0, c == 0 && q.Bit(0) == 1:
		if y.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	if n < 0 {
		q.Mul(q, ten)
	}
	return q
}

// truncate is do_truncate with the environment's default leeway (5).
func truncate(v value, args []value, kw map[string]value) (value, error) {
	p, err := bind(args, kw, "length", "killwords", "end", "leeway")
	if err != nil {
		return nil, err
	}
	length, leeway := int64(255), int64(5)
	end := str{s: "..."}
	for i, dst := range []*int64{&length, nil, nil, &leeway} {
		if dst == nil || p[i] == nil {
			continue
		}
		n, ok := intOf(p[i])
		if !ok {
			return nil, fmt.Errorf("'%s' object cannot be interpreted as an integer", typeName(p[i]))
		}
		*dst = n
	}
	if p[2] != nil {
		e, ok := p[2].(str)
		if !ok {
			return nil, fmt.Errorf("object of type '%s' has no len()", typeName(p[2]))
		}
		end = e
	}
	s, ok := plain(v).(str)
	if !ok {
		return nil, fmt.Errorf("object of type '%s' has no len()", typeName(v))
	}
	endLen := int64(utf8.RuneCountInString(end.s))
	if length < endLen {
		return nil, fmt.Errorf("expected length >= %d, got %d", endLen, length)
	}
	if leeway < 0 {
		return nil, fmt.Errorf("expected leeway >= 0, got %d", leeway)
	}
	offs := runeOffsets(s.s)
	if int64(len(offs)-1) <= length+leeway {
		return v, nil
	}
	head := s.sub(0, offs[min(length-endLen, int64(len(offs)-1))])
	if !truthy(p[1]) {
		parts, err := rsplit(head, " ", true, 1)
		if err != nil {
			return nil, err
		}
		head = parts.([]value)[0].(str)
	}
	return concatStr(head, end), nil
}

// batchSlice is do_batch (items in lists of linecount, the last filled
// with fill_with where given) or sync_do_slice (items in slices lists
// of as even a length as can be), as a generator.
func batchSlice(name string, v value, args []value, kw map[string]value) (value, error) {
	first := "linecount"
	if name == "slice" {
		first = "slices"
	}
	p, err := bind(args, kw, first, "fill_with")
	if err != nil {
		return nil, err
	}
	if p[0] == nil {
		return nil, fmt.Errorf("missing a required argument: '%s'", first)
	}
	n, ok := intOf(p[0])
	if !ok {
		return nil, fmt.Errorf("'%s' object cannot be interpreted as an integer", typeName(p[0]))
	}
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	fill, hasFill := p[1], p[1] != nil
	var out []value
	if name == "batch" {
		if n <= 0 && len(items) > 0 {
			// len(tmp) == linecount holds only before the first item
			// (linecount 0: an empty batch first), then never: one
			// batch of all.
			if n == 0 {
				out = append(out, []value{})
			}
			return &iterator{kind: "generator", items: append(out, slices.Clone(items))}, nil
		}
		for lo := 0; lo < len(items); lo += int(n) {
			b := slices.Clone(items[lo:min(lo+int(n), len(items))])
			if hasFill && int64(len(b)) < n {
				if n > maxItems {
					return nil, errors.New("list too long")
				}
				for int64(len(b)) < n {
					b = append(b, fill)
				}
			}
			out = append(out, b)
		}
		return &iterator{kind: "generator", items: out}, nil
	}
	if n == 0 {
		return nil, errors.New("integer division or modulo by zero")
	}
	if n > maxItems {
		return nil, errors.New("slice count too large")
	}
	if n < 0 {
		return &iterator{kind: "generator"}, nil // range(slices) is empty
	}
	length := int64(len(items))
	per, extra := length/n, length%n
	offset := int64(0)
	for k := range n {
		start := offset + k*per
		if k < extra {
			offset++
		}
		end := offset + (k+1)*per
		lo, hi := min(max(start, 0), length), min(max(end, 0), length)
		b := []value{}
		if lo < hi {
			b = slices.Clone(items[lo:hi])
		}
		if hasFill && k >= extra {
			b = append(b, fill)
		}
		out = append(out, b)
	}
	return &iterator{kind: "generator", items: out}, nil
}

// stripTags is markupsafe's Markup.striptags: comments, then tags
// removed (each search starting again from the text's start, as
// markupsafe's loops do), blanks collapsed to single spaces, entities
// unescaped. Of the entities html.unescape knows, those outside
// unescapeEntity's are refused rather than guessed.
func stripTags(v string) (string, error) {
	for from := 0; ; {
		start := strings.Index(v[from:], "<!--")
		if start < 0 {
			break
		}
		start += from
		end := strings.Index(v[start:], "-->")
		if end < 0 {
			break
		}
		v = v[:start] + v[start+end+3:]
		from = max(start-3, 0) // the join may make a new "<!--"
	}
	var b strings.Builder
	for {
		start := strings.IndexByte(v, '<')
		if start < 0 {
			break
		}
		end := strings.IndexByte(v[start:], '>')
		if end < 0 {
			break
		}
		b.WriteString(v[:start])
		v = v[start+end+1:]
	}
	b.WriteString(v)
	words := strings.FieldsFunc(b.String(), pyIsSpace)
	return unescapeHTML(strings.Join(words, " "))
}

// unescapeHTML is Python's html.unescape for the entities templates
// meet: &amp; &lt; &gt; &quot; &apos; &nbsp; and numeric references to
// printable code points, each with its ';'; any other entity is an
// error naming it.
func unescapeHTML(s string) (string, error) {
	if !strings.Contains(s, "&") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '&')
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		s = s[i:]
		// html.unescape's pattern: &#digits, &#xhex or a name of up to
		// 32 characters, each with an optional ';'.
		k := 1
		for k < len(s) && k <= 33 && !strings.ContainsRune("\t\n\f <&#;", rune(s[k])) {
			k++
		}
		if len(s) > 1 && s[1] == '#' {
			k = 2
			for k < len(s) && (isDigit(s[k]) || s[k]|0x20 >= 'a' && s[k]|0x20 <= 'f' || k == 2 && s[k]|0x20 == 'x') {
				k++
			}
		}
		if k == 1 || k == 2 && len(s) > 1 && s[1] == '#' {
			b.WriteByte('&') // no reference: the '&' as it is
			s = s[1:]
			continue
		}
		ref := s[:k]
		if k >= len(s) || s[k] != ';' {
			return "", fmt.Errorf("unescaping %q (without its ';') is not supported", ref)
		}
		r, ok := unescapeEntity(ref[1:])
		if !ok {
			return "", fmt.Errorf("unescaping %q is not supported", ref+";")
		}
		b.WriteString(r)
		s = s[k+1:]
	}
}

// unescapeEntity is the text of the entity name (or #number), false
// where unescapeHTML does not know it.
func unescapeEntity(name string) (string, bool) {
	switch name {
	case "amp":
		return "&", true
	case "lt":
		return "<", true
	case "gt":
		return ">", true
	case "quot":
		return `"`, true
	case "apos":
		return "'", true
	case "nbsp":
		return "\u00a0", true
	}
	if !strings.HasPrefix(name, "#") {
		return "", false
	}
	digits, base := name[1:], 10
	if digits != "" && digits[0]|0x20 == 'x' {
		digits, base = digits[1:], 16
	}
	n, err := strconv.ParseUint(digits, base, 32)
	printable := n == '\t' || n == '\n' || n == '\r' || n >= 0x20 && n < 0x7f ||
		n >= 0xa0 && n < 0xd800 || n >= 0xe000 && n < 0xfdd0 || n > 0xfdef && n <= 0x10ffff && n&0xfffe != 0xfffe
	if err != nil || !printable {
		return "", false
	}
	return string(rune(n)), true
}

// urlencode is jinja2's do_urlencode: a string (or a non-iterable)
// percent-encoded with '/' kept; a dict's items or an iterable's pairs
// as a query string (k=v joined by '&', spaces as '+').
func urlencode(v value) (string, error) {
	quote := func(x value, qs bool) (string, error) {
		s, err := toStr(x)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		for i := 0; i < len(s.s); i++ {
			c := s.s[i]
			switch {
			case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', isDigit(c), strings.IndexByte("_.-~", c) >= 0, c == '/' && !qs:
				b.WriteByte(c)
			case c == ' ' && qs:
				b.WriteByte('+')
			default:
				fmt.Fprintf(&b, "%%%02X", c)
			}
		}
		return b.String(), nil
	}
	switch x := v.(type) {
	case str, markup:
		return quote(x, false)
	case *Dict:
		var parts []string
		for i, k := range x.keys {
			ks, err := quote(k, true)
			if err != nil {
				return "", err
			}
			vs, err := quote(x.at(i), true)
			if err != nil {
				return "", err
			}
			parts = append(parts, ks+"="+vs)
		}
		return strings.Join(parts, "&"), nil
	}
	if !isIterable(v) {
		return quote(v, false)
	}
	items, err := iterate(v)
	if err != nil {
		return "", err
	}
	var parts []string
	for _, it := range items {
		pair, err := iterate(it)
		if err != nil || len(pair) != 2 {
			return "", fmt.Errorf("cannot unpack %s into a key and a value", typeName(it))
		}
		ks, err := quote(pair[0], true)
		if err != nil {
			return "", err
		}
		vs, err := quote(pair[1], true)
		if err != nil {
			return "", err
		}
		parts = append(parts, ks+"="+vs)
	}
	return strings.Join(parts, "&"), nil
}

// groupBy is sync_do_groupby: the items sorted by the attribute (lower
// case unless case_sensitive), runs of equal keys as (grouper, list)
// groupTuples, the grouper as the first item of the run has it.
func (r *renderer) groupBy(v value, args []value, kw map[string]value) (value, error) {
	p, err := bind(args, kw, "attribute", "default", "case_sensitive")
	if err != nil {
		return nil, err
	}
	if p[0] == nil {
		return nil, errors.New("missing a required argument: 'attribute'")
	}
	get, err := attrGetter(p[0], p[1])
	if err != nil {
		return nil, err
	}
	sensitive := truthy(p[2])
	key := func(item value) (value, error) {
		k, err := get(item)
		if err != nil || sensitive {
			return k, err
		}
		return ignoreCase(k), nil
	}
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	sorted, err := r.sortBy(slices.Clone(items), key, false)
	if err != nil {
		return nil, err
	}
	var out []value
	var last value
	for _, it := range sorted {
		k, err := key(it)
		if err != nil {
			return nil, err
		}
		if len(out) > 0 && equal(k, last) {
			g := out[len(out)-1].(*groupTuple)
			g.t[1] = append(g.t[1].([]value), it)
			continue
		}
		grouper := k
		if !sensitive {
			if grouper, err = get(it); err != nil {
				return nil, err
			}
		}
		out = append(out, &groupTuple{tuple{grouper, []value{it}}})
		last = k
	}
	return out, nil
}
