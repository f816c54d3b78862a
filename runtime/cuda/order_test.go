package cuda_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
	"github.com/gptqtool/gptqtool/runtime/cuda"
)

// moved returns rows of v [rows, cols] with column c at column slots[c].
func moved(v []float32, rows, cols int, slots []int32) []float32 {
	out := make([]float32, len(v))
	for r := range rows {
		for c, s := range slots {
			out[r*cols+int(s)] = v[r*cols+c]
		}
	}
	return out
}

func randomSlots(r *rand.Rand, n int) []int32 {
	s := make([]int32, n)
	for c, v := range r.Perm(n) {
		s[c] = int32(v)
	}
	return s
}

func download(t *testing.T, b *cuda.Backend, x runtime.Tensor) []float32 {
	t.Helper()
	v := make([]float32, x.Len())
	if err := b.Download(v, x); err != nil {
		t.Fatal(err)
	}
	return v
}

// widen is v in float64, for comparing one backend result with another
// (backendtest.NMSE takes its reference in float64).
func widen(v []float32) []float64 {
	w := make([]float64, len(v))
	for i, x := range v {
		w[i] = float64(x)
	}
	return w
}

// agree checks two results of one product: each within tol of the float64
// reference want (NMSE), and a within pairTol of b, the same sums added in
// another order (at most a rounding of the output type apart).
func agree(t *testing.T, an string, a []float32, bn string, b []float32, want []float64, tol, pairTol float64) {
	t.Helper()
	if nmse := backendtest.NMSE(a, want); !(nmse < tol) {
		t.Errorf("%s: nmse %.3g against float64", an, nmse)
	}
	if nmse := backendtest.NMSE(b, want); !(nmse < tol) {
		t.Errorf("%s: nmse %.3g against float64", bn, nmse)
	}
	if nmse := backendtest.NMSE(a, widen(b)); !(nmse < pairTol) {
		t.Errorf("%s: nmse %.3g against %s", an, nmse, bn)
	}
}

// sameBits fails unless got and want are equal element for element.
func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Errorf("%s: element %d is %v, want %v", what, i, got[i], want[i])
			return
		}
	}
}

