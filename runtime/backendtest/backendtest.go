package backendtest

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/runtime"
)

// Tolerances (NMSE) per op family. Exact data movement must match exactly;
// fp32 arithmetic ops are allowed rounding noise of a few ulps.
const (
	tolExact = 0
	tolElem  = 1e-12
	tolNorm  = 1e-11
	tolMM    = 1e-10
	tolRoPE  = 1e-11
	tolAttn  = 1e-10
)

// NMSE returns Σ(got-want)² / Σwant² (0 when both are zero).
func NMSE(got []float32, want []float64) float64 {
	if len(got) != len(want) {
		panic(fmt.Sprintf("backendtest: nmse of %d and %d values", len(got), len(want)))
	}
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - w
		num += d * d
		den += w * w
	}
	if den == 0 {
		return num
	}
	return num / den
}

type env struct {
	t   *testing.T
	b   runtime.Backend
	rng *rand.Rand
}

func (e *env) randn(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(e.rng.NormFloat64())
	}
	return x
}

func (e *env) upload(x []float32, shape ...int) runtime.Tensor {
	e.t.Helper()
	tn, err := e.b.Alloc(runtime.F32, shape...)
	if err != nil {
		e.t.Fatalf("alloc %v: %v", shape, err)
	}
	if err := e.b.Upload(tn, x); err != nil {
		e.t.Fatalf("upload %v: %v", shape, err)
	}
	return tn
}

func (e *env) alloc(shape ...int) runtime.Tensor {
	e.t.Helper()
	tn, err := e.b.Alloc(runtime.F32, shape...)
	if err != nil {
		e.t.Fatalf("alloc %v: %v", shape, err)
	}
	return tn
}

func (e *env) download(tn runtime.Tensor) []float32 {
	e.t.Helper()
	out := make([]float32, tn.Len())
	if err := e.b.Download(out, tn); err != nil {
		e.t.Fatalf("download: %v", err)
	}
	return out
}

func (e *env) check(op string, got []float32, want []float64, tol float64) {
	e.t.Helper()
	for i, g := range got {
		if math.IsNaN(float64(g)) || math.IsInf(float64(g), 0) {
			e.t.Fatalf("%s: element %d is %v", op, i, g)
		}
	}
	if nmse := NMSE(got, want); nmse > tol {
		e.t.Errorf("%s: nmse %.3g > %.3g", op, nmse, tol)
	}
}

func f64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// Run checks every op of the backend made by newBackend. Each subtest gets
// a fresh backend.
func Run(t *testing.T, newBackend func() runtime.Backend) {
	tests := []struct {
		name string
		fn   func(*env)
	}{
		{"AllocUploadDownload", testTransfers},
		{"View", testView},
		{"Copy", testCopy},
		{"Embedding", testEmbedding},
		{"RMSNorm", testRMSNorm},
		{"AddRMSNorm", testAddRMSNorm},
		{"MatMul", testMatMul},
		{"Elementwise", testElementwise},
		{"AddBias", testAddBias},
		{"HeadRMSNorm", testHeadRMSNorm},
		{"Gemma", testGemma},
		{"RoPE", testRoPE},
		{"ScaleTail", testScaleTail},
		{"Attention", testAttention},
		{"Gram", testGram},
		{"ColumnSquares", testColumnSquares},
		{"Raw", testRaw},
		{"PagedDecoder", testPagedDecoder},
		{"TokenSampler", testTokenSampler},
		{"TokenFeeder", testTokenFeeder},
		{"GreedyDrawer", testGreedyDrawer},
		{"RowScorer", testRowScorer},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(newEnv(t, newBackend(), uint64(i)+1))
		})
	}
	runLowPrecision(t, newBackend)
}

func newEnv(t *testing.T, b runtime.Backend, seed uint64) *env {
	return &env{t: t, b: b, rng: rand.New(rand.NewPCG(seed, 7))}
}

