package model

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// refModel is a checkpoint's weights in float64, for refForward.
type refModel struct {
	cfg *hfconfig.Config
	t   map[string][]float64
	// qkNorm says where forward applies the per-head q_norm/k_norm that
	// the checkpoint holds (Qwen3): before RoPE as transformers does, or,
	// for the tests' wrong models, not at all or after RoPE.
	qkNorm qkNormAt
	// moeTopK (if not 0) and moeNoNorm change moe's routing, for the
	// tests' wrong models.
	moeTopK   int
	moeNoNorm bool
	// moeNoShared leaves a Qwen2-MoE layer's shared expert out, and
	// moeUngated adds it without its sigmoid gate, for the tests' wrong
	// models.
	moeNoShared, moeUngated bool
	// dropGranite names one of Granite's multipliers forward leaves out
	// ("embedding", "attention", "residual", "logits"), for the tests'
	// wrong models.
	dropGranite string
}

type qkNormAt int

const (
	qkBeforeRoPE qkNormAt = iota
	qkNone
	qkAfterRoPE
)

func loadRef(t *testing.T, dir string) *refModel {
	t.Helper()
	set, cfg := fixtures.OpenCheckpoint(t, dir)
	r := &refModel{cfg: cfg, t: map[string][]float64{}}
	for _, n := range set.Names() {
		tn, err := set.Tensor(n)
		if err != nil {
			t.Fatal(err)
		}
		v, err := tn.Float32()
		if err != nil {
			t.Fatal(err)
		}
		f := make([]float64, len(v))
		for i, x := range v {
			f[i] = float64(x)
		}
		r.t[n] = f
	}
	return r
}

