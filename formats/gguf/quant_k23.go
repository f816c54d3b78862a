package gguf

import (
	"encoding/binary"
	"fmt"

	"github.com/gptqtool/gptqtool/formats/half"
)

// Q2_K and Q3_K, the 2- and 3-bit k-quants, cut a super-block of 256
// values into 16 sub-blocks of 16 and store the low 2 bits of every quant
// the same way: in half h (values 128h .. 128h+127), value 128h+32i+l
// (i < 4, l < 32) is in bits 2i, 2i+1 of qs[32h+l], so dequantization walks
// each 32-byte half of qs four times with shifts 0, 2, 4, 6.

// Q2_K block layout (ggml-common.h block_q2_K), 84 bytes per 256 values:
//
//	bytes [0, 16)   scales: byte j for sub-block j (values 16j .. 16j+15),
//	                its 4-bit scale sc_j in the low nibble, its 4-bit min
//	                m_j in the high nibble
//	bytes [16, 80)  qs: 2-bit quants, as above
//	bytes [80, 82)  d     fp16, super-block scale of the sub-block scales
//	bytes [82, 84)  dmin  fp16, super-block scale of the sub-block mins
//
// Sub-block j decodes as x = d·sc_j·q − dmin·m_j with q in [0, 3].
const (
	q2kQS   = 16
	q2kD    = 80
	q2kDmin = 82
)

// Q3_K block layout (ggml-common.h block_q3_K), 110 bytes per 256 values:
//
//	bytes [0, 32)     hmask: the quants' third bits; value p has it in bit
//	                  p/32 of hmask[p%32] (value 128h+32i+l in bit 4h+i of
//	                  hmask[l])
//	bytes [32, 96)    qs: the low 2 bits, as above
//	bytes [96, 108)   scales: sixteen 6-bit values s_j, one per sub-block;
//	                  the low 4 bits of s_j in the low (j < 8) or high
//	                  (j >= 8) nibble of scales[j%8], the high 2 bits in
//	                  bits 2(j/4), 2(j/4)+1 of scales[8 + j%4]
//	bytes [108, 110)  d: fp16
//
// A value of sub-block j decodes as x = d·(s_j − 32)·(q − 4) with q in
// [0, 7] its low bits plus 4 times its third bit.
const (
	q3kQS     = 32
	q3kScales = 96
	q3kD      = 108
)

// lowBitsK23 returns the 2 low bits of value p's quant from Q2_K's or
// Q3_K's qs.
func lowBitsK23(qs []byte, p int) uint8 {
	return qs[32*(p/128)+p%32] >> (2 * (p % 128 / 32)) & 3
}

// packLowBitsK23 writes the levels L (in [0, 3]) into qs, the inverse of
// lowBitsK23.
func packLowBitsK23(qs []byte, L *[QK_K]uint8) {
	for h := range 2 {
		for l := range 32 {
			p := 128*h + l
			qs[32*h+l] = L[p] | L[p+32]<<2 | L[p+64]<<4 | L[p+96]<<6
		}
	}
}

// scaleK3 unpacks Q3_K's 6-bit scale s_j (0..63) from the 12 scale bytes
// s.
func scaleK3(j int, s []byte) uint8 {
	return s[j%8]>>(4*(j/8))&0xF | (s[8+j%4]>>(2*(j/4))&3)<<4
}

// putScaleK3 packs the 6-bit scale l as s_j into the 12 scale bytes s,
// cleared before.
func putScaleK3(s []byte, j int, l uint8) {
	s[j%8] |= (l & 0xF) << (4 * (j / 8))
	s[8+j%4] |= (l >> 4 & 3) << (2 * (j / 4))
}

// DequantizeQ2_K expands Q2_K super-blocks (ggml dequantize_row_q2_K). It
// panics if the lengths do not match.
func DequantizeQ2_K(dst []float32, src []byte) {
	if len(dst)%QK_K != 0 || len(src) != len(dst)/QK_K*BlockBytesQ2_K {
		panic(fmt.Sprintf("gguf: DequantizeQ2_K: %d bytes into %d values", len(src), len(dst)))
	}
	for b := 0; b < len(dst)/QK_K; b++ {
		blk := src[b*BlockBytesQ2_K : (b+1)*BlockBytesQ2_K]
		y := dst[b*QK_K : (b+1)*QK_K]
		d := half.F16ToF32(binary.LittleEndian.Uint16(blk[q2kD:]))
		dmin := half.F16ToF32(binary.LittleEndian.Uint16(blk[q2kDmin:]))
		qs := blk[q2kQS:q2kD]
		for j := range QK_K / 16 {
			dl, ml := d*float32(blk[j]&0xF), dmin*float32(blk[j]>>4)
			for p := 16 * j; p < 16*j+16; p++ {
				y[p] = float32(dl*float32(lowBitsK23(qs, p))) - ml
			}
		}
	}
}

