package gpu_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/publish"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/quantize/gpu"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cuda"
)

// problem is one GPTQ input: a weight [N, K] and the Gram matrix of
// calibration inputs with per-column scales (so that act order matters),
// shared factors (so that H is far from diagonal), and dead columns.
type problem struct {
	N, K, n int
	w       []float32 // [N, K]
	gram    []float32 // [K, K] full
}

func newProblem(seed uint64, N, K, rows int, dead []int, shift float64) problem {
	return makeProblem(nil, seed, N, K, rows, dead, shift)
}

// makeProblem forms the Gram matrix on b when given (large problems), else
// in float64 on the host.
func makeProblem(b *cuda.Backend, seed uint64, N, K, rows int, dead []int, shift float64) problem {
	r := rand.New(rand.NewPCG(seed, 11))
	scale := make([]float64, K)
	for k := range scale {
		scale[k] = math.Exp(0.7 * r.NormFloat64())
	}
	for _, d := range dead {
		scale[d] = 0
	}
	const factors = 8
	f := make([]float64, factors*K)
	for i := range f {
		f[i] = r.NormFloat64() * 0.5
	}
	x := make([]float64, rows*K)
	z := make([]float64, factors)
	for t := range rows {
		for i := range z {
			z[i] = r.NormFloat64()
		}
		for k := range K {
			v := r.NormFloat64()
			for i := range z {
				v += z[i] * f[i*K+k]
			}
			x[t*K+k] = v * scale[k]
		}
	}
	g := make([]float32, K*K)
	if b != nil {
		xt, _ := b.Alloc(runtime.F32, rows, K)
		gt, _ := b.Alloc(runtime.F32, K, K)
		x32 := make([]float32, len(x))
		for i, v := range x {
			x32[i] = float32(v)
		}
		b.Upload(xt, x32)
		b.Gram(gt, xt, nil)
		b.Download(g, gt)
		b.Free(xt)
		b.Free(gt)
		for i := range K {
			for j := i + 1; j < K; j++ {
				g[j*K+i] = g[i*K+j]
			}
		}
		K = 0 // skip the host loop
	}
	for i := range K {
		for j := i; j < K; j++ {
			var s float64
			for t := range rows {
				s += x[t*K+i] * x[t*K+j]
			}
			if i == j {
				s -= shift
			}
			g[i*K+j], g[j*K+i] = float32(s), float32(s)
		}
	}
	K = len(scale)
	w := make([]float32, N*K)
	for i := range w {
		w[i] = float32(0.02 * r.NormFloat64())
	}
	return problem{N: N, K: K, n: 4, w: w, gram: g}
}

// solveBoth runs the host solver and the device solver on the same inputs.
func solveBoth(t *testing.T, b *cuda.Backend, p problem, o quantize.Options, format gptq.Format, dt runtime.DType) (host, dev *quantize.Result, devW []float32) {
	t.Helper()
	gt, _ := b.Alloc(runtime.F32, p.K, p.K)
	wt, _ := b.Alloc(dt, p.N, p.K)
	defer b.Free(gt)
	defer b.Free(wt)
	if err := b.Upload(gt, p.gram); err != nil {
		t.Fatal(err)
	}
	if err := b.Upload(wt, p.w); err != nil {
		t.Fatal(err)
	}
	w := make([]float32, p.N*p.K) // the weight as the device holds it
	if err := b.Download(w, wt); err != nil {
		t.Fatal(err)
	}
	h, err := quantize.HessianFromGram(b, gt, p.n)
	if err != nil {
		t.Fatal(err)
	}
	host, err = quantize.GPTQ(w, p.N, p.K, h, o, nil)
	if err != nil {
		t.Fatalf("host: %v", err)
	}
	res, err := gpu.New(b).Solve(context.Background(), quantize.SolveRequest{Backend: b, Modules: []string{"test"},
		Weights: []runtime.Tensor{wt}, Gram: gt, Samples: p.n, Options: o, Format: format})
	if err != nil {
		t.Fatalf("device: %v", err)
	}
	devW = make([]float32, p.N*p.K)
	if err := b.Download(devW, wt); err != nil {
		t.Fatal(err)
	}
	return host, res[0], devW
}

