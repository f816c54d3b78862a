package gptq

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestGroups(t *testing.T) {
	tests := []struct{ K, gs, want int }{
		{4096, 128, 32}, {14336, 128, 112}, {4096, -1, 1}, {10, 4, 3}, {8, 8, 1}, {8, 0, 0}, {8, -2, 0}, {0, 128, 0},
	}
	for _, tt := range tests {
		if got := Groups(tt.K, tt.gs); got != tt.want {
			t.Errorf("Groups(%d, %d) = %d, want %d", tt.K, tt.gs, got, tt.want)
		}
	}
}

func TestGIdx(t *testing.T) {
	perm := []int{3, 7, 0, 4, 1, 5, 2, 6}
	tests := []struct {
		name   string
		K, gs  int
		perm   []int
		static bool
		want   []int32
	}{
		{"plain", 8, 4, nil, false, []int32{0, 0, 0, 0, 1, 1, 1, 1}},
		{"plain_partial_last_group", 10, 4, nil, false, []int32{0, 0, 0, 0, 1, 1, 1, 1, 2, 2}},
		{"per_channel", 8, -1, nil, false, []int32{0, 0, 0, 0, 0, 0, 0, 0}},
		// g_idx[perm[i]] = i/4: columns 3,7,0,4 are group 0; 1,5,2,6 group 1.
		{"act_order", 8, 4, perm, false, []int32{0, 1, 1, 0, 0, 1, 1, 0}},
		{"act_order_gs2", 8, 2, perm, false, []int32{1, 2, 3, 0, 1, 2, 3, 0}},
		{"act_order_per_channel", 8, -1, perm, false, []int32{0, 0, 0, 0, 0, 0, 0, 0}},
		{"act_order_static", 8, 4, perm, true, []int32{0, 0, 0, 0, 1, 1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := GIdx(tt.K, tt.gs, tt.perm, tt.static)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("GIdx = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCheckPerm(t *testing.T) {
	if err := CheckPerm([]int{2, 0, 1}, 3); err != nil {
		t.Errorf("valid perm: %v", err)
	}
	for _, bad := range [][]int{{0, 0, 1}, {0, 1}, {0, 1, 3}, {-1, 0, 1}} {
		if err := CheckPerm(bad, 3); err == nil {
			t.Errorf("CheckPerm(%v) = nil, want an error", bad)
		}
	}
}

func TestShapesFor(t *testing.T) {
	// Mistral-7B 4-bit g128 shapes, spec §1.6.
	tests := []struct {
		name           string
		K, N, bits, gs int
		qw, qz, sc, gi [2]int
		errSub         string
	}{
		{"q_proj", 4096, 4096, 4, 128, [2]int{512, 4096}, [2]int{32, 512}, [2]int{32, 4096}, [2]int{4096, 0}, ""},
		{"k_proj", 4096, 1024, 4, 128, [2]int{512, 1024}, [2]int{32, 128}, [2]int{32, 1024}, [2]int{4096, 0}, ""},
		{"gate_proj", 4096, 14336, 4, 128, [2]int{512, 14336}, [2]int{32, 1792}, [2]int{32, 14336}, [2]int{4096, 0}, ""},
		{"down_proj", 14336, 4096, 4, 128, [2]int{1792, 4096}, [2]int{112, 512}, [2]int{112, 4096}, [2]int{14336, 0}, ""},
		{"q_proj_3bit", 4096, 4096, 3, 128, [2]int{384, 4096}, [2]int{32, 384}, [2]int{32, 4096}, [2]int{4096, 0}, ""},
		{"down_proj_3bit", 14336, 4096, 3, 128, [2]int{1344, 4096}, [2]int{112, 384}, [2]int{112, 4096}, [2]int{14336, 0}, ""},
		{"8bit_per_channel", 4096, 1024, 8, -1, [2]int{1024, 1024}, [2]int{1, 256}, [2]int{1, 1024}, [2]int{4096, 0}, ""},
		{"stories_down_proj", 172, 64, 4, 128, [2]int{}, [2]int{}, [2]int{}, [2]int{}, "in features K=172"},
		{"N_not_packable", 64, 172, 4, 128, [2]int{}, [2]int{}, [2]int{}, [2]int{}, "out features N=172"},
		{"bad_group", 64, 64, 4, 0, [2]int{}, [2]int{}, [2]int{}, [2]int{}, "group size 0"},
		{"bad_bits", 64, 64, 6, 32, [2]int{}, [2]int{}, [2]int{}, [2]int{}, "bits 6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			qw, qz, sc, gi, err := ShapesFor(tt.K, tt.N, tt.bits, tt.gs)
			if tt.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errSub) {
					t.Fatalf("err = %v, want one containing %q", err, tt.errSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if qw != tt.qw || qz != tt.qz || sc != tt.sc || gi != tt.gi {
				t.Fatalf("shapes = %v %v %v %v, want %v %v %v %v", qw, qz, sc, gi, tt.qw, tt.qz, tt.sc, tt.gi)
			}
		})
	}
}

// handLinear is K=8, N=8, 4-bit, group size 4 with act-order g_idx
// [0 1 1 0 0 1 1 0]. Column 0 holds q=k, column 1 q=15-k, columns 2..7 q=1.
// Real zeros: group 0 [8 1 1...], group 1 [3 15 1...]. Scales: group 0
// [0.5 2 1...], group 1 [0.25 -1 1...]. Every word is written by hand.
func handLinear(format Format) *Linear {
	l := &Linear{
		K: 8, N: 8, Bits: 4, GroupSize: 4,
		QWeight: []int32{w(0x76543210), w(0x89ABCDEF), w(0x11111111), w(0x11111111), w(0x11111111), w(0x11111111), w(0x11111111), w(0x11111111)},
		Scales: []uint16{
			0x3800, 0x4000, 0x3C00, 0x3C00, 0x3C00, 0x3C00, 0x3C00, 0x3C00, // 0.5, 2, 1...
			0x3400, 0xBC00, 0x3C00, 0x3C00, 0x3C00, 0x3C00, 0x3C00, 0x3C00, // 0.25, -1, 1...
		},
		GIdx:   []int32{0, 1, 1, 0, 0, 1, 1, 0},
		Format: format,
	}
	if format == FormatV2 {
		l.QZeros = []int32{w(0x11111118), w(0x111111F3)}
	} else {
		// stored minus one: [7 0 0...] and [2 14 0...]
		l.QZeros = []int32{w(0x00000007), w(0x000000E2)}
	}
	return l
}

func TestDequantizeByHand(t *testing.T) {
	// W[n,k] = s[g,n]*(q[k,n]-z[g,n]) with g = g_idx[k]:
	// k: g  n=0: s*(k-z)        n=1: s*(15-k-z)
	// 0: 0  0.5*(0-8)  = -4     2*(15-1)  = 28
	// 1: 1  0.25*(1-3) = -0.5   -1*(14-15) = 1
	// 2: 1  0.25*(2-3) = -0.25  -1*(13-15) = 2
	// 3: 0  0.5*(3-8)  = -2.5   2*(12-1)  = 22
	// 4: 0  0.5*(4-8)  = -2     2*(11-1)  = 20
	// 5: 1  0.25*(5-3) = 0.5    -1*(10-15) = 5
	// 6: 1  0.25*(6-3) = 0.75   -1*(9-15) = 6
	// 7: 0  0.5*(7-8)  = -0.5   2*(8-1)   = 14
	want := make([]float32, 64)
	copy(want[0:8], []float32{-4, -0.5, -0.25, -2.5, -2, 0.5, 0.75, -0.5})
	copy(want[8:16], []float32{28, 1, 2, 22, 20, 5, 6, 14})
	for _, f := range []Format{FormatV1, FormatV2, ""} {
		t.Run(string(f), func(t *testing.T) {
			got, err := handLinear(f).Dequantize()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("W =\n%v\nwant\n%v", got, want)
			}
		})
	}
}

func TestDequantizeEightBitV1Overflow(t *testing.T) {
	// 8-bit v1 stored 0xFF reads as zero 256, as AutoGPTQ's zeros+1 does.
	l := &Linear{K: 4, N: 4, Bits: 8, GroupSize: -1,
		QWeight: []int32{w(0x00000000), w(0x00000000), w(0x00000000), w(0x000000FF)},
		QZeros:  []int32{w(0xFF7F7F7F)},
		Scales:  []uint16{0x3C00, 0x3C00, 0x3C00, 0x3C00},
		GIdx:    []int32{0, 0, 0, 0},
	}
	got, err := l.Dequantize()
	if err != nil {
		t.Fatal(err)
	}
	// column n=3: zero 256; q[0,3] = 0xFF, others 0.
	if got[3*4+0] != 255-256 || got[3*4+1] != -256 || got[0] != -128 {
		t.Fatalf("W = %v", got)
	}
}

// TestDequantizeRandom checks Dequantize against a direct evaluation from the
// unpacked codes, for every width, act-order g_idx and both formats.
func TestDequantizeRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, bits := range []int{2, 3, 4, 8} {
		for _, f := range []Format{FormatV1, FormatV2} {
			t.Run(fmt.Sprintf("%dbit_%s", bits, f), func(t *testing.T) {
				K, N, gs := 96, 64, 32
				G := Groups(K, gs)
				maxq := 1<<bits - 1
				q := make([]uint8, K*N)
				for i := range q {
					q[i] = uint8(r.IntN(maxq + 1))
				}
				z := make([]uint8, G*N)
				for i := range z {
					z[i] = uint8(1 + r.IntN(maxq))
				}
				scales := make([]uint16, G*N)
				for i := range scales {
					scales[i] = uint16(0x2000 + r.IntN(0x2000)) // positive normal fp16 in [2^-7, 2)
				}
				perm := r.Perm(K)
				gIdx := GIdx(K, gs, perm, false)
				qw, err := PackQWeight(q, K, N, bits)
				if err != nil {
					t.Fatal(err)
				}
				qz, err := PackQZeros(z, G, N, bits, f)
				if err != nil {
					t.Fatal(err)
				}
				l := &Linear{K: K, N: N, Bits: bits, GroupSize: gs, QWeight: qw, QZeros: qz, Scales: scales, GIdx: gIdx, Format: f}
				got, err := l.Dequantize()
				if err != nil {
					t.Fatal(err)
				}
				for k := range K {
					g := int(gIdx[k])
					for n := range N {
						s := fp16ToF32ForTest(scales[g*N+n])
						want := s * float32(int(q[k*N+n])-int(z[g*N+n]))
						if got[n*K+k] != want {
							t.Fatalf("W[%d,%d] = %g, want %g", n, k, got[n*K+k], want)
						}
					}
				}
			})
		}
	}
}

// fp16ToF32ForTest decodes a normal fp16 by its definition, independently of
// the float16 package: (-1)^s * 2^(e-15) * (1 + m/1024).
func fp16ToF32ForTest(h uint16) float32 {
	e := int(h>>10&0x1F) - 15
	m := float32(h&0x3FF)/1024 + 1
	v := m
	for ; e > 0; e-- {
		v *= 2
	}
	for ; e < 0; e++ {
		v /= 2
	}
	if h&0x8000 != 0 {
		v = -v
	}
	return v
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(l *Linear)
		errSub string
	}{
		{"ok", func(l *Linear) {}, ""},
		{"short qweight", func(l *Linear) { l.QWeight = l.QWeight[:7] }, "layers.0.q_proj.qweight"},
		{"short qzeros", func(l *Linear) { l.QZeros = l.QZeros[:1] }, "layers.0.q_proj.qzeros"},
		{"short scales", func(l *Linear) { l.Scales = l.Scales[:8] }, "layers.0.q_proj.scales"},
		{"short g_idx", func(l *Linear) { l.GIdx = l.GIdx[:7] }, "layers.0.q_proj.g_idx"},
		{"g_idx out of range", func(l *Linear) { l.GIdx[5] = 2 }, "g_idx[5]=2 out of range [0, 2)"},
		{"negative g_idx", func(l *Linear) { l.GIdx[0] = -1 }, "g_idx[0]=-1"},
		{"bad format", func(l *Linear) { l.Format = "marlin" }, "checkpoint format"},
		{"bad bits", func(l *Linear) { l.Bits = 5 }, "bits 5"},
		// fp16 bit patterns: NaN 0x7e00, +Inf 0x7c00, -Inf 0xfc00, +0, -0.
		{"NaN scale", func(l *Linear) { l.Scales[3] = 0x7e00 }, "layers.0.q_proj.scales: damaged scale: scales[0][3] is NaN"},
		{"Inf scale", func(l *Linear) { l.Scales[9] = 0x7c00 }, "scales[1][1] is +Inf"},
		{"-Inf scale", func(l *Linear) { l.Scales[0] = 0xfc00 }, "scales[0][0] is -Inf"},
		{"zero scale", func(l *Linear) { l.Scales[15] = 0 }, "scales[1][7] is 0"},
		{"negative zero scale", func(l *Linear) { l.Scales[2] = 0x8000 }, "scales[0][2] is 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := handLinear(FormatV1)
			tt.mutate(l)
			err := l.Validate("layers.0.q_proj")
			if tt.errSub == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.errSub) {
				t.Fatalf("err = %v, want one containing %q", err, tt.errSub)
			}
			if _, derr := l.Dequantize(); derr == nil {
				t.Fatal("Dequantize accepted an invalid Linear")
			}
		})
	}
}

// TestShapesForSaysWhichBitsPack: a shape the bit width cannot pack names
// the widths that pack both K and N (spec §1.2, §1.3: K and N multiples of
// 32/bits, of 32 at 3 bits), or says none does, where the error stopped at
// the multiple it needed: stories260K's gate/up (N=172) and down (K=172)
// pack at 8 bits only.
func TestShapesForSaysWhichBitsPack(t *testing.T) {
	for _, c := range []struct {
		name       string
		K, N, bits int
		want       string
	}{
		{"stories gate_proj", 64, 172, 4, "8 bits packs it"},
		{"stories down_proj", 172, 64, 2, "8 bits packs it"},
		{"odd", 64, 170, 4, "no bit width packs it"},
		{"four and eight", 64, 8, 2, "4 or 8 bits pack it"},
		{"two widths", 48, 64, 3, "2, 4 or 8 bits pack it"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, _, _, err := ShapesFor(c.K, c.N, c.bits, 32)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("ShapesFor(%d, %d, %d bits): %v, want an error containing %q", c.K, c.N, c.bits, err, c.want)
			}
		})
	}
}
