package model

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/kvcache"
)

// replayCPU is the CPU backend with a runtime.Grapher whose graphs run the
// recorded function again at each Launch: on a machine without a GPU it
// exercises what the model does for graph replay (padded rows, inputs
// re-read from the device buffer at every step, one recording a bucket).
type replayCPU struct {
	*cpu.Backend
	captures int
	greedy   int // DrawGreedy's runs, replays included
}

func (r *replayCPU) DrawGreedy(dst, logits, slot runtime.Tensor) {
	r.greedy++
	r.Backend.DrawGreedy(dst, logits, slot)
}

type replayGraph struct{ fn func() error }

func (g replayGraph) Launch() error { return g.fn() }
func (g replayGraph) Free()         {}

func (r *replayCPU) Capture(fn func() error) (runtime.Graph, error) {
	r.captures++
	return replayGraph{fn}, nil
}

// pagedPrompts makes a paged cache of 32 blocks of 4 positions and a first
// step feeding each prompt to a sequence of up to 16 positions.
func pagedPrompts(t *testing.T, m *Model, prompts [][]int) (*PagedCache, []kvcache.Seq, []StepSeq) {
	t.Helper()
	c, err := m.NewPagedCache(32, 4, 32)
	if err != nil {
		t.Fatal(err)
	}
	seqs := make([]kvcache.Seq, len(prompts))
	steps := make([]StepSeq, len(prompts))
	for i, p := range prompts {
		if err := c.Pool.Reserve(&seqs[i], 16); err != nil {
			t.Fatal(err)
		}
		steps[i] = StepSeq{Seq: &seqs[i], Tokens: p}
	}
	return c, seqs, steps
}

func TestDecodeBucket(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 4, 5: 8, 8: 8, 9: 16, 17: 24, 64: 64, 65: 72} {
		if got := decodeBucket(n); got != want {
			t.Errorf("decodeBucket(%d) = %d, want %d", n, got, want)
		}
	}
}

// replayModels loads openchat-tiny on a recording CPU backend and on the
// plain one.
func replayModels(t *testing.T) (*replayCPU, *Model, *Model) {
	dir := fixture(t, "models/openchat-tiny")
	rb := &replayCPU{Backend: cpu.New(0)}
	mr, err := Load(dir, rb)
	if err != nil {
		t.Fatal(err)
	}
	return rb, mr, loadModel(t, dir)
}

// decodePrompts are three prompts of different lengths.
var decodePrompts = [][]int{{1, 420, 6316, 28781}, {1, 3198, 3123}, {1, 1247, 28747, 1824, 349, 272}}

// stepAll feeds decodePrompts to m in one step and then runs n-1 decode
// steps (token 100 + 7*step + i for sequence i), returning every step's
// logits and the sequences as they end; decode steps that should have been
// recorded as graphs and were not fail the test.
func stepAll(t *testing.T, m *Model, n int) ([][][]float32, []kvcache.Seq) {
	t.Helper()
	c, seqs, steps := pagedPrompts(t, m, decodePrompts)
	defer c.Free()
	for i := range steps {
		steps[i].Logits = true
	}
	var all [][][]float32
	for step := range n {
		out, err := m.Step(c, steps)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, out)
		for i := range steps {
			steps[i].Tokens = []int{100 + 7*step + i}
		}
	}
	if e := c.GraphErr(); e != nil {
		t.Fatalf("decode steps not recorded: %v", e)
	}
	return all, seqs
}

// sameSteps fails where a step's logits of a sequence differ from want's by
// more than 1e-3, or are not numbers.
func sameSteps(t *testing.T, what string, got, want [][][]float32) {
	t.Helper()
	for step := range want {
		for i := range want[step] {
			var worst float64
			for j, v := range want[step][i] {
				worst = max(worst, math.Abs(float64(got[step][i][j]-v)))
			}
			if !(worst <= 1e-3) { // (NaN fails too)
				t.Errorf("step %d sequence %d: %s logits differ by %.3g", step, i, what, worst)
			}
		}
	}
}

