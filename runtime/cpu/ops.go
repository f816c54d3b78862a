package cpu

import (
	"fmt"
	"math"

	"github.com/gptqtool/gptqtool/runtime"
)

// elementwise chunks: below this many elements an op runs on one thread.
const minChunk = 1 << 14

func sameLen(op string, ts ...*Tensor) {
	for _, t := range ts[1:] {
		if t.Len() != ts[0].Len() {
			panic(fmt.Sprintf("cpu: %s: tensors %v and %v differ in size", op, ts[0].shape, t.shape))
		}
	}
}

// Copy implements runtime.Backend.
func (b *Backend) Copy(dst, src runtime.Tensor) {
	d, s := tensorOf(dst), tensorOf(src)
	sameLen("copy", d, s)
	copy(d.data, s.data)
	if d.dt != s.dt {
		b.round(d)
	}
}

// Embedding implements runtime.Backend.
func (b *Backend) Embedding(dst, table runtime.Tensor, ids []int) {
	d, tb := tensorOf(dst), tensorOf(table)
	h, v := tb.cols(), tb.rows()
	if d.cols() != h || d.rows() != len(ids) {
		panic(fmt.Sprintf("cpu: embedding dst %v of %d ids from table %v", d.shape, len(ids), tb.shape))
	}
	for t, id := range ids {
		if id < 0 || id >= v {
			panic(fmt.Sprintf("cpu: embedding id %d outside vocab %d", id, v))
		}
		copy(d.data[t*h:(t+1)*h], tb.data[id*h:(id+1)*h])
	}
	if d.dt != tb.dt {
		b.round(d)
	}
}

// RMSNorm implements runtime.Backend. The sum of squares is accumulated in
// float64.
func (b *Backend) RMSNorm(dst, x, weight runtime.Tensor, eps float32) {
	d, xt, wt := tensorOf(dst), tensorOf(x), tensorOf(weight)
	sameLen("rmsnorm", d, xt)
	h := xt.cols()
	if wt.Len() != h {
		panic(fmt.Sprintf("cpu: rmsnorm weight %v for rows of %d", wt.shape, h))
	}
	rows := xt.rows()
	b.parallelRange(rows, max(1, minChunk/max(h, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			rmsRow(d.data[r*h:(r+1)*h], xt.data[r*h:(r+1)*h], wt.data, eps)
		}
		roundTo(d.dt, d.data[lo*h:hi*h])
	})
}

func rmsRow(dst, x, w []float32, eps float32) {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	// transformers: x * rsqrt(mean + eps) in fp32, then weight * that.
	inv := float32(1 / math.Sqrt(float64(float32(ss/float64(len(x)))+eps)))
	for i, v := range x {
		dst[i] = w[i] * (v * inv)
	}
}

// AddRMSNorm implements runtime.AddRMSNormer: x += delta, norm = RMSNorm(x).
func (b *Backend) AddRMSNorm(norm, x, delta, weight runtime.Tensor, eps float32) {
	n, xt, dt, wt := tensorOf(norm), tensorOf(x), tensorOf(delta), tensorOf(weight)
	sameLen("addrmsnorm", n, xt, dt)
	h := xt.cols()
	if wt.Len() != h {
		panic(fmt.Sprintf("cpu: addrmsnorm weight %v for rows of %d", wt.shape, h))
	}
	b.parallelRange(xt.rows(), max(1, minChunk/max(h, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr := xt.data[r*h : (r+1)*h]
			for i, v := range dt.data[r*h : (r+1)*h] {
				xr[i] += v
			}
			roundTo(xt.dt, xr) // the sum is stored, then normalised
			rmsRow(n.data[r*h:(r+1)*h], xr, wt.data, eps)
		}
		roundTo(n.dt, n.data[lo*h:hi*h])
	})
}

func (b *Backend) elementwise(op string, dst runtime.Tensor, fn func(d []float32, lo, hi int), ins ...runtime.Tensor) {
	d := tensorOf(dst)
	ts := []*Tensor{d}
	for _, t := range ins {
		ts = append(ts, tensorOf(t))
	}
	sameLen(op, ts...)
	for _, t := range ts[1:] {
		if t.dt != d.dt {
			panic(fmt.Sprintf("cpu: %s of %v into %v: one dtype, as the CUDA backend asks", op, t.dt, d.dt))
		}
	}
	b.parallelRange(d.Len(), minChunk, func(lo, hi int) {
		fn(d.data, lo, hi)
		roundTo(d.dt, d.data[lo:hi])
	})
}

