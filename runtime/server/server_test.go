package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gptqtool/gptqtool/formats/jinja"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/engine"
	"github.com/gptqtool/gptqtool/runtime/server/openai"
)

// call posts body to path and returns the status, headers and body.
func call(t *testing.T, method, url, key, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

func post(t *testing.T, ts *testServer, path, body string) (int, []byte) {
	t.Helper()
	code, _, data := call(t, "POST", ts.URL+path, "", body)
	return code, data
}

// answer is a response to a request sent in the background: its status,
// Retry-After header and body.
type answer struct {
	code  int
	retry string
	data  []byte
}

// postAsync POSTs body to ts's /v1/completions in the background and sends
// the answer on ch.
func postAsync(t *testing.T, ts *testServer, body string, ch chan<- answer) {
	go func() {
		code, h, data := call(t, "POST", ts.URL+"/v1/completions", "", body)
		ch <- answer{code, h.Get("Retry-After"), data}
	}()
}

// completion is the subset of a response the tests read.
type completion struct {
	Choices []struct {
		Index        int     `json:"index"`
		Text         string  `json:"text"`
		FinishReason *string `json:"finish_reason"`
		Message      struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		Delta struct {
			Role    *string `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		Logprobs json.RawMessage `json:"logprobs"`
	} `json:"choices"`
	Usage *struct {
		Prompt     int `json:"prompt_tokens"`
		Completion int `json:"completion_tokens"`
		Total      int `json:"total_tokens"`
	} `json:"usage"`
	Error *struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func decode(t *testing.T, data []byte) completion {
	t.Helper()
	var c completion
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("response %q: %v", data, err)
	}
	return c
}

// events splits an SSE body into its data payloads.
func events(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}

// cutStream checks a stream the server cut after it sent tokens (what
// says why): a 200, chunks, an error event, then [DONE], and no choice
// with a finish_reason (the error says why it ended). It returns the
// error event for the caller's checks.
func cutStream(t *testing.T, what string, code int, data []byte) []byte {
	t.Helper()
	evs := events(t, data)
	if code != 200 || len(evs) < 3 || evs[len(evs)-1] != "[DONE]" {
		t.Fatalf("a stream %s: %d %.500s, want 200, chunks, an error, [DONE]", what, code, data)
	}
	for _, e := range evs[:len(evs)-2] {
		for _, ch := range decode(t, []byte(e)).Choices {
			if ch.FinishReason != nil {
				t.Errorf("a choice %s has finish_reason %q, want none (the error says why it ended)", what, *ch.FinishReason)
			}
		}
	}
	return []byte(evs[len(evs)-2])
}

// streamText concatenates the content (chat) or text deltas of a stream
// per choice, and returns the parsed chunks.
// completionEnd is the text and finish_reason of a one-choice text
// completion's response body, streamed or not.
func completionEnd(t *testing.T, data []byte, stream bool) (text, finish string) {
	t.Helper()
	if !stream {
		c := decode(t, data)
		return c.Choices[0].Text, *c.Choices[0].FinishReason
	}
	texts, chunks := streamText(t, data, false)
	for _, c := range chunks {
		if len(c.Choices) > 0 && c.Choices[0].FinishReason != nil {
			finish = *c.Choices[0].FinishReason
		}
	}
	return texts[0], finish
}

func streamText(t *testing.T, body []byte, chat bool) (map[int]string, []completion) {
	t.Helper()
	evs := events(t, body)
	if len(evs) == 0 || evs[len(evs)-1] != "[DONE]" {
		t.Fatalf("the stream does not end with [DONE]: %q", body)
	}
	texts := map[int]string{}
	var chunks []completion
	for _, e := range evs[:len(evs)-1] {
		c := decode(t, []byte(e))
		chunks = append(chunks, c)
		for _, ch := range c.Choices {
			if chat && ch.Delta.Content != nil {
				texts[ch.Index] += *ch.Delta.Content
			} else if !chat {
				texts[ch.Index] += ch.Text
			}
		}
	}
	return texts, chunks
}

// storiesGreedy is the llama2.c greedy continuation of "Once upon a time".
func storiesGreedy(t *testing.T, tok *tokenizer.Tokenizer) (prompt []int, text string, n int) {
	t.Helper()
	var ref struct {
		Prompt []int `json:"prompt_ids_with_bos"`
		Greedy []int `json:"greedy_ids"`
	}
	raw, err := os.ReadFile(filepath.Join(fixtures.Path(t, "models/stories260K-hf-mistral"), "expected_greedy.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	d := tok.NewDecoder()
	var b strings.Builder
	for _, id := range ref.Greedy[len(ref.Prompt):] {
		s, err := d.Add(id)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(s)
	}
	b.WriteString(d.Flush())
	return ref.Prompt, b.String(), len(ref.Greedy) - len(ref.Prompt)
}

// TestCompletionsGreedy: the text API reproduces llama2.c's greedy
// continuation, streamed and not, with correct usage.
func TestCompletionsGreedy(t *testing.T) {
	ts := startServer(t, serverConfig{Model: "models/stories260K-hf-mistral", Engine: engine.Options{MaxLen: 512}})
	prompt, want, n := storiesGreedy(t, ts.Tok)
	ids, _ := json.Marshal(prompt)
	code, data := post(t, ts, "/v1/completions", fmt.Sprintf(`{"prompt": %s, "max_tokens": %d, "temperature": 0}`, ids, n))
	if code != 200 {
		t.Fatalf("status %d: %s", code, data)
	}
	c := decode(t, data)
	if got := c.Choices[0].Text; got != want {
		t.Errorf("greedy text\n got %q\nwant %q", got, want)
	}
	if c.Usage.Prompt != len(prompt) || c.Usage.Completion != n || c.Usage.Total != len(prompt)+n || *c.Choices[0].FinishReason != "length" {
		t.Errorf("usage %+v, finish %v", c.Usage, *c.Choices[0].FinishReason)
	}
	// The same as a string prompt (BOS added by the tokenizer) and streamed.
	code, data = post(t, ts, "/v1/completions", fmt.Sprintf(`{"prompt": "Once upon a time", "max_tokens": %d, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}}`, n))
	if code != 200 {
		t.Fatalf("status %d: %s", code, data)
	}
	texts, chunks := streamText(t, data, false)
	if texts[0] != want {
		t.Errorf("streamed text\n got %q\nwant %q", texts[0], want)
	}
	last := chunks[len(chunks)-1]
	if last.Usage == nil || len(last.Choices) != 0 || last.Usage.Completion != n {
		t.Errorf("last chunk is not the usage chunk: %+v", last)
	}
}

// TestChatPrompt: a chat request's prompt is exactly the tokenizer's
// openchat rendering, and the condition field switches the template.
func TestChatPrompt(t *testing.T) {
	ts := startServer(t, serverConfig{})
	msgs := []tokenizer.Message{{Role: "user", Content: "What is the capital of France?"}, {Role: "assistant", Content: "Paris."}, {Role: "user", Content: "And of Italy?"}}
	body, _ := json.Marshal(map[string]any{"messages": msgs})
	for _, cond := range []struct{ field, template string }{{"", "openchat"}, {"GPT4 Correct", "openchat"}, {"Math Correct", "openchat-math"}} {
		var req map[string]any
		json.Unmarshal(body, &req)
		if cond.field != "" {
			req["condition"] = cond.field
		}
		b, _ := json.Marshal(req)
		code, data := post(t, ts, "/tokenize", string(b))
		if code != 200 {
			t.Fatalf("tokenize: %d %s", code, data)
		}
		var got struct{ Tokens []int }
		json.Unmarshal(data, &got)
		want, err := ts.Tok.EncodeChat(msgs, tokenizer.ChatOptions{Template: cond.template, AddGenerationPrompt: true})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got.Tokens) != fmt.Sprint(want) {
			t.Errorf("condition %q: prompt ids\n got %v\nwant %v", cond.field, got.Tokens, want)
		}
		// The completion reports the same prompt length.
		req["max_tokens"], req["temperature"] = 3, 0
		b, _ = json.Marshal(req)
		code, data = post(t, ts, "/v1/chat/completions", string(b))
		if c := decode(t, data); code != 200 || c.Usage.Prompt != len(want) || c.Choices[0].Message.Role != "assistant" {
			t.Errorf("condition %q: %d %s", cond.field, code, data)
		}
	}
	code, data := post(t, ts, "/v1/chat/completions", `{"messages": [{"role": "user", "content": "hi"}], "condition": "Poetic"}`)
	if c := decode(t, data); code != 400 || c.Error == nil || c.Error.Param == nil || *c.Error.Param != "condition" {
		t.Errorf("an unknown condition: %d %s", code, data)
	}
	// Detokenize inverts the rendering.
	ids, _ := ts.Tok.EncodeChat(msgs, tokenizer.ChatOptions{})
	b, _ := json.Marshal(map[string]any{"tokens": ids})
	code, data = post(t, ts, "/detokenize", string(b))
	text, _ := ts.Tok.Decode(ids)
	var dt struct{ Prompt string }
	json.Unmarshal(data, &dt)
	if code != 200 || dt.Prompt != text {
		t.Errorf("detokenize: %d %q, want %q", code, dt.Prompt, text)
	}
	// An empty list is text of its own: none.
	if code, data := post(t, ts, "/detokenize", `{"tokens": []}`); code != 200 || string(data) != "{\"prompt\":\"\"}\n" {
		t.Errorf("detokenize []: %d %s", code, data)
	}
}

// TestChatStream: a role chunk first, deltas equal to the plain response,
// a finish chunk, the usage chunk only when asked, [DONE].
func TestChatStream(t *testing.T) {
	ts := startServer(t, serverConfig{})
	req := `{"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 16, "temperature": 0%s}`
	code, data := post(t, ts, "/v1/chat/completions", fmt.Sprintf(req, ""))
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	plain := decode(t, data).Choices[0].Message.Content
	if !strings.HasPrefix(plain, "The capital of France is") {
		t.Errorf("greedy answer %q (reference.json: \"The capital of France is a major of the world's population, ...\")", plain)
	}
	for _, usage := range []bool{false, true} {
		extra := `, "stream": true`
		if usage {
			extra += `, "stream_options": {"include_usage": true}`
		}
		code, data = post(t, ts, "/v1/chat/completions", fmt.Sprintf(req, extra))
		if code != 200 {
			t.Fatalf("%d %s", code, data)
		}
		texts, chunks := streamText(t, data, true)
		if texts[0] != plain {
			t.Errorf("streamed %q, plain %q", texts[0], plain)
		}
		if r := chunks[0].Choices[0].Delta.Role; r == nil || *r != "assistant" {
			t.Errorf("first chunk %+v has no role", chunks[0])
		}
		var finishes, usages int
		for _, c := range chunks {
			for _, ch := range c.Choices {
				if ch.FinishReason != nil {
					finishes++
					if *ch.FinishReason != "length" {
						t.Errorf("finish %q", *ch.FinishReason)
					}
				}
			}
			if c.Usage != nil {
				usages++
				if len(c.Choices) != 0 || c.Usage.Completion != 16 {
					t.Errorf("usage chunk %+v", c)
				}
			}
		}
		if finishes != 1 || (usage && usages != 1) || (!usage && usages != 0) {
			t.Errorf("include_usage %v: %d finish chunks, %d usage chunks", usage, finishes, usages)
		}
		if usage && !strings.Contains(events(t, data)[1], `"usage":null`) {
			t.Errorf("with include_usage every chunk carries usage: null")
		}
	}
}

// TestStopStrings: a stop string spanning tokens ends the text before it,
// with finish_reason stop, streamed and not.
func TestStopStrings(t *testing.T) {
	ts := startServer(t, serverConfig{Model: "models/stories260K-hf-mistral", Engine: engine.Options{MaxLen: 512}})
	_, want, _ := storiesGreedy(t, ts.Tok)
	// A stop string that starts inside one token and ends in another.
	stop := want[13:21]
	for _, stream := range []bool{false, true} {
		body := fmt.Sprintf(`{"prompt": "Once upon a time", "max_tokens": 60, "temperature": 0, "stop": [%q, "zzzz"], "stream": %v}`, stop, stream)
		code, data := post(t, ts, "/v1/completions", body)
		if code != 200 {
			t.Fatalf("%d %s", code, data)
		}
		text, finish := completionEnd(t, data, stream)
		if text != want[:13] || finish != "stop" {
			t.Errorf("stream %v: %q (%s), want %q (stop)", stream, text, finish, want[:13])
		}
	}
}

// TestStopStringLogprobs: a text completion's logprobs, with a stop string
// spanning tokens, list every token generated, each with the text_offset
// where its text starts in the whole generation (the text held back as a
// possible stop string's start counts), streamed and not alike.
func TestStopStringLogprobs(t *testing.T) {
	ts := startServer(t, serverConfig{Model: "models/stories260K-hf-mistral", Engine: engine.Options{MaxLen: 512}})
	_, want, _ := storiesGreedy(t, ts.Tok) // (ASCII: characters are bytes)
	stop := want[13:21]
	logprobs := func(stream bool) textLogprobs {
		t.Helper()
		body := fmt.Sprintf(`{"prompt": "Once upon a time", "max_tokens": 60, "temperature": 0, "logprobs": 0, "stop": [%q], "stream": %v}`, stop, stream)
		code, data := post(t, ts, "/v1/completions", body)
		if code != 200 {
			t.Fatalf("stream %v: %d %s", stream, code, data)
		}
		var chunks [][]byte
		if stream {
			evs := events(t, data)
			for _, e := range evs[:len(evs)-1] {
				chunks = append(chunks, []byte(e))
			}
		} else {
			chunks = [][]byte{data}
		}
		var all textLogprobs
		for _, c := range chunks {
			var sc scored
			if err := json.Unmarshal(c, &sc); err != nil {
				t.Fatalf("%s: %v", c, err)
			}
			for _, ch := range sc.Choices {
				if lp := ch.Logprobs; lp != nil {
					all.Tokens = append(all.Tokens, lp.Tokens...)
					all.TextOffset = append(all.TextOffset, lp.TextOffset...)
				}
			}
		}
		return all
	}
	whole := logprobs(false)
	if len(whole.Tokens) == 0 || len(whole.TextOffset) != len(whole.Tokens) {
		t.Fatalf("logprobs %+v", whole)
	}
	for i, tok := range whole.Tokens {
		if off := whole.TextOffset[i]; off > len(want) || !strings.HasPrefix(want[off:], tok) {
			t.Errorf("token %d %q: text_offset %d, where the generation has %q", i, tok, off, want[min(off, len(want)):min(off+len(tok), len(want))])
		}
	}
	if end := whole.TextOffset[len(whole.TextOffset)-1] + len(whole.Tokens[len(whole.Tokens)-1]); end < 21 {
		t.Errorf("the tokens' text ends at %d, before the stop string's end 21", end)
	}
	streamed := logprobs(true)
	if !slices.Equal(streamed.Tokens, whole.Tokens) || !slices.Equal(streamed.TextOffset, whole.TextOffset) {
		t.Errorf("streamed logprobs\n got tokens %q offsets %v\nwant tokens %q offsets %v", streamed.Tokens, streamed.TextOffset, whole.Tokens, whole.TextOffset)
	}
}

// TestMaxTokensDefault: without max_tokens a text completion generates at
// most 16 tokens (OpenAI's and vLLM's default for /v1/completions), or the
// context left when less; a chat completion the context left.
func TestMaxTokensDefault(t *testing.T) {
	const maxLen = 64
	ts := startServer(t, serverConfig{Engine: engine.Options{MaxLen: maxLen}})
	for _, tc := range []struct {
		name, path, body string
		stream           bool
		want             func(prompt int) int
	}{
		{"completion", "/v1/completions", `{"prompt": "The cat", "temperature": 0, "ignore_eos": true}`, false, func(int) int { return 16 }},
		{"completion streamed", "/v1/completions", `{"prompt": "The cat", "temperature": 0, "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true}}`, true, func(int) int { return 16 }},
		{"completion near the context", "/v1/completions", fmt.Sprintf(`{"prompt": %q, "temperature": 0, "ignore_eos": true}`, strings.Repeat("cat ", 54)), false, func(p int) int { return maxLen - p }},
		{"chat", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "Hi"}], "temperature": 0, "ignore_eos": true}`, false, func(p int) int { return maxLen - p }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, data := post(t, ts, tc.path, tc.body)
			if code != 200 {
				t.Fatalf("%d %s", code, data)
			}
			var c completion
			if tc.stream {
				_, chunks := streamText(t, data, false)
				c = chunks[len(chunks)-1]
				for _, ch := range chunks {
					if len(ch.Choices) > 0 && ch.Choices[0].FinishReason != nil {
						c.Choices = ch.Choices
					}
				}
			} else {
				c = decode(t, data)
			}
			if c.Usage == nil || len(c.Choices) != 1 || c.Choices[0].FinishReason == nil {
				t.Fatalf("no usage or finish_reason: %s", data)
			}
			if want := tc.want(c.Usage.Prompt); c.Usage.Completion != want || *c.Choices[0].FinishReason != "length" {
				t.Errorf("%d tokens (%s) after a prompt of %d, want %d (length)", c.Usage.Completion, *c.Choices[0].FinishReason, c.Usage.Prompt, want)
			}
		})
	}
}

// TestMinTokensStopStrings: with min_tokens, a stop string in the text of
// the first min_tokens tokens does not end the generation (vLLM checks stop
// strings only past min_tokens, as it does stop tokens); the first one
// that ends past that text does, streamed and not.
func TestMinTokensStopStrings(t *testing.T) {
	ts := startServer(t, serverConfig{Model: "models/stories260K-hf-mistral", Engine: engine.Options{MaxLen: 512}})
	_, want, n := storiesGreedy(t, ts.Tok) // (ASCII: characters are bytes)
	const minTokens = 3
	code, data := post(t, ts, "/v1/completions", fmt.Sprintf(`{"prompt": "Once upon a time", "max_tokens": %d, "temperature": 0, "logprobs": 0}`, n))
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	var sc scored
	if err := json.Unmarshal(data, &sc); err != nil || sc.Choices[0].Text != want || len(sc.Choices[0].Logprobs.TextOffset) <= minTokens {
		t.Fatalf("greedy %s: %v", data, err)
	}
	boundary := sc.Choices[0].Logprobs.TextOffset[minTokens] // the first min_tokens tokens' text
	stop := want[:1]                                         // (the generation's first character: inside that text)
	at := strings.Index(want[boundary-len(stop)+1:], stop)
	if at < 0 {
		t.Fatalf("%q does not come again in %q past %d", stop, want, boundary)
	}
	at += boundary - len(stop) + 1
	for _, stream := range []bool{false, true} {
		code, data := post(t, ts, "/v1/completions", fmt.Sprintf(`{"prompt": "Once upon a time", "max_tokens": %d, "temperature": 0, "min_tokens": %d, "stop": [%q], "stream": %v}`, n, minTokens, stop, stream))
		if code != 200 {
			t.Fatalf("%d %s", code, data)
		}
		text, finish := completionEnd(t, data, stream)
		if text != want[:at] || finish != "stop" {
			t.Errorf("stream %v, stop %q, min_tokens %d: %q (%s), want %q (stop)", stream, stop, minTokens, text, finish, want[:at])
		}
	}
}

// TestSeedAndN: the same seed gives the same text; n choices, each its own.
func TestSeedAndN(t *testing.T) {
	ts := startServer(t, serverConfig{Model: "models/stories260K-hf-mistral", Engine: engine.Options{MaxLen: 512}})
	get := func(seed int, n int) []string {
		code, data := post(t, ts, "/v1/completions", fmt.Sprintf(`{"prompt": "Once upon a time", "max_tokens": 30, "temperature": 1, "seed": %d, "n": %d}`, seed, n))
		if code != 200 {
			t.Fatalf("%d %s", code, data)
		}
		c := decode(t, data)
		out := make([]string, len(c.Choices))
		for _, ch := range c.Choices {
			out[ch.Index] = ch.Text
		}
		return out
	}
	a, b, c := get(11, 1), get(11, 1), get(12, 1)
	if a[0] != b[0] || a[0] == c[0] {
		t.Errorf("seed 11 twice: %q / %q; seed 12: %q", a[0], b[0], c[0])
	}
	many := get(11, 3)
	if len(many) != 3 || many[0] != a[0] || many[1] == many[0] {
		t.Errorf("n=3 with seed 11: %q (choice 0 should equal seed 11 alone)", many)
	}
}

// TestSeedRange: every 64-bit seed is taken as sent (vLLM takes seeds in
// int64's range): seeds past 2^53 are neither refused nor rounded into
// one another, one past int64 is a 400 naming the range, and so is an
// integer max_tokens past the context, whatever its size.
func TestSeedRange(t *testing.T) {
	ts := startServer(t, serverConfig{Model: "models/stories260K-hf-mistral", Engine: engine.Options{MaxLen: 512}})
	text := func(seed string) string {
		t.Helper()
		code, data := post(t, ts, "/v1/completions", fmt.Sprintf(`{"prompt": "Once upon a time", "max_tokens": 30, "temperature": 1, "seed": %s}`, seed))
		if code != 200 {
			t.Fatalf("seed %s: %d %s", seed, code, data)
		}
		return decode(t, data).Choices[0].Text
	}
	if a, b := text("9007199254740992"), text("9007199254740993"); a == b {
		t.Errorf("seeds 2^53 and 2^53+1 gave the same text %q", a)
	}
	if a, b := text("9223372036854775807"), text("9223372036854775807"); a != b {
		t.Errorf("seed 2^63-1 twice: %q, %q", a, b)
	}
	for _, c := range []struct{ body, param, text string }{
		{`{"prompt": "x", "seed": 9223372036854775808}`, "seed", "between -9223372036854775808 and 9223372036854775807"},
		{`{"prompt": "x", "max_tokens": 1152921504606846976}`, "max_tokens", "exceeds the context"},
	} {
		code, data := post(t, ts, "/v1/completions", c.body)
		e := decode(t, data).Error
		if code != 400 || e == nil || e.Param == nil || *e.Param != c.param || !strings.Contains(e.Message, c.text) {
			t.Errorf("%s: %d %s, want a 400 naming %s and saying %q", c.body, code, data, c.param, c.text)
		}
	}
}

// TestManyChoices: n up to OpenAI's 128 (pass@k evaluations ask for 20 or
// more) gives n choices, indexed 0..n-1, their tokens summed in the usage
// and the prompt's counted once; past 128 is a 400 naming n and the range.
func TestManyChoices(t *testing.T) {
	ts := startServer(t, serverConfig{Model: "models/stories260K-hf-mistral", Engine: engine.Options{MaxLen: 512}})
	const n = 20
	code, data := post(t, ts, "/v1/completions", fmt.Sprintf(`{"prompt": "Once upon a time", "max_tokens": 3, "temperature": 1, "ignore_eos": true, "seed": 1, "n": %d}`, n))
	if code != 200 {
		t.Fatalf("n=%d: %d %s", n, code, data)
	}
	c := decode(t, data)
	seen := map[int]bool{}
	for _, ch := range c.Choices {
		seen[ch.Index] = true
	}
	if len(c.Choices) != n || len(seen) != n || seen[n] || c.Usage == nil || c.Usage.Completion != 3*n || c.Usage.Prompt != 5 {
		t.Errorf("n=%d: %d choices, indices %v, usage %+v; want %d choices 0..%d, %d completion tokens, 5 prompt tokens", n, len(c.Choices), seen, c.Usage, n, n-1, 3*n)
	}
	code, data = post(t, ts, "/v1/completions", `{"prompt": "x", "max_tokens": 1, "n": 129}`)
	if e := decode(t, data).Error; code != 400 || e == nil || e.Param == nil || *e.Param != "n" || !strings.Contains(e.Message, "128") {
		t.Errorf("n=129: %d %s, want a 400 naming n and 128", code, data)
	}
}

// TestLogprobs: chat logprobs and top_logprobs are consistent with greedy.
func TestLogprobs(t *testing.T) {
	ts := startServer(t, serverConfig{})
	code, data := post(t, ts, "/v1/chat/completions", `{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0, "logprobs": true, "top_logprobs": 2}`)
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	var lp struct {
		Content []struct {
			Token   string  `json:"token"`
			Logprob float64 `json:"logprob"`
			Top     []struct {
				Token   string  `json:"token"`
				Logprob float64 `json:"logprob"`
			} `json:"top_logprobs"`
		} `json:"content"`
	}
	if err := json.Unmarshal(decode(t, data).Choices[0].Logprobs, &lp); err != nil || len(lp.Content) != 4 {
		t.Fatalf("logprobs %s: %v", data, err)
	}
	for _, c := range lp.Content {
		if len(c.Top) != 2 || c.Top[0].Token != c.Token || c.Top[0].Logprob != c.Logprob || c.Top[1].Logprob > c.Logprob || c.Logprob > 0 {
			t.Errorf("greedy token %+v", c)
		}
	}
}

// TestBadRequests: every malformed request gets an OpenAI error body with
// the right status and, for a field, its name.
func TestBadRequests(t *testing.T) {
	ts := startServer(t, serverConfig{Options: Options{MaxBodyBytes: 4096}, Engine: engine.Options{MaxLen: 64}})
	long := strings.Repeat("word ", 100)
	for _, c := range []struct {
		name, path, body string
		status           int
		param            string
	}{
		{"not json", "/v1/chat/completions", `{"messages": [`, 400, ""},
		{"no messages", "/v1/chat/completions", `{}`, 400, "messages"},
		{"string temperature", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}`, 400, "temperature"},
		{"bool max_tokens", "/v1/completions", `{"prompt": "x", "max_tokens": true}`, 400, "max_tokens"},
		{"fractional n", "/v1/completions", `{"prompt": "x", "n": 1.5}`, 400, "n"},
		{"stop number", "/v1/completions", `{"prompt": "x", "stop": 3}`, 400, "stop"},
		{"bad role", "/v1/chat/completions", `{"messages": [{"role": "wizard", "content": "x"}]}`, 400, "messages[0].role"},
		{"bad second role", "/tokenize", `{"messages": [{"role": "user", "content": "x"}, {"role": "bogus", "content": "y"}]}`, 400, "messages[1].role"},
		{"prompt over the context", "/v1/completions", fmt.Sprintf(`{"prompt": %q}`, long), 400, "prompt"},
		{"max_tokens over the context", "/v1/completions", `{"prompt": "x", "max_tokens": 1000}`, 400, "max_tokens"},
		{"max_completion_tokens over the context", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 1e12}`, 400, "max_completion_tokens"},
		{"detokenize without tokens", "/detokenize", `{}`, 400, "tokens"},
		{"detokenize null tokens", "/detokenize", `{"tokens": null}`, 400, "tokens"},
		{"token id out of range", "/v1/completions", `{"prompt": [1, 99999]}`, 400, "prompt[1]"},
		{"detokenize id out of range", "/detokenize", `{"tokens": [1, 99999]}`, 400, "tokens[1]"},
		{"unknown model", "/v1/completions", `{"prompt": "x", "model": "gpt-4"}`, 404, "model"},
		{"body too large", "/v1/completions", fmt.Sprintf(`{"prompt": %q}`, strings.Repeat("a", 5000)), 413, ""},
		{"unknown route", "/v1/embeddings", `{}`, 404, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, data := post(t, ts, c.path, c.body)
			r := decode(t, data)
			if code != c.status || r.Error == nil || r.Error.Message == "" {
				t.Fatalf("status %d %s, want %d with an error body", code, data, c.status)
			}
			if c.param != "" && (r.Error.Param == nil || *r.Error.Param != c.param) {
				t.Errorf("param %v, want %q (%s)", r.Error.Param, c.param, r.Error.Message)
			}
			// The package an error came from is ours, not the client's.
			if strings.Contains(r.Error.Message, "tokenizer:") {
				t.Errorf("message %q names an internal package", r.Error.Message)
			}
		})
	}
	// Unknown fields are ignored; "user" too.
	code, data := post(t, ts, "/v1/completions", `{"prompt": "x", "max_tokens": 2, "user": "u1", "frobnicate": {"a": 1}}`)
	if code != 200 {
		t.Errorf("unknown fields: %d %s", code, data)
	}
}

// TestUnsupportedSamplingFields: vLLM's request fields that change what is
// generated or returned, which this server does not do, are a 400 naming
// the field when they ask for something (a vLLM client would otherwise get
// an answer silently without it), and pass at vLLM's defaults.
func TestUnsupportedSamplingFields(t *testing.T) {
	ts := startServer(t, serverConfig{Engine: engine.Options{MaxLen: 64}})
	const chatMsgs = `"messages": [{"role": "user", "content": "x"}]`
	for _, c := range []struct{ path, field, value string }{
		{"/v1/completions", "min_p", "0.1"},
		{"/v1/chat/completions", "min_p", "0.05"},
		{"/v1/completions", "include_stop_str_in_output", "true"},
		{"/v1/completions", "skip_special_tokens", "false"},
		{"/v1/completions", "use_beam_search", "true"},
		{"/v1/completions", "prompt_logprobs", "1"},
		{"/v1/completions", "allowed_token_ids", "[5, 6]"},
		{"/v1/completions", "bad_words", `["the"]`},
		{"/v1/completions", "truncate_prompt_tokens", "4"},
		{"/v1/chat/completions", "continue_final_message", "true"},
		{"/v1/chat/completions", "echo", "true"},
	} {
		t.Run(c.field+"="+c.value, func(t *testing.T) {
			what := `"prompt": "x"`
			if strings.Contains(c.path, "chat") {
				what = chatMsgs
			}
			code, data := post(t, ts, c.path, fmt.Sprintf(`{%s, "max_tokens": 2, %q: %s}`, what, c.field, c.value))
			e := decode(t, data).Error
			if code != 400 || e == nil || e.Param == nil || *e.Param != c.field || !strings.Contains(e.Message, "not supported") {
				t.Errorf("%d %s, want a 400 naming %s as not supported", code, data, c.field)
			}
		})
	}
	// Their defaults, as vLLM clients send them, pass.
	defaults := `"max_tokens": 2, "min_p": 0, "include_stop_str_in_output": false, "skip_special_tokens": true, "use_beam_search": false,
		"prompt_logprobs": null, "allowed_token_ids": null, "bad_words": [], "truncate_prompt_tokens": null`
	for _, c := range []struct{ path, body string }{
		{"/v1/completions", `{"prompt": "x", ` + defaults + `}`},
		{"/v1/chat/completions", `{` + chatMsgs + `, ` + defaults + `, "continue_final_message": false, "echo": false}`},
	} {
		if code, data := post(t, ts, c.path, c.body); code != 200 {
			t.Errorf("%s with vLLM's defaults: %d %s", c.path, code, data)
		}
	}
}

// TestAPIKeys: Bearer keys guard the API; health, metrics and the page
// stay open.
func TestAPIKeys(t *testing.T) {
	ts := startServer(t, serverConfig{Options: Options{APIKeys: []string{"k1", "k2"}}})
	body := `{"prompt": "x", "max_tokens": 1}`
	for _, key := range []string{"", "wrong"} {
		code, _, data := call(t, "POST", ts.URL+"/v1/completions", key, body)
		r := decode(t, data)
		if code != 401 || r.Error == nil || r.Error.Code == nil || *r.Error.Code != "invalid_api_key" {
			t.Errorf("key %q: %d %s", key, code, data)
		}
	}
	for _, key := range []string{"k1", "k2"} {
		if code, _, data := call(t, "POST", ts.URL+"/v1/completions", key, body); code != 200 {
			t.Errorf("key %q: %d %s", key, code, data)
		}
	}
	for _, path := range []string{"/health", "/metrics", "/"} {
		if code, _, _ := call(t, "GET", ts.URL+path, "", ""); code != 200 {
			t.Errorf("%s without a key: %d", path, code)
		}
	}
	if code, _, _ := call(t, "GET", ts.URL+"/v1/models", "", ""); code != 401 {
		t.Errorf("/v1/models without a key: %d", code)
	}
}

// TestHealthWhileLoading: 503 until the backend is set; generation too.
func TestHealthWhileLoading(t *testing.T) {
	ts := startServer(t, serverConfig{NotLoaded: true})
	if code, _, data := call(t, "GET", ts.URL+"/health", "", ""); code != 503 || !strings.Contains(string(data), "loading") {
		t.Errorf("health while loading: %d %s", code, data)
	}
	if code, h, _ := call(t, "POST", ts.URL+"/v1/completions", "", `{"prompt": "x"}`); code != 503 || h.Get("Retry-After") == "" {
		t.Errorf("a completion while loading: %d", code)
	}
	ts.Server.SetBackend(ts.backend())
	if code, _, _ := call(t, "GET", ts.URL+"/health", "", ""); code != 200 {
		t.Errorf("health once loaded: %d", code)
	}
}

// metric reads one series of /metrics.
func metric(t *testing.T, ts *testServer, name string) float64 {
	t.Helper()
	_, _, data := call(t, "GET", ts.URL+"/metrics", "", "")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("no series %s in /metrics", name)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestConcurrentRequests: 200 concurrent requests all complete, batched;
// the metrics count them.
func TestConcurrentRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("200 requests (-short)")
	}
	ts := startServer(t, serverConfig{Model: "models/stories260K-hf-mistral", Engine: engine.Options{MaxLen: 512, MaxQueue: 256}})
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for i := range 200 {
		wg.Go(func() {
			stream := i%2 == 0
			code, data := post(t, ts, "/v1/completions", fmt.Sprintf(`{"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0.8, "seed": %d, "stream": %v}`, i, stream))
			mu.Lock()
			statuses[code]++
			mu.Unlock()
			if code == 200 && stream && !strings.HasSuffix(strings.TrimSpace(string(data)), "data: [DONE]") {
				t.Errorf("request %d: stream not finished", i)
			}
		})
	}
	wg.Wait()
	if statuses[200] != 200 {
		t.Errorf("statuses %v, want 200 × 200", statuses)
	}
	if got := metric(t, ts, `gptqtool_requests_finished_total{reason="length"}`); got != 200 {
		t.Errorf("finished requests metric %v", got)
	}
	if got := metric(t, ts, "gptqtool_generation_tokens_total"); got != 200*12 {
		t.Errorf("generated tokens metric %v", got)
	}
	// At least 12 steps; plain draws (no penalties, no log-probabilities)
	// go ahead between admissions.
	if steps, ahead := metric(t, ts, "gptqtool_engine_steps_total"), metric(t, ts, "gptqtool_engine_steps_ahead_total"); steps < 12 || ahead < 1 || ahead >= steps {
		t.Errorf("%v steps, %v issued ahead", steps, ahead)
	}
}

// TestQueueFull: past the queue the server answers 429 with Retry-After.
func TestQueueFull(t *testing.T) {
	ts := startServer(t, serverConfig{Engine: engine.Options{MaxLen: 2048, MaxQueue: 1, MaxRunning: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Hold the batch, then the queue, with long streams (seconds each on the
	// CPU), one after the other.
	for i := range 2 {
		req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/completions", strings.NewReader(`{"prompt": "Once upon a time", "max_tokens": 1800, "stream": true, "ignore_eos": true}`))
		go func() {
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		deadline := time.Now().Add(5 * time.Second)
		for st := ts.Engine.Stats(); st.Running+st.Queued < i+1; st = ts.Engine.Stats() {
			if time.Now().After(deadline) {
				t.Fatalf("stream %d never started: %+v", i, st)
			}
			time.Sleep(time.Millisecond)
		}
	}
	code, h, data := call(t, "POST", ts.URL+"/v1/completions", "", `{"prompt": "x", "max_tokens": 1}`)
	if code != 429 || h.Get("Retry-After") == "" || decode(t, data).Error == nil {
		t.Errorf("a request past the queue: %d, Retry-After %q, %s", code, h.Get("Retry-After"), data)
	}
}

// TestCancelFreesSlot: a client that goes away mid-stream frees its KV
// blocks and its place in the batch, as /metrics shows.
// (ignore_eos: a sampled end of sequence would finish the request before
// the cancellation when the machine is loaded.)
func TestCancelFreesSlot(t *testing.T) {
	ts := startServer(t, serverConfig{Engine: engine.Options{MaxLen: 2048}})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/completions", strings.NewReader(`{"prompt": "Once upon a time", "max_tokens": 1800, "stream": true, "ignore_eos": true}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	br.ReadString('\n') // the stream has started
	if metric(t, ts, "gptqtool_running_sequences") != 1 || metric(t, ts, "gptqtool_kv_cache_blocks_used") == 0 {
		t.Fatalf("no running sequence while streaming")
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for metric(t, ts, "gptqtool_running_sequences") != 0 || metric(t, ts, "gptqtool_kv_cache_blocks_used") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the cancelled request still holds its slot")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if metric(t, ts, `gptqtool_requests_finished_total{reason="cancelled"}`) != 1 {
		t.Errorf("the cancellation is not counted")
	}
}

// TestGracefulShutdown: on shutdown, requests in flight finish, new ones
// are refused, and the server stops.
func TestGracefulShutdown(t *testing.T) {
	ts := startServer(t, serverConfig{Grace: 2 * time.Minute})
	res := make(chan answer, 3)
	for range 3 {
		postAsync(t, ts, `{"prompt": "Once upon a time", "max_tokens": 200, "temperature": 0}`, res)
	}
	for metric(t, ts, "gptqtool_running_sequences") < 3 {
		time.Sleep(time.Millisecond)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- ts.Stop() }()
	for range 3 {
		r := <-res
		c := decode(t, r.data)
		if r.code != 200 || *c.Choices[0].FinishReason != "length" || c.Usage.Completion != 200 {
			t.Errorf("a request in flight at shutdown: %d %s", r.code, r.data)
		}
	}
	if err := <-stopped; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if _, err := http.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(`{"prompt": "x"}`)); err == nil {
		t.Errorf("the server still accepts connections after shutdown")
	}
}

// TestShutdownDeadline: what is still running when the shutdown's grace
// ends is cut, and is no partial answer with finish_reason "abort" (no
// OpenAI value: strict clients fail to decode it), as a request cut by its
// --request-timeout is not (TestTimeoutMidway): not streamed, a 503 with
// code shutting_down and Retry-After naming the tokens generated;
// streamed, the text so far, then an error event of that code and [DONE],
// with no finish_reason for the choice cut.
func TestShutdownDeadline(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream %v", stream), func(t *testing.T) {
			ts := startServer(t, serverConfig{Engine: engine.Options{MaxLen: 2048}, Grace: 100 * time.Millisecond})
			done := make(chan answer, 1)
			postAsync(t, ts, fmt.Sprintf(`{"prompt": "Once upon a time", "max_tokens": 1800, "ignore_eos": true, "stream": %v, "temperature": 0}`, stream), done)
			// Once it has a token (cut before one, it would be a 503: TestShutdownUnserved).
			for metric(t, ts, "gptqtool_time_to_first_token_seconds_count") < 1 {
				time.Sleep(time.Millisecond)
			}
			if err := ts.Stop(); err != nil {
				t.Fatal(err)
			}
			r := <-done
			if strings.Contains(string(r.data), `"abort"`) {
				t.Errorf("the response says abort:\n%.500s", r.data[max(0, len(r.data)-500):])
			}
			if !stream {
				c := decode(t, r.data)
				if r.code != 503 || r.retry == "" || c.Error == nil || c.Error.Code == nil || *c.Error.Code != "shutting_down" || c.Error.Type != "server_error" {
					t.Fatalf("a completion cut at shutdown: %d, Retry-After %q, %.500s; want a 503 with code shutting_down and Retry-After", r.code, r.retry, r.data)
				}
				if !strings.Contains(c.Error.Message, "up to 1800 tokens") {
					t.Errorf("the error does not name the tokens generated of those asked: %q", c.Error.Message)
				}
				return
			}
			ev := cutStream(t, "cut at shutdown", r.code, r.data)
			last := decode(t, ev)
			if last.Error == nil || last.Error.Code == nil || *last.Error.Code != "shutting_down" || !strings.Contains(last.Error.Message, "up to 1800 tokens") {
				t.Errorf("the event before [DONE] is %.500s, want an error with code shutting_down naming the tokens", ev)
			}
		})
	}
}

// TestIgnoreEOS: a greedy completion that ends at the model's end of
// sequence runs to max_tokens with ignore_eos, the same tokens first.
func TestIgnoreEOS(t *testing.T) {
	ts := startServer(t, serverConfig{})
	const body = `{"prompt": "Once upon a time, in a small village by the sea,", "max_tokens": 300, "temperature": 0`
	code, data := post(t, ts, "/v1/completions", body+`}`)
	c := decode(t, data)
	if code != 200 || *c.Choices[0].FinishReason != "stop" || c.Usage.Completion >= 300 {
		t.Fatalf("without ignore_eos: %d %s, want a stop before 300 tokens", code, data)
	}
	code, data = post(t, ts, "/v1/completions", body+`, "ignore_eos": true}`)
	e := decode(t, data)
	if code != 200 || *e.Choices[0].FinishReason != "length" || e.Usage.Completion != 300 {
		t.Fatalf("with ignore_eos: %d %s, want 300 tokens and length", code, data)
	}
	if !strings.HasPrefix(e.Choices[0].Text, c.Choices[0].Text) {
		t.Errorf("with ignore_eos the text does not begin with the stopped one:\n%q\n%q", e.Choices[0].Text, c.Choices[0].Text)
	}
	// The end tokens run past are not in the text (vLLM's
	// skip_special_tokens), though they count.
	if strings.Contains(e.Choices[0].Text, "<|end_of_turn|>") || strings.Contains(e.Choices[0].Text, "</s>") {
		t.Errorf("with ignore_eos the text holds special tokens: %q", e.Choices[0].Text)
	}
	// The end token that stopped the first is counted, as OpenAI's usage
	// counts it: its text's tokens and one (the text continues the
	// prompt's, its first token's space in front, which Encode adds).
	ids, err := ts.Tok.Encode(strings.TrimPrefix(c.Choices[0].Text, " "))
	if err != nil {
		t.Fatal(err)
	}
	if c.Usage.Completion < len(ids)+1 {
		t.Errorf("a stop after %q: %d completion tokens, want its %d tokens and the stop", c.Choices[0].Text, c.Usage.Completion, len(ids))
	}
}

// TestEchoStream: with echo the stream gives the prompt first, the same
// text as the whole response.
func TestEchoStream(t *testing.T) {
	ts := startServer(t, serverConfig{})
	const body = `{"prompt": "Once upon a time", "max_tokens": 5, "temperature": 0, "echo": true`
	_, data := post(t, ts, "/v1/completions", body+`}`)
	whole := decode(t, data).Choices[0].Text
	_, data = post(t, ts, "/v1/completions", body+`, "stream": true}`)
	texts, _ := streamText(t, data, false)
	if !strings.HasPrefix(whole, "Once upon a time") || texts[0] != whole {
		t.Errorf("echo: streamed %q, whole %q", texts[0], whole)
	}
}

// TestQueuedTimeout: a request whose --request-timeout runs out while it
// waits in the queue is an error (503, code timeout), streamed or not,
// not a 200 with nothing in it.
func TestQueuedTimeout(t *testing.T) {
	ts := startServer(t, serverConfig{Engine: engine.Options{MaxLen: 2048, MaxRunning: 1}, Options: Options{RequestTimeout: 300 * time.Millisecond}})
	// The batch's one place is held by a request given to the engine
	// directly, which no HTTP timeout ends.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hold, err := ts.Engine.Submit(ctx, engine.Request{Prompt: []int{1, 450, 1830}, Params: engine.Params{MaxTokens: 1800}})
	if err != nil {
		t.Fatal(err)
	}
	<-hold // running
	for _, stream := range []string{"false", "true"} {
		code, data := post(t, ts, "/v1/completions", `{"prompt": "x", "max_tokens": 5, "stream": `+stream+`}`)
		if c := decode(t, data); code != 503 || c.Error == nil || c.Error.Code == nil || *c.Error.Code != "timeout" {
			t.Errorf("stream %s: a request timed out in the queue: %d %s", stream, code, data)
		}
	}
	cancel()
	for range hold {
	}
}

// TestClientGoneBeforeFirstToken: a streaming client that leaves while its
// request waits for a place in the batch gets nothing written, and the
// request is logged and counted as 499, not 200.
func TestClientGoneBeforeFirstToken(t *testing.T) {
	ts := startServer(t, serverConfig{Engine: engine.Options{MaxLen: 2048, MaxRunning: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hold, err := ts.Engine.Submit(ctx, engine.Request{Prompt: []int{1, 450, 1830}, Params: engine.Params{MaxTokens: 1800}})
	if err != nil {
		t.Fatal(err)
	}
	<-hold // running: the next request waits
	rctx, rcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer rcancel()
	req, _ := http.NewRequestWithContext(rctx, "POST", ts.URL+"/v1/completions", strings.NewReader(`{"prompt": "x", "max_tokens": 5, "stream": true}`))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("a stream answered %d before its first token", resp.StatusCode)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, _, data := call(t, "GET", ts.URL+"/metrics", "", "")
		if strings.Contains(string(data), `gptqtool_http_requests_total{route="/v1/completions",status="499"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the request is not counted as 499:\n%s", data)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	for range hold {
	}
}

// TestShutdownUnserved: requests still waiting for a place in the batch
// when the shutdown's grace runs out get a 503 shutting_down with
// Retry-After, streamed or not, not a 200 with nothing in it.
func TestShutdownUnserved(t *testing.T) {
	ts := startServer(t, serverConfig{Engine: engine.Options{MaxLen: 2048, MaxRunning: 1}, Grace: 300 * time.Millisecond})
	hold, err := ts.Engine.Submit(context.Background(), engine.Request{Prompt: []int{1, 450, 1830}, Params: engine.Params{MaxTokens: 1800}})
	if err != nil {
		t.Fatal(err)
	}
	<-hold // running: the requests below wait
	res := make(chan answer, 2)
	for _, stream := range []string{"false", "true"} {
		postAsync(t, ts, `{"prompt": "x", "max_tokens": 5, "stream": `+stream+`}`, res)
	}
	for st := ts.Engine.Stats(); st.Queued < 2; st = ts.Engine.Stats() {
		time.Sleep(time.Millisecond)
	}
	if err := ts.Stop(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r := <-res
		if c := decode(t, r.data); r.code != 503 || r.retry == "" || c.Error == nil || c.Error.Code == nil || *c.Error.Code != "shutting_down" {
			t.Errorf("a request unserved at shutdown: %d, Retry-After %q, %s", r.code, r.retry, r.data)
		}
	}
	for range hold {
	}
}

// TestMethodNotAllowed: a known path with another method is a 405 naming
// the methods, an unknown path a 404.
func TestMethodNotAllowed(t *testing.T) {
	ts := startServer(t, serverConfig{})
	code, h, _ := call(t, "GET", ts.URL+"/v1/chat/completions", "", "")
	if code != 405 || h.Get("Allow") != "POST" {
		t.Errorf("GET /v1/chat/completions: %d, Allow %q", code, h.Get("Allow"))
	}
	if code, _, _ := call(t, "GET", ts.URL+"/v1/nothing", "", ""); code != 404 {
		t.Errorf("GET /v1/nothing: %d", code)
	}
	// The metrics label the 405 by its route's path and every 404 as one
	// series, apart from the chat page's.
	for _, series := range []string{
		`gptqtool_http_requests_total{route="/v1/chat/completions",status="405"}`,
		`gptqtool_http_requests_total{route="unmatched",status="404"}`,
	} {
		if v := metric(t, ts, series); v != 1 {
			t.Errorf("%s = %v, want 1", series, v)
		}
	}
}

// TestDraining: while a shutdown waits for the requests in flight, the
// listener still answers: /health and new generations 503.
func TestDraining(t *testing.T) {
	ts := startServer(t, serverConfig{Engine: engine.Options{MaxLen: 2048}, Grace: time.Minute})
	done := make(chan int, 1)
	go func() {
		code, _ := post(t, ts, "/v1/completions", `{"prompt": "Once upon a time", "max_tokens": 600, "ignore_eos": true}`)
		done <- code
	}()
	for metric(t, ts, "gptqtool_running_sequences") < 1 {
		time.Sleep(time.Millisecond)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- ts.Stop() }()
	deadline := time.Now().Add(5 * time.Second)
	for !ts.Server.drain.Load() {
		if time.Now().After(deadline) {
			t.Fatal("never draining")
		}
		time.Sleep(time.Millisecond)
	}
	if code, _, _ := call(t, "GET", ts.URL+"/health", "", ""); code != 503 {
		t.Errorf("/health while draining: %d, want 503", code)
	}
	if code, _ := post(t, ts, "/v1/completions", `{"prompt": "x", "max_tokens": 1}`); code != 503 {
		t.Errorf("a new completion while draining: %d, want 503", code)
	}
	if code := <-done; code != 200 {
		t.Errorf("the request in flight: %d", code)
	}
	if err := <-stopped; err != nil {
		t.Error(err)
	}
}

// TestPrefixCacheConversation: the second turn of a conversation shares
// the first turn's cached blocks (the prefix cache metrics say how many
// prompt tokens), and answers exactly as a server without the cache does.
func TestPrefixCacheConversation(t *testing.T) {
	with := startServer(t, serverConfig{})
	without := startServer(t, serverConfig{Engine: engine.Options{NoPrefixCache: true}})
	turn := func(ts *testServer, msgs string) string {
		t.Helper()
		code, data := post(t, ts, "/v1/chat/completions", `{"messages": [`+msgs+`], "max_tokens": 24, "temperature": 0}`)
		if code != 200 {
			t.Fatalf("%d %s", code, data)
		}
		return decode(t, data).Choices[0].Message.Content
	}
	first := `{"role": "user", "content": "Write a long explanation of how a compiler turns source code into machine code, step by step."}`
	a1 := turn(with, first)
	if b1 := turn(without, first); a1 != b1 {
		t.Fatalf("first turn: %q with the cache, %q without", a1, b1)
	}
	hits0 := metric(t, with, "gptqtool_prefix_cache_hits_total")
	answer, _ := json.Marshal(a1)
	second := first + `, {"role": "assistant", "content": ` + string(answer) + `}, {"role": "user", "content": "Shorter, please."}`
	a2, b2 := turn(with, second), turn(without, second)
	if a2 != b2 {
		t.Errorf("second turn: %q with the cache, %q without", a2, b2)
	}
	hits, queries := metric(t, with, "gptqtool_prefix_cache_hits_total")-hits0, metric(t, with, "gptqtool_prefix_cache_queries_total")
	if hits < 16 {
		t.Errorf("the second turn found %v prompt tokens cached, want the first turn's blocks (%v queried in all)", hits, queries)
	}
	if got := metric(t, without, "gptqtool_prefix_cache_hits_total"); got != 0 {
		t.Errorf("without the cache: %v hits", got)
	}
	t.Logf("second turn: %v prompt tokens from the cache; %v queried over both turns", hits, queries)
}

// TestLogitBias: logit_bias bans the greedy first token (the answer then
// starts with another) or favours one (drawn every time); stop_token_ids
// end a generation at that token, min_tokens keeps it going past it;
// biases outside the vocabulary are a 400 naming the field.
func TestLogitBias(t *testing.T) {
	ts := startServer(t, serverConfig{})
	complete := func(extra string) (string, *openai.TextLogprobs, string) {
		t.Helper()
		code, data := post(t, ts, "/v1/completions", `{"prompt": [1, 415, 5565, 302, 4843, 349], "max_tokens": 8, "temperature": 0, "logprobs": 1`+extra+`}`)
		var r struct {
			Choices []struct {
				Text         string               `json:"text"`
				Logprobs     *openai.TextLogprobs `json:"logprobs"`
				FinishReason string               `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(data, &r); code != 200 || err != nil {
			t.Fatalf("%s: %d %s", extra, code, data)
		}
		return r.Choices[0].Text, r.Choices[0].Logprobs, r.Choices[0].FinishReason
	}
	plain, lp, _ := complete("")
	first, _ := ts.Tok.TokenID(strings.ReplaceAll(lp.Tokens[0], " ", "▁"))
	banned, blp, _ := complete(fmt.Sprintf(`, "logit_bias": {"%d": -100}`, first))
	if banned == plain || blp.Tokens[0] == lp.Tokens[0] {
		t.Errorf("the first token %q banned: %q, as without the bias %q", lp.Tokens[0], banned, plain)
	}
	fav, _, _ := complete(`, "logit_bias": {"1014": 100}`)
	if piece := strings.ReplaceAll(ts.Tok.Piece(1014), "▁", " "); fav != strings.Repeat(piece, 8) {
		t.Errorf("token 1014 (%q) favoured: %q", piece, fav)
	}
	second, _ := ts.Tok.TokenID(strings.ReplaceAll(lp.Tokens[1], " ", "▁"))
	if slices.Index(lp.Tokens, lp.Tokens[1]) != 1 {
		t.Skipf("the second token %q comes earlier too", lp.Tokens[1])
	}
	stopped, _, why := complete(fmt.Sprintf(`, "stop_token_ids": [%d]`, second))
	if why != "stop" || !strings.HasPrefix(plain, stopped) || len(stopped) >= len(plain) {
		t.Errorf("stop_token_ids [%d]: %q (%s), the plain answer %q", second, stopped, why, plain)
	}
	longer, llp, why := complete(fmt.Sprintf(`, "stop_token_ids": [%d], "min_tokens": 5`, second))
	if len(llp.Tokens) < 5 || llp.Tokens[1] == lp.Tokens[1] {
		t.Errorf("min_tokens 5 with stop_token_ids [%d]: %q (%s, tokens %q)", second, longer, why, llp.Tokens)
	}
	for _, body := range []string{`, "logit_bias": {"99999": 1}`, `, "stop_token_ids": [99999]`, `, "min_tokens": 9`} {
		code, data := post(t, ts, "/v1/completions", `{"prompt": "x", "max_tokens": 8`+body+`}`)
		if r := decode(t, data); code != 400 || r.Error == nil || r.Error.Param == nil {
			t.Errorf("%s: %d %s, want a 400 naming the field", body, code, data)
		}
	}
}

// TestAddGenerationPrompt: vLLM's add_generation_prompt (default true) is
// honoured by /tokenize and the chat completions alike: false renders the
// messages without the assistant prompt, where the server ignored it and
// /tokenize gave the prompt's ids (a QA pass); a wrong type names the
// field.
func TestAddGenerationPrompt(t *testing.T) {
	ts := startServer(t, serverConfig{})
	msgs := []tokenizer.Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello."}}
	for _, add := range []bool{true, false} {
		want, err := ts.Tok.EncodeChat(msgs, tokenizer.ChatOptions{AddGenerationPrompt: add})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(map[string]any{"messages": msgs, "add_generation_prompt": add})
		code, data := post(t, ts, "/tokenize", string(b))
		var got struct{ Tokens []int }
		json.Unmarshal(data, &got)
		if code != 200 || fmt.Sprint(got.Tokens) != fmt.Sprint(want) {
			t.Errorf("/tokenize add_generation_prompt %v: %d %s\nwant %v", add, code, data, want)
		}
		b, _ = json.Marshal(map[string]any{"messages": msgs, "add_generation_prompt": add, "max_tokens": 1})
		code, data = post(t, ts, "/v1/chat/completions", string(b))
		if c := decode(t, data); code != 200 || c.Usage.Prompt != len(want) {
			t.Errorf("chat add_generation_prompt %v: %d %s, want %d prompt tokens", add, code, data, len(want))
		}
	}
	code, data := post(t, ts, "/tokenize", `{"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": "no"}`)
	if c := decode(t, data); code != 400 || c.Error == nil || c.Error.Param == nil || *c.Error.Param != "add_generation_prompt" {
		t.Errorf("a string add_generation_prompt: %d %s", code, data)
	}
}

// TestRetrieveModel: GET /v1/models/{model} (OpenAI's models.retrieve)
// answers the model object of the id or of an alias, an id holding a slash
// too (vLLM's served names such as org/name), and a 404 model_not_found
// naming what is served for any other, where every id was a 404 "no
// route" (a QA pass).
func TestRetrieveModel(t *testing.T) {
	ts := startServer(t, serverConfig{Options: Options{ModelName: "openchat/openchat-3.5-1210", Aliases: []string{"openchat_3.5"}}})
	for _, id := range []string{"openchat/openchat-3.5-1210", "openchat_3.5"} {
		code, _, data := call(t, "GET", ts.URL+"/v1/models/"+id, "", "")
		var m struct {
			ID, Object  string
			MaxModelLen int `json:"max_model_len"`
		}
		json.Unmarshal(data, &m)
		if code != 200 || m.ID != id || m.Object != "model" || m.MaxModelLen != ts.Engine.MaxLen() {
			t.Errorf("GET /v1/models/%s: %d %s", id, code, data)
		}
	}
	code, _, data := call(t, "GET", ts.URL+"/v1/models/gpt-4", "", "")
	if c := decode(t, data); code != 404 || c.Error == nil || c.Error.Code == nil || *c.Error.Code != "model_not_found" || !strings.Contains(c.Error.Message, "openchat_3.5") {
		t.Errorf("GET /v1/models/gpt-4: %d %s", code, data)
	}
}

// TestTimeoutMidway: a request whose --request-timeout runs out after it
// generated tokens is no partial answer with finish_reason "abort" (no
// OpenAI value: strict clients fail to decode it): not streamed, a 503
// with code timeout naming the flag; streamed, the text so far, then an
// error event (OpenAI's error object, code timeout, as vLLM sends a
// stream's error) and [DONE], with no finish_reason for the choice cut.
func TestTimeoutMidway(t *testing.T) {
	// Paced, the 500 tokens take 10 s at least: the timeout comes
	// mid-way, long after a first token even on a slow (-race) build.
	// Completions run on stories260K (fast), the chat on openchat-tiny
	// (it has a template), given longer.
	cfg := serverConfig{Model: "models/stories260K-hf-mistral", Pace: 20 * time.Millisecond, Options: Options{RequestTimeout: 2 * time.Second}}
	stories := startServer(t, cfg)
	cfg.Model, cfg.Options.RequestTimeout = "", 5*time.Second
	openchat := startServer(t, cfg)
	ts := stories
	const body = `{"prompt": "Once upon a time", "max_tokens": 500, "ignore_eos": true, "temperature": 0`
	t.Run("whole", func(t *testing.T) {
		t.Parallel()
		code, data := post(t, ts, "/v1/completions", body+`}`)
		c := decode(t, data)
		if code != 503 || c.Error == nil || c.Error.Code == nil || *c.Error.Code != "timeout" || c.Error.Type != "server_error" {
			t.Fatalf("a completion cut by its timeout: %d %.500s, want a 503 with code timeout", code, data)
		}
		if !strings.Contains(c.Error.Message, "--request-timeout") || !strings.Contains(c.Error.Message, "up to 500 tokens") {
			t.Errorf("the error does not name the flag and the tokens asked: %q", c.Error.Message)
		}
	})
	for _, route := range []string{"/v1/completions", "/v1/chat/completions"} {
		t.Run("stream "+route, func(t *testing.T) {
			t.Parallel()
			req := body + `, "stream": true}`
			chat := route == "/v1/chat/completions"
			ts := stories
			if chat {
				ts = openchat
				req = strings.Replace(req, `"prompt": "Once upon a time"`, `"messages": [{"role": "user", "content": "Once upon a time"}]`, 1)
			}
			code, data := post(t, ts, route, req)
			ev := cutStream(t, "cut by its timeout", code, data)
			last := decode(t, ev)
			if last.Error == nil || last.Error.Code == nil || *last.Error.Code != "timeout" || !strings.Contains(last.Error.Message, "--request-timeout") {
				t.Errorf("the event before [DONE] is %.500s, want an error with code timeout", ev)
			}
			if strings.Contains(string(data), `"abort"`) {
				t.Errorf("the stream says abort:\n%.500s", data[max(0, len(data)-500):])
			}
		})
	}
}

// TestChatSetupErrors: a chat request the server's chat setup cannot
// render (a model whose tokenizer_config.json has no chat_template, served
// without --chat-template; an openchat condition over a vocabulary without
// <|end_of_turn|>) is a 400 in the server's words, saying what to do,
// where the message was the tokenizer package's, its "tokenizer: " prefix
// included.
func TestChatSetupErrors(t *testing.T) {
	ts := startServer(t, serverConfig{Model: "models/stories260K-hf-mistral"})
	for _, c := range []struct {
		name, path, body string
		want             []string
	}{
		{"no chat_template", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "x"}]}`,
			[]string{"no chat template", "--chat-template", "/v1/completions"}},
		{"no chat_template, tokenize", "/tokenize", `{"messages": [{"role": "user", "content": "x"}]}`,
			[]string{"no chat template", "--chat-template"}},
		{"condition without <|end_of_turn|>", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "x"}], "condition": "GPT4 Correct"}`,
			[]string{`"GPT4 Correct"`, "<|end_of_turn|>", "vocabulary"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, data := post(t, ts, c.path, c.body)
			r := decode(t, data)
			if code != 400 || r.Error == nil || r.Error.Type != "invalid_request_error" {
				t.Fatalf("%d %s, want a 400 invalid_request_error", code, data)
			}
			msg := r.Error.Message
			if strings.Contains(msg, "tokenizer:") || strings.Contains(msg, "tokenizer_config.json chat_template:") {
				t.Errorf("message %q is the tokenizer package's", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not say %q", msg, w)
				}
			}
		})
	}
}

// TestChatRoles: OpenAI's developer role (its newer name for system) is
// taken as system, kept or dropped as system messages are; a function
// message (the legacy function calling API) is a 400 naming
// messages[i].role and pointing to tool messages.
func TestChatRoles(t *testing.T) {
	ts := startServer(t, serverConfig{})
	tokens := func(t *testing.T, msgs string) string {
		t.Helper()
		code, data := post(t, ts, "/tokenize", `{"messages": [`+msgs+`]}`)
		if code != 200 {
			t.Fatalf("/tokenize %s: %d %s", msgs, code, data)
		}
		var r struct {
			Tokens json.RawMessage `json:"tokens"`
		}
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatal(err)
		}
		return string(r.Tokens)
	}
	const user = `{"role": "user", "content": "Hi"}`
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("system messages %v", keep), func(t *testing.T) {
			b := ts.backend()
			b.Chat.SystemMessages = keep
			ts.Server.SetBackend(b)
			dev := tokens(t, `{"role": "developer", "content": "Be brief."}, `+user)
			sys := tokens(t, `{"role": "system", "content": "Be brief."}, `+user)
			if dev != sys {
				t.Errorf("developer renders %s, system %s", dev, sys)
			}
			if only := tokens(t, user); keep == (dev == only) {
				t.Errorf("kept %v: developer %s, user alone %s", keep, dev, only)
			}
		})
	}
	code, data := post(t, ts, "/v1/chat/completions", `{"messages": [`+user+`, {"role": "function", "name": "f", "content": "42"}]}`)
	r := decode(t, data)
	if code != 400 || r.Error == nil || r.Error.Param == nil || *r.Error.Param != "messages[1].role" {
		t.Fatalf("a function message: %d %s, want a 400 naming messages[1].role", code, data)
	}
	for _, w := range []string{`"function"`, "not supported", `"tool" message`, "tool_call_id"} {
		if !strings.Contains(r.Error.Message, w) {
			t.Errorf("a function message: %q does not say %q", r.Error.Message, w)
		}
	}
}

