package gguf

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// legacyTypes are the types of quant_legacy.go and quant_iq4.go.
var legacyTypes = []TensorType{TypeQ4_0, TypeQ4_1, TypeQ5_0, TypeQ5_1, TypeIQ4_NL, TypeIQ4_XS}

// TestLegacyBlockGeometry: the block constants are ggml-common.h's
// static_asserts (sizeof(block_q4_0) == sizeof(ggml_half) + QK4_0/2, …)
// and the type table's.
func TestLegacyBlockGeometry(t *testing.T) {
	for _, tt := range []struct {
		typ              TensorType
		blockSize, bytes int
		constant         int
	}{
		{TypeQ4_0, 32, 18, BlockBytesQ4_0},
		{TypeQ4_1, 32, 20, BlockBytesQ4_1},
		{TypeQ5_0, 32, 22, BlockBytesQ5_0},
		{TypeQ5_1, 32, 24, BlockBytesQ5_1},
		{TypeIQ4_NL, 32, 18, BlockBytesIQ4_NL},
		{TypeIQ4_XS, 256, 136, BlockBytesIQ4_XS},
	} {
		if tt.typ.BlockSize() != tt.blockSize || tt.typ.BlockBytes() != tt.bytes || tt.constant != tt.bytes || !tt.typ.Convertible() {
			t.Errorf("%s: block of %d values in %d bytes (constant %d), convertible %v; want %d in %d, convertible",
				tt.typ, tt.typ.BlockSize(), tt.typ.BlockBytes(), tt.constant, tt.typ.Convertible(), tt.blockSize, tt.bytes)
		}
	}
}

// handQS is 16 quant bytes qs[j] = j | (15−j)<<4: value j holds level j,
// value j+16 level 15−j.
func handQS() []byte {
	qs := make([]byte, 16)
	for j := range qs {
		qs[j] = byte(j) | byte(15-j)<<4
	}
	return qs
}

// handQH is qh bytes 0F F0 55 AA, the little-endian uint32 0xAA55F00F:
// fifth bits set for values 0–3, 12–15, 16, 18, 20, 22, 25, 27, 29 and 31.
var handQH = []byte{0x0F, 0xF0, 0x55, 0xAA}

func TestDequantizeLegacyHand(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		typ   TensorType
		blk   []byte
		spots map[int]float32
		rule  func(i int) float32 // every value by the layout rule
	}{
		{
			// d = 0.5 (fp16 0x3800): x = 0.5·(q − 8).
			TypeQ4_0, cat([]byte{0x00, 0x38}, handQS()),
			map[int]float32{0: -4, 5: -1.5, 15: 3.5, 16: 3.5, 20: 1.5, 31: -4},
			func(i int) float32 { return 0.5 * float32(level4(i)-8) },
		},
		{
			// d = 0.25 (0x3400), m = −1 (0xBC00): x = 0.25·q − 1.
			TypeQ4_1, cat([]byte{0x00, 0x34, 0x00, 0xBC}, handQS()),
			map[int]float32{0: -1, 7: 0.75, 16: 2.75, 31: -1},
			func(i int) float32 { return 0.25*float32(level4(i)) - 1 },
		},
		{
			// d = 1 (0x3C00), then qh: x = q − 16, q = nibble + 16·bit i of qh.
			TypeQ5_0, cat([]byte{0x00, 0x3C}, handQH, handQS()),
			map[int]float32{
				0:  0,   // nibble 0, bit 0 set: q 16
				3:  3,   // nibble 3, bit 3 set: q 19
				4:  -12, // nibble 4, bit 4 clear: q 4
				13: 13,  // nibble 13, bit 13 set: q 29
				16: 15,  // high nibble of qs[0] = 15, bit 16 (0x55 bit 0) set: q 31
				17: -2,  // high nibble of qs[1] = 14, bit 17 clear: q 14
				25: 6,   // high nibble of qs[9] = 6, bit 25 (0xAA bit 1) set: q 22
				30: -15, // high nibble of qs[14] = 1, bit 30 clear: q 1
				31: 0,   // high nibble of qs[15] = 0, bit 31 set: q 16
			},
			func(i int) float32 { return float32(level5(i) - 16) },
		},
		{
			// d = 0.5 (0x3800), m = 2 (0x4000), then qh: x = 0.5·q + 2.
			TypeQ5_1, cat([]byte{0x00, 0x38, 0x00, 0x40}, handQH, handQS()),
			map[int]float32{0: 10, 4: 4, 16: 17.5, 30: 2.5},
			func(i int) float32 { return 0.5*float32(level5(i)) + 2 },
		},
		{
			// d = 0.5: x = 0.5·kv[q], kv = −127 −104 −83 −65 −49 −35 −22 −10 1 13 25 38 53 69 89 113.
			TypeIQ4_NL, cat([]byte{0x00, 0x38}, handQS()),
			map[int]float32{0: -63.5, 8: 0.5, 15: 56.5, 16: 56.5, 23: 0.5, 24: -5, 31: -63.5},
			func(i int) float32 { return 0.5 * float32(kvaluesIQ4NL[level4(i)]) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.typ.String(), func(t *testing.T) {
			if len(tt.blk) != tt.typ.BlockBytes() {
				t.Fatalf("hand block has %d bytes, want %d", len(tt.blk), tt.typ.BlockBytes())
			}
			got, err := Decode(tt.typ, tt.blk, 32)
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range tt.spots {
				if got[i] != want {
					t.Errorf("value %d = %g, want %g", i, got[i], want)
				}
			}
			for i := range 32 {
				if want := tt.rule(i); got[i] != want {
					t.Fatalf("value %d = %g, want %g", i, got[i], want)
				}
			}
		})
	}
}

