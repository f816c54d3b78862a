package tokenizer

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gptqtool/gptqtool/formats/jinja"
)

// ErrUnknownTemplate is returned (wrapped) when ChatOptions.Template names
// no known template, or when tokenizer_config.json's chat_template uses
// Jinja outside the subset package jinja renders.
var ErrUnknownTemplate = errors.New("chat template not recognised")

// ErrTemplateRender is returned (wrapped, with the jinja error) when a
// chat template that parsed fails on the messages it is given: an index or
// attribute the messages lack, a value of the wrong type, a render limit.
// A template's own raise_exception wraps jinja.ErrRaised instead.
var ErrTemplateRender = errors.New("chat template failed on these messages")

// ErrNoChatTemplate is returned (wrapped) when ChatOptions names no
// template and tokenizer_config.json has no chat_template.
var ErrNoChatTemplate = errors.New("tokenizer_config.json has no chat_template")

// ErrTemplateToken is returned (wrapped) when the vocabulary lacks a token
// the chat template writes (openchat's <|end_of_turn|>).
var ErrTemplateToken = errors.New("is not in the vocabulary")

// MessageError is a chat message the template cannot render: Field is
// "role" or "content" of messages[Index], Err what is wrong with it.
type MessageError struct {
	Index int
	Field string
	Err   error
}

func (e *MessageError) Error() string {
	return fmt.Sprintf("tokenizer: messages[%d].%s: %v", e.Index, e.Field, e.Err)
}

func (e *MessageError) Unwrap() error { return e.Err }

// ChatRole returns the role a chat message of role is rendered as, the
// one mapping of roles the CLI and the server share: system, user and
// assistant as they are, and OpenAI's developer role (its newer name for
// system: its reasoning models take developer messages where others take
// system ones) as system. ok is false for any other role.
func ChatRole(role string) (rendered string, ok bool) {
	switch role {
	case "system", "user", "assistant":
		return role, true
	case "developer":
		return "system", true
	}
	return "", false
}

// ChatRoles names the roles ChatRole takes, for errors.
const ChatRoles = "system, developer, user or assistant"

// Message is one chat turn.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	// ToolCalls are an assistant message's calls, ToolCallID and Name
	// a "tool" message's call and function: a chat_template (not the
	// openchat ones) renders them in the model's own tool-call format.
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
	Name       string     `json:"name,omitempty"`
	// ReasoningContent is an assistant message's reasoning (a reasoning
	// model's <think> block, as servers return it apart): a template
	// that reads message.reasoning_content gets it; where it is empty
	// the message has no such key.
	ReasoningContent string `json:"reasoning_content,omitempty"`
}

// ToolCall is one call of an assistant message, as OpenAI's API has it.
type ToolCall struct {
	ID, Name string
	// Arguments is the arguments' JSON text; a template gets the object
	// it decodes to (as transformers' callers pass it), or the text as a
	// string where it is not JSON.
	Arguments string
}

// ChatOptions selects and parameterises a chat template.
type ChatOptions struct {
	// Template is "" (recognise tokenizer_config.json's chat_template),
	// "openchat" (GPT4 Correct) or "openchat-math" (Math Correct).
	Template string
	// AddGenerationPrompt appends the assistant prefix for the reply.
	AddGenerationPrompt bool
	// Tools, where not empty, is a chat_template's tools: the JSON text
	// of OpenAI's tools list ([{"type": "function", "function": {"name",
	// "description", "parameters"}}, ...]).
	Tools []byte
	// SystemMessages keeps system messages under the openchat templates,
	// rendered as they render any role ("GPT4 Correct System:
	// …<|end_of_turn|>"); by default they are dropped, as openchat's own
	// server does. Any other chat_template gets every message and decides
	// itself, as transformers' apply_chat_template does.
	SystemMessages bool
	// Vars are extra variables of a chat_template (not the openchat
	// ones), as transformers' apply_chat_template passes its keyword
	// arguments (vLLM's chat_template_kwargs: Qwen3's enable_thinking);
	// values as jinja.FromJSON gives them. They do not replace the
	// template's own inputs (messages, tools, add_generation_prompt,
	// bos_token, eos_token, documents): a caller refuses those names.
	Vars map[string]any
}

// TemplateInputs are the variables a chat_template gets from the
// messages and the options; ChatOptions.Vars must not name them.
var TemplateInputs = []string{"messages", "tools", "documents", "add_generation_prompt", "bos_token", "eos_token"}

