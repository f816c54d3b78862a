package model

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// phi3Ref is transformers' Phi3ForCausalLM written from its equations in
// float64 over the checkpoint's own fused tensors, sharing no code with
// the runtime or package fused: for each layer, n = rmsnorm(x),
// qkv = qkv_proj(n) split at heads·D and heads·D + kv·D (Phi3Attention),
// RoPE by halves with inv[j] = theta^(-2j/R)/ext[j] (longrope's factors;
// 1 without) and cos, sin times the attention factor over the first R
// channels of each head, the rest passed (R = D, or head_dim ·
// partial_rotary_factor: Phi3's apply_rotary_pos_emb, q_rot and q_pass,
// pairs j and j+R/2), attention over the
// last window positions (all where window is 0), h = x + o_proj(·);
// m = rmsnorm(h), gate, up = gate_up_proj(m).chunk(2) (Phi3MLP),
// out = h + down(up·silu(gate)); logits = rmsnorm(x)·lm_headᵀ. The
// fields let a test build the wrong models that tell the right one from
// them.
type phi3Ref struct {
	r      *refModel
	ext    []float64 // longrope's factors for the table; nil: none
	af     float64   // attention factor multiplying cos and sin
	window int
	// rd is the rotary dimension R (0: D); expD takes the exponent over D
	// rather than R (a wrong model).
	rd   int
	expD bool
	// afAll multiplies the unrotated channels by the attention factor too
	// (a wrong model: transformers scales cos and sin of q_rot alone).
	afAll bool
	// swapKV and swapGateUp read the fused rows in the wrong order.
	swapKV, swapGateUp bool
}

func (p phi3Ref) forward(ids []int) [][]float64 {
	c := p.r.cfg
	H, D, nh, nkv, I, V := c.HiddenSize, c.HeadDim, c.NumAttentionHeads, c.NumKeyValueHeads, c.IntermediateSize, c.VocabSize
	T := len(ids)
	norm := func(x, w []float64) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		inv := 1 / math.Sqrt(ss/float64(len(x))+c.RMSNormEps)
		out := make([]float64, len(x))
		for i, v := range x {
			out[i] = v * inv * w[i]
		}
		return out
	}
	linear := func(x []float64, name string, n, k int) []float64 {
		w := p.r.t[name+".weight"]
		if len(w) != n*k {
			panic(fmt.Sprintf("%s: %d values, want %d", name, len(w), n*k))
		}
		out := make([]float64, n)
		for i := range n {
			for j := range k {
				out[i] += x[j] * w[i*k+j]
			}
		}
		return out
	}
	R := D
	if p.rd != 0 {
		R = p.rd
	}
	expDim := R
	if p.expD {
		expDim = D
	}
	rope := func(x []float64, heads, pos int) {
		for h := range heads {
			if p.afAll {
				for i := h*D + R; i < (h+1)*D; i++ {
					x[i] *= p.af
				}
			}
			v := x[h*D : h*D+R] // q_rot; v[R:D] is q_pass
			for j := range R / 2 {
				e := 1.0
				if p.ext != nil {
					e = p.ext[j]
				}
				a := float64(pos) * math.Pow(c.RopeTheta, -2*float64(j)/float64(expDim)) / e
				cos, sin := math.Cos(a)*p.af, math.Sin(a)*p.af
				x1, x2 := v[j], v[j+R/2]
				v[j], v[j+R/2] = x1*cos-x2*sin, x2*cos+x1*sin
			}
		}
	}
	emb := p.r.t["model.embed_tokens.weight"]
	x := make([][]float64, T)
	for t, id := range ids {
		x[t] = append([]float64(nil), emb[id*H:(id+1)*H]...)
	}
	qd, kvd := nh*D, nkv*D
	for l := range c.NumHiddenLayers {
		pre := fmt.Sprintf("model.layers.%d.", l)
		q, k, v := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := range T {
			qkv := linear(norm(x[t], p.r.t[pre+"input_layernorm.weight"]), pre+"self_attn.qkv_proj", qd+2*kvd, H)
			q[t], k[t], v[t] = qkv[:qd], qkv[qd:qd+kvd], qkv[qd+kvd:]
			if p.swapKV {
				k[t], v[t] = v[t], k[t]
			}
			rope(q[t], nh, t)
			rope(k[t], nkv, t)
		}
		for t := range T {
			att := make([]float64, qd)
			j0 := 0
			if p.window > 0 {
				j0 = max(0, t-p.window+1)
			}
			for h := range nh {
				g := h / (nh / nkv)
				s := make([]float64, t+1-j0)
				m := math.Inf(-1)
				for j := j0; j <= t; j++ {
					var d float64
					for i := range D {
						d += q[t][h*D+i] * k[j][g*D+i]
					}
					s[j-j0] = d / math.Sqrt(float64(D))
					m = max(m, s[j-j0])
				}
				var sum float64
				for j := range s {
					s[j] = math.Exp(s[j] - m)
					sum += s[j]
				}
				for j := range s {
					for i := range D {
						att[h*D+i] += s[j] / sum * v[j0+j][g*D+i]
					}
				}
			}
			o := linear(att, pre+"self_attn.o_proj", H, qd)
			for i := range x[t] {
				x[t][i] += o[i]
			}
			gu := linear(norm(x[t], p.r.t[pre+"post_attention_layernorm.weight"]), pre+"mlp.gate_up_proj", 2*I, H)
			gate, up := gu[:I], gu[I:]
			if p.swapGateUp {
				gate, up = up, gate
			}
			act := make([]float64, I)
			for i := range act {
				act[i] = up[i] * gate[i] / (1 + math.Exp(-gate[i]))
			}
			down := linear(act, pre+"mlp.down_proj", H, I)
			for i := range x[t] {
				x[t][i] += down[i]
			}
		}
	}
	head := p.r.t["lm_head.weight"]
	if c.TieWordEmbeddings {
		head = emb
	}
	logits := make([][]float64, T)
	for t := range T {
		n := norm(x[t], p.r.t["model.norm.weight"])
		logits[t] = make([]float64, V)
		for i := range V {
			for j := range H {
				logits[t][i] += n[j] * head[i*H+j]
			}
		}
	}
	return logits
}

