package cpu

import (
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/runtime"
)

// The panel layout. In the row layout each input c of an act-order
// weight has a group of its own (the checkpoint's g_idx), so that a
// vector of a row's consecutive weights needs a gather of their scales and
// zero points. Turned sideways, a vector holds 8 rows' weights of one
// input, whose group is one for all 8: their scales and zero points are a
// vector load, and act order costs nothing. Without act order the panels
// serve too, where the group size is a multiple of 8: a chunk of 8 inputs
// lies in one group, c/groupSize (nothing stored), whose scales the
// kernels load once for the chunk; and one pass over the codes that
// dequantizes and multiplies beats the row layout's tile of fp32 written
// and read back. The inputs stay in their original order, and the dot
// products are summed in the dense kernels' order (below), so products
// equal the dequantized weight's bit for bit where reordering the inputs
// by group (as the CUDA backend does, and the activation with them) would
// change the order of every sum.
//
// Panel p holds rows 8p..8p+7; its entry for input c is bits bytes at
// (p·K + c)·bits of codes, row r's code at bits r·bits.. of the entry read
// as a little-endian integer (at 8 bits, byte r): bits/8 bytes a weight,
// with no padding.
//
// The order of the sums. dot1x4, which blockProduct runs for one or two
// rows of x, keeps 16 partial sums of an output a slice of kc inputs,
// input p of the slice in sum p%16 (two 8-lane accumulators, alternate
// 8-input chunks), then adds sum l and sum l+8, then lanes l and l+4, then
// pairs, then the pair sums (HSUM). panelDot computes the partial sums for
// 8 outputs at once, a chunk's input l in accumulator l, passing every
// other chunk over (skip 8) for dot1x4's two accumulators; reduce16 adds
// them up as dot1x4 does. dot3x4, which blockProduct runs for a triple of
// rows, keeps 8 partial sums (input p in sum p%8), then HSUM; panelDotRows
// (2 or 3 rows) computes half a chunk's sums, inputs 0–3 or 4–7, for all
// the rows at once, in a call for each half (and each of dot1x4's
// alternate chunks), and matmulPanelRows adds them up as dot1x4 or dot3x4
// does. A slice's sum is stored or added to the output as blockProduct
// puts it.

// panelRows is the most rows of x whose products read the panels
// directly: one with panelDot, 2 or 3 with panelDotRows, which computes
// each input's weights once for the rows; with more, a task expands the
// panels into a tile of rows for the dense kernels (panelTile), whose cost
// the rows share. Measured on 4096×4096 4-bit act-order weights (2 cores,
// AVX2, CPU time an op): 3 rows took 3.8 ms in a pass over the codes a
// row, 2.9–3.1 ms expanded, 2.3–2.4 ms with panelDotRows; 2 rows 2.6–2.7
// ms in a pass a row, 2.9 ms expanded, 2.0–2.1 ms with panelDotRows.
const panelRows = 3

// usePanels reports whether LoadQuant keeps q in the panel layout: on
// kernels that read it, with whole panels and chunks, and chunks in one
// group where the groups are contiguous (no act order).
func (b *Backend) usePanels(q *runtime.QuantWeight) bool {
	return b.kern.panelDot != nil && q.N%8 == 0 && q.K%8 == 0 && (q.Perm != nil || q.GroupSize%8 == 0)
}

// packPanels fills w.codes in the panel layout from q's codes (sequential
// input k = inv[c] holds original input c; inv nil: k = c), 8 panels (a
// cache line of each code row) at a time.
func (b *Backend) packPanels(w *qweight, q *runtime.QuantWeight, inv []int32) {
	K, N, bits := w.k, w.n, w.bits
	w.codes = make([]byte, N/8*K*bits)
	const pb = 8
	b.parallel((N/8+pb-1)/pb, func(task int) {
		p0 := task * pb
		p1 := min(p0+pb, N/8)
		for c := range K {
			k := c
			if inv != nil {
				k = int(inv[c])
			}
			row := q.Codes[k*N : (k+1)*N]
			for p := p0; p < p1; p++ {
				var e uint64
				for r, v := range row[8*p : 8*p+8] {
					e |= uint64(v) << (r * bits)
				}
				d := w.codes[(p*K+c)*bits : (p*K+c+1)*bits]
				for i := range d {
					d[i] = byte(e >> (8 * i))
				}
			}
		}
	})
}

