package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEncodeWeighted: with an importance per column spread over six
// decades, the importance-weighted quantizers (llama-quantize --imatrix)
// leave less importance-weighted error than the reference ones in every K
// type, decode with the same dequantizers, and Q8_0 ignores the weights.
func TestEncodeWeighted(t *testing.T) {
	const rows, cols = 64, 512
	x := gaussian(7, rows*cols, 0.02)
	r := rand.New(rand.NewPCG(7, 8))
	qw := make([]float32, cols)
	for j := range qw {
		qw[j] = float32(math.Pow(10, 6*r.Float64()-3))
	}
	werr := func(y []float32) float64 {
		var e float64
		for i, v := range x {
			d := float64(y[i] - v)
			e += float64(qw[i%cols]) * d * d
		}
		return e
	}
	for _, typ := range []TensorType{TypeQ4_K, TypeQ5_K, TypeQ6_K} {
		plain, err := Encode(typ, x)
		if err != nil {
			t.Fatal(err)
		}
		weighted, err := EncodeWeighted(typ, x, cols, qw)
		if err != nil {
			t.Fatal(err)
		}
		yp, _ := Decode(typ, plain, len(x))
		yw, err := Decode(typ, weighted, len(x))
		if err != nil {
			t.Fatal(err)
		}
		ep, ew := werr(yp), werr(yw)
		t.Logf("%s: importance-weighted error %.4g without, %.4g with the importances (%.1f%%); plain NMSE %.3g / %.3g", typ, ep, ew, 100*(ew/ep-1), nmse(yp, x), nmse(yw, x))
		if !(ew < 0.95*ep) {
			t.Errorf("%s: weighted error %.4g with the importances, %.4g without: want at least 5%% less", typ, ew, ep)
		}
	}
	q8, _ := Encode(TypeQ8_0, x)
	if w8, err := EncodeWeighted(TypeQ8_0, x, cols, qw); err != nil || !bytes.Equal(w8, q8) {
		t.Errorf("Q8_0 with importances differs from Q8_0 (err %v)", err)
	}
	if _, err := EncodeWeighted(TypeQ4_K, x, cols, qw[:100]); err == nil || !strings.Contains(err.Error(), "100 weights") {
		t.Errorf("short importances: %v", err)
	}
}

// TestImatrixFiles: Write's GGUF reads back; a legacy .dat file built by
// hand (llama.cpp imatrix.cpp's layout: values are mean squares times
// ncall) reads as its means; a model file and a truncated file are
// refused with the reason.
func TestImatrixFiles(t *testing.T) {
	dir := t.TempDir()
	m := &Imatrix{Entries: map[string]ImatrixEntry{
		"blk.0.attn_q.weight":   {Sum2: []float32{4, 8, 0, 2}, Count: 4},
		"blk.0.ffn_down.weight": {Sum2: []float32{1, 3}, Count: 2},
	}, Chunks: 2, ChunkSize: 3, Datasets: []string{"alpaca"}}
	path := filepath.Join(dir, "imatrix.gguf")
	if err := m.Write(path); err != nil {
		t.Fatal(err)
	}
	back, err := ReadImatrix(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Importance("blk.0.attn_q.weight"); !equalF32(got, []float32{1, 2, 0, 0.5}) {
		t.Errorf("attn_q importance %v", got)
	}
	if got := back.Importance("blk.0.ffn_down.weight"); !equalF32(got, []float32{0.5, 1.5}) {
		t.Errorf("ffn_down importance %v", got)
	}
	if back.Chunks != 2 || back.ChunkSize != 3 || len(back.Datasets) != 1 || back.Datasets[0] != "alpaca" || back.Importance("output.weight") != nil {
		t.Errorf("read back %+v", back)
	}

	var b bytes.Buffer
	put := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	put(int32(1))
	put(int32(len("blk.3.attn_v.weight")))
	b.WriteString("blk.3.attn_v.weight")
	put(int32(10))                    // ncall
	put(int32(3))                     // values
	put([]float32{10, 25, 0.5})       // mean squares × ncall
	put(int32(10))                    // chunk count
	put(int32(len("wiki.train.raw"))) // dataset
	b.WriteString("wiki.train.raw")
	legacy := filepath.Join(dir, "imatrix.dat")
	os.WriteFile(legacy, b.Bytes(), 0o644)
	lm, err := ReadImatrix(legacy)
	if err != nil {
		t.Fatal(err)
	}
	if got := lm.Importance("blk.3.attn_v.weight"); !equalF32(got, []float32{1, 2.5, 0.05}) || lm.Chunks != 10 || len(lm.Datasets) != 1 || lm.Datasets[0] != "wiki.train.raw" {
		t.Errorf("legacy: importance %v, %+v", got, lm)
	}

	os.WriteFile(legacy, b.Bytes()[:30], 0o644)
	if _, err := ReadImatrix(legacy); err == nil || !strings.Contains(err.Error(), "imatrix.dat") {
		t.Errorf("truncated legacy file: %v", err)
	}
	model := filepath.Join(dir, "model.gguf")
	w, err := Create(model, []KV{{"general.architecture", "llama"}}, []TensorInfo{{Name: "x", Shape: []int{4}, Type: TypeF32}})
	if err != nil {
		t.Fatal(err)
	}
	w.WriteFloat32("x", make([]float32, 4))
	w.Close()
	if _, err := ReadImatrix(model); err == nil || !strings.Contains(err.Error(), `general.type ""`) {
		t.Errorf("a model file as imatrix: %v", err)
	}
}

func equalF32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-6*math.Max(1, math.Abs(float64(b[i]))) {
			return false
		}
	}
	return true
}
