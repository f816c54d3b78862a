package hfconfig

import "fmt"

// MoE is the sparse mixture-of-experts MLP of a mixtral, qwen2_moe,
// qwen3_moe or olmoe config: in each of its layers (Sparse) a router Linear
// [Experts, hidden_size] scores the experts, each token runs the TopK best
// (a softmax over all the router's logits, then the top k, renormalized to
// sum to 1 where NormTopK), and the layer's MLP output is the weighted sum
// of those experts' SwiGLU MLPs, each of ExpertSize intermediate channels
// (transformers' MixtralSparseMoeBlock and Qwen3MoeSparseMoeBlock); in
// qwen2_moe plus a shared expert every token runs, a SwiGLU MLP of
// SharedSize channels whose output is weighted by the sigmoid of its own
// gate Linear [1, hidden_size] (Qwen2MoeSparseMoeBlock).
type MoE struct {
	// Experts is num_local_experts (mixtral) or num_experts (qwen3_moe);
	// TopK is num_experts_per_tok.
	Experts, TopK int
	// ExpertSize is an expert's intermediate size: intermediate_size
	// (mixtral), moe_intermediate_size (qwen3_moe, whose intermediate_size
	// is its dense layers').
	ExpertSize int
	// NormTopK says the k chosen weights are divided by their sum: always
	// in mixtral (MixtralTopKRouter), norm_topk_prob in qwen3_moe.
	NormTopK bool
	// Block is the MoE module's name under model.layers.<i>
	// ("block_sparse_moe" in mixtral, "mlp" in qwen3_moe); the router is
	// Block.gate and expert e's Linears Block.experts.<e>.<Gate|Up|Down>.
	Block string
	// Gate, Up and Down name an expert's Linears: w1, w3, w2 (mixtral) or
	// gate_proj, up_proj, down_proj (qwen3_moe).
	Gate, Up, Down string
	// SharedSize is qwen2_moe's shared_expert_intermediate_size, the
	// shared expert's intermediate channels; 0 where there is none.
	SharedSize int
	// Dense lists, by layer, the layers whose MLP is a dense one of
	// intermediate_size (qwen3_moe's mlp_only_layers, and the layers
	// decoder_sparse_step skips); nil where every layer is sparse.
	Dense []bool
}

// Sparse reports whether decoder layer li's MLP is the mixture of experts
// (false for a model without one).
func (c *Config) Sparse(li int) bool {
	if c.MoE == nil {
		return false
	}
	return c.MoE.Dense == nil || !c.MoE.Dense[li]
}

// RouterName is the router's weight [Experts, hidden_size] of MoE layer li
// (model.layers.<li>.<Block>.gate.weight).
func (m *MoE) RouterName(li int) string {
	return fmt.Sprintf("model.layers.%d.%s.gate.weight", li, m.Block)
}

// ExpertModules are expert e's Linear modules under model.layers.<i>, in
// execution order: gate, up, down.
func (m *MoE) ExpertModules(e int) [3]string {
	p := fmt.Sprintf("%s.experts.%d.", m.Block, e)
	return [3]string{p + m.Gate, p + m.Up, p + m.Down}
}

// SharedModules are the shared expert's Linear modules under
// model.layers.<i> (Block.shared_expert.gate_proj, up_proj, down_proj), in
// execution order; meaningful only where SharedSize > 0.
func (m *MoE) SharedModules() [3]string {
	p := m.Block + ".shared_expert."
	return [3]string{p + "gate_proj", p + "up_proj", p + "down_proj"}
}

// SharedGateName is the shared expert's gate weight [1, hidden_size] of MoE
// layer li (model.layers.<li>.<Block>.shared_expert_gate.weight), kept in
// floating point as the router is.
func (m *MoE) SharedGateName(li int) string {
	return fmt.Sprintf("model.layers.%d.%s.shared_expert_gate.weight", li, m.Block)
}

