package server

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/server/openai"
)

// jinjaChat holds the real chat templates and jinja2's renders of them
// (formats/jinja/testdata/chat).
var jinjaChat = filepath.Join("..", "..", "formats", "jinja", "testdata", "chat")

// readTemplate returns a template of jinjaChat's by its file's name.
func readTemplate(t *testing.T, name string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(jinjaChat, "templates", name+".jinja"))
	if err != nil {
		t.Fatal(err)
	}
	return string(src)
}

// templateTokenizer is openchat-tiny's tokenizer with chat_template src,
// eos_token </s> (the goldens'), and, where marker is set, its added token
// <|pad_0|> (id 32001) renamed marker, special or not: a model's
// tool-call marker as one token, which the tiny model's vocabulary lacks.
func templateTokenizer(t *testing.T, src, marker string, special bool) *tokenizer.Tokenizer {
	t.Helper()
	from := fixtures.Path(t, "models/openchat-tiny")
	dir := t.TempDir()
	rewrite := func(name string, edit func(string) string) {
		data, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if marker != "" {
			text = strings.ReplaceAll(text, "<|pad_0|>", marker)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(edit(text)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// (Only the marker's own entries have "special": true next to its
	// content: tokenizer.json's added_tokens and the config's
	// added_tokens_decoder list it with its flags.)
	setSpecial := func(text string) string {
		if marker == "" || special {
			return text
		}
		var v any
		if err := json.Unmarshal([]byte(text), &v); err != nil {
			t.Fatal(err)
		}
		var walk func(any)
		walk = func(v any) {
			switch x := v.(type) {
			case map[string]any:
				if x["content"] == marker {
					x["special"] = false
				}
				for _, e := range x {
					walk(e)
				}
			case []any:
				for _, e := range x {
					walk(e)
				}
			}
		}
		walk(v)
		out, _ := json.Marshal(v)
		return string(out)
	}
	rewrite("tokenizer.json", setSpecial)
	rewrite("added_tokens.json", func(s string) string { return s })
	rewrite("special_tokens_map.json", func(s string) string { return s })
	rewrite("tokenizer_config.json", func(s string) string {
		var cfg map[string]any
		if err := json.Unmarshal([]byte(setSpecial(s)), &cfg); err != nil {
			t.Fatal(err)
		}
		cfg["chat_template"] = src
		cfg["eos_token"] = "</s>"
		out, _ := json.Marshal(cfg)
		return string(out)
	})
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestDetectToolFormat: every real template of jinjaChat gets the format
// it writes a call in (its tools golden shows it): the ones listed, and
// the generic format for the rest (<function=...>, <tool_calls>, Kimi's
// and DeepSeek's markers, or none).
func TestDetectToolFormat(t *testing.T) {
	want := map[string]*toolFormat{
		"Qwen-Qwen2.5-7B-Instruct": hermesFormat, "Qwen-Qwen3-0.6B": hermesFormat, "Qwen-QwQ-32B": hermesFormat,
		"NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use": hermesFormat, "NousResearch-Hermes-3-Llama-3.1-8B-tool_use": hermesFormat,
		"MiMo-VL": hermesFormat, "Bielik-11B-v3.0-Instruct": hermesFormat, "Reka-Edge": hermesFormat,
		"ibm-granite-granite-4.0": hermesFormat, "ibm-granite-granite-4.1": hermesFormat,
		"meta-llama-Llama-3.1-8B-Instruct": llama3Format, "meta-llama-Llama-3.2-3B-Instruct": llama3Format,
		"meta-llama-Llama-3.3-70B-Instruct":    llama3Format,
		"mistralai-Mistral-Nemo-Instruct-2407": mistralFormat,
		"unsloth-mistral-Devstral-Small-2507":  mistralArgsFormat, "mistralai-Ministral-3-14B-Reasoning-2512": mistralArgsFormat,
		"Mistral-Small-3.2-24B-Instruct-2506": mistralCallIDFormat,
		"Qwen3-Coder":                         qwenXMLFormat, "Qwen3.5-4B": qwenXMLFormat, "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16": qwenXMLFormat,
		"StepFun3.5-Flash": qwenXMLFormat,
		"GLM-4.6":          glm45Format, "GLM-4.7-Flash": glm47Format,
		// (Poolside's Laguna templates write GLM's calls.)
		"poolside-Laguna-XS.2": glm45Format, "poolside-Laguna-XS-2.1": glm45Format, "poolside-Laguna-S-2.1": glm47Format,
	}
	names, err := filepath.Glob(filepath.Join(jinjaChat, "templates", "*.jinja"))
	if err != nil || len(names) < 60 {
		t.Fatalf("%d templates: %v", len(names), err)
	}
	found := 0
	for _, path := range names {
		name := strings.TrimSuffix(filepath.Base(path), ".jinja")
		src := readTemplate(t, name)
		got := detectToolFormat(templateTokenizer(t, src, "", false))
		if got != want[name] {
			t.Errorf("%s: format %v, want %v", name, formatName(got), formatName(want[name]))
		}
		if got != nil {
			found++
		}
	}
	if found != len(want) {
		t.Errorf("%d native formats found, want %d", found, len(want))
	}
}

func formatName(f *toolFormat) string {
	if f == nil {
		return "generic"
	}
	return f.name
}

// TestNativePrompt: the tools conversations of conversations.json sent as
// OpenAI requests (arguments as JSON text, tool messages without a name)
// render under real templates as jinja2 rendered the conversations
// themselves (formats/jinja/testdata/chat/golden): the tools, the calls
// and the results reach the template as transformers gives them.
func TestNativePrompt(t *testing.T) {
	var convs struct {
		Conversations []struct {
			Name     string            `json:"name"`
			Tools    json.RawMessage   `json:"tools"`
			Messages []json.RawMessage `json:"messages"`
		} `json:"conversations"`
	}
	data, err := os.ReadFile(filepath.Join(jinjaChat, "conversations.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &convs); err != nil {
		t.Fatal(err)
	}
	bodies := map[string]string{}
	for _, c := range convs.Conversations {
		if c.Name != "tools" && c.Name != "two_calls" {
			continue
		}
		var msgs []string
		for _, raw := range c.Messages {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			delete(m, "name") // (OpenAI's tool messages have none)
			if calls, ok := m["tool_calls"]; ok {
				var list []struct {
					ID       string `json:"id"`
					Type     string `json:"type"`
					Function struct {
						Name      string          `json:"name"`
						Arguments json.RawMessage `json:"arguments"`
					} `json:"function"`
				}
				if err := json.Unmarshal(calls, &list); err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, l := range list {
					out = append(out, fmt.Sprintf(`{"id": %q, "type": "function", "function": {"name": %q, "arguments": %q}}`, l.ID, l.Function.Name, l.Function.Arguments))
				}
				m["tool_calls"] = json.RawMessage("[" + strings.Join(out, ", ") + "]")
			}
			b, _ := json.Marshal(m)
			msgs = append(msgs, string(b))
		}
		bodies[c.Name] = fmt.Sprintf(`{"messages": [%s], "tools": %s}`, strings.Join(msgs, ", "), c.Tools)
	}
	for _, name := range []string{"Qwen-Qwen2.5-7B-Instruct", "NousResearch-Hermes-3-Llama-3.1-8B-tool_use", "meta-llama-Llama-3.1-8B-Instruct", "mistralai-Mistral-Nemo-Instruct-2407",
		"unsloth-mistral-Devstral-Small-2507", "mistralai-Ministral-3-14B-Reasoning-2512", "Mistral-Small-3.2-24B-Instruct-2506", "Qwen3-Coder", "Qwen3.5-4B", "GLM-4.6", "GLM-4.7-Flash"} {
		var golden map[string]struct {
			Output *string `json:"output"`
		}
		data, err := os.ReadFile(filepath.Join(jinjaChat, "golden", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &golden); err != nil {
			t.Fatal(err)
		}
		tok := templateTokenizer(t, readTemplate(t, name), "", false)
		for conv, body := range bodies {
			want := golden[conv].Output
			if want == nil {
				continue // (Llama 3 refuses two calls)
			}
			t.Run(name+"/"+conv, func(t *testing.T) {
				req, err := openai.Parse([]byte(body), true)
				if err != nil {
					t.Fatal(err)
				}
				opts := tokenizer.ChatOptions{AddGenerationPrompt: true}
				msgs, _, tools := ChatMessages(req, tok, opts)
				opts.Tools = tools
				got, err := tok.RenderChat(msgs, opts)
				if err != nil {
					t.Fatal(err)
				}
				if got != *want {
					t.Errorf("\n got %q\nwant %q", got, *want)
				}
			})
		}
	}
}

// nativeCase is a reply in a format's real form and what it means.
type nativeCase struct {
	name    string
	f       *toolFormat
	text    string
	content *string  // the message's content
	calls   []string // name(arguments) of each call
	form    string
	// streamed, where set, is the content a stream sends where it is not
	// the message's: a reply cut in a call sends the text before it (and
	// the call as far as it came), and the message is then the raw text.
	streamed *string
}

func strp(s string) *string { return &s }

// nativeCases are replies as the models write them (the formats' model
// cards, llama.cpp's test-chat.cpp and vLLM's tool parser tests, retyped).
var nativeCases = []nativeCase{
	{"hermes: one call", hermesFormat, "<tool_call>\n{\"name\": \"get_current_weather\", \"arguments\": {\"city\": \"Dallas\", \"state\": \"TX\", \"unit\": \"fahrenheit\"}}\n</tool_call>",
		nil, []string{`get_current_weather({"city":"Dallas","state":"TX","unit":"fahrenheit"})`}, "tool_calls", nil},
	{"hermes: text first", hermesFormat, "Let me calculate that.\n<tool_call>\n{\"name\": \"calculator\", \"arguments\": {\"a\": 5, \"b\": 3}}\n</tool_call>",
		strp("Let me calculate that."), []string{`calculator({"a":5,"b":3})`}, "tool_calls", nil},
	{"hermes: two calls", hermesFormat, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2.5}}\n</tool_call>",
		nil, []string{`get_weather({"city":"Paris","unit":"celsius"})`, `add({"a":1,"b":2.5})`}, "tool_calls", nil},
	{"hermes: arguments first, escapes", hermesFormat, "<tool_call>\n{\"arguments\": {\"text\": \"caf\\u00e9 \\\"x\\\" 日本\"}, \"name\": \"echo\"}\n</tool_call>",
		nil, []string{`echo({"text":"caf\u00e9 \"x\" 日本"})`}, "tool_calls", nil},
	{"hermes: text only", hermesFormat, "Hello! The <tool> tag is HTML-like; no call here.", strp("Hello! The <tool> tag is HTML-like; no call here."), nil, "response", nil},
	{name: "hermes: cut in a call", f: hermesFormat, text: "Sure.\n<tool_call>\n{\"name\": \"add\", \"argu",
		content: strp("Sure.\n<tool_call>\n{\"name\": \"add\", \"argu"), form: "response", streamed: strp("Sure.")},
	{"llama3: a call", llama3Format, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}",
		nil, []string{`get_weather({"city":"Paris","unit":"celsius"})`}, "tool_calls", nil},
	{"llama3: whitespace first", llama3Format, "\n {\"name\": \"searchTool\", \"parameters\": {\"query\": \"test\", \"n\": [1, {\"x\": null}]}}",
		nil, []string{`searchTool({"query":"test","n":[1,{"x":null}]})`}, "tool_calls", nil},
	{"llama3: text", llama3Format, "The weather in Paris is {\"sunny\"}.", strp("The weather in Paris is {\"sunny\"}."), nil, "response", nil},
	{"mistral: two calls", mistralFormat, "[TOOL_CALLS][{\"name\": \"add\", \"arguments\":{\"a\": 3.5, \"b\": 4}}, {\"name\": \"get_current_weather\", \"arguments\":{\"city\": \"San Francisco\", \"state\": \"CA\", \"unit\": \"celsius\"}}]",
		nil, []string{`add({"a":3.5,"b":4})`, `get_current_weather({"city":"San Francisco","state":"CA","unit":"celsius"})`}, "tool_calls", nil},
	{"mistral: spaces and an id", mistralFormat, "[TOOL_CALLS] [ {\"name\":\"get_current_weather\", \"arguments\":{\"city\": \"San Francisco\"}, \"id\": \"abcDEF123\"}]",
		nil, []string{`get_current_weather({"city":"San Francisco"})`}, "tool_calls", nil},
	{"mistral: text first", mistralFormat, "I'll check. [TOOL_CALLS][{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}]",
		strp("I'll check."), []string{`add({"a":1,"b":2})`}, "tool_calls", nil},
	{"mistral: text with a bracket", mistralFormat, "Use [TOOL] or [x].", strp("Use [TOOL] or [x]."), nil, "response", nil},
	{"mistral-args: one call", mistralArgsFormat, `[TOOL_CALLS]get_current_weather[ARGS]{"city": "San Francisco", "state": "CA", "unit": "celsius"}`,
		nil, []string{`get_current_weather({"city":"San Francisco","state":"CA","unit":"celsius"})`}, "tool_calls", nil},
	{"mistral-args: text first, two calls", mistralArgsFormat, `Let me check.[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "unit": "celsius"}[TOOL_CALLS]add[ARGS]{"a": 1, "b": 2.5}`,
		strp("Let me check."), []string{`get_weather({"city":"Paris","unit":"celsius"})`, `add({"a":1,"b":2.5})`}, "tool_calls", nil},
	{"mistral-args: nested, escapes", mistralArgsFormat, "[TOOL_CALLS]write_file[ARGS]{\"path\": \"a]b.txt\", \"text\": \"[ARGS] \\\"q\\\" caf\\u00e9\", \"opts\": {\"n\": [1, {\"x\": null}]}}",
		nil, []string{`write_file({"path":"a]b.txt","text":"[ARGS] \"q\" caf\u00e9","opts":{"n":[1,{"x":null}]}})`}, "tool_calls", nil},
	{"mistral-args: text", mistralArgsFormat, "Use [TOOL] or [ARGS].", strp("Use [TOOL] or [ARGS]."), nil, "response", nil},
	{name: "mistral-args: cut in the name", f: mistralArgsFormat, text: "Sure. [TOOL_CALLS]get_wea",
		content: strp("Sure. [TOOL_CALLS]get_wea"), form: "response", streamed: strp("Sure.")},
	{name: "mistral-args: cut in the arguments", f: mistralArgsFormat, text: `[TOOL_CALLS]add[ARGS]{"a": 1, "b"`,
		content: strp(`[TOOL_CALLS]add[ARGS]{"a": 1, "b"`), form: "response", streamed: strp("")},
	{"mistral-call-id: ids", mistralCallIDFormat, `[TOOL_CALLS]get_weather[CALL_ID]abc123DEF[ARGS]{"city": "Paris", "unit": "celsius"}[TOOL_CALLS]add[CALL_ID]xyz789GHI[ARGS]{"a": 1, "b": 2.5}`,
		nil, []string{`get_weather({"city":"Paris","unit":"celsius"})`, `add({"a":1,"b":2.5})`}, "tool_calls", nil},
	{"mistral-call-id: no id", mistralCallIDFormat, `[TOOL_CALLS]add[ARGS]{"a": 1, "b": 2}`,
		nil, []string{`add({"a":1,"b":2})`}, "tool_calls", nil},
	{"qwen3-xml: one call", qwenXMLFormat, "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=unit>\ncelsius\n</parameter>\n</function>\n</tool_call>",
		nil, []string{`get_weather({"city":"Paris","unit":"celsius"})`}, "tool_calls", nil},
	{"qwen3-xml: text first, two calls, types", qwenXMLFormat, "Let me check.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nSan Francisco, CA\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=add>\n<parameter=a>\n1\n</parameter>\n<parameter=b>\n2.5\n</parameter>\n</function>\n</tool_call>",
		strp("Let me check."), []string{`get_weather({"city":"San Francisco, CA"})`, `add({"a":1,"b":"2.5"})`}, "tool_calls", nil},
	{"qwen3-xml: code, JSON values", qwenXMLFormat, "<tool_call>\n<function=write_file>\n<parameter=path>\n/tmp/a b.py\n</parameter>\n<parameter=text>\n\ndef f(x):\n    return \"a\\\\b\" < x <div>\n\n</parameter>\n<parameter=append>\nTrue\n</parameter>\n<parameter=opts>\n{\"n\": [1, {\"x\": null}]}\n</parameter>\n<parameter=lines>\nnull\n</parameter>\n<parameter=mode>\n0644\n</parameter>\n</function>\n</tool_call>",
		nil, []string{`write_file({"path":"/tmp/a b.py","text":"\ndef f(x):\n    return \"a\\\\b\" < x <div>\n","append":true,"opts":{"n":[1,{"x":null}]},"lines":null,"mode":"0644"})`}, "tool_calls", nil},
	{"qwen3-xml: a closing tag in a value", qwenXMLFormat, "<tool_call>\n<function=write_file>\n<parameter=text>\ns = '</parameter>'\n</function>\n</parameter>\n</function>\n</tool_call>",
		nil, []string{`write_file({"text":"s = '</parameter>'\n</function>"})`}, "tool_calls", nil},
	{"qwen3-xml: text", qwenXMLFormat, "Use <function=f> or <tool> here.", strp("Use <function=f> or <tool> here."), nil, "response", nil},
	{name: "qwen3-xml: cut in a parameter", f: qwenXMLFormat, text: "Sure.\n<tool_call>\n<function=add>\n<parameter=a>\n1",
		content: strp("Sure.\n<tool_call>\n<function=add>\n<parameter=a>\n1"), form: "response", streamed: strp("Sure.")},
	// (vLLM's glm4_moe and glm47_moe parser tests.)
	{"glm45: one call", glm45Format, "<tool_call>get_current_weather\n    <arg_key>city</arg_key>\n    <arg_value>Dallas</arg_value>\n    <arg_key>state</arg_key>\n    <arg_value>TX</arg_value>\n    <arg_key>unit</arg_key>\n    <arg_value>fahrenheit</arg_value>\n    </tool_call>",
		nil, []string{`get_current_weather({"city":"Dallas","state":"TX","unit":"fahrenheit"})`}, "tool_calls", nil},
	{"glm45: two calls", glm45Format, "<tool_call>get_current_weather\n    <arg_key>city</arg_key>\n    <arg_value>Dallas</arg_value>\n    </tool_call>\n    <tool_call>get_current_weather\n    <arg_key>city</arg_key>\n    <arg_value>Orlando</arg_value>\n    <arg_key>state</arg_key>\n    <arg_value>FL</arg_value>\n    </tool_call>",
		nil, []string{`get_current_weather({"city":"Dallas"})`, `get_current_weather({"city":"Orlando","state":"FL"})`}, "tool_calls", nil},
	{"glm45: text first, Chinese", glm45Format, "I will help you get the weather.<tool_call>get_weather\n    <arg_key>city</arg_key>\n    <arg_value>北京</arg_value>\n    <arg_key>date</arg_key>\n    <arg_value>2025-08-01</arg_value>\n    </tool_call>",
		strp("I will help you get the weather."), []string{`get_weather({"city":"北京","date":"2025-08-01"})`}, "tool_calls", nil},
	{"glm45: text between calls", glm45Format, "I will help you get the weather info.\n\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Beijing</arg_value>\n</tool_call>\n\nmeanwhile, Shanghai.\n\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Shanghai</arg_value>\n</tool_call>",
		strp("I will help you get the weather info."), []string{`get_weather({"city":"Beijing"})`, `get_weather({"city":"Shanghai"})`}, "tool_calls", nil},
	{"glm45: no arguments", glm45Format, "<tool_call>get_current_time\n</tool_call>",
		nil, []string{`get_current_time({})`}, "tool_calls", nil},
	{"glm45: values by type", glm45Format, "<tool_call>calculate\n<arg_key>operation</arg_key>\n<arg_value>add</arg_value>\n<arg_key>a</arg_key>\n<arg_value>42</arg_value>\n<arg_key>b</arg_key>\n<arg_value> 3.14 </arg_value>\n<arg_key>enabled</arg_key>\n<arg_value>True</arg_value>\n<arg_key>opts</arg_key>\n<arg_value>{\"n\": [1, null]}</arg_value>\n</tool_call>",
		nil, []string{`calculate({"operation":"add","a":42,"b":3.14,"enabled":true,"opts":{"n":[1,null]}})`}, "tool_calls", nil},
	{"glm45: a string kept as written", glm45Format, "<tool_call>apply_diff\n<arg_key>s</arg_key>\n<arg_value>    indented code    </arg_value>\n<arg_key>n</arg_key>\n<arg_value>12</arg_value>\n</tool_call>",
		nil, []string{`apply_diff({"s":"    indented code    ","n":"12"})`}, "tool_calls", nil},
	{"glm45: code in a string", glm45Format, "<tool_call>apply_diff\n<arg_key>s</arg_key>\n<arg_value>if a < b:\n    print(\"</b>\" + '\\n')\n</arg_value>\n</tool_call>",
		nil, []string{`apply_diff({"s":"if a < b:\n    print(\"</b>\" + '\\n')\n"})`}, "tool_calls", nil},
	{"glm45: text", glm45Format, "Use <tool> or <arg_key> here.", strp("Use <tool> or <arg_key> here."), nil, "response", nil},
	{name: "glm45: cut in a value", f: glm45Format, text: "Sure.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Bei",
		content: strp("Sure.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Bei"), form: "response", streamed: strp("Sure.")},
	{"glm47: two calls", glm47Format, "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value><arg_key>unit</arg_key><arg_value>celsius</arg_value></tool_call><tool_call>add<arg_key>a</arg_key><arg_value>1</arg_value><arg_key>b</arg_key><arg_value>2.5</arg_value></tool_call>",
		nil, []string{`get_weather({"city":"Paris","unit":"celsius"})`, `add({"a":1,"b":2.5})`}, "tool_calls", nil},
	{"glm47: no arguments, whitespace first", glm47Format, "  \n  <tool_call>get_current_time</tool_call>",
		nil, []string{`get_current_time({})`}, "tool_calls", nil},
	{"glm47: text first, a newline between key and value", glm47Format, "Let me check.<tool_call>get_weather<arg_key>city</arg_key>\n<arg_value>Paris</arg_value></tool_call>",
		strp("Let me check."), []string{`get_weather({"city":"Paris"})`}, "tool_calls", nil},
}

// xmlTools are the tools of the qwen3-xml cases, whose parameters' types
// say how their raw values read.
var xmlTools = []openai.Tool{
	{Name: "get_weather", Parameters: json.RawMessage(`{"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}`)},
	{Name: "add", Parameters: json.RawMessage(`{"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "integer"}}, "required": ["a", "b"]}`)},
	{Name: "write_file", Parameters: json.RawMessage(`{"type": "object", "properties": {"path": {"type": "string"}, "text": {"type": "string"}, "append": {"type": "boolean"}, "opts": {"type": "object"}, "lines": {"type": ["array", "null"]}}}`)},
	{Name: "apply_diff", Parameters: json.RawMessage(`{"type": "object", "properties": {"s": {"type": "string"}, "n": {"type": "string"}}, "required": ["s"]}`)},
}

// TestNativeScanner reads each case whole (the message) and streamed in
// pieces of 1 to 7 bytes: the content sent, merged, is the message's,
// the deltas merged are its calls, and the form is the case's.
func TestNativeScanner(t *testing.T) {
	for _, c := range nativeCases {
		t.Run(c.name, func(t *testing.T) {
			m, finish := nativeMessage(c.f, xmlTools, c.text, "stop", "tool_calls")
			if str(m.Content) != str(c.content) {
				t.Errorf("content %s, want %s", str(m.Content), str(c.content))
			}
			var got []string
			for _, call := range m.ToolCalls {
				got = append(got, call.Function.Name+"("+call.Function.Arguments+")")
				if call.Type != "function" || !callID.MatchString(call.ID) || c.f.shortIDs != (len(call.ID) == 9) {
					t.Errorf("call %+v: want type function and an id of the format", call)
				}
			}
			if strings.Join(got, " ") != strings.Join(c.calls, " ") {
				t.Errorf("calls %q, want %q", got, c.calls)
			}
			if want := map[string]string{"tool_calls": "tool_calls", "response": "stop"}[c.form]; finish != want {
				t.Errorf("finish %q, want %q", finish, want)
			}
			for size := 1; size <= 7; size++ {
				s := newNativeScanner(c.f, xmlTools)
				var content strings.Builder
				var calls []string
				for i := 0; i < len(c.text); i += size {
					text, deltas := s.Feed(c.text[i:min(i+size, len(c.text))])
					content.WriteString(text)
					for _, d := range deltas {
						if d.Index == len(calls) {
							if d.ID == "" || d.Function.Name == "" || d.Function.Arguments != "" {
								t.Fatalf("pieces of %d: call %d's first delta %+v", size, d.Index, d)
							}
							calls = append(calls, d.Function.Name+"(")
						} else if d.Index == len(calls)-1 && d.ID == "" && d.Function.Name == "" {
							calls[d.Index] += d.Function.Arguments
						} else {
							t.Fatalf("pieces of %d: delta %+v out of place", size, d)
						}
					}
				}
				content.WriteString(s.Finish())
				for i := range calls {
					calls[i] += ")"
				}
				if s.Form() != c.form {
					t.Errorf("pieces of %d: form %q, want %q", size, s.Form(), c.form)
				}
				want := ""
				switch {
				case c.streamed != nil:
					want = *c.streamed
				case c.content != nil:
					want = *c.content
				}
				if content.String() != want {
					t.Errorf("pieces of %d: content %q, want %q", size, content.String(), want)
				}
				// (A call cut midway was sent as far as it came.)
				if c.streamed == nil && strings.Join(calls, " ") != strings.Join(c.calls, " ") {
					t.Errorf("pieces of %d: calls %q, want %q", size, calls, c.calls)
				}
			}
		})
	}
}

// nativeServers are the real templates the end-to-end tests serve
// openchat-tiny under, each with its format's marker as one token where
// the format has one (special as Mistral's [TOOL_CALLS] is, which the
// reply keeps where it drops other special tokens), and the token that
// starts a call: the marker, or Llama 3's "{".
var nativeServers = []struct {
	name, template, marker string
	special                bool
	f                      *toolFormat
	trigger                string
	// extra is more of each request's body (the template's variables);
	// only, where set, the cases run (the others' paths are another
	// format's, tested there).
	extra string
	only  []string
}{
	{"hermes", "Qwen-Qwen2.5-7B-Instruct", "<tool_call>", false, hermesFormat, "<tool_call>", "", nil},
	{"llama3", "meta-llama-Llama-3.1-8B-Instruct", "", false, llama3Format, "{", "", nil},
	{"mistral", "mistralai-Mistral-Nemo-Instruct-2407", "[TOOL_CALLS]", true, mistralFormat, "[TOOL_CALLS]", "", nil},
	{"mistral-args", "unsloth-mistral-Devstral-Small-2507", "[TOOL_CALLS]", true, mistralArgsFormat, "[TOOL_CALLS]", "", nil},
	{"mistral-call-id", "Mistral-Small-3.2-24B-Instruct-2506", "[TOOL_CALLS]", true, mistralCallIDFormat, "[TOOL_CALLS]", "", nil},
	{"qwen3-xml", "Qwen3-Coder", "<tool_call>", false, qwenXMLFormat, "<tool_call>", "", nil},
	// (GLM's generation prompt lets the reply open its reasoning, where
	// the tiny model would stay. GLM-4.7's calls, GLM-4.6's without their
	// newlines, are read and constrained by the same code: the unit tests
	// take both. Under auto, the trigger and the text before it are
	// Hermes'.)
	{"glm45", "GLM-4.6", "<tool_call>", false, glm45Format, "<tool_call>", `, "chat_template_kwargs": {"enable_thinking": false}`, []string{"required", "named"}},
}

// TestNativeToolCalls serves the tiny model under real tool-calling
// templates: the prompt holds the tools as the template writes them (not
// the generic format's description); under tool_choice required or a
// named tool every reply is calls of the tools allowed whose arguments
// match their parameters, read from the model's own format; under auto
// a reply whose first token is the format's trigger (a logit_bias on it)
// is a call, constrained from there, and one without is text; streamed
// and whole (the same seed) say the same.
func TestNativeToolCalls(t *testing.T) {
	if testing.Short() {
		t.Skip("serves the tiny model under three templates")
	}
	for _, ns := range nativeServers {
		t.Run(ns.name, func(t *testing.T) {
			tok := templateTokenizer(t, readTemplate(t, ns.template), ns.marker, ns.special)
			if got := detectToolFormat(tok); got != ns.f {
				t.Fatalf("format %s, want %s", formatName(got), ns.f.name)
			}
			ts := startServer(t, serverConfig{Tokenizer: tok})
			trigger, ok := tok.TokenID(ns.trigger)
			if !ok {
				t.Fatalf("no token %q", ns.trigger)
			}
			tools := `"tools": [` + weatherTool + `, ` + addTool + `]`

			// The prompt: the template's own tools section.
			ids := tokenize(t, ts, `{"messages": [{"role": "user", "content": "Weather?"}], `+tools+`}`)
			prompt, err := tok.Decode(ids)
			if err != nil {
				t.Fatal(err)
			}
			tool := `"name": "get_weather"`
			if ns.f.xml {
				tool = "<name>get_weather</name>"
			}
			if !strings.Contains(prompt, tool) || strings.Contains(prompt, "You can call these tools") {
				t.Errorf("the prompt does not hold the tools as the template writes them:\n%s", prompt)
			}

			// (A random model rarely ends a list of Hermes calls: with
			// parallel calls it goes on to max_tokens, so calls must come
			// one a reply; Mistral's list, closed by the grammar, may
			// hold several.)
			cases := []struct {
				name, body string
				n, max     int
				allowed    []string
				one, text  bool // at most one call; a text reply may come
			}{
				{"required", `"tool_choice": "required", "parallel_tool_calls": false, "seed": 1`, 3, 250, []string{"get_weather", "add"}, true, false},
				{"named", `"tool_choice": {"type": "function", "function": {"name": "add"}}, "seed": 2`, 3, 250, []string{"add"}, true, false},
				{"auto, the trigger first", fmt.Sprintf(`"tool_choice": "auto", "parallel_tool_calls": false, "logit_bias": {"%d": 100}, "seed": 3`, trigger), 3, 250, []string{"get_weather", "add"}, true, false},
				{"auto", `"tool_choice": "auto", "seed": 4`, 2, 40, []string{"get_weather", "add"}, ns.f != mistralFormat, true},
			}
			if ns.f == mistralFormat {
				cases = append(cases, struct {
					name, body string
					n, max     int
					allowed    []string
					one, text  bool
				}{"required, parallel", `"tool_choice": "required", "seed": 5`, 3, 250, []string{"get_weather", "add"}, false, false})
			}
			for _, c := range cases {
				if ns.only != nil && !slices.Contains(ns.only, c.name) {
					continue
				}
				t.Run(c.name, func(t *testing.T) {
					body := fmt.Sprintf(`{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the weather in Paris?"}], %s, %s, "n": %d, "temperature": 1, "max_tokens": %d%s`, tools, c.body, c.n, c.max, ns.extra)
					code, data := post(t, ts, "/v1/chat/completions", body+`}`)
					if code != 200 {
						t.Fatalf("%d %s", code, data)
					}
					whole, wu := chatReplies(t, data)
					code, data = post(t, ts, "/v1/chat/completions", body+`, "stream": true, "stream_options": {"include_usage": true}}`)
					if code != 200 {
						t.Fatalf("stream: %d %s", code, data)
					}
					streamed, su := streamReplies(t, data, c.n)
					if wu != su || wu.CompletionTokens == 0 {
						t.Errorf("usage %+v, streamed %+v", wu, su)
					}
					calls := 0
					for j, w := range whole {
						t.Logf("choice %d: %s %s %+v", j, w.Finish, str(w.Content), w.ToolCalls)
						s := streamed[j]
						switch {
						case w.Finish == "length":
							// Cut: the raw text, which a stream sent as
							// content up to a call's trigger.
							if w.Content == nil || w.ToolCalls != nil {
								t.Errorf("choice %d cut: content %s, %d calls; want the raw text", j, str(w.Content), len(w.ToolCalls))
							} else if !strings.Contains(*w.Content, ns.trigger) && str(s.Content) != str(w.Content) {
								t.Errorf("choice %d cut: streamed %s, whole %s", j, str(s.Content), str(w.Content))
							}
							continue
						case len(w.ToolCalls) > 0:
							calls++
							want := "tool_calls"
							if c.name == "named" {
								want = "stop"
							}
							if w.Finish != want || c.one && len(w.ToolCalls) != 1 {
								t.Errorf("choice %d: %d calls, finish %q; want %s", j, len(w.ToolCalls), w.Finish, want)
							}
							for _, call := range w.ToolCalls {
								if !callID.MatchString(call.ID) || ns.f.shortIDs != (len(call.ID) == 9) || call.Type != "function" || !slices.Contains(c.allowed, call.Function.Name) {
									t.Errorf("choice %d: call %+v, want an id of the format, type function and one of %q", j, call, c.allowed)
								}
								if why := checkArguments(call.Function.Name, call.Function.Arguments); why != "" {
									t.Errorf("choice %d: %s(%s): %s", j, call.Function.Name, call.Function.Arguments, why)
								}
							}
						case !c.text || w.Content == nil || w.Finish != "stop":
							t.Errorf("choice %d: text %s, finish %q, where calls must come", j, str(w.Content), w.Finish)
						}
						if s.Finish != w.Finish || str(s.Content) != str(w.Content) || len(s.ToolCalls) != len(w.ToolCalls) {
							t.Errorf("choice %d streamed %s %s with %d calls, whole %s %s with %d", j, s.Finish, str(s.Content), len(s.ToolCalls), w.Finish, str(w.Content), len(w.ToolCalls))
							continue
						}
						for k := range w.ToolCalls {
							if s.ToolCalls[k].Function != w.ToolCalls[k].Function {
								t.Errorf("choice %d: streamed call %d %+v, whole %+v", j, k, s.ToolCalls[k].Function, w.ToolCalls[k].Function)
							}
						}
					}
					if calls == 0 && !c.text {
						t.Error("no choice called a tool")
					}
				})
			}
		})
	}
}

// FuzzNativeScanner: any text, in any two pieces, in each format, never
// panics the scanner; the stream and the whole message agree (the same
// calls, and the content sent is the message's where the reply is calls
// or text), and a message's calls have JSON arguments.
func FuzzNativeScanner(f *testing.F) {
	for _, c := range nativeCases {
		f.Add(c.text, uint(len(c.text)/2))
	}
	f.Add("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\":}}\n</tool_call>", uint(3))
	f.Add("[TOOL_CALLS][{\"name\": 1, \"arguments\": {}}]", uint(0))
	f.Fuzz(func(t *testing.T, text string, cut uint) {
		k := int(cut % uint(len(text)+1))
		for _, format := range []*toolFormat{hermesFormat, llama3Format, mistralFormat, mistralArgsFormat, mistralCallIDFormat, qwenXMLFormat, glm45Format, glm47Format} {
			s := newNativeScanner(format, xmlTools)
			var content strings.Builder
			for _, piece := range []string{text[:k], text[k:]} {
				c, _ := s.Feed(piece)
				content.WriteString(c)
			}
			content.WriteString(s.Finish())
			m, _ := nativeMessage(format, xmlTools, text, "stop", "tool_calls")
			for _, c := range m.ToolCalls {
				if !json.Valid([]byte(c.Function.Arguments)) {
					t.Fatalf("%s: %q: call %+v: arguments not JSON", format.name, text, c)
				}
			}
			if m.ToolCalls != nil {
				want := ""
				if m.Content != nil {
					want = *m.Content
				}
				if content.String() != want {
					t.Fatalf("%s: %q: streamed content %q, message %s", format.name, text, content.String(), str(m.Content))
				}
				if len(s.Calls()) != len(m.ToolCalls) {
					t.Fatalf("%s: %q: %d calls streamed, %d whole", format.name, text, len(s.Calls()), len(m.ToolCalls))
				}
				for i, c := range s.Calls() {
					if c.Function != m.ToolCalls[i].Function {
						t.Fatalf("%s: %q: call %d streamed %+v, whole %+v", format.name, text, i, c.Function, m.ToolCalls[i].Function)
					}
				}
			} else if !s.Done() && (s.phase == nsFree || s.phase == nsText) && content.String() != *m.Content {
				t.Fatalf("%s: %q: streamed text %q, message %q", format.name, text, content.String(), *m.Content)
			}
		}
	})
}

// TestNativeGrammarTakesTemplateCalls: the grammar of each format takes
// the calls as the real templates write them in history (jinja2's renders
// of two_calls and tools hold these texts), whole, under tool_choice
// required (parallel calls where the format has them) and, after text,
// under auto; and refuses a call of a tool not given.
func TestNativeGrammarTakesTemplateCalls(t *testing.T) {
	tools := `"tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}},
		{"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}}]`
	for _, c := range []struct {
		f                     *toolFormat
		golden, conv, calls   string
		textFirst, notAllowed string
	}{
		{hermesFormat, "Qwen-Qwen2.5-7B-Instruct", "two_calls",
			"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2.5}}\n</tool_call>",
			"Let me check.\n", "<tool_call>\n{\"name\": \"sub\""},
		{llama3Format, "meta-llama-Llama-3.1-8B-Instruct", "tools",
			`{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}`, "", `{"name": "get_weather", "arguments"`},
		{mistralFormat, "mistralai-Mistral-Nemo-Instruct-2407", "two_calls",
			`[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}, "id": "abc123DEF"}, {"name": "add", "arguments": {"a": 1, "b": 2.5}, "id": "xyz789GHI"}]`,
			"Sure. ", `[TOOL_CALLS][{"name": "add", "arguments": {"a": "1"`},
		{mistralArgsFormat, "unsloth-mistral-Devstral-Small-2507", "two_calls",
			`[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "unit": "celsius"}[TOOL_CALLS]add[ARGS]{"a": 1, "b": 2.5}`,
			"Let me check.", `[TOOL_CALLS]add[ARGS]{"city"`},
		{mistralCallIDFormat, "Mistral-Small-3.2-24B-Instruct-2506", "two_calls",
			`[TOOL_CALLS]get_weather[CALL_ID]abc123DEF[ARGS]{"city": "Paris", "unit": "celsius"}[TOOL_CALLS]add[CALL_ID]xyz789GHI[ARGS]{"a": 1, "b": 2.5}`,
			"Let me check.", `[TOOL_CALLS]add[CALL_ID]xyz789GH[ARGS]`},
		{qwenXMLFormat, "Qwen3-Coder", "two_calls",
			"<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=unit>\ncelsius\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=add>\n<parameter=a>\n1\n</parameter>\n<parameter=b>\n2.5\n</parameter>\n</function>\n</tool_call>",
			"Let me check.\n\n", "<tool_call>\n<function=add>\n<parameter=a>\nx"},
		{glm45Format, "GLM-4.6", "two_calls",
			"<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n<arg_key>unit</arg_key>\n<arg_value>celsius</arg_value>\n</tool_call>\n<tool_call>add\n<arg_key>a</arg_key>\n<arg_value>1</arg_value>\n<arg_key>b</arg_key>\n<arg_value>2.5</arg_value>\n</tool_call>",
			"Let me check.\n", "<tool_call>add\n<arg_key>a</arg_key>\n<arg_value>x"},
		{glm47Format, "GLM-4.7-Flash", "two_calls",
			"<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value><arg_key>unit</arg_key><arg_value>celsius</arg_value></tool_call><tool_call>add<arg_key>a</arg_key><arg_value>1</arg_value><arg_key>b</arg_key><arg_value>2.5</arg_value></tool_call>",
			"Let me check.", "<tool_call>get_weather<arg_key>unit</arg_key>"},
	} {
		t.Run(c.f.name, func(t *testing.T) {
			var golden map[string]struct {
				Output string `json:"output"`
			}
			data, err := os.ReadFile(filepath.Join(jinjaChat, "golden", c.golden+".json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &golden); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(golden[c.conv].Output, c.calls) {
				t.Fatalf("jinja2's render of %s under %s does not hold %q", c.conv, c.golden, c.calls)
			}
			tok := templateTokenizer(t, readTemplate(t, c.golden), "", false)
			ts := &Server{}
			b := &Backend{Tokenizer: tok}
			for _, choice := range []string{"required", "auto"} {
				req, err := openai.Parse([]byte(`{"messages": [{"role": "user", "content": "x"}], `+tools+`, "tool_choice": "`+choice+`"}`), true)
				if err != nil {
					t.Fatal(err)
				}
				g, err := ts.grammar(b, req, nil)
				if err != nil {
					t.Fatal(err)
				}
				text := c.calls
				if choice == "auto" {
					text = c.textFirst + c.calls
				}
				m := g.matcher()
				type texter interface{ AcceptText(string) error }
				if err := m.(texter).AcceptText(text); err != nil {
					t.Errorf("%s: %v", choice, err)
				} else if _, end := m.Allowed(); !end {
					t.Errorf("%s: %q is not complete", choice, text)
				}
				bad := c.notAllowed
				if choice == "auto" {
					bad = c.textFirst + bad
				}
				if g.matcher().(texter).AcceptText(bad) == nil {
					t.Errorf("%s: %q taken", choice, bad)
				}
			}
		})
	}
}

// TestNativeMistralIDs: a history whose call ids are another server's
// (call_ and 24 characters), which Mistral's templates refuse (Nemo's and
// Small 3.2's, which writes each id after [CALL_ID]), is rendered with each
// id cut to its last 9 characters, as vLLM cuts them, in the call and in
// its result alike.
func TestNativeMistralIDs(t *testing.T) {
	for _, tc := range []struct {
		template string
		want     []string
	}{
		{"mistralai-Mistral-Nemo-Instruct-2407", []string{`[TOOL_CALLS][{"name": "add", "arguments": {"a": 1, "b": 2}, "id": "pqrstuvwx"}]`, `{"content": 3, "call_id": "pqrstuvwx"}`}},
		{"Mistral-Small-3.2-24B-Instruct-2506", []string{`[TOOL_CALLS]add[CALL_ID]pqrstuvwx[ARGS]{"a": 1, "b": 2}</s>`, `[TOOL_RESULTS]pqrstuvwx[TOOL_CONTENT]3[/TOOL_RESULTS]`}},
	} {
		t.Run(tc.template, func(t *testing.T) {
			tok := templateTokenizer(t, readTemplate(t, tc.template), "", false)
			req, err := openai.Parse([]byte(`{"messages": [{"role": "user", "content": "Add 1 and 2."},
		{"role": "assistant", "content": null, "tool_calls": [{"id": "call_abcdefghijklmnopqrstuvwx", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 1, \"b\": 2}"}}]},
		{"role": "tool", "tool_call_id": "call_abcdefghijklmnopqrstuvwx", "content": "3"}], "tools": [`+addTool+`]}`), true)
			if err != nil {
				t.Fatal(err)
			}
			opts := tokenizer.ChatOptions{AddGenerationPrompt: true}
			msgs, _, tools := ChatMessages(req, tok, opts)
			opts.Tools = tools
			got, err := tok.RenderChat(msgs, opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range tc.want {
				if !strings.Contains(got, want) {
					t.Errorf("the prompt does not hold %s:\n%s", want, got)
				}
			}
		})
	}
}

// TestNativeModelCallIDs: a Mistral Small 3.2 reply's own [CALL_ID]s are
// its calls' ids, whole and streamed; a call without one gets a new id.
func TestNativeModelCallIDs(t *testing.T) {
	text := `[TOOL_CALLS]get_weather[CALL_ID]abc123DEF[ARGS]{"city": "Paris"}[TOOL_CALLS]add[ARGS]{"a": 1, "b": 2}`
	m, _ := nativeMessage(mistralCallIDFormat, nil, text, "stop", "tool_calls")
	if len(m.ToolCalls) != 2 || m.ToolCalls[0].ID != "abc123DEF" || len(m.ToolCalls[1].ID) != 9 || m.ToolCalls[1].ID == "abc123DEF" {
		t.Fatalf("calls %+v, want ids abc123DEF and a new one", m.ToolCalls)
	}
	s := newNativeScanner(mistralCallIDFormat, nil)
	var ids []string
	for i := 0; i < len(text); i += 3 {
		_, deltas := s.Feed(text[i:min(i+3, len(text))])
		for _, d := range deltas {
			if d.ID != "" {
				ids = append(ids, d.ID)
			}
		}
	}
	if len(ids) != 2 || ids[0] != "abc123DEF" {
		t.Errorf("streamed ids %q, want abc123DEF first", ids)
	}
}

// TestNativeStop serves the tiny model under Qwen 2.5's template: a
// tool-calling request's stop string cuts its text reply where it
// occurs (the reply of the same seed without it, cut there; finish
// stop), whole and streamed, and leaves a call whole where it occurs in
// the call's JSON.
func TestNativeStop(t *testing.T) {
	if testing.Short() {
		t.Skip("serves the tiny model")
	}
	tok := templateTokenizer(t, readTemplate(t, "Qwen-Qwen2.5-7B-Instruct"), "<tool_call>", false)
	ts := startServer(t, serverConfig{Tokenizer: tok})
	trigger, ok := tok.TokenID("<tool_call>")
	if !ok {
		t.Fatal("no token <tool_call>")
	}
	body := func(extra string) string {
		return `{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the weather in Paris?"}], "tools": [` + weatherTool + `, ` + addTool + `], "temperature": 1, "max_tokens": 40, ` + extra + `}`
	}
	text := fmt.Sprintf(`"tool_choice": "auto", "logit_bias": {"%d": -100}, "seed": 7`, trigger)
	code, data := post(t, ts, "/v1/chat/completions", body(text))
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	whole, _ := chatReplies(t, data)
	if whole[0].Content == nil || whole[0].ToolCalls != nil || len(*whole[0].Content) < 20 {
		t.Fatalf("the reply is not a text of 20 bytes or more: %s %+v", str(whole[0].Content), whole[0].ToolCalls)
	}
	content := *whole[0].Content
	// A stop string of 3 bytes whose first match is past the 8th byte.
	p := 8
	for ; p+3 <= len(content) && strings.Index(content, content[p:p+3]) != p; p++ {
	}
	if p+3 > len(content) {
		t.Fatalf("no stop string to cut %q with", content)
	}
	stop := compactJSON(content[p : p+3])
	want := str(strp(content[:p]))
	code, data = post(t, ts, "/v1/chat/completions", body(text+`, "stop": `+stop))
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	got, _ := chatReplies(t, data)
	if str(got[0].Content) != want || got[0].Finish != "stop" {
		t.Errorf("stop %s: content %s, finish %s; want %s, stop", stop, str(got[0].Content), got[0].Finish, want)
	}
	code, data = post(t, ts, "/v1/chat/completions", body(text+`, "stop": `+stop+`, "stream": true`))
	if code != 200 {
		t.Fatalf("stream: %d %s", code, data)
	}
	streamed, _ := streamReplies(t, data, 1)
	if str(streamed[0].Content) != want || streamed[0].Finish != "stop" {
		t.Errorf("stop %s streamed: content %s, finish %s; want %s, stop", stop, str(streamed[0].Content), streamed[0].Finish, want)
	}

	// In a call's JSON: the call is whole.
	calls := `"tool_choice": "required", "parallel_tool_calls": false, "seed": 1, "max_tokens": 250, "stop": ["\"name\"", "arguments", "}"]`
	for _, stream := range []bool{false, true} {
		code, data = post(t, ts, "/v1/chat/completions", body(calls+fmt.Sprintf(`, "stream": %v`, stream)))
		if code != 200 {
			t.Fatalf("%d %s", code, data)
		}
		var r []chatReply
		if stream {
			r, _ = streamReplies(t, data, 1)
		} else {
			r, _ = chatReplies(t, data)
		}
		if len(r[0].ToolCalls) != 1 || r[0].Finish != "tool_calls" {
			t.Fatalf("stream %v: %d calls, finish %s; want one, tool_calls", stream, len(r[0].ToolCalls), r[0].Finish)
		}
		if why := checkArguments(r[0].ToolCalls[0].Function.Name, r[0].ToolCalls[0].Function.Arguments); why != "" {
			t.Errorf("stream %v: %+v: %s", stream, r[0].ToolCalls[0].Function, why)
		}
	}
}