func testTransfers(e *env) {
	x := e.randn(3 * 5 * 7)
	tn := e.upload(x, 3, 5, 7)
	if got := tn.Shape(); len(got) != 3 || got[0] != 3 || got[1] != 5 || got[2] != 7 {
		e.t.Fatalf("shape = %v, want [3 5 7]", got)
	}
	if runtime.Rows(tn) != 15 || runtime.Cols(tn) != 7 || tn.Len() != 105 {
		e.t.Fatalf("rows, cols, len = %d, %d, %d, want 15, 7, 105", runtime.Rows(tn), runtime.Cols(tn), tn.Len())
	}
	e.check("download(upload(x))", e.download(tn), f64(x), tolExact)
	z := e.alloc(4, 4)
	e.check("alloc zeroed", e.download(z), make([]float64, 16), tolExact)
	if err := e.b.Upload(z, x[:3]); err == nil {
		e.t.Errorf("upload of 3 values into [4 4]: no error")
	}
	if err := e.b.Download(make([]float32, 3), z); err == nil {
		e.t.Errorf("download of [4 4] into 3 values: no error")
	}
	if err := e.b.Sync(); err != nil {
		e.t.Errorf("sync: %v", err)
	}
	e.b.Free(z)
	e.b.Free(nil)
}

func testView(e *env) {
	x := e.randn(6 * 4)
	tn := e.upload(x, 6, 4)
	v := e.b.View(tn, 2, 3)
	if s := v.Shape(); s[0] != 3 || s[1] != 4 {
		e.t.Fatalf("view shape = %v, want [3 4]", s)
	}
	e.check("view read", e.download(v), f64(x[8:20]), tolExact)
	y := e.randn(12)
	if err := e.b.Upload(v, y); err != nil {
		e.t.Fatal(err)
	}
	want := f64(x)
	copy(want[8:20], f64(y))
	e.check("write through view", e.download(tn), want, tolExact)
}

func testCopy(e *env) {
	x := e.randn(37)
	src := e.upload(x, 37)
	dst := e.alloc(37)
	e.b.Copy(dst, src)
	e.check("copy", e.download(dst), f64(x), tolExact)
}

func testEmbedding(e *env) {
	const v, h = 11, 9
	table := e.randn(v * h)
	ids := []int{3, 0, 10, 3, 7}
	tt := e.upload(table, v, h)
	dst := e.alloc(len(ids), h)
	e.b.Embedding(dst, tt, ids)
	var want []float64
	for _, id := range ids {
		want = append(want, f64(table[id*h:(id+1)*h])...)
	}
	e.check("embedding", e.download(dst), want, tolExact)
}

// RefRMSNorm is the RMSNorm of x's rows of h by the weight w, in float64.
func RefRMSNorm(x, w []float32, h int, eps float32) []float64 {
	out := make([]float64, len(x))
	for r := 0; r < len(x)/h; r++ {
		var ss float64
		for _, v := range x[r*h : (r+1)*h] {
			ss += float64(v) * float64(v)
		}
		inv := 1 / math.Sqrt(ss/float64(h)+float64(eps))
		for i := range h {
			out[r*h+i] = float64(x[r*h+i]) * inv * float64(w[i])
		}
	}
	return out
}

func testRMSNorm(e *env) {
	for _, s := range []struct{ rows, h int }{{1, 64}, {5, 37}, {300, 256}} {
		e.t.Run(fmt.Sprintf("%dx%d", s.rows, s.h), func(t *testing.T) {
			e := &env{t: t, b: e.b, rng: e.rng}
			x := e.randn(s.rows * s.h)
			w := e.randn(s.h)
			xt, wt := e.upload(x, s.rows, s.h), e.upload(w, s.h)
			dst := e.alloc(s.rows, s.h)
			e.b.RMSNorm(dst, xt, wt, 1e-5)
			want := RefRMSNorm(x, w, s.h, 1e-5)
			e.check("rmsnorm", e.download(dst), want, tolNorm)
			e.b.RMSNorm(xt, xt, wt, 1e-5)
			e.check("rmsnorm in place", e.download(xt), want, tolNorm)
		})
	}
}

