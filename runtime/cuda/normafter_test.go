package cuda_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
)

// TestNormAfter checks runtime.NormAfterer on the device: MatMulAddNorm
// gives MatMulAdd's output and RMSNormTo's norm of it, bit for bit, with
// the norm written by the product's own kernel (qgemv.cu's _na kernels)
// up to NormAfterRows rows and by the norm kernel above; in order and into
// an act-order weight's input slots; 4 and 8 bits, with and without act
// order, fp16 and bf16; a down-shaped product (14,336 inputs, 4,096
// outputs: a slab's blocks one cluster) and a small one; three times in a
// row (the kernel's counter of blocks done starts each launch at 0).
func TestNormAfter(t *testing.T) {
	b := gputest.Backend(t)
	prev := b.NormAfterRows()
	b.SetNormAfter(8)
	defer b.SetNormAfter(prev)
	r := rand.New(rand.NewPCG(41, 42))
	rand32 := normals(r)
	for _, c := range []struct{ K, N, bits int }{{14336, 4096, 4}, {1024, 512, 8}} {
		for _, perm := range []bool{true, false} {
			w, err := b.LoadQuant(randomQuant(r, c.K, c.N, c.bits, 128, perm))
			if err != nil {
				t.Fatal(err)
			}
			// The next product's input slots: an act-order weight reading
			// this one's output.
			next, err := b.LoadQuant(randomQuant(r, c.N, 256, 4, 128, true))
			if err != nil {
				t.Fatal(err)
			}
			for _, dt := range []runtime.DType{runtime.F16, runtime.BF16} {
				nw, _ := upload(t, b, dt, rand32(c.N, 0.5), 1, c.N)
				for _, slots := range []runtime.Tensor{nil, b.InputSlots(next)} {
					for _, M := range []int{1, 4, 5, 8, 9} {
						t.Run(fmt.Sprintf("K%d-N%d-b%d-perm%v-%v-slots%v-M%d", c.K, c.N, c.bits, perm, dt, slots != nil, M), func(t *testing.T) {
							x, _ := upload(t, b, dt, rand32(M*c.K, 1), M, c.K)
							res := rand32(M*c.N, 2)
							want, _ := upload(t, b, dt, res, M, c.N)
							wantN, _ := upload(t, b, dt, make([]float32, M*c.N), M, c.N)
							b.MatMulAdd(want, x, w, want)
							b.RMSNormTo(wantN, want, nw, slots, 1e-5)
							for run := range 3 {
								got, _ := upload(t, b, dt, res, M, c.N)
								gotN, _ := upload(t, b, dt, make([]float32, M*c.N), M, c.N)
								before := b.NormsAfter()
								b.MatMulAddNorm(got, x, w, got, gotN, nw, slots, 1e-5)
								sameBits(t, fmt.Sprintf("run %d: output", run), download(t, b, got), download(t, b, want))
								sameBits(t, fmt.Sprintf("run %d: norm", run), download(t, b, gotN), download(t, b, wantN))
								// (The down-shaped product's slabs are clusters at up
								// to 8 rows: its kernel writes the norm; above, the
								// norm kernel.)
								if k := b.NormsAfter() - before; k > 1 || (M > 8 && k != 0) || (c.K == 14336 && M <= 8 && k != 1) {
									t.Errorf("run %d: %d products wrote their norm at %d rows", run, k, M)
								}
								b.Free(got)
								b.Free(gotN)
							}
							for _, v := range []runtime.Tensor{x, want, wantN} {
								b.Free(v)
							}
						})
					}
				}
				b.Free(nw)
			}
			b.Free(w)
			b.Free(next)
		}
	}
	// The slots really move the norm: InputSlots of the act-order weight is
	// not the identity.
	w, err := b.LoadQuant(randomQuant(r, 512, 256, 4, 128, true))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free(w)
	raw := make([]byte, 4*512)
	if err := b.DownloadRaw(raw, runtime.I32, b.InputSlots(w)); err != nil {
		t.Fatal(err)
	}
	moves := 0
	for c := range 512 {
		if int(binary.LittleEndian.Uint32(raw[4*c:])) != c {
			moves++
		}
	}
	if moves == 0 {
		t.Error("an act-order weight's input slots are the identity")
	}
}
