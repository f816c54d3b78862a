package fused

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/internal/quantpack"
)

func i32s(b []byte) []int32 {
	v := make([]int32, len(b)/4)
	for i := range v {
		v[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func phi3Config(t *testing.T, hidden, inter, heads, kv int) *hfconfig.Config {
	t.Helper()
	cfg, err := hfconfig.Parse([]byte(fmt.Sprintf(`{"model_type": "phi3", "hidden_size": %d, "intermediate_size": %d, "num_hidden_layers": 1,
		"num_attention_heads": %d, "num_key_value_heads": %d, "vocab_size": 8}`, hidden, inter, heads, kv)), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestOpenGPTQ: a fused qkv_proj and gate_up_proj quantized as one module
// each (GPTQModel's phi3 layout), packed by package gptq's packers from
// random codes, zero points and scales (internal/quantpack), read as
// their parts: each part's codes and zero points (unpacked at the part's
// width) and scales are the fused module's columns of that part, g_idx
// the fused module's; Join gives the fused tensors back byte for byte.
func TestOpenGPTQ(t *testing.T) {
	for _, tc := range []struct {
		name      string
		bits, gs  int
		actOrder  bool
		format    gptq.Format
		heads, kv int
	}{
		{"4-bit g16 act order", 4, 16, true, gptq.FormatV1, 4, 2},
		{"4-bit one group v2", 4, -1, false, gptq.FormatV2, 4, 1},
		{"8-bit g32", 8, 32, false, gptq.FormatV1, 2, 2},
		{"3-bit g32 act order", 3, 32, true, gptq.FormatV1, 2, 1},
		{"2-bit g16", 2, 16, false, gptq.FormatV1, 4, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// head_dim 32 (3-bit packs 32 along N), intermediate 64.
			cfg := phi3Config(t, 32*tc.heads, 64, tc.heads, tc.kv)
			mods := Modules(cfg)
			var shapes []gptq.LinearShape
			for _, m := range mods {
				K := cfg.HiddenSize
				shapes = append(shapes, gptq.LinearShape{Name: "model.layers.0." + m.Name, K: K, N: m.Rows()})
			}
			qms := quantpack.Draw(7, shapes, tc.bits, tc.gs, tc.format == gptq.FormatV1, tc.actOrder)
			var tensors []safetensors.Tensor
			for _, qm := range qms {
				tensors = append(tensors, quantpack.GPTQ(qm, tc.format)...)
			}
			set := openSet(t, tensors...)
			s, err := Open(set, 1, mods)
			if err != nil {
				t.Fatal(err)
			}
			for mi, m := range mods {
				qm := qms[mi]
				col := 0
				for _, part := range m.Parts {
					name := "model.layers.0." + part.Module
					read := func(suffix string) safetensors.Tensor {
						tn, err := s.Tensor(name + "." + suffix)
						if err != nil {
							t.Fatal(err)
						}
						return tn
					}
					qw, qz, sc, gi := read("qweight"), read("qzeros"), read("scales"), read("g_idx")
					K, N, G := qm.K, part.N, qm.G()
					if want := []int{K * tc.bits / 32, N}; !slices.Equal(qw.Shape, want) {
						t.Fatalf("%s.qweight: shape %v, want %v", name, qw.Shape, want)
					}
					q, err := gptq.UnpackQWeight(i32s(qw.Data), K, N, tc.bits)
					if err != nil {
						t.Fatal(err)
					}
					z, err := gptq.UnpackQZeros(i32s(qz.Data), G, N, tc.bits, tc.format)
					if err != nil {
						t.Fatal(err)
					}
					for k := range K {
						for n := range N {
							if got, want := q[k*N+n], qm.Q[k*qm.N+col+n]; got != want {
								t.Fatalf("%s: code [%d %d] = %d, want %d", name, k, n, got, want)
							}
						}
					}
					for g := range G {
						for n := range N {
							if got, want := z[g*N+n], qm.Z[g*qm.N+col+n]; got != want {
								t.Fatalf("%s: zero [%d %d] = %d, want %d", name, g, n, got, want)
							}
							if got, want := binary.LittleEndian.Uint16(sc.Data[2*(g*N+n):]), qm.Scales[g*qm.N+col+n]; got != want {
								t.Fatalf("%s: scale [%d %d] = %#x, want %#x", name, g, n, got, want)
							}
						}
					}
					fused, _ := set.Tensor(qm.Name + ".g_idx")
					if !bytes.Equal(gi.Data, fused.Data) {
						t.Errorf("%s.g_idx is not the fused module's", name)
					}
					col += N
				}
			}
			// Join plans and rebuilds the fused checkpoint from the parts.
			j, err := Join(s.Infos(), 1, mods)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ti := range s.Infos() {
				tn, err := s.Tensor(ti.Name)
				if err != nil {
					t.Fatal(err)
				}
				out, err := j.Add(ti.Name, tn.Data)
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range out {
					got = append(got, o.Name)
					want, err := set.Tensor(o.Name)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(o.Data, want.Data) {
						t.Errorf("joined %s differs from the fused tensor", o.Name)
					}
				}
			}
			if want := set.Names(); !slices.Equal(slices.Sorted(slices.Values(got)), want) {
				t.Errorf("joined %v, want %v", got, want)
			}
		})
	}
}

// TestGPTQRefused: fused GPTQ tensors whose columns do not split at the
// parts' boundaries, parts that do not join, a part whose g_idx differs,
// and a fused module written with only some parts, are refused naming
// the tensor (and, read, the file).
func TestGPTQRefused(t *testing.T) {
	// head_dim 8: 3-bit zero points pack 32 along N, q's 16 columns end
	// inside a word.
	cfg := phi3Config(t, 16, 32, 2, 1)
	mods := Modules(cfg)
	qm := quantpack.Draw(1, []gptq.LinearShape{{Name: "model.layers.0.self_attn.qkv_proj", K: 32, N: 32}}, 3, 32, true, false)[0]
	_, err := Open(openSet(t, quantpack.GPTQ(qm, gptq.FormatV1)...), 1, mods)
	if want := `tensor "model.layers.0.self_attn.qkv_proj.qzeros": shape [1 3]: 3-bit zero points are packed along N, 32 columns to 3 int32, and self_attn.q_proj's 16 columns do not fill whole words`; err == nil ||
		!strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "model.safetensors") {
		t.Errorf("3-bit at head_dim 8: err = %v, want %q and the file", err, want)
	}
	qm.Name = "model.layers.0.mlp.gate_up_proj" // 32 columns, not 2·32
	_, err = Open(openSet(t, quantpack.GPTQ(qm, gptq.FormatV1)...), 1, mods)
	if want := `tensor "model.layers.0.mlp.gate_up_proj.qweight": shape [3 32], want [… 64]`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("gate_up of 32 columns: err = %v, want %q", err, want)
	}

	i32 := func(name string, shape ...int) safetensors.TensorInfo {
		return safetensors.TensorInfo{Name: name, DType: safetensors.I32, Shape: shape}
	}
	p := "model.layers.0.self_attn."
	parts := []safetensors.TensorInfo{i32(p+"q_proj.g_idx", 16), i32(p+"k_proj.g_idx", 16), i32(p+"v_proj.g_idx", 16)}
	if _, err := Join(parts[:2], 1, mods); err == nil || !strings.Contains(err.Error(), "model.layers.0.self_attn.qkv_proj has only self_attn.q_proj, self_attn.k_proj of its parts") {
		t.Errorf("two of three parts: err = %v", err)
	}
	bad := slices.Clone(parts)
	bad[2] = i32(p+"v_proj.g_idx", 8)
	if _, err := Join(bad, 1, mods); err == nil || !strings.Contains(err.Error(), `tensor "model.layers.0.self_attn.v_proj.g_idx" I32 [8] does not join`) {
		t.Errorf("g_idx of another K: err = %v", err)
	}
	j, err := Join(parts, 1, mods)
	if err != nil {
		t.Fatal(err)
	}
	a, b := make([]byte, 64), make([]byte, 64)
	b[4] = 1
	j.Add(p+"q_proj.g_idx", a)
	j.Add(p+"k_proj.g_idx", a)
	if _, err := j.Add(p+"v_proj.g_idx", b); err == nil || !strings.Contains(err.Error(), `tensor "model.layers.0.self_attn.v_proj.g_idx" differs from "model.layers.0.self_attn.q_proj.g_idx": the parts of model.layers.0.self_attn.qkv_proj.g_idx must share it`) {
		t.Errorf("g_idx differing: err = %v", err)
	}
}
