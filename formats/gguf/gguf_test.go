package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/small.gguf")

// raw builds file images by hand, field by field as the spec lists them,
// independently of the writer.
type raw struct{ b []byte }

func (r *raw) u8(v uint8) *raw   { r.b = append(r.b, v); return r }
func (r *raw) u32(v uint32) *raw { r.b = binary.LittleEndian.AppendUint32(r.b, v); return r }
func (r *raw) u64(v uint64) *raw { r.b = binary.LittleEndian.AppendUint64(r.b, v); return r }
func (r *raw) f32(v float32) *raw {
	r.b = binary.LittleEndian.AppendUint32(r.b, math.Float32bits(v))
	return r
}
func (r *raw) str(s string) *raw  { r.u64(uint64(len(s))); r.b = append(r.b, s...); return r }
func (r *raw) raw(b ...byte) *raw { r.b = append(r.b, b...); return r }
func (r *raw) pad(a int) *raw {
	for len(r.b)%a != 0 {
		r.b = append(r.b, 0)
	}
	return r
}

// header starts a v3 file.
func header(tensors, kvs uint64) *raw {
	r := &raw{}
	return r.raw('G', 'G', 'U', 'F').u32(3).u64(tensors).u64(kvs)
}

// handFile is a two-tensor file written by hand:
//
//	general.architecture = "llama" (string), x.ints = [1, -2, 3] (int32
//	array), x.flag = true (bool); tensor "a" F32 of Shape [2 3] (dims
//	[3 2]) holding 1..6 at offset 0; tensor "b" Q8_0 of Shape [32] at
//	offset 32 holding d = 1 and quants 0..31.
func handFile() []byte {
	r := header(2, 3)
	r.str("general.architecture").u32(8).str("llama")
	r.str("x.ints").u32(9).u32(5).u64(3).u32(1).u32(uint32(0xFFFFFFFE)).u32(3)
	r.str("x.flag").u32(7).u8(1)
	r.str("a").u32(2).u64(3).u64(2).u32(0).u64(0)
	r.str("b").u32(1).u64(32).u32(8).u64(32)
	r.pad(32)
	for i := 1; i <= 6; i++ {
		r.f32(float32(i))
	}
	r.pad(32)
	r.raw(0x00, 0x3C)
	for i := range 32 {
		r.u8(byte(i))
	}
	return r.pad(32).b
}

func handKVs() []KV {
	return []KV{{"general.architecture", "llama"}, {"x.ints", []int32{1, -2, 3}}, {"x.flag", true}}
}

func handTensors() []TensorInfo {
	return []TensorInfo{{Name: "a", Shape: []int{2, 3}, Type: TypeF32}, {Name: "b", Shape: []int{32}, Type: TypeQ8_0}}
}

func openBytes(t *testing.T, b []byte) *File {
	t.Helper()
	f, err := NewFile(bytes.NewReader(b), int64(len(b)), "test.gguf")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestReadHandFile(t *testing.T) {
	f := openBytes(t, handFile())
	if f.Version != 3 || f.Alignment != 32 || f.DataOffset%32 != 0 {
		t.Errorf("version %d alignment %d data offset %d, want 3, 32, a multiple of 32", f.Version, f.Alignment, f.DataOffset)
	}
	if got, want := f.KVs(), handKVs(); !kvsEqual(got, want) {
		t.Errorf("KVs = %v, want %v", got, want)
	}
	if arch, err := Value[string](f, "general.architecture"); err != nil || arch != "llama" {
		t.Errorf(`Value[string]("general.architecture") = %q, %v`, arch, err)
	}
	if _, err := Value[uint32](f, "x.flag"); err == nil || !strings.Contains(err.Error(), `"x.flag": bool, want uint32`) {
		t.Errorf("Value[uint32] of a bool: error %v", err)
	}
	if _, err := Value[string](f, "missing"); err == nil || !strings.Contains(err.Error(), `test.gguf: missing metadata key "missing"`) {
		t.Errorf("Value of a missing key: error %v", err)
	}
	a, ok := f.Tensor("a")
	if !ok || !slices.Equal(a.Shape, []int{2, 3}) || !slices.Equal(a.Dims(), []uint64{3, 2}) || a.Type != TypeF32 || a.Offset != 0 {
		t.Errorf("tensor a = %+v (dims %v), want Shape [2 3], dims [3 2], F32 at 0", a, a.Dims())
	}
	got, err := f.Float32("a")
	if err != nil || !slices.Equal(got, []float32{1, 2, 3, 4, 5, 6}) {
		t.Errorf("Float32(a) = %v, %v", got, err)
	}
	got, err = f.Float32("b")
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != float32(i) {
			t.Fatalf("Float32(b)[%d] = %g, want %d", i, v, i)
		}
	}
	if _, err := f.TensorData("c"); err == nil || !strings.Contains(err.Error(), `test.gguf: tensor "c": not in the file`) {
		t.Errorf("TensorData of a missing tensor: error %v", err)
	}
}

