package gptq

import (
	"fmt"
	"strings"
	"testing"
)

// mistral7B lists the seven quantized Linears of one Mistral-7B layer.
var mistral7B = []LinearShape{
	{"model.layers.0.self_attn.q_proj", 4096, 4096},
	{"model.layers.0.self_attn.k_proj", 4096, 1024},
	{"model.layers.0.self_attn.v_proj", 4096, 1024},
	{"model.layers.0.self_attn.o_proj", 4096, 4096},
	{"model.layers.0.mlp.gate_proj", 4096, 14336},
	{"model.layers.0.mlp.up_proj", 4096, 14336},
	{"model.layers.0.mlp.down_proj", 14336, 4096},
}

func branch(bits, gs int) QuantizeConfig {
	c := DefaultQuantizeConfig()
	c.Bits, c.GroupSize, c.DampPercent, c.DescAct = bits, gs, 0.1, true
	return c
}

func TestLoaders(t *testing.T) {
	asym := branch(4, 128)
	asym.Sym = false
	v2 := branch(4, 128)
	v2.CheckpointFormat = "gptq_v2"
	gs48 := branch(4, 48)
	tests := []struct {
		name   string
		c      QuantizeConfig
		shapes []LinearShape
		// wantOK per loader in LoaderNames order; reason substrings for the failures.
		wantOK  [8]bool
		reasons map[string]string
		// exact reasons, where a substring would pass a repeated part
		exact map[string]string
	}{
		{
			// main branch: every loader (branches.md: ExLlama yes).
			name: "main_4bit_128g_actorder", c: branch(4, 128), shapes: mistral7B,
			wantOK: [8]bool{true, true, true, true, true, true, true, true},
		},
		{
			name: "4bit_32g", c: branch(4, 32), shapes: mistral7B,
			wantOK: [8]bool{true, true, true, true, true, true, true, true},
		},
		{
			// 8-bit branches: ExLlama no (branches.md), marlin and TGI yes.
			name: "8bit_128g", c: branch(8, 128), shapes: mistral7B,
			wantOK:  [8]bool{true, true, true, false, false, true, true, true},
			reasons: map[string]string{"ExLlama v1": "8-bit: ExLlama loads 4-bit only", "ExLlamaV2": "8-bit: ExLlamaV2 loads 4-bit only"},
		},
		{
			name: "8bit_per_channel", c: branch(8, -1), shapes: mistral7B,
			wantOK: [8]bool{true, true, true, false, false, true, true, true},
		},
		{
			name: "3bit_128g", c: branch(3, 128), shapes: mistral7B,
			wantOK:  [8]bool{true, true, true, false, false, true, false, false},
			reasons: map[string]string{"vLLM gptq_marlin": "3-bit: marlin takes 4 or 8 bits", "TGI": "3-bit"},
			exact:   map[string]string{"TGI": "3-bit: marlin takes 4 or 8 bits; TGI's triton kernel takes 2, 4, 8 bits"},
		},
		{
			name: "asym", c: asym, shapes: mistral7B,
			wantOK:  [8]bool{true, true, true, true, true, true, false, true},
			reasons: map[string]string{"vLLM gptq_marlin": "marlin needs sym", "AutoGPTQ": "asym v1"},
		},
		{
			name: "gptq_v2", c: v2, shapes: mistral7B,
			wantOK:  [8]bool{true, true, true, false, true, true, true, true},
			reasons: map[string]string{"ExLlama v1": "gptq_v2"},
		},
		{
			name: "group 48", c: gs48, shapes: []LinearShape{{"q", 4608, 4096}},
			wantOK:  [8]bool{true, true, false, true, false, true, false, true},
			reasons: map[string]string{"GPTQModel": "group size 48", "ExLlamaV2": "power-of-two", "vLLM gptq_marlin": "group size 48"},
		},
		{
			// K not a multiple of the group size, N not a multiple of 64.
			name: "odd shapes", c: branch(4, 128), shapes: []LinearShape{{"model.layers.0.mlp.down_proj", 1000, 96}},
			wantOK:  [8]bool{true, true, true, false, false, false, false, true},
			reasons: map[string]string{"vLLM gptq": "down_proj [K=1000, N=96]: group size 128 does not divide K", "vLLM gptq_marlin": "N%64"},
		},
		{
			name: "invalid config", c: QuantizeConfig{Bits: 5}, shapes: mistral7B,
			wantOK:  [8]bool{},
			reasons: map[string]string{"AutoGPTQ": "bits 5"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Loaders(tt.c, tt.shapes)
			if len(got) != len(LoaderNames) {
				t.Fatalf("got %d entries, want %d", len(got), len(LoaderNames))
			}
			for i, g := range got {
				if g.Loader != LoaderNames[i] {
					t.Errorf("entry %d is %q, want %q", i, g.Loader, LoaderNames[i])
				}
				if g.OK != tt.wantOK[i] {
					t.Errorf("%s: OK = %v (%s), want %v", g.Loader, g.OK, g.Reason, tt.wantOK[i])
				}
				if !g.OK && g.Reason == "" {
					t.Errorf("%s: not OK without a reason", g.Loader)
				}
				if sub, ok := tt.reasons[g.Loader]; ok && !strings.Contains(g.Reason, sub) {
					t.Errorf("%s: reason %q, want it to contain %q", g.Loader, g.Reason, sub)
				}
				if want, ok := tt.exact[g.Loader]; ok && g.Reason != want {
					t.Errorf("%s: reason %q, want %q", g.Loader, g.Reason, want)
				}
			}
		})
	}
}

func ExampleLoaders() {
	c := DefaultQuantizeConfig()
	c.Bits, c.GroupSize = 8, 128
	for _, l := range Loaders(c, mistral7B) {
		fmt.Printf("%-20s %-5v %s\n", l.Loader, l.OK, l.Reason)
	}
	// Output:
	// transformers/optimum true  8-bit: no exllama kernel, slower cuda/torch kernel
	// AutoGPTQ             true  8-bit: cuda kernel
	// GPTQModel            true  8-bit: torch kernel
	// ExLlama v1           false 8-bit: ExLlama loads 4-bit only
	// ExLlamaV2            false 8-bit: ExLlamaV2 loads 4-bit only
	// vLLM gptq            true  fp16 activations only
	// vLLM gptq_marlin     true  SM >= 7.5
	// TGI                  true  marlin kernel, SM >= 8.0
}
