package model

import (
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// TestQwen3MatchesReference runs small random-weight Qwen3 checkpoints
// (per-head q/k norms, head_dim 32 where hidden/heads is 16; with
// attention_bias, q/k/v/o biases too) on the CPU backend, in one forward
// and token by token through the paged decode step, against refForward in
// float64; the same reference without the q/k norms, or with them after
// RoPE, is far off, so the runtime applies them and before RoPE.
func TestQwen3MatchesReference(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit map[string]any
	}{
		{"qwen3", nil},
		{"qwen3-untied", map[string]any{"tie_word_embeddings": false}},
		{"qwen3-attention_bias", map[string]any{"attention_bias": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := fixtures.Qwen3(t, tc.edit, synth.Options{DType: "f32", Seed: 3})
			ref := loadRef(t, dir)
			if ref.cfg.HeadDim != 32 || len(ref.t["model.layers.1.self_attn.k_norm.weight"]) != 32 {
				t.Fatalf("head_dim %d, k_norm of %d: want 32", ref.cfg.HeadDim, len(ref.t["model.layers.1.self_attn.k_norm.weight"]))
			}
			if _, ok := ref.t["model.layers.1.self_attn.o_proj.bias"]; ok != (tc.edit["attention_bias"] == true) {
				t.Fatalf("o_proj bias written %v", ok)
			}
			want := ref.forward(qwen2IDs, false)
			for _, wrong := range []struct {
				name string
				at   qkNormAt
			}{{"without the q/k norms", qkNone}, {"with the q/k norms after RoPE", qkAfterRoPE}} {
				r := *ref
				r.qkNorm = wrong.at
				if d := nmseRows(splitRows(flatten(r.forward(qwen2IDs, false)), ref.cfg.VocabSize), want); !(d > 1e-3) {
					t.Fatalf("the reference %s is within nmse %.3g: the test could not tell", wrong.name, d)
				}
			}
			m := loadModel(t, dir)
			lg, err := m.Forward(qwen2IDs, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := nmseRows(splitRows(lg, m.Vocab()), want); !(d < 1e-10) {
				t.Errorf("forward: logits nmse %.3g against the float64 reference", d)
			}
			got := qwen2AllSteps(t, m)
			if d := nmseRows(got, want); !(d < 1e-10) {
				t.Errorf("paged steps: logits nmse %.3g against the float64 reference", d)
			}
		})
	}
}

// qwen2AllSteps is allSteps of qwen2IDs.
func qwen2AllSteps(t *testing.T, m *Model) [][]float32 { return allSteps(t, m, qwen2IDs) }

// allSteps feeds ids[:4] in one paged step, then one token a step,
// returning every position's logits.
func allSteps(t *testing.T, m *Model, ids []int) [][]float32 {
	t.Helper()
	c, _, steps := pagedPrompts(t, m, [][]int{ids[:4]})
	defer c.Free()
	steps[0].AllLogits = true
	got := make([][]float32, 0, len(ids))
	for i := 4; i <= len(ids); i++ {
		out, err := m.Step(c, steps)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, splitRows(out[0], m.Vocab())...)
		if i < len(ids) {
			steps[0] = StepSeq{Seq: steps[0].Seq, Tokens: ids[i : i+1], Logits: true}
		}
	}
	return got
}

// TestQwen3Refusals: a qwen3 checkpoint must hold its q/k norms, of
// head_dim each; another model type may not have them.
func TestQwen3Refusals(t *testing.T) {
	t.Run("k_norm missing", func(t *testing.T) {
		dir := fixtures.Qwen3(t, nil, synth.Options{DType: "f32", Seed: 1})
		fixtures.RewriteTensors(t, dir, func(tn *safetensors.Tensor) bool { return tn.Name != "model.layers.1.self_attn.k_norm.weight" })
		_, err := Load(dir, cpu.New(1))
		if err == nil || !strings.Contains(err.Error(), "missing (model.layers.1.self_attn.k_norm.weight)") {
			t.Errorf("Load: %v, want the missing k_norm named", err)
		}
	})
	t.Run("q_norm shape", func(t *testing.T) {
		// A q_norm of hidden/heads = 16 values, where head_dim is 32.
		dir := fixtures.Qwen3(t, nil, synth.Options{DType: "f32", Seed: 1})
		fixtures.RewriteTensors(t, dir, func(tn *safetensors.Tensor) bool { return tn.Name != "model.layers.0.self_attn.q_norm.weight" },
			biasTensor("model.layers.0.self_attn.q_norm.weight", 16, 0, 1))
		_, err := Load(dir, cpu.New(1))
		if err == nil || !strings.Contains(err.Error(), "model.layers.0.self_attn.q_norm.weight") {
			t.Errorf("Load: %v, want the q_norm of the wrong shape named", err)
		}
	})
	t.Run("q_norm in qwen2", func(t *testing.T) {
		dir := fixtures.Qwen2(t, nil, synth.Options{DType: "f32", Seed: 1})
		fixtures.RewriteTensors(t, dir, nil, biasTensor("model.layers.0.self_attn.q_norm.weight", 16, 0, 1))
		_, err := Load(dir, cpu.New(1))
		if err == nil || !strings.Contains(err.Error(), "does not explain (model.layers.0.self_attn.q_norm.weight)") {
			t.Errorf("Load: %v, want the q_norm of a qwen2 checkpoint refused", err)
		}
	})
	t.Run("layer_types", func(t *testing.T) {
		dir := fixtures.Qwen3(t, nil, synth.Options{DType: "f32", Seed: 1})
		editConfig(t, dir, `"max_window_layers": 2`, `"layer_types": ["full_attention", "sliding_attention"], "max_window_layers": 2`)
		_, err := Load(dir, cpu.New(1))
		if err == nil || !strings.Contains(err.Error(), `config.json: layer_types[1]: "sliding_attention"`) {
			t.Errorf("Load: %v, want layer_types refused", err)
		}
	})
}
