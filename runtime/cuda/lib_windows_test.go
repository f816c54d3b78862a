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

// TestWheelBins: a CUDA 12 wheel's bin folder brings the bin folders of
// the wheels beside it (where the DLLs it imports lie); a toolkit's folder
// and CUDA 13's one wheel folder bring none.
func TestWheelBins(t *testing.T) {
	site := filepath.Join(t.TempDir(), "Lib", "site-packages")
	bins := []string{
		filepath.Join(site, "nvidia", "cublas", "bin"),
		filepath.Join(site, "nvidia", "cusolver", "bin"),
		filepath.Join(site, "nvidia", "cusparse", "bin"),
		filepath.Join(site, "nvidia", "nvjitlink", "bin"),
	}
	cu13 := filepath.Join(t.TempDir(), "Lib", "site-packages", "nvidia", "cu13", "bin", "x86_64")
	toolkit := filepath.Join(t.TempDir(), "CUDA", "v12.8", "bin")
	for _, d := range append(slices.Clone(bins), cu13, toolkit) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got := wheelBins(bins[1]); !slices.Equal(got, bins) {
		t.Errorf("wheelBins(%s) = %q, want %q", bins[1], got, bins)
	}
	for _, d := range []string{cu13, toolkit} {
		if got := wheelBins(d); got != nil {
			t.Errorf("wheelBins(%s) = %q, want none", d, got)
		}
	}
}
