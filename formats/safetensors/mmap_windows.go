package safetensors

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/windows"
)

// mapFile maps f read-only (CreateFileMapping, MapViewOfFile) and returns
// the mapping and its release func. A zero-length file gives an empty
// slice (CreateFileMapping refuses an empty file).
func mapFile(f *os.File, size int64) ([]byte, func() error, error) {
	if size == 0 {
		return []byte{}, func() error { return nil }, nil
	}
	if int64(int(size)) != size {
		return nil, nil, fmt.Errorf("%s: %d bytes do not fit in the address space", f.Name(), size)
	}
	// Maximum size 0: the mapping is the file's size.
	h, err := windows.CreateFileMapping(windows.Handle(f.Fd()), nil, windows.PAGE_READONLY, 0, 0, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("CreateFileMapping %s: %w", f.Name(), err)
	}
	addr, err := windows.MapViewOfFile(h, windows.FILE_MAP_READ, 0, 0, uintptr(size))
	if err != nil {
		windows.CloseHandle(h)
		return nil, nil, fmt.Errorf("MapViewOfFile %s: %w", f.Name(), err)
	}
	// The view lies outside the Go heap; read through &addr, the address
	// becomes a pointer without the uintptr conversion vet flags.
	b := unsafe.Slice((*byte)(*(*unsafe.Pointer)(unsafe.Pointer(&addr))), int(size))
	release := func() error {
		err := windows.UnmapViewOfFile(addr)
		if cerr := windows.CloseHandle(h); err == nil {
			err = cerr
		}
		return err
	}
	return b, release, nil
}

// wholePages is the part of b, a part of a mapping, that covers whole pages
// (pages it only partly covers may hold a neighbour's data), or nil.
func wholePages(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	page := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(&b[0]))
	end := start + uintptr(len(b))
	lo := (start + page - 1) &^ (page - 1)
	hi := end &^ (page - 1)
	if hi <= lo {
		return nil
	}
	return b[lo-start : hi-start]
}

// dropPages takes b's whole pages out of this process's working set:
// VirtualUnlock on pages that are not locked does that (and reports
// ERROR_NOT_LOCKED, which is the expected answer). The pages stay in the
// system's file cache, as after madvise(MADV_DONTNEED) of a file mapping.
func dropPages(b []byte) {
	if w := wholePages(b); w != nil {
		windows.VirtualUnlock(uintptr(unsafe.Pointer(&w[0])), uintptr(len(w)))
	}
}

// prefetchPages does nothing: Windows's PrefetchVirtualMemory (kernel32,
// Windows 8 on) is not in golang.org/x/sys/windows, and reads fault the
// pages in anyway.
func prefetchPages(b []byte) {}
