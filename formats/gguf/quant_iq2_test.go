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

// TestDequantizeIQ2Hand: blocks built byte by byte decode to the values
// worked out by hand from ggml-common.h's layouts and grid entries
// (iq2xxs_grid[1] = 0x080808080808082b: magnitudes 43, 8, …, 8, least
// significant byte first).
func TestDequantizeIQ2Hand(t *testing.T) {
	type val = handValue
	for _, tc := range []struct {
		typ  TensorType
		blk  func(b []byte)
		vals []val
	}{
		{
			// d = 0.5; sub-block 0: grid indices 0, 1, 2, 3; 7-bit signs 0,
			// 1 (ksigns 129: values 0 and 7), 127 (ksigns 255: all), 3
			// (values 0 and 1); scale 5: db = 0.5·5.5/4 = 0.6875. Sub-block
			// 1 all zero bytes: grid 0 (all 8), db = 0.5·0.5/4 = 0.0625.
			TypeIQ2_XXS, func(b []byte) {
				binary.LittleEndian.PutUint16(b, 0x3800)
				copy(b[2:], []byte{0, 1, 2, 3})
				binary.LittleEndian.PutUint32(b[6:], 0|1<<7|127<<14|3<<21|5<<28)
			},
			[]val{{0, 5.5}, {7, 5.5}, {8, -43 * 0.6875}, {9, 5.5}, {15, -5.5}, {16, -25 * 0.6875}, {17, -25 * 0.6875}, {18, -5.5},
				{24, -5.5}, {25, -43 * 0.6875}, {26, 5.5}, {31, 5.5}, {32, 0.5}, {255, 0.5}},
		},
		{
			// d = 1; group 0: index 511 (all 43), signs 1 (ksigns 129);
			// group 1: index 5 (0x0808080808190819: 25 8 25 8 8 8 8 8);
			// both in sub-block 0, scale 3: db = 3.5/4. Group 2 (sub-block
			// 1, scale 15: db = 15.5/4): index 300 (0x1908190808191908: 8
			// 25 25 8 8 25 8 25), signs 127 (all).
			TypeIQ2_XS, func(b []byte) {
				binary.LittleEndian.PutUint16(b, 0x3C00)
				binary.LittleEndian.PutUint16(b[2:], 511|1<<9)
				binary.LittleEndian.PutUint16(b[4:], 5)
				binary.LittleEndian.PutUint16(b[6:], 300|127<<9)
				b[iq2xsScales] = 3 | 15<<4
			},
			[]val{{0, -43 * 0.875}, {1, 43 * 0.875}, {7, -43 * 0.875}, {8, 25 * 0.875}, {9, 8 * 0.875}, {10, 25 * 0.875}, {15, 8 * 0.875},
				{16, -8 * 3.875}, {17, -25 * 3.875}, {18, -25 * 3.875}, {23, -25 * 3.875}, {24, 8 * 3.875}, {32, 8 * 0.125}, {255, 8 * 0.125}},
		},
		{
			// d = 2; group 0: index 256 (qs 0, qh[0] bits 0-1 = 1;
			// 0x0819081919191919: 25 25 25 25 25 8 25 8), signs 0x80;
			// sub-block 0 scale 1: db = 2·1.5/4. Group 3 (sub-block 1,
			// scale 2: db = 2·2.5/4): index 1023 (qs 0xFF, qh[0] bits 6-7 =
			// 3; all 43), signs 1. Group 5 (sub-block 2, scale 0: db =
			// 2·0.5/4): index 700 (qs 188, qh[1] bits 2-3 = 2;
			// 0x1919082b2b080808: 8 8 8 43 43 8 25 25).
			TypeIQ2_S, func(b []byte) {
				binary.LittleEndian.PutUint16(b, 0x4000)
				b[2+0], b[2+3], b[2+5] = 0, 0xFF, 188
				b[iq2sSigns+0], b[iq2sSigns+3] = 0x80, 0x01
				b[iq2sQH+0], b[iq2sQH+1] = 1|3<<6, 2<<2
				b[iq2sScales] = 1 | 2<<4
			},
			[]val{{0, 25 * 0.75}, {5, 8 * 0.75}, {6, 25 * 0.75}, {7, -8 * 0.75}, {24, -43 * 1.25}, {25, 43 * 1.25}, {31, 43 * 1.25},
				{40, 2}, {43, 10.75}, {44, 10.75}, {46, 6.25}, {47, 6.25}, {8, 8 * 0.75}},
		},
	} {
		checkHandBlock(t, tc.typ, tc.blk, tc.vals)
	}
}

