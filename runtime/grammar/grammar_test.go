package grammar

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/internal/fixtures"
)

// person is a schema with most of what the recognizer makes: declared
// properties with required ones among optional ones, bounded strings and
// arrays, an enum of mixed texts, a list of types.
const person = `{
  "type": "object",
  "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 8},
    "nick": {"type": "string"},
    "age": {"type": "integer"},
    "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
    "kind": {"enum": ["cat", "dog", 3, 12, null]},
    "ok": {"type": "boolean"},
    "score": {"type": ["number", "null"]}
  },
  "required": ["name", "age", "tags"],
  "additionalProperties": false
}`

// tree is a recursive schema: a node with up to two children.
const tree = `{
  "$defs": {"node": {"type": "object", "properties": {
    "v": {"type": "integer"},
    "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}
  }, "required": ["v"]}},
  "$ref": "#/$defs/node"
}`

// matches runs text through g's recognizer: whether every byte is
// accepted, and whether the value is then complete.
func matches(t *testing.T, g *Grammar, text string) (ok, complete bool) {
	t.Helper()
	m := g.NewMatcher()
	if err := m.AcceptText(text); err != nil {
		return false, false
	}
	return true, m.st.accepts()
}

func compile(t *testing.T, schema string) *Grammar {
	t.Helper()
	g, err := Compile([]byte(schema), newVocab(nil))
	if err != nil {
		t.Fatalf("Compile(%s): %v", schema, err)
	}
	return g
}

// TestRecognizer checks hand-written documents: complete ones, prefixes
// (accepted, not complete) and refused ones, each refusal for a reason the
// schema gives.
func TestRecognizer(t *testing.T) {
	cases := []struct {
		name, schema, text string
		ok, complete       bool
	}{
		{"object", AnyObject, `{"a": [1, -2.5e+3, "x\u00e9\n", true, null, {}], "b": {"c": false}}`, true, true},
		{"object indented", AnyObject, " {\n  \"a\": 0,\n  \"b\": [\n    1,\n    {}\n  ]\n}", true, true},
		{"object compact spaces", AnyObject, `{"a": 0, "b": [1, 2 ], "c": { }}`, true, true},
		{"space before colon", AnyObject, `{"a" : 0}`, false, false},
		{"space before comma", AnyObject, `{"a": 0 , "b": 1}`, false, false},
		{"newline after colon", AnyObject, "{\"a\":\n0}", false, false},
		{"newline before the value", AnyObject, "\n{}", false, false},
		{"required after a space", person, `{"name": "Bo" `, false, false},
		{"object prefix", AnyObject, `{"a": [1, 2`, true, false},
		{"not an object", AnyObject, `[1]`, false, false},
		{"trailing space", AnyObject, `{} `, false, false},
		{"leading zero", AnyObject, `{"a": 01}`, false, false},
		{"bare control", AnyObject, "{\"a\": \"x\ty\"}", false, false},
		{"bad escape", AnyObject, `{"a": "\x"}`, false, false},
		{"utf-8", AnyObject, "{\"é😀\": \"日本\"}", true, true},
		{"overlong utf-8", AnyObject, "{\"a\": \"\xc0\xaf\"}", false, false},
		{"surrogate utf-8", AnyObject, "{\"a\": \"\xed\xa0\x80\"}", false, false},
		{"indent past the bound", AnyObject, "{\n" + strings.Repeat(" ", MaxIndent+1) + "}", false, false},
		{"indent at the bound", AnyObject, "{\n\n" + strings.Repeat("\t", MaxIndent) + "}", true, true},
		{"three newlines", AnyObject, "{\n\n\n}", false, false},
		{"two spaces", AnyObject, "{  }", false, false},
		{"space then newline", AnyObject, "{ \n}", false, false},
		{"tab first", AnyObject, "{\t}", false, false},
		{"carriage return", AnyObject, "{\r\n}", false, false},
		{"person", person, `{"name": "Ann", "age": 31, "tags": ["a", "b"], "kind": 12, "ok": true, "score": null}`, true, true},
		{"person minimal", person, `{"name":"Bo","age":-4,"tags":["x"]}`, true, true},
		{"person optional between", person, `{"name":"Bo","nick":"b","age":0,"tags":["x"],"score":1.5}`, true, true},
		{"person enum prefix", person, `{"name":"Bo","age":0,"tags":["x"],"kind":1`, true, false},
		{"person missing required", person, `{"name":"Bo","tags":["x"]}`, false, false},
		{"person order", person, `{"age":1,"name":"Bo","tags":["x"]}`, false, false},
		{"person early close", person, `{"name":"Bo","age":1}`, false, false},
		{"person unknown key", person, `{"name":"Bo","age":1,"tags":["x"],"zz":1}`, false, false},
		{"person empty name", person, `{"name":"","age":1,"tags":["x"]}`, false, false},
		{"person long name", person, `{"name":"123456789","age":1,"tags":["x"]}`, false, false},
		{"person name at the bound", person, `{"name":"1234567\u00e9","age":1,"tags":["x"]}`, true, true},
		{"person float age", person, `{"name":"Bo","age":1.5,"tags":["x"]}`, false, false},
		{"person no tags", person, `{"name":"Bo","age":1,"tags":[]}`, false, false},
		{"person four tags", person, `{"name":"Bo","age":1,"tags":["a","b","c","d"]}`, false, false},
		{"person enum miss", person, `{"name":"Bo","age":1,"tags":["a"],"kind":"cow"}`, false, false},
		{"person number end", person, `{"name":"Bo","age":12`, true, false},
		{"tree", tree, `{"v": 1, "kids": [{"v": 2}, {"v": 3, "kids": [{"v": 4, "kids": []}]}]}`, true, true},
		{"tree three kids", tree, `{"v": 1, "kids": [{"v": 2}, {"v": 3}, {"v": 4}]}`, false, false},
		{"number alone", `{"type": "number"}`, `-0.5E-12`, true, true},
		{"number prefix", `{"type": "number"}`, `-0.`, true, false},
		{"number too long", `{"type": "number"}`, strings.Repeat("1", MaxNumber+1), false, false},
		{"integer", `{"type": "integer"}`, `120`, true, true},
		{"anyOf", `{"anyOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}]}`, `{"a": "x"}`, true, true},
		{"anyOf other branch", `{"anyOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}]}`, `{"a": 7}`, true, true},
		{"const object", `{"const": {"b": [1, "<&>"], "a": null}}`, `{"b":[1,"<&>"],"a":null}`, true, true},
		{"map", `{"type": "object", "additionalProperties": {"type": "integer"}}`, `{"x": 1, "y": 2}`, true, true},
		{"map value", `{"type": "object", "additionalProperties": {"type": "integer"}}`, `{"x": "1"}`, false, false},
		{"closed empty", `{"type": "object", "additionalProperties": false}`, `{}`, true, true},
		{"closed empty key", `{"type": "object", "additionalProperties": false}`, `{"a": 1}`, false, false},
		{"true schema", `true`, `"s"`, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ok, complete := matches(t, compile(t, c.schema), c.text)
			if ok != c.ok || complete != c.complete {
				t.Errorf("%s: accepted %v complete %v, want %v %v", c.text, ok, complete, c.ok, c.complete)
			}
		})
	}
}

