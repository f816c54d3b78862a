package gguf_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// moeCheckpoint writes a random-weight Mixtral, Qwen3-MoE, Qwen2-MoE or OLMoE checkpoint
// (fp32) with openchat-tiny's tokenizer and vocabulary; edit's keys are
// set over the fixture's.
func moeCheckpoint(t *testing.T, modelType string, edit map[string]any) *checkpoint {
	t.Helper()
	tok := fixture(t, "models/openchat-tiny")
	e := map[string]any{"vocab_size": 32002, "bos_token_id": 1, "eos_token_id": 32000}
	for k, v := range edit {
		e[k] = v
	}
	o := synth.Options{DType: "f32", Seed: 21, TokenizerDir: tok}
	switch modelType {
	case "mixtral":
		return openCheckpointDir(t, fixtures.Mixtral(t, e, o))
	case "qwen2_moe":
		return openCheckpointDir(t, fixtures.Qwen2MoE(t, e, o))
	case "olmoe":
		return openCheckpointDir(t, fixtures.Olmoe(t, e, o))
	}
	return openCheckpointDir(t, fixtures.Qwen3MoE(t, e, o))
}

// moeSpec is what a converted mixture of experts must hold, written by
// hand from llama.cpp's conventions (not from the converter's tables):
// the metadata gguf-py's writer gives it (TextModel's expert_count and
// expert_used_count, Qwen2MoeModel's expert_feed_forward_length), and
// every tensor's dimensions as llama.cpp's loader creates them (ne[0]
// first: llama_model::load_tensors' create_tensor shapes, the
// ffn_gate_inp router {n_embd, n_expert}, ffn_gate_exps and ffn_up_exps
// {n_embd, n_ff_exp, n_expert}, ffn_down_exps {n_ff_exp, n_embd,
// n_expert}).
type moeSpec struct {
	modelType string
	edit      map[string]any
	meta      map[string]any
	absent    []string
	layers    int
	dims      map[string][]uint64 // a layer's tensors by name after "blk.N."
	experts   int
	// expert names the checkpoint tensor of expert e's Linear kind (gate,
	// up, down) in layer li.
	expert func(li, e int, kind string) string
	router func(li int) string
}

