package cuda

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gptqtool/gptqtool/runtime"
)

// The straightforward forms of fuseGroups + tileCodes, the reference of
// their one pass: fuseColumnsRef copies the codes into the fused weight,
// tileCodesRef reads them code by code.

// fuseColumnsRef builds the weight whose column c is column idx[c][1] of
// ws[idx[c][0]] (the same K, group size and permutation).
func fuseColumnsRef(ws []*runtime.QuantWeight, idx [][2]int) *runtime.QuantWeight {
	w0 := ws[0]
	N, G := len(idx), w0.Groups()
	f := &runtime.QuantWeight{Bits: w0.Bits, K: w0.K, N: N, GroupSize: w0.GroupSize, Perm: w0.Perm,
		Codes: make([]uint8, w0.K*N), Scales: make([]uint16, G*N), Zeros: make([]uint16, G*N)}
	parallelRows(w0.K, 64, func(k0, k1 int) {
		for k := k0; k < k1; k++ {
			for c, wn := range idx {
				w := ws[wn[0]]
				f.Codes[k*N+c] = w.Codes[k*w.N+wn[1]]
			}
		}
	})
	for g := range G {
		for c, wn := range idx {
			w := ws[wn[0]]
			f.Scales[g*N+c] = w.Scales[g*w.N+wn[1]]
			f.Zeros[g*N+c] = w.Zeros[g*w.N+wn[1]]
		}
	}
	return f
}

// tileCodesRef packs q's codes in qgemv.cu's tiled layout: per 16-column tile
// and chunk of inputs, 32 lanes of 4 words holding each lane's A fragments.
func tileCodesRef(q *runtime.QuantWeight) []byte {
	K, N, bits := q.K, q.N, q.Bits
	kb := chunkInputs(bits)
	CK := K / kb
	out := make([]byte, K*N*bits/8)
	code := func(k, n int) uint32 { return uint32(q.Codes[k*N+n]) }
	parallelRows(N/16, 64, func(t0, t1 int) {
		for nt := t0; nt < t1; nt++ {
			for kc := range CK {
				for lane := range 32 {
					g, t := lane/4, lane%4
					// pair i of a step at k0: rows g + 8(i&1), inputs 2t + 8(i>>1) and +1.
					pair := func(k0, i int) (lo, hi uint32) {
						n, k := nt*16+g+8*(i&1), k0+2*t+8*(i>>1)
						return code(k, n), code(k+1, n)
					}
					var words [4]uint32
					if bits == 4 {
						for j := range 4 {
							k0 := kc*kb + 16*j
							for i := range 4 {
								lo, hi := pair(k0, i)
								words[j] |= lo<<(4*i) | hi<<(4*i+16)
							}
						}
					} else {
						for j := range 4 {
							k0 := kc*kb + 16*(j/2)
							for i := range 2 {
								lo, hi := pair(k0, (j&1)*2+i)
								words[j] |= lo<<(8*i) | hi<<(8*i+16)
							}
						}
					}
					off := ((nt*CK+kc)*32 + lane) * 16
					for j, w := range words {
						binary.LittleEndian.PutUint32(out[off+4*j:], w)
					}
				}
			}
		}
	})
	return out
}

// TestTileCodes checks the tiled codes and the fused groups against
// fuseColumnsRef + tileCodesRef, byte for byte: one weight, q/k/v-like
// splits (whole tiles, and parts of 24 and 40 columns whose tiles straddle
// two weights), and the GLU interleave, at 4 and 8 bits, groups of 32, 64
// and 128 inputs and one group, act order or not.
func TestTileCodes(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, bits := range []int{4, 8} {
		for _, gs := range []int{32, 64, 128, -1} {
			for _, act := range []bool{false, true} {
				for _, layout := range []string{"one", "split", "split-straddle", "glu"} {
					t.Run(fmt.Sprintf("%dbit-g%d-act=%v-%s", bits, gs, act, layout), func(t *testing.T) {
						const K = 256
						g := gs
						if g == -1 {
							g = K
						}
						var perm []int32
						if act {
							perm = randPerm(r, K)
						}
						var widths []int
						switch layout {
						case "one":
							widths = []int{48}
						case "split":
							widths = []int{64, 32, 32}
						case "split-straddle":
							widths = []int{24, 40}
						case "glu":
							widths = []int{128, 128}
						}
						var ws []*runtime.QuantWeight
						var idx [][2]int
						for i, n := range widths {
							ws = append(ws, hostQuant(r, K, n, bits, g, perm))
							for c := range n {
								idx = append(idx, [2]int{i, c})
							}
						}
						if layout == "glu" {
							for c := range idx {
								run, j := c/(2*qcolsGLU), c%(2*qcolsGLU)
								idx[c] = [2]int{j / qcolsGLU, run*qcolsGLU + j%qcolsGLU}
							}
						}
						src := columnSource{ws, idx}
						if layout == "one" {
							src.idx = nil
						}
						want := fuseColumnsRef(ws, idx)
						got := fuseGroups(ws, idx)
						if !slices.Equal(got.Scales, want.Scales) || !slices.Equal(got.Zeros, want.Zeros) || !slices.Equal(got.Perm, want.Perm) ||
							got.K != want.K || got.N != want.N || got.GroupSize != want.GroupSize || got.Bits != want.Bits {
							t.Error("fused groups differ")
						}
						if tiled, ref := tileCodes(K, want.N, bits, src), tileCodesRef(want); !slices.Equal(tiled, ref) {
							i := 0
							for tiled[i] == ref[i] {
								i++
							}
							t.Errorf("tiled codes differ first at byte %d: %#x, want %#x", i, tiled[i], ref[i])
						}
					})
				}
			}
		}
	}
}
