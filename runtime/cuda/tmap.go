package cuda

import (
	"fmt"
	"unsafe"

	"github.com/gptqtool/gptqtool/runtime"
)

// TensorMap is a CUtensorMap: the description of a tiled tensor in device
// memory that sm_90's tensor memory accelerator copies boxes of into
// shared memory (cp.async.bulk.tensor), passed to a kernel by value as a
// __grid_constant__ parameter (kernels/qgemv.cu's TMap).
type TensorMap [16]uint64

// CUtensorMapEncodeTiled's enums (cuda.h).
const (
	tmapFloat16    = 6 // CU_TENSOR_MAP_DATA_TYPE_FLOAT16
	tmapBFloat16   = 9 // CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
	tmapSwizzle128 = 3 // CU_TENSOR_MAP_SWIZZLE_128B
	tmapL2Promo128 = 2 // CU_TENSOR_MAP_L2_PROMOTION_L2_128B
)

// tmapScratch is where cuTensorMapEncodeTiled writes: 64-byte aligned, as
// CUtensorMap is.
type tmapScratch struct {
	buf           [24]uint64
	dims, strides [2]uint64
	box, estep    [2]uint32
}

// rowsMap describes x [rows, cols] of 16-bit dt (fp16 or bf16) at device
// address addr (rows cols·2 bytes apart) in boxes of 64 columns (128
// bytes) by boxRows rows,
// copied into shared memory in the 128-byte swizzle that warpgroup MMA
// reads its K-major operands in (kernels/qgemv.cu's wg_desc). Rows past
// rows and columns past cols arrive as zeros. ok is false where the driver
// has no tensor maps or x does not fit their rules (address 16-byte
// aligned, cols a multiple of 8).
func (b *Backend) rowsMap(addr uint64, dt runtime.DType, rows, cols, boxRows int) (m TensorMap, ok bool, err error) {
	kind := int32(tmapFloat16)
	if dt == runtime.BF16 {
		kind = tmapBFloat16
	}
	if drv.cuTensorMapEncodeTiled == nil || addr%16 != 0 || cols%8 != 0 || rows <= 0 || boxRows <= 0 || boxRows > 256 ||
		(dt != runtime.F16 && dt != runtime.BF16) {
		return m, false, nil
	}
	s := &b.tmaps
	p := unsafe.Pointer(&s.buf[0])
	if off := uintptr(p) % 64; off != 0 {
		p = unsafe.Add(p, 64-off)
	}
	s.dims = [2]uint64{uint64(cols), uint64(rows)}
	s.strides = [2]uint64{uint64(cols) * 2}
	s.box = [2]uint32{64, uint32(boxRows)}
	s.estep = [2]uint32{1, 1}
	r := drv.cuTensorMapEncodeTiled(p, kind, 2, addr, unsafe.Pointer(&s.dims[0]), unsafe.Pointer(&s.strides[0]),
		unsafe.Pointer(&s.box[0]), unsafe.Pointer(&s.estep[0]), 0, tmapSwizzle128, tmapL2Promo128, 0)
	if err := cuErr(fmt.Sprintf("cuTensorMapEncodeTiled([%d %d] %v, boxes of 64 × %d)", rows, cols, dt, boxRows), r); err != nil {
		return m, false, err
	}
	m = *(*TensorMap)(p)
	return m, true, nil
}
