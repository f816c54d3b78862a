package model

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// moe is transformers' MixtralSparseMoeBlock / Qwen3MoeSparseMoeBlock /
// Qwen2MoeSparseMoeBlock in float64 for one row n of layer l:
// probabilities p = softmax(router·n) over all experts, the top k of them
// (ties: the lower expert), divided by their sum where the config
// renormalizes, and Σ p_e · expert_e(n), where an expert is mlp over the
// checkpoint's names (mixtral's w1/w3/w2 read as mlp's
// gate_proj/up_proj/down_proj), plus a shared expert's σ(gate·n) ·
// shared(n) where the config has one. r.moeTopK overrides k, r.moeNoNorm
// drops the renormalization and r.moeNoShared and r.moeUngated the shared
// expert or its gate, for the tests' wrong models.
func (r *refModel) moe(n []float64, l int, mlp func(n []float64, prefix string, I int) []float64) []float64 {
	m := r.cfg.MoE
	H := r.cfg.HiddenSize
	w := r.t[m.RouterName(l)]
	p := make([]float64, m.Experts)
	most := math.Inf(-1)
	for e := range p {
		for j := range H {
			p[e] += w[e*H+j] * n[j]
		}
		most = max(most, p[e])
	}
	var sum float64
	for e := range p {
		p[e] = math.Exp(p[e] - most)
		sum += p[e]
	}
	order := make([]int, m.Experts)
	for e := range order {
		order[e] = e
		p[e] /= sum
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case p[a] > p[b]:
			return -1
		case p[a] < p[b]:
			return 1
		}
		return 0
	})
	k := m.TopK
	if r.moeTopK > 0 {
		k = r.moeTopK
	}
	top := order[:k]
	var total float64
	for _, e := range top {
		total += p[e]
	}
	out := make([]float64, H)
	for _, e := range top {
		weight := p[e]
		if m.NormTopK && !r.moeNoNorm {
			weight /= total
		}
		// The expert's Linears under the names mlp reads.
		names := m.ExpertModules(e)
		prefix := fmt.Sprintf("model.layers.%d.ref.experts.%d.", l, e)
		for i, suffix := range []string{"gate_proj", "up_proj", "down_proj"} {
			r.t[prefix+suffix+".weight"] = r.t[fmt.Sprintf("model.layers.%d.%s.weight", l, names[i])]
		}
		y := mlp(n, prefix, m.ExpertSize)
		for i := range out {
			out[i] += weight * y[i]
		}
	}
	if m.SharedSize > 0 && !r.moeNoShared {
		// Qwen2MoeSparseMoeBlock: + σ(shared_expert_gate·n) ·
		// shared_expert(n).
		names := m.SharedModules()
		prefix := fmt.Sprintf("model.layers.%d.ref.shared.", l)
		for i, suffix := range []string{"gate_proj", "up_proj", "down_proj"} {
			r.t[prefix+suffix+".weight"] = r.t[fmt.Sprintf("model.layers.%d.%s.weight", l, names[i])]
		}
		y := mlp(n, prefix, m.SharedSize)
		var z float64
		for j, w := range r.t[m.SharedGateName(l)] {
			z += w * n[j]
		}
		g := 1 / (1 + math.Exp(-z))
		if r.moeUngated {
			g = 1
		}
		for i := range out {
			out[i] += g * y[i]
		}
	}
	return out
}

var moeIDs = []int{3, 200, 17, 99, 255, 0, 64, 128, 31, 7, 150, 42, 5, 77}

