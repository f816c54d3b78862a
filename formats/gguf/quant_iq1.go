package gguf

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/gptqtool/gptqtool/formats/half"
)

// Block sizes in bytes of the 1-bit IQ types (ggml-common.h block_iq1_s,
// block_iq1_m).
const (
	// BlockBytesIQ1_S is sizeof(block_iq1_s): fp16 d, 32 bytes of grid
	// indices' low bits, 8 uint16 of their high bits, scales and shifts.
	BlockBytesIQ1_S = 2 + QK_K/8 + QK_K/16
	// BlockBytesIQ1_M is sizeof(block_iq1_m): 32 bytes of grid indices'
	// low bits, 16 of their high bits and shifts, 8 of scales (the fp16
	// super-block scale spread over their top bits).
	BlockBytesIQ1_M = QK_K/8 + QK_K/16 + QK_K/32
)

// The IQ1 types code each group of 8 values as a point of iq1s_grid
// (quant_iq1_grid.go: 8 values in −1, 0, 1), shifted by ±δ (δ = 1/8,
// ggml's IQ1S_DELTA), scaled per sub-block. Layouts (ggml-common.h), 256
// values a block:
//
//	IQ1_S, 50 bytes: fp16 d, qs[32] (the low 8 bits of each 8 values'
//	    11-bit grid index), then per 32 values (sub-block j) a
//	    little-endian uint16 h: bits 3l .. 3l+2 the high bits of group l's
//	    index, bits 12-14 the scale s, bit 15 the shift's sign;
//	    x = d·(2s + 1)·(grid ± δ)
//	IQ1_M, 56 bytes: qs[32] as IQ1_S's; qh[16], one per 16 values: bits
//	    0-2 and 4-6 the high bits of its two groups' indices, bits 3 and 7
//	    their shifts' signs; scales: 4 little-endian uint16 holding 3-bit
//	    scales s, one per 16 values (sub-block j at bits 3(j%4) of the
//	    uint16 j/4), and in their top 4 bits the fp16 d (bits 0-3 of d in
//	    the first's, …); x = d·(2s + 1)·(grid ± δ)
const (
	iq1sQH       = 2 + QK_K/8
	iq1mQH       = QK_K / 8
	iq1mScales   = QK_K/8 + QK_K/16
	iq1Delta     = 0.125
	groupEpsIQ1  = 1e-12 // GROUP_MAX_EPS_IQ1_S
	groupEpsIQ1M = 1e-7  // GROUP_MAX_EPS_IQ1_M
)

// putIQ1 decodes 8 values into y: grid values g (int8 byte j that of value
// j) plus delta, times dl (ggml's y[j] = dl·(grid[j] + delta)).
func putIQ1(y []float32, g uint64, delta, dl float32) {
	y = y[:8]
	for j := range y {
		y[j] = dl * (float32(int8(g>>(8*j))) + delta)
	}
}

// iq1Shift is +δ, or −δ where neg is set.
func iq1Shift(neg bool) float32 {
	if neg {
		return -iq1Delta
	}
	return iq1Delta
}

// DequantizeIQ1_S expands IQ1_S blocks (ggml dequantize_row_iq1_s; layout
// above). It panics if the lengths do not match.
func DequantizeIQ1_S(dst []float32, src []byte) {
	if len(dst)%QK_K != 0 || len(src) != len(dst)/QK_K*BlockBytesIQ1_S {
		panic(fmt.Sprintf("gguf: DequantizeIQ1_S: %d bytes into %d values", len(src), len(dst)))
	}
	for b := range len(dst) / QK_K {
		blk := src[b*BlockBytesIQ1_S : (b+1)*BlockBytesIQ1_S]
		y := dst[b*QK_K : (b+1)*QK_K]
		d := half.F16ToF32(binary.LittleEndian.Uint16(blk))
		for j := range QK_K / 32 {
			h := binary.LittleEndian.Uint16(blk[iq1sQH+2*j:])
			dl := d * float32(2*int(h>>12&7)+1)
			delta := iq1Shift(h&0x8000 != 0)
			for l := range 4 {
				idx := int(blk[2+4*j+l]) | int(h>>(3*l)&7)<<8
				putIQ1(y[32*j+8*l:], iq1sGrid[idx], delta, dl)
			}
		}
	}
}

