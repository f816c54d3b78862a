package cpu

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/runtime"
)

// qblock is the number of codes of one packed block: a row's codes go in
// blocks of 32 inputs (original order), 4·bits bytes each.
const qblock = 32

// qweight is a group-quantized weight W [N, K] kept packed
// (runtime.QuantLoader). In the row layout, row n holds its K codes in the
// original input order (act order undone at load), so that a dequantized
// tile of rows is W's rows exactly as runtime.QuantWeight.Dequantize
// writes them; on the AVX2 kernels weights take the panel layout instead
// (panels, panel.go) where N and K are multiples of 8, and, without act
// order, the group size.
//
// Each block of 32 codes of a row takes 4·bits bytes:
//
//	bits 8: byte i = q[i]
//	bits 4: byte i (i < 16) = q[i] | q[i+16]<<4
//	bits 2: byte i (i < 8)  = q[i] | q[i+8]<<2 | q[i+16]<<4 | q[i+24]<<6
//	bits 3: bytes 0..7 the low two bits as bits 2; bytes 8..11 a
//	        little-endian uint32 whose bit i is bit 2 of q[i]
//
// The last block of a row is padded with zero codes.
type qweight struct {
	bits, k, n, groupSize, groups int
	stride                        int    // bytes per row: ceil(K/32)·4·bits
	codes                         []byte // [N, stride]
	// scales [N, G] fp16 bit patterns and zeros [N, G], transposed from
	// the QuantWeight's [G, N] so that a row's are contiguous.
	scales []uint16
	zeros  []uint16
	// group [K] is original input c's group where act order scattered
	// them, nil where input c is in group c/groupSize.
	group []int32
	// panels: codes are in the panel layout (panel.go), which weights
	// take on the AVX2 kernels (usePanels), not the row layout above.
	panels bool
}

// bytes is the storage the weight holds.
func (w *qweight) bytes() int64 {
	return int64(len(w.codes)) + 2*int64(len(w.scales)+len(w.zeros)) + 4*int64(len(w.group))
}

// LoadQuant implements runtime.QuantLoader: every bit width (2, 3, 4, 8),
// group size and act order. The weight multiplies F32 activations only
// (QuantDType): MatMul dequantizes tiles of its rows to fp32 as
// runtime.QuantWeight.Dequantize computes them and multiplies with the
// dense kernels (or, in the panel layout, sums as they do), so that
// products equal those of the dequantized weight bit for bit.
func (b *Backend) LoadQuant(q *runtime.QuantWeight) (runtime.Tensor, error) {
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("cpu: load quantized: %w", err)
	}
	K, N, G := q.K, q.N, q.Groups()
	w := &qweight{bits: q.Bits, k: K, n: N, groupSize: q.GroupSize, groups: G,
		stride: (K + qblock - 1) / qblock * 4 * q.Bits}
	w.scales = make([]uint16, N*G)
	w.zeros = make([]uint16, N*G)
	for g := range G {
		for n := range N {
			w.scales[n*G+g] = q.Scales[g*N+n]
			w.zeros[n*G+g] = q.Zeros[g*N+n]
		}
	}
	// inv[c] is the sequential input that holds original input c.
	var inv []int32
	if q.Perm != nil {
		inv = make([]int32, K)
		w.group = make([]int32, K)
		for k, c := range q.Perm {
			inv[c] = int32(k)
			w.group[c] = int32(k / q.GroupSize)
		}
	}
	if b.usePanels(q) {
		w.panels = true
		b.packPanels(w, q, inv)
		b.resident().Add(w.bytes())
		return &Tensor{shape: []int{N, K}, q: w, dt: runtime.F32, size: w.bytes()}, nil
	}
	// Transpose the codes [K, N] into rows, 64 outputs (a cache line of
	// each code row) at a time.
	const nb = 64
	w.codes = make([]byte, N*w.stride)
	b.parallel((N+nb-1)/nb, func(task int) {
		n0 := task * nb
		n1 := min(n0+nb, N)
		pad := (K + qblock - 1) / qblock * qblock
		rows := make([]uint8, (n1-n0)*pad)
		for c := range K {
			k := c
			if inv != nil {
				k = int(inv[c])
			}
			src := q.Codes[k*N+n0 : k*N+n1]
			for j, v := range src {
				rows[j*pad+c] = v
			}
		}
		for j := range n1 - n0 {
			packRow(w.codes[(n0+j)*w.stride:(n0+j+1)*w.stride], rows[j*pad:(j+1)*pad], w.bits)
		}
	})
	b.resident().Add(w.bytes())
	return &Tensor{shape: []int{N, K}, q: w, dt: runtime.F32, size: w.bytes()}, nil
}

