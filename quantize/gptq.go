package quantize

import (
	"errors"

	"fmt"
	"github.com/gptqtool/gptqtool/formats/gptq"
	"io"
	"math"
	"runtime"
	"slices"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
)

// Options configures GPTQ and RTN (spec §4.2, §4.3).
type Options struct {
	// Bits is the code width: 2, 3, 4 or 8.
	Bits int
	// GroupSize is the number of input columns sharing a scale; -1 means one
	// group spanning all K columns (per channel).
	GroupSize int
	// Sym selects the symmetric quantizer (zero = 2^(Bits-1)).
	Sym bool
	// ActOrder processes columns by descending diag(H) (desc_act).
	ActOrder bool
	// StaticGroups computes every group's params up front from the weight in
	// its original column order (REF static_groups); ignored when
	// GroupSize is -1.
	StaticGroups bool
	// Damp is added to diag(H) as a fraction of mean(diag(H)), e.g. 0.01
	// (AutoGPTQ default) or 0.1. See GPTQ for the retry schedule.
	Damp float64
	// BlockSize is the lazy-batch width; 0 means 128.
	BlockSize int
	// MSE enables the shrink-grid scale search; MSENorm (0 means 2.4),
	// MSEGrid (0 means 100) and MSEMaxShrink (0 means 0.8) tune it.
	MSE          bool
	MSENorm      float64
	MSEGrid      int
	MSEMaxShrink float64
	// Fp16Scales rounds each scale to fp16 as soon as it is chosen, so the
	// error feedback sees exactly the weights the checkpoint holds. False
	// rounds scales to fp32 (the reference computes in fp32 and rounds to
	// fp16 only when packing).
	Fp16Scales bool
	// StaleGroupParams reproduces a quirk of REF/AutoGPTQ/GPTQModel (spec
	// §4.2 step 7): the params of a group that starts inside a block are found
	// on the block-level W, which lacks the updates of the block's earlier
	// columns. Off (our default), they are found on the updated weights, as
	// the unblocked algorithm of the GPTQ paper does; the two agree when the
	// group size is a multiple of the block size.
	StaleGroupParams bool
}

// DefaultOptions returns 4-bit, group 128, symmetric, damp 0.01, no act
// order, block 128, fp16 scales, MSE off (with REF's grid parameters filled).
func DefaultOptions() Options {
	return Options{
		Bits: 4, GroupSize: 128, Sym: true, Damp: 0.01, BlockSize: 128,
		MSENorm: 2.4, MSEGrid: 100, MSEMaxShrink: 0.8, Fp16Scales: true,
	}
}

// Validate reports the first invalid field for a Linear with K inputs.
func (o Options) Validate(K int) error {
	switch {
	case K <= 0:
		return fmt.Errorf("quantize: K=%d, want > 0", K)
	case o.Bits != 2 && o.Bits != 3 && o.Bits != 4 && o.Bits != 8:
		return fmt.Errorf("quantize: bits=%d, want 2, 3, 4 or 8", o.Bits)
	case o.GroupSize != -1 && o.GroupSize <= 0:
		return fmt.Errorf("quantize: group size=%d, want -1 (per channel) or > 0", o.GroupSize)
	case !(o.Damp > 0 && o.Damp < 1):
		return fmt.Errorf("quantize: damp=%g, want in (0, 1)", o.Damp)
	case o.BlockSize < 0:
		return fmt.Errorf("quantize: block size=%d, want >= 0 (0 means 128)", o.BlockSize)
	case o.MSENorm < 0 || math.IsNaN(o.MSENorm) || math.IsInf(o.MSENorm, 0):
		return fmt.Errorf("quantize: mse norm=%g, want > 0 (0 means 2.4)", o.MSENorm)
	case o.MSEGrid < 0:
		return fmt.Errorf("quantize: mse grid=%d, want > 0 (0 means 100)", o.MSEGrid)
	case !(o.MSEMaxShrink >= 0 && o.MSEMaxShrink <= 1):
		return fmt.Errorf("quantize: mse max shrink=%g, want in (0, 1] (0 means 0.8)", o.MSEMaxShrink)
	}
	return nil
}

