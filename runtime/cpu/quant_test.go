package cpu

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/runtime"
)

// randomQuant is a random QuantWeight: codes, zeros in [0, 2^bits], fp16
// scales of both signs, and act order (a random Perm) when perm is set.
func randomQuant(r *rand.Rand, bits, K, N, groupSize int, perm bool) *runtime.QuantWeight {
	q := &runtime.QuantWeight{Bits: bits, K: K, N: N, GroupSize: groupSize}
	G := q.Groups()
	q.Codes = make([]uint8, K*N)
	for i := range q.Codes {
		q.Codes[i] = uint8(r.IntN(1 << bits))
	}
	q.Scales = make([]uint16, G*N)
	q.Zeros = make([]uint16, G*N)
	for i := range q.Scales {
		s := float32(0.001 + 0.05*r.Float64())
		if r.IntN(4) == 0 {
			s = -s
		}
		q.Scales[i] = half.F32ToF16(s)
		q.Zeros[i] = uint16(r.IntN(1<<bits + 1))
	}
	if perm {
		q.Perm = make([]int32, K)
		for k, p := range r.Perm(K) {
			q.Perm[k] = int32(p)
		}
	}
	return q
}

type quantCase struct {
	bits, K, N, groupSize int
	perm                  bool
}

var quantCases = []quantCase{
	{4, 4096, 8, 128, false},
	{4, 4096, 8, 128, true},
	{4, 1000, 7, 1000, false}, // one group, K not a multiple of a block
	{4, 2100, 9, 32, false},   // K past two kc slices
	{4, 2100, 9, 96, true},
	{4, 300, 5, 48, false}, // groups not dividing blocks
	{4, 301, 6, 7, true},
	{8, 1030, 5, 128, false},
	{8, 1030, 5, 128, true},
	{8, 77, 3, 77, false},
	{3, 2050, 6, 128, false},
	{3, 2050, 6, 32, true},
	{3, 45, 4, 20, false},
	{2, 1100, 7, 64, false},
	{2, 1100, 7, 128, true},
	{2, 33, 5, 33, false},
	{4, 1030, 70, 128, true}, // several tiles of w's rows
	// Act order in the panel layout (N and K multiples of 8, on AVX2):
	// a last slice of one chunk, an odd number of chunks, several tiles.
	{4, 2056, 72, 128, true},
	{4, 1048, 16, 8, true},
	{8, 1032, 40, 128, true},
	{3, 1064, 8, 32, true},
	{2, 2088, 24, 64, true},
	{4, 24, 8, 24, true},
	{3, 8, 16, 4, true}, // the last entries, read as dwords, from a copy
	{2, 1032, 16, 128, true},
	// Without act order in the panel layout (group size a multiple of 8
	// too): the group of a chunk from its input, across K slices and
	// groups that straddle them, past two groups a chunk (group size 8,
	// the skips of panelDot and panelDotRows), one group, a last group cut
	// short; 2 and 3 rows of x read these panels too.
	{4, 2056, 72, 128, false},
	{4, 1048, 16, 8, false},
	{4, 2072, 16, 96, false},
	{8, 1032, 40, 128, false},
	{8, 40, 8, 16, false},
	{3, 1064, 8, 32, false},
	{3, 8, 16, 8, false}, // the last entries, read as dwords, from a copy
	{2, 2088, 24, 64, false},
	{2, 1032, 16, 1032, false},
	{4, 24, 8, 24, false},
	{4, 320, 8, 20, false}, // a group size not a multiple of 8: rows
}

func (c quantCase) name() string {
	return fmt.Sprintf("bits%d_K%d_N%d_g%d_perm%v", c.bits, c.K, c.N, c.groupSize, c.perm)
}

// TestDequantRow checks the tile dequantizer against
// runtime.QuantWeight.Dequantize bit for bit, for every slice a MatMul
// reads and for odd slices too.
func TestDequantRow(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, b := range []*Backend{New(2), NewPortable(2)} {
		for _, c := range quantCases {
			t.Run(b.kern.name+"/"+c.name(), func(t *testing.T) {
				q := randomQuant(r, c.bits, c.K, c.N, c.groupSize, c.perm)
				want := q.Dequantize()
				qt, err := b.LoadQuant(q)
				if err != nil {
					t.Fatal(err)
				}
				down := make([]float32, c.N*c.K)
				if err := b.Download(down, qt); err != nil {
					t.Fatal(err)
				}
				for i := range down {
					if math.Float32bits(down[i]) != math.Float32bits(want[i]) {
						t.Fatalf("download: element %d: got %v, want %v", i, down[i], want[i])
					}
				}
				w := tensorOf(qt).q
				for n := range c.N {
					table := make([]float32, w.tableLen())
					w.rowTable(table, n)
					for _, k0 := range []int{0, 1, 31, 32, 33, kc, c.K / 2, c.K - 1} {
						for _, kk := range []int{1, 5, 32, 100, kc} {
							kk = min(kk, c.K-k0)
							if k0 >= c.K || kk <= 0 {
								continue
							}
							got := make([]float32, kk)
							w.dequantRow(got, n, k0, &b.kern, table)
							for i, v := range got {
								if math.Float32bits(v) != math.Float32bits(want[n*c.K+k0+i]) {
									t.Fatalf("row %d input %d (slice at %d): got %v, want %v", n, k0+i, k0, v, want[n*c.K+k0+i])
								}
							}
						}
					}
				}
			})
		}
	}
}

