package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	goruntime "runtime"
	"sync"

	"github.com/gptqtool/gptqtool/formats/half"
)

// QuantWeight is a group-quantized Linear weight W [N, K] in the runtime's
// neutral layout, with act order already made sequential: the model builds
// it once at load from a checkpoint's format (GPTQ v1 or v2, any tool) and
// a backend repacks it as its kernels want.
//
// Sequential input k (0 <= k < K) is input feature Perm[k] of the original
// weight (Perm nil: k itself), and belongs to group k/GroupSize:
//
//	W[n, Perm[k]] = Scales[k/GroupSize][n] * (q[k][n] - Zeros[k/GroupSize][n])
//
// so that x·Wᵀ = Σ_k x[Perm[k]]·(...): the activation is read through Perm
// and the groups are contiguous runs of inputs.
type QuantWeight struct {
	// Bits is the code width: 2, 3, 4 or 8.
	Bits int
	// K and N are the input and output sizes.
	K, N int
	// GroupSize is the number of sequential inputs per group (the last
	// group may be shorter); K for one group over all inputs. There are
	// G = ceil(K/GroupSize) groups.
	GroupSize int
	// Codes [K, N] holds q[k][n] in [0, 2^Bits), row k = sequential input k.
	Codes []uint8
	// Scales [G, N] are fp16 bit patterns: finite and non-zero.
	Scales []uint16
	// Zeros [G, N] are the real zero points, in [0, 2^Bits].
	Zeros []uint16
	// Perm [K], or nil: sequential input k is original input Perm[k]; a
	// permutation of 0..K-1.
	Perm []int32
}

// Groups is the number of groups, ceil(K/GroupSize).
func (q *QuantWeight) Groups() int { return (q.K + q.GroupSize - 1) / q.GroupSize }

// ErrQuantUnsupported is returned by QuantLoader.LoadQuant for a weight its
// kernels do not take (a bit width or group size); the model then binds the
// dequantized weight instead.
var ErrQuantUnsupported = errors.New("quantized weight not supported by this backend")

// ErrQuantLayout reports a QuantWeight whose fields disagree.
var ErrQuantLayout = errors.New("quantized weight layout")

// Validate checks the sizes, code and zero ranges, scales and Perm.
func (q *QuantWeight) Validate() error {
	switch q.Bits {
	case 2, 3, 4, 8:
	default:
		return fmt.Errorf("%w: %d bits, want 2, 3, 4 or 8", ErrQuantLayout, q.Bits)
	}
	if q.K <= 0 || q.N <= 0 || q.GroupSize <= 0 || q.GroupSize > q.K {
		return fmt.Errorf("%w: K %d N %d group size %d", ErrQuantLayout, q.K, q.N, q.GroupSize)
	}
	G := q.Groups()
	if len(q.Codes) != q.K*q.N || len(q.Scales) != G*q.N || len(q.Zeros) != G*q.N {
		return fmt.Errorf("%w: %d codes, %d scales, %d zeros for K %d N %d in %d groups", ErrQuantLayout, len(q.Codes), len(q.Scales), len(q.Zeros), q.K, q.N, G)
	}
	if i := firstAbove(q.Codes, uint8(1<<q.Bits-1)); i >= 0 {
		return fmt.Errorf("%w: code %d at [%d %d] exceeds %d bits", ErrQuantLayout, q.Codes[i], i/q.N, i%q.N, q.Bits)
	}
	for i, z := range q.Zeros {
		if int(z) > 1<<q.Bits {
			return fmt.Errorf("%w: zero point %d at [%d %d] exceeds 2^%d", ErrQuantLayout, z, i/q.N, i%q.N, q.Bits)
		}
	}
	for i, s := range q.Scales {
		if s&0x7c00 == 0x7c00 || s&0x7fff == 0 {
			return fmt.Errorf("%w: scale %#04x at [%d %d] is not finite and non-zero", ErrQuantLayout, s, i/q.N, i%q.N)
		}
	}
	if q.Perm != nil {
		if len(q.Perm) != q.K {
			return fmt.Errorf("%w: permutation of %d inputs, want %d", ErrQuantLayout, len(q.Perm), q.K)
		}
		seen := make([]bool, q.K)
		for k, p := range q.Perm {
			if p < 0 || int(p) >= q.K || seen[p] {
				return fmt.Errorf("%w: permutation entry %d = %d is out of range or repeated", ErrQuantLayout, k, p)
			}
			seen[p] = true
		}
	}
	return nil
}

