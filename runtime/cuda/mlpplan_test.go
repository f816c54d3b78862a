package cuda

import "testing"

// TestFmlpPlan checks the fused MLP's block layout against a count made
// item by item: each block's down chunks hold its warps' (tile, step)
// items SPC a chunk, every warp's last chunk partly at most; ntw is the
// most gate/up tiles a warp's chunks reach, ndg the most groups of down's
// inputs a block's slice reaches; and on the 7B shape (896 tiles of the
// intermediate on 132 SMs) blocks take 6 or 7 steps and the chunks add
// up to down's whole weight.
func TestFmlpPlan(t *testing.T) {
	for _, c := range []struct{ j, h, bits, gsd, nb int }{
		{896, 4096, 4, 128, 132}, {896, 4096, 8, 128, 132}, {56, 256, 4, 128, 56}, {160, 512, 8, 32, 132}, {256, 1024, 4, 32, 132},
	} {
		dbase, ntw, ndg := fmlpPlan(c.j, c.h, c.bits, c.gsd, c.nb)
		spc := map[int]int{4: 4, 8: 2}[c.bits]
		nt, ck := c.h/16, c.h/(16*spc)
		wantNtw, wantNdg, items := 0, 0, 0
		for b := range c.nb {
			j0, j1 := b*c.j/c.nb, (b+1)*c.j/c.nb
			s := j1 - j0
			if c.j == 896 && (s < 6 || s > 7) {
				t.Errorf("%+v: block %d takes %d steps", c, b, s)
			}
			chunks := 0
			for w := range fmlpWarps {
				n := 0 // the warp's items
				for tile := w * nt / fmlpWarps; tile < (w+1)*nt/fmlpWarps; tile++ {
					n += s
				}
				items += n
				chunks += (n + spc - 1) / spc
				// Gate/up: the warp's chunks of the block's 2s·ck and the
				// tiles they reach.
				tiles := map[int]bool{}
				for e := w * 2 * s * ck / fmlpWarps; e < (w+1)*2*s*ck/fmlpWarps; e++ {
					tiles[e/ck] = true
				}
				wantNtw = max(wantNtw, len(tiles))
			}
			if got := int(dbase[b+1] - dbase[b]); got != chunks {
				t.Errorf("%+v: block %d has %d down chunks, want %d", c, b, got, chunks)
			}
			groups := map[int]bool{}
			for k := 16 * j0; k < 16*j1; k++ {
				groups[k/c.gsd] = true
			}
			wantNdg = max(wantNdg, len(groups))
		}
		if ntw != max(wantNtw, 1) || ndg != wantNdg {
			t.Errorf("%+v: ntw %d, ndg %d; want %d, %d", c, ntw, ndg, wantNtw, wantNdg)
		}
		if items != c.j*nt {
			t.Errorf("%+v: %d items, want %d (every tile of down at every step)", c, items, c.j*nt)
		}
		if dbase[0] != 0 || int(dbase[c.nb])*spc < items {
			t.Errorf("%+v: chunks from %d to %d for %d items", c, dbase[0], dbase[c.nb], items)
		}
	}
}
