package grammar

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// regexCases are patterns of every construct the compiler takes, each with
// texts to try besides the random ones.
var regexCases = []struct {
	pattern string
	texts   []string
}{
	{`abc`, []string{"abc", "xabcx", "ab", "aabc", "abd"}},
	{`^abc$`, []string{"abc", "abcd", "xabc"}},
	{`a|b|cd`, []string{"", "c", "cd", "xxb"}},
	{`^(a|bc)*$`, []string{"", "abca", "abcb", "bcbc"}},
	{`[a-z]+`, []string{"", "A", "0a0", "Z"}},
	{`^[^a-z]+$`, []string{"ABC", "aB", "é\n", ""}},
	{`^[^\n]*$`, []string{"abc", "a\nb", "\n", "é😀"}},
	{`x{2,4}`, []string{"x", "xx", "xxxxx", "yxxy"}},
	{`^x{2,4}$`, []string{"x", "xx", "xxxx", "xxxxx"}},
	{`^(ab){1,3}c?$`, []string{"ab", "ababc", "abababab", "c"}},
	{`^a{0,3}b{2,}$`, []string{"bb", "aaabbbbb", "aaaabb", "ab"}},
	{`^[α-ω]{2}$`, []string{"αβ", "αΩ", "ωω", "α"}},
	{`[\x{1F600}-\x{1F64F}]`, []string{"😀", "x😀", "🙏", "🚀"}},
	{`^[\x{7f}-\x{800}]+$`, []string{"\x7f", "\u0800", "\u0801", "é\u07ff"}},
	{`^[\x{FFFF}-\x{10000}\x{D7FF}-\x{E000}]$`, []string{"\uffff", "\U00010000", "\ud7ff", "\ue000"}},
	{`^.{3}$`, []string{"abc", "a\nc", "日本語", "ab"}},
	{`(?s)^.{2}$`, []string{"a\n", "\n\n", "a"}},
	{`^(?i)straße$`, []string{"STRASSE", "Straße", "STRAẞE", "strasse"}},
	{`(?i)k`, []string{"K", "\u212a", "x"}},
	{`^$`, []string{"", "a"}},
	{``, []string{"", "abc"}},
	{`a$|^b`, []string{"ba", "ab", "xa", "bx", "xb"}},
	{`^(foo|foobar)baz?$`, []string{"foobarba", "foobaz", "fooba", "foobarbaz"}},
	{`\d{3}-\d{4}`, []string{"555-1234", "55-1234", "x555-12345"}},
	{`^\w+@\w+\.com$`, []string{"a@b.com", "a@b.co", "a_b@c9.com"}},
	{`^[^aeiou]{2,3}$`, []string{"xyz", "xa", "xyzw"}},
	{`^\p{Greek}+$`, []string{"αβγ", "Ω", "a"}},
	{`^[\s\S]{0,3}$`, []string{"", "\n\t ", "abcd"}},
	{`colou?r`, []string{"color", "colour", "colouur"}},
	{`^-?(0|[1-9]\d*)(\.\d+)?$`, []string{"0", "-0.5", "01", "12.", "123.45"}},
	{`^\$\d+`, []string{"$5", "$", "x$5"}},
	{`^a*?b+?$`, []string{"ab", "aabbb", "ba"}},
	{`^(a|ab)(c|bcd)(d*)$`, []string{"abcd", "abcdd", "acd"}},
	{`\A[a-c]{2}\z`, []string{"ab", "abc"}},
	{`^[\x00-\x1f"\\]+$`, []string{"\x00\"\\", "\x1f", " "}},
	{`x*`, []string{"", "y"}},
	{`(?:)|a`, []string{"", "b"}},
}

