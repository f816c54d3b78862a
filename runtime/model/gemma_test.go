package model

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// gemmaWrong drops one detail of Gemma 3 from gemmaForward, for the
// tests that show the reference tells it.
type gemmaWrong struct {
	noPlusOne    bool // norms multiply by w, not 1 + w
	noEmbedScale bool // embeddings not scaled by sqrt(hidden_size)
	globalRope   bool // sliding layers rotate by rope_theta, not rope_local_base_freq
	noWindow     bool // sliding layers attend to every position
	noPostNorms  bool // attention and MLP outputs added unnormalized
	headDimScale bool // scores scaled by head_dim**-0.5, not query_pre_attn_scalar's
	noAttnCap    bool // Gemma 2's scores not soft-capped
	noFinalCap   bool // Gemma 2's logits not soft-capped
	silu         bool // the GLU's activation SiLU (Llama's), not GELU-tanh
}

// gemmaForward is transformers' Gemma3ForCausalLM written from its
// equations in float64, sharing no code with the runtime: x =
// embed(ids)·sqrt(H); for each layer, with norm(x, w) = x /
// sqrt(mean(x²)+eps) · (1 + w) (Gemma3RMSNorm),
// h = x + post_attention_layernorm(o_proj(attn(rope(q_norm(q)), rope(k_norm(k)), v))),
// q/k/v the products of input_layernorm(x), q_norm/k_norm per head, RoPE
// base rope_local_base_freq and a window of sliding_window in the sliding
// layers ((i+1) % sliding_window_pattern != 0), rope_theta and no window
// in the full ones, scores scaled by query_pre_attn_scalar**-0.5;
// out = h + post_feedforward_layernorm(down(gelu_tanh(gate(m)) · up(m))),
// m = pre_feedforward_layernorm(h); logits = norm(x, model.norm)·Eᵀ.
// Gemma 2 (Gemma2ForCausalLM) is the same without q_norm and k_norm,
// with rope_theta in every layer, the scaled scores s soft-capped
// (attn_logit_softcapping·tanh(s/attn_logit_softcapping), before the mask)
// and so the logits (final_logit_softcapping). Gemma (GemmaForCausalLM)
// is Gemma 2 without soft-capping, windows and the post norms: h = x +
// o_proj(attn(...)), scores scaled by head_dim**-0.5, and m =
// post_attention_layernorm(h), out = h + down(gelu_tanh(gate(m)) · up(m)).
func gemmaForward(r *refModel, ids []int, wrong gemmaWrong) [][]float64 {
	c := r.cfg
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
			g := 1 + w[i]
			if wrong.noPlusOne {
				g = w[i]
			}
			out[i] = v * inv * g
		}
		return out
	}
	linear := func(x []float64, name string, n, k int) []float64 {
		w, b := r.t[name+".weight"], r.t[name+".bias"]
		out := make([]float64, n)
		for i := range n {
			for j := range k {
				out[i] += x[j] * w[i*k+j]
			}
			if b != nil {
				out[i] += b[i]
			}
		}
		return out
	}
	pattern := 2 // Gemma3Config's sliding_window_pattern
	emb := r.t["model.embed_tokens.weight"]
	x := make([][]float64, T)
	for t, id := range ids {
		x[t] = append([]float64(nil), emb[id*H:(id+1)*H]...)
		if !wrong.noEmbedScale {
			for i := range x[t] {
				x[t][i] *= math.Sqrt(float64(H))
			}
		}
	}
	for l := range c.NumHiddenLayers {
		p := fmt.Sprintf("model.layers.%d.", l)
		sliding := (l+1)%pattern != 0 && !c.Gemma1()
		theta, window := c.RopeTheta, 0
		if sliding {
			theta, window = 10000, c.SlidingWindow
			if c.Gemma2() {
				theta = c.RopeTheta
			}
			if wrong.globalRope {
				theta = c.RopeTheta
			}
			if wrong.noWindow {
				window = 0
			}
		}
		rope := func(x []float64, heads, pos int) {
			for h := range heads {
				v := x[h*D : (h+1)*D]
				for j := range D / 2 {
					a := float64(pos) * math.Pow(theta, -2*float64(j)/float64(D))
					x1, x2 := v[j], v[j+D/2]
					v[j], v[j+D/2] = x1*math.Cos(a)-x2*math.Sin(a), x2*math.Cos(a)+x1*math.Sin(a)
				}
			}
		}
		q, k, v := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := range T {
			n := norm(x[t], r.t[p+"input_layernorm.weight"])
			q[t] = linear(n, p+"self_attn.q_proj", nh*D, H)
			k[t] = linear(n, p+"self_attn.k_proj", nkv*D, H)
			v[t] = linear(n, p+"self_attn.v_proj", nkv*D, H)
			for _, e := range []struct {
				x     []float64
				name  string
				heads int
			}{{q[t], "self_attn.q_norm.weight", nh}, {k[t], "self_attn.k_norm.weight", nkv}} {
				if !c.QKNorm() {
					break
				}
				for h := range e.heads {
					copy(e.x[h*D:(h+1)*D], norm(e.x[h*D:(h+1)*D], r.t[p+e.name]))
				}
			}
			rope(q[t], nh, t)
			rope(k[t], nkv, t)
		}
		scale := 1 / math.Sqrt(c.QueryPreAttnScalar)
		if wrong.headDimScale {
			scale = 1 / math.Sqrt(float64(D))
		}
		for t := range T {
			att := make([]float64, nh*D)
			j0 := 0
			if window > 0 {
				j0 = max(0, t-window+1)
			}
			for h := range nh {
				g := h / (nh / nkv)
				s := make([]float64, t+1)
				m := math.Inf(-1)
				for j := j0; j <= t; j++ {
					var d float64
					for i := range D {
						d += q[t][h*D+i] * k[j][g*D+i]
					}
					s[j] = d * scale
					if cp := c.AttnSoftcap; cp > 0 && !wrong.noAttnCap {
						s[j] = cp * math.Tanh(s[j]/cp)
					}
					m = max(m, s[j])
				}
				var sum float64
				for j := j0; j <= t; j++ {
					s[j] = math.Exp(s[j] - m)
					sum += s[j]
				}
				for j := j0; j <= t; j++ {
					for i := range D {
						att[h*D+i] += s[j] / sum * v[j][g*D+i]
					}
				}
			}
			o := linear(att, p+"self_attn.o_proj", H, nh*D)
			postNorms, ffnNorm := c.GemmaPostNorms() && !wrong.noPostNorms, "pre_feedforward_layernorm.weight"
			if c.Gemma1() {
				ffnNorm = "post_attention_layernorm.weight"
			}
			if postNorms {
				o = norm(o, r.t[p+"post_attention_layernorm.weight"])
			}
			for i := range x[t] {
				x[t][i] += o[i]
			}
			n := norm(x[t], r.t[p+ffnNorm])
			gate, up := linear(n, p+"mlp.gate_proj", I, H), linear(n, p+"mlp.up_proj", I, H)
			for i, g := range gate {
				act := 0.5 * g * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(g+0.044715*g*g*g)))
				if wrong.silu {
					act = g / (1 + math.Exp(-g))
				}
				gate[i] = act * up[i]
			}
			down := linear(gate, p+"mlp.down_proj", H, I)
			if postNorms {
				down = norm(down, r.t[p+"post_feedforward_layernorm.weight"])
			}
			for i := range x[t] {
				x[t][i] += down[i]
			}
		}
	}
	logits := make([][]float64, T)
	for t := range T {
		n := norm(x[t], r.t["model.norm.weight"])
		logits[t] = make([]float64, V)
		for i := range V {
			for j := range H {
				logits[t][i] += n[j] * emb[i*H+j]
			}
			if cp := c.FinalSoftcap; cp > 0 && !wrong.noFinalCap {
				logits[t][i] = cp * math.Tanh(logits[t][i]/cp)
			}
		}
	}
	return logits
}

