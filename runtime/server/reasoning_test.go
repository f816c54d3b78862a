package server

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/runtime/server/openai"
)

// reasoningGolden holds jinja2's renders of the reasoning models'
// templates (formats/tokenizer/testdata/reasoning: render.py, cases.json).
var reasoningGolden = filepath.Join("..", "..", "formats", "tokenizer", "testdata", "reasoning")

// reasoningCase is a conversation of cases.json.
type reasoningCase struct {
	Name                string            `json:"name"`
	AddGenerationPrompt bool              `json:"add_generation_prompt"`
	Kwargs              json.RawMessage   `json:"chat_template_kwargs"`
	Tools               json.RawMessage   `json:"tools"`
	Messages            []json.RawMessage `json:"messages"`
}

// body is c as an OpenAI request: tool calls' arguments as their JSON
// text, the kwargs as chat_template_kwargs.
func (c reasoningCase) body(t *testing.T) string {
	t.Helper()
	var msgs []string
	for _, raw := range c.Messages {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		if calls, ok := m["tool_calls"]; ok {
			var list []struct {
				ID       string `json:"id"`
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
	body := fmt.Sprintf(`{"messages": [%s], "add_generation_prompt": %v`, strings.Join(msgs, ", "), c.AddGenerationPrompt)
	if c.Kwargs != nil {
		body += `, "chat_template_kwargs": ` + string(c.Kwargs)
	}
	if c.Tools != nil {
		body += `, "tools": ` + string(c.Tools)
	}
	return body + "}"
}

// TestReasoningPrompt renders cases.json's conversations as OpenAI
// requests (chat_template_kwargs, assistant messages with
// reasoning_content, a call after reasoning) under the reasoning models'
// real templates and compares the prompt with jinja2's render; and says
// how each reply would be read: from inside the block where the prompt
// opens it, not at all where the prompt closes it (Qwen3's enable_thinking
// false), optionally where the template leaves it to the model (Qwen3).
func TestReasoningPrompt(t *testing.T) {
	var spec struct {
		Cases []reasoningCase `json:"cases"`
	}
	var golden map[string]map[string]struct {
		Output *string `json:"output"`
	}
	for name, v := range map[string]any{"cases.json": &spec, "golden.json": &golden} {
		data, err := os.ReadFile(filepath.Join(reasoningGolden, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatal(err)
		}
	}
	// GLM's templates, rendered with the same cases
	// (testdata/reasoning/render.py).
	var glm map[string]map[string]struct {
		Output *string `json:"output"`
	}
	data, err := os.ReadFile(filepath.Join("testdata", "reasoning", "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &glm); err != nil {
		t.Fatal(err)
	}
	maps.Copy(golden, glm)
	// How the first reply is read, by case: "opened", "optional" or
	// "none" (from the templates' generation prompts, read by hand).
	reads := map[string]map[string]string{
		"deepseek-ai-DeepSeek-R1-Distill-Llama-8B": {"first": "opened", "thinking_off": "opened", "thinking_on": "opened"},
		"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": {"first": "none", "thinking_off": "none", "thinking_on": "opened"},
		"Qwen-QwQ-32B":    {"first": "none", "thinking_off": "none", "thinking_on": "opened"},
		"Qwen-Qwen3-0.6B": {"first": "optional", "thinking_off": "none", "thinking_on": "optional"},
		"Qwen3.5-4B":      {"first": "opened", "thinking_off": "none", "thinking_on": "opened"},
		"mistralai-Ministral-3-14B-Reasoning-2512": {"first": "optional", "thinking_off": "optional", "thinking_on": "optional"},
		"GLM-4.6":       {"first": "optional", "thinking_off": "none", "thinking_on": "optional"},
		"GLM-4.7-Flash": {"first": "opened", "thinking_off": "none", "thinking_on": "opened"},
	}
	// The block's markers, by template.
	mistral := map[string]bool{"mistralai-Ministral-3-14B-Reasoning-2512": true}
	s := &Server{}
	checked := 0
	for name, outs := range golden {
		tok := templateTokenizer(t, readTemplate(t, name), "", false)
		want := thinkMarkers
		if mistral[name] {
			want = reasoningMarkers{open: mistralOpen, close: mistralClose, inline: true}
		}
		if got := reasoningTemplate(tok); got == nil || *got != want {
			t.Errorf("%s: block markers %+v, want %+v", name, got, want)
		}
		b := &Backend{Tokenizer: tok}
		for _, c := range spec.Cases {
			want := outs[c.Name].Output
			if want == nil {
				t.Fatalf("%s %s: jinja2 failed", name, c.Name)
			}
			// (A template without a tool-call format of its own gets
			// the generic format's system message.)
			if c.Tools != nil && detectToolFormat(tok) == nil {
				continue
			}
			t.Run(name+"/"+c.Name, func(t *testing.T) {
				req, err := openai.Parse([]byte(c.body(t)), true)
				if err != nil {
					t.Fatal(err)
				}
				_, got, err := s.chatPrompt(b, req, true)
				if err != nil {
					t.Fatal(err)
				}
				if got != *want {
					t.Errorf("\n got %q\nwant %q", got, *want)
				}
				checked++
				if want, ok := reads[name][c.Name]; ok {
					th := requestThinking(b, req, got)
					read := "none"
					switch {
					case th != nil && th.opened:
						read = "opened"
					case th != nil:
						read = "optional"
					}
					if read != want {
						t.Errorf("the reply is read %s, want %s", read, want)
					}
					b.ReasoningFormat = ReasoningNone
					if th := requestThinking(b, req, got); th != nil {
						t.Error("read for reasoning under --reasoning-format none")
					}
					b.ReasoningFormat = ""
				}
			})
		}
	}
	if checked < 50 {
		t.Errorf("%d renders checked", checked)
	}
	// A template without the block (Qwen 2.5's) is not read for it.
	// A template without the block (Qwen 2.5's, Mistral Small 3.2's) is
	// not read for it.
	for _, name := range []string{"Qwen-Qwen2.5-7B-Instruct", "Mistral-Small-3.2-24B-Instruct-2506"} {
		if m := reasoningTemplate(templateTokenizer(t, readTemplate(t, name), "", false)); m != nil {
			t.Errorf("%s found to reason, markers %+v", name, m)
		}
	}
}

// TestReasoningKwargsErrors: chat_template_kwargs must be an object whose
// names are not the template's own inputs; reasoning_format one of its
// values, include_reasoning a boolean, reasoning_content a string of an
// assistant message.
func TestReasoningKwargsErrors(t *testing.T) {
	msgs := `"messages": [{"role": "user", "content": "Hi"}]`
	for _, c := range []struct{ body, field string }{
		{`"chat_template_kwargs": [1]`, "chat_template_kwargs"},
		{`"chat_template_kwargs": "x"`, "chat_template_kwargs"},
		{`"chat_template_kwargs": {"messages": []}`, "chat_template_kwargs.messages"},
		{`"chat_template_kwargs": {"enable_thinking": false, "add_generation_prompt": true}`, "chat_template_kwargs.add_generation_prompt"},
		{`"chat_template_kwargs": {"tools": null}`, "chat_template_kwargs.tools"},
		{`"reasoning_format": "auto2"`, "reasoning_format"},
		{`"reasoning_format": 1`, "reasoning_format"},
		{`"include_reasoning": "no"`, "include_reasoning"},
	} {
		_, err := openai.Parse([]byte(fmt.Sprintf(`{%s, %s}`, msgs, c.body)), true)
		fe, ok := err.(*openai.FieldError)
		if !ok || fe.Field != c.field {
			t.Errorf("%s: error %v, want one of field %s", c.body, err, c.field)
		}
	}
	for _, c := range []struct{ body, field string }{
		{`"messages": [{"role": "user", "content": "Hi", "reasoning_content": "x"}]`, "messages[0].reasoning_content"},
		{`"messages": [{"role": "assistant", "content": "Hi", "reasoning_content": 1}]`, "messages[0].reasoning_content"},
		{`"messages": [{"role": "user", "content": "Hi", "reasoning": "x"}]`, "messages[0].reasoning"},
		{`"messages": [{"role": "assistant", "content": "Hi", "reasoning": ["x"]}]`, "messages[0].reasoning"},
		{`"messages": [{"role": "assistant", "content": "Hi", "reasoning": "x", "reasoning_content": "y"}]`, "messages[0].reasoning"},
	} {
		_, err := openai.Parse([]byte("{"+c.body+"}"), true)
		fe, ok := err.(*openai.FieldError)
		if !ok || fe.Field != c.field {
			t.Errorf("%s: error %v, want one of field %s", c.body, err, c.field)
		}
	}
	req, err := openai.Parse([]byte(`{`+msgs+`, "chat_template_kwargs": {"enable_thinking": false, "x": {"a": [1, 2.5, "s"]}}, "reasoning_format": "none", "include_reasoning": false}`), true)
	if err != nil {
		t.Fatal(err)
	}
	if req.ReasoningFormat != "none" || !req.NoReasoning {
		t.Errorf("reasoning_format %q, include_reasoning %v", req.ReasoningFormat, !req.NoReasoning)
	}
	vars, err := templateVars(req)
	if err != nil || len(vars) != 2 || vars["enable_thinking"] != false {
		t.Errorf("vars %v, %v", vars, err)
	}
}

// reasoningReply is a reply as a model writes it and how it reads.
type reasoningReply struct {
	name      string
	mistral   bool // [THINK] … [/THINK]
	opened    bool
	text      string
	reasoning *string // null: none
	content   *string
}

// reasoningReplies are replies in the real forms: vLLM's deepseek_r1 and
// qwen3 reasoning parser tests and llama.cpp's test-chat.cpp
// (--reasoning-format deepseek), retyped, and Qwen3's and R1's own
// layout ("<think>\n" … "\n</think>\n\n"). Where they differ, this server
// reads as llama.cpp does: whitespace around the reasoning and before the
// content left out, a reply cut in the block all reasoning.
var reasoningReplies = []reasoningReply{
	{name: "vllm r1: simple", opened: true, text: "This is a reasoning section</think>This is the rest", reasoning: strp("This is a reasoning section"), content: strp("This is the rest")},
	{name: "vllm r1: complete reasoning", opened: true, text: "This is a reasoning section</think>", reasoning: strp("This is a reasoning section")},
	{name: "vllm r1: no end", opened: true, text: "This is content", reasoning: strp("This is content")},
	{name: "vllm r1: multiple lines", opened: true, text: "This\nThat</think>This is the rest\nThat", reasoning: strp("This\nThat"), content: strp("This is the rest\nThat")},
	{name: "vllm r1: shortest", opened: true, text: "</think>This is the rest", content: strp("This is the rest")},
	{name: "vllm r1: with think", text: "<think>This is a reasoning section</think>This is the rest", reasoning: strp("This is a reasoning section"), content: strp("This is the rest")},
	{name: "vllm r1: think, no end", text: "<think>This is a reasoning section", reasoning: strp("This is a reasoning section")},
	{name: "vllm qwen3: no think", text: "This is content", content: strp("This is content")},
	{name: "vllm qwen3: multiline", text: "<think>This\nThat</think>This is the rest\nThat", reasoning: strp("This\nThat"), content: strp("This is the rest\nThat")},
	{name: "llama.cpp: think", text: "<think>I'm\nthinking</think>Hello, world!\nWhat's up?", reasoning: strp("I'm\nthinking"), content: strp("Hello, world!\nWhat's up?")},
	{name: "llama.cpp: forced open", opened: true, text: "I'm\nthinking</think>Hello, world!\nWhat's up?", reasoning: strp("I'm\nthinking"), content: strp("Hello, world!\nWhat's up?")},
	{name: "qwen3 layout", text: "<think>\nOkay, 2+2 is 4.\n</think>\n\nThe answer is 4.", reasoning: strp("Okay, 2+2 is 4."), content: strp("The answer is 4.")},
	{name: "r1 layout, opened", opened: true, text: "\nOkay, 2+2 is 4.\n</think>\n\nThe answer is **4**.", reasoning: strp("Okay, 2+2 is 4."), content: strp("The answer is **4**.")},
	{name: "empty block", text: "<think>\n\n</think>\n\nHi there.", content: strp("Hi there.")},
	{name: "whitespace first", text: "\n<think>x</think>y", reasoning: strp("x"), content: strp("y")},
	{name: "a close-like text inside", opened: true, text: "a </thin b </think> c", reasoning: strp("a </thin b"), content: strp("c")},
	{name: "a think in the answer", text: "Hi <think>x</think>", content: strp("Hi <think>x</think>")},
	{name: "cut in the close", opened: true, text: "abc </thi", reasoning: strp("abc </thi")},
	{name: "cut in the open", text: "<thi", content: strp("<thi")},
	{name: "a second block is content", text: "<think>a</think>b<think>c</think>", reasoning: strp("a"), content: strp("b<think>c</think>")},

	// Mistral's (vLLM's mistral reasoning parser tests, retyped;
	// Magistral's and Ministral 3 Reasoning's own layout, no whitespace
	// at the markers).
	{name: "mistral: vllm simple", mistral: true, text: "[THINK]This is a reasoning section[/THINK]This is the rest", reasoning: strp("This is a reasoning section"), content: strp("This is the rest")},
	{name: "mistral: vllm complete reasoning", mistral: true, text: "[THINK]This is a reasoning section[/THINK]", reasoning: strp("This is a reasoning section")},
	{name: "mistral: vllm no think", mistral: true, text: "This is content", content: strp("This is content")},
	{name: "mistral: vllm no end", mistral: true, text: "[THINK]This is a reasoning section", reasoning: strp("This is a reasoning section")},
	{name: "mistral: vllm multiple lines", mistral: true, text: "[THINK]This\nThat[/THINK]This is the rest\nThat", reasoning: strp("This\nThat"), content: strp("This is the rest\nThat")},
	{name: "mistral: vllm shortest", mistral: true, text: "[THINK][/THINK]This is the rest", content: strp("This is the rest")},
	{name: "mistral: ministral layout", mistral: true, text: "[THINK]Okay, the user asks for 2+2. That is 4.[/THINK]The answer is **4**.", reasoning: strp("Okay, the user asks for 2+2. That is 4."), content: strp("The answer is **4**.")},
	{name: "mistral: then a call", mistral: true, text: "[THINK]I should call add.[/THINK][TOOL_CALLS]add[ARGS]{\"a\": 2}", reasoning: strp("I should call add."), content: strp("[TOOL_CALLS]add[ARGS]{\"a\": 2}")},
	{name: "mistral: opened", mistral: true, opened: true, text: "x[/THINK]y", reasoning: strp("x"), content: strp("y")},
	{name: "mistral: a close-like text inside", mistral: true, text: "[THINK]a [/THIN b [/THINK] c", reasoning: strp("a [/THIN b"), content: strp("c")},
	{name: "mistral: cut in the close", mistral: true, text: "[THINK]abc [/THI", reasoning: strp("abc [/THI")},
	{name: "mistral: cut in the open", mistral: true, text: "[THI", content: strp("[THI")},
	{name: "mistral: a think tag is text", mistral: true, text: "<think>a</think>b", content: strp("<think>a</think>b")},
	{name: "mistral: a think close inside", mistral: true, text: "[THINK]a</think>b[/THINK]c", reasoning: strp("a</think>b"), content: strp("c")},
	{name: "think: a mistral block is text", text: "[THINK]a[/THINK]b", content: strp("[THINK]a[/THINK]b")},
}

// markers is the markers c is read with.
func (c reasoningReply) markers() reasoningMarkers {
	if c.mistral {
		return reasoningMarkers{open: mistralOpen, close: mistralClose}
	}
	return thinkMarkers
}

// TestReasoningSplitter reads each reply whole and streamed in pieces of
// every size: the reasoning and content sent, merged, are the reply's,
// and the message built from them is null where the case says.
func TestReasoningSplitter(t *testing.T) {
	for _, c := range reasoningReplies {
		t.Run(c.name, func(t *testing.T) {
			th := &thinking{markers: c.markers(), opened: c.opened}
			for size := 1; size <= len(c.text); size++ {
				sp := newReasoningSplitter(th)
				var r, ct strings.Builder
				for i := 0; i < len(c.text); i += size {
					a, b := sp.Feed(c.text[i:min(i+size, len(c.text))])
					r.WriteString(a)
					ct.WriteString(b)
				}
				a, b := sp.Finish()
				r.WriteString(a)
				ct.WriteString(b)
				content := ct.String()
				m := openai.ChatMessage{Content: &content}
				reasoningMessage(&m, th, sp, r.String())
				if str(m.ReasoningContent) != str(c.reasoning) || str(m.Content) != str(c.content) {
					t.Fatalf("pieces of %d: reasoning %s, content %s; want %s, %s", size, str(m.ReasoningContent), str(m.Content), str(c.reasoning), str(c.content))
				}
				if size == len(c.text) && sp.InBlock() != (c.content == nil && c.reasoning != nil && !strings.HasSuffix(c.text, th.markers.close)) {
					t.Errorf("in the block %v at the end", sp.InBlock())
				}
			}
		})
	}
	// Dropped (include_reasoning false): read, not returned.
	sp := newReasoningSplitter(&thinking{markers: thinkMarkers})
	_, content := sp.Feed("<think>x</think>y")
	m := openai.ChatMessage{Content: &content}
	reasoningMessage(&m, &thinking{markers: thinkMarkers, drop: true}, sp, "x")
	if m.ReasoningContent != nil || str(m.Content) != `"y"` {
		t.Errorf("dropped: reasoning %s, content %s", str(m.ReasoningContent), str(m.Content))
	}
}

// FuzzReasoningSplitter: any reply, opened or not, either markers, in any two pieces,
// never panics the splitter and reads as it does whole; the reasoning and
// content together hold no more than the reply's text.
func FuzzReasoningSplitter(f *testing.F) {
	for _, c := range reasoningReplies {
		f.Add(c.text, uint(len(c.text)/2), c.opened, c.mistral)
	}
	f.Fuzz(func(t *testing.T, text string, cut uint, opened, mistral bool) {
		th := &thinking{markers: reasoningReply{mistral: mistral}.markers(), opened: opened}
		read := func(pieces ...string) (string, string) {
			sp := newReasoningSplitter(th)
			var r, c strings.Builder
			for _, p := range pieces {
				a, b := sp.Feed(p)
				r.WriteString(a)
				c.WriteString(b)
			}
			a, b := sp.Finish()
			return r.String() + a, c.String() + b
		}
		i := int(cut % uint(len(text)+1))
		wr, wc := read(text)
		pr, pc := read(text[:i], text[i:])
		if wr != pr || wc != pc {
			t.Fatalf("whole %q, %q; in two at %d %q, %q", wr, wc, i, pr, pc)
		}
		if len(wr)+len(wc) > len(text) {
			t.Fatalf("%q, %q from %q", wr, wc, text)
		}
	})
}

// TestReasoningThenCalls: a reply that reasons, then calls (Qwen3's and
// QwQ's form under tool_choice auto, GLM-4.5/4.6's after "<|assistant|>",
// GLM-4.7's after a prompt that opened the block), read as the server
// reads it (the reasoning split off, the rest through the format's
// scanner) whole and in pieces of every size: the reasoning apart, the
// calls and content of each Hermes and GLM case as without the block,
// and a <tool_call> inside the block no call.
func TestReasoningThenCalls(t *testing.T) {
	const reasoning = "The user wants the weather; I could write <tool_call> but first think."
	forms := map[*toolFormat]struct {
		block  string
		opened bool
	}{
		hermesFormat: {"<think>\n" + reasoning + "\n</think>\n\n", false},
		glm45Format:  {"\n<think>" + reasoning + "</think>\n", false},
		glm47Format:  {reasoning + "</think>", true},
	}
	for _, c := range nativeCases {
		form, ok := forms[c.f]
		if !ok || c.streamed != nil {
			continue
		}
		text := form.block + c.text
		th := &thinking{markers: thinkMarkers, opened: form.opened}
		t.Run(c.name, func(t *testing.T) {
			for size := 1; size <= len(text); size++ {
				sp := newReasoningSplitter(th)
				ns := newNativeScanner(c.f, xmlTools)
				var r, content strings.Builder
				for i := 0; i < len(text); i += size {
					a, b := sp.Feed(text[i:min(i+size, len(text))])
					r.WriteString(a)
					got, _ := ns.Feed(b)
					content.WriteString(got)
				}
				a, b := sp.Finish()
				r.WriteString(a)
				got, _ := ns.Feed(b)
				content.WriteString(got + ns.Finish())
				m, _ := ns.message("stop", "tool_calls")
				reasoningMessage(&m, th, sp, r.String())
				if str(m.ReasoningContent) != str(strp(reasoning)) || str(m.Content) != str(c.content) || ns.Form() != c.form {
					t.Fatalf("pieces of %d: reasoning %s, content %s, form %s; want %q, %s, %s", size, str(m.ReasoningContent), str(m.Content), ns.Form(), reasoning, str(c.content), c.form)
				}
				var names []string
				for _, call := range m.ToolCalls {
					names = append(names, call.Function.Name+"("+compactJSON(json.RawMessage(call.Function.Arguments))+")")
				}
				if strings.Join(names, " ") != strings.Join(c.calls, " ") {
					t.Fatalf("pieces of %d: calls %q, want %q", size, names, c.calls)
				}
				if c.content != nil && content.String() != *c.content {
					t.Fatalf("pieces of %d: content sent %q", size, content.String())
				}
			}
		})
	}
}

// TestReasoningAlias: an assistant message's reasoning under vLLM's
// present name, reasoning, reaches the template as reasoning_content
// does (Qwen3's template renders it in the history's last turn), and so
// does the same text under both names.
func TestReasoningAlias(t *testing.T) {
	tok := templateTokenizer(t, readTemplate(t, "Qwen-Qwen3-0.6B"), "", false)
	render := func(field string) string {
		t.Helper()
		req, err := openai.Parse([]byte(`{"messages": [{"role": "user", "content": "1+1?"},
			{"role": "assistant", "content": "2", `+field+`}, {"role": "tool", "tool_call_id": "x", "content": "ok"}]}`), true)
		if err != nil {
			t.Fatal(err)
		}
		opts := tokenizer.ChatOptions{AddGenerationPrompt: true}
		msgs, _, _ := ChatMessages(req, tok, opts)
		out, err := tok.RenderChat(msgs, opts)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := render(`"reasoning_content": "One and one make two."`)
	if !strings.Contains(want, "<think>\nOne and one make two.\n</think>") {
		t.Fatalf("the template does not render reasoning_content:\n%s", want)
	}
	for _, field := range []string{`"reasoning": "One and one make two."`, `"reasoning": "One and one make two.", "reasoning_content": "One and one make two."`} {
		if got := render(field); got != want {
			t.Errorf("%s:\n got %q\nwant %q", field, got, want)
		}
	}
}
