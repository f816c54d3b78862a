// Package gguf reads and writes GGUF v3 files, the model format of
// llama.cpp and ggml (spec: ggml docs/gguf.md), and converts Llama/Mistral
// Hugging Face checkpoints to it for `gptqtool convert --to gguf`; the
// reader serves `gptqtool inspect`.
//
// # File layout
//
// Little endian throughout; strings are a uint64 byte length and UTF-8
// bytes without a terminator.
//
//	magic "GGUF", uint32 version (3), uint64 tensor_count, uint64 kv_count
//	kv_count × { string key, uint32 value_type, value }
//	    value: a scalar (u8 i8 u16 i16 u32 i32 f32 bool u64 i64 f64), a
//	    string, or an array: uint32 element type, uint64 length, elements
//	tensor_count × { string name, uint32 n_dims, uint64 dims[n_dims],
//	    uint32 ggml type, uint64 offset }
//	zero padding to a multiple of the alignment (general.alignment, default 32)
//	data section: each tensor at its offset (relative to the section start,
//	    a multiple of the alignment), zero padded to the alignment
//
// Dimensions are stored innermost first (ggml's ne[0], ne[1], …), the
// reverse of PyTorch order. TensorInfo.Shape is always in PyTorch order, so a
// linear weight [out, in] is stored as dims [in, out]; TensorInfo.Dims gives
// the file's order. The bytes of a tensor are the same in both views: rows
// of the innermost dimension, one after another.
//
// # Tensor types
//
// Every ggml type can be read and copied as bytes (the type table gives
// block sizes for validation); F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
// IQ4_NL, IQ4_XS, IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M,
// Q8_0 and Q2_K to Q6_K convert to and from float32
// (TensorType.Convertible). Quantized types cut each row into blocks
// (ggml-common.h), for example:
//
//	Q8_0, 32 values in 34 bytes: fp16 d, int8 qs[32]; x = d·q
//	Q4_0, 32 values in 18 bytes: fp16 d, 4-bit qs[16]; x = d·(q − 8)
//	    (Q4_1, Q5_0, Q5_1: layouts at QuantizeQ4_1 and its kin)
//	IQ4_NL, 32 values in 18 bytes: fp16 d, 4-bit qs[16]; x = d·kv[q] with
//	    a fixed non-linear codebook kv (IQ4_XS: layout at DequantizeIQ4_XS)
//	Q2_K, 256 values in 84 bytes: 16 bytes of 4-bit (scale, min) pairs for
//	    the sub-blocks of 16, 64 bytes of 2-bit quants, fp16 d, fp16 dmin;
//	    x = d·scale_j·q − dmin·min_j
//	Q3_K, 256 values in 110 bytes: 32 bytes of the quants' third bits, 64
//	    of their low 2 bits, 12 of sixteen 6-bit scales, fp16 d;
//	    x = d·(scale_j − 32)·(q − 4)
//	Q4_K, 256 values in 144 bytes: fp16 d, fp16 dmin, 12 bytes of eight
//	    6-bit (scale, min) pairs for the sub-blocks of 32, 128 bytes of
//	    4-bit quants; x = d·scale_j·q − dmin·min_j (layout at DequantizeQ4_K)
//	IQ3_XXS, 256 values in 98 bytes: fp16 d, one byte a group of 4
//	    values indexing a fixed grid of 256 magnitude 4-vectors, and per
//	    sub-block of 32 a uint32 of 7-bit sign groups (the 8th sign their
//	    parity) and a 4-bit scale; x = d·(0.5 + ls_j)·0.5·grid·sign
//	    (IQ3_S, 110 bytes: a 512-point grid, 8 stored signs, x =
//	    d·(1 + 2·ls_j)·grid·sign; layouts at DequantizeIQ3_XXS and
//	    DequantizeIQ3_S)
//	IQ2_XXS, 256 values in 66 bytes: fp16 d, then per 32 values four
//	    8-bit indices into a grid of 256 points (8 magnitudes each, 8, 25
//	    or 43), 4×7 sign bits (the eighth of a group keeps the count of
//	    negatives even) and a 4-bit scale s; x = d·(0.5 + s)/4·grid·sign
//	    (IQ2_XS: 9-bit indices into 512 points, a scale per 16 values;
//	    IQ2_S: 10-bit indices into 1024 points, 8 sign bits; layouts in
//	    quant_iq2.go, the grids quant_iq2_grid.go's)
//	IQ1_S, 256 values in 50 bytes: fp16 d, 11-bit indices into a grid of
//	    2048 points (8 values each, −1, 0 or 1), per 32 values a 3-bit
//	    scale s and a shift sign; x = d·(2s + 1)·(grid ± 1/8) (IQ1_M: a
//	    scale and shift per 16 and 8 values, d spread over the scales'
//	    top bits; layouts in quant_iq1.go)
//
// so a row's length must be a multiple of 32 (Q8_0, Q4_0, Q4_1, Q5_0,
// Q5_1, IQ4_NL) or 256 (the K types, IQ4_XS, the IQ3, IQ2 and IQ1 types).
// The quantizers follow ggml's (quantize_row_q8_0_ref,
// quantize_row_q4_K_ref, … without an importance matrix,
// quantize_row_q4_K_impl and its kin with one: EncodeWeighted; the grid
// searches of quantize_iq3_xxs, quantize_iq3_s, quantize_iq2_* and
// quantize_iq1_*, whose neighbour lists are derived once, on first use,
// from the grids; but IQ3_S keeps every sub-block's codes in its own slot
// where ggml moves them past an all-zero sub-block), so llama.cpp decodes
// the blocks exactly as the Dequantize functions do. ggml quantizes
// IQ2_XXS, IQ2_XS and IQ1_S only with importances: Encode refuses them
// (ErrNeedsImportance), EncodeWeighted writes them. The IQ1 quantizers
// sort values as glibc's qsort does, ties in order: ggml built on another
// C library may break ties otherwise.
//
// # Reading
//
// Open (or NewFile on any io.ReaderAt) parses and validates the whole header
// before returning: magic, version 2 or 3, every count checked against the
// bytes left in the file before anything is allocated (a hostile header
// cannot make the reader allocate much more than the file's size), string
// lengths, value types, bool bytes, unique keys and tensor names, name
// lengths, at most 4 dimensions, known tensor types whose block size divides
// the row, a general.alignment that is a uint32 power of two, tensor offsets
// aligned and inside the file, no two tensors overlapping. Errors name the
// file and the key or tensor at fault and wrap ErrFormat. After that,
// TensorData reads a tensor's bytes and Float32 dequantizes it; neither
// keeps the data.
//
// # Writing
//
// Create takes the metadata and every tensor info up front, computes the
// offsets and writes the header; WriteTensor (bytes) or WriteFloat32
// (encoded with Encode) then appends the tensors one at a time in
// declaration order, so memory stays at one tensor. The file is written
// under a hidden temporary name in the target directory, fsynced and renamed
// by a successful Close; an error, Abort or a missing tensor leaves nothing
// under the final name. Tensor names must be shorter than 64 bytes (llama.cpp
// keeps them in a 64-byte buffer). FileSize gives the size of the file that
// Create and the writes make, from the same layout, without writing.
//
// # Conversion
//
// Convert (FromCheckpoint for a safetensors checkpoint) writes a
// Mistral/Llama model as llama.cpp's "llama" architecture, as
// convert_hf_to_gguf.py does:
//
//	model.embed_tokens.weight               token_embd.weight
//	model.layers.N.input_layernorm.weight   blk.N.attn_norm.weight
//	model.layers.N.self_attn.{q,k,v,o}_proj blk.N.attn_{q,k,v,output}.weight
//	model.layers.N.post_attention_layernorm blk.N.ffn_norm.weight
//	model.layers.N.mlp.{gate,up,down}_proj  blk.N.ffn_{gate,up,down}.weight
//	model.norm.weight                       output_norm.weight
//	lm_head.weight                          output.weight (absent when tied)
//
// q_proj and k_proj rows are permuted per head (PermuteQK; k with the
// key-value head count) because transformers rotates the two halves of a
// head and llama.cpp's llama architecture adjacent pairs.
//
// A multimodal checkpoint's text model (hfconfig.Config.Multimodal) is
// written as its text type's is, the vision tower and projector left to
// llama.cpp's mmproj file: gemma3's as gemma3, mistral3's as llama; the
// Qwen VL ones as the converter's Qwen2VLModel and Qwen3VLTextModel write
// them (FileArch): "qwen2vl" and "qwen3vl", qwen2's and qwen3's tensors and
// keys under those names plus rope.dimension_sections (mrope_section and
// a 0, INT32) and qwen3vl's n_deepstack_layers. llama.cpp rotates them by
// M-RoPE, a text token's first three positions its index and the fourth
// 0: plain RoPE (but for the pairs qwen3vl's interleaving leaves to the
// fourth, two of Qwen3-VL's 64, the slowest). File.HFConfig reads them
// back as qwen2 and qwen3 with plain RoPE, checking that the sections
// cover half the rotated dimension with the fourth 0.
//
// A Qwen2 model (model_type qwen2) is written as llama.cpp's "qwen2"
// architecture (Arch), as the converter's Qwen2Model does: the same
// tensors plus q_proj, k_proj and v_proj's biases as
// blk.N.attn_{q,k,v}.bias (F32 [N]), the hyperparameters under qwen2.*,
// and q/k rows unpermuted (llama.cpp rotates qwen2 by halves,
// LLAMA_ROPE_TYPE_NEOX). Another Linear bias other than zeros (a llama
// config's attention_bias or mlp_bias) is refused: the llama file is
// written without biases. A dense Qwen3 model (model_type qwen3) is
// written as llama.cpp's "qwen3" architecture (Qwen3Model): the llama
// tensors plus self_attn.q_norm and k_norm as blk.N.attn_q_norm.weight and
// attn_k_norm.weight (F32 [head_dim]), the hyperparameters under qwen3.*
// (key_length and value_length the config's head_dim, which need not be
// hidden/heads), q/k rows unpermuted (NEOX as qwen2); its graph adds no
// Linear bias, so a qwen3 attention_bias with biases other than zeros is
// refused. A llama3 RoPE scaling is refused for qwen2 and qwen3, whose
// llama.cpp architectures have no rope_freqs tensor. File.HFConfig reads
// llama, qwen2, qwen3, qwen3moe, qwen2moe, olmoe, phi3 and gemma3 files back.
//
// A mixture of experts is written as llama.cpp's converter writes it:
// Mixtral (model_type mixtral) as a "llama" file (LlamaModel), Qwen3-MoE
// (qwen3_moe) as a "qwen3moe" one (Qwen3MoeModel: the qwen3 tensors and
// keys under qwen3moe.*), Qwen2-MoE (qwen2_moe) as a "qwen2moe" one
// (Qwen2MoeModel: qwen2's tensors with their q/k/v biases, written as
// zeros where qkv_bias is false, as llama.cpp requires them; the shared
// expert's gate as blk.N.ffn_gate_inp_shexp.weight, F32 [1, hidden], and
// a tied head or a head_dim other than hidden/heads refused, as its
// qwen2moe requires output.weight and takes hidden/heads; read back, the
// biases are qkv_bias where blk.0.attn_q.bias is in the file; and
// its Linears as ffn_gate_shexp, ffn_up_shexp and ffn_down_shexp; its size
// expert_shared_feed_forward_length), OLMoE (olmoe) as an "olmoe" one
// (OlmoeModel: attn_q_norm and attn_k_norm {n_embd}, over the whole
// projections; the experts feed_forward_length wide; a tied head,
// attention biases, norm_topk_prob true and fewer KV heads than heads
// refused, none of which its olmoe graph has). Each layer's router and experts are
//
//	block_sparse_moe.gate / mlp.gate    blk.N.ffn_gate_inp.weight  F32 [E, hidden]
//	experts.e.w1 / experts.e.gate_proj  blk.N.ffn_gate_exps.weight [E, size, hidden]
//	experts.e.w3 / experts.e.up_proj    blk.N.ffn_up_exps.weight   [E, size, hidden]
//	experts.e.w2 / experts.e.down_proj  blk.N.ffn_down_exps.weight [E, hidden, size]
//
// (PyTorch order: the file's dims are {hidden, E}, {hidden, size, E},
// {size, hidden, E}, as llama.cpp creates them), each Linear stacked over
// the experts, expert e's rows at [e] (torch.stack(dim=0)), in the
// converter's order (Mixtral: gate, down, up; Qwen3-MoE and Qwen2-MoE:
// down, gate, up).
// A stacked tensor is quantized row by row as ggml does: its bytes are
// each expert's matrix encoded alone, one after another. The router stays
// F32 in every file (the converter writes ffn_gate_inp in F32,
// llama-quantize never quantizes it). Metadata adds {arch}.expert_count
// and expert_used_count, and for qwen3moe and qwen2moe
// expert_feed_forward_length (a llama file's experts are
// feed_forward_length wide). llama.cpp's qwen3moe makes every layer sparse
// and always renormalizes the top k weights, so a qwen3_moe with dense
// layers (mlp_only_layers, decoder_sparse_step) or norm_topk_prob false is
// refused; its qwen2moe never renormalizes, so a qwen2_moe with dense
// layers or norm_topk_prob true is. The mixes type a shared expert's
// ffn_*_shexp by ffn_gate's, ffn_up's and ffn_down's rules, as
// llama-quantize matches them by name. An importance matrix's entry for a
// stacked tensor holds a row of sums and a count an expert, as
// llama-imatrix writes it (in_sum2 [experts, n], counts [experts, 1]), and
// each expert's rows are quantized with its own row's mean squares
// (Imatrix.Importance; a row of no tokens weighs every column 1, as
// llama-quantize loads it). The mixes follow llama-quantize's rules for
// models with experts (Mix: with 8 experts attn_k and attn_v in Q8_0,
// attn_output in Q5_K for most; the stacked tensors by ffn_gate's,
// ffn_up's and ffn_down's rules, their layer from the name; no 70B
// rule). File.HFConfig reads a llama file with expert_count as
// mixtral, a qwen2moe file as qwen2_moe (norm_topk_prob false, the shared
// expert's size expert_shared_feed_forward_length or else
// feed_forward_length), a qwen3moe file as qwen3_moe (norm_topk_prob true, the expert
// size expert_feed_forward_length or else feed_forward_length /
// expert_used_count, as llama.cpp takes it); Weights serves expert e's
// Linears under their Hugging Face names, reading only that expert's rows
// of the stack. llama.cpp loads small Mixtral, Qwen3-MoE and Qwen2-MoE
// files of each kind (F32, F16, Q8_0, Q4_K_M) and gives the runtime's
// log-probabilities on the same weights (TestLlamaCppMoE).
//
// A Gemma 3 text model (model_type gemma3_text) is written as llama.cpp's
// "gemma3" architecture, as the converter's Gemma3Model does (gemma3.go):
// every norm 1 + w in F32, input_layernorm as attn_norm,
// post_attention_layernorm as post_attention_norm,
// pre_feedforward_layernorm as ffn_norm, post_feedforward_layernorm as
// post_ffw_norm, q/k norms as attn_q_norm/attn_k_norm, rows unpermuted
// (NEOX); gemma3.* keys with the window and a linear scaling. llama.cpp
// fixes the layer pattern (every sixth full), the sliding layers' base
// (10000) and the attention scale (head_dim**-0.5), so a config saying
// otherwise is refused. File.HFConfig reads gemma3 files back as the
// gemma3_text config llama.cpp runs (the window from
// attention.sliding_window, the fixed pattern, base and scale), Weights
// each norm as the stored 1 + w less 1.
//
// A Gemma 2 model (model_type gemma2) is written as llama.cpp's "gemma2"
// architecture, as the converter's Gemma2Model does (gemma2.go): gemma3's
// tensors without attn_q_norm and attn_k_norm, gemma2.* keys with both
// soft-capping values and the window. llama.cpp fixes the alternating
// layers, the caps' use and the attention scale, so a config saying
// otherwise is refused; File.HFConfig reads gemma2 files back as the gemma2
// config llama.cpp runs.
//
// An OLMo 2 model (model_type olmo2) is written as llama.cpp's "olmo2"
// architecture, as the converter's Olmo2Model does (olmo2.go): the llama
// keys under olmo2.*, Q/K rows unpermuted, attn_q_norm and attn_k_norm
// over the whole projections, post_attention_norm and post_ffw_norm, no
// attn_norm or ffn_norm. A RoPE scaling or attention biases are refused;
// File.HFConfig reads olmo2 files back.
//
// A Granite model (model_type granite) is written as llama.cpp's
// "granite" architecture, as the converter's GraniteModel does (granite.go):
// a llama file under granite.* keys with attention.scale, embedding_scale,
// residual_scale and logit_scale (all four always written: llama.cpp's
// defaults where absent are not GraniteConfig's). A head_dim other than
// hidden/heads (the converter drops it) or a RoPE scaling is refused;
// File.HFConfig reads granite files back with their multipliers.
//
// A Gemma model (model_type gemma, the first version) is written as
// llama.cpp's "gemma" architecture, as the converter's GemmaModel does
// (gemma.go): Llama's tensor names unpermuted, every norm 1 + w, no head,
// gemma.* keys without a window or caps. An untied head, a RoPE scaling or
// attention biases are refused; File.HFConfig reads gemma files back as
// the gemma config llama.cpp runs.
//
// A Phi-3 model (model_type phi3) is written as llama.cpp's "phi3"
// architecture, as the converter's Phi3MiniModel does:
//
//	model.layers.N.self_attn.qkv_proj   blk.N.attn_qkv.weight  rows q, k, v
//	model.layers.N.mlp.gate_up_proj     blk.N.ffn_up.weight    rows gate, up
//	longrope short_factor, long_factor  rope_factors_short.weight,
//	                                    rope_factors_long.weight (F32, first)
//
// the other tensors as llama's, rows unpermuted (NEOX); a checkpoint read
// through package fused (the parts q_proj, …, up_proj) is stacked back.
// The keys are Phi3MiniModel's (phi3KVs: no vocab_size or key_length,
// rope.scaling.original_context_length, attention.sliding_window, 0 for
// none, rope.dimension_count the rotary dimension (Phi-4-mini's
// partial_rotary_factor: 96 of 128, read back as that factor; the
// rope_factors tensors hold half of it), and with longrope
// rope.scaling.attn_factor); the tokenizer's are
// its set_vocab's: for Phi-3's SentencePiece tokenizer tokenizer.ggml.pre
// "default", Phi3SentencePieceVocab's typing, SpecialVocab's
// add_bos/add_eos where decided, no add_space_prefix unless false; for
// the byte-level BPE tokenizer of Phi-4 and Phi-4-mini (GPT2Tokenizer,
// which set_vocab hands to _set_vocab_gpt2) the byte-level keys below,
// Phi-4-mini's pre "gpt-4o" (GPT-4o's o200k split; its check hash is
// Xenova/gpt-4o's) with add_bos_token false from its
// tokenizer_config.json. llama.cpp's phi3 loader disables the
// sliding window (Convert warns) and picks the long factors where its
// context exceeds the original context, the runtime where
// max_position_embeddings does (hfconfig.RopeScaling.Long). llama-quantize's
// mixes type attn_qkv by attn_v's rules (category_is_attn_v). Norms are F32; 2-D weights take the
// requested type, or the one llama-quantize's file type (Mix) gives them,
// with rows that do not split into whole blocks falling back as
// llama-quantize's do (Q4_K to Q5_0, the IQ3, IQ2 and IQ1 types to
// IQ4_NL, …, else F16), listed in ConvertResult.Fallbacks. As in
// llama-quantize, weights in IQ3_XXS and the IQ2 and IQ1 types (and
// Q2_K_S's Q2_K), token_embd and output aside, are written only with an
// importance matrix (ConvertOptions.Imatrix), and are refused before
// anything is written without one; so are token_embd and output in
// IQ2_XXS, IQ2_XS or IQ1_S without an entry of their own, which ggml
// quantizes only with importances.
// Metadata: general.* (architecture, name, file_type,
// quantization_version 2), llama.* (qwen2.*) hyperparameters with the value types
// llama.cpp's loader checks (uint32 sizes, float32 rope base and epsilon),
// and a SentencePiece-style tokenizer as tokenizer.ggml.model "llama":
// tokens, scores and token types (tokenizer.TokenType numbering) for every id up to vocab_size
// (from tokenizer.model as llama.cpp's converter reads it where
// ConvertOptions.Vocab gives SentencePieceVocab's entries, else from the
// tokenizer), bos/eos/unknown (and optionally padding) ids, add_bos/add_eos/
// add_space_prefix and tokenizer.chat_template (the tokenizer's, taken as
// transformers takes it: where a checkpoint has both chat_template.jinja and
// tokenizer_config.json's key, the file's, where llama.cpp's converter
// writes the key's). A byte-level BPE tokenizer (GPT-2, Llama 3, Qwen2,
// Phi-4-mini) is
// written as convert_hf_to_gguf.py's _set_vocab_gpt2 writes it:
// tokenizer.ggml.model "gpt2"; tokenizer.ggml.pre, the name of llama.cpp's
// pre-tokenizer, found as the converter finds it (ByteLevelPre: the
// SHA-256 of the ids of its check text, looked up in its table; a hash it
// does not know is refused with ErrUnknownPreTokenizer, naming the
// pre-tokenizer's steps and patterns, not guessed); tokens as
// tokenizer.json spells them, types normal, control (special added
// tokens and those that look special), user-defined (other added tokens)
// and unused ([PADn] up to vocab_size), no scores; tokenizer.ggml.merges
// in tokenizer.json's order; bos/eos/unknown/padding ids from the
// tokenizer's configs, else config.json's; add_bos_token and
// add_eos_token only where the post_processor's template or
// tokenizer_config.json decides them, as gguf-py's SpecialVocab writes
// them; the chat templates as above. ConvertOptions.KVOverrides
// (llama-quantize's --override-kv KEY=TYPE:VALUE, ParseKVOverride) then
// set or replace keys as llama-quantize does (the key moved to the end,
// int written as uint32); keys that describe the tensors or the token
// arrays (general.architecture, the llama.* sizes and head counts,
// tokenizer.ggml.model, its arrays and merges) are refused, as are an
// override of another type than the key's and a token id outside the
// vocabulary.
// general.alignment lays the file out by the override's alignment.
//
// RoPE scaling (hfconfig.RopeScaling) is written as convert_hf_to_gguf.py
// writes it for LlamaModel: a linear one as llama.rope.scaling.type
// "linear" and llama.rope.scaling.factor (float32), before
// llama.rope.freq_base; a llama3 one (Llama 3.1, 3.2) as the tensor
// rope_freqs.weight, F32 [head_dim/2], the first of the file, holding
// each inverse frequency's divisor (1 in the high band, factor in the low
// one, 1/((1-σ)/factor + σ) between; computed in float64 and rounded to
// float32 where the converter computes in float32: within an ulp of its
// values); a yarn one (Qwen2.5's and Qwen3's long contexts) as
// TextModel.set_gguf_parameters writes it, {arch}.rope.scaling.type
// "yarn", .factor (float32) and .original_context_length (uint32), and,
// where its attention factor A is not YaRN's default 0.1·ln(factor) + 1,
// {arch}.rope.scaling.attn_factor = A/(0.1·ln(factor) + 1), the key
// llama.cpp multiplies its default magnitude by (yarnKVs), {arch} llama
// or qwen2 (llama.cpp's loader reads these keys for every architecture,
// and neither architecture's hyperparameters read a yarn_* key); a yarn
// with betas other than 32 and 1 or truncate false is refused, as
// llama.cpp runs a llama or qwen2 file's yarn with those always.
// File.HFConfig reads them back as llama.cpp's loader applies them (the
// type "linear" when absent, rope.scale_linear for an absent factor, type
// "none" scaling nothing, yarn's original context {arch}.context_length
// where absent) and refuses the scalings the runtime does not compute
// (longrope, dynamic, an attention factor without yarn, rope_freqs with a
// linear factor or yarn, the rope.scaling.yarn_* keys llama.cpp's llama
// and qwen2 architectures do not read).
//
// Each 2-D weight's type is picked as llama-quantize's
// llama_tensor_get_type picks it (src/llama-quant.cpp): output.weight
// left in F16 (ConvertOptions.LeaveOutput, --leave-output-tensor); else
// TokenEmbeddingType for token_embd, OutputType for output.weight; else,
// in a quantized file type, the first TensorTypes pattern (--tensor-type,
// Go RE2 searched anywhere in the GGUF name) that matches, then without
// Pure the mix's rules (Mix), with Pure the mix's base type; then the
// fallback for rows that are not whole blocks. The mix's layer rules see
// a weight's rank among the weights of its kind they type, not its layer
// number (llama.cpp's counters), so overriding some layers' weights
// moves the rules for the later ones. Include/ExcludeWeights
// select the importance matrix's entries by substring first, as
// llama-quantize's prepare_imatrix does.
//
// Plan decides all of this without reading a tensor (llama-quantize
// --dry-run): each tensor's type and size, the fallbacks and the file's
// size in bytes, which is the size of the file Convert writes (the header,
// the metadata and the padding included), with Convert's refusals but for
// those only the weights' values show (F16 overflow, nonzero biases).
//
// The tests check the output with llama.cpp itself (node-llama-cpp 3.21.1's
// prebuilt CPU build, testdata/js): it loads every converted fixture, its
// greedy continuation of stories260K equals the llama2.c reference, and its
// next-token logits match the project's runtime within the tolerances of
// each tensor type. A tiny Llama converted with the byte-level tokenizer
// of each of llama.cpp's GPT-2, Qwen2 and (GPTQTOOL_LLAMACPP_MODELS) Llama
// 3 vocabulary files holds every tokenizer.* key of the file as
// convert_hf_to_gguf.py wrote it, and llama.cpp tokenizes text with it as
// the tokenizer package does. A random-weight Qwen2 with Qwen's
// vocabulary, converted to F32, F16 and Q8_0, gives llama.cpp's qwen2
// graph the runtime's log-probabilities (TestLlamaCppQwen2), which the
// runtime without the biases does not.
package gguf
