package calibrate

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	tests := []struct {
		name, in string
		want     []tmplPart
		err      string
	}{
		{"simple", `Q: {q}\nA: {a}`, []tmplPart{{lit: "Q: "}, {path: "q"}, {lit: "\nA: "}, {path: "a"}}, ""},
		{"optional and nested", `{meta.src?}\t{x}`, []tmplPart{{path: "meta.src", optional: true}, {lit: "\t"}, {path: "x"}}, ""},
		{"braces", `{{"k": {v}}}`, []tmplPart{{lit: `{"k": `}, {path: "v"}, {lit: "}"}}, ""},
		{"other backslash", `\d{x}\\`, []tmplPart{{lit: `\d`}, {path: "x"}, {lit: `\`}}, ""},
		{"unclosed", `{x`, nil, "unclosed {"},
		{"stray", `x} {y}`, nil, "unmatched }"},
		{"empty", `{} {y}`, nil, "bad placeholder"},
		{"no placeholder", `just text`, nil, "no {column}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTemplate(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parts = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	fields := map[string]any{
		"a.b":  "dotted name",
		"meta": map[string]any{"src": "web", "n": nil},
		"conv": []any{map[string]any{"v": "x"}, map[string]any{"v": "y"}},
		"null": nil,
	}
	tests := []struct {
		path string
		want any
		ok   bool
	}{
		{"a.b", "dotted name", true},
		{"meta.src", "web", true},
		{"meta.missing", nil, false},
		{"conv.v", []any{"x", "y"}, true},
		{"conv.list.element.v", []any{"x", "y"}, true},
		{"null.field", nil, true},
		{"nope", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			got, ok := lookup(fields, tc.path)
			if ok != tc.ok || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("lookup = %#v, %v; want %#v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
