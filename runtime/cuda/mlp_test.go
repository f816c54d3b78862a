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

// TestFusedMLP checks the fused MLP (kernels/mlp.cu) against float64 and
// against the GLU product followed by down with the residual: 4 and 8
// bits, 1 to 8 rows, f32, f16 and bf16, blocks of one to seven steps of down's
// inputs (the 7B shape: 896 tiles on the H200's 132 SMs), down's groups of
// 32 (a block's slice across several) and 128, rings of 4 and 8 (a ring of
// 8 where its shared memory fits, else 4); a second run from the same x,
// which gives the same bits; and the _ll kernels' end (tagged shares
// instead of flags), which adds in the same order and so must give those
// bits too, in each of 16 runs.
func TestFusedMLP(t *testing.T) {
	b := gputest.Backend(t)
	defer b.SetFusedMLP(b.MLPFusedRows(), b.FusedMLPQST())
	defer b.SetFusedMLPLL(b.FusedMLPLL())
	b.SetFusedMLPLL(false)
	if !b.WarpgroupMMA() {
		t.Skip("the fused MLP needs sm_90")
	}
	r := rand.New(rand.NewPCG(31, 32))
	type mlpCase struct {
		h, i, bits, m, gsd, qst int
		dt                      runtime.DType
	}
	cases := []mlpCase{
		{256, 896, 4, 1, 128, 8, runtime.F16},
		{256, 896, 4, 2, 64, 4, runtime.F32},
		{512, 2560, 8, 3, 32, 4, runtime.BF16},
		{1024, 4096, 4, 8, 32, 8, runtime.BF16},
		{1024, 4096, 8, 5, 64, 4, runtime.BF16},
		{4096, 14336, 4, 1, 128, 4, runtime.F16},
		{4096, 14336, 4, 8, 128, 8, runtime.F16},
		{4096, 14336, 8, 1, 128, 4, runtime.BF16},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%dx%d_%dbit_m%d_g%d_q%d_%v", c.h, c.i, c.bits, c.m, c.gsd, c.qst, c.dt), func(t *testing.T) {
			b.SetFusedMLP(8, c.qst)
			gate, up := randomQuant(r, c.h, c.i, c.bits, 128, false), randomQuant(r, c.h, c.i, c.bits, 128, false)
			down := randomQuant(r, c.i, c.h, c.bits, c.gsd, false)
			glu, err := b.LoadQuantGLU(gate, up)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Free(glu)
			dw, err := b.LoadQuant(down)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Free(dw)
			f, err := b.FuseMLP(glu, dw)
			if err != nil || f == nil {
				t.Fatalf("FuseMLP: %v, %v", f, err)
			}
			defer b.Free(f)
			xn, xnr := upload(t, b, c.dt, normals(r)(c.m*c.h, 512/float64(c.h)), c.m, c.h)
			x0 := normals(r)(c.m*c.h, 1)
			x, xr := upload(t, b, c.dt, x0, c.m, c.h)
			// float64, h rounded to the activation dtype as the GLU
			// product writes it.
			g := backendtest.RefMatMul(xnr, gate.Dequantize(), c.m, c.i, c.h)
			u := backendtest.RefMatMul(xnr, up.Dequantize(), c.m, c.i, c.h)
			h := make([]float32, len(g))
			for i := range g {
				h[i] = float32(g[i] / (1 + math.Exp(-g[i])) * u[i])
			}
			hd, hr := upload(t, b, c.dt, h, c.m, c.i)
			b.Free(hd)
			want := backendtest.RefMatMul(hr, down.Dequantize(), c.m, c.h, c.i)
			for i := range want {
				want[i] += float64(xr[i])
			}
			// The GLU product and down with the residual.
			hu, _ := upload(t, b, c.dt, make([]float32, c.m*c.i), c.m, c.i)
			ref, _ := upload(t, b, c.dt, x0, c.m, c.h)
			b.MatMulGLU(hu, xn, glu)
			b.MatMulAdd(ref, hu, dw, ref)
			b.MatMulMLP(x, xn, f)
			got, unf := download(t, b, x), download(t, b, ref)
			agree(t, "fused", got, "the unfused products", unf, want, 1e-5, 1e-6)
			if err := b.Upload(x, x0); err != nil {
				t.Fatal(err)
			}
			b.MatMulMLP(x, xn, f)
			same := func(run string, again []float32) {
				t.Helper()
				for i := range got {
					if again[i] != got[i] {
						t.Errorf("%s: x[%d] = %g, the first run's %g (runs must be bit for bit the same)", run, i, again[i], got[i])
						return
					}
				}
			}
			same("second run", download(t, b, x))
			b.SetFusedMLPLL(true)
			defer b.SetFusedMLPLL(false)
			for k := range 16 {
				if err := b.Upload(x, x0); err != nil {
					t.Fatal(err)
				}
				b.MatMulMLP(x, xn, f)
				same(fmt.Sprintf("tagged shares' end, run %d", k+1), download(t, b, x))
			}
		})
	}
	// Refused: a GLU weight that gathers its input (act order).
	gate := randomQuant(r, 256, 896, 4, 128, true)
	up := randomQuant(r, 256, 896, 4, 128, false)
	up.Perm = gate.Perm
	glu, err := b.LoadQuantGLU(gate, up)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free(glu)
	dw, err := b.LoadQuant(randomQuant(r, 896, 256, 4, 128, false))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free(dw)
	if f, err := b.FuseMLP(glu, dw); f != nil || err != nil {
		t.Errorf("FuseMLP of a permuting GLU weight: %v, %v; want nil, nil", f, err)
	}
	if f, err := b.FuseMLP(b.InOrder(glu), dw); f == nil || err != nil {
		t.Errorf("FuseMLP of its sequential view: %v, %v", f, err)
	} else {
		b.Free(f)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
}
