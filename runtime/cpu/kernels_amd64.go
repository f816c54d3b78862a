package cpu

import (
	"golang.org/x/sys/cpu"

	"github.com/gptqtool/gptqtool/formats/half"
)

// The assembly kernels need k a positive multiple of 8; the wrappers add
// the tail in Go.

//go:noescape
func dot3x4AVX(k int, a *float32, lda int, b *float32, ldb int, c *[12]float32)

//go:noescape
func dot1x4AVX(k int, a *float32, b *float32, ldb int, c *[4]float32)

//go:noescape
func axpyAVX(n int, alpha float32, x *float32, y *float32)

//go:noescape
func dequant4AVX(nblk int, src *byte, out *float32, s, z float32)

//go:noescape
func dequant4LUTAVX(nblk int, src *byte, grp *int32, lut *float32, out *float32)

//go:noescape
func bf16ToF32AVX(n int, src *byte, out *float32)

//go:noescape
func f16ToF32AVX(n int, src *byte, out *float32)

//go:noescape
func dequant8AVX(n int, src *byte, out *float32, s, z float32)

//go:noescape
func dequant8GatherAVX(n int, src *byte, grp *int32, sz *float32, ng int, out *float32)

//go:noescape
func panelDotLoAVX(nchunk int, codes *byte, bits int, shifts *[8]uint32, mask int, grp *int32, tbl *float32, x *float32, skip int, acc *[64]float32, cont int)

//go:noescape
func panelDot8AVX(nchunk int, codes *byte, grp *int32, tbl *float32, x *float32, skip int, acc *[64]float32)

//go:noescape
func panelTileLoAVX(nchunk int, codes *byte, bits int, shifts *[8]uint32, mask int, grp *int32, tbl *float32, out *float32, ldo int)

//go:noescape
func panelTile8AVX(nchunk int, codes *byte, grp *int32, tbl *float32, out *float32, ldo int)

//go:noescape
func panelDotLoSeqAVX(nchunk int, codes *byte, bits int, shifts *[8]uint32, mask int, tbl *float32, left, gs int, x *float32, skip int, acc *[64]float32, cont int)

//go:noescape
func panelDot8SeqAVX(nchunk int, codes *byte, tbl *float32, left, gs int, x *float32, skip int, acc *[64]float32)

//go:noescape
func panelTileLoSeqAVX(nchunk int, codes *byte, bits int, shifts *[8]uint32, mask int, tbl *float32, left, gs int, out *float32, ldo int)

//go:noescape
func panelTile8SeqAVX(nchunk int, codes *byte, tbl *float32, left, gs int, out *float32, ldo int)

var avxKernels = kernels{name: "avx2", dot3x4: dot3x4Asm, dot1x4: dot1x4Asm, axpy: axpyAsm, dequant4: dequant4Asm, dequant4LUT: dequant4LUTAsm,
	dequant8: dequant8Asm, dequant8Gather: dequant8GatherAsm, bf16: bf16Asm, f16: f16Go, panelDot: panelDotAsm, panelTile: panelTileAsm,
	panelDotRows: panelDotRowsAsm}

// panelShifts[bits] are the shifts of a panel entry's 8 codes, r·bits.
var panelShifts = func() (s [5][8]uint32) {
	for bits := 2; bits <= 4; bits++ {
		for r := range 8 {
			s[bits][r] = uint32(r * bits)
		}
	}
	return s
}()

// panelSpan is the number of inputs from the first chunk's to the last
// one's end, and of code bytes read there (an entry of 2 or 3 bytes is
// read as a dword).
func panelSpan(nchunk, bits, skip int) (inputs, bytes int) {
	inputs = (nchunk-1)*(8+skip) + 8
	return inputs, (inputs-1)*bits + max(bits, 4)
}

// lastChunk copies the code entries of the chunk at input c into buf,
// padded for the dword reads of the weight's last entries.
func lastChunk(buf *[8*3 + 4]byte, codes []byte, c, bits int) *byte {
	copy(buf[:], codes[c*bits:(c+8)*bits])
	return &buf[0]
}

