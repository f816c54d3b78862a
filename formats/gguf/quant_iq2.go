package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sync"

	"github.com/gptqtool/gptqtool/formats/half"
)

// ErrNeedsImportance is wrapped by Encode's error for IQ2_XXS, IQ2_XS and
// IQ1_S, which ggml quantizes only with importances
// (ggml_quantize_requires_imatrix: its quantize_row_iq2_xxs_impl,
// quantize_row_iq2_xs_impl and quantize_row_iq1_s_impl assert
// quant_weights): EncodeWeighted writes them.
var ErrNeedsImportance = errors.New("ggml quantizes this type only with importances (an importance matrix): use EncodeWeighted")

// Block sizes in bytes of the 2-bit IQ types (ggml-common.h block_iq2_xxs,
// block_iq2_xs, block_iq2_s).
const (
	// BlockBytesIQ2_XXS is sizeof(block_iq2_xxs): fp16 d, 64 bytes of
	// grid indices, signs and scales.
	BlockBytesIQ2_XXS = 2 + QK_K/4
	// BlockBytesIQ2_XS is sizeof(block_iq2_xs): fp16 d, 32 uint16 of grid
	// indices and signs, 8 bytes of 4-bit scales.
	BlockBytesIQ2_XS = 2 + QK_K/4 + QK_K/32
	// BlockBytesIQ2_S is sizeof(block_iq2_s): fp16 d, 32 bytes of grid
	// indices' low bits, 32 of signs, 8 of their high bits, 8 of scales.
	BlockBytesIQ2_S = 2 + QK_K/4 + QK_K/16
)

// The IQ2 types code each group of 8 values as a point of a grid
// (quant_iq2_grid.go: 8 magnitudes, each 8, 25 or 43) and 8 signs, scaled
// per sub-block. Layouts (ggml-common.h), 256 values a block:
//
//	IQ2_XXS, 66 bytes: fp16 d, then per 32 values (sub-block j) two
//	    little-endian uint32 a, b: byte l of a is the iq2xxs_grid index of
//	    values 32j+8l .. 32j+8l+7, bits 7l .. 7l+6 of b their signs (7 of
//	    them, ksignsIQ2XS), bits 28-31 of b the scale s_j;
//	    x = d·(0.5 + s_j)/4 · grid · sign
//	IQ2_XS, 74 bytes: fp16 d, 32 little-endian uint16 (one per 8 values:
//	    bits 0-8 the iq2xs_grid index, 9-15 the 7 signs), then 8 bytes of
//	    4-bit scales, one per 16 values (low nibble first);
//	    x = d·(0.5 + s)/4 · grid · sign
//	IQ2_S, 82 bytes: fp16 d, qs[32] (the low 8 bits of the iq2s_grid
//	    index of each 8 values), signs[32] (8 bits each), qh[8] (the high 2
//	    bits of the index of 8-value group g at bits 2(g%4) of qh[g/4]),
//	    scales[8] as IQ2_XS's; x = d·(0.5 + s)/4 · grid · sign
//
// A sign bit set negates its value. IQ2_XXS and IQ2_XS store 7 signs of 8,
// the eighth making the count of negatives even.
const (
	iq2xsScales = 2 + QK_K/4
	iq2sSigns   = 2 + QK_K/8
	iq2sQH      = 2 + QK_K/4
	iq2sScales  = 2 + QK_K/4 + QK_K/32
)

// ksignsIQ2XS is ggml-common.h ksigns_iq2xs: the 8 signs of a group from
// the 7 stored, bit 7 set where bits 0-6 hold an odd count. ggml's
// kmask_iq2xs is the bit of value j, 1<<j.
var ksignsIQ2XS = func() (s [128]uint8) {
	for i := range s {
		s[i] = uint8(i) | uint8(bits.OnesCount8(uint8(i))&1)<<7
	}
	return s
}()

// putIQ2 decodes 8 values into y: grid magnitudes g (byte j that of value
// j) times db, negated where signs has bit j (ggml's y[j] = db·grid[j]·±1).
func putIQ2(y []float32, g uint64, signs uint8, db float32) {
	y = y[:8]
	for j := range y {
		v := db * float32(uint8(g>>(8*j)))
		if signs>>j&1 != 0 {
			v = -v
		}
		y[j] = v
	}
}