// moe reads the MoE keys of a mixtral, qwen2_moe, qwen3_moe or olmoe
// config into c.MoE.
func (r *reader) moe(c *Config) {
	if r.err != nil {
		return
	}
	m := &MoE{}
	switch c.ModelType {
	case "mixtral":
		// MixtralConfig: num_local_experts 8, num_experts_per_tok 2; the
		// experts are intermediate_size wide; MixtralTopKRouter always
		// renormalizes.
		m.Experts = r.optionalInt("num_local_experts", 8)
		m.TopK = r.optionalInt("num_experts_per_tok", 2)
		m.ExpertSize = c.IntermediateSize
		m.NormTopK = true
		m.Block, m.Gate, m.Up, m.Down = "block_sparse_moe", "w1", "w3", "w2"
	case "olmoe":
		// OlmoeConfig: num_experts 64, num_experts_per_tok 8, each
		// expert intermediate_size wide, norm_topk_prob false; every
		// layer sparse (OlmoeDecoderLayer). clip_qkv (q/k/v clamped
		// after the projections) is not implemented.
		if v, ok := r.m["clip_qkv"]; ok && v != nil {
			r.fail("clip_qkv: %v: %w (q/k/v clamping is not implemented; released OLMoE models set it null)", v, ErrUnsupported)
			return
		}
		m.Experts = r.optionalInt("num_experts", 64)
		m.TopK = r.optionalInt("num_experts_per_tok", 8)
		m.ExpertSize = c.IntermediateSize
		m.NormTopK = r.optionalBool("norm_topk_prob", false)
		m.Block, m.Gate, m.Up, m.Down = "mlp", "gate_proj", "up_proj", "down_proj"
	case "qwen3_moe", "qwen2_moe":
		// Qwen3MoeConfig: num_experts 128, num_experts_per_tok 8,
		// moe_intermediate_size 768, norm_topk_prob false,
		// decoder_sparse_step 1, mlp_only_layers []. Qwen2MoeConfig: the
		// same keys with num_experts 60, num_experts_per_tok 4,
		// moe_intermediate_size 1408, and shared_expert_intermediate_size
		// 5632.
		experts, topK, size := 128, 8, 768
		if c.ModelType == "qwen2_moe" {
			experts, topK, size = 60, 4, 1408
			m.SharedSize = r.optionalInt("shared_expert_intermediate_size", 5632)
		}
		m.Experts = r.optionalInt("num_experts", experts)
		m.TopK = r.optionalInt("num_experts_per_tok", topK)
		m.ExpertSize = r.optionalInt("moe_intermediate_size", size)
		m.NormTopK = r.optionalBool("norm_topk_prob", false)
		m.Block, m.Gate, m.Up, m.Down = "mlp", "gate_proj", "up_proj", "down_proj"
		step := r.optionalInt("decoder_sparse_step", 1)
		only := r.intList("mlp_only_layers")
		if r.err != nil {
			return
		}
		if step <= 0 {
			r.fail("decoder_sparse_step: got %d, want a positive integer", step)
			return
		}
		dense := make([]bool, c.NumHiddenLayers)
		some := false
		for _, li := range only {
			if li < 0 || li >= c.NumHiddenLayers {
				r.fail("mlp_only_layers: layer %d of num_hidden_layers %d", li, c.NumHiddenLayers)
				return
			}
			dense[li], some = true, true
		}
		// Qwen3MoeDecoderLayer, Qwen2MoeDecoderLayer: sparse where the layer is not in
		// mlp_only_layers, num_experts > 0 and (i + 1) % step == 0.
		for li := range dense {
			if (li+1)%step != 0 {
				dense[li], some = true, true
			}
		}
		if some {
			m.Dense = dense
		}
	default:
		return
	}
	if r.err != nil {
		return
	}
	switch {
	case m.Experts <= 0:
		r.fail("%s: got %d, want a positive number of experts", expertsKey(c.ModelType), m.Experts)
	case m.TopK <= 0 || m.TopK > m.Experts:
		r.fail("num_experts_per_tok: got %d, want 1 to %s (%d)", m.TopK, expertsKey(c.ModelType), m.Experts)
	case m.ExpertSize <= 0:
		r.fail("moe_intermediate_size: got %d, want a positive integer", m.ExpertSize)
	case c.ModelType == "qwen2_moe" && m.SharedSize <= 0:
		r.fail("shared_expert_intermediate_size: got %d, want a positive integer", m.SharedSize)
	}
	if r.err != nil {
		return
	}
	c.MoE = m
}

// expertsKey is the config key that counts a model type's experts.
func expertsKey(modelType string) string {
	if modelType == "mixtral" {
		return "num_local_experts"
	}
	return "num_experts"
}

// intList reads an optional list of integers (null or absent: none).
func (r *reader) intList(key string) []int {
	v, ok := r.m[key]
	if r.err != nil || !ok || v == nil {
		return nil
	}
	list, isList := v.([]any)
	if !isList {
		r.fail("%s: got %s, want a list of integers", key, jsonKind(v))
		return nil
	}
	out := make([]int, len(list))
	for i, e := range list {
		n, err := toInt(e)
		if err != nil {
			r.fail("%s[%d]: %v", key, i, err)
			return nil
		}
		out[i] = n
	}
	return out
}

// moeParameters is the parameter count of the MLPs of a config with MoE,
// over every layer: each sparse layer's router and experts (and shared
// expert with its gate), each dense layer's MLP of intermediate_size.
func (c *Config) moeParameters() int64 {
	h := int64(c.HiddenSize)
	var n int64
	for li := range c.NumHiddenLayers {
		if c.Sparse(li) {
			n += int64(c.MoE.Experts)*h + int64(c.MoE.Experts)*3*h*int64(c.MoE.ExpertSize)
			if s := int64(c.MoE.SharedSize); s > 0 {
				n += 3*h*s + h
			}
		} else {
			n += 3 * h * int64(c.IntermediateSize)
		}
	}
	return n
}