// panelCode returns W[n, c]'s code in the panel layout.
func (w *qweight) panelCode(n, c int) uint8 {
	o := (n/8*w.k + c) * w.bits
	var e uint64
	for i, v := range w.codes[o : o+w.bits] {
		e |= uint64(v) << (8 * i)
	}
	return uint8(e >> (n % 8 * w.bits) & (1<<w.bits - 1))
}

// dequantPanelRow is dequantRow for the panel layout (Download and tests:
// MatMul reads the panels with panelDot and panelTile).
func (w *qweight) dequantPanelRow(out []float32, n, k0 int) {
	G := w.groups
	sc, zs := w.scales[n*G:(n+1)*G], w.zeros[n*G:(n+1)*G]
	for i := range out {
		c := k0 + i
		g := c / w.groupSize
		if w.group != nil {
			g = int(w.group[c])
		}
		out[i] = half.F16ToF32(sc[g]) * (float32(w.panelCode(n, c)) - float32(zs[g]))
	}
}

// panelTable fills tbl [G][16] for panel p: group g's 8 rows' scales in
// fp32, then their zero points.
func (w *qweight) panelTable(tbl []float32, p int) {
	G := w.groups
	for r := range 8 {
		n := 8*p + r
		sc, zs := w.scales[n*G:(n+1)*G], w.zeros[n*G:(n+1)*G]
		for g := range G {
			tbl[16*g+r] = half.F16ToF32(sc[g])
			tbl[16*g+8+r] = float32(zs[g])
		}
	}
}

// groupsFrom is w.group from input c, nil without act order (the kernels
// take input c's group to be c/groupSize).
func (w *qweight) groupsFrom(c int) []int32 {
	if w.group == nil {
		return nil
	}
	return w.group[c:]
}

// reduce16 sets out[r] to row r's sum as dot1x4 adds its two
// accumulators (a, the even chunks', and b; a[8*l+r] is row r's lane l),
// then the lanes as HSUM does.
func reduce16(a, b *[64]float32, out *[8]float32) {
	for r := range 8 {
		var s [8]float32
		for l := range s {
			s[l] = a[8*l+r] + b[8*l+r]
		}
		u0, u1, u2, u3 := s[0]+s[4], s[1]+s[5], s[2]+s[6], s[3]+s[7]
		out[r] = (u0 + u1) + (u2 + u3)
	}
}

