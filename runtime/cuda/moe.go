package cuda

import (
	"encoding/binary"
	"fmt"

	"github.com/gptqtool/gptqtool/runtime"
)

// A mixture-of-experts layer routed on the device (runtime.ExpertRouter):
// kernels/moe.cu chooses each row's experts and adds their weighted
// outputs back; qgemv.cu's _e kernels multiply each slot by its expert's
// quantized weight, one launch for all the slots of a layer's gate, up or
// down products.

// moeMaxSlots, moeMaxExperts and moeMaxTopK are moe.cu's MOE_SLOTS,
// MOE_EMAX and MOE_KMAX.
const (
	moeMaxSlots   = 1024
	moeMaxExperts = 256
	moeMaxTopK    = 16
)

// moeSlotsPerExpert bounds the slots a layer routes on the device by
// default where ExpertMatMul multiplies each slot (GPTQTOOL_MOE_RUNS=0), per
// expert: it then reads an expert's weights once a slot, the host-routed
// step once an expert but op by op. On an H100, a Mixtral-shaped 2.2B (8
// experts, 2 a token, 4-bit) decoded 1.65x faster so routed at 16 rows (32
// slots), even at 32 (host 10,263 tok/s, routed 10,085) and 17% slower
// routed at 64 (docs/benchmarks.md).
const moeSlotsPerExpert = 4

// RoutesExperts implements runtime.ExpertRouter: quantized experts of 4 or
// 8 bits, one shape, group size and form of scales (not fused), for at
// most b.moeSlots slots (GPTQTOOL_MOE_SLOTS; by default as many as moe.cu
// takes, or four times the experts, moeSlotsPerExpert, where each slot is
// multiplied on its own), unless products dequantize (SetDequantGEMM).
// Floating-point experts are routed on the host.
func (b *Backend) RoutesExperts(ws []runtime.Tensor, slots int) bool {
	most := b.moeSlots
	if most < 0 {
		most = moeMaxSlots
		if b.moeRuns == 0 {
			most = moeSlotsPerExpert * len(ws)
		}
	}
	if len(ws) == 0 || len(ws) > moeMaxExperts || slots > min(most, moeMaxSlots) || b.dequantGEMM {
		return false
	}
	q0 := b.tensor(ws[0]).q
	if q0 == nil || (q0.bits != 4 && q0.bits != 8) {
		return false
	}
	for _, w := range ws {
		q := b.tensor(w).q
		if q == nil || q.bits != q0.bits || q.k != q0.k || q.n != q0.n || q.gs != q0.gs || q.glu || q.seg1 != q.n ||
			(q.szh == nil) != (q0.szh == nil) || (q.perm == nil) != (q0.perm == nil) {
			return false
		}
	}
	return true
}

// RouteTopK implements runtime.ExpertRouter: moe.cu's moe_route (the
// build rounding to dt), one block; logits F32.
func (b *Backend) RouteTopK(ids, weights, order, logits runtime.Tensor, dt runtime.DType, topK int, normTopK bool) {
	it, wt, ot, lt := b.tensor(ids), b.tensor(weights), b.tensor(order), b.tensor(logits)
	rows, E := runtime.Rows(lt), runtime.Cols(lt)
	slots := rows * topK
	if lt.dt != runtime.F32 || it.dt != runtime.I32 || ot.dt != runtime.I32 || wt.dt != runtime.F32 || it.n != slots || ot.n != 2*slots || wt.n != slots ||
		topK < 1 || topK > min(moeMaxTopK, E) || E > moeMaxExperts || slots > moeMaxSlots {
		panic(fmt.Sprintf("cuda: route logits %v to top %d: ids %v %v, weights %v %v, order %v %v", lt.shape, topK, it.dt, it.shape, wt.dt, wt.shape, ot.dt, ot.shape))
	}
	norm := int32(0)
	if normTopK {
		norm = 1
	}
	b.enter()
	defer b.exit()
	if b.etopk == nil {
		b.etopk = map[uint64]int{}
	}
	b.etopk[ot.ptr] = topK
	b.run("moe.cu", "moe_route_"+suffix(dt), Dim{X: 1}, Dim{X: 256}, 0, it.ptr, wt.ptr, ot.ptr, lt.ptr, int32(rows), int32(E), int32(topK), norm)
}

