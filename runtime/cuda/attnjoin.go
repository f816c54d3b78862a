package cuda

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/gptqtool/gptqtool/runtime"
)

// attnJoin is o_proj prepared for paged attention and o_proj in one kernel
// (decode.cu attn_oproj4, runtime.AttentionJoiner): its codes re-laid by
// kv head and block of nb columns (joinLayout), the Tensor's memory, and
// meta, each kv head's inputs in the order of their groups.
type attnJoin struct {
	w                     *Tensor // the weight as LoadQuant gave it (its scale pairs)
	meta                  *Buffer
	hq, hkv, hd, nb, ng   int
	mstride, cluster, nbh int // meta's stride a kv head; the kernel's cluster, and its blocks a kv head (cluster·halves)
}

// shared is the joined kernel's dynamic shared memory: attention's two
// stages of K and V tiles, or the block's codes and scales after them.
func (a *attnJoin) shared() int {
	chunks, NT := a.hq/a.hkv*a.hd/64, a.nb/16
	return max(pagedTCStageBytes(2, a.hd), chunks*NT*32*16+a.ng*a.nb*4)
}

// Joined-kernel limits (decode.cu AJ_KH, AJ_NG, and its four warps of at
// most four n tiles): a kv head's inputs, o_proj's groups, a block's
// columns; the most splits the norm after it adds (one a kv head).
const (
	ajThreads   = 256 // decode.cu AJ_THREADS: attention on four warps, the product on all
	ajMaxInputs = 512
	ajMaxGroups = 64
	ajMaxCols   = 256
)

