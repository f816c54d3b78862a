package model

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/internal/fixtures"
)

// TestCheckShapes: a config whose sizes disagree with the weights is
// reported tensor by tensor, the first three with both shapes and a count
// of the rest; tensors the config does not explain are left to
// CheckExplained.
func TestCheckShapes(t *testing.T) {
	dir := fixture(t, "models/stories260K-hf-mistral")
	set, cfg := fixtures.OpenCheckpoint(t, dir)
	for _, tc := range []struct {
		name string
		edit func(c *hfconfig.Config)
		want []string // substrings of the error; none: no error
	}{
		{"sound", func(c *hfconfig.Config) {}, nil},
		{"intermediate_size", func(c *hfconfig.Config) { c.IntermediateSize = 200 }, []string{
			"15 tensors of another shape than the config gives",
			"intermediate_size 200",
			`tensor "model.layers.0.mlp.down_proj.weight": shape [64 172], want [64 200]`,
			`tensor "model.layers.0.mlp.gate_proj.weight": shape [172 64], want [200 64]`,
			"; and 12 more",
		}},
		{"vocab_size", func(c *hfconfig.Config) { c.VocabSize = 500 }, []string{
			"2 tensors of another shape",
			`tensor "lm_head.weight": shape [512 64], want [500 64]; tensor "model.embed_tokens.weight": shape [512 64], want [500 64]`,
		}},
		{"fewer layers", func(c *hfconfig.Config) { c.NumHiddenLayers = 3 }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := *cfg
			tc.edit(&c)
			err := CheckShapes(dir, set.Infos(), &c, nil)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrMisshapen) {
				t.Fatalf("err = %v, want one wrapping ErrMisshapen", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, lacks %q", err, w)
				}
			}
			if strings.Contains(tc.name, "vocab") && strings.Contains(err.Error(), "more") {
				t.Errorf("err = %v counts more tensors than it names", err)
			}
		})
	}
}

// TestWantShape: the shapes of a GPTQ checkpoint's tensors (spec §1.1) for
// stories260K's q_proj and k_proj (K 64, N 64 and 32) at 4 bits, one group.
func TestWantShape(t *testing.T) {
	_, cfg := fixtures.OpenCheckpoint(t, fixture(t, "models/stories260K-hf-mistral"))
	q := gptq.DefaultQuantizeConfig()
	q.Bits, q.GroupSize = 4, 128
	for _, tc := range []struct {
		name  string
		quant *gptq.QuantizeConfig
		want  []int
	}{
		{"model.layers.1.self_attn.q_proj.qweight", &q, []int{8, 64}},
		{"model.layers.1.self_attn.k_proj.qweight", &q, []int{8, 32}},
		{"model.layers.1.self_attn.k_proj.qzeros", &q, []int{1, 4}},
		{"model.layers.1.self_attn.k_proj.scales", &q, []int{1, 32}},
		{"model.layers.1.self_attn.k_proj.g_idx", &q, []int{64}},
		{"model.layers.1.self_attn.k_proj.weight", nil, []int{32, 64}},
		{"model.layers.1.mlp.down_proj.weight", nil, []int{64, 172}},
		{"model.layers.1.post_attention_layernorm.weight", nil, []int{64}},
		{"lm_head.weight", nil, []int{512, 64}},
		{"model.layers.1.self_attn.k_proj.qweight", nil, nil}, // not explained without quant
		{"model.layers.5.self_attn.k_proj.weight", nil, nil},  // past num_hidden_layers
		{"model.layers.1.self_attn.rotary_emb.inv_freq", nil, nil},
	} {
		if got := WantShape(tc.name, cfg, tc.quant); !slices.Equal(got, tc.want) {
			t.Errorf("WantShape(%s, quant %v) = %v, want %v", tc.name, tc.quant != nil, got, tc.want)
		}
	}
}
