package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// TestMain lets tests run the real command as a separate process (to kill
// it, to give it resource limits): with GPTQTOOL_TEST_MAIN=1 the test
// binary is gptqtool.
func TestMain(m *testing.M) {
	if os.Getenv("GPTQTOOL_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// gptqtool returns a command running gptqtool with args in dir; prefix,
// when given, is a wrapper command such as prlimit and its options.
func gptqtool(t *testing.T, dir string, prefix []string, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv := append(append(append([]string(nil), prefix...), self), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GPTQTOOL_TEST_MAIN=1")
	return cmd
}

// TestErrorLine: an interrupted command says so instead of a bare "context
// canceled"; other errors, and quantize's own interrupt message, are kept.
func TestErrorLine(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{context.Canceled, "gptqtool: interrupted: context canceled"},
		{fmt.Errorf("verify: window 3: %w", context.Canceled), "gptqtool: interrupted: verify: window 3: context canceled"},
		{fmt.Errorf("interrupted; kept for --resume: x.partial: %w", context.Canceled), "gptqtool: interrupted; kept for --resume: x.partial: context canceled"},
		{errors.New("x.json: bad field"), "gptqtool: x.json: bad field"},
	} {
		if got := errorLine(c.err); got != c.want {
			t.Errorf("errorLine(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
