package jinja

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestUnsupported: constructs outside the subset are errors naming the
// construct and its line and column, never a render.
func TestUnsupported(t *testing.T) {
	for _, c := range []struct {
		name, src, want string
	}{
		{"macro attribute", "ab\n  {% macro f() %}{% endmacro %}{{ f.name }}", "line 2 col 37: the attributes of a macro (.name) are not supported"},
		{"break outside loop", "{% for x in y %}{% endfor %}{% break %}", "line 1 col 32: 'break' outside loop"},
		{"break in a macro", "{% for x in y %}{% macro m() %}{% continue %}{% endmacro %}{% endfor %}", "line 1 col 35: 'continue' outside loop"},
		{"macro arguments", "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", "line 1 col 35: macro 'm' takes not more than 1 argument(s)"},
		{"macro keyword", "{% macro m(a) %}{% endmacro %}{{ m(1, a=2) }}", "line 1 col 35: macro 'm' takes no keyword argument 'a'"},
		{"no caller", "{% macro m() %}{% endmacro %}{% call m() %}{% endcall %}", "line 1 col 39: macro 'm' was invoked with two values for the special caller argument"},
		{"caller undefined", "{% macro m() %}{{ caller() }}{% endmacro %}{{ m() }}", "line 1 col 25: No caller defined"},
		{"default order", "{% macro m(a=1, b) %}{% endmacro %}", "line 1 col 17: non-default argument follows default argument"},
		{"unpack", "{% set a, b = [1] %}", "line 1 col 4: not enough values to unpack (expected 2, got 1)"},
		{"unclosed macro", "{% macro m() %}{% if x %}{% endmacro %}", "{% endmacro %} inside {% if %}"},
		{"strftime flag", "{{ strftime_now('%-d') }}", "strftime_now: directive %- is not supported"},
		{"include", "{% include 'x' %}", "line 1 col 4: {% include %} is not supported"},
		{"unknown filter", "{{ 'a' | wordwrap }}", "line 1 col 10: filter wordwrap: not supported"},
		{"unsupported test", "{{ 1 is sameas 1 }}", "line 1 col 9: test sameas: sameas of a value of type int is not supported"},
		{"power", "{{ 2 **\n 0.5 }}", "line 1 col 6: ** with a fractional exponent (0.5) is not supported"},
		{"string format", "{{ 'a' ~\n '%a' % 1 }}", "line 2 col 7: the conversion %a is not supported"},
		{"format spec", "{{ '{:,}'.format(1) }}", "line 1 col 17: str.format(): the format spec \",\" is not supported"},
		{"print a function", "{{ 'a'.strip }}", "line 1 col 8: printing a function is not supported"},
		{"method keyword", "{{ 'a b'.split(maxsplit=1) }}", "line 1 col 15: keyword arguments to split() are not supported"},
		{"unknown method", "{{ 'a'.casefold() }}", "line 1 col 16: str.casefold(): not supported"},
		{"attribute of undefined", "{{ x.y }}", "line 1 col 6: 'x' is undefined"},
		{"unclosed if", "{% if true %}x", "line 1 col 4: {% if %} is not closed"},
		{"unclosed block set", "{% set x %}a", "line 1 col 4: {% set %} is not closed (missing {% endset %})"},
		{"unclosed tag", "{{ x", "line 1 col 1: tag is not closed"},
		{"unclosed raw", "a\n {% raw %}{{ x }}{% endraw", "line 2 col 2: Missing end of raw directive"},
		{"loop not recursive", "{% for x in [1] %}\n {{ loop([]) }}{% endfor %}", "line 2 col 9: The loop must have the 'recursive' marker to be called recursively."},
		{"else break", "{% for x in [1] recursive %}{% else %}{% break %}{% endfor %}", "line 1 col 42: 'break' outside loop"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp, err := Parse(c.src)
			if err == nil {
				var got string
				got, err = tp.RenderString(nil)
				if err == nil {
					t.Fatalf("rendered %q, want an error", got)
				}
			}
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want an *Error saying %q", err, c.want)
			}
		})
	}
}

