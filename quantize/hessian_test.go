package quantize

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// naiveHessian is (2/n)·Σ_s X_sᵀX_s over the kept rows, straight from the
// definition (spec §4.1 net result).
func naiveHessian(K int, seqs [][]float32, masks [][]bool) []float64 {
	H := make([]float64, K*K)
	for s, x := range seqs {
		rows := len(x) / K
		for r := range rows {
			if masks != nil && masks[s] != nil && !masks[s][r] {
				continue
			}
			for i := range K {
				xi := float64(x[r*K+i])
				for j := range K {
					H[i*K+j] += xi * float64(x[r*K+j])
				}
			}
		}
	}
	for i := range H {
		H[i] *= 2 / float64(len(seqs))
	}
	return H
}

func TestHessianHand(t *testing.T) {
	h := NewHessian(2)
	h.Add([]float32{1, 2, 3, 4}, 2) // XᵀX = [[10,14],[14,20]]
	if want := []float64{20, 28, 28, 40}; !equalF64(h.H, want) {
		t.Fatalf("H = %v, want %v", h.H, want)
	}
	// Second sequence x=[1,1]: H = ½·H + (2/2)·[[1,1],[1,1]].
	h.Add([]float32{1, 1}, 1)
	if want := []float64{11, 15, 15, 21}; !equalF64(h.H, want) || h.N != 2 {
		t.Fatalf("H = %v N = %d, want %v N = 2", h.H, h.N, want)
	}
}

func equalF64(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestHessianMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	// K above the strip width and rows above the chunk size exercise the
	// tiling; sequences of different lengths exercise the running mean.
	K := 520
	lens := []int{300, 17, 256}
	if testing.Short() {
		K = 130
	}
	for _, masked := range []bool{false, true} {
		t.Run(fmt.Sprintf("masked=%v", masked), func(t *testing.T) {
			h := NewHessian(K)
			var seqs [][]float32
			var masks [][]bool
			for _, rows := range lens {
				x := correlatedInputs(rng, rows, K)
				var m []bool
				if masked {
					m = make([]bool, rows)
					for r := range m {
						m[r] = rng.IntN(3) != 0
					}
				}
				seqs, masks = append(seqs, x), append(masks, m)
				h.AddMasked(x, rows, m)
			}
			want := naiveHessian(K, seqs, masks)
			if h.N != len(lens) {
				t.Errorf("N = %d, want %d", h.N, len(lens))
			}
			for i := range K {
				for j := range K {
					got, w := h.H[i*K+j], want[i*K+j]
					if math.Abs(got-w) > 1e-12*(math.Abs(w)+1) {
						t.Fatalf("H[%d,%d] = %v, want %v", i, j, got, w)
					}
					if got != h.H[j*K+i] {
						t.Fatalf("H not symmetric at [%d,%d]", i, j)
					}
				}
			}
		})
	}
}

func TestHessianPanicsOnShape(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func(h *Hessian)
	}{
		{"short x", func(h *Hessian) { h.Add(make([]float32, 5), 2) }},
		{"mask length", func(h *Hessian) { h.AddMasked(make([]float32, 6), 2, []bool{true}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("no panic")
				}
			}()
			tc.f(NewHessian(3))
		})
	}
}

func BenchmarkHessianAdd(b *testing.B) {
	for _, bc := range []struct{ K, rows int }{{256, 1024}, {4096, 4096}} {
		b.Run(fmt.Sprintf("K%d_rows%d", bc.K, bc.rows), func(b *testing.B) {
			if testing.Short() && bc.K > 1024 {
				b.Skip("large in -short")
			}
			rng := rand.New(rand.NewPCG(13, 14))
			x := correlatedInputs(rng, bc.rows, bc.K)
			h := NewHessian(bc.K)
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				h.Add(x, bc.rows)
			}
			b.ReportMetric(float64(bc.K)*float64(bc.K)*float64(bc.rows)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
