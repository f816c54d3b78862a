package cuda_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// TestHalfEmulation runs the ops of a calibration forward (those of
// model.Layer.Run on floating-point weights) in F16 and BF16 on the device
// and on the CPU backend's WithHalf, from the same values, and compares
// the outputs bit for bit: WithHalf rounds where the kernels round, so
// they may differ only where the order of fp32 sums (or a last bit of
// exp2) moves a value across a rounding boundary: in a small share of the
// elements, by a unit in the last place (more only where a sum cancels to
// near zero). The shares asked for are those measured on an H100, less a
// margin (the attention's is lowest: its probabilities are rounded too).
func TestHalfEmulation(t *testing.T) {
	dev := gputest.Backend(t)
	host := cpu.New(0).WithHalf()
	r := rand.New(rand.NewPCG(5, 6))
	randn := func(n int, scale float64) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64() * scale)
		}
		return x
	}
	for _, dt := range []runtime.DType{runtime.F16, runtime.BF16} {
		// pair holds one tensor on each backend with the same values.
		type pair struct{ d, h runtime.Tensor }
		mk := func(t *testing.T, x []float32, shape ...int) pair {
			t.Helper()
			var p pair
			for i, be := range []runtime.Backend{dev, host} {
				tn, err := be.Alloc(dt, shape...)
				if err != nil {
					t.Fatal(err)
				}
				if x != nil {
					if err := be.Upload(tn, x); err != nil {
						t.Fatal(err)
					}
				}
				if i == 0 {
					p.d = tn
				} else {
					p.h = tn
				}
			}
			return p
		}
		// compare reports the share of equal elements and the largest
		// distance in units of the dtype's last place at the larger of
		// the two values (large only where a sum cancels to near zero);
		// it fails below minSame equal.
		compare := func(t *testing.T, what string, p pair, minSame float64) {
			t.Helper()
			a, c := make([]float32, p.d.Len()), make([]float32, p.h.Len())
			if err := dev.Download(a, p.d); err != nil {
				t.Fatal(err)
			}
			if err := host.Download(c, p.h); err != nil {
				t.Fatal(err)
			}
			same, worst := 0, 0.0
			for i := range a {
				if a[i] == c[i] {
					same++
					continue
				}
				u := ulp(dt, max(abs32(a[i]), abs32(c[i])))
				worst = max(worst, math.Abs(float64(a[i])-float64(c[i]))/u)
			}
			share := float64(same) / float64(len(a))
			t.Logf("%v %s: %.4f%% of %d equal, worst %.2f ulp", dt, what, 100*share, len(a), worst)
			if share < minSame {
				t.Errorf("%v %s: %.4f%% equal, want ≥ %.2f%%", dt, what, 100*share, 100*minSame)
			}
		}
		t.Run(dt.String(), func(t *testing.T) {
			const rows, h, n, eps = 300, 256, 384, 1e-5
			x := mk(t, randn(rows*h, 1), rows, h)
			w := mk(t, randn(h, 0.3), h)
			out := mk(t, nil, rows, h)
			dev.RMSNorm(out.d, x.d, w.d, eps)
			host.RMSNorm(out.h, x.h, w.h, eps)
			compare(t, "rmsnorm", out, 0.999)

			delta := mk(t, randn(rows*h, 1), rows, h)
			dev.AddRMSNorm(out.d, x.d, delta.d, w.d, eps)
			host.AddRMSNorm(out.h, x.h, delta.h, w.h, eps)
			compare(t, "add_rmsnorm sum", x, 1)
			compare(t, "add_rmsnorm norm", out, 0.999)

			wm := mk(t, randn(n*h, 0.06), n, h)
			y := mk(t, nil, rows, n)
			dev.MatMul(y.d, x.d, wm.d)
			host.MatMul(y.h, x.h, wm.h)
			compare(t, "matmul", y, 0.995)
			res := mk(t, randn(rows*n, 1), rows, n)
			runtime.MatMulAdd(dev, res.d, x.d, wm.d, res.d, nil)
			runtime.MatMulAdd(host, res.h, x.h, wm.h, res.h, nil)
			compare(t, "matmul-add", res, 0.995)

			up := mk(t, randn(rows*n, 1), rows, n)
			runtime.SwiGLU(dev, y.d, y.d, up.d)
			runtime.SwiGLU(host, y.h, y.h, up.h)
			compare(t, "swiglu", y, 0.995)

			for _, hd := range []int{128, 64} {
				for _, c := range []struct{ T, window int }{{300, 0}, {300, 100}, {1024, 0}} {
					hq, hkv := 4, 2
					q := mk(t, randn(c.T*hq*hd, 1), c.T, hq*hd)
					k := mk(t, randn(c.T*hkv*hd, 1), c.T, hkv*hd)
					v := mk(t, randn(c.T*hkv*hd, 1), c.T, hkv*hd)
					// head size 128 with Llama 3.1's scaled table
					inv := plainRoPE(t, hd, 10000)
					if hd == 128 {
						inv = llama31RoPE(t, hd)
					}
					dev.RoPE(q.d, hd, 0, inv)
					host.RoPE(q.h, hd, 0, inv)
					compare(t, fmt.Sprintf("rope hd%d T%d", hd, c.T), q, 0.999)
					att := mk(t, nil, c.T, hq*hd)
					p := runtime.AttentionParams{HeadDim: hd, Window: c.window, Scale: float32(1 / math.Sqrt(float64(hd)))}
					dev.Attention(att.d, q.d, k.d, v.d, p)
					host.Attention(att.h, q.h, k.h, v.h, p)
					compare(t, fmt.Sprintf("attention hd%d T%d window %d", hd, c.T, c.window), att, 0.975)
				}
			}
		})
	}
	if err := dev.Sync(); err != nil {
		t.Fatal(err)
	}
}

func abs32(v float32) float32 { return float32(math.Abs(float64(v))) }

// ulp is the spacing of dtype dt's values at v's magnitude.
func ulp(dt runtime.DType, v float32) float64 {
	bits := 10
	if dt == runtime.BF16 {
		bits = 7
	}
	a := math.Abs(float64(v))
	if a < 6.103515625e-05 && dt == runtime.F16 {
		return math.Ldexp(1, -24)
	}
	if a == 0 {
		return math.SmallestNonzeroFloat32
	}
	_, e := math.Frexp(a)
	return math.Ldexp(1, e-1-bits)
}
