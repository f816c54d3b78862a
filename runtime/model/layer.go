package model

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/kvcache"
)

// dims are the sizes and constants of the forward pass, from the config.
type dims struct {
	hidden, inter, heads, kvHeads, headDim, vocab, window int
	eps                                                   float32
	scale                                                 float32
	// rope is the inverse frequencies [rotaryDim/2] every RoPE op rotates
	// by (runtime.RoPEFreqs of rope_theta and the config's scaling over
	// hfconfig.Config.RoPEDim): its length gives the ops the rotary
	// dimension, headDim or, with phi3's partial_rotary_factor, its
	// leading part (the rest of each head passes unrotated).
	rope []float32
	// tail is what q's unrotated channels (2·len(rope) on in each head)
	// are multiplied by after RoPE, 1/af², where partial RoPE meets an
	// attention factor af other than 1 (runtime.ScaleTail says why); 0:
	// nothing to do (whole heads rotated, or af 1).
	tail float32
	// bias says which of q/k/v/o_proj (lin indices) config.json gives a
	// bias the model adds (hfconfig.Config.LinearBias): Qwen2's q/k/v,
	// llama's attention_bias. (The MLP's, mlp_bias, are not added: their
	// tensors must be zeros, CheckBiases.)
	bias [oProj + 1]bool
	// qkNorm says each head of q and of k is RMS-normalized (weights
	// self_attn.q_norm/k_norm [headDim], eps) after the projections and
	// their biases, before RoPE (hfconfig.Config.QKNorm: Qwen3).
	qkNorm bool
	// gemma is Gemma's layer (hfconfig.Config.Gemma: Gemma 1, 2 and 3):
	// every norm multiplies by 1 + weight (runtime.OffsetRMSNormer), the
	// MLP is a GELU-tanh GLU, embeddings are scaled by sqrt(hidden_size)
	// (embedScaleFor).
	// postNorms says the attention and MLP outputs are also normalized
	// before their residual adds (Gemma 2 and 3: GemmaPostNorms).
	gemma, postNorms bool
	// granite is Granite's multipliers (hfconfig.Config.Granite; nil
	// elsewhere): the embeddings scaled by its embedding_multiplier, each
	// layer's attention and MLP outputs by residual_multiplier before
	// their residual adds, the logits divided by logits_scaling (the
	// scores' attention_multiplier is scale).
	granite *hfconfig.Granite
	// olmo2 is OLMo 2's layer: no input norms (attention and the MLP read
	// the residual stream itself: attnNorm and ffnNorm nil), the outputs
	// normalized before their residual adds (postAttnNorm, postFFNorm),
	// q and k each normalized over the whole projection (qkFull, which
	// OLMoE's layer has too).
	olmo2, qkFull bool
	// attnCap and finalCap are Gemma 2's soft-capping of the attention
	// scores (runtime.AttentionParams.Softcap) and of the logits
	// (runtime.Softcapper); 0: none.
	attnCap, finalCap float32
	// layerRope and layerWindow are the RoPE table and window of each
	// layer where they differ between layers (Gemma's sliding and full
	// layers); nil where every layer takes rope and window (ropeOf,
	// windowOf).
	layerRope   [][]float32
	layerWindow []int
	// moe is the config's mixture of experts (hfconfig.Config.MoE; nil for
	// a dense model) and sparse says which layers have it
	// (hfconfig.Config.Sparse).
	moe    *hfconfig.MoE
	sparse []bool
}

// sparseAt reports whether layer li's MLP is the mixture of experts.
func (d dims) sparseAt(li int) bool { return d.moe != nil && d.sparse[li] }

// ropeOf returns layer li's RoPE table.
func (d dims) ropeOf(li int) []float32 {
	if d.layerRope != nil {
		return d.layerRope[li]
	}
	return d.rope
}

// windowOf returns layer li's attention window (0: none).
func (d dims) windowOf(li int) int {
	if d.layerWindow != nil {
		return d.layerWindow[li]
	}
	return d.window
}

// norm sets dst to the RMSNorm of x's rows with weight w: Gemma's (1 + w,
// runtime.OffsetRMSNormer, which bind checks the backend has) in gemma
// layers, the plain one elsewhere; with w nil (OLMo 2's missing input
// norms) dst is x, copied.
func (d dims) norm(b runtime.Backend, dst, x, w runtime.Tensor) {
	if w == nil {
		if dst != x {
			b.Copy(dst, x)
		}
		return
	}
	if d.gemma {
		b.(runtime.OffsetRMSNormer).OffsetRMSNorm(dst, x, w, d.eps)
		return
	}
	b.RMSNorm(dst, x, w, d.eps)
}

// unfused reports whether the layers are Gemma's, Granite's or OLMo 2's,
// which the decode step's fusions (Llama's dense layer: input orders,
// norms in the products, the MLP as one op) do not cover: their steps run
// op by op (unfusedDecodeOps) and their forward adds the residual apart
// from the next norm.
func (d dims) unfused() bool { return d.gemma || d.granite != nil || d.olmo2 }

// dimsOf is dimsAt of the config's own context.
func dimsOf(cfg *hfconfig.Config) (dims, error) { return dimsAt(cfg, cfg.MaxPositionEmbeddings) }

