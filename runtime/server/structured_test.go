package server

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gptqtool/gptqtool/runtime/engine"
)

// recipe is a schema of the kind structured-output clients send: required
// and optional properties, bounded strings, an enum, an array of objects.
const recipe = `{
  "type": "object",
  "properties": {
    "title": {"type": "string", "maxLength": 24},
    "servings": {"type": "integer"},
    "vegan": {"type": "boolean"},
    "level": {"enum": ["easy", "medium", "hard"]},
    "steps": {"type": "array", "maxItems": 3, "items": {
      "type": "object",
      "properties": {"n": {"type": "integer"}, "text": {"type": "string", "maxLength": 16}},
      "required": ["n", "text"]
    }}
  },
  "required": ["title", "servings", "level", "steps"],
  "additionalProperties": false
}`

// checkRecipe returns why v does not match recipe ("" when it does),
// checked by hand from the schema's text.
func checkRecipe(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return "not an object"
	}
	for _, k := range []string{"title", "servings", "level", "steps"} {
		if _, ok := m[k]; !ok {
			return "no " + k
		}
	}
	for k := range m {
		if !strings.Contains(recipe, `"`+k+`"`) || k == "n" || k == "text" {
			return "unknown key " + k
		}
	}
	if title, ok := m["title"].(string); !ok || len([]rune(title)) > 24 {
		return "title"
	}
	if n, ok := m["servings"].(float64); !ok || n != math.Trunc(n) {
		return "servings"
	}
	if l := m["level"]; l != "easy" && l != "medium" && l != "hard" {
		return "level"
	}
	if v, ok := m["vegan"]; ok {
		if _, ok := v.(bool); !ok {
			return "vegan"
		}
	}
	steps, ok := m["steps"].([]any)
	if !ok || len(steps) > 3 {
		return "steps"
	}
	for _, s := range steps {
		st, ok := s.(map[string]any)
		if !ok || len(st) != 2 {
			return "a step"
		}
		if n, ok := st["n"].(float64); !ok || n != math.Trunc(n) {
			return "a step's n"
		}
		if text, ok := st["text"].(string); !ok || len([]rune(text)) > 16 {
			return "a step's text"
		}
	}
	return ""
}