// TestDepth checks that nesting stops at MaxDepth.
func TestDepth(t *testing.T) {
	g := compile(t, `{"type": "array"}`)
	if ok, _ := matches(t, g, strings.Repeat("[", MaxDepth)); !ok {
		t.Errorf("%d arrays open: refused", MaxDepth)
	}
	if ok, _ := matches(t, g, strings.Repeat("[", MaxDepth+1)); ok {
		t.Errorf("%d arrays open: accepted", MaxDepth+1)
	}
}

// TestCompileErrors checks that what the recognizer cannot honour is
// refused, naming the keyword's path.
func TestCompileErrors(t *testing.T) {
	cases := []struct{ schema, path string }{
		// Patterns and formats the automaton cannot honour exactly.
		{`{"type": "string", "pattern": "(?=a)b"}`, "/pattern"},
		{`{"type": "string", "pattern": "(a)\\1"}`, "/pattern"},
		{`{"type": "string", "pattern": 5}`, "/pattern"},
		{`{"type": "object", "properties": {"a": {"type": "string", "pattern": "(?m)^a$"}}}`, "/properties/a/pattern"},
		{`{"type": "string", "pattern": "^(a|b)*a(a|b){16}$"}`, "/pattern"},
		{`{"type": "string", "pattern": "a^b"}`, "/pattern"},
		{`{"type": "string", "format": "date", "pattern": "^x"}`, "/pattern"},
		{`{"type": "string", "pattern": "^a{5}$", "maxLength": 3}`, "/maxLength"},
		{`{"type": "string", "format": "uuid", "minLength": 37}`, "/minLength"},
		{`{"type": "string", "pattern": "[a-z]", "maxLength": 100000}`, "/maxLength"},
		{`{"type": "string", "format": "uri"}`, "/format"},
		{`{"type": "string", "format": 1}`, "/format"},
		{`{"type": "integer", "format": "int32"}`, "/format"},
		{`{"pattern": "a"}`, "/pattern"},
		{`{"type": "integer", "minimum": 0}`, "/minimum"},
		{`{"type": "object", "properties": {"a": {"type": "number", "maximum": 1}}}`, "/properties/a/maximum"},
		{`{"type": "thing"}`, "/type"},
		{`{"type": "object", "properties": {"a": {}}, "required": ["b"]}`, "/required"},
		{`{"$ref": "#/$defs/missing"}`, "/$ref"},
		{`{"$ref": "http://example.com/s.json"}`, "/$ref"},
		{`{"allOf": [{"type": "string"}, {"type": "string"}]}`, "/allOf"},
		{`{"type": "array", "minItems": 3, "maxItems": 2}`, "/maxItems"},
		{`{"type": "string", "maxLength": -1}`, "/maxLength"},
		{`false`, "/"},
		{`{"not": {}}`, "/not"},
		{`{"type": "object", "patternProperties": {}}`, "/patternProperties"},
		{`{"type": "array", "prefixItems": []}`, "/prefixItems"},
		{`{"type": 5}`, "/type"},
		{`{"type": "object"} {}`, "/"},
		// oneOf is exactly one: alternatives that share a value make
		// texts that match two.
		{`{"oneOf": [{"type": "number"}, {"type": "integer"}]}`, "/oneOf"},
		{`{"oneOf": [{"type": "object", "properties": {"a": {"type": "string"}}}, {"type": "object", "properties": {"b": {"type": "string"}}}]}`, "/oneOf"},
		{`{"oneOf": [{"enum": ["a", "b"]}, {"const": "b"}]}`, "/oneOf"},
		// Without "type", properties take any value that is no object.
		{`{"oneOf": [{"type": "string"}, {"properties": {"a": {"type": "integer"}}}]}`, "/oneOf"},
		{`{"oneOf": [{"type": "object", "properties": {"kind": {"const": "a"}}, "required": ["kind"]}, {"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}}, "required": ["kind"]}]}`, "/oneOf"},
		{`{"oneOf": [{"type": "object", "properties": {"kind": {"const": "a"}}, "required": ["kind"]}, {"type": "object", "properties": {"kind": {"const": "b"}}}]}`, "/oneOf"},
		{`{"type": "string", "const": null}`, "/const"},
		// A reference to itself matches nothing the recognizer can make.
		{`{"$ref": "#"}`, "/$ref"},
		{`{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}`, "/$ref"},
		// $id below the root changes what "#..." means inside it.
		{`{"$defs": {"x": {"$id": "http://e/x", "type": "object"}}, "$ref": "#/$defs/x"}`, "/$defs/x/$id"},
	}
	for _, c := range cases {
		_, err := Compile([]byte(c.schema), newVocab(nil))
		var se *SchemaError
		if !errors.As(err, &se) {
			t.Errorf("%s: error %v, want a SchemaError", c.schema, err)
			continue
		}
		if se.Path != c.path && !(c.path == "/" && se.Path == "") {
			t.Errorf("%s: error at %q (%v), want %q", c.schema, se.Path, err, c.path)
		}
	}
}

