//go:build linux || darwin || windows

package publish

import (
	"path/filepath"
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