var moeSpecs = []moeSpec{
	{
		modelType: "mixtral",
		// fixtures.MixtralConfig: hidden 64, intermediate 96, 2 layers, 4
		// heads over 2 KV heads (head_dim 16), 8 experts, 2 a token.
		meta: map[string]any{
			"general.architecture": "llama", "llama.block_count": uint32(2), "llama.context_length": uint32(512),
			"llama.embedding_length": uint32(64), "llama.feed_forward_length": uint32(96),
			"llama.attention.head_count": uint32(4), "llama.attention.head_count_kv": uint32(2),
			"llama.rope.dimension_count": uint32(16), "llama.rope.freq_base": float32(1e6),
			"llama.attention.layer_norm_rms_epsilon": float32(1e-5),
			"llama.expert_count":                     uint32(8), "llama.expert_used_count": uint32(2),
		},
		absent: []string{"llama.expert_feed_forward_length", "qwen3moe.expert_count"},
		layers: 2,
		dims: map[string][]uint64{
			"attn_norm.weight": {64}, "attn_q.weight": {64, 64}, "attn_k.weight": {64, 32}, "attn_v.weight": {64, 32},
			"attn_output.weight": {64, 64}, "ffn_norm.weight": {64},
			"ffn_gate_inp.weight": {64, 8}, "ffn_gate_exps.weight": {64, 96, 8}, "ffn_up_exps.weight": {64, 96, 8},
			"ffn_down_exps.weight": {96, 64, 8},
		},
		experts: 8,
		expert: func(li, e int, kind string) string {
			w := map[string]string{"gate": "w1", "up": "w3", "down": "w2"}[kind]
			return "model.layers." + strconv.Itoa(li) + ".block_sparse_moe.experts." + strconv.Itoa(e) + "." + w + ".weight"
		},
		router: func(li int) string { return "model.layers." + strconv.Itoa(li) + ".block_sparse_moe.gate.weight" },
	},
	{
		modelType: "qwen3_moe",
		// fixtures.Qwen3MoEConfig with every layer sparse (llama.cpp's
		// qwen3moe has no dense layers): hidden 64, intermediate 128, 3
		// layers, 4 heads over 2 KV heads of head_dim 32, 16 experts of 48
		// channels, 4 a token.
		edit: map[string]any{"mlp_only_layers": []int{}},
		meta: map[string]any{
			"general.architecture": "qwen3moe", "qwen3moe.block_count": uint32(3), "qwen3moe.context_length": uint32(512),
			"qwen3moe.embedding_length": uint32(64), "qwen3moe.feed_forward_length": uint32(128),
			"qwen3moe.attention.head_count": uint32(4), "qwen3moe.attention.head_count_kv": uint32(2),
			"qwen3moe.attention.key_length": uint32(32), "qwen3moe.attention.value_length": uint32(32),
			"qwen3moe.rope.freq_base": float32(1e6), "qwen3moe.attention.layer_norm_rms_epsilon": float32(1e-6),
			"qwen3moe.expert_count": uint32(16), "qwen3moe.expert_used_count": uint32(4),
			"qwen3moe.expert_feed_forward_length": uint32(48),
		},
		absent: []string{"llama.block_count", "qwen3.block_count"},
		layers: 3,
		dims: map[string][]uint64{
			"attn_norm.weight": {64}, "attn_q.weight": {64, 128}, "attn_k.weight": {64, 64}, "attn_v.weight": {64, 64},
			"attn_q_norm.weight": {32}, "attn_k_norm.weight": {32},
			"attn_output.weight": {128, 64}, "ffn_norm.weight": {64},
			"ffn_gate_inp.weight": {64, 16}, "ffn_gate_exps.weight": {64, 48, 16}, "ffn_up_exps.weight": {64, 48, 16},
			"ffn_down_exps.weight": {48, 64, 16},
		},
		experts: 16,
		expert: func(li, e int, kind string) string {
			return "model.layers." + strconv.Itoa(li) + ".mlp.experts." + strconv.Itoa(e) + "." + kind + "_proj.weight"
		},
		router: func(li int) string { return "model.layers." + strconv.Itoa(li) + ".mlp.gate.weight" },
	},
	{
		modelType: "qwen2_moe",
		// fixtures.Qwen2MoEConfig with every layer sparse (llama.cpp's
		// qwen2moe has no dense layers): hidden 64, intermediate 128, 3
		// layers, 4 heads over 2 KV heads (head_dim 16), q/k/v biases, 12
		// experts of 48 channels, 4 a token, a shared expert of 80 and its
		// gate ({n_embd}, held as [1, hidden]: ne {64, 1}).
		edit: map[string]any{"mlp_only_layers": []int{}},
		meta: map[string]any{
			"general.architecture": "qwen2moe", "qwen2moe.block_count": uint32(3), "qwen2moe.context_length": uint32(512),
			"qwen2moe.embedding_length": uint32(64), "qwen2moe.feed_forward_length": uint32(128),
			"qwen2moe.attention.head_count": uint32(4), "qwen2moe.attention.head_count_kv": uint32(2),
			"qwen2moe.rope.freq_base": float32(1e6), "qwen2moe.attention.layer_norm_rms_epsilon": float32(1e-6),
			"qwen2moe.expert_count": uint32(12), "qwen2moe.expert_used_count": uint32(4),
			"qwen2moe.expert_feed_forward_length": uint32(48), "qwen2moe.expert_shared_feed_forward_length": uint32(80),
		},
		absent: []string{"llama.block_count", "qwen2.block_count", "qwen3moe.expert_count"},
		layers: 3,
		dims: map[string][]uint64{
			"attn_norm.weight": {64}, "attn_q.weight": {64, 64}, "attn_k.weight": {64, 32}, "attn_v.weight": {64, 32},
			"attn_q.bias": {64}, "attn_k.bias": {32}, "attn_v.bias": {32},
			"attn_output.weight": {64, 64}, "ffn_norm.weight": {64},
			"ffn_gate_inp.weight": {64, 12}, "ffn_gate_exps.weight": {64, 48, 12}, "ffn_up_exps.weight": {64, 48, 12},
			"ffn_down_exps.weight":      {48, 64, 12},
			"ffn_gate_inp_shexp.weight": {64, 1}, "ffn_gate_shexp.weight": {64, 80}, "ffn_up_shexp.weight": {64, 80},
			"ffn_down_shexp.weight": {80, 64},
		},
		experts: 12,
		expert: func(li, e int, kind string) string {
			return "model.layers." + strconv.Itoa(li) + ".mlp.experts." + strconv.Itoa(e) + "." + kind + "_proj.weight"
		},
		router: func(li int) string { return "model.layers." + strconv.Itoa(li) + ".mlp.gate.weight" },
	},
	{
		modelType: "olmoe",
		// fixtures.OlmoeConfig with as many KV heads as heads (llama.cpp's
		// olmoe creates attn_k_norm {n_embd}, as OLMoE-1B-7B's): hidden
		// 64, intermediate 48 (each expert's: llama.cpp's olmoe sizes them
		// by feed_forward_length), 2 layers, 4 heads (head_dim 16), q/k
		// norms over the whole projections, 10 experts, 3 a token.
		edit: map[string]any{"num_key_value_heads": 4},
		meta: map[string]any{
			"general.architecture": "olmoe", "olmoe.block_count": uint32(2), "olmoe.context_length": uint32(512),
			"olmoe.embedding_length": uint32(64), "olmoe.feed_forward_length": uint32(48),
			"olmoe.attention.head_count": uint32(4), "olmoe.attention.head_count_kv": uint32(4),
			"olmoe.rope.freq_base": float32(10000), "olmoe.attention.layer_norm_rms_epsilon": float32(1e-5),
			"olmoe.expert_count": uint32(10), "olmoe.expert_used_count": uint32(3),
		},
		absent: []string{"llama.block_count", "olmoe.expert_feed_forward_length", "olmo2.block_count"},
		layers: 2,
		dims: map[string][]uint64{
			"attn_norm.weight": {64}, "attn_q.weight": {64, 64}, "attn_k.weight": {64, 64}, "attn_v.weight": {64, 64},
			"attn_q_norm.weight": {64}, "attn_k_norm.weight": {64},
			"attn_output.weight": {64, 64}, "ffn_norm.weight": {64},
			"ffn_gate_inp.weight": {64, 10}, "ffn_gate_exps.weight": {64, 48, 10}, "ffn_up_exps.weight": {64, 48, 10},
			"ffn_down_exps.weight": {48, 64, 10},
		},
		experts: 10,
		expert: func(li, e int, kind string) string {
			return "model.layers." + strconv.Itoa(li) + ".mlp.experts." + strconv.Itoa(e) + "." + kind + "_proj.weight"
		},
		router: func(li int) string { return "model.layers." + strconv.Itoa(li) + ".mlp.gate.weight" },
	},
}

// moePrompts are token sequences long enough that many experts run.
var moePrompts = [][]int{{1, 450, 4996, 17354, 1701, 29916, 432, 17204, 975, 278, 17366, 11203}, {1, 29871, 13, 31000, 7, 32001}, {1}}

