package quantize

import (
	"fmt"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// Hessian accumulates H = (2/n)·Σ XᵀX over the calibration inputs X of one
// Linear, as the running mean of spec §4.1 (REF gptq.py add_batch).
type Hessian struct {
	// K is the input width of the Linear.
	K int
	// H is [K, K] row-major, symmetric, float64 (REF keeps fp32).
	H []float64
	// N counts the sequences seen: REF's nsamples counts the batch
	// dimension, one per Add call here, not tokens.
	N int
}

// NewHessian returns an empty accumulator for a Linear with K inputs.
// It panics if K <= 0.
func NewHessian(K int) *Hessian {
	if K <= 0 {
		panic(fmt.Sprintf("quantize: NewHessian: K=%d, want > 0", K))
	}
	return &Hessian{K: K, H: make([]float64, K*K)}
}

// Empty reports whether H is zero on its whole diagonal: no input row
// reached the Linear (an expert the router chose for no calibration
// token, whose ExpertInput rows are all zeros). GPTQ would take every
// column as dead and zero the weight; the drivers round such a Linear to
// nearest instead.
func (h *Hessian) Empty() bool {
	for i := range h.K {
		if h.H[i*h.K+i] != 0 {
			return false
		}
	}
	return true
}

// hessChunk is the number of rows turned into float64 at a time. Larger
// chunks give GEMM a longer inner dimension; 256 rows of K=14336 is 29 MB.
const hessChunk = 256

// hessStrip is the column-strip width of the upper-triangle GEMMs.
const hessStrip = 512

// Add folds one calibration sequence into H: x is [rows, K] row-major (the
// sequence's tokens as the Linear sees them). With n the sequences seen so
// far, REF does H *= n/(n+1); n += 1; H += (2/n)·xᵀx, and so does Add: every
// call counts as one sequence. Products are formed and accumulated in
// float64, in pure Go: the reference the layer driver's faster path (the
// backend's fp32 GEMM folded in with AddGram, gram.go) is tested against,
// and the way to build a Hessian without a backend. It panics if
// len(x) < rows*K (a caller bug).
func (h *Hessian) Add(x []float32, rows int) {
	h.AddMasked(x, rows, nil)
}

// AddMasked is Add skipping the rows whose mask entry is false (padding, GM
// HEAD keep_mask). A nil mask keeps every row. The call still counts as one
// sequence even if every row is masked. It panics if len(mask) != rows for a
// non-nil mask.
func (h *Hessian) AddMasked(x []float32, rows int, mask []bool) {
	K := h.K
	if rows < 0 || len(x) < rows*K {
		panic(fmt.Sprintf("quantize: Hessian.Add: len(x)=%d, want rows*K=%d*%d", len(x), rows, K))
	}
	if mask != nil && len(mask) != rows {
		panic(fmt.Sprintf("quantize: Hessian.AddMasked: len(mask)=%d, want rows=%d", len(mask), rows))
	}
	// Only the upper triangle is updated below; the lower is mirrored at
	// the end, so scaling the upper triangle is enough.
	if h.N > 0 {
		f := float64(h.N) / float64(h.N+1)
		for i := range K {
			r := h.H[i*K+i : (i+1)*K]
			for j := range r {
				r[j] *= f
			}
		}
	}
	h.N++
	alpha := 2 / float64(h.N)

	xt := make([]float64, K*min(hessChunk, max(rows, 1))) // [K, c] transposed chunk
	r := 0
	for r < rows {
		c := 0
		stride := min(hessChunk, rows)
		for ; r < rows && c < stride; r++ {
			if mask != nil && !mask[r] {
				continue
			}
			row := x[r*K : (r+1)*K]
			for k, v := range row {
				xt[k*stride+c] = float64(v)
			}
			c++
		}
		if c == 0 {
			break
		}
		// Zero the unused tail columns so the full-stride GEMM adds nothing.
		if c < stride {
			for k := range K {
				clear(xt[k*stride+c : (k+1)*stride])
			}
		}
		gramUpper(h.H, K, xt, stride, alpha)
	}
	mirrorUpper(h.H, K)
}

// gramUpper adds alpha·A·Aᵀ to the upper triangle (and some of the lower
// triangle inside diagonal strips) of c [K,K], A = a [K, m] row-major. The
// work is cut into column strips C[0:je, jb:je] so that about half of the
// full product is computed; gonum's Dgemm spreads each strip over the cores.
func gramUpper(c []float64, K int, a []float64, m int, alpha float64) {
	impl := blas64.Implementation()
	for jb := 0; jb < K; jb += hessStrip {
		je := min(jb+hessStrip, K)
		impl.Dgemm(blas.NoTrans, blas.Trans, je, je-jb, m, alpha, a, m, a[jb*m:], m, 1, c[jb:], K)
	}
}

// mirrorUpper copies the strict upper triangle of c [K,K] onto the lower,
// tile by tile for cache locality, on all cores.
func mirrorUpper(c []float64, K int) {
	const t = 64
	nt := (K + t - 1) / t
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), nt)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for bi := w; bi < nt; bi += workers {
				i0, i1 := bi*t, min(bi*t+t, K)
				for j0 := i0; j0 < K; j0 += t {
					j1 := min(j0+t, K)
					for i := i0; i < i1; i++ {
						for j := max(j0, i+1); j < j1; j++ {
							c[j*K+i] = c[i*K+j]
						}
					}
				}
			}
		}()
	}
	wg.Wait()
}

// AddGram folds one sequence's product g = XᵀX ([K,K], formed elsewhere,
// e.g. by a backend's GEMM) into H with REF's running mean: H *= n/(n+1);
// n += 1; H += (2/n)·g. It panics if len(g) != K*K.
func (h *Hessian) AddGram(g []float32) {
	K := h.K
	if len(g) != K*K {
		panic(fmt.Sprintf("quantize: Hessian.AddGram: len(g)=%d, want K*K=%d", len(g), K*K))
	}
	f := float64(h.N) / float64(h.N+1)
	h.N++
	alpha := 2 / float64(h.N)
	// A GEMM need not give a bit-symmetric product; H must be symmetric.
	// Rows are independent: split over the cores (same result whatever
	// the split).
	forRanges(K, 64, func(i0, i1 int) {
		for i := i0; i < i1; i++ {
			for j := range K {
				v := 0.5 * (float64(g[i*K+j]) + float64(g[j*K+i]))
				h.H[i*K+j] = h.H[i*K+j]*f + alpha*v
			}
		}
	})
}

// forRanges calls fn on consecutive ranges of [0, n) of at least minChunk
// items, spread over GOMAXPROCS goroutines.
func forRanges(n, minChunk int, fn func(lo, hi int)) {
	chunks := min(runtime.GOMAXPROCS(0)*2, (n+minChunk-1)/minChunk)
	if chunks <= 1 {
		fn(0, n)
		return
	}
	size := (n + chunks - 1) / chunks
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += size {
		wg.Go(func() { fn(lo, min(lo+size, n)) })
	}
	wg.Wait()
}
