package gguf

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"strings"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
)

// HFConfig is the Hugging Face config of a llama-architecture file (the
// architecture Convert writes, and llama.cpp's converter writes for Llama
// and Mistral models): LlamaForCausalLM with the llama.* hyperparameters,
// the tokenizer's special ids, and tied embeddings where the file has no
// output weight. Errors name the file and the key.
func (f *File) HFConfig() (*hfconfig.Config, error) {
	if a, _ := Value[string](f, "general.architecture"); a != "llama" {
		return nil, fmt.Errorf("%s: general.architecture %q: want llama (Llama and Mistral models)", f.path, a)
	}
	u := func(key string, req bool) (uint32, error) {
		v, err := Value[uint32](f, "llama."+key)
		if err != nil && req {
			return 0, fmt.Errorf("%s: llama.%s: %w", f.path, key, err)
		}
		return v, nil
	}
	c := map[string]any{"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama", "torch_dtype": "float16", "hidden_act": "silu"}
	for key, field := range map[string]string{
		"embedding_length": "hidden_size", "feed_forward_length": "intermediate_size", "block_count": "num_hidden_layers",
		"attention.head_count": "num_attention_heads", "context_length": "max_position_embeddings",
	} {
		v, err := u(key, true)
		if err != nil {
			return nil, err
		}
		c[field] = v
	}
	kv, _ := u("attention.head_count_kv", false)
	if kv == 0 {
		kv = c["num_attention_heads"].(uint32)
	}
	c["num_key_value_heads"] = kv
	if hd, _ := u("attention.key_length", false); hd != 0 {
		c["head_dim"] = hd
	}
	eps, err := Value[float32](f, "llama.attention.layer_norm_rms_epsilon")
	if err != nil {
		return nil, fmt.Errorf("%s: llama.attention.layer_norm_rms_epsilon: %w", f.path, err)
	}
	c["rms_norm_eps"] = eps
	c["rope_theta"] = float32(10000)
	if v, err := Value[float32](f, "llama.rope.freq_base"); err == nil {
		c["rope_theta"] = v
	}
	te, ok := f.Tensor("token_embd.weight")
	if !ok || len(te.Shape) != 2 {
		return nil, fmt.Errorf("%s: tensor token_embd.weight: want a 2-D embedding", f.path)
	}
	c["vocab_size"] = te.Shape[0]
	_, hasOutput := f.Tensor("output.weight")
	c["tie_word_embeddings"] = !hasOutput
	for key, field := range map[string]string{"bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id", "padding_token_id": "pad_token_id"} {
		if v, err := Value[uint32](f, "tokenizer.ggml."+key); err == nil {
			c[field] = v
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	return hfconfig.Parse(b, f.path)
}

// ModelWeights serves a llama-architecture file's tensors under their
// Hugging Face names (the names Convert reads them by) as F32: every
// type Decode reads dequantized, q_proj's and k_proj's rows put back in
// Hugging Face's head order (UnpermuteQK). It is what the runtime loads a
// GGUF model from (model.Weights).
type ModelWeights struct {
	f     *File
	names map[string]string // Hugging Face name → GGUF name
	heads map[string]int    // Hugging Face name → heads to unpermute by
}

// Weights returns f's tensors for cfg (HFConfig's) under Hugging Face names.
func (f *File) Weights(cfg *hfconfig.Config) *ModelWeights {
	w := &ModelWeights{f: f, names: map[string]string{}, heads: map[string]int{}}
	for _, s := range tensorSpecs(cfg) {
		w.names[s.source] = s.name
		if s.permuteHeads > 0 {
			w.heads[s.source] = s.permuteHeads
		}
	}
	return w
}

// Tensor implements model.Weights.
func (w *ModelWeights) Tensor(name string) (safetensors.Tensor, error) {
	gname, ok := w.names[name]
	if !ok {
		return safetensors.Tensor{}, fmt.Errorf("%s: no GGUF tensor for %q: %w", w.f.path, name, fs.ErrNotExist)
	}
	ti, ok := w.f.Tensor(gname)
	if !ok {
		return safetensors.Tensor{}, fmt.Errorf("%s: tensor %q (%s): %w", w.f.path, gname, name, fs.ErrNotExist)
	}
	vals, err := w.f.Float32(gname)
	if err != nil {
		return safetensors.Tensor{}, fmt.Errorf("%s: tensor %q: %w", w.f.path, gname, err)
	}
	for i, v := range vals {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return safetensors.Tensor{}, fmt.Errorf("%s: tensor %q (%s): element %d is %g: want finite weights", w.f.path, gname, ti.Type, i, v)
		}
	}
	if h := w.heads[name]; h > 0 {
		out := make([]float32, len(vals))
		if err := UnpermuteQK(out, vals, ti.Shape[0], ti.Shape[1], h); err != nil {
			return safetensors.Tensor{}, fmt.Errorf("%s: tensor %q: %w", w.f.path, gname, err)
		}
		vals = out
	}
	data := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	shape := append([]int(nil), ti.Shape...)
	return safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: name, DType: safetensors.F32, Shape: shape}, Data: data, File: w.f.path}, nil
}

// IsFile reports whether path names a GGUF file by its extension.
func IsFile(path string) bool { return strings.HasSuffix(strings.ToLower(path), ".gguf") }
