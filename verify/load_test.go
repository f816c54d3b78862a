package verify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/engine"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/runtime/server"
	"github.com/gptqtool/gptqtool/verify"
)

// TestLoadTest runs the load generator against a real server on loopback.
func TestLoadTest(t *testing.T) {
	dir := fixtures.Path(t, "models/stories260K-hf-mistral")
	m, err := model.Load(dir, cpu.New(2))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := server.New(server.Options{ModelName: "stories", APIKeys: []string{"k"}})
	e, err := engine.New(engine.Options{Model: m, Blocks: 256, MaxLen: 512, Observer: s.Observer()})
	if err != nil {
		t.Fatal(err)
	}
	s.SetBackend(&server.Backend{Engine: e, Tokenizer: tok, Temperature: 1, TopP: 1})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, ln, s, func() *engine.Engine { return e }, time.Second) }()
	defer func() {
		cancel()
		<-done
	}()
	r, err := verify.LoadTest(context.Background(), verify.LoadOptions{URL: "http://" + ln.Addr().String(), APIKey: "k",
		Concurrency: 8, Requests: 16, MaxTokens: 20, Prompt: "Once upon a time", Temperature: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 0 || r.CompletionTokens != 16*20 || r.PromptTokens != 16*5 || r.TokensPerSecond <= 0 ||
		!(r.TTFT.P50 > 0) || r.TTFT.P99 < r.TTFT.P50 || !(r.ITL.Mean > 0) {
		t.Errorf("load result %+v", r)
	}
	// Scoring, as lm-eval's loglikelihood requests: every prompt token's
	// log-probability comes back (checked by the load generator).
	const story = "Once upon a time, there was a little girl"
	ids, err := tok.EncodeSpecialPrompt(story)
	if err != nil {
		t.Fatal(err)
	}
	// The URL as an OpenAI base_url (with /v1) reaches the same routes.
	sc, err := verify.LoadTest(context.Background(), verify.LoadOptions{URL: "http://" + ln.Addr().String() + "/v1/", APIKey: "k",
		Concurrency: 4, Requests: 8, Prompt: story, Score: true})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Errors != 0 || sc.PromptTokens != 8*len(ids) || sc.CompletionTokens != 8 || !(sc.PromptTokensPerSecond > 0) ||
		sc.RequestLatency == nil || !(sc.RequestLatency.P50 > 0) || sc.TTFT.P50 != 0 {
		t.Errorf("scoring result %+v (%+v)", sc, sc.RequestLatency)
	}
	bad, err := verify.LoadTest(context.Background(), verify.LoadOptions{URL: "http://" + ln.Addr().String(), APIKey: "wrong",
		Concurrency: 2, MaxTokens: 5, Prompt: "x"})
	if err != nil || bad.Errors != 2 || bad.FirstError == "" {
		t.Errorf("with a wrong key: %+v, %v", bad, err)
	}
}

// TestLoadTestEmptyStreams: requests that end before any text (a stop token
// first) count their tokens but have no time to first token.
func TestLoadTestEmptyStreams(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		if n.Add(1) <= 2 {
			fmt.Fprint(w, "data: {\"choices\":[{\"text\":\"\",\"finish_reason\":\"stop\"}]}\n\n")
			fmt.Fprint(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":0}}\n\ndata: [DONE]\n\n")
			return
		}
		time.Sleep(30 * time.Millisecond)
		fmt.Fprint(w, "data: {\"choices\":[{\"text\":\"hi\",\"finish_reason\":null}]}\n\n")
		fmt.Fprint(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n")
	}))
	defer srv.Close()
	r, err := verify.LoadTest(context.Background(), verify.LoadOptions{URL: srv.URL, Concurrency: 1, Requests: 3, MaxTokens: 4, Prompt: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 0 || r.CompletionTokens != 1 || !(r.TTFT.P50 >= 0.03) || !(r.TTFT.Mean >= 0.03) {
		t.Errorf("load result %+v: the empty streams' time to first token was counted", r)
	}
}

// TestLoadTestIgnoreEOS: --ignore-eos sends ignore_eos with every request,
// and nothing of the kind without it.
func TestLoadTestIgnoreEOS(t *testing.T) {
	var got []map[string]any
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Error(err)
		}
		mu.Lock()
		got = append(got, body)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"choices\":[{\"text\":\"hi\",\"finish_reason\":\"length\"}]}\n\n")
		fmt.Fprint(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n")
	}))
	defer srv.Close()
	for _, ignore := range []bool{true, false} {
		got = nil
		if _, err := verify.LoadTest(context.Background(), verify.LoadOptions{URL: srv.URL, Concurrency: 2, Requests: 3, MaxTokens: 1,
			Prompt: "x", IgnoreEOS: ignore}); err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Fatalf("%d requests, want 3", len(got))
		}
		for _, b := range got {
			if v, ok := b["ignore_eos"]; ok != ignore || (ignore && v != true) {
				t.Errorf("IgnoreEOS %v: request body %v", ignore, b)
			}
		}
	}
}

// TestLoadTestScoreChecks: a scoring answer whose log-probabilities do not
// cover every prompt token (or whose first is not null) is an error.
func TestLoadTestScoreChecks(t *testing.T) {
	answers := []string{
		`{"choices":[{"logprobs":{"token_logprobs":[null,-1.5,-0.5]}}],"usage":{"prompt_tokens":2,"completion_tokens":1}}`,
		`{"choices":[{"logprobs":{"token_logprobs":[null,-1.5]}}],"usage":{"prompt_tokens":2,"completion_tokens":1}}`,
		`{"choices":[{"logprobs":{"token_logprobs":[-0.1,-1.5,-0.5]}}],"usage":{"prompt_tokens":2,"completion_tokens":1}}`,
		`{"choices":[{"text":"x"}],"usage":{"prompt_tokens":2,"completion_tokens":1}}`,
	}
	for i, a := range answers {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var req map[string]any
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req["echo"] != true || req["logprobs"] != 1.0 || req["max_tokens"] != 1.0 || req["stream"] != nil {
				http.Error(w, fmt.Sprintf("not a scoring request: %v %v", req, err), 400)
				return
			}
			fmt.Fprint(w, a)
		}))
		r, err := verify.LoadTest(context.Background(), verify.LoadOptions{URL: srv.URL, Concurrency: 1, Requests: 2, Prompt: "x", Score: true})
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 && (r.Errors != 0 || r.PromptTokens != 4) || i > 0 && (r.Errors != 2 || r.FirstError == "") {
			t.Errorf("answer %d: %+v", i, r)
		}
	}
}

// TestLoadTestStreamError: a stream that ends with an error event (gptqtool
// serve's --request-timeout cutting it, vLLM's failed streams) before
// [DONE] is a failed request naming the error, as OpenAI's client raises
// on it, where it counted as a success whose tokens were short.
func TestLoadTestStreamError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"choices\":[{\"text\":\"hi\",\"finish_reason\":null}]}\n\n")
		fmt.Fprint(w, "data: {\"error\":{\"message\":\"the request timed out\",\"type\":\"server_error\",\"param\":null,\"code\":\"timeout\"}}\n\ndata: [DONE]\n\n")
	}))
	defer srv.Close()
	r, err := verify.LoadTest(context.Background(), verify.LoadOptions{URL: srv.URL, Concurrency: 1, Requests: 2, MaxTokens: 5, Prompt: "x"})
	if err != nil || r.Errors != 2 || r.FirstError != "the stream ended with an error (code timeout): the request timed out" {
		t.Errorf("streams ending with an error event: %+v, %v", r, err)
	}
}
