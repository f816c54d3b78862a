package cuda

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/windows"
)

// DLL names, newest first. The driver's nvcuda.dll comes with the display
// driver (in System32); the toolkit's DLLs carry the library's major
// version (cublas64_13.dll; cuSOLVER is still major 12 in CUDA 13.0, as on
// Linux) or, for NVRTC, the CUDA major and minor of its ABI
// (nvrtc64_130_0.dll serves every CUDA 13.x). There are no unversioned
// names on Windows.
var (
	libCUDA     = []string{"nvcuda.dll"}
	libNVRTC    = []string{"nvrtc64_130_0.dll", "nvrtc64_120_0.dll"}
	libCUBLAS   = []string{"cublas64_13.dll", "cublas64_12.dll"}
	libCUBLASLt = []string{"cublasLt64_13.dll", "cublasLt64_12.dll"}
	libCUSOLVER = []string{"cusolver64_12.dll", "cusolver64_11.dll"}
)

// searchedWhere names the places openLib tries, for its error.
const searchedWhere = `the DLL search path, the CUDA folders or pip's nvidia\*\bin`

// searchDirs are the folders tried after the standard DLL search (which
// ends with PATH): the bin folders of the toolkits that CUDA_PATH,
// CUDA_HOME and the installer's CUDA_PATH_V<major>_<minor> variables name
// (CUDA 13 moved its DLLs to bin\x64, bin\arm64 on ARM), and the bin
// folders of pip's nvidia-* wheels (CUDA 13's in one nvidia\cu13\bin\x86_64,
// CUDA 12's one a library: nvidia\cublas\bin, ...) in a virtual
// environment, the user site-packages and the python.org installs.
func searchDirs() []string {
	arch, wheelArch := "x64", "x86_64"
	if runtime.GOARCH == "arm64" {
		arch, wheelArch = "arm64", "arm64"
	}
	var dirs []string
	for _, root := range cudaRoots() {
		dirs = append(dirs, filepath.Join(root, "bin", arch), filepath.Join(root, "bin"))
	}
	var sites []string
	if v := os.Getenv("VIRTUAL_ENV"); v != "" {
		sites = append(sites, filepath.Join(v, "Lib", "site-packages"))
	}
	for _, p := range []struct{ env, pat string }{
		{"APPDATA", `Python\Python3*\site-packages`},                   // pip install --user
		{"LOCALAPPDATA", `Programs\Python\Python3*\Lib\site-packages`}, // python.org, for the user
		{"ProgramFiles", `Python3*\Lib\site-packages`},                 // python.org, for all users
	} {
		if v := os.Getenv(p.env); v != "" {
			m, _ := filepath.Glob(filepath.Join(v, p.pat))
			sites = append(sites, m...)
		}
	}
	for _, s := range sites {
		for _, sub := range []string{filepath.Join("nvidia", "cu*", "bin", wheelArch), filepath.Join("nvidia", "*", "bin")} {
			m, _ := filepath.Glob(filepath.Join(s, sub))
			dirs = append(dirs, m...)
		}
	}
	return dirs
}

// cudaRoots are the toolkit folders the environment names: CUDA_PATH (the
// installer sets it to the newest toolkit), CUDA_HOME, then each
// CUDA_PATH_V<major>_<minor>, newest first.
func cudaRoots() []string {
	var roots []string
	for _, env := range []string{"CUDA_PATH", "CUDA_HOME"} {
		if v := os.Getenv(env); v != "" {
			roots = append(roots, v)
		}
	}
	type toolkit struct {
		major, minor int
		root         string
	}
	var kits []toolkit
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		ver, ok := strings.CutPrefix(strings.ToUpper(k), "CUDA_PATH_V")
		if !ok || v == "" {
			continue
		}
		ma, mi, _ := strings.Cut(ver, "_")
		major, err1 := strconv.Atoi(ma)
		minor, err2 := strconv.Atoi(mi)
		if err1 == nil && err2 == nil {
			kits = append(kits, toolkit{major, minor, v})
		}
	}
	slices.SortFunc(kits, func(a, b toolkit) int {
		return cmp.Or(cmp.Compare(b.major, a.major), cmp.Compare(b.minor, a.minor))
	})
	for _, k := range kits {
		roots = append(roots, k.root)
	}
	return roots
}

