package model

import (
	"encoding/binary"
	"fmt"

	"github.com/gptqtool/gptqtool/runtime"
)

// maxDecodeRows is the largest step of one-token sequences that takes the
// decode path (runtime.PagedDecoder); larger ones take the general one.
const maxDecodeRows = 256

// decodeBucket is the number of rows a decode of n sequences runs with when
// it is replayed from graphs: one graph per bucket, the rows past n padding.
func decodeBucket(n int) int {
	if n <= 8 {
		r := 1
		for r < n {
			r *= 2
		}
		return r
	}
	return (n + 7) / 8 * 8
}

// decodeState is what a decode step of a given row count owns, fixed so
// that the step can be recorded once as a graph and replayed: activations,
// logits, and the I32 inputs (ids, positions, slots, block tables, the
// greedy draw's host slot) that the host refreshes before each step.
type decodeState struct {
	rows int
	// verify: steps whose sequences may take several rows (StepSeq.Draft),
	// so that a row's attention reads rows its sequence's other rows write
	// in the same step (not AttentionParams.CacheSettled).
	verify                 bool
	s                      scratch
	logits                 runtime.Tensor // [rows, vocab] F32
	idx                    runtime.Tensor // I32 [rows*(3+width)+1]: ids, pos, slot, tables, hslot
	ids, pos, slot, tables runtime.Tensor
	hslot                  runtime.Tensor // I32 [1]: the host slot of a greedy draw (runtime.GreedyDrawer)
	host                   []byte
	// The step's ops, and the step's ops with its greedy draw
	// (greedySlot): each run op by op, then recorded, then replayed.
	graph, drawGraph runtime.Graph
	runs, drawRuns   int
	// routed: a mixture of experts' layers route on the backend
	// (Model.routesOnDevice), so that the step may be recorded.
	routed bool
}

func (ds *decodeState) free(b runtime.Backend) {
	for _, g := range []*runtime.Graph{&ds.graph, &ds.drawGraph} {
		if *g != nil {
			(*g).Free()
			*g = nil
		}
	}
	ds.s.free(b)
	b.Free(ds.logits)
	b.Free(ds.idx)
}

// decodeState returns the cache's state for steps of rows rows (verify:
// with drafts, decodeState.verify), made on first use.
func (c *PagedCache) decodeState(m *Model, rows int, verify bool) (*decodeState, error) {
	key := rows
	if verify {
		key = -rows
	}
	if ds := c.dec[key]; ds != nil {
		return ds, nil
	}
	b := m.b
	ds := &decodeState{rows: rows, verify: verify, s: scratch{dt: m.dtype()}, routed: m.routesOnDevice(rows)}
	fail := func(err error) (*decodeState, error) {
		ds.free(b)
		return nil, fmt.Errorf("model: decode state for %d rows: %w", rows, err)
	}
	if err := ds.s.ensure(b, m.d, rows); err != nil {
		return fail(err)
	}
	var err error
	if ds.routed {
		if ds.s.eroute, err = b.Alloc(runtime.I32, 3*rows*m.d.moe.TopK); err == nil {
			ds.s.rlog, err = b.Alloc(runtime.F32, rows, m.d.moe.Experts)
		}
		if err != nil {
			return fail(err)
		}
	}
	if ds.logits, err = b.Alloc(runtime.F32, rows, m.d.vocab); err != nil {
		return fail(err)
	}
	n := rows*(3+c.width) + 1
	if ds.idx, err = b.Alloc(runtime.I32, n); err != nil {
		return fail(err)
	}
	ds.ids, ds.pos, ds.slot = b.View(ds.idx, 0, rows), b.View(ds.idx, rows, rows), b.View(ds.idx, 2*rows, rows)
	ds.tables = b.View(ds.idx, 3*rows, rows*c.width)
	ds.hslot = b.View(ds.idx, n-1, 1)
	ds.host = make([]byte, 4*n)
	if c.dec == nil {
		c.dec = map[int]*decodeState{}
	}
	c.dec[key] = ds
	return ds, nil
}

// canDecode reports whether a step of seqs can take the decode path.
func (m *Model) canDecode(seqs []StepSeq) bool {
	if _, ok := m.b.(runtime.PagedDecoder); !ok || decodeRows(seqs) > maxDecodeRows || m.d.headDim > 256 || m.d.heads/m.d.kvHeads > 8 {
		return false
	}
	for _, s := range seqs {
		if len(s.Tokens) != 1 && !s.Fed || s.AllLogits {
			return false
		}
	}
	return true
}

