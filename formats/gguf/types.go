package gguf

import (
	"errors"
	"fmt"
	"strings"
)

// TensorType is a ggml tensor type (enum ggml_type in ggml.h), the type
// field of a GGUF tensor info.
type TensorType uint32

// The ggml tensor types (spec: docs/gguf.md, enum ggml_type). Values 4, 5,
// 31-33 and 36-38 were removed from ggml and are not valid in files.
const (
	TypeF32     TensorType = 0
	TypeF16     TensorType = 1
	TypeQ4_0    TensorType = 2
	TypeQ4_1    TensorType = 3
	TypeQ5_0    TensorType = 6
	TypeQ5_1    TensorType = 7
	TypeQ8_0    TensorType = 8
	TypeQ8_1    TensorType = 9
	TypeQ2_K    TensorType = 10
	TypeQ3_K    TensorType = 11
	TypeQ4_K    TensorType = 12
	TypeQ5_K    TensorType = 13
	TypeQ6_K    TensorType = 14
	TypeQ8_K    TensorType = 15
	TypeIQ2_XXS TensorType = 16
	TypeIQ2_XS  TensorType = 17
	TypeIQ3_XXS TensorType = 18
	TypeIQ1_S   TensorType = 19
	TypeIQ4_NL  TensorType = 20
	TypeIQ3_S   TensorType = 21
	TypeIQ2_S   TensorType = 22
	TypeIQ4_XS  TensorType = 23
	TypeI8      TensorType = 24
	TypeI16     TensorType = 25
	TypeI32     TensorType = 26
	TypeI64     TensorType = 27
	TypeF64     TensorType = 28
	TypeIQ1_M   TensorType = 29
	TypeBF16    TensorType = 30
	TypeTQ1_0   TensorType = 34
	TypeTQ2_0   TensorType = 35
	TypeMXFP4   TensorType = 39
	TypeNVFP4   TensorType = 40
	TypeQ1_0    TensorType = 41
)

// QK8_0 is the number of elements in a Q8_0 block, QK_K in a K-quant
// super-block (ggml-common.h).
const (
	QK8_0 = 32
	QK_K  = 256
)

// Block sizes in bytes of the types this package quantizes
// (ggml-common.h: block_q8_0, block_q2_K, block_q3_K, block_q4_K,
// block_q5_K, block_q6_K).
const (
	// BlockBytesQ8_0 is sizeof(block_q8_0): fp16 d + 32 int8 quants.
	BlockBytesQ8_0 = 2 + QK8_0
	// BlockBytesQ2_K is sizeof(block_q2_K): 16 bytes of 4-bit scale and
	// min pairs, 64 bytes of 2-bit quants, fp16 d, fp16 dmin.
	BlockBytesQ2_K = QK_K/16 + QK_K/4 + 2 + 2
	// BlockBytesQ3_K is sizeof(block_q3_K): 32 bytes of the quants' third
	// bits, 64 bytes of their low 2 bits, 12 bytes of packed 6-bit scales,
	// fp16 d.
	BlockBytesQ3_K = QK_K/8 + QK_K/4 + 12 + 2
	// BlockBytesQ4_K is sizeof(block_q4_K): fp16 d, fp16 dmin, 12 bytes of
	// packed 6-bit scales and mins, 128 bytes of 4-bit quants.
	BlockBytesQ4_K = 2 + 2 + 12 + QK_K/2
	// BlockBytesQ5_K is sizeof(block_q5_K): Q4_K's fields, then 32 bytes
	// of the quants' fifth bits.
	BlockBytesQ5_K = 2 + 2 + 12 + QK_K/8 + QK_K/2
	// BlockBytesQ6_K is sizeof(block_q6_K): 128 bytes of low 4 bits, 64 of
	// high 2 bits, 16 int8 scales, fp16 d.
	BlockBytesQ6_K = QK_K/2 + QK_K/4 + QK_K/16 + 2
)

