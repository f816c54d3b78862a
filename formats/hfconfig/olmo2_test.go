package hfconfig

import "testing"

// TestOlmo2 reads a config of OLMo-2-1124-7B's shape: its norms (none
// before the sublayers, q/k norms over the whole projections) and its
// parameter count; Olmo2Config's defaults.
func TestOlmo2(t *testing.T) {
	c, err := Parse([]byte(`{"architectures": ["Olmo2ForCausalLM"], "attention_bias": false, "eos_token_id": 100257,
		"hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 11008, "max_position_embeddings": 4096,
		"model_type": "olmo2", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
		"pad_token_id": 100277, "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 500000,
		"tie_word_embeddings": false, "torch_dtype": "float32", "vocab_size": 100352}`), "olmo2.json")
	if err != nil {
		t.Fatal(err)
	}
	qw, kw := c.QKNormWidths()
	if !c.Olmo2() || c.PreNorms() || !c.QKNorm() || qw != 4096 || kw != 4096 || c.GemmaPostNorms() || c.Gemma() || c.TieWordEmbeddings {
		t.Errorf("olmo2 %v pre norms %v qk norm %v widths %d %d gemma post norms %v gemma %v tied %v", c.Olmo2(), c.PreNorms(), c.QKNorm(),
			qw, kw, c.GemmaPostNorms(), c.Gemma(), c.TieWordEmbeddings)
	}
	// By hand: embed and head 2*100352*4096 = 822,083,584; a layer's
	// q/k/v/o 4*4096*4096 = 67,108,864, MLP 3*4096*11008 = 135,266,304,
	// two norms 8,192, q and k norms 4096+4096: 202,391,552, x32 =
	// 6,476,529,664; final norm 4,096.
	if n := c.NumParameters(); n != 7_298_617_344 {
		t.Errorf("NumParameters %d, want 7,298,617,344", n)
	}
	d, err := Parse([]byte(`{"model_type": "olmo2", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
		"num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "sliding_window": 16}`), "d.json")
	if err != nil {
		t.Fatal(err)
	}
	qw, kw = d.QKNormWidths()
	// (Olmo2Attention has no window: a sliding_window key means nothing.)
	if d.RMSNormEps != 1e-5 || d.MaxPositionEmbeddings != 2048 || d.RopeTheta != 10000 || d.TieWordEmbeddings || qw != 64 || kw != 32 ||
		d.SlidingWindow != 0 {
		t.Errorf("defaults: eps %g positions %d theta %g tied %v widths %d %d window %d", d.RMSNormEps, d.MaxPositionEmbeddings, d.RopeTheta,
			d.TieWordEmbeddings, qw, kw, d.SlidingWindow)
	}
}
