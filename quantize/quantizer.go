package quantize

import (
	"math"
)

// Quantizer is the uniform min-max quantizer of spec §4.3 (REF quant.py
// Quantizer, AG quantization/quantizer.py): FindParams chooses a scale and a
// zero point for one row (or one group of a row), Code and Dequant apply them.
// The zero value is not usable; build one with Options.Quantizer or fill
// Bits and the MSE fields yourself.
type Quantizer struct {
	// Bits is the code width, 2, 3, 4 or 8; codes lie in [0, 2^Bits-1].
	Bits int
	// Sym selects the symmetric quantizer: zero = 2^(Bits-1), with the
	// reference quirk that a group without negatives keeps xmin = 0.
	Sym bool
	// MSE enables the shrink-grid search for the scale (REF mse=True).
	MSE bool
	// Norm is the exponent of the MSE error Σ|q-x|^Norm (REF norm=2.4).
	Norm float64
	// Grid is the number of grid steps (REF grid=100).
	Grid int
	// MaxShrink bounds the shrink factor: int(MaxShrink*Grid) candidates
	// p = 1 - i/Grid are tried (REF maxshrink=0.8).
	MaxShrink float64
	// Fp16Scales rounds every candidate scale to the nearest fp16 value as it
	// is chosen (the dtype the checkpoint stores); false rounds it to fp32 as
	// REF, which computes in fp32.
	Fp16Scales bool
}

// MaxQ returns 2^Bits - 1, the largest code.
func (q Quantizer) MaxQ() int { return 1<<q.Bits - 1 }

// FindParams returns the scale and zero point for x, spec §4.3 find_params
// applied to one row:
//
//	xmin = min(min(x), 0), xmax = max(max(x), 0)
//	sym: xmax = max(|xmin|, xmax); xmin = -xmax only where xmin < 0
//	xmin == xmax == 0: (xmin, xmax) = (-1, +1)
//	scale = (xmax-xmin)/maxq; zero = 2^(bits-1) (sym) or round(-xmin/scale)
//
// The scale is rounded to fp16 or fp32 (see Fp16Scales) before the zero is
// derived from it, so the pair is exactly what gets stored. It is never 0: a
// scale below the smallest positive value of the storage type is raised to
// it. It may be +Inf when x holds values beyond the fp16 range; callers check.
// With MSE the shrink grid is searched as REF does and the candidate with
// the smallest Σ|Dequant(x)-x|^Norm wins (first one on ties).
func (q Quantizer) FindParams(x []float64) (scale float64, zero int) {
	xmin, xmax := 0.0, 0.0
	for _, v := range x {
		xmin = min(xmin, v)
		xmax = max(xmax, v)
	}
	if q.Sym {
		xmax = max(-xmin, xmax)
		if xmin < 0 {
			xmin = -xmax
		}
	}
	if xmin == 0 && xmax == 0 {
		xmin, xmax = -1, 1
	}
	scale, zero = q.fromRange(xmin, xmax)
	if !q.MSE {
		return scale, zero
	}
	best := math.Inf(1)
	steps := int(q.MaxShrink * float64(q.Grid))
	for i := range steps {
		p := 1 - float64(i)/float64(q.Grid)
		s, z := q.fromRange(p*xmin, p*xmax)
		var e float64
		for _, v := range x {
			e += math.Pow(math.Abs(q.Dequant(v, s, z)-v), q.Norm)
		}
		if e < best {
			best, scale, zero = e, s, z
		}
	}
	return scale, zero
}

// fromRange turns a (shrunk) range into stored scale and zero.
func (q Quantizer) fromRange(xmin, xmax float64) (float64, int) {
	maxq := q.MaxQ()
	s := q.RoundScale((xmax - xmin) / float64(maxq))
	if q.Sym {
		return s, (maxq + 1) / 2
	}
	z := math.RoundToEven(-xmin / s)
	// -xmin/s ≤ maxq in exact arithmetic; a scale rounded down to fp16 can
	// push it a hair past, and NaN (s = +Inf, xmin = 0) must not escape.
	if !(z >= 0) {
		z = 0
	}
	return s, int(min(z, float64(maxq)))
}

// RoundScale rounds s to the storage precision of scales: the nearest fp16
// (round half to even) with Fp16Scales, else the nearest fp32. Positive
// values too small for the type become its smallest positive value, so a
// scale is never 0; values beyond the fp16 range become +Inf.
func (q Quantizer) RoundScale(s float64) float64 {
	if q.Fp16Scales {
		r := RoundFP16(s)
		if r == 0 && s > 0 {
			return fp16Tiny
		}
		return r
	}
	r := float64(float32(s))
	if r == 0 && s > 0 {
		return math.SmallestNonzeroFloat32
	}
	return r
}

// Code returns clamp(round(x/scale) + zero, 0, maxq), with round half to even
// as torch.round (spec §4.3 quantize).
func (q Quantizer) Code(x, scale float64, zero int) int {
	c := math.RoundToEven(x/scale) + float64(zero)
	return int(min(max(c, 0), float64(q.MaxQ())))
}

// Dequant returns scale*(Code(x)-zero), the value the quantized model uses.
func (q Quantizer) Dequant(x, scale float64, zero int) float64 {
	return scale * float64(q.Code(x, scale, zero)-zero)
}

const (
	fp16Tiny = 0x1p-24 // smallest positive fp16 (subnormal)
	fp16Max  = 65504   // largest finite fp16
)

// RoundFP16 rounds x to the nearest IEEE binary16 value (ties to even) and
// returns it as float64; results beyond ±65504 after rounding are ±Inf and
// NaN stays NaN. Rounding is done once, from float64, so there is no double
// rounding through float32.
func RoundFP16(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) || x == 0 {
		return x
	}
	a := math.Abs(x)
	// ulp of fp16 at a: 2^(e-11) for a in [2^(e-1), 2^e), e ≥ -13; subnormals
	// (a < 2^-14) share the ulp 2^-24.
	_, e := math.Frexp(a)
	ulp := fp16Tiny
	if e-11 > -24 {
		ulp = math.Ldexp(1, e-11)
	}
	r := math.RoundToEven(a/ulp) * ulp
	if r > fp16Max {
		r = math.Inf(1)
	}
	return math.Copysign(r, x)
}