// TestDataChunks: bytes from Data inputs stay marked through
// concatenation, strip and slicing.
func TestDataChunks(t *testing.T) {
	tp, err := Parse(`{{ '<a>' + (c | trim) + '<b>' }}{{ c[1:3] }}`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tp.Render(map[string]any{"c": Data(" x<b>y ")})
	if err != nil {
		t.Fatal(err)
	}
	want := []Chunk{{"<a>", false}, {"x<b>y", true}, {"<b>", false}, {"x<", true}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Render = %v, want %v", got, want)
	}
}

func ExampleTemplate_RenderString() {
	tp, err := Parse("{{ bos_token }}{% for m in messages %}[INST] {{ m.content | trim }} [/INST]{% endfor %}")
	if err != nil {
		fmt.Println(err)
		return
	}
	m := NewDict()
	m.Set("role", "user")
	m.Set("content", " Hello ")
	out, err := tp.RenderString(map[string]any{"bos_token": "<s>", "messages": []any{m}})
	fmt.Printf("%q %v\n", out, err)
	// Output: "<s>[INST] Hello [/INST]" <nil>
}

// TestLimits: a template that would grow without bound stops with an error.
func TestLimits(t *testing.T) {
	for _, src := range []string{
		"{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
		"{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
		"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
		"{{ 'x' * 100000000 }}",
		// Lists doubled, and a list of the list twice: the first grows
		// without bound, the second prints (repr, tojson) 2^60 elements.
		"{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
		"{% set ns = namespace(l=(1,)) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
		"{% set ns = namespace(l=[]) %}{% for i in range(60) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}",
		"{% set ns = namespace(l=[]) %}{% for i in range(60) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l|tojson }}",
		// Few statements, each making a 16 MB string: 16 GB of work.
		"{% set s = 'x' * 16000000 %}{% for i in range(1000) %}{% set y = s.upper() %}{% endfor %}",
		// An indent past any output (which panicked in strings.Repeat).
		"{{ [[1]]|tojson(indent=9223372036854775807) }}",
		"{{ [[1]]|tojson(indent=100000000) }}",
		// A macro's output is work too, though it is never printed.
		"{% set s = 'x' * 16000000 %}{% macro m() %}{{ s }}{% endmacro %}{% for i in range(1000) %}{% set y = m() %}{% endfor %}",
		"{% macro m() %}{{ 'x' * 10000000 }}{{ 'x' * 10000000 }}{% endmacro %}{% set y = m() %}",
		// Work that makes little: comparisons walking whole values,
		// filters walking every element, a long string indexed.
		"{% set l = range(100000)|list %}{% for i in range(100000) %}{{ 99999 in l }}{% endfor %}",
		"{% set ns = namespace(l=[]) %}{% for i in range(60) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l == [ns.l[0], ns.l[1]] }}",
		"{% set l = range(100000)|list %}{% for i in range(1000) %}{% set x = l|min %}{% endfor %}",
		"{% set l = range(100000)|list %}{% for i in range(1000) %}{% set x = l|reverse %}{% endfor %}",
		"{% set l = range(100000)|list %}{% for i in range(1000) %}{% set x = l[::-1] %}{% endfor %}",
		"{% set s = 'x' * 10000000 %}{% for i in range(1000) %}{% set x = s[5] %}{% endfor %}",
		"{% set s = ' ' * 10000000 %}{% for i in range(1000) %}{% set x = s.strip() %}{% endfor %}",
		// Widths and precisions past the string limit, and within it many times.
		"{{ '%99999999d' % 1 }}",
		"{{ '%.99999999f' % 1 }}",
		"{{ '%*d' % (99999999, 1) }}",
		"{{ '{:>99999999}'.format(1) }}",
		"{% for i in range(1000) %}{% set y = '%16000000d' % 1 %}{% endfor %}",
		"{% for i in range(1000) %}{% set y = '{:16000000}'.format('') %}{% endfor %}",
		// Ints squared without bound, a power past the bound, and
		// divisions of ints within it in a loop.
		"{% set ns = namespace(n=3) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}",
		"{{ 3 ** 100000000 }}",
		"{% set n = 3 ** 80000 %}{% for i in range(100000) %}{% for j in range(10) %}{% set m = n // (n - 1) %}{% endfor %}{% endfor %}",
		// Big ints made from small ones (a power), hashed, compared;
		// rounding at many digits; many short batches.
		"{% for i in range(100000) %}{% set y = (7 ** 40000) == 7 ** 40000 %}{% endfor %}",
		"{% for i in range(100000) %}{% set y = {7 ** 40000: 1} %}{% endfor %}",
		"{% for i in range(100000) %}{% set y = 0.5|round(100000) %}{% endfor %}",
		"{% for i in range(100000) %}{% set y = 1e300|round(-300) %}{% endfor %}",
		"{% for i in range(100000) %}{% set y = range(100000)|batch(1)|list %}{% endfor %}",
	} {
		tp, err := Parse(src)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tp.Render(nil); err == nil || !strings.Contains(err.Error(), "too") {
			t.Errorf("%s: error %v, want a limit", src, err)
		}
	}
}

// TestFormatPrecisionWork: %g with a huge precision and no '#' makes
// what jinja2 makes (the digits up to the exact expansion) without making
// the zeros it strips: its output is small, so the render's steps do not
// count them, and a loop of such formats took minutes.
func TestFormatPrecisionWork(t *testing.T) {
	tp := mustParse(t, "{{ '%.16000000g|%.16000000G' % (1.5, 2.5) }}|{{ '{:.16000000g}'.format(0.1) }}|{{ '%.16000000g' % 1e22 }}")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got, err := tp.RenderString(nil)
	runtime.ReadMemStats(&after)
	// jinja2 3.1.6's rendering.
	want := "1.5|2.5|0.1000000000000000055511151231257827021181583404541015625|10000000000000000000000"
	if err != nil || got != want {
		t.Errorf("RenderString = %q, %v; want %q", got, err, want)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("the render allocated %d bytes, want at most 1 MiB", n)
	}
}

// TestAssignValues: a namespace attribute or dict entry holds whatever a
// template computes (tuples, dict items, namespaces) as jinja2 does; these
// panicked with "unsupported input type" on the conversion meant for
// Render's Go inputs.
func TestAssignValues(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"{% set ns = namespace(x=(1, 2)) %}{{ ns.x }}", "(1, 2)"},
		{"{% set ns = namespace() %}{% set ns.x = (1, 2) %}{{ ns.x[1] }}", "2"},
		{"{{ {'a': (1, 2)}['a'] }}", "(1, 2)"},
		{"{% set ns = namespace(i={'a': 1}.items()|list) %}{{ ns.i }}", "[('a', 1)]"},
		{"{% set ns = namespace(n=none) %}{% set ns.n = namespace(v=3) %}{{ ns.n.v }}", "3"},
	} {
		tp, err := Parse(c.src)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		got, err := tp.RenderString(nil)
		if err != nil || got != c.want {
			t.Errorf("%s: got %q, %v, want %q", c.src, got, err, c.want)
		}
	}
}

