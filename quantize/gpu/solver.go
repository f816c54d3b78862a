// Package gpu is the GPTQ solve on a CUDA device (quantize.Solver): the
// Hessian, the weights and every intermediate stay on the device, in
// float64 like the host reference (quantize.GPTQ), and only the packed
// checkpoint tensors come back. kernels/gptq.cu holds its kernels.
//
// Per module group (the modules that share an input): the Hessian
// 2/n·Gram is permuted (act order), damped, factored with cuSOLVER (potrf,
// trtri) into U, the upper Cholesky factor of H⁻¹, once for the group; the
// damp is doubled and the factorisation retried as on the host. Per module:
// the weight is loaded transposed and permuted, the columns are quantized
// block by block (one fused kernel per 128-column block, the block's U in
// shared memory, a thread per output channel) with a DGEMM for the lazy
// trailing update, and the codes are dequantized into the model's weight
// and packed (spec §1) on the device.
//
// The MSE scale search, block sizes other than 128, shapes that are not
// multiples of 32, and group sizes that neither divide nor are multiples of
// 128 go to the host solver, with a log line.
package gpu

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"time"
	"unsafe"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cuda"
)

const src = "gptq.cu"

// blockSize is the lazy-batch width the kernels implement.
const blockSize = 128

// Solver quantizes module groups on a CUDA backend.
type Solver struct {
	b        *cuda.Backend
	warned   map[string]bool
	channels int // output channels per block of the column kernel; 0: none fit
	// Profile synchronises the device between the solver's phases and adds
	// their seconds to Phases: factor (Hessian to U; of which factor.potrf
	// and factor.trtri are cuSOLVER's), prepare (the weight loaded and
	// permuted), columns (the blocked column loop) and pack (dequantize,
	// pack, download).
	Profile bool
	Phases  map[string]float64
}

// New returns a solver on b.
func New(b *cuda.Backend) *Solver {
	s := &Solver{b: b, warned: map[string]bool{}, Phases: map[string]float64{}}
	// The block kernel keeps U's 128×128 triangle and each channel's 128
	// working weights in shared memory: 128 channels a block where the
	// device allows 193 KiB (Hopper), else 64 (A100: 128.5 KiB) or 32 (97 KiB).
	for _, ch := range []int{128, 64, 32} {
		if (blockSize*(blockSize+1)/2+ch*blockSize)*8 <= b.SharedMemory() {
			s.channels = ch
			break
		}
	}
	return s
}

// mark ends a profiled phase started at t and returns the time now.
func (s *Solver) mark(name string, t time.Time) time.Time {
	if !s.Profile {
		return t
	}
	s.b.Sync()
	now := time.Now()
	s.Phases[name] += now.Sub(t).Seconds()
	return now
}

// Name implements quantize.Solver.
func (s *Solver) Name() string { return "GPTQ on " + s.b.Name() }

// Workspace implements quantize.WorkspaceReporter: the device bytes one
// [N, K] module needs beyond the model (the float64 factor and weight, the
// codes, the block errors and the packed outputs).
func (s *Solver) Workspace(N, K int) int64 {
	k, n := int64(K), int64(N)
	return k*k*8 + // the factor U, float64
		k*n*8 + // the working weight, float64
		k*n + // codes
		k*n + // packed qweight (8 bits at most)
		7*(k/32+1)*n + // scales, zeros, fp16 scales (groups of 32 at least)
		blockSize*n*8 + 8*n + 64*k + // block errors, losses, index maps
		(32 << 20) // cuSOLVER's workspaces and the allocator's 2 MiB rounding of a dozen buffers
}

// unsupported says why the device solve cannot run o on an [N, K] module,
// or "" when it can.
func (s *Solver) unsupported(o quantize.Options, N, K int) string {
	gs := o.GroupSize
	switch {
	case s.channels == 0:
		return fmt.Sprintf("a device with %d bytes of shared memory a block (the column kernel needs 98816)", s.b.SharedMemory())
	case o.MSE:
		return "the MSE scale search"
	case o.BlockSize != 0 && o.BlockSize != blockSize:
		return fmt.Sprintf("block size %d", o.BlockSize)
	case K%32 != 0 || N%32 != 0:
		return fmt.Sprintf("shape [%d %d] (not multiples of 32)", N, K)
	case gs != -1 && gs < K && blockSize%gs != 0 && gs%blockSize != 0:
		return fmt.Sprintf("group size %d (neither a divisor nor a multiple of %d)", gs, blockSize)
	}
	return ""
}