// dimsAt returns the dims of cfg for a model run with a context of ctx
// positions, which chooses longrope's factors (hfconfig's ForContext).
func dimsAt(cfg *hfconfig.Config, ctx int) (dims, error) {
	d := dims{
		hidden: cfg.HiddenSize, inter: cfg.IntermediateSize, heads: cfg.NumAttentionHeads,
		kvHeads: cfg.NumKeyValueHeads, headDim: cfg.HeadDim, vocab: cfg.VocabSize,
		window: cfg.SlidingWindow, eps: float32(cfg.RMSNormEps),
	}
	if d.hidden <= 0 || d.inter <= 0 || d.heads <= 0 || d.kvHeads <= 0 || d.headDim <= 0 || d.vocab <= 0 ||
		d.headDim%2 != 0 || d.heads%d.kvHeads != 0 || d.window < 0 || !(cfg.RopeTheta > 0) {
		return dims{}, fmt.Errorf("model: %s: unsupported sizes hidden %d intermediate %d heads %d/%d head_dim %d vocab %d sliding_window %d rope_theta %v",
			cfg.File, d.hidden, d.inter, d.heads, d.kvHeads, d.headDim, d.vocab, d.window, cfg.RopeTheta)
	}
	var err error
	if rd := cfg.RoPEDim(); rd <= 0 || rd > d.headDim || rd%2 != 0 {
		return dims{}, fmt.Errorf("model: %s: rotary dimension %d of head_dim %d: want an even number in [2, head_dim]", cfg.File, rd, d.headDim)
	}
	if d.rope, err = runtime.RoPEFreqs(cfg.RoPEDim(), cfg.RopeTheta, cfg.RopeScaling.ForContext(ctx)); err != nil {
		return dims{}, fmt.Errorf("model: %s: %w", cfg.File, err)
	}
	// transformers MistralAttention: scaling = head_dim**-0.5, times the
	// square of the RoPE attention factor (yarn's) that transformers
	// multiplies cos and sin by: q and k both carry it, so q·k does
	// twice. Folded here, it reaches every attention (CPU and CUDA,
	// prefill, paged decode) without a kernel knowing of it; the rotated
	// q and k, and the cache's K, are the table's rotation alone.
	af := runtime.AttentionFactor(cfg.RopeScaling)
	d.scale = float32(af * af / math.Sqrt(float64(d.headDim)))
	if g := cfg.Granite; g != nil {
		// GraniteAttention: scaling attention_multiplier.
		d.scale = float32(af * af * g.AttentionMultiplier)
		d.granite = g
	}
	if 2*len(d.rope) < d.headDim && af != 1 {
		d.tail = float32(1 / (af * af))
	}
	for j := range d.bias {
		d.bias[j] = cfg.LinearBias(LinearModules[j])
	}
	d.qkNorm = cfg.QKNorm()
	d.olmo2, d.qkFull = cfg.Olmo2(), cfg.FullQKNorm()
	if cfg.MoE != nil {
		d.moe = cfg.MoE
		d.sparse = make([]bool, cfg.NumHiddenLayers)
		for li := range d.sparse {
			d.sparse[li] = cfg.Sparse(li)
		}
	}
	if cfg.Gemma() {
		if err := d.gemmaDims(cfg, ctx); err != nil {
			return dims{}, fmt.Errorf("model: %s: %w", cfg.File, err)
		}
	}
	return d, nil
}

// scaleTail scales q's unrotated channels by d.tail where partial RoPE
// meets an attention factor (runtime.ScaleTail).
func (d dims) scaleTail(b runtime.Backend, q runtime.Tensor) {
	if d.tail != 0 {
		runtime.ScaleTail(b, q, d.headDim, 2*len(d.rope), d.tail)
	}
}

func (d dims) qDim() int  { return d.heads * d.headDim }
func (d dims) kvDim() int { return d.kvHeads * d.headDim }

// linearShape returns the [N, K] shape of a Linear module.
func (d dims) linearShape(module string) (n, k int, ok bool) {
	switch module {
	case "self_attn.q_proj":
		return d.qDim(), d.hidden, true
	case "self_attn.k_proj", "self_attn.v_proj":
		return d.kvDim(), d.hidden, true
	case "self_attn.o_proj":
		return d.hidden, d.qDim(), true
	case "mlp.gate_proj", "mlp.up_proj":
		return d.inter, d.hidden, true
	case "mlp.down_proj":
		return d.hidden, d.inter, true
	}
	if _, j, ok := d.expertModule(module); ok {
		if j == 2 {
			return d.hidden, d.moe.ExpertSize, true
		}
		return d.moe.ExpertSize, d.hidden, true
	}
	if j := d.sharedModule(module); j >= 0 {
		if j == 2 {
			return d.hidden, d.moe.SharedSize, true
		}
		return d.moe.SharedSize, d.hidden, true
	}
	return 0, 0, false
}

// sharedModule is the index of a shared expert's Linear module
// (hfconfig.MoE.SharedModules) in that list, 0 gate, 1 up, 2 down; -1 for
// any other module, or where the model has no shared expert.
func (d dims) sharedModule(module string) int {
	if d.moe == nil || d.moe.SharedSize == 0 {
		return -1
	}
	m := d.moe.SharedModules()
	return slices.Index(m[:], module)
}

// expertModule parses an expert's Linear module name (hfconfig.MoE's
// ExpertModules: block.experts.<e>.<name>) into the expert e and j, 0 for
// its gate, 1 up, 2 down.
func (d dims) expertModule(module string) (e, j int, ok bool) {
	e, name, ok := cutExpert(d.moe, module)
	if !ok {
		return 0, 0, false
	}
	j = slices.Index([]string{d.moe.Gate, d.moe.Up, d.moe.Down}, name)
	return e, j, j >= 0
}

// Indices into layerWeights.lin, in LinearModules order.
const (
	qProj = iota
	kProj
	vProj
	oProj
	gateProj
	upProj
	downProj
)

// layerWeights are one decoder layer's immutable weights. On a backend
// that fuses quantized weights (runtime.FusedQuantLoader), qkv holds q/k/v
// and gateUp gate/up as one tensor each, and their lin entries are nil.
type layerWeights struct {
	attnNorm, ffnNorm runtime.Tensor // [hidden]
	lin               [7]runtime.Tensor
	// bias are q/k/v/o_proj's biases [N] (lin indices), nil where the
	// module has none or its bias is all zeros (the fused decode paths
	// stay open to such a layer).
	bias [oProj + 1]runtime.Tensor
	// qNorm and kNorm are Qwen3's per-head q_norm and k_norm weights
	// [headDim]; nil in models without them.
	qNorm, kNorm runtime.Tensor
	// postAttnNorm and postFFNorm are Gemma 2's and 3's post_attention_layernorm
	// and post_feedforward_layernorm [hidden], normalizing the attention's
	// and the MLP's outputs before their residual adds (ffnNorm is then
	// pre_feedforward_layernorm); nil elsewhere.
	postAttnNorm, postFFNorm runtime.Tensor
	qkv, gateUp              runtime.Tensor
	// order is the layer's decode step on a backend whose quantized
	// weights read their inputs in an order of their own; nil elsewhere.
	order *decodeOrder
	// normed are the input and post-attention norm weights prepared for
	// qkv's and gateUp's products to apply themselves in decode steps
	// (runtime.NormFuser), and the post-attention one for gateUp's product
	// reading the residual stream in its own input order (glu,
	// runtime.GLUNormer); nil where they do not.
	normed struct{ attn, ffn, glu runtime.Tensor }
	// mlp is gate/up and down as one decode-step op (runtime.MLPFuser),
	// made from the weights the step reads (order's where it has them);
	// nil where the backend does not fuse them.
	mlp runtime.Tensor
	// router [Experts, hidden] and experts are a mixture-of-experts
	// layer's MLP (dims.sparseAt), whose lin gate/up/down entries are then
	// nil; nil in a dense layer.
	router  runtime.Tensor
	experts []expert
	// shared and sharedGate [1, hidden] are a Qwen2-MoE layer's shared
	// expert and its gate; nil elsewhere.
	shared     *expert
	sharedGate runtime.Tensor
	// ews: the experts' gate, up and down weights, one list each
	// (moeRouted's ExpertMatMul).
	ews [3][]runtime.Tensor
}

