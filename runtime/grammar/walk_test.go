package grammar

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

var fuzzSchemas = []string{
	person, tree, AnyObject,
	`{"enum": [1, 12, 1.5, -1, "a", "ab", {"x": [1]}, {"x": [1, 2]}, [1, 2], [1], null, true, 120]}`,
	`{"anyOf": [{"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}, "required": ["a"]}, {"type": "object", "properties": {"a": {"type": "number"}, "c": {"type": "boolean"}}}]}`,
	`{"type": "array", "items": {"type": "array", "items": {"type": "string", "minLength": 2, "maxLength": 3}, "minItems": 2, "maxItems": 3}, "minItems": 1, "maxItems": 2}`,
	`{"$defs": {"v": {"anyOf": [{"type": "null"}, {"type": "integer"}, {"type": "array", "items": {"$ref": "#/$defs/v"}, "maxItems": 3}, {"$ref": "#/$defs/v"}]}}, "$ref": "#/$defs/v"}`,
	`{"type": "object", "additionalProperties": {"type": ["integer", "string"], "maxLength": 2}}`,
	`{"type": ["number", "string", "array", "null"], "items": {"enum": [0, 1, 10]}, "minLength": 1}`,
	`{"type": "object", "properties": {"a": {"type": "number"}, "b": {"enum": [1, 12]}, "c": {"const": "x"}, "d": {"type": "integer"}}, "required": ["d"]}`,
	`{"type": "object", "properties": {"x": {"type": "object", "properties": {}, "additionalProperties": false}, "y": {"type": "array", "maxItems": 0}}, "required": ["x", "y"]}`,
	`{"oneOf": [{"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}}, "required": ["kind"]}, {"type": "object", "properties": {"n": {"type": "string", "maxLength": 3}, "kind": {"enum": ["b", "c"]}}, "required": ["n", "kind"]}, {"type": ["string", "null"], "maxLength": 2}]}`,
	`{"type": "string", "minLength": 2, "maxLength": 3}`,
	`{"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"}, "word": {"type": "string", "pattern": "[aeiou]", "maxLength": 6}, "note": {"type": ["string", "null"], "pattern": "^[^\\n]{0,8}(\\n|\\u00e9)?$"}, "when": {"type": "string", "format": "date-time"}}, "required": ["code", "word", "when"]}`,
}

// walk draws random bytes the recognizer allows until the value is complete.
func walkBytes(t *testing.T, g *Grammar, r *rand.Rand) (string, bool) {
	m := g.NewMatcher()
	st := m.st
	var b []byte
	for len(b) < 600 {
		var allowed, structural, closers []byte
		for c := 0; c < 256; c++ {
			if len(st.step(nil, byte(c), nil)) > 0 {
				allowed = append(allowed, byte(c))
				if strings.IndexByte("{}[],:\"", byte(c)) >= 0 {
					structural = append(structural, byte(c))
				}
				if strings.IndexByte("}]\"", byte(c)) >= 0 {
					closers = append(closers, byte(c))
				}
			}
		}
		if st.accepts() && (len(allowed) == 0 || r.IntN(4) == 0) {
			return string(b), true
		}
		if len(allowed) == 0 {
			t.Errorf("dead end after %q", b)
			return string(b), false
		}
		pick := allowed
		switch {
		case len(b) > 300 && len(closers) > 0 && r.IntN(2) == 0:
			pick = closers
		case len(structural) > 0 && r.IntN(2) == 0:
			pick = structural
		}
		c := pick[r.IntN(len(pick))]
		b = append(b, c)
		st = st.step(nil, c, nil)
	}
	return string(b), false
}

// TestWalkFuzz draws random bytes the recognizer allows over schemas of
// every kind: no state is a dead end, and every complete text is JSON that
// encoding/json decodes. With $RV_OUT set, it writes the (schema, text)
// pairs there, for Ajv (node, runtime/server/testdata/js/node_modules).
func TestWalkFuzz(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	var pairs [][2]string
	for _, s := range fuzzSchemas {
		g := compile(t, s)
		for i := 0; i < 300; i++ {
			text, ok := walkBytes(t, g, r)
			if !ok {
				continue
			}
			if !json.Valid([]byte(text)) {
				t.Errorf("%s: %q accepted, not JSON", s, text)
			}
			var v any
			if err := json.Unmarshal([]byte(text), &v); err != nil {
				t.Errorf("%s: %q: encoding/json: %v", s, text, err)
			}
			pairs = append(pairs, [2]string{s, text})
		}
	}
	if out := os.Getenv("RV_OUT"); out != "" {
		b, _ := json.Marshal(pairs)
		os.WriteFile(out, b, 0o644)
	}
	t.Logf("%d complete walks", len(pairs))
}