// TestStructuredOutput asks for JSON through response_format, sampled and
// greedy, in chats and completions, streamed and not, several at once and
// beside unconstrained requests: every choice that stops is valid JSON
// of its schema, checked by encoding/json and by hand.
func TestStructuredOutput(t *testing.T) {
	ts := startServer(t, serverConfig{})
	schemaFormat := fmt.Sprintf(`{"type": "json_schema", "json_schema": {"name": "recipe", "strict": true, "schema": %s}}`, recipe)
	// (openchat-tiny, a weak model, rarely closes a free-form object's
	// strings: choices that end by length are logged, and only the
	// schemas with bounded strings must stop.)
	cases := []struct {
		name, path, body string
		check            func(v any) string
		mayRunOn         bool
	}{
		{"json_object chat", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "Give me a JSON object describing a cat."}], "response_format": {"type": "json_object"}, "max_tokens": 300, "temperature": 0.7, "seed": 1, "n": 3}`,
			func(v any) string {
				if _, ok := v.(map[string]any); !ok {
					return "not an object"
				}
				return ""
			}, true},
		{"json_schema chat", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "A recipe for soup, as JSON."}], "response_format": ` + schemaFormat + `, "max_tokens": 400, "temperature": 1, "seed": 2, "n": 4}`, checkRecipe, false},
		{"json_schema greedy completion", "/v1/completions", `{"prompt": "A recipe for bread:", "response_format": ` + schemaFormat + `, "max_tokens": 400, "temperature": 0}`, checkRecipe, false},
		{"enum", "/v1/completions", `{"prompt": "The sky is", "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": {"enum": ["blue", "green", 42]}}}, "max_tokens": 10, "temperature": 1, "seed": 3, "n": 5}`,
			func(v any) string {
				if v != "blue" && v != "green" && v != 42.0 {
					return "not in the enum"
				}
				return ""
			}, false},
	}
	var wg sync.WaitGroup
	// Unconstrained requests run beside: their steps go ahead where the
	// constrained ones are not in the batch.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 3 {
			if code, data := post(t, ts, "/v1/completions", `{"prompt": "Once", "max_tokens": 40, "ignore_eos": true}`); code != 200 {
				t.Errorf("unconstrained: %d %s", code, data)
			}
		}
	}()
	for _, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, data := post(t, ts, c.path, c.body)
			if code != 200 {
				t.Errorf("%s: %d %s", c.name, code, data)
				return
			}
			stopped := 0
			for _, ch := range decode(t, data).Choices {
				text := ch.Text + ch.Message.Content
				if *ch.FinishReason != "stop" {
					t.Logf("%s: choice %d ended by %s: %q", c.name, ch.Index, *ch.FinishReason, text)
					continue
				}
				stopped++
				var v any
				if err := json.Unmarshal([]byte(text), &v); err != nil {
					t.Errorf("%s: choice %d: %q is not JSON: %v", c.name, ch.Index, text, err)
					continue
				}
				if why := c.check(v); why != "" {
					t.Errorf("%s: choice %d: %q: %s", c.name, ch.Index, text, why)
				}
				t.Logf("%s: choice %d: %q", c.name, ch.Index, text)
			}
			if stopped == 0 && !c.mayRunOn {
				t.Errorf("%s: no choice stopped", c.name)
			}
		}()
	}
	wg.Wait()

	// Streamed, the deltas make the same text as the whole answer.
	body := `{"messages": [{"role": "user", "content": "A recipe for soup, as JSON."}], "response_format": ` + schemaFormat + `, "max_tokens": 400, "temperature": 1, "seed": 2}`
	code, data := post(t, ts, "/v1/chat/completions", body)
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	whole := decode(t, data).Choices[0].Message.Content
	code, data = post(t, ts, "/v1/chat/completions", strings.Replace(body, `"seed": 2`, `"seed": 2, "stream": true`, 1))
	if code != 200 {
		t.Fatalf("stream: %d %s", code, data)
	}
	var streamed strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		if d, ok := strings.CutPrefix(line, "data: "); ok && d != "[DONE]" {
			for _, ch := range decode(t, []byte(d)).Choices {
				if ch.Delta.Content != nil {
					streamed.WriteString(*ch.Delta.Content)
				}
			}
		}
	}
	if streamed.String() != whole {
		t.Errorf("streamed %q, whole %q", streamed.String(), whole)
	}
}

// TestStructuredOutputErrors: a schema the compiler cannot honour is a 400
// naming response_format's schema and the keyword's path.
func TestStructuredOutputErrors(t *testing.T) {
	ts := startServer(t, serverConfig{Engine: engine.Options{MaxLen: 64}})
	for _, c := range []struct{ schema, says string }{
		{`{"type": "string", "pattern": "(?<=a)b"}`, "/pattern"},
		{`{"type": "object", "properties": {"u": {"type": "string", "format": "uri"}}}`, "/properties/u/format"},
		{`{"type": "object", "properties": {"a": {"type": "integer", "minimum": 0}}}`, "/properties/a/minimum"},
		{`{"$ref": "#/$defs/nothing"}`, "no such definition"},
		{`[1, 2]`, "a schema is an object or a boolean"},
	} {
		code, data := post(t, ts, "/v1/chat/completions", `{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": `+c.schema+`}}}`)
		r := decode(t, data)
		if code != 400 || r.Error == nil || r.Error.Param == nil || *r.Error.Param != "response_format.json_schema.schema" || !strings.Contains(r.Error.Message, c.says) {
			t.Errorf("%s: %d %s, want a 400 naming response_format.json_schema.schema and saying %q", c.schema, code, data, c.says)
		}
	}
}

