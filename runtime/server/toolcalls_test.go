package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gptqtool/gptqtool/runtime/server/openai"
)

// chatReply is a chat completion's choice as the tests read it: the
// message's content (nil for null), its tool calls and the finish reason.
type chatReply struct {
	Content   *string           `json:"content"`
	ToolCalls []openai.ToolCall `json:"tool_calls"`
	Finish    string
	// Reasoning is reasoning_content (nil where absent); the reply
	// must give the same under vLLM's name, reasoning (alias).
	Reasoning *string `json:"reasoning_content"`
	Alias     *string `json:"reasoning"`
}

// chatReplies reads a chat completion's choices and usage.
func chatReplies(t *testing.T, data []byte) ([]chatReply, openai.Usage) {
	t.Helper()
	var r struct {
		Choices []struct {
			Index        int       `json:"index"`
			Message      chatReply `json:"message"`
			FinishReason string    `json:"finish_reason"`
		} `json:"choices"`
		Usage openai.Usage `json:"usage"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("%v: %s", err, data)
	}
	out := make([]chatReply, len(r.Choices))
	for _, c := range r.Choices {
		if c.Index < 0 || c.Index >= len(out) {
			t.Fatalf("choice index %d of %d", c.Index, len(out))
		}
		out[c.Index] = c.Message
		out[c.Index].Finish = c.FinishReason
		if str(c.Message.Alias) != str(c.Message.Reasoning) {
			t.Fatalf("choice %d: reasoning %s, reasoning_content %s", c.Index, str(c.Message.Alias), str(c.Message.Reasoning))
		}
	}
	return out, r.Usage
}

// streamReplies reads a streamed chat completion as a client merges it:
// per choice, the content deltas concatenated and the tool call deltas
// merged by index (a call's first delta must carry its id, type
// "function", name and arguments "", the later ones only arguments), its
// finish_reason (which must come last); and the usage of the last chunk.
func streamReplies(t *testing.T, data []byte, n int) ([]chatReply, openai.Usage) {
	t.Helper()
	evs := events(t, data)
	if len(evs) == 0 || evs[len(evs)-1] != "[DONE]" {
		t.Fatalf("the stream does not end with [DONE]: %s", data)
	}
	out := make([]chatReply, n)
	var usage openai.Usage
	for _, ev := range evs[:len(evs)-1] {
		var chunk struct {
			Choices []struct {
				Index int `json:"index"`
				Delta struct {
					Role      string                 `json:"role"`
					Content   *string                `json:"content"`
					Reasoning *string                `json:"reasoning_content"`
					Alias     *string                `json:"reasoning"`
					ToolCalls []openai.ToolCallDelta `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Usage *openai.Usage `json:"usage"`
		}
		if err := json.Unmarshal([]byte(ev), &chunk); err != nil {
			t.Fatalf("%v: %s", err, ev)
		}
		if chunk.Usage != nil {
			usage = *chunk.Usage
		}
		for _, c := range chunk.Choices {
			r := &out[c.Index]
			if r.Finish != "" {
				t.Fatalf("choice %d: a chunk after its finish_reason: %s", c.Index, ev)
			}
			if d := c.Delta.Content; d != nil && (*d != "" || c.Delta.Role != "assistant") {
				if r.Content == nil {
					r.Content = new(string)
				}
				*r.Content += *d
			}
			if str(c.Delta.Alias) != str(c.Delta.Reasoning) {
				t.Fatalf("choice %d: a delta's reasoning and reasoning_content differ: %s", c.Index, ev)
			}
			if d := c.Delta.Reasoning; d != nil {
				if *d == "" || r.Content != nil || r.ToolCalls != nil {
					t.Fatalf("choice %d: reasoning empty, or after the content: %s", c.Index, ev)
				}
				if r.Reasoning == nil {
					r.Reasoning = new(string)
				}
				*r.Reasoning += *d
			}
			for _, d := range c.Delta.ToolCalls {
				switch {
				case d.Index == len(r.ToolCalls):
					if !callID.MatchString(d.ID) || d.Type != "function" || d.Function.Name == "" || d.Function.Arguments != "" {
						t.Fatalf("choice %d: call %d's first delta: %s", c.Index, d.Index, ev)
					}
					r.ToolCalls = append(r.ToolCalls, openai.ToolCall{ID: d.ID, Type: d.Type, Function: openai.FunctionCall{Name: d.Function.Name}})
				case d.Index == len(r.ToolCalls)-1 && d.ID == "" && d.Type == "" && d.Function.Name == "":
					r.ToolCalls[d.Index].Function.Arguments += d.Function.Arguments
				default:
					t.Fatalf("choice %d: a tool call delta out of place: %s", c.Index, ev)
				}
			}
			if c.FinishReason != nil {
				r.Finish = *c.FinishReason
			}
		}
	}
	return out, usage
}

