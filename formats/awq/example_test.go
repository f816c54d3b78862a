package awq_test

import (
	"fmt"

	"github.com/gptqtool/gptqtool/formats/awq"
)

// The nibbles of 0x87654321, least significant first, are 1..8; AWQ's
// order puts nibble j at column Order[j].
func ExampleUnpack() {
	v, err := awq.Unpack([]int32{int32(0x07654321) | -0x80000000}, 1, 8) // 0x87654321
	if err != nil {
		panic(err)
	}
	fmt.Println(v)
	// Output: [1 5 2 6 3 7 4 8]
}
