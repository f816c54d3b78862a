// Package fused reads a checkpoint whose decoder layers keep Linear
// modules fused as the checkpoint of their parts, so that the model, its
// checks and its kernels see the llama layout: Phi-3's (model_type phi3)
// self_attn.qkv_proj, whose output rows are q_proj's, then k_proj's, then
// v_proj's (transformers' Phi3Attention slices qkv at num_attention_heads
// and num_key_value_heads times head_dim), and mlp.gate_up_proj, whose
// rows are gate_proj's, then up_proj's (Phi3MLP's chunk(2)).
//
// A Set wraps a weights.Set: model.layers.N.<fused>.weight [ΣN_part, K]
// reads as model.layers.N.<part>.weight [N_part, K] for every part, each
// a slice of the fused tensor's rows (row-major, so no copy), and the
// fused name is hidden; every other tensor passes through, so that a
// tensor the layout does not explain is still refused by the model's
// checks.
//
// A GPTQ checkpoint quantizes a fused module as one (GPTQModel's phi3
// definition names qkv_proj and gate_up_proj): qweight [K·bits/32, ΣN]
// and scales [G, ΣN] hold the parts' columns side by side, qzeros
// [G, ΣN·bits/32] their packed zero points (a part must start on a word:
// 4-bit, a multiple of 8 columns; 3-bit, of 32; else Open refuses it), and
// one g_idx [K] serves every part (they share one input, so one Hessian
// and one act-order permutation). A part reads as its columns, copied;
// its g_idx is the fused one. Tensor describes one fused tensor (Axis:
// Rows, Cols or Shared) and splits or joins its data; Join plans the
// fused checkpoint from its parts' tensors and its Joiner builds each
// fused tensor, in declaration order, once its parts are added (the
// quantize and convert writers), refusing parts whose g_idx differ.
//
// A fused tensor of another shape than its parts' give, or a checkpoint
// that holds a part beside its fused module, is an error at Open naming
// the tensor and file.
package fused
