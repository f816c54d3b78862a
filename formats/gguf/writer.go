package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"
)

// Writer streams a GGUF v3 file: Create writes the header (metadata and
// every tensor info, offsets computed up front), then WriteTensor or
// WriteFloat32 appends the tensors' data one at a time in declaration
// order, so memory stays at one tensor (held by the caller) plus a 1 MiB
// buffer. The file is written under a hidden temporary name in the target
// directory and renamed to its final name only by a successful Close; a
// failed or abandoned write leaves nothing under the final name.
// A Writer is not safe for concurrent use.
type Writer struct {
	path      string
	tmp       *os.File
	buf       *bufio.Writer
	tensors   []TensorInfo
	sizes     []int64
	alignment int64
	pos       int64 // bytes written so far
	next      int   // index of the next tensor to write
	err       error
	finished  bool
}

// Create validates the metadata and tensor infos, opens a temporary file
// next to path and writes the header. The alignment is general.alignment
// when kvs holds it (a uint32 power of two, at least 8), else 32. Keys must
// be unique, non-empty, valid UTF-8 and at most 65535 bytes, values of the
// Go types listed at KV; tensor names unique, non-empty and shorter than 64
// bytes; shapes of at most 4 non-negative dimensions whose innermost
// dimension is a multiple of the type's block size. The Offset fields of
// tensors are ignored: tensors are laid out in declaration order, each at
// the next multiple of the alignment.
func Create(path string, kvs []KV, tensors []TensorInfo) (*Writer, error) {
	l, err := newLayout(path, kvs, tensors)
	if err != nil {
		return nil, err
	}
	w := &Writer{path: path, tensors: l.tensors, sizes: l.sizes, alignment: l.alignment}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, partialPrefix(base)+"*"+partialSuffix)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	w.tmp = tmp
	w.buf = bufio.NewWriterSize(tmp, 1<<20)
	if err := w.write(l.header); err != nil {
		w.Abort()
		return nil, err
	}
	return w, nil
}

// layout is a GGUF file as Create lays it out before a byte is written:
// the tensors with their offsets, their sizes, the alignment, the header
// (everything before the data section, padding included) and the size of
// the whole file once every tensor is written.
type layout struct {
	tensors   []TensorInfo
	sizes     []int64
	alignment int64
	header    []byte
	size      int64
}

// newLayout checks kvs and tensors as Create documents and lays them out;
// path names the file in errors.
func newLayout(path string, kvs []KV, tensors []TensorInfo) (*layout, error) {
	l := &layout{alignment: DefaultAlignment}
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		if !validKey(kv.Key) {
			return nil, fmt.Errorf("%s: metadata key %q: want non-empty UTF-8 of at most %d bytes", path, kv.Key, MaxKeyLength)
		}
		if seen[kv.Key] {
			return nil, fmt.Errorf("%s: metadata key %q: given twice", path, kv.Key)
		}
		seen[kv.Key] = true
		if _, _, ok := TypeOf(kv.Value); !ok {
			return nil, fmt.Errorf("%s: metadata key %q: Go type %T has no GGUF value type", path, kv.Key, kv.Value)
		}
		if kv.Key == KeyAlignment {
			a, ok := kv.Value.(uint32)
			if !ok || a < 8 || a&(a-1) != 0 {
				return nil, fmt.Errorf("%s: metadata key %q: %v (%T), want a uint32 power of two of at least 8", path, kv.Key, kv.Value, kv.Value)
			}
			l.alignment = int64(a)
		}
	}
	names := make(map[string]bool, len(tensors))
	var off int64
	for _, t := range tensors {
		if t.Name == "" || len(t.Name) >= MaxTensorName {
			return nil, fmt.Errorf("%s: tensor %q: name must be 1 to %d bytes", path, t.Name, MaxTensorName-1)
		}
		if names[t.Name] {
			return nil, fmt.Errorf("%s: tensor %q: declared twice", path, t.Name)
		}
		names[t.Name] = true
		if len(t.Shape) > MaxDims {
			return nil, fmt.Errorf("%s: tensor %q: shape %v has more than %d dimensions", path, t.Name, t.Shape, MaxDims)
		}
		size, err := t.Size()
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: shape %v %s: %w", path, t.Name, t.Shape, t.Type, err)
		}
		t.Shape = slices.Clone(t.Shape)
		t.Offset = off
		l.tensors = append(l.tensors, t)
		l.sizes = append(l.sizes, size)
		padded := alignUp(size, l.alignment)
		if off > maxInt64-padded {
			return nil, fmt.Errorf("%s: tensor %q: data section overflows int64", path, t.Name)
		}
		off += padded
	}
	var err error
	if l.header, err = l.encodeHeader(kvs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(l.header)) > maxInt64-off {
		return nil, fmt.Errorf("%s: file size overflows int64", path)
	}
	l.size = int64(len(l.header)) + off
	return l, nil
}