// Solve implements quantize.Solver.
func (s *Solver) Solve(ctx context.Context, r quantize.SolveRequest) ([]*quantize.Result, error) {
	if r.Backend != runtime.Backend(s.b) {
		return nil, fmt.Errorf("gpu: solver of %s given tensors of %s", s.b.Name(), r.Backend.Name())
	}
	log := r.Log
	if log == nil {
		log = io.Discard
	}
	K := runtime.Cols(r.Gram)
	if err := r.Options.Validate(K); err != nil {
		return nil, fmt.Errorf("gpu: %w", err)
	}
	for _, w := range r.Weights {
		if why := s.unsupported(r.Options, runtime.Rows(w), K); why != "" {
			if !s.warned[why] {
				s.warned[why] = true
				fmt.Fprintf(log, "gpu: %s runs on the host solver\n", why)
			}
			return quantize.HostSolver{}.Solve(ctx, r)
		}
	}
	t := time.Now()
	f, err := s.factor(r, log)
	if err != nil {
		return nil, err
	}
	s.mark("factor", t)
	defer f.free(s.b)
	out := make([]*quantize.Result, len(r.Modules))
	for i, m := range r.Modules {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res, err := s.module(f, r, r.Weights[i])
		if err != nil {
			return nil, fmt.Errorf("%s: gptq: %w", m, err)
		}
		out[i] = res
	}
	return out, nil
}

// factor is what the modules of a group share: U (in R), the processing
// order, the dead columns and the damp that worked.
type factor struct {
	K       int
	R       *cuda.Buffer // [K, K] float64 column-major, R[i+j·K] = U[i][j]
	perm    []int
	dperm   *cuda.Buffer // int32 [K]
	dead    []bool
	damp    float64
	scratch *cuda.Buffer // flags
}

func (f *factor) free(b *cuda.Backend) {
	b.FreeBuffer(f.R)
	b.FreeBuffer(f.dperm)
	b.FreeBuffer(f.scratch)
}

func grid(n int64) cuda.Dim {
	return cuda.Dim{X: int(max(1, min((n+255)/256, 65535*8)))}
}

var block256 = cuda.Dim{X: 256}

func (s *Solver) flag(buf *cuda.Buffer, slot int) (bool, error) {
	var raw [4]byte
	if err := s.b.CopyToHost(raw[:], buf.Ptr+uint64(4*slot)); err != nil {
		return false, err
	}
	return binary.LittleEndian.Uint32(raw[:]) != 0, nil
}

func int32Bytes(v []int32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], uint32(x))
	}
	return out
}

