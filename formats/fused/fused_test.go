package fused

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
)

// f32 is a tensor of the given shape holding 0, 1, 2, ... as F32.
func f32(name string, shape ...int) safetensors.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	data := make([]byte, 4*n)
	for i := range n {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(float32(i)))
	}
	return safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: name, DType: safetensors.F32, Shape: shape}, Data: data}
}

func openSet(t *testing.T, tensors ...safetensors.Tensor) *safetensors.Set {
	t.Helper()
	dir := t.TempDir()
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), tensors, nil); err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	return set
}

// TestOpen: a fused qkv_proj [q 4; k 2; v 2 rows, K 3] and gate_up_proj
// [gate 5; up 5] read as their parts, each part its rows of the fused
// tensor, the fused names hidden, the other tensors as they are.
func TestOpen(t *testing.T) {
	cfg, err := hfconfig.Parse([]byte(`{"model_type": "phi3", "hidden_size": 4, "intermediate_size": 5, "num_hidden_layers": 1,
		"num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 8}`), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	mods := Modules(cfg)
	if len(mods) != 2 || mods[0].Rows() != 8 || mods[1].Rows() != 10 {
		t.Fatalf("Modules = %+v", mods)
	}
	set := openSet(t, f32("model.layers.0.self_attn.qkv_proj.weight", 8, 4), f32("model.layers.0.mlp.gate_up_proj.weight", 10, 4),
		f32("model.norm.weight", 4))
	s, err := Open(set, 1, mods)
	if err != nil {
		t.Fatal(err)
	}
	wantNames := []string{"model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.0.self_attn.k_proj.weight",
		"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.v_proj.weight", "model.norm.weight"}
	if got := s.Names(); !slices.Equal(got, wantNames) {
		t.Errorf("Names = %v, want %v", got, wantNames)
	}
	for _, tt := range []struct {
		name  string
		rows  int
		first float32 // the part's first value: its first row's index·K in the fused tensor
	}{
		{"model.layers.0.self_attn.q_proj.weight", 4, 0},
		{"model.layers.0.self_attn.k_proj.weight", 2, 16},
		{"model.layers.0.self_attn.v_proj.weight", 2, 24},
		{"model.layers.0.mlp.gate_proj.weight", 5, 0},
		{"model.layers.0.mlp.up_proj.weight", 5, 20},
	} {
		tn, err := s.Tensor(tt.name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := tn.Float32()
		if err != nil {
			t.Fatal(err)
		}
		if tn.Name != tt.name || !slices.Equal(tn.Shape, []int{tt.rows, 4}) || len(v) != tt.rows*4 || v[0] != tt.first || v[len(v)-1] != tt.first+float32(tt.rows*4-1) {
			t.Errorf("%s: %s %v, values %v", tt.name, tn.Name, tn.Shape, v)
		}
	}
	for _, ti := range s.Infos() {
		tn, _ := s.Tensor(ti.Name)
		if !slices.Equal(ti.Shape, tn.Shape) {
			t.Errorf("%s: info shape %v, tensor %v", ti.Name, ti.Shape, tn.Shape)
		}
	}
	if _, err := s.Tensor("model.layers.0.self_attn.qkv_proj.weight"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the fused tensor: err = %v, want fs.ErrNotExist", err)
	}

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			tensors []safetensors.Tensor
			want    string
		}{
			{"rows", []safetensors.Tensor{f32("model.layers.0.self_attn.qkv_proj.weight", 6, 4)},
				`tensor "model.layers.0.self_attn.qkv_proj.weight": shape [6 4], want [8 K] (self_attn.q_proj's 4 rows, then self_attn.k_proj's 2 rows, then self_attn.v_proj's 2 rows)`},
			{"part beside", []safetensors.Tensor{f32("model.layers.0.mlp.gate_up_proj.weight", 10, 4), f32("model.layers.0.mlp.gate_proj.weight", 5, 4)},
				`tensor "model.layers.0.mlp.gate_proj.weight" beside "model.layers.0.mlp.gate_up_proj.weight"`},
		} {
			_, err := Open(openSet(t, tc.tensors...), 1, mods)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "model.safetensors") {
				t.Errorf("%s: err = %v, want %q and the file", tc.name, err, tc.want)
			}
		}
	})
	t.Run("not phi3", func(t *testing.T) {
		c := *cfg
		c.ModelType = "llama"
		if m := Modules(&c); m != nil {
			t.Errorf("Modules(llama) = %v, want none", m)
		}
	})
}