// level4 is value i's 4-bit level in handQS.
func level4(i int) int {
	if i < 16 {
		return i
	}
	return 15 - (i - 16)
}

// level5 is value i's 5-bit level in handQS with handQH.
func level5(i int) int {
	return level4(i) | int(binary.LittleEndian.Uint32(handQH)>>i&1)<<4
}

// handIQ4XS is an IQ4_XS block built byte by byte: d = 0.25 (fp16
// 0x3400); 6-bit scales ls = 33 31 34 0 63 32 17 48 (d·(ls − 32) = 0.25,
// −0.25, 0.5, −8, 7.75, 0, −3.75, 4), split as
//
//	scales_l: ls_j & 15 in nibble j%2 of byte j/2:  1|15<<4 = F1, 2|0<<4 = 02, 15|0<<4 = 0F, 1|0<<4 = 01
//	scales_h: ls_j >> 4 in bits 2j, 2j+1:  2, 1, 2, 0, 3, 2, 1, 3 = 0xDB26, bytes 26 DB
//
// and every sub-block's 16 quant bytes handQS.
func handIQ4XS() []byte {
	blk := []byte{0x00, 0x34, 0x26, 0xDB, 0xF1, 0x02, 0x0F, 0x01}
	for range 8 {
		blk = append(blk, handQS()...)
	}
	return blk
}

func TestDequantizeIQ4_XSHand(t *testing.T) {
	blk := handIQ4XS()
	if len(blk) != BlockBytesIQ4_XS {
		t.Fatalf("hand block has %d bytes, want %d", len(blk), BlockBytesIQ4_XS)
	}
	got, err := Decode(TypeIQ4_XS, blk, 256)
	if err != nil {
		t.Fatal(err)
	}
	// Worked by hand: x = d·(ls_j − 32)·kv[q].
	for _, s := range []struct {
		pos  int
		want float32
	}{
		{0, 0.25 * -127},   // sub-block 0 (ls 33), q 0
		{16, 0.25 * 113},   // high nibble of qs[0]: q 15
		{37, -0.25 * -35},  // sub-block 1 (ls 31), q 5
		{99, -8 * -65},     // sub-block 3 (ls 0), q 3
		{146, 7.75 * 69},   // sub-block 4 (ls 63), high nibble of qs[2]: q 13
		{160, 0},           // sub-block 5 (ls 32)
		{199, -3.75 * -10}, // sub-block 6 (ls 17), q 7
		{232, 4 * 1},       // sub-block 7 (ls 48), q 8
		{255, 4 * -127},    // high nibble of qs[15]: q 0
	} {
		if got[s.pos] != s.want {
			t.Errorf("value %d = %g, want %g", s.pos, got[s.pos], s.want)
		}
	}
	scale := []float32{0.25, -0.25, 0.5, -8, 7.75, 0, -3.75, 4}
	for i := range 256 {
		if want := scale[i/32] * float32(kvaluesIQ4NL[level4(i%32)]); got[i] != want {
			t.Fatalf("value %d = %g, want %g", i, got[i], want)
		}
	}
}

