package gguf

import (
	"encoding/binary"
	"fmt"

	"github.com/gptqtool/gptqtool/formats/half"
)

// QK4_NL is the number of values in an IQ4_NL block (ggml-common.h).
const QK4_NL = 32

// Block sizes in bytes of the 4-bit non-linear types (ggml-common.h
// block_iq4_nl, block_iq4_xs).
const (
	// BlockBytesIQ4_NL is sizeof(block_iq4_nl): fp16 d, 16 bytes of 4-bit
	// indices.
	BlockBytesIQ4_NL = 2 + QK4_NL/2
	// BlockBytesIQ4_XS is sizeof(block_iq4_xs): fp16 d, uint16 scales_h,
	// 4 bytes of scales_l, 128 bytes of 4-bit indices.
	BlockBytesIQ4_XS = 2 + 2 + QK_K/64 + QK_K/2
)

// kvaluesIQ4NL is the codebook of IQ4_NL and IQ4_XS (ggml-common.h
// kvalues_iq4nl): a 4-bit index q decodes as d·kvaluesIQ4NL[q].
var kvaluesIQ4NL = [16]int8{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}

// IQ4_XS block layout (ggml-common.h block_iq4_xs), 136 bytes per 256
// values:
//
//	bytes [0, 2)     d         fp16, super-block scale
//	bytes [2, 4)     scales_h  uint16: bits 2j, 2j+1 are the high 2 bits
//	                           of sub-block j's 6-bit scale
//	bytes [4, 8)     scales_l  the low 4 bits of sub-block j's scale in
//	                           nibble j%2 (low first) of scales_l[j/2]
//	bytes [8, 136)   qs        16 bytes per sub-block of 32, as IQ4_NL's
//
// Sub-block j (values 32j .. 32j+31) decodes as x = d·(ls_j − 32)·kv[q],
// ls_j the 6-bit scale, kv kvaluesIQ4NL.
const (
	iq4xsScalesH = 2
	iq4xsScalesL = 4
	iq4xsQS      = 8
)

// DequantizeIQ4_NL expands IQ4_NL blocks (ggml dequantize_row_iq4_nl):
//
//	block_iq4_nl { fp16 d; uint8 qs[16]; }   x = d·kv[q]
//
// with value j's index in the low nibble of qs[j], value j+16's in the
// high nibble (j < 16), kv = {−127, −104, −83, −65, −49, −35, −22, −10, 1,
// 13, 25, 38, 53, 69, 89, 113}. It panics if the lengths do not match.
func DequantizeIQ4_NL(dst []float32, src []byte) {
	if len(dst)%QK4_NL != 0 || len(src) != len(dst)/QK4_NL*BlockBytesIQ4_NL {
		panic(fmt.Sprintf("gguf: DequantizeIQ4_NL: %d bytes into %d values", len(src), len(dst)))
	}
	for b := range len(dst) / QK4_NL {
		blk := src[b*BlockBytesIQ4_NL : (b+1)*BlockBytesIQ4_NL]
		d := half.F16ToF32(binary.LittleEndian.Uint16(blk))
		unpackIQ4(dst[b*QK4_NL:(b+1)*QK4_NL], blk[2:], d)
	}
}

// DequantizeIQ4_XS expands IQ4_XS super-blocks (ggml
// dequantize_row_iq4_xs; layout above). It panics if the lengths do not
// match.
func DequantizeIQ4_XS(dst []float32, src []byte) {
	if len(dst)%QK_K != 0 || len(src) != len(dst)/QK_K*BlockBytesIQ4_XS {
		panic(fmt.Sprintf("gguf: DequantizeIQ4_XS: %d bytes into %d values", len(src), len(dst)))
	}
	for b := range len(dst) / QK_K {
		blk := src[b*BlockBytesIQ4_XS : (b+1)*BlockBytesIQ4_XS]
		d := half.F16ToF32(binary.LittleEndian.Uint16(blk))
		sh := binary.LittleEndian.Uint16(blk[iq4xsScalesH:])
		for j := range QK_K / 32 {
			ls := int(blk[iq4xsScalesL+j/2]>>(4*(j%2))&0xF) | int(sh>>(2*j)&3)<<4
			unpackIQ4(dst[b*QK_K+32*j:b*QK_K+32*j+32], blk[iq4xsQS+16*j:], d*float32(ls-32))
		}
	}
}

