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

// PlainAPKernel is the name of the plain wide kernel (qgemv.cu) that reads
// paged attention's parts for bits-bit weights and dt activations.
func PlainAPKernel(bits int, dt runtime.DType) string { return qnames.plainAP[bits/8][dt] }
