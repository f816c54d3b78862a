package cuda_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
)

// TestDownNormParts checks MatMulAddNormTo (runtime.ResidualNormer): x +=
// h·wᵀ, then the RMSNorm of x, with SetDownNorm 1 (a product on the plain
// wide kernels leaves its splits in parts, qgemv.cu QF_PARTS, and the norm
// adds them up in one block a row, norm.cu rmsnorm_parts_v8), 2 (in a
// cluster of 8, rmsnorm_parts_cl_v8) and 0 (the product's last block adds
// them up, then rmsnorm_v8): the same bits in x, and in the norm with 1
// (with 2 within an nmse of 1e-6), with and without output slots, 4 and 8
// bits, fp16 and bf16, the 7B down product. One row, and two rows on the
// plain kernels (their parts strided by the rows): each parts kernel
// launched once in its mode and never with the switch off; two rows where
// the plain kernels take only one (the default): the op falls back to the
// product and the norm, no parts kernel. x is also checked against
// float64, so that the paths cannot agree on a wrong sum, and before each
// run the parts' scratch holds another product's sums (of -h), so that a
// product that left no parts of its own cannot pass on what an earlier run
// left. The plain kernels add up through global memory, and clusters are
// on (mode 2's norm).
func TestDownNormParts(t *testing.T) {
	b := gputest.Backend(t)
	defer b.SetDownNorm(b.DownNorm())
	defer b.SetQMMAPlain(b.QMMAPlain())
	defer b.SetPlainClusters(b.PlainClusters())
	defer b.SetClusters(b.Clusters())
	b.SetPlainClusters(false)
	b.SetClusters(true) // (the cluster norm of mode 2)
	r := rand.New(rand.NewPCG(27, 28))
	const K, N, eps = 14336, 4096, 1e-5
	for _, bits := range []int{4, 8} {
		dq := randomQuant(r, K, N, bits, 128, true)
		w, err := b.LoadQuant(dq)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Free(w)
		deq := dq.Dequantize()
		for _, dt := range []runtime.DType{runtime.F16, runtime.BF16} {
			// rows, and the most rows of the plain kernels: two rows with
			// them too (the parts of 2 rows), and without (no parts).
			for _, c := range []struct{ rows, most int }{{1, 1}, {2, 2}, {2, 1}} {
				rows := c.rows
				for _, slotted := range []bool{false, true} {
					t.Run(fmt.Sprintf("%dbit-%v-rows%d-plain%d-slots=%v", bits, dt, rows, c.most, slotted), func(t *testing.T) {
						b.SetQMMAPlain(1, c.most)
						h0, x0, w0 := normals(r)(rows*K, inputScale(K, bits)), normals(r)(rows*N, 1), normals(r)(N, 0.5)
						slots, _ := normSlots(t, b, r, N, slotted)
						// (upload frees its tensors as the subtest ends.)
						ht, hr := upload(t, b, dt, h0, rows, K)
						nw, _ := upload(t, b, dt, w0, 1, N)
						var xRounded []float32
						sfx := map[runtime.DType]string{runtime.F16: "f16", runtime.BF16: "bf16"}[dt]
						names := []string{"rmsnorm_parts_v8_" + sfx, "rmsnorm_parts_cl_v8_" + sfx}
						// run: x and the norm with SetDownNorm(mode), and how
						// many times each parts kernel ran.
						run := func(mode int) (x, norm []float32, launches [2]int) {
							// Another product of the same shape (-h) first: its
							// sums are what the parts' scratch then holds.
							neg := make([]float32, len(h0))
							for i, v := range h0 {
								neg[i] = -v
							}
							hn, _ := upload(t, b, dt, neg, rows, K)
							scrap, _ := upload(t, b, dt, make([]float32, rows*N), rows, N)
							b.MatMulAdd(scrap, hn, w, scrap)
							b.SetDownNorm(mode)
							xt, xr := upload(t, b, dt, x0, rows, N)
							out, _ := upload(t, b, dt, make([]float32, rows*N), rows, N)
							xRounded = xr
							var n0 [2]int
							for k, n := range names {
								n0[k] = b.Launches("norm.cu", n)
							}
							b.MatMulAddNormTo(xt, ht, w, out, nw, slots, eps)
							x, norm = download(t, b, xt), download(t, b, out)
							for k, n := range names {
								launches[k] = b.Launches("norm.cu", n) - n0[k]
							}
							return x, norm, launches
						}
						xOff, nOff, lOff := run(0)
						for mode := 1; mode <= 2; mode++ {
							xOn, nOn, l := run(mode)
							sameBits(t, fmt.Sprintf("mode %d: x", mode), xOn, xOff)
							if mode == 1 {
								sameBits(t, "mode 1: the norm", nOn, nOff)
							} else {
								// (The cluster's blocks add the squares up in
								// another order: the last place may differ.)
								n64 := make([]float64, len(nOff))
								for i, v := range nOff {
									n64[i] = float64(v)
								}
								if nmse := backendtest.NMSE(nOn, n64); !(nmse < 1e-6) {
									t.Errorf("mode 2: the norm's nmse %.3g against the norm kernel's, want < 1e-6", nmse)
								}
							}
							want := [2]int{}
							if rows <= c.most {
								want[mode-1] = 1
							}
							if lOff != [2]int{} || l != want {
								t.Errorf("mode %d: %v ran %v times, %v with the switch off; want %v and none", mode, names, l, lOff, want)
							}
						}
						// x against float64: the rounded x0 plus the product
						// of the rounded h.
						want := backendtest.RefMatMul(hr, deq, rows, N, K)
						for i := range want {
							want[i] += float64(xRounded[i])
							if !(math.Abs(want[i]) < 65504) {
								t.Fatalf("the test's data: x %d is %g in float64, beyond fp16", i, want[i])
							}
						}
						tol := map[runtime.DType]float64{runtime.F16: 1e-5, runtime.BF16: 1e-4}[dt]
						if nmse := backendtest.NMSE(xOff, want); !(nmse < tol) {
							t.Errorf("x: nmse %.3g against float64, want < %.0g", nmse, tol)
						}
					})
				}
			}
		}
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestGLUDownParts checks MatMulGLUAddNormTo (runtime.GLUResidualNormer):
// h = silu(xn·gateᵀ)·(xn·upᵀ) at the slots hslots, x += h·downᵀ, then the
// RMSNorm of x, with SetGLUParts on (the GLU product on the wide kernels
// leaves its splits' sums in parts at its outputs' slots, qgemv.cu
// QF_GLUX, and down's plain product stages its x from them) and off: the
// same bits in x and the norm, with each SetDownNorm mode, 4 and 8 bits,
// fp16 and bf16, the 7B MLP at one row. down comes in three forms: its
// act order taken by the GLU product's slots (InOrder and InputSlots), no
// act order, and its permutation kept (the parts path does not apply:
// the op runs the GLU product and down as they are). Where the parts path
// applies h is left as it was (a value no product gives), and elsewhere it
// is the GLU product's own output, bit for bit. Before each run with the
// switch on, the same op of -xn fills the parts' scratch, so that a down
// product that read no parts of this run's cannot pass. x is also checked
// against float64.
func TestGLUDownParts(t *testing.T) {
	b := gputest.Backend(t)
	defer b.SetGLUParts(b.GLUParts())
	defer b.SetDownNorm(b.DownNorm())
	defer b.SetQMMAPlain(b.QMMAPlain())
	defer b.SetQMMAWide(b.QMMAWide())
	b.SetQMMAPlain(1, 1)
	b.SetQMMAWide(1)
	r := rand.New(rand.NewPCG(29, 30))
	const H, I, eps, sentinel = 4096, 14336, 1e-5, 3
	for _, bits := range []int{4, 8} {
		gate, up := randomQuant(r, H, I, bits, 128, true), randomQuant(r, H, I, bits, 128, false)
		up.Perm = gate.Perm
		glu, err := b.LoadQuantGLU(gate, up)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Free(glu)
		gd, ud := gate.Dequantize(), up.Dequantize()
		for _, form := range []string{"ordered", "plain", "permuted"} {
			down := randomQuant(r, I, H, bits, 128, form != "plain")
			dw, err := b.LoadQuant(down)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Free(dw)
			w, hs := dw, runtime.Tensor(nil)
			if form == "ordered" {
				if w, hs = b.InOrder(dw), b.InputSlots(dw); hs == nil {
					t.Fatal("InputSlots: none for an act-order weight (GPTQTOOL_INPUT_ORDER=0?)")
				}
			}
			dd := down.Dequantize()
			for _, dt := range []runtime.DType{runtime.F16, runtime.BF16} {
				t.Run(fmt.Sprintf("%dbit-%v-%s", bits, dt, form), func(t *testing.T) {
					const rows = 1
					xn0 := normals(r)(rows*H, inputScale(H, bits))
					xn, xnr := upload(t, b, dt, xn0, rows, H)
					neg := make([]float32, len(xn0))
					for i, v := range xn0 {
						neg[i] = -v
					}
					xneg, _ := upload(t, b, dt, neg, rows, H)
					x0, w0 := normals(r)(rows*H, 1), normals(r)(H, 0.5)
					nw, _ := upload(t, b, dt, w0, 1, H)
					fill := func(n int, v float32) []float32 {
						s := make([]float32, n)
						for i := range s {
							s[i] = v
						}
						return s
					}
					// The GLU product's own output, at hs's slots.
					hRef, _ := upload(t, b, dt, make([]float32, rows*I), rows, I)
					b.MatMulGLUTo(hRef, xn, glu, hs)
					want := download(t, b, hRef)
					// run: x, the norm and h of the op with the switch on or
					// off and SetDownNorm(mode).
					run := func(on bool, mode int) (x, norm, h []float32) {
						b.SetDownNorm(mode)
						b.SetGLUParts(on)
						if on {
							sx, _ := upload(t, b, dt, x0, rows, H)
							sh, _ := upload(t, b, dt, make([]float32, rows*I), rows, I)
							sn, _ := upload(t, b, dt, make([]float32, rows*H), rows, H)
							b.MatMulGLUAddNormTo(sx, sh, xneg, glu, hs, w, sn, nw, nil, eps)
						}
						xt, _ := upload(t, b, dt, x0, rows, H)
						ht, _ := upload(t, b, dt, fill(rows*I, sentinel), rows, I)
						out, _ := upload(t, b, dt, make([]float32, rows*H), rows, H)
						b.MatMulGLUAddNormTo(xt, ht, xn, glu, hs, w, out, nw, nil, eps)
						return download(t, b, xt), download(t, b, out), download(t, b, ht)
					}
					xOff, _, hOff := run(false, 0)
					sameBits(t, "off: h", hOff, want)
					for mode := 0; mode <= 2; mode++ {
						xm, nm, _ := run(false, mode)
						xOn, nOn, hOn := run(true, mode)
						sameBits(t, fmt.Sprintf("mode %d: x", mode), xOn, xm)
						sameBits(t, fmt.Sprintf("mode %d: the norm", mode), nOn, nm)
						sameBits(t, fmt.Sprintf("mode %d: x against mode 0", mode), xm, xOff)
						if form == "permuted" {
							sameBits(t, fmt.Sprintf("mode %d, on (no parts): h", mode), hOn, want)
						} else {
							sameBits(t, fmt.Sprintf("mode %d, on: h (left unwritten)", mode), hOn, fill(rows*I, sentinel))
						}
					}
					// x against float64: h as the GLU product rounds it (in
					// its outputs' order), through down.
					g := backendtest.RefMatMul(xnr, gd, rows, I, H)
					u := backendtest.RefMatMul(xnr, ud, rows, I, H)
					h := make([]float32, len(g))
					for i := range g {
						h[i] = float32(g[i] / (1 + math.Exp(-g[i])) * u[i])
					}
					hd, hr := upload(t, b, dt, h, rows, I)
					b.Free(hd)
					ref := backendtest.RefMatMul(hr, dd, rows, H, I)
					_, xr := upload(t, b, dt, x0, rows, H)
					for i := range ref {
						ref[i] += float64(xr[i])
						if !(math.Abs(ref[i]) < 65504) {
							t.Fatalf("the test's data: x %d is %g in float64, beyond fp16", i, ref[i])
						}
					}
					tol := map[runtime.DType]float64{runtime.F16: 1e-5, runtime.BF16: 1e-4}[dt]
					if nmse := backendtest.NMSE(xOff, ref); !(nmse < tol) {
						t.Errorf("x: nmse %.3g against float64, want < %.0g", nmse, tol)
					}
				})
			}
		}
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
}
