package jinja

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// goldenNow is the time render.py gives strftime_now.
var goldenNow = time.Date(2024, 3, 5, 14, 7, 9, 0, time.UTC)

// chatConversation is one conversation of testdata/chat/conversations.json.
type chatConversation struct {
	Name                string          `json:"name"`
	AddGenerationPrompt bool            `json:"add_generation_prompt"`
	Messages            json.RawMessage `json:"messages"`
	Tools               json.RawMessage `json:"tools"`
	Documents           json.RawMessage `json:"documents"`
}

// chatGolden is what jinja2 made of one template and conversation: its
// output, or the stage ("parse", "render", "raise") and message of its
// error.
type chatGolden struct {
	Output *string `json:"output"`
	Stage  string  `json:"stage"`
	Error  string  `json:"error"`
}

// TestChatTemplates renders the chat templates real models ship
// (testdata/chat/templates, from llama.cpp's models/templates) with each
// conversation of testdata/chat/conversations.json, and compares with what
// jinja2 rendered under transformers' settings (testdata/chat/render.py):
// the same bytes, or an error where jinja2 failed (a *RaiseError with
// jinja2's message where the template raised); and no message's text
// (passed as Data) comes out as template text.
func TestChatTemplates(t *testing.T) {
	testChatGoldens(t, filepath.Join("testdata", "chat"))
}

// testChatGoldens runs TestChatTemplates on dir, laid out as
// testdata/chat.
func testChatGoldens(t *testing.T, dir string) {
	raw, err := os.ReadFile(filepath.Join(dir, "conversations.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Vars          json.RawMessage    `json:"vars"`
		Conversations []chatConversation `json:"conversations"`
	}
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	names, err := filepath.Glob(filepath.Join(dir, "templates", "*.jinja"))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no templates in testdata/chat/templates")
	}
	sort.Strings(names)
	for _, path := range names {
		name := strings.TrimSuffix(filepath.Base(path), ".jinja")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			graw, err := os.ReadFile(filepath.Join(dir, "golden", name+".json"))
			if err != nil {
				t.Fatalf("%v (run testdata/chat/render.py)", err)
			}
			var golden map[string]chatGolden
			if err := json.Unmarshal(graw, &golden); err != nil {
				t.Fatal(err)
			}
			tp, perr := Parse(string(src))
			for _, c := range spec.Conversations {
				t.Run(c.Name, func(t *testing.T) {
					want, ok := golden[c.Name]
					if !ok {
						t.Fatalf("golden/%s.json has no %q (run render.py)", name, c.Name)
					}
					if perr != nil {
						checkRefusal(t, perr, want)
						return
					}
					vars := chatVars(t, spec.Vars, c)
					chunks, err := tp.RenderWith(vars, Options{Now: goldenNow})
					if err != nil {
						checkRefusal(t, err, want)
						return
					}
					if want.Output == nil {
						t.Fatalf("rendered, want jinja2's %s error %q", want.Stage, want.Error)
					}
					var b strings.Builder
					for _, ch := range chunks {
						b.WriteString(ch.Text)
					}
					if got := b.String(); got != *want.Output {
						t.Errorf("output differs from jinja2's at byte %d:\n got: %q\nwant: %q", firstDiff(got, *want.Output), excerpt(got, *want.Output), excerpt(*want.Output, got))
					}
					// No message's text comes out as template text (but
					// where the template has written it itself).
					for _, ch := range chunks {
						if ch.Data {
							continue
						}
						for _, m := range messageTexts(vars["messages"]) {
							if len(m) >= 12 && strings.Contains(ch.Text, m) && !strings.Contains(string(src), m) {
								t.Errorf("message text %q in template text %q", m, ch.Text)
							}
						}
					}
				})
			}
		})
	}
}

// messageTexts lists the strings in v, the messages.
func messageTexts(v any) []string {
	var out []string
	switch x := v.(type) {
	case str:
		out = append(out, x.s)
	case []any:
		for _, e := range x {
			out = append(out, messageTexts(e)...)
		}
	case *Dict:
		for i := range x.keys {
			out = append(out, messageTexts(x.at(i))...)
		}
	}
	return out
}

// checkRefusal checks that err, this package's refusal, matches jinja2's
// outcome want.
func checkRefusal(t *testing.T, err error, want chatGolden) {
	t.Helper()
	if want.Output != nil {
		t.Fatalf("error %v, want jinja2's output", err)
	}
	var re *RaiseError
	if want.Stage == "raise" {
		if !errors.As(err, &re) || re.Msg != want.Error {
			t.Errorf("error %v, want raise_exception(%q)", err, want.Error)
		}
		return
	}
	var e *Error
	if !errors.As(err, &e) || errors.As(err, &re) {
		t.Errorf("error %v, want an *Error as jinja2's %s error %q", err, want.Stage, want.Error)
		return
	}
	// A render error says what jinja2's says (its message after the
	// exception's name), where this package fails for the same reason;
	// a template beyond the subset is refused for its own.
	if _, msg, _ := strings.Cut(want.Error, ": "); want.Stage == "render" && !strings.Contains(e.Msg, msg) {
		t.Errorf("error %v, want one saying %q", err, msg)
	}
}

// chatVars builds a render's variables from conversations.json: its
// "vars", and the conversation's messages (every string in them Data, as
// a server passes a request's text), tools, documents and
// add_generation_prompt.
func chatVars(t *testing.T, vars json.RawMessage, c chatConversation) map[string]any {
	t.Helper()
	out := map[string]any{}
	d := jsonValue(t, vars, false).(*Dict)
	for i, k := range d.keys {
		out[k.(str).s] = d.at(i)
	}
	out["messages"] = jsonValue(t, c.Messages, true)
	out["tools"] = jsonValue(t, c.Tools, false)
	out["documents"] = jsonValue(t, c.Documents, false)
	out["add_generation_prompt"] = c.AddGenerationPrompt
	return out
}

// jsonValue is FromJSON of raw, none for empty input.
func jsonValue(t *testing.T, raw json.RawMessage, data bool) any {
	t.Helper()
	if len(raw) == 0 {
		return nil
	}
	v, err := FromJSON(raw, data)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// firstDiff is the offset of the first byte where a and b differ.
func firstDiff(a, b string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// excerpt is a around where it first differs from b.
func excerpt(a, b string) string {
	i := firstDiff(a, b)
	lo, hi := max(i-60, 0), min(i+60, len(a))
	return a[lo:hi]
}