// iq1mScale returns the fp16 bits of an IQ1_M block's d, spread over the
// top 4 bits of its four scale words.
func iq1mScale(blk []byte) uint16 {
	var sc [4]uint16
	for k := range sc {
		sc[k] = binary.LittleEndian.Uint16(blk[iq1mScales+2*k:])
	}
	return sc[0]>>12 | sc[1]>>8&0x00f0 | sc[2]>>4&0x0f00 | sc[3]&0xf000
}

// DequantizeIQ1_M expands IQ1_M blocks (ggml dequantize_row_iq1_m; layout
// above). It panics if the lengths do not match.
func DequantizeIQ1_M(dst []float32, src []byte) {
	if len(dst)%QK_K != 0 || len(src) != len(dst)/QK_K*BlockBytesIQ1_M {
		panic(fmt.Sprintf("gguf: DequantizeIQ1_M: %d bytes into %d values", len(src), len(dst)))
	}
	for b := range len(dst) / QK_K {
		blk := src[b*BlockBytesIQ1_M : (b+1)*BlockBytesIQ1_M]
		y := dst[b*QK_K : (b+1)*QK_K]
		d := half.F16ToF32(iq1mScale(blk))
		for j := range QK_K / 16 {
			sc := binary.LittleEndian.Uint16(blk[iq1mScales+2*(j/4):])
			dl := d * float32(2*int(sc>>(3*(j%4))&7)+1)
			qh := blk[iq1mQH+j]
			for k := range 2 {
				idx := int(blk[2*j+k]) | int(qh>>(4*k)&7)<<8
				putIQ1(y[16*j+8*k:], iq1sGrid[idx], iq1Shift(qh>>(4*k+3)&1 != 0), dl)
			}
		}
	}
}

// iq1Quantizer holds the scratch of ggml's quantize_row_iq1_*_impl for one
// super-block.
type iq1Quantizer struct {
	weight [QK_K]float32
	L      [32]uint8
	// order is a sub-block's positions sorted by value (stably: glibc's
	// qsort, a merge sort, keeps ties in order), sumx and sumw IQ1_S's
	// prefix sums of w·x and w in that order.
	order      [32]int
	sumx, sumw [33]float32
	// IQ1_M's per sorted position terms w·q·x and w·q² for each level q
	// (x_p, x_m) and sign combination k (quantize_row_iq1_m_impl's sums).
	tqx, tq2 [16][3][4]float32
	scales   [QK_K / 16]float32
	shifts   [QK_K / 16]int8
	index    [4]int
	bad      bool // as iq2Quantizer's
}

// The levels of IQ1's shifted grid values: −1, 0, 1 plus or minus δ.
var (
	iq1XP = [3]float32{-1 + iq1Delta, iq1Delta, 1 + iq1Delta}
	iq1XM = [3]float32{-1 - iq1Delta, -iq1Delta, 1 - iq1Delta}
)

// sortSub sets q.order[:n] to the positions of x[:n] by ascending value,
// ties in position order.
func (q *iq1Quantizer) sortSub(x []float32, n int) {
	o := q.order[:n]
	for i := range o {
		o[i] = i
	}
	for i := 1; i < n; i++ {
		for j := i; j > 0 && x[o[j]] < x[o[j-1]]; j-- {
			o[j], o[j-1] = o[j-1], o[j]
		}
	}
}

// absMax returns the largest |x| as ggml's MAX(max, fabsf(x)) loop finds
// it.
func absMax(x []float32) float32 {
	m := abs32(x[0])
	for _, v := range x[1:] {
		m = max32(m, abs32(v))
	}
	return m
}