// TestMoEMatchesReference runs small random-weight Mixtral and Qwen3-MoE
// checkpoints (the Qwen3-MoE one with a dense last layer) on the CPU
// backend in fp32, in one forward and token by token through the paged
// decode step, against refForward with the float64 moe above; the same
// reference with one expert a token, or without renormalizing, is far off,
// so the routing is what the test checks.
func TestMoEMatchesReference(t *testing.T) {
	for _, tc := range []struct {
		name string
		dir  func(t *testing.T) string
	}{
		{"mixtral", func(t *testing.T) string { return fixtures.Mixtral(t, nil, synth.Options{DType: "f32", Seed: 5}) }},
		{"qwen3_moe", func(t *testing.T) string { return fixtures.Qwen3MoE(t, nil, synth.Options{DType: "f32", Seed: 6}) }},
		{"qwen2_moe", func(t *testing.T) string { return fixtures.Qwen2MoE(t, nil, synth.Options{DType: "f32", Seed: 8}) }},
		{"olmoe", func(t *testing.T) string { return fixtures.Olmoe(t, nil, synth.Options{DType: "f32", Seed: 9}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			ref := loadRef(t, dir)
			want := ref.forward(moeIDs, false)
			// The wrong models the reference must tell apart: what each
			// family has (renormalization; Qwen2-MoE's shared expert, its
			// gate and q/k/v biases; OLMoE's q/k norms over the whole
			// projections).
			type wrongModel struct {
				name                                string
				topK                                int
				noNorm, noShared, ungated, noBiases bool
				qk                                  qkNormAt
			}
			wrongs := []wrongModel{{name: "one expert a token", topK: 1}}
			if ref.cfg.MoE.NormTopK {
				wrongs = append(wrongs, wrongModel{name: "not renormalized", noNorm: true})
			}
			if ref.cfg.MoE.SharedSize > 0 {
				wrongs = append(wrongs, wrongModel{name: "no shared expert", noShared: true}, wrongModel{name: "shared expert ungated", ungated: true},
					wrongModel{name: "no q/k/v biases", noBiases: true})
			}
			if ref.cfg.FullQKNorm() {
				wrongs = append(wrongs, wrongModel{name: "no q/k norms", qk: qkNone}, wrongModel{name: "q/k norms after RoPE", qk: qkAfterRoPE})
			}
			for _, wrong := range wrongs {
				ref.moeTopK, ref.moeNoNorm, ref.moeNoShared, ref.moeUngated, ref.qkNorm = wrong.topK, wrong.noNorm, wrong.noShared, wrong.ungated, wrong.qk
				if d := nmseRows(splitRows(flatten(ref.forward(moeIDs, wrong.noBiases)), ref.cfg.VocabSize), want); !(d > 1e-3) {
					t.Fatalf("%s moves the reference's logits by nmse %.3g only: the test could not tell", wrong.name, d)
				}
			}
			ref.moeTopK, ref.moeNoNorm, ref.moeNoShared, ref.moeUngated, ref.qkNorm = 0, false, false, false, qkBeforeRoPE
			m := loadModel(t, dir)
			lg, err := m.Forward(moeIDs, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := nmseRows(splitRows(lg, m.Vocab()), want); !(d < 1e-10) {
				t.Errorf("forward: logits nmse %.3g against the float64 reference", d)
			}
			// A prompt of 4 in one step, then a token a step through the
			// paged decode step (moeDecodeOps).
			got := allSteps(t, m, moeIDs)
			if d := nmseRows(got, want); !(d < 1e-10) {
				t.Errorf("paged steps: logits nmse %.3g against the float64 reference", d)
			}
			// Those steps route on the backend (moeRouted: the CPU backend
			// is a runtime.ExpertRouter); routed on the host instead (moe)
			// they are the same bits, and recorded (replayCPU) too.
			host, err := Load(dir, hostRouted{cpu.New(0)})
			if err != nil {
				t.Fatal(err)
			}
			defer host.Close()
			if !m.routesOnDevice(1) || host.routesOnDevice(1) {
				t.Fatalf("routed on the device: %v on the CPU backend, %v on hostRouted", m.routesOnDevice(1), host.routesOnDevice(1))
			}
			if hs := allSteps(t, host, moeIDs); !slices.EqualFunc(hs, got, slices.Equal) {
				t.Errorf("paged steps routed on the host: logits up to %.3g from the steps routed by the backend, want the same bits", rowsDiff(hs, got))
			}
			rb := &replayCPU{Backend: cpu.New(0)}
			rec, err := Load(dir, rb)
			if err != nil {
				t.Fatal(err)
			}
			defer rec.Close()
			if rs := allSteps(t, rec, moeIDs); !slices.EqualFunc(rs, got, slices.Equal) || rb.captures != 1 {
				t.Errorf("recorded steps: %d recordings (want 1), logits up to %.3g from the steps run op by op", rb.captures, rowsDiff(rs, got))
			}
		})
	}
}

// TestMoERefusals: what a mixture-of-experts checkpoint must hold.
func TestMoERefusals(t *testing.T) {
	dir := fixtures.Mixtral(t, nil, synth.Options{DType: "f32", Seed: 1})
	fixtures.RewriteTensors(t, dir, func(tn *safetensors.Tensor) bool {
		return tn.Name != "model.layers.1.block_sparse_moe.gate.weight" && tn.Name != "model.layers.0.block_sparse_moe.experts.7.w2.weight"
	})
	_, err := Load(dir, cpu.New(1))
	if err == nil || !strings.Contains(err.Error(), "2 tensors that the config needs are missing (model.layers.0.block_sparse_moe.experts.7.w2.weight, model.layers.1.block_sparse_moe.gate.weight)") {
		t.Errorf("Load: %v, want the missing expert and router named", err)
	}
	// Fewer experts in config.json than the weights hold.
	dir = fixtures.Mixtral(t, nil, synth.Options{DType: "f32", Seed: 1})
	editConfig(t, dir, `"num_local_experts": 8`, `"num_local_experts": 7`)
	_, err = Load(dir, cpu.New(1))
	if err == nil || !strings.Contains(err.Error(), "does not explain (model.layers.0.block_sparse_moe.experts.7.w1.weight") {
		t.Errorf("Load: %v, want the eighth expert's tensors unexplained", err)
	}
}

// TestMoEGPTQ loads GPTQ checkpoints (4-bit, groups of 32, act order) of
// both MoE fixtures, every expert quantized and the router in floating
// point, on the CPU backend with the experts kept packed and dequantized
// (the reference path): the forwards give the same bits, the paged
// prompt step and the decode step after it the forward's logits of their
// positions, and the checkpoint passes Check.
func TestMoEGPTQ(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(testing.TB, map[string]any, synth.Options) string
	}{{"mixtral", fixtures.Mixtral}, {"qwen3_moe", fixtures.Qwen3MoE}, {"qwen2_moe", fixtures.Qwen2MoE}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.write(t, nil, synth.Options{Seed: 7, GPTQ: qwen2GPTQ()})
			if err := Check(dir); err != nil {
				t.Fatal(err)
			}
			set, cfg := fixtures.OpenCheckpoint(t, dir)
			if !slices.Contains(set.Names(), "model.layers.0."+cfg.MoE.ExpertModules(3)[2]+".qweight") || !slices.Contains(set.Names(), cfg.MoE.RouterName(0)) {
				t.Fatal("the fixture has no quantized expert or no router")
			}
			var logits [2][]float32
			for i, dequant := range []bool{false, true} {
				m, err := LoadWith(dir, cpu.New(0), Options{Dequantize: dequant})
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				if logits[i], err = m.Forward(moeIDs, nil, nil); err != nil {
					t.Fatal(err)
				}
				c, _, steps := pagedPrompts(t, m, [][]int{moeIDs[:4]})
				defer c.Free()
				for row := 3; row <= 4; row++ {
					steps[0].Logits = true
					out, err := m.Step(c, steps)
					if err != nil {
						t.Fatal(err)
					}
					want := make([]float64, m.Vocab())
					for j, v := range logits[i][row*m.Vocab() : (row+1)*m.Vocab()] {
						want[j] = float64(v)
					}
					if d := nmseRows([][]float32{out[0]}, [][]float64{want}); !(d < 1e-10) {
						t.Errorf("dequantize %v: the paged step's logits of position %d: nmse %.3g against the forward's", dequant, row, d)
					}
					steps[0] = StepSeq{Seq: steps[0].Seq, Tokens: moeIDs[4:5]}
				}
			}
			for i := range logits[0] {
				if math.Float32bits(logits[0][i]) != math.Float32bits(logits[1][i]) {
					t.Fatalf("logit %d: packed %v, dequantized %v", i, logits[0][i], logits[1][i])
				}
			}
		})
	}
}

