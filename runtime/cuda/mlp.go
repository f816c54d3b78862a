package cuda

import (
	"fmt"

	"github.com/gptqtool/gptqtool/runtime"
)

// fusedMLP is a decode step's MLP as one kernel (kernels/mlp.cu fmlp): the
// GLU weight's codes and scales as LoadQuantGLU laid them out, down's
// scales as LoadQuant did, and down's codes re-laid step by step for the
// kernel's warps.
type fusedMLP struct {
	gu, down *Tensor // the weights it was made from (not owned)
	h, i     int     // hidden size (gate/up's inputs, down's outputs) and intermediate size
	bits     int
	nb       int     // blocks: one an SM, at most the intermediate's tiles of 16
	ndg      int     // the most groups of down's inputs a block's slice reaches
	dqw      *Buffer // down's codes re-laid (fmlp_relayout)
	sync     *Buffer // the blocks' flags: a block's shares of down's sums are out
	qd       int     // its ring (chunks a warp) where it fits
	gsmax    int     // the most steps a block takes (its slice of the intermediate, in 16s)
}

// fmlpRows is the most rows the fused MLP takes (the mma's 8 columns);
// fmlpWarps, fmlpMaxSteps, fmlpMaxTiles and fmlpBufs are mlp.cu's FM_W,
// FM_SMAX, FM_TW and FM_NBUF.
const (
	fmlpRows     = 8
	fmlpWarps    = 16
	fmlpMaxSteps = 8
	fmlpMaxTiles = 16
	fmlpBufs     = 4
	fmlpMaxBlock = 16 * 12 // the most blocks (mlp.cu's 16·FM_KMAX)
	fmlpCounters = 1 << 10 // the _ll kernels' launch counters (fmlpMaxBlock u32s) ahead of their shares
	fmlpReserve  = 3 << 10 // the kernel's static shared memory (1,040 bytes under NVRTC 12.4) and the driver's 1 KiB
)

// fmlpDownChunks is mlp.cu's DC: down's chunks a warp takes a step (its
// h/256 output tiles, chunkInputs(bits)/16 a chunk).
func fmlpDownChunks(h, bits int) int {
	spc := chunkInputs(bits) / 16
	return (h/16/fmlpWarps + spc - 1) / spc
}

// fmlpOwned is mlp.cu's WM: the outputs a block adds up, the power of two
// at least ⌈h/nb⌉ (the first ⌈h/WM⌉ blocks own outputs).
func fmlpOwned(h, nb int) int {
	w := 1
	for w*nb < h {
		w *= 2
	}
	return w
}

// fmlpEndFits says whether mlp.cu's end takes h outputs on nb blocks: a
// warp adds up the shares of at most 12 blocks (FM_KMAX), into its ring's
// slots (8 rows of WM floats within a ring of 4 chunks of 512 bytes).
func fmlpEndFits(h, nb int) bool {
	return nb <= fmlpMaxBlock && fmlpRows*fmlpOwned(h, nb)*4 <= 4*512
}

// fmlpPlan is the fused MLP's block layout for an intermediate of j tiles
// of 16 on nb blocks: the most steps a block takes, and the most groups of
// down's inputs (group size gsd) a block's slice reaches.
func fmlpPlan(j, gsd, nb int) (smax, ndg int) {
	for b := range nb {
		j0, s := b*j/nb, (b+1)*j/nb-b*j/nb
		smax = max(smax, s)
		ndg = max(ndg, (16*(j0+s)-1)/gsd-16*j0/gsd+1)
	}
	return smax, ndg
}

// shared is fmlp's dynamic shared memory for m rows and a ring of qd
// chunks a warp (mlp.cu's layout): the rings, x, gpart, down's decode
// constants of ndg groups, gate/up's scale pairs of a block's tiles, and
// 512 bytes that the last warp's reads of constants past its tiles may
// reach (shapes of fewer tiles a warp than items a chunk).
func (f *fusedMLP) shared(m, qd int) int {
	a16 := func(n int) int { return (n + 15) &^ 15 }
	return fmlpWarps*qd*512 + a16(m*(f.h+8)*2) + fmlpBufs*fmlpWarps*m*64 + f.ndg*(f.h/16)*128 +
		2*f.gsmax*(f.h/f.gu.q.gs)*64 + 512
}

// ring is the ring a launch of m rows takes: the fused MLP's where it
// fits, else 4 chunks a warp; 0 where neither fits.
func (f *fusedMLP) ring(m, limit int) int {
	for _, qd := range []int{f.qd, 4} {
		if f.shared(m, qd)+fmlpReserve <= limit {
			return qd
		}
	}
	return 0
}