// TestMatMulQuant checks MatMul and MatMulAdd with a quantized weight
// against the same ops with its dequantized weight, bit for bit, on the
// assembly and the portable kernels, for row counts that leave singles
// after triples and span several row blocks.
func TestMatMulQuant(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, be := range []*Backend{New(3), NewPortable(2)} {
		for _, c := range quantCases {
			for _, m := range []int{1, 2, 3, 5, 200, 400} {
				if m == 400 && c.N < 64 {
					continue
				}
				if testing.Short() && m == 200 && c.K > 1100 {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s/m%d", be.kern.name, c.name(), m), func(t *testing.T) {
					q := randomQuant(r, c.bits, c.K, c.N, c.groupSize, c.perm)
					qt, err := be.LoadQuant(q)
					if err != nil {
						t.Fatal(err)
					}
					if got, want := tensorOf(qt).q.panels, be.kern.panelDot != nil && c.N%8 == 0 && c.K%8 == 0 && (c.perm || c.groupSize%8 == 0); got != want {
						t.Fatalf("panel layout %v, want %v", got, want)
					}
					dense := tensorFrom(t, be, q.Dequantize(), c.N, c.K)
					xv := make([]float32, m*c.K)
					for i := range xv {
						xv[i] = float32(r.NormFloat64())
					}
					x := tensorFrom(t, be, xv, m, c.K)
					add := make([]float32, m*c.N)
					for i := range add {
						add[i] = float32(r.NormFloat64())
					}
					for _, op := range []string{"matmul", "matmul-add"} {
						got, want := tensorFrom(t, be, add, m, c.N), tensorFrom(t, be, add, m, c.N)
						if op == "matmul" {
							be.MatMul(got, x, qt)
							be.MatMul(want, x, dense)
						} else {
							be.MatMulAdd(got, x, qt, got)
							be.MatMulAdd(want, x, dense, want)
						}
						gd, wd := tensorOf(got).data, tensorOf(want).data
						for i := range gd {
							if math.Float32bits(gd[i]) != math.Float32bits(wd[i]) {
								t.Fatalf("%s: element [%d %d]: got %v, want %v", op, i/c.N, i%c.N, gd[i], wd[i])
							}
						}
					}
					be.Free(qt)
				})
			}
		}
	}
}

func tensorFrom(t *testing.T, b *Backend, v []float32, shape ...int) runtime.Tensor {
	t.Helper()
	x, err := b.Alloc(runtime.F32, shape...)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Upload(x, v); err != nil {
		t.Fatal(err)
	}
	return x
}

// TestQuantResident checks that a quantized weight takes its packed size
// (bits/8 bytes a weight, and 4 bytes a group's scale and zero point of
// an output; with act order 4 bytes an input's group), in the row and the
// panel layout, not fp32's 4 bytes a weight, and that Free gives it back.
// Where K is not a multiple of 32 the row layout pads each row's last
// block of 32 codes and the panel layout does not.
func TestQuantResident(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, K := range []int{1024, 1000} {
		for _, bits := range []int{2, 3, 4, 8} {
			for _, perm := range []bool{false, true} {
				for _, b := range []*Backend{New(1), NewPortable(1)} {
					N, gs := 96, 128
					q := randomQuant(r, bits, K, N, gs, perm)
					qt, err := b.LoadQuant(q)
					if err != nil {
						t.Fatal(err)
					}
					G := (K + gs - 1) / gs
					codes := N * ((K + 31) / 32) * 4 * bits
					if tensorOf(qt).q.panels {
						codes = K * N * bits / 8
					}
					if got, want := tensorOf(qt).q.panels, b.kern.panelDot != nil; got != want {
						t.Errorf("%s: K %d, %d bits, act order %v: panel layout %v, want %v", b.kern.name, K, bits, perm, got, want)
					}
					got := b.Resident()
					want := int64(codes + 4*N*G)
					if perm {
						want += 4 * int64(K)
					}
					if got != want {
						t.Errorf("%s: K %d, %d bits, act order %v: resident %d bytes, want %d (fp32: %d)", b.kern.name, K, bits, perm, got, want, 4*K*N)
					}
					b.Free(qt)
					if got := b.Resident(); got != 0 {
						t.Errorf("%s: K %d, %d bits, act order %v: resident %d bytes after Free, want 0", b.kern.name, K, bits, perm, got)
					}
				}
			}
		}
	}
}