// TestLongValues: strings and output near the limits are built in time
// linear in their length: slicing a long string, joining many, and many
// small pieces of output each took time quadratic in it (an 8 MB string
// reversed, minutes).
func TestLongValues(t *testing.T) {
	if testing.Short() {
		t.Skip("renders 8 to 16 MB")
	}
	long := strings.Repeat("ab", 4_000_000)
	many := make([]string, 100_000)
	for i := range many {
		many[i] = strings.Repeat("y", 99)
	}
	for _, c := range []struct {
		name, src string
		vars      map[string]any
		want      string
	}{
		{"reverse", "{{ s[::-1] }}", map[string]any{"s": Data(long)}, strings.Repeat("ba", 4_000_000)},
		{"slice", "{{ s[1:] }}", map[string]any{"s": Data(long)}, long[1:]},
		{"join", "{{ l|join(',') }}", map[string]any{"l": many}, strings.Join(many, ",")},
		{"output", "{% for i in range(40000) %}{% for j in range(9) %}{{ 'z' * 31 }}{% endfor %}{% endfor %}", nil, strings.Repeat("z", 40000*9*31)},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp, err := Parse(c.src)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tp.RenderString(c.vars)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("got %d bytes, want %d", len(got), len(c.want))
			}
		})
	}
}