// TestMoELayerIntermediates: a Mixtral layer loaded on its own (the GPTQ
// drivers' calibration forward) emits each expert's input, xn's rows of
// the tokens routed to it and zeros elsewhere, the experts holding T·k
// rows in all, and each expert's SwiGLU output of those rows (checked on
// the host from Weight's gate and up); a pass stops after the last
// expert's input; SetWeight of an expert's down changes the layer's
// output, and the names are those LayerIntermediates and LayerLinears
// give.
func TestMoELayerIntermediates(t *testing.T) {
	dir := fixtures.Mixtral(t, nil, synth.Options{DType: "f32", Seed: 2})
	set, cfg := fixtures.OpenCheckpoint(t, dir)
	l, err := LoadLayer(set, cfg, 1, cpu.New(0))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Free()
	const T = 12
	H, E, ES := cfg.HiddenSize, cfg.MoE.Experts, cfg.MoE.ExpertSize
	x := make([]float32, T*H)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)*0.37)) * 0.8
	}
	out, got, order := observeLayer(t, l, x)
	if want := LayerIntermediates(cfg, 1); !slices.Equal(order, want) {
		t.Fatalf("intermediates %v, want %v", order, want)
	}
	xn := got["ffn_norm"]
	routed := 0
	for e := range E {
		in, act := got[ExpertInput(cfg.MoE, e)], got[ExpertAct(cfg.MoE, e)]
		ms := cfg.MoE.ExpertModules(e)
		wg, err := l.Weight(ms[0])
		if err != nil {
			t.Fatal(err)
		}
		wu, err := l.Weight(ms[1])
		if err != nil {
			t.Fatal(err)
		}
		for r := range T {
			row := in[r*H : (r+1)*H]
			if !slices.ContainsFunc(row, func(v float32) bool { return v != 0 }) {
				if a := act[r*ES : (r+1)*ES]; slices.ContainsFunc(a, func(v float32) bool { return v != 0 }) {
					t.Fatalf("expert %d row %d: no input but an output", e, r)
				}
				continue
			}
			routed++
			if !slices.Equal(row, xn[r*H:(r+1)*H]) {
				t.Fatalf("expert %d row %d: input is not ffn_norm's row", e, r)
			}
			for c := range ES {
				want := swiGLUAt(row, wg, wu, c)
				if d := math.Abs(float64(act[r*ES+c]) - want); d > 1e-5*(1+math.Abs(want)) {
					t.Fatalf("expert %d row %d channel %d: act %v, want %v", e, r, c, act[r*ES+c], want)
				}
			}
		}
	}
	if routed != T*cfg.MoE.TopK {
		t.Errorf("%d routed rows, want T·k = %d", routed, T*cfg.MoE.TopK)
	}
	// The Linears' inputs are those intermediates.
	for _, lin := range LayerLinears(cfg, 1)[4:] {
		if _, ok := got[lin.Input]; !ok {
			t.Errorf("%s: input %q never emitted", lin.Name, lin.Input)
		}
	}
	if o, err := l.ForwardUntil(x, ExpertInput(cfg.MoE, E-1), nil); err != nil || o != nil {
		t.Errorf("ForwardUntil the last expert input: %v, %d values", err, len(o))
	}
	down := cfg.MoE.ExpertModules(0)[2]
	if err := l.SetWeight(down, make([]float32, H*ES)); err != nil {
		t.Fatal(err)
	}
	out2, err := l.Forward(x, nil)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(out, out2) {
		t.Error("zeroing expert 0's down changed nothing")
	}
	if _, err := l.Weight("mlp.down_proj"); err == nil || !strings.Contains(err.Error(), "block_sparse_moe.experts.7.w2") {
		t.Errorf("Weight(mlp.down_proj) of a sparse layer: %v, want refused listing the experts", err)
	}
}

