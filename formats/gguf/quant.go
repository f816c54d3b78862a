package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/gptqtool/gptqtool/formats/half"
)

// ErrNotQuantizable is wrapped by Encode's and EncodeWeighted's errors
// when a quantized type cannot hold the values: a NaN or ±Inf among them,
// or values so large that a block's fp16 scale (or min) would be ±Inf.
// ggml quantizes such blocks all the same, to NaN or Inf scales or
// arbitrary levels, which llama-quantize then refuses ("quantized data
// validation failed", ggml_validate_row_data).
var ErrNotQuantizable = errors.New("values the quantized type cannot hold")

// Encode converts src to the bytes of a tensor of type t: F32 and F16/BF16
// (round to nearest even) element by element, Q4_0, Q4_1, Q5_0, Q5_1,
// IQ4_NL, IQ4_XS, IQ3_XXS, IQ3_S, IQ2_S, IQ1_M, Q8_0 and Q2_K to Q6_K
// block by block with QuantizeQ4_0 and its kin. IQ2_XXS, IQ2_XS and
// IQ1_S, which ggml quantizes only with importances, give an error
// wrapping ErrNeedsImportance: use EncodeWeighted. len(src) must be a
// multiple of the type's block size;
// since blocks never straddle rows, a whole tensor can be encoded in one
// call. Large inputs are split across GOMAXPROCS goroutines; the result
// does not depend on the split. For the quantized types a NaN or ±Inf in
// src, or a block whose fp16 scale or min overflows, gives an error
// wrapping ErrNotQuantizable (F32, F16 and BF16 store them as they are).
func Encode(t TensorType, src []float32) ([]byte, error) {
	if !t.Convertible() {
		return nil, fmt.Errorf("encode %s: %w", t, ErrUnsupportedType)
	}
	if needsImportance(t) {
		return nil, fmt.Errorf("encode %s: %w", t, ErrNeedsImportance)
	}
	size, err := t.RowBytes(int64(len(src)))
	if err != nil {
		return nil, fmt.Errorf("encode %d values: %w", len(src), err)
	}
	dst := make([]byte, size)
	bs, bb := t.BlockSize(), t.BlockBytes()
	blocks := len(src) / bs
	check := newQuantCheck(t)
	parallelBlocks(blocks, grainFor(t), func(lo, hi int) {
		s, d := src[lo*bs:hi*bs], dst[lo*bb:hi*bb]
		if !check.input(lo*bs, s) {
			return
		}
		switch t {
		case TypeF32:
			for i, v := range s {
				binary.LittleEndian.PutUint32(d[4*i:], math.Float32bits(v))
			}
		case TypeF16:
			half.F32ToF16Bytes(d, s)
		case TypeBF16:
			half.F32ToBF16Bytes(d, s)
		case TypeQ4_0:
			QuantizeQ4_0(d, s)
		case TypeQ4_1:
			QuantizeQ4_1(d, s)
		case TypeQ5_0:
			QuantizeQ5_0(d, s)
		case TypeQ5_1:
			QuantizeQ5_1(d, s)
		case TypeIQ4_NL:
			QuantizeIQ4_NL(d, s)
		case TypeIQ4_XS:
			QuantizeIQ4_XS(d, s)
		case TypeQ8_0:
			QuantizeQ8_0(d, s)
		case TypeQ4_K:
			QuantizeQ4_K(d, s)
		case TypeQ5_K:
			QuantizeQ5_K(d, s)
		case TypeQ6_K:
			QuantizeQ6_K(d, s)
		case TypeQ2_K:
			QuantizeQ2_K(d, s)
		case TypeQ3_K:
			QuantizeQ3_K(d, s)
		case TypeIQ3_XXS:
			QuantizeIQ3_XXS(d, s)
		case TypeIQ3_S:
			QuantizeIQ3_S(d, s)
		case TypeIQ2_S:
			QuantizeIQ2_S(d, s)
		case TypeIQ1_M:
			QuantizeIQ1_M(d, s)
		}
		check.output(lo, d)
	})
	if err := check.err(src); err != nil {
		return nil, fmt.Errorf("encode %s: %w", t, err)
	}
	return dst, nil
}

// quantCheck finds, across parallelBlocks' goroutines, the first value a
// quantized type is given that is not finite and the first block whose
// fp16 scale or min came out ±Inf or NaN (the fields ggml_validate_row_data
// checks). For other types it checks nothing.
type quantCheck struct {
	bs     int   // values per block
	bb     int   // bytes per block
	scales []int // byte offsets of the fp16 scales in a block; nil: no checks
	mu     sync.Mutex
	value  int // the first non-finite value, -1 for none
	block  int // the first block with a non-finite scale, -1 for none

	// scaleOf, when set, gives a block's one fp16 scale (IQ1_M's, spread
	// over four bytes) in place of scales.
	scaleOf func(blk []byte) uint16
}

