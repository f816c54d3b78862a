package gguf_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// jsDir holds the node project that runs llama.cpp (see check.mjs).
var jsDir = filepath.Join("testdata", "js")

// llamaCppAvailable skips the test, naming the missing piece, unless node
// and the npm packages of testdata/js are installed.
func llamaCppAvailable(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skipf("llama.cpp check skipped: node not found in PATH (%v)", err)
	}
	pkg := filepath.Join(jsDir, "node_modules", "node-llama-cpp", "package.json")
	if _, err := os.Stat(pkg); err != nil {
		t.Skipf("llama.cpp check skipped: %s missing; run npm ci --prefix formats/gguf/testdata/js", pkg)
	}
	return node
}

type llamaRequest struct {
	Threads int          `json:"threads"`
	Models  []llamaModel `json:"models"`
}

type llamaModel struct {
	Path     string   `json:"path"`
	Context  int      `json:"context"`
	Greedy   *greedyQ `json:"greedy,omitempty"`
	Logits   [][]int  `json:"logits,omitempty"`
	Tokenize []string `json:"tokenize,omitempty"`
}

type greedyQ struct {
	Prompt []int `json:"prompt"`
	Steps  int   `json:"steps"`
}

type llamaResponse struct {
	LlamaCpp string `json:"llama_cpp"`
	Models   []struct {
		Path string `json:"path"`
		Info struct {
			Version     int            `json:"version"`
			TensorCount int            `json:"tensor_count"`
			Metadata    map[string]any `json:"metadata"`
			Tensors     []struct {
				Name   string   `json:"name"`
				Dims   []uint64 `json:"dims"`
				Type   uint32   `json:"type"`
				Offset int64    `json:"offset"`
			} `json:"tensors"`
		} `json:"info"`
		Greedy   []int        `json:"greedy"`
		LogProbs [][]*float64 `json:"logprobs"`
		Tokenize [][]int      `json:"tokenize"`
	} `json:"models"`
}

// runLlamaCpp runs check.mjs on req. One thread: ggml's worker threads
// spin while waiting, and on a busy two-core machine a second thread slows
// decoding a thousandfold.
func runLlamaCpp(t *testing.T, node string, req llamaRequest) llamaResponse {
	t.Helper()
	req.Threads = 1
	in, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "check.mjs")
	cmd.Dir = jsDir
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node check.mjs: %v\n%s", err, stderr.Bytes())
	}
	var resp llamaResponse
	if err := json.Unmarshal(stdout.Bytes(), &resp); err != nil {
		t.Fatalf("node check.mjs output: %v\n%s", err, stderr.Bytes())
	}
	if len(resp.Models) != len(req.Models) {
		t.Fatalf("llama.cpp answered for %d models, want %d", len(resp.Models), len(req.Models))
	}
	return resp
}

// greedyRef is a reference greedy continuation: prompt included in want.
type greedyRef struct {
	prompt, want []int
}