// refForward is transformers' Qwen2ForCausalLM (and LlamaForCausalLM with
// attention_bias) written from its equations in float64: for each layer
// h = x + o_proj(attn(rope(q_proj(n)+bq), rope(k_proj(n)+bk), v_proj(n)+bv)) (+ bo),
// n = rmsnorm(x); out = h + down(silu(gate(m)) * up(m)), m = rmsnorm(h);
// logits = rmsnorm(x)·Eᵀ (tied); a mixture-of-experts layer's MLP is
// moe's. Biases are read where the checkpoint has
// them, unless noBias. Where it has self_attn.q_norm/k_norm (Qwen3), each
// head of q and k (after the bias) is rmsnorm'd over head_dim with them,
// before RoPE (r.qkNorm moves or drops that). It shares no code with the
// runtime. Granite (GraniteForCausalLM) multiplies the embeddings by
// embedding_multiplier, scales the scores by attention_multiplier instead
// of head_dim**-0.5, multiplies o_proj's and down's outputs by
// residual_multiplier before their residual adds and divides the logits by
// logits_scaling. OLMo 2 (Olmo2ForCausalLM) has no input norms (n = x,
// m = h) and normalizes the sublayers' outputs instead, o_proj's by
// post_attention_layernorm and down's by post_feedforward_layernorm,
// before their residual adds, and its q_norm/k_norm span the whole
// projection (r.qkNorm moves or drops them too), as OLMoE's do.
func (r *refModel) forward(ids []int, noBias bool) [][]float64 {
	c := r.cfg
	embMul, scale, resMul, logitDiv := 1.0, 1/math.Sqrt(float64(c.HeadDim)), 1.0, 1.0
	if g := c.Granite; g != nil {
		embMul, scale, resMul, logitDiv = g.EmbeddingMultiplier, g.AttentionMultiplier, g.ResidualMultiplier, g.LogitsScaling
		switch r.dropGranite {
		case "embedding":
			embMul = 1
		case "attention":
			scale = 1 / math.Sqrt(float64(c.HeadDim))
		case "residual":
			resMul = 1
		case "logits":
			logitDiv = 1
		}
	}
	H, D, nh, nkv, I, V := c.HiddenSize, c.HeadDim, c.NumAttentionHeads, c.NumKeyValueHeads, c.IntermediateSize, c.VocabSize
	T := len(ids)
	eps := c.RMSNormEps
	norm := func(x []float64, w []float64) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		inv := 1 / math.Sqrt(ss/float64(len(x))+eps)
		out := make([]float64, len(x))
		for i, v := range x {
			out[i] = v * inv * w[i]
		}
		return out
	}
	linear := func(x []float64, name string, n, k int) []float64 {
		w := r.t[name+".weight"]
		out := make([]float64, n)
		for i := range n {
			var s float64
			for j := range k {
				s += x[j] * w[i*k+j]
			}
			if b, ok := r.t[name+".bias"]; ok && !noBias {
				s += b[i]
			}
			out[i] = s
		}
		return out
	}
	rope := func(x []float64, heads, pos int) {
		for h := range heads {
			v := x[h*D : (h+1)*D]
			for j := range D / 2 {
				a := float64(pos) * math.Pow(c.RopeTheta, -2*float64(j)/float64(D))
				x1, x2 := v[j], v[j+D/2]
				v[j], v[j+D/2] = x1*math.Cos(a)-x2*math.Sin(a), x2*math.Cos(a)+x1*math.Sin(a)
			}
		}
	}
	emb := r.t["model.embed_tokens.weight"]
	x := make([][]float64, T)
	for t, id := range ids {
		x[t] = append([]float64(nil), emb[id*H:(id+1)*H]...)
		for i := range x[t] {
			x[t][i] *= embMul
		}
	}
	for l := range c.NumHiddenLayers {
		p := fmt.Sprintf("model.layers.%d.", l)
		q, k, v := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := range T {
			n := x[t]
			if !c.Olmo2() {
				n = norm(x[t], r.t[p+"input_layernorm.weight"])
			}
			q[t] = linear(n, p+"self_attn.q_proj", nh*D, H)
			k[t] = linear(n, p+"self_attn.k_proj", nkv*D, H)
			v[t] = linear(n, p+"self_attn.v_proj", nkv*D, H)
			headNorm := func(x []float64, name string, heads int) {
				w, ok := r.t[p+name]
				if !ok {
					return
				}
				if c.FullQKNorm() {
					copy(x, norm(x, w))
					return
				}
				for h := range heads {
					copy(x[h*D:(h+1)*D], norm(x[h*D:(h+1)*D], w))
				}
			}
			if r.qkNorm == qkBeforeRoPE {
				headNorm(q[t], "self_attn.q_norm.weight", nh)
				headNorm(k[t], "self_attn.k_norm.weight", nkv)
			}
			rope(q[t], nh, t)
			rope(k[t], nkv, t)
			if r.qkNorm == qkAfterRoPE {
				headNorm(q[t], "self_attn.q_norm.weight", nh)
				headNorm(k[t], "self_attn.k_norm.weight", nkv)
			}
		}
		for t := range T {
			att := make([]float64, nh*D)
			for h := range nh {
				g := h / (nh / nkv)
				s := make([]float64, t+1)
				m := math.Inf(-1)
				for j := range t + 1 {
					var d float64
					for i := range D {
						d += q[t][h*D+i] * k[j][g*D+i]
					}
					s[j] = d * scale
					m = max(m, s[j])
				}
				var sum float64
				for j := range s {
					s[j] = math.Exp(s[j] - m)
					sum += s[j]
				}
				for j := range s {
					for i := range D {
						att[h*D+i] += s[j] / sum * v[j][g*D+i]
					}
				}
			}
			o := linear(att, p+"self_attn.o_proj", H, nh*D)
			if c.Olmo2() {
				o = norm(o, r.t[p+"post_attention_layernorm.weight"])
			}
			for i := range x[t] {
				x[t][i] += o[i] * resMul
			}
			n := x[t]
			if !c.Olmo2() {
				n = norm(x[t], r.t[p+"post_attention_layernorm.weight"])
			}
			mlp := func(n []float64, prefix string, I int) []float64 {
				gate, up := linear(n, prefix+"gate_proj", I, H), linear(n, prefix+"up_proj", I, H)
				for i := range gate {
					gate[i] = gate[i] / (1 + math.Exp(-gate[i])) * up[i]
				}
				return linear(gate, prefix+"down_proj", H, I)
			}
			var down []float64
			if c.Sparse(l) {
				down = r.moe(n, l, mlp)
			} else {
				down = mlp(n, p+"mlp.", I)
			}
			if c.Olmo2() {
				down = norm(down, r.t[p+"post_feedforward_layernorm.weight"])
			}
			for i := range x[t] {
				x[t][i] += down[i] * resMul
			}
		}
	}
	head := r.t["lm_head.weight"]
	if c.TieWordEmbeddings {
		head = emb
	}
	logits := make([][]float64, T)
	for t := range T {
		n := norm(x[t], r.t["model.norm.weight"])
		logits[t] = make([]float64, V)
		for i := range V {
			for j := range H {
				logits[t][i] += n[j] * head[i*H+j]
			}
			logits[t][i] /= logitDiv
		}
	}
	return logits
}

