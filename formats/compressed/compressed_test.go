package compressed

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
)

func word(u uint32) int32 { return int32(u) }

// TestUnpackWord reads one symmetric 4-bit row of 8 inputs packed by hand
// from pack_to_int32's pseudocode: the signed values 1 -1 0 7 -8 2 3 -3
// plus 8 are 9 7 8 15 0 10 11 5, LSB first: the word 0x5BA0F879. With
// scale 1 the weights are the signed values.
func TestUnpackWord(t *testing.T) {
	l := Linear{K: 8, N: 8, Weights: Weights{NumBits: 4, Symmetric: true, Strategy: "channel", GroupSize: -1},
		Packed: make([]int32, 8), Scale: make([]uint16, 8)}
	for n := range 8 {
		l.Packed[n] = word(0x5BA0F879)
		l.Scale[n] = half.F32ToF16(1)
	}
	g, err := l.ToGPTQ()
	if err != nil {
		t.Fatal(err)
	}
	w, err := g.Dequantize()
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{1, -1, 0, 7, -8, 2, 3, -3}
	if got := w[:8]; !slices.Equal(got, want) {
		t.Errorf("row 0 = %v, want %v", got, want)
	}
	codes, err := gptq.UnpackQWeight(g.QWeight, 8, 8, 4)
	if err != nil {
		t.Fatal(err)
	}
	// (codes [K, N]: column 0 is input k's code for output 0.)
	col := make([]uint8, 8)
	for k := range 8 {
		col[k] = codes[k*8]
	}
	if wantU := []uint8{9, 7, 8, 15, 0, 10, 11, 5}; !slices.Equal(col, wantU) {
		t.Errorf("codes %v, want %v", col, wantU)
	}
}

// pack is an independent packer written from pack_to_int32: signed int8
// values v [rows, cols] plus 2^(bits-1), LSB first along the columns
// (packedDim 1), or along the rows (packedDim 0: transposed, packed,
// transposed back).
func pack(v []int8, rows, cols, bits, packedDim int) []int32 {
	pf := 32 / bits
	off := 1 << (bits - 1)
	at := func(r, c int) uint32 { return uint32(int(v[r*cols+c])+off) & (1<<bits - 1) }
	if packedDim == 1 {
		out := make([]int32, rows*cols/pf)
		for r := range rows {
			for c := range cols {
				out[r*cols/pf+c/pf] |= int32(at(r, c) << (bits * (c % pf)))
			}
		}
		return out
	}
	out := make([]int32, rows/pf*cols)
	for r := range rows {
		for c := range cols {
			out[(r/pf)*cols+c] |= int32(at(r, c) << (bits * (r % pf)))
		}
	}
	return out
}

// TestToGPTQ packs random signed codes, zero points, scales and act-order
// g_idx as llm-compressor would and checks that the gptq.Linear
// dequantizes to scale·(q − zp) computed from the signed originals (the
// compressed-tensors dequantize), bit for bit.
func TestToGPTQ(t *testing.T) {
	for _, tc := range []struct {
		name     string
		bits, gs int
		sym      bool
		actorder bool
	}{
		{"w4 g32 asym", 4, 32, false, false},
		{"w4 g32 sym actorder", 4, 32, true, true},
		{"w4 channel asym", 4, -1, false, false},
		{"w8 g64 sym", 8, 64, true, false},
		{"w8 g32 asym actorder", 8, 32, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, uint64(tc.bits*1000+tc.gs)))
			const K, N = 128, 64
			lo, span := -(1 << (tc.bits - 1)), 1<<tc.bits
			G := gptq.Groups(K, tc.gs)
			q := make([]int8, N*K)
			for i := range q {
				q[i] = int8(lo + r.IntN(span))
			}
			zp := make([]int8, N*G)
			if !tc.sym {
				for i := range zp {
					zp[i] = int8(lo + r.IntN(span))
				}
				zp[0], zp[1] = int8(lo), int8(lo+span-1)
			}
			sc := make([]uint16, N*G)
			for i := range sc {
				sc[i] = half.F32ToF16(float32(0.001 + 0.05*r.Float64()))
			}
			gs := tc.gs
			if gs == -1 {
				gs = K
			}
			var gidx []int32
			group := func(k int) int { return k / gs }
			if tc.actorder {
				perm := r.Perm(K)
				gidx = make([]int32, K)
				for i, c := range perm {
					gidx[c] = int32(i / gs)
				}
				group = func(k int) int { return int(gidx[k]) }
			}
			l := Linear{K: K, N: N, Weights: Weights{NumBits: tc.bits, Symmetric: tc.sym, GroupSize: tc.gs},
				Packed: pack(q, N, K, tc.bits, 1), Scale: sc, GIdx: gidx}
			if !tc.sym {
				l.Zero = pack(zp, N, G, tc.bits, 0)
			}
			g, err := l.ToGPTQ()
			if err != nil {
				t.Fatal(err)
			}
			w, err := g.Dequantize()
			if err != nil {
				t.Fatal(err)
			}
			for n := range N {
				for k := range K {
					gi := group(k)
					want := half.F16ToF32(sc[n*G+gi]) * float32(int(q[n*K+k])-int(zp[n*G+gi]))
					if w[n*K+k] != want {
						t.Fatalf("W[%d,%d] = %v, want %v", n, k, w[n*K+k], want)
					}
				}
			}
		})
	}
	// g_idx holding -1 is compressed-tensors' column order.
	l := Linear{K: 8, N: 8, Weights: Weights{NumBits: 4, Symmetric: true, GroupSize: 4}, Packed: make([]int32, 8), Scale: make([]uint16, 16),
		GIdx: []int32{-1, -1, -1, -1, -1, -1, -1, -1}}
	for i := range l.Scale {
		l.Scale[i] = half.F32ToF16(1)
	}
	g, err := l.ToGPTQ()
	if err != nil {
		t.Fatal(err)
	}
	if want := []int32{0, 0, 0, 0, 1, 1, 1, 1}; !slices.Equal(g.GIdx, want) {
		t.Errorf("g_idx %v, want %v", g.GIdx, want)
	}
	l.Packed = l.Packed[:7]
	if _, err := l.ToGPTQ(); !errors.Is(err, gptq.ErrShape) || !strings.Contains(err.Error(), "weight_packed") {
		t.Errorf("short weight_packed: err = %v", err)
	}
}