// withDefaults fills the documented zero-value defaults.
func (o Options) withDefaults() Options {
	if o.BlockSize == 0 {
		o.BlockSize = 128
	}
	if o.MSENorm == 0 {
		o.MSENorm = 2.4
	}
	if o.MSEGrid == 0 {
		o.MSEGrid = 100
	}
	if o.MSEMaxShrink == 0 {
		o.MSEMaxShrink = 0.8
	}
	return o
}

// Quantizer returns the quantizer o describes, defaults filled.
func (o Options) Quantizer() Quantizer {
	o = o.withDefaults()
	return Quantizer{
		Bits: o.Bits, Sym: o.Sym, MSE: o.MSE, Norm: o.MSENorm, Grid: o.MSEGrid,
		MaxShrink: o.MSEMaxShrink, Fp16Scales: o.Fp16Scales,
	}
}

// groupSize returns the effective group size gs' (K for per channel) and
// the number of groups G = ceil(K/gs').
func (o Options) groups(K int) (gs, G int) {
	gs = o.GroupSize
	if gs == -1 || gs > K {
		gs = K
	}
	return gs, (K + gs - 1) / gs
}

// Result is one quantized Linear. Dequantization, spec §1.1 with real zeros:
//
//	W[n,k] = Scales[GIdx[k]*N+n] * (Q[k*N+n] - Zeros[GIdx[k]*N+n])
type Result struct {
	K, N, G int
	// Q is [K, N] codes in [0, 2^bits-1], transposed relative to W so it
	// packs along K (qweight).
	Q []uint8
	// Scales is [G, N]; finite, > 0, fp16-representable with Fp16Scales.
	Scales []float32
	// Zeros is [G, N] real zero points (2^(bits-1) when sym); v1 packing
	// subtracts 1 (spec §1.4).
	Zeros []uint8
	// GIdx is [K], spec §1.5.
	GIdx []int32
	// Perm is the act-order processing order (Perm[j] = original column
	// processed j-th); nil without act order.
	Perm []int
	// W is [N, K] row-major, the dequantized weight defined above: what the
	// model uses after this Linear is quantized.
	W []float32
	// Loss is Σ Losses as REF computes it: Σ (w-q)²/d² / 2 over all
	// entries, d the diagonal of U (AutoGPTQ logs it as "error"). 0 for RTN.
	Loss float64
	// Damp is the damp fraction actually used after retries (0 for RTN).
	Damp float64
	// Packed, when not nil, is the result already in the on-disk layout
	// (spec §1), as a device solver returns it: Q, Scales, Zeros and W are
	// then nil and only packed tensors ever left the device.
	Packed *gptq.Linear
}

// ErrCholesky is wrapped by GPTQ when no damp on the retry schedule makes
// H positive definite.
var ErrCholesky = errors.New("cholesky failed")

// maxDamp bounds the damp retry schedule.
const maxDamp = 1.0

