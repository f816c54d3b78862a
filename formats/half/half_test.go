package half

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/x448/float16"
)

func isNaN16(h uint16) bool { return h&0x7c00 == 0x7c00 && h&0x3ff != 0 }

func TestF16RoundTripExhaustive(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		f := F16ToF32(h)
		got := F32ToF16(f)
		if isNaN16(h) {
			if !math.IsNaN(float64(f)) {
				t.Fatalf("F16ToF32(%#04x) = %v, want NaN", h, f)
			}
			if !isNaN16(got) || got&0x8000 != h&0x8000 {
				t.Fatalf("NaN %#04x round-tripped to %#04x, want a NaN of the same sign", h, got)
			}
			if h&0x200 != 0 && got != h {
				t.Fatalf("quiet NaN %#04x round-tripped to %#04x, want bit-exact", h, got)
			}
			continue
		}
		if got != h {
			t.Fatalf("F32ToF16(F16ToF32(%#04x)) = %#04x (via %v)", h, got, f)
		}
	}
}

// TestF16ToF32AgainstX448 compares every fp16 value with an independent
// implementation.
func TestF16ToF32AgainstX448(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		got := math.Float32bits(F16ToF32(h))
		want := math.Float32bits(float16.Frombits(h).Float32())
		if isNaN16(h) {
			if !math.IsNaN(float64(math.Float32frombits(got))) {
				t.Fatalf("F16ToF32(%#04x) = %#08x, want NaN", h, got)
			}
			continue
		}
		if got != want {
			t.Fatalf("F16ToF32(%#04x) = %#08x, x448 gives %#08x", h, got, want)
		}
	}
}

func TestBF16RoundTripExhaustive(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		f := BF16ToF32(h)
		if math.Float32bits(f) != uint32(h)<<16 {
			t.Fatalf("BF16ToF32(%#04x) = %#08x", h, math.Float32bits(f))
		}
		got := F32ToBF16(f)
		isNaN := h&0x7f80 == 0x7f80 && h&0x7f != 0
		if isNaN {
			if got&0x7f80 != 0x7f80 || got&0x7f == 0 || got&0x8000 != h&0x8000 {
				t.Fatalf("NaN %#04x round-tripped to %#04x, want a NaN of the same sign", h, got)
			}
			if h&0x40 != 0 && got != h {
				t.Fatalf("quiet NaN %#04x round-tripped to %#04x, want bit-exact", h, got)
			}
			continue
		}
		if got != h {
			t.Fatalf("F32ToBF16(BF16ToF32(%#04x)) = %#04x", h, got)
		}
	}
}

func TestF32ToF16HandValues(t *testing.T) {
	p := func(e int) float32 { return float32(math.Ldexp(1, e)) }
	tests := []struct {
		name string
		in   float32
		want uint16
	}{
		{"one", 1, 0x3c00},
		{"minus two", -2, 0xc000},
		{"zero", 0, 0x0000},
		{"minus zero", float32(math.Copysign(0, -1)), 0x8000},
		{"tenth", 0.1, 0x2e66},
		{"third", float32(1.0 / 3), 0x3555},
		{"max finite", 65504, 0x7bff},
		{"below overflow tie", 65519.996, 0x7bff},
		{"overflow tie rounds to even = Inf", 65520, 0x7c00},
		{"large", 1e10, 0x7c00},
		{"minus large", -1e10, 0xfc00},
		{"inf", float32(math.Inf(1)), 0x7c00},
		{"minus inf", float32(math.Inf(-1)), 0xfc00},
		{"tie 1+2^-11 down to even", 1 + p(-11), 0x3c00},
		{"tie 1+3*2^-11 up to even", 1 + 3*p(-11), 0x3c02},
		{"above tie 1+2^-11+2^-20", 1 + p(-11) + p(-20), 0x3c01},
		{"below tie 1+2^-11-2^-23", 1 + p(-11) - p(-23), 0x3c00},
		{"mantissa carry into exponent", 2 - p(-12), 0x4000},
		{"smallest normal", p(-14), 0x0400},
		{"smallest subnormal", p(-24), 0x0001},
		{"largest subnormal", 1023 * p(-24), 0x03ff},
		{"subnormal tie carries to normal", 1023.5 * p(-24), 0x0400},
		{"half smallest subnormal ties to zero", p(-25), 0x0000},
		{"just above half smallest subnormal", p(-25) + p(-40), 0x0001},
		{"1.5 smallest subnormal ties up to 2", 3 * p(-25), 0x0002},
		{"2.5 smallest subnormal ties down to 2", 5 * p(-25), 0x0002},
		{"minus smallest subnormal", -p(-24), 0x8001},
		{"far below subnormals", p(-30), 0x0000},
		{"fp32 subnormal", math.SmallestNonzeroFloat32, 0x0000},
		{"minus fp32 subnormal", -math.SmallestNonzeroFloat32, 0x8000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := F32ToF16(tt.in); got != tt.want {
				t.Errorf("F32ToF16(%g) = %#04x, want %#04x", tt.in, got, tt.want)
			}
		})
	}
}

