package runtime

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
)

// llama31 is Llama-3.1-8B's scaling (its config.json's rope_scaling).
var llama31 = hfconfig.RopeScaling{Type: hfconfig.RopeLlama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}

// TestRoPEFreqsLlama31 checks Llama-3.1-8B's table (head_dim 128,
// rope_theta 500000) against values computed outside this code: entries of
// each band from Python's float64 math (the published formula, one entry
// at a time, rounded to float32), and every entry against the formula as
// llama.cpp's converter writes it (a divisor 1, factor, or
// 1/((1-σ)/factor + σ) by wavelength), evaluated here in float64.
func TestRoPEFreqsLlama31(t *testing.T) {
	got, err := RoPEFreqs(128, 500000, llama31)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 64 {
		t.Fatalf("%d entries, want 64", len(got))
	}
	// j: wavelength 2π·500000^(2j/128), band (< 2048 kept, > 8192 divided
	// by 8, between smoothed), float32 bits. j = 32: inv = 500000^-0.5 =
	// 1.4142136e-3, λ = 4442.88, σ = (8192/λ - 1)/3 = 0.28128, inv·((1-σ)/8
	// + σ) = 5.2484614e-4.
	for _, tc := range []struct {
		j    int
		band string
		bits uint32
	}{
		{0, "kept", 0x3f800000}, // 1
		{1, "kept", 0x3f508ac1},
		{16, "kept", 0x3d1a08c8},
		{28, "kept", 0x3b527720},    // λ 1956.5
		{29, "smooth", 0x3b0dfd07},  // λ 2401.7
		{32, "smooth", 0x3a0995d4},  // λ 4442.9
		{34, "smooth", 0x393b2dd3},  // λ 6695.1
		{35, "divided", 0x38c86886}, // λ 8218.7
		{40, "divided", 0x380fc8f8},
		{63, "divided", 0x34a4c2ff},
	} {
		if g := math.Float32bits(got[tc.j]); g != tc.bits {
			t.Errorf("inv[%d] (%s): %g (%#x), want %g (%#x)", tc.j, tc.band, got[tc.j], g, math.Float32frombits(tc.bits), tc.bits)
		}
	}
	plain, err := RoPEFreqs(128, 500000, hfconfig.RopeScaling{})
	if err != nil {
		t.Fatal(err)
	}
	bands := map[string]int{}
	for j := range got {
		base := 1 / math.Pow(500000, float64(j)/64)
		wavelen := 2 * math.Pi / base
		var div float64
		switch {
		case wavelen < 8192.0/4:
			div, bands["kept"] = 1, bands["kept"]+1
		case wavelen > 8192.0/1:
			div, bands["divided"] = 8, bands["divided"]+1
		default:
			smooth := (8192/wavelen - 1) / (4 - 1)
			div, bands["smooth"] = 1/((1-smooth)/8+smooth), bands["smooth"]+1
		}
		want := float32(base / div)
		if d := math.Abs(float64(got[j])-float64(want)) / float64(want); d > 1e-7 {
			t.Errorf("inv[%d] = %g, want %g (divisor %g, relative error %.3g)", j, got[j], want, div, d)
		}
		if div == 1 && got[j] != plain[j] {
			t.Errorf("inv[%d] = %g, kept in Llama 3's scaling, but the plain table has %g", j, got[j], plain[j])
		}
	}
	if bands["kept"] != 29 || bands["smooth"] != 6 || bands["divided"] != 29 {
		t.Errorf("bands %v, want 29 kept, 6 smooth, 29 divided", bands)
	}
}

// TestRoPEFreqsBandMargins backs RoPEFreqs' claim that float32 arithmetic
// (transformers') cannot move an entry of a published Llama 3
// configuration to another band: every wavelength lies at least 0.3% from
// both edges (Llama 3.1, 3.3 and 3.2-3B: head_dim 128; 3.2-1B: 64).
func TestRoPEFreqsBandMargins(t *testing.T) {
	for _, hd := range []int{64, 128} {
		for j := range hd / 2 {
			wavelen := 2 * math.Pi * math.Pow(500000, float64(2*j)/float64(hd))
			for _, edge := range []float64{2048, 8192} {
				if m := math.Abs(wavelen-edge) / edge; m < 3e-3 {
					t.Errorf("head_dim %d, j %d: wavelength %g within %.2g of the edge %g", hd, j, wavelen, m, edge)
				}
			}
		}
	}
}