// TestSolverMatchesHost gives the device solver and the host solver (the
// float64 reference of package quantize) the same weight and Hessian, and
// checks the acceptance bar: the same g_idx and the same packed integers in
// at least 99.9% of positions, over the options GPTQ has.
func TestSolverMatchesHost(t *testing.T) {
	b := gputest.Backend(t)
	base := quantize.Options{Bits: 4, GroupSize: 128, Sym: true, ActOrder: true, Damp: 0.1, Fp16Scales: true}
	with := func(f func(*quantize.Options)) quantize.Options { o := base; f(&o); return o }
	cases := []struct {
		name   string
		p      problem
		o      quantize.Options
		format gptq.Format
		dt     runtime.DType
	}{
		{"main", newProblem(1, 256, 512, 1024, nil, 0), base, gptq.FormatV1, runtime.F32},
		{"4bit-32g", newProblem(2, 256, 512, 1024, nil, 0), with(func(o *quantize.Options) { o.GroupSize = 32 }), gptq.FormatV1, runtime.F32},
		{"4bit-64g-stale", newProblem(3, 256, 512, 1024, nil, 0), with(func(o *quantize.Options) { o.GroupSize = 64; o.StaleGroupParams = true }), gptq.FormatV1, runtime.F32},
		{"8bit-perchannel", newProblem(4, 256, 512, 1024, nil, 0), with(func(o *quantize.Options) { o.Bits = 8; o.GroupSize = -1 }), gptq.FormatV1, runtime.F32},
		{"8bit-32g", newProblem(5, 128, 384, 1024, nil, 0), with(func(o *quantize.Options) { o.Bits = 8; o.GroupSize = 32 }), gptq.FormatV1, runtime.F32},
		{"3bit-128g", newProblem(6, 256, 512, 1024, nil, 0), with(func(o *quantize.Options) { o.Bits = 3 }), gptq.FormatV1, runtime.F32},
		{"2bit-64g-noact", newProblem(7, 256, 512, 1024, nil, 0), with(func(o *quantize.Options) { o.Bits = 2; o.GroupSize = 64; o.ActOrder = false }), gptq.FormatV1, runtime.F32},
		{"4bit-256g", newProblem(8, 128, 1024, 2048, nil, 0), with(func(o *quantize.Options) { o.GroupSize = 256 }), gptq.FormatV1, runtime.F32},
		{"static-groups", newProblem(9, 256, 512, 1024, nil, 0), with(func(o *quantize.Options) { o.StaticGroups = true }), gptq.FormatV1, runtime.F32},
		{"asym-v2", newProblem(10, 256, 512, 1024, nil, 0), with(func(o *quantize.Options) { o.Sym = false; o.GroupSize = 64 }), gptq.FormatV2, runtime.F32},
		{"fp32-scales", newProblem(11, 256, 512, 1024, nil, 0), with(func(o *quantize.Options) { o.Fp16Scales = false }), gptq.FormatV1, runtime.F32},
		{"dead-columns", newProblem(12, 256, 512, 1024, []int{0, 7, 300, 511}, 0), base, gptq.FormatV1, runtime.F32},
		{"bf16-weight", newProblem(13, 256, 512, 1024, nil, 0), base, gptq.FormatV1, runtime.BF16},
		{"small-K", newProblem(14, 64, 96, 256, nil, 0), with(func(o *quantize.Options) { o.GroupSize = 32 }), gptq.FormatV1, runtime.F32},
		// Not positive definite until the damp has been doubled twice: both
		// solvers must retry the same way.
		{"damp-retry", newProblem(15, 128, 256, 200, nil, 0), with(func(o *quantize.Options) { o.Damp = 0.001 }), gptq.FormatV1, runtime.F32},
		{"mse-on-host", newProblem(16, 64, 256, 512, nil, 0), with(func(o *quantize.Options) { o.MSE = true }), gptq.FormatV1, runtime.F32},
		{"large", makeProblem(b, 17, 1024, 4096, 4096, nil, 0), base, gptq.FormatV1, runtime.BF16},
	}
	// Make "damp-retry" indefinite: subtract from the diagonal.
	for i := range cases {
		if cases[i].name == "damp-retry" {
			p := cases[i].p
			var mean float64
			for k := range p.K {
				mean += float64(p.gram[k*p.K+k])
			}
			mean /= float64(p.K)
			for k := range p.K {
				p.gram[k*p.K+k] -= float32(0.003 * mean)
			}
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			host, dev, devW := solveBoth(t, b, tc.p, tc.o, tc.format, tc.dt)
			if dev.Damp != host.Damp {
				t.Errorf("damp %g, host %g", dev.Damp, host.Damp)
			}
			if d := math.Abs(dev.Loss-host.Loss) / host.Loss; !(d < 1e-6) {
				t.Errorf("loss %.12g, host %.12g", dev.Loss, host.Loss)
			}
			var codes []uint8
			var scales []float32
			var zeros []uint8
			if dev.Packed == nil { // the host fallback
				codes, scales, zeros = dev.Q, dev.Scales, dev.Zeros
			} else {
				l := dev.Packed
				if err := l.Validate("device"); err != nil {
					t.Fatal(err)
				}
				var err error
				if codes, err = gptq.UnpackQWeight(l.QWeight, l.K, l.N, l.Bits); err != nil {
					t.Fatal(err)
				}
				if zeros, err = gptq.UnpackQZeros(l.QZeros, dev.G, l.N, l.Bits, tc.format); err != nil {
					t.Fatal(err)
				}
				scales = make([]float32, len(l.Scales))
				for i, h := range l.Scales {
					scales[i] = half.F16ToF32(h)
				}
				// What the host would write: its results packed on the host.
				hp, err := publish.Pack(host, tc.o.Bits, tc.o.GroupSize, tc.format)
				if err != nil {
					t.Fatal(err)
				}
				same := 0
				for i := range hp.QWeight {
					if hp.QWeight[i] == l.QWeight[i] {
						same++
					}
				}
				if frac := float64(same) / float64(len(hp.QWeight)); frac < 0.999 {
					t.Errorf("%.5f of qweight words equal the host's, want >= 0.999", frac)
				}
			}
			for k := range host.GIdx {
				if host.GIdx[k] != dev.GIdx[k] {
					t.Fatalf("g_idx[%d] = %d, host %d", k, dev.GIdx[k], host.GIdx[k])
				}
			}
			agree := 0
			for i := range codes {
				if codes[i] == host.Q[i] {
					agree++
				}
			}
			frac := float64(agree) / float64(len(codes))
			if frac < 0.999 {
				t.Errorf("%.5f of codes equal the host's, want >= 0.999", frac)
			}
			sameParams := 0
			for i := range scales {
				hs := host.Scales[i]
				if !tc.o.Fp16Scales {
					hs = half.F16ToF32(half.F32ToF16(hs)) // the checkpoint stores fp16
				}
				if scales[i] == hs && zeros[i] == host.Zeros[i] {
					sameParams++
				}
			}
			if f := float64(sameParams) / float64(len(scales)); f < 0.999 {
				t.Errorf("%.5f of scales and zeros equal the host's, want >= 0.999", f)
			}
			// The weight left on the device is the dequantized one.
			diff := 0
			for i, v := range devW {
				want := host.W[i]
				if tc.dt == runtime.BF16 {
					want = half.BF16ToF32(half.F32ToBF16(want))
				}
				if v != want {
					diff++
				}
			}
			if f := float64(diff) / float64(len(devW)); f > 0.001 {
				t.Errorf("%.5f of the dequantized weight differs from the host's", f)
			}
			t.Logf("codes agree %.6f, loss %.6g (host %.6g), damp %g", frac, dev.Loss, host.Loss, dev.Damp)
		})
	}
}

