package cuda

import (
	"math"
	"testing"

	"github.com/gptqtool/gptqtool/runtime"
)

// TestAllGreedy checks which draws go to argmax_rows: those whose every
// rule is sample_rows' greedy one (temperature <= 0 or top-k 1).
func TestAllGreedy(t *testing.T) {
	for _, c := range []struct {
		rules []runtime.SampleParams
		want  bool
	}{
		{[]runtime.SampleParams{{}}, true},
		{[]runtime.SampleParams{{Temperature: -1}, {Temperature: 0.8, TopK: 1}}, true},
		{[]runtime.SampleParams{{}, {Temperature: 0.7}}, false},
		{[]runtime.SampleParams{{Temperature: 1e-300}}, false}, // sampled with the smallest normal float32 temperature
		{[]runtime.SampleParams{{Temperature: math.NaN()}}, false},
		{[]runtime.SampleParams{{Temperature: 1, TopK: 2}}, false},
	} {
		if got := allGreedy(c.rules); got != c.want {
			t.Errorf("allGreedy(%+v) = %v, want %v", c.rules, got, c.want)
		}
	}
}

// TestKernelTemperature: the temperature sample_rows gets stays positive
// with a finite reciprocal in float32 (the kernel weighs by exp((v - max) *
// (1/t)), and at 1/t = inf the largest logit's weight was 0 * inf = NaN)
// and normal (a subnormal one flushes to 0 under --ftz), and is t itself
// wherever t is a normal float32; temperatures <= 0 (greedy) are kept.
func TestKernelTemperature(t *testing.T) {
	for _, tc := range []struct {
		t    float64
		want float32
	}{
		{0.7, 0.7},
		{1e-30, 1e-30},
		{0x1p-126, 0x1p-126},
		{1e-39, 0x1p-126},
		{1e-50, 0x1p-126},
		{4.9e-324, 0x1p-126},
		{0, 0},
		{-1, -1},
	} {
		got := kernelTemperature(tc.t)
		if got != tc.want {
			t.Errorf("kernelTemperature(%g) = %g, want %g", tc.t, got, tc.want)
		}
		if tc.t > 0 {
			if inv := float32(1) / got; math.IsInf(float64(inv), 0) || got < 0x1p-126 {
				t.Errorf("kernelTemperature(%g) = %g: 1/t %g in float32, or not normal", tc.t, got, inv)
			}
		}
	}
}
