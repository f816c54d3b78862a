package tokenizer_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
)

// loadTestdataVocab loads a byte-level tokenizer from the llama.cpp
// vocabularies in testdata ("gpt-2", "qwen2").
func loadTestdataVocab(t testing.TB, name string) *tokenizer.Tokenizer {
	t.Helper()
	dir, _ := writeTokenizerJSON(t, filepath.Join("testdata", "llamacpp", "ggml-vocab-"+name+".gguf.gz"))
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// FuzzByteLevel checks that the byte-level tokenizers (GPT-2, and Qwen2
// with its NFC normalizer) never panic, refuse invalid UTF-8, and give
// valid UTF-8 back on decoding (Qwen2: its NFC form), in one piece and
// streamed, the streamed pieces valid UTF-8.
func FuzzByteLevel(f *testing.F) {
	toks := map[string]*tokenizer.Tokenizer{"gpt-2": loadTestdataVocab(f, "gpt-2"), "qwen2": loadTestdataVocab(f, "qwen2")}
	inp, err := os.ReadFile(filepath.Join("testdata", "llamacpp", "ggml-vocab-qwen2.gguf.inp"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range strings.Split(string(inp), "\n__ggml_vocab_test__\n") {
		f.Add(s)
	}
	for _, s := range []string{"\xff\xfe", "e\u0301", "<|endoftext|>x<|im_start|>", "'S 'ſ 'LL", "\u3000\u3000 x", "a\r\n\r\n  b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for name, tok := range toks {
			ids, err := tok.Encode(s)
			if !utf8.ValidString(s) {
				if err == nil {
					t.Fatalf("%s: Encode(%q): no error for invalid utf-8", name, s)
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			want := s
			if name == "qwen2" {
				want = norm.NFC.String(s)
			}
			dec, err := tok.Decode(ids)
			if err != nil {
				t.Fatal(err)
			}
			if dec != want {
				t.Fatalf("%s: Decode(Encode(%q)) = %q", name, s, dec)
			}
			special, err := tok.EncodeSpecial(s)
			if err != nil {
				t.Fatal(err)
			}
			if dec, err := tok.Decode(special); err != nil || dec != want {
				t.Fatalf("%s: Decode(EncodeSpecial(%q)) = %q, %v", name, s, dec, err)
			}
			d := tok.NewDecoder()
			var b strings.Builder
			for _, id := range ids {
				p, err := d.Add(id)
				if err != nil {
					t.Fatal(err)
				}
				if !utf8.ValidString(p) {
					t.Fatalf("%s: Decoder.Add(%d) = %q: not valid utf-8", name, id, p)
				}
				b.WriteString(p)
			}
			if b.WriteString(d.Flush()); b.String() != dec {
				t.Fatalf("%s: streamed %q, Decode %q", name, b.String(), dec)
			}
		}
	})
}
