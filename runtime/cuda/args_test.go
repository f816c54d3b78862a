package cuda

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/kernels"
	"github.com/gptqtool/gptqtool/runtime"
)

// TestKernelArgs checks that every kernel of kernels/ takes at most the
// parameters a launch can pass (launchArgs): a launch with more panics, and
// only on a GPU, where the CPU tests do not run.
func TestKernelArgs(t *testing.T) {
	sig := regexp.MustCompile(`extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?([A-Za-z0-9_#]+)\s*\(([^)]*)\)`)
	seen := 0
	for _, name := range kernels.Names() {
		src, err := kernels.Source(name)
		if err != nil {
			t.Fatal(err)
		}
		src = strings.ReplaceAll(src, "\\\n", " ") // macro continuation lines
		for _, m := range sig.FindAllStringSubmatch(src, -1) {
			seen++
			n := strings.Count(m[2], ",") + 1
			if strings.TrimSpace(m[2]) == "" {
				n = 0
			}
			if n > maxKernelArgs {
				t.Errorf("%s: kernel %s takes %d parameters, a launch passes at most %d", name, m[1], n, maxKernelArgs)
			}
			// (The experts' _e and _x kernels take 18: qgemv.cu QMMA_E1, QMMA_X1.)
			if want := map[bool]int{false: 20, true: 18}[strings.Contains(m[1], "_e_") || strings.Contains(m[1], "_x_")]; strings.Contains(m[1], "qmma") && n < want {
				t.Errorf("%s: kernel %s: %d parameters read, the pattern misses some", name, m[1], n)
			}
		}
	}
	if seen < 20 {
		t.Fatalf("%d kernel signatures found, want the kernels of every file", seen)
	}
	var a launchArgs
	if len(a.vals) != maxKernelArgs || len(a.ptrs) != maxKernelArgs {
		t.Errorf("launchArgs holds %d values, %d pointers; want %d", len(a.vals), len(a.ptrs), maxKernelArgs)
	}
}

// TestExpertRunDefines checks that the kernels' run length is
// runtime.ExpertRun: moe.cu's MOE_RUN (the runs it writes) and qgemv.cu's
// QX_RUN (the rows an _x block maps, its stretch of part).
func TestExpertRunDefines(t *testing.T) {
	for file, def := range map[string]string{"moe.cu": "MOE_RUN", "qgemv.cu": "QX_RUN"} {
		src, err := kernels.Source(file)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("#define %s %d\n", def, runtime.ExpertRun); !strings.Contains(src, want) {
			t.Errorf("%s: no %q", file, strings.TrimSpace(want))
		}
	}
}
