package hfconfig

import (
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const fixtures = "../../../shared/fixtures"

func fixtureDir(t *testing.T, rel string) string {
	t.Helper()
	dir := filepath.Join(fixtures, rel)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("fixture %s missing: %v", dir, err)
	}
	return dir
}

// want lists the derived fields a test checks; Raw, File and
// QuantizationConfig are checked separately.
type want struct {
	ModelType                                                     string
	Hidden, Inter, Layers, Heads, KVHeads, HeadDim, Vocab, MaxPos int
	Eps, Theta                                                    float64
	Window                                                        int
	Tie                                                           bool
	DType                                                         string
	BOS, EOS                                                      int
	EOSs                                                          []int
	Params                                                        int64
}

func got(c *Config) want {
	return want{c.ModelType, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads,
		c.HeadDim, c.VocabSize, c.MaxPositionEmbeddings, c.RMSNormEps, c.RopeTheta, c.SlidingWindow, c.TieWordEmbeddings,
		c.DType, c.BOSTokenID, c.EOSTokenID, c.EOSTokenIDs, c.NumParameters()}
}

func TestLoadFixtures(t *testing.T) {
	tests := []struct {
		dir  string
		want want
	}{
		{
			// Parameters, hand count: embed 32002*256 = 8,192,512; per layer
			// q 256*256 + k,v 2*256*128 + o 256*256 = 196,608, mlp 3*256*896 = 688,128,
			// norms 512 -> 885,248; x6 = 5,311,488; final norm 256; head tied.
			// 8,192,512 + 5,311,488 + 256 = 13,504,256.
			dir: "models/openchat-tiny",
			want: want{"mistral", 256, 896, 6, 2, 1, 128, 32002, 4096, 1e-5, 10000, 4096, true, "float16", 1, 32000, []int{32000},
				13_504_256},
		},
		{
			// head_dim 8 explicit (= 64/8 anyway). Hand count: embed 512*64 = 32,768;
			// per layer q 64*64 + k,v 2*64*32 + o 64*64 = 12,288, mlp 3*64*172 = 33,024,
			// norms 128 -> 45,440; x5 = 227,200; norm 64; untied head 32,768. Total 292,800.
			dir: "models/stories260K-hf-mistral",
			want: want{"mistral", 64, 172, 5, 8, 4, 8, 512, 512, 1e-5, 10000, 4096, false, "float32", 1, 2, []int{2},
				292_800},
		},
		{
			// Mistral-7B with vocab 32002. Hand count: embed 32002*4096 = 131,080,192;
			// per layer q 4096*4096 = 16,777,216, k,v 2*4096*1024 = 8,388,608,
			// o 16,777,216, mlp 3*4096*14336 = 176,160,768, norms 8,192 -> 218,112,000;
			// x32 = 6,979,584,000; final norm 4,096; untied lm_head 131,080,192.
			// 2*131,080,192 + 6,979,584,000 + 4,096 = 7,241,748,480.
			dir: "configs/openchat-3.5-1210",
			want: want{"mistral", 4096, 14336, 32, 32, 8, 128, 32002, 8192, 1e-5, 10000, 4096, false, "bfloat16", 1, 32000, []int{32000},
				7_241_748_480},
		},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			dir := fixtureDir(t, tt.dir)
			c, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if g := got(c); !reflect.DeepEqual(g, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", g, tt.want)
			}
			if c.File != filepath.Join(dir, "config.json") {
				t.Errorf("File = %q", c.File)
			}
			if c.QuantizationConfig != nil {
				t.Errorf("QuantizationConfig = %s, want nil", c.QuantizationConfig)
			}
			if !slices.Equal(c.Architectures, []string{"MistralForCausalLM"}) {
				t.Errorf("Architectures = %v", c.Architectures)
			}
			if c.HiddenAct != "silu" {
				t.Errorf("HiddenAct = %q", c.HiddenAct)
			}
		})
	}
}

