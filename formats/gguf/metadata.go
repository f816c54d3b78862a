package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
)

// KV is one metadata key-value pair. Value holds one of the Go types that
// map one to one onto GGUF value types:
//
//	uint8 int8 uint16 int16 uint32 int32 uint64 int64 float32 float64 bool string
//	[]uint8 []int8 []uint16 []int16 []uint32 []int32 []uint64 []int64
//	[]float32 []float64 []bool []string   arrays of those types
//	[]any                                  an array of arrays, each element one
//	                                       of the slice types above (all of the
//	                                       same element type)
//
// The reader produces exactly these types, so a file read and written back
// keeps every value type.
type KV struct {
	Key   string
	Value any
}

// TypeOf returns the GGUF value type of v and, for an array, its element
// type; ok is false when v is not one of KV's value types.
func TypeOf(v any) (typ, elem ValueType, ok bool) {
	switch x := v.(type) {
	case uint8:
		return ValueUint8, 0, true
	case int8:
		return ValueInt8, 0, true
	case uint16:
		return ValueUint16, 0, true
	case int16:
		return ValueInt16, 0, true
	case uint32:
		return ValueUint32, 0, true
	case int32:
		return ValueInt32, 0, true
	case uint64:
		return ValueUint64, 0, true
	case int64:
		return ValueInt64, 0, true
	case float32:
		return ValueFloat32, 0, true
	case float64:
		return ValueFloat64, 0, true
	case bool:
		return ValueBool, 0, true
	case string:
		return ValueString, 0, true
	case []uint8:
		return ValueArray, ValueUint8, true
	case []int8:
		return ValueArray, ValueInt8, true
	case []uint16:
		return ValueArray, ValueUint16, true
	case []int16:
		return ValueArray, ValueInt16, true
	case []uint32:
		return ValueArray, ValueUint32, true
	case []int32:
		return ValueArray, ValueInt32, true
	case []uint64:
		return ValueArray, ValueUint64, true
	case []int64:
		return ValueArray, ValueInt64, true
	case []float32:
		return ValueArray, ValueFloat32, true
	case []float64:
		return ValueArray, ValueFloat64, true
	case []bool:
		return ValueArray, ValueBool, true
	case []string:
		return ValueArray, ValueString, true
	case []any:
		for _, e := range x {
			if t, _, ok := TypeOf(e); !ok || t != ValueArray {
				return 0, 0, false
			}
		}
		return ValueArray, ValueArray, true
	}
	return 0, 0, false
}

// appendValue appends the encoding of v (without its type tag) to b.
func appendValue(b []byte, v any) ([]byte, error) {
	le := binary.LittleEndian
	switch x := v.(type) {
	case uint8:
		return append(b, x), nil
	case int8:
		return append(b, byte(x)), nil
	case uint16:
		return le.AppendUint16(b, x), nil
	case int16:
		return le.AppendUint16(b, uint16(x)), nil
	case uint32:
		return le.AppendUint32(b, x), nil
	case int32:
		return le.AppendUint32(b, uint32(x)), nil
	case uint64:
		return le.AppendUint64(b, x), nil
	case int64:
		return le.AppendUint64(b, uint64(x)), nil
	case float32:
		return le.AppendUint32(b, math.Float32bits(x)), nil
	case float64:
		return le.AppendUint64(b, math.Float64bits(x)), nil
	case bool:
		if x {
			return append(b, 1), nil
		}
		return append(b, 0), nil
	case string:
		return appendString(b, x), nil
	}
	_, elem, ok := TypeOf(v)
	if !ok {
		return nil, fmt.Errorf("value of Go type %T has no GGUF type", v)
	}
	b = le.AppendUint32(b, uint32(elem))
	switch x := v.(type) {
	case []uint8:
		return appendArray(le.AppendUint64(b, uint64(len(x))), x)
	case []int8:
		return appendArray(le.AppendUint64(b, uint64(len(x))), x)
	case []uint16:
		return appendArray(le.AppendUint64(b, uint64(len(x))), x)
	case []int16:
		return appendArray(le.AppendUint64(b, uint64(len(x))), x)
	case []uint32:
		return appendArray(le.AppendUint64(b, uint64(len(x))), x)
	case []int32:
		return appendArray(le.AppendUint64(b, uint64(len(x))), x)
	case []uint64:
		return appendArray(le.AppendUint64(b, uint64(len(x))), x)
	case []int64:
		return appendArray(le.AppendUint64(b, uint64(len(x))), x)
	case []float32:
		return appendArray(le.AppendUint64(b, uint64(len(x))), x)
	case []float64:
		return appendArray(le.AppendUint64(b, uint64(len(x))), x)
	case []bool:
		return appendArray(le.AppendUint64(b, uint64(len(x))), x)
	case []string:
		return appendArray(le.AppendUint64(b, uint64(len(x))), x)
	case []any:
		// An array of arrays: every element must share one element type,
		// as the outer array's type tag says only "array".
		b = le.AppendUint64(b, uint64(len(x)))
		var first ValueType
		for i, e := range x {
			_, et, _ := TypeOf(e)
			if i == 0 {
				first = et
			} else if et != first {
				return nil, fmt.Errorf("array of arrays: element %d holds %s, element 0 holds %s", i, et, first)
			}
			var err error
			if b, err = appendValue(b, e); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	return nil, fmt.Errorf("value of Go type %T has no GGUF type", v)
}

func appendArray[T any](b []byte, xs []T) ([]byte, error) {
	var err error
	for _, x := range xs {
		if b, err = appendValue(b, any(x)); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}
