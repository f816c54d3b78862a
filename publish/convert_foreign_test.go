package publish_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/quantpack"
	"github.com/gptqtool/gptqtool/publish"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// foreignBase writes a floating-point checkpoint of openchat-tiny's shape
// (2 layers, fp16, its tokenizer) and lists its Linears.
func foreignBase(t *testing.T) (string, []gptq.LinearShape) {
	t.Helper()
	src := fixture(t, "models/openchat-tiny")
	base := filepath.Join(t.TempDir(), "fp")
	if _, err := synth.Write(context.Background(), synth.Options{ConfigDir: src, TokenizerDir: src, Out: base, Layers: 2, Seed: 4, DType: "f16", Shards: 1}); err != nil {
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
	return base, linears
}

// checkGPTQModules reads dir's GPTQ tensors with package gptq and checks
// that each module holds mods' codes, real zero points, scales and g_idx.
func checkGPTQModules(t *testing.T, dir string, format gptq.Format, mods []quantpack.Module) {
	t.Helper()
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	ints := func(name string) []int32 {
		tt, err := set.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := tt.Int32()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, m := range mods {
		l := gptq.Linear{K: m.K, N: m.N, Bits: m.Bits, GroupSize: m.GroupSize, Format: format,
			QWeight: ints(m.Name + ".qweight"), QZeros: ints(m.Name + ".qzeros"), GIdx: ints(m.Name + ".g_idx")}
		st, err := set.Tensor(m.Name + ".scales")
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(st.Data); i += 2 {
			l.Scales = append(l.Scales, binary.LittleEndian.Uint16(st.Data[i:]))
		}
		q, err := gptq.UnpackQWeight(l.QWeight, m.K, m.N, m.Bits)
		if err != nil {
			t.Fatal(err)
		}
		z, err := l.ZeroPoints()
		if err != nil {
			t.Fatal(err)
		}
		wantG := m.GIdx
		if wantG == nil {
			gs := m.GroupSize
			if gs == -1 {
				gs = m.K
			}
			for k := range m.K {
				wantG = append(wantG, int32(k/gs))
			}
		}
		switch {
		case !slices.Equal(q, m.Q):
			t.Fatalf("%s: codes differ", m.Name)
		case !slices.Equal(l.Scales, m.Scales):
			t.Fatalf("%s: scales differ", m.Name)
		case !slices.Equal(l.GIdx, wantG):
			t.Fatalf("%s: g_idx differs", m.Name)
		}
		for i := range z {
			if z[i] != int32(m.Z[i]) {
				t.Fatalf("%s: zero point %d = %d, want %d", m.Name, i, z[i], m.Z[i])
			}
		}
	}
}

// TestConvertForeign converts AWQ and compressed-tensors checkpoints
// (quantpack's independent packers) to GPTQ: the GPTQ reader finds the
// same codes, zero points, scales and act order; v1 zero points where the
// zeros allow it, refused (naming the tensor) where one is 0; --dequantize
// gives scale·(q−z) in fp16; and GGUF files equal to those of the
// equivalent GPTQ checkpoint, byte for byte.
func TestConvertForeign(t *testing.T) {
	base, linears := foreignBase(t)
	dir := t.TempDir()

	// AWQ, asymmetric, zero points 0 and 15 among them.
	awqMods := quantpack.Draw(11, linears, 4, 128, false, false)
	awqDir := filepath.Join(dir, "awq", "m")
	quantpack.Write(t, base, awqDir, nil, map[string]string{"quant_config.json": `{"zero_point": true, "q_group_size": 128, "w_bit": 4, "version": "GEMM"}`}, awqMods, quantpack.AWQ)
	out := filepath.Join(dir, "awq-gptq")
	convert(t, publish.ConvertOptions{In: awqDir, Out: out})
	checkGPTQModules(t, out, gptq.FormatV2, awqMods)
	qc, src, err := gptq.ReadQuantizeConfig(out)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(src) != "quantize_config.json" || qc.QuantMethod != "gptq" || qc.Format() != gptq.FormatV2 || qc.Sym || qc.Bits != 4 || qc.GroupSize != 128 {
		t.Errorf("output config %+v from %s", *qc, src)
	}
	if card, err := os.ReadFile(filepath.Join(out, "README.md")); err != nil || !strings.Contains(string(card), "(awq, safetensors weights) to GPTQ (checkpoint_format gptq_v2, the same codes, scales and zero points)") {
		t.Errorf("output card %q (%v) does not say it was converted from AWQ", card, err)
	}
	if _, err := os.Stat(filepath.Join(out, "quant_config.json")); err == nil {
		t.Error("AutoAWQ's quant_config.json copied to the GPTQ output")
	}
	if c, err := model.Open(out); err != nil {
		t.Errorf("output does not open: %v", err)
	} else {
		c.Close()
	}
	_, err = publish.Convert(context.Background(), publish.ConvertOptions{In: awqDir, Out: filepath.Join(dir, "v1"), Format: gptq.FormatV1})
	if err == nil || !strings.Contains(err.Error(), `tensor "model.layers.0.mlp.down_proj.qzeros"`) || !strings.Contains(err.Error(), `zero point 0 at [0, 0] cannot be stored in format "gptq"`) {
		t.Errorf("v1 of zero 0: err = %v", err)
	}

	// --dequantize: fp16 of scale·(q−z).
	deq := filepath.Join(dir, "awq-fp16")
	convert(t, publish.ConvertOptions{In: awqDir, Out: deq, Dequantize: true})
	set, err := safetensors.OpenDir(deq)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range awqMods[:3] {
		tt, err := set.Tensor(m.Name + ".weight")
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, 2*m.N*m.K)
		half.F32ToF16Bytes(want, m.Dequantize())
		if tt.DType != safetensors.F16 || !bytes.Equal(tt.Data, want) {
			t.Errorf("%s: dequantized weight differs", m.Name)
		}
	}
	set.Close()

	// GGUF from AWQ equals GGUF from the same values stored as GPTQ.
	refDir := filepath.Join(dir, "gptq", "m")
	quantpack.Write(t, base, refDir, map[string]any{"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": false, "sym": false, "checkpoint_format": "gptq_v2"},
		nil, awqMods, func(m quantpack.Module) []safetensors.Tensor { return quantpack.GPTQ(m, gptq.FormatV2) })
	ga, gr := filepath.Join(dir, "awq.gguf"), filepath.Join(dir, "ref.gguf")
	convert(t, publish.ConvertOptions{In: awqDir, Out: ga, GGUF: "q8_0"})
	convert(t, publish.ConvertOptions{In: refDir, Out: gr, GGUF: "q8_0"})
	a, err := os.ReadFile(ga)
	if err != nil {
		t.Fatal(err)
	}
	r, err := os.ReadFile(gr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, r) {
		t.Errorf("GGUF from AWQ (%d bytes) differs from GGUF from GPTQ (%d bytes)", len(a), len(r))
	}

	// compressed-tensors: asymmetric 4-bit with act order and bf16 scales,
	// down_proj of layer 1 ignored; symmetric 8-bit per channel, to v1.
	skip := "model.layers.1.mlp.down_proj"
	some := slices.DeleteFunc(slices.Clone(linears), func(l gptq.LinearShape) bool { return l.Name == skip })
	for _, tc := range []struct {
		name     string
		bits, gs int
		sym, act bool
		format   gptq.Format
		weights  map[string]any
	}{
		{"w4a16 actorder", 4, 128, false, true, "", map[string]any{"num_bits": 4, "symmetric": false, "strategy": "group", "group_size": 128, "actorder": "group"}},
		{"w8a16 channel v1", 8, -1, true, false, gptq.FormatV1, map[string]any{"num_bits": 8, "symmetric": true, "strategy": "channel"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mods := quantpack.Draw(13, some, tc.bits, tc.gs, tc.sym, tc.act)
			in := filepath.Join(t.TempDir(), "ct")
			block := map[string]any{"quant_method": "compressed-tensors", "format": "pack-quantized",
				"config_groups": map[string]any{"group_0": map[string]any{"targets": []string{"Linear"}, "weights": tc.weights}},
				"ignore":        []string{"lm_head", skip}}
			quantpack.Write(t, base, in, block, nil, mods, func(m quantpack.Module) []safetensors.Tensor { return quantpack.Compressed(m, true) })
			out := filepath.Join(t.TempDir(), "gptq")
			convert(t, publish.ConvertOptions{In: in, Out: out, Format: tc.format})
			want := tc.format
			if want == "" {
				want = gptq.FormatV2
			}
			checkGPTQModules(t, out, want, mods)
			qc, _, err := gptq.ReadQuantizeConfig(out)
			if err != nil {
				t.Fatal(err)
			}
			if qc.DescAct != tc.act || qc.Sym != tc.sym || qc.Bits != tc.bits || qc.GroupSize != tc.gs || qc.Format() != want {
				t.Errorf("output config %+v", *qc)
			}
			if s, _ := qc.Skipped(skip); !s {
				t.Errorf("output config does not leave %s unquantized: dynamic %+v", skip, qc.Dynamic)
			}
			if s, _ := qc.Skipped("model.layers.0.mlp.down_proj"); s {
				t.Errorf("output config leaves model.layers.0.mlp.down_proj unquantized")
			}
			if c, err := model.Open(out); err != nil {
				t.Errorf("output does not open: %v", err)
			} else {
				c.Close()
			}
		})
	}
}

// TestConvertForeignQwen2 converts a random Qwen2 (q/k/v biases) packed as
// AWQ and as compressed-tensors, the biases beside the packed weights as
// Qwen's AWQ and llm-compressor's W4A16 checkpoints keep them, and the
// same codes stored as GPTQ v2: to GPTQ, the biases go over as they are;
// dequantized and to GGUF, each output equals the one written from the
// GPTQ checkpoint (the GGUF byte for byte), its biases the source's.
func TestConvertForeignQwen2(t *testing.T) {
	tok := fixture(t, "models/openchat-tiny")
	base := fixtures.Qwen2(t, map[string]any{"vocab_size": 32002}, synth.Options{DType: "f16", Seed: 6, TokenizerDir: tok})
	cfg, err := hfconfig.Load(base)
	if err != nil {
		t.Fatal(err)
	}
	linears, err := model.QuantLinears(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mods := quantpack.Draw(17, linears, 4, 64, false, false)
	dir := t.TempDir()
	ref := filepath.Join(dir, "gptq")
	quantpack.Write(t, base, ref, map[string]any{"quant_method": "gptq", "bits": 4, "group_size": 64, "desc_act": false, "sym": false, "checkpoint_format": "gptq_v2"},
		nil, mods, func(m quantpack.Module) []safetensors.Tensor { return quantpack.GPTQ(m, gptq.FormatV2) })
	src := tensors(t, base)
	var biasNames []string
	for n := range src {
		if strings.HasSuffix(n, ".bias") {
			biasNames = append(biasNames, n)
		}
	}
	if want := 3 * cfg.NumHiddenLayers; len(biasNames) != want {
		t.Fatalf("source holds %d biases, want %d", len(biasNames), want)
	}
	refDeq := filepath.Join(dir, "gptq-f32")
	convert(t, publish.ConvertOptions{In: ref, Out: refDeq, Dequantize: true, DType: "f32"})
	refGGUF := filepath.Join(dir, "gptq.gguf")
	convert(t, publish.ConvertOptions{In: ref, Out: refGGUF, GGUF: "f32"})
	wantGGUF, err := os.ReadFile(refGGUF)
	if err != nil {
		t.Fatal(err)
	}
	wantDeq := tensors(t, refDeq)

	for _, tc := range []struct {
		name  string
		block map[string]any
		pack  func(quantpack.Module) []safetensors.Tensor
	}{
		{"awq", map[string]any{"quant_method": "awq", "bits": 4, "group_size": 64, "zero_point": true, "version": "gemm"}, quantpack.AWQ},
		{"compressed-tensors", map[string]any{"quant_method": "compressed-tensors", "format": "pack-quantized",
			"config_groups": map[string]any{"group_0": map[string]any{"targets": []string{"Linear"},
				"weights": map[string]any{"num_bits": 4, "symmetric": false, "strategy": "group", "group_size": 64}}},
			"ignore": []string{"lm_head"}},
			func(m quantpack.Module) []safetensors.Tensor { return quantpack.Compressed(m, false) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := filepath.Join(t.TempDir(), "gptq") // (the GGUF files name the model by its folder)
			quantpack.Write(t, base, in, tc.block, nil, mods, tc.pack)

			out := filepath.Join(t.TempDir(), "gptq")
			convert(t, publish.ConvertOptions{In: in, Out: out})
			checkGPTQModules(t, out, gptq.FormatV2, mods)
			got := tensors(t, out)
			for _, n := range biasNames {
				g, ok := got[n]
				if !ok || g.DType != src[n].DType || !slices.Equal(g.Shape, src[n].Shape) || !bytes.Equal(g.Data, src[n].Data) {
					t.Errorf("GPTQ output: %s missing or not the source's", n)
				}
			}

			deq := filepath.Join(t.TempDir(), "f32")
			convert(t, publish.ConvertOptions{In: in, Out: deq, Dequantize: true, DType: "f32"})
			got = tensors(t, deq)
			if len(got) != len(wantDeq) {
				t.Errorf("dequantized: %d tensors, want the GPTQ checkpoint's %d", len(got), len(wantDeq))
			}
			for n, w := range wantDeq {
				if g, ok := got[n]; !ok || g.DType != w.DType || !bytes.Equal(g.Data, w.Data) {
					t.Errorf("dequantized: %s missing or not the GPTQ checkpoint's", n)
				}
			}
			for _, n := range biasNames {
				want, _ := src[n].Float32()
				if g, _ := got[n].Float32(); !slices.Equal(g, want) {
					t.Errorf("dequantized %s: not the source's", n)
				}
			}

			path := filepath.Join(t.TempDir(), "m.gguf")
			convert(t, publish.ConvertOptions{In: in, Out: path, GGUF: "f32"})
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, wantGGUF) {
				t.Errorf("GGUF (%d bytes) differs from the GPTQ checkpoint's (%d bytes)", len(b), len(wantGGUF))
			}
			f, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for i := range cfg.NumHiddenLayers {
				for _, m := range []string{"q", "k", "v"} {
					want, _ := src[fmt.Sprintf("model.layers.%d.self_attn.%s_proj.bias", i, m)].Float32()
					if g, err := f.Float32(fmt.Sprintf("blk.%d.attn_%s.bias", i, m)); err != nil || !slices.Equal(g, want) {
						t.Errorf("GGUF blk.%d.attn_%s.bias: %v, or not the source's", i, m, err)
					}
				}
			}
		})
	}
}
