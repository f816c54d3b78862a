package model

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/runtime"
)

// expert is one expert's SwiGLU MLP of a mixture-of-experts layer: gate
// and up [ExpertSize, hidden], down [hidden, ExpertSize].
type expert struct{ gate, up, down runtime.Tensor }

// bindMoE binds layer li's router [Experts, hidden] (kept in floating
// point) and its experts' Linears (floating point or GPTQ, as any Linear).
func bindMoE(bd *binder, d dims, li int, lw *layerWeights) error {
	var err error
	if lw.router, err = bd.weight(d.moe.RouterName(li), d.moe.Experts, d.hidden); err != nil {
		return err
	}
	p := LayerPrefix(li) + "."
	lw.experts = make([]expert, d.moe.Experts)
	for e := range lw.experts {
		for j, m := range d.moe.ExpertModules(e) {
			n, k, _ := d.linearShape(m)
			t, err := bd.linear(p+m, n, k)
			if err != nil {
				return err
			}
			*[]*runtime.Tensor{&lw.experts[e].gate, &lw.experts[e].up, &lw.experts[e].down}[j] = t
		}
	}
	return nil
}

// route is one expert's share of a step's rows: the rows the router sends
// it and the weight of its output in each.
type route struct {
	rows    []int
	weights []float32
}

// routeRows chooses each row's experts from the router's logits [rows,
// experts] as transformers' MixtralTopKRouter and Qwen3MoeTopKRouter do:
// a softmax over all the experts in fp32, the topK largest probabilities
// (the lower expert first among equal ones), divided by their sum where
// normTopK. It returns each expert's rows in row order.
func routeRows(logits []float32, rows, experts, topK int, normTopK bool) []route {
	routes := make([]route, experts)
	probs := make([]float32, experts)
	chosen := make([]int, 0, topK)
	for r := range rows {
		l := logits[r*experts : (r+1)*experts]
		most := float32(math.Inf(-1))
		for _, v := range l {
			most = max(most, v)
		}
		var sum float32
		for e, v := range l {
			probs[e] = float32(math.Exp(float64(v - most)))
			sum += probs[e]
		}
		for e := range probs {
			probs[e] /= sum
		}
		chosen = chosen[:0]
		var total float32
		for range topK {
			best := -1
			for e, p := range probs {
				if p >= 0 && (best < 0 || p > probs[best]) {
					best = e
				}
			}
			if best < 0 {
				break // (NaN logits: no expert compares; the row's output stays zero)
			}
			chosen = append(chosen, best)
			total += probs[best]
			probs[best] = -1 - probs[best] // taken; restored below
		}
		for _, e := range chosen {
			w := -1 - probs[e]
			if normTopK {
				w /= total
			}
			routes[e].rows = append(routes[e].rows, r)
			routes[e].weights = append(routes[e].weights, w)
		}
	}
	return routes
}