// neighbour returns the point among those listed for code u (off the
// grid) of least Σ w·(scale·xx[l] − x)², its levels then in L (ggml
// iq1_find_best_neighbour2).
func (q *iq1Quantizer) neighbour(g *iq2Lattice, u int, x, w []float32, scale float32, xx *[3]float32, L []uint8) int {
	xv, wv := (*[8]float32)(x), (*[8]float32)(w)
	var sq [4]float32
	for l := range 3 {
		sq[l] = scale * xx[l]
	}
	nb := g.neighbours[-g.index[u]-1:]
	best, point := float32(math.MaxFloat32), -1
	for _, k := range nb[1 : 1+int(nb[0])] {
		// Σ w·(scale·xx[l] − x)², in order (unrolled: the search spends
		// much of the quantization here).
		lv := &g.levels[k]
		d := sq[lv[0]&3] - xv[0]
		d2 := float32(wv[0]*d) * d
		d = sq[lv[1]&3] - xv[1]
		d2 += float32(wv[1]*d) * d
		d = sq[lv[2]&3] - xv[2]
		d2 += float32(wv[2]*d) * d
		d = sq[lv[3]&3] - xv[3]
		d2 += float32(wv[3]*d) * d
		d = sq[lv[4]&3] - xv[4]
		d2 += float32(wv[4]*d) * d
		d = sq[lv[5]&3] - xv[5]
		d2 += float32(wv[5]*d) * d
		d = sq[lv[6]&3] - xv[6]
		d2 += float32(wv[6]*d) * d
		d = sq[lv[7]&3] - xv[7]
		d2 += float32(wv[7]*d) * d
		if d2 < best {
			best, point = d2, int(k)
		}
	}
	if point < 0 {
		// ggml then searches the whole grid with an index bug (and
		// aborts if that fails too); only non-finite weights get here.
		q.bad = true
		point = int(nb[1])
	}
	copy(L[:8], g.levels[point][:])
	return point
}

// gridPoints finds the grid point of each group of 8 levels in L[:n] at
// scale, moving a group off the grid to its best neighbour (xxOf(k): the
// shifted levels of group k), and reports whether all were on it.
func (q *iq1Quantizer) gridPoints(g *iq2Lattice, x, w []float32, n int, scale float32, xxOf func(k int) *[3]float32) bool {
	all := true
	for k := range n / 8 {
		u := 0
		for i, l := range q.L[8*k : 8*k+8] {
			u |= int(l) << (2 * i)
		}
		p := int(g.index[u])
		if p < 0 {
			all = false
			p = q.neighbour(g, u, x[8*k:], w[8*k:], scale, xxOf(k), q.L[8*k:])
		}
		q.index[k] = p
	}
	return all
}

// refit returns the weighted least-squares scale of the n values x at
// their groups' points (q.index), or scale where that is not positive.
func (q *iq1Quantizer) refit(g *iq2Lattice, x, w []float32, n int, scale float32, xxOf func(k int) *[3]float32) float32 {
	var sumQX, sumQ2 float32
	for k := range n / 8 {
		xx := xxOf(k)
		for j, l := range g.levels[q.index[k]] {
			wq := float32(w[8*k+j] * xx[l])
			sumQX += float32(wq * x[8*k+j])
			sumQ2 += float32(wq * xx[l])
		}
	}
	if sumQX > 0 && sumQ2 > 0 {
		return sumQX / sumQ2
	}
	return scale
}

// setLevels gives the sorted positions below i1 level 0, those below i2
// level 1, the rest level 2 (L indexed by position).
func (q *iq1Quantizer) setLevels(n, i1, i2 int) {
	for j, i := range q.order[:n] {
		switch {
		case j < i1:
			q.L[i] = 0
		case j < i2:
			q.L[i] = 1
		default:
			q.L[i] = 2
		}
	}
}

