// Package openai is the wire format of the OpenAI-compatible API that
// package runtime/server serves: request documents decoded field by field
// (a wrong type is an error naming the field; unknown fields are ignored,
// as OpenAI's and vLLM's servers ignore them), and the response and
// stream-chunk documents. Pure data and conversions: no HTTP, no engine.
package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
)

// FieldError is a request field with a wrong type or value.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return fmt.Sprintf("'%s': %s", e.Field, e.Msg) }

// Message is one chat message; Content is a string or a list of text parts
// (their texts joined by newlines).
// Role is system, user, assistant or tool: Parse takes OpenAI's developer
// as system and refuses the legacy function messages.
type Message struct {
	Role    string
	Content string
	// ToolCalls are the calls an assistant message made (its content
	// may then be null).
	ToolCalls []MessageToolCall
	// ToolCallID is the call a tool message answers.
	ToolCallID string
	// ReasoningContent is an assistant message's reasoning, as this
	// server (and vLLM, llama.cpp) returned it: its reasoning_content, or
	// reasoning (vLLM's name since 0.11; both, where a client sends both,
	// must be the same).
	ReasoningContent string
}

// MessageToolCall is one call of an assistant message's tool_calls.
type MessageToolCall struct {
	ID, Name string
	// Arguments is the arguments' JSON text as sent (a string in
	// OpenAI's format; an object sent instead is taken as its text).
	Arguments string
}

// StreamOptions is stream_options.
type StreamOptions struct {
	IncludeUsage bool
}

// Prompt is one prompt of a text completion: a string, or token ids.
type Prompt struct {
	Text string
	IDs  []int // nil for a string
}

// MaxPrompts bounds the prompts of one text completion request.
const MaxPrompts = 256

// MaxN bounds n, the choices for each prompt (OpenAI's bound); the server
// also bounds prompts × n by its queue.
const MaxN = 128

// DefaultCompletionMaxTokens is a text completion's max_tokens when the
// request has none (OpenAI's and vLLM's default for /v1/completions); a
// chat completion's default is the context left.
const DefaultCompletionMaxTokens = 16

// Request is a chat or text completion request: the fields both share,
// plus Messages (chat) or Prompts (completions).
type Request struct {
	Model    string
	Messages []Message // chat
	// Condition is openchat's field: "GPT4 Correct" (default) or "Math Correct".
	Condition string
	// NoGenerationPrompt (chat; vLLM's add_generation_prompt false): the
	// messages are rendered without the assistant prompt after them.
	NoGenerationPrompt bool
	// Prompts are a completion's prompts: "prompt" is a string, a list of
	// strings, a list of token ids or a list of such lists (a batch, as
	// lm-evaluation-harness sends; each prompt gets n choices, indexed
	// prompt·n + j).
	Prompts []Prompt
	// Echo (completions): the prompt's text comes first in each choice's
	// text, and with logprobs its tokens' log-probabilities first too.
	// max_tokens may then be 0: the prompt is echoed (and scored) only.
	Echo bool

	Temperature, TopP *float64
	TopK              *int
	MaxTokens         *int // max_tokens or max_completion_tokens
	// MaxTokensField names the field MaxTokens came from, MaxTokensGiven
	// its value as sent (MaxTokens is clamped to an int32).
	MaxTokensField                    string
	MaxTokensGiven                    int64
	Stop                              []string
	Seed                              *int64
	N                                 int
	PresencePenalty, FrequencyPenalty float64
	RepetitionPenalty                 *float64
	Logprobs                          bool
	TopLogprobs                       int
	// IgnoreEOS (vLLM's ignore_eos): the model's end-of-sequence tokens do
	// not end the generation, which then runs to max_tokens or a stop
	// string (fixed lengths for benchmarks and tests).
	IgnoreEOS bool
	// LogitBias (OpenAI's logit_bias: token id → bias in [-100, 100]) is
	// added to the logits before each draw.
	LogitBias map[int]float64
	// StopTokenIDs (vLLM's stop_token_ids) end the generation too, even
	// with IgnoreEOS; MinTokens (vLLM's min_tokens) keeps every stop token
	// from being drawn before that many tokens.
	StopTokenIDs  []int
	MinTokens     int
	Stream        bool
	StreamOptions StreamOptions
	// Schema, where non-nil, is the JSON Schema the output must match
	// (response_format: {"type": "json_schema", "json_schema": {"schema":
	// ...}}, or JSONObject for {"type": "json_object"}; vLLM's guided_json
	// and structured_outputs.json and .json_object).
	Schema json.RawMessage
	// Choice, where non-nil, is the texts one of which the output must be,
	// exactly (vLLM's guided_choice and structured_outputs.choice).
	Choice []string
	// Regex, where non-empty, is a regular expression the output must
	// match whole (vLLM's guided_regex and structured_outputs.regex).
	Regex string
	// SchemaField names the field Schema, Choice or Regex came from, for
	// errors (response_format.json_schema.schema, guided_json, ...).
	SchemaField string
	// Tools are the functions a chat may call (tools), ToolChoice what it
	// must do with them (tool_choice: ToolChoiceNone, ToolChoiceAuto,
	// ToolChoiceRequired, or ToolChoiceFunction for ToolName's), and
	// ParallelToolCalls whether a reply may call more than one
	// (parallel_tool_calls, default true).
	Tools             []Tool
	ToolChoice        string
	ToolName          string
	ParallelToolCalls bool
	// ChatTemplateKwargs (vLLM's chat_template_kwargs) is a JSON object of
	// extra variables for the chat template (Qwen3's enable_thinking);
	// nil where none. Its names are not the template's own inputs.
	ChatTemplateKwargs json.RawMessage
	// ReasoningFormat (llama.cpp's reasoning_format) is "none" (the
	// reply's reasoning stays in content), "deepseek" (it goes to
	// reasoning_content), or "" for the server's setting.
	ReasoningFormat string
	// NoReasoning (vLLM's include_reasoning false): the reasoning is
	// parsed but left out of the response.
	NoReasoning bool
}

