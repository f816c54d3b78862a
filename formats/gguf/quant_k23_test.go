package gguf

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// The hand blocks below share one quant pattern: value p = 128h+32i+l
// (half h, quarter i, lane l) has q(p) = (l+i+4h) mod 8 in Q3_K and its
// low 2 bits (l+i) mod 4 in Q2_K. The low bits of the four quarters of a
// lane, at shifts 0, 2, 4, 6 of qs[32h+l], are then by l mod 4:
//
//	l%4 = 0: 0 1 2 3 → 0b11_10_01_00 = 0xE4
//	l%4 = 1: 1 2 3 0 → 0b00_11_10_01 = 0x39
//	l%4 = 2: 2 3 0 1 → 0b01_00_11_10 = 0x4E
//	l%4 = 3: 3 0 1 2 → 0b10_01_00_11 = 0x93
//
// and Q3_K's third bit of value p, bit 4h+i of hmask[l], is set where
// (l+b) mod 8 >= 4 for b = 4h+i, by l mod 8:
//
//	l%8 = 0: bits 4-7 = 0xF0    l%8 = 4: bits 0-3    = 0x0F
//	l%8 = 1: bits 3-6 = 0x78    l%8 = 5: bits 0-2, 7 = 0x87
//	l%8 = 2: bits 2-5 = 0x3C    l%8 = 6: bits 0-1, 6-7 = 0xC3
//	l%8 = 3: bits 1-4 = 0x1E    l%8 = 7: bits 0, 5-7 = 0xE1
var (
	handLow2  = [4]byte{0xE4, 0x39, 0x4E, 0x93}
	handHmask = [8]byte{0xF0, 0x78, 0x3C, 0x1E, 0x0F, 0x87, 0xC3, 0xE1}
)

// handQ2K is a Q2_K block built byte by byte (ggml-common.h block_q2_K:
// scales[16], qs[64], d, dmin): sub-block scales sc_j = 15 − j (j < 15),
// sc_15 = 7, mins m_j = j, so scales[j] = sc_j | m_j<<4; qs[32h+l] =
// handLow2[l%4]; d = 0.25 (fp16 0x3400), dmin = 0.5 (fp16 0x3800).
func handQ2K() (blk []byte, sc, m [16]float32) {
	for j := range 16 {
		sc[j], m[j] = float32(15-j), float32(j)
	}
	sc[15] = 7
	blk = []byte{0x0F, 0x1E, 0x2D, 0x3C, 0x4B, 0x5A, 0x69, 0x78, 0x87, 0x96, 0xA5, 0xB4, 0xC3, 0xD2, 0xE1, 0xF7}
	for k := range 64 {
		blk = append(blk, handLow2[k%4])
	}
	return append(blk, 0x00, 0x34, 0x00, 0x38), sc, m
}

// handQ3K is a Q3_K block built byte by byte (ggml-common.h block_q3_K:
// hmask[32], qs[64], scales[12], d): hmask[l] = handHmask[l%8], qs as
// handQ2K's, d = 0.25 (fp16 0x3400) and the 6-bit scales
//
//	s_j = 0 63 5 60 10 55 15 50 | 20 45 25 40 30 35 1 62
//
// packed by hand: scales[k] (k < 8) = (s_k & 15) | (s_{k+8} & 15)<<4,
// scales[8+k] (k < 4) = the high 2 bits s>>4 of s_k, s_{k+4}, s_{k+8},
// s_{k+12} at bits 0, 2, 4, 6:
//
//	scales[0..7]:  0|4<<4=0x40 15|13<<4=0xDF 5|9<<4=0x95 12|8<<4=0x8C
//	               10|14<<4=0xEA 7|3<<4=0x37 15|1<<4=0x1F 2|14<<4=0xE2
//	scales[8..11]: 0|0<<2|1<<4|1<<6=0x50  3|3<<2|2<<4|2<<6=0xAF
//	               0|0<<2|1<<4|0<<6=0x10  3|3<<2|2<<4|3<<6=0xEF
func handQ3K() (blk []byte, s [16]int) {
	s = [16]int{0, 63, 5, 60, 10, 55, 15, 50, 20, 45, 25, 40, 30, 35, 1, 62}
	for l := range 32 {
		blk = append(blk, handHmask[l%8])
	}
	for k := range 64 {
		blk = append(blk, handLow2[k%4])
	}
	blk = append(blk, 0x40, 0xDF, 0x95, 0x8C, 0xEA, 0x37, 0x1F, 0xE2, 0x50, 0xAF, 0x10, 0xEF)
	return append(blk, 0x00, 0x34), s
}

