package runtime

import (
	"fmt"
	"math"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
)

// RoPEFreqs returns the inverse frequencies of rotary embeddings over dim
// rotated channels of each head, inv [dim/2] float32: the table RoPE,
// RoPEStore and MatMulSplitRoPE rotate by (angle pos·inv[j] for
// dimensions j and j+dim/2). dim is the head size, or with partial RoPE
// (hfconfig.Config.RotaryDim) the rotated part of it, as transformers'
// rope init takes dim = int(head_dim·partial_rotary_factor): every
// exponent below is over dim, not the head size, and longrope's and
// FreqFactors' lists hold dim/2 entries. The table is as
// transformers' ROPE_INIT_FUNCTIONS compute it for s.Type
// (modeling_rope_utils.py), headDim standing for dim:
//
//	default  inv[j] = 1/theta^(2j/headDim)
//	linear   inv[j] / Factor                   (_compute_linear_scaling_rope_parameters)
//	llama3   with λ = 2π/inv[j], o = OriginalMaxPositionEmbeddings,
//	         l = LowFreqFactor, h = HighFreqFactor (_compute_llama3_parameters):
//	         inv[j]                 where λ < o/h
//	         inv[j] / Factor        where λ > o/l
//	         (1-σ)·inv[j]/Factor + σ·inv[j], σ = (o/λ - l)/(h - l), between
//	llama3 with FreqFactors (a GGUF file's rope_freqs): inv[j] / FreqFactors[j]
//	yarn     with e = 1 - clamp((j - low)/(high - low), 0, 1) over yarn's
//	         correction range [low, high] (yarnRange;
//	         _compute_yarn_parameters): inv[j]/Factor·(1-e) + inv[j]·e,
//	         kept below low, divided by Factor above high
//	longrope inv[j] / LongFactor[j] where Long, else inv[j] / ShortFactor[j]
//	         (_compute_longrope_parameters; the caller sets Long by the
//	         context the model runs with, hfconfig's ForContext, whose
//	         readLongrope says why one table)
//
// yarn's and longrope's attention factors are not in the table: see
// AttentionFactor.
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
		return nil, fmt.Errorf("rope: rotary dimension %d: want a positive even number", headDim)
	}
	if !(theta > 0) || math.IsInf(theta, 0) {
		return nil, fmt.Errorf("rope: rope_theta %g: want a positive finite number", theta)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("rope: scaling %s: %w", s, err)
	}
	if s.Type == hfconfig.RopeYarn && !(theta > 1) {
		// transformers divides by ln(theta) for the correction range.
		return nil, fmt.Errorf("rope: rope_theta %g with scaling %s: want a number above 1", theta, s)
	}
	d2 := headDim / 2
	if s.FreqFactors != nil && len(s.FreqFactors) != d2 {
		return nil, fmt.Errorf("rope: %d frequency factors for rotary dimension %d: want %d", len(s.FreqFactors), headDim, d2)
	}
	ext := s.ShortFactor
	if s.Long {
		ext = s.LongFactor
	}
	if s.Type == hfconfig.RopeLongrope && len(ext) != d2 {
		return nil, fmt.Errorf("rope: scaling %s for rotary dimension %d: want %d factors", s, headDim, d2)
	}
	inv := make([]float32, d2)
	var low, high float64
	if s.Type == hfconfig.RopeYarn {
		low, high = yarnRange(headDim, theta, s)
	}
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
		case s.Type == hfconfig.RopeLongrope:
			v = base / ext[j]
		case s.Type == hfconfig.RopeYarn:
			// extrapolation e: 1 below the range (kept), 0 above it
			// (interpolated), linear between.
			e := 1 - min(max((float64(j)-low)/(high-low), 0), 1)
			v = base/s.Factor*(1-e) + base*e
		}
		inv[j] = float32(v)
	}
	return inv, nil
}

// yarnRange returns yarn's correction range [low, high] in dimension
// pairs j, as _compute_yarn_parameters' find_correction_range: the
// dimension d(r) = headDim·ln(o/(2πr)) / (2·ln theta) at which a frequency
// turns r times over o = OriginalMaxPositionEmbeddings positions, low =
// d(BetaFast) and high = d(BetaSlow), rounded out (floor, ceil) where
// Truncate, clamped to [0, headDim-1] (headDim, not headDim/2, as
// transformers clamps), and high moved 0.001 above low where they meet
// (linear_ramp_factor's guard against 0/0).
func yarnRange(headDim int, theta float64, s hfconfig.RopeScaling) (low, high float64) {
	dim, orig := float64(headDim), float64(s.OriginalMaxPositionEmbeddings)
	corr := func(rot float64) float64 { return dim * math.Log(orig/(rot*2*math.Pi)) / (2 * math.Log(theta)) }
	low, high = corr(s.BetaFast), corr(s.BetaSlow)
	if s.Truncate {
		low, high = math.Floor(low), math.Ceil(high)
	}
	low, high = max(low, 0), min(high, dim-1)
	if low == high {
		high += 0.001
	}
	return low, high
}

// AttentionFactor returns the factor transformers multiplies RoPE's cos
// and sin by for scaling s: yarn's and longrope's AttentionFactor, 1 for
// the others. longrope's applies with either table: transformers returns
// one attention factor for both (_compute_longrope_parameters), and vLLM's
// Phi3LongRoPEScaledRotaryEmbedding gives short_mscale and long_mscale the
// same default.
// Since q and k are both rotated by them, it multiplies the attention
// logits q·k by its square, which the model folds into the attention
// scale (AttentionParams.Scale) rather than into the rotation: the
// rotated q and k (the KV cache's K included) are RoPE's of the table
// alone.
func AttentionFactor(s hfconfig.RopeScaling) float64 {
	if s.Type == hfconfig.RopeYarn || s.Type == hfconfig.RopeLongrope {
		return s.AttentionFactor
	}
	return 1
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
