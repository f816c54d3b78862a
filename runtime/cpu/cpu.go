package cpu

import (
	"fmt"
	goruntime "runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/gptqtool/gptqtool/runtime"
)

// Backend is the fp32 CPU backend. Create it with New.
type Backend struct {
	threads int
	kern    kernels
	greedy  greedySlots
	// half: F16 and BF16 tensors are allocated too (WithHalf).
	half bool
	// mem counts the bytes of tensor storage allocated and not freed
	// (Resident), shared with the backends made from this one.
	mem *atomic.Int64
}

// New returns a CPU backend running ops on threads goroutines
// (0 = runtime.NumCPU()).
func New(threads int) *Backend {
	if threads <= 0 {
		threads = goruntime.NumCPU()
	}
	return &Backend{threads: threads, kern: bestKernels(), mem: new(atomic.Int64)}
}

// NewPortable is New without the assembly kernels: every op in portable Go.
// Tests use it to check the assembly against plain loops.
func NewPortable(threads int) *Backend {
	b := New(threads)
	b.kern = goKernels
	return b
}

// WithThreads returns a backend like b with n worker goroutines per op
// (tensors of either may be used with the other). Callers that run
// several independent computations at once give each a share of the
// threads.
func (b *Backend) WithThreads(n int) runtime.Backend {
	return &Backend{threads: max(n, 1), kern: b.kern, half: b.half, mem: b.resident()}
}

// Threads reports the number of worker goroutines.
func (b *Backend) Threads() int { return b.threads }

// Name implements runtime.Backend.
func (b *Backend) Name() string {
	if b.half {
		return fmt.Sprintf("cpu(%d,%s,half)", b.threads, b.kern.name)
	}
	return fmt.Sprintf("cpu(%d,%s)", b.threads, b.kern.name)
}

// Tensor is a CPU tensor: fp32 data in row-major order, or for I32
// tensors (the per-token indices of runtime.PagedDecoder) int32 data. An
// F16 or BF16 tensor (WithHalf) holds fp32 values that its dtype
// represents exactly.
type Tensor struct {
	shape []int
	data  []float32
	ints  []int32
	i32   bool
	dt    runtime.DType // F32, F16 or BF16 for data
	// q is a packed quantized weight (LoadQuant), which only MatMul and
	// MatMulAdd read, as their w; data is nil.
	q *qweight
	// h is a 16-bit weight (LoadWeight), read the same way.
	h *hweight
	// size is the bytes Alloc or LoadQuant counted for the tensor
	// (Resident); 0 for a View or Reshape.
	size int64
}

// DType implements runtime.Tensor: F32 (or F16/BF16), or I32 for index
// tensors.
func (t *Tensor) DType() runtime.DType {
	if t.i32 {
		return runtime.I32
	}
	return t.dt
}

// Shape implements runtime.Tensor.
func (t *Tensor) Shape() []int { return t.shape }

// Len implements runtime.Tensor.
func (t *Tensor) Len() int {
	if t.i32 {
		return len(t.ints)
	}
	if t.q != nil {
		return t.q.n * t.q.k
	}
	if t.h != nil {
		return t.h.n * t.h.k
	}
	return len(t.data)
}

// Data returns the tensor's storage (no copy).
func (t *Tensor) Data() []float32 { return t.data }

func (t *Tensor) rows() int { return runtime.Rows(t) }
func (t *Tensor) cols() int { return runtime.Cols(t) }

func tensorOf(t runtime.Tensor) *Tensor {
	ct, ok := t.(*Tensor)
	if !ok {
		panic(fmt.Sprintf("cpu: tensor of type %T is not a cpu tensor", t))
	}
	return ct
}

// Alloc implements runtime.Backend; F32 tensors (and F16/BF16 ones on a
// WithHalf backend) compute, I32 tensors hold indices.
func (b *Backend) Alloc(dt runtime.DType, shape ...int) (runtime.Tensor, error) {
	if dt != runtime.F32 && dt != runtime.I32 && !(b.half && (dt == runtime.F16 || dt == runtime.BF16)) {
		return nil, fmt.Errorf("cpu: alloc %v %v: only F32 (and I32 index) tensors are supported", dt, shape)
	}
	n := 1
	for _, d := range shape {
		if d < 0 {
			return nil, fmt.Errorf("cpu: alloc %v: negative dimension", shape)
		}
		n *= d
	}
	b.resident().Add(int64(n) * 4)
	if dt == runtime.I32 {
		return &Tensor{shape: append([]int(nil), shape...), ints: make([]int32, n), i32: true, size: int64(n) * 4}, nil
	}
	return &Tensor{shape: append([]int(nil), shape...), data: make([]float32, n), dt: dt, size: int64(n) * 4}, nil
}