// TestDecodeReplay decodes three sequences (one padding row in a bucket of
// 4) through replayed steps and checks every step's logits against the
// same sequences on the plain CPU backend, which neither pads nor records.
func TestDecodeReplay(t *testing.T) {
	rb, mr, mp := replayModels(t)
	defer mr.Close()
	got, seqs := stepAll(t, mr, 5)
	for i, s := range seqs {
		if s.Len != len(decodePrompts[i])+4 {
			t.Errorf("sequence %d at %d positions, want %d", i, s.Len, len(decodePrompts[i])+4)
		}
	}
	want, _ := stepAll(t, mp, 5)
	if rb.captures != 1 {
		t.Errorf("%d recordings for 4 decode steps of one bucket, want 1", rb.captures)
	}
	sameSteps(t, "replayed", got, want)
}

// TestStepSample: tokens drawn by StepSample (on the backend, prompt and
// decode steps) are runtime.DrawToken's on the logits Step returns for the
// same steps, and only the logits asked for come back.
func TestStepSample(t *testing.T) {
	m := loadModel(t, fixture(t, "models/openchat-tiny"))
	prompts := decodePrompts
	rules := []runtime.SampleParams{{}, {Temperature: 0.8, TopP: 0.9, U: 0.3},
		{Temperature: 1.2, TopK: 20, U: 0.7, Adjust: []runtime.LogitAdjust{{Token: 28705, Rep: 1.3, Sub: 0.4}, {Token: 13, Rep: 1, Sub: 2}}}}
	// run feeds each sequence the token it drew: from StepSample, or by
	// DrawToken from Step's logits.
	run := func(sampled bool) [][]int {
		c, _, steps := pagedPrompts(t, m, prompts)
		defer c.Free()
		drawn := make([][]int, len(prompts))
		for range 4 {
			var toks []int
			if sampled {
				for i := range steps {
					steps[i].Sample, steps[i].Logits = &rules[i], i == 1
				}
				out, tk, err := m.StepSample(c, steps)
				if err != nil {
					t.Fatal(err)
				}
				for i := range out {
					if (out[i] != nil) != (i == 1) {
						t.Fatalf("sequence %d: logits %v, asked for only sequence 1's", i, out[i] != nil)
					}
				}
				toks = tk
			} else {
				for i := range steps {
					steps[i].Logits = true
				}
				out, err := m.Step(c, steps)
				if err != nil {
					t.Fatal(err)
				}
				for i := range out {
					toks = append(toks, runtime.DrawToken(out[i], rules[i]))
				}
			}
			for i, tk := range toks {
				drawn[i] = append(drawn[i], tk)
				steps[i].Tokens = []int{tk}
			}
		}
		return drawn
	}
	got, want := run(true), run(false)
	for i := range want {
		for j := range want[i] {
			if got[i][j] != want[i][j] {
				t.Errorf("sequence %d: StepSample drew %v, DrawToken on Step's logits %v", i, got[i], want[i])
				break
			}
		}
	}
}

// TestWarmDecode: WarmDecode, called between the prompt step and the
// decode steps, records one graph for each batch bucket up to its bound and
// nothing more; the decode steps then replay those graphs without
// recording, and their logits equal those of the plain CPU backend (the
// warm-up wrote only to the trash block).
func TestWarmDecode(t *testing.T) {
	rb, mr, mp := replayModels(t)
	defer mr.Close()
	prompts := decodePrompts
	run := func(m *Model, warm bool) [][]float32 {
		c, _, steps := pagedPrompts(t, m, prompts)
		defer c.Free()
		var last [][]float32
		for step := range 4 {
			if warm && step == 1 {
				// Mid-stream: the sequences' cache must come out untouched.
				if err := m.WarmDecode(c, 10); err != nil {
					t.Fatal(err)
				}
				// Buckets 1, 2, 4, 8 and 16, each with and without its
				// greedy draw (runtime.GreedyDrawer).
				if rb.captures != 10 {
					t.Fatalf("%d recordings warming up to 10 rows, want 10", rb.captures)
				}
			}
			for i := range steps {
				steps[i].Logits = true
			}
			out, err := m.Step(c, steps)
			if err != nil {
				t.Fatal(err)
			}
			last = out
			for i := range steps {
				steps[i].Tokens = []int{200 + 3*step + i}
			}
		}
		return last
	}
	got, want := run(mr, true), run(mp, false)
	if rb.captures != 10 {
		t.Errorf("%d recordings after the warm-up and three decode steps, want 10 (no more)", rb.captures)
	}
	for i := range want {
		var worst float64
		for j, v := range want[i] {
			worst = max(worst, math.Abs(float64(got[i][j]-v)))
		}
		if worst > 1e-3 {
			t.Errorf("sequence %d: logits after a warm-up differ by %.3g", i, worst)
		}
	}
}

