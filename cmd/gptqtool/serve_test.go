package main

import (
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

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
