package model

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// orderedCPU is the CPU backend with a runtime.InputOrderer that moves
// inputs as an act-order backend does: every linear weight of input width
// K reads its input in one random order of that width (InOrder: the
// weight's columns moved to their slots), and the *To ops move their
// outputs' columns to the slots they are given.
type orderedCPU struct {
	*cpu.Backend
	t      *testing.T
	slots  map[int]runtime.Tensor // by input width
	perm   map[int][]int32        // their values: column c goes to perm[K][c]
	views  []runtime.Tensor       // InOrder weights, freed by the test
	placed int                    // outputs written to slots
}

func (o *orderedCPU) InputSlots(w runtime.Tensor) runtime.Tensor {
	sh := w.Shape()
	if len(sh) != 2 {
		return nil
	}
	K := sh[1]
	if s, ok := o.slots[K]; ok {
		return s
	}
	p := make([]int32, K)
	for c, v := range rand.New(rand.NewPCG(uint64(K), 9)).Perm(K) {
		p[c] = int32(v)
	}
	raw := make([]byte, 4*K)
	for c, v := range p {
		binary.LittleEndian.PutUint32(raw[4*c:], uint32(v))
	}
	s, err := o.Alloc(runtime.I32, K)
	if err == nil {
		err = o.UploadRaw(s, raw, runtime.I32)
	}
	if err != nil {
		o.t.Fatal(err)
	}
	o.slots[K], o.perm[K] = s, p
	return s
}

func (o *orderedCPU) InOrder(w runtime.Tensor) runtime.Tensor {
	N, K := runtime.Rows(w), runtime.Cols(w)
	src := make([]float32, N*K)
	if err := o.Download(src, w); err != nil {
		o.t.Fatal(err)
	}
	p := o.perm[K]
	dst := make([]float32, N*K)
	for n := range N {
		for c, s := range p {
			dst[n*K+int(s)] = src[n*K+c]
		}
	}
	v, err := o.Alloc(w.DType(), N, K)
	if err == nil {
		err = o.Upload(v, dst)
	}
	if err != nil {
		o.t.Fatal(err)
	}
	o.views = append(o.views, v)
	return v
}

// place moves the columns of t's rows to their slots.
func (o *orderedCPU) place(t, slots runtime.Tensor) {
	if slots == nil {
		return
	}
	rows, K := runtime.Rows(t), runtime.Cols(t)
	p := o.perm[K]
	if o.slots[K] != slots {
		o.t.Fatalf("slots of width %d for an output of %d columns", runtime.Cols(slots), K)
	}
	v := make([]float32, rows*K)
	if err := o.Download(v, t); err != nil {
		o.t.Fatal(err)
	}
	out := make([]float32, rows*K)
	for r := range rows {
		for c, s := range p {
			out[r*K+int(s)] = v[r*K+c]
		}
	}
	if err := o.Upload(t, out); err != nil {
		o.t.Fatal(err)
	}
	o.placed++
}

func (o *orderedCPU) RMSNormTo(dst, x, weight, slots runtime.Tensor, eps float32) {
	o.RMSNorm(dst, x, weight, eps)
	o.place(dst, slots)
}

func (o *orderedCPU) AddRMSNormTo(norm, x, delta, weight, slots runtime.Tensor, eps float32) {
	o.AddRMSNorm(norm, x, delta, weight, eps)
	o.place(norm, slots)
}

func (o *orderedCPU) PagedAttentionTo(dst, q, kc, vc, tables, pos runtime.Tensor, blockSize int, p runtime.AttentionParams, slots runtime.Tensor) {
	o.PagedAttention(dst, q, kc, vc, tables, pos, blockSize, p)
	o.place(dst, slots)
}

func (o *orderedCPU) MatMulGLUTo(dst, x, w, slots runtime.Tensor) {
	o.t.Fatal("MatMulGLUTo on a backend without GLU weights")
}

// TestDecodeInputOrder decodes three sequences on a backend whose weights
// read their inputs in orders of their own: each decode step must have
// its producers (the two norms, attention) write the products' inputs in
// those orders and multiply with the reordered weights, and give the plain
// backend's logits. Any input written in the wrong order, or a product
// with the weight of another order, changes them.
func TestDecodeInputOrder(t *testing.T) {
	dir := fixture(t, "models/openchat-tiny")
	ob := &orderedCPU{Backend: cpu.New(0), t: t, slots: map[int]runtime.Tensor{}, perm: map[int][]int32{}}
	mo, err := Load(dir, ob)
	if err != nil {
		t.Fatal(err)
	}
	defer mo.Close()
	defer func() {
		for _, v := range append(ob.views, func() []runtime.Tensor {
			var s []runtime.Tensor
			for _, t := range ob.slots {
				s = append(s, t)
			}
			return s
		}()...) {
			ob.Free(v)
		}
	}()
	for i, lw := range mo.layers {
		if lw.order == nil || lw.order.slots.attn == nil || lw.order.slots.o == nil || lw.order.slots.ffn == nil {
			t.Fatalf("layer %d: decode order %+v, want q/k/v, o_proj and gate/up inputs ordered", i, lw.order)
		}
		if lw.order.slots.down != nil {
			t.Errorf("layer %d: down_proj's input ordered without a GLU weight to write it", i)
		}
	}
	got, _ := stepAll(t, mo, 4)
	want, _ := stepAll(t, loadModel(t, dir), 4)
	// Three decode steps, three outputs a layer written to slots in each.
	if min := 3 * 3 * len(mo.layers); ob.placed < min {
		t.Errorf("%d outputs written to slots, want at least %d", ob.placed, min)
	}
	sameSteps(t, "in-order", got, want)
}
