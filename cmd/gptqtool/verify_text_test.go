package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

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

	vocab := map[string]int{}
	n := 0
	for b := range 256 {
		r := rune(b)
		if !(b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE) {
			r = rune(0x100 + n)
			n++
		}
		vocab[string(r)] = b
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
	ids, err = loadText(dir, text)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{'O', 'n', 'c', 'e', ' ', 'u', 'p', 'o', 'n', ' ', 'a', ' ', 't', 'i', 'm', 'e'}; !slices.Equal(ids, want) {
		t.Errorf("byte-level without BOS: %v, want the bytes %v", ids, want)
	}
}