// TestSolverRefusesNonFinite checks that a NaN in the weight or the Hessian
// is an error, never a checkpoint; the weight's is the model's own value
// (quantize.ErrNonFiniteWeight: nothing kept for --resume), the Hessian's
// not.
func TestSolverRefusesNonFinite(t *testing.T) {
	b := gputest.Backend(t)
	o := quantize.Options{Bits: 4, GroupSize: 128, Sym: true, ActOrder: true, Damp: 0.1, Fp16Scales: true}
	for _, where := range []string{"weight", "hessian"} {
		t.Run(where, func(t *testing.T) {
			p := newProblem(21, 64, 256, 512, nil, 0)
			if where == "weight" {
				p.w[77] = float32(math.NaN())
			} else {
				p.gram[3*p.K+5] = float32(math.Inf(1))
			}
			gt, _ := b.Alloc(runtime.F32, p.K, p.K)
			wt, _ := b.Alloc(runtime.F32, p.N, p.K)
			defer b.Free(gt)
			defer b.Free(wt)
			b.Upload(gt, p.gram)
			b.Upload(wt, p.w)
			_, err := gpu.New(b).Solve(context.Background(), quantize.SolveRequest{Backend: b, Modules: []string{"m"},
				Weights: []runtime.Tensor{wt}, Gram: gt, Samples: p.n, Options: o, Format: gptq.FormatV1})
			if err == nil {
				t.Fatalf("a non-finite %s was accepted", where)
			}
			if errors.Is(err, quantize.ErrNonFiniteWeight) != (where == "weight") {
				t.Errorf("a non-finite %s: %v, ErrNonFiniteWeight %v", where, err, errors.Is(err, quantize.ErrNonFiniteWeight))
			}
			t.Log(err)
		})
	}
}

