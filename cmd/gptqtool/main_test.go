package main

import (
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