// ErrUnsupportedType is wrapped by errors for tensor types this package
// recognises (it can size and copy them) but cannot convert to or from
// float32.
var ErrUnsupportedType = errors.New("unsupported tensor type")

type typeTraits struct {
	name       string
	blockSize  int // elements per block
	blockBytes int // bytes per block
}

// traits lists every type a GGUF file may hold with ggml's block size and
// block bytes (ggml.c type_traits; ggml-common.h block structs).
var traits = map[TensorType]typeTraits{
	TypeF32:     {"F32", 1, 4},
	TypeF16:     {"F16", 1, 2},
	TypeQ4_0:    {"Q4_0", QK4_0, BlockBytesQ4_0},
	TypeQ4_1:    {"Q4_1", QK4_0, BlockBytesQ4_1},
	TypeQ5_0:    {"Q5_0", QK4_0, BlockBytesQ5_0},
	TypeQ5_1:    {"Q5_1", QK4_0, BlockBytesQ5_1},
	TypeQ8_0:    {"Q8_0", QK8_0, BlockBytesQ8_0},
	TypeQ8_1:    {"Q8_1", 32, 2 + 2 + 32},
	TypeQ2_K:    {"Q2_K", QK_K, BlockBytesQ2_K},
	TypeQ3_K:    {"Q3_K", QK_K, BlockBytesQ3_K},
	TypeQ4_K:    {"Q4_K", QK_K, BlockBytesQ4_K},
	TypeQ5_K:    {"Q5_K", QK_K, BlockBytesQ5_K},
	TypeQ6_K:    {"Q6_K", QK_K, BlockBytesQ6_K},
	TypeQ8_K:    {"Q8_K", QK_K, 4 + QK_K + QK_K/16*2},
	TypeIQ2_XXS: {"IQ2_XXS", QK_K, 2 + QK_K/4},
	TypeIQ2_XS:  {"IQ2_XS", QK_K, 2 + QK_K/4 + QK_K/32},
	TypeIQ3_XXS: {"IQ3_XXS", QK_K, 2 + 3*QK_K/8},
	TypeIQ1_S:   {"IQ1_S", QK_K, 2 + QK_K/8 + QK_K/16},
	TypeIQ4_NL:  {"IQ4_NL", QK4_NL, BlockBytesIQ4_NL},
	TypeIQ3_S:   {"IQ3_S", QK_K, 2 + QK_K/4 + QK_K/32 + QK_K/8 + QK_K/64},
	TypeIQ2_S:   {"IQ2_S", QK_K, 2 + QK_K/4 + QK_K/32 + QK_K/32},
	TypeIQ4_XS:  {"IQ4_XS", QK_K, BlockBytesIQ4_XS},
	TypeI8:      {"I8", 1, 1},
	TypeI16:     {"I16", 1, 2},
	TypeI32:     {"I32", 1, 4},
	TypeI64:     {"I64", 1, 8},
	TypeF64:     {"F64", 1, 8},
	TypeIQ1_M:   {"IQ1_M", QK_K, QK_K/8 + QK_K/16 + QK_K/32},
	TypeBF16:    {"BF16", 1, 2},
	TypeTQ1_0:   {"TQ1_0", QK_K, (QK_K-4*QK_K/64)/5 + QK_K/64 + 2},
	TypeTQ2_0:   {"TQ2_0", QK_K, QK_K/4 + 2},
	TypeMXFP4:   {"MXFP4", 32, 1 + 16},
	TypeNVFP4:   {"NVFP4", 64, 4 + 32},
	TypeQ1_0:    {"Q1_0", 128, 2 + 16},
}

