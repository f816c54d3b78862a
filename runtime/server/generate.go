package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/runtime/engine"
	"github.com/gptqtool/gptqtool/runtime/server/openai"
)

func (s *Server) chat(w http.ResponseWriter, r *http.Request)        { s.generate(w, r, true) }
func (s *Server) completions(w http.ResponseWriter, r *http.Request) { s.generate(w, r, false) }

// generate serves both completion routes: parse, encode, submit n engine
// requests, and answer at once or as a stream.
//
// A request ended from outside is never answered with a finish_reason
// OpenAI does not define (strict clients, whose finish_reason is an enum
// of stop, length, content_filter and tool_calls, fail to decode one): its
// --request-timeout running out before a token is a 503 with code
// "timeout" (streamed or not: the status waits for the first token); the
// timeout running out after tokens came is, not streamed, the same 503
// (a partial text in a 200 would read as a whole answer, and "length"
// would claim max_tokens was reached), and, streamed (the 200 and the
// text so far are sent), an error event with OpenAI's error object, code
// "timeout", then [DONE], with no finish_reason for the choices cut and
// no usage chunk, as vLLM ends a stream that fails (OpenAI's Python
// client raises an APIError on it). The shutdown's grace running out
// (Run) is answered the same way with code "shutting_down" (a 503 with
// Retry-After when not streamed). A generation the engine fails (a device
// error, a non-finite logit) is no 200 with finish_reason "error" either:
// a 500 with code "generation_failed" naming the cause, or, streamed once
// tokens came, an error event of that object before [DONE].
func (s *Server) generate(w http.ResponseWriter, r *http.Request, chat bool) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	req, err := openai.Parse(body, chat)
	if err != nil {
		badRequest(w, err)
		return
	}
	if !s.checkModel(w, req.Model) {
		return
	}
	b := s.ready(w)
	if b == nil {
		return
	}
	var prompts [][]int
	var think *thinking // how the reply is read for reasoning (nil: not)
	if chat {
		var ids []int
		var text string
		ids, text, err = s.chatPrompt(b, req, reasoningTemplate(b.Tokenizer) != nil)
		prompts = [][]int{ids}
		think = requestThinking(b, req, text)
	} else {
		prompts, err = promptIDs(b, req.Prompts, true)
	}
	if err != nil {
		badRequest(w, err)
		return
	}
	for i, p := range prompts {
		if len(p) == 0 {
			badRequest(w, &openai.FieldError{Field: fieldName(chat, len(prompts), i), Msg: "encodes to no tokens"})
			return
		}
	}
	maxLen := b.Engine.MaxLen()
	field := func(i int) string { return fieldName(chat, len(prompts), i) }
	if n, most := len(prompts)*req.N, b.Engine.MaxQueue(); n > most {
		// One prompt (a chat's messages too): n alone is too many.
		msg, param := fmt.Sprintf("n=%d: this server queues at most %d generations at once (--max-queue)", req.N, most), "n"
		if len(prompts) > 1 {
			msg, param = fmt.Sprintf("%d prompts with n=%d make %d generations; this server queues at most %d at once (--max-queue)", len(prompts), req.N, n, most), "prompt"
		}
		writeError(w, http.StatusBadRequest, openai.NewError(msg, "invalid_request_error", param, ""))
		return
	}
	promptTokens := 0
	for i, prompt := range prompts {
		promptTokens += len(prompt)
		if len(prompt) >= maxLen {
			writeError(w, http.StatusBadRequest, openai.NewError(fmt.Sprintf("%s has %d tokens; this model's context holds %d, and a prompt must leave a position to generate (at most %d tokens)", field(i), len(prompt), maxLen, maxLen-1),
				"invalid_request_error", field(i), "context_length_exceeded"))
			return
		}
		if req.MaxTokens != nil && *req.MaxTokens > maxLen-len(prompt) {
			writeError(w, http.StatusBadRequest, openai.NewError(fmt.Sprintf("%s %d with a prompt of %d tokens exceeds the context of %d", req.MaxTokensField, req.MaxTokensGiven, len(prompt), maxLen),
				"invalid_request_error", req.MaxTokensField, "context_length_exceeded"))
			return
		}
	}
	p := engine.Params{Temperature: b.Temperature, TopP: b.TopP, TopK: b.TopK, RepetitionPenalty: b.RepetitionPenalty,
		PresencePenalty: req.PresencePenalty, FrequencyPenalty: req.FrequencyPenalty, StopTokens: b.StopTokens,
		Logprobs: req.Logprobs, TopLogprobs: req.TopLogprobs,
		// echo with logprobs: the prompt's tokens' log-probabilities first.
		PromptLogprobs: !chat && req.Echo && req.Logprobs}
	if req.Temperature != nil {
		p.Temperature = *req.Temperature
	}
	if req.TopP != nil {
		p.TopP = *req.TopP
	}
	if req.TopK != nil {
		p.TopK = *req.TopK
	}
	if req.RepetitionPenalty != nil {
		p.RepetitionPenalty = *req.RepetitionPenalty
	}
	if req.IgnoreEOS {
		p.StopTokens = nil
	}
	p.StopTokens = append(slices.Clone(p.StopTokens), req.StopTokenIDs...)
	p.MinTokens = req.MinTokens
	vocab := b.Tokenizer.VocabSize()
	for _, id := range req.StopTokenIDs {
		if id >= vocab {
			badRequest(w, &openai.FieldError{Field: "stop_token_ids", Msg: fmt.Sprintf("token id %d outside the vocabulary of %d", id, vocab)})
			return
		}
	}
	if len(req.LogitBias) > 0 {
		p.LogitBias = make(map[int]float32, len(req.LogitBias))
		for id, v := range req.LogitBias {
			if id >= vocab {
				badRequest(w, &openai.FieldError{Field: "logit_bias", Msg: fmt.Sprintf("token id %d outside the vocabulary of %d", id, vocab)})
				return
			}
			p.LogitBias[id] = float32(v)
		}
	}
	if req.Schema != nil || req.Choice != nil || req.Regex != "" || req.CallsTools() {
		g, err := s.grammar(b, req, think)
		if err != nil {
			badRequest(w, err)
			return
		}
		p.Grammar = g.matcher
	}
	var native *toolFormat // the model's own tool-call format, where it calls tools in it
	if chat && req.CallsTools() {
		native = requestFormat(b, req)
	}
	ctx := r.Context()
	if s.o.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.o.RequestTimeout)
		defer cancel()
	}
	choices := make([]*choice, 0, len(prompts)*req.N)
	asked := 0 // the tokens the choices may generate, together
	defer func() {
		for _, c := range choices {
			c.cancel()
		}
	}()
	for pi, prompt := range prompts {
		for i := range req.N {
			cp := p
			cp.MaxTokens = maxLen - len(prompt)
			switch {
			case req.MaxTokens != nil:
				cp.MaxTokens = *req.MaxTokens
			case !chat:
				cp.MaxTokens = min(openai.DefaultCompletionMaxTokens, cp.MaxTokens)
			}
			if cp.MinTokens > cp.MaxTokens {
				msg := fmt.Sprintf("%d exceeds the %d tokens the request may generate", cp.MinTokens, cp.MaxTokens)
				if req.MaxTokens == nil && !chat {
					msg += fmt.Sprintf(" (max_tokens, %d by default in completions)", openai.DefaultCompletionMaxTokens)
				}
				badRequest(w, &openai.FieldError{Field: "min_tokens", Msg: msg})
				return
			}
			asked += cp.MaxTokens
			if req.Seed != nil {
				cp.Seed, cp.SeedSet = uint64(*req.Seed)+uint64(i), true
			}
			cctx, cancel := context.WithCancel(ctx)
			ch, err := b.Engine.Submit(cctx, engine.Request{Prompt: prompt, Params: cp})
			if err != nil {
				cancel()
				switch {
				case errors.Is(err, engine.ErrQueueFull):
					w.Header().Set("Retry-After", "1")
					writeError(w, http.StatusTooManyRequests, openai.NewError("the server is busy: the request queue is full; retry later", "rate_limit_error", "", "queue_full"))
				case errors.Is(err, engine.ErrClosed):
					writeError(w, http.StatusServiceUnavailable, openai.NewError("the server is shutting down", "server_error", "", "shutting_down"))
				case errors.Is(err, engine.ErrTooLong):
					writeError(w, http.StatusBadRequest, openai.NewError(err.Error(), "invalid_request_error", "max_tokens", "context_length_exceeded"))
				default:
					badRequest(w, err)
				}
				return
			}
			// (Stop strings cut a tool-calling reply of a native format
			// in its text before the calls, never in the calls, which the
			// format's trigger fences off; in the generic format, whose
			// reply is one JSON document, they are matched in its
			// response's decoded text (respStop), not in its JSON.)
			stop := stopper{stops: req.Stop}
			var respStop *stopper
			switch {
			case req.CallsTools() && native != nil:
				stop.fence, stop.fenceAtStart = native.trigger, native.atStart
			case req.CallsTools():
				stop.stops = nil
				if len(req.Stop) > 0 {
					respStop = &stopper{stops: req.Stop}
				}
			}
			c := &choice{index: pi*req.N + i, events: ch, cancel: cancel, tok: b.Tokenizer, dec: b.Tokenizer.NewDecoder(),
				stop: stop, respStop: respStop, minTokens: req.MinTokens, logprobs: req.Logprobs, top: req.TopLogprobs, chat: chat}
			if !chat {
				// A completion continues its prompt's text (a first
				// token's leading space is kept: prompt + text decodes
				// as the whole), where a chat answer starts a text.
				c.continuePrompt(prompt, req.Echo)
			} else if req.Choice != nil || req.Regex != "" {
				// A choice's or a regex's text is the answer byte for
				// byte, a leading space too.
				c.dec.Continue()
			}
			if req.CallsTools() {
				if native != nil {
					c.reply, c.native = newNativeScanner(native, req.Tools), native
				} else {
					c.reply = newReplyScanner(newCallID)
				}
			}
			if native != nil {
				c.keep = keepIDs(b.Tokenizer, native.markers)
			}
			if m := chatMarkers(b, req); chat && m != nil {
				// The block's markers, where special tokens (Mistral's
				// [THINK]), are the splitter's to read or, under
				// reasoning_format none, the content's as they came,
				// as a <think> block's text is.
				if c.keep == nil {
					c.keep = map[int]string{}
				}
				for id, t := range keepIDs(b.Tokenizer, []string{m.open, m.close}) {
					c.keep[id] = t
				}
			}
			if think != nil {
				c.think, c.split = think, newReasoningSplitter(think)
			}
			choices = append(choices, c)
		}
	}
	id, model := newID("chatcmpl-"), s.o.ModelName
	if !chat {
		id = newID("cmpl-")
	}
	if req.Model != "" {
		model = req.Model
	}
	ups := merge(choices)
	// cut says whether the request was ended from outside with its client
	// still there: its time ran out (--request-timeout) or the server's
	// shutdown grace did; unserved, read once the updates are all in (the
	// choices' counts are then final), whether that happened before any
	// choice generated a token: then the answer is an error the client can
	// retry, not a 200 with nothing in it.
	cut := func() bool {
		return r.Context().Err() == nil && (errors.Is(ctx.Err(), context.DeadlineExceeded) || s.drain.Load())
	}
	unserved := func() bool {
		if !cut() {
			return false
		}
		for _, c := range choices {
			if c.tokens > 0 || c.finish != "abort" {
				return false
			}
		}
		return true
	}
	// timedOut says whether the request's --request-timeout ran out with
	// its client still there; read with every update in, whether that cut
	// a choice (one that ended first is whole).
	timedOut := func() bool {
		return r.Context().Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded)
	}
	// cutMidway says whether the request's time or the server's grace ran
	// out (its client there) and cut a choice; read with every update in.
	cutMidway := func() bool {
		return cut() && slices.ContainsFunc(choices, func(c *choice) bool { return c.finish == "abort" })
	}
	// cutError is the error that answers a request cut midway: its
	// timeout's, or the shutdown's.
	cutError := func() openai.ErrorBody {
		generated := generatedOf(choices)
		if timedOut() {
			return openai.NewError(fmt.Sprintf("the request timed out after %s (--request-timeout) with %d of its up to %d tokens generated; ask for fewer (max_tokens), or retry when the server is less busy", s.o.RequestTimeout, generated, asked),
				"server_error", "", "timeout")
		}
		return openai.NewError(fmt.Sprintf("the server shut down before the request finished, with %d of its up to %d tokens generated; retry", generated, asked),
			"server_error", "", "shutting_down")
	}
	unservedError := func() {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			writeError(w, http.StatusServiceUnavailable, openai.NewError(fmt.Sprintf("the request timed out after %s (--request-timeout) before a token was generated: the server is busy; retry later", s.o.RequestTimeout),
				"server_error", "", "timeout"))
			return
		}
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, openai.NewError("the server shut down before the request generated a token; retry", "server_error", "", "shutting_down"))
	}
	// failed is the first choice the engine failed, or nil; failError is
	// the error that then answers the request.
	failed := func() *choice {
		for _, c := range choices {
			if c.finish == "error" {
				return c
			}
		}
		return nil
	}
	failError := func() openai.ErrorBody {
		generated := generatedOf(choices)
		return openai.NewError(fmt.Sprintf("the generation failed with %d of its up to %d tokens generated: %v", generated, asked, failed().err),
			"server_error", "", "generation_failed")
	}
	if req.Stream {
		s.stream(w, r, req, chat, id, model, promptTokens, choices, ups, streamChecks{cut, unserved, unservedError, cutError, func() bool { return failed() != nil }, failError})
		return
	}
	for u := range ups {
		u.c.text.WriteString(u.text)
		u.c.reasoning.WriteString(u.reasoning)
	}
	if r.Context().Err() != nil {
		return // the client is gone
	}
	switch {
	case failed() != nil:
		writeError(w, http.StatusInternalServerError, failError())
		return
	case unserved():
		unservedError()
		return
	case cut() && unscored(choices):
		// Code and text name what cut it: its timeout, or the shutdown.
		w.Header().Set("Retry-After", "1")
		if timedOut() {
			writeError(w, http.StatusServiceUnavailable, openai.NewError(fmt.Sprintf("the request timed out after %s (--request-timeout) before every prompt was scored; retry, with fewer prompts if it keeps timing out", s.o.RequestTimeout),
				"server_error", "", "timeout"))
			return
		}
		writeError(w, http.StatusServiceUnavailable, openai.NewError("the server shut down before every prompt of the request was scored; retry",
			"server_error", "", "shutting_down"))
		return
	case cutMidway():
		if !timedOut() {
			w.Header().Set("Retry-After", "1")
		}
		writeError(w, http.StatusServiceUnavailable, cutError())
		return
	}
	usage := usageOf(promptTokens, choices)
	if chat {
		resp := openai.ChatCompletion{ID: id, Object: "chat.completion", Created: now(), Model: model, Usage: usage}
		for _, c := range choices {
			text := c.text.String()
			ch := openai.ChatChoice{Index: c.index, Message: openai.ChatMessage{Role: "assistant", Content: &text}, FinishReason: c.finish}
			switch {
			case c.native != nil:
				ch.Message, ch.FinishReason = nativeMessage(c.native, req.Tools, text, c.finish, callsFinish(req))
			case c.respStop != nil && c.respStop.stopped:
				// The response's text up to its stop string.
				cut := c.response.String()
				ch.Message, ch.FinishReason = openai.ChatMessage{Role: "assistant", Content: &cut}, "stop"
			case c.reply != nil:
				ch.Message, ch.FinishReason = toolMessage(text, c.finish, callsFinish(req))
			}
			reasoningMessage(&ch.Message, c.think, c.split, c.reasoning.String())
			if req.Logprobs {
				ch.Logprobs = &openai.ChatLogprobs{Content: c.chatLP}
				if ch.Logprobs.Content == nil {
					ch.Logprobs.Content = []openai.LogprobContent{}
				}
			}
			resp.Choices = append(resp.Choices, ch)
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	resp := openai.TextCompletion{ID: id, Object: "text_completion", Created: now(), Model: model, Usage: &usage}
	for _, c := range choices {
		finish := c.finish
		tc := openai.TextChoice{Index: c.index, Text: c.text.String(), FinishReason: &finish}
		if req.Logprobs {
			lp := c.textLP
			tc.Logprobs = &lp
		}
		resp.Choices = append(resp.Choices, tc)
	}
	writeJSON(w, http.StatusOK, resp)
}

// fieldName names prompt i of n in errors: messages (chat), prompt, or
// prompt[i] in a batch.
func fieldName(chat bool, n, i int) string {
	switch {
	case chat:
		return "messages"
	case n > 1:
		return fmt.Sprintf("prompt[%d]", i)
	}
	return "prompt"
}

// choice is one of a request's n generations (for each prompt).
type choice struct {
	index  int
	events <-chan engine.Event
	cancel context.CancelFunc
	tok    *tokenizer.Tokenizer
	dec    *tokenizer.Decoder
	stop   stopper
	// minTokens (vLLM's min_tokens): the stop strings are checked only in
	// the text of the tokens past the first minTokens.
	minTokens int
	text      strings.Builder // the whole text (non-streamed responses)
	echo      string          // the prompt's text, with echo (streamed first)
	// decoded counts the characters (code points) of text decoded so far,
	// the echoed prompt's and what the stop strings hold back or cut
	// included: a token's text_offset is where its text starts in the
	// whole generation, in characters, as vLLM's (Python's len).
	decoded int
	chat    bool
	// With echo and logprobs, the prompt and where each of its tokens'
	// text starts in echoText: its text and log-probabilities come with
	// the engine's prompt event, ahead of the generated tokens.
	prompt      []int
	promptStart []int
	echoText    string
	scored      bool   // the prompt's log-probabilities came
	finish      string // "" while running
	err         error  // the engine's, when finish is "error"
	tokens      int
	top         int // top_logprobs asked
	logprobs    bool
	chatLP      []openai.LogprobContent
	textLP      openai.TextLogprobs
	stopSeen    bool // a stop string ended it; its engine request was cancelled
	// reply reads a tool-calling reply as it streams (nil without tools
	// to call): a replyScanner (the generic format) or, where native is
	// the model's format, a nativeScanner.
	reply  toolReader
	native *toolFormat
	// respStop, where set, matches the stop strings in a generic
	// tool-calling reply's response text (respond); response is that
	// text as cut.
	respStop *stopper
	response strings.Builder
	// keep are the special tokens of the model's tool-call format,
	// whose text the reply keeps (Mistral's [TOOL_CALLS]).
	keep map[int]string
	// think, where the reply is read for reasoning, says how; split
	// reads it; reasoning is its reasoning (non-streamed responses), and
	// reasoningTokens counts the tokens in its block.
	think           *thinking
	split           *reasoningSplitter
	reasoning       strings.Builder
	reasoningTokens int
}

// usageOf is the usage of a response: its prompts' tokens, its choices',
// and, where a choice reasoned, the reasoning's tokens among them.
func usageOf(promptTokens int, choices []*choice) openai.Usage {
	u := openai.Usage{PromptTokens: promptTokens}
	for _, c := range choices {
		u.CompletionTokens += c.tokens
		if c.split != nil && c.split.Seen() {
			if u.CompletionTokensDetails == nil {
				u.CompletionTokensDetails = &openai.CompletionTokensDetails{}
			}
			u.CompletionTokensDetails.ReasoningTokens += c.reasoningTokens
		}
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

// toolReader reads a tool-calling reply as it streams.
type toolReader interface {
	// Feed reads the next piece: the content and the call deltas to
	// send for it.
	Feed(piece string) (content string, deltas []openai.ToolCallDelta)
	// Finish is the content held back at the end.
	Finish() string
	// Done says whether the reply is complete; Form what it is then
	// ("tool_calls", or "response").
	Done() bool
	Form() string
}

// toolMessage is the message and finish reason of a whole tool-calling
// reply: its calls (content null, finish_reason "tool_calls", or "stop"
// for a call the request named, as OpenAI gives it: callsFinish) or its
// response's text; a reply that is not complete JSON (cut by max_tokens)
// is the raw text, as vLLM gives it, and finish as it is.
func toolMessage(text, finish, callsFinish string) (openai.ChatMessage, string) {
	m := openai.ChatMessage{Role: "assistant"}
	r, ok := parseReply(text)
	switch {
	case !ok:
		m.Content = &text
		return m, finish
	case r.calls == nil:
		m.Content = &r.response
		return m, "stop"
	}
	for _, f := range r.calls {
		m.ToolCalls = append(m.ToolCalls, openai.ToolCall{ID: newCallID(), Type: "function", Function: f})
	}
	return m, callsFinish
}

// callsFinish is the finish reason of a reply of tool calls: "stop" where
// the request named the tool to call, "tool_calls" otherwise (OpenAI's
// answers, which vLLM follows).
func callsFinish(req *openai.Request) string {
	if req.ToolChoice == openai.ToolChoiceFunction {
		return "stop"
	}
	return "tool_calls"
}

// continuePrompt sets c's decoder where the prompt's text ends, so that
// the completion's text continues it, and with echo makes c's text start
// with the prompt's: at once, or with logprobs in the update of the
// prompt's log-probabilities. The echoed text is the prompt decoded as the
// generated tokens are, so that text_offset gives each prompt token's
// place in it.
func (c *choice) continuePrompt(prompt []int, echo bool) {
	var b strings.Builder
	start := make([]int, len(prompt))
	chars := 0
	for i, id := range prompt {
		start[i] = chars
		piece, _ := c.dec.Add(id) // (ids checked)
		b.WriteString(piece)
		chars += utf8.RuneCountInString(piece)
	}
	b.WriteString(c.dec.Flush())
	if !echo {
		return
	}
	text := b.String()
	c.decoded = utf8.RuneCountInString(text)
	if c.logprobs {
		c.prompt, c.promptStart, c.echoText = prompt, start, text
		return
	}
	c.text.WriteString(text)
	c.echo = text
}

// promptUpdate turns the engine's prompt log-probabilities into the echo's
// update: the prompt's text and, for each of its tokens, its text, offset,
// log-probability given the ones before it (null for the first) and the
// most likely tokens there, itself included (OpenAI's and vLLM's
// completions give up to logprobs+1).
func (c *choice) promptUpdate(lps []engine.PromptToken) update {
	n := len(c.prompt)
	lp := &openai.TextLogprobs{Tokens: make([]string, n), TokenLogprobs: make([]*float64, n), TopLogprobs: make([]map[string]float64, n), TextOffset: c.promptStart}
	for i, id := range c.prompt {
		lp.Tokens[i] = validUTF8(pieceText(c.tok, id))
		if i == 0 || i-1 >= len(lps) {
			continue
		}
		pt := lps[i-1]
		v := finiteLogprob(pt.Logprob)
		lp.TokenLogprobs[i] = &v
		lp.TopLogprobs[i] = c.topMap(pt.Token, pt.Logprob, pt.Top)
	}
	c.textLP = *lp
	c.scored = true
	return update{c: c, text: c.echoText, textLP: lp}
}

// unscored says whether a choice whose prompt's log-probabilities were
// asked for (echo with logprobs: a scoring request, as lm-eval's) ended
// without them: the answer is then an error to retry, not a 200 whose
// logprobs are null.
func unscored(choices []*choice) bool {
	for _, c := range choices {
		if c.prompt != nil && !c.scored {
			return true
		}
	}
	return false
}

// topMap is a text completion's top_logprobs entry: the alternatives and
// the token itself. Tokens of the same text (byte tokens that are not a
// character alone all show as U+FFFD) keep the highest log-probability,
// so that the most likely is still the entry's maximum (lm-eval's greedy
// test).
func (c *choice) topMap(tok int, logprob float64, top []engine.TokenLogprob) map[string]float64 {
	m := map[string]float64{}
	put := func(id int, lp float64) {
		k, v := validUTF8(pieceText(c.tok, id)), finiteLogprob(lp)
		if old, ok := m[k]; !ok || v > old {
			m[k] = v
		}
	}
	put(tok, logprob)
	for _, alt := range top {
		put(alt.Token, alt.Logprob)
	}
	return m
}

// finiteLogprob clamps a log-probability JSON cannot carry (-Inf, NaN) to
// -9999, as vLLM does.
func finiteLogprob(v float64) float64 {
	if math.IsNaN(v) || v < -9999 {
		return -9999
	}
	return v
}

// update is what one engine event of choice c contributes to the response.
type update struct {
	c *choice
	// text is the update's text; where the reply is read for reasoning,
	// its content, and reasoning its reasoning.
	text      string
	reasoning string
	// fed: a generic tool-calling reply read here for its stop strings
	// (respond), content and deltas what the stream sends for it.
	fed     bool
	content string
	deltas  []openai.ToolCallDelta
	chatLP  []openai.LogprobContent
	textLP  *openai.TextLogprobs
	final   bool
}

// merge fans the choices' engine events into one channel of updates,
// turning tokens into text on the way (decoder, stop strings); it closes
// once every choice has finished.
func merge(choices []*choice) <-chan update {
	type ev struct {
		c  *choice
		e  engine.Event
		ok bool
	}
	raw := make(chan ev)
	for _, c := range choices {
		go func() {
			for e := range c.events {
				raw <- ev{c, e, true}
			}
			raw <- ev{c: c}
		}()
	}
	out := make(chan update)
	go func() {
		defer close(out)
		for left := len(choices); left > 0; {
			x := <-raw
			switch {
			case !x.ok:
				left--
				if x.c.finish == "" { // ended without a Done event: cancelled
					x.c.finish = "abort"
					if x.c.stopSeen {
						x.c.finish = "stop"
					}
					out <- update{c: x.c, final: true}
				}
			case x.c.finish != "":
				// After a stop string: drain what the engine still sends.
			default:
				out <- x.c.step(x.e)
			}
		}
	}()
	return out
}

// step turns one engine event of c into an update.
func (c *choice) step(e engine.Event) update {
	u := update{c: c}
	if e.Prompt != nil {
		if c.prompt == nil {
			return u // (not asked for by this choice: nothing to add)
		}
		return c.promptUpdate(e.Prompt)
	}
	if e.Done {
		// (The engine counts an end token it does not emit, as
		// OpenAI's usage does.)
		c.tokens = max(c.tokens, e.CompletionTokens)
		rest := c.dec.Flush()
		c.decoded += utf8.RuneCountInString(rest)
		if c.split != nil {
			// (Stop strings match the content, never the reasoning.)
			r, t := c.split.Feed(rest)
			r2, t2 := c.split.Finish()
			u.reasoning, rest = r+r2, t+t2
		}
		u.text = c.stop.push(rest, c.tokens > c.minTokens) + c.stop.flush()
		if c.respStop != nil {
			c.respond(&u, c.tokens > c.minTokens, true)
		}
		switch e.FinishReason {
		case "stop", "length":
			c.finish = e.FinishReason
		case "error":
			c.finish, c.err = "error", e.Err
		default: // cancelled: a timeout or the server's shutdown
			c.finish = "abort"
		}
		if (c.stop.stopped || c.respStop != nil && c.respStop.stopped) && (c.finish == "stop" || c.finish == "length") {
			// (A stop string in the last text, or in text held to the
			// end as a fence's possible start.)
			c.stopSeen = true
		}
		if c.stopSeen {
			c.finish = "stop"
		}
		u.final = true
		return u
	}
	c.tokens++
	// Special tokens (an end of turn run past with ignore_eos, BOS) are
	// left out of the text, as vLLM's skip_special_tokens does; their
	// log-probabilities are still given, the stop token's too.
	var piece string
	if marker, ok := c.keep[e.Token]; ok && !e.Stop {
		piece = c.dec.Flush() + marker
	} else if !e.Stop && !c.tok.IsSpecial(e.Token) {
		var err error
		if piece, err = c.dec.Add(e.Token); err != nil {
			piece = ""
		}
	}
	content := piece
	if c.split != nil {
		// (A token counts as reasoning where the text ends in the block
		// before or after it: the markers' tokens too. Stop strings
		// match the content only: reasoning.go says why.)
		before := c.split.InBlock()
		u.reasoning, content = c.split.Feed(piece)
		if before || c.split.InBlock() {
			c.reasoningTokens++
		}
	}
	u.text = c.stop.push(content, c.tokens > c.minTokens)
	if c.logprobs {
		tokText := pieceText(c.tok, e.Token)
		lc := openai.LogprobContent{Token: validUTF8(tokText), Logprob: e.Logprob, Bytes: bytesOf(tokText), TopLogprobs: []openai.TopLogprob{}}
		for _, alt := range e.Top {
			at := pieceText(c.tok, alt.Token)
			lc.TopLogprobs = append(lc.TopLogprobs, openai.TopLogprob{Token: validUTF8(at), Logprob: alt.Logprob, Bytes: bytesOf(at)})
		}
		if c.chat {
			u.chatLP = []openai.LogprobContent{lc}
			c.chatLP = append(c.chatLP, lc)
		} else {
			v := finiteLogprob(e.Logprob)
			top := c.topMap(e.Token, e.Logprob, e.Top)
			u.textLP = &openai.TextLogprobs{Tokens: []string{validUTF8(tokText)}, TokenLogprobs: []*float64{&v},
				TopLogprobs: []map[string]float64{top}, TextOffset: []int{c.decoded}}
			c.textLP.Tokens = append(c.textLP.Tokens, u.textLP.Tokens...)
			c.textLP.TokenLogprobs = append(c.textLP.TokenLogprobs, &v)
			c.textLP.TopLogprobs = append(c.textLP.TopLogprobs, top)
			c.textLP.TextOffset = append(c.textLP.TextOffset, c.decoded)
		}
	}
	c.decoded += utf8.RuneCountInString(piece)
	if c.respStop != nil {
		c.respond(&u, c.tokens > c.minTokens, false)
	}
	if c.stop.stopped || c.respStop != nil && c.respStop.stopped {
		c.stopSeen = true
		c.finish = "stop"
		c.cancel()
		u.final = true
	}
	return u
}

// respond reads u's text of a generic tool-calling reply: the reply
// scanner's content (the response's text) and deltas, the content cut at
// a stop string (final: the end, what was held flushed).
func (c *choice) respond(u *update, armed, final bool) {
	content, deltas := c.reply.Feed(u.text)
	content = c.respStop.push(content, armed)
	if final {
		content += c.respStop.flush()
	}
	u.fed, u.content, u.deltas = true, content, deltas
	c.response.WriteString(content)
}

// generatedOf is the tokens the choices generated, together.
func generatedOf(choices []*choice) int {
	n := 0
	for _, c := range choices {
		n += c.tokens
	}
	return n
}

// streamChecks are generate's tests of a request ended from outside (its
// deadline, the shutdown) for stream.
type streamChecks struct {
	cut, unserved func() bool
	unservedError func()
	// cutError is the event that ends a stream whose choice was cut
	// midway (its --request-timeout, the shutdown's grace).
	cutError func() openai.ErrorBody
	// failed: the engine failed a choice; failError is the error that
	// then answers the request (a 500 before the stream starts, else its
	// last event).
	failed    func() bool
	failError func() openai.ErrorBody
}

// stream writes the updates as server-sent events: OpenAI's chunk format,
// a role chunk first (chat), a finish chunk per choice, with
// stream_options.include_usage a last chunk with the usage and no
// choices, then [DONE]. A stream whose --request-timeout or the
// shutdown's grace cuts a choice gives that choice no finish chunk and
// ends with an error event ({"error": {..., "code": "timeout"}}, or
// "shutting_down") and [DONE] (generate's comment says why); so does one
// whose choice the engine failed (code "generation_failed").
func (s *Server) stream(w http.ResponseWriter, r *http.Request, req *openai.Request, chat bool, id, model string, promptLen int, choices []*choice, ups <-chan update,
	checks streamChecks) {
	// The status waits for the first update, so that a request whose time
	// or the server's grace ran out, or that the engine failed, before any
	// token is an error, not an empty stream: then every choice is ending
	// (they share the deadline, the shutdown ends them all, and a failed
	// step fails every sequence in it), and once all their updates are
	// in, their counts say whether any token came.
	var held []update
	if first, ok := <-ups; ok {
		held = append(held, first)
		if first.final && (checks.cut() || first.c.finish == "error") {
			for u := range ups {
				held = append(held, u)
			}
			generated := generatedOf(choices)
			switch {
			case r.Context().Err() != nil:
			case checks.failed() && generated == 0:
				writeError(w, http.StatusInternalServerError, checks.failError())
				return
			case checks.unserved():
				checks.unservedError()
				return
			}
		}
	}
	if r.Context().Err() != nil {
		for range ups {
		}
		return // the client left before the first token: nothing to write (logged as 499)
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	created := now()
	var usageNull json.RawMessage
	if req.StreamOptions.IncludeUsage {
		usageNull = json.RawMessage("null")
	}
	send := func(v any) {
		data, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", data)
		rc.Flush()
	}
	type chatChunk struct {
		openai.ChatChunk
		Usage json.RawMessage `json:"usage,omitempty"`
	}
	type textChunk struct {
		openai.TextCompletion
		Usage json.RawMessage `json:"usage,omitempty"`
	}
	chatOf := func(cs ...openai.ChunkChoice) chatChunk {
		return chatChunk{ChatChunk: openai.ChatChunk{ID: id, Object: "chat.completion.chunk", Created: created, Model: model, Choices: cs}, Usage: usageNull}
	}
	textOf := func(cs ...openai.TextChoice) textChunk {
		return textChunk{TextCompletion: openai.TextCompletion{ID: id, Object: "text_completion", Created: created, Model: model, Choices: cs}, Usage: usageNull}
	}
	if chat {
		for _, c := range choices {
			empty := ""
			send(chatOf(openai.ChunkChoice{Index: c.index, Delta: openai.Delta{Role: "assistant", Content: &empty}}))
		}
	}
	for _, c := range choices {
		if c.echo != "" { // (echo: the prompt first, as the whole response has it)
			send(textOf(openai.TextChoice{Index: c.index, Text: c.echo}))
		}
	}
	all := func(yield func(update) bool) {
		for _, u := range held {
			if !yield(u) {
				return
			}
		}
		for u := range ups {
			if !yield(u) {
				return
			}
		}
	}
	cutMidway, failed := false, false
	for u := range all {
		c := u.c
		// A token whose text is held back (a possible stop string's
		// start, part of a character) or cut by a stop string still has
		// its log-probabilities sent, as the whole response lists them.
		if u.reasoning != "" && !c.think.drop {
			cc := openai.ChunkChoice{Index: c.index}
			cc.Delta.SetReasoning(u.reasoning)
			if u.chatLP != nil && u.text == "" {
				// (The token's log-probabilities go with its text.)
				cc.Logprobs, u.chatLP = &openai.ChatLogprobs{Content: u.chatLP}, nil
			}
			send(chatOf(cc))
		}
		if c.reply != nil {
			// A tool-calling reply: the response's text, or the calls'
			// deltas, never the JSON around them.
			content, deltas := u.content, u.deltas
			if !u.fed {
				content, deltas = c.reply.Feed(u.text)
				if u.final {
					content += c.reply.Finish()
				}
			}
			var lp *openai.ChatLogprobs
			if u.chatLP != nil {
				lp = &openai.ChatLogprobs{Content: u.chatLP}
			}
			for _, d := range deltas {
				send(chatOf(openai.ChunkChoice{Index: c.index, Delta: openai.Delta{ToolCalls: []openai.ToolCallDelta{d}}, Logprobs: lp}))
				lp = nil
			}
			if content != "" || lp != nil {
				cc := openai.ChunkChoice{Index: c.index, Logprobs: lp}
				if content != "" {
					cc.Delta.Content = &content
				}
				send(chatOf(cc))
			}
		} else if u.text != "" || u.chatLP != nil || u.textLP != nil {
			if chat {
				text := u.text
				cc := openai.ChunkChoice{Index: c.index, Delta: openai.Delta{Content: &text}}
				if text == "" && c.split != nil && !c.split.InContent() {
					// (A token before the content, its text reasoning or
					// held: its log-probabilities alone.)
					cc.Delta.Content = nil
				}
				if u.chatLP != nil {
					cc.Logprobs = &openai.ChatLogprobs{Content: u.chatLP}
				}
				send(chatOf(cc))
			} else {
				send(textOf(openai.TextChoice{Index: c.index, Text: u.text, Logprobs: u.textLP}))
			}
		}
		if u.final && c.finish == "abort" && checks.cut() {
			cutMidway = true
			continue
		}
		if u.final && c.finish == "error" {
			failed = true
			continue
		}
		if u.final {
			finish := c.finish
			if c.reply != nil && c.reply.Done() {
				finish = "stop"
				if c.reply.Form() == "tool_calls" {
					finish = callsFinish(req)
				}
			}
			if chat {
				send(chatOf(openai.ChunkChoice{Index: c.index, Delta: openai.Delta{}, FinishReason: &finish}))
			} else {
				send(textOf(openai.TextChoice{Index: c.index, Text: "", FinishReason: &finish}))
			}
		}
	}
	if failed || cutMidway {
		e := checks.failError
		if !failed {
			e = checks.cutError
		}
		send(e())
		fmt.Fprint(w, "data: [DONE]\n\n")
		rc.Flush()
		return
	}
	if req.StreamOptions.IncludeUsage {
		usage := usageOf(promptLen, choices)
		raw, _ := json.Marshal(usage)
		if chat {
			ch := chatOf()
			ch.Choices, ch.Usage = []openai.ChunkChoice{}, raw
			send(ch)
		} else {
			tc := textOf()
			tc.Choices, tc.Usage = []openai.TextChoice{}, raw
			send(tc)
		}
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	rc.Flush()
}

func now() int64 { return time.Now().Unix() }

// pieceText is a token's text for log-probabilities: the bytes it stands
// for (Tokenizer.TokenBytes: a SentencePiece piece with "▁" as a space, a
// byte piece as that byte, a byte-level piece as the bytes its characters
// stand for, "Ġthe" as " the"), or an added or special token's own text.
func pieceText(t *tokenizer.Tokenizer, id int) string {
	if b := t.TokenBytes(id); b != nil {
		return string(b)
	}
	p := t.Piece(id)
	if t.ByteLevel() {
		return p
	}
	return strings.ReplaceAll(p, "▁", " ")
}

func bytesOf(s string) []int {
	out := make([]int, len(s))
	for i := range len(s) {
		out[i] = int(s[i])
	}
	return out
}

func validUTF8(s string) string { return strings.ToValidUTF8(s, "�") }
