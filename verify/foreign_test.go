package verify_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/quantpack"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/verify"
)

// TestForeignFormatAndInspect checks an AWQ and a compressed-tensors
// checkpoint (quantpack's packers) with CheckFormat and Inspect: both pass
// and report their method, read as GPTQ; a zero scale and a g_idx out of
// range fail the checks that name the tensor; a tensor of the wrong
// shape fails the dtype and shape check naming it and the config.
func TestForeignFormatAndInspect(t *testing.T) {
	src := fixture(t, "models/openchat-tiny")
	base := filepath.Join(t.TempDir(), "fp")
	if _, err := synth.Write(context.Background(), synth.Options{ConfigDir: src, Out: base, Layers: 2, Seed: 6, DType: "f16", Shards: 1}); err != nil {
		t.Fatal(err)
	}
	cfg, err := hfconfig.Load(base)
	if err != nil {
		t.Fatal(err)
	}
	linears, err := model.QuantLinears(cfg)
	if err != nil {
		t.Fatal(err)
	}
	awqDir := filepath.Join(t.TempDir(), "awq")
	quantpack.Write(t, base, awqDir, map[string]any{"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": true, "version": "gemm"},
		nil, quantpack.Draw(1, linears, 4, 128, false, false), quantpack.AWQ)
	ctDir := filepath.Join(t.TempDir(), "ct")
	quantpack.Write(t, base, ctDir, map[string]any{"quant_method": "compressed-tensors", "format": "pack-quantized",
		"config_groups": map[string]any{"g": map[string]any{"targets": []string{"Linear"},
			"weights": map[string]any{"num_bits": 4, "symmetric": true, "strategy": "group", "group_size": 128, "actorder": "group"}}}},
		nil, quantpack.Draw(2, linears, 4, 128, true, true), func(m quantpack.Module) []safetensors.Tensor { return quantpack.Compressed(m, true) })
	for dir, method := range map[string]string{awqDir: "awq", ctDir: "compressed-tensors"} {
		r, err := verify.CheckFormat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK || r.Method != method || len(r.Loaders) != 0 {
			t.Errorf("%s: CheckFormat %+v", method, r)
		}
		ir, err := verify.Inspect(dir)
		if err != nil {
			t.Fatal(err)
		}
		if q := ir.Quantization; q == nil || q.QuantMethod != method || q.QuantizedModules != len(linears) || q.Bits != 4 || len(ir.Problems) != 0 {
			t.Errorf("%s: Inspect %+v, quantization %+v", method, ir, ir.Quantization)
		}
	}
	// A zero scale and a g_idx past the last group.
	fixtures.RewriteTensors(t, ctDir, func(tt *safetensors.Tensor) bool {
		switch tt.Name {
		case "model.layers.1.self_attn.o_proj.weight_scale":
			tt.Data[2], tt.Data[3] = 0, 0 // weight_scale [0 1], GPTQ scales [1 0]: element 256
		case "model.layers.0.mlp.up_proj.weight_g_idx":
			tt.Data[4*5] = 9 // input 5 in group 9 of 2
		}
		return true
	})
	r, err := verify.CheckFormat(ctDir)
	if err != nil {
		t.Fatal(err)
	}
	failed := map[string]string{}
	for _, c := range r.Checks {
		if !c.OK {
			failed[c.Name] = c.Detail
		}
	}
	if r.OK || !strings.Contains(failed["scales finite and positive"], "model.layers.1.self_attn.o_proj.scales[256]") ||
		!strings.Contains(failed["quantized tensors: dtypes and shapes"], "model.layers.0.mlp.up_proj.g_idx: g_idx[5]=9 out of range [0, 2) (the GPTQ form of model.layers.0.mlp.up_proj.weight_packed") {
		t.Errorf("damaged compressed-tensors checkpoint: failed checks %v", failed)
	}
	// A qzeros of another group size than the config's.
	fixtures.RewriteTensors(t, awqDir, func(tt *safetensors.Tensor) bool {
		if tt.Name == "model.layers.1.mlp.gate_proj.qzeros" {
			tt.Shape = []int{tt.Shape[0] * 2, tt.Shape[1] / 2}
		}
		return true
	})
	r, err = verify.CheckFormat(awqDir)
	if err != nil {
		t.Fatal(err)
	}
	if d := r.Checks[len(r.Checks)-1]; r.OK || d.OK || !strings.Contains(d.Detail, `tensor "model.layers.1.mlp.gate_proj.qzeros": I32 [4 56], want I32 [2 112]`) || !strings.Contains(d.Detail, "group_size 128 of") {
		t.Errorf("AWQ qzeros of another shape: checks %+v", r.Checks)
	}
}
