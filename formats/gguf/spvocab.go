package gguf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
)

// Scores llama.cpp's converter gives the ids tokenizer.model does not
// score (convert_hf_to_gguf.py, TextModel._create_vocab_sentencepiece).
const (
	addedTokenScore = -1000  // added_tokens.json and added_tokens_decoder entries
	padTokenScore   = -10000 // [PADn] ids between the model's pieces and vocab_size
)

// SentencePieceVocab returns the entries of tokenizer.ggml.tokens, scores
// and token_type for a model directory holding tokenizer.model, built as
// llama.cpp's convert_hf_to_gguf.py builds them for a Llama/Mistral model
// (LlamaModel.set_vocab → TextModel._create_vocab_sentencepiece), so that a
// GGUF file of ours and one of llama.cpp's hold the same vocabulary:
//
//   - vocabSize entries (config.json vocab_size); every id starts as
//     "[PAD<id>]", score -10000, TokenTypeUnused;
//   - the pieces of tokenizer.model with their stored scores, typed
//     unknown, control, unused or byte as the model types them and normal
//     otherwise (a user-defined piece included, as SentencePiece's
//     IsUnknown/IsControl/IsUnused/IsByte are all the converter asks);
//   - then each added_tokens.json entry: its text, score -1000,
//     TokenTypeUserDefined;
//   - then each tokenizer_config.json added_tokens_decoder entry: its
//     content, score -1000, TokenTypeControl when "special" or when the
//     text looks special (<|…|> and the others of the converter's
//     does_token_look_special), else TokenTypeUserDefined with "▁" written
//     as a space. <unk>, <s> and </s> listed there as special become
//     control tokens scored -1000, as llama.cpp writes them.
//
// Added ids at or past vocabSize are left out, as the converter leaves
// them out; a tokenizer.model with more pieces than vocabSize is an error
// (the converter drops the surplus pieces). An error wrapping
// fs.ErrNotExist means dir has no tokenizer.model: llama.cpp then reads
// tokenizer.json instead, and so does Convert (tokenizer.VocabEntries).
func SentencePieceVocab(dir string, vocabSize int) ([]tokenizer.VocabEntry, error) {
	return sentencePieceVocab(dir, vocabSize, false)
}

// Phi3SentencePieceVocab is SentencePieceVocab as llama.cpp's converter
// builds a Phi-3 model's vocabulary (Phi3MiniModel.set_vocab): the same
// pieces, [PADn] ids and added_tokens.json entries, but each
// tokenizer_config.json added_tokens_decoder entry, then each tokenizer.json
// added_tokens entry, typed TokenTypeControl where "special" and
// TokenTypeUserDefined otherwise, its text as it is, score -1000 (no
// does_token_look_special, no "▁" rewritten). An added id at or past
// vocabSize is left out (the converter fails on one past its list).
func Phi3SentencePieceVocab(dir string, vocabSize int) ([]tokenizer.VocabEntry, error) {
	return sentencePieceVocab(dir, vocabSize, true)
}