// QuantDType implements runtime.QuantDTyper: quantized weights multiply
// F32 activations (a 16-bit model rounds its dequantized weights to its
// dtype, which a packed weight does not).
func (b *Backend) QuantDType(dt runtime.DType) bool { return dt == runtime.F32 }

// packRow packs codes (a multiple of 32, padded with zeros) into dst in
// qweight's block layout.
func packRow(dst []byte, codes []uint8, bits int) {
	bs := 4 * bits
	for blk := range len(codes) / qblock {
		q := codes[blk*qblock : (blk+1)*qblock]
		d := dst[blk*bs : (blk+1)*bs]
		switch bits {
		case 8:
			copy(d, q)
		case 4:
			for i := range 16 {
				d[i] = q[i] | q[i+16]<<4
			}
		case 2, 3:
			var hi uint32
			for i := range 8 {
				d[i] = q[i]&3 | (q[i+8]&3)<<2 | (q[i+16]&3)<<4 | (q[i+24]&3)<<6
			}
			if bits == 3 {
				for i := range qblock {
					hi |= uint32(q[i]>>2) << i
				}
				binary.LittleEndian.PutUint32(d[8:], hi)
			}
		}
	}
}

// unpackBlock writes the 32 codes of the packed block src into q.
func unpackBlock(q *[qblock]uint8, src []byte, bits int) {
	switch bits {
	case 8:
		copy(q[:], src[:qblock])
	case 4:
		s := src[:16]
		for i, v := range s {
			q[i] = v & 15
			q[i+16] = v >> 4
		}
	case 2, 3:
		s := src[:8]
		for i, v := range s {
			q[i] = v & 3
			q[i+8] = v >> 2 & 3
			q[i+16] = v >> 4 & 3
			q[i+24] = v >> 6
		}
		if bits == 3 {
			hi := binary.LittleEndian.Uint32(src[8:12])
			for i := range qblock {
				q[i] |= uint8(hi>>i&1) << 2
			}
		}
	}
}

// tableLen is the length of rowTable's table for one row: for act order
// at up to 4 bits the products of every group and code (G·2^bits), at 8
// bits the groups' scales and zero points (2·G); 0 without act order.
func (w *qweight) tableLen() int {
	switch {
	case w.group == nil || w.panels:
		return 0
	case w.bits <= 4:
		return w.groups << w.bits
	}
	return 2 * w.groups
}

// rowTable fills dst (tableLen values) for row n: at up to 4 bits
// dst[g<<bits|q] = scale·(q − zero) of group g, the product Dequantize
// computes; at 8 bits the fp32 scales, then the zero points. Without act
// order there is none.
func (w *qweight) rowTable(dst []float32, n int) {
	if w.group == nil || w.panels {
		return
	}
	G := w.groups
	sc, zs := w.scales[n*G:(n+1)*G], w.zeros[n*G:(n+1)*G]
	if w.bits > 4 {
		for g := range G {
			dst[g], dst[G+g] = half.F16ToF32(sc[g]), float32(zs[g])
		}
		return
	}
	codes := 1 << w.bits
	for g := range G {
		s, z := half.F16ToF32(sc[g]), float32(zs[g])
		t := dst[g*codes : (g+1)*codes]
		for q := range t {
			t[q] = s * (float32(q) - z)
		}
	}
}

