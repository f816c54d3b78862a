package gguf_test

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
)

// target parses a --gguf type ("q4_k_m", "f16") into Convert's options.
func target(t *testing.T, name string) gguf.ConvertOptions {
	t.Helper()
	tg, err := gguf.ParseTarget(name)
	if err != nil {
		t.Fatal(err)
	}
	return gguf.ConvertOptions{Type: tg.Type, Mix: tg.Mix}
}

func kvOverrides(t *testing.T, flags ...string) []gguf.KV {
	t.Helper()
	var kvs []gguf.KV
	for _, f := range flags {
		kv, err := gguf.ParseKVOverride(f)
		if err != nil {
			t.Fatalf("ParseKVOverride(%q): %v", f, err)
		}
		kvs = append(kvs, kv)
	}
	return kvs
}

// TestPlan: Plan, which reads no tensor, gives what Convert writes: the
// size of the file on disk byte for byte (header, metadata, padding,
// data), every tensor's type, shape and data size as the file's tensor
// infos give them read back, the fallbacks, warnings and file type of
// Convert's result; with llama-quantize's mixes and flags, an importance
// matrix, KV overrides and a 64-byte alignment.
func TestPlan(t *testing.T) {
	stories := openCheckpoint(t, "models/stories260K-hf-mistral")
	tiny := openCheckpoint(t, "models/openchat-tiny")
	q8 := gguf.TypeQ8_0
	for _, tc := range []struct {
		name string
		ck   *checkpoint
		opts func(gguf.ConvertOptions) gguf.ConvertOptions
		typ  string
	}{
		{"stories f16", stories, nil, "f16"},
		{"stories q4_k_m", stories, nil, "q4_k_m"},
		{"stories q8_0 overrides", stories, func(o gguf.ConvertOptions) gguf.ConvertOptions {
			o.KVOverrides = kvOverrides(t, "general.name=str:a much longer name than the directory's", "x.y=float:0.5", "general.alignment=int:64")
			return o
		}, "q8_0"},
		{"stories iq2_xxs imatrix", stories, func(o gguf.ConvertOptions) gguf.ConvertOptions {
			o.Imatrix = randomImatrix(stories) // no token_embd, output entries: a warning
			return o
		}, "iq2_xxs"},
		{"tiny q4_k_m", tiny, nil, "q4_k_m"},
		{"tiny q3_k_s pure", tiny, func(o gguf.ConvertOptions) gguf.ConvertOptions {
			o.Pure, o.TokenEmbeddingType = true, &q8
			o.TensorTypes = []gguf.TensorTypeOverride{{Pattern: "attn_v", Type: gguf.TypeQ5_0}}
			o.KVOverrides = kvOverrides(t, "general.alignment=int:4096", "general.file_type=int:7")
			return o
		}, "q3_k_s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := target(t, tc.typ)
			if tc.opts != nil {
				opts = tc.opts(opts)
			}
			plan, err := gguf.Plan(tc.ck.cfg, tc.ck.tok, opts)
			if err != nil {
				t.Fatal(err)
			}
			c := convertWith(t, tc.ck, opts.Type, opts)
			fi, err := os.Stat(c.path)
			if err != nil {
				t.Fatal(err)
			}
			if plan.SizeBytes != fi.Size() || c.res.SizeBytes != fi.Size() {
				t.Errorf("planned size %d bytes, Convert's result %d, the file %d", plan.SizeBytes, c.res.SizeBytes, fi.Size())
			}
			file := c.file.Tensors()
			if len(file) != len(plan.Tensors) {
				t.Fatalf("planned %d tensors, the file has %d", len(plan.Tensors), len(file))
			}
			for i, ti := range file {
				size, _ := ti.Size()
				if p := plan.Tensors[i]; p.Name != ti.Name || p.Type != ti.Type || !slices.Equal(p.Shape, ti.Shape) || p.Size != size {
					t.Errorf("tensor %d: planned %s %v %s %d bytes, the file's %s %v %s %d bytes", i, p.Name, p.Shape, p.Type, p.Size, ti.Name, ti.Shape, ti.Type, size)
				}
			}
			c.res.Path, c.res.Overflows = "", nil
			if !reflect.DeepEqual(plan, c.res) {
				t.Errorf("plan %+v\nConvert's result %+v", plan, c.res)
			}
			if ft, _ := c.file.Get("general.file_type"); ft != plan.FileType {
				t.Errorf("general.file_type %v, planned %d", ft, plan.FileType)
			}
		})
	}
}