func sentencePieceVocab(dir string, vocabSize int, phi3 bool) ([]tokenizer.VocabEntry, error) {
	modelPath := filepath.Join(dir, "tokenizer.model")
	pieces, err := tokenizer.SentencePieceVocab(modelPath)
	if err != nil {
		return nil, fmt.Errorf("gguf vocab: %w", err)
	}
	if len(pieces) > vocabSize {
		return nil, fmt.Errorf("gguf vocab: %s has %d pieces, config.json vocab_size is %d", modelPath, len(pieces), vocabSize)
	}
	out := make([]tokenizer.VocabEntry, vocabSize)
	for id := range out {
		out[id] = tokenizer.VocabEntry{Piece: "[PAD" + strconv.Itoa(id) + "]", Score: padTokenScore, Type: tokenizer.TokenTypeUnused}
	}
	for id, p := range pieces {
		switch p.Type {
		case tokenizer.TokenTypeUnknown, tokenizer.TokenTypeControl, tokenizer.TokenTypeUnused, tokenizer.TokenTypeByte:
		default:
			p.Type = tokenizer.TokenTypeNormal
		}
		out[id] = p
	}

	addedPath := filepath.Join(dir, "added_tokens.json")
	added, err := readObject(addedPath)
	if err != nil {
		return nil, err
	}
	for _, kv := range added {
		var id int
		if err := json.Unmarshal(kv.value, &id); err != nil || id < 0 {
			return nil, fmt.Errorf("gguf vocab: %s: %q: id %s, want an integer >= 0", addedPath, kv.key, kv.value)
		}
		if id < vocabSize {
			out[id] = tokenizer.VocabEntry{Piece: kv.key, Score: addedTokenScore, Type: tokenizer.TokenTypeUserDefined}
		}
	}

	cfgPath := filepath.Join(dir, "tokenizer_config.json")
	cfg, err := readObject(cfgPath)
	if err != nil {
		return nil, err
	}
	for _, kv := range cfg {
		if kv.key != "added_tokens_decoder" {
			continue
		}
		decoder, err := objectFields(kv.value)
		if err != nil {
			return nil, fmt.Errorf("gguf vocab: %s: added_tokens_decoder: %w", cfgPath, err)
		}
		for _, d := range decoder {
			id, err := strconv.Atoi(d.key)
			if err != nil || id < 0 {
				return nil, fmt.Errorf("gguf vocab: %s: added_tokens_decoder key %q: want an integer id >= 0", cfgPath, d.key)
			}
			var tok struct {
				Content *string `json:"content"`
				Special bool    `json:"special"`
			}
			if err := json.Unmarshal(d.value, &tok); err != nil || tok.Content == nil {
				return nil, fmt.Errorf("gguf vocab: %s: added_tokens_decoder %q: want {\"content\": string, \"special\": bool, ...}", cfgPath, d.key)
			}
			if id >= vocabSize {
				continue
			}
			e := tokenizer.VocabEntry{Piece: *tok.Content, Score: addedTokenScore, Type: tokenizer.TokenTypeControl}
			if phi3 && !tok.Special {
				e.Type = tokenizer.TokenTypeUserDefined
			} else if !phi3 && !tok.Special && !looksSpecial(e.Piece) {
				e.Type = tokenizer.TokenTypeUserDefined
				e.Piece = strings.ReplaceAll(e.Piece, "▁", " ")
			}
			out[id] = e
		}
	}
	if phi3 {
		if err := phi3AddedTokens(filepath.Join(dir, "tokenizer.json"), out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// phi3AddedTokens types tokenizer.json's added_tokens in out as
// Phi3MiniModel.set_vocab does: control where special, else
// user-defined, score -1000; a missing file has none.
func phi3AddedTokens(path string, out []tokenizer.VocabEntry) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("gguf vocab: %w", err)
	}
	var doc struct {
		AddedTokens []struct {
			ID      *int    `json:"id"`
			Content *string `json:"content"`
			Special bool    `json:"special"`
		} `json:"added_tokens"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("gguf vocab: %s: %w", path, err)
	}
	for i, a := range doc.AddedTokens {
		if a.ID == nil || a.Content == nil || *a.ID < 0 {
			return fmt.Errorf("gguf vocab: %s: added_tokens[%d]: want {\"id\": integer >= 0, \"content\": string, ...}", path, i)
		}
		if *a.ID >= len(out) {
			continue
		}
		e := tokenizer.VocabEntry{Piece: *a.Content, Score: addedTokenScore, Type: tokenizer.TokenTypeUserDefined}
		if a.Special {
			e.Type = tokenizer.TokenTypeControl
		}
		out[*a.ID] = e
	}
	return nil
}

// looksSpecial reports whether an added token's text marks it a control
// token even where its "special" flag does not (convert_hf_to_gguf.py
// ModelBase.does_token_look_special).
func looksSpecial(s string) bool {
	switch s {
	case "<pad>", "<mask>", "<2mass>", "[@BOS@]":
		return true
	}
	return strings.HasPrefix(s, "<|") && strings.HasSuffix(s, "|>") ||
		strings.HasPrefix(s, "<｜") && strings.HasSuffix(s, "｜>") ||
		strings.HasPrefix(s, "<unused") && strings.HasSuffix(s, ">")
}

type field struct {
	key   string
	value json.RawMessage
}

// readObject reads the fields of the JSON object in path in file order
// (the order in which the converter's dicts apply them, a later one
// overriding an earlier one of the same id); a missing file has none.
func readObject(path string) ([]field, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("gguf vocab: %w", err)
	}
	fields, err := objectFields(data)
	if err != nil {
		return nil, fmt.Errorf("gguf vocab: %s: %w", path, err)
	}
	return fields, nil
}

// objectFields returns the fields of a JSON object in order.
func objectFields(data []byte) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("want a JSON object")
	}
	var fields []field
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var f field
		f.key, _ = t.(string)
		if err := dec.Decode(&f.value); err != nil {
			return nil, err
		}
		fields = append(fields, f)
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return fields, nil
}
