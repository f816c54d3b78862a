package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/gptqtool/gptqtool/runtime/grammar"
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
	byKey   map[string]*grammar.Grammar
}

// grammar returns what constrains req's output (req.Schema or
// req.Choice) compiled over b's vocabulary; a schema the compiler refuses
// is a FieldError naming the schema's field.
func (s *Server) grammar(b *Backend, req *openai.Request) (*grammar.Grammar, error) {
	c := &s.grammars
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.backend != b {
		v, err := grammar.NewVocab(b.Tokenizer.VocabEntries())
		if err != nil {
			return nil, err
		}
		c.backend, c.vocab, c.byKey = b, v, map[string]*grammar.Grammar{}
	}
	var key bytes.Buffer
	if req.Choice != nil {
		list, _ := json.Marshal(req.Choice)
		key.WriteString("choice ")
		key.Write(list)
	} else if err := json.Compact(&key, req.Schema); err != nil {
		return nil, &openai.FieldError{Field: req.SchemaField, Msg: fmt.Sprintf("not JSON: %v", err)}
	}
	if g, ok := c.byKey[key.String()]; ok {
		return g, nil
	}
	var g *grammar.Grammar
	var err error
	if req.Choice != nil {
		g, err = grammar.Choice(req.Choice, c.vocab)
	} else {
		g, err = grammar.Compile(req.Schema, c.vocab)
	}
	if err != nil {
		var se *grammar.SchemaError
		if errors.As(err, &se) {
			return nil, &openai.FieldError{Field: req.SchemaField, Msg: err.Error()}
		}
		return nil, err
	}
	if len(c.byKey) >= maxGrammars {
		clear(c.byKey)
	}
	c.byKey[key.String()] = g
	return g, nil
}
