#!/usr/bin/env python3
"""Write random.json: random small templates built from the expressions,
filters, tests, methods and statements chat templates use, each with what
jinja2 renders of it (or its error) in render.py's environment, for
TestJinja2Random (../../values_test.go), which wants this package to
render the same text, or to fail where jinja2 fails; where jinja2 renders
and this package refuses (a generator's address printed, a construct
outside the subset), nothing is wanted.

Usage (from this directory; the committed file was made with seed 11 and
1500 templates, jinja2 3.1.6):

    python3 random.py [SEED [COUNT]]
"""

import copy
import json
import random
import sys
import warnings

from render import environment

ATOMS = ["1", "0", "-3", "2.5", "1e20", "0.1", "1.0", "'a'", "'AbC d'", "''", "'x\\ny'", "' s '",
         "none", "true", "false", "[1, 2]", "[]", "['b', 'a', 'B']", "(1, 'a')",
         "{'k': 1, 'j': [2]}", "{}", "{2: 'x', 1: 'y'}", "x", "y", "s", "d", "l", "m.content",
         "m['role']", "undefined_var", "ns.v", "range(3)", "'{}-{}'", "u"]
FILTERS = ["trim", "upper", "lower", "title", "capitalize", "string", "length", "tojson",
           "tojson(indent=2)", "default('D')", "default('D', true)", "join(',')", "first", "last",
           "list", "map('string')", "select", "reject", "items", "dictsort", "unique", "min", "max",
           "sort", "reverse", "int", "abs", "safe", "indent(2)", "replace('a', 'b')",
           "selectattr('role')", "map(attribute='role')", "count", "sort(reverse=true)",
           "tojson(sort_keys=true)", "join", "list|length", "string|length", "d"]
TESTS = ["defined", "undefined", "none", "string", "number", "integer", "float", "boolean", "true",
         "false", "mapping", "sequence", "iterable", "odd", "even", "eq 1", "in [1, 'a']",
         "equalto 'a'"]
OPS = ["+", "-", "*", "/", "//", "%", "~", "==", "!=", "<", ">", "<=", ">=", "in", "not in",
       "and", "or"]
METHODS = ["strip()", "upper()", "lower()", "split()", "split(',')", "startswith('a')",
           "endswith('a')", "replace('a', 'z')", "title()", "capitalize()", "lstrip()",
           "rstrip('x')", "items()", "keys()", "values()", "get('k')", "get('z', 5)",
           "format(1, 2)"]
VARS = {"x": 5, "y": "hello", "s": "Hello World", "d": {"a": 1, "b": "two"}, "l": [3, 1, 2],
        "m": {"role": "user", "content": "Hi <there> & \"you\""}, "u": "é😀"}


def expr(d=0):
    r = random.random()
    if d > 2 or r < 0.3:
        return random.choice(ATOMS)
    if r < 0.5:
        return expr(d + 1) + "|" + random.choice(FILTERS)
    if r < 0.6:
        return expr(d + 1) + " is " + random.choice(["", "not "]) + random.choice(TESTS)
    if r < 0.8:
        return "(" + expr(d + 1) + " " + random.choice(OPS) + " " + expr(d + 1) + ")"
    if r < 0.9:
        return expr(d + 1) + "." + random.choice(METHODS)
    if r < 0.95:
        return "(" + expr(d + 1) + " if " + expr(d + 1) + " else " + expr(d + 1) + ")"
    return expr(d + 1) + "[" + random.choice(["0", "-1", "1:", ":2", "::-1", "'k'", "'role'"]) + "]"


def stmt():
    if random.random() < 0.25:
        return random.choice([
            lambda: "{% macro mm(a, b=2) %}({{ a }},{{ b }},{{ varargs }},{{ kwargs }}){% endmacro %}{{ mm(" + expr() + ", " + expr() + ", " + expr() + ", k=" + expr() + ") }}",
            lambda: "{% macro mc(a) %}[{{ caller(a) }}]{% endmacro %}{% call(v) mc(" + expr() + ") %}<{{ v }}|{{ " + expr() + " }}>{% endcall %}",
            lambda: "{% set bs | " + random.choice(FILTERS) + " %}a{{ " + expr() + " }}b{% endset %}{{ bs }}",
            lambda: "{% filter " + random.choice(["upper", "trim", "title", "indent(2, true)", "replace('a', 'Z')"]) + " %} x{{ " + expr() + " }} \n y {% endfilter %}",
            lambda: "{% set p, q = " + random.choice(["[1, 2]", "'ab'", "(s, l)", "d", "d.items()|list|first", "range(2)"]) + " %}{{ p }}{{ q }}",
            lambda: "{% for a, b in " + random.choice(["d.items()", "d|dictsort", "[(1, 2), (3, 4)]", "d|items", "{1: 2}.items()"]) + " %}{{ a }}={{ b }};{{ loop.previtem }}{{ loop.revindex }}{% endfor %}",
            lambda: "{{ " + expr() + "|tojson(" + random.choice(["", "indent=1", "separators=(',', ':')", "sort_keys=true", "ensure_ascii=true"]) + ") }}",
            lambda: "{{ " + expr() + ".split(" + random.choice(["", "' '", "' ', 1", "none, 1", "'o'"]) + ") }}",
            lambda: "{{ '{0}/{1}/{0}'.format(" + expr() + ", " + expr() + ") }}",
            lambda: "{% set ns.v = ns.v ~ " + expr() + " %}{{ ns.v|length }}",
            lambda: "{{ strftime_now('%Y %b %d %A %j') }}",
        ])()
    r = random.random()
    if r < 0.5:
        return "{{ " + expr() + " }}"
    if r < 0.65:
        return "{% for i in " + expr() + " %}[{{ i }}{{ loop.index }}]{% endfor %}"
    if r < 0.75:
        return "{% if " + expr() + " %}T{% else %}F{% endif %}"
    if r < 0.85:
        return "{% set t = " + expr() + " %}{{ t }}"
    if r < 0.92:
        return "{% macro mm(a, b='q') %}<{{ a }}|{{ b }}>{% endmacro %}{{ mm(" + expr() + ") }}"
    return "{% set ns.v = " + expr() + " %}{{ ns.v }}"


def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 11
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
    random.seed(seed)
    warnings.simplefilter("ignore")  # Python's warnings on constant subscripts
    env = environment()
    cases = []
    for _ in range(count):
        src = "{% set ns = namespace(v=1) %}" + "".join(stmt() for _ in range(random.randint(1, 3)))
        try:
            # A copy each time: some jinja2 filters change their input
            # (indent of a list extends it).
            case = {"src": src, "output": env.from_string(src).render(**copy.deepcopy(VARS))}
        except Exception as e:
            case = {"src": src, "error": f"{type(e).__name__}: {e}"}
        cases.append(case)
    with open("random.json", "w", encoding="utf-8") as f:
        json.dump({"vars": VARS, "cases": cases}, f, ensure_ascii=False, indent=0)
        f.write("\n")


if __name__ == "__main__":
    main()
