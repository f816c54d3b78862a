package cuda_test

import (
	"context"
	"math"
	"testing"

	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/engine"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// cpuLogprobs is, from the CPU reference's full forward over ids, each
// token's log-probability given those before it (index i for token i+1)
// and the best log-probability there.
func cpuLogprobs(t *testing.T, m *model.Model, ids []int) (lps, best []float64) {
	t.Helper()
	logits, err := m.Forward(ids, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	lps, _, best = backendtest.NextLogprobs(logits, m.Vocab(), ids)
	return lps, best
}

// submitPrompt runs one request on e and returns its events.
func submitPrompt(t *testing.T, e *engine.Engine, prompt []int, p engine.Params) []engine.Event {
	t.Helper()
	ch, err := e.Submit(context.Background(), engine.Request{Prompt: prompt, Params: p})
	if err != nil {
		t.Fatal(err)
	}
	var evs []engine.Event
	for ev := range ch {
		evs = append(evs, ev)
	}
	return evs
}

// TestEngineOnDevice runs the serving engine on the device (openchat-tiny
// in fp16) against the CPU reference: a prompt's own log-probabilities
// (every row's logits of its chunks), and greedy generations whose prompt
// comes from the prefix cache (its first 96 positions shared, the rest
// fed) or is computed whole: each generated token's log-probability is the
// reference's for that token after the same tokens, and the token is the
// reference's most likely one, within fp16's rounding.
func TestEngineOnDevice(t *testing.T) {
	b := gputest.Backend(t)
	mc := load(t, fixtures.Path(t, "models/openchat-tiny"), cpu.New(0))
	mg, ids, _ := tinyF16(t, b)
	prompt := ids[:100]
	const tol = 3e-2
	for _, noCache := range []bool{false, true} {
		e, err := engine.New(engine.Options{Model: mg, Blocks: 64, BlockSize: 16, MaxLen: 256, StepTokens: 64, NoPrefixCache: noCache})
		if err != nil {
			t.Fatal(err)
		}
		submit := func(p engine.Params) []engine.Event { return submitPrompt(t, e, prompt, p) }
		// The prompt scored, in chunks of 64 and 36.
		want, _ := cpuLogprobs(t, mc, prompt)
		evs := submit(engine.Params{PromptLogprobs: true, TopLogprobs: 1})
		if len(evs) != 2 || len(evs[0].Prompt) != len(prompt)-1 {
			t.Fatalf("no prefix cache %v: scoring events %+v", noCache, evs)
		}
		for i, pt := range evs[0].Prompt {
			if math.Abs(pt.Logprob-want[i]) > tol {
				t.Errorf("no prefix cache %v: prompt token %d: %.4f on the device, %.4f on the CPU", noCache, i+1, pt.Logprob, want[i])
			}
		}
		// Twice: the second time (with the cache) from 96 cached positions;
		// then a prompt of 97, whose one token left to feed takes the
		// decode path.
		for run := range 3 {
			p := prompt
			if run == 2 {
				p = prompt[:97]
			}
			evs := submitPrompt(t, e, p, engine.Params{MaxTokens: 12, Logprobs: true})
			seq := append([]int(nil), p...)
			var got []float64
			for _, ev := range evs {
				if !ev.Done && ev.Prompt == nil {
					seq, got = append(seq, ev.Token), append(got, ev.Logprob)
				}
			}
			lps, best := cpuLogprobs(t, mc, seq)
			for i, lp := range got {
				r := len(p) - 1 + i
				if math.Abs(lp-lps[r]) > tol || lps[r] < best[r]-tol {
					t.Errorf("no prefix cache %v, run %d: token %d (%d): %.4f on the device, %.4f on the CPU, best there %.4f",
						noCache, run, i, seq[r+1], lp, lps[r], best[r])
				}
			}
		}
		st := e.Stats()
		wantHits := int64(3 * 96) // every run, after the scoring has cached 96 positions
		if noCache {
			wantHits = 0
		}
		if st.PrefixHits != wantHits || st.BlocksUsed != 0 {
			t.Errorf("no prefix cache %v: %d positions from the cache (want %d), %d blocks held", noCache, st.PrefixHits, wantHits, st.BlocksUsed)
		}
		if err := e.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
