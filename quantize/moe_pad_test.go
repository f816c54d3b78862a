package quantize_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// TestMoEQuantizePaddingOnlyExpert: an expert the router sends only
// padding tokens (Mask false) has an empty Hessian; both drivers round it
// to nearest, as they do an expert no token reached.
func TestMoEQuantizePaddingOnlyExpert(t *testing.T) {
	dir := fixtures.Mixtral(t, map[string]any{"num_experts_per_tok": 1}, synth.Options{DType: "f32", Seed: 8})
	set, cfg := fixtures.OpenCheckpoint(t, dir)
	samples := moeSamples(6, 32, cfg.VocabSize)
	l, err := model.LoadLayer(set, cfg, 0, cpu.New(0))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Free()
	// Layer 0's routing of every token (the unquantized layer's, as a
	// pass that is not true-sequential sees it).
	E, H := cfg.MoE.Experts, cfg.HiddenSize
	routed := make([][][]bool, len(samples)) // [sample][expert][token]
	count := make([]int, E)
	for si, s := range samples {
		x, err := model.Embed(set, cfg, s.IDs)
		if err != nil {
			t.Fatal(err)
		}
		routed[si] = make([][]bool, E)
		if _, err := l.ForwardUntil(x, model.ExpertInput(cfg.MoE, E-1), func(name string, v []float32, rows, cols int) {
			for e := range E {
				if strings.HasSuffix(name, "."+model.ExpertInput(cfg.MoE, e)) {
					routed[si][e] = make([]bool, rows)
					for r := range rows {
						routed[si][e][r] = slices.ContainsFunc(v[r*H:(r+1)*H], func(f float32) bool { return f != 0 })
						if routed[si][e][r] {
							count[e]++
						}
					}
				}
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	// The least chosen expert's tokens become padding.
	pick := -1
	for e := range E {
		if count[e] > 0 && (pick < 0 || count[e] < count[pick]) {
			pick = e
		}
	}
	for si := range samples {
		samples[si].Mask = make([]bool, len(samples[si].IDs))
		for r := range samples[si].Mask {
			samples[si].Mask[r] = !routed[si][pick][r]
		}
	}
	t.Logf("expert %d: %d padding tokens (counts %v)", pick, count[pick], count)
	for _, solver := range []quantize.Solver{nil, quantize.HostSolver{}} {
		var log bytes.Buffer
		got := map[string]*quantize.Result{}
		job := quantize.Job{Name: "test", GPTQ: moeOpts, Layer: func(li int, mods []quantize.ModuleResult) error {
			for _, m := range mods {
				got[m.Name()] = m.Result
			}
			return nil
		}}
		if err := quantize.Run(context.Background(), set, cfg, cpu.New(0), samples, []quantize.Job{job}, quantize.DriverOptions{Solver: solver, Log: &log}); err != nil {
			t.Fatal(err)
		}
		for _, m := range cfg.MoE.ExpertModules(pick) {
			name := "model.layers.0." + m
			K, N, _ := model.LinearShape(cfg, m)
			rtn, err := quantize.RTN(tensorF32(t, set, name+".weight"), N, K, moeOpts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rtn.Q, got[name].Q) {
				t.Errorf("solver %T: %s, reached by padding only, is not round to nearest (agreement %.3f)", solver, name, agreement(rtn, got[name]))
			}
			if !strings.Contains(log.String(), name+": no calibration token reached it") {
				t.Errorf("solver %T: the log does not say %s got no token", solver, name)
			}
		}
	}
}
