package gguf

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/gptqtool/gptqtool/formats/half"
)

// QK4_0 is the number of values in a block of ggml's legacy types Q4_0,
// Q4_1, Q5_0 and Q5_1 (ggml-common.h QK4_0, QK4_1, QK5_0, QK5_1: all 32).
const QK4_0 = 32

// Block sizes in bytes of the legacy types (ggml-common.h block_q4_0,
// block_q4_1, block_q5_0, block_q5_1).
const (
	// BlockBytesQ4_0 is sizeof(block_q4_0): fp16 d, 16 bytes of 4-bit
	// quants.
	BlockBytesQ4_0 = 2 + QK4_0/2
	// BlockBytesQ4_1 is sizeof(block_q4_1): fp16 d, fp16 m, 16 bytes of
	// 4-bit quants.
	BlockBytesQ4_1 = 2 + 2 + QK4_0/2
	// BlockBytesQ5_0 is sizeof(block_q5_0): fp16 d, 4 bytes of fifth bits,
	// 16 bytes of low 4 bits.
	BlockBytesQ5_0 = 2 + QK4_0/8 + QK4_0/2
	// BlockBytesQ5_1 is sizeof(block_q5_1): fp16 d, fp16 m, 4 bytes of
	// fifth bits, 16 bytes of low 4 bits.
	BlockBytesQ5_1 = 2 + 2 + QK4_0/8 + QK4_0/2
)

// The legacy blocks hold 32 values each (ggml-common.h), in this order:
//
//	Q4_0  18 bytes  d fp16 | qs[16]
//	Q4_1  20 bytes  d fp16 | m fp16 | qs[16]
//	Q5_0  22 bytes  d fp16 | qh[4] | qs[16]
//	Q5_1  24 bytes  d fp16 | m fp16 | qh[4] | qs[16]
//
// qs[j] holds value j's low 4 bits in its low nibble and value j+16's in
// its high nibble (j < 16). qh, a little-endian uint32, holds value i's
// fifth bit in bit i (i < 32). A level q decodes as x = d·(q − 8) (Q4_0),
// d·(q − 16) (Q5_0) or d·q + m (Q4_1, Q5_1).

// legacyType is the shape of one legacy type.
type legacyType struct {
	name   string
	bits   int  // 4 or 5
	hasMin bool // the block stores an offset m (Q4_1, Q5_1) instead of centring the levels
	bytes  int  // block bytes
}

var (
	legacyQ4_0 = legacyType{"Q4_0", 4, false, BlockBytesQ4_0}
	legacyQ4_1 = legacyType{"Q4_1", 4, true, BlockBytesQ4_1}
	legacyQ5_0 = legacyType{"Q5_0", 5, false, BlockBytesQ5_0}
	legacyQ5_1 = legacyType{"Q5_1", 5, true, BlockBytesQ5_1}
)

// nmax is the largest level: 15 or 31.
func (lt legacyType) nmax() int { return 1<<lt.bits - 1 }

// qhAt and qsAt are the offsets of qh (5 bits only) and qs in a block.
func (lt legacyType) qhAt() int {
	if lt.hasMin {
		return 4
	}
	return 2
}

func (lt legacyType) qsAt() int {
	if lt.bits == 5 {
		return lt.qhAt() + 4
	}
	return lt.qhAt()
}

// check panics unless n values fill exactly the blocks of size bytes.
func (lt legacyType) check(op string, n, size int) {
	if n%QK4_0 != 0 || size != n/QK4_0*lt.bytes {
		panic(fmt.Sprintf("gguf: %s%s: %d values, %d bytes", op, lt.name, n, size))
	}
}

// pack writes the levels L into block y's qh and qs.
func (lt legacyType) pack(y []byte, L *[QK4_0]uint8) {
	qs := y[lt.qsAt() : lt.qsAt()+QK4_0/2]
	var qh uint32
	for j := range QK4_0 / 2 {
		lo, hi := L[j], L[j+QK4_0/2]
		qs[j] = lo&0xF | (hi&0xF)<<4
		qh |= uint32(lo>>4&1)<<j | uint32(hi>>4&1)<<(j+QK4_0/2)
	}
	if lt.bits == 5 {
		binary.LittleEndian.PutUint32(y[lt.qhAt():], qh)
	}
}

