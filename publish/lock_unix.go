//go:build unix

package publish

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
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

// sameDevice reports whether the paths a and b are on one filesystem (a
// mount point is not on its parent's); true where either cannot be read.
func sameDevice(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	if err1 != nil || err2 != nil {
		return true
	}
	sa, ok1 := fa.Sys().(*syscall.Stat_t)
	sb, ok2 := fb.Sys().(*syscall.Stat_t)
	return !ok1 || !ok2 || sa.Dev == sb.Dev
}

// writable returns why the folder dir cannot take new entries (no write
// permission, an immutable folder, a read-only file system), or nil.
func writable(dir string) error {
	return unix.Access(dir, unix.W_OK)
}
