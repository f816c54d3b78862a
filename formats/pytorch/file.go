package pytorch

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/gptqtool/gptqtool/formats/safetensors"
)

// ErrLegacyFormat reports a checkpoint in the format torch.save wrote before
// torch 1.6 (or with _use_new_zipfile_serialization=False): a sequence of
// pickles rather than a zip archive.
var ErrLegacyFormat = errors.New("legacy PyTorch format (before 1.6): re-save it with torch >= 1.6 or convert it with transformers")

// MaxPickleBytes bounds the size of a checkpoint's data.pkl. A state dict
// pickle takes about 200 bytes per tensor, so real ones are far smaller.
const MaxPickleBytes = 256 << 20

// maxBroadcastBytes bounds the materialized size of a view whose elements
// overlap (a stride-0, expanded tensor) beyond the size of its storage
// entry, so a hostile shape cannot make Tensor allocate without limit.
const maxBroadcastBytes = 16 << 20

// storageDTypes maps torch storage types (torch/storage.py,
// _dtype_to_storage_type_map) to safetensors dtypes.
var storageDTypes = map[string]safetensors.DType{
	"FloatStorage":         safetensors.F32,
	"HalfStorage":          safetensors.F16,
	"BFloat16Storage":      safetensors.BF16,
	"DoubleStorage":        "F64",
	"LongStorage":          "I64",
	"IntStorage":           safetensors.I32,
	"ShortStorage":         "I16",
	"CharStorage":          safetensors.I8,
	"ByteStorage":          safetensors.U8,
	"BoolStorage":          "BOOL",
	"ComplexFloatStorage":  "C64",
	"UInt16Storage":        "U16",
	"UInt32Storage":        "U32",
	"UInt64Storage":        "U64",
	"Float8_e4m3fnStorage": "F8_E4M3",
	"Float8_e5m2Storage":   "F8_E5M2",
}

// File is one open PyTorch checkpoint in the zip format. Its methods are
// safe for concurrent use until Close.
type File struct {
	path    string
	closer  io.Closer // nil for an in-memory image
	ra      io.ReaderAt
	size    int64
	tensors map[string]*tensorEntry
	names   []string // sorted
}

// tensorEntry is a validated tensor: a view of a storage entry whose bounds
// were checked at Open.
type tensorEntry struct {
	info     safetensors.TensorInfo
	ref      *tensorRef
	elemSize int64
	zf       *zip.File
	dataOff  int64 // file offset of a stored (uncompressed) entry's bytes; -1 for a deflated one
}

// Open opens the PyTorch checkpoint at path, reads its state dict pickle and
// validates every tensor against its storage (see the package
// documentation). No tensor data is read until Tensor is called. The file
// must be closed.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	pf, err := newFile(path, f, st.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	pf.closer = f
	return pf, nil
}

// legacyMagic starts a legacy checkpoint: the pickle (protocol 2) of
// torch.serialization's MAGIC_NUMBER 0x1950a86a20f9469cfc6c, a LONG1 of 10
// little-endian bytes.
var legacyMagic = []byte{0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19}

