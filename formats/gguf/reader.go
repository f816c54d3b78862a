package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// Version is the GGUF version this package writes. The reader accepts
// versions 2 and 3, which share one layout (version 1 used 32-bit counts).
const Version = 3

// DefaultAlignment is the data alignment of a file without
// general.alignment (spec: "If the alignment is not specified, assume it is
// 32").
const DefaultAlignment = 32

// KeyAlignment is the metadata key that sets the data alignment.
const KeyAlignment = "general.alignment"

// Limits the reader and writer enforce.
const (
	// MaxDims is ggml's GGML_MAX_DIMS: a tensor has at most 4 dimensions.
	MaxDims = 4
	// MaxTensorName is the longest tensor name the spec allows, in bytes.
	// The writer allows one byte less: llama.cpp keeps names in a
	// 64-byte NUL-terminated buffer (GGML_MAX_NAME).
	MaxTensorName = 64
	// MaxKeyLength is the longest metadata key the spec allows, in bytes.
	MaxKeyLength = 1<<16 - 1
	// maxArrayDepth bounds nested arrays so a hostile file cannot recurse
	// without end.
	maxArrayDepth = 8
)

// ErrFormat is wrapped by every error about a malformed file.
var ErrFormat = errors.New("invalid gguf file")

// TensorInfo describes one tensor of a GGUF file.
type TensorInfo struct {
	Name string
	// Shape is in row-major (PyTorch) order, outermost dimension first: a
	// linear weight is [out, in]. GGUF stores the dimensions the other way
	// round, innermost first (ggml's ne[]); see Dims.
	Shape []int
	Type  TensorType
	// Offset is the position of the tensor's data relative to the start of
	// the data section, as stored in the file; the writer fills it in.
	Offset int64
}

// Dims returns the dimensions as GGUF stores them: innermost first, the
// reverse of Shape (ggml's ne[0], ne[1], …).
func (t TensorInfo) Dims() []uint64 {
	d := make([]uint64, len(t.Shape))
	for i, s := range t.Shape {
		d[len(t.Shape)-1-i] = uint64(s)
	}
	return d
}

// NumElements returns the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// RowLength returns the innermost dimension, the one ggml quantizes in
// blocks (1 for a scalar).
func (t TensorInfo) RowLength() int64 {
	if len(t.Shape) == 0 {
		return 1
	}
	return int64(t.Shape[len(t.Shape)-1])
}

// Size returns the size of the tensor's data in bytes, or an error if the
// type is unknown, the row length is not a multiple of the type's block
// size, or the size overflows.
func (t TensorInfo) Size() (int64, error) {
	for _, d := range t.Shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", t.Shape)
		}
	}
	row, err := t.Type.RowBytes(t.RowLength())
	if err != nil {
		return 0, err
	}
	rows := int64(1)
	for _, d := range t.Shape[:max(len(t.Shape)-1, 0)] {
		if d != 0 && rows > maxInt64/int64(d) {
			return 0, fmt.Errorf("shape %v overflows int64", t.Shape)
		}
		rows *= int64(d)
	}
	if rows != 0 && row > maxInt64/rows {
		return 0, fmt.Errorf("shape %v of %s overflows int64 bytes", t.Shape, t.Type)
	}
	return rows * row, nil
}

// File is an open GGUF file: its metadata and tensor infos are read and
// validated by Open, tensor data is read on demand.
type File struct {
	// Version is the file's GGUF version (2 or 3).
	Version uint32
	// Alignment is the data alignment (general.alignment, default 32).
	Alignment int64
	// DataOffset is the absolute file position of the data section.
	DataOffset int64

	path    string
	r       io.ReaderAt
	closer  io.Closer
	size    int64
	kvs     []KV
	kvIndex map[string]int
	tensors []TensorInfo
	tIndex  map[string]int
}

