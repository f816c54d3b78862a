package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/gptqtool/gptqtool/formats/half"
)

// IQ3_XXS and IQ3_S, the 3-bit "i-quants", cut a super-block of 256 values
// into 8 sub-blocks of 32 and each sub-block into 8 groups of 4. A group
// stores its magnitudes as one index into a grid of 4-vectors (each
// magnitude one of 8 levels: iq3xxsGrid, iq3sGrid) and its signs apart; a
// sub-block has a 4-bit scale, the super-block an fp16 d.

// Block sizes in bytes of the 3-bit i-quants (ggml-common.h block_iq3_xxs,
// block_iq3_s).
const (
	// BlockBytesIQ3_XXS is sizeof(block_iq3_xxs): fp16 d, 64 grid
	// indices, 8 uint32 of scale and signs.
	BlockBytesIQ3_XXS = 2 + 3*QK_K/8
	// BlockBytesIQ3_S is sizeof(block_iq3_s): fp16 d, 64 bytes of grid
	// indices' low 8 bits, 8 of their ninth bits, 32 of signs, 4 of
	// scales.
	BlockBytesIQ3_S = 2 + QK_K/4 + QK_K/32 + QK_K/8 + QK_K/64
)

// IQ3_XXS block layout (ggml-common.h block_iq3_xxs), 98 bytes per 256
// values:
//
//	bytes [0, 2)    d     fp16
//	bytes [2, 66)   qs    byte 8j+g: the iq3xxsGrid index of group g of
//	                      sub-block j (values 32j+4g .. 32j+4g+3)
//	bytes [66, 98)  sas   uint32 j for sub-block j: bits 7h .. 7h+6 (h <
//	                      4) the signs of values 8h .. 8h+6 of the
//	                      sub-block (bit set: negative), value 8h+7's
//	                      sign the parity of those seven (ggml
//	                      ksigns_iq2xs); bits 28..31 the scale ls_j
//
// A value decodes as x = d·(0.5 + ls_j)·0.5·m·s, m its grid magnitude, s
// its sign.
const iq3xxsSAS = 2 + QK_K/4

// IQ3_S block layout (ggml-common.h block_iq3_s), 110 bytes per 256
// values:
//
//	bytes [0, 2)      d       fp16
//	bytes [2, 66)     qs      byte 8j+g: the low 8 bits of the iq3sGrid
//	                          index of group g of sub-block j
//	bytes [66, 74)    qh      bit g of byte j: that index's ninth bit
//	bytes [74, 106)   signs   byte 4j+h: the signs of values 8h .. 8h+7
//	                          of sub-block j, bit i for value 8h+i
//	bytes [106, 110)  scales  sub-block j's 4-bit scale ls_j in the low
//	                          (j even) or high (j odd) nibble of byte j/2
//
// A value decodes as x = d·(1 + 2·ls_j)·m·s, m its grid magnitude, s its
// sign.
const (
	iq3sQH     = 2 + QK_K/4
	iq3sSigns  = iq3sQH + QK_K/32
	iq3sScales = iq3sSigns + QK_K/8
)

// signIQ3 is ±1 for bit i of the sign byte s.
func signIQ3(s uint8, i int) float32 {
	if s>>i&1 != 0 {
		return -1
	}
	return 1
}

// DequantizeIQ3_XXS expands IQ3_XXS super-blocks (ggml
// dequantize_row_iq3_xxs; layout above). It panics if the lengths do not
// match.
func DequantizeIQ3_XXS(dst []float32, src []byte) {
	if len(dst)%QK_K != 0 || len(src) != len(dst)/QK_K*BlockBytesIQ3_XXS {
		panic(fmt.Sprintf("gguf: DequantizeIQ3_XXS: %d bytes into %d values", len(src), len(dst)))
	}
	for b := range len(dst) / QK_K {
		blk := src[b*BlockBytesIQ3_XXS : (b+1)*BlockBytesIQ3_XXS]
		d := half.F16ToF32(binary.LittleEndian.Uint16(blk))
		for j := range QK_K / 32 {
			sas := binary.LittleEndian.Uint32(blk[iq3xxsSAS+4*j:])
			db := float32(d*(0.5+float32(sas>>28))) * 0.5
			y := dst[b*QK_K+32*j : b*QK_K+32*j+32]
			for g := range 8 {
				m := iq3xxsGrid[blk[2+8*j+g]]
				s := ksignsIQ2XS[sas>>(7*(g/2))&127]
				for i := range 4 {
					y[4*g+i] = float32(db*float32(uint8(m>>(8*i)))) * signIQ3(s, 4*(g%2)+i)
				}
			}
		}
	}
}

