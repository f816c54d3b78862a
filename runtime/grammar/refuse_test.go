package grammar

import "testing"

// TestEnumBesideType: a type beside enum or const keeps the values of that
// type (Ajv checks both).
func TestEnumBesideType(t *testing.T) {
	testComplete(t, []completeCase{
		{"enum beside type: the other type", `{"type": "string", "enum": ["a", 1]}`, `1`, false},
		{"enum beside type: the type", `{"type": "string", "enum": ["a", 1]}`, `"a"`, true},
		{"enum beside integer: a fraction", `{"type": "integer", "enum": [1, 1.5, 2.0, 1e2]}`, `1.5`, false},
		{"enum beside integer: 2.0", `{"type": "integer", "enum": [1, 1.5, 2.0, 1e2]}`, `2.0`, true},
		{"enum beside integer: 1e2", `{"type": "integer", "enum": [1, 1.5, 2.0, 1e2]}`, `1e2`, true},
		{"enum beside a list of types", `{"type": ["string", "null"], "enum": [null, 3]}`, `3`, false},
	})
}

// TestCompileTakes: oneOf whose alternatives cannot share a value
// compiles (the schemas TestCompileErrors refuses are those that can).
func TestCompileTakes(t *testing.T) {
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
