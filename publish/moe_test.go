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
// passes Inspect (and the GPTQ ones CheckFormat). GGUF is refused before
// anything is written, naming the config and the mixture of experts.
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

	for _, dry := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "m.gguf")
		_, err := publish.Convert(context.Background(), publish.ConvertOptions{In: fp, Out: out, GGUF: "q8_0", DryRun: dry})
		if !errors.Is(err, gguf.ErrUnsupportedModel) || !strings.Contains(err.Error(), filepath.Join(fp, "config.json")) || !strings.Contains(err.Error(), "mixture of experts") {
			t.Errorf("GGUF (dry run %v): got %v, want ErrUnsupportedModel naming config.json and the mixture of experts", dry, err)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("GGUF (dry run %v): %s exists after the refusal", dry, out)
		}
	}
}
