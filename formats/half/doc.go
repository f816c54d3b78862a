// Package half converts between IEEE 754 binary16 (fp16), bfloat16 (bf16)
// and binary32 (fp32) values.
//
// Scalar conversions work on bit patterns held in uint16. The slice
// conversions work on little-endian byte slices, the layout safetensors and
// PyTorch use on disk: element i occupies src[2i] (low byte) and src[2i+1]
// (high byte).
//
// Invariants:
//   - fp32 to fp16 and fp32 to bf16 round to nearest, ties to even (the
//     rounding of torch.Tensor.half and torch.Tensor.bfloat16).
//   - Values too large for fp16 become ±Inf; values too small become ±0 or
//     an fp16 subnormal, rounded correctly.
//   - Inf stays Inf with its sign. NaN stays NaN: the result is always a
//     quiet NaN carrying the sign and the top payload bits, so a quiet fp16
//     or bf16 NaN survives a round trip through fp32 bit for bit.
//   - fp16 to fp32 and bf16 to fp32 are exact (every fp16 and bf16 value is
//     representable in fp32); signalling NaNs keep their payload unchanged.
//
// The slice converters panic when the lengths disagree (a programmer error,
// not bad input). Slices of more than ParallelThreshold elements are split
// across GOMAXPROCS goroutines; dst and src must not overlap.
package half
