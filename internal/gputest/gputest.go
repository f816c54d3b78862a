// Package gputest gives the GPU tests one CUDA backend, or skips them with
// the reason where none can be opened (no driver, no device, a library
// missing), so that they never fail on a machine without a GPU.
package gputest

import (
	"errors"
	"sync"
	"testing"

	"github.com/gptqtool/gptqtool/runtime/cuda"
)

var (
	once sync.Once
	b    *cuda.Backend
	err  error
)

// Backend returns the shared backend of the test binary (device 0), or
// skips tb: "cuda: not available: …". Any other error fails tb.
func Backend(tb testing.TB) *cuda.Backend {
	tb.Helper()
	once.Do(func() { b, err = cuda.New(cuda.Options{}) })
	if errors.Is(err, cuda.ErrNotAvailable) {
		tb.Skipf("%v", err)
	}
	if err != nil {
		tb.Fatalf("cuda: %v", err)
	}
	if e := b.Err(); e != nil {
		tb.Fatalf("cuda backend in error from an earlier test: %v", e)
	}
	return b
}
