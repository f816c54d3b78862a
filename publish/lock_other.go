//go:build !unix && !windows

package publish

import "os"

// lockDir opens the lock file; without flock, concurrent runs on one
// partial output are not detected on this platform.
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
}

// sameDevice cannot tell mount points apart on this platform.
func sameDevice(a, b string) bool { return true }