// llamaTolerances bounds llama.cpp's next-token log-probabilities on each
// file against our runtime on the same file's dequantized weights, so that
// only llama.cpp's reading and arithmetic differ, not the weights: a
// misread block or a wrong permutation would give NMSE near 1.
// llama.cpp multiplies F32 weights in fp32, F16 and BF16 weights against
// activations rounded to fp16 / bf16, Q8_0 weights against activations
// quantized to Q8_0 blocks and Q4_K against Q8_K blocks; that activation
// rounding sets each type's tolerance. Measured, worst prompt of either
// fixture (max|Δlogp| / NMSE / KL): F32 1.7e-4 / 3.0e-9 / ~0, F16 7.0e-3 /
// 2.0e-6 / ~0, BF16 7.0e-2 / 2.5e-4 / 4.1e-6, Q8_0 0.22 / 3.3e-3 / 4.3e-4
// (stories260K: hidden size 64, two activation blocks per row), Q4_K 0.26 /
// 2.0e-3 / 5.2e-4, Q5_K 0.18 / 1.2e-3 / 1.0e-3, Q6_K 0.27 / 1.8e-3 /
// 1.7e-3 (openchat-tiny; stories260K's K-type files are its files of the
// fallback types), Q4_0 0.29 / 5.4e-4 / 9.6e-4, Q4_1 0.16 / 1.6e-3 /
// 4.5e-4, Q5_0 0.17 / 5.3e-4 / 2.3e-4, Q5_1 0.18 / 6.3e-4 / 1.4e-3, IQ4_NL
// 0.23 / 1.9e-3 / 9.8e-4, IQ4_XS 0.24 / 1.9e-3 / 5.9e-4, Q2_K 0.29 /
// 6.7e-4 / 9.9e-4, Q3_K 0.30 / 2.3e-3 / 1.4e-3, IQ3_XXS 0.21 / 1.4e-3 /
// 8.6e-4, IQ3_S 0.24 / 3.8e-4 / 6.8e-4, IQ2_XXS 0.24 / 3.6e-4 / 5.1e-3,
// IQ2_XS 0.26 / 1.1e-3 / 1.5e-3, IQ2_S 0.19 / 6.9e-4 / 1.2e-3, IQ1_S 0.30
// / 5.2e-4 / 1.6e-3, IQ1_M 0.23 / 6.7e-4 / 9.7e-4 (openchat-tiny,
// IQ3_XXS and the IQ2 and IQ1 types with fullImatrix's importances;
// stories260K's files of these are IQ4_NL, 0.23 / 1.9e-3 / 1.4e-4, with
// the importances 0.22 / 2.9e-3 / 7.5e-5; TestLlamaCppMix's mixes are
// held to their base type's bounds too).
// Bounds: 3–5×, for llama.cpp's other CPU kernels (AVX2, AVX-512, …)
// summing in other orders.
var llamaTolerances = map[gguf.TensorType]tolerance{
	gguf.TypeF32:    {1e-3, 3e-8, 1e-6},
	gguf.TypeF16:    {3e-2, 1e-5, 1e-5},
	gguf.TypeBF16:   {0.3, 1e-3, 5e-5},
	gguf.TypeQ8_0:   {0.75, 1.5e-2, 2e-3},
	gguf.TypeQ4_K:   {0.75, 1.5e-2, 2e-3},
	gguf.TypeQ5_K:   {0.75, 1.5e-2, 4e-3},
	gguf.TypeQ6_K:   {0.75, 1.5e-2, 6e-3},
	gguf.TypeQ4_0:   {1, 3e-3, 4e-3},
	gguf.TypeQ4_1:   {0.75, 6e-3, 2e-3},
	gguf.TypeQ5_0:   {0.75, 3e-3, 2e-3},
	gguf.TypeQ5_1:   {0.75, 3e-3, 5e-3},
	gguf.TypeIQ4_NL: {0.9, 8e-3, 4e-3},
	gguf.TypeIQ4_XS: {0.9, 8e-3, 4e-3},
	gguf.TypeQ2_K:   {1.2, 3e-3, 5e-3},
	gguf.TypeQ3_K:   {1.2, 8e-3, 5e-3},

	gguf.TypeIQ3_XXS: {1.2, 1.5e-2, 6e-3},
	gguf.TypeIQ3_S:   {1.2, 1.5e-2, 6e-3}, // the IQ3_M mix (Q4_K weights in it): KL 1.9e-3
	gguf.TypeIQ2_XXS: {1.2, 1e-2, 2e-2},
	gguf.TypeIQ2_XS:  {1.2, 1e-2, 6e-3},
	gguf.TypeIQ2_S:   {1.2, 1e-2, 5e-3},
	gguf.TypeIQ1_S:   {1.2, 1e-2, 7e-3},
	gguf.TypeIQ1_M:   {1.2, 1e-2, 5e-3},
}