// String returns ggml's name of t ("Q4_K"), or "type(N)" for an unknown type.
func (t TensorType) String() string {
	if tr, ok := traits[t]; ok {
		return tr.name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// Known reports whether t is a ggml type a GGUF file may hold.
func (t TensorType) Known() bool { _, ok := traits[t]; return ok }

// BlockSize returns the number of elements in one block of t (1 for the
// plain types, 32 for Q8_0, 256 for Q4_K), 0 for an unknown type.
func (t TensorType) BlockSize() int { return traits[t].blockSize }

// BlockBytes returns the size in bytes of one block of t, 0 for an unknown
// type.
func (t TensorType) BlockBytes() int { return traits[t].blockBytes }

// Convertible reports whether this package converts t to and from float32:
// F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS, Q8_0, Q2_K to
// Q6_K, IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S and IQ1_M (IQ2_XXS,
// IQ2_XS and IQ1_S only with importances: EncodeWeighted).
func (t TensorType) Convertible() bool {
	switch t {
	case TypeF32, TypeF16, TypeBF16, TypeQ8_0, TypeQ4_0, TypeQ4_1, TypeQ5_0, TypeQ5_1, TypeIQ4_NL, TypeIQ4_XS,
		TypeQ2_K, TypeQ3_K, TypeQ4_K, TypeQ5_K, TypeQ6_K,
		TypeIQ2_XXS, TypeIQ2_XS, TypeIQ2_S,
		TypeIQ1_S, TypeIQ1_M:
		return true
	case TypeIQ3_XXS, TypeIQ3_S:
		return true
	}
	return false
}

// RowBytes returns the bytes taken by a row of n elements of t, or an error
// if t is unknown or n is not a multiple of its block size (ggml quantizes
// rows, the innermost dimension, block by block).
func (t TensorType) RowBytes(n int64) (int64, error) {
	tr, ok := traits[t]
	if !ok {
		return 0, fmt.Errorf("unknown tensor type %d", uint32(t))
	}
	if n < 0 {
		return 0, fmt.Errorf("negative row length %d", n)
	}
	if n%int64(tr.blockSize) != 0 {
		return 0, fmt.Errorf("row length %d is not a multiple of the %s block size %d", n, tr.name, tr.blockSize)
	}
	blocks := n / int64(tr.blockSize)
	if blocks > maxInt64/int64(tr.blockBytes) {
		return 0, fmt.Errorf("row of %d %s elements overflows int64 bytes", n, tr.name)
	}
	return blocks * int64(tr.blockBytes), nil
}

// ParseTensorType parses a type name as ggml spells it, case-insensitively
// ("f16", "Q4_K", "q8_0").
func ParseTensorType(s string) (TensorType, error) {
	for t, tr := range traits {
		if strings.EqualFold(s, tr.name) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown tensor type %q", s)
}

// ValueType is the type of a GGUF metadata value (enum
// gguf_metadata_value_type).
type ValueType uint32

// The GGUF metadata value types (spec: docs/gguf.md).
const (
	ValueUint8   ValueType = 0
	ValueInt8    ValueType = 1
	ValueUint16  ValueType = 2
	ValueInt16   ValueType = 3
	ValueUint32  ValueType = 4
	ValueInt32   ValueType = 5
	ValueFloat32 ValueType = 6
	ValueBool    ValueType = 7
	ValueString  ValueType = 8
	ValueArray   ValueType = 9
	ValueUint64  ValueType = 10
	ValueInt64   ValueType = 11
	ValueFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

// String returns the spec's name of v ("uint32"), or "value_type(N)".
func (v ValueType) String() string {
	if int(v) < len(valueTypeNames) {
		return valueTypeNames[v]
	}
	return fmt.Sprintf("value_type(%d)", uint32(v))
}

// scalarBytes returns the encoded size of a fixed-size value type, 0 for
// string, array and unknown types.
func (v ValueType) scalarBytes() int {
	switch v {
	case ValueUint8, ValueInt8, ValueBool:
		return 1
	case ValueUint16, ValueInt16:
		return 2
	case ValueUint32, ValueInt32, ValueFloat32:
		return 4
	case ValueUint64, ValueInt64, ValueFloat64:
		return 8
	}
	return 0
}

const maxInt64 = 1<<63 - 1