// checkArguments returns why a call's arguments do not match its tool's
// parameters (weatherTool, addTool), checked by hand ("" when they do).
func checkArguments(name, args string) string {
	dec := json.NewDecoder(strings.NewReader(args))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || dec.More() {
		return fmt.Sprintf("not a JSON object: %v", err)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
	switch name {
	case "get_weather":
		if !slices.Equal(keys, []string{"city", "unit"}) {
			return fmt.Sprintf("keys %q, want city and unit", keys)
		}
		if city, ok := m["city"].(string); !ok || utf8.RuneCountInString(city) > 12 {
			return "city is not a string of at most 12 characters"
		}
		if u := m["unit"]; u != "c" && u != "f" {
			return "unit is not c or f"
		}
	case "add":
		if !slices.Equal(keys, []string{"a", "b"}) {
			return fmt.Sprintf("keys %q, want a and b", keys)
		}
		for _, k := range keys {
			n, ok := m[k].(json.Number)
			if !ok || strings.ContainsAny(n.String(), ".eE") {
				return k + " is not an integer"
			}
		}
	default:
		return "no tool of that name"
	}
	return ""
}

// TestToolCalls asks for tool calls under each tool_choice, sampled, n
// choices at once, streamed and not with the same seed: every choice that
// ends is a valid reply (calls of the tools allowed whose arguments match
// their parameters, or under auto a response), and the stream, merged as a
// client merges it, says what the whole answer says.
func TestToolCalls(t *testing.T) {
	ts := startServer(t, serverConfig{})
	tools := `"tools": [` + weatherTool + `, ` + addTool + `]`
	const weather, hello = "What is the weather in Paris?", "Say hello to me."
	cases := []struct {
		name, user, body string
		n                int
		allowed          []string // the tools a call may name
		one              bool     // at most one call a reply
		auto             bool     // a response may come instead
		response         bool     // one must
	}{
		{"auto", weather, `"tool_choice": "auto", "seed": 1`, 2, []string{"get_weather", "add"}, false, true, false},
		{"auto, a greeting", hello, `"seed": 3`, 2, []string{"get_weather", "add"}, false, true, true},
		{"required", weather, `"tool_choice": "required", "seed": 2`, 3, []string{"get_weather", "add"}, false, false, false},
		{"required, one call", weather, `"tool_choice": "required", "parallel_tool_calls": false, "seed": 3`, 2, []string{"get_weather", "add"}, true, false, false},
		{"named", weather, `"tool_choice": {"type": "function", "function": {"name": "add"}}, "seed": 4`, 2, []string{"add"}, true, false, false},
	}
	type result struct {
		whole, streamed []chatReply
		wu, su          openai.Usage
	}
	results := make([]result, len(cases))
	var wg sync.WaitGroup
	for i, c := range cases {
		body := fmt.Sprintf(`{"messages": [{"role": "user", "content": %q}], %s, %s, "n": %d, "temperature": 1, "max_tokens": 100`, c.user, tools, c.body, c.n)
		wg.Add(2)
		go func() {
			defer wg.Done()
			code, data := post(t, ts, "/v1/chat/completions", body+`}`)
			if code != 200 {
				t.Errorf("%s: %d %s", c.name, code, data)
				return
			}
			results[i].whole, results[i].wu = chatReplies(t, data)
		}()
		go func() {
			defer wg.Done()
			code, data := post(t, ts, "/v1/chat/completions", body+`, "stream": true, "stream_options": {"include_usage": true}}`)
			if code != 200 {
				t.Errorf("%s stream: %d %s", c.name, code, data)
				return
			}
			results[i].streamed, results[i].su = streamReplies(t, data, c.n)
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, c := range cases {
		calls, responses := 0, 0
		res := results[i]
		for j, w := range res.whole {
			s := res.streamed[j]
			t.Logf("%s: choice %d: %s %s %+v", c.name, j, w.Finish, str(w.Content), w.ToolCalls)
			finish := w.Finish
			if c.name == "named" && w.ToolCalls != nil {
				// (A call the request named finishes with stop, as OpenAI's.)
				if finish != "stop" {
					t.Errorf("%s: choice %d: finish %q, want stop for a named call", c.name, j, finish)
				}
				finish = "tool_calls"
			}
			switch finish {
			case "tool_calls":
				calls++
				if w.Content != nil || len(w.ToolCalls) == 0 || c.one && len(w.ToolCalls) != 1 {
					t.Errorf("%s: choice %d: content %s with %d calls", c.name, j, str(w.Content), len(w.ToolCalls))
				}
				for _, call := range w.ToolCalls {
					if !callID.MatchString(call.ID) || call.Type != "function" || !slices.Contains(c.allowed, call.Function.Name) {
						t.Errorf("%s: choice %d: call %+v, want an id, type function and one of %q", c.name, j, call, c.allowed)
					}
					if why := checkArguments(call.Function.Name, call.Function.Arguments); why != "" {
						t.Errorf("%s: choice %d: %s(%s): %s", c.name, j, call.Function.Name, call.Function.Arguments, why)
					}
				}
			case "stop":
				responses++
				if !c.auto || w.Content == nil || w.ToolCalls != nil {
					t.Errorf("%s: choice %d: a response (%s, %d calls) where none may come", c.name, j, str(w.Content), len(w.ToolCalls))
				}
			case "length":
				// The raw text, which is not a whole reply.
				if w.Content == nil || w.ToolCalls != nil {
					t.Errorf("%s: choice %d cut by length: content %s, %d calls; want the raw text", c.name, j, str(w.Content), len(w.ToolCalls))
				} else if _, ok := parseReply(*w.Content); ok {
					t.Errorf("%s: choice %d cut by length holds a whole reply: %s", c.name, j, *w.Content)
				}
				continue // (streamed, the reply's parts so far)
			default:
				t.Errorf("%s: choice %d: finish_reason %q", c.name, j, w.Finish)
			}
			// Streamed: the same, but the ids (random).
			if s.Finish != w.Finish || str(s.Content) != str(w.Content) || len(s.ToolCalls) != len(w.ToolCalls) {
				t.Errorf("%s: choice %d streamed %s %s with %d calls, whole %s %s with %d", c.name, j, s.Finish, str(s.Content), len(s.ToolCalls), w.Finish, str(w.Content), len(w.ToolCalls))
				continue
			}
			for k := range w.ToolCalls {
				if s.ToolCalls[k].Function != w.ToolCalls[k].Function {
					t.Errorf("%s: choice %d: streamed call %d %+v, whole %+v", c.name, j, k, s.ToolCalls[k].Function, w.ToolCalls[k].Function)
				}
			}
		}
		if res.wu != res.su || res.wu.CompletionTokens == 0 {
			t.Errorf("%s: usage %+v, streamed %+v", c.name, res.wu, res.su)
		}
		if calls == 0 && !c.response {
			t.Errorf("%s: no choice called a tool", c.name)
		}
		if c.response && responses == 0 {
			t.Errorf("%s: no choice responded", c.name)
		}
	}
}

// str shows a content that may be null.
func str(s *string) string {
	if s == nil {
		return "null"
	}
	return fmt.Sprintf("%q", *s)
}

// tokenize returns /tokenize's ids for a body.
func tokenize(t *testing.T, ts *testServer, body string) []int {
	t.Helper()
	code, data := post(t, ts, "/tokenize", body)
	if code != 200 {
		t.Fatalf("/tokenize: %d %s", code, data)
	}
	var r struct{ Tokens []int }
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return r.Tokens
}

// TestToolHistory: a conversation with an assistant's tool calls and the
// tools' results goes to the model as the hand-written prompt (openchat's
// template, system messages dropped as serve does by default: the tools'
// description leads the first user message), and is answered; under
// tool_choice none the tools are not described.
func TestToolHistory(t *testing.T) {
	ts := startServer(t, serverConfig{})
	tools := `"tools": [` + weatherTool + `, ` + addTool + `]`
	want := strings.Replace(historyPrompt, "GPT4 Correct System: Be brief.\n\n"+toolsPrompt+"<|end_of_turn|>GPT4 Correct User: ", "GPT4 Correct User: "+toolsPrompt+"\n\n", 1)
	wantIDs, err := ts.Tok.EncodeSpecial(want)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"messages": ` + history + `, ` + tools
	if got := tokenize(t, ts, body+`}`); !slices.Equal(got, wantIDs) {
		text, _ := ts.Tok.Decode(got)
		t.Errorf("the prompt's ids are those of\n%q\nwant\n%q", text, want)
	}
	code, data := post(t, ts, "/v1/chat/completions", body+`, "max_tokens": 100, "temperature": 0}`)
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	replies, usage := chatReplies(t, data)
	if usage.PromptTokens != len(wantIDs) || len(replies) != 1 {
		t.Errorf("%d prompt tokens, %d choices; want %d and 1", usage.PromptTokens, len(replies), len(wantIDs))
	}
	for _, c := range replies[0].ToolCalls {
		if why := checkArguments(c.Function.Name, c.Function.Arguments); why != "" {
			t.Errorf("%s(%s): %s", c.Function.Name, c.Function.Arguments, why)
		}
	}
	t.Logf("%s %s %+v", replies[0].Finish, str(replies[0].Content), replies[0].ToolCalls)

	// tool_choice none: the history as it is, no tools described, and
	// the answer free text.
	none := strings.Replace(want, toolsPrompt+"\n\n", "", 1)
	if got, wantIDs := tokenize(t, ts, body+`, "tool_choice": "none"}`), must(ts.Tok.EncodeSpecial(none)); !slices.Equal(got, wantIDs) {
		text, _ := ts.Tok.Decode(got)
		t.Errorf("tool_choice none: the prompt's ids are those of\n%q\nwant\n%q", text, none)
	}
	code, data = post(t, ts, "/v1/chat/completions", `{"messages": [{"role": "user", "content": "Hi"}], `+tools+`, "tool_choice": "none", "max_tokens": 8, "ignore_eos": true}`)
	if replies, _ := chatReplies(t, data); code != 200 || replies[0].Content == nil || replies[0].ToolCalls != nil || replies[0].Finish != "length" {
		t.Errorf("tool_choice none: %d %s", code, data)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestToolCallsLogprobs: logprobs of a tool-calling reply are its raw
// tokens': one a token generated, and their bytes, but the end token's,
// make the JSON whose calls the message holds.
func TestToolCallsLogprobs(t *testing.T) {
	ts := startServer(t, serverConfig{})
	code, data := post(t, ts, "/v1/chat/completions", `{"messages": [{"role": "user", "content": "Add 1 and 2."}], "tools": [`+addTool+`],
		"tool_choice": "required", "max_tokens": 100, "temperature": 0, "logprobs": true, "top_logprobs": 2}`)
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	replies, usage := chatReplies(t, data)
	var r struct {
		Choices []struct {
			Logprobs openai.ChatLogprobs `json:"logprobs"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	lp := r.Choices[0].Logprobs.Content
	if replies[0].Finish != "tool_calls" || len(lp) != usage.CompletionTokens {
		t.Fatalf("finish %s with %d logprobs for %d tokens; want tool_calls, one each: %s", replies[0].Finish, len(lp), usage.CompletionTokens, data)
	}
	var raw []byte
	for _, tok := range lp {
		if len(tok.TopLogprobs) != 2 {
			t.Errorf("token %q: %d alternatives, want 2", tok.Token, len(tok.TopLogprobs))
		}
		for _, b := range tok.Bytes {
			raw = append(raw, byte(b))
		}
	}
	// (The end token, where the model drew one before the grammar ended
	// the reply, is the last.)
	text := strings.TrimSuffix(string(raw), "<|end_of_turn|>")
	reply, ok := parseReply(text)
	if !ok || len(reply.calls) != len(replies[0].ToolCalls) {
		t.Fatalf("the tokens make %q, not the reply of %+v", text, replies[0].ToolCalls)
	}
	for i, c := range replies[0].ToolCalls {
		if c.Function != reply.calls[i] {
			t.Errorf("call %d: %+v, the tokens make %+v", i, c.Function, reply.calls[i])
		}
	}
}

