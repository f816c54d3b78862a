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

// A byte-level BPE tokenizer (Llama 3's kind: a Split pattern, then the
// ByteLevel pre-tokenizer; the template puts <|begin_of_text|> first).
// Pieces are spelt with GPT-2's byte characters; TokenBytes gives the
// bytes they stand for, which can be part of a character: the Decoder
// holds such bytes back until the character is whole.
func Example_byteLevel() {
	tok, err := tokenizer.Load(filepath.Join("testdata", "bytelevel-tiny"))
	if err != nil {
		fmt.Println(err)
		return
	}
	ids, err := tok.EncodePrompt("Hello world")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tok.ByteLevel(), ids)
	for _, id := range ids {
		fmt.Printf("%d %q %q\n", id, tok.Piece(id), tok.TokenBytes(id))
	}
	text, err := tok.Decode(ids)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%q\n", text)
	d := tok.NewDecoder()
	for _, id := range []int{0xC3, 0xA9} { // the bytes of "é", one token each
		s, err := d.Add(id)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%q ", s)
	}
	fmt.Printf("%q\n", d.Flush())
	// Output:
	// true [266 259 264]
	// 266 "<|begin_of_text|>" ""
	// 259 "Hello" "Hello"
	// 264 "Ġworld" " world"
	// "Hello world"
	// "" "é" ""
}