// TestEngineError: a generation the engine fails (a device error in a
// step) is no 200 with finish_reason "error" (no OpenAI value: strict
// clients fail to decode it): not streamed, a 500 with OpenAI's error
// object naming the tokens generated and the cause; streamed, the text so
// far, then an error event of that object and [DONE], with no
// finish_reason for the choice; failed before its first token, streamed
// or not, the 500 itself.
func TestEngineError(t *testing.T) {
	fb := &failingBackend{Backend: cpu.NewPortable(2)}
	ts := startServer(t, serverConfig{Model: "models/stories260K-hf-mistral", Pace: 20 * time.Millisecond, Backend: fb, Engine: engine.Options{MaxLen: 512}})
	const body = `{"prompt": "Once upon a time", "max_tokens": 400, "ignore_eos": true, "temperature": 0`
	wantError := func(t *testing.T, what string, data []byte) {
		t.Helper()
		c := decode(t, data)
		if c.Error == nil || c.Error.Type != "server_error" || c.Error.Code == nil || *c.Error.Code != "generation_failed" {
			t.Fatalf("%s: %.500s, want an OpenAI error of type server_error, code generation_failed", what, data)
		}
		if !strings.Contains(c.Error.Message, errDevice.Error()) || !strings.Contains(c.Error.Message, "up to 400 tokens") {
			t.Errorf("%s: message %q does not name the cause and the tokens asked", what, c.Error.Message)
		}
	}
	// run posts the request and sets the backend failing once a token
	// came (midway) or before it is sent.
	run := func(t *testing.T, stream, midway bool) (int, []byte) {
		t.Helper()
		fb.fail.Store(!midway)
		defer fb.fail.Store(false)
		before := metric(t, ts, "gptqtool_time_to_first_token_seconds_count")
		done := make(chan answer, 1)
		postAsync(t, ts, fmt.Sprintf(`%s, "stream": %v}`, body, stream), done)
		if midway {
			for metric(t, ts, "gptqtool_time_to_first_token_seconds_count") <= before {
				time.Sleep(time.Millisecond)
			}
			fb.fail.Store(true)
		}
		r := <-done
		if strings.Contains(string(r.data), `"finish_reason":"error"`) {
			t.Errorf("the response says finish_reason error:\n%.500s", r.data[max(0, len(r.data)-500):])
		}
		return r.code, r.data
	}
	for _, midway := range []bool{true, false} {
		t.Run(fmt.Sprintf("whole midway %v", midway), func(t *testing.T) {
			code, data := run(t, false, midway)
			if code != 500 {
				t.Fatalf("a completion the engine failed: %d %.500s, want 500", code, data)
			}
			wantError(t, "the response", data)
		})
	}
	t.Run("stream midway", func(t *testing.T) {
		code, data := run(t, true, true)
		wantError(t, "the event before [DONE]", cutStream(t, "the engine failed", code, data))
	})
	t.Run("stream before a token", func(t *testing.T) {
		code, data := run(t, true, false)
		if code != 500 {
			t.Fatalf("a stream the engine failed before a token: %d %.500s, want 500", code, data)
		}
		wantError(t, "the response", data)
	})
	// The engine serves on once the device works again.
	if code, data := post(t, ts, "/v1/completions", `{"prompt": "Once upon a time", "max_tokens": 3}`); code != 200 {
		t.Errorf("after the failures: %d %.500s", code, data)
	}
}