// panelGroup returns tbl at the group of input c, c/gs, of a weight
// without act order, and the number of inputs from c to its end.
func panelGroup(tbl []float32, c, gs int) ([]float32, int) {
	g := c / gs
	return tbl[16*g:], (g+1)*gs - c
}

func panelDotAsm(nchunk int, codes []byte, bits int, grp []int32, c0, gs int, tbl, x []float32, skip int, acc *[64]float32) {
	if nchunk <= 0 {
		clear(acc[:])
		return
	}
	in, nb := panelSpan(nchunk, bits, skip)
	_, _ = x[in-1], tbl[15]
	if grp != nil {
		_ = grp[in-1]
	} else {
		_ = tbl[16*((c0+in-1)/gs)+15]
	}
	if bits == 8 {
		_ = codes[nb-1]
		if grp != nil {
			panelDot8AVX(nchunk, &codes[0], &grp[0], &tbl[0], &x[0], skip, acc)
			return
		}
		t, left := panelGroup(tbl, c0, gs)
		panelDot8SeqAVX(nchunk, &codes[0], &t[0], left, gs, &x[0], skip, acc)
		return
	}
	sh, mask := &panelShifts[bits], 1<<bits-1
	// lo runs n chunks from input c (relative to c0), codes at cp.
	lo := func(n, c int, cp *byte, cont int) {
		if grp != nil {
			panelDotLoAVX(n, cp, bits, sh, mask, &grp[c], &tbl[0], &x[c], skip, acc, cont)
			return
		}
		t, left := panelGroup(tbl, c0+c, gs)
		panelDotLoSeqAVX(n, cp, bits, sh, mask, &t[0], left, gs, &x[c], skip, acc, cont)
	}
	if nb <= len(codes) {
		lo(nchunk, 0, &codes[0], 0)
		return
	}
	// The dword read of the weight's last entry would pass its end.
	cont := 0
	if nchunk > 1 {
		lo(nchunk-1, 0, &codes[0], 0)
		cont = 1
	}
	var buf [8*3 + 4]byte
	c := in - 8
	lo(1, c, lastChunk(&buf, codes, c, bits), cont)
}

func panelTileAsm(nchunk int, codes []byte, bits int, grp []int32, c0, gs int, tbl, out []float32, ldo int) {
	if nchunk <= 0 {
		return
	}
	in, nb := panelSpan(nchunk, bits, 0)
	_, _ = tbl[15], out[7*ldo+in-1]
	if grp != nil {
		_ = grp[in-1]
	} else {
		_ = tbl[16*((c0+in-1)/gs)+15]
	}
	if bits == 8 {
		_ = codes[nb-1]
		if grp != nil {
			panelTile8AVX(nchunk, &codes[0], &grp[0], &tbl[0], &out[0], ldo)
			return
		}
		t, left := panelGroup(tbl, c0, gs)
		panelTile8SeqAVX(nchunk, &codes[0], &t[0], left, gs, &out[0], ldo)
		return
	}
	sh, mask := &panelShifts[bits], 1<<bits-1
	lo := func(n, c int, cp *byte) {
		if grp != nil {
			panelTileLoAVX(n, cp, bits, sh, mask, &grp[c], &tbl[0], &out[c], ldo)
			return
		}
		t, left := panelGroup(tbl, c0+c, gs)
		panelTileLoSeqAVX(n, cp, bits, sh, mask, &t[0], left, gs, &out[c], ldo)
	}
	if nb <= len(codes) {
		lo(nchunk, 0, &codes[0])
		return
	}
	if nchunk > 1 {
		lo(nchunk-1, 0, &codes[0])
	}
	var buf [8*3 + 4]byte
	c := in - 8
	lo(1, c, lastChunk(&buf, codes, c, bits))
}

func bestKernels() kernels {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		k := avxKernels
		if cpu.X86.HasF16C {
			k.f16 = f16Asm
		}
		return k
	}
	return goKernels
}