// firstAbove returns the index of the first code above top, a run of low
// bits (2^bits - 1), or -1: eight codes a word, from GOMAXPROCS goroutines
// (the codes are K·N bytes).
func firstAbove(codes []uint8, top uint8) int {
	high := 0x0101010101010101 * uint64(^top)
	const chunk = 1 << 20
	chunks := (len(codes) + chunk - 1) / chunk
	first := make([]int, chunks)
	scan := func(c int) {
		first[c] = -1
		part := codes[c*chunk : min((c+1)*chunk, len(codes))]
		i := 0
		for ; i+8 <= len(part); i += 8 {
			if binary.LittleEndian.Uint64(part[i:])&high != 0 {
				break
			}
		}
		for ; i < len(part); i++ {
			if part[i] > top {
				first[c] = c*chunk + i
				return
			}
		}
	}
	var wg sync.WaitGroup
	workers := min(goruntime.GOMAXPROCS(0), chunks)
	for w := range workers {
		wg.Go(func() {
			for c := w; c < chunks; c += workers {
				scan(c)
			}
		})
	}
	wg.Wait()
	for _, i := range first {
		if i >= 0 {
			return i
		}
	}
	return -1
}

// QuantLoader is a Backend that keeps group-quantized weights as they are
// and multiplies by them directly: LoadQuant returns a tensor of shape
// [N, K] that MatMul accepts as its w (and nothing else accepts); Free
// releases it. A backend without it gets dequantized weights instead.
type QuantLoader interface {
	LoadQuant(q *QuantWeight) (Tensor, error)
}

// QuantDTyper is a QuantLoader that names the activation dtypes its
// quantized weights multiply (the CPU backend's: F32). The model keeps
// GPTQ weights quantized in a dtype QuantDType accepts; a QuantLoader
// without it takes F16 and BF16 activations only.
type QuantDTyper interface {
	QuantDType(dt DType) bool
}

// KeepsQuant reports whether b multiplies by quantized weights
// (QuantLoader) with activations of dtype dt (QuantDTyper, else F16 or
// BF16).
func KeepsQuant(b Backend, dt DType) bool {
	if _, ok := b.(QuantLoader); !ok {
		return false
	}
	if d, ok := b.(QuantDTyper); ok {
		return d.QuantDType(dt)
	}
	return dt == F16 || dt == BF16
}

// WeightLoader is a Backend that keeps a 16-bit checkpoint's Linear
// weight in its dtype while the model computes in F32: LoadWeight takes
// the weight's n·k little-endian values of dtype dt (F16 or BF16) and
// returns a tensor of shape [n, k] that MatMul and MatMulAdd accept as
// their w, with the products of the weight converted to fp32 bit for bit
// (and nothing else accepts); Free releases it. A dtype it does not keep
// is ErrWeightUnsupported, and the model uploads the fp32 values instead.
type WeightLoader interface {
	LoadWeight(src []byte, dt DType, n, k int) (Tensor, error)
}

// ErrWeightUnsupported is returned by WeightLoader.LoadWeight for a dtype
// it does not keep.
var ErrWeightUnsupported = errors.New("weight dtype not kept by this backend")

// ResidualMatMuler is a Backend with a MatMul that adds into its output:
// dst = add + x·wᵀ, add [M, N] may be dst itself (the residual stream).
type ResidualMatMuler interface {
	MatMulAdd(dst, x, w, add Tensor)
}

// ResidualNormer is a Backend that adds a product to the residual stream
// and normalizes the result in one op: MatMulAddNormTo(x, h, w, norm,
// weight, slots, eps) is MatMulAdd(x, h, w, x) followed by
// RMSNormTo(norm, x, weight, slots, eps) (InputOrderer; slots may be nil),
// x with the same bits and the norm within its rounding, so that the
// backend may add the product's splits up in the norm (a decode step's
// down product and the next norm).
type ResidualNormer interface {
	MatMulAddNormTo(x, h, w, norm, weight, slots Tensor, eps float32)
}