func testAddRMSNorm(e *env) {
	const rows, h = 7, 48
	x, d, w := e.randn(rows*h), e.randn(rows*h), e.randn(h)
	xt, dt, wt := e.upload(x, rows, h), e.upload(d, rows, h), e.upload(w, h)
	norm := e.alloc(rows, h)
	runtime.AddRMSNorm(e.b, norm, xt, dt, wt, 1e-6)
	sum := make([]float32, len(x))
	for i := range x {
		sum[i] = x[i] + d[i]
	}
	e.check("addrmsnorm x", e.download(xt), f64(sum), tolElem)
	e.check("addrmsnorm norm", e.download(norm), RefRMSNorm(sum, w, h, 1e-6), tolNorm)
}

// RefMatMul is the float64 reference of MatMul: x[m,k]·w[n,k]ᵀ, [m, n].
func RefMatMul(x, w []float32, m, n, k int) []float64 {
	out := make([]float64, m*n)
	for i := range m {
		for j := range n {
			var acc float64
			for p := range k {
				acc += float64(x[i*k+p]) * float64(w[j*k+p])
			}
			out[i*n+j] = acc
		}
	}
	return out
}

func testMatMul(e *env) {
	for _, s := range []struct{ m, n, k int }{
		{1, 1, 1}, {1, 17, 64}, {2, 33, 100}, {3, 4, 8}, {7, 9, 13}, {50, 70, 172},
		{97, 130, 256}, {4, 8, 2048 + 3}, {1, 260, 1100},
	} {
		e.t.Run(fmt.Sprintf("%dx%dx%d", s.m, s.n, s.k), func(t *testing.T) {
			e := &env{t: t, b: e.b, rng: e.rng}
			x, w := e.randn(s.m*s.k), e.randn(s.n*s.k)
			xt, wt := e.upload(x, s.m, s.k), e.upload(w, s.n, s.k)
			dst := e.alloc(s.m, s.n)
			e.b.MatMul(dst, xt, wt)
			e.check("matmul", e.download(dst), RefMatMul(x, w, s.m, s.n, s.k), tolMM)
		})
	}
}

func testElementwise(e *env) {
	const n = 3*(1<<14) + 5 // several chunks plus a tail
	a, c := e.randn(n), e.randn(n)
	at, ct := e.upload(a, n), e.upload(c, n)
	silu := func(v float64) float64 { return v / (1 + math.Exp(-v)) }
	cases := []struct {
		name string
		run  func(dst runtime.Tensor)
		want func(i int) float64
	}{
		{"add", func(d runtime.Tensor) { e.b.Add(d, at, ct) }, func(i int) float64 { return float64(a[i]) + float64(c[i]) }},
		{"mul", func(d runtime.Tensor) { e.b.Mul(d, at, ct) }, func(i int) float64 { return float64(a[i]) * float64(c[i]) }},
		{"silu", func(d runtime.Tensor) { e.b.SiLU(d, at) }, func(i int) float64 { return silu(float64(a[i])) }},
		{"swiglu", func(d runtime.Tensor) { runtime.SwiGLU(e.b, d, at, ct) }, func(i int) float64 { return silu(float64(a[i])) * float64(c[i]) }},
	}
	for _, tc := range cases {
		dst := e.alloc(n)
		tc.run(dst)
		want := make([]float64, n)
		for i := range want {
			want[i] = tc.want(i)
		}
		e.check(tc.name, e.download(dst), want, tolElem)
	}
	// Aliasing: dst = a.
	d := e.upload(a, n)
	e.b.Add(d, d, ct)
	want := make([]float64, n)
	for i := range want {
		want[i] = float64(a[i]) + float64(c[i])
	}
	e.check("add in place", e.download(d), want, tolElem)
}

