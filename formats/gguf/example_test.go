package gguf_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/gptqtool/gptqtool/formats/gguf"
)

// Example writes a file with one Q8_0 tensor and reads it back. Shapes are
// in PyTorch order; the file stores the dimensions innermost first.
func Example() {
	dir, err := os.MkdirTemp("", "gguf-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "tiny.gguf")

	kvs := []gguf.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "tiny.ids", Value: []int32{1, 2, 3}},
	}
	infos := []gguf.TensorInfo{{Name: "w", Shape: []int{2, 32}, Type: gguf.TypeQ8_0}}
	w, err := gguf.Create(path, kvs, infos)
	if err != nil {
		log.Fatal(err)
	}
	vals := make([]float32, 64)
	for i := range vals {
		vals[i] = float32(i) / 64
	}
	if err := w.WriteFloat32("w", vals); err != nil {
		w.Abort()
		log.Fatal(err)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}

	f, err := gguf.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	arch, err := gguf.Value[string](f, "general.architecture")
	if err != nil {
		log.Fatal(err)
	}
	ids, _ := f.Get("tiny.ids")
	t, _ := f.Tensor("w")
	fmt.Println(arch, ids, t.Shape, t.Dims(), t.Type)
	x, err := f.Float32("w")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("w[0][5] = %.5f (was %.5f), w[1][31] = %.5f (was %.5f)\n", x[5], vals[5], x[63], vals[63])
	// Output:
	// llama [1 2 3] [2 32] [32 2] Q8_0
	// w[0][5] = 0.07629 (was 0.07812), w[1][31] = 0.98444 (was 0.98438)
}

// ExamplePermuteQK shows the row order llama.cpp expects for one head of
// four rows: transformers' halves (r0 r1 | r2 r3) become adjacent pairs.
func ExamplePermuteQK() {
	src := []float32{0, 1, 2, 3} // rows of a [4, 1] q_proj weight
	dst := make([]float32, 4)
	if err := gguf.PermuteQK(dst, src, 4, 1, 1); err != nil {
		log.Fatal(err)
	}
	fmt.Println(dst)
	// Output: [0 2 1 3]
}