// dequantRow sets out[c-k0] = W[n, c] for c in [k0, k0+len(out)):
// scale·(code − zero) in fp32, the scale converted exactly from fp16 and
// code − zero an integer, as runtime.QuantWeight.Dequantize and
// gptq.Linear.Dequantize compute it (one rounding, of the product). Runs
// of whole 4-bit blocks go to kern's dequant4 (in one group) and
// dequant4LUT (act order). With act order, table is row n's rowTable.
func (w *qweight) dequantRow(out []float32, n, k0 int, kern *kernels, table []float32) {
	if w.panels {
		w.dequantPanelRow(out, n, k0)
		return
	}
	k1 := k0 + len(out)
	row := w.codes[n*w.stride : (n+1)*w.stride]
	G := w.groups
	sc, zs := w.scales[n*G:(n+1)*G], w.zeros[n*G:(n+1)*G]
	bs := 4 * w.bits
	var q [qblock]uint8
	if w.group != nil && w.bits == 8 {
		// Act order at 8 bits: a block's bytes are its codes.
		kern.dequant8Gather(out, row[k0:k1], w.group[k0:k1], table[:2*G])
		return
	}
	if w.group != nil {
		// Act order: each input's own group.
		for c := k0; c < k1; {
			blk := c / qblock
			if w.bits == 4 && c%qblock == 0 {
				if nb := (k1 - c) / qblock; nb > 0 {
					kern.dequant4LUT(out[c-k0:c-k0+nb*qblock], row[blk*16:], w.group[c:c+nb*qblock], table)
					c += nb * qblock
					continue
				}
			}
			unpackBlock(&q, row[blk*bs:], w.bits)
			end := min((blk+1)*qblock, k1)
			grp := w.group[c:end]
			o := out[c-k0 : end-k0]
			off := c % qblock
			if w.bits <= 4 {
				lut := table[:G<<w.bits]
				for i, g := range grp {
					o[i] = lut[int(g)<<w.bits|int(q[(off+i)%qblock])]
				}
			} else {
				sf, zf := table[:G], table[G:2*G]
				for i, g := range grp {
					o[i] = sf[g] * (float32(q[(off+i)%qblock]) - zf[g])
				}
			}
			c = end
		}
		return
	}
	for c := k0; c < k1; {
		g := c / w.groupSize
		seg := min(k1, (g+1)*w.groupSize)
		s, z := half.F16ToF32(sc[g]), float32(zs[g])
		if w.bits == 8 {
			kern.dequant8(out[c-k0:seg-k0], row[c:seg], s, z)
			c = seg
			continue
		}
		if w.bits == 4 && c%qblock == 0 {
			if nb := (seg - c) / qblock; nb > 0 {
				kern.dequant4(out[c-k0:c-k0+nb*qblock], row[c/qblock*16:], s, z)
				c += nb * qblock
			}
		}
		for c < seg {
			blk := c / qblock
			unpackBlock(&q, row[blk*bs:], w.bits)
			end := min((blk+1)*qblock, seg)
			for ; c < end; c++ {
				out[c-k0] = s * (float32(q[c%qblock]) - z)
			}
		}
	}
}

// dequant4Go sets out[i] = s·(q[i] − z) for the codes of len(out)/32
// 4-bit blocks (code − zero is exact in fp32, so this is Dequantize's
// product).
func dequant4Go(out []float32, src []byte, s, z float32) {
	for b := range len(out) / qblock {
		o := out[b*qblock : (b+1)*qblock]
		for i, v := range src[b*16 : b*16+16] {
			o[i] = s * (float32(v&15) - z)
			o[i+16] = s * (float32(v>>4) - z)
		}
	}
}

// dequant4LUTGo sets out[i] = lut[grp[i]<<4|q[i]] for the codes of
// len(out)/32 4-bit blocks.
func dequant4LUTGo(out []float32, src []byte, grp []int32, lut []float32) {
	for b := range len(out) / qblock {
		o, g := out[b*qblock:(b+1)*qblock], grp[b*qblock:(b+1)*qblock]
		for i, v := range src[b*16 : b*16+16] {
			o[i] = lut[int(g[i])<<4|int(v&15)]
			o[i+16] = lut[int(g[i+16])<<4|int(v>>4)]
		}
	}
}