// DequantizeIQ3_S expands IQ3_S super-blocks (ggml dequantize_row_iq3_s;
// layout above). It panics if the lengths do not match.
func DequantizeIQ3_S(dst []float32, src []byte) {
	if len(dst)%QK_K != 0 || len(src) != len(dst)/QK_K*BlockBytesIQ3_S {
		panic(fmt.Sprintf("gguf: DequantizeIQ3_S: %d bytes into %d values", len(src), len(dst)))
	}
	for b := range len(dst) / QK_K {
		blk := src[b*BlockBytesIQ3_S : (b+1)*BlockBytesIQ3_S]
		d := half.F16ToF32(binary.LittleEndian.Uint16(blk))
		for j := range QK_K / 32 {
			db := d * float32(1+2*int(blk[iq3sScales+j/2]>>(4*(j%2))&0xF))
			y := dst[b*QK_K+32*j : b*QK_K+32*j+32]
			for g := range 8 {
				m := iq3sGrid[int(blk[2+8*j+g])|int(blk[iq3sQH+j]>>g&1)<<8]
				s := blk[iq3sSigns+4*j+g/2]
				for i := range 4 {
					y[4*g+i] = float32(db*float32(uint8(m>>(8*i)))) * signIQ3(s, 4*(g%2)+i)
				}
			}
		}
	}
}

// iq3Lattice is what ggml's iq3xs_init_impl derives from a grid for the
// quantizers: each grid point's levels, an index from the 12-bit code of
// any 4 levels (3 bits each, value i's in bits 3i .. 3i+2) to its point,
// and for the codes off the grid the points nearest them.
type iq3Lattice struct {
	levels [][4]uint8   // levels[p][i] in 0..7: value i of grid point p
	mags   [][4]float32 // mags[p][i] = 2·levels[p][i] + 1
	// index[u] is the grid point with code u, or -1 if none.
	index [4096]int16
	// neighbours[u], for a code u off the grid, lists the grid points at
	// the nearest distances from it (Euclidean, on the magnitudes 2l + 1):
	// every point at the nearest 2 (IQ3_XXS) or 3 (IQ3_S) distinct
	// distances, by distance, then point.
	neighbours [4096][]uint16
}

var (
	iq3xxsOnce, iq3sOnce       sync.Once
	iq3xxsLattice, iq3sLattice *iq3Lattice
)

// iq3xxsLat returns IQ3_XXS's lattice (ggml iq3xs_init_impl(256)),
// computed on first use.
func iq3xxsLat() *iq3Lattice {
	iq3xxsOnce.Do(func() {
		// Magnitudes 4, 12, …, 52 and 62 are levels 0..7: m>>3.
		iq3xxsLattice = newIQ3Lattice(iq3xxsGrid[:], 3, 2)
	})
	return iq3xxsLattice
}

// iq3sLat returns IQ3_S's lattice (ggml iq3xs_init_impl(512)), computed
// on first use.
func iq3sLat() *iq3Lattice {
	iq3sOnce.Do(func() {
		// Magnitudes 2l + 1: l = m>>1.
		iq3sLattice = newIQ3Lattice(iq3sGrid[:], 1, 3)
	})
	return iq3sLattice
}