func newQuantCheck(t TensorType) *quantCheck {
	c := &quantCheck{bs: t.BlockSize(), bb: t.BlockBytes(), value: -1, block: -1}
	switch t {
	case TypeQ4_0, TypeQ5_0, TypeQ8_0, TypeIQ4_NL, TypeIQ4_XS, TypeIQ3_XXS, TypeIQ3_S,
		TypeIQ2_XXS, TypeIQ2_XS, TypeIQ2_S, TypeIQ1_S:
		c.scales = []int{0}
	case TypeIQ1_M:
		c.scaleOf = iq1mScale
	case TypeQ4_1, TypeQ5_1, TypeQ4_K, TypeQ5_K:
		c.scales = []int{0, 2}
	case TypeQ2_K:
		c.scales = []int{q2kD, q2kDmin}
	case TypeQ3_K:
		c.scales = []int{q3kD}
	case TypeQ6_K:
		c.scales = []int{q6kD}
	}
	return c
}

// input reports whether the values s, from index at on, are all finite,
// noting the first that is not.
func (c *quantCheck) input(at int, s []float32) bool {
	if c.scales == nil && c.scaleOf == nil {
		return true
	}
	for i, v := range s {
		if math.Float32bits(v)&0x7f800000 == 0x7f800000 { // NaN or ±Inf
			c.mu.Lock()
			if c.value < 0 || at+i < c.value {
				c.value = at + i
			}
			c.mu.Unlock()
			return false
		}
	}
	return true
}

// output notes the first of the blocks d, block at on, with a NaN or ±Inf
// fp16 scale.
func (c *quantCheck) output(at int, d []byte) {
	for b := 0; b < len(d)/max(c.bb, 1) && (c.scales != nil || c.scaleOf != nil); b++ {
		blk := d[b*c.bb : (b+1)*c.bb]
		bad := c.scaleOf != nil && c.scaleOf(blk)&0x7c00 == 0x7c00
		for _, off := range c.scales {
			bad = bad || binary.LittleEndian.Uint16(blk[off:])&0x7c00 == 0x7c00
		}
		if bad {
			c.mu.Lock()
			if c.block < 0 || at+b < c.block {
				c.block = at + b
			}
			c.mu.Unlock()
			return
		}
	}
}

// err describes what input and output found in src, nil if nothing.
func (c *quantCheck) err(src []float32) error {
	if c.value >= 0 {
		return fmt.Errorf("value %d is %g: %w", c.value, src[c.value], ErrNotQuantizable)
	}
	if c.block >= 0 {
		x := src[c.block*c.bs : (c.block+1)*c.bs]
		var amax float32
		for _, v := range x {
			amax = max(amax, abs32(v))
		}
		return fmt.Errorf("block %d (values %d to %d, largest |value| %g): its fp16 scale overflows: %w", c.block, c.block*c.bs, (c.block+1)*c.bs-1, amax, ErrNotQuantizable)
	}
	return nil
}

// Decode converts the bytes of n elements of type t (F32, F16, BF16, Q4_0,
// Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS, IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS,
// IQ2_S, IQ1_S, IQ1_M, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) to float32.
// Other types give an error wrapping ErrUnsupportedType.
func Decode(t TensorType, src []byte, n int) ([]float32, error) {
	if !t.Convertible() {
		return nil, fmt.Errorf("decode %s: %w", t, ErrUnsupportedType)
	}
	size, err := t.RowBytes(int64(n))
	if err != nil {
		return nil, fmt.Errorf("decode %d values: %w", n, err)
	}
	if int64(len(src)) != size {
		return nil, fmt.Errorf("decode %d %s values: %d bytes, want %d", n, t, len(src), size)
	}
	dst := make([]float32, n)
	bs, bb := t.BlockSize(), t.BlockBytes()
	parallelBlocks(n/bs, 1<<16/bs, func(lo, hi int) {
		s, d := src[lo*bb:hi*bb], dst[lo*bs:hi*bs]
		switch t {
		case TypeF32:
			for i := range d {
				d[i] = math.Float32frombits(binary.LittleEndian.Uint32(s[4*i:]))
			}
		case TypeF16:
			half.F16BytesToF32(d, s)
		case TypeBF16:
			half.BF16BytesToF32(d, s)
		case TypeQ4_0:
			DequantizeQ4_0(d, s)
		case TypeQ4_1:
			DequantizeQ4_1(d, s)
		case TypeQ5_0:
			DequantizeQ5_0(d, s)
		case TypeQ5_1:
			DequantizeQ5_1(d, s)
		case TypeIQ4_NL:
			DequantizeIQ4_NL(d, s)
		case TypeIQ4_XS:
			DequantizeIQ4_XS(d, s)
		case TypeQ8_0:
			DequantizeQ8_0(d, s)
		case TypeQ4_K:
			DequantizeQ4_K(d, s)
		case TypeQ5_K:
			DequantizeQ5_K(d, s)
		case TypeQ6_K:
			DequantizeQ6_K(d, s)
		case TypeQ2_K:
			DequantizeQ2_K(d, s)
		case TypeQ3_K:
			DequantizeQ3_K(d, s)
		case TypeIQ3_XXS:
			DequantizeIQ3_XXS(d, s)
		case TypeIQ3_S:
			DequantizeIQ3_S(d, s)
		case TypeIQ2_XXS:
			DequantizeIQ2_XXS(d, s)
		case TypeIQ2_XS:
			DequantizeIQ2_XS(d, s)
		case TypeIQ2_S:
			DequantizeIQ2_S(d, s)
		case TypeIQ1_S:
			DequantizeIQ1_S(d, s)
		case TypeIQ1_M:
			DequantizeIQ1_M(d, s)
		}
	})
	return dst, nil
}

