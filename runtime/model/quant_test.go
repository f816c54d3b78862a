package model

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
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
