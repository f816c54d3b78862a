package pytorch

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/safetensors"
)

// goldenTensor is one entry of testdata/golden.json, written by
// make_fixtures.py from torch: sha256 of t.contiguous() bytes.
type goldenTensor struct {
	DType  safetensors.DType `json:"dtype"`
	Shape  []int             `json:"shape"`
	Stride []int             `json:"stride"`
	Offset int               `json:"storage_offset"`
	SHA256 string            `json:"sha256"`
}

func readGolden(t *testing.T) map[string]map[string]goldenTensor {
	t.Helper()
	var g map[string]map[string]goldenTensor
	if err := json.Unmarshal(readFile(t, "testdata/golden.json"), &g); err != nil {
		t.Fatal(err)
	}
	if len(g) == 0 {
		t.Fatal("testdata/golden.json lists no files")
	}
	return g
}

// checkGolden compares every tensor of w with the golden entries.
func checkGolden(t *testing.T, w interface {
	Names() []string
	Infos() []safetensors.TensorInfo
	Tensor(string) (safetensors.Tensor, error)
}, want map[string]goldenTensor, wantFile func(name string) string) {
	t.Helper()
	if got, wantNames := w.Names(), slices.Sorted(maps.Keys(want)); !slices.Equal(got, wantNames) {
		t.Fatalf("Names() = %v, want %v", got, wantNames)
	}
	infos := w.Infos()
	for i, name := range w.Names() {
		g := want[name]
		x, err := w.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if x.Name != name || x.DType != g.DType || !slices.Equal(x.Shape, g.Shape) {
			t.Errorf("tensor %q: got %s %s %v, want %s %v", name, x.Name, x.DType, x.Shape, g.DType, g.Shape)
		}
		if inf := infos[i]; inf.Name != name || inf.DType != g.DType || !slices.Equal(inf.Shape, g.Shape) {
			t.Errorf("Infos()[%d] = %+v, want %s %s %v", i, inf, name, g.DType, g.Shape)
		}
		if len(x.Data) != x.ByteSize() {
			t.Errorf("tensor %q: %d data bytes, want %d", name, len(x.Data), x.ByteSize())
		}
		sum := sha256.Sum256(x.Data)
		if got := hex.EncodeToString(sum[:]); got != g.SHA256 {
			t.Errorf("tensor %q (stride %v offset %d): sha256 %s, want %s", name, g.Stride, g.Offset, got, g.SHA256)
		}
		if wantFile != nil && x.File != wantFile(name) {
			t.Errorf("tensor %q: File %q, want %q", name, x.File, wantFile(name))
		}
	}
}

// TestGolden reads every fixture tensor and compares its bytes with what
// torch gives for t.contiguous(): dtypes, views, tied weights, shards.
func TestGolden(t *testing.T) {
	for file, want := range readGolden(t) {
		t.Run(file, func(t *testing.T) {
			path := filepath.Join("testdata", file)
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Path() != path {
				t.Errorf("Path() = %q, want %q", f.Path(), path)
			}
			checkGolden(t, f, want, func(string) string { return path })
		})
	}
}

// TestGoldenDeflated recompresses every fixture's entries with deflate, as
// a zip tool might, so storages are read through the inflating path.
func TestGoldenDeflated(t *testing.T) {
	for file, want := range readGolden(t) {
		t.Run(file, func(t *testing.T) {
			b := rezip(t, filepath.Join("testdata", file), func(e zipEntry) *zipEntry {
				e.method = zip.Deflate
				return &e
			})
			f, err := newFile(file, bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range f.tensors {
				if e.dataOff != -1 {
					t.Fatalf("entry %s read as stored, want deflated", e.zf.Name)
				}
			}
			checkGolden(t, f, want, nil)
		})
	}
}

// TestTiedWeights checks that two names sharing one storage both read
// back whole: lm_head.weight is model.embed_tokens.weight in the fixture.
func TestTiedWeights(t *testing.T) {
	f, err := Open("testdata/tiny-llama/pytorch_model.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if a, b := f.tensors["lm_head.weight"].ref.storage.key, f.tensors["model.embed_tokens.weight"].ref.storage.key; a != b {
		t.Fatalf("storage keys %q and %q, want one shared storage", a, b)
	}
	head, err := f.Tensor("lm_head.weight")
	if err != nil {
		t.Fatal(err)
	}
	emb, err := f.Tensor("model.embed_tokens.weight")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(head.Data, emb.Data) || len(head.Data) != 32*16*2 {
		t.Fatalf("lm_head.weight (%d bytes) and model.embed_tokens.weight (%d bytes) differ, want the same 1024 bytes", len(head.Data), len(emb.Data))
	}
	head.Data[0] ^= 0xff
	if again, _ := f.Tensor("model.embed_tokens.weight"); !bytes.Equal(again.Data, emb.Data) {
		t.Fatal("writing one tensor's Data changed another read: Data must be owned by the caller")
	}
}

// TestViewValues checks views of arange(24).reshape(4, 6) element by
// element, independently of the golden hashes.
func TestViewValues(t *testing.T) {
	f, err := Open("testdata/views.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tests := []struct {
		name  string
		shape []int
		want  []float32
	}{
		{"transposed", []int{6, 4}, []float32{0, 6, 12, 18, 1, 7, 13, 19, 2, 8, 14, 20, 3, 9, 15, 21, 4, 10, 16, 22, 5, 11, 17, 23}},
		{"sliced", []int{2, 3}, []float32{8, 9, 10, 14, 15, 16}},
		{"row", []int{6}, []float32{12, 13, 14, 15, 16, 17}},
		{"strided", []int{4, 3}, []float32{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23}},
		{"element", []int{}, []float32{22}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, err := f.Tensor(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			got, err := x.Float32()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(x.Shape, tt.shape) || !slices.Equal(got, tt.want) {
				t.Errorf("got %v %v, want %v %v", x.Shape, got, tt.shape, tt.want)
			}
		})
	}
	x, err := f.Tensor("expanded")
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}
	if x.DType != "I64" || !bytes.Equal(x.Data, append(want, want...)) {
		t.Errorf("expanded: got %s % x, want I64 arange(3) twice", x.DType, x.Data)
	}
}