// newIQ3Lattice builds the lattice of grid, a magnitude m being level
// m>>shift, with the neighbours at the nearest nwant distances.
func newIQ3Lattice(grid []uint32, shift uint, nwant int) *iq3Lattice {
	lat := &iq3Lattice{levels: make([][4]uint8, len(grid)), mags: make([][4]float32, len(grid))}
	for u := range lat.index {
		lat.index[u] = -1
	}
	for p, e := range grid {
		u := 0
		for i := range 4 {
			l := uint8(e>>(8*i)) >> shift
			lat.levels[p][i] = l
			lat.mags[p][i] = float32(2*l + 1)
			u |= int(l) << (3 * i)
		}
		lat.index[u] = int16(p)
	}
	type cand struct{ d2, p int }
	cands := make([]cand, len(grid))
	for u := range lat.index {
		if lat.index[u] >= 0 {
			continue
		}
		for p, lv := range lat.levels {
			d2 := 0
			for i := range 4 {
				diff := 2 * (int(lv[i]) - (u >> (3 * i) & 7))
				d2 += diff * diff
			}
			cands[p] = cand{d2, p}
		}
		slices.SortFunc(cands, func(a, b cand) int {
			if a.d2 != b.d2 {
				return a.d2 - b.d2
			}
			return a.p - b.p
		})
		var nb []uint16
		d2, have := cands[0].d2, 1
		for _, c := range cands {
			if c.d2 > d2 {
				if have == nwant {
					break
				}
				d2 = c.d2
				have++
			}
			nb = append(nb, uint16(c.p))
		}
		lat.neighbours[u] = nb
	}
	return lat
}

// iq3Code returns the 12-bit code of the 4 levels L.
func iq3Code(L []uint8) int {
	return int(L[0]) | int(L[1])<<3 | int(L[2])<<6 | int(L[3])<<9
}

// bestNeighbour returns the point among the neighbours of code u whose
// magnitudes times scale are nearest xval, each value's squared error
// weighted by w (the first of equals), and sets L to its levels (ggml
// iq3_find_best_neighbour). Where no error is below the largest float
// (magnitudes or importances so large that it overflows) ggml aborts; here
// the first neighbour is taken.
func (lat *iq3Lattice) bestNeighbour(u int, xval, w []float32, scale float32, L []uint8) int {
	nb := lat.neighbours[u]
	x, w4 := (*[4]float32)(xval), (*[4]float32)(w)
	best, bestD2 := int(nb[0]), float32(math.MaxFloat32)
	for _, p := range nb {
		// Σ w·(scale·m − x)², summed in order as ggml does.
		m := &lat.mags[p]
		d := float32(scale*m[0]) - x[0]
		d2 := float32(float32(w4[0]*d) * d)
		d = float32(scale*m[1]) - x[1]
		d2 += float32(float32(w4[1]*d) * d)
		d = float32(scale*m[2]) - x[2]
		d2 += float32(float32(w4[2]*d) * d)
		d = float32(scale*m[3]) - x[3]
		d2 += float32(float32(w4[3]*d) * d)
		if d2 < bestD2 {
			best, bestD2 = int(p), d2
		}
	}
	copy(L[:4], lat.levels[best][:])
	return best
}

// iq3Quantizer holds the scratch of quantize_row_iq3_xxs_impl and
// quantize_row_iq3_s_impl for one sub-block of 32.
type iq3Quantizer struct {
	weight, waux, xval [32]float32
	L, Laux            [32]uint8
	onGrid, onGridAux  [8]bool
	signs              [4]uint8 // the sub-block's sign bytes
	points             [8]int   // its groups' grid points
	scales             [8]float32
}

// iq3Variant is what differs between IQ3_XXS's and IQ3_S's sub-block
// search.
type iq3Variant struct {
	lat *iq3Lattice
	// xxs: IQ3_XXS (7 sign bits per 8 values, an odd count of negatives
	// fixed by flipping the least important value; a sub-block whose
	// largest magnitude is below 1e-8 is zero; 31 candidate scales; after
	// the search only the groups off the grid are requantized); else
	// IQ3_S (8 sign bits; only an all-zero sub-block is zero; 19
	// candidates; every group requantized).
	xxs bool
}

