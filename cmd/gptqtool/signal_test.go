//go:build unix

// These tests send signals to a process (syscall.Kill, Process.Signal with
// SIGINT or SIGTERM), which Windows cannot: its Process.Signal only kills.
// serve_test.go holds the serve helpers they share with other tests.

package main

import (
	"context"
	"io"
	"net/http"
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

// TestSynthInterrupted: synth stopped by Ctrl-C or SIGTERM while it
// writes exits 130 or 143 and leaves nothing, where the signal killed it
// and left a hidden .OUT.partial-N directory holding the shard being
// written (hundreds of MB for one layer of the 7B shape, another at every
// run; a QA pass). One layer of openchat-3.5-1210's shape (0.96 GB) takes
// long enough to be caught writing.
func TestSynthInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("writes up to a GB")
	}
	cfg := fixturePath(t, "configs/openchat-3.5-1210")
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			c := gptqtool(t, dir, nil, "synth", "--config", cfg, "--out", "s", "--layers", "1")
			var out strings.Builder
			c.Stdout, c.Stderr = &out, &out
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			writing := func() bool {
				shards, _ := filepath.Glob(filepath.Join(dir, ".s.partial-*", ".*.tmp"))
				return len(shards) > 0
			}
			for deadline := time.Now().Add(time.Minute); !writing() && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			c.Process.Signal(tc.sig)
			if code := exitStatus(t, c.Wait()); code != tc.code {
				t.Errorf("exit status %d, want %d:\n%s", code, tc.code, out.String())
			}
			if !strings.Contains(out.String(), "interrupted: nothing was left for s") {
				t.Errorf("output lacks the interrupt's line:\n%s", out.String())
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("left %v, want nothing", names)
			}
		})
	}
}

// TestServeSecondInterrupt: the first Ctrl-C of serve says that it is
// shutting down, how long the requests in flight get and that a second
// one stops at once; the second cuts the grace (the stream in flight ends
// with an error event of code shutting_down) and serve exits promptly, where serve said
// nothing and swallowed every further Ctrl-C until --shutdown-timeout ran
// out (a QA pass: 27 s of silence after two).
func TestServeSecondInterrupt(t *testing.T) {
	p := startServe(t, fixturePath(t, "models/openchat-tiny"), "--shutdown-timeout", "5m")
	// Eight long streams: minutes of work on any CPU.
	resp, err := http.Post(p.url+"/v1/completions", "application/json",
		strings.NewReader(`{"prompt": "x", "max_tokens": 4000, "ignore_eos": true, "n": 8, "stream": true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := make(chan string, 1)
	go func() { b, _ := io.ReadAll(resp.Body); body <- string(b) }()
	p.waitFor(t, "a running stream", 30*time.Second, func() bool { return runningSeqs(p.url) > 0 })

	p.cmd.Process.Signal(syscall.SIGINT)
	want := "serve: interrupt received: shutting down; sequences in flight: 8, given up to 5m0s (--shutdown-timeout); a second interrupt or SIGTERM stops them now"
	p.waitFor(t, "the shutdown line", 10*time.Second, func() bool { return strings.Contains(p.stderr.String(), want) })
	p.cmd.Process.Signal(syscall.SIGINT)
	// Cut short, the shutdown is still serve's own end (README).
	if code := p.exit(t, 20*time.Second, "the second interrupt"); code != 0 {
		t.Errorf("exit status %d after the second interrupt, want 0:\n%s", code, p.stderr.String())
	}
	if b := <-body; !strings.Contains(b, `"code":"shutting_down"`) || strings.Contains(b, `"abort"`) {
		t.Errorf("the stream did not end with an error event of code shutting_down:\n%.2000s", b[max(0, len(b)-2000):])
	}
}

// TestServeSignalExitStatus: serve stopped by Ctrl-C or SIGTERM shuts down
// gracefully and exits 0, its normal end, not the 130 or 143 of the other
// commands; the README said every command stopped by a signal exits so (a
// QA pass).
func TestServeSignalExitStatus(t *testing.T) {
	model := fixturePath(t, "models/stories260K-hf-mistral")
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			p := startServe(t, model)
			p.cmd.Process.Signal(sig)
			if code := p.exit(t, 30*time.Second, sig.String()); code != 0 {
				t.Errorf("exit status %d, want 0:\n%s", code, p.stderr.String())
			}
		})
	}
}
