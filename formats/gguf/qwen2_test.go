package gguf_test

import (
	"encoding/json"
	"errors"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/ggmlvocab"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// qwen2Checkpoint writes a random-weight Qwen2 checkpoint (q/k/v biases,
// fixtures.Qwen2, fp32) whose tokenizer is Qwen's (llama.cpp's qwen2
// vocabulary file, as bpeCheckpoint builds it) and whose vocab_size is
// that vocabulary's.
func qwen2Checkpoint(t *testing.T) *checkpoint {
	t.Helper()
	ref := ggmlvocab.Open(t, filepath.Join("..", "tokenizer", "testdata", "llamacpp", "ggml-vocab-qwen2.gguf.gz"))
	tokens, err := gguf.Value[[]string](ref, "tokenizer.ggml.tokens")
	if err != nil {
		t.Fatal(err)
	}
	repo := bpeRepos["qwen2"]
	tokDir := t.TempDir()
	writeJSON(t, filepath.Join(tokDir, "tokenizer.json"), ggmlvocab.TokenizerJSON(t, ref, ggmlvocab.Setup{
		Normalizer: repo.normalizer, PreTokenizer: repo.preTokenizer, PostProcessor: repo.postProcessor, IgnoreMerges: repo.ignoreMerges}))
	tc := maps.Clone(repo.tokenizerConfig)
	tc["add_bos_token"] = false
	writeJSON(t, filepath.Join(tokDir, "tokenizer_config.json"), tc)
	dir := fixtures.Qwen2(t, map[string]any{"vocab_size": len(tokens), "num_hidden_layers": 2},
		synth.Options{DType: "f32", Seed: 9, TokenizerDir: tokDir})
	return openCheckpointDir(t, dir)
}

// TestConvertQwen2 converts a Qwen2 checkpoint: general.architecture
// qwen2 with the qwen2.* hyperparameters, the q/k/v biases as
// blk.N.attn_{q,k,v}.bias (F32) and the q/k rows unpermuted, the Qwen
// vocabulary as gpt2 with pre qwen2 and no BOS added; Qwen2's biases are
// not refused, a llama config's other biases still are.
func TestConvertQwen2(t *testing.T) {
	ck := qwen2Checkpoint(t)
	c := convertWith(t, ck, gguf.TypeF16, gguf.ConvertOptions{Type: gguf.TypeF16})
	for key, want := range map[string]any{
		"general.architecture": "qwen2", "qwen2.block_count": uint32(2), "qwen2.embedding_length": uint32(64),
		"qwen2.attention.head_count": uint32(4), "qwen2.attention.head_count_kv": uint32(2), "qwen2.rope.freq_base": float32(1e6),
		"qwen2.attention.layer_norm_rms_epsilon": float32(1e-6), "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "qwen2",
		"tokenizer.ggml.add_bos_token": false,
	} {
		kv, ok := c.file.Get(key)
		if !ok || kv != want {
			t.Errorf("%s = %v (%v), want %v", key, kv, ok, want)
		}
	}
	if _, ok := c.file.Get("llama.block_count"); ok {
		t.Error("llama.* keys in a qwen2 file")
	}
	for _, n := range []string{"attn_q", "attn_k", "attn_v"} {
		name := "blk.1." + n + ".bias"
		ti, ok := c.file.Tensor(name)
		if !ok || ti.Type != gguf.TypeF32 {
			t.Fatalf("tensor %s: %+v (%v), want F32", name, ti, ok)
		}
		got, err := c.file.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		src, err := ck.set.Tensor("model.layers.1.self_attn." + strings.TrimPrefix(n, "attn_") + "_proj.bias")
		if err != nil {
			t.Fatal(err)
		}
		want, _ := src.Float32()
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s[%d] = %g, the checkpoint's %g", name, i, got[i], want[i])
			}
		}
	}
	// q_proj's rows as they are (F16-rounded), where a llama file permutes them.
	got, err := c.file.Float32("blk.0.attn_q.weight")
	if err != nil {
		t.Fatal(err)
	}
	src, _ := ck.set.Tensor("model.layers.0.self_attn.q_proj.weight")
	want, _ := src.Float32()
	for _, i := range []int{0, 64 * 9, 64*63 + 5} {
		if d := got[i] - want[i]; d > 1e-3 || d < -1e-3 {
			t.Errorf("attn_q.weight[%d] = %g, q_proj.weight's %g", i, got[i], want[i])
		}
	}
	// The runtime on the file's weights runs the checkpoint, through the
	// test's reading of the file and through File.HFConfig and Weights.
	prompts := qwen2Prompts(t, ck.tok)
	ours := nextLogProbs(t, loadRuntime(t, newGGUFWeights(c, ck.cfg), ck.cfg), prompts)
	hc, err := c.file.HFConfig()
	if err != nil {
		t.Fatal(err)
	}
	if hc.ModelType != "qwen2" || hc.NumKeyValueHeads != 2 || hc.RopeTheta != 1e6 || !hc.TieWordEmbeddings || hc.SlidingWindow != 0 {
		t.Errorf("HFConfig: %s, kv heads %d, rope_theta %g, tied %v, window %d", hc.ModelType, hc.NumKeyValueHeads, hc.RopeTheta, hc.TieWordEmbeddings, hc.SlidingWindow)
	}
	if d := compareAll(nextLogProbs(t, loadRuntime(t, c.file.Weights(hc), hc), prompts), ours); !(d.maxAbs == 0) {
		t.Errorf("the runtime on File.Weights vs on the test's reading of the file: %v", d)
	}
	m, err := model.FromWeights(ck.set, ck.cfg, nil, cpu.New(0))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	d := compareAll(ours, nextLogProbs(t, m, prompts))
	t.Logf("F16 file vs the checkpoint: %v", d)
	if !(d.nmse < 1e-4) {
		t.Errorf("the runtime on the F16 file's weights vs on the checkpoint: %v", d)
	}
}

