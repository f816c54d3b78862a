package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/runtime"
)

// openchat-3.5 (Mistral-7B) shape.
const (
	benchHidden = 4096
	benchInter  = 14336
	benchHeads  = 32
	benchKV     = 8
	benchHD     = 128
)

func randTensor(b *testing.B, be *Backend, shape ...int) runtime.Tensor {
	b.Helper()
	t, err := be.Alloc(runtime.F32, shape...)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, uint64(len(shape))))
	d := tensorOf(t).data
	for i := range d {
		d[i] = float32(r.NormFloat64())
	}
	return t
}

var matmulShapes = []struct {
	name    string
	m, n, k int
}{
	{"decode_q_proj_1x4096x4096", 1, benchHidden, benchHidden},
	{"decode_gate_proj_1x14336x4096", 1, benchInter, benchHidden},
	{"prefill_q_proj_128x4096x4096", 128, benchHidden, benchHidden},
	{"prefill_down_proj_128x4096x14336", 128, benchHidden, benchInter},
	{"tiny_gate_1024x896x256", 1024, 896, 256},
	{"tiny_head_1024x32002x256", 1024, 32002, 256},
}

func BenchmarkMatMul(b *testing.B) {
	be := New(0)
	for _, s := range matmulShapes {
		b.Run(s.name, func(b *testing.B) {
			x, w := randTensor(b, be, s.m, s.k), randTensor(b, be, s.n, s.k)
			dst := randTensor(b, be, s.m, s.n)
			for b.Loop() {
				be.MatMul(dst, x, w)
			}
			b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkGonumSgemm is the alternative considered for MatMul: gonum's
// pure-Go blas32.Gemm with B transposed, on the same shapes.
func BenchmarkGonumSgemm(b *testing.B) {
	be := New(0)
	for _, s := range matmulShapes {
		if s.m*s.n*s.k > 1<<31 {
			continue
		}
		b.Run(s.name, func(b *testing.B) {
			x, w := randTensor(b, be, s.m, s.k), randTensor(b, be, s.n, s.k)
			dst := randTensor(b, be, s.m, s.n)
			A := blas32.General{Rows: s.m, Cols: s.k, Stride: s.k, Data: tensorOf(x).data}
			B := blas32.General{Rows: s.n, Cols: s.k, Stride: s.k, Data: tensorOf(w).data}
			C := blas32.General{Rows: s.m, Cols: s.n, Stride: s.n, Data: tensorOf(dst).data}
			for b.Loop() {
				blas32.Gemm(blas.NoTrans, blas.Trans, 1, A, B, 0, C)
			}
			b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

func BenchmarkAttention(b *testing.B) {
	be := New(0)
	for _, s := range []struct {
		name    string
		t, pos0 int
	}{{"decode_pos1023", 1, 1023}, {"decode_pos4095", 1, 4095}, {"prefill_512", 512, 0}} {
		b.Run(s.name, func(b *testing.B) {
			q := randTensor(b, be, s.t, benchHeads*benchHD)
			k := randTensor(b, be, s.pos0+s.t, benchKV*benchHD)
			v := randTensor(b, be, s.pos0+s.t, benchKV*benchHD)
			dst := randTensor(b, be, s.t, benchHeads*benchHD)
			p := runtime.AttentionParams{HeadDim: benchHD, Pos0: s.pos0, Scale: float32(1 / math.Sqrt(benchHD))}
			for b.Loop() {
				be.Attention(dst, q, k, v, p)
			}
		})
	}
}

func BenchmarkElementwise(b *testing.B) {
	be := New(0)
	for _, rows := range []int{1, 128} {
		x := randTensor(b, be, rows, benchHidden)
		w := randTensor(b, be, benchHidden)
		g := randTensor(b, be, rows, benchInter)
		u := randTensor(b, be, rows, benchInter)
		q := randTensor(b, be, rows, benchHeads*benchHD)
		inv, err := runtime.RoPEFreqs(benchHD, 10000, hfconfig.RopeScaling{})
		if err != nil {
			b.Fatal(err)
		}
		for _, op := range []struct {
			name  string
			bytes int
			run   func()
		}{
			{"RMSNorm", 8 * rows * benchHidden, func() { be.RMSNorm(x, x, w, 1e-5) }},
			{"AddRMSNorm", 16 * rows * benchHidden, func() { be.AddRMSNorm(x, x, x, w, 1e-5) }},
			{"SwiGLU", 12 * rows * benchInter, func() { be.SwiGLU(g, g, u) }},
			{"RoPE", 8 * rows * benchHeads * benchHD, func() { be.RoPE(q, benchHD, 1000, inv) }},
		} {
			b.Run(fmt.Sprintf("%s_%dx", op.name, rows), func(b *testing.B) {
				b.SetBytes(int64(op.bytes))
				for b.Loop() {
					op.run()
				}
			})
		}
	}
}

// BenchmarkMatMulQuant multiplies by a 4-bit weight (and an 8-bit one;
// group size 128, no act order, and act order) kept packed (LoadQuant) and by its
// dequantized fp32 form, at the openchat-3.5 shapes; bytes/s counts the
// weight's bytes each form reads, cpu-ns/op the process's CPU time an op
// divided by the threads.
func BenchmarkMatMulQuant(b *testing.B) {
	be := New(0)
	shapes := []struct {
		name          string
		m, n, k, bits int
	}{
		{"decode_1x4096x4096", 1, benchHidden, benchHidden, 4},
		{"decode_1x14336x4096", 1, benchInter, benchHidden, 4},
		{"decode_2x4096x4096", 2, benchHidden, benchHidden, 4},
		{"decode_3x4096x4096", 3, benchHidden, benchHidden, 4},
		{"prefill_128x4096x4096", 128, benchHidden, benchHidden, 4},
		{"decode_1x4096x4096_8bit", 1, benchHidden, benchHidden, 8},
	}
	r := rand.New(rand.NewPCG(7, 8))
	for _, s := range shapes {
		for _, perm := range []bool{false, true} {
			q := randomQuant(r, s.bits, s.k, s.n, 128, perm)
			qt, err := be.LoadQuant(q)
			if err != nil {
				b.Fatal(err)
			}
			x := randTensor(b, be, s.m, s.k)
			dst := randTensor(b, be, s.m, s.n)
			forms := []struct {
				name  string
				w     runtime.Tensor
				bytes int64
			}{{"packed", qt, tensorOf(qt).q.bytes()}}
			if !perm {
				dense, err := be.Alloc(runtime.F32, s.n, s.k)
				if err != nil {
					b.Fatal(err)
				}
				copy(tensorOf(dense).data, q.Dequantize())
				forms = append(forms, struct {
					name  string
					w     runtime.Tensor
					bytes int64
				}{"fp32", dense, 4 * int64(s.n*s.k)})
			}
			for _, f := range forms {
				name := fmt.Sprintf("%s/%s", s.name, f.name)
				if perm {
					name += "_actorder"
				}
				b.Run(name, func(b *testing.B) {
					b.SetBytes(f.bytes)
					c0 := processCPU()
					for b.Loop() {
						be.MatMul(dst, x, f.w)
					}
					// The process's CPU time an op over the threads: the
					// op's time on an idle machine, where others' load
					// stretches the wall time.
					cpu := processCPU() - c0
					b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(be.Threads()), "cpu-ns/op")
				})
			}
		}
	}
}

// BenchmarkMatMulWeight16 multiplies by an F16 and a BF16 weight kept
// 16-bit (LoadWeight) at the openchat-3.5 shapes; bytes/s counts the 2
// bytes a weight read (BenchmarkMatMulQuant's fp32 form is the baseline).
func BenchmarkMatMulWeight16(b *testing.B) {
	be := New(0)
	shapes := []struct {
		name    string
		m, n, k int
	}{
		{"decode_1x4096x4096", 1, benchHidden, benchHidden},
		{"decode_1x14336x4096", 1, benchInter, benchHidden},
		{"prefill_128x4096x4096", 128, benchHidden, benchHidden},
	}
	r := rand.New(rand.NewPCG(9, 9))
	for _, s := range shapes {
		for _, dt := range []runtime.DType{runtime.F16, runtime.BF16} {
			raw := make([]byte, 2*s.n*s.k)
			for i := 0; i < len(raw); i += 2 {
				h := half.F32ToF16(float32(r.NormFloat64()))
				if dt == runtime.BF16 {
					h = half.F32ToBF16(float32(r.NormFloat64()))
				}
				raw[i], raw[i+1] = byte(h), byte(h>>8)
			}
			w, err := be.LoadWeight(raw, dt, s.n, s.k)
			if err != nil {
				b.Fatal(err)
			}
			x := randTensor(b, be, s.m, s.k)
			dst := randTensor(b, be, s.m, s.n)
			b.Run(fmt.Sprintf("%s/%v", s.name, dt), func(b *testing.B) {
				b.SetBytes(int64(len(raw)))
				c0 := processCPU()
				for b.Loop() {
					be.MatMul(dst, x, w)
				}
				cpu := processCPU() - c0
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(be.Threads()), "cpu-ns/op")
			})
		}
	}
}