// TestMoEStepBytes: a Mixtral's decode step reads, of each layer's 8
// experts, the 2 a row runs: StepBytes counts the dense weights and a
// quarter of the experts' bytes (fp32 on the CPU), summed here from the
// config's shapes.
func TestMoEStepBytes(t *testing.T) {
	dir := fixtures.Mixtral(t, nil, synth.Options{DType: "f32", Seed: 1})
	m := loadModel(t, dir)
	c := m.Config
	H, V, L := int64(c.HiddenSize), int64(c.VocabSize), int64(c.NumHiddenLayers)
	q, kv := int64(c.NumAttentionHeads*c.HeadDim), int64(c.NumKeyValueHeads*c.HeadDim)
	ES, E, K := int64(c.MoE.ExpertSize), int64(c.MoE.Experts), int64(c.MoE.TopK)
	layer := 2*H + H*q + 2*H*kv + q*H + E*H + K*3*H*ES
	if got, want := m.StepBytes(), 4*(H+V*H+L*layer); got != want {
		t.Errorf("StepBytes %d, want %d", got, want)
	}
}

// hostRouted is the CPU backend taking no experts (runtime.ExpertRouter's
// RoutesExperts false), so that a model routes its sparse layers on the
// host (moe) in decode steps too.
type hostRouted struct{ *cpu.Backend }

