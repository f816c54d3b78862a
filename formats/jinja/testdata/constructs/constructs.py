#!/usr/bin/env python3
"""Write constructs.json: what jinja2, in ../chat/render.py's environment
(transformers' settings), renders of each template of CASES below, or the
error it raises, for TestJinja2Constructs (../../constructs_test.go).

Each case is (template, refusal): refusal None wants jinja2's output
exactly, or an error where jinja2 raised one, saying what jinja2's says
unless the case is marked LOOSE; a refusal string is for a template this
package refuses though jinja2 renders it (a construct outside the
subset), and the test wants an error containing it.

Usage (from this directory; the committed file was made with jinja2
3.1.6 on Python 3.11):

    python3 constructs.py
"""

import copy
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "chat"))

from render import environment  # noqa: E402

LOOSE = "loose"  # an error wanted, its wording this package's own

VARS = {
    "x": 5, "f": 2.5, "s": "Hello", "u": "é😀", "d": {"a": 1, "b": "two"}, "l": [3, 1, 2],
    "tree": [
        {"name": "a", "children": [{"name": "a1", "children": []},
                                   {"name": "a2", "children": [{"name": "a2x", "children": []}]}]},
        {"name": "b", "children": []},
    ],
    "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"},
                 {"role": "user", "content": "Bye"}],
}

