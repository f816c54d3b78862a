package compressed

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseConfig: no panic on any config; the schemes of one that parses
// are weight-only integer group or channel schemes of 4 or 8 bits.
func FuzzParseConfig(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data, "f")
		if err != nil {
			return
		}
		for _, g := range c.Groups {
			w := g.Weights
			if (w.NumBits != 4 && w.NumBits != 8) || (w.Strategy != "group" && w.Strategy != "channel") || (w.GroupSize != -1 && w.GroupSize <= 0) {
				t.Fatalf("accepted %+v", w)
			}
		}
		c.Scheme("model.layers.0.mlp.down_proj")
	})
}

// FuzzToGPTQ: any tensors of any sizes convert or fail without a panic;
// converted ones hold valid GPTQ tensors that dequantize.
func FuzzToGPTQ(f *testing.F) {
	f.Add(uint8(8), uint8(8), int8(4), false, true, []byte{0x79, 0xf8, 0xa0, 0x5b})
	f.Fuzz(func(t *testing.T, k, n uint8, gs int8, sym, eight bool, raw []byte) {
		w := Weights{NumBits: 4, Symmetric: sym, GroupSize: int(gs)}
		if eight {
			w.NumBits = 8
		}
		K, N, pf := int(k), int(n), 32/w.NumBits
		G := (K + max(int(gs), 1) - 1) / max(int(gs), 1)
		if gs == -1 {
			G = 1
		}
		words := func(count int) []int32 {
			out := make([]int32, max(count, 0))
			for i := range out {
				if 4*i+4 <= len(raw) {
					out[i] = int32(binary.LittleEndian.Uint32(raw[4*i:]))
				}
			}
			return out
		}
		l := Linear{K: K, N: N, Weights: w, Packed: words(N * K / pf), Scale: make([]uint16, max(N*G, 0))}
		for i := range l.Scale {
			l.Scale[i] = 0x2000
		}
		if !sym {
			l.Zero = words(N / pf * G)
		}
		if len(raw)%3 == 0 {
			l.GIdx = words(K)
		}
		g, err := l.ToGPTQ()
		if err != nil {
			return
		}
		if _, err := g.Dequantize(); err != nil && g.Validate("x") == nil {
			t.Fatalf("valid converted linear does not dequantize: %v", err)
		}
	})
}
