package cuda

import (
	"fmt"
	"sync"
	"unsafe"
)

// cuResult is CUresult; 0 is CUDA_SUCCESS.
type cuResult int32

// Driver API entry points (cuda.h), by the versioned names that CUDA 13's
// macros resolve to (go-deps.md rule 1). CUdeviceptr is uint64; handles are
// uintptr.
var drv struct {
	cuInit                    func(flags uint32) cuResult
	cuDriverGetVersion        func(v *int32) cuResult
	cuDeviceGetCount          func(n *int32) cuResult
	cuDeviceGet               func(dev *int32, ordinal int32) cuResult
	cuDeviceGetName           func(name *byte, n int32, dev int32) cuResult
	cuDeviceGetAttribute      func(v *int32, attr int32, dev int32) cuResult
	cuDeviceTotalMem          func(bytes *uint64, dev int32) cuResult
	cuDevicePrimaryCtxRetain  func(ctx *uintptr, dev int32) cuResult
	cuDevicePrimaryCtxRelease func(dev int32) cuResult
	cuCtxSetCurrent           func(ctx uintptr) cuResult
	cuMemAlloc                func(p *uint64, bytes uint64) cuResult
	cuMemFree                 func(p uint64) cuResult
	cuMemGetInfo              func(free, total *uint64) cuResult
	cuMemcpyHtoDAsync         func(dst uint64, src unsafe.Pointer, bytes uint64, stream uintptr) cuResult
	cuMemcpyDtoHAsync         func(dst unsafe.Pointer, src uint64, bytes uint64, stream uintptr) cuResult
	cuMemcpyDtoDAsync         func(dst, src uint64, bytes uint64, stream uintptr) cuResult
	cuMemsetD8Async           func(dst uint64, v uint8, n uint64, stream uintptr) cuResult
	cuStreamCreate            func(s *uintptr, flags uint32) cuResult
	cuStreamSynchronize       func(s uintptr) cuResult
	cuStreamDestroy           func(s uintptr) cuResult
	cuModuleLoadData          func(mod *uintptr, image unsafe.Pointer) cuResult
	cuModuleUnload            func(mod uintptr) cuResult
	cuModuleGetFunction       func(fn *uintptr, mod uintptr, name string) cuResult
	// Optional: nil where the driver lacks it (only the kernel timeline
	// reads a module's globals).
	cuModuleGetGlobal    func(dptr *uint64, bytes *uint64, mod uintptr, name string) cuResult
	cuFuncSetAttribute   func(fn uintptr, attr int32, v int32) cuResult
	cuLaunchKernel       func(fn uintptr, gx, gy, gz, bx, by, bz, shmem uint32, stream uintptr, params unsafe.Pointer, extra unsafe.Pointer) cuResult
	cuGetErrorName       func(r cuResult, s **byte) cuResult
	cuStreamBeginCapture func(s uintptr, mode int32) cuResult
	cuStreamEndCapture   func(s uintptr, graph *uintptr) cuResult
	cuGraphInstantiate   func(exec *uintptr, graph uintptr, flags uint64) cuResult
	cuGraphLaunch        func(exec uintptr, s uintptr) cuResult
	cuGraphExecDestroy   func(exec uintptr) cuResult
	cuGraphDestroy       func(graph uintptr) cuResult
	// Optional (CUDA 12+): nil where the driver lacks it.
	cuLaunchKernelEx func(cfg unsafe.Pointer, fn uintptr, params unsafe.Pointer, extra unsafe.Pointer) cuResult
	// Optional (CUDA 12+): how many clusters of a launch configuration
	// the device runs at once; nil where the driver lacks it.
	cuOccupancyMaxActiveClusters func(n *int32, fn uintptr, cfg unsafe.Pointer) cuResult
	// Optional: how many blocks of a kernel an SM holds at once; nil where
	// the driver lacks it.
	cuOccupancyMaxActiveBlocksPerMultiprocessor func(n *int32, fn uintptr, blockSize int32, dynamicSMem uint64) cuResult
	// Optional, for timing graph replays (Backend.TimeGraphs): all nil
	// where one is missing.
	cuEventCreate      func(ev *uintptr, flags uint32) cuResult
	cuEventRecord      func(ev, s uintptr) cuResult
	cuEventSynchronize func(ev uintptr) cuResult
	cuEventElapsedTime func(ms *float32, start, end uintptr) cuResult
	cuEventDestroy     func(ev uintptr) cuResult
	// Optional, for draws brought back without a wait (SampleTokensTo):
	// page-locked host memory; nil where one is missing.
	cuMemAllocHost func(p *unsafe.Pointer, bytes uint64) cuResult
	cuMemFreeHost  func(p unsafe.Pointer) cuResult
	// Optional: the device's address of page-locked host memory, for
	// kernels that write the host's memory (DrawGreedy).
	cuMemHostGetDevicePointer func(d *uint64, p unsafe.Pointer, flags uint32) cuResult
	// Optional (CUDA 12+, sm_90's tensor memory accelerator): nil where
	// the driver lacks it.
	cuTensorMapEncodeTiled func(tm unsafe.Pointer, dtype int32, rank uint32, addr uint64, dims, strides, box, estrides unsafe.Pointer,
		interleave, swizzle, l2promo, oobFill int32) cuResult
}

