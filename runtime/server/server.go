// Package server puts an OpenAI-compatible HTTP API on a generation engine
// (package runtime/engine), with openchat's contract (port 18888, model
// alias openchat_3.5, the condition field, Bearer API keys, generation
// ending at <|end_of_turn|>):
//
//	POST /v1/chat/completions, /v1/completions  (streamed as SSE, or not)
//	GET  /v1/models, /v1/models/{model}, /health, /metrics (Prometheus), /  (a chat page)
//	POST /tokenize, /detokenize; GET /tokenizer_info (vLLM's)
//
// Chats call tools (tools.go): the reply is constrained to one JSON object
// that the server turns into OpenAI's tool_calls, or a plain answer.
//
// Requests are decoded field by field (package openai): unknown fields
// are ignored, a wrong type is a 400 naming the field, a prompt longer than
// the context is a 400. Stop strings are honoured across token boundaries
// and never emitted. A full queue is a 429 with Retry-After; a client that
// goes away cancels its generation at the next step. The server answers
// /health with 503 until SetBackend (the model loads behind a live
// listener) and after Drain (shutdown).
package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gptqtool/gptqtool/formats/jinja"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/runtime/engine"
	"github.com/gptqtool/gptqtool/runtime/server/openai"
)

//go:embed page.html
var page embed.FS

// Options configure New.
type Options struct {
	// ModelName is the id in /v1/models and responses; Aliases are also
	// accepted (openchat_3.5 for openchat models).
	ModelName string
	Aliases   []string
	// APIKeys, when any, are required as "Authorization: Bearer KEY" on the
	// API (not on /health, /metrics and the page).
	APIKeys []string
	// MaxBodyBytes bounds a request body (0: 1 MiB).
	MaxBodyBytes int64
	// RequestTimeout bounds a generation (0: none). A request it cuts is
	// a 503 with code "timeout", or, streamed once tokens came, ends with
	// an error event of that code before [DONE] (not finish_reason
	// "abort", which OpenAI does not define).
	RequestTimeout time.Duration
	// Log receives one access-log record per request; nil discards.
	Log *slog.Logger
	// AllowedOrigins, when any, turns CORS on for the API routes (those
	// APIKeys guard): a preflight OPTIONS from one of these origins
	// (scheme://host[:port], or "*" for any) is a 204 allowing it, the
	// route's methods and the headers asked for, and responses to it
	// carry Access-Control-Allow-Origin. None: no CORS headers, and
	// OPTIONS is a 405 like any method not routed.
	AllowedOrigins []string
}

// Backend is what the server serves once the model is loaded.
type Backend struct {
	Engine    *engine.Engine
	Tokenizer *tokenizer.Tokenizer
	// Chat is the chat template options (template name, system messages).
	Chat tokenizer.ChatOptions
	// StopTokens end generation (the model's EOS ids, <|end_of_turn|>).
	StopTokens []int
	// Temperature, TopP, TopK are the defaults (generation_config.json).
	Temperature, TopP float64
	TopK              int
	// ReasoningFormat is how replies of a reasoning model are read
	// (reasoning.go): ReasoningDeepSeek or "" (the reasoning block to
	// reasoning_content where the chat template writes one), or
	// ReasoningNone (left in content).
	ReasoningFormat string
	// RepetitionPenalty is the default of a request without
	// repetition_penalty (generation_config.json's, as vLLM takes it); 0
	// or 1 is none.
	RepetitionPenalty float64
}

// Server is the HTTP API. It is an http.Handler.
type Server struct {
	o       Options
	backend atomic.Pointer[Backend]
	drain   atomic.Bool
	m       *metrics
	mux     *http.ServeMux
	methods map[string][]string // path -> the methods routed, for 405s
	api     map[string]bool     // the API routes' paths, for CORS
	routes  []string            // the patterns routed, in order, but the catch-all
	created int64
	cut     chan struct{} // closed by EndGrace
	cutOnce sync.Once
	// grammars holds the schemas of structured output, compiled.
	grammars grammars
}

