package cuda

import (
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/runtime"
)

// hostQuant is a quantized weight with random codes, zeros and scales,
// inputs in the order perm (nil: none).
func hostQuant(r *rand.Rand, K, N, bits, groupSize int, perm []int32) *runtime.QuantWeight {
	G := (K + groupSize - 1) / groupSize
	q := &runtime.QuantWeight{Bits: bits, K: K, N: N, GroupSize: groupSize, Perm: perm,
		Codes: make([]uint8, K*N), Scales: make([]uint16, G*N), Zeros: make([]uint16, G*N)}
	for i := range q.Codes {
		q.Codes[i] = uint8(r.Uint32()) & (1<<bits - 1)
	}
	for i := range q.Scales {
		q.Scales[i] = half.F32ToF16(float32(0.002 + 0.02*r.Float64()))
		q.Zeros[i] = uint16(r.IntN(1<<bits + 1))
	}
	return q
}

func randPerm(r *rand.Rand, K int) []int32 {
	p := make([]int32, K)
	for i, v := range r.Perm(K) {
		p[i] = int32(v)
	}
	return p
}

// benchLayer is one Mistral-7B decoder layer's weights as the model hands
// them to the loaders (4 bits, group 128, act order; down_proj's order
// folded into gate/up).
type benchLayer struct {
	qkv     []*runtime.QuantWeight
	o       *runtime.QuantWeight
	gateUp  []*runtime.QuantWeight
	down    *runtime.QuantWeight
	qkvIdx  [][2]int
	gateIdx [][2]int
}

func newBenchLayer() *benchLayer {
	r := rand.New(rand.NewPCG(1, 2))
	const hidden, inter, kv, bits, gs = 4096, 14336, 1024, 4, 128
	l := &benchLayer{}
	attn := randPerm(r, hidden)
	l.qkv = []*runtime.QuantWeight{hostQuant(r, hidden, hidden, bits, gs, attn), hostQuant(r, hidden, kv, bits, gs, attn), hostQuant(r, hidden, kv, bits, gs, attn)}
	l.o = hostQuant(r, hidden, hidden, bits, gs, randPerm(r, hidden))
	ffn := randPerm(r, hidden)
	l.gateUp = []*runtime.QuantWeight{hostQuant(r, hidden, inter, bits, gs, ffn), hostQuant(r, hidden, inter, bits, gs, ffn)}
	l.down = hostQuant(r, inter, hidden, bits, gs, nil)
	for i, w := range l.qkv {
		for n := range w.N {
			l.qkvIdx = append(l.qkvIdx, [2]int{i, n})
		}
	}
	l.gateIdx = make([][2]int, 2*inter)
	for c := range l.gateIdx {
		run, j := c/(2*qcolsGLU), c%(2*qcolsGLU)
		l.gateIdx[c] = [2]int{j / qcolsGLU, run*qcolsGLU + j%qcolsGLU}
	}
	return l
}

// BenchmarkLoadQuantHost measures the host work of the CUDA backend's
// loaders (LoadQuantSplit for q/k/v, LoadQuant for o_proj and down_proj,
// LoadQuantGLU for gate/up) for one Mistral-7B decoder layer, by stage,
// without a GPU: validating the weights, fusing their groups (scales and
// zeros) and tiling the codes (fused as they are read); "layer" is all of
// it (what runs before the uploads).
//
//	go test ./runtime/cuda -run '^$' -bench LoadQuantHost -benchtime 5x
func BenchmarkLoadQuantHost(b *testing.B) {
	l := newBenchLayer()
	all := append(append(append([]*runtime.QuantWeight{}, l.qkv...), l.o, l.down), l.gateUp...)
	b.Run("Validate", func(b *testing.B) {
		for b.Loop() {
			for _, w := range all {
				if err := w.Validate(); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	type load struct {
		q   *runtime.QuantWeight // its groups; its codes are src's
		src columnSource
	}
	loads := func() []load {
		return []load{
			{fuseGroups(l.qkv, l.qkvIdx), columnSource{l.qkv, l.qkvIdx}},
			{l.o, columnSource{ws: []*runtime.QuantWeight{l.o}}},
			{fuseGroups(l.gateUp, l.gateIdx), columnSource{l.gateUp, l.gateIdx}},
			{l.down, columnSource{ws: []*runtime.QuantWeight{l.down}}},
		}
	}
	b.Run("fuseGroups", func(b *testing.B) {
		for b.Loop() {
			loads()
		}
	})
	ls := loads()
	b.Run("tileCodes", func(b *testing.B) {
		for b.Loop() {
			for _, w := range ls {
				tileCodes(w.q.K, w.q.N, w.q.Bits, w.src)
			}
		}
	})
	b.Run("layer", func(b *testing.B) {
		for b.Loop() {
			for _, w := range all {
				if err := w.Validate(); err != nil {
					b.Fatal(err)
				}
			}
			for _, w := range loads() {
				tileCodes(w.q.K, w.q.N, w.q.Bits, w.src)
			}
		}
	})
	// The straightforward fuse and tile (the tests' reference), as the
	// loaders did them before tiling from the weights' own codes.
	b.Run("fuseColumnsRef+tileCodesRef", func(b *testing.B) {
		for b.Loop() {
			for _, w := range []*runtime.QuantWeight{fuseColumnsRef(l.qkv, l.qkvIdx), l.o, fuseColumnsRef(l.gateUp, l.gateIdx), l.down} {
				tileCodesRef(w)
			}
		}
	})
}
