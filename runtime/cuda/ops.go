package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/runtime"
)

const threads = 256

// suffix is the dtype part of kernel names.
func suffix(dt runtime.DType) string {
	switch dt {
	case runtime.F32:
		return "f32"
	case runtime.F16:
		return "f16"
	case runtime.BF16:
		return "bf16"
	}
	panic(fmt.Sprintf("cuda: no kernels for %v", dt))
}

// grid1 is a 1-D grid for n elements, capped (the kernels loop).
func grid1(n int64) Dim {
	b := (n + threads - 1) / threads
	return Dim{X: int(max(1, min(b, 65535*8)))}
}

func sameShape(op string, ts ...*Tensor) {
	for _, t := range ts[1:] {
		if t.n != ts[0].n || t.dt != ts[0].dt {
			panic(fmt.Sprintf("cuda: %s: tensors %v %v and %v %v differ", op, ts[0].dt, ts[0].shape, t.dt, t.shape))
		}
	}
}

// Upload implements runtime.Backend.
func (b *Backend) Upload(t runtime.Tensor, src []float32) error {
	ct := b.tensor(t)
	if len(src) != ct.n {
		return fmt.Errorf("cuda: upload %d values into tensor %v", len(src), ct.shape)
	}
	if ct.n == 0 {
		return nil
	}
	var raw []byte
	switch ct.dt {
	case runtime.F32:
		raw = unsafe.Slice((*byte)(unsafe.Pointer(&src[0])), 4*len(src))
	case runtime.F16:
		raw = make([]byte, 2*len(src))
		half.F32ToF16Bytes(raw, src)
	case runtime.BF16:
		raw = make([]byte, 2*len(src))
		half.F32ToBF16Bytes(raw, src)
	default:
		return fmt.Errorf("cuda: upload fp32 values into %v tensor %v", ct.dt, ct.shape)
	}
	b.enter()
	defer b.exit()
	return b.htod(ct.ptr, raw)
}

// Download implements runtime.Backend.
func (b *Backend) Download(dst []float32, t runtime.Tensor) error {
	ct := b.tensor(t)
	if len(dst) != ct.n {
		return fmt.Errorf("cuda: download tensor %v into %d values", ct.shape, len(dst))
	}
	if ct.n == 0 {
		return b.Sync()
	}
	b.enter()
	defer b.exit()
	switch ct.dt {
	case runtime.F32:
		return b.dtoh(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*len(dst)), ct.ptr)
	case runtime.F16, runtime.BF16:
		raw := make([]byte, 2*len(dst))
		if err := b.dtoh(raw, ct.ptr); err != nil {
			return err
		}
		if ct.dt == runtime.F16 {
			half.F16BytesToF32(dst, raw)
		} else {
			half.BF16BytesToF32(dst, raw)
		}
		return nil
	}
	return fmt.Errorf("cuda: download %v tensor %v as fp32", ct.dt, ct.shape)
}

// UploadRaw implements runtime.Backend: bytes of the tensor's own dtype are
// copied as they are; other float dtypes go through a device conversion.
func (b *Backend) UploadRaw(t runtime.Tensor, src []byte, dt runtime.DType) error {
	ct := b.tensor(t)
	if len(src) != ct.n*dt.Size() {
		return fmt.Errorf("cuda: upload %d bytes of %v into tensor %v (want %d)", len(src), dt, ct.shape, ct.n*dt.Size())
	}
	if ct.n == 0 {
		return nil
	}
	if (dt == runtime.I32) != (ct.dt == runtime.I32) {
		return fmt.Errorf("cuda: upload %v into %v tensor %v", dt, ct.dt, ct.shape)
	}
	b.enter()
	defer b.exit()
	if dt == ct.dt {
		return b.htod(ct.ptr, src)
	}
	tmp, err := b.scratch(&b.tmp, int64(len(src)))
	if err != nil {
		return err
	}
	defer b.shrinkTmp()
	if err := b.htod(tmp.Ptr, src); err != nil {
		return err
	}
	return b.launch("elementwise.cu", "convert_"+suffix(dt)+"_"+suffix(ct.dt), grid1(int64(ct.n)), Dim{X: threads}, 0, ct.ptr, tmp.Ptr, int64(ct.n))
}

// shrinkTmp gives a large conversion scratch back, so that one big upload
// (an embedding table in another dtype) does not hold its size for good.
func (b *Backend) shrinkTmp() {
	if b.tmp != nil && b.tmp.Size > 64<<20 {
		if b.graphs > 0 {
			b.retired = append(b.retired, b.tmp)
		} else {
			b.alloc.release(b.tmp.Ptr, b.tmp.cls)
		}
		b.tmp = nil
	}
}

// DownloadRaw implements runtime.Backend.
func (b *Backend) DownloadRaw(dst []byte, dt runtime.DType, t runtime.Tensor) error {
	ct := b.tensor(t)
	if len(dst) != ct.n*dt.Size() {
		return fmt.Errorf("cuda: download tensor %v into %d bytes of %v (want %d)", ct.shape, len(dst), dt, ct.n*dt.Size())
	}
	if ct.n == 0 {
		return b.Sync()
	}
	if (dt == runtime.I32) != (ct.dt == runtime.I32) {
		return fmt.Errorf("cuda: download %v tensor %v as %v", ct.dt, ct.shape, dt)
	}
	b.enter()
	defer b.exit()
	if dt == ct.dt {
		return b.dtoh(dst, ct.ptr)
	}
	tmp, err := b.scratch(&b.tmp, int64(len(dst)))
	if err != nil {
		return err
	}
	defer b.shrinkTmp()
	if err := b.launch("elementwise.cu", "convert_"+suffix(ct.dt)+"_"+suffix(dt), grid1(int64(ct.n)), Dim{X: threads}, 0, tmp.Ptr, ct.ptr, int64(ct.n)); err != nil {
		return err
	}
	return b.dtoh(dst, tmp.Ptr)
}