// CanDraft reports whether a step of seqs, with their StepSeq.Drafts, can
// be issued: drafts take the decode path, which needs a
// runtime.PagedDecoder, a head size up to 256, up to 8 query heads a KV
// head, and steps of at most maxDecodeRows rows (drafts included) whose
// sequences each feed one token and ask for no AllLogits (a one-token
// prompt chunk whose prompt log-probabilities are asked for does).
// CanDraft(nil) reports whether the model has the decode path at all.
func (m *Model) CanDraft(seqs []StepSeq) bool { return m.canDecode(seqs) }

// decode runs a step of one token per sequence (validated by StepAhead)
// through the backend's PagedDecoder ops: the inputs go to the device in
// one transfer, the layers run (replayed from a graph where the backend
// records them), and the tokens are drawn on the backend (where it is a
// runtime.TokenSampler) and the logits asked for come back.
func (m *Model) decode(c *PagedCache, seqs []StepSeq) (*Pending, error) {
	b := m.b
	n := decodeRows(seqs)
	rows := n
	if _, ok := b.(runtime.Grapher); ok {
		// Padded whether or not this cache records, so that the op-by-op
		// reference runs the very same shapes.
		rows = decodeBucket(rows)
	}
	verify := n > len(seqs)
	ds, err := c.decodeState(m, rows, verify)
	if err != nil {
		return nil, err
	}
	hs := m.greedySlot(c, seqs)
	if err := m.runDecode(c, ds, seqs, hs); err != nil {
		return nil, err
	}
	// Row r of the step is sequence of[r]'s row r - first[of[r]].
	of, first := make([]int, 0, n), make([]int, len(seqs))
	for i, s := range seqs {
		first[i] = len(of)
		for range 1 + len(s.Draft) {
			of = append(of, i)
		}
	}
	var p *Pending
	if hs >= 0 {
		// Every row drew in the step, into c.fed and host slot hs.
		pt, err := b.(runtime.GreedyDrawer).GreedyPending(hs, n)
		if err != nil {
			return nil, fmt.Errorf("model: sampling: %w", err)
		}
		p = &Pending{seqs: len(seqs), logits: make([][]float32, len(seqs)), draws: of, pend: pt}
		c.noteDraws(p, seqs, true)
	} else if p, err = m.readOut(c, b.View(ds.logits, 0, n), seqs, first); err != nil {
		return nil, err
	}
	if verify {
		p.drafts = make([]bool, len(seqs))
		for i, s := range seqs {
			p.drafts[i] = len(s.Draft) > 0
		}
	}
	for _, s := range seqs {
		s.Seq.Len += 1 + len(s.Draft)
	}
	return p, nil
}

// decodeRows is the rows a decode step of seqs takes: one a sequence, and
// one more for each token of its Draft.
func decodeRows(seqs []StepSeq) int {
	n := len(seqs)
	for _, s := range seqs {
		n += len(s.Draft)
	}
	return n
}

// greedySlot is the host slot (runtime.GreedyDrawer.GreedySlot) of a
// decode step of seqs whose draw is recorded with its ops, or -1: where
// the backend records graphs and draws greedily in them, the cache
// replays steps, and every sequence draws greedily without penalties and
// asks for no logits.
func (m *Model) greedySlot(c *PagedCache, seqs []StepSeq) int {
	gd, ok := m.b.(runtime.GreedyDrawer)
	if _, g := m.b.(runtime.Grapher); !ok || !g || c.NoGraphs || c.graphErr != nil || c.fed == nil || len(seqs) == 0 {
		return -1
	}
	for _, s := range seqs {
		if s.Logits || s.Sample == nil || !s.Sample.Greedy() || len(s.Sample.Adjust) > 0 || s.Sample.Allow != nil || s.DraftRules != nil {
			return -1
		}
	}
	return gd.GreedySlot()
}