// launchConfig is CUlaunchConfig, launchAttr CUlaunchAttribute (an id and
// a 64-byte value, 8-aligned).
type launchConfig struct {
	gx, gy, gz, bx, by, bz, shared uint32
	stream                         uintptr
	attrs                          unsafe.Pointer
	numAttrs                       uint32
}

type launchAttr struct {
	id  uint32
	_   uint32
	val [64]byte
}

// launchAttrProgrammaticSerialization is
// CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION.
const launchAttrProgrammaticSerialization = 6

// launchAttrClusterDimension is CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION (the
// value: x, y, z as three uint32).
const launchAttrClusterDimension = 4

// Device attributes (CUdevice_attribute).
const (
	attrMaxSharedPerBlockOptin = 97
	attrMaxSharedPerSM         = 81
	attrMultiprocessorCount    = 16
	attrComputeMajor           = 75
	attrComputeMinor           = 76
	attrL2CacheSize            = 38
)

// funcAttrMaxDynamicShared is CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES.
const funcAttrMaxDynamicShared = 8

var (
	drvOnce sync.Once
	drvErr  error
	drvPath string
)

// loadDriver dlopens libcuda and binds the driver API once.
func loadDriver() error {
	drvOnce.Do(func() {
		lib, path, err := openLib("the CUDA driver", libCUDA)
		if err != nil {
			drvErr = err
			return
		}
		drvPath = path
		drvErr = register(lib, path, map[string]any{
			"cuInit":                       &drv.cuInit,
			"cuDriverGetVersion":           &drv.cuDriverGetVersion,
			"cuDeviceGetCount":             &drv.cuDeviceGetCount,
			"cuDeviceGet":                  &drv.cuDeviceGet,
			"cuDeviceGetName":              &drv.cuDeviceGetName,
			"cuDeviceGetAttribute":         &drv.cuDeviceGetAttribute,
			"cuDeviceTotalMem_v2":          &drv.cuDeviceTotalMem,
			"cuDevicePrimaryCtxRetain":     &drv.cuDevicePrimaryCtxRetain,
			"cuDevicePrimaryCtxRelease_v2": &drv.cuDevicePrimaryCtxRelease,
			"cuCtxSetCurrent":              &drv.cuCtxSetCurrent,
			"cuMemAlloc_v2":                &drv.cuMemAlloc,
			"cuMemFree_v2":                 &drv.cuMemFree,
			"cuMemGetInfo_v2":              &drv.cuMemGetInfo,
			"cuMemcpyHtoDAsync_v2":         &drv.cuMemcpyHtoDAsync,
			"cuMemcpyDtoHAsync_v2":         &drv.cuMemcpyDtoHAsync,
			"cuMemcpyDtoDAsync_v2":         &drv.cuMemcpyDtoDAsync,
			"cuMemsetD8Async":              &drv.cuMemsetD8Async,
			"cuStreamCreate":               &drv.cuStreamCreate,
			"cuStreamSynchronize":          &drv.cuStreamSynchronize,
			"cuStreamDestroy_v2":           &drv.cuStreamDestroy,
			"cuModuleLoadData":             &drv.cuModuleLoadData,
			"cuModuleUnload":               &drv.cuModuleUnload,
			"cuModuleGetFunction":          &drv.cuModuleGetFunction,
			"cuFuncSetAttribute":           &drv.cuFuncSetAttribute,
			"cuLaunchKernel":               &drv.cuLaunchKernel,
			"cuGetErrorName":               &drv.cuGetErrorName,
			"cuStreamBeginCapture_v2":      &drv.cuStreamBeginCapture,
			"cuStreamEndCapture":           &drv.cuStreamEndCapture,
			"cuGraphInstantiateWithFlags":  &drv.cuGraphInstantiate,
			"cuGraphLaunch":                &drv.cuGraphLaunch,
			"cuGraphExecDestroy":           &drv.cuGraphExecDestroy,
			"cuGraphDestroy":               &drv.cuGraphDestroy,
		})
		if drvErr == nil {
			if register(lib, path, map[string]any{"cuLaunchKernelEx": &drv.cuLaunchKernelEx}) != nil {
				drv.cuLaunchKernelEx = nil
			}
			if register(lib, path, map[string]any{"cuOccupancyMaxActiveClusters": &drv.cuOccupancyMaxActiveClusters}) != nil {
				drv.cuOccupancyMaxActiveClusters = nil
			}
			if register(lib, path, map[string]any{"cuOccupancyMaxActiveBlocksPerMultiprocessor": &drv.cuOccupancyMaxActiveBlocksPerMultiprocessor}) != nil {
				drv.cuOccupancyMaxActiveBlocksPerMultiprocessor = nil
			}
			if register(lib, path, map[string]any{"cuTensorMapEncodeTiled": &drv.cuTensorMapEncodeTiled}) != nil {
				drv.cuTensorMapEncodeTiled = nil
			}
			if register(lib, path, map[string]any{"cuModuleGetGlobal_v2": &drv.cuModuleGetGlobal}) != nil {
				drv.cuModuleGetGlobal = nil
			}
			if register(lib, path, map[string]any{"cuMemAllocHost_v2": &drv.cuMemAllocHost, "cuMemFreeHost": &drv.cuMemFreeHost}) != nil {
				drv.cuMemAllocHost, drv.cuMemFreeHost = nil, nil
			}
			if register(lib, path, map[string]any{"cuMemHostGetDevicePointer_v2": &drv.cuMemHostGetDevicePointer}) != nil {
				drv.cuMemHostGetDevicePointer = nil
			}
			// CUDA 13's cuda.h maps cuEventElapsedTime and cuEventDestroy to
			// these versioned symbols.
			if register(lib, path, map[string]any{"cuEventCreate": &drv.cuEventCreate, "cuEventRecord": &drv.cuEventRecord,
				"cuEventSynchronize": &drv.cuEventSynchronize, "cuEventElapsedTime_v2": &drv.cuEventElapsedTime,
				"cuEventDestroy_v2": &drv.cuEventDestroy}) != nil {
				drv.cuEventCreate, drv.cuEventRecord, drv.cuEventSynchronize, drv.cuEventElapsedTime, drv.cuEventDestroy = nil, nil, nil, nil, nil
			}
		}
	})
	return drvErr
}

