package hfconfig

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// gemma2Config is gemma-2-9b-it's config.json, less its bookkeeping keys
// (initializer_range, transformers_version, use_cache).
const gemma2Config = `{
  "architectures": ["Gemma2ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "attn_logit_softcapping": 50.0,
  "bos_token_id": 2,
  "cache_implementation": "hybrid",
  "eos_token_id": 1,
  "final_logit_softcapping": 30.0,
  "head_dim": 256,
  "hidden_act": "gelu_pytorch_tanh",
  "hidden_activation": "gelu_pytorch_tanh",
  "hidden_size": 3584,
  "intermediate_size": 14336,
  "max_position_embeddings": 8192,
  "model_type": "gemma2",
  "num_attention_heads": 16,
  "num_hidden_layers": 42,
  "num_key_value_heads": 8,
  "pad_token_id": 0,
  "query_pre_attn_scalar": 256,
  "rms_norm_eps": 1e-06,
  "rope_theta": 10000.0,
  "sliding_window": 4096,
  "sliding_window_size": 4096,
  "torch_dtype": "bfloat16",
  "vocab_size": 256000
}`

// editJSON returns the config.json s, one key a line, with each key of kv
// set to its JSON value (added first where s lacks it), or removed where
// the value is "".
func editJSON(s string, kv map[string]string) []byte {
	for k, v := range kv {
		i := strings.Index(s, `"`+k+`": `)
		if i < 0 {
			s = strings.Replace(s, "{\n", "{\n  \""+k+"\": "+v+",\n", 1)
			continue
		}
		j := i + strings.IndexAny(s[i:], ",\n")
		if v == "" {
			s = s[:i] + s[j+1:] // the key removed
			continue
		}
		s = s[:i] + `"` + k + `": ` + v + s[j:]
	}
	return []byte(s)
}