// unpackIQ4 decodes the 32 indices in qs[:16] with scale d into x.
func unpackIQ4(x []float32, qs []byte, d float32) {
	for j := range 16 {
		x[j] = d * float32(kvaluesIQ4NL[qs[j]&0xF])
		x[j+16] = d * float32(kvaluesIQ4NL[qs[j]>>4])
	}
}

// QuantizeIQ4_NL quantizes src (a multiple of 32 values) into IQ4_NL
// blocks in dst (18 bytes per 32 values; layout at DequantizeIQ4_NL), as
// llama-quantize does without an importance matrix (ggml quantize_iq4_nl
// with no weights: the search of quantize_row_iq4_nl_impl, 7 tries either
// side):
//
//  1. Each value weighs x².
//  2. From d = max/127 (max the value of largest magnitude, with its
//     sign), each value takes the nearest codebook entry of x/d, and d is
//     refitted by weighted least squares; the 15 inverse scales
//     (−127 + t)/max, t in −7..7, are tried likewise, keeping the fit of
//     least weighted error.
//  3. d is stored as fp16 and every value takes the nearest entry of x/d
//     against the unrounded d.
//
// A block whose largest magnitude is below 1e-15 gets d = 0. With
// importances (EncodeWeighted: ggml quantize_iq4_nl with quant_weights)
// each value weighs qw·sqrt(σ² + x²) instead, σ² twice the block's mean
// square. It panics if the lengths do not match.
func QuantizeIQ4_NL(dst []byte, src []float32) {
	quantizeIQ4NL(dst, src, nil)
}

// QuantizeIQ4_XS quantizes src (a multiple of 256 values) into IQ4_XS
// super-blocks in dst (136 bytes per 256 values; layout at
// DequantizeIQ4_XS), as llama-quantize does without an importance matrix
// (ggml quantize_iq4_xs with no weights):
//
//  1. Each sub-block of 32 gets a scale by QuantizeIQ4_NL's search (steps
//     1 and 2).
//  2. The super-block scale is d = −max/32, max the sub-block scale of
//     largest magnitude with its sign, stored as fp16; each sub-block's
//     scale is quantized to l = clamp(round(scale/d), −32, 31), stored as
//     l + 32 in 6 bits.
//  3. Every value takes the nearest codebook entry of x/(d·l), against the
//     unrounded d.
//
// With importances (EncodeWeighted) each value weighs qw·sqrt(σ² + x²)
// instead of x², σ² twice the super-block's mean square. It panics if the
// lengths do not match.
func QuantizeIQ4_XS(dst []byte, src []float32) {
	quantizeIQ4XS(dst, src, nil)
}

// quantizeIQ4NL quantizes src into IQ4_NL blocks dst, each value weighted
// by qw (one importance per value of src; nil: none).
func quantizeIQ4NL(dst []byte, src, qw []float32) {
	var q iq4Quantizer
	eachBlock(TypeIQ4_NL, dst, src, qw, q.block)
}

// quantizeIQ4XS quantizes src into IQ4_XS super-blocks dst, each value
// weighted by qw (one importance per value of src; nil: none).
func quantizeIQ4XS(dst []byte, src, qw []float32) {
	var q iq4Quantizer
	eachBlock(TypeIQ4_XS, dst, src, qw, q.superBlock)
}

// iq4Quantizer holds the scratch of quantize_row_iq4_nl_impl.
type iq4Quantizer struct {
	L      [QK_K]uint8
	weight [32]float32
	scales [QK_K / 32]float32
}

// block quantizes the 32 values x into the IQ4_NL block y, weighted by qw
// (nil: none).
func (q *iq4Quantizer) block(y []byte, x, qw []float32) {
	d := q.scales32(x, qw)
	binary.LittleEndian.PutUint16(y, half.F32ToF16(d))
	var id float32
	if d != 0 {
		id = 1 / d
	}
	for j, v := range x {
		q.L[j] = bestIndexIQ4(id * v)
	}
	packIQ4(y[2:], q.L[:32])
}

