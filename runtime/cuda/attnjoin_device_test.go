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

// TestAttentionJoin checks runtime.AttentionJoiner on the device: paged
// attention and o_proj in one kernel (decode.cu attn_oproj4), its kv
// heads' sums added up with the residual by the norm after it, against
// PagedAttentionMatMul then AddRMSNormTo (which round the product before
// the add: within the same bound), for one row at positions whose
// attention a cluster's 8 splits share unevenly (0: one position; 60;
// 383; 1,500; 4,500), 7B heads and o_proj (4,096 × 4,096, 4 bits, groups
// of 128, with and without act order; a block's 256 columns, and 128 with
// 4,096 outputs split 32 ways, and clusters of 4), fp16 and bf16, a window of 100 positions,
// and a cache not yet settled (the _pre kernel's early copies left out).
// JoinAttention gives nothing with the switch off, at 8 bits and for groups
// of 32 (more groups than the kernel's tables hold).
func TestAttentionJoin(t *testing.T) {
	b := gputest.Backend(t)
	if !b.Clusters() {
		t.Skip("no thread-block clusters on this device")
	}
	defer b.SetAttentionJoin(b.AttentionJoinRows())
	cl0, nb0 := b.AttentionJoinShape()
	defer b.SetAttentionJoinShape(cl0, nb0)
	r := rand.New(rand.NewPCG(93, 94))
	rand32 := normals(r)
	const hq, hkv, hd, bs, width, N = 32, 8, 128, 16, 288, 4096
	const K = hq * hd
	b.SetAttentionJoin(0)
	w0, err := b.LoadQuant(randomQuant(r, K, N, 4, 128, true))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free(w0)
	if j, err := b.JoinAttention(w0, hq, hkv, hd); j != nil || err != nil {
		t.Errorf("switch off: JoinAttention gave %v, %v, want nothing", j, err)
	}
	b.SetAttentionJoin(1)
	for _, c := range []struct{ bits, gs int }{{8, 128}, {4, 32}} {
		w, err := b.LoadQuant(randomQuant(r, K, N, c.bits, c.gs, true))
		if err != nil {
			t.Fatal(err)
		}
		if j, err := b.JoinAttention(w, hq, hkv, hd); j != nil || err != nil {
			t.Errorf("%d bits, groups of %d: JoinAttention gave %v, %v, want nothing", c.bits, c.gs, j, err)
		}
		b.Free(w)
	}
	weights := map[bool]runtime.Tensor{}
	for _, act := range []bool{true, false} {
		w, err := b.LoadQuant(randomQuant(r, K, N, 4, 128, act))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Free(w)
		weights[act] = w
	}
	nw0 := rand32(N, 0.3)
	for i := range nw0 {
		nw0[i] += 1
	}
	for _, pos := range []int32{0, 60, 383, 1500, 4500} {
		tables, slot := ownBlocks(r, []int32{pos}, width, bs)
		pt, st, tt := i32Tensor(t, b, []int32{pos}), i32Tensor(t, b, slot), i32Tensor(t, b, tables)
		cache := rand32(width*bs*hkv*hd, 1)
		q0, k0, v0 := rand32(hq*hd, 1), rand32(hkv*hd, 1), rand32(hkv*hd, 1)
		x0 := rand32(N, 1)
		for _, c := range []struct {
			act     bool
			dt      runtime.DType
			window  int
			settled bool
		}{
			{true, runtime.F16, 0, true}, {false, runtime.F16, 0, true}, {true, runtime.BF16, 0, true},
			{true, runtime.F16, 100, true}, {true, runtime.BF16, 0, false},
		} {
			// The first case also in clusters of 4 and with blocks of 128
			// columns.
			shapes := [][2]int{{8, 256}}
			if c.act && c.dt == runtime.F16 && c.window == 0 && c.settled {
				shapes = append(shapes, [2]int{4, 256}, [2]int{8, 128})
			}
			for _, sh := range shapes {
				t.Run(fmt.Sprintf("pos%d-act%v-%v-window%d-settled%v-cl%d-nb%d", pos, c.act, c.dt, c.window, c.settled, sh[0], sh[1]), func(t *testing.T) {
					b.SetAttentionJoinShape(sh[0], sh[1])
					wj, err := b.JoinAttention(weights[c.act], hq, hkv, hd)
					if err != nil || wj == nil {
						t.Fatalf("JoinAttention: %v, %v", wj, err)
					}
					defer b.Free(wj)
					if pos == 0 {
						active, grid := b.JoinClusters(wj, c.dt, c.settled)
						t.Logf("clusters of %d: %d at once, %d in the grid", sh[0], active, grid)
					}
					p := runtime.AttentionParams{HeadDim: hd, Window: c.window, Scale: float32(1 / math.Sqrt(hd)), CacheSettled: c.settled}
					run := func(joined bool) (x, norm []float32) {
						q, _ := upload(t, b, c.dt, q0, 1, hq*hd)
						k, _ := upload(t, b, c.dt, k0, 1, hkv*hd)
						v, _ := upload(t, b, c.dt, v0, 1, hkv*hd)
						kc, _ := upload(t, b, c.dt, cache, width*bs, hkv*hd)
						vc, _ := upload(t, b, c.dt, cache, width*bs, hkv*hd)
						xt, _ := upload(t, b, c.dt, x0, 1, N)
						nw, _ := upload(t, b, c.dt, nw0, 1, N)
						nt, _ := upload(t, b, c.dt, make([]float32, N), 1, N)
						at, _ := upload(t, b, c.dt, make([]float32, K), 1, K)
						o, _ := upload(t, b, c.dt, make([]float32, N), 1, N)
						b.RoPEStore(q, k, v, kc, vc, pt, st, hd, 10000)
						if joined {
							b.PagedAttentionMatMulNormTo(nt, xt, q, kc, vc, tt, pt, bs, p, wj, nw, nil, 1e-5)
						} else {
							b.PagedAttentionMatMul(o, at, q, kc, vc, tt, pt, bs, p, weights[c.act])
							b.AddRMSNormTo(nt, xt, o, nw, nil, 1e-5)
						}
						return download(t, b, xt), download(t, b, nt)
					}
					wantX, wantN := run(false)
					gotX, gotN := run(true)
					tol := map[runtime.DType]float64{runtime.F16: 1e-5, runtime.BF16: 1e-4}[c.dt]
					if nmse := backendtest.NMSE(gotX, widen(wantX)); !(nmse < tol) {
						t.Errorf("x + attention·o_proj: nmse %.3g against the unjoined ops, want < %.1g", nmse, tol)
					}
					if nmse := backendtest.NMSE(gotN, widen(wantN)); !(nmse < tol) {
						t.Errorf("the norm after it: nmse %.3g against the unjoined ops, want < %.1g", nmse, tol)
					}
					// The product itself, apart from x: it is small against x,
					// so a wrong product could hide within x's bound.
					dGot, dWant := make([]float32, N), make([]float64, N)
					_, xd := upload(t, b, c.dt, x0, 1, N)
					for i := range N {
						dGot[i] = gotX[i] - xd[i]
						dWant[i] = float64(wantX[i] - xd[i])
					}
					if nmse := backendtest.NMSE(dGot, dWant); !(nmse < 100*tol) {
						t.Errorf("attention·o_proj (x's change): nmse %.3g against the unjoined ops, want < %.1g", nmse, 100*tol)
					}
				})
			}
		}
		b.Free(pt)
		b.Free(st)
		b.Free(tt)
	}
}
