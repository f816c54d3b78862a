package sample

import (
	"math/rand/v2"

	"github.com/gptqtool/gptqtool/runtime"
)

// Options selects the sampling rule.
type Options struct {
	// Temperature divides the logits; 0 means greedy.
	Temperature float64
	// TopK keeps the K most likely tokens and those tied with the K-th
	// (runtime.SampleParams.TopK); 0 keeps all.
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability
	// reaches TopP; 0 or >= 1 keeps all.
	TopP float64
	// Seed seeds the random generator.
	Seed uint64
}

// Sampler draws token ids from logits under runtime.DrawToken's rule, one
// uniform number of its seeded generator a draw. It is not safe for
// concurrent use.
type Sampler struct {
	opts Options
	src  *rand.PCG
	rng  *rand.Rand
}

// New returns a sampler for o.
func New(o Options) *Sampler {
	src := rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15)
	return &Sampler{opts: o, src: src, rng: rand.New(src)}
}

// Peek returns the rules of the next n draws without taking them: Next
// returns them in turn afterwards (speculative decoding draws the tokens
// of a draft's rows with them, and takes only the draws it keeps, Skip).
func (s *Sampler) Peek(n int) []runtime.SampleParams {
	src := *s.src
	ahead := &Sampler{opts: s.opts, src: &src, rng: rand.New(&src)}
	out := make([]runtime.SampleParams, n)
	for i := range out {
		out[i] = ahead.Next()
	}
	return out
}

// Skip takes the next n draws unused.
func (s *Sampler) Skip(n int) {
	for range n {
		s.Next()
	}
}

// Greedy returns the index of the largest logit, the lowest on ties. NaN
// logits are never chosen unless all are NaN (then 0).
func Greedy(logits []float32) int {
	return runtime.DrawToken(logits, runtime.SampleParams{})
}

// Next returns the rule of the next draw (advancing the generator), for a
// backend's runtime.TokenSampler or runtime.DrawToken.
func (s *Sampler) Next() runtime.SampleParams {
	o := s.opts
	p := runtime.SampleParams{Temperature: o.Temperature, TopK: o.TopK, TopP: o.TopP}
	if o.Temperature > 0 && o.TopK != 1 {
		p.U = s.rng.Float64()
	}
	return p
}

// Sample returns a token id drawn from logits [vocab].
func (s *Sampler) Sample(logits []float32) int {
	return runtime.DrawToken(logits, s.Next())
}
