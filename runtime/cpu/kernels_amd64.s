#include "textflag.h"

// HSUM reduces the 8 lanes of Y (X is its low half) into one float32 and
// stores it at off(DI). Clobbers X12.
#define HSUM(Y, X, off) \
	VEXTRACTF128 $1, Y, X12 \
	VADDPS       X12, X, X \
	VHADDPS      X, X, X \
	VHADDPS      X, X, X \
	VMOVSS       X, off(DI)

// func dot3x4AVX(k int, a *float32, lda int, b *float32, ldb int, c *[12]float32)
// c[4*i+j] = sum_{p<k} a[i*lda+p]*b[j*ldb+p]; k a positive multiple of 8.
// Accumulator Y(4*i+j) holds 8 partial sums of c[4*i+j].
TEXT ·dot3x4AVX(SB), NOSPLIT, $0-48
	MOVQ k+0(FP), R11
	SHLQ $2, R11
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R12
	SHLQ $2, R12
	LEAQ (SI)(R12*1), R8
	LEAQ (R8)(R12*1), R9
	MOVQ b+24(FP), BX
	MOVQ ldb+32(FP), R13
	SHLQ $2, R13
	LEAQ (BX)(R13*1), CX
	LEAQ (CX)(R13*1), DX
	LEAQ (DX)(R13*1), R10
	MOVQ c+40(FP), DI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	XORQ AX, AX

loop3x4:
	VMOVUPS     (SI)(AX*1), Y12
	VMOVUPS     (R8)(AX*1), Y13
	VMOVUPS     (R9)(AX*1), Y14
	VMOVUPS     (BX)(AX*1), Y15
	VFMADD231PS Y15, Y12, Y0
	VFMADD231PS Y15, Y13, Y4
	VFMADD231PS Y15, Y14, Y8
	VMOVUPS     (CX)(AX*1), Y15
	VFMADD231PS Y15, Y12, Y1
	VFMADD231PS Y15, Y13, Y5
	VFMADD231PS Y15, Y14, Y9
	VMOVUPS     (DX)(AX*1), Y15
	VFMADD231PS Y15, Y12, Y2
	VFMADD231PS Y15, Y13, Y6
	VFMADD231PS Y15, Y14, Y10
	VMOVUPS     (R10)(AX*1), Y15
	VFMADD231PS Y15, Y12, Y3
	VFMADD231PS Y15, Y13, Y7
	VFMADD231PS Y15, Y14, Y11
	ADDQ        $32, AX
	CMPQ        AX, R11
	JLT         loop3x4

	HSUM(Y0, X0, 0)
	HSUM(Y1, X1, 4)
	HSUM(Y2, X2, 8)
	HSUM(Y3, X3, 12)
	HSUM(Y4, X4, 16)
	HSUM(Y5, X5, 20)
	HSUM(Y6, X6, 24)
	HSUM(Y7, X7, 28)
	HSUM(Y8, X8, 32)
	HSUM(Y9, X9, 36)
	HSUM(Y10, X10, 40)
	HSUM(Y11, X11, 44)
	VZEROUPPER
	RET

// func dot1x4AVX(k int, a *float32, b *float32, ldb int, c *[4]float32)
// c[j] = sum_{p<k} a[p]*b[j*ldb+p]; k a positive multiple of 8.
// Two accumulators per output (Y0-3 even steps, Y4-7 odd) hide FMA latency.
TEXT ·dot1x4AVX(SB), NOSPLIT, $0-40
	MOVQ k+0(FP), R11
	SHLQ $2, R11
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), BX
	MOVQ ldb+24(FP), R13
	SHLQ $2, R13
	LEAQ (BX)(R13*1), CX
	LEAQ (CX)(R13*1), DX
	LEAQ (DX)(R13*1), R10
	MOVQ c+32(FP), DI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ AX, AX
	MOVQ R11, R12
	ANDQ $-64, R12
	JZ   tail1x4

loop1x4:
	VMOVUPS     (SI)(AX*1), Y12
	VMOVUPS     32(SI)(AX*1), Y13
	VFMADD231PS (BX)(AX*1), Y12, Y0
	VFMADD231PS (CX)(AX*1), Y12, Y1
	VFMADD231PS (DX)(AX*1), Y12, Y2
	VFMADD231PS (R10)(AX*1), Y12, Y3
	VFMADD231PS 32(BX)(AX*1), Y13, Y4
	VFMADD231PS 32(CX)(AX*1), Y13, Y5
	VFMADD231PS 32(DX)(AX*1), Y13, Y6
	VFMADD231PS 32(R10)(AX*1), Y13, Y7
	ADDQ        $64, AX
	CMPQ        AX, R12
	JLT         loop1x4

tail1x4:
	CMPQ        AX, R11
	JGE         done1x4
	VMOVUPS     (SI)(AX*1), Y12
	VFMADD231PS (BX)(AX*1), Y12, Y0
	VFMADD231PS (CX)(AX*1), Y12, Y1
	VFMADD231PS (DX)(AX*1), Y12, Y2
	VFMADD231PS (R10)(AX*1), Y12, Y3

done1x4:
	VADDPS Y4, Y0, Y0
	VADDPS Y5, Y1, Y1
	VADDPS Y6, Y2, Y2
	VADDPS Y7, Y3, Y3
	HSUM(Y0, X0, 0)
	HSUM(Y1, X1, 4)
	HSUM(Y2, X2, 8)
	HSUM(Y3, X3, 12)
	VZEROUPPER
	RET

// func axpyAVX(n int, alpha float32, x *float32, y *float32)
// y[p] += alpha*x[p] for p < n; n a positive multiple of 8.
TEXT ·axpyAVX(SB), NOSPLIT, $0-32
	MOVQ         n+0(FP), R11
	SHLQ         $2, R11
	VBROADCASTSS alpha+8(FP), Y0
	MOVQ         x+16(FP), SI
	MOVQ         y+24(FP), DI
	XORQ         AX, AX

loopaxpy:
	VMOVUPS     (DI)(AX*1), Y1
	VFMADD231PS (SI)(AX*1), Y0, Y1
	VMOVUPS     Y1, (DI)(AX*1)
	ADDQ        $32, AX
	CMPQ        AX, R11
	JLT         loopaxpy
	VZEROUPPER
	RET

