package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzEncode checks that encoding never panics, and that for valid UTF-8
// without U+2581 decoding gives the text back, in one piece and streamed.
func FuzzEncode(f *testing.F) {
	tok, err := Load(filepath.Join("testdata", "stories260K"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", "Once upon a time", "x  y", " \t\n", "日本語 🤖", "<s>hi</s>", "\xff\xfe", "▁"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := tok.Encode(s)
		if !utf8.ValidString(s) {
			if err == nil {
				t.Fatalf("Encode(%q): no error for invalid utf-8", s)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tok.EncodeSpecial(s); err != nil {
			t.Fatal(err)
		}
		if _, err := tok.EncodeChat([]Message{{Role: "user", Content: s}}, ChatOptions{Template: "openchat"}); err == nil {
			t.Fatal("openchat template on stories260K (no <|end_of_turn|>): no error")
		}
		dec, err := tok.Decode(ids)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(s, spaceSym) && dec != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, dec)
		}
		checkStreaming(t, tok, ids)
	})
}

// FuzzLoadJSON checks that parsing tokenizer.json never panics and that a
// tokenizer it accepts encodes and decodes without panicking.
func FuzzLoadJSON(f *testing.F) {
	valid, err := os.ReadFile(filepath.Join("testdata", "stories260K", "tokenizer.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"<0x61>":3},"merges":[["a","b"]],"byte_fallback":true}}`))
	f.Add([]byte(`{"pre_tokenizer":{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false},"added_tokens":[{"id":3,"content":"<x>","special":true,"lstrip":true}],"model":{"type":"BPE","vocab":{"▁":0,"a":1,"▁a":2},"merges":["▁ a"],"unk_token":"a"}}`))
	f.Add([]byte(`{"model":{"vocab":{"a":5},"merges":[]}}`))
	// Byte-level: a Split then ByteLevel, NFC, a template adding BOS.
	f.Add([]byte(tinyByteLevel{pattern: `(?i:'s)|\p{L}+|\p{N}{1,3}|\s+(?!\S)|\s+|.`, merges: []string{"a b", "Ġ a"}, normalizer: `{"type":"NFC"}`,
		added: `[{"id":300,"content":"<x>","special":true}]`,
		post:  `{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<x>"}},{"Sequence":{"id":"A"}}],"special_tokens":{"<x>":{"ids":[300]}}}`}.json(f)))
	tiny, err := os.ReadFile(filepath.Join("testdata", "bytelevel-tiny", "tokenizer.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tiny)
	f.Add([]byte(`{"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},{"type":"ByteLevel"},{"type":"Split","pattern":{"String":"a"},"behavior":"MergedWithNext","invert":true}]},"decoder":{"type":"ByteLevel"},"model":{"type":"BPE","vocab":{"a":0,"b":1,"Ġ":2},"merges":[],"ignore_merges":true}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := parseJSON(data)
		if err != nil {
			return
		}
		for _, s := range []string{"ab a<x>", " ▁ é", ""} {
			ids, err := tok.EncodeSpecial(s)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tok.Decode(ids); err != nil {
				t.Fatalf("Decode(EncodeSpecial(%q)) = %v: %v", s, ids, err)
			}
		}
	})
}

// FuzzLoadSentencePiece checks that parsing tokenizer.model never panics.
func FuzzLoadSentencePiece(f *testing.F) {
	f.Add(spModelBytes(f, 2, tinyPieces()))
	f.Add(spModelBytes(f, 2, tinyPieces()[:10]))
	f.Add([]byte{0x0a, 0x03, 0x0a, 0x01, 0x61})
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := parseSentencePiece(data)
		if err != nil {
			return
		}
		for _, s := range []string{"abc aab", " é", ""} {
			ids, err := tok.EncodeSpecial(s)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tok.Decode(ids); err != nil {
				t.Fatalf("Decode(EncodeSpecial(%q)) = %v: %v", s, ids, err)
			}
		}
	})
}
