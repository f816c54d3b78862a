package weights

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/pytorch"
)

// copyFile copies src to dst, failing the test on error.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenDir(t *testing.T) {
	// safetensors beside PyTorch: the safetensors files are read.
	both := t.TempDir()
	copyFile(t, "../safetensors/testdata/tiny.safetensors", filepath.Join(both, "model.safetensors"))
	copyFile(t, "../pytorch/testdata/tiny-llama/pytorch_model.bin", filepath.Join(both, "pytorch_model.bin"))
	// A damaged safetensors file is an error, not a fallback to PyTorch.
	damaged := t.TempDir()
	copyFile(t, "../pytorch/testdata/tiny-llama/pytorch_model.bin", filepath.Join(damaged, "pytorch_model.bin"))
	if err := os.WriteFile(filepath.Join(damaged, "model.safetensors"), []byte("not safetensors"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "config.json"), []byte("{}"), 0o644)
	for _, tc := range []struct {
		name, dir, format string
		files             int
		err               string // a substring of the error; "" for none
	}{
		{"safetensors shards", "../safetensors/testdata/sharded", Safetensors, 2, ""},
		{"pytorch shards", "../pytorch/testdata/sharded", PyTorch, 2, ""},
		{"pytorch file", "../pytorch/testdata/tiny-llama", PyTorch, 1, ""},
		{"both", both, Safetensors, 1, ""},
		{"damaged safetensors", damaged, "", 0, "model.safetensors"},
		{"no weights", empty, "", 0, empty + ": no weights (*.safetensors, pytorch_model.bin or a *.bin.index.json)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, format, err := OpenDir(tc.dir)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one that says %q", err, tc.err)
				}
				if set != nil {
					t.Errorf("a set with the error: %v", set)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer set.Close()
			if format != tc.format || len(set.Files()) != tc.files || len(set.Names()) == 0 || len(set.Infos()) != len(set.Names()) {
				t.Errorf("format %q, %d files, %d names, %d infos; want %q, %d files", format, len(set.Files()), len(set.Names()), len(set.Infos()), tc.format, tc.files)
			}
			name := set.Names()[0]
			if tt, err := set.Tensor(name); err != nil || tt.Name != name {
				t.Errorf("Tensor(%q) = %v, %v", name, tt.Name, err)
			}
		})
	}
	_, _, err := OpenDir(empty)
	if !errors.Is(err, pytorch.ErrNoWeights) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("no weights: err = %v, want one wrapping pytorch.ErrNoWeights and fs.ErrNotExist", err)
	}
}
