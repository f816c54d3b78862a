package grammar

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/mail"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// refusedAt runs text through g's recognizer a byte at a time: the index
// of the first byte refused (-1: none), and whether the value is then
// complete.
func refusedAt(t *testing.T, g *Grammar, text string) (int, bool) {
	t.Helper()
	m := g.NewMatcher()
	for i := 0; i < len(text); i++ {
		if m.AcceptText(text[i:i+1]) != nil {
			return i, false
		}
	}
	return -1, m.st.accepts()
}

// TestPatternStrings: strings with a pattern, a format or both and length
// bounds, byte by byte: the decoded value goes through the automaton
// (escapes as the characters they stand for), the first byte after which
// no value can match is refused, and the closing quote comes only after a
// match.
func TestPatternStrings(t *testing.T) {
	str := func(extra string) string { return `{"type": "string", ` + extra + `}` }
	cases := []struct {
		name, schema, text string
		refused            int // -1: every byte taken
		complete           bool
	}{
		{"search", str(`"pattern": "b+c"`), `"abbcx"`, -1, true},
		{"search not found", str(`"pattern": "b+c"`), `"abx"`, 4, false},
		{"search prefix", str(`"pattern": "b+c"`), `"abb`, -1, false},
		{"anchored start", str(`"pattern": "^ab"`), `"xab"`, 1, false},
		{"anchored start then any", str(`"pattern": "^ab"`), `"abé\u0000"`, -1, true},
		{"anchored both", str(`"pattern": "^a+$"`), `"aab"`, 3, false},
		{"empty", str(`"pattern": "^$"`), `""`, -1, true},
		{"escaped newline", str(`"pattern": "^a\\nb$"`), `"a\nb"`, -1, true},
		{"newline as \\u000a", str(`"pattern": "^a\\nb$"`), `"a\u000ab"`, -1, true},
		{"newline as \\u000A", str(`"pattern": "^a\\nb$"`), `"a\u000Ab"`, -1, true},
		{"raw newline", str(`"pattern": "^a\\nb$"`), "\"a\nb\"", 2, false},
		{"another control", str(`"pattern": "^a\\nb$"`), `"a\t`, 3, false},
		{"escape of no control", str(`"pattern": "^ab$"`), `"a\u0062"`, 2, false},
		{"quote", str(`"pattern": "^\"$"`), `"\""`, -1, true},
		{"raw quote ends", str(`"pattern": "^\"$"`), `""`, 1, false},
		{"backslash", str(`"pattern": "^\\\\$"`), `"\\"`, -1, true},
		{"slash both ways", str(`"pattern": "^/+$"`), `"/\//"`, -1, true},
		{"controls: last digit", str(`"pattern": "^[\\u0000-\\u0005]$"`), `"\u0006"`, 6, false},
		{"controls: third digit", str(`"pattern": "^[\\u0000-\\u0005]$"`), `"\u001`, 5, false},
		{"controls: in range", str(`"pattern": "^[\\u0000-\\u0005]$"`), `"\u0005"`, -1, true},
		{"controls: high half", str(`"pattern": "^[\\u0010-\\u001f]$"`), `"\u001F"`, -1, true},
		{"controls: low half refused", str(`"pattern": "^[\\u0010-\\u001f]$"`), `"\u000`, 5, false},
		{"\\u beyond controls", str(`"pattern": "^\\u0000?é$"`), `"\u00e9"`, 5, false},
		{"surrogate escapes", str(`"pattern": "^😀$"`), `"\ud83d\ude00"`, 1, false},
		{"raw emoji", str(`"pattern": "^😀$"`), `"😀"`, -1, true},
		{"emoji's second byte", str(`"pattern": "^😀$"`), "\"\xf0\x9f\x98\x81\"", 4, false},
		{"greek", str(`"pattern": "^[α-ω]{2}$"`), `"αβ"`, -1, true},
		{"greek then latin", str(`"pattern": "^[α-ω]{2}$"`), `"αa"`, 3, false},
		{"case-insensitive", str(`"pattern": "(?i)^ok$"`), `"oK"`, -1, true},
		{"maxLength", str(`"pattern": "^[a-z]+$", "maxLength": 3`), `"abcd"`, 4, false},
		{"maxLength met", str(`"pattern": "^[a-z]+$", "maxLength": 3`), `"abc"`, -1, true},
		{"minLength", str(`"pattern": "^[a-z]+$", "minLength": 2`), `"a"`, 2, false},
		{"lengths count characters", str(`"pattern": "^.+$", "maxLength": 2`), `"é😀"`, -1, true},
		{"lengths count characters: past", str(`"pattern": "^.+$", "maxLength": 2`), `"é😀x`, 7, false},
		{"lengths count escapes once", str(`"pattern": "^[a-z\\n]+$", "maxLength": 2`), `"a\nb"`, 4, false},
		{"a bound forces the match", str(`"pattern": "[0-9]", "maxLength": 3`), `"abc`, 3, false},
		{"a bound forces the match: digit", str(`"pattern": "[0-9]", "maxLength": 3`), `"ab7"`, -1, true},
		{"format and pattern", str(`"format": "date", "pattern": "^2024"`), `"2025`, 4, false},
		{"date", str(`"format": "date"`), `"2024-02-29"`, -1, true},
		// ECMA-262's . and \s, as validators run a schema's pattern.
		{"dot takes no \\r", str(`"pattern": "^a.b$"`), `"a\rb"`, 3, false},
		{"dot takes no U+2028", str(`"pattern": "^a.b$"`), "\"a\u2028b\"", 4, false}, // (its UTF-8's last byte)
		{"dot takes a tab", str(`"pattern": "^a.b$"`), `"a\tb"`, -1, true},
		{"\\s takes NBSP", str(`"pattern": "^\\s$"`), "\"\u00a0\"", -1, true},
		{"\\s takes U+FEFF", str(`"pattern": "^\\s$"`), "\"\ufeff\"", -1, true},
		{"\\S takes no NBSP", str(`"pattern": "^\\S$"`), "\"\u00a0\"", 2, false},
		{"\\s in a class", str(`"pattern": "^[\\sx]$"`), "\"\u3000\"", -1, true},
		{"a dot in a class is a dot", str(`"pattern": "^[.]$"`), `"x"`, 1, false},
		{"date: not a leap year", str(`"format": "date"`), `"2023-02-29"`, 10, false},
		{"date: 1900 is no leap year", str(`"format": "date"`), `"1900-02-29"`, 10, false},
		{"date: 2000 is one", str(`"format": "date"`), `"2000-02-29"`, -1, true},
		{"date: month 13", str(`"format": "date"`), `"2023-13`, 7, false},
		{"date: April 31", str(`"format": "date"`), `"2023-04-31"`, 10, false},
		{"date: a suffix", str(`"format": "date"`), `"2023-04-30x"`, 11, false},
		{"time", str(`"format": "time"`), `"23:59:59.123+05:30"`, -1, true},
		{"time without offset", str(`"format": "time"`), `"23:59:59"`, 9, false},
		{"date-time", str(`"format": "date-time"`), `"2024-01-31T23:59:59Z"`, -1, true},
		{"date-time: leap second", str(`"format": "date-time"`), `"2024-01-31T23:59:60Z"`, 18, false},
		{"date-time: hour 24", str(`"format": "date-time"`), `"2024-01-31T24`, 13, false},
		{"ipv4", str(`"format": "ipv4"`), `"192.168.0.1"`, -1, true},
		{"ipv4: 256", str(`"format": "ipv4"`), `"256.1.1.1"`, 3, false},
		{"ipv4: leading zero", str(`"format": "ipv4"`), `"01.1.1.1"`, 2, false},
		{"ipv6", str(`"format": "ipv6"`), `"2001:db8::ff00:42:8329"`, -1, true},
		{"ipv6: IPv4 tail", str(`"format": "ipv6"`), `"::ffff:192.0.2.1"`, -1, true},
		{"ipv6: two ::", str(`"format": "ipv6"`), `"1::2::3"`, 6, false},
		{"ipv6: nine groups", str(`"format": "ipv6"`), `"1:2:3:4:5:6:7:8:9"`, 16, false},
		{"uuid", str(`"format": "uuid"`), `"123e4567-e89b-12d3-A456-426614174000"`, -1, true},
		{"uuid: short group", str(`"format": "uuid"`), `"123e456-`, 8, false},
		{"email", str(`"format": "email"`), `"first.last+tag@mail.example.org"`, -1, true},
		{"email: double dot", str(`"format": "email"`), `"a..b@x.org"`, 3, false},
		{"email: one label", str(`"format": "email"`), `"a@localhost"`, 12, false},
		{"hostname", str(`"format": "hostname"`), `"www.example-1.com"`, -1, true},
		{"hostname: hyphen first", str(`"format": "hostname"`), `"-a`, 1, false},
		{"hostname: hyphen last", str(`"format": "hostname"`), `"a-.com"`, 3, false},
		{"in an object", `{"type": "object", "properties": {"id": {"type": "string", "pattern": "^[A-Z]{2}\\d$"}}, "required": ["id"]}`, `{"id": "AB1"}`, -1, true},
		{"in an object: short", `{"type": "object", "properties": {"id": {"type": "string", "pattern": "^[A-Z]{2}\\d$"}}, "required": ["id"]}`, `{"id": "AB"}`, 10, false},
		{"union of patterns", `{"anyOf": [{"type": "string", "pattern": "^a+$"}, {"type": "string", "pattern": "^b+$"}]}`, `"aab"`, 3, false},
		{"union of patterns: either", `{"anyOf": [{"type": "string", "pattern": "^a+$"}, {"type": "string", "pattern": "^b+$"}]}`, `"bb"`, -1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			at, complete := refusedAt(t, compile(t, c.schema), c.text)
			if at != c.refused || complete != c.complete {
				t.Errorf("%s %s: refused at %d complete %v, want %d %v", c.schema, c.text, at, complete, c.refused, c.complete)
			}
		})
	}
}

