package tokenizer

import (
	"slices"
	"strconv"
	"strings"
)

// TokenType is the type of a vocabulary entry, numbered as SentencePiece's
// ModelProto.SentencePiece.Type, which llama.cpp's llama_token_type and
// GGUF's tokenizer.ggml.token_type reuse.
type TokenType int32

// The token types (sentencepiece_model.proto; llama.h LLAMA_TOKEN_TYPE_*).
const (
	TokenTypeNormal      TokenType = 1 // a BPE piece
	TokenTypeUnknown     TokenType = 2 // <unk>
	TokenTypeControl     TokenType = 3 // <s>, </s>, special added tokens: decode to nothing
	TokenTypeUserDefined TokenType = 4 // non-special added tokens: matched whole, decode to their text
	TokenTypeUnused      TokenType = 5 // holes in the id space, SentencePiece UNUSED pieces
	TokenTypeByte        TokenType = 6 // <0xNN> byte-fallback pieces
)

// VocabEntry is one id of the vocabulary as a SentencePiece model (and a
// GGUF tokenizer.ggml.* array) describes it.
type VocabEntry struct {
	// Piece is the stored text ("▁Hello", "<0x0A>", "<s>",
	// "<|end_of_turn|>"), "" for a hole in the id space.
	Piece string
	// Score orders merges: a piece built by merging two symbols is merged
	// before pieces of lower score. It is the piece's SentencePiece score
	// for tokenizer.model, minus the rank of the first merge producing the
	// piece for tokenizer.json, and 0 for pieces no merge produces (single
	// characters, bytes, control and added tokens), whose score no BPE
	// tokenizer consults.
	Score float32
	Type  TokenType
}

// VocabEntries returns one entry per id, 0 to VocabSize()-1. Types: the
// unknown piece is TokenTypeUnknown; <0xNN> pieces TokenTypeByte; control
// pieces and special added tokens TokenTypeControl; other added tokens and
// SentencePiece user-defined pieces TokenTypeUserDefined; SentencePiece
// unused pieces and holes TokenTypeUnused; the rest TokenTypeNormal.
func (t *Tokenizer) VocabEntries() []VocabEntry {
	out := make([]VocabEntry, len(t.pieces))
	scored := make([]bool, len(t.pieces))
	for _, m := range t.merges {
		id := int(m.id)
		if id < 0 || id >= len(out) {
			continue
		}
		if s := float32(m.prio); !scored[id] || s > out[id].Score {
			out[id].Score = s
			scored[id] = true
		}
	}
	special := make(map[int]bool, len(t.added))
	for _, a := range t.added {
		special[a.id] = a.special
	}
	for id := range out {
		e := &out[id]
		e.Piece = t.pieces[id]
		isSpecial, added := special[id]
		_, unused := t.revMerge[int32(id)]
		switch {
		case int32(id) == t.unk:
			e.Type = TokenTypeUnknown
		case t.kinds[id] == kindByte:
			e.Type = TokenTypeByte
		case t.kinds[id] == kindControl:
			e.Type = TokenTypeControl
		case t.kinds[id] == kindUnused || unused:
			e.Type = TokenTypeUnused
		case added && isSpecial:
			e.Type = TokenTypeControl
		case added:
			e.Type = TokenTypeUserDefined
		default:
			e.Type = TokenTypeNormal
		}
		if e.Type == TokenTypeUnknown || e.Type == TokenTypeByte || e.Type == TokenTypeControl {
			e.Score = 0 // never the product of a merge
		}
	}
	return out
}

// UnknownID returns the id of the unknown piece, -1 when there is none.
func (t *Tokenizer) UnknownID() int { return int(t.unk) }

// AddsSpacePrefix reports whether a "▁" is put in front of the text before
// BPE (SentencePiece add_dummy_prefix, the Prepend normalizer or a
// Metaspace pre-tokenizer that prepends); false for a byte-level tokenizer.
func (t *Tokenizer) AddsSpacePrefix() bool { return t.prepend != prependNever }

