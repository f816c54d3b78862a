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
		{[]runtime.SampleParams{{Temperature: 1e-300}}, false}, // sampled with the smallest float32 temperature
		{[]runtime.SampleParams{{Temperature: math.NaN()}}, false},
		{[]runtime.SampleParams{{Temperature: 1, TopK: 2}}, false},
	} {
		if got := allGreedy(c.rules); got != c.want {
			t.Errorf("allGreedy(%+v) = %v, want %v", c.rules, got, c.want)
		}
	}
}
