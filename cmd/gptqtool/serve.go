package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/jinja"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/publish"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cuda"
	"github.com/gptqtool/gptqtool/runtime/engine"
	"github.com/gptqtool/gptqtool/runtime/server"
)

func init() { subcommands = append(subcommands, newServeCmd) }

type serveFlags struct {
	model, host, modelName, device, kvCache, maxBody, chatTemplate, logFormat string
	dtype, reasoningFormat                                                    string
	port, threads, maxLen, blockSize, maxQueue, maxRunning, stepTokens        int
	speculate                                                                 int
	speculateNgram                                                            string
	lookMin, lookMax                                                          int // --speculate-ngram's, parsed by runServe
	apiKeys, allowedOrigins                                                   []string
	requestTimeout, shutdownTimeout                                           time.Duration
	systemMessages, ahead, prefixCache                                        bool
}

func newServeCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve --model DIR [--port 18888] [--api-keys K ...]",
		Short: "Serve a model over an OpenAI-compatible HTTP API, with continuous batching and a chat page",
		Long: `serve loads a checkpoint (floating point or GPTQ) and answers OpenAI's API on
127.0.0.1:18888 by default, as openchat's own server does:

  POST /v1/chat/completions  POST /v1/completions   (stream: true gives server-sent events)
  GET  /v1/models  GET /v1/models/{model}  GET /health  GET /metrics (Prometheus)
  POST /tokenize  POST /detokenize  GET /tokenizer_info   (vLLM's)
  GET  /  a chat page

Requests are batched continuously over a paged KV cache; a full queue answers 429 with
Retry-After. openchat models are also served as "openchat_3.5" and accept openchat's
condition field ("GPT4 Correct", "Math Correct"); generation stops at <|end_of_turn|> and the
model's EOS ids. Chats take tools (tool_choice none, auto, required or one function): the reply
is grammar-constrained JSON, so that a call's arguments always match its tool's parameters. A
reasoning model's <think> block comes back as reasoning_content (--reasoning-format). SIGTERM or SIGINT stops accepting requests and lets those in flight finish for
--shutdown-timeout; a second one cuts them at once. Either way serve exits 0, its normal end
(not the 130 or 143 of the other commands).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error { return runServe(cmd, f) },
	}
	fs := cmd.Flags()
	fs.StringVar(&f.model, "model", "", "the checkpoint directory to serve, or a GGUF file (its weights dequantized; the tokenizer files beside it)")
	fs.StringVar(&f.host, "host", "127.0.0.1", "address to listen on")
	fs.IntVar(&f.port, "port", 18888, "port to listen on (0 picks a free one)")
	fs.StringVar(&f.modelName, "model-name", "", "model id in the API (default: the directory's name)")
	fs.StringSliceVar(&f.apiKeys, "api-keys", nil, "require one of these keys as Authorization: Bearer KEY (space or comma separated)")
	fs.StringVar(&f.device, "device", "auto", deviceHelp)
	fs.StringVar(&f.dtype, "dtype", "auto", dtypeHelp)
	fs.IntVar(&f.threads, "threads", 0, "CPU threads (0 = all cores)")
	fs.IntVar(&f.maxLen, "max-len", 0, "longest prompt + completion in tokens (default and most: the model's max_position_embeddings)")
	fs.StringVar(&f.kvCache, "kv-cache", "1GiB", "memory of the paged KV cache: a size, or a percentage of the memory free once the model is loaded (90%)")
	fs.IntVar(&f.blockSize, "block-size", 16, "positions per KV cache block")
	fs.IntVar(&f.maxQueue, "max-queue", 256, "requests waiting for admission before 429")
	fs.IntVar(&f.maxRunning, "max-batch", 64, "sequences decoded together")
	fs.IntVar(&f.stepTokens, "step-tokens", 0, "tokens one step processes (decoding one per sequence, prompt chunks the rest); 0: 2048 on cuda, 512 on cpu")
	fs.BoolVar(&f.prefixCache, "prefix-cache", true, "keep the KV blocks a request wrote for later prompts that start with the same tokens (vLLM's automatic prefix caching; --prefix-cache=false computes every prompt whole)")
	fs.BoolVar(&f.ahead, "ahead", aheadDefault(), "issue a decode step before the previous step's tokens are read, where no penalty or log-probability needs them (GPTQTOOL_AHEAD=0 turns the default off)")
	fs.IntVar(&f.speculate, "speculate", 0, "speculative decoding by prompt lookup (vLLM's ngram method): requests' steps (but those with logprobs) carry up to this many draft tokens, copied from where their last tokens occurred before in the prompt or output, and keep those the model confirms (the same output, fewer steps where text repeats); 0: off")
	fs.StringVar(&f.speculateNgram, "speculate-ngram", "2:4", "MIN:MAX, the lengths of the last tokens --speculate looks up, longest first")
	fs.StringVar(&f.maxBody, "max-body", "1MiB", "largest request body")
	fs.DurationVar(&f.requestTimeout, "request-timeout", 10*time.Minute, "longest generation (0 = none)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "time requests in flight get to finish on SIGTERM")
	fs.StringVar(&f.chatTemplate, "chat-template", "", "openchat or openchat-math (default: tokenizer_config.json's chat_template)")
	fs.StringVar(&f.reasoningFormat, "reasoning-format", server.ReasoningDeepSeek, "a reasoning model's <think> block (where the chat template writes one): deepseek returns it as reasoning_content, none leaves it in content (llama.cpp's names; a request's reasoning_format overrides)")
	fs.BoolVar(&f.systemMessages, "system-messages", false, "keep system messages in chats (openchat drops them; a chat's tools are then described in its first user message)")
	fs.StringVar(&f.logFormat, "log-format", "json", "access log format on stderr: json or text")
	fs.StringSliceVar(&f.allowedOrigins, "allowed-origins", nil, "answer CORS preflights of the API and allow these origins (comma separated, such as https://app.example:8443, or * for any); default: no CORS")
	return cmd
}

func runServe(cmd *cobra.Command, f serveFlags) error {
	if f.model == "" {
		return usageError{errors.New("--model is required")}
	}
	kv, err := parseKVCache(f.kvCache)
	if err != nil {
		return usageError{err}
	}
	maxBody, err := parseSize(f.maxBody)
	if err != nil || maxBody <= 0 {
		return usageError{fmt.Errorf("--max-body %q: want a size such as 1MiB", f.maxBody)}
	}
	switch {
	case f.port < 0 || f.port > 65535:
		return usageError{fmt.Errorf("--port %d: want 0 to 65535", f.port)}
	case f.blockSize <= 0 || f.maxQueue <= 0 || f.maxRunning <= 0 || f.stepTokens < 0 || f.maxLen < 0:
		return usageError{errors.New("--block-size, --max-queue and --max-batch must be positive, --step-tokens and --max-len 0 or more")}
	case f.logFormat != "json" && f.logFormat != "text":
		return usageError{fmt.Errorf("--log-format %q: want json or text", f.logFormat)}
	case f.reasoningFormat != server.ReasoningNone && f.reasoningFormat != server.ReasoningDeepSeek:
		return usageError{fmt.Errorf("--reasoning-format %q: want none or deepseek", f.reasoningFormat)}
	}
	if f.lookMin, f.lookMax, err = parseNgram(f.speculateNgram); err != nil {
		return usageError{err}
	}
	if f.speculate < 0 {
		return usageError{fmt.Errorf("--speculate %d: want 0 (off) or more draft tokens", f.speculate)}
	}
	for _, o := range f.allowedOrigins {
		if !isOrigin(o) {
			return usageError{fmt.Errorf("--allowed-origins %q: want an origin such as https://app.example or http://localhost:3000 (scheme, host, optional port, no path), or *", o)}
		}
	}
	stderr := cmd.ErrOrStderr()
	var handler slog.Handler = slog.NewJSONHandler(stderr, nil)
	if f.logFormat == "text" {
		handler = slog.NewTextHandler(stderr, nil)
	}
	log := slog.New(handler)
	cfg, err := modelConfig(f.model)
	if err != nil {
		return err
	}
	// Past max_position_embeddings lie positions the model never saw (only
	// plain RoPE is read): refused as calibrate's --seq-len and verify's
	// --ctx are, and as vLLM refuses such a max_model_len.
	if ctx := cfg.MaxPositionEmbeddings; ctx > 0 && f.maxLen > ctx {
		return usageError{fmt.Errorf("--max-len %d exceeds the model's %s", f.maxLen, cfg.ContextLimit())}
	}
	tok, err := loadModelTokenizer(f.model)
	if err != nil {
		return err
	}
	chat := tokenizer.ChatOptions{Template: f.chatTemplate, SystemMessages: f.systemMessages}
	if why := chatUnavailable(tok, chat); why != "" {
		fmt.Fprintf(stderr, "serve: chat completions (/v1/chat/completions) are unavailable: %s; text completions (/v1/completions) are served\n", why)
	}
	name := f.modelName
	if name == "" {
		name = filepath.Base(filepath.Clean(f.model))
	}
	var aliases []string
	if t, err := tok.TemplateName(chat); err == nil && (t == "openchat" || t == "openchat-math") && name != "openchat_3.5" {
		aliases = append(aliases, "openchat_3.5")
	}
	srv := server.New(server.Options{ModelName: name, Aliases: aliases, APIKeys: f.apiKeys, MaxBodyBytes: maxBody,
		RequestTimeout: f.requestTimeout, Log: log, AllowedOrigins: f.allowedOrigins})
	ln, err := net.Listen("tcp", net.JoinHostPort(f.host, strconv.Itoa(f.port)))
	if err != nil {
		return err
	}
	ctx, stop := interruptible(cmd.Context())
	defer stop()
	// The listener answers (503 on /health) while the model loads.
	var eng atomic.Pointer[engine.Engine]
	loaded := make(chan error, 1)
	go func() {
		e, err := loadServing(f, cfg, tok, chat, srv, kv, stderr)
		if err == nil {
			eng.Store(e)
		}
		loaded <- err
	}()
	fmt.Fprintf(stderr, "serve: http://%s, model %q loading from %s\n", ln.Addr(), name, f.model)
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, ln, srv, eng.Load, f.shutdownTimeout) }()
	select {
	case err := <-loaded:
		if err != nil {
			stop()
			<-done
			return err
		}
		fmt.Fprintf(stderr, "serve: ready on http://%s\n", ln.Addr())
	case err := <-done:
		return err
	}
	finished := make(chan struct{})
	defer close(finished)
	go secondSignal(ctx, finished, srv, eng.Load, f.shutdownTimeout, stderr)
	err = <-done
	fmt.Fprintln(stderr, "serve: stopped")
	return err
}

// secondSignal says, once a signal starts the shutdown (ctx done), what
// the sequences in flight get, and cuts their grace at a second interrupt
// or SIGTERM, as uvicorn and vLLM do, where further signals went unheard
// until --shutdown-timeout ran out. It returns when finished closes.
func secondSignal(ctx context.Context, finished <-chan struct{}, srv *server.Server, eng func() *engine.Engine, grace time.Duration, log io.Writer) {
	select {
	case <-ctx.Done():
	case <-finished:
		return
	}
	var sc signalCause
	if !errors.As(context.Cause(ctx), &sc) {
		return
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(ch)
	n := 0
	if e := eng(); e != nil {
		st := e.Stats()
		n = st.Running + st.Queued
	}
	fmt.Fprintf(log, "serve: %s received: shutting down; sequences in flight: %d, given up to %v (--shutdown-timeout); a second interrupt or SIGTERM stops them now\n", signalName(sc.sig), n, grace)
	select {
	case s := <-ch:
		fmt.Fprintf(log, "serve: %s received: stopping the sequences in flight now\n", signalName(s))
		srv.EndGrace()
	case <-finished:
	}
}

// signalName is how a user names the signals serve answers.
func signalName(s os.Signal) string {
	if s == syscall.SIGTERM {
		return "SIGTERM"
	}
	return s.String() // "interrupt"
}

// kvSize is --kv-cache: bytes, or a fraction of the memory free once the
// model is loaded.
type kvSize struct {
	bytes    int64
	fraction float64
}

// parseKVCache reads --kv-cache: a size (1GiB) or a percentage (90%).
func parseKVCache(s string) (kvSize, error) {
	if p, ok := strings.CutSuffix(strings.TrimSpace(s), "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || !(v > 0 && v <= 100) {
			return kvSize{}, fmt.Errorf("--kv-cache %q: want a percentage above 0 and at most 100", s)
		}
		return kvSize{fraction: v / 100}, nil
	}
	n, err := parseSize(s)
	if err != nil || n <= 0 {
		return kvSize{}, fmt.Errorf("--kv-cache %q: want a size such as 1GiB or a percentage such as 90%%", s)
	}
	return kvSize{bytes: n}, nil
}

// stepTokens is --step-tokens, whose 0 means 2048 on a CUDA device and 512
// on the CPU. On the H100 (the 61st session, docs/benchmarks.md "Serving")
// 2048 took a 2,004-token prompt's first token from 132 ms (four steps of
// 512) to 85 ms, with the usual load's rate even; on the CPU a step of 2048
// prompt tokens would hold every generating sequence for seconds.
func stepTokens(flag int, b runtime.Backend) int {
	if flag > 0 {
		return flag
	}
	if _, ok := b.(*cuda.Backend); ok {
		return 2048
	}
	return 512
}

// loadServing loads the model and starts the engine behind srv.
func loadServing(f serveFlags, cfg *hfconfig.Config, tok *tokenizer.Tokenizer, chat tokenizer.ChatOptions, srv *server.Server, kv kvSize, log interface{ Write([]byte) (int, error) }) (*engine.Engine, error) {
	b, err := newBackend(f.device, f.threads, log)
	if err != nil {
		return nil, err
	}
	maxLen := f.maxLen
	if maxLen == 0 {
		maxLen = cfg.MaxPositionEmbeddings
	}
	if maxLen <= 0 {
		return nil, fmt.Errorf("%s: no max_position_embeddings: set --max-len", cfg.File)
	}
	// The model's context is the engine's: Phi-3's longrope factors are
	// the long ones at the default (max_position_embeddings), the short
	// ones for a --max-len within original_max_position_embeddings.
	m, err := loadModel(f.model, b, f.dtype, maxLen)
	if err != nil {
		return nil, err
	}
	kvBytes := kv.bytes
	if kv.fraction > 0 {
		// Of what is free now that the weights are in: the device's memory
		// (with what its allocator holds cached), else the host's.
		free, where := int64(0), ""
		if mr, ok := b.(interface{ Memory() (free, total int64) }); ok {
			free, _ = mr.Memory()
			where = "free device memory"
		} else {
			free, where = publish.HostAvailable()
		}
		if free <= 0 {
			return nil, fmt.Errorf("--kv-cache %s: the free memory of %s cannot be read; give a size", f.kvCache, b.Name())
		}
		kvBytes = int64(kv.fraction * float64(free))
		fmt.Fprintf(log, "kv cache: %s of %s (%s)\n", publish.FormatSize(kvBytes), publish.FormatSize(free), where)
	}
	blocks := int(kvBytes / (m.KVBytesPerPosition() * int64(f.blockSize)))
	if blocks < 1 {
		return nil, fmt.Errorf("--kv-cache %s holds no block of %d positions (%d bytes each)", f.kvCache, f.blockSize, m.KVBytesPerPosition())
	}
	// A request of the whole context must fit the cache (alone), or a
	// request without max_tokens could never run: as vLLM, refuse a
	// --max-len the cache cannot hold; a context taken from the config is
	// lowered to what it holds, and said so.
	if held := blocks * f.blockSize; held < maxLen {
		if f.maxLen > 0 {
			return nil, fmt.Errorf("--max-len %d: the KV cache (--kv-cache %s) holds %d positions: give a larger --kv-cache or a --max-len of at most %d", maxLen, f.kvCache, held, held)
		}
		fmt.Fprintf(log, "serve: context lowered from %d (%s max_position_embeddings) to %d positions, what the KV cache (--kv-cache %s) holds\n", maxLen, cfg.File, held, f.kvCache)
		maxLen = held
	}
	start := time.Now()
	e, err := engine.New(engine.Options{Model: m, Blocks: blocks, BlockSize: f.blockSize, MaxLen: maxLen, MaxQueue: f.maxQueue,
		MaxRunning: f.maxRunning, StepTokens: stepTokens(f.stepTokens, b), Observer: srv.Observer(), NoAhead: !f.ahead, NoPrefixCache: !f.prefixCache,
		Speculate: f.speculate, LookupMin: f.lookMin, LookupMax: f.lookMax})
	if err != nil {
		return nil, err
	}
	stops := append([]int(nil), m.EOSTokenIDs...)
	if id, ok := tok.TokenID("<|end_of_turn|>"); ok && !slices.Contains(stops, id) {
		stops = append(stops, id)
	}
	be := &server.Backend{Engine: e, Tokenizer: tok, Chat: chat, StopTokens: stops, Temperature: 1, TopP: 1,
		ReasoningFormat: f.reasoningFormat}
	if gen, err := hfconfig.LoadGeneration(tokenizerDir(f.model)); err == nil {
		if err := generationDefaults(be, gen, filepath.Join(tokenizerDir(f.model), "generation_config.json")); err != nil {
			return nil, err
		}
	}
	srv.SetBackend(be)
	fmt.Fprintf(log, "serve: %s on %s, context %d, KV cache %d blocks of %d positions; engine ready in %.1fs (decode steps of up to %d sequences recorded where the device replays them)\n",
		f.model, b.Name(), maxLen, blocks, f.blockSize, time.Since(start).Seconds(), f.maxRunning)
	return e, nil
}

// chatUnavailable says why chat requests cannot be rendered with the chat
// setup (tok's template or --chat-template) and what fixes it, or "" when
// they can: serve says so at start rather than at the first chat request's
// 400.
func chatUnavailable(tok *tokenizer.Tokenizer, chat tokenizer.ChatOptions) string {
	_, err := tok.EncodeChat([]tokenizer.Message{{Role: "user", Content: "x"}}, chat)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, tokenizer.ErrNoChatTemplate):
		return "the model's tokenizer_config.json has no chat_template; restart with --chat-template openchat or openchat-math for a model trained on one of those"
	case errors.Is(err, tokenizer.ErrUnknownTemplate):
		// The jinja error names the construct and its place.
		why := err.Error()
		if je := (*jinja.Error)(nil); errors.As(err, &je) {
			why = je.Where()
		}
		return fmt.Sprintf("the chat_template of the model's tokenizer_config.json uses Jinja that gptqtool does not render (%s); restart with --chat-template openchat or openchat-math for a model trained on one of those", why)
	}
	// (The vocabulary lacks a token the template writes: no flag helps.)
	return strings.TrimPrefix(err.Error(), "tokenizer: ")
}

// isOrigin reports whether o is "*" or an origin as browsers send it in
// the Origin header: scheme://host[:port], nothing after (a final "/" is
// allowed).
func isOrigin(o string) bool {
	if o == "*" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Scheme != "" && u.Host != "" && u.User == nil && (u.Path == "" || u.Path == "/") &&
		u.RawQuery == "" && !u.ForceQuery && u.Fragment == "" && !strings.Contains(o, "#")
}

// generationDefaults sets be's sampling defaults from generation_config.json
// (file, for errors): only the keys it sets override OpenAI's defaults, and
// its repetition_penalty is applied to requests without one, as vLLM
// applies it.
func generationDefaults(be *server.Backend, gen *hfconfig.GenerationConfig, file string) error {
	if _, ok := gen.Raw["temperature"]; ok {
		be.Temperature = gen.Temperature
	}
	if _, ok := gen.Raw["top_p"]; ok {
		be.TopP = gen.TopP
	}
	if _, ok := gen.Raw["top_k"]; ok {
		be.TopK = gen.TopK
	}
	if _, ok := gen.Raw["repetition_penalty"]; ok {
		if !(gen.RepetitionPenalty > 0) || math.IsInf(gen.RepetitionPenalty, 0) {
			return fmt.Errorf("%s: repetition_penalty %v: want a finite value > 0 (1: none)", file, gen.RepetitionPenalty)
		}
		be.RepetitionPenalty = gen.RepetitionPenalty
	}
	return nil
}

// parseNgram reads --speculate-ngram's MIN:MAX (1 <= MIN <= MAX).
func parseNgram(v string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(v, ":")
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || lo < 1 || hi < lo {
		return 0, 0, fmt.Errorf("--speculate-ngram %q: want MIN:MAX with 1 <= MIN <= MAX, such as 2:4", v)
	}
	return lo, hi, nil
}