func bf16Asm(out []float32, src []byte) {
	n := len(out)
	n8 := n &^ 7
	if n8 > 0 {
		_ = src[2*n-1]
		bf16ToF32AVX(n8, &src[0], &out[0])
	}
	half.BF16BytesToF32(out[n8:], src[2*n8:2*n])
}

func f16Asm(out []float32, src []byte) {
	n := len(out)
	n8 := n &^ 7
	if n8 > 0 {
		_ = src[2*n-1]
		f16ToF32AVX(n8, &src[0], &out[0])
	}
	half.F16BytesToF32(out[n8:], src[2*n8:2*n])
}

func dot3x4Asm(k int, a []float32, lda int, b []float32, ldb int, c *[12]float32) {
	k8 := k &^ 7
	if k8 == 0 {
		dot3x4Go(k, a, lda, b, ldb, c)
		return
	}
	_ = a[2*lda+k-1]
	_ = b[3*ldb+k-1]
	dot3x4AVX(k8, &a[0], lda, &b[0], ldb, c)
	for p := k8; p < k; p++ {
		for i := range 3 {
			av := a[i*lda+p]
			for j := range 4 {
				c[4*i+j] += av * b[j*ldb+p]
			}
		}
	}
}

func dot1x4Asm(k int, a []float32, b []float32, ldb int, c *[4]float32) {
	k8 := k &^ 7
	if k8 == 0 {
		dot1x4Go(k, a, b, ldb, c)
		return
	}
	_ = a[k-1]
	_ = b[3*ldb+k-1]
	dot1x4AVX(k8, &a[0], &b[0], ldb, c)
	for p := k8; p < k; p++ {
		av := a[p]
		for j := range 4 {
			c[j] += av * b[j*ldb+p]
		}
	}
}

func axpyAsm(alpha float32, x, y []float32) {
	n := len(y)
	n8 := n &^ 7
	if n8 > 0 {
		_ = x[n-1]
		axpyAVX(n8, alpha, &x[0], &y[0])
	}
	for p := n8; p < n; p++ {
		y[p] += alpha * x[p]
	}
}

func dequant4Asm(out []float32, src []byte, s, z float32) {
	nblk := len(out) / qblock
	_ = src[16*nblk-1]
	dequant4AVX(nblk, &src[0], &out[0], s, z)
}

func dequant4LUTAsm(out []float32, src []byte, grp []int32, lut []float32) {
	nblk := len(out) / qblock
	_ = src[16*nblk-1]
	_ = grp[qblock*nblk-1]
	dequant4LUTAVX(nblk, &src[0], &grp[0], &lut[0], &out[0])
}

func dequant8Asm(out []float32, src []byte, s, z float32) {
	n := len(out)
	n8 := n &^ 7
	if n8 > 0 {
		_ = src[n-1]
		dequant8AVX(n8, &src[0], &out[0], s, z)
	}
	dequant8Go(out[n8:], src[n8:n], s, z)
}

func dequant8GatherAsm(out []float32, src []byte, grp []int32, sz []float32) {
	n := len(out)
	n8 := n &^ 7
	if n8 > 0 {
		_ = src[n-1]
		_ = grp[n-1]
		dequant8GatherAVX(n8, &src[0], &grp[0], &sz[0], len(sz)/2, &out[0])
	}
	dequant8GatherGo(out[n8:], src[n8:n], grp[n8:n], sz)
}

//go:noescape
func panelDot3LoSeqAVX(nchunk int, codes *byte, bits int, shifts *[8]uint32, mask int, tbl *float32, left, gs int, x *float32, ldx, skip int, acc *[96]float32, cont int)

//go:noescape
func panelDot38SeqAVX(nchunk int, codes *byte, tbl *float32, left, gs int, x *float32, ldx, skip int, acc *[96]float32)

