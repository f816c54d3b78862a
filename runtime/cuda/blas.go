package cuda

import (
	"fmt"
	"sync"
	"unsafe"
)

type cublasStatus int32

// cuBLAS and cuSOLVER entry points (cublas_api.h, cusolverDn.h); matrices
// are column-major as these libraries define them.
var bl struct {
	cublasCreate        func(h *uintptr) cublasStatus
	cublasDestroy       func(h uintptr) cublasStatus
	cublasSetStream     func(h uintptr, s uintptr) cublasStatus
	cublasSetWorkspace  func(h uintptr, ws uint64, bytes uint64) cublasStatus
	cublasGetStatusName func(s cublasStatus) string
	cublasGemmEx        func(h uintptr, ta, tb int32, m, n, k int32, alpha unsafe.Pointer, A uint64, at int32, lda int32, B uint64, bt int32, ldb int32, beta unsafe.Pointer, C uint64, ct int32, ldc int32, compute int32, algo int32) cublasStatus
	cublasDgemm         func(h uintptr, ta, tb int32, m, n, k int32, alpha *float64, A uint64, lda int32, B uint64, ldb int32, beta *float64, C uint64, ldc int32) cublasStatus

	cusolverDnCreate           func(h *uintptr) cublasStatus
	cusolverDnDestroy          func(h uintptr) cublasStatus
	cusolverDnSetStream        func(h uintptr, s uintptr) cublasStatus
	cusolverDnDpotrfBufferSize func(h uintptr, uplo int32, n int32, A uint64, lda int32, lwork *int32) cublasStatus
	cusolverDnDpotrf           func(h uintptr, uplo int32, n int32, A uint64, lda int32, ws uint64, lwork int32, info uint64) cublasStatus
	cusolverDnXtrtriBufferSize func(h uintptr, uplo, diag int32, n int64, dt int32, A uint64, lda int64, devBytes, hostBytes *uint64) cublasStatus
	cusolverDnXtrtri           func(h uintptr, uplo, diag int32, n int64, dt int32, A uint64, lda int64, dev uint64, devBytes uint64, host unsafe.Pointer, hostBytes uint64, info uint64) cublasStatus
}

// cuBLAS enums.
const (
	opN = 0
	opT = 1

	fillLower   = 0
	fillUpper   = 1
	diagNonUnit = 0

	dtF32  = 0
	dtF64  = 1
	dtF16  = 2
	dtBF16 = 14

	computeF32  = 68
	gemmDefault = -1
)

var (
	blOnce  sync.Once
	blErr   error
	solOnce sync.Once
	solErr  error
)

func loadCUBLAS() error {
	blOnce.Do(func() {
		// cuBLAS needs cuBLASLt; load it first so that a missing Lt is named.
		if _, _, err := openLib("cuBLASLt", libCUBLASLt); err != nil {
			blErr = err
			return
		}
		lib, path, err := openLib("cuBLAS", libCUBLAS)
		if err != nil {
			blErr = err
			return
		}
		blErr = register(lib, path, map[string]any{
			"cublasCreate_v2":       &bl.cublasCreate,
			"cublasDestroy_v2":      &bl.cublasDestroy,
			"cublasSetStream_v2":    &bl.cublasSetStream,
			"cublasSetWorkspace_v2": &bl.cublasSetWorkspace,
			"cublasGetStatusName":   &bl.cublasGetStatusName,
			"cublasGemmEx":          &bl.cublasGemmEx,
			"cublasDgemm_v2":        &bl.cublasDgemm,
		})
	})
	return blErr
}

func loadCUSOLVER() error {
	solOnce.Do(func() {
		if err := loadCUBLAS(); err != nil {
			solErr = err
			return
		}
		lib, path, err := openLib("cuSOLVER", libCUSOLVER)
		if err != nil {
			solErr = err
			return
		}
		solErr = register(lib, path, map[string]any{
			"cusolverDnCreate":            &bl.cusolverDnCreate,
			"cusolverDnDestroy":           &bl.cusolverDnDestroy,
			"cusolverDnSetStream":         &bl.cusolverDnSetStream,
			"cusolverDnDpotrf_bufferSize": &bl.cusolverDnDpotrfBufferSize,
			"cusolverDnDpotrf":            &bl.cusolverDnDpotrf,
			"cusolverDnXtrtri_bufferSize": &bl.cusolverDnXtrtriBufferSize,
			"cusolverDnXtrtri":            &bl.cusolverDnXtrtri,
		})
	})
	return solErr
}

func blasErr(call string, s cublasStatus) error {
	if s == 0 {
		return nil
	}
	name := fmt.Sprintf("cublasStatus %d", int32(s))
	if bl.cublasGetStatusName != nil {
		name = bl.cublasGetStatusName(s)
	}
	return &Error{Call: call, Name: name, Code: int32(s), oom: s == 3}
}

// cusolverStatus names (cusolver_common.h); cuSOLVER has no name function.
var solverNames = map[cublasStatus]string{
	1: "CUSOLVER_STATUS_NOT_INITIALIZED", 2: "CUSOLVER_STATUS_ALLOC_FAILED",
	3: "CUSOLVER_STATUS_INVALID_VALUE", 4: "CUSOLVER_STATUS_ARCH_MISMATCH",
	5: "CUSOLVER_STATUS_MAPPING_ERROR", 6: "CUSOLVER_STATUS_EXECUTION_FAILED",
	7: "CUSOLVER_STATUS_INTERNAL_ERROR", 8: "CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED",
	9: "CUSOLVER_STATUS_NOT_SUPPORTED",
}

func solverErr(call string, s cublasStatus) error {
	if s == 0 {
		return nil
	}
	name, ok := solverNames[s]
	if !ok {
		name = fmt.Sprintf("cusolverStatus %d", int32(s))
	}
	return &Error{Call: call, Name: name, Code: int32(s), oom: s == 2}
}
