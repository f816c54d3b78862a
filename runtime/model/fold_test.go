package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// quantCPU emulates on the CPU backend a backend that keeps GPTQ weights
// quantized and fuses them (runtime.QuantLoader, runtime.FusedQuantLoader):
// each weight it loads is its host dequantization (QuantWeight.Dequantize),
// BF16 activations are fp32, the fused products run as plain ones with
// the outputs split (or gated) on the host. It records the weights given.
type quantCPU struct {
	*cpu.Backend
	t      *testing.T
	loaded []*runtime.QuantWeight    // LoadQuant's
	glus   [][2]*runtime.QuantWeight // LoadQuantGLU's
	widths map[runtime.Tensor][]int  // a split weight's output widths
}

func (q *quantCPU) DTypes() []runtime.DType { return []runtime.DType{runtime.F32, runtime.BF16} }

// QuantDType is the CUDA backend's rule (16-bit activations), not the
// embedded CPU backend's (F32).
func (q *quantCPU) QuantDType(dt runtime.DType) bool { return dt == runtime.F16 || dt == runtime.BF16 }

func (q *quantCPU) Alloc(dt runtime.DType, shape ...int) (runtime.Tensor, error) {
	if dt == runtime.BF16 {
		dt = runtime.F32
	}
	return q.Backend.Alloc(dt, shape...)
}

// dense uploads ws dequantized one under another: [ΣN, K].
func (q *quantCPU) dense(ws ...*runtime.QuantWeight) (runtime.Tensor, error) {
	var v []float32
	N := 0
	for _, w := range ws {
		if err := w.Validate(); err != nil {
			return nil, err
		}
		v = append(v, w.Dequantize()...)
		N += w.N
	}
	t, err := q.Backend.Alloc(runtime.F32, N, ws[0].K)
	if err == nil {
		err = q.Upload(t, v)
	}
	return t, err
}

func (q *quantCPU) LoadQuant(w *runtime.QuantWeight) (runtime.Tensor, error) {
	q.loaded = append(q.loaded, w)
	return q.dense(w)
}

func (q *quantCPU) LoadQuantSplit(ws []*runtime.QuantWeight) (runtime.Tensor, error) {
	t, err := q.dense(ws...)
	if err == nil {
		for _, w := range ws {
			q.widths[t] = append(q.widths[t], w.N)
		}
	}
	return t, err
}

func (q *quantCPU) LoadQuantGLU(gate, up *runtime.QuantWeight) (runtime.Tensor, error) {
	q.glus = append(q.glus, [2]*runtime.QuantWeight{gate, up})
	return q.dense(gate, up)
}

// product returns x·wᵀ on the host, [M, N].
func (q *quantCPU) product(x, w runtime.Tensor) ([]float32, int, int) {
	M, N := runtime.Rows(x), runtime.Rows(w)
	y, err := q.Backend.Alloc(runtime.F32, M, N)
	if err != nil {
		q.t.Fatal(err)
	}
	defer q.Free(y)
	q.MatMul(y, x, w)
	v := make([]float32, M*N)
	if err := q.Download(v, y); err != nil {
		q.t.Fatal(err)
	}
	return v, M, N
}

func (q *quantCPU) MatMulSplit(dsts []runtime.Tensor, x, w runtime.Tensor) {
	v, M, N := q.product(x, w)
	c0 := 0
	for i, n := range q.widths[w] {
		out := make([]float32, M*n)
		for m := range M {
			copy(out[m*n:(m+1)*n], v[m*N+c0:m*N+c0+n])
		}
		if err := q.Upload(dsts[i], out); err != nil {
			q.t.Fatal(err)
		}
		c0 += n
	}
}

func (q *quantCPU) MatMulGLU(dst, x, w runtime.Tensor) {
	v, M, N := q.product(x, w)
	n := N / 2
	out := make([]float32, M*n)
	for m := range M {
		for c := range n {
			g, u := float64(v[m*N+c]), float64(v[m*N+n+c])
			out[m*n+c] = float32(g / (1 + math.Exp(-g)) * u)
		}
	}
	if err := q.Upload(dst, out); err != nil {
		q.t.Fatal(err)
	}
}

