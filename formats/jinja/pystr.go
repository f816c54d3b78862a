package jinja

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Python's str methods past the common ones strMethod runs: padding
// (center, ljust, rjust, zfill), searching (find, rfind, index, rindex,
// count), the character class tests (isalpha, …), join, partition,
// removeprefix, rsplit and splitlines. Offsets are in code points, as
// Python's; what a result keeps of s keeps its data.

// runeOffsets is the byte offset of each rune of s, and len(s) last.
func runeOffsets(s string) []int {
	offs := make([]int, 0, len(s)+1)
	for i := range s {
		offs = append(offs, i)
	}
	return append(offs, len(s))
}

// sliceBounds is Python's slice of n items by start and end (nil where
// not given): negative ones from the end, both clamped to [0, n].
func sliceBounds(args []value, n int) (lo, hi int, err error) {
	lo, hi = 0, n
	for i, a := range args {
		if a == nil {
			continue
		}
		k, ok := intOf(a)
		if _, isBig := a.(bigInt); isBig {
			ok, k = true, int64(n)+1
			if a.(bigInt).v.Sign() < 0 {
				k = -int64(n) - 1
			}
		}
		if !ok {
			return 0, 0, errors.New("slice indices must be integers or None or have an __index__ method")
		}
		if k < 0 {
			k += int64(n)
		}
		k = min(max(k, 0), int64(n)+1) // start past the end is kept: find("", 9) of "ab" is -1
		if i == 0 {
			lo = int(k)
		} else {
			hi = min(int(k), n)
		}
	}
	return lo, hi, nil
}

// strArgOf is args[i] as a string, for method name.
func strArgOf(args []value, i int, name string) (str, error) {
	s, ok := args[i].(str)
	if !ok {
		if m, isMarkup := args[i].(markup); isMarkup {
			return m.str, nil
		}
		if strings.HasPrefix(name, "remove") {
			return str{}, fmt.Errorf("%s() argument must be str, not %s", name, typeName(args[i]))
		}
		return str{}, fmt.Errorf("must be str, not %s", typeName(args[i]))
	}
	return s, nil
}

