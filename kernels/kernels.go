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
)

//go:embed *.cu *.cuh
var files embed.FS

// Source returns the text NVRTC compiles for file name: common.cuh followed
// by the file, with a #line so that compiler messages name the file.
func Source(name string) (string, error) {
	common, err := files.ReadFile("common.cuh")
	if err != nil {
		return "", err
	}
	body, err := files.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("kernels: no source %q", name)
	}
	return string(common) + "\n#line 1 \"" + name + "\"\n" + string(body), nil
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