// TestRoPEFreqs checks the plain and linear tables against the formula
// (entries derived by hand), llama3 with the bands meeting, GGUF frequency
// factors, and the refusals: nothing falls back to the plain table.
func TestRoPEFreqs(t *testing.T) {
	// head_dim 8, rope_theta 10000: 1/10000^(2j/8) = 1, 0.1, 0.01, 0.001.
	for _, tc := range []struct {
		name string
		s    hfconfig.RopeScaling
		want []float32
	}{
		{"zero value", hfconfig.RopeScaling{}, []float32{1, 0.1, 0.01, 0.001}},
		{"default", hfconfig.RopeScaling{Type: hfconfig.RopeDefault}, []float32{1, 0.1, 0.01, 0.001}},
		// Positions divided by 4 (transformers: inv_freq /= factor).
		{"linear", hfconfig.RopeScaling{Type: hfconfig.RopeLinear, Factor: 4}, []float32{0.25, 0.025, 0.0025, 0.00025}},
		// Wavelengths 2π, 62.8, 628, 6283 against edges 1024/16 = 64 and
		// 1024/1: kept, kept, smoothed (σ = (1024/628.3 - 1)/15 = 0.04198,
		// 0.01·(0.95802/8 + 0.04198) = 1.6173e-3), divided.
		{"llama3", hfconfig.RopeScaling{Type: hfconfig.RopeLlama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 16, OriginalMaxPositionEmbeddings: 1024},
			[]float32{1, 0.1, float32(0.01 * ((1-(1024/(200*math.Pi)-1)/15)/8 + (1024/(200*math.Pi)-1)/15)), 0.000125}},
		// Edges both 100: 62.8 kept, 628 and 6283 divided.
		{"llama3 bands meeting", hfconfig.RopeScaling{Type: hfconfig.RopeLlama3, Factor: 2, LowFreqFactor: 1, HighFreqFactor: 1, OriginalMaxPositionEmbeddings: 100},
			[]float32{1, 0.1, 0.005, 0.0005}},
		// llama.cpp's rope_freqs: each inverse frequency divided by its factor.
		{"frequency factors", hfconfig.RopeScaling{Type: hfconfig.RopeLlama3, FreqFactors: []float32{1, 2, 4, 8}}, []float32{1, 0.05, 0.0025, 0.000125}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RoPEFreqs(8, 10000, tc.s)
			if err != nil {
				t.Fatal(err)
			}
			for j := range tc.want {
				if d := math.Abs(float64(got[j]-tc.want[j])) / float64(tc.want[j]); d > 1e-7 {
					t.Errorf("inv[%d] = %g, want %g", j, got[j], tc.want[j])
				}
			}
		})
	}
	for _, tc := range []struct {
		name  string
		hd    int
		theta float64
		s     hfconfig.RopeScaling
		want  string
		unsup bool
	}{
		{"odd head", 7, 10000, hfconfig.RopeScaling{}, "head_dim 7", false},
		{"zero theta", 8, 0, hfconfig.RopeScaling{}, "rope_theta 0", false},
		{"inf theta", 8, math.Inf(1), hfconfig.RopeScaling{}, "rope_theta +Inf", false},
		{"yarn", 8, 10000, hfconfig.RopeScaling{Type: "yarn", Factor: 4}, `rope type "yarn": unsupported`, true},
		{"linear factor 0", 8, 10000, hfconfig.RopeScaling{Type: hfconfig.RopeLinear}, "factor: got 0, want a number >= 1", false},
		{"llama3 without parameters", 8, 10000, hfconfig.RopeScaling{Type: hfconfig.RopeLlama3, Factor: 8}, "low_freq_factor: got 0", false},
		{"factors too few", 8, 10000, hfconfig.RopeScaling{Type: hfconfig.RopeLlama3, FreqFactors: []float32{1, 2}}, "2 frequency factors for head_dim 8: want 4", false},
		{"factor zero", 8, 10000, hfconfig.RopeScaling{Type: hfconfig.RopeLlama3, FreqFactors: []float32{1, 0, 1, 1}}, "frequency factor 1: got 0", false},
		{"factors on linear", 8, 10000, hfconfig.RopeScaling{Type: hfconfig.RopeLinear, Factor: 2, FreqFactors: []float32{1, 1, 1, 1}}, "want llama3", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := RoPEFreqs(tc.hd, tc.theta, tc.s)
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, hfconfig.ErrUnsupported) != tc.unsup {
				t.Errorf("RoPEFreqs = %v, %v; want an error containing %q (unsupported %v)", inv, err, tc.want, tc.unsup)
			}
		})
	}
}
