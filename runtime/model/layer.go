package model

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/runtime"
)

// dims are the sizes and constants of the forward pass, from the config.
type dims struct {
	hidden, inter, heads, kvHeads, headDim, vocab, window int
	eps                                                   float32
	theta                                                 float64
	scale                                                 float32
}

func dimsOf(cfg *hfconfig.Config) (dims, error) {
	d := dims{
		hidden: cfg.HiddenSize, inter: cfg.IntermediateSize, heads: cfg.NumAttentionHeads,
		kvHeads: cfg.NumKeyValueHeads, headDim: cfg.HeadDim, vocab: cfg.VocabSize,
		window: cfg.SlidingWindow, eps: float32(cfg.RMSNormEps), theta: cfg.RopeTheta,
	}
	if d.hidden <= 0 || d.inter <= 0 || d.heads <= 0 || d.kvHeads <= 0 || d.headDim <= 0 || d.vocab <= 0 ||
		d.headDim%2 != 0 || d.heads%d.kvHeads != 0 || d.window < 0 || d.theta <= 0 {
		return dims{}, fmt.Errorf("model: %s: unsupported sizes hidden %d intermediate %d heads %d/%d head_dim %d vocab %d sliding_window %d rope_theta %v",
			cfg.File, d.hidden, d.inter, d.heads, d.kvHeads, d.headDim, d.vocab, d.window, d.theta)
	}
	// transformers MistralAttention: scaling = head_dim**-0.5.
	d.scale = float32(1 / math.Sqrt(float64(d.headDim)))
	return d, nil
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
	return 0, 0, false
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

// layerWeights are one decoder layer's immutable weights.
type layerWeights struct {
	attnNorm, ffnNorm runtime.Tensor // [hidden]
	lin               [7]runtime.Tensor
}

func bindLayer(bd *binder, d dims, i int) (layerWeights, error) {
	p := LayerPrefix(i) + "."
	var lw layerWeights
	var err error
	if lw.attnNorm, err = bd.fp(p+"input_layernorm.weight", d.hidden); err != nil {
		return lw, err
	}
	if lw.ffnNorm, err = bd.fp(p+"post_attention_layernorm.weight", d.hidden); err != nil {
		return lw, err
	}
	for j, m := range LinearModules {
		n, k, _ := d.linearShape(m)
		if lw.lin[j], err = bd.linear(p+m, n, k); err != nil {
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
	xn, q, k, v, att, o, gate, up, x runtime.Tensor
}

func (s *scratch) free(b runtime.Backend) {
	for _, t := range []runtime.Tensor{s.xn, s.q, s.k, s.v, s.att, s.o, s.gate, s.up, s.x} {
		b.Free(t)
	}
	*s = scratch{}
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
		t, err = b.Alloc(runtime.F32, rows, cols)
		return t
	}
	s.x, s.xn, s.o = alloc(d.hidden), alloc(d.hidden), alloc(d.hidden)
	s.q, s.att = alloc(d.qDim()), alloc(d.qDim())
	s.k, s.v = alloc(d.kvDim()), alloc(d.kvDim())
	s.gate, s.up = alloc(d.inter), alloc(d.inter)
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
}

// errStopped ends a forward pass early once the stop intermediate has been
// produced; forward returns it and its callers treat it as success.
var errStopped = errors.New("model: stopped")

// forward runs decoder layer li (transformers MistralDecoderLayer) on the
// stacked rows x [ΣT, hidden] in place. Row-wise ops (norms, projections,
// SwiGLU, residual adds) run once over all rows; RoPE and attention run
// per span, each with its own positions and KV cache. With stop set to one
// of Intermediates it returns errStopped right after producing (and
// hooking) that intermediate; hooks see the stacked rows.
//
// With resume set, s.att already holds the attention output for x (the
// intermediate attn_out of an earlier pass with the same attention weights)
// and the pass starts at o_proj.
func (lw *layerWeights) forward(b runtime.Backend, d dims, s *scratch, x runtime.Tensor, spans []span, li int, hook Hook, stop string, resume bool) error {
	T := runtime.Rows(x)
	view := func(t runtime.Tensor) runtime.Tensor { return b.View(t, 0, T) }
	xn, att, o, gate, up := view(s.xn), view(s.att), view(s.o), view(s.gate), view(s.up)
	prefix := LayerPrefix(li) + "."
	emitAs := func(name string, t runtime.Tensor) error {
		if err := emit(b, hook, prefix+name, t); err != nil {
			return err
		}
		if name == stop {
			return errStopped
		}
		return nil
	}

	// h = x + o_proj(attn(input_layernorm(x)))
	if !resume {
		if err := lw.attention(b, d, s, x, spans, li, emitAs); err != nil {
			return err
		}
	}
	b.MatMul(o, att, lw.lin[oProj])
	runtime.AddRMSNorm(b, xn, x, o, lw.ffnNorm, d.eps)
	if err := emitAs("ffn_norm", xn); err != nil {
		return err
	}

	// out = h + down_proj(silu(gate_proj(n)) * up_proj(n)), n = post_attention_layernorm(h)
	b.MatMul(gate, xn, lw.lin[gateProj])
	b.MatMul(up, xn, lw.lin[upProj])
	runtime.SwiGLU(b, gate, gate, up)
	if err := emitAs("ffn_act", gate); err != nil {
		return err
	}
	b.MatMul(o, gate, lw.lin[downProj])
	b.Add(x, x, o)
	return emitAs("out", x)
}

// attention computes the self-attention output of layer li before o_proj
// into s.att: att = attn(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)),
// n = input_layernorm(x), appending each cached span's K and V to its cache.
func (lw *layerWeights) attention(b runtime.Backend, d dims, s *scratch, x runtime.Tensor, spans []span, li int, emitAs func(string, runtime.Tensor) error) error {
	T := runtime.Rows(x)
	xn, q, k, v, att := b.View(s.xn, 0, T), b.View(s.q, 0, T), b.View(s.k, 0, T), b.View(s.v, 0, T), b.View(s.att, 0, T)
	b.RMSNorm(xn, x, lw.attnNorm, d.eps)
	if err := emitAs("attn_norm", xn); err != nil {
		return err
	}
	b.MatMul(q, xn, lw.lin[qProj])
	b.MatMul(k, xn, lw.lin[kProj])
	b.MatMul(v, xn, lw.lin[vProj])
	for _, sp := range spans {
		b.RoPE(b.View(q, sp.row0, sp.rows), d.headDim, sp.pos0, d.theta)
		b.RoPE(b.View(k, sp.row0, sp.rows), d.headDim, sp.pos0, d.theta)
	}
	for _, e := range []struct {
		name string
		t    runtime.Tensor
	}{{"attn_q", q}, {"attn_k", k}, {"attn_v", v}} {
		if err := emitAs(e.name, e.t); err != nil {
			return err
		}
	}
	for _, sp := range spans {
		sk, sv := b.View(k, sp.row0, sp.rows), b.View(v, sp.row0, sp.rows)
		if c := sp.cache; c != nil {
			b.Copy(b.View(c.k[li], sp.pos0, sp.rows), sk)
			b.Copy(b.View(c.v[li], sp.pos0, sp.rows), sv)
			sk, sv = b.View(c.k[li], 0, sp.pos0+sp.rows), b.View(c.v[li], 0, sp.pos0+sp.rows)
		}
		b.Attention(b.View(att, sp.row0, sp.rows), b.View(q, sp.row0, sp.rows), sk, sv, runtime.AttentionParams{
			HeadDim: d.headDim, Pos0: sp.pos0, Window: d.window, Scale: d.scale,
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
// model.layers.<i>.* by HF name, shapes from cfg).
func LoadLayer(w Weights, cfg *hfconfig.Config, i int, b runtime.Backend) (*Layer, error) {
	d, err := dimsOf(cfg)
	if err != nil {
		return nil, err
	}
	if i < 0 || i >= cfg.NumHiddenLayers {
		return nil, fmt.Errorf("model: layer %d outside [0, %d)", i, cfg.NumHiddenLayers)
	}
	l := &Layer{Index: i, b: b, d: d, bd: binder{w: w, b: b}}
	if l.w, err = bindLayer(&l.bd, d, i); err != nil {
		l.bd.free()
		return nil, err
	}
	return l, nil
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
	if stop != "" && !slices.Contains(Intermediates, stop) {
		return nil, fmt.Errorf("model: layer %d: unknown intermediate %q (want one of %v)", l.Index, stop, Intermediates)
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
	err := l.w.forward(l.b, l.d, &l.s, xt, []span{{rows: T}}, l.Index, hook, stop, att != nil)
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
	if j < 0 {
		return -1, 0, 0
	}
	n, k, _ := l.d.linearShape(module)
	return j, n, k
}

// Weight returns a host copy of a Linear module's weight, [N, K] row-major;
// module is one of LinearModules.
func (l *Layer) Weight(module string) ([]float32, error) {
	j, n, k := l.module(module)
	if j < 0 {
		return nil, fmt.Errorf("model: layer %d: unknown linear module %q (want one of %v)", l.Index, module, LinearModules)
	}
	out := make([]float32, n*k)
	if err := l.b.Download(out, l.w.lin[j]); err != nil {
		return nil, fmt.Errorf("model: layer %d: %s: %w", l.Index, module, err)
	}
	return out, nil
}

// SetWeight replaces a Linear module's weight with w [N, K] row-major
// (for example a GPTQ-dequantized weight).
func (l *Layer) SetWeight(module string, w []float32) error {
	j, n, k := l.module(module)
	if j < 0 {
		return fmt.Errorf("model: layer %d: unknown linear module %q (want one of %v)", l.Index, module, LinearModules)
	}
	if len(w) != n*k {
		return fmt.Errorf("model: layer %d: %s: %d values, want [%d %d]", l.Index, module, len(w), n, k)
	}
	if err := l.b.Upload(l.w.lin[j], w); err != nil {
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