// blockS quantizes the 256 values x into the IQ1_S block y with the
// column importances qw (ggml quantize_row_iq1_s_impl): each sub-block of
// 32 takes the levels −1, 0, 1 (plus δ or minus δ) of least weighted
// error, found exhaustively over the two boundaries splitting its values
// sorted; groups of 8 off the grid move to their best neighbour and the
// scale is refitted; d = max scale/15, each sub-block's scale in 3 bits,
// d·1.125 stored as fp16.
func (q *iq1Quantizer) blockS(y []byte, x, qw []float32) {
	g := iq2LatticeOf(TypeIQ1_S)
	q.bad = false
	clear(y)
	sigma2 := float32(2*sumSquares(x)) / QK_K
	var maxScale float32
	for ib := range QK_K / 32 {
		xb, w := x[32*ib:32*ib+32], q.weight[32*ib:32*ib+32]
		importanceWeights(w, qw[32*ib:32*ib+32], xb, sigma2)
		mx := absMax(xb)
		q.scales[ib], q.shifts[ib] = 0, 1
		if mx < groupEpsIQ1 {
			continue
		}
		q.sortSub(xb, 32)
		for j, i := range q.order[:32] {
			q.sumx[j+1] = q.sumx[j] + float32(w[i]*xb[i])
			q.sumw[j+1] = q.sumw[j] + w[i]
		}
		bestScore, scale := float32(-math.MaxFloat32), mx
		besti1, besti2, bestShift := -1, -1, 0
		sx, sw := &q.sumx, &q.sumw
		xp, xm := &iq1XP, &iq1XM
		// Σ w·q·x and Σ w·q² for levels 0 below the sorted position i1,
		// 1 below i2, 2 from there, as ggml's expressions round them
		// (((a·x0) + (b·x1)) + c·x2, the squares as ((a·x0)·x0)).
		for i1 := 0; i1 <= 32; i1++ {
			ax, aw := sx[i1]-sx[0], sw[i1]-sw[0]
			axp, axm := float32(ax*xp[0]), float32(ax*xm[0])
			awp, awm := float32(float32(aw*xp[0])*xp[0]), float32(float32(aw*xm[0])*xm[0])
			for i2 := i1; i2 <= 32; i2++ {
				bx, bw := sx[i2]-sx[i1], sw[i2]-sw[i1]
				cx, cw := sx[32]-sx[i2], sw[32]-sw[i2]
				sumQX := float32(axp+float32(bx*xp[1])) + float32(cx*xp[2])
				sumQ2 := float32(awp+float32(float32(bw*xp[1])*xp[1])) + float32(float32(cw*xp[2])*xp[2])
				if sumQ2 > 0 && float32(sumQX*sumQX) > float32(bestScore*sumQ2) {
					scale = sumQX / sumQ2
					bestScore = scale * sumQX
					besti1, besti2, bestShift = i1, i2, 1
				}
				sumQX = float32(axm+float32(bx*xm[1])) + float32(cx*xm[2])
				sumQ2 = float32(awm+float32(float32(bw*xm[1])*xm[1])) + float32(float32(cw*xm[2])*xm[2])
				if sumQ2 > 0 && float32(sumQX*sumQX) > float32(bestScore*sumQ2) {
					scale = sumQX / sumQ2
					bestScore = scale * sumQX
					besti1, besti2, bestShift = i1, i2, -1
				}
			}
		}
		if besti1 < 0 || besti2 < 0 || bestShift == 0 {
			continue
		}
		q.setLevels(32, besti1, besti2)
		if scale < 0 {
			for j := range q.L[:32] {
				q.L[j] = 2 - q.L[j]
			}
			scale, bestShift = -scale, -bestShift
		}
		xx := &iq1XP
		if bestShift == -1 {
			xx = &iq1XM
		}
		xxOf := func(int) *[3]float32 { return xx }
		if !q.gridPoints(g, xb, w, 32, scale, xxOf) {
			scale = q.refit(g, xb, w, 32, scale, xxOf)
		}
		var h uint16
		for k := range 4 {
			y[2+4*ib+k] = uint8(q.index[k])
			h |= uint16(q.index[k]>>8) << (3 * k)
		}
		binary.LittleEndian.PutUint16(y[iq1sQH+2*ib:], h)
		q.scales[ib], q.shifts[ib] = scale, int8(bestShift)
		maxScale = max32(maxScale, scale)
	}
	if maxScale == 0 {
		q.markBadIQ1(y, TypeIQ1_S)
		return
	}
	d := maxScale / 15
	binary.LittleEndian.PutUint16(y, half.F32ToF16(d*1.125))
	id := 1 / d
	for ib := range QK_K / 32 {
		l := clampInt(nearestInt(0.5*(float32(id*q.scales[ib])-1)), 0, 7)
		if q.shifts[ib] == -1 {
			l |= 8
		}
		h := binary.LittleEndian.Uint16(y[iq1sQH+2*ib:])
		binary.LittleEndian.PutUint16(y[iq1sQH+2*ib:], h|uint16(l)<<12)
	}
	q.markBadIQ1(y, TypeIQ1_S)
}

// iq1mXX returns the shifted levels of group k (0, 1) of an IQ1_M
// sub-block with sign combination c: 0 both +δ, 1 the second −δ, 2 the
// first −δ, 3 both −δ.
func iq1mXX(c, k int) *[3]float32 {
	if (k == 0 && c >= 2) || (k == 1 && c%2 == 1) {
		return &iq1XM
	}
	return &iq1XP
}

