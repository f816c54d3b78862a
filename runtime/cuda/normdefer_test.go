package cuda_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
)

// TestNormDefer checks runtime.NormDeferrer on the device against the
// norm kernel's path: a producer's residual output equals MatMulAdd's bit
// for bit, its y equals, bit for bit, the output times the norm weight over
// its largest magnitude (rounded once, as the host computes it) in the
// consumer's input slots, and the consumers' products of y (a GLU, and a
// q/k/v split with RoPE and the cache store) match the products of the norm
// kernel's rows (RMSNorm, then MatMulGLU or MatMulSplitRoPE) within
// rounding: with and without act order, fp16 (bf16 norms stay whole), at
// the 7B shape's width and a narrow one, on the warpgroup-MMA kernels of
// two, four and eight tiles (and the others with QN_ALL=1), split K in
// clusters and through global memory.
func TestNormDefer(t *testing.T) {
	b := gputest.Backend(t)
	if !b.WarpgroupMMA() {
		t.Skip("no warpgroup MMA on this device: norms are never taken apart")
	}
	r := rand.New(rand.NewPCG(51, 52))
	rand32 := normals(r)
	const hd, hq, hkv, slots, eps = 128, 2, 1, 64, 1e-5
	prevCl, prevWG := b.Clusters(), b.QMMAWG()
	defer b.SetClusters(prevCl)
	defer b.SetQMMAWG(prevWG)
	defer b.SetNormDefer(b.NormDeferFrom())
	b.SetNormDefer(1)
	// Only kernels compiled for it take part: with
	// GPTQTOOL_KERNEL_DEFINES=QN_WG=1 the warpgroup-MMA ones, with QN_ALL=1
	// the one-tile and two-tile kernels too.
	defs := os.Getenv("GPTQTOOL_KERNEL_DEFINES")
	all := strings.Contains(defs, "QN_ALL=1")
	if !all && !strings.Contains(defs, "QN_WG=1") {
		if b.NormDeferred(32) {
			t.Error("NormDeferred(32) with kernels not compiled for deferred norms")
		}
		t.Skip("the kernels are not compiled for deferred norms: run with GPTQTOOL_KERNEL_DEFINES=QN_WG=1 or QN_ALL=1")
	}
	small := []int{}
	if all {
		small = []int{1, 5, 8, 13}
	}
	for _, c := range []struct {
		K        int
		perm     bool
		clusters bool
		wg       int
		rows     []int
	}{
		{4096, true, true, 4, append(small, 17, 32, 40, 64)},
		{4096, false, true, 4, []int{32}},
		{512, true, true, 2, []int{9, 16, 32}},
		{4096, true, false, 4, append(small, 32, 64)},
	} {
		b.SetClusters(c.clusters)
		b.SetQMMAWG(c.wg)
		// The producer (down_proj-like: 1024 inputs, K outputs) and the
		// consumers of K inputs sharing one permutation.
		prod, err := b.LoadQuant(randomQuant(r, 1024, c.K, 4, 128, true))
		if err != nil {
			t.Fatal(err)
		}
		g, u := randomQuant(r, c.K, 256, 4, 128, c.perm), randomQuant(r, c.K, 256, 4, 128, false)
		u.Perm = g.Perm
		glu, err := b.LoadQuantGLU(g, u)
		if err != nil {
			t.Fatal(err)
		}
		qa, kb, vb := randomQuant(r, c.K, hq*hd, 4, 128, false), randomQuant(r, c.K, hkv*hd, 4, 128, false), randomQuant(r, c.K, hkv*hd, 4, 128, false)
		qa.Perm, kb.Perm, vb.Perm = g.Perm, g.Perm, g.Perm
		split, err := b.LoadQuantSplit([]*runtime.QuantWeight{qa, kb, vb})
		if err != nil {
			t.Fatal(err)
		}
		// bf16 rows stay whole (the _w kernels stage them scaled into
		// fp16, where y's small values would be lost).
		bw, _ := upload(t, b, runtime.BF16, rand32(c.K, 1), 1, c.K)
		if dn, err := b.DeferNorm(bw, prod, glu); dn != nil || err != nil {
			t.Errorf("DeferNorm of a bf16 norm weight: %v, %v; want nil, nil", dn, err)
		}
		const dt = runtime.F16
		// Norm weights with a few large entries (as trained ones have).
		wv := rand32(c.K, 0.3)
		for i := 0; i < c.K; i += 97 {
			wv[i] *= 8
		}
		nw, nwr := upload(t, b, dt, wv, 1, c.K)
		dnG, err := b.DeferNorm(nw, prod, glu)
		if err != nil || dnG == nil {
			t.Fatalf("DeferNorm for the GLU: %v, %v", dnG, err)
		}
		dnS, err := b.DeferNorm(nw, prod, split)
		if err != nil || dnS == nil {
			t.Fatalf("DeferNorm for the split: %v, %v", dnS, err)
		}
		var wmax float32
		for _, v := range nwr {
			wmax = max(wmax, float32(math.Abs(float64(v))))
		}
		// The consumers' input slots: the inverse of their permutation
		// (sequential input k reads column Perm[k]).
		var sl []int32
		if c.perm {
			sl = make([]int32, c.K)
			for k, col := range g.Perm {
				sl[col] = int32(k)
			}
		}
		for _, M := range c.rows {
			name := fmt.Sprintf("K%d-perm%v-cl%v-wg%d-%v-M%d", c.K, c.perm, c.clusters, c.wg, dt, M)
			t.Run(name, func(t *testing.T) {
				if !b.NormDeferred(M) {
					t.Fatalf("NormDeferred(%d) = false with the _w kernels from %d tiles (QN_ALL %v)", M, c.wg, all)
				}
				a, _ := upload(t, b, dt, rand32(M*1024, 1), M, 1024)
				x0 := rand32(M*c.K, 2)
				// The norm kernel's path.
				x1, _ := upload(t, b, dt, x0, M, c.K)
				xn, _ := upload(t, b, dt, make([]float32, M*c.K), M, c.K)
				b.MatMulAdd(x1, a, prod, x1)
				b.RMSNorm(xn, x1, nw, eps)
				g1, _ := upload(t, b, dt, make([]float32, M*256), M, 256)
				b.MatMulGLU(g1, xn, glu)
				// Taken apart.
				x2, _ := upload(t, b, dt, x0, M, c.K)
				y, _ := upload(t, b, dt, make([]float32, M*c.K), M, c.K)
				b.MatMulAddNorm(x2, a, prod, x2, y, dnG)
				g2, _ := upload(t, b, dt, make([]float32, M*256), M, 256)
				b.MatMulGLUDeferred(g2, y, dnG, eps, b.InOrder(glu), nil)
				xs := download(t, b, x2)
				sameBits(t, "the producer's residual output", xs, download(t, b, x1))
				want := make([]float32, M*c.K)
				for m := range M {
					for n := range c.K {
						v := half.F16ToF32(half.F32ToF16(xs[m*c.K+n] * (nwr[n] / wmax)))
						to := n
						if sl != nil {
							to = int(sl[n])
						}
						want[m*c.K+to] = v
					}
				}
				sameBits(t, "y", download(t, b, y), want)
				const tol = 2e-5
				closeTo(t, "glu", download(t, b, g2), download(t, b, g1), tol)

				// The split consumer, rotating and storing in the cache.
				pt, st := ropeRows(t, b, r, M, slots)
				cache := rand32(slots*hkv*hd, 1)
				o1, kc1, vc1 := ropeOutputs(t, b, dt, M, hq*hd, hkv*hd, cache)
				o2, kc2, vc2 := ropeOutputs(t, b, dt, M, hq*hd, hkv*hd, cache)
				b.MatMulSplitRoPE(o1, xn, nil, 0, split, kc1, vc1, pt, st, hd, 1e6)
				x3, _ := upload(t, b, dt, x0, M, c.K)
				b.MatMulAddNorm(x3, a, prod, x3, y, dnS)
				b.MatMulSplitRoPEDeferred(o2, y, dnS, eps, b.InOrder(split), kc2, vc2, pt, st, hd, 1e6)
				for i, name := range []string{"q", "k", "v"} {
					closeTo(t, name, download(t, b, o2[i]), download(t, b, o1[i]), tol)
				}
				closeTo(t, "k cache", download(t, b, kc2), download(t, b, kc1), tol)
				closeTo(t, "v cache", download(t, b, vc2), download(t, b, vc1), tol)
			})
		}
		// A consumer given the other consumer's weight is refused.
		func() {
			defer func() {
				if recover() == nil {
					t.Error("a GLU product with the split's DeferNorm weight did not panic")
				}
			}()
			y, _ := upload(t, b, dt, make([]float32, 32*c.K), 32, c.K)
			g3, _ := upload(t, b, dt, make([]float32, 32*256), 32, 256)
			b.MatMulGLUDeferred(g3, y, dnS, eps, b.InOrder(glu), nil)
		}()
		b.Free(dnG)
		b.Free(dnS)
		b.Free(prod)
		b.Free(glu)
		b.Free(split)
	}
	// Off, below the threshold, or for rows no kernel of theirs takes,
	// nothing is deferred.
	b.SetQMMAWG(4)
	if b.NormDeferred(8) != all || b.NormDeferred(65) {
		t.Errorf("NormDeferred(8) = %v (QN_ALL %v), NormDeferred(65) = %v", b.NormDeferred(8), all, b.NormDeferred(65))
	}
	b.SetNormDefer(17)
	if b.NormDeferred(16) || !b.NormDeferred(17) {
		t.Error("GPTQTOOL_NORM_DEFER=17 does not defer from 17 rows exactly")
	}
	b.SetNormDefer(0)
	if b.NormDeferred(32) {
		t.Error("NormDeferred true with the switch off")
	}
}

// closeTo fails unless got's normalized mean squared error against want is
// below tol (the products of rows rounded at different points).
func closeTo(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	w64 := make([]float64, len(want))
	for i, v := range want {
		w64[i] = float64(v)
	}
	if nmse := backendtest.NMSE(got, w64); !(nmse < tol) {
		t.Errorf("%s: nmse %.3g against the norm kernel's path, want < %.g", what, nmse, tol)
	}
}