CASES = [
    # for … else
    ("{% for x in [] %}a{% else %}b{% endfor %}", None),
    ("{% for x in [1, 2] %}{{ x }}{% else %}b{% endfor %}", None),
    ("{% for x in [1, 2] if x > 5 %}{{ x }}{% else %}none{% endfor %}", None),
    ("{% for m in messages if m.role == 'system' %}{{ m.content }}{% else %}no system{% endfor %}", None),
    ("{% for x in undefined_v %}{% else %}empty{% endfor %}", None),
    ("{% for x in '' %}{% else %}empty{% endfor %}{% for x in {} %}{% else %}E{% endfor %}", None),
    ("{% for x in none %}{% else %}n{% endfor %}", None),
    # break and continue: the else runs unless an iteration reached the body's end.
    ("{% for x in [1, 2] %}{{ x }}{% break %}{% else %}b{% endfor %}", None),
    ("{% for x in [1, 2] %}{{ x }}{% continue %}{% else %}c{% endfor %}", None),
    ("{% for x in [1, 2] %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% else %}c{% endfor %}", None),
    ("{% for x in [1, 2] %}{{ x }}{% if x == 2 %}{% break %}{% endif %}{% else %}b{% endfor %}", None),
    ("{% for x in [1, 2, 3] %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% else %}b{% endfor %}", None),
    ("{% for x in [1] %}{% for y in [] %}{% else %}{% break %}{% endfor %}{{ x }}{% endfor %}after", None),
    ("{% for x in [1, 2] %}{% for y in [] %}{% else %}{% continue %}{% endfor %}{{ x }}{% endfor %}after", None),
    ("{% for x in [] %}{% else %}{% break %}{% endfor %}", None),
    # the else body's scope: the loop's variables are not set in it, what it sets is gone after it
    ("{% set x = 9 %}{% for x in [] %}{% else %}{{ x }}{{ loop is defined }}{% set y = 1 %}{% endfor %}[{{ y }}]", None),
    ("{% for a in [1] %}{% for b in [] %}{% else %}{{ loop.index }}{{ a }}{% endfor %}{% endfor %}", None),
    ("{% set ns = namespace(n=0) %}{% for x in [] %}{% else %}{% set ns.n = 3 %}{% endfor %}{{ ns.n }}", None),
    ("{% for x in [] %}{% else %}{% for y in [1, 2] %}{{ loop.index }}{% endfor %}{% endfor %}", None),
    # recursive loops
    ("{% for x in [1, [2, [3]]] recursive %}{% if x is iterable %}<{{ loop(x) }}>{% else %}{{ x }}@{{ loop.depth }}{{ loop.depth0 }}{% endif %}{% endfor %}", None),
    ("{% for n in tree recursive %}{{ n.name }}({{ loop.index }}/{{ loop.length }} d{{ loop.depth }}){% if n.children %}[{{ loop(n.children) }}]{% endif %}{% endfor %}", None),
    ("{% for n in tree recursive %}{{ loop.depth }}{{ n.name }}{% if n.children %}{{ loop(n.children)|upper }}{% endif %};{% endfor %}", None),
    ("{% for n in tree recursive %}{{ n.name }}{{ loop.first }}{{ loop.last }}{{ loop.previtem.name if not loop.first }}{% if n.children %}({{ loop(n.children) }}){% endif %}{% endfor %}", None),
    ("{% for n in tree if n.name != 'a2' recursive %}{{ n.name }}{% if n.children %}({{ loop(n.children) }}){% endif %}{% endfor %}", None),
    ("{% for n in tree recursive %}{{ n.name }}[{{ loop(n.children) }}]{% else %}-{% endfor %}", None),
    ("{% for x in [[1], [2]] recursive %}{% if x is iterable %}{{ loop(x) }}{% break %}{% else %}{{ x }}{% endif %}{% endfor %}", None),
    ("{% for x in [1, [2, 3], 4] recursive %}{% if x is iterable %}({{ loop(x) }}){% continue %}{% endif %}{{ x }}{% endfor %}", None),
    ("{% for x in [1, [2]] recursive %}{% set y = x %}{% if x is iterable %}{{ loop(x) }}{% endif %}{{ y }}{% endfor %}", None),
    ("{% for x in [1, [2]] recursive %}{% if x is iterable %}{{ loop(x)|length }}{{ loop(x) is string }}{% endif %}{% endfor %}", None),
    ("{% for a, b in [(1, [(2, [(3, [])])])] recursive %}{{ a }}{{ loop.depth }}{{ loop(b) }}{% endfor %}", None),
    ("{% for x in [[1]] recursive %}{% set outer = loop %}{% for y in x %}{{ loop.depth }}{{ outer.depth }}{% endfor %}{% endfor %}", None),
    ("{% for x in [[[1, 2]]] recursive %}{% set outer = loop %}{% for y in x %}{% if y is iterable %}[{{ outer([y]) }}]{% else %}{{ y }}:{{ outer.depth }}{% endif %}{% endfor %}{% endfor %}", None),
    ("{% set ns = namespace(l=none) %}{% for x in [1] recursive %}{{ x }}{% set ns.l = loop %}{% endfor %}|{{ ns.l([7, 8]) }}", None),
    ("{% macro m(l) %}{% for x in l recursive %}{{ x.n }}{% if x.c %}<{{ loop(x.c) }}>{% endif %}{% endfor %}{% endmacro %}{{ m([{'n': 1, 'c': [{'n': 2}]}]) }}", None),
    ("{% for x in [1] %}{{ loop(x) }}{% endfor %}", None),
    ("{% for x in [[1]] recursive %}{% for y in x %}{{ loop(y) }}{% endfor %}{% endfor %}", None),
    ("{% for x in [1] recursive %}{{ loop(5) }}{% endfor %}", None),
    ("{% for x in [1] recursive %}{{ loop() }}{% endfor %}", LOOSE),
    ("{% for x in [1] recursive %}{{ loop([], []) }}{% endfor %}", LOOSE),
    ("{% for x in [1] recursive if x %}{% endfor %}", LOOSE),
    ("{% for x in [1] recursive %}{% else %}{% break %}{% endfor %}", LOOSE),
    # loop.changed, loop.cycle
    ("{% for x in [1, 2, 1, 1, 3] %}{{ loop.changed(x) }} {% endfor %}", None),
    ("{% for x in [1, 2, 1, 1, 3] %}{{ loop.changed() }} {% endfor %}", None),
    ("{% for x in [1, 2] %}{{ loop.changed(x, 1) }}{{ loop.changed(x, 1) }}{{ loop.changed(x) }} {% endfor %}", None),
    ("{% for m in messages %}{% if loop.changed(m.role) %}[{{ m.role }}]{% endif %}{{ m.content }}{% endfor %}", None),
    ("{% for x in [[1], [1], (1,), 'a', 'a'] %}{{ loop.changed(x) }} {% endfor %}", None),
    ("{% for x in [1, 1.0, true, 2] %}{{ loop.changed(x) }} {% endfor %}", None),
    ("{% for x in [1, 2] %}{% for y in [1, 1] %}{{ loop.changed(y) }}{% endfor %};{% endfor %}", None),
    ("{% for x in [[1, 1], [1]] recursive %}{% if x is iterable %}{{ loop.changed(1) }}{{ loop(x) }}{% else %}{{ loop.changed(x) }}{% endif %}{% endfor %}", None),
    ("{% for x in [1] %}{{ loop.changed }}{% endfor %}", "printing a function is not supported"),
    ("{% for x in [1] %}{{ loop.changed(a=1) }}{% endfor %}", LOOSE),
    ("{% for x in [1, 2, 3] %}{{ loop.cycle('odd', 'even') }} {% endfor %}", None),
    ("{% for x in [1, 2, 3, 4] if x != 2 %}{{ loop.cycle('a', 'b', 'c') }}{% endfor %}", None),
    # ** (left-associative in jinja2, below a sign and above * and /)
    ("{{ 2 ** 3 ** 2 }}|{{ -2 ** 2 }}|{{ 2 ** -1 }}|{{ 0 ** 0 }}|{{ 2 ** -2 ** 2 }}|{{ 3 * 2 ** 2 }}|{{ 2 ** 2 * 3 }}|{{ -2 ** 3 }}", None),
    ("{{ true ** 2 }}|{{ 2 ** true }}|{{ x ** 2 }}|{{ f ** 2 }}|{{ 2 ** x }}|{{ 1.1 ** 10 }}|{{ 1.5 ** -3 }}|{{ (-1.5) ** 3.0 }}", None),
    ("{{ 2 ** 62 }}|{{ (-2) ** 63 }}|{{ 7 ** 22 }}|{{ 10 ** -5 }}|{{ 2 ** -1074 }}|{{ 2 ** -1080 }}|{{ (-2) ** -1081 }}", None),
    ("{{ 1.0000001 ** 100000 }}|{{ 3.3 ** 57 }}|{{ 0.1 ** 7 }}|{{ (-0.0) ** 3 }}|{{ 0.0 ** 0 }}|{{ 1 ** -9 }}|{{ (-1) ** 1001 }}", None),
    ("{{ 1e308 * 10 ** 2 }}|{{ (1e308 * 10) ** 0 }}|{{ (1e308 * 10) ** -1 }}|{{ 1 ** 10000000000000000 }}|{{ (-1) ** 10000000000000001 }}", None),
    ("{{ 2 ** 3|string }}", None),
    ("{{ 'a' ** 2 }}", None),
    ("{{ [1] ** 2 }}", None),
    ("{{ 0 ** -1 }}", None),
    ("{{ 0.0 ** -2 }}", None),
    ("{{ 10.0 ** 400 }}", None),
    ("{{ undefined_v ** 2 }}", None),
    ("{{ 2 ** 64 }}", "an integer past 64 bits is not supported"),
    ("{{ 9 ** 0.5 }}", "** with a fractional exponent (0.5) is not supported"),
    ("{{ (-8) ** (1/3) }}", "** with a fractional exponent"),
    # int arithmetic past 64 bits, which Python's ints hold
    ("{{ 9223372036854775807 + 1 }}", "an integer past 64 bits is not supported"),
    ("{{ -9223372036854775807 - 2 }}", "an integer past 64 bits is not supported"),
    ("{{ 4611686018427387904 * 2 }}", "an integer past 64 bits is not supported"),
    ("{{ -4611686018427387904 * 2 }}|{{ 3037000499 * 3037000499 }}|{{ -9223372036854775807 - 1 }}", None),
]


def main():
    env = environment()
    out = []
    for src, refusal in CASES:
        case = {"src": src}
        try:
            case["output"] = env.from_string(src).render(**copy.deepcopy(VARS))
        except Exception as e:
            case["error"] = f"{type(e).__name__}: {e}"
        if refusal == LOOSE:
            case["loose"] = True
        elif refusal is not None:
            case["refuse"] = refusal
        out.append(case)
    with open(os.path.join(HERE, "constructs.json"), "w", encoding="utf-8") as f:
        json.dump({"vars": VARS, "cases": out}, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