// iq2Scale is a sub-block's decoded scale d·(0.5 + s)/4, rounded as ggml
// rounds it.
func iq2Scale(d float32, s uint32) float32 {
	return float32(d*(0.5+float32(s))) * 0.25
}

// DequantizeIQ2_XXS expands IQ2_XXS blocks (ggml dequantize_row_iq2_xxs;
// layout above). It panics if the lengths do not match.
func DequantizeIQ2_XXS(dst []float32, src []byte) {
	if len(dst)%QK_K != 0 || len(src) != len(dst)/QK_K*BlockBytesIQ2_XXS {
		panic(fmt.Sprintf("gguf: DequantizeIQ2_XXS: %d bytes into %d values", len(src), len(dst)))
	}
	for b := range len(dst) / QK_K {
		blk := src[b*BlockBytesIQ2_XXS : (b+1)*BlockBytesIQ2_XXS]
		y := dst[b*QK_K : (b+1)*QK_K]
		d := half.F16ToF32(binary.LittleEndian.Uint16(blk))
		for j := range QK_K / 32 {
			a := blk[2+8*j : 2+8*j+4]
			s := binary.LittleEndian.Uint32(blk[2+8*j+4:])
			db := iq2Scale(d, s>>28)
			for l := range 4 {
				putIQ2(y[32*j+8*l:], iq2xxsGrid[a[l]], ksignsIQ2XS[s>>(7*l)&127], db)
			}
		}
	}
}

// DequantizeIQ2_XS expands IQ2_XS blocks (ggml dequantize_row_iq2_xs;
// layout above). It panics if the lengths do not match.
func DequantizeIQ2_XS(dst []float32, src []byte) {
	if len(dst)%QK_K != 0 || len(src) != len(dst)/QK_K*BlockBytesIQ2_XS {
		panic(fmt.Sprintf("gguf: DequantizeIQ2_XS: %d bytes into %d values", len(src), len(dst)))
	}
	for b := range len(dst) / QK_K {
		blk := src[b*BlockBytesIQ2_XS : (b+1)*BlockBytesIQ2_XS]
		y := dst[b*QK_K : (b+1)*QK_K]
		d := half.F16ToF32(binary.LittleEndian.Uint16(blk))
		for g := range QK_K / 8 {
			q := binary.LittleEndian.Uint16(blk[2+2*g:])
			db := iq2Scale(d, uint32(blk[iq2xsScales+g/4]>>(4*(g/2%2))&0xF))
			putIQ2(y[8*g:], iq2xsGrid[q&511], ksignsIQ2XS[q>>9], db)
		}
	}
}

// DequantizeIQ2_S expands IQ2_S blocks (ggml dequantize_row_iq2_s; layout
// above). It panics if the lengths do not match.
func DequantizeIQ2_S(dst []float32, src []byte) {
	if len(dst)%QK_K != 0 || len(src) != len(dst)/QK_K*BlockBytesIQ2_S {
		panic(fmt.Sprintf("gguf: DequantizeIQ2_S: %d bytes into %d values", len(src), len(dst)))
	}
	for b := range len(dst) / QK_K {
		blk := src[b*BlockBytesIQ2_S : (b+1)*BlockBytesIQ2_S]
		y := dst[b*QK_K : (b+1)*QK_K]
		d := half.F16ToF32(binary.LittleEndian.Uint16(blk))
		for g := range QK_K / 8 {
			idx := int(blk[2+g]) | int(blk[iq2sQH+g/4]>>(2*(g%4))&3)<<8
			db := iq2Scale(d, uint32(blk[iq2sScales+g/4]>>(4*(g/2%2))&0xF))
			putIQ2(y[8*g:], iq2sGrid[idx], blk[iq2sSigns+g], db)
		}
	}
}

