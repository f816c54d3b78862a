package cuda_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// TestMoEDecodeOnDevice decodes three sequences of mixture-of-experts
// checkpoints through the paged decode step on the device against the fp32
// CPU reference: a 4-bit act-order GPTQ Mixtral (8 experts, 2 a token) in
// fp16, routed on the device (runtime.ExpertRouter: decodeMatchesCPU's
// replayed steps are recorded and must give the bits of the steps run op
// by op; by slots and by runs of slots), and a bf16 Qwen3-MoE (16 experts, 4 a token, q/k norms, a dense
// last layer), whose floating-point experts the host routes (its steps run
// op by op either way: the experts' rows gathered, scaled by ScaleRows and
// added back); and a Qwen2-MoE (12 experts, 4 a token, a shared expert
// weighted by its sigmoid gate, q/k/v biases, a dense middle layer) both
// ways, GPTQ 4-bit in fp16 (routed on the device) and bf16; and a GPTQ
// 4-bit OLMoE (10 experts, 3 a token, q/k norms over the whole
// projections) in fp16.
func TestMoEDecodeOnDevice(t *testing.T) {
	b := gputest.Backend(t)
	q := gptq.DefaultQuantizeConfig()
	q.Bits, q.GroupSize, q.DescAct = 4, 128, true
	shape := map[string]any{"hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 2000}
	mixtral := map[string]any{"intermediate_size": 512}
	qwen := map[string]any{"moe_intermediate_size": 256, "head_dim": 64}
	qwen2 := map[string]any{"moe_intermediate_size": 256, "shared_expert_intermediate_size": 384, "intermediate_size": 512}
	olmoe := map[string]any{"intermediate_size": 256}
	for k, v := range shape {
		mixtral[k], qwen[k], qwen2[k], olmoe[k] = v, v, v, v
	}
	for _, tc := range []struct {
		name string
		dir  string
		dt   runtime.DType
	}{
		{"mixtral-gptq-4bit", fixtures.Mixtral(t, mixtral, synth.Options{Seed: 11, GPTQ: &q}), runtime.F16},
		{"qwen3_moe-bf16", fixtures.Qwen3MoE(t, qwen, synth.Options{DType: "bf16", Seed: 11}), runtime.BF16},
		// (A shared expert: sigmoid_rows and moe_combine's extra.)
		{"qwen2_moe-gptq-4bit", fixtures.Qwen2MoE(t, qwen2, synth.Options{Seed: 11, GPTQ: &q}), runtime.F16},
		{"qwen2_moe-bf16", fixtures.Qwen2MoE(t, qwen2, synth.Options{DType: "bf16", Seed: 12}), runtime.BF16},
		// (q/k norms over the whole projections in a MoE decode step.)
		{"olmoe-gptq-4bit", fixtures.Olmoe(t, olmoe, synth.Options{Seed: 13, GPTQ: &q}), runtime.F16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			decodeMatchesCPU(t, b, tc.dir, tc.dt)
		})
		if tc.dt == runtime.F16 {
			// Three rows of top 2 of 8 experts are not more slots than
			// experts: by default each slot is multiplied on its own, so
			// the runs' kernels take the GPTQ Mixtral once more.
			t.Run(tc.name+"-runs", func(t *testing.T) {
				defer b.SetMoERuns(b.SetMoERuns(2))
				decodeMatchesCPU(t, b, tc.dir, tc.dt)
			})
		}
	}
}

// ints uploads int32 values to an I32 tensor of backend b.
func ints(t *testing.T, b runtime.Backend, v []int32) runtime.Tensor {
	t.Helper()
	x, err := b.Alloc(runtime.I32, len(v))
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 4*len(v))
	for i, n := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], uint32(n))
	}
	if err := b.UploadRaw(x, raw, runtime.I32); err != nil {
		t.Fatal(err)
	}
	return x
}