func TestParseTestdata(t *testing.T) {
	tests := []struct {
		file string
		want want
	}{
		{
			// 5.x spelling: rope_parameters, dtype, eos list.
			file: "config-5x.json",
			want: want{"llama", 2048, 5632, 22, 32, 4, 64, 32000, 2048, 1e-5, 500000, 0, false, "bfloat16", 1, 2, []int{2, 32000},
				// TinyLlama-1.1B's shape; its published count is 1,100,048,384. By hand: embed 65,536,000 x2;
				// layer 2*2048*2048 + 2*2048*256 + 3*2048*5632 + 4096 = 44,044,288; x22 = 968,974,336; + 2048.
				1_100_048_384},
		},
		{
			// sliding_window null: no window.
			file: "mistral-v02.json",
			want: want{"mistral", 4096, 14336, 32, 32, 8, 128, 32000, 32768, 1e-5, 1e6, 0, false, "bfloat16", 1, 2, []int{2},
				// Mistral-7B's published 7,241,732,096: openchat's count minus 2 tokens x 4096 x 2.
				7_241_732_096},
		},
		{
			// MistralConfig defaults: kv heads 8, max pos 131072, window 4096, eps 1e-6, theta 1e4, float32.
			file: "minimal-mistral.json",
			want: want{"mistral", 64, 128, 2, 8, 8, 8, 100, 131072, 1e-6, 10000, 4096, false, "float32", -1, -1, nil,
				// embed 6400 x2; layer 64*64*4 + 3*64*128 + 128 = 41,088; x2; + 64
				12800 + 82176 + 64},
		},
		{
			// Qwen2.5-0.5B's config.json: use_sliding_window false, so its
			// sliding_window 32768 is no window. Published count 494,032,768; by
			// hand: embed 151936*896 = 136,134,656 (tied); layer q 896*896 + k,v
			// 2*896*128 + o 896*896 = 1,835,008, q/k/v biases 896+128+128, mlp
			// 3*896*4864 = 13,074,432, norms 1,792 -> 14,912,384; x24 =
			// 357,897,216; + norm 896.
			file: "qwen2.5-0.5b.json",
			want: want{"qwen2", 896, 4864, 24, 14, 2, 64, 151936, 32768, 1e-6, 1e6, 0, true, "bfloat16", 151643, 151643, []int{151643},
				136_134_656 + 357_897_216 + 896},
		},
		{
			// Qwen2-7B-Instruct: untied head. Published 7,615,616,512; by hand:
			// embed and head 152064*3584 = 544,997,376 each; layer 2*3584*3584 +
			// 2*3584*512 + biases 3584+512+512 + 3*3584*18944 + 7,168 =
			// 233,057,792; x28 = 6,525,618,176; + 3,584.
			file: "qwen2-7b-instruct.json",
			want: want{"qwen2", 3584, 18944, 28, 28, 4, 128, 152064, 32768, 1e-6, 1e6, 0, false, "bfloat16", 151643, 151645, []int{151645},
				2*544_997_376 + 6_525_618_176 + 3_584},
		},
		{
			// Qwen3-0.6B: head_dim 128 where hidden/heads is 64. Published
			// 596,049,920 (tied); by hand: embed 151936*1024 = 155,582,464;
			// layer q 1024*2048 + k,v 2*1024*1024 + o 2048*1024 = 6,291,456,
			// mlp 3*1024*3072 = 9,437,184, norms 2*1024 + q/k norms 2*128 ->
			// 15,730,944; x28 = 440,466,432; + norm 1024.
			file: "qwen3-0.6b.json",
			want: want{"qwen3", 1024, 3072, 28, 16, 8, 128, 151936, 40960, 1e-6, 1e6, 0, true, "bfloat16", 151643, 151645, []int{151645},
				155_582_464 + 440_466_432 + 1024},
		},
		{
			// Qwen3-8B: untied. Published 8,190,735,360; by hand: embed and
			// head 151936*4096 = 622,329,856 each; layer 2*4096*4096 +
			// 2*4096*1024 + 3*4096*12288 + 8192 + 256 = 192,946,432; x36 =
			// 6,946,071,552; + 4096.
			file: "qwen3-8b.json",
			want: want{"qwen3", 4096, 12288, 36, 32, 8, 128, 151936, 40960, 1e-6, 1e6, 0, false, "bfloat16", 151643, 151645, []int{151645},
				2*622_329_856 + 6_946_071_552 + 4096},
		},
		{
			// LlamaConfig defaults: kv heads = heads, max pos 2048, no window; head_dim null derives.
			file: "minimal-llama.json",
			want: want{"llama", 64, 128, 2, 4, 4, 16, 100, 2048, 1e-6, 10000, 0, false, "float32", -1, -1, nil,
				12800 + 82176 + 64},
		},
	}
	for _, tt := range tests {
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
				t.Fatalf("got  %+v\nwant %+v", g, tt.want)
			}
		})
	}
}

func TestQuantizationConfigBlock(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "minimal-llama.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data, "minimal-llama.json")
	if err != nil {
		t.Fatal(err)
	}
	var block map[string]any
	if err := json.Unmarshal(c.QuantizationConfig, &block); err != nil {
		t.Fatal(err)
	}
	if block["quant_method"] != "gptq" || block["bits"] != 4.0 {
		t.Fatalf("quantization_config = %s", c.QuantizationConfig)
	}
}

func TestParseErrors(t *testing.T) {
	base := map[string]any{"model_type": "mistral", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
		"num_attention_heads": 8, "vocab_size": 100}
	with := func(k string, v any) []byte {
		m := map[string]any{}
		for bk, bv := range base {
			m[bk] = bv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// null is a key present with the value null (with deletes for nil).
	null := json.RawMessage("null")
	tests := []struct {
		name    string
		data    []byte
		errSubs []string
		unsup   bool
	}{
		{"missing hidden_size", with("hidden_size", nil), []string{`missing required key "hidden_size"`, "cfg.json"}, false},
		{"missing model_type", with("model_type", nil), []string{`missing required key "model_type"`}, false},
		{"null model_type", with("model_type", null), []string{`cfg.json: model_type: got null, want a string`}, false},
		{"null hidden_size", with("hidden_size", null), []string{`cfg.json: hidden_size: got null, want a positive integer`}, false},
		{"null intermediate_size", with("intermediate_size", null), []string{`intermediate_size: got null, want a positive integer`}, false},
		{"null num_hidden_layers", with("num_hidden_layers", null), []string{`num_hidden_layers: got null, want a positive integer`}, false},
		{"null num_attention_heads", with("num_attention_heads", null), []string{`num_attention_heads: got null, want a positive integer`}, false},
		{"null vocab_size", with("vocab_size", null), []string{`cfg.json: vocab_size: got null, want a positive integer`}, false},
		{"bad model_type", with("model_type", "deepseek_v3"), []string{`model_type "deepseek_v3"`, "supported: mistral, llama, qwen2, qwen3"}, true},
		{"bad json", []byte(`{"model_type": "mistral",`), []string{"cfg.json", "invalid JSON"}, false},
		{"not an object", []byte(`[1]`), []string{"want an object"}, false},
		{"trailing data", []byte(`{} {}`), []string{"trailing data"}, false},
		{"hidden_size string", with("hidden_size", "64"), []string{"hidden_size: got string, want an integer"}, false},
		{"hidden_size fraction", with("hidden_size", 64.5), []string{"hidden_size: got 64.5"}, false},
		{"tie string", with("tie_word_embeddings", "false"), []string{"tie_word_embeddings: got string, want a boolean"}, false},
		{"eps string", with("rms_norm_eps", "1e-5"), []string{"rms_norm_eps: got string"}, false},
		{"negative layers", with("num_hidden_layers", -1), []string{"num_hidden_layers: got -1"}, false},
		{"zero vocab", with("vocab_size", 0), []string{"vocab_size: got 0"}, false},
		{"heads do not divide", with("num_attention_heads", 7), []string{"not divisible by num_attention_heads 7"}, false},
		{"kv heads do not divide", with("num_key_value_heads", 3), []string{"not divisible by num_key_value_heads 3"}, false},
		{"kv heads absent", with("num_attention_heads", 4), []string{"num_attention_heads 4 is not divisible by num_key_value_heads 8 (num_key_value_heads is absent: mistral's default)"}, false},
		{"head_dim zero", with("head_dim", 0), []string{"head_dim: got 0"}, false},
		{"gelu", with("hidden_act", "gelu"), []string{`hidden_act "gelu"`}, true},
		{"rope dynamic", with("rope_scaling", map[string]any{"type": "dynamic", "factor": 2}), []string{`cfg.json: rope_scaling: rope type "dynamic"`}, true},
		{"rope llama3 bare", with("rope_parameters", map[string]any{"rope_type": "llama3", "rope_theta": 500000}), []string{`cfg.json: rope_parameters: missing required key "factor" (rope type "llama3")`}, false},
		{"rope not object", with("rope_scaling", 2), []string{"rope_scaling: got number"}, false},
		{"dtype int8", with("torch_dtype", "int8"), []string{`dtype "int8"`}, true},
		{"partial rotary", with("partial_rotary_factor", 0.5), []string{"cfg.json: partial_rotary_factor: 0.5"}, true},
		{"eos list of strings", with("eos_token_id", []string{"a"}), []string{"eos_token_id[0]"}, false},
		{"architectures string", with("architectures", "X"), []string{"architectures: got string"}, false},
		{"quantization_config array", with("quantization_config", []int{1}), []string{"quantization_config: got array"}, false},
		{"huge int", with("hidden_size", 1e12), []string{"hidden_size"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.data, "cfg.json")
			if err == nil {
				t.Fatal("got nil error")
			}
			for _, s := range tt.errSubs {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("err = %v, want it to contain %q", err, s)
				}
			}
			if got := errors.Is(err, ErrUnsupported); got != tt.unsup {
				t.Errorf("errors.Is(err, ErrUnsupported) = %v, want %v", got, tt.unsup)
			}
		})
	}
}

