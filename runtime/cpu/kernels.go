package cpu

import "github.com/gptqtool/gptqtool/formats/half"

// kernels are the inner loops of MatMul and Attention. Every
// implementation computes the same sums; the order of additions inside a
// sum may differ between implementations (8-wide partial sums in the
// assembly), never between calls of one implementation.
type kernels struct {
	name string
	// dot3x4 sets c[4*i+j] = Σ_{p<k} a[i*lda+p] * b[j*ldb+p] for i<3, j<4.
	dot3x4 func(k int, a []float32, lda int, b []float32, ldb int, c *[12]float32)
	// dot1x4 sets c[j] = Σ_{p<k} a[p] * b[j*ldb+p] for j<4.
	dot1x4 func(k int, a []float32, b []float32, ldb int, c *[4]float32)
	// axpy sets y[p] += alpha * x[p] for p < len(y).
	axpy func(alpha float32, x, y []float32)
	// dequant4 sets out[32*b+i] = s*(float32(q)-z) for the codes q of
	// len(out)/32 consecutive 4-bit blocks of src (qweight's layout; every
	// implementation computes the same values).
	dequant4 func(out []float32, src []byte, s, z float32)
	// dequant4LUT sets out[i] = lut[grp[i]<<4|q[i]] for the codes q of
	// len(out)/32 consecutive 4-bit blocks of src: act order's inputs, each
	// of its own group, whose products lut tables (qweight.rowTable).
	dequant4LUT func(out []float32, src []byte, grp []int32, lut []float32)
	// dequant8 sets out[i] = s*(float32(src[i])-z) for 8-bit codes.
	dequant8 func(out []float32, src []byte, s, z float32)
	// dequant8Gather sets out[i] = sz[g]*(float32(src[i])-sz[G+g]), g =
	// grp[i], for 8-bit codes of act order: sz holds the row's G scales,
	// then its G zero points (qweight.rowTable).
	dequant8Gather func(out []float32, src []byte, grp []int32, sz []float32)
	// bf16 and f16 set out[i] to the value of the i-th little-endian
	// BF16 or F16 of src (exact conversions).
	bf16, f16 func(out []float32, src []byte)
	// panelDot and panelTile read weights in qweight's panel layout (8
	// rows an entry; tbl a panel's panelTable), nchunk chunks of 8 inputs
	// from codes and x at the first chunk's input c0, skip inputs passed
	// over after each chunk. Input c0+i is in group grp[i] (act order:
	// grp at c0), or, grp nil, in group (c0+i)/gs, gs a multiple of 8.
	// panelDot sets acc[8*l+r] = Σ over the chunks' l-th inputs c, in
	// order, of x[c]·W[r, c] (FMA): lane l of the dense dot kernels'
	// accumulators for 8 rows at once. panelTile (skip 0) sets
	// out[r*ldo+c] = W[r, c], the panel's rows in fp32. Both nil where the
	// panel layout is not used (the portable kernels: LoadQuant keeps the
	// row layout).
	panelDot  func(nchunk int, codes []byte, bits int, grp []int32, c0, gs int, tbl, x []float32, skip int, acc *[64]float32)
	panelTile func(nchunk int, codes []byte, bits int, grp []int32, c0, gs int, tbl, out []float32, ldo int)
	// panelDotRows is panelDot for 2 or 3 rows of x at once (row i at
	// x[i*ldx:]; groups as panelDot's) in chunks of 4 inputs (a half of
	// an 8-input chunk; skip as panelDot's): acc[32*i+8*l+r] = Σ over the
	// chunks' l-th inputs c, in order, of x[i*ldx+c]·W[r, c] (FMA), i <
	// rows. Each input's weights are computed once for the rows. nil with
	// panelDot.
	panelDotRows func(rows, nchunk int, codes []byte, bits int, grp []int32, c0, gs int, tbl, x []float32, ldx, skip int, acc *[96]float32)
}

// goKernels are the portable kernels.
var goKernels = kernels{name: "go", dot3x4: dot3x4Go, dot1x4: dot1x4Go, axpy: axpyGo, dequant4: dequant4Go, dequant4LUT: dequant4LUTGo,
	dequant8: dequant8Go, dequant8Gather: dequant8GatherGo, bf16: bf16Go, f16: f16Go}

func bf16Go(out []float32, src []byte) { half.BF16BytesToF32(out, src[:2*len(out)]) }
func f16Go(out []float32, src []byte)  { half.F16BytesToF32(out, src[:2*len(out)]) }

func dot1x4Go(k int, a []float32, b []float32, ldb int, c *[4]float32) {
	a = a[:k]
	b0, b1, b2, b3 := b[:k], b[ldb:ldb+k], b[2*ldb:2*ldb+k], b[3*ldb:3*ldb+k]
	var s0, s1, s2, s3 float32
	for p, av := range a {
		s0 += av * b0[p]
		s1 += av * b1[p]
		s2 += av * b2[p]
		s3 += av * b3[p]
	}
	c[0], c[1], c[2], c[3] = s0, s1, s2, s3
}

func dot3x4Go(k int, a []float32, lda int, b []float32, ldb int, c *[12]float32) {
	var r [4]float32
	for i := range 3 {
		dot1x4Go(k, a[i*lda:], b, ldb, &r)
		copy(c[4*i:4*i+4], r[:])
	}
}

func axpyGo(alpha float32, x, y []float32) {
	x = x[:len(y)]
	for p := range y {
		y[p] += alpha * x[p]
	}
}

// dotGo returns Σ a[p]*b[p] over len(a).
func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s float32
	for p := range a {
		s += a[p] * b[p]
	}
	return s
}