// addBiasShapes are AddBias's shapes: one row (decode), a row shorter
// than a chunk, many rows, and a view's rows (row0 > 0).
var addBiasShapes = []struct{ rows, cols, row0 int }{{1, 64, 0}, {5, 37, 0}, {300, 896, 0}, {4, 128, 3}}

func testAddBias(e *env) {
	for _, s := range addBiasShapes {
		all := e.randn((s.row0 + s.rows) * s.cols)
		bias := e.randn(s.cols)
		xt, bt := e.upload(all, s.row0+s.rows, s.cols), e.upload(bias, s.cols)
		e.b.AddBias(e.b.View(xt, s.row0, s.rows), bt)
		want := f64(all)
		for i := s.row0 * s.cols; i < len(want); i++ {
			want[i] += float64(bias[i%s.cols])
		}
		e.check(fmt.Sprintf("addbias %dx%d from row %d", s.rows, s.cols, s.row0), e.download(xt), want, tolElem)
	}
}

// headNormShapes are the per-head RMSNorms' shapes (Qwen3's q_norm/k_norm:
// a [rows, heads·headDim] tensor reshaped to [rows·heads, headDim], in
// place): one decode row, Qwen3's head_dim 128 over several rows, and a
// View's rows (row0 > 0) reshaped.
var headNormShapes = []struct{ rows, heads, hd, row0 int }{{1, 4, 16, 0}, {7, 8, 128, 0}, {3, 2, 64, 2}}

// refHeadNorm is RefRMSNorm over each head of the rows of x from row0 on,
// the rows before row0 unchanged.
func refHeadNorm(x, w []float32, row0, heads, hd int) []float64 {
	want := f64(x)
	lo := row0 * heads * hd
	copy(want[lo:], RefRMSNorm(x[lo:], w, hd, 1e-6))
	return want
}

func testHeadRMSNorm(e *env) {
	for _, s := range headNormShapes {
		all := e.randn((s.row0 + s.rows) * s.heads * s.hd)
		w := e.randn(s.hd)
		xt, wt := e.upload(all, s.row0+s.rows, s.heads*s.hd), e.upload(w, s.hd)
		v := e.b.Reshape(e.b.View(xt, s.row0, s.rows), s.rows*s.heads, s.hd)
		if got := v.Shape(); len(got) != 2 || got[0] != s.rows*s.heads || got[1] != s.hd {
			e.t.Fatalf("Reshape: shape %v, want [%d %d]", got, s.rows*s.heads, s.hd)
		}
		e.b.RMSNorm(v, v, wt, 1e-6)
		e.check(fmt.Sprintf("head rmsnorm %dx%dx%d from row %d", s.rows, s.heads, s.hd, s.row0), e.download(xt),
			refHeadNorm(all, w, s.row0, s.heads, s.hd), tolNorm)
	}
}

// ropeTable is a table of inverse frequencies the RoPE ops are given
// (inv) with the frequencies of the reference (ref, float64).
type ropeTable struct {
	inv []float32
	ref []float64
}

// llama31 is Llama 3.1's RoPE scaling (rope_theta 500000).
var llama31 = hfconfig.RopeScaling{Type: hfconfig.RopeLlama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}

// ropeTableOf returns the table of runtime.RoPEFreqs for head size hd:
// plain RoPE of rope_theta 10000, its reference the formula in float64, or
// with scaled Llama 3.1's (rope_theta 500000), its reference the table
// itself (runtime's tests check its values; the ops' tests check that the
// ops rotate by the table they are given).
func ropeTableOf(hd int, scaled bool) ropeTable {
	theta, s := 10000.0, hfconfig.RopeScaling{}
	if scaled {
		theta, s = 500000, llama31
	}
	inv, err := runtime.RoPEFreqs(hd, theta, s)
	if err != nil {
		panic(err)
	}
	ref := make([]float64, len(inv))
	for j, v := range inv {
		ref[j] = float64(v)
		if !scaled {
			ref[j] = 1 / math.Pow(theta, float64(2*j)/float64(hd))
		}
	}
	return ropeTable{inv: inv, ref: ref}
}