// TestGemma3MatchesReference runs a small random-weight Gemma 3 text
// checkpoint (4 layers, sliding ones with a window of 3 under the 12
// positions and full ones, head_dim 32 where hidden/heads is 16,
// query_pre_attn_scalar 24) on the CPU backend, in one forward, token by
// token through the paged decode step and layer by layer (LoadLayer),
// against gemmaForward in float64; the reference with any one Gemma
// detail dropped is far off.
func TestGemma3MatchesReference(t *testing.T) {
	t.Run("attention_bias", func(t *testing.T) {
		// Gemma3Attention's q/k/v/o biases (none released has them).
		dir := fixtures.Gemma3(t, map[string]any{"attention_bias": true}, synth.Options{DType: "f32", Seed: 6})
		ref := loadRef(t, dir)
		if _, ok := ref.t["model.layers.1.self_attn.o_proj.bias"]; !ok {
			t.Fatal("no o_proj bias written")
		}
		gemmaMatches(t, dir, gemmaForward(ref, qwen2IDs, gemmaWrong{}))
	})
	dir := fixtures.Gemma3(t, nil, synth.Options{DType: "f32", Seed: 5})
	ref := loadRef(t, dir)
	if ref.cfg.LayerWindow(0) != 3 || ref.cfg.LayerWindow(1) != 0 || ref.cfg.HeadDim != 32 {
		t.Fatalf("fixture: windows %d %d head_dim %d", ref.cfg.LayerWindow(0), ref.cfg.LayerWindow(1), ref.cfg.HeadDim)
	}
	want := gemmaForward(ref, qwen2IDs, gemmaWrong{})
	referenceTells(t, ref, want, map[string]gemmaWrong{
		"without the +1 on the norms":       {noPlusOne: true},
		"without the embedding scale":       {noEmbedScale: true},
		"with rope_theta in sliding layers": {globalRope: true},
		"without the window":                {noWindow: true},
		"without the post norms":            {noPostNorms: true},
		"with head_dim's attention scale":   {headDimScale: true},
	})
	gemmaMatches(t, dir, want)
}

