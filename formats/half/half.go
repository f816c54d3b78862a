package half

import "math"

// F16ToF32 returns the fp32 value of the fp16 bit pattern h. The conversion
// is exact; NaN payloads are kept.
func F16ToF32(h uint16) float32 {
	return math.Float32frombits(f16ToF32Bits(h))
}

func f16ToF32Bits(h uint16) uint32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0:
		if mant == 0 {
			return sign
		}
		// Subnormal: value = mant·2^-24. Normalise so the leading one
		// sits at bit 10, lowering the exponent once per shift.
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		return sign | e<<23 | (mant&0x3ff)<<13
	case 0x1f:
		return sign | 0x7f800000 | mant<<13
	default:
		return sign | (exp+127-15)<<23 | mant<<13
	}
}

// F32ToF16 returns the fp16 bit pattern nearest to f, ties to even.
// Magnitudes beyond the largest finite fp16 (65504, after rounding) become
// ±Inf, tiny magnitudes become fp16 subnormals or ±0, and NaN becomes a
// quiet fp16 NaN with the same sign and the top 9 payload bits.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// fp16 subnormal: result = m24·2^(e-14) in units of 2^-24, m24 the
		// 24-bit significand with its implicit one.
		if e < -10 {
			return sign // below half the smallest subnormal
		}
		m := mant | 0x800000
		shift := uint32(14 - e)
		q := m >> shift
		rem := m & (1<<shift - 1)
		halfway := uint32(1) << (shift - 1)
		if rem > halfway || (rem == halfway && q&1 == 1) {
			q++ // may carry into the smallest normal, which is right
		}
		return sign | uint16(q)
	}
	q := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && q&1 == 1) {
		q++ // a carry out of the mantissa bumps the exponent, up to Inf
	}
	return sign | uint16(q)
}

// BF16ToF32 returns the fp32 value of the bf16 bit pattern h (exact).
func BF16ToF32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// F32ToBF16 returns the bf16 bit pattern nearest to f, ties to even.
// Finite values that round past the largest bf16 become ±Inf; NaN becomes a
// quiet bf16 NaN with the same sign and top payload bits.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}
