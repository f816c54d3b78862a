package quantize

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// checkInvariants asserts the Result contract: shapes, codes in range,
// scales finite and > 0, zeros in range, GIdx in [0, G), and
// W == Scales*(Q-Zeros) exactly through GIdx.
func checkInvariants(t *testing.T, r *Result, o Options) {
	t.Helper()
	N, K, G := r.N, r.K, r.G
	if len(r.Q) != K*N || len(r.W) != N*K || len(r.Scales) != G*N || len(r.Zeros) != G*N || len(r.GIdx) != K {
		t.Fatalf("shapes: Q %d W %d Scales %d Zeros %d GIdx %d for N=%d K=%d G=%d",
			len(r.Q), len(r.W), len(r.Scales), len(r.Zeros), len(r.GIdx), N, K, G)
	}
	maxq := 1<<o.Bits - 1
	for i, q := range r.Q {
		if int(q) > maxq {
			t.Fatalf("Q[%d]=%d > maxq %d", i, q, maxq)
		}
	}
	for i, s := range r.Scales {
		if !(s > 0) || math.IsInf(float64(s), 0) {
			t.Fatalf("Scales[%d]=%v", i, s)
		}
		if o.Fp16Scales && RoundFP16(float64(s)) != float64(s) {
			t.Fatalf("Scales[%d]=%v is not an fp16 value", i, s)
		}
		if int(r.Zeros[i]) > maxq || (o.Sym && int(r.Zeros[i]) != (maxq+1)/2) {
			t.Fatalf("Zeros[%d]=%d", i, r.Zeros[i])
		}
	}
	for k, g := range r.GIdx {
		if g < 0 || int(g) >= G {
			t.Fatalf("GIdx[%d]=%d not in [0,%d)", k, g, G)
		}
	}
	for n := range N {
		for k := range K {
			g := int(r.GIdx[k])*N + n
			want := r.Scales[g] * float32(int(r.Q[k*N+n])-int(r.Zeros[g]))
			if r.W[n*K+k] != want {
				t.Fatalf("W[%d,%d]=%v, want Scales*(Q-Z)=%v", n, k, r.W[n*K+k], want)
			}
		}
	}
}

func randWeights(rng *rand.Rand, N, K int) []float32 {
	w := make([]float32, N*K)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.02)
		if rng.IntN(200) == 0 {
			w[i] *= 8 // outliers, as real weights have
		}
	}
	return w
}

// correlatedInputs returns rows×K activations with AR(1) correlation along K
// and log-normal per-column scales, so act order and feedback both matter.
func correlatedInputs(rng *rand.Rand, rows, K int) []float32 {
	colScale := make([]float64, K)
	for k := range colScale {
		colScale[k] = math.Exp(rng.NormFloat64())
	}
	x := make([]float32, rows*K)
	const rho = 0.8
	for r := range rows {
		prev := rng.NormFloat64()
		for k := range K {
			prev = rho*prev + math.Sqrt(1-rho*rho)*rng.NormFloat64()
			x[r*K+k] = float32(prev * colScale[k])
		}
	}
	return x
}

func identityHessian(K int) *Hessian {
	h := NewHessian(K)
	for k := range K {
		h.H[k*K+k] = 1
	}
	h.N = 1
	return h
}

func opts(bits, gs int, sym, act, static, fp16 bool) Options {
	o := DefaultOptions()
	o.Bits, o.GroupSize, o.Sym, o.ActOrder, o.StaticGroups, o.Fp16Scales = bits, gs, sym, act, static, fp16
	return o
}