// grainFor is the number of blocks below which splitting is not worth a
// goroutine: Q4_K's scale search costs about a microsecond per block.
func grainFor(t TensorType) int {
	switch t {
	case TypeQ4_K, TypeQ5_K, TypeQ6_K:
		return 64
	case TypeQ2_K, TypeQ3_K:
		return 64
	case TypeQ8_0:
		return 1 << 11
	case TypeQ4_0, TypeQ4_1, TypeQ5_0, TypeQ5_1:
		return 1 << 11
	case TypeIQ4_NL: // a 16-scale search per block of 32: about 5 µs
		return 64
	case TypeIQ4_XS: // eight of IQ4_NL's searches per block
		return 8
	case TypeIQ3_XXS, TypeIQ3_S: // a grid search per sub-block: tens of µs a block
		return 8
	case TypeIQ2_XXS, TypeIQ2_XS, TypeIQ2_S: // 13 or 19 grid searches per sub-block
		return 4
	case TypeIQ1_S, TypeIQ1_M: // an exhaustive search of two boundaries per sub-block
		return 4
	}
	return 1 << 16
}

// parallelBlocks calls fn on disjoint ranges covering [0, n), in parallel
// when n is at least two grains.
func parallelBlocks(n, grain int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n/max(grain, 1))
	if workers <= 1 {
		if n > 0 {
			fn(0, n)
		}
		return
	}
	per := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// QuantizeQ8_0 quantizes src (a multiple of 32 values) into Q8_0 blocks in
