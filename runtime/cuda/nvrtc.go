package cuda

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unsafe"
)

type nvrtcResult int32

var nv struct {
	nvrtcVersion           func(major, minor *int32) nvrtcResult
	nvrtcCreateProgram     func(prog *uintptr, src, name string, nHeaders int32, headers, names unsafe.Pointer) nvrtcResult
	nvrtcCompileProgram    func(prog uintptr, nOpts int32, opts unsafe.Pointer) nvrtcResult
	nvrtcGetProgramLogSize func(prog uintptr, n *uint64) nvrtcResult
	nvrtcGetProgramLog     func(prog uintptr, log *byte) nvrtcResult
	nvrtcGetCUBINSize      func(prog uintptr, n *uint64) nvrtcResult
	nvrtcGetCUBIN          func(prog uintptr, out *byte) nvrtcResult
	nvrtcDestroyProgram    func(prog *uintptr) nvrtcResult
	nvrtcGetErrorString    func(r nvrtcResult) string
}

var (
	nvOnce sync.Once
	nvErr  error
	nvVer  string
)

func loadNVRTC() error {
	nvOnce.Do(func() {
		lib, path, err := openLib("NVRTC, the CUDA runtime compiler", libNVRTC)
		if err != nil {
			nvErr = err
			return
		}
		nvErr = register(lib, path, map[string]any{
			"nvrtcVersion":           &nv.nvrtcVersion,
			"nvrtcCreateProgram":     &nv.nvrtcCreateProgram,
			"nvrtcCompileProgram":    &nv.nvrtcCompileProgram,
			"nvrtcGetProgramLogSize": &nv.nvrtcGetProgramLogSize,
			"nvrtcGetProgramLog":     &nv.nvrtcGetProgramLog,
			"nvrtcGetCUBINSize":      &nv.nvrtcGetCUBINSize,
			"nvrtcGetCUBIN":          &nv.nvrtcGetCUBIN,
			"nvrtcDestroyProgram":    &nv.nvrtcDestroyProgram,
			"nvrtcGetErrorString":    &nv.nvrtcGetErrorString,
		})
		if nvErr == nil {
			var ma, mi int32
			nv.nvrtcVersion(&ma, &mi)
			nvVer = fmt.Sprintf("%d.%d", ma, mi)
		}
	})
	return nvErr
}

func nvrtcErr(call string, r nvrtcResult) error {
	if r == 0 {
		return nil
	}
	return &Error{Call: call, Name: nv.nvrtcGetErrorString(r), Code: int32(r)}
}

// CompileError is an NVRTC compilation failure with the compiler's log.
type CompileError struct {
	Source string
	Log    string
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("cuda: nvrtc: compiling %s failed:\n%s", e.Source, strings.TrimSpace(e.Log))
}

// compile turns CUDA C source into a CUBIN for sm_<arch> (arch "90", or
// "90a" for the architecture-specific features) with NVRTC
// (compiled true), or reads it from the on-disk cache, keyed by the source, the options (with
// defines, -DNAME=VALUE options that select a part of the file), the
// architecture, the NVRTC version and the driver version. NVRTC compiles
// separate programs concurrently, so compile may run on several goroutines.
func compile(name, src string, arch string, driver int, cacheDir string, defines ...string) (cubin []byte, compiled bool, err error) {
	if err := loadNVRTC(); err != nil {
		return nil, false, err
	}
	opts := []string{
		"--gpu-architecture=sm_" + arch,
		"--std=c++17", "-default-device",
		"-lineinfo",
	}
	opts = append(opts, defines...)
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00sm_%s\x00nvrtc %s\x00driver %d\x00", name, strings.Join(opts, " "), arch, nvVer, driver)
	h.Write([]byte(src))
	key := hex.EncodeToString(h.Sum(nil))[:32]
	var path string
	if cacheDir != "" {
		// qgemv-QG_BITS_4-KDT_1-QG_NRM_0-sm90-<key>.cubin for a part.
		base := strings.TrimSuffix(name, ".cu")
		for _, d := range defines {
			base += "-" + strings.NewReplacer("-D", "", "=", "_").Replace(d)
		}
		path = filepath.Join(cacheDir, base+"-sm"+arch+"-"+key+".cubin")
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			// A hit's time is its last use, so that entries no build
			// uses any more can be found (and pruned) by age.
			now := time.Now()
			os.Chtimes(path, now, now)
			return b, false, nil
		}
	}
	var prog uintptr
	if err := nvrtcErr("nvrtcCreateProgram", nv.nvrtcCreateProgram(&prog, src, name, 0, nil, nil)); err != nil {
		return nil, false, err
	}
	defer nv.nvrtcDestroyProgram(&prog)
	cOpts := make([]*byte, len(opts))
	keep := make([][]byte, len(opts))
	for i, o := range opts {
		keep[i] = append([]byte(o), 0)
		cOpts[i] = &keep[i][0]
	}
	r := nv.nvrtcCompileProgram(prog, int32(len(opts)), unsafe.Pointer(&cOpts[0]))
	var logSize uint64
	nv.nvrtcGetProgramLogSize(prog, &logSize)
	var log string
	if logSize > 1 {
		buf := make([]byte, logSize)
		nv.nvrtcGetProgramLog(prog, &buf[0])
		log = strings.TrimRight(string(buf), "\x00")
	}
	if r != 0 {
		if log == "" {
			log = nv.nvrtcGetErrorString(r)
		}
		return nil, false, &CompileError{Source: name, Log: log}
	}
	var n uint64
	if err := nvrtcErr("nvrtcGetCUBINSize", nv.nvrtcGetCUBINSize(prog, &n)); err != nil {
		return nil, false, err
	}
	cubin = make([]byte, n)
	if err := nvrtcErr("nvrtcGetCUBIN", nv.nvrtcGetCUBIN(prog, &cubin[0])); err != nil {
		return nil, false, err
	}
	if path != "" {
		writeCache(path, cubin) // a cache that cannot be written is not an error
	}
	return cubin, true, nil
}

func writeCache(path string, data []byte) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".cubin-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if werr != nil || cerr != nil {
		os.Remove(tmp.Name())
		return
	}
	if os.Rename(tmp.Name(), path) != nil {
		os.Remove(tmp.Name())
	}
}

// defaultCacheDir is $GPTQTOOL_KERNEL_CACHE, else the user cache folder.
func defaultCacheDir() string {
	if v := os.Getenv("GPTQTOOL_KERNEL_CACHE"); v != "" {
		return v
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "gptqtool", "kernels")
}