// moe adds layer lw's mixture of experts of xn [T, hidden] into x
// (transformers' MixtralSparseMoeBlock, Qwen3MoeSparseMoeBlock): the
// router's logits come to the host, each expert runs on the rows it is
// sent, its output scaled by the row's weight (in fp32, rounded once to
// the activation dtype), and the experts' outputs add up in expert order
// (index_add_) before one residual add. It uses the scratch's MoE
// buffers and s.o.
//
// With emit (the layer's observers; nil in decode steps) it first emits
// every expert's input (ExpertInput: xn's rows routed to it, zeros in the
// others, so that a Hessian of it sums over the expert's own tokens and
// the padding mask still lines up with the rows), then each expert's
// SwiGLU output (ExpertAct, likewise), counting each expert's rows in
// s.routed (Layer.ExpertRows); emit's error (errStopped at the pass's
// stop) ends it.
func (lw *layerWeights) moe(b runtime.Backend, d dims, s *scratch, xn, x runtime.Tensor, emit func(string, runtime.Tensor) error) error {
	T, E := runtime.Rows(xn), d.moe.Experts
	logits := b.View(s.router, 0, T)
	b.MatMul(logits, xn, lw.router)
	host := make([]float32, T*E)
	if err := b.Download(host, logits); err != nil {
		return fmt.Errorf("model: router logits: %w", err)
	}
	routes := routeRows(host, T, E, d.moe.TopK, d.moe.NormTopK)
	// padded writes an expert's rows of src (n of them, or xn's own rows
	// where src is nil) at their tokens' rows of a zeroed [T, cols] pad
	// and emits it.
	padded := func(name string, r route, src, pad, zero runtime.Tensor) error {
		pad, zero = b.View(pad, 0, T), b.View(zero, 0, T)
		b.Copy(pad, zero)
		for j, row := range r.rows {
			from := b.View(xn, row, 1)
			if src != nil {
				from = b.View(src, j, 1)
			}
			b.Copy(b.View(pad, row, 1), from)
		}
		return emit(name, pad)
	}
	if emit != nil {
		if err := s.ensurePads(b, d); err != nil {
			return err
		}
		if len(s.routed) != E {
			s.routed = make([]int, E)
		}
		for e, r := range routes {
			s.routed[e] += len(r.rows)
			if err := padded(ExpertInput(d.moe, e), r, nil, s.padIn, s.zeroIn); err != nil {
				return err
			}
		}
	}
	acc := b.View(s.o, 0, T)
	written := make([]bool, T)
	sc := b.(runtime.Scaler)
	for e, r := range routes {
		n := len(r.rows)
		if n == 0 {
			if emit != nil {
				if err := padded(ExpertAct(d.moe, e), r, nil, s.padAct, s.zeroAct); err != nil {
					return err
				}
			}
			continue
		}
		in, g, u, out := b.View(s.ein, 0, n), b.View(s.egate, 0, n), b.View(s.eup, 0, n), b.View(s.eout, 0, n)
		for j, row := range r.rows {
			b.Copy(b.View(in, j, 1), b.View(xn, row, 1))
		}
		ex := lw.experts[e]
		b.MatMul(g, in, ex.gate)
		b.MatMul(u, in, ex.up)
		runtime.SwiGLU(b, g, g, u)
		if emit != nil {
			if err := padded(ExpertAct(d.moe, e), r, g, s.padAct, s.zeroAct); err != nil {
				return err
			}
		}
		b.MatMul(out, g, ex.down)
		for j, row := range r.rows {
			o, dst := b.View(out, j, 1), b.View(acc, row, 1)
			sc.Scale(o, o, r.weights[j])
			if written[row] {
				b.Add(dst, dst, o)
			} else {
				b.Copy(dst, o)
				written[row] = true
			}
		}
	}
	for row, w := range written {
		if !w {
			sc.Scale(b.View(acc, row, 1), b.View(xn, row, 1), 0) // (no expert: a zero output)
		}
	}
	b.Add(x, x, acc)
	return nil
}

// ExpertInput and ExpertAct are the intermediates (hook names after
// "model.layers.<i>.") of expert e's gate/up input and of its SwiGLU
// output, down's input, in a mixture-of-experts layer: <block>.experts.<e>.in
// and .act, [T, cols] with zeros in the rows of the tokens the router does
// not send it.
func ExpertInput(m *hfconfig.MoE, e int) string {
	return m.Block + ".experts." + strconv.Itoa(e) + ".in"
}

// ExpertAct: see ExpertInput.
func ExpertAct(m *hfconfig.MoE, e int) string {
	return m.Block + ".experts." + strconv.Itoa(e) + ".act"
}

// intermediates lists layer li's intermediates in the order it produces
// them: Intermediates, or in a mixture-of-experts layer the attention's,
// ffn_norm, every expert's input, every expert's SwiGLU output, out.
func (d dims) intermediates(li int) []string {
	if !d.sparseAt(li) {
		return Intermediates
	}
	out := slices.Clone(Intermediates[:slices.Index(Intermediates, "ffn_norm")+1])
	for e := range d.moe.Experts {
		out = append(out, ExpertInput(d.moe, e))
	}
	for e := range d.moe.Experts {
		out = append(out, ExpertAct(d.moe, e))
	}
	return append(out, "out")
}

// LayerIntermediates lists decoder layer li's intermediates (hook names
// after "model.layers.<li>.") in the order the layer produces them:
// Intermediates in a dense layer; see dims.intermediates.
func LayerIntermediates(cfg *hfconfig.Config, li int) []string {
	d := dims{moe: cfg.MoE}
	if cfg.MoE != nil {
		d.sparse = make([]bool, cfg.NumHiddenLayers)
		d.sparse[li] = cfg.Sparse(li)
	}
	return d.intermediates(li)
}