// groupMaxEpsIQ3XXS is ggml's GROUP_MAX_EPS_IQ3_XXS.
const groupMaxEpsIQ3XXS = 1e-8

// subBlock searches the scale, grid points and signs of the 32 values x
// (quant_weights qw, nil for none; sigma2 the super-block's σ²), leaving
// the points and signs in q.points and q.signs. It returns the scale, and
// false for a sub-block that ggml skips as zero (nothing written).
func (q *iq3Quantizer) subBlock(v iq3Variant, x, qw []float32, sigma2 float32) (float32, bool) {
	w, waux, xval := q.weight[:], q.waux[:], q.xval[:]
	if qw != nil {
		importanceWeights(w, qw, x, sigma2)
	} else {
		for i, xi := range x {
			w[i] = float32(xi * xi)
		}
	}
	for i, wi := range w {
		waux[i] = float32(math.Sqrt(float64(wi)))
	}
	for k := range 4 {
		var s uint8
		nflip := 0
		for i := range 8 {
			if xi := x[8*k+i]; xi >= 0 {
				xval[8*k+i] = xi
			} else {
				xval[8*k+i] = -xi
				s |= 1 << i
				nflip++
			}
		}
		if v.xxs {
			// Seven bits hold the signs, the eighth is their parity: an
			// odd count of negatives flips the value of least w·x².
			if nflip%2 != 0 {
				imin := 0
				least := float32(float32(w[8*k]*x[8*k]) * x[8*k])
				for i := 1; i < 8; i++ {
					if a := float32(float32(w[8*k+i]*x[8*k+i]) * x[8*k+i]); a < least {
						least, imin = a, i
					}
				}
				xval[8*k+imin] = -xval[8*k+imin]
				s ^= 1 << imin
			}
			s &= 127
		}
		q.signs[k] = s
	}
	mx := xval[0]
	for _, a := range xval[1:] {
		if !(mx > a) {
			mx = a
		}
	}
	L := q.L[:]
	clear(L)
	if v.xxs && mx < groupMaxEpsIQ3XXS || !v.xxs && mx == 0 {
		return 0, false
	}
	const kMaxQ = 8
	var best float32
	scale := mx / (2*kMaxQ - 1)
	for k := range q.onGrid {
		q.onGrid[k] = v.xxs
	}
	nis := 9
	if v.xxs {
		nis = 15
	}
	for is := -nis; is <= nis; is++ {
		id := (2*kMaxQ - 1 + float32(float32(is)*0.2)) / mx
		thisScale := 1 / id
		for k := range 8 {
			la := q.Laux[4*k : 4*k+4]
			for i := range 4 {
				la[i] = uint8(clampInt(nearestInt(0.5*(float32(id*xval[4*k+i])-1)), 0, kMaxQ-1))
			}
			u := iq3Code(la)
			q.onGridAux[k] = v.lat.index[u] >= 0
			if !q.onGridAux[k] {
				v.lat.bestNeighbour(u, xval[4*k:], waux[4*k:], thisScale, la)
			}
		}
		sumQX, sumQ2 := iq3Sums(w, xval, q.Laux[:])
		if sumQ2 > 0 && float32(sumQX*sumQX) > float32(best*sumQ2) {
			scale = sumQX / sumQ2
			best = scale * sumQX
			copy(L, q.Laux[:])
			q.onGrid = q.onGridAux
		}
	}
	off := 0
	for _, on := range q.onGrid {
		if !on {
			off++
		}
	}
	if off > 0 && scale > 0 {
		id := 1 / scale
		for k := range 8 {
			if v.xxs && q.onGrid[k] {
				continue
			}
			var lk [4]uint8
			for i := range 4 {
				lk[i] = uint8(clampInt(nearestInt(0.5*(float32(id*xval[4*k+i])-1)), 0, kMaxQ-1))
			}
			u := iq3Code(lk[:])
			p := int(v.lat.index[u])
			if p < 0 {
				p = v.lat.bestNeighbour(u, xval[4*k:], waux[4*k:], scale, L[4*k:])
			}
			copy(L[4*k:4*k+4], v.lat.levels[p][:])
		}
		if sumQX, sumQ2 := iq3Sums(w, xval, L); sumQ2 > 0 {
			scale = sumQX / sumQ2
		}
	}
	if scale < 0 {
		// (ggml: "should never happen"; a positive scale, the signs
		// flipped.)
		scale = -scale
		for k := range q.signs {
			q.signs[k] = ^q.signs[k]
			if v.xxs {
				q.signs[k] &= 127
			}
		}
	}
	for k := range 8 {
		p := v.lat.index[iq3Code(L[4*k:4*k+4])]
		if p < 0 {
			panic(fmt.Sprintf("gguf: iq3 sub-block: levels %v not on the grid", L[4*k:4*k+4]))
		}
		q.points[k] = int(p)
	}
	return scale, true
}

