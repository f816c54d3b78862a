package hfconfig

import (
	"math"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestMultimodalConfigs reads the published config.json of a multimodal
// checkpoint of each wrapper beside gemma3 (TestGemma3Multimodal) as its
// language model: the keys, the parameter count worked out by hand, the
// whole document written back by MarshalWith.
func TestMultimodalConfigs(t *testing.T) {
	for _, tc := range []struct {
		file, wrapper, arch string
		want                want
		sections            []int
	}{
		// Mistral-Small-3.1-24B-Instruct-2503: text_config a mistral
		// config. Embeddings 131072·5120 = 671,088,640, untied (x2); a layer's
		// q 5120·4096, k and v 5120·1024 each, o 4096·5120 = 52,428,800, MLP
		// 3·5120·32768 = 503,316,480, norms 10,240: 555,755,520, x40 =
		// 22,230,220,800; final norm 5120: 23,572,403,200, Mistral-Small-24B's.
		{"mistral-small-3.1-24b-instruct-2503.json", "mistral3", "Mistral3ForConditionalGeneration",
			want{"mistral", 5120, 32768, 40, 32, 8, 128, 131072, 131072, 1e-5, 1e9, 0, false, "bfloat16", -1, -1, nil, 23_572_403_200}, nil},
		// Qwen2.5-VL-7B-Instruct (transformers 4.41: flat): the text model
		// is Qwen2.5-7B's shape, 7,615,616,512 parameters as published
		// (embeddings 152064·3584 twice, 28 layers of 233,057,792 with the
		// q/k/v biases, the final norm). No window: use_sliding_window false.
		{"qwen2.5-vl-7b-instruct.json", "qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration",
			want{"qwen2", 3584, 18944, 28, 28, 4, 128, 152064, 128000, 1e-6, 1e6, 0, false, "bfloat16", 151643, 151645, []int{151645}, 7_615_616_512}, []int{16, 24, 24}},
		// Qwen3-VL-2B-Instruct: text_config a qwen3 text model, tied.
		// Embeddings 151936·2048 = 311,164,928; a layer's q and o
		// 2·2048·2048, k and v 2·2048·1024, MLP 3·2048·6144, norms 2·2048,
		// q/k norms 2·128: 50,336,000, x28 = 1,409,408,000; final norm:
		// 1,720,574,976 (the card's 1.7B; 1.4B without embeddings).
		{"qwen3-vl-2b-instruct.json", "qwen3_vl", "Qwen3VLForConditionalGeneration",
			want{"qwen3", 2048, 6144, 28, 16, 8, 128, 151936, 262144, 1e-6, 5e6, 0, true, "bfloat16", 151643, 151645, []int{151645}, 1_720_574_976}, []int{24, 20, 20}},
		// Qwen3-VL-30B-A3B-Instruct: text_config a qwen3_moe text model,
		// 128 experts of 768, 8 a token. A layer's attention 2·2048·4096 +
		// 2·2048·512 = 18,874,368, q/k norms 256, norms 4096, router
		// 128·2048 = 262,144, experts 128·3·2048·768 = 603,979,776:
		// 623,120,640, x48 = 29,909,790,720; embeddings 151936·2048 twice,
		// the final norm: 30,532,122,624, Qwen3-30B-A3B's.
		{"qwen3-vl-30b-a3b-instruct.json", "qwen3_vl_moe", "Qwen3VLMoeForConditionalGeneration",
			want{"qwen3_moe", 2048, 6144, 48, 32, 4, 128, 151936, 262144, 1e-6, 5e6, 0, false, "bfloat16", 151643, 151645, []int{151645}, 30_532_122_624}, []int{24, 20, 20}},
	} {
		t.Run(tc.wrapper, func(t *testing.T) {
			data, err := os.ReadFile("testdata/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse(data, tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if g := got(c); !reflect.DeepEqual(g, tc.want) {
				t.Errorf("got  %+v\nwant %+v", g, tc.want)
			}
			if !c.Multimodal() || c.Wrapper != tc.wrapper || !reflect.DeepEqual(c.Architectures, []string{tc.arch}) || !c.RopeScaling.IsDefault() ||
				!reflect.DeepEqual(c.MRoPESection, tc.sections) || c.MRoPEInterleaved != strings.HasPrefix(tc.wrapper, "qwen3_vl") {
				t.Errorf("multimodal %v wrapper %q architectures %v rope %v M-RoPE %v interleaved %v", c.Multimodal(), c.Wrapper, c.Architectures, c.RopeScaling, c.MRoPESection, c.MRoPEInterleaved)
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
				back.Wrapper != tc.wrapper || back.NumParameters() != c.NumParameters() || c.FusedExperts() != (tc.wrapper == "qwen3_vl_moe") ||
				c.FusedExperts() && (c.MoE.Experts != 128 || c.MoE.TopK != 8 || c.MoE.ExpertSize != 768 || !c.MoE.NormTopK) {
				t.Errorf("written back:\n%s", out)
			}
		})
	}
}

// TestMultimodalTextConfig checks the rules of the text model's keys:
// text_config over a flat config's top level (transformers 4.52's
// Qwen2.5-VL has both), its tie_word_embeddings over the top level's, the
// top level's dtype over text_config's (also when they spell it
// differently) and written into text_config, M-RoPE read as plain RoPE
// and its sections checked, and the refusals.
func TestMultimodalTextConfig(t *testing.T) {
	both := `{"model_type": "qwen2_5_vl", "architectures": ["Qwen2_5_VLForConditionalGeneration"], "hidden_size": 64, "intermediate_size": 128,
		"num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100, "rope_theta": 1e6, "rms_norm_eps": 1e-6, "tie_word_embeddings": false,
		"torch_dtype": "bfloat16", "eos_token_id": 7,
		"text_config": {"model_type": "qwen2_5_vl_text", "hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 2,
			"num_key_value_heads": 1, "vocab_size": 100, "rope_theta": 1e6, "rms_norm_eps": 1e-6, "tie_word_embeddings": true, "torch_dtype": "float32",
			"rope_scaling": {"mrope_section": [2, 3, 3], "rope_type": "default", "type": "default"}}}`
	c, err := Parse([]byte(both), "both.json")
	if err != nil {
		t.Fatal(err)
	}
	if c.HiddenSize != 32 || c.NumHiddenLayers != 3 || !c.TieWordEmbeddings || c.DType != "bfloat16" || c.EOSTokenID != 7 || c.HeadDim != 16 || !c.LinearBias("self_attn.q_proj") {
		t.Errorf("text_config over the top level: hidden %d layers %d tied %v dtype %s eos %d head_dim %d",
			c.HiddenSize, c.NumHiddenLayers, c.TieWordEmbeddings, c.DType, c.EOSTokenID, c.HeadDim)
	}
	out, err := c.MarshalWith(map[string]any{"torch_dtype": "float16"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"torch_dtype": "float16"`) || strings.Contains(string(out), `"float32"`) || strings.Contains(string(out), `"bfloat16"`) {
		t.Errorf("the dtype written at the top and in text_config:\n%s", out)
	}
	// Qwen3-VL's text_config spells it dtype, the top level torch_dtype.
	c, err = Parse([]byte(`{"model_type": "qwen3_vl", "torch_dtype": "float16", "text_config": {"hidden_size": 32, "intermediate_size": 96,
		"num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 100, "rope_theta": 5e6, "max_position_embeddings": 4096, "dtype": "bfloat16"}}`), "q3.json")
	if err != nil || c.DType != "float16" || c.TieWordEmbeddings || c.HeadDim != 128 {
		t.Errorf("qwen3_vl: %v, dtype %s tied %v head_dim %d", err, c.DType, c.TieWordEmbeddings, c.HeadDim)
	}

	for name, tc := range map[string]struct{ doc, want string }{
		"no text_config": {`{"model_type": "mistral3"}`, `missing required key "text_config"`},
		"other text":     {`{"model_type": "mistral3", "text_config": {"model_type": "llama"}}`, `text_config.model_type llama`},
		"qwen3 flat":     {`{"model_type": "qwen3_vl", "hidden_size": 32}`, `missing required key "text_config"`},
		"qwen2 default theta": {`{"model_type": "qwen2_vl", "hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
			"vocab_size": 100, "rms_norm_eps": 1e-6}`, `missing required key "rope_theta"`},
		"sections": {`{"model_type": "qwen2_vl", "hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
			"vocab_size": 100, "rms_norm_eps": 1e-6, "rope_theta": 1e6, "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 5]}}`, `sums to 15, want head_dim/2 = 8`},
		"section count": {`{"model_type": "qwen2_vl", "hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
			"vocab_size": 100, "rms_norm_eps": 1e-6, "rope_theta": 1e6, "rope_scaling": {"type": "mrope", "mrope_section": [8, 8]}}`, `want three counts`},
	} {
		if _, err := Parse([]byte(tc.doc), "x.json"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, tc.want)
		}
	}
	// transformers 5.x: rope_theta in rope_parameters, tie_word_embeddings
	// text_config's (false where absent, whatever the top level says).
	c, err = Parse([]byte(`{"model_type": "qwen2_5_vl", "tie_word_embeddings": true, "text_config": {"model_type": "qwen2_5_vl_text", "hidden_size": 32,
		"intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 100, "rms_norm_eps": 1e-6,
		"rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}}}`), "5x.json")
	if err != nil || c.RopeTheta != 1e6 || c.TieWordEmbeddings || !slices.Equal(c.MRoPESection, []int{2, 3, 3}) {
		t.Errorf("5.x spelling: %v, rope_theta %g tied %v sections %v", err, c.RopeTheta, c.TieWordEmbeddings, c.MRoPESection)
	}
	for name, tc := range map[string]struct{ doc, want string }{
		// (Parse reads rope_theta from rope_parameters alone.)
		"theta in rope_scaling": {`{"model_type": "qwen2_vl", "hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 2,
			"num_key_value_heads": 1, "vocab_size": 100, "rms_norm_eps": 1e-6, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3], "rope_theta": 1e6}}`, `"rope_theta"`},
		"norm_topk_prob false": {`{"model_type": "qwen3_vl_moe", "text_config": {"norm_topk_prob": false}}`, `norm_topk_prob false`},
	} {
		if _, err := Parse([]byte(tc.doc), "x.json"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %s", name, err, tc.want)
		}
	}
	if _, err := Parse([]byte(`{"model_type": "qwen2_vl", "hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 2,
		"vocab_size": 100, "rms_norm_eps": 1e-6, "rope_theta": 1e6}`), "kv.json"); err == nil || !strings.Contains(err.Error(), `"num_key_value_heads"`) {
		t.Errorf("Qwen2-VL without num_key_value_heads (its default 8, Qwen2Config's 32): %v", err)
	}
	c, err = Parse([]byte(`{"model_type": "qwen2_vl", "hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
		"vocab_size": 100, "rms_norm_eps": 1e-6, "rope_theta": 1e6, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}}`), "q2.json")
	if err != nil || !c.RopeScaling.IsDefault() {
		t.Errorf("qwen2_vl with mrope: %v %v", err, c)
	}
}

// TestMultimodalTextNames maps each wrapper's tensor-name layouts to the
// text model's names and back.
func TestMultimodalTextNames(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		names     []string
		pairs     [][2]string // stored, text name
		refused   []string    // names of a checkpoint the wrapper refuses
	}{
		{"mistral3 4.50", `{"model_type": "mistral3", "text_config": {"hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 100}}`,
			[]string{"language_model.model.embed_tokens.weight", "vision_tower.transformer.layers.0.attention.q_proj.weight"},
			[][2]string{{"language_model.model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.up_proj.weight"}, {"language_model.lm_head.weight", "lm_head.weight"},
				{"vision_tower.transformer.layers.0.attention.q_proj.weight", "vision_tower.transformer.layers.0.attention.q_proj.weight"},
				{"multi_modal_projector.linear_1.weight", "multi_modal_projector.linear_1.weight"}},
			[]string{"model.layers.0.mlp.up_proj.weight"}},
		{"qwen2_5_vl 4.49", `{"model_type": "qwen2_5_vl", "hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 100, "rope_theta": 1e6, "rms_norm_eps": 1e-6}`,
			[]string{"visual.blocks.0.attn.qkv.weight", "model.embed_tokens.weight"},
			[][2]string{{"model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.q_proj.bias"}, {"lm_head.weight", "lm_head.weight"},
				{"model.norm.weight", "model.norm.weight"}, {"visual.merger.mlp.0.weight", "visual.merger.mlp.0.weight"}},
			[]string{"language_model.model.layers.0.mlp.up_proj.weight"}},
		{"qwen2_5_vl 4.52", `{"model_type": "qwen2_5_vl", "hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 100, "rope_theta": 1e6, "rms_norm_eps": 1e-6}`,
			[]string{"model.visual.blocks.0.attn.qkv.weight", "model.language_model.embed_tokens.weight"},
			[][2]string{{"model.language_model.layers.0.self_attn.q_proj.qweight", "model.layers.0.self_attn.q_proj.qweight"}, {"lm_head.weight", "lm_head.weight"},
				{"model.visual.merger.mlp.0.weight", "model.visual.merger.mlp.0.weight"}},
			nil},
		{"qwen3_vl", `{"model_type": "qwen3_vl", "text_config": {"hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 100, "rope_theta": 5e6, "max_position_embeddings": 4096}}`,
			[]string{"model.language_model.norm.weight", "model.visual.deepstack_merger_list.0.norm.weight"},
			[][2]string{{"model.language_model.layers.0.self_attn.k_norm.weight", "model.layers.0.self_attn.k_norm.weight"}, {"lm_head.weight", "lm_head.weight"},
				{"model.visual.deepstack_merger_list.0.norm.weight", "model.visual.deepstack_merger_list.0.norm.weight"}},
			[]string{"visual.blocks.0.attn.qkv.weight"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.doc), "x.json")
			if err != nil {
				t.Fatal(err)
			}
			checkTextNames(t, c, tc.names, tc.pairs)
			both := append(slices.Clone(tc.names), "model.language_model.layers.0.mlp.up_proj.weight")
			if tc.name != "qwen2_5_vl 4.52" && tc.name != "qwen3_vl" {
				if _, _, err := c.TextNames(both); err == nil || !strings.Contains(err.Error(), "two layouts") {
					t.Errorf("names of both layouts %v: %v, want refused", both, err)
				}
			}
			if tc.refused != nil {
				if _, _, err := c.TextNames(tc.refused); err == nil || !strings.Contains(err.Error(), c.Wrapper) {
					t.Errorf("names %v: %v, want refused", tc.refused, err)
				}
			}
		})
	}
}

// TestMinistral3 reads Ministral 3's text model (model_type ministral3, in
// a mistral3 checkpoint's text_config as Devstral-Small-2 and Ministral 3
// ship it, or alone as Devstral 2): Mistral's layers with yarn from
// rope_parameters (its rope_theta; mscale and mscale_all_dim 1 give the
// attention factor 1, mscale_all_dim 0 transformers' default 0.1·ln(factor)
// + 1) and the query scale 1 + β·ln(1 + floor(p/original)): with β > 0
// the context is capped at original_max_position_embeddings, where the
// scale is 1, and config.json's own is kept; with β 0 nothing changes. A
// β without an original length is refused.
func TestMinistral3(t *testing.T) {
	small := `"head_dim": 128, "hidden_size": 5120, "intermediate_size": 32768, "num_attention_heads": 32, "num_hidden_layers": 40,
		"num_key_value_heads": 8, "rms_norm_eps": 1e-05, "vocab_size": 131072, "max_position_embeddings": 393216, "sliding_window": null`
	c, err := Parse([]byte(`{"model_type": "mistral3", "architectures": ["Mistral3ForConditionalGeneration"], "torch_dtype": "bfloat16",
		"text_config": {"model_type": "ministral3", `+small+`, "rope_parameters": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 48.0,
		"llama_4_scaling_beta": 0.1, "mscale": 1.0, "mscale_all_dim": 1.0, "original_max_position_embeddings": 8192,
		"rope_theta": 100000000.0, "rope_type": "yarn", "type": "yarn"}}}`), "devstral-small-2.json")
	if err != nil {
		t.Fatal(err)
	}
	s := c.RopeScaling
	if c.ModelType != "mistral" || c.Wrapper != "mistral3" || c.RopeTheta != 1e8 || s.Type != RopeYarn || s.Factor != 48 || s.AttentionFactor != 1 ||
		s.OriginalMaxPositionEmbeddings != 8192 || c.SlidingWindow != 0 || c.MaxPositionEmbeddings != 8192 ||
		c.QueryScale == nil || *c.QueryScale != (QueryScale{Beta: 0.1, Original: 8192, Declared: 393216}) {
		t.Errorf("Devstral-Small-2: type %s theta %g rope %+v window %d context %d query scale %+v", c.ModelType, c.RopeTheta, s, c.SlidingWindow, c.MaxPositionEmbeddings, c.QueryScale)
	}
	if l := c.ContextLimit(); !strings.Contains(l, "8192 positions") || !strings.Contains(l, "llama_4_scaling_beta") || !strings.Contains(l, "393216") {
		t.Errorf("ContextLimit %q: want the cap, its reason and config.json's own", l)
	}
	out, err := c.MarshalWith(nil)
	if err != nil || !strings.Contains(string(out), `"max_position_embeddings": 393216`) || !strings.Contains(string(out), `"model_type": "ministral3"`) {
		t.Errorf("written back: %v\n%s", err, out)
	}
	c, err = Parse([]byte(`{"model_type": "ministral3", "architectures": ["Ministral3ForCausalLM"], `+small+`, "rope_parameters": {"beta_fast": 4.0,
		"beta_slow": 1.0, "factor": 64.0, "mscale": 1.0, "mscale_all_dim": 0.0, "original_max_position_embeddings": 4096,
		"llama_4_scaling_beta": 0.0, "rope_theta": 1000000.0, "rope_type": "yarn", "type": "yarn"}}`), "devstral-2.json")
	if err != nil {
		t.Fatal(err)
	}
	if c.QueryScale != nil || c.MaxPositionEmbeddings != 393216 || math.Abs(c.RopeScaling.AttentionFactor-(0.1*math.Log(64)+1)) > 1e-12 || c.RopeScaling.BetaFast != 4 {
		t.Errorf("Devstral 2: context %d query scale %+v rope %+v", c.MaxPositionEmbeddings, c.QueryScale, c.RopeScaling)
	}
	if _, err := Parse([]byte(`{"model_type": "ministral3", `+small+`, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
		"llama_4_scaling_beta": 0.1}}`), "x.json"); err == nil || !strings.Contains(err.Error(), "original_max_position_embeddings") {
		t.Errorf("a scale without its length: %v", err)
	}
	noHead := strings.Replace(small, `"head_dim": 128, `, "", 1)
	for name, tc := range map[string]struct{ doc, want string }{
		"no rope block": {`{"model_type": "ministral3", ` + noHead + `}`, `"rope_parameters"`},
		"two betas": {`{"model_type": "ministral3", ` + small + `, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
			"original_max_position_embeddings": 64, "llama_4_scaling_beta": 0.1}, "rope_scaling": {"rope_type": "default",
			"original_max_position_embeddings": 64, "llama_4_scaling_beta": 0.2}}`, `they must agree`},
	} {
		if _, err := Parse([]byte(tc.doc), "x.json"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %s", name, err, tc.want)
		}
	}
	// Ministral3Config's head_dim 128, not hidden/heads (5120/32 = 160).
	c, err = Parse([]byte(`{"model_type": "ministral3", `+noHead+`, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}`), "x.json")
	if err != nil || c.HeadDim != 128 {
		t.Errorf("head_dim absent: %v, %d", err, c.HeadDim)
	}
}

// checkTextNames checks c.TextNames for a checkpoint holding names: each
// pair's stored name maps to its text model's name and back.
func checkTextNames(t *testing.T, c *Config, names []string, pairs [][2]string) {
	t.Helper()
	toText, toStored, err := c.TextNames(names)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pairs {
		if got := toText(p[0]); got != p[1] {
			t.Errorf("toText(%q) = %q, want %q", p[0], got, p[1])
		}
		if got := toStored(p[1]); got != p[0] {
			t.Errorf("toStored(%q) = %q, want %q", p[1], got, p[0])
		}
	}
}
