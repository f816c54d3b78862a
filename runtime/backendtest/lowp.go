package backendtest

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"testing"

	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/runtime"
)

// Tolerances (NMSE) of the ops in 16-bit dtypes, against a float64
// reference computed from the rounded inputs: one rounding of the output
// costs ~2⁻¹⁸/3 (bf16) or ~2⁻²²/3 (f16); attention rounds P once more.
var tolLow = map[runtime.DType]float64{runtime.F16: 2e-5, runtime.BF16: 2e-4}

// lowEnv runs ops in dtype dt: inputs are uploaded (rounded to dt) and read
// back so that references see exactly the values the backend holds.
type lowEnv struct {
	*env
	dt runtime.DType
}

func (e *lowEnv) upload(x []float32, shape ...int) (runtime.Tensor, []float32) {
	e.t.Helper()
	tn, err := e.b.Alloc(e.dt, shape...)
	if err != nil {
		e.t.Fatalf("alloc %v %v: %v", e.dt, shape, err)
	}
	if err := e.b.Upload(tn, x); err != nil {
		e.t.Fatalf("upload %v: %v", shape, err)
	}
	return tn, e.download(tn)
}

// download is env's, and checks that every value of a 16-bit tensor is one
// its dtype holds: an op whose output was left unrounded (a backend that
// keeps such tensors in fp32, as the CPU backend's WithHalf does) fails
// here, however small the difference.
func (e *lowEnv) download(tn runtime.Tensor) []float32 {
	e.t.Helper()
	v := e.env.download(tn)
	if tn.DType() != e.dt {
		return v
	}
	for i, x := range v {
		var r float32
		if e.dt == runtime.F16 {
			r = half.F16ToF32(half.F32ToF16(x))
		} else {
			r = half.BF16ToF32(half.F32ToBF16(x))
		}
		if r != x && x == x {
			e.t.Fatalf("%v tensor %v: element %d is %g, not a %v value (the nearest is %g)", e.dt, tn.Shape(), i, x, e.dt, r)
		}
	}
	return v
}

func (e *lowEnv) alloc(shape ...int) runtime.Tensor {
	e.t.Helper()
	tn, err := e.b.Alloc(e.dt, shape...)
	if err != nil {
		e.t.Fatalf("alloc %v %v: %v", e.dt, shape, err)
	}
	return tn
}

// runLowPrecision checks the ops of a forward pass in every 16-bit dtype
// the backend offers.
func runLowPrecision(t *testing.T, newBackend func() runtime.Backend) {
	for _, dt := range newBackend().DTypes() {
		if dt == runtime.F32 {
			continue
		}
		t.Run(dt.String(), func(t *testing.T) {
			tests := []struct {
				name string
				fn   func(*lowEnv)
			}{
				{"RMSNorm", lowRMSNorm},
				{"AddRMSNorm", lowAddRMSNorm},
				{"MatMul", lowMatMul},
				{"Elementwise", lowElementwise},
				{"AddBias", lowAddBias},
				{"HeadRMSNorm", lowHeadRMSNorm},
				{"RoPE", lowRoPE},
				{"Attention", lowAttention},
				{"Gram", func(e *lowEnv) { testGramDType(e.env, e.dt) }},
				{"ColumnSquares", func(e *lowEnv) { testColumnSquaresDType(e.env, e.dt) }},
				{"CopyConvert", lowCopy},
			}
			for i, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					tc.fn(&lowEnv{env: newEnv(t, newBackend(), uint64(100+i)), dt: dt})
				})
			}
		})
	}
}

func lowRMSNorm(e *lowEnv) {
	for _, s := range []struct{ rows, h int }{{1, 64}, {5, 37}, {300, 4096}} {
		x, xv := e.upload(e.randn(s.rows*s.h), s.rows, s.h)
		w, wv := e.upload(e.randn(s.h), s.h)
		dst := e.alloc(s.rows, s.h)
		e.b.RMSNorm(dst, x, w, 1e-5)
		e.check(fmt.Sprintf("rmsnorm %dx%d", s.rows, s.h), e.download(dst), RefRMSNorm(xv, wv, s.h, 1e-5), tolLow[e.dt])
	}
}

func lowAddRMSNorm(e *lowEnv) {
	for _, h := range []int{37, 256} {
		lowAddRMSNormH(e, h)
	}
}

