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

// The library names (libCUDA, libNVRTC, ...), searchDirs, searchedWhere,
// openName, openPath and lookup are the platform's: lib_unix.go,
// lib_windows.go.

// openLib loads the first loadable of names, by name first (the system
// loader's own search) and then in each of searchDirs. The error lists what
// was tried.
func openLib(what string, names []string) (uintptr, string, error) {
	var tried []string
	for _, n := range names {
		h, err := openName(n)
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
			h, err := openPath(p)
			if err == nil {
				return h, p, nil
			}
			tried = append(tried, err.Error())
		}
	}
	return 0, "", fmt.Errorf("%w: %s (%s) not loadable from %s: %s",
		ErrNotAvailable, what, names[0], searchedWhere, strings.Join(dedupe(tried), "; "))
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
		sym, err := lookup(lib, name)
		if err != nil || sym == 0 {
			return fmt.Errorf("%w: %s has no symbol %s (a newer CUDA is needed)", ErrNotAvailable, libName, name)
		}
		purego.RegisterFunc(fp, sym)
	}
	return nil
}