//go:noescape
func panelDot2LoSeqAVX(nchunk int, codes *byte, bits int, shifts *[8]uint32, mask int, tbl *float32, left, gs int, x *float32, ldx, skip int, acc *[96]float32, cont int)

//go:noescape
func panelDot28SeqAVX(nchunk int, codes *byte, tbl *float32, left, gs int, x *float32, ldx, skip int, acc *[96]float32)

//go:noescape
func panelDot2LoAVX(nchunk int, codes *byte, bits int, shifts *[8]uint32, mask int, grp *int32, tbl *float32, x *float32, ldx, skip int, acc *[96]float32, cont int)

//go:noescape
func panelDot28AVX(nchunk int, codes *byte, grp *int32, tbl *float32, x *float32, ldx, skip int, acc *[96]float32)

//go:noescape
func panelDot3LoAVX(nchunk int, codes *byte, bits int, shifts *[8]uint32, mask int, grp *int32, tbl *float32, x *float32, ldx, skip int, acc *[96]float32, cont int)

//go:noescape
func panelDot38AVX(nchunk int, codes *byte, grp *int32, tbl *float32, x *float32, ldx, skip int, acc *[96]float32)

func panelDotRowsAsm(rows, nchunk int, codes []byte, bits int, grp []int32, c0, gs int, tbl, x []float32, ldx, skip int, acc *[96]float32) {
	if nchunk <= 0 {
		clear(acc[:])
		return
	}
	in := (nchunk-1)*(4+skip) + 4
	nb := (in-1)*bits + max(bits, 4)
	_, _ = x[(rows-1)*ldx+in-1], tbl[15]
	if grp != nil {
		_ = grp[in-1]
	} else {
		_ = tbl[16*((c0+in-1)/gs)+15]
	}
	if bits == 8 {
		_ = codes[nb-1]
		switch {
		case grp != nil && rows == 2:
			panelDot28AVX(nchunk, &codes[0], &grp[0], &tbl[0], &x[0], ldx, skip, acc)
		case grp != nil:
			panelDot38AVX(nchunk, &codes[0], &grp[0], &tbl[0], &x[0], ldx, skip, acc)
		case rows == 2:
			t, left := panelGroup(tbl, c0, gs)
			panelDot28SeqAVX(nchunk, &codes[0], &t[0], left, gs, &x[0], ldx, skip, acc)
		default:
			t, left := panelGroup(tbl, c0, gs)
			panelDot38SeqAVX(nchunk, &codes[0], &t[0], left, gs, &x[0], ldx, skip, acc)
		}
		return
	}
	sh, mask := &panelShifts[bits], 1<<bits-1
	// lo runs n chunks from input c (relative to c0), codes at cp.
	lo := func(n, c int, cp *byte, cont int) {
		switch {
		case grp != nil && rows == 2:
			panelDot2LoAVX(n, cp, bits, sh, mask, &grp[c], &tbl[0], &x[c], ldx, skip, acc, cont)
		case grp != nil:
			panelDot3LoAVX(n, cp, bits, sh, mask, &grp[c], &tbl[0], &x[c], ldx, skip, acc, cont)
		case rows == 2:
			t, left := panelGroup(tbl, c0+c, gs)
			panelDot2LoSeqAVX(n, cp, bits, sh, mask, &t[0], left, gs, &x[c], ldx, skip, acc, cont)
		default:
			t, left := panelGroup(tbl, c0+c, gs)
			panelDot3LoSeqAVX(n, cp, bits, sh, mask, &t[0], left, gs, &x[c], ldx, skip, acc, cont)
		}
	}
	if nb <= len(codes) {
		lo(nchunk, 0, &codes[0], 0)
		return
	}
	// The dword read of the weight's last entry would pass its end.
	cont := 0
	if nchunk > 1 {
		lo(nchunk-1, 0, &codes[0], 0)
		cont = 1
	}
	var buf [8*3 + 4]byte
	c := in - 4
	copy(buf[:], codes[c*bits:])
	lo(1, c, &buf[0], cont)
}
