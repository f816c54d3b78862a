package publish_test

import (
	"context"
	"encoding/binary"
	"fmt"
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

// TestQuantizeQwen3 quantizes a random-weight Qwen3 checkpoint (per-head
// q/k norms, head_dim 64 where hidden/heads is 32) at 8 bits on the CPU: the GPTQ checkpoint passes the format check,
// keeps q_norm and k_norm unquantized in fp16 exactly as the source had
// them, and runs close to the source (KL), while the same checkpoint with
// the norms' weights set to ones is far off. Converted, the dequantized
// checkpoint and the GGUF file keep them, and a dtype conversion of the
// source too.
func TestQuantizeQwen3(t *testing.T) {
	tok := fixture(t, "models/openchat-tiny")
	src := fixtures.Qwen3(t, map[string]any{"hidden_size": 128, "intermediate_size": 256, "vocab_size": 32002, "head_dim": 64},
		synth.Options{DType: "f16", Seed: 2, TokenizerDir: tok})
	out := filepath.Join(t.TempDir(), "q")
	_, err := publish.Quantize(context.Background(), publish.RunOptions{
		// 8 bits: at 4 this random model's attention (q and k normalized
		// per head, so no longer near uniform) gives a mean KL of 0.28,
		// against 0.001 at 8, where the unit norms' 0.46 stands apart.
		ModelDir: src, Out: out, Branches: []publish.Branch{{Name: "main", Bits: 8, GroupSize: 128, DescAct: true, Damp: 0.1}},
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
	norms := 0
	for _, n := range q.Names() {
		if strings.Contains(n, "self_attn.") && strings.HasSuffix(n, "_norm.weight") {
			norms++
			got, _ := q.Tensor(n)
			want, err := s.Tensor(n)
			if err != nil {
				t.Fatal(err)
			}
			if got.DType != safetensors.F16 || !slices.Equal(got.Shape, []int{64}) || !slices.Equal(got.Data, want.Data) {
				t.Errorf("%s: %s %v, want the source's F16 [64] values", n, got.DType, got.Shape)
			}
		}
		if strings.Contains(n, "_norm.") && !strings.HasSuffix(n, "_norm.weight") {
			t.Errorf("%s: a norm quantized", n)
		}
	}
	if want := 2 * d.NumHiddenLayers; norms != want {
		t.Errorf("%d q/k norms written, want %d", norms, want)
	}

	// Converted: dequantized to f32 and to GGUF, the norms kept; the
	// source converted to bf16 keeps them too.
	dq := filepath.Join(t.TempDir(), "f32")
	convert(t, publish.ConvertOptions{In: out, Out: dq, Dequantize: true, DType: "f32"})
	dqt := tensors(t, dq)
	bf := filepath.Join(t.TempDir(), "bf16")
	convert(t, publish.ConvertOptions{In: src, Out: bf, DType: "bf16"})
	bft := tensors(t, bf)
	path := filepath.Join(t.TempDir(), "q.gguf")
	convert(t, publish.ConvertOptions{In: out, Out: path, GGUF: "f32"})
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if a, _ := gguf.Value[string](f, "general.architecture"); a != "qwen3" {
		t.Errorf("GGUF general.architecture %q, want qwen3", a)
	}
	for i := range d.NumHiddenLayers {
		for _, m := range []string{"q", "k"} {
			name := fmt.Sprintf("model.layers.%d.self_attn.%s_norm.weight", i, m)
			st, _ := s.Tensor(name)
			want, _ := st.Float32()
			if got, ok := dqt[name]; !ok || got.DType != safetensors.F32 {
				t.Fatalf("dequantized checkpoint: %s missing or not F32", name)
			} else if g, _ := got.Float32(); !slices.Equal(g, want) {
				t.Errorf("dequantized %s differs from the source's", name)
			}
			if got, ok := bft[name]; !ok || got.DType != safetensors.BF16 {
				t.Errorf("bf16 conversion: %s missing or not BF16", name)
			}
			if g, err := f.Float32(fmt.Sprintf("blk.%d.attn_%s_norm.weight", i, m)); err != nil || !slices.Equal(g, want) {
				t.Errorf("GGUF blk.%d.attn_%s_norm.weight: %v, or differs from the source's %s", i, m, err, name)
			}
		}
	}
	ids := fixtures.WikiIDs(t)[:1024]
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
	withNorms := kl(out)
	fixtures.RewriteTensors(t, out, func(tn *safetensors.Tensor) bool {
		if strings.Contains(tn.Name, "self_attn.") && strings.HasSuffix(tn.Name, "_norm.weight") {
			for i := 0; i < len(tn.Data); i += 2 {
				binary.LittleEndian.PutUint16(tn.Data[i:], 0x3c00) // fp16 1
			}
		}
		return true
	})
	without := kl(out)
	t.Logf("mean KL against the source: %.4g; with unit q/k norms %.4g", withNorms, without)
	if !(withNorms < 0.01 && without > 10*withNorms) {
		t.Errorf("mean KL %.4g, with unit q/k norms %.4g: want the first small and far below the second", withNorms, without)
	}
}
