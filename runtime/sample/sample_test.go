package sample

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
)

func TestGreedy(t *testing.T) {
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name   string
		logits []float32
		want   int
	}{
		{"single", []float32{3}, 0},
		{"max", []float32{1, 5, 2}, 1},
		{"tie lowest", []float32{1, 5, 5, 2}, 1},
		{"negative", []float32{-3, -1, -2}, 1},
		{"nan skipped", []float32{nan, 1, 2}, 2},
		{"all nan", []float32{nan, nan}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Greedy(tc.logits); got != tc.want {
				t.Errorf("Greedy(%v) = %d, want %d", tc.logits, got, tc.want)
			}
			if got := New(Options{}).Sample(tc.logits); got != tc.want {
				t.Errorf("Sample at temperature 0 = %d, want %d", got, tc.want)
			}
		})
	}
}

// freqs draws n samples and returns the frequency of each id.
func freqs(s *Sampler, logits []float32, n int) []float64 {
	f := make([]float64, len(logits))
	for range n {
		f[s.Sample(logits)]++
	}
	for i := range f {
		f[i] /= float64(n)
	}
	return f
}

func logs(p ...float64) []float32 {
	out := make([]float32, len(p))
	for i, v := range p {
		out[i] = float32(math.Log(v))
	}
	return out
}

func TestDistribution(t *testing.T) {
	const n = 40000
	probs := logs(0.1, 0.2, 0.3, 0.4)
	for _, tc := range []struct {
		name string
		o    Options
		want []float64
	}{
		{"temperature 1", Options{Temperature: 1, Seed: 1}, []float64{0.1, 0.2, 0.3, 0.4}},
		// p^(1/T) renormalized: T=0.5 squares the probabilities.
		{"temperature 0.5", Options{Temperature: 0.5, Seed: 2}, []float64{0.01 / 0.3, 0.04 / 0.3, 0.09 / 0.3, 0.16 / 0.3}},
		{"top-k 2", Options{Temperature: 1, TopK: 2, Seed: 3}, []float64{0, 0, 0.3 / 0.7, 0.4 / 0.7}},
		// Sorted 0.4, 0.3 (0.7 < 0.75), 0.2 (0.9 >= 0.75): three kept.
		{"top-p 0.75", Options{Temperature: 1, TopP: 0.75, Seed: 4}, []float64{0, 0.2 / 0.9, 0.3 / 0.9, 0.4 / 0.9}},
		{"top-k 1", Options{Temperature: 2, TopK: 1, Seed: 5}, []float64{0, 0, 0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := freqs(New(tc.o), probs, n)
			for i := range got {
				// 4.5 standard errors of a binomial proportion.
				tol := 4.5*math.Sqrt(tc.want[i]*(1-tc.want[i])/n) + 1e-9
				if math.Abs(got[i]-tc.want[i]) > tol {
					t.Errorf("freq[%d] = %.4f, want %.4f ± %.4f", i, got[i], tc.want[i], tol)
				}
			}
		})
	}
}

func TestSeedReproducible(t *testing.T) {
	logits := logs(0.25, 0.25, 0.25, 0.25)
	draw := func(seed uint64) []int {
		s := New(Options{Temperature: 1, Seed: seed})
		var ids []int
		for range 64 {
			ids = append(ids, s.Sample(logits))
		}
		return ids
	}
	if a, b := draw(7), draw(7); !slices.Equal(a, b) {
		t.Errorf("same seed, different draws:\n%v\n%v", a, b)
	}
	if a, b := draw(7), draw(8); slices.Equal(a, b) {
		t.Errorf("seeds 7 and 8 drew the same 64 ids")
	}
}

const stories = "../../../shared/fixtures/models/stories260K-hf-mistral"