func lowAddRMSNormH(e *lowEnv, h int) {
	const rows = 7
	x, xv := e.upload(e.randn(rows*h), rows, h)
	d, dv := e.upload(e.randn(rows*h), rows, h)
	w, wv := e.upload(e.randn(h), h)
	norm := e.alloc(rows, h)
	runtime.AddRMSNorm(e.b, norm, x, d, w, 1e-6)
	sum := make([]float32, len(xv))
	for i := range xv {
		sum[i] = xv[i] + dv[i]
	}
	e.check("addrmsnorm x", e.download(x), f64(sum), tolLow[e.dt])
	e.check("addrmsnorm norm", e.download(norm), RefRMSNorm(e.download(x), wv, h, 1e-6), tolLow[e.dt])
}

func lowMatMul(e *lowEnv) {
	for _, s := range []struct{ m, n, k int }{{1, 17, 64}, {7, 9, 13}, {97, 130, 256}, {300, 1024, 4096}} {
		x, xv := e.upload(e.randn(s.m*s.k), s.m, s.k)
		w, wv := e.upload(e.randn(s.n*s.k), s.n, s.k)
		dst := e.alloc(s.m, s.n)
		e.b.MatMul(dst, x, w)
		e.check(fmt.Sprintf("matmul %dx%dx%d", s.m, s.n, s.k), e.download(dst), RefMatMul(xv, wv, s.m, s.n, s.k), tolLow[e.dt])
	}
}

func lowElementwise(e *lowEnv) {
	// An odd length takes the scalar kernels, a multiple of 8 the vector ones.
	for _, n := range []int{3*(1<<14) + 5, 1 << 15} {
		lowElementwiseN(e, n)
	}
}

func lowElementwiseN(e *lowEnv, n int) {
	a, av := e.upload(e.randn(n), n)
	c, cv := e.upload(e.randn(n), n)
	silu := func(v float64) float64 { return v / (1 + math.Exp(-v)) }
	for _, tc := range []struct {
		name string
		run  func(d runtime.Tensor)
		want func(i int) float64
	}{
		{"add", func(d runtime.Tensor) { e.b.Add(d, a, c) }, func(i int) float64 { return float64(av[i]) + float64(cv[i]) }},
		{"mul", func(d runtime.Tensor) { e.b.Mul(d, a, c) }, func(i int) float64 { return float64(av[i]) * float64(cv[i]) }},
		{"silu", func(d runtime.Tensor) { e.b.SiLU(d, a) }, func(i int) float64 { return silu(float64(av[i])) }},
		{"swiglu", func(d runtime.Tensor) { runtime.SwiGLU(e.b, d, a, c) }, func(i int) float64 { return silu(float64(av[i])) * float64(cv[i]) }},
	} {
		d := e.alloc(n)
		tc.run(d)
		want := make([]float64, n)
		for i := range want {
			want[i] = tc.want(i)
		}
		e.check(tc.name, e.download(d), want, tolLow[e.dt])
	}
}

func lowAddBias(e *lowEnv) {
	for _, s := range addBiasShapes {
		xt, xv := e.upload(e.randn((s.row0+s.rows)*s.cols), s.row0+s.rows, s.cols)
		bt, bv := e.upload(e.randn(s.cols), s.cols)
		e.b.AddBias(e.b.View(xt, s.row0, s.rows), bt)
		want := f64(xv)
		for i := s.row0 * s.cols; i < len(want); i++ {
			want[i] += float64(bv[i%s.cols])
		}
		e.check(fmt.Sprintf("addbias %dx%d from row %d", s.rows, s.cols, s.row0), e.download(xt), want, tolLow[e.dt])
	}
}

func lowHeadRMSNorm(e *lowEnv) {
	for _, s := range headNormShapes {
		xt, xv := e.upload(e.randn((s.row0+s.rows)*s.heads*s.hd), s.row0+s.rows, s.heads*s.hd)
		wt, wv := e.upload(e.randn(s.hd), s.hd)
		v := e.b.Reshape(e.b.View(xt, s.row0, s.rows), s.rows*s.heads, s.hd)
		e.b.RMSNorm(v, v, wt, 1e-6)
		e.check(fmt.Sprintf("head rmsnorm %dx%dx%d from row %d", s.rows, s.heads, s.hd, s.row0), e.download(xt),
			refHeadNorm(xv, wv, s.row0, s.heads, s.hd), tolLow[e.dt])
	}
}

