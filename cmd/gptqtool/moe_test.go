package main

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/verify"
)

// TestMoECommands runs random Mixtral, Qwen3-MoE, Qwen2-MoE and OLMoE checkpoints (the
// openchat tokenizer) through generate, verify perplexity and quantize on
// the CPU: generate's greedy ids are the runtime's greedy continuation (a
// forward over the whole sequence each token, the decode steps' routing
// checked against the forward's), verify perplexity gives what
// verify.Perplexity gives on the model loaded here, and the quantized
// checkpoint passes verify format and keeps a small KL to the source.
func TestMoECommands(t *testing.T) {
	tok := fixturePath(t, "models/openchat-tiny")
	for _, tc := range []struct {
		name  string
		write func(testing.TB, map[string]any, synth.Options) string
	}{{"mixtral", fixtures.Mixtral}, {"qwen3_moe", fixtures.Qwen3MoE}, {"qwen2_moe", fixtures.Qwen2MoE}, {"olmoe", fixtures.Olmoe}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.write(t, map[string]any{"vocab_size": 32002, "bos_token_id": 1, "eos_token_id": 32000}, synth.Options{DType: "f16", Seed: 9, TokenizerDir: tok})
			doc, stderr := generateJSONOut(t, "--model", dir, "--prompt", "Once upon a time", "--max-tokens", "8", "--temperature", "0", "--device", "cpu", "--dtype", "f32")
			m, err := model.Load(dir, cpu.New(0))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ids := slices.Clone(doc.PromptIDs)
			for range len(doc.IDs) {
				lg, err := m.Forward(ids, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				last := lg[(len(ids)-1)*m.Vocab():]
				ids = append(ids, argmax(last))
			}
			if got := append(slices.Clone(doc.PromptIDs), doc.IDs...); len(doc.IDs) == 0 || !slices.Equal(got, ids) {
				t.Errorf("generate: ids %v, the runtime's greedy %v\n%s", got, ids, stderr)
			}

			text := foxText(t, 30)
			out, stderr, err := run(t, "verify", "perplexity", "--model", dir, "--text", text, "--ctx", "64", "--max-windows", "2", "--device", "cpu", "--dtype", "f32", "--json")
			if err != nil {
				t.Fatalf("verify perplexity: %v\n%s", err, stderr)
			}
			var res struct {
				Result verify.PerplexityResult `json:"result"`
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("verify perplexity --json: %v\n%s", err, out)
			}
			textIDs, err := loadText(dir, text)
			if err != nil {
				t.Fatal(err)
			}
			want, err := verify.Perplexity(context.Background(), m, textIDs, verify.PerplexityOptions{Ctx: 64, MaxWindows: 2})
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Result.PPL; !(got > 1) || math.Abs(got-want.PPL) > 1e-9*want.PPL {
				t.Errorf("verify perplexity: ppl %.10g, want %.10g", got, want.PPL)
			}

			// quantize with calibration: the experts' GPTQ tensors and
			// the router pass verify format, and the KL to the source is
			// small.
			q := filepath.Join(t.TempDir(), "q")
			args := []string{"quantize", "--model", dir, "--out", q, "--bits", "4", "--group", "32",
				"--dataset", fixturePath(t, "datasets/instruct/alpaca_en_demo.json"), "--nsamples", "4", "--seq-len", "64", "--device", "cpu"}
			if _, stderr, err := run(t, args...); err != nil {
				t.Fatalf("quantize: %v\n%s", err, stderr)
			}
			if out, stderr, err := run(t, "verify", "format", q); err != nil {
				t.Errorf("verify format: %v\n%s%s", err, out, stderr)
			}
			qm, err := model.Load(q, cpu.New(0))
			if err != nil {
				t.Fatal(err)
			}
			defer qm.Close()
			if qm.Quant == nil || qm.Quant.Bits != 4 {
				t.Fatalf("the output is not a 4-bit GPTQ checkpoint: %+v", qm.Quant)
			}
			if kl := meanKL(t, "--model", q, "--baseline", dir, "--text", text, "--ctx", "64", "--max-windows", "2", "--device", "cpu"); !(kl > 0 && kl < 1) {
				t.Errorf("verify kl: mean KL %g: want a small positive one", kl)
			}
		})
	}
}

