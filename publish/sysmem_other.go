//go:build !linux && !darwin && !windows

package publish

// hostLimits knows no limits on this platform: the preflight reports the
// memory a run needs without comparing it.
func hostLimits() memLimits { return memLimits{} }

// diskFree is unknown on this platform.
func diskFree(path string) (int64, bool) { return 0, false }

// HostAvailable reports nothing on this system (see the Linux version).
func HostAvailable() (int64, string) { return 0, "" }

// PeakRSS is unknown on this platform: 0.
func PeakRSS() int64 { return 0 }