// TestLoadAnyRoPE: LoadAny passes the RoPE scalings Load refuses, naming
// their type, and still refuses everything else Load refuses.
func TestLoadAnyRoPE(t *testing.T) {
	base := map[string]any{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
		"num_attention_heads": 4, "vocab_size": 100}
	for _, tc := range []struct {
		name  string
		extra map[string]any
		want  string // RopeScaling.Type; "" for a refusal by both
		load  bool   // Load accepts it too
	}{
		{"none", nil, "default", true},
		{"linear", map[string]any{"rope_scaling": map[string]any{"type": "linear", "factor": 2}}, "linear", true},
		{"yarn", map[string]any{"rope_scaling": map[string]any{"rope_type": "yarn", "factor": 4}}, "yarn", true},
		{"longrope", map[string]any{"rope_scaling": map[string]any{"rope_type": "longrope", "short_factor": []float64{1}}}, "longrope", false},
		{"dynamic", map[string]any{"rope_parameters": map[string]any{"rope_type": "dynamic", "factor": 2, "rope_theta": 500000}}, "dynamic", false},
		{"by layer type", map[string]any{"rope_parameters": map[string]any{"full_attention": map[string]any{"rope_type": "default"}}}, "by layer type", false},
		// A llama3 scaling without its parameters is broken, not merely
		// unimplemented: both refuse it.
		{"llama3 bare", map[string]any{"rope_parameters": map[string]any{"rope_type": "llama3", "rope_theta": 500000}}, "", false},
		{"gelu", map[string]any{"hidden_act": "gelu"}, "", false},
		// Partial RoPE is not run, but copying the tensors as they are
		// does not need it.
		{"partial rotary", map[string]any{"partial_rotary_factor": 0.25}, "default", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := maps.Clone(base)
			maps.Copy(doc, tc.extra)
			b, _ := json.Marshal(doc)
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
			c, err := LoadAny(dir)
			switch {
			case tc.want == "":
				if err == nil {
					t.Errorf("LoadAny accepted %v", tc.extra)
				}
			case err != nil || c.RopeScaling.Type != tc.want:
				t.Errorf("LoadAny: %v, %+v, want type %q", err, c, tc.want)
			}
			if _, err := Load(dir); (err == nil) != tc.load {
				t.Errorf("Load: %v, want it to accept: %v", err, tc.load)
			}
		})
	}
}