// TestGemma2 reads gemma-2-9b-it's config and Gemma2Config's defaults,
// soft-capping keys, layer types and refusals.
func TestGemma2(t *testing.T) {
	edit := func(kv map[string]string) []byte { return editJSON(gemma2Config, kv) }
	t.Run("gemma-2-9b-it", func(t *testing.T) {
		c, err := Parse([]byte(gemma2Config), "gemma-2-9b-it.json")
		if err != nil {
			t.Fatal(err)
		}
		// Published count 9,241,705,984. By hand: embed 256000*3584 =
		// 917,504,000 (tied); a layer's q 3584*4096 + k, v 2*3584*2048 + o
		// 4096*3584 = 44,040,192, MLP 3*3584*14336 = 154,140,672 and four
		// norms 4*3584 = 14,336: 198,195,200, x42 = 8,324,198,400; final
		// norm 3584.
		w := want{"gemma2", 3584, 14336, 42, 16, 8, 256, 256000, 8192, 1e-6, 10000, 4096, true, "bfloat16", 2, 1, []int{1},
			9_241_705_984}
		if g := got(c); !reflect.DeepEqual(g, w) {
			t.Errorf("got  %+v\nwant %+v", g, w)
		}
		if !c.Gemma() || !c.Gemma2() || c.Gemma3() || c.QKNorm() || c.HiddenAct != "gelu_pytorch_tanh" || c.QueryPreAttnScalar != 256 ||
			c.AttnSoftcap != 50 || c.FinalSoftcap != 30 {
			t.Errorf("gemma %v gemma2 %v gemma3 %v qk norm %v act %q query_pre_attn_scalar %g caps %g %g", c.Gemma(), c.Gemma2(), c.Gemma3(),
				c.QKNorm(), c.HiddenAct, c.QueryPreAttnScalar, c.AttnSoftcap, c.FinalSoftcap)
		}
		if got, want := c.AttentionScale(), 1.0/16; got != want {
			t.Errorf("AttentionScale %g, want %g", got, want)
		}
		// Gemma2Config: layer i slides where i is even; every layer
		// rotates by rope_theta.
		for i := range 42 {
			wantWin := 4096
			if i%2 == 1 {
				wantWin = 0
			}
			theta, s := c.LayerRope(i)
			if c.LayerWindow(i) != wantWin || theta != 10000 || !s.IsDefault() {
				t.Errorf("layer %d: window %d theta %g scaling %v, want %d 10000 default", i, c.LayerWindow(i), theta, s, wantWin)
			}
		}
		for _, m := range []string{"self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj"} {
			if c.LinearBias(m) {
				t.Errorf("LinearBias(%s)", m)
			}
		}
	})
	t.Run("defaults", func(t *testing.T) {
		// Gemma2Config's: head_dim 256, query_pre_attn_scalar 256, the caps
		// 50 and 30, tied embeddings, GELU-tanh.
		c, err := Parse(edit(map[string]string{"head_dim": "", "query_pre_attn_scalar": "", "attn_logit_softcapping": "",
			"final_logit_softcapping": "", "hidden_activation": "", "hidden_act": ""}), "x.json")
		if err != nil {
			t.Fatal(err)
		}
		if c.HeadDim != 256 || c.QueryPreAttnScalar != 256 || c.AttnSoftcap != 50 || c.FinalSoftcap != 30 || !c.TieWordEmbeddings ||
			c.HiddenAct != "gelu_pytorch_tanh" {
			t.Errorf("head_dim %d query_pre_attn_scalar %g caps %g %g tie %v act %q", c.HeadDim, c.QueryPreAttnScalar, c.AttnSoftcap,
				c.FinalSoftcap, c.TieWordEmbeddings, c.HiddenAct)
		}
	})
	t.Run("null caps", func(t *testing.T) {
		c, err := Parse(edit(map[string]string{"attn_logit_softcapping": "null", "final_logit_softcapping": "null"}), "x.json")
		if err != nil {
			t.Fatal(err)
		}
		if c.AttnSoftcap != 0 || c.FinalSoftcap != 0 {
			t.Errorf("caps %g %g, want none", c.AttnSoftcap, c.FinalSoftcap)
		}
	})
	t.Run("layer_types", func(t *testing.T) {
		c, err := Parse(edit(map[string]string{"num_hidden_layers": "3",
			"layer_types": `["full_attention", "sliding_attention", "sliding_attention"]`}), "x.json")
		if err != nil {
			t.Fatal(err)
		}
		if c.LayerWindow(0) != 0 || c.LayerWindow(1) != 4096 || c.LayerWindow(2) != 4096 {
			t.Errorf("windows %d %d %d", c.LayerWindow(0), c.LayerWindow(1), c.LayerWindow(2))
		}
	})
	for _, tc := range []struct {
		name string
		kv   map[string]string
		want string
	}{
		{"zero attention cap", map[string]string{"attn_logit_softcapping": "0"}, "attn_logit_softcapping: got 0, want a positive number or null"},
		{"negative final cap", map[string]string{"final_logit_softcapping": "-30"}, "final_logit_softcapping: got -30, want a positive number or null"},
		{"string cap", map[string]string{"final_logit_softcapping": `"30"`}, "final_logit_softcapping"},
		{"query_pre_attn_scalar", map[string]string{"query_pre_attn_scalar": "0"}, "query_pre_attn_scalar: got 0"},
		{"hidden_activation", map[string]string{"hidden_activation": `"gelu"`}, `hidden_activation "gelu"`},
		{"layer_types", map[string]string{"layer_types": `["full_attention"]`}, "layer_types: 1 entries for num_hidden_layers 42"},
		{"bidirectional", map[string]string{"use_bidirectional_attention": "true"}, "use_bidirectional_attention: true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(edit(tc.kv), "x.json")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "x.json") {
				t.Errorf("Parse: %v, want an error naming x.json and %q", err, tc.want)
			}
			if tc.name == "hidden_activation" && !errors.Is(err, ErrUnsupported) {
				t.Errorf("Parse: %v, want ErrUnsupported", err)
			}
		})
	}
}
