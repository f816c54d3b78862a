package gguf_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
)

var allTypes = []gguf.TensorType{gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16, gguf.TypeQ8_0, gguf.TypeQ4_0, gguf.TypeQ4_1, gguf.TypeQ5_0, gguf.TypeQ5_1,
	gguf.TypeIQ4_NL, gguf.TypeIQ4_XS, gguf.TypeQ2_K, gguf.TypeQ3_K, gguf.TypeQ4_K, gguf.TypeQ5_K, gguf.TypeQ6_K,
	gguf.TypeIQ3_XXS, gguf.TypeIQ3_S, gguf.TypeIQ2_XXS, gguf.TypeIQ2_XS, gguf.TypeIQ2_S, gguf.TypeIQ1_S, gguf.TypeIQ1_M}

// imatrixTypes are the types of allTypes llama-quantize writes only with
// an importance matrix (tensor_requires_imatrix): convert gives them
// fullImatrix's.
var imatrixTypes = []gguf.TensorType{gguf.TypeIQ3_XXS, gguf.TypeIQ2_XXS, gguf.TypeIQ2_XS, gguf.TypeIQ2_S, gguf.TypeIQ1_S, gguf.TypeIQ1_M}

// fullImatrix is randomImatrix with entries for token_embd and output
// too, which llama-imatrix's files lack, but which a file of IQ2_XXS,
// IQ2_XS or IQ1_S weights only needs (ggml quantizes those types only
// with importances).
func fullImatrix(ck *checkpoint) *gguf.Imatrix {
	m := randomImatrix(ck)
	r := rand.New(rand.NewPCG(13, 14))
	for _, name := range []string{"token_embd.weight", "output.weight"} {
		sum2 := make([]float32, ck.cfg.HiddenSize)
		for j := range sum2 {
			sum2[j] = float32(math.Pow(10, 4*r.Float64()-2))
		}
		m.Entries[name] = gguf.ImatrixEntry{Sum2: sum2, Count: 1}
	}
	return m
}

// fixtureSpec is what a fixture's conversions are checked against.
type fixtureSpec struct {
	rel string
	// meta holds metadata values read by hand from config.json and the
	// tokenizer files; general.file_type is checked per type.
	meta map[string]any
	// fallbacks maps a requested type to the expected fallback of each
	// GGUF tensor name suffix (row lengths from config.json).
	fallbacks map[gguf.TensorType]map[string]gguf.TensorType
	// weightNMSE bounds the per-tensor NMSE of the dequantized weights.
	weightNMSE map[gguf.TensorType]float64
	// runtime bounds the runtime's next-token log-probabilities on the
	// GGUF's dequantized weights against the original checkpoint.
	runtime map[gguf.TensorType]tolerance
	// flipsArgmax names the types whose file may change the checkpoint's
	// next token (2 bits of a tiny model), which runtime then does not
	// require to agree.
	flipsArgmax map[gguf.TensorType]bool
	prompts     [][]int
	texts       []string
}

// blockFallbacks are stories260K's fallbacks for a type of 256-value
// blocks, which no row (64 or 172) splits into: llama-quantize's type of
// 32-value blocks for it, F16 for ffn_down, whose rows of 172 do not split
// into those either.
func blockFallbacks(to gguf.TensorType) map[string]gguf.TensorType {
	m := map[string]gguf.TensorType{"ffn_down.weight": gguf.TypeF16}
	for _, n := range []string{"token_embd", "output", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up"} {
		m[n+".weight"] = to
	}
	return m
}

// down172 is stories260K's fallback for a type of 32-value blocks.
var down172 = map[string]gguf.TensorType{"ffn_down.weight": gguf.TypeF16}