// Open opens and validates the GGUF file at path. Errors name the file and,
// where one is at fault, the key or tensor; malformed files give errors
// wrapping ErrFormat.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("gguf: %w", err)
	}
	f, err := NewFile(fh, st.Size(), path)
	if err != nil {
		fh.Close()
		return nil, err
	}
	f.closer = fh
	return f, nil
}

// NewFile reads and validates a GGUF file of size bytes from r; name is used
// in errors. The File reads tensor data from r, which must stay usable
// until the File is no longer used.
//
// Everything in the header is checked before it is trusted: magic and
// version, counts against the bytes left in the file (so a hostile count
// cannot make the reader allocate more than the file's size), string
// lengths, value types, bool values, unique keys and tensor names, tensor
// name lengths, dimension counts, non-negative dimensions without overflow,
// known tensor types whose block size divides the row length,
// general.alignment (a uint32 power of two), offsets aligned and inside the
// file, and tensors not overlapping.
func NewFile(r io.ReaderAt, size int64, name string) (*File, error) {
	if size < 0 {
		return nil, fmt.Errorf("%s: negative size %d", name, size)
	}
	d := &decoder{r: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10), size: size, file: name}
	f := &File{path: name, r: r, size: size}
	if err := d.parse(f); err != nil {
		return nil, err
	}
	return f, nil
}

// Close closes the underlying file when the File came from Open.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	err := f.closer.Close()
	f.closer = nil
	return err
}

// Path returns the name the File was opened with.
func (f *File) Path() string { return f.path }

// Size returns the file size in bytes.
func (f *File) Size() int64 { return f.size }

// KVs returns the metadata in file order. The values are shared with the
// File and must not be modified.
func (f *File) KVs() []KV { return slices.Clone(f.kvs) }

// Get returns the value of a metadata key (see KV for its Go types).
func (f *File) Get(key string) (any, bool) {
	i, ok := f.kvIndex[key]
	if !ok {
		return nil, false
	}
	return f.kvs[i].Value, true
}

// Value returns the metadata value of key as a T (uint32, string,
// []string, …), or an error naming the file and key when the key is
// missing or holds another type.
func Value[T any](f *File, key string) (T, error) {
	var zero T
	v, ok := f.Get(key)
	if !ok {
		return zero, fmt.Errorf("%s: missing metadata key %q", f.path, key)
	}
	x, ok := v.(T)
	if !ok {
		typ, elem, _ := TypeOf(v)
		want := fmt.Sprintf("Go type %T", zero)
		if wt, we, ok := TypeOf(zero); ok {
			want = typeName(wt, we)
		}
		return zero, fmt.Errorf("%s: metadata key %q: %s, want %s", f.path, key, typeName(typ, elem), want)
	}
	return x, nil
}

func typeName(t, elem ValueType) string {
	if t == ValueArray {
		return "array of " + elem.String()
	}
	return t.String()
}

// Tensors returns the tensor infos in file order.
func (f *File) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(f.tensors))
	for i, t := range f.tensors {
		t.Shape = slices.Clone(t.Shape)
		out[i] = t
	}
	return out
}

// Tensor returns the info of the named tensor.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.tIndex[name]
	if !ok {
		return TensorInfo{}, false
	}
	t := f.tensors[i]
	t.Shape = slices.Clone(t.Shape)
	return t, true
}

// TensorData reads the raw bytes of the named tensor (blocks as ggml lays
// them out, rows innermost dimension first in memory) into a new slice.
func (f *File) TensorData(name string) ([]byte, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q: not in the file", f.path, name)
	}
	size, _ := t.Size() // validated by NewFile
	buf := make([]byte, size)
	if size == 0 {
		return buf, nil // an empty tensor may have any aligned offset, even past the end
	}
	if _, err := f.r.ReadAt(buf, f.DataOffset+t.Offset); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: reading %d bytes at %d: %w", f.path, name, size, f.DataOffset+t.Offset, err)
	}
	return buf, nil
}

