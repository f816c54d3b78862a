package verify

import (
	"context"
	"errors"
	"fmt"
	"math"
	goruntime "runtime"
	"sync"
	"time"

	"github.com/gptqtool/gptqtool/runtime/model"
)

// PerplexityOptions configure Perplexity.
type PerplexityOptions struct {
	Ctx        int // window length in tokens
	MaxWindows int // 0 = every whole window
	// Batch is the number of windows per forward call
	// (model.ForwardBatch); 0 means 1. It changes results only by the
	// backend's rounding: none on the portable CPU kernels; with the AVX
	// kernels, whose MatMul sums a row differently depending on its place
	// in the stacked rows, mean NLL moves by < 1e-9 relative and KL by
	// ~1e-8 (verify TestBatchedWindows). On the 2-core CPU backend
	// batching 1024-token windows brings no speed (the GEMMs are already
	// compute-bound at 1024 rows: BenchmarkPerplexityBatch), hence the
	// default of 1.
	Batch int
	// Progress is called after each window. May be nil.
	Progress func(done, total int)
}

// batch returns the windows per forward call.
func (o PerplexityOptions) batch() int { return max(o.Batch, 1) }

// windowBatches calls fn with each run of at most opts.batch() consecutive
// windows of ids, from window w0 on, checking ctx before each.
func windowBatches(ctx context.Context, ids []int, nw int, opts PerplexityOptions, fn func(w0 int, wins [][]int) error) error {
	for w0 := 0; w0 < nw; w0 += opts.batch() {
		if err := ctx.Err(); err != nil {
			return err
		}
		wins := make([][]int, 0, opts.batch())
		for w := w0; w < min(w0+opts.batch(), nw); w++ {
			wins = append(wins, ids[w*opts.Ctx:(w+1)*opts.Ctx])
		}
		if err := fn(w0, wins); err != nil {
			return err
		}
	}
	return nil
}

// PerplexityResult is what Perplexity measured.
type PerplexityResult struct {
	PPL          float64 `json:"ppl"`
	MeanNLL      float64 `json:"mean_nll"`
	Tokens       int     `json:"tokens"`  // tokens in the evaluated windows
	Scored       int     `json:"scored"`  // tokens whose probability was scored (ctx-1 per window)
	Windows      int     `json:"windows"` // windows evaluated
	Seconds      float64 `json:"seconds"`
	TokensPerSec float64 `json:"tokens_per_second"`
}

// windows validates the options for m and a text of n tokens and returns
// the number of windows to evaluate.
func (o PerplexityOptions) windows(m *model.Model, n int) (int, error) {
	// The model's context is max_position_embeddings unless it was loaded
	// for a shorter one (model.Options.Context), whose RoPE table (Phi-3's
	// short longrope factors) holds for no position past it.
	switch max := m.Context(); {
	case o.Ctx < 2:
		return 0, fmt.Errorf("ctx %d: need at least 2 tokens per window", o.Ctx)
	case max > 0 && o.Ctx > max && max == m.Config.MaxPositionEmbeddings:
		return 0, fmt.Errorf("ctx %d exceeds the model's max_position_embeddings %d", o.Ctx, max)
	case max > 0 && o.Ctx > max:
		return 0, fmt.Errorf("ctx %d exceeds the context of %d the model was loaded for", o.Ctx, max)
	case o.Batch < 0:
		return 0, fmt.Errorf("batch %d: want 0 (one window per call) or more", o.Batch)
	case o.MaxWindows < 0:
		return 0, fmt.Errorf("max windows %d: want 0 (all) or more", o.MaxWindows)
	}
	nw := Windows(n, o.Ctx, o.MaxWindows)
	if nw == 0 {
		return 0, fmt.Errorf("the text has %d tokens, fewer than one window of %d", n, o.Ctx)
	}
	return nw, nil
}

// Windows returns how many whole windows of ctx tokens ids holds, capped at
// maxWindows when it is positive.
func Windows(n, ctx, maxWindows int) int {
	w := n / ctx
	if maxWindows > 0 && w > maxWindows {
		w = maxWindows
	}
	return w
}

