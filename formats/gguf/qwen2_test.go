package gguf_test

import (
	"maps"
	"path/filepath"
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
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	cfg, err := hfconfig.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &checkpoint{dir: dir, set: set, cfg: cfg, tok: tok}
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
	prompts := qwen2Prompts(t, ck.tok)
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
	src, err := model.FromWeights(ck.set, ck.cfg, nil, cpu.New(0))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for i, c := range convs {
		t.Run(c.typ.String(), func(t *testing.T) {
			m := src
			if c.typ != gguf.TypeF32 {
				m = loadRuntime(t, newGGUFWeights(c, ck.cfg), ck.cfg)
			}
			d := llamaDiff(t, resp.Models[i].LogProbs, nextLogProbs(t, m, prompts), ck.cfg.VocabSize)
			t.Logf("%s: llama.cpp vs our runtime: %v", c.typ, d)
			llamaTolerances[c.typ].check(t, "llama.cpp vs our runtime on "+c.typ.String(), d)
		})
	}
	t.Run("biases matter", func(t *testing.T) {
		m, err := model.FromWeights(zeroBiases{ck.set}, ck.cfg, nil, cpu.New(0))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		d := llamaDiff(t, resp.Models[0].LogProbs, nextLogProbs(t, m, prompts), ck.cfg.VocabSize)
		if tol := llamaTolerances[gguf.TypeF32]; !(d.nmse > 100*tol.nmse) {
			t.Errorf("llama.cpp's F32 logits vs our runtime without biases: %v: the comparison cannot tell the biases", d)
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
