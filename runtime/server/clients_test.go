package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests put real clients in front of the server: the official openai
// package for Node, the chat page in a headless Chromium, and curl. Each
// skips, saying what to install, where its client is missing; .ci/run
// installs them all.

// jsDir holds the Node scripts and their package.json / package-lock.json.
const jsDir = "testdata/js"

// chromiumPath is Debian's chromium, which chat_page.mjs launches
// (playwright-core brings no browser of its own).
const chromiumPath = "/usr/bin/chromium"

// needNode skips the test unless node and the scripts' packages are here.
func needNode(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH: install Node.js 20 or later to run the real-client tests")
	}
	for _, pkg := range []string{"openai", "playwright-core", "ajv"} {
		if _, err := os.Stat(filepath.Join(jsDir, "node_modules", pkg, "package.json")); err != nil {
			t.Skipf("%s/node_modules/%s is missing: run `npm ci` in runtime/server/%s", jsDir, pkg, jsDir)
		}
	}
}

// runNode runs a script of jsDir against the server and returns the JSON
// summary it prints last; a failure shows everything it printed.
func runNode(t *testing.T, script string, args ...string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.Dir = jsDir
	// Plain text in failure messages: playwright colours its call logs.
	cmd.Env = append(os.Environ(), "FORCE_COLOR=0")
	// Chromium, when the script starts one, inherits the pipes; don't wait
	// on them for ever once node is gone.
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("node %s: %.1fs", script, time.Since(start).Seconds())
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (timed out after 2m)", err)
		}
		t.Fatalf("node %s: %v\n%s", script, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var summary map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &summary); err != nil {
		t.Fatalf("node %s: the last line is not the JSON summary: %v\n%s", script, err, out)
	}
	if summary["ok"] != true {
		t.Fatalf("node %s: summary without ok: true\n%s", script, out)
	}
	t.Logf("node %s: %s", script, lines[len(lines)-1])
	return summary
}

func TestOpenAINodeClient(t *testing.T) {
	needNode(t)
	ts := startServer(t, serverConfig{Options: Options{APIKeys: []string{"k1"}}})
	s := runNode(t, "openai_client.mjs", ts.URL, "k1")
	if s["model"] != "openchat-tiny" {
		t.Errorf("the client saw model %v, want openchat-tiny", s["model"])
	}
	if s["authChecked"] != true {
		t.Errorf("the wrong-key checks did not run: %v", s)
	}
}

// TestStructuredOutputNodeClient sends response_format through the openai
// package and validates the answers with Ajv against the schemas sent:
// every schema must give answers that stop, and every one that stops must
// pass.
func TestStructuredOutputNodeClient(t *testing.T) {
	needNode(t)
	ts := startServer(t, serverConfig{})
	s := runNode(t, "structured_output.mjs", ts.URL)
	stopped, _ := s["stopped"].(map[string]any)
	for _, name := range []string{"event", "tree", "code", "choice"} {
		if n, _ := stopped[name].(float64); n < 1 {
			t.Errorf("%s: %v of 6 answers stopped, want at least one (the summary: %v)", name, stopped[name], s)
		}
	}
}

// TestToolCallsNodeClient calls tools through the openai package (its
// stream helper too) and validates every call's arguments with Ajv against
// the tool's parameters; the streams must say what the whole answers say,
// and the results go back as tool messages.
func TestToolCallsNodeClient(t *testing.T) {
	needNode(t)
	ts := startServer(t, serverConfig{})
	s := runNode(t, "tool_calls.mjs", ts.URL)
	if n, _ := s["calls"].(float64); n < 1 {
		t.Errorf("no call came whole (the summary: %v)", s)
	}
	if n, _ := s["streamed"].(float64); n < 1 {
		t.Errorf("no call came streamed (the summary: %v)", s)
	}
}

// TestNativeToolCallsNodeClient runs tool_calls.mjs against the tiny model
// served under Qwen 2.5's template and Qwen3-Coder's (their <tool_call>
// as one token): the calls, whole and streamed, come from the model's own
// format (JSON, XML), and the follow-up's history goes back to the
// template as its tool_calls and tool messages.
func TestNativeToolCallsNodeClient(t *testing.T) {
	needNode(t)
	// Hermes' JSON calls and Qwen3-Coder's XML ones (ids of OpenAI's
	// form, which the script checks).
	for _, name := range []string{"Qwen-Qwen2.5-7B-Instruct", "Qwen3-Coder"} {
		t.Run(name, func(t *testing.T) {
			tok := templateTokenizer(t, readTemplate(t, name), "<tool_call>", false)
			ts := startServer(t, serverConfig{Tokenizer: tok})
			s := runNode(t, "tool_calls.mjs", ts.URL, "one-call")
			if n, _ := s["calls"].(float64); n < 1 {
				t.Errorf("no call came whole (the summary: %v)", s)
			}
			if n, _ := s["streamed"].(float64); n < 1 {
				t.Errorf("no call came streamed (the summary: %v)", s)
			}
		})
	}
}