// nmseRows is Σ(got-want)²/Σwant² over rows of logits.
func nmseRows(got [][]float32, want [][]float64) float64 {
	var num, den float64
	for t := range want {
		for i, w := range want[t] {
			d := float64(got[t][i]) - w
			num += d * d
			den += w * w
		}
	}
	return num / den
}

func splitRows(flat []float32, v int) [][]float32 {
	rows := make([][]float32, len(flat)/v)
	for t := range rows {
		rows[t] = flat[t*v : (t+1)*v]
	}
	return rows
}

var qwen2IDs = []int{3, 200, 17, 99, 255, 0, 64, 128, 31, 7, 150, 42}

// TestQwen2MatchesReference runs small random-weight Qwen2 checkpoints
// (q/k/v biases) and a Llama one with attention_bias (q/k/v/o biases) on
// the CPU backend, in one forward and token by token through the paged
// decode step, against refForward in float64; the same reference without
// biases is far off, so the biases are applied and matter.
func TestQwen2MatchesReference(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit map[string]any
	}{
		{"qwen2", nil},
		{"qwen2-untied", map[string]any{"tie_word_embeddings": false}},
		{"llama-attention_bias", map[string]any{"model_type": "llama", "architectures": []string{"LlamaForCausalLM"}, "attention_bias": true,
			"use_sliding_window": nil, "sliding_window": nil, "max_window_layers": nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := fixtures.Qwen2(t, tc.edit, synth.Options{DType: "f32", Seed: 3})
			ref := loadRef(t, dir)
			if tc.name == "llama-attention_bias" {
				if _, ok := ref.t["model.layers.1.self_attn.o_proj.bias"]; !ok {
					t.Fatal("synth wrote no o_proj bias for attention_bias")
				}
			}
			want, plain := ref.forward(qwen2IDs, false), ref.forward(qwen2IDs, true)
			if d := nmseRows(splitRows(flatten(plain), ref.cfg.VocabSize), want); !(d > 1e-3) {
				t.Fatalf("the biases move the reference's logits by nmse %.3g only: the test could not tell them dropped", d)
			}
			m := loadModel(t, dir)
			lg, err := m.Forward(qwen2IDs, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := nmseRows(splitRows(lg, m.Vocab()), want); !(d < 1e-10) {
				t.Errorf("forward: logits nmse %.3g against the float64 reference", d)
			}
			// Prompt of 4 in one step, then one token a step: the paged
			// decode path (runtime.PagedDecoder) with its RoPEStore.
			got := qwen2AllSteps(t, m)
			if !m.CanDraft(nil) {
				t.Fatal("the CPU backend has no decode path")
			}
			if d := nmseRows(got, want); !(d < 1e-10) {
				t.Errorf("paged steps: logits nmse %.3g against the float64 reference", d)
			}
		})
	}
}

func flatten(rows [][]float64) []float32 {
	var out []float32
	for _, r := range rows {
		for _, v := range r {
			out = append(out, float32(v))
		}
	}
	return out
}

