package pytorch_test

import (
	"bytes"
	"fmt"
	"log"

	"github.com/gptqtool/gptqtool/formats/pytorch"
)

// A view saved as-is (base[1:3, 2:5] of arange(24).reshape(4, 6): storage
// offset 8, stride (6, 1)) comes back contiguous.
func ExampleOpen() {
	f, err := pytorch.Open("testdata/views.bin")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	t, err := f.Tensor("sliced")
	if err != nil {
		log.Fatal(err)
	}
	v, err := t.Float32()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(t.Name, t.DType, t.Shape, v)
	// Output:
	// sliced F32 [2 3] [8 9 10 14 15 16]
}

// A sharded checkpoint as transformers writes it, with tied weights.
func ExampleOpenDir() {
	s, err := pytorch.OpenDir("testdata/sharded")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	fmt.Println(len(s.Files()), "shards,", len(s.Names()), "tensors")
	for _, info := range s.Infos()[:3] {
		fmt.Println(info.Name, info.DType, info.Shape)
	}
	head, err := s.Tensor("lm_head.weight")
	if err != nil {
		log.Fatal(err)
	}
	emb, err := s.Tensor("model.embed_tokens.weight")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("tied:", bytes.Equal(head.Data, emb.Data))
	// Output:
	// 2 shards, 21 tensors
	// lm_head.weight F16 [32 16]
	// model.embed_tokens.weight F16 [32 16]
	// model.layers.0.input_layernorm.weight F16 [16]
	// tied: true
}
