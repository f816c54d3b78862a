//go:build unix

package main

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestInterruptibleTakesSIGTERM checks that the commands' context ends on
// SIGTERM as on an interrupt, so that convert, quantize and verify clean up
// when stopped by kill or a container runtime, where only Ctrl-C was
// handled (a SIGTERM left convert's OUT.partial behind). Without SIGTERM in
// the set the signal's default action ends this test's process.
func TestInterruptibleTakesSIGTERM(t *testing.T) {
	ctx, stop := interruptible(context.Background())
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not end the context")
	}
}
