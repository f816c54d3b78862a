package cuda

import (
	"encoding/binary"
	"fmt"

	"github.com/gptqtool/gptqtool/runtime"
)

// fusedMLP is a decode step's MLP as one kernel (kernels/mlp.cu fmlp): the
// GLU weight's codes and scales as LoadQuantGLU laid them out, down's
// scales as LoadQuant did, and down's codes re-laid for the kernel's
// blocks.
type fusedMLP struct {
	gu, down   *Tensor // the weights it was made from (not owned)
	h, i       int     // hidden size (gate/up's inputs, down's outputs) and intermediate size
	bits       int
	nb         int     // blocks: one an SM, at most the intermediate's tiles of 16
	ntw        int     // the most gate/up tiles a warp of a block takes part in
	ndg        int     // the most groups of down's inputs a block's slice reaches
	dqw, dbase *Buffer // down's codes for the blocks; each block's first chunk
	acc        *Buffer // the down sums [fmlpRows][h] fp32, then the blocks' counter
	qd         int     // its ring (chunks a warp)
	gsmax      int     // the most steps a block takes (its slice of the intermediate, in 16s)
	names      map[runtime.DType]string
}

// fmlpRows is the most rows the fused MLP takes (the mma's 8 columns);
// fmlpWarps, fmlpMaxSteps and fmlpLDH are mlp.cu's FM_W, FM_SMAX and FM_LDH.
const (
	fmlpRows     = 8
	fmlpWarps    = 16
	fmlpMaxSteps = 8
	fmlpLDH      = 16*fmlpMaxSteps + 8
	fmlpReserve  = 11 << 10 // the kernel's static shared memory (9,360 bytes under NVRTC 12.4) and the driver's 1 KiB
)

// fmlpChunks is mlp.cu's fm_chunks: warp w's down chunks in a block of s
// steps, ipc items a chunk.
func fmlpChunks(w, nt, s, ipc int) int {
	tw := (w+1)*nt/fmlpWarps - w*nt/fmlpWarps
	return (tw*s + ipc - 1) / ipc
}

// fmlpPlan is the fused MLP's block layout for an intermediate of j tiles
// of 16, h outputs, bits and nb blocks: each block's first down chunk
// (dbase, nb+1 entries), the most gate/up tiles a warp takes part in, and
// the most groups of down's inputs (group size gsd) a block's slice
// reaches.
func fmlpPlan(j, h, bits, gsd, nb int) (dbase []int32, ntw, ndg int) {
	spc := chunkInputs(bits) / 16 // 16-input steps a chunk: down's items a chunk
	nt, ck := h/16, h/chunkInputs(bits)
	dbase = make([]int32, nb+1)
	for b := range nb {
		j0, s := b*j/nb, (b+1)*j/nb-b*j/nb
		n := 0
		for w := range fmlpWarps {
			n += fmlpChunks(w, nt, s, spc)
			l := 2 * s * ck
			if ea, eb := w*l/fmlpWarps, (w+1)*l/fmlpWarps; eb > ea {
				ntw = max(ntw, (eb-1)/ck-ea/ck+1)
			}
		}
		dbase[b+1] = dbase[b] + int32(n)
		ndg = max(ndg, (16*(j0+s)-1)/gsd-16*j0/gsd+1)
	}
	return dbase, max(ntw, 1), ndg
}

// shared is fmlp's dynamic shared memory for m rows (mlp.cu's layout): the
// rings, x, gpart, h, down's scale pairs of ndg groups, gate/up's of a
// block's tiles.
func (f *fusedMLP) shared(m int) int {
	a16 := func(n int) int { return (n + 15) &^ 15 }
	return fmlpWarps*f.qd*512 + a16(m*(f.h+8)*2) + fmlpWarps*f.ntw*512 + a16(m*fmlpLDH*2) + f.ndg*f.h*4 +
		2*f.gsmax*(f.h/f.gu.q.gs)*64
}

