package jinja

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Python's printf-style formatting (str % args, PyUnicode_Format) and
// str.format's format specs (format(value, spec)), for the conversions
// templates use: s, r, c, d, i, u, x, X, o, e, E, f, F, g, G and %% with
// flags, width and precision; the rest is an error naming it.

// padText is s padded to width runes with fill: after it (align '<'),
// before it ('>'), or around it ('^', the extra rune after, as Python
// centres). The padding is template text, s keeps its data.
func padText(s str, width int, fill rune, align byte) str {
	n := width - utf8.RuneCountInString(s.s)
	if n <= 0 {
		return s
	}
	var b strBuf
	before := n
	switch align {
	case '<':
		before = 0
	case '^':
		before = n / 2
	}
	b.add(str{s: strings.Repeat(string(fill), before)})
	b.add(s)
	b.add(str{s: strings.Repeat(string(fill), n-before)})
	return b.str()
}

// padNum is a number's sign, prefix (0x) and digits padded to width
// runes: with fill between sign and digits for align '=', else as
// padText.
func padNum(sign, prefix, digits string, width int, fill rune, align byte) string {
	if align != '=' {
		return padText(str{s: sign + prefix + digits}, width, fill, align).s
	}
	n := width - len(sign) - len(prefix) - len(digits)
	if n <= 0 {
		return sign + prefix + digits
	}
	return sign + prefix + strings.Repeat(string(fill), n) + digits
}

// signOf is the sign a number gets: "-" when negative, else the sign
// flag's '+' or ' ', or nothing.
func signOf(neg bool, flag byte) string {
	switch {
	case neg:
		return "-"
	case flag == '+' || flag == ' ':
		return string(flag)
	}
	return ""
}

// intDigits is n's magnitude in verb's base (d, x, X, o, b), at least
// prec digits, and its prefix in the alternate form ('#'); decimal
// digits past Python's limit for an int's str() are its error.
func intDigits(n *big.Int, verb byte, prec int, alt bool) (digits, prefix string, err error) {
	base := map[byte]int{'d': 10, 'x': 16, 'X': 16, 'o': 8, 'b': 2}[verb]
	if base == 10 {
		if digits, err = intString(new(big.Int).Abs(n)); err != nil {
			return "", "", err
		}
	} else {
		digits = new(big.Int).Abs(n).Text(base)
	}
	if verb == 'X' {
		digits = strings.ToUpper(digits)
	}
	if len(digits) < prec {
		digits = strings.Repeat("0", prec-len(digits)) + digits
	}
	if alt && verb != 'd' {
		prefix = "0" + string(verb)
	}
	return digits, prefix, nil
}

// floatDigits is |f| formatted as C's printf formats it for verb (e, E,
// f, F, g, G; '%' for str.format's percentage) with precision prec (-1:
// 6), alt the '#' flag.
func floatDigits(f float64, verb byte, prec int, alt bool) string {
	f = math.Abs(f)
	upper := verb == 'E' || verb == 'F' || verb == 'G'
	if math.IsInf(f, 0) || math.IsNaN(f) {
		s := "inf"
		if math.IsNaN(f) {
			s = "nan"
		}
		if upper {
			s = strings.ToUpper(s)
		}
		if verb == '%' {
			s += "%"
		}
		return s
	}
	if prec < 0 {
		prec = 6
	}
	var s string
	switch verb {
	case 'f', 'F':
		s = strconv.FormatFloat(f, 'f', prec, 64)
	case '%':
		s = strconv.FormatFloat(f*100, 'f', prec, 64)
	case 'e', 'E':
		s = strconv.FormatFloat(f, 'e', prec, 64)
	default: // g, G: %e's exponent after rounding to prec digits picks the form
		p := max(prec, 1)
		// A float64's exact decimal expansion has at most 767
		// significant digits; past them %g only adds zeros, which it
		// strips without '#'. Making them would be work that the render's
		// steps do not count ('%.16000000g' % 1.5 is "1.5").
		q := p
		if !alt {
			q = min(p, 800)
		}
		e := strconv.FormatFloat(f, 'e', q-1, 64)
		x, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
		if x >= -4 && x < p {
			s = strconv.FormatFloat(f, 'f', q-1-x, 64)
		} else {
			s = e
		}
		if !alt {
			mant, exp, hasExp := strings.Cut(s, "e")
			if strings.Contains(mant, ".") {
				mant = strings.TrimRight(strings.TrimRight(mant, "0"), ".")
			}
			s = mant
			if hasExp {
				s += "e" + exp
			}
		}
	}
	if alt && !strings.Contains(s, ".") {
		mant, exp, hasExp := strings.Cut(s, "e")
		s = mant + "."
		if hasExp {
			s += "e" + exp
		}
	}
	if upper {
		s = strings.ToUpper(s)
	}
	if verb == '%' {
		s += "%"
	}
	return s
}