// dequantize expands the blocks src into dst (ggml dequantize_row_q4_0
// and its kin).
func (lt legacyType) dequantize(dst []float32, src []byte) {
	lt.check("Dequantize", len(dst), len(src))
	center := float32(0)
	if !lt.hasMin {
		center = float32(lt.nmax()/2 + 1)
	}
	for b := range len(dst) / QK4_0 {
		y := src[b*lt.bytes : (b+1)*lt.bytes]
		x := dst[b*QK4_0 : (b+1)*QK4_0]
		d := half.F16ToF32(binary.LittleEndian.Uint16(y))
		var m float32
		if lt.hasMin {
			m = half.F16ToF32(binary.LittleEndian.Uint16(y[2:]))
		}
		var qh uint32
		if lt.bits == 5 {
			qh = binary.LittleEndian.Uint32(y[lt.qhAt():])
		}
		qs := y[lt.qsAt():]
		for j := range QK4_0 / 2 {
			lo := qs[j]&0xF | uint8(qh>>j&1)<<4
			hi := qs[j]>>4 | uint8(qh>>(j+QK4_0/2)&1)<<4
			if lt.hasMin {
				x[j] = float32(d*float32(lo)) + m
				x[j+QK4_0/2] = float32(d*float32(hi)) + m
			} else {
				// No + 0: the centre level times a negative d is −0, as
				// ggml's (q − 8)·d.
				x[j] = d * (float32(lo) - center)
				x[j+QK4_0/2] = d * (float32(hi) - center)
			}
		}
	}
}

// quantize quantizes src into the blocks dst as ggml's reference
// quantizers do (quantize_row_q4_0_ref and its kin).
func (lt legacyType) quantize(dst []byte, src []float32) {
	lt.check("Quantize", len(src), len(dst))
	nmax := lt.nmax()
	var L [QK4_0]uint8
	for b := range len(src) / QK4_0 {
		x := src[b*QK4_0 : (b+1)*QK4_0]
		y := dst[b*lt.bytes : (b+1)*lt.bytes]
		if lt.hasMin {
			lo, hi := minMax(x, math.MaxFloat32, -math.MaxFloat32)
			d := (hi - lo) / float32(nmax)
			var id float32
			if d != 0 {
				id = 1 / d
			}
			binary.LittleEndian.PutUint16(y, half.F32ToF16(d))
			binary.LittleEndian.PutUint16(y[2:], half.F32ToF16(lo))
			for j, v := range x {
				// Truncation after adding 0.5: C's (uint8_t)(x + 0.5f).
				L[j] = uint8(clampInt(int(float32(float32(v-lo)*id)+0.5), 0, nmax))
			}
		} else {
			center := nmax/2 + 1
			mx := signedMax(x)
			d := mx / -float32(center)
			var id float32
			if d != 0 {
				id = 1 / d
			}
			binary.LittleEndian.PutUint16(y, half.F32ToF16(d))
			off := float32(center) + 0.5
			for j, v := range x {
				L[j] = uint8(clampInt(int(float32(v*id)+off), 0, nmax))
			}
		}
		lt.pack(y, &L)
	}
}

// quantizeRow quantizes one row x into blocks y with the column
// importances qw, as ggml's quantize_row_q4_0_impl and its kin do: each
// value weighs qw·sqrt(σ² + x²), σ² the row's mean square; Q4_0 and Q5_0
// take the scale of least weighted error from makeQXQuants (19 candidates
// around −max/8 or −max/16), Q4_1 and Q5_1 the scale and min from
// makeQKX3Quants (37 candidates from nmax − 0.9 in steps of 0.05). The
// levels are the search's, not requantized against the fp16 scale.
func (lt legacyType) quantizeRow(y []byte, x, qw []float32) {
	lt.check("Quantize", len(x), len(y))
	sigma2 := sumSquares(x) / float32(len(x))
	nmax := lt.nmax()
	var (
		L, laux [QK4_0]uint8
		weight  [QK4_0]float32
	)
	for b := range len(x) / QK4_0 {
		xb := x[b*QK4_0 : (b+1)*QK4_0]
		blk := y[b*lt.bytes : (b+1)*lt.bytes]
		importanceWeights(weight[:], qw[b*QK4_0:], xb, sigma2)
		if lt.hasMin {
			d, m := makeQKX3Quants(nmax, xb, weight[:], L[:], laux[:], -0.9, 0.05, 36)
			binary.LittleEndian.PutUint16(blk, half.F32ToF16(d))
			binary.LittleEndian.PutUint16(blk[2:], half.F32ToF16(-m))
		} else {
			d := makeQXQuants(nmax/2+1, xb, L[:], weight[:])
			binary.LittleEndian.PutUint16(blk, half.F32ToF16(d))
		}
		lt.pack(blk, &L)
	}
}