// TestShutdownUnscored: a scoring request (echo with logprobs, not
// streamed) cut by the shutdown's grace before all its prompts were scored
// is a 503 with code shutting_down and Retry-After, as the other answers
// cut by the shutdown are, where it was code "timeout" whatever the cause
// (lmeval_test's "time runs out" keeps the timeout's).
func TestShutdownUnscored(t *testing.T) {
	for _, maxTokens := range []int{0, 1} {
		t.Run(fmt.Sprintf("max_tokens %d", maxTokens), func(t *testing.T) {
			// 48 prompts of 120 tokens fed 4 a step, one at a time: 1,440
			// steps, far more than the 50 ms of grace on any host.
			ts := startServer(t, serverConfig{Engine: engine.Options{StepTokens: 4, MaxRunning: 1}, Grace: 50 * time.Millisecond})
			ids := fixtures.WikiIDs(t)
			batch := make([][]int, 48)
			for i := range batch {
				batch[i] = ids[i*120 : (i+1)*120] // distinct: no prefix shared
			}
			body, _ := json.Marshal(map[string]any{"prompt": batch, "echo": true, "logprobs": 1, "max_tokens": maxTokens})
			done := make(chan answer, 1)
			postAsync(t, ts, string(body), done)
			// Once a prompt or two are scored (none scored, it is unserved:
			// TestShutdownUnserved).
			for ts.Engine.Stats().PromptTokens <= 240 {
				time.Sleep(time.Millisecond)
			}
			if err := ts.Stop(); err != nil {
				t.Fatal(err)
			}
			r := <-done
			c := decode(t, r.data)
			if r.code != 503 || r.retry == "" || c.Error == nil || c.Error.Code == nil || *c.Error.Code != "shutting_down" {
				t.Fatalf("a scoring request cut at shutdown: %d, Retry-After %q, %.500s; want a 503 with code shutting_down and Retry-After", r.code, r.retry, r.data)
			}
			if strings.Contains(c.Error.Message, "--request-timeout") {
				t.Errorf("the shutdown's error names the request timeout: %q", c.Error.Message)
			}
		})
	}
}

