//go:build unix

package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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

// TestServeNoChatTemplateSaid: serve over a model with no usable chat
// template says at start, on stderr, that chat completions are
// unavailable, why, and that --chat-template fixes it, and still starts
// (text completions work), where the first chat request's 400 was the
// first sign; a model with a template, or --chat-template, gets no such
// line.
func TestServeNoChatTemplateSaid(t *testing.T) {
	const line = "serve: chat completions (/v1/chat/completions) are unavailable"
	p := startServe(t, fixturePath(t, "models/stories260K-hf-mistral"))
	stderr := p.stderr.String()
	i := strings.Index(stderr, line)
	if i < 0 {
		t.Fatalf("no line saying chat completions are unavailable:\n%s", stderr)
	}
	said := stderr[i:]
	said = said[:strings.IndexByte(said, '\n')]
	for _, w := range []string{"tokenizer_config.json has no chat_template", "--chat-template openchat"} {
		if !strings.Contains(said, w) {
			t.Errorf("the line %q does not say %q", said, w)
		}
	}
	resp, err := http.Post(p.url+"/v1/completions", "application/json", strings.NewReader(`{"prompt": "Once", "max_tokens": 2}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("a text completion: status %d, want 200", resp.StatusCode)
	}
	for _, args := range [][]string{
		{fixturePath(t, "models/openchat-tiny")},
		{fixturePath(t, "models/openchat-tiny"), "--chat-template", "openchat-math"},
	} {
		if p := startServe(t, args[0], args[1:]...); strings.Contains(p.stderr.String(), line) {
			t.Errorf("serve %v says chat is unavailable:\n%s", args, p.stderr.String())
		}
	}
}

// serveProc is a `gptqtool serve` process on the CPU and a free port
// (startServe), ready: its base URL and its stderr so far.
type serveProc struct {
	cmd    *exec.Cmd
	stderr syncBuffer
	url    string
	done   chan struct{} // closed once the process has exited, err then its Wait's error
	err    error
}

// startServe starts serve on model with args after the flags it always
// takes and waits for its ready line; the process is killed at the test's
// end if it is still running.
func startServe(t *testing.T, model string, args ...string) *serveProc {
	t.Helper()
	p := &serveProc{done: make(chan struct{})}
	p.cmd = gptqtool(t, t.TempDir(), nil, append([]string{"serve", "--model", model, "--port", "0", "--device", "cpu"}, args...)...)
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	addr := regexp.MustCompile(`ready on (http://[0-9.:]+)`)
	p.waitFor(t, "ready", 60*time.Second, func() bool { return addr.MatchString(p.stderr.String()) })
	p.url = addr.FindStringSubmatch(p.stderr.String())[1]
	return p
}

// waitFor polls ok until it holds, failing the test with serve's stderr
// once d has passed.
func (p *serveProc) waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v:\n%s", what, d, p.stderr.String())
		}
	}
}

// exit waits up to d for serve to end (after what) and returns its exit
// status, failing the test if it is still running.
func (p *serveProc) exit(t *testing.T, d time.Duration, after string) int {
	t.Helper()
	select {
	case <-p.done:
		return exitStatus(t, p.err)
	case <-time.After(d):
		t.Fatalf("serve still running %v after %s:\n%s", d, after, p.stderr.String())
	}
	return 0
}

// runningSeqs reads gptqtool_running_sequences from a server's /metrics.
func runningSeqs(url string) int {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^gptqtool_running_sequences (\d+)`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
