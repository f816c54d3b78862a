package tokenizer

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// TestVocabEntriesSentencePiece compares VocabEntries of a tokenizer.model
// with the pieces of the ModelProto read here field by field
// (sentencepiece_model.proto: pieces = 1 {piece = 1, score = 2, type = 3}).
func TestVocabEntriesSentencePiece(t *testing.T) {
	path := filepath.Join(fixtures, "models", "openchat-tiny", "tokenizer.model")
	needFile(t, path)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type piece struct {
		text  string
		score float32
		typ   TokenType
	}
	var pieces []piece
	for b := data; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatal(protowire.ParseError(n))
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if num == 1 && typ == protowire.BytesType {
			msg, _ := protowire.ConsumeBytes(b)
			p := piece{typ: TokenTypeNormal}
			for m := msg; len(m) > 0; {
				fn, ft, k := protowire.ConsumeTag(m)
				m = m[k:]
				switch {
				case fn == 1 && ft == protowire.BytesType:
					v, k := protowire.ConsumeBytes(m)
					p.text, m = string(v), m[k:]
				case fn == 2 && ft == protowire.Fixed32Type:
					v, k := protowire.ConsumeFixed32(m)
					p.score, m = math.Float32frombits(v), m[k:]
				case fn == 3 && ft == protowire.VarintType:
					v, k := protowire.ConsumeVarint(m)
					p.typ, m = TokenType(v), m[k:]
				default:
					m = m[protowire.ConsumeFieldValue(fn, ft, m):]
				}
			}
			pieces = append(pieces, p)
		}
		b = b[n:]
	}
	tok, err := LoadSentencePiece(path)
	if err != nil {
		t.Fatal(err)
	}
	got := tok.VocabEntries()
	if len(got) != len(pieces) {
		t.Fatalf("%d entries, the model has %d pieces", len(got), len(pieces))
	}
	counts := map[TokenType]int{}
	for id, p := range pieces {
		// A normal piece of two or more characters is built by a merge
		// and keeps its score; nothing else is ever merged into.
		want := VocabEntry{Piece: p.text, Type: p.typ}
		if p.typ == TokenTypeNormal && utf8.RuneCountInString(p.text) > 1 {
			want.Score = p.score
		}
		if got[id] != want {
			t.Errorf("id %d: %+v, want %+v", id, got[id], want)
		}
		counts[got[id].Type]++
	}
	// Mistral's vocabulary: <unk>, <s>, </s>, 256 byte pieces, the rest BPE.
	if counts[TokenTypeUnknown] != 1 || counts[TokenTypeControl] != 2 || counts[TokenTypeByte] != 256 {
		t.Errorf("type counts %v, want 1 unknown, 2 control, 256 byte", counts)
	}
	if tok.UnknownID() != 0 || !tok.AddsSpacePrefix() {
		t.Errorf("UnknownID() = %d, AddsSpacePrefix() = %v; want 0, true", tok.UnknownID(), tok.AddsSpacePrefix())
	}
}

// TestVocabEntriesAdded checks the types of added tokens: special ones are
// control tokens, others user-defined, and ids beyond them holes.
func TestVocabEntriesAdded(t *testing.T) {
	needFile(t, filepath.Join(tinyDir, "tokenizer.json"))
	tok, err := Load(tinyDir)
	if err != nil {
		t.Fatal(err)
	}
	e := tok.VocabEntries()
	if len(e) != 32002 {
		t.Fatalf("%d entries, want 32002", len(e))
	}
	for id, want := range map[int]VocabEntry{
		0:     {Piece: "<unk>", Type: TokenTypeUnknown},
		1:     {Piece: "<s>", Type: TokenTypeControl},
		13:    {Piece: "<0x0A>", Type: TokenTypeByte},
		32000: {Piece: "<|end_of_turn|>", Type: TokenTypeControl},
		32001: {Piece: "<|pad_0|>", Type: TokenTypeControl},
	} {
		if e[id] != want {
			t.Errorf("id %d: %+v, want %+v", id, e[id], want)
		}
	}
	if e[28705].Type != TokenTypeNormal || e[28705].Piece != "▁" {
		t.Errorf("id 28705: %+v, want the normal piece ▁", e[28705])
	}
}