func (hostRouted) RoutesExperts([]runtime.Tensor, int) bool { return false }

// rowsDiff is the largest |a - b| over rows of logits (+Inf where the
// shapes differ).
func rowsDiff(a, b [][]float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var worst float64
	for t := range a {
		if len(a[t]) != len(b[t]) {
			return math.Inf(1)
		}
		for i := range a[t] {
			worst = max(worst, math.Abs(float64(a[t][i]-b[t][i])))
		}
	}
	return worst
}

// moeFused is fold_test's emulated backend with q/k/v products that
// normalize their input, rotate and store in the cache (ropeNorm) and
// o_proj's product straight from attention (runtime.AttentionProjector,
// counted in ap).
type moeFused struct {
	*ropeNorm
	ap int
}

func (f *moeFused) PagedAttentionMatMul(dst, att, qt, kc, vc, tables, pos runtime.Tensor, blockSize int, p runtime.AttentionParams, w runtime.Tensor) {
	f.PagedAttention(att, qt, kc, vc, tables, pos, blockSize, p)
	f.MatMul(dst, att, w)
	f.ap++
}

// TestMoEDecodeFused: a 4-bit act-order GPTQ Mixtral's decode steps with
// the attention's fusions (moeDecodeOps: q/k/v normalizing x, rotating and
// storing; o_proj from attention's output) on the emulated backend give
// the logits of the same backend without them, every layer taking both
// fusions in every decode step, the experts routed on the backend.
func TestMoEDecodeFused(t *testing.T) {
	q := gptq.DefaultQuantizeConfig()
	q.Bits, q.GroupSize, q.DescAct = 4, 32, true
	dir := fixtures.Mixtral(t, nil, synth.Options{Seed: 9, GPTQ: &q})
	quant := func() *quantCPU { return &quantCPU{Backend: cpu.New(0), t: t, widths: map[runtime.Tensor][]int{}} }
	open := func(b runtime.Backend) *Model {
		m, err := LoadWith(dir, b, Options{DType: runtime.BF16})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return m
	}
	want := allSteps(t, open(quant()), moeIDs)
	fb := &moeFused{ropeNorm: &ropeNorm{normCPU: &normCPU{quantCPU: quant()}}}
	m := open(fb)
	if !m.routesOnDevice(1) {
		t.Fatal("the emulated backend routes on the host")
	}
	got := allSteps(t, m, moeIDs)
	if n := (len(moeIDs) - 4) * len(m.layers); fb.fused < n || fb.normCPU.fused < n || fb.ap < n {
		t.Errorf("%d q/k/v products rotating, %d normalizing, %d o_proj products from attention; want %d each at least", fb.fused, fb.normCPU.fused, fb.ap, n)
	}
	if d := rowsDiff(got, want); !(d <= 1e-3) {
		t.Errorf("fused steps' logits differ by %.3g from the unfused ones'", d)
	}
}

// slotLimited is replayCPU routing a mixture of experts on the backend for
// at most most slots (as the CUDA backend's GPTQTOOL_MOE_SLOTS limits it),
// so that one cache holds steps routed on the backend and recorded at small
// batches and steps routed on the host, op by op, at larger ones.
type slotLimited struct {
	*replayCPU
	most int
}

func (s slotLimited) RoutesExperts(ws []runtime.Tensor, slots int) bool {
	return slots <= s.most && s.replayCPU.RoutesExperts(ws, slots)
}

