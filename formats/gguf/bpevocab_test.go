package gguf_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/internal/ggmlvocab"
)

// bpeRepo is what the Hugging Face repository that a llama.cpp vocabulary
// file was converted from says beside the pieces and merges (the
// tokenizer.json parts, tokenizer_config.json and config.json keys),
// as convert_hf_to_gguf_update.py names the repositories.
type bpeRepo struct {
	normalizer, preTokenizer, postProcessor string // tokenizer.json, JSON
	ignoreMerges                            bool
	tokenizerConfig                         map[string]any // chat_template: the reference's
	config                                  map[string]any // token ids of config.json
	// addedKeys are the keys we write that the reference lacks: it was
	// converted before SpecialVocab read the post_processor's template.
	addedKeys map[string]any
}

var bpeRepos = map[string]bpeRepo{
	// openai-community/gpt2
	"gpt-2": {"null", `{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}`, ggmlvocab.ByteLevelStep, false,
		map[string]any{"model_max_length": 1024}, map[string]any{"bos_token_id": 50256, "eos_token_id": 50256}, nil},
	// Qwen/Qwen1.5-7B
	"qwen2": {`{"type":"NFC"}`, ggmlvocab.SplitThenByteLevel(ggmlvocab.Qwen2Split), ggmlvocab.ByteLevelStep, false,
		map[string]any{"bos_token": nil, "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
		map[string]any{"bos_token_id": 151643, "eos_token_id": 151643}, nil},
	// meta-llama/Meta-Llama-3-8B
	"llama-bpe": {"null", ggmlvocab.SplitThenByteLevel(ggmlvocab.Llama3Split),
		`{"type":"Sequence","processors":[` + ggmlvocab.ByteLevelStep + `,{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<|begin_of_text|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],"pair":[],"special_tokens":{"<|begin_of_text|>":{"id":"<|begin_of_text|>","ids":[128000],"tokens":["<|begin_of_text|>"]}}}]}`,
		true, map[string]any{"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"},
		map[string]any{"bos_token_id": 128000, "eos_token_id": 128001},
		map[string]any{"tokenizer.ggml.add_bos_token": true}},
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// bpeCheckpoint writes, in a new folder, the tokenizer files and the
// config.json of a tiny Llama whose vocabulary is the reference's (the
// tokenizer.json ggmlvocab.TokenizerJSON makes of it under the
// repository's normalizer, pre-tokenizer and post-processor) and configs.
// It returns the tokenizer and the config.
func bpeCheckpoint(t *testing.T, ref *gguf.File, repo bpeRepo) (*tokenizer.Tokenizer, *hfconfig.Config) {
	t.Helper()
	tokens, err := gguf.Value[[]string](ref, "tokenizer.ggml.tokens")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeJSON(t, filepath.Join(dir, "tokenizer.json"), ggmlvocab.TokenizerJSON(t, ref, ggmlvocab.Setup{
		Normalizer: repo.normalizer, PreTokenizer: repo.preTokenizer, PostProcessor: repo.postProcessor, IgnoreMerges: repo.ignoreMerges}))
	tc := maps.Clone(repo.tokenizerConfig)
	if tmpl, err := gguf.Value[string](ref, "tokenizer.chat_template"); err == nil {
		tc["chat_template"] = tmpl
	}
	writeJSON(t, filepath.Join(dir, "tokenizer_config.json"), tc)
	cfg := maps.Clone(repo.config)
	for k, v := range map[string]any{"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
		"num_key_value_heads": 2, "max_position_embeddings": 128, "rms_norm_eps": 1e-5,
		"tie_word_embeddings": true, "vocab_size": len(tokens)} {
		cfg[k] = v
	}
	writeJSON(t, filepath.Join(dir, "config.json"), cfg)
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := hfconfig.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tok, c
}

// tinyLlamaTensors gives the tensors of bpeCheckpoint's config: small
// values of the HF shapes.
func tinyLlamaTensors(cfg *hfconfig.Config) gguf.TensorFunc {
	return func(name string) ([]float32, []int, error) {
		h, ff := cfg.HiddenSize, cfg.IntermediateSize
		var shape []int
		switch {
		case name == "model.embed_tokens.weight":
			shape = []int{cfg.VocabSize, h}
		case strings.HasSuffix(name, "norm.weight"):
			shape = []int{h}
		case strings.Contains(name, "_proj.weight") && strings.Contains(name, "self_attn"):
			shape = []int{h, h}
		case strings.HasSuffix(name, "gate_proj.weight"), strings.HasSuffix(name, "up_proj.weight"):
			shape = []int{ff, h}
		case strings.HasSuffix(name, "down_proj.weight"):
			shape = []int{h, ff}
		default:
			return nil, nil, fmt.Errorf("tensor %q: %w", name, fs.ErrNotExist)
		}
		n := 1
		for _, d := range shape {
			n *= d
		}
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(i%7-3) / 64
		}
		return data, shape, nil
	}
}

// TestByteLevelVocabLlamaCpp: a tiny Llama converted with the tokenizer
// of each of llama.cpp's byte-level vocabulary files (which
// convert_hf_to_gguf.py wrote from the Hugging Face repository) holds
// every tokenizer.* key of that file with the same value: pre (found by
// the check hash), tokens, token_type, merges, the special ids, the chat
// template; Plan gives the file's size; and llama.cpp tokenizes text with
// the file as our tokenizer does. GPT-2 and Qwen2 from the tokenizer's
// testdata, Llama 3 from GPTQTOOL_LLAMACPP_MODELS.
func TestByteLevelVocabLlamaCpp(t *testing.T) {
	for _, name := range []string{"gpt-2", "qwen2", "llama-bpe"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("..", "tokenizer", "testdata", "llamacpp", "ggml-vocab-"+name+".gguf.gz")
			if name == "llama-bpe" {
				dir := os.Getenv(ggmlvocab.ModelsEnv)
				if dir == "" {
					t.Skipf("set %s to llama.cpp's models folder (ggml-vocab-%s.gguf) to run", ggmlvocab.ModelsEnv, name)
				}
				path = filepath.Join(dir, "ggml-vocab-"+name+".gguf")
			}
			ref := ggmlvocab.Open(t, path)
			repo := bpeRepos[name]
			tok, cfg := bpeCheckpoint(t, ref, repo)
			if got, err := gguf.ByteLevelPre(tok); err != nil || got != name {
				t.Errorf("ByteLevelPre() = %q, %v, want %q", got, err, name)
			}
			opts := gguf.ConvertOptions{Type: gguf.TypeF16, Name: name}
			plan, err := gguf.Plan(cfg, tok, opts)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), name+"-F16.gguf")
			if _, err := gguf.Convert(out, tinyLlamaTensors(cfg), cfg, tok, opts); err != nil {
				t.Fatal(err)
			}
			f, err := gguf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Size() != plan.SizeBytes {
				t.Errorf("file size %d, Plan's %d", f.Size(), plan.SizeBytes)
			}
			want := map[string]any{}
			for _, kv := range ref.KVs() {
				if strings.HasPrefix(kv.Key, "tokenizer.") {
					want[kv.Key] = kv.Value
				}
			}
			// The reference types the [PADn] fillers of vocab_size
			// user-defined, as convert_hf_to_gguf.py did when it wrote the
			// file; its get_vocab_base now types them unused.
			if types, ok := want["tokenizer.ggml.token_type"].([]int32); ok {
				types = slices.Clone(types)
				for id, p := range want["tokenizer.ggml.tokens"].([]string) {
					if types[id] == int32(tokenizer.TokenTypeUserDefined) && p == fmt.Sprintf("[PAD%d]", id) {
						types[id] = int32(tokenizer.TokenTypeUnused)
					}
				}
				want["tokenizer.ggml.token_type"] = types
			}
			for k, v := range repo.addedKeys {
				want[k] = v
			}
			got := map[string]any{}
			for _, kv := range f.KVs() {
				if strings.HasPrefix(kv.Key, "tokenizer.") {
					got[kv.Key] = kv.Value
				}
			}
			for k, w := range want {
				g, ok := got[k]
				switch {
				case !ok:
					t.Errorf("%s: missing, want %.200v", k, w)
				case !reflect.DeepEqual(g, w):
					t.Errorf("%s: %s", k, firstDiff(g, w))
				}
			}
			for k, g := range got {
				if _, ok := want[k]; !ok {
					t.Errorf("%s = %.200v: not in the reference", k, g)
				}
			}
			checkLlamaCppTokenize(t, out, tok)
		})
	}
}

