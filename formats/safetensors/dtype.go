package safetensors

import (
	"errors"
	"fmt"
	"strings"
)

// DType is a safetensors element type as spelled in the header ("F32").
type DType string

// The dtypes this package converts. Others are recognised (see Recognised)
// and their bytes can be viewed and copied, but not converted.
const (
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I32  DType = "I32"
	I8   DType = "I8"
	U8   DType = "U8"
)

// ErrUnsupportedDType reports a dtype this package cannot convert or does not
// know. Errors wrapping it name the file, the tensor and the dtype.
var ErrUnsupportedDType = errors.New("unsupported dtype")

// dtypeBits is the element width in bits of every dtype the safetensors
// format defines (safetensors Rust crate, Dtype::bitsize).
var dtypeBits = map[DType]int{
	"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
	"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
	"I16": 16, "U16": 16, "F16": 16, "BF16": 16,
	"I32": 32, "U32": 32, "F32": 32,
	"I64": 64, "U64": 64, "F64": 64, "C64": 64,
}

// Size returns the bytes per element of d: 0 for an unknown dtype and for
// the sub-byte dtypes F4, F6_E2M3 and F6_E3M2.
func (d DType) Size() int {
	b := dtypeBits[d]
	if b%8 != 0 {
		return 0
	}
	return b / 8
}

// Bits returns the element width of d in bits, 0 if d is unknown.
func (d DType) Bits() int { return dtypeBits[d] }

// Supported reports whether d is one of F32, F16, BF16, I32, I8, U8.
func (d DType) Supported() bool {
	switch d {
	case F32, F16, BF16, I32, I8, U8:
		return true
	}
	return false
}

// ParseFloatDType returns the float dtype a user's name stands for, in any
// case: f32, fp32, float32 or float; f16, fp16, float16 or half; bf16 or
// bfloat16 (the names of PyTorch, transformers and llama.cpp). ok is false
// for any other name. This is the one list of these names: convert's
// --dtype and the --dtype of the commands that load a model read it.
func ParseFloatDType(name string) (d DType, ok bool) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "f32", "fp32", "float32", "float":
		return F32, true
	case "f16", "fp16", "float16", "half":
		return F16, true
	case "bf16", "bfloat16":
		return BF16, true
	}
	return "", false
}

// TorchName returns the torch dtype name of a float dtype as a config's
// torch_dtype spells it ("float32", "float16", "bfloat16"), "" for others.
func (d DType) TorchName() string {
	switch d {
	case F32:
		return "float32"
	case F16:
		return "float16"
	case BF16:
		return "bfloat16"
	}
	return ""
}

// Recognised reports whether d is a dtype of the safetensors format,
// supported or not.
func (d DType) Recognised() bool { return dtypeBits[d] != 0 }

// byteSize returns the data size of n elements of d, or an error if d is
// unknown, the size overflows, or sub-byte elements do not fill whole bytes.
func byteSize(d DType, n int64) (int64, error) {
	bits := int64(dtypeBits[d])
	if bits == 0 {
		return 0, fmt.Errorf("dtype %q: %w", string(d), ErrUnsupportedDType)
	}
	if n > maxInt64/bits {
		return 0, fmt.Errorf("%d elements of %s overflow int64 bytes", n, d)
	}
	if n*bits%8 != 0 {
		return 0, fmt.Errorf("%d elements of %s do not fill whole bytes", n, d)
	}
	return n * bits / 8, nil
}

const maxInt64 = 1<<63 - 1
