package pytorch

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/safetensors"
)

// TestForbiddenGlobals opens pickles that would run code under Python:
// each is refused naming the global, and the command never runs (the
// marker file the real fixtures would touch stays absent).
func TestForbiddenGlobals(t *testing.T) {
	evalP4 := (&pickler{}).ops(opProto, 4, opFrame, 30, 0, 0, 0, 0, 0, 0, 0)
	evalP4.ops(opShortBinUnicod, 8).ops([]byte("builtins")...).ops(opMemoize)
	evalP4.ops(opShortBinUnicod, 4).ops([]byte("eval")...).ops(opMemoize, opStackGlobal, opMemoize)
	evalP4.str("__import__('os').system('touch MARKER')").ops(opTuple1, opReduce, opStop)

	popen := (&pickler{}).ops(opProto, 2).global("subprocess", "Popen")
	popen.str("touch").str("MARKER").ops(opTuple2, opTuple1, opReduce, opStop)

	// A forbidden global after a valid tensor is still refused.
	late := stateDict(fakeTensor{name: "w", storage: "FloatStorage", key: "0", numel: 2, shape: []int64{2}, stride: []int64{1}})
	late = late[:len(late)-2] // drop SETITEMS, STOP
	late = append(late, (&pickler{}).str("x").global("posix", "system").str("touch MARKER").ops(opTuple1, opReduce, opSetItems, opStop).b...)

	qtensor := (&pickler{}).ops(opProto, 2).global("torch._utils", "_rebuild_qtensor").ops(opEmptyTuple, opReduce, opStop)
	notStorage := (&pickler{}).ops(opProto, 2).global("torch", "load").ops(opStop)

	tests := []struct {
		name   string
		path   string // a fixture written by make_fixtures.py, or
		pkl    []byte // a hand-made data.pkl
		global string
	}{
		{"fixture-os.system", "testdata/malicious_os.bin", nil, "os.system"},
		{"fixture-reduce", "testdata/malicious_reduce.bin", nil, "posix.system"},
		{"builtins.eval-protocol4", "", evalP4.b, "builtins.eval"},
		{"subprocess.Popen", "", popen.b, "subprocess.Popen"},
		{"after-a-tensor", "", late, "posix.system"},
		{"torch-qtensor", "", qtensor.b, "torch._utils._rebuild_qtensor"},
		{"torch.load", "", notStorage.b, "torch.load"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if path == "" {
				path = writeTemp(t, "evil.bin", torchZip(t, tt.pkl, map[string][]byte{"0": make([]byte, 8)}))
			} else if abs, err := filepath.Abs(path); err == nil {
				path = abs
			}
			work := t.TempDir()
			t.Chdir(work)
			f, err := Open(path)
			if err == nil {
				f.Close()
				t.Fatal("Open succeeded, want a refused global")
			}
			if !errors.Is(err, ErrForbiddenGlobal) {
				t.Errorf("error %v does not wrap ErrForbiddenGlobal", err)
			}
			for _, w := range []string{path, "global " + tt.global + ":"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if _, err := os.Stat(filepath.Join(work, "MARKER")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("MARKER exists in the working directory (stat: %v)", err)
			}
		})
	}
}

