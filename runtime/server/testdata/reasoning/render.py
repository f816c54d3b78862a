#!/usr/bin/env python3
"""Render GLM's chat templates (GLM-4.6, whose template GLM-4.5's shares,
and GLM-4.7-Flash) with the reasoning conversations of
formats/tokenizer/testdata/reasoning/cases.json, each with its
chat_template_kwargs, as that directory's render.py renders the other
reasoning models' templates (transformers' apply_chat_template: the
environment of formats/jinja/testdata/chat/render.py), and write
golden.json: {template: {case: {"output": text} or {"stage", "error"}}}.

Usage (jinja2 3.1.x; the golden was made with 3.1.6):

    python3 render.py            # from this directory
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..", "..", "..")
CHAT = os.path.join(ROOT, "formats", "jinja", "testdata", "chat")
CASES = os.path.join(ROOT, "formats", "tokenizer", "testdata", "reasoning", "cases.json")
sys.path.insert(0, CHAT)

import render as chat  # noqa: E402

TEMPLATES = ["GLM-4.6", "GLM-4.7-Flash"]


def main():
    with open(CASES, encoding="utf-8") as f:
        spec = json.load(f)
    env = chat.environment()
    out = {}
    for name in TEMPLATES:
        with open(os.path.join(CHAT, "templates", name + ".jinja"), encoding="utf-8", newline="") as f:
            source = f.read()
        out[name] = {}
        for case in spec["cases"]:
            variables = dict(spec["vars"])
            variables.update(case.get("chat_template_kwargs", {}))
            out[name][case["name"]] = chat.render(env, source, case, variables)
    with open(os.path.join(HERE, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
