package model

import (
	"bytes"
	"encoding/json"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/kvcache"
)

// yarnTiny is a yarn scaling for stories260K (head_dim 8, rope_theta
// 10000): factor 8 past original_max_position_embeddings 32, beta_fast
// 32, beta_slow 0.25, whose correction dimensions
// 8·ln(32/(2π·r))/(2·ln 10000) are below 0 (r 32) and 1.309 (r 0.25),
// rounded out to [0, 2]; the default attention factor 0.1·ln 8 + 1.
const yarnTiny = `{"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 32, "beta_slow": 0.25}`

// yarnTinyInv is yarnTiny's inverse frequency j by hand: ramp j/2 over
// [0, 2], 1/10000^(j/4) kept at 0, divided by 8 from 2 on.
func yarnTinyInv(j int) float64 {
	r := min(float64(j)/2, 1)
	inv := math.Pow(10000, -float64(j)/4)
	return inv/8*r + inv*(1-r)
}

// TestYarnAttentionFactor: yarn's attention factor A, which transformers
// multiplies into cos and sin, folded into the attention scale as A²
// (dimsOf) computes what transformers does. Layer 0's attention output
// (attn_out) on stories260K with yarnTiny, 64 positions (32 past the
// original context), is computed here independently from its normed
// input in float64: q, k and v projected, q and k rotated by cos·A and
// sin·A of the frequencies by hand, causal softmax scaled by
// head_dim^-0.5 as MistralAttention scales it, heads grouped 8 to 4. It
// matches the runtime's, and not the same computation with A = 1; the
// rotated q and k the runtime emits are the plain rotation (not times A),
// as the KV cache stores K. An explicit attention_factor 0.5 is checked
// the same way.
func TestYarnAttentionFactor(t *testing.T) {
	dir := fixture(t, "models/stories260K-hf-mistral")
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	const hidden, hd, heads, kvHeads = 64, 8, 8, 4
	w := map[string][]float32{}
	for _, m := range []string{"q_proj", "k_proj", "v_proj"} {
		tt, err := set.Tensor("model.layers.0.self_attn." + m + ".weight")
		if err != nil {
			t.Fatal(err)
		}
		if w[m], err = tt.Float32(); err != nil {
			t.Fatal(err)
		}
	}
	_, ids := fixtures.StoriesGreedy(t)
	ids = ids[:64]
	T := len(ids)
	for _, tc := range []struct {
		name, scaling string
		a             float64
	}{
		{"default factor", yarnTiny, 0.1*math.Log(8) + 1},
		{"attention_factor 0.5", `{"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 32, "beta_slow": 0.25, "attention_factor": 0.5}`, 0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := bytes.Replace(raw, []byte(`"rope_theta": 10000,`), []byte(`"rope_theta": 10000, "rope_scaling": `+tc.scaling+`,`), 1)
			cfg, err := hfconfig.Parse(doc, "config.json")
			if err != nil {
				t.Fatal(err)
			}
			m, err := FromWeights(set, cfg, nil, cpu.New(0))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			got := map[string][]float32{}
			if _, err := m.Forward(ids, nil, func(name string, x []float32, rows, cols int) {
				switch name {
				case "model.layers.0.attn_norm", "model.layers.0.attn_q", "model.layers.0.attn_k", "model.layers.0.attn_out":
					got[name] = append([]float32(nil), x...)
				}
			}); err != nil {
				t.Fatal(err)
			}
			norm := got["model.layers.0.attn_norm"]
			// proj returns norm·wᵀ [T, n] with row p rotated by mag·cos and
			// mag·sin of p·inv (rotate) or not.
			proj := func(wm []float32, n int, rotate bool, mag float64) []float64 {
				out := make([]float64, T*n)
				for p := range T {
					for o := range n {
						var s float64
						for k := range hidden {
							s += float64(norm[p*hidden+k]) * float64(wm[o*hidden+k])
						}
						out[p*n+o] = s
					}
					if !rotate {
						continue
					}
					for h0 := 0; h0 < n; h0 += hd {
						row := out[p*n+h0 : p*n+h0+hd]
						for j := range hd / 2 {
							sin, cos := math.Sincos(float64(p) * yarnTinyInv(j))
							x1, x2 := row[j], row[j+hd/2]
							row[j], row[j+hd/2] = mag*(x1*cos-x2*sin), mag*(x2*cos+x1*sin)
						}
					}
				}
				return out
			}
			// attend is transformers' eager attention over the rotated
			// q and k times a: softmax(q·k / √hd) v, causal.
			attend := func(a float64) []float64 {
				q, k, v := proj(w["q_proj"], heads*hd, true, a), proj(w["k_proj"], kvHeads*hd, true, a), proj(w["v_proj"], kvHeads*hd, false, 1)
				out := make([]float64, T*heads*hd)
				for p := range T {
					for h := range heads {
						kh := h / (heads / kvHeads)
						sc := make([]float64, p+1)
						mx := math.Inf(-1)
						for j := range sc {
							var s float64
							for e := range hd {
								s += q[p*heads*hd+h*hd+e] * k[j*kvHeads*hd+kh*hd+e]
							}
							sc[j] = s / math.Sqrt(hd)
							mx = max(mx, sc[j])
						}
						var z float64
						for j := range sc {
							sc[j] = math.Exp(sc[j] - mx)
							z += sc[j]
						}
						for j := range sc {
							for e := range hd {
								out[p*heads*hd+h*hd+e] += sc[j] / z * v[j*kvHeads*hd+kh*hd+e]
							}
						}
					}
				}
				return out
			}
			att := got["model.layers.0.attn_out"]
			withA, withoutA := backendtest.NMSE(att, attend(tc.a)), backendtest.NMSE(att, attend(1))
			t.Logf("layer 0 attn_out: NMSE %.3g against cos and sin times A = %g, %.3g against A = 1", withA, tc.a, withoutA)
			if withA > 1e-10 {
				t.Errorf("layer 0 attn_out: NMSE %.3g against transformers' attention with cos and sin times %g", withA, tc.a)
			}
			if withoutA < 1e-4 {
				t.Errorf("layer 0 attn_out: NMSE %.3g against the attention without the factor: it did not reach the scale", withoutA)
			}
			for _, e := range []struct {
				name string
				w    []float32
				n    int
			}{{"attn_q", w["q_proj"], heads * hd}, {"attn_k", w["k_proj"], kvHeads * hd}} {
				if d := backendtest.NMSE(got["model.layers.0."+e.name], proj(e.w, e.n, true, 1)); d > 1e-11 {
					t.Errorf("layer 0 %s: NMSE %.3g against the rotation without the factor: want RoPE's of the table alone", e.name, d)
				}
			}
		})
	}
}

