package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// TestDequantizeIQ1Hand: blocks built byte by byte decode to the values
// worked out by hand from ggml-common.h's layouts and iq1s_grid entries
// (1: 1, −1, …, −1; 300: 0 −1 0 −1 0 0 0 −1; 1025: −1 −1 0 0 0 0 0 0;
// 2047: all 1; 0: all −1).
func TestDequantizeIQ1Hand(t *testing.T) {
	type val = handValue
	for _, tc := range []struct {
		typ  TensorType
		blk  func(b []byte)
		vals []val
	}{
		{
			// d = 0.5; sub-block 0: indices 1, 300, 1025, 2047 (low bytes
			// 1, 44, 1, 255; high bits 0, 1, 4, 7 at bits 0, 3, 6, 9 of
			// h), scale 3 (bits 12-14): dl = 0.5·7, shift −δ (bit 15).
			// Sub-block 1 all zero: index 0, dl = 0.5, +δ.
			TypeIQ1_S, func(b []byte) {
				binary.LittleEndian.PutUint16(b, 0x3800)
				copy(b[2:], []byte{1, 44, 1, 255})
				binary.LittleEndian.PutUint16(b[iq1sQH:], 1<<3|4<<6|7<<9|3<<12|1<<15)
			},
			[]val{{0, 3.5 * 0.875}, {1, 3.5 * -1.125}, {8, 3.5 * -0.125}, {9, 3.5 * -1.125}, {15, 3.5 * -1.125}, {16, 3.5 * -1.125},
				{18, 3.5 * -0.125}, {24, 3.5 * 0.875}, {31, 3.5 * 0.875}, {32, 0.5 * -0.875}, {255, 0.5 * -0.875}},
		},
		{
			// d = 0.25 (fp16 0x3400: nibbles 0, 0, 4, 3 in the top of the
			// four scale words); sub-block 0: scale 2 (dl = 0.25·5), group
			// 0 index 300 with −δ, group 1 index 2047 with +δ (qh 0x79);
			// sub-block 1: scale 5 (dl = 0.25·11), indices 1 (+δ) and 0
			// (−δ: qh 0x80); sub-block 2: scale 0, index 0, +δ.
			TypeIQ1_M, func(b []byte) {
				copy(b, []byte{44, 255, 1, 0})
				b[iq1mQH], b[iq1mQH+1] = 0x79, 0x80
				for k, v := range []uint16{2 | 5<<3, 0, 0x4000, 0x3000} {
					binary.LittleEndian.PutUint16(b[iq1mScales+2*k:], v)
				}
			},
			[]val{{0, 1.25 * -0.125}, {1, 1.25 * -1.125}, {7, 1.25 * -1.125}, {8, 1.25 * 1.125}, {15, 1.25 * 1.125},
				{16, 2.75 * 1.125}, {17, 2.75 * -0.875}, {24, 2.75 * -1.125}, {31, 2.75 * -1.125}, {32, 0.25 * -0.875}, {255, 0.25 * -0.875}},
		},
	} {
		checkHandBlock(t, tc.typ, tc.blk, tc.vals)
	}
}