// ensurePads allocates the scratch's zero-padded expert buffers and the
// zeros they are cleared from, for as many rows as the scratch holds.
func (s *scratch) ensurePads(b runtime.Backend, d dims) error {
	if s.padIn != nil {
		return nil
	}
	var err error
	alloc := func(cols int, zero bool) runtime.Tensor {
		if err != nil {
			return nil
		}
		var t runtime.Tensor
		if t, err = b.Alloc(s.dt, s.rows, cols); err == nil && zero {
			err = b.Upload(t, make([]float32, s.rows*cols))
		}
		return t
	}
	s.padIn, s.zeroIn = alloc(d.hidden, false), alloc(d.hidden, true)
	s.padAct, s.zeroAct = alloc(d.moe.ExpertSize, false), alloc(d.moe.ExpertSize, true)
	if err != nil {
		return fmt.Errorf("model: expert scratch for %d tokens: %w", s.rows, err)
	}
	return nil
}

// checkMoE refuses a backend that cannot run mixture-of-experts layers:
// their routing reads the router's logits on the host in the middle of a
// step, which a backend that records decode steps (runtime.Grapher: the
// CUDA backend) cannot replay, and their weighting needs runtime.Scaler.
func checkMoE(d dims, b runtime.Backend) error {
	if d.moe == nil {
		return nil
	}
	if _, ok := b.(runtime.Grapher); ok {
		return fmt.Errorf("model: backend %s does not run mixture-of-experts layers yet (the router's choices are read on the host mid-step, which its recorded decode steps cannot do): use the CPU backend (--device cpu)", b.Name())
	}
	if _, ok := b.(runtime.Scaler); !ok {
		return fmt.Errorf("model: backend %s has no Scale (runtime.Scaler), which mixture-of-experts layers need", b.Name())
	}
	return nil
}

// moeDecodeOps issues the layers and head of a decode step of a
// mixture-of-experts model over ds's rows, whose embeddings x holds: op by
// op, as the layer's forward (MixtralDecoderLayer, Qwen3MoeDecoderLayer),
// its sparse layers' MLPs by moe and its dense ones' (qwen3_moe's
// mlp_only_layers) as Llama's; the step's fusions stay off.
func (m *Model) moeDecodeOps(c *PagedCache, ds *decodeState) {
	b, d, s := m.b, m.d, &ds.s
	pd := b.(runtime.PagedDecoder)
	x := s.x
	for li := range m.layers {
		lw := &m.layers[li]
		d.norm(b, s.xn, x, lw.attnNorm)
		lw.project(b, s.xn, s.q, s.k, s.v)
		lw.addQKVBias(b, s.q, s.k, s.v)
		lw.normQK(b, d, s.q, s.k)
		pd.RoPEStore(s.q, s.k, s.v, c.k[li], c.v[li], ds.pos, ds.slot, d.headDim, d.ropeOf(li))
		d.scaleTail(b, s.q)
		p := runtime.AttentionParams{HeadDim: d.headDim, Window: d.windowOf(li), Scale: d.scale, CacheSettled: !ds.verify}
		pd.PagedAttention(s.att, s.q, c.k[li], c.v[li], ds.tables, ds.pos, c.Pool.BlockSize(), p)
		b.MatMul(s.o, s.att, lw.lin[oProj])
		if lw.bias[oProj] != nil {
			b.AddBias(s.o, lw.bias[oProj])
		}
		runtime.AddRMSNorm(b, s.xn, x, s.o, lw.ffnNorm, d.eps)
		if d.sparseAt(li) {
			if err := lw.moe(b, d, s, s.xn, x, nil); err != nil {
				// (A download of a tensor the step made: only a
				// programming error fails it, as the backends' ops panic.)
				panic(err)
			}
			continue
		}
		lw.act(b, s.xn, s.gate, s.up)
		runtime.MatMulAdd(b, x, s.gate, lw.lin[downProj], x, s.o)
	}
	d.norm(b, s.xn, x, m.norm)
	b.MatMul(ds.logits, s.xn, m.head)
}

// ExpertRows returns, for each expert of a sparse layer, the rows the
// router sent it in the layer's observed passes (those that emit the
// experts' intermediates) since the last call, and starts counting again;
// nil for a dense layer or before such a pass. A driver rounds an expert
// that no calibration row reached to nearest (its Hessian is zero).
func (l *Layer) ExpertRows() []int {
	out := slices.Clone(l.s.routed)
	clear(l.s.routed)
	return out
}
