package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/gptqtool/gptqtool/runtime"
)

// deferNorm is a norm weight prepared by DeferNorm (kernels/qgemv.cu
// QNorm). Its tensor's memory holds yw, fp32 [k]: the weight over its
// largest magnitude (wmax), in the producer's output order; then, at
// statsOff bytes, the producer's sums of squares, fp32 [qgemvRows][parts],
// parts = ceil(k / QCOLS) (one a column slab of the producer).
type deferNorm struct {
	k        int
	wmax     float32
	slots    uint64 // the consumer's input slots (0: its input as it is)
	statsOff uint64
	// producer and consumer are the weights it was made for.
	producer, consumer *quant
}

// defaultNormDefer: norms are not taken apart unless GPTQTOOL_NORM_DEFER=N
// (steps of at least N rows) says so: not yet measured on the device.
const defaultNormDefer = 0

// DeferNorm implements runtime.NormDeferrer: weight, an RMSNorm weight [K]
// of fp16 rows, prepared for producer's products to write (MatMulAddNorm)
// and consumer's to read (MatMulSplitRoPEDeferred, MatMulGLUDeferred), y
// in consumer's input slots (both weights as loaded, not InOrder views).
// It returns nil (no error) where the norm stays whole: the switch off
// (GPTQTOOL_NORM_DEFER=0), kernels not compiled for it (qnWG), rows of
// bf16 or fp32 (the _w kernels stage them
// in fp16 times 2^-8, where y, about rms(x) times smaller than the normed
// row, would lose its small values), a weight whose products do not run
// the _w kernels (groups not of whole chunks, a decode beyond fp16), a
// fused producer, or a producer whose outputs are not the consumer's
// inputs.
func (b *Backend) DeferNorm(weight, producer, consumer runtime.Tensor) (runtime.Tensor, error) {
	nt, pt, ct := b.tensor(weight), b.tensor(producer), b.tensor(consumer)
	p, c := pt.q, ct.q
	if b.normDefer == 0 || !b.qnWG() || p == nil || c == nil || nt.q != nil || nt.dt != runtime.F16 ||
		p.glu || p.seg1 != p.n || nt.n != c.k || p.n != c.k || !b.wgRuns(p) || !b.wgRuns(c) {
		return nil, nil
	}
	w := make([]float32, nt.n)
	if err := b.Download(w, weight); err != nil {
		return nil, fmt.Errorf("cuda: deferred norm weight: %w", err)
	}
	var wmax float32
	for i, v := range w {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("cuda: deferred norm weight: element %d is %v", i, v)
		}
		wmax = max(wmax, float32(math.Abs(float64(v))))
	}
	if wmax == 0 {
		return nil, nil // an all-zero norm: its products are zero either way; leave it whole
	}
	for i := range w {
		w[i] /= wmax
	}
	parts := (nt.n + 127) / 128
	statsOff := (uint64(nt.n)*4 + 255) &^ 255
	t, err := b.Alloc(runtime.F32, int(statsOff/4)+qgemvRows*parts)
	if err != nil {
		return nil, fmt.Errorf("cuda: deferred norm weight: %w", err)
	}
	dt := b.tensor(t)
	raw := make([]byte, 4*len(w))
	for i, v := range w {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	b.enter()
	err = b.htod(dt.ptr, raw)
	b.exit()
	if err != nil {
		b.Free(t)
		return nil, fmt.Errorf("cuda: deferred norm weight: %w", err)
	}
	dt.dnorm = &deferNorm{k: nt.n, wmax: wmax, statsOff: statsOff, producer: p, consumer: c}
	if s := b.InputSlots(consumer); s != nil {
		dt.dnorm.slots = b.tensor(s).ptr
	}
	return t, nil
}

// wgRuns reports whether q's products run the _w kernels for the rows
// NormDeferred admits.
func (b *Backend) wgRuns(q *quant) bool {
	return q.gs%chunkInputs(q.bits) == 0 && q.f16w
}

// NormDeferred implements runtime.NormDeferrer: steps of at least
// GPTQTOOL_NORM_DEFER rows (SetNormDefer) whose products run kernels
// compiled to take part (qgemv.cu QNorm): with
// GPTQTOOL_KERNEL_DEFINES=QN_WG=1 the warpgroup-MMA kernels (by default
// 17-64 rows), with QN_ALL=1 also the others, for steps of one pass (up to
// 32 rows); never on the dequantize + cuBLAS path.
func (b *Backend) NormDeferred(rows int) bool {
	b.enter()
	defer b.exit()
	if b.normDefer == 0 || rows < b.normDefer || rows > qgemvRows || b.dequantGEMM {
		return false
	}
	tile := 0
	for qmmaTiles[tile]*8 < rows {
		tile++
	}
	if b.qmmaWG > 0 && b.WarpgroupMMA() && qmmaTiles[tile] >= b.qmmaWG {
		return b.qnWG()
	}
	return rows <= qmmaPass && b.qnAll()
}

// NormDeferFrom is the fewest rows of the steps that take norms apart (0:
// none), as SetNormDefer or GPTQTOOL_NORM_DEFER set it.
func (b *Backend) NormDeferFrom() int {
	b.enter()
	defer b.exit()
	return b.normDefer
}

// qnAll reports whether the kernels were compiled with QN_ALL=1
// (GPTQTOOL_KERNEL_DEFINES), so that all of them but the _n ones take part
// in deferred norms, and qnWG whether at least the _w kernels do (QN_WG=1
// or QN_ALL=1). By default none do: their code is then what it was
// without deferred norms.
func (b *Backend) qnAll() bool { return slices.Contains(b.extraDefines, "-DQN_ALL=1") }

