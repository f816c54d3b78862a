// Package ggmlvocab reads llama.cpp's tokenizer test vocabularies
// (models/ggml-vocab-*.gguf, gzipped or not) into the tokenizer.json they
// stand for, for the byte-level tests of formats/tokenizer (llama.cpp's
// test vectors) and formats/gguf (the gpt2 vocabulary writer).
package ggmlvocab

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
)

// ModelsEnv names llama.cpp's models folder, for the vocabularies not in
// testdata (Llama 3's is under Meta's license).
const ModelsEnv = "GPTQTOOL_LLAMACPP_MODELS"

// The split patterns of the published tokenizer.json files, as HF
// tokenizers runs them (llama.cpp's llama-vocab.cpp rewrites some for its
// own regex engine; these are the originals it quotes), and the ByteLevel
// step that follows a Split (also their post_processor and decoder).
const (
	Llama3Split = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	Qwen2Split  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// GPT4oSplit is GPT-4o's o200k split, Phi-4-mini-instruct's (llama.cpp's
	// pre-tokenizer gpt-4o).
	GPT4oSplit    = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	ByteLevelStep = `{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}`
)

// SplitThenByteLevel is the pre_tokenizer of Isolated Splits by patterns,
// in order, then ByteLevel without its own regex.
func SplitThenByteLevel(patterns ...string) string {
	var steps []string
	for _, p := range patterns {
		b, _ := json.Marshal(p)
		steps = append(steps, `{"type":"Split","pattern":{"Regex":`+string(b)+`},"behavior":"Isolated","invert":false}`)
	}
	steps = append(steps, ByteLevelStep)
	return `{"type":"Sequence","pretokenizers":[` + strings.Join(steps, ",") + `]}`
}

// Open reads the vocabulary file at path, gzipped where it ends in .gz.
func Open(tb testing.TB, path string) *gguf.File {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			tb.Fatal(err)
		}
		if data, err = io.ReadAll(zr); err != nil {
			tb.Fatal(err)
		}
	}
	f, err := gguf.NewFile(bytes.NewReader(data), int64(len(data)), path)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// Setup is what tokenizer.json says beside the pieces and merges: its
// normalizer, pre_tokenizer and post_processor (JSON) and ignore_merges.
type Setup struct {
	Normalizer, PreTokenizer, PostProcessor string
	IgnoreMerges                            bool
}

// TokenizerJSON is the tokenizer.json document f's vocabulary stands for
// under s: its normal tokens and merges as the BPE model, its control
// tokens as special added tokens and its user-defined ones as normalized
// added tokens (but the [PADn] fillers of vocab_size, which are no
// tokens), a ByteLevel decoder. Any other token type fails tb.
func TokenizerJSON(tb testing.TB, f *gguf.File, s Setup) map[string]any {
	tb.Helper()
	tokens, err := gguf.Value[[]string](f, "tokenizer.ggml.tokens")
	if err != nil {
		tb.Fatal(err)
	}
	types, err := gguf.Value[[]int32](f, "tokenizer.ggml.token_type")
	if err != nil {
		tb.Fatal(err)
	}
	merges, err := gguf.Value[[]string](f, "tokenizer.ggml.merges")
	if err != nil {
		tb.Fatal(err)
	}
	vocab := map[string]int{}
	type added struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		Special    bool   `json:"special"`
		Normalized bool   `json:"normalized"`
	}
	var addedTokens []added
	for id, p := range tokens {
		switch types[id] {
		case 1:
			vocab[p] = id
		case 3:
			addedTokens = append(addedTokens, added{ID: id, Content: p, Special: true})
		case 4:
			if !strings.HasPrefix(p, "[PAD") {
				addedTokens = append(addedTokens, added{ID: id, Content: p, Normalized: true})
			}
		default:
			tb.Fatalf("%s: token %d %q: type %d", f.Path(), id, p, types[id])
		}
	}
	return map[string]any{
		"version":        "1.0",
		"added_tokens":   addedTokens,
		"normalizer":     json.RawMessage(s.Normalizer),
		"pre_tokenizer":  json.RawMessage(s.PreTokenizer),
		"post_processor": json.RawMessage(s.PostProcessor),
		"decoder":        json.RawMessage(ByteLevelStep),
		"model": map[string]any{
			"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil, "end_of_word_suffix": nil,
			"fuse_unk": false, "byte_fallback": false, "ignore_merges": s.IgnoreMerges, "vocab": vocab, "merges": merges,
		},
	}
}
