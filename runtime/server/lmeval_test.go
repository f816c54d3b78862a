package server

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/engine"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// These tests speak to the server as lm-evaluation-harness's
// local-completions model does (lm_eval/models/openai_completions.py and
// api_models.py, read for the protocol): it tokenizes through the server
// (tokenizer_backend=remote: GET /tokenizer_info, POST /tokenize without
// special tokens), sends batches of token-id prompts with echo, logprobs 1
// and max_tokens 1 (0 in older versions), and reads each choice's
// token_logprobs[ctxlen:-1] and top_logprobs there. The log-probabilities
// are checked against the model's own full forward (model.Forward), not
// the engine.

// textLogprobs is a text completion choice's logprobs.
type textLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []*float64           `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// scored is a text completion as lm-eval reads it.
type scored struct {
	Choices []struct {
		Index        int           `json:"index"`
		Text         string        `json:"text"`
		FinishReason string        `json:"finish_reason"`
		Logprobs     *textLogprobs `json:"logprobs"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

// forwardLogprobs is, from a fresh model's full forward over ids, each
// token's log-probability given those before it (index i for token i+1)
// and whether it is the most likely token there.
func forwardLogprobs(t *testing.T, ids []int) (lps []float64, greedy []bool) {
	t.Helper()
	m, err := model.Load(fixtures.Path(t, "models/openchat-tiny"), cpu.NewPortable(2))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	logits, err := m.Forward(ids, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	lps, best, _ := backendtest.NextLogprobs(logits, m.Vocab(), ids)
	for r, b := range best {
		greedy = append(greedy, b == ids[r+1])
	}
	return lps, greedy
}

// greedyIDs is ids and the n tokens the model's full forward picks after
// them, one at a time.
func greedyIDs(t *testing.T, ids []int, n int) []int {
	t.Helper()
	m, err := model.Load(fixtures.Path(t, "models/openchat-tiny"), cpu.NewPortable(2))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	out := slices.Clone(ids)
	for range n {
		logits, err := m.Forward(out, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		row := logits[len(logits)-m.Vocab():]
		out = append(out, slices.Index(row, slices.Max(row)))
	}
	return out
}

// remoteEncode is lm-eval's RemoteTokenizer.encode.
func remoteEncode(t *testing.T, ts *testServer, text string) []int {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"prompt": text, "add_special_tokens": false})
	code, data := post(t, ts, "/tokenize", string(body))
	var r struct {
		Tokens []int `json:"tokens"`
	}
	if err := json.Unmarshal(data, &r); code != 200 || err != nil || r.Tokens == nil {
		t.Fatalf("/tokenize %s: %d %s", body, code, data)
	}
	return r.Tokens
}