// factor computes U for the request's Hessian: spec §4.2 steps 2, 4, 5, 6.
func (s *Solver) factor(r quantize.SolveRequest, log io.Writer) (_ *factor, err error) {
	b := s.b
	K := runtime.Cols(r.Gram)
	if r.Samples <= 0 {
		return nil, fmt.Errorf("gpu: hessian of %d samples", r.Samples)
	}
	scale := 2 / float64(r.Samples)
	G := b.Ptr(r.Gram)
	f := &factor{K: K}
	defer func() {
		if err != nil {
			f.free(b)
		}
	}()
	if f.scratch, err = b.AllocBuffer(64); err != nil {
		return nil, err
	}
	// Step 2: the diagonal and the dead inputs.
	dbuf, err := b.AllocBuffer(int64(K) * 8)
	if err != nil {
		return nil, err
	}
	defer b.FreeBuffer(dbuf)
	if err := b.Launch(src, "gptq_diag", grid(int64(K)), block256, 0, dbuf.Ptr, G, int32(K), scale); err != nil {
		return nil, err
	}
	raw := make([]byte, 8*K)
	if err := b.CopyToHost(raw, dbuf.Ptr); err != nil {
		return nil, err
	}
	diag := make([]float64, K)
	f.dead = make([]bool, K)
	var mean float64
	for k := range diag {
		diag[k] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*k:]))
		if diag[k] == 0 {
			f.dead[k] = true
			diag[k] = 1
		}
		mean += diag[k]
	}
	mean /= float64(K)
	// Step 4: act order, a stable sort by decreasing diagonal (ties in
	// column order), as the host solver.
	f.perm = make([]int, K)
	for k := range f.perm {
		f.perm[k] = k
	}
	if r.Options.ActOrder {
		slices.SortStableFunc(f.perm, func(a, c int) int {
			switch {
			case diag[a] > diag[c]:
				return -1
			case diag[a] < diag[c]:
				return 1
			}
			return 0
		})
	}
	p32 := make([]int32, K)
	deadB := make([]byte, K)
	for k, c := range f.perm {
		p32[k] = int32(c)
		if f.dead[k] {
			deadB[k] = 1
		}
	}
	if f.dperm, err = b.AllocBuffer(int64(K) * 4); err != nil {
		return nil, err
	}
	if err := b.CopyToDevice(f.dperm.Ptr, int32Bytes(p32)); err != nil {
		return nil, err
	}
	ddead, err := b.AllocBuffer(int64(K))
	if err != nil {
		return nil, err
	}
	defer b.FreeBuffer(ddead)
	if err := b.CopyToDevice(ddead.Ptr, deadB); err != nil {
		return nil, err
	}
	// Steps 5 and 6 with the damp retry schedule of quantize.GPTQ.
	if f.R, err = b.AllocBuffer(int64(K) * int64(K) * 8); err != nil {
		return nil, err
	}
	const maxDamp = 1.0
	for damp := r.Options.Damp; ; damp = min(2*damp, maxDamp) {
		if err := b.Memset(f.scratch.Ptr, 64); err != nil {
			return nil, err
		}
		if err := b.Launch(src, "gptq_build", grid(int64(K)*int64(K)), block256, 0,
			f.R.Ptr, G, f.dperm.Ptr, ddead.Ptr, int32(K), scale, damp*mean, f.scratch.Ptr); err != nil {
			return nil, err
		}
		if bad, err := s.flag(f.scratch, 0); err != nil {
			return nil, err
		} else if bad {
			return nil, fmt.Errorf("gpu: the Hessian holds non-finite values")
		}
		t := time.Now() // the flag read above drained the stream
		info, err := b.Dpotrf(f.R.Ptr, K)
		if err != nil {
			return nil, err
		}
		t = s.mark("factor.potrf", t)
		ok := info == 0
		if ok {
			if info, err = b.Dtrtri(f.R.Ptr, K); err != nil {
				return nil, err
			}
			s.mark("factor.trtri", t)
			ok = info == 0
		}
		if ok {
			if err := b.Launch(src, "gptq_check_diag", grid(int64(K)), block256, 0, f.R.Ptr, int32(K), f.scratch.Ptr+4); err != nil {
				return nil, err
			}
			bad, err := s.flag(f.scratch, 1)
			if err != nil {
				return nil, err
			}
			ok = !bad
		}
		if ok {
			f.damp = damp
			if err := b.Launch(src, "gptq_rotate", grid(int64(K)*int64(K)/2), block256, 0, f.R.Ptr, int64(K)*int64(K)); err != nil {
				return nil, err
			}
			return f, nil
		}
		if damp >= maxDamp {
			return nil, fmt.Errorf("gptq: %w: damp %g (mean diag %g) still leaves H not positive definite", quantize.ErrCholesky, damp, mean)
		}
		fmt.Fprintf(log, "gptq: cholesky failed with damp %g; retrying with damp %g\n", damp, min(2*damp, maxDamp))
	}
}

func dtypeName(dt runtime.DType) string {
	switch dt {
	case runtime.F16:
		return "f16"
	case runtime.BF16:
		return "bf16"
	}
	return "f32"
}