// stringCheck is a string schema and an independent check of its values
// ("" for a valid one).
type stringCheck struct {
	schema string
	check  func(s string) string
}

// patternCheck checks a value against pattern with Go's regexp and its
// length (in characters) against lo and hi (-1: none).
func patternCheck(pattern string, lo, hi int) func(string) string {
	re := regexp.MustCompile(pattern)
	return func(s string) string {
		n := utf8.RuneCountInString(s)
		switch {
		case !re.MatchString(s):
			return "no match of " + pattern
		case n < lo || hi >= 0 && n > hi:
			return fmt.Sprintf("%d characters", n)
		}
		return ""
	}
}

func errCheck(err error) string {
	if err != nil {
		return err.Error()
	}
	return ""
}

var stringChecks = []stringCheck{
	{`{"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"}`, patternCheck(`^[A-Z]{2}-\d{3}$`, 0, -1)},
	{`{"type": "string", "pattern": "[aeiou]", "maxLength": 6}`, patternCheck(`[aeiou]`, 0, 6)},
	{`{"type": "string", "pattern": "\\d", "minLength": 3, "maxLength": 5}`, patternCheck(`\d`, 3, 5)},
	{`{"type": "string", "pattern": "^[\\u0000-\\u001f\"\\\\/é😀]{1,4}$"}`, patternCheck("^[\x00-\x1f\"\\\\/é😀]{1,4}$", 0, -1)},
	{`{"type": "string", "pattern": "^(?i)(yes|no)( [α-ω]+)?$"}`, patternCheck(`^(?i)(yes|no)( [α-ω]+)?$`, 0, -1)},
	{`{"type": "string", "pattern": "^[^a-z]{0,3}x$"}`, patternCheck(`^[^a-z]{0,3}x$`, 0, -1)},
	{`{"type": "string", "format": "date"}`, func(s string) string { _, err := time.Parse(time.DateOnly, s); return errCheck(err) }},
	{`{"type": "string", "format": "time"}`, func(s string) string { _, err := time.Parse("15:04:05Z07:00", s); return errCheck(err) }},
	{`{"type": "string", "format": "date-time"}`, func(s string) string { _, err := time.Parse(time.RFC3339, s); return errCheck(err) }},
	{`{"type": "string", "format": "ipv4"}`, func(s string) string {
		a, err := netip.ParseAddr(s)
		if err == nil && !a.Is4() {
			return "not IPv4"
		}
		return errCheck(err)
	}},
	{`{"type": "string", "format": "ipv6"}`, func(s string) string {
		a, err := netip.ParseAddr(s)
		if err == nil && (!a.Is6() || a.Zone() != "") {
			return "not IPv6"
		}
		return errCheck(err)
	}},
	{`{"type": "string", "format": "uuid"}`, checkUUID},
	{`{"type": "string", "format": "email"}`, func(s string) string {
		a, err := mail.ParseAddress(s)
		if err != nil {
			return err.Error()
		}
		local, domain, _ := strings.Cut(s, "@")
		if a.Address != s || a.Name != "" || len(local) > 64 || len(s) > 254 || checkHostname(domain) != "" {
			return "not a plain address"
		}
		return ""
	}},
	{`{"type": "string", "format": "hostname"}`, checkHostname},
	{`{"type": "string", "format": "date", "pattern": "-0[1-3]-", "maxLength": 10}`, func(s string) string {
		if _, err := time.Parse(time.DateOnly, s); err != nil {
			return err.Error()
		}
		return patternCheck(`-0[1-3]-`, 0, 10)(s)
	}},
}