// runDecode uploads the inputs of seqs (rows past them are padding: token
// 0 at position 0 of the trash block) and issues ds's step, with its
// greedy draw into host slot hs unless hs < 0: op by op on its first run,
// recorded on its second where the backend records and the cache allows,
// replayed after. It does not wait.
func (m *Model) runDecode(c *PagedCache, ds *decodeState, seqs []StepSeq, hs int) error {
	b := m.b
	g, grapher := b.(runtime.Grapher)
	graphs := grapher && !c.NoGraphs && c.graphErr == nil && (m.d.moe == nil || ds.routed)
	rows := ds.rows
	bs, width, trash := c.Pool.BlockSize(), c.width, int32(c.Pool.Blocks())
	put := func(i int, v int32) { binary.LittleEndian.PutUint32(ds.host[4*i:], uint32(v)) }
	_, feeds := b.(runtime.TokenFeeder)
	feeds = feeds && c.onDevice
	// Rows in sequence order; a sequence's draft tokens take the rows after
	// its own, at the positions after its own.
	i, off := 0, 0
	for r := range rows {
		id, pos, slot := int32(0), int32(0), trash*int32(bs)
		var blocks []int32
		if i < len(seqs) {
			s := seqs[i].Seq
			switch {
			case off > 0:
				id = int32(seqs[i].Draft[off-1])
			case !seqs[i].Fed:
				id = int32(seqs[i].Tokens[0])
			case feeds:
				id = -1 - int32(c.drawn[s]) // EmbeddingFed reads it from c.fed
			default:
				tok, err := c.fedToken(s)
				if err != nil {
					return fmt.Errorf("model: decode step sequence %d: %w", i, err)
				}
				id = int32(tok)
			}
			pos, slot, blocks = int32(s.Len+off), int32(s.Slot(s.Len+off, bs)), s.Blocks
			if off++; off > len(seqs[i].Draft) {
				i, off = i+1, 0
			}
		}
		put(r, id)
		put(rows+r, pos)
		put(2*rows+r, slot)
		for j := range width {
			v := trash
			if j < len(blocks) {
				v = blocks[j]
			}
			put(3*rows+r*width+j, v)
		}
	}
	put(rows*(3+width), int32(max(hs, 0)))
	if err := b.UploadRaw(ds.idx, ds.host, runtime.I32); err != nil {
		return fmt.Errorf("model: decode inputs: %w", err)
	}
	gr, runs, ops := &ds.graph, &ds.runs, func() { m.decodeOps(c, ds) }
	if hs >= 0 {
		gd := b.(runtime.GreedyDrawer)
		gr, runs = &ds.drawGraph, &ds.drawRuns
		ops = func() {
			m.decodeOps(c, ds)
			gd.DrawGreedy(b.View(c.fed, 0, ds.rows), ds.logits, ds.hslot)
		}
	}
	switch {
	case *gr != nil:
		if err := (*gr).Launch(); err != nil {
			return fmt.Errorf("model: decode step: %w", err)
		}
	case graphs && *runs > 0:
		// The first run made every scratch buffer the ops need; record the
		// second. A backend that cannot record runs the ops from now on.
		rec, err := g.Capture(func() error { ops(); return nil })
		if err != nil {
			c.graphErr = err
			ops()
			break
		}
		*gr = rec
		if err := rec.Launch(); err != nil {
			return fmt.Errorf("model: decode step: %w", err)
		}
	default:
		ops()
	}
	*runs++
	return nil
}

// WarmDecode readies the decode steps of every batch size up to maxRows
// (each bucket of decodeBucket) before they are needed, where the backend
// records graphs: each bucket's step runs once op by op and once recorded,
// all its rows padding (the trash block), so that no request of a server
// waits for a first run or a recording. So do the steps with their greedy
// draw (runtime.GreedyDrawer), unless a draw's tokens are still to be fed
// (those steps overwrite them). Other backends have nothing to ready.
func (m *Model) WarmDecode(c *PagedCache, maxRows int) error {
	if _, ok := m.b.(runtime.Grapher); !ok || c.NoGraphs || !m.canDecode(nil) || maxRows < 1 {
		return nil
	}
	gd, draws := m.b.(runtime.GreedyDrawer)
	draws = draws && c.fed != nil && len(c.drawn) == 0
	last := decodeBucket(min(maxRows, maxDecodeRows))
	for n := 1; n <= last; n = decodeBucket(n) + 1 {
		ds, err := c.decodeState(m, decodeBucket(n), false)
		if err != nil {
			return err
		}
		for ds.runs < 2 {
			if err := m.runDecode(c, ds, nil, -1); err != nil {
				return err
			}
		}
		for draws && ds.drawRuns < 2 && c.graphErr == nil {
			hs := gd.GreedySlot()
			if hs < 0 {
				break
			}
			if err := m.runDecode(c, ds, nil, hs); err != nil {
				return err
			}
		}
		if c.graphErr != nil {
			break // steps run op by op (GraphErr says why): nothing to record
		}
	}
	return m.b.Sync()
}

