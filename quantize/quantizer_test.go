package quantize

import (
	"fmt"
	"math"
	"testing"
)

// Hand-derived find_params/quantize cases (spec §4.3). Scales are powers of
// two where ties are involved so that no float rounding decides them.
func TestQuantizerHand(t *testing.T) {
	tests := []struct {
		name      string
		bits      int
		sym       bool
		x         []float64
		wantScale float64
		wantZero  int
		wantCodes []int
	}{
		// xmax=1.875 → scale 3.75/15=0.25, zero 8; -1.5→-2, 0.5→0, 3.6→4,
		// -7.5→-8, 2.5→2 (ties to even).
		{"sym4", 4, true, []float64{-0.375, 0.125, 0.9, -1.875, 0.625}, 0.25, 8, []int{6, 8, 12, 0, 10}},
		// xmin=-1.25, xmax=2.5: scale 0.25, zero round(5)=5; 1.5→2, 2.5→2, -0.5→-0.
		{"asym4", 4, false, []float64{-1.25, 2.5, 0.375, 0.625, -0.125}, 0.25, 5, []int{0, 15, 7, 7, 5}},
		// -xmin/scale = 2.5 → zero 2 (even); -2.5→-2, 12.5→12.
		{"asym4 zero tie", 4, false, []float64{-0.625, 3.125}, 0.25, 2, []int{0, 14}},
		// no negatives, asym: xmin=0 → zero 0, scale 3.75/15.
		{"asym4 positive", 4, false, []float64{0.25, 1.5, 3.75}, 0.25, 0, []int{1, 6, 15}},
		// maxq 7, zero 4, scale 3.5/7=0.5: -3.5→-4, 1, 2, -0.5→-0, 3.5→4 clamps to 7.
		{"sym3", 3, true, []float64{-1.75, 0.5, 1.0, -0.25, 1.75}, 0.5, 4, []int{0, 5, 6, 4, 7}},
		// asym 3-bit: xmin=-1, xmax=2.5, scale 0.5, zero 2.
		{"asym3", 3, false, []float64{-1, 2.5, 0.75, 0.2}, 0.5, 2, []int{0, 7, 4, 2}},
		// maxq 255, zero 128, scale 2*7.96875/255=0.0625: -127.5→-128, 16, 0.5→0,
		// 127.5→128 clamps, 1.6→2.
		{"sym8", 8, true, []float64{-7.96875, 1.0, 0.03125, 7.96875, 0.1}, 0.0625, 128, []int{0, 144, 128, 255, 130}},
		// maxq 3, zero 2, scale 2*0.75/3=0.5: -1.5→-2, 0.5→0 (tie), 1.5→2 clamps to 3.
		{"sym2", 2, true, []float64{-0.75, 0.25, 0.75, 0.3}, 0.5, 2, []int{0, 2, 3, 3}},
		// The sym quirk: no negatives keeps xmin=0 while zero=8, scale 3.75/15,
		// so positives clip at 7*scale = 1.75.
		{"sym4 no negatives", 4, true, []float64{0.25, 1.5, 3.75}, 0.25, 8, []int{9, 14, 15}},
		// All zero: range (-1, 1); scale 2/15 is inexact, codes are all zero.
		{"sym4 all zero", 4, true, []float64{0, 0, 0}, 2.0 / 15, 8, []int{8, 8, 8}},
	}
	for _, tc := range tests {
		for _, fp16 := range []bool{false, true} {
			name := tc.name + map[bool]string{false: "/fp32", true: "/fp16"}[fp16]
			t.Run(name, func(t *testing.T) {
				q := Quantizer{Bits: tc.bits, Sym: tc.sym, Fp16Scales: fp16}
				scale, zero := q.FindParams(tc.x)
				want := q.RoundScale(tc.wantScale)
				if scale != want {
					t.Errorf("scale = %v, want %v", scale, want)
				}
				if zero != tc.wantZero {
					t.Errorf("zero = %d, want %d", zero, tc.wantZero)
				}
				for i, x := range tc.x {
					if got := q.Code(x, scale, zero); got != tc.wantCodes[i] {
						t.Errorf("code(%v) = %d, want %d", x, got, tc.wantCodes[i])
					}
					if got, want := q.Dequant(x, scale, zero), scale*float64(tc.wantCodes[i]-zero); got != want {
						t.Errorf("dequant(%v) = %v, want %v", x, got, want)
					}
				}
			})
		}
	}
}

// The asymmetric all-zero row: (xmin, xmax) = (-1, 1), zero = round(1/scale)
// with scale = 2/15 rounded. In fp32 (as REF) 1/0.13333334 = 7.4999996 → 7;
// with the fp16 scale 0.13330078, 7.5018 → 8.
func TestQuantizerAsymAllZero(t *testing.T) {
	for _, tc := range []struct {
		fp16 bool
		zero int
	}{{false, 7}, {true, 8}} {
		q := Quantizer{Bits: 4, Fp16Scales: tc.fp16}
		s, z := q.FindParams([]float64{0, 0})
		if z != tc.zero || s != q.RoundScale(2.0/15) {
			t.Errorf("fp16=%v: params (%v, %d), want (%v, %d)", tc.fp16, s, z, q.RoundScale(2.0/15), tc.zero)
		}
		if got := q.Dequant(0, s, z); got != 0 {
			t.Errorf("fp16=%v: dequant(0) = %v, want 0", tc.fp16, got)
		}
	}
}

