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
// leaves the reasoning in content, its markers as the model wrote them
// (Mistral's special [THINK] and [/THINK] too, which the decoded text
// keeps where it leaves other special tokens out).
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
// it calls or answers, as llama.cpp's lazy grammars allow. Stop strings
// match the content only, never the reasoning (vLLM skips them in the
// reasoning, #14550; its V1 engine matched them there again, which its
// issues #38499 and #52393 report as a bug that cuts the reasoning and
// loses the answer; hosted APIs match the answer only): a stop string in
// the block neither ends the reply nor is cut from the reasoning, and
// one in the content cuts it there. max_tokens counts the reasoning as
// the rest of the reply, and usage's
// completion_tokens_details.reasoning_tokens counts its tokens.
//
// Mistral's reasoning models (Magistral Small and Medium 1.2 on,
// Ministral 3 Reasoning) write the block between the special tokens
// [THINK] and [/THINK] instead, read the same way (vLLM's mistral
// reasoning parser is its deepseek_r1 one with those tokens). Their
// templates write no generation prompt after "[/INST]", so the reply may
// open a block; and they take an assistant message's reasoning not as
// reasoning_content but as a content chunk {"type": "thinking"} (as
// mistral_common's ThinkChunk) that they write between the markers
// before the text: the history's reasoning is written into the content
// so, the bytes the template writes for the chunk.
const (
	thinkOpen    = "<think>"
	thinkClose   = "</think>"
	mistralOpen  = "[THINK]"
	mistralClose = "[/THINK]"
)

// reasoningMarkers are the markers of a template's reasoning block.
type reasoningMarkers struct {
	open, close string
	// inline: the template reads an assistant message's reasoning only
	// in its content, between the markers (Mistral's thinking chunk),
	// not from reasoning_content.
	inline bool
}

// thinkMarkers are the <think> block's markers.
var thinkMarkers = reasoningMarkers{open: thinkOpen, close: thinkClose}

// Reasoning formats (serve --reasoning-format, a request's
// reasoning_format: llama.cpp's names).
const (
	ReasoningNone     = "none"
	ReasoningDeepSeek = "deepseek"
)

// reasoningTemplate is the markers of the reasoning block t's chat
// template (not an openchat one) writes, both of a pair, nil where it
// writes none.
func reasoningTemplate(t *tokenizer.Tokenizer) *reasoningMarkers {
	if name, err := t.TemplateName(tokenizer.ChatOptions{}); err != nil || name != tokenizer.JinjaTemplate {
		return nil
	}
	src := t.ChatTemplate()
	switch {
	case strings.Contains(src, thinkOpen) && strings.Contains(src, thinkClose):
		m := thinkMarkers
		return &m
	case strings.Contains(src, mistralOpen) && strings.Contains(src, mistralClose):
		return &reasoningMarkers{open: mistralOpen, close: mistralClose, inline: !strings.Contains(src, "reasoning_content")}
	}
	return nil
}

// inlineReasoning writes each assistant message's reasoning into its
// content, between the markers, where the template reads it only there
// (m.inline).
func inlineReasoning(msgs []tokenizer.Message, m *reasoningMarkers) {
	if m == nil || !m.inline {
		return
	}
	for i := range msgs {
		if r := msgs[i].ReasoningContent; r != "" {
			msgs[i].Content = m.open + r + m.close + msgs[i].Content
			msgs[i].ReasoningContent = ""
		}
	}
}

// thinking is how a request's reply is read for reasoning: nil where it
// is not; opened where the prompt opened the block.
type thinking struct {
	markers reasoningMarkers
	opened  bool
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
	if format == ReasoningNone {
		return nil
	}
	m := chatMarkers(b, req)
	if m == nil {
		return nil
	}
	end := strings.TrimRight(prompt, " \t\r\n")
	if strings.HasSuffix(end, m.close) || req.NoGenerationPrompt {
		return nil
	}
	return &thinking{markers: *m, opened: strings.HasSuffix(end, m.open), drop: req.NoReasoning}
}

// chatMarkers are the markers of the reasoning block of a chat req under
// b's chat template, nil where the template writes none, or the chat is
// under an openchat template.
func chatMarkers(b *Backend, req *openai.Request) *reasoningMarkers {
	if req.Condition != "" || b.Chat.Template != "" {
		return nil
	}
	return reasoningTemplate(b.Tokenizer)
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
	reasoningMarkers
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
		return &reasoningSplitter{reasoningMarkers: th.markers, phase: rsIn, seen: true}
	}
	return &reasoningSplitter{reasoningMarkers: th.markers}
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
			case strings.HasPrefix(t, s.open):
				s.phase, s.seen, text = rsIn, true, t[len(s.open):]
			case strings.HasPrefix(s.open, t):
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
			if i := strings.Index(text, s.close); i >= 0 {
				reasoning += strings.TrimRight(text[:i], " \t\r\n")
				s.phase, text = rsAfter, text[i+len(s.close):]
				continue
			}
			// Hold a possible start of the close, and whitespace
			// before it.
			keep := len(text)
			for n := min(len(s.close)-1, len(text)); n > 0; n-- {
				if strings.HasSuffix(text, s.close[:n]) {
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
