//go:build unix

package cuda

import (
	"os"
	"path/filepath"

	"github.com/ebitengine/purego"
)

// Library sonames, newest first (go-deps.md rule 3: cuSOLVER is still major
// 12 in CUDA 13.0).
var (
	libCUDA     = []string{"libcuda.so.1", "libcuda.so"}
	libNVRTC    = []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"}
	libCUBLAS   = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so"}
	libCUBLASLt = []string{"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}
	libCUSOLVER = []string{"libcusolver.so.12", "libcusolver.so.11", "libcusolver.so"}
)

// searchedWhere names the places openLib tries, for its error.
const searchedWhere = "the loader path, the CUDA folders or pip's nvidia/*/lib"

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

// openName dlopens a library by soname, through the loader's search.
func openName(name string) (uintptr, error) {
	return purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_GLOBAL)
}

// openPath dlopens the library at path.
func openPath(path string) (uintptr, error) {
	return purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
}

// lookup is the address of the symbol name in lib.
func lookup(lib uintptr, name string) (uintptr, error) {
	return purego.Dlsym(lib, name)
}