// handQ is the quant pattern of the hand blocks (3 bits; Q2_K takes the
// low 2).
func handQ(p int) int {
	h, i, l := p/128, p%128/32, p%32
	return (l + i + 4*h) % 8
}

func TestDequantizeQ2_KHand(t *testing.T) {
	blk, sc, m := handQ2K()
	if len(blk) != BlockBytesQ2_K {
		t.Fatalf("hand block has %d bytes, want %d", len(blk), BlockBytesQ2_K)
	}
	got := make([]float32, 256)
	DequantizeQ2_K(got, blk)
	// Worked by hand: x = d·sc_j·q − dmin·m_j, j = p/16, q from bits 2i of
	// qs[32h+l].
	for _, s := range []struct {
		pos  int
		want float32
	}{
		{0, 0.25*15*0 - 0},       // qs[0] = 0xE4 bits 0-1 = 0
		{5, 0.25*15*1 - 0},       // qs[5] = 0x39 bits 0-1 = 1
		{18, 0.25*14*2 - 0.5},    // sub-block 1, qs[18] = 0x4E bits 0-1 = 2
		{35, 0.25*13*0 - 1},      // i 1, l 3: sub-block 2, qs[3] = 0x93 bits 2-3 = 0
		{70, 0.25*11*0 - 2},      // i 2, l 6: sub-block 4, qs[6] = 0x4E bits 4-5 = 0
		{127, 0.25*8*2 - 3.5},    // i 3, l 31: sub-block 7, qs[31] = 0x93 bits 6-7 = 2
		{128, 0.25*7*0 - 4},      // h 1: sub-block 8, qs[32] = 0xE4 bits 0-1 = 0
		{201, 0.25*3*3 - 6},      // i 2, l 9: sub-block 12, qs[41] = 0x39 bits 4-5 = 3
		{255, 0.25*7*2 - 0.5*15}, // i 3, l 31: sub-block 15, qs[63] = 0x93 bits 6-7 = 2
	} {
		if got[s.pos] != s.want {
			t.Errorf("value %d = %g, want %g", s.pos, got[s.pos], s.want)
		}
	}
	for p := range 256 {
		j := p / 16
		if want := 0.25*sc[j]*float32(handQ(p)%4) - 0.5*m[j]; got[p] != want {
			t.Fatalf("value %d = %g, want %g (sub-block %d, q %d)", p, got[p], want, j, handQ(p)%4)
		}
	}
}

func TestDequantizeQ3_KHand(t *testing.T) {
	blk, s := handQ3K()
	if len(blk) != BlockBytesQ3_K {
		t.Fatalf("hand block has %d bytes, want %d", len(blk), BlockBytesQ3_K)
	}
	got := make([]float32, 256)
	DequantizeQ3_K(got, blk)
	// Worked by hand: x = d·(s_j − 32)·(q − 4), j = p/16, q = low bits
	// (bits 2i of qs[32h+l]) + 4·(bit 4h+i of hmask[l]).
	for _, c := range []struct {
		pos  int
		want float32
	}{
		{0, 0.25 * -32 * (0 + 0 - 4)},   // qs[0] = 0xE4 bits 0-1 = 0, hmask[0] = 0xF0 bit 0 = 0
		{4, 0.25 * -32 * (0 + 4 - 4)},   // qs[4] = 0xE4 bits 0-1 = 0, hmask[4] = 0x0F bit 0 = 1
		{21, 0.25 * 31 * (1 + 4 - 4)},   // sub-block 1, qs[21] = 0x39 bits 0-1 = 1, hmask[21] = 0x87 bit 0 = 1
		{35, 0.25 * -27 * (0 + 4 - 4)},  // i 1, l 3: sub-block 2, qs[3] = 0x93 bits 2-3 = 0, hmask[3] = 0x1E bit 1 = 1
		{98, 0.25 * -17 * (1 + 4 - 4)},  // i 3, l 2: sub-block 6, qs[2] = 0x4E bits 6-7 = 1, hmask[2] = 0x3C bit 3 = 1
		{119, 0.25 * 18 * (2 + 0 - 4)},  // i 3, l 23: sub-block 7, qs[23] = 0x93 bits 6-7 = 2, hmask[23] = 0xE1 bit 3 = 0
		{129, 0.25 * -12 * (1 + 4 - 4)}, // h 1, l 1: sub-block 8, qs[33] = 0x39 bits 0-1 = 1, hmask[1] = 0x78 bit 4 = 1
		{211, 0.25 * 3 * (1 + 0 - 4)},   // i 2, l 19: sub-block 13, qs[51] = 0x93 bits 4-5 = 1, hmask[19] = 0x1E bit 6 = 0
		{230, 0.25 * -31 * (1 + 4 - 4)}, // i 3, l 6: sub-block 14, qs[38] = 0x4E bits 6-7 = 1, hmask[6] = 0xC3 bit 7 = 1
		{255, 0.25 * 30 * (2 + 4 - 4)},  // i 3, l 31: sub-block 15, qs[63] = 0x93 bits 6-7 = 2, hmask[31] = 0xE1 bit 7 = 1
	} {
		if got[c.pos] != c.want {
			t.Errorf("value %d = %g, want %g", c.pos, got[c.pos], c.want)
		}
	}
	for p := range 256 {
		j := p / 16
		if want := 0.25 * float32(s[j]-32) * float32(handQ(p)-4); got[p] != want {
			t.Fatalf("value %d = %g, want %g (sub-block %d, q %d)", p, got[p], want, j, handQ(p))
		}
	}
}

