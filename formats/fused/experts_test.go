package fused

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
)

// f32s encodes values as F32 bytes.
func f32s(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// TestOpenExperts reads a one-layer qwen3_vl_moe checkpoint's fused
// experts (hidden 2, moe_intermediate 1, two experts) as per-expert
// Linears, against values worked out by hand: expert e's gate_proj is
// column 0 of its gate_up_proj block [hidden, 2], up_proj column 1 (each
// a [1, 2] weight), down_proj its down_proj block [1, 2] transposed to
// [2, 1]; the fused names are hidden, the other tensors pass through; a
// fused tensor of another shape, or a per-expert weight beside the fused
// one, is refused.
func TestOpenExperts(t *testing.T) {
	cfg, err := hfconfig.Parse([]byte(`{"model_type": "qwen3_vl_moe", "text_config": {"hidden_size": 2, "intermediate_size": 4,
		"num_hidden_layers": 1, "num_attention_heads": 1, "num_key_value_heads": 1, "head_dim": 2, "vocab_size": 4, "rope_theta": 5e6,
		"max_position_embeddings": 64, "num_experts": 2, "num_experts_per_tok": 1, "moe_intermediate_size": 1}}`), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.FusedExperts() || !cfg.MoE.NormTopK || cfg.ModelType != "qwen3_moe" {
		t.Fatalf("fused %v, norm_topk_prob %v, type %s", cfg.FusedExperts(), cfg.MoE.NormTopK, cfg.ModelType)
	}
	p := "model.layers.0.mlp.experts."
	write := func(extra ...safetensors.Tensor) *safetensors.Set {
		dir := t.TempDir()
		ts := append([]safetensors.Tensor{
			{TensorInfo: safetensors.TensorInfo{Name: p + "gate_up_proj", DType: safetensors.F32, Shape: []int{2, 2, 2}}, Data: f32s(1, 2, 3, 4, 7, 8, 9, 10)},
			{TensorInfo: safetensors.TensorInfo{Name: p + "down_proj", DType: safetensors.F32, Shape: []int{2, 1, 2}}, Data: f32s(5, 6, 11, 12)},
			{TensorInfo: safetensors.TensorInfo{Name: "model.layers.0.mlp.gate.weight", DType: safetensors.F32, Shape: []int{2, 2}}, Data: f32s(0, 1, 2, 3)},
		}, extra...)
		if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
			t.Fatal(err)
		}
		set, err := safetensors.OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { set.Close() })
		return set
	}
	s, err := OpenExperts(write(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		shape []int
		data  []byte
	}{
		p + "0.gate_proj.weight":         {[]int{1, 2}, f32s(1, 3)},
		p + "0.up_proj.weight":           {[]int{1, 2}, f32s(2, 4)},
		p + "0.down_proj.weight":         {[]int{2, 1}, f32s(5, 6)},
		p + "1.gate_proj.weight":         {[]int{1, 2}, f32s(7, 9)},
		p + "1.up_proj.weight":           {[]int{1, 2}, f32s(8, 10)},
		p + "1.down_proj.weight":         {[]int{2, 1}, f32s(11, 12)},
		"model.layers.0.mlp.gate.weight": {[]int{2, 2}, f32s(0, 1, 2, 3)},
	}
	if got := s.Names(); len(got) != len(want) || slices.Contains(got, p+"gate_up_proj") {
		t.Errorf("names %v", got)
	}
	for name, w := range want {
		tn, err := s.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(tn.Shape, w.shape) || string(tn.Data) != string(w.data) {
			t.Errorf("%s: shape %v data %v, want %v %v", name, tn.Shape, tn.Data, w.shape, w.data)
		}
	}
	if _, err := s.Tensor(p + "down_proj"); err == nil {
		t.Error("the fused down_proj is still read")
	}

	dir := t.TempDir()
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), []safetensors.Tensor{
		{TensorInfo: safetensors.TensorInfo{Name: p + "gate_up_proj", DType: safetensors.F32, Shape: []int{2, 2, 2}}, Data: f32s(1, 2, 3, 4, 7, 8, 9, 10)},
		{TensorInfo: safetensors.TensorInfo{Name: p + "down_proj", DType: safetensors.F32, Shape: []int{2, 2, 1}}, Data: f32s(5, 6, 11, 12)},
	}, nil); err != nil {
		t.Fatal(err)
	}
	shaped, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer shaped.Close()
	if _, err := OpenExperts(shaped, cfg); err == nil || !strings.Contains(err.Error(), "down_proj") || !strings.Contains(err.Error(), "[2 1 2]") {
		t.Errorf("down_proj [2 2 1]: %v", err)
	}
	dup := write(safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: p + "1.up_proj.weight", DType: safetensors.F32, Shape: []int{1, 2}}, Data: f32s(0, 0)})
	if _, err := OpenExperts(dup, cfg); err == nil || !strings.Contains(err.Error(), "beside") {
		t.Errorf("a per-expert weight beside the fused one: %v", err)
	}
}
