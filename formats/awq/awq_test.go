package awq

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
)

// TestUnpackWord unpacks one word whose nibbles, from the least
// significant, are 0x1..0x8: AWQ_ORDER puts nibble j at column Order[j],
// so the columns read 1 5 2 6 3 7 4 8 (worked out by hand from AutoAWQ's
// reverse_awq_order: column i takes nibble AWQ_REVERSE_ORDER[i] =
// [0 4 1 5 2 6 3 7][i]).
func TestUnpackWord(t *testing.T) {
	got, err := Unpack([]int32{word(0x87654321)}, 1, 8)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint8{1, 5, 2, 6, 3, 7, 4, 8}
	if !slices.Equal(got, want) {
		t.Errorf("Unpack(0x87654321) = %v, want %v", got, want)
	}
	// A second word column: columns 8..15.
	got, err = Unpack([]int32{0, word(0xf000000f)}, 1, 16)
	if err != nil {
		t.Fatal(err)
	}
	want = []uint8{0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0, 0, 0, 0, 0, 15}
	if !slices.Equal(got, want) {
		t.Errorf("Unpack(0, 0xf000000f) = %v, want %v", got, want)
	}
}

// word reinterprets a uint32 as the int32 a file stores.
func word(u uint32) int32 { return int32(u) }

// packAWQ is an independent packer written from AutoAWQ's WQLinear_GEMM
// from_linear: for each word column c, the eight columns
// intweight[:, 8c+AWQ_ORDER[j]] are shifted by 4j and or-ed.
func packAWQ(v []uint8, rows, N int) []int32 {
	awqOrder := []int{0, 2, 4, 6, 1, 3, 5, 7}
	out := make([]int32, rows*N/8)
	for r := range rows {
		for c := range N / 8 {
			var w uint32
			for j := range 8 {
				w |= uint32(v[r*N+c*8+awqOrder[j]]) << (4 * j)
			}
			out[r*N/8+c] = int32(w)
		}
	}
	return out
}

// TestToGPTQ packs random codes, zero points (0 and 15 included) and
// scales as AWQ, converts them to a gptq.Linear and checks that it
// dequantizes to scales·(q−z), computed here from the originals, bit for
// bit, and holds the same codes and zero points.
func TestToGPTQ(t *testing.T) {
	for _, tc := range []struct {
		name      string
		K, N, gs  int
		groupSize int
	}{
		{"g32", 128, 48, 32, 32},
		{"g-1", 64, 16, 64, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			K, N := tc.K, tc.N
			G := K / tc.gs
			q := make([]uint8, K*N)
			for i := range q {
				q[i] = uint8(r.IntN(16))
			}
			z := make([]uint8, G*N)
			for i := range z {
				z[i] = uint8(r.IntN(16))
			}
			z[0], z[1] = 0, 15
			sc := make([]uint16, G*N)
			for i := range sc {
				sc[i] = half.F32ToF16(float32(0.001 + 0.05*r.Float64()))
			}
			l, err := ToGPTQ(packAWQ(q, K, N), packAWQ(z, G, N), sc, K, N, tc.groupSize)
			if err != nil {
				t.Fatal(err)
			}
			if l.Format != gptq.FormatV2 {
				t.Errorf("format %q, want %q", l.Format, gptq.FormatV2)
			}
			w, err := l.Dequantize()
			if err != nil {
				t.Fatal(err)
			}
			for n := range N {
				for k := range K {
					g := k / tc.gs
					want := half.F16ToF32(sc[g*N+n]) * float32(int(q[k*N+n])-int(z[g*N+n]))
					if w[n*K+k] != want {
						t.Fatalf("W[%d,%d] = %v, want %v", n, k, w[n*K+k], want)
					}
				}
			}
			codes, err := gptq.UnpackQWeight(l.QWeight, K, N, 4)
			if err != nil || !slices.Equal(codes, q) {
				t.Errorf("codes differ (err %v)", err)
			}
			zeros, err := l.ZeroPoints()
			if err != nil {
				t.Fatal(err)
			}
			for i := range zeros {
				if zeros[i] != int32(z[i]) {
					t.Fatalf("zero %d = %d, want %d", i, zeros[i], z[i])
				}
			}
		})
	}
	if _, err := ToGPTQ(make([]int32, 3), nil, nil, 8, 8, 8); !errors.Is(err, gptq.ErrShape) {
		t.Errorf("short qweight: err = %v, want ErrShape", err)
	}
}

