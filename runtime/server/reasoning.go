package server

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gptqtool/gptqtool/formats/jinja"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/runtime/server/openai"
)

// Reasoning models (DeepSeek-R1 and its distills, QwQ, Qwen3, Qwen3.5)
// write their reasoning first, between "<think>" and "</think>", then
// their answer. The server returns the reasoning as the message's
// reasoning_content (streamed: delta.reasoning_content) and the rest as
// content (and tool calls), as vLLM's deepseek_r1 and qwen3 reasoning
// parsers and llama.cpp's --reasoning-format deepseek do. A model is one
// where its chat template writes both markers (as llama.cpp finds it);
// serve --reasoning-format none, or a request's reasoning_format "none",
// leaves the reasoning in content.
//
// Where the block starts is read from the prompt, as llama.cpp's
// thinking_forced_open: a generation prompt that ends inside an open block
// (DeepSeek-R1-Distill's "<｜Assistant｜><think>\n", Qwen3.5's) makes the
// reply start in the reasoning; one that ends with the block closed
// (Qwen3's under enable_thinking false, "<think>\n\n</think>\n\n") has none
// to read; otherwise the reply may open one at its start. The reasoning's
// and the content's surrounding whitespace is left out (the templates
// write "<think>\n" … "\n</think>\n\n"), as llama.cpp does; a reply cut
// inside the block is all reasoning, and content null.
//
// What constrains a reply (a tool call format, a schema, a choice)
// applies after the block (grammar.Block), so that a model thinks before
// it calls or answers, as llama.cpp's lazy grammars allow; stop strings
// and max_tokens count the reasoning as the rest of the reply, and
// usage's completion_tokens_details.reasoning_tokens counts its tokens.
const (
	thinkOpen  = "<think>"
	thinkClose = "</think>"
)

// Reasoning formats (serve --reasoning-format, a request's
// reasoning_format: llama.cpp's names).
const (
	ReasoningNone     = "none"
	ReasoningDeepSeek = "deepseek"
)

// reasoningTemplate says whether t's chat template (not an openchat one)
// writes a reasoning block.
func reasoningTemplate(t *tokenizer.Tokenizer) bool {
	if name, err := t.TemplateName(tokenizer.ChatOptions{}); err != nil || name != tokenizer.JinjaTemplate {
		return false
	}
	src := t.ChatTemplate()
	return strings.Contains(src, thinkOpen) && strings.Contains(src, thinkClose)
}

// thinking is how a request's reply is read for reasoning: nil where it
// is not; opened where the prompt opened the block.
type thinking struct {
	opened bool
	// drop: the reasoning is read but not returned (include_reasoning
	// false).
	drop bool
}

// requestThinking is how req's reply is read, from the server's format,
// the request's and the prompt's text (nil: not for reasoning).
func requestThinking(b *Backend, req *openai.Request, prompt string) *thinking {
	format := b.ReasoningFormat
	if req.ReasoningFormat != "" {
		format = req.ReasoningFormat
	}
	if format == ReasoningNone || req.Condition != "" || b.Chat.Template != "" || !reasoningTemplate(b.Tokenizer) {
		return nil
	}
	end := strings.TrimRight(prompt, " \t\r\n")
	if strings.HasSuffix(end, thinkClose) || req.NoGenerationPrompt {
		return nil
	}
	return &thinking{opened: strings.HasSuffix(end, thinkOpen), drop: req.NoReasoning}
}

// templateVars is chat_template_kwargs as a template's variables (each
// value as json.loads gives it), nil where the request has none.
func templateVars(req *openai.Request) (map[string]any, error) {
	if req.ChatTemplateKwargs == nil {
		return nil, nil
	}
	var kw map[string]json.RawMessage
	if err := json.Unmarshal(req.ChatTemplateKwargs, &kw); err != nil {
		return nil, &openai.FieldError{Field: "chat_template_kwargs", Msg: "must be an object"}
	}
	vars := make(map[string]any, len(kw))
	for k, raw := range kw {
		v, err := jinja.FromJSON(raw, true)
		if err != nil {
			return nil, &openai.FieldError{Field: "chat_template_kwargs." + k, Msg: fmt.Sprintf("not JSON: %v", err)}
		}
		vars[k] = v
	}
	return vars, nil
}

