package gguf_test

import (
	"bytes"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/half"
)

// TestModelFromGGUF: a file Convert wrote reads back as the model it came
// from: HFConfig gives the checkpoint's hyperparameters and special ids,
// and Weights serves every tensor under its Hugging Face name with q/k's
// rows back in Hugging Face's order (an F16 file of the fp16 checkpoint:
// bit for bit); a file of another architecture is refused, naming it.
func TestModelFromGGUF(t *testing.T) {
	ck := openCheckpoint(t, "models/openchat-tiny")
	c := convert(t, ck, gguf.TypeF16)
	cfg, err := c.file.HFConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := ck.cfg
	if cfg.HiddenSize != want.HiddenSize || cfg.IntermediateSize != want.IntermediateSize || cfg.NumHiddenLayers != want.NumHiddenLayers ||
		cfg.NumAttentionHeads != want.NumAttentionHeads || cfg.NumKeyValueHeads != want.NumKeyValueHeads || cfg.HeadDim != want.HeadDim ||
		cfg.VocabSize != want.VocabSize || cfg.MaxPositionEmbeddings != want.MaxPositionEmbeddings || cfg.RopeTheta != want.RopeTheta ||
		float32(cfg.RMSNormEps) != float32(want.RMSNormEps) || cfg.TieWordEmbeddings != want.TieWordEmbeddings {
		t.Errorf("HFConfig %+v\nwant %+v", cfg, want)
	}
	w := c.file.Weights(cfg)
	for _, name := range []string{"model.embed_tokens.weight", "model.layers.3.self_attn.q_proj.weight", "model.layers.3.self_attn.k_proj.weight",
		"model.layers.5.mlp.down_proj.weight", "model.layers.0.input_layernorm.weight", "model.norm.weight"} {
		got, err := w.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		src, err := ck.set.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		f32, err := src.Float32()
		if err != nil {
			t.Fatal(err)
		}
		// The checkpoint is fp16, so its values survive F16 (and the
		// norms' F32) exactly; compare the fp16 bits.
		a, b := make([]byte, 2*len(f32)), make([]byte, 2*len(f32))
		half.F32ToF16Bytes(a, f32)
		gv, _ := got.Float32()
		half.F32ToF16Bytes(b, gv)
		if !bytes.Equal(a, b) || !slices.Equal(got.Shape, src.Shape) {
			t.Errorf("%s: %v from the GGUF differs from the checkpoint's %v", name, got.Shape, src.Shape)
		}
	}
	if _, err := w.Tensor("model.layers.9.mlp.up_proj.weight"); err == nil {
		t.Error("a layer the model does not have was served")
	}
	other := filepath.Join(t.TempDir(), "gpt2.gguf")
	wr, err := gguf.Create(other, []gguf.KV{{Key: "general.architecture", Value: "gpt2"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wr.Close()
	f, err := gguf.Open(other)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.HFConfig(); err == nil || !strings.Contains(err.Error(), `general.architecture "gpt2"`) {
		t.Errorf("a gpt2 file: %v", err)
	}
}

// TestHFConfigRefuses: a llama file asking llama.cpp for more than the
// runtime computes is refused, naming the key or tensor: RoPE scaling
// (the keys, and Llama 3.1's rope_freqs tensor), partial rotary, experts,
// biases, a value head size unlike the key's, and optional keys of another
// type (a per-layer head_count_kv) rather than silently defaulted.
func TestHFConfigRefuses(t *testing.T) {
	ck := openCheckpoint(t, "models/openchat-tiny")
	c := convert(t, ck, gguf.TypeF16)
	// rewrite copies c's file with kvs set (nil deletes) and extra F32
	// tensors appended.
	rewrite := func(set map[string]any, extra ...gguf.TensorInfo) *gguf.File {
		t.Helper()
		set = maps.Clone(set)
		var kvs []gguf.KV
		for _, kv := range c.file.KVs() {
			if v, ok := set[kv.Key]; ok {
				if v != nil {
					kvs = append(kvs, gguf.KV{Key: kv.Key, Value: v})
				}
				delete(set, kv.Key)
				continue
			}
			kvs = append(kvs, kv)
		}
		for k, v := range set {
			kvs = append(kvs, gguf.KV{Key: k, Value: v})
		}
		path := filepath.Join(t.TempDir(), "m.gguf")
		w, err := gguf.Create(path, kvs, append(c.file.Tensors(), extra...))
		if err != nil {
			t.Fatal(err)
		}
		for _, ti := range c.file.Tensors() {
			data, err := c.file.TensorData(ti.Name)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.WriteTensor(ti.Name, data); err != nil {
				t.Fatal(err)
			}
		}
		for _, ti := range extra {
			if err := w.WriteFloat32(ti.Name, make([]float32, ti.NumElements())); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		f, err := gguf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	hd := ck.cfg.HeadDim
	for _, tc := range []struct {
		set   map[string]any
		extra []gguf.TensorInfo
		want  string
	}{
		{set: map[string]any{"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": float32(4)}, want: "llama.rope.scaling.type"},
		{set: map[string]any{"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": float32(2)}, want: "llama.rope.scaling.factor"},
		{set: map[string]any{"llama.rope.scale_linear": float32(2)}, want: "llama.rope.scale_linear"},
		{set: map[string]any{"llama.rope.dimension_count": uint32(hd / 2)}, want: "llama.rope.dimension_count"},
		{set: map[string]any{"llama.attention.value_length": uint32(hd * 2)}, want: "llama.attention.value_length"},
		{set: map[string]any{"llama.expert_count": uint32(8), "llama.expert_used_count": uint32(2)}, want: "llama.expert_count"},
		{set: map[string]any{"llama.attention.head_count_kv": []uint32{1, 1, 1, 1, 1, 1}}, want: "llama.attention.head_count_kv"},
		{set: map[string]any{"llama.rope.freq_base": float64(10000)}, want: "llama.rope.freq_base"},
		{extra: []gguf.TensorInfo{{Name: "rope_freqs.weight", Shape: []int{hd / 2}, Type: gguf.TypeF32}}, want: `"rope_freqs.weight"`},
		{extra: []gguf.TensorInfo{{Name: "blk.0.attn_q.bias", Shape: []int{ck.cfg.HiddenSize}, Type: gguf.TypeF32}}, want: `"blk.0.attn_q.bias"`},
	} {
		_, err := rewrite(tc.set, tc.extra...).HFConfig()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "m.gguf") {
			t.Errorf("%v %v: %v, want an error naming the file and %s", tc.set, tc.extra, err, tc.want)
		}
	}
	// The file type picks torch_dtype (--dtype auto on cuda).
	for ft, want := range map[uint32]string{0: "float32", 1: "float16", 15: "float16", 32: "bfloat16"} {
		cfg, err := rewrite(map[string]any{"general.file_type": ft}).HFConfig()
		if err != nil || cfg.DType != want {
			t.Errorf("general.file_type %d: %v (%v), want %s", ft, cfg, err, want)
		}
	}
	// No scaling spelled out, and a head_count_kv left to its default, load.
	f := rewrite(map[string]any{"llama.rope.scaling.type": "none", "llama.rope.scaling.factor": float32(1), "llama.attention.head_count_kv": nil})
	cfg, err := f.HFConfig()
	if err != nil || cfg.NumKeyValueHeads != cfg.NumAttentionHeads {
		t.Errorf("no scaling, no head_count_kv: %v, %v", cfg, err)
	}
}