// TestInputOrder checks runtime.InputOrderer on the device: InputSlots is
// the inverse of an act-order weight's permutation; the product of InOrder(w)
// with an input moved to those slots is the product of w with the input as
// it is, bit for bit, on every path (a one-tile kernel gathering while it
// stages, the gather kernel, dequantize + cuBLAS); and each *To op is its
// plain op with the output moved, bit for bit.
func TestInputOrder(t *testing.T) {
	b := gputest.Backend(t)
	r := rand.New(rand.NewPCG(21, 22))
	const K, N = 512, 256
	rand32 := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}

	q := randomQuant(r, K, N, 4, 128, true)
	w, err := b.LoadQuant(q)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free(w)
	st := b.InputSlots(w)
	if st == nil {
		t.Fatal("no input slots for an act-order weight")
	}
	raw := make([]byte, 4*K)
	if err := b.DownloadRaw(raw, runtime.I32, st); err != nil {
		t.Fatal(err)
	}
	slots := make([]int32, K)
	for c := range slots {
		slots[c] = int32(binary.LittleEndian.Uint32(raw[4*c:]))
	}
	for k, p := range q.Perm {
		if slots[p] != int32(k) {
			t.Fatalf("slots[%d] = %d, want %d (perm[%d] = %d)", p, slots[p], k, k, p)
		}
	}
	plain, err := b.LoadQuant(randomQuant(r, K, N, 4, 128, false))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free(plain)
	if b.InputSlots(plain) != nil || b.InOrder(plain) != plain {
		t.Error("a weight without act order has input slots or another order")
	}
	seq := b.InOrder(w)
	for _, M := range []int{1, 8, 13, 80} {
		t.Run(fmt.Sprintf("matmul-M%d", M), func(t *testing.T) {
			xv := rand32(M * K)
			x, xr := upload(t, b, runtime.F16, xv, M, K)
			xs, _ := upload(t, b, runtime.F16, moved(xr, M, K, slots), M, K)
			y1, _ := upload(t, b, runtime.F16, make([]float32, M*N), M, N)
			y2, _ := upload(t, b, runtime.F16, make([]float32, M*N), M, N)
			b.MatMul(y1, x, w)
			b.MatMul(y2, xs, seq)
			sameBits(t, "in order", download(t, b, y2), download(t, b, y1))
		})
	}

	// Widths: 8-element vectors (256), scalar rows (260), and 12800, whose
	// f32 row is over the 48 KiB a norm stages its slotted row in (its
	// stores scatter) while its 16-bit rows are staged.
	for _, H := range []int{256, 260, 12800} {
		hs := randomSlots(r, H)
		hst := i32Tensor(t, b, hs)
		for _, dt := range []runtime.DType{runtime.F16, runtime.BF16, runtime.F32} {
			t.Run(fmt.Sprintf("norms-%d-%v", H, dt), func(t *testing.T) {
				const M = 3
				x1, xr := upload(t, b, dt, rand32(M*H), M, H)
				x2, _ := upload(t, b, dt, xr, M, H)
				delta, _ := upload(t, b, dt, rand32(M*H), M, H)
				n1, _ := upload(t, b, dt, make([]float32, M*H), M, H)
				n2, _ := upload(t, b, dt, make([]float32, M*H), M, H)
				wv, err := b.Alloc(dt, H)
				if err != nil {
					t.Fatal(err)
				}
				defer b.Free(wv)
				if err := b.Upload(wv, rand32(H)); err != nil {
					t.Fatal(err)
				}
				b.RMSNormTo(n1, x1, wv, hst, 1e-5)
				b.RMSNorm(n2, x1, wv, 1e-5)
				sameBits(t, "rmsnorm to slots", download(t, b, n1), moved(download(t, b, n2), M, H, hs))
				b.AddRMSNormTo(n1, x1, delta, wv, hst, 1e-5)
				b.AddRMSNorm(n2, x2, delta, wv, 1e-5)
				sameBits(t, "add+rmsnorm residual", download(t, b, x1), download(t, b, x2))
				sameBits(t, "add+rmsnorm to slots", download(t, b, n1), moved(download(t, b, n2), M, H, hs))
			})
		}
	}

	t.Run("paged-attention", func(t *testing.T) {
		const hd, hq, hkv, bs, blocks, width, rows = 64, 4, 2, 4, 32, 24, 3
		pos := []int32{5, 90, 40}
		tables := make([]int32, rows*width)
		perm := r.Perm(blocks)
		for i := range rows {
			for j := range width {
				tables[i*width+j] = int32(perm[(i*5+j)%blocks])
			}
		}
		qt, _ := upload(t, b, runtime.F16, rand32(rows*hq*hd), rows, hq*hd)
		kc, _ := upload(t, b, runtime.F16, rand32(blocks*bs*hkv*hd), blocks*bs, hkv*hd)
		vc, _ := upload(t, b, runtime.F16, rand32(blocks*bs*hkv*hd), blocks*bs, hkv*hd)
		a1, _ := upload(t, b, runtime.F16, make([]float32, rows*hq*hd), rows, hq*hd)
		a2, _ := upload(t, b, runtime.F16, make([]float32, rows*hq*hd), rows, hq*hd)
		as := randomSlots(r, hq*hd)
		p := runtime.AttentionParams{HeadDim: hd, Scale: 0.125}
		pt, tt, ast := i32Tensor(t, b, pos), i32Tensor(t, b, tables), i32Tensor(t, b, as)
		b.PagedAttentionTo(a1, qt, kc, vc, tt, pt, bs, p, ast)
		b.PagedAttention(a2, qt, kc, vc, tt, pt, bs, p)
		sameBits(t, "attention to slots", download(t, b, a1), moved(download(t, b, a2), rows, hq*hd, as))
	})

	for _, M := range []int{1, 8, 13, 80} {
		t.Run(fmt.Sprintf("glu-M%d", M), func(t *testing.T) {
			gate := randomQuant(r, K, 192, 4, 128, true)
			up := randomQuant(r, K, 192, 4, 128, false)
			up.Perm = gate.Perm
			glu, err := b.LoadQuantGLU(gate, up)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Free(glu)
			gs := randomSlots(r, 192)
			x, _ := upload(t, b, runtime.F16, rand32(M*K), M, K)
			o1, _ := upload(t, b, runtime.F16, make([]float32, M*192), M, 192)
			o2, _ := upload(t, b, runtime.F16, make([]float32, M*192), M, 192)
			b.MatMulGLUTo(o1, x, glu, i32Tensor(t, b, gs))
			b.MatMulGLU(o2, x, glu)
			sameBits(t, "glu to slots", download(t, b, o1), moved(download(t, b, o2), M, 192, gs))
		})
	}
}

