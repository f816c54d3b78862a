package gguf

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/gptqtool/gptqtool/formats/half"
)

// EncodeWeighted is Encode with an importance per column (an imatrix
// entry: the mean square of each input feature over calibration data),
// for a tensor of rows of rowLen values: Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL,
// IQ4_XS, IQ3_XXS, IQ3_S, Q2_K to Q6_K and the IQ2 and IQ1 types
// (IQ2_XXS, IQ2_XS and IQ1_S only so) rows are quantized as llama-quantize
// does with an importance matrix (quantize_row_q4_K_impl and its kin:
// each value's error weighted by its column's importance), other types as
// Encode
// (llama.cpp's Q8_0 and the float types take no weights). len(qw) must be
// rowLen, its entries finite and non-negative. Values the type cannot hold
// give an error wrapping ErrNotQuantizable, as Encode's.
func EncodeWeighted(t TensorType, src []float32, rowLen int, qw []float32) ([]byte, error) {
	if !takesImportance(t) {
		return Encode(t, src)
	}
	if rowLen <= 0 || len(src)%rowLen != 0 || len(qw) != rowLen {
		return nil, fmt.Errorf("encode %s with importance: %d values in rows of %d, %d weights", t, len(src), rowLen, len(qw))
	}
	for j, v := range qw {
		if !(v >= 0) || math.IsInf(float64(v), 1) {
			return nil, fmt.Errorf("encode %s with importance: importance %d is %g, want finite and non-negative", t, j, v)
		}
	}
	rb, err := t.RowBytes(int64(rowLen))
	if err != nil {
		return nil, fmt.Errorf("encode %s rows of %d: %w", t, rowLen, err)
	}
	rows := len(src) / rowLen
	dst := make([]byte, int64(rows)*rb)
	check := newQuantCheck(t)
	bpr := rowLen / t.BlockSize() // blocks per row
	parallelBlocks(rows, max(1, grainFor(t)*t.BlockSize()/rowLen), func(lo, hi int) {
		var k kQuantizer
		for r := lo; r < hi; r++ {
			x, y := src[r*rowLen:(r+1)*rowLen], dst[int64(r)*rb:int64(r+1)*rb]
			if !check.input(r*rowLen, x) {
				return
			}
			switch t {
			case TypeQ4_K:
				k.weightedRowQ4_K(y, x, qw)
			case TypeQ5_K:
				k.weightedRowQ5_K(y, x, qw)
			case TypeQ6_K:
				weightedRowQ6_K(y, x, qw)
			case TypeQ2_K:
				weightedRowQ2_K(y, x, qw)
			case TypeQ3_K:
				weightedRowQ3_K(y, x, qw)
			case TypeQ4_0, TypeQ4_1, TypeQ5_0, TypeQ5_1:
				lt, _ := legacyOf(t)
				lt.quantizeRow(y, x, qw)
			case TypeIQ4_NL:
				quantizeIQ4NL(y, x, qw)
			case TypeIQ4_XS:
				quantizeIQ4XS(y, x, qw)
			case TypeIQ3_XXS:
				quantizeIQ3XXS(y, x, qw)
			case TypeIQ3_S:
				quantizeIQ3S(y, x, qw)
			case TypeIQ2_XXS, TypeIQ2_XS, TypeIQ2_S:
				quantizeIQ2(t, y, x, qw)
			case TypeIQ1_S, TypeIQ1_M:
				quantizeIQ1(t, y, x, qw)
			}
			check.output(r*bpr, y)
		}
	})
	if err := check.err(src); err != nil {
		return nil, fmt.Errorf("encode %s with importance: %w", t, err)
	}
	return dst, nil
}

// takesImportance reports whether EncodeWeighted weighs the rows of t by
// their columns' importance: every quantized type this package encodes
// but Q8_0.
func takesImportance(t TensorType) bool {
	return t.Convertible() && t.BlockSize() > 1 && t != TypeQ8_0
}

