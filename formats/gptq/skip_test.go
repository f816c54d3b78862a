package gptq

import (
	"fmt"
	"strings"
	"testing"
)

// TestDynamicSkip: dynamic rules are read in file order, the first match
// (re.match: anchored at the start only) decides, and written back as
// GPTQModel writes them; the loaders table reflects a partial fused group.
func TestDynamicSkip(t *testing.T) {
	c, err := ParseQuantizeConfig([]byte(`{"bits": 4, "group_size": 128, "dynamic": {
		"+:model\\.layers\\.1\\.mlp\\..*": {"bits": 4},
		"-:model\\.layers\\.1\\.mlp\\.down_proj$": {},
		"-:model\\.layers\\.2\\.self_attn\\.q_proj$": {}}}`), "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"model.layers.1.mlp.down_proj", false}, // the "+:" rule matches first
		{"model.layers.2.self_attn.q_proj", true},
		{"model.layers.2.self_attn.qkv_proj", false},
		{"model.layers.20.self_attn.q_proj", false},
		{"model.layers.2.self_attn.k_proj", false},
	} {
		if got, err := c.Skipped(tc.name); err != nil || got != tc.want {
			t.Errorf("Skipped(%s) = %v, %v, want %v", tc.name, got, err, tc.want)
		}
	}
	if _, err := c.MarshalQuantizeConfig(); err == nil {
		t.Error("a \"+:\" rule was written (only skip rules are)")
	}
	c.Dynamic = c.Dynamic[1:]
	b, err := c.MarshalQuantizeConfig()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseQuantizeConfig(b, "written")
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Dynamic) != 2 || back.Dynamic[0] != c.Dynamic[0] || back.Dynamic[1] != c.Dynamic[1] || !strings.Contains(string(b), `$": {}`) {
		t.Errorf("quantize_config.json:\n%s\nreads back as %v, want %v", b, back.Dynamic, c.Dynamic)
	}
	shapes := []LinearShape{{Name: "model.layers.2.self_attn.q_proj", K: 256, N: 256}, {Name: "model.layers.2.self_attn.k_proj", K: 256, N: 128}}
	for _, l := range Loaders(*c, shapes) {
		switch l.Loader {
		case "vLLM gptq", "vLLM gptq_marlin", "AutoGPTQ", "transformers/optimum":
			if l.OK {
				t.Errorf("%s loads a checkpoint skipping q_proj but not k_proj: %s", l.Loader, l.Reason)
			}
		case "GPTQModel":
			if !l.OK {
				t.Errorf("GPTQModel: %s", l.Reason)
			}
		}
	}
}