// superBlock quantizes the 256 values x into the IQ4_XS block y, weighted
// by qw (nil: none).
func (q *iq4Quantizer) superBlock(y []byte, x, qw []float32) {
	var maxScale, amaxScale float32
	sigma2 := meanSquare2(x)
	for j := range QK_K / 32 {
		var w []float32
		if qw != nil {
			w = qw[32*j : 32*j+32]
		}
		q.scales[j] = q.scales32With(x[32*j:32*j+32], w, sigma2)
		if a := abs32(q.scales[j]); a > amaxScale {
			amaxScale, maxScale = a, q.scales[j]
		}
	}
	d := -maxScale / 32
	binary.LittleEndian.PutUint16(y, half.F32ToF16(d))
	var id float32
	if d != 0 {
		id = 1 / d
	}
	var sh uint16
	sl := y[iq4xsScalesL:iq4xsQS]
	clear(sl)
	for j := range QK_K / 32 {
		l := clampInt(nearestInt(id*q.scales[j]), -32, 31)
		dl := d * float32(l)
		var idl float32
		if dl != 0 {
			idl = 1 / dl
		}
		for i, v := range x[32*j : 32*j+32] {
			q.L[32*j+i] = bestIndexIQ4(idl * v)
		}
		l += 32
		sl[j/2] |= uint8(l&0xF) << (4 * (j % 2))
		sh |= uint16(l>>4) << (2 * j)
	}
	binary.LittleEndian.PutUint16(y[iq4xsScalesH:], sh)
	for j := range QK_K / 32 {
		packIQ4(y[iq4xsQS+16*j:], q.L[32*j:32*j+32])
	}
}

// scales32 is scales32With for a lone block of 32 (IQ4_NL: σ² from the
// block itself).
func (q *iq4Quantizer) scales32(x, qw []float32) float32 {
	return q.scales32With(x, qw, meanSquare2(x))
}

// meanSquare2 is twice the mean square of x, the σ² of
// quantize_row_iq4_nl_impl's weights.
func meanSquare2(x []float32) float32 {
	return sumSquares(x) * (2 / float32(len(x)))
}

// scales32With returns the scale d of least weighted error for the 32
// values x with codebook levels (steps 1 and 2 of QuantizeIQ4_NL): each
// value weighs qw·sqrt(sigma2 + x²), or x² for nil qw.
func (q *iq4Quantizer) scales32With(x, qw []float32, sigma2 float32) float32 {
	w := q.weight[:len(x)]
	if qw != nil {
		importanceWeights(w, qw, x, sigma2)
	} else {
		for j, v := range x {
			w[j] = float32(v * v)
		}
	}
	mx := signedMax(x)
	if abs32(mx) < groupMaxEps {
		return 0
	}
	d := -mx / float32(kvaluesIQ4NL[0])
	sumQX, sumQ2 := fitIQ4(x, w, 1/d)
	d = 0
	if sumQ2 > 0 {
		d = sumQX / sumQ2
	}
	best := d * sumQX
	for t := -7; t <= 7; t++ {
		sumQX, sumQ2 := fitIQ4(x, w, float32(t+int(kvaluesIQ4NL[0]))/mx)
		if sumQ2 > 0 && float32(sumQX*sumQX) > float32(best*sumQ2) {
			d = sumQX / sumQ2
			best = d * sumQX
		}
	}
	return d
}

// fitIQ4 returns Σ w·q·x and Σ w·q² over x, q the codebook entry nearest
// x·id.
func fitIQ4(x, w []float32, id float32) (sumQX, sumQ2 float32) {
	w = w[:len(x)]
	for j, v := range x {
		q := float32(kvaluesIQ4NL[bestIndexIQ4(id*v)])
		sumQX += float32(float32(w[j]*q) * v)
		sumQ2 += float32(float32(w[j]*q) * q)
	}
	return sumQX, sumQ2
}

// bestIndexIQ4 returns the index of the codebook entry nearest x, the
// upper one on a tie (ggml best_index_int8: x takes entry i once it
// reaches the midpoint of entries i−1 and i, compared as 2x against their
// sum to stay exact). NaN gives 0.
func bestIndexIQ4(x float32) uint8 {
	x2 := x + x
	idx := 0
	for step := 8; step > 0; step >>= 1 {
		if x2 >= iq4Sums[idx+step] {
			idx += step
		}
	}
	return uint8(idx)
}

// iq4Sums[i] is kvaluesIQ4NL[i−1] + kvaluesIQ4NL[i] (i ≥ 1), twice the
// midpoint below entry i.
var iq4Sums = func() (s [16]float32) {
	for i := 1; i < 16; i++ {
		s[i] = float32(int(kvaluesIQ4NL[i-1]) + int(kvaluesIQ4NL[i]))
	}
	return s
}()

// packIQ4 writes the 32 indices L into qs[:16]: L[j] in the low nibble of
// qs[j], L[j+16] in the high.
func packIQ4(qs []byte, L []uint8) {
	for j := range 16 {
		qs[j] = L[j] | L[j+16]<<4
	}
}
