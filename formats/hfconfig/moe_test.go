package hfconfig

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// mixtral8x7B is Mixtral-8x7B-v0.1's config.json.
const mixtral8x7B = `{"architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
 "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
 "max_position_embeddings": 32768, "model_type": "mixtral", "num_attention_heads": 32, "num_experts_per_tok": 2,
 "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 8, "output_router_logits": false,
 "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02, "sliding_window": null,
 "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.36.0.dev0", "use_cache": true,
 "vocab_size": 32000}`

// qwen3A3B is Qwen3-30B-A3B's config.json.
const qwen3A3B = `{"architectures": ["Qwen3MoeForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
 "bos_token_id": 151643, "decoder_sparse_step": 1, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
 "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 6144, "max_position_embeddings": 40960,
 "max_window_layers": 48, "mlp_only_layers": [], "model_type": "qwen3_moe", "moe_intermediate_size": 768,
 "norm_topk_prob": true, "num_attention_heads": 32, "num_experts": 128, "num_experts_per_tok": 8,
 "num_hidden_layers": 48, "num_key_value_heads": 4, "output_router_logits": false, "rms_norm_eps": 1e-06,
 "rope_scaling": null, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001, "sliding_window": null,
 "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.51.0", "use_cache": true,
 "use_sliding_window": false, "vocab_size": 151936}`

