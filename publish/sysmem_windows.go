package publish

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/windows"
)

// memoryStatusEx is MEMORYSTATUSEX (sysinfoapi.h), which
// golang.org/x/sys/windows does not declare.
type memoryStatusEx struct {
	Length               uint32
	MemoryLoad           uint32
	TotalPhys            uint64
	AvailPhys            uint64
	TotalPageFile        uint64 // the commit limit: the system's (memory plus page files) or this process's, the smaller
	AvailPageFile        uint64 // what this process may still commit
	TotalVirtual         uint64
	AvailVirtual         uint64
	AvailExtendedVirtual uint64
}

var procGlobalMemoryStatusEx = windows.NewLazySystemDLL("kernel32.dll").NewProc("GlobalMemoryStatusEx")

// hostLimits finds how much more memory this process may use: the tighter
// of the available physical memory (GlobalMemoryStatusEx's ullAvailPhys:
// the free, zeroed and standby pages, Windows's counterpart of Linux's
// MemAvailable) and what this process may still commit (ullAvailPageFile,
// under the system's commit limit or its own, a job object's, whichever is
// smaller): Windows does not overcommit, so memory Go's heap takes must be
// committed first.
func hostLimits() memLimits {
	var l memLimits
	if procGlobalMemoryStatusEx.Find() != nil {
		return l
	}
	ms := memoryStatusEx{Length: uint32(unsafe.Sizeof(memoryStatusEx{}))}
	if r, _, _ := procGlobalMemoryStatusEx.Call(uintptr(unsafe.Pointer(&ms))); r == 0 {
		return l
	}
	l.Available = int64(ms.AvailPhys)
	l.Binding = fmt.Sprintf("free memory (available physical memory %s)", FormatSize(l.Available))
	if c := int64(ms.AvailPageFile); c < l.Available {
		l.Available = c
		l.Binding = fmt.Sprintf("the commit limit (%s, %s left)", FormatSize(int64(ms.TotalPageFile)), FormatSize(c))
	}
	return l
}

// HostAvailable is how much more memory this process may use (the tighter
// of the available physical memory and the commit left) and what binds it;
// 0 and "" where it cannot be read.
func HostAvailable() (int64, string) {
	l := hostLimits()
	return l.Available, l.Binding
}

// diskFree is the space available to us (quotas counted) on the volume of
// path (or of its nearest existing parent).
func diskFree(path string) (int64, bool) {
	for p := path; ; {
		if u, err := windows.UTF16PtrFromString(p); err == nil {
			var avail, total, free uint64
			if windows.GetDiskFreeSpaceEx(u, &avail, &total, &free) == nil {
				return int64(avail), true
			}
		}
		parent := parentDir(p)
		if parent == p {
			return 0, false
		}
		p = parent
	}
}

// processMemoryCounters is PROCESS_MEMORY_COUNTERS (psapi.h), which
// golang.org/x/sys/windows does not declare.
type processMemoryCounters struct {
	Cb                         uint32
	PageFaultCount             uint32
	PeakWorkingSetSize         uintptr
	WorkingSetSize             uintptr
	QuotaPeakPagedPoolUsage    uintptr
	QuotaPagedPoolUsage        uintptr
	QuotaPeakNonPagedPoolUsage uintptr
	QuotaNonPagedPoolUsage     uintptr
	PagefileUsage              uintptr
	PeakPagefileUsage          uintptr
}

// (kernel32's K32 name, there since Windows 7, rather than psapi.dll's.)
var procGetProcessMemoryInfo = windows.NewLazySystemDLL("kernel32.dll").NewProc("K32GetProcessMemoryInfo")

// PeakRSS is this process's peak working set in bytes (Windows's
// counterpart of the peak resident set), 0 where it cannot be read.
func PeakRSS() int64 {
	if procGetProcessMemoryInfo.Find() != nil {
		return 0
	}
	pmc := processMemoryCounters{Cb: uint32(unsafe.Sizeof(processMemoryCounters{}))}
	if r, _, _ := procGetProcessMemoryInfo.Call(uintptr(windows.CurrentProcess()), uintptr(unsafe.Pointer(&pmc)), uintptr(pmc.Cb)); r == 0 {
		return 0
	}
	return int64(pmc.PeakWorkingSetSize)
}
