package model

import (
	"math"
	"testing"

	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// deferCPU adds runtime.NormDeferrer to the emulated quantized backend, on
// the host: MatMulAddNorm is MatMulAdd, then y = dst · w / max|w| and each
// row's sum of squares of dst kept with the weight; a consumer scales y's
// rows by max|w| / rms and multiplies. It counts the calls of each kind.
type deferCPU struct {
	*quantCPU
	norms              map[runtime.Tensor]*hostNorm
	produced, consumed int
}

// hostNorm is a deferred norm's weight and the sums of squares of the rows
// its producer wrote last (nil until then, and again once consumed).
type hostNorm struct {
	w          []float32
	wmax       float32
	sq         []float64
	prod, cons runtime.Tensor
}

func (d *deferCPU) DeferNorm(weight, producer, consumer runtime.Tensor) (runtime.Tensor, error) {
	v := make([]float32, weight.Len())
	if err := d.Download(v, weight); err != nil {
		return nil, err
	}
	t, err := d.Backend.Alloc(runtime.F32, 1)
	if err != nil {
		return nil, err
	}
	n := &hostNorm{w: v, prod: producer, cons: consumer}
	for _, x := range v {
		n.wmax = max(n.wmax, float32(math.Abs(float64(x))))
	}
	d.norms[t] = n
	return t, nil
}

func (d *deferCPU) NormDeferred(rows int) bool { return true }

func (d *deferCPU) MatMulAddNorm(dst, x, w, add, y, dn runtime.Tensor) {
	n := d.norms[dn]
	if n == nil || w != n.prod {
		d.t.Fatal("MatMulAddNorm with a norm weight not made for its product")
	}
	v, M, N := d.product(x, w)
	a := make([]float32, M*N)
	if err := d.Download(a, add); err != nil {
		d.t.Fatal(err)
	}
	yv := make([]float32, M*N)
	n.sq = make([]float64, M)
	for i := range v {
		v[i] += a[i]
		yv[i] = v[i] * (n.w[i%N] / n.wmax)
		n.sq[i/N] += float64(v[i]) * float64(v[i])
	}
	if err := d.Upload(dst, v); err != nil {
		d.t.Fatal(err)
	}
	if err := d.Upload(y, yv); err != nil {
		d.t.Fatal(err)
	}
	d.produced++
}

// normedOf returns the rows y stands for, normalized: y · max|w| / rms.
func (d *deferCPU) normedOf(y, dn, w runtime.Tensor, eps float32) runtime.Tensor {
	n := d.norms[dn]
	if n == nil || w != n.cons || n.sq == nil {
		d.t.Fatal("a deferred-norm product with a norm weight not made for it, or not produced since")
	}
	M, K := runtime.Rows(y), runtime.Cols(y)
	v := make([]float32, M*K)
	if err := d.Download(v, y); err != nil {
		d.t.Fatal(err)
	}
	for m := range M {
		s := float32(float64(n.wmax) / math.Sqrt(n.sq[m]/float64(K)+float64(eps)))
		for k := range K {
			v[m*K+k] *= s
		}
	}
	n.sq = nil
	xn, err := d.Backend.Alloc(runtime.F32, M, K)
	if err == nil {
		err = d.Upload(xn, v)
	}
	if err != nil {
		d.t.Fatal(err)
	}
	d.consumed++
	return xn
}

func (d *deferCPU) MatMulSplitRoPEDeferred(dsts []runtime.Tensor, y, dn runtime.Tensor, eps float32, w runtime.Tensor,
	kc, vc, pos, slot runtime.Tensor, headDim int, theta float64) {
	xn := d.normedOf(y, dn, w, eps)
	defer d.Free(xn)
	ropeThen(d, func() { d.MatMulSplit(dsts, xn, w) }, dsts, kc, vc, pos, slot, headDim, theta)
}

func (d *deferCPU) MatMulGLUDeferred(dst, y, dn runtime.Tensor, eps float32, w, slots runtime.Tensor) {
	if slots != nil {
		d.t.Fatal("output slots on a backend whose weights read their inputs as they are")
	}
	xn := d.normedOf(y, dn, w, eps)
	defer d.Free(xn)
	d.MatMulGLU(dst, xn, w)
}

// TestDecodeNormDefer checks the decode step with norms taken apart
// (runtime.NormDeferrer): an act-order GPTQ checkpoint of openchat-tiny on
// an emulated backend decodes to the logits of the same backend with the
// norm kernels; every layer's post-attention norm and every input norm
// but the first are taken apart (o_proj and the previous layer's down_proj
// write y, gate/up and q/k/v read it) in every decode step, and the prompts'
// forward and the final norm keep theirs.
func TestDecodeNormDefer(t *testing.T) {
	open := actOrderBF16(t)
	mp := open(&quantCPU{Backend: cpu.New(0), t: t, widths: map[runtime.Tensor][]int{}})
	defer mp.Close()
	want, _ := stepAll(t, mp, 4)
	db := &deferCPU{quantCPU: &quantCPU{Backend: cpu.New(0), t: t, widths: map[runtime.Tensor][]int{}}, norms: map[runtime.Tensor]*hostNorm{}}
	md := open(db)
	defer md.Close()
	for i, lw := range md.layers {
		if lw.deferred.ffn == nil || (i > 0) != (lw.deferred.attn != nil) {
			t.Fatalf("layer %d: deferred norms %+v, want the post-attention one, and the input one past layer 0", i, lw.deferred)
		}
	}
	got, _ := stepAll(t, md, 4)
	// Three decode steps after the prompts' forward: 2L - 1 norms a step.
	if n := 3 * (2*len(md.layers) - 1); db.produced != n || db.consumed != n {
		t.Errorf("%d norms written and %d read taken apart, want %d each", db.produced, db.consumed, n)
	}
	sameSteps(t, "norm-deferred", got, want)
}