// TestQuantizeQ2_KHand: values on handQ2K's grid (x = 0.25·sc_j·q −
// 0.5·m_j, largest scale 15 and largest min 15) quantize to handQ2K's
// bytes, with and without importances: every sub-block's search finds
// its exact grid, d = 3.75/15 and dmin = 7.5/15 are exact in fp16, and the
// 4-bit scales and mins come out as sc_j and m_j.
func TestQuantizeQ2_KHand(t *testing.T) {
	want, sc, m := handQ2K()
	x := make([]float32, 256)
	for p := range x {
		x[p] = 0.25*sc[p/16]*float32(handQ(p)%4) - 0.5*m[p/16]
	}
	got := make([]byte, BlockBytesQ2_K)
	QuantizeQ2_K(got, x)
	if !bytes.Equal(got, want) {
		t.Errorf("block\n got % x\nwant % x", got, want)
	}
	qw := make([]float32, 256)
	for i := range qw {
		qw[i] = float32(1 + i%5)
	}
	if got, err := EncodeWeighted(TypeQ2_K, x, 256, qw); err != nil || !bytes.Equal(got, want) {
		t.Errorf("with importances: block\n got % x\nwant % x (err %v)", got, want, err)
	}
}

// TestQuantizeQ3_KHand: values on handQ3K's grid (x = 0.25·(s_j −
// 32)·(q − 4), sub-block 0 the largest with s_0 − 32 = −32) quantize to
// handQ3K's bytes, with and without importances: each sub-block's levels
// fit exactly at 1/scale = −4/max, d = −(−8)/32 = 0.25, and s_j =
// round(scale_j/d) + 32.
func TestQuantizeQ3_KHand(t *testing.T) {
	want, s := handQ3K()
	x := make([]float32, 256)
	for p := range x {
		x[p] = 0.25 * float32(s[p/16]-32) * float32(handQ(p)-4)
	}
	got := make([]byte, BlockBytesQ3_K)
	QuantizeQ3_K(got, x)
	if !bytes.Equal(got, want) {
		t.Errorf("block\n got % x\nwant % x", got, want)
	}
	qw := make([]float32, 256)
	for i := range qw {
		qw[i] = float32(1 + i%5)
	}
	if got, err := EncodeWeighted(TypeQ3_K, x, 256, qw); err != nil || !bytes.Equal(got, want) {
		t.Errorf("with importances: block\n got % x\nwant % x (err %v)", got, want, err)
	}
}

// k23Grid returns, for value i of a Q2_K or Q3_K block, its sub-block's
// step and the range of its decoded grid.
func k23Grid(typ TensorType, blk []byte, i int) (step, lo, hi float64) {
	if typ == TypeQ2_K {
		d, dmin := float64(f16(blk[80:])), float64(f16(blk[82:]))
		step, lo = d*float64(blk[i/16]&15), -dmin*float64(blk[i/16]>>4)
		return step, lo, lo + 3*step
	}
	s := d3(blk, i/16)
	return math.Abs(s), math.Min(-4*s, 3*s), math.Max(-4*s, 3*s)
}

