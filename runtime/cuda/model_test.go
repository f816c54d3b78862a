package cuda_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
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
// host cross-entropy of the same logits.
func TestModelMatchesCPU(t *testing.T) {
	b := gputest.Backend(t)
	ids := fixtures.WikiIDs(t)[:300]
	for _, name := range []string{"models/openchat-tiny", "models/stories260K-hf-mistral"} {
		t.Run(filepath.Base(name), func(t *testing.T) {
			dir := fixtures.Path(t, name)
			mc, mg := load(t, dir, cpu.New(0)), load(t, dir, b)
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
