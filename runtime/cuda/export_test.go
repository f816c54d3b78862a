package cuda

import "github.com/gptqtool/gptqtool/runtime"

// Launches reports how many times kernel name of source file src has been
// launched on b (0 where it never was), for tests that check which kernel
// a product took.
func (b *Backend) Launches(src, name string) int {
	b.enter()
	defer b.exit()
	if f := b.fns[fnKey{src, name}]; f != nil {
		return f.launches
	}
	return 0
}

// PagedTCPreKernel is the name of the tensor-core paged attention kernel
// (decode.cu) that fetches a settled cache's rows before its wait, for
// heads of hd dimensions, g query heads a kv head and dt caches.
func PagedTCPreKernel(hd, g int, dt runtime.DType) string {
	return pagedTCPreNames[[2]int{pow2((hd + 31) / 32), pow2(g)}][dt]
}

// ResidualProjection reports SetResidualProjection's rows, for tests that
// set it and restore it.
func (b *Backend) ResidualProjection() int {
	b.enter()
	defer b.exit()
	return b.oprojAdd
}
