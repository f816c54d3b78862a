// Package quantized reads the quantization of a checkpoint directory,
// whichever method wrote it (GPTQ, AWQ, compressed-tensors), and presents
// the checkpoint as the GPTQ checkpoint it is equivalent to, so that the
// model loader, convert and verify read all three through package gptq.
//
// ReadConfig finds the method: config.json's quantization_config
// quant_method "awq" or "compressed-tensors", or AutoAWQ's own
// quant_config.json (its keys w_bit, q_group_size, zero_point, version, no
// quant_method), else package gptq's reading (quantize_config.json,
// quant_config.json, config.json). Config.Open then gives, for a GPTQ
// checkpoint, its weights and config as they are; for the other two a
// weights.Set in which each quantized Linear module reads as GPTQ v2
// tensors (module.qweight, .qzeros, .scales, .g_idx; see package gptq),
// converted from the checkpoint's own tensors (packages awq and
// compressed) when one of them is asked for, and a gptq.QuantizeConfig
// (checkpoint_format gptq_v2, real zero points, which AWQ's zero points of
// 0 need) whose dynamic skip rules name, one by one, the Linears the
// checkpoint leaves unquantized. The codes, scales and zero points are the
// checkpoint's own: nothing is requantized.
//
// The view hides the tensors it replaces (AWQ's qweight/qzeros/scales
// under the same names, compressed-tensors' weight_packed, weight_scale,
// weight_zero_point, weight_g_idx, weight_shape) and passes every other
// tensor through, so that a tensor neither format explains is still
// refused by the model's checks. A Linear's bias (module.bias, Qwen2's
// q/k/v_proj in Qwen's AWQ and llm-compressor's checkpoints) is such a
// tensor: it reads as a GPTQ checkpoint's bias beside qweight, in its
// stored dtype. Scales stored as bfloat16 or float32 are
// taken where every value is exactly a float16 (GPTQ's and the runtime's
// scale type), and refused naming the tensor and element otherwise.
package quantized
