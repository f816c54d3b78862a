package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The values below are those testdata/gen.py packs with Python's struct.
func TestOpenTiny(t *testing.T) {
	f, err := Open("testdata/tiny.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wantNames := []string{"scalar", "a.f32", "b.f16", "c.bf16", "d.i32", "e.i8", "empty", "f.u8", "g.fp8"}
	if got := f.Names(); !slices.Equal(got, wantNames) {
		t.Errorf("Names() = %v, want %v (data-offset order)", got, wantNames)
	}
	if got := f.Metadata(); len(got) != 2 || got["format"] != "pt" || got["note"] != "hand-made" {
		t.Errorf("Metadata() = %v", got)
	}
	floats := []struct {
		name  string
		dtype DType
		shape []int
		want  []float32
	}{
		{"scalar", F32, []int{}, []float32{42}},
		{"a.f32", F32, []int{2, 3}, []float32{1, -2, 0.5, 3.25, float32(math.Copysign(0, -1)), 1e-3}},
		{"b.f16", F16, []int{4}, []float32{1, -2, 0.0999755859375, 65504}},
		{"c.bf16", BF16, []int{2}, []float32{1, -3.140625}},
		{"empty", F32, []int{0, 4}, []float32{}},
	}
	for _, tt := range floats {
		t.Run(tt.name, func(t *testing.T) {
			x, ok := f.Tensor(tt.name)
			if !ok {
				t.Fatalf("Tensor(%q) missing", tt.name)
			}
			if x.DType != tt.dtype || !slices.Equal(x.Shape, tt.shape) || x.File != "testdata/tiny.safetensors" {
				t.Errorf("got %s %v in %q, want %s %v", x.DType, x.Shape, x.File, tt.dtype, tt.shape)
			}
			got, err := x.Float32()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Float32() = %v, want %v", got, tt.want)
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(tt.want[i]) {
					t.Errorf("Float32()[%d] = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
	d, _ := f.Tensor("d.i32")
	if got, err := d.Int32(); err != nil || !slices.Equal(got, []int32{1, -1, math.MaxInt32}) {
		t.Errorf("d.i32 Int32() = %v, %v", got, err)
	}
	e, _ := f.Tensor("e.i8")
	if e.DType != I8 || string(e.Data) != "\x80\x7f" {
		t.Errorf("e.i8 = %s % x, want I8 80 7f", e.DType, e.Data)
	}
	u, _ := f.Tensor("f.u8")
	if u.DType != U8 || string(u.Data) != "\x00\x01\xfe\xff" || u.NumElements() != 4 {
		t.Errorf("f.u8 = %s % x", u.DType, u.Data)
	}
	if cap(u.Data) != len(u.Data) {
		t.Errorf("f.u8 view has cap %d > len %d: appends would overwrite the next tensor", cap(u.Data), len(u.Data))
	}
	fp8, ok := f.Tensor("g.fp8")
	if !ok || fp8.DType != "F8_E4M3" || string(fp8.Data) != "\x38\xb8\x00" {
		t.Errorf("g.fp8 = %v % x, want the raw bytes 38 b8 00", fp8.TensorInfo, fp8.Data)
	}
	_, err = fp8.Float32()
	if !errors.Is(err, ErrUnsupportedDType) || !strings.Contains(err.Error(), "g.fp8") || !strings.Contains(err.Error(), "tiny.safetensors") {
		t.Errorf("fp8 Float32() error = %v, want ErrUnsupportedDType naming file and tensor", err)
	}
	if _, err := e.Int32(); !errors.Is(err, ErrUnsupportedDType) {
		t.Errorf("I8 Int32() error = %v, want ErrUnsupportedDType", err)
	}
	if _, ok := f.Tensor("nope"); ok {
		t.Error(`Tensor("nope") found`)
	}
	if got := f.DataBytes(); got != 4+24+8+4+12+2+0+4+3 {
		t.Errorf("DataBytes() = %d", got)
	}
}

func TestDTypeSize(t *testing.T) {
	tests := []struct {
		d         DType
		size      int
		supported bool
	}{
		{F32, 4, true}, {F16, 2, true}, {BF16, 2, true}, {I32, 4, true}, {I8, 1, true}, {U8, 1, true},
		{"F64", 8, false}, {"I64", 8, false}, {"BOOL", 1, false}, {"F8_E4M3", 1, false}, {"F8_E5M2", 1, false},
		{"C64", 8, false}, {"F4", 0, false}, {"F6_E2M3", 0, false}, {"XYZ", 0, false}, {"f32", 0, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.d), func(t *testing.T) {
			if got := tt.d.Size(); got != tt.size {
				t.Errorf("Size() = %d, want %d", got, tt.size)
			}
			if got := tt.d.Supported(); got != tt.supported {
				t.Errorf("Supported() = %v, want %v", got, tt.supported)
			}
		})
	}
}

// TestParseFloatDType: the float dtypes by the names users bring from
// PyTorch, transformers and llama.cpp, in any case, with the torch name
// configs give them; other names are not float dtypes.
func TestParseFloatDType(t *testing.T) {
	for _, tt := range []struct {
		name  string
		want  DType
		torch string
	}{
		{"f32", F32, "float32"}, {"FP32", F32, "float32"}, {"float32", F32, "float32"}, {"float", F32, "float32"}, {" F32 ", F32, "float32"},
		{"f16", F16, "float16"}, {"fp16", F16, "float16"}, {"Float16", F16, "float16"}, {"half", F16, "float16"},
		{"bf16", BF16, "bfloat16"}, {"BFloat16", BF16, "bfloat16"},
		{"auto", "", ""}, {"fp8", "", ""}, {"i32", "", ""}, {"", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseFloatDType(tt.name)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("ParseFloatDType(%q) = %q, %v, want %q", tt.name, got, ok, tt.want)
			}
			if got := got.TorchName(); got != tt.torch {
				t.Errorf("TorchName() = %q, want %q", got, tt.torch)
			}
		})
	}
}

func TestOpenDirSharded(t *testing.T) {
	s, err := OpenDir("testdata/sharded")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := s.Names(), []string{"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	if got := s.Files(); len(got) != 2 || filepath.Base(got[0]) != "model-00001-of-00002.safetensors" {
		t.Errorf("Files() = %v", got)
	}
	if got := s.TotalBytes(); got != 12+4+12 {
		t.Errorf("TotalBytes() = %d, want 28", got)
	}
	lm, err := s.Tensor("lm_head.weight")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := lm.Float32(); !slices.Equal(got, []float32{1, 2, 3, 4, 5, 6}) || filepath.Base(lm.File) != "model-00002-of-00002.safetensors" {
		t.Errorf("lm_head.weight = %v from %s", got, lm.File)
	}
	if !s.Has("model.norm.weight") || s.Has("model.layers.0.mlp.up_proj.weight") {
		t.Error("Has() wrong")
	}
	if s.Metadata()["format"] != "pt" {
		t.Errorf("Metadata() = %v", s.Metadata())
	}
}

// rawFile builds a safetensors image from a header JSON (padded here) and
// data bytes, so corrupt headers can be written by hand.
func rawFile(js string, data []byte) []byte {
	for len(js)%8 != 0 {
		js += " "
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(js)))
	return append(append(b, js...), data...)
}

func TestCorruptInputs(t *testing.T) {
	good, err := os.ReadFile("testdata/tiny.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	hugeLen := binary.LittleEndian.AppendUint64(nil, 1<<60)
	tests := []struct {
		name string
		file []byte
		want string // substring of the error
	}{
		{"empty file", nil, "too short"},
		{"seven bytes", []byte{1, 2, 3, 4, 5, 6, 7}, "too short"},
		{"header length 2^60", append(hugeLen, `{}`...), "exceeds the 104857600-byte limit"},
		{"header length past end", append(binary.LittleEndian.AppendUint64(nil, 64), `{}      `...), "truncated"},
		{"truncated data", good[:len(good)-1], `tensor "g.fp8": data_offsets [58 61] end past the 60-byte data section (a truncated file?)`},
		{"bytes after the last tensor", append(slices.Clone(good), 0, 0, 0, 0), "4 bytes after the tensors' end at 61 of the 65-byte data section"},
		{"data and no tensor", rawFile(`{}`, make([]byte, 8)), "8 bytes after the tensors' end at 0"},
		{"gap between tensors", rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}}`, make([]byte, 8)), `tensor "b": data_offsets [6 8] leave 4 unused bytes after tensor "a" at [0 2]`},
		{"gap at the start", rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}`, make([]byte, 4)), `tensor "a": data_offsets [2 4] leave the data section's first 2 bytes unused`},
		{"empty tensor inside another", rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"z":{"dtype":"F32","shape":[0],"data_offsets":[2,2]}}`, make([]byte, 4)), `tensor "z": data_offsets [2 2] overlap tensor "a"`},
		{"header not UTF-8", rawFile("{\"a\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", make([]byte, 1)), "not valid UTF-8"},
		{"truncated header", good[:100], "truncated"},
		{"zero header length", binary.LittleEndian.AppendUint64(nil, 0), "not a JSON object"},
		{"bad json", rawFile(`{"a":{"dtype":"F32",`, nil), "header JSON"},
		{"bad json after an entry", rawFile(`{"a":1,,}`, nil), "header JSON is not valid: at byte 8 "},
		{"not an object", rawFile(`[1,2]`, nil), "not a JSON object"},
		{"string header", rawFile(`"x"`, nil), "not a JSON object"},
		{"trailing garbage", rawFile(`{} x`, nil), "trailing data"},
		{"two objects", rawFile(`{}{}`, nil), "trailing data"},
		{"entry not object", rawFile(`{"a":3}`, nil), `tensor "a"`},
		{"missing dtype", rawFile(`{"a":{"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), `tensor "a": missing "dtype"`},
		{"missing shape", rawFile(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, make([]byte, 4)), `missing "shape"`},
		{"missing offsets", rawFile(`{"a":{"dtype":"F32","shape":[1]}}`, make([]byte, 4)), `missing "data_offsets"`},
		{"three offsets", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, make([]byte, 8)), "want [begin end]"},
		{"negative shape", rawFile(`{"a":{"dtype":"F32","shape":[-1,-4],"data_offsets":[0,16]}}`, make([]byte, 16)), "negative dimension"},
		{"overflowing shape", rawFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, nil), "overflows"},
		{"overflowing bytes", rawFile(`{"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}}`, nil), "overflow"},
		{"huge shape number", rawFile(`{"a":{"dtype":"F32","shape":[1e30],"data_offsets":[0,4]}}`, make([]byte, 4)), `tensor "a"`},
		{"fractional shape", rawFile(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, make([]byte, 4)), `tensor "a"`},
		{"size mismatch", rawFile(`{"x":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}`, make([]byte, 16)), `tensor "x": data_offsets [0 12] hold 12 bytes, shape [2 2] F32 needs 16`},
		{"offsets past end", rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}`, make([]byte, 4)), "end past the 4-byte data section"},
		{"offsets reversed", rawFile(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}`, make([]byte, 4)), "want 0 <= begin <= end"},
		{"negative offset", rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[-2,0]}}`, make([]byte, 4)), "want 0 <= begin <= end"},
		{"offset beyond int64", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551616]}}`, make([]byte, 4)), `tensor "a"`},
		{"overlap", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)), `tensor "b": data_offsets [4 12] overlap tensor "a" at [0 8]`},
		{"same offsets", rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}}`, make([]byte, 4)), "overlap"},
		{"duplicate tensor", rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, make([]byte, 4)), `duplicate key "a"`},
		{"unknown dtype", rawFile(`{"a":{"dtype":"Q7","shape":[4],"data_offsets":[0,4]}}`, make([]byte, 4)), `tensor "a": dtype "Q7": unsupported dtype`},
		{"dtype not string", rawFile(`{"a":{"dtype":7,"shape":[4],"data_offsets":[0,4]}}`, make([]byte, 4)), `tensor "a"`},
		{"metadata not strings", rawFile(`{"__metadata__":{"format":1}}`, nil), "__metadata__ must map strings to strings"},
		{"metadata array", rawFile(`{"__metadata__":[]}`, nil), "__metadata__"},
		{"F4 odd count", rawFile(`{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}`, make([]byte, 2)), "whole bytes"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".safetensors")
			if err := os.WriteFile(path, tt.file, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err == nil {
				f.Close()
				t.Fatalf("Open succeeded, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q, want it to name %s and contain %q", err, path, tt.want)
			}
		})
	}
	t.Run("unknown dtype is ErrUnsupportedDType", func(t *testing.T) {
		_, err := parseHeader("x", rawFile(`{"a":{"dtype":"Q7","shape":[4],"data_offsets":[0,4]}}`, make([]byte, 4)))
		if !errors.Is(err, ErrUnsupportedDType) {
			t.Errorf("error %v, want errors.Is ErrUnsupportedDType", err)
		}
	})
}

func TestValidEdgeCases(t *testing.T) {
	tests := []struct {
		name  string
		file  []byte
		names []string
	}{
		{"empty header", rawFile(`{}`, nil), nil},
		{"empty tensors between tensors", rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"e":{"dtype":"F32","shape":[3,0],"data_offsets":[4,4]},"b":{"dtype":"U8","shape":[1],"data_offsets":[4,5]}}`, make([]byte, 5)), []string{"z", "a", "e", "b"}},
		{"an empty tensor last", rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}`, make([]byte, 4)), []string{"a", "e"}},
		{"unknown entry fields", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":true}}`, make([]byte, 1)), []string{"a"}},
		{"F4 packed", rawFile(`{"a":{"dtype":"F4","shape":[4],"data_offsets":[0,2]}}`, make([]byte, 2)), []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseHeader("x", tt.file)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range h.entries {
				got = append(got, e.Name)
			}
			if !slices.Equal(got, tt.names) {
				t.Errorf("names %v, want %v", got, tt.names)
			}
		})
	}
	t.Run("zero-length file on disk", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "zero.safetensors")
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "too short") {
			t.Errorf("Open(zero-length) error = %v, want a too-short error", err)
		}
	})
}

