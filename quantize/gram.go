package quantize

import (
	"fmt"

	"github.com/gptqtool/gptqtool/runtime"
)

// gram forms the XᵀX products of Hessian accumulation with a backend's
// MatMul (xt[K,rows] · xt[K,rows]ᵀ), in fp32 as REF forms them, and folds
// each into a Hessian in float64 (AddGram). It is the backend's fastest
// GEMM, on the CPU several times faster than a float64 product, and on a GPU
// the product never leaves the device but for the result.
type gram struct {
	b       runtime.Backend
	K, rows int
	xt, out runtime.Tensor // [K, rows], [K, K]
	host, g []float32      // host copies of xt and out
}

func newGram(b runtime.Backend, K, rows int) (*gram, error) {
	xt, err := b.Alloc(runtime.F32, K, rows)
	if err != nil {
		return nil, fmt.Errorf("hessian of width %d: %w", K, err)
	}
	out, err := b.Alloc(runtime.F32, K, K)
	if err != nil {
		b.Free(xt)
		return nil, fmt.Errorf("hessian of width %d: %w", K, err)
	}
	return &gram{b: b, K: K, rows: rows, xt: xt, out: out, host: make([]float32, K*rows), g: make([]float32, K*K)}, nil
}

// add folds one sequence x [rows, K] into h; rows whose mask entry is false
// (padding) contribute nothing.
func (g *gram) add(h *Hessian, x []float32, mask []bool) error {
	K, rows := g.K, g.rows
	forRanges(K, 64, func(k0, k1 int) {
		for r := 0; r < rows; r++ {
			keep := mask == nil || mask[r]
			row := x[r*K : (r+1)*K]
			for k := k0; k < k1; k++ {
				v := row[k]
				if !keep {
					v = 0
				}
				g.host[k*rows+r] = v
			}
		}
	})
	if err := g.b.Upload(g.xt, g.host); err != nil {
		return err
	}
	g.b.MatMul(g.out, g.xt, g.xt)
	if err := g.b.Download(g.g, g.out); err != nil {
		return err
	}
	h.AddGram(g.g)
	return nil
}

func (g *gram) free() {
	g.b.Free(g.xt)
	g.b.Free(g.out)
}
