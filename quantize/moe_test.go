package quantize_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// moeSamples draws n calibration sequences of T ids below vocab.
func moeSamples(n, T, vocab int) []quantize.Sample {
	r := rand.New(rand.NewPCG(5, 9))
	out := make([]quantize.Sample, n)
	for i := range out {
		out[i].IDs = make([]int, T)
		for j := range out[i].IDs {
			out[i].IDs[j] = r.IntN(vocab)
		}
	}
	return out
}

var moeOpts = quantize.Options{Bits: 4, GroupSize: 32, Sym: true, ActOrder: true, Damp: 0.1, Fp16Scales: true}

// TestMoEQuantize quantizes a random Mixtral checkpoint (2 layers of 8
// experts, 2 a token) with GPTQ, true-sequential:
//   - layer 0's expert 3's gate (not true-sequential) is GPTQ with the
//     Hessian of the rows routed to it, worked out here from ffn_norm and
//     the router's weights (the top 2 logits by hand), not from the
//     layer's expert intermediates;
//   - the device driver (the CPU backend, the host solver, chunks of 3
//     samples) gives the reference driver's codes and losses for every
//     module of both layers: the attention's and 24 experts' a layer.
func TestMoEQuantize(t *testing.T) {
	dir := fixtures.Mixtral(t, nil, synth.Options{DType: "f32", Seed: 8})
	set, cfg := fixtures.OpenCheckpoint(t, dir)
	samples := moeSamples(8, 48, cfg.VocabSize)
	ref := collect(t, cpu.New(0), nil, dir, samples, moeOpts, true, 0)
	if want := 2 * (4 + 3*cfg.MoE.Experts); len(ref) != want {
		t.Fatalf("%d modules quantized, want %d", len(ref), want)
	}

	// Expert 3 of layer 0 by hand: its tokens' ffn_norm rows.
	H, E := cfg.HiddenSize, cfg.MoE.Experts
	l, err := model.LoadLayer(set, cfg, 0, cpu.New(0))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Free()
	router := tensorF32(t, set, cfg.MoE.RouterName(0))
	h := quantize.NewHessian(H)
	routed := 0
	for _, s := range samples {
		x, err := model.Embed(set, cfg, s.IDs)
		if err != nil {
			t.Fatal(err)
		}
		var rows []float32
		if _, err := l.ForwardUntil(x, "ffn_norm", func(name string, v []float32, n, cols int) {
			if strings.HasSuffix(name, ".ffn_norm") {
				rows = slices.Clone(v)
			}
		}); err != nil {
			t.Fatal(err)
		}
		var mine []float32
		for r := range len(s.IDs) {
			xn := rows[r*H : (r+1)*H]
			logit := make([]float64, E)
			for e := range E {
				for k := range H {
					logit[e] += float64(router[e*H+k]) * float64(xn[k])
				}
			}
			// Top 2 of the softmax is the top 2 of the logits.
			order := []int{0, 1, 2, 3, 4, 5, 6, 7}
			slices.SortStableFunc(order, func(a, b int) int { return -cmpF(logit[a], logit[b]) })
			if order[0] == 3 || order[1] == 3 {
				mine = append(mine, xn...)
				routed++
			}
		}
		h.Add(mine, len(mine)/H)
	}
	if routed == 0 || routed == len(samples)*48 {
		t.Fatalf("%d of %d tokens routed to expert 3: the test cannot tell routed rows from all", routed, len(samples)*48)
	}
	gate := cfg.MoE.ExpertModules(3)[0]
	w := tensorF32(t, set, "model.layers.0."+gate+".weight")
	K, N, _ := model.LinearShape(cfg, gate)
	want, err := quantize.GPTQ(w, N, K, h, moeOpts, nil)
	if err != nil {
		t.Fatal(err)
	}
	// (Not true-sequential: its Hessians come from the unquantized layer,
	// as the hand-made one does; true-sequential, ffn_norm follows the
	// quantized attention.)
	plain := collect(t, cpu.New(0), nil, dir, samples, moeOpts, false, 0)
	got := plain["model.layers.0."+gate]
	if a := agreement(want, got); a < 0.995 {
		t.Errorf("layer 0 %s: %.4f of codes agree with GPTQ on its routed rows' Hessian", gate, a)
	}

	dev := collect(t, cpu.New(0), quantize.HostSolver{}, dir, samples, moeOpts, true, 3*48)
	if len(dev) != len(ref) {
		t.Fatalf("device driver: %d modules, reference %d", len(dev), len(ref))
	}
	for name, r := range ref {
		d := dev[name]
		if a := agreement(r, d); a < 0.98 {
			t.Errorf("%s: device driver %.4f of codes agree with the reference's", name, a)
		}
		if rel := (d.Loss - r.Loss) / r.Loss; math.Abs(rel) > 0.02 {
			t.Errorf("%s: loss %.6g, reference %.6g", name, d.Loss, r.Loss)
		}
	}
}

