package model

import (
	"math"
	"testing"

	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/kvcache"
)

// TestStepMatchesForward runs two sequences through the paged cache with
// continuous batching — chunked prefill, interleaved blocks of 4
// positions, decode steps that mix sequences — and checks every logits row
// against the contiguous-cache path of the same sequence alone.
func TestStepMatchesForward(t *testing.T) {
	m := loadModel(t, fixture(t, "models/openchat-tiny"))
	c, err := m.NewPagedCache(64, 4, 128)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Free()
	ids := []int{1, 420, 6316, 28781, 3198, 3123, 1247, 28747, 1824, 349, 272, 5565, 302, 4843, 28804, 32000, 420, 6316, 28781, 3198, 3123, 21631, 28747, 415, 5565, 302, 4843, 349, 264, 3014, 302, 272, 1526, 28742, 28713, 4889, 28725}
	a, b := ids, ids[5:25]
	var sa, sb kvcache.Seq
	// Interleave the two sequences' blocks.
	for n := 4; n <= 48; n += 4 {
		if err := c.Pool.Reserve(&sa, n); err != nil {
			t.Fatal(err)
		}
		if err := c.Pool.Reserve(&sb, n); err != nil {
			t.Fatal(err)
		}
	}
	ref := func(seq []int) []float32 {
		lg, err := m.ForwardLast(seq, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return lg
	}
	check := func(what string, got []float32, want []float32) {
		t.Helper()
		var worst float64
		for i := range want {
			worst = max(worst, math.Abs(float64(got[i]-want[i])))
		}
		if worst > 1e-3 {
			t.Errorf("%s: logits differ from the unbatched path by %.3g", what, worst)
		}
	}
	// Step 1: a's first prompt chunk alone (no logits).
	out, err := m.Step(c, []StepSeq{{Seq: &sa, Tokens: a[:20]}})
	if err != nil || out[0] != nil {
		t.Fatalf("step 1: %v, %v", out, err)
	}
	// Step 2: a's second chunk and b's whole prompt, both with logits.
	out, err = m.Step(c, []StepSeq{{Seq: &sa, Tokens: a[20:], Logits: true}, {Seq: &sb, Tokens: b, Logits: true}})
	if err != nil {
		t.Fatal(err)
	}
	check("a after prefill", out[0], ref(a))
	check("b after prefill", out[1], ref(b))
	// Decode: both sequences, one token each, three times.
	for step := range 3 {
		na, nb := 100+step, 200+step
		a = append(a[:len(a):len(a)], na)
		b = append(b[:len(b):len(b)], nb)
		out, err = m.Step(c, []StepSeq{{Seq: &sb, Tokens: []int{nb}, Logits: true}, {Seq: &sa, Tokens: []int{na}, Logits: true}})
		if err != nil {
			t.Fatal(err)
		}
		check("b decode", out[0], ref(b))
		check("a decode", out[1], ref(a))
	}
	if sa.Len != len(a) || sb.Len != len(b) {
		t.Errorf("lengths %d, %d; want %d, %d", sa.Len, sb.Len, len(a), len(b))
	}
	// A step past the reserved blocks is refused and changes nothing.
	if _, err := m.Step(c, []StepSeq{{Seq: &sb, Tokens: make([]int, 40)}}); err == nil {
		t.Error("a step past the sequence's blocks was accepted")
	}
	if sb.Len != len(b) {
		t.Errorf("a refused step moved the sequence to %d", sb.Len)
	}
	c.Pool.Release(&sa)
	c.Pool.Release(&sb)
	if c.Pool.Free() != 64 {
		t.Errorf("%d blocks free after release, want 64", c.Pool.Free())
	}
}

// TestStepIndexMatchesBlockCopies runs the same general steps (prompt
// chunks of several sequences, interleaved and shared blocks, decode rows
// among them) with the step's index (one RoPEStore and one gather a layer,
// on a runtime.PagedDecoder; the leading rows of one token each through
// PagedAttention) and with the block-by-block copies it replaced: the
// logits must be the same bits on the CPU (RoPEStore rotates as RoPE does,
// and the rest only copies rows), but for rows that attend through
// PagedAttention, equal up to rounding.
func TestStepIndexMatchesBlockCopies(t *testing.T) {
	m := loadModel(t, fixture(t, "models/openchat-tiny"))
	ids := []int{1, 420, 6316, 28781, 3198, 3123, 1247, 28747, 1824, 349, 272, 5565, 302, 4843, 28804, 32000, 420, 6316, 28781, 3198, 3123, 21631, 28747, 415, 5565, 302, 4843, 349, 264, 3014, 302, 272, 1526, 28742, 28713, 4889, 28725}
	// The outputs of rows that attend through PagedAttention with the
	// index (decode rows, whose attention is PagedAttention's in a decode
	// step too): equal up to rounding, the sums taken in another order.
	paged := map[int]bool{}
	run := func(blockCopies bool) [][]float32 {
		c, err := m.NewPagedCache(64, 4, 128)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Free()
		c.blockCopies = blockCopies
		var sa, sb, sc kvcache.Seq
		for n := 4; n <= 48; n += 4 {
			for _, s := range []*kvcache.Seq{&sa, &sb, &sc} {
				if err := c.Pool.Reserve(s, n); err != nil {
					t.Fatal(err)
				}
			}
		}
		var all [][]float32
		step := func(seqs []StepSeq) {
			t.Helper()
			out, err := m.Step(c, seqs)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, out...)
		}
		// Chunks of three prompts, at positions that start and end inside
		// blocks, then decode rows beside a prompt chunk.
		step([]StepSeq{{Seq: &sa, Tokens: ids[:9], Logits: true}, {Seq: &sb, Tokens: ids[3:6], Logits: true}})
		step([]StepSeq{{Seq: &sb, Tokens: ids[6:30], Logits: true}, {Seq: &sa, Tokens: ids[9:21], Logits: true}, {Seq: &sc, Tokens: ids[:1], Logits: true}})
		for i := range 3 {
			step([]StepSeq{{Seq: &sc, Tokens: ids[1+5*i : 6+5*i], Logits: true}, {Seq: &sa, Tokens: []int{100 + i}, Logits: true}, {Seq: &sb, Tokens: []int{200 + i}, Logits: true}})
		}
		// Generating sequences first, as the engine plans a step: their
		// rows attend through one PagedAttention.
		for i := range 3 {
			paged[len(all)], paged[len(all)+1] = true, true
			step([]StepSeq{{Seq: &sb, Tokens: []int{300 + i}, Logits: true}, {Seq: &sa, Tokens: []int{400 + i}, Logits: true}, {Seq: &sc, Tokens: ids[16+3*i : 19+3*i], Logits: true}})
		}
		if sa.Len != 27 || sb.Len != 33 || sc.Len != 25 {
			t.Fatalf("lengths %d, %d, %d; want 27, 33, 25", sa.Len, sb.Len, sc.Len)
		}
		return all
	}
	want, got := run(true), run(false)
	for i := range want {
		for j := range want[i] {
			if d := math.Abs(float64(got[i][j] - want[i][j])); paged[i] && d > 1e-4 || !paged[i] && got[i][j] != want[i][j] {
				t.Fatalf("logits row %d [%d] (PagedAttention: %v): %v with the step's index, %v with block copies", i, j, paged[i], got[i][j], want[i][j])
			}
		}
	}
}