// New returns a server that answers 503 until SetBackend.
func New(o Options) *Server {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{o: o, created: time.Now().Unix(), mux: http.NewServeMux(), methods: map[string][]string{}, api: map[string]bool{}, cut: make(chan struct{})}
	s.m = newMetrics(func() (engine.Stats, bool) {
		if b := s.backend.Load(); b != nil {
			return b.Engine.Stats(), true
		}
		return engine.Stats{}, false
	})
	s.route("POST /v1/chat/completions", true, s.chat)
	s.route("POST /v1/completions", true, s.completions)
	s.route("GET /v1/models", true, s.models)
	s.route("GET /v1/models/{model...}", true, s.model)
	s.route("POST /tokenize", true, s.tokenize)
	s.route("POST /detokenize", true, s.detokenize)
	s.route("GET /tokenizer_info", true, s.tokenizerInfo)
	s.route("GET /health", false, s.health)
	s.route("GET /metrics", false, promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{}).ServeHTTP)
	s.route("GET /{$}", false, s.page)
	s.route("/", false, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions && len(s.o.AllowedOrigins) > 0 && s.api[r.URL.Path] {
			s.preflight(w, r)
			return
		}
		if allow := s.methods[r.URL.Path]; len(allow) > 0 {
			// (The catch-all route hides the mux's own 405.)
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, openai.NewError(fmt.Sprintf("%s %s: the method is not allowed (%s)", r.Method, r.URL.Path, strings.Join(allow, ", ")),
				"invalid_request_error", "", "method_not_allowed"))
			return
		}
		writeError(w, http.StatusNotFound, openai.NewError(fmt.Sprintf("no route %s %s", r.Method, r.URL.Path), "invalid_request_error", "", "not_found"))
	})
	return s
}

// Observer is the engine observer that feeds the server's metrics; pass it
// in engine.Options.
func (s *Server) Observer() engine.Observer { return s.m }

// SetBackend makes the server ready.
func (s *Server) SetBackend(b *Backend) { s.backend.Store(b) }

// Drain makes /health answer 503 and new generations 503, for a graceful
// shutdown; requests in flight continue.
func (s *Server) Drain() { s.drain.Store(true) }

// EndGrace ends a shutdown's grace now (a second interrupt): Run cuts the
// generations left as when the grace runs out. It may come before Run's
// shutdown begins, and more than once.
func (s *Server) EndGrace() { s.cutOnce.Do(func() { close(s.cut) }) }

// Routes returns the patterns the server answers ("POST /v1/completions",
// "GET /v1/models/{model...}", "GET /{$}"), in the order routed, for a help
// text to be checked against.
func (s *Server) Routes() []string { return slices.Clone(s.routes) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// route registers a handler with access logging, metrics, the body limit
// and, for the API, the key check.
func (s *Server) route(pattern string, auth bool, h http.HandlerFunc) {
	name := pattern
	if i := strings.IndexByte(name, ' '); i >= 0 {
		name = name[i+1:]
		path := strings.TrimSuffix(name, "{$}")
		s.methods[path] = append(s.methods[path], pattern[:i])
		s.routes = append(s.routes, pattern)
		s.api[path] = s.api[path] || auth
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		r.Body = http.MaxBytesReader(sw, r.Body, s.o.MaxBodyBytes)
		if auth {
			// Before the key check: a browser reads a 401 only so.
			s.allowOrigin(sw, r)
		}
		if auth && !s.authorized(r) {
			writeError(sw, http.StatusUnauthorized, openai.NewError("invalid or missing API key: send Authorization: Bearer KEY", "invalid_request_error", "", "invalid_api_key"))
		} else {
			h(sw, r)
		}
		d := time.Since(start)
		switch {
		case sw.status == 0 && r.Context().Err() != nil:
			sw.status = 499 // the client went away before an answer (nginx's "client closed request")
		case sw.status == 0:
			sw.status = http.StatusOK
		}
		label := name
		if pattern == "/" {
			// The catch-all answers 405 on a route's path (a bounded
			// set: labelled by it) and 404 on anything else, labelled
			// as one, so that a client's stray paths neither grow the
			// metrics nor read as the chat page's.
			label = "unmatched"
			if len(s.methods[r.URL.Path]) > 0 {
				label = r.URL.Path
			}
		}
		s.m.observe(label, sw.status, d)
		s.o.Log.Info("request", "method", r.Method, "path", r.URL.Path, "route", label, "status", sw.status,
			"bytes", sw.bytes, "duration_ms", float64(d.Microseconds())/1000, "remote", r.RemoteAddr)
	})
}