func TestStories260K(t *testing.T) {
	var ref struct {
		Prompt []int `json:"prompt_ids_with_bos"`
		Greedy []int `json:"greedy_ids"`
	}
	readJSON(t, filepath.Join(fixture(t, "models/stories260K-hf-mistral"), "expected_greedy.json"), &ref)
	spec := fixtureSpec{
		rel: "models/stories260K-hf-mistral",
		meta: map[string]any{
			"general.architecture": "llama", "general.name": "stories260K-hf-mistral", "general.quantization_version": uint32(2),
			"llama.context_length": uint32(512), "llama.embedding_length": uint32(64), "llama.block_count": uint32(5),
			"llama.feed_forward_length": uint32(172), "llama.attention.head_count": uint32(8), "llama.attention.head_count_kv": uint32(4),
			"llama.rope.dimension_count": uint32(8), "llama.attention.key_length": uint32(8), "llama.rope.freq_base": float32(10000),
			"llama.attention.layer_norm_rms_epsilon": float32(1e-5), "llama.vocab_size": uint32(512),
			"tokenizer.ggml.model": "llama", "tokenizer.ggml.bos_token_id": uint32(1), "tokenizer.ggml.eos_token_id": uint32(2),
			"tokenizer.ggml.unknown_token_id": uint32(0), "tokenizer.ggml.add_bos_token": true, "tokenizer.ggml.add_eos_token": false,
		},
		// hidden 64 and intermediate 172: no row splits into Q4_K
		// super-blocks; ffn_down's rows (172) not even into Q8_0 blocks.
		fallbacks: map[gguf.TensorType]map[string]gguf.TensorType{
			gguf.TypeQ8_0: down172, gguf.TypeQ4_0: down172, gguf.TypeQ4_1: down172, gguf.TypeQ5_0: down172, gguf.TypeQ5_1: down172, gguf.TypeIQ4_NL: down172,
			gguf.TypeIQ4_XS: blockFallbacks(gguf.TypeIQ4_NL),
			gguf.TypeQ2_K:   blockFallbacks(gguf.TypeQ4_0),
			gguf.TypeQ3_K:   blockFallbacks(gguf.TypeQ4_0),
			gguf.TypeQ4_K:   blockFallbacks(gguf.TypeQ5_0),
			gguf.TypeQ5_K:   blockFallbacks(gguf.TypeQ5_1),
			gguf.TypeQ6_K:   blockFallbacks(gguf.TypeQ8_0),

			gguf.TypeIQ3_XXS: blockFallbacks(gguf.TypeIQ4_NL),
			gguf.TypeIQ3_S:   blockFallbacks(gguf.TypeIQ4_NL),
			gguf.TypeIQ2_XXS: blockFallbacks(gguf.TypeIQ4_NL), gguf.TypeIQ2_XS: blockFallbacks(gguf.TypeIQ4_NL), gguf.TypeIQ2_S: blockFallbacks(gguf.TypeIQ4_NL),
			gguf.TypeIQ1_S: blockFallbacks(gguf.TypeIQ4_NL), gguf.TypeIQ1_M: blockFallbacks(gguf.TypeIQ4_NL),
		},
		// Measured worst tensor: F16 4.4e-8, BF16 3.9e-6, Q8_0 3.8e-5, Q4_0
		// 9.2e-3, Q4_1 7.8e-3, Q5_0 2.5e-3, Q5_1 1.8e-3, IQ4_NL 7.0e-3; the
		// types of 256-value blocks those of their fallback (every weight
		// falls back; IQ3_XXS's and the IQ2 and IQ1 types', with
		// fullImatrix's importances, 7.7e-3). Bounds: about 2× (the
		// computation is deterministic).
		weightNMSE: map[gguf.TensorType]float64{gguf.TypeF32: 0, gguf.TypeF16: 1e-7, gguf.TypeBF16: 8e-6, gguf.TypeQ8_0: 8e-5,
			gguf.TypeQ4_0: 2e-2, gguf.TypeQ4_1: 1.6e-2, gguf.TypeQ5_0: 5e-3, gguf.TypeQ5_1: 3.5e-3, gguf.TypeIQ4_NL: 1.4e-2,
			gguf.TypeIQ4_XS: 1.4e-2, gguf.TypeQ2_K: 2e-2, gguf.TypeQ3_K: 2e-2, gguf.TypeQ4_K: 5e-3, gguf.TypeQ5_K: 3.5e-3, gguf.TypeQ6_K: 8e-5,
			gguf.TypeIQ3_XXS: 1.6e-2, gguf.TypeIQ3_S: 1.4e-2,
			gguf.TypeIQ2_XXS: 1.6e-2, gguf.TypeIQ2_XS: 1.6e-2, gguf.TypeIQ2_S: 1.6e-2, gguf.TypeIQ1_S: 1.6e-2, gguf.TypeIQ1_M: 1.6e-2},
		// Measured (worst prompt) max|Δlogp| / NMSE / KL: F16 7.6e-3 /
		// 6.6e-7 / 3.3e-7, BF16 7.7e-2 / 4.5e-5 / 8.6e-6, Q8_0 0.27 /
		// 6.9e-4 / 1.7e-5, Q4_0 9.1 / 7.2 / 5.6e-2, Q4_1 2.6 / 0.19 / 9.5e-2,
		// Q5_0 1.5 / 0.18 / 1.8e-2, Q5_1 2.0 / 0.18 / 4.3e-3, IQ4_NL 4.7 /
		// 0.36 / 2.9e-2 (the types of 256-value blocks: their fallback's
		// file; IQ3_XXS's and the IQ2 and IQ1 types', IQ4_NL with
		// fullImatrix's importances, 2.7 / 9.2e-2 / 1.5e-2). A
		// 260K-parameter model in 4 bits moves the log-probabilities of its
		// unlikely tokens a lot (every argmax holds); that the blocks are
		// read right is llama.cpp's check below. Bounds: about 2–3×.
		runtime: map[gguf.TensorType]tolerance{
			gguf.TypeF32:    {0, 0, 0}, // the same fp32 weights: identical logits
			gguf.TypeF16:    {2e-2, 2e-6, 1e-6},
			gguf.TypeBF16:   {0.2, 1.5e-4, 3e-5},
			gguf.TypeQ8_0:   {0.8, 2e-3, 6e-5},
			gguf.TypeQ4_0:   {20, 15, 0.12},
			gguf.TypeQ4_1:   {6, 0.4, 0.2},
			gguf.TypeQ5_0:   {3.5, 0.4, 0.04},
			gguf.TypeQ5_1:   {4, 0.4, 0.01},
			gguf.TypeIQ4_NL: {10, 0.8, 0.06},
			gguf.TypeIQ4_XS: {10, 0.8, 0.06},
			gguf.TypeQ2_K:   {20, 15, 0.12},
			gguf.TypeQ3_K:   {20, 15, 0.12},
			gguf.TypeQ4_K:   {3.5, 0.4, 0.04},
			gguf.TypeQ5_K:   {4, 0.4, 0.01},
			gguf.TypeQ6_K:   {0.8, 2e-3, 6e-5},

			gguf.TypeIQ3_XXS: {10, 0.8, 0.06},
			gguf.TypeIQ3_S:   {10, 0.8, 0.06},
			gguf.TypeIQ2_XXS: {8, 0.3, 0.05}, gguf.TypeIQ2_XS: {8, 0.3, 0.05}, gguf.TypeIQ2_S: {8, 0.3, 0.05},
			gguf.TypeIQ1_S: {8, 0.3, 0.05}, gguf.TypeIQ1_M: {8, 0.3, 0.05},
		},
		prompts: [][]int{ref.Prompt, ref.Greedy[:24], ref.Greedy[:60], {1}},
		texts:   []string{"Once upon a time", `Lily's mom said, "Let's go to the park."`, "  two  spaces\nand a line", "zebra café"},
	}
	checkFixture(t, spec, func(t *testing.T, ck *checkpoint, convs []*converted) {
		checkLlamaCpp(t, ck, convs, spec, &greedyRef{prompt: ref.Prompt, want: ref.Greedy})
	})
}

