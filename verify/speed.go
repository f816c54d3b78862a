package verify

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/kvcache"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// DecodeOptions configure DecodeBench.
type DecodeOptions struct {
	// Batch lists the numbers of sequences decoded together.
	Batch []int
	// Prompt is the prompt length of every sequence, New the tokens each
	// generates (greedy).
	Prompt, New int
	// Ceiling is the device's memory bandwidth in bytes/s (0: no ratio).
	Ceiling float64
	// Seed draws the prompt ids.
	Seed uint64
	// Ahead issues each decode step before the previous one's tokens are
	// read, its sequences fed those tokens where they were drawn
	// (model.StepAhead), as the engine does.
	Ahead bool
}

// DecodeRun is one batch size's measurement.
type DecodeRun struct {
	Batch        int     `json:"batch"`
	PromptTokens int     `json:"prompt_tokens"`
	NewTokens    int     `json:"new_tokens"`
	PrefillS     float64 `json:"prefill_s"`
	DecodeS      float64 `json:"decode_s"`
	StepMS       float64 `json:"step_ms"`
	// TokPerS counts every sequence's tokens: Batch·NewTokens / DecodeS.
	TokPerS float64 `json:"tok_per_s"`
	// CeilingTokPerS is the batch-1 bound: Ceiling over the weight bytes a
	// step reads; BandwidthFraction is those bytes over the step time,
	// over Ceiling (the weights are read once a step for the whole batch).
	CeilingTokPerS    float64 `json:"ceiling_tok_per_s,omitempty"`
	BandwidthFraction float64 `json:"bandwidth_fraction,omitempty"`
	// GraphErr says why the decode steps ran op by op on a backend that
	// records graphs; empty when they were replayed (or cannot be).
	GraphErr string `json:"graph_error,omitempty"`
	// GraphMS is the device time of a replayed step (where the backend
	// times graphs), HostMS the rest of StepMS: preparing the step,
	// launching it and taking its tokens back.
	GraphMS float64 `json:"graph_ms,omitempty"`
	HostMS  float64 `json:"host_ms,omitempty"`
}

// graphTimer is a backend that times its graph replays (cuda.Backend).
type graphTimer interface {
	TimeGraphs(on bool) bool
	GraphTime() (int, float64, error)
}