// CombineExperts implements runtime.ExpertRouter: moe.cu's moe_combine.
func (b *Backend) CombineExperts(x, out, weights, ids, extra runtime.Tensor, topK int) {
	xt, ot, wt, it := b.tensor(x), b.tensor(out), b.tensor(weights), b.tensor(ids)
	rows, H := runtime.Rows(xt), runtime.Cols(xt)
	if ot.dt != xt.dt || runtime.Rows(ot) != rows*topK || runtime.Cols(ot) != H || wt.dt != runtime.F32 || wt.n != rows*topK || it.dt != runtime.I32 || it.n != rows*topK {
		panic(fmt.Sprintf("cuda: combine experts %v %v (weights %v, ids %v) into x %v %v, top %d", ot.dt, ot.shape, wt.shape, it.shape, xt.dt, xt.shape, topK))
	}
	var ep uint64
	if extra != nil {
		et := b.tensor(extra)
		sameShape("combine-experts extra", et, xt)
		ep = et.ptr
	}
	b.enter()
	defer b.exit()
	b.run("moe.cu", "moe_combine_"+suffix(xt.dt), grid1(int64(xt.n)), Dim{X: threads}, 0, xt.ptr, ot.ptr, wt.ptr, it.ptr, ep, int32(rows), int32(H), int32(topK))
}

// ExpertMatMul implements runtime.ExpertRouter: one launch of qgemv.cu's
// _x kernel over the runs of order of each product (the grid's z, as many
// as the slots could make, the second product's after the first's; the
// blocks past the last run leave at once), each a product of up to eight
// rows with the run's expert's weight, its K split as such a product's is
// for as many blocks as all the launch's column slabs; or, where moeByRuns
// says not, of the _e kernel over the slots, each a one-row product.
func (b *Backend) ExpertMatMul(dsts []runtime.Tensor, x runtime.Tensor, ws [][]runtime.Tensor, ids, order runtime.Tensor, div int) {
	xt, it, ot := b.tensor(x), b.tensor(ids), b.tensor(order)
	if len(dsts) < 1 || len(dsts) > 2 || len(ws) != len(dsts) {
		panic(fmt.Sprintf("cuda: expert matmul into %d outputs with %d weight lists: want one or two", len(dsts), len(ws)))
	}
	slots := runtime.Rows(dsts[0])
	var out [2]uint64
	var tabs [2]uint64
	var q *quant
	for j, dst := range dsts {
		d := b.tensor(dst)
		if !b.RoutesExperts(ws[j], slots) {
			panic(fmt.Sprintf("cuda: expert matmul with %d experts for %d slots: not experts RoutesExperts takes", len(ws[j]), slots))
		}
		qj := b.tensor(ws[j][0]).q
		if j > 0 && (qj.bits != q.bits || qj.k != q.k || qj.n != q.n || qj.gs != q.gs || (qj.szh == nil) != (q.szh == nil)) {
			panic(fmt.Sprintf("cuda: expert matmul of two products with experts [%d %d] and [%d %d] of other kinds", q.n, q.k, qj.n, qj.k))
		}
		q = qj
		if runtime.Rows(d) != slots || runtime.Cols(d) != q.n || d.dt != xt.dt {
			panic(fmt.Sprintf("cuda: expert matmul output %d %v %v for %d slots of experts [%d %d], x %v", j, d.dt, d.shape, slots, q.n, q.k, xt.dt))
		}
		out[j] = d.ptr
	}
	if runtime.Cols(xt) != q.k || div < 1 || runtime.Rows(xt)*div != slots ||
		it.dt != runtime.I32 || ot.dt != runtime.I32 || it.n != slots || ot.n != 2*slots {
		panic(fmt.Sprintf("cuda: expert matmul of x %v %v (%d slots a row) · experts [%d %d]ᵀ, ids %v, order %v", xt.dt, xt.shape, div, q.n, q.k, it.shape, ot.shape))
	}
	if q.perm == nil && xt.ptr%16 != 0 {
		// (The kernel stages rows without a permutation in 16-byte loads.)
		panic(fmt.Sprintf("cuda: expert matmul of x %v at an address not 16-byte aligned", xt.shape))
	}
	if slots == 0 {
		return
	}
	b.enter()
	defer b.exit()
	for j := range dsts {
		var err error
		if tabs[j], err = b.expertTable(ws[j]); err != nil {
			b.fail(err)
			return
		}
	}
	if len(dsts) == 1 {
		out[1], tabs[1] = out[0], tabs[0]
	}
	// zper: the blocks' z a product; rows: the most rows a block takes.
	zper, rows := slots, 1
	runs := moeByRuns(b.moeRuns, slots, len(ws[0]), b.etopk[ot.ptr])
	if runs {
		zper = min(slots, slots/runtime.ExpertRun+min(len(ws[0]), slots))
		rows = min(runtime.ExpertRun, slots)
	}
	z := len(dsts) * zper
	sg := 0
	if q.gs%chunkInputs(q.bits) != 0 {
		sg = 1
	}
	nb := (q.n + 127) / 128
	sp := b.qmmaSplitS(rows, q.k, q.n*z, q.bits, false, b.maxSplits(rows, nb*z, false), 0)
	var part, count uint64
	clusterY, cl := 0, int32(0)
	if sp.cluster {
		clusterY, cl = sp.S, 1
	} else if sp.S > 1 {
		// (A z's stretch is the _x kernels' ExpertRun rows; the _e
		// kernels use one row of it.)
		pb, err := b.scratch(&b.epart, int64(z)*int64(sp.S)*int64(runtime.ExpertRun)*int64(q.n)*4)
		if err == nil {
			count, err = b.counters(&b.ecount, nb*z)
		}
		if err != nil {
			b.fail(err)
			return
		}
		part = pb.Ptr
	}
	if runs {
		name, _ := q.scales(qnames.runs[q.bits/8][sg][xt.dt], true)
		b.runCluster("qgemv.cu", name, Dim{X: nb, Y: sp.S, Z: z}, Dim{X: 256}, sp.shared, clusterY,
			out[0], out[1], xt.ptr, tabs[0], tabs[1], ot.ptr, int32(slots), int32(zper), int32(div), part, count,
			int32(q.k), int32(q.n), int32(q.gs), int32(sp.cps), int32(sp.P), cl, b.qmmaFlags())
		return
	}
	name, _ := q.scales(qnames.expert[q.bits/8][sg][xt.dt], true)
	b.runCluster("qgemv.cu", name, Dim{X: nb, Y: sp.S, Z: z}, Dim{X: 256}, sp.shared, clusterY,
		out[0], out[1], xt.ptr, tabs[0], tabs[1], it.ptr, ot.ptr, int32(slots), int32(div), part, count,
		int32(q.k), int32(q.n), int32(q.gs), int32(sp.cps), int32(sp.P), cl, b.qmmaFlags())
}

