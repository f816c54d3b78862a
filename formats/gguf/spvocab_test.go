package gguf_test

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/internal/fixtures"
)

// spPiece is one ModelProto.SentencePiece {piece=1, score=2, type=3}.
type spPiece struct {
	piece string
	score float32
	typ   int32
}

// readModelProto parses the pieces of tokenizer.model with a protobuf
// reader of its own (sentencepiece_model.proto), independently of
// formats/tokenizer.
func readModelProto(t *testing.T, path string) []spPiece {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// fields returns (field number, wire type, payload) of a message.
	type fieldT struct {
		num, wire uint64
		v         []byte
		x         uint64
	}
	fields := func(b []byte) []fieldT {
		var out []fieldT
		for len(b) > 0 {
			tag, n := binary.Uvarint(b)
			if n <= 0 {
				t.Fatalf("%s: bad tag", path)
			}
			b = b[n:]
			f := fieldT{num: tag >> 3, wire: tag & 7}
			switch f.wire {
			case 0:
				f.x, n = binary.Uvarint(b)
				b = b[n:]
			case 1:
				f.x, b = binary.LittleEndian.Uint64(b), b[8:]
			case 2:
				l, n := binary.Uvarint(b)
				f.v, b = b[n:n+int(l)], b[n+int(l):]
			case 5:
				f.x, b = uint64(binary.LittleEndian.Uint32(b)), b[4:]
			default:
				t.Fatalf("%s: wire type %d", path, f.wire)
			}
			out = append(out, f)
		}
		return out
	}
	var pieces []spPiece
	for _, f := range fields(data) {
		if f.num != 1 || f.wire != 2 {
			continue
		}
		p := spPiece{typ: 1} // NORMAL, the proto default
		for _, g := range fields(f.v) {
			switch g.num {
			case 1:
				p.piece = string(g.v)
			case 2:
				p.score = math.Float32frombits(uint32(g.x))
			case 3:
				p.typ = int32(g.x)
			}
		}
		pieces = append(pieces, p)
	}
	return pieces
}

