package cuda

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/runtime"
)

// TestJoinLayout checks joinLayout (o_proj's codes re-laid for
// decode.cu's attn_oproj4) on the host, from the kernel's side: for every
// kv head, block of columns and sorted input, the code a lane decodes into
// its mma A fragment (dq_step: the word of the input's 16-input step,
// rows g and g+8 at bits 0 and 4, inputs 2t+8.. 8 bits up, the odd input
// 16 up) is the weight's code of the model input meta names and the
// column, and the sorted inputs' groups ascend with meta's group starts
// marking them; a 4096-input weight with and without act order. A weight
// whose 16-input steps span 8 groups or more is refused.
func TestJoinLayout(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const K, N, gs, hkv, nb = 1024, 256, 128, 2, 128
	codes := make([]uint8, K*N)
	for i := range codes {
		codes[i] = uint8(r.IntN(16))
	}
	qw := &runtime.QuantWeight{Bits: 4, K: K, N: N, GroupSize: gs, Codes: codes}
	tiled := tileCodes(K, N, 4, columnSource{ws: []*runtime.QuantWeight{qw}})
	for _, act := range []bool{false, true} {
		var slots []int32
		seqOf := func(c int) int { return c }
		if act {
			slots = make([]int32, K)
			for k, c := range r.Perm(K) {
				slots[c] = int32(k)
			}
			seqOf = func(c int) int { return int(slots[c]) }
		}
		jw, meta, ms, ok := joinLayout(tiled, slots, K, N, gs, hkv, nb)
		if !ok {
			t.Fatalf("act order %v: refused", act)
		}
		KH, NG, chunks, NT := K/hkv, K/gs, K/hkv/64, nb/16
		bad := 0
		for h := range hkv {
			m := meta[h*ms:]
			seen := make([]bool, KH)
			for i := range KH {
				l, g := int(m[i]&0xffff), int(m[i]>>16)
				if l >= KH || seen[l] {
					t.Fatalf("act order %v, head %d: sorted input %d is the head's input %d (again, or past %d)", act, h, i, l, KH)
				}
				seen[l] = true
				k := seqOf(h*KH + l)
				if g != k/gs || (i > 0 && g < int(m[i-1]>>16)) || int(m[KH+g]) > i || int(m[KH+g+1]) <= i {
					t.Fatalf("act order %v, head %d: sorted input %d (sequential %d) in group %d, starts %d..%d", act, h, i, k, g, m[KH+g], m[KH+g+1])
				}
				ch, s4, kk := i/64, (i%64)/16, i%16
				for ob := range N / nb {
					for nl := range nb {
						nt, row := nl/16, nl%16
						lane := (row%8)*4 + (kk%8)/2
						off := ((((h*(N/nb)+ob)*chunks+ch)*NT+nt)*32+lane)*16 + 4*s4
						w := binary.LittleEndian.Uint32(jw[off:])
						got := uint8(w>>(4*(row/8)+8*(kk/8)+16*(kk%2))) & 15
						if want := codes[k*N+ob*nb+nl]; got != want && bad < 5 {
							bad++
							t.Errorf("act order %v, head %d, block %d, sorted input %d, column %d: code %d, want %d", act, h, ob, i, nl, got, want)
						}
					}
				}
			}
			if m[KH] != 0 || m[KH+NG] != int32(KH) {
				t.Errorf("act order %v, head %d: group starts run %d..%d, want 0..%d", act, h, m[KH], m[KH+NG], KH)
			}
		}
	}
	// Groups of 16 over a random order and eight kv heads: about two
	// inputs of a head a group, so that its 16-input steps span 8 groups.
	slots := make([]int32, K)
	for k, c := range r.Perm(K) {
		slots[c] = int32(k)
	}
	if _, _, _, ok := joinLayout(tiled, slots, K, N, 16, 8, nb); ok {
		t.Error("groups of 16 in a random order: joined, want refused (steps span 8 groups or more)")
	}
}