// qwen2Prompts are three prompts in Qwen's tokenizer (no BOS).
func qwen2Prompts(t *testing.T, tok *tokenizer.Tokenizer) [][]int {
	t.Helper()
	var out [][]int
	for _, text := range []string{"Once upon a time", "The capital of France is", "func main() {\n\tfmt.Println(42)"} {
		ids, err := tok.Encode(text)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) == 0 || ids[0] == tok.BOS() && tok.BOS() >= 0 {
			t.Fatalf("%q: ids %v: want no BOS", text, ids)
		}
		out = append(out, ids)
	}
	return out
}

func compareAll(got, want [][]float64) diff {
	var ds []diff
	for j := range want {
		ds = append(ds, compare(got[j], want[j]))
	}
	return worst(ds)
}

// TestLlamaCppQwen2 loads Qwen2 GGUF files in llama.cpp (node-llama-cpp)
// and compares its next-token log-probabilities with our runtime on the
// same weights: the checkpoint itself for F32 (llama.cpp computes in
// fp32), the file's dequantized weights for F16 and Q8_0. llama.cpp
// requires the q/k/v biases of its qwen2 graph and rotates by halves;
// a missing bias, a permuted row or a wrong key fails here. The same
// comparison against our runtime with the biases zeroed is far off.
func TestLlamaCppQwen2(t *testing.T) {
	node := llamaCppAvailable(t)
	ck := qwen2Checkpoint(t)
	llamaCppMatches(t, node, ck, qwen2Prompts(t, ck.tok), zeroBiases{ck.set}, "biases")
}