// iq2Lattice is what ggml's iq2xs_init_impl derives from a grid, once, for
// the quantizers: each point's levels l (IQ2's magnitudes 8, 25, 43,
// IQ1's values −1, 0, 1 as 0, 1, 2; the quantizer's coordinate 2l+1), and
// for every code of 8 levels in 0..2 (two bits each, value k's at bits 2k)
// the point it is, or the points nearest it: all those at the nwant
// smallest squared distances (2 for IQ2_XXS and IQ2_XS, 1 for IQ2_S, 3
// for IQ1_S and IQ1_M), in order of distance, then index. (ggml lists
// neighbours for codes holding level 3 too, which its quantizers, whose
// levels are at most 2, never look up.)
type iq2Lattice struct {
	once   sync.Once
	levels [][8]uint8
	pos    [][8]float32 // 2l+1
	// index maps a code to its point (≥ 0), or to −(o+1) where
	// neighbours[o] is the count of the code's neighbours and
	// neighbours[o+1:] their indices.
	index      []int32
	neighbours []uint16
}

var (
	iq2xxsLattice, iq2xsLattice, iq2sLattice, iq1sLattice iq2Lattice
)

// iq2LatticeOf returns t's lattice, built on first use.
func iq2LatticeOf(t TensorType) *iq2Lattice {
	var (
		l     *iq2Lattice
		grid  []uint64
		nwant int
	)
	switch t {
	case TypeIQ2_XXS:
		l, grid, nwant = &iq2xxsLattice, iq2xxsGrid[:], 2
	case TypeIQ2_XS:
		l, grid, nwant = &iq2xsLattice, iq2xsGrid[:], 2
	case TypeIQ2_S:
		l, grid, nwant = &iq2sLattice, iq2sGrid[:], 1
	case TypeIQ1_S, TypeIQ1_M:
		iq1sLattice.once.Do(func() { iq1sLattice.build(iq1sGrid[:], [3]uint8{0xff, 0x00, 0x01}, 3) })
		return &iq1sLattice
	default:
		panic("gguf: no IQ2 lattice for " + t.String())
	}
	l.once.Do(func() { l.build(grid, [3]uint8{0x08, 0x19, 0x2b}, nwant) })
	return l
}

// iq2Codes is one more than the largest code of levels 0..2 (0xAAAA).
const iq2Codes = 0xAAAA + 1

// build derives the lattice of grid, whose bytes are levels[0..2].
func (l *iq2Lattice) build(grid []uint64, levels [3]uint8, nwant int) {
	l.levels = make([][8]uint8, len(grid))
	l.pos = make([][8]float32, len(grid))
	l.index = make([]int32, iq2Codes)
	for u := range l.index {
		l.index[u] = -1
	}
	for k, g := range grid {
		code := 0
		for i := range 8 {
			b := uint8(g >> (8 * i))
			v := uint8(slices.Index(levels[:], b))
			if v > 2 {
				panic(fmt.Sprintf("gguf: grid point %d: byte %#x", k, b))
			}
			l.levels[k][i] = v
			l.pos[k][i] = float32(2*v + 1)
			code |= int(v) << (2 * i)
		}
		l.index[code] = int32(k)
	}
	dist := make([]int32, len(grid))
	var want []int32
	for u := range iq2Codes {
		if l.index[u] >= 0 || !levelsUpTo2(u) {
			continue
		}
		for k := range grid {
			var d2 int32
			for i := range 8 {
				e := int32(l.levels[k][i]) - int32(u>>(2*i)&3)
				d2 += 4 * e * e
			}
			dist[k] = d2
		}
		// The nwant smallest distinct distances, ascending.
		want = want[:0]
		for len(want) < nwant {
			next := int32(math.MaxInt32)
			for _, d := range dist {
				if (len(want) == 0 || d > want[len(want)-1]) && d < next {
					next = d
				}
			}
			if next == math.MaxInt32 {
				break
			}
			want = append(want, next)
		}
		o := len(l.neighbours)
		l.index[u] = -int32(o) - 1
		l.neighbours = append(l.neighbours, 0)
		for _, w := range want {
			for k, d := range dist {
				if d == w {
					l.neighbours = append(l.neighbours, uint16(k))
				}
			}
		}
		l.neighbours[o] = uint16(len(l.neighbours) - o - 1)
	}
}

// levelsUpTo2 reports whether every 2-bit level of code u is at most 2.
func levelsUpTo2(u int) bool {
	for i := range 8 {
		if u>>(2*i)&3 == 3 {
			return false
		}
	}
	return true
}

