package model

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

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
	if d.moe.SharedSize > 0 {
		// Qwen2-MoE's shared expert: its gate [1, hidden] in floating
		// point, as the router; its Linears as any Linear.
		if lw.sharedGate, err = bd.weight(d.moe.SharedGateName(li), 1, d.hidden); err != nil {
			return err
		}
		lw.shared = &expert{}
		for j, m := range d.moe.SharedModules() {
			n, k, _ := d.linearShape(m)
			t, err := bd.linear(p+m, n, k)
			if err != nil {
				return err
			}
			*[]*runtime.Tensor{&lw.shared.gate, &lw.shared.up, &lw.shared.down}[j] = t
		}
	}
	lw.experts = make([]expert, d.moe.Experts)
	for e := range lw.experts {
		for j, m := range d.moe.ExpertModules(e) {
			n, k, _ := d.linearShape(m)
			t, err := bd.linear(p+m, n, k)
			if err != nil {
				return err
			}
			*[]*runtime.Tensor{&lw.experts[e].gate, &lw.experts[e].up, &lw.experts[e].down}[j] = t
			lw.ews[j] = append(lw.ews[j], t)
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
	ids, weights := make([]int32, topK), make([]float32, topK)
	for r := range rows {
		n := runtime.RouteRow(logits[r*experts:(r+1)*experts], topK, normTopK, probs, ids, weights)
		for i, e := range ids[:n] {
			routes[e].rows = append(routes[e].rows, r)
			routes[e].weights = append(routes[e].weights, weights[i])
		}
	}
	return routes
}

// moe adds layer lw's mixture of experts of xn [T, hidden] into x
// (transformers' MixtralSparseMoeBlock, Qwen3MoeSparseMoeBlock). The
// router's logits come to the host and routeRows chooses each row's
// experts; the rest is a fixed number of ops a layer, whatever T: every
// expert's rows gathered into one stack (Embedding by row index), each
// expert's gate and up products on its stretch of it, one SwiGLU, each
// expert's down product, every stacked output scaled by its row's weight
// (runtime.RowScaler, in fp32 rounded once to the activation dtype), and
// the outputs of each row gathered back and added in expert order (as
// index_add_ adds them), then one residual add. It uses the scratch's MoE
// buffers and s.o.
//
// With emit (the layer's observers, or a pass stopping at one of its
// intermediates; nil in decode steps) it first emits every expert's input
// (ExpertInput: xn's rows routed to it, zeros in the others, so that a
// Hessian of it sums over the expert's own tokens and the padding mask
// still lines up with the rows), then, after the SwiGLU, every expert's
// output (ExpertAct, likewise), counting each expert's rows in s.routed
// (Layer.ExpertRows); emit's error (errStopped at the pass's stop) ends
// it.
func (lw *layerWeights) moe(b runtime.Backend, d dims, s *scratch, xn, x runtime.Tensor, emit func(string, runtime.Tensor) error) error {
	T, E, K := runtime.Rows(xn), d.moe.Experts, d.moe.TopK
	logits := b.View(s.router, 0, T)
	b.MatMul(logits, xn, lw.router)
	host := make([]float32, T*E)
	if err := b.Download(host, logits); err != nil {
		return fmt.Errorf("model: router logits: %w", err)
	}
	routes := routeRows(host, T, E, K, d.moe.NormTopK)
	// The stack: expert e's rows at base[e] on; each row's stack
	// positions in expert order (slots), the stacks' zero row (zeroAt)
	// where it has fewer than K experts.
	zeroAt := s.rows * K
	base := make([]int, E+1)
	rows := make([]int, 0, T*K)
	weights := make([]float32, 0, T*K)
	slots := make([][]int, K)
	for k := range slots {
		slots[k] = slices.Repeat([]int{zeroAt}, T)
	}
	filled := make([]int, T)
	for e, r := range routes {
		base[e+1] = base[e] + len(r.rows)
		for j, row := range r.rows {
			slots[filled[row]][row] = base[e] + j
			filled[row]++
		}
		rows = append(rows, r.rows...)
		weights = append(weights, r.weights...)
	}
	N := base[E]
	in, g, u, out := b.View(s.ein, 0, N), b.View(s.egate, 0, N), b.View(s.eup, 0, N), b.View(s.eout, 0, N)
	if N > 0 {
		b.Embedding(in, xn, rows)
	}
	// emitAll emits every expert's rows of stack (ein or egate) at their
	// tokens' rows of pad, the stack's zero row in the others.
	emitAll := func(name func(*hfconfig.MoE, int) string, pad, stack runtime.Tensor) error {
		pad = b.View(pad, 0, T)
		for e, r := range routes {
			idx := slices.Repeat([]int{zeroAt}, T)
			for j, row := range r.rows {
				idx[row] = base[e] + j
			}
			b.Embedding(pad, stack, idx)
			if err := emit(name(d.moe, e), pad); err != nil {
				return err
			}
		}
		return nil
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
		}
		if err := emitAll(ExpertInput, s.padIn, s.ein); err != nil {
			return err
		}
	}
	if N > 0 {
		for e := range E {
			if n := base[e+1] - base[e]; n > 0 {
				b.MatMul(b.View(g, base[e], n), b.View(in, base[e], n), lw.experts[e].gate)
				b.MatMul(b.View(u, base[e], n), b.View(in, base[e], n), lw.experts[e].up)
			}
		}
		runtime.SwiGLU(b, g, g, u)
	}
	if emit != nil {
		if err := emitAll(ExpertAct, s.padAct, s.egate); err != nil {
			return err
		}
	}
	if N > 0 {
		for e := range E {
			if n := base[e+1] - base[e]; n > 0 {
				b.MatMul(b.View(out, base[e], n), b.View(g, base[e], n), lw.experts[e].down)
			}
		}
		wt := b.View(s.wts, 0, N)
		if err := b.Upload(wt, weights); err != nil {
			return fmt.Errorf("model: routing weights: %w", err)
		}
		b.(runtime.RowScaler).ScaleRows(out, out, wt)
	}
	// Each row's outputs, added in expert order, then into x. (The
	// stack's input is free by now: its first T rows take the slots
	// after the first.)
	acc, tmp := b.View(s.o, 0, T), b.View(s.ein, 0, T)
	b.Embedding(acc, s.eout, slots[0])
	for k := 1; k < K; k++ {
		b.Embedding(tmp, s.eout, slots[k])
		b.Add(acc, acc, tmp)
	}
	if lw.shared != nil {
		// Qwen2MoeSparseMoeBlock: the experts' sum plus the shared
		// expert's output weighted by σ(shared_expert_gate(xn)).
		if err := lw.sharedExpert(b, d, s, xn, tmp, emit); err != nil {
			return err
		}
		b.Add(acc, acc, tmp)
	}
	b.Add(x, x, acc)
	return nil
}