// tiledWeight is a weight W [N, K] kept in a compact form that
// matmulQuant expands a tile of rows at a time: packed GPTQ codes
// (qweight) or 16-bit values (hweight).
type tiledWeight interface {
	dims() (n, k int)
	// tableLen and rowTable: what a row needs once for all its tiles.
	tableLen() int
	rowTable(dst []float32, n int)
	// dequantRow sets out to W[n, k0:k0+len(out)] in fp32.
	dequantRow(out []float32, n, k0 int, kern *kernels, table []float32)
}

func (w *qweight) dims() (n, k int) { return w.n, w.k }

// dequant8Go sets out[i] = s·(q[i] − z) for 8-bit codes.
func dequant8Go(out []float32, src []byte, s, z float32) {
	src = src[:len(out)]
	for i, v := range src {
		out[i] = s * (float32(v) - z)
	}
}

// dequant8GatherGo sets out[i] = scale·(q[i] − zero) of input i's group
// grp[i], sz the row's G scales then G zero points.
func dequant8GatherGo(out []float32, src []byte, grp []int32, sz []float32) {
	G := len(sz) / 2
	src, grp = src[:len(out)], grp[:len(out)]
	for i, v := range src {
		g := int(grp[i])
		out[i] = sz[g] * (float32(v) - sz[G+g])
	}
}

// qScratch holds the dequantized tiles of MatMul's quantized weights
// (*[]float32), one a task.
var qScratch sync.Pool

// qScratchOf is a scratch of at least n floats from qScratch (given back
// with qScratch.Put).
func qScratchOf(n int) *[]float32 {
	sp, _ := qScratch.Get().(*[]float32)
	if sp == nil || cap(*sp) < n {
		buf := make([]float32, n)
		sp = &buf
	}
	return sp
}

// quantTile bounds: a task dequantizes qnb rows of W (qnbDecode for up to
// 3 rows of x, so that every thread has work) in slices of kc inputs and
// multiplies them by up to qmb rows of x. qnb·kc fp32 (128 KiB) stays in
// L2 while the x rows stream past it; qmb, a multiple of 3 (the rows of
// dot3x4), amortizes the dequantization over that many rows.
const (
	qnb       = 32
	qnbDecode = 4
	qmb       = 192
)

// matmulQuant sets c[m,n] = a[m,k] · wᵀ with w quantized: the same
// kernels, the same K slices (kc) and the same grouping of rows (triples
// of x's rows, quads of w's, singles after) as matmul, over fp32 tiles of
// w dequantized as Dequantize writes them, so that every output element is
// the same sum of the same products in the same order.
func (b *Backend) matmulQuant(c, a []float32, m int, w tiledWeight) {
	n, k := w.dims()
	if m == 0 || n == 0 {
		return
	}
	nb := qnb
	if m <= 3 {
		nb = qnbDecode
	}
	mt := (m + qmb - 1) / qmb
	nt := (n + nb - 1) / nb
	kern := b.kern
	b.parallel(mt*nt, func(task int) {
		i0 := (task % mt) * qmb
		j0 := (task / mt) * nb
		i1 := min(i0+qmb, m)
		j1 := min(j0+nb, n)
		// The tile, then act order's row tables, made once for all K
		// slices.
		tl := w.tableLen()
		need := qnb*kc + qnb*tl
		sp := qScratchOf(need)
		defer qScratch.Put(sp)
		tile, tables := (*sp)[:qnb*kc], (*sp)[qnb*kc:need]
		for j := j0; j < j1; j++ {
			w.rowTable(tables[(j-j0)*tl:(j-j0+1)*tl], j)
		}
		var acc12 [12]float32
		var acc4 [4]float32
		for k0 := 0; k0 < k; k0 += kc {
			kk := min(kc, k-k0)
			for j := j0; j < j1; j++ {
				w.dequantRow(tile[(j-j0)*kk:(j-j0+1)*kk], j, k0, &kern, tables[(j-j0)*tl:(j-j0+1)*tl])
			}
			blockProduct(&kern, c, n, a, k, i0, i1, k0, kk, tile, kk, j0, j0, j1, k0 == 0, &acc12, &acc4)
		}
	})
}

var (
	_ runtime.QuantLoader = (*Backend)(nil)
	_ runtime.QuantDTyper = (*Backend)(nil)
)
