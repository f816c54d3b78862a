// Package gptq reads and writes the on-disk GPTQ format that AutoGPTQ,
// GPTQModel, ExLlama, vLLM and TGI load (docs/gptq-spec.md §1-3): bit packing
// of qweight and qzeros, g_idx, dequantization, quantize_config.json and
// config.json's quantization_config block, and the loader compatibility table.
// It does no quantization math beyond dequantization.
//
// Notation: K = in features, N = out features, G = number of groups =
// ceil(K/groupSize) (1 when groupSize is -1), bits ∈ {2, 3, 4, 8}. All
// matrices are row-major. Tensors of one quantized nn.Linear (weight [N, K]):
//
//	qweight [K*bits/32, N] int32   codes packed along K
//	qzeros  [G, N*bits/32] int32   zero points packed along N
//	scales  [G, N]         float16 (held as uint16 bits)
//	g_idx   [K]            int32   group of each input row, in [0, G)
//
// Packing: along the packed axis the values form one LSB-first bit stream per
// column of 32-bit words; value i occupies stream bits [bits*i, bits*i+bits).
// For 2, 4 and 8 bits that is pf = 32/bits values per word at bits*j; for 3 bits
// it is AutoGPTQ's 32 values in 3 words, where value 10 straddles words 0 and 1
// and value 21 words 1 and 2 (spec §1.3). Words are built as uint32 and
// reinterpreted as int32. So qweight needs K*bits%32 == 0 and qzeros needs
// N*bits%32 == 0 (3 bits: multiples of 32).
//
// Zero points: FormatV1 ("gptq", what every loader reads by default) stores
// zero-1, so a real zero of 0 cannot be stored; FormatV2 ("gptq_v2") stores
// the zero itself. Symmetric quantization uses zero = 2^(bits-1), giving v1
// words 0x77777777 (4-bit), 0x7F7F7F7F (8-bit), 0x55555555 (2-bit). Public
// functions take and return real zero points.
//
// Dequantization: W[n,k] = scales[g_idx[k], n] * (q[k,n] - zero[g_idx[k], n]).
//
// This package imports nothing of gptqtool; fp16 conversion uses
// github.com/x448/float16.
package gptq
