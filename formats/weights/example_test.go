package weights_test

import (
	"fmt"
	"log"

	"github.com/gptqtool/gptqtool/formats/weights"
)

// A sharded PyTorch checkpoint, opened as inspect and convert open it.
func ExampleOpenDir() {
	set, format, err := weights.OpenDir("../pytorch/testdata/sharded")
	if err != nil {
		log.Fatal(err)
	}
	defer set.Close()
	fmt.Println(format, len(set.Files()), "files,", len(set.Names()), "tensors")
	info := set.Infos()[1]
	fmt.Println(info.Name, info.DType, info.Shape)
	// Output:
	// pytorch 2 files, 21 tensors
	// model.embed_tokens.weight F16 [32 16]
}
