package main

import (
	"fmt"
	goruntime "runtime"

	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// newBackend returns the execution backend a --device flag names. A
// positive threads also bounds the Go scheduler, so the work outside the
// backend (GPTQ, tokenizing, scoring) keeps to the same cores.
func newBackend(device string, threads int) (runtime.Backend, error) {
	if threads < 0 {
		return nil, usageError{fmt.Errorf("--threads %d: want 0 (all cores) or more", threads)}
	}
	if threads > 0 {
		goruntime.GOMAXPROCS(threads)
	}
	switch device {
	case "cpu":
		return cpu.New(threads), nil
	case "cuda":
		return nil, fmt.Errorf("--device cuda: this build has no CUDA backend yet (it is the next milestone); use --device cpu")
	}
	return nil, usageError{fmt.Errorf("--device %q: want cpu or cuda", device)}
}