// FileSize returns the size in bytes of the file that Create(path, kvs,
// tensors) starts and Close completes: the header (metadata, tensor infos,
// padding to the alignment) and every tensor's data, each padded to the
// alignment. Nothing is written; its errors are Create's.
func FileSize(kvs []KV, tensors []TensorInfo) (int64, error) {
	l, err := newLayout("gguf", kvs, tensors)
	if err != nil {
		return 0, err
	}
	return l.size, nil
}

// A Writer's temporary file beside path: partialPrefix(base of path), a
// random part, partialSuffix (PartialFiles finds those left behind).
const partialSuffix = ".partial"

func partialPrefix(base string) string { return "." + base + "." }

// PartialFiles lists the temporary files a Writer of path writes beside it
// (".NAME.*.partial", NAME path's base) that are there now: a writer
// killed before it could remove its own (SIGKILL, a power cut) leaves one,
// which a later run may remove. The names are matched by their prefix and
// suffix, not as a glob, so that NAME may hold any character.
func PartialFiles(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if p := partialPrefix(base); e.Type().IsRegular() && strings.HasPrefix(n, p) && strings.HasSuffix(n, partialSuffix) && len(n) >= len(p)+len(partialSuffix) {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out, nil
}

// encodeHeader encodes everything before the data section, padding
// included.
func (l *layout) encodeHeader(kvs []KV) ([]byte, error) {
	le := binary.LittleEndian
	b := append([]byte(nil), Magic...)
	b = le.AppendUint32(b, Version)
	b = le.AppendUint64(b, uint64(len(l.tensors)))
	b = le.AppendUint64(b, uint64(len(kvs)))
	for _, kv := range kvs {
		typ, _, _ := TypeOf(kv.Value)
		b = appendString(b, kv.Key)
		b = le.AppendUint32(b, uint32(typ))
		var err error
		if b, err = appendValue(b, kv.Value); err != nil {
			return nil, fmt.Errorf("metadata key %q: %w", kv.Key, err)
		}
	}
	for _, t := range l.tensors {
		b = appendString(b, t.Name)
		b = le.AppendUint32(b, uint32(len(t.Shape)))
		for _, d := range t.Dims() {
			b = le.AppendUint64(b, d)
		}
		b = le.AppendUint32(b, uint32(t.Type))
		b = le.AppendUint64(b, uint64(t.Offset))
	}
	return append(b, make([]byte, alignUp(int64(len(b)), l.alignment)-int64(len(b)))...), nil
}

func (w *Writer) write(b []byte) error {
	if _, err := w.buf.Write(b); err != nil {
		return w.fail(fmt.Errorf("%s: %w", w.tmp.Name(), err))
	}
	w.pos += int64(len(b))
	return nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

// Tensors returns the declared tensors with the offsets the writer gave
// them.
func (w *Writer) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(w.tensors))
	for i, t := range w.tensors {
		t.Shape = slices.Clone(t.Shape)
		out[i] = t
	}
	return out
}

