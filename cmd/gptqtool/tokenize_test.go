package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
)

const openchatTokDir = "../../../shared/fixtures/tokenizers/openchat-3.5-1210"

// runRoot runs the root command with args and stdin, returning stdout.
func runRoot(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&bytes.Buffer{})
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestTokenizeCmd(t *testing.T) {
	if _, err := os.Stat(filepath.Join(openchatTokDir, "tokenizer.json")); err != nil {
		t.Skipf("fixture %s missing: %v", openchatTokDir, err)
	}
	chat := filepath.Join(t.TempDir(), "chat.json")
	msgs := `[{"role":"user","content":"Hello"}]`
	if err := os.WriteFile(chat, []byte(msgs), 0o644); err != nil {
		t.Fatal(err)
	}
	// Ids from openchat's model card (fixtures expected_chat_ids.json) and the issue.
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"text with bos", "", []string{"Hello world!"}, "1 22557 1526 28808\n"},
		{"stdin no bos", "x  y", []string{"--no-bos", "-"}, "1318 28705 337\n"},
		{"json", "", []string{"--json", "--no-bos", "Hello"}, `{"ids":[22557]}` + "\n"},
		{"special by default", "", []string{"--no-bos", "Hello<|end_of_turn|>"}, "22557 32000\n"},
		{"special with bos", "", []string{"--special", "Hello<|end_of_turn|>"}, "1 22557 32000\n"},
		// Its text as plain text: "<", "|", "end", "_", "of", "_", "turn", "|", ">".
		{"special off", "", []string{"--special=false", "--no-bos", "Hello<|end_of_turn|>"}, "22557 28789 28766 416 28730 1009 28730 499 28766 28767\n"},
		{"chat file", "", []string{"--chat", chat}, "1 420 6316 28781 3198 3123 1247 28747 22557 32000 420 6316 28781 3198 3123 21631 28747\n"},
		{"chat stdin", msgs, []string{"--chat", "-", "--no-generation-prompt"}, "1 420 6316 28781 3198 3123 1247 28747 22557 32000\n"},
		{"decode", "", []string{"--decode", "1 22557 1526 28808"}, "Hello world!\n"},
		{"decode json", "", []string{"--decode", "--json", "[22557, 32000]"}, `{"text":"Hello<|end_of_turn|>"}` + "\n"},
		{"decode ids as arguments", "", []string{"--decode", "1", "22557", "1526,", "28808"}, "Hello world!\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"tokenize", "--model", openchatTokDir}, tc.args...)
			got, err := runRoot(t, tc.stdin, args...)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("output %q, want %q", got, tc.want)
			}
		})
	}
	usage := [][]string{
		{"tokenize", "x"},
		{"tokenize", "--model", openchatTokDir},
		{"tokenize", "--model", openchatTokDir, "a", "b"},
		{"tokenize", "--model", openchatTokDir, "--decode", "1 x"},
		{"tokenize", "--model", openchatTokDir, "--decode", "1", "-"},
		{"tokenize", "--model", openchatTokDir, "--bogus", "x"},
	}
	for _, args := range usage {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_, err := runRoot(t, "", args...)
			var ue usageError
			if !errors.As(err, &ue) {
				t.Errorf("error %v, want a usage error", err)
			}
		})
	}
	if _, err := runRoot(t, "", "tokenize", "--model", openchatTokDir, "--decode", "99999"); err == nil {
		t.Error("--decode 99999: no error")
	}
}

// TestTokenizeChatDeveloper: tokenize --chat takes OpenAI's developer role
// as system, as serve does (dropped by default, kept with
// --system-messages), where it refused it ("messages[0].role:
// "developer": want user, assistant or system").
func TestTokenizeChatDeveloper(t *testing.T) {
	if _, err := os.Stat(filepath.Join(openchatTokDir, "tokenizer.json")); err != nil {
		t.Skipf("fixture %s missing: %v", openchatTokDir, err)
	}
	const user = `{"role":"user","content":"Hello"}`
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("system messages %v", keep), func(t *testing.T) {
			ids := func(msgs string) string {
				t.Helper()
				args := []string{"tokenize", "--model", openchatTokDir, "--chat", "-"}
				if keep {
					args = append(args, "--system-messages")
				}
				got, err := runRoot(t, msgs, args...)
				if err != nil {
					t.Fatalf("%s: %v", msgs, err)
				}
				return got
			}
			dev := ids(`[{"role":"developer","content":"Be brief."},` + user + `]`)
			sys := ids(`[{"role":"system","content":"Be brief."},` + user + `]`)
			only := ids(`[` + user + `]`)
			if dev != sys || (dev == only) != !keep {
				t.Errorf("developer %q, system %q, user alone %q", dev, sys, only)
			}
		})
	}
	_, err := runRoot(t, `[{"role":"wizard","content":"x"}]`, "tokenize", "--model", openchatTokDir, "--chat", "-")
	if err == nil || !strings.Contains(err.Error(), "want system, developer, user, assistant or tool") {
		t.Errorf("a wizard message: %v, want an error naming the roles taken", err)
	}
	// A tool message renders as serve renders it: a user message holding
	// the result, with the name of the call it answers.
	tool, err := runRoot(t, `[`+user+`,{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"42"}]`,
		"tokenize", "--model", openchatTokDir, "--chat", "-")
	if err != nil {
		t.Fatal(err)
	}
	same, err := runRoot(t, `[`+user+`,{"role":"assistant","content":"{\"tool_calls\":[{\"name\":\"f\",\"arguments\":{}}]}"},{"role":"user","content":"{\"tool_response\":{\"tool_call_id\":\"c1\",\"name\":\"f\",\"content\":\"42\"}}"}]`,
		"tokenize", "--model", openchatTokDir, "--chat", "-")
	if err != nil || tool != same {
		t.Errorf("a tool call and its result: %s, want the ids of the hand-written messages, %s (%v)", tool, same, err)
	}
}

