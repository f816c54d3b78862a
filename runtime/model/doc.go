// Package model runs Mistral/Llama-, Qwen2-, dense Qwen3-, Phi-3-, Gemma-,
// Gemma 2- and Gemma 3 text decoder models (transformers MistralForCausalLM /
// LlamaForCausalLM / Qwen2ForCausalLM / Qwen3ForCausalLM / Phi3ForCausalLM
// / GemmaForCausalLM / Gemma2ForCausalLM / Gemma3ForCausalLM)
// on a runtime.Backend. The forward pass is written once, here, in terms of
// the backend's ops; backends know nothing of checkpoints or GPTQ.
//
// Qwen2's q/k/v_proj (and a llama config's attention_bias projections)
// have biases: bound as module.bias [N] in the model's dtype (GPTQ
// checkpoints keep them in fp16 beside qweight), left out where all zeros,
// and added (Backend.AddBias) to the products before RoPE. In a decode
// step a biased layer does not take the q/k/v product that rotates and
// stores in its epilogue (runtime.RoPEFuser): the product, the bias, then
// RoPEStore. o_proj's bias is added to its product, or to x where the
// product was added into it.
//
// Qwen3 normalizes each head of q and of k (self_attn.q_norm/k_norm
// [head_dim], rms_norm_eps) after the products and biases, before RoPE:
// Backend.RMSNorm in place over a [rows·heads, head_dim] Backend.Reshape.
// Its decode steps take the unfused q/k path as biased layers do.
//
// Gemma 3 (gemma3_text) scales the embeddings by sqrt(hidden_size)
// (runtime.Scaler, the scale rounded to the activation dtype), multiplies
// every norm by 1 + weight (runtime.OffsetRMSNormer: the four of a layer,
// its q/k norms, the final one), normalizes the attention and MLP outputs
// (post_attention_layernorm, post_feedforward_layernorm) before their
// residual adds, with pre_feedforward_layernorm as the MLP's input norm
// (layerWeights.ffnNorm, so that the ffn_norm intermediate is gate/up's
// input), runs a GELU-tanh GLU (runtime.GELUGLUer) and gives each layer
// its own RoPE table and window (dims.ropeOf, windowOf: the sliding layers'
// local base and window, the full layers' global table and none). Its
// layers take none of the decode step's fusions (input orders, norms in
// products, fused gate/up or MLP: Llama's layer); unfusedDecodeOps runs the
// step op by op. bind refuses a backend without the three ops. Gemma 2
// (gemma2) is the same layer without q/k norms, every layer on the global
// table, with its scores soft-capped (runtime.AttentionParams.Softcap,
// dims.attnCap) and its logits (runtime.Softcapper after the head,
// Model.headInto, which bind then requires too). Gemma (gemma, the first
// version) is Gemma 3's layer without the post norms (dims.postNorms:
// post_attention_layernorm is then the MLP's input norm, as in Llama),
// q/k norms, windows or caps, its scores scaled by head_dim**-0.5.
//
// Granite (hfconfig.Config.Granite) is Llama's layer with its multipliers
// (dims.granite): the embeddings scaled (scaleEmbeddings), the scores by
// attention_multiplier (dims.scale), each residual add's input
// (dims.residual) and the logits (headInto, by 1/logits_scaling); its
// decode steps run op by op as Gemma's do (unfusedDecodeOps).
//
// OLMo 2 (hfconfig.Config.Olmo2) has no input norms (attnNorm and ffnNorm
// nil: dims.norm copies the residual stream), normalizes the attention's
// and the MLP's outputs (postAttnNorm, postFFNorm) and q and k over their
// whole projections (dims.qkFull); its decode steps run op by op too.
//
// Mixture-of-experts models (hfconfig.Config.MoE: mixtral, qwen3_moe,
// qwen2_moe, olmoe: OLMoE's q/k norms span the whole projections, as
// OLMo 2's) bind each sparse layer's router and experts, and Qwen2-MoE's
// shared expert and its gate (moe.go; LayerLinears lists the experts' and
// the shared expert's Linears for Check, QuantLinears, the format checks
// and the GPTQ drivers). The shared expert runs on every row, weighted by
// the sigmoid of its gate's logit (runtime.SigmoidGater), and is added to
// the experts' sum before the residual (sharedExpert; in decode steps
// routed on the backend, through CombineExperts' extra). A sparse layer's MLP downloads the router's logits, routes
// every row on the host (routeRows: MixtralTopKRouter's softmax, top k and
// renormalization), and runs in a fixed number of ops: the experts' rows
// gathered into one stack, each expert's products on its stretch, the
// outputs weighted (runtime.RowScaler, which bind checks for: checkMoE)
// and gathered back in expert order. Decode steps run op by op
// (moeDecodeOps); where the backend routes on the device
// (runtime.ExpertRouter: the router's top k, each slot's products with its
// expert's weights, the weighted sum) their sparse layers do that instead
// (moeRouted), nothing comes to the host mid-step, and the steps are
// recorded as other models' are; otherwise never (NewPagedCache sets
// NoGraphs). For the
// GPTQ drivers a sparse layer emits every expert's input and SwiGLU output
// as zero-padded intermediates (ExpertInput, ExpertAct) and counts each
// expert's rows (Layer.ExpertRows).
//
// Phi-3's fused self_attn.qkv_proj and mlp.gate_up_proj are read as their
// parts (package fused, applied by Load and Open), so the model binds and
// runs q/k/v_proj and gate/up_proj as llama's; its longrope scaling is a
// RoPE table and an attention factor, as yarn's (runtime.RoPEFreqs).
// Phi-4-mini's partial_rotary_factor makes the table cover the first
// hfconfig.Config.RoPEDim channels of each head (the RoPE ops take the
// rotary dimension from the table's length); with an attention factor,
// q's unrotated channels are scaled by its inverse square after RoPE
// (runtime.ScaleTail), since the attention scale carries its square.
// The table is chosen once per loaded model by the context it is loaded
// for (Options.Context, else max_position_embeddings): the short factors
// within original_max_position_embeddings, the long ones past it, as
// llama.cpp chooses by n_ctx. transformers chooses per sequence (short
// until a sequence passes the original length), which a KV cache cannot
// follow: the keys it holds were rotated by the table of their time. A
// paged cache longer than Context is refused, so no position runs past
// the context its table was chosen for.
//
// # Data
//
// Config (immutable, *hfconfig.Config), weights (immutable backend tensors
// bound at load time by Hugging Face name) and state (scratch buffers and the
// KV cache, allocated once and grown only when a longer input arrives) are
// kept apart. Load validates every tensor (present, dtype F32/F16/BF16 or
// GPTQ I32/F16, shape from the config) and converts it to the backend's fp32;
// after that nothing is checked per call.
//
// GPTQ checkpoints (detected by quantize_config.json or a
// quantization_config block) are kept quantized (runtime.QuantWeight, act
// order made sequential) on a backend that multiplies by them with the
// model's activations (runtime.KeepsQuant: the CUDA backend in 16-bit, the
// CPU backend in F32), else dequantized at load with formats/gptq into
// [N, K] weights, so the backend sees an ordinary Linear; the CPU backend's
// packed products equal the dequantized ones bit for bit
// (Options.Dequantize forces the dequantized form). In F32, an F16 or BF16
// checkpoint's Linear weights stay 16-bit on a runtime.WeightLoader (the
// CPU backend; Options.WidenWeights converts them at load instead).
//
// # Layouts
//
// Activations are [T, hidden] row-major, one row per token (the stacked
// rows of all sequences of a batch). Logits returned by Forward are host
// []float32 [len(ids), vocab] row-major, by ForwardBatch one such slice per
// sequence. Linear weights
// are [N, K] (HF nn.Linear). The KV cache holds, per layer, K and V of shape
// [capacity, kvHeads*headDim] with position p in row p; K is stored after
// RoPE.
//
// # Hooks
//
// # Batches
//
// ForwardBatch stacks the rows of several sequences, each with its own
// positions and KV cache (or none), into one [ΣT, hidden] activation: the
// embedding, norms, MatMuls, SwiGLU and residual adds run once over all
// rows, RoPE and attention once per sequence on views. Forward is the
// batch of one sequence. Scratch is sized for the largest ΣT seen; the
// head runs on runs of whole sequences of up to 1024 rows (one longer
// sequence alone), so its logits buffer does not grow with the batch.
// Hooks see the stacked rows.
//
// A Hook sees named intermediates as host copies, [rows, cols] row-major:
//
//	model.embed                           [T, hidden]
//	model.layers.<i>.attn_norm            [T, hidden]    input of q/k/v_proj
//	model.layers.<i>.attn_q               [T, heads*headDim]   after RoPE
//	model.layers.<i>.attn_k, .attn_v      [T, kvHeads*headDim] K after RoPE
//	model.layers.<i>.attn_out             [T, heads*headDim]   input of o_proj
//	model.layers.<i>.ffn_norm             [T, hidden]    input of gate/up_proj
//	model.layers.<i>.ffn_act              [T, intermediate]    input of down_proj
//	model.layers.<i>.out                  [T, hidden]    layer output
//	model.norm                            [T, hidden]
//	logits                                [rows, vocab]
//
// A nil hook costs nothing: no downloads happen. The slice passed to a hook
// is valid only during the call. Where a backend keeps act-order GPTQ
// weights quantized and fuses gate/up, ffn_act's columns are in the order
// down_proj reads them (its act order folded into gate/up's outputs at
// load), not the intermediate's own.
//
// A Model, a Layer and a Cache are for one goroutine at a time.
package model