// corsOrigin returns the Access-Control-Allow-Origin value for a request
// from origin: "*" where any origin is allowed, the origin where it is
// listed (scheme and host compare without case), "" where CORS is off or
// the origin is not allowed.
func (s *Server) corsOrigin(origin string) string {
	if origin == "" {
		return ""
	}
	for _, o := range s.o.AllowedOrigins {
		switch {
		case o == "*":
			return "*"
		case strings.EqualFold(strings.TrimSuffix(o, "/"), origin):
			return origin
		}
	}
	return ""
}

// allowOrigin adds CORS's response headers for an allowed origin.
func (s *Server) allowOrigin(w http.ResponseWriter, r *http.Request) bool {
	if len(s.o.AllowedOrigins) == 0 {
		return false
	}
	allow := s.corsOrigin(r.Header.Get("Origin"))
	if allow != "*" {
		// The answer depends on the Origin: caches must keep them apart.
		w.Header().Add("Vary", "Origin")
	}
	if allow == "" {
		return false
	}
	w.Header().Set("Access-Control-Allow-Origin", allow)
	return true
}

// preflight answers a CORS preflight (OPTIONS) of an API route: 204
// allowing the origin, the route's methods and the request headers the
// browser asks for (Authorization and Content-Type where it names none),
// or 403 for an origin not allowed.
func (s *Server) preflight(w http.ResponseWriter, r *http.Request) {
	if !s.allowOrigin(w, r) {
		writeError(w, http.StatusForbidden, openai.NewError(fmt.Sprintf("OPTIONS %s: origin %q is not allowed (serve --allowed-origins)", r.URL.Path, r.Header.Get("Origin")),
			"invalid_request_error", "", "origin_not_allowed"))
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", strings.Join(append(slices.Clone(s.methods[r.URL.Path]), http.MethodOptions), ", "))
	headers := r.Header.Get("Access-Control-Request-Headers")
	if headers == "" {
		headers = "Authorization, Content-Type"
	}
	h.Set("Access-Control-Allow-Headers", headers)
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) authorized(r *http.Request) bool {
	if len(s.o.APIKeys) == 0 {
		return true
	}
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	for _, k := range s.o.APIKeys {
		if subtle.ConstantTimeCompare([]byte(key), []byte(k)) == 1 {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, e openai.ErrorBody) {
	writeJSON(w, status, e)
}

func badRequest(w http.ResponseWriter, err error) {
	var fe *openai.FieldError
	if errors.As(err, &fe) {
		writeError(w, http.StatusBadRequest, openai.NewError(fe.Error(), "invalid_request_error", fe.Field, ""))
		return
	}
	writeError(w, http.StatusBadRequest, openai.NewError(err.Error(), "invalid_request_error", "", ""))
}

// readBody reads a request body within the limit; false means the error
// response is written.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, openai.NewError(fmt.Sprintf("the request body exceeds %d bytes", mbe.Limit), "invalid_request_error", "", "request_too_large"))
		return nil, false
	case err != nil:
		badRequest(w, fmt.Errorf("reading the body: %w", err))
		return nil, false
	}
	return body, true
}

// ready returns the backend, or writes 503.
func (s *Server) ready(w http.ResponseWriter) *Backend {
	b := s.backend.Load()
	switch {
	case s.drain.Load():
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, openai.NewError("the server is shutting down", "server_error", "", "shutting_down"))
		return nil
	case b == nil:
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, openai.NewError("the model is loading", "server_error", "", "loading"))
		return nil
	}
	return b
}