// TestNesting: statements and expressions nested past maxDepth are an
// error, at Parse or Render, where a deep enough template (a few MB) ran
// the stack out, a fatal error no caller can recover from.
func TestNesting(t *testing.T) {
	const n = maxDepth + 10
	for name, src := range map[string]string{
		"parens":  "{{ " + strings.Repeat("(", n) + "1" + strings.Repeat(")", n) + " }}",
		"lists":   "{{ " + strings.Repeat("[", n) + "1" + strings.Repeat("]", n) + " }}",
		"not":     "{{ " + strings.Repeat("not ", n) + "1 }}",
		"minus":   "{{ " + strings.Repeat("-", n) + "1 }}",
		"ifs":     strings.Repeat("{% if true %}", n) + "x" + strings.Repeat("{% endif %}", n),
		"sum":     "{{ 1" + strings.Repeat(" + 1", n) + " }}",
		"filters": "{{ 'a'" + strings.Repeat("|trim", n) + " }}",
		"attrs":   "{% set ns = namespace(x=1) %}{{ ns" + strings.Repeat(".x", n) + " }}",
		"macro":   "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
		"caller":  "{% macro m() %}{% call m() %}{% endcall %}{{ caller() }}{% endmacro %}{% call m() %}{% endcall %}",
		"loop": "{% set ns = namespace(l=[]) %}{% for i in range(2000) %}{% set ns.l = [ns.l] %}{% endfor %}" +
			"{% for x in [ns.l] recursive %}{{ loop(x) }}{% endfor %}",
	} {
		tp, err := Parse(src)
		if err == nil {
			_, err = tp.Render(nil)
		}
		if err == nil || !strings.Contains(err.Error(), "nested too deeply") {
			t.Errorf("%s: error %v, want nested too deeply", name, err)
		}
	}
	// Within the bound: rendered.
	src := "{{ " + strings.Repeat("(", 100) + "1" + strings.Repeat(")", 100) + " }}"
	tp, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tp.RenderString(nil); err != nil || got != "1" {
		t.Errorf("100 parentheses: %q, %v, want \"1\"", got, err)
	}
}

// TestStringFilters: replace, reverse and int as jinja2 2.x/3.x without
// autoescape computes them (the values hand-derived from its do_replace,
// do_reverse and do_int and Python's str.replace, int, float and abs); a
// filter outside the subset in a branch never taken does not stop a
// render, as in jinja2; and replace's result is data wherever a Data
// input went into it.
func TestStringFilters(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`{{ 'a-b-c'|replace('-', '+') }}`, "a+b+c"},
		{`{{ 'a-b-c'|replace('-', '+', 1) }}`, "a+b-c"},
		{`{{ 'a-b-c'|replace('-', '+', count=1) }}`, "a+b-c"},
		{`{{ 12|replace('1', 'x') }}`, "x2"},
		{`{{ 'ab'|replace('', '-') }}`, "-a-b-"},
		{`{{ 'ab'|replace('', '-', 2) }}`, "-a-b"},
		{`{{ 'héllo'|reverse }}`, "olléh"},
		{`{{ [1, 2, 3]|reverse|list }}`, "[3, 2, 1]"},
		{`{{ '42'|int }} {{ ' 7 '|int }} {{ '3.9'|int }} {{ '-3.9'|int }} {{ 'x'|int }} {{ 2.7|int }}`, "42 7 3 -3 0 2"},
		{`{{ true|int }} {{ none|int }} {{ '0x10'|int }} {{ '1_000'|int }} {{ ''|int }} {{ '1e3'|int }}`, "1 0 0 1000 0 1000"},
		{`{{ -2|abs }} {{ -2.5|abs }} {{ true|abs }}`, "2 2.5 1"},
		{`{% if false %}{{ x | wordwrap }}{% endif %}ok`, "ok"},
	} {
		tp, err := Parse(c.src)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		if got, err := tp.RenderString(nil); err != nil || got != c.want {
			t.Errorf("%s = %q, %v; want %q", c.src, got, err, c.want)
		}
	}
	tp, err := Parse(`{{ 'x'|replace('x', c) }}{{ 'y'.replace('y', c) }}{{ 'z' }}`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tp.Render(map[string]any{"c": Data("<s>")})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Chunk{{"<s><s>", true}, {"z", false}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Render = %v, want %v", got, want)
	}
	if _, err := (mustParse(t, `{{ c|replace('a', c) }}`)).RenderString(map[string]any{"c": strings.Repeat("a", 1<<13)}); !errors.Is(err, errTooLong) && (err == nil || !strings.Contains(err.Error(), "too long")) {
		t.Errorf("a replace past the string limit: %v, want the limit's error", err)
	}
}