// With H = I, U = I/sqrt(1+damp) has no off-diagonal entries, so no error
// propagates and every group sees the original W: GPTQ must equal RTN
// exactly. Equal diagonals also make the act-order permutation the identity.
func TestGPTQIdentityEqualsRTN(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const N, K = 24, 200 // K not a multiple of the block or of 32
	w := randWeights(rng, N, K)
	h := identityHessian(K)
	var cases []Options
	for _, bits := range []int{2, 3, 4, 8} {
		for _, gs := range []int{-1, 32, 128} {
			cases = append(cases, opts(bits, gs, true, false, false, true), opts(bits, gs, false, false, false, false))
		}
	}
	cases = append(cases, opts(4, 32, true, true, false, true), opts(4, 32, true, true, true, true), opts(3, 64, false, false, true, true))
	mse := opts(4, 32, true, false, false, true)
	mse.MSE = true
	cases = append(cases, mse)
	small := opts(4, 32, true, false, false, true)
	small.BlockSize = 16
	cases = append(cases, small)
	for _, o := range cases {
		t.Run(fmt.Sprintf("b%d_g%d_sym%v_act%v_static%v_fp16%v_mse%v_bs%d", o.Bits, o.GroupSize, o.Sym, o.ActOrder, o.StaticGroups, o.Fp16Scales, o.MSE, o.BlockSize), func(t *testing.T) {
			g, err := GPTQ(w, N, K, h, o, nil)
			if err != nil {
				t.Fatal(err)
			}
			r, err := RTN(w, N, K, o)
			if err != nil {
				t.Fatal(err)
			}
			checkInvariants(t, g, o)
			checkInvariants(t, r, o)
			if g.G != r.G || !slices.Equal(g.Q, r.Q) || !slices.Equal(g.Scales, r.Scales) ||
				!slices.Equal(g.Zeros, r.Zeros) || !slices.Equal(g.GIdx, r.GIdx) || !slices.Equal(g.W, r.W) {
				t.Fatalf("GPTQ with H=I differs from RTN")
			}
			if g.Damp != o.Damp {
				t.Errorf("damp used %v, want %v", g.Damp, o.Damp)
			}
		})
	}
}

// A hand-computed error feedback step. H = [[2,1,0],[1,2,0],[0,0,1]],
// damp 0.01·mean(diag)=1/60, so the damped block is [[c,1],[1,c]], c=121/60,
// and column 2 is decoupled. W = [0.87, -0.89, 1.2], sym 4-bit per channel:
// scale = 2·1.2/15 = 0.16, zero 8.
//
//	col 0: 0.87/0.16 = 5.4375 → 5, q0 = 0.8, e0 = 0.07
//	col 1: OBS update w1 -= e0·Hinv01/Hinv00 = e0·(-1/c): w1' = -0.89 + 0.07/c
//	       = -0.855289…; /0.16 = -5.3456 → -5, q1 = -0.8 (RTN would give -0.96)
//	col 2: 1.2/0.16 = 7.5 → 8 → code 16 clamps to 15, q2 = 7·0.16 = 1.12
//
// Loss = ½ Σ (w-q)²/U_ii² with U00² = Hinv00 = c/det, U11² = 1/c (the Schur
// complement), U22² = 1/(1+1/60).
func TestGPTQHandFeedback(t *testing.T) {
	h := NewHessian(3)
	copy(h.H, []float64{2, 1, 0, 1, 2, 0, 0, 0, 1})
	h.N = 1
	o := opts(4, -1, true, false, false, false)
	w := []float32{0.87, -0.89, 1.2}
	r, err := GPTQ(w, 1, 3, h, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, r, o)
	if got, want := r.Q, []uint8{13, 3, 15}; !slices.Equal(got, want) {
		t.Errorf("codes %v, want %v", got, want)
	}
	for k, want := range []float64{0.8, -0.8, 1.12} {
		if got := float64(r.W[k]); math.Abs(got-want) > 1e-6 {
			t.Errorf("W[%d] = %v, want %v", k, got, want)
		}
	}
	// The same figures with the float32 inputs and the fp32 scale.
	f := func(v float64) float64 { return float64(float32(v)) }
	s := f(2 * f(1.2) / 15) // the scale as FindParams derives it
	c := 2 + 1.0/60
	det := c*c - 1
	e0 := f(0.87) - 5*s
	e1 := f(-0.89) + e0/c + 5*s
	e2 := f(1.2) - 7*s
	wantLoss := 0.5 * (e0*e0*det/c + e1*e1*c + e2*e2*(1+1.0/60))
	if math.Abs(r.Loss-wantLoss) > 1e-12*wantLoss {
		t.Errorf("loss %v, want %v", r.Loss, wantLoss)
	}
	rtn, err := RTN(w, 1, 3, o)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(float64(rtn.W[1])+0.96) > 1e-6 {
		t.Errorf("RTN W[1] = %v, want -0.96 (the case must differ from GPTQ)", rtn.W[1])
	}
}