// TestMoEDecodeBuckets: a Mixtral cache whose backend routes one row's
// slots but not four rows' decodes three sequences (a bucket of 4, routed
// on the host: never recorded), then one (a bucket of 1, routed on the
// backend: recorded once, replayed after), each step's logits those of the
// plain CPU backend.
func TestMoEDecodeBuckets(t *testing.T) {
	dir := fixtures.Mixtral(t, nil, synth.Options{DType: "f32", Seed: 5})
	rb := &replayCPU{Backend: cpu.New(0)}
	mr, err := Load(dir, slotLimited{rb, 2})
	if err != nil {
		t.Fatal(err)
	}
	defer mr.Close()
	if !mr.routesOnDevice(1) || mr.routesOnDevice(4) {
		t.Fatalf("routed on the backend: %v at one row, %v at four; want one only", mr.routesOnDevice(1), mr.routesOnDevice(4))
	}
	mp := loadModel(t, dir)
	prompts := [][]int{moeIDs[:4], moeIDs[4:7], moeIDs[7:13]}
	run := func(m *Model) ([][][]float32, int) {
		c, _, steps := pagedPrompts(t, m, prompts)
		defer c.Free()
		for i := range steps {
			steps[i].Logits = true
		}
		var all [][][]float32
		captures := rb.captures
		for step := range 8 {
			if step == 4 {
				steps = steps[:1] // one sequence from here on
			}
			out, err := m.Step(c, steps)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, out)
			for i := range steps {
				steps[i].Tokens = []int{(5 + 7*step + i) % m.Vocab()}
			}
		}
		if e := c.GraphErr(); e != nil {
			t.Fatalf("decode steps not recorded: %v", e)
		}
		return all, rb.captures - captures
	}
	got, captures := run(mr)
	want, _ := run(mp)
	// Decode steps 1-3 at three rows (host-routed), 5-7 at one (the
	// first run op by op, the second recorded, then replayed).
	if captures != 1 {
		t.Errorf("%d recordings, want 1 (the one-row bucket's)", captures)
	}
	sameSteps(t, "replayed and host-routed", got, want)
}

// TestQwen2MoELayer: a Qwen2-MoE layer loaded on its own emits its shared
// expert's SwiGLU output (SharedAct: every row's, checked on the host from
// Weight's shared gate and up on ffn_norm) after the experts' intermediates,
// in LayerIntermediates' order, and every input LayerLinears names; a pass
// stops there; SetWeight of the shared down changes the output; StepBytes
// counts the shared expert and its gate whole (every row reads them).
func TestQwen2MoELayer(t *testing.T) {
	dir := fixtures.Qwen2MoE(t, nil, synth.Options{DType: "f32", Seed: 3})
	set, cfg := fixtures.OpenCheckpoint(t, dir)
	l, err := LoadLayer(set, cfg, 0, cpu.New(0))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Free()
	const T = 9
	H, S := cfg.HiddenSize, cfg.MoE.SharedSize
	x := make([]float32, T*H)
	for i := range x {
		x[i] = float32(math.Cos(float64(i)*0.29)) * 0.7
	}
	out, got, order := observeLayer(t, l, x)
	if want := LayerIntermediates(cfg, 0); !slices.Equal(order, want) || want[len(want)-2] != SharedAct(cfg.MoE) {
		t.Fatalf("intermediates %v, want %v with the shared expert's last but one", order, want)
	}
	for _, lin := range LayerLinears(cfg, 0) {
		if _, ok := got[lin.Input]; !ok {
			t.Errorf("%s: input %q never emitted", lin.Name, lin.Input)
		}
	}
	sm := cfg.MoE.SharedModules()
	wg, err := l.Weight(sm[0])
	if err != nil {
		t.Fatal(err)
	}
	wu, err := l.Weight(sm[1])
	if err != nil {
		t.Fatal(err)
	}
	xn, act := got["ffn_norm"], got[SharedAct(cfg.MoE)]
	for r := range T {
		for c := range S {
			want := swiGLUAt(xn[r*H:(r+1)*H], wg, wu, c)
			if d := math.Abs(float64(act[r*S+c]) - want); d > 1e-5*(1+math.Abs(want)) {
				t.Fatalf("row %d channel %d: shared act %v, want %v", r, c, act[r*S+c], want)
			}
		}
	}
	if o, err := l.ForwardUntil(x, SharedAct(cfg.MoE), nil); err != nil || o != nil {
		t.Errorf("ForwardUntil the shared act: %v, %d values", err, len(o))
	}
	if err := l.SetWeight(sm[2], make([]float32, H*S)); err != nil {
		t.Fatal(err)
	}
	out2, err := l.Forward(x, nil)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(out, out2) {
		t.Error("zeroing the shared expert's down changed nothing")
	}

	m := loadModel(t, dir)
	c := m.Config
	V, L := int64(c.VocabSize), int64(c.NumHiddenLayers)
	q, kv := int64(c.NumAttentionHeads*c.HeadDim), int64(c.NumKeyValueHeads*c.HeadDim)
	ES, E, K, SS, I := int64(c.MoE.ExpertSize), int64(c.MoE.Experts), int64(c.MoE.TopK), int64(S), int64(c.IntermediateSize)
	h := int64(H)
	attn := 2*h + h*q + 2*h*kv + q*h + q + 2*kv // (q/k/v biases)
	sparse := E*h + K*3*h*ES + 3*h*SS + h
	want := 4 * (h + V*h + L*attn + (L-1)*sparse + 3*h*I) // (layer 1 dense)
	if got := m.StepBytes(); got != want {
		t.Errorf("StepBytes %d, want %d", got, want)
	}
}