// Copy implements runtime.Backend.
func (b *Backend) Copy(dst, src runtime.Tensor) {
	d, s := b.tensor(dst), b.tensor(src)
	if d.n != s.n {
		panic(fmt.Sprintf("cuda: copy %v into %v", s.shape, d.shape))
	}
	b.enter()
	defer b.exit()
	if d.dt == s.dt {
		b.fail(cuErr("cuMemcpyDtoDAsync", drv.cuMemcpyDtoDAsync(d.ptr, s.ptr, uint64(d.Bytes()), b.stream)))
		return
	}
	b.run("elementwise.cu", "convert_"+suffix(s.dt)+"_"+suffix(d.dt), grid1(int64(d.n)), Dim{X: threads}, 0, d.ptr, s.ptr, int64(d.n))
}

// Embedding implements runtime.Backend.
func (b *Backend) Embedding(dst, table runtime.Tensor, ids []int) {
	d, tb := b.tensor(dst), b.tensor(table)
	h, v := runtime.Cols(tb), runtime.Rows(tb)
	if runtime.Cols(d) != h || runtime.Rows(d) != len(ids) || d.dt != tb.dt {
		panic(fmt.Sprintf("cuda: embedding dst %v of %d ids from table %v", d.shape, len(ids), tb.shape))
	}
	if len(ids) == 0 {
		return
	}
	raw := make([]byte, 4*len(ids))
	for i, id := range ids {
		if id < 0 || id >= v {
			panic(fmt.Sprintf("cuda: embedding id %d outside vocab %d", id, v))
		}
		binary.LittleEndian.PutUint32(raw[4*i:], uint32(id))
	}
	b.enter()
	defer b.exit()
	buf, err := b.scratch(&b.ids, int64(len(raw)))
	if err != nil {
		b.fail(err)
		return
	}
	if err := b.htod(buf.Ptr, raw); err != nil {
		b.fail(err)
		return
	}
	b.run("elementwise.cu", "embedding_"+suffix(d.dt), grid1(int64(d.n)), Dim{X: threads}, 0, d.ptr, tb.ptr, buf.Ptr, uint64(0), int32(len(ids)), int32(h))
}

// RMSNorm implements runtime.Backend.
func (b *Backend) RMSNorm(dst, x, weight runtime.Tensor, eps float32) {
	b.RMSNormTo(dst, x, weight, nil, eps)
}

// RMSNormTo implements runtime.InputOrderer.
func (b *Backend) RMSNormTo(dst, x, weight, slots runtime.Tensor, eps float32) {
	d, xt, w := b.tensor(dst), b.tensor(x), b.tensor(weight)
	sameShape("rmsnorm", d, xt)
	h := runtime.Cols(xt)
	if w.n != h || w.dt != xt.dt {
		panic(fmt.Sprintf("cuda: rmsnorm weight %v %v for rows of %d %v", w.dt, w.shape, h, xt.dt))
	}
	sp := b.slotsPtr("rmsnorm", slots, h, d, xt)
	b.enter()
	defer b.exit()
	b.normRows(d, xt, w, eps, sp)
}

// normRows launches the RMSNorm of x's rows into d (checked by the caller).
func (b *Backend) normRows(d, xt, w *Tensor, eps float32, sp uint64) {
	h := runtime.Cols(xt)
	name := "rmsnorm_"
	if vec8(h, d, xt, w) {
		name = "rmsnorm_v8_"
	}
	b.run("norm.cu", name+suffix(d.dt), Dim{X: runtime.Rows(xt)}, Dim{X: b.normThreadsFor(runtime.Rows(xt))}, normStage(sp, h, d.dt), d.ptr, xt.ptr, w.ptr, int32(h), eps, sp)
}

// normNI is norm.cu's NORM_NI: the items of 8 elements a thread of its v8
// kernels holds in registers (rows of up to normNI·8·threads elements).
// partsNormThreads is the most threads rmsnorm_parts_v8 launches with
// (its 174 registers a thread under NVRTC 12.4 leave room for 352 in a
// block): MatMulAddNormTo takes the product and the norm apart past it
// (GPTQTOOL_NORM_THREADS of 384 or more).
// partsMax is norm.cu's PARTS_MAX: the most splits its parts kernels add
// up. partsCluster, partsClusterElems and partsClusterThreads are norm.cu's
// PCL (the blocks of rmsnorm_parts_cl_v8's cluster), PCL_ELEMS (the
// elements of a row a block of it owns, at most) and its threads a block.
const (
	normNI              = 4
	partsNormThreads    = 256
	partsMax            = 8
	partsCluster        = 8
	partsClusterElems   = 2048
	partsClusterThreads = 64
)

// partsArg is where a product left its splits' fp32 sums for the norm
// after it (qgemv.cu QF_PARTS): part [S, rows, N]; S 0 where it added them
// up itself.
type partsArg struct {
	part    uint64
	S, rows int
}

// MatMulAddNormTo implements runtime.ResidualNormer. With SetDownNorm (or
// GPTQTOOL_DOWN_NORM) 1, a product of at most qmmaPass rows that runs on
// the plain wide kernels and adds its splits up through global memory (a
// decode step's down product at one row) leaves them in parts instead,
// and the norm (norm.cu rmsnorm_parts_v8) adds them and the residual up as
// the product's last block would have: the same bits, without that
// block's fence, counter and reads at the product's end. With 2, the norm
// runs in a cluster of 8 blocks a row (rmsnorm_parts_cl_v8): x the same
// bits, the norm's squares summed in another order; where clusters are
// off or a row does not split into 8 ranges of whole items (h a multiple
// of 64, at most 16,384), mode 2 runs as mode 1. Otherwise the product
// adds its splits up itself and the norm follows.
func (b *Backend) MatMulAddNormTo(x, h, w, norm, weight, slots runtime.Tensor, eps float32) {
	xt, nt, wn := b.tensor(x), b.tensor(norm), b.tensor(weight)
	cl, ok := b.partsNormPlan(xt, nt, wn)
	if !ok {
		b.MatMulAdd(x, h, w, x)
		b.RMSNormTo(norm, x, weight, slots, eps)
		return
	}
	ht, wt := b.tensor(h), b.tensor(w)
	sp := b.slotsPtr("matmul-add-norm", slots, runtime.Cols(xt), nt, xt)
	b.enter()
	defer b.exit()
	b.partsWant, b.partsGot = true, partsArg{}
	// (Reset even where the product panics: no later product may take
	// partsWant as its own.)
	defer func() { b.partsWant, b.partsGot = false, partsArg{} }()
	b.matmul(xt, ht, wt, xt)
	got := b.partsGot
	b.partsWant = false
	if got.S == 0 {
		b.normRows(nt, xt, wn, eps, sp)
		return
	}
	b.partsNorm(nt, xt, wn, got, eps, sp, cl)
}