// TestConvertMoE converts small Mixtral and Qwen3-MoE checkpoints to F32
// GGUF files: the metadata and every tensor's name, dimensions and type
// are llama.cpp's (moeSpec), the stacked expert tensors hold expert e's
// weights at [e] (the checkpoint's values bit for bit, the router F32),
// File.HFConfig reads the file back as the mixture of experts it came
// from, and the runtime on File.Weights gives the checkpoint's logits bit
// for bit.
func TestConvertMoE(t *testing.T) {
	for _, spec := range moeSpecs {
		t.Run(spec.modelType, func(t *testing.T) {
			ck := moeCheckpoint(t, spec.modelType, spec.edit)
			c := convertWith(t, ck, gguf.TypeF32, gguf.ConvertOptions{Type: gguf.TypeF32})
			for key, want := range spec.meta {
				if got, ok := c.file.Get(key); !ok || got != want {
					t.Errorf("%s = %v (%v), want %v", key, got, ok, want)
				}
			}
			for _, key := range spec.absent {
				if _, ok := c.file.Get(key); ok {
					t.Errorf("%s in a %s file", key, spec.modelType)
				}
			}
			want := map[string][]uint64{"token_embd.weight": {64, 32002}, "output_norm.weight": {64}, "output.weight": {64, 32002}}
			for li := range spec.layers {
				for n, d := range spec.dims {
					want["blk."+strconv.Itoa(li)+"."+n] = d
				}
			}
			tensors := c.file.Tensors()
			if len(tensors) != len(want) {
				t.Errorf("%d tensors, want %d", len(tensors), len(want))
			}
			for _, ti := range tensors {
				if d, ok := want[ti.Name]; !ok || !slices.Equal(ti.Dims(), d) || ti.Type != gguf.TypeF32 {
					t.Errorf("tensor %s: dims %v %s, want %v F32 (listed %v)", ti.Name, ti.Dims(), ti.Type, d, ok)
				}
			}
			// Expert e's weights are [e] of the stack, row after row; the
			// router is the checkpoint's.
			for li := range spec.layers {
				blk := "blk." + strconv.Itoa(li) + "."
				for _, kind := range []string{"gate", "up", "down"} {
					stack, err := c.file.Float32(blk + "ffn_" + kind + "_exps.weight")
					if err != nil {
						t.Fatal(err)
					}
					per := len(stack) / spec.experts
					for e := range spec.experts {
						src := checkpointF32(t, ck, spec.expert(li, e, kind))
						if !slices.Equal(stack[e*per:(e+1)*per], src) {
							t.Errorf("%sffn_%s_exps.weight[%d] differs from %s", blk, kind, e, spec.expert(li, e, kind))
						}
					}
				}
				router, err := c.file.Float32(blk + "ffn_gate_inp.weight")
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(router, checkpointF32(t, ck, spec.router(li))) {
					t.Errorf("%sffn_gate_inp.weight differs from %s", blk, spec.router(li))
				}
			}
			hc, err := c.file.HFConfig()
			if err != nil {
				t.Fatal(err)
			}
			if hc.ModelType != spec.modelType || hc.MoE == nil || !reflect.DeepEqual(*hc.MoE, *ck.cfg.MoE) || hc.HeadDim != ck.cfg.HeadDim ||
				hc.NumKeyValueHeads != ck.cfg.NumKeyValueHeads || hc.IntermediateSize != ck.cfg.IntermediateSize || hc.QKNorm() != ck.cfg.QKNorm() {
				t.Errorf("HFConfig: %s, experts %+v, head_dim %d, kv heads %d, intermediate %d, q/k norm %v; want the checkpoint's %s %+v",
					hc.ModelType, hc.MoE, hc.HeadDim, hc.NumKeyValueHeads, hc.IntermediateSize, hc.QKNorm(), ck.cfg.ModelType, ck.cfg.MoE)
			}
			got := nextLogProbs(t, loadRuntime(t, c.file.Weights(hc), hc), moePrompts)
			m, err := model.FromWeights(ck.set, ck.cfg, nil, cpu.New(1))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if d := compareAll(got, nextLogProbs(t, m, moePrompts)); !(d.maxAbs == 0) {
				t.Errorf("the runtime on the F32 file vs on the checkpoint: %v, want identical", d)
			}
		})
	}
}