func TestLMEvalLoglikelihood(t *testing.T) {
	ts := startServer(t, serverConfig{})
	// check_remote_tokenizer_support, then the EOS id as RemoteTokenizer
	// finds it: the first id of its text.
	code, _, data := call(t, "GET", ts.URL+"/tokenizer_info", "", "")
	var info map[string]any
	if err := json.Unmarshal(data, &info); code != 200 || err != nil {
		t.Fatalf("/tokenizer_info: %d %s", code, data)
	}
	eos, _ := info["eos_token"].(string)
	if ids := remoteEncode(t, ts, eos); len(ids) != 1 || ids[0] != ts.Tok.EOS() {
		t.Errorf("eos_token %q encodes to %v, want [%d]", eos, ids, ts.Tok.EOS())
	}
	if tpl, _ := info["chat_template"].(string); !strings.Contains(tpl, "GPT4 Correct") {
		t.Errorf("chat_template %q", tpl)
	}

	// Two (context, continuation) pairs in one batch, as lm-eval builds
	// them: the encodings concatenated, ctxlen the context's length.
	pairs := [][2]string{{"The capital of France is", " Paris"}, {"Question: what is two plus two?\nAnswer:", " four, of course"}}
	var prompts [][]int
	var ctxlens []int
	for _, p := range pairs {
		ctx, cont := remoteEncode(t, ts, p[0]), remoteEncode(t, ts, p[1])
		prompts = append(prompts, slices.Concat(ctx, cont))
		ctxlens = append(ctxlens, len(ctx))
	}
	// A third whose continuation is the model's own greedy one.
	ctx := remoteEncode(t, ts, "Once upon a time")
	prompts = append(prompts, greedyIDs(t, ctx, 3))
	ctxlens = append(ctxlens, len(ctx))
	pairs = append(pairs, [2]string{"Once upon a time", "(greedy)"})
	for _, maxTokens := range []int{1, 0} {
		t.Run(fmt.Sprintf("max_tokens %d", maxTokens), func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{"model": "openchat-tiny", "prompt": prompts, "temperature": 0, "max_tokens": maxTokens,
				"logprobs": 1, "seed": 1234, "echo": true})
			code, data := post(t, ts, "/v1/completions", string(body))
			var r scored
			if err := json.Unmarshal(data, &r); code != 200 || err != nil || len(r.Choices) != len(prompts) {
				t.Fatalf("%d %s", code, data)
			}
			if want := len(prompts[0]) + len(prompts[1]) + len(prompts[2]); r.Usage.PromptTokens != want || r.Usage.CompletionTokens != maxTokens*len(prompts) {
				t.Errorf("usage %+v, want %d prompt tokens and %d completion tokens", r.Usage, want, maxTokens*len(prompts))
			}
			for _, ch := range r.Choices {
				prompt, ctxlen := prompts[ch.Index], ctxlens[ch.Index]
				lp := ch.Logprobs
				if lp == nil || len(lp.TokenLogprobs) != len(prompt)+maxTokens || len(lp.TopLogprobs) != len(lp.TokenLogprobs) ||
					len(lp.Tokens) != len(lp.TokenLogprobs) || len(lp.TextOffset) != len(lp.TokenLogprobs) {
					t.Fatalf("choice %d: logprobs %+v for a prompt of %d and %d new tokens", ch.Index, lp, len(prompt), maxTokens)
				}
				if lp.TokenLogprobs[0] != nil || lp.TopLogprobs[0] != nil {
					t.Errorf("choice %d: the first prompt token has a log-probability", ch.Index)
				}
				echo, _ := ts.Tok.Decode(prompt)
				if !strings.HasPrefix(ch.Text, echo) || maxTokens == 0 && (ch.Text != echo || ch.FinishReason != "length") {
					t.Errorf("choice %d: text %q (%s), want the prompt's %q first", ch.Index, ch.Text, ch.FinishReason, echo)
				}
				for i, off := range lp.TextOffset[:len(prompt)] {
					if piece, _ := ts.Tok.Decode(prompt[:i]); off != len(piece) {
						t.Errorf("choice %d: text_offset[%d] %d, want %d", ch.Index, i, off, len(piece))
					}
				}
				// parse_logprobs: the continuation's sum, and greedy.
				end := len(lp.TokenLogprobs) - 1
				if maxTokens == 0 {
					end++ // (older lm-eval: nothing generated to cut)
				}
				var sum float64
				isGreedy := true
				for i := ctxlen; i < end; i++ {
					sum += *lp.TokenLogprobs[i]
					best := math.Inf(-1)
					for _, v := range lp.TopLogprobs[i] {
						best = max(best, v)
					}
					if *lp.TokenLogprobs[i] != best {
						isGreedy = false
					}
				}
				want, greedy := forwardLogprobs(t, prompt)
				var wantSum float64
				wantGreedy := true
				for i := ctxlen; i < len(prompt); i++ {
					wantSum += want[i-1]
					wantGreedy = wantGreedy && greedy[i-1]
				}
				for i := 1; i < len(prompt); i++ {
					if math.Abs(*lp.TokenLogprobs[i]-want[i-1]) > 1e-4 {
						t.Errorf("choice %d: token %d: log-probability %.6f, the model's %.6f", ch.Index, i, *lp.TokenLogprobs[i], want[i-1])
					}
				}
				if math.Abs(sum-wantSum) > 1e-3 || isGreedy != wantGreedy || ch.Index == 2 && !isGreedy {
					t.Errorf("choice %d: continuation %.6f greedy %v, the model's %.6f %v", ch.Index, sum, isGreedy, wantSum, wantGreedy)
				}
				t.Logf("choice %d: %q → %q: %.4f, greedy %v", ch.Index, pairs[ch.Index][0], pairs[ch.Index][1], sum, isGreedy)
			}
		})
	}
}