// MatMulGLUDownNormTo implements runtime.GLUDownNormer: MatMulGLUTo, then
// MatMulAddNormTo. (Down run in the pieces kernel's launch, qglu.cu JN, was
// slower and is removed: docs/benchmarks.md, the fifty-fourth session.)
func (b *Backend) MatMulGLUDownNormTo(h, xn, gateUp, slots, x, down, norm, weight, nslots runtime.Tensor, eps float32) {
	b.MatMulGLUTo(h, xn, gateUp, slots)
	b.MatMulAddNormTo(x, h, down, norm, weight, nslots, eps)
}

// partsNormPlan reports whether MatMulAddNormTo's norm may add a product's
// splits up (ok), x the residual stream, nt the norm's output and wn its
// weight, and whether it does so in a cluster (cl).
func (b *Backend) partsNormPlan(xt, nt, wn *Tensor) (cl, ok bool) {
	hc, rows := runtime.Cols(xt), runtime.Rows(xt)
	threads := b.normThreadsFor(rows)
	// (h/PCL <= PCL_ELEMS: a block's items within its threads' NORM_NI
	// each, h/(8·PCL) <= 4·64.)
	cl = b.downNorm == 2 && b.clusters && hc%(8*partsCluster) == 0 && hc/partsCluster <= partsClusterElems
	if b.downNorm == 0 || rows > qmmaPass || !vec8(hc, nt, xt, wn) || (!cl && (threads > partsNormThreads || hc/8 > normNI*threads)) {
		return false, false
	}
	sameShape("matmul-add-norm", nt, xt)
	if wn.n != hc || wn.dt != xt.dt {
		panic(fmt.Sprintf("cuda: matmul-add-norm weight %v %v for rows of %d %v", wn.dt, wn.shape, hc, xt.dt))
	}
	return cl, true
}

// partsNorm launches the norm of x after a product that left its splits in
// got (partsNormPlan's cl), writing nt; sp the norm's output slots.
func (b *Backend) partsNorm(nt, xt, wn *Tensor, got partsArg, eps float32, sp uint64, cl bool) {
	hc, rows := runtime.Cols(xt), runtime.Rows(xt)
	args := []any{nt.ptr, xt.ptr, got.part, int32(got.S), int32(got.rows), wn.ptr, int32(hc), eps, sp}
	if cl {
		b.runCluster("norm.cu", "rmsnorm_parts_cl_v8_"+suffix(nt.dt), Dim{X: rows, Y: partsCluster}, Dim{X: partsClusterThreads}, 0, partsCluster, args...)
		return
	}
	b.run("norm.cu", "rmsnorm_parts_v8_"+suffix(nt.dt), Dim{X: rows}, Dim{X: b.normThreadsFor(rows)}, normStage(sp, hc, nt.dt), args...)
}

// SetDownNorm has MatMulAddNormTo leave a plain wide product's splits to
// the norm in one block a row (1, GPTQTOOL_DOWN_NORM=1) or a cluster of 8
// (2, the default) or not (0), for tests and measurements.
func (b *Backend) SetDownNorm(mode int) {
	b.enter()
	defer b.exit()
	b.downNorm = mode
}

// DownNorm reports SetDownNorm's setting.
func (b *Backend) DownNorm() int {
	b.enter()
	defer b.exit()
	return b.downNorm
}

// AddRMSNorm implements runtime.AddRMSNormer.
func (b *Backend) AddRMSNorm(norm, x, delta, weight runtime.Tensor, eps float32) {
	b.AddRMSNormTo(norm, x, delta, weight, nil, eps)
}

// AddRMSNormTo implements runtime.InputOrderer.
func (b *Backend) AddRMSNormTo(norm, x, delta, weight, slots runtime.Tensor, eps float32) {
	n, xt, dl, w := b.tensor(norm), b.tensor(x), b.tensor(delta), b.tensor(weight)
	sameShape("addrmsnorm", n, xt, dl)
	h := runtime.Cols(xt)
	if w.n != h || w.dt != xt.dt {
		panic(fmt.Sprintf("cuda: addrmsnorm weight %v %v for rows of %d %v", w.dt, w.shape, h, xt.dt))
	}
	sp := b.slotsPtr("addrmsnorm", slots, h, n, xt)
	b.enter()
	defer b.exit()
	name := "add_rmsnorm_"
	if vec8(h, n, xt, dl, w) {
		name = "add_rmsnorm_v8_"
	}
	b.run("norm.cu", name+suffix(n.dt), Dim{X: runtime.Rows(xt)}, Dim{X: b.normThreadsFor(runtime.Rows(xt))}, normStage(sp, h, n.dt), n.ptr, xt.ptr, dl.ptr, w.ptr, int32(h), eps, sp)
}

// The norms of normWideMin to normWideMax rows run normWideThreads threads
// a row. A decode step of 9-64 rows has one block a row on few of the SMs,
// so a block's latency is the kernel's, and more threads shorten it
// (measured at 32 and 64 rows, whose products stage x only once the norm
// is done):
// batch 32 decoded 9,743 and 9,747 tok/s against 9,688 and 9,705 at 256 in
// one call (and 9,781 against 9,709 and 9,720 in another). Steps of 1-8
// rows keep 256: their products stream weights across the norm (no gain
// measured), and the norm-fused products (runtime.NormFuser) sum the
// squares in the 256-thread norm's order, bit for bit. More rows (prefill)
// keep 256 too.
const (
	normWideMin     = 9
	normWideMax     = 64
	normWideThreads = 512
)

// normThreadsFor is the norms' threads a row for rows rows
// (GPTQTOOL_NORM_THREADS, where set, for every norm).
func (b *Backend) normThreadsFor(rows int) int {
	switch {
	case b.normThreads > 0:
		return b.normThreads
	case rows >= normWideMin && rows <= normWideMax:
		return normWideThreads
	}
	return threads
}