// TestToolErrors: what cannot be honoured is a 400 naming the field.
func TestToolErrors(t *testing.T) {
	ts := startServer(t, serverConfig{})
	user := `"messages": [{"role": "user", "content": "x"}]`
	// 30 nested required objects: within the grammar's depth alone, past
	// it inside a tool call's reply.
	deep := `{"type": "string"}`
	for range 30 {
		deep = `{"type": "object", "properties": {"a": ` + deep + `}, "required": ["a"]}`
	}
	for _, c := range []struct{ path, body, param, says string }{
		{"/v1/chat/completions", `"tools": [` + addTool + `, {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "integer", "minimum": 3}}}}}]`,
			"tools[1].function.parameters", "/properties/x/minimum"},
		{"/v1/chat/completions", `"tools": [{"type": "function", "function": {"name": "f", "parameters": {"$ref": "#/$defs/none"}}}]`,
			"tools[0].function.parameters", `"#/$defs/none": no such definition`},
		{"/v1/chat/completions", `"tools": [` + addTool + `, {"type": "function", "function": {"name": "f", "parameters": ` + deep + `}}]`, "tools[1].function.parameters", "3 levels deep in the reply: schema /: no value nests fewer than 33"},
		{"/v1/chat/completions", `"tools": [` + addTool + `], "response_format": {"type": "json_object"}`, "response_format", "both constrain the output"},
		{"/v1/chat/completions", `"tools": [` + addTool + `], "tool_choice": {"type": "function", "function": {"name": "sub"}}`, "tool_choice.function.name", "not among the tools"},
		{"/v1/chat/completions", `"tools": [` + addTool + `, ` + addTool + `]`, "tools[1].function.name", "unique"},
		{"/v1/completions", `"prompt": "x", "tools": [` + addTool + `]`, "tools", "chat completions only"},
	} {
		body := `{` + c.body + `}`
		if strings.Contains(c.path, "chat") {
			body = `{` + user + `, ` + c.body + `}`
		}
		code, data := post(t, ts, c.path, body)
		r := decode(t, data)
		if code != 400 || r.Error == nil || r.Error.Param == nil || *r.Error.Param != c.param || !strings.Contains(r.Error.Message, c.says) {
			t.Errorf("%s: %d %s, want a 400 naming %s and saying %q", c.body, code, data, c.param, c.says)
		}
	}
	// Under tool_choice none the tools' parameters constrain nothing: a
	// keyword the grammar refuses passes.
	code, data := post(t, ts, "/v1/chat/completions", `{`+user+`, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "integer", "minimum": 3}}}}}], "tool_choice": "none", "max_tokens": 2}`)
	if code != 200 {
		t.Errorf("tool_choice none with a minimum: %d %s", code, data)
	}
}