// aheadRules are the draws of TestStepAhead's sequences; greedyRules
// TestGreedyDraw's, every one greedy.
var (
	aheadRules  = []runtime.SampleParams{{}, {Temperature: 0.8, TopP: 0.9, U: 0.3}, {Temperature: 1.2, TopK: 20, U: 0.7}, {Temperature: 0.9, U: 0.55}}
	greedyRules = []runtime.SampleParams{{}, {Temperature: 0.8, TopK: 1, U: 0.3}, {Temperature: -1}, {}}
)

// decodeAhead runs decodePrompts through 7 steps drawing by rules, a
// fourth prompt joining at step 3 (a step of the general path): with ahead
// each step after the first is issued by StepAhead with its sequences Fed
// before the previous step's tokens are read, otherwise by StepSample with
// the tokens fed from the host. It returns each sequence's draws and
// lengths.
func decodeAhead(t *testing.T, m *Model, ahead bool, rules []runtime.SampleParams) ([][]int, []int) {
	t.Helper()
	prompts := append(decodePrompts[:3:3], []int{1, 851, 349})
	c, seqs, steps := pagedPrompts(t, m, prompts)
	defer c.Free()
	for i := range steps {
		steps[i].Sample = &rules[i]
	}
	live := steps[:3]
	drawn := make([][]int, len(prompts))
	record := func(p *Pending, n int) {
		_, toks, err := p.Wait()
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			drawn[i] = append(drawn[i], toks[i])
			steps[i].Tokens = []int{toks[i]}
		}
	}
	var p *Pending
	for step := range 7 {
		n := len(live)
		if step == 3 {
			n = 4
		}
		cur := steps[:n]
		if ahead && step > 0 {
			cur = make([]StepSeq, n)
			for i := range cur {
				cur[i] = StepSeq{Seq: &seqs[i], Fed: i < len(live), Sample: &rules[i]}
				if i >= len(live) {
					cur[i].Tokens = prompts[i]
				}
			}
		}
		next, err := m.StepAhead(c, cur)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if p != nil {
			record(p, len(live))
		}
		p, live = next, steps[:n]
		if !ahead {
			record(p, n)
			p = nil
		}
	}
	if p != nil {
		record(p, len(live))
	}
	lens := make([]int, len(seqs))
	for i, s := range seqs {
		lens[i] = s.Len
	}
	return drawn, lens
}