func (s *Server) names() []string { return append([]string{s.o.ModelName}, s.o.Aliases...) }

// checkModel writes 404 for a model the server does not serve.
func (s *Server) checkModel(w http.ResponseWriter, model string) bool {
	if model == "" || slices.Contains(s.names(), model) {
		return true
	}
	writeError(w, http.StatusNotFound, openai.NewError(fmt.Sprintf("the model %q does not exist; this server serves %s", model, strings.Join(s.names(), ", ")),
		"invalid_request_error", "model", "model_not_found"))
	return false
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	switch {
	case s.drain.Load():
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
	case s.backend.Load() == nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "loading"})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}

func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	list := openai.ModelList{Object: "list"}
	for _, n := range s.names() {
		list.Data = append(list.Data, s.modelObject(n))
	}
	writeJSON(w, http.StatusOK, list)
}

// model is GET /v1/models/{model} (OpenAI's models.retrieve); an id may
// hold slashes (org/name).
func (s *Server) model(w http.ResponseWriter, r *http.Request) {
	switch id := r.PathValue("model"); {
	case id == "": // GET /v1/models/
		s.models(w, r)
	case s.checkModel(w, id):
		writeJSON(w, http.StatusOK, s.modelObject(id))
	}
}

func (s *Server) modelObject(id string) openai.Model {
	maxLen := 0
	if b := s.backend.Load(); b != nil {
		maxLen = b.Engine.MaxLen()
	}
	return openai.Model{ID: id, Object: "model", Created: s.created, OwnedBy: "gptqtool", MaxModelLen: maxLen}
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	data, _ := page.ReadFile("page.html")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(data)
}

