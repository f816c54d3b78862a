package publish_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gptqtool/gptqtool/publish"
)

// fsImmutableFL is FS_IMMUTABLE_FL of linux/fs.h, the attribute chattr +i
// sets (x/sys/unix names only its statx twin).
const fsImmutableFL = 0x10

// unwritableDir returns a new folder that takes no new entries: mode 0555,
// and, where that does not stop the test (root), the immutable attribute
// too (chattr +i), or it skips. It holds the empty folders subs.
func unwritableDir(t *testing.T, subs ...string) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		if err := os.Mkdir(filepath.Join(d, s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(d, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(d, 0o755) })
	if unix.Access(d, unix.W_OK) != nil {
		return d
	}
	f, err := os.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err == nil {
		err = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags|fsImmutableFL))
	}
	if err != nil {
		t.Skipf("%s: mode 0555 does not stop this user and chattr +i failed: %v", d, err)
	}
	t.Cleanup(func() {
		if f, err := os.Open(d); err == nil {
			unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags))
			f.Close()
		}
	})
	if err := os.Mkdir(filepath.Join(d, "probe"), 0o755); err == nil {
		t.Skipf("%s: still writable after chmod 0555 and chattr +i", d)
	}
	return d
}

// TestCheckOutUnwritable checks that an output whose folder takes no new
// entries is refused by CheckOut, which quantize's preflight and --dry-run
// run before the dataset is read, naming the folder: quantize --dry-run
// planned such a run as fine, and the run failed only after reading the
// dataset and timing a layer ("mkdir OUT.partial: operation not
// permitted"; a QA pass). The output's parents are made, so the deepest
// one that exists is the one checked; --force replaces an output by
// renaming its replacement, built beside it, into its place.
func TestCheckOutUnwritable(t *testing.T) {
	model := filepath.Join(t.TempDir(), "model")
	if err := os.Mkdir(model, 0o755); err != nil {
		t.Fatal(err)
	}
	ro := unwritableDir(t, "empty")
	for _, c := range []struct{ name, out, want string }{
		{"in it", filepath.Join(ro, "q"), "output directory " + filepath.Join(ro, "q") + " cannot be made: " + ro + " is not writable ("},
		{"under it", filepath.Join(ro, "a", "q"), "output directory " + filepath.Join(ro, "a", "q") + " cannot be made: " + ro + " is not writable ("},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, force := range []bool{false, true} {
				if err := publish.CheckOut(c.out, model, force); err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("CheckOut(%s, force %v) = %v, want an error saying %q", c.out, force, err, c.want)
				}
			}
		})
	}
	// An empty folder is one --force replaces, but not in that folder.
	empty := filepath.Join(ro, "empty")
	if err := publish.CheckOut(empty, model, true); err == nil || !strings.Contains(err.Error(), "--force cannot replace "+empty+": "+ro+" is not writable (") {
		t.Errorf("CheckOut(%s, force) = %v, want an error saying its folder is not writable", empty, err)
	}
	// A writable folder beside it is fine.
	if err := publish.CheckOut(filepath.Join(filepath.Dir(ro), "q"), model, false); err != nil {
		t.Errorf("an output in a writable folder was refused: %v", err)
	}
}
