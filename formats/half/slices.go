package half

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// ParallelThreshold is the element count above which the slice converters
// split their work across GOMAXPROCS goroutines.
const ParallelThreshold = 1 << 20

// f16Table maps every fp16 bit pattern to its fp32 value (256 KiB).
var f16Table = func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = math.Float32frombits(f16ToF32Bits(uint16(i)))
	}
	return &t
}()

// parallel runs fn over [0,n) in contiguous chunks, one per CPU, when n is
// large; fn(lo, hi) must only touch elements lo..hi-1.
func parallel(n int, fn func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if n <= ParallelThreshold || workers < 2 {
		fn(0, n)
		return
	}
	chunk := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

func checkLen(op string, nHalf, nBytes int) {
	if nBytes != 2*nHalf {
		panic(fmt.Sprintf("half.%s: %d bytes for %d elements, want %d bytes", op, nBytes, nHalf, 2*nHalf))
	}
}

// F16BytesToF32 decodes little-endian fp16 values from src into dst.
// It panics unless len(src) == 2*len(dst).
func F16BytesToF32(dst []float32, src []byte) {
	checkLen("F16BytesToF32", len(dst), len(src))
	parallel(len(dst), func(lo, hi int) {
		d := dst[lo:hi]
		s := src[2*lo : 2*hi]
		t := f16Table
		for i := range d {
			d[i] = t[uint16(s[2*i])|uint16(s[2*i+1])<<8]
		}
	})
}

// BF16BytesToF32 decodes little-endian bf16 values from src into dst.
// It panics unless len(src) == 2*len(dst).
func BF16BytesToF32(dst []float32, src []byte) {
	checkLen("BF16BytesToF32", len(dst), len(src))
	parallel(len(dst), func(lo, hi int) {
		d := dst[lo:hi]
		s := src[2*lo : 2*hi]
		for i := range d {
			d[i] = math.Float32frombits(uint32(s[2*i])<<16 | uint32(s[2*i+1])<<24)
		}
	})
}

// F32ToF16Bytes encodes src as little-endian fp16 values into dst, rounding
// as F32ToF16 does. It panics unless len(dst) == 2*len(src).
func F32ToF16Bytes(dst []byte, src []float32) {
	checkLen("F32ToF16Bytes", len(src), len(dst))
	parallel(len(src), func(lo, hi int) {
		s := src[lo:hi]
		d := dst[2*lo : 2*hi]
		for i, f := range s {
			d[2*i], d[2*i+1] = f32ToF16Pair(f)
		}
	})
}

// F32ToBF16Bytes encodes src as little-endian bf16 values into dst, rounding
// as F32ToBF16 does. It panics unless len(dst) == 2*len(src).
func F32ToBF16Bytes(dst []byte, src []float32) {
	checkLen("F32ToBF16Bytes", len(src), len(dst))
	parallel(len(src), func(lo, hi int) {
		s := src[lo:hi]
		d := dst[2*lo : 2*hi]
		for i, f := range s {
			h := F32ToBF16(f)
			d[2*i] = byte(h)
			d[2*i+1] = byte(h >> 8)
		}
	})
}

// f32ToF16Pair is F32ToF16 with a branch-light path for magnitudes in the
// fp16 normal range [2^-14, 65536), returning the result's low and high
// bytes. Rebiasing the exponent by subtraction keeps the fp32 mantissa
// aligned, so one add performs round-to-nearest-even, and a carry out of the
// mantissa lands in the exponent (up to Inf) as it should.
func f32ToF16Pair(f float32) (lo, hi byte) {
	b := math.Float32bits(f)
	abs := b & 0x7fffffff
	if abs-0x38800000 < 0x47800000-0x38800000 {
		h := uint16(b>>16)&0x8000 | uint16((abs-0x38000000+0xfff+(abs>>13)&1)>>13)
		return byte(h), byte(h >> 8)
	}
	h := F32ToF16(f)
	return byte(h), byte(h >> 8)
}