// sharedExpert sets out [T, hidden] to a Qwen2-MoE layer's shared expert
// of xn [T, hidden] (a SwiGLU MLP every row runs) weighted by the sigmoid
// of its gate's logit, all in the activation dtype as transformers
// computes them. With emit it first emits the SwiGLU output (SharedAct),
// down's input. It uses the scratch's shared buffers.
func (lw *layerWeights) sharedExpert(b runtime.Backend, d dims, s *scratch, xn, out runtime.Tensor, emit func(string, runtime.Tensor) error) error {
	T := runtime.Rows(xn)
	g, u, logit := b.View(s.sgate, 0, T), b.View(s.sup, 0, T), b.View(s.slogit, 0, T)
	b.MatMul(g, xn, lw.shared.gate)
	b.MatMul(u, xn, lw.shared.up)
	runtime.SwiGLU(b, g, g, u)
	if emit != nil {
		if err := emit(SharedAct(d.moe), g); err != nil {
			return err
		}
	}
	b.MatMul(out, g, lw.shared.down)
	b.MatMul(logit, xn, lw.sharedGate)
	b.(runtime.SigmoidGater).SigmoidGateRows(out, out, logit)
	return nil
}

// moeRouted is moe routed on the backend (runtime.ExpertRouter), for a
// decode step: no transfer, so that the step can be recorded. The
// router's product, RouteTopK (each row's experts in ascending order at
// its slots), each slot's gate and up products by one ExpertMatMul (the slots
// of one expert together), one SwiGLU, the slots' down products, and
// CombineExperts adding each row's weighted outputs in expert order (and
// a shared expert's output, computed first: sharedExpert) into x, rounded
// as moe rounds them.
func (lw *layerWeights) moeRouted(er runtime.ExpertRouter, b runtime.Backend, d dims, s *scratch, xn, x runtime.Tensor) {
	T, K := runtime.Rows(xn), d.moe.TopK
	N := T * K
	// (The logits in fp32, the product a kernel for few rows takes; the
	// router rounds them to the activation dtype.)
	logits := b.View(s.rlog, 0, T)
	b.MatMul(logits, xn, lw.router)
	ids, order, wts := b.View(s.eroute, 0, N), b.View(s.eroute, N, 2*N), b.View(s.wts, 0, N)
	er.RouteTopK(ids, wts, order, logits, s.dt, K, d.moe.NormTopK)
	g, u, out := b.View(s.egate, 0, N), b.View(s.eup, 0, N), b.View(s.eout, 0, N)
	er.ExpertMatMul([]runtime.Tensor{g, u}, xn, lw.ews[:2], ids, order, K)
	runtime.SwiGLU(b, g, g, u)
	er.ExpertMatMul([]runtime.Tensor{out}, g, lw.ews[2:], ids, order, 1)
	var shared runtime.Tensor
	if lw.shared != nil {
		shared = b.View(s.o, 0, T)
		_ = lw.sharedExpert(b, d, s, xn, shared, nil) // (no emit, no error)
	}
	er.CombineExperts(x, out, wts, ids, shared, K)
}