func TestOpenchatTiny(t *testing.T) {
	dir := fixture(t, "models/openchat-tiny")
	prompt, ids := tinyGreedy(t, dir)
	var tokCfg struct {
		ChatTemplate string `json:"chat_template"`
	}
	readJSON(t, filepath.Join(dir, "tokenizer_config.json"), &tokCfg)
	spec := fixtureSpec{
		rel: "models/openchat-tiny",
		meta: map[string]any{
			"general.architecture": "llama", "general.name": "openchat-tiny",
			"llama.context_length": uint32(4096), "llama.embedding_length": uint32(256), "llama.block_count": uint32(6),
			"llama.feed_forward_length": uint32(896), "llama.attention.head_count": uint32(2), "llama.attention.head_count_kv": uint32(1),
			"llama.rope.dimension_count": uint32(128), "llama.rope.freq_base": float32(10000),
			"llama.attention.layer_norm_rms_epsilon": float32(1e-5), "llama.vocab_size": uint32(32002),
			"tokenizer.ggml.bos_token_id": uint32(1), "tokenizer.ggml.eos_token_id": uint32(32000), "tokenizer.ggml.unknown_token_id": uint32(0),
			"tokenizer.ggml.add_bos_token": true, "tokenizer.chat_template": tokCfg.ChatTemplate,
		},
		// intermediate 896 = 3.5 × 256: ffn_down's rows fall back to
		// llama-quantize's type of 32-value blocks for a 256-value one.
		fallbacks: map[gguf.TensorType]map[string]gguf.TensorType{
			gguf.TypeIQ4_XS: {"ffn_down.weight": gguf.TypeIQ4_NL},
			gguf.TypeQ2_K:   {"ffn_down.weight": gguf.TypeQ4_0},
			gguf.TypeQ3_K:   {"ffn_down.weight": gguf.TypeQ4_0},
			gguf.TypeQ4_K:   {"ffn_down.weight": gguf.TypeQ5_0},
			gguf.TypeQ5_K:   {"ffn_down.weight": gguf.TypeQ5_1},
			gguf.TypeQ6_K:   {"ffn_down.weight": gguf.TypeQ8_0},

			gguf.TypeIQ3_XXS: {"ffn_down.weight": gguf.TypeIQ4_NL},
			gguf.TypeIQ3_S:   {"ffn_down.weight": gguf.TypeIQ4_NL},
			gguf.TypeIQ2_XXS: {"ffn_down.weight": gguf.TypeIQ4_NL}, gguf.TypeIQ2_XS: {"ffn_down.weight": gguf.TypeIQ4_NL}, gguf.TypeIQ2_S: {"ffn_down.weight": gguf.TypeIQ4_NL},
			gguf.TypeIQ1_S: {"ffn_down.weight": gguf.TypeIQ4_NL}, gguf.TypeIQ1_M: {"ffn_down.weight": gguf.TypeIQ4_NL},
		},
		// Measured worst tensor: F16 0 (the checkpoint is fp16), BF16
		// 2.9e-6, Q8_0 3.5e-5, Q4_K 5.4e-3 (token_embd; Gaussian data
		// gives 5.8e-3, TestQ4_KRoundTrip), Q5_K 1.4e-3, Q6_K 3.7e-4, Q4_0
		// 9.2e-3, Q4_1 6.4e-3, Q5_0 2.1e-3, Q5_1 1.5e-3, IQ4_NL 6.2e-3,
		// IQ4_XS 6.3e-3, Q2_K 9.4e-2, Q3_K 2.5e-2, IQ3_S 2.9e-2; with
		// fullImatrix's importances (random, which cost plain NMSE)
		// IQ3_XXS 7.0e-2, IQ2_XXS 0.28, IQ2_XS 0.15, IQ2_S 9.8e-2, IQ1_S
		// 0.34, IQ1_M 0.31. Bounds: about 2×.
		weightNMSE: map[gguf.TensorType]float64{gguf.TypeF32: 0, gguf.TypeF16: 0, gguf.TypeBF16: 6e-6, gguf.TypeQ8_0: 7e-5, gguf.TypeQ4_K: 1e-2, gguf.TypeQ5_K: 3e-3, gguf.TypeQ6_K: 8e-4,
			gguf.TypeQ4_0: 2e-2, gguf.TypeQ4_1: 1.3e-2, gguf.TypeQ5_0: 4.5e-3, gguf.TypeQ5_1: 3e-3, gguf.TypeIQ4_NL: 1.3e-2,
			gguf.TypeIQ4_XS: 1.3e-2, gguf.TypeQ2_K: 0.2, gguf.TypeQ3_K: 5e-2, gguf.TypeIQ3_XXS: 0.15, gguf.TypeIQ3_S: 6e-2,
			gguf.TypeIQ2_XXS: 0.55, gguf.TypeIQ2_XS: 0.3, gguf.TypeIQ2_S: 0.2, gguf.TypeIQ1_S: 0.7, gguf.TypeIQ1_M: 0.65},
		// Measured (worst prompt) max|Δlogp| / NMSE / KL: BF16 5.8e-2 /
		// 4.4e-5 / 2.5e-5, Q8_0 0.17 / 2.3e-4 / 3.2e-4, Q4_0 2.7 / 5.5e-2 /
		// 0.17, Q4_1 2.7 / 6.3e-2 / 6.4e-2, Q5_0 1.2 / 8.2e-3 / 2.0e-2, Q5_1
		// 0.95 / 8.5e-3 / 2.3e-2, IQ4_NL 2.3 / 5.1e-2 / 0.11, IQ4_XS 2.5 /
		// 8.8e-2 / 0.10, Q2_K 8.0 / 0.60 / 0.93, Q3_K 4.9 / 0.32 / 0.28, Q4_K
		// 1.8 / 3.2e-2 / 9.2e-2, Q5_K 1.3 / 1.9e-2 / 1.9e-2, Q6_K 0.60 /
		// 2.6e-3 / 4.0e-3, IQ3_S 4.3 / 0.12 / 0.28; with random
		// importances IQ3_XXS 7.5 / 0.67 / 0.80, IQ2_XXS 15 / 2.5 / 5.9,
		// IQ2_XS 14 / 1.1 / 3.8, IQ2_S 8.6 / 0.60 / 1.9, IQ1_S 13 / 2.0 /
		// 10, IQ1_M 14 / 1.5 / 7.3. 4 bits move a 13M-parameter model's
		// distribution visibly (the max comes from tokens of log p ≈ −20)
		// but keep every argmax; Q2_K, IQ3_XXS and the IQ2 and IQ1 types
		// change some (flipsArgmax). Bounds: about 3×.
		runtime: map[gguf.TensorType]tolerance{
			// The checkpoint is fp16: F32 and F16 hold its exact values.
			gguf.TypeF32:    {0, 0, 0},
			gguf.TypeF16:    {0, 0, 0},
			gguf.TypeBF16:   {0.15, 1.5e-4, 8e-5},
			gguf.TypeQ8_0:   {0.5, 7e-4, 1e-3},
			gguf.TypeQ4_0:   {8, 0.15, 0.5},
			gguf.TypeQ4_1:   {8, 0.2, 0.2},
			gguf.TypeQ5_0:   {3.5, 2.5e-2, 6e-2},
			gguf.TypeQ5_1:   {3, 2.5e-2, 7e-2},
			gguf.TypeIQ4_NL: {7, 0.15, 0.3},
			gguf.TypeIQ4_XS: {7, 0.25, 0.3},
			gguf.TypeQ2_K:   {20, 1.5, 2.5},
			gguf.TypeQ3_K:   {12, 0.9, 0.8},
			gguf.TypeQ4_K:   {5, 8e-2, 0.2},
			gguf.TypeQ5_K:   {3.5, 3e-2, 4e-2},
			gguf.TypeQ6_K:   {1.8, 8e-3, 1.2e-2},

			gguf.TypeIQ3_XXS: {20, 1.2, 2.2},
			gguf.TypeIQ3_S:   {12, 0.4, 0.8},
			gguf.TypeIQ2_XXS: {45, 7.5, 18}, gguf.TypeIQ2_XS: {40, 3.3, 11}, gguf.TypeIQ2_S: {26, 1.8, 5.6},
			gguf.TypeIQ1_S: {40, 6, 30}, gguf.TypeIQ1_M: {40, 4.5, 22},
		},
		flipsArgmax: map[gguf.TensorType]bool{gguf.TypeQ2_K: true, gguf.TypeIQ3_XXS: true, gguf.TypeIQ2_XXS: true, gguf.TypeIQ2_XS: true, gguf.TypeIQ2_S: true,
			gguf.TypeIQ1_S: true, gguf.TypeIQ1_M: true},
		prompts: tinyPrompts(t, dir),
		texts: []string{"Hello, world!", "GPT4 Correct User: Hi<|end_of_turn|>GPT4 Correct Assistant:",
			"naïve café 東京 😀", "func main() {\n\tfmt.Println(42)\n}", "The  capital   of France"},
	}
	checkFixture(t, spec, func(t *testing.T, ck *checkpoint, convs []*converted) {
		checkLlamaCpp(t, ck, convs, spec, &greedyRef{prompt: prompt, want: ids})
	})
}