// reprText is Python's repr of v as a str, data wholly where v holds
// any.
func reprText(v value) (str, error) {
	if _, ok := v.(undefined); ok {
		return str{s: "Undefined"}, nil
	}
	var b strings.Builder
	if err := pyRepr(&b, v); err != nil {
		return str{}, err
	}
	out := str{s: b.String()}
	if hasData(v) && b.Len() > 0 {
		out.data = []span{{0, b.Len()}}
	}
	return out, nil
}

// isFormatMapping reports whether Python's % takes args as a mapping
// (PyMapping_Check, not a tuple or str): what has __getitem__.
func isFormatMapping(v value) bool {
	switch v.(type) {
	case *Dict, []value, *pyRange, undefined:
		return true
	}
	return false
}

// percentFormat is Python's s % args; esc is Markup's % (markupsafe's
// Markup.__mod__), which wraps each argument in an _MarkupEscapeHelper:
// %s and %r HTML-escape what they write (a Markup argument's %s as it
// is), %d and %f convert with Python's int() and float() (a string's
// number read), %c, %x, %X and %o fail. The result is then Markup.
func percentFormat(s str, args value, esc bool) (value, error) {
	var positional []value
	single := true
	if t, ok := args.(tuple); ok {
		positional, single = t, false
	}
	mapping := isFormatMapping(args)
	if esc && single && !mapping {
		// Markup.__mod__ makes any other single argument a 1-tuple.
		positional, single = []value{args}, false
	}
	next := 0
	nextArg := func() (value, error) {
		if single {
			if next > 0 {
				return nil, errors.New("not enough arguments for format string")
			}
			next++
			return args, nil
		}
		if next >= len(positional) {
			return nil, errors.New("not enough arguments for format string")
		}
		next++
		return positional[next-1], nil
	}
	var out strBuf
	text := s.s
	for i := 0; i < len(text); {
		j := strings.IndexByte(text[i:], '%')
		if j < 0 {
			out.add(s.sub(i, len(text)))
			break
		}
		out.add(s.sub(i, i+j))
		start := i + j
		i = start + 1
		if i >= len(text) {
			return nil, errors.New("incomplete format")
		}
		var arg value
		keyed := false
		if text[i] == '(' {
			if !mapping {
				return nil, errors.New("format requires a mapping")
			}
			depth, k := 1, i+1
			for ; k < len(text) && depth > 0; k++ {
				switch text[k] {
				case '(':
					depth++
				case ')':
					depth--
				}
			}
			if depth > 0 {
				return nil, errors.New("incomplete format key")
			}
			key := s.sub(i+1, k-1)
			i = k
			d, ok := args.(*Dict)
			if !ok {
				if u, ok := args.(undefined); ok {
					return nil, errors.New(u.what)
				}
				return nil, fmt.Errorf("%s indices must be integers or slices, not str", typeName(args))
			}
			v, ok := d.lookup(key)
			if !ok {
				var b strings.Builder
				pyStrRepr(&b, key.s)
				return nil, fmt.Errorf("KeyError: %s", b.String())
			}
			arg, keyed = v, true
		}
		var flags struct{ left, zero, alt bool }
		sign := byte(0)
	flagLoop:
		for ; i < len(text); i++ {
			switch text[i] {
			case '-':
				flags.left = true
			case '0':
				flags.zero = true
			case '#':
				flags.alt = true
			case '+':
				sign = '+'
			case ' ':
				if sign == 0 {
					sign = ' '
				}
			default:
				break flagLoop
			}
		}
		readNum := func() (int, error) {
			if i < len(text) && text[i] == '*' {
				i++
				v, err := nextArg()
				if err != nil {
					return 0, err
				}
				n, ok := v.(int64)
				if !ok {
					return 0, errors.New("* wants int")
				}
				if n < 0 {
					flags.left = true
					n = -n
				}
				if n > maxLen {
					return 0, errTooLong
				}
				return int(n), nil
			}
			k := i
			for i < len(text) && isDigit(text[i]) {
				i++
			}
			if k == i {
				return -1, nil
			}
			n, err := strconv.Atoi(text[k:i])
			if err != nil || n > maxLen {
				return 0, errTooLong
			}
			return n, nil
		}
		width, err := readNum()
		if err != nil {
			return nil, err
		}
		prec := -1
		if i < len(text) && text[i] == '.' {
			i++
			if prec, err = readNum(); err != nil {
				return nil, err
			}
			prec = max(prec, 0)
		}
		for i < len(text) && (text[i] == 'h' || text[i] == 'l' || text[i] == 'L') {
			i++
		}
		if i >= len(text) {
			return nil, errors.New("incomplete format")
		}
		verb := text[i]
		i++
		if verb == '%' {
			if i-start != 2 {
				return nil, fmt.Errorf("the conversion %s is not supported", text[start:i])
			}
			out.add(s.sub(start+1, i))
			continue
		}
		if !keyed {
			if arg, err = nextArg(); err != nil {
				return nil, err
			}
		}
		align, fill := byte('>'), ' '
		if flags.left {
			align = '<'
		}
		var piece str
		if esc {
			if arg, err = escArg(verb, arg); err != nil {
				return nil, err
			}
		}
		switch verb {
		case 's', 'r', 'c':
			switch {
			case verb == 's':
				piece, err = toStr(arg)
			case verb == 'r':
				piece, err = reprText(arg)
			default:
				piece, err = charOf(arg)
			}
			if err != nil {
				return nil, err
			}
			if _, ok := arg.(markup); esc && (verb == 'r' || !ok) {
				piece = escapeHTML(piece)
			}
			if prec >= 0 && verb != 'c' {
				piece = truncRunes(piece, prec)
			}
			piece = padText(piece, width, fill, align)
		case 'd', 'i', 'u', 'x', 'X', 'o':
			var n *big.Int
			switch x := plain(arg).(type) {
			case int64, bool, bigInt:
				n, _ = bigOf(x)
			case float64:
				if verb == 'x' || verb == 'X' || verb == 'o' {
					return nil, fmt.Errorf("%%%c format: an integer is required, not float", verb)
				}
				if math.IsInf(x, 0) {
					return nil, errors.New("cannot convert float infinity to integer")
				}
				if math.IsNaN(x) {
					return nil, errors.New("cannot convert float NaN to integer")
				}
				i, err := intFromFloat(x)
				if err != nil {
					return nil, err
				}
				n, _ = bigOf(i)
			case undefined:
				return nil, errors.New(x.what)
			default:
				what := "a real number"
				if verb == 'x' || verb == 'X' || verb == 'o' {
					what = "an integer"
				}
				return nil, fmt.Errorf("%%%c format: %s is required, not %s", verb, what, typeName(arg))
			}
			v := verb
			if v == 'i' || v == 'u' {
				v = 'd'
			}
			digits, prefix, err := intDigits(n, v, prec, flags.alt)
			if err != nil {
				return nil, err
			}
			if flags.zero && !flags.left {
				fill, align = '0', '='
			}
			piece = str{s: padNum(signOf(n.Sign() < 0, sign), prefix, digits, width, fill, align)}
		case 'e', 'E', 'f', 'F', 'g', 'G':
			f, ok := num(plain(arg))
			if b, isBig := plain(arg).(bigInt); isBig {
				if _, err := bigFloat(b.v); err != nil {
					return nil, err
				}
			}
			if !ok {
				if u, ok := arg.(undefined); ok {
					return nil, errors.New(u.what)
				}
				return nil, fmt.Errorf("must be real number, not %s", typeName(arg))
			}
			if flags.zero && !flags.left {
				fill, align = '0', '='
			}
			piece = str{s: padNum(signOf(math.Signbit(f) && !math.IsNaN(f), sign), "", floatDigits(f, verb, prec, flags.alt), width, fill, align)}
		default:
			if verb == 'a' {
				return nil, errors.New("the conversion %a is not supported")
			}
			r, _ := utf8.DecodeRuneInString(text[i-1:])
			return nil, fmt.Errorf("unsupported format character '%c' (0x%x) at index %d", r, r, utf8.RuneCountInString(text[:i-1]))
		}
		if out.len()+len(piece.s) > maxLen {
			return nil, errTooLong
		}
		out.add(wholeData(piece, s.sub(start, i)))
	}
	if !single && next < len(positional) || single && next == 0 && !mapping {
		return nil, errors.New("not all arguments converted during string formatting")
	}
	if esc {
		return markup{out.str()}, nil
	}
	return out.str(), nil
}

