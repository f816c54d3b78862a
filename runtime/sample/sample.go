package sample

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
)

// Options selects the sampling rule.
type Options struct {
	// Temperature divides the logits; 0 means greedy.
	Temperature float64
	// TopK keeps the K most likely tokens; 0 keeps all.
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability
	// reaches TopP; 0 or >= 1 keeps all.
	TopP float64
	// Seed seeds the random generator.
	Seed uint64
}

// Sampler draws token ids from logits. It is not safe for concurrent use.
type Sampler struct {
	opts  Options
	rng   *rand.Rand
	cands []cand
}

type cand struct {
	id int
	p  float64
}

// New returns a sampler for o.
func New(o Options) *Sampler {
	return &Sampler{opts: o, rng: rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))}
}

// Greedy returns the index of the largest logit, the lowest on ties. NaN
// logits are never chosen unless all are NaN (then 0).
func Greedy(logits []float32) int {
	best := -1
	for i, v := range logits {
		if v != v {
			continue
		}
		if best < 0 || v > logits[best] {
			best = i
		}
	}
	return max(best, 0)
}

// Sample returns a token id drawn from logits [vocab].
func (s *Sampler) Sample(logits []float32) int {
	o := s.opts
	if o.Temperature <= 0 || o.TopK == 1 {
		return Greedy(logits)
	}
	if o.TopK == 0 && (o.TopP <= 0 || o.TopP >= 1) {
		return s.sampleAll(logits)
	}
	c := s.cands[:0]
	for id, v := range logits {
		if v == v {
			c = append(c, cand{id, float64(v) / o.Temperature})
		}
	}
	if len(c) == 0 {
		return 0
	}
	// Most likely first; the lower id first among equals.
	slices.SortFunc(c, func(a, b cand) int {
		if r := cmp.Compare(b.p, a.p); r != 0 {
			return r
		}
		return a.id - b.id
	})
	if o.TopK > 0 && o.TopK < len(c) {
		c = c[:o.TopK]
	}
	mx := c[0].p
	var sum float64
	for i := range c {
		c[i].p = math.Exp(c[i].p - mx)
		sum += c[i].p
	}
	for i := range c {
		c[i].p /= sum
	}
	if o.TopP > 0 && o.TopP < 1 {
		var acc float64
		for i := range c {
			acc += c[i].p
			if acc >= o.TopP {
				c = c[:i+1]
				break
			}
		}
		sum = acc
	} else {
		sum = 1
	}
	r := s.rng.Float64() * sum
	s.cands = c[:0]
	for _, e := range c {
		r -= e.p
		if r < 0 {
			return e.id
		}
	}
	return c[len(c)-1].id
}

// sampleAll draws from the whole softmax(logits/T) without sorting (no top-k
// or top-p to apply): one pass for the max, one for the sum, one to draw.
func (s *Sampler) sampleAll(logits []float32) int {
	t := s.opts.Temperature
	mx := math.Inf(-1)
	for _, v := range logits {
		if v == v {
			mx = math.Max(mx, float64(v)/t)
		}
	}
	if math.IsInf(mx, -1) {
		return 0
	}
	var sum float64
	for _, v := range logits {
		if v == v {
			sum += math.Exp(float64(v)/t - mx)
		}
	}
	r := s.rng.Float64() * sum
	last := 0
	for id, v := range logits {
		if v != v {
			continue
		}
		last = id
		r -= math.Exp(float64(v)/t - mx)
		if r < 0 {
			return id
		}
	}
	return last
}
