package grammar

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestStringsAndNumbers: surrogate escapes come in pairs and count as one
// character (as Ajv counts), and a number's exponent keeps it a float64.
func TestStringsAndNumbers(t *testing.T) {
	testComplete(t, []completeCase{
		{"minLength: a surrogate pair is one character", `{"type": "string", "minLength": 2}`, `"\ud83d\ude00"`, false},
		{"minLength: a pair and one more", `{"type": "string", "minLength": 2}`, `"\ud83d\ude00x"`, true},
		{"maxLength: a surrogate pair is one character", `{"type": "string", "maxLength": 1}`, `"\uD83D\uDE00"`, true},
		{"lone high surrogate", `{"type": "string"}`, `"\ud800"`, false},
		{"high surrogate then another escape", `{"type": "string"}`, `"\ud800\u0041"`, false},
		{"lone low surrogate", `{"type": "string"}`, `"\udc00"`, false},
		{"not a surrogate", `{"type": "string"}`, `"\ud7ff\ue000\u00e9"`, true},
		{"exponent past float64", `{"type": "number"}`, `1e999`, false},
		{"exponent of two digits", `{"type": "number"}`, `-1.5E-99`, true},
	})
}

// completeCase is a text and whether the recognizer of schema takes it as
// a complete value.
type completeCase struct {
	name, schema, text string
	complete           bool
}

// testComplete runs each case's text through its schema's recognizer.
func testComplete(t *testing.T, cases []completeCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, complete := matches(t, compile(t, c.schema), c.text)
			if complete != c.complete {
				t.Errorf("%s %s: complete %v, want %v", c.schema, c.text, complete, c.complete)
			}
		})
	}
}

// TestNumberNoDeadEnd walks every number the recognizer makes (bytes of
// numbers, states deduplicated): each state is complete or has a byte to
// continue, and every complete text is a float64 to encoding/json.
func TestNumberNoDeadEnd(t *testing.T) {
	for _, schema := range []string{`{"type": "number"}`, `{"type": "integer"}`, `{"type": "array", "items": {"type": "number"}}`} {
		g := compile(t, schema)
		type item struct {
			st   state
			text string
		}
		start := g.NewMatcher().st
		prefix := ""
		if strings.Contains(schema, "array") {
			start, prefix = start.step(nil, '[', nil), "["
		}
		seen := map[string]bool{}
		queue := []item{{start, prefix}}
		for len(queue) > 0 {
			it := queue[0]
			queue = queue[1:]
			next := 0
			for _, c := range []byte("-0123456789.eE+") {
				st := it.st.step(nil, c, nil)
				if len(st) == 0 {
					continue
				}
				next++
				k := st.key()
				if seen[k] {
					continue
				}
				seen[k] = true
				queue = append(queue, item{st, it.text + string(c)})
			}
			text := it.text
			if prefix != "" {
				text += "]"
			}
			complete := it.st.accepts() || prefix != "" && len(it.st.step(nil, ']', nil)) > 0
			if !complete && next == 0 {
				t.Fatalf("%s: dead end after %q", schema, it.text)
			}
			if complete && it.text != prefix {
				var v any
				if err := json.Unmarshal([]byte(text), &v); err != nil {
					t.Fatalf("%s: %q: %v", schema, text, err)
				}
			}
		}
	}
}

// TestUnionBlowup: a schema of a few hundred bytes must not make a step
// cost seconds (the engine computes masks in its loop, every sequence of
// the batch waiting): a recursive union of itself, and nested alternatives
// that stay ambiguous.
func TestUnionBlowup(t *testing.T) {
	selfRef := `{"$defs": {"v": {"anyOf": [` + strings.Repeat(`{"$ref": "#/$defs/v"}, `, 10) + `{"type": "integer"}]}}, "$ref": "#/$defs/v"}`
	ambiguous := `{"$defs": {"v": {"anyOf": [{"type": "array", "items": {"$ref": "#/$defs/v"}}, {"type": "array", "items": {"$ref": "#/$defs/v"}, "maxItems": 9}, {"type": "integer"}]}}, "$ref": "#/$defs/v"}`
	for _, c := range []struct{ schema, text string }{
		{selfRef, "1"},
		{ambiguous, strings.Repeat("[", MaxDepth-1) + "1"},
	} {
		g := compile(t, c.schema)
		t0 := time.Now()
		m := g.NewMatcher()
		m.AcceptText(c.text)
		if d := time.Since(t0); d > time.Second {
			t.Errorf("%s: %q took %v", c.schema, c.text, d)
		}
		if len(m.st) > MaxStacks {
			t.Errorf("%s: %d stacks", c.schema, len(m.st))
		}
	}
}

// TestDepthNoDeadEnd: a container opens only where the nesting its value
// needs fits under MaxDepth: nesting as deep as the recognizer allows
// leaves a way to close (an array that needs an item of an object was a
// dead end at MaxDepth), and a schema with no value that fits is refused.
func TestDepthNoDeadEnd(t *testing.T) {
	for _, c := range []struct{ schema, deep string }{
		{`{"$defs": {"t": {"type": "object", "properties": {"c": {"type": "array", "items": {"$ref": "#/$defs/t"}, "minItems": 1}}}}, "$ref": "#/$defs/t"}`,
			strings.Repeat(`{"c":[`, 40)},
		{`{"$defs": {"t": {"type": "object", "properties": {"c": {"type": "array", "items": {"$ref": "#/$defs/t"}, "minItems": 1}}}}, "type": "object", "additionalProperties": {"$ref": "#/$defs/t"}}`,
			`{"c":` + strings.Repeat(`{"c":[`, 40)},
		{`{"type": "array", "items": {"type": "array", "items": {"type": "array", "minItems": 1, "items": {"type": "object", "properties": {"x": {"type": "array", "minItems": 1}}, "required": ["x"]}}}}`,
			`[[[{"x":` + strings.Repeat(`[`, 40)},
	} {
		schema := c.schema
		g := compile(t, schema)
		st := g.NewMatcher().st
		text := ""
		// As deep as it goes: the longest prefix of c.deep it takes.
		for i := 0; i < len(c.deep); i++ {
			next := st.step(nil, c.deep[i], nil)
			if len(next) == 0 {
				break
			}
			st, text = next, text+c.deep[i:i+1]
		}
		// Then closing, a byte at a time, preferring closers.
		for i := 0; !st.accepts(); i++ {
			took := false
			for _, c := range []byte(`}]{["c:1`) {
				if next := st.step(nil, c, nil); len(next) > 0 {
					st, text, took = next, text+string(c), true
					break
				}
			}
			if !took || i > 1000 {
				t.Fatalf("%s: dead end after %q", schema, text)
			}
		}
		if !json.Valid([]byte(text)) || strings.Count(text, "[")+strings.Count(text, "{") < MaxDepth-1 {
			t.Errorf("%s: %q", schema, text)
		}
	}
	_, err := Compile([]byte(`{"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}, "minItems": 1}}, "$ref": "#/$defs/n"}`), newVocab(nil))
	if err == nil {
		t.Error("a schema with no finite value compiled")
	}
}
