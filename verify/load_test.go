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