// Float32 reads the named tensor and converts it to float32 (F32, F16,
// BF16, Q8_0 and Q4_K; other types give an error wrapping
// ErrUnsupportedType). The values are in row-major order of Shape.
func (f *File) Float32(name string) ([]float32, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q: not in the file", f.path, name)
	}
	if !t.Type.Convertible() {
		return nil, fmt.Errorf("%s: tensor %q: %s to float32: %w", f.path, name, t.Type, ErrUnsupportedType)
	}
	data, err := f.TensorData(name)
	if err != nil {
		return nil, err
	}
	out, err := Decode(t.Type, data, int(t.NumElements()))
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.path, name, err)
	}
	return out, nil
}

// Float32Rows reads rows [row0, row0+n) of the named tensor, seen as rows
// of its last dimension ([numel/k, k]: a stacked 3-D tensor's experts one
// after another), and converts them to float32 as Float32 does. Only those
// rows' bytes are read: ggml quantizes row by row, so every type's rows
// are whole blocks.
func (f *File) Float32Rows(name string, row0, n int) ([]float32, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q: not in the file", f.path, name)
	}
	if !t.Type.Convertible() {
		return nil, fmt.Errorf("%s: tensor %q: %s to float32: %w", f.path, name, t.Type, ErrUnsupportedType)
	}
	k := t.Shape[len(t.Shape)-1]
	if row0 < 0 || n < 0 || int64(row0+n)*int64(k) > t.NumElements() {
		return nil, fmt.Errorf("%s: tensor %q: shape %v has no rows [%d, %d) of %d", f.path, name, t.Shape, row0, row0+n, k)
	}
	rowBytes, err := t.Type.RowBytes(int64(k))
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.path, name, err)
	}
	buf := make([]byte, int64(n)*rowBytes)
	at := f.DataOffset + t.Offset + int64(row0)*rowBytes
	if _, err := f.r.ReadAt(buf, at); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: reading %d bytes at %d: %w", f.path, name, len(buf), at, err)
	}
	out, err := Decode(t.Type, buf, n*k)
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.path, name, err)
	}
	return out, nil
}

// decoder reads the header sequentially, tracking the position so that
// every length can be checked against the bytes left in the file.
type decoder struct {
	r    *bufio.Reader
	pos  int64
	size int64
	file string
	buf  [8]byte
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: %w: "+format, append([]any{d.file, ErrFormat}, args...)...)
}

func (d *decoder) left() int64 { return d.size - d.pos }

func (d *decoder) read(n int, what string) ([]byte, error) {
	if int64(n) > d.left() {
		return nil, d.errorf("%s at offset %d: truncated file (%d bytes, %d left)", what, d.pos, n, d.left())
	}
	b := d.buf[:n]
	if _, err := io.ReadFull(d.r, b); err != nil {
		return nil, fmt.Errorf("%s: %s at offset %d: %w", d.file, what, d.pos, err)
	}
	d.pos += int64(n)
	return b, nil
}