// dst (34 bytes per 32 values), as ggml's quantize_row_q8_0_ref does:
//
//	block_q8_0 { fp16 d; int8 qs[32]; }   x[i] ≈ d·qs[i]
//
// d = max|x|/127 stored as fp16 (round to nearest even), qs[i] =
// round(x[i]/d) half away from zero, computed with the unrounded d. It
// panics if the lengths do not match (a programmer error).
func QuantizeQ8_0(dst []byte, src []float32) {
	if len(src)%QK8_0 != 0 || len(dst) != len(src)/QK8_0*BlockBytesQ8_0 {
		panic(fmt.Sprintf("gguf: QuantizeQ8_0: %d values into %d bytes", len(src), len(dst)))
	}
	for b := 0; b < len(src)/QK8_0; b++ {
		x := src[b*QK8_0 : (b+1)*QK8_0]
		y := dst[b*BlockBytesQ8_0 : (b+1)*BlockBytesQ8_0]
		var amax float32
		for _, v := range x {
			amax = max(amax, abs32(v))
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(y, half.F32ToF16(d))
		for j, v := range x {
			y[2+j] = byte(int8(math.Round(float64(v * id))))
		}
	}
}

// DequantizeQ8_0 expands Q8_0 blocks: dst[i] = d·qs[i] (ggml
// dequantize_row_q8_0). It panics if the lengths do not match.
func DequantizeQ8_0(dst []float32, src []byte) {
	if len(dst)%QK8_0 != 0 || len(src) != len(dst)/QK8_0*BlockBytesQ8_0 {
		panic(fmt.Sprintf("gguf: DequantizeQ8_0: %d bytes into %d values", len(src), len(dst)))
	}
	for b := 0; b < len(dst)/QK8_0; b++ {
		y := src[b*BlockBytesQ8_0 : (b+1)*BlockBytesQ8_0]
		d := half.F16ToF32(binary.LittleEndian.Uint16(y))
		for j := range QK8_0 {
			dst[b*QK8_0+j] = float32(int8(y[2+j])) * d
		}
	}
}

// Q4_K block layout (ggml-common.h block_q4_K), 144 bytes per 256 values:
//
//	bytes [0, 2)     d     fp16, super-block scale of the sub-block scales
//	bytes [2, 4)     dmin  fp16, super-block scale of the sub-block mins
//	bytes [4, 16)    scales: 8 pairs (sc, m) of 6-bit values; for sub-block
//	                 j < 4: sc = s[j]&63, m = s[j+4]&63; for j >= 4:
//	                 sc = s[j+4]&15 | (s[j-4]>>6)<<4,
//	                 m  = s[j+4]>>4 | (s[j]>>6)<<4
//	bytes [16, 144)  qs: 4-bit quants; values 64c .. 64c+31 are the low
//	                 nibbles of qs[32c .. 32c+31], values 64c+32 .. 64c+63
//	                 the high nibbles (c = 0..3)
//
// Sub-block j holds values 32j .. 32j+31 and decodes as
// x = d·sc_j·q − dmin·m_j.
const (
	q4kScales = 4
	q4kQS     = 16
)

// scaleMinK4 unpacks the 6-bit scale and min of sub-block j (ggml
// get_scale_min_k4).
func scaleMinK4(j int, s []byte) (sc, m uint8) {
	if j < 4 {
		return s[j] & 63, s[j+4] & 63
	}
	return s[j+4]&0xF | (s[j-4]>>6)<<4, s[j+4]>>4 | (s[j]>>6)<<4
}

// DequantizeQ4_K expands Q4_K super-blocks (ggml dequantize_row_q4_K). It
// panics if the lengths do not match.
func DequantizeQ4_K(dst []float32, src []byte) {
	if len(dst)%QK_K != 0 || len(src) != len(dst)/QK_K*BlockBytesQ4_K {
		panic(fmt.Sprintf("gguf: DequantizeQ4_K: %d bytes into %d values", len(src), len(dst)))
	}
	for b := 0; b < len(dst)/QK_K; b++ {
		blk := src[b*BlockBytesQ4_K : (b+1)*BlockBytesQ4_K]
		y := dst[b*QK_K : (b+1)*QK_K]
		d := half.F16ToF32(binary.LittleEndian.Uint16(blk[0:]))
		dmin := half.F16ToF32(binary.LittleEndian.Uint16(blk[2:]))
		scales := blk[q4kScales:q4kQS]
		qs := blk[q4kQS:]
		for c := range 4 {
			sc1, m1 := scaleMinK4(2*c, scales)
			sc2, m2 := scaleMinK4(2*c+1, scales)
			d1, min1 := d*float32(sc1), dmin*float32(m1)
			d2, min2 := d*float32(sc2), dmin*float32(m2)
			q := qs[32*c : 32*c+32]
			for l := range 32 {
				y[64*c+l] = float32(d1*float32(q[l]&0xF)) - min1
				y[64*c+32+l] = float32(d2*float32(q[l]>>4)) - min2
			}
		}
	}
}

// QuantizeQ4_K quantizes src (a multiple of 256 values) into Q4_K
// super-blocks in dst (144 bytes per 256 values), following ggml's
// reference quantizer quantize_row_q4_K_ref (what llama-quantize uses
// without an importance matrix):
//
//  1. For each sub-block of 32 values, weights w = rms(x) + |x| and a
//     search (makeQKX2Quants: 4-bit levels, 21 candidate scales around
//     15/(max−min)) for the scale s and min m minimising Σ w·(s·q − m − x)².
//  2. The 8 scales and 8 mins are quantized to 6 bits against the
//     super-block d = max s/63 and dmin = max m/63 (both stored as fp16).
//  3. Every value is requantized against its sub-block's decoded scale and
//     min: q = clamp(round((x + dmin·m_j)/(d·sc_j)), 0, 15).
//
// Rounding is to nearest, ties to even, as ggml's nearest_int. It panics
// if the lengths do not match.
func QuantizeQ4_K(dst []byte, src []float32) {
	if len(src)%QK_K != 0 || len(dst) != len(src)/QK_K*BlockBytesQ4_K {
		panic(fmt.Sprintf("gguf: QuantizeQ4_K: %d values into %d bytes", len(src), len(dst)))
	}
	var k kQuantizer
	for b := 0; b < len(src)/QK_K; b++ {
		y := dst[b*BlockBytesQ4_K : (b+1)*BlockBytesQ4_K]
		packQ4K(y, k.superBlock(y, src[b*QK_K:(b+1)*QK_K], 15, -1, 20))
	}
}

// packQ4K writes the levels L (in [0, 15]) into Q4_K block y's qs.
func packQ4K(y []byte, L *[QK_K]uint8) {
	qs := y[q4kQS:]
	for c := range 4 {
		for l := range 32 {
			qs[32*c+l] = L[64*c+l] | L[64*c+32+l]<<4
		}
	}
}

// packQ5K writes the levels L (in [0, 31]) into Q5_K block y's qs and qh
// (qh cleared before).
func packQ5K(y []byte, L *[QK_K]uint8) {
	qh, qs := y[q5kQH:q5kQS], y[q5kQS:]
	for c := range 4 {
		for l := range 32 {
			lo, hi := L[64*c+l], L[64*c+32+l]
			qs[32*c+l] = lo&0xF | (hi&0xF)<<4
			qh[l] |= (lo>>4)<<(2*c) | (hi>>4)<<(2*c+1)
		}
	}
}

// kQuantizer holds the scratch of Q4_K's and Q5_K's common part.
type kQuantizer struct {
	L       [QK_K]uint8
	laux    [32]uint8
	weights [32]float32
	mins    [QK_K / 32]float32
	scales  [QK_K / 32]float32
}

// superBlock quantizes the 256 values x to levels in [0, nmax] with
// Q4_K's scheme (steps 1–3 of QuantizeQ4_K; makeQKX2Quants searching
// nstep+1 scales from rmin): it writes d, dmin and the packed 6-bit scales
// and mins into y (clearing the rest of y) and returns the levels.
func (k *kQuantizer) superBlock(y []byte, x []float32, nmax int, rmin float32, nstep int) *[QK_K]uint8 {
	clear(y)
	L := &k.L
	var maxScale, maxMin float32
	for j := range QK_K / 32 {
		xs := x[32*j : 32*j+32]
		avX := float32(math.Sqrt(float64(sumSquares(xs) / 32)))
		for l, v := range xs {
			k.weights[l] = avX + abs32(v)
		}
		k.scales[j], k.mins[j] = makeQKX2Quants(nmax, xs, k.weights[:], L[32*j:32*j+32], k.laux[:], rmin, 0.1, nstep)
		// Comparisons, not max: a NaN is skipped, as in ggml.
		if k.scales[j] > maxScale {
			maxScale = k.scales[j]
		}
		if k.mins[j] > maxMin {
			maxMin = k.mins[j]
		}
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	s := y[q4kScales:q4kQS]
	for j := range QK_K / 32 {
		// uint8 of a negative int wraps, then min clamps: as the C
		// reference's uint8_t assignment followed by MIN(63, ·).
		ls := min(uint8(nearestInt(invScale*k.scales[j])), 63)
		lm := min(uint8(nearestInt(invMin*k.mins[j])), 63)
		if j < 4 {
			s[j] = ls
			s[j+4] = lm
		} else {
			s[j+4] = ls&0xF | (lm&0xF)<<4
			s[j-4] |= (ls >> 4) << 6
			s[j] |= (lm >> 4) << 6
		}
	}
	dBits, dminBits := half.F32ToF16(maxScale/63), half.F32ToF16(maxMin/63)
	binary.LittleEndian.PutUint16(y[0:], dBits)
	binary.LittleEndian.PutUint16(y[2:], dminBits)
	k.requantize(x, s, half.F16ToF32(dBits), half.F16ToF32(dminBits), nmax)
	return L
}

// requantize sets k.L to every value's level in [0, nmax] against its
// sub-block's decoded scale and min (the packed scales s, d and dmin):
// q = clamp(round((x + dmin·m_j)/(d·sc_j)), 0, nmax).
func (k *kQuantizer) requantize(x []float32, s []byte, d, dmin float32, nmax int) {
	for j := range QK_K / 32 {
		sc, m := scaleMinK4(j, s)
		dj := d * float32(sc)
		if dj == 0 {
			continue // keep the search's levels, as the reference does
		}
		dm := dmin * float32(m)
		for i := range 32 {
			k.L[32*j+i] = uint8(clampInt(nearestInt((x[32*j+i]+dm)/dj), 0, nmax))
		}
	}
}

// Q5_K block layout (ggml-common.h block_q5_K), 176 bytes per 256 values:
//
//	bytes [0, 16)    d, dmin and the scales and mins as in Q4_K
//	bytes [16, 48)   qh: the quants' fifth bits; value 64c+l (l < 32) has
//	                 it in bit 2c of qh[l], value 64c+32+l in bit 2c+1
//	bytes [48, 176)  qs: the low 4 bits, as Q4_K's qs
//
// Sub-block j decodes as x = d·sc_j·q − dmin·m_j with q in [0, 31].
const (
	q5kQH = 16
	q5kQS = 48
)

// DequantizeQ5_K expands Q5_K super-blocks (ggml dequantize_row_q5_K). It
// panics if the lengths do not match.
func DequantizeQ5_K(dst []float32, src []byte) {
	if len(dst)%QK_K != 0 || len(src) != len(dst)/QK_K*BlockBytesQ5_K {
		panic(fmt.Sprintf("gguf: DequantizeQ5_K: %d bytes into %d values", len(src), len(dst)))
	}
	for b := 0; b < len(dst)/QK_K; b++ {
		blk := src[b*BlockBytesQ5_K : (b+1)*BlockBytesQ5_K]
		y := dst[b*QK_K : (b+1)*QK_K]
		d := half.F16ToF32(binary.LittleEndian.Uint16(blk[0:]))
		dmin := half.F16ToF32(binary.LittleEndian.Uint16(blk[2:]))
		scales, qh, qs := blk[q4kScales:q5kQH], blk[q5kQH:q5kQS], blk[q5kQS:]
		for c := range 4 {
			sc1, m1 := scaleMinK4(2*c, scales)
			sc2, m2 := scaleMinK4(2*c+1, scales)
			d1, min1 := d*float32(sc1), dmin*float32(m1)
			d2, min2 := d*float32(sc2), dmin*float32(m2)
			q := qs[32*c : 32*c+32]
			for l := range 32 {
				lo := q[l]&0xF | (qh[l]>>(2*c)&1)<<4
				hi := q[l]>>4 | (qh[l]>>(2*c+1)&1)<<4
				y[64*c+l] = float32(d1*float32(lo)) - min1
				y[64*c+32+l] = float32(d2*float32(hi)) - min2
			}
		}
	}
}

// QuantizeQ5_K quantizes src (a multiple of 256 values) into Q5_K
// super-blocks in dst (176 bytes per 256 values), following ggml's
// reference quantizer quantize_row_q5_K_ref: QuantizeQ4_K's three steps
// with 5-bit levels (the search: 16 candidate scales from 31 − 0.5 over
// max−min). It panics if the lengths do not match.
func QuantizeQ5_K(dst []byte, src []float32) {
	if len(src)%QK_K != 0 || len(dst) != len(src)/QK_K*BlockBytesQ5_K {
		panic(fmt.Sprintf("gguf: QuantizeQ5_K: %d values into %d bytes", len(src), len(dst)))
	}
	var k kQuantizer
	for b := 0; b < len(src)/QK_K; b++ {
		y := dst[b*BlockBytesQ5_K : (b+1)*BlockBytesQ5_K]
		packQ5K(y, k.superBlock(y, src[b*QK_K:(b+1)*QK_K], 31, -0.5, 15))
	}
}

// Q6_K block layout (ggml-common.h block_q6_K), 210 bytes per 256 values:
//
//	bytes [0, 128)    ql: low 4 bits; in half h (values 128h .. 128h+127),
//	                  value 128h+32i+l (i < 4, l < 32) is in the low (i < 2)
//	                  or high (i >= 2) nibble of ql[64h + 32(i%2) + l]
//	bytes [128, 192)  qh: high 2 bits, of that value in bits 2i, 2i+1 of
//	                  qh[32h + l]
//	bytes [192, 208)  scales: 16 int8, one per 16 values
//	bytes [208, 210)  d: fp16
//
// A value decodes as x = d·scale·(q − 32) with q in [0, 63].
const (
	q6kQH     = 128
	q6kScales = 192
	q6kD      = 208
)

// DequantizeQ6_K expands Q6_K super-blocks (ggml dequantize_row_q6_K). It
// panics if the lengths do not match.
func DequantizeQ6_K(dst []float32, src []byte) {
	if len(dst)%QK_K != 0 || len(src) != len(dst)/QK_K*BlockBytesQ6_K {
		panic(fmt.Sprintf("gguf: DequantizeQ6_K: %d bytes into %d values", len(src), len(dst)))
	}
	for b := 0; b < len(dst)/QK_K; b++ {
		blk := src[b*BlockBytesQ6_K : (b+1)*BlockBytesQ6_K]
		y := dst[b*QK_K : (b+1)*QK_K]
		d := half.F16ToF32(binary.LittleEndian.Uint16(blk[q6kD:]))
		for h := range 2 {
			ql, qh := blk[64*h:64*h+64], blk[q6kQH+32*h:q6kQH+32*h+32]
			sc := blk[q6kScales+8*h : q6kScales+8*h+8]
			for l := range 32 {
				for i := range 4 {
					q := ql[32*(i%2)+l] >> (4 * (i / 2)) & 0xF
					q |= (qh[l] >> (2 * i) & 3) << 4
					y[128*h+32*i+l] = float32(d*float32(int8(sc[l/16+2*i]))) * float32(int(q)-32)
				}
			}
		}
	}
}

// QuantizeQ6_K quantizes src (a multiple of 256 values) into Q6_K
// super-blocks in dst (210 bytes per 256 values), following ggml's
// reference quantizer quantize_row_q6_K_ref:
//
//  1. For each sub-block of 16 values, a symmetric scale from makeQXQuants
//     (levels −32..31, weighted by x², 19 candidate scales).
//  2. The scales are quantized to int8 against d = −max/128, max the scale
//     of largest magnitude (with its sign), stored as fp16.
//  3. Every value is requantized against its sub-block's decoded scale:
//     q = clamp(round(x/(d·sc_j)), −32, 31) + 32.
//
// A super-block whose scales are all below 1e-15 is written as zeros. It
// panics if the lengths do not match.
func QuantizeQ6_K(dst []byte, src []float32) {
	if len(src)%QK_K != 0 || len(dst) != len(src)/QK_K*BlockBytesQ6_K {
		panic(fmt.Sprintf("gguf: QuantizeQ6_K: %d values into %d bytes", len(src), len(dst)))
	}
	for b := 0; b < len(src)/QK_K; b++ {
		q6KBlock(dst[b*BlockBytesQ6_K:(b+1)*BlockBytesQ6_K], src[b*QK_K:(b+1)*QK_K], nil)
	}
}

// q6KBlock quantizes one super-block x into y, each sub-block's scale
// search weighting its values by qw (the column importances of
// quantize_row_q6_K_impl) or, for nil qw, by x² (the reference).
func q6KBlock(y []byte, x, qw []float32) {
	var (
		L      [QK_K]uint8
		scales [QK_K / 16]float32
	)
	clear(y)
	var maxScale, maxAbs float32
	for j := range QK_K / 16 {
		var w []float32
		if qw != nil {
			w = qw[16*j : 16*j+16]
		}
		scales[j] = makeQXQuants(32, x[16*j:16*j+16], L[16*j:16*j+16], w)
		if a := abs32(scales[j]); a > maxAbs {
			maxAbs, maxScale = a, scales[j]
		}
	}
	if maxAbs < groupMaxEps {
		return
	}
	iscale := -128 / maxScale
	dBits := half.F32ToF16(1 / iscale)
	binary.LittleEndian.PutUint16(y[q6kD:], dBits)
	d := half.F16ToF32(dBits)
	sc := y[q6kScales:q6kD]
	for j := range QK_K / 16 {
		sc[j] = uint8(int8(min(127, nearestInt(iscale*scales[j]))))
	}
	for j := range QK_K / 16 {
		dj := d * float32(int8(sc[j]))
		if dj == 0 {
			continue
		}
		for i := range 16 {
			L[16*j+i] = uint8(clampInt(nearestInt(x[16*j+i]/dj), -32, 31) + 32)
		}
	}
	for h := range 2 {
		ql, qh := y[64*h:64*h+64], y[q6kQH+32*h:q6kQH+32*h+32]
		for l := range 32 {
			for i := range 4 {
				q := L[128*h+32*i+l]
				ql[32*(i%2)+l] |= (q & 0xF) << (4 * (i / 2))
				qh[l] |= (q >> 4) << (2 * i)
			}
		}
	}
}

// groupMaxEps is ggml's GROUP_MAX_EPS: a group whose largest magnitude is
// below it quantizes to zeros.
const groupMaxEps = 1e-15

// makeQXQuants fits x ≈ scale·(L − nmax) with L − nmax in [−nmax, nmax−1]
// (ggml make_qx_quants with rmse_type 1: each value weighted by qw, or by
// x² for nil qw), trying 1/scale = −(nmax + 0.1·is)/max for is in −9..9
// (max the value of largest magnitude, with its sign) and keeping the one
// of least weighted error. It returns the scale and leaves the levels in
// L.
func makeQXQuants(nmax int, x []float32, L []uint8, qw []float32) float32 {
	mx := signedMax(x)
	if abs32(mx) < groupMaxEps {
		clear(L[:len(x)])
		return 0
	}
	fmax := float32(nmax)
	// sums returns Σ w·x·l and Σ w·l² for levels at iscale, storing them
	// in L when set.
	sums := func(iscale float32, set bool) (sumLX, sumL2 float32) {
		for i, v := range x {
			l := clampInt(nearestInt(iscale*v), -nmax, nmax-1)
			if set {
				L[i] = uint8(l + nmax)
			}
			w := float32(v * v)
			if qw != nil {
				w = qw[i]
			}
			fl := float32(l)
			sumLX += float32(float32(w*v) * fl)
			sumL2 += float32(float32(w*fl) * fl)
		}
		return sumLX, sumL2
	}
	sumLX, sumL2 := sums(-fmax/mx, true)
	var scale float32
	if sumL2 != 0 {
		scale = sumLX / sumL2
	}
	best := scale * sumLX
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale := -(fmax + float32(0.1*float32(is))) / mx
		lx, l2 := sums(iscale, false)
		if l2 > 0 && float32(lx*lx) > float32(best*l2) {
			sums(iscale, true)
			scale = lx / l2
			best = scale * lx
		}
	}
	return scale
}

// makeQKX2Quants fits x ≈ scale·L − min with L in [0, nmax] by weighted
// least squares over nstep+1 candidate inverse scales (ggml
// make_qkx2_quants with use_mad = false). It returns the scale and min (min
// ≥ 0: the offset subtracted) and leaves the levels in L.
func makeQKX2Quants(nmax int, x, w []float32, L, laux []uint8, rmin, rdelta float32, nstep int) (scale, theMin float32) {
	return qkxQuants(nmax, x, w, L, laux, rmin, rdelta, nstep, false, false)
}

// makeQKX3Quants is makeQKX2Quants as ggml make_qkx3_quants (use_mad =
// false, weights given) computes it: a candidate's levels are taken as 0
// for a non-positive or NaN scaled value and nmax for one beyond nmax, so
// that a candidate min close to the maximum cannot overflow the rounding.
func makeQKX3Quants(nmax int, x, w []float32, L, laux []uint8, rmin, rdelta float32, nstep int) (scale, theMin float32) {
	return qkxQuants(nmax, x, w, L, laux, rmin, rdelta, nstep, false, true)
}

// qkxQuants is the search of make_qkx2_quants and make_qkx3_quants: the
// levels at the inverse scale nmax/(max − min), then at (rmin + rdelta·is +
// nmax)/(max − min) for is = 0..nstep, each candidate's levels with their
// weighted least-squares scale and min (min ≤ 0, else 0 and the scale
// refitted), kept when its error beats the best so far (and min, hence
// the next candidates' levels, moved to it). useMAD compares candidates by
// the weighted absolute error Σ w·|diff| (ggml's use_mad) instead of the
// squared Σ w·diff²; qkx3 rounds the candidates' levels as
// make_qkx3_quants does (see makeQKX3Quants), else as make_qkx2_quants
// (nearest_int, then clamped: out of nearest_int's range the level is
// whatever it gives, as in ggml built without asserts).
func qkxQuants(nmax int, x, w []float32, L, laux []uint8, rmin, rdelta float32, nstep int, useMAD, qkx3 bool) (scale, theMin float32) {
	n := len(x)
	lo, hi := x[0], x[0]
	sumW := w[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		// Comparisons, not min and max: a NaN other than x[0] is skipped,
		// as in ggml (Go's min and max would return it).
		if x[i] < lo {
			lo = x[i]
		}
		if x[i] > hi {
			hi = x[i]
		}
		sumW += w[i]
		sumX += float32(w[i] * x[i])
	}
	xMin := lo
	if lo > 0 {
		lo = 0
	}
	if hi <= lo {
		clear(L[:n])
		return 0, -lo
	}
	fmax := float32(nmax)
	iscale := fmax / (hi - lo)
	scale = 1 / iscale
	nanX := qkx3 && slices.ContainsFunc(x[:n], func(v float32) bool { return v != v })
	for i := range n {
		L[i] = uint8(clampInt(nearestInt(float32(iscale*(x[i]-lo))), 0, nmax))
	}
	bestErr := qkxErr(x[:n], w[:n], L[:n], scale, lo, useMAD)
	for is := 0; is <= nstep; is++ {
		iscale = (rmin + float32(rdelta*float32(is)) + fmax) / (hi - lo)
		var sumL, sumL2, sumXL float32
		if qkx3 && (nanX || !(float32(abs32(iscale)*max(abs32(hi-lo), abs32(xMin-lo))) < 1<<21)) {
			// make_qkx3_quants rounds v = iscale·(x − min) as v > 0 ?
			// nearest_int(MIN(v, nmax)) : 0. That is nearest_int clamped
			// to [0, nmax], below, wherever |v| is within nearest_int's
			// range (|v| is at most |iscale|·max|x − min|) and no x is
			// NaN; else, here, it is taken value by value.
			for i := range n {
				l := 0
				if v := float32(iscale * (x[i] - lo)); v > 0 {
					l = nearestInt(min(v, fmax))
				}
				laux[i] = uint8(l)
				fl := float32(l)
				sumL += float32(w[i] * fl)
				sumL2 += float32(float32(w[i]*fl) * fl)
				sumXL += float32(float32(w[i]*fl) * x[i])
			}
		} else {
			for i := range n {
				l := clampInt(nearestInt(float32(iscale*(x[i]-lo))), 0, nmax)
				laux[i] = uint8(l)
				fl := float32(l)
				sumL += float32(w[i] * fl)
				sumL2 += float32(float32(w[i]*fl) * fl)
				sumXL += float32(float32(w[i]*fl) * x[i])
			}
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D <= 0 {
			continue
		}
		thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
		thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
		if thisMin > 0 {
			thisMin = 0
			thisScale = sumXL / sumL2
		}
		curErr := qkxErr(x[:n], w[:n], laux[:n], thisScale, thisMin, useMAD)
		if curErr < bestErr {
			copy(L[:n], laux[:n])
			bestErr = curErr
			scale = thisScale
			lo = thisMin
		}
	}
	return scale, -lo
}

// qkxErr is qkxQuants' error of levels L at scale and min: Σ w·|diff|
// (useMAD) or Σ w·diff², diff = scale·L + min − x, summed in order in
// float32 as ggml does. (Two loops, not a loss function called per value:
// the search spends most of a K-type quantization here.)
func qkxErr(x, w []float32, L []uint8, scale, min float32, useMAD bool) float32 {
	var e float32
	if useMAD {
		for i, v := range x {
			e += float32(w[i] * abs32(float32(scale*float32(L[i]))+min-v))
		}
		return e
	}
	for i, v := range x {
		diff := float32(scale*float32(L[i])) + min - v
		e += float32(w[i] * float32(diff*diff))
	}
	return e
}

// minMax returns the least and greatest of x, starting from lo and hi, as
// ggml's loops find them (if (v < min) min = v; …): a NaN in x is never
// taken (one passed as lo or hi stays), where Go's min and max would
// return it and spread it over the block's scale and offset. ggml's
// quantize_row_q4_1_ref thus gives a block holding a NaN finite d and m,
// the NaN itself level 0.
func minMax(x []float32, lo, hi float32) (float32, float32) {
	for _, v := range x {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	return lo, hi
}

// signedMax returns the value of largest magnitude in x (the first of
// equals), 0 for none.
func signedMax(x []float32) float32 {
	var amax, mx float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, mx = a, v
		}
	}
	return mx
}

// sumSquares returns Σ x², summed in order in float32 as ggml's loops do.
func sumSquares(x []float32) float32 {
	var s float32
	for _, v := range x {
		s += float32(v * v)
	}
	return s
}

// importanceWeights sets w[i] = qw[i]·sqrt(sigma2 + x[i]²), the weight
// ggml's importance-weighted quantizers give each value (qw the column
// importances, sigma2 their σ²), and returns Σ w in order.
func importanceWeights(w, qw, x []float32, sigma2 float32) float32 {
	w, qw = w[:len(x)], qw[:len(x)]
	var sum float32
	for i, v := range x {
		w[i] = qw[i] * float32(math.Sqrt(float64(sigma2+float32(v*v))))
		sum += w[i]
	}
	return sum
}

// nearestInt rounds to the nearest integer, ties to even, exactly as
// ggml's nearest_int: adding 1.5·2^23 in float32 leaves the rounded value
// in the low mantissa bits. Valid for |f| < 2^22; larger values, Inf and
// NaN give an integer in [-2^22, 2^22) that callers clamp, as in ggml.
func nearestInt(f float32) int {
	v := f + 12582912
	return int(math.Float32bits(v)&0x7fffff) - 0x400000
}

func clampInt(v, lo, hi int) int { return max(lo, min(hi, v)) }

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }
