package publish

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// lockDir takes the lock of a partial output without waiting: errBusy
// when another process holds it. The lock (LockFileEx on the file's first
// byte) ends with the process, so a lock file left behind means nothing.
// The file is opened with FILE_SHARE_DELETE, which os.OpenFile does not
// give, so that it can be removed while held as on unix (Finish removes
// it, then unlocks).
func lockDir(path string) (*os.File, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	h, err := windows.CreateFile(p, windows.GENERIC_READ|windows.GENERIC_WRITE,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE,
		nil, windows.OPEN_ALWAYS, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(h), path)
	var ol windows.Overlapped // offset 0
	if err := windows.LockFileEx(h, windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol); err != nil {
		f.Close()
		if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
			return nil, errBusy
		}
		return nil, &os.PathError{Op: "LockFileEx", Path: path, Err: err}
	}
	return f, nil
}

// sameDevice reports whether the paths a and b are on one volume (a
// folder where another volume is mounted is not on its parent's), by
// their volume serial numbers; true where either cannot be read.
func sameDevice(a, b string) bool {
	va, ok1 := volumeSerial(a)
	vb, ok2 := volumeSerial(b)
	return !ok1 || !ok2 || va == vb
}

// volumeSerial is the serial number of the volume that holds path (a
// mounted folder opens as the root of its volume).
func volumeSerial(path string) (uint32, bool) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return 0, false
	}
	// No access rights: attributes only. FILE_FLAG_BACKUP_SEMANTICS opens
	// a directory.
	h, err := windows.CreateFile(p, 0, windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE,
		nil, windows.OPEN_EXISTING, windows.FILE_FLAG_BACKUP_SEMANTICS, 0)
	if err != nil {
		return 0, false
	}
	defer windows.CloseHandle(h)
	var info windows.ByHandleFileInformation
	if err := windows.GetFileInformationByHandle(h, &info); err != nil {
		return 0, false
	}
	return info.VolumeSerialNumber, true
}

// writable does not tell a folder that takes no new entries on Windows,
// where its ACL decides (no permission bit to read): writing it says so.
func writable(dir string) error { return nil }