// actOrderGPTQ is the checkpoint of the fixture model rel with every linear
// module replaced by random 8-bit GPTQ tensors (group size 32) with act
// order: g_idx as desc_act writes it, one order per input (q/k/v share
// theirs, as do gate/up).
func actOrderGPTQ(t *testing.T, rel string) (Weights, *hfconfig.Config, *gptq.QuantizeConfig, dims) {
	dir := fixture(t, rel)
	set, cfg := fixtures.OpenCheckpoint(t, dir)
	d, err := dimsOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const bits, gs = 8, 32
	qcfg := gptq.DefaultQuantizeConfig()
	qcfg.Bits, qcfg.GroupSize, qcfg.DescAct = bits, gs, true
	r := rand.New(rand.NewPCG(5, 6))
	qw := overlay{base: set, over: map[string]safetensors.Tensor{}, drop: map[string]bool{}}
	for i := range cfg.NumHiddenLayers {
		// Modules reading one input share its Hessian, so its order.
		shared := map[string][]int32{}
		for j, mod := range LinearModules {
			name := LayerPrefix(i) + "." + mod
			N, K, _ := d.linearShape(mod)
			G := (K + gs - 1) / gs
			q, z, _, scBytes := randomModule(r, K, N, G, bits, 100, 56, 0.0005, 0.002)
			// desc_act: the i-th input by the Hessian's order is in group i/gs.
			input := map[int]string{qProj: "attn", kProj: "attn", vProj: "attn", gateProj: "ffn", upProj: "ffn"}[j]
			gidx := shared[input]
			if gidx == nil {
				gidx = make([]int32, K)
				for i, k := range r.Perm(K) {
					gidx[k] = int32(i / gs)
				}
				if input != "" {
					shared[input] = gidx
				}
			}
			putGPTQ(t, qw, name, q, z, scBytes, gidx, K, N, bits)
		}
	}
	return qw, cfg, &qcfg, d
}