// rowScoring is the CPU backend as a runtime.RowScorer, scoring with the
// conformance suite's reference on downloaded logits. With nanFirst, the
// logits' first row holds numbers only at ids 3 and 10.
type rowScoring struct {
	*cpu.Backend
	nanFirst bool
}

func (rowScoring) ScoresRows() bool { return true }

func (b rowScoring) ScoreRows(logits runtime.Tensor, targets []int, k int) ([]float64, []int32, []float64, error) {
	rows, V := runtime.Rows(logits), runtime.Cols(logits)
	all := make([]float32, rows*V)
	if err := b.Download(all, logits); err != nil {
		return nil, nil, nil, err
	}
	if b.nanFirst {
		for j := range V {
			if j != 3 && j != 10 {
				all[j] = float32(math.NaN())
			}
		}
	}
	lp, ids, top := backendtest.ScoreRows(all, V, targets, k)
	return lp, ids, top, nil
}

// scoreStep runs one step of ids as a prompt whose every row's logits are
// asked for, with score, and returns the logits and scores it brings back.
func scoreStep(t *testing.T, m *Model, ids []int, score *Score) ([]float32, [][]RowScore) {
	t.Helper()
	c, err := m.NewPagedCache(32, 16, 512)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Free()
	var s kvcache.Seq
	if err := c.Pool.Reserve(&s, len(ids)); err != nil {
		t.Fatal(err)
	}
	p, err := m.StepAhead(c, []StepSeq{{Seq: &s, Tokens: ids, AllLogits: true, Score: score}})
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return out[0], p.Scores()
}