// d3 is Q3_K sub-block j's decoded scale d·(s_j − 32), its 6-bit s_j read
// as ggml-common.h lays it out (independently of scaleK3).
func d3(blk []byte, j int) float64 {
	sc := blk[96:108]
	var low byte
	if j < 8 {
		low = sc[j] & 15
	} else {
		low = sc[j-8] >> 4
	}
	high := sc[8+j%4] >> (2 * (j / 4)) & 3
	return float64(f16(blk[108:])) * float64(int(low|high<<4)-32)
}

// TestK23RoundTrip: Q2_K and Q3_K reproduce Gaussian weights with the
// error their levels allow, each value within half a step of its decoded
// grid (inside the grid's range), with and without importances; Q2_K,
// Q3_K, Q4_K in order of falling error.
func TestK23RoundTrip(t *testing.T) {
	const cols = 1024
	x := gaussian(2, 256*256, 0.02)
	qw := make([]float32, cols)
	for j := range qw {
		qw[j] = float32(1 + j%3)
	}
	errs := map[string]float64{}
	for _, typ := range []TensorType{TypeQ2_K, TypeQ3_K, TypeQ4_K} {
		for _, weighted := range []bool{false, true} {
			q, y := roundTrip(t, typ, x, map[bool][]float32{true: qw}[weighted])
			name := typ.String() + map[bool]string{true: " weighted"}[weighted]
			errs[name] = nmse(y, x)
			if typ == TypeQ4_K {
				break
			}
			bb := typ.BlockBytes()
			for b := 0; b < len(q)/bb; b++ {
				for i := range 256 {
					step, lo, hi := k23Grid(typ, q[b*bb:(b+1)*bb], i)
					v := float64(x[256*b+i])
					dist := math.Max(0, math.Max(lo-v, v-hi))
					if e := math.Abs(float64(y[256*b+i]) - v); e > dist+step/2*(1+1e-5)+1e-9 {
						t.Fatalf("%s block %d value %d: error %g > half step %g + outside distance %g", name, b, i, e, step/2, dist)
					}
				}
			}
		}
	}
	t.Logf("NMSE Q2_K %.3g (weighted %.3g), Q3_K %.3g (weighted %.3g), Q4_K %.3g",
		errs["Q2_K"], errs["Q2_K weighted"], errs["Q3_K"], errs["Q3_K weighted"], errs["Q4_K"])
	// Measured (seed 2): Q2_K 0.0944 (weighted 0.0765), Q3_K 0.0265
	// (weighted 0.0250), Q4_K 5.83e-3. Uniform rounding over a Gaussian
	// sub-block of 16 values (range ≈ 3.5σ) in 4 levels would give NMSE ≈
	// (3.5/3)²/12 ≈ 0.11, in 8 levels with the largest magnitude (≈ 1.8σ)
	// at −4 ≈ (1.8/4)²/12 ≈ 0.017 before the 6-bit scales and the fit's
	// pull towards large values. Bounds: about 2×.
	for name, bound := range map[string]float64{"Q2_K": 0.2, "Q2_K weighted": 0.16, "Q3_K": 0.055, "Q3_K weighted": 0.05} {
		if errs[name] > bound {
			t.Errorf("%s NMSE %.3g, want < %g", name, errs[name], bound)
		}
	}
	if !(errs["Q4_K"] < errs["Q3_K"]/2 && errs["Q3_K"] < errs["Q2_K"]/2) {
		t.Errorf("NMSE does not fall with the bits: Q2_K %.3g, Q3_K %.3g, Q4_K %.3g", errs["Q2_K"], errs["Q3_K"], errs["Q4_K"])
	}
}