// TestQwen2Refusals: what a qwen2 checkpoint must hold and what it may
// not say.
func TestQwen2Refusals(t *testing.T) {
	t.Run("bias missing", func(t *testing.T) {
		dir := fixtures.Qwen2(t, nil, synth.Options{DType: "f32", Seed: 1})
		fixtures.RewriteTensors(t, dir, func(tn *safetensors.Tensor) bool { return tn.Name != "model.layers.1.self_attn.v_proj.bias" })
		_, err := Load(dir, cpu.New(1))
		if err == nil || !strings.Contains(err.Error(), "missing (model.layers.1.self_attn.v_proj.bias)") {
			t.Errorf("Load: %v, want the missing v_proj bias named", err)
		}
	})
	t.Run("o_proj bias", func(t *testing.T) {
		// Qwen2's o_proj has no bias: a tensor for one is not explained.
		dir := fixtures.Qwen2(t, nil, synth.Options{DType: "f32", Seed: 1})
		fixtures.RewriteTensors(t, dir, nil, biasTensor("model.layers.0.self_attn.o_proj.bias", 64, 2, 1))
		_, err := Load(dir, cpu.New(1))
		if err == nil || !strings.Contains(err.Error(), "does not explain (model.layers.0.self_attn.o_proj.bias)") {
			t.Errorf("Load: %v, want the o_proj bias refused", err)
		}
	})
	t.Run("use_sliding_window", func(t *testing.T) {
		dir := fixtures.Qwen2(t, nil, synth.Options{DType: "f32", Seed: 1})
		editConfig(t, dir, `"use_sliding_window": false`, `"use_sliding_window": true`)
		_, err := Load(dir, cpu.New(1))
		if err == nil || !strings.Contains(err.Error(), "config.json: use_sliding_window: true") {
			t.Errorf("Load: %v, want use_sliding_window refused", err)
		}
	})
	t.Run("mlp_bias", func(t *testing.T) {
		dir := fixtures.Qwen2(t, map[string]any{"model_type": "llama", "mlp_bias": true, "use_sliding_window": nil}, synth.Options{DType: "f32", Seed: 1})
		// (synth draws the MLP's biases too: keep one, of one value.)
		fixtures.RewriteTensors(t, dir, func(tn *safetensors.Tensor) bool {
			return !strings.Contains(tn.Name, "mlp.") || !strings.HasSuffix(tn.Name, ".bias")
		},
			biasTensor("model.layers.1.mlp.up_proj.bias", 128, 5, 0.25))
		_, err := Load(dir, cpu.New(1))
		if err == nil || !strings.Contains(err.Error(), `tensor "model.layers.1.mlp.up_proj.bias": largest |value| 0.25 (element 5), want all zeros`) {
			t.Errorf("Load: %v, want the MLP bias refused", err)
		}
	})
}

// qwen2GPTQ is 4-bit, group 32, act order: synth then writes each input's
// modules with one random processing order (q/k/v, gate/up).
func qwen2GPTQ() *gptq.QuantizeConfig {
	q := gptq.DefaultQuantizeConfig()
	q.Bits, q.GroupSize, q.DescAct = 4, 32, true
	return &q
}

// qwen2Steps feeds qwen2IDs[:4] to a sequence of m, then one token a step
// to the end of qwen2IDs, returning each step's last logits.
func qwen2Steps(t *testing.T, m *Model) [][]float32 {
	t.Helper()
	c, _, steps := pagedPrompts(t, m, [][]int{qwen2IDs[:4]})
	defer c.Free()
	steps[0].Logits = true
	var out [][]float32
	for i := 4; i <= len(qwen2IDs); i++ {
		lg, err := m.Step(c, steps)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, lg[0])
		if i < len(qwen2IDs) {
			steps[0].Tokens = qwen2IDs[i : i+1]
		}
	}
	return out
}

// apQuant adds runtime.AttentionProjector alone to the emulated backend:
// o_proj's product straight from attention, then the add and norm.
type apQuant struct {
	*quantCPU
	fused int
}

func (q *apQuant) PagedAttentionMatMul(dst, att, qt, kc, vc, tables, pos runtime.Tensor, blockSize int, p runtime.AttentionParams, w runtime.Tensor) {
	q.PagedAttention(att, qt, kc, vc, tables, pos, blockSize, p)
	q.MatMul(dst, att, w)
	q.fused++
}

