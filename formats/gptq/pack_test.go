package gptq

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// w reinterprets a uint32 literal as the int32 stored on disk.
func w(u uint32) int32 { return int32(u) }

func fill(n int, v uint8) []uint8 {
	s := make([]uint8, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// TestSymQZerosWords checks the hand-derived v1 words of spec §1.4: sym zero
// 2^(bits-1) stored minus one.
func TestSymQZerosWords(t *testing.T) {
	tests := []struct {
		bits int
		N    int
		want []uint32 // one row
	}{
		{bits: 4, N: 8, want: []uint32{0x77777777}},
		{bits: 4, N: 16, want: []uint32{0x77777777, 0x77777777}},
		{bits: 8, N: 4, want: []uint32{0x7F7F7F7F}},
		{bits: 2, N: 16, want: []uint32{0x55555555}},
		// 3 bits, stored 3 = 0b011 everywhere: stream bit p is 1 unless p%3 == 2.
		// Word 0 covers p = 0..31, word 1 p = 32..63, word 2 p = 64..95.
		{bits: 3, N: 32, want: []uint32{^uint32(0x24924924), ^uint32(0x49249249), ^uint32(0x92492492)}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%dbit_N%d", tt.bits, tt.N), func(t *testing.T) {
			const G = 3
			z := fill(G*tt.N, uint8(1)<<(tt.bits-1))
			got, err := PackQZeros(z, G, tt.N, tt.bits, FormatV1)
			if err != nil {
				t.Fatal(err)
			}
			var want []int32
			for range G {
				for _, u := range tt.want {
					want = append(want, w(u))
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("qzeros = %#x, want %#x", got, want)
			}
			back, err := UnpackQZeros(got, G, tt.N, tt.bits, FormatV1)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(back, z) {
				t.Fatalf("unpacked zeros = %v, want %v", back, z)
			}
		})
	}
}

func TestQZerosV2StoresRealZero(t *testing.T) {
	// 4-bit sym zero 8 in v2 is 0x88888888; 8-bit 128 is 0x80808080.
	got, err := PackQZeros(fill(8, 8), 1, 8, 4, FormatV2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int32{w(0x88888888)}; !slices.Equal(got, want) {
		t.Errorf("4-bit v2 = %#x, want %#x", got, want)
	}
	got, err = PackQZeros(fill(4, 128), 1, 4, 8, FormatV2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int32{w(0x80808080)}; !slices.Equal(got, want) {
		t.Errorf("8-bit v2 = %#x, want %#x", got, want)
	}
	// Real zero 0 is fine in v2 and impossible in v1 (spec §1.4).
	if _, err := PackQZeros(fill(8, 0), 1, 8, 4, FormatV2); err != nil {
		t.Errorf("v2 zero 0: %v", err)
	}
	if _, err := PackQZeros(fill(8, 0), 1, 8, 4, FormatV1); err == nil {
		t.Error("v1 zero 0: got nil error")
	}
}

// TestPackQWeightByHand packs small matrices whose words are written out by hand.
func TestPackQWeightByHand(t *testing.T) {
	tests := []struct {
		name    string
		bits    int
		K, N    int
		q       func(k, n int) uint8
		want    []uint32
		wantErr bool
	}{
		{
			// column 0 holds k, column 1 holds 15-k: nibble j of the word is row j.
			name: "4bit_8x2", bits: 4, K: 8, N: 2,
			q:    func(k, n int) uint8 { return uint8([]int{k, 15 - k}[n]) },
			want: []uint32{0x76543210, 0x89ABCDEF},
		},
		{
			name: "4bit_16x1", bits: 4, K: 16, N: 1,
			q:    func(k, n int) uint8 { return uint8(k) },
			want: []uint32{0x76543210, 0xFEDCBA98},
		},
		{
			name: "8bit_4x1", bits: 8, K: 4, N: 1,
			q:    func(k, n int) uint8 { return uint8(k + 1) },
			want: []uint32{0x04030201},
		},
		{
			name: "8bit_8x2", bits: 8, K: 8, N: 2,
			q: func(k, n int) uint8 { return uint8(k*16 + n) },
			// row 0: k=0..3; row 1: k=4..7
			want: []uint32{0x30201000, 0x31211101, 0x70605040, 0x71615141},
		},
		{
			// 0,1,2,3 repeating: byte 0b11_10_01_00.
			name: "2bit_16x1", bits: 2, K: 16, N: 1,
			q:    func(k, n int) uint8 { return uint8(k % 4) },
			want: []uint32{0xE4E4E4E4},
		},
		{
			// 3-bit: 7 in value 0 only, 5 in value 31 only (w2 bits 29..31 = 101).
			name: "3bit_32x1", bits: 3, K: 32, N: 1,
			q: func(k, n int) uint8 {
				switch k {
				case 0:
					return 7
				case 31:
					return 5
				}
				return 0
			},
			want: []uint32{0x00000007, 0, 0xA0000000},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := make([]uint8, tt.K*tt.N)
			for k := range tt.K {
				for n := range tt.N {
					q[k*tt.N+n] = tt.q(k, n)
				}
			}
			got, err := PackQWeight(q, tt.K, tt.N, tt.bits)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]int32, len(tt.want))
			for i, u := range tt.want {
				want[i] = w(u)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("qweight = %#x, want %#x", got, want)
			}
			back, err := UnpackQWeight(got, tt.K, tt.N, tt.bits)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(back, q) {
				t.Fatalf("unpack = %v, want %v", back, q)
			}
		})
	}
}

// spec3BitPlacement places one 3-bit value v at position j of a 32-value block
// following the prose of spec §1.3 literally, independent of the bit-stream
// implementation.
func spec3BitPlacement(j int, v uint32) [3]uint32 {
	var out [3]uint32
	switch {
	case j <= 9:
		out[0] = v << (3 * j)
	case j == 10:
		out[0] = (v & 3) << 30
		out[1] = v >> 2 & 1
	case j <= 20:
		out[1] = v << (3*(j-11) + 1)
	case j == 21:
		out[1] = (v & 1) << 31
		out[2] = v >> 1 & 3
	default:
		out[2] = v << (3*(j-22) + 2)
	}
	return out
}

// TestThreeBitPositions puts one nonzero value at each of the 32 positions,
// along K (qweight) and along N (qzeros, v2 so the stored value is the zero).
func TestThreeBitPositions(t *testing.T) {
	for j := range 32 {
		for _, v := range []uint8{1, 2, 4, 5, 6, 7} {
			t.Run(fmt.Sprintf("j%d_v%d", j, v), func(t *testing.T) {
				want3 := spec3BitPlacement(j, uint32(v))
				want := []int32{w(want3[0]), w(want3[1]), w(want3[2])}
				q := make([]uint8, 32)
				q[j] = v
				got, err := PackQWeight(q, 32, 1, 3)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("qweight = %#x, want %#x", got, want)
				}
				gotZ, err := PackQZeros(q, 1, 32, 3, FormatV2)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(gotZ, want) {
					t.Fatalf("qzeros = %#x, want %#x", gotZ, want)
				}
				back, err := UnpackQWeight(want, 32, 1, 3)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(back, q) {
					t.Fatalf("unpack = %v, want %v", back, q)
				}
			})
		}
	}
}

