package gguf_test

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/half"
)

// TestModelFromGGUF: a file Convert wrote reads back as the model it came
// from: HFConfig gives the checkpoint's hyperparameters and special ids,
// and Weights serves every tensor under its Hugging Face name with q/k's
// rows back in Hugging Face's order (an F16 file of the fp16 checkpoint:
// bit for bit); a file of another architecture is refused, naming it.
func TestModelFromGGUF(t *testing.T) {
	ck := openCheckpoint(t, "models/openchat-tiny")
	c := convert(t, ck, gguf.TypeF16)
	cfg, err := c.file.HFConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := ck.cfg
	if cfg.HiddenSize != want.HiddenSize || cfg.IntermediateSize != want.IntermediateSize || cfg.NumHiddenLayers != want.NumHiddenLayers ||
		cfg.NumAttentionHeads != want.NumAttentionHeads || cfg.NumKeyValueHeads != want.NumKeyValueHeads || cfg.HeadDim != want.HeadDim ||
		cfg.VocabSize != want.VocabSize || cfg.MaxPositionEmbeddings != want.MaxPositionEmbeddings || cfg.RopeTheta != want.RopeTheta ||
		float32(cfg.RMSNormEps) != float32(want.RMSNormEps) || cfg.TieWordEmbeddings != want.TieWordEmbeddings {
		t.Errorf("HFConfig %+v\nwant %+v", cfg, want)
	}
	w := c.file.Weights(cfg)
	for _, name := range []string{"model.embed_tokens.weight", "model.layers.3.self_attn.q_proj.weight", "model.layers.3.self_attn.k_proj.weight",
		"model.layers.5.mlp.down_proj.weight", "model.layers.0.input_layernorm.weight", "model.norm.weight"} {
		got, err := w.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		src, err := ck.set.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		f32, err := src.Float32()
		if err != nil {
			t.Fatal(err)
		}
		// The checkpoint is fp16, so its values survive F16 (and the
		// norms' F32) exactly; compare the fp16 bits.
		a, b := make([]byte, 2*len(f32)), make([]byte, 2*len(f32))
		half.F32ToF16Bytes(a, f32)
		gv, _ := got.Float32()
		half.F32ToF16Bytes(b, gv)
		if !bytes.Equal(a, b) || !slices.Equal(got.Shape, src.Shape) {
			t.Errorf("%s: %v from the GGUF differs from the checkpoint's %v", name, got.Shape, src.Shape)
		}
	}
	if _, err := w.Tensor("model.layers.9.mlp.up_proj.weight"); err == nil {
		t.Error("a layer the model does not have was served")
	}
	other := filepath.Join(t.TempDir(), "gpt2.gguf")
	wr, err := gguf.Create(other, []gguf.KV{{Key: "general.architecture", Value: "gpt2"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wr.Close()
	f, err := gguf.Open(other)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.HFConfig(); err == nil || !strings.Contains(err.Error(), `general.architecture "gpt2"`) {
		t.Errorf("a gpt2 file: %v", err)
	}
}