// readOut brings back what a step's sequences ask of their rows of logits
// lg (F32 [n, vocab] on the backend; rows[i] is sequence i's, or -1): the
// tokens of those with a Sample rule, drawn on the backend where it is a
// runtime.TokenSampler (else on the host), and the logits of those with
// Logits set (nil for the others). It waits for the step, unless the
// backend is a runtime.TokenFeeder and no logits come back: then the
// tokens come when the Pending is waited for. The step becomes c's last.
func (m *Model) readOut(c *PagedCache, lg runtime.Tensor, seqs []StepSeq, rows []int) (*Pending, error) {
	b, V := m.b, m.d.vocab
	ts, onDevice := b.(runtime.TokenSampler)
	tf, _ := b.(runtime.TokenFeeder)
	var drawRows, drawSeqs []int
	var rules []runtime.SampleParams
	host := false // some row's logits come back
	for i, s := range seqs {
		if rows[i] < 0 {
			continue
		}
		host = host || s.Logits || (s.Sample != nil && !onDevice)
		if s.Sample != nil {
			// (A draft's rows follow the sequence's own, each drawing
			// under the same rule.)
			for r := range 1 + len(s.Draft) {
				rule := *s.Sample
				if r > 0 && s.DraftRules != nil {
					rule = s.DraftRules[r-1]
				}
				drawRows, drawSeqs, rules = append(drawRows, rows[i]+r), append(drawSeqs, i), append(rules, rule)
			}
		}
	}
	out := make([][]float32, len(seqs))
	var flat []float32
	if host {
		flat = make([]float32, runtime.Rows(lg)*V)
		if err := b.Download(flat, lg); err != nil {
			return nil, fmt.Errorf("model: logits: %w", err)
		}
		for i, r := range rows {
			if r >= 0 {
				out[i] = flat[r*V : (r+1)*V : (r+1)*V]
			}
		}
	}
	p := &Pending{seqs: len(seqs), draws: drawSeqs}
	fedOnDevice := false
	switch {
	case onDevice && len(drawRows) > 0 && tf != nil && c.fed != nil && len(drawRows) <= c.fed.Len():
		pt, err := tf.SampleTokensTo(b.View(c.fed, 0, len(drawRows)), lg, drawRows, rules)
		if err != nil {
			return nil, fmt.Errorf("model: sampling: %w", err)
		}
		p.pend, fedOnDevice = pt, true
	case onDevice && len(drawRows) > 0:
		p.drawn = make([]int32, len(drawRows))
		if err := ts.SampleTokens(p.drawn, lg, drawRows, rules); err != nil {
			return nil, fmt.Errorf("model: sampling: %w", err)
		}
	default:
		// The reference rule (runtime.DrawFinite) on the rows brought back.
		p.drawn = make([]int32, len(drawRows))
		for j, r := range drawRows {
			p.drawn[j] = int32(runtime.DrawFinite(flat[r*V:(r+1)*V], rules[j]))
		}
		if !host {
			if err := b.Sync(); err != nil {
				return nil, err
			}
		}
	}
	for i, s := range seqs {
		if !s.Logits {
			out[i] = nil
		}
	}
	p.logits = out
	c.noteDraws(p, seqs, fedOnDevice)
	return p, nil
}