// FuseMLP implements runtime.MLPFuser on sm_90 (the kernel adds its sums
// with vector reductions) for 4- and 8-bit weights:
// gateUp of LoadQuantGLU without a permutation (InOrder), whose group size
// is a multiple of a chunk's inputs, and down of LoadQuant without one, of
// the same bits; nil where they do not fuse, or where GPTQTOOL_FUSED_MLP
// is 0 (the default: on the 7B shape the fused kernel measured 17% slower
// at batch 1 than the GLU product and down, docs/benchmarks.md, the
// twenty-second session).
func (b *Backend) FuseMLP(gateUp, down runtime.Tensor) (runtime.Tensor, error) {
	gu, dn := b.tensor(gateUp), b.tensor(down)
	if b.mlpRows == 0 || b.arch < 90 || gu.q == nil || dn.q == nil || !gu.q.glu || gu.q.perm != nil || dn.q.perm != nil {
		return nil, nil
	}
	h, i, bits := gu.q.k, gu.q.n/2, gu.q.bits
	if dn.q.bits != bits || dn.q.k != i || dn.q.n != h || dn.q.seg1 != h || gu.q.gs%chunkInputs(bits) != 0 || h%gu.q.gs != 0 || i%16 != 0 || h%16 != 0 {
		return nil, nil
	}
	j := i / 16
	nb := min(b.sms, j)
	if (j+nb-1)/nb > fmlpMaxSteps {
		return nil, nil
	}
	dbase, ntw, ndg := fmlpPlan(j, h, bits, dn.q.gs, nb)
	f := &fusedMLP{gu: gu, down: dn, h: h, i: i, bits: bits, nb: nb, ntw: ntw, ndg: ndg, names: map[runtime.DType]string{},
		gsmax: (j + nb - 1) / nb, qd: b.mlpQD}
	if f.shared(fmlpRows)+fmlpReserve > b.shared {
		return nil, nil
	}
	raw := make([]byte, 4*len(dbase))
	for k, v := range dbase {
		binary.LittleEndian.PutUint32(raw[4*k:], uint32(v))
	}
	b.enter()
	defer b.exit()
	for _, dt := range []runtime.DType{runtime.F32, runtime.F16, runtime.BF16} {
		f.names[dt] = fmt.Sprintf("fmlp%d_q%d_%s", bits, f.qd, suffix(dt))
	}
	var err error
	if f.dbase, err = b.allocBufferLocked(int64(len(raw))); err == nil {
		if err = b.htod(f.dbase.Ptr, raw); err == nil {
			if f.dqw, err = b.allocBufferLocked(int64(dbase[nb]) * 512); err == nil {
				f.acc, err = b.allocBufferLocked(int64(fmlpRows*h*4 + 16))
			}
		}
	}
	if err == nil {
		err = b.launch("mlp.cu", fmt.Sprintf("fmlp_relayout%d", bits), Dim{X: nb, Y: fmlpWarps}, Dim{X: 128}, 0,
			f.dqw.Ptr, dn.ptr, f.dbase.Ptr, int32(h), int32(i))
	}
	t := &Tensor{dt: runtime.I32, shape: []int{int(dbase[nb]) * 128}, n: int(dbase[nb]) * 128, mlp: f}
	if f.dqw != nil {
		t.ptr, t.cls = f.dqw.Ptr, f.dqw.cls
	}
	if err != nil {
		b.releaseMLP(t)
		return nil, fmt.Errorf("cuda: fused MLP [%d %d]: %w", h, i, err)
	}
	return t, nil
}

// releaseMLP gives back a fused MLP's buffers (not its weights').
func (b *Backend) releaseMLP(t *Tensor) {
	b.freeBufferLocked(t.mlp.dbase)
	b.freeBufferLocked(t.mlp.acc)
	if t.cls != 0 {
		b.alloc.release(t.ptr, t.cls)
		t.cls = 0
	}
}

// MLPFusedRows implements runtime.MLPFuser: GPTQTOOL_FUSED_MLP=N, at most
// 8 (0: off, the default).
func (b *Backend) MLPFusedRows() int { return b.mlpRows }

// MatMulMLP implements runtime.MLPFuser.
func (b *Backend) MatMulMLP(x, xn, w runtime.Tensor) {
	xt, nt, wt := b.tensor(x), b.tensor(xn), b.tensor(w)
	f := wt.mlp
	M := runtime.Rows(xt)
	if f == nil || M > b.mlpRows || runtime.Rows(nt) != M || runtime.Cols(xt) != f.h || runtime.Cols(nt) != f.h || xt.dt != nt.dt || f.names[xt.dt] == "" {
		panic(fmt.Sprintf("cuda: fused MLP of x %v %v, xn %v %v with a weight that is not a fused MLP for them", xt.dt, xt.shape, nt.dt, nt.shape))
	}
	flags := int32(b.mlpProbe) << 1 // mlp.cu's FM_NORED, FM_NODOWN
	if b.qmmaFlags()&2 != 0 {
		flags |= 1 // FM_EVICT
	}
	b.enter()
	defer b.exit()
	b.run("mlp.cu", f.names[xt.dt], Dim{X: f.nb}, Dim{X: 32 * fmlpWarps}, f.shared(M),
		xt.ptr, nt.ptr, f.gu.ptr, f.gu.q.sz.Ptr, f.dqw.Ptr, f.down.q.sz.Ptr, f.dbase.Ptr, f.acc.Ptr, f.acc.Ptr+uint64(fmlpRows*f.h*4),
		int32(f.h), int32(f.i), int32(M), int32(f.gu.q.gs), int32(f.down.q.gs), int32(f.ntw), int32(f.ndg), flags)
}

// SetFusedMLP sets the most rows of a fused MLP (GPTQTOOL_FUSED_MLP; 0:
// FuseMLP fuses nothing) and its rings' chunks a warp (4 or 8; others
// leave the ring as it is), for tests and measurements. Weights fused
// before keep their kernels' rings.
func (b *Backend) SetFusedMLP(rows, qst int) {
	b.enter()
	defer b.exit()
	b.mlpRows = max(0, min(rows, fmlpRows))
	if qst == 4 || qst == 8 {
		b.mlpQD = qst
	}
}

// FusedMLPQST is the fused MLP's ring (chunks a warp).
func (b *Backend) FusedMLPQST() int { return b.mlpQD }
