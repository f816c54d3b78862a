package fused

import (
	"encoding/binary"
	"math"
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
// experts (hidden 3, moe_intermediate 2, two experts: no square block, so
// a missed transpose or a wrong half shows) as per-expert Linears, against
// values worked out by hand: gate_up_proj's block of expert e holds
// 100e + 10h + j at [h, j], so its gate_proj [2, 3] is columns 0 and 1
// transposed, up_proj columns 2 and 3; down_proj's block holds
// 100e + 10i + h + 50 at [i, h], its down_proj [3, 2] the block
// transposed. The fused names are hidden, the router passes through; a
// fused tensor of another shape, or a per-expert weight beside the fused
// one, is refused.
func TestOpenExperts(t *testing.T) {
	cfg, err := hfconfig.Parse([]byte(`{"model_type": "qwen3_vl_moe", "text_config": {"hidden_size": 3, "intermediate_size": 4,
		"num_hidden_layers": 1, "num_attention_heads": 1, "num_key_value_heads": 1, "head_dim": 4, "vocab_size": 4, "rope_theta": 5e6,
		"max_position_embeddings": 64, "num_experts": 2, "num_experts_per_tok": 1, "moe_intermediate_size": 2}}`), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.FusedExperts() || !cfg.MoE.NormTopK || cfg.ModelType != "qwen3_moe" {
		t.Fatalf("fused %v, norm_topk_prob %v, type %s", cfg.FusedExperts(), cfg.MoE.NormTopK, cfg.ModelType)
	}
	p := "model.layers.0.mlp.experts."
	var gu, down []float32
	for e := range 2 {
		for h := range 3 {
			for j := range 4 {
				gu = append(gu, float32(100*e+10*h+j))
			}
		}
		for i := range 2 {
			for h := range 3 {
				down = append(down, float32(100*e+10*i+h+50))
			}
		}
	}
	fusedTensors := func(downShape []int) []safetensors.Tensor {
		return []safetensors.Tensor{
			{TensorInfo: safetensors.TensorInfo{Name: p + "gate_up_proj", DType: safetensors.F32, Shape: []int{2, 3, 4}}, Data: f32s(gu...)},
			{TensorInfo: safetensors.TensorInfo{Name: p + "down_proj", DType: safetensors.F32, Shape: downShape}, Data: f32s(down...)},
			{TensorInfo: safetensors.TensorInfo{Name: "model.layers.0.mlp.gate.weight", DType: safetensors.F32, Shape: []int{2, 3}}, Data: f32s(0, 1, 2, 3, 4, 5)},
		}
	}
	s, err := OpenExperts(openSet(t, fusedTensors([]int{2, 2, 3})...), cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		shape []int
		data  []byte
	}{
		p + "0.gate_proj.weight":         {[]int{2, 3}, f32s(0, 10, 20, 1, 11, 21)},
		p + "0.up_proj.weight":           {[]int{2, 3}, f32s(2, 12, 22, 3, 13, 23)},
		p + "0.down_proj.weight":         {[]int{3, 2}, f32s(50, 60, 51, 61, 52, 62)},
		p + "1.gate_proj.weight":         {[]int{2, 3}, f32s(100, 110, 120, 101, 111, 121)},
		p + "1.up_proj.weight":           {[]int{2, 3}, f32s(102, 112, 122, 103, 113, 123)},
		p + "1.down_proj.weight":         {[]int{3, 2}, f32s(150, 160, 151, 161, 152, 162)},
		"model.layers.0.mlp.gate.weight": {[]int{2, 3}, f32s(0, 1, 2, 3, 4, 5)},
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
			got, _ := tn.Float32()
			t.Errorf("%s: shape %v values %v, want %v %v", name, tn.Shape, got, w.shape, w.data)
		}
	}
	if _, err := s.Tensor(p + "down_proj"); err == nil {
		t.Error("the fused down_proj is still read")
	}
	if _, err := OpenExperts(openSet(t, fusedTensors([]int{2, 3, 2})...), cfg); err == nil || !strings.Contains(err.Error(), "down_proj") || !strings.Contains(err.Error(), "[2 2 3]") {
		t.Errorf("down_proj [2 3 2]: %v", err)
	}
	dup := append(fusedTensors([]int{2, 2, 3}), safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: p + "1.up_proj.weight", DType: safetensors.F32, Shape: []int{2, 3}}, Data: f32s(0, 0, 0, 0, 0, 0)})
	if _, err := OpenExperts(openSet(t, dup...), cfg); err == nil || !strings.Contains(err.Error(), "beside") {
		t.Errorf("a per-expert weight beside the fused one: %v", err)
	}
}

// BenchmarkTranspose reads one expert's gate_proj out of Qwen3-VL-30B-A3B's
// gate_up_proj block (hidden 2048, 2·768 columns, bf16).
func BenchmarkTranspose(b *testing.B) {
	const rows, cols, n = 2048, 1536, 768
	block := make([]byte, rows*cols*2)
	out := make([]byte, n*rows*2)
	b.SetBytes(int64(len(out)))
	for b.Loop() {
		transpose(out, block, 2, rows, cols, 0, n)
	}
}
