package cuda

import "testing"

// TestFmlpPlan checks the fused MLP's block layout against a count made
// input by input: the most steps a block takes and the most groups of
// down's inputs a block's slice reaches; on the 7B shape (896 tiles of the
// intermediate on the H200's 132 SMs) blocks take 6 or 7 steps, a slice
// reaches two groups of 128, a warp takes 4 chunks of down a step at 4
// bits (8 at 8) with no padding, and the kernel's shared memory fits the
// H200's 227 KiB at 8 rows with a ring of 4 and at 1 row with a ring of 8.
func TestFmlpPlan(t *testing.T) {
	for _, c := range []struct{ j, gsd, nb int }{
		{896, 128, 132}, {896, 32, 132}, {56, 128, 56}, {160, 32, 132}, {256, 64, 132},
	} {
		smax, ndg := fmlpPlan(c.j, c.gsd, c.nb)
		wantS, wantNdg := 0, 0
		for b := range c.nb {
			j0, j1 := b*c.j/c.nb, (b+1)*c.j/c.nb
			if c.j == 896 && (j1-j0 < 6 || j1-j0 > 7) {
				t.Errorf("%+v: block %d takes %d steps", c, b, j1-j0)
			}
			wantS = max(wantS, j1-j0)
			groups := map[int]bool{}
			for k := 16 * j0; k < 16*j1; k++ {
				groups[k/c.gsd] = true
			}
			wantNdg = max(wantNdg, len(groups))
		}
		if smax != wantS || ndg != wantNdg {
			t.Errorf("%+v: %d steps, %d groups; want %d, %d", c, smax, ndg, wantS, wantNdg)
		}
	}
	// The end's owners: a power of two of outputs each, enough owners for
	// every output, no more owners than blocks; the end fits where 8 rows
	// of a warp's sums (WM floats each) fit its ring of 4 chunks of 512
	// bytes and no warp adds up more than 12 blocks' shares.
	for _, c := range []struct {
		h, nb, want int
		fits        bool
	}{{4096, 132, 32, true}, {4096, 108, 64, true}, {4096, 128, 32, true}, {4096, 56, 128, false}, {256, 132, 2, true},
		{512, 16, 32, true}, {4096, 200, 32, false}} {
		wm := fmlpOwned(c.h, c.nb)
		if owners := (c.h + wm - 1) / wm; wm != c.want || owners > c.nb || owners*wm < c.h {
			t.Errorf("h %d on %d blocks: %d outputs an owner, %d owners; want %d", c.h, c.nb, wm, owners, c.want)
		}
		if got := fmlpEndFits(c.h, c.nb); got != c.fits {
			t.Errorf("h %d on %d blocks: the end fits %v, want %v", c.h, c.nb, got, c.fits)
		}
	}
	if dc4, dc8 := fmlpDownChunks(4096, 4), fmlpDownChunks(4096, 8); dc4 != 4 || dc8 != 8 {
		t.Errorf("down's chunks a warp a step at 4096: %d, %d; want 4, 8", dc4, dc8)
	}
	smax, ndg := fmlpPlan(896, 128, 132)
	if ndg != 2 {
		t.Errorf("7B: %d groups a slice, want 2", ndg)
	}
	f := &fusedMLP{h: 4096, i: 14336, bits: 4, nb: 132, ndg: ndg, gsmax: smax, qd: 8, gu: &Tensor{q: &quant{gs: 128}}}
	const h200 = 227 << 10
	if got := f.ring(8, h200); got != 4 {
		t.Errorf("7B at 8 rows: ring %d (shared %d bytes), want 4", got, f.shared(8, 4))
	}
	if got := f.ring(1, h200); got != 8 {
		t.Errorf("7B at 1 row: ring %d (shared %d bytes), want 8", got, f.shared(1, 8))
	}
}
