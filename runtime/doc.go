// Package runtime defines the small interface through which the model runs:
// a Backend owns device memory and implements the handful of ops a
// Mistral/Llama/Qwen2/Qwen3 forward pass needs; the model (package runtime/model) is
// written once over it, and every backend (runtime/cpu now, CUDA later)
// implements the same ops with the same names, arguments and layouts.
//
// # Layouts
//
// Tensors are dense, row-major, in PyTorch dim order. Ops view every tensor
// as a matrix [Rows, Cols], where Cols is the last dimension and Rows the
// product of the others. Linear weights keep the Hugging Face layout
// [out, in] = [N, K]; MatMul computes dst[M,N] = x[M,K] · wᵀ like
// torch.nn.functional.linear. Attention activations are [T, heads*headDim]
// with head h in columns [h*headDim, (h+1)*headDim); KV caches are
// [capacity, kvHeads*headDim] with position p in row p.
//
// # Invariants
//
//   - Ops trust their arguments: shapes are checked by the model at load
//     time, and a mismatch between our own ops is a programmer error that
//     panics.
//   - Ops may alias dst with an input only where documented (elementwise
//     ops, RMSNorm, SwiGLU).
//   - View shares storage with its parent: writes through either are seen by
//     both. Free the parent, never a view.
//   - Ops are ordered: an op sees the results of every op issued before it on
//     the same backend. Download (and Sync) wait for them.
//
// # RoPE
//
// The RoPE ops (RoPE, RoPEStore, MatMulSplitRoPE) rotate by a table of
// inverse frequencies [rotaryDim/2] that RoPEFreqs builds from rope_theta
// and the config's scaling (plain, linear, llama3, yarn, longrope with
// the factors of the model's context, or a GGUF file's frequency
// factors), once, at the model's load; no op computes
// frequencies of its own, so a scaled model cannot fall back to the plain
// table on some path. A backend may keep a device copy of a table it was
// given (found again by its contents). yarn's attention factor
// (AttentionFactor), which transformers multiplies into cos and sin, is
// not applied by the RoPE ops: the model multiplies the attention scale
// (AttentionParams.Scale) by its square, the same logits, so rotated q
// and k, and the KV cache's K, are the table's rotation alone.
//
// The table's length gives the rotary dimension, 2·len(inv), which may be
// less than the head size (partial RoPE, phi3's partial_rotary_factor:
// Phi-4-mini rotates 96 of 128): the ops rotate the first 2·len(inv)
// channels of each head by halves of that part and leave the rest as
// they are, as transformers' Phi3 apply_rotary_pos_emb (q_rot, q_pass).
// No op takes the rotary dimension as an argument of its own, so a table
// and a dimension cannot disagree. A fused op that rotates whole heads
// only (a backend's RoPEFuser) must fall back to its composed form for a
// shorter table. With partial RoPE the attention factor scales only the
// rotated channels in transformers, so the model folds its square into
// the scale as above and then multiplies q's unrotated channels by its
// inverse square (ScaleTail).
//
// # Optional ops
//
// Fused ops a backend may provide are one-method interfaces found by type
// assertion (SwiGLUer, AddRMSNormer). The package-level functions SwiGLU and
// AddRMSNorm use the fused op when present and compose it from core ops
// otherwise, so a backend need only implement Backend. QuantLoader keeps
// group-quantized weights (QuantWeight, act order already sequential) on the
// backend for MatMul to multiply by directly; without it the model binds
// dequantized weights. ResidualMatMuler (MatMulAdd) adds a product into the
// residual stream. FusedQuantLoader loads q/k/v and gate/up as one weight
// each (split outputs; SwiGLU in the product).
//
// # Decode steps
//
// PagedDecoder's ops (EmbeddingAt, RoPEStore, PagedAttention) read a step's
// per-token ids, positions, cache slots and block tables from I32 tensors,
// so that nothing crosses to the host between a step's first op and its
// logits; a Grapher records such a step once (Capture) and replays it
// (Graph.Launch) with the inputs refreshed in place. The CPU backend has
// the ops (the reference); the CUDA backend has both.
//
// A TokenSampler draws the next tokens where the logits are, so that a
// step returns token ids rather than [rows, vocab] logits: DrawToken is the
// rule (penalties, greedy, temperature, top-k, top-p, one uniform number a
// draw) and the CPU backend's implementation; the CUDA backend follows it
// up to rounding (kernels/sample.cu).
package runtime
