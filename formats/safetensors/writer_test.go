package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// randomTensors returns tensors of every writable kind with random bytes.
func randomTensors(r *rand.Rand) []Tensor {
	infos := []TensorInfo{
		{"model.embed_tokens.weight", F16, []int{32, 8}},
		{"model.layers.0.self_attn.q_proj.qweight", I32, []int{1, 8}},
		{"model.layers.0.self_attn.q_proj.scales", F16, []int{1, 8}},
		{"scalar", F32, []int{}},
		{"empty", BF16, []int{0, 5}},
		{"model.layers.0.mlp.up_proj.weight", BF16, []int{20, 8}},
		{"bytes", U8, []int{3}},
		{"signed", I8, []int{5}},
		{"fp8", "F8_E4M3", []int{7}},
		{"lm_head.weight", F32, []int{32, 8}},
	}
	out := make([]Tensor, len(infos))
	for i, info := range infos {
		data := make([]byte, info.ByteSize())
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		out[i] = Tensor{TensorInfo: info, Data: data}
	}
	return out
}

func writeAll(t *testing.T, dir string, tensors []Tensor, opts WriterOptions) []string {
	t.Helper()
	infos := make([]TensorInfo, len(tensors))
	for i, x := range tensors {
		infos[i] = x.TensorInfo
	}
	w, err := Create(dir, infos, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range tensors {
		if err := w.Write(x.Name, x.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.Shards()
}

func checkSame(t *testing.T, s *Set, want []Tensor) {
	t.Helper()
	var names []string
	for _, x := range want {
		names = append(names, x.Name)
	}
	slices.Sort(names)
	if got := s.Names(); !slices.Equal(got, names) {
		t.Fatalf("Names() = %v, want %v", got, names)
	}
	for _, x := range want {
		got, err := s.Tensor(x.Name)
		if err != nil {
			t.Fatal(err)
		}
		if got.DType != x.DType || !slices.Equal(got.Shape, x.Shape) || !bytes.Equal(got.Data, x.Data) {
			t.Errorf("tensor %q: got %s %v (%d bytes), want %s %v (%d bytes)", x.Name, got.DType, got.Shape, len(got.Data), x.DType, x.Shape, len(x.Data))
		}
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestWriteRoundTrip(t *testing.T) {
	tensors := randomTensors(rand.New(rand.NewPCG(7, 7)))
	var total int64
	for _, x := range tensors {
		total += int64(len(x.Data))
	}
	tests := []struct {
		name      string
		maxShard  int64
		base      string
		wantFiles []string
	}{
		{"single", 0, "", []string{"model.safetensors"}},
		{"cap larger than all", 1 << 20, "", []string{"model.safetensors"}},
		// Data bytes 512 | 32+16+4+0+320+3+5+7 = 387 | 1024: the embedding
		// and the F32 head exceed the cap alone.
		{"sharded", 400, "", []string{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors", "model.safetensors.index.json"}},
		// 512+32+16+4+0 = 564 | 320+3+5+7 = 335 | 1024.
		{"sharded other base", 600, "gptq_model", []string{"gptq_model-00001-of-00003.safetensors", "gptq_model-00002-of-00003.safetensors", "gptq_model-00003-of-00003.safetensors", "gptq_model.safetensors.index.json"}},
		// A cap of one byte puts every tensor in its own shard.
		{"one per shard", 1, "", []string{"model-00001-of-00010.safetensors", "model-00002-of-00010.safetensors", "model-00003-of-00010.safetensors", "model-00004-of-00010.safetensors", "model-00005-of-00010.safetensors", "model-00006-of-00010.safetensors", "model-00007-of-00010.safetensors", "model-00008-of-00010.safetensors", "model-00009-of-00010.safetensors", "model-00010-of-00010.safetensors", "model.safetensors.index.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeAll(t, dir, tensors, WriterOptions{BaseName: tt.base, MaxShardBytes: tt.maxShard, Metadata: map[string]string{"quantized_by": "gptqtool"}})
			if got := dirNames(t, dir); !slices.Equal(got, tt.wantFiles) {
				t.Fatalf("files %v, want %v", got, tt.wantFiles)
			}
			s, err := OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			checkSame(t, s, tensors)
			if got := s.TotalBytes(); got != total {
				t.Errorf("TotalBytes() = %d, want %d", got, total)
			}
			for _, p := range s.Files() {
				f, _ := Open(p)
				m := f.Metadata()
				if m["format"] != "pt" || m["quantized_by"] != "gptqtool" {
					t.Errorf("%s: metadata %v", p, m)
				}
				if tt.maxShard > 0 && f.DataBytes() > tt.maxShard && len(f.Names()) > 1 {
					t.Errorf("%s: %d data bytes over the %d cap in %d tensors", p, f.DataBytes(), tt.maxShard, len(f.Names()))
				}
				raw, _ := os.ReadFile(p)
				if n := binary.LittleEndian.Uint64(raw); n%8 != 0 {
					t.Errorf("%s: header length %d not a multiple of 8", p, n)
				}
				f.Close()
			}
			if len(tt.wantFiles) > 1 {
				idxPath := filepath.Join(dir, tt.wantFiles[len(tt.wantFiles)-1])
				var idx struct {
					Metadata  map[string]int64  `json:"metadata"`
					WeightMap map[string]string `json:"weight_map"`
				}
				b, _ := os.ReadFile(idxPath)
				if err := json.Unmarshal(b, &idx); err != nil {
					t.Fatal(err)
				}
				if idx.Metadata["total_size"] != total || len(idx.WeightMap) != len(tensors) {
					t.Errorf("index %s", b)
				}
				for _, x := range tensors {
					got, _ := s.Tensor(x.Name)
					if idx.WeightMap[x.Name] != filepath.Base(got.File) {
						t.Errorf("weight_map[%q] = %q, tensor is in %s", x.Name, idx.WeightMap[x.Name], got.File)
					}
				}
			}
		})
	}
}

// TestWriteRereadsTestdata copies the Python-made file through WriteFile and
// checks the copy tensor by tensor, and the header layout we promise: the
// metadata first, tensors in the given order, data contiguous.
func TestWriteRereadsTestdata(t *testing.T) {
	src, err := Open("testdata/tiny.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var tensors []Tensor
	for _, n := range src.Names() {
		x, _ := src.Tensor(n)
		tensors = append(tensors, x)
	}
	path := filepath.Join(t.TempDir(), "copy.safetensors")
	if err := WriteFile(path, tensors, src.Metadata()); err != nil {
		t.Fatal(err)
	}
	dst, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if !slices.Equal(dst.Names(), src.Names()) {
		t.Errorf("Names() = %v, want %v", dst.Names(), src.Names())
	}
	if got, want := dst.Metadata(), src.Metadata(); len(got) != len(want) || got["note"] != want["note"] {
		t.Errorf("metadata %v, want %v", got, want)
	}
	for _, x := range tensors {
		y, _ := dst.Tensor(x.Name)
		if y.DType != x.DType || !slices.Equal(y.Shape, x.Shape) || !bytes.Equal(y.Data, x.Data) {
			t.Errorf("tensor %q differs", x.Name)
		}
	}
	raw, _ := os.ReadFile(path)
	n := binary.LittleEndian.Uint64(raw)
	if !bytes.HasPrefix(raw[8:], []byte(`{"__metadata__":{"format":"pt","note":"hand-made"},"scalar":{"dtype":"F32","shape":[],"data_offsets":[0,4]},`)) {
		t.Errorf("header starts %q", raw[8:min(len(raw), 120)])
	}
	if want := n + 8 + 4 + 24 + 8 + 4 + 12 + 2 + 4 + 3; uint64(len(raw)) != want {
		t.Errorf("file is %d bytes, want %d (contiguous data)", len(raw), want)
	}
}

func TestWriterErrors(t *testing.T) {
	infos := []TensorInfo{{"a", F32, []int{2}}, {"b", U8, []int{3}}}
	tests := []struct {
		name  string
		steps func(w *Writer) error
		want  string
	}{
		{"wrong order", func(w *Writer) error { return w.Write("b", make([]byte, 3)) }, `tensor "b" written, want "a" next`},
		{"wrong length", func(w *Writer) error { return w.Write("a", make([]byte, 7)) }, `tensor "a": 7 bytes, shape [2] F32 needs 8`},
		{"incomplete close", func(w *Writer) error {
			if err := w.Write("a", make([]byte, 8)); err != nil {
				return nil
			}
			return w.Close()
		}, `closed after 1 of 2 tensors, tensor "b" not written`},
		{"too many", func(w *Writer) error {
			w.Write("a", make([]byte, 8))
			w.Write("b", make([]byte, 3))
			return w.Write("c", nil)
		}, "already written"},
		{"abort", func(w *Writer) error {
			w.Write("a", make([]byte, 8))
			w.Abort()
			return w.Close()
		}, "aborted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			w, err := Create(dir, infos, WriterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			err = tt.steps(w)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
			w.Close()
			if got := dirNames(t, dir); len(got) != 0 {
				t.Errorf("files left behind: %v", got)
			}
		})
	}
}

func TestCreateRejects(t *testing.T) {
	tests := []struct {
		name    string
		tensors []TensorInfo
		opts    WriterOptions
		want    string
	}{
		{"duplicate", []TensorInfo{{"a", U8, []int{1}}, {"a", U8, []int{1}}}, WriterOptions{}, `tensor "a" declared twice`},
		{"empty name", []TensorInfo{{"", U8, []int{1}}}, WriterOptions{}, "invalid tensor name"},
		{"metadata key", []TensorInfo{{MetadataKey, U8, []int{1}}}, WriterOptions{}, "invalid tensor name"},
		{"negative shape", []TensorInfo{{"a", U8, []int{-1}}}, WriterOptions{}, "invalid shape"},
		{"unknown dtype", []TensorInfo{{"a", "Q7", []int{1}}}, WriterOptions{}, "unsupported dtype"},
		{"base name with dir", nil, WriterOptions{BaseName: "../x"}, "not a plain file name"},
		{"negative cap", nil, WriterOptions{MaxShardBytes: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Create(t.TempDir(), tt.tensors, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestWriteNoTensors(t *testing.T) {
	dir := t.TempDir()
	writeAll(t, dir, nil, WriterOptions{})
	f, err := Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(f.Names()) != 0 || f.Metadata()["format"] != "pt" {
		t.Errorf("names %v metadata %v", f.Names(), f.Metadata())
	}
}

func TestShardName(t *testing.T) {
	if got := ShardName("model", 1, 3); got != "model-00001-of-00003.safetensors" {
		t.Errorf("ShardName = %q", got)
	}
}
