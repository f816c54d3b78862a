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