func TestRoundFP16(t *testing.T) {
	tests := []struct {
		x, want float64
	}{
		{1, 1},
		{1.0 / 3, 0.333251953125},
		{0.1, 0.0999755859375},
		{-0.1, -0.0999755859375},
		{1 + 0x1p-11, 1},             // tie, to even
		{1 + 3*0x1p-11, 1 + 0x1p-9},  // tie, to even (up)
		{65504, 65504},               // max finite
		{65519.99, 65504},            // below the overflow tie
		{65520, math.Inf(1)},         // tie rounds to 2^16: overflow
		{0x1p-24, 0x1p-24},           // smallest subnormal
		{0x1p-25, 0},                 // tie between 0 and 2^-24: to even 0
		{3 * 0x1p-26, 0x1p-24},       // 0.75 ulp
		{0x1p-14 + 0x1p-25, 0x1p-14}, // smallest normal, tie down
		{0x1p-14 + 3*0x1p-25, 0x1p-14 + 0x1p-23},
		{0, 0},
	}
	for _, tc := range tests {
		if got := RoundFP16(tc.x); got != tc.want {
			t.Errorf("RoundFP16(%v) = %v, want %v", tc.x, got, tc.want)
		}
	}
	if !math.IsNaN(RoundFP16(math.NaN())) {
		t.Errorf("RoundFP16(NaN) is not NaN")
	}
}

func TestRoundScaleNeverZero(t *testing.T) {
	for _, fp16 := range []bool{false, true} {
		q := Quantizer{Bits: 4, Sym: true, Fp16Scales: fp16}
		s, _ := q.FindParams([]float64{1e-300, -1e-300})
		if !(s > 0) {
			t.Errorf("fp16=%v: scale %v, want > 0", fp16, s)
		}
	}
	q := Quantizer{Bits: 4, Sym: true, Fp16Scales: true}
	if s, _ := q.FindParams([]float64{1e9}); !math.IsInf(s, 1) {
		t.Errorf("fp16 scale of 1e9 range = %v, want +Inf (caller rejects it)", s)
	}
}

// mseErr is Σ|dequant(x)-x|^norm, independent of FindParams.
func mseErr(q Quantizer, x []float64, s float64, z int) float64 {
	var e float64
	for _, v := range x {
		e += math.Pow(math.Abs(q.Dequant(v, s, z)-v), q.Norm)
	}
	return e
}

// The MSE search tries p = 1 first and keeps strict improvements, so it
// never does worse than min-max; on a row with one outlier it shrinks. Its
// choice must also beat every grid candidate (checked by brute force over
// the same grid).
func TestQuantizerMSE(t *testing.T) {
	x := []float64{4.0}
	for i := range 63 {
		x = append(x, math.Sin(float64(i)))
	}
	lo := 0.0
	for _, v := range x {
		lo = min(lo, v)
	}
	for _, sym := range []bool{true, false} {
		plain := Quantizer{Bits: 4, Sym: sym}
		mse := Quantizer{Bits: 4, Sym: sym, MSE: true, Norm: 2.4, Grid: 100, MaxShrink: 0.8}
		s0, z0 := plain.FindParams(x)
		s1, z1 := mse.FindParams(x)
		e0, e1 := mseErr(mse, x, s0, z0), mseErr(mse, x, s1, z1)
		if !(e1 < e0) {
			t.Errorf("sym=%v: mse error %v, want < min-max error %v", sym, e1, e0)
		}
		if !(s1 < s0) {
			t.Errorf("sym=%v: mse scale %v, want < min-max scale %v", sym, s1, s0)
		}
		for i := range 80 {
			p := 1 - float64(i)/100
			xmin, xmax := lo*p, 4.0*p
			if sym {
				xmin = -xmax
			}
			s := mse.RoundScale((xmax - xmin) / 15)
			z := 8
			if !sym {
				z = int(math.RoundToEven(-xmin / s))
			}
			if e := mseErr(mse, x, s, z); e < e1 {
				t.Errorf("sym=%v: grid point p=%v has error %v < chosen %v", sym, p, e, e1)
			}
		}
	}
}

func ExampleQuantizer() {
	q := Quantizer{Bits: 4, Sym: true, Fp16Scales: true}
	scale, zero := q.FindParams([]float64{-0.375, 0.125, 0.9, -1.875})
	fmt.Println(scale, zero, q.Code(0.9, scale, zero), q.Dequant(0.9, scale, zero))
	// Output: 0.25 8 12 1
}
