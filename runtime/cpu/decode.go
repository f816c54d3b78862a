package cpu

import (
	"fmt"
	"sync"

	"github.com/gptqtool/gptqtool/runtime"
)

func indexOf(op string, t runtime.Tensor, n int) []int32 {
	it := tensorOf(t)
	if !it.i32 || len(it.ints) < n {
		panic(fmt.Sprintf("cpu: %s: index tensor %v %v, want I32 of at least %d", op, it.DType(), it.shape, n))
	}
	return it.ints
}

// EmbeddingAt implements runtime.PagedDecoder.
func (b *Backend) EmbeddingAt(dst, table, ids runtime.Tensor) {
	b.EmbeddingFed(dst, table, ids, nil)
}

// EmbeddingFed implements runtime.TokenFeeder.
func (b *Backend) EmbeddingFed(dst, table, ids, fed runtime.Tensor) {
	d := tensorOf(dst)
	idx := indexOf("embedding", ids, d.rows())
	// The fed tokens the ids read: as many as the farthest one needs.
	idx = idx[:d.rows()]
	var fedIdx []int32
	need := int32(0)
	for i, id := range idx {
		if id < 0 && fed == nil {
			panic(fmt.Sprintf("cpu: embedding: id %d of row %d reads a fed token, and none are given", id, i))
		}
		need = max(need, -id)
	}
	if need > 0 {
		fedIdx = indexOf("embedding", fed, int(need))
	}
	rows := make([]int, len(idx))
	for i, id := range idx {
		if id < 0 {
			id = max(fedIdx[-1-id], 0)
		}
		rows[i] = int(id)
	}
	b.Embedding(dst, table, rows)
}

// RoPEStore implements runtime.PagedDecoder.
func (b *Backend) RoPEStore(q, k, v, kc, vc, pos, slot runtime.Tensor, headDim int, inv []float32) {
	qt, kt, vt, kct, vct := tensorOf(q), tensorOf(k), tensorOf(v), tensorOf(kc), tensorOf(vc)
	rows, kvc := qt.rows(), kt.cols()
	if kt.rows() != rows || vt.rows() != rows || vt.cols() != kvc || kct.cols() != kvc || vct.cols() != kvc || kct.rows() != vct.rows() {
		panic(fmt.Sprintf("cpu: rope-store q %v k %v v %v into %v %v", qt.shape, kt.shape, vt.shape, kct.shape, vct.shape))
	}
	p, s := indexOf("rope-store", pos, rows), indexOf("rope-store", slot, rows)
	at := func(t int) int { return int(p[t]) }
	b.rope(qt, headDim, inv, at)
	b.rope(kt, headDim, inv, at)
	for r := range rows {
		sl := int(s[r])
		if sl < 0 || sl >= kct.rows() {
			panic(fmt.Sprintf("cpu: rope-store slot %d outside the cache's %d rows", sl, kct.rows()))
		}
		copy(kct.data[sl*kvc:(sl+1)*kvc], kt.data[r*kvc:(r+1)*kvc])
		copy(vct.data[sl*kvc:(sl+1)*kvc], vt.data[r*kvc:(r+1)*kvc])
	}
}

// PagedAttention implements runtime.PagedDecoder: Attention's arithmetic
// (fp32 scores, soft-capped where asked, the max subtracted, the sum in float64) over keys found
// through the block table.
func (b *Backend) PagedAttention(dst, q, kc, vc, tables, pos runtime.Tensor, blockSize int, p runtime.AttentionParams) {
	d, qt, kt, vt := tensorOf(dst), tensorOf(q), tensorOf(kc), tensorOf(vc)
	hd := p.HeadDim
	rows, qc, kvc := qt.rows(), qt.cols(), kt.cols()
	if hd <= 0 || qc%hd != 0 || kvc%hd != 0 || vt.cols() != kvc || d.rows() != rows || d.cols() != qc || blockSize <= 0 || rows == 0 {
		panic(fmt.Sprintf("cpu: paged attention dst %v q %v kc %v vc %v params %+v: shape mismatch", d.shape, qt.shape, kt.shape, vt.shape, p))
	}
	hq, hkv := qc/hd, kvc/hd
	if hq%hkv != 0 {
		panic(fmt.Sprintf("cpu: paged attention %d query heads over %d kv heads", hq, hkv))
	}
	ps := indexOf("paged attention", pos, rows)
	tab := tensorOf(tables)
	width := tab.Len() / rows
	tb := indexOf("paged attention", tables, rows*width)
	group := hq / hkv
	b.parallel(rows*hq, func(task int) {
		r, h := task/hq, task%hq
		i := int(ps[r])
		j0 := 0
		if p.Window > 0 {
			j0 = max(0, i-p.Window+1)
		}
		row := func(j int) int {
			blk := j / blockSize
			if blk >= width {
				panic(fmt.Sprintf("cpu: paged attention position %d past a block table of %d blocks", j, width))
			}
			return int(tb[r*width+blk])*blockSize + j%blockSize
		}
		qr := qt.data[r*qc+h*hd : r*qc+(h+1)*hd]
		kh := (h / group) * hd
		sc := make([]float32, i-j0+1)
		for j := range sc {
			o := row(j0+j)*kvc + kh
			sc[j] = dotGo(qr, kt.data[o:o+hd])
		}
		inv := softmax(sc, capScores(sc, p.Scale, p.Softcap))
		out := d.data[r*qc+h*hd : r*qc+(h+1)*hd]
		clear(out)
		for j, s := range sc {
			o := row(j0+j)*kvc + kh
			b.kern.axpy(s*inv, vt.data[o:o+hd], out)
		}
	})
	b.round(d)
}