// TestPlanRefuses: Plan refuses what Convert refuses before reading a
// tensor, with the same error: an IQ type that needs an importance matrix
// without one (llama-quantize --dry-run only warns, but its conversion
// refuses), an override the metadata cannot take.
func TestPlanRefuses(t *testing.T) {
	ck := openCheckpoint(t, "models/openchat-tiny")
	for _, tc := range []struct {
		typ, want string
		overrides []string
	}{
		{"iq2_xxs", "IQ2_XXS needs an importance matrix", nil},
		{"q4_k_m", `--override-kv general.name=int:5: gptqtool writes general.name as a string, the type llama.cpp reads it as: want str:VALUE`, []string{"general.name=int:5"}},
		{"q4_k_m", `--override-kv llama.context_length=float:4096: gptqtool writes llama.context_length as an integer`, []string{"llama.context_length=float:4096"}},
		{"q4_k_m", `--override-kv tokenizer.ggml.eos_token_id=int:32002: token id outside the vocabulary of 32002 ids`, []string{"tokenizer.ggml.eos_token_id=int:32002"}},
	} {
		opts := target(t, tc.typ)
		opts.KVOverrides = kvOverrides(t, tc.overrides...)
		_, err := gguf.Plan(ck.cfg, ck.tok, opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Plan %s %v: %v, want an error containing %q", tc.typ, tc.overrides, err, tc.want)
		}
		path := t.TempDir() + "/x.gguf"
		if _, cerr := gguf.FromCheckpoint(path, ck.set, ck.cfg, ck.tok, opts); cerr == nil || err == nil || cerr.Error() != err.Error() {
			t.Errorf("Convert %s %v: %v, want Plan's error %v", tc.typ, tc.overrides, cerr, err)
		}
	}
	// quantize.imatrix.* are the importance matrix's, with one.
	opts := target(t, "q4_k_m")
	opts.Imatrix = randomImatrix(ck)
	opts.KVOverrides = kvOverrides(t, "quantize.imatrix.file=str:other")
	if _, err := gguf.Plan(ck.cfg, ck.tok, opts); err == nil || !strings.Contains(err.Error(), "written from the importance matrix") {
		t.Errorf("quantize.imatrix.file with an importance matrix: %v", err)
	}
	opts.Imatrix = nil
	if _, err := gguf.Plan(ck.cfg, ck.tok, opts); err != nil {
		t.Errorf("quantize.imatrix.file without an importance matrix: %v, want it written as llama-quantize writes it", err)
	}
	// A byte-level vocabulary whose pre-tokenizer llama.cpp's converter
	// does not know (here GPT-2's split over 256 bytes and no merges, a
	// check hash of no model) is refused, naming the pre-tokenizer, and
	// no file made.
	bl := byteLevelTokenizer(t)
	_, err := gguf.Plan(ck.cfg, bl, target(t, "q8_0"))
	if !errors.Is(err, gguf.ErrUnknownPreTokenizer) || !strings.Contains(err.Error(), "ByteLevel(use_regex)") {
		t.Errorf("Plan with an unknown byte-level pre-tokenizer: %v, want ErrUnknownPreTokenizer naming ByteLevel(use_regex)", err)
	}
	path := filepath.Join(t.TempDir(), "x.gguf")
	if _, err := gguf.FromCheckpoint(path, ck.set, ck.cfg, bl, target(t, "q8_0")); !errors.Is(err, gguf.ErrUnknownPreTokenizer) {
		t.Errorf("Convert with an unknown byte-level pre-tokenizer: %v, want ErrUnknownPreTokenizer", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 0 {
		t.Errorf("Convert with an unknown byte-level pre-tokenizer left %v", entries)
	}
}

// byteLevelTokenizer is a byte-level BPE tokenizer of the 256 bytes in
// GPT-2's spelling.
func byteLevelTokenizer(t *testing.T) *tokenizer.Tokenizer {
	t.Helper()
	vocab := map[string]int{}
	for b := range 256 {
		vocab[tokenizer.ByteLevelSpelling(string([]byte{byte(b)}))] = b
	}
	vj, err := json.Marshal(vocab)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	js := `{"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false},"decoder":{"type":"ByteLevel"},"model":{"type":"BPE","vocab":` + string(vj) + `,"merges":[]}}`
	if err := os.WriteFile(path, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.LoadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestKVOverrides: overrides read back from the file as llama-quantize
// writes them (checked against llama-quantize's own output for
// openchat-tiny: the same keys, order, types and values): a key
// gptqtool writes is removed and appended at the end (gguf_set_val), the
// last override of a key wins, new keys are appended in order, int is
// uint32, float float32; general.file_type replaces the file type's.
func TestKVOverrides(t *testing.T) {
	ck := openCheckpoint(t, "models/stories260K-hf-mistral")
	opts := target(t, "q8_0")
	plain := convertWith(t, ck, opts.Type, opts)
	opts.KVOverrides = kvOverrides(t, "general.name=str:first", "my.key=int:5", "llama.rope.freq_base=float:500000.5",
		"tokenizer.ggml.add_bos_token=bool:false", "general.name=str:renamed", "general.file_type=int:2", "tokenizer.ggml.eos_token_id=int:511")
	c := convertWith(t, ck, opts.Type, opts)
	var want []gguf.KV
	for _, kv := range plain.file.KVs() {
		switch kv.Key {
		case "general.name", "llama.rope.freq_base", "tokenizer.ggml.add_bos_token", "general.file_type", "tokenizer.ggml.eos_token_id":
		default:
			want = append(want, kv)
		}
	}
	want = append(want, gguf.KV{Key: "my.key", Value: uint32(5)}, gguf.KV{Key: "llama.rope.freq_base", Value: float32(500000.5)},
		gguf.KV{Key: "tokenizer.ggml.add_bos_token", Value: false}, gguf.KV{Key: "general.name", Value: "renamed"},
		gguf.KV{Key: "general.file_type", Value: uint32(2)}, gguf.KV{Key: "tokenizer.ggml.eos_token_id", Value: uint32(511)})
	got := c.file.KVs()
	if !reflect.DeepEqual(got, want) {
		for i := range max(len(got), len(want)) {
			var g, w gguf.KV
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("key %d: %s = %v (%T), want %s = %v (%T)", i, g.Key, g.Value, g.Value, w.Key, w.Value, w.Value)
			}
		}
	}
	if c.res.FileType != 2 {
		t.Errorf("result's file type %d, want the override's 2", c.res.FileType)
	}
}

// TestParseKVOverride: llama.cpp's KEY=TYPE:VALUE (string_parse_kv_override)
// with the values llama-quantize writes for it, and its refusals (a key of
// 128 bytes, a type other than int, float, bool, str in lower case, a bool
// other than true or false, a str of 128 bytes), plus those of values
// llama.cpp reads leniently and keys that describe the tensors.
func TestParseKVOverride(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want gguf.KV
	}{
		{"general.name=str:my-model", gguf.KV{Key: "general.name", Value: "my-model"}},
		{"a=str:b=c:d", gguf.KV{Key: "a", Value: "b=c:d"}}, // split at the first '=', then the first ':'
		{"a=str:", gguf.KV{Key: "a", Value: ""}},
		{"a=str:" + strings.Repeat("x", 127), gguf.KV{Key: "a", Value: strings.Repeat("x", 127)}},
		{strings.Repeat("k", 127) + "=bool:true", gguf.KV{Key: strings.Repeat("k", 127), Value: true}},
		{"tokenizer.ggml.add_bos_token=bool:false", gguf.KV{Key: "tokenizer.ggml.add_bos_token", Value: false}},
		{"llama.context_length=int:8192", gguf.KV{Key: "llama.context_length", Value: uint32(8192)}},
		{"a=int:+7", gguf.KV{Key: "a", Value: uint32(7)}},
		{"a=int:4294967295", gguf.KV{Key: "a", Value: uint32(math.MaxUint32)}},
		{"llama.rope.freq_base=float:1e6", gguf.KV{Key: "llama.rope.freq_base", Value: float32(1e6)}},
		{"a=float:0.1", gguf.KV{Key: "a", Value: float32(0.1)}},
		{"a=float:-inf", gguf.KV{Key: "a", Value: float32(math.Inf(-1))}},
		{"general.file_type=int:7", gguf.KV{Key: "general.file_type", Value: uint32(7)}},
		{"general.alignment=int:64", gguf.KV{Key: "general.alignment", Value: uint32(64)}},
		{"tokenizer.ggml.eos_token_id=int:2", gguf.KV{Key: "tokenizer.ggml.eos_token_id", Value: uint32(2)}},
	} {
		got, err := gguf.ParseKVOverride(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseKVOverride(%q) = %v (%T), %v; want %v (%T)", tc.in, got.Value, got.Value, err, tc.want.Value, tc.want.Value)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"general.name", `"general.name": want KEY=TYPE:VALUE`},
		{"=str:x", `"=str:x": missing key before '='`},
		{strings.Repeat("k", 128) + "=int:1", "key of 128 bytes, want at most 127"},
		{"a=my-model", `"a=my-model": want TYPE:VALUE after '='`},
		{"a=INT:5", `type "INT": want int, float, bool or str`},
		{"a=string:x", `type "string": want int, float, bool or str`},
		{"a=bool:True", `bool value "True": want true or false`},
		{"a=bool:1", `bool value "1": want true or false`},
		{"a=str:" + strings.Repeat("x", 128), "str value of 128 bytes, want at most 127"},
		{"a=int:-5", `int value "-5": want a whole number from 0 to 4294967295`},
		{"a=int:12x", `int value "12x"`},
		{"a=int:", `int value ""`},
		{"a=int:4294967296", `int value "4294967296"`},
		{"a=float:abc", `float value "abc": want a number within float32's range`},
		{"a=float:1e39", `float value "1e39"`},
		{"general.architecture=str:mistral", "general.architecture=str:mistral: gptqtool derives general.architecture from the tensors it writes"},
		{"llama.block_count=int:3", "derives llama.block_count"},
		{"llama.attention.head_count_kv=int:2", "derives llama.attention.head_count_kv"},
		{"llama.rope.dimension_count=int:64", "derives llama.rope.dimension_count"},
		{"tokenizer.ggml.tokens=str:x", "derives tokenizer.ggml.tokens"},
		{"tokenizer.ggml.model=str:gpt2", "derives tokenizer.ggml.model"},
		{"tokenizer.ggml.eos_token_id=str:</s>", "tokenizer.ggml.eos_token_id is a token id: want int:ID"},
		{"general.alignment=int:48", "want int, a power of two of at least 8"},
		{"general.alignment=int:4", "want int, a power of two of at least 8"},
		{"general.alignment=str:32", "want int, a power of two of at least 8"},
	} {
		if got, err := gguf.ParseKVOverride(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseKVOverride(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.want)
		}
	}
}

// TestLlamaCppKVOverrides: a file written with overrides, general.alignment
// 64 among them (laid out by it, where llama-quantize keeps padding to 32
// and writes a file no reader takes), loads in llama.cpp: node-llama-cpp's
// parser reads our keys, values and tensor offsets, and llama.cpp
// continues stories260K's prompt as llama2.c does (F32: exactly).
func TestLlamaCppKVOverrides(t *testing.T) {
	node := llamaCppAvailable(t)
	ck := openCheckpoint(t, "models/stories260K-hf-mistral")
	var ref struct {
		Prompt []int `json:"prompt_ids_with_bos"`
		Greedy []int `json:"greedy_ids"`
	}
	readJSON(t, ck.dir+"/expected_greedy.json", &ref)
	opts := target(t, "f32")
	opts.KVOverrides = kvOverrides(t, "general.alignment=int:64", "general.name=str:renamed", "llama.context_length=int:1024", "my.key=float:0.25")
	c := convertWith(t, ck, opts.Type, opts)
	if c.file.Alignment != 64 {
		t.Fatalf("alignment %d, want 64", c.file.Alignment)
	}
	resp := runLlamaCpp(t, node, llamaRequest{Models: []llamaModel{{
		Path: c.path, Context: len(ref.Greedy) + 8, Greedy: &greedyQ{Prompt: ref.Prompt, Steps: len(ref.Greedy) - len(ref.Prompt)},
	}}})
	got := resp.Models[0]
	checkJSParse(t, c, got.Info.Version, got.Info.Metadata, got.Info.TensorCount, got.Info.Tensors)
	if ids := append(slices.Clone(ref.Prompt), got.Greedy...); !slices.Equal(ids, ref.Greedy) {
		t.Errorf("llama.cpp greedy on the overridden file\n%v\nwant llama2.c's\n%v", ids, ref.Greedy)
	}
}
