package cuda

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestCUDARoots: the toolkit folders come CUDA_PATH first, then
// CUDA_HOME, then the installer's CUDA_PATH_V<major>_<minor> newest first
// (12.10 before 12.8), and each gives its bin\x64 (bin\arm64 on ARM)
// before its bin.
func TestCUDARoots(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(strings.ToUpper(k), "CUDA_PATH_V") {
			t.Setenv(k, "") // an empty variable is passed over
		}
	}
	t.Setenv("CUDA_PATH", `C:\cuda`)
	t.Setenv("CUDA_HOME", "")
	t.Setenv("CUDA_PATH_V12_8", `C:\v12.8`)
	t.Setenv("CUDA_PATH_V13_0", `C:\v13.0`)
	t.Setenv("CUDA_PATH_V12_10", `C:\v12.10`)
	if got, want := cudaRoots(), []string{`C:\cuda`, `C:\v13.0`, `C:\v12.10`, `C:\v12.8`}; !slices.Equal(got, want) {
		t.Errorf("cudaRoots() = %q, want %q", got, want)
	}
	arch := "x64"
	if runtime.GOARCH == "arm64" {
		arch = "arm64"
	}
	want := []string{filepath.Join(`C:\cuda`, "bin", arch), filepath.Join(`C:\cuda`, "bin")}
	if got := searchDirs(); len(got) < 2 || !slices.Equal(got[:2], want) {
		t.Errorf("searchDirs() starts %q, want %q", got, want)
	}
}
