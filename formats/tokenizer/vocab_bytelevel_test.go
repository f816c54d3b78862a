package tokenizer

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestByteLevelVocabAccessors: what a GGUF writer needs of a byte-level
// tokenizer besides its pieces: the merges as tokenizer.json lists them,
// the pre-tokenizer, the added tokens, pad and which of add_bos/add_eos
// the tokenizer decides.
func TestByteLevelVocabAccessors(t *testing.T) {
	tok, err := Load(filepath.Join("testdata", "bytelevel-tiny"))
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.MergeList(); len(got) != 10 || got[0] != "H e" || got[4] != "Ġ w" {
		t.Errorf("MergeList() = %q, want 10 merges from \"H e\", 4th \"Ġ w\"", got)
	}
	wantPre := []string{`Split(Regex "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")`, "ByteLevel"}
	if got := tok.PreTokenizer(); !slices.Equal(got, wantPre) {
		t.Errorf("PreTokenizer() = %q, want %q", got, wantPre)
	}
	if !tok.IsAdded(266) || !tok.IsAdded(267) || tok.IsAdded(0) {
		t.Errorf("IsAdded(266, 267, 0) = %v %v %v, want true true false", tok.IsAdded(266), tok.IsAdded(267), tok.IsAdded(0))
	}
	if bos, eos := tok.AddSpecialDecided(); !bos || eos {
		t.Errorf("AddSpecialDecided() = %v %v, want true (the template's <|begin_of_text|>) false", bos, eos)
	}
	if got := tok.PadID(); got != -1 {
		t.Errorf("PadID() = %d, want -1 (no pad_token)", got)
	}

	// tokenizer_config.json's add_eos_token and pad_token decide too.
	dir := t.TempDir()
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", "bytelevel-tiny", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "tokenizer_config.json" {
			b = []byte(`{"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": "<|eot_id|>", "add_eos_token": true}`)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tok, err = Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if bos, eos := tok.AddSpecialDecided(); !bos || !eos {
		t.Errorf("with add_eos_token: AddSpecialDecided() = %v %v, want true true", bos, eos)
	}
	if got := tok.PadID(); got != 267 {
		t.Errorf("with pad_token <|eot_id|>: PadID() = %d, want 267", got)
	}

	sp, err := Load(filepath.Join("testdata", "stories260K"))
	if err != nil {
		t.Fatal(err)
	}
	if sp.MergeList() != nil || sp.PreTokenizer() != nil {
		t.Errorf("SentencePiece tokenizer: MergeList() %d entries, PreTokenizer() %q, want nil", len(sp.MergeList()), sp.PreTokenizer())
	}
}