// moreStrMethod runs the str method name of s that strMethod does not.
func moreStrMethod(s str, name string, args []value) (value, error) {
	argc := func(lo, hi int) error {
		if len(args) < lo || len(args) > hi {
			if lo == hi {
				return fmt.Errorf("takes exactly %d argument(s) (%d given)", lo, len(args))
			}
			return fmt.Errorf("takes %d to %d arguments (%d given)", lo, hi, len(args))
		}
		return nil
	}
	switch name {
	case "center", "ljust", "rjust":
		if err := argc(1, 2); err != nil {
			return nil, err
		}
		width, ok := intOf(args[0])
		if !ok {
			return nil, fmt.Errorf("'%s' object cannot be interpreted as an integer", typeName(args[0]))
		}
		fill := " "
		if len(args) == 2 {
			f, ok := args[1].(str)
			if !ok || utf8.RuneCountInString(f.s) != 1 {
				return nil, errors.New("The fill character must be exactly one character long")
			}
			fill = f.s
		}
		marg := int(min(width, maxLen)) - utf8.RuneCountInString(s.s)
		if marg <= 0 {
			return s, nil
		}
		if int64(len(s.s))+int64(marg)*int64(len(fill)) > maxLen {
			return nil, errTooLong
		}
		left := 0
		switch name {
		case "center":
			// CPython's pad: the odd space goes left where width is odd.
			left = marg/2 + (marg & int(width) & 1)
		case "rjust":
			left = marg
		}
		var b strBuf
		b.add(str{s: strings.Repeat(fill, left)})
		b.add(s)
		b.add(str{s: strings.Repeat(fill, marg-left)})
		return b.str(), nil
	case "zfill":
		if err := argc(1, 1); err != nil {
			return nil, err
		}
		width, ok := intOf(args[0])
		if !ok {
			return nil, fmt.Errorf("'%s' object cannot be interpreted as an integer", typeName(args[0]))
		}
		marg := int(min(width, maxLen)) - utf8.RuneCountInString(s.s)
		if marg <= 0 {
			return s, nil
		}
		sign := 0
		if s.s != "" && (s.s[0] == '+' || s.s[0] == '-') {
			sign = 1
		}
		var b strBuf
		b.add(s.sub(0, sign))
		b.add(str{s: strings.Repeat("0", marg)})
		b.add(s.sub(sign, len(s.s)))
		return b.str(), nil
	case "find", "rfind", "index", "rindex", "count":
		if err := argc(1, 3); err != nil {
			return nil, err
		}
		sub, err := strArgOf(args, 0, name)
		if err != nil {
			return nil, err
		}
		offs := runeOffsets(s.s)
		n := len(offs) - 1
		lo, hi, err := sliceBounds(args[1:], n)
		if err != nil {
			return nil, err
		}
		if lo > n || lo > hi {
			// Python: nothing found, even the empty string.
			if name == "count" {
				return int64(0), nil
			}
			if name == "index" || name == "rindex" {
				return nil, errors.New("substring not found")
			}
			return int64(-1), nil
		}
		hay := s.s[offs[lo]:offs[hi]]
		if name == "count" {
			if sub.s == "" {
				return int64(hi - lo + 1), nil
			}
			return int64(strings.Count(hay, sub.s)), nil
		}
		var at int
		if name == "find" || name == "index" {
			at = strings.Index(hay, sub.s)
		} else {
			at = strings.LastIndex(hay, sub.s)
		}
		if at < 0 {
			if name == "index" || name == "rindex" {
				return nil, errors.New("substring not found")
			}
			return int64(-1), nil
		}
		return int64(lo + utf8.RuneCountInString(hay[:at])), nil
	case "isalpha", "isalnum", "isdigit", "isdecimal", "isnumeric", "isspace", "islower", "isupper":
		if err := argc(0, 0); err != nil {
			return nil, err
		}
		return strIs(name, s.s)
	case "removeprefix", "removesuffix":
		if err := argc(1, 1); err != nil {
			return nil, err
		}
		a, err := strArgOf(args, 0, name)
		if err != nil {
			return nil, err
		}
		if name == "removeprefix" && strings.HasPrefix(s.s, a.s) {
			return s.sub(len(a.s), len(s.s)), nil
		}
		if name == "removesuffix" && strings.HasSuffix(s.s, a.s) {
			return s.sub(0, len(s.s)-len(a.s)), nil
		}
		return s, nil
	case "partition", "rpartition":
		if err := argc(1, 1); err != nil {
			return nil, err
		}
		sep, err := strArgOf(args, 0, name)
		if err != nil {
			return nil, err
		}
		if sep.s == "" {
			return nil, errors.New("empty separator")
		}
		at := strings.Index(s.s, sep.s)
		if name == "rpartition" {
			at = strings.LastIndex(s.s, sep.s)
		}
		switch {
		case at >= 0:
			return tuple{s.sub(0, at), s.sub(at, at+len(sep.s)), s.sub(at+len(sep.s), len(s.s))}, nil
		case name == "partition":
			return tuple{s, str{}, str{}}, nil
		}
		return tuple{str{}, str{}, s}, nil
	case "join":
		if err := argc(1, 1); err != nil {
			return nil, err
		}
		items, err := iterate(args[0])
		if err != nil {
			return nil, errors.New("can only join an iterable")
		}
		var b strBuf
		for i, it := range items {
			e, ok := plain(it).(str)
			if !ok {
				return nil, fmt.Errorf("sequence item %d: expected str instance, %s found", i, typeName(it))
			}
			if b.len()+len(s.s)+len(e.s) > maxLen {
				return nil, errTooLong
			}
			if i > 0 {
				b.add(s)
			}
			b.add(e)
		}
		return b.str(), nil
	case "rsplit":
		if err := argc(0, 2); err != nil {
			return nil, err
		}
		sep, set, maxsplit, err := splitArgs(args)
		if err != nil {
			return nil, err
		}
		return rsplit(s, sep, set, maxsplit)
	case "isascii":
		if err := argc(0, 0); err != nil {
			return nil, err
		}
		for i := 0; i < len(s.s); i++ {
			if s.s[i] >= 0x80 {
				return false, nil
			}
		}
		return true, nil
	case "swapcase":
		// CPython's do_swapcase: an uppercase rune lowered, a lowercase
		// one uppercased (fully: ß is SS), others as they are.
		if err := argc(0, 0); err != nil {
			return nil, err
		}
		var b strings.Builder
		for _, r := range s.s {
			switch {
			case unicode.IsUpper(r):
				b.WriteString(pyLower(string(r)))
			case unicode.IsLower(r):
				b.WriteString(pyUpper(string(r)))
			default:
				b.WriteRune(r)
			}
		}
		return s.mapped(b.String()), nil
	case "expandtabs":
		// Tabs to spaces up to the next multiple of tabsize, the column
		// counted in code points from the last \n or \r.
		if err := argc(0, 1); err != nil {
			return nil, err
		}
		size := int64(8)
		if len(args) == 1 {
			n, ok := intOf(args[0])
			if !ok {
				return nil, fmt.Errorf("'%s' object cannot be interpreted as an integer", typeName(args[0]))
			}
			size = n
		}
		var out strBuf
		col, start := int64(0), 0
		for i, r := range s.s {
			switch r {
			case '\t':
				out.add(s.sub(start, i))
				start = i + 1
				if size > 0 {
					pad := size - col%size
					if int64(out.len())+pad > maxLen {
						return nil, errTooLong
					}
					out.add(str{s: strings.Repeat(" ", int(pad))})
					col += pad
				}
			case '\n', '\r':
				col = 0
			default:
				col++
			}
		}
		out.add(s.sub(start, len(s.s)))
		return out.str(), nil
	case "splitlines":
		if err := argc(0, 1); err != nil {
			return nil, err
		}
		keep := len(args) == 1 && truthy(args[0])
		var out []value
		for i := 0; i < len(s.s); {
			j, end := i, len(s.s)
			next := end
			for j < len(s.s) {
				r, w := utf8.DecodeRuneInString(s.s[j:])
				if isLineBreak(r) {
					end, next = j, j+w
					if r == '\r' && strings.HasPrefix(s.s[j+w:], "\n") {
						next++
					}
					break
				}
				j += w
			}
			if keep {
				end = next
			}
			out = append(out, s.sub(i, end))
			i = next
		}
		return out, nil
	}
	return nil, errors.New("not supported")
}

