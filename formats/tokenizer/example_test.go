package tokenizer_test

import (
	"fmt"
	"path/filepath"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
)

func Example() {
	tok, err := tokenizer.Load(filepath.Join("testdata", "stories260K"))
	if err != nil {
		fmt.Println(err)
		return
	}
	ids, err := tok.EncodePrompt("Once upon a time")
	if err != nil {
		fmt.Println(err)
		return
	}
	text, err := tok.Decode(ids)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ids)
	fmt.Printf("%q\n", text)
	// Output:
	// [1 403 407 261 378]
	// "Once upon a time"
}

func ExampleDecoder() {
	tok, err := tokenizer.Load(filepath.Join("testdata", "stories260K"))
	if err != nil {
		fmt.Println(err)
		return
	}
	d := tok.NewDecoder()
	for _, id := range []int{403, 407, 261, 378} {
		s, err := d.Add(id)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%q ", s)
	}
	fmt.Printf("%q\n", d.Flush())
	// Output: "Once" " upon" " a" " time" ""
}