// TestK23SpecialBlocks: zeros, values below GROUP_MAX_EPS, constants and
// a lone outlier quantize, with and without importances, to blocks that
// decode to finite values near the input; zeros to zero bytes.
func TestK23SpecialBlocks(t *testing.T) {
	tests := []struct {
		name string
		x    func(i int) float32
		tol  float32 // bound on |decoded − x|, for both types
	}{
		{"zeros", func(int) float32 { return 0 }, 0},
		{"tiny", func(i int) float32 { return 1e-18 * float32(i%5-2) }, 1e-17},
		{"constant positive", func(int) float32 { return 0.75 }, 0.75 / 30},
		{"constant negative", func(int) float32 { return -0.3 }, 0.3 / 30},
		{"one outlier", func(i int) float32 {
			if i == 77 {
				return 5
			}
			return 0.01 * float32(i%7-3)
		}, 5.0 / 6},
	}
	qw := make([]float32, 256)
	for i := range qw {
		qw[i] = 1
	}
	for _, tt := range tests {
		for _, typ := range []TensorType{TypeQ2_K, TypeQ3_K} {
			for _, weighted := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/weighted=%v", tt.name, typ, weighted), func(t *testing.T) {
					x := make([]float32, 256)
					for i := range x {
						x[i] = tt.x(i)
					}
					q, y := roundTrip(t, typ, x, map[bool][]float32{true: qw}[weighted])
					if tt.name == "zeros" && !bytes.Equal(q, make([]byte, len(q))) {
						t.Errorf("zeros give % x, want zero bytes", q)
					}
					for i := range x {
						if math.IsNaN(float64(y[i])) || math.IsInf(float64(y[i]), 0) || abs32(y[i]-x[i]) > tt.tol {
							t.Fatalf("value %d: got %g, want %g ± %g", i, y[i], x[i], tt.tol)
						}
					}
				})
			}
		}
	}
}

// TestEncodeParallelK23: splitting across goroutines gives the bytes of
// one sequential pass, with and without importances.
func TestEncodeParallelK23(t *testing.T) {
	const cols = 768
	x := gaussian(3, cols*200, 1)
	qw := make([]float32, cols)
	for j := range qw {
		qw[j] = float32(1 + j%11)
	}
	for _, typ := range []TensorType{TypeQ2_K, TypeQ3_K} {
		want := make([]byte, len(x)/QK_K*typ.BlockBytes())
		if typ == TypeQ2_K {
			QuantizeQ2_K(want, x)
		} else {
			QuantizeQ3_K(want, x)
		}
		prev := runtime.GOMAXPROCS(1)
		wantW, err := EncodeWeighted(typ, x, cols, qw)
		runtime.GOMAXPROCS(4)
		got, err2 := Encode(typ, x)
		gotW, err3 := EncodeWeighted(typ, x, cols, qw)
		runtime.GOMAXPROCS(prev)
		if err != nil || err2 != nil || err3 != nil {
			t.Fatal(err, err2, err3)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: parallel Encode differs from one sequential pass", typ)
		}
		if !bytes.Equal(gotW, wantW) {
			t.Errorf("%s: EncodeWeighted on 4 threads differs from 1", typ)
		}
	}
}

// k23GoldenInputs are TestK23MatchesGGML's inputs, rows of 1024: Gaussian
// weights, then rows whose four super-blocks are ordinary (a sine with a
// spike), all zero, below GROUP_MAX_EPS and constant; with importances
// over six decades, then importances of 1..7 whose first super-block is
// zero.
func k23GoldenInputs() (x [2][]float32, qw [2][]float32) {
	const cols = 1024
	x[0] = gaussian(11, 8*cols, 0.02)
	x[1] = make([]float32, 2*cols)
	for i := range x[1] {
		v := float32(math.Sin(float64(i)*0.7)) * 0.05
		switch i % cols / 256 {
		case 1:
			v = 0
		case 2:
			v *= 1e-18
		case 3:
			v = 0.75
		}
		if i%cols == 100 {
			v = 5
		}
		x[1][i] = v
	}
	r := rand.New(rand.NewPCG(11, 12))
	qw[0], qw[1] = make([]float32, cols), make([]float32, cols)
	for j := range cols {
		qw[0][j] = float32(math.Pow(10, 6*r.Float64()-3))
		if j >= 256 {
			qw[1][j] = float32(1 + j%7)
		}
	}
	return x, qw
}