func TestOpenDir(t *testing.T) {
	golden := readGolden(t)
	single, sharded := "testdata/tiny-llama", "testdata/sharded"
	t.Run("single", func(t *testing.T) {
		s, err := OpenDir(single)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got := s.Files(); !slices.Equal(got, []string{filepath.Join(single, WeightsName)}) {
			t.Errorf("Files() = %v", got)
		}
		checkGolden(t, s, golden["tiny-llama/pytorch_model.bin"], func(string) string { return filepath.Join(single, WeightsName) })
	})
	t.Run("sharded", func(t *testing.T) {
		s, err := OpenDir(sharded)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if s.Dir() != sharded || len(s.Files()) != 2 {
			t.Errorf("Dir() = %q, Files() = %v, want %q and 2 shards", s.Dir(), s.Files(), sharded)
		}
		shardOf := map[string]string{}
		for _, shard := range []string{"pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"} {
			for name := range golden[filepath.Join("sharded", shard)] {
				shardOf[name] = filepath.Join(sharded, shard)
			}
		}
		// The shards hold the single file's model, split by layer.
		checkGolden(t, s, golden["tiny-llama/pytorch_model.bin"], func(n string) string { return shardOf[n] })
		_, err = s.Tensor("model.layers.9.mlp.up_proj.weight")
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), sharded) {
			t.Errorf("missing tensor: error %v, want fs.ErrNotExist naming %s", err, sharded)
		}
	})
	t.Run("other-index-name", func(t *testing.T) {
		dir := t.TempDir()
		for _, shard := range []string{"pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"} {
			copyTo(t, filepath.Join(sharded, shard), filepath.Join(dir, shard))
		}
		copyTo(t, filepath.Join(sharded, IndexName), filepath.Join(dir, "model.bin.index.json"))
		s, err := OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got := len(s.Names()); got != len(golden["tiny-llama/pytorch_model.bin"]) {
			t.Errorf("%d names, want %d", got, len(golden["tiny-llama/pytorch_model.bin"]))
		}
	})
	// AutoGPTQ (use_safetensors=False) names its one file after
	// quantize_config.json's model_file_base_name.
	t.Run("other-file-name", func(t *testing.T) {
		dir := t.TempDir()
		name := filepath.Join(dir, "gptq_model-4bit-128g.bin")
		copyTo(t, filepath.Join(single, WeightsName), name)
		s, err := OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got := s.Files(); !slices.Equal(got, []string{name}) {
			t.Errorf("Files() = %v, want [%s]", got, name)
		}
		checkGolden(t, s, golden["tiny-llama/pytorch_model.bin"], func(string) string { return name })
	})
	// A Hugging Face cache snapshot: the file is a link to its blob.
	t.Run("other-file-name-link", func(t *testing.T) {
		dir := t.TempDir()
		blob := filepath.Join(dir, "blob")
		copyTo(t, filepath.Join(single, WeightsName), blob)
		snap := filepath.Join(dir, "snapshot")
		if err := os.Mkdir(snap, 0o755); err != nil {
			t.Fatal(err)
		}
		name := filepath.Join(snap, "gptq_model-4bit-128g.bin")
		if err := os.Symlink("../blob", name); err != nil {
			t.Skipf("symlink: %v", err)
		}
		s, err := OpenDir(snap)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got := s.Files(); !slices.Equal(got, []string{name}) {
			t.Errorf("Files() = %v, want [%s]", got, name)
		}
	})
}

func copyTo(t *testing.T, src, dst string) {
	t.Helper()
	writeFile(t, dst, readFile(t, src))
}