func mustParse(t *testing.T, src string) *Template {
	t.Helper()
	tp, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// TestStatements: macros, call blocks, block sets, filter blocks, tuple
// assignment and {% generation %} render as jinja2 3.1 renders them with
// transformers' settings (each want is jinja2's output), their scopes
// included: a macro reads the scope it was defined in when it is called,
// and what a macro, block set, filter block or generation body sets is
// gone after it.
func TestStatements(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"{% macro m() %}{{ x }}{% endmacro %}{% set x = 1 %}{{ m() }}", "1"},
		{"{% macro m() %}[{{ y }}]{% endmacro %}{% for y in [1,2] %}{{ m() }}{% endfor %}", "[][]"},
		{"{% set x = 0 %}{% macro m() %}{{ x }}{% endmacro %}{% for y in [1,2] %}{% set x = y %}{{ m() }}{% endfor %}", "00"},
		{"{% for y in [1,2] %}{% macro m() %}{{ y }}{% endmacro %}{{ m() }}{% endfor %}", "12"},
		{"{% macro m(a, b=a) %}{{ a }}{{ b }}{% endmacro %}{{ m(1) }}", "11"},
		{"{% macro m(a, b=2) %}{{ a }}{{ b }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 3, 4, c=5) }}", "13(4,){'c': 5}"},
		{"{% macro m(a) %}{{ a }}{% endmacro %}{{ m() }}|{{ m()|length }}|{{ m(a=2) }}", "|0|2"},
		{"{% macro m(a) %}{% set a = a ~ 'x' %}{{ a }}{% endmacro %}{{ m(1) }}", "1x"},
		{"{% macro m() %}a{% endmacro %}{{ m() + 'b' }} {{ m() ~ 'b' }} {{ m() is string }} {{ m }}", "ab ab True <Macro 'm'>"},
		{"{% set ns = namespace(a=1) %}{% macro m() %}{% set ns.a = 2 %}{% endmacro %}{{ m() }}{{ ns.a }}", "2"},
		{"{% macro m() %}{% set x = 2 %}{% endmacro %}{% set x = 1 %}{{ m() }}{{ x }}", "1"},
		{"{% macro m() %}{% macro n() %}n{% endmacro %}{{ n() }}{% endmacro %}{{ m() }}", "n"},
		{"{% macro m() %}{{ caller is defined }}{% endmacro %}{{ m() }}", "False"},
		{"{% macro m(a) %}<{{ caller(a) }}>{% endmacro %}{% call(v) m(1) %}[{{ v }}]{% endcall %}", "<[1]>"},
		{"{% macro m() %}{{ caller() }}{% endmacro %}{% for i in [1,2] %}{% call m() %}{{ i }}{% set q = 1 %}{% endcall %}{% endfor %}{{ q }}", "12"},
		{"{% set x %} hi {{ 1 }} {% endset %}[{{ x }}]", "[ hi 1 ]"},
		{"{% set x | upper %}hi{% endset %}[{{ x }}]", "[HI]"},
		{"{% for i in [1] %}{% set x %}hi{% endset %}{% endfor %}[{{ x }}]", "[]"},
		{"{% set x %}{% set y = 1 %}a{% endset %}{{ y }}{{ x }}", "a"},
		{"{% set ns = namespace(a=1) %}{% set ns.a %}zz{% endset %}{{ ns.a }}", "zz"},
		{"{% for i in [1,2] %}{% set y %}{{ i }}{% if i == 1 %}{% continue %}{% endif %}{% endset %}{{ y }}{% endfor %}", "2"},
		{"{% set x = 1 %}{% filter upper %}{% set x = 2 %}{{ x }}ab{% endfilter %}{{ x }}", "2AB1"},
		{"{% for i in [1,2] %}{% filter upper %}{% if i == 1 %}{% continue %}{% endif %}x{% endfilter %}{% endfor %}", "X"},
		{"{% set a, b = 1, 2 %}{{ a }}{{ b }}", "12"},
		{"{% set a, b = 'xy' %}{{ a }}{{ b }}", "xy"},
		{"{% set (a, b) = [1, 2] %}{{ a }}{{ b }}", "12"},
		{"{% set x = 1, 2 %}{{ x }}", "(1, 2)"},
		{"{% for i in [1] %}{% set a, b = 1, 2 %}{% endfor %}{{ a }}", ""},
		{"{% set x = 1 %}{% generation %}{% set x = 2 %}{{ x }}{% endgeneration %}{{ x }}", "21"},
		{"{{ strftime_now('%a %A %b %B %c %d %H %I %j %m %M %p %S %U %w %W %x %X %y %Y %Z %z %% %e %f %G %V %u %C %D %F %T %R %h %n %t %k %l') }}",
			"Tue Tuesday Mar March Tue Mar  5 14:07:09 2024 05 14 02 065 03 07 PM 09 09 2 10 03/05/24 14:07:09 24 2024   %  5 000000 2024 10 2 20 03/05/24 2024-03-05 14:07:09 14:07 Mar \n \t 14  2"},
	} {
		tp, err := Parse(c.src)
		if err != nil {
			t.Errorf("%s: %v", c.src, err)
			continue
		}
		chunks, err := tp.RenderWith(nil, Options{Now: time.Date(2024, 3, 5, 14, 7, 9, 0, time.UTC)})
		var got strings.Builder
		for _, ch := range chunks {
			got.WriteString(ch.Text)
		}
		if err != nil || got.String() != c.want {
			t.Errorf("%s = %q, %v; want %q", c.src, got.String(), err, c.want)
		}
	}
}