// decodeOrder has a decode step write each input of the layer's products
// in the order the product reads it (runtime.InputOrderer: act order made
// sequential at load), once, instead of every product gathering it.
type decodeOrder struct {
	slots inputSlots   // where each input column goes; nil: as it is
	w     layerWeights // the weights that read their inputs so placed
}

// inputSlots are the output slots of the producers of a layer's product
// inputs: input_layernorm (q/k/v), attention (o_proj),
// post_attention_layernorm (gate/up) and the GLU product (down_proj).
type inputSlots struct {
	attn, o, ffn, down runtime.Tensor
}

// orderLayer returns lw's decode order on io, or nil when no weight of lw
// reads its input in an order of its own. Weights sharing an input are
// ordered only when they read it in the same order (one fused weight, or
// the same slots); down_proj only when gate/up are one GLU weight, whose
// product writes the input of down_proj.
func orderLayer(io runtime.InputOrderer, lw *layerWeights) *decodeOrder {
	od := &decodeOrder{w: *lw}
	od.w.order = nil
	// group orders the weights at lin indices js (or the fused f) that read
	// one input, returning the slots they share.
	group := func(f *runtime.Tensor, js ...int) runtime.Tensor {
		if *f != nil {
			s := io.InputSlots(*f)
			if s != nil {
				*f = io.InOrder(*f)
			}
			return s
		}
		s := io.InputSlots(od.w.lin[js[0]])
		for _, j := range js[1:] {
			if io.InputSlots(od.w.lin[j]) != s {
				return nil
			}
		}
		if s != nil {
			for _, j := range js {
				od.w.lin[j] = io.InOrder(od.w.lin[j])
			}
		}
		return s
	}
	var none runtime.Tensor
	od.slots.attn = group(&od.w.qkv, qProj, kProj, vProj)
	od.slots.o = group(&none, oProj)
	od.slots.ffn = group(&od.w.gateUp, gateProj, upProj)
	if od.w.gateUp != nil {
		od.slots.down = group(&none, downProj)
	}
	if od.slots == (inputSlots{}) {
		return nil
	}
	return od
}

// project sets q, k, v to the q/k/v projections of the normed rows xn.
func (lw *layerWeights) project(b runtime.Backend, xn, q, k, v runtime.Tensor) {
	if lw.qkv != nil {
		b.(runtime.FusedQuantLoader).MatMulSplit([]runtime.Tensor{q, k, v}, xn, lw.qkv)
		return
	}
	b.MatMul(q, xn, lw.lin[qProj])
	b.MatMul(k, xn, lw.lin[kProj])
	b.MatMul(v, xn, lw.lin[vProj])
}

// qkvBiased reports whether q, k or v_proj has a bias, which the decode
// step must add between the product and RoPE (so not through a product
// that rotates in its epilogue, runtime.RoPEFuser).
func (lw *layerWeights) qkvBiased() bool {
	return lw.bias[qProj] != nil || lw.bias[kProj] != nil || lw.bias[vProj] != nil
}

// unfusedQK reports whether the decode step must take q and k between
// the product and RoPE (biases to add, per-head norms to apply), so not
// through a product that rotates in its epilogue (runtime.RoPEFuser).
func (lw *layerWeights) unfusedQK() bool {
	return lw.qkvBiased() || lw.qNorm != nil
}

// normQK applies the per-head RMSNorms of q [T, heads·headDim] and k [T,
// kvHeads·headDim] in place, each row of headDim on its own (transformers
// Qwen3Attention: q_norm(q_proj(x).view(..., -1, head_dim)), before
// apply_rotary_pos_emb); a no-op without them.
func (lw *layerWeights) normQK(b runtime.Backend, d dims, q, k runtime.Tensor) {
	if lw.qNorm == nil {
		return
	}
	for _, e := range []struct{ x, w runtime.Tensor }{{q, lw.qNorm}, {k, lw.kNorm}} {
		if d.qkFull {
			// Olmo2Attention: one norm over each row's whole projection.
			d.norm(b, e.x, e.x, e.w)
			continue
		}
		h := b.Reshape(e.x, runtime.Rows(e.x)*runtime.Cols(e.x)/d.headDim, d.headDim)
		d.norm(b, h, h, e.w)
	}
}

// addQKVBias adds q/k/v_proj's biases to their products q, k, v, before
// RoPE (transformers Qwen2Attention: the Linear's output is rotated).
func (lw *layerWeights) addQKVBias(b runtime.Backend, q, k, v runtime.Tensor) {
	for j, t := range []runtime.Tensor{q, k, v} {
		if lw.bias[j] != nil {
			b.AddBias(t, lw.bias[j])
		}
	}
}

// act sets gate to silu(gate_proj(xn)) * up_proj(xn) (Gemma's:
// gelu_pytorch_tanh); up is scratch.
func (lw *layerWeights) act(b runtime.Backend, d dims, xn, gate, up runtime.Tensor) {
	if lw.gateUp != nil {
		b.(runtime.FusedQuantLoader).MatMulGLU(gate, xn, lw.gateUp)
		return
	}
	b.MatMul(gate, xn, lw.lin[gateProj])
	b.MatMul(up, xn, lw.lin[upProj])
	if d.gemma {
		// GemmaMLP, Gemma3MLP: gelu_pytorch_tanh(gate_proj(x)) * up_proj(x).
		b.(runtime.GELUGLUer).GELUGLU(gate, gate, up)
		return
	}
	runtime.SwiGLU(b, gate, gate, up)
}