// checkpointF32 reads a checkpoint tensor as float32.
func checkpointF32(t *testing.T, ck *checkpoint, name string) []float32 {
	t.Helper()
	src, err := ck.set.Tensor(name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := src.Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// stackedBlocks is a stacked experts tensor's expected data: the blocks
// enc makes of each expert's kind weight of layer li (named as the
// checkpoint names it), one expert after another.
func stackedBlocks(t *testing.T, spec moeSpec, li int, kind string, enc func(expert string) ([]byte, error)) []byte {
	t.Helper()
	var out []byte
	for e := range spec.experts {
		b, err := enc(spec.expert(li, e, kind))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

// TestConvertMoEQ8_0 converts the Mixtral checkpoint to Q8_0: the stacked
// expert tensors are Q8_0, each expert's rows the blocks Encode gives its
// own [out, in] matrix (ggml quantizes a 3-D tensor row by row), the
// routers F32; read back, the runtime's log-probabilities are within the
// Q8_0 bounds of the dense file of the same vocabulary (TestOpenchatTiny's)
// of the checkpoint's.
func TestConvertMoEQ8_0(t *testing.T) {
	spec := moeSpecs[0]
	ck := moeCheckpoint(t, spec.modelType, spec.edit)
	c := convertWith(t, ck, gguf.TypeQ8_0, gguf.ConvertOptions{Type: gguf.TypeQ8_0})
	if len(c.res.Fallbacks) != 0 {
		t.Errorf("fallbacks %v, want none (rows of 64 and 96)", c.res.Fallbacks)
	}
	for li := range spec.layers {
		blk := "blk." + strconv.Itoa(li) + "."
		if ti, _ := c.file.Tensor(blk + "ffn_gate_inp.weight"); ti.Type != gguf.TypeF32 {
			t.Errorf("%sffn_gate_inp.weight in %s, want F32", blk, ti.Type)
		}
		for _, kind := range []string{"gate", "up", "down"} {
			name := blk + "ffn_" + kind + "_exps.weight"
			ti, _ := c.file.Tensor(name)
			if ti.Type != gguf.TypeQ8_0 {
				t.Errorf("%s in %s, want Q8_0", name, ti.Type)
			}
			data, err := c.file.TensorData(name)
			if err != nil {
				t.Fatal(err)
			}
			want := stackedBlocks(t, spec, li, kind, func(expert string) ([]byte, error) {
				return gguf.Encode(gguf.TypeQ8_0, checkpointF32(t, ck, expert))
			})
			if !bytes.Equal(data, want) {
				t.Errorf("%s: not the experts' Q8_0 blocks one after another", name)
			}
		}
	}
	hc, err := c.file.HFConfig()
	if err != nil {
		t.Fatal(err)
	}
	got := nextLogProbs(t, loadRuntime(t, c.file.Weights(hc), hc), moePrompts)
	m, err := model.FromWeights(ck.set, ck.cfg, nil, cpu.New(1))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	d := compareAll(got, nextLogProbs(t, m, moePrompts))
	t.Logf("Q8_0 file vs the checkpoint: %v", d)
	// Measured: max|Δlogp| 0.14, NMSE 2.6e-4, KL 4.5e-4 (every argmax
	// agrees); bounds TestOpenchatTiny's for Q8_0.
	tolerance{0.5, 7e-4, 1e-3}.check(t, "the runtime on the Q8_0 file vs on the checkpoint", d)
}

// TestConvertMoERefused: a qwen3_moe with dense layers or without
// norm_topk_prob (llama.cpp's qwen3moe has neither), a qwen2_moe with
// dense layers or with norm_topk_prob (its qwen2moe never renormalizes),
// an olmoe with norm_topk_prob (nor does its olmoe), attention biases, a
// tied head or fewer KV heads than heads (its olmoe has none of them), is
// refused before any tensor is read, wrapping ErrUnsupportedModel.
func TestConvertMoERefused(t *testing.T) {
	for _, tc := range []struct {
		name, modelType string
		edit            map[string]any
		opts            gguf.ConvertOptions
		want            []string
	}{
		{"dense layer", "qwen3_moe", nil, gguf.ConvertOptions{Type: gguf.TypeF16}, []string{`model_type "qwen3_moe": layers 2 have a dense MLP`, "qwen3moe architecture"}},
		{"norm_topk_prob", "qwen3_moe", map[string]any{"mlp_only_layers": []int{}, "norm_topk_prob": false}, gguf.ConvertOptions{Type: gguf.TypeF16}, []string{"norm_topk_prob false"}},
		{"qwen2_moe dense layer", "qwen2_moe", nil, gguf.ConvertOptions{Type: gguf.TypeF16}, []string{`model_type "qwen2_moe": layers 1 have a dense MLP`, "qwen2moe architecture"}},
		{"qwen2_moe norm_topk_prob", "qwen2_moe", map[string]any{"mlp_only_layers": []int{}, "norm_topk_prob": true}, gguf.ConvertOptions{Type: gguf.TypeF16}, []string{"norm_topk_prob true", "never renormalizes"}},
		{"olmoe norm_topk_prob", "olmoe", map[string]any{"norm_topk_prob": true}, gguf.ConvertOptions{Type: gguf.TypeF16}, []string{"norm_topk_prob true", "olmoe architecture"}},
		{"olmoe attention_bias", "olmoe", map[string]any{"attention_bias": true, "num_key_value_heads": 4}, gguf.ConvertOptions{Type: gguf.TypeF16}, []string{"attention_bias true", "olmoe"}},
		{"olmoe tied", "olmoe", map[string]any{"tie_word_embeddings": true, "num_key_value_heads": 4}, gguf.ConvertOptions{Type: gguf.TypeF16}, []string{"tie_word_embeddings true", "olmoe"}},
		{"olmoe GQA", "olmoe", nil, gguf.ConvertOptions{Type: gguf.TypeF16}, []string{"num_key_value_heads 2", "as many KV heads as heads (4)"}},
		{"qwen2_moe tied", "qwen2_moe", map[string]any{"mlp_only_layers": []int{}, "tie_word_embeddings": true}, gguf.ConvertOptions{Type: gguf.TypeF16}, []string{"tie_word_embeddings true", "qwen2moe"}},
		{"qwen2_moe head_dim", "qwen2_moe", map[string]any{"mlp_only_layers": []int{}, "head_dim": 32}, gguf.ConvertOptions{Type: gguf.TypeF16}, []string{"head_dim 32", "hidden/heads 16"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := fixtures.MixtralConfig()
			switch tc.modelType {
			case "qwen3_moe":
				doc = fixtures.Qwen3MoEConfig()
			case "qwen2_moe":
				doc = fixtures.Qwen2MoEConfig()
			case "olmoe":
				doc = fixtures.OlmoeConfig()
			}
			for k, v := range tc.edit {
				doc[k] = v
			}
			raw, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := hfconfig.Parse(raw, "m/config.json")
			if err != nil {
				t.Fatal(err)
			}
			err = gguf.Check(cfg, tc.opts)
			if !errors.Is(err, gguf.ErrUnsupportedModel) {
				t.Fatalf("got %v, want ErrUnsupportedModel", err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%q does not name %q", err, want)
				}
			}
		})
	}
}

// TestMoEMixes plans llama-quantize's mixes for mixtures of experts whose
// rows are whole K-quant blocks (hidden 256, 8 layers, 4 heads over 2 KV
// heads): every weight's type is the one llama.cpp's
// llama_tensor_get_type_impl gives, worked out by hand in want (8
// experts: attn_k and attn_v in Q8_0, attn_output in Q5_K for Q4_K_M,
// IQ3_M and Q2_K but Q3_K_L's own Q3_K, IQ3_M's ffn_down in Q4_K in the
// layers use_more_bits picks; 16 experts: the dense rules; the stacked
// tensors by ffn_gate/ffn_up/ffn_down's rules, ffn_down's layer from its
// name even where a --tensor-type pattern takes layer 0's; the routers
// F32).
func TestMoEMixes(t *testing.T) {
	tok, err := tokenizer.Load(fixture(t, "models/openchat-tiny"))
	if err != nil {
		t.Fatal(err)
	}
	more := map[int]bool{0: true, 3: true, 6: true, 7: true} // use_more_bits(i, 8)
	dense := func(modelType string) map[string]any {
		doc := fixtures.MixtralConfig()
		switch modelType {
		case "qwen3_moe":
			doc = fixtures.Qwen3MoEConfig()
			doc["mlp_only_layers"], doc["moe_intermediate_size"], doc["head_dim"] = []int{}, 512, 64
		case "qwen2_moe":
			doc = fixtures.Qwen2MoEConfig()
			doc["mlp_only_layers"], doc["moe_intermediate_size"], doc["shared_expert_intermediate_size"] = []int{}, 512, 768
		}
		doc["hidden_size"], doc["intermediate_size"], doc["num_hidden_layers"], doc["vocab_size"] = 256, 512, 8, 32002
		doc["bos_token_id"], doc["eos_token_id"] = 1, 32000
		return doc
	}
	pick := func(c bool, a, b gguf.TensorType) gguf.TensorType {
		if c {
			return a
		}
		return b
	}
	for _, tc := range []struct {
		name, modelType, mix string
		tensorTypes          []string
		// want gives the type of the weight of kind (the name after
		// "blk.N.", or the whole name outside the layers) in layer li.
		want func(kind string, li int) gguf.TensorType
	}{
		{"Q4_K_M", "mixtral", "Q4_K_M", nil, func(kind string, li int) gguf.TensorType {
			return map[string]gguf.TensorType{"output.weight": gguf.TypeQ6_K, "attn_k.weight": gguf.TypeQ8_0, "attn_v.weight": gguf.TypeQ8_0,
				"attn_output.weight": gguf.TypeQ5_K, "ffn_down_exps.weight": pick(more[li], gguf.TypeQ6_K, gguf.TypeQ4_K)}[kind]
		}},
		{"Q3_K_L", "mixtral", "Q3_K_L", nil, func(kind string, li int) gguf.TensorType {
			return map[string]gguf.TensorType{"output.weight": gguf.TypeQ6_K, "attn_k.weight": gguf.TypeQ8_0, "attn_v.weight": gguf.TypeQ8_0,
				"attn_output.weight": gguf.TypeQ3_K, "ffn_down_exps.weight": gguf.TypeQ5_K}[kind]
		}},
		{"IQ3_M", "mixtral", "IQ3_M", nil, func(kind string, li int) gguf.TensorType {
			return map[string]gguf.TensorType{"output.weight": gguf.TypeQ6_K, "attn_k.weight": gguf.TypeQ8_0, "attn_v.weight": gguf.TypeQ8_0,
				"attn_output.weight": gguf.TypeQ5_K, "ffn_down_exps.weight": pick(li < 1 || more[li], gguf.TypeQ4_K, gguf.TypeIQ3_S)}[kind]
		}},
		{"Q2_K", "mixtral", "Q2_K", nil, func(kind string, li int) gguf.TensorType {
			return map[string]gguf.TensorType{"output.weight": gguf.TypeQ6_K, "attn_k.weight": gguf.TypeQ8_0, "attn_v.weight": gguf.TypeQ8_0,
				"attn_output.weight": gguf.TypeQ5_K, "ffn_down_exps.weight": gguf.TypeQ3_K}[kind]
		}},
		{"Q4_K_M with a pattern", "mixtral", "Q4_K_M", []string{`blk\.0\.ffn_down_exps=q8_0`}, func(kind string, li int) gguf.TensorType {
			if kind == "ffn_down_exps.weight" && li == 0 {
				return gguf.TypeQ8_0
			}
			return map[string]gguf.TensorType{"output.weight": gguf.TypeQ6_K, "attn_k.weight": gguf.TypeQ8_0, "attn_v.weight": gguf.TypeQ8_0,
				"attn_output.weight": gguf.TypeQ5_K, "ffn_down_exps.weight": pick(more[li], gguf.TypeQ6_K, gguf.TypeQ4_K)}[kind]
		}},
		{"Q4_K_M 16 experts", "qwen3_moe", "Q4_K_M", nil, func(kind string, li int) gguf.TensorType {
			return map[string]gguf.TensorType{"output.weight": gguf.TypeQ6_K, "attn_v.weight": pick(more[li], gguf.TypeQ6_K, gguf.TypeQ4_K),
				"ffn_down_exps.weight": pick(more[li], gguf.TypeQ6_K, gguf.TypeQ4_K)}[kind]
		}},
		// Qwen2-MoE: the shared expert's ffn_down_shexp an ffn_down too
		// (its layer from the name, as the experts'), its gate F32.
		{"Q4_K_M shared expert", "qwen2_moe", "Q4_K_M", nil, func(kind string, li int) gguf.TensorType {
			return map[string]gguf.TensorType{"output.weight": gguf.TypeQ6_K, "attn_v.weight": pick(more[li], gguf.TypeQ6_K, gguf.TypeQ4_K),
				"ffn_down_exps.weight": pick(more[li], gguf.TypeQ6_K, gguf.TypeQ4_K), "ffn_down_shexp.weight": pick(more[li], gguf.TypeQ6_K, gguf.TypeQ4_K)}[kind]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := json.Marshal(dense(tc.modelType))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := hfconfig.Parse(raw, "m/config.json")
			if err != nil {
				t.Fatal(err)
			}
			mix, ok := gguf.ParseMix(tc.mix)
			if !ok {
				t.Fatalf("no mix %s", tc.mix)
			}
			opts := gguf.ConvertOptions{Mix: mix}
			for _, v := range tc.tensorTypes {
				o, err := gguf.ParseTensorTypeOverride(v)
				if err != nil {
					t.Fatal(err)
				}
				opts.TensorTypes = append(opts.TensorTypes, o)
			}
			res, err := gguf.Plan(cfg, tok, opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Fallbacks) != 0 {
				t.Errorf("fallbacks %v, want none", res.Fallbacks)
			}
			for _, ct := range res.Tensors {
				kind, li := ct.Name, 0
				if rest, ok := strings.CutPrefix(ct.Name, "blk."); ok {
					num, k, _ := strings.Cut(rest, ".")
					kind, li = k, atoi(t, num)
				}
				want := tc.want(kind, li)
				switch {
				case len(ct.Shape) == 1 || kind == "ffn_gate_inp.weight" || kind == "ffn_gate_inp_shexp.weight":
					want = gguf.TypeF32
				case want == 0:
					want = mix.Base
				}
				if ct.Type != want {
					t.Errorf("%s: %s, want %s", ct.Name, ct.Type, want)
				}
			}
		})
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestMoEFileRefused: a file whose stacked experts disagree with its
// metadata, or with experts in an architecture whose experts the runtime
// does not run, is refused by HFConfig.
func TestMoEFileRefused(t *testing.T) {
	spec := moeSpecs[0]
	ck := moeCheckpoint(t, spec.modelType, spec.edit)
	c := convertWith(t, ck, gguf.TypeF32, gguf.ConvertOptions{Type: gguf.TypeF32})
	for _, tc := range []struct {
		name string
		kv   gguf.KV
		want string
	}{
		{"used count", gguf.KV{Key: "llama.expert_used_count", Value: uint32(9)}, "llama.expert_used_count 9"},
		{"expert count", gguf.KV{Key: "llama.expert_count", Value: uint32(4)}, `tensor "blk.0.ffn_gate_exps.weight": shape [8 96 64], want [4 96 64]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := rewriteKV(t, c, tc.kv)
			f, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.HFConfig(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("HFConfig: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

// rewriteKV writes c's file again with kv set (replacing the key).
func rewriteKV(t *testing.T, c *converted, kv gguf.KV) string {
	t.Helper()
	kvs := c.file.KVs()
	i := slices.IndexFunc(kvs, func(x gguf.KV) bool { return x.Key == kv.Key })
	if i < 0 {
		t.Fatalf("%s not in the file", kv.Key)
	}
	kvs[i] = kv
	path := filepath.Join(t.TempDir(), "edited.gguf")
	w, err := gguf.Create(path, kvs, c.file.Tensors())
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range c.file.Tensors() {
		data, err := c.file.TensorData(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteTensor(ti.Name, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLlamaCppMoE loads the Mixtral, Qwen3-MoE, Qwen2-MoE and OLMoE fixtures' F32, F16,
// Q8_0 and Q4_K_M files in llama.cpp (node-llama-cpp) and compares its
// next-token log-probabilities with our runtime on the same weights (the
// checkpoint for F32, File.Weights for the others; Q4_K_M held to Q4_K's
// bounds, as TestLlamaCppMix holds the dense mixes), as llamaCppMatches
// does for the dense architectures; our runtime with each layer's experts rotated
// (expert e's Linears served as expert e+1's), or without Qwen2-MoE's
// shared expert, must be far from llama.cpp's F32 logits, or the
// comparison could not tell the experts' order or the shared expert.
func TestLlamaCppMoE(t *testing.T) {
	node := llamaCppAvailable(t)
	for _, spec := range moeSpecs {
		t.Run(spec.modelType, func(t *testing.T) {
			ck := moeCheckpoint(t, spec.modelType, spec.edit)
			mix, _ := gguf.ParseMix("Q4_K_M")
			var convs []*converted
			req := llamaRequest{}
			for _, opts := range []gguf.ConvertOptions{{Type: gguf.TypeF32}, {Type: gguf.TypeF16}, {Type: gguf.TypeQ8_0}, {Mix: mix}} {
				typ := opts.Type
				if opts.Mix.Name != "" {
					typ = mix.Base // (the mix's files are held to its base type's bounds)
				}
				c := convertWith(t, ck, typ, opts)
				convs = append(convs, c)
				req.Models = append(req.Models, llamaModel{Path: c.path, Context: 64, Logits: moePrompts})
			}
			resp := runLlamaCpp(t, node, req)
			t.Logf("llama.cpp %s", resp.LlamaCpp)
			for i, c := range convs {
				t.Run(filepath.Base(c.path), func(t *testing.T) {
					w := model.Weights(ck.set)
					if c.typ != gguf.TypeF32 {
						hc, err := c.file.HFConfig()
						if err != nil {
							t.Fatal(err)
						}
						w = c.file.Weights(hc)
					}
					m := loadRuntime(t, w, ck.cfg)
					ours := nextLogProbs(t, m, moePrompts)
					d := llamaDiff(t, resp.Models[i].LogProbs, ours, ck.cfg.VocabSize)
					t.Logf("%s: llama.cpp vs our runtime: %v", filepath.Base(c.path), d)
					if !d.argmax {
						// (as TestLlamaCppMix: a near tie may go either way)
						d.argmax = argmaxNearTie(t, resp.Models[i].LogProbs, ours, llamaTolerances[c.typ].maxAbs)
					}
					tol := llamaTolerances[c.typ]
					if c.typ != gguf.TypeF32 && c.typ != gguf.TypeF16 && (d.nmse > tol.nmse || d.kl > tol.kl) {
						// A quantized file's products (llama.cpp's on 8-bit
						// activations) may send a token whose k-th and
						// (k+1)-th router logits are within 0.01 of each
						// other to the other expert. A prompt beyond the
						// bounds with such a tie is run once more with
						// that token's routing flipped (the (k+1)-th
						// expert's router row nudged to lead by 0.001 there)
						// and passes if either routing meets the bounds.
						var rest [][]*float64
						var restOurs [][]float64
						for j, p := range moePrompts {
							llamaJ := resp.Models[i].LogProbs[j : j+1]
							pd := llamaDiff(t, llamaJ, ours[j:j+1], ck.cfg.VocabSize)
							pd.argmax = d.argmax
							tie := routingTie(t, m, w, ck.cfg, p)
							if pd.nmse <= tol.nmse && pd.kl <= tol.kl || tie.gap >= 0.01 {
								rest, restOurs = append(rest, llamaJ[0]), append(restOurs, ours[j])
								continue
							}
							flipped := nextLogProbs(t, loadRuntime(t, tie.flip(w, ck.cfg), ck.cfg), [][]int{p})
							fd := llamaDiff(t, llamaJ, flipped, ck.cfg.VocabSize)
							fd.argmax = d.argmax
							t.Logf("prompt %d: router logits %.3g apart at layer %d's token %d: %v; that token's routing flipped: %v", j, tie.gap, tie.layer, tie.row, pd, fd)
							tol.check(t, fmt.Sprintf("llama.cpp vs our runtime on %s, prompt %d with its routing tie flipped", filepath.Base(c.path), j), fd)
						}
						if len(rest) == 0 {
							return
						}
						d2 := llamaDiff(t, rest, restOurs, ck.cfg.VocabSize)
						d2.argmax = d.argmax
						d = d2
					}
					tol.check(t, "llama.cpp vs our runtime on "+filepath.Base(c.path), d)
				})
			}
			if ck.cfg.MoE.SharedSize > 0 {
				t.Run("shared expert matters", func(t *testing.T) {
					// (Its down_proj zeroed: the layers add no shared expert.)
					z := zeroedTensors{w: ck.set, suffix: ".shared_expert.down_proj.weight"}
					d := llamaDiff(t, resp.Models[0].LogProbs, nextLogProbs(t, loadRuntime(t, z, ck.cfg), moePrompts), ck.cfg.VocabSize)
					t.Logf("llama.cpp's F32 file vs our runtime without the shared expert: %v", d)
					if tol := llamaTolerances[gguf.TypeF32]; !(d.nmse > 100*tol.nmse) {
						t.Errorf("llama.cpp's F32 logits vs our runtime without the shared expert: %v: the comparison cannot tell them", d)
					}
				})
			}
			t.Run("expert order matters", func(t *testing.T) {
				rot := rotatedExperts{w: ck.set, experts: spec.experts}
				d := llamaDiff(t, resp.Models[0].LogProbs, nextLogProbs(t, loadRuntime(t, rot, ck.cfg), moePrompts), ck.cfg.VocabSize)
				t.Logf("llama.cpp's F32 file vs our runtime with the experts rotated: %v", d)
				if tol := llamaTolerances[gguf.TypeF32]; !(d.nmse > 100*tol.nmse) {
					t.Errorf("llama.cpp's F32 logits vs our runtime with the experts rotated: %v: the comparison cannot tell them", d)
				}
			})
		})
	}
}

// zeroedTensors serves a checkpoint's tensors with those whose names end
// in suffix all zeros.
type zeroedTensors struct {
	w      model.Weights
	suffix string
}

func (z zeroedTensors) Tensor(name string) (safetensors.Tensor, error) {
	t, err := z.w.Tensor(name)
	if err == nil && strings.HasSuffix(name, z.suffix) {
		t.Data = make([]byte, len(t.Data))
	}
	return t, err
}

// routingTieAt is the token of a prompt nearest a routing tie: its layer
// and row, its ffn_norm row x, the experts ranked k-th (in) and (k+1)-th
// (out) and their router logits' gap.
type routingTieAt struct {
	layer, row, in, out int
	gap                 float64
	x                   []float32
}

// routingTie is the token of prompt, over m's sparse layers, whose k-th
// and (k+1)-th largest router logits (w's routers, in float64, of the
// layers' ffn_norm rows as m computes them) are nearest each other: how
// near the prompt's routing is to sending a token to another expert.
func routingTie(t *testing.T, m *model.Model, w model.Weights, cfg *hfconfig.Config, prompt []int) routingTieAt {
	t.Helper()
	H, E, K := cfg.HiddenSize, cfg.MoE.Experts, cfg.MoE.TopK
	best := routingTieAt{gap: math.Inf(1)}
	err := m.Observe(prompt, func(name string, x runtime.Tensor) error {
		rest, ok := strings.CutSuffix(strings.TrimPrefix(name, "model.layers."), ".ffn_norm")
		li, err := strconv.Atoi(rest)
		if !ok || err != nil || !cfg.Sparse(li) {
			return nil
		}
		router, err := tensorF32(w, cfg.MoE.RouterName(li))
		if err != nil {
			return err
		}
		v := make([]float32, x.Len())
		if err := m.Backend().Download(v, x); err != nil {
			return err
		}
		for r := range len(v) / H {
			logits, order := make([]float64, E), make([]int, E)
			for e := range E {
				order[e] = e
				for k := range H {
					logits[e] += float64(router[e*H+k]) * float64(v[r*H+k])
				}
			}
			slices.SortStableFunc(order, func(a, b int) int { return cmpDesc(logits[a], logits[b]) })
			if g := logits[order[K-1]] - logits[order[K]]; g < best.gap {
				best = routingTieAt{layer: li, row: r, in: order[K-1], out: order[K], gap: g, x: slices.Clone(v[r*H : (r+1)*H])}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return best
}

// flip serves w with the tie's (k+1)-th expert's router row moved along x
// so that its logit at the tie's token leads the k-th's by 0.001.
func (tie routingTieAt) flip(w model.Weights, cfg *hfconfig.Config) model.Weights {
	var n2 float64
	for _, v := range tie.x {
		n2 += float64(v) * float64(v)
	}
	return nudgedRow{w: w, name: cfg.MoE.RouterName(tie.layer), row: tie.out, x: tie.x, by: (tie.gap + 1e-3) / n2}
}

// nudgedRow serves w with row row of tensor name plus by·x.
type nudgedRow struct {
	w    model.Weights
	name string
	row  int
	x    []float32
	by   float64
}

func (n nudgedRow) Tensor(name string) (safetensors.Tensor, error) {
	t, err := n.w.Tensor(name)
	if err != nil || name != n.name {
		return t, err
	}
	v, err := t.Float32()
	if err != nil {
		return t, err
	}
	H := len(n.x)
	for k := range H {
		v[n.row*H+k] += float32(n.by * float64(n.x[k]))
	}
	t.DType, t.Data = safetensors.F32, make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(t.Data[4*i:], math.Float32bits(f))
	}
	return t, nil
}

// tensorF32 reads tensor name of w as float32.
func tensorF32(w model.Weights, name string) ([]float32, error) {
	t, err := w.Tensor(name)
	if err != nil {
		return nil, err
	}
	return t.Float32()
}

// cmpDesc orders larger values first.
func cmpDesc(a, b float64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// rotatedExperts serves a checkpoint's tensors with expert e's Linears
// those of expert (e+1) mod experts.
type rotatedExperts struct {
	w       model.Weights
	experts int
}

func (r rotatedExperts) Tensor(name string) (safetensors.Tensor, error) {
	before, rest, ok := strings.Cut(name, ".experts.")
	if !ok {
		return r.w.Tensor(name)
	}
	num, after, _ := strings.Cut(rest, ".")
	e, err := strconv.Atoi(num)
	if err != nil {
		return r.w.Tensor(name)
	}
	t, err := r.w.Tensor(before + ".experts." + strconv.Itoa((e+1)%r.experts) + "." + after)
	t.Name = name
	return t, err
}

// TestMoEKVOverrides: --override-kv of the expert count (under either
// architecture's name) is refused, the stacked tensors being laid out for
// it; one of the experts used a token, as llama.cpp users override it, is
// written and read back as num_experts_per_tok.
func TestMoEKVOverrides(t *testing.T) {
	for _, key := range []string{"llama.expert_count", "qwen3moe.expert_count", "qwen3moe.expert_feed_forward_length", "qwen2moe.expert_shared_feed_forward_length", "olmoe.expert_count", "olmoe.attention.head_count_kv"} {
		err := gguf.CheckKVOverride(gguf.KV{Key: key, Value: uint32(4)})
		if err == nil || !strings.Contains(err.Error(), "cannot be overridden") {
			t.Errorf("%s: %v, want refused", key, err)
		}
	}
	ck := moeCheckpoint(t, "mixtral", nil)
	c := convertWith(t, ck, gguf.TypeF32, gguf.ConvertOptions{Type: gguf.TypeF32, KVOverrides: []gguf.KV{{Key: "llama.expert_used_count", Value: uint32(3)}}})
	hc, err := c.file.HFConfig()
	if err != nil {
		t.Fatal(err)
	}
	if hc.MoE == nil || hc.MoE.TopK != 3 {
		t.Errorf("HFConfig's experts %+v, want 3 a token", hc.MoE)
	}
}

// TestConvertMoEImatrix: the Mixtral checkpoint converted to Q4_0 with an
// importance matrix of one row and count an expert (NewImatrix from each
// expert's sums and tokens; expert 2 reached by none) writes each expert's
// rows weighted by its own row's mean squares (EncodeWeighted of its
// matrix; all ones for expert 2, as llama-quantize loads a row of no
// tokens); expert 0's rows weighted by expert 1's are other blocks. The
// matrix written and read back has the stacks' rows and counts
// (in_sum2 [experts, n], counts [experts, 1]).
func TestConvertMoEImatrix(t *testing.T) {
	spec := moeSpecs[0]
	ck := moeCheckpoint(t, spec.modelType, spec.edit)
	H, I := ck.cfg.HiddenSize, ck.cfg.MoE.ExpertSize
	sums, counts := map[string][]float64{}, map[string]int64{}
	in := map[string]int{"gate": H, "up": H, "down": I}
	for li := range spec.layers {
		for e := range spec.experts {
			for kind, n := range in {
				v := make([]float64, n)
				for j := range v {
					x := float64((j*7+e*13+li*5)%17) / 4
					v[j] = 0.05 + x*x*x
				}
				hf := spec.expert(li, e, kind)
				sums[hf], counts[hf] = v, int64(3+e)
				if e == 2 {
					sums[hf], counts[hf] = make([]float64, n), 0
				}
			}
		}
	}
	m, err := gguf.NewImatrix(ck.cfg, sums, counts, 100, 1, 100, []string{"calib.json"})
	if err != nil {
		t.Fatal(err)
	}
	c := convertWith(t, ck, gguf.TypeQ4_0, gguf.ConvertOptions{Type: gguf.TypeQ4_0, Imatrix: m})
	importance := func(hf string) []float32 {
		qw := make([]float32, len(sums[hf]))
		for j, s := range sums[hf] {
			qw[j] = 1
			if counts[hf] > 0 {
				qw[j] = float32(s) / float32(counts[hf])
			}
		}
		return qw
	}
	for li := range spec.layers {
		for kind, n := range in {
			name := "blk." + strconv.Itoa(li) + ".ffn_" + kind + "_exps.weight"
			if ti, _ := c.file.Tensor(name); ti.Type != gguf.TypeQ4_0 {
				t.Fatalf("%s in %s, want Q4_0", name, ti.Type)
			}
			data, err := c.file.TensorData(name)
			if err != nil {
				t.Fatal(err)
			}
			want := stackedBlocks(t, spec, li, kind, func(expert string) ([]byte, error) {
				return gguf.EncodeWeighted(gguf.TypeQ4_0, checkpointF32(t, ck, expert), n, importance(expert))
			})
			if !bytes.Equal(data, want) {
				t.Errorf("%s: not each expert's rows weighted by its own importance", name)
			}
			other, err := gguf.EncodeWeighted(gguf.TypeQ4_0, checkpointF32(t, ck, spec.expert(li, 0, kind)), n, importance(spec.expert(li, 1, kind)))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(other, want[:len(other)]) {
				t.Errorf("%s: expert 0's rows weighted by expert 1's importance are the same blocks: the test cannot tell", name)
			}
		}
	}
	path := filepath.Join(t.TempDir(), "moe.imatrix.gguf")
	if err := m.Write(path); err != nil {
		t.Fatal(err)
	}
	back, err := gguf.ReadImatrix(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for name, shape := range map[string][]int{"blk.1.ffn_down_exps.weight.in_sum2": {8, I}, "blk.1.ffn_down_exps.weight.counts": {8, 1}} {
		if ti, ok := f.Tensor(name); !ok || !slices.Equal(ti.Shape, shape) {
			t.Errorf("%s: shape %v, want %v", name, ti.Shape, shape)
		}
	}
	for name, e := range m.Entries {
		if b := back.Entries[name]; !slices.Equal(b.Sum2, e.Sum2) || !slices.Equal(b.Counts, e.Counts) || len(e.Counts) != 8 {
			t.Errorf("%s read back: %d sums, counts %v; want %d, %v", name, len(b.Sum2), b.Counts, len(e.Sum2), e.Counts)
		}
	}
}

// TestMoEMixNeedsImatrix: IQ2_XXS, whose weights need an importance
// matrix, is refused for the 8-layer Mixtral of TestMoEMixes without one,
// and planned with one holding a row and a count an expert for each
// stacked tensor: the stacks in IQ2_XXS (TestMixLowIQExperts' rule).
func TestMoEMixNeedsImatrix(t *testing.T) {
	tok, err := tokenizer.Load(fixture(t, "models/openchat-tiny"))
	if err != nil {
		t.Fatal(err)
	}
	doc := fixtures.MixtralConfig()
	doc["hidden_size"], doc["intermediate_size"], doc["num_hidden_layers"], doc["vocab_size"] = 256, 512, 8, 32002
	doc["bos_token_id"], doc["eos_token_id"] = 1, 32000
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := hfconfig.Parse(raw, "m/config.json")
	if err != nil {
		t.Fatal(err)
	}
	mix, _ := gguf.ParseMix("IQ2_XXS")
	if _, err := gguf.Plan(cfg, tok, gguf.ConvertOptions{Mix: mix}); err == nil || !strings.Contains(err.Error(), "needs an importance matrix") {
		t.Fatalf("IQ2_XXS without an importance matrix: %v, want the refusal", err)
	}
	q4, _ := gguf.ParseMix("Q4_K_M")
	plain, err := gguf.Plan(cfg, tok, gguf.ConvertOptions{Mix: q4})
	if err != nil {
		t.Fatal(err)
	}
	m := &gguf.Imatrix{Entries: map[string]gguf.ImatrixEntry{}}
	for _, ct := range plain.Tensors {
		switch {
		case len(ct.Shape) == 3:
			m.Entries[ct.Name] = gguf.ImatrixEntry{Sum2: slices.Repeat([]float32{1}, ct.Shape[0]*ct.Shape[2]), Counts: slices.Repeat([]float32{4}, ct.Shape[0])}
		case len(ct.Shape) == 2 && !strings.HasSuffix(ct.Name, "ffn_gate_inp.weight"):
			m.Entries[ct.Name] = gguf.ImatrixEntry{Sum2: slices.Repeat([]float32{1}, ct.Shape[1]), Count: 4}
		}
	}
	res, err := gguf.Plan(cfg, tok, gguf.ConvertOptions{Mix: mix, Imatrix: m})
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range res.Tensors {
		if strings.HasSuffix(ct.Name, "ffn_gate_exps.weight") && ct.Type != gguf.TypeIQ2_XXS {
			t.Errorf("%s: %s, want IQ2_XXS", ct.Name, ct.Type)
		}
	}
	// More counts than sums, on a dense weight: named, not a panic.
	q := m.Entries["blk.0.attn_q.weight"]
	m.Entries["blk.0.attn_q.weight"] = gguf.ImatrixEntry{Sum2: q.Sum2, Counts: make([]float32, 300)}
	if _, err := gguf.Plan(cfg, tok, gguf.ConvertOptions{Mix: mix, Imatrix: m}); err == nil || !strings.Contains(err.Error(), `"blk.0.attn_q.weight" has 300 counts`) {
		t.Errorf("a dense weight's entry of 300 counts: %v", err)
	}
	m.Entries["blk.0.attn_q.weight"] = q
	// A stack's entry of one row for all experts is another model's.
	e := m.Entries["blk.0.ffn_up_exps.weight"]
	m.Entries["blk.0.ffn_up_exps.weight"] = gguf.ImatrixEntry{Sum2: e.Sum2[:256], Count: 4}
	if _, err := gguf.Plan(cfg, tok, gguf.ConvertOptions{Mix: mix, Imatrix: m}); err == nil || !strings.Contains(err.Error(), `"blk.0.ffn_up_exps.weight" has 256 values and 1 counts, the stacked weight's 8 experts' rows of 256`) {
		t.Errorf("a stack's entry of one row: %v", err)
	}
}

// mustMix is ParseMix's mix of name.
func mustMix(t *testing.T, name string) gguf.Mix {
	t.Helper()
	m, ok := gguf.ParseMix(name)
	if !ok {
		t.Fatalf("no mix %s", name)
	}
	return m
}
