package quantize_test

import (
	"context"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// TestCollectImportanceMoE: a small Mixtral's importance sums each expert's
// gate/up inputs over the tokens the router sends it, and counts them, as
// llama-imatrix does: against a reference that routes each layer's MLP
// input (the ffn_norm intermediate) on the host with the checkpoint's
// router weights (runtime.RouteRow) and sums those rows' squares. Every
// token goes to two experts a layer; the attention's weights sum over all
// tokens.
func TestCollectImportanceMoE(t *testing.T) {
	dir := fixtures.Mixtral(t, nil, synth.Options{DType: "f32", Seed: 1})
	m, err := model.Load(dir, cpu.New(1))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	samples := []quantize.Sample{{IDs: []int{1, 20, 33, 47, 5, 9, 200, 17}}, {IDs: []int{3, 4, 5, 6, 7, 8}, Mask: []bool{true, true, true, true, false, false}}}
	// An observed pass before, whose routed rows the model counted too,
	// must not reach the importance's counts.
	if err := m.Observe([]int{5, 6, 7, 8, 9}, func(string, runtime.Tensor) error { return nil }); err != nil {
		t.Fatal(err)
	}
	imp, err := quantize.CollectImportance(context.Background(), m, samples, nil)
	if err != nil {
		t.Fatal(err)
	}
	if imp.Tokens != 12 {
		t.Fatalf("%d tokens, want 12 (padding left out)", imp.Tokens)
	}
	// The reference: each layer's MLP input rows, routed on the host.
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	moe := m.Config.MoE
	H, E := m.Config.HiddenSize, moe.Experts
	sums := map[string][]float64{}
	counts := map[string]int64{}
	for _, smp := range samples {
		n := len(smp.IDs)
		for n > 0 && smp.Mask != nil && !smp.Mask[n-1] {
			n--
		}
		err := m.Observe(smp.IDs[:n], func(name string, x runtime.Tensor) error {
			rest, _ := strings.CutPrefix(name, "model.layers.")
			layer, inter, _ := strings.Cut(rest, ".")
			li, err := strconv.Atoi(layer)
			if err != nil || inter != "ffn_norm" {
				return nil
			}
			rows := make([]float32, x.Len())
			if err := m.Backend().Download(rows, x); err != nil {
				return err
			}
			rt, err := set.Tensor(moe.RouterName(li))
			if err != nil {
				return err
			}
			router, err := rt.Float32()
			if err != nil {
				return err
			}
			probs, ids, wts := make([]float32, E), make([]int32, moe.TopK), make([]float32, moe.TopK)
			for r := range len(rows) / H {
				xr := rows[r*H : (r+1)*H]
				logits := make([]float32, E)
				for e := range E {
					var s float64
					for j, v := range xr {
						s += float64(v) * float64(router[e*H+j])
					}
					logits[e] = float32(s)
				}
				k := runtime.RouteRow(logits, moe.TopK, moe.NormTopK, probs, ids, wts)
				if k != moe.TopK {
					t.Fatalf("layer %d row %d: %d experts", li, r, k)
				}
				for _, e := range ids[:k] {
					key := "model.layers." + strconv.Itoa(li) + "." + moe.ExpertModules(int(e))[0] + ".weight"
					acc := sums[key]
					if acc == nil {
						acc = make([]float64, H)
						sums[key] = acc
					}
					for j, v := range xr {
						acc[j] += float64(v) * float64(v)
					}
					counts[key]++
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for li := range m.Config.NumHiddenLayers {
		var total int64
		for e := range E {
			mods := moe.ExpertModules(e)
			gate := "model.layers." + strconv.Itoa(li) + "." + mods[0] + ".weight"
			for _, mod := range mods {
				key := "model.layers." + strconv.Itoa(li) + "." + mod + ".weight"
				if imp.Counts[key] != counts[gate] {
					t.Errorf("%s: %d tokens, want %d (routed to expert %d)", key, imp.Counts[key], counts[gate], e)
				}
			}
			total += imp.Counts[gate]
			got, want := imp.Sum2[gate], sums[gate]
			if want == nil {
				want = make([]float64, H)
			}
			if len(got) != H {
				t.Fatalf("%s: %d sums, want %d", gate, len(got), H)
			}
			// up reads gate's input; down's sums are over the same tokens.
			if up, down := imp.Sum2["model.layers."+strconv.Itoa(li)+"."+mods[1]+".weight"], imp.Sum2["model.layers."+strconv.Itoa(li)+"."+mods[2]+".weight"]; !slices.Equal(up, got) || len(down) != m.Config.MoE.ExpertSize {
				t.Errorf("expert %d of layer %d: up's sums differ from gate's, or down has %d (want %d)", e, li, len(down), m.Config.MoE.ExpertSize)
			}
			for j := range want {
				if d := math.Abs(got[j] - want[j]); d > 1e-4*(1+want[j]) {
					t.Fatalf("%s: sum %d = %g, want %g (the routed rows' squares)", gate, j, got[j], want[j])
				}
			}
		}
		if total != imp.Tokens*int64(moe.TopK) {
			t.Errorf("layer %d: experts' tokens add up to %d, want %d (top %d of each)", li, total, imp.Tokens*int64(moe.TopK), moe.TopK)
		}
		if q := "model.layers." + strconv.Itoa(li) + ".self_attn.q_proj.weight"; len(imp.Sum2[q]) != H || imp.Counts[q] != 0 {
			t.Errorf("%s: %d sums, counted apart %d; want %d over all tokens", q, len(imp.Sum2[q]), imp.Counts[q], H)
		}
	}
}
