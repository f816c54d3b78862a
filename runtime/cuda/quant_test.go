package cuda_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
	"github.com/gptqtool/gptqtool/runtime/cuda"
)

// symTest (GPTQTOOL_TEST_SYM=1) makes randomQuant's zeros all 2^(bits-1),
// as the symmetric quantizer's are, so that the tests of every product
// kernel run the builds that take the scales alone (unless GPTQTOOL_SZ16=0;
// the warpgroup products of 8 tiles only with GPTQTOOL_SZ16=2).
var symTest = os.Getenv("GPTQTOOL_TEST_SYM") == "1"

// randomQuant is a quantized weight with random codes, zeros in
// [0, 2^bits] (2^(bits-1) with symTest) and positive scales, act order (a
// random Perm) when perm.
func randomQuant(r *rand.Rand, K, N, bits, groupSize int, perm bool) *runtime.QuantWeight {
	G := (K + groupSize - 1) / groupSize
	q := &runtime.QuantWeight{Bits: bits, K: K, N: N, GroupSize: groupSize,
		Codes: make([]uint8, K*N), Scales: make([]uint16, G*N), Zeros: make([]uint16, G*N)}
	for i := range q.Codes {
		q.Codes[i] = uint8(r.IntN(1 << bits))
	}
	for i := range q.Scales {
		q.Scales[i] = half.F32ToF16(float32(0.002 + 0.02*r.Float64()))
		q.Zeros[i] = uint16(r.IntN(1<<bits + 1))
		if symTest {
			q.Zeros[i] = 1 << (bits - 1)
		}
	}
	if perm {
		q.Perm = randomSlots(r, K)
	}
	return q
}

// upload puts host values on the device in dtype dt and returns the tensor
// and the values as the device holds them (rounded to dt).
func upload(t *testing.T, b *cuda.Backend, dt runtime.DType, v []float32, rows, cols int) (runtime.Tensor, []float32) {
	t.Helper()
	x, err := b.Alloc(dt, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Free(x) })
	if err := b.Upload(x, v); err != nil {
		t.Fatal(err)
	}
	back := make([]float32, len(v))
	if err := b.Download(back, x); err != nil {
		t.Fatal(err)
	}
	return x, back
}