// TestStepAhead: steps issued ahead, each sequence fed the token it drew
// in the step before without the host reading it first, draw the same
// tokens as steps fed from the host, through the decode path (replayed,
// and op by op) and a step of the general path; a Fed sequence the last
// step drew nothing for is refused.
func TestStepAhead(t *testing.T) {
	rb, mr, mp := replayModels(t)
	defer mr.Close()
	want, wantLens := decodeAhead(t, mp, false, aheadRules)
	if len(want[0]) != 7 || len(want[3]) != 4 {
		t.Fatalf("draws %v", want)
	}
	for _, m := range []*Model{mp, mr} {
		got, lens := decodeAhead(t, m, true, aheadRules)
		for i := range want {
			if !slices.Equal(got[i], want[i]) {
				t.Errorf("%s: sequence %d drew %v issued ahead, %v fed from the host", m.b.Name(), i, got[i], want[i])
			}
		}
		if !slices.Equal(lens, wantLens) {
			t.Errorf("%s: lengths %v issued ahead, %v fed from the host", m.b.Name(), lens, wantLens)
		}
	}
	if rb.captures == 0 {
		t.Error("no decode step was recorded")
	}
	if rb.greedy != 0 {
		t.Errorf("%d greedy draws recorded with steps of other rules", rb.greedy)
	}
	c, seqs, steps := pagedPrompts(t, mp, decodePrompts)
	defer c.Free()
	if _, _, err := mp.StepSample(c, steps); err != nil {
		t.Fatal(err)
	}
	_, err := mp.StepAhead(c, []StepSeq{{Seq: &seqs[0], Fed: true}})
	if err == nil || !strings.Contains(err.Error(), "drew none") {
		t.Errorf("a Fed sequence whose step drew nothing: %v", err)
	}
	_, err = mp.StepAhead(c, []StepSeq{{Seq: &seqs[0], Fed: true, Tokens: []int{5}}})
	if err == nil || !strings.Contains(err.Error(), "given 1 tokens") {
		t.Errorf("a Fed sequence with tokens: %v", err)
	}
}

// TestGreedyDraw: steps whose every sequence draws greedily draw in the
// step's own ops (runtime.GreedyDrawer, recorded with them), and give the
// tokens of the plain CPU backend's steps fed from the host, issued ahead
// and not, around a step of the general path.
func TestGreedyDraw(t *testing.T) {
	rb, mr, mp := replayModels(t)
	defer mr.Close()
	want, wantLens := decodeAhead(t, mp, false, greedyRules)
	for _, ahead := range []bool{false, true} {
		rb.greedy = 0
		got, lens := decodeAhead(t, mr, ahead, greedyRules)
		for i := range want {
			if !slices.Equal(got[i], want[i]) {
				t.Errorf("ahead %v: sequence %d drew %v in the step, %v on the plain backend", ahead, i, got[i], want[i])
			}
		}
		if !slices.Equal(lens, wantLens) {
			t.Errorf("ahead %v: lengths %v, want %v", ahead, lens, wantLens)
		}
		// 7 steps: the first and the fourth take the general path.
		if rb.greedy != 5 {
			t.Errorf("ahead %v: %d greedy draws in the steps, want 5", ahead, rb.greedy)
		}
	}
}

// TestGreedyDrawMasked: a greedy step where one sequence's draw is masked
// (Allow, structured output) is not drawn in the step's graph, whose
// greedy draw knows no mask: the masked sequence draws only what its mask
// allows, as on the plain backend.
func TestGreedyDrawMasked(t *testing.T) {
	rb, mr, mp := replayModels(t)
	defer mr.Close()
	rules := slices.Clone(greedyRules)
	rules[1].Allow = make([]uint64, (mp.Vocab()+63)/64)
	for _, id := range []int{400, 4001} {
		rules[1].Allow[id>>6] |= 1 << (id & 63)
	}
	want, _ := decodeAhead(t, mp, false, rules)
	for _, tok := range want[1] {
		if tok != 400 && tok != 4001 {
			t.Fatalf("plain backend: sequence 1 drew %v, outside its mask", want[1])
		}
	}
	for _, ahead := range []bool{false, true} {
		rb.greedy = 0
		got, _ := decodeAhead(t, mr, ahead, rules)
		for i := range want {
			if !slices.Equal(got[i], want[i]) {
				t.Errorf("ahead %v: sequence %d drew %v in the step, %v on the plain backend", ahead, i, got[i], want[i])
			}
		}
		if rb.greedy != 0 {
			t.Errorf("ahead %v: %d greedy draws in the steps, want none (a masked rule)", ahead, rb.greedy)
		}
	}
}