// checkFixture converts the fixture to every type, checks each file with
// our reader and runtime, then hands the files to more checks.
func checkFixture(t *testing.T, spec fixtureSpec, more func(t *testing.T, ck *checkpoint, convs []*converted)) {
	ck := openCheckpoint(t, spec.rel)
	orig := loadRuntime(t, ck.set, ck.cfg)
	want := nextLogProbs(t, orig, spec.prompts)
	var convs []*converted
	for _, typ := range allTypes {
		c := convert(t, ck, typ)
		convs = append(convs, c)
		t.Run(typ.String(), func(t *testing.T) {
			t.Run("layout", func(t *testing.T) { checkLayout(t, ck, c, spec) })
			t.Run("metadata", func(t *testing.T) { checkMetadata(t, ck, c, spec) })
			t.Run("vocab", func(t *testing.T) { checkVocab(t, ck, c) })
			t.Run("weights", func(t *testing.T) { checkWeights(t, ck, c, spec.weightNMSE[typ]) })
			t.Run("runtime", func(t *testing.T) {
				m := loadRuntime(t, newGGUFWeights(c, ck.cfg), ck.cfg)
				got := nextLogProbs(t, m, spec.prompts)
				var ds []diff
				for i := range got {
					ds = append(ds, compare(got[i], want[i]))
				}
				d := worst(ds)
				t.Logf("runtime on the %s file vs the checkpoint: %v", typ, d)
				if spec.flipsArgmax[typ] {
					d.argmax = true
				}
				spec.runtime[typ].check(t, "runtime on the "+typ.String()+" file vs the checkpoint", d)
			})
		})
	}
	t.Run("llama.cpp", func(t *testing.T) { more(t, ck, convs) })
}

// checkLayout checks names, shapes, types and fallbacks against the
// config, independently of the converter's tables.
func checkLayout(t *testing.T, ck *checkpoint, c *converted, spec fixtureSpec) {
	cfg := ck.cfg
	h, q, kv, ff, v := cfg.HiddenSize, cfg.NumAttentionHeads*cfg.HeadDim, cfg.NumKeyValueHeads*cfg.HeadDim, cfg.IntermediateSize, cfg.VocabSize
	want := map[string][]int{"token_embd.weight": {v, h}, "output_norm.weight": {h}}
	if !cfg.TieWordEmbeddings {
		want["output.weight"] = []int{v, h}
	}
	for i := range cfg.NumHiddenLayers {
		p := fmt.Sprintf("blk.%d.", i)
		for name, shape := range map[string][]int{
			"attn_norm.weight": {h}, "attn_q.weight": {q, h}, "attn_k.weight": {kv, h}, "attn_v.weight": {kv, h},
			"attn_output.weight": {h, q}, "ffn_norm.weight": {h}, "ffn_gate.weight": {ff, h}, "ffn_up.weight": {ff, h},
			"ffn_down.weight": {h, ff},
		} {
			want[p+name] = shape
		}
	}
	tensors := c.file.Tensors()
	if len(tensors) != len(want) {
		t.Errorf("%d tensors, want %d", len(tensors), len(want))
	}
	fallbacks := map[string]gguf.Fallback{}
	for _, fb := range c.res.Fallbacks {
		fallbacks[fb.Tensor] = fb
	}
	for _, ti := range tensors {
		shape, ok := want[ti.Name]
		if !ok {
			t.Errorf("unexpected tensor %q", ti.Name)
			continue
		}
		if !slices.Equal(ti.Shape, shape) {
			t.Errorf("tensor %q: shape %v, want %v", ti.Name, ti.Shape, shape)
		}
		wantType := c.typ
		if len(shape) == 1 {
			wantType = gguf.TypeF32
		} else {
			for suffix, fb := range spec.fallbacks[c.typ] {
				if strings.HasSuffix(ti.Name, suffix) {
					wantType = fb
				}
			}
		}
		if ti.Type != wantType {
			t.Errorf("tensor %q: type %s, want %s", ti.Name, ti.Type, wantType)
		}
		fb, fell := fallbacks[ti.Name]
		if fell != (wantType != c.typ && len(shape) == 2) || (fell && (fb.Got != wantType || fb.Want != c.typ || fb.Reason == "")) {
			t.Errorf("tensor %q: fallback %+v (reported %v), want type %s", ti.Name, fb, fell, wantType)
		}
	}
	if len(fallbacks) != len(c.res.Fallbacks) {
		t.Errorf("fallbacks name a tensor twice: %v", c.res.Fallbacks)
	}
}