// TestParseRopeScaling: the RoPE scalings the runtime computes parse into
// RopeScaling from either spelling (4.x rope_scaling with "rope_type" or
// the older "type", 5.x rope_parameters), published configs included;
// a missing or invalid parameter is an error naming the file and key.
func TestParseRopeScaling(t *testing.T) {
	llama31 := RopeScaling{Type: RopeLlama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}
	t.Run("testdata", func(t *testing.T) {
		for _, tc := range []struct {
			file   string
			want   RopeScaling
			theta  float64
			params int64
		}{
			// The published config.json of Llama-3.1-8B (transformers
			// 4.43). Its published parameter count, 8,030,261,248, by
			// hand: embed 128256·4096 = 525,336,576 twice (untied);
			// layer 2·4096² + 2·4096·1024 + 3·4096·14336 + 8192 =
			// 218,112,000, ×32; final norm 4096.
			{"llama-3.1-8b.json", llama31, 500000, 8_030_261_248},
			// Llama-3.2-1B's values in transformers 5.x's spelling
			// (rope_parameters holding rope_theta, dtype). 1,235,814,400
			// by hand: embed 128256·2048 = 262,668,288 (tied); layer
			// 2·2048² + 2·2048·512 + 3·2048·8192 + 4096 = 60,821,504,
			// ×16; final norm 2048.
			{"llama-3.2-1b-5x.json", RopeScaling{Type: RopeLlama3, Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}, 500000, 1_235_814_400},
			{"config-5x.json", RopeScaling{Type: RopeDefault}, 500000, 1_100_048_384},
			{"mistral-v02.json", RopeScaling{Type: RopeDefault}, 1e6, 7_241_732_096},
		} {
			t.Run(tc.file, func(t *testing.T) {
				data, err := os.ReadFile(filepath.Join("testdata", tc.file))
				if err != nil {
					t.Fatal(err)
				}
				c, err := Parse(data, tc.file)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(c.RopeScaling, tc.want) || c.RopeTheta != tc.theta || c.NumParameters() != tc.params {
					t.Errorf("RopeScaling %+v, rope_theta %g, %d parameters; want %+v, %g, %d", c.RopeScaling, c.RopeTheta, c.NumParameters(), tc.want, tc.theta, tc.params)
				}
			})
		}
	})
	base := map[string]any{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
		"num_attention_heads": 4, "vocab_size": 100, "max_position_embeddings": 131072}
	llama3 := func(drop string, set ...any) map[string]any {
		m := map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
		delete(m, drop)
		for i := 0; i+1 < len(set); i += 2 {
			m[set[i].(string)] = set[i+1]
		}
		return m
	}
	// Qwen2.5's published long-context setting.
	yarn := func(drop string, set ...any) map[string]any {
		m := map[string]any{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
		delete(m, drop)
		for i := 0; i+1 < len(set); i += 2 {
			m[set[i].(string)] = set[i+1]
		}
		return m
	}
	qwen := RopeScaling{Type: RopeYarn, Factor: 4, OriginalMaxPositionEmbeddings: 32768, BetaFast: 32, BetaSlow: 1, Truncate: true, AttentionFactor: 1.138629436111989}
	with := func(s RopeScaling, f func(*RopeScaling)) RopeScaling { f(&s); return s }
	for _, tc := range []struct {
		name  string
		extra map[string]any
		want  RopeScaling
		err   string // the error's text after "cfg.json: "; "" for none
		unsup bool
	}{
		{"null", map[string]any{"rope_scaling": nil}, RopeScaling{Type: RopeDefault}, "", false},
		{"default", map[string]any{"rope_scaling": map[string]any{"rope_type": "default"}}, RopeScaling{Type: RopeDefault}, "", false},
		{"no type", map[string]any{"rope_scaling": map[string]any{"factor": 2}}, RopeScaling{Type: RopeDefault}, "", false},
		{"linear type", map[string]any{"rope_scaling": map[string]any{"type": "linear", "factor": 2}}, RopeScaling{Type: RopeLinear, Factor: 2}, "", false},
		{"linear rope_type", map[string]any{"rope_scaling": map[string]any{"rope_type": "linear", "factor": 4.0}}, RopeScaling{Type: RopeLinear, Factor: 4}, "", false},
		{"linear 5.x", map[string]any{"rope_parameters": map[string]any{"rope_type": "linear", "factor": 2.5, "rope_theta": 1e6}}, RopeScaling{Type: RopeLinear, Factor: 2.5}, "", false},
		{"llama3 4.x", map[string]any{"rope_scaling": llama3("")}, llama31, "", false},
		{"llama3 type key", map[string]any{"rope_scaling": llama3("rope_type", "type", "llama3")}, llama31, "", false},
		{"llama3 5.x", map[string]any{"rope_parameters": llama3("", "rope_theta", 500000.0)}, llama31, "", false},
		{"llama3 both agree", map[string]any{"rope_scaling": llama3(""), "rope_parameters": llama3("", "rope_theta", 500000.0)}, llama31, "", false},
		{"llama3 low equals high", map[string]any{"rope_scaling": llama3("", "high_freq_factor", 1.0)},
			RopeScaling{Type: RopeLlama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 1, OriginalMaxPositionEmbeddings: 8192}, "", false},

		{"linear no factor", map[string]any{"rope_scaling": map[string]any{"type": "linear"}}, RopeScaling{}, `rope_scaling: missing required key "factor" (rope type "linear")`, false},
		{"linear null factor", map[string]any{"rope_scaling": map[string]any{"type": "linear", "factor": nil}}, RopeScaling{}, `rope_scaling.factor: got null, want a number (rope type "linear")`, false},
		{"linear factor string", map[string]any{"rope_scaling": map[string]any{"type": "linear", "factor": "2"}}, RopeScaling{}, `rope_scaling.factor: got string, want a number`, false},
		{"linear factor below 1", map[string]any{"rope_scaling": map[string]any{"type": "linear", "factor": 0.5}}, RopeScaling{}, `rope_scaling.factor: got 0.5, want a number >= 1`, false},
		{"llama3 no factor", map[string]any{"rope_scaling": llama3("factor")}, RopeScaling{}, `rope_scaling: missing required key "factor" (rope type "llama3")`, false},
		{"llama3 no low", map[string]any{"rope_scaling": llama3("low_freq_factor")}, RopeScaling{}, `rope_scaling: missing required key "low_freq_factor" (rope type "llama3")`, false},
		{"llama3 no high", map[string]any{"rope_parameters": llama3("high_freq_factor")}, RopeScaling{}, `rope_parameters: missing required key "high_freq_factor" (rope type "llama3")`, false},
		{"llama3 no original", map[string]any{"rope_scaling": llama3("original_max_position_embeddings")}, RopeScaling{}, `rope_scaling: missing required key "original_max_position_embeddings" (rope type "llama3")`, false},
		{"llama3 original fraction", map[string]any{"rope_scaling": llama3("", "original_max_position_embeddings", 8192.5)}, RopeScaling{}, `rope_scaling.original_max_position_embeddings: got 8192.5, want an integer`, false},
		{"llama3 original zero", map[string]any{"rope_scaling": llama3("", "original_max_position_embeddings", 0)}, RopeScaling{}, `rope_scaling.original_max_position_embeddings: got 0, want a positive integer`, false},
		{"llama3 low zero", map[string]any{"rope_scaling": llama3("", "low_freq_factor", 0)}, RopeScaling{}, `rope_scaling.low_freq_factor: got 0, want a positive number`, false},
		{"llama3 high below low", map[string]any{"rope_scaling": llama3("", "high_freq_factor", 0.5)}, RopeScaling{}, `rope_scaling.high_freq_factor: got 0.5, want at least low_freq_factor 1`, false},
		{"llama3 factor zero", map[string]any{"rope_scaling": llama3("", "factor", 0)}, RopeScaling{}, `rope_scaling.factor: got 0, want a number >= 1`, false},
		{"llama3 both disagree", map[string]any{"rope_scaling": llama3(""), "rope_parameters": llama3("", "factor", 32.0)}, RopeScaling{},
			`rope_parameters: llama3 (factor 32, low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 8192), but rope_scaling says llama3 (factor 8, low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 8192): they must agree`, false},
		{"type not a string", map[string]any{"rope_scaling": map[string]any{"rope_type": 3}}, RopeScaling{}, `rope_scaling.rope_type: got number, want a string`, false},

		// yarn: the attention factors by hand, 0.1·ln 4 + 1 and
		// (0.1·ln 40 + 1)/(0.0707·ln 40 + 1) (Python's math.log).
		{"yarn qwen", map[string]any{"rope_scaling": yarn("")}, qwen, "", false},
		{"yarn type key 5.x", map[string]any{"rope_parameters": yarn("rope_type", "type", "yarn", "rope_theta", 1e6)}, qwen, "", false},
		{"yarn both agree", map[string]any{"rope_scaling": yarn(""), "rope_parameters": yarn("", "rope_theta", 1e6)}, qwen, "", false},
		{"yarn original from max_position_embeddings", map[string]any{"rope_scaling": yarn("original_max_position_embeddings")},
			with(qwen, func(s *RopeScaling) { s.OriginalMaxPositionEmbeddings = 131072 }), "", false},
		{"yarn original top-level", map[string]any{"rope_scaling": yarn("original_max_position_embeddings"), "original_max_position_embeddings": 4096},
			with(qwen, func(s *RopeScaling) { s.OriginalMaxPositionEmbeddings = 4096 }), "", false},
		{"yarn original both agree", map[string]any{"rope_scaling": yarn(""), "original_max_position_embeddings": 32768}, qwen, "", false},
		{"yarn betas, no truncate", map[string]any{"rope_scaling": yarn("", "beta_fast", 16, "beta_slow", 2.5, "truncate", false)},
			with(qwen, func(s *RopeScaling) { s.BetaFast, s.BetaSlow, s.Truncate = 16, 2.5, false }), "", false},
		{"yarn betas null and zero", map[string]any{"rope_scaling": yarn("", "beta_fast", nil, "beta_slow", 0)}, qwen, "", false},
		{"yarn attention_factor", map[string]any{"rope_scaling": yarn("", "attention_factor", 0.5, "mscale", 1, "mscale_all_dim", 0.707)},
			with(qwen, func(s *RopeScaling) { s.AttentionFactor = 0.5 }), "", false},
		{"yarn attention_factor null", map[string]any{"rope_scaling": yarn("", "attention_factor", nil)}, qwen, "", false},
		{"yarn mscale", map[string]any{"rope_scaling": yarn("", "factor", 40, "mscale", 1, "mscale_all_dim", 0.707)},
			with(qwen, func(s *RopeScaling) { s.Factor, s.AttentionFactor = 40, 1.0857263992561355 }), "", false},
		{"yarn mscale alone", map[string]any{"rope_scaling": yarn("", "mscale", 0.707)}, qwen, "", false},
		{"yarn mscale_all_dim zero", map[string]any{"rope_scaling": yarn("", "mscale", 1, "mscale_all_dim", 0)}, qwen, "", false},
		{"yarn factor 1", map[string]any{"rope_scaling": yarn("", "factor", 1)}, with(qwen, func(s *RopeScaling) { s.Factor, s.AttentionFactor = 1, 1 }), "", false},

		{"yarn no factor", map[string]any{"rope_scaling": yarn("factor")}, RopeScaling{}, `rope_scaling: missing required key "factor" (rope type "yarn")`, false},
		{"yarn factor below 1", map[string]any{"rope_scaling": yarn("", "factor", 0.5)}, RopeScaling{}, `rope_scaling.factor: got 0.5, want a number >= 1`, false},
		{"yarn original zero", map[string]any{"rope_scaling": yarn("", "original_max_position_embeddings", 0)}, RopeScaling{}, `rope_scaling.original_max_position_embeddings: got 0, want a positive integer`, false},
		{"yarn original fraction", map[string]any{"rope_scaling": yarn("", "original_max_position_embeddings", 1.5)}, RopeScaling{}, `rope_scaling.original_max_position_embeddings: got 1.5, want an integer`, false},
		{"yarn original disagree", map[string]any{"rope_scaling": yarn(""), "original_max_position_embeddings": 4096}, RopeScaling{},
			`rope_scaling.original_max_position_embeddings: 32768, but the top-level original_max_position_embeddings is 4096: they must agree`, false},
		{"yarn beta_slow negative", map[string]any{"rope_scaling": yarn("", "beta_slow", -1)}, RopeScaling{}, `rope_scaling.beta_slow: got -1, want a positive number`, false},
		{"yarn beta_fast below slow", map[string]any{"rope_scaling": yarn("", "beta_fast", 2, "beta_slow", 4)}, RopeScaling{}, `rope_scaling.beta_fast: got 2, want at least beta_slow 4`, false},
		{"yarn beta_fast string", map[string]any{"rope_scaling": yarn("", "beta_fast", "32")}, RopeScaling{}, `rope_scaling.beta_fast: got string, want a number`, false},
		{"yarn truncate number", map[string]any{"rope_parameters": yarn("", "truncate", 1)}, RopeScaling{}, `rope_parameters.truncate: got number, want a boolean`, false},
		{"yarn attention_factor zero", map[string]any{"rope_scaling": yarn("", "attention_factor", 0)}, RopeScaling{}, `rope_scaling.attention_factor: got 0, want a positive number`, false},
		{"yarn mscale negative factor", map[string]any{"rope_scaling": yarn("", "mscale", 1, "mscale_all_dim", -10)}, RopeScaling{},
			`rope_scaling: mscale 1 and mscale_all_dim -10 give the attention factor -2.947`, false},
		{"yarn both disagree", map[string]any{"rope_scaling": yarn(""), "rope_parameters": yarn("", "beta_fast", 16)}, RopeScaling{},
			`rope_parameters: yarn (factor 4, original_max_position_embeddings 32768, beta_fast 16, beta_slow 1, truncate true, attention_factor 1.138629436111989), but rope_scaling says yarn (factor 4, original_max_position_embeddings 32768, beta_fast 32`, false},

		{"dynamic", map[string]any{"rope_scaling": map[string]any{"rope_type": "dynamic", "factor": 2.0}}, RopeScaling{},
			`rope_scaling: rope type "dynamic": unsupported (its frequencies change with the sequence length; implemented: default, linear, llama3, yarn)`, true},
		{"longrope", map[string]any{"rope_parameters": map[string]any{"rope_type": "longrope"}}, RopeScaling{}, `rope_parameters: rope type "longrope": unsupported (implemented for phi3 alone)`, true},
		{"unknown", map[string]any{"rope_scaling": map[string]any{"rope_type": "su"}}, RopeScaling{}, `rope_scaling: rope type "su": unsupported (implemented: default, linear, llama3, yarn)`, true},
		{"by layer type", map[string]any{"rope_parameters": map[string]any{"full_attention": llama3(""), "sliding_attention": map[string]any{"rope_type": "default"}}}, RopeScaling{},
			`rope_parameters: RoPE parameters by layer type ("full_attention"): unsupported`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := maps.Clone(base)
			maps.Copy(doc, tc.extra)
			b, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse(b, "cfg.json")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), "cfg.json: "+tc.err) || errors.Is(err, ErrUnsupported) != tc.unsup {
					t.Fatalf("err = %v, want one containing %q (unsupported: %v)", err, "cfg.json: "+tc.err, tc.unsup)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.RopeScaling, tc.want) {
				t.Errorf("RopeScaling %+v, want %+v", c.RopeScaling, tc.want)
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(t.TempDir())
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}

// TestLoadFile: a file passed for a checkpoint directory is named as a
// file (as a GGUF file where it is one), with the directory it may have
// meant, where the error was open's "config.json: not a directory".
func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, want string }{
		{"model.safetensors", " is a file, not a checkpoint directory: want the directory that holds config.json and the weights (" + dir + "?)"},
		{"model.gguf", " is a GGUF file, not a Hugging Face checkpoint directory (config.json and the weights)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, load := range []func(string) (*Config, error){Load, LoadAny} {
				_, err := load(path)
				if err == nil || !strings.Contains(err.Error(), path+tc.want) {
					t.Errorf("err = %v, want one containing %q", err, path+tc.want)
				}
			}
		})
	}
}