// TestSkipLoadersExLlamaTGI: ExLlamaV2 loads fp16 modules except inside the
// attention or MLP it runs as one GPTQ kernel (q_proj, up_proj quantized);
// TGI wants every module's qweight.
func TestSkipLoadersExLlamaTGI(t *testing.T) {
	var shapes []LinearShape
	for _, m := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"} {
		shapes = append(shapes, LinearShape{Name: "model.layers.0." + m, K: 256, N: 256})
	}
	for _, tc := range []struct {
		skip   []string
		exl2   bool
		reason string // in ExLlamaV2's reason
	}{
		{[]string{"mlp.down_proj"}, false, "model.layers.0.mlp.down_proj unquantized but model.layers.0.mlp.up_proj quantized: ExLlamaV2 then runs the layer's MLP"},
		{[]string{"mlp.gate_proj"}, false, "layer's MLP"},
		{[]string{"self_attn.o_proj"}, false, "model.layers.0.self_attn.o_proj unquantized but model.layers.0.self_attn.q_proj quantized: ExLlamaV2 then runs the layer's attention"},
		{[]string{"self_attn.q_proj"}, true, "each as an fp16 Linear of its own"},
		{[]string{"mlp.up_proj"}, true, "each as an fp16 Linear of its own"},
		{[]string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, true, "fp16"},
		{[]string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"}, true, "fp16"},
		{[]string{"mlp.gate_proj", "mlp.up_proj"}, true, "fp16"},
		{[]string{"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}, true, "fp16"},
	} {
		dyn := ""
		for i, m := range tc.skip {
			if i > 0 {
				dyn += ", "
			}
			dyn += `"-:^model\\.layers\\.0\\.` + strings.ReplaceAll(m, ".", `\\.`) + `$": {}`
		}
		c, err := ParseQuantizeConfig([]byte(`{"bits": 4, "group_size": 128, "sym": true, "dynamic": {`+dyn+`}}`), "test")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range Loaders(*c, shapes) {
			switch l.Loader {
			case "ExLlamaV2":
				if l.OK != tc.exl2 || !strings.Contains(l.Reason, tc.reason) || strings.HasPrefix(l.Reason, ";") {
					t.Errorf("skip %v: ExLlamaV2 %v (%s), want %v with %q", tc.skip, l.OK, l.Reason, tc.exl2, tc.reason)
				}
			case "TGI":
				if l.OK {
					t.Errorf("skip %v: TGI loads it: %s", tc.skip, l.Reason)
				}
			case "GPTQModel":
				if !l.OK {
					t.Errorf("skip %v: GPTQModel: %s", tc.skip, l.Reason)
				}
			}
		}
	}
}

// TestSkipExpertsVLLM: vLLM stacks a mixture-of-experts layer's experts
// into one FusedMoE weight, so a dynamic rule leaving one expert (of
// Mixtral's w1/w2/w3 or Qwen3-MoE's gate/up/down_proj naming) unquantized
// while another is quantized is refused for both vLLM loaders, naming the
// two; leaving the attention alone unquantized is not.
func TestSkipExpertsVLLM(t *testing.T) {
	for _, tc := range []struct {
		name, block string
		parts       []string
		rule        string
		partial     string // in vLLM's reason; "" for OK
	}{
		{"mixtral one expert", "model.layers.0.block_sparse_moe.experts.", []string{"w1", "w3", "w2"},
			`-:model\.layers\.0\.block_sparse_moe\.experts\.1\.`, "model.layers.0.block_sparse_moe.experts.1.w1 unquantized but model.layers.0.block_sparse_moe.experts.0.w1 quantized: vLLM loads a layer's experts as one FusedMoE weight"},
		{"qwen3_moe one projection", "model.layers.0.mlp.experts.", []string{"gate_proj", "up_proj", "down_proj"},
			`-:model\.layers\.0\.mlp\.experts\.0\.down_proj$`, "model.layers.0.mlp.experts.0.down_proj unquantized but model.layers.0.mlp.experts.0.gate_proj quantized"},
		{"attention", "model.layers.0.block_sparse_moe.experts.", []string{"w1", "w3", "w2"},
			`-:model\.layers\.0\.self_attn\.o_proj$`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shapes := []LinearShape{{Name: "model.layers.0.self_attn.o_proj", K: 256, N: 256}}
			for e := range 2 {
				for _, p := range tc.parts {
					shapes = append(shapes, LinearShape{Name: fmt.Sprintf("%s%d.%s", tc.block, e, p), K: 256, N: 256})
				}
			}
			c, err := ParseQuantizeConfig([]byte(fmt.Sprintf(`{"bits": 4, "group_size": 128, "dynamic": {%q: {}}}`, tc.rule)), "test")
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range Loaders(*c, shapes) {
				if !strings.HasPrefix(l.Loader, "vLLM") {
					continue
				}
				if tc.partial == "" && (!l.OK || strings.Contains(l.Reason, "FusedMoE")) || tc.partial != "" && (l.OK || !strings.Contains(l.Reason, tc.partial)) {
					t.Errorf("%s: ok %v, %q; want ok %v, naming %q", l.Loader, l.OK, l.Reason, tc.partial == "", tc.partial)
				}
			}
		})
	}
}