// escArg is what the conversion verb of Markup's % formats of arg, as
// its _MarkupEscapeHelper gives it: for d, i and u, Python's int(arg);
// for e, E, f, F, g and G, float(arg); for s and r, arg (escaped by the
// caller). The helper has no __index__, so c, x, X and o fail.
func escArg(verb byte, arg value) (value, error) {
	switch verb {
	case 'c':
		return nil, errors.New("%c requires int or char")
	case 'x', 'X', 'o':
		return nil, fmt.Errorf("%%%c format: an integer is required, not _MarkupEscapeHelper", verb)
	case 'd', 'i', 'u':
		switch x := plain(arg).(type) {
		case str:
			return pyIntStr(x.s)
		case int64, bool, bigInt, float64, undefined:
			return x, nil
		}
		return nil, fmt.Errorf("%%%c format: a real number is required, not _MarkupEscapeHelper", verb)
	case 'e', 'E', 'f', 'F', 'g', 'G':
		switch x := plain(arg).(type) {
		case str:
			return pyFloatStr(x.s)
		case int64, bool, bigInt, float64, undefined:
			return x, nil
		}
		return nil, fmt.Errorf("float() argument must be a string or a real number, not '%s'", typeName(arg))
	}
	return arg, nil
}

// pyIntStr is Python's int(s) of a string: base 10, blanks around it and
// underscores between digits taken, else Python's ValueError.
func pyIntStr(s string) (value, error) {
	t, ok := pyDigits(strings.TrimFunc(s, pyIsSpace))
	digits := strings.TrimLeft(t, "+-")
	if ok && len(t)-len(digits) <= 1 && digits != "" && strings.Trim(digits, "0123456789") == "" {
		if len(digits) > maxStrDigits {
			return nil, fmt.Errorf("Exceeds the limit (%d digits) for integer string conversion: value has %d digits; use sys.set_int_max_str_digits() to increase the limit", maxStrDigits, len(digits))
		}
		n, _ := new(big.Int).SetString(t, 10)
		return mkInt(n)
	}
	var b strings.Builder
	pyStrRepr(&b, s)
	return nil, fmt.Errorf("invalid literal for int() with base 10: %s", b.String())
}