// checkUUID checks RFC 4122's 8-4-4-4-12 hex digits.
func checkUUID(s string) string {
	if len(s) != 36 {
		return "length"
	}
	for i := 0; i < len(s); i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return "no dash at " + fmt.Sprint(i)
			}
		} else if !isHex(s[i]) {
			return "not hex at " + fmt.Sprint(i)
		}
	}
	return ""
}

// checkHostname checks RFC 1123: at most 253 characters, labels of 1 to 63
// letters, digits and hyphens, no hyphen first or last.
func checkHostname(s string) string {
	if len(s) > 253 {
		return "too long"
	}
	for _, l := range strings.Split(s, ".") {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "label " + l
		}
		for i := 0; i < len(l); i++ {
			c := l[i] | 0x20
			if !(c >= 'a' && c <= 'z' || l[i] >= '0' && l[i] <= '9' || l[i] == '-') {
				return "label " + l
			}
		}
	}
	return ""
}

// TestWalkPatterns walks random bytes the recognizer allows over arrays of
// strings with patterns and formats: no dead end, and every value of a
// complete text passes its independent check (Go's regexp, time.Parse,
// net/netip, net/mail, the RFCs' rules).
func TestWalkPatterns(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	for _, c := range stringChecks {
		schema := `{"type": "array", "items": ` + c.schema + `, "minItems": 1, "maxItems": 3}`
		g := compile(t, schema)
		complete, values := 0, map[string]bool{}
		for range 150 {
			text, ok := walkBytes(t, g, r)
			if !ok {
				continue
			}
			complete++
			var list []string
			if err := json.Unmarshal([]byte(text), &list); err != nil {
				t.Fatalf("%s: %q: %v", c.schema, text, err)
			}
			for _, s := range list {
				values[s] = true
				if why := c.check(s); why != "" {
					t.Errorf("%s: %q in %q: %s", c.schema, s, text, why)
				}
			}
		}
		if complete < 100 || len(values) < 50 {
			t.Errorf("%s: %d walks of 150 complete, %d values", c.schema, complete, len(values))
		}
	}
}