// TestRoPEScaling: a llama3, linear or yarn RoPE scaling in config.json changes
// what the model computes exactly as its frequencies say. On stories260K
// (head_dim 8, rope_theta 10000: wavelengths 2π, 62.8, 628 and 6283)
// with llama3 factor 8, low_freq_factor 1, high_freq_factor 16,
// original_max_position_embeddings 1024 (edges 64 and 1024: two
// frequencies kept, one smoothed, one divided by 8), and with linear
// factor 4:
//   - the first position's logits are the unscaled model's, bit for bit
//     (a rotation by angle 0), the later ones differ;
//   - layer 0's rotated queries are its normed input projected by q_proj
//     and rotated in float64 by frequencies computed here from the
//     published formula, and not the plain frequencies' rotation;
//   - paged decode steps (RoPEStore) give the logits of the full forward.
func TestRoPEScaling(t *testing.T) {
	dir := fixture(t, "models/stories260K-hf-mistral")
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	wqt, err := set.Tensor("model.layers.0.self_attn.q_proj.weight")
	if err != nil {
		t.Fatal(err)
	}
	wq, err := wqt.Float32() // [64, 64]
	if err != nil {
		t.Fatal(err)
	}
	_, ids := fixtures.StoriesGreedy(t)
	ids = ids[:64]
	const hidden, hd = 64, 8

	// run loads the model of config.json with scaling added to it and
	// returns the logits of ids and layer 0's attn_norm and attn_q.
	run := func(t *testing.T, scaling string) (*Model, []float32, []float32, []float32) {
		t.Helper()
		doc := raw
		if scaling != "" {
			doc = bytes.Replace(raw, []byte(`"rope_theta": 10000,`), []byte(`"rope_theta": 10000, "rope_scaling": `+scaling+`,`), 1)
		}
		cfg, err := hfconfig.Parse(doc, "config.json")
		if err != nil {
			t.Fatal(err)
		}
		m, err := FromWeights(set, cfg, nil, cpu.New(0))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		var norm, q []float32
		lg, err := m.Forward(ids, nil, func(name string, x []float32, rows, cols int) {
			switch name {
			case "model.layers.0.attn_norm":
				norm = append([]float32(nil), x...)
			case "model.layers.0.attn_q":
				q = append([]float32(nil), x...)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return m, lg, norm, q
	}
	_, plainLg, _, _ := run(t, "")
	v := len(plainLg) / len(ids)
	// plain are the unscaled inverse frequencies 1/10000^(2j/8).
	plain := func(j int) float64 { return math.Pow(10000, -float64(2*j)/hd) }
	for _, tc := range []struct {
		name, scaling string
		inv           func(j int) float64
	}{
		{"llama3", `{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 16.0, "original_max_position_embeddings": 1024}`,
			func(j int) float64 {
				wavelen := 2 * math.Pi / plain(j)
				switch {
				case wavelen < 1024.0/16:
					return plain(j)
				case wavelen > 1024.0/1:
					return plain(j) / 8
				}
				smooth := (1024/wavelen - 1) / (16 - 1)
				return plain(j) * ((1-smooth)/8 + smooth)
			}},
		{"linear", `{"type": "linear", "factor": 4}`, func(j int) float64 { return plain(j) / 4 }},
		// yarn (yarnTiny): kept, half-ramped, divided, divided. attn_q
		// is the table's rotation alone: the attention factor is in the
		// attention scale (TestYarnAttentionFactor).
		{"yarn", yarnTiny, yarnTinyInv},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, lg, norm, q := run(t, tc.scaling)
			for i := range v {
				if lg[i] != plainLg[i] {
					t.Fatalf("position 0, logit %d: %v, unscaled %v: want the same bits", i, lg[i], plainLg[i])
				}
			}
			d := backendtest.NMSE(lg[v*(len(ids)-1):], f64s(plainLg[v*(len(ids)-1):]))
			t.Logf("position %d: logits NMSE %.3g against the unscaled model's", len(ids)-1, d)
			if d < 1e-3 {
				t.Errorf("position %d: logits within NMSE %.3g of the unscaled model's", len(ids)-1, d)
			}
			rotated := func(inv func(j int) float64) []float64 {
				out := make([]float64, len(q))
				for p := range ids {
					for n := range hidden {
						var s float64
						for k := range hidden {
							s += float64(norm[p*hidden+k]) * float64(wq[n*hidden+k])
						}
						out[p*hidden+n] = s
					}
					for h0 := 0; h0 < hidden; h0 += hd {
						row := out[p*hidden+h0 : p*hidden+h0+hd]
						for j := range hd / 2 {
							sin, cos := math.Sincos(float64(p) * inv(j))
							x1, x2 := row[j], row[j+hd/2]
							row[j], row[j+hd/2] = x1*cos-x2*sin, x2*cos+x1*sin
						}
					}
				}
				return out
			}
			scaled, unscaled := backendtest.NMSE(q, rotated(tc.inv)), backendtest.NMSE(q, rotated(plain))
			t.Logf("layer 0 attn_q: NMSE %.3g against the float64 rotation by the %s frequencies, %.3g by the plain ones", scaled, tc.name, unscaled)
			if scaled > 1e-11 {
				t.Errorf("layer 0 attn_q: NMSE %.3g against the float64 rotation by the %s frequencies", scaled, tc.name)
			}
			if unscaled < 1e-4 {
				t.Errorf("layer 0 attn_q: NMSE %.3g against the unscaled rotation: the scaling did not reach RoPE", unscaled)
			}
			// Decode steps through the paged cache (RoPEStore): a prompt of
			// 40, then one token at a time.
			c, err := m.NewPagedCache(16, 8, 64)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Free()
			var seq kvcache.Seq
			if err := c.Pool.Reserve(&seq, len(ids)); err != nil {
				t.Fatal(err)
			}
			defer c.Pool.Release(&seq)
			steps := [][]int{ids[:40]}
			for p := 40; p < len(ids); p++ {
				steps = append(steps, ids[p:p+1])
			}
			n := 0
			for _, toks := range steps {
				out, err := m.Step(c, []StepSeq{{Seq: &seq, Tokens: toks, Logits: true}})
				if err != nil {
					t.Fatal(err)
				}
				n += len(toks)
				want := lg[(n-1)*v : n*v]
				if d := backendtest.NMSE(out[0], f64s(want)); d > 1e-10 {
					t.Fatalf("step of %d tokens to position %d: logits NMSE %.3g against the full forward", len(toks), n-1, d)
				}
			}
		})
	}
}

func f64s(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// TestMinistral3 runs a ministral3 checkpoint (Ministral 3's text model:
// Mistral's layers, yarn from rope_parameters, a query scale of
// 1 + β·ln(1 + ⌊p/original⌋)): its logits are those of the same weights
// as a mistral checkpoint with the same yarn, bit for bit, since below
// original_max_position_embeddings the scale is exactly 1; the model's
// context is capped there (0 gives it, one position past it is refused),
// while with β 0 the declared max_position_embeddings stands.
func TestMinistral3(t *testing.T) {
	yarn := map[string]any{"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 64, "beta_fast": 32.0, "beta_slow": 1.0,
		"mscale": 1.0, "mscale_all_dim": 1.0, "rope_theta": 1e6}
	text := fixtures.Mistral(t, map[string]any{"rope_parameters": yarn, "rope_theta": nil, "max_position_embeddings": 512}, synth.Options{Seed: 3})
	for _, beta := range []float64{0.1, 0} {
		dir := t.TempDir()
		for _, e := range mustReadDir(t, text) {
			if e != "config.json" {
				fixtures.CopyFiles(t, text, dir, e)
			}
		}
		var cfg map[string]any
		raw, err := os.ReadFile(filepath.Join(text, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		y := maps.Clone(yarn)
		y["llama_4_scaling_beta"] = beta
		cfg["model_type"], cfg["architectures"], cfg["rope_parameters"] = "ministral3", []string{"Ministral3ForCausalLM"}, y
		b, _ := json.Marshal(cfg)
		if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		var logits [2][]float32
		for i, d := range []string{text, dir} {
			m, err := LoadWith(d, cpu.New(1), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if logits[i], err = m.Forward(qwen2IDs, nil, nil); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 64, false: 512}[beta != 0 && i == 1]; m.Context() != want {
				t.Errorf("β %g, %s: context %d, want %d", beta, filepath.Base(d), m.Context(), want)
			}
			m.Close()
		}
		if len(logits[0]) == 0 || !slices.Equal(logits[0], logits[1]) {
			t.Errorf("β %g: the ministral3 checkpoint's logits differ from the mistral one's", beta)
		}
		if _, err := LoadWith(dir, cpu.New(1), Options{Context: 65}); (err == nil) != (beta == 0) {
			t.Errorf("β %g: a context of 65 positions: %v", beta, err)
		}
	}
}

func mustReadDir(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}