// TestQuantizeLegacyHand: blocks whose scale comes out exact, quantized by
// hand following ggml's reference quantizers.
func TestQuantizeLegacyHand(t *testing.T) {
	ramp := func(f func(i int) float32) []float32 {
		x := make([]float32, 32)
		for i := range x {
			x[i] = f(i)
		}
		return x
	}
	same := func(b byte) []byte { return bytes.Repeat([]byte{b}, 1) }
	diag := make([]byte, 16) // qs[j] = j | j<<4: values j and j+16 at level j (mod 16)
	for j := range diag {
		diag[j] = byte(j) * 0x11
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	// Q4_0 on x = i − 16: max −16, d = −16/−8 = 2 (fp16 0x4000), q =
	// ⌊x/2 + 8.5⌋: 0 1 1 2 2 … 15 15 and 8 9 9 … 15 15 15 (16 capped).
	q4Ramp := []byte{0x80, 0x91, 0x91, 0xA2, 0xA2, 0xB3, 0xB3, 0xC4, 0xC4, 0xD5, 0xD5, 0xE6, 0xE6, 0xF7, 0xF7, 0xF8}
	tests := []struct {
		name string
		typ  TensorType
		x    []float32
		want []byte
	}{
		{"Q4_0 ramp", TypeQ4_0, ramp(func(i int) float32 { return float32(i - 16) }), cat([]byte{0x00, 0x40}, q4Ramp)},
		// Negated: max +16, d = −2 (0xC000), the same levels.
		{"Q4_0 negated ramp", TypeQ4_0, ramp(func(i int) float32 { return float32(16 - i) }), cat([]byte{0x00, 0xC0}, q4Ramp)},
		// x = (i mod 16)/2 − 1: m = −1 (0xBC00), d = 7.5/15 = 0.5
		// (0x3800), q = ⌊(x + 1)·2 + 0.5⌋ = i mod 16; but x[4] = 1.25
		// gives 4.5 + 0.5: level 5 (ties round up), qs[4] = 5 | 4<<4.
		{"Q4_1", TypeQ4_1, ramp(func(i int) float32 {
			if i == 4 {
				return 1.25
			}
			return float32(i%16)/2 - 1
		}), cat([]byte{0x00, 0x38, 0x00, 0xBC}, diag[:4], same(0x45), diag[5:])},
		// x = i − 16, but x[1] = −14.5: d = −16/−16 = 1 (0x3C00), q =
		// ⌊x + 16.5⌋ = i (x[1]: 2), fifth bits of values 16–31 (qh
		// 00 00 FF FF), qs[1] = 2 | 1<<4.
		{"Q5_0", TypeQ5_0, ramp(func(i int) float32 {
			if i == 1 {
				return -14.5
			}
			return float32(i - 16)
		}), cat([]byte{0x00, 0x3C, 0x00, 0x00, 0xFF, 0xFF}, diag[:1], same(0x12), diag[2:])},
		// x = i/4 + 0.5: m = 0.5 (0x3800), d = 7.75/31 = 0.25 (0x3400),
		// q = i.
		{"Q5_1", TypeQ5_1, ramp(func(i int) float32 { return float32(i)/4 + 0.5 }),
			cat([]byte{0x00, 0x34, 0x00, 0x38, 0x00, 0x00, 0xFF, 0xFF}, diag)},
		// x = kv[i mod 16]/2: the first guess d = −max/−127 = −0.5 misses
		// the codebook, the search's (0 − 127)/max = 2 hits it exactly:
		// d = 0.5 (0x3800), q = i mod 16.
		{"IQ4_NL", TypeIQ4_NL, ramp(func(i int) float32 { return float32(kvaluesIQ4NL[i%16]) / 2 }), cat([]byte{0x00, 0x38}, diag)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Encode(tt.typ, tt.x)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("block\n got % x\nwant % x", got, tt.want)
			}
		})
	}
}

