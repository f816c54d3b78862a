package gguf

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEncodeWeighted: with an importance per column spread over six
// decades, the importance-weighted quantizers (llama-quantize --imatrix)
// leave less importance-weighted error than the reference ones in every
// type that takes importances (at least 5% less, 20% for Q2_K, Q3_K,
// IQ3_XXS and IQ3_S, whose levels are coarsest), decode with the same dequantizers, and Q8_0
// ignores the weights.
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
	for _, typ := range []TensorType{TypeQ4_0, TypeQ4_1, TypeQ5_0, TypeQ5_1, TypeIQ4_NL, TypeIQ4_XS, TypeQ2_K, TypeQ3_K, TypeQ4_K, TypeQ5_K, TypeQ6_K, TypeIQ3_XXS, TypeIQ3_S} {
		keep := 0.95
		if typ == TypeQ2_K || typ == TypeQ3_K || typ == TypeIQ3_XXS || typ == TypeIQ3_S {
			keep = 0.8
		}
		_, yp := roundTrip(t, typ, x, nil)
		_, yw := roundTrip(t, typ, x, qw)
		ep, ew := werr(yp), werr(yw)
		t.Logf("%s: importance-weighted error %.4g without, %.4g with the importances (%.1f%%); plain NMSE %.3g / %.3g", typ, ep, ew, 100*(ew/ep-1), nmse(yp, x), nmse(yw, x))
		if !(ew < keep*ep) {
			t.Errorf("%s: weighted error %.4g with the importances, %.4g without: want at least %.0f%% less", typ, ew, ep, 100*(1-keep))
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
		"blk.1.ffn_up.weight":   {Sum2: []float32{0, 0, 0}, Count: 0}, // no tokens: llama-quantize weighs each column 1
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
	if got := back.Importance("blk.1.ffn_up.weight"); !equalF32(got, []float32{1, 1, 1}) {
		t.Errorf("ffn_up (count 0) importance %v, want ones as llama-quantize", got)
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
	bad := &Imatrix{Entries: map[string]ImatrixEntry{"blk.0.attn_q.weight": {Sum2: []float32{1, float32(math.Inf(1))}, Count: 2}}}
	if err := bad.Write(filepath.Join(dir, "bad.gguf")); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadImatrix(filepath.Join(dir, "bad.gguf")); err == nil || !strings.Contains(err.Error(), `"blk.0.attn_q.weight.in_sum2": value 1 is +Inf`) {
		t.Errorf("an infinite sum: %v", err)
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

// TestEncodeWeightedDegenerate: super-blocks whose importances are all
// zero, and values so small that every sub-block scale is under ggml's
// GROUP_MAX_EPS, give the bytes of ggml's quantize_q4_K/q5_K/q6_K with
// quant_weights (SHA-256 of the output of llama.cpp's ggml-quants.c, the
// node-llama-cpp v0.4.0 source, built with -ffp-contract=off): make_qp_quants
// returns 0, not 0/0, when no level has weight, and zeroes a group whose
// largest value is under GROUP_MAX_EPS.
func TestEncodeWeightedDegenerate(t *testing.T) {
	const rows, cols = 2, 512
	inputs := func(c int) (x, qw []float32) {
		x, qw = make([]float32, rows*cols), make([]float32, cols)
		for i := range x {
			x[i] = float32(math.Sin(float64(i)*0.7)) * 0.05
		}
		for j := range qw {
			qw[j] = float32(1 + j%7)
		}
		switch c {
		case 0: // all importances zero
			clear(qw)
		case 1: // sub-block scales under GROUP_MAX_EPS
			for i := range x {
				x[i] *= 1e-18
			}
		case 2: // the first super-block's importances zero
			clear(qw[:256])
		}
		return x, qw
	}
	want := [3][3]string{
		{"27d21f9b3b01160988dd07c0791464f60e5bd3b486026e1e8097644de49a1f5b", "bbb0437415048b15da5a4cbb3df8254f761bf50c77b4cd69695cfbbea5bf8f59", "16d0edc8b7ad7705b23a14058f366ff1c0dfa16a0ad14f741924c308754cf8d1"},
		{"a5af198a5361e3a407b10849ec39e4c3be6ad06adf86c2d154f4d1b250465d30", "cf4652cfc5dd146066c3c5586b79114a89896e35a42ce372d4af354f0ebb0244", "16d0edc8b7ad7705b23a14058f366ff1c0dfa16a0ad14f741924c308754cf8d1"},
		{"33d503dddeceff4fb9edbfd81949f4fbe84bd56c8c19b0fb79ba2640e5a8b425", "9da9bc3c858731cd78268f029d98f78349b5250de17bce7d4e68b4df1d79a1f8", "6147063ff7923f8a5fceb065acfd09bca73b55beb4464b077ca10c81089ac2e0"},
	}
	for c := range 3 {
		x, qw := inputs(c)
		for i, typ := range []TensorType{TypeQ4_K, TypeQ5_K, TypeQ6_K} {
			b, err := EncodeWeighted(typ, x, cols, qw)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%x", sha256.Sum256(b)); got != want[c][i] {
				t.Errorf("case %d %s: sha256 %s, ggml's %s", c, typ, got, want[c][i])
			}
			y, _ := Decode(typ, b, len(x))
			for j, v := range y {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("case %d %s: value %d decodes to %g", c, typ, j, v)
				}
			}
		}
	}
}