// tokenize: {"prompt": "...", "add_special_tokens": true} or {"messages":
// [...]} → {"tokens", "count", "max_model_len"}, as vLLM's.
func (s *Server) tokenize(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	b := s.ready(w)
	if b == nil {
		return
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(body, &probe); err != nil {
		badRequest(w, fmt.Errorf("the body is not a JSON object: %w", err))
		return
	}
	_, chat := probe["messages"]
	req, err := openai.Parse(body, chat)
	if err != nil {
		badRequest(w, err)
		return
	}
	addSpecial := true // (vLLM's default for a prompt)
	if v, ok := probe["add_special_tokens"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &addSpecial); err != nil {
			badRequest(w, &openai.FieldError{Field: "add_special_tokens", Msg: "must be a boolean"})
			return
		}
	}
	var ids []int
	switch {
	case chat:
		ids, err = s.chatIDs(b, req)
	case len(req.Prompts) != 1:
		err = &openai.FieldError{Field: "prompt", Msg: fmt.Sprintf("%d prompts: /tokenize takes one", len(req.Prompts))}
	default:
		var all [][]int
		if all, err = promptIDs(b, req.Prompts, addSpecial); err == nil {
			ids = all[0]
		}
	}
	if err != nil {
		badRequest(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": ids, "count": len(ids), "max_model_len": b.Engine.MaxLen()})
}

// tokenizerInfo is vLLM's /tokenizer_info, which lm-evaluation-harness
// reads to tokenize through the server (tokenizer_backend=remote): the
// special tokens' text, the chat template, the context.
func (s *Server) tokenizerInfo(w http.ResponseWriter, r *http.Request) {
	b := s.ready(w)
	if b == nil {
		return
	}
	t := b.Tokenizer
	info := map[string]any{"model_max_length": b.Engine.MaxLen(), "add_bos_token": t.AddBOS(), "add_eos_token": t.AddEOS(),
		"vocab_size": t.VocabSize()}
	for k, id := range map[string]int{"bos_token": t.BOS(), "eos_token": t.EOS(), "unk_token": t.UnknownID()} {
		if id >= 0 && id < t.VocabSize() {
			info[k] = t.Piece(id)
		}
	}
	if tpl := t.ChatTemplate(); tpl != "" {
		info["chat_template"] = tpl
	}
	writeJSON(w, http.StatusOK, info)
}

// detokenize: {"tokens": [...]} → {"prompt": "..."}.
func (s *Server) detokenize(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	b := s.ready(w)
	if b == nil {
		return
	}
	var req struct {
		Tokens *[]int `json:"tokens"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Tokens == nil {
		// A missing or null list is a mistake, an empty one the empty text.
		msg := "must be an array of token ids"
		var probe map[string]json.RawMessage
		if json.Unmarshal(body, &probe) == nil && probe["tokens"] == nil {
			msg = "is required"
		}
		badRequest(w, &openai.FieldError{Field: "tokens", Msg: msg})
		return
	}
	for i, id := range *req.Tokens {
		if id < 0 || id >= b.Tokenizer.VocabSize() {
			badRequest(w, &openai.FieldError{Field: fmt.Sprintf("tokens[%d]", i), Msg: fmt.Sprintf("token id %d outside the vocabulary of %d", id, b.Tokenizer.VocabSize())})
			return
		}
	}
	text, err := b.Tokenizer.Decode(*req.Tokens)
	if err != nil {
		badRequest(w, &openai.FieldError{Field: "tokens", Msg: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"prompt": text})
}

// chatIDs renders a chat request's messages under the template its
// condition selects, with the assistant prompt after them unless
// add_generation_prompt is false.
func (s *Server) chatIDs(b *Backend, req *openai.Request) ([]int, error) {
	ids, _, err := s.chatPrompt(b, req, false)
	return ids, err
}

// chatPrompt is chatIDs with, where text is set, the prompt's text (as
// the template renders it).
func (s *Server) chatPrompt(b *Backend, req *openai.Request, text bool) ([]int, string, error) {
	opts := b.Chat
	opts.AddGenerationPrompt = !req.NoGenerationPrompt
	vars, err := templateVars(req)
	if err != nil {
		return nil, "", err
	}
	opts.Vars = vars
	switch req.Condition {
	case "":
	case "GPT4 Correct":
		opts.Template = "openchat"
	case "Math Correct":
		opts.Template = "openchat-math"
	default:
		return nil, "", &openai.FieldError{Field: "condition", Msg: fmt.Sprintf("%q: want \"GPT4 Correct\" or \"Math Correct\"", req.Condition)}
	}
	msgs, from, tools := ChatMessages(req, b.Tokenizer, opts)
	opts.Tools = tools
	ids, err := b.Tokenizer.EncodeChat(msgs, opts)
	if err != nil {
		var me *tokenizer.MessageError
		if errors.As(err, &me) && me.Index < len(from) {
			if from[me.Index] < 0 {
				return nil, "", &openai.FieldError{Field: "tools", Msg: fmt.Sprintf("the tools' description: %v", me.Err)}
			}
			me.Index = from[me.Index]
		}
		return nil, "", chatError(err, req.Condition)
	}
	if !text {
		return ids, "", nil
	}
	prompt, err := b.Tokenizer.RenderChat(msgs, opts)
	if err != nil {
		return nil, "", chatError(err, req.Condition)
	}
	return ids, prompt, nil
}

// chatError words an EncodeChat error for the API: a message's is a
// FieldError naming messages[i] and its field; one about the server's chat
// setup says what is missing and what the client or operator can do, in
// the server's words, not the tokenizer package's (whose messages name it
// and address gptqtool's command line).
func chatError(err error, condition string) error {
	var me *tokenizer.MessageError
	switch {
	case errors.As(err, &me):
		return &openai.FieldError{Field: fmt.Sprintf("messages[%d].%s", me.Index, me.Field), Msg: me.Err.Error()}
	case errors.Is(err, tokenizer.ErrNoChatTemplate):
		return &openai.FieldError{Field: "messages", Msg: "this server has no chat template: the model's tokenizer_config.json has none and serve was not given --chat-template (openchat, openchat-math); send the text to /v1/completions, or restart serve with --chat-template"}
	case errors.Is(err, tokenizer.ErrUnknownTemplate):
		return &openai.FieldError{Field: "messages", Msg: "this server cannot render the chat_template of the model's tokenizer_config.json (it uses Jinja outside the subset gptqtool renders) and serve was not given --chat-template; send the text to /v1/completions, or restart serve with --chat-template"}
	case errors.Is(err, tokenizer.ErrTemplateRender):
		why := err.Error()
		if je := (*jinja.Error)(nil); errors.As(err, &je) {
			why = je.Where()
		}
		return &openai.FieldError{Field: "messages", Msg: fmt.Sprintf("the model's chat template failed on these messages (%s); send the text to /v1/completions, or restart serve with --chat-template", why)}
	case errors.Is(err, tokenizer.ErrTemplateToken):
		field, what := "messages", "this server's chat template"
		if condition != "" {
			field, what = "condition", fmt.Sprintf("condition %q", condition)
		}
		return &openai.FieldError{Field: field, Msg: fmt.Sprintf("%s renders openchat's <|end_of_turn|>, which this model's vocabulary lacks; send the text to /v1/completions", what)}
	}
	return &openai.FieldError{Field: "messages", Msg: strings.TrimPrefix(err.Error(), "tokenizer: ")}
}

// promptIDs encodes a text completion's prompts (as a Hugging Face
// tokenizer does, and vLLM: added tokens such as <|end_of_turn|> are
// recognised in the text, and with addSpecial BOS is put in front) or
// checks their token ids.
func promptIDs(b *Backend, prompts []openai.Prompt, addSpecial bool) ([][]int, error) {
	out := make([][]int, len(prompts))
	for i, p := range prompts {
		field := "prompt"
		if len(prompts) > 1 {
			field = fmt.Sprintf("prompt[%d]", i)
		}
		if p.IDs != nil {
			for j, id := range p.IDs {
				if id < 0 || id >= b.Tokenizer.VocabSize() {
					return nil, &openai.FieldError{Field: fmt.Sprintf("%s[%d]", field, j), Msg: fmt.Sprintf("token id %d outside the vocabulary of %d", id, b.Tokenizer.VocabSize())}
				}
			}
			out[i] = p.IDs
			continue
		}
		encode := b.Tokenizer.EncodeSpecial
		if addSpecial {
			encode = b.Tokenizer.EncodeSpecialPrompt
		}
		ids, err := encode(p.Text)
		if err != nil {
			msg := strings.TrimPrefix(err.Error(), "tokenizer: ")
			if errors.Is(err, tokenizer.ErrInvalidUTF8) {
				msg = "is not valid UTF-8"
			}
			return nil, &openai.FieldError{Field: field, Msg: msg}
		}
		out[i] = ids
	}
	return out, nil
}

func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Run serves on ln until ctx is done, then shuts down gracefully: /health
// turns 503, the listener closes, and the requests in flight get until
// grace to finish; after that the engine cancels what is left (a 503 with
// code "shutting_down", or a stream's error event of that code: generate
// says how), or EndGrace ends the grace sooner. It
// returns when every handler has returned.
func Run(ctx context.Context, ln net.Listener, s *Server, eng func() *engine.Engine, grace time.Duration) error {
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Draining: the listener stays open, /health and new generations
	// answer 503 (a load balancer takes the server out), the requests in
	// flight get the grace period; then the listener closes and the
	// handlers finish writing.
	s.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	go func() {
		select {
		case <-s.cut:
			cancel()
		case <-sctx.Done():
		}
	}()
	if e := eng(); e != nil {
		e.Close(sctx)
	}
	// The handlers have their last events; one still writing to a client
	// that stopped reading is cut after a bound.
	hctx, hcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer hcancel()
	err := hs.Shutdown(hctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = hs.Close()
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