// reasoningSplitter reads a reply as it is generated into its reasoning
// and the rest, holding what the next piece decides: a possible start of
// a marker, whitespace that may end the reasoning or start the content.
type reasoningSplitter struct {
	phase uint8
	held  string
	seen  bool // a block came
}

// Phases of a reasoningSplitter.
const (
	rsStart = iota // the reply's start: a block may open
	rsIn           // in the block, before its first text
	rsText         // in the block's text
	rsAfter        // after the block, before the content's first text
	rsRest         // content
)

func newReasoningSplitter(th *thinking) *reasoningSplitter {
	if th.opened {
		return &reasoningSplitter{phase: rsIn, seen: true}
	}
	return &reasoningSplitter{}
}

// InBlock says whether the text so far ends inside the block.
func (s *reasoningSplitter) InBlock() bool { return s.phase == rsIn || s.phase == rsText }

// InContent says whether the content has begun (the text after the
// block, or a reply without one).
func (s *reasoningSplitter) InContent() bool { return s.phase == rsRest }

// Seen says whether the reply had a block.
func (s *reasoningSplitter) Seen() bool { return s.seen }

// Feed reads the next piece: the reasoning and the content it adds.
func (s *reasoningSplitter) Feed(piece string) (reasoning, content string) {
	text := s.held + piece
	s.held = ""
	for text != "" {
		switch s.phase {
		case rsStart:
			t := strings.TrimLeft(text, " \t\r\n")
			switch {
			case strings.HasPrefix(t, thinkOpen):
				s.phase, s.seen, text = rsIn, true, t[len(thinkOpen):]
			case strings.HasPrefix(thinkOpen, t):
				s.held = text
				return
			default:
				s.phase = rsRest
			}
		case rsIn, rsAfter:
			t := strings.TrimLeft(text, " \t\r\n")
			if t == "" {
				return
			}
			text = t
			s.phase++ // rsText, rsRest
		case rsText:
			if i := strings.Index(text, thinkClose); i >= 0 {
				reasoning += strings.TrimRight(text[:i], " \t\r\n")
				s.phase, text = rsAfter, text[i+len(thinkClose):]
				continue
			}
			// Hold a possible start of the close, and whitespace
			// before it.
			keep := len(text)
			for n := min(len(thinkClose)-1, len(text)); n > 0; n-- {
				if strings.HasSuffix(text, thinkClose[:n]) {
					keep = len(text) - n
					break
				}
			}
			keep = len(strings.TrimRight(text[:keep], " \t\r\n"))
			reasoning += text[:keep]
			s.held = text[keep:]
			return
		case rsRest:
			return reasoning, content + text
		}
	}
	return
}

// Finish is what the splitter holds at the reply's end: the start of a
// marker that did not come (text of its phase), whitespace dropped.
func (s *reasoningSplitter) Finish() (reasoning, content string) {
	held := s.held
	s.held = ""
	switch s.phase {
	case rsStart:
		return "", held
	case rsText:
		return strings.TrimRight(held, " \t\r\n"), ""
	}
	return "", ""
}

// reasoningMessage sets m's reasoning_content and reasoning from a reply's reasoning
// (none where the reply had no block or an empty one, or the request
// drops it) and, where the reply had a block, makes an empty content null
// (vLLM's parsers' answer).
func reasoningMessage(m *openai.ChatMessage, th *thinking, sp *reasoningSplitter, reasoning string) {
	if th == nil || !sp.Seen() {
		return
	}
	if reasoning != "" && !th.drop {
		m.SetReasoning(reasoning)
	}
	if m.Content != nil && *m.Content == "" && m.ToolCalls == nil {
		m.Content = nil
	}
}
