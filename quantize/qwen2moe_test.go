package quantize_test

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// TestQwen2MoEQuantize quantizes a random Qwen2-MoE checkpoint (3 layers,
// the middle one dense; 12 experts, 4 a token, and a shared expert) with
// GPTQ:
//   - every layer's modules are quantized: a sparse layer's attention, 12
//     experts' and the shared expert's (its gate and the router stay in
//     floating point);
//   - layer 0's shared gate_proj (not true-sequential) is GPTQ with the
//     Hessian of every token's ffn_norm row, worked out here, where an
//     expert's is its routed rows' only; one of its routed rows' Hessian
//     gives other codes, so the test tells them apart;
//   - the device driver (the CPU backend, the host solver, chunks of 3
//     samples), true-sequential, gives the reference driver's codes and
//     losses for every module of layer 0, and of layers 1 and 2 on
//     average (see below).
func TestQwen2MoEQuantize(t *testing.T) {
	dir := fixtures.Qwen2MoE(t, nil, synth.Options{DType: "f32", Seed: 8})
	set, cfg := fixtures.OpenCheckpoint(t, dir)
	samples := moeSamples(8, 48, cfg.VocabSize)
	ref := collect(t, cpu.New(0), nil, dir, samples, moeOpts, true, 0)
	perSparse := 4 + 3*cfg.MoE.Experts + 3
	if want := 2*perSparse + len(model.LinearModules); len(ref) != want {
		t.Fatalf("%d modules quantized, want %d", len(ref), want)
	}

	H := cfg.HiddenSize
	l, err := model.LoadLayer(set, cfg, 0, cpu.New(0))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Free()
	all, expert0 := quantize.NewHessian(H), quantize.NewHessian(H)
	for _, s := range samples {
		x, err := model.Embed(set, cfg, s.IDs)
		if err != nil {
			t.Fatal(err)
		}
		var rows, routed []float32
		if _, err := l.ForwardUntil(x, model.ExpertInput(cfg.MoE, 0), func(name string, v []float32, n, cols int) {
			switch {
			case strings.HasSuffix(name, ".ffn_norm"):
				rows = slices.Clone(v)
			case strings.HasSuffix(name, "."+model.ExpertInput(cfg.MoE, 0)):
				for r := range n {
					if row := v[r*H : (r+1)*H]; slices.ContainsFunc(row, func(f float32) bool { return f != 0 }) {
						routed = append(routed, row...)
					}
				}
			}
		}); err != nil {
			t.Fatal(err)
		}
		all.Add(rows, len(s.IDs))
		if len(routed) > 0 {
			expert0.Add(routed, len(routed)/H)
		}
	}
	gate := cfg.MoE.SharedModules()[0]
	w := tensorF32(t, set, "model.layers.0."+gate+".weight")
	K, N, _ := model.LinearShape(cfg, gate)
	want, err := quantize.GPTQ(w, N, K, all, moeOpts, nil)
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := quantize.GPTQ(w, N, K, expert0, moeOpts, nil)
	if err != nil {
		t.Fatal(err)
	}
	plain := collect(t, cpu.New(0), nil, dir, samples, moeOpts, false, 0)
	got := plain["model.layers.0."+gate]
	if a := agreement(want, got); a < 0.995 {
		t.Errorf("layer 0 %s: %.4f of codes agree with GPTQ on every token's Hessian", gate, a)
	}
	if a := agreement(wrong, got); a > 0.95 {
		t.Errorf("layer 0 %s: %.4f of codes agree with GPTQ on expert 0's routed rows only: the test cannot tell", gate, a)
	}

	dev := collect(t, cpu.New(0), quantize.HostSolver{}, dir, samples, moeOpts, true, 3*48)
	if len(dev) != len(ref) {
		t.Fatalf("device driver: %d modules, reference %d", len(dev), len(ref))
	}
	// Layer 0 module by module: both drivers read the same inputs. The
	// later layers as a whole: the drivers' Hessians differ in fp32
	// rounding (the device's Gram), a few codes of layer 0 with them, and
	// that moves the later layers' inputs, and in layer 2 tokens near a
	// routing tie to other experts, each of which sees a hundred-odd rows.
	type sum struct {
		agree, ref, dev float64
		n               int
	}
	later := map[string]*sum{}
	for name, r := range ref {
		d := dev[name]
		if d == nil {
			t.Fatalf("%s: not quantized by the device driver", name)
		}
		if l := strings.Join(strings.Split(name, ".")[:3], "."); l != "model.layers.0" {
			if later[l] == nil {
				later[l] = &sum{}
			}
			s := later[l]
			s.agree, s.ref, s.dev, s.n = s.agree+agreement(r, d), s.ref+r.Loss, s.dev+d.Loss, s.n+1
			continue
		}
		if a := agreement(r, d); a < 0.98 {
			t.Errorf("%s: device driver %.4f of codes agree with the reference's", name, a)
		}
		if rel := (d.Loss - r.Loss) / r.Loss; math.Abs(rel) > 0.02 {
			t.Errorf("%s: loss %.6g, reference %.6g", name, d.Loss, r.Loss)
		}
	}
	for l, s := range later {
		a := s.agree / float64(s.n)
		t.Logf("%s: %.4f of codes agree on average, losses %.6g and %.6g", l, a, s.dev, s.ref)
		if a < 0.95 || math.Abs(s.dev-s.ref) > 0.05*s.ref {
			t.Errorf("%s: %.4f of codes agree on average, losses %.6g against the reference's %.6g", l, a, s.dev, s.ref)
		}
	}
	for _, m := range cfg.MoE.SharedModules() {
		if ref["model.layers.2."+m] == nil {
			t.Errorf("layer 2's %s not quantized", m)
		}
	}
}