// ByteLevel reports whether the vocabulary is byte-level BPE (GPT-2,
// Llama 3, Qwen2: pieces spelt with GPT-2's bytes_to_unicode characters,
// "Ġthe" for " the"), as opposed to SentencePiece-style pieces ("▁the",
// <0xNN>). GGUF calls the former tokenizer.ggml.model "gpt2", the latter
// "llama".
func (t *Tokenizer) ByteLevel() bool { return t.pre != nil }

// TokenBytes returns the bytes that token id stands for in text: a
// SentencePiece piece's text with "▁" as a space, a <0xNN> piece's byte, a
// byte-level piece's bytes (which may be part of a UTF-8 character). It is
// nil for tokens that are not text of the vocabulary (control and added
// tokens, the unknown piece, holes) and for ids out of range.
func (t *Tokenizer) TokenBytes(id int) []byte {
	if id < 0 || id >= len(t.pieces) || int32(id) == t.unk || t.addedIDs[int32(id)] {
		return nil
	}
	if _, unused := t.revMerge[int32(id)]; unused {
		return nil
	}
	p := t.pieces[id]
	switch t.kinds[id] {
	case kindNormal:
		if t.pre != nil {
			return appendPieceBytes(nil, p)
		}
		return []byte(strings.ReplaceAll(p, spaceSym, " "))
	case kindByte:
		b, _ := parseBytePiece(p)
		return []byte{b}
	}
	return nil
}

// PadID returns the id of tokenizer_config.json's (or
// special_tokens_map.json's) pad_token, -1 when none is named or it is
// not in the vocabulary.
func (t *Tokenizer) PadID() int { return t.pad }

// IsAdded reports whether id is an added token (tokenizer.json's
// added_tokens, added_tokens.json, added_tokens_decoder): matched whole in
// the text, special or not (IsSpecial).
func (t *Tokenizer) IsAdded(id int) bool { return t.addedIDs[int32(id)] }

// MergeList returns a byte-level tokenizer's model.merges as "a b"
// strings in file order, duplicates kept, a space inside a part written
// as "Ġ" (U+0120) as gguf-py's SpecialVocab writes merges given as pairs;
// nil for a SentencePiece-style tokenizer.
func (t *Tokenizer) MergeList() []string { return slices.Clone(t.mergeText) }

// AddSpecialDecided reports whether AddBOS and AddEOS come from the
// tokenizer rather than a default: the post_processor's template puts a
// special token before (bos) or after (eos) the text, or
// tokenizer_config.json sets add_bos_token (bos) or add_eos_token (eos).
// Always false for a SentencePiece-style tokenizer's template-less
// default.
func (t *Tokenizer) AddSpecialDecided() (bos, eos bool) { return t.bosDecided, t.eosDecided }

// PreTokenizer describes a byte-level tokenizer's pre-tokenizer steps in
// order, for messages: `Split(Regex "…")`, `Split(String "…")`,
// `Digits`, `Punctuation`, `ByteLevel(use_regex)` (GPT-2's split) or
// `ByteLevel`; nil for a SentencePiece-style tokenizer.
func (t *Tokenizer) PreTokenizer() []string {
	if t.pre == nil {
		return nil
	}
	var out []string
	for _, st := range t.pre.steps {
		switch st.kind {
		case stepRegex:
			out = append(out, "Split(Regex "+strconv.Quote(st.re.src)+")")
		case stepString:
			out = append(out, "Split(String "+strconv.Quote(st.lit)+")")
		case stepDigits:
			out = append(out, "Digits")
		case stepPunct:
			out = append(out, "Punctuation")
		case stepByteLevel:
			if st.useRegex {
				out = append(out, "ByteLevel(use_regex)")
			} else {
				out = append(out, "ByteLevel")
			}
		}
	}
	return out
}