// withNormFuse has products of up to rows rows normalize their input until
// the test ends, GLU ones too: the wide kernels, which do not normalize
// (FuseNorm declines GLU weights while they are on), are off meanwhile,
// and so are the plain wide kernels, which add up in another order than
// the one-tile kernels that normalize (the tests compare bits).
func withNormFuse(t *testing.T, b *cuda.Backend, rows int) {
	prev, wide := b.NormFusedRows(), b.QMMAWide()
	plain, most := b.QMMAPlain()
	b.SetNormFuse(rows)
	b.SetQMMAWide(0)
	b.SetQMMAPlain(0, most)
	t.Cleanup(func() { b.SetNormFuse(prev); b.SetQMMAWide(wide); b.SetQMMAPlain(plain, most) })
}

// normals returns a source of n values scale·N(0, 1) drawn from r.
func normals(r *rand.Rand) func(n int, scale float64) []float32 {
	return func(n int, scale float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(scale * r.NormFloat64())
		}
		return v
	}
}

// normedWeights loads the weights of two normalizing products of K inputs
// with one permutation (act order or none): a split one (128 and 64
// outputs) and a GLU one (gate and up of 128).
func normedWeights(t *testing.T, b *cuda.Backend, r *rand.Rand, K int, perm bool) (split, glu runtime.Tensor) {
	t.Helper()
	qa, qb := randomQuant(r, K, 128, 4, 128, perm), randomQuant(r, K, 64, 4, 128, false)
	g, u := randomQuant(r, K, 128, 4, 128, false), randomQuant(r, K, 128, 4, 128, false)
	qb.Perm, g.Perm, u.Perm = qa.Perm, qa.Perm, qa.Perm
	split, err := b.LoadQuantSplit([]*runtime.QuantWeight{qa, qb})
	if err != nil {
		t.Fatal(err)
	}
	if glu, err = b.LoadQuantGLU(g, u); err != nil {
		t.Fatal(err)
	}
	return split, glu
}

// fusedNorms uploads the norm weight w (dtype dt, as nw) and fuses it to
// split's and glu's products (FuseNorm).
func fusedNorms(t *testing.T, b *cuda.Backend, dt runtime.DType, w []float32, split, glu runtime.Tensor) (nw, fs, fg runtime.Tensor) {
	t.Helper()
	nw, _ = upload(t, b, dt, w, 1, len(w))
	fs, err := b.FuseNorm(nw, split)
	if err != nil || fs == nil {
		t.Fatalf("FuseNorm: %v, %v", fs, err)
	}
	if fg, err = b.FuseNorm(nw, glu); err != nil || fg == nil {
		t.Fatalf("FuseNorm: %v, %v", fg, err)
	}
	return nw, fs, fg
}