// pyFloatStr is Python's float(s) of a string: a decimal number, inf,
// infinity or nan, blanks around it and underscores between digits
// taken, else Python's ValueError.
func pyFloatStr(s string) (value, error) {
	t, ok := pyDigits(strings.TrimFunc(s, pyIsSpace))
	body := strings.ToLower(strings.TrimLeft(t, "+-"))
	if ok && len(t)-len(body) <= 1 && body != "" {
		switch body {
		case "inf", "infinity":
			if t[0] == '-' {
				return math.Inf(-1), nil
			}
			return math.Inf(1), nil
		case "nan":
			return math.NaN(), nil
		}
		if strings.Trim(body, "0123456789.e+-") == "" {
			if f, err := strconv.ParseFloat(t, 64); err == nil || errors.Is(err, strconv.ErrRange) {
				return f, nil
			}
		}
	}
	var b strings.Builder
	pyStrRepr(&b, s)
	return nil, fmt.Errorf("could not convert string to float: %s", b.String())
}

// charOf is %c of v: the character of an int code point, or a
// one-character string.
func charOf(v value) (str, error) {
	switch x := plain(v).(type) {
	case bigInt:
		return str{}, errors.New("%c arg not in range(0x110000)")
	case int64, bool:
		n, _ := intOf(x)
		if n < 0 || n > utf8.MaxRune {
			return str{}, errors.New("%c arg not in range(0x110000)")
		}
		return str{s: string(rune(n))}, nil
	case str:
		if utf8.RuneCountInString(x.s) == 1 {
			return x, nil
		}
	}
	return str{}, errors.New("%c requires int or char")
}