// Add implements runtime.Backend.
func (b *Backend) Add(dst, a, c runtime.Tensor) {
	at, ct := tensorOf(a), tensorOf(c)
	b.elementwise("add", dst, func(d []float32, lo, hi int) {
		for i := lo; i < hi; i++ {
			d[i] = at.data[i] + ct.data[i]
		}
	}, a, c)
}

// AddBias implements runtime.Backend.
func (b *Backend) AddBias(x, bias runtime.Tensor) {
	xt, bt := tensorOf(x), tensorOf(bias)
	n := xt.cols()
	if bt.Len() != n || bt.dt != xt.dt {
		panic(fmt.Sprintf("cpu: add bias %v %v to %v rows of %d", bt.dt, bt.shape, xt.dt, n))
	}
	b.parallelRange(xt.rows(), max(1, minChunk/max(n, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := xt.data[r*n : (r+1)*n]
			for j, v := range bt.data {
				row[j] += v
			}
		}
		roundTo(xt.dt, xt.data[lo*n:hi*n])
	})
}

// Mul implements runtime.Backend.
func (b *Backend) Mul(dst, a, c runtime.Tensor) {
	at, ct := tensorOf(a), tensorOf(c)
	b.elementwise("mul", dst, func(d []float32, lo, hi int) {
		for i := lo; i < hi; i++ {
			d[i] = at.data[i] * ct.data[i]
		}
	}, a, c)
}

func silu(v float32) float32 {
	return v / (1 + float32(math.Exp(float64(-v))))
}

// SiLU implements runtime.Backend.
func (b *Backend) SiLU(dst, x runtime.Tensor) {
	xt := tensorOf(x)
	b.elementwise("silu", dst, func(d []float32, lo, hi int) {
		for i := lo; i < hi; i++ {
			d[i] = silu(xt.data[i])
		}
	}, x)
}

// SwiGLU implements runtime.SwiGLUer: dst = silu(gate) * up.
func (b *Backend) SwiGLU(dst, gate, up runtime.Tensor) {
	gt, ut := tensorOf(gate), tensorOf(up)
	b.elementwise("swiglu", dst, func(d []float32, lo, hi int) {
		for i := lo; i < hi; i++ {
			d[i] = silu(gt.data[i]) * ut.data[i]
		}
	}, gate, up)
}

// GELUGLU implements runtime.GELUGLUer: dst = gelu_tanh(gate) * up.
func (b *Backend) GELUGLU(dst, gate, up runtime.Tensor) {
	gt, ut := tensorOf(gate), tensorOf(up)
	b.elementwise("gelu-glu", dst, func(d []float32, lo, hi int) {
		for i := lo; i < hi; i++ {
			d[i] = geluTanh(gt.data[i]) * ut.data[i]
		}
	}, gate, up)
}

// geluTanh is torch's gelu(x, approximate="tanh") in fp32:
// 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))).
func geluTanh(x float32) float32 {
	inner := float32(math.Sqrt(2/math.Pi)) * (x + 0.044715*x*x*x)
	return 0.5 * x * (1 + float32(math.Tanh(float64(inner))))
}

// Scale implements runtime.Scaler: dst = x * s.
func (b *Backend) Scale(dst, x runtime.Tensor, s float32) {
	xt := tensorOf(x)
	b.elementwise("scale", dst, func(d []float32, lo, hi int) {
		for i := lo; i < hi; i++ {
			d[i] = xt.data[i] * s
		}
	}, x)
}

// Softcap implements runtime.Softcapper: c·tanh(x/c), tanh in float64.
func (b *Backend) Softcap(dst, x runtime.Tensor, c float32) {
	xt := tensorOf(x)
	b.elementwise("softcap", dst, func(d []float32, lo, hi int) {
		for i := lo; i < hi; i++ {
			d[i] = c * float32(math.Tanh(float64(xt.data[i]/c)))
		}
	}, x)
}

// ScaleRows implements runtime.RowScaler.
func (b *Backend) ScaleRows(dst, x, scales runtime.Tensor) {
	xt, st := tensorOf(x), tensorOf(scales)
	cols := xt.cols()
	if st.dt != runtime.F32 || st.Len() != xt.rows() {
		panic(fmt.Sprintf("cpu: scale rows of %v by %v %v", xt.shape, st.dt, st.shape))
	}
	b.elementwise("scale-rows", dst, func(d []float32, lo, hi int) {
		for i := lo; i < hi; i++ {
			d[i] = xt.data[i] * st.data[i/cols]
		}
	}, x)
}