// TestOpenErrors breaks files in the ways a download, a tool or an attacker
// might: each is a clear error naming the file (and the tensor where there
// is one), not a panic.
func TestOpenErrors(t *testing.T) {
	views := "testdata/views.bin"
	viewsBytes := readFile(t, views)
	f32 := func(name, key string, numel, offset int64, shape, stride []int64) fakeTensor {
		return fakeTensor{name: name, storage: "FloatStorage", key: key, numel: numel, offset: offset, shape: shape, stride: stride}
	}
	one := func(ft fakeTensor, storage []byte) []byte {
		return torchZip(t, stateDict(ft), map[string][]byte{ft.key: storage})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	editPickle := func(edit func([]byte) []byte) []byte {
		return rezip(t, views, func(e zipEntry) *zipEntry {
			if strings.HasSuffix(e.name, "/data.pkl") {
				e.data = edit(e.data)
			}
			return &e
		})
	}
	raw := func(hdr zip.FileHeader, data []byte) []byte {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		w, err := zw.CreateHeader(&zip.FileHeader{Name: "archive/data.pkl"})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(stateDict(f32("w", "0", 2, 0, []int64{2}, []int64{1})))
		rw, err := zw.CreateRaw(&hdr)
		if err != nil {
			t.Fatal(err)
		}
		rw.Write(data)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	scalarPickle := func(ops ...byte) []byte {
		return torchZip(t, append(append([]byte{opProto, 2}, ops...), opStop), nil)
	}

	tests := []struct {
		name string
		data []byte
		want []string // substrings of the error besides the file path
		is   error
	}{
		{"empty-file", nil, []string{"not a PyTorch zip checkpoint"}, nil},
		{"random-bytes", random, []string{"not a PyTorch zip checkpoint"}, nil},
		{"truncated-zip", viewsBytes[:len(viewsBytes)/2], []string{"not a PyTorch zip checkpoint", fmt.Sprintf("a zip file cut short at %d bytes", len(viewsBytes)/2)}, nil},
		{"truncated-zip-tail", viewsBytes[:len(viewsBytes)-10], []string{"not a PyTorch zip checkpoint", "cut short", "did not finish"}, nil},
		{"legacy", readFile(t, "testdata/legacy.bin"), []string{"legacy PyTorch format (before 1.6)", "re-save it with torch >= 1.6"}, ErrLegacyFormat},
		{"no-data.pkl", makeZip(t, []zipEntry{{name: "archive/version", data: []byte("3")}}), []string{"no <archive>/data.pkl"}, nil},
		{"two-data.pkl", makeZip(t, []zipEntry{{name: "a/data.pkl"}, {name: "b/data.pkl"}}), []string{"2 data.pkl entries"}, nil},
		{"duplicate-entry", rezip(t, views, func(e zipEntry) *zipEntry { return &e }, zipEntry{name: "views/data/0"}), []string{"views/data/0 appears twice"}, nil},
		{"big-endian", rezip(t, views, func(e zipEntry) *zipEntry { return &e }, zipEntry{name: "views/byteorder", data: []byte("big")}), []string{"views/byteorder", "big-endian"}, errors.ErrUnsupported},
		{"bad-byteorder", rezip(t, views, func(e zipEntry) *zipEntry { return &e }, zipEntry{name: "views/byteorder", data: []byte("middle")}), []string{`"middle"`}, nil},
		{"random-pickle", editPickle(func([]byte) []byte { return random }), []string{"views/data.pkl", "offset"}, nil},
		{"truncated-pickle", editPickle(func(b []byte) []byte { return b[:len(b)/2] }), []string{"views/data.pkl", "truncated"}, nil},
		{"pickle-without-stop", editPickle(func(b []byte) []byte { return b[:len(b)-1] }), []string{"views/data.pkl", "without STOP"}, nil},
		{"not-a-dict", scalarPickle(opEmptyList), []string{"holds a list, want a state dict"}, nil},
		{"value-not-tensor", scalarPickle((&pickler{}).ops(opEmptyDict).str("epoch").int(3).ops(opSetItem).b...), []string{`"epoch" is int 3, want a tensor`}, nil},
		{"key-not-str", scalarPickle((&pickler{}).ops(opEmptyDict).int(1).int(3).ops(opSetItem).b...), []string{"key 0 is int 1"}, nil},
		{"duplicate-name", torchZip(t, stateDict(f32("w", "0", 2, 0, []int64{2}, []int64{1}), f32("w", "0", 2, 0, []int64{2}, []int64{1})), map[string][]byte{"0": make([]byte, 8)}), []string{`tensor "w": listed twice`}, nil},
		{"storage-short", rezip(t, views, func(e zipEntry) *zipEntry {
			if e.name == "views/data/0" {
				e.data = e.data[:len(e.data)-4]
			}
			return &e
		}), []string{`tensor "base"`, `storage "0"`, "24 elements of F32 need 96 bytes", "holds 92"}, nil},
		{"view-beyond-storage", one(f32("w", "0", 4, 0, []int64{2, 3}, []int64{3, 1}), make([]byte, 16)), []string{`tensor "w"`, "reaches element 5", "holds 4"}, nil},
		{"offset-beyond-storage", one(f32("w", "0", 4, 4, []int64{1}, []int64{1}), make([]byte, 16)), []string{`tensor "w"`, "offset 4", "reaches element 4"}, nil},
		{"empty-offset-beyond", one(f32("w", "0", 4, 5, []int64{0}, []int64{1}), make([]byte, 16)), []string{`tensor "w"`, "storage offset 5 beyond"}, nil},
		{"transposed-beyond", one(f32("w", "0", 6, 0, []int64{3, 2}, []int64{1, 4}), make([]byte, 24)), []string{`tensor "w"`, "reaches element 6"}, nil},
		{"huge-numel", one(f32("w", "0", 1<<60, 0, []int64{2}, []int64{1}), make([]byte, 8)), []string{`tensor "w"`, "1152921504606846976 elements of F32"}, nil},
		{"huge-shape", one(f32("w", "0", 2, 0, []int64{1 << 40, 1 << 40}, []int64{0, 0}), make([]byte, 8)), []string{`tensor "w"`, "overflows"}, nil},
		{"huge-broadcast", one(f32("w", "0", 1, 0, []int64{1 << 20, 1 << 10}, []int64{0, 0}), make([]byte, 4)), []string{`tensor "w"`, "expands storage"}, nil},
		{"negative-stride", one(f32("w", "0", 4, 3, []int64{4}, []int64{-1}), make([]byte, 16)), []string{`tensor "w"`, "shape [4] stride [-1], want sizes and strides >= 0"}, nil},
		{"negative-offset", one(f32("w", "0", 4, -1, []int64{4}, []int64{1}), make([]byte, 16)), []string{`tensor "w"`, "storage offset -1, want >= 0"}, nil},
		{"stride-count", one(f32("w", "0", 4, 0, []int64{2, 2}, []int64{1}), make([]byte, 16)), []string{"1 strides for 2 dims"}, nil},
		{"unknown-storage", one(fakeTensor{name: "w", storage: "ComplexDoubleStorage", key: "0", numel: 1, shape: []int64{1}, stride: []int64{1}}, make([]byte, 16)), []string{`tensor "w"`, "storage type torch.ComplexDoubleStorage"}, safetensors.ErrUnsupportedDType},
		{"unknown-storage-fixture", editPickle(func(b []byte) []byte {
			return bytes.ReplaceAll(b, []byte("torch\nHalfStorage\n"), []byte("torch\nQInt8Storage\n"))
		}), []string{`tensor "half_t"`, "torch.QInt8Storage"}, safetensors.ErrUnsupportedDType},
		{"storage-entry-missing", rezip(t, views, func(e zipEntry) *zipEntry {
			if e.name == "views/data/0" {
				return nil
			}
			return &e
		}), []string{`tensor "base"`, "no entry views/data/0"}, nil},
		{"bad-persistent-id", scalarPickle((&pickler{}).ops(opMark).str("module").ops(opTuple, opBinPersID).b...), []string{"persistent id is tuple"}, nil},
		{"deflate-bomb-claim", raw(zip.FileHeader{Name: "archive/data/0", Method: zip.Deflate, CompressedSize64: 4, UncompressedSize64: 1 << 40}, []byte{3, 0, 0, 0}), []string{`tensor "w"`, "cannot inflate to the claimed 1099511627776"}, nil},
		{"stored-size-mismatch", raw(zip.FileHeader{Name: "archive/data/0", Method: zip.Store, CompressedSize64: 8, UncompressedSize64: 16}, make([]byte, 8)), []string{`tensor "w"`, "stored with sizes 8 and 16"}, nil},
		{"unknown-method", raw(zip.FileHeader{Name: "archive/data/0", Method: 99, CompressedSize64: 8, UncompressedSize64: 8}, make([]byte, 8)), []string{`tensor "w"`, "compression method 99"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeTemp(t, "pytorch_model.bin", tt.data)
			f, err := Open(path)
			if err == nil {
				f.Close()
				t.Fatal("Open succeeded, want an error")
			}
			for _, w := range append([]string{path + ": "}, tt.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
		})
	}
}

// TestTensorErrors covers failures found only when data are read.
func TestTensorErrors(t *testing.T) {
	f, err := Open("testdata/dtypes.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = f.Tensor("nope")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), `testdata/dtypes.bin: tensor "nope": not in the checkpoint`) || strings.Contains(err.Error(), "file does not exist") {
		t.Errorf("missing tensor: error %v, want fs.ErrNotExist naming file and tensor", err)
	}

	// A deflated entry that inflates to fewer bytes than its header says.
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.CreateHeader(&zip.FileHeader{Name: "archive/data.pkl"})
	w.Write(stateDict(fakeTensor{name: "w", storage: "FloatStorage", key: "0", numel: 4, shape: []int64{4}, stride: []int64{1}}))
	var deflated bytes.Buffer
	dw := zip.NewWriter(&deflated)
	ew, _ := dw.CreateHeader(&zip.FileHeader{Name: "x", Method: zip.Deflate})
	ew.Write(make([]byte, 8))
	dw.Close()
	zr, err := zip.NewReader(bytes.NewReader(deflated.Bytes()), int64(deflated.Len()))
	if err != nil {
		t.Fatal(err)
	}
	comp, err := zr.File[0].OpenRaw()
	if err != nil {
		t.Fatal(err)
	}
	compBytes := make([]byte, zr.File[0].CompressedSize64)
	if _, err := comp.Read(compBytes); err != nil {
		t.Fatal(err)
	}
	rw, _ := zw.CreateRaw(&zip.FileHeader{Name: "archive/data/0", Method: zip.Deflate, CompressedSize64: uint64(len(compBytes)), UncompressedSize64: 16, CRC32: zr.File[0].CRC32})
	rw.Write(compBytes)
	zw.Close()
	path := writeTemp(t, "short.bin", buf.Bytes())
	g, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	_, err = g.Tensor("w")
	if err == nil || !strings.Contains(err.Error(), path+`: tensor "w": reading archive/data/0`) {
		t.Errorf("short deflated storage: error %v, want one naming file, tensor and entry", err)
	}
}

// TestPickleMachine runs hand-written pickles through the machine.
func TestPickleMachine(t *testing.T) {
	long := func(b ...byte) []byte { return append([]byte{opLong1, byte(len(b))}, b...) }
	float := binary.BigEndian.AppendUint64([]byte{opBinFloat}, 0x3ff8000000000000)
	tests := []struct {
		name string
		pkl  []byte
		want string // describe() of the result, or the error text
		err  bool
	}{
		{"bin-int", []byte{opBinInt, 0xfe, 0xff, 0xff, 0xff, opStop}, "int -2", false},
		{"bin-int2", []byte{opBinInt2, 0xff, 0xff, opStop}, "int 65535", false},
		{"long1-empty", append(long(), opStop), "int 0", false},
		{"long1-negative", append(long(0x00, 0xff), opStop), "int -256", false},
		{"long1-2^62", append(long(0, 0, 0, 0, 0, 0, 0, 0x40), opStop), "int 4611686018427387904", false},
		{"long1-9-bytes", append(long(1, 0, 0, 0, 0, 0, 0, 0, 0), opStop), "int 1", false},
		{"long1-2^63", append(long(0, 0, 0, 0, 0, 0, 0, 0x80, 0), opStop), "overflows int64", true},
		{"long1-min", append(long(0, 0, 0, 0, 0, 0, 0, 0x80), opStop), "int -9223372036854775808", false},
		{"long4", []byte{opLong4, 2, 0, 0, 0, 0x01, 0x01, opStop}, "int 257", false},
		{"float", append(float, opStop), "float", false},
		{"bools-tuple", []byte{opNewTrue, opNewFalse, opNone, opTuple3, opStop}, "tuple", false},
		{"short-unicode", []byte{opShortBinUnicod, 2, 'h', 'i', opStop}, `str "hi"`, false},
		{"unicode8", []byte{opBinUnicode8, 1, 0, 0, 0, 0, 0, 0, 0, 'x', opStop}, `str "x"`, false},
		{"bad-utf8", []byte{opShortBinUnicod, 1, 0xff, opStop}, "not valid UTF-8", true},
		{"bytes", []byte{opShortBinBytes, 1, 0xff, opStop}, "bytes", false},
		{"memo", []byte{opShortBinUnicod, 1, 'a', opMemoize, opPop, opBinGet, 0, opStop}, `str "a"`, false},
		{"long-memo", []byte{opShortBinUnicod, 1, 'a', opLongBinPut, 9, 9, 9, 9, opPop, opLongBinGet, 9, 9, 9, 9, opStop}, `str "a"`, false},
		{"memo-unset", []byte{opBinGet, 3, opStop}, "memo key 3 not set", true},
		{"list-appends", []byte{opEmptyList, opMark, opNone, opNone, opAppends, opNone, opAppend, opStop}, "list", false},
		{"dict-dup-pop-mark", []byte{opMark, opNone, opNone, opDict, opDup, opPop, opMark, opNone, opPopMark, opStop}, "dict", false},
		{"frame", []byte{opProto, 4, opFrame, 2, 0, 0, 0, 0, 0, 0, 0, opNone, opStop}, "None", false},
		{"frame-too-long", []byte{opProto, 4, opFrame, 0xff, 0, 0, 0, 0, 0, 0, 0, opNone, opStop}, "frame of 255 bytes", true},
		{"protocol-6", []byte{opProto, 6, opNone, opStop}, "protocol 6", true},
		{"inst", []byte{'i', 'o', 's', '\n', 's', 'y', 's', 't', 'e', 'm', '\n', opStop}, "not a state dict opcode", true},
		{"newobj", []byte{opNone, opNone, 0x81, opStop}, "0x81", true},
		{"underflow", []byte{opTuple2, opStop}, "stack underflow", true},
		{"pop-below-mark", []byte{opNone, opMark, opPop, opStop}, "stack underflow", true},
		{"no-mark", []byte{opTuple, opStop}, "no MARK", true},
		{"two-values", []byte{opNone, opNone, opStop}, "2 values", true},
		{"mark-left", []byte{opNone, opMark, opStop}, "1 marks", true},
		{"append-to-int", []byte{opBinInt1, 1, opNone, opAppend, opStop}, "append to int", true},
		{"setitem-odd", []byte{opEmptyDict, opMark, opNone, opSetItems, opStop}, "1 values for dict items", true},
		{"reduce-non-global", []byte{opNone, opEmptyTuple, opReduce, opStop}, "call of None", true},
		{"reduce-storage-type", append((&pickler{}).global("torch", "FloatStorage").b, opEmptyTuple, opReduce, opStop), "not callable", true},
		{"ordered-dict-args", append((&pickler{}).global("collections", "OrderedDict").b, opNone, opTuple1, opReduce, opStop), "1 arguments", true},
		{"parameter-of-int", append((&pickler{}).global("torch._utils", "_rebuild_parameter").b, opNone, opNone, opNone, opTuple3, opReduce, opStop), "_rebuild_parameter of None", true},
		{"build-on-list", []byte{opEmptyList, opNone, opBuild, opStop}, "BUILD of list", true},
		{"stack-global-int", []byte{opNone, opNone, opStackGlobal, opStop}, "want strings", true},
		{"global-no-newline", []byte{opGlobal, 'o', 's'}, "truncated", true},
		{"global-control-chars", []byte{opGlobal, 'o', 0x1b, '\n', 'x', '\n', opStop}, `"o\x1b.x"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := unpickle(tt.pkl)
			if tt.err {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %v, want one containing %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(v); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// TestGather compares the strided copy with per-element indexing on views
// of many shapes and strides.
func TestGather(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 500 {
		nd := rng.IntN(5)
		shape := make([]int64, nd)
		stride := make([]int64, nd)
		numel, last := int64(1), int64(0)
		for d := range nd {
			shape[d] = 1 + rng.Int64N(4)
			stride[d] = rng.Int64N(7)
			numel *= shape[d]
			last += (shape[d] - 1) * stride[d]
		}
		es := []int64{1, 2, 4, 8}[rng.IntN(4)]
		src := make([]byte, (last+1)*es)
		for j := range src {
			src[j] = byte(rng.Uint32())
		}
		want := make([]byte, 0, numel*es)
		idx := make([]int64, nd)
		for range numel {
			at := int64(0)
			for d := range nd {
				at += idx[d] * stride[d]
			}
			want = append(want, src[at*es:(at+1)*es]...)
			for d := nd - 1; d >= 0; d-- {
				if idx[d]++; idx[d] < shape[d] {
					break
				}
				idx[d] = 0
			}
		}
		got := make([]byte, numel*es)
		gather(got, src, es, shape, stride)
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d: shape %v stride %v es %d: got % x, want % x", i, shape, stride, es, got, want)
		}
	}
}