// routesOnDevice reports whether decode steps of rows rows route every
// sparse layer on the backend (moeRouted): it is a runtime.ExpertRouter
// that takes each layer's experts for rows·TopK slots.
func (m *Model) routesOnDevice(rows int) bool {
	er, ok := m.b.(runtime.ExpertRouter)
	if !ok || m.d.moe == nil || m.d.moe.TopK > 16 || m.d.moe.Experts > 256 {
		return false
	}
	for li := range m.layers {
		if !m.d.sparseAt(li) {
			continue
		}
		for _, ws := range m.layers[li].ews {
			if !er.RoutesExperts(ws, rows*m.d.moe.TopK) {
				return false
			}
		}
	}
	return true
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

// SharedAct is the intermediate (hook name after "model.layers.<i>.") of
// a Qwen2-MoE layer's shared expert's SwiGLU output, its down_proj's input
// [T, SharedSize]: <block>.shared_expert.act.
func SharedAct(m *hfconfig.MoE) string {
	return m.Block + ".shared_expert.act"
}

// ExpertOf parses an intermediate name that ExpertInput or ExpertAct gives
// into its expert e and whether it is the SwiGLU output (act); ok is false
// for any other name (a dense intermediate, or none of m's).
func ExpertOf(m *hfconfig.MoE, name string) (e int, act, ok bool) {
	e, leaf, ok := cutExpert(m, name)
	if !ok || (leaf != "in" && leaf != "act") {
		return 0, false, false
	}
	return e, leaf == "act", true
}

// cutExpert parses a name under one of m's experts, <block>.experts.<e>.<leaf>
// (a Linear module's, ExpertModules, or an intermediate's, ExpertInput), into
// e and leaf; ok is false for any other name.
func cutExpert(m *hfconfig.MoE, name string) (e int, leaf string, ok bool) {
	if m == nil {
		return 0, "", false
	}
	rest, ok := strings.CutPrefix(name, m.Block+".experts.")
	if !ok {
		return 0, "", false
	}
	idx, leaf, ok := strings.Cut(rest, ".")
	e, err := strconv.Atoi(idx)
	if !ok || err != nil || e < 0 || e >= m.Experts || strconv.Itoa(e) != idx {
		return 0, "", false
	}
	return e, leaf, true
}

// intermediates lists layer li's intermediates in the order it produces
// them: Intermediates, or in a mixture-of-experts layer the attention's,
// ffn_norm, every expert's input, every expert's SwiGLU output, the shared
// expert's (SharedAct, where the layer has one), out.
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
	if d.moe.SharedSize > 0 {
		out = append(out, SharedAct(d.moe))
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

// ensurePads allocates the scratch's zero-padded expert buffers, for as
// many rows as the scratch holds.
func (s *scratch) ensurePads(b runtime.Backend, d dims) error {
	if s.padIn != nil {
		return nil
	}
	var err error
	if s.padIn, err = b.Alloc(s.dt, s.rows, d.hidden); err == nil {
		s.padAct, err = b.Alloc(s.dt, s.rows, d.moe.ExpertSize)
	}
	if err != nil {
		return fmt.Errorf("model: expert scratch for %d tokens: %w", s.rows, err)
	}
	return nil
}

// checkMoE refuses a backend without runtime.RowScaler, which weighs a
// mixture-of-experts layer's expert outputs (or without
// runtime.SigmoidGater, which weighs a shared expert's). (Routed on the host, a layer
// reads the router's logits in the middle of a step, so decode steps run
// op by op even where the backend records them, unless it routes them
// itself: runtime.ExpertRouter, moeRouted.)
func checkMoE(d dims, b runtime.Backend) error {
	if d.moe == nil {
		return nil
	}
	if _, ok := b.(runtime.RowScaler); !ok {
		return fmt.Errorf("model: backend %s has no ScaleRows (runtime.RowScaler), which mixture-of-experts layers need", b.Name())
	}
	if _, ok := b.(runtime.SigmoidGater); !ok && d.moe.SharedSize > 0 {
		return fmt.Errorf("model: backend %s has no SigmoidGateRows (runtime.SigmoidGater), which a shared expert needs", b.Name())
	}
	return nil
}

// moeDecodeOps issues the layers and head of a decode step of a
// mixture-of-experts model over ds's rows, whose embeddings x holds, as the
// layer's forward (MixtralDecoderLayer, Qwen3MoeDecoderLayer): the
// attention with the dense step's fusions that need no input order (q/k/v
// normalizing x, rotating and storing in the cache: runtime.RoPEFuser;
// o_proj straight from attention's parts: runtime.AttentionProjector), its
// sparse layers' MLPs by moeRouted where ds routes on the backend (else by
// moe) and its dense ones' (qwen3_moe's mlp_only_layers) as Llama's,
// unfused.
func (m *Model) moeDecodeOps(c *PagedCache, ds *decodeState) {
	b, d, s := m.b, m.d, &ds.s
	pd := b.(runtime.PagedDecoder)
	rf, _ := b.(runtime.RoPEFuser)
	ap, _ := b.(runtime.AttentionProjector)
	x := s.x
	for li := range m.layers {
		lw := &m.layers[li]
		if rf != nil && lw.qkv != nil && !lw.unfusedQK() {
			// q/k/v normalizing x (lw.normed.attn; else a norm kernel
			// first), rotated and stored in the cache by the product.
			xin := x
			if lw.normed.attn == nil {
				d.norm(b, s.xn, x, lw.attnNorm)
				xin = s.xn
			}
			rf.MatMulSplitRoPE([]runtime.Tensor{s.q, s.k, s.v}, xin, lw.normed.attn, d.eps, lw.qkv, c.k[li], c.v[li], ds.pos, ds.slot, d.headDim, d.ropeOf(li))
		} else {
			d.norm(b, s.xn, x, lw.attnNorm)
			lw.project(b, s.xn, s.q, s.k, s.v)
			lw.addQKVBias(b, s.q, s.k, s.v)
			lw.normQK(b, d, s.q, s.k)
			pd.RoPEStore(s.q, s.k, s.v, c.k[li], c.v[li], ds.pos, ds.slot, d.headDim, d.ropeOf(li))
		}
		d.scaleTail(b, s.q)
		p := runtime.AttentionParams{HeadDim: d.headDim, Window: d.windowOf(li), Scale: d.scale, Softcap: d.attnCap, CacheSettled: !ds.verify}
		if ap != nil {
			// o_proj straight from attention's parts (lw's own weight).
			ap.PagedAttentionMatMul(s.o, s.att, s.q, c.k[li], c.v[li], ds.tables, ds.pos, c.Pool.BlockSize(), p, lw.lin[oProj])
		} else {
			pd.PagedAttention(s.att, s.q, c.k[li], c.v[li], ds.tables, ds.pos, c.Pool.BlockSize(), p)
			b.MatMul(s.o, s.att, lw.lin[oProj])
		}
		if lw.bias[oProj] != nil {
			b.AddBias(s.o, lw.bias[oProj])
		}
		runtime.AddRMSNorm(b, s.xn, x, s.o, lw.ffnNorm, d.eps)
		if d.sparseAt(li) && ds.routed {
			lw.moeRouted(b.(runtime.ExpertRouter), b, d, s, s.xn, x)
			continue
		}
		if d.sparseAt(li) {
			if err := lw.moe(b, d, s, s.xn, x, nil); err != nil {
				// (A download of a tensor the step made: only a
				// programming error fails it, as the backends' ops panic.)
				panic(err)
			}
			continue
		}
		lw.act(b, d, s.xn, s.gate, s.up)
		runtime.MatMulAdd(b, x, s.gate, lw.lin[downProj], x, s.o)
	}
	d.norm(b, s.xn, x, m.norm)
	m.headInto(ds.logits, s.xn)
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

// ExpertRows is Layer.ExpertRows for the model's own passes (Observe),
// whose sparse layers count into one list: read as a layer's first expert
// intermediate (ExpertInput of expert 0) reaches a tap, it holds that
// layer's rows of the pass, which the layer counts before it emits them,
// when it was read at the previous layer's too.
func (m *Model) ExpertRows() []int {
	out := slices.Clone(m.s.routed)
	clear(m.s.routed)
	return out
}
