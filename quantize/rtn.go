package quantize

import (
	"fmt"
)

// RTN quantizes w, [N, K] row-major, by plain round-to-nearest with the same
// quantizer, groups and Result layout as GPTQ: params per group of the
// original W (per row when GroupSize is -1), no error feedback, no act order
// (GIdx[k] = k/groupSize, Perm nil). Only Bits, GroupSize, Sym, the MSE fields
// and Fp16Scales of o are used; Damp must still be valid. Loss and Damp are 0.
func RTN(w []float32, N, K int, o Options) (*Result, error) {
	if err := o.Validate(K); err != nil {
		return nil, fmt.Errorf("rtn: %w", err)
	}
	if N <= 0 || len(w) != N*K {
		return nil, fmt.Errorf("rtn: weight has %d values, want N*K=%d*%d", len(w), N, K)
	}
	o = o.withDefaults()
	W, err := toFloat64(w, K)
	if err != nil {
		return nil, fmt.Errorf("rtn: %w", err)
	}
	s := newState(W, N, K, o)
	s.parallelRows(func(lo, hi int) {
		for n := lo; n < hi; n++ {
			row := W[n*K : (n+1)*K]
			for g := range s.G {
				c0, c1 := g*s.gs, min(g*s.gs+s.gs, K)
				sc, z := s.qz.FindParams(row[c0:c1])
				s.scale[g*N+n], s.zero[g*N+n] = sc, z
				for k := c0; k < c1; k++ {
					s.codes[n*K+k] = uint8(s.qz.Code(row[k], sc, z))
				}
			}
		}
	})
	perm := make([]int, K)
	gidx := make([]int32, K)
	for k := range K {
		perm[k] = k
		gidx[k] = int32(k / s.gs)
	}
	res, err := s.result(perm, gidx)
	if err != nil {
		return nil, fmt.Errorf("rtn: %w", err)
	}
	return res, nil
}
