package tokenizer_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/internal/ggmlvocab"
)

// Qwen3.5's split pattern (tokenizer.json's; the others beside it in
// ggmlvocab).
const qwen35Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// The Splits of DeepSeek LLM's and DeepSeek Coder's tokenizer.json, in
// order, each Isolated (llama.cpp's llama-vocab.cpp lists them as is).
var (
	deepseekLLMPatterns = []string{
		"[\r\n]",
		"\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A\U00010400-\U0001044F\U000104B0-\U000104D3\U000104D8-\U000104FB\U00010C80-\U00010CB2\U00010CC0-\U00010CF2\U000118A0-\U000118DF\U0001E900-\U0001E943]+",
		"\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+",
		"\\s+$",
		"[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+",
		"\\p{N}+",
	}
	deepseekCoderPatterns = []string{"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+", "\\p{N}"}
)

const (
	digitsThenByteLevel = `{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}]}`
	falconPreTokenizer  = `{"type":"Sequence","pretokenizers":[{"type":"Punctuation","behavior":"Contiguous"},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},{"type":"Digits","individual_digits":false},{"type":"Split","pattern":{"Regex":"[0-9][0-9][0-9]"},"behavior":"Isolated","invert":false}]}`
)

// vocabSetups are what tokenizer.json says beside each test vocabulary's
// pieces (tokenizer.ggml.pre names it); a ByteLevel post_processor.
var vocabSetups = map[string]ggmlvocab.Setup{
	"deepseek-llm":   {Normalizer: "null", PreTokenizer: ggmlvocab.SplitThenByteLevel(deepseekLLMPatterns...), PostProcessor: ggmlvocab.ByteLevelStep, IgnoreMerges: false},
	"deepseek-coder": {Normalizer: "null", PreTokenizer: ggmlvocab.SplitThenByteLevel(deepseekCoderPatterns...), PostProcessor: ggmlvocab.ByteLevelStep, IgnoreMerges: false},
	"falcon":         {Normalizer: "null", PreTokenizer: falconPreTokenizer, PostProcessor: ggmlvocab.ByteLevelStep, IgnoreMerges: false},
	"starcoder":      {Normalizer: "null", PreTokenizer: digitsThenByteLevel, PostProcessor: ggmlvocab.ByteLevelStep, IgnoreMerges: false},
	"refact":         {Normalizer: "null", PreTokenizer: digitsThenByteLevel, PostProcessor: ggmlvocab.ByteLevelStep, IgnoreMerges: false},
	"command-r":      {Normalizer: `{"type":"NFC"}`, PreTokenizer: digitsThenByteLevel, PostProcessor: ggmlvocab.ByteLevelStep, IgnoreMerges: false},
	"mpt":            {Normalizer: `{"type":"NFC"}`, PreTokenizer: `{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}`, PostProcessor: ggmlvocab.ByteLevelStep, IgnoreMerges: false},
	"gpt-2":          {Normalizer: "null", PreTokenizer: `{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}`, PostProcessor: ggmlvocab.ByteLevelStep, IgnoreMerges: false},
	"llama-bpe":      {Normalizer: "null", PreTokenizer: ggmlvocab.SplitThenByteLevel(ggmlvocab.Llama3Split), PostProcessor: ggmlvocab.ByteLevelStep, IgnoreMerges: true},
	"qwen2":          {Normalizer: `{"type":"NFC"}`, PreTokenizer: ggmlvocab.SplitThenByteLevel(ggmlvocab.Qwen2Split), PostProcessor: ggmlvocab.ByteLevelStep, IgnoreMerges: false},
	"qwen35":         {Normalizer: "null", PreTokenizer: ggmlvocab.SplitThenByteLevel(qwen35Pattern), PostProcessor: ggmlvocab.ByteLevelStep, IgnoreMerges: false},
}

// writeTokenizerJSON writes, in a new folder, the tokenizer.json that the
// llama.cpp vocabulary file at path stands for: its normal tokens and
// merges as the BPE model, its control and user-defined tokens (but the
// [PADn] fillers of vocab_size) as added tokens, and the normalizer and
// pre-tokenizer that tokenizer.ggml.pre names. It returns the folder and
// the pre-tokenizer name.
func writeTokenizerJSON(t testing.TB, path string) (string, string) {
	t.Helper()
	f := ggmlvocab.Open(t, path)
	model, _ := gguf.Value[string](f, "tokenizer.ggml.model")
	pre, _ := gguf.Value[string](f, "tokenizer.ggml.pre")
	setup, ok := vocabSetups[pre]
	if model != "gpt2" || !ok {
		t.Fatalf("%s: tokenizer.ggml.model %q pre %q: no tokenizer.json known", path, model, pre)
	}
	b, err := json.Marshal(ggmlvocab.TokenizerJSON(t, f, setup))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, pre
}