// WriteTensor appends the raw bytes of the next declared tensor, which
// must be name, followed by zero padding to the alignment. data must be
// exactly the tensor's size. Any error ends the write: Close then removes
// the temporary file.
func (w *Writer) WriteTensor(name string, data []byte) error {
	if w.finished {
		return fmt.Errorf("%s: tensor %q: writer already closed", w.path, name)
	}
	if w.err != nil {
		return w.err
	}
	if w.next >= len(w.tensors) {
		return w.fail(fmt.Errorf("%s: tensor %q: all %d declared tensors already written", w.path, name, len(w.tensors)))
	}
	t := w.tensors[w.next]
	if t.Name != name {
		return w.fail(fmt.Errorf("%s: tensor %q written out of order, want %q next", w.path, name, t.Name))
	}
	if int64(len(data)) != w.sizes[w.next] {
		return w.fail(fmt.Errorf("%s: tensor %q: %d bytes, shape %v %s needs %d", w.path, name, len(data), t.Shape, t.Type, w.sizes[w.next]))
	}
	if err := w.write(data); err != nil {
		return err
	}
	pad := alignUp(int64(len(data)), w.alignment) - int64(len(data))
	if err := w.write(make([]byte, pad)); err != nil {
		return err
	}
	w.next++
	return nil
}

// WriteFloat32 encodes vals (row-major, Shape order) to the next declared
// tensor's type with Encode and writes it like WriteTensor.
func (w *Writer) WriteFloat32(name string, vals []float32) error {
	if w.next < len(w.tensors) && w.tensors[w.next].Name == name && w.err == nil && !w.finished {
		t := w.tensors[w.next]
		if int64(len(vals)) != t.NumElements() {
			return w.fail(fmt.Errorf("%s: tensor %q: %d values, shape %v needs %d", w.path, name, len(vals), t.Shape, t.NumElements()))
		}
		data, err := Encode(t.Type, vals)
		if err != nil {
			return w.fail(fmt.Errorf("%s: tensor %q: %w", w.path, name, err))
		}
		return w.WriteTensor(name, data)
	}
	return w.WriteTensor(name, nil) // reports the out-of-order or closed writer
}

// Close finishes the file: if every declared tensor was written it
// flushes, fsyncs and renames the temporary file to the final path.
// Otherwise, or on any failure, it removes the temporary file and returns
// an error. Closing twice returns the first result.
func (w *Writer) Close() error {
	if w.finished {
		return w.err
	}
	w.finished = true
	if w.err == nil && w.next < len(w.tensors) {
		w.err = fmt.Errorf("%s: closed after %d of %d tensors, tensor %q not written", w.path, w.next, len(w.tensors), w.tensors[w.next].Name)
	}
	if w.err == nil {
		w.err = w.commit()
	}
	if w.err != nil {
		w.tmp.Close()
		os.Remove(w.tmp.Name())
	}
	return w.err
}

func (w *Writer) commit() error {
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("%s: %w", w.tmp.Name(), err)
	}
	if err := w.tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	if err := w.tmp.Sync(); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	if err := w.tmp.Close(); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	if err := os.Rename(w.tmp.Name(), w.path); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	if d, err := os.Open(filepath.Dir(w.path)); err == nil {
		d.Sync() // makes the rename durable where supported; failure only weakens crash safety
		d.Close()
	}
	return nil
}

// Abort removes the temporary file; the Writer cannot be used afterwards.
// Aborting after a successful Close does nothing.
func (w *Writer) Abort() {
	if w.finished {
		return
	}
	w.finished = true
	if w.err == nil {
		w.err = errors.New("gguf: write aborted")
	}
	w.tmp.Close()
	os.Remove(w.tmp.Name())
}

// validKey reports whether key is acceptable to the writer: non-empty, at
// most MaxKeyLength bytes, valid UTF-8.
func validKey(key string) bool {
	return key != "" && len(key) <= MaxKeyLength && utf8.ValidString(key)
}