// TestNormFuse checks runtime.NormFuser on the device: a split and a GLU
// product that normalize their input as they stage it (one-tile kernels,
// up to 8 rows; the norm kernel first for more) give, bit for bit, the
// product of the rows the norm kernel writes, with and without act order,
// in f16 and bf16, at the 7B shape's width and a narrow one.
func TestNormFuse(t *testing.T) {
	b := gputest.Backend(t)
	withNormFuse(t, b, 8)
	r := rand.New(rand.NewPCG(31, 32))
	rand32 := normals(r)
	for _, K := range []int{512, 4096} {
		for _, perm := range []bool{false, true} {
			split, glu := normedWeights(t, b, r, K, perm)
			for _, dt := range []runtime.DType{runtime.F16, runtime.BF16} {
				nw, fs, fg := fusedNorms(t, b, dt, rand32(K, 0.5), split, glu)
				for _, M := range []int{1, 5, 8, 13} {
					t.Run(fmt.Sprintf("K%d-perm%v-%v-M%d", K, perm, dt, M), func(t *testing.T) {
						x, _ := upload(t, b, dt, rand32(M*K, 3), M, K)
						xn, _ := upload(t, b, dt, make([]float32, M*K), M, K)
						b.RMSNorm(xn, x, nw, 1e-5)
						outs := func() []runtime.Tensor {
							a, _ := upload(t, b, dt, make([]float32, M*128), M, 128)
							c, _ := upload(t, b, dt, make([]float32, M*64), M, 64)
							return []runtime.Tensor{a, c}
						}
						o1, o2 := outs(), outs()
						b.MatMulSplitNorm(o1, x, fs, 1e-5, split)
						b.MatMulSplit(o2, xn, split)
						for i := range o1 {
							sameBits(t, fmt.Sprintf("split output %d", i), download(t, b, o1[i]), download(t, b, o2[i]))
						}
						g1, _ := upload(t, b, dt, make([]float32, M*128), M, 128)
						g2, _ := upload(t, b, dt, make([]float32, M*128), M, 128)
						b.MatMulGLUNorm(g1, x, fg, 1e-5, glu)
						b.MatMulGLU(g2, xn, glu)
						sameBits(t, "glu", download(t, b, g1), download(t, b, g2))
					})
				}
				b.Free(fs)
				b.Free(fg)
				b.Free(nw)
			}
			b.Free(split)
			b.Free(glu)
		}
	}
	// While the wide kernels take GLU products of the rows that would
	// normalize, FuseNorm declines GLU weights and still fuses split ones.
	t.Run("wide", func(t *testing.T) {
		split, glu := normedWeights(t, b, r, 512, true)
		defer b.Free(split)
		defer b.Free(glu)
		nw, _ := upload(t, b, runtime.F16, rand32(512, 0.5), 1, 512)
		defer b.Free(nw)
		b.SetQMMAWide(1)
		defer b.SetQMMAWide(0)
		if fg, err := b.FuseNorm(nw, glu); err != nil || fg != nil {
			t.Errorf("FuseNorm of a GLU weight with the wide kernels on: %v, %v; want nil, nil", fg, err)
		}
		fs, err := b.FuseNorm(nw, split)
		if err != nil || fs == nil {
			t.Fatalf("FuseNorm of a split weight with the wide kernels on: %v, %v", fs, err)
		}
		b.Free(fs)
	})
	// A norm weight FuseNorm did not make is refused.
	defer func() {
		if recover() == nil {
			t.Error("a product with a plain norm weight did not panic")
		}
	}()
	q := randomQuant(r, 512, 128, 4, 128, false)
	w, err := b.LoadQuantSplit([]*runtime.QuantWeight{q, q})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free(w)
	x, _ := upload(t, b, runtime.F16, rand32(512, 1), 1, 512)
	o, _ := upload(t, b, runtime.F16, make([]float32, 128), 1, 128)
	o2, _ := upload(t, b, runtime.F16, make([]float32, 128), 1, 128)
	nw, _ := upload(t, b, runtime.F16, rand32(512, 1), 1, 512)
	b.MatMulSplitNorm([]runtime.Tensor{o, o2}, x, nw, 1e-5, w)
}

// TestTimeGraphs times replays of a recorded graph of 50 products: every
// replay counted once, device time positive and below the wall time of
// the replays, nothing counted once timing is off.
func TestTimeGraphs(t *testing.T) {
	b := gputest.Backend(t)
	r := rand.New(rand.NewPCG(41, 42))
	w, err := b.LoadQuant(randomQuant(r, 4096, 4096, 4, 128, false))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free(w)
	x, _ := upload(t, b, runtime.F16, make([]float32, 4096), 1, 4096)
	y, _ := upload(t, b, runtime.F16, make([]float32, 4096), 1, 4096)
	b.MatMul(y, x, w) // scratch made outside the recording
	g, err := b.Capture(func() error {
		for range 50 {
			b.MatMul(y, x, w)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	if !b.TimeGraphs(true) {
		t.Skip("this driver has no events to time graphs with")
	}
	start := time.Now()
	for range 5 {
		if err := g.Launch(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start).Seconds()
	n, secs, err := b.GraphTime()
	if err != nil || n != 5 || secs <= 0 || secs > wall {
		t.Errorf("%d replays timed, %.6f s (wall %.6f s), %v; want 5, positive, at most the wall time", n, secs, wall, err)
	}
	b.TimeGraphs(false)
	if err := g.Launch(); err != nil {
		t.Fatal(err)
	}
	if n2, _, _ := b.GraphTime(); n2 != 5 {
		t.Errorf("%d replays counted after timing was turned off, want 5", n2)
	}
}
