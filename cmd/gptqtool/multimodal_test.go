package main

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
)

// TestMultimodalCommands runs a small multimodal checkpoint of each
// wrapper (internal/fixtures.Multimodal: gemma3, mistral3, qwen2_vl,
// qwen2_5_vl, qwen3_vl) in its tensor-name layouts through the commands:
// inspect counts the vision tensors apart; generate gives the text model's
// ids (those of the same weights as a checkpoint of the text type);
// quantize quantizes the text model's Linears alone, under the input's
// prefix, keeps the vision tower's and projector's tensors byte for byte
// under their names and config.json's structure (text_config,
// vision_config, the top level's keys; quantization_config and the dtype
// at the top), and its output passes verify format and inspect, loads back
// (verify kl to the source small) and converts (shards: every tensor byte
// for byte; --dequantize and --dtype: the vision tensors kept, converted);
// convert --gguf writes the text model as its text type's llama.cpp
// architecture and says the vision tower is left out.
func TestMultimodalCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("quantizes a model")
	}
	tok := fixturePath(t, "models/openchat-tiny")
	dataset := fixturePath(t, "datasets/instruct/alpaca_en_demo.json")
	text := foxText(t, 40)
	ids := map[string]any{"bos_token_id": 1, "eos_token_id": 32000, "vocab_size": 32002, "hidden_size": 128, "intermediate_size": 256}
	with := func(m map[string]any) map[string]any {
		out := maps.Clone(ids)
		maps.Copy(out, m)
		return out
	}
	for _, tc := range []struct {
		wrapper, layout, lm, arch string
		text                      func() string
	}{
		{"gemma3", "4.50", "language_model.model.", "gemma3", func() string {
			return fixtures.Gemma3(t, map[string]any{"hidden_size": 128, "intermediate_size": 256, "vocab_size": 32002,
				"head_dim": 64, "query_pre_attn_scalar": 64, "sliding_window": 16, "num_hidden_layers": 6, "sliding_window_pattern": 6}, synth.Options{DType: "f16", Seed: 4, TokenizerDir: tok})
		}},
		{"gemma3", "4.52", "model.language_model.", "gemma3", func() string {
			return fixtures.Gemma3(t, map[string]any{"hidden_size": 128, "intermediate_size": 256, "vocab_size": 32002,
				"head_dim": 64, "query_pre_attn_scalar": 64, "sliding_window": 16, "num_hidden_layers": 6, "sliding_window_pattern": 6}, synth.Options{DType: "f16", Seed: 4, TokenizerDir: tok})
		}},
		{"mistral3", "4.50", "language_model.model.", "llama", func() string {
			return fixtures.Mistral(t, with(map[string]any{"head_dim": 64}), synth.Options{DType: "bf16", Seed: 5, TokenizerDir: tok})
		}},
		{"mistral3", "4.52", "model.language_model.", "llama", func() string {
			return fixtures.Mistral(t, with(nil), synth.Options{DType: "bf16", Seed: 5, TokenizerDir: tok})
		}},
		{"qwen2_vl", "4.50", "model.", "qwen2vl", func() string {
			return fixtures.Qwen2(t, with(map[string]any{"tie_word_embeddings": false}), synth.Options{DType: "bf16", Seed: 6, TokenizerDir: tok})
		}},
		{"qwen2_5_vl", "4.50", "model.", "qwen2vl", func() string {
			return fixtures.Qwen2(t, with(nil), synth.Options{DType: "bf16", Seed: 6, TokenizerDir: tok})
		}},
		{"qwen2_5_vl", "4.52", "model.language_model.", "qwen2vl", func() string {
			return fixtures.Qwen2(t, with(nil), synth.Options{DType: "bf16", Seed: 6, TokenizerDir: tok})
		}},
		{"qwen3_vl", "4.52", "model.language_model.", "qwen3vl", func() string {
			return fixtures.Qwen3(t, with(nil), synth.Options{DType: "bf16", Seed: 8, TokenizerDir: tok})
		}},
		{"qwen3_vl_moe", "4.52", "model.language_model.", "qwen3vlmoe", func() string {
			return fixtures.Qwen3MoE(t, with(map[string]any{"moe_intermediate_size": 64, "mlp_only_layers": []int{}}), synth.Options{DType: "bf16", Seed: 9, TokenizerDir: tok})
		}},
	} {
		t.Run(tc.wrapper+"/"+tc.layout, func(t *testing.T) {
			textDir := tc.text()
			mm := fixtures.Multimodal(t, tc.wrapper, tc.layout, textDir)
			rep, stderr, err := run(t, "inspect", mm, "--json")
			if err != nil {
				t.Fatalf("inspect: %v\n%s\n%s", err, stderr, rep)
			}
			var ins struct {
				ModelType        string `json:"model_type"`
				Wrapper          string `json:"multimodal_type"`
				NumParameters    int64  `json:"num_parameters"`
				ConfigParameters int64  `json:"config_parameters"`
				VisionParameters int64  `json:"vision_parameters"`
			}
			// The four vision/projector tensors: 8·3·2·2 + 8 + 8·64 + 8.
			if err := json.Unmarshal([]byte(rep), &ins); err != nil || ins.NumParameters != ins.ConfigParameters || ins.NumParameters == 0 || ins.VisionParameters != 624 || ins.Wrapper != tc.wrapper {
				t.Errorf("inspect --json: %v: %d parameters, config's %d, vision %d (want 624), type %q\n%s", err, ins.NumParameters, ins.ConfigParameters, ins.VisionParameters, ins.Wrapper, rep)
			}
			if txt, _, err := run(t, "inspect", mm); err != nil || !strings.Contains(txt, "vision         624 parameters") || !strings.Contains(txt, "multimodal "+tc.wrapper) {
				t.Errorf("inspect: %v, want the vision parameters reported\n%s", err, txt)
			}
			gen := []string{"--prompt", "Once upon a time", "--max-tokens", "8", "--temperature", "0", "--device", "cpu", "--dtype", "f32"}
			want, _ := generateJSONOut(t, append([]string{"--model", textDir}, gen...)...)
			got, stderr := generateJSONOut(t, append([]string{"--model", mm}, gen...)...)
			if len(want.IDs) == 0 || !slices.Equal(got.IDs, want.IDs) {
				t.Errorf("generate: ids %v, the text checkpoint's %v\n%s", got.IDs, want.IDs, stderr)
			}

			q := filepath.Join(t.TempDir(), "q")
			if _, stderr, err := run(t, "quantize", "--model", mm, "--out", q, "--bits", "4", "--group", "128",
				"--dataset", dataset, "--nsamples", "4", "--seq-len", "64", "--device", "cpu"); err != nil {
				t.Fatalf("quantize: %v\n%s", err, stderr)
			}
			if _, stderr, err := run(t, "verify", "format", q); err != nil {
				t.Errorf("verify format: %v\n%s", err, stderr)
			}
			if txt, stderr, err := run(t, "inspect", q); err != nil || !strings.Contains(txt, "vision         624 parameters") {
				t.Errorf("inspect of the GPTQ checkpoint: %v\n%s%s", err, txt, stderr)
			}
			src, out := readConfig(t, mm), readConfig(t, q)
			qc, _ := out["quantization_config"].(map[string]any)
			srcText, outText := withoutDType(src["text_config"]), withoutDType(out["text_config"])
			if out["model_type"] != tc.wrapper || qc == nil || qc["bits"] != json.Number("4") || !reflect.DeepEqual(outText, srcText) ||
				!reflect.DeepEqual(out["vision_config"], src["vision_config"]) || !reflect.DeepEqual(out["architectures"], src["architectures"]) ||
				out["torch_dtype"] != "float16" {
				t.Errorf("quantize: config.json %v, the source's %v", out, src)
			}
			if tcfg, ok := out["text_config"].(map[string]any); ok && tcfg["dtype"] != nil && tcfg["dtype"] != "float16" {
				t.Errorf("quantize: text_config's dtype %v, want the top level's float16", tcfg["dtype"])
			}
			names := sameKept(t, mm, q)
			moe := tc.wrapper == "qwen3_vl_moe" // (its fused experts quantized per expert, down_proj's K 64 in one group)
			mlp := "layers.1.mlp.down_proj.scales"
			if moe {
				mlp = "layers.1.mlp.experts.15.down_proj.scales"
			}
			for _, n := range []string{tc.lm + "layers.0.self_attn.q_proj.qweight", tc.lm + mlp, tc.lm + "embed_tokens.weight", tc.lm + "norm.weight"} {
				if !slices.Contains(names, n) {
					t.Errorf("quantize: no tensor %q in %v", n, names)
				}
			}
			if tc.lm != "model." {
				for _, n := range names {
					if hfconfig.TextModelName(n) && !(tc.layout == "4.52" && strings.HasPrefix(n, "lm_head.")) {
						t.Errorf("quantize: tensor %q outside the checkpoint's layout", n)
					}
				}
			}
			if kl := meanKL(t, "--model", q, "--baseline", mm, "--text", text, "--ctx", "128", "--device", "cpu"); !(kl > 0 && kl < 1) {
				t.Errorf("verify kl: mean KL %g: want a small positive one", kl)
			}

			// Shards of the GPTQ checkpoint: every tensor byte for byte.
			sh := filepath.Join(t.TempDir(), "sh")
			if _, stderr, err := run(t, "convert", "--in", q, "--out", sh, "--max-shard-size", "200KB"); err != nil {
				t.Fatalf("convert --max-shard-size: %v\n%s", err, stderr)
			}
			if shards, _ := filepath.Glob(filepath.Join(sh, "*.safetensors")); len(shards) < 2 {
				t.Errorf("convert --max-shard-size: %d files", len(shards))
			}
			if got, want := sameKept(t, q, sh), names; !slices.Equal(got, want) {
				t.Errorf("convert --max-shard-size: tensors %v, want %v", got, want)
			}
			if _, stderr, err := run(t, "verify", "format", sh); err != nil {
				t.Errorf("verify format of the shards: %v\n%s", err, stderr)
			}
			// --dequantize: the text model in fp16 under the same prefix,
			// the vision tensors kept (in fp16), KL to the GPTQ one about 0.
			deq := filepath.Join(t.TempDir(), "deq")
			if moe {
				// (per-expert floating point: refused, transformers fuses them)
				if _, _, err := run(t, "convert", "--in", q, "--out", deq, "--dequantize"); err == nil || !strings.Contains(err.Error(), "per-expert") {
					t.Errorf("convert --dequantize of qwen3_vl_moe: %v, want refused", err)
				}
				deq = q
			} else if _, stderr, err := run(t, "convert", "--in", q, "--out", deq, "--dequantize"); err != nil {
				t.Fatalf("convert --dequantize: %v\n%s", err, stderr)
			}
			if got, want := openRaw(t, deq).Names(), openRaw(t, mm).Names(); !moe && !slices.Equal(got, want) {
				t.Errorf("convert --dequantize: tensors %v, the source's %v", got, want)
			}
			if kl := meanKL(t, "--model", deq, "--baseline", q, "--text", text, "--ctx", "128", "--device", "cpu"); !(kl < 1e-4) {
				t.Errorf("verify kl of the dequantized checkpoint: mean KL %g: want about 0", kl)
			}
			// --dtype f32 of the source: the vision tensors kept, in f32
			// (refused for fused experts, which it would write per expert).
			f32 := filepath.Join(t.TempDir(), "f32")
			if moe {
				if _, stderr, err := run(t, "convert", "--in", mm, "--out", f32, "--dtype", "f32"); err == nil || !strings.Contains(err.Error(), "only --gguf") {
					t.Errorf("convert --dtype f32 of fused experts: %v, want refused\n%s", err, stderr)
				}
				f32 = mm
			} else if _, stderr, err := run(t, "convert", "--in", mm, "--out", f32, "--dtype", "f32"); err != nil {
				t.Fatalf("convert --dtype f32: %v\n%s", err, stderr)
			}
			a, b := openRaw(t, mm), openRaw(t, f32)
			if !slices.Equal(a.Names(), b.Names()) {
				t.Errorf("convert --dtype f32: tensors %v, the source's %v", b.Names(), a.Names())
			}
			for _, n := range b.Names() {
				if tn, _ := b.Tensor(n); tn.DType != safetensors.F32 && !moe {
					t.Errorf("convert --dtype f32: %s in %s", n, tn.DType)
				}
			}
			if cfg := readConfig(t, f32); cfg["vision_config"] == nil || cfg["model_type"] != tc.wrapper {
				t.Errorf("convert --dtype f32: config %v", cfg)
			} else if vc := cfg["vision_config"].(map[string]any); vc["torch_dtype"] != nil && vc["torch_dtype"] != "float32" && !moe {
				t.Errorf("convert --dtype f32: vision_config's torch_dtype %v, want float32", vc["torch_dtype"])
			}

			gg := filepath.Join(t.TempDir(), "q.gguf")
			fixtures.CopyFiles(t, q, filepath.Dir(gg), "tokenizer.json", "tokenizer_config.json") // (generate reads them beside the file)
			_, stderr, err = run(t, "convert", "--in", q, "--out", gg, "--gguf", "q8_0")
			if err != nil {
				t.Fatalf("convert --gguf: %v\n%s", err, stderr)
			}
			if !strings.Contains(stderr, "vision tower and projector (4 tensors) are left out") {
				t.Errorf("convert --gguf: stderr does not say the vision tower is left out:\n%s", stderr)
			}
			f, err := gguf.Open(gg)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if a, _ := gguf.Value[string](f, "general.architecture"); a != tc.arch {
				t.Errorf("convert --gguf: general.architecture %q, want %s", a, tc.arch)
			}
			if _, stderr, err := run(t, "generate", "--model", gg, "--prompt", "Once upon a time", "--max-tokens", "4", "--temperature", "0", "--device", "cpu"); err != nil {
				t.Errorf("generate on the GGUF file: %v\n%s", err, stderr)
			}
			if moe {
				// The source's fused experts, stacked as llama.cpp's
				// converter stacks them: the F32 file runs as the source.
				gf := filepath.Join(filepath.Dir(gg), "f.gguf")
				if _, stderr, err := run(t, "convert", "--in", mm, "--out", gf, "--gguf", "f32"); err != nil {
					t.Fatalf("convert --gguf of fused experts: %v\n%s", err, stderr)
				}
				want, _ := generateJSONOut(t, append([]string{"--model", mm}, gen...)...)
				got, stderr := generateJSONOut(t, append([]string{"--model", gf}, gen...)...)
				if len(want.IDs) == 0 || !slices.Equal(got.IDs, want.IDs) {
					t.Errorf("generate on the F32 GGUF of fused experts: ids %v, the checkpoint's %v\n%s", got.IDs, want.IDs, stderr)
				}
			}
		})
	}
}