// newFile reads the checkpoint image of size bytes in ra; path names it in
// errors.
func newFile(path string, ra io.ReaderAt, size int64) (*File, error) {
	head := make([]byte, min(size, int64(len(legacyMagic))))
	if _, err := ra.ReadAt(head, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if bytes.Equal(head, legacyMagic) {
		return nil, fmt.Errorf("%s: %w", path, ErrLegacyFormat)
	}
	zr, err := zip.NewReader(ra, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		// Entry names are only looked up, never used as paths, so
		// names that would be unsafe to extract are harmless.
		start := make([]byte, min(size, 4))
		if _, rerr := ra.ReadAt(start, 0); (rerr == nil || rerr == io.EOF) && errors.Is(err, zip.ErrFormat) && string(start) == "PK\x03\x04" {
			// A zip's index (the central directory) is at its end: a
			// file that starts as a zip and has none was cut short.
			return nil, fmt.Errorf("%s: not a PyTorch zip checkpoint: a zip file cut short at %d bytes, its central directory (at the end) missing: a copy or download that did not finish? (%w)", path, size, err)
		}
		return nil, fmt.Errorf("%s: not a PyTorch zip checkpoint: %w", path, err)
	}
	pf := &File{path: path, ra: ra, size: size, tensors: map[string]*tensorEntry{}}
	prefix, entries, err := pf.archiveEntries(zr)
	if err != nil {
		return nil, err
	}
	if bo, ok := entries[prefix+"byteorder"]; ok {
		b, err := pf.readSmall(bo, 16)
		if err != nil {
			return nil, err
		}
		switch string(b) {
		case "little":
		case "big":
			return nil, fmt.Errorf("%s: %s is \"big\": big-endian checkpoints are not supported: %w", path, bo.Name, errors.ErrUnsupported)
		default:
			return nil, fmt.Errorf("%s: %s is %q, want \"little\" or \"big\"", path, bo.Name, clip(string(b)))
		}
	}
	pklEntry := entries[prefix+"data.pkl"]
	pkl, err := pf.readSmall(pklEntry, MaxPickleBytes)
	if err != nil {
		return nil, err
	}
	root, err := unpickle(pkl)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", path, pklEntry.Name, err)
	}
	dict, ok := root.(*pyDict)
	if !ok {
		return nil, fmt.Errorf("%s: %s holds a %s, want a state dict", path, pklEntry.Name, typeName(root))
	}
	for i, k := range dict.keys {
		name, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("%s: state dict key %d is %s, want a tensor name", path, i, describe(k))
		}
		if _, dup := pf.tensors[name]; dup {
			return nil, fmt.Errorf("%s: tensor %q: listed twice in the state dict", path, clip(name))
		}
		ref, ok := dict.vals[i].(*tensorRef)
		if !ok {
			return nil, fmt.Errorf("%s: state dict entry %q is %s, want a tensor", path, clip(name), describe(dict.vals[i]))
		}
		e, err := pf.validate(name, ref, entries, prefix)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", path, clip(name), err)
		}
		pf.tensors[name] = e
		pf.names = append(pf.names, name)
	}
	slices.Sort(pf.names)
	return pf, nil
}

// archiveEntries finds the archive's single <archive>/data.pkl and returns
// the "<archive>/" prefix and the entries under it by full name.
func (f *File) archiveEntries(zr *zip.Reader) (string, map[string]*zip.File, error) {
	var prefixes []string
	for _, zf := range zr.File {
		dir, base, ok := strings.Cut(zf.Name, "/")
		if ok && base == "data.pkl" {
			prefixes = append(prefixes, dir+"/")
		}
	}
	switch len(prefixes) {
	case 0:
		return "", nil, fmt.Errorf("%s: no <archive>/data.pkl entry: not a PyTorch zip checkpoint", f.path)
	case 1:
	default:
		return "", nil, fmt.Errorf("%s: %d data.pkl entries, want 1", f.path, len(prefixes))
	}
	prefix := prefixes[0]
	entries := map[string]*zip.File{}
	for _, zf := range zr.File {
		if !strings.HasPrefix(zf.Name, prefix) {
			continue
		}
		if _, dup := entries[zf.Name]; dup {
			return "", nil, fmt.Errorf("%s: entry %s appears twice", f.path, printable(zf.Name))
		}
		entries[zf.Name] = zf
	}
	return prefix, entries, nil
}

// readSmall reads a whole entry of at most limit bytes.
func (f *File) readSmall(zf *zip.File, limit int64) ([]byte, error) {
	if zf.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("%s: %s: %d bytes, want at most %d", f.path, printable(zf.Name), zf.UncompressedSize64, limit)
	}
	rc, err := zf.Open()
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", f.path, printable(zf.Name), err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("more than %d bytes", limit)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", f.path, printable(zf.Name), err)
	}
	return b, nil
}

