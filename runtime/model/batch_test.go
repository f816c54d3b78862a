package model

import (
	"fmt"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// maxRelDiff returns max |got-want| / max |want| over two equal-length
// slices (the error relative to the row scale, as logits cross zero).
func maxRelDiff(got, want []float32) float64 {
	var d, scale float64
	for i := range want {
		d = max(d, math.Abs(float64(got[i])-float64(want[i])))
		scale = max(scale, math.Abs(float64(want[i])))
	}
	return d / scale
}

// TestForwardBatch compares ForwardBatch and ForwardBatchLast on three
// sequences of different lengths with separate Forward calls.
//
// The portable backend computes every MatMul row with the same dot
// product wherever the row sits, so batching is bit for bit. The AVX
// backend sums a row in a 3-row block (dot3x4) in a different order than a
// leftover row (dot1x4), and which rows are leftovers depends on the
// stacked row count: the last T%3 rows of a sequence that is not last in
// the batch differ by rounding (the other rows, which they cannot affect
// through causal attention, stay exact). With lengths that are multiples
// of 3 (all but the last) the AVX rows are bit for bit as well. For the
// same reason ForwardBatchLast, whose head MatMul has one row per
// sequence, matches Forward's last rows only to rounding on AVX.
func TestForwardBatch(t *testing.T) {
	dir := fixture(t, "models/openchat-tiny")
	for _, tc := range []struct {
		name    string
		b       runtime.Backend
		lens    []int
		tailTol int     // rows at the end of each sequence allowed relTol
		relTol  float64 // 0: ForwardBatch rows and ForwardBatchLast bit for bit
	}{
		{"portable", cpu.NewPortable(0), []int{7, 20, 1}, 0, 0},
		{"avx_multiple_of_3", cpu.New(0), []int{9, 21, 5}, 0, 1e-5},
		{"avx", cpu.New(0), []int{7, 20, 1}, 2, 1e-5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Load(dir, tc.b)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			v := m.Config.VocabSize
			var seqs [][]int
			for i, n := range tc.lens {
				ids := make([]int, n)
				for j := range ids {
					ids[j] = (1 + 7919*(i*100+j)) % v
				}
				seqs = append(seqs, ids)
			}
			var want, wantLast [][]float32
			for _, ids := range seqs {
				lg, err := m.Forward(ids, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, lg)
				wantLast = append(wantLast, lg[(len(ids)-1)*v:])
			}
			got, err := m.ForwardBatch(seqs, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			gotLast, err := m.ForwardBatchLast(seqs, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(seqs) || len(gotLast) != len(seqs) {
				t.Fatalf("%d and %d outputs for %d sequences", len(got), len(gotLast), len(seqs))
			}
			for i, ids := range seqs {
				if len(got[i]) != len(ids)*v || len(gotLast[i]) != v {
					t.Fatalf("sequence %d: %d and %d logits, want %d and %d", i, len(got[i]), len(gotLast[i]), len(ids)*v, v)
				}
				for r := range ids {
					g, w := got[i][r*v:(r+1)*v], want[i][r*v:(r+1)*v]
					exact := r < len(ids)-tc.tailTol
					if exact && !slices.Equal(g, w) {
						t.Errorf("sequence %d row %d: batched logits differ from Forward (rel %.2g)", i, r, maxRelDiff(g, w))
					}
					if d := maxRelDiff(g, w); !exact && d > tc.relTol {
						t.Errorf("sequence %d row %d: batched logits off by %.2g relative, want <= %g", i, r, d, tc.relTol)
					}
				}
				if d := maxRelDiff(gotLast[i], wantLast[i]); (tc.relTol == 0 && d != 0) || d > tc.relTol {
					t.Errorf("sequence %d: ForwardBatchLast off by %.2g relative", i, d)
				}
			}
		})
	}
}

// TestForwardBatchDecode runs batched greedy decoding of the stories260K
// prompt in two sequences at different positions (the second starts
// decoding later, after a longer prefill), with per-sequence caches, and
// checks both against llama2.c's greedy ids.
func TestForwardBatchDecode(t *testing.T) {
	dir := fixture(t, "models/stories260K-hf-mistral")
	var ref struct {
		Prompt []int `json:"prompt_ids_with_bos"`
		Greedy []int `json:"greedy_ids"`
	}
	readJSON(t, filepath.Join(dir, "expected_greedy.json"), &ref)
	m := loadModel(t, dir)
	total := len(ref.Greedy)
	// Sequence 0 prefills the prompt; sequence 1 prefills the prompt and
	// the first 9 reference continuation tokens, so the two decode at
	// positions 9 apart and one call mixes a 1-token step with a prefill.
	prefill := [][]int{ref.Prompt, ref.Greedy[:len(ref.Prompt)+9]}
	caches := []*Cache{m.NewCache(total), m.NewCache(total)}
	defer caches[0].Free()
	defer caches[1].Free()
	ids := [][]int{slices.Clone(prefill[0]), slices.Clone(prefill[1])}

	lg, err := m.ForwardBatchLast(prefill, caches, nil)
	if err != nil {
		t.Fatal(err)
	}
	last := map[int][]float32{0: lg[0], 1: lg[1]}
	for {
		// One step for every unfinished sequence; sequence 1 finishes 9
		// steps before sequence 0, which then decodes alone.
		var next [][]int
		var cs []*Cache
		var who []int
		for i := range ids {
			if len(ids[i]) == total {
				continue
			}
			id := argmax(last[i])
			ids[i] = append(ids[i], id)
			if len(ids[i]) < total {
				next, cs, who = append(next, []int{id}), append(cs, caches[i]), append(who, i)
			}
		}
		if len(next) == 0 {
			break
		}
		for _, i := range who {
			if got, want := caches[i].Len(), len(ids[i])-1; got != want {
				t.Fatalf("sequence %d: cache holds %d positions, want %d", i, got, want)
			}
		}
		if lg, err = m.ForwardBatchLast(next, cs, nil); err != nil {
			t.Fatal(err)
		}
		for j, i := range who {
			last[i] = lg[j]
		}
	}
	for i := range ids {
		if !slices.Equal(ids[i], ref.Greedy) {
			t.Errorf("sequence %d greedy ids\n got %v\nwant %v", i, ids[i], ref.Greedy)
		}
	}
}

func TestForwardBatchErrors(t *testing.T) {
	dir := fixture(t, "models/stories260K-hf-mistral")
	m := loadModel(t, dir)
	small := m.NewCache(4)
	defer small.Free()
	if _, err := m.Forward([]int{1, 2, 3}, small, nil); err != nil {
		t.Fatal(err)
	}
	other := m.NewCache(8)
	defer other.Free()
	freed := m.NewCache(8)
	freed.Free()
	for _, tc := range []struct {
		name   string
		seqs   [][]int
		caches []*Cache
		want   string
	}{
		{"no sequences", nil, nil, "no sequences"},
		{"empty sequence", [][]int{{1, 2}, {}}, nil, "sequence 1: forward of no tokens"},
		{"caches length", [][]int{{1}, {1}}, []*Cache{other}, "1 caches for 2 sequences"},
		{"cache overflow", [][]int{{1}, {5, 6}}, []*Cache{other, small}, "sequence 1: cache holds 3 of 4 positions; 2 more do not fit"},
		{"cache twice", [][]int{{1}, {5}}, []*Cache{other, other}, "sequence 1: cache already used by sequence 0"},
		{"freed cache", [][]int{{1}}, []*Cache{freed}, "cache used after Free"},
		{"token outside vocab", [][]int{{1}, {1, 512}}, nil, "sequence 1: token id 512 outside vocab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.ForwardBatch(tc.seqs, tc.caches, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if small.Len() != 3 || other.Len() != 0 {
				t.Errorf("a failed call changed a cache: lengths %d and %d, want 3 and 0", small.Len(), other.Len())
			}
		})
	}
}