// weightedRowQ4_K quantizes one row x into Q4_K super-blocks y with the
// column importances qw (ggml quantize_row_q4_K_impl).
func (k *kQuantizer) weightedRowQ4_K(y []byte, x, qw []float32) {
	for b := 0; b < len(x)/QK_K; b++ {
		blk := y[b*BlockBytesQ4_K : (b+1)*BlockBytesQ4_K]
		packQ4K(blk, k.weightedSuperBlock(blk, x[b*QK_K:(b+1)*QK_K], qw[b*QK_K:(b+1)*QK_K], 15, false))
	}
}

// weightedRowQ5_K is weightedRowQ4_K for Q5_K (ggml
// quantize_row_q5_K_impl).
func (k *kQuantizer) weightedRowQ5_K(y []byte, x, qw []float32) {
	for b := 0; b < len(x)/QK_K; b++ {
		blk := y[b*BlockBytesQ5_K : (b+1)*BlockBytesQ5_K]
		packQ5K(blk, k.weightedSuperBlock(blk, x[b*QK_K:(b+1)*QK_K], qw[b*QK_K:(b+1)*QK_K], 31, true))
	}
}

// weightedSuperBlock is superBlock with importances (ggml's _impl
// quantizers for Q4_K and Q5_K): each value weighs qw·sqrt(σ² + x²), σ²
// twice the block's mean square; each sub-block's scale and min come from
// a 37-step search (makeQKX3Quants from nmax − 0.9 in steps of 0.05), and
// the 8 scales and 8 mins are fitted to 6 bits by makeQPQuants, weighted
// by their sub-blocks' total weight, instead of scaled to the largest.
// clamp63 caps the 6-bit levels as the Q5_K quantizer does (Q4_K's stores
// them as they come).
func (k *kQuantizer) weightedSuperBlock(y []byte, x, qw []float32, nmax int, clamp63 bool) *[QK_K]uint8 {
	clear(y)
	L := &k.L
	sigma2 := float32(2*sumSquares(x)) / QK_K
	var sw [QK_K / 32]float32
	for j := range QK_K / 32 {
		xs := x[32*j : 32*j+32]
		sw[j] = importanceWeights(k.weights[:], qw[32*j:], xs, sigma2)
		k.scales[j], k.mins[j] = makeQKX3Quants(nmax, xs, k.weights[:], L[32*j:32*j+32], k.laux[:], -0.9, 0.05, 36)
	}
	var ls, lm [QK_K / 32]uint8
	dBlock := makeQPQuants(63, k.scales[:], ls[:], sw[:])
	mBlock := makeQPQuants(63, k.mins[:], lm[:], sw[:])
	s := y[q4kScales:q4kQS]
	for j := range QK_K / 32 {
		a, m := ls[j], lm[j]
		if clamp63 {
			a, m = min(a, 63), min(m, 63)
		}
		if j < 4 {
			s[j] = a
			s[j+4] = m
		} else {
			s[j+4] = a&0xF | (m&0xF)<<4
			s[j-4] |= (a >> 4) << 6
			s[j] |= (m >> 4) << 6
		}
	}
	dBits, dminBits := half.F32ToF16(dBlock), half.F32ToF16(mBlock)
	binary.LittleEndian.PutUint16(y[0:], dBits)
	binary.LittleEndian.PutUint16(y[2:], dminBits)
	k.requantize(x, s, half.F16ToF32(dBits), half.F16ToF32(dminBits), nmax)
	return L
}

