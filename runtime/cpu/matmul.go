package cpu

import (
	"fmt"
	"sync"

	"github.com/gptqtool/gptqtool/runtime"
)

// Blocking of MatMul: a task owns an [mc, nc] tile of dst and walks K in
// slices of kc, so that the 4 weight rows of the inner loop stay in L1 and
// the mc activation rows in L2.
const (
	mc = 48 // multiple of 3, the rows of dot3x4
	nc = 64 // multiple of 4, the columns of dot3x4
	kc = 1024
)

// MatMul implements runtime.Backend: dst[M,N] = x[M,K] · w[N,K]ᵀ.
func (b *Backend) MatMul(dst, x, w runtime.Tensor) {
	d, xt, wt := tensorOf(dst), tensorOf(x), tensorOf(w)
	m, k, n := xt.rows(), xt.cols(), wt.rows()
	if wt.cols() != k || d.rows() != m || d.cols() != n {
		panic(fmt.Sprintf("cpu: matmul dst %v = x %v · w %vᵀ: shape mismatch", d.shape, xt.shape, wt.shape))
	}
	b.product(d.data, xt, wt, m, n, k)
	b.round(d)
}

// product sets c[m,n] = x · wᵀ, w dense, quantized (LoadQuant) or 16-bit
// (LoadWeight).
func (b *Backend) product(c []float32, x, w *Tensor, m, n, k int) {
	switch {
	case w.q != nil && w.q.panels:
		b.matmulPanel(c, x.data, m, w.q)
		return
	case w.q != nil:
		b.matmulQuant(c, x.data, m, w.q)
		return
	case w.h != nil:
		b.matmulQuant(c, x.data, m, w.h)
		return
	}
	b.matmul(c, x.data, w.data, m, n, k)
}

// matmul sets c[m,n] = a[m,k] · w[n,k]ᵀ with all matrices dense row-major.
func (b *Backend) matmul(c, a, w []float32, m, n, k int) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		clear(c[:m*n])
		return
	}
	nb := nc
	if m <= 3 {
		// Decode: one row; split N finer so every thread has work.
		nb = 16
	}
	mt := (m + mc - 1) / mc
	nt := (n + nb - 1) / nb
	kern := b.kern
	b.parallel(mt*nt, func(task int) {
		i0 := (task % mt) * mc
		j0 := (task / mt) * nb
		i1 := min(i0+mc, m)
		j1 := min(j0+nb, n)
		var acc12 [12]float32
		var acc4 [4]float32
		for k0 := 0; k0 < k; k0 += kc {
			kk := min(kc, k-k0)
			blockProduct(&kern, c, n, a, k, i0, i1, k0, kk, w[k0:], k, 0, j0, j1, k0 == 0, &acc12, &acc4)
		}
	})
}

// blockProduct writes (first) or adds into c [·, n] the products of rows
// i0..i1-1 of a [·, k] over columns k0..k0+kk-1 with weight rows
// j0..j1-1, row j's kk values at wb[(j-jb)*ldw:]: the dense product's
// slice of K and the packed weights' expanded tile alike, so that both sum
// in one order.
func blockProduct(kern *kernels, c []float32, n int, a []float32, k, i0, i1, k0, kk int, wb []float32, ldw, jb, j0, j1 int,
	first bool, acc12 *[12]float32, acc4 *[4]float32) {
	put := func(i, j int, v float32) {
		if first {
			c[i*n+j] = v
		} else {
			c[i*n+j] += v
		}
	}
	j := j0
	for ; j+4 <= j1; j += 4 {
		wj := wb[(j-jb)*ldw:]
		i := i0
		for ; i+3 <= i1; i += 3 {
			kern.dot3x4(kk, a[i*k+k0:], k, wj, ldw, acc12)
			for r := range 3 {
				for q := range 4 {
					put(i+r, j+q, acc12[4*r+q])
				}
			}
		}
		for ; i < i1; i++ {
			kern.dot1x4(kk, a[i*k+k0:], wj, ldw, acc4)
			for q := range 4 {
				put(i, j+q, acc4[q])
			}
		}
	}
	for ; j < j1; j++ {
		wj := wb[(j-jb)*ldw : (j-jb)*ldw+kk]
		for i := i0; i < i1; i++ {
			put(i, j, dotGo(a[i*k+k0:i*k+k0+kk], wj))
		}
	}
}

// prodScratch holds MatMulAdd's product buffers (*[]float32).
var prodScratch sync.Pool

// MatMulAdd implements runtime.ResidualMatMuler: dst = add + x·wᵀ. In
// F16/BF16 the product is rounded to the dtype before the sum is, as
// cuBLAS's beta = 1 does with 16-bit outputs (measured: rounding the sum
// only left 30% of the elements one unit apart from the device's). dst
// may be add.
func (b *Backend) MatMulAdd(dst, x, w, add runtime.Tensor) {
	d, xt, wt, at := tensorOf(dst), tensorOf(x), tensorOf(w), tensorOf(add)
	m, k, n := xt.rows(), xt.cols(), wt.rows()
	if wt.cols() != k || d.rows() != m || d.cols() != n || at.Len() != d.Len() {
		panic(fmt.Sprintf("cpu: matmul-add dst %v = add %v + x %v · w %vᵀ: shape mismatch", d.shape, at.shape, xt.shape, wt.shape))
	}
	// The product goes to a pooled scratch: dst is add in the layer's
	// call (x += down(h)), and a fresh slice a call would be 32 MiB of
	// garbage for each product of a 2,048-row prefill.
	sp, _ := prodScratch.Get().(*[]float32)
	if sp == nil || cap(*sp) < m*n {
		buf := make([]float32, m*n)
		sp = &buf
	}
	defer prodScratch.Put(sp)
	prod := (*sp)[:m*n]
	b.product(prod, xt, wt, m, n, k)
	b.parallelRange(len(prod), minChunk, func(lo, hi int) {
		roundTo(d.dt, prod[lo:hi])
		for i := lo; i < hi; i++ {
			d.data[i] = at.data[i] + prod[i]
		}
		roundTo(d.dt, d.data[lo:hi])
	})
}

var _ runtime.ResidualMatMuler = (*Backend)(nil)
