package gguf_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
)

// TestLlamaCppOverrides: openchat-tiny in Q4_K_M with --pure (every 2-D
// weight Q4_K, token_embd, the output, too; ffn_down's rows of 896 falling
// back to Q5_0) and with --tensor-type ffn_down=q8_0 and
// ^blk\.0\.attn=q5_0 (layer 0's four attention weights Q5_0, every
// ffn_down Q8_0, the rest as Q4_K_M: token_embd Q6_K, and the attn_v of
// layer 3, which the rules count as their third, layer 0's being
// overridden: use_more_bits(2, 6)) holds those types, and llama.cpp reads the files as our
// runtime does (TestLlamaCppMix's check; measured max|Δlogp| / NMSE / KL:
// pure 0.24 / 4.9e-4 / 6.1e-4, tensor-type 0.21 / 1.8e-3 / 8.8e-4).
func TestLlamaCppOverrides(t *testing.T) {
	ck := openCheckpoint(t, "models/openchat-tiny")
	mix, _ := gguf.ParseMix("q4_k_m")
	var tts []gguf.TensorTypeOverride
	for _, f := range []string{"ffn_down=q8_0", `^blk\.0\.attn=q5_0`} {
		o, err := gguf.ParseTensorTypeOverride(f)
		if err != nil {
			t.Fatal(err)
		}
		tts = append(tts, o)
	}
	for _, tc := range []struct {
		name string
		opts gguf.ConvertOptions
		want func(name string) gguf.TensorType
	}{
		{"pure", gguf.ConvertOptions{Mix: mix, Pure: true}, func(n string) gguf.TensorType {
			if strings.HasSuffix(n, ".ffn_down.weight") {
				return gguf.TypeQ5_0
			}
			return gguf.TypeQ4_K
		}},
		{"tensor-type", gguf.ConvertOptions{Mix: mix, TensorTypes: tts}, func(n string) gguf.TensorType {
			switch {
			case strings.HasSuffix(n, ".ffn_down.weight"):
				return gguf.TypeQ8_0
			case strings.HasPrefix(n, "blk.0.attn"):
				return gguf.TypeQ5_0
			case n == "token_embd.weight", n == "blk.3.attn_v.weight":
				return gguf.TypeQ6_K
			}
			return gguf.TypeQ4_K
		}},
	} {
		c := convertWith(t, ck, mix.Base, tc.opts)
		if ft, _ := c.file.Get("general.file_type"); ft != uint32(15) {
			t.Errorf("%s: general.file_type %v, want 15 (MOSTLY_Q4_K_M)", tc.name, ft)
		}
		for _, ti := range c.file.Tensors() {
			want := gguf.TypeF32
			if len(ti.Shape) == 2 {
				want = tc.want(ti.Name)
			}
			if ti.Type != want {
				t.Errorf("%s: tensor %s: %s, want %s", tc.name, ti.Name, ti.Type, want)
			}
		}
		t.Run(tc.name, func(t *testing.T) {
			node := llamaCppAvailable(t)
			prompts := tinyPrompts(t, ck.dir)
			resp := runLlamaCpp(t, node, llamaRequest{Models: []llamaModel{{Path: c.path, Context: 48, Logits: prompts}}})
			ours := nextLogProbs(t, loadRuntime(t, newGGUFWeights(c, ck.cfg), ck.cfg), prompts)
			d := llamaDiff(t, resp.Models[0].LogProbs, ours, ck.cfg.VocabSize)
			t.Logf("Q4_K_M %s: llama.cpp vs our runtime on the same weights: %v", tc.name, d)
			llamaTolerances[mix.Base].check(t, "llama.cpp vs our runtime on Q4_K_M "+tc.name, d)
		})
	}
}

// TestIncludeExcludeWeights: --exclude-weights attn_q writes every
// attn_q as without the importance matrix and the rest as with it;
// --include-weights blk.0. weighs layer 0 alone; the file records the
// entries used (quantize.imatrix.entries_count), and the warning names
// only the weight the matrix lacks (token_embd), not those left out.
func TestIncludeExcludeWeights(t *testing.T) {
	ck := openCheckpoint(t, "models/openchat-tiny")
	m := randomImatrix(ck)
	typ := gguf.TypeQ4_K
	plain := convert(t, ck, typ)
	full := convertWith(t, ck, typ, gguf.ConvertOptions{Type: typ, Imatrix: m})
	for _, tc := range []struct {
		name     string
		opts     gguf.ConvertOptions
		weighted func(name string) bool
		entries  uint32
	}{
		{"--exclude-weights attn_q", gguf.ConvertOptions{Type: typ, Imatrix: m, ExcludeWeights: []string{"attn_q"}},
			func(n string) bool { return !strings.Contains(n, "attn_q") }, 36},
		{"--include-weights blk.0.", gguf.ConvertOptions{Type: typ, Imatrix: m, IncludeWeights: []string{"blk.0."}},
			func(n string) bool { return strings.HasPrefix(n, "blk.0.") }, 7},
	} {
		c := convertWith(t, ck, typ, tc.opts)
		if got, _ := c.file.Get("quantize.imatrix.entries_count"); got != tc.entries {
			t.Errorf("%s: quantize.imatrix.entries_count %v, want %d", tc.name, got, tc.entries)
		}
		if w := c.res.Warnings; len(w) != 1 || !strings.Contains(w[0], "no entry for token_embd.weight:") {
			t.Errorf("%s: warnings %v, want one naming token_embd alone", tc.name, w)
		}
		for _, ti := range c.file.Tensors() {
			if !strings.HasPrefix(ti.Name, "blk.") || len(ti.Shape) != 2 {
				continue
			}
			got, _ := c.file.TensorData(ti.Name)
			want := plain
			if tc.weighted(ti.Name) {
				want = full
			}
			if w, _ := want.file.TensorData(ti.Name); !bytes.Equal(got, w) {
				t.Errorf("%s: %s differs from the file %s the importance matrix", tc.name, ti.Name, map[bool]string{true: "with", false: "without"}[tc.weighted(ti.Name)])
			}
		}
	}
}