// blockM quantizes the 256 values x into the IQ1_M block y, with the
// column importances qw or, for nil qw, each value weighing x² (ggml
// quantize_row_iq1_m_impl): as IQ1_S's for sub-blocks of 16, each of its
// two groups of 8 with its own sign of δ; the 3-bit scales from d = max
// scale/15, then d refitted over the whole block and d·1.1125 stored as
// fp16.
func (q *iq1Quantizer) blockM(y []byte, x, qw []float32) {
	g := iq2LatticeOf(TypeIQ1_M)
	q.bad = false
	clear(y)
	sigma2 := float32(2*sumSquares(x)) / QK_K
	if qw != nil {
		importanceWeights(q.weight[:], qw, x, sigma2)
	} else {
		for i, v := range x {
			q.weight[i] = v * v
		}
	}
	var maxScale float32
	for ib := range QK_K / 16 {
		xb, w := x[16*ib:16*ib+16], q.weight[16*ib:16*ib+16]
		mx := absMax(xb)
		q.scales[ib], q.shifts[ib] = 0, 0
		if mx < groupEpsIQ1M {
			continue
		}
		q.sortSub(xb, 16)
		// Each sorted position's terms for each level and sign
		// combination: the first 8 values take x_p in combinations 0
		// and 1, the last 8 in 0 and 2.
		for j, i := range q.order[:16] {
			for l := range 3 {
				for c := range 4 {
					xx := iq1mXX(c, i/8)
					wq := float32(w[i] * xx[l])
					q.tqx[j][l][c] = float32(wq * xb[i])
					q.tq2[j][l][c] = float32(wq * xx[l])
				}
			}
		}
		bestScore, scale := float32(-math.MaxFloat32), mx
		besti1, besti2, bestK := -1, -1, -1
		// The sums run over the sorted positions in order, level 0 below
		// i1, 1 below i2, 2 above, as ggml adds them: the first two
		// segments' sums are prefixes shared by the (i1, i2) that follow.
		var s1x, s1q [4]float32
		for i1 := 0; i1 <= 16; i1++ {
			s2x, s2q := s1x, s1q
			for i2 := i1; i2 <= 16; i2++ {
				// Eight independent sums (in scalars, which stay in
				// registers).
				x0, x1, x2, x3 := s2x[0], s2x[1], s2x[2], s2x[3]
				q0, q1, q2, q3 := s2q[0], s2q[1], s2q[2], s2q[3]
				for j := i2; j < 16; j++ {
					tx, t2 := &q.tqx[j][2], &q.tq2[j][2]
					x0, x1, x2, x3 = x0+tx[0], x1+tx[1], x2+tx[2], x3+tx[3]
					q0, q1, q2, q3 = q0+t2[0], q1+t2[1], q2+t2[2], q3+t2[3]
				}
				sx, sq := [4]float32{x0, x1, x2, x3}, [4]float32{q0, q1, q2, q3}
				for c := range 4 {
					if sq[c] > 0 && float32(sx[c]*sx[c]) > float32(bestScore*sq[c]) {
						scale = sx[c] / sq[c]
						bestScore = scale * sx[c]
						besti1, besti2, bestK = i1, i2, c
					}
				}
				if i2 < 16 {
					for c := range 4 {
						s2x[c] += q.tqx[i2][1][c]
						s2q[c] += q.tq2[i2][1][c]
					}
				}
			}
			if i1 < 16 {
				for c := range 4 {
					s1x[c] += q.tqx[i1][0][c]
					s1q[c] += q.tq2[i1][0][c]
				}
			}
		}
		if besti1 < 0 || besti2 < 0 || bestK < 0 {
			continue
		}
		q.setLevels(16, besti1, besti2)
		if scale < 0 {
			for j := range q.L[:16] {
				q.L[j] = 2 - q.L[j]
			}
			scale, bestK = -scale, 3-bestK
		}
		xxOf := func(k int) *[3]float32 { return iq1mXX(bestK, k) }
		if !q.gridPoints(g, xb, w, 16, scale, xxOf) {
			scale = q.refit(g, xb, w, 16, scale, xxOf)
		}
		y[2*ib], y[2*ib+1] = uint8(q.index[0]), uint8(q.index[1])
		y[iq1mQH+ib] = uint8(q.index[0]>>8) | uint8(q.index[1]>>8)<<4
		q.scales[ib], q.shifts[ib] = scale, int8(bestK)
		maxScale = max32(maxScale, scale)
	}
	if maxScale == 0 {
		q.markBadIQ1(y, TypeIQ1_M)
		return
	}
	d := maxScale / 15
	id := 1 / d
	var sc [4]uint16
	var sumQX, sumQ2 float32
	for ib := range QK_K / 16 {
		l := clampInt(nearestInt(0.5*(float32(id*q.scales[ib])-1)), 0, 7)
		sc[ib/4] |= uint16(l) << (3 * (ib % 4))
		y[iq1mQH+ib] |= [4]uint8{0x00, 0x80, 0x08, 0x88}[q.shifts[ib]]
		xb, w := x[16*ib:16*ib+16], q.weight[16*ib:16*ib+16]
		qh := int(y[iq1mQH+ib])
		for k := range 2 {
			xx := iq1mXX(int(q.shifts[ib]), k)
			p := int(y[2*ib+k]) + (qh<<(8-4*k))&0x700
			for j, lv := range g.levels[p] {
				v := xx[lv] * float32(2*l+1)
				wq := float32(w[8*k+j] * v)
				sumQX += float32(wq * xb[8*k+j])
				sumQ2 += float32(wq * v)
			}
		}
	}
	if sumQ2 > 0 {
		d = sumQX / sumQ2
	}
	s := half.F32ToF16(float32(d * 1.1125))
	sc[0] |= (s & 0x000f) << 12
	sc[1] |= (s & 0x00f0) << 8
	sc[2] |= (s & 0x0f00) << 4
	sc[3] |= s & 0xf000
	for k, v := range sc {
		binary.LittleEndian.PutUint16(y[iq1mScales+2*k:], v)
	}
	q.markBadIQ1(y, TypeIQ1_M)
}

