package safetensors

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// TestRename writes tensors under a prefix (WriterOptions.Rename), reads
// them back under their own names (Set.Rename) and maps them back
// (DiskName), sharded so that the index carries the stored names too.
func TestRename(t *testing.T) {
	dir := t.TempDir()
	infos := []TensorInfo{
		{Name: "model.norm.weight", DType: F32, Shape: []int{2}},
		{Name: "vision.w", DType: BF16, Shape: []int{3}},
		{Name: "model.embed.weight", DType: F16, Shape: []int{2, 2}},
	}
	data := [][]byte{{1, 2, 3, 4, 5, 6, 7, 8}, {9, 10, 11, 12, 13, 14}, {15, 16, 17, 18, 19, 20, 21, 22}}
	toOld := func(n string) string {
		if rest, ok := strings.CutPrefix(n, "model."); ok {
			return "lm.model." + rest
		}
		return n
	}
	toNew := func(n string) string {
		if rest, ok := strings.CutPrefix(n, "lm.model."); ok {
			return "model." + rest
		}
		return n
	}
	w, err := Create(dir, infos, WriterOptions{MaxShardBytes: 8, Rename: toOld})
	if err != nil {
		t.Fatal(err)
	}
	for i, info := range infos {
		if err := w.Write(info.Name, data[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := s.Names(), []string{"lm.model.embed.weight", "lm.model.norm.weight", "vision.w"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("stored names %v, want %v", got, want)
	}
	if err := s.Rename(toNew, toOld); err != nil {
		t.Fatal(err)
	}
	if got, want := s.Names(), []string{"model.embed.weight", "model.norm.weight", "vision.w"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names %v, want %v", got, want)
	}
	if got, want := s.FileOrder(), []string{"model.norm.weight", "vision.w", "model.embed.weight"}; !reflect.DeepEqual(got, want) {
		t.Errorf("FileOrder %v, want %v", got, want)
	}
	for i, info := range infos {
		tn, err := s.Tensor(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		if tn.Name != info.Name || tn.DType != info.DType || !bytes.Equal(tn.Data, data[i]) {
			t.Errorf("%s: got %s %s %v", info.Name, tn.Name, tn.DType, tn.Data)
		}
	}
	if got := s.Infos(); !reflect.DeepEqual(got, []TensorInfo{infos[2], infos[0], infos[1]}) {
		t.Errorf("Infos %v", got)
	}
	if !s.Has("model.norm.weight") || s.Has("lm.model.norm.weight") || s.DiskName("model.norm.weight") != "lm.model.norm.weight" || s.DiskName("vision.w") != "vision.w" {
		t.Errorf("Has/DiskName after Rename")
	}
	if err := s.Rename(func(string) string { return "x" }, nil); err == nil {
		t.Error("two tensors renamed to one name: no error")
	}
}
