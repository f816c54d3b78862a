package jinja

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRender: parsing and rendering any template, with the variables of a
// tool-calling conversation, never panics; seeded with the chat templates
// of testdata/chat, the constructs they use and the templates of
// testdata/constructs.
func FuzzRender(f *testing.F) {
	names, err := filepath.Glob(filepath.Join("testdata", "chat", "templates", "*.jinja"))
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range names {
		src, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(src))
	}
	for _, s := range []string{
		"{% macro m(a, b=1) %}{{ caller() }}{{ varargs }}{% endmacro %}{% call(x) m(1, 2, c=3) %}{{ x }}{% endcall %}",
		"{% set a, b = 'xy' %}{% set c | upper %}{{ a }}{% endset %}{% filter trim %} {{ c }} {% endfilter %}",
		"{{ {1: 2, 'a': [1, (2, 3)]}|dictsort|tojson(indent=2, sort_keys=true) }}{{ 'a{}'.format(x) }}",
		"{% set g = [1, 2]|map('string') %}{{ g|first }}{{ g|list }}{{ ('<'|safe) + '>' }}{{ 'a\nb'|indent(2) }}",
		"{{ strftime_now('%Y-%m-%d %H:%M %b %a') }}{% generation %}{{ x }}{% endgeneration %}",
		"{{ '%s|%-5d|%05.2f|%r|%#x|%(k)s|%c|%%' % (x, 1, 2.5, 'a', 255, 'b', 65) }}{{ '%(role)s' % messages[0] }}{{ 2 ** 10 ** -1 }}",
		"{{ '{:>10}|{:.2f}|{0:03d}|{:^7}|{:+e}|{:#x}|{:%}'.format(1, 2.5, 3, 'a', 4.5, 5, 0.25) }}",
		"{% for m in messages if m.role == 'x' recursive %}{{ loop.depth }}{{ loop.changed(m.role) }}{{ loop(m.tool_calls) }}{% else %}none{% endfor %}",
	} {
		f.Add(s)
	}
	// And each template of testdata/constructs (ints past int64, Markup's
	// %, *args, raw, with, the filters past the common ones …).
	cons, err := os.ReadFile(filepath.Join("testdata", "constructs", "constructs.json"))
	if err != nil {
		f.Fatal(err)
	}
	var cases struct {
		Cases []struct {
			Src string `json:"src"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(cons, &cases); err != nil {
		f.Fatal(err)
	}
	for _, c := range cases.Cases {
		f.Add(c.Src)
	}
	raw, err := os.ReadFile(filepath.Join("testdata", "chat", "conversations.json"))
	if err != nil {
		f.Fatal(err)
	}
	var spec struct {
		Vars          json.RawMessage    `json:"vars"`
		Conversations []chatConversation `json:"conversations"`
	}
	if err := json.Unmarshal(raw, &spec); err != nil {
		f.Fatal(err)
	}
	var conv chatConversation
	for _, c := range spec.Conversations {
		if c.Name == "two_calls" {
			conv = c
		}
	}
	f.Fuzz(func(t *testing.T, src string) {
		tp, err := Parse(src)
		if err != nil {
			return
		}
		tp.RenderWith(chatVars(t, spec.Vars, conv), Options{Now: goldenNow})
	})
}