// TestMacroData: a message's text stays data through a macro's arguments
// and output, a block set and a filter block, so that a tokenizer never
// reads it as template text.
func TestMacroData(t *testing.T) {
	tp := mustParse(t, "{% macro m(x) %}<{{ x }}>{% endmacro %}{% set b %}[{{ c }}]{% endset %}{{ m(c) }}{{ b }}{% filter trim %} {{ c }} {% endfilter %}")
	got, err := tp.Render(map[string]any{"c": Data("<s>")})
	if err != nil {
		t.Fatal(err)
	}
	want := []Chunk{{"<", false}, {"<s>", true}, {">[", false}, {"<s>", true}, {"]", false}, {"<s>", true}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Render = %v, want %v", got, want)
	}
}

// TestDataFilters: a message's text stays data through Markup's
// escaping, indent, str.format, a generator's items and tojson (the whole
// JSON text data, as a printed list is).
func TestDataFilters(t *testing.T) {
	json := mustParse(t, `{{ {'a': [c]}|tojson }}{{ {'a': 1}|tojson }}`)
	gotJSON, err := json.Render(map[string]any{"c": Data("<s>")})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Chunk{{`{"a": ["<s>"]}`, true}, {`{"a": 1}`, false}}; fmt.Sprint(gotJSON) != fmt.Sprint(want) {
		t.Errorf("tojson: Render = %v, want %v", gotJSON, want)
	}
	tp := mustParse(t, `{{ ('<'|safe) + c }}|{{ c|indent(1, true) }}|{{ '<{}>'.format(c) }}|{{ [c]|map('upper')|join }}`)
	got, err := tp.Render(map[string]any{"c": Data("a\n<b>")})
	if err != nil {
		t.Fatal(err)
	}
	want := []Chunk{{"<", false}, {"a\n&lt;b&gt;", true}, {"| ", false}, {"a", true}, {"\n ", false}, {"<b>", true}, {"|<", false}, {"a\n<b>", true}, {">|", false}, {"A\n<B>", true}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Render = %v, want %v", got, want)
	}
}

// TestStrftimeNowClock: without Options.Now, strftime_now formats the
// clock's local time, as transformers' datetime.now().strftime does.
func TestStrftimeNowClock(t *testing.T) {
	tp := mustParse(t, "{{ strftime_now('%Y-%m-%d %H') }}")
	before := time.Now().Format("2006-01-02 15")
	got, err := tp.RenderString(nil)
	after := time.Now().Format("2006-01-02 15")
	if err != nil || got != before && got != after {
		t.Errorf("strftime_now = %q, %v; want %q", got, err, before)
	}
}

// TestFormatData: a message's text stays data through % formatting and
// format specs (padding is template text), and what a conversion spec
// or %% that came from data writes is data too.
func TestFormatData(t *testing.T) {
	tp := mustParse(t, `{{ '<%s>|%4s|%.1s|%r|%d' % (c, c, c, c, 1) }}|{{ '%(k)s' % {'k': c} }}|{{ '{:>4}'.format(c) }}|{{ (c ~ '%%%5d') % 1 }}`)
	got, err := tp.Render(map[string]any{"c": Data("ab")})
	if err != nil {
		t.Fatal(err)
	}
	want := []Chunk{{"<", false}, {"ab", true}, {">|  ", false}, {"ab", true}, {"|", false}, {"a", true}, {"|", false}, {"'ab'", true}, {"|1|", false}, {"ab", true}, {"|  ", false}, {"ab", true}, {"|", false}, {"ab", true}, {"%    1", false}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Render = %v, want %v", got, want)
	}
	tp = mustParse(t, `{{ c % 7 }}|{{ d.format(7) }}|{{ e % () }}`)
	got, err = tp.Render(map[string]any{"c": Data("%3d"), "d": Data("{:>3}"), "e": Data("%%")})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Chunk{{"  7", true}, {"|", false}, {"  7", true}, {"|", false}, {"%", true}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Render = %v, want %v", got, want)
	}
}