// TestGuidedDecoding: vLLM's guided_choice and structured_outputs.choice
// make exactly one of the texts (as they are, in completions and chats);
// guided_json constrains as response_format does.
func TestGuidedDecoding(t *testing.T) {
	ts := startServer(t, serverConfig{})
	choices := []string{"yes", "no", "maybe not", `"quoted"`}
	for _, body := range []string{
		`{"prompt": "Is the sea blue?", "guided_choice": ["yes", "no", "maybe not", "\"quoted\""], "max_tokens": 20, "temperature": 1, "seed": 4, "n": 6}`,
		`{"messages": [{"role": "user", "content": "Is the sea blue?"}], "structured_outputs": {"choice": ["yes", "no", "maybe not", "\"quoted\""]}, "max_tokens": 20, "temperature": 1, "seed": 5, "n": 6}`,
	} {
		code, data := post(t, ts, map[bool]string{true: "/v1/chat/completions", false: "/v1/completions"}[strings.Contains(body, "messages")], body)
		if code != 200 {
			t.Fatalf("%d %s", code, data)
		}
		for _, ch := range decode(t, data).Choices {
			text := ch.Text + ch.Message.Content
			if !slices.Contains(choices, text) || *ch.FinishReason != "stop" {
				t.Errorf("%s: choice %d: %q (%s), want one of %q and stop", body, ch.Index, text, *ch.FinishReason, choices)
			}
		}
	}
	// Texts that begin with a space, in a completion and in a chat (whose
	// answer starts a text, where a first piece's leading space is
	// dropped): still exactly one of them.
	spaced := []string{" yes", " no"}
	for _, path := range []string{"/v1/completions", "/v1/chat/completions"} {
		body := `{"prompt": "Is the sea blue?", "guided_choice": [" yes", " no"], "max_tokens": 20, "temperature": 1, "seed": 4, "n": 6}`
		if strings.Contains(path, "chat") {
			body = `{"messages": [{"role": "user", "content": "Is the sea blue?"}], "guided_choice": [" yes", " no"], "max_tokens": 20, "temperature": 1, "seed": 4, "n": 6}`
		}
		code, data := post(t, ts, path, body)
		if code != 200 {
			t.Fatalf("%s: %d %s", path, code, data)
		}
		for _, ch := range decode(t, data).Choices {
			if text := ch.Text + ch.Message.Content; !slices.Contains(spaced, text) || *ch.FinishReason != "stop" {
				t.Errorf("%s: choice %d: %q (%s), want one of %q and stop", path, ch.Index, text, *ch.FinishReason, spaced)
			}
		}
	}
	code, data := post(t, ts, "/v1/completions", `{"prompt": "A number:", "guided_json": {"type": "integer"}, "max_tokens": 30, "temperature": 1, "seed": 1, "n": 4}`)
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	for _, ch := range decode(t, data).Choices {
		var v any
		if *ch.FinishReason == "stop" && (json.Unmarshal([]byte(ch.Text), &v) != nil || v != math.Trunc(v.(float64))) {
			t.Errorf("guided_json integer: %q", ch.Text)
		}
	}
	code, data = post(t, ts, "/v1/completions", `{"prompt": "x", "guided_json": {"type": "string", "format": "uri"}}`)
	if r := decode(t, data); code != 400 || r.Error == nil || r.Error.Param == nil || *r.Error.Param != "guided_json" {
		t.Errorf("guided_json with an unknown format: %d %s, want a 400 naming guided_json", code, data)
	}
}

