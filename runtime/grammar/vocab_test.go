package grammar

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
)

// TestNewVocabByteLevel: a byte-level tokenizer's tokens are their bytes
// ("Ġ" a space, "Ċ" a newline, "Ã" the byte C3), so a grammar allows the
// token that spells " yes" and the two bytes of "é" one after the other;
// added tokens are not text.
func TestNewVocabByteLevel(t *testing.T) {
	// ids 0..255: the bytes in GPT-2's spelling (bytes_to_unicode), 256
	// "Ġyes", 257 an added token.
	vocab := map[string]int{"Ġyes": 256}
	for b := range 256 {
		vocab[tokenizer.ByteLevelSpelling(string([]byte{byte(b)}))] = b
	}
	vj, err := json.Marshal(vocab)
	if err != nil {
		t.Fatal(err)
	}
	js := `{"added_tokens":[{"id":257,"content":"<|end|>","special":true}],"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false},` +
		`"decoder":{"type":"ByteLevel"},"model":{"type":"BPE","vocab":` + string(vj) + `,"merges":[]}}`
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(path, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.LoadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	v := NewVocab(tok)
	for id, want := range map[int]string{256: " yes", ' ': " ", 'a': "a", 0xC3: "\xC3", '\n': "\n", 257: ""} {
		if got := v.Text(id); got != want {
			t.Errorf("Text(%d) = %q, want %q", id, got, want)
		}
	}
	g, err := Choice([]string{" yes", "é"}, v)
	if err != nil {
		t.Fatal(err)
	}
	m := g.NewMatcher()
	mask, _ := m.Allowed()
	allowed := func(id int) bool { return mask[id>>6]>>(id&63)&1 != 0 }
	for _, id := range []int{256, ' ', 0xC3} {
		if !allowed(id) {
			t.Errorf("token %d (%q) not allowed at the start", id, v.Text(id))
		}
	}
	if allowed(257) || allowed('y') {
		t.Error("<|end|> or y allowed at the start")
	}
	if err := m.Accept(0xC3); err != nil {
		t.Fatal(err)
	}
	if err := m.Accept(0xA9); err != nil {
		t.Fatalf("é's second byte: %v", err)
	}
	if _, end := m.Allowed(); !end {
		t.Error("é accepted but not complete")
	}
}