func checkMetadata(t *testing.T, ck *checkpoint, c *converted, spec fixtureSpec) {
	fileTypes := map[gguf.TensorType]uint32{gguf.TypeF32: 0, gguf.TypeF16: 1, gguf.TypeQ4_0: 2, gguf.TypeQ4_1: 3, gguf.TypeQ8_0: 7, gguf.TypeQ5_0: 8, gguf.TypeQ5_1: 9,
		gguf.TypeQ2_K: 10, gguf.TypeQ3_K: 11, gguf.TypeQ4_K: 14, gguf.TypeQ5_K: 16, gguf.TypeQ6_K: 18, gguf.TypeIQ4_NL: 25, gguf.TypeIQ4_XS: 30, gguf.TypeBF16: 32,
		gguf.TypeIQ3_XXS: 23, gguf.TypeIQ3_S: 26, gguf.TypeIQ2_XXS: 19, gguf.TypeIQ2_XS: 20, gguf.TypeIQ2_S: 28, gguf.TypeIQ1_S: 24, gguf.TypeIQ1_M: 31}
	want := map[string]any{"general.file_type": fileTypes[c.typ]}
	for k, v := range spec.meta {
		want[k] = v
	}
	for key, w := range want {
		got, ok := c.file.Get(key)
		if !ok {
			t.Errorf("missing key %q", key)
			continue
		}
		if got != w {
			t.Errorf("%s = %v (%T), want %v (%T)", key, got, got, w, w)
		}
	}
	if _, ok := c.file.Get("tokenizer.ggml.padding_token_id"); ok {
		t.Error("padding_token_id written without ConvertOptions.PadTokenID")
	}
}

// checkVocab compares the token arrays with the tokenizer.json the
// fixture ships, read here independently of formats/tokenizer.
func checkVocab(t *testing.T, ck *checkpoint, c *converted) {
	var tj struct {
		AddedTokens []struct {
			ID      int    `json:"id"`
			Content string `json:"content"`
			Special bool   `json:"special"`
		} `json:"added_tokens"`
		Model struct {
			Vocab  map[string]int `json:"vocab"`
			Merges []string       `json:"merges"`
		} `json:"model"`
	}
	readJSON(t, filepath.Join(ck.dir, "tokenizer.json"), &tj)
	n := ck.cfg.VocabSize
	tokens, err := gguf.Value[[]string](c.file, "tokenizer.ggml.tokens")
	if err != nil {
		t.Fatal(err)
	}
	scores, err := gguf.Value[[]float32](c.file, "tokenizer.ggml.scores")
	if err != nil {
		t.Fatal(err)
	}
	types, err := gguf.Value[[]int32](c.file, "tokenizer.ggml.token_type")
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != n || len(scores) != n || len(types) != n {
		t.Fatalf("%d tokens, %d scores, %d types; want %d each", len(tokens), len(scores), len(types), n)
	}
	wantPiece := make([]string, n)
	wantType := make([]int32, n)
	for p, id := range tj.Model.Vocab {
		wantPiece[id] = p
		wantType[id] = 1 // normal
		if len(p) == 6 && strings.HasPrefix(p, "<0x") && strings.HasSuffix(p, ">") {
			wantType[id] = 6 // byte
		}
	}
	for _, a := range tj.AddedTokens {
		wantPiece[a.ID] = a.Content
		wantType[a.ID] = 4 // user defined
		if a.Special {
			wantType[a.ID] = 3 // control
		}
	}
	wantType[0] = 2 // <unk>
	// A merged piece scores minus the rank of its first merge.
	wantScore := make([]float32, n)
	seen := map[string]bool{}
	for rank, m := range tj.Model.Merges {
		piece := strings.Replace(m, " ", "", 1)
		if !seen[piece] {
			seen[piece] = true
			wantScore[tj.Model.Vocab[piece]] = -float32(rank)
		}
	}
	for id := range n {
		if tokens[id] != wantPiece[id] || types[id] != wantType[id] || scores[id] != wantScore[id] {
			t.Errorf("id %d: (%q, type %d, score %g), want (%q, type %d, score %g)", id, tokens[id], types[id], scores[id], wantPiece[id], wantType[id], wantScore[id])
		}
	}
}

func checkWeights(t *testing.T, ck *checkpoint, c *converted, bound float64) {
	w := newGGUFWeights(c, ck.cfg)
	var worstName string
	var worstNMSE float64
	for _, ct := range c.res.Tensors {
		orig, err := ck.set.Tensor(ct.Source)
		if err != nil {
			t.Fatal(err)
		}
		want, err := orig.Float32()
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := w.float32(ct.Source)
		if err != nil {
			t.Fatal(err)
		}
		switch ct.Type {
		case gguf.TypeF32:
			if !slices.Equal(got, want) {
				t.Errorf("tensor %q (from %q): F32 values differ from the checkpoint", ct.Name, ct.Source)
			}
			continue
		case gguf.TypeF16, gguf.TypeBF16:
			// Exactly the round-to-nearest-even conversion of each value.
			for i := range want {
				r := half.F16ToF32(half.F32ToF16(want[i]))
				if ct.Type == gguf.TypeBF16 {
					r = half.BF16ToF32(half.F32ToBF16(want[i]))
				}
				if got[i] != r {
					t.Fatalf("tensor %q value %d: %g, want %g rounded to %s = %g", ct.Name, i, got[i], want[i], ct.Type, r)
				}
			}
		}
		var num, den float64
		for i := range want {
			d := float64(got[i]) - float64(want[i])
			num += d * d
			den += float64(want[i]) * float64(want[i])
		}
		if e := num / den; e > worstNMSE || worstName == "" {
			worstName, worstNMSE = ct.Name, e
		}
	}
	t.Logf("%s: worst tensor NMSE %.3g (%s)", c.typ, worstNMSE, worstName)
	if worstNMSE > bound {
		t.Errorf("tensor %q: NMSE %.3g against the checkpoint, want ≤ %.3g", worstName, worstNMSE, bound)
	}
}