func TestMarshalWith(t *testing.T) {
	data := []byte(`{"vocab_size": 100, "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
		"num_hidden_layers": 2, "num_attention_heads": 4, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
		"name": "caf\u00e9 <b>", "eos_token_id": [2, 3], "rope_scaling": null, "nested": {"b": 1, "a": 2}}`)
	c, err := Parse(data, "config.json")
	if err != nil {
		t.Fatal(err)
	}
	type block struct {
		QuantMethod string  `json:"quant_method"`
		Bits        int     `json:"bits"`
		Damp        float64 `json:"damp_percent"`
	}
	out, err := c.MarshalWith(map[string]any{"quantization_config": block{"gptq", 4, 0.1}})
	if err != nil {
		t.Fatal(err)
	}
	// json.dumps(d, indent=2, sort_keys=True) + "\n": numbers kept verbatim,
	// keys sorted at every level, non-ASCII escaped, < > not escaped.
	want := `{
  "eos_token_id": [
    2,
    3
  ],
  "hidden_size": 64,
  "intermediate_size": 128,
  "model_type": "llama",
  "name": "caf\u00e9 <b>",
  "nested": {
    "a": 2,
    "b": 1
  },
  "num_attention_heads": 4,
  "num_hidden_layers": 2,
  "quantization_config": {
    "bits": 4,
    "damp_percent": 0.1,
    "quant_method": "gptq"
  },
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "rope_theta": 10000.0,
  "vocab_size": 100
}
`
	if string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
	back, err := Parse(out, "config.json")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got(back), got(c)) {
		t.Fatalf("reparsed %+v, want %+v", got(back), got(c))
	}
	if back.Raw["name"] != "café <b>" {
		t.Errorf("name = %q", back.Raw["name"])
	}
	// Remove drops a key (a dequantized checkpoint loses quantization_config).
	out, err = back.MarshalWith(map[string]any{"quantization_config": Remove, "nested": Remove})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "quantization_config") || strings.Contains(string(out), "nested") || !strings.Contains(string(out), `"rope_scaling": null`) {
		t.Errorf("with Remove:\n%s", out)
	}
}