// tensors lists the layer's bound weight tensors, a mixture of experts'
// routed experts aside (StepBytes counts the share of them a row reads;
// a shared expert is in the list, as every row reads it).
func (lw *layerWeights) tensors() []runtime.Tensor {
	var ts []runtime.Tensor
	ts0 := append(append(lw.lin[:], lw.bias[:]...), lw.attnNorm, lw.ffnNorm, lw.qkv, lw.gateUp, lw.qNorm, lw.kNorm, lw.postAttnNorm, lw.postFFNorm, lw.router, lw.sharedGate)
	if lw.shared != nil {
		ts0 = append(ts0, lw.shared.gate, lw.shared.up, lw.shared.down)
	}
	for _, t := range ts0 {
		if t != nil {
			ts = append(ts, t)
		}
	}
	return ts
}

func bindLayer(bd *binder, d dims, i int) (layerWeights, error) {
	p := LayerPrefix(i) + "."
	var lw layerWeights
	var err error
	// The layer's norms by name: Llama's two, Gemma 2's and 3's four,
	// OLMo 2's two after the sublayers (no input norms).
	type named struct {
		t    *runtime.Tensor
		name string
	}
	norms := []named{{&lw.attnNorm, "input_layernorm"}, {&lw.ffnNorm, "post_attention_layernorm"}}
	switch {
	case d.olmo2:
		norms = []named{{&lw.postAttnNorm, "post_attention_layernorm"}, {&lw.postFFNorm, "post_feedforward_layernorm"}}
	case d.postNorms:
		norms = []named{{&lw.attnNorm, "input_layernorm"}, {&lw.postAttnNorm, "post_attention_layernorm"},
			{&lw.ffnNorm, "pre_feedforward_layernorm"}, {&lw.postFFNorm, "post_feedforward_layernorm"}}
	}
	for _, n := range norms {
		if *n.t, err = bd.fp(p+n.name+".weight", d.hidden); err != nil {
			return lw, err
		}
	}
	if d.qkNorm {
		qw, kw := d.headDim, d.headDim
		if d.qkFull {
			qw, kw = d.qDim(), d.kvDim()
		}
		if lw.qNorm, err = bd.fp(p+"self_attn.q_norm.weight", qw); err != nil {
			return lw, err
		}
		if lw.kNorm, err = bd.fp(p+"self_attn.k_norm.weight", kw); err != nil {
			return lw, err
		}
	}
	if lw.qkv, err = bd.fused(p, d, []int{qProj, kProj, vProj}, false, nil); err != nil {
		return lw, err
	}
	// Gemma's gate/up stay apart: the backends' fused GLU product is
	// SwiGLU's.
	sparse := d.sparseAt(i)
	if sparse {
		if err := bindMoE(bd, d, i, &lw); err != nil {
			return lw, err
		}
	} else if !d.gemma {
		if lw.gateUp, lw.lin[downProj], err = bd.mlp(p, d); err != nil {
			return lw, err
		}
	}
	for j, m := range LinearModules {
		if (lw.qkv != nil && j <= vProj) || (lw.gateUp != nil && (j == gateProj || j == upProj)) || lw.lin[j] != nil || (sparse && j > oProj) {
			continue
		}
		n, k, _ := d.linearShape(m)
		if lw.lin[j], err = bd.linear(p+m, n, k); err != nil {
			return lw, err
		}
	}
	for j, has := range d.bias {
		if !has {
			continue
		}
		n, _, _ := d.linearShape(LinearModules[j])
		if lw.bias[j], err = bd.bias(p+LinearModules[j]+".bias", n); err != nil {
			return lw, err
		}
	}
	return lw, nil
}

// scratch is the mutable per-forward state of a decoder layer, sized for
// up to rows stacked tokens and reused; views of the first rows are used.
// k and v hold the new tokens' keys (after RoPE) and values of the layer
// being run: a sequence with a cache copies its rows there, a fresh one
// attends over them directly.
type scratch struct {
	rows                             int
	dt                               runtime.DType // activation dtype; the zero value is F32
	xn, q, k, v, att, o, gate, up, x runtime.Tensor
	// A mixture-of-experts layer's (moe; nil in a dense model): router
	// [rows, Experts] its logits; ein [rows·TopK+1, hidden] the experts'
	// rows stacked, egate and eup [rows·TopK, ExpertSize] their gate/up
	// products (egate with one more row), eout [rows·TopK+1, hidden] their
	// outputs, the stacks' last rows zero; wts (F32) [rows·TopK] the
	// stacked rows' weights.
	router, ein, egate, eup, eout, wts runtime.Tensor
	// sgate and sup [rows, SharedSize] are a shared expert's gate/up
	// products and slogit [rows, 1] its gate's logits (Qwen2-MoE; nil
	// elsewhere).
	sgate, sup, slogit runtime.Tensor
	// eroute (I32) [3·rows·TopK]: the slots' experts, then RouteTopK's
	// order (the slots in expert order and its runs), and rlog (F32)
	// [rows, Experts] the router's logits, in the scratch of a decode
	// state whose steps route on the backend (moeRouted); nil in the
	// others.
	eroute, rlog runtime.Tensor
	// padIn and padAct [rows, hidden / ExpertSize] are an expert's input
	// and SwiGLU output at their tokens' rows for the layer's observers,
	// gathered from ein and egate (ensurePads); nil until a pass observes
	// a mixture-of-experts layer.
	padIn, padAct runtime.Tensor
	// routed counts each expert's rows in observed passes (moe,
	// Layer.ExpertRows); it outlives free.
	routed []int
}

func (s *scratch) free(b runtime.Backend) {
	for _, t := range []runtime.Tensor{s.xn, s.q, s.k, s.v, s.att, s.o, s.gate, s.up, s.x, s.router, s.ein, s.egate, s.eup, s.eout, s.wts, s.eroute, s.rlog, s.padIn, s.padAct, s.sgate, s.sup, s.slogit} {
		if t != nil {
			b.Free(t)
		}
	}
	*s = scratch{dt: s.dt, routed: s.routed}
}