// cuErr turns a CUresult into an error carrying the call and the CUDA
// error name (CUDA_ERROR_OUT_OF_MEMORY, ...), or nil on success.
func cuErr(call string, r cuResult) error {
	if r == 0 {
		return nil
	}
	name := fmt.Sprintf("CUresult %d", int32(r))
	var s *byte
	if drv.cuGetErrorName != nil && drv.cuGetErrorName(r, &s) == 0 && s != nil {
		name = cString(s)
	}
	if r == cuErrorOutOfMemory {
		return &Error{Call: call, Name: name, Code: int32(r), oom: true}
	}
	return &Error{Call: call, Name: name, Code: int32(r)}
}

const cuErrorOutOfMemory cuResult = 2

// Error is a failed CUDA call: the call and the library's error name.
type Error struct {
	Call string
	Name string
	Code int32
	oom  bool
}

func (e *Error) Error() string { return fmt.Sprintf("cuda: %s: %s", e.Call, e.Name) }

// OutOfMemory reports whether err is (or wraps) a device out-of-memory error.
func OutOfMemory(err error) bool {
	for err != nil {
		if e, ok := err.(*Error); ok {
			return e.oom
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// cString copies a NUL-terminated C string.
func cString(p *byte) string {
	if p == nil {
		return ""
	}
	var n int
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}