// func dequant4AVX(nblk int, src *byte, out *float32, s, z float32)
// For nblk blocks of 32 4-bit codes (16 bytes each, byte i = q[i] |
// q[i+16]<<4), out[32*b+i] = s*(float32(q[i]) - z): the subtraction
// exact, the product rounded once, as the Go loop computes it; nblk > 0.
TEXT ·dequant4AVX(SB), NOSPLIT, $0-32
	MOVQ         nblk+0(FP), CX
	MOVQ         src+8(FP), SI
	MOVQ         out+16(FP), DI
	VBROADCASTSS s+24(FP), Y13
	VBROADCASTSS z+28(FP), Y14
	MOVL         $15, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15

loopdq4:
	VPMOVZXBD (SI), Y0
	VPMOVZXBD 8(SI), Y1
	VPAND     Y15, Y0, Y2
	VPSRLD    $4, Y0, Y3
	VPAND     Y15, Y1, Y4
	VPSRLD    $4, Y1, Y5
	VCVTDQ2PS Y2, Y2
	VCVTDQ2PS Y3, Y3
	VCVTDQ2PS Y4, Y4
	VCVTDQ2PS Y5, Y5
	VSUBPS    Y14, Y2, Y2
	VSUBPS    Y14, Y3, Y3
	VSUBPS    Y14, Y4, Y4
	VSUBPS    Y14, Y5, Y5
	VMULPS    Y13, Y2, Y2
	VMULPS    Y13, Y3, Y3
	VMULPS    Y13, Y4, Y4
	VMULPS    Y13, Y5, Y5
	VMOVUPS   Y2, (DI)
	VMOVUPS   Y4, 32(DI)
	VMOVUPS   Y3, 64(DI)
	VMOVUPS   Y5, 96(DI)
	ADDQ      $16, SI
	ADDQ      $128, DI
	DECQ      CX
	JNZ       loopdq4
	VZEROUPPER
	RET

// DQ4LUT gathers 8 values of the table at (grp[off/4..] << 4 | codes in C)
// and stores them at off(DI). Clobbers Y6, Y7, Y8.
#define DQ4LUT(C, off) \
	VMOVDQU     off(R8), Y6 \
	VPSLLD      $4, Y6, Y6 \
	VPOR        C, Y6, Y6 \
	VPCMPEQD    Y7, Y7, Y7 \
	VGATHERDPS  Y7, (BX)(Y6*4), Y8 \
	VMOVUPS     Y8, off(DI)

// func dequant4LUTAVX(nblk int, src *byte, grp *int32, lut *float32, out *float32)
// For nblk blocks of 32 4-bit codes (dequant4AVX's layout), out[i] =
// lut[grp[i]<<4 | q[i]]: act order's table of each group's products.
TEXT ·dequant4LUTAVX(SB), NOSPLIT, $0-40
	MOVQ         nblk+0(FP), CX
	MOVQ         src+8(FP), SI
	MOVQ         grp+16(FP), R8
	MOVQ         lut+24(FP), BX
	MOVQ         out+32(FP), DI
	MOVL         $15, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15

loopdq4lut:
	VPMOVZXBD (SI), Y0
	VPMOVZXBD 8(SI), Y1
	VPAND     Y15, Y0, Y2
	VPSRLD    $4, Y0, Y3
	VPAND     Y15, Y1, Y4
	VPSRLD    $4, Y1, Y5
	DQ4LUT(Y2, 0)
	DQ4LUT(Y4, 32)
	DQ4LUT(Y3, 64)
	DQ4LUT(Y5, 96)
	ADDQ      $16, SI
	ADDQ      $128, R8
	ADDQ      $128, DI
	DECQ      CX
	JNZ       loopdq4lut
	VZEROUPPER
	RET

