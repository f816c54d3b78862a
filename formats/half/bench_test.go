package half

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchSizes are openchat-3.5 (Mistral-7B) shapes: one hidden row, a
// q_proj [4096 4096] and an mlp weight [14336 4096].
var benchSizes = []struct {
	name string
	n    int
}{
	{"4096", 4096},
	{"4096x4096", 4096 * 4096},
	{"4096x14336", 4096 * 14336},
}

func benchHalfToF32(b *testing.B, conv func([]float32, []byte), enc func([]byte, []float32)) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 1))
			f := make([]float32, s.n)
			for i := range f {
				f[i] = float32(r.NormFloat64())
			}
			src := make([]byte, 2*s.n)
			enc(src, f)
			b.SetBytes(int64(2 * s.n))
			b.ResetTimer()
			for b.Loop() {
				conv(f, src)
			}
		})
	}
}

func benchF32ToHalf(b *testing.B, conv func([]byte, []float32)) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 1))
			f := make([]float32, s.n)
			for i := range f {
				f[i] = float32(r.NormFloat64())
			}
			dst := make([]byte, 2*s.n)
			b.SetBytes(int64(4 * s.n))
			b.ResetTimer()
			for b.Loop() {
				conv(dst, f)
			}
		})
	}
}

func BenchmarkF16BytesToF32(b *testing.B)  { benchHalfToF32(b, F16BytesToF32, F32ToF16Bytes) }
func BenchmarkBF16BytesToF32(b *testing.B) { benchHalfToF32(b, BF16BytesToF32, F32ToBF16Bytes) }
func BenchmarkF32ToF16Bytes(b *testing.B)  { benchF32ToHalf(b, F32ToF16Bytes) }
func BenchmarkF32ToBF16Bytes(b *testing.B) { benchF32ToHalf(b, F32ToBF16Bytes) }

func Example() {
	h := F32ToF16(0.1)
	bf := F32ToBF16(0.1)
	fmt.Printf("fp16 %#04x = %v\n", h, F16ToF32(h))
	fmt.Printf("bf16 %#04x = %v\n", bf, BF16ToF32(bf))
	// Output:
	// fp16 0x2e66 = 0.099975586
	// bf16 0x3dcd = 0.100097656
}