// makeQPQuants fits the non-negative x ≈ scale·L with L in [0, nmax]
// weighted by qw (ggml make_qp_quants): the best of 9 scales around
// max/nmax, then up to 5 rounds moving single levels while the weighted
// fit improves. It returns the scale and leaves the levels in L.
func makeQPQuants(nmax int, x []float32, L []uint8, qw []float32) float32 {
	var mx float32
	for _, v := range x {
		if !(mx > v) {
			mx = v
		}
	}
	if mx < groupMaxEps { // all zero (or negligible), as ggml
		clear(L[:len(x)])
		return 0
	}
	fmax := float32(nmax)
	iscale := fmax / mx
	for i, v := range x {
		L[i] = uint8(nearestInt(iscale * v))
	}
	scale := 1 / iscale
	var bestMSE float32
	for i, v := range x {
		diff := v - float32(scale*float32(L[i]))
		bestMSE += float32(float32(qw[i]*diff) * diff)
	}
	for is := -4; is <= 4; is++ {
		if is == 0 {
			continue
		}
		iscaleIs := (float32(0.1*float32(is)) + fmax) / mx
		scaleIs := 1 / iscaleIs
		var mse float32
		for i, v := range x {
			l := min(nmax, nearestInt(iscaleIs*v))
			diff := v - float32(scaleIs*float32(l))
			mse += float32(float32(qw[i]*diff) * diff)
		}
		if mse < bestMSE {
			bestMSE, iscale = mse, iscaleIs
		}
	}
	var sumLX, sumL2 float32
	for i, v := range x {
		l := min(nmax, nearestInt(iscale*v))
		L[i] = uint8(l)
		fl := float32(l)
		sumLX += float32(float32(qw[i]*v) * fl)
		sumL2 += float32(float32(qw[i]*fl) * fl)
	}
	for range 5 {
		changed := false
		for i, v := range x {
			w, li := qw[i], float32(L[i])
			slx := sumLX - float32(float32(w*v)*li)
			sl2 := sumL2 - float32(float32(w*li)*li)
			if slx > 0 && sl2 > 0 {
				nl := min(nmax, nearestInt(float32(v*sl2)/slx))
				if nl != int(L[i]) {
					fn := float32(nl)
					slx += float32(float32(w*v) * fn)
					sl2 += float32(float32(w*fn) * fn)
					if float32(float32(slx*slx)*sumL2) > float32(float32(sumLX*sumLX)*sl2) {
						L[i], sumLX, sumL2 = uint8(nl), slx, sl2
						changed = true
					}
				}
			}
		}
		if !changed {
			break
		}
	}
	if !(sumL2 > 0) { // no weight (all importances zero) or NaN: ggml returns 0
		return 0
	}
	return sumLX / sumL2
}

// weightedRowQ6_K quantizes one row x into Q6_K super-blocks y with the
// column importances qw (ggml quantize_row_q6_K_impl: the sub-block
// scales' search weighs each value by its importance alone).
func weightedRowQ6_K(y []byte, x, qw []float32) {
	for b := 0; b < len(x)/QK_K; b++ {
		q6KBlock(y[b*BlockBytesQ6_K:(b+1)*BlockBytesQ6_K], x[b*QK_K:(b+1)*QK_K], qw[b*QK_K:(b+1)*QK_K])
	}
}

// eachBlock runs block on each block of t in turn: its values of src, its
// bytes of dst and its importances of qw (nil where qw is nil). It panics,
// naming t, if qw is nil for a type ggml quantizes only with importances
// (needsImportance), or if dst does not hold src's blocks (or src is not
// whole blocks).
func eachBlock(t TensorType, dst []byte, src, qw []float32, block func(y []byte, x, w []float32)) {
	if qw == nil && needsImportance(t) {
		panic(fmt.Sprintf("gguf: quantize %s: needs importances", t))
	}
	bs, bb := t.BlockSize(), t.BlockBytes()
	if len(src)%bs != 0 || len(dst) != len(src)/bs*bb {
		panic(fmt.Sprintf("gguf: quantize %s: %d values into %d bytes", t, len(src), len(dst)))
	}
	for b := range len(src) / bs {
		var w []float32
		if qw != nil {
			w = qw[b*bs : (b+1)*bs]
		}
		block(dst[b*bb:(b+1)*bb], src[b*bs:(b+1)*bs], w)
	}
}
