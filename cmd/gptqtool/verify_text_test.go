package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
)

// TestGGUFTokenizerMatchesByteLevel: the tokenizer files beside a GGUF
// file of a byte-level vocabulary (llama.cpp's "gpt2": pieces spelt as in
// tokenizer.json) match it; BOS is compared only where the tokenizer
// files have one (llama.cpp writes one for Qwen2, whose files have none);
// another piece at an id is refused.
func TestGGUFTokenizerMatchesByteLevel(t *testing.T) {
	dir := byteLevelDir(t)
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	pieces := make([]string, tok.VocabSize())
	for id := range pieces {
		pieces[id] = tok.Piece(id)
	}
	write := func(pieces []string) string {
		path := filepath.Join(t.TempDir(), "m.gguf")
		w, err := gguf.Create(path, []gguf.KV{{Key: "tokenizer.ggml.model", Value: "gpt2"}, {Key: "tokenizer.ggml.tokens", Value: pieces},
			{Key: "tokenizer.ggml.bos_token_id", Value: uint32(256)}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return path
	}
	if err := ggufTokenizerMatches(write(pieces), tok); err != nil {
		t.Errorf("the same vocabulary: %v", err)
	}
	other := slices.Clone(pieces)
	other[33] = "Ġ" // (33 is "!"; 32, the space, is "Ġ")
	if err := ggufTokenizerMatches(write(other), tok); err == nil || !strings.Contains(err.Error(), `token 33 is "Ġ"`) {
		t.Errorf("another piece at id 33: %v", err)
	}
}

// TestLoadTextBOS: perplexity's text gets BOS in front where the
// tokenizer puts one before a text (stories260K's SentencePiece
// tokenizer), and nothing where it has none (a byte-level tokenizer
// without BOS, as Qwen2's), where it got id -1.
func TestLoadTextBOS(t *testing.T) {
	text := filepath.Join(t.TempDir(), "text.txt")
	if err := os.WriteFile(text, []byte("Once upon a time"), 0o644); err != nil {
		t.Fatal(err)
	}
	ids, err := loadText(filepath.Join("..", "..", "formats", "tokenizer", "testdata", "stories260K"), text)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{1, 403, 407, 261, 378}; !slices.Equal(ids, want) {
		t.Errorf("stories260K: %v, want %v", ids, want)
	}

	ids, err = loadText(byteLevelDir(t), text)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{'O', 'n', 'c', 'e', ' ', 'u', 'p', 'o', 'n', ' ', 'a', ' ', 't', 'i', 'm', 'e'}; !slices.Equal(ids, want) {
		t.Errorf("byte-level without BOS: %v, want the bytes %v", ids, want)
	}
}

// byteLevelDir writes a byte-level tokenizer without BOS (Qwen2's kind):
// the 256 bytes in GPT-2's spelling and <|endoftext|> (256), EOS.
func byteLevelDir(t *testing.T) string {
	t.Helper()
	vocab := map[string]int{}
	for b := range 256 {
		vocab[tokenizer.ByteLevelSpelling(string([]byte{byte(b)}))] = b
	}
	vj, err := json.Marshal(vocab)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	js := `{"added_tokens":[{"id":256,"content":"<|endoftext|>","special":true}],"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false},` +
		`"post_processor":{"type":"ByteLevel"},"decoder":{"type":"ByteLevel"},"model":{"type":"BPE","vocab":` + string(vj) + `,"merges":[]}}`
	for name, s := range map[string]string{"tokenizer.json": js, "tokenizer_config.json": `{"bos_token":null,"eos_token":"<|endoftext|>"}`} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