// iq3Sums returns Σ w·x·q and Σ w·q² over the values xval with levels L,
// q = 2L + 1.
func iq3Sums(w, xval []float32, L []uint8) (sumQX, sumQ2 float32) {
	for i, wi := range w {
		fq := float32(2*int(L[i]) + 1)
		sumQX += float32(float32(wi*xval[i]) * fq)
		sumQ2 += float32(float32(wi*fq) * fq)
	}
	return sumQX, sumQ2
}

// superBlockXXS quantizes the 256 values x into the IQ3_XXS block y,
// weighted by qw (nil: none) as ggml quantize_row_iq3_xxs_impl does.
func (q *iq3Quantizer) superBlockXXS(y []byte, x, qw []float32) {
	clear(y)
	v := iq3Variant{lat: iq3xxsLat(), xxs: true}
	sigma2 := float32(2*sumSquares(x)) / QK_K
	var maxScale float32
	for j := range QK_K / 32 {
		var w []float32
		if qw != nil {
			w = qw[32*j : 32*j+32]
		}
		scale, ok := q.subBlock(v, x[32*j:32*j+32], w, sigma2)
		q.scales[j] = scale
		if !ok {
			continue
		}
		for k, p := range q.points {
			y[2+8*j+k] = uint8(p)
		}
		s := q.signs
		binary.LittleEndian.PutUint32(y[iq3xxsSAS+4*j:], uint32(s[0])|uint32(s[1])<<7|uint32(s[2])<<14|uint32(s[3])<<21)
		if !(maxScale > scale) {
			maxScale = scale
		}
	}
	if maxScale == 0 {
		clear(y)
		return
	}
	d := maxScale / 31
	binary.LittleEndian.PutUint16(y, half.F32ToF16(d*1.0125)) // ggml's fudge factor
	id := 1 / d
	for j, s := range q.scales {
		l := clampInt(nearestInt(0.5*(float32(id*s)-1)), 0, 15)
		sas := y[iq3xxsSAS+4*j:]
		binary.LittleEndian.PutUint32(sas, binary.LittleEndian.Uint32(sas)|uint32(l)<<28)
	}
}

