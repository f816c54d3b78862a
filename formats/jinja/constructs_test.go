package jinja

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestJinja2Constructs renders the templates of
// testdata/constructs/constructs.json, each with what jinja2 3.1.6 made
// of it under transformers' settings (testdata/constructs/constructs.py:
// for … else, recursive loops, loop.changed and loop.cycle, **, %
// formatting and format specs, Markup's % and *, *args and **kwargs in
// calls), and wants jinja2's output byte for byte;
// where jinja2 raised, an *Error with a line saying what jinja2's error
// says (unless the case is marked loose); where a case names a refusal,
// an *Error saying it. Every string of the variables is Data, so the
// outputs also check that data marking never changes the text.
func TestJinja2Constructs(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "constructs", "constructs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Vars  json.RawMessage `json:"vars"`
		Cases []struct {
			Src    string  `json:"src"`
			Output *string `json:"output"`
			Error  string  `json:"error"`
			Loose  bool    `json:"loose"`
			Refuse string  `json:"refuse"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	if len(spec.Cases) == 0 {
		t.Fatal("no cases in constructs.json")
	}
	for _, c := range spec.Cases {
		d := jsonValue(t, spec.Vars, true).(*Dict)
		vars := map[string]any{}
		for i, k := range d.keys {
			vars[k.(str).s] = d.at(i)
		}
		tp, err := Parse(c.Src)
		var got string
		if err == nil {
			var b strings.Builder
			var chunks []Chunk
			chunks, err = tp.RenderWith(vars, Options{Now: goldenNow})
			for _, ch := range chunks {
				b.WriteString(ch.Text)
			}
			got = b.String()
		}
		var e *Error
		switch {
		case c.Refuse != "":
			if !errors.As(err, &e) || e.Line == 0 || !strings.Contains(e.Msg, c.Refuse) {
				t.Errorf("%s\n= %q, %v; want an *Error saying %q (jinja2: %q)", c.Src, got, err, c.Refuse, deref(c.Output))
			}
		case c.Output != nil:
			if err != nil || got != *c.Output {
				t.Errorf("%s\n got %q, %v\nwant %q", c.Src, got, err, *c.Output)
			}
		default:
			_, msg, _ := strings.Cut(c.Error, ": ")
			msg, _, _ = strings.Cut(msg, " (<template>")
			if !errors.As(err, &e) || e.Line == 0 || !c.Loose && !strings.Contains(e.Msg, msg) {
				t.Errorf("%s\n= %q, %v; want an *Error as jinja2's %q", c.Src, got, err, c.Error)
			}
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