// TestQuantMatMul checks the tensor-core kernels (up to 64 rows in tiles of
// 8, split or not, a partial last block of columns) and the dequantize +
// cuBLAS path (more rows, or forced) against float64
// products with the host dequantization, with and without act order and
// residual, in every activation dtype.
func TestQuantMatMul(t *testing.T) {
	b := gputest.Backend(t)
	prevWG := b.QMMAWG()
	r := rand.New(rand.NewPCG(5, 6))
	type tc struct {
		K, N, bits, gs, M int
		perm, res         bool
		dt                runtime.DType
	}
	var cases []tc
	for _, bits := range []int{4, 8} {
		for _, gs := range []int{32, 128, 1024} {
			for _, perm := range []bool{false, true} {
				for _, M := range []int{1, 3, 8, 16, 37, 64, 65} {
					cases = append(cases, tc{1024, 400, bits, gs, M, perm, M == 3 || M == 37, runtime.F16})
				}
			}
		}
		cases = append(cases, tc{512, 256, bits, 128, 2, true, true, runtime.BF16}, tc{512, 256, bits, 64, 5, false, false, runtime.F32})
	}
	// The shapes of a Mistral-7B decode step: q_proj and down_proj.
	cases = append(cases, tc{4096, 4096, 4, 128, 1, true, false, runtime.F16}, tc{14336, 4096, 4, 128, 8, true, true, runtime.F16},
		tc{4096, 14336, 8, 128, 4, false, false, runtime.F16},
		// Batches whose x is staged in phases (more chunks a block than fit).
		tc{4096, 8192, 4, 128, 64, true, false, runtime.F16}, tc{4096, 8192, 4, 128, 37, false, true, runtime.F16},
		tc{4096, 8192, 8, 128, 64, true, true, runtime.F16}, tc{14336, 4096, 4, 128, 48, true, true, runtime.BF16},
		// Three and five to seven tiles on warpgroup MMA (17-24 and 33-56
		// rows), with and without act order and a residual.
		tc{4096, 8192, 4, 128, 21, true, true, runtime.F16}, tc{4096, 8192, 8, 128, 24, false, false, runtime.BF16},
		tc{4096, 8192, 4, 128, 40, true, true, runtime.F16}, tc{4096, 8192, 8, 128, 45, false, false, runtime.BF16},
		tc{4096, 8192, 4, 128, 56, true, false, runtime.F16}, tc{4096, 8192, 8, 32, 53, true, true, runtime.F16},
		// More phases of x at 17-32 rows (plans in TestQmmaSplit): 22
		// chunks a block 16 at a time (the last phase short), 64 chunks
		// 24 at a time, 8-bit 64 chunks 32 at a time.
		tc{4096, 8192, 4, 128, 32, false, true, runtime.F16}, tc{4096, 28672, 4, 128, 17, true, false, runtime.F16},
		tc{4096, 14336, 8, 32, 32, true, true, runtime.F16},
		// f32 x at four and eight tiles (x scaled into fp16 as staged).
		tc{1024, 400, 4, 128, 20, true, true, runtime.F32}, tc{1024, 400, 8, 128, 40, false, false, runtime.F32})
	// Weights whose values overflow fp16 (scales of 5000-6000, so that
	// scale·(code − zero) reaches 96,000 at 4 bits and 1.5 million at 8),
	// in f32 activations: no kernel may form that product in fp16 (one that
	// did would give Inf here).
	big := map[int]bool{len(cases): true, len(cases) + 1: true}
	cases = append(cases, tc{512, 256, 4, 128, 16, false, true, runtime.F32}, tc{512, 256, 8, 128, 37, true, false, runtime.F32})
	for ci, c := range cases {
		name := fmt.Sprintf("%dbit-g%d-K%d-N%d-M%d-perm=%v-res=%v-%v", c.bits, c.gs, c.K, c.N, c.M, c.perm, c.res, c.dt)
		if big[ci] {
			name += "-big"
		}
		// Every other case symmetric (every zero 2^(bits-1)), its scales
		// uploaded alone too for the QG_SZ16 kernels; every fourth case,
		// asymmetric, with that upload asked for too, which must keep its
		// pairs alone.
		sym, ask := ci%2 == 1, ci%4 != 2
		if sym {
			name += "-sym"
		}
		t.Run(name, func(t *testing.T) {
			q := randomQuant(r, c.K, c.N, c.bits, c.gs, c.perm)
			if big[ci] {
				for i := range q.Scales {
					q.Scales[i] = half.F32ToF16(float32(5000 + 1000*r.Float64()))
				}
			}
			if sym {
				for i := range q.Zeros {
					q.Zeros[i] = 1 << (c.bits - 1)
				}
			}
			prevSO := b.SetScalesOnly(ask)
			w, err := b.LoadQuant(q)
			b.SetScalesOnly(prevSO)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Free(w)
			if got, want := b.ScalesOnly(w), (sym || symTest) && ask; got != want {
				t.Fatalf("the weight holds its scales alone: %v, want %v", got, want)
			}
			xv := make([]float32, c.M*c.K)
			for i := range xv {
				xv[i] = float32(r.NormFloat64())
			}
			x, xr := upload(t, b, c.dt, xv, c.M, c.K)
			rv := make([]float32, c.M*c.N)
			for i := range rv {
				rv[i] = float32(r.NormFloat64())
			}
			dst, resr := upload(t, b, c.dt, rv, c.M, c.N)
			want := backendtest.RefMatMul(xr, q.Dequantize(), c.M, c.N, c.K)
			if c.res {
				for i, v := range resr {
					want[i] += float64(v)
				}
			}
			tol := map[runtime.DType]float64{runtime.F16: 2e-6, runtime.BF16: 3e-5, runtime.F32: 2e-6}[c.dt]
			// The tensor-core kernels, the warpgroup-MMA ones (9-64 rows
			// a pass, on sm_90), the dequantize + cuBLAS reference.
			for _, mode := range []string{"kernels", "warpgroup", "dequantize+GEMM"} {
				if mode == "warpgroup" && !b.WarpgroupMMA() {
					continue
				}
				if mode == "warpgroup" {
					b.SetQMMAWG(2)
				} else {
					b.SetQMMAWG(0)
				}
				b.SetDequantGEMM(mode == "dequantize+GEMM")
				if c.res {
					if err := b.Upload(dst, rv); err != nil {
						t.Fatal(err)
					}
					b.MatMulAdd(dst, x, w, dst)
				} else {
					b.MatMul(dst, x, w)
				}
				got := make([]float32, c.M*c.N)
				if err := b.Download(got, dst); err != nil {
					t.Fatal(err)
				}
				if nmse := backendtest.NMSE(got, want); !(nmse < tol) {
					t.Errorf("%s: nmse %.3g against float64, want < %.1g", mode, nmse, tol)
				}
			}
			b.SetDequantGEMM(false)
			b.SetQMMAWG(prevWG)
		})
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestLoadQuantRefuses: widths and group sizes the kernels do not take are
// runtime.ErrQuantUnsupported (the model dequantizes those); a damaged
// layout is an error.
func TestLoadQuantRefuses(t *testing.T) {
	b := gputest.Backend(t)
	r := rand.New(rand.NewPCG(7, 8))
	for _, q := range []*runtime.QuantWeight{randomQuant(r, 96, 32, 3, 32, false), randomQuant(r, 128, 32, 4, 4, false), randomQuant(r, 128, 30, 4, 32, false)} {
		if _, err := b.LoadQuant(q); !errors.Is(err, runtime.ErrQuantUnsupported) {
			t.Errorf("%d bits group %d N %d: err = %v, want ErrQuantUnsupported", q.Bits, q.GroupSize, q.N, err)
		}
	}
	q := randomQuant(r, 128, 32, 4, 32, true)
	q.Perm[3] = q.Perm[4]
	if _, err := b.LoadQuant(q); !errors.Is(err, runtime.ErrQuantLayout) {
		t.Errorf("repeated perm entry: err = %v, want ErrQuantLayout", err)
	}
}
