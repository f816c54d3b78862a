package model

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/kvcache"
)

// TestStepDraft checks a step with a draft (speculative decoding) against
// the contiguous-cache path: each row's draw is the greedy token after the
// prefix its row ends, including rows after a wrong draft token; a
// sequence beside it in the step is unaffected; and once the caller sets
// Len back past the accepted tokens, the next step overwrites the stale
// rows and gives the logits of the sequence without them.
func TestStepDraft(t *testing.T) {
	m := loadModel(t, fixture(t, "models/openchat-tiny"))
	c, err := m.NewPagedCache(64, 4, 128)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Free()
	prompt := []int{1, 420, 6316, 28781, 3198, 3123, 1247, 28747, 1824, 349, 272, 5565, 302, 4843, 28804, 32000, 420, 6316, 28781, 3198}
	other := []int{1, 415, 5565, 302, 4843, 349, 264, 3014}
	next := func(ids []int) int {
		lg, err := m.ForwardLast(ids, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return argmax(lg)
	}
	// The reference greedy continuation of prompt.
	ref := slices.Clone(prompt)
	for range 5 {
		ref = append(ref, next(ref))
	}
	g := ref[len(prompt):] // g[0] is drawn by the prompt's step
	greedy := &runtime.SampleParams{}
	var sa, sb kvcache.Seq
	if err := c.Pool.Reserve(&sa, 40); err != nil {
		t.Fatal(err)
	}
	if err := c.Pool.Reserve(&sb, 40); err != nil {
		t.Fatal(err)
	}
	_, toks, err := m.StepSample(c, []StepSeq{{Seq: &sa, Tokens: prompt, Sample: greedy}, {Seq: &sb, Tokens: other, Sample: greedy}})
	if err != nil {
		t.Fatal(err)
	}
	if toks[0] != g[0] {
		t.Fatalf("prompt's draw %d, want %d", toks[0], g[0])
	}
	bNext := toks[1]
	// Feed g[0] with a draft of g[1], g[2], a wrong token, then g[3].
	wrong := (g[3] + 7) % m.Vocab()
	draft := []int{g[1], g[2], wrong, g[3]}
	len0 := sa.Len
	p, err := m.StepAhead(c, []StepSeq{
		{Seq: &sb, Tokens: []int{bNext}, Sample: greedy},
		{Seq: &sa, Tokens: []int{g[0]}, Draft: draft, Sample: greedy},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, toks, err = p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	got := p.Drafted(1)
	afterWrong := next(append(slices.Clone(ref[:len(prompt)+3]), wrong))
	afterWrong2 := next(append(append(slices.Clone(ref[:len(prompt)+3]), wrong), g[3]))
	want := []int{g[1], g[2], g[3], afterWrong, afterWrong2}
	if !slices.Equal(got, want) {
		t.Errorf("draft rows drew %v, want %v", got, want)
	}
	if toks[1] != g[1] {
		t.Errorf("the drafted sequence's token %d, want its first row's %d", toks[1], g[1])
	}
	if p.Drafted(0) != nil {
		t.Errorf("a sequence without a draft has drafted rows %v", p.Drafted(0))
	}
	if b := append(slices.Clone(other), bNext); toks[0] != next(b) {
		t.Errorf("the sequence beside the draft drew %d, want %d", toks[0], next(b))
	}
	if sa.Len != len0+1+len(draft) {
		t.Errorf("Len %d after the draft step, want %d", sa.Len, len0+1+len(draft))
	}
	// g[0], g[1], g[2] hold (the draft's first two tokens matched rows 0
	// and 1); the row of the wrong token is written again.
	sa.Len = len0 + 3
	out, err := m.Step(c, []StepSeq{{Seq: &sa, Tokens: []int{g[3]}, Logits: true}})
	if err != nil {
		t.Fatal(err)
	}
	wantLg, err := m.ForwardLast(ref[:len(prompt)+4], nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var worst float64
	for i := range wantLg {
		worst = max(worst, math.Abs(float64(out[0][i]-wantLg[i])))
	}
	if worst > 1e-3 {
		t.Errorf("after setting Len back, logits differ from the unbatched path by %.3g", worst)
	}
	// Sampled rows, each under a rule of its own (DraftRules): row j's
	// draw is the reference rule's on the logits after the draft's first j
	// tokens.
	bHist := append(append(slices.Clone(other), bNext), toks[0])
	rules := []runtime.SampleParams{{Temperature: 0.8, U: 0.3}, {Temperature: 0.8, U: 0.55}, {Temperature: 1.2, TopK: 5, U: 0.9}}
	bDraft := []int{g[0], g[1]}
	p, err = m.StepAhead(c, []StepSeq{{Seq: &sb, Tokens: []int{toks[0]}, Draft: bDraft, Sample: &rules[0], DraftRules: rules[1:]}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	for j, got := range p.Drafted(0) {
		lg, err := m.ForwardLast(append(slices.Clone(bHist), bDraft[:j]...), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := runtime.DrawFinite(lg, rules[j]); got != want {
			t.Errorf("sampled row %d drew %d, the reference rule %d", j, got, want)
		}
	}
}

// TestStepDraftRefused checks the drafts StepAhead refuses, by what they
// lack.
func TestStepDraftRefused(t *testing.T) {
	m := loadModel(t, fixture(t, "models/openchat-tiny"))
	c, err := m.NewPagedCache(16, 4, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Free()
	var s kvcache.Seq
	if err := c.Pool.Reserve(&s, 8); err != nil {
		t.Fatal(err)
	}
	greedy := &runtime.SampleParams{}
	for _, tc := range []struct {
		st   StepSeq
		want string
	}{
		{StepSeq{Seq: &s, Tokens: []int{1, 2}, Draft: []int{3}, Sample: greedy}, "one new token"},
		{StepSeq{Seq: &s, Tokens: []int{1}, Draft: []int{3}}, "a draft needs a draw"},
		{StepSeq{Seq: &s, Tokens: []int{1}, Draft: []int{3, 4}, Sample: greedy, DraftRules: []runtime.SampleParams{{}}}, "1 draft rules for 2"},
		{StepSeq{Seq: &s, Tokens: []int{1}, Draft: []int{3}, Sample: greedy, Logits: true}, "no logits"},
		{StepSeq{Seq: &s, Tokens: []int{1}, Draft: []int{m.Vocab()}, Sample: greedy}, "draft token id"},
		{StepSeq{Seq: &s, Tokens: []int{1}, Draft: make([]int, 8), Sample: greedy}, "its blocks hold 8"},
	} {
		_, err := m.StepAhead(c, []StepSeq{tc.st})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error saying %q", tc.st, err, tc.want)
		}
		if s.Len != 0 {
			t.Fatalf("a refused step moved Len to %d", s.Len)
		}
	}
}
