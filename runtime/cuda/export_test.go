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

// PagedTCKernel is the name of the tensor-core paged attention kernel
// (decode.cu) for heads of hd dimensions, g query heads a kv head and dt
// caches.
func PagedTCKernel(hd, g int, dt runtime.DType) string {
	return pagedTCNames[[2]int{pow2((hd + 31) / 32), pow2(g)}][dt]
}

// PagedTCShared is the tensor-core kernel's dynamic shared memory for a
// step of rows rows over kvHeads kv heads of hd dimensions, g query heads
// each.
func (b *Backend) PagedTCShared(rows, kvHeads, hd, g int) int {
	b.enter()
	defer b.exit()
	c := pow2((hd + 31) / 32)
	return b.pagedTCShared(rows, kvHeads, hd, pow2(g), c)
}

// ActiveClusters is activeClusters, for tests.
func (b *Backend) ActiveClusters(src, name string, threads, shared, clusterY int) int {
	b.enter()
	defer b.exit()
	return b.activeClusters(src, name, threads, shared, clusterY)
}

// SetAttentionFit sets whether the tensor-core paged attention keeps its
// clusters to what the device runs at once (GPTQTOOL_ATTN_FIT) and
// returns the previous setting.
func (b *Backend) SetAttentionFit(on bool) bool {
	return swapSetting(b, &b.attnFit, on)
}

// swapSetting sets a backend setting under the backend's lock and returns
// its previous value.
func swapSetting[T any](b *Backend, p *T, v T) T {
	b.enter()
	defer b.exit()
	prev := *p
	*p = v
	return prev
}

// FitClusters is fitClusters, for tests.
func FitClusters(S, clu, pairs int, active func(c int) int) (int, int) {
	return fitClusters(S, clu, pairs, active)
}

// PagedThreads is a paged attention block's threads.
const PagedThreads = pagedThreads

// SetScalesOnly turns the upload of symmetric weights' scales alone
// (GPTQTOOL_SZ16) on or off for the weights loaded next, and returns the
// previous setting.
func (b *Backend) SetScalesOnly(on bool) bool {
	return swapSetting(b, &b.scalesOnly, on)
}

// ScalesOnly reports whether quantized weight w holds its scales alone
// (the QG_SZ16 kernels run it).
func (b *Backend) ScalesOnly(w runtime.Tensor) bool {
	t := b.tensor(w)
	return t.q != nil && t.q.szh != nil
}

// QGLUKernel is the pieces GLU kernel (qglu.cu) that runs a product of M
// rows at bits for f16 activations in the block shape warps × depth, or
// in the default shape for M rows where warps is 0.
func QGLUKernel(bits, M, warps, depth int) string {
	if warps == 0 {
		warps, depth = defaultQGLUShape(bits, M)
	}
	return qgluName(bits, warps, depth, runtime.F16)
}

// QGLUNormKernel is QGLUKernel's kernel that normalizes x as it stages it
// (qglu.cu's _n kernels), in the default shape for M rows.
func QGLUNormKernel(bits, M int) string {
	warps, depth := defaultQGLUShape(bits, M)
	return qgluNormName(bits, warps, depth, runtime.F16)
}

// SetMoERuns sets how ExpertMatMul multiplies (GPTQTOOL_MOE_RUNS: 0 each
// slot, the _e kernels; 2 runs of an expert's slots, the _x kernels; 1 the
// default) and returns the previous setting.
func (b *Backend) SetMoERuns(v int) int {
	return swapSetting(b, &b.moeRuns, v)
}

// SetMoESlots sets the most slots RoutesExperts takes (GPTQTOOL_MOE_SLOTS;
// -1 the default) and returns the previous setting.
func (b *Backend) SetMoESlots(n int) int {
	return swapSetting(b, &b.moeSlots, n)
}
