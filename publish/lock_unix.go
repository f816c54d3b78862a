//go:build unix

package publish

import (
	"errors"
	"os"
	"syscall"
)

// lockDir takes the lock of a partial output without waiting: errBusy
// when another process holds it. The lock ends with the process (a
// SIGKILL releases it), so a lock file left behind means nothing.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errBusy
		}
		return nil, err
	}
	return f, nil
}

// sameDevice reports whether a and b are on one filesystem (a mount point
// is not on its parent's).
func sameDevice(a, b os.FileInfo) bool {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return !ok1 || !ok2 || sa.Dev == sb.Dev
}
