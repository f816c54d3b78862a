//go:build unix

package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
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

// TestInterruptedExitStatus: a quantize run stopped by Ctrl-C exits 130 and
// one stopped by SIGTERM 143 (128 + the signal's number, as shells report
// a command a signal ended), keeping its complete layers for --resume,
// where both exited 1 like any failure; a usage error keeps its 2.
func TestInterruptedExitStatus(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	data, err := filepath.Abs("../../testdata/datasets/alpaca_en_demo.parquet")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"quantize", "--device", "cpu", "--model", model, "--dataset", data, "--nsamples", "4", "--seq-len", "64",
		"--out", "q", "--estimate=false"}
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			c := gptqtool(t, dir, nil, args...)
			var out strings.Builder
			c.Stdout, c.Stderr = &out, &out
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			record := filepath.Join(dir, "q.partial", "gptqtool-progress.json")
			for deadline := time.Now().Add(2 * time.Minute); layersDone(record) < 1 && time.Now().Before(deadline); {
				time.Sleep(2 * time.Millisecond)
			}
			c.Process.Signal(tc.sig)
			if code := exitStatus(t, c.Wait()); code != tc.code {
				t.Errorf("exit status %d, want %d:\n%s", code, tc.code, out.String())
			}
			if !strings.Contains(out.String(), "interrupted; kept for --resume") {
				t.Errorf("output lacks the interrupt's line:\n%s", out.String())
			}
		})
	}
	out, err := gptqtool(t, t.TempDir(), nil, "quantize", "--model", model).CombinedOutput()
	if code := exitStatus(t, err); code != 2 {
		t.Errorf("usage error: exit status %d, want 2:\n%s", code, out)
	}
}