// TestPermuteQK checks the row order by hand: heads of 4 rows [a0 a1 b0
// b1] (halves a, b as transformers rotates them) become [a0 b0 a1 b1].
func TestPermuteQK(t *testing.T) {
	src := make([]float32, 8*2) // 2 heads × 4 rows, 2 columns; row r holds r, r+0.5
	for r := range 8 {
		src[2*r], src[2*r+1] = float32(r), float32(r)+0.5
	}
	got := make([]float32, len(src))
	if err := gguf.PermuteQK(got, src, 8, 2, 2); err != nil {
		t.Fatal(err)
	}
	wantRows := []float32{0, 2, 1, 3, 4, 6, 5, 7}
	for r, w := range wantRows {
		if got[2*r] != w || got[2*r+1] != w+0.5 {
			t.Errorf("row %d = [%g %g], want source row %g", r, got[2*r], got[2*r+1], w)
		}
	}
	back := make([]float32, len(src))
	if err := gguf.UnpermuteQK(back, got, 8, 2, 2); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back, src) {
		t.Errorf("UnpermuteQK(PermuteQK(x)) = %v, want %v", back, src)
	}
	for _, bad := range []struct{ rows, heads int }{{8, 3}, {6, 2}, {8, 0}} {
		if err := gguf.PermuteQK(make([]float32, bad.rows*2), make([]float32, bad.rows*2), bad.rows, 2, bad.heads); err == nil {
			t.Errorf("PermuteQK of %d rows in %d heads succeeded", bad.rows, bad.heads)
		}
	}
}

// TestPermuteRoPE checks why the permutation exists: RoPE on adjacent
// pairs (llama.cpp, GPT-J style) of the permuted projections gives the
// attention scores of RoPE on halves (transformers rotate_half) of the
// original ones, for every pair of positions.
func TestPermuteRoPE(t *testing.T) {
	const heads, hd, in = 2, 8, 5
	wq, wk, x := gaussianMat(1, heads*hd*in), gaussianMat(2, heads*hd*in), gaussianMat(3, 2*in)
	pq, pk := make([]float32, len(wq)), make([]float32, len(wk))
	if err := gguf.PermuteQK(pq, wq, heads*hd, in, heads); err != nil {
		t.Fatal(err)
	}
	if err := gguf.PermuteQK(pk, wk, heads*hd, in, heads); err != nil {
		t.Fatal(err)
	}
	project := func(w, x []float32) []float64 {
		out := make([]float64, heads*hd)
		for r := range out {
			for c := range in {
				out[r] += float64(w[r*in+c]) * float64(x[c])
			}
		}
		return out
	}
	theta := func(i int) float64 { return math.Pow(10000, -2*float64(i)/hd) }
	// rotate_half: dimension i pairs with i + hd/2, angle pos·θ_i.
	ropeHalves := func(v []float64, pos int) []float64 {
		out := slices.Clone(v)
		for h := range heads {
			for i := range hd / 2 {
				a, b := v[h*hd+i], v[h*hd+i+hd/2]
				s, c := math.Sincos(float64(pos) * theta(i))
				out[h*hd+i], out[h*hd+i+hd/2] = a*c-b*s, b*c+a*s
			}
		}
		return out
	}
	// llama.cpp's rope (mode 0): dimensions 2i and 2i+1 pair, angle pos·θ_i.
	ropePairs := func(v []float64, pos int) []float64 {
		out := slices.Clone(v)
		for h := range heads {
			for i := range hd / 2 {
				a, b := v[h*hd+2*i], v[h*hd+2*i+1]
				s, c := math.Sincos(float64(pos) * theta(i))
				out[h*hd+2*i], out[h*hd+2*i+1] = a*c-b*s, b*c+a*s
			}
		}
		return out
	}
	dot := func(a, b []float64, h int) float64 {
		var s float64
		for i := h * hd; i < (h+1)*hd; i++ {
			s += a[i] * b[i]
		}
		return s
	}
	for _, pos := range [][2]int{{0, 0}, {3, 1}, {17, 5}, {100, 99}} {
		qh, kh := ropeHalves(project(wq, x[:in]), pos[0]), ropeHalves(project(wk, x[in:]), pos[1])
		qp, kp := ropePairs(project(pq, x[:in]), pos[0]), ropePairs(project(pk, x[in:]), pos[1])
		for h := range heads {
			if a, b := dot(qh, kh, h), dot(qp, kp, h); math.Abs(a-b) > 1e-9*(1+math.Abs(a)) {
				t.Errorf("positions %v head %d: score %g with rotate_half, %g after permuting for adjacent pairs", pos, h, a, b)
			}
		}
	}
}

func gaussianMat(seed uint64, n int) []float32 {
	out := make([]float32, n)
	s := seed*0x9E3779B97F4A7C15 + 1
	for i := range out {
		s ^= s << 13
		s ^= s >> 7
		s ^= s << 17
		out[i] = float32(s%2001)/1000 - 1
	}
	return out
}

// missingTensor hides one tensor of a checkpoint.
type missingTensor struct {
	w    gguf.Weights
	name string
}

func (m missingTensor) Tensor(name string) (safetensors.Tensor, error) {
	if name == m.name {
		return safetensors.Tensor{}, fmt.Errorf("tensor %q: %w", name, os.ErrNotExist)
	}
	return m.w.Tensor(name)
}

// extraTensor adds one F32 bias tensor of n values, value v at element at
// (none for at < 0) and zeros elsewhere, to a checkpoint.
type extraTensor struct {
	w     gguf.Weights
	name  string
	n, at int
	v     float32
}

func (e extraTensor) Tensor(name string) (safetensors.Tensor, error) {
	if name != e.name {
		return e.w.Tensor(name)
	}
	data := make([]byte, 4*e.n)
	if e.at >= 0 {
		binary.LittleEndian.PutUint32(data[4*e.at:], math.Float32bits(e.v))
	}
	return safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: name, DType: safetensors.F32, Shape: []int{e.n}}, Data: data}, nil
}

// poisonedTensor sets element at of an F32 tensor of a checkpoint to v.
type poisonedTensor struct {
	w    gguf.Weights
	name string
	at   int
	v    float32
}

