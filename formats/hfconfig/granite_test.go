package hfconfig

import (
	"strings"
	"testing"
)

// graniteConfig is a config.json of granite-3.1-8b-instruct's shape and
// multipliers.
const graniteConfig = `{
  "architectures": ["GraniteForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.1,
  "attention_multiplier": 0.0078125,
  "bos_token_id": 0,
  "embedding_multiplier": 12.0,
  "eos_token_id": 0,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "intermediate_size": 12800,
  "logits_scaling": 16.0,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "granite",
  "num_attention_heads": 32,
  "num_hidden_layers": 40,
  "num_key_value_heads": 8,
  "pad_token_id": 0,
  "residual_multiplier": 0.22,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "rope_theta": 10000000.0,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "vocab_size": 49155
}`

// TestGranite reads Granite's config: its multipliers, GraniteConfig's
// defaults (every multiplier 1, num_key_value_heads the heads, an untied
// head), the parameter count, the Llama biases and the refusals.
func TestGranite(t *testing.T) {
	c, err := Parse([]byte(graniteConfig), "granite.json")
	if err != nil {
		t.Fatal(err)
	}
	g := c.Granite
	if g == nil || *g != (Granite{EmbeddingMultiplier: 12, AttentionMultiplier: 0.0078125, ResidualMultiplier: 0.22, LogitsScaling: 16}) {
		t.Fatalf("Granite %+v", g)
	}
	if c.AttentionScale() != 0.0078125 || c.HeadDim != 128 || c.NumKeyValueHeads != 8 || !c.TieWordEmbeddings || c.Gemma() {
		t.Errorf("scale %g head_dim %d kv heads %d tied %v gemma %v", c.AttentionScale(), c.HeadDim, c.NumKeyValueHeads, c.TieWordEmbeddings, c.Gemma())
	}
	// By hand: embed 49155*4096 = 201,338,880 (tied); a layer's q and o
	// 2*4096*4096, k and v 2*4096*1024: 41,943,040, MLP 3*4096*12800 =
	// 157,286,400, two norms 8,192: 199,237,632, x40 = 7,969,505,280;
	// final norm 4,096.
	if n := c.NumParameters(); n != 8_170_848_256 {
		t.Errorf("NumParameters %d, want 8,170,848,256", n)
	}
	d, err := Parse([]byte(`{"model_type": "granite", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
		"num_attention_heads": 4, "vocab_size": 256, "attention_bias": true, "sliding_window": 16}`), "d.json")
	if err != nil {
		t.Fatal(err)
	}
	// (GraniteAttention has no window: a sliding_window key means nothing.)
	if *d.Granite != (Granite{1, 1, 1, 1}) || d.NumKeyValueHeads != 4 || d.TieWordEmbeddings || d.AttentionScale() != 1 || d.SlidingWindow != 0 ||
		!d.LinearBias("self_attn.q_proj") || d.LinearBias("mlp.up_proj") {
		t.Errorf("defaults: granite %+v kv heads %d tied %v scale %g biases q %v up %v", *d.Granite, d.NumKeyValueHeads,
			d.TieWordEmbeddings, d.AttentionScale(), d.LinearBias("self_attn.q_proj"), d.LinearBias("mlp.up_proj"))
	}
	for _, tc := range []struct{ edit, want string }{
		{`"residual_multiplier": 0.22`, `"residual_multiplier": 0`},
		{`"logits_scaling": 16.0`, `"logits_scaling": -16`},
		{`"embedding_multiplier": 12.0`, `"embedding_multiplier": "12"`},
	} {
		bad := strings.Replace(graniteConfig, tc.edit, tc.want, 1)
		key := tc.want[1 : strings.Index(tc.want[1:], `"`)+1]
		if _, err := Parse([]byte(bad), "x.json"); err == nil || !strings.Contains(err.Error(), "x.json: "+key) {
			t.Errorf("%s: %v, want an error naming x.json and %s", tc.want, err, key)
		}
	}
}