// GPTQ quantizes w, [N, K] row-major (HF layout, N = out, K = in), with the
// Hessian h, following spec §4.2 step by step (REF gptq.py fasterquant;
// AutoGPTQ is identical). h is read, not modified.
//
// If the Cholesky factorization of the damped H fails, the damp fraction is
// doubled and the factorization retried, o.Damp, 2·o.Damp, 4·o.Damp, …,
// capped at 1.0 (one last try at exactly 1.0); each retry is logged to log
// (nil discards). After the try at 1.0 GPTQ returns an error wrapping
// ErrCholesky. Non-finite inputs, scales or outputs are errors, never
// written into the Result.
func GPTQ(w []float32, N, K int, h *Hessian, o Options, log io.Writer) (*Result, error) {
	if err := o.Validate(K); err != nil {
		return nil, fmt.Errorf("gptq: %w", err)
	}
	if N <= 0 || len(w) != N*K {
		return nil, fmt.Errorf("gptq: weight has %d values, want N*K=%d*%d", len(w), N, K)
	}
	if h == nil || h.K != K || len(h.H) != K*K {
		return nil, fmt.Errorf("gptq: hessian does not match K=%d", K)
	}
	for i, v := range h.H {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("gptq: hessian H[%d,%d]=%g is not finite", i/K, i%K, v)
		}
	}
	if log == nil {
		log = io.Discard
	}
	o = o.withDefaults()
	W, err := toFloat64(w, K)
	if err != nil {
		return nil, fmt.Errorf("gptq: %w", err)
	}
	s := newState(W, N, K, o)

	// Step 1: per-channel params over the full row, before dead columns are
	// zeroed (REF calls find_params(W) first).
	if o.GroupSize == -1 {
		s.parallelRows(func(lo, hi int) {
			for n := lo; n < hi; n++ {
				s.scale[n], s.zero[n] = s.qz.FindParams(W[n*K : (n+1)*K])
			}
		})
	}

	// Step 2: dead inputs.
	diag := make([]float64, K)
	dead := make([]bool, K)
	for k := range K {
		diag[k] = h.H[k*K+k]
		if diag[k] == 0 {
			dead[k] = true
			diag[k] = 1
			for n := range N {
				W[n*K+k] = 0
			}
		}
	}

	// Step 3: static groups, original column order.
	static := o.StaticGroups && o.GroupSize != -1
	if static {
		s.parallelRows(func(lo, hi int) {
			for n := lo; n < hi; n++ {
				for g := range s.G {
					c0 := g * s.gs
					s.scale[g*N+n], s.zero[g*N+n] = s.qz.FindParams(W[n*K+c0 : n*K+min(c0+s.gs, K)])
				}
			}
		})
	}

	// Step 4: act order. A stable sort: torch's argsort leaves ties
	// unspecified, we keep them in column order.
	perm := make([]int, K)
	for k := range perm {
		perm[k] = k
	}
	if o.ActOrder {
		slices.SortStableFunc(perm, func(a, b int) int {
			switch {
			case diag[a] > diag[b]:
				return -1
			case diag[a] < diag[b]:
				return 1
			}
			return 0
		})
		s.permuteColumns(perm)
	}

	// Steps 5 and 6.
	U, damp, err := inverseFactor(h.H, K, perm, dead, diag, o.Damp, log)
	if err != nil {
		return nil, fmt.Errorf("gptq: %w", err)
	}

	// Step 7.
	groupOf := func(j int) int { return j / s.gs }
	switch {
	case o.GroupSize == -1:
		groupOf = func(int) int { return 0 }
	case static:
		groupOf = func(j int) int { return perm[j] / s.gs }
	}
	loss := s.run(U, groupOf, !static && o.GroupSize != -1)

	// Steps 8 and 9: back to the original column order.
	gidx := make([]int32, K)
	for j, c := range perm {
		switch {
		case o.GroupSize == -1:
			gidx[c] = 0
		case static:
			gidx[c] = int32(c / s.gs)
		default:
			gidx[c] = int32(j / s.gs)
		}
	}
	res, err := s.result(perm, gidx)
	if err != nil {
		return nil, fmt.Errorf("gptq: %w", err)
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return nil, fmt.Errorf("gptq: loss is %g", loss)
	}
	res.Loss = loss
	res.Damp = damp
	if o.ActOrder {
		res.Perm = perm
	}
	return res, nil
}

// ErrNonFiniteWeight is wrapped by the error for a weight of the model
// being quantized that holds NaN or ±Inf (a solver's input, not its
// result): a fault of the checkpoint, which a rerun or --resume meets
// again.
var ErrNonFiniteWeight = errors.New("the checkpoint holds this value (a damaged or overflowed model file: --resume would meet it again)")

// toFloat64 widens w and rejects non-finite values.
func toFloat64(w []float32, K int) ([]float64, error) {
	W := make([]float64, len(w))
	for i, v := range w {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("weight[%d,%d]=%g is not finite: %w", i/K, i%K, f, ErrNonFiniteWeight)
		}
		W[i] = f
	}
	return W, nil
}