// iq2Quantizer holds the scratch of ggml's quantize_row_iq2_*_impl for one
// super-block.
type iq2Quantizer struct {
	weight, waux, xval [32]float32
	L, laux            [32]uint8
	scales             [QK_K / 16]float32
	signs              [4]uint8
	// bad marks a block ggml would abort on (GGML_ASSERT: no neighbour
	// at a finite distance, or levels off the grid), which happens only
	// when the weights overflow float32 (importances near 1e38). Such a
	// block is written with a NaN scale, which Encode and EncodeWeighted
	// refuse (ErrNotQuantizable).
	bad bool
}

// foldSigns sets xv to |x| for the 8 values x and returns the mask of the
// negative ones (ggml: x ≥ 0 counts as positive). With parity (IQ2_XXS,
// IQ2_XS, which store 7 signs) an odd count of negatives is made even by
// leaving the value of least w·x² negative in xv and its bit clear; the
// mask is then 7 bits.
func foldSigns(xv, x, w []float32, parity bool) uint8 {
	xv, x, w = xv[:8], x[:8], w[:8]
	var s uint8
	for i, v := range x {
		if v >= 0 {
			xv[i] = v
		} else {
			xv[i] = -v
			s |= 1 << i
		}
	}
	if !parity {
		return s
	}
	if bits.OnesCount8(s)%2 != 0 {
		imin := 0
		least := float32(w[0]*x[0]) * x[0]
		for i := 1; i < 8; i++ {
			if a := float32(w[i]*x[i]) * x[i]; a < least {
				least, imin = a, i
			}
		}
		xv[imin] = -xv[imin]
		s ^= 1 << imin
	}
	return s & 127
}

// gridLevels rounds the 8 values x at inverse scale id to levels 0..2
// (round((id·x − 1)/2)) into L and returns the grid point they code, or,
// off the grid, the neighbour of least distance Σ w·(scale·(2l+1) − x)²,
// its levels then in L (ggml iq2_find_best_neighbour); on reports which.
func (q *iq2Quantizer) gridLevels(g *iq2Lattice, L []uint8, x, w []float32, id, scale float32) (point int, on bool) {
	L, x, w = L[:8], x[:8], w[:8]
	u := 0
	for i, v := range x {
		l := uint8(clampInt(nearestInt(0.5*(float32(id*v)-1)), 0, 2))
		L[i] = l
		u |= int(l) << (2 * i)
	}
	if p := g.index[u]; p >= 0 {
		return int(p), true
	}
	nb := g.neighbours[-g.index[u]-1:]
	best, point := float32(math.MaxFloat32), -1
	xv, wv := (*[8]float32)(x), (*[8]float32)(w)
	for _, k := range nb[1 : 1+int(nb[0])] {
		// Σ w·(scale·q − x)², in order (unrolled: the search spends most
		// of the quantization here).
		p := &g.pos[k]
		d := float32(scale*p[0]) - xv[0]
		d2 := float32(wv[0]*d) * d
		d = float32(scale*p[1]) - xv[1]
		d2 += float32(wv[1]*d) * d
		d = float32(scale*p[2]) - xv[2]
		d2 += float32(wv[2]*d) * d
		d = float32(scale*p[3]) - xv[3]
		d2 += float32(wv[3]*d) * d
		d = float32(scale*p[4]) - xv[4]
		d2 += float32(wv[4]*d) * d
		d = float32(scale*p[5]) - xv[5]
		d2 += float32(wv[5]*d) * d
		d = float32(scale*p[6]) - xv[6]
		d2 += float32(wv[6]*d) * d
		d = float32(scale*p[7]) - xv[7]
		d2 += float32(wv[7]*d) * d
		if d2 < best {
			best, point = d2, int(k)
		}
	}
	if point < 0 {
		q.bad = true
		point = int(nb[1])
	}
	copy(L, g.levels[point][:])
	return point, false
}

// fit returns Σ w·x·q and Σ w·q² for levels L (q = 2l+1) of the values
// xval weighted by weight.
func (q *iq2Quantizer) fit(L []uint8) (sumQX, sumQ2 float32) {
	for i, l := range L {
		w, fq := q.weight[i], float32(2*int(l)+1)
		sumQX += float32(float32(w*q.xval[i]) * fq)
		sumQ2 += float32(float32(w*fq) * fq)
	}
	return sumQX, sumQ2
}