// TestWriteHandFile: the writer must produce the hand-made bytes exactly.
func TestWriteHandFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hand.gguf")
	w, err := Create(path, handKVs(), handTensors())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFloat32("a", []float32{1, 2, 3, 4, 5, 6}); err != nil {
		t.Fatal(err)
	}
	q8 := []byte{0x00, 0x3C}
	for i := range 32 {
		q8 = append(q8, byte(i))
	}
	if err := w.WriteTensor("b", q8); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := handFile(); !bytes.Equal(got, want) {
		t.Errorf("written file differs from the hand-made one\n got % x\nwant % x", got, want)
	}
}

func kvsEqual(a, b []KV) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		ea, errA := appendValue(nil, a[i].Value)
		eb, errB := appendValue(nil, b[i].Value)
		ta, _, _ := TypeOf(a[i].Value)
		tb, _, _ := TypeOf(b[i].Value)
		if a[i].Key != b[i].Key || ta != tb || errA != nil || errB != nil || !bytes.Equal(ea, eb) {
			return false
		}
	}
	return true
}

// allValueKVs has one key per value type the writer accepts.
func allValueKVs() []KV {
	return []KV{
		{"v.u8", uint8(200)}, {"v.i8", int8(-100)}, {"v.u16", uint16(60000)}, {"v.i16", int16(-30000)},
		{"v.u32", uint32(4e9)}, {"v.i32", int32(-2e9)}, {"v.u64", uint64(1) << 63}, {"v.i64", int64(-1) << 62},
		{"v.f32", float32(3.5)}, {"v.f64", -1e300}, {"v.true", true}, {"v.false", false},
		{"v.str", "héllo ▁wörld"}, {"v.empty", ""},
		{"a.u8", []uint8{1, 2}}, {"a.i8", []int8{-1}}, {"a.u16", []uint16{7}}, {"a.i16", []int16{-7, 7}},
		{"a.u32", []uint32{1, 2, 3}}, {"a.i32", []int32{-3}}, {"a.u64", []uint64{9}}, {"a.i64", []int64{-9}},
		{"a.f32", []float32{0.25, float32(math.Inf(1))}}, {"a.f64", []float64{1e-300}},
		{"a.bool", []bool{true, false, true}}, {"a.str", []string{"<s>", "", "▁the"}}, {"a.empty", []string{}},
		{"a.nested", []any{[]uint32{1, 2}, []uint32{}, []uint32{3}}},
		{"a.nested2", []any{[]any{[]string{"x"}}, []any{}}},
	}
}

