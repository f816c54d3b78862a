package gguf_test

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
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

// yarnStories is a yarn scaling of stories260K: factor 4 past
// original_max_position_embeddings 64, the default betas (32, 1), whose
// correction dimensions 8·ln(64/(2π·r))/(2·ln 10000) are below 0 (r 32)
// and 1.008 (r 1), rounded out to [0, 2]: the first frequency kept, the
// second half interpolated, the others divided by 4; attention factor
// 0.1·ln 4 + 1. yarnStoriesAttn adds an explicit attention_factor 1.5.
const (
	yarnStories     = `{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}`
	yarnStoriesAttn = `{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "attention_factor": 1.5}`
)

// yarnPrompts are prompts of stories260K whose last positions (up to 70)
// lie past yarnStories' original context.
func yarnPrompts(t *testing.T) [][]int {
	prompt, greedyIDs := storiesRef(t)
	return [][]int{prompt, greedyIDs[:40], greedyIDs[:66], greedyIDs[:71]}
}

// TestConvertRoPEScaling: a llama3 scaling converts as
// convert_hf_to_gguf.py's LlamaModel writes it, rope_freqs.weight (F32
// [head_dim/2], the first tensor) holding each frequency's divisor
// computed here from the converter's formula, and no scaling keys; a
// linear one as llama.rope.scaling.type "linear" and .factor before
// rope.freq_base, and no rope_freqs; a yarn one as type "yarn", .factor,
// .original_context_length and, for an attention factor other than
// YaRN's default, .attn_factor. Read back (HFConfig, Weights), each file
// runs in our runtime as the checkpoint with its scaled config.json does:
// the same logits but for the rounding of the llama3 factors and yarn's
// attn_factor to float32.
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
		{"yarn", yarnStories, nil, map[string]any{"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": float32(4),
			"llama.rope.scaling.original_context_length": uint32(64)}, tolerance{0, 0, 0}},
		// llama.cpp's magnitude is get_mscale(4) = 1.1386 times
		// rope.scaling.attn_factor: 1.5/1.1386 = 1.3174, rounded to
		// float32 (the logits then within float32's step of A²).
		{"yarn attention_factor", yarnStoriesAttn, nil, map[string]any{"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": float32(4),
			"llama.rope.scaling.original_context_length": uint32(64), "llama.rope.scaling.attn_factor": float32(1.5 / (0.1*math.Log(4) + 1))}, tolerance{1e-4, 1e-10, 1e-10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name[:4] == "yarn" {
				prompts = yarnPrompts(t)
			}
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
			case tc.name == "yarn attention_factor":
				got, want := cfg.RopeScaling, ck.cfg.RopeScaling
				if d := math.Abs(got.AttentionFactor/want.AttentionFactor - 1); d > 1e-7 {
					t.Errorf("read back attention factor %v, want %v within float32's step", got.AttentionFactor, want.AttentionFactor)
				}
				got.AttentionFactor = want.AttentionFactor
				if !reflect.DeepEqual(got, want) {
					t.Errorf("read back %+v, want %+v", got, want)
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

// TestLlamaCppRoPEScaling: llama.cpp runs the files of a llama3, a
// linear and two yarn scalings (rope_freqs; rope.scaling.type and .factor;
// yarn's keys, with an attention factor of its own or not, the prompts
// reaching past its original context) as our
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
	yp := yarnPrompts(t)
	unscaledYarn := nextLogProbs(t, loadRuntime(t, plain.set, plain.cfg), yp)
	cases := []struct{ name, scaling string }{{"llama3", llama3Stories}, {"linear", `{"type": "linear", "factor": 4}`},
		{"yarn", yarnStories}, {"yarn attention_factor", yarnStoriesAttn}}
	for _, tc := range cases {
		ck := scaledStories(t, tc.scaling)
		c := convertWith(t, ck, gguf.TypeF32, gguf.ConvertOptions{Type: gguf.TypeF32})
		cks = append(cks, ck)
		ps := prompts
		if ck.cfg.RopeScaling.Type == hfconfig.RopeYarn {
			ps = yp
		}
		req.Models = append(req.Models, llamaModel{Path: c.path, Context: 72, Logits: ps})
	}
	resp := runLlamaCpp(t, node, req)
	t.Logf("llama.cpp %s", resp.LlamaCpp)
	tol := llamaTolerances[gguf.TypeF32]
	var yarnDefault [][]float64 // our runtime with yarn's default attention factor
	for i, ck := range cks {
		t.Run(cases[i].name, func(t *testing.T) {
			ps, unscaled := prompts, unscaled
			if ck.cfg.RopeScaling.Type == hfconfig.RopeYarn {
				ps, unscaled = yp, unscaledYarn
			}
			ours := nextLogProbs(t, loadRuntime(t, ck.set, ck.cfg), ps)
			d := llamaDiff(t, resp.Models[i].LogProbs, ours, ck.cfg.VocabSize)
			t.Logf("llama.cpp vs our runtime, scaled: %v", d)
			tol.check(t, "llama.cpp vs our runtime on the scaled model", d)
			switch cases[i].name {
			case "yarn":
				yarnDefault = ours
			case "yarn attention_factor":
				// The attention factor is what tells the two files apart.
				u := llamaDiff(t, resp.Models[i].LogProbs, yarnDefault, ck.cfg.VocabSize)
				t.Logf("llama.cpp vs our runtime with yarn's default attention factor: %v", u)
				if u.maxAbs <= tol.maxAbs && u.nmse <= tol.nmse {
					t.Errorf("yarn's default attention factor is within the tolerance too (%v): the check cannot tell the factor", u)
				}
			}
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

// TestConvertYarnRefused: a yarn scaling llama.cpp would run otherwise
// than transformers on a llama file, betas other than 32 and 1 (its
// loader reads none for llama) or truncate false (it always rounds the
// range out), is refused before a file is planned, naming the parameter.
func TestConvertYarnRefused(t *testing.T) {
	for _, tc := range []struct{ scaling, want string }{
		{`{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "beta_fast": 16}`, "beta_fast 16 and beta_slow 1, but llama.cpp runs a llama file's yarn with 32 and 1"},
		{`{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "beta_slow": 2}`, "beta_fast 32 and beta_slow 2"},
		{`{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "truncate": false}`, "truncate false, but llama.cpp rounds yarn's correction range out"},
	} {
		ck := scaledStories(t, tc.scaling)
		_, err := gguf.Plan(ck.cfg, ck.tok, gguf.ConvertOptions{Type: gguf.TypeF32})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, gguf.ErrUnsupportedModel) {
			t.Errorf("%s: %v, want ErrUnsupportedModel saying %q", tc.scaling, err, tc.want)
		}
	}
}