// point returns the grid point the levels L[:8] code, marking the block
// bad when they are off the grid.
func (q *iq2Quantizer) point(g *iq2Lattice, L []uint8) int {
	u := 0
	for i, l := range L[:8] {
		u |= int(l) << (2 * i)
	}
	if p := g.index[u]; p >= 0 {
		return int(p)
	}
	q.bad = true
	return 0
}

// maxOf returns the largest of x as ggml's MAX loop finds it.
func maxOf(x []float32) float32 {
	m := x[0]
	for _, v := range x[1:] {
		if !(m > v) {
			m = v
		}
	}
	return m
}

// iq2Scales writes the 4-bit sub-block scales s = round((scale/d − 1)/2)
// clamped to 0..15 for d = maxScale/31 (unrounded), calling put with each.
func iq2Scales(scales []float32, maxScale float32, put func(j int, s uint8)) {
	id := 1 / (maxScale / 31)
	for j, sc := range scales {
		put(j, uint8(clampInt(nearestInt(0.5*(float32(id*sc)-1)), 0, 15)))
	}
}

// blockXXS quantizes the 256 values x into the IQ2_XXS block y with the
// column importances qw (ggml quantize_row_iq2_xxs_impl).
func (q *iq2Quantizer) blockXXS(y []byte, x, qw []float32) {
	g := iq2LatticeOf(TypeIQ2_XXS)
	q.bad = false
	var q2 [QK_K / 16]uint32
	sigma2 := sumSquares(x) / QK_K
	var maxScale float32
	for ib := range QK_K / 32 {
		xb := x[32*ib : 32*ib+32]
		q.subBlockWeights(xb, qw[32*ib:32*ib+32], sigma2, 32)
		for k := range 4 {
			q.signs[k] = foldSigns(q.xval[8*k:], xb[8*k:], q.weight[8*k:], true)
		}
		q.scales[ib] = 0
		if maxOf(q.xval[:32]) < groupMaxEps {
			continue
		}
		scale := makeQPQuants(4, q.xval[:32], q.L[:32], q.weight[:32])
		effMax := scale * 3
		if effMax <= 0 {
			continue
		}
		var best float32
		for is := -6; is <= 6; is++ {
			id := (5 + float32(is)*0.1) / effMax
			thisScale := 1 / id
			for k := range 4 {
				q.gridLevels(g, q.laux[8*k:], q.xval[8*k:], q.waux[8*k:], id, thisScale)
			}
			sumQX, sumQ2 := q.fit(q.laux[:32])
			if sumQ2 > 0 && float32(sumQX*sumQX) > float32(best*sumQ2) {
				scale = sumQX / sumQ2
				best = scale * sumQX
				q.L = q.laux
			}
		}
		if scale > 0 {
			id := 1 / scale
			for k := range 4 {
				q.gridLevels(g, q.L[8*k:], q.xval[8*k:], q.waux[8*k:], id, scale)
			}
			if sumQX, sumQ2 := q.fit(q.L[:32]); sumQ2 > 0 {
				scale = sumQX / sumQ2
			}
		}
		if scale < 0 {
			scale = -scale
			for k := range 4 {
				q.signs[k] = ^q.signs[k] & 127
			}
		}
		for k := range 4 {
			q2[2*ib] |= uint32(q.point(g, q.L[8*k:])) << (8 * k)
			q2[2*ib+1] |= uint32(q.signs[k]) << (7 * k)
		}
		q.scales[ib] = scale
		maxScale = max32(maxScale, scale)
	}
	clear(y)
	if maxScale == 0 {
		q.markBad(y)
		return
	}
	binary.LittleEndian.PutUint16(y, half.F32ToF16(maxScale/31))
	iq2Scales(q.scales[:QK_K/32], maxScale, func(j int, s uint8) { q2[2*j+1] |= uint32(s) << 28 })
	for i, v := range q2 {
		binary.LittleEndian.PutUint32(y[2+4*i:], v)
	}
	q.markBad(y)
}

