package hfconfig

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestGemma3 reads gemma-3-1b-it's published config.json (testdata) and
// Gemma3TextConfig's defaults, layer types and refusals.
func TestGemma3(t *testing.T) {
	data, err := os.ReadFile("testdata/gemma-3-1b-it.json")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("gemma-3-1b-it", func(t *testing.T) {
		c, err := Parse(data, "gemma-3-1b-it.json")
		if err != nil {
			t.Fatal(err)
		}
		// Published count 999,885,952. By hand: embed 262144*1152 =
		// 301,989,888 (tied); a layer's q 1152*1024 + k, v 2*1152*256 + o
		// 1024*1152 = 2,949,120, MLP 3*1152*6912 = 23,887,872, four norms
		// 4*1152 and q/k norms 2*256 = 5,120: 26,842,112, x26 =
		// 697,894,912; final norm 1152.
		w := want{"gemma3_text", 1152, 6912, 26, 4, 1, 256, 262144, 32768, 1e-6, 1e6, 512, true, "bfloat16", 2, 1, []int{1, 106},
			999_885_952}
		if g := got(c); !reflect.DeepEqual(g, w) {
			t.Errorf("got  %+v\nwant %+v", g, w)
		}
		if !c.Gemma3() || !c.QKNorm() || c.HiddenAct != "gelu_pytorch_tanh" || c.RopeLocalTheta != 10000 || c.QueryPreAttnScalar != 256 {
			t.Errorf("gemma3 %v qk norm %v act %q local theta %g query_pre_attn_scalar %g", c.Gemma3(), c.QKNorm(), c.HiddenAct, c.RopeLocalTheta, c.QueryPreAttnScalar)
		}
		if got, want := c.AttentionScale(), 1.0/16; got != want {
			t.Errorf("AttentionScale %g, want %g", got, want)
		}
		for i := range 26 {
			full := (i+1)%6 == 0
			wantWin, wantTheta := 512, 10000.0
			if full {
				wantWin, wantTheta = 0, 1e6
			}
			theta, s := c.LayerRope(i)
			if c.LayerWindow(i) != wantWin || theta != wantTheta || !s.IsDefault() {
				t.Errorf("layer %d: window %d theta %g scaling %v, want %d %g default", i, c.LayerWindow(i), theta, s, wantWin, wantTheta)
			}
		}
		for _, m := range []string{"self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj"} {
			if c.LinearBias(m) {
				t.Errorf("LinearBias(%s)", m)
			}
		}
	})
	edit := func(t *testing.T, kv map[string]string) []byte {
		t.Helper()
		s := string(data)
		for k, v := range kv {
			i := strings.Index(s, `"`+k+`": `)
			if i < 0 {
				s = strings.Replace(s, "{\n", "{\n  \""+k+"\": "+v+",\n", 1)
				continue
			}
			j := i + strings.IndexAny(s[i:], ",\n")
			if s[j] == '\n' || strings.HasPrefix(s[i+len(k)+4:], "[") {
				j = i + strings.Index(s[i:], "],") + 1
			}
			s = s[:i] + `"` + k + `": ` + v + s[j:]
		}
		return []byte(s)
	}
	t.Run("_sliding_window_pattern", func(t *testing.T) {
		c, err := Parse(edit(t, map[string]string{"sliding_window_pattern": "2", "num_hidden_layers": "4"}), "x.json")
		if err != nil {
			t.Fatal(err)
		}
		d, err := Parse([]byte(strings.Replace(string(edit(t, map[string]string{"num_hidden_layers": "4"})), `"sliding_window_pattern": 6`, `"_sliding_window_pattern": 2`, 1)), "x.json")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"sliding_attention", "full_attention", "sliding_attention", "full_attention"}
		if !reflect.DeepEqual(c.LayerTypes, want) || !reflect.DeepEqual(d.LayerTypes, want) {
			t.Errorf("layer types %v and %v, want %v", c.LayerTypes, d.LayerTypes, want)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		c, err := Parse([]byte(`{"model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 7, "num_attention_heads": 8, "vocab_size": 100}`), "min.json")
		if err != nil {
			t.Fatal(err)
		}
		if c.HeadDim != 256 || c.NumKeyValueHeads != 4 || c.MaxPositionEmbeddings != 131072 || c.SlidingWindow != 4096 || c.RopeTheta != 1e6 ||
			c.RopeLocalTheta != 10000 || c.QueryPreAttnScalar != 256 || !c.TieWordEmbeddings || c.RMSNormEps != 1e-6 || c.HiddenAct != "gelu_pytorch_tanh" {
			t.Errorf("defaults: %+v", c)
		}
		want := []string{"sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention", "full_attention", "sliding_attention"}
		if !reflect.DeepEqual(c.LayerTypes, want) {
			t.Errorf("layer types %v, want %v", c.LayerTypes, want)
		}
	})
	t.Run("layer_types and linear scaling", func(t *testing.T) {
		c, err := Parse(edit(t, map[string]string{"num_hidden_layers": "2", "layer_types": `["full_attention", "sliding_attention"]`,
			"rope_scaling": `{"rope_type": "linear", "factor": 8.0}`}), "x.json")
		if err != nil {
			t.Fatal(err)
		}
		if c.LayerWindow(0) != 0 || c.LayerWindow(1) != 512 {
			t.Errorf("windows %d %d", c.LayerWindow(0), c.LayerWindow(1))
		}
		if _, s := c.LayerRope(0); s.Type != RopeLinear || s.Factor != 8 {
			t.Errorf("full layer's scaling %v, want linear 8", s)
		}
		if theta, s := c.LayerRope(1); theta != 10000 || !s.IsDefault() {
			t.Errorf("sliding layer's rope %g %v, want 10000 unscaled", theta, s)
		}
	})
	t.Run("5.x rope_parameters by layer type", func(t *testing.T) {
		c, err := Parse(edit(t, map[string]string{"rope_scaling": "null", "rope_parameters": `{"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0}, "sliding_attention": {"rope_type": "default", "rope_theta": 20000.0}}`}), "x.json")
		if err != nil {
			t.Fatal(err)
		}
		if c.RopeScaling.Type != RopeLinear || c.RopeScaling.Factor != 8 || c.RopeTheta != 1e6 || c.RopeLocalTheta != 20000 {
			t.Errorf("scaling %v theta %g local %g", c.RopeScaling, c.RopeTheta, c.RopeLocalTheta)
		}
	})
	for _, tt := range []struct {
		name string
		kv   map[string]string
		want string
	}{
		{"attn softcap", map[string]string{"attn_logit_softcapping": "50.0"}, "attn_logit_softcapping"},
		{"final softcap", map[string]string{"final_logit_softcapping": "30.0"}, "final_logit_softcapping"},
		{"activation", map[string]string{"hidden_activation": `"gelu"`}, "hidden_activation"},
		{"layer_types length", map[string]string{"layer_types": `["full_attention"]`}, "layer_types"},
		{"layer_types kind", map[string]string{"num_hidden_layers": "1", "layer_types": `["chunked_attention"]`}, "layer_types[0]"},
		{"pattern", map[string]string{"sliding_window_pattern": "0"}, "sliding_window_pattern"},
		{"scalar", map[string]string{"query_pre_attn_scalar": "0"}, "query_pre_attn_scalar"},
		// A gemma3 document without text_config: the key is required.
		{"multimodal", map[string]string{"model_type": `"gemma3"`}, "text_config"},
		{"bidirectional", map[string]string{"use_bidirectional_attention": "true"}, "use_bidirectional_attention"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(edit(t, tt.kv), "x.json")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one naming %q", err, tt.want)
			}
			if tt.name != "layer_types length" && tt.name != "layer_types kind" && tt.name != "pattern" && tt.name != "scalar" && tt.name != "multimodal" && !errors.Is(err, ErrUnsupported) {
				t.Errorf("err %v does not wrap ErrUnsupported", err)
			}
		})
	}
}