// TestKsignsIQ2XS: the derived sign table is ggml-common.h's ksigns_iq2xs
// (its first and last rows).
func TestKsignsIQ2XS(t *testing.T) {
	first := []uint8{0, 129, 130, 3, 132, 5, 6, 135, 136, 9, 10, 139, 12, 141, 142, 15}
	last := []uint8{240, 113, 114, 243, 116, 245, 246, 119, 120, 249, 250, 123, 252, 125, 126, 255}
	if !bytes.Equal(ksignsIQ2XS[:16], first) || !bytes.Equal(ksignsIQ2XS[112:], last) {
		t.Errorf("ksigns %v … %v, want %v … %v", ksignsIQ2XS[:16], ksignsIQ2XS[112:], first, last)
	}
}

// TestIQ2Lattice: every code of levels 0..2 is a grid point, or lists
// neighbours at no more than nwant distinct distances, nearest first;
// every point's code maps back to it.
func TestIQ2Lattice(t *testing.T) {
	for _, tc := range []struct {
		typ   TensorType
		nwant int
	}{{TypeIQ2_XXS, 2}, {TypeIQ2_XS, 2}, {TypeIQ2_S, 1}, {TypeIQ1_S, 3}} {
		g := iq2LatticeOf(tc.typ)
		for k, lv := range g.levels {
			u := 0
			for i, l := range lv {
				u |= int(l) << (2 * i)
			}
			if g.index[u] != int32(k) {
				t.Fatalf("%s: point %d's code %#x maps to %d", tc.typ, k, u, g.index[u])
			}
		}
		onGrid, lists := 0, 0
		for u := range iq2Codes {
			if !levelsUpTo2(u) {
				continue
			}
			if g.index[u] >= 0 {
				onGrid++
				continue
			}
			lists++
			nb := g.neighbours[-g.index[u]-1:]
			n := int(nb[0])
			if n == 0 {
				t.Fatalf("%s: code %#x has no neighbours", tc.typ, u)
			}
			var dists []int
			for _, k := range nb[1 : 1+n] {
				d := 0
				for i, l := range g.levels[k] {
					e := int(l) - u>>(2*i)&3
					d += e * e
				}
				if len(dists) == 0 || d != dists[len(dists)-1] {
					if len(dists) > 0 && d < dists[len(dists)-1] {
						t.Fatalf("%s: code %#x: neighbours not in order of distance", tc.typ, u)
					}
					dists = append(dists, d)
				}
			}
			if len(dists) > tc.nwant {
				t.Fatalf("%s: code %#x: neighbours at %d distances, want at most %d", tc.typ, u, len(dists), tc.nwant)
			}
		}
		if onGrid != len(g.levels) || onGrid+lists != 6561 {
			t.Errorf("%s: %d codes on the grid, %d with neighbours; want %d and %d", tc.typ, onGrid, lists, len(g.levels), 6561-len(g.levels))
		}
	}
}

// iq2GoldenInputs are TestIQ2MatchesGGML's inputs, rows of 1024: Gaussian
// weights, then two rows whose eight super-blocks are awkward: a sine with
// one spike, all zero, below GROUP_MAX_EPS (1e-15), constant, negative
// only, small noise with one outlier, between GROUP_MAX_EPS and IQ2_S's
// 1e-8, and signs alternating so that groups of 8 hold odd counts of
// negatives; with importances over six decades, then importances of 1..7
// whose first super-block is zero.
func iq2GoldenInputs() (x [2][]float32, qw [2][]float32) {
	const cols = 1024
	x[0] = gaussian(13, 8*cols, 0.02)
	x[1] = make([]float32, 2*cols)
	noise := gaussian(14, len(x[1]), 1)
	for i := range x[1] {
		s := float32(math.Sin(float64(i) * 0.7))
		var v float32
		switch i / 256 {
		case 0:
			v = 0.05 * s
			if i == 100 {
				v = 5
			}
		case 1:
			v = 0
		case 2:
			v = 0.05 * s * 1e-18
		case 3:
			v = 0.75
		case 4:
			v = -float32(math.Abs(float64(0.05 * noise[i])))
		case 5:
			v = 0.001 * noise[i]
			if i == 5*256+77 {
				v = 10
			}
		case 6:
			v = 3e-9 * s
		case 7:
			v = 0.01 + 0.001*float32(i%17)
			if i%3 == 0 {
				v = -v
			}
		}
		x[1][i] = v
	}
	r := rand.New(rand.NewPCG(13, 14))
	qw[0], qw[1] = make([]float32, cols), make([]float32, cols)
	for j := range cols {
		qw[0][j] = float32(math.Pow(10, 6*r.Float64()-3))
		if j >= 256 {
			qw[1][j] = float32(1 + j%7)
		}
	}
	return x, qw
}