func TestRoundTrip(t *testing.T) {
	x := gaussian(5, 2*512, 1)
	tensors := []struct {
		info TensorInfo
		vals []float32 // nil: raw bytes
		raw  []byte
	}{
		{TensorInfo{Name: "f32", Shape: []int{3, 5}, Type: TypeF32}, x[:15], nil},
		{TensorInfo{Name: "f16", Shape: []int{2, 7}, Type: TypeF16}, x[:14], nil},
		{TensorInfo{Name: "bf16", Shape: []int{4}, Type: TypeBF16}, x[:4], nil},
		{TensorInfo{Name: "scalar", Shape: []int{}, Type: TypeF32}, x[:1], nil},
		{TensorInfo{Name: "q8_0", Shape: []int{3, 64}, Type: TypeQ8_0}, x[:192], nil},
		{TensorInfo{Name: "q4_k", Shape: []int{2, 512}, Type: TypeQ4_K}, x, nil},
		{TensorInfo{Name: "empty", Shape: []int{0, 32}, Type: TypeQ8_0}, []float32{}, nil},
		{TensorInfo{Name: "i32", Shape: []int{1, 1, 1, 5}, Type: TypeI32}, nil, make([]byte, 20)},
		{TensorInfo{Name: "q2_k", Shape: []int{4, 256}, Type: TypeQ2_K}, x, nil},
		{TensorInfo{Name: "q3_k", Shape: []int{1024}, Type: TypeQ3_K}, x, nil},
		{TensorInfo{Name: "tq1_0", Shape: []int{256}, Type: TypeTQ1_0}, nil, bytes.Repeat([]byte{7}, 54)},
	}
	for _, align := range []uint32{0, 8, 64, 4096} {
		name := "default"
		kvs := allValueKVs()
		if align != 0 {
			name = "align" + strconv.Itoa(int(align))
			kvs = append(kvs, KV{KeyAlignment, align})
		}
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "rt.gguf")
			infos := make([]TensorInfo, len(tensors))
			for i, tt := range tensors {
				infos[i] = tt.info
			}
			w, err := Create(path, kvs, infos)
			if err != nil {
				t.Fatal(err)
			}
			for _, tt := range tensors {
				if tt.vals != nil {
					err = w.WriteFloat32(tt.info.Name, tt.vals)
				} else {
					err = w.WriteTensor(tt.info.Name, tt.raw)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if got := f.KVs(); !kvsEqual(got, kvs) {
				t.Errorf("KVs differ after a round trip\n got %v\nwant %v", got, kvs)
			}
			wantAlign := int64(DefaultAlignment)
			if align != 0 {
				wantAlign = int64(align)
			}
			if f.Alignment != wantAlign || f.DataOffset%wantAlign != 0 {
				t.Errorf("alignment %d, data offset %d; want alignment %d", f.Alignment, f.DataOffset, wantAlign)
			}
			var prevEnd int64
			for i, tt := range tensors {
				got, ok := f.Tensor(tt.info.Name)
				if !ok || !slices.Equal(got.Shape, tt.info.Shape) || got.Type != tt.info.Type {
					t.Fatalf("tensor %d = %+v, want %+v", i, got, tt.info)
				}
				// Tensors are contiguous in declaration order, each padded
				// to the alignment, as llama.cpp's loader requires.
				if got.Offset != prevEnd {
					t.Errorf("tensor %q at offset %d, want %d", got.Name, got.Offset, prevEnd)
				}
				size, _ := got.Size()
				prevEnd = alignUp(got.Offset+size, wantAlign)
				data, err := f.TensorData(tt.info.Name)
				if err != nil {
					t.Fatal(err)
				}
				if tt.vals == nil {
					if !bytes.Equal(data, tt.raw) {
						t.Errorf("tensor %q: raw bytes differ", got.Name)
					}
					if _, err := f.Float32(tt.info.Name); !errors.Is(err, ErrUnsupportedType) {
						t.Errorf("Float32(%q): error %v, want ErrUnsupportedType", got.Name, err)
					}
					continue
				}
				want, _ := Encode(tt.info.Type, tt.vals)
				if !bytes.Equal(data, want) {
					t.Errorf("tensor %q: bytes differ from Encode", got.Name)
				}
				vals, err := f.Float32(tt.info.Name)
				if err != nil {
					t.Fatal(err)
				}
				back, _ := Decode(tt.info.Type, want, len(tt.vals))
				if !slices.Equal(vals, back) {
					t.Errorf("tensor %q: Float32 differs from Decode", got.Name)
				}
			}
			if st, _ := os.Stat(path); st.Size() != f.DataOffset+prevEnd {
				t.Errorf("file size %d, want data offset %d + padded data %d", st.Size(), f.DataOffset, prevEnd)
			}
		})
	}
}

