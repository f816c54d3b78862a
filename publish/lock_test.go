//go:build unix || windows

package publish

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestLockDir checks the partial output's lock as claim and Finish use it:
// a second taker is refused with errBusy while it is held, the held lock
// file can be removed (Finish removes it, then unlocks), and the lock is
// free again once its file is closed.
func TestLockDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), lockFile)
	held, err := lockDir(path)
	if err != nil {
		t.Fatal(err)
	}
	if other, err := lockDir(path); !errors.Is(err, errBusy) {
		if other != nil {
			other.Close()
		}
		t.Fatalf("second lockDir: err = %v, want errBusy", err)
	}
	if err := os.Remove(path); err != nil {
		t.Errorf("removing the held lock file: %v", err)
	}
	held.Close()
	again, err := lockDir(path)
	if err != nil {
		t.Fatalf("lockDir after the holder closed: %v", err)
	}
	again.Close()
}

// TestSameDevice: a folder and its parent inside one temporary folder are
// on one filesystem; a path that cannot be read counts as the same.
func TestSameDevice(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if !sameDevice(sub, dir) {
		t.Errorf("sameDevice(%s, %s) = false", sub, dir)
	}
	if !sameDevice(filepath.Join(dir, "missing"), dir) {
		t.Error("a missing path is taken for another filesystem")
	}
}