// SigmoidGateRows implements runtime.SigmoidGater: the sigmoid in
// float64, rounded to x's dtype.
func (b *Backend) SigmoidGateRows(dst, x, logits runtime.Tensor) {
	xt, gt := tensorOf(x), tensorOf(logits)
	rows, cols := xt.rows(), xt.cols()
	if gt.dt != xt.dt || gt.Len() != rows {
		panic(fmt.Sprintf("cpu: sigmoid gate of rows %v by %v %v", xt.shape, gt.dt, gt.shape))
	}
	g := make([]float32, rows)
	for r := range g {
		g[r] = float32(1 / (1 + math.Exp(-float64(gt.data[r]))))
	}
	roundTo(xt.dt, g)
	b.elementwise("sigmoid-gate-rows", dst, func(d []float32, lo, hi int) {
		for i := lo; i < hi; i++ {
			d[i] = xt.data[i] * g[i/cols]
		}
	}, x)
}

// OffsetRMSNorm implements runtime.OffsetRMSNormer: Gemma's RMSNorm,
// (x * inv) * (1 + w) in fp32.
func (b *Backend) OffsetRMSNorm(dst, x, weight runtime.Tensor, eps float32) {
	d, xt, wt := tensorOf(dst), tensorOf(x), tensorOf(weight)
	sameLen("rmsnorm-offset", d, xt)
	h := xt.cols()
	if wt.Len() != h {
		panic(fmt.Sprintf("cpu: rmsnorm-offset weight %v for rows of %d", wt.shape, h))
	}
	w1 := make([]float32, h)
	for i, w := range wt.data {
		w1[i] = 1 + w
	}
	b.parallelRange(xt.rows(), max(1, minChunk/max(h, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			rmsRow(d.data[r*h:(r+1)*h], xt.data[r*h:(r+1)*h], w1, eps)
		}
		roundTo(d.dt, d.data[lo*h:hi*h])
	})
}

// RoPE implements runtime.Backend.
func (b *Backend) RoPE(x runtime.Tensor, headDim, pos0 int, inv []float32) {
	b.rope(tensorOf(x), headDim, inv, func(t int) int { return pos0 + t })
}

// ScaleTail implements runtime.TailScaler.
func (b *Backend) ScaleTail(x runtime.Tensor, headDim, c0 int, f float32) {
	xt := tensorOf(x)
	cols := xt.cols()
	if headDim <= 0 || cols%headDim != 0 || c0 < 0 || c0 > headDim {
		panic(fmt.Sprintf("cpu: scale tail head dim %d from %d for rows of %d", headDim, c0, cols))
	}
	for t := range xt.rows() {
		row := xt.data[t*cols : (t+1)*cols]
		for h0 := 0; h0 < cols; h0 += headDim {
			for c := h0 + c0; c < h0+headDim; c++ {
				row[c] *= f
			}
		}
		roundTo(xt.dt, row)
	}
}

// rope rotates every head of each row t of xt at position pos(t) by the
// inverse frequencies inv [rotaryDim/2]: the first 2·len(inv) channels of
// a head, the rest kept (partial RoPE).
func (b *Backend) rope(xt *Tensor, headDim int, inv []float32, pos func(t int) int) {
	cols := xt.cols()
	if headDim <= 0 || headDim%2 != 0 || cols%headDim != 0 || len(inv) == 0 || 2*len(inv) > headDim {
		panic(fmt.Sprintf("cpu: rope head dim %d (%d inverse frequencies) for rows of %d", headDim, len(inv), cols))
	}
	d2 := len(inv)
	rows := xt.rows()
	b.parallelRange(rows, max(1, minChunk/cols), func(lo, hi int) {
		cos := make([]float32, d2)
		sin := make([]float32, d2)
		for t := lo; t < hi; t++ {
			pos := float32(pos(t))
			for j := range d2 {
				s, c := math.Sincos(float64(pos * inv[j]))
				cos[j], sin[j] = float32(c), float32(s)
			}
			row := xt.data[t*cols : (t+1)*cols]
			for h0 := 0; h0 < cols; h0 += headDim {
				lo, hi := row[h0:h0+d2], row[h0+d2:h0+2*d2]
				for j := range d2 {
					x1, x2 := lo[j], hi[j]
					lo[j] = x1*cos[j] - x2*sin[j]
					hi[j] = x2*cos[j] + x1*sin[j]
				}
			}
			roundTo(xt.dt, row)
		}
	})
}