// referenceTells checks that gemmaForward with each of wrongs' details
// dropped is farther than nmse 1e-3 from want, its logits with none
// dropped: the comparison with want can tell each detail.
func referenceTells(t *testing.T, ref *refModel, want [][]float64, wrongs map[string]gemmaWrong) {
	t.Helper()
	for name, w := range wrongs {
		if d := nmseRows(splitRows(flatten(gemmaForward(ref, qwen2IDs, w)), ref.cfg.VocabSize), want); !(d > 1e-3) {
			t.Errorf("the reference %s is within nmse %.3g: the test could not tell", name, d)
		}
	}
}

// gemmaMatches checks the Gemma checkpoint dir on the CPU backend against
// want, gemmaForward's logits of qwen2IDs: in one forward, token by token
// through the paged decode step, and layer by layer (LoadLayer) against
// the model's own outputs of each layer.
func gemmaMatches(t *testing.T, dir string, want [][]float64) {
	t.Helper()
	m := loadModel(t, dir)
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
	// Layer by layer, as the GPTQ driver runs them: the model's own
	// intermediates of each layer's output.
	outs := map[string][]float32{}
	if _, err := m.Forward(qwen2IDs, nil, func(name string, v []float32, _, _ int) {
		if strings.HasSuffix(name, ".out") || name == "model.embed" {
			outs[name] = append([]float32(nil), v...)
		}
	}); err != nil {
		t.Fatal(err)
	}
	set, cfg := fixtures.OpenCheckpoint(t, dir)
	x := outs["model.embed"]
	for i := range cfg.NumHiddenLayers {
		l, err := LoadLayer(set, cfg, i, cpu.New(1))
		if err != nil {
			t.Fatal(err)
		}
		if x, err = l.Forward(x, nil); err != nil {
			t.Fatal(err)
		}
		l.Free()
		w := outs[LayerPrefix(i)+".out"]
		for j := range w {
			if d := math.Abs(float64(x[j] - w[j])); d > 1e-4*(1+math.Abs(float64(w[j]))) {
				t.Fatalf("layer %d: LoadLayer's output [%d] %g, the model's %g", i, j, x[j], w[j])
			}
		}
	}
}

// TestGemma2MatchesReference runs a small random-weight Gemma 2
// checkpoint (fixtures.Gemma2: 4 layers alternating sliding, with a window
// of 3 under the 12 positions, and full attention; scores soft-capped at 2
// and logits at 3) on the CPU backend as gemmaMatches does, against
// gemmaForward in float64; the reference without either cap, or with
// another Gemma detail dropped, is far off. With null caps the model runs
// without them.
func TestGemma2MatchesReference(t *testing.T) {
	dir := fixtures.Gemma2(t, nil, synth.Options{DType: "f32", Seed: 7})
	ref := loadRef(t, dir)
	if ref.cfg.LayerWindow(0) != 3 || ref.cfg.LayerWindow(1) != 0 || ref.cfg.AttnSoftcap != 2 || ref.cfg.FinalSoftcap != 3 || ref.cfg.QKNorm() {
		t.Fatalf("fixture: windows %d %d, caps %g %g, q/k norms %v", ref.cfg.LayerWindow(0), ref.cfg.LayerWindow(1),
			ref.cfg.AttnSoftcap, ref.cfg.FinalSoftcap, ref.cfg.QKNorm())
	}
	want := gemmaForward(ref, qwen2IDs, gemmaWrong{})
	referenceTells(t, ref, want, map[string]gemmaWrong{
		"without the scores' soft-capping": {noAttnCap: true},
		"without the logits' soft-capping": {noFinalCap: true},
		"without the +1 on the norms":      {noPlusOne: true},
		"without the window":               {noWindow: true},
		"without the post norms":           {noPostNorms: true},
		"with head_dim's attention scale":  {headDimScale: true},
	})
	gemmaMatches(t, dir, want)
	t.Run("null soft-capping", func(t *testing.T) {
		dir := fixtures.Gemma2(t, map[string]any{"attn_logit_softcapping": json.RawMessage("null"),
			"final_logit_softcapping": json.RawMessage("null")}, synth.Options{DType: "f32", Seed: 7})
		ref := loadRef(t, dir)
		if ref.cfg.AttnSoftcap != 0 || ref.cfg.FinalSoftcap != 0 {
			t.Fatalf("null caps read as %g %g", ref.cfg.AttnSoftcap, ref.cfg.FinalSoftcap)
		}
		gemmaMatches(t, dir, gemmaForward(ref, qwen2IDs, gemmaWrong{}))
	})
}