// normStage is the dynamic shared memory of a norm writing to output
// slots: a row of h elements, where it is placed before one coalesced
// store (kernels/norm.cu), up to the 48 KiB a block gets without opting in;
// 0 without slots (a wider row scatters its stores).
func normStage(slots uint64, h int, dt runtime.DType) int {
	if n := h * dt.Size(); slots != 0 && n <= 48<<10 {
		return n
	}
	return 0
}

// slotsPtr checks an op's output slots (nil, or I32 of at least cols
// elements; the output must not alias the input it is computed from) and
// returns their address (0 for nil).
func (b *Backend) slotsPtr(op string, slots runtime.Tensor, cols int, dst, src *Tensor) uint64 {
	if slots == nil {
		return 0
	}
	st := b.tensor(slots)
	if st.dt != runtime.I32 || st.n < cols || st.ptr%16 != 0 {
		panic(fmt.Sprintf("cuda: %s: output slots %v %v, want I32 of at least %d, 16-byte aligned", op, st.dt, st.shape, cols))
	}
	if dst.ptr < src.ptr+uint64(src.Bytes()) && src.ptr < dst.ptr+uint64(dst.Bytes()) {
		panic(fmt.Sprintf("cuda: %s with output slots over its input", op))
	}
	return st.ptr
}

func cudaType(dt runtime.DType) int32 {
	switch dt {
	case runtime.F32:
		return dtF32
	case runtime.F16:
		return dtF16
	case runtime.BF16:
		return dtBF16
	}
	panic(fmt.Sprintf("cuda: no cuBLAS type for %v", dt))
}

// gemm runs C = alpha·op(A)·op(B) + beta·C through cublasGemmEx with fp32
// compute (no TF32: cuBLAS's default math mode), column-major.
func (b *Backend) gemm(ta, tb int32, m, n, k int, alpha float32, A uint64, at runtime.DType, lda int, B uint64, bt runtime.DType, ldb int, beta float32, C uint64, ct runtime.DType, ldc int) error {
	if m == 0 || n == 0 {
		return nil
	}
	al, be := alpha, beta
	return blasErr(fmt.Sprintf("cublasGemmEx(%d,%d,%d)", m, n, k), bl.cublasGemmEx(b.blas, ta, tb, int32(m), int32(n), int32(k),
		unsafe.Pointer(&al), A, cudaType(at), int32(lda), B, cudaType(bt), int32(ldb),
		unsafe.Pointer(&be), C, cudaType(ct), int32(ldc), computeF32, gemmDefault))
}

// MatMul implements runtime.Backend: dst[M,N] = x[M,K]·w[N,K]ᵀ through
// cuBLAS (linear), or a quantized w's own kernels (LoadQuant).
func (b *Backend) MatMul(dst, x, w runtime.Tensor) {
	d, xt, wt := b.tensor(dst), b.tensor(x), b.tensor(w)
	b.enter()
	defer b.exit()
	b.matmul(d, xt, wt, nil)
}

// matmul sets d = (res or 0) + x·wᵀ; res is nil or has d's shape (it may
// be d).
func (b *Backend) matmul(d, xt, wt, res *Tensor) {
	if wt.q != nil {
		if wt.q.glu || len(wt.q.segments()) > 1 {
			panic("cuda: matmul with a fused weight (use MatMulSplit or MatMulGLU)")
		}
		b.qmatmul([3]*Tensor{d}, xt, wt, res, 0, nil, nil)
		return
	}
	m, k, n := checkMatMul(d, xt, wt)
	if res == nil && b.gemvRows(d, xt, wt, m, n, k) {
		return
	}
	b.linear(d, res, m, n, k, xt.ptr, xt.dt, wt.ptr, wt.dt)
}

// gemvMaxRows is the most rows gemv.cu's kernels take.
const gemvMaxRows = 4

// gemvRows sets d [m, n] fp32 = x·wᵀ with gemv.cu for a few rows of 16-bit
// x and w (the head's logits in a decode step), or head.cu for up to
// headMaxRows, unless GPTQTOOL_GEMV=0 (or SetGEMV) turned them off, and
// reports whether it did; otherwise cuBLAS does.
func (b *Backend) gemvRows(d, xt, wt *Tensor, m, n, k int) bool {
	if !b.gemv || d.dt != runtime.F32 || xt.dt != wt.dt || (xt.dt != runtime.F16 && xt.dt != runtime.BF16) ||
		k%8 != 0 || xt.ptr%16 != 0 || wt.ptr%16 != 0 || n >= 1<<31/16 {
		return false
	}
	ef := int32(0)
	if b.evictFirst {
		ef = 1
	}
	if m > gemvMaxRows {
		return b.headRows(d, xt, wt, m, n, k, ef)
	}
	name := fmt.Sprintf("gemv_rows_m%d_%s", m, suffix(xt.dt))
	b.fail(b.launch("gemv.cu", name, Dim{X: (n + 15) / 16}, Dim{X: 256}, 0, d.ptr, xt.ptr, wt.ptr, int32(n), int32(k), ef))
	return true
}

// HeadKernel names the head.cu kernel that a product of m rows of 16-bit
// x (dtype dt) by k inputs into fp32 runs on this backend, or "" where
// gemv.cu or cuBLAS takes it (SetGEMV, GPTQTOOL_HEAD_WG, no sm_90, rows or
// inputs out of its range); a driver without tensor maps also leaves it
// to cuBLAS.
func (b *Backend) HeadKernel(m, k int, dt runtime.DType) string {
	name, _ := b.headKernel(m, k, dt)
	return name
}

func (b *Backend) headKernel(m, k int, dt runtime.DType) (name string, mt int) {
	if !b.gemv || !b.headWG || !b.WarpgroupMMA() || m <= gemvMaxRows || m > headMaxRows || k%64 != 0 ||
		(dt != runtime.F16 && dt != runtime.BF16) || drv.cuTensorMapEncodeTiled == nil {
		return "", 0
	}
	mt = 1
	for mt*8 < m {
		mt *= 2
	}
	return fmt.Sprintf("head_wg_t%d_%s", mt, suffix(dt)), mt
}