// TestGuidedRegex: vLLM's guided_regex and structured_outputs.regex make a
// text the pattern matches whole (Go's regexp checks it), in completions
// and chats, a leading space kept; a schema's pattern and format constrain
// its strings; a pattern the compiler refuses is a 400 naming its field.
func TestGuidedRegex(t *testing.T) {
	ts := startServer(t, serverConfig{})
	for _, c := range []struct{ path, field, pattern string }{
		{"/v1/completions", "guided_regex", `[a-z]{2,8}( [a-z]{2,8}){0,3}\.`},
		{"/v1/chat/completions", "guided_regex", `(yes|no), [0-9]{1,3} [a-zé]{1,12}!?`},
		{"/v1/chat/completions", "structured_outputs", ` \d{2}`},
		{"/v1/completions", "structured_outputs", `\{"id": "[A-F0-9]{4}"\}|\u00e9{1,3}\n`},
	} {
		body := `"prompt": "Say something:"`
		if strings.Contains(c.path, "chat") {
			body = `"messages": [{"role": "user", "content": "Say something."}]`
		}
		quoted, _ := json.Marshal(c.pattern)
		rx := `"guided_regex": ` + string(quoted)
		if c.field == "structured_outputs" {
			rx = `"structured_outputs": {"regex": ` + string(quoted) + `}`
		}
		body = `{` + body + `, ` + rx + `, "max_tokens": 60, "temperature": 1, "seed": 7, "n": 4}`
		code, data := post(t, ts, c.path, body)
		if code != 200 {
			t.Fatalf("%s: %d %s", body, code, data)
		}
		pattern := strings.ReplaceAll(c.pattern, `\u00e9`, `\x{e9}`) // (Go's regexp has no \u)
		re := regexp.MustCompile(`^(?:` + pattern + `)$`)
		for _, ch := range decode(t, data).Choices {
			text := ch.Text + ch.Message.Content
			if *ch.FinishReason != "stop" || !re.MatchString(text) {
				t.Errorf("%s: choice %d: %q (%s), want a full match of %s and stop", body, ch.Index, text, *ch.FinishReason, pattern)
			}
			t.Logf("%s: %q", c.pattern, text)
		}
	}
	schema := `{"type": "object", "properties": {"day": {"type": "string", "format": "date"}, "code": {"type": "string", "pattern": "^[A-Z]{3}$"}, "ip": {"type": "string", "format": "ipv4"}}, "required": ["day", "code", "ip"]}`
	code, data := post(t, ts, "/v1/completions", `{"prompt": "A record:", "guided_json": `+schema+`, "max_tokens": 100, "temperature": 1, "seed": 8, "n": 4}`)
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	for _, ch := range decode(t, data).Choices {
		var v struct{ Day, Code, IP string }
		if *ch.FinishReason != "stop" || json.Unmarshal([]byte(ch.Text), &v) != nil {
			t.Errorf("guided_json with formats: choice %d: %q (%s)", ch.Index, ch.Text, *ch.FinishReason)
			continue
		}
		_, dayErr := time.Parse(time.DateOnly, v.Day)
		ip, ipErr := netip.ParseAddr(v.IP)
		if dayErr != nil || ipErr != nil || !ip.Is4() || !regexp.MustCompile(`^[A-Z]{3}$`).MatchString(v.Code) {
			t.Errorf("guided_json with formats: choice %d: %q", ch.Index, ch.Text)
		}
	}
	for _, c := range []struct{ body, field string }{
		{`{"prompt": "x", "guided_regex": "(?<=a)b"}`, "guided_regex"},
		{`{"messages": [{"role": "user", "content": "x"}], "structured_outputs": {"regex": "a{2,1}"}}`, "structured_outputs.regex"},
		{`{"prompt": "x", "guided_regex": "\\bword"}`, "guided_regex"},
	} {
		path := "/v1/completions"
		if strings.Contains(c.body, "messages") {
			path = "/v1/chat/completions"
		}
		code, data := post(t, ts, path, c.body)
		r := decode(t, data)
		if code != 400 || r.Error == nil || r.Error.Param == nil || *r.Error.Param != c.field || !strings.Contains(r.Error.Message, "regex") {
			t.Errorf("%s: %d %s, want a 400 naming %s", c.body, code, data, c.field)
		}
	}
}
