package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/gptqtool/gptqtool/formats/half"
)

// TensorInfo names a tensor and gives its dtype and shape (PyTorch dim
// order, row-major).
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int
}

// NumElements returns the product of the shape (1 for a scalar, shape []).
func (t TensorInfo) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// ByteSize returns the data size in bytes: NumElements times the element
// size, rounded up for sub-byte dtypes; 0 for an unknown dtype.
func (t TensorInfo) ByteSize() int {
	return (t.NumElements()*t.DType.Bits() + 7) / 8
}

// Tensor is a tensor read from a file. Data is a zero-copy view into the
// file's memory map: it must not be written to, and it is invalid once the
// File (or Set) it came from is closed.
type Tensor struct {
	TensorInfo
	Data []byte // ByteSize bytes, little-endian, row-major
	File string // path of the file holding the tensor
}

// Float32 returns the tensor's values as a new []float32, converting from
// F32, F16 or BF16. Other dtypes give an error wrapping ErrUnsupportedDType.
func (t Tensor) Float32() ([]float32, error) {
	n := t.NumElements()
	if len(t.Data) != n*t.DType.Size() {
		return nil, fmt.Errorf("%s: tensor %q: %d data bytes, shape %v %s needs %d", t.File, t.Name, len(t.Data), t.Shape, t.DType, n*t.DType.Size())
	}
	out := make([]float32, n)
	switch t.DType {
	case F32:
		if littleEndian && n > 0 {
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), 4*n), t.Data)
			break
		}
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
	case F16:
		half.F16BytesToF32(out, t.Data)
	case BF16:
		half.BF16BytesToF32(out, t.Data)
	default:
		return nil, fmt.Errorf("%s: tensor %q: dtype %s as float32: %w", t.File, t.Name, t.DType, ErrUnsupportedDType)
	}
	return out, nil
}

// Int32 returns the values of an I32 tensor as a new []int32. Other dtypes
// give an error wrapping ErrUnsupportedDType.
func (t Tensor) Int32() ([]int32, error) {
	if t.DType != I32 {
		return nil, fmt.Errorf("%s: tensor %q: dtype %s as int32: %w", t.File, t.Name, t.DType, ErrUnsupportedDType)
	}
	n := t.NumElements()
	if len(t.Data) != 4*n {
		return nil, fmt.Errorf("%s: tensor %q: %d data bytes, shape %v I32 needs %d", t.File, t.Name, len(t.Data), t.Shape, 4*n)
	}
	out := make([]int32, n)
	if littleEndian && n > 0 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), 4*n), t.Data)
		return out, nil
	}
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out, nil
}

// littleEndian reports whether the host stores integers as safetensors does,
// so F32 and I32 data can be copied without per-element decoding.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1
