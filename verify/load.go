package verify

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// LoadOptions configure LoadTest.
type LoadOptions struct {
	// URL is the server's base URL ("http://127.0.0.1:18888"); an OpenAI
	// base_url ending in /v1 is taken too.
	URL, APIKey, Model string
	// Concurrency streams run at once; Requests in all (0: Concurrency).
	Concurrency, Requests int
	// MaxTokens per request; a stop ends a request early and counts what
	// it made, unless IgnoreEOS asks the server (gptqtool serve, vLLM) to
	// run every request to MaxTokens.
	MaxTokens int
	IgnoreEOS bool
	// Prompt is the text of every request (a chat user message with Chat).
	Prompt      string
	Chat        bool
	Temperature float64
	// Score makes every request score its prompt as lm-evaluation-harness's
	// loglikelihood requests do (a completion with echo, logprobs 1,
	// max_tokens 1 and temperature 0, not streamed; MaxTokens, IgnoreEOS
	// and Temperature unused): the result has the prompt tokens scored a
	// second and each request's latency.
	Score bool
	// ResponseFormat, where non-nil, is every request's response_format
	// (structured output: {"type": "json_object"}, or json_schema).
	ResponseFormat json.RawMessage
}

// Latency summarises durations in seconds.
type Latency struct {
	Mean float64 `json:"mean_s"`
	P50  float64 `json:"p50_s"`
	P90  float64 `json:"p90_s"`
	P99  float64 `json:"p99_s"`
	Max  float64 `json:"max_s"`
}

// LoadResult is what LoadTest measured.
type LoadResult struct {
	Requests         int     `json:"requests"`
	Errors           int     `json:"errors"`
	FirstError       string  `json:"first_error,omitempty"`
	PromptTokens     int     `json:"prompt_tokens"`
	CompletionTokens int     `json:"completion_tokens"`
	Seconds          float64 `json:"seconds"`
	// TokensPerSecond is the completion tokens of all requests over the wall time.
	TokensPerSecond float64 `json:"tokens_per_second"`
	TTFT            Latency `json:"time_to_first_token"`
	ITL             Latency `json:"inter_token_latency"`
	// With Score: the prompt tokens of all requests over the wall time,
	// and each request's time from sending to its whole answer.
	PromptTokensPerSecond float64  `json:"prompt_tokens_per_second,omitempty"`
	RequestLatency        *Latency `json:"request_latency,omitempty"`
}

func summarise(d []float64) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	q := func(p float64) float64 { return d[min(len(d)-1, int(math.Ceil(p*float64(len(d))))-1)] }
	var sum float64
	for _, v := range d {
		sum += v
	}
	return Latency{Mean: sum / float64(len(d)), P50: q(0.5), P90: q(0.9), P99: q(0.99), Max: d[len(d)-1]}
}