func TestChatPageInChromium(t *testing.T) {
	needNode(t)
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("%s is missing: apt-get install -y chromium", chromiumPath)
	}
	// With a key, so that the page's key field is exercised too. Paced at
	// 10 ms a token: the answer to stop (up to 900 tokens) then lasts at
	// least 9 s, where unpaced it once ended between the page's check that
	// Stop is enabled and the click on it (CI, 2 cores).
	ts := startServer(t, serverConfig{Options: Options{APIKeys: []string{"k1"}}, Pace: 10 * time.Millisecond})
	s := runNode(t, "chat_page.mjs", ts.URL, "k1")
	if s["model"] != "openchat-tiny" {
		t.Errorf("the page test saw model %v, want openchat-tiny", s["model"])
	}
	// The page's Stop aborts its fetch after a few of 900 tokens; the
	// server must then cancel that generation, not finish it. Four answers
	// of 16 tokens (two in the page, two direct) and the stopped one are
	// all the engine should have made.
	deadline := time.Now().Add(30 * time.Second)
	for ts.Engine.Stats().Running+ts.Engine.Stats().Queued > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := ts.Engine.Stats()
	t.Logf("engine after the page test: %d tokens generated", st.Generated)
	if st.Running+st.Queued > 0 || st.Generated >= 4*16+400 {
		t.Errorf("after Stop the engine has %d running, %d queued, %d tokens generated; want 0, 0 and well under 4×16+900 (the stopped generation cancelled)",
			st.Running, st.Queued, st.Generated)
	}
}

// TestChatPageReasoningInChromium runs chat_page_reasoning.mjs with the
// tiny model under DeepSeek-R1-Distill-Llama's template, which opens
// <think> in every prompt: the page shows the thinking apart from the
// answer, as the API returns them.
func TestChatPageReasoningInChromium(t *testing.T) {
	needNode(t)
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("%s is missing: apt-get install -y chromium", chromiumPath)
	}
	tok := templateTokenizer(t, readTemplate(t, "deepseek-ai-DeepSeek-R1-Distill-Llama-8B"), thinkClose, false)
	closeID, _ := tok.TokenID(thinkClose)
	ts := startServer(t, serverConfig{Tokenizer: tok})
	s := runNode(t, "chat_page_reasoning.mjs", ts.URL, strconv.Itoa(closeID))
	turns, _ := s["turns"].([]any)
	answered := 0
	for _, turn := range turns {
		if m, _ := turn.(map[string]any); m["content"] != "" {
			answered++
		}
	}
	if len(turns) != 2 || answered == 0 {
		t.Errorf("want two turns, at least one answered after its thinking (the summary: %v)", s)
	}
}

// TestPageSelfContained checks, without a browser, what the page promises:
// the ids tests drive it by, and nothing loaded from outside the server.
func TestPageSelfContained(t *testing.T) {
	ts := startServer(t, serverConfig{Options: Options{APIKeys: []string{"k1"}}})
	resp, err := http.Get(ts.URL + "/") // the page is open without the key
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %q, want 200 text/html", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, id := range []string{"prompt", "send", "stop", "condition", "apikey", "max-tokens", "temperature", "messages", "rate", "error", "model"} {
		if !bytes.Contains(body, []byte(`id="`+id+`"`)) {
			t.Errorf("the page has no element with id %q", id)
		}
	}
	for _, want := range []string{"GPT4 Correct", "Math Correct", "/v1/chat/completions", "/v1/models", "AbortController", "getReader"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("the page does not mention %q", want)
		}
	}
	// Any absolute or protocol-relative URL would be a request elsewhere.
	if m := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(\s*['"]?(https?:)?//`).Find(body); m != nil {
		t.Errorf("the page refers to something outside the server: %q", m)
	}
}