// func bf16ToF32AVX(n int, src *byte, out *float32)
// out[i] = the bf16 value i of src (its bits shifted up 16: exact); n a
// positive multiple of 8.
TEXT ·bf16ToF32AVX(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ out+16(FP), DI

loopbf16:
	VPMOVZXWD (SI), Y0
	VPSLLD    $16, Y0, Y0
	VMOVDQU   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	SUBQ      $8, CX
	JNZ       loopbf16
	VZEROUPPER
	RET

// func f16ToF32AVX(n int, src *byte, out *float32)
// out[i] = the fp16 value i of src (VCVTPH2PS: exact, subnormals
// included); n a positive multiple of 8.
TEXT ·f16ToF32AVX(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ out+16(FP), DI

loopf16:
	VCVTPH2PS (SI), Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	SUBQ      $8, CX
	JNZ       loopf16
	VZEROUPPER
	RET

// func dequant8AVX(n int, src *byte, out *float32, s, z float32)
// out[i] = s*(float32(src[i]) - z) for n 8-bit codes, n a positive
// multiple of 8 (the subtraction exact, the product rounded once).
TEXT ·dequant8AVX(SB), NOSPLIT, $0-32
	MOVQ         n+0(FP), CX
	MOVQ         src+8(FP), SI
	MOVQ         out+16(FP), DI
	VBROADCASTSS s+24(FP), Y13
	VBROADCASTSS z+28(FP), Y14

loopdq8:
	VPMOVZXBD (SI), Y0
	VCVTDQ2PS Y0, Y0
	VSUBPS    Y14, Y0, Y0
	VMULPS    Y13, Y0, Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $8, SI
	ADDQ      $32, DI
	SUBQ      $8, CX
	JNZ       loopdq8
	VZEROUPPER
	RET

// func dequant8GatherAVX(n int, src *byte, grp *int32, sz *float32, ng int, out *float32)
// out[i] = sz[grp[i]]*(float32(src[i]) - sz[ng+grp[i]]) for n 8-bit codes
// (act order: sz holds the row's ng scales, then its ng zero points), n a
// positive multiple of 8.
TEXT ·dequant8GatherAVX(SB), NOSPLIT, $0-48
	MOVQ n+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ grp+16(FP), R8
	MOVQ sz+24(FP), BX
	MOVQ ng+32(FP), DX
	LEAQ (BX)(DX*4), DX
	MOVQ out+40(FP), DI

loopdq8g:
	VMOVDQU    (R8), Y6
	VPCMPEQD   Y7, Y7, Y7
	VGATHERDPS Y7, (BX)(Y6*4), Y8
	VPCMPEQD   Y7, Y7, Y7
	VGATHERDPS Y7, (DX)(Y6*4), Y9
	VPMOVZXBD  (SI), Y0
	VCVTDQ2PS  Y0, Y0
	VSUBPS     Y9, Y0, Y0
	VMULPS     Y0, Y8, Y0
	VMOVUPS    Y0, (DI)
	ADDQ       $8, SI
	ADDQ       $32, R8
	ADDQ       $32, DI
	SUBQ       $8, CX
	JNZ        loopdq8g
	VZEROUPPER
	RET

// The panel kernels read act-order weights in panels of 8 output rows
// (qweight's panel layout): input c's entry holds the 8 rows' codes,
// row r's at bits r·bits.. of a little-endian word of bits bytes (8 bytes
// at 8 bits, byte r row r's code), and tbl holds each group's 8 fp32
// scales then 8 zero points (64 bytes a group). W[r, c] is computed in
// lane r of a vector (the scale and zero of input c's group are a vector
// load, whatever the group), as scale·(code − zero): the subtraction exact,
// the product rounded once, the value Dequantize writes.

// PCODELO sets Y8 to the codes of the entry at (SI) (bits <= 4: a dword
// broadcast, shifted by Y14 = r·bits and masked by Y15) as fp32.
#define PCODELO \
	VPBROADCASTD (SI), Y8 \
	VPSRLVD      Y14, Y8, Y8 \
	VPAND        Y15, Y8, Y8 \
	VCVTDQ2PS    Y8, Y8

// PCODE8 sets Y8 to the 8 code bytes at (SI) as fp32.
#define PCODE8 \
	VPMOVZXBD (SI), Y8 \
	VCVTDQ2PS Y8, Y8

// PWEIGHT turns the codes in Y8 into the weights of input c (its group at
// off(R8)): Y8 = scale·(Y8 − zero). Clobbers R9.
#define PWEIGHT(off) \
	MOVL   off(R8), R9 \
	SHLQ   $6, R9 \
	VSUBPS 32(BX)(R9*1), Y8, Y8 \
	VMULPS (BX)(R9*1), Y8, Y8

// PFMA adds x[c] (at off(DI)) times the weights in Y8 into ACC.
#define PFMA(off, ACC) \
	VBROADCASTSS off(DI), Y9 \
	VFMADD231PS  Y8, Y9, ACC

#define PDOTLO(l, ACC) \
	PCODELO \
	PWEIGHT(4*l) \
	PFMA(4*l, ACC) \
	ADDQ R10, SI

#define PDOT8(l, ACC) \
	PCODE8 \
	PWEIGHT(4*l) \
	PFMA(4*l, ACC) \
	ADDQ $8, SI

// PSTORE8 stores the accumulators Y0..Y7 at acc (AX).
#define PSTORE8 \
	VMOVUPS Y0, (AX) \
	VMOVUPS Y1, 32(AX) \
	VMOVUPS Y2, 64(AX) \
	VMOVUPS Y3, 96(AX) \
	VMOVUPS Y4, 128(AX) \
	VMOVUPS Y5, 160(AX) \
	VMOVUPS Y6, 192(AX) \
	VMOVUPS Y7, 224(AX)

#define PZERO8 \
	VXORPS Y0, Y0, Y0 \
	VXORPS Y1, Y1, Y1 \
	VXORPS Y2, Y2, Y2 \
	VXORPS Y3, Y3, Y3 \
	VXORPS Y4, Y4, Y4 \
	VXORPS Y5, Y5, Y5 \
	VXORPS Y6, Y6, Y6 \
	VXORPS Y7, Y7, Y7

// func panelDotLoAVX(nchunk int, codes *byte, bits int, shifts *[8]uint32, mask int, grp *int32, tbl *float32, x *float32, skip int, acc *[64]float32, cont int)
// For nchunk chunks of 8 inputs (codes, grp and x at the chunk's first
// input; skip inputs passed over after each chunk), acc[8*l+r] = Σ over
// the chunks' l-th inputs c of x[c]·W[r, c], in chunk order (FMA): lane r
// of the dense kernels' accumulator of input class l, for 8 rows at once.
// bits 2, 3 or 4; shifts[r] = r·bits, mask = 2^bits − 1; nchunk > 0. With
// cont not 0 the sums go on from acc's.
TEXT ·panelDotLoAVX(SB), NOSPLIT, $0-88
	MOVQ         nchunk+0(FP), CX
	MOVQ         codes+8(FP), SI
	MOVQ         bits+16(FP), R10
	MOVQ         shifts+24(FP), AX
	VMOVDQU      (AX), Y14
	MOVQ         mask+32(FP), AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVQ         grp+40(FP), R8
	MOVQ         tbl+48(FP), BX
	MOVQ         x+56(FP), DI
	MOVQ         skip+64(FP), R11
	MOVQ         R11, R12
	IMULQ        R10, R12
	SHLQ         $2, R11
	MOVQ         acc+72(FP), AX
	PZERO8
	MOVQ         cont+80(FP), R9
	TESTQ        R9, R9
	JZ           looppdlo
	VMOVUPS      (AX), Y0
	VMOVUPS      32(AX), Y1
	VMOVUPS      64(AX), Y2
	VMOVUPS      96(AX), Y3
	VMOVUPS      128(AX), Y4
	VMOVUPS      160(AX), Y5
	VMOVUPS      192(AX), Y6
	VMOVUPS      224(AX), Y7

looppdlo:
	PDOTLO(0, Y0)
	PDOTLO(1, Y1)
	PDOTLO(2, Y2)
	PDOTLO(3, Y3)
	PDOTLO(4, Y4)
	PDOTLO(5, Y5)
	PDOTLO(6, Y6)
	PDOTLO(7, Y7)
	ADDQ R12, SI
	ADDQ $32, R8
	ADDQ R11, R8
	ADDQ $32, DI
	ADDQ R11, DI
	DECQ CX
	JNZ  looppdlo
	PSTORE8
	VZEROUPPER
	RET

// func panelDot8AVX(nchunk int, codes *byte, grp *int32, tbl *float32, x *float32, skip int, acc *[64]float32)
// panelDotLoAVX for 8-bit codes.
TEXT ·panelDot8AVX(SB), NOSPLIT, $0-56
	MOVQ  nchunk+0(FP), CX
	MOVQ  codes+8(FP), SI
	MOVQ  grp+16(FP), R8
	MOVQ  tbl+24(FP), BX
	MOVQ  x+32(FP), DI
	MOVQ  skip+40(FP), R11
	MOVQ  R11, R12
	SHLQ  $3, R12
	SHLQ  $2, R11
	MOVQ  acc+48(FP), AX
	PZERO8

looppd8:
	PDOT8(0, Y0)
	PDOT8(1, Y1)
	PDOT8(2, Y2)
	PDOT8(3, Y3)
	PDOT8(4, Y4)
	PDOT8(5, Y5)
	PDOT8(6, Y6)
	PDOT8(7, Y7)
	ADDQ R12, SI
	ADDQ $32, R8
	ADDQ R11, R8
	ADDQ $32, DI
	ADDQ R11, DI
	DECQ CX
	JNZ  looppd8
	PSTORE8
	VZEROUPPER
	RET

// PTWLO and PTW8 set ACC to the weights of the input whose entry is at
// (SI) and group at off(R8), and advance SI to the next entry.
#define PTWLO(off, ACC) \
	PCODELO \
	PWEIGHT(off) \
	VMOVAPS Y8, ACC \
	ADDQ    R10, SI

#define PTW8(off, ACC) \
	PCODE8 \
	PWEIGHT(off) \
	VMOVAPS Y8, ACC \
	ADDQ    $8, SI

// PTRANSPOSE transposes the 8×8 block in Y0..Y7 (Y_c lane r = W[r, c])
// and stores row r's 8 values at (DX) + r·R11. Clobbers Y8..Y15, R12.
#define PTRANSPOSE \
	VUNPCKLPS  Y1, Y0, Y8 \
	VUNPCKHPS  Y1, Y0, Y9 \
	VUNPCKLPS  Y3, Y2, Y10 \
	VUNPCKHPS  Y3, Y2, Y11 \
	VUNPCKLPS  Y5, Y4, Y12 \
	VUNPCKHPS  Y5, Y4, Y13 \
	VUNPCKLPS  Y7, Y6, Y14 \
	VUNPCKHPS  Y7, Y6, Y15 \
	VSHUFPS    $0x44, Y10, Y8, Y0 \
	VSHUFPS    $0xEE, Y10, Y8, Y1 \
	VSHUFPS    $0x44, Y11, Y9, Y2 \
	VSHUFPS    $0xEE, Y11, Y9, Y3 \
	VSHUFPS    $0x44, Y14, Y12, Y4 \
	VSHUFPS    $0xEE, Y14, Y12, Y5 \
	VSHUFPS    $0x44, Y15, Y13, Y6 \
	VSHUFPS    $0xEE, Y15, Y13, Y7 \
	MOVQ       DX, R12 \
	VPERM2F128 $0x20, Y4, Y0, Y8 \
	VMOVUPS    Y8, (R12) \
	ADDQ       R11, R12 \
	VPERM2F128 $0x20, Y5, Y1, Y8 \
	VMOVUPS    Y8, (R12) \
	ADDQ       R11, R12 \
	VPERM2F128 $0x20, Y6, Y2, Y8 \
	VMOVUPS    Y8, (R12) \
	ADDQ       R11, R12 \
	VPERM2F128 $0x20, Y7, Y3, Y8 \
	VMOVUPS    Y8, (R12) \
	ADDQ       R11, R12 \
	VPERM2F128 $0x31, Y4, Y0, Y8 \
	VMOVUPS    Y8, (R12) \
	ADDQ       R11, R12 \
	VPERM2F128 $0x31, Y5, Y1, Y8 \
	VMOVUPS    Y8, (R12) \
	ADDQ       R11, R12 \
	VPERM2F128 $0x31, Y6, Y2, Y8 \
	VMOVUPS    Y8, (R12) \
	ADDQ       R11, R12 \
	VPERM2F128 $0x31, Y7, Y3, Y8 \
	VMOVUPS    Y8, (R12)

// func panelTileLoAVX(nchunk int, codes *byte, bits int, shifts *[8]uint32, mask int, grp *int32, tbl *float32, out *float32, ldo int)
// For nchunk chunks of 8 inputs, out[r*ldo + c] = W[r, c] for the 8 rows
// of the panel (c counted from the first chunk's input): the panel's
// rows in fp32, row-major, as the dense kernels read them. bits 2, 3 or
// 4 (shifts and mask as panelDotLoAVX's); nchunk > 0.
TEXT ·panelTileLoAVX(SB), NOSPLIT, $0-72
	MOVQ  nchunk+0(FP), CX
	MOVQ  codes+8(FP), SI
	MOVQ  bits+16(FP), R10
	MOVQ  shifts+24(FP), DI
	MOVQ  mask+32(FP), AX
	MOVQ  grp+40(FP), R8
	MOVQ  tbl+48(FP), BX
	MOVQ  out+56(FP), DX
	MOVQ  ldo+64(FP), R11
	SHLQ  $2, R11

looptlo:
	VMOVDQU      (DI), Y14
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	PTWLO(0, Y0)
	PTWLO(4, Y1)
	PTWLO(8, Y2)
	PTWLO(12, Y3)
	PTWLO(16, Y4)
	PTWLO(20, Y5)
	PTWLO(24, Y6)
	PTWLO(28, Y7)
	PTRANSPOSE
	ADDQ $32, R8
	ADDQ $32, DX
	DECQ CX
	JNZ  looptlo
	VZEROUPPER
	RET

// func panelTile8AVX(nchunk int, codes *byte, grp *int32, tbl *float32, out *float32, ldo int)
// panelTileLoAVX for 8-bit codes.
TEXT ·panelTile8AVX(SB), NOSPLIT, $0-48
	MOVQ nchunk+0(FP), CX
	MOVQ codes+8(FP), SI
	MOVQ grp+16(FP), R8
	MOVQ tbl+24(FP), BX
	MOVQ out+32(FP), DX
	MOVQ ldo+40(FP), R11
	SHLQ $2, R11

looptl8:
	PTW8(0, Y0)
	PTW8(4, Y1)
	PTW8(8, Y2)
	PTW8(12, Y3)
	PTW8(16, Y4)
	PTW8(20, Y5)
	PTW8(24, Y6)
	PTW8(28, Y7)
	PTRANSPOSE
	ADDQ $32, R8
	ADDQ $32, DX
	DECQ CX
	JNZ  looptl8
	VZEROUPPER
	RET

// The panel kernels of weights without act order: input c is in group
// c/gs, gs a multiple of 8, so that a chunk's 8 inputs share one group
// and the groups follow each other. tbl is at the first chunk's group,
// left (> 0) is the number of inputs from the first chunk's first input
// to that group's end; after each chunk (8 + skip inputs) the kernels
// move tbl on by a group (64 bytes) as often as left, lessened by the
// step, needs gs added to stay positive. The weights are computed as the
// act-order kernels' are, scale·(code − zero), the same operations.

// PADVANCE(L, R, STEP) moves BX to the group of the next chunk: L holds
// left, R gs, STEP the inputs a chunk advances.
#define PADVANCE(L, R, STEP, next, again) \
	SUBQ STEP, L \
	JGT  next \
again: \
	ADDQ $64, BX \
	ADDQ R, L \
	JLE  again \
next:

// PSWEIGHT: Y8 = scale·(Y8 − zero), the chunk's scales in Y12 and zero
// points in Y13.
#define PSWEIGHT \
	VSUBPS Y13, Y8, Y8 \
	VMULPS Y12, Y8, Y8

#define PSDOTLO(l, ACC) \
	PCODELO \
	PSWEIGHT \
	PFMA(4*l, ACC) \
	ADDQ R10, SI

#define PSDOT8(l, ACC) \
	PCODE8 \
	PSWEIGHT \
	PFMA(4*l, ACC) \
	ADDQ $8, SI

// func panelDotLoSeqAVX(nchunk int, codes *byte, bits int, shifts *[8]uint32, mask int, tbl *float32, left, gs int, x *float32, skip int, acc *[64]float32, cont int)
// panelDotLoAVX without act order (tbl, left and gs as above).
TEXT ·panelDotLoSeqAVX(SB), NOSPLIT, $0-96
	MOVQ         nchunk+0(FP), CX
	MOVQ         codes+8(FP), SI
	MOVQ         bits+16(FP), R10
	MOVQ         shifts+24(FP), AX
	VMOVDQU      (AX), Y14
	MOVQ         mask+32(FP), AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVQ         tbl+40(FP), BX
	MOVQ         left+48(FP), R13
	MOVQ         gs+56(FP), R9
	MOVQ         x+64(FP), DI
	MOVQ         skip+72(FP), R11
	LEAQ         8(R11), DX
	MOVQ         R11, R12
	IMULQ        R10, R12
	SHLQ         $2, R11
	MOVQ         acc+80(FP), AX
	PZERO8
	MOVQ         cont+88(FP), R8
	TESTQ        R8, R8
	JZ           looppslo
	VMOVUPS      (AX), Y0
	VMOVUPS      32(AX), Y1
	VMOVUPS      64(AX), Y2
	VMOVUPS      96(AX), Y3
	VMOVUPS      128(AX), Y4
	VMOVUPS      160(AX), Y5
	VMOVUPS      192(AX), Y6
	VMOVUPS      224(AX), Y7

looppslo:
	VMOVUPS (BX), Y12
	VMOVUPS 32(BX), Y13
	PSDOTLO(0, Y0)
	PSDOTLO(1, Y1)
	PSDOTLO(2, Y2)
	PSDOTLO(3, Y3)
	PSDOTLO(4, Y4)
	PSDOTLO(5, Y5)
	PSDOTLO(6, Y6)
	PSDOTLO(7, Y7)
	ADDQ    R12, SI
	ADDQ    $32, DI
	ADDQ    R11, DI
	PADVANCE(R13, R9, DX, nextpslo, grppslo)
	DECQ    CX
	JNZ     looppslo
	PSTORE8
	VZEROUPPER
	RET

// func panelDot8SeqAVX(nchunk int, codes *byte, tbl *float32, left, gs int, x *float32, skip int, acc *[64]float32)
// panelDotLoSeqAVX for 8-bit codes.
TEXT ·panelDot8SeqAVX(SB), NOSPLIT, $0-64
	MOVQ  nchunk+0(FP), CX
	MOVQ  codes+8(FP), SI
	MOVQ  tbl+16(FP), BX
	MOVQ  left+24(FP), R13
	MOVQ  gs+32(FP), R9
	MOVQ  x+40(FP), DI
	MOVQ  skip+48(FP), R11
	LEAQ  8(R11), DX
	MOVQ  R11, R12
	SHLQ  $3, R12
	SHLQ  $2, R11
	MOVQ  acc+56(FP), AX
	PZERO8

looppsd8:
	VMOVUPS (BX), Y12
	VMOVUPS 32(BX), Y13
	PSDOT8(0, Y0)
	PSDOT8(1, Y1)
	PSDOT8(2, Y2)
	PSDOT8(3, Y3)
	PSDOT8(4, Y4)
	PSDOT8(5, Y5)
	PSDOT8(6, Y6)
	PSDOT8(7, Y7)
	ADDQ    R12, SI
	ADDQ    $32, DI
	ADDQ    R11, DI
	PADVANCE(R13, R9, DX, nextpsd8, grppsd8)
	DECQ    CX
	JNZ     looppsd8
	PSTORE8
	VZEROUPPER
	RET

// PSTWLO and PSTW8 are PTWLO and PTW8 without act order: the chunk's
// group at (BX) (the transpose leaves no vector register free to hold
// its scales).
#define PSTWLO(ACC) \
	PCODELO \
	VSUBPS  32(BX), Y8, Y8 \
	VMULPS  (BX), Y8, Y8 \
	VMOVAPS Y8, ACC \
	ADDQ    R10, SI

#define PSTW8(ACC) \
	PCODE8 \
	VSUBPS  32(BX), Y8, Y8 \
	VMULPS  (BX), Y8, Y8 \
	VMOVAPS Y8, ACC \
	ADDQ    $8, SI

// func panelTileLoSeqAVX(nchunk int, codes *byte, bits int, shifts *[8]uint32, mask int, tbl *float32, left, gs int, out *float32, ldo int)
// panelTileLoAVX without act order.
TEXT ·panelTileLoSeqAVX(SB), NOSPLIT, $0-80
	MOVQ  nchunk+0(FP), CX
	MOVQ  codes+8(FP), SI
	MOVQ  bits+16(FP), R10
	MOVQ  shifts+24(FP), DI
	MOVQ  mask+32(FP), AX
	MOVQ  tbl+40(FP), BX
	MOVQ  left+48(FP), R8
	MOVQ  gs+56(FP), R9
	MOVQ  out+64(FP), DX
	MOVQ  ldo+72(FP), R11
	SHLQ  $2, R11
	MOVQ  $8, R13

looptslo:
	VMOVDQU      (DI), Y14
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	PSTWLO(Y0)
	PSTWLO(Y1)
	PSTWLO(Y2)
	PSTWLO(Y3)
	PSTWLO(Y4)
	PSTWLO(Y5)
	PSTWLO(Y6)
	PSTWLO(Y7)
	PTRANSPOSE
	ADDQ         $32, DX
	PADVANCE(R8, R9, R13, nexttslo, grptslo)
	DECQ         CX
	JNZ          looptslo
	VZEROUPPER
	RET

// func panelTile8SeqAVX(nchunk int, codes *byte, tbl *float32, left, gs int, out *float32, ldo int)
// panelTileLoSeqAVX for 8-bit codes.
TEXT ·panelTile8SeqAVX(SB), NOSPLIT, $0-56
	MOVQ nchunk+0(FP), CX
	MOVQ codes+8(FP), SI
	MOVQ tbl+16(FP), BX
	MOVQ left+24(FP), R8
	MOVQ gs+32(FP), R9
	MOVQ out+40(FP), DX
	MOVQ ldo+48(FP), R11
	SHLQ $2, R11
	MOVQ $8, R13

looptsl8:
	PSTW8(Y0)
	PSTW8(Y1)
	PSTW8(Y2)
	PSTW8(Y3)
	PSTW8(Y4)
	PSTW8(Y5)
	PSTW8(Y6)
	PSTW8(Y7)
	PTRANSPOSE
	ADDQ $32, DX
	PADVANCE(R8, R9, R13, nexttsl8, grptsl8)
	DECQ CX
	JNZ  looptsl8
	VZEROUPPER
	RET

// PD3W sets Y12 to the weights of the input whose codes Y12 holds, the
// chunk's group at (BX) (no vector register is left to hold its scales).
#define PD3W \
	VCVTDQ2PS Y12, Y12 \
	VSUBPS    32(BX), Y12, Y12 \
	VMULPS    (BX), Y12, Y12

// PD3FMA adds x[i][c] (at off(DI), rows R8 bytes apart) times the weights
// in Y12 into A0, A1 and A2, for rows 0, 1 and 2.
#define PD3FMA(off, A0, A1, A2) \
	VBROADCASTSS off(DI), Y13 \
	VFMADD231PS  Y12, Y13, A0 \
	VBROADCASTSS off(DI)(R8*1), Y13 \
	VFMADD231PS  Y12, Y13, A1 \
	VBROADCASTSS off(DI)(R8*2), Y13 \
	VFMADD231PS  Y12, Y13, A2

#define PD3LO(off, A0, A1, A2) \
	VPBROADCASTD (SI), Y12 \
	VPSRLVD      Y14, Y12, Y12 \
	VPAND        Y15, Y12, Y12 \
	PD3W \
	PD3FMA(off, A0, A1, A2) \
	ADDQ         R10, SI

#define PD38(off, A0, A1, A2) \
	VPMOVZXBD (SI), Y12 \
	PD3W \
	PD3FMA(off, A0, A1, A2) \
	ADDQ      $8, SI

// PSTORE12 stores the accumulators Y0..Y11 at acc (AX).
#define PSTORE12 \
	PSTORE8 \
	VMOVUPS Y8, 256(AX) \
	VMOVUPS Y9, 288(AX) \
	VMOVUPS Y10, 320(AX) \
	VMOVUPS Y11, 352(AX)

// func panelDot3LoSeqAVX(nchunk int, codes *byte, bits int, shifts *[8]uint32, mask int, tbl *float32, left, gs int, x *float32, ldx, skip int, acc *[96]float32, cont int)
// For 3 rows of x (ldx apart) and nchunk chunks of 4 inputs (codes and x
// at the first chunk's first input; skip inputs passed over after each
// chunk), acc[32*i + 8*l + r] = Σ over the chunks' l-th inputs c of
// x[i][c]·W[r, c], in chunk order (FMA): each input's weights computed
// once for the 3 rows. Groups as panelDotLoSeqAVX's (a chunk of 4 lies
// in one of its 8); bits 2, 3 or 4; nchunk > 0. With cont not 0 the sums
// go on from acc's.
TEXT ·panelDot3LoSeqAVX(SB), NOSPLIT, $0-104
	MOVQ         nchunk+0(FP), CX
	MOVQ         codes+8(FP), SI
	MOVQ         bits+16(FP), R10
	MOVQ         shifts+24(FP), AX
	VMOVDQU      (AX), Y14
	MOVQ         mask+32(FP), AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVQ         tbl+40(FP), BX
	MOVQ         left+48(FP), R13
	MOVQ         x+64(FP), DI
	MOVQ         ldx+72(FP), R8
	SHLQ         $2, R8
	MOVQ         skip+80(FP), R11
	LEAQ         4(R11), DX
	MOVQ         R11, R12
	IMULQ        R10, R12
	SHLQ         $2, R11
	MOVQ         acc+88(FP), AX
	PZERO8
	VXORPS       Y8, Y8, Y8
	VXORPS       Y9, Y9, Y9
	VXORPS       Y10, Y10, Y10
	VXORPS       Y11, Y11, Y11
	MOVQ         cont+96(FP), R9
	TESTQ        R9, R9
	JZ           gsp3lo
	VMOVUPS      (AX), Y0
	VMOVUPS      32(AX), Y1
	VMOVUPS      64(AX), Y2
	VMOVUPS      96(AX), Y3
	VMOVUPS      128(AX), Y4
	VMOVUPS      160(AX), Y5
	VMOVUPS      192(AX), Y6
	VMOVUPS      224(AX), Y7
	VMOVUPS      256(AX), Y8
	VMOVUPS      288(AX), Y9
	VMOVUPS      320(AX), Y10
	VMOVUPS      352(AX), Y11

gsp3lo:
	MOVQ gs+56(FP), R9

loopp3lo:
	PD3LO(0, Y0, Y4, Y8)
	PD3LO(4, Y1, Y5, Y9)
	PD3LO(8, Y2, Y6, Y10)
	PD3LO(12, Y3, Y7, Y11)
	ADDQ R12, SI
	ADDQ $16, DI
	ADDQ R11, DI
	PADVANCE(R13, R9, DX, nextp3lo, grpp3lo)
	DECQ CX
	JNZ  loopp3lo
	PSTORE12
	VZEROUPPER
	RET

// func panelDot38SeqAVX(nchunk int, codes *byte, tbl *float32, left, gs int, x *float32, ldx, skip int, acc *[96]float32)
// panelDot3LoSeqAVX for 8-bit codes.
TEXT ·panelDot38SeqAVX(SB), NOSPLIT, $0-72
	MOVQ   nchunk+0(FP), CX
	MOVQ   codes+8(FP), SI
	MOVQ   tbl+16(FP), BX
	MOVQ   left+24(FP), R13
	MOVQ   gs+32(FP), R9
	MOVQ   x+40(FP), DI
	MOVQ   ldx+48(FP), R8
	SHLQ   $2, R8
	MOVQ   skip+56(FP), R11
	LEAQ   4(R11), DX
	MOVQ   R11, R12
	SHLQ   $3, R12
	SHLQ   $2, R11
	MOVQ   acc+64(FP), AX
	PZERO8
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

loopp38:
	PD38(0, Y0, Y4, Y8)
	PD38(4, Y1, Y5, Y9)
	PD38(8, Y2, Y6, Y10)
	PD38(12, Y3, Y7, Y11)
	ADDQ R12, SI
	ADDQ $16, DI
	ADDQ R11, DI
	PADVANCE(R13, R9, DX, nextp38, grpp38)
	DECQ CX
	JNZ  loopp38
	PSTORE12
	VZEROUPPER
	RET

// PD2LO and PD28 add x[i][c] (at off(DI), rows R8 bytes apart) times the
// weights of the input at (SI) into A0 and A1, for rows 0 and 1, the
// chunk's scales in Y12 and zero points in Y13.
#define PD2FMA(off, A0, A1) \
	VBROADCASTSS off(DI), Y9 \
	VFMADD231PS  Y8, Y9, A0 \
	VBROADCASTSS off(DI)(R8*1), Y9 \
	VFMADD231PS  Y8, Y9, A1

#define PD2LO(off, A0, A1) \
	PCODELO \
	PSWEIGHT \
	PD2FMA(off, A0, A1) \
	ADDQ R10, SI

#define PD28(off, A0, A1) \
	PCODE8 \
	PSWEIGHT \
	PD2FMA(off, A0, A1) \
	ADDQ $8, SI

// func panelDot2LoSeqAVX(nchunk int, codes *byte, bits int, shifts *[8]uint32, mask int, tbl *float32, left, gs int, x *float32, ldx, skip int, acc *[96]float32, cont int)
// panelDot3LoSeqAVX for 2 rows of x: acc[32*i + 8*l + r] for i < 2.
TEXT ·panelDot2LoSeqAVX(SB), NOSPLIT, $0-104
	MOVQ         nchunk+0(FP), CX
	MOVQ         codes+8(FP), SI
	MOVQ         bits+16(FP), R10
	MOVQ         shifts+24(FP), AX
	VMOVDQU      (AX), Y14
	MOVQ         mask+32(FP), AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVQ         tbl+40(FP), BX
	MOVQ         left+48(FP), R13
	MOVQ         x+64(FP), DI
	MOVQ         ldx+72(FP), R8
	SHLQ         $2, R8
	MOVQ         skip+80(FP), R11
	LEAQ         4(R11), DX
	MOVQ         R11, R12
	IMULQ        R10, R12
	SHLQ         $2, R11
	MOVQ         acc+88(FP), AX
	PZERO8
	MOVQ         cont+96(FP), R9
	TESTQ        R9, R9
	JZ           gsp2lo
	VMOVUPS      (AX), Y0
	VMOVUPS      32(AX), Y1
	VMOVUPS      64(AX), Y2
	VMOVUPS      96(AX), Y3
	VMOVUPS      128(AX), Y4
	VMOVUPS      160(AX), Y5
	VMOVUPS      192(AX), Y6
	VMOVUPS      224(AX), Y7

gsp2lo:
	MOVQ gs+56(FP), R9

loopp2lo:
	VMOVUPS (BX), Y12
	VMOVUPS 32(BX), Y13
	PD2LO(0, Y0, Y4)
	PD2LO(4, Y1, Y5)
	PD2LO(8, Y2, Y6)
	PD2LO(12, Y3, Y7)
	ADDQ    R12, SI
	ADDQ    $16, DI
	ADDQ    R11, DI
	PADVANCE(R13, R9, DX, nextp2lo, grpp2lo)
	DECQ    CX
	JNZ     loopp2lo
	PSTORE8
	VZEROUPPER
	RET

// func panelDot28SeqAVX(nchunk int, codes *byte, tbl *float32, left, gs int, x *float32, ldx, skip int, acc *[96]float32)
// panelDot2LoSeqAVX for 8-bit codes.
TEXT ·panelDot28SeqAVX(SB), NOSPLIT, $0-72
	MOVQ nchunk+0(FP), CX
	MOVQ codes+8(FP), SI
	MOVQ tbl+16(FP), BX
	MOVQ left+24(FP), R13
	MOVQ gs+32(FP), R9
	MOVQ x+40(FP), DI
	MOVQ ldx+48(FP), R8
	SHLQ $2, R8
	MOVQ skip+56(FP), R11
	LEAQ 4(R11), DX
	MOVQ R11, R12
	SHLQ $3, R12
	SHLQ $2, R11
	MOVQ acc+64(FP), AX
	PZERO8

loopp28:
	VMOVUPS (BX), Y12
	VMOVUPS 32(BX), Y13
	PD28(0, Y0, Y4)
	PD28(4, Y1, Y5)
	PD28(8, Y2, Y6)
	PD28(12, Y3, Y7)
	ADDQ    R12, SI
	ADDQ    $16, DI
	ADDQ    R11, DI
	PADVANCE(R13, R9, DX, nextp28, grpp28)
	DECQ    CX
	JNZ     loopp28
	PSTORE8
	VZEROUPPER
	RET

// The act-order forms of panelDot2LoSeqAVX and panelDot3LoSeqAVX: input
// c's group at grp (R13), 4 bytes an input, as the act-order panelDot's.

// PAWEIGHT(off, W) turns the codes in W (fp32) into the weights of the
// input whose group is at off(R13): W = scale·(W − zero). Clobbers R9.
#define PAWEIGHT(off, W) \
	MOVL   off(R13), R9 \
	SHLQ   $6, R9 \
	VSUBPS 32(BX)(R9*1), W, W \
	VMULPS (BX)(R9*1), W, W

#define PA2LO(off, A0, A1) \
	PCODELO \
	PAWEIGHT(off, Y8) \
	PD2FMA(off, A0, A1) \
	ADDQ R10, SI

#define PA28(off, A0, A1) \
	PCODE8 \
	PAWEIGHT(off, Y8) \
	PD2FMA(off, A0, A1) \
	ADDQ $8, SI

#define PA3LO(off, A0, A1, A2) \
	VPBROADCASTD (SI), Y12 \
	VPSRLVD      Y14, Y12, Y12 \
	VPAND        Y15, Y12, Y12 \
	VCVTDQ2PS    Y12, Y12 \
	PAWEIGHT(off, Y12) \
	PD3FMA(off, A0, A1, A2) \
	ADDQ         R10, SI

#define PA38(off, A0, A1, A2) \
	VPMOVZXBD (SI), Y12 \
	VCVTDQ2PS Y12, Y12 \
	PAWEIGHT(off, Y12) \
	PD3FMA(off, A0, A1, A2) \
	ADDQ      $8, SI

// func panelDot2LoAVX(nchunk int, codes *byte, bits int, shifts *[8]uint32, mask int, grp *int32, tbl *float32, x *float32, ldx, skip int, acc *[96]float32, cont int)
// panelDot2LoSeqAVX with act order.
TEXT ·panelDot2LoAVX(SB), NOSPLIT, $0-96
	MOVQ         nchunk+0(FP), CX
	MOVQ         codes+8(FP), SI
	MOVQ         bits+16(FP), R10
	MOVQ         shifts+24(FP), AX
	VMOVDQU      (AX), Y14
	MOVQ         mask+32(FP), AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVQ         grp+40(FP), R13
	MOVQ         tbl+48(FP), BX
	MOVQ         x+56(FP), DI
	MOVQ         ldx+64(FP), R8
	SHLQ         $2, R8
	MOVQ         skip+72(FP), R11
	MOVQ         R11, R12
	IMULQ        R10, R12
	SHLQ         $2, R11
	MOVQ         acc+80(FP), AX
	PZERO8
	MOVQ         cont+88(FP), R9
	TESTQ        R9, R9
	JZ           loopa2lo
	VMOVUPS      (AX), Y0
	VMOVUPS      32(AX), Y1
	VMOVUPS      64(AX), Y2
	VMOVUPS      96(AX), Y3
	VMOVUPS      128(AX), Y4
	VMOVUPS      160(AX), Y5
	VMOVUPS      192(AX), Y6
	VMOVUPS      224(AX), Y7

loopa2lo:
	PA2LO(0, Y0, Y4)
	PA2LO(4, Y1, Y5)
	PA2LO(8, Y2, Y6)
	PA2LO(12, Y3, Y7)
	ADDQ R12, SI
	ADDQ $16, DI
	ADDQ R11, DI
	ADDQ $16, R13
	ADDQ R11, R13
	DECQ CX
	JNZ  loopa2lo
	PSTORE8
	VZEROUPPER
	RET

// func panelDot28AVX(nchunk int, codes *byte, grp *int32, tbl *float32, x *float32, ldx, skip int, acc *[96]float32)
// panelDot2LoAVX for 8-bit codes.
TEXT ·panelDot28AVX(SB), NOSPLIT, $0-64
	MOVQ nchunk+0(FP), CX
	MOVQ codes+8(FP), SI
	MOVQ grp+16(FP), R13
	MOVQ tbl+24(FP), BX
	MOVQ x+32(FP), DI
	MOVQ ldx+40(FP), R8
	SHLQ $2, R8
	MOVQ skip+48(FP), R11
	MOVQ R11, R12
	SHLQ $3, R12
	SHLQ $2, R11
	MOVQ acc+56(FP), AX
	PZERO8

loopa28:
	PA28(0, Y0, Y4)
	PA28(4, Y1, Y5)
	PA28(8, Y2, Y6)
	PA28(12, Y3, Y7)
	ADDQ R12, SI
	ADDQ $16, DI
	ADDQ R11, DI
	ADDQ $16, R13
	ADDQ R11, R13
	DECQ CX
	JNZ  loopa28
	PSTORE8
	VZEROUPPER
	RET

// func panelDot3LoAVX(nchunk int, codes *byte, bits int, shifts *[8]uint32, mask int, grp *int32, tbl *float32, x *float32, ldx, skip int, acc *[96]float32, cont int)
// panelDot3LoSeqAVX with act order.
TEXT ·panelDot3LoAVX(SB), NOSPLIT, $0-96
	MOVQ         nchunk+0(FP), CX
	MOVQ         codes+8(FP), SI
	MOVQ         bits+16(FP), R10
	MOVQ         shifts+24(FP), AX
	VMOVDQU      (AX), Y14
	MOVQ         mask+32(FP), AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVQ         grp+40(FP), R13
	MOVQ         tbl+48(FP), BX
	MOVQ         x+56(FP), DI
	MOVQ         ldx+64(FP), R8
	SHLQ         $2, R8
	MOVQ         skip+72(FP), R11
	MOVQ         R11, R12
	IMULQ        R10, R12
	SHLQ         $2, R11
	MOVQ         acc+80(FP), AX
	PZERO8
	VXORPS       Y8, Y8, Y8
	VXORPS       Y9, Y9, Y9
	VXORPS       Y10, Y10, Y10
	VXORPS       Y11, Y11, Y11
	MOVQ         cont+88(FP), R9
	TESTQ        R9, R9
	JZ           loopa3lo
	VMOVUPS      (AX), Y0
	VMOVUPS      32(AX), Y1
	VMOVUPS      64(AX), Y2
	VMOVUPS      96(AX), Y3
	VMOVUPS      128(AX), Y4
	VMOVUPS      160(AX), Y5
	VMOVUPS      192(AX), Y6
	VMOVUPS      224(AX), Y7
	VMOVUPS      256(AX), Y8
	VMOVUPS      288(AX), Y9
	VMOVUPS      320(AX), Y10
	VMOVUPS      352(AX), Y11

loopa3lo:
	PA3LO(0, Y0, Y4, Y8)
	PA3LO(4, Y1, Y5, Y9)
	PA3LO(8, Y2, Y6, Y10)
	PA3LO(12, Y3, Y7, Y11)
	ADDQ R12, SI
	ADDQ $16, DI
	ADDQ R11, DI
	ADDQ $16, R13
	ADDQ R11, R13
	DECQ CX
	JNZ  loopa3lo
	PSTORE12
	VZEROUPPER
	RET

// func panelDot38AVX(nchunk int, codes *byte, grp *int32, tbl *float32, x *float32, ldx, skip int, acc *[96]float32)
// panelDot3LoAVX for 8-bit codes.
TEXT ·panelDot38AVX(SB), NOSPLIT, $0-64
	MOVQ   nchunk+0(FP), CX
	MOVQ   codes+8(FP), SI
	MOVQ   grp+16(FP), R13
	MOVQ   tbl+24(FP), BX
	MOVQ   x+32(FP), DI
	MOVQ   ldx+40(FP), R8
	SHLQ   $2, R8
	MOVQ   skip+48(FP), R11
	MOVQ   R11, R12
	SHLQ   $3, R12
	SHLQ   $2, R11
	MOVQ   acc+56(FP), AX
	PZERO8
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

loopa38:
	PA38(0, Y0, Y4, Y8)
	PA38(4, Y1, Y5, Y9)
	PA38(8, Y2, Y6, Y10)
	PA38(12, Y3, Y7, Y11)
	ADDQ R12, SI
	ADDQ $16, DI
	ADDQ R11, DI
	ADDQ $16, R13
	ADDQ R11, R13
	DECQ CX
	JNZ  loopa38
	PSTORE12
	VZEROUPPER
	RET
