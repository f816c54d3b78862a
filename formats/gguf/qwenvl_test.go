package gguf_test

import (
	"slices"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/weights"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// qwenVLCheckpoint wraps the Qwen2 or Qwen3 checkpoint base as a
// multimodal one of wrapper (qwen2_5_vl or qwen3_vl, transformers 4.52's
// layout: internal/fixtures.Multimodal) and opens it under its text
// model's names.
func qwenVLCheckpoint(t *testing.T, wrapper string, base *checkpoint) *checkpoint {
	t.Helper()
	ck := openCheckpointDir(t, fixtures.Multimodal(t, wrapper, "4.52", base.dir))
	if err := weights.ForText(ck.set, ck.cfg); err != nil {
		t.Fatal(err)
	}
	return ck
}

// TestConvertQwenVL converts the text models of Qwen2.5-VL, Qwen3-VL and
// Qwen3-VL-MoE checkpoints (the last's experts fused) as llama.cpp's
// converter does: general.architecture qwen2vl, qwen3vl and qwen3vlmoe
// with their keys under those names, rope.dimension_sections the config's
// mrope_section padded to four (INT32), qwen3vl's and qwen3vlmoe's
// n_deepstack_layers the vision tower's deepstack count; File.HFConfig
// reads the files back as the qwen2, qwen3 and qwen3_moe text models,
// whose logits on the F32 file's weights are the text checkpoint's bit
// for bit.
func TestConvertQwenVL(t *testing.T) {
	q2 := qwen2Checkpoint(t)
	for _, tc := range []struct {
		wrapper, arch, text string
		base                *checkpoint
		sections            []int32
		extra               map[string]any
	}{
		{"qwen2_5_vl", "qwen2vl", "qwen2", q2, []int32{2, 3, 3, 0}, nil},
		{"qwen3_vl", "qwen3vl", "qwen3", qwen3Checkpoint(t, nil), []int32{4, 6, 6, 0}, map[string]any{"qwen3vl.n_deepstack_layers": uint32(1)}},
		{"qwen3_vl_moe", "qwen3vlmoe", "qwen3_moe", moeCheckpoint(t, "qwen3_moe", map[string]any{"mlp_only_layers": []int{}, "rope_theta": 1e6}), []int32{4, 6, 6, 0},
			map[string]any{"qwen3vlmoe.n_deepstack_layers": uint32(1), "qwen3vlmoe.expert_count": uint32(16)}},
	} {
		t.Run(tc.wrapper, func(t *testing.T) {
			ck := qwenVLCheckpoint(t, tc.wrapper, tc.base)
			c := convertWith(t, ck, gguf.TypeF32, gguf.ConvertOptions{Type: gguf.TypeF32})
			want := map[string]any{"general.architecture": tc.arch, tc.arch + ".block_count": uint32(tc.base.cfg.NumHiddenLayers), tc.arch + ".rope.freq_base": float32(1e6)}
			for k, v := range tc.extra {
				want[k] = v
			}
			for key, w := range want {
				if kv, ok := c.file.Get(key); !ok || kv != w {
					t.Errorf("%s = %v (%v), want %v", key, kv, ok, w)
				}
			}
			if got, err := gguf.Value[[]int32](c.file, tc.arch+".rope.dimension_sections"); err != nil || !slices.Equal(got, tc.sections) {
				t.Errorf("rope.dimension_sections %v (%v), want %v", got, err, tc.sections)
			}
			if _, ok := c.file.Get(gguf.Arch(tc.base.cfg) + ".block_count"); ok {
				t.Errorf("%s.* keys in a %s file", tc.text, tc.arch)
			}
			hc, err := c.file.HFConfig()
			if err != nil {
				t.Fatal(err)
			}
			if hc.ModelType != tc.text || hc.Multimodal() {
				t.Errorf("HFConfig: model_type %s, multimodal %v: want the %s text model", hc.ModelType, hc.Multimodal(), tc.text)
			}
			prompts := qwen2Prompts(t, ck.tok)
			if tc.wrapper == "qwen3_vl_moe" {
				prompts = [][]int{{1, 415, 2936, 9060, 285, 1142}, {1, 330, 4088, 302, 4843}} // (openchat-tiny's vocabulary)
			}
			m, err := model.FromWeights(tc.base.set, tc.base.cfg, nil, cpu.New(0))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if d := compareAll(nextLogProbs(t, loadRuntime(t, c.file.Weights(hc), hc), prompts), nextLogProbs(t, m, prompts)); !(d.maxAbs == 0) {
				t.Errorf("the runtime on the F32 file vs on the text checkpoint: %v", d)
			}
		})
	}
	if a := gguf.FileArch(q2.cfg); a != "qwen2" {
		t.Errorf("a Qwen2 checkpoint's file architecture %q, want qwen2", a)
	}
}

// TestLlamaCppQwenVL loads the qwen2vl, qwen3vl and qwen3vlmoe files of
// TestConvertQwenVL in llama.cpp (node-llama-cpp), which rotates by
// M-RoPE with a text token's positions (the first three its index, the
// fourth 0), and compares its next-token log-probabilities with our
// runtime's plain RoPE on the same weights (llamaCppMatches' F32, F16 and
// Q8_0 bounds). qwen3vl's interleaving leaves the pairs past 3·section to
// the fourth position (two of Qwen3-VL's 64, the slowest; pairs 12 and 15
// of this fixture's 16, at 3.2e-5 and 2.4e-6 radians a position, well
// under these prompts' tolerance).
func TestLlamaCppQwenVL(t *testing.T) {
	node := llamaCppAvailable(t)
	q2 := qwen2Checkpoint(t)
	for _, tc := range []struct {
		wrapper string
		base    *checkpoint
	}{
		{"qwen2_5_vl", q2},
		{"qwen3_vl", qwen3Checkpoint(t, nil)},
	} {
		t.Run(tc.wrapper, func(t *testing.T) {
			ck := qwenVLCheckpoint(t, tc.wrapper, tc.base)
			llamaCppMatches(t, node, ck, qwen2Prompts(t, ck.tok), nil, "")
		})
	}
	// qwen3vlmoe: its F32 file (the fused experts stacked) against our
	// runtime on the checkpoint (TestLlamaCppMoE covers qwen3moe's
	// quantized experts).
	t.Run("qwen3_vl_moe", func(t *testing.T) {
		ck := qwenVLCheckpoint(t, "qwen3_vl_moe", moeCheckpoint(t, "qwen3_moe", map[string]any{"mlp_only_layers": []int{}}))
		prompts := [][]int{{1, 415, 2936, 9060, 285, 1142}, {1, 330, 4088, 302, 4843}} // (openchat-tiny's vocabulary)
		c := convertWith(t, ck, gguf.TypeF32, gguf.ConvertOptions{Type: gguf.TypeF32})
		resp := runLlamaCpp(t, node, llamaRequest{Models: []llamaModel{{Path: c.path, Context: 64, Logits: prompts}}})
		m := loadRuntime(t, fusedView(t, ck.set, ck.cfg), ck.cfg)
		d := llamaDiff(t, resp.Models[0].LogProbs, nextLogProbs(t, m, prompts), ck.cfg.VocabSize)
		llamaTolerances[gguf.TypeF32].check(t, "llama.cpp's qwen3vlmoe F32 file vs our runtime on the checkpoint", d)
	})
}