// module quantizes one weight with the group's factor (spec §4.2 steps 1,
// 3, 7, 8, 9, §1 packing).
func (s *Solver) module(f *factor, r quantize.SolveRequest, w runtime.Tensor) (*quantize.Result, error) {
	t0 := time.Now()
	b, o := s.b, r.Options
	K, N := f.K, runtime.Rows(w)
	if runtime.Cols(w) != K {
		return nil, fmt.Errorf("weight %v for a Hessian of %d", w.Shape(), K)
	}
	bits, sym, fp16 := int32(o.Bits), b2i(o.Sym), b2i(o.Fp16Scales)
	gs := o.GroupSize
	if gs == -1 || gs > K {
		gs = K
	}
	G := (K + gs - 1) / gs
	static := o.StaticGroups && o.GroupSize != -1
	findGroups := !static && o.GroupSize != -1
	// Groups that never cross a block are found inside the block kernel.
	gsIn := 0
	if findGroups && (blockSize%gs == 0 || K <= blockSize) {
		gsIn = gs
	}
	// Host-side index maps.
	invperm := make([]int32, K)
	for j, c := range f.perm {
		invperm[c] = int32(j)
	}
	gmap, gidx := make([]int32, K), make([]int32, K)
	for j, c := range f.perm {
		switch {
		case o.GroupSize == -1:
		case static:
			gmap[j] = int32(c / gs)
			gidx[c] = int32(c / gs)
		default:
			gmap[j] = int32(j / gs)
			gidx[c] = int32(j / gs)
		}
	}
	k64, n64, g64 := int64(K), int64(N), int64(G)
	var bufs []*cuda.Buffer
	defer func() {
		for _, x := range bufs {
			b.FreeBuffer(x)
		}
	}()
	alloc := func(n int64) (*cuda.Buffer, error) {
		x, err := b.AllocBuffer(n)
		if err == nil {
			bufs = append(bufs, x)
		}
		return x, err
	}
	var err error
	var wk, codes, scale, zero, errb, loss, maps, flags, qw, qz, sc16 *cuda.Buffer
	for _, a := range []struct {
		p **cuda.Buffer
		n int64
	}{
		{&wk, k64 * n64 * 8}, {&codes, k64 * n64}, {&scale, g64 * n64 * 4}, {&zero, g64 * n64},
		{&errb, blockSize * n64 * 8}, {&loss, n64 * 8}, {&maps, 4 * k64 * 4}, {&flags, 64},
		{&qw, k64 * int64(bits) / 32 * n64 * 4}, {&qz, g64 * n64 * int64(bits) / 32 * 4}, {&sc16, g64 * n64 * 2},
	} {
		if *a.p, err = alloc(a.n); err != nil {
			return nil, err
		}
	}
	dInv, dGmap, dGidx, dDeadj := maps.Ptr, maps.Ptr+uint64(4*K), maps.Ptr+uint64(8*K), maps.Ptr+uint64(12*K)
	deadj := make([]byte, 4*K) // u8 per processing position (only K bytes used)
	anyDead := false
	for j, c := range f.perm {
		if f.dead[c] {
			deadj[j] = 1
			anyDead = true
		}
	}
	host := slices.Concat(int32Bytes(invperm), int32Bytes(gmap), int32Bytes(gidx), deadj)
	if err := b.CopyToDevice(maps.Ptr, host); err != nil {
		return nil, err
	}
	launch := func(name string, n int64, shared int, args ...any) error {
		return b.Launch(src, name, grid(n), block256, shared, args...)
	}
	// Step 1 (per channel, before dead columns are zeroed), step 2, step 3.
	if err := launch("gptq_load_"+dtypeName(w.DType()), k64*n64, 0, wk.Ptr, b.Ptr(w), f.dperm.Ptr, int32(N), int32(K), flags.Ptr); err != nil {
		return nil, err
	}
	if o.GroupSize == -1 {
		if err := launch("gptq_params_rows", n64, 0, scale.Ptr, zero.Ptr, wk.Ptr, int32(N), int32(K), bits, sym, fp16); err != nil {
			return nil, err
		}
	}
	if anyDead {
		if err := launch("gptq_zero_dead", k64*n64, 0, wk.Ptr, dDeadj, int32(N), int32(K)); err != nil {
			return nil, err
		}
	}
	if static {
		if err := launch("gptq_params_static", g64*n64, 0, scale.Ptr, zero.Ptr, wk.Ptr, dInv, int32(N), int32(K), int32(gs), int32(G), bits, sym, fp16); err != nil {
			return nil, err
		}
	}
	// Step 7, block by block.
	t := s.mark("prepare", t0)
	for i1 := 0; i1 < K; i1 += blockSize {
		B := min(blockSize, K-i1)
		i2 := i1 + B
		if findGroups && gsIn == 0 && i1%gs == 0 {
			g := int64(i1 / gs)
			if err := launch("gptq_params_cols", n64, 0, scale.Ptr+uint64(g*n64*4), zero.Ptr+uint64(g*n64), wk.Ptr+uint64(int64(i1)*n64*8),
				int32(N), int32(min(gs, K-i1)), bits, sym, fp16); err != nil {
				return nil, err
			}
		}
		ch := s.channels
		shared := (B*(B+1)/2 + ch*B) * 8
		if err := b.Launch(src, "gptq_block", cuda.Dim{X: (N + ch - 1) / ch}, cuda.Dim{X: ch}, shared,
			wk.Ptr, f.R.Ptr, codes.Ptr, scale.Ptr, zero.Ptr, dGmap, errb.Ptr, loss.Ptr,
			int32(N), int32(K), int32(i1), int32(B), bits, sym, fp16, int32(gsIn), b2i(o.StaleGroupParams)); err != nil {
			return nil, err
		}
		if i2 < K {
			// W[:, i2:] -= Err1 · U[i1:i2, i2:], column-major: Wkᵀ[N, K] at column i2.
			if err := b.Dgemm(false, false, N, K-i2, B, -1, errb.Ptr, N, f.R.Ptr+uint64((int64(i1)+int64(i2)*k64)*8), K,
				1, wk.Ptr+uint64(int64(i2)*n64*8), N); err != nil {
				return nil, err
			}
		}
	}
	// Steps 8 and 9: the quantized weight for the next passes, and packing.
	t = s.mark("columns", t)
	defer s.mark("pack", t)
	v1 := b2i(r.Format != gptq.FormatV2)
	if err := launch("gptq_dequant_"+dtypeName(w.DType()), n64*k64, 0, b.Ptr(w), codes.Ptr, scale.Ptr, zero.Ptr, dInv, dGidx, int32(N), int32(K), flags.Ptr+8); err != nil {
		return nil, err
	}
	if err := launch("gptq_pack_qweight", k64/32*n64, 0, qw.Ptr, codes.Ptr, dInv, int32(N), int32(K), bits); err != nil {
		return nil, err
	}
	if err := launch("gptq_pack_qzeros", g64*n64/32, 0, qz.Ptr, zero.Ptr, int32(G), int32(N), bits, v1, flags.Ptr+12); err != nil {
		return nil, err
	}
	if err := launch("gptq_scales_f16", g64*n64, 0, sc16.Ptr, scale.Ptr, g64*n64, flags.Ptr+4); err != nil {
		return nil, err
	}
	fl := make([]byte, 16)
	if err := b.CopyToHost(fl, flags.Ptr); err != nil {
		return nil, err
	}
	if binary.LittleEndian.Uint32(fl) != 0 {
		return nil, fmt.Errorf("the weight holds non-finite values: %w", quantize.ErrNonFiniteWeight)
	}
	for i, msg := range []string{
		"a scale is not a finite positive fp16 value",
		"the dequantized weight is not finite",
		"a zero point of 0 cannot be stored in the gptq (v1) format (use gptq_v2)",
	} {
		if binary.LittleEndian.Uint32(fl[4*(i+1):]) != 0 {
			return nil, fmt.Errorf("%s", msg)
		}
	}
	lossRaw := make([]byte, 8*N)
	if err := b.CopyToHost(lossRaw, loss.Ptr); err != nil {
		return nil, err
	}
	var total float64
	for n := range N {
		total += math.Float64frombits(binary.LittleEndian.Uint64(lossRaw[8*n:]))
	}
	total /= 2
	if math.IsNaN(total) || math.IsInf(total, 0) {
		return nil, fmt.Errorf("loss is %g", total)
	}
	lin := &gptq.Linear{K: K, N: N, Bits: o.Bits, GroupSize: o.GroupSize, GIdx: gidx, Format: r.Format,
		QWeight: make([]int32, qw.Size/4), QZeros: make([]int32, qz.Size/4), Scales: make([]uint16, sc16.Size/2)}
	if lin.Format == "" {
		lin.Format = gptq.FormatV1
	}
	// Straight into the slices: the device and the host are little endian.
	for _, c := range []struct {
		dst []byte
		src *cuda.Buffer
	}{{asBytes(lin.QWeight), qw}, {asBytes(lin.QZeros), qz}, {asBytes(lin.Scales), sc16}} {
		if err := b.CopyToHost(c.dst, c.src.Ptr); err != nil {
			return nil, err
		}
	}
	res := &quantize.Result{K: K, N: N, G: G, GIdx: gidx, Loss: total, Damp: f.damp, Packed: lin}
	if o.ActOrder {
		res.Perm = slices.Clone(f.perm)
	}
	return res, nil
}

// asBytes views a slice of fixed-size integers as its bytes.
func asBytes[T int32 | uint16](v []T) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*int(unsafe.Sizeof(v[0])))
}

func b2i(v bool) int32 {
	if v {
		return 1
	}
	return 0
}

var _ quantize.Solver = (*Solver)(nil)
var _ quantize.WorkspaceReporter = (*Solver)(nil)
