package kernels

import (
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