// GLUDownNormer is a ResidualNormer whose GLU product may run with the
// down product after it as one op (a decode step's MLP):
// MatMulGLUDownNormTo(h, xn, gateUp, slots, x, down, norm, weight, nslots,
// eps) is InputOrderer's MatMulGLUTo(h, xn, gateUp, slots), then
// MatMulAddNormTo(x, h, down, norm, weight, nslots, eps), with the same
// results.
type GLUDownNormer interface {
	MatMulGLUDownNormTo(h, xn, gateUp, slots, x, down, norm, weight, nslots Tensor, eps float32)
}

// MatMulAdd sets dst = add + x·wᵀ, fused when b implements
// ResidualMatMuler; tmp [M, N] is scratch for the composed form (it may be
// nil when b fuses).
func MatMulAdd(b Backend, dst, x, w, add, tmp Tensor) {
	if f, ok := b.(ResidualMatMuler); ok {
		f.MatMulAdd(dst, x, w, add)
		return
	}
	b.MatMul(tmp, x, w)
	b.Add(dst, add, tmp)
}

// Dequantize returns W [N, K] in fp32, inputs in their original order: the
// host reference of the products with q (scale·(code − zero) in fp32, as
// GPTQ's dequantization computes it).
func (q *QuantWeight) Dequantize() []float32 {
	K, N := q.K, q.N
	w := make([]float32, N*K)
	for k := range K {
		g, col := k/q.GroupSize, k
		if q.Perm != nil {
			col = int(q.Perm[k])
		}
		for n := range N {
			s := half.F16ToF32(q.Scales[g*N+n])
			w[n*K+col] = s * float32(int(q.Codes[k*N+n])-int(q.Zeros[g*N+n]))
		}
	}
	return w
}

// PermuteOutputs returns q with its output columns reordered: column j of
// the result is column order[j] of q (order a permutation of 0..N-1). The
// inputs, groups and Perm are q's.
//
// It folds one weight's act order into the weights that produce its
// input: with gate_proj and up_proj permuted by down_proj's Perm, their
// product writes down_proj's input in the order down_proj reads it, and
// down_proj then needs no Perm. The model's loader does the same while it
// unpacks the codes (runtime/model's sequential, in the same pass),
// without this copy.
func (q *QuantWeight) PermuteOutputs(order []int32) (*QuantWeight, error) {
	N, G := q.N, q.Groups()
	if len(order) != N {
		return nil, fmt.Errorf("%w: output order of %d columns for N %d", ErrQuantLayout, len(order), N)
	}
	seen := make([]bool, N)
	for j, c := range order {
		if c < 0 || int(c) >= N || seen[c] {
			return nil, fmt.Errorf("%w: output order entry %d = %d is out of range or repeated", ErrQuantLayout, j, c)
		}
		seen[c] = true
	}
	p := &QuantWeight{Bits: q.Bits, K: q.K, N: N, GroupSize: q.GroupSize, Perm: q.Perm,
		Codes: make([]uint8, len(q.Codes)), Scales: make([]uint16, len(q.Scales)), Zeros: make([]uint16, len(q.Zeros))}
	rows := func(k0, k1 int) {
		for k := k0; k < k1; k++ {
			src, dst := q.Codes[k*N:(k+1)*N], p.Codes[k*N:(k+1)*N]
			for j, c := range order {
				dst[j] = src[c]
			}
		}
	}
	// The codes are most of the work (K·N bytes): rows in parallel.
	var wg sync.WaitGroup
	step := max(64, (q.K+goruntime.GOMAXPROCS(0)-1)/goruntime.GOMAXPROCS(0))
	for k0 := 0; k0 < q.K; k0 += step {
		wg.Add(1)
		go func(k0 int) {
			defer wg.Done()
			rows(k0, min(k0+step, q.K))
		}(k0)
	}
	for g := range G {
		for j, c := range order {
			p.Scales[g*N+j] = q.Scales[g*N+int(c)]
			p.Zeros[g*N+j] = q.Zeros[g*N+int(c)]
		}
	}
	wg.Wait()
	return p, nil
}
