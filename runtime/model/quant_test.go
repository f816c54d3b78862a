package model

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/runtime"
)

// randomLinear is a GPTQ Linear with random codes, zeros and scales and the
// g_idx of the given kind: "act-order" (groups of a random processing
// order), "static" (groups in input order) or "scrambled" (k*7 mod G, groups
// of unequal runs once sorted when G does not divide K evenly).
func randomLinear(r *rand.Rand, K, N, bits, groupSize int, format gptq.Format, gidx string) *gptq.Linear {
	G := gptq.Groups(K, groupSize)
	codes := make([]uint8, K*N)
	for i := range codes {
		codes[i] = uint8(r.IntN(1 << bits))
	}
	zeros := make([]uint8, G*N)
	for i := range zeros {
		zeros[i] = uint8(r.IntN(1 << bits))
		if format == gptq.FormatV1 && zeros[i] == 0 {
			zeros[i] = 1 // v1 stores zero-1
		}
	}
	l := &gptq.Linear{K: K, N: N, Bits: bits, GroupSize: groupSize, Format: format, Scales: make([]uint16, G*N)}
	for i := range l.Scales {
		l.Scales[i] = half.F32ToF16(float32(0.002 + 0.02*r.Float64()))
	}
	var err error
	if l.QWeight, err = gptq.PackQWeight(codes, K, N, bits); err != nil {
		panic(err)
	}
	if l.QZeros, err = gptq.PackQZeros(zeros, G, N, bits, format); err != nil {
		panic(err)
	}
	switch gidx {
	case "act-order":
		l.GIdx = gptq.GIdx(K, groupSize, r.Perm(K), false)
	case "static":
		l.GIdx = gptq.GIdx(K, groupSize, r.Perm(K), true)
	case "scrambled":
		l.GIdx = make([]int32, K)
		for k := range l.GIdx {
			l.GIdx[k] = int32(k * 7 % G)
		}
	}
	return l
}

// TestSequential checks the neutral quantized layout against GPTQ's own
// dequantization, bit for bit, for every bit width, both formats and the
// g_idx layouts tools write; a g_idx whose sorted groups are not runs of the
// group size is left to the dequantized path.
func TestSequential(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	cases := []struct {
		name               string
		K, N, bits, gs     int
		format             gptq.Format
		gidx               string
		wantPerm, wantNone bool
	}{
		{"4bit-g32-act-order-v1", 256, 64, 4, 32, gptq.FormatV1, "act-order", true, false},
		{"4bit-g128-static-v2", 512, 32, 4, 128, gptq.FormatV2, "static", false, false},
		{"8bit-g64-act-order-v2", 256, 16, 8, 64, gptq.FormatV2, "act-order", true, false},
		{"8bit-one-group-v1", 256, 16, 8, -1, gptq.FormatV1, "act-order", false, false},
		{"3bit-g32-act-order", 128, 32, 3, 32, gptq.FormatV1, "act-order", true, false},
		{"2bit-g16-act-order", 128, 16, 2, 16, gptq.FormatV2, "act-order", true, false},
		{"4bit-g100-short-last-group", 256, 8, 4, 100, gptq.FormatV1, "act-order", true, false},
		{"4bit-scrambled-uneven", 128, 8, 4, 48, gptq.FormatV1, "scrambled", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := randomLinear(r, c.K, c.N, c.bits, c.gs, c.format, c.gidx)
			q, err := Sequential(l)
			if err != nil {
				t.Fatal(err)
			}
			if c.wantNone {
				if q != nil {
					t.Fatalf("got a sequential layout for g_idx %v", l.GIdx)
				}
				return
			}
			if q == nil {
				t.Fatal("no sequential layout")
			}
			if (q.Perm != nil) != c.wantPerm {
				t.Errorf("perm %v, want one: %v", q.Perm != nil, c.wantPerm)
			}
			if err := q.Validate(); err != nil {
				t.Fatal(err)
			}
			want, err := l.Dequantize()
			if err != nil {
				t.Fatal(err)
			}
			if got := q.Dequantize(); !slices.Equal(got, want) {
				t.Error("sequential layout dequantizes differently from the GPTQ tensors")
			}
		})
	}
}

// sequentialRef is Sequential the straightforward way (unpack, then copy
// the rows in sorted order), then PermuteOutputs by cols when not nil: the
// reference of sequential's one pass.
func sequentialRef(t *testing.T, l *gptq.Linear, cols []int32) *runtime.QuantWeight {
	t.Helper()
	K, N := l.K, l.N
	gs := l.GroupSize
	if gs == -1 {
		gs = K
	}
	perm := make([]int32, K)
	for i := range perm {
		perm[i] = int32(i)
	}
	slices.SortStableFunc(perm, func(a, b int32) int { return int(l.GIdx[a]) - int(l.GIdx[b]) })
	codes, err := gptq.UnpackQWeight(l.QWeight, K, N, l.Bits)
	if err != nil {
		t.Fatal(err)
	}
	zeros, err := l.ZeroPoints()
	if err != nil {
		t.Fatal(err)
	}
	q := &runtime.QuantWeight{Bits: l.Bits, K: K, N: N, GroupSize: gs, Scales: l.Scales, Zeros: make([]uint16, len(zeros))}
	for i, z := range zeros {
		q.Zeros[i] = uint16(z)
	}
	if slices.IsSorted(perm) {
		q.Codes = codes
	} else {
		q.Perm = perm
		q.Codes = make([]uint8, K*N)
		for k, p := range perm {
			copy(q.Codes[k*N:(k+1)*N], codes[int(p)*N:(int(p)+1)*N])
		}
	}
	if cols == nil {
		return q
	}
	p, err := q.PermuteOutputs(cols)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSequentialOnePass checks sequential (the row and column orders
// applied while unpacking) field by field against sequentialRef, for
// every width, group sizes 32 to one group, act order or not, with and
// without an output order.
func TestSequentialOnePass(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, bits := range []int{2, 3, 4, 8} {
		for _, gs := range []int{32, 64, 128, -1} {
			for _, gidx := range []string{"act-order", "static"} {
				for _, withCols := range []bool{false, true} {
					const K, N = 256, 96
					t.Run(fmt.Sprintf("%dbit-g%d-%s-cols=%v", bits, gs, gidx, withCols), func(t *testing.T) {
						l := randomLinear(r, K, N, bits, gs, gptq.FormatV1, gidx)
						var cols []int32
						if withCols {
							cols = make([]int32, N)
							for j, c := range r.Perm(N) {
								cols[j] = int32(c)
							}
						}
						got, err := sequential(l, cols)
						if err != nil {
							t.Fatal(err)
						}
						want := sequentialRef(t, l, cols)
						if got.Bits != want.Bits || got.K != want.K || got.N != want.N || got.GroupSize != want.GroupSize {
							t.Fatalf("got %d bits [%d %d] group %d, want %d bits [%d %d] group %d", got.Bits, got.K, got.N, got.GroupSize, want.Bits, want.K, want.N, want.GroupSize)
						}
						if !slices.Equal(got.Perm, want.Perm) || (got.Perm == nil) != (want.Perm == nil) {
							t.Error("Perm differs")
						}
						if !slices.Equal(got.Codes, want.Codes) {
							t.Error("codes differ")
						}
						if !slices.Equal(got.Scales, want.Scales) || !slices.Equal(got.Zeros, want.Zeros) {
							t.Error("scales or zeros differ")
						}
					})
				}
			}
		}
	}
}
