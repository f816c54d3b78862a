package grammar

import (
	"errors"
	"testing"
)

// TestEnumBesideType: a type beside enum or const keeps the values of that
// type (Ajv checks both).
func TestEnumBesideType(t *testing.T) {
	cases := []struct {
		name, schema, text string
		complete           bool
	}{
		{"enum beside type: the other type", `{"type": "string", "enum": ["a", 1]}`, `1`, false},
		{"enum beside type: the type", `{"type": "string", "enum": ["a", 1]}`, `"a"`, true},
		{"enum beside integer: a fraction", `{"type": "integer", "enum": [1, 1.5, 2.0, 1e2]}`, `1.5`, false},
		{"enum beside integer: 2.0", `{"type": "integer", "enum": [1, 1.5, 2.0, 1e2]}`, `2.0`, true},
		{"enum beside integer: 1e2", `{"type": "integer", "enum": [1, 1.5, 2.0, 1e2]}`, `1e2`, true},
		{"enum beside a list of types", `{"type": ["string", "null"], "enum": [null, 3]}`, `3`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, complete := matches(t, compile(t, c.schema), c.text)
			if complete != c.complete {
				t.Errorf("%s %s: complete %v, want %v", c.schema, c.text, complete, c.complete)
			}
		})
	}
}

// TestCompileRefuses: schemas whose keywords the recognizer would
// otherwise not honour.
func TestCompileRefuses(t *testing.T) {
	cases := []struct{ schema, path string }{
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
		if se.Path != c.path {
			t.Errorf("%s: error at %q (%v), want %q", c.schema, se.Path, err, c.path)
		}
	}
	for _, s := range []string{
		`{"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}`,
		`{"oneOf": [{"enum": ["a", "b"]}, {"const": "c"}, {"type": "array"}]}`,
		`{"$defs": {"v": {"oneOf": [{"type": "array", "items": {"$ref": "#/$defs/v"}}, {"type": "integer"}]}}, "$ref": "#/$defs/v"}`,
		// A discriminated union: a required tag of different values.
		`{"oneOf": [{"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}}, "required": ["kind"]}, {"type": "object", "properties": {"n": {"type": "string"}, "kind": {"enum": ["b", "c"]}}, "required": ["n", "kind"]}]}`,
	} {
		if _, err := Compile([]byte(s), newVocab(nil)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
}