// manyStrings is an object schema of 4 objects of 50 string properties,
// the pattern of property i from pattern(i).
func manyStrings(pattern func(i int) string) string {
	var objs []string
	for o := range 4 {
		var props []string
		for i := range 50 {
			p, _ := json.Marshal(pattern(o*50 + i))
			props = append(props, fmt.Sprintf(`"p%d": {"type": "string", "pattern": %s}`, i, p))
		}
		objs = append(objs, fmt.Sprintf(`"o%d": {"type": "object", "properties": {%s}}`, o, strings.Join(props, ", ")))
	}
	return `{"type": "object", "properties": {` + strings.Join(objs, ", ") + `}}`
}

// TestPatternsCompileCost: the patterns of a schema share one bound on
// their automata's work, so that a schema of 10 KB holding 200 patterns,
// each of them cheap enough alone, costs the server no more than one
// (it took 6 s); one pattern repeated is compiled once, and costs once.
func TestPatternsCompileCost(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles 200 patterns of 1,000 states")
	}
	schema := manyStrings(func(i int) string { return fmt.Sprintf(`^[^a]{%d}$`, 800+i) })
	// The bound is on work, not time (the error below); the clock only
	// catches a refusal that came after the work it should have spared, far
	// past what a loaded CI machine's noise stretches (under 1 s idle).
	t0 := time.Now()
	_, err := Compile([]byte(schema), nil)
	if d := time.Since(t0); d > 30*time.Second {
		t.Errorf("200 patterns: %v took %v", err, d)
	}
	if err == nil || !strings.Contains(err.Error(), "too costly") {
		t.Errorf("200 patterns: error %v, want one saying they are too costly", err)
	}
	same := manyStrings(func(int) string { return `^.{0,1000}$` })
	if _, err := Compile([]byte(same), nil); err != nil {
		t.Errorf("one pattern 200 times: %v", err)
	}
}

// TestCompilerShares: the schemas a Compiler compiles share one bound on
// their patterns' work, and a pattern compiled before costs nothing.
func TestCompilerShares(t *testing.T) {
	str := func(pattern string) []byte {
		p, _ := json.Marshal(pattern)
		return []byte(`{"type": "string", "pattern": ` + string(p) + `}`)
	}
	var w budget
	if _, err := compileRegexIn(`^.{0,1000}$`, false, true, &w); err != nil {
		t.Fatal(err)
	}
	n := 2*maxWork/w.used + 1 // patterns of about its cost past the bound
	cc := new(Compiler)
	for i := range n {
		if _, err := cc.Compile(str(`^.{0,1000}$`), nil); err != nil {
			t.Fatalf("the same pattern, %d times: %v", i+1, err)
		}
	}
	var err error
	for i := 0; i < n && err == nil; i++ {
		_, err = cc.Compile(str(fmt.Sprintf(`^.{0,%d}$`, 1000-i)), nil)
	}
	if err == nil || !strings.Contains(err.Error(), "too costly") {
		t.Errorf("%d patterns of %d steps each: %v, want one too costly", n, w.used, err)
	}
	if _, err := Compile(str(`^.{0,950}$`), nil); err != nil {
		t.Errorf("another Compiler's bound: %v", err)
	}
}
