package verify

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/gptqtool/gptqtool/runtime/model"
)

// KLResult compares a model's next-token distributions with a baseline's on
// the same windows.
type KLResult struct {
	MeanKL       float64 `json:"mean_kl"`        // mean over scored tokens of KL(baseline || model), nats
	MaxKL        float64 `json:"max_kl"`         // largest per-token KL
	Top1Agree    float64 `json:"top1_agreement"` // fraction of tokens where both argmaxes agree
	PPL          float64 `json:"ppl"`            // the model's perplexity on the same windows
	BaselinePPL  float64 `json:"baseline_ppl"`
	Tokens       int     `json:"tokens"`
	Windows      int     `json:"windows"`
	Seconds      float64 `json:"seconds"`
	TokensPerSec float64 `json:"tokens_per_second"`
}

// KL evaluates KL(baseline || m) token by token over the windows Perplexity
// would use (every position of each window, including the last, is scored).
func KL(ctx context.Context, m, baseline *model.Model, ids []int, opts PerplexityOptions) (*KLResult, error) {
	if m.Config.VocabSize != baseline.Config.VocabSize {
		return nil, fmt.Errorf("kl: vocab sizes differ: model %d (%s), baseline %d (%s): the two must share a tokenizer",
			m.Config.VocabSize, m.Config.File, baseline.Config.VocabSize, baseline.Config.File)
	}
	nw, err := opts.windows(m, len(ids))
	if err == nil {
		_, err = opts.windows(baseline, len(ids))
	}
	if err != nil {
		return nil, fmt.Errorf("kl: %w", err)
	}
	start := time.Now()
	vocab := m.Config.VocabSize
	var klSum, maxKL, nllM, nllB float64
	var agree, n int
	err = windowBatches(ctx, ids, nw, opts, func(w0 int, wins [][]int) error {
		last := w0 + len(wins) - 1
		lms, err := m.ForwardBatch(wins, nil, nil)
		if err != nil {
			return fmt.Errorf("kl: windows %d-%d: %w", w0, last, err)
		}
		lbs, err := baseline.ForwardBatch(wins, nil, nil)
		if err != nil {
			return fmt.Errorf("kl: baseline windows %d-%d: %w", w0, last, err)
		}
		for i, win := range wins {
			lm, lb := lms[i], lbs[i]
			kls := make([]float64, len(win))
			same := make([]bool, len(win))
			forRows(len(win), func(t int) {
				rm, rb := lm[t*vocab:(t+1)*vocab], lb[t*vocab:(t+1)*vocab]
				kls[t] = klRow(rb, rm)
				same[t] = argmax(rm) == argmax(rb)
			})
			for t, k := range kls {
				klSum += k
				maxKL = math.Max(maxKL, k)
				if same[t] {
					agree++
				}
			}
			n += len(win)
			m, b := meanNLL(lm, win, vocab), meanNLL(lb, win, vocab)
			if err := finite("kl", w0+i, "mean NLL", m); err != nil {
				return err
			}
			if err := finite("kl", w0+i, "the baseline's mean NLL", b); err != nil {
				return err
			}
			if err := finite("kl", w0+i, "KL", klSum); err != nil {
				return err
			}
			nllM += m
			nllB += b
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
	r := &KLResult{
		MeanKL: klSum / float64(n), MaxKL: maxKL, Top1Agree: float64(agree) / float64(n),
		PPL: math.Exp(nllM / float64(nw)), BaselinePPL: math.Exp(nllB / float64(nw)),
		Tokens: n, Windows: nw, Seconds: secs,
	}
	if secs > 0 {
		r.TokensPerSec = float64(n) / secs
	}
	return r, nil
}

// klRow is KL(P||Q) for P = softmax(lp), Q = softmax(lq).
func klRow(lp, lq []float32) float64 {
	lseP, lseQ := logSumExp(lp), logSumExp(lq)
	var kl float64
	for i := range lp {
		logP := float64(lp[i]) - lseP
		kl += math.Exp(logP) * (logP - (float64(lq[i]) - lseQ))
	}
	if kl < 0 { // rounding when the distributions are equal
		kl = 0
	}
	return kl
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}