// llamaCppMatches loads ck's F32, F16 and Q8_0 GGUF files in llama.cpp
// (node-llama-cpp, node) and compares its next-token log-probabilities on
// prompts with our runtime on the same weights: the checkpoint itself for
// F32 (llama.cpp computes in fp32), the file's dequantized weights for F16
// and Q8_0. without is ck's weights with what it tests (the biases, the
// q/k norms) taken out: our runtime on them must be far from llama.cpp's
// F32 logits, or the comparison cannot tell that part
// (TestLlamaCppQwen2, TestLlamaCppQwen3); nil where the caller checks
// that otherwise (TestLlamaCppPhi3Longrope).
func llamaCppMatches(t *testing.T, node string, ck *checkpoint, prompts [][]int, without model.Weights, what string) {
	t.Helper()
	types := []gguf.TensorType{gguf.TypeF32, gguf.TypeF16, gguf.TypeQ8_0}
	var convs []*converted
	req := llamaRequest{}
	for _, typ := range types {
		c := convertWith(t, ck, typ, gguf.ConvertOptions{Type: typ})
		convs = append(convs, c)
		req.Models = append(req.Models, llamaModel{Path: c.path, Context: 64, Logits: prompts})
	}
	resp := runLlamaCpp(t, node, req)
	t.Logf("llama.cpp %s", resp.LlamaCpp)
	src, err := model.FromWeights(fusedView(t, ck.set, ck.cfg), ck.cfg, nil, cpu.New(0))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for i, c := range convs {
		t.Run(c.typ.String(), func(t *testing.T) {
			m := src
			if c.typ != gguf.TypeF32 {
				m = loadRuntime(t, fusedView(t, newGGUFWeights(c, ck.cfg), ck.cfg), ck.cfg)
			}
			d := llamaDiff(t, resp.Models[i].LogProbs, nextLogProbs(t, m, prompts), ck.cfg.VocabSize)
			t.Logf("%s: llama.cpp vs our runtime: %v", c.typ, d)
			llamaTolerances[c.typ].check(t, "llama.cpp vs our runtime on "+c.typ.String(), d)
		})
	}
	if without == nil {
		return
	}
	t.Run(what+" matter", func(t *testing.T) {
		m, err := model.FromWeights(without, ck.cfg, nil, cpu.New(0))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		d := llamaDiff(t, resp.Models[0].LogProbs, nextLogProbs(t, m, prompts), ck.cfg.VocabSize)
		if tol := llamaTolerances[gguf.TypeF32]; !(d.nmse > 100*tol.nmse) {
			t.Errorf("llama.cpp's F32 logits vs our runtime without its %s: %v: the comparison cannot tell them", what, d)
		}
	})
}

// zeroBiases serves a checkpoint's tensors with every bias zeroed.
type zeroBiases struct{ w model.Weights }

func (z zeroBiases) Tensor(name string) (safetensors.Tensor, error) {
	t, err := z.w.Tensor(name)
	if err != nil || !strings.HasSuffix(name, ".bias") {
		return t, err
	}
	t.Data = make([]byte, len(t.Data))
	return t, nil
}

// withRopeScaling returns ck with config.json's rope_scaling set to
// scaling (JSON) and max_position_embeddings to maxPos (0: as it is): the
// checkpoint's weights, its config parsed anew.
func withRopeScaling(t *testing.T, ck *checkpoint, scaling string, maxPos int) *checkpoint {
	t.Helper()
	raw, err := os.ReadFile(ck.cfg.File)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["rope_scaling"] = json.RawMessage(scaling)
	if maxPos != 0 {
		doc["max_position_embeddings"] = maxPos
	}
	if raw, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	out := *ck
	if out.cfg, err = hfconfig.Parse(raw, ck.cfg.File); err != nil {
		t.Fatal(err)
	}
	if out.cfg.RopeScaling.IsDefault() {
		t.Fatalf("no scaling in %s", raw)
	}
	return &out
}

// qwen2YarnSmall is a yarn scaling of the test's Qwen2 (head_dim 16,
// rope_theta 1e6) past an original context of 64, so that yarnPrompts'
// positions pass it: correction dimensions 16·ln(64/(2π·β))/(2·ln 1e6)
// below 0 (β 32) and 1.34 (β 1), rounded out to [0, 2]; attention factor
// 0.1·ln 4 + 1.
const qwen2YarnSmall = `{"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}`

