package gpu_test

import (
	"context"
	"math"
	"testing"

	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// TestImportanceMatchesCPU: the importance matrix (gptqtool imatrix)
// collected on the device matches the CPU backend's, weight by weight: in
// fp32 activations to 1e-3 of each weight's largest sum, in the
// checkpoint's fp16 to 2e-2.
func TestImportanceMatchesCPU(t *testing.T) {
	b := gputest.Backend(t)
	dir := fixtures.Path(t, "models/openchat-tiny")
	samples := quantize.SamplesOf(fixtures.Calibration(t, dir, 8, 256))
	collect := func(rb runtime.Backend, dt runtime.DType) *quantize.Importance {
		m, err := model.LoadWith(dir, rb, model.Options{DType: dt})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		imp, err := quantize.CollectImportance(context.Background(), m, samples, nil)
		if err != nil {
			t.Fatal(err)
		}
		return imp
	}
	want := collect(cpu.New(0), runtime.F32)
	for _, tc := range []struct {
		dt  runtime.DType
		tol float64
	}{{runtime.F32, 1e-3}, {runtime.F16, 2e-2}} {
		got := collect(b, tc.dt)
		if len(got.Sum2) != len(want.Sum2) || got.Tokens != want.Tokens {
			t.Fatalf("%v: %d weights over %d tokens, the CPU %d over %d", tc.dt, len(got.Sum2), got.Tokens, len(want.Sum2), want.Tokens)
		}
		var worst float64
		worstName := ""
		for name, w := range want.Sum2 {
			g := got.Sum2[name]
			if len(g) != len(w) {
				t.Fatalf("%v: %s has %d sums, the CPU %d", tc.dt, name, len(g), len(w))
			}
			var top float64
			for _, v := range w {
				top = math.Max(top, v)
			}
			for j := range w {
				if e := math.Abs(g[j]-w[j]) / top; e > worst {
					worst, worstName = e, name
				}
			}
		}
		t.Logf("%v: worst |device − CPU| / largest sum %.3g (%s)", tc.dt, worst, worstName)
		if worst > tc.tol {
			t.Errorf("%v: the device's importance differs from the CPU's by %.3g of the largest sum in %s, want ≤ %g", tc.dt, worst, worstName, tc.tol)
		}
	}
}