// head.cu's shape: the most rows of x a launch takes, the rows of w a
// block multiplies, its ring's stages of 64 inputs and its threads (two
// warpgroups and a copying warp).
const (
	headMaxRows = 64
	headWRows   = 128
	headStages  = 4
	headThreads = 288
)

// headRows sets d [m, n] fp32 = x·wᵀ with head.cu (warpgroup MMA, sm_90;
// gemvMaxRows < m <= headMaxRows, k a multiple of 64) where GPTQTOOL_HEAD_WG
// has not turned it off and the driver makes tensor maps, and reports
// whether it did.
func (b *Backend) headRows(d, xt, wt *Tensor, m, n, k int, ef int32) bool {
	name, mt := b.headKernel(m, k, xt.dt)
	if name == "" {
		return false
	}
	tw, ok, err := b.rowsMap(wt.ptr, wt.dt, n, k, headWRows)
	if err == nil && ok {
		var tx TensorMap
		if tx, ok, err = b.rowsMap(xt.ptr, xt.dt, m, k, 8*mt); err == nil && ok {
			shared := headStages*(headWRows+8*mt)*128 + 1024 // the ring, 1,024-byte aligned
			err = b.launch("head.cu", name, Dim{X: (n + headWRows - 1) / headWRows}, Dim{X: headThreads}, shared,
				d.ptr, int32(n), int32(k), int32(m), ef, tw, tx)
		}
	}
	if err != nil {
		b.fail(err)
		return true
	}
	return ok
}

// linear sets d [m, n] = (res or 0) + x[m, k]·w[n, k]ᵀ with cuBLAS: res is
// copied into d (unless it is d) and added by the GEMM's beta. Row-major d
// is column-major dᵀ [n, m] = w·xᵀ, so the call is gemm(T, N) with w first.
func (b *Backend) linear(d, res *Tensor, m, n, k int, x uint64, xdt runtime.DType, w uint64, wdt runtime.DType) {
	beta := float32(0)
	if res != nil {
		beta = 1
		if res.ptr != d.ptr {
			b.fail(cuErr("cuMemcpyDtoDAsync", drv.cuMemcpyDtoDAsync(d.ptr, res.ptr, uint64(d.Bytes()), b.stream)))
		}
	}
	b.fail(b.gemm(opT, opN, n, m, k, 1, w, wdt, k, x, xdt, k, beta, d.ptr, d.dt, n))
}

func checkMatMul(d, xt, wt *Tensor) (m, k, n int) {
	m, k, n = runtime.Rows(xt), runtime.Cols(xt), runtime.Rows(wt)
	if runtime.Cols(wt) != k || runtime.Rows(d) != m || runtime.Cols(d) != n || wt.dt == runtime.I32 {
		panic(fmt.Sprintf("cuda: matmul dst %v = x %v · w %v %vᵀ: shape mismatch", d.shape, xt.shape, wt.dt, wt.shape))
	}
	return m, k, n
}

// vec8 reports whether 16-bit tensors can take the 8-wide kernels: n
// elements a multiple of 8 and every address 16-byte aligned.
func vec8(n int, ts ...*Tensor) bool {
	if n%8 != 0 {
		return false
	}
	for _, t := range ts {
		if t.dt == runtime.F32 || t.ptr%16 != 0 {
			return false
		}
	}
	return true
}

func (b *Backend) elementwise(op string, dst runtime.Tensor, ins ...runtime.Tensor) {
	d := b.tensor(dst)
	ts := []*Tensor{d}
	args := []any{d.ptr}
	for _, t := range ins {
		ct := b.tensor(t)
		ts = append(ts, ct)
		args = append(args, ct.ptr)
	}
	sameShape(op, ts...)
	b.enter()
	defer b.exit()
	if op != "silu" && vec8(d.n, ts...) {
		args = append(args, int64(d.n/8))
		b.run("elementwise.cu", op+"_v8_"+suffix(d.dt), grid1(int64(d.n/8)), Dim{X: threads}, 0, args...)
		return
	}
	args = append(args, int64(d.n))
	b.run("elementwise.cu", op+"_"+suffix(d.dt), grid1(int64(d.n)), Dim{X: threads}, 0, args...)
}

// Add implements runtime.Backend.
func (b *Backend) Add(dst, a, c runtime.Tensor) { b.elementwise("add", dst, a, c) }

// AddBias implements runtime.Backend: elementwise.cu's add_bias, one
// thread an element. (Only models whose Linears have biases, Qwen2's
// q/k/v, issue it.)
func (b *Backend) AddBias(x, bias runtime.Tensor) {
	xt, bt := b.tensor(x), b.tensor(bias)
	cols := runtime.Cols(xt)
	if bt.n != cols || bt.dt != xt.dt {
		panic(fmt.Sprintf("cuda: add bias %v %v to %v rows of %d", bt.dt, bt.shape, xt.dt, cols))
	}
	b.enter()
	defer b.exit()
	b.run("elementwise.cu", "add_bias_"+suffix(xt.dt), grid1(int64(xt.n)), Dim{X: threads}, 0, xt.ptr, bt.ptr, int64(xt.n), int32(cols))
}

// Mul implements runtime.Backend.
func (b *Backend) Mul(dst, a, c runtime.Tensor) { b.elementwise("mul", dst, a, c) }

// SiLU implements runtime.Backend.
func (b *Backend) SiLU(dst, x runtime.Tensor) { b.elementwise("silu", dst, x) }

// SwiGLU implements runtime.SwiGLUer.
func (b *Backend) SwiGLU(dst, gate, up runtime.Tensor) { b.elementwise("swiglu", dst, gate, up) }

// GELUGLU implements runtime.GELUGLUer: elementwise.cu's gelu_glu.
func (b *Backend) GELUGLU(dst, gate, up runtime.Tensor) {
	d, g, u := b.tensor(dst), b.tensor(gate), b.tensor(up)
	sameShape("gelu-glu", d, g, u)
	b.enter()
	defer b.exit()
	b.run("elementwise.cu", "gelu_glu_"+suffix(d.dt), grid1(int64(d.n)), Dim{X: threads}, 0, d.ptr, g.ptr, u.ptr, int64(d.n))
}