// TestRegexAgainstGo: the automaton of every pattern, searched (JSON
// Schema's pattern) and matched whole (Regex), against Go's regexp on the
// hand-picked texts, random texts over the pattern's characters, texts the
// automaton makes (random walks to an accepting state) and those texts
// changed a character.
func TestRegexAgainstGo(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	extra := []rune("abcxyzAKXZ05-. @\n\t\x00\"\\éßẞΩαω日😀🙏\u212a\u07ff\u0800\uffff\U00010000")
	for _, c := range regexCases {
		alphabet := append([]rune(c.pattern), extra...)
		for _, full := range []bool{false, true} {
			re := regexp.MustCompile(c.pattern)
			if full {
				re = regexp.MustCompile(`^(?:` + c.pattern + `)$`)
			}
			d, err := compileRegex(c.pattern, full)
			if err != nil {
				t.Fatalf("%q (full %v): %v", c.pattern, full, err)
			}
			check := func(text string) {
				t.Helper()
				if got, want := d.matches(text), re.MatchString(text); got != want {
					t.Errorf("%q (full %v) on %q: automaton %v, regexp %v", c.pattern, full, text, got, want)
				}
			}
			for _, text := range c.texts {
				check(text)
			}
			for range 300 {
				n := r.IntN(8)
				var b strings.Builder
				for range n {
					b.WriteRune(alphabet[r.IntN(len(alphabet))])
				}
				check(b.String())
			}
			for range 100 {
				text := walkDFA(d, r)
				if !utf8.ValidString(text) {
					t.Fatalf("%q (full %v): the automaton made %q, not UTF-8", c.pattern, full, text)
				}
				check(text)
				rs := []rune(text)
				if len(rs) > 0 {
					i := r.IntN(len(rs))
					switch r.IntN(3) {
					case 0:
						rs = append(rs[:i], rs[i+1:]...)
					case 1:
						rs[i] = alphabet[r.IntN(len(alphabet))]
					default:
						rs = append(rs[:i], append([]rune{alphabet[r.IntN(len(alphabet))]}, rs[i:]...)...)
					}
				}
				check(string(rs))
			}
		}
	}
}

// walkDFA draws bytes d allows until it accepts (then stops one time in
// four, or where no byte may follow); past 40 bytes, only bytes that come
// nearer an accepting state.
func walkDFA(d *dfa, r *rand.Rand) string {
	dist := make([]int, d.states()) // bytes to an accepting state
	for s := range dist {
		dist[s] = -1
		if d.accept[s] {
			dist[s] = 0
		}
	}
	for changed := true; changed; {
		changed = false
		for s := range dist {
			for c := range 256 {
				if t := d.step(int32(s), byte(c)); t >= 0 && dist[t] >= 0 && (dist[s] < 0 || dist[t]+1 < dist[s]) {
					dist[s], changed = dist[t]+1, true
				}
			}
		}
	}
	var b []byte
	s := int32(0)
	for {
		var next []byte
		for c := range 256 {
			if t := d.step(s, byte(c)); t >= 0 && (len(b) < 40 || dist[t] < dist[s]) {
				next = append(next, byte(c))
			}
		}
		if d.accept[s] && (len(next) == 0 || r.IntN(4) == 0 || len(b) >= 40) {
			return string(b)
		}
		c := next[r.IntN(len(next))]
		b = append(b, c)
		s = d.step(s, c)
	}
}

// TestRegexLive: every state of every automaton reaches an accepting one
// (none is a dead end), and no transition goes to a missing state.
func TestRegexLive(t *testing.T) {
	var ds []*dfa
	for _, c := range regexCases {
		for _, full := range []bool{false, true} {
			d, err := compileRegex(c.pattern, full)
			if err != nil {
				t.Fatal(err)
			}
			ds = append(ds, d)
		}
	}
	for name := range formats {
		d, err := formatDFA(name)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	for _, d := range ds {
		for s := range d.states() {
			seen := map[int32]bool{int32(s): true}
			queue := []int32{int32(s)}
			found := false
			for i := 0; i < len(queue) && !found; i++ {
				found = d.accept[queue[i]]
				for c := range 256 {
					tt := d.step(queue[i], byte(c))
					if tt >= int32(d.states()) {
						t.Fatalf("transition to state %d of %d", tt, d.states())
					}
					if tt >= 0 && !seen[tt] {
						seen[tt] = true
						queue = append(queue, tt)
					}
				}
			}
			if !found {
				t.Fatalf("state %d reaches no accepting state", s)
			}
		}
	}
}

// TestUTF8Seqs: the byte sequences of a range of code points are the
// UTF-8 encodings of its characters, surrogates left out, each once.
func TestUTF8Seqs(t *testing.T) {
	for _, c := range [][2]rune{{0, 0x10ffff}, {0x41, 0x5a}, {0x7f, 0x80}, {0x7ff, 0x800}, {0x3b1, 0x3c9}, {0xd000, 0xe0ff}, {0xfff0, 0x10010}, {0x1f600, 0x1f64f}, {0x12345, 0x10fffe}, {0x801, 0xfffe}} {
		var seqs [][]byteRange
		utf8Seqs(c[0], c[1], func(s []byteRange) { seqs = append(seqs, s) })
		in := func(b []byte) int {
			n := 0
			for _, s := range seqs {
				if len(s) != len(b) {
					continue
				}
				ok := true
				for i, r := range s {
					ok = ok && r.lo <= b[i] && b[i] <= r.hi
				}
				if ok {
					n++
				}
			}
			return n
		}
		// Every product is of valid encodings: their count is the
		// characters', each of which is in exactly one.
		total, want := 0, 0
		for _, s := range seqs {
			p := 1
			for _, r := range s {
				p *= int(r.hi-r.lo) + 1
			}
			total += p
		}
		var buf [4]byte
		for r := rune(0); r <= 0x10ffff; r += 1 + rune(len(seqs)%3) {
			if r >= 0xd800 && r <= 0xdfff {
				continue
			}
			n := utf8.EncodeRune(buf[:], r)
			got, wantIn := in(buf[:n]), 0
			if r >= c[0] && r <= c[1] {
				wantIn = 1
			}
			if got != wantIn {
				t.Fatalf("%U-%U: %U in %d sequences, want %d", c[0], c[1], r, got, wantIn)
			}
		}
		for r := c[0]; r <= c[1]; r++ {
			if r < 0xd800 || r > 0xdfff {
				want++
			}
		}
		if total != want {
			t.Errorf("%U-%U: the sequences hold %d texts, want %d characters", c[0], c[1], total, want)
		}
	}
}

// TestRegexCompileCost: a pattern of a few hundred bytes must not make the
// server spend seconds compiling it (or refusing it): many optional copies
// of a wide class, where a byte leads every copy's state to a successor of
// its own (a subset of tens of thousands of NFA states, for each of the
// classes the other alternative cuts the bytes into).
func TestRegexCompileCost(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles patterns of the largest automata")
	}
	var cuts strings.Builder
	for c := 0; c < 0x80; c += 2 {
		fmt.Fprintf(&cuts, `\x%02x`, c)
	}
	for _, p := range []string{
		`^(?:` + strings.Repeat(`(?:[\x00-\x7f]?){1000}`, 8) + `|[` + cuts.String() + `])$`,
		`^(?:[\x{0}-\x{10FFFF}]?){1000}$`,
	} {
		for _, full := range []bool{false, true} {
			t0 := time.Now()
			_, err := compileRegex(p, full)
			if d := time.Since(t0); d > 2*time.Second {
				t.Errorf("%.40q (full %v): %v took %v", p, full, err, d)
			}
		}
	}
}