// TestToolCallsIgnoreStop: stop strings do not cut a generic tool-calling
// reply's calls (the JSON the grammar keeps whole; they are matched in a
// response's text only), streamed or not: with stops that occur in any
// such reply ("{", "\"", a newline), a required call still comes back as
// a call.
func TestToolCallsIgnoreStop(t *testing.T) {
	ts := startServer(t, serverConfig{})
	body := `{"messages": [{"role": "user", "content": "Add 1 and 2."}], "tools": [` + addTool + `], "tool_choice": "required",
		"max_tokens": 100, "temperature": 0, "stop": ["{", "\"", "\n"]`
	code, data := post(t, ts, "/v1/chat/completions", body+`}`)
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	whole, _ := chatReplies(t, data)
	code, data = post(t, ts, "/v1/chat/completions", body+`, "stream": true}`)
	if code != 200 {
		t.Fatalf("stream: %d %s", code, data)
	}
	streamed, _ := streamReplies(t, data, 1)
	for _, r := range [][]chatReply{whole, streamed} {
		if r[0].Finish != "tool_calls" || len(r[0].ToolCalls) == 0 {
			t.Fatalf("finish %q with %d calls: %+v", r[0].Finish, len(r[0].ToolCalls), r[0])
		}
		for _, c := range r[0].ToolCalls {
			if msg := checkArguments(c.Function.Name, c.Function.Arguments); msg != "" {
				t.Errorf("%s(%s): %s", c.Function.Name, c.Function.Arguments, msg)
			}
		}
	}
}