// ReasoningFormats are the values of reasoning_format (llama.cpp's names).
var ReasoningFormats = []string{"none", "deepseek"}

// JSONObject is the schema of response_format {"type": "json_object"}
// (OpenAI's JSON mode): any JSON object.
var JSONObject = json.RawMessage(`{"type": "object"}`)

type fields map[string]json.RawMessage

func (f fields) has(k string) bool {
	v, ok := f[k]
	return ok && !bytes.Equal(bytes.TrimSpace(v), []byte("null"))
}

func (f fields) number(k string) (*float64, error) {
	if !f.has(k) {
		return nil, nil
	}
	var v float64
	if err := json.Unmarshal(f[k], &v); err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return nil, &FieldError{k, "must be a number"}
	}
	return &v, nil
}

// integer reads an integer in int64's range: written as one it is taken
// exactly (a seed past 2^53 is not rounded into its neighbours); written
// with a fraction or an exponent (5.0, 1e3) it must be a whole number
// that a float64 holds exactly.
func (f fields) integer(k string) (*int64, error) {
	if !f.has(k) {
		return nil, nil
	}
	var n json.Number
	if raw := bytes.TrimSpace(f[k]); raw[0] == '"' || json.Unmarshal(raw, &n) != nil { // (a json.Number takes "5" too)
		return nil, &FieldError{k, "must be an integer"}
	}
	if i, err := strconv.ParseInt(n.String(), 10, 64); err == nil {
		return &i, nil
	} else if errors.Is(err, strconv.ErrRange) {
		return nil, &FieldError{k, fmt.Sprintf("must be an integer between %d and %d", int64(math.MinInt64), int64(math.MaxInt64))}
	}
	v, err := n.Float64()
	if err != nil || v != math.Trunc(v) || math.Abs(v) > 1<<53 {
		return nil, &FieldError{k, "must be an integer"}
	}
	i := int64(v)
	return &i, nil
}

func (f fields) boolean(k string) (bool, error) {
	if !f.has(k) {
		return false, nil
	}
	var v bool
	if err := json.Unmarshal(f[k], &v); err != nil {
		return false, &FieldError{k, "must be a boolean"}
	}
	return v, nil
}

func (f fields) str(k string) (string, error) {
	if !f.has(k) {
		return "", nil
	}
	var v string
	if err := json.Unmarshal(f[k], &v); err != nil {
		return "", &FieldError{k, "must be a string"}
	}
	return v, nil
}