// curl runs curl with args and returns its output (stdout and stderr).
func curl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "curl", append([]string{"-sS", "--max-time", "50"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not on PATH: apt-get install -y curl")
	}
	ts := startServer(t, serverConfig{Options: Options{APIKeys: []string{"k1"}}})
	url := ts.URL + "/v1/chat/completions"
	const req = `{"messages":[{"role":"user","content":"Write a line about rivers."}],"temperature":0,"max_tokens":16`
	auth := []string{"-H", "Authorization: Bearer k1", "-H", "Content-Type: application/json"}

	// Streamed, unbuffered (-N), as people try a server from a shell.
	out := curl(t, append([]string{"-N", url, "-d", req + `,"stream":true}`}, auth...)...)
	content, finish, err := parseChatStream(out)
	if err != nil {
		t.Fatalf("streamed chat: %v\n%s", err, out)
	}
	if content == "" || (finish != "stop" && finish != "length") {
		t.Fatalf("streamed chat: content %q, finish_reason %q; want text and stop or length\n%s", content, finish, out)
	}

	// The same request answered at once gives the same greedy text.
	out = curl(t, append([]string{url, "-d", req + `}`}, auth...)...)
	var full struct {
		Choices []struct {
			Message      struct{ Content string }
			FinishReason string `json:"finish_reason"`
		}
	}
	if err := json.Unmarshal([]byte(out), &full); err != nil || len(full.Choices) != 1 {
		t.Fatalf("chat: not one choice (%v)\n%s", err, out)
	}
	if c := full.Choices[0]; c.Message.Content != content || c.FinishReason != finish {
		t.Errorf("chat: %q (%s) non-streamed, %q (%s) streamed", c.Message.Content, c.FinishReason, content, finish)
	}

	// Without the key: 401 with OpenAI's error body.
	out = curl(t, url, "-H", "Content-Type: application/json", "-d", req+`}`, "-w", `\n%{http_code}`)
	i := strings.LastIndexByte(out, '\n')
	body, code := out[:max(i, 0)], out[i+1:]
	if code != "401" {
		t.Fatalf("no key: HTTP %s, want 401\n%s", code, out)
	}
	var e struct {
		Error struct {
			Message, Type string
			Param         *string
			Code          *string
		}
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("no key: the body is not JSON: %v\n%s", err, body)
	}
	if e.Error.Message == "" || e.Error.Type != "invalid_request_error" || e.Error.Param != nil || e.Error.Code == nil || *e.Error.Code != "invalid_api_key" {
		t.Errorf("no key: error %+v, want a message, invalid_request_error, param null, code invalid_api_key", e.Error)
	}
}

// parseChatStream reads a chat completion's SSE as curl prints it and
// checks OpenAI's shape: a role chunk first, content deltas, one
// finish_reason, then data: [DONE] last. It returns the text and the
// finish reason.
func parseChatStream(out string) (content, finish string, err error) {
	if !strings.HasSuffix(out, "data: [DONE]\n\n") {
		return "", "", errors.New("the stream does not end with data: [DONE]")
	}
	events := strings.Split(strings.TrimSuffix(out, "data: [DONE]\n\n"), "\n\n")
	if len(events) > 0 && events[len(events)-1] == "" {
		events = events[:len(events)-1]
	}
	if len(events) < 3 {
		return "", "", fmt.Errorf("%d chunks before [DONE], want a role chunk, content and a finish chunk", len(events))
	}
	var finishes int
	for i, ev := range events {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok {
			return "", "", fmt.Errorf("event %d is not a data line: %q", i, ev)
		}
		var chunk struct {
			Object  string
			Choices []struct {
				Delta struct {
					Role    string
					Content *string
				}
				FinishReason *string `json:"finish_reason"`
			}
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			return "", "", fmt.Errorf("chunk %d: %w", i, err)
		}
		if chunk.Object != "chat.completion.chunk" || len(chunk.Choices) != 1 {
			return "", "", fmt.Errorf("chunk %d: object %q with %d choices, want chat.completion.chunk with 1", i, chunk.Object, len(chunk.Choices))
		}
		c := chunk.Choices[0]
		if i == 0 {
			if c.Delta.Role != "assistant" || c.Delta.Content == nil || *c.Delta.Content != "" {
				return "", "", fmt.Errorf("the first chunk is not delta {role: assistant, content: \"\"}: %s", data)
			}
			continue
		}
		if c.Delta.Content != nil {
			content += *c.Delta.Content
		}
		if c.FinishReason != nil {
			finishes++
			finish = *c.FinishReason
			if i != len(events)-1 {
				return "", "", fmt.Errorf("chunk %d has the finish_reason but is not the last", i)
			}
		}
	}
	if finishes != 1 {
		return "", "", fmt.Errorf("%d chunks carry a finish_reason, want 1", finishes)
	}
	return content, finish, nil
}

// TestReasoningNodeClient runs reasoning.mjs against the tiny model served
// under QwQ's template (enable_thinking opens <think> in the prompt; its
// </think> one token, which the script biases): the openai package reads
// reasoning_content beside content, whole and streamed alike.
func TestReasoningNodeClient(t *testing.T) {
	needNode(t)
	tok := templateTokenizer(t, readTemplate(t, "Qwen-QwQ-32B"), thinkClose, false)
	closeID, _ := tok.TokenID(thinkClose)
	ts := startServer(t, serverConfig{Tokenizer: tok})
	s := runNode(t, "reasoning.mjs", ts.URL, strconv.Itoa(closeID))
	for _, k := range []string{"reasoned", "answered", "streamed"} {
		if n, _ := s[k].(float64); n < 1 {
			t.Errorf("no choice %s (the summary: %v)", k, s)
		}
	}
}