// TestStepScoresNaNRow: a row whose logits are not numbers (but two) is
// scored NaN with the two entries it has, not an error that would end
// every sequence of the step; the other rows are scored as ever.
func TestStepScoresNaNRow(t *testing.T) {
	dir := fixture(t, "models/openchat-tiny")
	m, err := Load(dir, rowScoring{Backend: cpu.New(0), nanFirst: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ids := fixtures.WikiIDs(t)[:6]
	_, scores := scoreStep(t, m, ids, &Score{Targets: ids[1:], Top: 5})
	sc := scores[0]
	if r := sc[0]; r.Logprob == r.Logprob || len(r.Top) != 2 || r.Top[0].Token != 3 && r.Top[0].Token != 10 || r.Top[1].Token+r.Top[0].Token != 13 {
		t.Errorf("the NaN row: %+v; want a NaN log-probability and ids 3 and 10 alone", r)
	}
	for r, x := range sc[1:] {
		if x.Logprob != x.Logprob || x.Logprob > 0 || len(x.Top) != 5 {
			t.Errorf("row %d: %+v; want a log-probability and five entries", r+1, x)
		}
	}
}

// TestStepScores: a prompt of 300 rows (two of the head's chunks of 256)
// scored by a runtime.RowScorer gives the scores of the rows' logits that
// AllLogits brings back, row r scoring Targets[r]; the last row, which
// predicts no target, is not scored.
func TestStepScores(t *testing.T) {
	dir := fixture(t, "models/openchat-tiny")
	plain := loadModel(t, dir)
	scorer, err := Load(dir, rowScoring{Backend: cpu.New(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer scorer.Close()
	ids := fixtures.WikiIDs(t)[:300]
	const top = 3
	logits, none := scoreStep(t, plain, ids, &Score{Targets: ids[1:], Top: top})
	if none != nil || len(logits) != len(ids)*plain.Vocab() {
		t.Fatalf("the CPU backend: %d scores, %d logits; want none and every row's", len(none), len(logits))
	}
	rest, scores := scoreStep(t, scorer, ids, &Score{Targets: ids[1:], Top: top})
	if rest != nil || len(scores) != 1 || len(scores[0]) != len(ids)-1 {
		t.Fatalf("a row scorer: %d logits, %d scores; want none and %d rows'", len(rest), len(scores), len(ids)-1)
	}
	V := plain.Vocab()
	for r, sc := range scores[0] {
		lp, wids, wtop := backendtest.ScoreRow(logits[r*V:(r+1)*V], ids[r+1], top)
		if math.Abs(sc.Logprob-lp) > 1e-9 || len(sc.Top) != top {
			t.Fatalf("row %d: %.9g with %d alternatives, want %.9g", r, sc.Logprob, len(sc.Top), lp)
		}
		for j, tl := range sc.Top {
			if tl.Token != int(wids[j]) || math.Abs(tl.Logprob-wtop[j]) > 1e-9 {
				t.Fatalf("row %d alternative %d: %+v, want %d %.9g", r, j, tl, wids[j], wtop[j])
			}
		}
	}
	c, err := scorer.NewPagedCache(32, 16, 512)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Free()
	var s kvcache.Seq
	if err := c.Pool.Reserve(&s, 4); err != nil {
		t.Fatal(err)
	}
	if _, err := scorer.Step(c, []StepSeq{{Seq: &s, Tokens: ids[:2], AllLogits: true, Score: &Score{Targets: ids[:3]}}}); err == nil {
		t.Error("three targets for two rows were accepted")
	}
}