func TestGenerateStories(t *testing.T) {
	if _, err := os.Stat(stories); err != nil {
		t.Skipf("fixture %s missing: %v", stories, err)
	}
	var ref struct {
		Prompt []int `json:"prompt_ids_with_bos"`
		Greedy []int `json:"greedy_ids"`
	}
	data, err := os.ReadFile(filepath.Join(stories, "expected_greedy.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(stories, cpu.New(0))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := ref.Greedy[len(ref.Prompt):]

	t.Run("greedy", func(t *testing.T) {
		var streamed []int
		res, err := Generate(m, ref.Prompt, GenerateOptions{MaxTokens: len(want), StopIDs: m.EOSTokenIDs},
			func(id int) error { streamed = append(streamed, id); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.IDs, want) || !slices.Equal(streamed, want) {
			t.Errorf("ids\n got %v\nstreamed %v\nwant %v", res.IDs, streamed, want)
		}
		if res.Stopped {
			t.Errorf("Stopped = true, want false (max tokens reached)")
		}
	})
	t.Run("stop id", func(t *testing.T) {
		stop := want[3]
		res, err := Generate(m, ref.Prompt, GenerateOptions{MaxTokens: len(want), StopIDs: []int{stop}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Stopped || !slices.Equal(res.IDs, want[:3]) {
			t.Errorf("stop at %d: ids %v stopped %v, want %v true", stop, res.IDs, res.Stopped, want[:3])
		}
	})
	t.Run("callback stop", func(t *testing.T) {
		res, err := Generate(m, ref.Prompt, GenerateOptions{MaxTokens: 10}, func(id int) error {
			return ErrStop
		})
		if err != nil || len(res.IDs) != 1 {
			t.Errorf("ids %v err %v, want one id and no error", res.IDs, err)
		}
	})
	t.Run("seeded", func(t *testing.T) {
		o := GenerateOptions{MaxTokens: 20, Sampling: Options{Temperature: 0.8, TopP: 0.9, Seed: 42}}
		a, err := Generate(m, ref.Prompt, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Generate(m, ref.Prompt, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a.IDs, b.IDs) {
			t.Errorf("same seed, different generations:\n%v\n%v", a.IDs, b.IDs)
		}
	})
}

func ExampleGreedy() {
	fmt.Println(Greedy([]float32{0.5, 2, -1, 2}))
	// Output: 1
}

func ExampleSampler_Sample() {
	s := New(Options{Temperature: 0.7, TopK: 2, Seed: 1})
	logits := []float32{0, 5, 4.9, -3}
	id := s.Sample(logits)
	fmt.Println(id == 1 || id == 2)
	// Output: true
}

// TestPeekSkip: Peek gives the rules Next gives afterwards, in order,
// without taking them, and Skip takes them unused; greedy rules carry no
// uniform number.
func TestPeekSkip(t *testing.T) {
	o := Options{Temperature: 0.8, TopP: 0.9, Seed: 11}
	a, b := New(o), New(o)
	a.Next()
	b.Next()
	ahead := a.Peek(5)
	again := a.Peek(5)
	for i := range ahead {
		if again[i].U != ahead[i].U {
			t.Fatalf("a second Peek gave %v, the first %v", again, ahead)
		}
	}
	for i, want := range ahead[:2] {
		if got := a.Next(); got.U != want.U || got.Temperature != 0.8 || got.TopP != 0.9 {
			t.Errorf("Next %d after Peek: %+v, peeked %+v", i, got, want)
		}
	}
	a.Skip(2)
	if got := a.Next(); got.U != ahead[4].U {
		t.Errorf("after Skip(2), Next's U %v, want the fifth peeked %v", got.U, ahead[4].U)
	}
	b.Skip(4)
	if got := b.Next(); got.U != ahead[4].U {
		t.Errorf("a sampler that only skipped: U %v, want %v", got.U, ahead[4].U)
	}
	if g := New(Options{Seed: 1}).Peek(3); g[0].U != 0 || g[2].U != 0 {
		t.Errorf("greedy rules peeked with U: %+v", g)
	}
}