var _ runtime.PagedDecoder = (*Backend)(nil)

// SampleTokens implements runtime.TokenSampler with runtime.DrawFinite (the
// reference rule), the rows in parallel.
func (b *Backend) SampleTokens(dst []int32, logits runtime.Tensor, rows []int, p []runtime.SampleParams) error {
	ct := tensorOf(logits)
	if len(ct.shape) != 2 || ct.i32 || len(dst) != len(rows) || len(p) != len(rows) {
		return fmt.Errorf("cpu: sample %d tokens from logits %v %v with %d rules", len(dst), ct.DType(), ct.shape, len(p))
	}
	n, V := ct.shape[0], ct.shape[1]
	for _, r := range rows {
		if r < 0 || r >= n {
			return fmt.Errorf("cpu: sample from row %d of logits %v", r, ct.shape)
		}
	}
	b.parallel(len(rows), func(i int) {
		dst[i] = int32(runtime.DrawFinite(ct.data[rows[i]*V:(rows[i]+1)*V], p[i]))
	})
	return nil
}

// SampleTokensTo implements runtime.TokenFeeder: the draw is done when it
// returns.
func (b *Backend) SampleTokensTo(dst, logits runtime.Tensor, rows []int, p []runtime.SampleParams) (runtime.PendingTokens, error) {
	out := indexOf("sample", dst, len(rows))
	toks := make([]int32, len(rows))
	if err := b.SampleTokens(toks, logits, rows, p); err != nil {
		return nil, err
	}
	copy(out, toks)
	return drawn(toks), nil
}

// drawn is runtime.PendingTokens for tokens already on the host.
type drawn []int32

func (d drawn) Wait(dst []int32) error {
	if len(dst) != len(d) {
		return fmt.Errorf("cpu: wait for %d tokens of a draw of %d", len(dst), len(d))
	}
	copy(dst, d)
	return nil
}

// greedySlots are the host slots of runtime.GreedyDrawer's draws.
type greedySlots struct {
	mu   sync.Mutex
	slot [2][]int32
	next int
}

// GreedySlot implements runtime.GreedyDrawer: the slots alternate.
func (b *Backend) GreedySlot() int {
	g := &b.greedy
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.next
	g.next ^= 1
	return s
}

// DrawGreedy implements runtime.GreedyDrawer.
func (b *Backend) DrawGreedy(dst, logits, slot runtime.Tensor) {
	ct := tensorOf(logits)
	n, V := ct.rows(), ct.cols()
	out := indexOf("greedy draw", dst, n)
	s := indexOf("greedy draw", slot, 1)[0]
	if s != 0 && s != 1 {
		panic(fmt.Sprintf("cpu: greedy draw into host slot %d", s))
	}
	toks := make([]int32, n)
	b.parallel(n, func(i int) {
		toks[i] = int32(runtime.DrawFinite(ct.data[i*V:(i+1)*V], runtime.SampleParams{}))
	})
	copy(out, toks)
	g := &b.greedy
	g.mu.Lock()
	g.slot[s] = toks
	g.mu.Unlock()
}

// GreedyPending implements runtime.GreedyDrawer: the draw is done.
func (b *Backend) GreedyPending(s, n int) (runtime.PendingTokens, error) {
	g := &b.greedy
	g.mu.Lock()
	defer g.mu.Unlock()
	if s < 0 || s > 1 || n < 0 || n > len(g.slot[s]) {
		return nil, fmt.Errorf("cpu: %d tokens of greedy host slot %d (%d drawn)", n, s, len(g.slot[max(min(s, 1), 0)]))
	}
	return drawn(append([]int32(nil), g.slot[s][:n]...)), nil
}

var (
	_ runtime.TokenFeeder  = (*Backend)(nil)
	_ runtime.GreedyDrawer = (*Backend)(nil)
)