// TestQwen2DecodeFusedPaths runs GPTQ checkpoints with biases (Qwen2's
// q/k/v; a llama config's attention_bias, q/k/v/o) through the decode
// step on the emulated fusing backends of fold_test: where q/k/v products
// could rotate and store in their epilogue (runtime.RoPEFuser), the biased
// layers must not let them (RoPE would come before the bias) and still take
// the products that normalize their input; o_proj's bias must reach x on
// each of its paths (its product, added into x by MatMulAdd or straight
// from attention). Every step matches the same emulated backend without
// fusion, whose plain path TestQwen2MatchesReference holds to float64.
// Qwen3's per-head q/k norms (with and without attention_bias) take the
// same unfused q/k path: TestQwen3MatchesReference holds their plain path.
func TestQwen2DecodeFusedPaths(t *testing.T) {
	for _, ck := range []struct {
		name  string
		edit  map[string]any
		qwen3 bool
		oBias bool
	}{
		{"qwen2", nil, false, false},
		{"llama-attention_bias", map[string]any{"model_type": "llama", "attention_bias": true, "use_sliding_window": nil}, false, true},
		{"qwen3", nil, true, false},
		{"qwen3-attention_bias", map[string]any{"attention_bias": true}, true, true},
	} {
		t.Run(ck.name, func(t *testing.T) {
			fixture := fixtures.Qwen2
			if ck.qwen3 {
				fixture = fixtures.Qwen3
			}
			dir := fixture(t, ck.edit, synth.Options{Seed: 5, GPTQ: qwen2GPTQ()})
			quant := func() *quantCPU { return &quantCPU{Backend: cpu.New(0), t: t, widths: map[runtime.Tensor][]int{}} }
			open := func(b runtime.Backend) *Model {
				m, err := LoadWith(dir, b, Options{DType: runtime.BF16})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(m.Close)
				return m
			}
			want := qwen2Steps(t, open(quant()))
			rope := &ropeQuant{quantCPU: quant()}
			normed := &ropeNorm{normCPU: &normCPU{quantCPU: quant()}}
			glu := &gluNormAP{gluNormCPU: &gluNormCPU{quantCPU: quant(), rows: 8}}
			proj := &projQuant{quantCPU: quant()}
			ap := &apQuant{quantCPU: quant()}
			for _, c := range []struct {
				name string
				b    runtime.Backend
				// used counts the fused calls the step must have made.
				used func() int
			}{
				{"rope", rope, func() int { return 1 }},
				{"norm-rope", normed, func() int { return normed.normCPU.fused }},
				{"glu-norm", glu, func() int { return glu.added * glu.gluNormCPU.fused }},
				{"residual-projection", proj, func() int { return proj.added }},
				{"attention-projection", ap, func() int { return ap.fused }},
			} {
				t.Run(c.name, func(t *testing.T) {
					m := open(c.b)
					if m.layers[0].qkv == nil || !m.layers[0].unfusedQK() {
						t.Fatalf("layer 0: fused q/k/v %v, biased or q/k-normed %v: the test does not reach the fused paths", m.layers[0].qkv != nil, m.layers[0].unfusedQK())
					}
					if ck.qwen3 != (m.layers[0].qNorm != nil) {
						t.Fatalf("layer 0: q_norm %v", m.layers[0].qNorm != nil)
					}
					if ck.oBias != (m.layers[0].bias[oProj] != nil) {
						t.Fatalf("layer 0: o_proj bias %v", m.layers[0].bias[oProj] != nil)
					}
					got := qwen2Steps(t, m)
					if rope.fused != 0 || normed.fused != 0 {
						t.Errorf("%d q/k/v products rotated in their epilogue, before the bias or q/k norm", rope.fused+normed.fused)
					}
					if c.used() == 0 {
						t.Error("the fused path was not taken")
					}
					perStep := func(steps [][]float32) [][][]float32 {
						out := make([][][]float32, len(steps))
						for i, lg := range steps {
							out[i] = [][]float32{lg}
						}
						return out
					}
					sameSteps(t, c.name, perStep(got), perStep(want))
				})
			}
		})
	}
}