// TestGemmaMatchesReference runs a small random-weight Gemma checkpoint
// (fixtures.Gemma: 4 layers, multi-query, head_dim 32 where hidden/heads
// is 16, hidden_act "gelu") on the CPU backend as gemmaMatches does,
// against gemmaForward in float64; the reference with one Gemma detail
// dropped is far off.
func TestGemmaMatchesReference(t *testing.T) {
	dir := fixtures.Gemma(t, nil, synth.Options{DType: "f32", Seed: 8})
	ref := loadRef(t, dir)
	if !ref.cfg.Gemma1() || ref.cfg.NumKeyValueHeads != 1 || ref.cfg.HeadDim != 32 || ref.cfg.LayerWindow(0) != 0 {
		t.Fatalf("fixture: gemma1 %v, kv heads %d, head_dim %d, window %d", ref.cfg.Gemma1(), ref.cfg.NumKeyValueHeads, ref.cfg.HeadDim,
			ref.cfg.LayerWindow(0))
	}
	if _, ok := ref.t["model.layers.0.pre_feedforward_layernorm.weight"]; ok {
		t.Fatal("the fixture has Gemma 2's norms")
	}
	want := gemmaForward(ref, qwen2IDs, gemmaWrong{})
	referenceTells(t, ref, want, map[string]gemmaWrong{
		"without the +1 on the norms": {noPlusOne: true},
		"without the embedding scale": {noEmbedScale: true},
		"with SiLU":                   {silu: true},
	})
	gemmaMatches(t, dir, want)
}

// TestGemma3Refusals: a gemma3_text checkpoint must hold its four norms a
// layer; another model type may not have Gemma's.
func TestGemma3Refusals(t *testing.T) {
	t.Run("post_feedforward_layernorm missing", func(t *testing.T) {
		dir := fixtures.Gemma3(t, nil, synth.Options{DType: "f32", Seed: 1})
		fixtures.RewriteTensors(t, dir, func(tn *safetensors.Tensor) bool {
			return tn.Name != "model.layers.2.post_feedforward_layernorm.weight"
		})
		_, err := Load(dir, cpu.New(1))
		if err == nil || !strings.Contains(err.Error(), "model.layers.2.post_feedforward_layernorm.weight") {
			t.Errorf("Load: %v, want the missing norm named", err)
		}
	})
	t.Run("pre_feedforward_layernorm in qwen3", func(t *testing.T) {
		dir := fixtures.Qwen3(t, nil, synth.Options{DType: "f32", Seed: 1})
		fixtures.RewriteTensors(t, dir, nil, biasTensor("model.layers.0.pre_feedforward_layernorm.weight", 64, 0, 1))
		_, err := Load(dir, cpu.New(1))
		if err == nil || !strings.Contains(err.Error(), "does not explain (model.layers.0.pre_feedforward_layernorm.weight)") {
			t.Errorf("Load: %v, want Gemma's norm in a qwen3 checkpoint refused", err)
		}
	})
}