// TestIQ1MatchesGGML: EncodeWeighted (and Encode, IQ1_M) and Decode give
// the bytes of ggml's quantize_iq1_s / quantize_iq1_m and the values of
// its dequantize_row_iq1_s / dequantize_row_iq1_m on iq2GoldenInputs
// (whose constant block and repeated values exercise the sort's ties:
// glibc's qsort, a merge sort, keeps them in order, as this package does):
// the first 16 hex digits of the SHA-256 of what ggml-quants.c gave, the
// llama.cpp node-llama-cpp 3.21.1 bundles (tag v0.4.0), built with gcc -O2
// -ffp-contract=off -DNDEBUG on glibc 2.36, called on the rows of 1024
// with quant_weights NULL (IQ1_M only: ggml asserts importances for
// IQ1_S) or the importances.
func TestIQ1MatchesGGML(t *testing.T) {
	x, qw := iq2GoldenInputs()
	// want[type][input][importances: none, qw[0], qw[1]] = bytes, values.
	want := map[TensorType][2][3][2]string{
		TypeIQ1_S: {
			{{}, {"12ab7c58dc7d1037", "eb5fb25a5b69e386"}, {"7af46346d5509733", "4436fcea3faf8c6c"}},
			{{}, {"acdbe9a83d725138", "799625b03108f879"}, {"8ad7675f95391742", "4778a87e6e770c26"}},
		},
		TypeIQ1_M: {
			{{"6dd0e4b7da5e9406", "776fc03a3bc973ff"}, {"08c30bb77bbb9822", "1d8d229ac275c56d"}, {"f18b8db871c86a4c", "b325f767ca1e9cbe"}},
			{{"a128e540a493a83f", "9257c469998093c1"}, {"cc0696d818b21cc5", "102e9ab9a4284b04"}, {"0e206015f3a8f64e", "dca89c0c853ef749"}},
		},
	}
	for _, typ := range []TensorType{TypeIQ1_S, TypeIQ1_M} {
		for i := range x {
			for k, w := range [][]float32{nil, qw[0], qw[1]} {
				if w == nil && typ != TypeIQ1_M {
					continue
				}
				q, y := roundTrip(t, typ, x[i], w)
				if got := [2]string{sha16(q), sha16(y)}; got != want[typ][i][k] {
					t.Errorf("%s input %d importances %d: sha256 of bytes, values %v, ggml's %v", typ, i, k, got, want[typ][i][k])
				}
			}
		}
	}
}

// TestEncodeIQ1NeedsImportance: Encode refuses IQ1_S (ErrNeedsImportance)
// and quantizes IQ1_M, which ggml quantizes without importances too.
func TestEncodeIQ1NeedsImportance(t *testing.T) {
	x := gaussian(5, 512, 0.02)
	if _, err := Encode(TypeIQ1_S, x); !errors.Is(err, ErrNeedsImportance) {
		t.Errorf("Encode IQ1_S: %v, want ErrNeedsImportance", err)
	}
	if _, err := Encode(TypeIQ1_M, x); err != nil {
		t.Errorf("Encode IQ1_M: %v", err)
	}
}

// TestIQ1RoundTrip: Gaussian weights (uniform importances for IQ1_S) come
// back within each type's error: measured NMSE IQ1_S 0.289, IQ1_M 0.342
// (without importances: each value weighs x²), 0.220 (uniform ones);
// bounds about 1.2×.
func TestIQ1RoundTrip(t *testing.T) {
	x := gaussian(21, 64*1024, 0.02)
	ones := make([]float32, 1024)
	for i := range ones {
		ones[i] = 1
	}
	for _, tc := range []struct {
		typ   TensorType
		qw    []float32
		bound float64
	}{
		{TypeIQ1_S, ones, 0.35}, {TypeIQ1_M, nil, 0.41}, {TypeIQ1_M, ones, 0.27},
	} {
		_, y := roundTrip(t, tc.typ, x, tc.qw)
		e := nmse(y, x)
		t.Logf("%s (importances %v): NMSE %.4g", tc.typ, tc.qw != nil, e)
		if e > tc.bound {
			t.Errorf("%s (importances %v): NMSE %.4g, want ≤ %g", tc.typ, tc.qw != nil, e, tc.bound)
		}
	}
}

// TestEncodeParallelIQ1: split across goroutines, Encode and
// EncodeWeighted give the bytes of one goroutine.
func TestEncodeParallelIQ1(t *testing.T) {
	x := gaussian(8, 64*1024, 0.02)
	qw := gaussian(9, 1024, 1)
	for i := range qw {
		qw[i] *= qw[i]
	}
	for _, typ := range []TensorType{TypeIQ1_S, TypeIQ1_M} {
		var one, four [2][]byte
		for p, out := range map[int]*[2][]byte{1: &one, 4: &four} {
			prev := runtime.GOMAXPROCS(p)
			if typ == TypeIQ1_M {
				out[0], _ = Encode(typ, x)
			}
			out[1], _ = EncodeWeighted(typ, x, 1024, qw)
			runtime.GOMAXPROCS(prev)
		}
		if !bytes.Equal(one[0], four[0]) || !bytes.Equal(one[1], four[1]) || one[1] == nil {
			t.Errorf("%s: 4 goroutines differ from 1", typ)
		}
	}
}