// Scale implements runtime.Scaler: elementwise.cu's scale.
func (b *Backend) Scale(dst, x runtime.Tensor, s float32) {
	d, xt := b.tensor(dst), b.tensor(x)
	sameShape("scale", d, xt)
	b.enter()
	defer b.exit()
	b.run("elementwise.cu", "scale_"+suffix(d.dt), grid1(int64(d.n)), Dim{X: threads}, 0, d.ptr, xt.ptr, s, int64(d.n))
}

// Softcap implements runtime.Softcapper: elementwise.cu's softcap.
func (b *Backend) Softcap(dst, x runtime.Tensor, c float32) {
	d, xt := b.tensor(dst), b.tensor(x)
	sameShape("softcap", d, xt)
	if !(c > 0) {
		panic(fmt.Sprintf("cuda: softcap of %v at %g", xt.shape, c))
	}
	b.enter()
	defer b.exit()
	b.run("elementwise.cu", "softcap_"+suffix(d.dt), grid1(int64(d.n)), Dim{X: threads}, 0, d.ptr, xt.ptr, c, int64(d.n))
}

// ScaleRows implements runtime.RowScaler: elementwise.cu's mask_rows
// (the masked Gram's kernel, whose mask is any fp32 value a row).
func (b *Backend) ScaleRows(dst, x, scales runtime.Tensor) {
	d, xt, st := b.tensor(dst), b.tensor(x), b.tensor(scales)
	sameShape("scale-rows", d, xt)
	rows, cols := runtime.Rows(xt), runtime.Cols(xt)
	if st.dt != runtime.F32 || st.n != rows {
		panic(fmt.Sprintf("cuda: scale rows of %v by %v %v", xt.shape, st.dt, st.shape))
	}
	b.enter()
	defer b.exit()
	b.run("elementwise.cu", "mask_rows_"+suffix(d.dt), grid1(int64(d.n)), Dim{X: threads}, 0, d.ptr, xt.ptr, st.ptr, int32(rows), int32(cols))
}

// SigmoidGateRows implements runtime.SigmoidGater: elementwise.cu's
// sigmoid_rows.
func (b *Backend) SigmoidGateRows(dst, x, logits runtime.Tensor) {
	d, xt, gt := b.tensor(dst), b.tensor(x), b.tensor(logits)
	sameShape("sigmoid-gate-rows", d, xt)
	rows, cols := runtime.Rows(xt), runtime.Cols(xt)
	if gt.dt != xt.dt || gt.n != rows {
		panic(fmt.Sprintf("cuda: sigmoid gate of rows %v by %v %v", xt.shape, gt.dt, gt.shape))
	}
	b.enter()
	defer b.exit()
	b.run("elementwise.cu", "sigmoid_rows_"+suffix(d.dt), grid1(int64(d.n)), Dim{X: threads}, 0, d.ptr, xt.ptr, gt.ptr, int32(rows), int32(cols))
}

// OffsetRMSNorm implements runtime.OffsetRMSNormer: norm.cu's
// rmsnorm_offset, one block a row.
func (b *Backend) OffsetRMSNorm(dst, x, weight runtime.Tensor, eps float32) {
	d, xt, w := b.tensor(dst), b.tensor(x), b.tensor(weight)
	sameShape("rmsnorm-offset", d, xt)
	h := runtime.Cols(xt)
	if w.n != h || w.dt != xt.dt {
		panic(fmt.Sprintf("cuda: rmsnorm-offset weight %v %v for rows of %d %v", w.dt, w.shape, h, xt.dt))
	}
	b.enter()
	defer b.exit()
	b.run("norm.cu", "rmsnorm_offset_"+suffix(d.dt), Dim{X: runtime.Rows(xt)}, Dim{X: b.normThreadsFor(runtime.Rows(xt))}, 0, d.ptr, xt.ptr, w.ptr, int32(h), eps)
}

// RoPE implements runtime.Backend.
func (b *Backend) RoPE(x runtime.Tensor, headDim, pos0 int, inv []float32) {
	b.RoPESeq(x, headDim, pos0, runtime.Rows(x), inv)
}

// RoPESeq is RoPE on rows/seq stacked sequences of seq rows each, every one
// starting at position pos0.
func (b *Backend) RoPESeq(x runtime.Tensor, headDim, pos0, seq int, invf []float32) {
	xt := b.tensor(x)
	cols, rows := runtime.Cols(xt), runtime.Rows(xt)
	if headDim <= 0 || headDim%2 != 0 || cols%headDim != 0 || seq <= 0 || rows%seq != 0 || len(invf) == 0 || 2*len(invf) > headDim {
		panic(fmt.Sprintf("cuda: rope head dim %d (%d inverse frequencies), sequences of %d, for %v", headDim, len(invf), seq, xt.shape))
	}
	b.enter()
	defer b.exit()
	inv, err := b.ropeFreqs(invf)
	if err != nil {
		b.fail(err)
		return
	}
	// The rotary dimension is the table's (partial RoPE below headDim).
	b.run("rope.cu", "rope_seq_"+suffix(xt.dt), grid1(int64(rows)*int64(cols/headDim)*int64(len(invf))), Dim{X: threads}, 0,
		xt.ptr, int32(rows), int32(cols), int32(headDim), int32(2*len(invf)), int32(pos0), int32(seq), inv)
}

// ScaleTail implements runtime.TailScaler (rope.cu rope_tail).
func (b *Backend) ScaleTail(x runtime.Tensor, headDim, c0 int, f float32) {
	xt := b.tensor(x)
	cols, rows := runtime.Cols(xt), runtime.Rows(xt)
	if headDim <= 0 || cols%headDim != 0 || c0 < 0 || c0 > headDim {
		panic(fmt.Sprintf("cuda: scale tail head dim %d from %d for %v", headDim, c0, xt.shape))
	}
	if c0 == headDim || rows == 0 {
		return
	}
	b.enter()
	defer b.exit()
	b.run("rope.cu", "rope_tail_"+suffix(xt.dt), grid1(int64(rows)*int64(cols/headDim)*int64(headDim-c0)), Dim{X: threads}, 0,
		xt.ptr, int32(rows), int32(cols), int32(headDim), int32(c0), f)
}

