package model

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// TestSynthGPTQLoads loads a GPTQ checkpoint written by synth (openchat-
// tiny's shape, 4-bit g128 act order, 2 layers): the model binds every
// module, act order included, and its logits are finite and not constant.
func TestSynthGPTQLoads(t *testing.T) {
	src := fixture(t, "models/openchat-tiny")
	out := filepath.Join(t.TempDir(), "q")
	q := gptq.DefaultQuantizeConfig()
	q.Bits, q.GroupSize, q.DescAct = 4, 128, true
	if _, err := synth.Write(context.Background(), synth.Options{ConfigDir: src, TokenizerDir: src, Out: out, Layers: 2, Seed: 1, GPTQ: &q}); err != nil {
		t.Fatal(err)
	}
	m, err := Load(out, cpu.New(0))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Quant == nil || !m.Quant.DescAct {
		t.Fatalf("quantization config %+v, want 4-bit act order", m.Quant)
	}
	logits, err := m.Forward([]int{1, 420, 6316, 28781}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range logits {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("logit %v", v)
		}
		lo, hi = min(lo, float64(v)), max(hi, float64(v))
	}
	if hi-lo < 1e-3 {
		t.Errorf("logits span %g: constant", hi-lo)
	}
}