func TestNaN(t *testing.T) {
	nans := []uint32{0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fa00000, 0x7fffffff, 0x7f802000}
	for _, b := range nans {
		f := math.Float32frombits(b)
		h := F32ToF16(f)
		if !isNaN16(h) || h&0x200 == 0 || (h&0x8000 != 0) != (b&0x80000000 != 0) {
			t.Errorf("F32ToF16(%#08x) = %#04x, want a quiet NaN of the same sign", b, h)
		}
		bf := F32ToBF16(f)
		if bf&0x7f80 != 0x7f80 || bf&0x40 == 0 || (bf&0x8000 != 0) != (b&0x80000000 != 0) {
			t.Errorf("F32ToBF16(%#08x) = %#04x, want a quiet NaN of the same sign", b, bf)
		}
	}
}

func TestF32ToBF16HandValues(t *testing.T) {
	tests := []struct {
		name string
		in   uint32
		want uint16
	}{
		{"one", 0x3f800000, 0x3f80},
		{"pi", 0x40490fdb, 0x4049},
		{"tie down to even", 0x3f808000, 0x3f80},
		{"tie up to even", 0x3f818000, 0x3f82},
		{"above tie", 0x3f808001, 0x3f81},
		{"below tie", 0x3f807fff, 0x3f80},
		{"max float32 rounds to inf", 0x7f7fffff, 0x7f80},
		{"largest that stays finite", 0x7f7f7fff, 0x7f7f},
		{"minus max float32 rounds to -inf", 0xff7fffff, 0xff80},
		{"inf", 0x7f800000, 0x7f80},
		{"minus inf", 0xff800000, 0xff80},
		{"minus zero", 0x80000000, 0x8000},
		{"fp32 subnormal tie", 0x00008000, 0x0000},
		{"fp32 subnormal up", 0x00018000, 0x0002},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := F32ToBF16(math.Float32frombits(tt.in)); got != tt.want {
				t.Errorf("F32ToBF16(%#08x) = %#04x, want %#04x", tt.in, got, tt.want)
			}
		})
	}
}

// randomF32 returns finite float32 values spread over all exponents, half
// of them within the fp16 range where rounding matters most.
func randomF32(r *rand.Rand, n int) []float32 {
	out := make([]float32, 0, n)
	for len(out) < n {
		var f float32
		if r.IntN(2) == 0 {
			f = math.Float32frombits(r.Uint32())
		} else {
			// exponent in the fp16 range and a bit beyond, random mantissa
			e := r.IntN(50) - 30
			f = float32(math.Ldexp(1+r.Float64(), e))
			if r.IntN(2) == 0 {
				f = -f
			}
		}
		if math.IsNaN(float64(f)) {
			continue
		}
		out = append(out, f)
	}
	return out
}

func TestF32ToF16AgainstX448(t *testing.T) {
	n := 2_000_000
	if testing.Short() {
		n = 200_000
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, f := range randomF32(r, n) {
		got := F32ToF16(f)
		want := float16.Fromfloat32(f).Bits()
		if got != want {
			t.Fatalf("F32ToF16(%g = %#08x) = %#04x, x448 gives %#04x", f, math.Float32bits(f), got, want)
		}
	}
}

// TestF32ToF16Nearest checks the rounding property directly in float64 on a
// stride through all float32 bit patterns: the result is the nearest fp16
// value and, on a tie, the one with an even mantissa.
func TestF32ToF16Nearest(t *testing.T) {
	stride := uint64(4099)
	if testing.Short() {
		stride = 40009
	}
	for b := uint64(0); b < 1<<32; b += stride {
		f := math.Float32frombits(uint32(b))
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			continue
		}
		h := F32ToF16(f)
		x := float64(f)
		if math.Abs(x) >= 65520 {
			if want := F32ToF16(float32(math.Copysign(math.Inf(1), x))); h != want {
				t.Fatalf("F32ToF16(%g) = %#04x, want Inf %#04x", x, h, want)
			}
			continue
		}
		got := float64(F16ToF32(h))
		for _, nb := range []uint16{h + 1, h - 1} {
			if nb&0x7c00 == 0x7c00 || (h&0x7fff == 0 && nb == h-1) {
				continue // neighbour is Inf/NaN or wraps across zero
			}
			alt := float64(F16ToF32(nb))
			dGot, dAlt := math.Abs(got-x), math.Abs(alt-x)
			if dAlt < dGot || (dAlt == dGot && h&1 == 1) {
				t.Fatalf("F32ToF16(%g) = %#04x (%g), but %#04x (%g) is nearer or an even tie", x, h, got, nb, alt)
			}
		}
		// across zero the other neighbour is the opposite-sign smallest subnormal
		if h&0x7fff == 0 && math.Abs(x) > math.Ldexp(1, -25) {
			t.Fatalf("F32ToF16(%g) = %#04x, want a nonzero subnormal", x, h)
		}
	}
}