// isLineBreak is what Python's str.splitlines splits at.
func isLineBreak(r rune) bool {
	switch r {
	case '\n', '\r', '\v', '\f', 0x1c, 0x1d, 0x1e, 0x85, 0x2028, 0x2029:
		return true
	}
	return false
}

// rsplit is Python's str.rsplit: split from the right, at most maxsplit
// times (-1: no bound), at sep where set, else at runs of whitespace.
func rsplit(s str, sep string, set bool, maxsplit int64) (value, error) {
	var out []value
	if set {
		if sep == "" {
			return nil, errors.New("empty separator")
		}
		end := len(s.s)
		for maxsplit < 0 || int64(len(out)) < maxsplit {
			i := strings.LastIndex(s.s[:end], sep)
			if i < 0 {
				break
			}
			out = append(out, s.sub(i+len(sep), end))
			end = i
		}
		out = append(out, s.sub(0, end))
	} else {
		j := len(s.s)
		for {
			for j > 0 {
				r, n := utf8.DecodeLastRuneInString(s.s[:j])
				if !pyIsSpace(r) {
					break
				}
				j -= n
			}
			if j == 0 {
				break
			}
			if maxsplit >= 0 && int64(len(out)) >= maxsplit {
				out = append(out, s.sub(0, j))
				break
			}
			i := j
			for i > 0 {
				r, n := utf8.DecodeLastRuneInString(s.s[:i])
				if pyIsSpace(r) {
					break
				}
				i -= n
			}
			out = append(out, s.sub(i, j))
			j = i
		}
	}
	for i, k := 0, len(out)-1; i < k; i, k = i+1, k-1 {
		out[i], out[k] = out[k], out[i]
	}
	return out, nil
}

// strIs is Python's str.isalpha and the other character class tests
// (false for the empty string; islower and isupper want a cased rune
// and none of the other case). Where Go's Unicode tables do not say what
// Python's numeric types do (isdigit of a rune of category No,
// isnumeric of one of Lo, which holds CJK numerals), it is an error.
func strIs(name, s string) (bool, error) {
	if s == "" {
		return false, nil
	}
	cased := false
	for _, r := range s {
		var ok bool
		switch name {
		case "isalpha":
			ok = unicode.IsLetter(r)
		case "isalnum":
			ok = unicode.IsLetter(r) || unicode.IsNumber(r)
		case "isdecimal":
			ok = unicode.Is(unicode.Nd, r)
		case "isdigit":
			if unicode.Is(unicode.No, r) {
				return false, fmt.Errorf("isdigit of %q (category No) is not supported", r)
			}
			ok = unicode.Is(unicode.Nd, r)
		case "isnumeric":
			if unicode.Is(unicode.Lo, r) {
				return false, fmt.Errorf("isnumeric of %q (category Lo) is not supported", r)
			}
			ok = unicode.IsNumber(r)
		case "isspace":
			ok = pyIsSpace(r)
		case "islower":
			if unicode.IsUpper(r) || unicode.IsTitle(r) {
				return false, nil
			}
			cased = cased || unicode.IsLower(r)
			ok = true
		case "isupper":
			if unicode.IsLower(r) || unicode.IsTitle(r) {
				return false, nil
			}
			cased = cased || unicode.IsUpper(r)
			ok = true
		}
		if !ok {
			return false, nil
		}
	}
	if name == "islower" || name == "isupper" {
		return cased, nil
	}
	return true, nil
}

