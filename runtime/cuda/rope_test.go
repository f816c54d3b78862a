package cuda_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
)

// plainRoPE returns runtime.RoPEFreqs' plain table of rope_theta theta for
// head size hd.
func plainRoPE(tb testing.TB, hd int, theta float64) []float32 {
	tb.Helper()
	inv, err := runtime.RoPEFreqs(hd, theta, hfconfig.RopeScaling{})
	if err != nil {
		tb.Fatal(err)
	}
	return inv
}

// llama31RoPE returns runtime.RoPEFreqs' table of Llama 3.1 (rope_theta
// 500000, llama3 scaling: factor 8, low 1, high 4, original 8192) for head
// size hd.
func llama31RoPE(tb testing.TB, hd int) []float32 {
	tb.Helper()
	inv, err := runtime.RoPEFreqs(hd, 500000, hfconfig.RopeScaling{Type: hfconfig.RopeLlama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192})
	if err != nil {
		tb.Fatal(err)
	}
	return inv
}

// TestRoPEFuse checks runtime.RoPEFuser on the device: a q/k/v product
// that rotates q and k and stores k and v in the paged cache in its
// epilogue gives, bit for bit, the outputs and caches of the product
// followed by RoPEStore, for rows at scattered positions and cache slots,
// rotated by a plain table, by Llama 3.1's scaled one and by a partial
// one (Phi-4-mini's 96 of 128 channels, which the epilogue does not
// compute: MatMulSplitRoPE takes the product and RoPEStore; RoPEStore
// against the CPU with each: backendtest),
// with and without act order and a fused norm, in f16 and bf16, on every
// kernel (one, two and four tiles, two passes of 32 rows, 4 and 8 bits,
// split K in clusters and through global memory; the warpgroup-MMA
// kernels of two and four tiles where the device has them). A
// weight whose groups are not whole chunks takes the unfused path, and
// gives the same.
func TestRoPEFuse(t *testing.T) {
	b := gputest.Backend(t)
	withNormFuse(t, b, 8)
	r := rand.New(rand.NewPCG(41, 42))
	rand32 := normals(r)
	const hd, hq, hkv, slots = 128, 4, 2, 64
	ropes := []struct {
		name string
		inv  []float32
	}{{"theta1e6", plainRoPE(t, hd, 1e6)}, {"llama3.1", llama31RoPE(t, hd)}, {"partial96", plainRoPE(t, 96, 1e4)}}
	prevCl := b.Clusters()
	defer b.SetClusters(prevCl)
	defer b.SetQMMAWG(b.QMMAWG())
	for _, c := range []struct {
		K, bits, gs int
		perm        bool
		clusters    bool
		wg          bool
	}{
		{512, 4, 128, false, true, false}, {4096, 4, 128, true, true, false}, {4096, 4, 128, false, true, false}, {512, 4, 32, true, true, false},
		{4096, 8, 128, true, true, false},
		// Split K through global memory: the last block's epilogue.
		{4096, 4, 128, true, false, false}, {4096, 8, 128, false, false, false},
		// Warpgroup MMA (9-64 rows in one pass).
		{4096, 4, 128, true, true, true}, {4096, 8, 128, false, false, true},
	} {
		if c.wg && !b.WarpgroupMMA() {
			continue
		}
		b.SetClusters(c.clusters)
		if c.wg {
			b.SetQMMAWG(2)
		} else {
			b.SetQMMAWG(0)
		}
		qa := randomQuant(r, c.K, hq*hd, c.bits, c.gs, c.perm)
		kb, vb := randomQuant(r, c.K, hkv*hd, c.bits, c.gs, false), randomQuant(r, c.K, hkv*hd, c.bits, c.gs, false)
		kb.Perm, vb.Perm = qa.Perm, qa.Perm
		split, err := b.LoadQuantSplit([]*runtime.QuantWeight{qa, kb, vb})
		if err != nil {
			t.Fatal(err)
		}
		for _, dt := range []runtime.DType{runtime.F16, runtime.BF16} {
			nwt, _ := upload(t, b, dt, rand32(c.K, 0.5), 1, c.K)
			fs, err := b.FuseNorm(nwt, split)
			if err != nil || fs == nil {
				t.Fatalf("FuseNorm: %v, %v", fs, err)
			}
			for _, M := range []int{1, 5, 8, 13, 20, 32, 40, 52} {
				for i, norm := range []bool{false, true} {
					// Plain RoPE of rope_theta 1e6 and Llama 3.1's scaled
					// table, by turns.
					rope := ropes[(M+i)%len(ropes)]
					name := fmt.Sprintf("K%d-b%d-g%d-perm%v-cl%v-wg%v-%v-M%d-norm%v-%s", c.K, c.bits, c.gs, c.perm, c.clusters, c.wg, dt, M, norm, rope.name)
					t.Run(name, func(t *testing.T) {
						x, _ := upload(t, b, dt, rand32(M*c.K, 3), M, c.K)
						pos, slot := make([]int32, M), make([]int32, M)
						for i, s := range r.Perm(slots)[:M] {
							pos[i], slot[i] = int32(r.IntN(4096)), int32(s)
						}
						pt, st := i32Tensor(t, b, pos), i32Tensor(t, b, slot)
						defer b.Free(pt)
						defer b.Free(st)
						cache := rand32(slots*hkv*hd, 1)
						outs := func() ([]runtime.Tensor, runtime.Tensor, runtime.Tensor) {
							q, _ := upload(t, b, dt, make([]float32, M*hq*hd), M, hq*hd)
							k, _ := upload(t, b, dt, make([]float32, M*hkv*hd), M, hkv*hd)
							v, _ := upload(t, b, dt, make([]float32, M*hkv*hd), M, hkv*hd)
							kc, _ := upload(t, b, dt, cache, slots, hkv*hd)
							vc, _ := upload(t, b, dt, cache, slots, hkv*hd)
							return []runtime.Tensor{q, k, v}, kc, vc
						}
						o1, kc1, vc1 := outs()
						o2, kc2, vc2 := outs()
						if want := c.gs%(256/c.bits) == 0; b.FusesRoPE(o1, x, split, kc1, vc1, hd) != want {
							t.Fatalf("FusesRoPE = %v, want %v", !want, want)
						}
						var nw runtime.Tensor
						if norm {
							nw = fs
							b.MatMulSplitNorm(o2, x, fs, 1e-5, split)
						} else {
							b.MatMulSplit(o2, x, split)
						}
						b.MatMulSplitRoPE(o1, x, nw, 1e-5, split, kc1, vc1, pt, st, hd, rope.inv)
						b.RoPEStore(o2[0], o2[1], o2[2], kc2, vc2, pt, st, hd, rope.inv)
						for i, name := range []string{"q", "k", "v"} {
							sameBits(t, name, download(t, b, o1[i]), download(t, b, o2[i]))
						}
						sameBits(t, "k cache", download(t, b, kc1), download(t, b, kc2))
						sameBits(t, "v cache", download(t, b, vc1), download(t, b, vc2))
					})
				}
			}
			b.Free(fs)
		}
		b.Free(split)
	}
}