func TestReaderErrors(t *testing.T) {
	tensor := func(r *raw, name string, typ uint32, off uint64, dims ...uint64) *raw {
		r.str(name).u32(uint32(len(dims)))
		for _, d := range dims {
			r.u64(d)
		}
		return r.u32(typ).u64(off)
	}
	nest := func(depth int) *raw {
		r := header(0, 1).str("deep").u32(9)
		for range depth {
			r.u32(9).u64(1)
		}
		return r.u32(4).u64(0)
	}
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"bad magic", (&raw{}).raw('G', 'G', 'U', 'X').u32(3).u64(0).u64(0).b, `magic "GGUX", want "GGUF"`},
		{"version 1", (&raw{}).raw('G', 'G', 'U', 'F').u32(1).u64(0).u64(0).b, "version 1, want 2 or 3"},
		{"truncated", (&raw{}).raw('G', 'G', 'U', 'F').u32(3).u32(0).b, "tensor count at offset 8: truncated file"},
		{"tensor count", header(1<<40, 0).b, "tensor count at offset 8: 1099511627776 entries of at least 24 bytes each cannot fit"},
		{"kv count", header(0, 1<<40).b, "metadata count at offset 16: 1099511627776 entries"},
		{"key length", header(0, 1).u64(100).raw(make([]byte, 10)...).b, "metadata key 0 at offset 24: length 100, only 10 bytes left"},
		{"key too long", header(0, 1).u64(70000).raw(make([]byte, 70000)...).b, "exceeds the limit of 65535 bytes"},
		{"string beyond file", header(0, 1).str("k").u32(8).u64(1000).raw('x').b, `metadata key "k": string at offset 37: length 1000, only 1 bytes left`},
		{"duplicate key", header(0, 2).str("k").u32(4).u32(1).str("k").u32(4).u32(2).b, `metadata key "k": duplicate`},
		{"unknown value type", header(0, 1).str("k").u32(13).u32(0).b, `metadata key "k": unknown value type 13`},
		{"bool byte", header(0, 1).str("k").u32(7).u8(2).b, `metadata key "k": bool byte 2, want 0 or 1`},
		{"bool array byte", header(0, 1).str("k").u32(9).u32(7).u64(2).u8(1).u8(9).b, `element 1: bool byte 9`},
		{"array length", header(0, 1).str("k").u32(9).u32(10).u64(1 << 30).u64(0).b, `array length at offset 41: 1073741824 entries of at least 8 bytes`},
		{"array element type", header(0, 1).str("k").u32(9).u32(77).u64(0).b, "unknown element type 77"},
		{"nested too deep", nest(9).b, "arrays nested more than 8 deep"},
		{"mixed nested", header(0, 1).str("k").u32(9).u32(9).u64(2).u32(4).u64(0).u32(5).u64(0).b, "element 1 is an array of int32, element 0 an array of uint32"},
		{"alignment power of two", header(0, 1).str(KeyAlignment).u32(4).u32(48).b, `"general.alignment": 48 is not a power of two`},
		{"alignment type", header(0, 1).str(KeyAlignment).u32(10).u64(32).b, `"general.alignment": uint64, want uint32`},
		{"name too long", tensor(header(1, 0), strings.Repeat("n", 65), 0, 0, 1).b, "tensor 0: name at offset 24: length 65 exceeds the limit of 64 bytes"},
		{"too many dims", tensor(header(1, 0), "t", 0, 0, 1, 1, 1, 1, 1).b, `tensor "t": 5 dimensions, at most 4 allowed`},
		{"unknown tensor type", tensor(header(1, 0), "t", 4, 0, 1).b, `tensor "t": unknown tensor type 4`},
		{"partial block", tensor(header(1, 0), "t", uint32(TypeQ4_K), 0, 100, 2).pad(32).raw(make([]byte, 1024)...).b, `tensor "t": shape [2 100] Q4_K: row length 100 is not a multiple of the Q4_K block size 256`},
		{"size overflow", tensor(header(1, 0), "t", 0, 0, 1<<40, 1<<40).b, `tensor "t": shape [1099511627776 1099511627776] F32`},
		{"dimension beyond int64", tensor(header(1, 0), "t", 0, 0, 1<<63).b, "beyond int64"},
		{"misaligned offset", tensor(header(1, 0), "t", 0, 8, 2).pad(32).raw(make([]byte, 64)...).b, `tensor "t": offset 8 is not a multiple of the alignment 32`},
		{"outside file", tensor(header(1, 0), "t", 0, 0, 1024).pad(32).raw(make([]byte, 64)...).b, `tensor "t": data [0, 4096) of the data section lies outside the file`},
		{"overlap", tensor(tensor(header(2, 0), "t", 0, 0, 16), "u", 0, 32, 16).pad(32).raw(make([]byte, 96)...).b, `overlaps tensor "t" [0, 64)`},
		{"duplicate tensor", tensor(tensor(header(2, 0), "t", 0, 0, 1), "t", 0, 32, 1).pad(32).raw(make([]byte, 64)...).b, `tensor "t": duplicate name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewFile(bytes.NewReader(tt.file), int64(len(tt.file)), "bad.gguf")
			if err == nil {
				t.Fatalf("NewFile accepted the file, want error containing %q", tt.want)
			}
			if !strings.HasPrefix(err.Error(), "bad.gguf: ") || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrFormat) {
				t.Fatalf("error %q, want one naming bad.gguf, wrapping ErrFormat and containing %q", err, tt.want)
			}
		})
	}
}

// TestVersion2 accepts a v2 file: same layout as v3.
func TestVersion2(t *testing.T) {
	b := handFile()
	b[4] = 2
	if f := openBytes(t, b); f.Version != 2 {
		t.Errorf("version %d, want 2", f.Version)
	}
}

func TestWriterErrors(t *testing.T) {
	ok := []TensorInfo{{Name: "t", Shape: []int{2}, Type: TypeF32}}
	tests := []struct {
		name    string
		kvs     []KV
		tensors []TensorInfo
		want    string
	}{
		{"empty key", []KV{{"", uint8(1)}}, ok, `metadata key "": want non-empty`},
		{"duplicate key", []KV{{"k", uint8(1)}, {"k", uint8(2)}}, ok, `metadata key "k": given twice`},
		{"int value", []KV{{"k", 5}}, ok, `metadata key "k": Go type int has no GGUF value type`},
		{"mixed nested", []KV{{"k", []any{[]uint8{1}, []int8{1}}}}, ok, "element 1 holds int8, element 0 holds uint8"},
		{"alignment small", []KV{{KeyAlignment, uint32(4)}}, ok, "want a uint32 power of two of at least 8"},
		{"alignment odd", []KV{{KeyAlignment, uint32(24)}}, ok, "want a uint32 power of two of at least 8"},
		{"alignment type", []KV{{KeyAlignment, uint64(32)}}, ok, "want a uint32 power of two of at least 8"},
		{"long name", nil, []TensorInfo{{Name: strings.Repeat("n", 64), Shape: []int{1}, Type: TypeF32}}, "name must be 1 to 63 bytes"},
		{"duplicate tensor", nil, append(slices.Clone(ok), ok...), `tensor "t": declared twice`},
		{"five dims", nil, []TensorInfo{{Name: "t", Shape: []int{1, 1, 1, 1, 1}, Type: TypeF32}}, "more than 4 dimensions"},
		{"negative dim", nil, []TensorInfo{{Name: "t", Shape: []int{-1, 4}, Type: TypeF32}}, "negative dimension"},
		{"partial block", nil, []TensorInfo{{Name: "t", Shape: []int{4, 100}, Type: TypeQ8_0}}, "row length 100 is not a multiple of the Q8_0 block size 32"},
		{"unknown type", nil, []TensorInfo{{Name: "t", Shape: []int{4}, Type: TensorType(77)}}, "unknown tensor type 77"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Create(filepath.Join(dir, "x.gguf"), tt.kvs, tt.tensors)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "x.gguf") {
				t.Fatalf("Create error %v, want one naming x.gguf and containing %q", err, tt.want)
			}
			assertEmptyDir(t, dir)
		})
	}
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left behind: %s", e.Name())
	}
}

// TestWriterFailures: a failed write leaves neither the file nor its
// temporary behind.
func TestWriterFailures(t *testing.T) {
	infos := []TensorInfo{{Name: "a", Shape: []int{2, 32}, Type: TypeQ8_0}, {Name: "b", Shape: []int{3}, Type: TypeF32}}
	tests := []struct {
		name    string
		run     func(w *Writer) error
		atClose bool // the error comes from Close, not from the write
		want    string
	}{
		{"out of order", func(w *Writer) error { return w.WriteFloat32("b", make([]float32, 3)) }, false, `tensor "b" written out of order, want "a" next`},
		{"wrong size", func(w *Writer) error { return w.WriteTensor("a", make([]byte, 10)) }, false, `tensor "a": 10 bytes, shape [2 32] Q8_0 needs 68`},
		{"wrong count", func(w *Writer) error { return w.WriteFloat32("a", make([]float32, 63)) }, false, `tensor "a": 63 values, shape [2 32] needs 64`},
		{"too many", func(w *Writer) error {
			w.WriteFloat32("a", make([]float32, 64))
			w.WriteFloat32("b", make([]float32, 3))
			return w.WriteFloat32("c", nil)
		}, false, `tensor "c": all 2 declared tensors already written`},
		{"missing tensor", func(w *Writer) error { return w.WriteFloat32("a", make([]float32, 64)) }, true, `closed after 1 of 2 tensors, tensor "b" not written`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "x.gguf")
			w, err := Create(path, nil, infos)
			if err != nil {
				t.Fatal(err)
			}
			errWrite := tt.run(w)
			errClose := w.Close()
			if errClose == nil {
				t.Fatal("Close succeeded after a failed write")
			}
			if tt.atClose != (errWrite == nil) {
				t.Fatalf("write error %v, close error %v", errWrite, errClose)
			}
			err = errWrite
			if tt.atClose {
				err = errClose
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %v, want one naming %s and containing %q", err, path, tt.want)
			}
			assertEmptyDir(t, dir)
		})
	}
	t.Run("abort", func(t *testing.T) {
		dir := t.TempDir()
		w, err := Create(filepath.Join(dir, "x.gguf"), nil, infos)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteFloat32("a", make([]float32, 64)); err != nil {
			t.Fatal(err)
		}
		w.Abort()
		if err := w.Close(); err == nil {
			t.Error("Close after Abort succeeded")
		}
		assertEmptyDir(t, dir)
	})
}

// smallKVsTensors is the content of testdata/small.gguf: the metadata of
// every value type and one tensor of each type this package converts,
// with fixed pseudo-random values, so that any change to the encoding or
// to the quantizers shows up as a diff.
func smallKVsTensors() ([]KV, []TensorInfo, [][]float32) {
	x := gaussian(6, 512, 0.5)
	infos := []TensorInfo{
		{Name: "w.f32", Shape: []int{2, 3}, Type: TypeF32},
		{Name: "w.f16", Shape: []int{5}, Type: TypeF16},
		{Name: "w.bf16", Shape: []int{5}, Type: TypeBF16},
		{Name: "w.q8_0", Shape: []int{2, 32}, Type: TypeQ8_0},
		{Name: "w.q4_k", Shape: []int{1, 256}, Type: TypeQ4_K},
	}
	vals := [][]float32{x[:6], x[6:11], x[11:16], x[16:80], x[80:336]}
	return allValueKVs(), infos, vals
}

func writeSmall(t *testing.T, path string) {
	t.Helper()
	kvs, infos, vals := smallKVsTensors()
	w, err := Create(path, kvs, infos)
	if err != nil {
		t.Fatal(err)
	}
	for i, info := range infos {
		if err := w.WriteFloat32(info.Name, vals[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestGolden pins the writer's output byte for byte (regenerate with
// go test -run TestGolden -update and review the diff).
func TestGolden(t *testing.T) {
	golden := filepath.Join("testdata", "small.gguf")
	if *update {
		writeSmall(t, golden)
	}
	path := filepath.Join(t.TempDir(), "small.gguf")
	writeSmall(t, path)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: written bytes differ from the golden file (%d vs %d bytes)", golden, len(got), len(want))
	}
}
