package gguf_test

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/runtime"
)

// scaledStories is stories260K with rope_scaling (JSON) added to its
// config.json: head_dim 8, rope_theta 10000, wavelengths 2π, 62.8, 628
// and 6283.
func scaledStories(t *testing.T, scaling string) *checkpoint {
	t.Helper()
	ck := openCheckpoint(t, "models/stories260K-hf-mistral")
	raw, err := os.ReadFile(ck.cfg.File)
	if err != nil {
		t.Fatal(err)
	}
	doc := bytes.Replace(raw, []byte(`"rope_theta": 10000,`), []byte(`"rope_theta": 10000, "rope_scaling": `+scaling+`,`), 1)
	if ck.cfg, err = hfconfig.Parse(doc, ck.cfg.File); err != nil {
		t.Fatal(err)
	}
	if ck.cfg.RopeScaling.IsDefault() {
		t.Fatalf("no scaling in %s", doc)
	}
	return ck
}

// llama3Stories is a llama3 scaling whose edges, 1024/16 = 64 and
// 1024/1, keep stories260K's first two frequencies, smooth the third and
// divide the fourth by 8.
const llama3Stories = `{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 16.0, "original_max_position_embeddings": 1024}`

// TestConvertRoPEScaling: a llama3 scaling converts as
// convert_hf_to_gguf.py's LlamaModel writes it, rope_freqs.weight (F32
// [head_dim/2], the first tensor) holding each frequency's divisor
// computed here from the converter's formula, and no scaling keys; a
// linear one as llama.rope.scaling.type "linear" and .factor before
// rope.freq_base, and no rope_freqs. Read back (HFConfig, Weights), each
// file runs in our runtime as the checkpoint with its scaled config.json
// does: the same logits but for the rounding of the llama3 factors to
// float32.
func TestConvertRoPEScaling(t *testing.T) {
	prompt, greedyIDs := storiesRef(t)
	prompts := [][]int{prompt, greedyIDs[:24], greedyIDs[:60]}
	for _, tc := range []struct {
		name, scaling string
		factors       []float32 // rope_freqs, nil for none
		keys          map[string]any
		tol           tolerance
	}{
		{"llama3", llama3Stories, llama3Factors(8, 10000, 8, 1, 16, 1024), nil, tolerance{1e-4, 1e-10, 1e-10}},
		{"linear", `{"type": "linear", "factor": 4}`, nil, map[string]any{"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": float32(4)}, tolerance{0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ck := scaledStories(t, tc.scaling)
			c := convertWith(t, ck, gguf.TypeF32, gguf.ConvertOptions{Type: gguf.TypeF32})
			ti := c.file.Tensors()
			_, hasFreqs := c.file.Tensor("rope_freqs.weight")
			switch {
			case tc.factors != nil:
				if ti[0].Name != "rope_freqs.weight" || !slices.Equal(ti[0].Shape, []int{4}) || ti[0].Type != gguf.TypeF32 {
					t.Fatalf("first tensor %+v, want rope_freqs.weight F32 [4]", ti[0])
				}
				got, err := c.file.Float32("rope_freqs.weight")
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, tc.factors) {
					t.Errorf("rope_freqs %v, want %v", got, tc.factors)
				}
			case hasFreqs:
				t.Error("rope_freqs.weight written for a linear scaling")
			}
			keys := c.file.KVs()
			base := slices.IndexFunc(keys, func(kv gguf.KV) bool { return kv.Key == "llama.rope.freq_base" })
			for k, want := range tc.keys {
				i := slices.IndexFunc(keys, func(kv gguf.KV) bool { return kv.Key == k })
				if i < 0 || keys[i].Value != want || i > base {
					t.Errorf("%s: at %d (%v), want %v (%T) before rope.freq_base at %d", k, i, keys[max(i, 0)], want, want, base)
				}
			}
			for _, k := range []string{"llama.rope.scaling.type", "llama.rope.scaling.factor"} {
				if _, ok := c.file.Get(k); ok && tc.keys == nil {
					t.Errorf("%s written for a llama3 scaling (its rope_freqs carry it)", k)
				}
			}
			cfg, err := c.file.HFConfig()
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.factors != nil:
				if cfg.RopeScaling.Type != hfconfig.RopeLlama3 || !slices.Equal(cfg.RopeScaling.FreqFactors, tc.factors) {
					t.Errorf("read back %+v", cfg.RopeScaling)
				}
			case !reflect.DeepEqual(cfg.RopeScaling, ck.cfg.RopeScaling):
				t.Errorf("read back %+v, want %+v", cfg.RopeScaling, ck.cfg.RopeScaling)
			}
			want := nextLogProbs(t, loadRuntime(t, ck.set, ck.cfg), prompts)
			got := nextLogProbs(t, loadRuntime(t, c.file.Weights(cfg), cfg), prompts)
			var ds []diff
			for i := range got {
				ds = append(ds, compare(got[i], want[i]))
			}
			d := worst(ds)
			t.Logf("the file read back vs the checkpoint with its scaled config.json: %v", d)
			tc.tol.check(t, "the file read back vs the checkpoint", d)
		})
	}
}

// llama3Factors are the divisors convert_hf_to_gguf.py's LlamaModel
// writes for a llama3 scaling, evaluated in float64 from its formula.
func llama3Factors(hd int, theta, factor, low, high, orig float64) []float32 {
	out := make([]float32, hd/2)
	for j := range out {
		freq := 1 / math.Pow(theta, float64(2*j)/float64(hd))
		wavelen := 2 * math.Pi / freq
		switch {
		case wavelen < orig/high:
			out[j] = 1
		case wavelen > orig/low:
			out[j] = float32(factor)
		default:
			smooth := (orig/wavelen - low) / (high - low)
			out[j] = float32(1 / ((1-smooth)/factor + smooth))
		}
	}
	return out
}

