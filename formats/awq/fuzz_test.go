package awq

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseConfig: no panic on any config; one that parses has 4 bits,
// zero points, version gemm and a valid group size.
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
		if c.Bits != 4 || !c.ZeroPoint || c.Version != "gemm" || (c.GroupSize != -1 && c.GroupSize <= 0) {
			t.Fatalf("accepted %+v", *c)
		}
		c.Skipped("model.layers.0.mlp.down_proj")
	})
}

// FuzzToGPTQ: any words of any sizes convert or fail without a panic;
// converted ones hold valid GPTQ tensors that dequantize.
func FuzzToGPTQ(f *testing.F) {
	f.Add(uint8(16), uint8(8), int8(8), []byte{0x21, 0x43, 0x65, 0x87})
	f.Fuzz(func(t *testing.T, k, n uint8, gs int8, raw []byte) {
		K, N := int(k), int(n)
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
		scales := make([]uint16, max(G*N, 0))
		for i := range scales {
			scales[i] = 0x2000
		}
		l, err := ToGPTQ(words(K*N/8), words(G*N/8), scales, K, N, int(gs))
		if err != nil {
			return
		}
		if _, err := l.Dequantize(); err != nil {
			t.Fatalf("converted linear does not dequantize: %v", err)
		}
	})
}