func TestMixtral(t *testing.T) {
	c, err := Parse([]byte(mixtral8x7B), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	want := &MoE{Experts: 8, TopK: 2, ExpertSize: 14336, NormTopK: true, Block: "block_sparse_moe", Gate: "w1", Up: "w3", Down: "w2"}
	if !reflect.DeepEqual(c.MoE, want) {
		t.Errorf("MoE %+v, want %+v", c.MoE, want)
	}
	// 46,702,792,704: Mixtral-8x7B's parameter count as its model card
	// and safetensors index give it (46.7B), summed by hand: embeddings
	// and head 2 × 32000 × 4096; a layer's attention 41,943,040, norms
	// 8,192, router 8 × 4096, experts 8 × 3 × 4096 × 14336; the final norm.
	if got := c.NumParameters(); got != 46_702_792_704 {
		t.Errorf("NumParameters %d, want 46702792704", got)
	}
	if c.HeadDim != 128 || c.SlidingWindow != 0 || c.RMSNormEps != 1e-5 || c.QKNorm() || c.LinearBias("self_attn.q_proj") {
		t.Errorf("head_dim %d, window %d, eps %g, qk norm %v, q bias %v", c.HeadDim, c.SlidingWindow, c.RMSNormEps, c.QKNorm(), c.LinearBias("self_attn.q_proj"))
	}
	for li := range c.NumHiddenLayers {
		if !c.Sparse(li) {
			t.Fatalf("layer %d dense", li)
		}
	}
	if got := c.MoE.RouterName(3); got != "model.layers.3.block_sparse_moe.gate.weight" {
		t.Errorf("RouterName %q", got)
	}
	if got := c.MoE.ExpertModules(7); got != [3]string{"block_sparse_moe.experts.7.w1", "block_sparse_moe.experts.7.w3", "block_sparse_moe.experts.7.w2"} {
		t.Errorf("ExpertModules %q", got)
	}
	// MixtralConfig's defaults where the keys are absent.
	c, err = Parse([]byte(`{"model_type": "mixtral", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
		"num_attention_heads": 8, "vocab_size": 100}`), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	if c.MoE.Experts != 8 || c.MoE.TopK != 2 || c.MoE.ExpertSize != 96 || c.NumKeyValueHeads != 8 || c.RopeTheta != 1e6 || c.RMSNormEps != 1e-5 ||
		c.MaxPositionEmbeddings != 131072 || c.SlidingWindow != 0 {
		t.Errorf("defaults: %+v kv %d theta %g eps %g max pos %d window %d", c.MoE, c.NumKeyValueHeads, c.RopeTheta, c.RMSNormEps, c.MaxPositionEmbeddings, c.SlidingWindow)
	}
}

func TestQwen3MoE(t *testing.T) {
	c, err := Parse([]byte(qwen3A3B), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	want := &MoE{Experts: 128, TopK: 8, ExpertSize: 768, NormTopK: true, Block: "mlp", Gate: "gate_proj", Up: "up_proj", Down: "down_proj"}
	if !reflect.DeepEqual(c.MoE, want) {
		t.Errorf("MoE %+v, want %+v", c.MoE, want)
	}
	// 30,532,122,624: Qwen3-30B-A3B's count (its model card's 30.5B),
	// by hand: embeddings and head 2 × 151936 × 2048; a layer's attention
	// 18,874,368, q/k norms 256, norms 4,096, router 128 × 2048, experts
	// 128 × 3 × 2048 × 768; the final norm.
	if got := c.NumParameters(); got != 30_532_122_624 {
		t.Errorf("NumParameters %d, want 30532122624", got)
	}
	if !c.QKNorm() || c.HeadDim != 128 || c.SlidingWindow != 0 {
		t.Errorf("qk norm %v head_dim %d window %d", c.QKNorm(), c.HeadDim, c.SlidingWindow)
	}
	if got := c.MoE.ExpertModules(0); got != [3]string{"mlp.experts.0.gate_proj", "mlp.experts.0.up_proj", "mlp.experts.0.down_proj"} {
		t.Errorf("ExpertModules %q", got)
	}

	// Qwen3MoeConfig's defaults; dense layers from mlp_only_layers and
	// decoder_sparse_step (Qwen3MoeDecoderLayer: sparse where (i+1) %
	// step == 0 and i is not listed).
	small := `{"model_type": "qwen3_moe", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 6,
		"num_attention_heads": 4, "vocab_size": 100, "decoder_sparse_step": 2, "mlp_only_layers": [5]}`
	c, err = Parse([]byte(small), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	if c.MoE.Experts != 128 || c.MoE.TopK != 8 || c.MoE.ExpertSize != 768 || c.MoE.NormTopK || c.NumKeyValueHeads != 4 || c.HeadDim != 16 {
		t.Errorf("defaults: %+v kv %d head_dim %d", c.MoE, c.NumKeyValueHeads, c.HeadDim)
	}
	var sparse []int
	for li := range c.NumHiddenLayers {
		if c.Sparse(li) {
			sparse = append(sparse, li)
		}
	}
	if !reflect.DeepEqual(sparse, []int{1, 3}) {
		t.Errorf("sparse layers %v, want [1 3]", sparse)
	}
	// Four dense layers of 3·64·96 and two sparse ones of 128 × 64 + 128
	// × 3 × 64 × 768 over the attention, norms and embeddings.
	h, attn := int64(64), int64(64*64*2+2*64*64)
	layers := 6*(attn+2*h+2*16) + 4*3*h*96 + 2*(128*h+128*3*h*768)
	if got, want := c.NumParameters(), 2*100*h+layers+h; got != want {
		t.Errorf("NumParameters %d, want %d", got, want)
	}
}

// qwen15MoE is Qwen1.5-MoE-A2.7B's config.json (its keys as the model
// repository gives them).
const qwen15MoE = `{"architectures": ["Qwen2MoeForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
 "decoder_sparse_step": 1, "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 2048,
 "initializer_range": 0.02, "intermediate_size": 5632, "max_position_embeddings": 32768, "max_window_layers": 21,
 "model_type": "qwen2_moe", "moe_intermediate_size": 1408, "norm_topk_prob": false, "num_attention_heads": 16,
 "num_experts": 60, "num_experts_per_tok": 4, "num_hidden_layers": 24, "num_key_value_heads": 16,
 "output_router_logits": false, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001,
 "shared_expert_intermediate_size": 5632, "sliding_window": 32768, "tie_word_embeddings": false,
 "torch_dtype": "bfloat16", "transformers_version": "4.40.0.dev0", "use_cache": true, "use_sliding_window": false,
 "vocab_size": 151936}`

func TestQwen2MoE(t *testing.T) {
	c, err := Parse([]byte(qwen15MoE), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	want := &MoE{Experts: 60, TopK: 4, ExpertSize: 1408, SharedSize: 5632, Block: "mlp", Gate: "gate_proj", Up: "up_proj", Down: "down_proj"}
	if !reflect.DeepEqual(c.MoE, want) {
		t.Errorf("MoE %+v, want %+v", c.MoE, want)
	}
	// 14,315,784,192: Qwen1.5-MoE-A2.7B's count (its model card's
	// 14.3B), by hand: embeddings and head 2 × 151936 × 2048; a layer's
	// attention 4 × 2048², q/k/v biases 3 × 2048, norms 2 × 2048, router
	// 60 × 2048, experts 60 × 3 × 2048 × 1408, shared expert 3 × 2048 ×
	// 5632 and its gate 2048; the final norm.
	if got := c.NumParameters(); got != 14_315_784_192 {
		t.Errorf("NumParameters %d, want 14315784192", got)
	}
	// The copy scripts/gpu.sh's synthbench takes as the shape to decode.
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "configs", "qwen1.5-moe-a2.7b", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if c2, err := Parse(raw, "config.json"); err != nil || !reflect.DeepEqual(c2.MoE, c.MoE) || c2.NumParameters() != c.NumParameters() {
		t.Errorf("testdata/configs/qwen1.5-moe-a2.7b: %v, experts %+v, want the config above's", err, c2)
	}
	if c.QKNorm() || c.HeadDim != 128 || c.SlidingWindow != 0 || c.RopeTheta != 1e6 {
		t.Errorf("qk norm %v head_dim %d window %d theta %g", c.QKNorm(), c.HeadDim, c.SlidingWindow, c.RopeTheta)
	}
	for m, want := range map[string]bool{"self_attn.q_proj": true, "self_attn.k_proj": true, "self_attn.v_proj": true, "self_attn.o_proj": false, "mlp.shared_expert.gate_proj": false} {
		if got := c.LinearBias(m); got != want {
			t.Errorf("LinearBias(%s) %v, want %v", m, got, want)
		}
	}
	if got := c.MoE.SharedModules(); got != [3]string{"mlp.shared_expert.gate_proj", "mlp.shared_expert.up_proj", "mlp.shared_expert.down_proj"} {
		t.Errorf("SharedModules %q", got)
	}
	if got := c.MoE.SharedGateName(5); got != "model.layers.5.mlp.shared_expert_gate.weight" {
		t.Errorf("SharedGateName %q", got)
	}
	// Qwen2MoeConfig's defaults where the keys are absent; qkv_bias false
	// drops the biases (transformers 5.x's key).
	c, err = Parse([]byte(`{"model_type": "qwen2_moe", "hidden_size": 256, "intermediate_size": 96, "num_hidden_layers": 2,
		"num_attention_heads": 16, "vocab_size": 100, "qkv_bias": false}`), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	if m := c.MoE; m.Experts != 60 || m.TopK != 4 || m.ExpertSize != 1408 || m.SharedSize != 5632 || m.NormTopK || c.NumKeyValueHeads != 16 || c.MaxPositionEmbeddings != 32768 {
		t.Errorf("defaults: %+v kv %d max positions %d", m, c.NumKeyValueHeads, c.MaxPositionEmbeddings)
	}
	if c.LinearBias("self_attn.q_proj") {
		t.Error("qkv_bias false: q_proj has a bias")
	}
	for _, tc := range []struct{ edit, want string }{
		{`"shared_expert_intermediate_size": 0`, "shared_expert_intermediate_size: got 0"},
		{`"use_sliding_window": true`, "Qwen2-MoE"},
		{`"layer_types": ["full_attention", "sliding_attention"]`, "layer_types[1]"},
	} {
		// (A config valid but for the key under test: 16 heads over the
		// default 16 KV heads.)
		_, err := Parse([]byte(`{"model_type": "qwen2_moe", "hidden_size": 256, "intermediate_size": 96, "num_hidden_layers": 2,
		"num_attention_heads": 16, "vocab_size": 100, `+tc.edit+`}`), "config.json")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "config.json") {
			t.Errorf("%s: %v, want an error naming config.json and %q", tc.edit, err, tc.want)
		}
	}
}

func TestMoEErrors(t *testing.T) {
	base := `"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 4, "num_attention_heads": 4, "vocab_size": 100`
	for _, tc := range []struct {
		doc, want string
	}{
		{`{"model_type": "mixtral", ` + base + `, "num_local_experts": 0}`, "num_local_experts: got 0"},
		{`{"model_type": "mixtral", ` + base + `, "num_experts_per_tok": 9}`, "num_experts_per_tok: got 9, want 1 to num_local_experts (8)"},
		{`{"model_type": "qwen3_moe", ` + base + `, "moe_intermediate_size": -1}`, "moe_intermediate_size: got -1"},
		{`{"model_type": "qwen3_moe", ` + base + `, "decoder_sparse_step": 0}`, "decoder_sparse_step: got 0"},
		{`{"model_type": "qwen3_moe", ` + base + `, "mlp_only_layers": [4]}`, "mlp_only_layers: layer 4 of num_hidden_layers 4"},
		{`{"model_type": "qwen3_moe", ` + base + `, "mlp_only_layers": "1"}`, "mlp_only_layers: got string, want a list of integers"},
		{`{"model_type": "qwen3_moe", ` + base + `, "use_sliding_window": true}`, "Qwen3-MoE"},
	} {
		_, err := Parse([]byte(tc.doc), "config.json")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "config.json") {
			t.Errorf("%s: got %v, want an error naming config.json and %q", tc.doc, err, tc.want)
		}
	}
}

// olmoe1B7B is OLMoE-1B-7B-0924's config.json (its keys as the model
// repository gives them).
const olmoe1B7B = `{"architectures": ["OlmoeForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
 "clip_qkv": null, "eos_token_id": 50279, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
 "intermediate_size": 1024, "max_position_embeddings": 4096, "model_type": "olmoe", "norm_topk_prob": false,
 "num_attention_heads": 16, "num_experts": 64, "num_experts_per_tok": 8, "num_hidden_layers": 16,
 "num_key_value_heads": 16, "output_router_logits": false, "pad_token_id": 1, "rms_norm_eps": 1e-05,
 "rope_scaling": null, "rope_theta": 10000.0, "router_aux_loss_coef": 0.01, "tie_word_embeddings": false,
 "torch_dtype": "bfloat16", "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 50304}`

func TestOlmoe(t *testing.T) {
	c, err := Parse([]byte(olmoe1B7B), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	want := &MoE{Experts: 64, TopK: 8, ExpertSize: 1024, Block: "mlp", Gate: "gate_proj", Up: "up_proj", Down: "down_proj"}
	if !reflect.DeepEqual(c.MoE, want) {
		t.Errorf("MoE %+v, want %+v", c.MoE, want)
	}
	// 6,919,161,856: OLMoE-1B-7B's count (its card's 6.92B), by hand:
	// embeddings and head 2 × 50304 × 2048; a layer's attention 4 ×
	// 2048², q/k norms 2 × 2048 (over the whole projections), norms 2 ×
	// 2048, router 64 × 2048, experts 64 × 3 × 2048 × 1024; the final norm.
	if got := c.NumParameters(); got != 6_919_161_856 {
		t.Errorf("NumParameters %d, want 6919161856", got)
	}
	if q, k := c.QKNormWidths(); !c.QKNorm() || !c.FullQKNorm() || q != 2048 || k != 2048 || c.HeadDim != 128 || c.SlidingWindow != 0 || c.RMSNormEps != 1e-5 || !c.PreNorms() {
		t.Errorf("qk norm %v (full %v, %d/%d) head_dim %d window %d eps %g pre-norms %v", c.QKNorm(), c.FullQKNorm(), q, k, c.HeadDim, c.SlidingWindow, c.RMSNormEps, c.PreNorms())
	}
	for li := range c.NumHiddenLayers {
		if !c.Sparse(li) {
			t.Fatalf("layer %d dense", li)
		}
	}
	// OlmoeConfig's defaults where the keys are absent; a clip_qkv is
	// refused (not implemented).
	c, err = Parse([]byte(`{"model_type": "olmoe", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
		"num_attention_heads": 4, "vocab_size": 100}`), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	if m := c.MoE; m.Experts != 64 || m.TopK != 8 || m.ExpertSize != 96 || m.NormTopK || c.NumKeyValueHeads != 4 || c.MaxPositionEmbeddings != 4096 || c.RopeTheta != 10000 {
		t.Errorf("defaults: %+v kv %d max positions %d theta %g", m, c.NumKeyValueHeads, c.MaxPositionEmbeddings, c.RopeTheta)
	}
	_, err = Parse([]byte(`{"model_type": "olmoe", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
		"num_attention_heads": 4, "vocab_size": 100, "clip_qkv": 8.0}`), "config.json")
	if err == nil || !strings.Contains(err.Error(), "config.json: clip_qkv: 8") || !errors.Is(err, ErrUnsupported) {
		t.Errorf("clip_qkv 8: %v, want refused naming the file and key", err)
	}
}
