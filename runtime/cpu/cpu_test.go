package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
)

func TestConformance(t *testing.T) {
	for _, c := range []struct {
		name string
		mk   func() runtime.Backend
	}{
		{"default", func() runtime.Backend { return New(0) }},
		{"threads1", func() runtime.Backend { return New(1) }},
		{"threads3", func() runtime.Backend { return New(3) }},
		{"portable", func() runtime.Backend { return NewPortable(2) }},
		{"half", func() runtime.Backend { return New(2).WithHalf() }},
	} {
		t.Run(c.name, func(t *testing.T) { backendtest.Run(t, c.mk) })
	}
}

// TestKernelsAgree checks the best kernels (assembly where available)
// against the portable ones on lengths around the 8- and 16-wide steps.
func TestKernelsAgree(t *testing.T) {
	best := bestKernels()
	r := rand.New(rand.NewPCG(3, 3))
	randn := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return x
	}
	for _, k := range []int{1, 7, 8, 9, 15, 16, 17, 24, 64, 72, 100, 1024} {
		t.Run(fmt.Sprintf("k%d", k), func(t *testing.T) {
			lda, ldb := k+3, k+5
			a, b := randn(3*lda), randn(4*ldb)
			var got, want [12]float32
			best.dot3x4(k, a, lda, b, ldb, &got)
			goKernels.dot3x4(k, a, lda, b, ldb, &want)
			var g4, w4 [4]float32
			best.dot1x4(k, a, b, ldb, &g4)
			goKernels.dot1x4(k, a, b, ldb, &w4)
			y1, y2 := randn(k), make([]float32, k)
			copy(y2, y1)
			best.axpy(0.75, a, y1)
			goKernels.axpy(0.75, a, y2)
			close := func(name string, got, want []float32) {
				t.Helper()
				for i := range got {
					d := got[i] - want[i]
					if d < 0 {
						d = -d
					}
					if d > 1e-4*float32(k) {
						t.Errorf("%s[%d] = %v, want %v", name, i, got[i], want[i])
					}
				}
			}
			close("dot3x4", got[:], want[:])
			close("dot1x4", g4[:], w4[:])
			close("axpy", y1, y2)
		})
	}
}

func TestThreadsBitIdentical(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	const m, n, k = 61, 77, 300
	x, w := make([]float32, m*k), make([]float32, n*k)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	var ref []float32
	for _, threads := range []int{1, 2, 5} {
		c := make([]float32, m*n)
		New(threads).matmul(c, x, w, m, n, k)
		if ref == nil {
			ref = c
			continue
		}
		for i := range c {
			if c[i] != ref[i] {
				t.Fatalf("threads %d: c[%d] = %v, want %v (threads 1)", threads, i, c[i], ref[i])
			}
		}
	}
}