func (d *decoder) u32(what string) (uint32, error) {
	b, err := d.read(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (d *decoder) u64(what string) (uint64, error) {
	b, err := d.read(8, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// str reads a gguf_string_t of at most limit bytes.
func (d *decoder) str(what string, limit int64) (string, error) {
	at := d.pos
	n, err := d.u64(what + " length")
	if err != nil {
		return "", err
	}
	if n > uint64(d.left()) {
		return "", d.errorf("%s at offset %d: length %d, only %d bytes left in the file", what, at, n, d.left())
	}
	if n > uint64(limit) {
		return "", d.errorf("%s at offset %d: length %d exceeds the limit of %d bytes", what, at, n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(d.r, b); err != nil {
		return "", fmt.Errorf("%s: %s at offset %d: %w", d.file, what, at, err)
	}
	d.pos += int64(n)
	return string(b), nil
}

// count reads an element count and checks that count elements of at least
// minBytes each fit in the rest of the file, which bounds every allocation
// by the file size.
func (d *decoder) count(what string, minBytes int64) (int, error) {
	at := d.pos
	n, err := d.u64(what)
	if err != nil {
		return 0, err
	}
	if minBytes > 0 && n > uint64(d.left()/minBytes) {
		return 0, d.errorf("%s at offset %d: %d entries of at least %d bytes each cannot fit in the %d bytes left", what, at, n, minBytes, d.left())
	}
	if n > math.MaxInt32 {
		return 0, d.errorf("%s at offset %d: %d entries is too many", what, at, n)
	}
	return int(n), nil
}

func (d *decoder) parse(f *File) error {
	magic, err := d.read(4, "magic")
	if err != nil {
		return err
	}
	if string(magic) != Magic {
		return d.errorf("magic %q, want %q", magic, Magic)
	}
	if f.Version, err = d.u32("version"); err != nil {
		return err
	}
	if f.Version != 2 && f.Version != 3 {
		return d.errorf("version %d, want 2 or 3", f.Version)
	}
	// Minimum encoded sizes: a tensor info is a name length (8), n_dims
	// (4), type (4) and offset (8); a KV is a key length (8), a type (4)
	// and a value of at least one byte.
	nTensors, err := d.count("tensor count", 24)
	if err != nil {
		return err
	}
	nKV, err := d.count("metadata count", 13)
	if err != nil {
		return err
	}
	f.kvs = make([]KV, 0, nKV)
	f.kvIndex = make(map[string]int, nKV)
	for i := range nKV {
		key, err := d.str(fmt.Sprintf("metadata key %d", i), MaxKeyLength)
		if err != nil {
			return err
		}
		if _, dup := f.kvIndex[key]; dup {
			return d.errorf("metadata key %q: duplicate", key)
		}
		typ, err := d.u32(fmt.Sprintf("metadata key %q: type", key))
		if err != nil {
			return err
		}
		v, err := d.value(key, ValueType(typ), 0)
		if err != nil {
			return err
		}
		f.kvIndex[key] = len(f.kvs)
		f.kvs = append(f.kvs, KV{Key: key, Value: v})
	}
	f.Alignment = DefaultAlignment
	if v, ok := f.Get(KeyAlignment); ok {
		a, isU32 := v.(uint32)
		if !isU32 {
			t, e, _ := TypeOf(v)
			return d.errorf("metadata key %q: %s, want uint32", KeyAlignment, typeName(t, e))
		}
		if a == 0 || a&(a-1) != 0 {
			return d.errorf("metadata key %q: %d is not a power of two", KeyAlignment, a)
		}
		f.Alignment = int64(a)
	}
	f.tensors = make([]TensorInfo, 0, nTensors)
	f.tIndex = make(map[string]int, nTensors)
	for i := range nTensors {
		t, err := d.tensorInfo(i)
		if err != nil {
			return err
		}
		if _, dup := f.tIndex[t.Name]; dup {
			return d.errorf("tensor %q: duplicate name", t.Name)
		}
		f.tIndex[t.Name] = len(f.tensors)
		f.tensors = append(f.tensors, t)
	}
	f.DataOffset = alignUp(d.pos, f.Alignment)
	return f.checkData(d)
}

func (d *decoder) tensorInfo(i int) (TensorInfo, error) {
	name, err := d.str(fmt.Sprintf("tensor %d: name", i), MaxTensorName)
	if err != nil {
		return TensorInfo{}, err
	}
	what := fmt.Sprintf("tensor %q", name)
	nd, err := d.u32(what + ": n_dims")
	if err != nil {
		return TensorInfo{}, err
	}
	if nd > MaxDims {
		return TensorInfo{}, d.errorf("%s: %d dimensions, at most %d allowed", what, nd, MaxDims)
	}
	dims := make([]uint64, nd)
	for j := range dims {
		if dims[j], err = d.u64(what + ": dimension"); err != nil {
			return TensorInfo{}, err
		}
		if dims[j] > maxInt64 {
			return TensorInfo{}, d.errorf("%s: dimension %d is %d, beyond int64", what, j, dims[j])
		}
	}
	typ, err := d.u32(what + ": type")
	if err != nil {
		return TensorInfo{}, err
	}
	off, err := d.u64(what + ": offset")
	if err != nil {
		return TensorInfo{}, err
	}
	t := TensorInfo{Name: name, Type: TensorType(typ), Shape: make([]int, nd)}
	for j, v := range dims {
		if v > math.MaxInt {
			return TensorInfo{}, d.errorf("%s: dimension %d is %d, beyond int", what, j, v)
		}
		t.Shape[int(nd)-1-j] = int(v)
	}
	if !t.Type.Known() {
		return TensorInfo{}, d.errorf("%s: unknown tensor type %d", what, typ)
	}
	if off > maxInt64 {
		return TensorInfo{}, d.errorf("%s: offset %d beyond int64", what, off)
	}
	t.Offset = int64(off)
	if _, err := t.Size(); err != nil {
		return TensorInfo{}, d.errorf("%s: shape %v %s: %v", what, t.Shape, t.Type, err)
	}
	return t, nil
}

// checkData validates every tensor's offset against the alignment and the
// data section, and that no two tensors share a byte.
func (f *File) checkData(d *decoder) error {
	dataLen := f.size - f.DataOffset
	type span struct {
		name     string
		off, end int64
	}
	spans := make([]span, 0, len(f.tensors))
	for _, t := range f.tensors {
		size, _ := t.Size()
		if t.Offset%f.Alignment != 0 {
			return d.errorf("tensor %q: offset %d is not a multiple of the alignment %d", t.Name, t.Offset, f.Alignment)
		}
		if size == 0 {
			continue
		}
		if t.Offset > dataLen || size > dataLen-t.Offset {
			return d.errorf("tensor %q: data [%d, %d) of the data section lies outside the file (data section at %d holds %d bytes)", t.Name, t.Offset, t.Offset+min(size, maxInt64-t.Offset), f.DataOffset, max(dataLen, 0))
		}
		spans = append(spans, span{t.Name, t.Offset, t.Offset + size})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].off < spans[j].off })
	for i := 1; i < len(spans); i++ {
		if spans[i].off < spans[i-1].end {
			return d.errorf("tensor %q: data [%d, %d) overlaps tensor %q [%d, %d)", spans[i].name, spans[i].off, spans[i].end, spans[i-1].name, spans[i-1].off, spans[i-1].end)
		}
	}
	return nil
}

// value reads a value of type typ for key; depth counts enclosing arrays.
func (d *decoder) value(key string, typ ValueType, depth int) (any, error) {
	what := fmt.Sprintf("metadata key %q", key)
	switch typ {
	case ValueString:
		return d.str(what+": string", d.left())
	case ValueArray:
		return d.array(key, depth)
	}
	n := typ.scalarBytes()
	if n == 0 {
		return nil, d.errorf("%s: unknown value type %d", what, uint32(typ))
	}
	b, err := d.read(n, what)
	if err != nil {
		return nil, err
	}
	return decodeScalar(typ, b, what, d)
}

func decodeScalar(typ ValueType, b []byte, what string, d *decoder) (any, error) {
	le := binary.LittleEndian
	switch typ {
	case ValueUint8:
		return b[0], nil
	case ValueInt8:
		return int8(b[0]), nil
	case ValueUint16:
		return le.Uint16(b), nil
	case ValueInt16:
		return int16(le.Uint16(b)), nil
	case ValueUint32:
		return le.Uint32(b), nil
	case ValueInt32:
		return int32(le.Uint32(b)), nil
	case ValueFloat32:
		return math.Float32frombits(le.Uint32(b)), nil
	case ValueUint64:
		return le.Uint64(b), nil
	case ValueInt64:
		return int64(le.Uint64(b)), nil
	case ValueFloat64:
		return math.Float64frombits(le.Uint64(b)), nil
	case ValueBool:
		if b[0] > 1 {
			return nil, d.errorf("%s: bool byte %d, want 0 or 1", what, b[0])
		}
		return b[0] == 1, nil
	}
	return nil, d.errorf("%s: unknown value type %d", what, uint32(typ))
}

func (d *decoder) array(key string, depth int) (any, error) {
	what := fmt.Sprintf("metadata key %q: array", key)
	if depth >= maxArrayDepth {
		return nil, d.errorf("%s: arrays nested more than %d deep", what, maxArrayDepth)
	}
	et, err := d.u32(what + " element type")
	if err != nil {
		return nil, err
	}
	elem := ValueType(et)
	var minBytes int64
	switch elem {
	case ValueString:
		minBytes = 8
	case ValueArray:
		minBytes = 12
	default:
		minBytes = int64(elem.scalarBytes())
		if minBytes == 0 {
			return nil, d.errorf("%s: unknown element type %d", what, et)
		}
	}
	n, err := d.count(what+" length", minBytes)
	if err != nil {
		return nil, err
	}
	switch elem {
	case ValueString:
		out := make([]string, n)
		for i := range out {
			if out[i], err = d.str(fmt.Sprintf("%s element %d", what, i), d.left()); err != nil {
				return nil, err
			}
		}
		return out, nil
	case ValueArray:
		out := make([]any, n)
		var first ValueType
		for i := range out {
			if out[i], err = d.array(key, depth+1); err != nil {
				return nil, err
			}
			_, et, _ := TypeOf(out[i])
			if i == 0 {
				first = et
			} else if et != first {
				return nil, d.errorf("%s: element %d is an array of %s, element 0 an array of %s", what, i, et, first)
			}
		}
		return out, nil
	}
	raw := make([]byte, int64(n)*minBytes)
	if _, err := io.ReadFull(d.r, raw); err != nil {
		return nil, fmt.Errorf("%s: %s at offset %d: %w", d.file, what, d.pos, err)
	}
	d.pos += int64(len(raw))
	return decodeScalarArray(elem, raw, n, what, d)
}

func decodeScalarArray(elem ValueType, raw []byte, n int, what string, d *decoder) (any, error) {
	le := binary.LittleEndian
	switch elem {
	case ValueUint8:
		return raw, nil
	case ValueInt8:
		out := make([]int8, n)
		for i := range out {
			out[i] = int8(raw[i])
		}
		return out, nil
	case ValueBool:
		out := make([]bool, n)
		for i := range out {
			if raw[i] > 1 {
				return nil, d.errorf("%s element %d: bool byte %d, want 0 or 1", what, i, raw[i])
			}
			out[i] = raw[i] == 1
		}
		return out, nil
	case ValueUint16:
		out := make([]uint16, n)
		for i := range out {
			out[i] = le.Uint16(raw[2*i:])
		}
		return out, nil
	case ValueInt16:
		out := make([]int16, n)
		for i := range out {
			out[i] = int16(le.Uint16(raw[2*i:]))
		}
		return out, nil
	case ValueUint32:
		out := make([]uint32, n)
		for i := range out {
			out[i] = le.Uint32(raw[4*i:])
		}
		return out, nil
	case ValueInt32:
		out := make([]int32, n)
		for i := range out {
			out[i] = int32(le.Uint32(raw[4*i:]))
		}
		return out, nil
	case ValueFloat32:
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
		return out, nil
	case ValueUint64:
		out := make([]uint64, n)
		for i := range out {
			out[i] = le.Uint64(raw[8*i:])
		}
		return out, nil
	case ValueInt64:
		out := make([]int64, n)
		for i := range out {
			out[i] = int64(le.Uint64(raw[8*i:]))
		}
		return out, nil
	case ValueFloat64:
		out := make([]float64, n)
		for i := range out {
			out[i] = math.Float64frombits(le.Uint64(raw[8*i:]))
		}
		return out, nil
	}
	return nil, d.errorf("%s: unknown element type %d", what, uint32(elem))
}

func alignUp(n, a int64) int64 { return n + (a-n%a)%a }
