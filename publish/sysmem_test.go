//go:build linux || darwin || windows

package publish

import (
	"path/filepath"
	"runtime"
	"testing"
)

// TestHostLimits: the platforms that read the host's memory and disk
// report some free memory, with what binds it, and free space for a path
// that does not exist yet (its nearest existing parent's).
func TestHostLimits(t *testing.T) {
	if avail, binding := HostAvailable(); avail <= 0 || binding == "" {
		t.Errorf("HostAvailable() = %d, %q: want free memory and what binds it", avail, binding)
	}
	if free, ok := diskFree(filepath.Join(t.TempDir(), "not", "yet")); !ok || free <= 0 {
		t.Errorf("diskFree = %d, %v: want the free space of the temporary folder", free, ok)
	}
}

// TestPeakRSS: the platforms that read it report a peak resident set at
// least as large as 64 MiB this test has just touched, and below the
// machine's memory.
func TestPeakRSS(t *testing.T) {
	buf := make([]byte, 64<<20)
	for i := range buf {
		if i%4096 == 0 {
			buf[i] = byte(i >> 12)
		}
	}
	got := PeakRSS()
	if got < int64(len(buf)) || got > 1<<42 {
		t.Errorf("PeakRSS() = %d bytes after touching %d: want at least that", got, len(buf))
	}
	runtime.KeepAlive(buf)
}