// TestQuantizeIQ4_XSHand: sub-block j of x = s_j·kv[i mod 16] with s = 1
// −0.5 0.25 2 −1 0.75 1.5 −2. Each sub-block's search finds s_j exactly;
// the largest is 2 (sub-block 3), so d = −2/32 = −0.0625 (fp16 0xAC00) and
// the scales quantize to l = s/d = −16 8 −4 −32 16 −12 −24 32, the last
// capped at 31: ls = l + 32 = 16 40 28 0 48 20 8 63, split as
//
//	scales_l: 0|8<<4 = 80, 12|0<<4 = 0C, 0|4<<4 = 40, 8|15<<4 = F8
//	scales_h: 1, 2, 1, 0, 3, 1, 0, 3 in bits 2j, 2j+1 = 0xC719, bytes 19 C7
//
// The values keep their codebook entries (the capped sub-block's are
// x/(−0.0625·31) ≈ 1.03·kv, still nearest kv): qs[k] = k | k<<4.
func TestQuantizeIQ4_XSHand(t *testing.T) {
	s := []float32{1, -0.5, 0.25, 2, -1, 0.75, 1.5, -2}
	x := make([]float32, 256)
	for i := range x {
		x[i] = s[i/32] * float32(kvaluesIQ4NL[i%16])
	}
	want := []byte{0x00, 0xAC, 0x19, 0xC7, 0x80, 0x0C, 0x40, 0xF8}
	for range 8 {
		for k := range 16 {
			want = append(want, byte(k)*0x11)
		}
	}
	got, err := Encode(TypeIQ4_XS, x)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("block\n got % x\nwant % x", got, want)
	}
}

// TestLegacyRoundTrip: Gaussian weights come back with the error their
// levels allow, every value of the linear types within half a step of its
// block's decoded grid (inside the grid's range), and five bits beat
// four.
func TestLegacyRoundTrip(t *testing.T) {
	x := gaussian(5, 256*256, 0.02)
	errs := map[TensorType]float64{}
	for _, typ := range legacyTypes {
		q, y := roundTrip(t, typ, x, nil)
		errs[typ] = nmse(y, x)
		lt, linear := legacyOf(typ)
		if !linear {
			continue
		}
		for b := 0; b < len(x)/32; b++ {
			blk := q[b*lt.bytes:]
			d := float64(f16(blk))
			lo := -float64(lt.nmax()/2+1) * d
			if lt.hasMin {
				lo = float64(f16(blk[2:]))
			}
			hi := lo + float64(lt.nmax())*d
			step := math.Abs(d)
			lo, hi = min(lo, hi), max(lo, hi)
			for i := 32 * b; i < 32*b+32; i++ {
				v := float64(x[i])
				dist := math.Max(0, math.Max(lo-v, v-hi))
				// Levels are rounded against the unrounded scale (and min):
				// the fp16 scale moves level q by up to |q|·2^-11·|d|, the
				// fp16 min by 2^-11·|min|.
				slack := step*float64(lt.nmax())/2048 + math.Abs(lo)/2048
				if e := math.Abs(float64(y[i]) - v); e > dist+step/2+slack+1e-9 {
					t.Fatalf("%s block %d value %d: error %g > half step %g + outside distance %g + fp16 slack %g", typ, b, i, e, step/2, dist, slack)
				}
			}
		}
	}
	t.Logf("NMSE Q4_0 %.3g, Q4_1 %.3g, Q5_0 %.3g, Q5_1 %.3g, IQ4_NL %.3g, IQ4_XS %.3g",
		errs[TypeQ4_0], errs[TypeQ4_1], errs[TypeQ5_0], errs[TypeQ5_1], errs[TypeIQ4_NL], errs[TypeIQ4_XS])
	// A step s over a block of 32 Gaussian values gives NMSE ≈ s²/12: Q4_1
	// spreads 16 levels over the range (≈ 4.1σ), s ≈ 0.27σ, 6e-3; Q4_0's
	// levels run from −8·|d| on the side of the largest magnitude (|d| =
	// max/8 ≈ 0.3σ) to only 7·|d| on the other, clipping it, 1e-2; five
	// bits quarter these. IQ4_NL and IQ4_XS store no min, but their
	// codebook is denser near zero, where Gaussian values lie. Measured (seed 5): Q4_0 1.06e-2, Q4_1 6.94e-3, Q5_0
	// 2.62e-3, Q5_1 1.65e-3, IQ4_NL 7.48e-3, IQ4_XS 7.66e-3; bounds about 2×.
	for typ, bound := range map[TensorType]float64{
		TypeQ4_0: 2e-2, TypeQ4_1: 1.4e-2, TypeQ5_0: 5e-3, TypeQ5_1: 3.5e-3, TypeIQ4_NL: 1.5e-2, TypeIQ4_XS: 1.5e-2,
	} {
		if errs[typ] > bound {
			t.Errorf("%s NMSE %.3g, want < %g", typ, errs[typ], bound)
		}
	}
	if !(errs[TypeQ5_0] < errs[TypeQ4_0]/2 && errs[TypeQ5_1] < errs[TypeQ4_1]/2) {
		t.Errorf("five bits do not halve four bits' error: Q4_0 %.3g, Q5_0 %.3g, Q4_1 %.3g, Q5_1 %.3g", errs[TypeQ4_0], errs[TypeQ5_0], errs[TypeQ4_1], errs[TypeQ5_1])
	}
}