// ropeFreqs returns the device copy of the inverse-frequency table inv
// (runtime.RoPEFreqs', the CPU backend's very values), uploaded on its
// first use and found by its contents after: a model passes one table
// on every call, so the search is one comparison of headDim/2 values,
// with no allocation.
func (b *Backend) ropeFreqs(inv []float32) (uint64, error) {
	for _, t := range b.rope {
		if slices.Equal(t.inv, inv) {
			return t.buf.Ptr, nil
		}
	}
	raw := make([]byte, 4*len(inv))
	for j, v := range inv {
		binary.LittleEndian.PutUint32(raw[4*j:], math.Float32bits(v))
	}
	buf, err := b.allocBufferLocked(int64(len(raw)))
	if err != nil {
		return 0, err
	}
	if err := b.htod(buf.Ptr, raw); err != nil {
		b.alloc.release(buf.Ptr, buf.cls)
		return 0, err
	}
	b.rope = append(b.rope, ropeTable{inv: slices.Clone(inv), buf: buf})
	return buf.Ptr, nil
}

// ropeTable is a RoPE table and its device copy.
type ropeTable struct {
	inv []float32 // [rotaryDim/2]
	buf *Buffer
}

// Attention implements runtime.Backend: the tensor-core flash kernel for
// f16/bf16 with head sizes 64 and 128, the generic kernel otherwise.
func (b *Backend) Attention(dst, q, k, v runtime.Tensor, p runtime.AttentionParams) {
	d, qt, kt, vt := b.tensor(dst), b.tensor(q), b.tensor(k), b.tensor(v)
	hd := p.HeadDim
	T := runtime.Rows(qt)
	if hd <= 0 || runtime.Cols(qt)%hd != 0 || runtime.Cols(kt)%hd != 0 || d.n != qt.n || kt.n != vt.n ||
		runtime.Rows(kt) < p.Pos0+T || d.dt != qt.dt || kt.dt != qt.dt || vt.dt != qt.dt {
		panic(fmt.Sprintf("cuda: attention dst %v q %v k %v v %v head dim %d pos0 %d", d.shape, qt.shape, kt.shape, vt.shape, hd, p.Pos0))
	}
	hq, hkv := runtime.Cols(qt)/hd, runtime.Cols(kt)/hd
	if hkv == 0 || hq%hkv != 0 || hd > 512 {
		panic(fmt.Sprintf("cuda: attention with %d query and %d kv heads of %d", hq, hkv, hd))
	}
	b.enter()
	defer b.exit()
	if qt.dt != runtime.F32 && (hd == 128 || hd == 64) {
		const bm = 128
		shared := 2 * 2 * 64 * (hd + 8) * 2 // two stages of K and V tiles
		// (Soft-capped: a score s becomes capOut·tanh(s·capIn).)
		var capIn, capOut float32
		if p.Softcap > 0 {
			capIn, capOut = p.Scale/p.Softcap, p.Softcap*float32(math.Log2E)
		}
		b.run("attention.cu", fmt.Sprintf("flash_%s_d%d", suffix(qt.dt), hd), Dim{X: (T + bm - 1) / bm, Y: hq}, Dim{X: 256}, shared,
			d.ptr, qt.ptr, kt.ptr, vt.ptr, int32(T), int32(hq), int32(hkv), int32(p.Pos0), int32(p.Window), p.Scale*float32(math.Log2E),
			capIn, capOut)
		return
	}
	warps := int64(T) * int64(hq)
	b.run("attention.cu", "attn_generic_"+suffix(qt.dt), Dim{X: int((warps*32 + threads - 1) / threads)}, Dim{X: threads}, 0,
		d.ptr, qt.ptr, kt.ptr, vt.ptr, int32(T), int32(hq), int32(hkv), int32(hd), int32(p.Pos0), int32(p.Window), p.Scale, max(p.Softcap, 0))
}

// gramPanel is the column-panel width of Gram: the upper triangle is formed
// panel by panel, about half the products of the full matrix.
const gramPanel = 2048

// Gram implements runtime.Backend with cuBLAS on tensor cores (f16/bf16
// products accumulated in fp32). Row-major x [rows, K] is column-major
// X' = xᵀ [K, rows]; the panel of columns [p0, p1) of the upper triangle of
// row-major dst is the column-major block dst'[p0:K, p0:p1] =
// X'[p0:K,:]·X'[p0:p1,:]ᵀ. Masked rows are zeroed in a scratch copy first.
func (b *Backend) Gram(dst, x, mask runtime.Tensor) {
	d, xt := b.tensor(dst), b.tensor(x)
	rows, K := runtime.Rows(xt), runtime.Cols(xt)
	if d.dt != runtime.F32 || runtime.Rows(d) != K || runtime.Cols(d) != K {
		panic(fmt.Sprintf("cuda: gram dst %v %v for x %v", d.dt, d.shape, xt.shape))
	}
	var mt *Tensor
	if mask != nil {
		mt = b.tensor(mask)
		if mt.n != rows || mt.dt != runtime.F32 {
			panic(fmt.Sprintf("cuda: gram mask %v %v for x %v", mt.dt, mt.shape, xt.shape))
		}
	}
	b.enter()
	defer b.exit()
	src := xt.ptr
	if mt != nil {
		tmp, err := b.scratch(&b.tmp, xt.Bytes())
		if err != nil {
			b.fail(err)
			return
		}
		if err := b.launch("elementwise.cu", "mask_rows_"+suffix(xt.dt), grid1(int64(xt.n)), Dim{X: threads}, 0, tmp.Ptr, xt.ptr, mt.ptr, int32(rows), int32(K)); err != nil {
			b.fail(err)
			return
		}
		src = tmp.Ptr
	}
	es := uint64(xt.dt.Size())
	for p0 := 0; p0 < K; p0 += gramPanel {
		p1 := min(p0+gramPanel, K)
		if err := b.gemm(opN, opT, K-p0, p1-p0, rows, 1, src+uint64(p0)*es, xt.dt, K, src+uint64(p0)*es, xt.dt, K,
			1, d.ptr+uint64(p0+p0*K)*4, runtime.F32, K); err != nil {
			b.fail(err)
			return
		}
	}
}