// TestMatMulWeight16 checks MatMul and MatMulAdd with an F16 or BF16
// weight kept 16-bit (LoadWeight) against the same ops with its fp32
// values, bit for bit, and Download's fp32 values, for odd shapes.
func TestMatMulWeight16(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, be := range []*Backend{New(3), NewPortable(2)} {
		for _, dt := range []runtime.DType{runtime.F16, runtime.BF16} {
			for _, s := range []struct{ m, n, k int }{{1, 7, 33}, {4, 70, 1030}, {200, 9, 2100}, {3, 64, 1024}} {
				t.Run(fmt.Sprintf("%s/%v/%dx%dx%d", be.kern.name, dt, s.m, s.n, s.k), func(t *testing.T) {
					raw := make([]byte, 2*s.n*s.k)
					vals := make([]float32, s.n*s.k)
					for i := range vals {
						v := float32(r.NormFloat64())
						if dt == runtime.F16 {
							h := half.F32ToF16(v)
							raw[2*i], raw[2*i+1] = byte(h), byte(h>>8)
							vals[i] = half.F16ToF32(h)
						} else {
							h := half.F32ToBF16(v)
							raw[2*i], raw[2*i+1] = byte(h), byte(h>>8)
							vals[i] = half.BF16ToF32(h)
						}
					}
					wt, err := be.LoadWeight(raw, dt, s.n, s.k)
					if err != nil {
						t.Fatal(err)
					}
					if got := be.Resident(); got < int64(len(raw)) {
						t.Errorf("resident %d bytes, want at least the weight's %d", got, len(raw))
					}
					down := make([]float32, s.n*s.k)
					if err := be.Download(down, wt); err != nil {
						t.Fatal(err)
					}
					for i := range down {
						if math.Float32bits(down[i]) != math.Float32bits(vals[i]) {
							t.Fatalf("download: element %d: got %v, want %v", i, down[i], vals[i])
						}
					}
					dense := tensorFrom(t, be, vals, s.n, s.k)
					xv := make([]float32, s.m*s.k)
					for i := range xv {
						xv[i] = float32(r.NormFloat64())
					}
					x := tensorFrom(t, be, xv, s.m, s.k)
					got, want := tensorFrom(t, be, make([]float32, s.m*s.n), s.m, s.n), tensorFrom(t, be, make([]float32, s.m*s.n), s.m, s.n)
					be.MatMul(got, x, wt)
					be.MatMul(want, x, dense)
					be.MatMulAdd(got, x, wt, got)
					be.MatMulAdd(want, x, dense, want)
					gd, wd := tensorOf(got).data, tensorOf(want).data
					for i := range gd {
						if math.Float32bits(gd[i]) != math.Float32bits(wd[i]) {
							t.Fatalf("element [%d %d]: got %v, want %v", i/s.n, i%s.n, gd[i], wd[i])
						}
					}
				})
			}
		}
	}
	if _, err := New(1).LoadWeight(make([]byte, 8), runtime.F32, 1, 2); !errors.Is(err, runtime.ErrWeightUnsupported) {
		t.Errorf("F32 weight: err = %v, want ErrWeightUnsupported", err)
	}
}

// TestWiden16Exhaustive converts every F16 and BF16 bit pattern with each
// kernel set and checks the fp32 bits against package half's (NaNs only
// as NaNs: F16C quiets a signalling one).
func TestWiden16Exhaustive(t *testing.T) {
	src := make([]byte, 2*65536+6) // a tail past a multiple of 8
	for i := range 65536 + 3 {
		h := uint16(i)
		src[2*i], src[2*i+1] = byte(h), byte(h>>8)
	}
	n := len(src) / 2
	for _, b := range []*Backend{New(1), NewPortable(1)} {
		for _, c := range []struct {
			name string
			conv func([]float32, []byte)
			ref  func(uint16) float32
		}{{"f16", b.kern.f16, half.F16ToF32}, {"bf16", b.kern.bf16, half.BF16ToF32}} {
			out := make([]float32, n)
			c.conv(out, src)
			for i, v := range out {
				want := c.ref(uint16(i))
				if math.IsNaN(float64(want)) && math.IsNaN(float64(v)) {
					continue
				}
				if math.Float32bits(v) != math.Float32bits(want) {
					t.Fatalf("%s %s: %#04x: got %#08x, want %#08x", b.kern.name, c.name, uint16(i), math.Float32bits(v), math.Float32bits(want))
				}
			}
		}
	}
}
