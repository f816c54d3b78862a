package cuda

import "testing"

// TestMoEByRuns checks ExpertMatMul's choice of kernel: by runs for more
// than one routed row (or, the routing unknown, more slots than experts),
// always or never as GPTQTOOL_MOE_RUNS says.
func TestMoEByRuns(t *testing.T) {
	for _, c := range []struct {
		mode, slots, experts, topK int
		want                       bool
	}{
		{1, 2, 8, 2, false}, {1, 4, 8, 2, true}, {1, 8, 128, 8, false}, {1, 16, 128, 8, true},
		{1, 8, 8, 0, false}, {1, 10, 8, 0, true}, {0, 64, 8, 2, false}, {2, 2, 8, 2, true},
	} {
		if got := moeByRuns(c.mode, c.slots, c.experts, c.topK); got != c.want {
			t.Errorf("moeByRuns(mode %d, %d slots, %d experts, top %d) = %v, want %v", c.mode, c.slots, c.experts, c.topK, got, c.want)
		}
	}
}
