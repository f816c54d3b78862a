package cuda

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/gptqtool/gptqtool/runtime"
)

// TestRowsMap checks the tensor map rowsMap asks the driver for, against
// cuTensorMapEncodeTiled's documented arguments worked out by hand for x
// [37, 4096] fp16 in boxes of 64 inputs by 64 rows: dims innermost first
// {4096, 37}, the row stride 8192 bytes, box {64, 64}, unit element steps,
// fp16 (6), no interleave, the 128-byte swizzle (3), L2 promotion of 128
// bytes (2), zeros out of bounds (0), written 64-byte aligned; bf16 (9) for
// a bf16 tensor; and the x it refuses (no driver entry, a misaligned
// address, a row width that is not a multiple of 8, more than 256 rows a
// box, fp32). A fake stands in for the
// driver's entry point, so this runs without a GPU.
func TestRowsMap(t *testing.T) {
	prev := drv.cuTensorMapEncodeTiled
	defer func() { drv.cuTensorMapEncodeTiled = prev }()
	b := &Backend{}
	drv.cuTensorMapEncodeTiled = nil
	if _, ok, err := b.rowsMap(1<<20, runtime.F16, 37, 4096, 64); ok || err != nil {
		t.Errorf("no driver entry: ok %v err %v, want not ok", ok, err)
	}
	type call struct {
		tm                                    uintptr
		dtype                                 int32
		rank                                  uint32
		addr                                  uint64
		dims, strides                         [2]uint64
		box, estep                            [2]uint32
		interleave, swizzle, l2promo, oobFill int32
	}
	var got []call
	drv.cuTensorMapEncodeTiled = func(tm unsafe.Pointer, dtype int32, rank uint32, addr uint64, dims, strides, box, estep unsafe.Pointer,
		interleave, swizzle, l2promo, oobFill int32) cuResult {
		c := call{tm: uintptr(tm), dtype: dtype, rank: rank, addr: addr, interleave: interleave, swizzle: swizzle, l2promo: l2promo, oobFill: oobFill}
		c.dims = *(*[2]uint64)(dims)
		c.strides[0] = *(*uint64)(strides)
		c.box = *(*[2]uint32)(box)
		c.estep = *(*[2]uint32)(estep)
		got = append(got, c)
		m := (*TensorMap)(tm)
		for i := range m {
			m[i] = uint64(i) + 1
		}
		return 0
	}
	m, ok, err := b.rowsMap(1<<20, runtime.F16, 37, 4096, 64)
	if !ok || err != nil || len(got) != 1 {
		t.Fatalf("x [37 4096]: ok %v err %v, %d calls", ok, err, len(got))
	}
	want := call{tm: got[0].tm, dtype: 6, rank: 2, addr: 1 << 20, dims: [2]uint64{4096, 37}, strides: [2]uint64{8192}, box: [2]uint32{64, 64},
		estep: [2]uint32{1, 1}, interleave: 0, swizzle: 3, l2promo: 2, oobFill: 0}
	if got[0] != want {
		t.Errorf("encode arguments %+v, want %+v", got[0], want)
	}
	if got[0].tm%64 != 0 {
		t.Errorf("tensor map written at %#x, not 64-byte aligned", got[0].tm)
	}
	if m[0] != 1 || m[15] != 16 {
		t.Errorf("map %v: not the words the driver wrote", m)
	}
	if _, ok, err := b.rowsMap(1<<20, runtime.BF16, 37, 4096, 64); !ok || err != nil || len(got) != 2 {
		t.Fatalf("bf16 x [37 4096]: ok %v err %v, %d calls", ok, err, len(got))
	}
	want.dtype, want.tm = 9, got[1].tm
	if got[1] != want {
		t.Errorf("bf16 encode arguments %+v, want %+v", got[1], want)
	}
	for _, c := range []struct {
		addr             uint64
		dt               runtime.DType
		rows, cols, boxR int
	}{{1<<20 + 8, runtime.F16, 37, 4096, 64}, {1 << 20, runtime.F16, 37, 4100, 64}, {1 << 20, runtime.F16, 300, 4096, 512},
		{1 << 20, runtime.F16, 0, 4096, 64}, {1 << 20, runtime.F32, 37, 4096, 64}} {
		if _, ok, err := b.rowsMap(c.addr, c.dt, c.rows, c.cols, c.boxR); ok || err != nil {
			t.Errorf("%+v: ok %v err %v, want refused", c, ok, err)
		}
	}
	if len(got) != 2 {
		t.Errorf("the driver was asked for %d maps, want 2 (refusals ask none)", len(got))
	}
	// A driver error comes back with the call named.
	drv.cuTensorMapEncodeTiled = func(unsafe.Pointer, int32, uint32, uint64, unsafe.Pointer, unsafe.Pointer, unsafe.Pointer, unsafe.Pointer,
		int32, int32, int32, int32) cuResult {
		return 1
	}
	if _, ok, err := b.rowsMap(1<<20, runtime.F16, 37, 4096, 64); ok || err == nil {
		t.Errorf("driver error: ok %v err %v, want an error", ok, err)
	} else if want := "cuTensorMapEncodeTiled([37 4096] F16, boxes of 64 × 64)"; !strings.Contains(err.Error(), want) {
		t.Errorf("driver error %q does not name %q", err, want)
	}
}