func lowRoPE(e *lowEnv) {
	for _, s := range []struct {
		t, heads, hd, pos0 int
		scaled             bool
		rd                 int // rotary dimension; 0: hd
	}{{5, 4, 8, 0, false, 0}, {9, 2, 128, 37, false, 0}, {64, 8, 128, 0, false, 0}, {9, 2, 128, 9000, true, 0}, {9, 3, 128, 37, false, 96}} {
		cols := s.heads * s.hd
		x, xv := e.upload(e.randn(s.t*cols), s.t, cols)
		tab := ropeTableOf(cmp.Or(s.rd, s.hd), s.scaled)
		e.b.RoPE(x, s.hd, s.pos0, tab.inv)
		e.check(fmt.Sprintf("rope T%d p%d scaled %v rd %d", s.t, s.pos0, s.scaled, s.rd), e.download(x), refRoPE(xv, cols, s.hd, s.pos0, tab.ref), tolLow[e.dt])
	}
}

func lowAttention(e *lowEnv) {
	for _, s := range []struct {
		t, s, hq, hkv, hd, pos0, window int
		cap                             float32
	}{
		{6, 6, 4, 2, 8, 0, 0, 0},
		{200, 200, 8, 2, 128, 0, 0, 0},
		{100, 137, 4, 1, 128, 37, 0, 0},
		{300, 300, 4, 4, 128, 0, 50, 0},
		{130, 130, 2, 1, 64, 0, 0, 0},
		{1, 40, 2, 1, 128, 39, 0, 0},
		{65, 100, 4, 2, 128, 35, 70, 0},
		{130, 130, 2, 1, 64, 0, 0, 1},
		{100, 137, 4, 1, 128, 37, 70, 1.5},
		{20, 30, 4, 2, 256, 10, 0, 1},
	} {
		name := fmt.Sprintf("T%d_S%d_hq%d_hkv%d_d%d_p%d_w%d_cap%g", s.t, s.s, s.hq, s.hkv, s.hd, s.pos0, s.window, s.cap)
		p := runtime.AttentionParams{HeadDim: s.hd, Pos0: s.pos0, Window: s.window, Scale: float32(1 / math.Sqrt(float64(s.hd))), Softcap: s.cap}
		q, qv := e.upload(e.randn(s.t*s.hq*s.hd), s.t, s.hq*s.hd)
		k, kv := e.upload(e.randn(s.s*s.hkv*s.hd), s.s, s.hkv*s.hd)
		v, vv := e.upload(e.randn(s.s*s.hkv*s.hd), s.s, s.hkv*s.hd)
		dst := e.alloc(s.t, s.hq*s.hd)
		e.b.Attention(dst, q, k, v, p)
		e.check("attention "+name, e.download(dst), RefAttention(qv, kv, vv, s.t, s.hq, s.hkv, p), tolLow[e.dt])
	}
}

