package quantize

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// TestGramMatchesAdd: Hessians accumulated with the backend's fp32 GEMM
// (what the driver uses) agree with Add's float64 products, padding masked,
// and come out exactly symmetric.
func TestGramMatchesAdd(t *testing.T) {
	const K, rows = 37, 53
	rng := rand.New(rand.NewPCG(1, 2))
	want, got := NewHessian(K), NewHessian(K)
	g, err := newGram(cpu.New(2), K, rows)
	if err != nil {
		t.Fatal(err)
	}
	defer g.free()
	for s := range 3 {
		x := make([]float32, rows*K)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		var mask []bool
		if s == 1 {
			mask = make([]bool, rows)
			for r := range mask {
				mask[r] = r < rows-7
			}
		}
		want.AddMasked(x, rows, mask)
		if err := g.add(got, x, mask); err != nil {
			t.Fatal(err)
		}
	}
	if got.N != want.N {
		t.Fatalf("N = %d, want %d", got.N, want.N)
	}
	for i := range K {
		for j := range K {
			a, b := got.H[i*K+j], want.H[i*K+j]
			if math.Abs(a-b) > 1e-5*(1+math.Abs(b)) {
				t.Fatalf("H[%d,%d] = %g, want %g", i, j, a, b)
			}
			if a != got.H[j*K+i] {
				t.Fatalf("H[%d,%d] = %g but H[%d,%d] = %g", i, j, a, j, i, got.H[j*K+i])
			}
		}
	}
}
