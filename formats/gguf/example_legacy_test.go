package gguf_test

import (
	"fmt"

	"github.com/gptqtool/gptqtool/formats/gguf"
)

// A Q4_0 block (QuantizeQ4_0, DequantizeQ4_0): the value of largest
// magnitude, −4, sets d = −4/−8 = 0.5; the others round to the nearest of
// d·(q − 8), halves up.
func Example_legacyBlock() {
	x := make([]float32, 32)
	for i := range x {
		x[i] = float32(i-16) / 4
	}
	blk := make([]byte, gguf.BlockBytesQ4_0)
	gguf.QuantizeQ4_0(blk, x)
	y := make([]float32, 32)
	gguf.DequantizeQ4_0(y, blk)
	fmt.Printf("d % x, qs[0:3] % x\n", blk[:2], blk[2:5])
	fmt.Println(x[:6])
	fmt.Println(y[:6])
	// Output:
	// d 00 38, qs[0:3] 80 91 91
	// [-4 -3.75 -3.5 -3.25 -3 -2.75]
	// [-4 -3.5 -3.5 -3 -3 -2.5]
}
