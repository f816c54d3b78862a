package backendtest

import (
	"fmt"
	"math"
	"testing"

	"github.com/gptqtool/gptqtool/runtime"
)

// testGemma checks Gemma's ops where the backend has them against
// float64: runtime.OffsetRMSNormer (x·rsqrt(mean(x²)+eps)·(1+w), out of
// place and in place), runtime.GELUGLUer (gelu_tanh(gate)·up, in place
// too), runtime.Scaler, runtime.RowScaler, runtime.SigmoidGater
// (x·σ(g) by rows) and runtime.Softcapper (c·tanh(x/c), in place too).
func testGemma(e *env) {
	if on, ok := e.b.(runtime.OffsetRMSNormer); ok {
		for _, s := range []struct{ rows, h int }{{1, 64}, {5, 37}, {300, 256}} {
			e.t.Run(fmt.Sprintf("OffsetRMSNorm %dx%d", s.rows, s.h), func(t *testing.T) {
				e := &env{t: t, b: e.b, rng: e.rng}
				x, w := e.randn(s.rows*s.h), e.randn(s.h)
				w1 := make([]float32, s.h)
				for i, v := range w {
					w1[i] = 1 + v
				}
				xt, wt := e.upload(x, s.rows, s.h), e.upload(w, s.h)
				dst := e.alloc(s.rows, s.h)
				on.OffsetRMSNorm(dst, xt, wt, 1e-6)
				want := RefRMSNorm(x, w1, s.h, 1e-6)
				e.check("rmsnorm-offset", e.download(dst), want, tolNorm)
				on.OffsetRMSNorm(xt, xt, wt, 1e-6)
				e.check("rmsnorm-offset in place", e.download(xt), want, tolNorm)
			})
		}
	}
	const n = 3*(1<<14) + 5
	a, c := e.randn(n), e.randn(n)
	for i := range a {
		a[i] *= 3 // past tanh's bend
	}
	at, ct := e.upload(a, n), e.upload(c, n)
	if g, ok := e.b.(runtime.GELUGLUer); ok {
		want := make([]float64, n)
		for i := range want {
			v := float64(a[i])
			want[i] = 0.5 * v * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v))) * float64(c[i])
		}
		dst := e.alloc(n)
		g.GELUGLU(dst, at, ct)
		e.check("gelu-glu", e.download(dst), want, tolElem)
		in := e.upload(a, n)
		g.GELUGLU(in, in, ct)
		e.check("gelu-glu in place", e.download(in), want, tolElem)
	}
	if rs, ok := e.b.(runtime.RowScaler); ok {
		for _, sh := range []struct{ rows, cols int }{{1, 64}, {7, 37}, {300, 256}} {
			x, w := e.randn(sh.rows*sh.cols), e.randn(sh.rows)
			w[0] = 0
			want := make([]float64, len(x))
			for i := range want {
				want[i] = float64(x[i]) * float64(w[i/sh.cols])
			}
			xt, st := e.upload(x, sh.rows, sh.cols), e.upload(w, sh.rows)
			dst := e.alloc(sh.rows, sh.cols)
			rs.ScaleRows(dst, xt, st)
			e.check(fmt.Sprintf("scale rows %dx%d", sh.rows, sh.cols), e.download(dst), want, tolElem)
			rs.ScaleRows(xt, xt, st)
			e.check(fmt.Sprintf("scale rows %dx%d in place", sh.rows, sh.cols), e.download(xt), want, tolElem)
		}
	}
	if sg, ok := e.b.(runtime.SigmoidGater); ok {
		for _, sh := range []struct{ rows, cols int }{{1, 64}, {7, 37}, {300, 256}} {
			x, g := e.randn(sh.rows*sh.cols), e.randn(sh.rows)
			for i := range g {
				g[i] *= 3 // past the sigmoid's bend
			}
			g[0] = 30 // σ rounds to 1
			want := make([]float64, len(x))
			for i := range want {
				want[i] = float64(x[i]) / (1 + math.Exp(-float64(g[i/sh.cols])))
			}
			xt, gt := e.upload(x, sh.rows, sh.cols), e.upload(g, sh.rows, 1)
			dst := e.alloc(sh.rows, sh.cols)
			sg.SigmoidGateRows(dst, xt, gt)
			e.check(fmt.Sprintf("sigmoid gate rows %dx%d", sh.rows, sh.cols), e.download(dst), want, tolElem)
			sg.SigmoidGateRows(xt, xt, gt)
			e.check(fmt.Sprintf("sigmoid gate rows %dx%d in place", sh.rows, sh.cols), e.download(xt), want, tolElem)
		}
	}
	if sc, ok := e.b.(runtime.Softcapper); ok {
		// a spans about ±12: capped at 5, its large values flatten.
		want := make([]float64, n)
		for i := range want {
			want[i] = 5 * math.Tanh(float64(a[i])/5)
		}
		dst := e.alloc(n)
		sc.Softcap(dst, at, 5)
		e.check("softcap", e.download(dst), want, tolElem)
		in := e.upload(a, n)
		sc.Softcap(in, in, 5)
		e.check("softcap in place", e.download(in), want, tolElem)
	}
	if sc, ok := e.b.(runtime.Scaler); ok {
		want := make([]float64, n)
		for i := range want {
			want[i] = float64(a[i]) * 33.75
		}
		dst := e.alloc(n)
		sc.Scale(dst, at, 33.75)
		e.check("scale", e.download(dst), want, tolElem)
	}
}
