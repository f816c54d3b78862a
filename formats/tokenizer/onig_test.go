package tokenizer

import (
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// findAll returns the matches of re in s, leftmost first, as find_iter.
func findAll(re *onigRegex, s string) [][2]int {
	var m onigMatcher
	var out [][2]int
	for i := 0; i < len(s); {
		start, end, ok := re.find(&m, s, i)
		if !ok {
			break
		}
		out = append(out, [2]int{start, end})
		i = end
	}
	return out
}

// goSpace is Oniguruma's \s (Unicode White_Space) for Go's regexp, whose
// \s is ASCII only.
const goSpace = `\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}`

// toGo rewrites an Oniguruma pattern without lookahead for Go's regexp,
// which picks the match a backtracking matcher picks (leftmost first):
// \s as White_Space, $ at every line end.
func toGo(p string) string {
	p = strings.ReplaceAll(p, `[^\s`, `[^`+goSpace)
	p = strings.ReplaceAll(p, `\s`, `[`+goSpace+`]`)
	return "(?m)" + p
}

// TestOnigAgainstGoRegexp compares the matcher with Go's regexp on the
// published patterns (lookahead alternatives left out: Go has none) over
// random text mixing the character classes they distinguish.
func TestOnigAgainstGoRegexp(t *testing.T) {
	patterns := []string{
		`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+`,
		`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+`,
		`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+`,
		`\s+$`,
		`\s?[!-/:-~\x{FF01}-\x{FF0F}]+`,
		`[\x{4E00}-\x{9FA5}\x{0800}-\x{4E00}\x{AC00}-\x{D7FF}]+`,
		`[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_` + "`" + `{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*`,
		`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}`,
		// GPT-4o's o200k split (Phi-4-mini's tokenizer.json) without its
		// lookahead alternative.
		`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+`,
		`(?:a|ab)(?:c|bcd)(?:d*)`,
		`x{2,}|y{1,2}z|\p{Han}+|\P{L}{3}`,
		`.+`,
	}
	alphabet := []string{"a", "b", "c", "d", "x", "y", "z", "S", "T", "'", "'s", "'S", "'ſ", "'ll", "'LL", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000",
		"1", "22", "333", "٣", "Ⅻ", "é", "e\u0301", "ß", "日本", "한", "!", "?!", ".", "-", "$", "😀", "\u200d", "Ａ", "_", "/", "É", "ǅ", "ʰ"}
	r := rand.New(rand.NewPCG(7, 8))
	var texts []string
	for range 2000 {
		var b strings.Builder
		for range r.IntN(30) {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		texts = append(texts, b.String())
	}
	for _, p := range patterns {
		re, err := compileOnig(p)
		if err != nil {
			t.Fatalf("compileOnig(%q): %v", p, err)
		}
		goRE := regexp.MustCompile(toGo(p))
		for _, s := range texts {
			var want [][2]int
			for _, m := range goRE.FindAllStringIndex(s, -1) {
				want = append(want, [2]int{m[0], m[1]})
			}
			if got := findAll(re, s); !slices.Equal(got, want) {
				t.Fatalf("pattern %q on %q: got %v, Go's regexp %v", p, s, got, want)
			}
		}
	}
}

// TestOnigHand checks what Go's regexp cannot: lookahead, Oniguruma's $
// and case folding, against hand-derived matches.
func TestOnigHand(t *testing.T) {
	tests := []struct {
		pattern, text string
		want          []string
	}{
		// \s+(?!\S) leaves the last space of a run to the word after it.
		{` ?\p{L}+|\s+(?!\S)|\s+`, "a   b", []string{"a", "  ", " b"}},
		{` ?\p{L}+|\s+(?!\S)|\s+`, "a  \n", []string{"a", "  \n"}},
		{`\s+(?!\S)|\s+| ?\p{L}+`, "a   b", []string{"a", "  ", " ", "b"}},
		{`\s+(?!\S)|\s+`, "\u3000\u3000x", []string{"\u3000", "\u3000"}},
		{`a(?=b)`, "aab ab", []string{"a", "a"}},
		{`a(?!b)`, "aab ab", []string{"a"}},
		// $ before "\n" or at the end (Oniguruma's default options).
		// " \n" cannot end before a "\n"; " " before it can.
		{`\s+$`, " x \n y  ", []string{" ", "  "}},
		{`y{,2}z`, "zyzyyyz", []string{"z", "yz", "yyz"}},
		{`a$`, "a\na", []string{"a", "a"}},
		{`\Aa|a\z`, "aaa", []string{"a", "a"}},
		// (?i:...) folds with Unicode simple case folding: ſ is s, K (U+212A) is k.
		{`(?i:'s|'k)`, "'s 'S 'ſ 'k 'K 'K", []string{"'s", "'S", "'ſ", "'k", "'K", "'K"}},
		{`(?i:[^s])+`, "abSſsc", []string{"ab", "c"}},
		{`(?i:'re)`, "'RE 'Re 'rE", []string{"'RE", "'Re", "'rE"}},
		// Leftmost first: the first alternative that matches, not the longest.
		{`a|ab`, "ab", []string{"a"}},
		{`\p{N}{1,3}`, "1234567", []string{"123", "456", "7"}},
		{`\p{N}{2}`, "12345", []string{"12", "34"}},
		{`.+`, "ab\ncd", []string{"ab", "cd"}},
		{`\x41\x{1F600}\u00e9`, "A😀é", []string{"A😀é"}},
		{`[\-\]\\]+`, `a-]\b`, []string{`-]\`}},
		{`[a-]+`, "a-b", []string{"a-"}},
		{`\d+`, "a1٣x", []string{"1٣"}},
		{`\S+`, "ab c\u00a0d", []string{"ab", "c", "d"}},
		{`\p{^L}+`, "ab12c", []string{"12"}},
		// GPT-4o's o200k split (Phi-4-mini's): a word is upper-case
		// letters then lower-case ones (Lm, Lo and marks both), or upper-case
		// ones alone, each with an optional contraction; punctuation takes
		// the newlines and slashes after it; digits go by three.
		{testGPT4oPattern, "I've been 'told he's there, 'RE you sure? We'Ve a'lL",
			[]string{"I've", " been", " '", "told", " he's", " there", ",", " '", "RE", " you", " sure", "?", " We'Ve", " a'lL"}},
		{testGPT4oPattern, "HelloWorld CamelCASE HTTPServer ÉCOLE ǅemal ʰa",
			[]string{"Hello", "World", " Camel", "CASE", " HTTPServer", " ÉCOLE", " ǅemal", " ʰa"}},
		{testGPT4oPattern, "3 33 3333 1234567 x2y", []string{"3", " ", "33", " ", "333", "3", " ", "123", "456", "7", " x", "2", "y"}},
		{testGPT4oPattern, "a/b...\n//c  \n\n\t x\n", []string{"a", "/b", "...\n//", "c", "  \n\n", "\t", " x", "\n"}},
		{testGPT4oPattern, "我想在apple工作1314151天～ 😀😀!", []string{"我想在apple工作", "131", "415", "1", "天", "～", " 😀😀!"}},
	}
	for _, tc := range tests {
		re, err := compileOnig(tc.pattern)
		if err != nil {
			t.Fatalf("compileOnig(%q): %v", tc.pattern, err)
		}
		var got []string
		for _, m := range findAll(re, tc.text) {
			got = append(got, tc.text[m[0]:m[1]])
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q on %q: %q, want %q", tc.pattern, tc.text, got, tc.want)
		}
	}
}

// TestOnigRefused: syntax outside the subset is an error naming it.
func TestOnigRefused(t *testing.T) {
	for _, tc := range []struct{ pattern, want string }{
		{`(?<=a)b`, "look-behind"},
		{`(?<!a)b`, "look-behind"},
		{`a*?`, "lazy, possessive"},
		{`a++`, "lazy, possessive"},
		{`a{2}{3}`, "nested repetition"},
		{`\w+`, `escape \w`},
		{`\bx`, `escape \b`},
		{`(a)\1`, `escape \1`},
		{`[[:alpha:]]`, "nested class"},
		{`[a&&b]`, "intersection"},
		{`(?i:ss)`, "multi-character case folding"},
		{`(?i:\p{L})`, "inside (?i:...)"},
		{`(?i:é)`, "non-ASCII"},
		{`(?i:[\s])`, "inside (?i:...)"},
		{`(a*)*`, "can match the empty string"},
		{`a|`, "can match the empty string"},
		{`(?=a)`, "can match the empty string"},
		{`(?m)a`, "group"},
		{`\p{Foo}`, `property \p{Foo}`},
		{`[z-a]`, "bad range"},
		{`a{2,1}`, "malformed interval"},
		{`a{1001}`, "malformed interval"},
		{`(a`, "without )"},
		{`a)`, "unmatched )"},
		{`[a`, "without ]"},
		{`[]a]`, "leading ]"},
		{`*a`, "repeats nothing"},
		{`^a`, "^ is not supported"},
		{`{a`, "literal {"},
		{`$*`, "repeated assertion"},
		{`[\s-z]`, "range from a class escape"},
		{`\`, "trailing backslash"},
		{"\xff", "utf-8"},
	} {
		_, err := compileOnig(tc.pattern)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("compileOnig(%q) error %v, want one containing %q", tc.pattern, err, tc.want)
		}
	}
}

// TestOnigBacktrackingBounded: a pattern that backtracks exponentially in
// a plain backtracker finishes (explored states are remembered).
func TestOnigBacktrackingBounded(t *testing.T) {
	re, err := compileOnig(`(?:a|a)+b|(?:\p{L}+\p{L}+)+c|x`)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Repeat("a", 60) + "x"
	if got := findAll(re, s); !slices.Equal(got, [][2]int{{60, 61}}) {
		t.Errorf("matches %v, want [[60 61]]", got)
	}
}

// FuzzOnig checks that compiling any pattern never panics, and that the
// matches of one that compiles are non-empty, ordered and on character
// boundaries.
func FuzzOnig(f *testing.F) {
	for _, p := range []string{
		`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
		`\s+$`, `[\x{4E00}-\x{9FA5}]+`, `(?:a|ab)(?=c)`, `.{2,3}`, `[^(\s|.,!?…。，、।۔،)]+`, testGPT4oPattern,
	} {
		f.Add(p, "I'll be there 12345 times!\n\n  日本語 ok")
	}
	f.Fuzz(func(t *testing.T, pattern, text string) {
		re, err := compileOnig(pattern)
		if err != nil || !utf8.ValidString(text) {
			return
		}
		prev := 0
		for _, m := range findAll(re, text) {
			if m[0] < prev || m[1] <= m[0] || m[1] > len(text) || !utf8.ValidString(text[m[0]:m[1]]) {
				t.Fatalf("%q on %q: bad match %v", pattern, text, m)
			}
			prev = m[1]
		}
	})
}