// moeByRuns reports whether ExpertMatMul multiplies slots slots of a
// layer of experts experts by runs under GPTQTOOL_MOE_RUNS mode (0 never,
// 2 always): by default (1) where more than one row was routed (topK, of
// the RouteTopK that wrote the order, 0 where none did: where there are
// more slots than experts, so that some expert has two or more). With one
// row every run is one slot, and the _e kernels are the faster: on an
// H100, a Mixtral-shaped 2.2B's batch 1 decoded at 2,025.5 tok/s with them
// and 1,972.5 by runs; at 2, 4 and 8 rows by runs 3,277.2, 5,243.3 and
// 8,165.5 against 3,161.1, 4,777.7 and 7,006.8 (docs/benchmarks.md).
func moeByRuns(mode, slots, experts, topK int) bool {
	switch {
	case mode != 1:
		return mode == 2
	case topK > 0:
		return slots > topK
	}
	return slots > experts
}

// expertTable returns the device address of ws's table of experts
// (qgemv.cu QExp: each one's codes, scales and permutation; the scales
// alone where the weights have them, as the kernel's name then says),
// uploaded by the first product that needs it: a decode step's first run,
// before it is recorded.
func (b *Backend) expertTable(ws []runtime.Tensor) (uint64, error) {
	raw := make([]byte, 24*len(ws))
	for e, w := range ws {
		t := b.tensor(w)
		_, sz := t.q.scales("", true)
		var perm uint64
		if t.q.perm != nil {
			perm = t.q.perm.Ptr
		}
		for i, v := range []uint64{t.ptr, sz, perm} {
			binary.LittleEndian.PutUint64(raw[24*e+8*i:], v)
		}
	}
	if buf := b.etabs[string(raw)]; buf != nil {
		return buf.Ptr, nil
	}
	if b.capturing {
		return 0, fmt.Errorf("cuda: a table of %d experts made while recording a graph (run the ops once before capturing)", len(ws))
	}
	buf, err := b.allocBufferLocked(int64(len(raw)))
	if err != nil {
		return 0, fmt.Errorf("cuda: table of %d experts: %w", len(ws), err)
	}
	if err := b.htod(buf.Ptr, raw); err != nil {
		b.alloc.release(buf.Ptr, buf.cls)
		return 0, fmt.Errorf("cuda: table of %d experts: %w", len(ws), err)
	}
	if b.etabs == nil {
		b.etabs = map[string]*Buffer{}
	}
	b.etabs[string(raw)] = buf
	return buf.Ptr, nil
}

var _ runtime.ExpertRouter = (*Backend)(nil)
