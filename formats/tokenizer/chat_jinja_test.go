package tokenizer

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/jinja"
)

// chatGoldens is testdata/chat_goldens.json, written by
// testdata/gen_chat_goldens.py with Python's jinja2 configured as
// transformers' apply_chat_template configures it.
type chatGoldens struct {
	Templates     map[string]string    `json:"templates"`
	Conversations map[string][]Message `json:"conversations"`
	Cases         []struct {
		Template            string  `json:"template"`
		Conversation        string  `json:"conversation"`
		AddGenerationPrompt bool    `json:"add_generation_prompt"`
		Rendered            *string `json:"rendered"`
		Raised              *string `json:"raised"`
	} `json:"cases"`
}

func loadChatGoldens(t testing.TB) chatGoldens {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "chat_goldens.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g chatGoldens
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestChatTemplateGoldens renders each template over each conversation as
// jinja2 did and compares the text byte for byte, or the message a
// template raised.
func TestChatTemplateGoldens(t *testing.T) {
	g := loadChatGoldens(t)
	parsed := map[string]*jinja.Template{}
	for name, src := range g.Templates {
		tp, err := jinja.Parse(src)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		parsed[name] = tp
	}
	for _, c := range g.Cases {
		tp := parsed[c.Template]
		if tp == nil {
			continue
		}
		msgs := make([]any, 0)
		for _, m := range g.Conversations[c.Conversation] {
			d := jinja.NewDict()
			d.Set("role", m.Role)
			d.Set("content", jinja.Data(m.Content))
			msgs = append(msgs, d)
		}
		vars := map[string]any{"messages": msgs, "add_generation_prompt": c.AddGenerationPrompt,
			"bos_token": "<s>", "eos_token": "</s>", "tools": nil, "documents": nil}
		name := c.Template + "/" + c.Conversation
		if c.AddGenerationPrompt {
			name += "/generation-prompt"
		}
		got, err := tp.RenderString(vars)
		switch {
		case c.Raised != nil:
			var re *jinja.RaiseError
			if !errors.As(err, &re) || re.Msg != *c.Raised {
				t.Errorf("%s: error %v (rendered %q), want raise_exception(%q)", name, err, got, *c.Raised)
			}
		case err != nil:
			t.Errorf("%s: %v", name, err)
		case got != *c.Rendered:
			t.Errorf("%s:\n got %q\nwant %q", name, got, *c.Rendered)
		}
	}
}

// TestChatTemplateMistral: a Mistral-Instruct chat_template over the
// openchat-3.5 vocabulary (Mistral's, plus two tokens): {{ bos_token }} is
// the one BOS id, "[INST]" is ordinary text, eos_token the special EOS id,
// and a message spelling "</s>" gets no EOS id.
func TestChatTemplateMistral(t *testing.T) {
	g := loadChatGoldens(t)
	dir := t.TempDir()
	for _, f := range []string{"tokenizer.json", "special_tokens_map.json"} {
		copyFile(t, filepath.Join(openchatDir, f), filepath.Join(dir, f))
	}
	var cfg map[string]any
	data, err := os.ReadFile(filepath.Join(openchatDir, "tokenizer_config.json"))
	if err != nil {
		t.Skipf("fixture %s missing: %v", openchatDir, err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["chat_template"] = g.Templates["mistral-7b-instruct-v0.1"]
	cfg["eos_token"] = "</s>"
	data, _ = json.Marshal(cfg)
	writeFile(t, filepath.Join(dir, "tokenizer_config.json"), string(data))
	tok, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if name, err := tok.TemplateName(ChatOptions{}); err != nil || name != JinjaTemplate {
		t.Fatalf("TemplateName = %q, %v, want %q", name, err, JinjaTemplate)
	}
	msgs := []Message{{Role: "user", Content: "Hello"}, {Role: "assistant", Content: "Hi </s>"}, {Role: "user", Content: "Bye"}}
	text, err := tok.RenderChat(msgs, ChatOptions{})
	if want := "<s>[INST] Hello [/INST]Hi </s></s> [INST] Bye [/INST]"; err != nil || text != want {
		t.Fatalf("RenderChat = %q, %v, want %q", text, err, want)
	}
	got, err := tok.EncodeChat(msgs, ChatOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The reference: the pieces between the special tokens, encoded as
	// text; BOS and EOS by id.
	enc := func(s string) []int {
		ids, err := tok.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	want := []int{tok.BOS()}
	want = append(want, enc("[INST] Hello [/INST]Hi </s>")...)
	want = append(want, tok.EOS())
	want = append(want, enc(" [INST] Bye [/INST]")...)
	if !equalInts(got, want) {
		t.Errorf("EncodeChat =\n %v, want\n %v", got, want)
	}
	if tok.BOS() != 1 || tok.EOS() != 2 {
		t.Errorf("BOS, EOS = %d, %d, want 1, 2", tok.BOS(), tok.EOS())
	}
	n := 0
	for _, id := range got {
		if id == tok.BOS() {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d BOS ids, want 1: %v", n, got)
	}
	inst := enc("[INST]")
	if !containsRun(got, inst) {
		t.Errorf("EncodeChat %v lacks [INST] as text %v", got, inst)
	}
	// The template's raise_exception is an error carrying its message.
	_, err = tok.EncodeChat([]Message{{Role: "user", Content: "a"}, {Role: "user", Content: "b"}}, ChatOptions{})
	var re *jinja.RaiseError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "Conversation roles must alternate") {
		t.Errorf("two user turns: error %v, want the template's raise_exception", err)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func containsRun(ids, run []int) bool {
	for i := 0; i+len(run) <= len(ids); i++ {
		if equalInts(ids[i:i+len(run)], run) {
			return true
		}
	}
	return false
}

// FuzzChatTemplate: parsing and rendering any template never panics.
func FuzzChatTemplate(f *testing.F) {
	g := loadChatGoldens(f)
	for _, src := range g.Templates {
		f.Add(src)
	}
	f.Add("{{ a[1:2:0] }}{% for %}{{ 'x' * 99999999 }}")
	f.Fuzz(func(t *testing.T, src string) {
		tp, err := jinja.Parse(src)
		if err != nil {
			return
		}
		m := jinja.NewDict()
		m.Set("role", "user")
		m.Set("content", jinja.Data(" hi "))
		tp.Render(map[string]any{"messages": []any{m}, "bos_token": "<s>", "eos_token": "</s>", "add_generation_prompt": true})
	})
}

// TestChatTemplateRenderError: a template that parses but fails on the
// messages given (messages[1] of a one-message chat: jinja2's
// UndefinedError) wraps ErrTemplateRender with the jinja error's place, not
// ErrUnknownTemplate, which says the template is beyond the renderer (the
// server told the client so); a template beyond the subset still wraps
// ErrUnknownTemplate.
func TestChatTemplateRenderError(t *testing.T) {
	for _, tc := range []struct {
		name, template string
		want           error
		notWant        error
	}{
		{"fails on the messages", `{{ messages[1].content }}`, ErrTemplateRender, ErrUnknownTemplate},
		{"beyond the subset", `{% include 'x' %}`, ErrUnknownTemplate, ErrTemplateRender},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyFile(t, filepath.Join(openchatDir, "tokenizer.json"), filepath.Join(dir, "tokenizer.json"))
			cfg, _ := json.Marshal(map[string]any{"bos_token": "<s>", "chat_template": tc.template})
			writeFile(t, filepath.Join(dir, "tokenizer_config.json"), string(cfg))
			tok, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tok.EncodeChat([]Message{{Role: "user", Content: "x"}}, ChatOptions{})
			if !errors.Is(err, tc.want) || errors.Is(err, tc.notWant) || !strings.Contains(err.Error(), "line 1 col") {
				t.Errorf("EncodeChat: %v, want %v (not %v) naming line 1", err, tc.want, tc.notWant)
			}
		})
	}
}