func (b *Backend) qnWG() bool { return b.qnAll() || slices.Contains(b.extraDefines, "-DQN_WG=1") }

// SetNormDefer sets the fewest rows of the steps that take norms apart (as
// GPTQTOOL_NORM_DEFER does; 0: none), for tests and benchmarks; the
// weights DeferNorm prepares do not depend on it, but it makes none while
// it is 0.
func (b *Backend) SetNormDefer(rows int) {
	b.enter()
	defer b.exit()
	b.normDefer = max(0, min(rows, qgemvRows))
}

// dnOf checks a DeferNorm weight for use with the weight w: the producer
// it was made for (or its view InOrder), or the consumer as it reads y (its
// view InOrder where y is written in its input slots, else itself).
func (b *Backend) dnOf(op string, dn runtime.Tensor, w *Tensor, producer bool) (*Tensor, *deferNorm) {
	t := b.tensor(dn)
	d := t.dnorm
	if d == nil {
		panic(fmt.Sprintf("cuda: %s: norm weight %v %v is not a DeferNorm weight", op, t.dt, t.shape))
	}
	ok := false
	switch {
	case w.q == nil:
	case producer:
		ok = w.q == d.producer || (d.producer.inSeq != nil && w.q == d.producer.inSeq.q)
	case d.slots != 0:
		ok = d.consumer.inSeq != nil && w.q == d.consumer.inSeq.q
	default:
		ok = w.q == d.consumer
	}
	if !ok {
		panic(fmt.Sprintf("cuda: %s: the DeferNorm weight %v was made for another product (a consumer reads y through InOrder of the weight where it has input slots)", op, t.shape))
	}
	return t, d
}

// MatMulAddNorm implements runtime.NormDeferrer: MatMulAdd(dst, x, w, add),
// and y [M, K] (K = w's outputs, dst's dtype) = dst ⊙ dn's weight / its
// largest magnitude, column c at the consumer's input slot of c, and dn's
// sums of squares of dst's rows, for the consumer's product of the next
// call (MatMulSplitRoPEDeferred or MatMulGLUDeferred with dn).
func (b *Backend) MatMulAddNorm(dst, x, w, add, y, dn runtime.Tensor) {
	d, xt, wt, at, yt := b.tensor(dst), b.tensor(x), b.tensor(w), b.tensor(add), b.tensor(y)
	if at.n != d.n || at.dt != d.dt {
		panic(fmt.Sprintf("cuda: matmul-add-norm dst %v %v, add %v %v", d.dt, d.shape, at.dt, at.shape))
	}
	dt, dd := b.dnOf("matmul-add-norm", dn, wt, true)
	if yt.dt != d.dt || runtime.Rows(yt) != runtime.Rows(d) || runtime.Cols(yt) != dd.k {
		panic(fmt.Sprintf("cuda: matmul-add-norm y %v %v, want %v [%d %d]", yt.dt, yt.shape, d.dt, runtime.Rows(d), dd.k))
	}
	for _, o := range []*Tensor{d, xt} {
		if yt.ptr < o.ptr+uint64(o.Bytes()) && o.ptr < yt.ptr+uint64(yt.Bytes()) {
			panic("cuda: matmul-add-norm with y over dst or x")
		}
	}
	b.enter()
	defer b.exit()
	b.qmatmul([3]*Tensor{d}, xt, wt, at, 0, nil, nil, &qnormArg{y: yt.ptr, yw: dt.ptr, ysl: dd.slots, ssq: dt.ptr + dd.statsOff})
}

// MatMulSplitRoPEDeferred implements runtime.NormDeferrer:
// MatMulSplitRoPE(dsts, RMSNorm(x0), nil, 0, w, …) for the rows x0 that
// the last MatMulAddNorm with dn wrote as dst, given its y.
func (b *Backend) MatMulSplitRoPEDeferred(dsts []runtime.Tensor, y, dn runtime.Tensor, eps float32, w runtime.Tensor,
	kc, vc, pos, slot runtime.Tensor, headDim int, theta float64) {
	b.splitRoPE(dsts, y, w, nil, b.consumerArg(dn, b.tensor(w), eps), kc, vc, pos, slot, headDim, theta)
}

// MatMulGLUDeferred implements runtime.NormDeferrer: MatMulGLUTo(dst,
// RMSNorm(x0), w, slots) for the rows x0 that the last MatMulAddNorm with
// dn wrote as dst, given its y.
func (b *Backend) MatMulGLUDeferred(dst, y, dn runtime.Tensor, eps float32, w, slots runtime.Tensor) {
	d, yt, wt := b.tensor(dst), b.tensor(y), b.tensor(w)
	if wt.q == nil || !wt.q.glu {
		panic("cuda: deferred-norm glu matmul with a weight that is not a GLU fusion")
	}
	arg := b.consumerArg(dn, wt, eps)
	sp := b.slotsPtr("deferred-norm glu matmul", slots, wt.q.n/2, d, yt)
	b.enter()
	defer b.exit()
	b.qmatmul([3]*Tensor{d}, yt, wt, nil, sp, nil, nil, arg)
}

// consumerArg is the kernels' QNorm for a consumer of dn.
func (b *Backend) consumerArg(dn runtime.Tensor, w *Tensor, eps float32) *qnormArg {
	t, d := b.dnOf("deferred-norm matmul", dn, w, false)
	return &qnormArg{rsq: t.ptr + d.statsOff, rsc: d.wmax, eps: eps}
}

// qnormArg is a product's part in a norm taken apart (qgemv.cu QNorm):
// the producer's y, yw, ysl and ssq, or the consumer's rsq, rsc and eps.
type qnormArg struct {
	y, yw, ysl, ssq uint64
	rsq             uint64
	rsc, eps        float32
}