func lowCopy(e *lowEnv) {
	x, xv := e.upload(e.randn(1000), 1000)
	f, err := e.b.Alloc(runtime.F32, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	e.b.Copy(f, x)
	e.check("copy to F32", e.download(f), f64(xv), tolExact)
	y := e.alloc(1000)
	e.b.Copy(y, f)
	e.check("copy from F32", e.download(y), f64(xv), tolExact)
}

// testGramDType checks Gram on x of dtype dt against float64 sums of the
// values the backend holds: the upper triangle, with a mask, accumulated
// onto what dst held, across more than one column panel.
func testGramDType(e *env, dt runtime.DType) {
	for _, s := range []struct{ rows, K int }{{1, 1}, {7, 5}, {300, 96}, {257, 2500}} {
		e.t.Run(fmt.Sprintf("%v_%dx%d", dt, s.rows, s.K), func(t *testing.T) {
			e := &env{t: t, b: e.b, rng: e.rng}
			x, err := e.b.Alloc(dt, s.rows, s.K)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.b.Upload(x, e.randn(s.rows*s.K)); err != nil {
				t.Fatal(err)
			}
			xv := e.download(x)
			m := make([]float32, s.rows)
			for i := range m {
				if i%5 != 3 {
					m[i] = 1
				}
			}
			mask := e.upload(m, s.rows)
			d0 := e.randn(s.K * s.K)
			dst := e.upload(d0, s.K, s.K)
			e.b.Gram(dst, x, mask)
			e.b.Gram(dst, x, nil)
			got := e.download(dst)
			var gotU []float32
			var want []float64
			for i := range s.K {
				for j := i; j < s.K; j++ {
					var acc float64
					for r := range s.rows {
						p := float64(xv[r*s.K+i]) * float64(xv[r*s.K+j])
						acc += p * (1 + float64(m[r]))
					}
					want = append(want, float64(d0[i*s.K+j])+acc)
					gotU = append(gotU, got[i*s.K+j])
				}
			}
			e.check("gram upper triangle", gotU, want, 1e-10)
		})
	}
}

func testGram(e *env) { testGramDType(e, runtime.F32) }

// testColumnSquaresDType checks runtime.ColumnSquares (the backend's
// ColumnSquarer, or the download it falls back to) on x of dtype dt against
// float64 sums of the values the backend holds: column counts on and off
// the 64-column blocks a device kernel may use, a view of no rows after a
// larger case (every sum 0, not what a scratch buffer kept from before),
// and views whose rows start inside their tensor.
func testColumnSquaresDType(e *env, dt runtime.DType) {
	for _, s := range []struct{ rows, cols, row0 int }{{1, 1, 0}, {7, 5, 0}, {300, 96, 0}, {0, 70, 2}, {257, 2500, 0}, {40, 130, 9}} {
		e.t.Run(fmt.Sprintf("%v_%dx%d_from%d", dt, s.rows, s.cols, s.row0), func(t *testing.T) {
			e := &env{t: t, b: e.b, rng: e.rng}
			all, err := e.b.Alloc(dt, s.row0+s.rows+3, s.cols)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.b.Upload(all, e.randn(all.Len())); err != nil {
				t.Fatal(err)
			}
			xv := e.download(all)[s.row0*s.cols : (s.row0+s.rows)*s.cols]
			got, err := runtime.ColumnSquares(e.b, e.b.View(all, s.row0, s.rows))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != s.cols {
				t.Fatalf("%d sums for %d columns", len(got), s.cols)
			}
			for j := range s.cols {
				var want float64
				for r := range s.rows {
					v := float64(xv[r*s.cols+j])
					want += v * v
				}
				if math.Abs(got[j]-want) > 1e-12*want {
					t.Fatalf("column %d: %.17g, want %.17g", j, got[j], want)
				}
			}
		})
	}
}

func testColumnSquares(e *env) { testColumnSquaresDType(e, runtime.F32) }

// testRaw checks UploadRaw and DownloadRaw between every host dtype and
// every tensor dtype: conversions are exact where the value fits, rounded to
// nearest even otherwise.
func testRaw(e *env) {
	vals := e.randn(257)
	vals[0], vals[1], vals[2] = 0, 60000, 1e-8
	enc := map[runtime.DType][]byte{runtime.F32: make([]byte, 4*len(vals)), runtime.F16: make([]byte, 2*len(vals)), runtime.BF16: make([]byte, 2*len(vals))}
	for i, v := range vals {
		binary.LittleEndian.PutUint32(enc[runtime.F32][4*i:], math.Float32bits(v))
	}
	half.F32ToF16Bytes(enc[runtime.F16], vals)
	half.F32ToBF16Bytes(enc[runtime.BF16], vals)
	decode := func(dt runtime.DType, raw []byte) []float32 {
		out := make([]float32, len(vals))
		switch dt {
		case runtime.F32:
			for i := range out {
				out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
		case runtime.F16:
			half.F16BytesToF32(out, raw)
		case runtime.BF16:
			half.BF16BytesToF32(out, raw)
		}
		return out
	}
	round := func(dt runtime.DType, x []float32) []float32 {
		raw := make([]byte, len(x)*dt.Size())
		switch dt {
		case runtime.F32:
			return x
		case runtime.F16:
			half.F32ToF16Bytes(raw, x)
		case runtime.BF16:
			half.F32ToBF16Bytes(raw, x)
		}
		return decode(dt, raw)
	}
	for _, tdt := range e.b.DTypes() {
		for _, hdt := range []runtime.DType{runtime.F32, runtime.F16, runtime.BF16} {
			t, err := e.b.Alloc(tdt, len(vals))
			if err != nil {
				e.t.Fatal(err)
			}
			if err := e.b.UploadRaw(t, enc[hdt], hdt); err != nil {
				e.t.Fatalf("upload raw %v into %v: %v", hdt, tdt, err)
			}
			held := round(tdt, decode(hdt, enc[hdt]))
			e.check(fmt.Sprintf("upload raw %v into %v", hdt, tdt), e.download(t), f64(held), tolExact)
			raw := make([]byte, len(vals)*hdt.Size())
			if err := e.b.DownloadRaw(raw, hdt, t); err != nil {
				e.t.Fatalf("download raw %v as %v: %v", tdt, hdt, err)
			}
			e.check(fmt.Sprintf("download raw %v as %v", tdt, hdt), decode(hdt, raw), f64(round(hdt, held)), tolExact)
			if err := e.b.UploadRaw(t, enc[hdt][:3], hdt); err == nil {
				e.t.Errorf("upload raw of 3 bytes into %v %d: no error", tdt, len(vals))
			}
		}
	}
}
