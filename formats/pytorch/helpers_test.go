package pytorch

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// pickler writes pickle opcodes for hand-made test pickles, in the shapes
// torch.save gives them (CPython Lib/pickle.py, Pickler.save_*).
type pickler struct{ b []byte }

func (p *pickler) ops(b ...byte) *pickler { p.b = append(p.b, b...); return p }

func (p *pickler) str(s string) *pickler {
	p.b = append(p.b, opBinUnicode)
	p.b = binary.LittleEndian.AppendUint32(p.b, uint32(len(s)))
	p.b = append(p.b, s...)
	return p
}

func (p *pickler) int(n int64) *pickler {
	switch {
	case n >= 0 && n < 256:
		return p.ops(opBinInt1, byte(n))
	case n >= 0 && n < 65536:
		return p.ops(opBinInt2, byte(n), byte(n>>8))
	case n >= -1<<31 && n < 1<<31:
		p.b = append(p.b, opBinInt)
		p.b = binary.LittleEndian.AppendUint32(p.b, uint32(n))
		return p
	}
	p.b = append(p.b, opLong1, 8)
	p.b = binary.LittleEndian.AppendUint64(p.b, uint64(n))
	return p
}

func (p *pickler) global(module, name string) *pickler {
	p.b = append(p.b, opGlobal)
	p.b = append(p.b, module+"\n"+name+"\n"...)
	return p
}

func (p *pickler) ints(v []int64) *pickler {
	p.ops(opMark)
	for _, x := range v {
		p.int(x)
	}
	return p.ops(opTuple)
}

// fakeTensor describes one _rebuild_tensor_v2 call of a state dict.
type fakeTensor struct {
	name, storage, key string // storage: "FloatStorage"
	numel, offset      int64
	shape, stride      []int64
}

// tensor writes a _rebuild_tensor_v2 REDUCE as torch 1.13 does.
func (p *pickler) tensor(t fakeTensor) *pickler {
	p.global("torch._utils", "_rebuild_tensor_v2").ops(opMark)
	p.ops(opMark).str("storage").global("torch", t.storage).str(t.key).str("cpu").int(t.numel).ops(opTuple, opBinPersID)
	p.int(t.offset).ints(t.shape).ints(t.stride).ops(opNewFalse)
	p.global("collections", "OrderedDict").ops(opEmptyTuple, opReduce)
	return p.ops(opTuple, opReduce)
}

// stateDict pickles an OrderedDict of the tensors.
func stateDict(tensors ...fakeTensor) []byte {
	p := &pickler{}
	p.ops(opProto, 2).global("collections", "OrderedDict").ops(opEmptyTuple, opReduce, opMark)
	for _, t := range tensors {
		p.str(t.name).tensor(t)
	}
	return p.ops(opSetItems, opStop).b
}

// zipEntry is one archive entry to write; method defaults to zip.Store.
type zipEntry struct {
	name   string
	data   []byte
	method uint16
}

// makeZip writes entries in order into a zip image.
func makeZip(t *testing.T, entries []zipEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: e.method})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// torchZip lays out a checkpoint as torch.save does: archive/data.pkl,
// archive/data/<key> for each storage, archive/version.
func torchZip(t *testing.T, pkl []byte, storages map[string][]byte) []byte {
	t.Helper()
	entries := []zipEntry{{name: "archive/data.pkl", data: pkl}}
	keys := make([]string, 0, len(storages))
	for k := range storages {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		entries = append(entries, zipEntry{name: "archive/data/" + k, data: storages[k]})
	}
	entries = append(entries, zipEntry{name: "archive/version", data: []byte("3\n")})
	return makeZip(t, entries)
}

// readEntries returns the entries of a fixture zip in order.
func readEntries(t *testing.T, path string) []zipEntry {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var out []zipEntry
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, zipEntry{name: f.Name, data: b, method: f.Method})
	}
	return out
}

// rezip rewrites a fixture zip, passing each entry through edit; a nil
// result drops the entry. extra entries are appended.
func rezip(t *testing.T, path string, edit func(e zipEntry) *zipEntry, extra ...zipEntry) []byte {
	t.Helper()
	var out []zipEntry
	for _, e := range readEntries(t, path) {
		if ne := edit(e); ne != nil {
			out = append(out, *ne)
		}
	}
	return makeZip(t, append(out, extra...))
}

// writeTemp writes b to a file named name in a new temporary directory.
func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