// proxyLoss is tr((W-Q) H (W-Q)ᵀ), the objective GPTQ minimizes.
func proxyLoss(w, q []float32, N, K int, H []float64) float64 {
	var total float64
	d := make([]float64, K)
	for n := range N {
		for k := range K {
			d[k] = float64(w[n*K+k]) - float64(q[n*K+k])
		}
		for i := range K {
			var s float64
			row := H[i*K : (i+1)*K]
			for j := range K {
				s += row[j] * d[j]
			}
			total += d[i] * s
		}
	}
	return total
}

func TestGPTQBeatsRTN(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	N, K, seqs, rows := 32, 256, 4, 256
	if testing.Short() {
		N, seqs = 16, 3
	}
	w := randWeights(rng, N, K)
	h := NewHessian(K)
	for range seqs {
		h.Add(correlatedInputs(rng, rows, K), rows)
	}
	for _, bits := range []int{2, 3, 4} {
		for _, gs := range []int{-1, 32, 128} {
			for _, act := range []bool{false, true} {
				o := opts(bits, gs, true, act, false, true)
				t.Run(fmt.Sprintf("b%d_g%d_act%v", bits, gs, act), func(t *testing.T) {
					g, err := GPTQ(w, N, K, h, o, nil)
					if err != nil {
						t.Fatal(err)
					}
					checkInvariants(t, g, o)
					r, err := RTN(w, N, K, o)
					if err != nil {
						t.Fatal(err)
					}
					lg, lr := proxyLoss(w, g.W, N, K, h.H), proxyLoss(w, r.W, N, K, h.H)
					if !(lg < lr) {
						t.Errorf("GPTQ proxy loss %.4g, want < RTN %.4g", lg, lr)
					}
					if !(g.Loss > 0) {
						t.Errorf("loss %v, want > 0", g.Loss)
					}
				})
			}
		}
	}
}