const w4a16 = `{
  "quant_method": "compressed-tensors",
  "format": "pack-quantized",
  "quantization_status": "compressed",
  "global_compression_ratio": null,
  "kv_cache_scheme": null,
  "sparsity_config": {},
  "config_groups": {
    "group_0": {
      "targets": ["Linear"],
      "input_activations": null,
      "output_activations": null,
      "weights": {"num_bits": 4, "type": "int", "symmetric": true, "strategy": "group", "group_size": 128,
        "actorder": "static", "dynamic": false, "observer": "minmax", "observer_kwargs": {}, "block_structure": null}
    }
  },
  "ignore": ["lm_head", "re:.*layers\\.1\\.mlp\\.down_proj$"]
}`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(w4a16), "config.json: quantization_config")
	if err != nil {
		t.Fatal(err)
	}
	w, group := c.Scheme("model.layers.0.self_attn.q_proj")
	if w == nil || group != "group_0" || *w != (Weights{NumBits: 4, Symmetric: true, Strategy: "group", GroupSize: 128, ActOrder: "weight"}) {
		t.Errorf("Scheme(q_proj) = %+v %q", w, group)
	}
	for name, quantized := range map[string]bool{
		"lm_head":                       false,
		"model.layers.1.mlp.down_proj":  false,
		"model.layers.11.mlp.down_proj": true,
		"model.layers.1.mlp.up_proj":    true,
	} {
		if w, _ := c.Scheme(name); (w != nil) != quantized {
			t.Errorf("Scheme(%q) quantized %v, want %v", name, w != nil, quantized)
		}
	}
	// Targets by regular expression and name: other Linears are not targeted.
	c, err = ParseConfig([]byte(strings.Replace(w4a16, `["Linear"]`, `["re:.*self_attn\\..*", "model.layers.0.mlp.up_proj"]`, 1)), "f")
	if err != nil {
		t.Fatal(err)
	}
	for name, quantized := range map[string]bool{
		"model.layers.3.self_attn.o_proj": true,
		"model.layers.0.mlp.up_proj":      true,
		"model.layers.1.mlp.up_proj":      false,
	} {
		if w, _ := c.Scheme(name); (w != nil) != quantized {
			t.Errorf("Scheme(%q) quantized %v, want %v", name, w != nil, quantized)
		}
	}

	bad := []struct{ name, old, new, want string }{
		{"fp8", `"format": "pack-quantized"`, `"format": "float-quantized"`, `format "float-quantized"`},
		{"marlin-24", `"format": "pack-quantized"`, `"format": "marlin-24"`, `format "marlin-24"`},
		{"naive", `"format": "pack-quantized"`, `"format": "naive-quantized"`, `format "naive-quantized"`},
		{"float type", `"type": "int"`, `"type": "float"`, `config_groups.group_0.weights.type "float"`},
		{"3 bits", `"num_bits": 4`, `"num_bits": 3`, `config_groups.group_0.weights.num_bits 3`},
		{"activations", `"input_activations": null`, `"input_activations": {"num_bits": 8}`, `config_groups.group_0: input_activations`},
		{"tensor strategy", `"strategy": "group", "group_size": 128,`, `"strategy": "tensor",`, `weights.strategy "tensor"`},
		{"kv cache", `"kv_cache_scheme": null`, `"kv_cache_scheme": {"num_bits": 8}`, `kv_cache_scheme`},
		{"sparse", `"sparsity_config": {}`, `"sparsity_config": {"format": "sparse-24-bitmask"}`, `sparsity_config format "sparse-24-bitmask"`},
		{"dynamic", `"dynamic": false`, `"dynamic": true`, `weights.dynamic true`},
		{"frozen", `"quantization_status": "compressed"`, `"quantization_status": "frozen"`, `quantization_status "frozen"`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			js := strings.Replace(w4a16, tc.old, tc.new, 1)
			if js == w4a16 {
				t.Fatalf("%q not in the config", tc.old)
			}
			_, err := ParseConfig([]byte(js), "config.json: quantization_config")
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "config.json: quantization_config: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrUnsupported naming the file and %q", err, tc.want)
			}
		})
	}
	if _, err := ParseConfig([]byte(strings.Replace(w4a16, `"re:.*layers`, `"re:(?<=x)layers`, 1)), "f"); err == nil || !strings.Contains(err.Error(), "ignore[1]") {
		t.Errorf("bad regexp: err = %v, want one naming ignore[1]", err)
	}
}