func TestSliceConvertersMatchScalar(t *testing.T) {
	sizes := []int{0, 1, 7, 1000, ParallelThreshold + 17}
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range sizes {
		t.Run("", func(t *testing.T) {
			src := randomF32(r, n)
			src16 := make([]byte, 2*n)
			F32ToF16Bytes(src16, src)
			for i, f := range src {
				if h := uint16(src16[2*i]) | uint16(src16[2*i+1])<<8; h != F32ToF16(f) {
					t.Fatalf("n=%d: F32ToF16Bytes[%d] = %#04x, want %#04x", n, i, h, F32ToF16(f))
				}
			}
			back := make([]float32, n)
			F16BytesToF32(back, src16)
			for i := range back {
				h := uint16(src16[2*i]) | uint16(src16[2*i+1])<<8
				if math.Float32bits(back[i]) != math.Float32bits(F16ToF32(h)) {
					t.Fatalf("n=%d: F16BytesToF32[%d] = %g, want %g", n, i, back[i], F16ToF32(h))
				}
			}
			srcBF := make([]byte, 2*n)
			F32ToBF16Bytes(srcBF, src)
			for i, f := range src {
				if h := uint16(srcBF[2*i]) | uint16(srcBF[2*i+1])<<8; h != F32ToBF16(f) {
					t.Fatalf("n=%d: F32ToBF16Bytes[%d] = %#04x, want %#04x", n, i, h, F32ToBF16(f))
				}
			}
			BF16BytesToF32(back, srcBF)
			for i := range back {
				h := uint16(srcBF[2*i]) | uint16(srcBF[2*i+1])<<8
				if math.Float32bits(back[i]) != uint32(h)<<16 {
					t.Fatalf("n=%d: BF16BytesToF32[%d] = %#08x, want %#08x", n, i, math.Float32bits(back[i]), uint32(h)<<16)
				}
			}
		})
	}
}

func TestLittleEndianLayout(t *testing.T) {
	// 1.0 is 0x3c00 in fp16 and 0x3f80 in bf16; -2 is 0xc000 in both.
	dst := make([]float32, 2)
	F16BytesToF32(dst, []byte{0x00, 0x3c, 0x00, 0xc0})
	if dst[0] != 1 || dst[1] != -2 {
		t.Errorf("F16BytesToF32 = %v, want [1 -2]", dst)
	}
	BF16BytesToF32(dst, []byte{0x80, 0x3f, 0x00, 0xc0})
	if dst[0] != 1 || dst[1] != -2 {
		t.Errorf("BF16BytesToF32 = %v, want [1 -2]", dst)
	}
	b := make([]byte, 4)
	F32ToF16Bytes(b, []float32{1, -2})
	if want := []byte{0x00, 0x3c, 0x00, 0xc0}; string(b) != string(want) {
		t.Errorf("F32ToF16Bytes = % x, want % x", b, want)
	}
	F32ToBF16Bytes(b, []float32{1, -2})
	if want := []byte{0x80, 0x3f, 0x00, 0xc0}; string(b) != string(want) {
		t.Errorf("F32ToBF16Bytes = % x, want % x", b, want)
	}
}

func TestLengthMismatchPanics(t *testing.T) {
	tests := []struct {
		name string
		fn   func()
	}{
		{"F16BytesToF32", func() { F16BytesToF32(make([]float32, 2), make([]byte, 3)) }},
		{"BF16BytesToF32", func() { BF16BytesToF32(make([]float32, 2), make([]byte, 2)) }},
		{"F32ToF16Bytes", func() { F32ToF16Bytes(make([]byte, 5), make([]float32, 2)) }},
		{"F32ToBF16Bytes", func() { F32ToBF16Bytes(make([]byte, 2), make([]float32, 2)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("%s with mismatched lengths did not panic", tt.name)
				}
			}()
			tt.fn()
		})
	}
}

// TestF32ToF16FastPath checks the slice converter's fast path against the
// scalar conversion at every fp32 exponent and at the boundaries of the
// range it handles.
func TestF32ToF16FastPath(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var in []float32
	for exp := uint32(0); exp < 256; exp++ {
		for _, m := range []uint32{0, 1, 0xfff, 0x1000, 0x1001, 0x2fff, 0x3000, 0x7fdfff, 0x7fe000, 0x7fefff, 0x7ff000, 0x7fffff, r.Uint32() & 0x7fffff} {
			in = append(in, math.Float32frombits(exp<<23|m), math.Float32frombits(1<<31|exp<<23|m))
		}
	}
	for _, b := range []uint32{0x387fffff, 0x38800000, 0x477fefff, 0x477ff000, 0x477fffff, 0x47800000} {
		in = append(in, math.Float32frombits(b))
	}
	out := make([]byte, 2*len(in))
	F32ToF16Bytes(out, in)
	for i, f := range in {
		got := uint16(out[2*i]) | uint16(out[2*i+1])<<8
		if want := F32ToF16(f); got != want && !(isNaN16(got) && isNaN16(want)) {
			t.Errorf("F32ToF16Bytes(%#08x) = %#04x, want %#04x", math.Float32bits(f), got, want)
		}
	}
}
