package runtime

import (
	"fmt"
	"math"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
)

// RoPEFreqs returns the inverse frequencies of rotary embeddings over heads
// of headDim, inv [headDim/2] float32: the table RoPE, RoPEStore and
// MatMulSplitRoPE rotate by (angle pos·inv[j] for dimensions j and
// j+headDim/2), as transformers' ROPE_INIT_FUNCTIONS compute it for
// s.Type (modeling_rope_utils.py):
//
//	default  inv[j] = 1/theta^(2j/headDim)
//	linear   inv[j] / Factor                   (_compute_linear_scaling_rope_parameters)
//	llama3   with λ = 2π/inv[j], o = OriginalMaxPositionEmbeddings,
//	         l = LowFreqFactor, h = HighFreqFactor (_compute_llama3_parameters):
//	         inv[j]                 where λ < o/h
//	         inv[j] / Factor        where λ > o/l
//	         (1-σ)·inv[j]/Factor + σ·inv[j], σ = (o/λ - l)/(h - l), between
//	llama3 with FreqFactors (a GGUF file's rope_freqs): inv[j] / FreqFactors[j]
//
// Every value is computed in float64 and rounded to float32 once, the
// convention the plain table has always had here (transformers does the
// same arithmetic on float32 tensors, so an entry can differ from its by
// a unit in the last place; which band an entry falls in cannot, for any
// published Llama 3 configuration, whose wavelengths lie at least 0.3%
// from the band edges). Where h = l the bands meet at one wavelength,
// which keeps its frequency (transformers' 0/0 there is NaN).
//
// Every RoPE table of the project is built here; a scaling it does not
// compute (another type, invalid parameters, factors of another length)
// is an error, never the unscaled table.
func RoPEFreqs(headDim int, theta float64, s hfconfig.RopeScaling) ([]float32, error) {
	if headDim <= 0 || headDim%2 != 0 {
		return nil, fmt.Errorf("rope: head_dim %d: want a positive even number", headDim)
	}
	if !(theta > 0) || math.IsInf(theta, 0) {
		return nil, fmt.Errorf("rope: rope_theta %g: want a positive finite number", theta)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("rope: scaling %s: %w", s, err)
	}
	if s.Type == hfconfig.RopeYarn {
		return nil, fmt.Errorf("rope: scaling %s: %w (not computed yet)", s, hfconfig.ErrUnsupported)
	}
	d2 := headDim / 2
	if s.FreqFactors != nil && len(s.FreqFactors) != d2 {
		return nil, fmt.Errorf("rope: %d frequency factors for head_dim %d: want %d", len(s.FreqFactors), headDim, d2)
	}
	inv := make([]float32, d2)
	for j := range inv {
		base := 1 / math.Pow(theta, float64(2*j)/float64(headDim))
		v := base
		switch {
		case s.FreqFactors != nil:
			v = base / float64(s.FreqFactors[j])
		case s.Type == hfconfig.RopeLinear:
			v = base / s.Factor
		case s.Type == hfconfig.RopeLlama3:
			v = llama3Freq(base, s)
		}
		inv[j] = float32(v)
	}
	return inv, nil
}

// llama3Freq scales one inverse frequency as transformers'
// _compute_llama3_parameters does.
func llama3Freq(inv float64, s hfconfig.RopeScaling) float64 {
	orig := float64(s.OriginalMaxPositionEmbeddings)
	lowWavelen, highWavelen := orig/s.LowFreqFactor, orig/s.HighFreqFactor
	wavelen := 2 * math.Pi / inv
	switch {
	case wavelen < highWavelen:
		return inv
	case wavelen > lowWavelen:
		return inv / s.Factor
	case s.HighFreqFactor == s.LowFreqFactor:
		return inv
	}
	smooth := (orig/wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
	return (1-smooth)*inv/s.Factor + smooth*inv
}