// blockXS quantizes the 256 values x into the IQ2_XS block y with the
// column importances qw (ggml quantize_row_iq2_xs_impl).
func (q *iq2Quantizer) blockXS(y []byte, x, qw []float32) {
	g := iq2LatticeOf(TypeIQ2_XS)
	q.bad = false
	clear(y)
	sigma2 := sumSquares(x) / QK_K
	var maxScale float32
	for ib := range QK_K / 16 {
		xb := x[16*ib : 16*ib+16]
		q.subBlockWeights(xb, qw[16*ib:16*ib+16], sigma2, 16)
		scale, ok := q.subBlock16(g, xb, true, groupMaxEps)
		q.scales[ib] = scale
		if !ok {
			continue
		}
		for k := range 2 {
			p := q.point(g, q.L[8*k:])
			binary.LittleEndian.PutUint16(y[2+2*(2*ib+k):], uint16(p)|uint16(q.signs[k])<<9)
		}
		maxScale = max32(maxScale, scale)
	}
	if maxScale == 0 {
		clear(y)
		q.markBad(y)
		return
	}
	binary.LittleEndian.PutUint16(y, half.F32ToF16(maxScale/31))
	iq2Scales(q.scales[:], maxScale, func(j int, s uint8) { y[iq2xsScales+j/2] |= s << (4 * (j % 2)) })
	q.markBad(y)
}

// blockS quantizes the 256 values x into the IQ2_S block y, with the
// column importances qw or, for nil qw, without (ggml
// quantize_row_iq2_s_impl).
func (q *iq2Quantizer) blockS(y []byte, x, qw []float32) {
	g := iq2LatticeOf(TypeIQ2_S)
	q.bad = false
	clear(y)
	sigma2 := float32(2*sumSquares(x)) / QK_K
	var maxScale float32
	for ib := range QK_K / 16 {
		xb := x[16*ib : 16*ib+16]
		if qw != nil {
			q.subBlockWeights(xb, qw[16*ib:16*ib+16], sigma2, 16)
		} else {
			for i, v := range xb {
				q.weight[i] = float32(0.25*sigma2) + float32(v*v)
				q.waux[i] = sqrt32(q.weight[i])
			}
		}
		scale, ok := q.subBlock16(g, xb, false, groupMaxEpsIQ2S)
		q.scales[ib] = scale
		if !ok {
			continue
		}
		for k := range 2 {
			i8 := 2*ib + k
			p := q.point(g, q.L[8*k:])
			y[2+i8] = uint8(p)
			y[iq2sQH+i8/4] |= uint8(p>>8) << (2 * (i8 % 4))
			y[iq2sSigns+i8] = q.signs[k]
		}
		maxScale = max32(maxScale, scale)
	}
	if maxScale == 0 {
		// ggml keeps the sub-blocks' indices and signs, with d = 0.
		q.markBad(y)
		return
	}
	binary.LittleEndian.PutUint16(y, half.F32ToF16(float32(maxScale/31)*0.9875))
	iq2Scales(q.scales[:], maxScale, func(j int, s uint8) { y[iq2sScales+j/2] |= s << (4 * (j % 2)) })
	q.markBad(y)
}

// groupMaxEpsIQ2S is ggml's GROUP_MAX_EPS_IQ2_S: an IQ2_S sub-block whose
// largest magnitude is below it quantizes to zeros.
const groupMaxEpsIQ2S = 1e-8

// subBlockWeights sets the first n weights to qw·sqrt(σ² + x²) and waux
// to their square roots.
func (q *iq2Quantizer) subBlockWeights(x, qw []float32, sigma2 float32, n int) {
	importanceWeights(q.weight[:n], qw, x, sigma2)
	for i := range n {
		q.waux[i] = sqrt32(q.weight[i])
	}
}

