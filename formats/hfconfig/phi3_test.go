package hfconfig

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestPhi3 reads Phi-3's configs: the published Phi-3-mini-4k-instruct
// and Phi-3.5-mini-instruct ones (testdata, written out from the models'
// config.json; the 3.5's longrope factors as Microsoft's release gives
// them) and Phi3Config's defaults, longrope's parameters and the keys
// refused.
func TestPhi3(t *testing.T) {
	t.Run("published", func(t *testing.T) {
		// Phi-3-mini-4k-instruct's published count is 3,821,079,552. By
		// hand: embed and lm_head 2*32064*3072 = 197,001,216; a layer's
		// qkv_proj 3072*9216 + o_proj 3072*3072 + gate_up_proj 16384*3072
		// + down_proj 3072*8192 + norms 6144 = 113,252,352, x32 =
		// 3,624,075,264; final norm 3072. Phi-3.5-mini has the same shapes.
		for _, tt := range []struct {
			file string
			want want
			rope string
		}{
			{"phi-3-mini-4k-instruct.json", want{"phi3", 3072, 8192, 32, 32, 32, 96, 32064, 4096, 1e-5, 10000, 2047, false, "bfloat16", 1, 32000, []int{32000},
				3_821_079_552}, "default"},
			// Its sliding_window exceeds every position it runs.
			{"phi-3.5-mini-instruct.json", want{"phi3", 3072, 8192, 32, 32, 32, 96, 32064, 131072, 1e-5, 10000, 262144, false, "bfloat16", 1, 32000, []int{32000},
				3_821_079_552}, "longrope"},
		} {
			t.Run(tt.file, func(t *testing.T) {
				data, err := os.ReadFile(filepath.Join("testdata", tt.file))
				if err != nil {
					t.Fatal(err)
				}
				c, err := Parse(data, tt.file)
				if err != nil {
					t.Fatal(err)
				}
				if g := got(c); !reflect.DeepEqual(g, tt.want) {
					t.Errorf("got  %+v\nwant %+v", g, tt.want)
				}
				if c.RopeScaling.Type != tt.rope {
					t.Errorf("rope type %q, want %q", c.RopeScaling.Type, tt.rope)
				}
				for _, m := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"} {
					if c.LinearBias(m) {
						t.Errorf("LinearBias(%s) = true: Phi3Attention and Phi3MLP have none", m)
					}
				}
			})
		}
	})
	t.Run("Phi-3.5 longrope", func(t *testing.T) {
		data, err := os.ReadFile("testdata/phi-3.5-mini-instruct.json")
		if err != nil {
			t.Fatal(err)
		}
		c, err := Parse(data, "phi-3.5.json")
		if err != nil {
			t.Fatal(err)
		}
		s := c.RopeScaling
		// factor 131072/4096 = 32 = 2^5 and original 4096 = 2^12: the
		// attention factor sqrt(1 + ln 32/ln 4096) is sqrt(17/12).
		if !s.Long || s.Factor != 32 || s.OriginalMaxPositionEmbeddings != 4096 || math.Abs(s.AttentionFactor-math.Sqrt(17.0/12)) > 1e-15 {
			t.Errorf("got %s (long %v, attention_factor %.17g), want the long factors, factor 32, original 4096, attention_factor sqrt(17/12)", s, s.Long, s.AttentionFactor)
		}
		if len(s.ShortFactor) != 48 || len(s.LongFactor) != 48 || s.ShortFactor[0] != 1 || s.LongFactor[47] != 64.83999633789062 {
			t.Errorf("factors %v / %v", s.ShortFactor, s.LongFactor)
		}
		if err := s.Validate(); err != nil {
			t.Errorf("Validate: %v", err)
		}
		// ForContext: the short factors up to original (the boundary
		// included, as transformers' seq_len > original), the long past
		// it; the other parameters kept.
		for _, tc := range []struct {
			n    int
			long bool
		}{{1, false}, {2048, false}, {4096, false}, {4097, true}, {131072, true}} {
			got := s.ForContext(tc.n)
			if got.Long != tc.long || got.AttentionFactor != s.AttentionFactor || got.Factor != s.Factor || got.OriginalMaxPositionEmbeddings != 4096 {
				t.Errorf("ForContext(%d) = %s, want long %v, the rest kept", tc.n, got, tc.long)
			}
		}
		if s.ForContext(2048).Long == s.Long {
			t.Errorf("ForContext(2048) changed nothing")
		}
		// Other types ignore it.
		y := RopeScaling{Type: RopeYarn, Factor: 4, OriginalMaxPositionEmbeddings: 32768}
		if got := y.ForContext(1 << 20); got.Long {
			t.Errorf("yarn ForContext: %+v, want Long false", got)
		}
	})

	const base = `{"model_type": "phi3", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
		"num_attention_heads": 4, "vocab_size": 100`
	parse := func(t *testing.T, extra string) (*Config, error) {
		t.Helper()
		return Parse([]byte(base+extra+`}`), "phi3/config.json")
	}
	// Eight factors: head_dim 16.
	const short, long = `[1, 1, 1.5, 2, 2, 3, 4, 4]`, `[1, 2, 4, 8, 16, 16, 32, 32]`
	t.Run("defaults", func(t *testing.T) {
		c, err := parse(t, "")
		if err != nil {
			t.Fatal(err)
		}
		// Phi3Config: num_key_value_heads None (the heads), max positions
		// 4096, eps 1e-5, theta 10000, sliding_window None.
		if c.NumKeyValueHeads != 4 || c.MaxPositionEmbeddings != 4096 || c.RMSNormEps != 1e-5 || c.RopeTheta != 10000 || c.SlidingWindow != 0 || c.HeadDim != 16 {
			t.Errorf("kv %d maxpos %d eps %g theta %g window %d head_dim %d, want 4 4096 1e-05 10000 0 16",
				c.NumKeyValueHeads, c.MaxPositionEmbeddings, c.RMSNormEps, c.RopeTheta, c.SlidingWindow, c.HeadDim)
		}
		if !c.RopeScaling.IsDefault() || c.QKNorm() || c.LinearBias("self_attn.q_proj") {
			t.Errorf("rope %s, QKNorm %v, q bias %v", c.RopeScaling, c.QKNorm(), c.LinearBias("self_attn.q_proj"))
		}
	})
	t.Run("longrope", func(t *testing.T) {
		block := `"short_factor": ` + short + `, "long_factor": ` + long
		for _, tt := range []struct {
			name, extra string
			long        bool
			factor, att float64
			orig        int
		}{
			// The original context is the top-level key's, else 4096.
			{"type longrope", `, "max_position_embeddings": 16384, "rope_scaling": {"type": "longrope", ` + block + `}`, true, 4, math.Sqrt(1 + math.Log(4)/math.Log(4096)), 4096},
			{"su", `, "max_position_embeddings": 256, "original_max_position_embeddings": 64, "rope_scaling": {"type": "su", ` + block + `}`, true, 4, math.Sqrt(1 + math.Log(4)/math.Log(64)), 64},
			// Phi3Config reads an old "yarn" as longrope, not YaRN.
			{"yarn is longrope", `, "max_position_embeddings": 256, "original_max_position_embeddings": 64, "rope_scaling": {"type": "yarn", ` + block + `}`, true, 4, math.Sqrt(1 + math.Log(4)/math.Log(64)), 64},
			// transformers 5.x's spelling, the original in the block too.
			{"rope_parameters", `, "max_position_embeddings": 256, "original_max_position_embeddings": 64, "rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0, "original_max_position_embeddings": 64, ` + block + `}`, true, 4, math.Sqrt(1 + math.Log(4)/math.Log(64)), 64},
			// max_position_embeddings = original: the short factors,
			// factor 1, no attention factor.
			{"short", `, "max_position_embeddings": 64, "original_max_position_embeddings": 64, "rope_scaling": {"type": "longrope", ` + block + `}`, false, 1, 1, 64},
			// The block's factor and attention_factor win.
			{"given", `, "max_position_embeddings": 256, "original_max_position_embeddings": 64, "rope_scaling": {"type": "longrope", "factor": 8, "attention_factor": 1.25, ` + block + `}`, true, 8, 1.25, 64},
			{"given factor", `, "max_position_embeddings": 256, "original_max_position_embeddings": 64, "rope_scaling": {"type": "longrope", "factor": 8, ` + block + `}`, true, 8, math.Sqrt(1 + math.Log(8)/math.Log(64)), 64},
		} {
			t.Run(tt.name, func(t *testing.T) {
				c, err := parse(t, tt.extra)
				if err != nil {
					t.Fatal(err)
				}
				s := c.RopeScaling
				if s.Type != RopeLongrope || s.Long != tt.long || s.Factor != tt.factor || math.Abs(s.AttentionFactor-tt.att) > 1e-15 || s.OriginalMaxPositionEmbeddings != tt.orig {
					t.Errorf("got %s long %v, want factor %g attention_factor %g original %d long %v", s, s.Long, tt.factor, tt.att, tt.orig, tt.long)
				}
				if !reflect.DeepEqual(s.ShortFactor, []float64{1, 1, 1.5, 2, 2, 3, 4, 4}) || !reflect.DeepEqual(s.LongFactor, []float64{1, 2, 4, 8, 16, 16, 32, 32}) {
					t.Errorf("factors %v %v", s.ShortFactor, s.LongFactor)
				}
			})
		}
	})
	t.Run("refused", func(t *testing.T) {
		block := `"short_factor": ` + short + `, "long_factor": ` + long
		for _, tt := range []struct {
			extra, want string
			unsupported bool
		}{
			// Partial RoPE of an odd or empty part, or past the head
			// (head_dim 16).
			{`, "partial_rotary_factor": 0.3125`, "phi3/config.json: partial_rotary_factor: 0.3125 of head_dim 16 gives 5 rotary dimensions", false},
			{`, "partial_rotary_factor": 0.0625`, "phi3/config.json: partial_rotary_factor: 0.0625 of head_dim 16 gives 1 rotary dimensions, want an even number from 2 to head_dim", false},
			{`, "partial_rotary_factor": 0`, "phi3/config.json: partial_rotary_factor: got 0, want a number in (0, 1]", false},
			{`, "partial_rotary_factor": 1.5`, "phi3/config.json: partial_rotary_factor: got 1.5, want a number in (0, 1]", false},
			{`, "partial_rotary_factor": "0.5"`, "phi3/config.json: partial_rotary_factor: got string, want a number", false},
			{`, "partial_rotary_factor": 0.5, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.75}`, "phi3/config.json: rope_parameters.partial_rotary_factor: 0.75, but partial_rotary_factor is 0.5: they must agree", false},
			// The factors are one a rotated pair: 4 for 8 rotary dimensions.
			{`, "partial_rotary_factor": 0.5, "rope_scaling": {"type": "longrope", ` + block + `}`, "phi3/config.json: rope_scaling: short_factor and long_factor hold 8 factors, want the rotary dimensions/2 = 4 (head_dim 16 · partial_rotary_factor 0.5)", false},
			{`, "rope_scaling": {"type": "linear", "factor": 2}`, `phi3/config.json: rope_scaling: rope type "linear": unsupported (Phi3Config takes default and longrope)`, true},
			{`, "rope_scaling": {"type": "dynamic", "factor": 2}`, `phi3/config.json: rope_scaling: rope type "dynamic"`, true},
			{`, "rope_scaling": {"type": "longrope", "short_factor": [1, 1, 1, 1]` + `, "long_factor": [1, 1, 1, 1]}`, "phi3/config.json: rope_scaling: short_factor and long_factor hold 4 factors, want head_dim/2 = 8", false},
			{`, "rope_scaling": {"type": "longrope", "short_factor": ` + short + `}`, `phi3/config.json: rope_scaling: missing required key "long_factor"`, false},
			{`, "rope_scaling": {"type": "longrope", "short_factor": ` + short + `, "long_factor": [1, 2]}`, "phi3/config.json: rope_scaling: short_factor has 8 factors, long_factor 2", false},
			{`, "rope_scaling": {"type": "longrope", "short_factor": [1, 1, 1, 0, 1, 1, 1, 1], "long_factor": ` + long + `}`, "phi3/config.json: rope_scaling.short_factor[3]: got 0, want a positive number", false},
			{`, "rope_scaling": {"type": "longrope", "short_factor": "1", "long_factor": ` + long + `}`, "phi3/config.json: rope_scaling.short_factor: got string, want a list of numbers", false},
			{`, "rope_scaling": {"type": "longrope", "original_max_position_embeddings": 2048, ` + block + `}`, "phi3/config.json: rope_scaling.original_max_position_embeddings: 2048, but the top-level original_max_position_embeddings is 4096", false},
			{`, "original_max_position_embeddings": 0, "rope_scaling": {"type": "longrope", ` + block + `}`, "phi3/config.json: original_max_position_embeddings: got 0", false},
			{`, "rope_scaling": {"type": "longrope", "attention_factor": -1, ` + block + `}`, "phi3/config.json: rope_scaling.attention_factor: got -1", false},
		} {
			_, err := parse(t, tt.extra)
			if err == nil || !strings.Contains(err.Error(), tt.want) || errors.Is(err, ErrUnsupported) != tt.unsupported {
				t.Errorf("%s: err = %v, want %q (unsupported: %v)", tt.extra, err, tt.want, tt.unsupported)
			}
		}
	})
	t.Run("partial rotary", func(t *testing.T) {
		// transformers' dim = int(head_dim * partial_rotary_factor),
		// truncated (0.3 of 16 is 4.8: 4); top-level or in the 5.x
		// block; the longrope factors one a rotated pair.
		for _, tt := range []struct {
			extra string
			want  int
		}{
			{"", 16},
			{`, "partial_rotary_factor": 1`, 16},
			{`, "partial_rotary_factor": 0.75`, 12},
			{`, "partial_rotary_factor": 0.3`, 4},
			{`, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}`, 8},
			{`, "partial_rotary_factor": 0.5, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}`, 8},
			{`, "partial_rotary_factor": 0.5, "rope_scaling": {"type": "longrope", "short_factor": [1, 1, 2, 2], "long_factor": [1, 2, 4, 8]}`, 8},
		} {
			c, err := parse(t, tt.extra)
			if err != nil {
				t.Errorf("%s: %v", tt.extra, err)
				continue
			}
			if c.RotaryDim != tt.want || c.HeadDim != 16 {
				t.Errorf("%s: RotaryDim %d (head_dim %d), want %d", tt.extra, c.RotaryDim, c.HeadDim, tt.want)
			}
		}
	})
	t.Run("Phi-4-mini", func(t *testing.T) {
		// microsoft/Phi-4-mini-instruct's config.json (testdata). Its
		// published count is 3,836,021,760. By hand: embed 200064*3072 =
		// 614,596,608 (lm_head tied); a layer's qkv_proj 3072*(3072+2*1024)
		// + o_proj 3072*3072 + gate_up_proj 16384*3072 + down_proj
		// 3072*8192 + norms 6144 = 100,669,440, x32 = 3,221,422,080;
		// final norm 3072.
		data, err := os.ReadFile("testdata/phi-4-mini-instruct.json")
		if err != nil {
			t.Fatal(err)
		}
		c, err := Parse(data, "phi-4-mini.json")
		if err != nil {
			t.Fatal(err)
		}
		w := want{"phi3", 3072, 8192, 32, 24, 8, 128, 200064, 131072, 1e-5, 10000, 262144, true, "bfloat16", 199999, 199999, []int{199999},
			3_836_021_760}
		if g := got(c); !reflect.DeepEqual(g, w) {
			t.Errorf("got  %+v\nwant %+v", g, w)
		}
		// partial_rotary_factor 0.75 of head_dim 128: 96 rotated, 48
		// factors in each longrope table; factor 131072/4096 = 32 as
		// Phi-3.5's, so the same attention factor sqrt(17/12).
		s := c.RopeScaling
		if c.RotaryDim != 96 || len(s.ShortFactor) != 48 || len(s.LongFactor) != 48 || !s.Long || s.Factor != 32 ||
			math.Abs(s.AttentionFactor-math.Sqrt(17.0/12)) > 1e-15 || s.LongFactor[47] != 47.77 || s.ShortFactor[47] != 1 {
			t.Errorf("rotary dim %d, %s, long %v, factors %v / %v", c.RotaryDim, s, s.Long, s.ShortFactor, s.LongFactor)
		}
	})
	t.Run("longrope elsewhere", func(t *testing.T) {
		// Only Phi3Config reads longrope here; llama's is refused.
		doc := strings.Replace(base, "phi3", "llama", 1) + `, "rope_scaling": {"type": "longrope", "short_factor": ` + short + `, "long_factor": ` + long + `}}`
		if _, err := Parse([]byte(doc), "config.json"); !errors.Is(err, ErrUnsupported) {
			t.Errorf("llama longrope: err = %v, want ErrUnsupported", err)
		}
	})
}