// TestIQ2MatchesGGML: Encode (IQ2_S), EncodeWeighted and Decode give the
// bytes of ggml's quantize_iq2_xxs / quantize_iq2_xs / quantize_iq2_s and
// the values of its dequantize_row_iq2_* on iq2GoldenInputs: the first 16
// hex digits of the SHA-256 of what ggml-quants.c gave, from the llama.cpp
// that node-llama-cpp 3.21.1 bundles (testdata/js, its
// llama/gitRelease.bundle, tag v0.4.0), built with gcc -O2
// -ffp-contract=off -DNDEBUG and called on the rows of 1024 with
// quant_weights NULL (IQ2_S only: ggml asserts importances for the other
// two) or the importances.
func TestIQ2MatchesGGML(t *testing.T) {
	x, qw := iq2GoldenInputs()
	// want[type][input][importances: none, qw[0], qw[1]] = bytes, values.
	want := map[TensorType][2][3][2]string{
		TypeIQ2_XXS: {
			{{}, {"fe7a1e9f93ed747d", "c30267014e14d9c0"}, {"c230fcd291ddb265", "7fe02c56c52ff27e"}},
			{{}, {"ba747cedbefdcf17", "59c918e5a1362271"}, {"62fe6c9840820ec0", "cfc593ef7f70a64e"}},
		},
		TypeIQ2_XS: {
			{{}, {"83db8ee7fafa5dc5", "35a9d81fc6ff69be"}, {"df7f920aaab6e39f", "b3fcb06f80376e81"}},
			{{}, {"44cdddc7201d4c8b", "aad96202cf1c33af"}, {"8b2d9981b700656a", "c6f8c3a9aef637fe"}},
		},
		TypeIQ2_S: {
			{{"6506b2ac5afaed45", "008d85d76bfb41b9"}, {"d87e65ffee2bbd19", "5e4958d6134ee9cb"}, {"78dd7842d783cd43", "ffff4999ce1a087e"}},
			{{"97c78592d846d300", "010ba4b81e02aa63"}, {"6e8c76cf2df13b77", "496a1cfb57b30948"}, {"7a5ff29015ce5420", "99d1a09eae893375"}},
		},
	}
	for _, typ := range []TensorType{TypeIQ2_XXS, TypeIQ2_XS, TypeIQ2_S} {
		for i := range x {
			for k, w := range [][]float32{nil, qw[0], qw[1]} {
				if w == nil && typ != TypeIQ2_S {
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

// TestEncodeIQ2NeedsImportance: Encode refuses IQ2_XXS and IQ2_XS, which
// ggml quantizes only with importances, with ErrNeedsImportance; with them
// (EncodeWeighted) they quantize, and IQ2_S quantizes either way.
func TestEncodeIQ2NeedsImportance(t *testing.T) {
	x := gaussian(5, 512, 0.02)
	ones := make([]float32, 512)
	for i := range ones {
		ones[i] = 1
	}
	for _, typ := range []TensorType{TypeIQ2_XXS, TypeIQ2_XS} {
		if _, err := Encode(typ, x); !errors.Is(err, ErrNeedsImportance) || !strings.Contains(err.Error(), "encode "+typ.String()) {
			t.Errorf("Encode %s: %v, want ErrNeedsImportance", typ, err)
		}
		if _, err := EncodeWeighted(typ, x, 512, ones); err != nil {
			t.Errorf("EncodeWeighted %s: %v", typ, err)
		}
	}
	if _, err := Encode(TypeIQ2_S, x); err != nil {
		t.Errorf("Encode IQ2_S: %v", err)
	}
}

// TestIQ2RoundTrip: Gaussian weights (uniform importances for the types
// that need some) come back within each type's error: measured NMSE
// IQ2_XXS 0.168, IQ2_XS 0.115, IQ2_S 0.100 (without importances), 0.087
// (uniform ones); bounds about 1.3×.
func TestIQ2RoundTrip(t *testing.T) {
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
		{TypeIQ2_XXS, ones, 0.22}, {TypeIQ2_XS, ones, 0.15}, {TypeIQ2_S, nil, 0.13}, {TypeIQ2_S, ones, 0.115},
	} {
		_, y := roundTrip(t, tc.typ, x, tc.qw)
		e := nmse(y, x)
		t.Logf("%s (importances %v): NMSE %.4g", tc.typ, tc.qw != nil, e)
		if e > tc.bound {
			t.Errorf("%s (importances %v): NMSE %.4g, want ≤ %g", tc.typ, tc.qw != nil, e, tc.bound)
		}
	}
}

// TestEncodeParallelIQ2: split across goroutines, Encode and
// EncodeWeighted give the bytes of one goroutine.
func TestEncodeParallelIQ2(t *testing.T) {
	x := gaussian(8, 64*1024, 0.02)
	qw := gaussian(9, 1024, 1)
	for i := range qw {
		qw[i] *= qw[i]
	}
	for _, typ := range []TensorType{TypeIQ2_XXS, TypeIQ2_XS, TypeIQ2_S} {
		var one, four [2][]byte
		for p, out := range map[int]*[2][]byte{1: &one, 4: &four} {
			prev := runtime.GOMAXPROCS(p)
			if typ == TypeIQ2_S {
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

// TestIQ2NotQuantizable: a NaN or ±Inf, or a block whose fp16 scale would
// overflow, is refused with ErrNotQuantizable naming it, as for the other
// types. Importances so large that the weights overflow float32 make
// ggml's IQ2_XS and IQ2_S quantizers abort (GGML_ASSERT in
// iq2_find_best_neighbour: no neighbour at a finite distance), where this
// package must not panic: refused too; IQ2_XXS's make_qp_quants then
// gives every sub-block scale 0, and ggml, as this package, a zero block.
func TestIQ2NotQuantizable(t *testing.T) {
	const rowLen = 512
	ones := make([]float32, rowLen)
	for i := range ones {
		ones[i] = 1
	}
	for _, typ := range []TensorType{TypeIQ2_XXS, TypeIQ2_XS, TypeIQ2_S} {
		for _, tc := range []struct {
			at   int
			v    float32
			want string
		}{
			{700, float32(math.NaN()), "value 700 is NaN"},
			{1030, float32(math.Inf(-1)), "value 1030 is -Inf"},
			{1030, 1e10, "block 4 (values 1024 to 1279, largest |value| 1e+10)"},
		} {
			x := gaussian(9, 6*rowLen, 1)
			x[tc.at] = tc.v
			_, err := EncodeWeighted(typ, x, rowLen, ones)
			if !errors.Is(err, ErrNotQuantizable) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s %g: %v, want ErrNotQuantizable naming %q", typ, tc.v, err, tc.want)
			}
			if typ == TypeIQ2_S {
				if _, err := Encode(typ, x); !errors.Is(err, ErrNotQuantizable) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Encode %s %g: %v, want ErrNotQuantizable naming %q", typ, tc.v, err, tc.want)
				}
			}
		}
		huge := make([]float32, rowLen)
		for i := range huge {
			huge[i] = 3e38
		}
		q, err := EncodeWeighted(typ, gaussian(9, rowLen, 10), rowLen, huge)
		switch {
		case typ == TypeIQ2_XXS && (err != nil || !bytes.Equal(q, make([]byte, len(q)))):
			t.Errorf("%s with importances 3e38: %v, % x…, want zero blocks", typ, err, q[:8])
		case typ != TypeIQ2_XXS && (!errors.Is(err, ErrNotQuantizable) || !strings.Contains(err.Error(), "block 0 ")):
			t.Errorf("%s with importances 3e38: %v, want ErrNotQuantizable naming block 0", typ, err)
		}
	}
}

// TestIQ2Importance: with importances spread over six decades, the IQ2
// quantizers leave less importance-weighted error than with uniform
// importances (IQ2_S: than without any), by at least 10%.
func TestIQ2Importance(t *testing.T) {
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
	}{{TypeIQ2_XXS, ones}, {TypeIQ2_XS, ones}, {TypeIQ2_S, ones}, {TypeIQ2_S, nil}} {
		_, yb := roundTrip(t, tc.typ, x, tc.base)
		_, yw := roundTrip(t, tc.typ, x, qw)
		eb, ew := werr(yb), werr(yw)
		base := "uniform importances"
		if tc.base == nil {
			base = "none"
		}
		t.Logf("%s: importance-weighted error %.4g with %s, %.4g with the importances (%.1f%%)", tc.typ, eb, base, ew, 100*(ew/eb-1))
		if !(ew < 0.9*eb) {
			t.Errorf("%s: weighted error %.4g with the importances, %.4g else: want at least 10%% less", tc.typ, ew, eb)
		}
	}
}
