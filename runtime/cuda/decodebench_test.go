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

// inGraph times op as a decode step runs it: recorded 100 times in one CUDA
// graph, so that a launch costs what it costs inside a replayed step.
func inGraph(b *testing.B, be *cuda.Backend, op func()) {
	b.Helper()
	op() // scratch buffers are made outside the recording
	if err := be.Sync(); err != nil {
		b.Fatal(err)
	}
	const reps = 100
	g, err := be.Capture(func() error {
		for range reps {
			op()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Free()
	g.Launch()
	be.Sync()
	b.ResetTimer()
	for b.Loop() {
		if err := g.Launch(); err != nil {
			b.Fatal(err)
		}
		if err := be.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)/reps*1e6, "µs/op")
}

func reportBW(b *testing.B, bytes float64) {
	b.ReportMetric(bytes/(b.Elapsed().Seconds()/float64(b.N)/100)/1e9, "GB/s")
}

// BenchmarkDecodeOps times each op of a Mistral-7B decode step (4-bit g128
// act order weights, fp16 activations) inside a graph, at 1, 8, 16, 32 and
// 64 rows (16: the two-tile warpgroup-MMA products).
func BenchmarkDecodeOps(b *testing.B) {
	be := gputest.Backend(b)
	r := rand.New(rand.NewPCG(1, 2))
	const H, I, hq, hkv, hd, V = 4096, 14336, 32, 8, 128, 32002
	q4 := func(K, N int, perm []int32) *runtime.QuantWeight {
		w := randomQuant(r, K, N, 4, 128, false)
		w.Perm = perm
		return w
	}
	permOf := func(K int) []int32 {
		p := make([]int32, K)
		for i, v := range r.Perm(K) {
			p[i] = int32(v)
		}
		return p
	}
	ph, pi := permOf(H), permOf(I)
	must := func(t runtime.Tensor, err error) runtime.Tensor {
		if err != nil {
			b.Fatal(err)
		}
		return t
	}
	qkv := must(be.LoadQuantSplit([]*runtime.QuantWeight{q4(H, hq*hd, ph), q4(H, hkv*hd, ph), q4(H, hkv*hd, ph)}))
	o := must(be.LoadQuant(q4(hq*hd, H, permOf(H))))
	gu := must(be.LoadQuantGLU(q4(H, I, ph), q4(H, I, ph)))
	down := must(be.LoadQuant(q4(I, H, pi)))
	head := randTensor(b, be, runtime.F16, V, H)
	norm := randTensor(b, be, runtime.F16, H)
	// The norm weight for products that normalize their input (NormFuser,
	// off by default).
	// (The wide GLU kernels, which do not normalize, off while gate/up's is
	// made: FuseNorm declines GLU weights while they are on.)
	prevFuse, prevWide := be.NormFusedRows(), be.QMMAWide()
	be.SetNormFuse(8)
	defer be.SetNormFuse(prevFuse)
	be.SetQMMAWide(0)
	qkvNorm, guNorm := must(be.FuseNorm(norm, qkv)), must(be.FuseNorm(norm, gu))
	be.SetQMMAWide(prevWide)
	defer be.Free(qkvNorm)
	defer be.Free(guNorm)
	const bs, blocks, ctx = 16, 2048, 256
	kc, vc := randTensor(b, be, runtime.F16, blocks*bs, hkv*hd), randTensor(b, be, runtime.F16, blocks*bs, hkv*hd)
	defer func() {
		for _, t := range []runtime.Tensor{qkv, o, gu, down, head, norm, kc, vc} {
			be.Free(t)
		}
	}()
	wbytes := func(K, N int) float64 { return float64(K)*float64(N)/2 + float64(K/128)*float64(N)*4 + 4*float64(K) }
	for _, M := range []int{1, 8, 16, 32, 64} {
		x, xn := randTensor(b, be, runtime.F16, M, H), randTensor(b, be, runtime.F16, M, H)
		q, k, v := randTensor(b, be, runtime.F16, M, hq*hd), randTensor(b, be, runtime.F16, M, hkv*hd), randTensor(b, be, runtime.F16, M, hkv*hd)
		att, act := randTensor(b, be, runtime.F16, M, hq*hd), randTensor(b, be, runtime.F16, M, I)
		logits, _ := be.Alloc(runtime.F32, M, V)
		pos, slot, tab := make([]int32, M), make([]int32, M), make([]int32, M*(ctx/bs))
		for i := range M {
			pos[i] = ctx - 1
			for j := range ctx / bs {
				tab[i*(ctx/bs)+j] = int32(r.IntN(blocks))
			}
			slot[i] = tab[i*(ctx/bs)+(ctx-1)/bs]*bs + (ctx-1)%bs
		}
		pt, st, tt := i32Tensor(b, be, pos), i32Tensor(b, be, slot), i32Tensor(b, be, tab)
		p := runtime.AttentionParams{HeadDim: hd, Scale: float32(1 / math.Sqrt(hd))}
		inv := plainRoPE(b, hd, 10000)
		ops := []struct {
			name  string
			bytes float64
			op    func()
		}{
			{"rmsnorm", 0, func() { be.RMSNorm(xn, x, norm, 1e-5) }},
			{"add_rmsnorm", 0, func() { be.AddRMSNorm(xn, x, xn, norm, 1e-5) }},
			{"qkv", wbytes(H, (hq+2*hkv)*hd), func() { be.MatMulSplit([]runtime.Tensor{q, k, v}, xn, qkv) }},
			{"rope_store", 0, func() { be.RoPEStore(q, k, v, kc, vc, pt, st, hd, inv) }},
			{"paged_attn_256", float64(M) * ctx * 2 * hkv * hd * 2, func() { be.PagedAttention(att, q, kc, vc, tt, pt, bs, p) }},
			{"o_proj_res", wbytes(hq*hd, H), func() { be.MatMulAdd(x, att, o, x) }},
			{"gate_up_glu", wbytes(H, 2*I), func() { be.MatMulGLU(act, xn, gu) }},
			{"qkv_norm", wbytes(H, (hq+2*hkv)*hd), func() { be.MatMulSplitNorm([]runtime.Tensor{q, k, v}, x, qkvNorm, 1e-5, qkv) }},
			{"qkv_rope", wbytes(H, (hq+2*hkv)*hd), func() {
				be.MatMulSplitRoPE([]runtime.Tensor{q, k, v}, xn, nil, 1e-5, qkv, kc, vc, pt, st, hd, inv)
			}},
			{"qkv_norm_rope", wbytes(H, (hq+2*hkv)*hd), func() {
				be.MatMulSplitRoPE([]runtime.Tensor{q, k, v}, x, qkvNorm, 1e-5, qkv, kc, vc, pt, st, hd, inv)
			}},
			{"gate_up_glu_norm", wbytes(H, 2*I), func() { be.MatMulGLUNorm(act, x, guNorm, 1e-5, gu) }},
			{"down_res", wbytes(I, H), func() { be.MatMulAdd(x, act, down, x) }},
			{"head_f16", float64(V) * H * 2, func() { be.MatMul(logits, xn, head) }},
		}
		for _, o := range ops {
			b.Run(fmt.Sprintf("M%d/%s", M, o.name), func(b *testing.B) {
				inGraph(b, be, o.op)
				if o.bytes > 0 {
					reportBW(b, o.bytes)
				}
			})
		}
		// Token draws from the step's logits, transfers and wait included
		// (not in a graph).
		be.MatMul(logits, xn, head)
		rows := make([]int, M)
		for i := range rows {
			rows[i] = i
		}
		for _, d := range []struct {
			name string
			rule runtime.SampleParams
		}{{"sample_greedy", runtime.SampleParams{}}, {"sample_t1", runtime.SampleParams{Temperature: 1, U: 0.5}},
			{"sample_topp", runtime.SampleParams{Temperature: 0.7, TopP: 0.9, TopK: 50, U: 0.5}}} {
			b.Run(fmt.Sprintf("M%d/%s", M, d.name), func(b *testing.B) {
				rules, toks := make([]runtime.SampleParams, M), make([]int32, M)
				for i := range rules {
					rules[i] = d.rule
				}
				for range b.N {
					if err := be.SampleTokens(toks, logits, rows, rules); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/op")
			})
		}
		for _, t := range []runtime.Tensor{x, xn, q, k, v, att, act, logits, pt, st, tt} {
			be.Free(t)
		}
	}
}

// BenchmarkPiecesGLU times the 7B shape's 8-bit gate/up (g128, act order,
// fp16 activations) alone, at one and two rows, inside a graph (as
// BenchmarkDecodeOps does: 100 launches back to back), on the pieces
// kernel in its default shape (qglu.cu, the default at 8 bits), in the
// fiftieth session's shape (32 warps, 4 chunks in flight a warp, no shared
// memory held beyond its need), on the wide kernels, normalizing its input
// (GPTQTOOL_QGLU_NORM's MatMulGLUNormTo), and as the norm kernel followed by
// the pieces kernel: its aggregate read rate, GB/s, to set against
// BenchmarkStream's plain streams. Also the 4-bit gate/up on the pieces
// kernel (pieces4), the 8-bit down product alone, and gate/up, down and the
// norm after it (MatMulGLUDownNormTo).
func BenchmarkPiecesGLU(b *testing.B) {
	be := gputest.Backend(b)
	r := rand.New(rand.NewPCG(3, 4))
	const H, I = 4096, 14336
	perm := make([]int32, H)
	for i, v := range r.Perm(H) {
		perm[i] = int32(v)
	}
	// gate/up of bits-bit g128 act-order weights.
	loadGU := func(bits int) runtime.Tensor {
		q := func() *runtime.QuantWeight {
			w := randomQuant(r, H, I, bits, 128, false)
			w.Perm = perm
			return w
		}
		gu, err := be.LoadQuantGLU(q(), q())
		if err != nil {
			b.Fatal(err)
		}
		return gu
	}
	gu, gu4 := loadGU(8), loadGU(4)
	defer be.Free(gu)
	defer be.Free(gu4)
	norm := randTensor(b, be, runtime.F16, H)
	defer be.Free(norm)
	defer be.SetQGLUPieces(be.QGLUPieces())
	defer be.SetQGLUShape(0, 0)
	defer be.SetQGLUNorm(be.GLUNormRows())
	be.SetQGLUNorm(2)
	guNorm, err := be.FuseGLUNorm(norm, gu)
	if err != nil || guNorm == nil {
		b.Fatalf("FuseGLUNorm: %v, %v", guNorm, err)
	}
	defer be.Free(guNorm)
	bytes := float64(H)*float64(2*I) + float64(H/128)*float64(2*I)*4 + 4*H
	bytes4 := float64(H)*float64(2*I)/2 + float64(H/128)*float64(2*I)*4 + 4*H
	// down's 8-bit product alone (the plain wide kernels at one row), whose
	// loop the step's trace has streaming faster a block than gate/up's.
	permI := make([]int32, I)
	for i, v := range r.Perm(I) {
		permI[i] = int32(v)
	}
	dw := randomQuant(r, I, H, 8, 128, false)
	dw.Perm = permI
	down, err := be.LoadQuant(dw)
	if err != nil {
		b.Fatal(err)
	}
	defer be.Free(down)
	downBytes := float64(I)*float64(H) + float64(I/128)*float64(H)*4 + 4*I
	downIn := be.InOrder(down) // (as a decode step has it: its input in its order)
	for _, M := range []int{1, 2} {
		x, xn, xo := randTensor(b, be, runtime.F16, M, H), randTensor(b, be, runtime.F16, M, H), randTensor(b, be, runtime.F16, M, H)
		act := randTensor(b, be, runtime.F16, M, I)
		for _, v := range []struct {
			name         string
			pieces, w, d int
			op           func()
			bytes        float64
		}{
			{"pieces", 2, 0, 0, func() { be.MatMulGLU(act, xn, gu) }, bytes},
			{"pieces4", 2, 0, 0, func() { be.MatMulGLU(act, xn, gu4) }, bytes4},
			{"pieces_w32d4", 2, 32, 4, func() { be.MatMulGLU(act, xn, gu) }, bytes},
			{"wide", 0, 0, 0, func() { be.MatMulGLU(act, xn, gu) }, bytes},
			{"pieces_norm", 2, 0, 0, func() { be.MatMulGLUNormTo(act, x, guNorm, 1e-5, gu, nil) }, bytes},
			{"norm_then_pieces", 2, 0, 0, func() {
				be.RMSNorm(xn, x, norm, 1e-5)
				be.MatMulGLU(act, xn, gu)
			}, bytes},
			{"down", 2, 0, 0, func() { be.MatMulAdd(x, act, down, x) }, downBytes},
			// gate/up, down and the norm after it.
			{"mlp", 2, 0, 0, func() { be.MatMulGLUDownNormTo(act, xn, gu, nil, x, downIn, xo, norm, nil, 1e-5) }, bytes + downBytes},
		} {
			b.Run(fmt.Sprintf("M%d/%s", M, v.name), func(b *testing.B) {
				be.SetQGLUPieces(v.pieces)
				be.SetQGLUShape(v.w, v.d)
				if v.w != 0 {
					be.SetQGLUPad(0) // (the fiftieth session's blocks held only their need)
				}
				inGraph(b, be, v.op)
				be.SetQGLUPad(-1)
				reportBW(b, v.bytes)
			})
		}
		for _, t := range []runtime.Tensor{x, xn, xo, act} {
			be.Free(t)
		}
	}
}

// BenchmarkPagedAttention times a 7B layer's decode attention (32 query and
// 8 kv heads of 128, fp16) in a graph for contexts of 256 to 4096 positions
// and several fewest positions a split block takes (SetAttentionSplit).
func BenchmarkPagedAttention(b *testing.B) {
	be := gputest.Backend(b)
	r := rand.New(rand.NewPCG(3, 4))
	const hq, hkv, hd, bs, blocks = 32, 8, 128, 16, 4096
	kc, vc := randTensor(b, be, runtime.F16, blocks*bs, hkv*hd), randTensor(b, be, runtime.F16, blocks*bs, hkv*hd)
	defer be.Free(kc)
	defer be.Free(vc)
	defer be.SetAttentionSplit(0)
	for _, M := range []int{1, 8, 32} {
		for _, ctx := range []int{256, 1024, 4096} {
			q, att := randTensor(b, be, runtime.F16, M, hq*hd), randTensor(b, be, runtime.F16, M, hq*hd)
			width := ctx / bs
			pos, tab := make([]int32, M), make([]int32, M*width)
			for i := range M {
				pos[i] = int32(ctx - 1)
				for j := range width {
					tab[i*width+j] = int32(r.IntN(blocks))
				}
			}
			pt, tt := i32Tensor(b, be, pos), i32Tensor(b, be, tab)
			p := runtime.AttentionParams{HeadDim: hd, Scale: float32(1 / math.Sqrt(hd))}
			for _, split := range []int{32, 128, 512} {
				b.Run(fmt.Sprintf("M%d/ctx%d/split%d", M, ctx, split), func(b *testing.B) {
					be.SetAttentionSplit(split)
					inGraph(b, be, func() { be.PagedAttention(att, q, kc, vc, tt, pt, bs, p) })
					reportBW(b, float64(M)*float64(ctx)*2*hkv*hd*2)
				})
			}
			for _, t := range []runtime.Tensor{q, att, pt, tt} {
				be.Free(t)
			}
		}
	}
}

// i32Tensor uploads v as an I32 tensor.
func i32Tensor(tb testing.TB, be runtime.Backend, v []int32) runtime.Tensor {
	t, err := be.Alloc(runtime.I32, len(v))
	if err != nil {
		tb.Fatal(err)
	}
	if err := be.UploadRaw(t, i32s(v), runtime.I32); err != nil {
		tb.Fatal(err)
	}
	return t
}