// qwen2LongPrompts are prompts in Qwen's tokenizer (no BOS) whose last
// positions (up to 79) lie past qwen2YarnSmall's original context, and a
// short one before it.
func qwen2LongPrompts(t *testing.T, tok *tokenizer.Tokenizer) [][]int {
	t.Helper()
	ids, err := tok.Encode(strings.Repeat("Once upon a time, in a land far away, there lived a small fox who liked to count the stars. ", 6))
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) < 80 {
		t.Fatalf("%d ids, want 80", len(ids))
	}
	return [][]int{ids[:20], ids[:66], ids[:72], ids[:80]}
}

// TestConvertQwen2Yarn: a qwen2 config with Qwen2.5's long-context yarn
// ({"type": "yarn", "factor": 4.0, "original_max_position_embeddings":
// 32768}) converts with qwen2.rope.scaling.type "yarn", .factor and
// .original_context_length before qwen2.rope.freq_base, no attn_factor
// (the attention factor is YaRN's default) and no llama.* key; an explicit
// attention_factor adds qwen2.rope.scaling.attn_factor. File.HFConfig
// reads each back as the same scaling, and the file read back runs in our
// runtime as the checkpoint with the scaled config.json does.
func TestConvertQwen2Yarn(t *testing.T) {
	base := qwen2Checkpoint(t)
	for _, tc := range []struct {
		name, scaling string
		maxPos        int
		keys          map[string]any
		tol           tolerance
	}{
		{"qwen2.5", `{"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}`, 32768,
			map[string]any{"qwen2.rope.scaling.type": "yarn", "qwen2.rope.scaling.factor": float32(4), "qwen2.rope.scaling.original_context_length": uint32(32768),
				"qwen2.context_length": uint32(32768)}, tolerance{0, 0, 0}},
		{"original 64", qwen2YarnSmall, 0,
			map[string]any{"qwen2.rope.scaling.type": "yarn", "qwen2.rope.scaling.factor": float32(4), "qwen2.rope.scaling.original_context_length": uint32(64)}, tolerance{0, 0, 0}},
		{"attention_factor", `{"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "attention_factor": 1.5}`, 0,
			map[string]any{"qwen2.rope.scaling.type": "yarn", "qwen2.rope.scaling.factor": float32(4), "qwen2.rope.scaling.original_context_length": uint32(64),
				"qwen2.rope.scaling.attn_factor": float32(1.5 / (0.1*math.Log(4) + 1))}, tolerance{1e-4, 1e-10, 1e-10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ck := withRopeScaling(t, base, tc.scaling, tc.maxPos)
			c := convertWith(t, ck, gguf.TypeF32, gguf.ConvertOptions{Type: gguf.TypeF32})
			keys := c.file.KVs()
			freqBase := slices.IndexFunc(keys, func(kv gguf.KV) bool { return kv.Key == "qwen2.rope.freq_base" })
			for k, want := range tc.keys {
				i := slices.IndexFunc(keys, func(kv gguf.KV) bool { return kv.Key == k })
				if i < 0 || keys[i].Value != want || (strings.Contains(k, ".scaling.") && i > freqBase) {
					t.Errorf("%s: at %d (%v), want %v (%T), scaling keys before qwen2.rope.freq_base at %d", k, i, keys[max(i, 0)], want, want, freqBase)
				}
			}
			for _, kv := range keys {
				if strings.HasPrefix(kv.Key, "llama.") || (strings.Contains(kv.Key, ".rope.scaling.") && tc.keys[kv.Key] == nil) {
					t.Errorf("key %s = %v written", kv.Key, kv.Value)
				}
			}
			cfg, err := c.file.HFConfig()
			if err != nil {
				t.Fatal(err)
			}
			got, want := cfg.RopeScaling, ck.cfg.RopeScaling
			if d := math.Abs(got.AttentionFactor/want.AttentionFactor - 1); d > 1e-7 {
				t.Errorf("read back attention factor %v, want %v within float32's step", got.AttentionFactor, want.AttentionFactor)
			}
			got.AttentionFactor = want.AttentionFactor
			if !reflect.DeepEqual(got, want) || cfg.ModelType != "qwen2" {
				t.Errorf("read back %s %+v, want qwen2 %+v", cfg.ModelType, got, want)
			}
			prompts := qwen2LongPrompts(t, ck.tok)
			d := compareAll(nextLogProbs(t, loadRuntime(t, c.file.Weights(cfg), cfg), prompts), nextLogProbs(t, loadRuntime(t, ck.set, ck.cfg), prompts))
			t.Logf("the file read back vs the checkpoint with its scaled config.json: %v", d)
			tc.tol.check(t, "the file read back vs the checkpoint", d)
		})
	}
}

