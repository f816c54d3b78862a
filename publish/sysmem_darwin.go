package publish

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// hostLimits finds how much more memory this process may use: the pages
// macOS hands out without swapping or compressing (free, purgeable and
// file-backed ones, as the vm.page_*_count sysctls count them; its
// counterpart of Linux's MemAvailable), or where those cannot be read the
// physical memory (hw.memsize) as an upper bound. Resource limits (ulimit
// -d, -v) are not compared: without /proc, this process's use of them is
// not read here.
func hostLimits() memLimits {
	var l memLimits
	page, ok := sysctlUint("vm.pagesize") // the counts' unit, the kernel's page
	if !ok {
		page = uint64(os.Getpagesize())
	}
	var pages uint64
	read := true
	for _, name := range []string{"vm.page_free_count", "vm.page_purgeable_count", "vm.page_pageable_external_count"} {
		n, ok := sysctlUint(name)
		pages += n
		read = read && ok
	}
	switch total, ok := sysctlUint("hw.memsize"); {
	case read:
		l.Available = int64(pages * page)
		l.Binding = fmt.Sprintf("free memory (free, purgeable and file-backed pages %s)", FormatSize(l.Available))
	case ok:
		l.Available = int64(total)
		l.Binding = fmt.Sprintf("the physical memory (hw.memsize %s; the free pages could not be read)", FormatSize(l.Available))
	}
	return l
}

// sysctlUint reads an integer sysctl, whichever of 32 or 64 bits it is.
func sysctlUint(name string) (uint64, bool) {
	if v, err := unix.SysctlUint64(name); err == nil {
		return v, true
	}
	v, err := unix.SysctlUint32(name)
	return uint64(v), err == nil
}

// HostAvailable is how much more memory this process may use (free,
// purgeable and file-backed pages) and what binds it; 0 and "" where
// it cannot be read.
func HostAvailable() (int64, string) {
	l := hostLimits()
	return l.Available, l.Binding
}

// diskFree is the space available to us on the filesystem of path (or of
// its nearest existing parent).
func diskFree(path string) (int64, bool) {
	for p := path; ; {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err == nil {
			return int64(st.Bavail) * int64(st.Bsize), true
		}
		parent := parentDir(p)
		if parent == p {
			return 0, false
		}
		p = parent
	}
}

// PeakRSS is this process's peak resident set in bytes (getrusage's
// ru_maxrss, which macOS counts in bytes where Linux counts kilobytes),
// 0 where it cannot be read.
func PeakRSS() int64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Maxrss
}