// Perplexity evaluates m on ids (BOS already prepended) in non-overlapping
// windows of opts.Ctx tokens.
func Perplexity(ctx context.Context, m *model.Model, ids []int, opts PerplexityOptions) (*PerplexityResult, error) {
	nw, err := opts.windows(m, len(ids))
	if err != nil {
		return nil, fmt.Errorf("perplexity: %w", err)
	}
	start := time.Now()
	vocab := m.Config.VocabSize
	var sum float64
	err = windowBatches(ctx, ids, nw, opts, func(w0 int, wins [][]int) error {
		if m.Scorer() {
			// The backend scores where the logits are; only the scores come back.
			nlls, err := m.ScoreBatch(wins)
			if err != nil {
				return fmt.Errorf("perplexity: windows %d-%d: %w", w0, w0+len(wins)-1, err)
			}
			for i, nll := range nlls {
				if err := finite("perplexity", w0+i, "mean NLL", mean(nll)); err != nil {
					return err
				}
				sum += mean(nll)
				if opts.Progress != nil {
					opts.Progress(w0+i+1, nw)
				}
			}
			return nil
		}
		logits, err := m.ForwardBatch(wins, nil, nil)
		if err != nil {
			return fmt.Errorf("perplexity: windows %d-%d: %w", w0, w0+len(wins)-1, err)
		}
		for i, win := range wins {
			nll := meanNLL(logits[i], win, vocab)
			if err := finite("perplexity", w0+i, "mean NLL", nll); err != nil {
				return err
			}
			sum += nll
			if opts.Progress != nil {
				opts.Progress(w0+i+1, nw)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	secs := time.Since(start).Seconds()
	mean := sum / float64(nw)
	r := &PerplexityResult{
		PPL: math.Exp(mean), MeanNLL: mean, Tokens: nw * opts.Ctx, Scored: nw * (opts.Ctx - 1),
		Windows: nw, Seconds: secs,
	}
	if secs > 0 {
		r.TokensPerSec = float64(r.Tokens) / secs
	}
	return r, nil
}

// ErrNonFinite is wrapped by errors about a NaN or infinite score: the
// model produced NaN or infinite logits, which no perplexity or KL can be
// reported for.
var ErrNonFinite = errors.New("non-finite result")

// finite returns an error naming the window unless v is finite.
func finite(op string, window int, what string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("%s: window %d: %w: %s is %v (the model's logits hold NaN or Inf: a damaged checkpoint?)", op, window, ErrNonFinite, what, v)
	}
	return nil
}

// meanNLL is the mean cross-entropy of win[1:] given logits [len(win),
// vocab] of win. The rows are scored in parallel (a softmax over the vocab
// per token costs about as much as the forward pass of a small model) and
// summed in order, so the result does not depend on the core count.
func meanNLL(logits []float32, win []int, vocab int) float64 {
	nll := make([]float64, len(win)-1)
	forRows(len(nll), func(t int) {
		nll[t] = CrossEntropy(logits[t*vocab:(t+1)*vocab], win[t+1])
	})
	return mean(nll)
}

// mean sums in order, so that the result does not depend on who computed
// the values.
func mean(v []float64) float64 {
	var sum float64
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

// forRows calls fn(t) for t in [0, n), spread over the cores.
func forRows(n int, fn func(t int)) {
	workers := min(goruntime.GOMAXPROCS(0), n)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := w; t < n; t += workers {
				fn(t)
			}
		}()
	}
	wg.Wait()
}

// CrossEntropy is -log softmax(logits)[target], computed in float64 with the
// max subtracted.
func CrossEntropy(logits []float32, target int) float64 {
	lse := logSumExp(logits)
	return lse - float64(logits[target])
}

func logSumExp(logits []float32) float64 {
	max := math.Inf(-1)
	for _, v := range logits {
		if float64(v) > max {
			max = float64(v)
		}
	}
	var s float64
	for _, v := range logits {
		s += math.Exp(float64(v) - max)
	}
	return max + math.Log(s)
}