// TestLlamaCppQwen2Yarn: llama.cpp runs qwen2 files of a yarn scaling
// past an original context of 64 (YaRN's default attention factor, and an
// explicit one) as our runtime runs the checkpoint with the scaled
// config.json, at positions up to 79: llama.cpp's qwen2 architecture
// reads the same keys as its llama one (the loader's rope.scaling.type,
// .factor, .attn_factor and .original_context_length for every
// architecture, no yarn_* key, the context's betas 32 and 1). The
// unscaled model, an original context of 512 (qwen2.context_length), and
// the default attention factor for the explicit one, are far outside the
// tolerance.
func TestLlamaCppQwen2Yarn(t *testing.T) {
	node := llamaCppAvailable(t)
	base := qwen2Checkpoint(t)
	prompts := qwen2LongPrompts(t, base.tok)
	cases := []struct{ name, scaling string }{
		{"yarn", qwen2YarnSmall},
		{"yarn attention_factor", `{"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "attention_factor": 1.5}`},
	}
	var cks []*checkpoint
	req := llamaRequest{}
	for _, tc := range cases {
		ck := withRopeScaling(t, base, tc.scaling, 0)
		c := convertWith(t, ck, gguf.TypeF32, gguf.ConvertOptions{Type: gguf.TypeF32})
		cks = append(cks, ck)
		req.Models = append(req.Models, llamaModel{Path: c.path, Context: 96, Logits: prompts})
	}
	resp := runLlamaCpp(t, node, req)
	t.Logf("llama.cpp %s", resp.LlamaCpp)
	tol := llamaTolerances[gguf.TypeF32]
	unscaled := nextLogProbs(t, loadRuntime(t, base.set, base.cfg), prompts)
	var yarnDefault [][]float64
	for i, ck := range cks {
		t.Run(cases[i].name, func(t *testing.T) {
			ours := nextLogProbs(t, loadRuntime(t, ck.set, ck.cfg), prompts)
			d := llamaDiff(t, resp.Models[i].LogProbs, ours, ck.cfg.VocabSize)
			t.Logf("llama.cpp vs our runtime, scaled: %v", d)
			tol.check(t, "llama.cpp vs our runtime on the scaled model", d)
			if i == 0 {
				yarnDefault = ours
				// The original context read from the file, not taken as
				// qwen2.context_length (512: correction range [0, 3]).
				o := withRopeScaling(t, base, `{"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 512}`, 0)
				u := llamaDiff(t, resp.Models[i].LogProbs, nextLogProbs(t, loadRuntime(t, o.set, o.cfg), prompts), ck.cfg.VocabSize)
				t.Logf("llama.cpp vs our runtime with original_max_position_embeddings 512: %v", u)
				if u.maxAbs <= tol.maxAbs && u.nmse <= tol.nmse {
					t.Errorf("an original context of 512 is within the tolerance too (%v): the check cannot tell it", u)
				}
			} else {
				u := llamaDiff(t, resp.Models[i].LogProbs, yarnDefault, ck.cfg.VocabSize)
				t.Logf("llama.cpp vs our runtime with yarn's default attention factor: %v", u)
				if u.maxAbs <= tol.maxAbs && u.nmse <= tol.nmse {
					t.Errorf("yarn's default attention factor is within the tolerance too (%v): the check cannot tell the factor", u)
				}
			}
			u := llamaDiff(t, resp.Models[i].LogProbs, unscaled, ck.cfg.VocabSize)
			t.Logf("llama.cpp vs our runtime unscaled: %v", u)
			if u.maxAbs <= tol.maxAbs && u.nmse <= tol.nmse {
				t.Errorf("the unscaled model is within the tolerance too (%v): the check cannot tell the scaling", u)
			}
		})
	}
}

