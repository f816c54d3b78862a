package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// chatBoth posts a chat body whole and streamed (with usage) and reads
// both.
func chatBoth(t *testing.T, ts *testServer, body string, n int) (whole, streamed []chatReply, wu, su usageDetails) {
	t.Helper()
	code, data := post(t, ts, "/v1/chat/completions", body+`}`)
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	whole, _ = chatReplies(t, data)
	wu = readUsage(t, data)
	code, data = post(t, ts, "/v1/chat/completions", body+`, "stream": true, "stream_options": {"include_usage": true}}`)
	if code != 200 {
		t.Fatalf("stream: %d %s", code, data)
	}
	streamed, _ = streamReplies(t, data, n)
	evs := events(t, data)
	su = readUsage(t, []byte(evs[len(evs)-2]))
	return whole, streamed, wu, su
}

// usageDetails is a response's usage with its reasoning tokens (-1 where
// it has no completion_tokens_details).
type usageDetails struct {
	Completion, Reasoning int
}

func readUsage(t *testing.T, data []byte) usageDetails {
	t.Helper()
	var r struct {
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
			Details          *struct {
				ReasoningTokens int `json:"reasoning_tokens"`
			} `json:"completion_tokens_details"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("%v: %s", err, data)
	}
	u := usageDetails{r.Usage.CompletionTokens, -1}
	if r.Usage.Details != nil {
		u.Reasoning = r.Usage.Details.ReasoningTokens
	}
	return u
}

// sameReplies reports where a stream's replies differ from the whole
// response's.
func sameReplies(t *testing.T, whole, streamed []chatReply) {
	t.Helper()
	for j, w := range whole {
		s := streamed[j]
		if str(s.Reasoning) != str(w.Reasoning) || str(s.Content) != str(w.Content) || s.Finish != w.Finish || len(s.ToolCalls) != len(w.ToolCalls) {
			t.Errorf("choice %d streamed reasoning %s, content %s, %d calls, finish %s; whole %s, %s, %d, %s", j,
				str(s.Reasoning), str(s.Content), len(s.ToolCalls), s.Finish, str(w.Reasoning), str(w.Content), len(w.ToolCalls), w.Finish)
			continue
		}
		for k := range w.ToolCalls {
			if s.ToolCalls[k].Function != w.ToolCalls[k].Function {
				t.Errorf("choice %d: streamed call %d %+v, whole %+v", j, k, s.ToolCalls[k].Function, w.ToolCalls[k].Function)
			}
		}
	}
}

// TestReasoningServed serves the tiny model under QwQ-32B's template with
// enable_thinking (its generation prompt opens <think>), </think> one
// token of its vocabulary (<|pad_0|> renamed, not special, as in Qwen's)
// and a logit bias on it that makes the model close the block after some
// reasoning: the reasoning and content of each choice, whole and streamed,
// are those of the raw reply (reasoning_format none) split at </think>;
// include_reasoning false leaves the reasoning out, a prompt that closes
// the block (no enable_thinking) reads none; a stop string cuts the
// content, never the reasoning, and max_tokens cuts the reasoning;
// tool_choice required gets valid calls after the
// reasoning, json_schema a valid value after it.
func TestReasoningServed(t *testing.T) {
	if testing.Short() {
		t.Skip("serves the tiny model")
	}
	tok := templateTokenizer(t, readTemplate(t, "Qwen-QwQ-32B"), thinkClose, false)
	closeID, ok := tok.TokenID(thinkClose)
	if !ok {
		t.Fatal("no </think> token")
	}
	ts := startServer(t, serverConfig{Tokenizer: tok})
	think := `"chat_template_kwargs": {"enable_thinking": true}`
	bias := fmt.Sprintf(`"logit_bias": {"%d": 16}`, closeID)
	user := `"messages": [{"role": "user", "content": "What is the weather in Paris?"}]`
	body := func(extra string, n, maxTokens int) string {
		return fmt.Sprintf(`{%s, %s, "n": %d, "temperature": 1, "seed": 7, "max_tokens": %d, %s`, user, bias, n, maxTokens, extra)
	}

	t.Run("text", func(t *testing.T) {
		whole, streamed, wu, su := chatBoth(t, ts, body(think, 4, 40), 4)
		sameReplies(t, whole, streamed)
		if wu != su || wu.Reasoning <= 0 || wu.Reasoning >= wu.Completion {
			t.Errorf("usage %+v, streamed %+v; want reasoning tokens among the completion's", wu, su)
		}
		code, data := post(t, ts, "/v1/chat/completions", body(think+`, "reasoning_format": "none"`, 4, 40)+"}")
		if code != 200 {
			t.Fatalf("%d %s", code, data)
		}
		raw, _ := chatReplies(t, data)
		if u := readUsage(t, data); u.Reasoning != -1 {
			t.Errorf("reasoning_format none: usage %+v", u)
		}
		both := 0
		for j, w := range whole {
			t.Logf("choice %d: %s reasoning %s content %s", j, w.Finish, str(w.Reasoning), str(w.Content))
			r := raw[j]
			if r.Reasoning != nil || r.Content == nil {
				t.Fatalf("choice %d under reasoning_format none: reasoning %s, content %s", j, str(r.Reasoning), str(r.Content))
			}
			before, after, closed := strings.Cut(*r.Content, thinkClose)
			wantR, wantC := strp(strings.TrimSpace(before)), strp(strings.TrimLeft(after, " \t\r\n"))
			if *wantR == "" {
				wantR = nil
			}
			if !closed || *wantC == "" {
				wantC = nil
			}
			if str(w.Reasoning) != str(wantR) || str(w.Content) != str(wantC) {
				t.Errorf("choice %d: reasoning %s, content %s; the raw reply %s splits into %s, %s", j, str(w.Reasoning), str(w.Content), str(r.Content), str(wantR), str(wantC))
			}
			if w.Reasoning != nil && w.Content != nil {
				both++
			}
		}
		if both == 0 {
			t.Error("no choice both reasoned and answered")
		}

		code, data = post(t, ts, "/v1/chat/completions", body(think+`, "include_reasoning": false`, 4, 40)+"}")
		if code != 200 {
			t.Fatalf("%d %s", code, data)
		}
		dropped, _ := chatReplies(t, data)
		for j, d := range dropped {
			if d.Reasoning != nil || str(d.Content) != str(whole[j].Content) {
				t.Errorf("include_reasoning false: choice %d reasoning %s, content %s; want none, %s", j, str(d.Reasoning), str(d.Content), str(whole[j].Content))
			}
		}

		// (QwQ's template without enable_thinking closes the block in
		// the prompt.)
		whole, streamed, wu, _ = chatBoth(t, ts, body(`"seed": 7`, 2, 20), 2)
		sameReplies(t, whole, streamed)
		for j, w := range whole {
			if w.Reasoning != nil || w.Content == nil {
				t.Errorf("the block closed in the prompt: choice %d reasoning %s, content %s", j, str(w.Reasoning), str(w.Content))
			}
		}
		if wu.Reasoning != -1 {
			t.Errorf("the block closed in the prompt: usage %+v", wu)
		}
	})

	t.Run("stop and max_tokens", func(t *testing.T) {
		// A stop string matches the content only: the reasoning of each
		// choice is the same seed's without it, spaces and all, and the
		// content that one's cut at its first space.
		free, _, _, _ := chatBoth(t, ts, body(think, 4, 40), 4)
		whole, streamed, _, _ := chatBoth(t, ts, body(think+`, "stop": [" "]`, 4, 40), 4)
		sameReplies(t, whole, streamed)
		spaced, cut := 0, 0
		for j, w := range whole {
			f := free[j]
			wantC, finish := f.Content, f.Finish
			if f.Content != nil {
				if i := strings.Index(*f.Content, " "); i >= 0 {
					wantC, finish = strp((*f.Content)[:i]), "stop"
					if i == 0 {
						wantC = nil
					}
					cut++
				}
			}
			if strings.Contains(str(f.Reasoning), " ") {
				spaced++
			}
			if str(w.Reasoning) != str(f.Reasoning) || str(w.Content) != str(wantC) || w.Finish != finish {
				t.Errorf("stop: choice %d %s reasoning %s content %s; want %s, %s, %s (without the stop string: content %s)", j, w.Finish, str(w.Reasoning), str(w.Content), finish, str(f.Reasoning), str(wantC), str(f.Content))
			}
		}
		if spaced == 0 || cut == 0 {
			t.Errorf("%d choices reasoned with a space, %d answered with one; want both", spaced, cut)
		}
		whole, streamed, wu, _ := chatBoth(t, ts, fmt.Sprintf(`{%s, %s, "n": 2, "temperature": 1, "seed": 9, "max_tokens": 5, "logprobs": true`, user, think), 2)
		sameReplies(t, whole, streamed)
		for j, w := range whole {
			if w.Finish != "length" || w.Content != nil || w.Reasoning == nil {
				t.Errorf("max_tokens: choice %d %s reasoning %s content %s; want the reasoning cut", j, w.Finish, str(w.Reasoning), str(w.Content))
			}
		}
		if wu.Completion != 10 || wu.Reasoning != 10 {
			t.Errorf("max_tokens: usage %+v; want 10 tokens of reasoning", wu)
		}
	})

	t.Run("required", func(t *testing.T) {
		tools := `"tools": [` + weatherTool + `, ` + addTool + `], "tool_choice": "required", "parallel_tool_calls": false`
		whole, streamed, wu, su := chatBoth(t, ts, body(think+", "+tools, 3, 250), 3)
		sameReplies(t, whole, streamed)
		if wu != su {
			t.Errorf("usage %+v, streamed %+v", wu, su)
		}
		calls, reasoned := 0, 0
		for j, w := range whole {
			t.Logf("choice %d: %s reasoning %s content %s calls %+v", j, w.Finish, str(w.Reasoning), str(w.Content), w.ToolCalls)
			if w.Reasoning != nil {
				reasoned++
			}
			if w.Finish == "length" {
				continue
			}
			if w.Finish != "tool_calls" || len(w.ToolCalls) != 1 || w.Content != nil {
				t.Errorf("choice %d: %s, content %s, %d calls; want one call", j, w.Finish, str(w.Content), len(w.ToolCalls))
				continue
			}
			calls++
			c := w.ToolCalls[0]
			if why := checkArguments(c.Function.Name, c.Function.Arguments); why != "" {
				t.Errorf("choice %d: %s(%s): %s", j, c.Function.Name, c.Function.Arguments, why)
			}
		}
		if calls == 0 || reasoned == 0 {
			t.Errorf("%d choices called, %d reasoned", calls, reasoned)
		}
	})

	t.Run("json_schema", func(t *testing.T) {
		whole, streamed, _, _ := chatBoth(t, ts, body(think+", "+answerSchema, 3, 120), 3)
		sameReplies(t, whole, streamed)
		valid := 0
		for j, w := range whole {
			t.Logf("choice %d: %s reasoning %s content %s", j, w.Finish, str(w.Reasoning), str(w.Content))
			if w.Finish == "length" {
				continue
			}
			answer := schemaAnswer(t, j, w.Content)
			if answer == nil {
				continue
			}
			if _, err := answer.Int64(); err != nil {
				t.Errorf("choice %d: answer %s", j, *answer)
			}
			valid++
		}
		if valid == 0 {
			t.Error("no choice answered")
		}
	})

	t.Run("auto", func(t *testing.T) {
		tools := `"tools": [` + weatherTool + `, ` + addTool + `], "tool_choice": "auto"`
		whole, streamed, _, _ := chatBoth(t, ts, body(think+", "+tools, 3, 40), 3)
		sameReplies(t, whole, streamed)
	})
}

// TestReasoningServedOptional serves the tiny model under Qwen3's
// template, whose generation prompt leaves the block to the model: under
// tool_choice required a reply may open it or call at once (the grammar
// allows both starts), and either way ends in a valid call, read alike
// whole and streamed; under enable_thinking false the prompt closes the
// block and the reply is not read for one.
func TestReasoningServedOptional(t *testing.T) {
	if testing.Short() {
		t.Skip("serves the tiny model")
	}
	tok := templateTokenizer(t, readTemplate(t, "Qwen-Qwen3-0.6B"), thinkClose, false)
	closeID, _ := tok.TokenID(thinkClose)
	ts := startServer(t, serverConfig{Tokenizer: tok})
	user := `"messages": [{"role": "user", "content": "What is the weather in Paris?"}]`
	tools := `"tools": [` + weatherTool + `, ` + addTool + `], "tool_choice": "required", "parallel_tool_calls": false`
	body := fmt.Sprintf(`{%s, %s, "logit_bias": {"%d": 16}, "n": 4, "temperature": 1, "seed": 3, "max_tokens": 250`, user, tools, closeID)
	whole, streamed, _, _ := chatBoth(t, ts, body, 4)
	sameReplies(t, whole, streamed)
	calls := 0
	for j, w := range whole {
		t.Logf("choice %d: %s reasoning %s content %s calls %+v", j, w.Finish, str(w.Reasoning), str(w.Content), w.ToolCalls)
		if w.Finish == "length" {
			continue
		}
		if w.Finish != "tool_calls" || len(w.ToolCalls) != 1 || w.Content != nil {
			t.Errorf("choice %d: %s, content %s, %d calls; want one call", j, w.Finish, str(w.Content), len(w.ToolCalls))
			continue
		}
		calls++
		c := w.ToolCalls[0]
		if why := checkArguments(c.Function.Name, c.Function.Arguments); why != "" {
			t.Errorf("choice %d: %s(%s): %s", j, c.Function.Name, c.Function.Arguments, why)
		}
	}
	if calls == 0 {
		t.Error("no choice called")
	}
	whole, streamed, wu, _ := chatBoth(t, ts, fmt.Sprintf(`{%s, "chat_template_kwargs": {"enable_thinking": false}, "logit_bias": {"%d": 16}, "n": 2, "temperature": 1, "seed": 3, "max_tokens": 20`, user, closeID), 2)
	sameReplies(t, whole, streamed)
	for j, w := range whole {
		if w.Reasoning != nil || !strings.Contains(str(w.Content), thinkClose) {
			t.Errorf("enable_thinking false: choice %d reasoning %s, content %s; want the raw text", j, str(w.Reasoning), str(w.Content))
		}
	}
	if wu.Reasoning != -1 {
		t.Errorf("enable_thinking false: usage %+v", wu)
	}
}

// TestReasoningServedMistral serves the tiny model under Ministral 3
// Reasoning's template, whose prompt leaves the block to the model, with
// [/THINK] one special token of its vocabulary (<|pad_0|> renamed, as
// Mistral's control token) and a logit bias on it: under a json_schema a
// reply may open [THINK] or answer at once (the grammar allows both
// starts); one that opened it has its reasoning apart, without the
// markers, and the schema's value as content, read alike whole and
// streamed, its reasoning tokens counted; under tool_choice required the
// calls in Mistral's [TOOL_CALLS]name[ARGS]{…} form follow [/THINK];
// under reasoning_format none the reply is not read for a block (the control token's text left out,
// as other special tokens').
func TestReasoningServedMistral(t *testing.T) {
	if testing.Short() {
		t.Skip("serves the tiny model")
	}
	tok := templateTokenizer(t, readTemplate(t, "mistralai-Ministral-3-14B-Reasoning-2512"), mistralClose, true)
	closeID, ok := tok.TokenID(mistralClose)
	if !ok || !tok.IsSpecial(closeID) {
		t.Fatal("no special [/THINK] token")
	}
	ts := startServer(t, serverConfig{Tokenizer: tok})
	user := `"messages": [{"role": "user", "content": "2+2?"}]`
	body := fmt.Sprintf(`{%s, %s, "logit_bias": {"%d": 12}, "n": 6, "temperature": 1, "seed": 5, "max_tokens": 200`, user, answerSchema, closeID)
	whole, streamed, wu, su := chatBoth(t, ts, body, 6)
	sameReplies(t, whole, streamed)
	if wu != su {
		t.Errorf("usage %+v, streamed %+v", wu, su)
	}
	reasoned := 0
	for j, w := range whole {
		t.Logf("choice %d: %s reasoning %s content %s", j, w.Finish, str(w.Reasoning), str(w.Content))
		if w.Finish == "length" {
			continue
		}
		schemaAnswer(t, j, w.Content)
		if w.Reasoning != nil {
			reasoned++
			if markerLeaked(*w.Reasoning) {
				t.Errorf("choice %d: a marker in the reasoning %s", j, *w.Reasoning)
			}
		}
	}
	if reasoned == 0 || wu.Reasoning <= 0 || wu.Reasoning >= wu.Completion {
		t.Errorf("%d choices reasoned, usage %+v; want some, their tokens among the completion's", reasoned, wu)
	}

	code, data := post(t, ts, "/v1/chat/completions", strings.TrimSuffix(body, "}")+`, "reasoning_format": "none"}`)
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	raw, _ := chatReplies(t, data)
	for j, r := range raw {
		if r.Reasoning != nil || r.Content == nil {
			t.Errorf("reasoning_format none: choice %d reasoning %s, content %s; want all content", j, str(r.Reasoning), str(r.Content))
		}
	}
	if u := readUsage(t, data); u.Reasoning != -1 {
		t.Errorf("reasoning_format none: usage %+v", u)
	}

	tools := `"tools": [` + weatherTool + `, ` + addTool + `], "tool_choice": "required", "parallel_tool_calls": false`
	whole, streamed, wu, su = chatBoth(t, ts, fmt.Sprintf(`{"messages": [{"role": "user", "content": "What is the weather in Paris?"}], %s, "logit_bias": {"%d": 12}, "n": 6, "temperature": 1, "seed": 5, "max_tokens": 250`, tools, closeID), 6)
	sameReplies(t, whole, streamed)
	if wu != su {
		t.Errorf("required: usage %+v, streamed %+v", wu, su)
	}
	calls := 0
	for j, w := range whole {
		t.Logf("required: choice %d: %s reasoning %s content %s calls %+v", j, w.Finish, str(w.Reasoning), str(w.Content), w.ToolCalls)
		if w.Finish == "length" {
			continue
		}
		if w.Finish != "tool_calls" || len(w.ToolCalls) != 1 || w.Content != nil || w.Reasoning == nil || markerLeaked(*w.Reasoning) {
			t.Errorf("required: choice %d: %s, reasoning %s, content %s, %d calls; want reasoning, then one call", j, w.Finish, str(w.Reasoning), str(w.Content), len(w.ToolCalls))
			continue
		}
		calls++
		c := w.ToolCalls[0]
		if why := checkArguments(c.Function.Name, c.Function.Arguments); why != "" {
			t.Errorf("required: choice %d: %s(%s): %s", j, c.Function.Name, c.Function.Arguments, why)
		}
	}
	if calls == 0 {
		t.Error("required: no choice called")
	}
}

// markerLeaked says whether a reasoning holds the markers of its block:
// the opening [THINK] at its start, or a [/THINK] (which ends the block).
// A [THINK] written inside the block is the reasoning's text, as any
// text but the close is.
func markerLeaked(reasoning string) bool {
	return strings.HasPrefix(reasoning, mistralOpen) || strings.Contains(reasoning, mistralClose)
}

// answerSchema is a response_format whose value is {"answer": an integer}.
const answerSchema = `"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"], "additionalProperties": false}}}`

// schemaAnswer is choice j's content read as answerSchema's value (no
// other field, nothing after it), its answer; nil, with an error on t,
// where there is no content or it is not that value.
func schemaAnswer(t *testing.T, j int, content *string) *json.Number {
	t.Helper()
	if content == nil {
		t.Errorf("choice %d: no content", j)
		return nil
	}
	var v struct {
		Answer *json.Number `json:"answer"`
	}
	dec := json.NewDecoder(strings.NewReader(*content))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil || v.Answer == nil || dec.More() {
		t.Errorf("choice %d: content %s is not the schema's: %v", j, str(content), err)
		return nil
	}
	return v.Answer
}

// TestReasoningNoneMistral serves the tiny model under Ministral 3
// Reasoning's template with [THINK] one special token of its vocabulary
// and a logit bias on it: under reasoning_format none the marker stays in
// the content as the model wrote it, whole and streamed alike (it was
// left out as other special tokens are), and the default format reads
// the same seed's reply as that content split at the markers (a reply
// that opens with [THINK] its reasoning). ([/THINK] is kept by the same
// code.)
func TestReasoningNoneMistral(t *testing.T) {
	if testing.Short() {
		t.Skip("serves the tiny model")
	}
	for _, c := range []struct {
		marker string
		bias   int
	}{{mistralOpen, 17}} {
		marker := c.marker
		t.Run(marker, func(t *testing.T) {
			tok := templateTokenizer(t, readTemplate(t, "mistralai-Ministral-3-14B-Reasoning-2512"), marker, true)
			id, ok := tok.TokenID(marker)
			if !ok || !tok.IsSpecial(id) {
				t.Fatalf("no special %s token", marker)
			}
			ts := startServer(t, serverConfig{Tokenizer: tok})
			body := fmt.Sprintf(`{"messages": [{"role": "user", "content": "2+2?"}], "logit_bias": {"%d": %d}, "n": 4, "temperature": 1, "seed": 3, "max_tokens": 30, "ignore_eos": true`, id, c.bias)
			raw, streamed, wu, _ := chatBoth(t, ts, body+`, "reasoning_format": "none"`, 4)
			sameReplies(t, raw, streamed)
			if wu.Reasoning != -1 {
				t.Errorf("reasoning_format none: usage %+v", wu)
			}
			split, _, _, _ := chatBoth(t, ts, body, 4)
			kept, opened := 0, 0
			for j, r := range raw {
				t.Logf("choice %d: %s %s", j, r.Finish, str(r.Content))
				if r.Reasoning != nil || r.Content == nil {
					t.Fatalf("reasoning_format none: choice %d reasoning %s, content %s; want all content", j, str(r.Reasoning), str(r.Content))
				}
				if strings.Contains(*r.Content, marker) {
					kept++
				}
				// The content split as the splitter reads it: a block
				// only at the start.
				var wantR, wantC *string
				text := strings.TrimLeft(*r.Content, " \t\r\n")
				if after, ok := strings.CutPrefix(text, mistralOpen); ok {
					opened++
					before, rest, closed := strings.Cut(after, mistralClose)
					if r := strings.TrimSpace(before); r != "" {
						wantR = &r
					}
					if c := strings.TrimLeft(rest, " \t\r\n"); closed && c != "" {
						wantC = &c
					}
				} else {
					wantC = r.Content
				}
				if s := split[j]; str(s.Reasoning) != str(wantR) || str(s.Content) != str(wantC) {
					t.Errorf("choice %d: reasoning %s, content %s; the raw reply %s splits into %s, %s", j, str(s.Reasoning), str(s.Content), str(r.Content), str(wantR), str(wantC))
				}
			}
			if kept == 0 || marker == mistralOpen && opened == 0 {
				t.Errorf("%d choices' content holds %s, %d opens with it; want some", kept, marker, opened)
			}
		})
	}
}