// FuseMLP implements runtime.MLPFuser on sm_90 (where the kernel was
// built and measured) for 4- and 8-bit weights:
// gateUp of LoadQuantGLU without a permutation (InOrder), whose group size
// is a multiple of a chunk's inputs, and down of LoadQuant without one, of
// the same bits, of a hidden size that is a multiple of 256 and at most
// 4096 (a warp's down tiles held in registers); nil where they do not
// fuse, where the kernel's shared memory for GPTQTOOL_FUSED_MLP rows does
// not fit, or where GPTQTOOL_FUSED_MLP is 0 (the default;
// docs/benchmarks.md has the measurements).
func (b *Backend) FuseMLP(gateUp, down runtime.Tensor) (runtime.Tensor, error) {
	gu, dn := b.tensor(gateUp), b.tensor(down)
	if b.mlpRows == 0 || b.arch < 90 || gu.q == nil || dn.q == nil || !gu.q.glu || gu.q.perm != nil || dn.q.perm != nil {
		return nil, nil
	}
	h, i, bits := gu.q.k, gu.q.n/2, gu.q.bits
	if dn.q.bits != bits || dn.q.k != i || dn.q.n != h || dn.q.seg1 != h || gu.q.gs%chunkInputs(bits) != 0 || h%gu.q.gs != 0 ||
		i%16 != 0 || h%(16*fmlpWarps) != 0 || h > 16*fmlpWarps*fmlpMaxTiles {
		return nil, nil
	}
	j := i / 16
	nb := min(b.sms, j)
	smax, ndg := fmlpPlan(j, dn.q.gs, nb)
	if smax > fmlpMaxSteps || !fmlpEndFits(h, nb) {
		return nil, nil
	}
	f := &fusedMLP{gu: gu, down: dn, h: h, i: i, bits: bits, nb: nb, ndg: ndg, gsmax: smax, qd: b.mlpQD}
	if f.ring(b.mlpRows, b.shared) == 0 {
		return nil, nil
	}
	b.enter()
	defer b.exit()
	dc := fmlpDownChunks(h, bits)
	var err error
	if f.dqw, err = b.allocBufferLocked(int64(j*fmlpWarps*dc) * 512); err == nil {
		if f.sync, err = b.allocBufferLocked(int64(nb) * 4); err == nil {
			err = b.launch("mlp.cu", fmt.Sprintf("fmlp_relayout%d", bits), Dim{X: j, Y: fmlpWarps}, Dim{X: 128}, 0,
				f.dqw.Ptr, dn.ptr, int32(h), int32(i))
		}
	}
	t := &Tensor{dt: runtime.I32, shape: []int{j * fmlpWarps * dc * 128}, n: j * fmlpWarps * dc * 128, mlp: f}
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
	b.freeBufferLocked(t.mlp.sync)
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
	if f == nil || M > b.mlpRows || runtime.Rows(nt) != M || runtime.Cols(xt) != f.h || runtime.Cols(nt) != f.h || xt.dt != nt.dt {
		panic(fmt.Sprintf("cuda: fused MLP of x %v %v, xn %v %v with a weight that is not a fused MLP for them", xt.dt, xt.shape, nt.dt, nt.shape))
	}
	qd := f.ring(M, b.shared) // FuseMLP checked that its rows fit (SetFusedMLP may have raised them since)
	if qd == 0 {
		b.fail(fmt.Errorf("cuda: fused MLP of %d rows: its shared memory (%d bytes at a ring of 4) does not fit the device's %d", M, f.shared(M, 4)+fmlpReserve, b.shared))
		return
	}
	flags := int32(b.mlpProbe&7) << 1 // mlp.cu's FM_NORED, FM_NODOWN, FM_NOGU
	name := fmt.Sprintf("fmlp%d_q%d_%s", f.bits, qd, suffix(xt.dt))
	ll := b.mlpLL
	if b.mlpProbe&8 != 0 && f.bits == 4 && xt.dt != runtime.F32 {
		name += "_ns" // the work without the stream (the flags' end)
		ll = false
	} else if ll {
		name += "_ll"
	}
	if b.qmmaFlags()&2 != 0 {
		flags |= 1 // FM_EVICT
	}
	b.enter()
	defer b.exit()
	// The blocks' shares of down's sums, laid out by the block that adds
	// them up (mlp.cu), and the flags that say they are out; for the _ll
	// kernels, shares of 8 bytes (the sum and the launch's tag) after the
	// blocks' launch counters, in one buffer that every fused MLP shares
	// (new memory is zeroed: the first tag is 1).
	wm := fmlpOwned(f.h, f.nb)
	shares := int64((f.h + wm - 1) / wm * f.nb * M * wm)
	slot, size, counters := &b.mlpPart, 4*shares, int64(0)
	if ll {
		slot, size, counters = &b.mlpTag, fmlpCounters+8*shares, fmlpCounters
	}
	part, err := b.scratch(slot, size)
	if err != nil {
		b.fail(err)
		return
	}
	sync := f.sync.Ptr
	if ll {
		sync = part.Ptr
	}
	b.run("mlp.cu", name, Dim{X: f.nb}, Dim{X: 32 * fmlpWarps}, f.shared(M, qd),
		xt.ptr, nt.ptr, f.gu.ptr, f.gu.q.sz.Ptr, f.dqw.Ptr, f.down.q.sz.Ptr, part.Ptr+uint64(counters), sync,
		int32(f.h), int32(f.i), int32(M), int32(f.gu.q.gs), int32(f.down.q.gs), int32(f.ndg), flags)
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

// SetFusedMLPLL chooses the fused MLP's end (GPTQTOOL_FUSED_MLP_LL): the
// _ll kernels' tagged shares (true) or the flags (false), for tests and
// measurements.
func (b *Backend) SetFusedMLPLL(on bool) {
	b.enter()
	defer b.exit()
	b.mlpLL = on
}

// FusedMLPLL says whether the fused MLP ends with tagged shares.
func (b *Backend) FusedMLPLL() bool { return b.mlpLL }

// FusedMLPQST is the fused MLP's ring (chunks a warp).
func (b *Backend) FusedMLPQST() int { return b.mlpQD }