// seqMethod runs a list's or tuple's method name: index, count, copy.
func seqMethod(recv value, name string, args []value) (value, error) {
	items := seq(recv).([]value)
	switch name {
	case "copy":
		if len(args) > 0 {
			return nil, errors.New("takes no arguments")
		}
		return append([]value{}, items...), nil
	case "count":
		if len(args) != 1 {
			return nil, fmt.Errorf("%s.count() takes exactly one argument (%d given)", typeName(recv), len(args))
		}
		n := int64(0)
		for _, e := range items {
			if equal(e, args[0]) {
				n++
			}
		}
		return n, nil
	case "index":
		if len(args) < 1 || len(args) > 3 {
			return nil, fmt.Errorf("index expected at least 1 argument, got %d", len(args))
		}
		lo, hi, err := sliceBounds(args[1:], len(items))
		if err != nil {
			return nil, err
		}
		for i := lo; i < min(hi, len(items)); i++ {
			if equal(items[i], args[0]) {
				return int64(i), nil
			}
		}
		if _, ok := recv.(tuple); ok {
			return nil, errors.New("tuple.index(x): x not in tuple")
		}
		var b strings.Builder
		if err := pyRepr(&b, args[0]); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s is not in list", b.String())
	}
	return nil, errors.New("not supported")
}

// markupWraps are the str methods markupsafe's Markup overrides to give
// Markup (a list or tuple of Markup for the splitting ones); the others
// it inherits give what str's give.
var markupWraps = map[string]bool{
	"capitalize": true, "title": true, "lower": true, "upper": true, "replace": true,
	"ljust": true, "rjust": true, "center": true, "lstrip": true, "rstrip": true,
	"strip": true, "expandtabs": true, "swapcase": true, "zfill": true,
	"removeprefix": true, "removesuffix": true, "partition": true, "rpartition": true,
	"split": true, "rsplit": true, "splitlines": true, "join": true,
}

// escapeArg is markupsafe's escape(v) as a str: Markup as it is,
// anything else str() HTML-escaped.
func escapeArg(v value) (value, error) {
	if m, ok := v.(markup); ok {
		return m.str, nil
	}
	s, err := toStr(v)
	if err != nil {
		return nil, err
	}
	return escapeHTML(s), nil
}

// markupMethod runs the str method name of a Markup string as
// markupsafe's Markup does: replace escapes its new text, ljust, rjust
// and center their fill, join its items; the overridden methods give
// Markup; unescape and striptags are Markup's own; format (an
// EscapeFormatter) is refused.
func markupMethod(m markup, name string, args []value) (value, error) {
	switch name {
	case "unescape", "striptags":
		if len(args) > 0 {
			return nil, errors.New("takes no arguments")
		}
		var out string
		var err error
		if name == "unescape" {
			out, err = unescapeHTML(m.s)
		} else {
			out, err = stripTags(m.s)
		}
		if err != nil {
			return nil, err
		}
		if len(m.data) > 0 && out != "" {
			return str{s: out, data: []span{{0, len(out)}}}, nil
		}
		return str{s: out}, nil
	case "format", "format_map":
		return nil, errors.New("Markup's format (escaping its arguments) is not supported")
	}
	args = slices.Clone(args)
	var err error
	switch name {
	case "replace":
		if len(args) >= 2 {
			args[1], err = escapeArg(args[1])
		}
	case "ljust", "rjust", "center":
		if len(args) >= 2 {
			args[1], err = escapeArg(args[1])
		}
	case "join":
		if len(args) == 1 {
			items, ierr := iterate(args[0])
			if ierr != nil {
				return nil, errors.New("can only join an iterable")
			}
			escaped := make([]value, len(items))
			for i, it := range items {
				if escaped[i], err = escapeArg(it); err != nil {
					return nil, err
				}
			}
			args[0] = escaped
		}
	}
	if err != nil {
		return nil, err
	}
	out, err := strMethod(m.str, name, args)
	if err != nil || !markupWraps[name] {
		return out, err
	}
	switch x := out.(type) {
	case str:
		return markup{x}, nil
	case []value:
		for i, e := range x {
			x[i] = markup{e.(str)}
		}
		return x, nil
	case tuple:
		for i, e := range x {
			x[i] = markup{e.(str)}
		}
		return x, nil
	}
	return out, nil
}