// TestSentencePieceVocab checks the vocabulary against what llama.cpp's
// convert_hf_to_gguf.py (_create_vocab_sentencepiece) writes: pieces and
// scores of tokenizer.model read here with a protobuf reader of the test's
// own, and hand-derived entries for the unknown, control, byte, added and
// padding ids.
func TestSentencePieceVocab(t *testing.T) {
	src := fixture(t, "models/openchat-tiny")
	pieces := readModelProto(t, filepath.Join(src, "tokenizer.model"))
	if len(pieces) != 32000 {
		t.Fatalf("%d pieces in tokenizer.model, want 32000", len(pieces))
	}
	// What the converter types a piece: SentencePiece's IsUnknown,
	// IsControl, IsUnused, IsByte, else normal (user-defined too).
	wantType := func(p spPiece) tokenizer.TokenType {
		switch p.typ {
		case 2, 3, 5, 6:
			return tokenizer.TokenType(p.typ)
		}
		return tokenizer.TokenTypeNormal
	}
	copyFiles := func(t *testing.T, names ...string) string {
		t.Helper()
		dir := t.TempDir()
		fixtures.CopyFiles(t, src, dir, names...)
		return dir
	}
	e := func(piece string, score float32, typ tokenizer.TokenType) tokenizer.VocabEntry {
		return tokenizer.VocabEntry{Piece: piece, Score: score, Type: typ}
	}
	for _, tc := range []struct {
		name      string
		dir       func(t *testing.T) string
		vocabSize int
		// want: hand-derived entries by id; every other id below 32000
		// is the model's piece and score, typed as wantType says.
		want map[int]tokenizer.VocabEntry
	}{
		{
			// The openchat layout: added_tokens.json types 32000/32001
			// user-defined, then tokenizer_config.json's
			// added_tokens_decoder (0, 1, 2, 32000, 32001, all special)
			// makes each a control token scored -1000, <unk> included.
			name:      "openchat",
			dir:       func(t *testing.T) string { return src },
			vocabSize: 32002,
			want: map[int]tokenizer.VocabEntry{
				0: e("<unk>", -1000, 3), 1: e("<s>", -1000, 3), 2: e("</s>", -1000, 3),
				3: e("<0x00>", 0, 6), 13: e("<0x0A>", 0, 6), 258: e("<0xFF>", 0, 6),
				32000: e("<|end_of_turn|>", -1000, 3), 32001: e("<|pad_0|>", -1000, 3),
			},
		},
		{
			// Without tokenizer_config.json: the model's own types and
			// scores for 0..2, added_tokens.json's user-defined tokens,
			// and [PADn] unused ids scored -10000 up to vocab_size.
			name:      "added_tokens.json only",
			dir:       func(t *testing.T) string { return copyFiles(t, "tokenizer.model", "added_tokens.json") },
			vocabSize: 32004,
			want: map[int]tokenizer.VocabEntry{
				0: e("<unk>", 0, 2), 1: e("<s>", 0, 3), 2: e("</s>", 0, 3), 13: e("<0x0A>", 0, 6),
				32000: e("<|end_of_turn|>", -1000, 4), 32001: e("<|pad_0|>", -1000, 4),
				32002: e("[PAD32002]", -10000, 5), 32003: e("[PAD32003]", -10000, 5),
			},
		},
		{
			// tokenizer.model alone, padded.
			name:      "tokenizer.model only",
			dir:       func(t *testing.T) string { return copyFiles(t, "tokenizer.model") },
			vocabSize: 32002,
			want: map[int]tokenizer.VocabEntry{
				0: e("<unk>", 0, 2), 32000: e("[PAD32000]", -10000, 5), 32001: e("[PAD32001]", -10000, 5),
			},
		},
		{
			// added_tokens_decoder entries not flagged special: <|…|>
			// looks special (control); others are user-defined, "▁"
			// written as a space; ids past vocab_size are left out.
			name: "not special",
			dir: func(t *testing.T) string {
				dir := copyFiles(t, "tokenizer.model")
				cfg := `{"added_tokens_decoder": {
					"32000": {"content": "<|im_start|>", "special": false},
					"32001": {"content": "foo▁bar", "special": false},
					"32002": {"content": "<pad>"},
					"32003": {"content": "<out of range>", "special": true}}}`
				if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(cfg), 0o644); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			vocabSize: 32003,
			want: map[int]tokenizer.VocabEntry{
				32000: e("<|im_start|>", -1000, 3), 32001: e("foo bar", -1000, 4), 32002: e("<pad>", -1000, 3),
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := gguf.SentencePieceVocab(tc.dir(t), tc.vocabSize)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.vocabSize {
				t.Fatalf("%d entries, want %d", len(got), tc.vocabSize)
			}
			for id, g := range got {
				w, ok := tc.want[id]
				if !ok {
					if id >= len(pieces) {
						t.Fatalf("id %d: no expectation", id)
					}
					p := pieces[id]
					w = e(p.piece, p.score, wantType(p))
				}
				if g != w {
					t.Errorf("id %d: %+v, want %+v", id, g, w)
				}
			}
		})
	}
	// A normal piece keeps the model's (nonzero) score: spot-check one
	// read from the model, not derived from merges.
	if p := pieces[1000]; p.typ != 1 || p.score == 0 {
		t.Errorf("piece 1000 %+v: want a scored normal piece", p)
	}

	t.Run("no tokenizer.model", func(t *testing.T) {
		_, err := gguf.SentencePieceVocab(t.TempDir(), 32000)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want one wrapping fs.ErrNotExist", err)
		}
	})
	t.Run("more pieces than vocab_size", func(t *testing.T) {
		_, err := gguf.SentencePieceVocab(src, 31999)
		if err == nil {
			t.Error("no error for vocab_size 31999 < 32000 pieces")
		}
	})
}