// TestQwen2YarnRefused: for a qwen2 config and file, yarn's refusals name
// the qwen2 architecture: betas other than 32 and 1 before a file is
// planned, and File.HFConfig's qwen2.rope.scaling.yarn_* keys of values
// llama.cpp does not run; a qwen2 file's yarn without
// original_context_length takes qwen2.context_length.
func TestQwen2YarnRefused(t *testing.T) {
	base := qwen2Checkpoint(t)
	ck := withRopeScaling(t, base, `{"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "beta_fast": 16}`, 0)
	_, err := gguf.Plan(ck.cfg, ck.tok, gguf.ConvertOptions{Type: gguf.TypeF32})
	if want := "beta_fast 16 and beta_slow 1, but llama.cpp runs a qwen2 file's yarn with 32 and 1"; err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, gguf.ErrUnsupportedModel) {
		t.Errorf("Plan: %v, want ErrUnsupportedModel saying %q", err, want)
	}
	c := convertWith(t, withRopeScaling(t, base, qwen2YarnSmall, 0), gguf.TypeF32, gguf.ConvertOptions{Type: gguf.TypeF32})
	_, err = rewriteGGUF(t, c, map[string]any{"qwen2.rope.scaling.yarn_beta_fast": float32(16)}).HFConfig()
	if want := "qwen2.rope.scaling.yarn_beta_fast 16: a yarn parameter llama.cpp's qwen2 architecture does not read (it runs 32)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("HFConfig: %v, want %q", err, want)
	}
	cfg, err := rewriteGGUF(t, c, map[string]any{"qwen2.rope.scaling.original_context_length": nil}).HFConfig()
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.RopeScaling.OriginalMaxPositionEmbeddings; got != base.cfg.MaxPositionEmbeddings {
		t.Errorf("original context %d without the key, want qwen2.context_length %d", got, base.cfg.MaxPositionEmbeddings)
	}
}

// TestConvertQwen2HeadDim refuses a Qwen2 config whose head_dim is not
// hidden/heads (transformers' Qwen2Attention reads it; llama.cpp's qwen2
// loader, whose attn_q is {n_embd, n_embd}, fails on such a file: seen
// with node-llama-cpp), naming the key; hidden/heads given explicitly
// converts.
func TestConvertQwen2HeadDim(t *testing.T) {
	q2 := qwen2Checkpoint(t)
	for _, tc := range []struct {
		headDim int
		refused bool
	}{{32, true}, {16, false}} {
		dir := fixtures.Qwen2(t, map[string]any{"vocab_size": q2.cfg.VocabSize, "head_dim": tc.headDim}, synth.Options{DType: "f32", Seed: 9, TokenizerDir: q2.dir})
		cfg, err := hfconfig.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		err = gguf.CheckModel(cfg)
		if tc.refused != (err != nil) || err != nil && (!errors.Is(err, gguf.ErrUnsupportedModel) || !strings.Contains(err.Error(), "head_dim 32")) {
			t.Errorf("head_dim %d: %v, refused %v", tc.headDim, err, tc.refused)
		}
	}
}