// BenchmarkForwardBatch compares, on openchat-tiny, a batch of 4
// sequences of 256 tokens in one ForwardBatch with 4 Forward calls, and
// one decode step of 4 sequences at position 256 batched and separate.
func BenchmarkForwardBatch(b *testing.B) {
	dir := fixture(b, "models/openchat-tiny")
	m, err := Load(dir, cpu.New(0))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	const n, T = 4, 256
	text := fixtures.WikiIDs(b)[1:] // without BOS
	seqs := make([][]int, n)
	for i := range seqs {
		seqs[i] = append([]int{1}, text[i*T:(i+1)*T-1]...)
	}
	b.Run(fmt.Sprintf("prefill_%dx%d/batched", n, T), func(b *testing.B) {
		for b.Loop() {
			if _, err := m.ForwardBatch(seqs, nil, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n*T)*float64(b.N)/b.Elapsed().Seconds(), "tok/s")
	})
	b.Run(fmt.Sprintf("prefill_%dx%d/separate", n, T), func(b *testing.B) {
		for b.Loop() {
			for _, ids := range seqs {
				if _, err := m.Forward(ids, nil, nil); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(n*T)*float64(b.N)/b.Elapsed().Seconds(), "tok/s")
	})
	caches := make([]*Cache, n)
	step := make([][]int, n)
	for i := range caches {
		caches[i] = m.NewCache(T + 1)
		defer caches[i].Free()
		step[i] = []int{text[n*T+i]}
	}
	if _, err := m.ForwardBatchLast(seqs, caches, nil); err != nil {
		b.Fatal(err)
	}
	b.Run(fmt.Sprintf("decode_%dxpos%d/batched", n, T), func(b *testing.B) {
		for b.Loop() {
			for _, c := range caches {
				c.Truncate(T)
			}
			if _, err := m.ForwardBatchLast(step, caches, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tok/s")
	})
	b.Run(fmt.Sprintf("decode_%dxpos%d/separate", n, T), func(b *testing.B) {
		for b.Loop() {
			for i, c := range caches {
				c.Truncate(T)
				if _, err := m.ForwardLast(step[i], c, nil); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tok/s")
	})
}