// TestEchoLogprobsStreamed: streamed, the echo's chunk carries the prompt's
// text and log-probabilities; the chunks add up to the whole response.
func TestEchoLogprobsStreamed(t *testing.T) {
	ts := startServer(t, serverConfig{})
	req := `{"prompt": ["Hello there", "One"], "max_tokens": 3, "temperature": 0, "logprobs": 2, "echo": true%s}`
	code, whole := post(t, ts, "/v1/completions", fmt.Sprintf(req, ""))
	var w scored
	if err := json.Unmarshal(whole, &w); code != 200 || err != nil || len(w.Choices) != 2 {
		t.Fatalf("%d %s", code, whole)
	}
	code, body := post(t, ts, "/v1/completions", fmt.Sprintf(req, `, "stream": true`))
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	text := map[int]string{}
	lps := map[int]*textLogprobs{}
	for _, ev := range events(t, body) {
		if ev == "[DONE]" {
			continue
		}
		var c scored
		if err := json.Unmarshal([]byte(ev), &c); err != nil {
			t.Fatal(err)
		}
		for _, ch := range c.Choices {
			text[ch.Index] += ch.Text
			if ch.Logprobs == nil {
				continue
			}
			if lps[ch.Index] == nil {
				lps[ch.Index] = &textLogprobs{}
			}
			l := lps[ch.Index]
			l.Tokens = append(l.Tokens, ch.Logprobs.Tokens...)
			l.TokenLogprobs = append(l.TokenLogprobs, ch.Logprobs.TokenLogprobs...)
			l.TopLogprobs = append(l.TopLogprobs, ch.Logprobs.TopLogprobs...)
			l.TextOffset = append(l.TextOffset, ch.Logprobs.TextOffset...)
		}
	}
	for _, ch := range w.Choices {
		got, _ := json.Marshal(lps[ch.Index])
		want, _ := json.Marshal(ch.Logprobs)
		if text[ch.Index] != ch.Text || string(got) != string(want) {
			t.Errorf("choice %d streamed: %q %s\nwhole: %q %s", ch.Index, text[ch.Index], got, ch.Text, want)
		}
		// Each position's alternatives: the two most likely, and the token.
		for i, top := range ch.Logprobs.TopLogprobs[1:] {
			if len(top) < 2 || len(top) > 3 {
				t.Errorf("choice %d: position %d: %d alternatives, want 2 or 3", ch.Index, i+1, len(top))
			}
			if _, ok := top[ch.Logprobs.Tokens[i+1]]; !ok {
				t.Errorf("choice %d: position %d: the token %q is not among its alternatives %v", ch.Index, i+1, ch.Logprobs.Tokens[i+1], top)
			}
		}
	}
}

