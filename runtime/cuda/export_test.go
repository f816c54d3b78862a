package cuda

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