// checkLlamaCpp loads every converted file in llama.cpp and compares its
// metadata parse, tokenizer, greedy continuation and next-token
// distributions with ours.
func checkLlamaCpp(t *testing.T, ck *checkpoint, convs []*converted, spec fixtureSpec, ref *greedyRef) {
	node := llamaCppAvailable(t)
	steps := len(ref.want) - len(ref.prompt)
	req := llamaRequest{}
	for _, c := range convs {
		req.Models = append(req.Models, llamaModel{
			Path: c.path, Context: len(ref.want) + 8,
			Greedy: &greedyQ{Prompt: ref.prompt, Steps: steps}, Logits: spec.prompts, Tokenize: spec.texts,
		})
	}
	resp := runLlamaCpp(t, node, req)
	t.Logf("llama.cpp %s", resp.LlamaCpp)
	for i, c := range convs {
		got := resp.Models[i]
		t.Run(c.typ.String(), func(t *testing.T) {
			t.Run("parse", func(t *testing.T) {
				checkJSParse(t, c, got.Info.Version, got.Info.Metadata, got.Info.TensorCount, got.Info.Tensors)
			})
			t.Run("tokenize", func(t *testing.T) {
				for j, text := range spec.texts {
					want, err := ck.tok.Encode(text)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(got.Tokenize[j], want) {
						t.Errorf("tokenize %q: llama.cpp %v, ours %v", text, got.Tokenize[j], want)
					}
				}
			})
			m := loadRuntime(t, newGGUFWeights(c, ck.cfg), ck.cfg)
			t.Run("greedy", func(t *testing.T) {
				llama := append(slices.Clone(ref.prompt), got.Greedy...)
				checkGreedy(t, m, c.typ, ref.prompt, llama, len(ref.want))
				// The reference continuation (llama2.c for stories260K,
				// transformers fp32 for openchat-tiny) is reproduced exactly by
				// the files that keep the checkpoint's values or round them to
				// fp16; coarser types may drift after a few tokens.
				same := commonPrefix(llama, ref.want) - len(ref.prompt)
				t.Logf("%s: llama.cpp greedy matches the reference for %d of %d tokens", c.typ, same, steps)
				if (c.typ == gguf.TypeF32 || c.typ == gguf.TypeF16) && same != steps {
					t.Errorf("greedy ids\nllama.cpp %v\nreference %v", llama, ref.want)
				}
			})
			t.Run("logits", func(t *testing.T) {
				d := llamaDiff(t, got.LogProbs, nextLogProbs(t, m, spec.prompts), ck.cfg.VocabSize)
				t.Logf("%s: llama.cpp vs our runtime on the same weights: %v", c.typ, d)
				llamaTolerances[c.typ].check(t, "llama.cpp vs our runtime on "+c.typ.String(), d)
			})
		})
	}
}

// checkGreedy compares llama.cpp's greedy ids with our runtime's on the
// same weights. They must agree up to a step where our runtime's top two
// tokens are closer than the type's log-probability tolerance (a near-tie
// that llama.cpp's activation rounding may break either way); after such a
// step the sequences are no longer comparable.
func checkGreedy(t *testing.T, m *model.Model, typ gguf.TensorType, prompt, llama []int, total int) {
	t.Helper()
	if len(llama) != total {
		t.Fatalf("llama.cpp returned %d ids (prompt included), want %d", len(llama), total)
	}
	ours := greedy(t, m, prompt, total)
	i := commonPrefix(llama, ours)
	if i == total {
		return
	}
	c := m.NewCache(i)
	defer c.Free()
	lg, err := m.ForwardLast(llama[:i], c, nil)
	if err != nil {
		t.Fatal(err)
	}
	margin := float64(lg[ours[i]]) - float64(lg[llama[i]])
	t.Logf("%s: greedy diverges at position %d (llama.cpp %d, ours %d, our logit margin %.3g)", typ, i, llama[i], ours[i], margin)
	if margin > llamaTolerances[typ].maxAbs {
		t.Errorf("greedy ids diverge at position %d where our runtime prefers %d over llama.cpp's %d by %.3g > %.3g\nllama.cpp %v\n     ours %v",
			i, ours[i], llama[i], margin, llamaTolerances[typ].maxAbs, llama, ours)
	}
}