// readVectors reads llama.cpp's test strings (.inp, separated by
// "\n__ggml_vocab_test__\n") and the ids HF tokenizers gave for each
// (.out, one line per string, encode(text, add_special_tokens=False)).
func readVectors(t testing.TB, inp, out string) ([]string, [][]int) {
	t.Helper()
	a, err := os.ReadFile(inp)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	const sep = "\n__ggml_vocab_test__\n"
	texts := strings.Split(string(a), sep)
	if texts[len(texts)-1] != "" {
		t.Fatalf("%s: does not end with the separator", inp)
	}
	texts = texts[:len(texts)-1]
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != len(texts) {
		t.Fatalf("%s: %d strings, %s: %d lines", inp, len(texts), out, len(lines))
	}
	ids := make([][]int, len(lines))
	for i, l := range lines {
		ids[i] = []int{}
		for _, f := range strings.Fields(l) {
			id, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("%s line %d: %v", out, i+1, err)
			}
			ids[i] = append(ids[i], id)
		}
	}
	return texts, ids
}

// checkVectors encodes every test string with added tokens recognised (as
// HF's encode does) and compares with the reference ids, and checks that
// the ids decode back to the string.
func checkVectors(t *testing.T, tok *tokenizer.Tokenizer, texts []string, want [][]int, skip map[int]string) {
	t.Helper()
	for i, text := range texts {
		if why, ok := skip[i]; ok {
			t.Logf("vector %d %.40q skipped: %s", i, text, why)
			continue
		}
		got, err := tok.EncodeSpecial(text)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want[i]) {
			t.Errorf("vector %d: EncodeSpecial(%q)\n got %v\nwant %v", i, text, got, want[i])
			continue
		}
		dec, err := tok.Decode(got)
		if err != nil {
			t.Fatal(err)
		}
		if dec != text {
			t.Errorf("vector %d: Decode(EncodeSpecial(%q)) = %q", i, text, dec)
		}
	}
}

// testVocab runs the vectors of one llama.cpp vocabulary.
func testVocab(t *testing.T, ggufPath, inp, out string, skip map[int]string) {
	dir, _ := writeTokenizerJSON(t, ggufPath)
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !tok.ByteLevel() {
		t.Fatal("ByteLevel() = false")
	}
	texts, want := readVectors(t, inp, out)
	checkVectors(t, tok, texts, want, skip)
}

// TestLlamaCppVectors checks the byte-level tokenizer against llama.cpp's
// test vectors, which HF tokenizers produced: GPT-2 and Qwen2 from
// testdata, the others from llama.cpp's models folder named by
// GPTQTOOL_LLAMACPP_MODELS (Llama 3's vocabulary is under Meta's license
// and not in testdata).
func TestLlamaCppVectors(t *testing.T) {
	for _, name := range []string{"gpt-2", "qwen2"} {
		t.Run(name, func(t *testing.T) {
			base := filepath.Join("testdata", "llamacpp", "ggml-vocab-"+name+".gguf")
			testVocab(t, base+".gz", base+".inp", base+".out", nil)
		})
	}
	for _, name := range []string{"llama-bpe", "qwen35", "deepseek-llm", "deepseek-coder", "falcon", "starcoder", "refact", "command-r", "mpt"} {
		t.Run(name, func(t *testing.T) {
			dir := os.Getenv(ggmlvocab.ModelsEnv)
			if dir == "" {
				t.Skipf("set %s to llama.cpp's models folder (ggml-vocab-%s.gguf) to run", ggmlvocab.ModelsEnv, name)
			}
			base := filepath.Join(dir, "ggml-vocab-"+name+".gguf")
			if _, err := os.Stat(base); err != nil {
				t.Skipf("%s: %v", base, err)
			}
			testVocab(t, base, base+".inp", base+".out", nil)
		})
	}
}
