package runtime

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
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

// yarnTiny is a yarn scaling whose table over head_dim 8 is derived by
// hand in TestRoPEFreqs.
var yarnTiny = hfconfig.RopeScaling{Type: hfconfig.RopeYarn, Factor: 8, OriginalMaxPositionEmbeddings: 64, BetaFast: 2, BetaSlow: 1, Truncate: true, AttentionFactor: 1.2}

// TestRoPEFreqsYarn checks yarn tables against testdata/yarn_freqs.json,
// which testdata/yarn_freqs.py computes from the YaRN paper's formula in
// Python (float64, each entry rounded to float32): Qwen2.5-7B's published
// long-context setting, gpt-oss's (not truncated), DeepSeek-V2's RoPE
// part and a tiny one, every entry within a unit in the last place (libm's
// pow and Go's may round differently), and the cases' ramps non-trivial:
// entries kept, interpolated and between.
func TestRoPEFreqsYarn(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "yarn_freqs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Name                          string
		HeadDim                       int     `json:"head_dim"`
		Theta                         float64 `json:"rope_theta"`
		Factor                        float64
		OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings"`
		BetaFast                      float64 `json:"beta_fast"`
		BetaSlow                      float64 `json:"beta_slow"`
		Truncate                      bool
		Bits                          []uint32
	}
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) != 4 {
		t.Fatalf("%d cases, want 4", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			s := hfconfig.RopeScaling{Type: hfconfig.RopeYarn, Factor: c.Factor, OriginalMaxPositionEmbeddings: c.OriginalMaxPositionEmbeddings,
				BetaFast: c.BetaFast, BetaSlow: c.BetaSlow, Truncate: c.Truncate, AttentionFactor: 1}
			got, err := RoPEFreqs(c.HeadDim, c.Theta, s)
			if err != nil {
				t.Fatal(err)
			}
			plain, err := RoPEFreqs(c.HeadDim, c.Theta, hfconfig.RopeScaling{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.Bits) {
				t.Fatalf("%d entries, want %d", len(got), len(c.Bits))
			}
			kept, divided, between := 0, 0, 0
			for j, b := range c.Bits {
				want := math.Float32frombits(b)
				if d := int64(math.Float32bits(got[j])) - int64(b); d < -1 || d > 1 {
					t.Errorf("inv[%d] = %g (%#x), want %g (%#x)", j, got[j], math.Float32bits(got[j]), want, b)
				}
				switch r := float64(plain[j]) / float64(want); {
				case math.Abs(r-1) < 1e-6:
					kept++
				case math.Abs(r-c.Factor) < 1e-5*c.Factor:
					divided++
				default:
					between++
				}
			}
			t.Logf("%d kept, %d between, %d divided by %g", kept, between, divided, c.Factor)
			if kept == 0 || divided == 0 || between == 0 {
				t.Errorf("%d kept, %d between, %d divided: want some of each", kept, between, divided)
			}
		})
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
		// yarn over head_dim 8, original 64, beta_fast 2, beta_slow 1: the
		// correction dimensions 8·ln(64/(2π·r))/(2·ln 10000) are 0.707 (r
		// 2) and 1.008 (r 1), rounded out to [0, 2]; pair j's ramp
		// j/2 interpolates 0, half and all of it: 1, 0.1·(½/8 + ½) =
		// 0.05625, 0.01/8, 0.001/8.
		{"yarn", yarnTiny, []float32{1, 0.05625, 0.00125, 0.000125}},
		// Not truncated, [0.707, 1.008]: j 1 is near its end, ramp r =
		// (1 - 0.707)/(1.008 - 0.707) = 0.973, 0.1·(r/8 + 1 - r) =
		// 0.01483; 0 and 2 outside it.
		{"yarn not truncated", func() hfconfig.RopeScaling { s := yarnTiny; s.Truncate = false; return s }(), []float32{1, func() float32 {
			lo, hi := 8*math.Log(64/(4*math.Pi))/(2*math.Log(10000)), 8*math.Log(64/(2*math.Pi))/(2*math.Log(10000))
			r := (1 - lo) / (hi - lo)
			return float32(0.1 * (r/8 + 1 - r))
		}(), 0.00125, 0.000125}},
		// beta_fast 1 too: [floor 1.008, ceil 1.008] = [1, 2].
		{"yarn betas equal", func() hfconfig.RopeScaling { s := yarnTiny; s.BetaFast = 1; return s }(), []float32{1, 0.1, 0.00125, 0.000125}},
		// Not truncated, both ends 1.008: high moved 0.001 up; j 1 lies
		// below, kept.
		{"yarn betas equal not truncated", func() hfconfig.RopeScaling { s := yarnTiny; s.BetaFast, s.Truncate = 1, false; return s }(), []float32{1, 0.1, 0.00125, 0.000125}},
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
		{"odd head", 7, 10000, hfconfig.RopeScaling{}, "rotary dimension 7", false},
		{"zero theta", 8, 0, hfconfig.RopeScaling{}, "rope_theta 0", false},
		{"inf theta", 8, math.Inf(1), hfconfig.RopeScaling{}, "rope_theta +Inf", false},
		{"dynamic", 8, 10000, hfconfig.RopeScaling{Type: "dynamic", Factor: 4}, `rope type "dynamic": unsupported`, true},
		{"yarn without parameters", 8, 10000, hfconfig.RopeScaling{Type: hfconfig.RopeYarn, Factor: 4}, "original_max_position_embeddings: got 0", false},
		{"yarn theta 1", 8, 1, yarnTiny, "rope_theta 1 with scaling yarn", false},
		{"linear factor 0", 8, 10000, hfconfig.RopeScaling{Type: hfconfig.RopeLinear}, "factor: got 0, want a number >= 1", false},
		{"llama3 without parameters", 8, 10000, hfconfig.RopeScaling{Type: hfconfig.RopeLlama3, Factor: 8}, "low_freq_factor: got 0", false},
		{"factors too few", 8, 10000, hfconfig.RopeScaling{Type: hfconfig.RopeLlama3, FreqFactors: []float32{1, 2}}, "2 frequency factors for rotary dimension 8: want 4", false},
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

// TestRoPEFreqsLongrope: Phi-3's longrope divides the plain frequency
// 1/theta^(2j/d) by the short or the long factor j (Long), as
// _compute_longrope_parameters does, and its attention factor is
// AttentionFactor's; factors of another count than head_dim/2 are refused.
func TestRoPEFreqsLongrope(t *testing.T) {
	s := hfconfig.RopeScaling{Type: hfconfig.RopeLongrope, ShortFactor: []float64{1, 1.5, 2, 4}, LongFactor: []float64{1, 3, 9, 27},
		Factor: 4, OriginalMaxPositionEmbeddings: 64, AttentionFactor: 1.3}
	for _, long := range []bool{false, true} {
		s.Long = long
		inv, err := RoPEFreqs(8, 500, s)
		if err != nil {
			t.Fatal(err)
		}
		ext := s.ShortFactor
		if long {
			ext = s.LongFactor
		}
		for j, got := range inv {
			want := float32(1 / (ext[j] * math.Pow(500, float64(2*j)/8)))
			if got != want {
				t.Errorf("long %v: inv[%d] = %g, want %g", long, j, got, want)
			}
		}
	}
	if got := AttentionFactor(s); got != 1.3 {
		t.Errorf("AttentionFactor = %g, want 1.3", got)
	}
	if _, err := RoPEFreqs(16, 500, s); err == nil {
		t.Error("4 factors for head_dim 16: no error")
	}
}

// TestRoPEFreqsPhi4Mini builds Phi-4-mini-instruct's tables from its
// config.json (formats/hfconfig's testdata: partial_rotary_factor 0.75 of
// head_dim 128, longrope): over the rotary dimension 96, as transformers'
// rope init takes dim = int(head_dim · partial_rotary_factor), 48 entries
// 10000^(-2j/96)/factor[j] of the long factors (its own context) and of
// the short ones within the original 4096; the exponent over head_dim
// gives other values.
func TestRoPEFreqsPhi4Mini(t *testing.T) {
	file := filepath.Join("..", "formats", "hfconfig", "testdata", "phi-4-mini-instruct.json")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := hfconfig.Parse(data, file)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.RopeScaling
	if cfg.RoPEDim() != 96 || !s.Long {
		t.Fatalf("rotary dimension %d, %s: want 96, the long factors", cfg.RoPEDim(), s)
	}
	for _, tc := range []struct {
		name    string
		s       hfconfig.RopeScaling
		factors []float64
	}{{"long", s, s.LongFactor}, {"short", s.ForContext(4096), s.ShortFactor}} {
		got, err := RoPEFreqs(cfg.RoPEDim(), cfg.RopeTheta, tc.s)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 48 {
			t.Fatalf("%s: %d entries, want 48", tc.name, len(got))
		}
		overHead := 0
		for j, v := range got {
			want := float32(math.Pow(10000, -2*float64(j)/96) / tc.factors[j])
			if v != want {
				t.Errorf("%s: inv[%d] = %g, want %g", tc.name, j, v, want)
			}
			if float32(math.Pow(10000, -2*float64(j)/128)/tc.factors[j]) != v {
				overHead++
			}
		}
		if overHead < 47 {
			t.Errorf("%s: only %d entries differ from the exponent over head_dim 128", tc.name, overHead)
		}
	}
	if _, err := RoPEFreqs(cfg.HeadDim, cfg.RopeTheta, s); err == nil {
		t.Error("a table over head_dim 128 from 48 factors: no error")
	}
}