// With a diagonal H, U is diagonal: no feedback, so act order without
// static groups is RTN on the permuted columns, with groups formed in
// processed order. This checks Perm, GIdx and the Scales row order against
// an independent construction.
func TestGPTQActOrderLayout(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const N, K, gs = 8, 96, 32
	w := randWeights(rng, N, K)
	h := NewHessian(K)
	for k := range K {
		h.H[k*K+k] = 0.5 + rng.Float64()
	}
	h.N = 1
	o := opts(4, gs, true, true, false, true)
	g, err := GPTQ(w, N, K, h, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, g, o)
	perm := g.Perm
	if len(perm) != K {
		t.Fatalf("perm has %d entries, want %d", len(perm), K)
	}
	if s := slices.Sorted(slices.Values(perm)); !slices.Equal(s, identityPerm(K)) {
		t.Fatalf("perm is not a permutation")
	}
	for j := 1; j < K; j++ {
		if h.H[perm[j-1]*K+perm[j-1]] < h.H[perm[j]*K+perm[j]] {
			t.Fatalf("diag not descending along perm at %d", j)
		}
	}
	for j, c := range perm {
		if int(g.GIdx[c]) != j/gs {
			t.Fatalf("GIdx[%d]=%d, want position %d / %d", c, g.GIdx[c], j, gs)
		}
	}
	wp := make([]float32, N*K)
	for n := range N {
		for j, c := range perm {
			wp[n*K+j] = w[n*K+c]
		}
	}
	r, err := RTN(wp, N, K, o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(g.Scales, r.Scales) || !slices.Equal(g.Zeros, r.Zeros) {
		t.Fatalf("scales/zeros differ from RTN on permuted columns")
	}
	for n := range N {
		for j, c := range perm {
			if g.Q[c*N+n] != r.Q[j*N+n] {
				t.Fatalf("Q[%d,%d] differs from RTN on permuted columns", c, n)
			}
		}
	}

	// Static groups: GIdx is trivial and scales follow the original order.
	o.StaticGroups = true
	s, err := GPTQ(w, N, K, h, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, s, o)
	rs, err := RTN(w, N, K, o)
	if err != nil {
		t.Fatal(err)
	}
	for c := range K {
		if int(s.GIdx[c]) != c/gs {
			t.Fatalf("static GIdx[%d]=%d, want %d", c, s.GIdx[c], c/gs)
		}
	}
	if !slices.Equal(s.Scales, rs.Scales) || !slices.Equal(s.Q, rs.Q) {
		t.Fatalf("static groups with diagonal H differ from RTN")
	}
}

func identityPerm(K int) []int {
	p := make([]int, K)
	for i := range p {
		p[i] = i
	}
	return p
}

// Dead inputs (diag H = 0) get W column 0. With per-channel params the row
// range still includes them (REF runs find_params before zeroing).
func TestGPTQDeadColumns(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const N, K, rows = 6, 64, 128
	x := correlatedInputs(rng, rows, K)
	deadCols := []int{0, 5, 63}
	for r := range rows {
		for _, c := range deadCols {
			x[r*K+c] = 0
		}
	}
	h := NewHessian(K)
	h.Add(x, rows)
	w := randWeights(rng, N, K)
	for n := range N {
		w[n*K+5] = 1 // the largest entry of every row sits in a dead column
	}
	for _, tc := range []struct {
		gs  int
		act bool
	}{{-1, false}, {-1, true}, {32, false}, {32, true}} {
		t.Run(fmt.Sprintf("g%d_act%v", tc.gs, tc.act), func(t *testing.T) {
			o := opts(4, tc.gs, true, tc.act, false, true)
			r, err := GPTQ(w, N, K, h, o, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkInvariants(t, r, o)
			for n := range N {
				for _, c := range deadCols {
					if r.W[n*K+c] != 0 {
						t.Errorf("W[%d,%d]=%v, want 0", n, c, r.W[n*K+c])
					}
				}
				if tc.gs == -1 {
					want := float32(RoundFP16(2.0 / 15)) // range ±1 from the dead column
					if r.Scales[n] != want {
						t.Errorf("row %d scale %v, want %v", n, r.Scales[n], want)
					}
				}
			}
		})
	}
}

// A 2×2 H with eigenvalue -0.03·(…): damp 0.01 and 0.02 of mean diag 1 leave
// it indefinite, 0.04 makes it PD; each retry is logged. H = [[1,3],[3,1]]
// needs damp > 2: GPTQ fails with ErrCholesky after trying 1.0.
func TestGPTQDampRetry(t *testing.T) {
	h := NewHessian(2)
	copy(h.H, []float64{1, 1.03, 1.03, 1})
	h.N = 1
	var log bytes.Buffer
	o := opts(4, -1, true, false, false, true)
	r, err := GPTQ([]float32{0.3, -0.2, 0.1, 0.5}, 2, 2, h, o, &log)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, r, o)
	if r.Damp != 0.04 {
		t.Errorf("damp used %v, want 0.04", r.Damp)
	}
	if got := strings.Count(log.String(), "cholesky failed"); got != 2 {
		t.Errorf("log has %d retry lines, want 2:\n%s", got, log.String())
	}

	copy(h.H, []float64{1, 3, 3, 1})
	log.Reset()
	_, err = GPTQ([]float32{0.3, -0.2}, 1, 2, h, o, &log)
	if !errors.Is(err, ErrCholesky) {
		t.Fatalf("err = %v, want ErrCholesky", err)
	}
	// 0.01, 0.02, …, 0.64 fail and are followed by a retry; 1.0 ends it.
	if got := strings.Count(log.String(), "cholesky failed"); got != 7 {
		t.Errorf("log has %d retry lines, want 7:\n%s", got, log.String())
	}
}

func TestGPTQRejects(t *testing.T) {
	h := identityHessian(2)
	o := DefaultOptions()
	nanH := identityHessian(2)
	nanH.H[1] = math.Inf(1)
	tests := []struct {
		name string
		w    []float32
		h    *Hessian
		o    Options
		want string
	}{
		{"nan weight", []float32{1, float32(math.NaN())}, h, o, "not finite"},
		{"inf hessian", []float32{1, 2}, nanH, o, "not finite"},
		{"shape", []float32{1, 2, 3}, h, o, "want N*K"},
		{"hessian K", []float32{1, 2}, identityHessian(3), o, "does not match"},
		{"scale overflow", []float32{1e9, 2}, h, o, "scale"},
		{"bits", []float32{1, 2}, h, opts(5, 128, true, false, false, true), "bits=5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := GPTQ(tc.w, 1, 2, tc.h, tc.o, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	// The same weight is fine with fp32 scales.
	if _, err := GPTQ([]float32{1e9, 2}, 1, 2, h, opts(4, -1, true, false, false, false), nil); err != nil {
		t.Errorf("fp32 scales: %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	mod := func(f func(*Options)) Options {
		o := DefaultOptions()
		f(&o)
		return o
	}
	tests := []struct {
		name string
		o    Options
		want string // "" = valid
	}{
		{"default", DefaultOptions(), ""},
		{"per channel", mod(func(o *Options) { o.GroupSize = -1 }), ""},
		{"bits 3", mod(func(o *Options) { o.Bits = 3 }), ""},
		{"bits 8", mod(func(o *Options) { o.Bits = 8 }), ""},
		{"bits 2", mod(func(o *Options) { o.Bits = 2 }), ""},
		{"bits 5", mod(func(o *Options) { o.Bits = 5 }), "bits"},
		{"bits 16", mod(func(o *Options) { o.Bits = 16 }), "bits"},
		{"group 0", mod(func(o *Options) { o.GroupSize = 0 }), "group"},
		{"group -2", mod(func(o *Options) { o.GroupSize = -2 }), "group"},
		{"damp 0", mod(func(o *Options) { o.Damp = 0 }), "damp"},
		{"damp 1", mod(func(o *Options) { o.Damp = 1 }), "damp"},
		{"damp nan", mod(func(o *Options) { o.Damp = math.NaN() }), "damp"},
		{"block", mod(func(o *Options) { o.BlockSize = -1 }), "block"},
		{"shrink", mod(func(o *Options) { o.MSEMaxShrink = 2 }), "shrink"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate(4096)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("err = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func BenchmarkGPTQ(b *testing.B) {
	for _, bc := range []struct {
		name string
		N, K int
		act  bool
	}{
		{"openchat-tiny_down_K896_N256", 256, 896, false},
		{"openchat-tiny_down_K896_N256_act", 256, 896, true},
		{"K4096_N4096_g128_act", 4096, 4096, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if testing.Short() && bc.K > 1024 {
				b.Skip("large in -short")
			}
			rng := rand.New(rand.NewPCG(9, 10))
			w := randWeights(rng, bc.N, bc.K)
			h := NewHessian(bc.K)
			rows := min(2*bc.K, 2048)
			h.Add(correlatedInputs(rng, rows, bc.K), rows)
			o := DefaultOptions()
			o.ActOrder = bc.act
			for b.Loop() {
				if _, err := GPTQ(w, bc.N, bc.K, h, o, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// naiveGPTQ is the unblocked algorithm written from spec §4.2 with REF's
// route to U (cholesky → inverse → cholesky upper, via gonum/mat): every
// column's error is applied to all later columns at once, no lazy batches.
// Groups (non-static) take their params from the updated weights at their
// first column. It returns the codes [N, K] in original column order.
func naiveGPTQ(t *testing.T, w []float32, N, K int, H []float64, o Options) []int {
	t.Helper()
	q := o.Quantizer()
	W := make([]float64, N*K)
	for i, v := range w {
		W[i] = float64(v)
	}
	scale, zero := make([]float64, N), make([]int, N)
	for n := range N {
		scale[n], zero[n] = q.FindParams(W[n*K : (n+1)*K])
	}
	perm := identityPerm(K)
	if o.ActOrder {
		slices.SortStableFunc(perm, func(a, b int) int {
			switch da, db := H[a*K+a], H[b*K+b]; {
			case da > db:
				return -1
			case da < db:
				return 1
			}
			return 0
		})
	}
	var mean float64
	for k := range K {
		mean += H[k*K+k]
	}
	mean /= float64(K)
	hp := mat.NewSymDense(K, nil)
	for i := range K {
		for j := i; j < K; j++ {
			hp.SetSym(i, j, H[perm[i]*K+perm[j]])
		}
		hp.SetSym(i, i, hp.At(i, i)+o.Damp*mean)
	}
	var ch mat.Cholesky
	if !ch.Factorize(hp) {
		t.Fatal("naive: cholesky of H failed")
	}
	var hinv mat.SymDense
	if err := ch.InverseTo(&hinv); err != nil {
		t.Fatal(err)
	}
	var ch2 mat.Cholesky
	if !ch2.Factorize(&hinv) {
		t.Fatal("naive: cholesky of H^-1 failed")
	}
	var U mat.TriDense
	ch2.UTo(&U)
	codes := make([]int, N*K)
	for n := range N {
		row := make([]float64, K)
		for j, c := range perm {
			row[j] = W[n*K+c]
		}
		for i := range K {
			if o.GroupSize > 0 && i%o.GroupSize == 0 {
				// The paper's algorithm: a group's params from its current
				// (error-updated) weights.
				scale[n], zero[n] = q.FindParams(row[i:min(i+o.GroupSize, K)])
			}
			c := q.Code(row[i], scale[n], zero[n])
			codes[n*K+perm[i]] = c
			e := (row[i] - scale[n]*float64(c-zero[n])) / U.At(i, i)
			for j := i + 1; j < K; j++ {
				row[j] -= e * U.At(i, j)
			}
		}
	}
	return codes
}

// The blocked GPTQ with lazy batch updates equals the unblocked algorithm
// with REF's inverse route, for several block sizes.
func TestGPTQMatchesUnblocked(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	const N, K, rows = 12, 160, 400
	w := randWeights(rng, N, K)
	h := NewHessian(K)
	h.Add(correlatedInputs(rng, rows, K), rows)
	for _, act := range []bool{false, true} {
		for _, bs := range []int{16, 50, 128} {
			t.Run(fmt.Sprintf("act%v_bs%d", act, bs), func(t *testing.T) {
				o := opts(3, -1, true, act, false, true)
				o.BlockSize = bs
				want := naiveGPTQ(t, w, N, K, h.H, o)
				r, err := GPTQ(w, N, K, h, o, nil)
				if err != nil {
					t.Fatal(err)
				}
				for n := range N {
					for k := range K {
						if got := int(r.Q[k*N+n]); got != want[n*K+k] {
							t.Fatalf("code[%d,%d] = %d, want %d (unblocked reference)", n, k, got, want[n*K+k])
						}
					}
				}
			})
		}
	}
}

// With groups smaller than the block, the blocked GPTQ equals the unblocked
// algorithm (group params from the updated weights) whatever the block size;
// StaleGroupParams (REF's quirk) does not, unless groups start at block starts.
func TestGPTQGroupsMatchUnblocked(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	const N, K, rows = 12, 192, 400
	w := randWeights(rng, N, K)
	h := NewHessian(K)
	h.Add(correlatedInputs(rng, rows, K), rows)
	for _, act := range []bool{false, true} {
		for _, gs := range []int{16, 32} {
			for _, bs := range []int{32, 64, 128} {
				t.Run(fmt.Sprintf("act%v_g%d_bs%d", act, gs, bs), func(t *testing.T) {
					o := opts(3, gs, true, act, false, true)
					o.BlockSize = bs
					want := naiveGPTQ(t, w, N, K, h.H, o)
					r, err := GPTQ(w, N, K, h, o, nil)
					if err != nil {
						t.Fatal(err)
					}
					for n := range N {
						for k := range K {
							if got := int(r.Q[k*N+n]); got != want[n*K+k] {
								t.Fatalf("code[%d,%d] = %d, want %d (unblocked reference)", n, k, got, want[n*K+k])
							}
						}
					}
					o.StaleGroupParams = true
					stale, err := GPTQ(w, N, K, h, o, nil)
					if err != nil {
						t.Fatal(err)
					}
					// Groups starting at a block start see no stale weights.
					if same := slices.Equal(stale.Q, r.Q); same != (gs == bs) {
						t.Errorf("StaleGroupParams gives the same codes: %v, want %v", same, gs == bs)
					}
				})
			}
		}
	}
}