// matmulPanel sets c[m,n] = a[m,k] · wᵀ for w in the panel layout, every
// output the same sum in the same order as matmul's with the dequantized
// weight: one row of x reads the panels directly in dot1x4's order, up to
// panelRows in the dense kernels' order for that many rows
// (matmulPanelRows); more expand them a tile of qnb rows at a time and run
// blockProduct over it, as matmulQuant does.
func (b *Backend) matmulPanel(c, a []float32, m int, w *qweight) {
	n, k := w.n, w.k
	if m == 0 {
		return
	}
	kern := b.kern
	tl := 16 * w.groups
	if m > 1 && m <= panelRows {
		b.matmulPanelRows(c, a, m, w)
		return
	}
	if m == 1 {
		b.parallel(n/8, func(p int) {
			sp := qScratchOf(tl)
			defer qScratch.Put(sp)
			tbl := (*sp)[:tl]
			w.panelTable(tbl, p)
			codes := w.codes[p*k*w.bits:]
			var acc, acc2 [64]float32
			var sum [8]float32
			for k0 := 0; k0 < k; k0 += kc {
				nch := min(kc, k-k0) / 8
				for i := range m {
					x := a[i*k+k0 : i*k+k]
					kern.panelDot((nch+1)/2, codes[k0*w.bits:], w.bits, w.groupsFrom(k0), k0, w.groupSize, tbl, x, 8, &acc)
					kern.panelDot(nch/2, codes[(k0+8)*w.bits:], w.bits, w.groupsFrom(k0+8), k0+8, w.groupSize, tbl, x[8:], 8, &acc2)
					reduce16(&acc, &acc2, &sum)
					dst := c[i*n+8*p : i*n+8*p+8]
					if k0 == 0 {
						copy(dst, sum[:])
					} else {
						for r, v := range sum {
							dst[r] += v
						}
					}
				}
			}
		})
		return
	}
	mt := (m + qmb - 1) / qmb
	nt := (n + qnb - 1) / qnb
	b.parallel(mt*nt, func(task int) {
		i0 := (task % mt) * qmb
		j0 := (task / mt) * qnb
		i1 := min(i0+qmb, m)
		j1 := min(j0+qnb, n)
		need := qnb*kc + qnb/8*tl
		sp := qScratchOf(need)
		defer qScratch.Put(sp)
		tile, tables := (*sp)[:qnb*kc], (*sp)[qnb*kc:need]
		for j := j0; j < j1; j += 8 {
			w.panelTable(tables[(j-j0)/8*tl:(j-j0)/8*tl+tl], j/8)
		}
		var acc12 [12]float32
		var acc4 [4]float32
		for k0 := 0; k0 < k; k0 += kc {
			kk := min(kc, k-k0)
			for j := j0; j < j1; j += 8 {
				p := j / 8
				kern.panelTile(kk/8, w.codes[(p*k+k0)*w.bits:], w.bits, w.groupsFrom(k0), k0, w.groupSize, tables[(j-j0)/8*tl:], tile[(j-j0)*kk:], kk)
			}
			blockProduct(&kern, c, n, a, k, i0, i1, k0, kk, tile, kk, j0, j0, j1, k0 == 0, &acc12, &acc4)
		}
	})
}

// matmulPanelRows is matmulPanel for 2 or 3 rows of x: panelDotRows
// computes each input's weights once for the rows, summing in the order
// of the dense kernels for that many rows: dot3x4's for 3 (input p of a
// slice in sum p%8, then HSUM), dot1x4's for 2 (16 sums: even and odd
// chunks apart).
func (b *Backend) matmulPanelRows(c, a []float32, m int, w *qweight) {
	n, k, bits, gs := w.n, w.k, w.bits, w.groupSize
	kern := b.kern
	tl := 16 * w.groups
	x := a[:m*k]
	b.parallel(n/8, func(p int) {
		sp := qScratchOf(tl)
		defer qScratch.Put(sp)
		tbl := (*sp)[:tl]
		w.panelTable(tbl, p)
		codes := w.codes[p*k*bits : (p+1)*k*bits]
		// dot runs nchunk chunks from input c0, skip inputs apart.
		dot := func(nchunk, c0, skip int, acc *[96]float32) {
			if nchunk <= 0 {
				clear(acc[:])
				return
			}
			kern.panelDotRows(m, nchunk, codes[c0*bits:], bits, w.groupsFrom(c0), c0, gs, tbl, x[c0:], k, skip, acc)
		}
		var lo, hi, lo2, hi2 [96]float32
		var s [8]float32
		for k0 := 0; k0 < k; k0 += kc {
			nch := min(kc, k-k0) / 8
			if m == 3 {
				dot(nch, k0, 4, &lo)
				dot(nch, k0+4, 4, &hi)
			} else {
				dot((nch+1)/2, k0, 12, &lo)
				dot((nch+1)/2, k0+4, 12, &hi)
				dot(nch/2, k0+8, 12, &lo2)
				dot(nch/2, k0+12, 12, &hi2)
			}
			for i := range m {
				dst := c[i*n+8*p : i*n+8*p+8]
				for r := range 8 {
					for l := range 4 {
						s[l], s[l+4] = lo[32*i+8*l+r], hi[32*i+8*l+r]
						if m == 2 {
							s[l] += lo2[32*i+8*l+r]
							s[l+4] += hi2[32*i+8*l+r]
						}
					}
					u0, u1, u2, u3 := s[0]+s[4], s[1]+s[5], s[2]+s[6], s[3]+s[7]
					v := (u0 + u1) + (u2 + u3)
					if k0 == 0 {
						dst[r] = v
					} else {
						dst[r] += v
					}
				}
			}
		}
	})
}