// TestK23MatchesGGML: Encode, EncodeWeighted and Decode give the bytes of
// ggml's quantize_q2_K / quantize_q3_K (the _ref quantizers without
// importances, the _impl ones with) and the values of its
// dequantize_row_q2_K / dequantize_row_q3_K on k23GoldenInputs: the first
// 16 hex digits of the SHA-256 of what ggml-quants.c gave, from the
// llama.cpp that node-llama-cpp 3.21.1 bundles (testdata/js, its
// llama/gitRelease.bundle, tag v0.4.0), built with gcc -O2
// -ffp-contract=off -DNDEBUG and called on the rows of 1024 with
// quant_weights NULL or the importances. (That llama.cpp's
// make_qkx3_quants rounds its candidates' levels as make_qkx2_quants does,
// and built with asserts aborts in nearest_int on some sparse rows with
// zero importances; later ones (01243c5) round them guarded, as this
// package does, TestQ2_KWeightedSearchIsQKX3. Both give these hashes.)
func TestK23MatchesGGML(t *testing.T) {
	x, qw := k23GoldenInputs()
	// want[type][input][importances: none, qw[0], qw[1]] = bytes, values.
	want := map[TensorType][2][3][2]string{
		TypeQ2_K: {
			{{"8855d437f636d1e9", "3c2a7e2ba3a191eb"}, {"7652385e14e662f5", "261ef8de642c300e"}, {"1157fe6dcfc53806", "b9adea17ca60e72c"}},
			{{"3b6f7607a087c6b3", "fcf0eca1574ca064"}, {"2bc70ad4ec5ade4d", "bae27df26fb1ee3c"}, {"659bf8b478370271", "9fff19b14b6b3841"}},
		},
		TypeQ3_K: {
			{{"0fbafcbc26d59175", "6c90f3a32f1201b7"}, {"58bfbce8aea4ce09", "c9c3559658bfb81c"}, {"f94dd6eb13b32bd3", "f052ee3256735caa"}},
			{{"b8a5436a89f4540d", "8d188cfc59326e79"}, {"752af07d8e4d5664", "bc839dee0f811533"}, {"4c606330d4d19907", "188d1e3e6168698e"}},
		},
	}
	for _, typ := range []TensorType{TypeQ2_K, TypeQ3_K} {
		for i := range x {
			for k, w := range [][]float32{nil, qw[0], qw[1]} {
				q, y := roundTrip(t, typ, x[i], w)
				got := [2]string{sha16(q), sha16(y)}
				if got != want[typ][i][k] {
					t.Errorf("%s input %d importances %d: sha256 of bytes, values %v, ggml's %v", typ, i, k, got, want[typ][i][k])
				}
			}
		}
	}
}

// TestQ2_KWeightedSearchIsQKX3: quantize_row_q2_K_impl searches each
// sub-block with make_qkx3_quants, whose candidates' levels are 0 for a
// non-positive scaled value and nmax beyond nmax; make_qkx2_quants'
// nearest_int, then clamp, differs once a candidate min has moved next to
// the maximum and the scaled values leave nearest_int's range. Sub-block
// 0 here: two weighted values a few ulps apart at the top, fourteen
// unweighted ones far below. The search's fit to the two puts the min
// there, the next candidates scale the others by about 1e8, and the
// sub-block's scale (3e-8) rounds to a 4-bit 0, so its levels are the
// search's: 0 for the unweighted values in ggml (make_qkx2_quants'
// rounding gave them 3). Want: the block ggml-quants.c (llama.cpp
// 01243c5, whose make_qkx3_quants has that rounding) gives, built with gcc
// -O2 -ffp-contract=off -DNDEBUG.
func TestQ2_KWeightedSearchIsQKX3(t *testing.T) {
	x := gaussian(9, 256, 0.5)
	qw := make([]float32, 256)
	for i := range qw {
		qw[i] = 1
	}
	for i := range 16 {
		x[i], qw[i] = -2.8246386, 0
	}
	x[3], qw[3] = -0.46162128, 1
	x[9], qw[9] = -0.46162143, 1
	got, err := EncodeWeighted(TypeQ2_K, x, 256, qw)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hex.DecodeString("708587aaffdc6bda9fadcdcf9a58dcab6458b8732c" +
		"64a0102428948c180ce4047ae6c5b03a2f4f5824ab" +
		"80eb82af9b27599699d924d64d84c57b0286e015a5" +
		"96965256a149a5c435c76545b949669d01b429042c")
	if got[0]&0xF != 0 {
		t.Fatalf("sub-block 0's scale is %d, want 0 (the test needs the search's levels kept)", got[0]&0xF)
	}
	for p := range 16 {
		if l, w := lowBitsK23(got[q2kQS:q2kD], p), map[bool]uint8{true: 3}[p == 3]; l != w {
			t.Errorf("value %d: level %d, want %d", p, l, w)
		}
	}
	if !bytes.Equal(got, want) {
		t.Errorf("block\n got % x\nwant % x", got, want)
	}
}

