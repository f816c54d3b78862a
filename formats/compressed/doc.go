// Package compressed reads compressed-tensors checkpoints as llm-compressor
// writes its weight-only integer schemes (W4A16, W8A16: format
// "pack-quantized"), as GPTQ: the quantization config (quant_method
// "compressed-tensors", config_groups, ignore) and the conversion of one
// quantized Linear's tensors to a gptq.Linear holding the same codes,
// scales and zero points. Sources: compressed-tensors
// compressors/quantized_compressors/pack_quantized.py (pack_to_int32,
// unpack_from_int32), quantization/quant_args.py, quant_config.py,
// utils/match.py, lifecycle/forward.py (dequantize).
//
// Notation as package gptq: K in, N out, bits ∈ {4, 8}, pf = 32/bits,
// groupSize (-1: strategy "channel", one group over K), G groups. Tensors
// of one quantized nn.Linear (weight [N, K]):
//
//	weight_packed     [N, K/pf] int32     codes packed along K
//	weight_scale      [N, G]    float16, bfloat16 or float32
//	weight_zero_point [N/pf, G] int32     zero points packed along N (asymmetric only)
//	weight_g_idx      [K]       int32     group of each input (act order "group"), optional
//	weight_shape      [2]       int64 or int32: [N, K]
//
// Packing: value i of the packed axis goes to word i/pf at bits
// bits*(i%pf), LSB first, as the signed value plus 2^(bits-1) (pack_to_int32
// adds the offset; unpack_from_int32 subtracts it). With u the stored
// unsigned code and uz the stored unsigned zero point,
//
//	W[n, k] = scale[n, g] * ((u - 2^(bits-1)) - (uz - 2^(bits-1))) = scale[n, g] * (u - uz)
//
// with g = g_idx[k], or k/groupSize where there is no g_idx or it holds a -1
// (compressed-tensors' "column order"). A symmetric scheme stores no zero
// point: its zero is 0 signed, 2^(bits-1) unsigned. So the GPTQ codes are
// the stored unsigned values and the GPTQ zero points the stored unsigned
// zero points (or 2^(bits-1)), unchanged.
//
// Refused, naming file and field: formats other than "pack-quantized"
// (float-quantized, naive-quantized, int-quantized, marlin-24, nvfp4 and
// mxfp4), float types, strategies other than group and channel, dynamic
// weights, activation quantization, a KV cache scheme, sparsity other than
// dense, transforms, and a padded packing (K or N not a multiple of pf).
package compressed
