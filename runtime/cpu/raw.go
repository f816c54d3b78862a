package cpu

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/runtime"
)

// DTypes implements runtime.Backend: the CPU backend computes in fp32 only,
// but for WithHalf's F16 and BF16 tensors.
func (b *Backend) DTypes() []runtime.DType {
	if b.half {
		return []runtime.DType{runtime.F32, runtime.F16, runtime.BF16}
	}
	return []runtime.DType{runtime.F32}
}

// UploadRaw implements runtime.Backend, converting F16/BF16 bytes to fp32
// (and rounding to an F16 or BF16 tensor's dtype where it differs).
func (b *Backend) UploadRaw(t runtime.Tensor, src []byte, dt runtime.DType) error {
	ct := tensorOf(t)
	if (dt == runtime.I32) != ct.i32 {
		return fmt.Errorf("cpu: upload raw %v into %v tensor %v", dt, ct.DType(), ct.shape)
	}
	if ct.i32 {
		if len(src) != 4*len(ct.ints) {
			return fmt.Errorf("cpu: upload %d bytes of I32 into tensor %v (want %d)", len(src), ct.shape, 4*len(ct.ints))
		}
		for i := range ct.ints {
			ct.ints[i] = int32(binary.LittleEndian.Uint32(src[4*i:]))
		}
		return nil
	}
	if len(src) != len(ct.data)*dt.Size() {
		return fmt.Errorf("cpu: upload %d bytes of %v into tensor %v (want %d)", len(src), dt, ct.shape, len(ct.data)*dt.Size())
	}
	switch dt {
	case runtime.F32:
		for i := range ct.data {
			ct.data[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case runtime.F16:
		half.F16BytesToF32(ct.data, src)
	case runtime.BF16:
		half.BF16BytesToF32(ct.data, src)
	}
	if dt != ct.dt {
		b.round(ct)
	}
	return nil
}

// DownloadRaw implements runtime.Backend, rounding to nearest even for
// F16/BF16.
func (b *Backend) DownloadRaw(dst []byte, dt runtime.DType, t runtime.Tensor) error {
	ct := tensorOf(t)
	if (dt == runtime.I32) != ct.i32 {
		return fmt.Errorf("cpu: download %v tensor %v as %v", ct.DType(), ct.shape, dt)
	}
	if ct.i32 {
		if len(dst) != 4*len(ct.ints) {
			return fmt.Errorf("cpu: download tensor %v into %d bytes of I32 (want %d)", ct.shape, len(dst), 4*len(ct.ints))
		}
		for i, v := range ct.ints {
			binary.LittleEndian.PutUint32(dst[4*i:], uint32(v))
		}
		return nil
	}
	vals := ct.values()
	if len(dst) != len(vals)*dt.Size() {
		return fmt.Errorf("cpu: download tensor %v into %d bytes of %v (want %d)", ct.shape, len(dst), dt, len(vals)*dt.Size())
	}
	switch dt {
	case runtime.F32:
		for i, v := range vals {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case runtime.F16:
		half.F32ToF16Bytes(dst, vals)
	case runtime.BF16:
		half.F32ToBF16Bytes(dst, vals)
	}
	return nil
}

// Gram implements runtime.Backend. It forms the whole product (both
// triangles) with the MatMul kernels: xt [K, rows] holds the masked rows
// transposed, and dst += xt·xtᵀ.
func (b *Backend) Gram(dst, x, mask runtime.Tensor) {
	d, xt := tensorOf(dst), tensorOf(x)
	rows, K := xt.rows(), xt.cols()
	if d.rows() != K || d.cols() != K {
		panic(fmt.Sprintf("cpu: gram dst %v for x %v", d.shape, xt.shape))
	}
	var m []float32
	if mask != nil {
		mt := tensorOf(mask)
		if mt.Len() != rows {
			panic(fmt.Sprintf("cpu: gram mask %v for x %v", mt.shape, xt.shape))
		}
		m = mt.data
	}
	tr := make([]float32, K*rows)
	b.parallelRange(K, 16, func(lo, hi int) {
		for k := lo; k < hi; k++ {
			for r := range rows {
				v := xt.data[r*K+k]
				if m != nil {
					v *= m[r]
				}
				tr[k*rows+r] = v
			}
		}
	})
	prod := make([]float32, K*K)
	b.matmul(prod, tr, tr, K, K, rows)
	for i, v := range prod {
		d.data[i] += v
	}
}
