package main

import (
	"errors"
	"fmt"
	"io"
	goruntime "runtime"

	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/quantize/gpu"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/cuda"
)

const deviceHelp = "cpu, cuda, or auto (cuda where a CUDA driver and device load, else cpu)"

// newBackend returns the execution backend a --device flag names, and says
// on log which one it is when the choice was automatic. A positive threads
// also bounds the Go scheduler, so the work outside the backend (GPTQ,
// tokenizing, scoring) keeps to the same cores.
func newBackend(device string, threads int, log io.Writer) (runtime.Backend, error) {
	return newBackendLimit(device, threads, 0, log)
}

// newBackendLimit is newBackend with a cap on the device memory the CUDA
// backend may take (0: none), to run as on a smaller card.
func newBackendLimit(device string, threads int, gpuLimit int64, log io.Writer) (runtime.Backend, error) {
	if threads < 0 {
		return nil, usageError{fmt.Errorf("--threads %d: want 0 (all cores) or more", threads)}
	}
	if threads > 0 {
		goruntime.GOMAXPROCS(threads)
	}
	switch device {
	case "cpu":
		return cpu.New(threads), nil
	case "cuda", "auto":
		b, err := cuda.New(cuda.Options{MemoryLimit: gpuLimit})
		switch {
		case err == nil:
			if device == "auto" {
				fmt.Fprintf(log, "device: cuda (%s)\n", b.Device())
			}
			return b, nil
		case device == "auto" && errors.Is(err, cuda.ErrNotAvailable):
			c := cpu.New(threads)
			fmt.Fprintf(log, "device: cpu, %d threads (%v)\n", c.Threads(), err)
			return c, nil
		}
		return nil, fmt.Errorf("--device %s: %w", device, err)
	}
	return nil, usageError{fmt.Errorf("--device %q: want cpu, cuda or auto", device)}
}

// solverFor is the GPTQ solver that goes with a backend: the device solver
// (and so the device driver) on CUDA, nil (the reference driver) on the CPU.
// profile makes the device solver time its phases.
func solverFor(b runtime.Backend, profile bool) quantize.Solver {
	if cb, ok := b.(*cuda.Backend); ok {
		s := gpu.New(cb)
		s.Profile = profile
		return s
	}
	return nil
}
