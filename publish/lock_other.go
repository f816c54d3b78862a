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

// writable cannot tell a folder that takes no new entries on this
// platform: writing it says so.
func writable(dir string) error { return nil }
