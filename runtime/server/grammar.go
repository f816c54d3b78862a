package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/gptqtool/gptqtool/runtime/grammar"
	"github.com/gptqtool/gptqtool/runtime/sample"
	"github.com/gptqtool/gptqtool/runtime/server/openai"
)

// maxGrammars bounds the compiled schemas kept (with their masks, at most
// grammar.MaxMemo each: 128 MiB in all for a vocabulary of 32,000); past
// it the cache starts over.
const maxGrammars = 32

// grammars caches the backend's vocabulary trie and the schemas compiled
// over it, by their compact text, so that a schema sent again finds the
// masks its earlier requests walked.
type grammars struct {
	mu      sync.Mutex
	backend *Backend
	vocab   *grammar.Vocab
	byKey   map[string]compiled
}

// compiled is a cached grammar: g, or under tool_choice auto in a native
// format, lazy (g from its trigger on); where the reply reasons first,
// block (either after the reasoning block).
type compiled struct {
	g     *grammar.Grammar
	lazy  *grammar.Lazy
	block *grammar.Block
}

// matcher returns a new Matcher of c.
func (c compiled) matcher() sample.Matcher {
	if c.block != nil {
		return c.block.NewMatcher()
	}
	if c.lazy != nil {
		return c.lazy.NewMatcher()
	}
	return c.g.NewMatcher()
}

// grammar returns what constrains req's output (its tools' reply, in the
// model's format (native.go) or the generic one, req.Schema, req.Choice or
// req.Regex) compiled over b's vocabulary (the format's markers as their
// text); a schema or pattern the compiler refuses is a FieldError naming
// its field (a tool's parameters: tools[i].function.parameters). Where
// think is set, it applies after the reply's reasoning block.
func (s *Server) grammar(b *Backend, req *openai.Request, think *thinking) (compiled, error) {
	c := &s.grammars
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.backend != b {
		var markers []string
		if f := backendFormat(b); f != nil {
			markers = f.markers
		}
		if m := reasoningTemplate(b.Tokenizer); m != nil {
			markers = append(markers, m.open, m.close)
		}
		c.backend, c.vocab, c.byKey = b, grammar.NewVocabWith(b.Tokenizer, markers), map[string]compiled{}
	}
	var key bytes.Buffer
	var schema []byte
	native := requestFormat(b, req)
	switch {
	case req.CallsTools() && native != nil:
		var err error
		if schema, err = nativeCallSchema(req, native); err != nil {
			return compiled{}, err
		}
		fmt.Fprintf(&key, "native %s %s %v ", native.name, req.ToolChoice, req.ParallelToolCalls)
		key.Write(schema)
	case req.CallsTools():
		var err error
		if schema, err = toolSchema(req); err != nil {
			return compiled{}, err
		}
		key.WriteString("tools ")
		key.Write(schema)
	case req.Choice != nil:
		list, _ := json.Marshal(req.Choice)
		key.WriteString("choice ")
		key.Write(list)
	case req.Regex != "":
		key.WriteString("regex " + req.Regex)
	default:
		if err := json.Compact(&key, req.Schema); err != nil {
			return compiled{}, &openai.FieldError{Field: req.SchemaField, Msg: fmt.Sprintf("not JSON: %v", err)}
		}
		schema = req.Schema
	}
	if think != nil {
		fmt.Fprintf(&key, " after a block (opened %v)", think.opened)
	}
	if g, ok := c.byKey[key.String()]; ok {
		return g, nil
	}
	var g *grammar.Grammar
	var err error
	field := req.SchemaField
	switch {
	case req.CallsTools() && native != nil:
		// Each tool's parameters alone first, so that what the compiler
		// refuses is named in its tool.
		gc := new(grammar.Compiler)
		for i, t := range req.Tools {
			if _, err := gc.Compile(t.Parameters, c.vocab); err != nil {
				return compiled{}, schemaError(err, fmt.Sprintf("tools[%d].function.parameters", i), "")
			}
		}
		field = "tools"
		g, err = nativeGrammar(gc, req, native, c.vocab)
	case req.CallsTools():
		// Each tool first, so that what the compiler refuses is named in
		// it (tools[i].function.parameters): its parameters alone (a
		// keyword, at its path there), then as the one tool a reply must
		// call (arguments nested too deep once inside the reply, where
		// under auto the response would still compile). One Compiler for
		// all, so that the tools' patterns are compiled once and within
		// one bound, and each tool's reply holds that tool alone, so that
		// the request costs its tools' size, not its square.
		gc := new(grammar.Compiler)
		for i, t := range req.Tools {
			field := fmt.Sprintf("tools[%d].function.parameters", i)
			if _, err := gc.Compile(t.Parameters, c.vocab); err != nil {
				return compiled{}, schemaError(err, field, "")
			}
			one := *req
			one.Tools = req.Tools[i : i+1]
			one.ToolChoice, one.ToolName = openai.ToolChoiceFunction, t.Name
			alone, err := toolSchema(&one)
			if err != nil {
				return compiled{}, err
			}
			if _, err := gc.Compile(alone, c.vocab); err != nil {
				return compiled{}, schemaError(err, field, "inside a tool call, 3 levels deep in the reply: ")
			}
		}
		field = "tools"
		g, err = gc.Compile(schema, c.vocab)
	case req.Choice != nil:
		g, err = grammar.Choice(req.Choice, c.vocab)
	case req.Regex != "":
		g, err = grammar.Regex(req.Regex, c.vocab)
	default:
		g, err = grammar.Compile(schema, c.vocab)
	}
	if err != nil {
		return compiled{}, schemaError(err, field, "")
	}
	out := compiled{g: g}
	if native != nil && req.CallsTools() && req.ToolChoice == openai.ToolChoiceAuto {
		out.lazy = g.Lazy(native.trigger, native.atStart)
	}
	switch {
	case think != nil && out.lazy != nil:
		out.block = out.lazy.After(think.markers.open, think.markers.close, think.opened)
	case think != nil:
		out.block = g.After(think.markers.open, think.markers.close, think.opened)
	}
	if len(c.byKey) >= maxGrammars {
		clear(c.byKey)
	}
	c.byKey[key.String()] = out
	return out, nil
}

// schemaError is a FieldError naming field for a schema or pattern the
// compiler refuses (its message after what), or err as it is.
func schemaError(err error, field, what string) error {
	var se *grammar.SchemaError
	var re *grammar.RegexError
	if errors.As(err, &se) || errors.As(err, &re) {
		return &openai.FieldError{Field: field, Msg: what + err.Error()}
	}
	return err
}