// noCurrentDir takes the current folder out of the DLL search before the
// first load. The standard search tries it before PATH, so a
// nvrtc64_130_0.dll or cublas64_13.dll in the folder gptqtool runs in (a
// downloaded model's, say) would be loaded, and run, in place of the
// toolkit's, and a nvcuda.dll there on a machine without the driver.
// SetDllDirectory("") removes it from every later LoadLibrary and
// LoadLibraryEx of this process (NVRTC's own load of its builtins
// included).
var noCurrentDir = sync.OnceFunc(func() { windows.SetDllDirectory("") })

// openName loads a DLL by name through the standard search, less the
// current folder (noCurrentDir): the program's folder, System32 (where
// nvcuda.dll is), the Windows folder, then PATH.
func openName(name string) (uintptr, error) {
	noCurrentDir()
	h, err := windows.LoadLibrary(name)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return uintptr(h), nil
}

// openPath loads the DLL at path with LOAD_WITH_ALTERED_SEARCH_PATH, so
// that the DLLs it imports are looked for in its own folder first
// (cublas64_13.dll imports cublasLt64_13.dll, which lies beside it). That
// covers the load itself only: NVRTC loads nvrtc-builtins64_*.dll by name
// when it first compiles, through the standard search, so the folder also
// goes on this process's PATH (as NVIDIA's cuda-pathfinder does). A CUDA 12
// wheel's DLL imports what other wheels hold (cusolver64_11.dll:
// cusparse64_12.dll, nvJitLink_120_0.dll), found through PATH only: the
// bin folders of the wheels beside it go there before the load.
func openPath(path string) (uintptr, error) {
	noCurrentDir()
	if abs, err := filepath.Abs(path); err == nil {
		path = abs // the flag is defined for full paths only
	}
	for _, d := range wheelBins(filepath.Dir(path)) {
		appendPath(d)
	}
	h, err := windows.LoadLibraryEx(path, 0, windows.LOAD_WITH_ALTERED_SEARCH_PATH)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	appendPath(filepath.Dir(path))
	return uintptr(h), nil
}

// wheelBins are the bin folders of the nvidia-* wheels installed beside
// the one whose bin folder dir is (site-packages\nvidia\<library>\bin, a
// CUDA 12 wheel, one library each), or nil where dir is none (a toolkit's
// folder; CUDA 13's nvidia\cu13\bin\x86_64 holds every library).
func wheelBins(dir string) []string {
	nvidia := filepath.Dir(filepath.Dir(dir))
	if !strings.EqualFold(filepath.Base(dir), "bin") || !strings.EqualFold(filepath.Base(nvidia), "nvidia") ||
		!strings.EqualFold(filepath.Base(filepath.Dir(nvidia)), "site-packages") {
		return nil
	}
	m, _ := filepath.Glob(filepath.Join(nvidia, "*", "bin"))
	return m
}

var pathMu sync.Mutex

// appendPath adds dir at the end of this process's PATH unless it is
// there already.
func appendPath(dir string) {
	pathMu.Lock()
	defer pathMu.Unlock()
	cur := os.Getenv("PATH")
	for _, d := range filepath.SplitList(cur) {
		if strings.EqualFold(filepath.Clean(d), dir) {
			return
		}
	}
	if cur != "" {
		dir = cur + string(os.PathListSeparator) + dir
	}
	os.Setenv("PATH", dir)
}

// lookup is the address of the exported function name in the DLL lib.
func lookup(lib uintptr, name string) (uintptr, error) {
	return windows.GetProcAddress(windows.Handle(lib), name)
}