// JoinAttention implements runtime.AttentionJoiner: where GPTQTOOL_ATTN_JOIN
// is on and w is a 4-bit weight of heads·headDim inputs (heads of 128, at
// most 4 query heads a kv head, at most 8 kv heads) whose groups fit the
// kernel's tables, its codes re-laid for attn_oproj4; otherwise nil.
func (b *Backend) JoinAttention(w runtime.Tensor, heads, kvHeads, headDim int) (runtime.Tensor, error) {
	wt := b.tensor(w)
	q := wt.q
	if b.attnJoin == 0 || b.arch < 90 || !b.clusters || q == nil || q.bits != 4 || q.glu || len(q.segments()) != 1 ||
		headDim != 128 || kvHeads <= 0 || heads%kvHeads != 0 || heads/kvHeads > 4 || kvHeads > partsMax ||
		q.k != heads*headDim || q.gs%16 != 0 || q.k%q.gs != 0 || q.k/q.gs > ajMaxGroups {
		return nil, nil
	}
	nb := b.ajCols
	per := b.ajCluster * max(1, q.n/(b.ajCluster*nb)) // blocks a kv head
	if q.n%(per*64) != 0 || q.n/per > ajMaxCols || q.n/per*(q.k/q.gs)*4 > 32<<10 {
		return nil, nil
	}
	nb = q.n / per
	b.enter()
	defer b.exit()
	codes := make([]byte, q.k*q.n/2)
	if err := b.dtoh(codes, wt.ptr); err != nil {
		return nil, fmt.Errorf("cuda: joined attention: %w", err)
	}
	var slots []int32
	if q.slots != nil {
		raw := make([]byte, 4*q.k)
		if err := b.dtoh(raw, q.slots.Ptr); err != nil {
			return nil, fmt.Errorf("cuda: joined attention: %w", err)
		}
		slots = make([]int32, q.k)
		for i := range slots {
			slots[i] = int32(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	}
	jw, meta, mstride, ok := joinLayout(codes, slots, q.k, q.n, q.gs, kvHeads, nb)
	if !ok {
		return nil, nil
	}
	up := func(raw []byte) (*Buffer, error) {
		buf, err := b.allocBufferLocked(int64(len(raw)))
		if err != nil {
			return nil, err
		}
		return buf, b.htod(buf.Ptr, raw)
	}
	cw, err := up(jw)
	if err != nil {
		b.freeBufferLocked(cw)
		return nil, fmt.Errorf("cuda: joined attention [%d %d]: %w", q.n, q.k, err)
	}
	mb := make([]byte, 4*len(meta))
	for i, v := range meta {
		binary.LittleEndian.PutUint32(mb[4*i:], uint32(v))
	}
	m, err := up(mb)
	if err != nil {
		b.freeBufferLocked(cw)
		b.freeBufferLocked(m)
		return nil, fmt.Errorf("cuda: joined attention [%d %d]: %w", q.n, q.k, err)
	}
	return &Tensor{dt: runtime.I32, shape: []int{len(jw) / 4}, n: len(jw) / 4, ptr: cw.Ptr, cls: cw.cls,
		aj: &attnJoin{w: wt, meta: m, hq: heads, hkv: kvHeads, hd: headDim, nb: nb, ng: q.k / q.gs,
			mstride: mstride, cluster: b.ajCluster, nbh: per}}, nil
}

// joinLayout re-lays a 4-bit weight's codes (qgemv.cu's tiled layout,
// codes, of K inputs and N outputs, its sequential input k reading
// column perm[k], slots the inverse: input c is sequential slots[c], nil
// for none) for attn_oproj4: for each of hkv kv heads, its K/hkv inputs
// (a range of the model's order) sorted by sequential place, so that their
// groups (sequential place / gs) ascend; for each block of nb columns and
// chunk of 64 sorted inputs, the 16-column tiles' lane words as qgemv.cu
// lays a chunk ([hkv][N/nb][KH/64][nb/16][32] u32x4). meta holds per kv
// head (stride mstride) each sorted input's place within the head (low 16
// bits) and group (high 16), then the head's groups' first sorted inputs
// (NG + 1 of them, from group 0). ok false where a 16-input step of sorted
// inputs spans 8 groups or more (the kernel's mma columns hold 8).
func joinLayout(codes []byte, slots []int32, K, N, gs, hkv, nb int) (jw []byte, meta []int32, mstride int, ok bool) {
	KH, NG := K/hkv, K/gs
	if K%hkv != 0 || KH%64 != 0 || KH > ajMaxInputs || N%nb != 0 || nb%16 != 0 || NG > ajMaxGroups {
		return nil, nil, 0, false
	}
	mstride = (KH + NG + 1 + 3) &^ 3
	meta = make([]int32, hkv*mstride)
	seq := make([][]int32, hkv) // each kv head's sorted inputs' sequential places
	for h := range hkv {
		s := make([]int32, KH)
		for i := range s {
			s[i] = int32(h*KH + i)
			if slots != nil {
				s[i] = slots[h*KH+i]
			}
		}
		local := make([]int, KH) // the sorted inputs' places within the head
		for i := range local {
			local[i] = i
		}
		slices.SortStableFunc(local, func(a, b int) int { return int(s[a] - s[b]) })
		m := meta[h*mstride:]
		sorted := make([]int32, KH)
		g := 0
		for i, l := range local {
			sorted[i] = s[l]
			grp := int(s[l]) / gs
			m[i] = int32(l) | int32(grp)<<16
			for g <= grp {
				m[KH+g] = int32(i)
				g++
			}
		}
		for ; g <= NG; g++ {
			m[KH+g] = int32(KH)
		}
		for st := 0; st < KH; st += 16 {
			if int(sorted[st+15])/gs-int(sorted[st])/gs >= 8 {
				return nil, nil, 0, false
			}
		}
		seq[h] = sorted
	}
	CK := K / 64
	chunks, NT := KH/64, nb/16
	jw = make([]byte, K*N/2)
	parallelRows(hkv*(N/nb), 1, func(r0, r1 int) {
		var pairs [32][16]uint32
		for hb := r0; hb < r1; hb++ {
			h, ob := hb/(N/nb), hb%(N/nb)
			for ch := range chunks {
				for nt := range NT {
					for p := range 32 {
						k0, k1 := int(seq[h][ch*64+2*p]), int(seq[h][ch*64+2*p+1])
						for n := range 16 {
							col := ob*nb + nt*16 + n
							pairs[p][n] = uint32(tiledCode4(codes, CK, k0, col)) | uint32(tiledCode4(codes, CK, k1, col))<<16
						}
					}
					base := (((hb*chunks+ch)*NT + nt) * 32) * 16
					tileBlock((*[32 * 16]byte)(jw[base:base+32*16]), &pairs, 4)
				}
			}
		}
	})
	return jw, meta, mstride, true
}

// tiledCode4 is the code of sequential input k and column n in a 4-bit
// weight laid out by tileCodes (CK chunks of 64 inputs a tile): tile n/16,
// chunk k/64, lane (g, t) = (row mod 8, (input mod 8)/2) of the tile's
// row n mod 16 and chunk input k mod 64, its word of step (k mod 64)/16,
// pair (row/8) + 2·(input mod 16 / 8) at bit 4·pair, + 16 for the odd
// input (tileBlock).
func tiledCode4(codes []byte, CK, k, n int) uint8 {
	nt, r := n/16, n%16
	kc, kk := k/64, k%64
	j, c := kk/16, kk%16
	lane := (r%8)*4 + (c%8)/2
	w := binary.LittleEndian.Uint32(codes[((nt*CK+kc)*32+lane)*16+4*j:])
	bit := 4*(r/8+2*(c/8)) + 16*(c%2)
	return uint8(w>>bit) & 15
}

// AttentionJoinRows implements runtime.AttentionJoiner: one row with
// GPTQTOOL_ATTN_JOIN=1 (SetAttentionJoin) where the norm after a product
// may add its splits up (GPTQTOOL_DOWN_NORM not 0), else none.
func (b *Backend) AttentionJoinRows() int {
	if b.downNorm == 0 {
		return 0
	}
	return b.attnJoin
}

// SetAttentionJoin sets AttentionJoinRows (0 or 1) for weights joined
// after it, for tests and measurements (JoinAttention prepares weights only
// while it is on).
func (b *Backend) SetAttentionJoin(rows int) {
	b.enter()
	defer b.exit()
	b.attnJoin = min(max(rows, 0), 1)
}

// SetAttentionJoinShape sets the joined kernel's cluster (4 or 8 blocks
// split a kv head's positions) and most columns a block (64, 128 or 256),
// as GPTQTOOL_ATTN_JOIN_CL and GPTQTOOL_ATTN_JOIN_NB do, for weights
// joined after it.
func (b *Backend) SetAttentionJoinShape(cluster, cols int) {
	if (cluster != 4 && cluster != 8) || (cols != 64 && cols != 128 && cols != 256) {
		panic(fmt.Sprintf("cuda: joined attention in clusters of %d, %d columns a block: want 4 or 8, and 64, 128 or 256", cluster, cols))
	}
	b.enter()
	defer b.exit()
	b.ajCluster, b.ajCols = cluster, cols
}

// AttentionJoinShape reports SetAttentionJoinShape's setting.
func (b *Backend) AttentionJoinShape() (cluster, cols int) { return b.ajCluster, b.ajCols }

// PagedAttentionMatMulNormTo implements runtime.AttentionJoiner: attn_oproj4
// leaves each kv head's part of o_proj's sums in fp32, and the norm
// (norm.cu rmsnorm_parts_v8, as after a product that leaves its splits,
// MatMulAddNormTo) adds them and the residual up, rounds x once and
// normalizes it.
func (b *Backend) PagedAttentionMatMulNormTo(norm, x, q, kc, vc, tables, pos runtime.Tensor, blockSize int, p runtime.AttentionParams,
	wj, weight, slots runtime.Tensor, eps float32) {
	xt, nt, wn, qt, jt := b.tensor(x), b.tensor(norm), b.tensor(weight), b.tensor(q), b.tensor(wj)
	kt, vt := b.tensor(kc), b.tensor(vc)
	a := jt.aj
	rows := runtime.Rows(qt)
	if a == nil || rows != 1 || runtime.Rows(xt) != 1 || runtime.Cols(qt) != a.hq*a.hd || runtime.Cols(kt) != a.hkv*a.hd ||
		kt.n != vt.n || p.HeadDim != a.hd || blockSize <= 0 || runtime.Cols(xt) != a.w.q.n ||
		(qt.dt != runtime.F16 && qt.dt != runtime.BF16) || kt.dt != qt.dt || vt.dt != qt.dt || xt.dt != qt.dt {
		panic(fmt.Sprintf("cuda: joined attention of q %v %v, x %v %v, caches %v %v with a weight not joined for them",
			qt.dt, qt.shape, xt.dt, xt.shape, kt.dt, kt.shape))
	}
	cl, ok := b.partsNormPlan(xt, nt, wn)
	if !ok {
		panic(fmt.Sprintf("cuda: joined attention: no norm adds its parts for rows of %d %v", runtime.Cols(xt), xt.dt))
	}
	tt := b.tensor(tables)
	tt = b.index("joined attention", tables, tt.n)
	pt := b.index("joined attention", pos, 1)
	sp := b.slotsPtr("joined attention", slots, runtime.Cols(xt), nt, xt)
	b.enter()
	defer b.exit()
	N := a.w.q.n
	pb, err := b.scratch(&b.ajpart, int64(a.hkv)*int64(N)*4)
	if err != nil {
		b.fail(err)
		return
	}
	name := "attn_oproj4_" + suffix(qt.dt)
	if p.CacheSettled {
		name = "attn_oproj4_pre_" + suffix(qt.dt)
	}
	b.runCluster("decode.cu", name, Dim{X: a.hkv, Y: a.nbh}, Dim{X: ajThreads}, a.shared(), a.cluster,
		pb.Ptr, qt.ptr, kt.ptr, vt.ptr, tt.ptr, pt.ptr, int32(blockSize), int32(a.hq), int32(a.hkv), int32(p.Window), p.Scale,
		jt.ptr, a.w.q.sz.Ptr, a.meta.Ptr, int32(N), int32(a.ng), int32(a.mstride))
	b.partsNorm(nt, xt, wn, partsArg{part: pb.Ptr, S: a.hkv, rows: 1}, eps, sp, cl)
}

var _ runtime.AttentionJoiner = (*Backend)(nil)