// ensure grows the scratch to hold at least rows tokens.
func (s *scratch) ensure(b runtime.Backend, d dims, rows int) error {
	if rows <= s.rows {
		return nil
	}
	s.free(b)
	var err error
	alloc := func(cols int) runtime.Tensor {
		if err != nil {
			return nil
		}
		var t runtime.Tensor
		t, err = b.Alloc(s.dt, rows, cols)
		return t
	}
	s.x, s.xn, s.o = alloc(d.hidden), alloc(d.hidden), alloc(d.hidden)
	s.q, s.att = alloc(d.qDim()), alloc(d.qDim())
	s.k, s.v = alloc(d.kvDim()), alloc(d.kvDim())
	s.gate, s.up = alloc(d.inter), alloc(d.inter)
	if d.moe != nil {
		k := d.moe.TopK
		s.router = alloc(d.moe.Experts)
		stack := func(cols int) runtime.Tensor {
			if err != nil {
				return nil
			}
			var t runtime.Tensor
			if t, err = b.Alloc(s.dt, rows*k+1, cols); err == nil {
				err = b.Upload(b.View(t, rows*k, 1), make([]float32, cols)) // the zero row
			}
			return t
		}
		s.ein, s.egate, s.eout = stack(d.hidden), stack(d.moe.ExpertSize), stack(d.hidden)
		if err == nil {
			s.eup, err = b.Alloc(s.dt, rows*k, d.moe.ExpertSize)
		}
		if err == nil {
			s.wts, err = b.Alloc(runtime.F32, rows*k)
		}
		if d.moe.SharedSize > 0 {
			s.sgate, s.sup, s.slogit = alloc(d.moe.SharedSize), alloc(d.moe.SharedSize), alloc(1)
		}
	}
	if err != nil {
		s.free(b)
		return fmt.Errorf("model: scratch for %d tokens: %w", rows, err)
	}
	s.rows = rows
	return nil
}

// span is one sequence of a stacked batch: rows [row0, row0+rows) of the
// activations, at positions pos0..pos0+rows-1. With a cache, the layer's K
// and V rows go to cache rows pos0.. and attention reads cache rows
// 0..pos0+rows-1; without one (pos0 is then 0) attention reads the
// sequence's own rows of the scratch k and v.
type span struct {
	row0, rows, pos0 int
	cache            *Cache
	// paged, with seq, keeps the span's K and V in a paged cache instead.
	paged *PagedCache
	seq   *kvcache.Seq
	// ix, with ids (the sequence's slots of positions 0..pos0+rows-1), is
	// the step's index on a runtime.PagedDecoder (PagedCache.index): the
	// layer rotates and stores every span's rows with one RoPEStore and
	// gathers each span's K and V with one EmbeddingAt each.
	ix  *stepIndex
	ids runtime.Tensor
}

// errStopped ends a forward pass early once the stop intermediate has been
// produced; forward returns it and its callers treat it as success.
var errStopped = errors.New("model: stopped")

// Stage is where a layer pass starts.
type Stage int

const (
	// FromInput starts at the layer input x.
	FromInput Stage = iota
	// FromAttention starts at o_proj: x is the layer input and the attention
	// output (intermediate attn_out) of an earlier pass over the same x with
	// the same q/k/v weights is given.
	FromAttention
	// FromResidual starts at post_attention_layernorm: x already holds
	// h = input + o_proj(attention), as a pass that went past ffn_norm left it.
	FromResidual
)

// observer passes intermediates to a host hook (a downloaded copy) and a
// device tap (the backend tensor itself); either may be nil.
type observer struct {
	hook Hook
	tap  Tap
}

func (o observer) emit(b runtime.Backend, name string, t runtime.Tensor) error {
	if o.tap != nil {
		if err := o.tap(name, t); err != nil {
			return fmt.Errorf("model: tap %s: %w", name, err)
		}
	}
	return emit(b, o.hook, name, t)
}

// forward runs decoder layer li (transformers MistralDecoderLayer) on the
// stacked rows x [ΣT, hidden] in place. Row-wise ops (norms, projections,
// SwiGLU, residual adds) run once over all rows; RoPE and attention run
// per span, each with its own positions and KV cache. With stop set to one
// of Intermediates it returns errStopped right after producing (and
// observing) that intermediate; observers see the stacked rows.
//
// from says where the pass starts (Stage). att [ΣT, heads*head_dim] receives
// the attention output when from is FromInput and holds it when from is
// FromAttention; nil means the scratch's own buffer.
func (lw *layerWeights) forward(b runtime.Backend, d dims, s *scratch, x runtime.Tensor, spans []span, li int, obs observer, stop string, from Stage, att runtime.Tensor) error {
	T := runtime.Rows(x)
	view := func(t runtime.Tensor) runtime.Tensor { return b.View(t, 0, T) }
	xn, o, gate, up := view(s.xn), view(s.o), view(s.gate), view(s.up)
	if att == nil {
		att = view(s.att)
	}
	prefix := LayerPrefix(li) + "."
	emitAs := func(name string, t runtime.Tensor) error {
		if err := obs.emit(b, prefix+name, t); err != nil {
			return err
		}
		if name == stop {
			return errStopped
		}
		return nil
	}

	// h = x + o_proj(attn(input_layernorm(x)))
	switch from {
	case FromInput:
		if err := lw.attention(b, d, s, x, att, spans, li, emitAs); err != nil {
			return err
		}
		fallthrough
	case FromAttention:
		b.MatMul(o, att, lw.lin[oProj])
		if lw.bias[oProj] != nil {
			b.AddBias(o, lw.bias[oProj])
		}
		if d.unfused() {
			// Gemma3DecoderLayer, Olmo2DecoderLayer: x + post_attention_layernorm(attn),
			// then pre_feedforward_layernorm (GemmaDecoderLayer: x +
			// attn, then post_attention_layernorm; GraniteDecoderLayer:
			// x + attn·residual_multiplier, then post_attention_layernorm).
			if lw.postAttnNorm != nil {
				d.norm(b, o, o, lw.postAttnNorm)
			}
			d.residual(b, x, o)
			d.norm(b, xn, x, lw.ffnNorm)
			break
		}
		runtime.AddRMSNorm(b, xn, x, o, lw.ffnNorm, d.eps)
	case FromResidual:
		d.norm(b, xn, x, lw.ffnNorm)
	}
	if err := emitAs("ffn_norm", xn); err != nil {
		return err
	}

	if d.sparseAt(li) {
		// out = h + Σ over the row's experts of weight · expert(n)
		var emit func(string, runtime.Tensor) error
		if obs.hook != nil || obs.tap != nil || (stop != "" && stop != "out") {
			emit = emitAs // (observed, or the pass stops at an expert's intermediate)
		}
		if err := lw.moe(b, d, s, xn, x, emit); err != nil {
			return err
		}
		return emitAs("out", x)
	}
	// out = h + down_proj(silu(gate_proj(n)) * up_proj(n)), n = post_attention_layernorm(h)
	lw.act(b, d, xn, gate, up)
	if err := emitAs("ffn_act", gate); err != nil {
		return err
	}
	if lw.postFFNorm != nil || d.granite != nil {
		// Gemma3DecoderLayer: x + post_feedforward_layernorm(mlp);
		// GraniteDecoderLayer: x + mlp·residual_multiplier.
		b.MatMul(o, gate, lw.lin[downProj])
		if lw.postFFNorm != nil {
			d.norm(b, o, o, lw.postFFNorm)
		}
		d.residual(b, x, o)
	} else {
		runtime.MatMulAdd(b, x, gate, lw.lin[downProj], x, o)
	}
	return emitAs("out", x)
}