func commonPrefix(a, b []int) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// checkJSParse compares node-llama-cpp's own GGUF parser (JavaScript,
// independent of llama.cpp's C++ reader and of ours) with our reader.
func checkJSParse(t *testing.T, c *converted, version int, meta map[string]any, count int, tensors []struct {
	Name   string   `json:"name"`
	Dims   []uint64 `json:"dims"`
	Type   uint32   `json:"type"`
	Offset int64    `json:"offset"`
}) {
	if version != 3 || count != len(c.file.Tensors()) || len(tensors) != count {
		t.Fatalf("version %d, %d tensors (%d listed); want 3, %d", version, count, len(tensors), len(c.file.Tensors()))
	}
	for i, ti := range c.file.Tensors() {
		js := tensors[i]
		if js.Name != ti.Name || !slices.Equal(js.Dims, ti.Dims()) || js.Type != uint32(ti.Type) || js.Offset != ti.Offset {
			t.Errorf("tensor %d: node-llama-cpp %+v, ours %s dims %v type %d offset %d", i, js, ti.Name, ti.Dims(), ti.Type, ti.Offset)
		}
	}
	for _, kv := range c.file.KVs() {
		js, ok := meta[kv.Key]
		if !ok {
			t.Errorf("key %q: missing in node-llama-cpp's parse", kv.Key)
			continue
		}
		var want any
		switch v := kv.Value.(type) {
		case string, bool:
			want = v
		case uint32:
			want = float64(v)
		case float32:
			want = float64(v)
		case []string:
			if arr, ok := js.([]any); !ok || len(arr) != len(v) || arr[len(v)-1] != v[len(v)-1] {
				t.Errorf("key %q: node-llama-cpp parsed %d entries, want %d ending %q", kv.Key, len(arr), len(v), v[len(v)-1])
			}
			continue
		default:
			if arr, ok := js.([]any); !ok || len(arr) != arrayLen(v) {
				t.Errorf("key %q: node-llama-cpp parsed %T of %d entries", kv.Key, js, len(arr))
			}
			continue
		}
		if js != want {
			t.Errorf("key %q: node-llama-cpp %v (%T), ours %v", kv.Key, js, js, want)
		}
	}
}

func arrayLen(v any) int {
	switch x := v.(type) {
	case []float32:
		return len(x)
	case []int32:
		return len(x)
	}
	return -1
}

// TestLlamaCppSentencePieceVocab: openchat-tiny converted with the
// vocabulary llama.cpp's converter writes from tokenizer.model
// (SentencePieceVocab: SentencePiece scores and types, added tokens typed
// control) tokenizes in llama.cpp as our tokenizer does, openchat's
// <|end_of_turn|> included, and continues the reference greedily as the
// fp16 file of the merge-rank vocabulary does (checkLlamaCpp's checks on
// the F16 file).
func TestLlamaCppSentencePieceVocab(t *testing.T) {
	node := llamaCppAvailable(t)
	ck := openCheckpoint(t, "models/openchat-tiny")
	vocab, err := gguf.SentencePieceVocab(ck.dir, ck.cfg.VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "openchat-tiny-spm-F16.gguf")
	if _, err := gguf.FromCheckpoint(path, ck.set, ck.cfg, ck.tok, gguf.ConvertOptions{Type: gguf.TypeF16, Vocab: vocab}); err != nil {
		t.Fatal(err)
	}
	prompt, ids := tinyGreedy(t, ck.dir)
	texts := []string{"Hello, world!", "GPT4 Correct User: Hi<|end_of_turn|>GPT4 Correct Assistant:",
		"naïve café 東京 😀", "func main() {\n\tfmt.Println(42)\n}", "The  capital   of France"}
	steps := len(ids) - len(prompt)
	resp := runLlamaCpp(t, node, llamaRequest{Models: []llamaModel{{Path: path, Context: len(ids) + 8,
		Greedy: &greedyQ{Prompt: prompt, Steps: steps}, Tokenize: texts}}})
	got := resp.Models[0]
	for j, text := range texts {
		want, err := ck.tok.Encode(text)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Tokenize[j], want) {
			t.Errorf("tokenize %q: llama.cpp %v, ours %v", text, got.Tokenize[j], want)
		}
	}
	if llama := append(slices.Clone(prompt), got.Greedy...); !slices.Equal(llama, ids) {
		t.Errorf("greedy ids\nllama.cpp %v\nreference %v", llama, ids)
	}
}

