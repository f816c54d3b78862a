package cuda

import (
	"encoding/binary"
	"fmt"
	goruntime "runtime"
	"unsafe"
)

// Dense float64 linear algebra for the GPTQ solver: cuBLAS DGEMM and the
// cuSOLVER Cholesky factorisation and triangular inverse. Matrices are
// column-major device arrays, as the libraries define them.

// Dgemm sets C = alpha·op(A)·op(B) + beta·C (op transposes when tA/tB).
func (b *Backend) Dgemm(tA, tB bool, m, n, k int, alpha float64, A uint64, lda int, B uint64, ldb int, beta float64, C uint64, ldc int) error {
	if m == 0 || n == 0 {
		return nil
	}
	b.enter()
	defer b.exit()
	op := func(t bool) int32 {
		if t {
			return opT
		}
		return opN
	}
	al, be := alpha, beta
	return blasErr(fmt.Sprintf("cublasDgemm(%d,%d,%d)", m, n, k), bl.cublasDgemm(b.blas, op(tA), op(tB), int32(m), int32(n), int32(k), &al, A, int32(lda), B, int32(ldb), &be, C, int32(ldc)))
}

func (b *Backend) solverHandle() (uintptr, error) {
	if b.solver != 0 {
		return b.solver, nil
	}
	if err := loadCUSOLVER(); err != nil {
		return 0, err
	}
	var h uintptr
	if err := solverErr("cusolverDnCreate", bl.cusolverDnCreate(&h)); err != nil {
		return 0, err
	}
	if err := solverErr("cusolverDnSetStream", bl.cusolverDnSetStream(h, b.stream)); err != nil {
		bl.cusolverDnDestroy(h)
		return 0, err
	}
	b.solver = h
	return h, nil
}

// info reads cuSOLVER's devInfo after the stream drains.
func (b *Backend) info(p uint64) (int, error) {
	var raw [4]byte
	if err := b.dtoh(raw[:], p); err != nil {
		return 0, err
	}
	return int(int32(binary.LittleEndian.Uint32(raw[:]))), nil
}

// Dpotrf factors the symmetric positive definite n×n matrix A (lower
// triangle read) in place as L·Lᵀ, L in the lower triangle. info > 0 means
// the leading minor of that order is not positive definite.
func (b *Backend) Dpotrf(A uint64, n int) (info int, err error) {
	b.enter()
	defer b.exit()
	h, err := b.solverHandle()
	if err != nil {
		return 0, err
	}
	var lwork int32
	if err := solverErr("cusolverDnDpotrf_bufferSize", bl.cusolverDnDpotrfBufferSize(h, fillLower, int32(n), A, int32(n), &lwork)); err != nil {
		return 0, err
	}
	ws, err := b.allocBufferLocked(int64(lwork)*8 + 4)
	if err != nil {
		return 0, err
	}
	defer b.alloc.release(ws.Ptr, ws.cls)
	dinfo := ws.Ptr + uint64(lwork)*8
	if err := solverErr(fmt.Sprintf("cusolverDnDpotrf(%d)", n), bl.cusolverDnDpotrf(h, fillLower, int32(n), A, int32(n), ws.Ptr, lwork, dinfo)); err != nil {
		return 0, err
	}
	info, err = b.info(dinfo)
	if err == nil && info < 0 {
		err = fmt.Errorf("cuda: cusolverDnDpotrf(%d): argument %d is invalid", n, -info)
	}
	return info, err
}

// Dtrtri inverts the lower triangular n×n matrix A (non-unit diagonal) in
// place. info > 0 means A[info-1][info-1] is 0.
func (b *Backend) Dtrtri(A uint64, n int) (info int, err error) {
	b.enter()
	defer b.exit()
	h, err := b.solverHandle()
	if err != nil {
		return 0, err
	}
	var devBytes, hostBytes uint64
	if err := solverErr("cusolverDnXtrtri_bufferSize", bl.cusolverDnXtrtriBufferSize(h, fillLower, diagNonUnit, int64(n), dtF64, A, int64(n), &devBytes, &hostBytes)); err != nil {
		return 0, err
	}
	ws, err := b.allocBufferLocked(int64(devBytes) + 16)
	if err != nil {
		return 0, err
	}
	defer b.alloc.release(ws.Ptr, ws.cls)
	dinfo := ws.Ptr + (devBytes+7)/8*8
	host := make([]byte, hostBytes+8)
	if err := solverErr(fmt.Sprintf("cusolverDnXtrtri(%d)", n), bl.cusolverDnXtrtri(h, fillLower, diagNonUnit, int64(n), dtF64, A, int64(n),
		ws.Ptr, devBytes, unsafe.Pointer(&host[0]), hostBytes, dinfo)); err != nil {
		return 0, err
	}
	info, err = b.info(dinfo)
	goruntime.KeepAlive(host)
	if err == nil && info < 0 {
		err = fmt.Errorf("cuda: cusolverDnXtrtri(%d): argument %d is invalid", n, -info)
	}
	return info, err
}
