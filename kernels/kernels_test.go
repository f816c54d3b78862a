package kernels

import (
	"strconv"
	"strings"
	"testing"
)

func TestSource(t *testing.T) {
	names := Names()
	if len(names) < 5 {
		t.Fatalf("Names() = %v, want every .cu source", names)
	}
	for _, n := range names {
		src, err := Source(n)
		if err != nil {
			t.Fatal(err)
		}
		// The shared prelude first, then the file under its own #line.
		if !strings.Contains(src, "struct bf16") || !strings.Contains(src, "#line 1 \""+n+"\"") {
			t.Errorf("%s: the prelude or the #line is missing", n)
		}
		if !strings.Contains(src, "extern \"C\" __global__") {
			t.Errorf("%s: no C-linkage kernel", n)
		}
	}
	if _, err := Source("missing.cu"); err == nil {
		t.Errorf("a missing source gave no error")
	}
}

// TestSourceIncludes checks the headers a source includes: norm.cu's
// `#include "rownorm.cuh"` becomes the header's text between #lines that
// name the header and then norm.cu again at the line after the include.
func TestSourceIncludes(t *testing.T) {
	src, err := Source("norm.cu")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := files.ReadFile("norm.cu")
	hdr, _ := files.ReadFile("rownorm.cuh")
	line := 0
	for i, l := range strings.Split(string(body), "\n") {
		if strings.TrimSpace(l) == `#include "rownorm.cuh"` {
			line = i + 1
		}
	}
	if line == 0 {
		t.Fatal("norm.cu does not include rownorm.cuh")
	}
	want := "#line 1 \"rownorm.cuh\"\n" + string(hdr) + "\n#line " + strconv.Itoa(line+1) + " \"norm.cu\"\n"
	if !strings.Contains(src, want) || strings.Contains(src, `#include "rownorm.cuh"`) {
		t.Errorf("norm.cu's source does not hold rownorm.cuh in place of its #include at line %d", line)
	}
	if !strings.Contains(src, "void norm_v8_regs(") {
		t.Error("norm.cu's source lacks rownorm.cuh's norm_v8_regs")
	}
}
