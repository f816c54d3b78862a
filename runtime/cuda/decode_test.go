package cuda_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/kernels"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/cuda"
	"github.com/gptqtool/gptqtool/runtime/kvcache"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// TestFusedQuant checks the fused q/k/v (split outputs) and gate/up (GLU)
// products, GEMV and dequantize + cuBLAS paths, against float64 products of
// the separate weights.
func TestFusedQuant(t *testing.T) {
	b := gputest.Backend(t)
	r := rand.New(rand.NewPCG(9, 10))
	const K = 512
	for _, M := range []int{1, 4, 8, 13} {
		for _, perm := range []bool{false, true} {
			t.Run(fmt.Sprintf("M%d-perm=%v", M, perm), func(t *testing.T) {
				base := randomQuant(r, K, 256, 4, 128, perm)
				like := func(N int) *runtime.QuantWeight {
					q := randomQuant(r, K, N, 4, 128, false)
					q.Perm = base.Perm
					return q
				}
				ws := []*runtime.QuantWeight{base, like(128), like(64)}
				xv := make([]float32, M*K)
				for i := range xv {
					xv[i] = float32(r.NormFloat64())
				}
				x, xr := upload(t, b, runtime.F16, xv, M, K)

				split, err := b.LoadQuantSplit(ws)
				if err != nil {
					t.Fatal(err)
				}
				defer b.Free(split)
				var dsts []runtime.Tensor
				for _, w := range ws {
					d, _ := upload(t, b, runtime.F16, make([]float32, M*w.N), M, w.N)
					dsts = append(dsts, d)
				}
				gate, up := like(192), like(192)
				glu, err := b.LoadQuantGLU(gate, up)
				if err != nil {
					t.Fatal(err)
				}
				defer b.Free(glu)
				act, _ := upload(t, b, runtime.F16, make([]float32, M*192), M, 192)
				g := backendtest.RefMatMul(xr, gate.Dequantize(), M, 192, K)
				u := backendtest.RefMatMul(xr, up.Dequantize(), M, 192, K)
				wantAct := make([]float64, len(g))
				for i := range g {
					wantAct[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
				}
				for _, forced := range []bool{false, true} {
					b.SetDequantGEMM(forced)
					b.MatMulSplit(dsts, x, split)
					for i, w := range ws {
						got := make([]float32, M*w.N)
						if err := b.Download(got, dsts[i]); err != nil {
							t.Fatal(err)
						}
						if nmse := backendtest.NMSE(got, backendtest.RefMatMul(xr, w.Dequantize(), M, w.N, K)); !(nmse < 2e-6) {
							t.Errorf("forced %v: split output %d: nmse %.3g", forced, i, nmse)
						}
					}
					b.MatMulGLU(act, x, glu)
					got := make([]float32, M*192)
					if err := b.Download(got, act); err != nil {
						t.Fatal(err)
					}
					if nmse := backendtest.NMSE(got, wantAct); !(nmse < 1e-5) {
						t.Errorf("forced %v: glu nmse %.3g", forced, nmse)
					}
				}
				b.SetDequantGEMM(false)
			})
		}
	}
	// Different permutations do not fuse.
	a, c := randomQuant(r, K, 64, 4, 128, true), randomQuant(r, K, 64, 4, 128, true)
	if _, err := b.LoadQuantSplit([]*runtime.QuantWeight{a, c}); err == nil {
		t.Error("weights with different permutations were fused")
	}
}

// wideCase is a product of M rows by a weight of K inputs, N outputs and
// bits-bit codes, for TestWideGLU and TestWidePlain.
type wideCase struct{ K, N, bits, M int }

// wideSums is how a test's split products add up their sums: clusters
// (SetClusters) and, for the plain wide kernels, their own setting
// (SetPlainClusters).
type wideSums struct {
	name                   string
	clusters, plainCluster bool
}

// forWideCases runs each case without and with act order (perm), in
// clusters where the device has them and through global memory, and
// where plain, also with clusters on but the plain wide kernels adding up
// through global memory (their default), as subtests; the backend's
// settings are the run's.
func forWideCases(t *testing.T, b *cuda.Backend, cases []wideCase, plain bool, run func(t *testing.T, c wideCase, perm bool)) {
	clusters := b.Clusters()
	defer b.SetPlainClusters(b.PlainClusters())
	sums := []wideSums{{"clusters", true, true}, {"global", false, false}}
	if plain {
		sums = append(sums, wideSums{"plain-global", true, false})
	}
	for _, c := range cases {
		for _, perm := range []bool{false, true} {
			for _, m := range sums {
				if m.clusters && !clusters {
					continue
				}
				t.Run(fmt.Sprintf("K%d-N%d-%dbit-M%d-perm=%v-sums=%s", c.K, c.N, c.bits, c.M, perm, m.name), func(t *testing.T) {
					b.SetClusters(m.clusters)
					b.SetPlainClusters(m.plainCluster)
					run(t, c, perm)
				})
			}
		}
	}
}

// randomGLU is loadGLU of c's shape in groups of 128.
func randomGLU(t *testing.T, b *cuda.Backend, r *rand.Rand, c wideCase, perm bool) (glu runtime.Tensor, gate, up *runtime.QuantWeight) {
	return loadGLU(t, b, r, c.K, c.N, c.bits, 128, perm)
}

// loadGLU loads a GLU weight (LoadQuantGLU) of random gate and up weights
// of K inputs and N outputs each, groups of gs, up taking gate's
// permutation (act order where perm); freed as the test ends.
func loadGLU(t *testing.T, b *cuda.Backend, r *rand.Rand, K, N, bits, gs int, perm bool) (glu runtime.Tensor, gate, up *runtime.QuantWeight) {
	gate = randomQuant(r, K, N, bits, gs, perm)
	up = randomQuant(r, K, N, bits, gs, false)
	up.Perm = gate.Perm
	glu, err := b.LoadQuantGLU(gate, up)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Free(glu) })
	return glu, gate, up
}

