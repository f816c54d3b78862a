#!/usr/bin/env python3
"""Render the reasoning models' chat templates (DeepSeek-R1 distills, QwQ,
Qwen3, Qwen3.5, Ministral 3 Reasoning) with the conversations of cases.json, each with its
chat_template_kwargs, as transformers' apply_chat_template renders them
(the environment of formats/jinja/testdata/chat/render.py, whose
functions this imports), and write golden.json: {template: {case:
{"output": text} or {"stage", "error"}}}.

Usage (jinja2 3.1.x; the golden was made with 3.1.6):

    python3 render.py            # from this directory
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CHAT = os.path.join(HERE, "..", "..", "..", "jinja", "testdata", "chat")
sys.path.insert(0, CHAT)

import render as chat  # noqa: E402

TEMPLATES = [
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B",
    "Qwen-QwQ-32B",
    "Qwen-Qwen3-0.6B",
    "Qwen3.5-4B",
    "mistralai-Ministral-3-14B-Reasoning-2512",
]

# Templates that take an assistant message's reasoning as a content chunk
# {"type": "thinking", "thinking": text} before its text (Mistral's, as
# mistral_common's ThinkChunk), not as reasoning_content.
THINKING_CHUNKS = {"mistralai-Ministral-3-14B-Reasoning-2512"}


def thinking_chunks(case):
    """case with each assistant message's reasoning_content as a thinking
    chunk before its content's text."""
    case = dict(case)
    msgs = []
    for m in case["messages"]:
        if m.get("role") == "assistant" and m.get("reasoning_content"):
            m = dict(m)
            chunks = [{"type": "thinking", "thinking": m.pop("reasoning_content")}]
            if m.get("content"):
                chunks.append({"type": "text", "text": m["content"]})
            m["content"] = chunks
        msgs.append(m)
    case["messages"] = msgs
    return case


def main():
    with open(os.path.join(HERE, "cases.json"), encoding="utf-8") as f:
        spec = json.load(f)
    env = chat.environment()
    out = {}
    for name in TEMPLATES:
        with open(os.path.join(CHAT, "templates", name + ".jinja"), encoding="utf-8", newline="") as f:
            source = f.read()
        out[name] = {}
        for case in spec["cases"]:
            if name in THINKING_CHUNKS:
                case = thinking_chunks(case)
            variables = dict(spec["vars"])
            variables.update(case.get("chat_template_kwargs", {}))
            out[name][case["name"]] = chat.render(env, source, case, variables)
    with open(os.path.join(HERE, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