// TestRopeFreqFactorsLlama31: for Llama 3.1-8B's scaling (head_dim 128,
// rope_theta 500000, factor 8, low 1, high 4, original 8192) the plain
// frequencies divided by the factors the GGUF file holds are the runtime's
// scaled table (transformers' formula, runtime.RoPEFreqs) within a unit in
// the last place: llama.cpp on the file rotates as the checkpoint does.
func TestRopeFreqFactorsLlama31(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "hfconfig", "testdata", "llama-3.1-8b.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := hfconfig.Parse(data, "llama-3.1-8b.json")
	if err != nil {
		t.Fatal(err)
	}
	tok := openCheckpoint(t, "models/openchat-tiny").tok
	res, err := gguf.Plan(cfg, tok, gguf.ConvertOptions{Type: gguf.TypeQ4_K})
	if err != nil {
		t.Fatal(err)
	}
	if res.Tensors[0].Name != "rope_freqs.weight" || !slices.Equal(res.Tensors[0].Shape, []int{64}) || res.Tensors[0].Type != gguf.TypeF32 || res.Tensors[0].Size != 256 {
		t.Errorf("first tensor %+v, want rope_freqs.weight F32 [64] of 256 bytes", res.Tensors[0])
	}
	ff := llama3Factors(128, 500000, 8, 1, 4, 8192)
	scaled, err := runtime.RoPEFreqs(128, 500000, cfg.RopeScaling)
	if err != nil {
		t.Fatal(err)
	}
	fromFile, err := runtime.RoPEFreqs(128, 500000, hfconfig.RopeScaling{Type: hfconfig.RopeLlama3, FreqFactors: ff})
	if err != nil {
		t.Fatal(err)
	}
	ulps := 0
	for j := range scaled {
		d := int64(math.Float32bits(fromFile[j])) - int64(math.Float32bits(scaled[j]))
		if d < -1 || d > 1 {
			t.Errorf("inv[%d]: %g through the factor %g, %g in the runtime", j, fromFile[j], ff[j], scaled[j])
		}
		if d != 0 {
			ulps++
		}
	}
	t.Logf("%d of 64 entries an ulp apart", ulps)
	for j, want := range map[int]float32{0: 1, 28: 1, 35: 8, 63: 8} {
		if ff[j] != want {
			t.Errorf("factor %d: %g, want %g", j, ff[j], want)
		}
	}
}

// TestLlamaCppRoPEScaling: llama.cpp runs the files of a llama3 and a
// linear scaling (rope_freqs; rope.scaling.type and .factor) as our
// runtime runs their checkpoint with the scaled config.json: next-token
// distributions within the F32 tolerance of the other llama.cpp checks,
// where the unscaled model's are far outside it.
func TestLlamaCppRoPEScaling(t *testing.T) {
	node := llamaCppAvailable(t)
	prompt, greedyIDs := storiesRef(t)
	prompts := [][]int{prompt, greedyIDs[:24], greedyIDs[:60]}
	plain := openCheckpoint(t, "models/stories260K-hf-mistral")
	unscaled := nextLogProbs(t, loadRuntime(t, plain.set, plain.cfg), prompts)
	var cks []*checkpoint
	req := llamaRequest{}
	for _, scaling := range []string{llama3Stories, `{"type": "linear", "factor": 4}`} {
		ck := scaledStories(t, scaling)
		c := convertWith(t, ck, gguf.TypeF32, gguf.ConvertOptions{Type: gguf.TypeF32})
		cks = append(cks, ck)
		req.Models = append(req.Models, llamaModel{Path: c.path, Context: 72, Logits: prompts})
	}
	resp := runLlamaCpp(t, node, req)
	t.Logf("llama.cpp %s", resp.LlamaCpp)
	tol := llamaTolerances[gguf.TypeF32]
	for i, ck := range cks {
		t.Run(ck.cfg.RopeScaling.Type, func(t *testing.T) {
			ours := nextLogProbs(t, loadRuntime(t, ck.set, ck.cfg), prompts)
			d := llamaDiff(t, resp.Models[i].LogProbs, ours, ck.cfg.VocabSize)
			t.Logf("llama.cpp vs our runtime, scaled: %v", d)
			tol.check(t, "llama.cpp vs our runtime on the scaled model", d)
			u := llamaDiff(t, resp.Models[i].LogProbs, unscaled, ck.cfg.VocabSize)
			t.Logf("llama.cpp vs our runtime unscaled: %v", u)
			if u.maxAbs <= tol.maxAbs && u.nmse <= tol.nmse {
				t.Errorf("the unscaled model is within the tolerance too (%v): the check cannot tell the scaling", u)
			}
		})
	}
}

// storiesRef is stories260K's reference prompt and greedy ids.
func storiesRef(t *testing.T) (prompt, greedy []int) {
	t.Helper()
	var ref struct {
		Prompt []int `json:"prompt_ids_with_bos"`
		Greedy []int `json:"greedy_ids"`
	}
	readJSON(t, filepath.Join(fixture(t, "models/stories260K-hf-mistral"), "expected_greedy.json"), &ref)
	return ref.Prompt, ref.Greedy
}
