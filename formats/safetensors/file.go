package safetensors

import (
	"fmt"
	"maps"
	"os"
	"sync"
)

// File is one open safetensors file, memory-mapped read-only. Its methods
// are safe for concurrent use.
type File struct {
	path     string
	data     []byte // the whole file image
	release  func() error
	hdr      *header
	index    map[string]int // name -> position in hdr.entries
	names    []string
	closeMu  sync.Mutex
	closed   bool
	closeErr error
}

// Open maps the safetensors file at path and validates its header (see the
// package documentation for the checks). The file must be closed to release
// the mapping; tensor views become invalid then.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the mapping outlives the descriptor
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	data, release, err := mapFile(f, st.Size())
	if err != nil {
		return nil, err
	}
	sf, err := newFile(path, data, release)
	if err != nil {
		release()
		return nil, err
	}
	return sf, nil
}

// newFile builds a File over the image data, validating its header.
func newFile(path string, data []byte, release func() error) (*File, error) {
	h, err := parseHeader(path, data)
	if err != nil {
		return nil, err
	}
	f := &File{path: path, data: data, release: release, hdr: h, index: make(map[string]int, len(h.entries))}
	for i, e := range h.entries {
		f.index[e.Name] = i
		f.names = append(f.names, e.Name)
	}
	return f, nil
}

// Path returns the path the file was opened with.
func (f *File) Path() string { return f.path }

// Names returns the tensor names in data-offset order.
func (f *File) Names() []string { return append([]string(nil), f.names...) }

// Infos returns name, dtype and shape of every tensor in data-offset order.
func (f *File) Infos() []TensorInfo {
	out := make([]TensorInfo, len(f.hdr.entries))
	for i, e := range f.hdr.entries {
		out[i] = TensorInfo{Name: e.Name, DType: e.DType, Shape: append([]int(nil), e.Shape...)}
	}
	return out
}

// Tensor returns the named tensor, its Data a read-only view into the
// mapping, and false if the file holds no such tensor.
func (f *File) Tensor(name string) (Tensor, bool) {
	i, ok := f.index[name]
	if !ok {
		return Tensor{}, false
	}
	e := f.hdr.entries[i]
	b, end := f.hdr.dataStart+e.begin, f.hdr.dataStart+e.end
	return Tensor{
		TensorInfo: TensorInfo{Name: e.Name, DType: e.DType, Shape: append([]int(nil), e.Shape...)},
		Data:       f.data[b:end:end],
		File:       f.path,
	}, true
}

// Metadata returns a copy of the header's __metadata__ map (empty, not nil,
// when absent).
func (f *File) Metadata() map[string]string {
	m := make(map[string]string, len(f.hdr.metadata))
	maps.Copy(m, f.hdr.metadata)
	return m
}

// DataBytes returns the sum of the byte sizes of the file's tensors.
func (f *File) DataBytes() int64 {
	var n int64
	for _, e := range f.hdr.entries {
		n += e.end - e.begin
	}
	return n
}

// Close releases the mapping. Tensor views taken from f must not be used
// afterwards. Closing twice returns the first result.
func (f *File) Close() error {
	f.closeMu.Lock()
	defer f.closeMu.Unlock()
	if !f.closed {
		f.closed = true
		if err := f.release(); err != nil {
			f.closeErr = fmt.Errorf("%s: unmap: %w", f.path, err)
		}
	}
	return f.closeErr
}