// TestGemma3EmbedScaleRounded: in a 16-bit model the embedding scale is
// sqrt(hidden_size) rounded to the dtype first, as transformers'
// Gemma3TextScaledWordEmbedding casts embed_scale to the weights' dtype
// (hidden 96: sqrt 9.798 is 9.8125 in bf16, 9.796875 in f16), and the
// product rounded once; in fp32 it is float32(sqrt(96)).
func TestGemma3EmbedScaleRounded(t *testing.T) {
	dir := fixtures.Gemma3(t, map[string]any{"hidden_size": 96}, synth.Options{DType: "bf16", Seed: 2})
	ref := loadRef(t, dir)
	emb := ref.t["model.embed_tokens.weight"]
	ids := qwen2IDs[:5]
	for _, tc := range []struct {
		dt    runtime.DType
		scale float64
		round func(float64) float64
	}{
		{runtime.F32, float64(float32(math.Sqrt(96))), func(v float64) float64 { return float64(float32(v)) }},
		{runtime.BF16, 9.8125, func(v float64) float64 { return float64(half.BF16ToF32(half.F32ToBF16(float32(v)))) }},
		{runtime.F16, 9.796875, func(v float64) float64 { return float64(half.F16ToF32(half.F32ToF16(float32(v)))) }},
	} {
		t.Run(tc.dt.String(), func(t *testing.T) {
			m, err := LoadWith(dir, cpu.New(1).WithHalf(), Options{DType: tc.dt})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			var got []float32
			if _, err := m.Forward(ids, nil, func(name string, v []float32, _, _ int) {
				if name == "model.embed" {
					got = append([]float32(nil), v...)
				}
			}); err != nil {
				t.Fatal(err)
			}
			for r, id := range ids {
				for j := range 96 {
					e := tc.round(emb[id*96+j]) // the table in the dtype
					if want := tc.round(e * tc.scale); float64(got[r*96+j]) != want {
						t.Fatalf("row %d [%d]: %g, want %g (%g × %g rounded)", r, j, got[r*96+j], want, e, tc.scale)
					}
				}
			}
		})
	}
}

// TestMultimodal loads a multimodal checkpoint of each wrapper
// (internal/fixtures.Multimodal: gemma3, mistral3, qwen2_vl, qwen2_5_vl,
// qwen3_vl, qwen3_vl_moe) in each of its tensor-name layouts: its text
// model's logits equal, bit for bit, those of the same weights as a
// checkpoint of the text type (gemma3_text, mistral, qwen2, qwen3,
// qwen3_moe), in fp32 and bf16 (the vision tower and projector are kept,
// not loaded; M-RoPE rotates text as RoPE; Qwen3-VL-MoE's fused experts
// read as the per-expert Linears they were fused from).
func TestMultimodal(t *testing.T) {
	for _, tc := range []struct {
		wrapper string
		layouts []string
		text    func(testing.TB, map[string]any, synth.Options) string
	}{
		{"gemma3", []string{"4.50", "4.52"}, fixtures.Gemma3},
		{"mistral3", []string{"4.50", "4.52"}, fixtures.Mistral},
		{"qwen2_vl", []string{"4.50"}, fixtures.Qwen2},
		{"qwen2_5_vl", []string{"4.50", "4.52"}, fixtures.Qwen2},
		{"qwen3_vl", []string{"4.52"}, fixtures.Qwen3},
		{"qwen3_vl_moe", []string{"4.52"}, fixtures.Qwen3MoE},
	} {
		for _, layout := range tc.layouts {
			t.Run(tc.wrapper+"/"+layout, func(t *testing.T) {
				text := tc.text(t, nil, synth.Options{Seed: 7})
				mm := fixtures.Multimodal(t, tc.wrapper, layout, text)
				if err := Check(mm); err != nil {
					t.Fatal(err)
				}
				if tc.wrapper == "qwen3_vl_moe" {
					set, _ := fixtures.OpenCheckpoint(t, mm)
					names := set.Names()
					if !slices.Contains(names, "model.language_model.layers.1.mlp.experts.gate_up_proj") || slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, "experts.0.") }) {
						t.Fatalf("the fixture's experts are not fused: %v", names)
					}
				}
				for _, dt := range []runtime.DType{runtime.F32, runtime.BF16} {
					var logits [2][]float32
					for i, dir := range []string{text, mm} {
						m, err := LoadWith(dir, cpu.New(1).WithHalf(), Options{DType: dt})
						if err != nil {
							t.Fatal(err)
						}
						if logits[i], err = m.Forward(qwen2IDs, nil, nil); err != nil {
							t.Fatal(err)
						}
						m.Close()
					}
					if len(logits[0]) == 0 || !slices.Equal(logits[0], logits[1]) {
						t.Errorf("%v: the multimodal checkpoint's logits differ from the text checkpoint's", dt)
					}
				}
			})
		}
	}
}
