package cuda_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cuda"
)

// randTensor is a bf16 tensor of normal values (never zeros: they run
// faster than real data).
func randTensor(b *testing.B, be *cuda.Backend, dt runtime.DType, shape ...int) runtime.Tensor {
	b.Helper()
	t, err := be.Alloc(dt, shape...)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(len(shape)), uint64(t.Len())))
	x := make([]float32, t.Len())
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	if err := be.Upload(t, x); err != nil {
		b.Fatal(err)
	}
	return t
}

func report(b *testing.B, flops, bytes float64) {
	s := b.Elapsed().Seconds() / float64(b.N)
	if flops > 0 {
		b.ReportMetric(flops/s/1e12, "TFLOP/s")
	}
	if bytes > 0 {
		b.ReportMetric(bytes/s/1e9, "GB/s")
	}
}

// The shapes of one calibration chunk of the 7B (5 samples × 4096 tokens).
const chunkRows = 20480

func BenchmarkMatMul(b *testing.B) {
	be := gputest.Backend(b)
	for _, s := range []struct{ m, n, k int }{{chunkRows, 14336, 4096}, {chunkRows, 4096, 14336}, {chunkRows, 4096, 4096}} {
		b.Run(fmt.Sprintf("bf16_%dx%dx%d", s.m, s.n, s.k), func(b *testing.B) {
			x, w := randTensor(b, be, runtime.BF16, s.m, s.k), randTensor(b, be, runtime.BF16, s.n, s.k)
			d, _ := be.Alloc(runtime.BF16, s.m, s.n)
			defer func() { be.Free(x); be.Free(w); be.Free(d) }()
			be.MatMul(d, x, w) // warm up: cuBLAS loads its kernels on first use
			be.Sync()
			for b.Loop() {
				be.MatMul(d, x, w)
				be.Sync()
			}
			report(b, 2*float64(s.m)*float64(s.n)*float64(s.k), 0)
		})
	}
}

func BenchmarkGram(b *testing.B) {
	be := gputest.Backend(b)
	for _, K := range []int{4096, 14336} {
		b.Run(fmt.Sprintf("bf16_%dx%d", chunkRows, K), func(b *testing.B) {
			x := randTensor(b, be, runtime.BF16, chunkRows, K)
			g, _ := be.Alloc(runtime.F32, K, K)
			defer func() { be.Free(x); be.Free(g) }()
			be.Gram(g, x, nil)
			be.Sync()
			for b.Loop() {
				be.Gram(g, x, nil)
				be.Sync()
			}
			// The useful work: the upper triangle, K(K+1)/2 dot products.
			report(b, float64(K)*float64(K+1)*float64(chunkRows), 0)
		})
	}
}

func BenchmarkAttention(b *testing.B) {
	be := gputest.Backend(b)
	const T, hq, hkv, hd = 4096, 32, 8, 128
	q, k, v := randTensor(b, be, runtime.BF16, T, hq*hd), randTensor(b, be, runtime.BF16, T, hkv*hd), randTensor(b, be, runtime.BF16, T, hkv*hd)
	d, _ := be.Alloc(runtime.BF16, T, hq*hd)
	defer func() { be.Free(q); be.Free(k); be.Free(v); be.Free(d) }()
	p := runtime.AttentionParams{HeadDim: hd, Window: 4096, Scale: float32(1 / math.Sqrt(hd))}
	be.Attention(d, q, k, v, p)
	be.Sync()
	for b.Loop() {
		be.Attention(d, q, k, v, p)
		be.Sync()
	}
	// Causal: QKᵀ and PV over the lower triangle.
	report(b, 2*2*float64(T)*float64(T+1)/2*hd*hq, 0)
}

func BenchmarkElementwise(b *testing.B) {
	be := gputest.Backend(b)
	g, u := randTensor(b, be, runtime.BF16, chunkRows, 14336), randTensor(b, be, runtime.BF16, chunkRows, 14336)
	x, w := randTensor(b, be, runtime.BF16, chunkRows, 4096), randTensor(b, be, runtime.BF16, 4096)
	n := randTensor(b, be, runtime.BF16, chunkRows, 4096)
	defer func() { be.Free(g); be.Free(u); be.Free(x); be.Free(w); be.Free(n) }()
	b.Run("swiglu", func(b *testing.B) {
		be.SwiGLU(g, g, u)
		be.Sync()
		for b.Loop() {
			be.SwiGLU(g, g, u)
			be.Sync()
		}
		report(b, 0, 3*2*float64(g.Len()))
	})
	b.Run("rmsnorm", func(b *testing.B) {
		be.RMSNorm(n, x, w, 1e-5)
		be.Sync()
		for b.Loop() {
			be.RMSNorm(n, x, w, 1e-5)
			be.Sync()
		}
		report(b, 0, 2*2*float64(x.Len()))
	})
	b.Run("rope", func(b *testing.B) {
		inv := plainRoPE(b, 128, 10000)
		be.RoPESeq(x, 128, 0, 4096, inv)
		be.Sync()
		for b.Loop() {
			be.RoPESeq(x, 128, 0, 4096, inv)
			be.Sync()
		}
		report(b, 0, 2*2*float64(x.Len()))
	})
}