// TestFoldDownOrder checks that a layer's down_proj act order folds into
// gate/up's output columns on a backend that fuses quantized weights: an
// 8-bit act-order GPTQ checkpoint of stories260K (every module quantized,
// g_idx as desc_act writes it) loaded on quantCPU binds down_proj without
// its permutation and gives the logits of the same checkpoint dequantized
// (the reference path); without the fold the GLU output would reach
// down_proj in the wrong order.
func TestFoldDownOrder(t *testing.T) {
	qw, cfg, qcfg, d := actOrderGPTQ(t, "models/stories260K-hf-mistral")
	b := &quantCPU{Backend: cpu.New(0), t: t, widths: map[runtime.Tensor][]int{}}
	folded, err := bind(qw, cfg, qcfg, b, Options{DType: runtime.BF16})
	if err != nil {
		t.Fatal(err)
	}
	defer folded.Close()
	ref, err := bind(qw, cfg, qcfg, b, Options{DType: runtime.BF16, Dequantize: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()

	// Every layer: gate/up fused with their columns in down_proj's order,
	// down_proj loaded without a permutation.
	if len(b.glus) != cfg.NumHiddenLayers {
		t.Fatalf("%d GLU weights loaded, want %d", len(b.glus), cfg.NumHiddenLayers)
	}
	downs := 0
	for _, w := range b.loaded {
		if w.K == d.inter {
			downs++
			if w.Perm != nil {
				t.Error("down_proj loaded with its permutation: not folded into gate/up")
			}
		}
	}
	if downs != cfg.NumHiddenLayers {
		t.Errorf("%d down_proj weights loaded quantized, want %d", downs, cfg.NumHiddenLayers)
	}

	ids := []int{1, 403, 407, 261, 378, 432, 290, 31}
	got, err := folded.Forward(ids, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.Forward(ids, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var diff, scale float64
	for i := range want {
		diff = max(diff, math.Abs(float64(got[i]-want[i])))
		scale = max(scale, math.Abs(float64(want[i])))
	}
	// The products add the same terms in another order (fp32).
	if diff > 1e-4*scale || scale == 0 {
		t.Errorf("folded logits differ from the dequantized reference by %.3g (largest logit %.3g)", diff, scale)
	}
}

// normCPU is quantCPU with products that normalize their own input
// (runtime.NormFuser), emulated: the norm into a scratch, then the
// product; it counts the fused calls.
type normCPU struct {
	*quantCPU
	fused int
}

func (n *normCPU) FuseNorm(weight, w runtime.Tensor) (runtime.Tensor, error) {
	v := make([]float32, weight.Len())
	if err := n.Download(v, weight); err != nil {
		return nil, err
	}
	t, err := n.Backend.Alloc(runtime.F32, len(v))
	if err == nil {
		err = n.Upload(t, v)
	}
	return t, err
}

func (n *normCPU) NormFusedRows() int { return 8 }

func (n *normCPU) normed(x, nw runtime.Tensor, eps float32) runtime.Tensor {
	xn, err := n.Backend.Alloc(runtime.F32, x.Shape()...)
	if err != nil {
		n.t.Fatal(err)
	}
	n.RMSNorm(xn, x, nw, eps)
	n.fused++
	return xn
}

func (n *normCPU) MatMulSplitNorm(dsts []runtime.Tensor, x, nw runtime.Tensor, eps float32, w runtime.Tensor) {
	xn := n.normed(x, nw, eps)
	defer n.Free(xn)
	n.MatMulSplit(dsts, xn, w)
}

func (n *normCPU) MatMulGLUNorm(dst, x, nw runtime.Tensor, eps float32, w runtime.Tensor) {
	xn := n.normed(x, nw, eps)
	defer n.Free(xn)
	n.MatMulGLU(dst, xn, w)
}

// actOrderBF16 binds an act-order GPTQ checkpoint of openchat-tiny with
// bf16 activations to a backend.
func actOrderBF16(t *testing.T) func(runtime.Backend) *Model {
	qw, cfg, qcfg, _ := actOrderGPTQ(t, "models/openchat-tiny")
	return func(b runtime.Backend) *Model {
		m, err := bind(qw, cfg, qcfg, b, Options{DType: runtime.BF16})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
}

// TestDecodeNormFuse checks the decode step with products that normalize
// their own input (runtime.NormFuser): an act-order GPTQ checkpoint of
// openchat-tiny on an emulated fusing backend decodes to the logits of the
// same backend without the fusion (o_proj then adds the residual itself and
// gate/up normalize the updated stream), every layer's q/k/v and gate/up
// products normalizing in every decode step.
func TestDecodeNormFuse(t *testing.T) {
	open := actOrderBF16(t)
	nb := &normCPU{quantCPU: &quantCPU{Backend: cpu.New(0), t: t, widths: map[runtime.Tensor][]int{}}}
	mf := open(nb)
	defer mf.Close()
	for i, lw := range mf.layers {
		if lw.normed.attn == nil || lw.normed.ffn == nil {
			t.Fatalf("layer %d: norm weights for the products %+v, want both", i, lw.normed)
		}
	}
	mp := open(&quantCPU{Backend: cpu.New(0), t: t, widths: map[runtime.Tensor][]int{}})
	defer mp.Close()
	got, _ := stepAll(t, mf, 4)
	want, _ := stepAll(t, mp, 4)
	// The first step feeds the prompts (a forward); three decode steps,
	// two fused products a layer in each.
	if min := 3 * 2 * len(mf.layers); nb.fused < min {
		t.Errorf("%d products normalized their input, want at least %d", nb.fused, min)
	}
	sameSteps(t, "norm-fused", got, want)
}

// gluNormCPU is quantCPU whose GLU product normalizes its own input
// (runtime.GLUNormer), emulated: the norm into a scratch, then the
// product; it counts the fused calls.
type gluNormCPU struct {
	*quantCPU
	rows, fused int
}

func (g *gluNormCPU) GLUNormRows() int { return g.rows }

func (g *gluNormCPU) FuseGLUNorm(weight, w runtime.Tensor) (runtime.Tensor, error) {
	return (&normCPU{quantCPU: g.quantCPU}).FuseNorm(weight, w)
}

func (g *gluNormCPU) MatMulGLUNormTo(dst, x, nw runtime.Tensor, eps float32, w, slots runtime.Tensor) {
	if slots != nil {
		g.t.Fatal("output slots on a backend whose weights read their input as it is")
	}
	xn := (&normCPU{quantCPU: g.quantCPU}).normed(x, nw, eps)
	defer g.Free(xn)
	g.MatMulGLU(dst, xn, w)
	g.fused++
}

// gluNormAP is gluNormCPU that also adds o_proj's product into the
// residual stream straight from attention
// (runtime.ResidualAttentionProjector), emulated: attention, then the
// product added as runtime.MatMulAdd adds it; it counts those calls.
type gluNormAP struct {
	*gluNormCPU
	added int
}

func (g *gluNormAP) PagedAttentionMatMulAdd(x, att, qt, kc, vc, tables, pos runtime.Tensor, blockSize int, p runtime.AttentionParams, w runtime.Tensor) {
	g.PagedAttention(att, qt, kc, vc, tables, pos, blockSize, p)
	tmp, err := g.Alloc(x.DType(), x.Shape()...)
	if err != nil {
		g.t.Fatal(err)
	}
	defer g.Free(tmp)
	runtime.MatMulAdd(g, x, att, w, x, tmp)
	g.added++
}

// TestDecodeGLUNorm checks the decode step whose GLU product normalizes its
// own input (runtime.GLUNormer): an act-order GPTQ checkpoint of
// openchat-tiny on an emulated backend decodes to the logits of the same
// backend without it (o_proj then adds the residual itself and gate/up
// normalize the updated stream), every layer's gate/up normalizing in
// every decode step; with GLUNormRows below the step's rows (2: three
// sequences in a step of 4), none, the norm weights made all the same;
// and with GLUNormRows 0, no norm weights; each with o_proj added into the
// stream by MatMulAdd after attention and by PagedAttentionMatMulAdd
// (runtime.ResidualAttentionProjector), which then runs in each layer of
// each normalizing decode step. (The emulated backend reads its weights'
// inputs as they are: the device's input orders and output slots are the
// decode ids' and TestPiecesGLUNorm's to check.)
func TestDecodeGLUNorm(t *testing.T) {
	open := actOrderBF16(t)
	mp := open(&quantCPU{Backend: cpu.New(0), t: t, widths: map[runtime.Tensor][]int{}})
	defer mp.Close()
	want, _ := stepAll(t, mp, 4)
	for _, c := range []struct {
		rows int
		ap   bool
	}{{8, false}, {8, true}, {2, false}, {2, true}, {0, false}} {
		rows := c.rows
		gb := &gluNormCPU{quantCPU: &quantCPU{Backend: cpu.New(0), t: t, widths: map[runtime.Tensor][]int{}}, rows: rows}
		var b runtime.Backend = gb
		ga := &gluNormAP{gluNormCPU: gb}
		if c.ap {
			b = ga
		}
		mg := open(b)
		for i, lw := range mg.layers {
			if (lw.normed.glu != nil) != (rows > 0) {
				t.Fatalf("GLUNormRows %d, layer %d: norm weight for gate/up %v", rows, i, lw.normed.glu)
			}
		}
		got, _ := stepAll(t, mg, 4)
		mg.Close()
		// The first step feeds the prompts (a forward); three decode
		// steps of 4 rows, one fused product a layer in each.
		if n := 3 * len(mg.layers); rows >= 4 && gb.fused < n || rows < 4 && gb.fused != 0 {
			t.Errorf("GLUNormRows %d: %d GLU products normalized their input, want %d", rows, gb.fused, n)
		}
		if n := gb.fused; c.ap && ga.added != n {
			t.Errorf("GLUNormRows %d: %d o_proj products added from attention, want one a normalizing GLU product (%d)", rows, ga.added, n)
		}
		sameSteps(t, fmt.Sprintf("GLU-norm (rows %d, attention's product adding %v)", rows, c.ap), got, want)
	}
}

// ropeQuant and ropeNorm add runtime.RoPEFuser to the emulated backends
// (ropeThen: the q/k/v product, normalizing its input when nw is not nil,
// then RoPEStore); they count the calls.
type ropeQuant struct {
	*quantCPU
	fused int
}

type ropeNorm struct {
	*normCPU
	fused int
}

func ropeThen(b runtime.PagedDecoder, split func(), dsts []runtime.Tensor, kc, vc, pos, slot runtime.Tensor, headDim int, inv []float32) {
	split()
	b.RoPEStore(dsts[0], dsts[1], dsts[2], kc, vc, pos, slot, headDim, inv)
}

func (r *ropeQuant) MatMulSplitRoPE(dsts []runtime.Tensor, x, nw runtime.Tensor, eps float32, w runtime.Tensor,
	kc, vc, pos, slot runtime.Tensor, headDim int, inv []float32) {
	if nw != nil {
		r.t.Fatal("a norm weight for a backend that does not fuse norms")
	}
	ropeThen(r, func() { r.MatMulSplit(dsts, x, w) }, dsts, kc, vc, pos, slot, headDim, inv)
	r.fused++
}

func (r *ropeNorm) MatMulSplitRoPE(dsts []runtime.Tensor, x, nw runtime.Tensor, eps float32, w runtime.Tensor,
	kc, vc, pos, slot runtime.Tensor, headDim int, inv []float32) {
	split := func() { r.MatMulSplit(dsts, x, w) }
	if nw != nil {
		split = func() { r.MatMulSplitNorm(dsts, x, nw, eps, w) }
	}
	ropeThen(r, split, dsts, kc, vc, pos, slot, headDim, inv)
	r.fused++
}

// TestDecodeRoPEFuse checks the decode step with q/k/v products that apply
// RoPE and the cache store themselves (runtime.RoPEFuser), with and
// without products that normalize their input: an act-order GPTQ
// checkpoint of openchat-tiny on an emulated backend decodes to the logits
// of the same backend without the fusion, every layer's q/k/v product
// rotating in every step.
func TestDecodeRoPEFuse(t *testing.T) {
	open := actOrderBF16(t)
	quant := func() *quantCPU { return &quantCPU{Backend: cpu.New(0), t: t, widths: map[runtime.Tensor][]int{}} }
	mp := open(quant())
	defer mp.Close()
	want, _ := stepAll(t, mp, 4)
	plain := &ropeQuant{quantCPU: quant()}
	normed := &ropeNorm{normCPU: &normCPU{quantCPU: quant()}}
	for _, c := range []struct {
		name  string
		b     runtime.Backend
		fused *int
	}{{"plain", plain, &plain.fused}, {"norm-fused", normed, &normed.fused}} {
		t.Run(c.name, func(t *testing.T) {
			m := open(c.b)
			defer m.Close()
			got, _ := stepAll(t, m, 4)
			// Three decode steps after the prompts' forward.
			if min := 3 * len(m.layers); *c.fused < min {
				t.Errorf("%d q/k/v products rotated, want at least %d", *c.fused, min)
			}
			sameSteps(t, "rope-fused", got, want)
		})
	}
}

// mlpQuant adds runtime.MLPFuser to the emulated backend: FuseMLP pairs
// the weights (the handle a tensor of its own), MatMulMLP runs the GLU
// product, then down with the residual; it counts the calls.
type mlpQuant struct {
	*quantCPU
	pairs map[runtime.Tensor][2]runtime.Tensor
	fused int
}

func (q *mlpQuant) FuseMLP(gateUp, down runtime.Tensor) (runtime.Tensor, error) {
	t, err := q.Backend.Alloc(runtime.F32, 1)
	if err == nil {
		q.pairs[t] = [2]runtime.Tensor{gateUp, down}
	}
	return t, err
}

func (q *mlpQuant) MLPFusedRows() int { return 8 }

func (q *mlpQuant) MatMulMLP(x, xn, w runtime.Tensor) {
	p, ok := q.pairs[w]
	if !ok {
		q.t.Fatal("MatMulMLP with a weight FuseMLP did not make")
	}
	M, H, I := runtime.Rows(x), runtime.Cols(x), runtime.Cols(p[1])
	h, err := q.Alloc(runtime.F32, M, I)
	if err != nil {
		q.t.Fatal(err)
	}
	defer q.Free(h)
	o, err := q.Alloc(runtime.F32, M, H)
	if err != nil {
		q.t.Fatal(err)
	}
	defer q.Free(o)
	q.MatMulGLU(h, xn, p[0])
	runtime.MatMulAdd(q, x, h, p[1], x, o)
	q.fused++
}

// TestDecodeMLPFuse checks the decode step with the MLP as one op
// (runtime.MLPFuser): an act-order GPTQ checkpoint of openchat-tiny (down's
// order folded into gate/up's columns) on an emulated fusing backend
// decodes to the logits of the same backend without the fusion, every
// layer's MLP fused in every decode step.
func TestDecodeMLPFuse(t *testing.T) {
	open := actOrderBF16(t)
	mq := &mlpQuant{quantCPU: &quantCPU{Backend: cpu.New(0), t: t, widths: map[runtime.Tensor][]int{}}, pairs: map[runtime.Tensor][2]runtime.Tensor{}}
	m := open(mq)
	defer m.Close()
	for i, lw := range m.layers {
		if lw.mlp == nil {
			t.Fatalf("layer %d: no fused MLP", i)
		}
	}
	againstPlain(t, open, m, &mq.fused, "MLPs ran fused")
}

// againstPlain decodes four steps of m (the model of an emulated backend
// whose op under test counts its calls in *count) and of the same
// checkpoint on the plain emulated backend (open): the same logits, and
// the op called at least once a layer in each decode step (the first step
// feeds the prompts, a forward; then three decode steps).
func againstPlain(t *testing.T, open func(runtime.Backend) *Model, m *Model, count *int, what string) {
	t.Helper()
	mp := open(&quantCPU{Backend: cpu.New(0), t: t, widths: map[runtime.Tensor][]int{}})
	defer mp.Close()
	got, _ := stepAll(t, m, 4)
	want, _ := stepAll(t, mp, 4)
	if min := 3 * len(m.layers); *count < min {
		t.Errorf("%d %s, want at least %d", *count, what, min)
	}
	sameSteps(t, what, got, want)
}

// projQuant adds runtime.ResidualProjector (every step) and
// runtime.AttentionProjector to the emulated backend, and counts the
// paged attentions not issued by PagedAttentionMatMul: a model adding
// o_proj into the residual stream runs attention on its own.
type projQuant struct {
	*quantCPU
	added int
}

func (q *projQuant) PagedAttentionMatMul(dst, att, qt, kc, vc, tables, pos runtime.Tensor, blockSize int, p runtime.AttentionParams, w runtime.Tensor) {
	q.quantCPU.PagedAttention(att, qt, kc, vc, tables, pos, blockSize, p)
	q.MatMul(dst, att, w)
}

func (q *projQuant) PagedAttention(dst, qt, kc, vc, tables, pos runtime.Tensor, blockSize int, p runtime.AttentionParams) {
	q.quantCPU.PagedAttention(dst, qt, kc, vc, tables, pos, blockSize, p)
	q.added++
}

func (q *projQuant) ResidualProjects(int) bool { return true }

// TestDecodeResidualProjection checks the decode step with o_proj's
// product added into the residual stream (runtime.ResidualProjector) and a
// plain norm after it: an act-order GPTQ checkpoint of openchat-tiny
// on the emulating backend decodes to the logits of the same backend
// without it, every layer's o_proj adding in every decode step.
func TestDecodeResidualProjection(t *testing.T) {
	open := actOrderBF16(t)
	pq := &projQuant{quantCPU: &quantCPU{Backend: cpu.New(0), t: t, widths: map[runtime.Tensor][]int{}}}
	m := open(pq)
	defer m.Close()
	againstPlain(t, open, m, &pq.added, "o_proj products added into the stream")
}