func TestParseConfig(t *testing.T) {
	ok := []struct {
		name, json string
		want       Config
	}{
		{"transformers", `{"quant_method":"awq","bits":4,"group_size":128,"zero_point":true,"version":"GEMM","modules_to_not_convert":["visual"]}`,
			Config{Bits: 4, GroupSize: 128, ZeroPoint: true, Version: "gemm", ModulesToNotConvert: []string{"visual"}}},
		{"autoawq quant_config.json", `{"zero_point":true,"q_group_size":64,"w_bit":4,"version":"GEMM","modules_to_not_convert":null}`,
			Config{Bits: 4, GroupSize: 64, ZeroPoint: true, Version: "gemm"}},
		{"defaults", `{"bits":4,"group_size":-1}`, Config{Bits: 4, GroupSize: -1, ZeroPoint: true, Version: "gemm"}},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.json), "f.json")
			if err != nil {
				t.Fatal(err)
			}
			tc.want.File = "f.json"
			if c.Bits != tc.want.Bits || c.GroupSize != tc.want.GroupSize || c.ZeroPoint != tc.want.ZeroPoint ||
				c.Version != tc.want.Version || !slices.Equal(c.ModulesToNotConvert, tc.want.ModulesToNotConvert) || c.File != "f.json" {
				t.Errorf("got %+v, want %+v", *c, tc.want)
			}
		})
	}
	bad := []struct{ name, json, want string }{
		{"gemv", `{"bits":4,"group_size":128,"version":"gemv"}`, `f.json: version "gemv"`},
		{"marlin", `{"bits":4,"group_size":128,"version":"marlin"}`, `f.json: version "marlin"`},
		{"exllama", `{"bits":4,"group_size":128,"version":"exllama"}`, `f.json: version "exllama"`},
		{"no zero point", `{"bits":4,"group_size":128,"zero_point":false}`, `f.json: zero_point false`},
		{"3 bits", `{"w_bit":3,"q_group_size":128}`, `f.json: w_bit 3`},
		{"llm-awq", `{"bits":4,"group_size":128,"backend":"llm-awq"}`, `f.json: backend "llm-awq"`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.json), "f.json")
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrUnsupported naming %q", err, tc.want)
			}
		})
	}
	for _, js := range []string{`{"group_size":128}`, `{"bits":4}`, `{"bits":4,"group_size":0}`, `{"bits":4,"group_size":128,"quant_method":"gptq"}`, `[]`} {
		if _, err := ParseConfig([]byte(js), "f.json"); err == nil || !strings.Contains(err.Error(), "f.json") {
			t.Errorf("%s: err = %v, want one naming the file", js, err)
		}
	}
}

func TestSkipped(t *testing.T) {
	c := Config{ModulesToNotConvert: []string{"down_proj", "lm_head"}}
	for name, want := range map[string]bool{
		"model.layers.3.mlp.down_proj":     true,
		"lm_head":                          true,
		"model.layers.3.self_attn.q_proj":  false,
		"model.layers.3.mlp.gate_proj":     false,
		"model.layers.10.mlp.down_proj_x":  true, // (a substring, as AutoAWQ tests it)
		"model.layers.10.self_attn.o_proj": false,
	} {
		if got := c.Skipped(name); got != want {
			t.Errorf("Skipped(%q) = %v, want %v", name, got, want)
		}
	}
}