// TestQwen2MoERoutedHalf: in bf16 and fp16 (the CPU backend rounding as a
// 16-bit device does), a Qwen2-MoE's decode steps routed on the backend
// (moeRouted: the shared expert through CombineExperts' extra) give the
// bits of the steps routed on the host (moe: the shared expert added to
// the experts' sum), over six steps of three sequences.
func TestQwen2MoERoutedHalf(t *testing.T) {
	dir := fixtures.Qwen2MoE(t, nil, synth.Options{DType: "bf16", Seed: 12})
	for _, dt := range []runtime.DType{runtime.BF16, runtime.F16} {
		run := func(b runtime.Backend) ([][][]float32, bool) {
			m, err := LoadWith(dir, b, Options{DType: dt})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			c, _, steps := pagedPrompts(t, m, [][]int{moeIDs[:4], moeIDs[4:7], moeIDs[7:13]})
			defer c.Free()
			var all [][][]float32
			for step := range 6 {
				for i := range steps {
					steps[i].Logits = true
				}
				out, err := m.Step(c, steps)
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, out)
				for i := range steps {
					steps[i] = StepSeq{Seq: steps[i].Seq, Tokens: []int{(5 + 7*step + i) % m.Vocab()}}
				}
			}
			return all, m.routesOnDevice(3)
		}
		routed, onDevice := run(cpu.New(0).WithHalf())
		host, onHost := run(hostRouted{cpu.New(0).WithHalf()})
		if !onDevice || onHost {
			t.Fatalf("%v: routed on the backend %v, on hostRouted %v", dt, onDevice, onHost)
		}
		for s := range host {
			if !slices.EqualFunc(routed[s], host[s], slices.Equal) {
				t.Errorf("%v step %d: routed on the backend, logits up to %.3g from routed on the host, want the same bits", dt, s, rowsDiff(routed[s], host[s]))
			}
		}
	}
}

// observeLayer runs l on x [T, hidden] with a hook and returns its output,
// every intermediate it emitted (by name after "model.layers.<i>.") and
// their order.
func observeLayer(t *testing.T, l *Layer, x []float32) (out []float32, got map[string][]float32, order []string) {
	t.Helper()
	got = map[string][]float32{}
	prefix := LayerPrefix(l.Index) + "."
	out, err := l.Forward(x, func(name string, v []float32, rows, cols int) {
		order = append(order, strings.TrimPrefix(name, prefix))
		got[strings.TrimPrefix(name, prefix)] = slices.Clone(v)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, got, order
}

// swiGLUAt is silu(g)·u in float64 of channel c for the row x, g and u
// its products with rows c of wg and wu [channels, len(x)].
func swiGLUAt(x, wg, wu []float32, c int) float64 {
	H := len(x)
	var g, u float64
	for k := range H {
		g += float64(x[k]) * float64(wg[c*H+k])
		u += float64(x[k]) * float64(wu[c*H+k])
	}
	return g / (1 + math.Exp(-g)) * u
}
