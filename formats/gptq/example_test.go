package gptq_test

import (
	"fmt"

	"github.com/gptqtool/gptqtool/formats/gptq"
)

func ExamplePackQZeros() {
	// Symmetric 4-bit: every real zero point is 2^(4-1) = 8; v1 stores 7.
	z := []uint8{8, 8, 8, 8, 8, 8, 8, 8}
	qz, err := gptq.PackQZeros(z, 1, 8, 4, gptq.FormatV1)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%#08x\n", uint32(qz[0]))
	// Output: 0x77777777
}

func ExamplePackQWeight() {
	// K=8 codes of one output column go LSB-first into one word.
	q := []uint8{0, 1, 2, 3, 4, 5, 6, 7}
	qw, err := gptq.PackQWeight(q, 8, 1, 4)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%#08x\n", uint32(qw[0]))
	// Output: 0x76543210
}