// TestMoEQuantizeUnroutedExpert: an expert the router never chooses (top
// 1 with expert 7's router row equal to expert 6's: the lower expert wins
// the tie) is rounded to nearest by both drivers, saying so, where GPTQ
// on its zero Hessian would zero it.
func TestMoEQuantizeUnroutedExpert(t *testing.T) {
	dir := fixtures.Mixtral(t, map[string]any{"num_experts_per_tok": 1}, synth.Options{DType: "f32", Seed: 8})
	set, cfg := fixtures.OpenCheckpoint(t, dir)
	for li := range cfg.NumHiddenLayers {
		router := tensorF32(t, set, cfg.MoE.RouterName(li))
		H := cfg.HiddenSize
		copy(router[7*H:8*H], router[6*H:7*H])
		name := cfg.MoE.RouterName(li)
		fixtures.RewriteTensors(t, dir, func(tn *safetensors.Tensor) bool { return tn.Name != name }, f32Tensor(name, router, cfg.MoE.Experts, H))
	}
	set, cfg = fixtures.OpenCheckpoint(t, dir)
	samples := moeSamples(6, 32, cfg.VocabSize)
	for _, solver := range []quantize.Solver{nil, quantize.HostSolver{}} {
		var log bytes.Buffer
		got := map[string]*quantize.Result{}
		job := quantize.Job{Name: "test", GPTQ: moeOpts, TrueSequential: true, Layer: func(li int, mods []quantize.ModuleResult) error {
			for _, m := range mods {
				got[m.Name()] = m.Result
			}
			return nil
		}}
		if err := quantize.Run(context.Background(), set, cfg, cpu.New(0), samples, []quantize.Job{job}, quantize.DriverOptions{Solver: solver, Log: &log}); err != nil {
			t.Fatal(err)
		}
		for _, m := range cfg.MoE.ExpertModules(7) {
			name := "model.layers.1." + m
			if !strings.Contains(log.String(), name+": no calibration token reached it") {
				t.Errorf("solver %T: the log does not say %s got no token:\n%s", solver, name, log.String())
			}
			K, N, _ := model.LinearShape(cfg, m)
			rtn, err := quantize.RTN(tensorF32(t, set, name+".weight"), N, K, moeOpts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rtn.Q, got[name].Q) {
				t.Errorf("solver %T: %s is not round to nearest", solver, name)
			}
		}
		if strings.Contains(log.String(), "experts.6.w1: no calibration token") {
			t.Errorf("solver %T: expert 6, which takes every token, reported unrouted", solver)
		}
	}
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// tensorF32 reads a tensor of set as float32.
func tensorF32(t *testing.T, set *safetensors.Set, name string) []float32 {
	t.Helper()
	tn, err := set.Tensor(name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := tn.Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// f32Tensor is an F32 tensor of v [rows, cols].
func f32Tensor(name string, v []float32, rows, cols int) safetensors.Tensor {
	data := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(x))
	}
	return safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: name, DType: safetensors.F32, Shape: []int{rows, cols}}, Data: data}
}

// TestMoESkip: skip rules resolved against a Mixtral's layers (ParseSkipFor)
// reach its experts: one expert's three Linears in every layer, listed in
// the layers' module order, with a GPTQModel dynamic rule each; a pattern
// of the dense MLP's names matches nothing there.
func TestMoESkip(t *testing.T) {
	dir := fixtures.Mixtral(t, nil, synth.Options{DType: "f32", Seed: 1})
	_, cfg := fixtures.OpenCheckpoint(t, dir)
	s, err := quantize.ParseSkipFor([]string{`re:model\.layers\.\d+\.block_sparse_moe\.experts\.7\..*`}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for li := range cfg.NumHiddenLayers {
		for _, m := range cfg.MoE.ExpertModules(7) {
			want = append(want, model.LayerPrefix(li)+"."+m)
		}
	}
	if got := s.Names(); !slices.Equal(got, want) {
		t.Errorf("Names %v, want %v", got, want)
	}
	if n := len(s.Dynamic()); n != len(want) {
		t.Errorf("%d dynamic rules, want %d", n, len(want))
	}
	if !s.Has(1, "block_sparse_moe.experts.7.w2") || s.Has(1, "block_sparse_moe.experts.6.w2") {
		t.Error("Has disagrees with the pattern")
	}
	if _, err := quantize.ParseSkipFor([]string{"model.layers.0.mlp.down_proj"}, cfg); err == nil || !strings.Contains(err.Error(), "matches no quantizable Linear module") {
		t.Errorf("a dense MLP name on a Mixtral: %v, want refused", err)
	}
}
