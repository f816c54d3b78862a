package cuda

import (
	"fmt"
	"sort"
)

// allocator caches device memory by size class so that the GPTQ driver's
// per-layer buffers and the runtime's scratch are reused instead of going
// back to cuMemAlloc, and accounts for every byte: in use (what callers
// hold), reserved (what the device gave us), and the peaks of both.
type allocator struct {
	free     map[uint64][]uint64 // class size → cached device pointers
	inUse    int64
	reserved int64
	peakUse  int64
	peakRes  int64
	limit    int64 // 0: none; else reserved bytes may not exceed it (tests, --gpu-memory)
	// peakDevice is the most device memory seen in use by anyone (total
	// minus free, sampled after each new reservation): our blocks plus the
	// CUDA context, module images and the libraries' own allocations.
	peakDevice int64
}

// class rounds a request up to its size class: 256-byte steps below 1 MiB
// would fragment, so small requests take the next power of two (at least
// 512 B) and large ones the next multiple of 2 MiB.
func class(n int64) uint64 {
	const large = 1 << 20
	if n <= 0 {
		n = 1
	}
	if n < large {
		c := int64(512)
		for c < n {
			c <<= 1
		}
		return uint64(c)
	}
	const step = 2 << 20
	return uint64((n + step - 1) / step * step)
}

// alloc returns a device pointer of at least n bytes and its class size.
func (a *allocator) alloc(n int64) (uint64, uint64, error) {
	c := class(n)
	if l := a.free[c]; len(l) > 0 {
		p := l[len(l)-1]
		a.free[c] = l[:len(l)-1]
		a.use(int64(c))
		return p, c, nil
	}
	if a.limit > 0 && a.reserved+int64(c) > a.limit {
		a.trim()
		if a.reserved+int64(c) > a.limit {
			return 0, 0, &Error{Call: fmt.Sprintf("cuMemAlloc(%d)", c), Name: fmt.Sprintf("over the memory limit of %d bytes (%d reserved)", a.limit, a.reserved), oom: true}
		}
	}
	var p uint64
	err := cuErr(fmt.Sprintf("cuMemAlloc(%d)", c), drv.cuMemAlloc(&p, c))
	if err != nil && OutOfMemory(err) && a.cached() > 0 {
		a.trim()
		err = cuErr(fmt.Sprintf("cuMemAlloc(%d)", c), drv.cuMemAlloc(&p, c))
	}
	if err != nil {
		return 0, 0, err
	}
	a.reserved += int64(c)
	a.peakRes = max(a.peakRes, a.reserved)
	a.use(int64(c))
	var free, total uint64
	if drv.cuMemGetInfo(&free, &total) == 0 {
		a.peakDevice = max(a.peakDevice, int64(total-free))
	}
	return p, c, nil
}

func (a *allocator) use(n int64) {
	a.inUse += n
	a.peakUse = max(a.peakUse, a.inUse)
}

// release returns a block to its class list.
func (a *allocator) release(p, c uint64) {
	a.inUse -= int64(c)
	a.free[c] = append(a.free[c], p)
}

func (a *allocator) cached() int64 {
	var n int64
	for c, l := range a.free {
		n += int64(c) * int64(len(l))
	}
	return n
}

// trim gives every cached block back to the device.
func (a *allocator) trim() {
	classes := make([]uint64, 0, len(a.free))
	for c := range a.free {
		classes = append(classes, c)
	}
	sort.Slice(classes, func(i, j int) bool { return classes[i] > classes[j] })
	for _, c := range classes {
		for _, p := range a.free[c] {
			drv.cuMemFree(p)
			a.reserved -= int64(c)
		}
		delete(a.free, c)
	}
}
