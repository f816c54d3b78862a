package cuda

import (
	"errors"
	"strings"
	"testing"
)

// TestMissingLibrary checks the error for a library that is nowhere: typed
// as ErrNotAvailable (so --device auto falls back) and naming it. The name
// has no platform's suffix (.so, .dll): the test is the same under dlopen
// and LoadLibrary.
func TestMissingLibrary(t *testing.T) {
	const name = "gptqtool-missing-9"
	_, _, err := openLib("a test library", []string{name})
	if !errors.Is(err, ErrNotAvailable) {
		t.Fatalf("err = %v, want ErrNotAvailable", err)
	}
	if !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "a test library") {
		t.Errorf("error %q does not name the library", err)
	}
}

func TestClass(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want uint64
	}{{1, 512}, {512, 512}, {513, 1024}, {1<<20 - 1, 1 << 20}, {1 << 20, 2 << 20}, {3 << 20, 4 << 20}, {4<<20 + 1, 6 << 20}} {
		if got := class(c.n); got != c.want {
			t.Errorf("class(%d) = %d, want %d", c.n, got, c.want)
		}
	}
}