// QuantizeQ2_K quantizes src (a multiple of 256 values) into Q2_K
// super-blocks in dst (84 bytes per 256 values), following ggml's
// reference quantizer quantize_row_q2_K_ref (what llama-quantize uses
// without an importance matrix):
//
//  1. For each sub-block of 16 values, weights w = |x| and a search
//     (qkxQuants as make_qkx2_quants with use_mad: 2-bit levels at the
//     inverse scales 3/(max−min), then (2.5 + 0.1k)/(max−min) for k =
//     0..15, each but the first with its least-squares scale and min) for
//     the scale s and min m minimising Σ w·|s·q − m − x|.
//  2. The 16 scales and 16 mins are quantized to 4 bits against the
//     super-block d = max s/15 and dmin = max m/15 (both stored as fp16).
//  3. Every value is requantized against its sub-block's decoded scale and
//     min: q = clamp(round((x + dmin·m_j)/(d·sc_j)), 0, 3); a sub-block
//     whose decoded scale is 0 keeps the search's levels.
//
// Rounding is to nearest, ties to even, as ggml's nearest_int. It panics
// if the lengths do not match.
func QuantizeQ2_K(dst []byte, src []float32) {
	if len(src)%QK_K != 0 || len(dst) != len(src)/QK_K*BlockBytesQ2_K {
		panic(fmt.Sprintf("gguf: QuantizeQ2_K: %d values into %d bytes", len(src), len(dst)))
	}
	for b := 0; b < len(src)/QK_K; b++ {
		q2KBlock(dst[b*BlockBytesQ2_K:(b+1)*BlockBytesQ2_K], src[b*QK_K:(b+1)*QK_K], nil)
	}
}

// weightedRowQ2_K quantizes one row x into Q2_K super-blocks y with the
// column importances qw (ggml quantize_row_q2_K_impl).
func weightedRowQ2_K(y []byte, x, qw []float32) {
	for b := 0; b < len(x)/QK_K; b++ {
		q2KBlock(y[b*BlockBytesQ2_K:(b+1)*BlockBytesQ2_K], x[b*QK_K:(b+1)*QK_K], qw[b*QK_K:(b+1)*QK_K])
	}
}

// q2KBlock quantizes one super-block x into y: for nil qw as
// QuantizeQ2_K, else as quantize_row_q2_K_impl with the importances qw:
// each value weighs qw·sqrt(σ² + x²), σ² the block's mean square; each
// sub-block's scale and min come from makeQKX3Quants' 37-step search
// (from nmax − 0.9 in steps of 0.05, squared error), and the 16 scales
// and 16 mins are fitted to 4 bits by makeQPQuants, weighted by their
// sub-blocks' total weight, instead of scaled to the largest. Step 3 is
// the same.
func q2KBlock(y []byte, x, qw []float32) {
	var (
		L                [QK_K]uint8
		laux             [16]uint8
		w                [16]float32
		scales, mins     [QK_K / 16]float32
		dBits, dmBits    uint16 // fp16 d and dmin, 0 unless set
		maxScale, maxMin float32
	)
	clear(y)
	sc := y[:q2kQS]
	if qw == nil {
		for j := range QK_K / 16 {
			xs := x[16*j : 16*j+16]
			for l, v := range xs {
				w[l] = abs32(v)
			}
			scales[j], mins[j] = qkxQuants(3, xs, w[:], L[16*j:16*j+16], laux[:], -0.5, 0.1, 15, true, false)
			if scales[j] > maxScale {
				maxScale = scales[j]
			}
			if mins[j] > maxMin {
				maxMin = mins[j]
			}
		}
		// uint8 of an int wraps, as the C reference's assignments to its
		// uint8_t scales do.
		if maxScale > 0 {
			iscale := 15 / maxScale
			for j := range QK_K / 16 {
				sc[j] = uint8(nearestInt(iscale * scales[j]))
			}
			dBits = half.F32ToF16(maxScale / 15)
		}
		if maxMin > 0 {
			iscale := 15 / maxMin
			for j := range QK_K / 16 {
				sc[j] |= uint8(nearestInt(iscale*mins[j]) << 4)
			}
			dmBits = half.F32ToF16(maxMin / 15)
		}
	} else {
		sigma2 := sumSquares(x) / QK_K
		var sw [QK_K / 16]float32
		for j := range QK_K / 16 {
			xs := x[16*j : 16*j+16]
			sw[j] = importanceWeights(w[:], qw[16*j:], xs, sigma2)
			scales[j], mins[j] = makeQKX3Quants(3, xs, w[:], L[16*j:16*j+16], laux[:], -0.9, 0.05, 36)
		}
		var ls, lm [QK_K / 16]uint8
		dBits = half.F32ToF16(makeQPQuants(15, scales[:], ls[:], sw[:]))
		dmBits = half.F32ToF16(makeQPQuants(15, mins[:], lm[:], sw[:]))
		for j := range QK_K / 16 {
			sc[j] = ls[j] | lm[j]<<4
		}
	}
	binary.LittleEndian.PutUint16(y[q2kD:], dBits)
	binary.LittleEndian.PutUint16(y[q2kDmin:], dmBits)
	d, dmin := half.F16ToF32(dBits), half.F16ToF32(dmBits)
	for j := range QK_K / 16 {
		dj := d * float32(sc[j]&0xF)
		if dj == 0 {
			continue
		}
		dm := dmin * float32(sc[j]>>4)
		for i := 16 * j; i < 16*j+16; i++ {
			L[i] = uint8(clampInt(nearestInt((x[i]+dm)/dj), 0, 3))
		}
	}
	packLowBitsK23(y[q2kQS:q2kD], &L)
}