// TestStdinFinalNewline: tokenize - and generate --prompt - read standard
// input alike: one final newline (\n or \r\n, as echo, a heredoc or an
// editor ends the input with) is dropped, a second kept, where tokenize
// kept the newline and gave another prompt's ids than generate's.
func TestStdinFinalNewline(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	ids := func(t *testing.T, stdin string, args ...string) string {
		t.Helper()
		out, err := runRoot(t, stdin, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return strings.TrimSpace(out)
	}
	for _, c := range []struct{ stdin, same string }{
		{"Hello there\n", "Hello there"},
		{"Hello there\r\n", "Hello there"},
		{"Hello there\n\n", "Hello there\n"},
		{"Hello there", "Hello there"},
	} {
		t.Run(fmt.Sprintf("%q", c.stdin), func(t *testing.T) {
			want := ids(t, "", "tokenize", "--model", model, c.same)
			if got := ids(t, c.stdin, "tokenize", "--model", model, "-"); got != want {
				t.Errorf("tokenize - ids %q, want %q as for tokenize %q", got, want, c.same)
			}
			if got := ids(t, c.stdin, "generate", "--model", model, "--prompt", "-", "--max-tokens", "1", "--temperature", "0", "--ids"); !strings.HasPrefix(got, want+" ") {
				t.Errorf("generate --prompt - ids %q do not start with %q, tokenize's for %q", got, want, c.same)
			}
		})
	}
}

// TestChatUnavailableJinja: a model whose chat_template is Jinja within
// the subset gptqtool renders has chat completions; one beyond it is told
// at start with the construct and its place.
func TestChatUnavailableJinja(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(openchatTokDir, "tokenizer.json"))
	if err != nil {
		t.Skipf("fixture %s missing: %v", openchatTokDir, err)
	}
	for _, c := range []struct {
		name, template string
		want           []string // empty: available
	}{
		{"chatml", `{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}`, nil},
		{"include", `{% include 'f' %}`, []string{"Jinja that gptqtool does not render", "include", "line 1 col 4", "--chat-template"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg, _ := json.Marshal(map[string]string{"chat_template": c.template})
			if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfg, 0o644); err != nil {
				t.Fatal(err)
			}
			tok, err := tokenizer.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			why := chatUnavailable(tok, tokenizer.ChatOptions{})
			if len(c.want) == 0 && why != "" {
				t.Errorf("chatUnavailable = %q, want available", why)
			}
			for _, w := range c.want {
				if !strings.Contains(why, w) {
					t.Errorf("chatUnavailable = %q, does not say %q", why, w)
				}
			}
		})
	}
}

// TestTokenizeChatTextParts: --chat takes the messages serve takes: a
// content given as OpenAI's array of text parts gives the ids of their
// texts joined by newlines (as vLLM joins them) given as a string, where tokenize refused it ("cannot unmarshal array into
// Go struct field Message.content"), so a chat request's body that serve
// answers could not be tokenized (a QA pass); a part of another type is an
// error naming it.
func TestTokenizeChatTextParts(t *testing.T) {
	if _, err := os.Stat(filepath.Join(openchatTokDir, "tokenizer.json")); err != nil {
		t.Skipf("fixture %s missing: %v", openchatTokDir, err)
	}
	ids := func(msgs string) (string, error) {
		t.Helper()
		return runRoot(t, msgs, "tokenize", "--model", openchatTokDir, "--chat", "-")
	}
	want, err := ids(`[{"role":"user","content":"Hello\nthere"}]`)
	if err != nil {
		t.Fatal(err)
	}
	for _, msgs := range []string{
		`[{"role":"user","content":[{"type":"text","text":"Hello"},{"type":"text","text":"there"}]}]`,
		`{"model":"openchat_3.5","messages":[{"role":"user","content":[{"type":"text","text":"Hello\nthere"}]}]}`,
	} {
		got, err := ids(msgs)
		if err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", msgs, got, err, want)
		}
	}
	_, err = ids(`[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]`)
	if err == nil || !strings.Contains(err.Error(), "messages[0].content[0].type") {
		t.Errorf("an image part: %v, want an error naming messages[0].content[0].type", err)
	}
}
