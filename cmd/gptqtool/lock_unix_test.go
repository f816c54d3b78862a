//go:build unix

package main

import (
	"os"
	"syscall"
	"testing"
)

// holdLock takes the lock of a partial output's lock file f as a running
// gptqtool holds it (publish's lockDir).
func holdLock(t *testing.T, f *os.File) {
	t.Helper()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
}
