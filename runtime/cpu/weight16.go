package cpu

import (
	"fmt"

	"github.com/gptqtool/gptqtool/runtime"
)

// hweight is a Linear weight W [N, K] kept as the checkpoint's 16-bit
// values (runtime.WeightLoader): raw holds N·K little-endian F16 or BF16
// values, row-major. MatMul converts tiles of its rows to fp32, values that
// the conversion gives exactly, the ones a load converting the whole
// tensor to fp32 uploads.
type hweight struct {
	n, k int
	dt   runtime.DType
	raw  []byte
}

// LoadWeight implements runtime.WeightLoader: F16 and BF16 weights stay
// 16-bit and multiply F32 activations as their fp32 values would,
// bit for bit (half the memory of fp32).
func (b *Backend) LoadWeight(src []byte, dt runtime.DType, n, k int) (runtime.Tensor, error) {
	if dt != runtime.F16 && dt != runtime.BF16 {
		return nil, fmt.Errorf("cpu: load weight [%d %d] of %v: %w", n, k, dt, runtime.ErrWeightUnsupported)
	}
	if n <= 0 || k <= 0 || len(src) != 2*n*k {
		return nil, fmt.Errorf("cpu: load weight [%d %d] of %v from %d bytes", n, k, dt, len(src))
	}
	w := &hweight{n: n, k: k, dt: dt, raw: append([]byte(nil), src...)}
	b.resident().Add(int64(len(w.raw)))
	return &Tensor{shape: []int{n, k}, h: w, dt: runtime.F32, size: int64(len(w.raw))}, nil
}

func (w *hweight) dims() (n, k int)              { return w.n, w.k }
func (w *hweight) tableLen() int                 { return 0 }
func (w *hweight) rowTable(dst []float32, n int) {}

// dequantRow converts W[n, k0:k0+len(out)] to fp32 (exact).
func (w *hweight) dequantRow(out []float32, n, k0 int, kern *kernels, _ []float32) {
	o := 2 * (n*w.k + k0)
	src := w.raw[o : o+2*len(out)]
	if w.dt == runtime.BF16 {
		kern.bf16(out, src)
		return
	}
	kern.f16(out, src)
}

// values returns t's elements in fp32: its data, or for a compact weight
// (LoadQuant, LoadWeight) its rows expanded as MatMul expands them (a
// copy, for Download).
func (t *Tensor) values() []float32 {
	var w tiledWeight
	switch {
	case t.q != nil:
		w = t.q
	case t.h != nil:
		w = t.h
	default:
		return t.data
	}
	n, k := w.dims()
	v := make([]float32, n*k)
	table := make([]float32, w.tableLen())
	for r := range n {
		w.rowTable(table, r)
		w.dequantRow(v[r*k:(r+1)*k], r, 0, &goKernels, table)
	}
	return v
}

var _ runtime.WeightLoader = (*Backend)(nil)
