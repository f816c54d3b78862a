package cuda_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
)

// TestQMMAInBlock checks products of one and two rows whose blocks split
// the inputs among their warps (SetQMMAInBlock(true): every kind of
// weight) and across a cluster's blocks (the default) against float64
// products of the host
// dequantization: plain weights with a residual (a partial last slab of
// columns; K = 448 in seven chunks, so that one warp's slice is empty; 8
// bits), a q/k/v split, and gate/up with SwiGLU at two tiles a block and,
// 8704 outputs wide (136 slabs), at four.
func TestQMMAInBlock(t *testing.T) {
	b := gputest.Backend(t)
	defer b.SetQMMAInBlock(b.QMMAInBlock())
	r := rand.New(rand.NewPCG(61, 62))
	rand32 := normals(r)
	type weight struct {
		name string
		ws   []*runtime.QuantWeight // one plain weight, a split's parts, or gate and up
		glu  bool
	}
	like := func(base *runtime.QuantWeight, N int) *runtime.QuantWeight {
		q := randomQuant(r, base.K, N, base.Bits, base.GroupSize, false)
		q.Perm = base.Perm
		return q
	}
	var weights []weight
	for _, c := range []struct{ K, N, bits, gs int }{{4096, 400, 4, 128}, {448, 256, 4, 64}, {4096, 384, 8, 128}} {
		weights = append(weights, weight{name: fmt.Sprintf("plain-K%d-N%d-b%d", c.K, c.N, c.bits), ws: []*runtime.QuantWeight{randomQuant(r, c.K, c.N, c.bits, c.gs, true)}})
	}
	q := randomQuant(r, 4096, 512, 4, 128, true)
	weights = append(weights, weight{name: "qkv", ws: []*runtime.QuantWeight{q, like(q, 128), like(q, 128)}})
	g := randomQuant(r, 4096, 192, 4, 128, true)
	weights = append(weights, weight{name: "glu-192", ws: []*runtime.QuantWeight{g, like(g, 192)}, glu: true})
	g = randomQuant(r, 448, 8704, 4, 64, true)
	weights = append(weights, weight{name: "glu-8704", ws: []*runtime.QuantWeight{g, like(g, 8704)}, glu: true})
	for _, w := range weights {
		var dev runtime.Tensor
		var err error
		switch {
		case w.glu:
			dev, err = b.LoadQuantGLU(w.ws[0], w.ws[1])
		case len(w.ws) > 1:
			dev, err = b.LoadQuantSplit(w.ws)
		default:
			dev, err = b.LoadQuant(w.ws[0])
		}
		if err != nil {
			t.Fatal(err)
		}
		K := w.ws[0].K
		for _, M := range []int{1, 2} {
			for _, dt := range []runtime.DType{runtime.F16, runtime.BF16} {
				x, xr := upload(t, b, dt, rand32(M*K, 1), M, K)
				// The float64 references: each part's product; SwiGLU of gate
				// and up; plus the residual for a plain weight.
				var want [][]float64
				for _, p := range w.ws {
					want = append(want, backendtest.RefMatMul(xr, p.Dequantize(), M, p.N, K))
				}
				var res []float32
				switch {
				case w.glu:
					for i, gv := range want[0] {
						want[0][i] = gv / (1 + math.Exp(-gv)) * want[1][i]
					}
					want = want[:1]
				case len(w.ws) == 1:
					_, res = upload(t, b, dt, rand32(M*w.ws[0].N, 1), M, w.ws[0].N)
					for i := range want[0] {
						want[0][i] += float64(res[i])
					}
				}
				for _, ib := range []bool{true, false} {
					t.Run(fmt.Sprintf("%s-M%d-%v-inblock=%v", w.name, M, dt, ib), func(t *testing.T) {
						b.SetQMMAInBlock(ib)
						var outs []runtime.Tensor
						for _, wv := range want {
							o, _ := upload(t, b, dt, make([]float32, len(wv)), M, len(wv)/M)
							outs = append(outs, o)
						}
						switch {
						case w.glu:
							b.MatMulGLU(outs[0], x, dev)
						case len(w.ws) > 1:
							b.MatMulSplit(outs, x, dev)
						default:
							if err := b.Upload(outs[0], res); err != nil {
								t.Fatal(err)
							}
							b.MatMulAdd(outs[0], x, dev, outs[0])
						}
						for i, o := range outs {
							if nmse := backendtest.NMSE(download(t, b, o), want[i]); !(nmse < 2e-5) {
								t.Errorf("output %d: nmse %.3g", i, nmse)
							}
						}
					})
				}
			}
		}
		b.Free(dev)
	}
}
