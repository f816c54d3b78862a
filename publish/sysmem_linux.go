package publish

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// hostLimits finds how much more memory this process may use: the
// tightest of the free memory (MemAvailable), the cgroup limit
// (memory.max, v2 or v1) and the data-segment limit (RLIMIT_DATA, which
// bounds Go's heap), and separately the address space left under
// RLIMIT_AS (which also counts mapped files).
func hostLimits() memLimits {
	var l memLimits
	status := procStatus()
	consider := func(avail int64, what string) {
		if avail < 0 {
			avail = 0
		}
		if l.Available == 0 && l.Binding == "" || avail < l.Available {
			l.Available, l.Binding = avail, what
		}
	}
	if v, ok := meminfo("MemAvailable"); ok {
		consider(v, fmt.Sprintf("free memory (MemAvailable %s)", FormatSize(v)))
	}
	if max, cur, ok := cgroupMemory(); ok {
		consider(max-cur, fmt.Sprintf("the cgroup memory limit (%s, %s in use)", FormatSize(max), FormatSize(cur)))
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_DATA, &rl); err == nil && rl.Cur < 1<<62 {
		consider(int64(rl.Cur)-status["VmData"], fmt.Sprintf("the data-segment limit (ulimit -d / prlimit --data: %s)", FormatSize(int64(rl.Cur))))
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_AS, &rl); err == nil && rl.Cur < 1<<62 {
		l.AddressSpace = max(int64(rl.Cur)-status["VmSize"], 1)
		l.AddressLimit = fmt.Sprintf("the address-space limit (ulimit -v / prlimit --as: %s, %s mapped already)", FormatSize(int64(rl.Cur)), FormatSize(status["VmSize"]))
	}
	return l
}

// HostAvailable is how much more memory this process may use (the
// tightest of MemAvailable, the cgroup limit and RLIMIT_DATA) and what binds
// it; 0 and "" where none of them can be read.
func HostAvailable() (int64, string) {
	l := hostLimits()
	return l.Available, l.Binding
}

// meminfo reads one /proc/meminfo field in bytes.
func meminfo(key string) (int64, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// procStatus reads the kB fields of /proc/self/status in bytes.
func procStatus() map[string]int64 {
	out := map[string]int64{}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		if !ok || !strings.HasSuffix(v, " kB") {
			continue
		}
		if kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64); err == nil {
			out[k] = kb << 10
		}
	}
	return out
}

// cgroupMemory returns the memory limit of this process's cgroup and its
// current usage, where one is set.
func cgroupMemory() (limit, current int64, ok bool) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, 0, false
	}
	read := func(path string) (int64, bool) {
		v, err := os.ReadFile(path)
		if err != nil {
			return 0, false
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
		return n, err == nil && n > 0 && n < 1<<62
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "": // v2
			dir := "/sys/fs/cgroup" + parts[2]
			if l, ok := read(dir + "/memory.max"); ok {
				c, _ := read(dir + "/memory.current")
				return l, c, true
			}
		case strings.Contains(","+parts[1]+",", ",memory,"): // v1
			dir := "/sys/fs/cgroup/memory" + parts[2]
			if l, ok := read(dir + "/memory.limit_in_bytes"); ok {
				c, _ := read(dir + "/memory.usage_in_bytes")
				return l, c, true
			}
		}
	}
	return 0, 0, false
}

// diskFree is the space available to us on the filesystem of path (or of
// its nearest existing parent).
func diskFree(path string) (int64, bool) {
	for p := path; ; {
		var st syscall.Statfs_t
		if err := syscall.Statfs(p, &st); err == nil {
			return int64(st.Bavail) * int64(st.Bsize), true
		}
		parent := parentDir(p)
		if parent == p {
			return 0, false
		}
		p = parent
	}
}

// PeakRSS is this process's peak resident set (/proc/self/status VmHWM)
// in bytes, 0 where it cannot be read.
func PeakRSS() int64 {
	fh, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
