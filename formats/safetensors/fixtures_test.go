package safetensors

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fixtureModels = "../../../shared/fixtures/models"

func fixtureDir(t testing.TB, name string) string {
	t.Helper()
	dir := filepath.Join(fixtureModels, name)
	if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err != nil {
		t.Skipf("fixture %s missing: %v", filepath.Join(dir, "model.safetensors"), err)
	}
	return dir
}

func TestFixtureOpenchatTiny(t *testing.T) {
	dir := fixtureDir(t, "openchat-tiny")
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := s.Files(), []string{filepath.Join(dir, "model.safetensors")}; len(got) != 1 || got[0] != want[0] {
		t.Errorf("Files() = %v, want %v", got, want)
	}
	if got := s.Metadata()["format"]; got != "pt" {
		t.Errorf(`Metadata()["format"] = %q, want "pt"`, got)
	}
	var params int64
	layers := map[string]bool{}
	for _, name := range s.Names() {
		tt, err := s.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if tt.DType != F16 {
			t.Errorf("tensor %q: dtype %s, want F16", name, tt.DType)
		}
		params += int64(tt.NumElements())
		if rest, ok := strings.CutPrefix(name, "model.layers."); ok {
			layers[rest[:strings.IndexByte(rest, '.')]] = true
		}
	}
	if params != 13_504_256 {
		t.Errorf("parameters = %d, want 13504256", params)
	}
	if got := s.TotalBytes(); got != 2*13_504_256 {
		t.Errorf("TotalBytes() = %d, want %d", got, 2*13_504_256)
	}
	if len(layers) != 6 {
		t.Errorf("%d layers, want 6", len(layers))
	}
	if s.Has("lm_head.weight") {
		t.Error("tied-head fixture has lm_head.weight")
	}
	// A missing tensor is fs.ErrNotExist for errors.Is, but does not read
	// as a missing file.
	if _, err := s.Tensor("lm_head.weight"); err == nil || !strings.Contains(err.Error(), "lm_head.weight") || !strings.Contains(err.Error(), dir) ||
		!errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "not in the checkpoint") || strings.Contains(err.Error(), "file does not exist") {
		t.Errorf("Tensor(lm_head.weight) error = %v, want one naming the tensor and dir, not in the checkpoint, fs.ErrNotExist", err)
	}
	emb, err := s.Tensor("model.embed_tokens.weight")
	if err != nil {
		t.Fatal(err)
	}
	if !equalInts(emb.Shape, []int{32002, 256}) {
		t.Errorf("embed_tokens shape %v, want [32002 256]", emb.Shape)
	}
	f, err := emb.Float32()
	if err != nil {
		t.Fatal(err)
	}
	if len(f) != 32002*256 {
		t.Fatalf("Float32() gave %d values", len(f))
	}
	nonzero := 0
	for _, v := range f {
		if v != v || v > 1e4 || v < -1e4 {
			t.Fatalf("embed_tokens holds %v, want finite moderate weights", v)
		}
		if v != 0 {
			nonzero++
		}
	}
	if nonzero < len(f)/2 {
		t.Errorf("embed_tokens has only %d nonzero values of %d", nonzero, len(f))
	}
	if _, err := emb.Int32(); err == nil {
		t.Error("Int32() on an F16 tensor succeeded")
	}
}

func TestFixtureStories260K(t *testing.T) {
	dir := fixtureDir(t, "stories260K-hf-mistral")
	f, err := Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := f.Names()
	tests := []struct {
		name  string
		shape []int
	}{
		{"lm_head.weight", []int{512, 64}},
		{"model.embed_tokens.weight", []int{512, 64}},
		{"model.norm.weight", []int{64}},
		{"model.layers.4.mlp.down_proj.weight", []int{64, 172}},
		{"model.layers.0.self_attn.k_proj.weight", []int{32, 64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, ok := f.Tensor(tt.name)
			if !ok {
				t.Fatalf("missing tensor %q in %v", tt.name, names)
			}
			if x.DType != F32 || !equalInts(x.Shape, tt.shape) {
				t.Errorf("got %s %v, want F32 %v", x.DType, x.Shape, tt.shape)
			}
			if len(x.Data) != x.ByteSize() {
				t.Errorf("len(Data) = %d, want %d", len(x.Data), x.ByteSize())
			}
		})
	}
	layers := map[string]bool{}
	for _, n := range names {
		if rest, ok := strings.CutPrefix(n, "model.layers."); ok {
			layers[rest[:strings.IndexByte(rest, '.')]] = true
		}
	}
	if len(layers) != 5 {
		t.Errorf("%d layers, want 5", len(layers))
	}
	// The first tensor in data order starts right after the header.
	if names[0] != "lm_head.weight" {
		t.Errorf("Names()[0] = %q, want lm_head.weight (offset 0)", names[0])
	}
	if f.Metadata()["format"] != "pt" {
		t.Errorf("metadata %v, want format pt", f.Metadata())
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
