package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// jinjaChatDir holds the real chat templates and jinja2's renders of them
// (formats/jinja/testdata/chat: render.py, transformers' settings).
var jinjaChatDir = filepath.Join("..", "jinja", "testdata", "chat")

// TestChatTemplateTools renders conversations with tools, assistant tool
// calls and tool results under real tool-calling templates (Qwen 2.5 and 3,
// Hermes 2 Pro and 3, Llama 3.1 to 3.3, Mistral Nemo and Small 3.2) as
// Messages and ChatOptions.Tools, and compares the text with jinja2's
// render of the same conversation: the arguments' JSON text reaches the
// template as the object it decodes to, tools as their list.
func TestChatTemplateTools(t *testing.T) {
	var convs struct {
		Conversations []struct {
			Name     string          `json:"name"`
			Tools    json.RawMessage `json:"tools"`
			Messages []struct {
				Role      string          `json:"role"`
				Content   json.RawMessage `json:"content"`
				ToolCalls []struct {
					ID       string `json:"id"`
					Function struct {
						Name      string          `json:"name"`
						Arguments json.RawMessage `json:"arguments"`
					} `json:"function"`
				} `json:"tool_calls"`
				ToolCallID string `json:"tool_call_id"`
				Name       string `json:"name"`
			} `json:"messages"`
			AddGenerationPrompt bool `json:"add_generation_prompt"`
		} `json:"conversations"`
	}
	data, err := os.ReadFile(filepath.Join(jinjaChatDir, "conversations.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &convs); err != nil {
		t.Fatal(err)
	}
	templates := []string{"Qwen-Qwen2.5-7B-Instruct", "Qwen-Qwen3-0.6B", "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use",
		"NousResearch-Hermes-3-Llama-3.1-8B-tool_use", "meta-llama-Llama-3.1-8B-Instruct", "meta-llama-Llama-3.2-3B-Instruct",
		"meta-llama-Llama-3.3-70B-Instruct", "mistralai-Mistral-Nemo-Instruct-2407", "Mistral-Small-3.2-24B-Instruct-2506"}
	checked := 0
	for _, name := range templates {
		src, err := os.ReadFile(filepath.Join(jinjaChatDir, "templates", name+".jinja"))
		if err != nil {
			t.Fatal(err)
		}
		var golden map[string]struct {
			Output *string `json:"output"`
		}
		data, err := os.ReadFile(filepath.Join(jinjaChatDir, "golden", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &golden); err != nil {
			t.Fatal(err)
		}
		tok := templateTokenizer(t, string(src))
		// (args_string sends arguments as a string, which jinja2 got
		// as one: here the text is decoded, as vLLM decodes it.)
		for _, conv := range []string{"tools", "two_calls", "content_none"} {
			want := golden[conv].Output
			if want == nil {
				continue // (the template raised: Llama 3's single call)
			}
			for _, c := range convs.Conversations {
				if c.Name != conv {
					continue
				}
				var msgs []Message
				for _, m := range c.Messages {
					tm := Message{Role: m.Role, ToolCallID: m.ToolCallID, Name: m.Name}
					json.Unmarshal(m.Content, &tm.Content) // (null: "")
					for _, tc := range m.ToolCalls {
						tm.ToolCalls = append(tm.ToolCalls, ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: string(tc.Function.Arguments)})
					}
					msgs = append(msgs, tm)
				}
				// (render.py fixed strftime_now's time; the tokenizer
				// renders with the clock's.)
				now := time.Now()
				w := strings.NewReplacer("05 Mar 2024", now.Format("02 Jan 2006"), "2024-03-05", now.Format("2006-01-02")).Replace(*want)
				want := &w
				got, err := tok.RenderChat(msgs, ChatOptions{AddGenerationPrompt: c.AddGenerationPrompt, Tools: c.Tools})
				if err != nil {
					t.Errorf("%s/%s: %v", name, conv, err)
				} else if got != *want {
					t.Errorf("%s/%s:\n got %q\nwant %q", name, conv, got, *want)
				}
				checked++
			}
		}
	}
	if checked < 20 {
		t.Errorf("%d renders checked, want 20 or more", checked)
	}
}

// templateTokenizer is the openchat-3.5 tokenizer with chat_template src,
// BOS <s> and EOS </s> (the goldens' bos_token and eos_token).
func templateTokenizer(t *testing.T, src string) *Tokenizer {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"tokenizer.json", "special_tokens_map.json"} {
		copyFile(t, filepath.Join(openchatDir, f), filepath.Join(dir, f))
	}
	cfg, _ := json.Marshal(map[string]any{"bos_token": "<s>", "eos_token": "</s>", "chat_template": src})
	writeFile(t, filepath.Join(dir, "tokenizer_config.json"), string(cfg))
	tok, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestChatTemplateVars: extra variables reach the template (Qwen3's
// enable_thinking false closes the block in the generation prompt, as
// jinja2 renders it: formats/tokenizer/testdata/reasoning), an assistant
// message's reasoning_content reaches a template that reads it, and a
// variable named as one of the template's inputs is refused.
func TestChatTemplateVars(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(jinjaChatDir, "templates", "Qwen-Qwen3-0.6B.jinja"))
	if err != nil {
		t.Fatal(err)
	}
	var golden map[string]map[string]struct {
		Output string `json:"output"`
	}
	data, err := os.ReadFile(filepath.Join("testdata", "reasoning", "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &golden); err != nil {
		t.Fatal(err)
	}
	tok := templateTokenizer(t, string(src))
	user := Message{Role: "user", Content: "2+2?"}
	for _, c := range []struct {
		name string
		msgs []Message
		opts ChatOptions
	}{
		{"thinking_off", []Message{user}, ChatOptions{AddGenerationPrompt: true, Vars: map[string]any{"enable_thinking": false}}},
		{"thinking_on", []Message{user}, ChatOptions{AddGenerationPrompt: true, Vars: map[string]any{"enable_thinking": true}}},
		{"history_last", []Message{user, {Role: "assistant", Content: "4", ReasoningContent: "Two plus two is four."}}, ChatOptions{}},
	} {
		got, err := tok.RenderChat(c.msgs, c.opts)
		if want := golden["Qwen-Qwen3-0.6B"][c.name].Output; err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, want)
		}
	}
	for _, k := range TemplateInputs {
		if _, err := tok.RenderChat([]Message{user}, ChatOptions{Vars: map[string]any{k: 1}}); err == nil {
			t.Errorf("variable %q taken", k)
		}
	}
}