// attention computes the self-attention output of layer li before o_proj
// into att: att = attn(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)),
// n = input_layernorm(x), appending each cached span's K and V to its cache.
func (lw *layerWeights) attention(b runtime.Backend, d dims, s *scratch, x, att runtime.Tensor, spans []span, li int, emitAs func(string, runtime.Tensor) error) error {
	T := runtime.Rows(x)
	xn, q, k, v := b.View(s.xn, 0, T), b.View(s.q, 0, T), b.View(s.k, 0, T), b.View(s.v, 0, T)
	d.norm(b, xn, x, lw.attnNorm)
	if err := emitAs("attn_norm", xn); err != nil {
		return err
	}
	lw.project(b, xn, q, k, v)
	lw.addQKVBias(b, q, k, v)
	lw.normQK(b, d, q, k)
	if ix := spans[0].ix; ix != nil {
		// Rotated as RoPE rotates them (the kernels say so), every span's
		// rows stored at their slots in one op.
		c := spans[0].paged
		b.(runtime.PagedDecoder).RoPEStore(q, k, v, c.k[li], c.v[li], ix.pos, ix.slot, d.headDim, d.ropeOf(li))
	} else {
		for _, sp := range spans {
			b.RoPE(b.View(q, sp.row0, sp.rows), d.headDim, sp.pos0, d.ropeOf(li))
			b.RoPE(b.View(k, sp.row0, sp.rows), d.headDim, sp.pos0, d.ropeOf(li))
		}
	}
	d.scaleTail(b, q)
	for _, e := range []struct {
		name string
		t    runtime.Tensor
	}{{"attn_q", q}, {"attn_k", k}, {"attn_v", v}} {
		if err := emitAs(e.name, e.t); err != nil {
			return err
		}
	}
	if ix := spans[0].ix; ix != nil && ix.one > 0 {
		c := spans[0].paged
		b.(runtime.PagedDecoder).PagedAttention(b.View(att, 0, ix.one), b.View(q, 0, ix.one), c.k[li], c.v[li], ix.tables,
			b.View(ix.pos, 0, ix.one), c.Pool.BlockSize(), runtime.AttentionParams{HeadDim: d.headDim, Window: d.windowOf(li), Scale: d.scale, Softcap: d.attnCap})
		spans = spans[ix.one:]
	}
	for _, sp := range spans {
		sk, sv := b.View(k, sp.row0, sp.rows), b.View(v, sp.row0, sp.rows)
		switch {
		case sp.cache != nil:
			c := sp.cache
			b.Copy(b.View(c.k[li], sp.pos0, sp.rows), sk)
			b.Copy(b.View(c.v[li], sp.pos0, sp.rows), sv)
			sk, sv = b.View(c.k[li], 0, sp.pos0+sp.rows), b.View(c.v[li], 0, sp.pos0+sp.rows)
		case sp.ix != nil:
			sk, sv = sp.paged.gatherAt(b, li, sp.ids, sp.pos0+sp.rows)
		case sp.paged != nil:
			sp.paged.write(b, li, sp.seq, sp.pos0, sk, sv)
			sk, sv = sp.paged.gather(b, li, sp.seq, sp.pos0+sp.rows)
		}
		b.Attention(b.View(att, sp.row0, sp.rows), b.View(q, sp.row0, sp.rows), sk, sv, runtime.AttentionParams{
			HeadDim: d.headDim, Pos0: sp.pos0, Window: d.windowOf(li), Scale: d.scale, Softcap: d.attnCap,
		})
	}
	return emitAs("attn_out", att)
}

// Layer is one decoder layer loaded on its own, for the layer-wise GPTQ
// driver: its memory is one layer's weights plus scratch for the longest
// input seen.
type Layer struct {
	// Index is the layer number i of model.layers.<i>.
	Index int
	b     runtime.Backend
	d     dims
	w     layerWeights
	bd    binder
	s     scratch
}

// LoadLayer binds layer i's weights from w (floating-point tensors;
// model.layers.<i>.* by HF name, shapes from cfg) as fp32 tensors.
func LoadLayer(w Weights, cfg *hfconfig.Config, i int, b runtime.Backend) (*Layer, error) {
	return LoadLayerAs(w, cfg, i, b, runtime.F32)
}

// LoadLayerAs is LoadLayer with weights and activations in dtype dt (F32,
// or F16/BF16 where the backend supports it: the checkpoint's own dtype for
// the GPU calibration forward). Host-side methods (Forward, Weight,
// SetWeight) convert to and from fp32.
func LoadLayerAs(w Weights, cfg *hfconfig.Config, i int, b runtime.Backend, dt runtime.DType) (*Layer, error) {
	return LoadLayerWith(w, cfg, i, b, Options{DType: dt})
}

