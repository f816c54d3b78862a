package model

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/quantpack"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/x448/float16"
)

// tinyBase writes a floating-point checkpoint of openchat-tiny's shape
// (2 layers, fp16) for the quantized ones to replace the Linears of.
func tinyBase(t *testing.T) (string, *hfconfig.Config) {
	t.Helper()
	src := fixture(t, "models/openchat-tiny")
	base := filepath.Join(t.TempDir(), "fp")
	if _, err := synth.Write(context.Background(), synth.Options{ConfigDir: src, Out: base, Layers: 2, Seed: 3, DType: "f16", Shards: 1}); err != nil {
		t.Fatal(err)
	}
	cfg, err := hfconfig.Load(base)
	if err != nil {
		t.Fatal(err)
	}
	return base, cfg
}

// TestForeignCheckpoints stores one model's quantized Linears (random
// codes, zero points 0 and 15 included, one module left unquantized) as
// AWQ, and as compressed-tensors (asymmetric 4-bit with act order and bf16
// scales; symmetric 8-bit per channel), each packed by quantpack's
// independent packers, and as the equivalent GPTQ v2 checkpoint: the
// model's logits must be the GPTQ checkpoint's bit for bit, and each
// module's runtime.QuantWeight (act order made sequential) the same.
func TestForeignCheckpoints(t *testing.T) {
	base, cfg := tinyBase(t)
	all, err := QuantLinears(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const skip = "model.layers.1.mlp.down_proj"
	linears := slices.DeleteFunc(slices.Clone(all), func(l gptq.LinearShape) bool { return l.Name == skip })
	if len(linears) != len(all)-1 {
		t.Fatalf("%s not among the Linears", skip)
	}
	dynamic := map[string]any{`-:model\.layers\.1\.mlp\.down_proj$`: map[string]any{}}
	ctWeights := func(bits int, sym bool, strategy string, gs any, actorder any) map[string]any {
		w := map[string]any{"num_bits": bits, "type": "int", "symmetric": sym, "strategy": strategy, "actorder": actorder, "dynamic": false, "observer": "minmax"}
		if gs != nil {
			w["group_size"] = gs
		}
		return map[string]any{
			"quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
			"config_groups": map[string]any{"group_0": map[string]any{"targets": []string{"Linear"}, "weights": w, "input_activations": nil}},
			"ignore":        []string{"lm_head", `re:.*layers\.1\.mlp\.down_proj$`},
		}
	}
	for _, tc := range []struct {
		name     string
		bits, gs int
		sym      bool
		actOrder bool
		block    map[string]any
		files    map[string]string
		pack     func(quantpack.Module) []safetensors.Tensor
	}{
		{name: "awq", bits: 4, gs: 128,
			block: map[string]any{"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": true, "version": "gemm", "modules_to_not_convert": []string{"layers.1.mlp.down_proj"}},
			pack:  quantpack.AWQ},
		{name: "awq quant_config.json", bits: 4, gs: 64,
			files: map[string]string{"quant_config.json": `{"zero_point": true, "q_group_size": 64, "w_bit": 4, "version": "GEMM", "modules_to_not_convert": ["layers.1.mlp.down_proj"]}`},
			pack:  quantpack.AWQ},
		{name: "compressed w4 asym actorder bf16", bits: 4, gs: 128, actOrder: true,
			block: ctWeights(4, false, "group", 128, "group"),
			pack:  func(m quantpack.Module) []safetensors.Tensor { return quantpack.Compressed(m, true) }},
		{name: "compressed w8 sym channel", bits: 8, gs: -1, sym: true,
			block: ctWeights(8, true, "channel", nil, nil),
			pack:  func(m quantpack.Module) []safetensors.Tensor { return quantpack.Compressed(m, false) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mods := quantpack.Draw(5, linears, tc.bits, tc.gs, tc.sym, tc.actOrder)
			dir := t.TempDir()
			foreign, ref := filepath.Join(dir, "foreign"), filepath.Join(dir, "gptq")
			quantpack.Write(t, base, foreign, tc.block, tc.files, mods, tc.pack)
			quantpack.Write(t, base, ref, map[string]any{"quant_method": "gptq", "bits": tc.bits, "group_size": tc.gs, "desc_act": tc.actOrder, "sym": tc.sym,
				"checkpoint_format": "gptq_v2", "dynamic": dynamic}, nil, mods, func(m quantpack.Module) []safetensors.Tensor { return quantpack.GPTQ(m, gptq.FormatV2) })

			fc, err := Open(foreign)
			if err != nil {
				t.Fatal(err)
			}
			defer fc.Close()
			rc, err := Open(ref)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if fc.Quant.Bits != tc.bits || fc.Quant.Sym != tc.sym || fc.Quant.Format() != gptq.FormatV2 {
				t.Errorf("config %+v", *fc.Quant)
			}
			if s, _ := fc.Quant.Skipped(skip); !s {
				t.Errorf("%s not skipped by %+v", skip, fc.Quant.Dynamic)
			}
			for _, l := range linears {
				sameQuantWeight(t, fc, rc, l)
			}
			b := cpu.New(0)
			fm, err := fc.Load(b, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer fm.Close()
			rm, err := rc.Load(b, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer rm.Close()
			ids := []int{1, 420, 6316, 28781, 7}
			got, err := fm.Forward(ids, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			want, err := rm.Forward(ids, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("logits differ from the GPTQ checkpoint's")
			}
		})
	}
}

// TestForeignRefusals checks that an AWQ or compressed-tensors checkpoint
// that its config does not describe is refused naming the file, tensor
// and field.
func TestForeignRefusals(t *testing.T) {
	base, cfg := tinyBase(t)
	linears, err := QuantLinears(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mods := quantpack.Draw(5, linears, 4, 128, false, false)
	awqBlock := func(kv ...any) map[string]any {
		b := map[string]any{"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": true, "version": "gemm"}
		for i := 0; i < len(kv); i += 2 {
			b[kv[i].(string)] = kv[i+1]
		}
		return b
	}
	for _, tc := range []struct {
		name  string
		block map[string]any
		mods  []quantpack.Module
		pack  func(quantpack.Module) []safetensors.Tensor
		want  []string
		is    error
	}{
		{"gemv", awqBlock("version", "gemv"), mods, quantpack.AWQ, []string{"config.json: quantization_config: version \"gemv\""}, nil},
		{"no zero point", awqBlock("zero_point", false), mods, quantpack.AWQ, []string{"config.json: quantization_config: zero_point false"}, nil},
		{"skip list disagrees", awqBlock("modules_to_not_convert", []string{"q_proj"}), mods, quantpack.AWQ,
			[]string{"modules_to_not_convert", "model.layers.0.self_attn.q_proj", "model.safetensors"}, nil},
		{"group size disagrees", awqBlock("group_size", 64), mods, quantpack.AWQ,
			[]string{"model.safetensors", `tensor "model.layers.0.self_attn.q_proj.qzeros"`, "I32 [2 32], want I32 [4 32]", "group_size 64 of"}, nil},
		{"module missing", awqBlock(), mods[1:], quantpack.AWQ, []string{"model.layers.0.self_attn.q_proj", "modules_to_not_convert"}, nil},
		{"compressed fp8", map[string]any{"quant_method": "compressed-tensors", "format": "float-quantized",
			"config_groups": map[string]any{"group_0": map[string]any{"targets": []string{"Linear"}, "weights": map[string]any{"num_bits": 8, "type": "float", "strategy": "channel"}}}},
			mods, quantpack.AWQ, []string{"config.json: quantization_config: config_groups.group_0: format \"float-quantized\""}, nil},
		{"compressed group size", map[string]any{"quant_method": "compressed-tensors", "format": "pack-quantized",
			"config_groups": map[string]any{"group_0": map[string]any{"targets": []string{"Linear"}, "weights": map[string]any{"num_bits": 4, "symmetric": false, "strategy": "group", "group_size": 64}}}, "ignore": []string{"lm_head"}},
			mods, func(m quantpack.Module) []safetensors.Tensor { return quantpack.Compressed(m, false) },
			[]string{"model.safetensors", `tensor "model.layers.0.self_attn.q_proj.weight_scale"`, "[256 2], want F16 [256 4]", "config_groups.group_0"}, nil},
		{"compressed tensor missing", map[string]any{"quant_method": "compressed-tensors", "format": "pack-quantized",
			"config_groups": map[string]any{"group_0": map[string]any{"targets": []string{"Linear"}, "weights": map[string]any{"num_bits": 4, "symmetric": true, "strategy": "group", "group_size": 128}}}},
			mods, func(m quantpack.Module) []safetensors.Tensor { return quantpack.Compressed(m, false) },
			[]string{`tensor "model.layers.0.self_attn.q_proj.weight_zero_point"`, "config_groups.group_0.weights.symmetric is true"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "q")
			quantpack.Write(t, base, dir, tc.block, nil, tc.mods, tc.pack)
			_, err := Open(dir)
			if err == nil {
				t.Fatal("opened")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v\nwant it to name %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want %v", err, tc.is)
			}
		})
	}
	// bf16 scales that float16 cannot hold are refused at load, naming
	// the tensor and element.
	dir := filepath.Join(t.TempDir(), "bf16")
	block := map[string]any{"quant_method": "compressed-tensors", "format": "pack-quantized",
		"config_groups": map[string]any{"group_0": map[string]any{"targets": []string{"Linear"}, "weights": map[string]any{"num_bits": 4, "symmetric": false, "strategy": "group", "group_size": 128}}}}
	quantpack.Write(t, base, dir, block, nil, mods, func(m quantpack.Module) []safetensors.Tensor {
		ts := quantpack.Compressed(m, true)
		if m.Name == "model.layers.1.self_attn.o_proj" {
			for i := range ts {
				if strings.HasSuffix(ts[i].Name, ".weight_scale") {
					ts[i].Data[2*3], ts[i].Data[2*3+1] = 0x01, 0x30 // 0x3001: 2^-31·(1+1/128): below float16's range
				}
			}
		}
		return ts
	})
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Load(cpu.New(0), Options{})
	if err == nil || !strings.Contains(err.Error(), `tensor "model.layers.1.self_attn.o_proj.weight_scale": element [1 1]`) {
		t.Errorf("err = %v, want one naming the bf16 scale", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
}

// TestForeignQwenExtras packs a random Qwen2 (q/k/v biases) and a random
// Qwen3 (per-head q_norm/k_norm) as GPTQ v2, AWQ and compressed-tensors
// with the same codes and the source's other tensors beside the packed
// weights, as Qwen's AWQ checkpoints and llm-compressor's W4A16 ones keep
// them: each module's QuantWeight, each extra tensor and the model's
// logits must be the GPTQ checkpoint's, the extras bound, and the GPTQ
// checkpoint with them altered (biases zeroed, norms set to ones) must
// give other logits (a reader dropping them fails).
func TestForeignQwenExtras(t *testing.T) {
	for _, model := range []struct {
		name    string
		fixture func(testing.TB, map[string]any, synth.Options) string
		extra   func(name string) bool        // a tensor the test alters
		alter   func(*safetensors.Tensor)     // how
		bound   func(lw *layerWeights) string // what of a layer's extras is not bound
	}{
		{"qwen2", fixtures.Qwen2, func(n string) bool { return strings.HasSuffix(n, ".bias") },
			func(tn *safetensors.Tensor) { clear(tn.Data) },
			func(lw *layerWeights) string {
				for j := range vProj + 1 {
					if lw.bias[j] == nil {
						return LinearModules[j] + "'s bias"
					}
				}
				return ""
			}},
		{"qwen3", fixtures.Qwen3, func(n string) bool { return strings.HasSuffix(n, "_norm.weight") && strings.Contains(n, "self_attn.") },
			func(tn *safetensors.Tensor) {
				one := float16.Fromfloat32(1).Bits()
				for i := 0; i+1 < len(tn.Data); i += 2 {
					binary.LittleEndian.PutUint16(tn.Data[i:], one)
				}
			},
			func(lw *layerWeights) string {
				if lw.qNorm == nil || lw.kNorm == nil {
					return "q_norm/k_norm"
				}
				return ""
			}},
	} {
		t.Run(model.name, func(t *testing.T) {
			base := model.fixture(t, nil, synth.Options{DType: "f16", Seed: 7})
			foreignQwenExtras(t, base, model.extra, model.alter, model.bound)
		})
	}
}

func foreignQwenExtras(t *testing.T, base string, extra func(string) bool, alter func(*safetensors.Tensor), bound func(*layerWeights) string) {
	cfg, err := hfconfig.Load(base)
	if err != nil {
		t.Fatal(err)
	}
	linears, err := QuantLinears(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mods := quantpack.Draw(9, linears, 4, 64, false, false)
	gptqBlock := map[string]any{"quant_method": "gptq", "bits": 4, "group_size": 64, "desc_act": false, "sym": false, "checkpoint_format": "gptq_v2"}
	gptqPack := func(m quantpack.Module) []safetensors.Tensor { return quantpack.GPTQ(m, gptq.FormatV2) }
	ref := filepath.Join(t.TempDir(), "gptq")
	quantpack.Write(t, base, ref, gptqBlock, nil, mods, gptqPack)
	ids := []int{1, 42, 200, 7, 99, 13}
	open := func(t *testing.T, d string) (*Checkpoint, *Model) {
		t.Helper()
		c, err := Open(d)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		m, err := c.Load(cpu.New(0), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return c, m
	}
	rc, rm := open(t, ref)
	want, err := rm.Forward(ids, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var extras []string
	for _, n := range rc.set.Names() {
		if extra(n) {
			extras = append(extras, n)
		}
	}
	if len(extras) == 0 {
		t.Fatal("the GPTQ checkpoint holds none of the tensors the test alters")
	}
	for i := range cfg.NumHiddenLayers {
		if what := bound(&rm.layers[i]); what != "" {
			t.Fatalf("GPTQ checkpoint: layer %d: %s not bound", i, what)
		}
	}

	t.Run("altered", func(t *testing.T) {
		d := filepath.Join(t.TempDir(), "gptq")
		quantpack.Write(t, base, d, gptqBlock, nil, mods, gptqPack)
		fixtures.RewriteTensors(t, d, func(tn *safetensors.Tensor) bool {
			if extra(tn.Name) {
				alter(tn)
			}
			return true
		})
		_, m := open(t, d)
		got, err := m.Forward(ids, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(got, want) {
			t.Error("altered extras give the same logits: the test cannot tell a dropped tensor")
		}
	})

	for _, tc := range []struct {
		name  string
		block map[string]any
		pack  func(quantpack.Module) []safetensors.Tensor
	}{
		{"awq", map[string]any{"quant_method": "awq", "bits": 4, "group_size": 64, "zero_point": true, "version": "gemm", "modules_to_not_convert": nil}, quantpack.AWQ},
		{"compressed-tensors", map[string]any{"quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
			"config_groups": map[string]any{"group_0": map[string]any{"targets": []string{"Linear"},
				"weights": map[string]any{"num_bits": 4, "type": "int", "symmetric": false, "strategy": "group", "group_size": 64}}},
			"ignore": []string{"lm_head"}},
			func(m quantpack.Module) []safetensors.Tensor { return quantpack.Compressed(m, true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := filepath.Join(t.TempDir(), "q")
			quantpack.Write(t, base, d, tc.block, nil, mods, tc.pack)
			fc, fm := open(t, d)
			for _, l := range linears {
				sameQuantWeight(t, fc, rc, l)
			}
			for _, n := range extras {
				ft, ferr := fc.set.Tensor(n)
				rt, rerr := rc.set.Tensor(n)
				if ferr != nil || rerr != nil || ft.DType != rt.DType || !slices.Equal(ft.Shape, rt.Shape) || !slices.Equal(ft.Data, rt.Data) {
					t.Errorf("%s: %v (%v), want the GPTQ checkpoint's (%v)", n, ft.TensorInfo, ferr, rerr)
				}
			}
			for i := range cfg.NumHiddenLayers {
				if what := bound(&fm.layers[i]); what != "" {
					t.Errorf("layer %d: %s not bound", i, what)
				}
			}
			got, err := fm.Forward(ids, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("logits differ from the GPTQ checkpoint's")
			}
		})
	}
}

// sameQuantWeight fails t unless Linear l of the foreign checkpoint fc
// reads as the same runtime QuantWeight as the GPTQ checkpoint rc's.
func sameQuantWeight(t *testing.T, fc, rc *Checkpoint, l gptq.LinearShape) {
	t.Helper()
	var qs [2]*runtime.QuantWeight
	for i, c := range []*Checkpoint{fc, rc} {
		lin, err := readLinear(c.set, l.Name, l.N, l.K, c.Quant)
		if err != nil {
			t.Fatal(err)
		}
		if qs[i], err = Sequential(lin); err != nil {
			t.Fatal(err)
		}
	}
	if qs[0] == nil || !reflect.DeepEqual(qs[0], qs[1]) {
		t.Fatalf("%s: QuantWeight differs from the GPTQ checkpoint's", l.Name)
	}
}
