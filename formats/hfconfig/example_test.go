package hfconfig_test

import (
	"fmt"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
)

func ExampleParse() {
	// transformers 5.x spelling: rope_parameters and dtype.
	doc := []byte(`{"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
		"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
		"vocab_size": 32000, "sliding_window": null, "dtype": "bfloat16",
		"rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}`)
	c, err := hfconfig.Parse(doc, "config.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.HeadDim, c.RopeTheta, c.SlidingWindow, c.DType, c.NumParameters())
	// Output: 128 1e+06 0 bfloat16 7241732096
}

func ExampleRopeScaling() {
	// Llama 3.1's scaling, as its config.json (transformers 4.x) gives it.
	doc := []byte(`{"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
		"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
		"vocab_size": 128256, "max_position_embeddings": 131072, "rope_theta": 500000.0,
		"rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
			"original_max_position_embeddings": 8192, "rope_type": "llama3"}}`)
	c, err := hfconfig.Parse(doc, "config.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.RopeTheta, c.RopeScaling)
	// A missing parameter is an error naming the file and key.
	_, err = hfconfig.Parse([]byte(`{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
		"num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100,
		"rope_scaling": {"rope_type": "linear"}}`), "config.json")
	fmt.Println(err)
	// Output:
	// 500000 llama3 (factor 8, low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 8192)
	// config.json: rope_scaling: missing required key "factor" (rope type "linear")
}

func ExampleYarnMscale() {
	// Qwen2.5's long-context setting: yarn with the defaults filled in and
	// the attention factor YarnMscale(4, 1) = 0.1·ln 4 + 1.
	doc := []byte(`{"model_type": "llama", "hidden_size": 3584, "intermediate_size": 18944,
		"num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
		"vocab_size": 152064, "max_position_embeddings": 32768, "rope_theta": 1000000.0,
		"rope_scaling": {"factor": 4.0, "original_max_position_embeddings": 32768, "type": "yarn"}}`)
	c, err := hfconfig.Parse(doc, "config.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.RopeScaling)
	fmt.Printf("%.6f\n", hfconfig.YarnMscale(4, 1))
	// Output:
	// yarn (factor 4, original_max_position_embeddings 32768, beta_fast 32, beta_slow 1, truncate true, attention_factor 1.138629436111989)
	// 1.138629
}