// refRoPE rotates x [rows, cols] as RoPE does, in float64, by the inverse
// frequencies inv [rd/2]: the first rd = 2·len(inv) channels of each head
// of hd, the rest kept (partial RoPE).
func refRoPE(x []float32, cols, hd, pos0 int, inv []float64) []float64 {
	out := f64(x)
	d2 := len(inv)
	for t := 0; t < len(x)/cols; t++ {
		for h0 := 0; h0 < cols; h0 += hd {
			for j := range d2 {
				a := float64(pos0+t) * inv[j]
				i1, i2 := t*cols+h0+j, t*cols+h0+j+d2
				x1, x2 := float64(x[i1]), float64(x[i2])
				out[i1] = x1*math.Cos(a) - x2*math.Sin(a)
				out[i2] = x2*math.Cos(a) + x1*math.Sin(a)
			}
		}
	}
	return out
}

// testRoPE checks RoPE with plain tables and with Llama 3.1's scaled one
// past its original context of 8192 positions, where its low
// frequencies, divided by 8, rotate by angles far from the plain table's,
// over whole heads and over their first rd channels (partial RoPE:
// Phi-4-mini's 96 of 128, the rest kept).
func testRoPE(e *env) {
	for _, s := range []struct {
		t, heads, hd, pos0 int
		scaled             bool
		rd                 int // rotary dimension; 0: hd
	}{{1, 1, 2, 0, false, 0}, {5, 4, 8, 0, false, 0}, {9, 2, 128, 37, false, 0}, {3, 3, 64, 1000, false, 0}, {9, 2, 128, 9000, true, 0}, {4, 3, 64, 3000, true, 0},
		{9, 3, 128, 37, false, 96}, {4, 2, 128, 9000, true, 96}, {5, 4, 8, 3, false, 2}, {3, 2, 12, 5, false, 6}} {
		e.t.Run(fmt.Sprintf("T%d_h%d_d%d_p%d_scaled%v_rd%d", s.t, s.heads, s.hd, s.pos0, s.scaled, s.rd), func(t *testing.T) {
			e := &env{t: t, b: e.b, rng: e.rng}
			cols := s.heads * s.hd
			x := e.randn(s.t * cols)
			xt := e.upload(x, s.t, cols)
			tab := ropeTableOf(cmp.Or(s.rd, s.hd), s.scaled)
			e.b.RoPE(xt, s.hd, s.pos0, tab.inv)
			// The fp32 angle (transformers computes pos*inv_freq in fp32)
			// differs from the exact one by ~pos·2⁻²⁴ rad.
			e.check("rope", e.download(xt), refRoPE(x, cols, s.hd, s.pos0, tab.ref), tolRoPE*float64(1+s.pos0*s.pos0))
		})
	}
}

// testScaleTail checks runtime.ScaleTail (the backend's TailScaler, or
// the host fallback): the channels from c0 on of every head times f, the
// others exact.
func testScaleTail(e *env) {
	for _, s := range []struct{ t, heads, hd, c0 int }{{3, 4, 128, 96}, {5, 2, 12, 4}, {2, 3, 8, 8}, {1, 2, 8, 0}} {
		e.t.Run(fmt.Sprintf("T%d_h%d_d%d_c%d", s.t, s.heads, s.hd, s.c0), func(t *testing.T) {
			e := &env{t: t, b: e.b, rng: e.rng}
			cols := s.heads * s.hd
			x := e.randn(s.t * cols)
			xt := e.upload(x, s.t, cols)
			const f = 0.70588235
			runtime.ScaleTail(e.b, xt, s.hd, s.c0, f)
			want := f64(x)
			for i := range want {
				if i%s.hd >= s.c0 {
					want[i] = float64(x[i] * f)
				}
			}
			e.check("scale tail", e.download(xt), want, tolExact)
		})
	}
}