// LoadTest runs streamed completions against an OpenAI-compatible server
// (gptqtool serve, vLLM, ...) with Concurrency requests in flight, and
// measures the aggregate generation rate, the time to first token and the
// time between tokens (between content chunks) as a client sees them.
func LoadTest(ctx context.Context, o LoadOptions) (*LoadResult, error) {
	if o.Concurrency <= 0 || o.MaxTokens <= 0 && !o.Score || o.URL == "" {
		return nil, fmt.Errorf("load: want a URL, a positive concurrency and max tokens")
	}
	if o.Score && o.Chat {
		return nil, fmt.Errorf("load: scoring takes a completion prompt, not a chat")
	}
	if o.Requests <= 0 {
		o.Requests = o.Concurrency
	}
	path, body := "/v1/completions", map[string]any{"prompt": o.Prompt}
	if o.Chat {
		path, body = "/v1/chat/completions", map[string]any{"messages": []map[string]string{{"role": "user", "content": o.Prompt}}}
	}
	if o.Score {
		body["max_tokens"], body["temperature"], body["echo"], body["logprobs"] = 1, 0, true, 1
	} else {
		body["max_tokens"], body["temperature"], body["stream"] = o.MaxTokens, o.Temperature, true
		if o.IgnoreEOS {
			body["ignore_eos"] = true
		}
		body["stream_options"] = map[string]bool{"include_usage": true}
		if o.ResponseFormat != nil {
			body["response_format"] = o.ResponseFormat
		}
	}
	if o.Model != "" {
		body["model"] = o.Model
	}
	payload, _ := json.Marshal(body)
	res := &LoadResult{Requests: o.Requests}
	var mu sync.Mutex
	var ttft, itl, lat []float64
	next := make(chan int, o.Requests)
	for i := range o.Requests {
		next <- i
	}
	close(next)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Concurrency, MaxConnsPerHost: 0}}
	start := time.Now()
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Go(func() {
			for range next {
				do := stream
				if o.Score {
					do = score
				}
				r, err := do(ctx, client, o, path, payload)
				mu.Lock()
				if err != nil {
					res.Errors++
					if res.FirstError == "" {
						res.FirstError = err.Error()
					}
				} else {
					res.PromptTokens += r.prompt
					res.CompletionTokens += r.completion
					if r.content {
						// A request that ended before any text (a stop
						// token first) has no first token to time.
						ttft = append(ttft, r.ttft)
					}
					itl = append(itl, r.gaps...)
					if o.Score {
						lat = append(lat, r.total)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	if res.Seconds > 0 {
		res.TokensPerSecond = float64(res.CompletionTokens) / res.Seconds
	}
	res.TTFT, res.ITL = summarise(ttft), summarise(itl)
	if o.Score {
		l := summarise(lat)
		res.RequestLatency = &l
		if res.Seconds > 0 {
			res.PromptTokensPerSecond = float64(res.PromptTokens) / res.Seconds
		}
	}
	return res, ctx.Err()
}

type streamResult struct {
	prompt, completion int
	content            bool // a chunk with text arrived
	ttft               float64
	gaps               []float64
	total              float64 // (score) the whole request's time
}

// score runs one scoring request (LoadOptions.Score) and checks that the
// answer holds a log-probability entry for every prompt token and the one
// it generated (the first null, as OpenAI's and vLLM's).
func score(ctx context.Context, client *http.Client, o LoadOptions, path string, payload []byte) (*streamResult, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", baseURL(o.URL)+path, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if o.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+o.APIKey)
	}
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		return nil, err
	}
	total := time.Since(t0).Seconds()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(b.String()))
	}
	var ans struct {
		Choices []struct {
			Logprobs *struct {
				TokenLogprobs []*float64 `json:"token_logprobs"`
			} `json:"logprobs"`
		} `json:"choices"`
		Usage struct {
			Prompt     int `json:"prompt_tokens"`
			Completion int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(b.Bytes(), &ans); err != nil {
		return nil, fmt.Errorf("answer %.200q: %w", b.String(), err)
	}
	if len(ans.Choices) != 1 || ans.Choices[0].Logprobs == nil {
		return nil, fmt.Errorf("answer without one choice's logprobs: %.200q", b.String())
	}
	lp := ans.Choices[0].Logprobs.TokenLogprobs
	want := ans.Usage.Prompt + ans.Usage.Completion
	if ans.Usage.Prompt < 1 || len(lp) != want || lp[0] != nil || slices.Contains(lp[1:], nil) {
		return nil, fmt.Errorf("%d token_logprobs for %d prompt and %d completion tokens, want one each, only the first null", len(lp), ans.Usage.Prompt, ans.Usage.Completion)
	}
	return &streamResult{prompt: ans.Usage.Prompt, completion: ans.Usage.Completion, total: total}, nil
}

// stream runs one streamed request and times its content chunks.
func stream(ctx context.Context, client *http.Client, o LoadOptions, path string, payload []byte) (*streamResult, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", baseURL(o.URL)+path, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if o.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+o.APIKey)
	}
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(b.String()))
	}
	r := &streamResult{}
	var last time.Time
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	done := false
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			done = true
			break
		}
		var chunk struct {
			Choices []struct {
				Text  string `json:"text"`
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *struct {
				Prompt     int `json:"prompt_tokens"`
				Completion int `json:"completion_tokens"`
			} `json:"usage"`
			// An error event ends a stream that failed after its 200
			// (gptqtool serve's --request-timeout, vLLM's errors);
			// OpenAI's client raises on it.
			Error *struct {
				Message string  `json:"message"`
				Code    *string `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			return nil, fmt.Errorf("chunk %q: %w", data, err)
		}
		if e := chunk.Error; e != nil {
			if e.Code != nil {
				return nil, fmt.Errorf("the stream ended with an error (code %s): %s", *e.Code, e.Message)
			}
			return nil, fmt.Errorf("the stream ended with an error: %s", e.Message)
		}
		if chunk.Usage != nil {
			r.prompt, r.completion = chunk.Usage.Prompt, chunk.Usage.Completion
		}
		for _, c := range chunk.Choices {
			if c.Text == "" && c.Delta.Content == "" {
				continue
			}
			now := time.Now()
			if last.IsZero() {
				r.ttft, r.content = now.Sub(t0).Seconds(), true
			} else {
				r.gaps = append(r.gaps, now.Sub(last).Seconds())
			}
			last = now
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !done {
		return nil, fmt.Errorf("the stream ended without [DONE]")
	}
	return r, nil
}

// baseURL is the server's root from LoadOptions.URL: without a trailing
// slash, and without /v1, which an OpenAI base_url ends in and the request
// paths already hold.
func baseURL(u string) string {
	u = strings.TrimRight(u, "/")
	return strings.TrimSuffix(u, "/v1")
}