// openchatTemplate is openchat-3.5's chat_template (tokenizer_config.json).
const openchatTemplate = `{{ bos_token }}{% for message in messages %}{{ 'GPT4 Correct ' + message['role'].title() + ': ' + message['content'] + '<|end_of_turn|>'}}{% endfor %}{% if add_generation_prompt %}{{ 'GPT4 Correct Assistant:' }}{% endif %}`

// openchatEOT ends every openchat turn.
const openchatEOT = "<|end_of_turn|>"

// TemplateNames are the chat templates ChatOptions.Template may name.
var TemplateNames = []string{"openchat", "openchat-math"}

// knownTemplates maps chat_template texts (whitespace removed) to names.
var knownTemplates = map[string]string{
	squeeze(openchatTemplate): "openchat",
	squeeze(strings.ReplaceAll(openchatTemplate, "GPT4 Correct", "Math Correct")): "openchat-math",
}

func squeeze(s string) string {
	return strings.Join(strings.Fields(s), "")
}

// JinjaTemplate is the name TemplateName gives tokenizer_config.json's
// chat_template when it is rendered as Jinja (it is not openchat's).
const JinjaTemplate = "chat_template"

// TemplateName returns the name of the chat template opts select:
// opts.Template, the recognised name of tokenizer_config.json's
// chat_template, or JinjaTemplate when that template is rendered as Jinja.
func (t *Tokenizer) TemplateName(opts ChatOptions) (string, error) {
	switch opts.Template {
	case "openchat", "openchat-math":
		return opts.Template, nil
	case "":
	default:
		return "", fmt.Errorf("tokenizer: chat template %q: %w (known: openchat, openchat-math)", opts.Template, ErrUnknownTemplate)
	}
	if t.chatTemplate == "" {
		return "", fmt.Errorf("tokenizer: %w: name one with --chat-template (openchat, openchat-math)", ErrNoChatTemplate)
	}
	if name, ok := knownTemplates[squeeze(t.chatTemplate)]; ok {
		return name, nil
	}
	if t.chatJinjaErr != nil {
		return "", fmt.Errorf("tokenizer: %s chat_template: %w: %w (or name one with --chat-template: openchat, openchat-math)", t.chatTemplateFile, ErrUnknownTemplate, t.chatJinjaErr)
	}
	return JinjaTemplate, nil
}

// compileChatTemplate parses chatTemplate when it is not one of the
// openchat templates, which keep their native rendering.
func (t *Tokenizer) compileChatTemplate() {
	t.chatJinja, t.chatJinjaErr = nil, nil
	if _, ok := knownTemplates[squeeze(t.chatTemplate)]; ok || t.chatTemplate == "" {
		return
	}
	t.chatJinja, t.chatJinjaErr = jinja.Parse(t.chatTemplate)
}

// jinjaSegments renders msgs under the parsed chat_template with the
// variables transformers' apply_chat_template gives it: messages (with
// tool_calls, {"id", "type": "function", "function": {"name",
// "arguments"}}, and a tool message's tool_call_id and name, where they
// are set), add_generation_prompt, bos_token and eos_token (undefined
// when the tokenizer has none), tools (none where opts has none) and
// documents none. Message content, tools and tool calls come back as
// content segments, all else as template text.
func (t *Tokenizer) jinjaSegments(msgs []Message, opts ChatOptions) ([]segment, error) {
	list := make([]any, len(msgs))
	for i, m := range msgs {
		r, ok := ChatRole(m.Role)
		if m.Role == "tool" {
			r, ok = m.Role, true
		}
		if !ok {
			return nil, &MessageError{i, "role", fmt.Errorf("%q: want %s or tool", m.Role, ChatRoles)}
		}
		if !utf8.ValidString(m.Content) {
			return nil, &MessageError{i, "content", ErrInvalidUTF8}
		}
		d := jinja.NewDict()
		d.Set("role", r)
		d.Set("content", jinja.Data(m.Content))
		if len(m.ToolCalls) > 0 {
			calls := make([]any, len(m.ToolCalls))
			for j, c := range m.ToolCalls {
				var args any = jinja.Data(c.Arguments)
				if v, err := jinja.FromJSON([]byte(c.Arguments), true); err == nil {
					args = v
				}
				f := jinja.NewDict()
				f.Set("name", jinja.Data(c.Name))
				f.Set("arguments", args)
				call := jinja.NewDict()
				call.Set("id", jinja.Data(c.ID))
				call.Set("type", "function")
				call.Set("function", f)
				calls[j] = call
			}
			d.Set("tool_calls", calls)
		}
		if m.ToolCallID != "" {
			d.Set("tool_call_id", jinja.Data(m.ToolCallID))
		}
		if m.Name != "" {
			d.Set("name", jinja.Data(m.Name))
		}
		if m.ReasoningContent != "" {
			d.Set("reasoning_content", jinja.Data(m.ReasoningContent))
		}
		list[i] = d
	}
	var tools any
	if len(opts.Tools) > 0 {
		v, err := jinja.FromJSON(opts.Tools, true)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: tools: %w", err)
		}
		tools = v
	}
	vars := map[string]any{}
	for k, v := range opts.Vars {
		if slices.Contains(TemplateInputs, k) {
			return nil, fmt.Errorf("tokenizer: chat_template variable %q: it is one of the template's inputs", k)
		}
		vars[k] = v
	}
	vars["messages"], vars["add_generation_prompt"], vars["tools"], vars["documents"] = list, opts.AddGenerationPrompt, tools, nil
	if t.bos >= 0 {
		vars["bos_token"] = t.pieces[t.bos]
	}
	if t.eos >= 0 {
		vars["eos_token"] = t.pieces[t.eos]
	}
	chunks, err := t.chatJinja.Render(vars)
	if err != nil {
		if errors.Is(err, jinja.ErrRaised) {
			return nil, fmt.Errorf("tokenizer: chat_template: %w", err)
		}
		return nil, fmt.Errorf("tokenizer: %s chat_template: %w: %w", t.chatTemplateFile, ErrTemplateRender, err)
	}
	segs := make([]segment, len(chunks))
	for i, c := range chunks {
		segs[i] = segment{text: c.Text, template: !c.Data}
	}
	return segs, nil
}