func (p poisonedTensor) Tensor(name string) (safetensors.Tensor, error) {
	tensor, err := p.w.Tensor(name)
	if err != nil || name != p.name {
		return tensor, err
	}
	if tensor.DType != safetensors.F32 {
		return tensor, fmt.Errorf("poisonedTensor: %q is %s, want F32", name, tensor.DType)
	}
	data := slices.Clone(tensor.Data)
	binary.LittleEndian.PutUint32(data[4*p.at:], math.Float32bits(p.v))
	tensor.Data = data
	return tensor, nil
}

func TestConvertErrors(t *testing.T) {
	ck := openCheckpoint(t, "models/stories260K-hf-mistral")
	upImatrix := &gguf.Imatrix{Entries: map[string]gguf.ImatrixEntry{"blk.2.ffn_up.weight": {Sum2: slices.Repeat([]float32{1}, 64), Count: 1}}}
	parse := func(t *testing.T, edit func(map[string]string)) *hfconfig.Config {
		t.Helper()
		fields := map[string]string{
			"model_type": `"mistral"`, "architectures": `["MistralForCausalLM"]`, "hidden_size": "64", "intermediate_size": "172",
			"num_hidden_layers": "5", "num_attention_heads": "8", "num_key_value_heads": "4", "head_dim": "8", "vocab_size": "512",
			"max_position_embeddings": "512", "rms_norm_eps": "1e-5", "tie_word_embeddings": "false",
		}
		edit(fields)
		var b strings.Builder
		b.WriteString("{")
		first := true
		for k, v := range fields {
			if !first {
				b.WriteString(",")
			}
			first = false
			fmt.Fprintf(&b, "%q:%s", k, v)
		}
		b.WriteString("}")
		cfg, err := hfconfig.Parse([]byte(b.String()), "cfg/config.json")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	tests := []struct {
		name string
		edit func(map[string]string)
		w    gguf.Weights
		opts gguf.ConvertOptions
		want string
		is   error
	}{
		{"classifier", func(f map[string]string) { f["architectures"] = `["MistralForSequenceClassification"]` }, ck.set, gguf.ConvertOptions{Type: gguf.TypeF16},
			`cfg/config.json: architectures[0] "MistralForSequenceClassification": unsupported model`, gguf.ErrUnsupportedModel},
		{"attention bias", func(f map[string]string) { f["attention_bias"] = "true" }, extraTensor{ck.set, "model.layers.1.self_attn.o_proj.bias", 64, 5, -2}, gguf.ConvertOptions{Type: gguf.TypeF16},
			`tensor "model.layers.1.self_attn.o_proj.bias": largest |value| 2 (first nonzero element 5), want all zeros: unsupported model`, gguf.ErrUnsupportedModel},
		{"bias without the key", func(map[string]string) {}, extraTensor{ck.set, "lm_head.bias", 512, 0, float32(math.NaN())}, gguf.ConvertOptions{Type: gguf.TypeF16},
			`tensor "lm_head.bias": largest |value| NaN (first nonzero element 0)`, gguf.ErrUnsupportedModel},
		{"tensor type", func(map[string]string) {}, ck.set, gguf.ConvertOptions{Type: gguf.TypeTQ1_0}, "tensor type TQ1_0: want F32, F16, Q4_0, ", nil},
		{"missing tensor", func(map[string]string) {}, missingTensor{ck.set, "model.layers.3.mlp.up_proj.weight"}, gguf.ConvertOptions{Type: gguf.TypeQ8_0},
			`tensor "model.layers.3.mlp.up_proj.weight"`, os.ErrNotExist},
		{"shape", func(f map[string]string) { f["intermediate_size"] = "176" }, ck.set, gguf.ConvertOptions{Type: gguf.TypeF32},
			`tensor "model.layers.0.mlp.gate_proj.weight": shape [172 64], cfg/config.json implies [176 64]`, nil},
		{"vocab", func(f map[string]string) { f["vocab_size"] = "500" }, ck.set, gguf.ConvertOptions{Type: gguf.TypeF32},
			"tokenizer has 512 ids, cfg/config.json vocab_size is 500", nil},
		{"pad id", func(map[string]string) {}, ck.set, gguf.ConvertOptions{Type: gguf.TypeF32, PadTokenID: new(int(600))},
			"tokenizer.ggml.padding_token_id 600 outside the vocabulary of 512", nil},
		{"imatrix rows", func(map[string]string) {}, ck.set, gguf.ConvertOptions{Type: gguf.TypeQ4_0, Imatrix: &gguf.Imatrix{Entries: map[string]gguf.ImatrixEntry{
			"blk.2.attn_q.weight": {Sum2: make([]float32, 172), Count: 1}}}},
			`imatrix entry "blk.2.attn_q.weight" has 172 values, the weight's rows 64`, nil},
		{"NaN weight", func(map[string]string) {}, poisonedTensor{ck.set, "model.layers.2.mlp.up_proj.weight", 100, float32(math.NaN())}, gguf.ConvertOptions{Type: gguf.TypeQ4_0},
			`tensor "blk.2.ffn_up.weight": encode Q4_0: value 100 is NaN`, gguf.ErrNotQuantizable},
		{"NaN weight, imatrix", func(map[string]string) {}, poisonedTensor{ck.set, "model.layers.2.mlp.up_proj.weight", 100, float32(math.NaN())}, gguf.ConvertOptions{Type: gguf.TypeQ4_1, Imatrix: upImatrix},
			`tensor "blk.2.ffn_up.weight": encode Q4_1 with importance: value 100 is NaN`, gguf.ErrNotQuantizable},
		{"huge weight", func(map[string]string) {}, poisonedTensor{ck.set, "model.layers.2.mlp.up_proj.weight", 100, 1e7}, gguf.ConvertOptions{Type: gguf.TypeIQ4_NL},
			`tensor "blk.2.ffn_up.weight": encode IQ4_NL: block 3 (values 96 to 127, largest |value| 1e+07): its fp16 scale overflows`, gguf.ErrNotQuantizable},
	}
	// The errors gguf.Check gives too, before a tensor is read.
	checked := map[string]bool{"classifier": true, "tensor type": true, "imatrix rows": true}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := parse(t, tt.edit)
			if err := gguf.Check(cfg, tt.opts); checked[tt.name] != (err != nil) || err != nil && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check: %v, want an error containing %q: %v", err, tt.want, checked[tt.name])
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "out.gguf")
			_, err := gguf.FromCheckpoint(path, tt.w, cfg, ck.tok, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				t.Errorf("left behind: %s", e.Name())
			}
		})
	}
	t.Run("model_type", func(t *testing.T) {
		// hfconfig refuses other families first, naming the key.
		_, err := hfconfig.Parse([]byte(`{"model_type":"falcon","hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":1,"vocab_size":8}`), "g/config.json")
		if err == nil || !strings.Contains(err.Error(), `g/config.json: model_type "falcon"`) {
			t.Errorf("error %v", err)
		}
		cfg := parse(t, func(map[string]string) {})
		cfg.ModelType = "falcon"
		_, err = gguf.FromCheckpoint(filepath.Join(t.TempDir(), "x.gguf"), ck.set, cfg, ck.tok, gguf.ConvertOptions{Type: gguf.TypeF32})
		if !errors.Is(err, gguf.ErrUnsupportedModel) || !strings.Contains(err.Error(), `model_type "falcon"`) {
			t.Errorf("error %v, want one naming model_type and wrapping ErrUnsupportedModel", err)
		}
	})
	t.Run("zero biases", func(t *testing.T) {
		// attention_bias and mlp_bias true over biases absent or zeros
		// (a no-op) give the file of the config without them.
		want := filepath.Join(t.TempDir(), "x.gguf")
		if _, err := gguf.FromCheckpoint(want, ck.set, parse(t, func(map[string]string) {}), ck.tok, gguf.ConvertOptions{Type: gguf.TypeF16}); err != nil {
			t.Fatal(err)
		}
		cfg := parse(t, func(f map[string]string) { f["attention_bias"], f["mlp_bias"] = "true", "true" })
		for _, w := range []gguf.Weights{ck.set, extraTensor{ck.set, "model.layers.3.self_attn.q_proj.bias", 64, -1, 0}} {
			got := filepath.Join(t.TempDir(), "x.gguf")
			if _, err := gguf.FromCheckpoint(got, w, cfg, ck.tok, gguf.ConvertOptions{Type: gguf.TypeF16}); err != nil {
				t.Fatal(err)
			}
			a, _ := os.ReadFile(want)
			b, _ := os.ReadFile(got)
			if !bytes.Equal(a, b) {
				t.Errorf("%T: the file differs from the one without attention_bias and mlp_bias", w)
			}
		}
	})
	t.Run("sliding window", func(t *testing.T) {
		cfg := parse(t, func(f map[string]string) { f["sliding_window"] = "128" })
		res, err := gguf.FromCheckpoint(filepath.Join(t.TempDir(), "x.gguf"), ck.set, cfg, ck.tok, gguf.ConvertOptions{Type: gguf.TypeF16})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "sliding_window 128 < max_position_embeddings 512") {
			t.Errorf("warnings %q, want one about sliding_window", res.Warnings)
		}
	})
	t.Run("pad and name", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "x.gguf")
		var seen []string
		_, err := gguf.FromCheckpoint(path, ck.set, ck.cfg, ck.tok, gguf.ConvertOptions{Type: gguf.TypeF32, PadTokenID: new(int(0)), Name: "tiny",
			Progress: func(i, n int, name string) { seen = append(seen, fmt.Sprintf("%d/%d %s", i, n, name)) }})
		if err != nil {
			t.Fatal(err)
		}
		f, err := gguf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if v, _ := f.Get("tokenizer.ggml.padding_token_id"); v != uint32(0) {
			t.Errorf("padding_token_id = %v, want uint32 0", v)
		}
		if v, _ := f.Get("general.name"); v != "tiny" {
			t.Errorf("general.name = %v, want tiny", v)
		}
		if len(seen) != len(f.Tensors()) || seen[0] != "0/48 token_embd.weight" {
			t.Errorf("progress calls %v", seen)
		}
	})
}