// DecodeBench prefills Batch random prompts of Prompt tokens, then decodes
// New tokens for each, greedily, one step for the whole batch at a time
// (the tokens drawn on the backend where it can; with Ahead each step is
// issued before the last one's tokens are read), after a short warm-up run
// of the same shape. It runs the serving path: a paged KV cache and
// model.StepAhead, as the engine does.
func DecodeBench(m *model.Model, o DecodeOptions) ([]DecodeRun, error) {
	if o.Prompt < 1 || o.New < 1 || len(o.Batch) == 0 {
		return nil, errors.New("verify: decode bench needs a prompt, new tokens and a batch size")
	}
	r := rand.New(rand.NewPCG(o.Seed, 1))
	vocab := m.Config.VocabSize
	bytes := m.StepBytes()
	var out []DecodeRun
	for _, B := range o.Batch {
		if B < 1 {
			return nil, fmt.Errorf("verify: decode bench batch %d", B)
		}
		const blockSize = 16
		L := o.Prompt + o.New
		c, err := m.NewPagedCache(B*((L+blockSize-1)/blockSize), blockSize, L)
		if err != nil {
			return out, fmt.Errorf("verify: decode bench at batch %d: %w", B, err)
		}
		prompts := make([][]int, B)
		for i := range prompts {
			prompts[i] = make([]int, o.Prompt)
			for j := range prompts[i] {
				prompts[i][j] = r.IntN(vocab)
			}
		}
		seqs := make([]kvcache.Seq, B)
		steps := make([]model.StepSeq, B)
		run := func(n int) (prefill, decode time.Duration, err error) {
			for i := range seqs {
				c.Pool.Release(&seqs[i])
				if err := c.Pool.Reserve(&seqs[i], L); err != nil {
					return 0, 0, err
				}
				// Greedy, drawn where the logits are (as the server does).
				steps[i] = model.StepSeq{Seq: &seqs[i], Tokens: prompts[i], Sample: &runtime.SampleParams{}}
			}
			start := time.Now()
			_, toks, err := m.StepSample(c, steps)
			if err != nil {
				return 0, 0, err
			}
			prefill = time.Since(start)
			start = time.Now()
			if o.Ahead {
				for i := range steps {
					steps[i].Tokens, steps[i].Fed = nil, true
				}
				var p *model.Pending
				for range n {
					next, err := m.StepAhead(c, steps)
					if err != nil {
						return 0, 0, err
					}
					if p != nil {
						if _, _, err := p.Wait(); err != nil {
							return 0, 0, err
						}
					}
					p = next
				}
				_, _, err := p.Wait()
				return prefill, time.Since(start), err
			}
			for range n {
				for i, t := range toks {
					steps[i].Tokens = []int{max(t, 0)}
				}
				if _, toks, err = m.StepSample(c, steps); err != nil {
					return 0, 0, err
				}
			}
			return prefill, time.Since(start), nil
		}
		_, _, err = run(min(4, o.New))
		if err == nil {
			var pre, dec time.Duration
			gt, _ := m.Backend().(graphTimer)
			timed := gt != nil && gt.TimeGraphs(true)
			pre, dec, err = run(o.New)
			var replays int
			var graphS float64
			if timed {
				var terr error
				replays, graphS, terr = gt.GraphTime()
				gt.TimeGraphs(false)
				if err == nil {
					err = terr
				}
			}
			if err == nil {
				d := DecodeRun{Batch: B, PromptTokens: o.Prompt, NewTokens: o.New, PrefillS: pre.Seconds(), DecodeS: dec.Seconds(),
					StepMS: 1e3 * dec.Seconds() / float64(o.New), TokPerS: float64(B*o.New) / dec.Seconds()}
				if o.Ceiling > 0 && bytes > 0 {
					d.CeilingTokPerS = o.Ceiling / float64(bytes)
					d.BandwidthFraction = float64(bytes) / (dec.Seconds() / float64(o.New)) / o.Ceiling
				}
				if e := c.GraphErr(); e != nil {
					d.GraphErr = e.Error()
				}
				if replays > 0 {
					d.GraphMS = 1e3 * graphS / float64(replays)
					d.HostMS = d.StepMS - d.GraphMS
				}
				out = append(out, d)
			}
		}
		c.Free()
		if err != nil {
			return out, fmt.Errorf("verify: decode bench at batch %d: %w", B, err)
		}
	}
	return out, nil
}

// PrefillRun is one prompt length's measurement.
type PrefillRun struct {
	PromptTokens int `json:"prompt_tokens"`
	// TTFTms is the time from the call to the first token's logits on the
	// host (median of the repeats); TokPerS is PromptTokens over it.
	TTFTms  float64   `json:"ttft_ms"`
	TokPerS float64   `json:"tok_per_s"`
	AllMS   []float64 `json:"all_ms"`
}

// PrefillBench times the prefill of fresh prompts of each length (random
// ids), repeat times after a warm-up, with the KV cache written as in
// generation and only the last token's logits computed.
func PrefillBench(m *model.Model, lengths []int, repeat int, seed uint64) ([]PrefillRun, error) {
	r := rand.New(rand.NewPCG(seed, 2))
	var out []PrefillRun
	for _, L := range lengths {
		if L < 1 {
			return nil, fmt.Errorf("verify: prefill bench of %d tokens", L)
		}
		ids := make([]int, L)
		for i := range ids {
			ids[i] = r.IntN(m.Config.VocabSize)
		}
		c := m.NewCache(L)
		var ms []float64
		var err error
		for i := range max(repeat, 1) + 1 {
			c.Reset()
			start := time.Now()
			if _, err = m.ForwardLast(ids, c, nil); err != nil {
				break
			}
			if i > 0 {
				ms = append(ms, 1e3*time.Since(start).Seconds())
			}
		}
		c.Free()
		if err != nil {
			return out, fmt.Errorf("verify: prefill bench of %d tokens: %w", L, err)
		}
		sorted := slices.Sorted(slices.Values(ms))
		med := sorted[len(sorted)/2]
		out = append(out, PrefillRun{PromptTokens: L, TTFTms: med, TokPerS: float64(L) / (med / 1e3), AllMS: ms})
	}
	return out, nil
}