// chatSegments renders msgs as template text and message content.
func (t *Tokenizer) chatSegments(msgs []Message, opts ChatOptions) ([]segment, error) {
	name, err := t.TemplateName(opts)
	if err != nil {
		return nil, err
	}
	if name == JinjaTemplate {
		return t.jinjaSegments(msgs, opts)
	}
	if _, ok := t.TokenID(openchatEOT); !ok {
		return nil, fmt.Errorf("tokenizer: chat template %s: %q %w", name, openchatEOT, ErrTemplateToken)
	}
	prefix := "GPT4 Correct "
	if name == "openchat-math" {
		prefix = "Math Correct "
	}
	var segs []segment
	if t.bos >= 0 {
		segs = append(segs, segment{text: t.pieces[t.bos], template: true})
	}
	for i, m := range msgs {
		r, ok := ChatRole(m.Role)
		if !ok {
			return nil, &MessageError{i, "role", fmt.Errorf("%q: want %s", m.Role, ChatRoles)}
		}
		var role string
		switch r {
		case "user":
			role = "User"
		case "assistant":
			role = "Assistant"
		case "system":
			if !opts.SystemMessages {
				continue
			}
			role = "System"
		}
		if !utf8.ValidString(m.Content) {
			return nil, &MessageError{i, "content", ErrInvalidUTF8}
		}
		segs = append(segs,
			segment{text: prefix + role + ": ", template: true},
			segment{text: m.Content},
			segment{text: openchatEOT, template: true})
	}
	if opts.AddGenerationPrompt {
		segs = append(segs, segment{text: prefix + "Assistant:", template: true})
	}
	return segs, nil
}

// RenderChat returns the text of msgs under the chat template, BOS spelled
// as its piece ("<s>GPT4 Correct User: Hello<|end_of_turn|>…"): what
// transformers' apply_chat_template(tokenize=False) returns. A template's
// raise_exception is an error wrapping jinja.ErrRaised (a *jinja.RaiseError
// carries its message).
func (t *Tokenizer) RenderChat(msgs []Message, opts ChatOptions) (string, error) {
	segs, err := t.chatSegments(msgs, opts)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, s := range segs {
		b.WriteString(s.text)
	}
	return b.String(), nil
}

// EncodeChat returns the ids of msgs under the chat template, BOS included
// where the template puts it (as text: "{{ bos_token }}" becomes the BOS id,
// and no other BOS is added). Added tokens are recognised in template text
// only: a message containing "<|end_of_turn|>" spells it with ordinary
// pieces. Each maximal run of text between added tokens (template text and
// content together) is encoded as one piece of text, with "▁" prepended as
// the normalizer does after an added token.
func (t *Tokenizer) EncodeChat(msgs []Message, opts ChatOptions) ([]int, error) {
	segs, err := t.chatSegments(msgs, opts)
	if err != nil {
		return nil, err
	}
	return t.encodeSegments(nil, segs), nil
}