// TestLegacySpecialBlocks: zeros decode to zeros, a constant to itself
// (to fp16 precision), and a block with one outlier keeps the outlier and
// stays finite, with and without importances.
func TestLegacySpecialBlocks(t *testing.T) {
	tests := []struct {
		name string
		x    func(i int) float32
		tol  func(v float32) float32 // allowed |error| at value v
	}{
		{"zeros", func(int) float32 { return 0 }, func(float32) float32 { return 0 }},
		{"constant positive", func(int) float32 { return 0.75 }, func(v float32) float32 { return 1e-3 * v }},
		{"constant negative", func(int) float32 { return -0.3 }, func(v float32) float32 { return -1e-3 * v }},
		{"one outlier", func(i int) float32 {
			if i == 77 {
				return 5
			}
			return 0.01 * float32(i%7-3)
		}, func(v float32) float32 {
			if v == 5 {
				return 0.05 * 5
			}
			return 5.0 / 8 // a step of the outlier's scale
		}},
	}
	ones := make([]float32, 256)
	for i := range ones {
		ones[i] = 1
	}
	for _, typ := range legacyTypes {
		for _, tt := range tests {
			x := make([]float32, 256)
			for i := range x {
				x[i] = tt.x(i)
			}
			for _, weighted := range []bool{false, true} {
				name := typ.String() + " " + tt.name
				var qw []float32
				if weighted {
					name += " weighted"
					qw = ones
				}
				_, y := roundTrip(t, typ, x, qw)
				for i := range x {
					if e := abs32(y[i] - x[i]); !(e <= tt.tol(x[i])) {
						t.Errorf("%s: value %d = %g, want %g ± %g", name, i, y[i], x[i], tt.tol(x[i]))
						break
					}
				}
			}
		}
	}
}

// TestLegacyParallel: Encode and EncodeWeighted give the bytes of one
// sequential pass however the blocks are split across goroutines.
func TestLegacyParallel(t *testing.T) {
	const cols = 512
	x := gaussian(3, 300*cols, 1)
	qw := make([]float32, cols)
	for j := range qw {
		qw[j] = float32(j%13) + 0.5
	}
	seq := map[TensorType]func(dst []byte, src []float32){
		TypeQ4_0: QuantizeQ4_0, TypeQ4_1: QuantizeQ4_1, TypeQ5_0: QuantizeQ5_0, TypeQ5_1: QuantizeQ5_1,
		TypeIQ4_NL: QuantizeIQ4_NL, TypeIQ4_XS: QuantizeIQ4_XS,
	}
	encode := func(procs int, typ TensorType) (plain, weighted []byte) {
		prev := runtime.GOMAXPROCS(procs)
		defer runtime.GOMAXPROCS(prev)
		plain, err := Encode(typ, x)
		if err != nil {
			t.Fatal(err)
		}
		if weighted, err = EncodeWeighted(typ, x, cols, qw); err != nil {
			t.Fatal(err)
		}
		return plain, weighted
	}
	for _, typ := range legacyTypes {
		want := make([]byte, len(x)/typ.BlockSize()*typ.BlockBytes())
		seq[typ](want, x)
		p1, w1 := encode(1, typ)
		p4, w4 := encode(4, typ)
		if !bytes.Equal(p1, want) || !bytes.Equal(p4, want) {
			t.Errorf("%s: Encode on 1 or 4 threads differs from one sequential pass", typ)
		}
		if !bytes.Equal(w1, w4) {
			t.Errorf("%s: EncodeWeighted on 4 threads differs from 1", typ)
		}
	}
}