// LoadLayerWith is LoadLayerAs with o's DType and Context (the model's
// Options; Dequantize and WidenWeights do not apply: the Linear weights,
// which SetWeight replaces, are always tensors of dtype o.DType): the
// layer runs sequences of at most
// o.Context positions (0: max_position_embeddings), which chooses Phi-3's
// longrope factors as a model loaded with o does. The quantize drivers
// load their layers for the calibration samples' length.
func LoadLayerWith(w Weights, cfg *hfconfig.Config, i int, b runtime.Backend, o Options) (*Layer, error) {
	ctx, err := contextOf(cfg, o.Context)
	if err != nil {
		return nil, err
	}
	dt := o.DType
	d, err := dimsAt(cfg, ctx)
	if err != nil {
		return nil, err
	}
	if i < 0 || i >= cfg.NumHiddenLayers {
		return nil, fmt.Errorf("model: layer %d outside [0, %d)", i, cfg.NumHiddenLayers)
	}
	if !runtime.Supports(b, dt) {
		return nil, fmt.Errorf("model: backend %s has no %v tensors", b.Name(), dt)
	}
	if err := checkLayerOps(d, b); err != nil {
		return nil, err
	}
	if err := checkMoE(d, b); err != nil {
		return nil, err
	}
	// widen: SetWeight uploads into the Linear weights, so they are
	// tensors of the layer's dtype, never a backend's 16-bit ones.
	l := &Layer{Index: i, b: b, d: d, bd: binder{w: w, b: b, dt: dt, widen: true}, s: scratch{dt: dt}}
	if l.w, err = bindLayer(&l.bd, d, i); err != nil {
		l.bd.free()
		return nil, err
	}
	return l, nil
}

// Fork returns a layer that shares l's weights (a SetWeight on l is seen
// by the fork) with a scratch of its own, running its ops on b (nil: l's
// backend, or one of the same kind with fewer threads), so that several
// sequences can run through one layer at once from different goroutines,
// one per fork. Free on a fork releases only its scratch; forks must be
// freed before l.
func (l *Layer) Fork(b runtime.Backend) *Layer {
	if b == nil {
		b = l.b
	}
	return &Layer{Index: l.Index, b: b, d: l.d, w: l.w, bd: binder{b: b, dt: l.bd.dt}, s: scratch{dt: l.s.dt}}
}

// Backend is the backend the layer runs its ops on.
func (l *Layer) Backend() runtime.Backend { return l.b }

// DType is the dtype of the layer's weights and activations.
func (l *Layer) DType() runtime.DType { return l.s.dt }

// Run runs the layer on a calibration chunk that stays on the backend: x
// [rows, hidden] (the layer's dtype) holds rows/seqLen sequences of seqLen
// tokens each, stacked, every one at positions 0..seqLen-1. It works in
// place like Forward: past attn_out, x becomes h = x + o_proj(attention);
// at "out" it is the layer's output. from is the Stage the pass starts at;
// att [rows, heads*head_dim], when not nil, receives the attention output
// (from FromInput) or supplies it (FromAttention, where it is required).
// stop is one of Intermediates ("" runs to "out"); tap sees every
// intermediate produced, as a backend tensor valid during the call.
func (l *Layer) Run(x runtime.Tensor, seqLen int, from Stage, att runtime.Tensor, stop string, tap Tap) error {
	inters := l.d.intermediates(l.Index)
	if stop != "" && !slices.Contains(inters, stop) {
		return fmt.Errorf("model: layer %d: unknown intermediate %q (want one of %v)", l.Index, stop, inters)
	}
	rows := runtime.Rows(x)
	if runtime.Cols(x) != l.d.hidden || x.DType() != l.s.dt || seqLen <= 0 || rows == 0 || rows%seqLen != 0 {
		return fmt.Errorf("model: layer %d: run on %v %v with sequences of %d, want %v [n*%d, %d]", l.Index, x.DType(), x.Shape(), seqLen, l.s.dt, seqLen, l.d.hidden)
	}
	if att != nil && (runtime.Rows(att) != rows || runtime.Cols(att) != l.d.qDim()) {
		return fmt.Errorf("model: layer %d: attention store %v for %d rows, want [%d %d]", l.Index, att.Shape(), rows, rows, l.d.qDim())
	}
	if from < FromInput || from > FromResidual {
		return fmt.Errorf("model: layer %d: unknown stage %d", l.Index, from)
	}
	if from == FromAttention && att == nil {
		return fmt.Errorf("model: layer %d: no attention output to resume from", l.Index)
	}
	if from != FromInput {
		if i := slices.Index(inters, stop); stop != "" && i <= slices.Index(inters, "attn_out") {
			return fmt.Errorf("model: layer %d: a pass from stage %d cannot stop at %q", l.Index, from, stop)
		}
	}
	if err := l.s.ensure(l.b, l.d, rows); err != nil {
		return err
	}
	spans := make([]span, rows/seqLen)
	for i := range spans {
		spans[i] = span{row0: i * seqLen, rows: seqLen}
	}
	err := l.w.forward(l.b, l.d, &l.s, x, spans, l.Index, observer{tap: tap}, stop, from, att)
	if err != nil && !errors.Is(err, errStopped) {
		return err
	}
	return nil
}

// WeightTensor returns the backend tensor of a Linear module's weight, [N,
// K] in the layer's dtype; module is one of the layer's Linear modules
// (LayerModules: LinearModules, or a sparse layer's attention and experts). A GPU solver
// overwrites it in place with the quantized weights.
func (l *Layer) WeightTensor(module string) (runtime.Tensor, error) {
	j, _, _ := l.module(module)
	if j < 0 {
		return nil, fmt.Errorf("model: layer %d: unknown linear module %q (want one of %v)", l.Index, module, l.modules())
	}
	return l.weight(j), nil
}

// Forward runs the layer on one sequence x [T, hidden] (host, fp32) at
// positions 0..T-1 with the causal (and sliding-window) mask and returns
// the output [T, hidden]. Hook names are model.layers.<i>.<intermediate>.
func (l *Layer) Forward(x []float32, hook Hook) ([]float32, error) {
	return l.ForwardUntil(x, "", hook)
}