func TestMarshalWithFixtureKeepsKeys(t *testing.T) {
	dir := fixtureDir(t, "configs/openchat-3.5-1210")
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.MarshalWith(nil)
	if err != nil {
		t.Fatal(err)
	}
	// The fixture is already sorted with a 2-space indent, so it must come back byte for byte.
	orig, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(out)) != strings.TrimSpace(string(orig)) {
		t.Fatalf("got\n%s\nwant\n%s", out, orig)
	}
}

func TestLoadGeneration(t *testing.T) {
	tests := []struct {
		dir  string
		want GenerationConfig
	}{
		{"configs/openchat-3.5-1210", GenerationConfig{BOSTokenID: 1, EOSTokenIDs: []int{32000}, PadTokenID: -1,
			Temperature: 1, TopP: 1, TopK: 50, RepetitionPenalty: 1, DoSample: false, MaxLength: 20}},
		{"models/openchat-tiny", GenerationConfig{}},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			dir := fixtureDir(t, tt.dir)
			g, err := LoadGeneration(dir)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want.MaxLength == 0 {
				return // only checks that it parses
			}
			g.Raw = nil
			if !reflect.DeepEqual(*g, tt.want) {
				t.Fatalf("got %+v, want %+v", *g, tt.want)
			}
		})
	}
	t.Run("values", func(t *testing.T) {
		g, err := ParseGeneration([]byte(`{"bos_token_id":1,"eos_token_id":[32000,2],"pad_token_id":0,"temperature":0.7,"top_p":0.9,"top_k":40,"repetition_penalty":1.1,"do_sample":true,"max_length":4096}`), "g.json")
		if err != nil {
			t.Fatal(err)
		}
		g.Raw = nil
		want := GenerationConfig{BOSTokenID: 1, EOSTokenIDs: []int{32000, 2}, PadTokenID: 0, Temperature: 0.7, TopP: 0.9, TopK: 40, RepetitionPenalty: 1.1, DoSample: true, MaxLength: 4096}
		if !reflect.DeepEqual(*g, want) {
			t.Fatalf("got %+v, want %+v", *g, want)
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, err := LoadGeneration(t.TempDir())
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err = %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("bad type", func(t *testing.T) {
		_, err := ParseGeneration([]byte(`{"do_sample":"yes"}`), "g.json")
		if err == nil || !strings.Contains(err.Error(), "do_sample") {
			t.Fatalf("err = %v, want one naming do_sample", err)
		}
	})
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, rel := range []string{"models/openchat-tiny/config.json", "models/stories260K-hf-mistral/config.json", "configs/openchat-3.5-1210/config.json"} {
		seeds = append(seeds, filepath.Join(fixtures, rel))
	}
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	// yarn with every optional key.
	f.Add([]byte(`{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
		"vocab_size": 100, "original_max_position_embeddings": 64, "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
		"original_max_position_embeddings": 64, "beta_fast": 16, "beta_slow": 2, "truncate": false, "mscale": 1, "mscale_all_dim": 0.5}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.json")
		if err != nil {
			return
		}
		if c.HeadDim <= 0 || c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
			t.Fatalf("accepted invalid dims: %+v", got(c))
		}
		_ = c.NumParameters()
		out, err := c.MarshalWith(nil)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back, err := Parse(out, "fuzz.json")
		if err != nil {
			t.Fatalf("reparse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(got(back), got(c)) || !reflect.DeepEqual(back.RopeScaling, c.RopeScaling) {
			t.Fatalf("round trip %+v %+v, want %+v %+v", got(back), back.RopeScaling, got(c), c.RopeScaling)
		}
		if s := c.RopeScaling; s.Type != RopeDefault && (s.Validate() != nil || !(s.Factor >= 1)) {
			t.Fatalf("accepted an invalid scaling %+v", s)
		}
		if _, err := ParseGeneration(data, "fuzz.json"); err != nil {
			return
		}
	})
}

// TestLoadFileInWorkingDir: a file of the working directory passed by its
// bare name is named with the directory it may have meant as "the current
// directory", where the hint read "(.?)".
func TestLoadFileInWorkingDir(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.WriteFile("model.safetensors", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load("model.safetensors")
	const want = "model.safetensors is a file, not a checkpoint directory: want the directory that holds config.json and the weights (the current directory?)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want one containing %q", err, want)
	}
}

// TestQwen2 checks what a qwen2 config means beyond the shared keys:
// Qwen2Config's defaults, the window that use_sliding_window alone turns
// on (refused), and the Linear biases of each model type.
func TestQwen2(t *testing.T) {
	parse := func(t *testing.T, extra string) (*Config, error) {
		t.Helper()
		doc := `{"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
			"num_attention_heads": 4, "vocab_size": 100` + extra + `}`
		return Parse([]byte(doc), "qwen/config.json")
	}
	t.Run("defaults", func(t *testing.T) {
		c, err := Parse([]byte(`{"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
			"num_attention_heads": 32, "vocab_size": 100}`), "qwen/config.json")
		if err != nil {
			t.Fatal(err)
		}
		// Qwen2Config: num_key_value_heads 32 when absent, max positions
		// 32768, eps 1e-6, theta 10000, sliding_window 4096 unused.
		if c.NumKeyValueHeads != 32 || c.MaxPositionEmbeddings != 32768 || c.RMSNormEps != 1e-6 || c.RopeTheta != 10000 || c.SlidingWindow != 0 {
			t.Errorf("kv %d maxpos %d eps %g theta %g window %d, want 32 32768 1e-06 10000 0",
				c.NumKeyValueHeads, c.MaxPositionEmbeddings, c.RMSNormEps, c.RopeTheta, c.SlidingWindow)
		}
	})
	t.Run("kv null", func(t *testing.T) {
		c, err := parse(t, `, "num_key_value_heads": null`)
		if err != nil {
			t.Fatal(err)
		}
		if c.NumKeyValueHeads != 4 {
			t.Errorf("num_key_value_heads null: %d, want num_attention_heads 4", c.NumKeyValueHeads)
		}
	})
	t.Run("window unused", func(t *testing.T) {
		c, err := parse(t, `, "num_key_value_heads": 2, "sliding_window": 32, "max_window_layers": 1, "use_sliding_window": false`)
		if err != nil {
			t.Fatal(err)
		}
		if c.SlidingWindow != 0 {
			t.Errorf("SlidingWindow = %d, want 0 (use_sliding_window false)", c.SlidingWindow)
		}
	})
	t.Run("use_sliding_window", func(t *testing.T) {
		_, err := parse(t, `, "num_key_value_heads": 2, "sliding_window": 32, "max_window_layers": 1, "use_sliding_window": true`)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "qwen/config.json: use_sliding_window: true") {
			t.Errorf("err = %v, want ErrUnsupported naming qwen/config.json and use_sliding_window", err)
		}
	})
	t.Run("use_sliding_window string", func(t *testing.T) {
		_, err := parse(t, `, "use_sliding_window": "no"`)
		if err == nil || !strings.Contains(err.Error(), "use_sliding_window: got string, want a boolean") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("LinearBias", func(t *testing.T) {
		modules := []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}
		tests := []struct {
			modelType, extra string
			want             []bool
		}{
			{"qwen2", "", []bool{true, true, true, false, false, false, false}},
			// attention_bias means nothing to Qwen2: its q/k/v always have one.
			{"qwen2", `, "attention_bias": false`, []bool{true, true, true, false, false, false, false}},
			{"llama", "", []bool{false, false, false, false, false, false, false}},
			{"llama", `, "attention_bias": true`, []bool{true, true, true, true, false, false, false}},
			{"llama", `, "mlp_bias": true`, []bool{false, false, false, false, true, true, true}},
			{"mistral", `, "attention_bias": true`, []bool{false, false, false, false, false, false, false}},
		}
		for _, tt := range tests {
			doc := `{"model_type": "` + tt.modelType + `", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
				"num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100` + tt.extra + `}`
			c, err := Parse([]byte(doc), "config.json")
			if err != nil {
				t.Fatal(err)
			}
			for i, m := range modules {
				if got := c.LinearBias(m); got != tt.want[i] {
					t.Errorf("%s%s: LinearBias(%s) = %v, want %v", tt.modelType, tt.extra, m, got, tt.want[i])
				}
			}
		}
	})
}

// TestQwen3 checks what a qwen3 config means beyond the shared keys:
// Qwen3Config's defaults (head_dim 128 whatever hidden_size says), the
// refused windows, layer_types, attention_bias on all four attention
// projections, and the per-head q/k norms.
func TestQwen3(t *testing.T) {
	parse := func(t *testing.T, extra string) (*Config, error) {
		t.Helper()
		doc := `{"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
			"num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100` + extra + `}`
		return Parse([]byte(doc), "qwen3/config.json")
	}
	t.Run("defaults", func(t *testing.T) {
		c, err := Parse([]byte(`{"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
			"num_attention_heads": 32, "vocab_size": 100}`), "qwen3/config.json")
		if err != nil {
			t.Fatal(err)
		}
		// Qwen3Config: head_dim 128 (not 64/32), num_key_value_heads 32,
		// max positions 32768, eps 1e-6, theta 10000, no window.
		if c.HeadDim != 128 || c.NumKeyValueHeads != 32 || c.MaxPositionEmbeddings != 32768 || c.RMSNormEps != 1e-6 || c.RopeTheta != 10000 || c.SlidingWindow != 0 {
			t.Errorf("head_dim %d kv %d maxpos %d eps %g theta %g window %d, want 128 32 32768 1e-06 10000 0",
				c.HeadDim, c.NumKeyValueHeads, c.MaxPositionEmbeddings, c.RMSNormEps, c.RopeTheta, c.SlidingWindow)
		}
		if !c.QKNorm() {
			t.Error("QKNorm() = false, want true")
		}
	})
	t.Run("head_dim", func(t *testing.T) {
		for _, tt := range []struct {
			extra string
			want  int
		}{{"", 128}, {`, "head_dim": null`, 128}, {`, "head_dim": 32`, 32}} {
			c, err := parse(t, tt.extra)
			if err != nil {
				t.Fatal(err)
			}
			if c.HeadDim != tt.want {
				t.Errorf("%q: HeadDim = %d, want %d", tt.extra, c.HeadDim, tt.want)
			}
		}
	})
	t.Run("not qwen3", func(t *testing.T) {
		for _, mt := range []string{"qwen2", "llama", "mistral"} {
			c, err := Parse([]byte(`{"model_type": "`+mt+`", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
				"num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100}`), "config.json")
			if err != nil {
				t.Fatal(err)
			}
			if c.QKNorm() || c.HeadDim != 16 {
				t.Errorf("%s: QKNorm %v head_dim %d, want false 16", mt, c.QKNorm(), c.HeadDim)
			}
		}
	})
	t.Run("parameters", func(t *testing.T) {
		c, err := parse(t, `, "head_dim": 32, "tie_word_embeddings": true, "attention_bias": true`)
		if err != nil {
			t.Fatal(err)
		}
		// embed 6400; layer q 64*128 + k,v 2*64*64 + o 128*64 = 24,576,
		// biases 128+64+64+64 = 320, mlp 3*64*128 = 24,576, norms 128 +
		// q/k norms 64 -> 49,664; x2; + 64.
		if got, want := c.NumParameters(), int64(6400+2*49_664+64); got != want {
			t.Errorf("NumParameters = %d, want %d", got, want)
		}
	})
	t.Run("refused", func(t *testing.T) {
		tests := []struct{ extra, want string }{
			{`, "use_sliding_window": true, "sliding_window": 8`, "qwen3/config.json: use_sliding_window: true"},
			{`, "layer_types": ["full_attention", "sliding_attention"]`, `qwen3/config.json: layer_types[1]: "sliding_attention"`},
		}
		for _, tt := range tests {
			_, err := parse(t, tt.extra)
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: err = %v, want ErrUnsupported naming %q", tt.extra, err, tt.want)
			}
		}
		for _, tt := range []struct{ extra, want string }{
			{`, "layer_types": ["full_attention"]`, "qwen3/config.json: layer_types: 1 entries for num_hidden_layers 2"},
			{`, "layer_types": "full_attention"`, "qwen3/config.json: layer_types: got string, want a list of strings"},
			{`, "layer_types": ["full_attention", "linear_attention"]`, `qwen3/config.json: layer_types[1]: got linear_attention, want "full_attention"`},
		} {
			_, err := parse(t, tt.extra)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: err = %v, want %q", tt.extra, err, tt.want)
			}
		}
	})
	t.Run("layer_types full", func(t *testing.T) {
		if _, err := parse(t, `, "layer_types": ["full_attention", "full_attention"], "sliding_window": null, "max_window_layers": 28`); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("LinearBias", func(t *testing.T) {
		modules := []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}
		for _, tt := range []struct {
			extra string
			want  []bool
		}{
			{"", []bool{false, false, false, false, false, false, false}},
			{`, "attention_bias": false`, []bool{false, false, false, false, false, false, false}},
			// Qwen3Attention: bias=attention_bias on q/k/v and o; mlp_bias is no Qwen3 key.
			{`, "attention_bias": true, "mlp_bias": true`, []bool{true, true, true, true, false, false, false}},
		} {
			c, err := parse(t, tt.extra)
			if err != nil {
				t.Fatal(err)
			}
			for i, m := range modules {
				if got := c.LinearBias(m); got != tt.want[i] {
					t.Errorf("%q: LinearBias(%s) = %v, want %v", tt.extra, m, got, tt.want[i])
				}
			}
		}
	})
}
