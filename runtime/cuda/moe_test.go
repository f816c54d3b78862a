package cuda_test

import (
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// TestMoERefusedOnDevice: a mixture-of-experts checkpoint (Mixtral) is
// refused by the CUDA backend at load, with the error saying to use the
// CPU backend, rather than run with routing its recorded decode steps
// cannot replay.
func TestMoERefusedOnDevice(t *testing.T) {
	b := gputest.Backend(t)
	dir := fixtures.Mixtral(t, nil, synth.Options{DType: "f16", Seed: 3})
	m, err := model.LoadWith(dir, b, model.Options{DType: runtime.F16})
	if err == nil {
		m.Close()
		t.Fatal("Load: a Mixtral checkpoint loaded on the CUDA backend")
	}
	if !strings.Contains(err.Error(), "does not run mixture-of-experts layers yet") || !strings.Contains(err.Error(), "--device cpu") {
		t.Errorf("Load: %v, want the mixture of experts refused with --device cpu suggested", err)
	}
}