// subBlock16 quantizes the 16 values x (weights set) to levels in q.L and
// signs in q.signs[:2], as quantize_row_iq2_xs_impl and
// quantize_row_iq2_s_impl do: from scale = max/5, inverse scales (5 +
// 0.1·is)/max for is in −9..9, each value rounded to a level and each
// group of 8 off the grid moved to its best neighbour, keeping the levels
// of the best weighted fit; groups left off the grid by the best are then
// redone at its scale, which is refitted. ok is false for a sub-block
// whose largest magnitude is below eps (scale 0, nothing stored).
func (q *iq2Quantizer) subBlock16(g *iq2Lattice, x []float32, parity bool, eps float32) (scale float32, ok bool) {
	for k := range 2 {
		q.signs[k] = foldSigns(q.xval[8*k:], x[8*k:], q.weight[8*k:], parity)
	}
	mx := maxOf(q.xval[:16])
	clear(q.L[:16])
	if mx < eps {
		return 0, false
	}
	var best float32
	scale = mx / 5
	onGrid := [2]bool{true, true}
	for is := -9; is <= 9; is++ {
		id := (5 + float32(is)*0.1) / mx
		thisScale := 1 / id
		var on [2]bool
		for k := range 2 {
			_, on[k] = q.gridLevels(g, q.laux[8*k:], q.xval[8*k:], q.waux[8*k:], id, thisScale)
		}
		sumQX, sumQ2 := q.fit(q.laux[:16])
		if sumQ2 > 0 && float32(sumQX*sumQX) > float32(best*sumQ2) {
			scale = sumQX / sumQ2
			best = scale * sumQX
			copy(q.L[:16], q.laux[:16])
			onGrid = on
		}
	}
	if (!onGrid[0] || !onGrid[1]) && scale > 0 {
		id := 1 / scale
		for k := range 2 {
			if !onGrid[k] {
				q.gridLevels(g, q.L[8*k:], q.xval[8*k:], q.waux[8*k:], id, scale)
			}
		}
		if sumQX, sumQ2 := q.fit(q.L[:16]); sumQ2 > 0 {
			scale = sumQX / sumQ2
		}
	}
	if scale < 0 {
		scale = -scale
		for k := range 2 {
			q.signs[k] = ^q.signs[k]
			if parity {
				q.signs[k] &= 127
			}
		}
	}
	return scale, true
}

// markBad gives a block ggml would have aborted on a NaN scale (iq2Quantizer.bad).
func (q *iq2Quantizer) markBad(y []byte) {
	if q.bad {
		binary.LittleEndian.PutUint16(y, 0x7e00)
	}
}

func sqrt32(v float32) float32 { return float32(math.Sqrt(float64(v))) }

// max32 is ggml's MAX(a, b): a > b ? a : b.
func max32(a, b float32) float32 {
	if a > b {
		return a
	}
	return b
}

// QuantizeIQ2_S quantizes src (a multiple of 256 values) into IQ2_S blocks
// in dst (82 bytes per 256 values; layout above), as llama-quantize does
// without an importance matrix (ggml quantize_iq2_s with no weights):
//
//  1. Each value weighs σ²/4 + x² (σ² twice the block's mean square); each
//     group of 8 is taken as magnitudes and 8 signs.
//  2. Each sub-block of 16 gets levels 0..2 (grid coordinate 2l+1) and a
//     scale from 19 inverse scales around 5/max, a group of 8 whose levels
//     are not a point of iq2s_grid taking its nearest point, keeping the
//     weighted least-squares fit of least error; groups off the grid are
//     redone at the chosen scale, which is refitted.
//  3. d = max scale/31; each sub-block's scale s = round((scale/d − 1)/2)
//     in 4 bits; d·0.9875 is stored as fp16.
//
// A sub-block whose largest magnitude is below 1e-8 is stored as zeros.
// With importances (EncodeWeighted) each value weighs qw·sqrt(σ² + x²).
// It panics if the lengths do not match.
func QuantizeIQ2_S(dst []byte, src []float32) {
	quantizeIQ2(TypeIQ2_S, dst, src, nil)
}

// quantizeIQ2 quantizes src into blocks of t (IQ2_XXS, IQ2_XS: qw
// required; IQ2_S: qw may be nil), qw one importance per value of src.
func quantizeIQ2(t TensorType, dst []byte, src, qw []float32) {
	var q iq2Quantizer
	block := q.blockS
	switch t {
	case TypeIQ2_XXS:
		block = q.blockXXS
	case TypeIQ2_XS:
		block = q.blockXS
	}
	eachBlock(t, dst, src, qw, block)
}

// needsImportance reports whether ggml quantizes t only with importances
// (ggml_quantize_requires_imatrix).
func needsImportance(t TensorType) bool {
	return t == TypeIQ2_XXS || t == TypeIQ2_XS || t == TypeIQ1_S
}