// CrossEntropy implements runtime.CrossEntropyer.
func (b *Backend) CrossEntropy(logits runtime.Tensor, targets []int) ([]float64, error) {
	lt := b.tensor(logits)
	rows, V := runtime.Rows(lt), runtime.Cols(lt)
	if lt.dt != runtime.F32 || len(targets) != rows {
		return nil, fmt.Errorf("cuda: cross entropy of %v %v with %d targets", lt.dt, lt.shape, len(targets))
	}
	if rows == 0 {
		return nil, nil
	}
	raw := make([]byte, 4*rows)
	for i, t := range targets {
		if t < 0 || t >= V {
			return nil, fmt.Errorf("cuda: cross entropy target %d outside vocab %d", t, V)
		}
		binary.LittleEndian.PutUint32(raw[4*i:], uint32(t))
	}
	b.enter()
	defer b.exit()
	ids, err := b.scratch(&b.ids, int64(len(raw)))
	if err != nil {
		return nil, err
	}
	out, err := b.scratch(&b.nll, int64(8*rows))
	if err != nil {
		return nil, err
	}
	if err := b.htod(ids.Ptr, raw); err != nil {
		return nil, err
	}
	if err := b.launch("elementwise.cu", "nll_f32", Dim{X: rows}, Dim{X: threads}, 0, out.Ptr, lt.ptr, ids.Ptr, int32(V)); err != nil {
		return nil, err
	}
	res := make([]byte, 8*rows)
	if err := b.dtoh(res, out.Ptr); err != nil {
		return nil, err
	}
	nll := make([]float64, rows)
	for i := range nll {
		nll[i] = math.Float64frombits(binary.LittleEndian.Uint64(res[8*i:]))
	}
	return nll, nil
}

// ScoresRows implements runtime.RowScorer: ScoreRows is on unless
// GPTQTOOL_ROW_SCORE=0.
func (b *Backend) ScoresRows() bool { return b.rowScore }

// ScoreRows implements runtime.RowScorer (kernels/elementwise.cu
// score_rows_f32).
func (b *Backend) ScoreRows(logits runtime.Tensor, targets []int, k int) ([]float64, []int32, []float64, error) {
	lt := b.tensor(logits)
	rows, V := runtime.Rows(lt), runtime.Cols(lt)
	if lt.dt != runtime.F32 || len(targets) != rows || k < 0 || k > V {
		return nil, nil, nil, fmt.Errorf("cuda: scoring %v %v with %d targets and the top %d", lt.dt, lt.shape, len(targets), k)
	}
	if rows == 0 {
		return nil, nil, nil, nil
	}
	raw := make([]byte, 4*rows)
	for i, t := range targets {
		if t < 0 || t >= V {
			return nil, nil, nil, fmt.Errorf("cuda: scoring target %d outside vocab %d", t, V)
		}
		binary.LittleEndian.PutUint32(raw[4*i:], uint32(t))
	}
	b.enter()
	defer b.exit()
	ids, err := b.scratch(&b.ids, int64(len(raw)))
	if err != nil {
		return nil, nil, nil, err
	}
	// lp [rows], top [rows·k] (doubles), then the ids [rows·k] (int32).
	n := 8*rows + 12*rows*k
	out, err := b.scratch(&b.nll, int64(n))
	if err != nil {
		return nil, nil, nil, err
	}
	if err := b.htod(ids.Ptr, raw); err != nil {
		return nil, nil, nil, err
	}
	lpP, topP := out.Ptr, out.Ptr+uint64(8*rows)
	idsP := topP + uint64(8*rows*k)
	if err := b.launch("elementwise.cu", "score_rows_f32", Dim{X: rows}, Dim{X: threads}, 0, lpP, idsP, topP, lt.ptr, ids.Ptr, int32(V), int32(k)); err != nil {
		return nil, nil, nil, err
	}
	res := make([]byte, n)
	if err := b.dtoh(res, out.Ptr); err != nil {
		return nil, nil, nil, err
	}
	lp, top, tid := make([]float64, rows), make([]float64, rows*k), make([]int32, rows*k)
	for i := range lp {
		lp[i] = math.Float64frombits(binary.LittleEndian.Uint64(res[8*i:]))
	}
	for i := range top {
		top[i] = math.Float64frombits(binary.LittleEndian.Uint64(res[8*rows+8*i:]))
		tid[i] = int32(binary.LittleEndian.Uint32(res[8*rows+8*rows*k+4*i:]))
		if tid[i] < 0 || int(tid[i]) >= V {
			// The row has fewer than k numbers (runtime.RowScorer).
			tid[i], top[i] = -1, math.NaN()
		}
	}
	return lp, tid, top, nil
}

var _ runtime.CrossEntropyer = (*Backend)(nil)
var _ runtime.RowScorer = (*Backend)(nil)
var _ runtime.SwiGLUer = (*Backend)(nil)
var _ runtime.AddRMSNormer = (*Backend)(nil)
var _ runtime.InputOrderer = (*Backend)(nil)
var _ runtime.NormFuser = (*Backend)(nil)
var _ runtime.GLUNormer = (*Backend)(nil)

// ColumnSquares implements runtime.ColumnSquarer (kernels/elementwise.cu
// col_squares_T): cols doubles come back instead of x.
func (b *Backend) ColumnSquares(x runtime.Tensor) ([]float64, error) {
	xt := b.tensor(x)
	rows, cols := runtime.Rows(xt), runtime.Cols(xt)
	if cols == 0 {
		return nil, nil
	}
	b.enter()
	defer b.exit()
	out, err := b.scratch(&b.nll, int64(8*cols))
	if err != nil {
		return nil, err
	}
	if err := b.launch("elementwise.cu", "col_squares_"+suffix(xt.dt), Dim{X: (cols + 63) / 64}, Dim{X: 256}, 0, out.Ptr, xt.ptr, int32(rows), int32(cols)); err != nil {
		return nil, err
	}
	res := make([]byte, 8*cols)
	if err := b.dtoh(res, out.Ptr); err != nil {
		return nil, err
	}
	sums := make([]float64, cols)
	for j := range sums {
		sums[j] = math.Float64frombits(binary.LittleEndian.Uint64(res[8*j:]))
	}
	return sums, nil
}

var _ runtime.ColumnSquarer = (*Backend)(nil)
