package gguf

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
)

// maxOverride is the longest key and str value of an --override-kv, in
// bytes: llama.cpp keeps both in 128-byte C strings
// (llama_model_kv_override).
const maxOverride = 127

// ParseKVOverride reads one llama-quantize --override-kv KEY=TYPE:VALUE
// as llama.cpp's string_parse_kv_override (common/common.cpp) does and
// returns the pair llama-quantize writes for it
// (llama_model_quantize_impl): KEY is what comes before the first '=', 1
// to 127 bytes of UTF-8; TYPE is int, float, bool or str, in lower case;
// int gives a uint32 (llama-quantize writes int overrides as uint32), float
// a float32 (read as a double, then rounded, as llama.cpp does), bool a
// bool (VALUE exactly true or false), str a string of at most 127 bytes.
// Where llama.cpp reads a number leniently (atol, atof: "12x" as 12, "x" as
// 0, a negative int written as its absolute value, one past 32 bits
// truncated), this refuses it: an int is a decimal from 0 to 4294967295, a
// float what strconv.ParseFloat reads (inf and nan included, as atof reads
// them) that does not overflow float32. Keys that Convert derives from the
// tensors it writes are refused too (CheckKVOverride).
func ParseKVOverride(s string) (KV, error) {
	key, tv, ok := strings.Cut(s, "=")
	switch {
	case !ok:
		return KV{}, fmt.Errorf("%q: want KEY=TYPE:VALUE (general.name=str:my-model)", s)
	case key == "":
		return KV{}, fmt.Errorf("%q: missing key before '='", s)
	case len(key) > maxOverride:
		return KV{}, fmt.Errorf("%q: key of %d bytes, want at most %d (llama.cpp's limit)", s, len(key), maxOverride)
	case !utf8.ValidString(key):
		return KV{}, fmt.Errorf("%q: key is not UTF-8", s)
	}
	typ, v, ok := strings.Cut(tv, ":")
	kv := KV{Key: key}
	switch {
	case !ok:
		return KV{}, fmt.Errorf("%q: want TYPE:VALUE after '=' (TYPE int, float, bool or str)", s)
	case typ == "int":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > math.MaxUint32 {
			return KV{}, fmt.Errorf("%q: int value %q: want a whole number from 0 to %d (llama-quantize writes int overrides as uint32)", s, v, uint32(math.MaxUint32))
		}
		kv.Value = uint32(n)
	case typ == "float":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsInf(float64(float32(f)), 0) && !math.IsInf(f, 0) {
			return KV{}, fmt.Errorf("%q: float value %q: want a number within float32's range (1e-05, 10000.0)", s, v)
		}
		kv.Value = float32(f)
	case typ == "bool":
		if v != "true" && v != "false" {
			return KV{}, fmt.Errorf("%q: bool value %q: want true or false", s, v)
		}
		kv.Value = v == "true"
	case typ == "str":
		if len(v) > maxOverride {
			return KV{}, fmt.Errorf("%q: str value of %d bytes, want at most %d (llama.cpp's limit)", s, len(v), maxOverride)
		}
		kv.Value = v
	default:
		return KV{}, fmt.Errorf("%q: type %q: want int, float, bool or str", s, typ)
	}
	if err := CheckKVOverride(kv); err != nil {
		return KV{}, err
	}
	return kv, nil
}

// derivedKeys are the metadata keys Convert derives from the tensors it
// writes or that the token arrays depend on, with why: an override would
// give llama.cpp a file whose metadata contradicts its tensors (it refuses
// to load it, or binds the tensors wrongly). general.file_type and
// general.quantization_version are not among them: llama-quantize writes
// an override of them in place of its own (only a label: llama.cpp reads
// each tensor's type from its tensor info).
var derivedKeys = map[string]string{
	"general.architecture":                    "the tensors are named and laid out for llama.cpp's llama architecture",
	"llama.vocab_size":                        "token_embd's rows and the token arrays' length",
	"llama.embedding_length":                  "the weights' hidden size",
	"llama.block_count":                       "the number of layers of blk.N tensors",
	"llama.feed_forward_length":               "the ffn weights' size",
	"llama.attention.head_count":              "attn_q's rows, permuted for RoPE head by head",
	"llama.attention.head_count_kv":           "attn_k's and attn_v's rows, attn_k's permuted for RoPE head by head",
	"llama.attention.key_length":              "the head size of attn_q's and attn_k's rows",
	"llama.attention.value_length":            "the head size of attn_v's rows",
	"llama.rope.dimension_count":              "the head size: llama.cpp refuses a llama model whose rope dimension count is not its key length",
	"llama.expert_count":                      "the experts stacked in ffn_gate_exps, ffn_up_exps and ffn_down_exps and ffn_gate_inp's rows",
	"llama.expert_feed_forward_length":        "the stacked experts' size",
	"llama.expert_shared_feed_forward_length": "the shared expert's ffn_*_shexp weights' size",
	"tokenizer.ggml.model":                    "the token arrays are written for the tokenizer they are (llama.cpp's llama or gpt2)",
	"tokenizer.ggml.tokens":                   "an array of one entry a token id",
	"tokenizer.ggml.scores":                   "an array of one entry a token id",
	"tokenizer.ggml.token_type":               "an array of one entry a token id",
	"tokenizer.ggml.merges":                   "the merges of the written tokens",
}