// TestMoEGGUFCommands converts random fp16 Mixtral, Qwen3-MoE, Qwen2-MoE
// and OLMoE checkpoints (every layer sparse, as llama.cpp's qwen3moe and
// qwen2moe) to F16 GGUF
// files with convert --gguf, which hold their exact values: generate on
// the file gives the checkpoint's greedy ids, verify perplexity its
// perplexity, and inspect the file's experts.
func TestMoEGGUFCommands(t *testing.T) {
	tok := fixturePath(t, "models/openchat-tiny")
	for _, tc := range []struct {
		name  string
		write func(testing.TB, map[string]any, synth.Options) string
	}{{"mixtral", fixtures.Mixtral}, {"qwen3_moe", fixtures.Qwen3MoE}, {"qwen2_moe", fixtures.Qwen2MoE}, {"olmoe", fixtures.Olmoe}} {
		t.Run(tc.name, func(t *testing.T) {
			edit := map[string]any{"vocab_size": 32002, "bos_token_id": 1, "eos_token_id": 32000, "mlp_only_layers": []int{}}
			if tc.name == "mixtral" || tc.name == "olmoe" {
				edit["mlp_only_layers"] = nil
			}
			if tc.name == "olmoe" {
				edit["num_key_value_heads"] = 4 // (llama.cpp's olmoe has no GQA)
			}
			dir := tc.write(t, edit, synth.Options{DType: "f16", Seed: 10, TokenizerDir: tok})
			file := filepath.Join(dir, "m.gguf") // (beside its tokenizer)
			if _, stderr, err := run(t, "convert", "--in", dir, "--out", file, "--gguf", "f16"); err != nil {
				t.Fatalf("convert --gguf f16: %v\n%s", err, stderr)
			}
			gen := []string{"--prompt", "Once upon a time", "--max-tokens", "8", "--temperature", "0", "--device", "cpu", "--dtype", "f32"}
			want, _ := generateJSONOut(t, append([]string{"--model", dir}, gen...)...)
			got, stderr := generateJSONOut(t, append([]string{"--model", file}, gen...)...)
			if len(want.IDs) == 0 || !slices.Equal(got.PromptIDs, want.PromptIDs) || !slices.Equal(got.IDs, want.IDs) {
				t.Errorf("generate on the GGUF file: %v %v, on the checkpoint %v %v\n%s", got.PromptIDs, got.IDs, want.PromptIDs, want.IDs, stderr)
			}
			text := foxText(t, 30)
			var ppl [2]float64
			for i, m := range []string{dir, file} {
				out, stderr, err := run(t, "verify", "perplexity", "--model", m, "--text", text, "--ctx", "64", "--max-windows", "2", "--device", "cpu", "--dtype", "f32", "--json")
				if err != nil {
					t.Fatalf("verify perplexity --model %s: %v\n%s", m, err, stderr)
				}
				var res struct {
					Result verify.PerplexityResult `json:"result"`
				}
				if err := json.Unmarshal([]byte(out), &res); err != nil {
					t.Fatalf("verify perplexity --json: %v\n%s", err, out)
				}
				ppl[i] = res.Result.PPL
			}
			if !(ppl[0] > 1) || ppl[1] != ppl[0] {
				t.Errorf("verify perplexity: %.10g on the GGUF file, %.10g on the checkpoint", ppl[1], ppl[0])
			}
			out, _, err := run(t, "inspect", "--json", file)
			if err != nil {
				t.Fatal(err)
			}
			if want := `"expert_count": `; !strings.Contains(out, want) {
				t.Errorf("inspect --json of the GGUF file:\n%s\nwant %s", out, want)
			}
		})
	}
}