// Parse decodes a request body; chat selects the chat completions fields
// (messages) over the text ones (prompt). Ranges are checked here; limits
// that depend on the model (context length) are the server's.
func Parse(body []byte, chat bool) (*Request, error) {
	var f fields
	if err := json.Unmarshal(body, &f); err != nil {
		// A JSON value of another kind names that kind, not the Go type
		// it would not fit.
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field == "" {
			return nil, fmt.Errorf("the body is a JSON %s, want an object", te.Value)
		}
		return nil, fmt.Errorf("the body is not a JSON object: %w", err)
	}
	r := &Request{N: 1}
	var err error
	if err := unsupported(f, chat); err != nil {
		return nil, err
	}
	if r.Model, err = f.str("model"); err != nil {
		return nil, err
	}
	if chat {
		if r.Messages, err = parseMessages(f); err != nil {
			return nil, err
		}
		if r.Condition, err = f.str("condition"); err != nil {
			return nil, err
		}
		if err := parseTools(f, r); err != nil {
			return nil, err
		}
		// vLLM's chat extras this server does not do; false passes.
		for _, k := range []string{"continue_final_message", "echo"} {
			if v, err := f.boolean(k); err != nil || v {
				return nil, &FieldError{k, "is not supported in chat completions: only false"}
			}
		}
		if err := parseReasoning(f, r); err != nil {
			return nil, err
		}
		if f.has("add_generation_prompt") {
			add, err := f.boolean("add_generation_prompt")
			if err != nil {
				return nil, err
			}
			r.NoGenerationPrompt = !add
		}
	} else {
		if err := parsePrompt(f, r); err != nil {
			return nil, err
		}
		if r.Echo, err = f.boolean("echo"); err != nil {
			return nil, err
		}
	}
	for _, p := range []struct {
		k   string
		dst **float64
	}{{"temperature", &r.Temperature}, {"top_p", &r.TopP}, {"repetition_penalty", &r.RepetitionPenalty}} {
		if *p.dst, err = f.number(p.k); err != nil {
			return nil, err
		}
	}
	if r.Temperature != nil && (*r.Temperature < 0 || *r.Temperature > 2) {
		return nil, &FieldError{"temperature", "must be between 0 and 2"}
	}
	if r.TopP != nil && (*r.TopP <= 0 || *r.TopP > 1) {
		return nil, &FieldError{"top_p", "must be in (0, 1]"}
	}
	if r.RepetitionPenalty != nil && *r.RepetitionPenalty <= 0 {
		return nil, &FieldError{"repetition_penalty", "must be positive"}
	}
	for _, k := range []string{"presence_penalty", "frequency_penalty"} {
		v, err := f.number(k)
		if err != nil {
			return nil, err
		}
		if v != nil {
			if *v < -2 || *v > 2 {
				return nil, &FieldError{k, "must be between -2 and 2"}
			}
			if k == "presence_penalty" {
				r.PresencePenalty = *v
			} else {
				r.FrequencyPenalty = *v
			}
		}
	}
	if v, err := f.integer("top_k"); err != nil {
		return nil, err
	} else if v != nil {
		if *v < -1 {
			return nil, &FieldError{"top_k", "must be -1 (all) or more"}
		}
		k := int(max(*v, 0))
		r.TopK = &k
	}
	// Both are checked; max_completion_tokens (the newer name) wins.
	for _, k := range []string{"max_completion_tokens", "max_tokens"} {
		v, err := f.integer(k)
		if err != nil {
			return nil, err
		}
		if v == nil {
			continue
		}
		if *v < 1 && !(*v == 0 && r.Echo) {
			if chat {
				return nil, &FieldError{k, "must be at least 1"}
			}
			return nil, &FieldError{k, "must be at least 1 (0 only with echo)"}
		}
		if r.MaxTokens == nil {
			n := int(min(*v, math.MaxInt32))
			r.MaxTokens, r.MaxTokensField, r.MaxTokensGiven = &n, k, *v
		}
	}
	if r.IgnoreEOS, err = f.boolean("ignore_eos"); err != nil {
		return nil, err
	}
	if r.LogitBias, err = parseLogitBias(f); err != nil {
		return nil, err
	}
	if f.has("stop_token_ids") && !bytes.Equal(bytes.TrimSpace(f["stop_token_ids"]), []byte("[]")) { // ([] is vLLM's default)
		ids, ok := tokenIDs(f["stop_token_ids"])
		if !ok || len(ids) > MaxStopTokens || slices.Min(ids) < 0 {
			return nil, &FieldError{"stop_token_ids", fmt.Sprintf("must be a list of at most %d token ids", MaxStopTokens)}
		}
		r.StopTokenIDs = ids
	}
	if v, err := f.integer("min_tokens"); err != nil {
		return nil, err
	} else if v != nil {
		if *v < 0 || *v > math.MaxInt32 {
			return nil, &FieldError{"min_tokens", "must be 0 or more"}
		}
		r.MinTokens = int(*v)
	}
	if r.Seed, err = f.integer("seed"); err != nil {
		return nil, err
	}
	if v, err := f.integer("n"); err != nil {
		return nil, err
	} else if v != nil {
		if *v < 1 || *v > MaxN {
			return nil, &FieldError{"n", fmt.Sprintf("must be between 1 and %d", MaxN)}
		}
		r.N = int(*v)
	}
	if r.Stop, err = parseStop(f); err != nil {
		return nil, err
	}
	if err := parseLogprobs(f, r, chat); err != nil {
		return nil, err
	}
	if r.Stream, err = f.boolean("stream"); err != nil {
		return nil, err
	}
	if err := parseStructured(f, r); err != nil {
		return nil, err
	}
	if r.CallsTools() && r.SchemaField != "" {
		field, _, _ := strings.Cut(r.SchemaField, ".")
		return nil, &FieldError{field, fmt.Sprintf("cannot be combined with tools under tool_choice %q: both constrain the output (tool_choice \"none\" keeps the tools without calling them)", r.ToolChoice)}
	}
	if f.has("stream_options") {
		var so map[string]json.RawMessage
		if err := json.Unmarshal(f["stream_options"], &so); err != nil {
			return nil, &FieldError{"stream_options", "must be an object"}
		}
		if r.StreamOptions.IncludeUsage, err = fields(so).boolean("include_usage"); err != nil {
			return nil, &FieldError{"stream_options.include_usage", "must be a boolean"}
		}
		// As OpenAI and vLLM refuse it: options of a stream that is not
		// one would do nothing, silently.
		if !r.Stream {
			return nil, &FieldError{"stream_options", "should be set only when stream is true"}
		}
	}
	return r, nil
}

