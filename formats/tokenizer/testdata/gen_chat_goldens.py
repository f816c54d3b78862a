#!/usr/bin/env python3
"""Writes chat_goldens.json: chat templates rendered by jinja2 as
transformers' apply_chat_template renders them, the reference for
formats/tokenizer's TestChatTemplateGoldens.

Run from the repository root, with jinja2 3.1.x installed (no transformers
needed; its environment is rebuilt here):

    python3 formats/tokenizer/testdata/gen_chat_goldens.py

and review the diff of formats/tokenizer/testdata/chat_goldens.json.
"""
import json
import os

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

# The real chat_template strings (see the report of the commit adding this
# file for their sources).
MISTRAL_V01 = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"

MISTRAL_V02 = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"

MISTRAL_V02_SYSTEM = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""

MISTRAL_V03 = """{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""

LLAMA2_CHAT = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"

ZEPHYR = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"

CHATML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

QWEN_CHATML = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

with open(os.path.join(os.path.dirname(__file__), "../../../../shared/fixtures/tokenizers/openchat-3.5-1210/tokenizer_config.json")) as f:
    OPENCHAT = json.load(f)["chat_template"]

# Small templates, one or a few features each.
FEATURES = {
    "whitespace": "a  \n  {% if true %}\n  b {{- ' c ' -}} d\n  {%- endif %}  \n{# note #}\n  {%+ if true %}e{% endif %}\n\t{% if true -%}  \n f{%- endif %}\n{{ 'g' }}\n",
    "literals": "{{ 'it\\'s' }}|{{ \"q\\\"\\n\\t\\\\\" }}|{{ 'a' 'b' }}|{{ 42 }}|{{ -7 }}|{{ 2.5 }}|{{ true }}|{{ none }}|{{ [1, 'x', none] | tojson }}|{{ {'k': 'v', 'n': [1, 2]} | tojson }}|{{ '\\u00e9\\x41' }}",
    "operators": "{{ 1 + 2 }}|{{ 'a' + 'b' }}|{{ 'a' ~ 1 ~ none }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 3 * 4 }}|{{ 'ab' * 2 }}|{{ 5 - 8 }}|{{ 1 == 1.0 }}|{{ 'a' != 'b' }}|{{ 1 < 2 <= 2 }}|{{ 'b' > 'a' }}|{{ 2 >= 3 }}|{{ 'x' in 'xyz' }}|{{ 2 not in [1, 3] }}|{{ 'k' in {'k': 1} }}|{{ not none }}|{{ 0 or 'y' }}|{{ 'a' and 'b' }}|{{ 7 / 2 }}",
    "tests": "{% set e = '' %}{{ x is defined }}|{{ e is defined }}|{{ x is undefined }}|{{ none is none }}|{{ e is not none }}|{{ e is string }}|{{ 1 is string }}|{{ 3 is odd }}|{{ 4 is even }}|{{ {} is mapping }}|{{ 1 is number }}|{{ 'a' is eq 'a' }}|{{ 'a' is not equalto('b') }}",
    "filters": "{{ '  x y  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'aB' | upper }}|{{ 'aB' | lower }}|{{ 'hello wORLD-x (y' | title }}|{{ 'hELLO' | capitalize }}|{{ 'héllo' | length }}|{{ [1, 2] | length }}|{{ x | default('dflt') }}|{{ '' | default('e', true) }}|{{ ['a', 'b'] | join(', ') }}|{{ [3, 4] | first }}|{{ [3, 4] | last }}|{{ 5 | string }}|{{ {'a': 'é\"\\n<'} | tojson }}|{{ [1, {'b': none}] | tojson(indent=2) }}|{{ messages | selectattr('role', 'equalto', 'user') | list | length }}",
    "methods": "{% set s = '  Hello World  ' %}{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.upper() }}|{{ s.lower() }}|{{ s.strip().startswith('Hell') }}|{{ s.strip().endswith(('x', 'ld')) }}|{{ s.split() | join(',') }}|{{ 'a,b,,c'.split(',') | join('/') }}|{{ 'hello wORLD it\\'s'.title() }}|{{ 'xxhixx'.strip('x') }}|{{ 'a-b'.replace('-', '+') }}",
    "subscripts": "{{ messages[0]['role'] }}|{{ messages[0].role }}|{{ messages[-1].content }}|{{ messages[1:] | length }}|{{ messages[:1] | length }}|{{ 'abcdef'[1:4] }}|{{ 'abcdef'[::-1] }}|{{ 'abcdef'[-2:] }}|{{ messages[0].nope is defined }}|{{ {'k': 'v'}.k }}|{{ {'k': 'v'}.get('z', 'd') }}",
    "loops": "{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.length }}/{{ loop.first }}/{{ loop.last }}/{{ loop.revindex }} {% endfor %}|{% for m in messages if m.role == 'user' %}{{ loop.index }}{{ m.role }} {% endfor %}|{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}|{% for c in 'ab' %}{{ c }}.{% endfor %}|{% for i in range(3) %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}|{% for x in nothing %}never{% endfor %}",
    "set_namespace": "{% set ns = namespace(found=false, n=0) %}{% for m in messages %}{% if m.role == 'system' %}{% set ns.found = true %}{% endif %}{% set ns.n = ns.n + 1 %}{% set inner = 'x' %}{% endfor %}{{ ns.found }}|{{ ns.n }}|{{ inner is defined }}{% set a = 1 %}{% if true %}{% set a = 2 %}{% endif %}|{{ a }}",
    "inline_if": "{{ 'yes' if add_generation_prompt else 'no' }}|{{ 'only' if false }}|{{ ('a' if messages else 'b') + '!' }}",
    "content_ops": "{% for m in messages %}<{{ m.content | trim }}|{{ m.content.strip().upper() }}|{{ m['content'][:3] }}|{{ m.content | length }}>{% endfor %}",
    "scoping": "{% for m in messages %}{% if loop.first %}{% set a = 'first' %}{% endif %}{{ a }}.{% endfor %}|{% for m in messages %}{% set b = m.role %}{% endfor %}{{ b }}|{{ m }}|{{ loop is defined }}",
    "undefined": "{{ x | trim }}|{{ x | upper }}|{{ x | join }}|{{ x | string }}|{{ x | length }}|{{ 'a' in x }}|{{ x ~ 'a' }}|{{ not x }}|{{ x == none }}|{% for a in x %}never{% endfor %}|{{ x | default('d') }}|{{ messages[0].nope is defined }}",
    "numbers": "{{ 1e3 }}|{{ 0.1 + 0.2 }}|{{ 10 / 4 }}|{{ 1 / 3 }}|{{ 1e20 * 10 }}|{{ 0.00001 }}|{{ 2.5e-3 }}|{{ -(messages | length) }}|{{ -2 | abs if false else -2 }}|{{ 3 // 2.0 }}|{{ -3 % 2.5 }}|{{ 1_000 }}|{{ true + 1 }}",
    "repr_map_tuples": "{{ messages[0] }}|{{ messages | map(attribute='role') | list }}|{{ ['a', 'B'] | map('upper') | join }}|{{ [none, true, 1.5, \"it's\", 'say \"x\"', '\\n\\t\\x01é'] }}|{{ (1, 'a') }}|{{ (1,) }}|{{ (1, 2) == [1, 2] }}|{% for k, v in {'a': 1, 'b': 'x'}.items() %}{{ k }}{{ v }}{% endfor %}|{{ {'a': 1}.items() | list }}|{{ range(1, 7, 2) | list }}",
    "unicode_case": "{% for m in messages %}<{{ m.content | title }}|{{ m.content.title() }}|{{ m.content | capitalize }}|{{ m.content | upper }}|{{ m.content.lower() }}>{% endfor %}|{{ 'ßtraße ﬁne' | title }}|{{ 'ßtraße ﬁne'.title() }}|{{ 'ß' | capitalize }}",
    "raise": "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system messages, got: ' + m.content) }}{% endif %}{{ m.content }}{% endfor %}",
}

TEMPLATES = {
    "mistral-7b-instruct-v0.1": MISTRAL_V01,
    "mistral-7b-instruct-v0.2": MISTRAL_V02,
    "mistral-7b-instruct-v0.2-system": MISTRAL_V02_SYSTEM,
    "mistral-7b-instruct-v0.3": MISTRAL_V03,
    "llama-2-7b-chat": LLAMA2_CHAT,
    "zephyr-7b-beta": ZEPHYR,
    "chatml-openhermes-2.5": CHATML,
    "chatml-qwen": QWEN_CHATML,
    "openchat-3.5": OPENCHAT,
}
TEMPLATES.update({"feature-" + k: v for k, v in FEATURES.items()})

CONVERSATIONS = {
    "single": [{"role": "user", "content": "Hello"}],
    "multi": [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there"},
        {"role": "user", "content": "Who are you?"},
    ],
    "system": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there"},
        {"role": "user", "content": "Another question"},
    ],
    "spaces-unicode": [
        {"role": "user", "content": "  leading and trailing  "},
        {"role": "assistant", "content": "\n Grüße, 世界 ✓ 🙂\t"},
        {"role": "user", "content": "Ünïcödé ß </s> [INST]"},
    ],
    "not-alternating": [
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},
    ],
}


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers' tojson: json.dumps, no HTML escaping.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def main():
    env = environment()
    cases = []
    for tname, src in TEMPLATES.items():
        tmpl = env.from_string(src)
        for cname, msgs in CONVERSATIONS.items():
            for gen in (False, True):
                case = {"template": tname, "conversation": cname, "add_generation_prompt": gen}
                try:
                    case["rendered"] = tmpl.render(messages=msgs, tools=None, documents=None,
                                                   add_generation_prompt=gen, bos_token="<s>", eos_token="</s>")
                except jinja2.exceptions.TemplateError as e:
                    case["raised"] = e.message if hasattr(e, "message") else str(e)
                    case["error_type"] = type(e).__name__
                cases.append(case)
    out = {
        "generator": "formats/tokenizer/testdata/gen_chat_goldens.py, jinja2 " + jinja2.__version__,
        "templates": TEMPLATES,
        "conversations": CONVERSATIONS,
        "cases": cases,
    }
    path = os.path.join(os.path.dirname(__file__), "chat_goldens.json")
    with open(path + ".tmp", "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