// TestLlamaCppMix: files of openchat-tiny (6 layers, 2 query heads a KV
// head, token_embd tied: the output) in llama-quantize's file types hold
// the types llama.cpp's rules give them, worked out here by hand, and
// llama.cpp reads their mixed blocks as our runtime does. In every mix
// but IQ3_XXS and the 1- and 2-bit IQ ones (Q5_K) the output is Q6_K, and
// ffn_down's rows of 896 fall back from a type of 256-value blocks to
// llama-quantize's type of 32-value blocks for it. IQ3_XS, IQ3_XXS and the
// 1- and 2-bit IQ ones, which llama-quantize writes only with an
// importance matrix, take randomImatrix's.
func TestLlamaCppMix(t *testing.T) {
	ck := openCheckpoint(t, "models/openchat-tiny")
	layer := func(name string) int {
		i, _ := strconv.Atoi(strings.Split(name, ".")[1])
		return i
	}
	// token_embd's type (the output, tied) where not Q6_K, and the mixes
	// given an importance matrix.
	out := map[string]gguf.TensorType{"IQ3_XXS": gguf.TypeQ5_K, "IQ2_XXS": gguf.TypeQ5_K, "IQ2_XS": gguf.TypeQ5_K, "IQ2_S": gguf.TypeQ5_K, "IQ2_M": gguf.TypeQ5_K,
		"IQ1_S": gguf.TypeQ5_K, "IQ1_M": gguf.TypeQ5_K}
	withImatrix := map[string]bool{"IQ3_XS": true, "IQ3_XXS": true, "IQ2_XXS": true, "IQ2_XS": true, "IQ2_S": true, "IQ2_M": true, "IQ1_S": true, "IQ1_M": true}
	suffix := func(n string, kinds ...string) bool {
		return slices.ContainsFunc(kinds, func(k string) bool { return strings.HasSuffix(n, "."+k+".weight") })
	}
	for _, tc := range []struct {
		mix  string
		file uint32
		// typ gives a 2-D weight's type, token_embd aside.
		typ func(name string) gguf.TensorType
	}{
		// use_more_bits for 6 layers: layers 2 and 5 (Q6_K; ffn_down's
		// falls back to Q8_0), the others' ffn_down Q4_K → Q5_0.
		{"Q4_K_M", 15, func(n string) gguf.TensorType {
			more := layer(n) == 2 || layer(n) == 5
			switch {
			case strings.HasSuffix(n, "attn_v.weight") && more:
				return gguf.TypeQ6_K
			case strings.HasSuffix(n, "ffn_down.weight") && more:
				return gguf.TypeQ8_0
			case strings.HasSuffix(n, "ffn_down.weight"):
				return gguf.TypeQ5_0
			}
			return gguf.TypeQ4_K
		}},
		// attn_v Q5_K in layers 0 and 1, then Q4_K; attn_output Q4_K;
		// ffn_down Q4_K (none of 6 layers is below 6/16) → Q5_0.
		{"Q3_K_M", 12, func(n string) gguf.TensorType {
			switch {
			case strings.HasSuffix(n, "attn_v.weight") && layer(n) < 2:
				return gguf.TypeQ5_K
			case strings.HasSuffix(n, "attn_v.weight"), strings.HasSuffix(n, "attn_output.weight"):
				return gguf.TypeQ4_K
			case strings.HasSuffix(n, "ffn_down.weight"):
				return gguf.TypeQ5_0
			}
			return gguf.TypeQ3_K
		}},
		// Fewer than 4 query heads a KV head: attn_v Q3_K, as attn_output;
		// ffn_down Q3_K → Q4_0.
		{"Q2_K", 10, func(n string) gguf.TensorType {
			switch {
			case strings.HasSuffix(n, "attn_v.weight"), strings.HasSuffix(n, "attn_output.weight"):
				return gguf.TypeQ3_K
			case strings.HasSuffix(n, "ffn_down.weight"):
				return gguf.TypeQ4_0
			}
			return gguf.TypeQ2_K
		}},
		{"Q4_0", 2, func(string) gguf.TensorType { return gguf.TypeQ4_0 }},
		// attn_v stays (fewer than 4 query heads a KV head), ffn_down's
		// Q5_K rule takes layers below 6/8 = 0: none; IQ4_XS → IQ4_NL.
		{"IQ4_XS", 30, func(n string) gguf.TensorType {
			if strings.HasSuffix(n, "ffn_down.weight") {
				return gguf.TypeIQ4_NL
			}
			return gguf.TypeIQ4_XS
		}},
		// attn_v stays (fewer than 4 query heads a KV head); IQ3_S → IQ4_NL.
		{"IQ3_S", 26, func(n string) gguf.TensorType {
			if suffix(n, "ffn_down") {
				return gguf.TypeIQ4_NL
			}
			return gguf.TypeIQ3_S
		}},
		// attn_v and attn_output Q4_K; ffn_down's Q4_K rule takes layers
		// below 6/8 = 0: none, IQ3_S → IQ4_NL.
		{"IQ3_M", 27, func(n string) gguf.TensorType {
			switch {
			case suffix(n, "attn_v", "attn_output"):
				return gguf.TypeQ4_K
			case suffix(n, "ffn_down"):
				return gguf.TypeIQ4_NL
			}
			return gguf.TypeIQ3_S
		}},
		// attn_q and attn_k IQ3_XXS, ffn_gate and ffn_up IQ3_XXS in layers
		// 6/8 = 0 to 42/8 = 5 (not 5); the rest IQ3_S, ffn_down → IQ4_NL.
		{"IQ3_XS", 22, func(n string) gguf.TensorType {
			switch {
			case suffix(n, "attn_q", "attn_k"), suffix(n, "ffn_gate", "ffn_up") && layer(n) < 5:
				return gguf.TypeIQ3_XXS
			case suffix(n, "ffn_down"):
				return gguf.TypeIQ4_NL
			}
			return gguf.TypeIQ3_S
		}},
		// The output Q5_K; attn_q and attn_k IQ2_S; attn_v IQ3_XXS (fewer
		// than 4 query heads a KV head, an importance matrix); attn_output
		// IQ3_S; ffn_down IQ3_XXS (an importance matrix) → IQ4_NL.
		{"IQ3_XXS", 23, func(n string) gguf.TensorType {
			switch {
			case suffix(n, "attn_q", "attn_k"):
				return gguf.TypeIQ2_S
			case suffix(n, "attn_output"):
				return gguf.TypeIQ3_S
			case suffix(n, "ffn_down"):
				return gguf.TypeIQ4_NL
			}
			return gguf.TypeIQ3_XXS
		}},
		// Fewer than 4 query heads a KV head: attn_v Q2_K (IQ2_S, IQ2_M:
		// IQ3_S, as attn_output); ffn_down's rule takes layers below 6/8 =
		// 0: none, IQ2_* → IQ4_NL; the output Q5_K.
		{"IQ2_XXS", 19, iq2Mix(gguf.TypeIQ2_XXS, gguf.TypeQ2_K, gguf.TypeIQ2_XXS)},
		{"IQ2_XS", 20, iq2Mix(gguf.TypeIQ2_XS, gguf.TypeQ2_K, gguf.TypeIQ2_XS)},
		{"IQ2_S", 28, iq2Mix(gguf.TypeIQ2_XS, gguf.TypeIQ3_S, gguf.TypeIQ3_S)},
		{"IQ2_M", 29, iq2Mix(gguf.TypeIQ2_S, gguf.TypeIQ3_S, gguf.TypeIQ3_S)},
		// The 1-bit ones: as IQ2_XXS, attn_output in IQ2_XXS.
		{"IQ1_S", 24, iq2Mix(gguf.TypeIQ1_S, gguf.TypeQ2_K, gguf.TypeIQ2_XXS)},
		{"IQ1_M", 31, iq2Mix(gguf.TypeIQ1_M, gguf.TypeQ2_K, gguf.TypeIQ2_XXS)},
	} {
		mix, ok := gguf.ParseMix(tc.mix)
		if !ok {
			t.Fatalf("no %s mix", tc.mix)
		}
		opts := gguf.ConvertOptions{Mix: mix}
		if withImatrix[tc.mix] {
			opts.Imatrix = randomImatrix(ck)
		}
		c := convertWith(t, ck, mix.Base, opts)
		if ft, _ := c.file.Get("general.file_type"); c.res.FileType != tc.file || ft != tc.file {
			t.Errorf("%s: general.file_type %v (result %d), want %d", tc.mix, ft, c.res.FileType, tc.file)
		}
		for _, ti := range c.file.Tensors() {
			want := cmp.Or(out[tc.mix], gguf.TypeQ6_K)
			switch {
			case len(ti.Shape) == 1:
				want = gguf.TypeF32
			case ti.Name != "token_embd.weight":
				want = tc.typ(ti.Name)
			}
			if ti.Type != want {
				t.Errorf("%s: tensor %s: %s, want %s", tc.mix, ti.Name, ti.Type, want)
			}
		}
		t.Run(tc.mix, func(t *testing.T) {
			// The types above need no llama.cpp; what follows does.
			node := llamaCppAvailable(t)
			prompts := tinyPrompts(t, ck.dir)
			resp := runLlamaCpp(t, node, llamaRequest{Models: []llamaModel{{Path: c.path, Context: 48, Logits: prompts}}})
			ours := nextLogProbs(t, loadRuntime(t, newGGUFWeights(c, ck.cfg), ck.cfg), prompts)
			d := llamaDiff(t, resp.Models[0].LogProbs, ours, ck.cfg.VocabSize)
			t.Logf("%s: llama.cpp vs our runtime on the same weights: %v", tc.mix, d)
			if !d.argmax {
				d.argmax = argmaxNearTie(t, resp.Models[0].LogProbs, ours, llamaTolerances[mix.Base].maxAbs)
			}
			llamaTolerances[mix.Base].check(t, "llama.cpp vs our runtime on "+tc.mix, d)
		})
	}
}