func parseMessages(f fields) ([]Message, error) {
	if !f.has("messages") {
		return nil, &FieldError{"messages", "is required"}
	}
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(f["messages"], &raw); err != nil {
		return nil, &FieldError{"messages", "must be an array of objects"}
	}
	if len(raw) == 0 {
		return nil, &FieldError{"messages", "must not be empty"}
	}
	out := make([]Message, len(raw))
	for i, m := range raw {
		mf := fields(m)
		at := func(k string) string { return fmt.Sprintf("messages[%d].%s", i, k) }
		role, err := mf.str("role")
		if err != nil || role == "" {
			return nil, &FieldError{at("role"), "must be a string"}
		}
		// (developer, OpenAI's newer name for system, is taken as system.)
		rendered, ok := tokenizer.ChatRole(role)
		switch {
		case ok:
		case role == "tool":
			rendered = role
		case role == "function":
			return nil, &FieldError{at("role"), `"function" (the legacy function calling API) is not supported: send a tool's result as a "tool" message with its tool_call_id`}
		default:
			return nil, &FieldError{at("role"), fmt.Sprintf("%q: want %s", role, Roles)}
		}
		out[i].Role = rendered
		if role == "tool" {
			if !mf.has("tool_call_id") {
				return nil, &FieldError{at("tool_call_id"), "is required in a tool message (the id of the call it answers)"}
			}
			if out[i].ToolCallID, err = mf.str("tool_call_id"); err != nil {
				return nil, &FieldError{at("tool_call_id"), "must be a string"}
			}
		}
		if mf.has("tool_calls") {
			if rendered != "assistant" {
				return nil, &FieldError{at("tool_calls"), "only assistant messages carry tool calls"}
			}
			if out[i].ToolCalls, err = parseMessageToolCalls(mf["tool_calls"], at("tool_calls")); err != nil {
				return nil, err
			}
		}
		for k, key := range []string{"reasoning_content", "reasoning"} {
			if !mf.has(key) {
				continue
			}
			if rendered != "assistant" {
				return nil, &FieldError{at(key), "only assistant messages carry reasoning"}
			}
			r, err := mf.str(key)
			if err != nil {
				return nil, &FieldError{at(key), "must be a string"}
			}
			if k == 1 && mf.has("reasoning_content") && r != out[i].ReasoningContent {
				return nil, &FieldError{at(key), "differs from reasoning_content (the same reasoning by its two names)"}
			}
			out[i].ReasoningContent = r
		}
		if !mf.has("content") {
			continue
		}
		var s string
		if err := json.Unmarshal(mf["content"], &s); err == nil {
			out[i].Content = s
			continue
		}
		var parts []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if err := json.Unmarshal(mf["content"], &parts); err != nil {
			return nil, &FieldError{at("content"), "must be a string or an array of text parts"}
		}
		// The parts' texts joined by newlines, as vLLM's and TensorRT-LLM's
		// servers join them for a template that takes a string.
		texts := make([]string, len(parts))
		for j, p := range parts {
			if p.Type != "text" {
				return nil, &FieldError{fmt.Sprintf("messages[%d].content[%d].type", i, j), fmt.Sprintf("%q is not supported (text only)", p.Type)}
			}
			texts[j] = p.Text
		}
		out[i].Content = strings.Join(texts, "\n")
	}
	return out, nil
}

// Roles names the chat roles Parse takes, for errors.
const Roles = "system, developer, user, assistant or tool"

func parsePrompt(f fields, r *Request) error {
	if !f.has("prompt") {
		return &FieldError{"prompt", "is required"}
	}
	raw := f["prompt"]
	var text string
	if err := json.Unmarshal(raw, &text); err == nil {
		r.Prompts = []Prompt{{Text: text}}
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return &FieldError{"prompt", "must be a string, a list of strings, a list of token ids, or a list of lists of token ids"}
	}
	if len(items) == 0 {
		return &FieldError{"prompt", "must not be empty"}
	}
	if ids, ok := tokenIDs(raw); ok {
		r.Prompts = []Prompt{{IDs: ids}}
		return nil
	}
	if len(items) > MaxPrompts {
		return &FieldError{"prompt", fmt.Sprintf("%d prompts: at most %d a request", len(items), MaxPrompts)}
	}
	for i, it := range items {
		var p Prompt
		if isNull(it) || json.Unmarshal(it, &p.Text) != nil {
			var ok bool
			if p.IDs, ok = tokenIDs(it); !ok {
				return &FieldError{fmt.Sprintf("prompt[%d]", i), "must be a string or a non-empty list of token ids"}
			}
		}
		r.Prompts = append(r.Prompts, p)
	}
	return nil
}