// QuantizeQ4_0 quantizes src (a multiple of 32 values) into Q4_0 blocks in
// dst (18 bytes per 32 values), as ggml's quantize_row_q4_0_ref (what
// llama-quantize uses without an importance matrix):
//
//	block_q4_0 { fp16 d; uint8 qs[16]; }   x = d·(q − 8), q in [0, 15]
//
// qs[j] holds value j in its low nibble, value j+16 in its high nibble.
// d = max/−8, max the value of largest magnitude with its sign (so that
// it maps to level 0, −8·d), stored as fp16; q = min(15, ⌊x/d + 8.5⌋)
// with the unrounded d. EncodeWeighted with importances searches the
// scale instead (ggml quantize_row_q4_0_impl; legacyType.quantizeRow). It
// panics if the lengths do not match.
func QuantizeQ4_0(dst []byte, src []float32) { legacyQ4_0.quantize(dst, src) }

// DequantizeQ4_0 expands Q4_0 blocks: x = d·(q − 8) (ggml
// dequantize_row_q4_0). It panics if the lengths do not match.
func DequantizeQ4_0(dst []float32, src []byte) { legacyQ4_0.dequantize(dst, src) }

// QuantizeQ4_1 quantizes src (a multiple of 32 values) into Q4_1 blocks in
// dst (20 bytes per 32 values), as ggml's quantize_row_q4_1_ref:
//
//	block_q4_1 { fp16 d; fp16 m; uint8 qs[16]; }   x = d·q + m, q in [0, 15]
//
// qs as Q4_0's. m = min x, d = (max x − min x)/15, both stored as fp16;
// q = min(15, ⌊(x − m)/d + 0.5⌋) with the unrounded d and m.
// EncodeWeighted with importances searches the scale and min instead
// (ggml quantize_row_q4_1_impl). It panics if the lengths do not match.
func QuantizeQ4_1(dst []byte, src []float32) { legacyQ4_1.quantize(dst, src) }

// DequantizeQ4_1 expands Q4_1 blocks: x = d·q + m (ggml
// dequantize_row_q4_1). It panics if the lengths do not match.
func DequantizeQ4_1(dst []float32, src []byte) { legacyQ4_1.dequantize(dst, src) }

// QuantizeQ5_0 quantizes src (a multiple of 32 values) into Q5_0 blocks in
// dst (22 bytes per 32 values), as ggml's quantize_row_q5_0_ref:
//
//	block_q5_0 { fp16 d; uint8 qh[4]; uint8 qs[16]; }   x = d·(q − 16), q in [0, 31]
//
// qs holds the low 4 bits as Q4_0's; qh, a little-endian uint32, holds
// value i's fifth bit in bit i. d = max/−16 (max as Q4_0's), stored as
// fp16; q = min(31, ⌊x/d + 16.5⌋) with the unrounded d. EncodeWeighted
// with importances searches the scale instead (ggml
// quantize_row_q5_0_impl). It panics if the lengths do not match.
func QuantizeQ5_0(dst []byte, src []float32) { legacyQ5_0.quantize(dst, src) }

// DequantizeQ5_0 expands Q5_0 blocks: x = d·(q − 16) (ggml
// dequantize_row_q5_0). It panics if the lengths do not match.
func DequantizeQ5_0(dst []float32, src []byte) { legacyQ5_0.dequantize(dst, src) }

// QuantizeQ5_1 quantizes src (a multiple of 32 values) into Q5_1 blocks in
// dst (24 bytes per 32 values), as ggml's quantize_row_q5_1_ref:
//
//	block_q5_1 { fp16 d; fp16 m; uint8 qh[4]; uint8 qs[16]; }   x = d·q + m, q in [0, 31]
//
// qh and qs as Q5_0's. m = min x, d = (max x − min x)/31, both stored as
// fp16; q = ⌊(x − m)/d + 0.5⌋ with the unrounded d and m (capped at 31,
// which ggml's reference never exceeds). EncodeWeighted with importances
// searches the scale and min instead (ggml quantize_row_q5_1_impl). It
// panics if the lengths do not match.
func QuantizeQ5_1(dst []byte, src []float32) { legacyQ5_1.quantize(dst, src) }

// DequantizeQ5_1 expands Q5_1 blocks: x = d·q + m (ggml
// dequantize_row_q5_1). It panics if the lengths do not match.
func DequantizeQ5_1(dst []float32, src []byte) { legacyQ5_1.dequantize(dst, src) }

// legacyOf returns the legacy type t, false for others.
func legacyOf(t TensorType) (legacyType, bool) {
	switch t {
	case TypeQ4_0:
		return legacyQ4_0, true
	case TypeQ4_1:
		return legacyQ4_1, true
	case TypeQ5_0:
		return legacyQ5_0, true
	case TypeQ5_1:
		return legacyQ5_1, true
	}
	return legacyType{}, false
}