// TestRegexRefused: what the automaton cannot do exactly is an error, never
// a looser automaton.
func TestRegexRefused(t *testing.T) {
	for _, c := range []struct{ pattern, says string }{
		{`(?=a)b`, "invalid or unsupported Perl syntax"},
		{`(?<=a)b`, "error parsing regexp"},
		{`(a)\1`, "invalid escape sequence"},
		{`(?m)^a$`, "(?m)"},
		{`\bword`, "word boundaries"},
		{`[`, "missing closing ]"},
		{`^(a|b)*a(a|b){16}$`, "MaxRegexStates"},
		{`a^b`, "no text matches"},
		{`[^\x00-\x{10FFFF}]`, "no text matches"},
	} {
		_, err := compileRegex(c.pattern, true)
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%q: error %v, want one saying %q", c.pattern, err, c.says)
		}
	}
	if _, err := compileRegex(`a^b`, false); !errors.Is(err, errNoMatch) {
		t.Errorf("a^b searched: %v", err)
	}
}

// TestECMAEscapes: ECMA-262's \u escapes become RE2's \x{...}, a surrogate
// pair one character; escaped backslashes and other escapes stay.
func TestECMAEscapes(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`a\u00e9b`, `a\x{e9}b`},
		{`[\u0000-\u001F]`, `[\x{0}-\x{1f}]`},
		{`\uD83D\uDE00`, `\x{1f600}`},
		{`\ud83d`, `\x{d83d}`},
		{`\u{1F600}+`, `\x{1F600}+`},
		{`\\u0041`, `\\u0041`},
		{`\\\u0041`, `\\\x{41}`},
		{`\u12`, `\u12`},
		{`\d\.`, `\d\.`},
	} {
		if got := ecmaEscapes(c.in); got != c.want {
			t.Errorf("ecmaEscapes(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	d, err := compileRegex(`^\u00e9\uD83D\uDE00$`, false)
	if err != nil || !d.matches("é😀") || d.matches("é") {
		t.Errorf(`^\u00e9\uD83D\uDE00$: %v`, err)
	}
}

// TestRegexGrammar: Regex's output is a raw text the pattern matches
// whole: no whitespace around it, no JSON quoting, complete where a match
// ends; an empty match is complete before any byte.
func TestRegexGrammar(t *testing.T) {
	for _, c := range []struct {
		pattern, text string
		ok, complete  bool
	}{
		{`\d{3}-[a-z]+`, "123-ab", true, true},
		{`\d{3}-[a-z]+`, "123-", true, false},
		{`\d{3}-[a-z]+`, "12a", false, false},
		{`\d{3}-[a-z]+`, " 123-a", false, false},
		{`\d{3}-[a-z]+`, "123-ab ", false, false},
		{`^"q" é$`, `"q" é`, true, true},
		{`(ab)*`, "", true, true},
		{`(ab)*`, "aba", true, false},
		{`\s?yes`, " yes", true, true},
		{`\s?yes`, "\nyes", true, true},
		{`\s?yes`, "  yes", false, false},
	} {
		g, err := Regex(c.pattern, newVocab(nil))
		if err != nil {
			t.Fatalf("%q: %v", c.pattern, err)
		}
		if ok, complete := matches(t, g, c.text); ok != c.ok || complete != c.complete {
			t.Errorf("%q on %q: accepted %v complete %v, want %v %v", c.pattern, c.text, ok, complete, c.ok, c.complete)
		}
	}
	for _, p := range []string{`(?=a)`, `a{2,1}`, `\bx`, `(?m)^x`, `[^\x00-\x{10FFFF}]`} {
		_, err := Regex(p, newVocab(nil))
		var re *RegexError
		if !errors.As(err, &re) || re.Pattern != p {
			t.Errorf("%q: %v, want a RegexError naming it", p, err)
		}
	}
}

// regexWalks are the patterns TestRegexWalks and the mask tests walk.
var regexWalks = []string{
	`\d{3}-[a-z]+`,
	`(\d{1,3}\.){3}\d{1,3}|[a-z]+( [a-z]+)*`,
	`"q" [é😀\n]{1,3}|\{"a": \d\}`,
	`(?i)(yes|no|maybe)`,
	`[^\n]{2,6}\n`,
}

// TestRegexWalks draws random bytes a Regex grammar allows until it is
// complete: never a dead end, and every complete text matches the pattern
// whole (Go's regexp).
func TestRegexWalks(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	for _, p := range regexWalks {
		g, err := Regex(p, newVocab(nil))
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(`^(?:` + p + `)$`)
		complete := 0
		for range 200 {
			text, ok := walkBytes(t, g, r)
			if !ok {
				continue
			}
			complete++
			if !re.MatchString(text) {
				t.Errorf("%q: %q does not match", p, text)
			}
		}
		if complete < 150 {
			t.Errorf("%q: %d of 200 walks complete", p, complete)
		}
	}
}

// TestRegexMinimal: no two states of an automaton accept the same texts
// (the table-filling algorithm marks every pair distinguishable), so that
// states the minimization should merge do not make masks of their own.
func TestRegexMinimal(t *testing.T) {
	var ds []*dfa
	for _, c := range regexCases {
		d, err := compileRegex(c.pattern, false)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	for name := range formats {
		d, _ := formatDFA(name)
		ds = append(ds, d)
	}
	for _, d := range ds {
		n := d.states()
		apart := make([]bool, n*n)
		for p := range n {
			for q := range n {
				apart[p*n+q] = d.accept[p] != d.accept[q]
			}
		}
		for changed := true; changed; {
			changed = false
			for p := range n {
				for q := range n {
					if apart[p*n+q] {
						continue
					}
					for c := range d.nclass {
						x, y := d.next[p*d.nclass+c], d.next[q*d.nclass+c]
						if (x < 0) != (y < 0) || x >= 0 && apart[int(x)*n+int(y)] {
							apart[p*n+q], changed = true, true
							break
						}
					}
				}
			}
		}
		for p := range n {
			for q := range p {
				if !apart[p*n+q] {
					t.Fatalf("states %d and %d of %d accept the same texts", q, p, n)
				}
			}
		}
	}
}

// TestRegexSpan: the fewest and most characters of the texts an automaton
// accepts, worked out by hand from the patterns (the formats' too).
func TestRegexSpan(t *testing.T) {
	for _, c := range []struct {
		pattern      string
		fewest, most int
	}{
		{`[a-z]{2,5}`, 2, 5},
		{`é{3}|x`, 1, 3},
		{`a+`, 1, -1},
		{`(ab)?`, 0, 2},
		{`😀\n?`, 1, 2},
		{formats["date"], 10, 10},
		{formats["uuid"], 36, 36},
		{formats["ipv4"], 7, 15},
		{formats["ipv6"], 2, 45},
		{formats["hostname"], 1, 8*30 + 7},
		{formats["email"], 5, 63 + 1 + 4*30 + 3},
		{formats["date-time"], 20, -1},
	} {
		d, err := compileRegex(c.pattern, true)
		if err != nil {
			t.Fatal(err)
		}
		if fewest, most := d.span(); fewest != c.fewest || most != c.most {
			t.Errorf("%.40q: span %d %d, want %d %d", c.pattern, fewest, most, c.fewest, c.most)
		}
	}
}
