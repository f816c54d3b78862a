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

// grammar returns schema compiled over b's vocabulary; a schema the
// compiler refuses is a FieldError naming response_format.
func (s *Server) grammar(b *Backend, schema json.RawMessage) (*grammar.Grammar, error) {
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
	if err := json.Compact(&key, schema); err != nil {
		return nil, &openai.FieldError{Field: "response_format.json_schema.schema", Msg: fmt.Sprintf("not JSON: %v", err)}
	}
	if g, ok := c.byKey[key.String()]; ok {
		return g, nil
	}
	g, err := grammar.Compile(schema, c.vocab)
	if err != nil {
		var se *grammar.SchemaError
		if errors.As(err, &se) {
			return nil, &openai.FieldError{Field: "response_format.json_schema.schema", Msg: err.Error()}
		}
		return nil, err
	}
	if len(c.byKey) >= maxGrammars {
		clear(c.byKey)
	}
	c.byKey[key.String()] = g
	return g, nil
}