// DequantizeQ3_K expands Q3_K super-blocks (ggml dequantize_row_q3_K). It
// panics if the lengths do not match.
func DequantizeQ3_K(dst []float32, src []byte) {
	if len(dst)%QK_K != 0 || len(src) != len(dst)/QK_K*BlockBytesQ3_K {
		panic(fmt.Sprintf("gguf: DequantizeQ3_K: %d bytes into %d values", len(src), len(dst)))
	}
	for b := 0; b < len(dst)/QK_K; b++ {
		blk := src[b*BlockBytesQ3_K : (b+1)*BlockBytesQ3_K]
		y := dst[b*QK_K : (b+1)*QK_K]
		d := half.F16ToF32(binary.LittleEndian.Uint16(blk[q3kD:]))
		hmask, qs, sc := blk[:q3kQS], blk[q3kQS:q3kScales], blk[q3kScales:q3kD]
		for j := range QK_K / 16 {
			dl := d * float32(int(scaleK3(j, sc))-32)
			for p := 16 * j; p < 16*j+16; p++ {
				q := int(lowBitsK23(qs, p))
				if hmask[p%32]>>(p/32)&1 == 0 {
					q -= 4
				}
				y[p] = dl * float32(q)
			}
		}
	}
}

// QuantizeQ3_K quantizes src (a multiple of 256 values) into Q3_K
// super-blocks in dst (110 bytes per 256 values), following ggml's
// reference quantizer quantize_row_q3_K_ref:
//
//  1. For each sub-block of 16 values, a symmetric scale from makeQ3Quants
//     (levels −4..3 at 1/scale = −4/max, then moved one at a time while
//     the x²-weighted least-squares fit improves).
//  2. The scales are quantized to 6 bits against d = −max/32, max the
//     scale of largest magnitude (with its sign), stored as fp16:
//     s_j = clamp(round(scale_j/d), −32, 31) + 32.
//  3. Every value is requantized against its sub-block's decoded scale:
//     q = clamp(round(x/(d·(s_j − 32))), −4, 3) + 4; a sub-block whose
//     decoded scale is 0 keeps step 1's levels.
//
// It panics if the lengths do not match.
func QuantizeQ3_K(dst []byte, src []float32) {
	if len(src)%QK_K != 0 || len(dst) != len(src)/QK_K*BlockBytesQ3_K {
		panic(fmt.Sprintf("gguf: QuantizeQ3_K: %d values into %d bytes", len(src), len(dst)))
	}
	for b := 0; b < len(src)/QK_K; b++ {
		q3KBlock(dst[b*BlockBytesQ3_K:(b+1)*BlockBytesQ3_K], src[b*QK_K:(b+1)*QK_K], nil)
	}
}

// weightedRowQ3_K quantizes one row x into Q3_K super-blocks y with the
// column importances qw (ggml quantize_row_q3_K_impl).
func weightedRowQ3_K(y []byte, x, qw []float32) {
	for b := 0; b < len(x)/QK_K; b++ {
		q3KBlock(y[b*BlockBytesQ3_K:(b+1)*BlockBytesQ3_K], x[b*QK_K:(b+1)*QK_K], qw[b*QK_K:(b+1)*QK_K])
	}
}