// TestPhi3MatchesReference loads small random-weight Phi-3 checkpoints
// (fused qkv_proj and gate_up_proj, 4 heads over 2 KV heads; f32, and
// bf16 bytes split as they are) on the CPU backend and runs them in one
// forward and token by token through the paged decode step, against
// phi3Ref in float64: plain, with a sliding window of 3 positions (as
// Phi-3-mini-4k's 2047), and with longrope (max positions 512 over an
// original 64, the attention factor sqrt(1 + ln 8/ln 64) at every
// context): loaded for the default context (512) and for 65 positions,
// the long factors; for 32 positions and for exactly the original 64,
// the short ones (Options.Context, as transformers on a sequence of that
// length). With partial_rotary_factor 0.75 (Phi-4-mini's; 12 of the
// head's 16 channels rotated, the frequencies over 12, six longrope
// factors a table), plain and longrope with either table, the attention
// factor on the rotated channels alone. The reference
// reading the fused rows in another order, without the window, with the
// other factors, without the attention factor, rotating whole heads,
// taking the partial frequencies over the head size or scaling the
// unrotated channels by the attention factor too is far off, so each is
// what the runtime computes.
func TestPhi3MatchesReference(t *testing.T) {
	short := []float64{1, 1.25, 1.5, 2, 2, 3, 4, 4}
	long := []float64{1, 2, 4, 8, 12, 16, 24, 32}
	longrope := map[string]any{"max_position_embeddings": 512, "original_max_position_embeddings": 64,
		"rope_scaling": map[string]any{"type": "longrope", "short_factor": short, "long_factor": long}}
	afLong := math.Sqrt(1 + math.Log(8)/math.Log(64))
	partial := map[string]any{"partial_rotary_factor": 0.75}
	shortP, longP := []float64{1, 1.25, 1.5, 2, 3, 4}, []float64{1, 2, 4, 8, 16, 32}
	partialLongrope := map[string]any{"partial_rotary_factor": 0.75, "max_position_embeddings": 512, "original_max_position_embeddings": 64,
		"rope_scaling": map[string]any{"type": "longrope", "short_factor": shortP, "long_factor": longP}}
	for _, tc := range []struct {
		name  string
		edit  map[string]any
		dtype string
		ctx   int // Options.Context; 0: max_position_embeddings
		ref   phi3Ref
		wrong map[string]phi3Ref
	}{
		{"phi3", nil, "f32", 0, phi3Ref{af: 1}, map[string]phi3Ref{
			"with k and v swapped": {af: 1, swapKV: true}, "with gate and up swapped": {af: 1, swapGateUp: true}}},
		{"phi3-bf16", nil, "bf16", 0, phi3Ref{af: 1}, map[string]phi3Ref{"with gate and up swapped": {af: 1, swapGateUp: true}}},
		{"phi3-window", map[string]any{"sliding_window": 3}, "f32", 0, phi3Ref{af: 1, window: 3}, map[string]phi3Ref{
			"without the window": {af: 1}, "with a window of 4": {af: 1, window: 4}}},
		{"phi3-longrope", longrope, "f32", 0, phi3Ref{ext: long, af: afLong}, map[string]phi3Ref{
			"with the short factors": {ext: short, af: afLong}, "without the attention factor": {ext: long, af: 1}, "unscaled": {af: 1}}},
		{"phi3-longrope-ctx65", longrope, "f32", 65, phi3Ref{ext: long, af: afLong}, map[string]phi3Ref{
			"with the short factors": {ext: short, af: afLong}}},
		{"phi3-longrope-ctx64", longrope, "f32", 64, phi3Ref{ext: short, af: afLong}, map[string]phi3Ref{
			"with the long factors": {ext: long, af: afLong}, "without the attention factor": {ext: short, af: 1}}},
		{"phi3-longrope-ctx32", longrope, "f32", 32, phi3Ref{ext: short, af: afLong}, map[string]phi3Ref{
			"with the long factors": {ext: long, af: afLong}, "without the attention factor": {ext: short, af: 1}, "unscaled": {af: 1}}},
		{"phi3-partial", partial, "f32", 0, phi3Ref{af: 1, rd: 12}, map[string]phi3Ref{
			"rotating whole heads": {af: 1}, "with the frequencies over head_dim": {af: 1, rd: 12, expD: true}, "rotating 8": {af: 1, rd: 8}}},
		{"phi3-partial-bf16", partial, "bf16", 0, phi3Ref{af: 1, rd: 12}, map[string]phi3Ref{"rotating whole heads": {af: 1}}},
		{"phi3-partial-longrope", partialLongrope, "f32", 0, phi3Ref{ext: longP, af: afLong, rd: 12}, map[string]phi3Ref{
			"with the short factors": {ext: shortP, af: afLong, rd: 12}, "with the frequencies over head_dim": {ext: longP, af: afLong, rd: 12, expD: true},
			"unscaled": {af: 1, rd: 12}, "with the attention factor on whole heads": {ext: longP, af: afLong, rd: 12, afAll: true}}},
		{"phi3-partial-longrope-ctx32", partialLongrope, "f32", 32, phi3Ref{ext: shortP, af: afLong, rd: 12}, map[string]phi3Ref{
			"with the long factors": {ext: longP, af: afLong, rd: 12}, "without the attention factor": {ext: shortP, af: 1, rd: 12},
			"with the attention factor on whole heads": {ext: shortP, af: afLong, rd: 12, afAll: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := fixtures.Phi3(t, tc.edit, synth.Options{DType: tc.dtype, Seed: 5})
			ref := loadRef(t, dir)
			if _, ok := ref.t["model.layers.1.self_attn.qkv_proj.weight"]; !ok {
				t.Fatal("the fixture has no fused qkv_proj")
			}
			r := tc.ref
			r.r = ref
			want := r.forward(qwen2IDs)
			for name, w := range tc.wrong {
				w.r = ref
				if d := nmseRows(splitRows(flatten(w.forward(qwen2IDs)), ref.cfg.VocabSize), want); !(d > 1e-4) {
					t.Fatalf("the reference %s is within nmse %.3g: the test could not tell", name, d)
				}
			}
			m, err := LoadWith(dir, cpu.New(0), Options{Context: tc.ctx})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			lg, err := m.Forward(qwen2IDs, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := nmseRows(splitRows(lg, m.Vocab()), want); !(d < 1e-10) {
				t.Errorf("forward: logits nmse %.3g against the float64 reference", d)
			}
			if d := nmseRows(qwen2AllSteps(t, m), want); !(d < 1e-10) {
				t.Errorf("paged steps: logits nmse %.3g against the float64 reference", d)
			}
		})
	}
}

// TestPhi3Refusals: a fused tensor of another row count than its parts',
// a part beside its fused module, and a phi3 config whose partial RoPE
// gives an odd rotary dimension are refused at load, naming what is wrong.
func TestPhi3Refusals(t *testing.T) {
	t.Run("qkv_proj rows", func(t *testing.T) {
		// q 64 + k, v 2·32 = 128 rows; 96 written.
		dir := fixtures.Phi3(t, nil, synth.Options{DType: "f32", Seed: 1})
		fixtures.RewriteTensors(t, dir, func(tn *safetensors.Tensor) bool { return tn.Name != "model.layers.1.self_attn.qkv_proj.weight" },
			biasTensor("model.layers.1.self_attn.qkv_proj.weight", 96*64, 0, 1))
		_, err := Load(dir, cpu.New(1))
		if err == nil || !strings.Contains(err.Error(), `tensor "model.layers.1.self_attn.qkv_proj.weight": shape [6144], want [128 K]`) {
			t.Errorf("Load: %v, want the qkv_proj of the wrong shape named", err)
		}
	})
	t.Run("part beside fused", func(t *testing.T) {
		dir := fixtures.Phi3(t, nil, synth.Options{DType: "f32", Seed: 1})
		fixtures.RewriteTensors(t, dir, nil, biasTensor("model.layers.0.mlp.up_proj.weight", 96*64, 0, 1))
		_, err := Load(dir, cpu.New(1))
		if err == nil || !strings.Contains(err.Error(), `tensor "model.layers.0.mlp.up_proj.weight" beside "model.layers.0.mlp.gate_up_proj.weight"`) {
			t.Errorf("Load: %v, want up_proj beside gate_up_proj refused", err)
		}
	})
	t.Run("partial_rotary_factor", func(t *testing.T) {
		dir := fixtures.Phi3(t, nil, synth.Options{DType: "f32", Seed: 1})
		// 0.3125 of head_dim 16 is 5.
		editConfig(t, dir, `"model_type": "phi3"`, `"model_type": "phi3", "partial_rotary_factor": 0.3125`)
		_, err := Load(dir, cpu.New(1))
		if err == nil || !strings.Contains(err.Error(), "config.json: partial_rotary_factor: 0.3125 of head_dim 16 gives 5 rotary dimensions") {
			t.Errorf("Load: %v, want partial_rotary_factor refused", err)
		}
	})
}

// TestPhi3Context: Options.Context chooses the longrope factors the model
// applies (RopeScaling: short up to the original 64, the boundary
// included, long past it and by default, at max_position_embeddings 512),
// Context reports it, a paged cache for longer sequences is refused, and
// a context past max_position_embeddings or below 0 is refused at load.
func TestPhi3Context(t *testing.T) {
	dir := fixtures.Phi3(t, map[string]any{"max_position_embeddings": 512, "original_max_position_embeddings": 64,
		"rope_scaling": map[string]any{"type": "longrope", "short_factor": []float64{1, 1.25, 1.5, 2, 2, 3, 4, 4},
			"long_factor": []float64{1, 2, 4, 8, 12, 16, 24, 32}}}, synth.Options{DType: "f32", Seed: 2})
	for _, tc := range []struct {
		ctx, want int
		long      bool
	}{{0, 512, true}, {512, 512, true}, {65, 65, true}, {64, 64, false}, {32, 32, false}} {
		t.Run(fmt.Sprint("ctx", tc.ctx), func(t *testing.T) {
			m, err := LoadWith(dir, cpu.New(1), Options{Context: tc.ctx})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if got := m.Context(); got != tc.want {
				t.Errorf("Context() = %d, want %d", got, tc.want)
			}
			if got := m.RopeScaling(); got.Long != tc.long || got.Type != "longrope" {
				t.Errorf("RopeScaling() = %s, want long %v", got, tc.long)
			}
			c, err := m.NewPagedCache(40, 16, tc.want)
			if err != nil {
				t.Fatalf("NewPagedCache(maxLen %d): %v", tc.want, err)
			}
			c.Free()
			if _, err := m.NewPagedCache(40, 16, tc.want+1); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("loaded for a context of %d", tc.want)) {
				t.Errorf("NewPagedCache(maxLen %d): %v, want the context named", tc.want+1, err)
			}
		})
	}
	for _, tc := range []struct {
		ctx  int
		want string
	}{{513, "context 513 exceeds the model's context of 512 positions (max_position_embeddings in"}, {-1, "context -1: want 0"}} {
		if m, err := LoadWith(dir, cpu.New(1), Options{Context: tc.ctx}); err == nil || !strings.Contains(err.Error(), tc.want) {
			if m != nil {
				m.Close()
			}
			t.Errorf("LoadWith(Context %d): %v, want %q", tc.ctx, err, tc.want)
		}
	}
}