func TestOpenDirErrors(t *testing.T) {
	write := func(t *testing.T, path string, tensors ...Tensor) {
		t.Helper()
		if err := WriteFile(path, tensors, nil); err != nil {
			t.Fatal(err)
		}
	}
	u8 := func(name string) Tensor {
		return Tensor{TensorInfo: TensorInfo{Name: name, DType: U8, Shape: []int{1}}, Data: []byte{7}}
	}
	t.Run("duplicate across files", func(t *testing.T) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "a.safetensors"), u8("x"), u8("y"))
		write(t, filepath.Join(dir, "b.safetensors"), u8("y"))
		_, err := OpenDir(dir)
		if err == nil || !strings.Contains(err.Error(), `tensor "y"`) {
			t.Errorf("error %v, want one naming tensor y", err)
		}
	})
	t.Run("several files without index", func(t *testing.T) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "a.safetensors"), u8("x"))
		write(t, filepath.Join(dir, "b.safetensors"), u8("y"))
		s, err := OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got := s.Names(); !slices.Equal(got, []string{"x", "y"}) || len(s.Files()) != 2 {
			t.Errorf("Names() = %v, Files() = %v", got, s.Files())
		}
	})
	t.Run("single odd name", func(t *testing.T) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "adapter.safetensors"), u8("x"))
		s, err := OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if !s.Has("x") {
			t.Error("missing x")
		}
	})
	t.Run("empty dir", func(t *testing.T) {
		_, err := OpenDir(t.TempDir())
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("error %v, want ErrNotExist", err)
		}
	})
	t.Run("index names missing tensor", func(t *testing.T) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "model-00001-of-00001.safetensors"), u8("x"))
		idx := `{"metadata":{},"weight_map":{"x":"model-00001-of-00001.safetensors","ghost":"model-00001-of-00001.safetensors"}}`
		os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte(idx), 0o644)
		_, err := OpenDir(dir)
		if err == nil || !strings.Contains(err.Error(), `tensor "ghost"`) {
			t.Errorf("error %v, want one naming tensor ghost", err)
		}
	})
	t.Run("index names missing shard", func(t *testing.T) {
		dir := t.TempDir()
		idx := `{"weight_map":{"x":"model-00001-of-00002.safetensors"}}`
		os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte(idx), 0o644)
		_, err := OpenDir(dir)
		want := `model.safetensors.index.json names shard model-00001-of-00002.safetensors (for 1 tensors, "x" first), which does not exist`
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("error %v, want one containing %q wrapping ErrNotExist", err, want)
		}
	})
	t.Run("index names the wrong shard", func(t *testing.T) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "model-00001-of-00002.safetensors"), u8("w"), u8("x"))
		write(t, filepath.Join(dir, "model-00002-of-00002.safetensors"), u8("y"))
		idx := `{"weight_map":{"w":"model-00001-of-00002.safetensors","x":"model-00002-of-00002.safetensors","y":"model-00002-of-00002.safetensors"}}`
		os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte(idx), 0o644)
		_, err := OpenDir(dir)
		want := `model-00002-of-00002.safetensors: tensor "x": listed in model.safetensors.index.json but missing from the shard (it is in model-00001-of-00002.safetensors: the index names the wrong shard)`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want one containing %q", err, want)
		}
	})
	t.Run("index escapes dir", func(t *testing.T) {
		dir := t.TempDir()
		idx := `{"weight_map":{"x":"../evil.safetensors"}}`
		os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte(idx), 0o644)
		if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), "not a file name") {
			t.Errorf("error %v, want a not-a-file-name error", err)
		}
	})
	t.Run("bad index json", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte(`{"weight_map":`), 0o644)
		if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), "model.safetensors.index.json") {
			t.Errorf("error %v, want one naming the index", err)
		}
	})
	t.Run("missing dir", func(t *testing.T) {
		_, err := OpenDir(filepath.Join(t.TempDir(), "nope"))
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("error %v, want ErrNotExist", err)
		}
	})
}