// q3KBlock quantizes one super-block x into y: for nil qw as
// QuantizeQ3_K, else as quantize_row_q3_K_impl with the importances qw:
// each value weighs qw·sqrt(σ² + x²), σ² twice the block's mean square;
// each sub-block's scale comes from makeQXQuants (levels −4..3, 19
// candidate scales) with those weights, and the 16 scales are fitted to
// 6 bits by makeQXQuants (levels −32..31) weighted by their sub-blocks'
// total weight. Step 3 is the same.
func q3KBlock(y []byte, x, qw []float32) {
	var (
		L      [QK_K]uint8
		scales [QK_K / 16]float32
		dBits  uint16 // fp16 d, 0 unless set
	)
	clear(y)
	s := y[q3kScales:q3kD]
	if qw == nil {
		var maxScale, amax float32
		for j := range QK_K / 16 {
			scales[j] = makeQ3Quants(4, x[16*j:16*j+16], L[16*j:16*j+16])
			if a := abs32(scales[j]); a > amax {
				amax, maxScale = a, scales[j]
			}
		}
		if maxScale != 0 {
			iscale := -32 / maxScale
			for j := range QK_K / 16 {
				// int8 first, as the reference's int8_t l.
				l := clampInt(int(int8(nearestInt(iscale*scales[j]))), -32, 31) + 32
				putScaleK3(s, j, uint8(l))
			}
			dBits = half.F32ToF16(1 / iscale)
		}
	} else {
		sigma2 := float32(2*sumSquares(x)) / QK_K
		var w, sw [QK_K / 16]float32
		for j := range QK_K / 16 {
			xs := x[16*j : 16*j+16]
			sw[j] = importanceWeights(w[:], qw[16*j:], xs, sigma2)
			scales[j] = makeQXQuants(4, xs, L[16*j:16*j+16], w[:])
		}
		var ls [QK_K / 16]uint8
		dBits = half.F32ToF16(makeQXQuants(32, scales[:], ls[:], sw[:]))
		for j := range QK_K / 16 {
			putScaleK3(s, j, ls[j])
		}
	}
	binary.LittleEndian.PutUint16(y[q3kD:], dBits)
	d := half.F16ToF32(dBits)
	for j := range QK_K / 16 {
		dj := d * float32(int(scaleK3(j, s))-32)
		if dj == 0 {
			continue
		}
		for i := 16 * j; i < 16*j+16; i++ {
			L[i] = uint8(clampInt(nearestInt(x[i]/dj), -4, 3) + 4)
		}
	}
	hmask := y[:q3kQS]
	for p := range QK_K {
		hmask[p%32] |= (L[p] >> 2) << (p / 32)
		L[p] &= 3
	}
	packLowBitsK23(y[q3kQS:q3kScales], &L)
}

// makeQ3Quants fits x ≈ scale·(L − nmax) with L − nmax in [−nmax, nmax−1]
// (ggml make_q3_quants with do_rmse): levels at 1/scale = −nmax/max (max
// the value of largest magnitude, with its sign), then up to 5 rounds
// moving single levels to the best level for the others' fit while the
// x²-weighted least-squares fit improves. It returns the least-squares
// scale of the final levels and leaves the levels in L; a group whose
// largest magnitude is below GROUP_MAX_EPS gets levels 0 and scale 0.
func makeQ3Quants(nmax int, x []float32, L []uint8) float32 {
	mx := signedMax(x)
	if abs32(mx) < groupMaxEps {
		clear(L[:len(x)])
		return 0
	}
	iscale := -float32(nmax) / mx
	var sumLX, sumL2 float32
	for i, v := range x {
		l := clampInt(nearestInt(iscale*v), -nmax, nmax-1)
		L[i] = uint8(l + nmax)
		w, fl := float32(v*v), float32(l)
		sumLX += float32(float32(w*v) * fl)
		sumL2 += float32(float32(w*fl) * fl)
	}
	for range 5 {
		changed := false
		for i, v := range x {
			w, li := float32(v*v), float32(int(L[i])-nmax)
			slx := sumLX - float32(float32(w*v)*li)
			if !(slx > 0) {
				continue
			}
			sl2 := sumL2 - float32(float32(w*li)*li)
			nl := clampInt(nearestInt(float32(v*sl2)/slx), -nmax, nmax-1)
			if nl == int(L[i])-nmax {
				continue
			}
			fn := float32(nl)
			slx += float32(float32(w*v) * fn)
			sl2 += float32(float32(w*fn) * fn)
			if sl2 > 0 && float32(float32(slx*slx)*sumL2) > float32(float32(sumLX*sumLX)*sl2) {
				L[i], sumLX, sumL2 = uint8(nl+nmax), slx, sl2
				changed = true
			}
		}
		if !changed {
			break
		}
	}
	if !(sumL2 > 0) {
		return 0
	}
	return sumLX / sumL2
}