// TestToolsCompileCost: a request's tools cost the server their size, not
// its square (each tool's reply held every tool: 1,000 small tools took
// 6 s), and their patterns share one bound (40 tools of 4 patterns, each
// tool within it alone, took 6 s: the 400 names the tool that passes it).
func TestToolsCompileCost(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a thousand tools")
	}
	ts := startServer(t, serverConfig{})
	request := func(n int, params func(i int) string) *openai.Request {
		t.Helper()
		var tools []string
		for i := range n {
			tools = append(tools, fmt.Sprintf(`{"type": "function", "function": {"name": "f%d", "parameters": %s}}`, i, params(i)))
		}
		req, err := openai.Parse([]byte(`{"messages": [{"role": "user", "content": "x"}], "tools": [`+strings.Join(tools, ", ")+`]}`), true)
		if err != nil {
			t.Fatal(err)
		}
		return req
	}
	small := request(1000, func(int) string { return `{"type": "object", "properties": {"a": {"type": "string"}}}` })
	patterns := request(40, func(i int) string {
		var props []string
		for k := range 4 {
			p, _ := json.Marshal(fmt.Sprintf(`^.{0,%d}$`, 800+4*i+k))
			props = append(props, fmt.Sprintf(`"s%d": {"type": "string", "pattern": %s}`, k, p))
		}
		return `{"type": "object", "properties": {` + strings.Join(props, ", ") + `}}`
	})
	for _, c := range []struct {
		name string
		req  *openai.Request
		says string // "": compiles
	}{
		{"1000 tools", small, ""},
		{"160 patterns", patterns, "too costly"},
	} {
		t0 := time.Now()
		_, err := ts.Server.grammar(ts.backend(), c.req, nil)
		if d := time.Since(t0); d > 2*time.Second {
			t.Errorf("%s: took %v", c.name, d)
		}
		var fe *openai.FieldError
		switch {
		case c.says == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.says != "" && (!errors.As(err, &fe) || !strings.HasPrefix(fe.Field, "tools[") || !strings.Contains(fe.Msg, c.says)):
			t.Errorf("%s: error %v, want one naming a tool and saying %q", c.name, err, c.says)
		}
	}
}