// argmax is the index of the largest value (the first of equal ones).
func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// TestInspectMoE: inspect prints a Qwen3-MoE checkpoint's experts (16 of
// 48 channels in 2 of its 3 layers, 4 a token, renormalized) and, with
// --json, them under mixture_of_experts; a dense model has neither.
func TestInspectMoE(t *testing.T) {
	dir := fixtures.Qwen3MoE(t, nil, synth.Options{DType: "bf16", Seed: 5})
	out, _, err := run(t, "inspect", dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := "experts        16 of intermediate 48 in 2 of 3 layers, 4 a token, weights renormalized\n"; !strings.Contains(out, want) {
		t.Errorf("inspect:\n%s\nwant a line %q", out, want)
	}
	out, _, err = run(t, "inspect", "--json", dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"mixture_of_experts": {`; !strings.Contains(out, want) {
		t.Errorf("inspect --json:\n%s\nwant %s", out, want)
	}
	out, _, err = run(t, "inspect", "--json", fixtures.Qwen3(t, nil, synth.Options{DType: "bf16", Seed: 5}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "mixture_of_experts") {
		t.Errorf("a dense Qwen3 reports mixture_of_experts:\n%s", out)
	}
}

// TestImatrixMoE: imatrix of a small Mixtral writes, for each layer's
// stacked experts, one row of sums and one count an expert (llama-imatrix's
// in_sum2 [experts, n] and counts [experts, 1]), the counts of a layer's
// gate adding up to its two experts a token; convert --gguf q4_0 --imatrix
// reads it back and weighs every weight, the stacks' too, with no entry
// missing but token_embd's.
func TestImatrixMoE(t *testing.T) {
	tok := fixturePath(t, "models/openchat-tiny")
	dir := fixtures.Mixtral(t, map[string]any{"vocab_size": 32002, "bos_token_id": 1, "eos_token_id": 32000}, synth.Options{DType: "f32", Seed: 4, TokenizerDir: tok})
	data := fixturePath(t, "datasets/instruct/alpaca_en_demo.json")
	im := filepath.Join(t.TempDir(), "moe.imatrix.gguf")
	stdout, stderr, err := run(t, "imatrix", "--model", dir, "--dataset", data, "--nsamples", "4", "--seq-len", "32", "--device", "cpu", "--out", im)
	if err != nil {
		t.Fatalf("imatrix: %v\n%s", err, stderr)
	}
	// 2 layers: 4 attention weights and 3 stacks each.
	if !strings.Contains(stdout, "14 weights, 4 samples, 128 tokens") {
		t.Errorf("imatrix summary: %s", stdout)
	}
	m, err := gguf.ReadImatrix(im)
	if err != nil {
		t.Fatal(err)
	}
	for li := range 2 {
		for _, kind := range []string{"gate", "up", "down"} {
			name := "blk." + strconv.Itoa(li) + ".ffn_" + kind + "_exps.weight"
			e := m.Entries[name]
			var total float32
			for _, c := range e.Counts {
				total += c
			}
			if len(e.Counts) != 8 || len(e.Sum2) != 8*map[string]int{"gate": 64, "up": 64, "down": 96}[kind] || total != 2*128 {
				t.Errorf("%s: %d sums, counts %v (sum %g); want a row and a count an expert adding up to 256", name, len(e.Sum2), e.Counts, total)
			}
		}
		if e := m.Entries["blk."+strconv.Itoa(li)+".attn_q.weight"]; e.Counts != nil || e.Count != 128 || len(e.Sum2) != 64 {
			t.Errorf("layer %d attn_q: %d sums over %g tokens, counts %v; want 64 over 128", li, len(e.Sum2), e.Count, e.Counts)
		}
	}
	out := filepath.Join(t.TempDir(), "moe.gguf")
	_, stderr, err = run(t, "convert", "--in", dir, "--out", out, "--gguf", "q4_0", "--imatrix", im)
	if err != nil {
		t.Fatalf("convert --imatrix: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "no entry for token_embd.weight:") || strings.Contains(stderr, "_exps") {
		t.Errorf("convert with the imatrix: the weights without an entry, want token_embd.weight only:\n%s", stderr)
	}
	// A Qwen3-MoE with a dense layer, which convert --gguf refuses, is
	// refused before the dataset is read (the one named does not exist).
	qwen := fixtures.Qwen3MoE(t, nil, synth.Options{DType: "f32", Seed: 4})
	none := filepath.Join(t.TempDir(), "none.gguf")
	_, _, err = run(t, "imatrix", "--model", qwen, "--dataset", filepath.Join(t.TempDir(), "no-such.json"), "--out", none, "--device", "cpu")
	if err == nil || !strings.Contains(err.Error(), "imatrix: ") || !strings.Contains(err.Error(), "have a dense MLP") {
		t.Errorf("imatrix of a Qwen3-MoE with a dense layer: %v, want the refusal naming it", err)
	}
	if _, err := os.Stat(none); err == nil {
		t.Errorf("%s written after the refusal", none)
	}
}

// TestLayerOfModules: the progress line's layer of a module count, for
// dense layers of seven modules and for a Qwen3-MoE-like run (layers of
// 4 + 3·16 modules but a dense last one of 7) over two jobs.
func TestLayerOfModules(t *testing.T) {
	for _, tc := range []struct {
		ends        []int
		done, total int
		want        string
	}{
		{nil, 0, 14, "1/2"},
		{nil, 7, 14, "2/2"},
		{nil, 14, 14, "2/2"},
		{[]int{52, 104, 111}, 0, 222, "1/6"},
		{[]int{52, 104, 111}, 51, 222, "1/6"},
		{[]int{52, 104, 111}, 52, 222, "2/6"},
		{[]int{52, 104, 111}, 110, 222, "3/6"},
		{[]int{52, 104, 111}, 111, 222, "4/6"},
		{[]int{52, 104, 111}, 222, 222, "6/6"},
	} {
		if got := layerOfModules(tc.ends, tc.done, tc.total); got != tc.want {
			t.Errorf("layerOfModules(%v, %d, %d) = %s, want %s", tc.ends, tc.done, tc.total, got, tc.want)
		}
	}
}
