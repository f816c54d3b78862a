package gguf_test

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
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

// rewriteGGUF copies c's file with kvs set (nil deletes) and extra F32
// tensors appended (their values, or zeros where nil).
func rewriteGGUF(t *testing.T, c *converted, set map[string]any, extra ...appended) *gguf.File {
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
	for _, k := range slices.Sorted(maps.Keys(set)) {
		kvs = append(kvs, gguf.KV{Key: k, Value: set[k]})
	}
	infos := c.file.Tensors()
	for _, e := range extra {
		infos = append(infos, e.info)
	}
	path := filepath.Join(t.TempDir(), "m.gguf")
	w, err := gguf.Create(path, kvs, infos)
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
	for _, e := range extra {
		vals := e.values
		if vals == nil {
			vals = make([]float32, e.info.NumElements())
		}
		if err := w.WriteFloat32(e.info.Name, vals); err != nil {
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

// appended is a tensor rewriteGGUF appends.
type appended struct {
	info   gguf.TensorInfo
	values []float32
}

// TestHFConfigRefuses: a llama file asking llama.cpp for more than the
// runtime computes is refused, naming the key or tensor: RoPE scaling of
// another type, a linear or yarn factor below 1, an attention factor
// without yarn or not positive, yarn_* keys llama.cpp does not read for
// llama, rope_freqs beside yarn,
// rope_freqs that are not head_dim/2 positive factors or come with a
// linear factor, partial rotary, experts, biases, a value head size unlike
// the key's, and optional keys of another type (a per-layer head_count_kv)
// rather than silently defaulted.
func TestHFConfigRefuses(t *testing.T) {
	ck := openCheckpoint(t, "models/openchat-tiny")
	c := convert(t, ck, gguf.TypeF16)
	hd := ck.cfg.HeadDim
	ones := make([]float32, hd/2)
	for j := range ones {
		ones[j] = 1
	}
	freqs := func(shape []int, vals []float32) appended {
		return appended{gguf.TensorInfo{Name: "rope_freqs.weight", Shape: shape, Type: gguf.TypeF32}, vals}
	}
	for _, tc := range []struct {
		set   map[string]any
		extra []appended
		want  string
	}{
		{set: map[string]any{"llama.rope.scaling.type": "dynamic", "llama.rope.scaling.factor": float32(4)}, want: "llama.rope.scaling.type"},
		{set: map[string]any{"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": float32(4), "llama.rope.scaling.yarn_beta_fast": float32(16)}, want: "llama.rope.scaling.yarn_beta_fast 16: a yarn parameter llama.cpp's llama architecture does not read (it runs 32)"},
		{set: map[string]any{"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": float32(4), "llama.rope.scaling.yarn_attn_factor": float32(1)}, want: "llama.rope.scaling.yarn_attn_factor 1: a yarn parameter llama.cpp's llama architecture does not read (it runs 1.1386"},
		{set: map[string]any{"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": float32(4), "llama.rope.scaling.yarn_ext_factor": float32(0.5)}, want: "llama.rope.scaling.yarn_ext_factor 0.5"},
		{set: map[string]any{"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": float32(4), "llama.rope.scaling.yarn_beta_slow": uint32(1)}, want: "llama.rope.scaling.yarn_beta_slow"},
		{set: map[string]any{"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": float32(0.5)}, want: "llama.rope.scaling.factor 0.5: a yarn factor below 1"},
		{set: map[string]any{"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": float32(4), "llama.rope.scaling.attn_factor": float32(-1)}, want: "llama.rope.scaling.attn_factor -1: want a positive finite attention factor"},
		{set: map[string]any{"llama.rope.scaling.type": "yarn", "llama.rope.scaling.original_context_length": "x"}, want: "llama.rope.scaling.original_context_length"},
		{set: map[string]any{"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": float32(4)}, extra: []appended{freqs([]int{hd / 2}, ones)},
			want: `tensor "rope_freqs.weight" with llama.rope.scaling.type "yarn": RoPE frequency factors and yarn both`},
		{set: map[string]any{"llama.rope.scaling.type": "longrope"}, want: "llama.rope.scaling.type"},
		{set: map[string]any{"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": float32(0.5)}, want: "llama.rope.scaling.factor 0.5: a linear RoPE scaling factor below 1"},
		{set: map[string]any{"llama.rope.scale_linear": float32(-2)}, want: "llama.rope.scale_linear -2"},
		{set: map[string]any{"llama.rope.scaling.attn_factor": float32(2)}, want: "llama.rope.scaling.attn_factor"},
		{set: map[string]any{"llama.rope.scaling.factor": "2"}, want: "llama.rope.scaling.factor"},
		{set: map[string]any{"llama.rope.dimension_count": uint32(hd / 2)}, want: "llama.rope.dimension_count"},
		{set: map[string]any{"llama.attention.value_length": uint32(hd * 2)}, want: "llama.attention.value_length"},
		{set: map[string]any{"llama.expert_count": uint32(8), "llama.expert_used_count": uint32(2)}, want: "llama.expert_count"},
		{set: map[string]any{"llama.attention.head_count_kv": []uint32{1, 1, 1, 1, 1, 1}}, want: "llama.attention.head_count_kv"},
		{set: map[string]any{"llama.rope.freq_base": float64(10000)}, want: "llama.rope.freq_base"},
		{extra: []appended{freqs([]int{hd / 2}, nil)}, want: `tensor "rope_freqs.weight": element 0 is 0: want positive finite frequency factors`},
		{extra: []appended{freqs([]int{hd}, nil)}, want: fmt.Sprintf(`tensor "rope_freqs.weight": shape [%d], want [%d] (head_dim/2)`, hd, hd/2)},
		{set: map[string]any{"llama.rope.scaling.factor": float32(2)}, extra: []appended{freqs([]int{hd / 2}, ones)},
			want: `tensor "rope_freqs.weight" with llama.rope.scaling.factor 2: RoPE frequency factors and a linear scaling both`},
		{extra: []appended{{gguf.TensorInfo{Name: "blk.0.attn_q.bias", Shape: []int{ck.cfg.HiddenSize}, Type: gguf.TypeF32}, nil}}, want: `"blk.0.attn_q.bias"`},
	} {
		_, err := rewriteGGUF(t, c, tc.set, tc.extra...).HFConfig()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "m.gguf") {
			t.Errorf("%v %v: %v, want an error naming the file and %s", tc.set, tc.extra, err, tc.want)
		}
	}
	// The file type picks torch_dtype (--dtype auto on cuda).
	for ft, want := range map[uint32]string{0: "float32", 1: "float16", 15: "float16", 32: "bfloat16"} {
		cfg, err := rewriteGGUF(t, c, map[string]any{"general.file_type": ft}).HFConfig()
		if err != nil || cfg.DType != want {
			t.Errorf("general.file_type %d: %v (%v), want %s", ft, cfg, err, want)
		}
	}
	// No scaling spelled out, and a head_count_kv left to its default, load.
	f := rewriteGGUF(t, c, map[string]any{"llama.rope.scaling.type": "none", "llama.rope.scaling.factor": float32(1), "llama.attention.head_count_kv": nil})
	cfg, err := f.HFConfig()
	if err != nil || cfg.NumKeyValueHeads != cfg.NumAttentionHeads || !cfg.RopeScaling.IsDefault() {
		t.Errorf("no scaling, no head_count_kv: %v, %v", cfg, err)
	}
}

// TestHFConfigRopeScaling: RoPE scaling in a llama file reads as
// llama.cpp's loader applies it: a linear factor (llama.rope.scaling.factor,
// or rope.scale_linear, the type "linear" written or left to llama.cpp's
// default), none for type "none" whatever the factor, and rope_freqs as
// llama3 frequency factors, with type "none" too (llama.cpp divides by them
// whatever the type).
func TestHFConfigRopeScaling(t *testing.T) {
	ck := openCheckpoint(t, "models/openchat-tiny")
	c := convert(t, ck, gguf.TypeF16)
	hd := ck.cfg.HeadDim
	ff := make([]float32, hd/2)
	for j := range ff {
		ff[j] = 1 + float32(j)/8
	}
	rf := appended{gguf.TensorInfo{Name: "rope_freqs.weight", Shape: []int{hd / 2}, Type: gguf.TypeF32}, ff}
	for _, tc := range []struct {
		name  string
		set   map[string]any
		extra []appended
		want  hfconfig.RopeScaling
	}{
		{"linear", map[string]any{"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": float32(2)}, nil, hfconfig.RopeScaling{Type: "linear", Factor: 2}},
		{"factor alone", map[string]any{"llama.rope.scaling.factor": float32(1.1)}, nil, hfconfig.RopeScaling{Type: "linear", Factor: float64(float32(1.1))}},
		{"scale_linear", map[string]any{"llama.rope.scale_linear": float32(4)}, nil, hfconfig.RopeScaling{Type: "linear", Factor: 4}},
		{"factor over scale_linear", map[string]any{"llama.rope.scaling.factor": float32(2), "llama.rope.scale_linear": float32(4)}, nil, hfconfig.RopeScaling{Type: "linear", Factor: 2}},
		{"none", map[string]any{"llama.rope.scaling.type": "none", "llama.rope.scaling.factor": float32(8)}, nil, hfconfig.RopeScaling{Type: "default"}},
		{"factor 0", map[string]any{"llama.rope.scaling.factor": float32(0)}, nil, hfconfig.RopeScaling{Type: "default"}},
		{"rope_freqs", nil, []appended{rf}, hfconfig.RopeScaling{Type: "llama3", FreqFactors: ff}},
		{"rope_freqs none", map[string]any{"llama.rope.scaling.type": "none", "llama.rope.scaling.factor": float32(8)}, []appended{rf}, hfconfig.RopeScaling{Type: "llama3", FreqFactors: ff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := rewriteGGUF(t, c, tc.set, tc.extra...)
			cfg, err := f.HFConfig()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.RopeScaling, tc.want) {
				t.Errorf("RopeScaling %+v, want %+v", cfg.RopeScaling, tc.want)
			}
			// The runtime loads it (the weights bind, rope_freqs aside).
			m, err := model.FromWeights(f.Weights(cfg), cfg, nil, cpu.New(1))
			if err != nil {
				t.Fatal(err)
			}
			m.Close()
		})
	}
}

// TestHFConfigYarnKeys: a yarn file whose rope.scaling.yarn_* keys say
// what llama.cpp runs for a llama file anyway (convert_hf_to_gguf.py
// writes them where a config spells its defaults out) reads as the yarn
// llama.cpp computes: original context from context_length where its key
// is absent, attention factor 0.1·ln 4 + 1.
func TestHFConfigYarnKeys(t *testing.T) {
	ck := openCheckpoint(t, "models/stories260K-hf-mistral")
	c := convert(t, ck, gguf.TypeF32)
	a := 0.1*math.Log(4) + 1
	cfg, err := rewriteGGUF(t, c, map[string]any{"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": float32(4),
		"llama.rope.scaling.yarn_beta_fast": float32(32), "llama.rope.scaling.yarn_beta_slow": float32(1),
		"llama.rope.scaling.yarn_ext_factor": float32(1), "llama.rope.scaling.yarn_attn_factor": float32(a)}).HFConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := hfconfig.RopeScaling{Type: hfconfig.RopeYarn, Factor: 4, OriginalMaxPositionEmbeddings: ck.cfg.MaxPositionEmbeddings,
		BetaFast: 32, BetaSlow: 1, Truncate: true, AttentionFactor: a}
	if !reflect.DeepEqual(cfg.RopeScaling, want) {
		t.Errorf("RopeScaling %+v, want %+v", cfg.RopeScaling, want)
	}
}