func TestThreeBitStraddle(t *testing.T) {
	// value 10 = 0b101: bits 0-1 (01) to w0 bits 30-31, bit 2 (1) to w1 bit 0.
	// value 21 = 0b101: bit 0 (1) to w1 bit 31, bits 1-2 (10) to w2 bits 0-1.
	q := make([]uint8, 32)
	q[10], q[21] = 5, 5
	got, err := PackQWeight(q, 32, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []int32{w(0x40000000), w(0x80000001), w(0x00000002)}
	if !slices.Equal(got, want) {
		t.Fatalf("qweight = %#x, want %#x", got, want)
	}
}

// TestRoundTrip packs random codes (including 0 and the maximum) at the
// smallest K each width allows, N = 1, and larger shapes.
func TestRoundTrip(t *testing.T) {
	minK := map[int]int{2: 16, 3: 32, 4: 8, 8: 4}
	r := rand.New(rand.NewPCG(1, 2))
	for _, bits := range []int{2, 3, 4, 8} {
		mk := minK[bits]
		for _, shape := range [][2]int{{mk, 1}, {mk, mk}, {mk * 3, 7}, {mk * 5, mk * 2}, {128, 96}} {
			K, N := shape[0], shape[1]
			t.Run(fmt.Sprintf("%dbit_%dx%d", bits, K, N), func(t *testing.T) {
				maxq := 1<<bits - 1
				q := make([]uint8, K*N)
				for i := range q {
					q[i] = uint8(r.IntN(maxq + 1))
				}
				q[0], q[len(q)-1] = uint8(maxq), 0
				qw, err := PackQWeight(q, K, N, bits)
				if err != nil {
					t.Fatal(err)
				}
				if len(qw) != K*bits/32*N {
					t.Fatalf("len(qweight) = %d, want %d", len(qw), K*bits/32*N)
				}
				back, err := UnpackQWeight(qw, K, N, bits)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(back, q) {
					t.Fatal("qweight round trip differs")
				}
				// qzeros along N: use the transposed shape [N', G] = [K, N] read as G=N rows of K.
				for _, f := range []Format{FormatV1, FormatV2} {
					z := slices.Clone(q)
					if f == FormatV1 {
						for i := range z {
							z[i] = max(z[i], 1)
						}
					}
					qz, err := PackQZeros(z, N, K, bits, f)
					if err != nil {
						t.Fatal(err)
					}
					zb, err := UnpackQZeros(qz, N, K, bits, f)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(zb, z) {
						t.Fatalf("qzeros %s round trip differs", f)
					}
				}
			})
		}
	}
}

func TestPackErrors(t *testing.T) {
	tests := []struct {
		name string
		run  func() error
	}{
		{"3bit K not multiple of 32", func() error { _, err := PackQWeight(make([]uint8, 16), 16, 1, 3); return err }},
		{"4bit K=172", func() error { _, err := PackQWeight(make([]uint8, 172), 172, 1, 4); return err }},
		{"8bit K=6", func() error { _, err := PackQWeight(make([]uint8, 6), 6, 1, 8); return err }},
		{"bits 5", func() error { _, err := PackQWeight(make([]uint8, 32), 32, 1, 5); return err }},
		{"code out of range", func() error { q := make([]uint8, 8); q[3] = 16; _, err := PackQWeight(q, 8, 1, 4); return err }},
		{"3bit code 8", func() error { q := make([]uint8, 32); q[31] = 8; _, err := PackQWeight(q, 32, 1, 3); return err }},
		{"length mismatch", func() error { _, err := PackQWeight(make([]uint8, 9), 8, 1, 4); return err }},
		{"zero dims", func() error { _, err := PackQWeight(nil, 8, 0, 4); return err }},
		{"unpack length", func() error { _, err := UnpackQWeight(make([]int32, 3), 8, 2, 4); return err }},
		{"qzeros N", func() error { _, err := PackQZeros(fill(4, 8), 1, 4, 4, FormatV1); return err }},
		{"qzeros format", func() error { _, err := PackQZeros(fill(8, 8), 1, 8, 4, "marlin"); return err }},
		{"unpack qzeros format", func() error { _, err := UnpackQZeros(make([]int32, 1), 1, 8, 4, ""); return err }},
		{"8bit v1 stored 255", func() error { _, err := UnpackQZeros([]int32{w(0xFF7F7F7F)}, 1, 4, 8, FormatV1); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); err == nil {
				t.Fatal("got nil error")
			}
		})
	}
	_, err := PackQWeight(make([]uint8, 172), 172, 1, 4)
	if !errors.Is(err, ErrShape) {
		t.Errorf("K=172 error %v does not wrap ErrShape", err)
	}
}

