package cpu

import (
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/runtime"
)

// WithHalf returns a backend like b that also allocates F16 and BF16
// tensors, so that a forward pass runs with a 16-bit model's activations
// as the CUDA backend runs it: the values are kept in fp32, every op
// computes in fp32 as before, and each op's output is rounded to its
// tensor's dtype (nearest, ties to even) where the CUDA kernels round —
// once per op, and inside AddRMSNorm (the sum, before it is normalised),
// MatMulAdd (the product, then its sum with the residual) and Attention
// (the probabilities of the flash kernel, before they weight the values). The
// arithmetic of a GPU calibration forward is thus reproduced on the host
// up to the order of fp32 sums (quantize --device cpu --activations f16).
// The paged decode ops (PagedAttention, RoPEStore) compute as for F32 and
// round only their outputs: they do not emulate decode.cu. F32 tensors
// behave exactly as on b.
func (b *Backend) WithHalf() *Backend {
	return &Backend{threads: b.threads, kern: b.kern, half: true, mem: b.resident()}
}

// roundTo rounds v to the nearest value of dtype dt (F16 or BF16; F32
// leaves it).
func roundTo(dt runtime.DType, v []float32) {
	switch dt {
	case runtime.F16:
		for i, x := range v {
			v[i] = half.F16ToF32(half.F32ToF16(x))
		}
	case runtime.BF16:
		for i, x := range v {
			v[i] = half.BF16ToF32(half.F32ToBF16(x))
		}
	}
}

// round rounds t's values to its dtype, in parallel.
func (b *Backend) round(t *Tensor) {
	if t.dt == runtime.F32 || t.i32 {
		return
	}
	b.parallelRange(len(t.data), minChunk, func(lo, hi int) { roundTo(t.dt, t.data[lo:hi]) })
}
