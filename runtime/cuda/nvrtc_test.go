package cuda

import (
	"errors"
	"strings"
	"testing"
)

// TestCompileErrorCarriesLog checks that an NVRTC failure returns the
// compiler's log (where NVRTC is present).
func TestCompileErrorCarriesLog(t *testing.T) {
	if err := loadNVRTC(); err != nil {
		t.Skipf("%v", err)
	}
	_, _, err := compile("broken.cu", `extern "C" __global__ void k() { undefined_function_xyz(); }`, "80", 0, "")
	var ce *CompileError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a CompileError", err)
	}
	if !strings.Contains(ce.Log, "undefined_function_xyz") || !strings.Contains(err.Error(), "broken.cu") {
		t.Errorf("error does not carry the log naming the problem:\n%v", err)
	}
}
