package gguf_test

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// qwen3Checkpoint writes a random-weight Qwen3 checkpoint (per-head q/k
// norms, head_dim 32 where hidden/heads is 16: fixtures.Qwen3, fp32) with
// Qwen's tokenizer, as qwen2Checkpoint does.
func qwen3Checkpoint(t *testing.T, edit map[string]any) *checkpoint {
	t.Helper()
	q2 := qwen2Checkpoint(t) // (for its tokenizer files)
	e := map[string]any{"vocab_size": q2.cfg.VocabSize}
	for k, v := range edit {
		e[k] = v
	}
	dir := fixtures.Qwen3(t, e, synth.Options{DType: "f32", Seed: 9, TokenizerDir: q2.dir})
	return openCheckpointDir(t, dir)
}

// TestConvertQwen3 converts a Qwen3 checkpoint: general.architecture
// qwen3 with the qwen3.* hyperparameters (key_length and value_length the
// head_dim 32, not hidden/heads), q_norm/k_norm as blk.N.attn_q_norm and
// attn_k_norm (F32, the checkpoint's values), the q/k rows unpermuted;
// File.HFConfig reads the file back as the qwen3 config it came from and
// the runtime on File.Weights runs the file; a qwen3 attention_bias with
// biases is refused (llama.cpp's qwen3 graph adds none).
func TestConvertQwen3(t *testing.T) {
	ck := qwen3Checkpoint(t, nil)
	c := convertWith(t, ck, gguf.TypeF16, gguf.ConvertOptions{Type: gguf.TypeF16})
	for key, want := range map[string]any{
		"general.architecture": "qwen3", "qwen3.block_count": uint32(2), "qwen3.embedding_length": uint32(64),
		"qwen3.attention.head_count": uint32(4), "qwen3.attention.head_count_kv": uint32(2), "qwen3.rope.freq_base": float32(1e6),
		"qwen3.attention.key_length": uint32(32), "qwen3.attention.value_length": uint32(32), "qwen3.rope.dimension_count": uint32(32),
		"qwen3.attention.layer_norm_rms_epsilon": float32(1e-6), "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "qwen2",
	} {
		kv, ok := c.file.Get(key)
		if !ok || kv != want {
			t.Errorf("%s = %v (%v), want %v", key, kv, ok, want)
		}
	}
	for _, key := range []string{"llama.block_count", "qwen2.block_count"} {
		if _, ok := c.file.Get(key); ok {
			t.Errorf("%s in a qwen3 file", key)
		}
	}
	for _, n := range []string{"q", "k"} {
		name := "blk.1.attn_" + n + "_norm.weight"
		ti, ok := c.file.Tensor(name)
		if !ok || ti.Type != gguf.TypeF32 || len(ti.Shape) != 1 || ti.Shape[0] != 32 {
			t.Fatalf("tensor %s: %+v (%v), want F32 [32]", name, ti, ok)
		}
		got, err := c.file.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		src, err := ck.set.Tensor("model.layers.1.self_attn." + n + "_norm.weight")
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
	for _, n := range c.res.Tensors {
		if strings.HasSuffix(n.Name, ".bias") {
			t.Errorf("tensor %s in a qwen3 file", n.Name)
		}
	}
	prompts := qwen2Prompts(t, ck.tok)
	ours := nextLogProbs(t, loadRuntime(t, newGGUFWeights(c, ck.cfg), ck.cfg), prompts)
	hc, err := c.file.HFConfig()
	if err != nil {
		t.Fatal(err)
	}
	if hc.ModelType != "qwen3" || hc.HeadDim != 32 || !hc.QKNorm() || hc.NumKeyValueHeads != 2 || hc.RopeTheta != 1e6 || !hc.TieWordEmbeddings {
		t.Errorf("HFConfig: %s, head_dim %d, q/k norm %v, kv heads %d, rope_theta %g, tied %v", hc.ModelType, hc.HeadDim, hc.QKNorm(), hc.NumKeyValueHeads, hc.RopeTheta, hc.TieWordEmbeddings)
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

	t.Run("llama3 scaling", func(t *testing.T) {
		ck := qwen3Checkpoint(t, map[string]any{"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0,
			"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 128}})
		_, err := gguf.FromCheckpoint(filepath.Join(t.TempDir(), "s.gguf"), ck.set, ck.cfg, ck.tok, gguf.ConvertOptions{Type: gguf.TypeF16})
		if err == nil || !strings.Contains(err.Error(), "qwen3 architecture has no rope_freqs tensor") {
			t.Errorf("err = %v, want the llama3 scaling refused", err)
		}
	})
	t.Run("attention_bias", func(t *testing.T) {
		ck := qwen3Checkpoint(t, map[string]any{"attention_bias": true})
		_, err := gguf.FromCheckpoint(filepath.Join(t.TempDir(), "b.gguf"), ck.set, ck.cfg, ck.tok, gguf.ConvertOptions{Type: gguf.TypeF16})
		if err == nil || !strings.Contains(err.Error(), `tensor "model.layers.0.self_attn.q_proj.bias"`) {
			t.Errorf("err = %v, want the q_proj bias refused", err)
		}
	})
}

// TestLlamaCppQwen3 loads Qwen3 GGUF files in llama.cpp (node-llama-cpp)
// and compares its next-token log-probabilities with our runtime on the
// same weights, as TestLlamaCppQwen2 does: llama.cpp's qwen3 graph
// applies attn_q_norm/attn_k_norm per head before RoPE, with the head size
// of key_length (32, where hidden/heads is 16); the same comparison
// against our runtime with the q/k norms' weights all ones is far off.
func TestLlamaCppQwen3(t *testing.T) {
	node := llamaCppAvailable(t)
	ck := qwen3Checkpoint(t, nil)
	llamaCppMatches(t, node, ck, qwen2Prompts(t, ck.tok), unitQKNorms{ck.set}, "q/k norms")
}

// unitQKNorms serves a checkpoint's tensors with q_norm/k_norm all ones
// (the per-head norm without its weights).
type unitQKNorms struct{ w model.Weights }

func (u unitQKNorms) Tensor(name string) (safetensors.Tensor, error) {
	t, err := u.w.Tensor(name)
	if err != nil || !strings.HasSuffix(name, "_norm.weight") || !strings.Contains(name, "self_attn.") {
		return t, err
	}
	if t.DType != safetensors.F32 {
		panic("unitQKNorms: " + name + " is not F32")
	}
	t.Data = make([]byte, len(t.Data))
	for i := 0; i < len(t.Data); i += 4 {
		binary.LittleEndian.PutUint32(t.Data[i:], math.Float32bits(1))
	}
	return t, nil
}