// decodeOps issues the ops of a decode step over ds's rows: no transfer,
// no allocation, so that they can be recorded.
func (m *Model) decodeOps(c *PagedCache, ds *decodeState) {
	b, d, s := m.b, m.d, &ds.s
	pd := b.(runtime.PagedDecoder)
	x := s.x
	if tf, ok := b.(runtime.TokenFeeder); ok && c.fed != nil {
		tf.EmbeddingFed(x, m.embed, ds.ids, c.fed)
	} else {
		pd.EmbeddingAt(x, m.embed, ds.ids)
	}
	if d.unfused() {
		m.unfusedDecodeOps(c, ds)
		return
	}
	if d.moe != nil {
		m.moeDecodeOps(c, ds)
		return
	}
	// One token a sequence (Step checks it), each in blocks of its own: the
	// kernel ahead of attention writes only each row's own position.
	// (With drafts, a sequence's rows read the rows of the positions before
	// theirs that its other rows write: ds.verify.)
	p := runtime.AttentionParams{HeadDim: d.headDim, Window: d.window, Scale: d.scale, Softcap: d.attnCap, CacheSettled: !ds.verify}
	io, ok := b.(runtime.InputOrderer)
	if !ok {
		io = inPlace{b, pd}
	}
	// Products that normalize their own input (lw.normed), for as many
	// rows as the backend's kernels do that. o_proj then adds the residual
	// in its epilogue: x + o rounded once to the activation dtype, where
	// the unfused step (and prefill) round o first, so such steps are not
	// bit-identical to steps of more rows or GPTQTOOL_NORM_FUSE=0.
	nf, _ := b.(runtime.NormFuser)
	fuse := nf != nil && runtime.Rows(x) <= nf.NormFusedRows()
	rf, _ := b.(runtime.RoPEFuser)
	ap, _ := b.(runtime.AttentionProjector)
	rp, _ := b.(runtime.ResidualProjector)
	resProj := rp != nil && rp.ResidualProjects(runtime.Rows(x))
	mf, _ := b.(runtime.MLPFuser)
	fuseMLP := mf != nil && runtime.Rows(x) <= mf.MLPFusedRows()
	// gate/up normalizing the residual stream itself (gn), o_proj then
	// adding into it, for as many rows as the backend's GLU product does
	// (in place of the add + norm kernel, and of MatMulMLP where the backend
	// has that too).
	gn, _ := b.(runtime.GLUNormer)
	gluNorm := gn != nil && runtime.Rows(x) <= gn.GLUNormRows()
	rap, _ := b.(runtime.ResidualAttentionProjector)
	// down's product and the norm after it (the next layer's, or the
	// model's) as one op where the backend has it (rn): s.xn then already
	// holds the next layer's normalized input (normed).
	rn, _ := b.(runtime.ResidualNormer)
	// gate/up, down and the norm after it as one op where the backend has
	// that too (gd).
	gd, _ := b.(runtime.GLUDownNormer)
	normed := false
	for li := range m.layers {
		// Each product input written in the order its weights read it,
		// where the backend has such weights (lw.order).
		lw := &m.layers[li]
		w, sl := lw, inputSlots{}
		if lw.order != nil {
			w, sl = &lw.order.w, lw.order.slots
		}
		glu := false // gate/up's product, not yet issued
		// q/k/v: normalized by the product (lw.normed) or by a norm kernel
		// first; rotated and stored in the cache by the product where the
		// backend's kernels do that (rf), by RoPEStore otherwise.
		qkv := []runtime.Tensor{s.q, s.k, s.v}
		xin, nw, wq := x, lw.normed.attn, lw.qkv
		if !fuse || nw == nil {
			if !normed {
				io.RMSNormTo(s.xn, x, lw.attnNorm, sl.attn, d.eps)
			}
			xin, nw, wq = s.xn, nil, w.qkv
		}
		normed = false
		// q/k/v biases (Qwen2's) and q/k per-head norms (Qwen3's) go on
		// the products before RoPE: not through a product that rotates in
		// its epilogue.
		switch {
		case rf != nil && wq != nil && !lw.unfusedQK():
			rf.MatMulSplitRoPE(qkv, xin, nw, d.eps, wq, c.k[li], c.v[li], ds.pos, ds.slot, d.headDim, d.rope)
		case nw != nil:
			nf.MatMulSplitNorm(qkv, xin, nw, d.eps, wq)
			lw.addQKVBias(b, s.q, s.k, s.v)
			lw.normQK(b, d, s.q, s.k)
			pd.RoPEStore(s.q, s.k, s.v, c.k[li], c.v[li], ds.pos, ds.slot, d.headDim, d.rope)
		default:
			w.project(b, xin, s.q, s.k, s.v)
			lw.addQKVBias(b, s.q, s.k, s.v)
			lw.normQK(b, d, s.q, s.k)
			pd.RoPEStore(s.q, s.k, s.v, c.k[li], c.v[li], ds.pos, ds.slot, d.headDim, d.rope)
		}
		d.scaleTail(b, s.q)
		attend := func() {
			io.PagedAttentionTo(s.att, s.q, c.k[li], c.v[li], ds.tables, ds.pos, c.Pool.BlockSize(), p, sl.o)
		}
		// o_proj's bias (llama's attention_bias) goes on its product, or on
		// x where the product was added into it.
		oBias := func(t runtime.Tensor) {
			if lw.bias[oProj] != nil {
				b.AddBias(t, lw.bias[oProj])
			}
		}
		switch {
		case fuse && lw.normed.ffn != nil:
			attend()
			runtime.MatMulAdd(b, x, s.att, w.lin[oProj], x, s.o)
			oBias(x)
			nf.MatMulGLUNorm(s.gate, x, lw.normed.ffn, d.eps, lw.gateUp)
		case gluNorm && lw.normed.glu != nil:
			// o_proj straight from attention and added into x where the
			// backend does that (rap: lw's own weight, whose input order it
			// reads itself). (lw's own gate/up, which reads x through its
			// input order, writing down_proj's input in down_proj's.)
			if rap != nil {
				rap.PagedAttentionMatMulAdd(x, s.att, s.q, c.k[li], c.v[li], ds.tables, ds.pos, c.Pool.BlockSize(), p, lw.lin[oProj])
			} else {
				attend()
				runtime.MatMulAdd(b, x, s.att, w.lin[oProj], x, s.o)
			}
			oBias(x)
			gn.MatMulGLUNormTo(s.gate, x, lw.normed.glu, d.eps, lw.gateUp, sl.down)
		default:
			// o_proj added into x by the product where the backend asks
			// for that at this step's rows (rp); else straight from
			// attention where the backend does that (ap: lw's own weight,
			// whose input order it reads itself).
			if resProj {
				attend()
				runtime.MatMulAdd(b, x, s.att, w.lin[oProj], x, s.o)
				oBias(x)
				io.RMSNormTo(s.xn, x, lw.ffnNorm, sl.ffn, d.eps)
			} else {
				if ap != nil {
					ap.PagedAttentionMatMul(s.o, s.att, s.q, c.k[li], c.v[li], ds.tables, ds.pos, c.Pool.BlockSize(), p, lw.lin[oProj])
				} else {
					attend()
					b.MatMul(s.o, s.att, w.lin[oProj])
				}
				oBias(s.o)
				io.AddRMSNormTo(s.xn, x, s.o, lw.ffnNorm, sl.ffn, d.eps)
			}
			if fuseMLP && lw.mlp != nil {
				// gate/up, SiLU·up and down with the residual, one op.
				mf.MatMulMLP(x, s.xn, lw.mlp)
				continue
			}
			if w.gateUp != nil {
				glu = true // (issued below: with down where gd takes both)
			} else {
				w.act(b, d, s.xn, s.gate, s.up)
			}
		}
		// The norm after down: the next layer's where it is a kernel of
		// its own, else the model's after the last layer.
		if rn != nil {
			var nw, ns runtime.Tensor
			if li+1 < len(m.layers) {
				next := &m.layers[li+1]
				if !fuse || next.normed.attn == nil {
					nw = next.attnNorm
					if next.order != nil {
						ns = next.order.slots.attn
					}
				}
			} else {
				nw = m.norm
			}
			if nw != nil {
				if glu && gd != nil {
					gd.MatMulGLUDownNormTo(s.gate, s.xn, w.gateUp, sl.down, x, w.lin[downProj], s.xn, nw, ns, d.eps)
				} else {
					if glu {
						io.MatMulGLUTo(s.gate, s.xn, w.gateUp, sl.down)
					}
					rn.MatMulAddNormTo(x, s.gate, w.lin[downProj], s.xn, nw, ns, d.eps)
				}
				normed = true
				continue
			}
		}
		if glu {
			io.MatMulGLUTo(s.gate, s.xn, w.gateUp, sl.down)
		}
		runtime.MatMulAdd(b, x, s.gate, w.lin[downProj], x, s.o)
	}
	if !normed {
		d.norm(b, s.xn, x, m.norm)
	}
	m.headInto(ds.logits, s.xn)
}

// inPlace is runtime.InputOrderer for a backend whose weights read their
// inputs as they are: every slots argument is nil.
type inPlace struct {
	b  runtime.Backend
	pd runtime.PagedDecoder
}

func (p inPlace) InputSlots(runtime.Tensor) runtime.Tensor { return nil }
func (p inPlace) InOrder(w runtime.Tensor) runtime.Tensor  { return w }
func (p inPlace) RMSNormTo(dst, x, weight, _ runtime.Tensor, eps float32) {
	p.b.RMSNorm(dst, x, weight, eps)
}
func (p inPlace) AddRMSNormTo(norm, x, delta, weight, _ runtime.Tensor, eps float32) {
	runtime.AddRMSNorm(p.b, norm, x, delta, weight, eps)
}
func (p inPlace) PagedAttentionTo(dst, q, kc, vc, tables, pos runtime.Tensor, blockSize int, ap runtime.AttentionParams, _ runtime.Tensor) {
	p.pd.PagedAttention(dst, q, kc, vc, tables, pos, blockSize, ap)
}
func (p inPlace) MatMulGLUTo(dst, x, w, _ runtime.Tensor) {
	p.b.(runtime.FusedQuantLoader).MatMulGLU(dst, x, w)
}