// firstDiff describes where two values of a key differ.
func firstDiff(got, want any) string {
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	if g.Kind() != reflect.Slice || w.Kind() != reflect.Slice || g.Type() != w.Type() {
		return fmt.Sprintf("%.200v (%T), want %.200v (%T)", got, got, want, want)
	}
	for i := range min(g.Len(), w.Len()) {
		if !reflect.DeepEqual(g.Index(i).Interface(), w.Index(i).Interface()) {
			return fmt.Sprintf("[%d] = %q, want %q (lengths %d, %d)", i, g.Index(i).Interface(), w.Index(i).Interface(), g.Len(), w.Len())
		}
	}
	return fmt.Sprintf("length %d, want %d", g.Len(), w.Len())
}

// checkLlamaCppTokenize checks that llama.cpp loads the file at path and
// tokenizes text with it as tok does (no BOS, added tokens not parsed).
func checkLlamaCppTokenize(t *testing.T, path string, tok *tokenizer.Tokenizer) {
	t.Helper()
	node := llamaCppAvailable(t)
	texts := []string{"Hello, world!", "I've been 'told he's there, 'RE you sure?", "3 33 333 3333 3.3 3...3",
		"naïve café 東京 😀 нещо на Български", "func main() {\n\tfmt.Println(42)\n}\n\n  \t x", "The  capital   of France"}
	resp := runLlamaCpp(t, node, llamaRequest{Models: []llamaModel{{Path: path, Context: 64, Tokenize: texts}}})
	for j, text := range texts {
		want, err := tok.Encode(text)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Models[0].Tokenize[j]; !slices.Equal(got, want) {
			t.Errorf("tokenize %q: llama.cpp %v, ours %v", text, got, want)
		}
	}
}
