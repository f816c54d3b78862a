// Package awq reads AutoAWQ's "gemm" checkpoint format (AutoAWQ
// awq/modules/linear/gemm.py, awq/utils/packing_utils.py; vLLM
// quantization/awq.py) as GPTQ: its quantization config and the
// conversion of one quantized Linear's tensors to a gptq.Linear holding the
// same codes, scales and zero points.
//
// Notation as package gptq: K in features, N out features, groupSize
// inputs a group (-1: one group over K), G = ceil(K/groupSize). Tensors of
// one quantized nn.Linear (weight [N, K]):
//
//	qweight [K, N/8] int32   codes, 8 output columns a word
//	qzeros  [G, N/8] int32   zero points, 8 output columns a word
//	scales  [G, N]   float16
//
// Packing: word column c of a row holds output columns 8c..8c+7, nibble j
// (bits 4j..4j+3) holding column 8c+Order[j], Order = [0, 2, 4, 6, 1, 3, 5,
// 7] (AutoAWQ's AWQ_ORDER; its AWQ_REVERSE_ORDER [0, 4, 1, 5, 2, 6, 3, 7]
// gives, for column 8c+i, its nibble). Codes and zero points are unsigned
// and stored as they are (no GPTQ v1 zero-1):
//
//	W[n, k] = scales[k/groupSize, n] * (q[k, n] - zero[k/groupSize, n])
//
// There is no g_idx: groups are contiguous runs of inputs. Only 4 bits,
// zero_point true and version "gemm" are read; "gemv", "gemv_fast",
// "marlin", "exllama" and "ipex" pack differently and are refused.
package awq