// RefAttention is the reference loop of runtime.Backend.Attention in
// float64: q [T, hq*hd], k and v [S, hkv*hd]; the scaled scores
// soft-capped where p.Softcap is positive.
func RefAttention(q, k, v []float32, T, hq, hkv int, p runtime.AttentionParams) []float64 {
	hd := p.HeadDim
	qc, kvc := hq*hd, hkv*hd
	out := make([]float64, T*qc)
	for t := range T {
		i := p.Pos0 + t
		for h := range hq {
			kh := h / (hq / hkv)
			var ws []float64
			var js []int
			for j := 0; j <= i; j++ {
				if p.Window > 0 && j <= i-p.Window {
					continue // transformers: masked when j <= i - sliding_window
				}
				var s float64
				for d := range hd {
					s += float64(q[t*qc+h*hd+d]) * float64(k[j*kvc+kh*hd+d])
				}
				s *= float64(p.Scale)
				if p.Softcap > 0 {
					c := float64(p.Softcap)
					s = c * math.Tanh(s/c)
				}
				ws = append(ws, s)
				js = append(js, j)
			}
			mx := math.Inf(-1)
			for _, w := range ws {
				mx = max(mx, w)
			}
			var sum float64
			for a := range ws {
				ws[a] = math.Exp(ws[a] - mx)
				sum += ws[a]
			}
			for a, j := range js {
				for d := range hd {
					out[t*qc+h*hd+d] += ws[a] / sum * float64(v[j*kvc+kh*hd+d])
				}
			}
		}
	}
	return out
}

func testAttention(e *env) {
	// (cap: soft-capping, under the scores' spread of about ±3.)
	for _, s := range []struct {
		t, s, hq, hkv, hd, pos0, window int
		cap                             float32
	}{
		{1, 1, 1, 1, 8, 0, 0, 0},
		{6, 6, 4, 2, 8, 0, 0, 0},
		{5, 12, 8, 2, 16, 3, 0, 0},
		{1, 40, 2, 1, 128, 39, 0, 0},
		{20, 20, 4, 4, 8, 0, 3, 0},
		{7, 30, 4, 1, 32, 13, 5, 0},
		{9, 9, 2, 2, 8, 0, 1, 0},
		{16, 16, 2, 1, 8, 0, 0, 0},
		{37, 37, 4, 2, 12, 0, 0, 0},
		{40, 50, 8, 2, 16, 10, 0, 0},
		{50, 50, 2, 1, 32, 0, 7, 0},
		{64, 100, 4, 4, 6, 36, 20, 0},
		{5, 12, 8, 2, 16, 3, 0, 1.5},
		{1, 40, 2, 1, 256, 39, 0, 1},
		{40, 50, 8, 2, 16, 10, 7, 0.8},
	} {
		name := fmt.Sprintf("T%d_S%d_hq%d_hkv%d_d%d_p%d_w%d", s.t, s.s, s.hq, s.hkv, s.hd, s.pos0, s.window)
		if s.cap > 0 {
			name += fmt.Sprintf("_cap%g", s.cap)
		}
		e.t.Run(name, func(t *testing.T) {
			e := &env{t: t, b: e.b, rng: e.rng}
			q := e.randn(s.t * s.hq * s.hd)
			k := e.randn(s.s * s.hkv * s.hd)
			v := e.randn(s.s * s.hkv * s.hd)
			p := runtime.AttentionParams{HeadDim: s.hd, Pos0: s.pos0, Window: s.window, Scale: float32(1 / math.Sqrt(float64(s.hd))), Softcap: s.cap}
			qt := e.upload(q, s.t, s.hq*s.hd)
			kt := e.upload(k, s.s, s.hkv*s.hd)
			vt := e.upload(v, s.s, s.hkv*s.hd)
			dst := e.alloc(s.t, s.hq*s.hd)
			e.b.Attention(dst, qt, kt, vt, p)
			e.check("attention", e.download(dst), RefAttention(q, k, v, s.t, s.hq, s.hkv, p), tolAttn)
		})
	}
}