// withoutDType is a text_config without its dtype keys (quantize writes
// the top level's into it).
func withoutDType(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	m = maps.Clone(m)
	delete(m, "dtype")
	delete(m, "torch_dtype")
	return m
}

// readConfig reads dir/config.json, numbers as json.Number.
func readConfig(t *testing.T, dir string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// openRaw opens dir's safetensors under their stored names.
func openRaw(t *testing.T, dir string) *safetensors.Set {
	t.Helper()
	s, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// sameKept checks that every tensor of src outside the text model (the
// vision tower's, the projector's) is in out under its name with the
// same dtype, shape and bytes, and returns out's stored names.
func sameKept(t *testing.T, src, out string) []string {
	t.Helper()
	a, b := openRaw(t, src), openRaw(t, out)
	kept := 0
	for _, n := range a.Names() {
		if strings.Contains(n, "language_model") || hfconfig.TextModelName(n) {
			continue
		}
		kept++
		ta, _ := a.Tensor(n)
		tb, err := b.Tensor(n)
		if err != nil || tb.DType != ta.DType || !slices.Equal(tb.Shape, ta.Shape) || !bytes.Equal(tb.Data, ta.Data) {
			t.Errorf("%s: tensor %q not kept byte for byte (%v)", out, n, err)
		}
	}
	if kept != 4 {
		t.Errorf("%s: %d vision/projector tensors, want 4", src, kept)
	}
	return b.Names()
}