func ExampleOpen() {
	f, err := Open("testdata/tiny.safetensors")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	x, _ := f.Tensor("a.f32")
	vals, err := x.Float32()
	fmt.Println(x.Name, x.DType, x.Shape, vals, err)
	fmt.Println(f.Metadata()["format"])
	// Output:
	// a.f32 F32 [2 3] [1 -2 0.5 3.25 -0 0.001] <nil>
	// pt
}

func TestAccessors(t *testing.T) {
	f, err := Open("testdata/tiny.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if f.Path() != "testdata/tiny.safetensors" {
		t.Errorf("Path() = %q", f.Path())
	}
	infos := f.Infos()
	if len(infos) != 9 || infos[1].Name != "a.f32" || !slices.Equal(infos[1].Shape, []int{2, 3}) || infos[1].ByteSize() != 24 {
		t.Errorf("Infos() = %v", infos)
	}
	infos[1].Shape[0] = 99 // a copy: must not change the file's view
	if x, _ := f.Tensor("a.f32"); x.Shape[0] != 2 {
		t.Error("Infos() aliases the header's shapes")
	}
	if !DType("F8_E5M2").Recognised() || DType("F7").Recognised() || !F16.Recognised() {
		t.Error("Recognised() wrong")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	s, err := OpenDir("testdata/sharded")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Dir() != "testdata/sharded" {
		t.Errorf("Dir() = %q", s.Dir())
	}
	if _, err := Open("testdata"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Open(dir) error = %v", err)
	}
}

func TestOpenDirTwoIndexes(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a.safetensors.index.json", "b.safetensors.index.json"} {
		os.WriteFile(filepath.Join(dir, n), []byte(`{"weight_map":{}}`), 0o644)
	}
	if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), "2 shard indexes") {
		t.Errorf("error %v, want a two-index error", err)
	}
}

// TestReleasePrefetch checks that dropping a tensor's pages and asking for
// them ahead leave its data readable and unchanged.
func TestReleasePrefetch(t *testing.T) {
	dir := t.TempDir()
	infos := []TensorInfo{{Name: "a", DType: F32, Shape: []int{4096}}, {Name: "b", DType: F32, Shape: []int{3}}}
	w, err := Create(dir, infos, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a := make([]byte, 4*4096)
	for i := range a {
		a[i] = byte(i * 7)
	}
	if err := w.Write("a", a); err != nil {
		t.Fatal(err)
	}
	if err := w.Write("b", make([]byte, 12)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Prefetch("a", "missing")
	s.Release("a", "b", "missing")
	got, err := s.Tensor("a")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Data) != string(a) {
		t.Errorf("data changed after Release")
	}
}