// TestGemma3Multimodal reads gemma-3-4b-it's published config.json
// (testdata; model_type gemma3): its text_config with Gemma3TextConfig's
// defaults for the keys it omits, the top level's dtype and eos ids, the
// whole document written back by MarshalWith, and the two tensor-name
// layouts.
func TestGemma3Multimodal(t *testing.T) {
	data, err := os.ReadFile("testdata/gemma-3-4b-it.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data, "gemma-3-4b-it.json")
	if err != nil {
		t.Fatal(err)
	}
	// The language model by hand: embed 262208*2560 = 671,252,480 (tied); a
	// layer's q 2560*2048 + k, v 2*2560*1024 + o 2048*2560 = 15,728,640,
	// MLP 3*2560*10240 = 78,643,200, four norms 4*2560 and q/k norms
	// 2*256 = 10,752: 94,382,592, x34 = 3,209,008,128; final norm 2560.
	// (The published 4.3B adds the SigLIP tower and projector.)
	w := want{"gemma3_text", 2560, 10240, 34, 8, 4, 256, 262208, 131072, 1e-6, 1e6, 1024, true, "bfloat16", 2, 1, []int{1, 106},
		3_880_263_168}
	if g := got(c); !reflect.DeepEqual(g, w) {
		t.Errorf("got  %+v\nwant %+v", g, w)
	}
	if !c.Multimodal() || !c.Gemma3() || c.RopeScaling.Type != RopeLinear || c.RopeScaling.Factor != 8 || c.QueryPreAttnScalar != 256 {
		t.Errorf("multimodal %v gemma3 %v scaling %+v query_pre_attn_scalar %g", c.Multimodal(), c.Gemma3(), c.RopeScaling, c.QueryPreAttnScalar)
	}
	if theta, s := c.LayerRope(0); theta != 10000 || !s.IsDefault() || c.LayerWindow(5) != 0 || c.LayerWindow(4) != 1024 {
		t.Errorf("layer 0 theta %g scaling %v, windows %d %d", theta, s, c.LayerWindow(4), c.LayerWindow(5))
	}
	if got, want := c.Architectures, []string{"Gemma3ForConditionalGeneration"}; !reflect.DeepEqual(got, want) {
		t.Errorf("architectures %v, want %v", got, want)
	}
	out, err := c.MarshalWith(map[string]any{"quantization_config": map[string]any{"bits": 4}, "torch_dtype": "float16"})
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out, "out.json")
	if err != nil {
		t.Fatal(err)
	}
	if back.DType != "float16" || string(back.QuantizationConfig) != `{"bits":4}` || !reflect.DeepEqual(back.Outer["vision_config"], c.Outer["vision_config"]) ||
		!reflect.DeepEqual(back.Outer["text_config"], c.Outer["text_config"]) || back.Outer["mm_tokens_per_image"] == nil {
		t.Errorf("written back:\n%s", out)
	}
	if got, want := c.DTypeKeys(), []string{"torch_dtype"}; !reflect.DeepEqual(got, want) {
		t.Errorf("DTypeKeys %v, want %v", got, want)
	}
	for _, tc := range []struct {
		name        string
		names       []string
		text, store [][2]string // stored, text name
	}{
		{"4.50", []string{"language_model.model.embed_tokens.weight", "vision_tower.vision_model.post_layernorm.weight"}, [][2]string{
			{"language_model.model.layers.3.mlp.up_proj.weight", "model.layers.3.mlp.up_proj.weight"},
			{"language_model.model.norm.weight", "model.norm.weight"},
			{"language_model.lm_head.weight", "lm_head.weight"},
			{"vision_tower.vision_model.post_layernorm.weight", "vision_tower.vision_model.post_layernorm.weight"},
			{"multi_modal_projector.mm_input_projection_weight", "multi_modal_projector.mm_input_projection_weight"},
		}, nil},
		{"4.52", []string{"model.vision_tower.vision_model.post_layernorm.weight", "model.language_model.embed_tokens.weight"}, [][2]string{
			{"model.language_model.layers.3.self_attn.q_proj.qweight", "model.layers.3.self_attn.q_proj.qweight"},
			{"model.language_model.embed_tokens.weight", "model.embed_tokens.weight"},
			{"lm_head.weight", "lm_head.weight"},
			{"model.vision_tower.vision_model.post_layernorm.weight", "model.vision_tower.vision_model.post_layernorm.weight"},
			{"model.multi_modal_projector.mm_soft_emb_norm.weight", "model.multi_modal_projector.mm_soft_emb_norm.weight"},
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) { checkTextNames(t, c, tc.names, tc.text) })
	}
	if _, _, err := c.TextNames([]string{"model.layers.0.mlp.up_proj.weight"}); err == nil || !strings.Contains(err.Error(), "language_model") {
		t.Errorf("a checkpoint without the prefix: %v", err)
	}
	for name, doc := range map[string]string{
		"no text_config": `{"model_type": "gemma3"}`,
		"other text":     `{"model_type": "gemma3", "text_config": {"model_type": "gemma2"}}`,
	} {
		if _, err := Parse([]byte(doc), "x.json"); err == nil || !strings.Contains(err.Error(), "text_config") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