// Free implements runtime.Backend. Memory is garbage collected; Free drops
// the storage so that a use after free panics instead of reading stale data.
func (b *Backend) Free(t runtime.Tensor) {
	if t == nil {
		return
	}
	ct := tensorOf(t)
	b.resident().Add(-ct.size)
	ct.data, ct.ints, ct.q, ct.h, ct.size = nil, nil, nil, nil, 0
	ct.shape = []int{0}
}

// resident returns the counter of Resident (one made on first use by a
// Backend built without New).
func (b *Backend) resident() *atomic.Int64 {
	if b.mem == nil {
		b.mem = new(atomic.Int64)
	}
	return b.mem
}

// Resident reports the bytes of tensor storage that Alloc and LoadQuant
// made and Free has not released, over b and the backends made from it
// (WithThreads, WithHalf): the memory a loaded model's weights take. Views
// and reshapes share their parent's storage and count nothing.
func (b *Backend) Resident() int64 { return b.resident().Load() }

// View implements runtime.Backend.
func (b *Backend) View(t runtime.Tensor, row0, rows int) runtime.Tensor {
	ct := tensorOf(t)
	if len(ct.shape) == 0 || row0 < 0 || rows < 0 || row0+rows > ct.shape[0] {
		panic(fmt.Sprintf("cpu: view rows [%d,%d) of shape %v", row0, row0+rows, ct.shape))
	}
	stride := 1
	for _, d := range ct.shape[1:] {
		stride *= d
	}
	shape := append([]int{rows}, ct.shape[1:]...)
	lo, hi := row0*stride, (row0+rows)*stride
	if ct.i32 {
		return &Tensor{shape: shape, ints: ct.ints[lo:hi:hi], i32: true}
	}
	return &Tensor{shape: shape, data: ct.data[lo:hi:hi], dt: ct.dt}
}

// Reshape implements runtime.Backend.
func (b *Backend) Reshape(t runtime.Tensor, shape ...int) runtime.Tensor {
	ct := tensorOf(t)
	n := 1
	for _, d := range shape {
		n *= d
	}
	if n != ct.Len() {
		panic(fmt.Sprintf("cpu: reshape %v to %v", ct.shape, shape))
	}
	return &Tensor{shape: slices.Clone(shape), data: ct.data, ints: ct.ints, i32: ct.i32, dt: ct.dt}
}

// Upload implements runtime.Backend.
func (b *Backend) Upload(t runtime.Tensor, src []float32) error {
	ct := tensorOf(t)
	if len(src) != len(ct.data) {
		return fmt.Errorf("cpu: upload %d values into tensor %v", len(src), ct.shape)
	}
	copy(ct.data, src)
	b.round(ct)
	return nil
}

// Download implements runtime.Backend.
func (b *Backend) Download(dst []float32, t runtime.Tensor) error {
	ct := tensorOf(t)
	vals := ct.values()
	if len(dst) != len(vals) {
		return fmt.Errorf("cpu: download tensor %v into %d values", ct.shape, len(dst))
	}
	copy(dst, vals)
	return nil
}

// Sync implements runtime.Backend; CPU ops complete before they return.
func (b *Backend) Sync() error { return nil }

// parallel runs fn(task) for task in [0, n) on up to b.threads goroutines.
func (b *Backend) parallel(n int, fn func(task int)) {
	workers := min(b.threads, n)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}

// parallelRange splits [0, n) into contiguous chunks of at least minChunk
// items and runs fn on each.
func (b *Backend) parallelRange(n, minChunk int, fn func(lo, hi int)) {
	chunks := min(b.threads*4, (n+minChunk-1)/max(minChunk, 1))
	if chunks <= 1 {
		fn(0, n)
		return
	}
	size := (n + chunks - 1) / chunks
	b.parallel(chunks, func(c int) {
		lo := c * size
		hi := min(lo+size, n)
		if lo < hi {
			fn(lo, hi)
		}
	})
}

var _ runtime.Backend = (*Backend)(nil)
var _ runtime.SwiGLUer = (*Backend)(nil)
var _ runtime.AddRMSNormer = (*Backend)(nil)