// ForwardUntil is Forward stopping right after the intermediate stop (one
// of Intermediates) has been produced and passed to hook; it then returns
// nil output. The GPTQ driver uses it to collect Linear inputs without
// running the rest of the layer. stop "" or "out" runs the whole layer.
func (l *Layer) ForwardUntil(x []float32, stop string, hook Hook) ([]float32, error) {
	return l.run(x, nil, stop, hook)
}

// ForwardFromAttention is ForwardUntil resuming after self-attention: att
// [T, heads*head_dim] is the intermediate attn_out that an earlier pass over
// the same x produced with the same q/k/v weights. The GPTQ driver uses it
// once a layer's attention modules are quantized, so the later module groups
// and the final pass do not recompute attention. stop must come after
// attn_out.
func (l *Layer) ForwardFromAttention(x, att []float32, stop string, hook Hook) ([]float32, error) {
	if i := slices.Index(Intermediates, stop); stop != "" && i >= 0 && i <= slices.Index(Intermediates, "attn_out") {
		return nil, fmt.Errorf("model: layer %d: cannot resume after attn_out and stop at %q", l.Index, stop)
	}
	if att == nil {
		return nil, fmt.Errorf("model: layer %d: no attention output to resume from", l.Index)
	}
	return l.run(x, att, stop, hook)
}

func (l *Layer) run(x, att []float32, stop string, hook Hook) ([]float32, error) {
	if inters := l.d.intermediates(l.Index); stop != "" && !slices.Contains(inters, stop) {
		return nil, fmt.Errorf("model: layer %d: unknown intermediate %q (want one of %v)", l.Index, stop, inters)
	}
	h := l.d.hidden
	if len(x) == 0 || len(x)%h != 0 {
		return nil, fmt.Errorf("model: layer %d: input of %d values is not [T, %d]", l.Index, len(x), h)
	}
	T := len(x) / h
	if err := l.s.ensure(l.b, l.d, T); err != nil {
		return nil, err
	}
	xt := l.b.View(l.s.x, 0, T)
	if err := l.b.Upload(xt, x); err != nil {
		return nil, fmt.Errorf("model: layer %d: %w", l.Index, err)
	}
	if att != nil {
		if len(att) != T*l.d.qDim() {
			return nil, fmt.Errorf("model: layer %d: attention output of %d values is not [%d, %d]", l.Index, len(att), T, l.d.qDim())
		}
		if err := l.b.Upload(l.b.View(l.s.att, 0, T), att); err != nil {
			return nil, fmt.Errorf("model: layer %d: %w", l.Index, err)
		}
	}
	from := FromInput
	if att != nil {
		from = FromAttention
	}
	err := l.w.forward(l.b, l.d, &l.s, xt, []span{{rows: T}}, l.Index, observer{hook: hook}, stop, from, nil)
	if errors.Is(err, errStopped) && stop != "out" {
		return nil, nil
	}
	if err != nil && !errors.Is(err, errStopped) {
		return nil, err
	}
	out := make([]float32, len(x))
	if err := l.b.Download(out, xt); err != nil {
		return nil, fmt.Errorf("model: layer %d: %w", l.Index, err)
	}
	return out, nil
}

func (l *Layer) module(module string) (int, int, int) {
	j := slices.Index(LinearModules, module)
	if l.d.sparseAt(l.Index) {
		if j > oProj {
			return -1, 0, 0 // (a sparse layer has no dense MLP)
		}
		if e, k, ok := l.d.expertModule(module); ok {
			j = len(LinearModules) + 3*e + k
		} else if k := l.d.sharedModule(module); k >= 0 {
			j = len(LinearModules) + 3*l.d.moe.Experts + k // (past the experts)
		}
	}
	if j < 0 {
		return -1, 0, 0
	}
	n, k, _ := l.d.linearShape(module)
	return j, n, k
}

// weight is the tensor of module index j (module's): lin[j], or past
// LinearModules an expert's gate, up or down, then the shared expert's.
func (l *Layer) weight(j int) runtime.Tensor {
	if j < len(LinearModules) {
		return l.w.lin[j]
	}
	ex := l.w.shared
	if e := (j - len(LinearModules)) / 3; e < len(l.w.experts) {
		ex = &l.w.experts[e]
	}
	return [3]runtime.Tensor{ex.gate, ex.up, ex.down}[(j-len(LinearModules))%3]
}

// modules is the layer's Linear modules, for errors.
func (l *Layer) modules() []string {
	if !l.d.sparseAt(l.Index) {
		return LinearModules
	}
	out := slices.Clone(LinearModules[:oProj+1])
	for e := range l.d.moe.Experts {
		m := l.d.moe.ExpertModules(e)
		out = append(out, m[:]...)
	}
	if l.d.moe.SharedSize > 0 {
		m := l.d.moe.SharedModules()
		out = append(out, m[:]...)
	}
	return out
}

// Weight returns a host copy of a Linear module's weight, [N, K] row-major;
// module is one of the layer's Linear modules (LayerModules).
func (l *Layer) Weight(module string) ([]float32, error) {
	j, n, k := l.module(module)
	if j < 0 {
		return nil, fmt.Errorf("model: layer %d: unknown linear module %q (want one of %v)", l.Index, module, l.modules())
	}
	out := make([]float32, n*k)
	if err := l.b.Download(out, l.weight(j)); err != nil {
		return nil, fmt.Errorf("model: layer %d: %s: %w", l.Index, module, err)
	}
	return out, nil
}

// SetWeight replaces a Linear module's weight with w [N, K] row-major
// (for example a GPTQ-dequantized weight).
func (l *Layer) SetWeight(module string, w []float32) error {
	j, n, k := l.module(module)
	if j < 0 {
		return fmt.Errorf("model: layer %d: unknown linear module %q (want one of %v)", l.Index, module, l.modules())
	}
	if len(w) != n*k {
		return fmt.Errorf("model: layer %d: %s: %d values, want [%d %d]", l.Index, module, len(w), n, k)
	}
	if err := l.b.Upload(l.weight(j), w); err != nil {
		return fmt.Errorf("model: layer %d: %s: %w", l.Index, module, err)
	}
	return nil
}

// Free releases the layer's weights and buffers; the Layer is unusable
// afterwards.
func (l *Layer) Free() {
	l.bd.free()
	l.s.free(l.b)
}