// superBlockS quantizes the 256 values x into the IQ3_S block y, weighted
// by qw (nil: none) as ggml quantize_row_iq3_s_impl does, but for an
// all-zero sub-block among others: ggml moves on from one without
// advancing its qs and signs pointers, so the grid indices' low bytes and
// the signs of every later sub-block land one sub-block early, beside
// ninth bits and scales that stay in place, and llama.cpp then decodes
// those sub-blocks from another's codes. Here every sub-block keeps its
// own slot (an all-zero one holds zeros), so such a block decodes as it
// was quantized; its bytes differ from ggml's there and only there.
func (q *iq3Quantizer) superBlockS(y []byte, x, qw []float32) {
	clear(y)
	v := iq3Variant{lat: iq3sLat()}
	sigma2 := float32(2*sumSquares(x)) / QK_K
	var maxScale float32
	for j := range QK_K / 32 {
		var w []float32
		if qw != nil {
			w = qw[32*j : 32*j+32]
		}
		scale, ok := q.subBlock(v, x[32*j:32*j+32], w, sigma2)
		q.scales[j] = scale
		if !ok {
			continue
		}
		for k, p := range q.points {
			y[2+8*j+k] = uint8(p)
			y[iq3sQH+j] |= uint8(p>>8) << k
		}
		copy(y[iq3sSigns+4*j:], q.signs[:])
		if !(maxScale > scale) {
			maxScale = scale
		}
	}
	if maxScale == 0 {
		return
	}
	d := maxScale / 31
	binary.LittleEndian.PutUint16(y, half.F32ToF16(d*1.033)) // ggml's fudge factor
	id := 1 / d
	for j, s := range q.scales {
		l := clampInt(nearestInt(0.5*(float32(id*s)-1)), 0, 15)
		y[iq3sScales+j/2] |= uint8(l) << (4 * (j % 2))
	}
}

// QuantizeIQ3_XXS quantizes src (a multiple of 256 values) into IQ3_XXS
// super-blocks in dst (98 bytes per 256 values; layout at
// DequantizeIQ3_XXS), as llama-quantize does without an importance
// matrix (ggml quantize_iq3_xxs with no weights):
//
//  1. Each value weighs x². In each sub-block of 32, the signs are taken
//     off (an odd count of negatives among 8 keeps the value of least
//     w·x² positive instead, its magnitude counted negative) and the
//     magnitudes fitted as s·(2l + 1), l in 0..7: for 31 inverse scales
//     (15 + 0.2t)/max, t in −15..15, every group of 4 takes the rounded
//     levels, or where those are not a grid point the neighbour of least
//     weighted error; the candidate of best least-squares fit is kept
//     with its fitted s. Groups off the grid there are requantized at s,
//     and s refitted.
//  2. d = max s/31, stored as fp16 of 1.0125·d; each sub-block's scale is
//     l = clamp(round((s/d − 1)/2), 0, 15).
//
// A sub-block whose largest magnitude is below 1e-8 is written as zeros
// (scale 0), a super-block of such as zeros. With importances
// (EncodeWeighted) each value weighs qw·sqrt(σ² + x²) instead, σ² twice
// the super-block's mean square. It panics if the lengths do not match.
func QuantizeIQ3_XXS(dst []byte, src []float32) {
	quantizeIQ3XXS(dst, src, nil)
}

// QuantizeIQ3_S quantizes src (a multiple of 256 values) into IQ3_S
// super-blocks in dst (110 bytes per 256 values; layout at
// DequantizeIQ3_S), as llama-quantize does without an importance matrix
// (ggml quantize_iq3_s with no weights): QuantizeIQ3_XXS's search with
// 8 stored signs (no parity trick), 19 candidate scales (t in −9..9),
// every group requantized at the fitted s, and d stored as 1.033·max s/31.
// Only a sub-block of zeros is skipped (written as zeros, scale 0; the
// later ones keep their own slots, where ggml's move one slot early:
// superBlockS). It panics if the lengths do not match.
func QuantizeIQ3_S(dst []byte, src []float32) {
	quantizeIQ3S(dst, src, nil)
}

// quantizeIQ3XXS quantizes src into IQ3_XXS super-blocks dst, each value
// weighted by qw (one importance per value of src; nil: none).
func quantizeIQ3XXS(dst []byte, src, qw []float32) {
	var q iq3Quantizer
	eachBlock(TypeIQ3_XXS, dst, src, qw, q.superBlockXXS)
}

// quantizeIQ3S quantizes src into IQ3_S super-blocks dst, each value
// weighted by qw (one importance per value of src; nil: none).
func quantizeIQ3S(dst []byte, src, qw []float32) {
	var q iq3Quantizer
	eachBlock(TypeIQ3_S, dst, src, qw, q.superBlockS)
}