// TestIQ1NotQuantizable: non-finite values and overflowing scales are
// refused as for the other types (IQ1_M's scale read from the four bytes
// it is spread over). Importances so large that the weights overflow
// float32 make ggml's IQ1_M abort (no neighbour at a finite distance):
// refused; IQ1_S's search then finds no scale, and ggml, as this package,
// writes zero blocks.
func TestIQ1NotQuantizable(t *testing.T) {
	const rowLen = 512
	ones := make([]float32, rowLen)
	for i := range ones {
		ones[i] = 1
	}
	for _, typ := range []TensorType{TypeIQ1_S, TypeIQ1_M} {
		for _, tc := range []struct {
			at   int
			v    float32
			want string
		}{
			{700, float32(math.NaN()), "value 700 is NaN"},
			{1030, float32(math.Inf(1)), "value 1030 is +Inf"},
			{1030, 1e10, "block 4 (values 1024 to 1279, largest |value| 1e+10)"},
		} {
			x := gaussian(9, 6*rowLen, 1)
			x[tc.at] = tc.v
			if _, err := EncodeWeighted(typ, x, rowLen, ones); !errors.Is(err, ErrNotQuantizable) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s %g: %v, want ErrNotQuantizable naming %q", typ, tc.v, err, tc.want)
			}
		}
		huge := make([]float32, rowLen)
		for i := range huge {
			huge[i] = 3e38
		}
		q, err := EncodeWeighted(typ, gaussian(9, rowLen, 10), rowLen, huge)
		switch {
		case typ == TypeIQ1_S && (err != nil || !bytes.Equal(q, make([]byte, len(q)))):
			t.Errorf("%s with importances 3e38: %v, want zero blocks", typ, err)
		case typ == TypeIQ1_M && (!errors.Is(err, ErrNotQuantizable) || !strings.Contains(err.Error(), "block 0 ")):
			t.Errorf("%s with importances 3e38: %v, want ErrNotQuantizable naming block 0", typ, err)
		}
	}
}

// TestIQ1Importance: with importances spread over six decades, the IQ1
// quantizers leave less importance-weighted error than with uniform
// importances (IQ1_M: than without any), by at least 10%.
func TestIQ1Importance(t *testing.T) {
	const rows, cols = 64, 512
	x := gaussian(7, rows*cols, 0.02)
	r := rand.New(rand.NewPCG(7, 8))
	qw, ones := make([]float32, cols), make([]float32, cols)
	for j := range qw {
		qw[j] = float32(math.Pow(10, 6*r.Float64()-3))
		ones[j] = 1
	}
	werr := func(y []float32) float64 {
		var e float64
		for i, v := range x {
			d := float64(y[i] - v)
			e += float64(qw[i%cols]) * d * d
		}
		return e
	}
	for _, tc := range []struct {
		typ  TensorType
		base []float32
	}{{TypeIQ1_S, ones}, {TypeIQ1_M, ones}, {TypeIQ1_M, nil}} {
		_, yb := roundTrip(t, tc.typ, x, tc.base)
		_, yw := roundTrip(t, tc.typ, x, qw)
		eb, ew := werr(yb), werr(yw)
		t.Logf("%s (base importances %v): importance-weighted error %.4g, %.4g with the importances (%.1f%%)", tc.typ, tc.base != nil, eb, ew, 100*(ew/eb-1))
		if !(ew < 0.9*eb) {
			t.Errorf("%s: weighted error %.4g with the importances, %.4g else: want at least 10%% less", tc.typ, ew, eb)
		}
	}
}