// TestToolCallsStopResponse: in the generic format, a stop string cuts a
// reply's response text where it occurs in the decoded text (the reply
// of the same seed without it, cut there; finish stop), whole and
// streamed, not in the JSON around it.
func TestToolCallsStopResponse(t *testing.T) {
	if testing.Short() {
		t.Skip("serves the tiny model")
	}
	ts := startServer(t, serverConfig{})
	body := func(extra string) string {
		return `{"messages": [{"role": "user", "content": "Say hello."}], "tools": [` + weatherTool + `], "tool_choice": "auto", "temperature": 1, "max_tokens": 120, ` + extra + `}`
	}
	// A seed whose reply is a response of 20 bytes or more.
	var response, seed string
	for s := 1; s <= 40 && response == ""; s++ {
		seed = fmt.Sprintf(`"seed": %d`, s)
		code, data := post(t, ts, "/v1/chat/completions", body(seed))
		if code != 200 {
			t.Fatalf("%d %s", code, data)
		}
		r, _ := chatReplies(t, data)
		if r[0].Finish == "stop" && r[0].ToolCalls == nil && r[0].Content != nil && len(*r[0].Content) >= 20 {
			response = *r[0].Content
		}
	}
	if response == "" {
		t.Fatal("no seed of 40 gave a response of 20 bytes or more")
	}
	p := 8
	for ; p+3 <= len(response) && strings.Index(response, response[p:p+3]) != p; p++ {
	}
	if p+3 > len(response) {
		t.Fatalf("no stop string to cut %q with", response)
	}
	stop := compactJSON(response[p : p+3])
	want := str(strp(response[:p]))
	for _, stream := range []bool{false, true} {
		code, data := post(t, ts, "/v1/chat/completions", body(seed+`, "stop": [`+stop+`, "{\"response\""], "stream": `+fmt.Sprint(stream)))
		if code != 200 {
			t.Fatalf("%d %s", code, data)
		}
		var r []chatReply
		if stream {
			r, _ = streamReplies(t, data, 1)
		} else {
			r, _ = chatReplies(t, data)
		}
		if str(r[0].Content) != want || r[0].Finish != "stop" || r[0].ToolCalls != nil {
			t.Errorf("stream %v, stop %s: content %s, finish %s, %d calls; want %s, stop", stream, stop, str(r[0].Content), r[0].Finish, len(r[0].ToolCalls), want)
		}
	}
}