// inverseFactor returns U, the upper Cholesky factor of H⁻¹ (UᵀU = H⁻¹,
// spec §4.2 step 6), of the permuted, dead-fixed, damped H, as [K,K]
// row-major with only the upper triangle meaningful, and the damp used.
//
// REF computes cholesky → cholesky_inverse → cholesky(upper). We use the
// identity U = J·L⁻¹·J with J the reversal permutation and L the lower
// Cholesky factor of JHJ: J·L⁻¹·J is upper triangular with a positive
// diagonal and (J L⁻¹ J)ᵀ(J L⁻¹ J) = J L⁻ᵀ L⁻¹ J = (J L Lᵀ J)⁻¹ = H⁻¹, so by
// uniqueness it is the same factor, at half the flops and without forming
// H⁻¹ explicitly. Everything is float64 (REF: fp32).
func inverseFactor(H []float64, K int, perm []int, dead []bool, diag []float64, damp0 float64, log io.Writer) ([]float64, float64, error) {
	var mean float64
	for _, d := range diag {
		mean += d
	}
	mean /= float64(K)
	A := make([]float64, K*K)
	for damp := damp0; ; damp = min(2*damp, maxDamp) {
		// A = J·P·H·Pᵀ·J, lower triangle; A[i][j] = Hp[K-1-i][K-1-j].
		for i := range K {
			pi := perm[K-1-i]
			row := H[pi*K : (pi+1)*K]
			a := A[i*K : i*K+i+1]
			for j := range a {
				a[j] = row[perm[K-1-j]]
			}
			if dead[pi] {
				a[i] = 1
			}
			a[i] += damp * mean
		}
		ok := false
		if _, ok = lapack64.Potrf(blas64.Symmetric{Uplo: blas.Lower, N: K, Data: A, Stride: K}); ok {
			ok = lapack64.Trtri(blas64.Triangular{Uplo: blas.Lower, Diag: blas.NonUnit, N: K, Data: A, Stride: K})
		}
		if ok {
			for i := range K {
				if d := A[i*K+i]; !(d > 0) || math.IsInf(d, 0) {
					ok = false
					break
				}
			}
		}
		if ok {
			rotate180(A, K)
			return A, damp, nil
		}
		if damp >= maxDamp {
			return nil, damp, fmt.Errorf("%w: damp %g (mean diag %g) still leaves H not positive definite", ErrCholesky, damp, mean)
		}
		fmt.Fprintf(log, "gptq: cholesky failed with damp %g; retrying with damp %g\n", damp, min(2*damp, maxDamp))
	}
}

// rotate180 maps A[i][j] to A[K-1-i][K-1-j] in place, turning the lower
// triangle of J·L⁻¹ (stored unreversed) into the upper triangle of U.
func rotate180(A []float64, K int) {
	n := K * K
	for i := range n / 2 {
		A[i], A[n-1-i] = A[n-1-i], A[i]
	}
}

// state holds the working weight and the params of one GPTQ/RTN run.
type state struct {
	W       []float64 // [N, K] row-major, permuted columns with act order
	N, K    int
	gs, G   int
	bs      int
	qz      Quantizer
	scale   []float64 // [G, N], already rounded to the storage precision
	zero    []int     // [G, N]
	codes   []uint8   // [N, K] in processing order
	workers int
	stale   bool // Options.StaleGroupParams
}

func newState(W []float64, N, K int, o Options) *state {
	gs, G := o.groups(K)
	return &state{
		W: W, N: N, K: K, gs: gs, G: G, bs: o.BlockSize, qz: o.Quantizer(),
		scale: make([]float64, G*N), zero: make([]int, G*N), codes: make([]uint8, N*K),
		workers: max(1, min(runtime.GOMAXPROCS(0), N/8)), stale: o.StaleGroupParams,
	}
}

// parallelRows runs f over contiguous row ranges [lo, hi) on all workers.
func (s *state) parallelRows(f func(lo, hi int)) {
	if s.workers == 1 {
		f(0, s.N)
		return
	}
	var wg sync.WaitGroup
	chunk := (s.N + s.workers - 1) / s.workers
	for lo := 0; lo < s.N; lo += chunk {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, min(lo+chunk, s.N))
		}()
	}
	wg.Wait()
}

// permuteColumns applies W = W[:, perm].
func (s *state) permuteColumns(perm []int) {
	s.parallelRows(func(lo, hi int) {
		tmp := make([]float64, s.K)
		for n := lo; n < hi; n++ {
			row := s.W[n*s.K : (n+1)*s.K]
			for j, c := range perm {
				tmp[j] = row[c]
			}
			copy(row, tmp)
		}
	})
}

