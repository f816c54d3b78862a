package publish_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/ggmlvocab"
	"github.com/gptqtool/gptqtool/publish"
)

// TestConvertPhi3ByteLevelGGUF converts, with convert --gguf, a phi3
// checkpoint whose tokenizer is byte-level BPE in tokenizer.json alone
// (no tokenizer.model), as Phi-4's and Phi-4-mini's are: GPT-2's
// vocabulary and pre-tokenizer (llama.cpp's ggml-vocab-gpt-2, a check
// hash convert_hf_to_gguf.py knows), tokenizer_class GPT2Tokenizer,
// add_bos_token false. The file is the phi3 architecture with the
// tokenizer as _set_vocab_gpt2 writes it (model gpt2, pre gpt-2, merges,
// no scores or add_space_prefix), not the SentencePiece keys Phi-3's
// tokenizer takes. (Phi-4-mini's own split, pre gpt-4o, against
// llama.cpp: formats/gguf's TestLlamaCppPhi4Mini.)
func TestConvertPhi3ByteLevelGGUF(t *testing.T) {
	ref := ggmlvocab.Open(t, filepath.Join("..", "formats", "tokenizer", "testdata", "llamacpp", "ggml-vocab-gpt-2.gguf.gz"))
	tokDir := t.TempDir()
	for name, v := range map[string]any{
		"tokenizer.json": ggmlvocab.TokenizerJSON(t, ref, ggmlvocab.Setup{Normalizer: "null",
			PreTokenizer: `{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}`, PostProcessor: ggmlvocab.ByteLevelStep}),
		"tokenizer_config.json": map[string]any{"add_bos_token": false, "add_eos_token": false, "bos_token": "<|endoftext|>",
			"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "tokenizer_class": "GPT2Tokenizer"},
	} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tokDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src := fixtures.Phi3(t, map[string]any{"vocab_size": 50264, "tie_word_embeddings": true, "bos_token_id": 50256, "eos_token_id": 50256,
		"pad_token_id": 50256, "partial_rotary_factor": 0.75}, synth.Options{DType: "f32", Seed: 5, TokenizerDir: tokDir})
	out := filepath.Join(t.TempDir(), "phi3-f32.gguf")
	convert(t, publish.ConvertOptions{In: src, Out: out, GGUF: "f32"})
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for key, want := range map[string]any{"general.architecture": "phi3", "phi3.rope.dimension_count": uint32(12),
		"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2", "tokenizer.ggml.add_bos_token": false,
		"tokenizer.ggml.bos_token_id": uint32(50256), "tokenizer.ggml.eos_token_id": uint32(50256), "tokenizer.ggml.padding_token_id": uint32(50256)} {
		if got, ok := f.Get(key); !ok || got != want {
			t.Errorf("%s = %v (%v), want %v", key, got, ok, want)
		}
	}
	for _, key := range []string{"tokenizer.ggml.scores", "tokenizer.ggml.add_space_prefix"} {
		if _, ok := f.Get(key); ok {
			t.Errorf("%s written: _set_vocab_gpt2 writes none", key)
		}
	}
	tokens, err := gguf.Value[[]string](f, "tokenizer.ggml.tokens")
	if err != nil || len(tokens) != 50264 || tokens[50263] != "[PAD50263]" {
		t.Errorf("tokens: %d, %v; want 50264 ending [PAD50263]", len(tokens), err)
	}
	if merges, err := gguf.Value[[]string](f, "tokenizer.ggml.merges"); err != nil || len(merges) == 0 {
		t.Errorf("merges: %d, %v", len(merges), err)
	}
}