// argmaxNearTie reports whether, on every prompt where llama.cpp's most
// likely next token is not ours, our runtime prefers its own by at most
// margin in log-probability: a near tie that llama.cpp's other rounding
// may break the other way (a 2-bit model's flattened distributions have
// them), as checkGreedy allows.
func argmaxNearTie(t *testing.T, llama [][]*float64, ours [][]float64, margin float64) bool {
	t.Helper()
	for j, lp := range llama {
		top := -1
		for k, v := range lp {
			if v != nil && (top < 0 || *v > *lp[top]) {
				top = k
			}
		}
		mine := argmax(ours[j])
		if top < 0 || top == mine {
			continue
		}
		m := ours[j][mine] - ours[j][top]
		t.Logf("prompt %d: llama.cpp's most likely token %d, ours %d, which our runtime prefers by %.3g", j, top, mine, m)
		if m > margin {
			return false
		}
	}
	return true
}

// iq2Mix gives openchat-tiny's 2-D weights' types (token_embd aside) in a
// 1- or 2-bit IQ file type: attn_v in v, attn_output in out, ffn_down in
// IQ4_NL (its rows of 896 fall back), the rest in base.
func iq2Mix(base, v, out gguf.TensorType) func(string) gguf.TensorType {
	return func(n string) gguf.TensorType {
		switch {
		case strings.HasSuffix(n, "attn_v.weight"):
			return v
		case strings.HasSuffix(n, "attn_output.weight"):
			return out
		case strings.HasSuffix(n, "ffn_down.weight"):
			return gguf.TypeIQ4_NL
		}
		return base
	}
}

// llamaCppF32 converts ck to an F32 file and returns llama.cpp's
// next-token log-probabilities on it (node-llama-cpp, through node) of
// qwen2Prompts, with the prompts.
func llamaCppF32(t *testing.T, node string, ck *checkpoint) ([][]*float64, [][]int) {
	t.Helper()
	prompts := qwen2Prompts(t, ck.tok)
	c := convertWith(t, ck, gguf.TypeF32, gguf.ConvertOptions{Type: gguf.TypeF32})
	resp := runLlamaCpp(t, node, llamaRequest{Models: []llamaModel{{Path: c.path, Context: 64, Logits: prompts}}})
	t.Logf("llama.cpp %s", resp.LlamaCpp)
	return resp.Models[0].LogProbs, prompts
}

// runtimeDiff compares llama's log-probabilities of prompts with our
// runtime's on ck's weights run as cfg on b.
func runtimeDiff(t *testing.T, ck *checkpoint, cfg *hfconfig.Config, b runtime.Backend, llama [][]*float64, prompts [][]int) diff {
	t.Helper()
	m, err := model.FromWeights(ck.set, cfg, nil, b)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	return llamaDiff(t, llama, nextLogProbs(t, m, prompts), ck.cfg.VocabSize)
}