// run is spec §4.2 step 7 over all blocks and returns Σ Losses. Each row is
// independent inside a block, so rows are split among workers and each
// walks its rows through the whole block in contiguous memory; the lazy
// batch update between blocks is one GEMM. findGroups says whether group
// params are found on the fly (non-static groups).
func (s *state) run(U []float64, groupOf func(int) int, findGroups bool) float64 {
	N, K, bs := s.N, s.K, s.bs
	err1 := make([]float64, N*bs) // [N, B] scaled errors of the block
	losses := make([]float64, s.workers)
	impl := blas64.Implementation()
	for i1 := 0; i1 < K; i1 += bs {
		i2 := min(i1+bs, K)
		B := i2 - i1
		var wg sync.WaitGroup
		chunk := (N + s.workers - 1) / s.workers
		for w, lo := 0, 0; lo < N; w, lo = w+1, lo+chunk {
			wg.Add(1)
			go func() {
				defer wg.Done()
				losses[w] += s.block(U, i1, i2, lo, min(lo+chunk, N), err1[:N*B], groupOf, findGroups)
			}()
		}
		wg.Wait()
		if i2 < K {
			// W[:, i2:] -= Err1 @ U[i1:i2, i2:]
			impl.Dgemm(blas.NoTrans, blas.NoTrans, N, K-i2, B, -1, err1, B, U[i1*K+i2:], K, 1, s.W[i2:], K)
		}
	}
	var loss float64
	for _, l := range losses {
		loss += l
	}
	return loss / 2
}

// block quantizes columns [i1, i2) of rows [lo, hi), writing the codes and
// the scaled errors err1 [N, i2-i1], and returns Σ err² over them.
func (s *state) block(U []float64, i1, i2, lo, hi int, err1 []float64, groupOf func(int) int, findGroups bool) float64 {
	K, N, B := s.K, s.N, i2-i1
	w1 := make([]float64, B)
	var group []float64 // a group straddling the block end: w1's part, then W's
	var loss float64
	for n := lo; n < hi; n++ {
		row := s.W[n*K : (n+1)*K]
		copy(w1, row[i1:i2])
		e := err1[n*B : (n+1)*B]
		codes := s.codes[n*K : (n+1)*K]
		g := -1
		var sc float64
		var z int
		for i := range B {
			j := i1 + i
			if findGroups && j%s.gs == 0 {
				gg, end := j/s.gs, min(j+s.gs, K)
				x := row[j:end] // REF's quirk: the block-level W
				if !s.stale {
					if end <= i2 {
						x = w1[i : end-i1]
					} else {
						// Columns past the block get this block's updates only
						// in the batch update after it, as in REF.
						group = append(append(group[:0], w1[i:]...), row[i2:end]...)
						x = group
					}
				}
				s.scale[gg*N+n], s.zero[gg*N+n] = s.qz.FindParams(x)
			}
			if gg := groupOf(j); gg != g {
				g = gg
				sc, z = s.scale[g*N+n], s.zero[g*N+n]
			}
			x := w1[i]
			c := s.qz.Code(x, sc, z)
			codes[j] = uint8(c)
			u := U[j*K+j : j*K+i2]
			ei := (x - sc*float64(c-z)) / u[0]
			e[i] = ei
			loss += ei * ei
			rest := w1[i+1:]
			u = u[1 : len(rest)+1]
			for k := range rest {
				rest[k] -= ei * u[k]
			}
		}
	}
	return loss
}

// result assembles the Result in the original column order and checks it.
func (s *state) result(perm []int, gidx []int32) (*Result, error) {
	N, K, G := s.N, s.K, s.G
	r := &Result{
		K: K, N: N, G: G,
		Q: make([]uint8, K*N), Scales: make([]float32, G*N), Zeros: make([]uint8, G*N),
		GIdx: gidx, W: make([]float32, N*K),
	}
	for i, sc := range s.scale {
		f := float32(sc)
		if !(f > 0) || math.IsInf(float64(f), 0) {
			return nil, fmt.Errorf("scale[%d,%d]=%g is not finite and positive", i/N, i%N, sc)
		}
		r.Scales[i] = f
		r.Zeros[i] = uint8(s.zero[i])
	}
	s.parallelRows(func(lo, hi int) {
		for n := lo; n < hi; n++ {
			codes := s.codes[n*K : (n+1)*K]
			wrow := r.W[n*K : (n+1)*K]
			for j, c := range perm {
				r.Q[c*N+n] = codes[j]
			}
			for k := range K {
				gi := int(gidx[k])*N + n
				wrow[k] = r.Scales[gi] * float32(int(r.Q[k*N+n])-int(r.Zeros[gi]))
			}
		}
	})
	for i, v := range r.W {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("dequantized weight[%d,%d]=%g is not finite", i/K, i%K, v)
		}
	}
	return r, nil
}
