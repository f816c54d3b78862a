#!/usr/bin/env python3
"""Render every chat template of templates/ with every conversation of
conversations.json as transformers' apply_chat_template renders them, and
write the results to golden/NAME.json.

The environment is the one transformers builds (chat_template_utils.py,
_compile_jinja_template): jinja2's ImmutableSandboxedEnvironment with
trim_blocks and lstrip_blocks, the loopcontrols extension and a
{% generation %} tag that renders its body, the globals raise_exception
and strftime_now, and a tojson filter that is json.dumps with
ensure_ascii=False (its indent, separators and sort_keys passed through).
The variables are those apply_chat_template passes: messages, tools,
documents, add_generation_prompt and the tokenizer's special tokens
(conversations.json's "vars").

strftime_now formats a fixed time, NOW below, instead of the clock so
that the goldens do not change from day to day; the Go test renders with
the same time.

Each golden maps a conversation's name to {"output": text} or, where
jinja2 refuses, {"stage": "parse"|"render"|"raise", "error": message}:
"parse" when jinja2 cannot compile the template, "raise" when the template
called raise_exception (the message is its argument), "render" for any
other error while rendering.

Usage (jinja2 3.1.x; the goldens were made with 3.1.6):

    python3 render.py            # from this directory
"""

import datetime
import json
import os
import sys

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

NOW = datetime.datetime(2024, 3, 5, 14, 7, 9)

HERE = os.path.dirname(os.path.abspath(__file__))


class Raised(jinja2.exceptions.TemplateError):
    """An error a template raised with raise_exception."""


class Generation(jinja2.ext.Extension):
    """{% generation %}...{% endgeneration %}: its body, as transformers'
    AssistantTracker renders it when no tracking is asked for."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        call = self.call_method("_body")
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


def raise_exception(message):
    raise Raised(message)


def strftime_now(fmt):
    return NOW.strftime(fmt)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def environment():
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[Generation, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, source, conv, variables):
    try:
        tmpl = env.from_string(source)
    except Exception as e:  # what jinja2 refuses to compile
        return {"stage": "parse", "error": f"{type(e).__name__}: {e}"}
    kwargs = dict(variables)
    kwargs.update(
        messages=conv["messages"],
        tools=conv.get("tools"),
        documents=conv.get("documents"),
        add_generation_prompt=conv["add_generation_prompt"],
    )
    try:
        return {"output": tmpl.render(**kwargs)}
    except Raised as e:
        return {"stage": "raise", "error": str(e)}
    except Exception as e:
        return {"stage": "render", "error": f"{type(e).__name__}: {e}"}


def main():
    with open(os.path.join(HERE, "conversations.json"), encoding="utf-8") as f:
        spec = json.load(f)
    env = environment()
    tdir = os.path.join(HERE, "templates")
    gdir = os.path.join(HERE, "golden")
    os.makedirs(gdir, exist_ok=True)
    for fn in sorted(os.listdir(tdir)):
        if not fn.endswith(".jinja"):
            continue
        with open(os.path.join(tdir, fn), encoding="utf-8", newline="") as f:
            source = f.read()
        out = {}
        for conv in spec["conversations"]:
            out[conv["name"]] = render(env, source, conv, spec["vars"])
        name = fn[: -len(".jinja")]
        with open(os.path.join(gdir, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False, indent=1)
            f.write("\n")
        summary = " ".join(f"{k}:{v.get('stage', 'ok')}" for k, v in out.items())
        print(f"{name}: {summary}", file=sys.stderr)


if __name__ == "__main__":
    main()