// TestLegacyMatchesGGML: on ggmlCheckInput the quantizers write, without
// and with the importances, exactly the bytes of ggml's own quantize_q4_0,
// quantize_q4_1, quantize_q5_0, quantize_q5_1, quantize_iq4_nl and
// quantize_iq4_xs (what llama-quantize calls, weights NULL or the
// importances), whose SHA-256 is below: computed once with ggml's C
// code (ggml-org/ggml d99724f2, ggml-quants.c built with gcc -O2 for
// x86-64, no FMA contraction) on the same input.
// A change of rounding anywhere in the searches shows here.
func TestLegacyMatchesGGML(t *testing.T) {
	x, qw := ggmlCheckInput()
	want := map[TensorType][2]string{ // without, with importances
		TypeQ4_0:   {"6bc08f3d32f8c2a6f9ec2dd532c3b31c68d39f27ddfa60005cde3bd0869cb58d", "799cfd857287a0efbf37c162702fe7652cb3767643065d8eae8cb8a2293e2ded"},
		TypeQ4_1:   {"f9a2814b4f5099eda0b643c65673a4df3b827e486a3ab4dfa42ee83c0ce99129", "bcc867e51fe7a6f57f1ed39d9fbf33765641e1d1d9da4c530e512dab1cdd8d08"},
		TypeQ5_0:   {"0f548a2efe37dc7df7419191eb8518e974ea3331845fea28860ff3282ed14712", "b385b9166733efcb095d12f0ad72b7cc468fd99b0494b5648ed3ece5f95d1170"},
		TypeQ5_1:   {"63b94534018a72ddcd37f7ed04275ea80145b266dc7e33225cc38e4e145f5fb1", "1db15e02feea9c7f117e3b92ed1406dc86fd79196198f633376fc1417d2f34b5"},
		TypeIQ4_NL: {"940fe28a5b4ba20dc88d2d6b8972e4c81dba4b140622e21849f429b5c8e0807c", "44f483e0f46a51d9c823e52dc957c8fb2ec7a33eed718d665777a71608855749"},
		TypeIQ4_XS: {"81af7d656ba49d87ab9fe60bde69de546c01f3d8f759ea99fb757aaa6acf3696", "6b18828373056d8e3a84ee63e76f795f8dba3ce7eab516a69f6a1d501e3dfb31"},
	}
	for _, typ := range legacyTypes {
		plain, err := Encode(typ, x)
		if err != nil {
			t.Fatal(err)
		}
		weighted, err := EncodeWeighted(typ, x, len(qw), qw)
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range [][]byte{plain, weighted} {
			sum := sha256.Sum256(b)
			if got := hex.EncodeToString(sum[:]); got != want[typ][i] {
				t.Errorf("%s (importances %v): sha256 %s, want ggml's %s", typ, i == 1, got, want[typ][i])
			}
		}
	}
}

// ggmlCheckInput returns 16 rows of 1024 values and an importance per
// column, from a fixed integer generator (xorshift32, so that they never
// change with Go's math/rand): rows of roughly Gaussian values at scales
// from 1e-3 to 300 with outliers, and rows of zeros, of a positive and a
// negative constant, and of zeros with a few spikes.
func ggmlCheckInput() (x, qw []float32) {
	const rows, cols = 16, 1024
	s := uint32(2463534242)
	u := func() float32 {
		s ^= s << 13
		s ^= s >> 17
		s ^= s << 5
		return float32(s>>8) / (1 << 24)
	}
	scales := []float32{1e-3, 0.02, 1, 300}
	x = make([]float32, rows*cols)
	for r := range rows {
		for c := range cols {
			v := (u() + u() + u() + u() - 2) * 1.7 * scales[r%4]
			if c%97 == r {
				v *= 8
			}
			switch r {
			case 0:
				v = 0
			case 1:
				v = 0.75
			case 2:
				v = -0.3
			case 3:
				if c%100 != 7 {
					v = 0
				}
			}
			x[r*cols+c] = v
		}
	}
	qw = make([]float32, cols)
	for c := range qw {
		qw[c] = float32(math.Ldexp(float64(1+u()), int(u()*20)-10))
	}
	return x, qw
}

