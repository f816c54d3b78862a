package pytorch

import (
	"archive/zip"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixtureImages returns every checkpoint file in testdata.
func fixtureImages(f *testing.F) [][]byte {
	f.Helper()
	var out [][]byte
	for _, pattern := range []string{"testdata/*.bin", "testdata/*/*.bin"} {
		paths, _ := filepath.Glob(pattern)
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		f.Fatal("no testdata/*.bin fixtures")
	}
	return out
}

// FuzzUnpickle feeds arbitrary bytes to the pickle machine, seeded with the
// data.pkl of every fixture: it must never panic, and an accepted pickle
// must describe without recursing forever (values may be cyclic).
func FuzzUnpickle(f *testing.F) {
	for _, img := range fixtureImages(f) {
		zr, err := zip.NewReader(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			continue // the legacy fixture
		}
		for _, zf := range zr.File {
			if filepath.Base(zf.Name) != "data.pkl" {
				continue
			}
			rc, err := zf.Open()
			if err != nil {
				f.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte{opProto, 4, opFrame, 2, 0, 0, 0, 0, 0, 0, 0, opEmptyList, opMemoize, opDup, opBinGet, 0, opAppend, opAppend, opStop})
	f.Add([]byte{opLong1, 9, 0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, opStop})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := unpickle(data)
		if err != nil {
			return
		}
		_ = describe(v)
		if d, ok := v.(*pyDict); ok && len(d.keys) != len(d.vals) {
			t.Fatalf("dict with %d keys and %d values", len(d.keys), len(d.vals))
		}
	})
}

// FuzzOpen feeds arbitrary file images to the reader, seeded with every
// fixture: it must never panic or allocate beyond what the image backs; an
// accepted file must list its tensors consistently, and every tensor of a
// stored entry (bounds checked at Open) must read back at its full size.
func FuzzOpen(f *testing.F) {
	for _, img := range fixtureImages(f) {
		f.Add(img)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pf, err := newFile("fuzz.bin", bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		infos := pf.Infos()
		names := pf.Names()
		if len(infos) != len(names) {
			t.Fatalf("%d infos for %d names", len(infos), len(names))
		}
		for i, name := range names {
			if infos[i].Name != name {
				t.Fatalf("Infos()[%d] is %q, Names()[%d] is %q", i, infos[i].Name, i, name)
			}
			x, err := pf.Tensor(name)
			if err != nil {
				if pf.tensors[name].dataOff >= 0 {
					t.Fatalf("tensor %q of a stored entry: %v", name, err)
				}
				continue
			}
			if len(x.Data) != x.ByteSize() {
				t.Fatalf("tensor %q: %d data bytes, shape %v %s needs %d", name, len(x.Data), x.Shape, x.DType, x.ByteSize())
			}
		}
	})
}

// FuzzStateDict wraps arbitrary data.pkl bytes in a zip holding the storages
// of testdata/views.bin (mutating a whole zip rarely gets past the CRC of
// data.pkl), seeded with the state dicts of the fixtures: views, offsets,
// strides and dtypes are validated and read against real storages. Every
// tensor of an accepted file must read back at its full size.
func FuzzStateDict(f *testing.F) {
	views, err := os.ReadFile("testdata/views.bin")
	if err != nil {
		f.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(views), int64(len(views)))
	if err != nil {
		f.Fatal(err)
	}
	storages := map[string][]byte{}
	for _, zf := range zr.File {
		rc, err := zf.Open()
		if err != nil {
			f.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			f.Fatal(err)
		}
		if key, ok := strings.CutPrefix(zf.Name, "views/data/"); ok {
			storages[key] = b
		} else if zf.Name == "views/data.pkl" {
			f.Add(b)
		}
	}
	f.Add(stateDict(fakeTensor{name: "w", storage: "HalfStorage", key: "1", numel: 15, offset: 2, shape: []int64{2, 2, 3}, stride: []int64{0, 1, 4}}))
	f.Fuzz(func(t *testing.T, pkl []byte) {
		img := torchZip(t, pkl, storages)
		pf, err := newFile("fuzz.bin", bytes.NewReader(img), int64(len(img)))
		if err != nil {
			return
		}
		for _, name := range pf.Names() {
			x, err := pf.Tensor(name)
			if err != nil {
				t.Fatalf("tensor %q: %v", name, err)
			}
			if len(x.Data) != x.ByteSize() {
				t.Fatalf("tensor %q: %d data bytes, shape %v %s needs %d", name, len(x.Data), x.Shape, x.DType, x.ByteSize())
			}
		}
	})
}
