//go:build unix

package safetensors

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapFile maps f read-only and returns the mapping and its release func.
// A zero-length file gives an empty slice (mmap refuses length 0).
func mapFile(f *os.File, size int64) ([]byte, func() error, error) {
	if size == 0 {
		return []byte{}, func() error { return nil }, nil
	}
	if int64(int(size)) != size {
		return nil, nil, fmt.Errorf("%s: %d bytes do not fit in the address space", f.Name(), size)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap %s: %w", f.Name(), err)
	}
	return b, func() error { return syscall.Munmap(b) }, nil
}

// adviseRange applies madvise(advice) to the whole pages inside b, a part
// of a mapping (pages it only partly covers are left alone).
func adviseRange(b []byte, advice int) {
	if len(b) == 0 {
		return
	}
	page := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(&b[0]))
	end := start + uintptr(len(b))
	lo := (start + page - 1) &^ (page - 1)
	hi := end &^ (page - 1)
	if hi <= lo {
		return
	}
	unix.Madvise(b[lo-start:hi-start], advice)
}

func dropPages(b []byte)     { adviseRange(b, unix.MADV_DONTNEED) }
func prefetchPages(b []byte) { adviseRange(b, unix.MADV_WILLNEED) }