// TestLegacyNaNLikeGGML: a NaN inside a Q4_1 or Q5_1 block is skipped when
// ggml's loops look for the block's least and greatest values, so the
// block keeps finite d and m and the NaN takes level 0, as the block's
// minimum does; Go's min and max would return the NaN and write a NaN d
// and m. want holds the bytes of llama.cpp's quantize_q4_1 and
// quantize_q5_1 (libggml-base of node-llama-cpp's llama.cpp build, called
// on this input), without and with unit importances; with them a NaN
// makes σ², and so every weight of the row, NaN, and each block keeps the
// first guess of make_qkx3_quants.
func TestLegacyNaNLikeGGML(t *testing.T) {
	x := make([]float32, 64)
	for i := range x {
		x[i] = float32(i%7-3) / 4
	}
	x[5] = float32(math.NaN())
	ones := make([]float32, 64)
	for i := range ones {
		ones[i] = 1
	}
	hexBytes := func(s string) []byte {
		b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tt := range []struct {
		lt              legacyType
		plain, weighted string
	}{
		{legacyQ4_1,
			"662e00ba 5083a5d8fa003f5083a5d8fa0d3f5083 662e00ba fa0d3f5083a5d8fa0d3f5083a5d8fa0d",
			"662e00ba 5082a5c8fa002f5082a5c8fa0c2f5082 662e00ba fa0c2f5082a5c8fa0c2f5082a5c8fa0c"},
		{legacyQ5_1,
			"322a00ba 583c1e8f a0055aa0f5005fa0055aa0f50a5fa005 322a00ba c7e3f178 f50a5fa0055aa0f50a5fa0055aa0f50a",
			"322a00ba 583c1e8f a0055aa0f5005fa0055aa0f50a5fa005 322a00ba c7e3f178 f50a5fa0055aa0f50a5fa0055aa0f50a"},
	} {
		got := make([]byte, 2*tt.lt.bytes)
		tt.lt.quantize(got, x)
		if want := hexBytes(tt.plain); !bytes.Equal(got, want) {
			t.Errorf("%s with a NaN:\n got % x\nwant % x (ggml)", tt.lt.name, got, want)
		}
		// The same block with the NaN replaced by the block's minimum.
		y := slices.Clone(x)
		y[5] = slices.Min(append(slices.Clone(x[:5]), x[6:32]...))
		same := make([]byte, 2*tt.lt.bytes)
		tt.lt.quantize(same, y)
		if !bytes.Equal(got, same) {
			t.Errorf("%s: the NaN does not quantize as the block's minimum:\n got % x\nwant % x", tt.lt.name, got, same)
		}
		tt.lt.quantizeRow(got, x, ones)
		if want := hexBytes(tt.weighted); !bytes.Equal(got, want) {
			t.Errorf("%s with a NaN and importances:\n got % x\nwant % x (ggml)", tt.lt.name, got, want)
		}
	}
}

// TestDequantizeLegacyNegativeZero: with a negative d the centre level of
// Q4_0 (8) and Q5_0 (16) decodes to −0, as ggml's (q − 8)·d does, not +0
// (which adding a zero min would give): F16 or BF16 written from the
// values then keeps llama.cpp's sign bits.
func TestDequantizeLegacyNegativeZero(t *testing.T) {
	for _, tt := range []struct {
		typ TensorType
		blk []byte
	}{
		{TypeQ4_0, append([]byte{0x00, 0xBC}, bytes.Repeat([]byte{0x88}, 16)...)},           // d = −1, every level 8
		{TypeQ5_0, append([]byte{0x00, 0xBC, 0xFF, 0xFF, 0xFF, 0xFF}, make([]byte, 16)...)}, // every level 16
	} {
		got, err := Decode(tt.typ, tt.blk, 32)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			if v != 0 || !math.Signbit(float64(v)) {
				t.Fatalf("%s value %d = %g (sign bit %v), want −0", tt.typ, i, v, math.Signbit(float64(v)))
			}
		}
	}
}
