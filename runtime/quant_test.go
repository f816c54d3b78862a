package runtime

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gptqtool/gptqtool/formats/half"
)

// TestPermuteOutputs checks that output column j of a permuted weight is
// column order[j] of the original (its dequantized rows), the inputs and
// Perm unchanged, and that bad orders are refused.
func TestPermuteOutputs(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const K, N, gs = 96, 40, 32
	q := &QuantWeight{Bits: 4, K: K, N: N, GroupSize: gs, Codes: make([]uint8, K*N),
		Scales: make([]uint16, K/gs*N), Zeros: make([]uint16, K/gs*N), Perm: make([]int32, K)}
	for i := range q.Codes {
		q.Codes[i] = uint8(r.IntN(16))
	}
	for i := range q.Scales {
		q.Scales[i] = half.F32ToF16(float32(0.01 + r.Float64()))
		q.Zeros[i] = uint16(r.IntN(17))
	}
	for i, p := range r.Perm(K) {
		q.Perm[i] = int32(p)
	}
	order := make([]int32, N)
	for j, c := range r.Perm(N) {
		order[j] = int32(c)
	}
	p, err := q.PermuteOutputs(order)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	w, pw := q.Dequantize(), p.Dequantize()
	for j, c := range order {
		if !slices.Equal(pw[j*K:(j+1)*K], w[int(c)*K:(int(c)+1)*K]) {
			t.Fatalf("output %d is not original output %d", j, c)
		}
	}
	if !slices.Equal(p.Perm, q.Perm) {
		t.Error("Perm changed")
	}
	for _, bad := range [][]int32{order[:N-1], append(slices.Clone(order[:N-1]), order[0]), append(slices.Clone(order[:N-1]), N)} {
		if _, err := q.PermuteOutputs(bad); !errors.Is(err, ErrQuantLayout) {
			t.Errorf("order %v...: err %v, want ErrQuantLayout", bad[:3], err)
		}
	}
}

// TestFirstAbove checks the word-wise, parallel scan of Validate against a
// byte loop: codes above the width planted at the start, the end, across
// its 1 MiB chunks and in a tail shorter than a word, for every width.
func TestFirstAbove(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const n = 3<<20 + 13
	for _, bits := range []int{2, 3, 4, 8} {
		top := uint8(1<<bits - 1)
		codes := make([]uint8, n)
		for i := range codes {
			codes[i] = uint8(r.IntN(int(top) + 1))
		}
		ref := func() int {
			for i, c := range codes {
				if c > top {
					return i
				}
			}
			return -1
		}
		if got := firstAbove(codes, top); got != -1 {
			t.Errorf("%d bits, no bad code: got %d, want -1", bits, got)
		}
		if bits == 8 {
			continue // no code exceeds 8 bits
		}
		for _, at := range [][]int{{0}, {n - 1}, {1<<20 - 1, 3 << 20}, {2<<20 + 5, 1<<20 + 3}, {n - 5}, {r.IntN(n), r.IntN(n)}} {
			saved := slices.Clone(codes)
			for _, i := range at {
				codes[i] = top + 1 + uint8(r.IntN(int(255-top)))
			}
			if got, want := firstAbove(codes, top), ref(); got != want {
				t.Errorf("%d bits, bad codes at %v: got %d, want %d", bits, at, got, want)
			}
			copy(codes, saved)
		}
	}
}