func BenchmarkSolve(b *testing.B) {
	be := gputest.Backend(b)
	for _, s := range []struct{ N, K int }{{4096, 4096}, {14336, 4096}, {4096, 14336}} {
		b.Run(fmt.Sprintf("N%d_K%d", s.N, s.K), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 1))
			gt, _ := be.Alloc(runtime.F32, s.K, s.K)
			wt, _ := be.Alloc(runtime.BF16, s.N, s.K)
			defer be.Free(gt)
			defer be.Free(wt)
			x, _ := be.Alloc(runtime.BF16, 8192, s.K)
			xs := make([]float32, 8192*s.K)
			for i := range xs {
				xs[i] = float32(r.NormFloat64())
			}
			be.Upload(x, xs)
			be.Gram(gt, x, nil)
			be.Free(x)
			w := make([]float32, s.N*s.K)
			for i := range w {
				w[i] = float32(0.02 * r.NormFloat64())
			}
			o := quantize.Options{Bits: 4, GroupSize: 128, Sym: true, ActOrder: true, Damp: 0.1, Fp16Scales: true}
			s := gpu.New(be)
			solve := func() {
				be.Upload(wt, w)
				if _, err := s.Solve(context.Background(), quantize.SolveRequest{Backend: be, Modules: []string{"m"},
					Weights: []runtime.Tensor{wt}, Gram: gt, Samples: 1, Options: o, Format: gptq.FormatV1}); err != nil {
					b.Fatal(err)
				}
			}
			solve() // warm up: cuSOLVER and the kernels load on first use
			s.Profile = true
			clear(s.Phases)
			for b.Loop() {
				solve()
			}
			for k, v := range s.Phases {
				b.ReportMetric(v/float64(b.N)*1e3, k+"-ms")
			}
		})
	}
}