// intsOf downloads an I32 tensor of backend b.
func intsOf(t *testing.T, b runtime.Backend, x runtime.Tensor) []int32 {
	t.Helper()
	raw := make([]byte, 4*x.Len())
	if err := b.DownloadRaw(raw, runtime.I32, x); err != nil {
		t.Fatal(err)
	}
	v := make([]int32, x.Len())
	for i := range v {
		v[i] = int32(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return v
}

// floatsOf downloads a tensor of backend b.
func floatsOf(t *testing.T, b runtime.Backend, x runtime.Tensor) []float32 {
	t.Helper()
	v := make([]float32, x.Len())
	if err := b.Download(v, x); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestExpertRouter checks the ops of a mixture of experts routed on the
// device (runtime.ExpertRouter) against the CPU backend's: RouteTopK's
// experts, weights and order (a row of NaN logits choosing none, a row
// whose three largest logits tie) from fp32 logits rounded to fp32, fp16
// and bf16, bit for bit;
// ExpertMatMul's slots (one of them of no expert; runs of one to eight
// slots) against each slot's row multiplied by its expert with MatMul, by
// runs and slot by slot, at 4 and 8 bits, with and without act order and
// with groups of less than a chunk; CombineExperts bit for bit in fp16.
func TestExpertRouter(t *testing.T) {
	b := gputest.Backend(t)
	c := cpu.New(1).WithHalf()
	r := rand.New(rand.NewPCG(3, 17))
	for _, tc := range []struct {
		rows, E, K int
		norm       bool
		dt         runtime.DType
	}{{1, 8, 2, true, runtime.F32}, {5, 16, 4, true, runtime.F16}, {9, 128, 8, false, runtime.F32}, {64, 8, 2, true, runtime.BF16}, {128, 8, 8, true, runtime.F16}} {
		t.Run(fmt.Sprintf("route %d rows of %d experts top %d %v", tc.rows, tc.E, tc.K, tc.dt), func(t *testing.T) {
			l := make([]float32, tc.rows*tc.E)
			for i := range l {
				l[i] = float32(2 * r.NormFloat64())
			}
			if tc.rows > 2 {
				l[tc.E+3] = float32(math.NaN())               // row 1: none
				l[2*tc.E], l[2*tc.E+5], l[2*tc.E+1] = 9, 9, 9 // row 2: a tie
			}
			// fp32 logits, which the router rounds to tc.dt.
			lg, held := upload(t, b, runtime.F32, l, tc.rows, tc.E)
			lc, err := c.Alloc(runtime.F32, tc.rows, tc.E)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Upload(lc, held); err != nil {
				t.Fatal(err)
			}
			n := tc.rows * tc.K
			got, want := [3]runtime.Tensor{}, [3]runtime.Tensor{}
			for i, be := range []runtime.Backend{b, c} {
				out := &got
				if i == 1 {
					out = &want
				}
				for j := range out {
					dt, m := runtime.I32, n
					if j == 1 {
						dt = runtime.F32
					} else if j == 2 {
						m = 2 * n // the order, then its runs
					}
					if out[j], err = be.Alloc(dt, m); err != nil {
						t.Fatal(err)
					}
				}
			}
			defer func() {
				for j := range got {
					b.Free(got[j])
				}
			}()
			b.RouteTopK(got[0], got[1], got[2], lg, tc.dt, tc.K, tc.norm)
			c.RouteTopK(want[0], want[1], want[2], lc, tc.dt, tc.K, tc.norm)
			gi, wi := intsOf(t, b, got[0]), intsOf(t, c, want[0])
			if !slices.Equal(gi, wi) {
				t.Errorf("experts %v, want %v", gi, wi)
			}
			// Row 1 (a NaN) has no experts; row 2 has the first of its
			// tied experts 0, 1 and 5 that its top k holds, in order
			// among its others.
			if tie := []int32{0, 1, 5}[:min(tc.K, 3)]; tc.rows > 2 &&
				(wi[tc.K] != -1 || !slices.Equal(slices.DeleteFunc(slices.Clone(wi[2*tc.K:3*tc.K]), func(e int32) bool { return !slices.Contains(tie, e) }), tie)) {
				t.Errorf("reference: row 1 (NaN) %v, row 2 (a tie of 0, 1, 5) %v", wi[tc.K:2*tc.K], wi[2*tc.K:3*tc.K])
			}
			if g, w := floatsOf(t, b, got[1]), floatsOf(t, c, want[1]); !slices.Equal(g, w) {
				t.Errorf("weights %v, want %v", g, w)
			}
			if g, w := intsOf(t, b, got[2]), intsOf(t, c, want[2]); !slices.Equal(g, w) {
				t.Errorf("order %v, want %v", g, w)
			}
		})
	}
	for _, tc := range []struct {
		bits, gs int
		perm     bool
		dt       runtime.DType
	}{{4, 128, true, runtime.F16}, {4, 32, false, runtime.BF16}, {8, 128, true, runtime.F16}, {8, 64, false, runtime.F16}} {
		t.Run(fmt.Sprintf("matmul %d bits g%d act order %v %v", tc.bits, tc.gs, tc.perm, tc.dt), func(t *testing.T) {
			const E, K, N, rows, topK = 4, 512, 384, 12, 2
			// Two lists of experts (gate's and up's, say).
			var ws [2][]runtime.Tensor
			for j := range ws {
				for range E {
					w, err := b.LoadQuant(randomQuant(r, K, N, tc.bits, tc.gs, tc.perm))
					if err != nil {
						t.Fatal(err)
					}
					defer b.Free(w)
					ws[j] = append(ws[j], w)
				}
			}
			slots := rows * topK
			xv := make([]float32, rows*K)
			for i := range xv {
				xv[i] = float32(r.NormFloat64())
			}
			x, _ := upload(t, b, tc.dt, xv, rows, K)
			// Expert 2 in ten rows (a run of eight and one of two), expert
			// 1 in none, a slot of none (row 4).
			id := make([]int32, slots)
			for i := range rows {
				id[2*i], id[2*i+1] = 0, 2
				if i%3 == 1 {
					id[2*i], id[2*i+1] = 2, 3
				}
				if i >= 10 {
					id[2*i], id[2*i+1] = 0, 3
				}
			}
			id[9] = -1
			order := make([]int32, 2*slots)
			runtime.ExpertOrder(id, E, order)
			ids, ord := ints(t, b, id), ints(t, b, order)
			defer b.Free(ids)
			defer b.Free(ord)
			prevRuns, prevSlots, prevClusters := b.SetMoERuns(1), b.SetMoESlots(-1), b.Clusters()
			defer func() {
				b.SetMoERuns(prevRuns)
				b.SetMoESlots(prevSlots)
				b.SetClusters(prevClusters)
			}()
			for _, runs := range []bool{true, false} {
				b.SetMoERuns(map[bool]int{false: 0, true: 2}[runs])
				b.SetMoESlots(-1)
				if runs && (!b.RoutesExperts(ws[0], slots) || !b.RoutesExperts(ws[0][:1], slots)) ||
					!runs && (b.RoutesExperts(ws[0], slots) || !b.RoutesExperts(ws[0], 4*E)) {
					t.Errorf("runs %v: RoutesExperts %v for %d slots of %d experts, %v of one, %v for %d slots (four slots an expert at most without runs)",
						runs, b.RoutesExperts(ws[0], slots), slots, E, b.RoutesExperts(ws[0][:1], slots), b.RoutesExperts(ws[0], 4*E), 4*E)
				}
				// (Each slot on its own is correct past the default's
				// bound too.)
				b.SetMoESlots(1024)
				// Both lists in one launch, x a row a token; the first
				// alone, x a row a slot; the splits added up in clusters
				// and through global memory.
				for _, c := range []struct {
					div      int
					clusters bool
				}{{topK, true}, {1, true}, {topK, false}, {1, false}} {
					div := c.div
					b.SetClusters(c.clusters)
					in, lists := x, ws[:]
					if div == 1 {
						in, _ = upload(t, b, tc.dt, append(slices.Clone(xv), xv...), slots, K)
						lists = ws[:1]
					}
					var dsts []runtime.Tensor
					for range lists {
						dst, _ := upload(t, b, tc.dt, make([]float32, slots*N), slots, N)
						dsts = append(dsts, dst)
					}
					b.ExpertMatMul(dsts, in, lists, ids, ord, div)
					for j, list := range lists {
						want, _ := upload(t, b, tc.dt, make([]float32, slots*N), slots, N)
						for s, e := range id {
							if e >= 0 {
								b.MatMul(b.View(want, s, 1), b.View(in, s/div, 1), list[e])
							}
						}
						g, w := floatsOf(t, b, dsts[j]), floatsOf(t, b, want)
						for s, e := range id {
							if e < 0 {
								continue
							}
							gs, wsl := g[s*N:(s+1)*N], w[s*N:(s+1)*N]
							if d := backendtest.NMSE(gs, f64s(wsl)); !(d < 1e-5) {
								t.Errorf("runs %v, clusters %v, x rows a slot %d, product %d of %d: slot %d (expert %d): nmse %.3g against its MatMul", runs, c.clusters, div, j, len(lists), s, e, d)
							}
						}
					}
				}
			}
		})
	}
	t.Run("combine", func(t *testing.T) {
		const rows, H, topK = 5, 300, 3
		xv, ov, wv := make([]float32, rows*H), make([]float32, rows*topK*H), make([]float32, rows*topK)
		for i := range xv {
			xv[i] = float32(r.NormFloat64())
		}
		for i := range ov {
			ov[i] = float32(r.NormFloat64())
		}
		for i := range wv {
			wv[i] = float32(r.Float64())
		}
		id := []int32{0, 1, 2, 3, -1, -1, 1, 4, 7, -1, -1, -1, 2, 5, 6}
		ev := make([]float32, rows*H)
		for i := range ev {
			ev[i] = float32(r.NormFloat64())
		}
		// Without and with a shared expert's output (extra; row 3 has no
		// expert, so it is the whole of that row's sum).
		for _, withExtra := range []bool{false, true} {
			var got, want []float32
			for _, be := range []runtime.Backend{b, c} {
				x, err := be.Alloc(runtime.F16, rows, H)
				if err == nil {
					err = be.Upload(x, xv)
				}
				var extra runtime.Tensor
				if withExtra && err == nil {
					if extra, err = be.Alloc(runtime.F16, rows, H); err == nil {
						err = be.Upload(extra, ev)
					}
				}
				o, err2 := be.Alloc(runtime.F16, rows*topK, H)
				if err == nil && err2 == nil {
					err = be.Upload(o, ov)
				}
				w, err3 := be.Alloc(runtime.F32, rows*topK)
				if err == nil && err2 == nil && err3 == nil {
					err = be.Upload(w, wv)
				}
				if err != nil || err2 != nil || err3 != nil {
					t.Fatal(err, err2, err3)
				}
				ids := ints(t, be, id)
				be.(runtime.ExpertRouter).CombineExperts(x, o, w, ids, extra, topK)
				if be == runtime.Backend(b) {
					got = floatsOf(t, be, x)
					for _, tn := range []runtime.Tensor{x, o, w, ids, extra} {
						if tn != nil {
							b.Free(tn)
						}
					}
				} else {
					want = floatsOf(t, be, x)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("extra %v: combined rows differ from the CPU's: nmse %.3g", withExtra, backendtest.NMSE(got, f64s(want)))
			}
		}
	})
}

func f64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}