func TestPackedLen(t *testing.T) {
	tests := []struct {
		n, bits, want int
		ok            bool
	}{
		{4096, 4, 512, true}, {14336, 4, 1792, true}, {4096, 3, 384, true}, {14336, 3, 1344, true},
		{4096, 8, 1024, true}, {16, 2, 1, true}, {4, 8, 1, true}, {172, 4, 0, false}, {48, 3, 0, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d_%dbit", tt.n, tt.bits), func(t *testing.T) {
			got, err := PackedLen(tt.n, tt.bits)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("PackedLen = %d, %v; want %d, ok=%v", got, err, tt.want, tt.ok)
			}
		})
	}
}

func FuzzUnpackQWeight(f *testing.F) {
	f.Add([]byte{0x10, 0x32, 0x54, 0x76}, uint16(8), uint16(1), uint8(4))
	f.Add(make([]byte, 12), uint16(32), uint16(1), uint8(3))
	f.Add(make([]byte, 8), uint16(16), uint16(2), uint8(2))
	f.Add(make([]byte, 8), uint16(4), uint16(2), uint8(8))
	f.Add([]byte{1, 2, 3}, uint16(0), uint16(5), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, K, N uint16, bits uint8) {
		words := bytesToWords(data)
		q, err := UnpackQWeight(words, int(K), int(N), int(bits))
		if err != nil {
			return
		}
		// Every bit of a word belongs to a field, so packing gives the words back.
		back, err := PackQWeight(q, int(K), int(N), int(bits))
		if err != nil {
			t.Fatalf("repack: %v", err)
		}
		if !slices.Equal(back, words) {
			t.Fatalf("repack = %#x, want %#x", back, words)
		}
	})
}