// MaxLogitBias and MaxStopTokens bound logit_bias's entries and
// stop_token_ids.
const (
	MaxLogitBias  = 1024
	MaxStopTokens = 64
)

// parseLogitBias reads logit_bias: an object from token ids (as strings,
// OpenAI's form) to biases in [-100, 100].
func parseLogitBias(f fields) (map[int]float64, error) {
	if !f.has("logit_bias") {
		return nil, nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(f["logit_bias"], &raw); err != nil {
		return nil, &FieldError{"logit_bias", "must be an object from token ids to numbers"}
	}
	if len(raw) > MaxLogitBias {
		return nil, &FieldError{"logit_bias", fmt.Sprintf("%d entries: at most %d", len(raw), MaxLogitBias)}
	}
	out := make(map[int]float64, len(raw))
	for k := range raw {
		id, err := strconv.Atoi(k)
		if err != nil || id < 0 {
			return nil, &FieldError{"logit_bias", fmt.Sprintf("key %q is not a token id", k)}
		}
		v, err := fields(raw).number(k)
		if err != nil || v == nil || *v < -100 || *v > 100 {
			return nil, &FieldError{"logit_bias", fmt.Sprintf("the bias of token %d must be a number between -100 and 100", id)}
		}
		out[id] = *v
	}
	return out, nil
}

// unsupported refuses the fields that ask for what this server does not
// do, rather than ignoring them as unknown: a suffix or one of vLLM's
// sampling extras (min_p, beam search, the stop string in the output, ...)
// would otherwise get an answer that silently lacks them, and so would
// tools in a text completion (chat's are parseTools'). Their neutral
// values (what clients send by default: a null or empty suffix, best_of 1,
// vLLM's defaults) pass.
func unsupported(f fields, chat bool) error {
	if !chat {
		for _, k := range []string{"tools", "functions"} {
			var list []json.RawMessage
			if f.has(k) && (json.Unmarshal(f[k], &list) != nil || len(list) > 0) {
				return &FieldError{k, "tool calling is supported in chat completions only (/v1/chat/completions)"}
			}
		}
		for _, k := range []string{"tool_choice", "function_call"} {
			var s string
			if f.has(k) && (json.Unmarshal(f[k], &s) != nil || s != "none" && s != "auto") {
				return &FieldError{k, "tool calling is supported in chat completions only (/v1/chat/completions)"}
			}
		}
	}
	if v, err := f.str("suffix"); err != nil || v != "" {
		return &FieldError{"suffix", "is not supported (no insertion)"}
	}
	if v, err := f.integer("best_of"); err != nil || v != nil && *v != 1 {
		return &FieldError{"best_of", "is not supported: only 1 (use n for several choices)"}
	}
	if f.has("guided_grammar") {
		return &FieldError{"guided_grammar", "guided decoding by grammars is not supported (guided_json, guided_choice, guided_regex and response_format are)"}
	}
	// vLLM's sampling extras this server does not do; their defaults
	// (min_p 0, skip_special_tokens true, the others false, null or
	// empty) pass.
	if v, err := f.number("min_p"); err != nil || v != nil && *v != 0 {
		return &FieldError{"min_p", "is not supported (use top_p or top_k): only 0"}
	}
	for _, b := range []struct {
		k, msg string
		def    bool
	}{
		{"include_stop_str_in_output", "is not supported: stop strings are never in the output", false},
		{"skip_special_tokens", "is not supported: special tokens are always left out of the text", true},
		{"use_beam_search", "is not supported (no beam search)", false},
	} {
		if v, err := f.boolean(b.k); err != nil || f.has(b.k) && v != b.def {
			return &FieldError{b.k, fmt.Sprintf("%s: only %v", b.msg, b.def)}
		}
	}
	if f.has("prompt_logprobs") {
		return &FieldError{"prompt_logprobs", "is not supported: use echo with logprobs (completions)"}
	}
	for _, k := range []string{"allowed_token_ids", "bad_words"} {
		var list []json.RawMessage
		if f.has(k) && (json.Unmarshal(f[k], &list) != nil || len(list) > 0) {
			return &FieldError{k, "is not supported: only an empty list (logit_bias can ban tokens)"}
		}
	}
	if f.has("truncate_prompt_tokens") {
		return &FieldError{"truncate_prompt_tokens", "is not supported: prompts are never truncated (a prompt longer than the context is a 400)"}
	}
	return nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// tokenIDs decodes a non-empty list of integers, null not among them.
func tokenIDs(raw json.RawMessage) ([]int, bool) {
	var ptrs []*int
	if err := json.Unmarshal(raw, &ptrs); err != nil || len(ptrs) == 0 {
		return nil, false
	}
	ids := make([]int, len(ptrs))
	for i, p := range ptrs {
		if p == nil {
			return nil, false
		}
		ids[i] = *p
	}
	return ids, true
}

func parseStop(f fields) ([]string, error) {
	if !f.has("stop") {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(f["stop"], &one); err == nil {
		if one == "" {
			return nil, nil
		}
		return []string{one}, nil
	}
	var list []string
	if err := json.Unmarshal(f["stop"], &list); err != nil {
		return nil, &FieldError{"stop", "must be a string or an array of strings"}
	}
	if len(list) > 8 {
		return nil, &FieldError{"stop", "must hold at most 8 strings"}
	}
	var out []string
	for _, s := range list {
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// parseLogprobs reads logprobs: a boolean with top_logprobs in chat, an
// integer (the alternatives) in text completions.
func parseLogprobs(f fields, r *Request, chat bool) error {
	if chat {
		var err error
		if r.Logprobs, err = f.boolean("logprobs"); err != nil {
			return err
		}
		v, err := f.integer("top_logprobs")
		if err != nil {
			return err
		}
		if v != nil {
			if *v < 0 || *v > 20 {
				return &FieldError{"top_logprobs", "must be between 0 and 20"}
			}
			if !r.Logprobs && *v > 0 {
				return &FieldError{"top_logprobs", "needs logprobs: true"}
			}
			r.TopLogprobs = int(*v)
		}
		return nil
	}
	v, err := f.integer("logprobs")
	if err != nil {
		return err
	}
	if v != nil {
		if *v < 0 || *v > 5 {
			return &FieldError{"logprobs", "must be between 0 and 5"}
		}
		r.Logprobs, r.TopLogprobs = true, int(*v)
	}
	return nil
}

// Usage is the token accounting of a response.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
	// CompletionTokensDetails, where the reply had a reasoning block,
	// counts its tokens (which CompletionTokens includes), as OpenAI's.
	CompletionTokensDetails *CompletionTokensDetails `json:"completion_tokens_details,omitempty"`
}

// CompletionTokensDetails is usage's completion_tokens_details.
type CompletionTokensDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

// TopLogprob is one alternative of a chat logprobs entry.
type TopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// LogprobContent is one token of chat logprobs.
type LogprobContent struct {
	Token       string       `json:"token"`
	Logprob     float64      `json:"logprob"`
	Bytes       []int        `json:"bytes"`
	TopLogprobs []TopLogprob `json:"top_logprobs"`
}

// ChatLogprobs is a choice's logprobs in chat completions.
type ChatLogprobs struct {
	Content []LogprobContent `json:"content"`
}

// TextLogprobs is a choice's logprobs in text completions.
type TextLogprobs struct {
	Tokens []string `json:"tokens"`
	// TokenLogprobs is null for an echoed prompt's first token.
	TokenLogprobs []*float64           `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// ChatMessage is the assistant message of a chat choice: its text, or
// (Content nil, null on the wire) the tools it calls.
type ChatMessage struct {
	Role    string  `json:"role"`
	Content *string `json:"content"`
	// ReasoningContent is a reasoning model's reasoning (its <think>
	// block), apart from Content (llama.cpp's field, and vLLM's before
	// 0.11); Reasoning is the same text under vLLM's present name (both
	// set by SetReasoning).
	ReasoningContent *string    `json:"reasoning_content,omitempty"`
	Reasoning        *string    `json:"reasoning,omitempty"`
	ToolCalls        []ToolCall `json:"tool_calls,omitempty"`
}

// ToolCall is one call of an assistant message's tool_calls.
type ToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function FunctionCall `json:"function"`
}

// FunctionCall is the function a ToolCall calls; Arguments is a JSON
// object's text.
type FunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// ToolCallDelta is a streamed piece of tool call Index: its first carries
// ID, Type and the name, the others pieces of the arguments' text, which
// concatenate to FunctionCall.Arguments.
type ToolCallDelta struct {
	Index    int           `json:"index"`
	ID       string        `json:"id,omitempty"`
	Type     string        `json:"type,omitempty"`
	Function FunctionDelta `json:"function"`
}

// FunctionDelta is the function part of a ToolCallDelta.
type FunctionDelta struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// ChatChoice is one choice of a chat completion.
type ChatChoice struct {
	Index        int           `json:"index"`
	Message      ChatMessage   `json:"message"`
	Logprobs     *ChatLogprobs `json:"logprobs"`
	FinishReason string        `json:"finish_reason"`
}

// ChatCompletion is the response of POST /v1/chat/completions.
type ChatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []ChatChoice `json:"choices"`
	Usage   Usage        `json:"usage"`
}

// Delta is the change a chat chunk carries.
type Delta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
	// ReasoningContent and Reasoning are a piece of the reasoning, under
	// both names (as ChatMessage's).
	ReasoningContent *string         `json:"reasoning_content,omitempty"`
	Reasoning        *string         `json:"reasoning,omitempty"`
	ToolCalls        []ToolCallDelta `json:"tool_calls,omitempty"`
}

// SetReasoning sets m's reasoning, under both its names.
func (m *ChatMessage) SetReasoning(r string) { m.ReasoningContent, m.Reasoning = &r, &r }

// SetReasoning sets d's piece of reasoning, under both its names.
func (d *Delta) SetReasoning(r string) { d.ReasoningContent, d.Reasoning = &r, &r }

// ChunkChoice is one choice of a chat stream chunk.
type ChunkChoice struct {
	Index        int           `json:"index"`
	Delta        Delta         `json:"delta"`
	Logprobs     *ChatLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
}

// ChatChunk is one event of a streamed chat completion. Usage is present
// (null until the last chunk) only when stream_options.include_usage.
type ChatChunk struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"`
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Choices []ChunkChoice `json:"choices"`
	Usage   *Usage        `json:"usage,omitempty"`
}

// TextChoice is one choice of a text completion (or of a stream chunk).
type TextChoice struct {
	Index        int           `json:"index"`
	Text         string        `json:"text"`
	Logprobs     *TextLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
}

// TextCompletion is the response of POST /v1/completions and its chunks.
type TextCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []TextChoice `json:"choices"`
	Usage   *Usage       `json:"usage,omitempty"`
}

// Model is an entry of GET /v1/models.
type Model struct {
	ID          string `json:"id"`
	Object      string `json:"object"`
	Created     int64  `json:"created"`
	OwnedBy     string `json:"owned_by"`
	MaxModelLen int    `json:"max_model_len"`
}

// ModelList is the response of GET /v1/models.
type ModelList struct {
	Object string  `json:"object"`
	Data   []Model `json:"data"`
}

// ErrorBody is every error response: {"error": {...}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is OpenAI's error object.
type ErrorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// NewError builds an error body; param and code may be "".
func NewError(msg, typ, param, code string) ErrorBody {
	e := ErrorBody{Error: ErrorDetail{Message: msg, Type: typ}}
	if param != "" {
		e.Error.Param = &param
	}
	if code != "" {
		e.Error.Code = &code
	}
	return e
}

// parseResponseFormat reads response_format: nil for text (or none), the
// schema of json_schema (true, any value, where it has none), JSONObject
// for json_object. Other types (regex, grammar, ...) are refused.
func parseResponseFormat(f fields) (json.RawMessage, error) {
	if !f.has("response_format") {
		return nil, nil
	}
	var rf map[string]json.RawMessage
	if err := json.Unmarshal(f["response_format"], &rf); err != nil {
		return nil, &FieldError{"response_format", "must be an object"}
	}
	typ, err := fields(rf).str("type")
	if err != nil {
		return nil, &FieldError{"response_format.type", "must be a string"}
	}
	switch typ {
	case "text":
		return nil, nil
	case "json_object":
		return JSONObject, nil
	case "json_schema":
		var js map[string]json.RawMessage
		if !fields(rf).has("json_schema") || json.Unmarshal(rf["json_schema"], &js) != nil {
			return nil, &FieldError{"response_format.json_schema", "must be an object with the schema"}
		}
		if _, err := fields(js).str("name"); err != nil {
			return nil, &FieldError{"response_format.json_schema.name", "must be a string"}
		}
		if _, err := fields(js).boolean("strict"); err != nil {
			return nil, &FieldError{"response_format.json_schema.strict", "must be a boolean"}
		}
		if !fields(js).has("schema") {
			return json.RawMessage("true"), nil
		}
		return js["schema"], nil
	case "":
		return nil, &FieldError{"response_format.type", "is missing: text, json_object or json_schema"}
	}
	return nil, &FieldError{"response_format.type", fmt.Sprintf("%q is not supported: text, json_object or json_schema", typ)}
}

// parseStructured reads what constrains the output: response_format, or
// vLLM's guided_json / guided_choice / guided_regex, or its
// structured_outputs ({"json": ...}, {"choice": [...]}, {"regex": "..."}
// or {"json_object": true}); more than one is a 400.
func parseStructured(f fields, r *Request) error {
	var given []string
	schema, err := parseResponseFormat(f)
	if err != nil {
		return err
	}
	if schema != nil {
		given = append(given, "response_format")
		r.Schema, r.SchemaField = schema, "response_format.json_schema.schema"
	}
	if f.has("guided_json") {
		given = append(given, "guided_json")
		r.SchemaField = "guided_json"
		if r.Schema, err = schemaValue(f["guided_json"], "guided_json"); err != nil {
			return err
		}
	}
	if f.has("guided_choice") {
		given = append(given, "guided_choice")
		r.SchemaField = "guided_choice"
		if r.Choice, err = choices(f["guided_choice"], "guided_choice"); err != nil {
			return err
		}
	}
	if f.has("guided_regex") {
		given = append(given, "guided_regex")
		r.SchemaField = "guided_regex"
		if r.Regex, err = regex(f["guided_regex"], "guided_regex"); err != nil {
			return err
		}
	}
	if f.has("structured_outputs") {
		given = append(given, "structured_outputs")
		var so map[string]json.RawMessage
		if err := json.Unmarshal(f["structured_outputs"], &so); err != nil {
			return &FieldError{"structured_outputs", "must be an object"}
		}
		sf := fields(so)
		var kinds []string
		for _, k := range []string{"json", "choice", "json_object", "regex", "grammar", "structural_tag"} {
			if sf.has(k) {
				kinds = append(kinds, k)
			}
		}
		if len(kinds) != 1 {
			return &FieldError{"structured_outputs", "must give exactly one of json, choice, regex and json_object"}
		}
		r.SchemaField = "structured_outputs." + kinds[0]
		switch kinds[0] {
		case "json":
			if r.Schema, err = schemaValue(so["json"], "structured_outputs.json"); err != nil {
				return err
			}
		case "choice":
			if r.Choice, err = choices(so["choice"], "structured_outputs.choice"); err != nil {
				return err
			}
		case "regex":
			if r.Regex, err = regex(so["regex"], "structured_outputs.regex"); err != nil {
				return err
			}
		case "json_object":
			if on, err := sf.boolean("json_object"); err != nil || !on {
				return &FieldError{"structured_outputs.json_object", "must be true"}
			}
			r.Schema = JSONObject
		default:
			return &FieldError{"structured_outputs." + kinds[0], "is not supported (json, choice, regex and json_object are)"}
		}
	}
	if len(given) > 1 {
		return &FieldError{given[1], fmt.Sprintf("only one of %s may constrain the output", strings.Join(given, ", "))}
	}
	return nil
}

// schemaValue is a JSON Schema given as an object (or a boolean) or as a
// string holding one (vLLM takes both).
func schemaValue(raw json.RawMessage, field string) (json.RawMessage, error) {
	var text string
	if json.Unmarshal(raw, &text) == nil {
		raw = json.RawMessage(text)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, &FieldError{field, "must be a JSON Schema (an object, or a string holding one)"}
	}
	switch v.(type) {
	case map[string]any, bool:
		return raw, nil
	}
	return nil, &FieldError{field, "must be a JSON Schema (an object, or a string holding one)"}
}

// regex is a non-empty string (the pattern is compiled with the grammar).
func regex(raw json.RawMessage, field string) (string, error) {
	var p string
	if err := json.Unmarshal(raw, &p); err != nil || p == "" {
		return "", &FieldError{field, "must be a non-empty string (a regular expression)"}
	}
	return p, nil
}

// choices is a non-empty list of non-empty strings.
func choices(raw json.RawMessage, field string) ([]string, error) {
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil || len(list) == 0 || slices.Contains(list, "") {
		return nil, &FieldError{field, "must be a non-empty list of non-empty strings"}
	}
	return list, nil
}

// parseReasoning reads a chat's chat_template_kwargs, reasoning_format and
// include_reasoning.
func parseReasoning(f fields, r *Request) error {
	if f.has("chat_template_kwargs") {
		var kw map[string]json.RawMessage
		if err := json.Unmarshal(f["chat_template_kwargs"], &kw); err != nil {
			return &FieldError{"chat_template_kwargs", "must be an object"}
		}
		for k := range kw {
			if slices.Contains(tokenizer.TemplateInputs, k) {
				return &FieldError{"chat_template_kwargs." + k, fmt.Sprintf("is one of the chat template's own inputs (%s), which the request sets", strings.Join(tokenizer.TemplateInputs, ", "))}
			}
		}
		r.ChatTemplateKwargs = bytes.TrimSpace(f["chat_template_kwargs"])
	}
	var err error
	if r.ReasoningFormat, err = f.str("reasoning_format"); err != nil {
		return err
	}
	if r.ReasoningFormat != "" && !slices.Contains(ReasoningFormats, r.ReasoningFormat) {
		return &FieldError{"reasoning_format", fmt.Sprintf("%q: want %s", r.ReasoningFormat, strings.Join(ReasoningFormats, " or "))}
	}
	if f.has("include_reasoning") {
		include, err := f.boolean("include_reasoning")
		if err != nil {
			return err
		}
		r.NoReasoning = !include
	}
	return nil
}