// CheckKVOverride refuses an override that no model can take, whatever
// the rest of the conversion: a key in derivedKeys; a value of another
// Go type than KV's scalars (--override-kv sets no arrays); a special
// token id (tokenizer.ggml.*_token_id) that is not an int;
// general.alignment other than an int power of two of at least 8, the
// alignment the Writer then lays the file out by (llama-quantize keeps
// padding to 32 whatever the key says, which breaks the file).
func CheckKVOverride(kv KV) error {
	key := kv.Key
	for _, a := range []string{"qwen2.", "qwen3.", "qwen2vl.", "qwen3vl.", "qwen3vlmoe.", "qwen3moe.", "qwen2moe.", "olmoe.", "olmo2.", "phi3.", "gemma.", "gemma2.", "gemma3.", "granite."} {
		if rest, ok := strings.CutPrefix(key, a); ok {
			key = "llama." + rest // the same keys under the other architectures' names (phi3's sizes cut its fused attn_qkv and ffn_up)
		}
	}
	if why, ok := derivedKeys[key]; ok {
		return fmt.Errorf("%s: gptqtool derives %s from the tensors it writes (%s): it cannot be overridden", overrideString(kv), kv.Key, why)
	}
	typ, _, ok := TypeOf(kv.Value)
	if !ok || typ == ValueArray {
		return fmt.Errorf("key %q: value of Go type %T: an override is an int, float, bool or str", kv.Key, kv.Value)
	}
	switch {
	case isTokenIDKey(kv.Key) && valueKind(kv.Value) != "int":
		return fmt.Errorf("%s: %s is a token id: want int:ID", overrideString(kv), kv.Key)
	case kv.Key == KeyAlignment:
		if a, ok := kv.Value.(uint32); !ok || a < 8 || a&(a-1) != 0 {
			return fmt.Errorf("%s: want int, a power of two of at least 8 (the data alignment)", overrideString(kv))
		}
	}
	return nil
}

// checkKVOverrides is what plan checks of opts.KVOverrides: each
// CheckKVOverride's, a special token id inside the vocabulary (llama.cpp
// would drop it with a warning), and no quantize.imatrix.* key when an
// importance matrix is used (opts.Imatrix after Include/ExcludeWeights),
// whose values llama-quantize writes over the override.
func checkKVOverrides(cfg *hfconfig.Config, opts ConvertOptions) error {
	for _, kv := range opts.KVOverrides {
		if err := CheckKVOverride(kv); err != nil {
			return fmt.Errorf("gguf convert: --override-kv %w", err)
		}
		if id, ok := kv.Value.(uint32); ok && isTokenIDKey(kv.Key) && int64(id) >= int64(cfg.VocabSize) {
			return fmt.Errorf("gguf convert: --override-kv %s: token id outside the vocabulary of %d ids (%s vocab_size)", overrideString(kv), cfg.VocabSize, cfg.File)
		}
		if opts.Imatrix != nil && strings.HasPrefix(kv.Key, "quantize.imatrix.") {
			return fmt.Errorf("gguf convert: --override-kv %s: written from the importance matrix (--imatrix), as llama-quantize writes it over an override", overrideString(kv))
		}
	}
	return nil
}

// applyKVOverrides returns kvs with each override set as llama-quantize's
// gguf_set_val does: a key already there is removed and the pair appended,
// so an overridden key moves to the end and the last override of a key
// wins. An override of a key kvs holds must be of its kind (an int for an
// integer, float, bool, str): llama.cpp reads the keys gptqtool writes
// with those types and refuses a file where one has another; an array
// (the chat template names) takes no override.
func applyKVOverrides(kvs []KV, overrides []KV) ([]KV, error) {
	for _, o := range overrides {
		i := indexKV(kvs, o.Key)
		if i < 0 {
			kvs = append(kvs, o)
			continue
		}
		switch have := valueKind(kvs[i].Value); {
		case have == "array":
			return nil, fmt.Errorf("gguf convert: --override-kv %s: gptqtool writes %s as an array, which an override cannot set", overrideString(o), o.Key)
		case have != valueKind(o.Value):
			return nil, fmt.Errorf("gguf convert: --override-kv %s: gptqtool writes %s as %s, the type llama.cpp reads it as: want %s:VALUE", overrideString(o), o.Key, kindName(have), have)
		}
		kvs = append(append(kvs[:i:i], kvs[i+1:]...), o)
	}
	return kvs, nil
}

func indexKV(kvs []KV, key string) int {
	for i, kv := range kvs {
		if kv.Key == key {
			return i
		}
	}
	return -1
}

// isTokenIDKey reports whether key is one of llama.cpp's special token ids
// (tokenizer.ggml.bos_token_id, eos, eot, padding, …).
func isTokenIDKey(key string) bool {
	return strings.HasPrefix(key, "tokenizer.ggml.") && strings.HasSuffix(key, "_token_id")
}

// valueKind is the --override-kv type a value has: int, float, bool, str,
// or array.
func valueKind(v any) string {
	switch v.(type) {
	case uint8, int8, uint16, int16, uint32, int32, uint64, int64:
		return "int"
	case float32, float64:
		return "float"
	case bool:
		return "bool"
	case string:
		return "str"
	}
	return "array"
}

func kindName(kind string) string {
	switch kind {
	case "int":
		return "an integer"
	case "float":
		return "a float"
	case "str":
		return "a string"
	}
	return "a " + kind
}

// overrideString writes an override as --override-kv takes it:
// "general.name=str:my-model".
func overrideString(kv KV) string {
	if f, ok := kv.Value.(float32); ok {
		return kv.Key + "=float:" + strconv.FormatFloat(float64(f), 'g', -1, 32)
	}
	return fmt.Sprintf("%s=%s:%v", kv.Key, valueKind(kv.Value), kv.Value)
}