// validate checks a tensor's dtype, storage entry and view bounds, so that
// Tensor reads only inside the entry and allocates only what the file can
// back. Errors omit the file and tensor names, which the caller adds.
func (f *File) validate(name string, ref *tensorRef, entries map[string]*zip.File, prefix string) (*tensorEntry, error) {
	s := ref.storage
	dt, ok := storageDTypes[s.typeName]
	if !ok {
		return nil, fmt.Errorf("storage type torch.%s: %w", s.typeName, safetensors.ErrUnsupportedDType)
	}
	es := int64(dt.Size())
	zf, ok := entries[prefix+"data/"+s.key]
	if !ok {
		return nil, fmt.Errorf("storage %q: no entry %sdata/%s in the archive", clip(s.key), prefix, printable(s.key))
	}
	entryBytes, dataOff, err := f.entryBounds(zf)
	if err != nil {
		return nil, fmt.Errorf("storage %q: %w", clip(s.key), err)
	}
	if s.numel > entryBytes/es {
		return nil, fmt.Errorf("storage %q: %d elements of %s need %s bytes, entry %s holds %d", clip(s.key), s.numel, dt, mulString(s.numel, es), printable(zf.Name), entryBytes)
	}
	if ref.offset < 0 {
		return nil, fmt.Errorf("storage offset %d, want >= 0", ref.offset)
	}
	for i := range ref.shape {
		if ref.shape[i] < 0 || ref.stride[i] < 0 {
			return nil, fmt.Errorf("shape %v stride %v, want sizes and strides >= 0", ref.shape, ref.stride)
		}
	}
	shape := make([]int, len(ref.shape))
	numel := int64(1)
	for i, d := range ref.shape {
		if d != 0 && numel > (maxInt64/es)/d {
			return nil, fmt.Errorf("shape %v overflows", ref.shape)
		}
		numel *= d
		shape[i] = int(d)
		if int64(shape[i]) != d {
			return nil, fmt.Errorf("shape %v overflows int", ref.shape)
		}
	}
	if numel == 0 {
		if ref.offset > s.numel {
			return nil, fmt.Errorf("storage offset %d beyond the %d elements of storage %q", ref.offset, s.numel, clip(s.key))
		}
	} else {
		// The last element a view reaches: offset + Σ (size-1)·stride.
		last := ref.offset
		for i, d := range ref.shape {
			st := ref.stride[i]
			if d > 1 && st > (maxInt64-last)/(d-1) {
				return nil, fmt.Errorf("shape %v stride %v offset %d overflows", ref.shape, ref.stride, ref.offset)
			}
			last += (d - 1) * st
		}
		if last >= s.numel {
			return nil, fmt.Errorf("shape %v stride %v offset %d reaches element %d, storage %q holds %d", ref.shape, ref.stride, ref.offset, last, clip(s.key), s.numel)
		}
	}
	if n := numel * es; n > entryBytes && n > maxBroadcastBytes {
		return nil, fmt.Errorf("shape %v of %s (%d bytes) expands storage %q of %d bytes beyond %d bytes", ref.shape, dt, n, clip(s.key), entryBytes, maxBroadcastBytes)
	}
	return &tensorEntry{
		info:     safetensors.TensorInfo{Name: name, DType: dt, Shape: shape},
		ref:      ref,
		elemSize: es,
		zf:       zf,
		dataOff:  dataOff,
	}, nil
}

const maxInt64 = 1<<63 - 1

func mulString(a, b int64) string {
	if a > maxInt64/b {
		return fmt.Sprintf("%d×%d", a, b)
	}
	return fmt.Sprint(a * b)
}

// maxDeflateRatio bounds the uncompressed size a deflated entry may claim
// per compressed byte (deflate cannot exceed about 1032:1).
const maxDeflateRatio = 1032

// entryBounds returns the uncompressed size of a storage entry, checked
// against the bytes the file can back, and, for a stored entry, the file
// offset of its data.
func (f *File) entryBounds(zf *zip.File) (size, dataOff int64, err error) {
	if zf.CompressedSize64 > uint64(f.size) {
		return 0, 0, fmt.Errorf("entry %s: compressed size %d beyond the file's %d bytes", printable(zf.Name), zf.CompressedSize64, f.size)
	}
	comp := int64(zf.CompressedSize64)
	switch zf.Method {
	case zip.Store:
		if zf.UncompressedSize64 != zf.CompressedSize64 {
			return 0, 0, fmt.Errorf("entry %s: stored with sizes %d and %d", printable(zf.Name), zf.CompressedSize64, zf.UncompressedSize64)
		}
		off, err := zf.DataOffset()
		if err != nil {
			return 0, 0, fmt.Errorf("entry %s: %w", printable(zf.Name), err)
		}
		if off < 0 || off > f.size-comp {
			return 0, 0, fmt.Errorf("entry %s: %d bytes at offset %d beyond the file's %d bytes", printable(zf.Name), comp, off, f.size)
		}
		return comp, off, nil
	case zip.Deflate:
		if zf.UncompressedSize64/maxDeflateRatio > zf.CompressedSize64 {
			return 0, 0, fmt.Errorf("entry %s: %d bytes cannot inflate to the claimed %d", printable(zf.Name), zf.CompressedSize64, zf.UncompressedSize64)
		}
		return int64(zf.UncompressedSize64), -1, nil
	}
	return 0, 0, fmt.Errorf("entry %s: compression method %d, want stored or deflated", printable(zf.Name), zf.Method)
}

// Path returns the path the file was opened with.
func (f *File) Path() string { return f.path }

// Names returns the sorted tensor names of the state dict.
func (f *File) Names() []string { return append([]string(nil), f.names...) }

