package grammar

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// maskMismatch returns a token whose presence in m's mask differs from
// its bytes' acceptance one by one (the reference), or -1, with its
// presence in the mask and in the reference.
func maskMismatch(v *Vocab, m *Matcher) (int, bool, bool) {
	mask, _ := m.Allowed()
	bad := make(chan [3]int, 1)
	var wg sync.WaitGroup
	const parts = 8
	for p := range parts {
		wg.Go(func() {
			for id := p; id < v.Size(); id += parts {
				in := mask[id>>6]>>(id&63)&1 == 1
				t := v.Text(id)
				ref := t != ""
				if ref {
					st := m.st
					for j := 0; j < len(t) && len(st) > 0; j++ {
						st = st.step(nil, t[j], nil)
					}
					ref = len(st) > 0
				}
				if in != ref {
					b := [3]int{id, 0, 0}
					if in {
						b[1] = 1
					}
					if ref {
						b[2] = 1
					}
					select {
					case bad <- b:
					default:
					}
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case b := <-bad:
		return b[0], b[1] == 1, b[2] == 1
	default:
		return -1, false, false
	}
}

// TestMaskMatchesRecognizerWalks: the mask (plain tokens of a string set
// without a walk, the rest walked, memoized) against byte-by-byte
// acceptance of every token, in the states of hand-written texts (bounded
// strings at their bounds, surrogate pairs, numbers near MaxNumber, a
// choice, strings with patterns and formats, escapes included, a Regex)
// and of random token walks over every fuzz schema.
func TestMaskMatchesRecognizerWalks(t *testing.T) {
	v, _ := openchatVocab(t)
	schemas := append(slices.Clone(fuzzSchemas),
		`{"type": "string", "maxLength": 1}`,
		`{"type": "string", "maxLength": 3}`,
		`{"type": "string", "minLength": 3, "maxLength": 4}`,
		`{"type": "object", "properties": {"s": {"type": "string", "maxLength": 2}, "t": {"type": "string"}}, "required": ["s", "t"]}`,
		`{"type": "array", "items": {"type": "number"}}`,
		`{"anyOf": [{"type": "string", "maxLength": 2}, {"type": "string", "minLength": 4}]}`,
		`{"type": "object", "additionalProperties": {"type": "string", "maxLength": 1}}`,
		// Strings whose characters an automaton takes: no plain tokens.
		`{"type": "array", "items": {"anyOf": [{"type": "string", "pattern": "^[\\u0000-\\u001f\"\\\\/é😀 a-z]{1,4}$"}, {"type": "string", "format": "ipv6"}, {"type": "string", "format": "email"}]}}`,
	)
	texts := map[string][]string{
		"choice":                                         {" yes", "\"q\" \\u00e9"},
		`{"type": "string", "maxLength": 1}`:             {`"\ud83d\ude00"`, `"é"`, `"\u00e9"`, `"a"`},
		`{"type": "string", "maxLength": 3}`:             {`"ab\ud83d\ude00"`, `"\uD83D\uDE00\uD83D\uDE00x"`, `"a\n\\"`},
		`{"type": "array", "items": {"type": "number"}}`: {"[" + strings.Repeat("1", 22) + ".5, -" + strings.Repeat("9", 19) + "e+99, 0.1E-12]"},
		schemas[len(schemas)-1]:                          {`["a\u001F\"\\", "\/é😀", "::ffff:1.2.3.4", "a.b+c@mail.example.org"]`},
		"regex":                                          {"123-ab", "12.0.0.1"},
	}
	r := rand.New(rand.NewPCG(11, 12))
	states := 0
	choices := []string{" yes", "yes", "no", "\"q\" \\u00e9", "{\"a\": 1}"}
	for _, s := range append(schemas, "choice", "regex") {
		var g *Grammar
		var err error
		switch s {
		case "choice":
			g, err = Choice(choices, v)
		case "regex":
			g, err = Regex(`\d{3}-[a-z]+|`+regexWalks[1]+`|`+regexWalks[2], v)
		default:
			g, err = Compile([]byte(s), v)
		}
		if err != nil {
			t.Fatal(err)
		}
		check := func(m *Matcher, what string) {
			states++
			if id, in, ref := maskMismatch(v, m); id >= 0 {
				t.Fatalf("%s after %s: token %d %q in the mask %v, accepted byte by byte %v", s, what, id, v.Text(id), in, ref)
			}
		}
		for _, text := range texts[s] {
			m := g.NewMatcher()
			for i := 0; i <= len(text); i++ {
				check(m, text[:i])
				if i < len(text) {
					if err := m.AcceptText(text[i : i+1]); err != nil {
						t.Fatalf("%s: %q: %v", s, text[:i+1], err)
					}
				}
			}
		}
		for walk := 0; walk < walksN; walk++ {
			m := g.NewMatcher()
			var got []string
			for step := 0; step < stepsN; step++ {
				check(m, strings.Join(got, "|"))
				mask, _ := m.Allowed()
				var allowed, special []int
				for id := 0; id < v.Size(); id++ {
					if mask[id>>6]>>(id&63)&1 == 1 {
						allowed = append(allowed, id)
						if strings.ContainsAny(v.Text(id), "\"\\}],:.eE0123456789") {
							special = append(special, id)
						}
					}
				}
				if len(allowed) == 0 {
					break
				}
				pick := allowed
				if len(special) > 0 && r.IntN(2) == 0 {
					pick = special
				}
				id := pick[r.IntN(len(pick))]
				if err := m.Accept(id); err != nil {
					t.Fatalf("%s: %v", s, err)
				}
				got = append(got, v.Text(id))
			}
		}
	}
	t.Logf("%d states compared", states)
}

// walksN and stepsN size TestMaskMatchesRecognizerWalks' token walks (a
// few seconds; raise them to hunt longer).
var walksN, stepsN = 4, 40