// TestCompletionPromptSpecialTokens: a completion's prompt text is
// tokenized as a Hugging Face tokenizer and vLLM do it, special tokens
// recognised (a raw openchat prompt), BOS in front unless
// add_special_tokens is false (/tokenize).
func TestCompletionPromptSpecialTokens(t *testing.T) {
	ts := startServer(t, serverConfig{})
	raw := "GPT4 Correct User: Hello<|end_of_turn|>GPT4 Correct Assistant:"
	code, data := post(t, ts, "/tokenize", fmt.Sprintf(`{"prompt": %q}`, raw))
	var r struct {
		Tokens []int `json:"tokens"`
	}
	if err := json.Unmarshal(data, &r); code != 200 || err != nil {
		t.Fatalf("%d %s", code, data)
	}
	want, err := ts.Tok.EncodeChat([]tokenizer.Message{{Role: "user", Content: "Hello"}}, tokenizer.ChatOptions{AddGenerationPrompt: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Tokens, want) {
		t.Errorf("/tokenize %q = %v, want the chat template's %v", raw, r.Tokens, want)
	}
	if ids := remoteEncode(t, ts, raw); !slices.Equal(ids, want[1:]) {
		t.Errorf("without special tokens: %v, want %v", ids, want[1:])
	}
	// The completion of that prompt is the chat completion's (which, a
	// text of its own, drops the first token's leading space).
	code, data = post(t, ts, "/v1/completions", fmt.Sprintf(`{"prompt": %q, "max_tokens": 6, "temperature": 0}`, raw))
	code2, data2 := post(t, ts, "/v1/chat/completions", `{"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 6, "temperature": 0}`)
	if code != 200 || code2 != 200 || decode(t, data).Choices[0].Text != " "+decode(t, data2).Choices[0].Message.Content {
		t.Errorf("completion %d %s\nchat %d %s", code, data, code2, data2)
	}
}

// TestPromptBatch: a batch of prompts gets n choices each, indexed
// prompt·n + j, each the same as that prompt alone; over the queue's size
// it is refused at once.
func TestPromptBatch(t *testing.T) {
	ts := startServer(t, serverConfig{Engine: engine.Options{MaxQueue: 8}})
	alone := func(p string) []string {
		code, data := post(t, ts, "/v1/completions", fmt.Sprintf(`{"prompt": %q, "max_tokens": 5, "temperature": 0.8, "seed": 7, "n": 2}`, p))
		if code != 200 {
			t.Fatalf("%d %s", code, data)
		}
		c := decode(t, data)
		return []string{c.Choices[0].Text, c.Choices[1].Text}
	}
	a, b := alone("Once upon"), alone("The")
	code, data := post(t, ts, "/v1/completions", `{"prompt": ["Once upon", "The"], "max_tokens": 5, "temperature": 0.8, "seed": 7, "n": 2}`)
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	got := make([]string, 4)
	for _, ch := range decode(t, data).Choices {
		got[ch.Index] = ch.Text
	}
	if want := slices.Concat(a, b); !slices.Equal(got, want) {
		t.Errorf("batch %q, alone %q", got, want)
	}
	code, data = post(t, ts, "/v1/completions", `{"prompt": ["a", "b", "c"], "n": 3, "max_tokens": 2}`)
	if r := decode(t, data); code != 400 || r.Error == nil || !strings.Contains(r.Error.Message, "--max-queue") {
		t.Errorf("9 generations with a queue of 8: %d %s", code, data)
	}
	// One prompt (a chat's messages, a completion's prompt) with n over
	// the queue: the error names n, and no count of prompts.
	for _, c := range []struct{ path, body string }{
		{"/v1/chat/completions", `{"messages": [{"role": "user", "content": "x"}], "n": 9, "max_tokens": 2}`},
		{"/v1/completions", `{"prompt": "x", "n": 9, "max_tokens": 2}`},
	} {
		code, data := post(t, ts, c.path, c.body)
		e := decode(t, data).Error
		if code != 400 || e == nil || e.Param == nil || *e.Param != "n" || !strings.Contains(e.Message, "--max-queue") || strings.Contains(e.Message, "prompts") {
			t.Errorf("%s n=9 with a queue of 8: %d %s, want a 400 naming n and --max-queue", c.path, code, data)
		}
	}
}

// TestCompletionContinuesPrompt: a completion's text continues its
// prompt's (a first token's leading space kept), so that prompt and
// completion decode as the whole, as vLLM's do; lm-eval's generate_until
// answers start with that space.
func TestCompletionContinuesPrompt(t *testing.T) {
	ts := startServer(t, serverConfig{})
	prompt := remoteEncode(t, ts, "The capital of France is")
	body, _ := json.Marshal(map[string]any{"prompt": prompt, "max_tokens": 5, "temperature": 0})
	code, data := post(t, ts, "/v1/completions", string(body))
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	text := decode(t, data).Choices[0].Text
	head, _ := ts.Tok.Decode(prompt)
	whole, _ := ts.Tok.Decode(greedyIDs(t, prompt, 5))
	if head+text != whole {
		t.Errorf("prompt %q + completion %q, want the whole %q", head, text, whole)
	}
	if !strings.HasPrefix(text, " ") {
		t.Errorf("completion %q lost its first token's space", text)
	}
}

// TestScoringEdges: lm-eval's loglikelihood request when the model's next
// token is its end (the stop token's log-probability is the last entry,
// as OpenAI's and vLLM's, so that [ctxlen:-1] is the continuation), token
// texts that collide in top_logprobs, text_offset in characters, and a
// batch whose time runs out before every prompt is scored (a 503 to
// retry, not null logprobs).
func TestScoringEdges(t *testing.T) {
	ts := startServer(t, serverConfig{})
	t.Run("stop token", func(t *testing.T) {
		prompt := []int{1, 415, 948, 28723, 13, 13, 1014, 4376, 403, 4672, 28723} // "The end." and the model's own tokens after it
		body, _ := json.Marshal(map[string]any{"prompt": [][]int{prompt}, "echo": true, "logprobs": 1, "max_tokens": 1, "temperature": 0})
		code, data := post(t, ts, "/v1/completions", string(body))
		var r scored
		if err := json.Unmarshal(data, &r); code != 200 || err != nil {
			t.Fatalf("%d %s", code, data)
		}
		ch := r.Choices[0]
		if ch.FinishReason != "stop" {
			t.Skipf("the model no longer ends after this prompt (%s): the case is not exercised", data)
		}
		lp := ch.Logprobs
		if len(lp.TokenLogprobs) != len(prompt)+1 || r.Usage.CompletionTokens != 1 {
			t.Fatalf("%d log-probabilities and %d completion tokens for a prompt of %d ended by the stop token: want %d and 1",
				len(lp.TokenLogprobs), r.Usage.CompletionTokens, len(prompt), len(prompt)+1)
		}
		last := lp.Tokens[len(prompt)]
		id, ok := ts.Tok.TokenID(last)
		if !ok || !ts.Tok.IsSpecial(id) || strings.Contains(ch.Text, last) {
			t.Fatalf("the last entry %q should be the end token, not in the text %q", last, ch.Text)
		}
		want, _ := forwardLogprobs(t, append(slices.Clone(prompt), id))
		if got := *lp.TokenLogprobs[len(prompt)]; math.Abs(got-want[len(prompt)-1]) > 1e-4 {
			t.Errorf("the end token's log-probability %.5f, the model's %.5f", got, want[len(prompt)-1])
		}
	})
	t.Run("colliding texts", func(t *testing.T) {
		e6, _ := ts.Tok.TokenID("<0xE6>")
		e7, _ := ts.Tok.TokenID("<0xE7>")
		c := &choice{tok: ts.Tok}
		m := c.topMap(e6, -0.1, []engine.TokenLogprob{{Token: e6, Logprob: -0.1}, {Token: e7, Logprob: -3}})
		if len(m) != 1 || m["\uFFFD"] != -0.1 {
			t.Errorf("top_logprobs of two byte tokens %v, want the likelier's -0.1 under U+FFFD", m)
		}
	})
	t.Run("offsets in characters", func(t *testing.T) {
		body := `{"prompt": "naïve café, déjà vu", "echo": true, "logprobs": 0, "max_tokens": 2, "temperature": 0}`
		code, data := post(t, ts, "/v1/completions", body)
		var r scored
		if err := json.Unmarshal(data, &r); code != 200 || err != nil {
			t.Fatalf("%d %s", code, data)
		}
		lp, text := r.Choices[0].Logprobs, r.Choices[0].Text
		prompt, _ := ts.Tok.EncodeSpecialPrompt("naïve café, déjà vu")
		for i, off := range lp.TextOffset[:len(prompt)] {
			head, _ := ts.Tok.Decode(prompt[:i])
			if want := utf8.RuneCountInString(head); off != want {
				t.Errorf("text_offset[%d] = %d, want %d characters (%q)", i, off, want, head)
			}
		}
		if n := utf8.RuneCountInString(text); lp.TextOffset[len(lp.TextOffset)-1] >= n {
			t.Errorf("the last text_offset %d is past the text's %d characters", lp.TextOffset[len(lp.TextOffset)-1], n)
		}
	})
	t.Run("time runs out", func(t *testing.T) {
		// 48 prompts of 120 tokens fed 4 a step, one at a time: 1,440
		// steps, far more than 50 ms on any host.
		ts := startServer(t, serverConfig{Options: Options{RequestTimeout: 50 * time.Millisecond}, Engine: engine.Options{StepTokens: 4, MaxRunning: 1}})
		ids := fixtures.WikiIDs(t)[:120]
		batch := make([][]int, 48)
		for i := range batch {
			batch[i] = ids
		}
		body, _ := json.Marshal(map[string]any{"prompt": batch, "echo": true, "logprobs": 1, "max_tokens": 1})
		code, data := post(t, ts, "/v1/completions", string(body))
		if r := decode(t, data); code != 503 || r.Error == nil || r.Error.Code == nil || *r.Error.Code != "timeout" {
			t.Errorf("a batch cut before all its prompts were scored: %d %.300s, want a 503 timeout", code, data)
		}
	})
}
