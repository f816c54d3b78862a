package gptq

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// unpackPermutedRef is what UnpackQWeightPermuted must give for the
// codes q [K, N] that were packed: their rows, then columns, gathered.
func unpackPermutedRef(q []uint8, K, N int, perm, cols []int32) []uint8 {
	out := make([]uint8, K*N)
	for k := range K {
		src := k
		if perm != nil {
			src = int(perm[k])
		}
		for j := range N {
			c := j
			if cols != nil {
				c = int(cols[j])
			}
			out[k*N+j] = q[src*N+c]
		}
	}
	return out
}

func randPerm(r *rand.Rand, n int) []int32 {
	p := make([]int32, n)
	for i, v := range r.Perm(n) {
		p[i] = int32(v)
	}
	return p
}

// TestUnpackQWeightPermuted checks the one-pass unpack against the codes
// that were packed, gathered in the order asked, for every width, with and without row and column
// orders, on shapes whose K is the fewest rows a width packs.
func TestUnpackQWeightPermuted(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, bits := range []int{2, 3, 4, 8} {
		for _, K := range []int{32, 96, 256} {
			for _, N := range []int{1, 24, 100} {
				for _, order := range []string{"none", "rows", "cols", "both"} {
					t.Run(fmt.Sprintf("%dbit-K%d-N%d-%s", bits, K, N, order), func(t *testing.T) {
						codes := make([]uint8, K*N)
						for i := range codes {
							codes[i] = uint8(r.IntN(1 << bits))
						}
						qw, err := PackQWeight(codes, K, N, bits)
						if err != nil {
							t.Fatal(err)
						}
						var perm, cols []int32
						if order == "rows" || order == "both" {
							perm = randPerm(r, K)
						}
						if order == "cols" || order == "both" {
							cols = randPerm(r, N)
						}
						got, err := UnpackQWeightPermuted(qw, K, N, bits, perm, cols)
						if err != nil {
							t.Fatal(err)
						}
						if want := unpackPermutedRef(codes, K, N, perm, cols); !slices.Equal(got, want) {
							t.Error("codes differ from the packed codes in the order asked")
						}
					})
				}
			}
		}
	}
	qw := make([]int32, 3) // K 8, N 3 at 4 bits: one word row
	for _, c := range []struct {
		name       string
		perm, cols []int32
	}{
		{"short-perm", []int32{0, 1}, nil},
		{"repeated-perm", []int32{0, 1, 2, 3, 4, 5, 6, 6}, nil},
		{"cols-out-of-range", nil, []int32{0, 1, 3}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := UnpackQWeightPermuted(qw, 8, 3, 4, c.perm, c.cols); err == nil || errors.Is(err, ErrShape) && c.name != "short-perm" {
				t.Errorf("err %v, want an order error", err)
			}
		})
	}
	if _, err := UnpackQWeightPermuted(qw[:2], 8, 3, 4, nil, nil); !errors.Is(err, ErrShape) {
		t.Errorf("short qweight: err %v, want ErrShape", err)
	}
}
