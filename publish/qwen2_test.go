package publish_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/publish"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/verify"
)

// TestQuantizeQwen2 quantizes a random-weight Qwen2 checkpoint (q/k/v
// biases, openchat's tokenizer for the calibration text) on the CPU: the
// GPTQ checkpoint passes the format check, holds each q/k/v bias in fp16
// beside its qweight exactly as the source had it, and runs close to the
// source (KL), while the same checkpoint with its biases zeroed is far
// off: the biases are written and read back.
func TestQuantizeQwen2(t *testing.T) {
	tok := fixture(t, "models/openchat-tiny")
	src := fixtures.Qwen2(t, map[string]any{"hidden_size": 128, "intermediate_size": 256, "vocab_size": 32002},
		synth.Options{DType: "f16", Seed: 2, TokenizerDir: tok})
	out := filepath.Join(t.TempDir(), "q")
	_, err := publish.Quantize(context.Background(), publish.RunOptions{
		ModelDir: src, Out: out, Branches: []publish.Branch{mainBranch},
		Sym: true, TrueSequential: true, Samples: calibration(t, src, 8, 128), SeqLen: 128, Backend: cpu.New(0),
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := verify.CheckFormat(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Checks {
		if !c.OK {
			t.Errorf("format check %q failed: %s", c.Name, c.Detail)
		}
	}
	s, d := fixtures.OpenCheckpoint(t, src)
	q, _ := fixtures.OpenCheckpoint(t, out)
	biases := 0
	for _, n := range q.Names() {
		if !strings.HasSuffix(n, ".bias") {
			continue
		}
		biases++
		got, err := q.Tensor(n)
		if err != nil {
			t.Fatal(err)
		}
		want, err := s.Tensor(n)
		if err != nil {
			t.Fatalf("the checkpoint holds %s, the source does not: %v", n, err)
		}
		if got.DType != safetensors.F16 || !slices.Equal(got.Data, want.Data) {
			t.Errorf("%s: %s %v, want the source's F16 values", n, got.DType, got.Shape)
		}
		if _, err := q.Tensor(strings.TrimSuffix(n, ".bias") + ".qweight"); err != nil {
			t.Errorf("%s beside no qweight: %v", n, err)
		}
	}
	if want := 3 * d.NumHiddenLayers; biases != want {
		t.Errorf("%d biases written, want %d (q/k/v of every layer)", biases, want)
	}

	// Converted: dequantized to f32 (the biases kept, in f32) and to GGUF
	// (attn_{q,k,v}.bias); the dequantized checkpoint runs as the GPTQ one.
	dq := filepath.Join(t.TempDir(), "f32")
	convert(t, publish.ConvertOptions{In: out, Out: dq, Dequantize: true, DType: "f32"})
	dqt := tensors(t, dq)
	path := filepath.Join(t.TempDir(), "q.gguf")
	convert(t, publish.ConvertOptions{In: out, Out: path, GGUF: "f32"})
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := range d.NumHiddenLayers {
		for _, m := range []string{"q", "k", "v"} {
			name := fmt.Sprintf("model.layers.%d.self_attn.%s_proj.bias", i, m)
			src, err := s.Tensor(name)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := src.Float32()
			got, ok := dqt[name]
			if !ok || got.DType != safetensors.F32 {
				t.Fatalf("dequantized checkpoint: %s missing or not F32", name)
			}
			if g, _ := got.Float32(); !slices.Equal(g, want) {
				t.Errorf("dequantized %s differs from the source's", name)
			}
			if g, err := f.Float32(fmt.Sprintf("blk.%d.attn_%s.bias", i, m)); err != nil || !slices.Equal(g, want) {
				t.Errorf("GGUF blk.%d.attn_%s.bias: %v, or differs from the source's %s", i, m, err, name)
			}
		}
	}
	ids := fixtures.WikiIDs(t)[:1024]
	{
		mq, err := model.Load(out, cpu.New(0))
		if err != nil {
			t.Fatal(err)
		}
		md, err := model.Load(dq, cpu.New(0))
		if err != nil {
			t.Fatal(err)
		}
		a, err := mq.Forward(ids[:64], nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := md.Forward(ids[:64], nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		mq.Close()
		md.Close()
		for i := range a {
			if d := a[i] - b[i]; d > 1e-4 || d < -1e-4 {
				t.Fatalf("logit %d: GPTQ %g, dequantized %g", i, a[i], b[i])
			}
		}
	}
	kl := func(dir string) float64 {
		t.Helper()
		base, err := model.Load(src, cpu.New(0))
		if err != nil {
			t.Fatal(err)
		}
		defer base.Close()
		m, err := model.Load(dir, cpu.New(0))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		r, err := verify.KL(context.Background(), m, base, ids, verify.PerplexityOptions{Ctx: 256, MaxWindows: 4})
		if err != nil {
			t.Fatal(err)
		}
		return r.MeanKL
	}
	withBias := kl(out)
	fixtures.RewriteTensors(t, out, func(tn *safetensors.Tensor) bool {
		if strings.HasSuffix(tn.Name, ".bias") {
			clear(tn.Data)
		}
		return true
	})
	without := kl(out)
	t.Logf("mean KL against the source: %.4g; with the biases zeroed %.4g", withBias, without)
	if !(withBias < 0.1 && without > 10*withBias) {
		t.Errorf("mean KL %.4g, with the biases zeroed %.4g: want the first small and far below the second", withBias, without)
	}
}

// TestConvertGGUFLlamaAttentionBias: a llama config's attention_bias with
// biases other than zeros runs in the runtime but has no tensor in the
// llama GGUF file: convert refuses it, naming the first such bias, and a
// dry run refuses it alike, writing nothing.
func TestConvertGGUFLlamaAttentionBias(t *testing.T) {
	tok := fixture(t, "models/openchat-tiny")
	src := fixtures.Qwen2(t, map[string]any{"model_type": "llama", "architectures": []string{"LlamaForCausalLM"}, "attention_bias": true,
		"use_sliding_window": nil, "vocab_size": 32002}, synth.Options{DType: "f32", Seed: 3, TokenizerDir: tok})
	outDir := t.TempDir()
	out := filepath.Join(outDir, "m.gguf")
	const want = `tensor "model.layers.0.self_attn.q_proj.bias": largest |value|`
	_, err := publish.Convert(context.Background(), publish.ConvertOptions{In: src, Out: out, GGUF: "f16"})
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "written without Linear biases") {
		t.Fatalf("err = %v, want the q_proj bias refused", err)
	}
	_, derr := publish.Convert(context.Background(), publish.ConvertOptions{In: src, Out: out, GGUF: "f16", DryRun: true})
	if derr == nil || derr.Error() != err.Error() {
		t.Errorf("dry run: %v, want the conversion's %v", derr, err)
	}
	if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
		t.Errorf("refusal left %v", entries)
	}
}