// TestChatErrorJinja: a template's raise_exception is a 400 on messages
// with the template's words; a template beyond the Jinja subset is the
// server's own message, and one failing on the messages says so.
func TestChatErrorJinja(t *testing.T) {
	tp, err := jinja.Parse(`{{ raise_exception('roles must alternate') }}`)
	if err != nil {
		t.Fatal(err)
	}
	_, raised := tp.Render(nil)
	fe, ok := chatError(fmt.Errorf("tokenizer: chat_template: %w", raised), "").(*openai.FieldError)
	if !ok || fe.Field != "messages" || fe.Msg != "chat_template: roles must alternate" {
		t.Errorf("raise_exception: %#v", fe)
	}
	fe, ok = chatError(fmt.Errorf("tokenizer: x: %w", tokenizer.ErrUnknownTemplate), "").(*openai.FieldError)
	if !ok || fe.Field != "messages" || !strings.Contains(fe.Msg, "outside the subset") || strings.Contains(fe.Msg, "tokenizer:") {
		t.Errorf("unrenderable template: %#v", fe)
	}
	// A template that parses but fails on the messages is said to fail on
	// them, with the jinja error's place, not to be beyond the renderer.
	tp, err = jinja.Parse(`{{ messages[1].content }}`)
	if err != nil {
		t.Fatal(err)
	}
	_, failed := tp.Render(map[string]any{"messages": []any{}})
	if failed == nil {
		t.Fatal("messages[1] of no messages rendered")
	}
	fe, ok = chatError(fmt.Errorf("tokenizer: chat_template: %w: %w", tokenizer.ErrTemplateRender, failed), "").(*openai.FieldError)
	if !ok || fe.Field != "messages" || !strings.Contains(fe.Msg, "failed on these messages (line 1 col") || strings.Contains(fe.Msg, "outside the subset") {
		t.Errorf("template failing on the messages: %#v", fe)
	}
}

// TestStreamOptionsWithoutStream: stream_options without stream true is a
// 400 naming it, as OpenAI's and vLLM's servers answer, where it was
// accepted and did nothing.
func TestStreamOptionsWithoutStream(t *testing.T) {
	ts := startServer(t, serverConfig{})
	for _, c := range []struct{ path, body string }{
		{"/v1/completions", `{"prompt": "x", "max_tokens": 2, "stream_options": {"include_usage": true}}`},
		{"/v1/chat/completions", `{"messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "stream": false, "stream_options": {"include_usage": true}}`},
	} {
		code, data := post(t, ts, c.path, c.body)
		if code != 400 || !strings.Contains(string(data), "stream_options") {
			t.Errorf("%s %s: %d %s, want 400 naming stream_options", c.path, c.body, code, data)
		}
	}
}
