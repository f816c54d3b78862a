package main

import (
	"fmt"

	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// newBackend returns the execution backend a --device flag names.
func newBackend(device string, threads int) (runtime.Backend, error) {
	switch device {
	case "cpu":
		return cpu.New(threads), nil
	case "cuda":
		return nil, fmt.Errorf("--device cuda: this build has no CUDA backend yet (it is the next milestone); use --device cpu")
	}
	return nil, usageError{fmt.Errorf("--device %q: want cpu or cuda", device)}
}
