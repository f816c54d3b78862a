package publish_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/publish"
)

// TestCheckOutThroughLinks checks that an output folder inside the model's
// folder is refused however either path reaches it: through a link to the
// model's folder or to a folder above it, also when the output does not
// exist yet (it cannot be resolved itself then).
func TestCheckOutThroughLinks(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	model := filepath.Join(real, "model")
	if err := os.MkdirAll(model, 0o755); err != nil {
		t.Fatal(err)
	}
	up, link := filepath.Join(dir, "up"), filepath.Join(dir, "link")
	symlink(t, real, up)
	symlink(t, model, link)
	for _, c := range []struct{ out, model, want string }{
		{filepath.Join(up, "model", "q"), filepath.Join(up, "model"), "lies inside"},
		{filepath.Join(up, "model", "q", "deeper"), model, "lies inside"},
		{filepath.Join(model, "q"), filepath.Join(up, "model"), "lies inside"},
		{filepath.Join(link, "q"), model, "lies inside"},
		{filepath.Join(link, "q"), link, "lies inside"},
		{up, filepath.Join(link), "holds the model"},
		{filepath.Join(dir, "link"), model, "holds the model"},
	} {
		err := publish.CheckOut(c.out, c.model, false)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckOut(%s, %s) = %v, want an error saying %q", c.out, c.model, err, c.want)
		}
	}
	// A sibling of the model reached through the link above it is fine.
	if err := publish.CheckOut(filepath.Join(up, "q"), model, false); err != nil {
		t.Errorf("a sibling folder of the model was refused: %v", err)
	}
}

// TestCheckOutSuggestsForceOnlyWhereItWorks checks that an output --force
// would not replace (a file, a folder gptqtool did not write) is refused
// without suggesting --force, and that a file where the output's parent
// should be is refused before any work, where mkdir failed after it.
func TestCheckOutSuggestsForceOnlyWhereItWorks(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "model")
	file, foreign, empty := filepath.Join(dir, "file"), filepath.Join(dir, "foreign"), filepath.Join(dir, "empty")
	for _, d := range []string{model, foreign, empty} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{file, filepath.Join(foreign, "notes.txt")} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ name, out, want string }{
		{"file", file, "output " + file + " is a file, not a directory"},
		{"foreign", foreign, "is not a gptqtool output: it holds notes.txt"},
		{"under a file", filepath.Join(file, "q", "r"), file + " is a file, not a directory"},
		{"empty", empty, "use --force to replace it"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := publish.CheckOut(c.out, model, false)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("CheckOut(%s) = %v, want an error saying %q", c.out, err, c.want)
			}
			if c.name != "empty" && strings.Contains(err.Error(), "--force") {
				t.Errorf("CheckOut(%s) = %v, which suggests --force where it would refuse", c.out, err)
			}
		})
	}
}

// TestCheckOutDotDotNames checks that a folder whose name starts with ".."
// (such as "..x") is an ordinary folder: an output inside the model's folder
// under one is refused, and a model under one inside the output is held by
// it, where a prefix test on the relative path took "..x/q" for a path
// outside.
func TestCheckOutDotDotNames(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "model")
	if err := os.MkdirAll(filepath.Join(model, "..x"), 0o755); err != nil {
		t.Fatal(err)
	}
	deep := filepath.Join(dir, "..y", "model")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, out, model, want string }{
		{"out in ..x", filepath.Join(model, "..x"), model, "lies inside"},
		{"out under ..x", filepath.Join(model, "..x", "q"), model, "lies inside"},
		{"out named ..q", filepath.Join(model, "..q"), model, "lies inside"},
		{"model under ..y", dir, deep, "holds the model"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := publish.CheckOut(c.out, c.model, false)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("CheckOut(%s, %s) = %v, want an error saying %q", c.out, c.model, err, c.want)
			}
		})
	}
	// A sibling "..z" of the model is outside it.
	if err := publish.CheckOut(filepath.Join(dir, "..z"), model, false); err != nil {
		t.Errorf("a sibling folder ..z of the model was refused: %v", err)
	}
}

// symlink makes newname a link to oldname. Windows makes links only in
// Developer Mode or with SeCreateSymbolicLinkPrivilege; without, the test
// is skipped there.
func symlink(t *testing.T, oldname, newname string) {
	t.Helper()
	if err := os.Symlink(oldname, newname); err != nil {
		if runtime.GOOS == "windows" {
			t.Skipf("no symbolic link: %v", err)
		}
		t.Fatal(err)
	}
}
