//go:build unix

package cpu

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user and system) the process has used, so
// that a benchmark on a loaded machine can report its own work apart from
// the time other processes took the cores.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
