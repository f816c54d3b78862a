// Package hfconfig reads the Hugging Face config.json and generation_config.json
// of Mistral-, Llama-, Qwen2-, dense Qwen3-, Phi-3-, Granite-, OLMo 2-, Gemma-, Gemma 2- and Gemma 3 text causal
// language models (model_type "mistral", "llama", "qwen2", "qwen3", "phi3":
// Phi-3, Phi-3.5, Phi-4 and Phi-4-mini, with its partial RoPE, are
// Phi3ForCausalLM; "granite": GraniteForCausalLM, see granite.go;
// "olmo2": Olmo2ForCausalLM, see olmo2.go;
// "gemma": GemmaForCausalLM, see gemma.go; "gemma2":
// Gemma2ForCausalLM, see gemma2.go;
// "gemma3_text": Gemma3ForCausalLM, see gemma3.go; and
// the text model of "gemma3", Gemma3ForConditionalGeneration, and of the
// other multimodal types below), and
// writes config.json
// back with every original key preserved.
//
// Both transformers spellings are accepted:
//
//	4.x: "rope_theta": 10000.0, "torch_dtype": "bfloat16", "rope_scaling": null
//	5.x: "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}, "dtype": "bfloat16"
//
// Required keys (a missing one is an error naming the key and the file, a
// null one says it is null and what it should be):
// model_type, hidden_size, intermediate_size, num_hidden_layers,
// num_attention_heads, vocab_size.
//
// Optional keys and their defaults, following transformers' MistralConfig,
// LlamaConfig, Qwen2Config, Qwen3Config and Phi3Config (a null value counts
// as absent unless noted):
//
//	num_key_value_heads      mistral: 8; llama, phi3: num_attention_heads; qwen2,
//	                         qwen3: 32 when absent, num_attention_heads when null
//	head_dim                 hidden_size / num_attention_heads (must divide evenly);
//	                         qwen3: 128
//	max_position_embeddings  mistral: 131072 (4096*32); llama: 2048; qwen2, qwen3: 32768;
//	                         phi3: 4096
//	rms_norm_eps             1e-6; phi3: 1e-5
//	rope_theta               10000 (4.x key, or rope_parameters.rope_theta in 5.x)
//	sliding_window           mistral: 4096 when the key is absent, 0 (none) when null;
//	                         llama: 0 (Llama has no sliding window); phi3: 0 when
//	                         absent or null, else the window, which transformers'
//	                         Phi3Model masks as Mistral's (a query sees the last
//	                         sliding_window positions, itself included:
//	                         create_sliding_window_causal_mask), so Phi-3-mini-4k's
//	                         2047 runs as given;
//	                         qwen2, qwen3: 0 whatever it says, unless use_sliding_window
//	use_sliding_window       qwen2 and qwen3 only, false; true (a window in the layers
//	                         from max_window_layers on) is refused as unsupported
//	layer_types              qwen3 only: every layer "full_attention"; given, it must
//	                         list num_hidden_layers entries, and "sliding_attention"
//	                         is refused as unsupported
//	attention_bias           llama, qwen3, gemma3_text: false (see Linear biases); phi3: no
//	                         Linear has a bias whatever it says
//	original_max_position_embeddings  phi3: 4096, longrope's pretraining context
//	partial_rotary_factor    1 (whole heads rotated); phi3 alone takes another
//	                         (see Partial RoPE)
//	resid_pdrop, embd_pdrop, attention_dropout  ignored (dropout: training only)
//	tie_word_embeddings      false
//	torch_dtype / dtype      "float32" (torch's default dtype)
//	hidden_act               "silu" (the only activation supported)
//	bos_token_id             -1 when absent or null
//	eos_token_id             -1 when absent or null; a list sets EOSTokenIDs, and
//	                         EOSTokenID is its first element
//
// RoPE scaling, rope_scaling (4.x; its type under "rope_type" or the older
// "type") or rope_parameters (5.x), is read into Config.RopeScaling. The
// types the runtime computes, each parameter required (a missing or invalid
// one is an error naming the file and key):
//
//	"default" (or null, or no type key)  plain RoPE
//	"linear"  factor >= 1: every inverse frequency divided by factor
//	          (transformers' _compute_linear_scaling_rope_parameters)
//	"llama3"  factor >= 1, low_freq_factor > 0, high_freq_factor >=
//	          low_freq_factor, original_max_position_embeddings > 0: Llama
//	          3.1 and 3.2 (_compute_llama3_parameters)
//	"yarn"    factor >= 1; optional original_max_position_embeddings > 0
//	          (else the top-level key, else max_position_embeddings),
//	          beta_fast >= beta_slow > 0 (32 and 1 where absent, null or
//	          0), truncate (true), attention_factor > 0 (else from mscale
//	          and mscale_all_dim, else 0.1·ln(factor) + 1): Qwen2.5's and
//	          Qwen3's long contexts (_compute_yarn_parameters; readYarn)
//
// phi3 takes "default" and "longrope" alone, as Phi3Config.validate_rope
// does, its older names "su" and "yarn" read as longrope (not YaRN):
//
//	"longrope"  short_factor and long_factor, head_dim/2 positive numbers
//	            each: inverse frequency j divided by factor j; the top-level
//	            original_max_position_embeddings (4096 where absent; a
//	            block's must agree); factor (else max_position_embeddings /
//	            original) and attention_factor (else sqrt(1 +
//	            ln(factor)/ln(original)), 1 for factor <= 1), which
//	            multiplies cos and sin (_compute_longrope_parameters)
//
// transformers switches from the short to the long factors once a sequence
// passes original positions; the runtime has one table for every position
// per loaded model and chooses by the context the model is run with, as
// llama.cpp does by its context length: the long factors where that
// context > original, the short ones within it (RopeScaling.ForContext).
// As read, RopeScaling.Long is the choice at max_position_embeddings
// (long for Phi-3.5-mini, Phi-4-mini, the 128k Phi-3 models); a model
// loaded for a context within original (verify perplexity --ctx 2048)
// gives transformers' logits on such windows, one loaded for more gives,
// on a sequence within original, those of transformers run past it.
//
// Other types (dynamic, and longrope outside phi3, ...) and 5.x parameters
// by layer type are refused as unsupported (ErrUnsupported): dynamic's
// frequencies change with the sequence length, not one table for every
// position; LoadAny, for work that
// copies tensors without running the model, passes them by type. A config
// with both rope_scaling and rope_parameters must give the same scaling in
// each.
//
// Partial RoPE (Config.RotaryDim): phi3's partial_rotary_factor,
// top-level or in the RoPE block (both agreeing where both are given),
// default 1: transformers rotates the first int(head_dim·factor) channels
// of each head, by halves of that part (channels j and j+RotaryDim/2),
// and passes the rest (Phi3's apply_rotary_pos_emb, q_rot and q_pass);
// the inverse frequencies are taken over RotaryDim, and longrope's factor
// lists hold RotaryDim/2 entries. Phi-4-mini-instruct's 0.75 of 128 gives
// 96. The factor must give an even RotaryDim from 2 to head_dim. Other
// model types' attention multiplies the whole head by cos and sin, so
// their factor other than 1 is refused as unsupported; LoadAny passes it.
//
// Linear biases (Config.LinearBias): qwen2's q_proj, k_proj and v_proj
// always have one (Qwen2Attention); in llama attention_bias gives the four
// attention projections one and mlp_bias the MLP's; in qwen3
// attention_bias gives q/k/v/o_proj one (Qwen3Attention; gemma2 and gemma3_text alike) and the MLP has
// none; mistral's and phi3's have none (Phi3Attention, Phi3MLP).
//
// Gemma 3 (gemma3_text, Gemma3TextConfig's defaults): num_key_value_heads
// 4, head_dim 256, max_position_embeddings 131072, rope_theta 1e6,
// sliding_window 4096, tie_word_embeddings true, hidden_activation
// "gelu_pytorch_tanh" (read in place of hidden_act, the only activation
// accepted there), query_pre_attn_scalar 256 (Config.AttentionScale),
// rope_local_base_freq 10000 (Config.RopeLocalTheta; 5.x's
// rope_parameters by layer type read as full_attention's scaling and
// sliding_attention's base), layer_types (else sliding_window_pattern 6:
// layer i slides unless (i+1) % 6 == 0; Config.LayerTypes, LayerWindow,
// LayerRope: the sliding layers rotate by the local base unscaled, the
// full ones by rope_theta and the scaling, and attend without a window).
// A non-null attn_logit_softcapping or final_logit_softcapping is refused
// naming the key, as is use_bidirectional_attention true (EmbeddingGemma;
// a _sliding_window_pattern, as transformers 4.53+ saves it, is read as
// sliding_window_pattern).
//
// Gemma 2 (gemma2, Gemma2Config's defaults): num_key_value_heads 4,
// head_dim 256, max_position_embeddings 8192, rope_theta 10000 (every
// layer), sliding_window 4096, tie_word_embeddings true,
// hidden_activation "gelu_pytorch_tanh", query_pre_attn_scalar 256,
// attn_logit_softcapping 50 and final_logit_softcapping 30 (Config's
// AttnSoftcap, FinalSoftcap; null: none; otherwise a positive number),
// layer_types (else the layers alternate, the first sliding). No q/k
// norms.
//
// Granite (granite, GraniteConfig's defaults; granite.go): Llama's keys
// and defaults (num_key_value_heads the heads, tie_word_embeddings false)
// with embedding_multiplier, attention_multiplier, residual_multiplier and
// logits_scaling (Config.Granite; each 1 where absent, else a positive
// number); Config.AttentionScale is attention_multiplier.
//
// OLMo 2 (olmo2, Olmo2Config's defaults; olmo2.go): Llama's keys and
// defaults but rms_norm_eps 1e-5; no input norms (Config.PreNorms false),
// post_attention_layernorm and post_feedforward_layernorm after the
// sublayers, q_norm and k_norm over the whole projections
// (Config.QKNorm, QKNormWidths); attention_bias gives q/k/v/o_proj biases.
//
// Gemma (gemma, GemmaConfig's defaults; gemma.go): num_key_value_heads
// 16, head_dim 256, max_position_embeddings 8192, rope_theta 10000, no
// window (a sliding_window key is ignored), tie_word_embeddings true,
// scores scaled by head_dim**-0.5, two norms a layer (Config.Gemma1;
// Config.GemmaPostNorms is false). The activation is hidden_activation
// where given (only gelu_pytorch_tanh is accepted), else hidden_act
// (default gelu_pytorch_tanh; "gelu", as the first releases wrote it, runs
// as GELU-tanh, as transformers 4.x, vLLM and llama.cpp run it).
// use_bidirectional_attention true is refused.
//
// Multimodal checkpoints (multimodal.go): the Config is the language
// model's, with Config.Wrapper the checkpoint's own model_type,
// Config.Multimodal reporting the case and Config.Outer holding the whole
// document, which MarshalWith writes back (vision_config and all; extra
// keys at the top level, where GPTQModel writes quantization_config, and
// a dtype also into text_config where that names one). Config.TextNames
// maps the checkpoint's tensor names to the text model's and back.
//
//   - gemma3 (Gemma3ForConditionalGeneration: gemma-3-4b/12b/27b): the
//     required text_config as a gemma3_text config, whose omitted keys take
//     Gemma3TextConfig's defaults (vocab_size 262208, hidden_size 2304,
//     intermediate_size 9216, num_hidden_layers 26, num_attention_heads 8,
//     bos/eos/pad 2/1/0, and the defaults above); the top level's
//     torch_dtype/dtype, bos/eos/pad_token_id and quantization_config take
//     precedence. Tensors under language_model.model.… (the older layout)
//     or model.language_model.… (transformers' module names since 4.52).
//   - mistral3 (Mistral3ForConditionalGeneration: Mistral-Small-3.1 and
//     3.2-24B; Ministral 3, Devstral Small 2): the required text_config as
//     a mistral or ministral3 config, the same top-level keys and tensor
//     layouts as gemma3.
//
// ministral3 (Ministral3ForCausalLM; Mistral 3's text model): read as
// mistral with Ministral3Config's defaults (262144 positions, rms_norm_eps
// 1e-5, no window) and the query scale of its RoPE block's
// llama_4_scaling_beta (Config.QueryScale), 1 below the block's
// original_max_position_embeddings, where MaxPositionEmbeddings is capped
// (config.json's is written back as it was).
//   - qwen2_vl and qwen2_5_vl (Qwen2-VL, Qwen2.5-VL): a qwen2 config from
//     text_config (qwen2_vl_text, qwen2_5_vl_text) where present, else from
//     the top level (transformers before 4.52 wrote it flat); rope_theta
//     and rms_norm_eps required (their text configs' defaults are not
//     Qwen2Config's); the top level's dtype and quantization_config take
//     precedence, its token ids and tie_word_embeddings fill in those
//     text_config lacks. Tensors under the text model's own names beside
//     visual.… (before 4.52) or model.language_model.… (after).
//   - qwen3_vl (Qwen3-VL): the required text_config (qwen3_vl_text) as a
//     qwen3 config, rope_theta and max_position_embeddings required, the
//     top-level keys as Qwen2-VL's; tensors under model.language_model.….
//   - qwen3_vl_moe (Qwen3-VL-MoE): text_config (qwen3_vl_moe_text) as a
//     qwen3_moe config, norm_topk_prob true where absent, rope_theta,
//     max_position_embeddings and the expert counts and size required;
//     its floating-point checkpoints' experts fused (Config.FusedExperts).
//
// The Qwen text models' rope_scaling carries M-RoPE's mrope_section
// (three counts summing to head_dim/2, checked) and Qwen3-VL's
// mrope_interleaved: a text token's three positions are equal, so its
// rotation is plain RoPE's, which the Config gives (rope type "mrope" is
// "default").
//
// Per-head q/k norms (Config.QKNorm): qwen3's and gemma3_text's attention normalizes each
// head of q and of k (RMSNorm over head_dim, weights q_norm/k_norm
// [head_dim], eps rms_norm_eps) after the projections and before RoPE;
// NumParameters counts their 2·head_dim weights a layer.
//
// Config.Raw holds the whole parsed document (a gemma3's text_config) with numbers kept as json.Number,
// so MarshalWith reproduces every original value exactly. MarshalWith writes
// like transformers' PretrainedConfig.to_json_string: keys sorted at every
// level, 2-space indent, non-ASCII escaped as \uXXXX, a trailing newline.
package hfconfig
