// Package kernels holds the CUDA C sources of the CUDA backend and the GPU
// GPTQ solver, as text: runtime/cuda compiles them with NVRTC for the
// device's architecture at run time and caches the CUBINs. Nothing here
// runs on the host.
//
// Each .cu file is one op family and starts with a comment giving its
// kernels' shapes, layouts and launch grids. common.cuh is prepended to
// every file (NVRTC is given no headers, so no CUDA toolkit is needed on
// the machine): the 16-bit float types, conversions, warp reductions, vector
// loads and the mma.sync and shared-address helpers the tensor-core kernels
// share.
// Kernels have C linkage and carry their dtype in the name (rmsnorm_bf16).
package kernels

import (
	"embed"
	"fmt"
	"strings"
)

//go:embed *.cu *.cuh
var files embed.FS

// Source returns the text NVRTC compiles for file name: common.cuh followed
// by the file, with a #line so that compiler messages name the file. A line
// `#include "X.cuh"` of the file is replaced by X.cuh (one of this
// package's headers, shared by a few files only), between #lines that keep
// the messages' file names and lines right.
func Source(name string) (string, error) {
	common, err := files.ReadFile("common.cuh")
	if err != nil {
		return "", err
	}
	body, err := files.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("kernels: no source %q", name)
	}
	var out strings.Builder
	out.WriteString(string(common) + "\n#line 1 \"" + name + "\"\n")
	for i, line := range strings.SplitAfter(string(body), "\n") {
		inc, ok := strings.CutPrefix(strings.TrimSpace(line), "#include \"")
		if !ok || !strings.HasSuffix(inc, ".cuh\"") {
			out.WriteString(line)
			continue
		}
		inc = strings.TrimSuffix(inc, "\"")
		h, err := files.ReadFile(inc)
		if err != nil || inc == "common.cuh" {
			return "", fmt.Errorf("kernels: %s:%d includes %q, not a header of its own in kernels/", name, i+1, inc)
		}
		fmt.Fprintf(&out, "#line 1 %q\n%s\n#line %d %q\n", inc, h, i+2, name)
	}
	return out.String(), nil
}

// Names lists the .cu sources.
func Names() []string {
	ents, _ := files.ReadDir(".")
	var out []string
	for _, e := range ents {
		if n := e.Name(); len(n) > 3 && n[len(n)-3:] == ".cu" {
			out = append(out, n)
		}
	}
	return out
}