// truncRunes is s's first n runes.
func truncRunes(s str, n int) str {
	for k := range s.s {
		if n == 0 {
			return s.sub(0, k)
		}
		n--
	}
	return s
}

// formatSpec is format(v, spec), Python's format specification
// mini-language ([[fill]align][sign][#][0][width][.precision][type]) for
// strings, ints (bools too) and floats; grouping, 'z', 'n' and a float's
// precision without a type are refused. An empty spec is str(v).
func formatSpec(v value, spec string) (str, error) {
	if spec == "" {
		return toStr(v)
	}
	var fill rune = ' '
	var align, sign byte
	var alt, zero bool
	width, prec := -1, -1
	rest := spec
	fillSet := false
	if r, n := utf8.DecodeRuneInString(rest); len(rest) > n && strings.IndexByte("<>=^", rest[n]) >= 0 {
		fill, align, rest, fillSet = r, rest[n], rest[n+1:], true
	} else if rest[0] == '<' || rest[0] == '>' || rest[0] == '=' || rest[0] == '^' {
		align, rest = rest[0], rest[1:]
	}
	if rest != "" && (rest[0] == '+' || rest[0] == '-' || rest[0] == ' ') {
		sign, rest = rest[0], rest[1:]
	}
	if rest != "" && rest[0] == 'z' {
		return str{}, fmt.Errorf("the format spec %q is not supported", spec)
	}
	if rest != "" && rest[0] == '#' {
		alt, rest = true, rest[1:]
	}
	if rest != "" && rest[0] == '0' {
		zero, rest = true, rest[1:]
	}
	digits := func() (int, error) {
		k := 0
		for k < len(rest) && isDigit(rest[k]) {
			k++
		}
		if k == 0 {
			return -1, nil
		}
		n, err := strconv.Atoi(rest[:k])
		rest = rest[k:]
		if err != nil || n > maxLen {
			return 0, errTooLong
		}
		return n, nil
	}
	var err error
	if width, err = digits(); err != nil {
		return str{}, err
	}
	if rest != "" && (rest[0] == ',' || rest[0] == '_') {
		return str{}, fmt.Errorf("the format spec %q is not supported", spec)
	}
	if rest != "" && rest[0] == '.' {
		rest = rest[1:]
		if prec, err = digits(); err != nil {
			return str{}, err
		}
		if prec < 0 {
			return str{}, errors.New("Format specifier missing precision")
		}
	}
	var verb byte
	if len(rest) > 1 {
		return str{}, fmt.Errorf("Invalid format specifier '%s' for object of type '%s'", spec, typeName(plain(v)))
	}
	if rest != "" {
		verb = rest[0]
	}
	if verb == 'n' {
		return str{}, fmt.Errorf("the format spec %q is not supported", spec)
	}
	// '0' without a fill makes the fill '0' whatever the alignment, and
	// a number's alignment '=' where none is given (CPython's
	// parse_internal_render_format_spec): '{:<05}' of 5 is "50000",
	// '{:05}' of 'ab' "ab000".
	if zero && !fillSet {
		fill = '0'
		if _, isStr := plain(v).(str); !isStr && align == 0 {
			align = '='
		}
	}
	switch x := plain(v).(type) {
	case str:
		if verb != 0 && verb != 's' {
			return str{}, fmt.Errorf("Unknown format code '%c' for object of type 'str'", verb)
		}
		switch {
		case sign != 0:
			return str{}, errors.New("Sign not allowed in string format specifier")
		case alt:
			return str{}, errors.New("Alternate form (#) not allowed in string format specifier")
		case align == '=':
			return str{}, errors.New("'=' alignment not allowed in string format specifier")
		}
		if align == 0 {
			align = '<'
		}
		if prec >= 0 {
			x = truncRunes(x, prec)
		}
		return padText(x, width, fill, align), nil
	case int64, bool, bigInt:
		n, _ := bigOf(x)
		if align == 0 {
			align = '>'
		}
		switch verb {
		case 0, 'd', 'x', 'X', 'o', 'b', 'c':
			if prec >= 0 {
				return str{}, errors.New("Precision not allowed in integer format specifier")
			}
			if verb == 'c' {
				if sign != 0 {
					return str{}, errors.New("Sign not allowed with integer format specifier 'c'")
				}
				if alt {
					return str{}, errors.New("Alternate form (#) not allowed with integer format specifier 'c'")
				}
				if _, ok := x.(bigInt); ok {
					return str{}, errors.New("Python int too large to convert to C long")
				}
				c, err := charOf(x)
				if err != nil {
					return str{}, err
				}
				return padText(c, width, fill, align), nil
			}
			if verb == 0 {
				verb = 'd'
			}
			d, prefix, err := intDigits(n, verb, -1, alt)
			if err != nil {
				return str{}, err
			}
			return str{s: padNum(signOf(n.Sign() < 0, sign), prefix, d, width, fill, align)}, nil
		case 'e', 'E', 'f', 'F', 'g', 'G', '%':
			f, err := bigFloat(n)
			if err != nil {
				return str{}, err
			}
			return floatSpec(f, verb, prec, alt, sign, width, fill, align), nil
		}
		return str{}, fmt.Errorf("Unknown format code '%c' for object of type '%s'", verb, typeName(x))
	case float64:
		if align == 0 {
			align = '>'
		}
		switch verb {
		case 0:
			if prec >= 0 {
				return str{}, fmt.Errorf("the format spec %q (a float's precision without a type) is not supported", spec)
			}
			digits := pyFloat(math.Abs(x))
			if mant, exp, hasExp := strings.Cut(digits, "e"); alt && hasExp && !strings.Contains(mant, ".") {
				digits = mant + ".e" + exp // '#': repr's 1e+16 as 1.e+16
			}
			return str{s: padNum(signOf(math.Signbit(x) && !math.IsNaN(x), sign), "", digits, width, fill, align)}, nil
		case 'e', 'E', 'f', 'F', 'g', 'G', '%':
			return floatSpec(x, verb, prec, alt, sign, width, fill, align), nil
		}
		return str{}, fmt.Errorf("Unknown format code '%c' for object of type 'float'", verb)
	}
	return str{}, fmt.Errorf("unsupported format string passed to %s.__format__", typeName(v))
}

// floatSpec is f formatted for a format spec's float type.
func floatSpec(f float64, verb byte, prec int, alt bool, sign byte, width int, fill rune, align byte) str {
	return str{s: padNum(signOf(math.Signbit(f) && !math.IsNaN(f), sign), "", floatDigits(f, verb, prec, alt), width, fill, align)}
}

// wholeData is piece, data wholly where the conversion spec that made it
// (its flags, width, fill) came from data: what a message's text
// writes is never template text.
func wholeData(piece, spec str) str {
	if len(spec.data) == 0 || piece.s == "" {
		return piece
	}
	return str{s: piece.s, data: []span{{0, len(piece.s)}}}
}
