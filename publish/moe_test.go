package publish_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/publish"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/verify"
)

// logits runs ids through the model in dir on the CPU backend (fp32).
func logits(t *testing.T, dir string, ids []int) []float32 {
	t.Helper()
	m, err := model.Load(dir, cpu.New(1))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	lg, err := m.Forward(ids, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return lg
}

// ggufLogits runs ids through the GGUF file at path on the CPU backend
// (fp32), as gptqtool's commands load one.
func ggufLogits(t *testing.T, path string, ids []int) []float32 {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := f.HFConfig()
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.FromWeights(f.Weights(cfg), cfg, nil, cpu.New(1))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	lg, err := m.Forward(ids, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return lg
}

// moeGPTQ is the GPTQ recipe of the mixture-of-experts fixtures: 4 bits,
// groups of 32, act order.
func moeGPTQ() *gptq.QuantizeConfig {
	q := gptq.DefaultQuantizeConfig()
	q.GroupSize = 32
	return &q
}

// TestConvertMoE converts small Mixtral checkpoints, which Convert handles
// by tensor name: fp32 to sharded f16 and back to one f32 file (every
// tensor kept, f16 values exact through f32); a GPTQ one (act order) to
// gptq_v2 and back to gptq, byte for byte the source; and dequantized to
// f32, which runs bit for bit as the GPTQ checkpoint does. Each output
// passes Inspect (and the GPTQ ones CheckFormat). GGUF F32 files of an
// fp32 and a GPTQ Mixtral run bit for bit as the fp32 and the dequantized
// checkpoints; a qwen3_moe with a dense layer is refused before anything
// is written.
func TestConvertMoE(t *testing.T) {
	fp := fixtures.Mixtral(t, nil, synth.Options{DType: "f32", Seed: 11})
	q := fixtures.Mixtral(t, nil, synth.Options{Seed: 12, GPTQ: moeGPTQ()})
	tmp := t.TempDir()
	f16, f32, v2, v1, dq := filepath.Join(tmp, "f16"), filepath.Join(tmp, "f32"), filepath.Join(tmp, "v2"), filepath.Join(tmp, "v1"), filepath.Join(tmp, "dq")
	if sum := convert(t, publish.ConvertOptions{In: fp, Out: f16, DType: "f16", MaxShardBytes: 200_000}); len(sum.Files) < 2 {
		t.Errorf("f16: %d files, want shards", len(sum.Files))
	}
	convert(t, publish.ConvertOptions{In: f16, Out: f32, DType: "f32"})
	convert(t, publish.ConvertOptions{In: q, Out: v2, Format: gptq.FormatV2})
	convert(t, publish.ConvertOptions{In: v2, Out: v1, Format: gptq.FormatV1})
	convert(t, publish.ConvertOptions{In: q, Out: dq, Dequantize: true, DType: "f32"})
	src, half, back := tensors(t, fp), tensors(t, f16), tensors(t, f32)
	if len(half) != len(src) || len(back) != len(src) {
		t.Errorf("tensors: source %d, f16 %d, f32 %d", len(src), len(half), len(back))
	}
	for n, h := range half {
		b := back[n]
		hv, _ := h.Float32()
		bv, _ := b.Float32()
		if h.DType != safetensors.F16 || b.DType != safetensors.F32 || !slices.Equal(hv, bv) || !slices.Equal(h.Shape, src[n].Shape) {
			t.Errorf("%s: f16 %s %v, f32 %s %v (source %v), or the values moved", n, h.DType, h.Shape, b.DType, b.Shape, src[n].Shape)
		}
	}
	orig, rt := tensors(t, q), tensors(t, v1)
	if len(rt) != len(orig) {
		t.Errorf("gptq → gptq_v2 → gptq: %d tensors, want %d", len(rt), len(orig))
	}
	for n, o := range orig {
		if r, ok := rt[n]; !ok || r.DType != o.DType || !slices.Equal(r.Shape, o.Shape) || !bytes.Equal(r.Data, o.Data) {
			t.Errorf("gptq → gptq_v2 → gptq: %s differs from the source", n)
		}
	}
	for _, dir := range []string{f16, f32, v2, v1, dq} {
		r, err := verify.Inspect(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Problems) != 0 || r.MoE == nil {
			t.Errorf("%s: Inspect problems %v, experts %+v", dir, r.Problems, r.MoE)
		}
	}
	for _, dir := range []string{v2, v1} {
		r, err := verify.CheckFormat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK {
			t.Errorf("%s: CheckFormat %+v", dir, r.Checks)
		}
	}
	ids := []int{1, 17, 200, 3, 99, 42, 7, 255}
	if got, want := logits(t, dq, ids), logits(t, q, ids); !slices.Equal(got, want) {
		t.Error("the dequantized f32 checkpoint's logits differ from the GPTQ checkpoint's")
	}

	// GGUF: a floating-point and a GPTQ Mixtral (with a tokenizer) to F32
	// files, which run as their checkpoints do, bit for bit (the GPTQ
	// one's experts dequantized, as dq); a dry run plans the same
	// tensors; a qwen3_moe with a dense layer is refused before anything
	// is written.
	tok := fixture(t, "models/openchat-tiny")
	vocab := map[string]any{"vocab_size": 32002, "eos_token_id": 32000}
	fpTok := fixtures.Mixtral(t, vocab, synth.Options{DType: "f32", Seed: 11, TokenizerDir: tok})
	qTok := fixtures.Mixtral(t, vocab, synth.Options{Seed: 12, GPTQ: moeGPTQ(), TokenizerDir: tok})
	dqTok := filepath.Join(tmp, "dq-tok")
	convert(t, publish.ConvertOptions{In: qTok, Out: dqTok, Dequantize: true, DType: "f32"})
	for _, tc := range []struct{ name, in, same string }{{"fp32", fpTok, fpTok}, {"gptq", qTok, dqTok}} {
		out := filepath.Join(tmp, tc.name+".gguf")
		plan := convert(t, publish.ConvertOptions{In: tc.in, Out: out, GGUF: "f32", DryRun: true})
		sum := convert(t, publish.ConvertOptions{In: tc.in, Out: out, GGUF: "f32"})
		if plan.Tensors != sum.Tensors || sum.Tensors != 3+2*10 {
			t.Errorf("%s: %d tensors planned, %d written, want 23 (token_embd, output_norm, output and ten a layer)", tc.name, plan.Tensors, sum.Tensors)
		}
		if got, want := ggufLogits(t, out, ids), logits(t, tc.same, ids); !slices.Equal(got, want) {
			t.Errorf("%s: the F32 GGUF file's logits differ from the checkpoint's", tc.name)
		}
	}
	for _, tc := range []struct {
		name, in, gguf, want string
	}{
		{"dense layer", fixtures.Qwen3MoE(t, nil, synth.Options{DType: "f32", Seed: 13}), "q8_0", "have a dense MLP"},
	} {
		for _, dry := range []bool{false, true} {
			out := filepath.Join(t.TempDir(), "m.gguf")
			_, err := publish.Convert(context.Background(), publish.ConvertOptions{In: tc.in, Out: out, GGUF: tc.gguf, DryRun: dry})
			if !errors.Is(err, gguf.ErrUnsupportedModel) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("GGUF %s (dry run %v): got %v, want ErrUnsupportedModel naming %q", tc.name, dry, err, tc.want)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("GGUF %s (dry run %v): %s exists after the refusal", tc.name, dry, out)
			}
		}
	}
}
