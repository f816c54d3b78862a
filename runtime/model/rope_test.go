package model

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/kvcache"
)

// TestRoPEScaling: a llama3 or linear RoPE scaling in config.json changes
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
