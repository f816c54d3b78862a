package cuda_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/verify"
)

func load(t *testing.T, dir string, b runtime.Backend) *model.Model {
	t.Helper()
	m, err := model.Load(dir, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// TestModelMatchesCPU runs whole models on the device and on the CPU
// reference: the logits of a sequence, the device-side scores against the
// host cross-entropy of the same logits. Each fixture runs as it is and
// with a llama3 and a yarn RoPE scaling written into its config.json:
// Llama 3.1's on openchat-tiny (head_dim 128: kept, smoothed and divided
// frequencies), on stories260K (head_dim 8) one whose edges, 64 and
// 1024, put its four frequencies in all three bands; yarn's with its
// attention factor; there the CPU's logits move from the unscaled
// model's by far more than the device may differ from them.
// qwen2 is a random-weight Qwen2 checkpoint (fixtures.Qwen2, fp32) of
// openchat-tiny's attention shape, its q/k/v biases added by AddBias;
// qwen3 a random-weight Qwen3 one (fixtures.Qwen3, fp32; 4 heads of 128
// over hidden 256), its per-head q/k norms the RMSNorm over a Reshape;
// phi3 a random-weight Phi-3 one (phi3Synth: fused qkv_proj and
// gate_up_proj read as their parts, a window of 100 positions, longrope
// with its attention factor); gemma3 a random-weight Gemma 3 text one
// (gemma3Synth: sliding and full layers with their own windows and RoPE
// tables, Gemma's norms, GELU-tanh GLU and embedding scale); gemma2 a
// random-weight Gemma 2 one (gemma2Synth: soft-capped scores and logits);
// gemma a random-weight Gemma one (gemmaSynth: two norms a layer,
// multi-query); granite a random-weight Granite one (graniteSynth: its four
// multipliers); olmo2 a random-weight OLMo 2 one (olmo2Synth).
func TestModelMatchesCPU(t *testing.T) {
	b := gputest.Backend(t)
	ids := fixtures.WikiIDs(t)[:300]
	for _, tc := range []struct {
		name, fixture, scaling string
	}{
		{"qwen2", "", ""},
		{"qwen3", "", ""},
		{"phi3", "", ""},
		{"gemma3", "", ""},
		{"gemma2", "", ""},
		{"gemma", "", ""},
		{"granite", "", ""},
		{"olmo2", "", ""},
		{"openchat-tiny", "models/openchat-tiny", ""},
		{"stories260K-hf-mistral", "models/stories260K-hf-mistral", ""},
		{"openchat-tiny-llama3", "models/openchat-tiny",
			`{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}`},
		{"stories260K-hf-mistral-llama3", "models/stories260K-hf-mistral",
			`{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 16.0, "original_max_position_embeddings": 1024}`},
		// yarn past an original context of 128 (the sequence is 300):
		// kept, ramped and divided frequencies, and the attention factor
		// 0.1·ln 4 + 1 in the attention scale.
		{"openchat-tiny-yarn", "models/openchat-tiny",
			`{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128}`},
		{"stories260K-hf-mistral-yarn", "models/stories260K-hf-mistral",
			`{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dir string
			switch {
			case tc.name == "qwen3":
				dir = qwen3Synth(t, "f32", nil, nil)
			case tc.name == "phi3":
				dir = phi3Synth(t, "f32")
			case tc.name == "gemma3":
				dir = gemma3Synth(t, "f32")
			case tc.name == "gemma2":
				dir = gemma2Synth(t, "f32")
			case tc.name == "gemma":
				dir = gemmaSynth(t, "f32")
			case tc.name == "granite":
				dir = graniteSynth(t, "f32")
			case tc.name == "olmo2":
				dir = olmo2Synth(t, "f32")
			case tc.fixture == "":
				dir = qwen2Synth(t, "f32", nil)
			default:
				dir = fixtures.Path(t, tc.fixture)
			}
			plain := dir
			if tc.scaling != "" {
				dir = withRopeScaling(t, dir, tc.scaling)
			}
			mc, mg := load(t, dir, cpu.New(0)), load(t, dir, b)
			if want := strings.TrimPrefix(tc.name, filepath.Base(tc.fixture)+"-"); tc.scaling != "" && mg.Config.RopeScaling.Type != want {
				t.Fatalf("rope scaling %v, want %s", mg.Config.RopeScaling, want)
			}
			seq := ids
			if v := mc.Config.VocabSize; v < 32000 {
				seq = make([]int, len(ids))
				for i, id := range ids {
					seq[i] = id % v
				}
			}
			want, err := mc.Forward(seq, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := mg.Forward(seq, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			w64 := make([]float64, len(want))
			for i, v := range want {
				w64[i] = float64(v)
			}
			if nmse := backendtest.NMSE(got, w64); !(nmse < 1e-9) {
				t.Errorf("logits nmse %.3g against the CPU", nmse)
			}
			if tc.scaling != "" {
				unscaled, err := load(t, plain, cpu.New(0)).Forward(seq, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				if nmse := backendtest.NMSE(unscaled, w64); !(nmse > 1e-6) {
					t.Errorf("the scaling moves the CPU's logits by nmse %.3g only: the comparison cannot tell it", nmse)
				}
			}
			// Stacking two sequences changes the GEMM shapes, so the logits
			// move by fp32 rounding (~1e-6); the scores follow.
			scores, err := mg.ScoreBatch([][]int{seq, seq[:100]})
			if err != nil {
				t.Fatal(err)
			}
			v := mg.Config.VocabSize
			for i, s := range scores {
				var sum, hsum float64
				for p := range s {
					host := verify.CrossEntropy(got[p*v:(p+1)*v], seq[p+1])
					if d := s[p] - host; d > 1e-4 || d < -1e-4 {
						t.Fatalf("sequence %d position %d: device score %.12g, host %.12g", i, p, s[p], host)
					}
					sum += s[p]
					hsum += host
				}
				if d := (sum - hsum) / hsum; d > 1e-6 || d < -1e-6 {
					t.Errorf("sequence %d: mean score %.10g, host %.10g", i, sum/float64(len(s)), hsum/float64(len(s)))
				}
			}
		})
	}
}

// withRopeScaling returns a checkpoint directory of src's files whose
// config.json has rope_scaling set to scaling (JSON), its other files
// linked.
func withRopeScaling(t *testing.T, src, scaling string) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "config.json" {
			continue
		}
		if err := os.Symlink(filepath.Join(src, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["rope_scaling"] = json.RawMessage(scaling)
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestStoriesGreedyOnDevice reproduces the stories260K greedy vector
// (llama2.c's documented run) with the KV cache on the device.
func TestStoriesGreedyOnDevice(t *testing.T) {
	b := gputest.Backend(t)
	dir := fixtures.Path(t, "models/stories260K-hf-mistral")
	var ref struct {
		Prompt []int `json:"prompt_ids_with_bos"`
		Greedy []int `json:"greedy_ids"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "expected_greedy.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	m := load(t, dir, b)
	c := m.NewCache(len(ref.Greedy))
	defer c.Free()
	ids := slices.Clone(ref.Prompt)
	next := ref.Prompt
	for len(ids) < len(ref.Greedy) {
		lg, err := m.ForwardLast(next, c, nil)
		if err != nil {
			t.Fatal(err)
		}
		best := 0
		for i, v := range lg {
			if v > lg[best] {
				best = i
			}
		}
		ids = append(ids, best)
		next = []int{best}
	}
	if !slices.Equal(ids, ref.Greedy) {
		t.Errorf("greedy ids\n got %v\nwant %v", ids, ref.Greedy)
	}
}
