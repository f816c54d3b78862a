package gguf_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/ggmlvocab"
)

// Phi-4-mini-instruct's tokenizer scaled down: GPT-2's byte-level
// vocabulary and merges (llama.cpp's ggml-vocab-gpt-2, <|endoftext|> its
// last id 50256, where Phi-4-mini's is 199999) under Phi-4-mini's
// pre-tokenizer (GPT-4o's o200k Split, then ByteLevel), its chat tokens
// added after it and [PADn] ids up to phi4MiniVocab (Phi-4-mini: 200064).
const (
	phi4MiniEOT   = 50256
	phi4MiniVocab = 50264
)

// phi4MiniAdded are the chat tokens added from 50257 (Phi-4-mini's
// <|end|> is 200020, <|user|> 200021, …), special as there.
var phi4MiniAdded = []string{"<|system|>", "<|end|>", "<|user|>", "<|assistant|>"}

// phi4MiniTokenizerDir writes that tokenizer: tokenizer.json and a
// tokenizer_config.json with Phi-4-mini's keys (GPT2Tokenizer, bos, eos,
// pad and unk <|endoftext|>, add_bos_token and add_eos_token false, a
// chat template of its tokens).
func phi4MiniTokenizerDir(t *testing.T) string {
	t.Helper()
	ref := ggmlvocab.Open(t, filepath.Join("..", "tokenizer", "testdata", "llamacpp", "ggml-vocab-gpt-2.gguf.gz"))
	b, err := json.Marshal(ggmlvocab.TokenizerJSON(t, ref, ggmlvocab.Setup{
		Normalizer: "null", PreTokenizer: ggmlvocab.SplitThenByteLevel(ggmlvocab.GPT4oSplit), PostProcessor: ggmlvocab.ByteLevelStep}))
	if err != nil {
		t.Fatal(err)
	}
	var tj map[string]any
	if err := json.Unmarshal(b, &tj); err != nil {
		t.Fatal(err)
	}
	added, _ := tj["added_tokens"].([]any)
	decoder := map[string]any{}
	for i, content := range append([]string{"<|endoftext|>"}, phi4MiniAdded...) {
		id := phi4MiniEOT + i
		e := map[string]any{"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
		if i > 0 {
			added = append(added, e)
		}
		decoder[strconv.Itoa(id)] = map[string]any{"content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
	}
	tj["added_tokens"] = added
	dir := t.TempDir()
	writeJSON(t, filepath.Join(dir, "tokenizer.json"), tj)
	writeJSON(t, filepath.Join(dir, "tokenizer_config.json"), map[string]any{
		"add_bos_token": false, "add_eos_token": false, "add_prefix_space": false, "added_tokens_decoder": decoder,
		"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
		"chat_template":                "{% for message in messages %}{{'<|' + message['role'] + '|>' + message['content'] + '<|end|>'}}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}",
		"clean_up_tokenization_spaces": false, "model_max_length": 131072, "tokenizer_class": "GPT2Tokenizer",
	})
	return dir
}

// phi4MiniCheckpoint is a random-weight Phi-4-mini: phi3 with partial
// RoPE and longrope (phi3Partial), tied embeddings, bos, eos and pad
// <|endoftext|> in config.json, and phi4MiniTokenizerDir's tokenizer.
// The tokenizer's check hash, which no published vocabulary has, is named
// gpt-4o for the test, as Phi-4-mini's is in convert_hf_to_gguf.py.
func phi4MiniCheckpoint(t *testing.T) *checkpoint {
	t.Helper()
	edit := phi3Partial()
	for k, v := range map[string]any{"vocab_size": phi4MiniVocab, "tie_word_embeddings": true,
		"bos_token_id": phi4MiniEOT, "eos_token_id": phi4MiniEOT, "pad_token_id": phi4MiniEOT} {
		edit[k] = v
	}
	dir := fixtures.Phi3(t, edit, synth.Options{DType: "f32", Seed: 13, TokenizerDir: phi4MiniTokenizerDir(t)})
	ck := openCheckpointDir(t, dir)
	if _, err := gguf.ByteLevelPre(ck.tok); !errors.Is(err, gguf.ErrUnknownPreTokenizer) {
		t.Fatalf("ByteLevelPre of the small vocabulary: %v, want ErrUnknownPreTokenizer", err)
	}
	h, err := gguf.CheckHash(ck.tok)
	if err != nil {
		t.Fatal(err)
	}
	gguf.SetCheckHash(t, h, "gpt-4o")
	return ck
}

// phi4MiniTexts are texts where GPT-4o's split differs from Llama 3's
// and GPT-2's: contractions after upper-case letters, case changes
// inside words, digits by three, CJK beside Latin, emoji, punctuation
// with newlines and slashes, runs of spaces and newlines.
var phi4MiniTexts = []string{
	"Hello, world!",
	"I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL",
	"HelloWorld CamelCASE HTTPServer getHTTPResponse iPhone",
	"3 33 333 3333 33333 1234567 3.14159 x2y 1,000,000",
	"我想在apple工作1314151天～ 東京タワー 한국어",
	"🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅ 🦙🦙",
	"func main() {\n\tfmt.Println(42)\n}\n\n  \t x\n",
	"a/b...\n//c https://example.com/path?q=1 ------======= \"\"\"''''",
	"The  capital   of France\n\n\nis Paris.  ",
	"naïve café нещо на Български",
	"ÉCOLE École ĲSSEL ǅemal Ὰι ΑΘΗΝΑ Αθήνα",
}

// TestConvertPhi4MiniTokenizer converts a Phi-4-mini checkpoint: the phi3
// architecture (rope.dimension_count its rotary 12 of 16) with the
// byte-level tokenizer as convert_hf_to_gguf.py's Phi3MiniModel.set_vocab
// writes a GPT2Tokenizer's (_set_vocab_gpt2): model gpt2, pre gpt-4o,
// tokenizer.json's pieces and merges, no scores, the chat tokens control,
// [PADn] unused up to vocab_size, bos/eos/unk/pad <|endoftext|>,
// add_bos_token and add_eos_token false, no add_space_prefix, the chat
// template; none of the SentencePiece keys phi3VocabKVs writes for
// Phi-3.
func TestConvertPhi4MiniTokenizer(t *testing.T) {
	ck := phi4MiniCheckpoint(t)
	c := convertWith(t, ck, gguf.TypeF16, gguf.ConvertOptions{Type: gguf.TypeF16})
	eot := uint32(phi4MiniEOT)
	for key, want := range map[string]any{
		"general.architecture": "phi3", "phi3.rope.dimension_count": uint32(12),
		"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-4o",
		"tokenizer.ggml.bos_token_id": eot, "tokenizer.ggml.eos_token_id": eot,
		"tokenizer.ggml.unknown_token_id": eot, "tokenizer.ggml.padding_token_id": eot,
		"tokenizer.ggml.add_bos_token": false, "tokenizer.ggml.add_eos_token": false,
	} {
		if got, ok := c.file.Get(key); !ok || got != want {
			t.Errorf("%s = %v (%v), want %v", key, got, ok, want)
		}
	}
	for _, key := range []string{"tokenizer.ggml.scores", "tokenizer.ggml.add_space_prefix"} {
		if _, ok := c.file.Get(key); ok {
			t.Errorf("%s written: Phi3MiniModel's _set_vocab_gpt2 writes none", key)
		}
	}
	if _, ok := c.file.Tensor("output.weight"); ok {
		t.Error("output.weight written for tied embeddings")
	}
	if tmpl, err := gguf.Value[string](c.file, "tokenizer.chat_template"); err != nil || tmpl != ck.tok.ChatTemplate() {
		t.Errorf("tokenizer.chat_template = %q, %v, want the tokenizer's", tmpl, err)
	}
	tokens, err := gguf.Value[[]string](c.file, "tokenizer.ggml.tokens")
	if err != nil {
		t.Fatal(err)
	}
	types, err := gguf.Value[[]int32](c.file, "tokenizer.ggml.token_type")
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != phi4MiniVocab || len(types) != phi4MiniVocab {
		t.Fatalf("%d tokens, %d types, want %d", len(tokens), len(types), phi4MiniVocab)
	}
	want := map[int]struct {
		piece string
		typ   tokenizer.TokenType
	}{
		phi4MiniEOT: {"<|endoftext|>", tokenizer.TokenTypeControl}, phi4MiniEOT + 2: {"<|end|>", tokenizer.TokenTypeControl},
		phi4MiniEOT + 4: {"<|assistant|>", tokenizer.TokenTypeControl}, phi4MiniVocab - 1: {fmt.Sprintf("[PAD%d]", phi4MiniVocab-1), tokenizer.TokenTypeUnused},
	}
	for id, w := range want {
		if tokens[id] != w.piece || types[id] != int32(w.typ) {
			t.Errorf("token %d = %q type %d, want %q type %d", id, tokens[id], types[id], w.piece, w.typ)
		}
	}
	for id := range phi4MiniEOT {
		if tokens[id] != ck.tok.Piece(id) || types[id] != int32(tokenizer.TokenTypeNormal) {
			t.Fatalf("token %d = %q type %d, want the tokenizer's %q, normal", id, tokens[id], types[id], ck.tok.Piece(id))
		}
	}
	merges, err := gguf.Value[[]string](c.file, "tokenizer.ggml.merges")
	if err != nil {
		t.Fatal(err)
	}
	if wantMerges := ck.tok.MergeList(); !slices.Equal(merges, wantMerges) {
		t.Errorf("merges: %s", firstDiff(merges, wantMerges))
	}
	// Our tokenizer splits the texts as GPT-4o does: a text's ids are
	// the concatenation of its o200k pre-tokens' ids.
	ids, err := ck.tok.Encode("HTTPServer's 12345")
	if err != nil {
		t.Fatal(err)
	}
	var pieces []int
	for _, p := range []string{"HTTPServer's", " ", "123", "45"} {
		x, err := ck.tok.Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		pieces = append(pieces, x...)
	}
	if !slices.Equal(ids, pieces) {
		t.Errorf("Encode(%q) = %v, want its pre-tokens' ids %v", "HTTPServer's 12345", ids, pieces)
	}
}

// TestLlamaCppPhi4Mini: llama.cpp (node-llama-cpp) loads the F32 file of
// the Phi-4-mini checkpoint (phi3, partial RoPE, longrope, tied, the gpt2
// tokenizer with pre gpt-4o), tokenizes phi4MiniTexts to our tokenizer's
// ids, and its next-token log-probabilities on prompts of those ids are
// our runtime's on the checkpoint within the F32 tolerance (4e-6 here).
// The file with pre llama-bpe (Llama 3's split) written over it
// tokenizes some text otherwise (the case changes inside words).
func TestLlamaCppPhi4Mini(t *testing.T) {
	node := llamaCppAvailable(t)
	ck := phi4MiniCheckpoint(t)
	var prompts [][]int
	for _, text := range phi4MiniTexts {
		ids, err := ck.tok.Encode(text)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) > 60 {
			ids = ids[:60]
		}
		prompts = append(prompts, ids)
	}
	c := convertWith(t, ck, gguf.TypeF32, gguf.ConvertOptions{Type: gguf.TypeF32})
	// The same file with Llama 3's pre-tokenizer named: llama.cpp must
	// split some text otherwise, or the check cannot tell the names.
	kv, err := gguf.ParseKVOverride("tokenizer.ggml.pre=str:llama-bpe")
	if err != nil {
		t.Fatal(err)
	}
	llama3 := convertWith(t, ck, gguf.TypeF16, gguf.ConvertOptions{Type: gguf.TypeF16, KVOverrides: []gguf.KV{kv}})
	resp := runLlamaCpp(t, node, llamaRequest{Models: []llamaModel{{Path: c.path, Context: 96, Tokenize: phi4MiniTexts, Logits: prompts},
		{Path: llama3.path, Context: 96, Tokenize: phi4MiniTexts}}})
	t.Logf("llama.cpp %s", resp.LlamaCpp)
	differ := 0
	for j := range phi4MiniTexts {
		if !slices.Equal(resp.Models[1].Tokenize[j], resp.Models[0].Tokenize[j]) {
			differ++
			t.Logf("pre llama-bpe tokenizes %q otherwise", phi4MiniTexts[j])
		}
	}
	t.Logf("pre llama-bpe: %d of %d texts tokenized otherwise", differ, len(phi4MiniTexts))
	if differ == 0 {
		t.Error("llama.cpp tokenizes every text alike with pre llama-bpe: the check cannot tell gpt-4o")
	}
	for j, text := range phi4MiniTexts {
		want, err := ck.tok.Encode(text)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Models[0].Tokenize[j]; !slices.Equal(got, want) {
			t.Errorf("tokenize %q: llama.cpp %v, ours %v", text, got, want)
		}
	}
	d := llamaDiff(t, resp.Models[0].LogProbs, nextLogProbs(t, loadRuntime(t, fusedView(t, ck.set, ck.cfg), ck.cfg), prompts), ck.cfg.VocabSize)
	t.Logf("F32: llama.cpp vs our runtime: %v", d)
	llamaTolerances[gguf.TypeF32].check(t, "llama.cpp vs our runtime on F32", d)
}
