package hfconfig

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// gemmaConfig is a config.json of gemma-7b's published shape, as the
// first Gemma releases wrote it (hidden_act "gelu", no
// hidden_activation).
const gemmaConfig = `{
  "architectures": ["GemmaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 2,
  "eos_token_id": 1,
  "head_dim": 256,
  "hidden_act": "gelu",
  "hidden_size": 3072,
  "intermediate_size": 24576,
  "max_position_embeddings": 8192,
  "model_type": "gemma",
  "num_attention_heads": 16,
  "num_hidden_layers": 28,
  "num_key_value_heads": 16,
  "pad_token_id": 0,
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 10000.0,
  "torch_dtype": "bfloat16",
  "vocab_size": 256000
}`

// TestGemma reads Gemma's (the first version's) config: gemma-7b's and
// gemma-2b's parameter counts, GemmaConfig's defaults, its activation
// keys and its refusals.
func TestGemma(t *testing.T) {
	edit := func(kv map[string]string) []byte { return editJSON(gemmaConfig, kv) }
	t.Run("gemma-7b", func(t *testing.T) {
		c, err := Parse([]byte(gemmaConfig), "gemma-7b.json")
		if err != nil {
			t.Fatal(err)
		}
		// Published count 8,537,680,896. By hand: embed 256000*3072 =
		// 786,432,000 (tied); a layer's q, k, v, o 4*3072*4096 =
		// 50,331,648, MLP 3*3072*24576 = 226,492,416 and two norms 6,144:
		// 276,830,208, x28 = 7,751,245,824; final norm 3072.
		w := want{"gemma", 3072, 24576, 28, 16, 16, 256, 256000, 8192, 1e-6, 10000, 0, true, "bfloat16", 2, 1, []int{1},
			8_537_680_896}
		if g := got(c); !reflect.DeepEqual(g, w) {
			t.Errorf("got  %+v\nwant %+v", g, w)
		}
		if !c.Gemma() || !c.Gemma1() || c.GemmaPostNorms() || c.Gemma2() || c.Gemma3() || c.QKNorm() || c.HiddenAct != "gelu_pytorch_tanh" ||
			c.AttnSoftcap != 0 || c.FinalSoftcap != 0 {
			t.Errorf("gemma %v gemma1 %v post norms %v gemma2 %v gemma3 %v qk norm %v act %q caps %g %g", c.Gemma(), c.Gemma1(),
				c.GemmaPostNorms(), c.Gemma2(), c.Gemma3(), c.QKNorm(), c.HiddenAct, c.AttnSoftcap, c.FinalSoftcap)
		}
		// GemmaAttention: scaling head_dim**-0.5.
		if got, want := c.AttentionScale(), 1.0/16; got != want {
			t.Errorf("AttentionScale %g, want %g", got, want)
		}
		for i := range 28 {
			theta, s := c.LayerRope(i)
			if c.LayerWindow(i) != 0 || theta != 10000 || !s.IsDefault() {
				t.Errorf("layer %d: window %d theta %g scaling %v, want 0 10000 default", i, c.LayerWindow(i), theta, s)
			}
		}
		for _, m := range []string{"self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj"} {
			if c.LinearBias(m) {
				t.Errorf("LinearBias(%s)", m)
			}
		}
	})
	t.Run("gemma-2b", func(t *testing.T) {
		// Multi-query attention (one kv head). Published count
		// 2,506,172,416: embed 256000*2048 = 524,288,000; a layer's q and
		// o 2*2048*2048, k and v 2*2048*256: 9,437,184, MLP
		// 3*2048*16384 = 100,663,296, two norms 4,096: 110,104,576, x18 =
		// 1,981,882,368; final norm 2048.
		c, err := Parse(edit(map[string]string{"hidden_size": "2048", "intermediate_size": "16384", "num_hidden_layers": "18",
			"num_attention_heads": "8", "num_key_value_heads": "1"}), "gemma-2b.json")
		if err != nil {
			t.Fatal(err)
		}
		if n := c.NumParameters(); n != 2_506_172_416 {
			t.Errorf("NumParameters %d, want 2,506,172,416", n)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		// GemmaConfig's: head_dim 256, num_key_value_heads 16, 8192
		// positions, rope_theta 10000, tied embeddings, GELU-tanh; a
		// sliding_window key means nothing to GemmaAttention.
		c, err := Parse(edit(map[string]string{"head_dim": "", "num_key_value_heads": "", "max_position_embeddings": "",
			"rope_theta": "", "hidden_act": "", "sliding_window": "4096"}), "x.json")
		if err != nil {
			t.Fatal(err)
		}
		if c.HeadDim != 256 || c.NumKeyValueHeads != 16 || c.MaxPositionEmbeddings != 8192 || c.RopeTheta != 10000 ||
			!c.TieWordEmbeddings || c.HiddenAct != "gelu_pytorch_tanh" || c.SlidingWindow != 0 || c.LayerWindow(3) != 0 {
			t.Errorf("head_dim %d kv heads %d positions %d theta %g tie %v act %q window %d %d", c.HeadDim, c.NumKeyValueHeads,
				c.MaxPositionEmbeddings, c.RopeTheta, c.TieWordEmbeddings, c.HiddenAct, c.SlidingWindow, c.LayerWindow(3))
		}
	})
	t.Run("activation keys", func(t *testing.T) {
		for _, kv := range []map[string]string{
			{"hidden_act": `"gelu_pytorch_tanh"`},
			{"hidden_activation": `"gelu_pytorch_tanh"`},
			{"hidden_act": `"relu"`, "hidden_activation": `"gelu_pytorch_tanh"`}, // hidden_activation first
			{"hidden_activation": "null"},
		} {
			c, err := Parse(edit(kv), "x.json")
			if err != nil || c.HiddenAct != "gelu_pytorch_tanh" {
				t.Errorf("%v: act %v, %v; want gelu_pytorch_tanh", kv, c, err)
			}
		}
	})
	t.Run("attention_bias", func(t *testing.T) {
		// GemmaAttention: bias=config.attention_bias on q/k/v/o_proj; the
		// MLP has none.
		c, err := Parse(edit(map[string]string{"attention_bias": "true"}), "x.json")
		if err != nil {
			t.Fatal(err)
		}
		if !c.LinearBias("self_attn.q_proj") || !c.LinearBias("self_attn.o_proj") || c.LinearBias("mlp.gate_proj") {
			t.Errorf("LinearBias q %v o %v gate %v, want true true false", c.LinearBias("self_attn.q_proj"),
				c.LinearBias("self_attn.o_proj"), c.LinearBias("mlp.gate_proj"))
		}
	})
	for _, tc := range []struct {
		name string
		kv   map[string]string
		want string
	}{
		{"hidden_act", map[string]string{"hidden_act": `"relu"`}, `hidden_act "relu"`},
		{"hidden_activation", map[string]string{"hidden_activation": `"gelu"`}, `hidden_activation "gelu"`},
		{"bidirectional", map[string]string{"use_bidirectional_attention": "true"}, "use_bidirectional_attention: true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(edit(tc.kv), "x.json")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "x.json") {
				t.Errorf("Parse: %v, want an error naming x.json and %q", err, tc.want)
			}
			if tc.name != "bidirectional" && !errors.Is(err, ErrUnsupported) {
				t.Errorf("Parse: %v, want ErrUnsupported", err)
			}
		})
	}
}