// bigValues serves a checkpoint's F32 tensor with some values replaced.
type bigValues struct {
	w    gguf.Weights
	name string
	set  map[int]float32 // index → value
}

func (b bigValues) Tensor(name string) (safetensors.Tensor, error) {
	t, err := b.w.Tensor(name)
	if err != nil || name != b.name {
		return t, err
	}
	t.Data = slices.Clone(t.Data)
	for i, v := range b.set {
		binary.LittleEndian.PutUint32(t.Data[4*i:], math.Float32bits(v))
	}
	return t, nil
}

// TestConvertF16Overflow: an F16 weight holding values beyond fp16's range
// (which F16 would store as ±Inf) is refused naming the tensor and the
// count, also where it is F16 as a
// fallback (stories260K's down_proj rows of 172 are not whole Q8_0
// blocks), with nothing left behind; AllowOverflow clamps them to ±65504
// and counts them. 65519 rounds to 65504 and is no overflow.
func TestConvertF16Overflow(t *testing.T) {
	ck := openCheckpoint(t, "models/stories260K-hf-mistral") // F32
	const name = "model.layers.1.mlp.down_proj.weight"       // [64, 172]
	w := bigValues{ck.set, name, map[int]float32{0: 1e5, 5: -7e4, 9: 65519}}
	for _, typ := range []gguf.TensorType{gguf.TypeF16, gguf.TypeQ8_0} {
		t.Run(typ.String(), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.gguf")
			_, err := gguf.FromCheckpoint(path, w, ck.cfg, ck.tok, gguf.ConvertOptions{Type: typ})
			if !errors.Is(err, gguf.ErrF16Overflow) || !strings.Contains(err.Error(), name+" (2)") {
				t.Fatalf("err = %v, want ErrF16Overflow naming %s (2)", err, name)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("refusal left %v", entries)
			}
			res, err := gguf.FromCheckpoint(path, w, ck.cfg, ck.tok, gguf.ConvertOptions{Type: typ, AllowOverflow: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Overflows) != 1 || res.Overflows[name] != 2 {
				t.Errorf("overflows %v, want %s: 2", res.Overflows, name)
			}
			f, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := f.Float32("blk.1.ffn_down.weight")
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range map[int]float32{0: 65504, 5: -65504, 9: 65504} {
				if got[i] != want {
					t.Errorf("value %d: %g, want %g", i, got[i], want)
				}
			}
		})
	}
}
