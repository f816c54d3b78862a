package cuda

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ebitengine/purego"
)

// ErrNotAvailable is wrapped by every error that means "no usable CUDA
// here" (no driver, a library missing, no device), as opposed to a fault of
// a device that is present. --device auto falls back to the CPU on it.
var ErrNotAvailable = errors.New("cuda: not available")

// Library sonames, newest first (go-deps.md rule 3: cuSOLVER is still major
// 12 in CUDA 13.0).
var (
	libCUDA     = []string{"libcuda.so.1", "libcuda.so"}
	libNVRTC    = []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"}
	libCUBLAS   = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so"}
	libCUBLASLt = []string{"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}
	libCUSOLVER = []string{"libcusolver.so.12", "libcusolver.so.11", "libcusolver.so"}
)

// searchDirs are the folders tried after the dynamic loader's own search
// (LD_LIBRARY_PATH, the ldconfig cache): the usual CUDA install folders and
// the lib folders of pip's nvidia-* wheels.
func searchDirs() []string {
	var dirs []string
	for _, env := range []string{"CUDA_HOME", "CUDA_PATH"} {
		if v := os.Getenv(env); v != "" {
			dirs = append(dirs, filepath.Join(v, "lib64"), filepath.Join(v, "lib"))
		}
	}
	dirs = append(dirs,
		"/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib",
		"/usr/local/nvidia/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/wsl/lib",
	)
	home, _ := os.UserHomeDir()
	var sites []string
	for _, pat := range []string{
		"/usr/lib/python3*/*-packages", "/usr/local/lib/python3*/*-packages",
		"/opt/*/lib/python3*/site-packages", "/opt/*/.venv/lib/python3*/site-packages",
		filepath.Join(home, ".local/lib/python3*/site-packages"),
	} {
		m, _ := filepath.Glob(pat)
		sites = append(sites, m...)
	}
	if v := os.Getenv("VIRTUAL_ENV"); v != "" {
		m, _ := filepath.Glob(filepath.Join(v, "lib/python3*/site-packages"))
		sites = append(sites, m...)
	}
	for _, s := range sites {
		for _, sub := range []string{"nvidia/*/lib", "nvidia/cu*/lib"} {
			m, _ := filepath.Glob(filepath.Join(s, sub))
			dirs = append(dirs, m...)
		}
	}
	return dirs
}

// openLib dlopens the first loadable of names, by soname first and then in
// each of searchDirs. The error lists what was tried.
func openLib(what string, names []string) (uintptr, string, error) {
	var tried []string
	for _, n := range names {
		h, err := purego.Dlopen(n, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err == nil {
			return h, n, nil
		}
		tried = append(tried, err.Error())
	}
	for _, d := range searchDirs() {
		for _, n := range names {
			p := filepath.Join(d, n)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			h, err := purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_GLOBAL)
			if err == nil {
				return h, p, nil
			}
			tried = append(tried, err.Error())
		}
	}
	return 0, "", fmt.Errorf("%w: %s (%s) not loadable from the loader path, the CUDA folders or pip's nvidia/*/lib: %s",
		ErrNotAvailable, what, names[0], strings.Join(dedupe(tried), "; "))
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	if len(out) > 2 {
		out = append(out[:2], fmt.Sprintf("and %d more", len(out)-2))
	}
	return out
}

// register binds each named symbol of lib to its function variable. A
// missing symbol is an error naming it (an older library than we need).
func register(lib uintptr, libName string, fns map[string]any) error {
	for name, fp := range fns {
		sym, err := purego.Dlsym(lib, name)
		if err != nil || sym == 0 {
			return fmt.Errorf("%w: %s has no symbol %s (a newer CUDA is needed)", ErrNotAvailable, libName, name)
		}
		purego.RegisterFunc(fp, sym)
	}
	return nil
}