// gluRef is silu(x·gate)·(x·up) in float64, x the M rows xr of K inputs.
func gluRef(xr []float32, gate, up *runtime.QuantWeight, M, N, K int) []float64 {
	g := backendtest.RefMatMul(xr, gate.Dequantize(), M, N, K)
	u := backendtest.RefMatMul(xr, up.Dequantize(), M, N, K)
	want := make([]float64, len(g))
	for i := range g {
		want[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
	}
	return want
}

// TestWideGLU checks the wide GLU kernels (qgemv.cu _g, SetQMMAWide)
// against float64 products of the separate weights and against the 8-warp
// kernels with the outputs moved to slots (an act-order down's input
// order): 4 and 8 bits, with and without act order, a partial last slab
// (12 tiles of outputs in slabs of 7), the 7B shape's gate/up at one row
// (128 slabs, split in two), in clusters and, with clusters off, through
// global memory.
func TestWideGLU(t *testing.T) {
	b := gputest.Backend(t)
	defer b.SetQMMAWide(b.QMMAWide())
	defer b.SetQGLUPieces(b.QGLUPieces())
	b.SetQGLUPieces(0)
	defer b.SetClusters(b.Clusters())
	r := rand.New(rand.NewPCG(21, 22))
	cases := []wideCase{{512, 192, 4, 1}, {512, 192, 8, 4}, {1024, 192, 4, 8}, {4096, 14336, 4, 1}, {4096, 14336, 8, 1}}
	forWideCases(t, b, cases, false, func(t *testing.T, c wideCase, perm bool) {
		glu, gate, up := randomGLU(t, b, r, c, perm)
		// (x scaled so that silu(gate)·up stays within fp16 at
		// K 4,096.)
		x, xr := upload(t, b, runtime.F16, normals(r)(c.M*c.K, 512/float64(c.K)), c.M, c.K)
		want := gluRef(xr, gate, up, c.M, c.N, c.K)
		slots := randomSlots(r, c.N)
		o8, _ := upload(t, b, runtime.F16, make([]float32, c.M*c.N), c.M, c.N)
		ow, _ := upload(t, b, runtime.F16, make([]float32, c.M*c.N), c.M, c.N)
		os, _ := upload(t, b, runtime.F16, make([]float32, c.M*c.N), c.M, c.N)
		b.SetQMMAWide(0)
		b.MatMulGLU(o8, x, glu)
		b.SetQMMAWide(1)
		b.MatMulGLU(ow, x, glu)
		b.MatMulGLUTo(os, x, glu, i32Tensor(t, b, slots))
		got8, gotw := download(t, b, o8), download(t, b, ow)
		if nmse := backendtest.NMSE(gotw, want); !(nmse < 1e-5) {
			t.Errorf("wide: nmse %.3g against float64", nmse)
		}
		if nmse := backendtest.NMSE(got8, want); !(nmse < 1e-5) {
			t.Errorf("8 warps: nmse %.3g against float64", nmse)
		}
		sameBits(t, "wide to slots", download(t, b, os), moved(gotw, c.M, c.N, slots))
	})
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestPiecesGLU checks the pieces kernel (qglu.cu, SetQGLUPieces) against
// float64 products of the separate weights and against the wide kernels it
// stands in for, in the default block shapes (16 warps; one row's 8
// chunks in flight a warp, more rows' 4) and in 32 warps with 4 chunks:
// 4 and 8 bits, with and without act order, groups of 32 (at 8 bits, 16
// groups' scales a warp a piece at 16 warps, more than its lanes' one
// copy each), 64, 128 and the whole K, one to four rows, the 7B shape's
// gate/up at one and two rows (896 pieces), K of 2 to 16 warps' inputs,
// groups of 512, four rows at K 4,096 (the most shared memory) and, for
// the small shapes, a grid of two blocks. A piece's warps' sums are added in warp
// order whichever warp came last and whichever block took the piece, so a
// second run and a grid of two blocks give the same bits; each launch
// leaves its pair of counters zeroed for the launch that takes it next
// (1,100 launches in a row: every pair twice).
func TestPiecesGLU(t *testing.T) {
	b := gputest.Backend(t)
	defer b.SetQMMAWide(b.QMMAWide())
	defer b.SetQGLUPieces(b.QGLUPieces())
	r := rand.New(rand.NewPCG(25, 26))
	type pcase struct{ K, N, bits, M, gs int }
	cases := []pcase{{4096, 14336, 8, 1, 128}, {4096, 14336, 4, 1, 128}, {1024, 896, 8, 3, 32}, {1536, 448, 4, 2, 64},
		{2048, 1344, 8, 4, 2048}, {4096, 14336, 8, 2, 128}, {4096, 1344, 8, 4, 32}, {1024, 896, 4, 2, 512}, {2048, 896, 8, 1, 32}}
	defer b.SetQGLUShape(0, 0)
	for _, c := range cases {
		for _, perm := range []bool{false, true} {
			// (The default shapes, then 32 warps with 4 chunks in flight.)
			for _, sh := range [][2]int{{0, 0}, {32, 4}} {
				t.Run(fmt.Sprintf("K%d-N%d-%dbit-M%d-g%d-perm=%v-shape%v", c.K, c.N, c.bits, c.M, c.gs, perm, sh), func(t *testing.T) {
					glu, gate, up := loadGLU(t, b, r, c.K, c.N, c.bits, c.gs, perm)
					x, xr := upload(t, b, runtime.F16, normals(r)(c.M*c.K, 512/float64(c.K)), c.M, c.K)
					want := gluRef(xr, gate, up, c.M, c.N, c.K)
					slots := randomSlots(r, c.N)
					zero := func() runtime.Tensor {
						o, _ := upload(t, b, runtime.F16, make([]float32, c.M*c.N), c.M, c.N)
						return o
					}
					ow, op, op2, os := zero(), zero(), zero(), zero()
					b.SetQMMAWide(1)
					b.SetQGLUPieces(0)
					b.MatMulGLU(ow, x, glu)
					b.SetQGLUPieces(4)
					b.SetQGLUShape(sh[0], sh[1])
					kname := cuda.QGLUKernel(c.bits, c.M, sh[0], sh[1])
					n0 := qgluLaunches(b, kname)
					b.MatMulGLU(op, x, glu)
					b.MatMulGLU(op2, x, glu)
					b.MatMulGLUTo(os, x, glu, i32Tensor(t, b, slots))
					if n := qgluLaunches(b, kname) - n0; n != 3 {
						t.Fatalf("the pieces kernel ran %d times for three products, want 3", n)
					}
					gotw, gotp := download(t, b, ow), download(t, b, op)
					agree(t, "pieces", gotp, "the wide kernels", gotw, want, 1e-5, 1e-6)
					sameBits(t, "pieces, second run", download(t, b, op2), gotp)
					sameBits(t, "pieces to slots", download(t, b, os), moved(gotp, c.M, c.N, slots))
					// Two blocks take every piece: the same bits.
					if c.K*c.N <= 2048*1344 {
						og := zero()
						b.SetQGLUBlocks(2)
						b.MatMulGLU(og, x, glu)
						b.SetQGLUBlocks(0)
						sameBits(t, "pieces on two blocks", download(t, b, og), gotp)
					}
					// Launches take their pairs of counters in turn (512 pairs):
					// 1,100 launches in a row use every pair twice, each after
					// the launch before it left it zeroed, and the last gives
					// the same bits (on two blocks, so that each launch's blocks
					// take many pieces from their pair).
					if c.K == 1024 && c.bits == 8 && !perm && sh[0] == 0 {
						ol := zero()
						b.SetQGLUBlocks(2)
						for range 1100 {
							b.MatMulGLU(ol, x, glu)
						}
						b.SetQGLUBlocks(0)
						sameBits(t, "pieces, the 1,100th launch", download(t, b, ol), gotp)
					}
				})
			}
		}
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
}

// qgluLaunches counts the launches of qglu.cu's kernel name in both scale
// builds (the pairs, and the scales alone: kernels.ScalesOnly).
func qgluLaunches(b *cuda.Backend, name string) int {
	return b.Launches("qglu.cu", name) + b.Launches("qglu.cu", name+kernels.ScalesOnly)
}

// TestPiecesGLUNorm checks the pieces kernel normalizing its input
// (qglu.cu's _n kernels, SetQGLUNorm, MatMulGLUNormTo): against float64
// (the host's RMSNorm of the rows, then the products of the separate
// weights) and against the norm kernel followed by the pieces kernel
// (within a rounding of the staged input: the squares are summed in
// another order), with and without act order and output slots, 4 and 8
// bits, one to four rows (the 7B shape at one and two); and with more
// rows than GLUNormRows the norm kernel first, the same bits as that pair.
func TestPiecesGLUNorm(t *testing.T) {
	b := gputest.Backend(t)
	defer b.SetQMMAWide(b.QMMAWide())
	defer b.SetQGLUPieces(b.QGLUPieces())
	defer b.SetQGLUNorm(b.GLUNormRows())
	b.SetQMMAWide(1)
	b.SetQGLUPieces(4)
	r := rand.New(rand.NewPCG(27, 28))
	const eps = 1e-5
	type ncase struct{ K, N, bits, M, gs int }
	for _, c := range []ncase{{4096, 14336, 8, 1, 128}, {4096, 14336, 8, 2, 128}, {2048, 1344, 4, 1, 128}, {1024, 896, 8, 4, 32}} {
		for _, perm := range []bool{false, true} {
			t.Run(fmt.Sprintf("K%d-N%d-%dbit-M%d-g%d-perm=%v", c.K, c.N, c.bits, c.M, c.gs, perm), func(t *testing.T) {
				glu, gate, up := loadGLU(t, b, r, c.K, c.N, c.bits, c.gs, perm)
				// (Rows of mean square about 1e-3, so that eps moves the
				// norm by about 1%: a kernel without it fails the bound.)
				x, xr := upload(t, b, runtime.F16, normals(r)(c.M*c.K, 0.03), c.M, c.K)
				// (A norm weight of about 512/K, as TestWideGLU scales x, so
				// that silu(gate)·up stays within fp16: at one, the
				// normalized rows' products by the random pairs' weights
				// overflowed it at 8 bits and two rows.)
				wv := normals(r)(c.K, 0.2)
				for i := range wv {
					wv[i] = (wv[i] + 1) * 512 / float32(c.K)
				}
				nw1, wr := upload(t, b, runtime.F16, wv, 1, c.K)
				b.SetQGLUNorm(4)
				nw, err := b.FuseGLUNorm(nw1, glu)
				if err != nil || nw == nil {
					t.Fatalf("FuseGLUNorm: %v, %v", nw, err)
				}
				defer b.Free(nw)
				// The host's norm, in float64 (the kernels round the normalized
				// rows to fp16: within the bound below).
				xn := make([]float32, len(xr))
				for i, v := range backendtest.RefRMSNorm(xr, wr, c.K, eps) {
					xn[i] = float32(v)
				}
				want := gluRef(xn, gate, up, c.M, c.N, c.K)
				zero := func() runtime.Tensor {
					o, _ := upload(t, b, runtime.F16, make([]float32, c.M*c.N), c.M, c.N)
					return o
				}
				// The pair: the norm kernel, then the pieces kernel.
				xk, _ := upload(t, b, runtime.F16, make([]float32, c.M*c.K), c.M, c.K)
				b.RMSNorm(xk, x, nw1, eps)
				pair := zero()
				b.MatMulGLU(pair, xk, glu)
				nname := cuda.QGLUNormKernel(c.bits, c.M)
				n0 := qgluLaunches(b, nname)
				got, gs := zero(), zero()
				slots := randomSlots(r, c.N)
				b.MatMulGLUNormTo(got, x, nw, eps, glu, nil)
				b.MatMulGLUNormTo(gs, x, nw, eps, glu, i32Tensor(t, b, slots))
				if n := qgluLaunches(b, nname) - n0; n != 2 {
					t.Fatalf("the normalizing pieces kernel ran %d times for two products, want 2", n)
				}
				gotv, pairv := download(t, b, got), download(t, b, pair)
				if nmse := backendtest.NMSE(gotv, want); !(nmse < 1e-5) {
					t.Errorf("normalizing: nmse %.3g against float64", nmse)
				}
				if nmse := backendtest.NMSE(gotv, widen(pairv)); !(nmse < 1e-5) {
					t.Errorf("normalizing: nmse %.3g against the norm kernel and the pieces kernel", nmse)
				}
				sameBits(t, "normalizing, to slots", download(t, b, gs), moved(gotv, c.M, c.N, slots))
				// More rows than GLUNormRows: the norm kernel first.
				if c.M > 1 {
					b.SetQGLUNorm(c.M - 1)
					fb := zero()
					n1 := qgluLaunches(b, nname)
					b.MatMulGLUNormTo(fb, x, nw, eps, glu, nil)
					if qgluLaunches(b, nname) != n1 {
						t.Errorf("%d rows over GLUNormRows %d ran the normalizing kernel", c.M, c.M-1)
					}
					sameBits(t, "rows over GLUNormRows", download(t, b, fb), pairv)
				}
			})
		}
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestWidePlain checks the plain wide kernels (qgemv.cu _p: blocks of 16
// warps, one an SM) against float64 and against the 8-warp kernels, with
// and without act order and a residual, for 4 and 8 bits, a partial last
// slab (384 outputs: a slab and a half), the 7B down product's shape at
// one row, and a split q/k/v fusion's three outputs, in clusters, through
// global memory, and with clusters on but the plain kernels adding up
// through global memory (their default).
func TestWidePlain(t *testing.T) {
	b := gputest.Backend(t)
	defer b.SetQMMAPlain(b.QMMAPlain())
	defer b.SetClusters(b.Clusters())
	r := rand.New(rand.NewPCG(23, 24))
	cases := []wideCase{{512, 256, 4, 1}, {1024, 384, 8, 4}, {2048, 512, 4, 8}, {14336, 4096, 4, 1}, {14336, 4096, 8, 1}}
	forWideCases(t, b, cases, true, func(t *testing.T, c wideCase, perm bool) {
		q := randomQuant(r, c.K, c.N, c.bits, 128, perm)
		w, err := b.LoadQuant(q)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Free(w)
		x, xr := upload(t, b, runtime.F16, normals(r)(c.M*c.K, 8/math.Sqrt(float64(c.K))), c.M, c.K)
		add, ar := upload(t, b, runtime.F16, normals(r)(c.M*c.N, 1), c.M, c.N)
		want := backendtest.RefMatMul(xr, q.Dequantize(), c.M, c.N, c.K)
		for i := range want {
			want[i] += float64(ar[i])
		}
		o8, _ := upload(t, b, runtime.F16, make([]float32, c.M*c.N), c.M, c.N)
		ow, _ := upload(t, b, runtime.F16, make([]float32, c.M*c.N), c.M, c.N)
		b.SetQMMAPlain(0, 8)
		b.MatMulAdd(o8, x, w, add)
		b.SetQMMAPlain(1, 8)
		b.MatMulAdd(ow, x, w, add)
		got8, gotw := download(t, b, o8), download(t, b, ow)
		if nmse := backendtest.NMSE(gotw, want); !(nmse < 1e-5) {
			t.Errorf("wide: nmse %.3g against float64", nmse)
		}
		if nmse := backendtest.NMSE(got8, want); !(nmse < 1e-5) {
			t.Errorf("8 warps: nmse %.3g against float64", nmse)
		}
	})
	// A split fusion's outputs (q/k/v of 1,920 / 384 / 256 columns: slabs
	// of 256 columns that span two outputs), without a residual.
	t.Run("split", func(t *testing.T) {
		const K, M = 1024, 2
		ws := []*runtime.QuantWeight{randomQuant(r, K, 1920, 4, 128, true), randomQuant(r, K, 384, 4, 128, false), randomQuant(r, K, 256, 4, 128, false)}
		ws[1].Perm, ws[2].Perm = ws[0].Perm, ws[0].Perm
		w, err := b.LoadQuantSplit(ws)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Free(w)
		x, xr := upload(t, b, runtime.F16, normals(r)(M*K, 8/math.Sqrt(K)), M, K)
		for _, rows := range []int{0, 1} {
			b.SetQMMAPlain(rows, 8)
			var outs []runtime.Tensor
			for _, q := range ws {
				o, _ := upload(t, b, runtime.F16, make([]float32, M*q.N), M, q.N)
				outs = append(outs, o)
			}
			b.MatMulSplit(outs, x, w)
			for i, q := range ws {
				want := backendtest.RefMatMul(xr, q.Dequantize(), M, q.N, K)
				if nmse := backendtest.NMSE(download(t, b, outs[i]), want); !(nmse < 1e-5) {
					t.Errorf("plain wide from %d rows: output %d: nmse %.3g against float64", rows, i, nmse)
				}
			}
		}
	})
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestPlainDownAfterWide runs a decode step's MLP as the model issues it,
// the wide GLU product and then down_proj's product with the residual,
// with down on the plain wide kernels (SetQMMAPlain): the GLU product then
// lets down launch as its loops end (lateAfterWide), so that down's blocks
// start while gate/up's last ones still run and must wait for its output
// (at one row, 4 bits and 8, the GLU product is the pieces kernel, qglu.cu,
// by default: the wide GLU kernel precedes down here only in the smaller
// shape's 4 rows). Both that path (the default at one row) and the 8-warp one (down
// launched as gate/up ends) against float64 of down over the GLU product's
// own output, in clusters, through global memory, and with clusters on but
// the plain kernels adding up through global memory; the GLU product
// writing into zeros each step (a down that did not wait would read
// zeros), five runs in a row from the same input giving the same bits: 4
// and 8 bits, the 7B shape at one row, and 4 rows of a smaller one.
func TestPlainDownAfterWide(t *testing.T) {
	b := gputest.Backend(t)
	defer b.SetQMMAPlain(b.QMMAPlain())
	defer b.SetQMMAWide(b.QMMAWide())
	defer b.SetClusters(b.Clusters())
	b.SetQMMAWide(1)
	r := rand.New(rand.NewPCG(25, 26))
	// K: the model's width; N: the intermediate's.
	cases := []wideCase{{4096, 14336, 4, 1}, {4096, 14336, 8, 1}, {1024, 2048, 4, 4}}
	forWideCases(t, b, cases, true, func(t *testing.T, c wideCase, perm bool) {
		glu, _, _ := randomGLU(t, b, r, c, perm)
		dq := randomQuant(r, c.N, c.K, c.bits, 128, false)
		down, err := b.LoadQuant(dq)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Free(down)
		x, _ := upload(t, b, runtime.F16, normals(r)(c.M*c.K, inputScale(c.K, c.bits)), c.M, c.K)
		res, rr := upload(t, b, runtime.F16, normals(r)(c.M*c.K, 1), c.M, c.K)
		// Each step writes the GLU's output into zeros, so that a down that
		// read it before the GLU product ended would read zeros.
		step := func(plain int) (out, h []float32) {
			b.SetQMMAPlain(plain, 8)
			ht, _ := upload(t, b, runtime.F16, make([]float32, c.M*c.N), c.M, c.N)
			o, _ := upload(t, b, runtime.F16, make([]float32, c.M*c.K), c.M, c.K)
			b.MatMulGLU(ht, x, glu)
			b.MatMulAdd(o, ht, down, res)
			return download(t, b, o), download(t, b, ht)
		}
		w8, h := step(0)
		want := backendtest.RefMatMul(h, dq.Dequantize(), c.M, c.K, c.N)
		for i := range want {
			want[i] += float64(rr[i])
			if !(math.Abs(want[i]) < 65504) {
				t.Fatalf("the test's data: output %d is %g in float64, beyond fp16", i, want[i])
			}
		}
		if nmse := backendtest.NMSE(w8, want); !(nmse < 1e-5) {
			t.Errorf("8 warps: nmse %.3g against float64", nmse)
		}
		var first []float32
		for run := range 5 {
			got, _ := step(1)
			if nmse := backendtest.NMSE(got, want); !(nmse < 1e-5) {
				t.Errorf("run %d, down on the plain kernels: nmse %.3g against float64", run, nmse)
			}
			if run == 0 {
				first = got
			} else {
				sameBits(t, fmt.Sprintf("run %d against run 0", run), got, first)
			}
		}
	})
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
}

// inputScale is the standard deviation of a random input of K elements to
// the bits-bit random weights of randomQuant that keeps the products' (and
// a product of their outputs') values within fp16: 8-bit codes less their
// zeros are about 16 times 4-bit ones (at 512/K, the 8-bit 7B MLP's outputs
// reached fp16's largest values).
func inputScale(K, bits int) float64 {
	if bits == 8 {
		return 512 / float64(K) / 16
	}
	return 512 / float64(K)
}

func i32s(v []int32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], uint32(x))
	}
	return out
}

// TestPagedDecoderOps runs EmbeddingAt, RoPEStore and PagedAttention on the
// device and on the CPU reference with the same scattered block tables,
// positions (long enough for split attention) and a sliding window, for
// five shapes of heads (4, 8, 3 and 1 query heads a kv head; 128 and 64
// wide), with the plain attention kernel and, for 16-bit caches, the
// tensor-core one (SetAttentionTC), whose splits combine in clusters and,
// with clusters off, through global memory.
func TestPagedDecoderOps(t *testing.T) {
	b := gputest.Backend(t)
	defer b.SetAttentionTC(b.AttentionTC())
	defer b.SetClusters(b.Clusters())
	clusters := b.Clusters()
	c := cpu.New(0)
	r := rand.New(rand.NewPCG(11, 12))
	const bs, blocks, width = 16, 64, 24
	type mode struct {
		name     string
		tc       bool
		clusters bool
	}
	for _, heads := range [][3]int{{8, 2, 128}, {8, 1, 128}, {6, 2, 128}, {4, 2, 64}, {4, 4, 128}} {
		for _, dt := range []runtime.DType{runtime.F16, runtime.BF16, runtime.F32} {
			modes := []mode{{"plain", false, clusters}}
			if dt != runtime.F32 {
				modes = append(modes, mode{"tc", true, clusters}, mode{"tc-noclusters", true, false})
			}
			for _, md := range modes {
				for _, window := range []int{0, 100} {
					hq, hkv, hd := heads[0], heads[1], heads[2]
					t.Run(fmt.Sprintf("heads%dx%dx%d-%v-%s-window%d", hq, hkv, hd, dt, md.name, window), func(t *testing.T) {
						b.SetAttentionTC(0)
						if md.tc {
							b.SetAttentionTC(1)
						}
						b.SetClusters(md.clusters)
						rows := 5
						pos := []int32{0, 17, 140, 300, 383}
						slots := make([]int32, rows)
						tables := make([]int32, rows*width)
						perm := r.Perm(blocks)
						for i := range rows {
							for j := range width {
								tables[i*width+j] = int32(perm[(i*7+j)%blocks])
							}
							slots[i] = tables[i*width+int(pos[i])/bs]*bs + pos[i]%bs
						}
						ids := []int32{3, 1, 4, 1, 5}
						rand32 := func(n int) []float32 {
							v := make([]float32, n)
							for i := range v {
								v[i] = float32(r.NormFloat64())
							}
							return v
						}
						qv, kv, vv := rand32(rows*hq*hd), rand32(rows*hkv*hd), rand32(rows*hkv*hd)
						kcv, vcv := rand32(blocks*bs*hkv*hd), rand32(blocks*bs*hkv*hd)
						table := rand32(10 * hd * hq)
						type side struct {
							b                                         runtime.Backend
							q, k, v, kc, vc, pos, slot, tab, ids, emb runtime.Tensor
							out, x                                    runtime.Tensor
						}
						mk := func(be runtime.Backend, dt runtime.DType) *side {
							s := &side{b: be}
							ft := func(v []float32, rows, cols int) runtime.Tensor {
								x, err := be.Alloc(dt, rows, cols)
								if err != nil {
									t.Fatal(err)
								}
								if err := be.Upload(x, v); err != nil {
									t.Fatal(err)
								}
								return x
							}
							it := func(v []int32) runtime.Tensor { return i32Tensor(t, be, v) }
							s.q, s.k, s.v = ft(qv, rows, hq*hd), ft(kv, rows, hkv*hd), ft(vv, rows, hkv*hd)
							s.kc, s.vc = ft(kcv, blocks*bs, hkv*hd), ft(vcv, blocks*bs, hkv*hd)
							s.emb, s.x = ft(table, 10, hq*hd), ft(make([]float32, rows*hq*hd), rows, hq*hd)
							s.out = ft(make([]float32, rows*hq*hd), rows, hq*hd)
							s.pos, s.slot, s.tab, s.ids = it(pos), it(slots), it(tables), it(ids)
							return s
						}
						// The reference starts from the device's rounded inputs.
						g := mk(b, dt)
						round := func(x runtime.Tensor) []float32 {
							v := make([]float32, x.Len())
							if err := b.Download(v, x); err != nil {
								t.Fatal(err)
							}
							return v
						}
						qv, kv, vv, kcv, vcv, table = round(g.q), round(g.k), round(g.v), round(g.kc), round(g.vc), round(g.emb)
						h := mk(c, runtime.F32)
						p := runtime.AttentionParams{HeadDim: hd, Window: window, Scale: float32(1 / math.Sqrt(float64(hd)))}
						for _, s := range []*side{g, h} {
							pd := s.b.(runtime.PagedDecoder)
							pd.EmbeddingAt(s.x, s.emb, s.ids)
							pd.RoPEStore(s.q, s.k, s.v, s.kc, s.vc, s.pos, s.slot, hd, llama31RoPE(t, hd))
							pd.PagedAttention(s.out, s.q, s.kc, s.vc, s.tab, s.pos, bs, p)
						}
						tol := map[runtime.DType]float64{runtime.F16: 1e-5, runtime.BF16: 1e-4, runtime.F32: 1e-10}[dt]
						for _, e := range []struct {
							name string
							g, h runtime.Tensor
						}{{"embedding", g.x, h.x}, {"q", g.q, h.q}, {"kc", g.kc, h.kc}, {"vc", g.vc, h.vc}, {"attention", g.out, h.out}} {
							want := make([]float32, e.h.Len())
							if err := c.Download(want, e.h); err != nil {
								t.Fatal(err)
							}
							w64 := make([]float64, len(want))
							for i, v := range want {
								w64[i] = float64(v)
							}
							if nmse := backendtest.NMSE(round(e.g), w64); !(nmse < tol) {
								t.Errorf("%s: nmse %.3g against the CPU, want < %.1g", e.name, nmse, tol)
							}
						}
						for _, x := range []runtime.Tensor{g.q, g.k, g.v, g.kc, g.vc, g.pos, g.slot, g.tab, g.ids, g.emb, g.out, g.x} {
							b.Free(x)
						}
					})
				}
			}
		}
	}
}

// tinyF16 loads openchat-tiny on b in fp16 (closed at the test's end) and
// returns 200 WikiText ids and three prompts of them (37, 5 and 100
// tokens).
func tinyF16(t *testing.T, b *cuda.Backend) (*model.Model, []int, [][]int) {
	t.Helper()
	mg, err := model.LoadWith(fixtures.Path(t, "models/openchat-tiny"), b, model.Options{DType: runtime.F16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mg.Close)
	ids := fixtures.WikiIDs(t)[:200]
	return mg, ids, [][]int{ids[:37], ids[40:45], ids[50:150]}
}

// TestPagedDecodeGraphs decodes three sequences of openchat-tiny in fp16
// with the paged cache: steps replayed from CUDA graphs (rows padded to a
// bucket of 4) must give exactly the logits of the same steps run op by
// op, and both must match the CPU reference of each sequence alone.
func TestPagedDecodeGraphs(t *testing.T) {
	b := gputest.Backend(t)
	mc := load(t, fixtures.Path(t, "models/openchat-tiny"), cpu.New(0))
	mg, ids, prompts := tinyF16(t, b)
	logits := map[bool][][][]float32{}
	for _, graphs := range []bool{true, false} {
		c, err := mg.NewPagedCache(64, 16, 256)
		if err != nil {
			t.Fatal(err)
		}
		c.NoGraphs = !graphs
		seqs := make([]kvcache.Seq, len(prompts))
		var steps []model.StepSeq
		for i, p := range prompts {
			if err := c.Pool.Reserve(&seqs[i], len(p)+8); err != nil {
				t.Fatal(err)
			}
			steps = append(steps, model.StepSeq{Seq: &seqs[i], Tokens: p, Logits: true})
		}
		out, err := mg.Step(c, steps)
		if err != nil {
			t.Fatal(err)
		}
		var all [][][]float32
		for step := range 6 {
			all = append(all, out)
			for i := range steps {
				steps[i].Tokens = []int{ids[160+step*3+i]}
			}
			if out, err = mg.Step(c, steps); err != nil {
				t.Fatal(err)
			}
		}
		all = append(all, out)
		if graphs && c.GraphErr() != nil {
			t.Fatalf("decode steps were not recorded: %v", c.GraphErr())
		}
		logits[graphs] = all
		c.Free()
	}
	for step := range logits[true] {
		for i := range prompts {
			g, e := logits[true][step][i], logits[false][step][i]
			for j := range g {
				if g[j] != e[j] {
					t.Fatalf("step %d sequence %d: replayed logit %d = %v, op by op %v", step, i, j, g[j], e[j])
				}
			}
		}
	}
	// The CPU reference of the last step, each sequence alone.
	for i, p := range prompts {
		seq := append([]int(nil), p...)
		for step := range 6 {
			seq = append(seq, ids[160+step*3+i])
		}
		want, err := mc.ForwardLast(seq, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		w64 := make([]float64, len(want))
		for j, v := range want {
			w64[j] = float64(v)
		}
		if nmse := backendtest.NMSE(logits[true][6][i], w64); !(nmse < 1e-4) {
			t.Errorf("sequence %d: fp16 decode logits nmse %.3g against the fp32 CPU", i, nmse)
		}
	}
}

// TestMixedStepsOnDevice runs openchat-tiny in fp16 through general steps
// as the engine plans them, generating sequences first (their rows attend
// through one PagedAttention) and prompt chunks after (RoPEStore, each
// sequence's K and V gathered by EmbeddingAt, Attention), blocks of the
// three sequences interleaved: each sequence's last logits must match the
// CPU reference of that sequence alone.
func TestMixedStepsOnDevice(t *testing.T) {
	b := gputest.Backend(t)
	mc := load(t, fixtures.Path(t, "models/openchat-tiny"), cpu.New(0))
	mg, ids, _ := tinyF16(t, b)
	c, err := mg.NewPagedCache(64, 16, 256)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Free()
	seqs := make([]kvcache.Seq, 3)
	for n := 16; n <= 128; n += 16 {
		for i := range seqs {
			if err := c.Pool.Reserve(&seqs[i], n); err != nil {
				t.Fatal(err)
			}
		}
	}
	toks := make([][]int, 3)
	step := func(st []model.StepSeq) [][]float32 {
		t.Helper()
		for i := range st {
			st[i].Logits = true
			for j := range seqs {
				if st[i].Seq == &seqs[j] {
					toks[j] = append(toks[j], st[i].Tokens...)
				}
			}
		}
		out, err := mg.Step(c, st)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	check := func(what string, j int, got []float32) {
		t.Helper()
		want, err := mc.ForwardLast(toks[j], nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		w64 := make([]float64, len(want))
		for k, v := range want {
			w64[k] = float64(v)
		}
		if nmse := backendtest.NMSE(got, w64); !(nmse < 1e-4) {
			t.Errorf("%s, sequence %d (%d tokens): fp16 logits nmse %.3g against the fp32 CPU", what, j, len(toks[j]), nmse)
		}
	}
	// Two prompts, 37 and 21 tokens (a block and a part), then the third's
	// chunks beside the first two's decode rows.
	step([]model.StepSeq{{Seq: &seqs[0], Tokens: ids[:37]}, {Seq: &seqs[1], Tokens: ids[40:61]}})
	for r := range 4 {
		out := step([]model.StepSeq{
			{Seq: &seqs[1], Tokens: ids[100+r : 101+r]},
			{Seq: &seqs[0], Tokens: ids[120+r : 121+r]},
			{Seq: &seqs[2], Tokens: ids[r*19 : r*19+19]},
		})
		for i, j := range []int{1, 0, 2} {
			check(fmt.Sprintf("mixed step %d", r), j, out[i])
		}
	}
}

// TestPagedAttentionCombines checks split paged attention's combines
// against the CPU reference: rows of one split, of 2 to 8 (combined in a
// thread-block cluster's shared memory where the device has clusters) and
// of more (through global memory), with and without the output's column
// order; with clusters off every split row goes through global memory.
func TestPagedAttentionCombines(t *testing.T) {
	b := gputest.Backend(t)
	prevCl := b.Clusters()
	defer b.SetClusters(prevCl)
	c := cpu.New(0)
	r := rand.New(rand.NewPCG(21, 22))
	rand32 := normals(r)
	const bs, blocks, width = 16, 96, 288
	// Lengths 1, 18, 61, 141, 380, 1101, 1201 and 4401: one split, one,
	// two, three, eight (the cluster combines them; splits of at least 48
	// positions, defaultAttnSplit), eight longer ones (the cluster combines
	// them: nine or ten of 128 positions otherwise, common.cuh pa_splits)
	// and 32, through global memory, where the grid has more splits than a
	// cluster (hkv 1: 32 splits on an H200); with hkv 8 the grid has five,
	// and every split row is combined in its cluster. Without clusters the
	// last three take 9, 10 and 32 splits, combined through global memory.
	pos := []int32{0, 17, 60, 140, 379, 1100, 1200, 4400}
	rows := len(pos)
	for _, sh := range []struct{ hd, hq, hkv int }{{128, 32, 8}, {64, 8, 1}, {128, 8, 8}} {
		for _, dt := range []runtime.DType{runtime.F16, runtime.BF16} {
			for _, ordered := range []bool{false, true} {
				name := fmt.Sprintf("hd%d-hq%d-hkv%d-%v-ordered%v", sh.hd, sh.hq, sh.hkv, dt, ordered)
				t.Run(name, func(t *testing.T) {
					hd, hq, hkv := sh.hd, sh.hq, sh.hkv
					tables := make([]int32, rows*width)
					for i := range rows {
						perm := r.Perm(blocks)
						for j := range width {
							tables[i*width+j] = int32(perm[j%blocks])
						}
					}
					var slots []int32
					if ordered {
						for _, v := range r.Perm(hq * hd) {
							slots = append(slots, int32(v))
						}
					}
					q, qv := upload(t, b, dt, rand32(rows*hq*hd, 1), rows, hq*hd)
					kc, kv := upload(t, b, dt, rand32(blocks*bs*hkv*hd, 1), blocks*bs, hkv*hd)
					vc, vv := upload(t, b, dt, rand32(blocks*bs*hkv*hd, 1), blocks*bs, hkv*hd)
					pt, tt := i32Tensor(t, b, pos), i32Tensor(t, b, tables)
					var st runtime.Tensor
					if ordered {
						st = i32Tensor(t, b, slots)
					}
					p := runtime.AttentionParams{HeadDim: hd, Scale: float32(1 / math.Sqrt(float64(hd)))}
					run := func(clusters bool) []float32 {
						b.SetClusters(clusters && prevCl)
						out, _ := upload(t, b, dt, make([]float32, rows*hq*hd), rows, hq*hd)
						defer b.Free(out)
						b.PagedAttentionTo(out, q, kc, vc, tt, pt, bs, p, st)
						return download(t, b, out)
					}
					outs := map[string][]float32{"clusters": run(true), "global memory": run(false)}
					// The CPU reference, on the device's rounded inputs, in
					// the order of the columns.
					want := cpuPagedAttention(t, c, qv, kv, vv, tables, pos, rows, hq*hd, blocks*bs, hkv*hd, bs, p)
					w64 := make([]float64, len(want))
					for i := range want {
						col := i % (hq * hd)
						if ordered {
							col = int(slots[col])
						}
						w64[i/(hq*hd)*hq*hd+col] = float64(want[i])
					}
					for name, got := range outs {
						if nmse := backendtest.NMSE(got, w64); !(nmse < 1e-4) {
							t.Errorf("%s: nmse %.3g against the CPU, want < 1e-4", name, nmse)
						}
					}
					for _, x := range []runtime.Tensor{q, kc, vc, pt, tt} {
						b.Free(x)
					}
					if ordered {
						b.Free(st)
					}
				})
			}
		}
	}
}

// TestStepAheadOnDevice decodes three sequences of openchat-tiny in fp16
// with steps issued ahead (each fed the tokens the step before drew, on
// the device, before they are read) and with the tokens fed from the
// host: the same draws, greedy and sampled, through replayed graphs. With
// every sequence greedy the steps draw in their graphs (DrawGreedy), and
// give the tokens of steps run op by op that draw after them.
func TestStepAheadOnDevice(t *testing.T) {
	mg, _, prompts := tinyF16(t, gputest.Backend(t))
	rules := []runtime.SampleParams{{}, {Temperature: 0.9, TopP: 0.95, U: 0.4}, {Temperature: 1.1, TopK: 30, U: 0.8}}
	const steps = 24
	run := func(ahead, noGraphs bool) [][]int {
		c, err := mg.NewPagedCache(64, 16, 256)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Free()
		c.NoGraphs = noGraphs
		seqs := make([]kvcache.Seq, len(prompts))
		st := make([]model.StepSeq, len(prompts))
		for i, p := range prompts {
			if err := c.Pool.Reserve(&seqs[i], len(p)+steps); err != nil {
				t.Fatal(err)
			}
			st[i] = model.StepSeq{Seq: &seqs[i], Tokens: p, Sample: &rules[i]}
		}
		drawn := make([][]int, len(prompts))
		keep := func(p *model.Pending) {
			_, toks, err := p.Wait()
			if err != nil {
				t.Fatal(err)
			}
			for i, tk := range toks {
				drawn[i] = append(drawn[i], tk)
				st[i].Tokens = []int{tk}
			}
		}
		var pend *model.Pending
		for step := range steps {
			if ahead && step > 0 {
				for i := range st {
					st[i].Tokens, st[i].Fed = nil, true
				}
			}
			p, err := mg.StepAhead(c, st)
			if err != nil {
				t.Fatal(err)
			}
			if !ahead {
				keep(p)
				continue
			}
			if pend != nil {
				keep(pend)
			}
			pend = p
		}
		if pend != nil {
			keep(pend)
		}
		if c.GraphErr() != nil {
			t.Fatalf("decode steps were not recorded: %v", c.GraphErr())
		}
		return drawn
	}
	want, got := run(false, false), run(true, false)
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("sequence %d drew %v issued ahead, %v fed from the host", i, got[i], want[i])
		}
	}
	rules = []runtime.SampleParams{{}, {Temperature: 0.9, TopK: 1, U: 0.4}, {Temperature: -1}}
	want = run(false, true)
	for _, ahead := range []bool{false, true} {
		got := run(ahead, false)
		for i := range want {
			if !slices.Equal(got[i], want[i]) {
				t.Errorf("greedy, ahead %v: sequence %d drew %v in the step's graph, %v after steps run op by op", ahead, i, got[i], want[i])
			}
		}
	}
}

// TestPagedAttentionFitsClusters checks the tensor-core paged attention of
// 16 rows with the 7B shape's heads (32 query heads, 8 kv heads of 128;
// two stages, three blocks an SM; three splits of at least 48 positions
// each, in clusters of three): the device's count of clusters of three
// that run at once is at most one an SM, fitClusters takes two splits
// where 128 clusters of three do not run at once and 128 of two do (the
// H200: 124 and 198), three where they do, and the outputs with the
// clusters fitted and without match the CPU's.
func TestPagedAttentionFitsClusters(t *testing.T) {
	b := gputest.Backend(t)
	if !b.Clusters() || b.AttentionTC() == 0 || b.AttentionTC() > 16 {
		t.Skip("no clusters or no tensor-core attention at 16 rows on this device")
	}
	const rows, hq, hkv, hd, bs, blocks, width = 16, 32, 8, 128, 16, 96, 24
	shared := b.PagedTCShared(rows, hkv, hd, hq/hkv)
	name := cuda.PagedTCKernel(hd, hq/hkv, runtime.F16)
	active := func(c int) int { return b.ActiveClusters("decode.cu", name, cuda.PagedThreads, shared, c) }
	n3 := active(3)
	if n3 == 0 {
		t.Skip("the driver does not report the clusters that run at once")
	}
	if n3 > b.SMs() {
		t.Errorf("%d clusters of three blocks of %d bytes at once, more than one an SM (%d)", n3, shared, b.SMs())
	}
	// Three splits: 128 clusters of three. Where fewer run at once and
	// 128 of two do, two splits take one wave instead of two.
	S, clu := cuda.FitClusters(3, 3, rows*hkv, active)
	n2 := active(2)
	t.Logf("clusters at once: %d of three, %d of two; 16 rows take %d splits in clusters of %d", n3, n2, S, clu)
	if want := 3; n3 < rows*hkv && n2 >= rows*hkv && (S != 2 || clu != 2) || n3 >= rows*hkv && (S != want || clu != want) {
		t.Errorf("%d splits in clusters of %d (%d of three, %d of two at once)", S, clu, n3, n2)
	}

	r := rand.New(rand.NewPCG(31, 32))
	rand32 := normals(r)
	pos := make([]int32, rows)
	tables := make([]int32, rows*width)
	for i := range pos {
		pos[i] = int32(150 + 10*i) // 150-300: three splits of 48 or more
		perm := r.Perm(blocks)
		for j := range width {
			tables[i*width+j] = int32(perm[j])
		}
	}
	q, qv := upload(t, b, runtime.F16, rand32(rows*hq*hd, 1), rows, hq*hd)
	kc, kv := upload(t, b, runtime.F16, rand32(blocks*bs*hkv*hd, 1), blocks*bs, hkv*hd)
	vc, vv := upload(t, b, runtime.F16, rand32(blocks*bs*hkv*hd, 1), blocks*bs, hkv*hd)
	pt, tt := i32Tensor(t, b, pos), i32Tensor(t, b, tables)
	defer func() {
		for _, x := range []runtime.Tensor{pt, tt} {
			b.Free(x)
		}
	}()
	p := runtime.AttentionParams{HeadDim: hd, Scale: float32(1 / math.Sqrt(float64(hd)))}
	want := cpuPagedAttention(t, cpu.New(0), qv, kv, vv, tables, pos, rows, hq*hd, blocks*bs, hkv*hd, bs, p)
	w64 := make([]float64, len(want))
	for i, v := range want {
		w64[i] = float64(v)
	}
	prev := b.SetAttentionFit(true)
	defer b.SetAttentionFit(prev)
	for _, fit := range []bool{true, false} {
		b.SetAttentionFit(fit)
		out, _ := upload(t, b, runtime.F16, make([]float32, rows*hq*hd), rows, hq*hd)
		b.PagedAttentionTo(out, q, kc, vc, tt, pt, bs, p, nil)
		if nmse := backendtest.NMSE(download(t, b, out), w64); !(nmse < 1e-4) {
			t.Errorf("clusters fitted %v: nmse %.3g against the CPU, want < 1e-4", fit, nmse)
		}
	}
}

// cpuPagedAttention is the CPU backend c's paged attention of rows queries
// (q: [rows, qc]) over caches k and v ([slots, kvc]) with blocks of bs
// positions, block tables tables and positions pos: the reference the
// device's kernels are checked against, in fp32.
func cpuPagedAttention(t *testing.T, c *cpu.Backend, q, k, v []float32, tables, pos []int32, rows, qc, slots, kvc, bs int, p runtime.AttentionParams) []float32 {
	t.Helper()
	cq, _ := c.Alloc(runtime.F32, rows, qc)
	ck, _ := c.Alloc(runtime.F32, slots, kvc)
	cv, _ := c.Alloc(runtime.F32, slots, kvc)
	out, _ := c.Alloc(runtime.F32, rows, qc)
	for _, u := range []struct {
		x runtime.Tensor
		v []float32
	}{{cq, q}, {ck, k}, {cv, v}} {
		if err := c.Upload(u.x, u.v); err != nil {
			t.Fatal(err)
		}
	}
	c.PagedAttention(out, cq, ck, cv, i32Tensor(t, c, tables), i32Tensor(t, c, pos), bs, p)
	want := make([]float32, rows*qc)
	if err := c.Download(want, out); err != nil {
		t.Fatal(err)
	}
	return want
}