// TestKQuantsNonFiniteMatchGGML: super-blocks holding a NaN or an Inf
// quantize without panicking, to ggml's bytes: ggml finds a sub-block's
// range and the largest scale and min by comparisons, which skip a NaN
// (one that is not the sub-block's first value), where Go's min and max
// return it: a NaN there used to make its sub-block's scale and min NaN,
// stored as whatever nearest_int makes of a NaN (Q2_K: 15 and 15 here),
// and Q4_K's and Q5_K's d and dmin NaN (the first value's NaN too). Want:
// the first 16 hex digits of the SHA-256 of what ggml-quants.c (llama.cpp
// 01243c5, gcc -O2 -ffp-contract=off -DNDEBUG) gives for the six rows of
// 256, without and with importances; and for Q2_K without importances,
// the other values of a NaN's sub-block reproduced with Q2_K's usual
// error.
func TestKQuantsNonFiniteMatchGGML(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	x := gaussian(10, 256*6, 0.02)
	for b, s := range []struct {
		v   float32
		pos int
	}{{nan, 0}, {nan, 5}, {inf, 0}, {inf, 37}, {-inf, 17}, {nan, 200}} {
		x[256*b+s.pos] = s.v
	}
	qw := make([]float32, 256)
	for i := range qw {
		qw[i] = float32(1 + i%5)
	}
	want := map[TensorType][2]string{
		TypeQ2_K: {"4aa795cae6e5cd27", "35d5191f621c9ab5"},
		TypeQ3_K: {"9f02417e4c0e7ef8", "3cfd58909b23191a"},
		TypeQ4_K: {"2a7e0ffec8ac953e", "481890d8bdd1faf7"},
		TypeQ5_K: {"c00bb8fd4e379a4c", "1eaccae6be0b7530"},
	}
	// Encode refuses such rows (ErrNotQuantizable); the block quantizers
	// under it, which it calls on rows it checked, are still ggml's there.
	quantize := func(typ TensorType, w []float32) []byte {
		bb := typ.BlockBytes()
		q := make([]byte, len(x)/QK_K*bb)
		var k kQuantizer
		for r := range len(x) / QK_K {
			xr, y := x[r*QK_K:(r+1)*QK_K], q[r*bb:(r+1)*bb]
			switch {
			case typ == TypeQ2_K && w == nil:
				QuantizeQ2_K(y, xr)
			case typ == TypeQ3_K && w == nil:
				QuantizeQ3_K(y, xr)
			case typ == TypeQ4_K && w == nil:
				QuantizeQ4_K(y, xr)
			case typ == TypeQ5_K && w == nil:
				QuantizeQ5_K(y, xr)
			case typ == TypeQ2_K:
				weightedRowQ2_K(y, xr, w)
			case typ == TypeQ3_K:
				weightedRowQ3_K(y, xr, w)
			case typ == TypeQ4_K:
				k.weightedRowQ4_K(y, xr, w)
			case typ == TypeQ5_K:
				k.weightedRowQ5_K(y, xr, w)
			}
		}
		return q
	}
	for _, typ := range []TensorType{TypeQ2_K, TypeQ3_K, TypeQ4_K, TypeQ5_K} {
		if _, err := Encode(typ, x); !errors.Is(err, ErrNotQuantizable) {
			t.Errorf("Encode %s of NaN and Inf: %v, want ErrNotQuantizable", typ, err)
		}
		for k, w := range [][]float32{nil, qw} {
			q := quantize(typ, w)
			if sum := fmt.Sprintf("%x", sha256.Sum256(q))[:16]; sum != want[typ][k] {
				t.Errorf("%s importances %v: sha256 %s, ggml's %s", typ, w != nil, sum, want[typ][k])
			}
			if typ != TypeQ2_K || w != nil { // with importances a NaN spoils σ², hence the whole block
				continue
			}
			y, err := Decode(typ, q, len(x))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []int{256 + 5, 5*256 + 200} { // the NaNs after a sub-block's first value
				var xs, ys []float32
				for i := p - p%16; i < p-p%16+16; i++ {
					if i != p {
						xs, ys = append(xs, x[i]), append(ys, y[i])
					}
				}
				if e := nmse(ys, xs); e > 0.2 {
					t.Errorf("Q2_K: the values beside the NaN at %d: NMSE %.3g, want < 0.2 (TestK23RoundTrip's bound)", p, e)
				}
			}
		}
	}
}