// markBadIQ1 gives a block ggml would have aborted on a NaN scale
// (iq2Quantizer.bad).
func (q *iq1Quantizer) markBadIQ1(y []byte, t TensorType) {
	if !q.bad {
		return
	}
	if t == TypeIQ1_S {
		binary.LittleEndian.PutUint16(y, 0x7e00)
		return
	}
	for k := range 4 { // nibble k of the fp16 NaN 0x7e00 in the top of scale word k
		v := binary.LittleEndian.Uint16(y[iq1mScales+2*k:])&0x0fff | (0x7e00>>(4*k)&0xf)<<12
		binary.LittleEndian.PutUint16(y[iq1mScales+2*k:], v)
	}
}

// QuantizeIQ1_M quantizes src (a multiple of 256 values) into IQ1_M blocks
// in dst (56 bytes per 256 values; layout above), as llama-quantize does
// without an importance matrix (ggml quantize_iq1_m with no weights: each
// value weighs x²; with importances, EncodeWeighted, qw·sqrt(σ² + x²), σ²
// twice the block's mean square):
//
//  1. Each sub-block of 16 takes the levels −1, 0, 1 of least weighted
//     error, shifted by +δ or −δ (δ = 1/8) for each group of 8, searched
//     exhaustively over the two boundaries splitting its values sorted.
//  2. A group of 8 whose levels are not a point of iq1s_grid takes its
//     nearest point, and the sub-block's scale is refitted.
//  3. Each sub-block's scale s = round((scale/d − 1)/2) in 3 bits for d =
//     max scale/15; d is refitted over the block and d·1.1125 stored as
//     fp16.
//
// A sub-block whose largest magnitude is below 1e-7 keeps scale 0. It
// panics if the lengths do not match.
func QuantizeIQ1_M(dst []byte, src []float32) {
	quantizeIQ1(TypeIQ1_M, dst, src, nil)
}

// quantizeIQ1 quantizes src into blocks of t (IQ1_S: qw required; IQ1_M:
// qw may be nil), qw one importance per value of src.
func quantizeIQ1(t TensorType, dst []byte, src, qw []float32) {
	var q iq1Quantizer
	block := q.blockM
	if t == TypeIQ1_S {
		block = q.blockS
	}
	eachBlock(t, dst, src, qw, block)
}