// Infos returns name, dtype and shape of every tensor, sorted by name,
// without reading data.
func (f *File) Infos() []safetensors.TensorInfo {
	out := make([]safetensors.TensorInfo, len(f.names))
	for i, n := range f.names {
		info := f.tensors[n].info
		info.Shape = append([]int(nil), info.Shape...)
		out[i] = info
	}
	return out
}

// Tensor reads the named tensor and returns it contiguous, row-major and
// little-endian in a new buffer owned by the caller. It reads only the part
// of the tensor's storage the view covers.
func (f *File) Tensor(name string) (safetensors.Tensor, error) {
	e, ok := f.tensors[name]
	if !ok {
		return safetensors.Tensor{}, fmt.Errorf("%s: tensor %q: %w", f.path, clip(name), safetensors.ErrNotInCheckpoint)
	}
	data, err := f.materialize(e)
	if err != nil {
		return safetensors.Tensor{}, fmt.Errorf("%s: tensor %q: %w", f.path, clip(name), err)
	}
	info := e.info
	info.Shape = append([]int(nil), info.Shape...)
	return safetensors.Tensor{TensorInfo: info, Data: data, File: f.path}, nil
}

// materialize copies a validated view out of its storage entry.
func (f *File) materialize(e *tensorEntry) ([]byte, error) {
	r := e.ref
	numel := int64(1)
	for _, d := range r.shape {
		numel *= d
	}
	if numel == 0 {
		return []byte{}, nil
	}
	if contiguous(r.shape, r.stride) {
		return f.readStorage(e, r.offset*e.elemSize, numel*e.elemSize)
	}
	// Read the span the view covers once, then gather.
	last := r.offset
	for i, d := range r.shape {
		last += (d - 1) * r.stride[i]
	}
	span, err := f.readStorage(e, r.offset*e.elemSize, (last-r.offset+1)*e.elemSize)
	if err != nil {
		return nil, err
	}
	n := numel * e.elemSize
	if n > int64(len(span)) && n > maxBroadcastBytes {
		return nil, fmt.Errorf("shape %v expands %d storage bytes beyond %d bytes", r.shape, len(span), maxBroadcastBytes)
	}
	out := make([]byte, n)
	gather(out, span, e.elemSize, r.shape, r.stride)
	return out, nil
}

// contiguous reports whether strides are row-major for shape; dims of size
// 1 may have any stride.
func contiguous(shape, stride []int64) bool {
	want := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] != 1 && stride[i] != want {
			return false
		}
		want *= shape[i]
	}
	return true
}

// gather copies the elements of a strided view of src (element 0 of the
// view at src[0]) to dst in row-major order. shape has no zero dims.
func gather(dst, src []byte, es int64, shape, stride []int64) {
	nd := len(shape)
	if nd == 0 {
		copy(dst, src[:es])
		return
	}
	inner, is := shape[nd-1], stride[nd-1]
	idx := make([]int64, nd-1)
	var o, at int64 // bytes written; source element of the row start
	for {
		if is == 1 {
			o += int64(copy(dst[o:], src[at*es:(at+inner)*es]))
		} else {
			for j := int64(0); j < inner; j++ {
				p := (at + j*is) * es
				o += int64(copy(dst[o:o+es], src[p:p+es]))
			}
		}
		k := nd - 2
		for ; k >= 0; k-- {
			idx[k]++
			at += stride[k]
			if idx[k] < shape[k] {
				break
			}
			at -= stride[k] * shape[k]
			idx[k] = 0
		}
		if k < 0 {
			return
		}
	}
}

// readStorage reads n bytes from byte off of a storage entry. A stored
// entry, whose bounds Open checked against the file, is read with one
// ReadAt into a buffer of n bytes; a deflated entry is inflated from its
// start, and its buffer grows only as inflated bytes arrive, so a size
// claimed by a hostile header is never allocated up front.
func (f *File) readStorage(e *tensorEntry, off, n int64) ([]byte, error) {
	if e.dataOff >= 0 {
		dst := make([]byte, n)
		got, err := f.ra.ReadAt(dst, e.dataOff+off)
		if int64(got) == n {
			return dst, nil
		}
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("reading %s: %w", printable(e.zf.Name), err)
	}
	rc, err := e.zf.Open()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", printable(e.zf.Name), err)
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, off); err != nil {
		return nil, fmt.Errorf("reading %s: %w", printable(e.zf.Name), noEOF(err))
	}
	dst, err := io.ReadAll(io.LimitReader(rc, n))
	if err == nil && int64(len(dst)) != n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", printable(e.zf.Name), err)
	}
	return dst, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Close releases the file. Tensors already returned stay valid: they own
// their data.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	return f.closer.Close()
}