func TestOpenDirErrors(t *testing.T) {
	index := string(readFile(t, "testdata/sharded/"+IndexName))
	shard1 := readFile(t, "testdata/sharded/pytorch_model-00001-of-00002.bin")
	tests := []struct {
		name  string
		files map[string]string
		want  []string
		is    error
	}{
		{"empty", nil, []string{"no pytorch_model.bin"}, fs.ErrNotExist},
		{"missing-shard", map[string]string{IndexName: index, "pytorch_model-00001-of-00002.bin": string(shard1)}, []string{"pytorch_model-00002-of-00002.bin"}, fs.ErrNotExist},
		{"tensor-not-in-shard", map[string]string{
			IndexName:                          `{"weight_map":{"model.norm.weight":"pytorch_model-00001-of-00002.bin"}}`,
			"pytorch_model-00001-of-00002.bin": string(shard1),
		}, []string{`tensor "model.norm.weight"`, "missing from the shard", "pytorch_model-00001-of-00002.bin"}, nil},
		{"bad-index", map[string]string{IndexName: `{"weight_map":{"a":"../x.bin"}}`}, []string{IndexName, `tensor "a"`}, nil},
		{"two-indexes", map[string]string{"a.bin.index.json": "{}", "b.bin.index.json": "{}"}, []string{"2 shard indexes"}, nil},
		{"bad-shard", map[string]string{WeightsName: "not a zip"}, []string{WeightsName, "not a PyTorch zip checkpoint"}, nil},
		{"two-bin-files", map[string]string{"a.bin": "x", "b.bin": "y"}, []string{"a.bin", "b.bin", WeightsName}, nil},
		// The Trainer's and accelerate's other pickles are not weights.
		{"training-files", map[string]string{"training_args.bin": "x", "optimizer.bin": "y", "scheduler.bin": "z"}, []string{"no pytorch_model.bin"}, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tt.files {
				writeFile(t, filepath.Join(dir, name), []byte(content))
			}
			s, err := OpenDir(dir)
			if err == nil {
				s.Close()
				t.Fatal("OpenDir succeeded, want an error")
			}
			for _, w := range tt.want {
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

// TestNewerLayout reads views.bin laid out as newer torch writes it: the
// archive/ prefix, a "little" byteorder record and .data/serialization_id.
func TestNewerLayout(t *testing.T) {
	b := rezip(t, "testdata/views.bin", func(e zipEntry) *zipEntry {
		e.name = "archive/" + strings.TrimPrefix(e.name, "views/")
		return &e
	}, zipEntry{name: "archive/byteorder", data: []byte("little")},
		zipEntry{name: "archive/.data/serialization_id", data: []byte("1234")})
	f, err := newFile("views2.bin", bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, f, readGolden(t)["views.bin"], func(string) string { return "views2.bin" })
}

// TestRebuildVariants reads tensors made by torch._utils._rebuild_tensor
// (torch < 1.0 pickles), _rebuild_parameter_with_state (torch >= 2.0) with
// a BUILD of its state, and a _rebuild_tensor_v2 with its 7th, metadata
// argument.
func TestRebuildVariants(t *testing.T) {
	storage := []byte{1, 0, 2, 0, 3, 0, 4, 0}
	p := &pickler{}
	p.ops(opProto, 2, opEmptyDict, opMark)
	p.str("v1").global("torch._utils", "_rebuild_tensor").ops(opMark)
	p.ops(opMark).str("storage").global("torch", "ShortStorage").str("0").str("cpu").int(4).ops(opTuple, opBinPersID)
	p.int(1).ints([]int64{3}).ints([]int64{1}).ops(opTuple, opReduce)
	p.str("param").global("torch._utils", "_rebuild_parameter_with_state").ops(opMark)
	p.tensor(fakeTensor{storage: "ShortStorage", key: "0", numel: 4, shape: []int64{2, 2}, stride: []int64{1, 2}})
	p.ops(opNewTrue).global("collections", "OrderedDict").ops(opEmptyTuple, opReduce, opEmptyDict, opTuple, opReduce)
	p.ops(opEmptyDict, opBuild)
	p.str("v2-metadata").global("torch._utils", "_rebuild_tensor_v2").ops(opMark)
	p.ops(opMark).str("storage").global("torch", "ShortStorage").str("0").str("cpu").int(4).ops(opTuple, opBinPersID)
	p.int(0).ints([]int64{4}).ints([]int64{1}).ops(opNewFalse)
	p.global("collections", "OrderedDict").ops(opEmptyTuple, opReduce, opEmptyDict, opTuple, opReduce)
	p.ops(opSetItems, opStop)
	b := torchZip(t, p.b, map[string][]byte{"0": storage})
	f, err := newFile("variants.bin", bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		shape []int
		want  []byte
	}{
		{"v1", []int{3}, []byte{2, 0, 3, 0, 4, 0}},
		{"param", []int{2, 2}, []byte{1, 0, 3, 0, 2, 0, 4, 0}},
		{"v2-metadata", []int{4}, storage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, err := f.Tensor(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if x.DType != "I16" || !slices.Equal(x.Shape, tt.shape) || !bytes.Equal(x.Data, tt.want) {
				t.Errorf("got %s %v % x, want I16 %v % x", x.DType, x.Shape, x.Data, tt.shape, tt.want)
			}
		})
	}
}