func FuzzUnpackQZeros(f *testing.F) {
	f.Add([]byte{0x77, 0x77, 0x77, 0x77}, uint16(1), uint16(8), uint8(4), false)
	f.Add([]byte{0x7f, 0x7f, 0x7f, 0xff}, uint16(1), uint16(4), uint8(8), false)
	f.Add(make([]byte, 12), uint16(1), uint16(32), uint8(3), true)
	f.Fuzz(func(t *testing.T, data []byte, G, N uint16, bits uint8, v2 bool) {
		format := FormatV1
		if v2 {
			format = FormatV2
		}
		words := bytesToWords(data)
		z, err := UnpackQZeros(words, int(G), int(N), int(bits), format)
		if err != nil {
			return
		}
		back, err := PackQZeros(z, int(G), int(N), int(bits), format)
		if err != nil {
			t.Fatalf("repack: %v", err)
		}
		if !slices.Equal(back, words) {
			t.Fatalf("repack = %#x, want %#x", back, words)
		}
	})
}

func bytesToWords(data []byte) []int32 {
	words := make([]int32, len(data)/4)
	for i := range words {
		words[i] = int32(uint32(data[4*i]) | uint32(data[4*i+1])<<8 | uint32(data[4*i+2])<<16 | uint32(data[4*i+3])<<24)
	}
	return words
}

func BenchmarkPack(b *testing.B) {
	// down_proj of Mistral-7B: K=14336 in, N=4096 out; and gate/up: K=4096, N=14336.
	for _, shape := range [][2]int{{14336, 4096}, {4096, 14336}} {
		K, N := shape[0], shape[1]
		for _, bits := range []int{3, 4, 8} {
			q := make([]uint8, K*N)
			r := rand.New(rand.NewPCG(3, 4))
			for i := range q {
				q[i] = uint8(r.IntN(1 << bits))
			}
			qw, err := PackQWeight(q, K, N, bits)
			if err != nil {
				b.Fatal(err)
			}
			name := fmt.Sprintf("K%d_N%d_%dbit", K, N, bits)
			b.Run("pack/"+name, func(b *testing.B) {
				b.SetBytes(int64(K * N))
				for b.Loop() {
					if _, err := PackQWeight(q, K, N, bits); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("unpack/"+name, func(b *testing.B) {
				b.SetBytes(int64(K * N))
				for b.Loop() {
					if _, err := UnpackQWeight(qw, K, N, bits); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