// TestAnyObjectIsJSON feeds the recognizer of JSON mode random documents
// (encoding/json's, then mutated a byte at a time): every complete text it
// accepts is valid JSON, an object, and every object encoding/json writes
// is accepted.
func TestAnyObjectIsJSON(t *testing.T) {
	g := compile(t, AnyObject)
	r := rand.New(rand.NewPCG(1, 2))
	var value func(depth int) any
	value = func(depth int) any {
		switch k := r.IntN(7); {
		case k == 0 && depth < 4:
			m := map[string]any{}
			for range r.IntN(4) {
				m[string(rune('a'+r.IntN(26)))+"\"\\é"] = value(depth + 1)
			}
			return m
		case k == 1 && depth < 4:
			var l []any
			for range r.IntN(4) {
				l = append(l, value(depth+1))
			}
			return l
		case k == 2:
			return r.NormFloat64() * 1e6
		case k == 3:
			return r.IntN(2) == 0
		case k == 4:
			return nil
		}
		return string(rune(r.IntN(0x2000))) + "\n\x01"
	}
	accepted := 0
	for i := 0; i < 2000; i++ {
		m := map[string]any{"k": value(0)}
		b, err := json.MarshalIndent(m, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		if ok, complete := matches(t, g, string(b)); !ok || !complete {
			t.Fatalf("%s: accepted %v complete %v", b, ok, complete)
		}
		mut := []byte(string(b))
		const pool = "{}[],:\"\\ 0-.eEtn"
		mut[r.IntN(len(mut))] = pool[r.IntN(len(pool))]
		if ok, complete := matches(t, g, string(mut)); ok && complete {
			accepted++
			if !json.Valid(mut) {
				t.Fatalf("%s: accepted, but not valid JSON to encoding/json", mut)
			}
			if strings.TrimLeft(string(mut), " \n\t\r")[0] != '{' {
				t.Fatalf("%s: accepted, not an object", mut)
			}
		}
	}
	t.Logf("%d of 2000 mutated documents were still accepted (and valid)", accepted)
}

// openchatVocab loads the real openchat tokenizer's vocabulary.
func openchatVocab(t *testing.T) (*Vocab, *tokenizer.Tokenizer) {
	t.Helper()
	tok, err := tokenizer.Load(fixtures.Path(t, "tokenizers/openchat-3.5-1210"))
	if err != nil {
		t.Fatal(err)
	}
	v := NewVocab(tok)
	return v, tok
}

// TestMaskMatchesRecognizer checks the trie walk against the recognizer
// token by token: in states along real documents, a token is in the mask
// exactly when its bytes are accepted one by one.
func TestMaskMatchesRecognizer(t *testing.T) {
	v, _ := openchatVocab(t)
	for _, c := range []struct{ schema, text string }{
		{person, `{"name": "Annabelé", "age": 31, "tags": ["a", "b"], "kind": 12, "ok": true, "score": null}`},
		{person, "{\n  \"name\": \"x\\u00e9\\n\",\n  \"age\": -0,\n  \"tags\": [\n    \"\"\n  ],\n  \"score\": -0.0e1\n}"},
		{tree, `{"v": 1, "kids": [{"v": 2}, {"v": 3, "kids": [{"v": 4, "kids": []}]}]}`},
		{AnyObject, "{\"a\": [1, -2.5e+3, \"x\\u00e9\\n日本\"], \"b\": {\"c\": false}}"},
	} {
		g, err := Compile([]byte(c.schema), v)
		if err != nil {
			t.Fatal(err)
		}
		m := g.NewMatcher()
		for i := 0; i <= len(c.text); i++ {
			mask, _ := m.Allowed()
			for id := 0; id < v.Size(); id++ {
				in := mask[id>>6]>>(id&63)&1 == 1
				ref := v.Text(id) != ""
				if ref {
					st := m.st
					for j := 0; j < len(v.Text(id)) && len(st) > 0; j++ {
						st = st.step(nil, v.Text(id)[j], nil)
					}
					ref = len(st) > 0
				}
				if in != ref {
					t.Fatalf("%q after %q: token %d %q in the mask %v, accepted byte by byte %v", c.schema, c.text[:i], id, v.Text(id), in, ref)
				}
			}
			if i < len(c.text) {
				if err := m.AcceptText(c.text[i : i+1]); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// TestRandomWalks draws tokens of the real openchat vocabulary at random
// from the masks until a stop is allowed and taken, decodes them with the
// tokenizer, and checks that the text is valid JSON of the schema's shape.
func TestRandomWalks(t *testing.T) {
	v, tok := openchatVocab(t)
	r := rand.New(rand.NewPCG(3, 4))
	check := map[string]func(v any) string{
		AnyObject: func(v any) string {
			if _, ok := v.(map[string]any); !ok {
				return "not an object"
			}
			return ""
		},
		person: func(v any) string {
			m, ok := v.(map[string]any)
			if !ok {
				return "not an object"
			}
			name, _ := m["name"].(string)
			age, _ := m["age"].(float64)
			tags, _ := m["tags"].([]any)
			switch n := len([]rune(name)); {
			case n < 1 || n > 8:
				return "name's length"
			case age != math.Trunc(age):
				return "age not an integer"
			case len(tags) < 1 || len(tags) > 3:
				return "tags' count"
			}
			for k := range m {
				if !strings.Contains(person, `"`+k+`"`) {
					return "unknown key " + k
				}
			}
			return ""
		},
		tree: nil,
	}
	for schema, ch := range check {
		g, err := Compile([]byte(schema), v)
		if err != nil {
			t.Fatal(err)
		}
		complete := 0
		for walk := 0; walk < 20; walk++ {
			m := g.NewMatcher()
			var ids []int
			for step := 0; step < 300; step++ {
				mask, end := m.Allowed()
				var allowed, structural []int
				for id := 0; id < v.Size(); id++ {
					if mask[id>>6]>>(id&63)&1 == 1 {
						allowed = append(allowed, id)
						if strings.ContainsAny(v.Text(id), "\"}],:") {
							structural = append(structural, id)
						}
					}
				}
				if end && (len(allowed) == 0 || r.IntN(2) == 0) {
					complete++
					text, err := tok.Decode(ids)
					if err != nil {
						t.Fatal(err)
					}
					var val any
					if err := json.Unmarshal([]byte(text), &val); err != nil {
						t.Fatalf("%s: %q is not JSON: %v", schema, text, err)
					}
					if ch != nil {
						if why := ch(val); why != "" {
							t.Fatalf("%s: %q: %s", schema, text, why)
						}
					}
					break
				}
				if len(allowed) == 0 {
					t.Fatalf("%s: no token allowed after %v, and the value is not complete", schema, ids)
				}
				pick := allowed
				if len(structural) > 0 && r.IntN(3) > 0 {
					pick = structural
				}
				id := pick[r.IntN(len(pick))]
				if err := m.Accept(id); err != nil {
					t.Fatalf("%s: a token of the mask refused: %v", schema, err)
				}
				ids = append(ids, id)
			}
		}
		if complete < 5 {
			t.Errorf("%s: %d of 20 walks completed within 300 tokens", schema, complete)
		}
	}
}

// BenchmarkMask times a mask walked cold (the memo emptied) in three
// states of the person schema: before the value, inside a string (nearly
// every token allowed), after a value (',' or '}').
func BenchmarkMask(b *testing.B) {
	tok, err := tokenizer.Load(fixtures.Path(b, "tokenizers/openchat-3.5-1210"))
	if err != nil {
		b.Fatal(err)
	}
	v := NewVocab(tok)
	g, err := Compile([]byte(person), v)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, prefix string }{
		{"start", ``},
		{"string", `{"name": "Ann", "nick": "x`},
		{"after-value", `{"name": "Ann", "age": 31`},
	} {
		b.Run(c.name, func(b *testing.B) {
			m := g.NewMatcher()
			if err := m.AcceptText(c.prefix); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				clear(g.memo)
				m.Allowed()
			}
		})
	}
}

// TestChoice: a choice grammar makes exactly one of its texts, as they are:
// no whitespace, no JSON quoting, a text that is a prefix of another
// complete where it ends.
func TestChoice(t *testing.T) {
	g, err := Choice([]string{"yes", "no", "yes!", `"q"`}, newVocab(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		text         string
		ok, complete bool
	}{
		{"yes", true, true},
		{"yes!", true, true},
		{"ye", true, false},
		{"no", true, true},
		{`"q"`, true, true},
		{" yes", false, false},
		{"no ", false, false},
		{"maybe", false, false},
		{`"no"`, false, false},
	} {
		if ok, complete := matches(t, g, c.text); ok != c.ok || complete != c.complete {
			t.Errorf("%q: accepted %v complete %v, want %v %v", c.text, ok, complete, c.ok, c.complete)
		}
	}
	// A text's own whitespace, leading too, is its text: " yes" was
	// refused at its first byte (taken as whitespace before the value,
	// which a choice has none of), so that no token could start it.
	g, err = Choice([]string{" yes", "\tno", "ok"}, newVocab(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		text         string
		ok, complete bool
	}{
		{" yes", true, true},
		{"\tno", true, true},
		{"ok", true, true},
		{"  yes", false, false},
		{" ok", false, false},
		{"yes", false, false},
	} {
		if ok, complete := matches(t, g, c.text); ok != c.ok || complete != c.complete {
			t.Errorf("%q: accepted %v complete %v, want %v %v", c.text, ok, complete, c.ok, c.complete)
		}
	}
	if _, err := Choice([]string{"a", ""}, newVocab(nil)); err == nil {
		t.Error("an empty choice was taken")
	}
}
