package gguf_test

import (
	"bytes"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
)

// TestLlamaCppWeighted: openchat-tiny converted to each type that takes an
// importance matrix, with one (llama-quantize's _impl quantizers, where
// the fixtures' tests run the _ref ones), differs from the file without
// it, holds weights within weightedNMSE of the checkpoint, and llama.cpp
// computes the next-token distribution our runtime computes from the
// file's dequantized weights (llamaTolerances).
func TestLlamaCppWeighted(t *testing.T) {
	if testing.Short() {
		t.Skip("converts openchat-tiny 24 times and runs 12 files in llama.cpp")
	}
	ck := openCheckpoint(t, "models/openchat-tiny")
	imatrix := randomImatrix(ck)
	// Measured worst tensor with the importances (they weigh some columns
	// 10⁴ times others, which costs plain NMSE; token_embd has none, as in
	// llama-imatrix's files): Q4_0 9.2e-3, Q4_1 6.8e-3, Q5_0 2.1e-3, Q5_1
	// 1.6e-3, IQ4_NL 7.0e-3, IQ4_XS 7.1e-3, Q2_K 0.11, Q3_K 2.9e-2, Q4_K
	// 6.7e-3, Q5_K 1.6e-3, Q6_K 4.3e-4, IQ3_S 2.8e-2. Bounds: about 2×.
	// llama.cpp against our runtime (max|Δlogp| / NMSE / KL): 0.16–0.25 /
	// 2.0e-4–1.8e-3 / 2.6e-4–1.0e-3. (IQ3_XXS is left out: llama-quantize
	// writes it only with an importance matrix, and so do the fixtures'
	// tests, convert.)
	weightedNMSE := map[gguf.TensorType]float64{gguf.TypeQ4_0: 2e-2, gguf.TypeQ4_1: 1.4e-2, gguf.TypeQ5_0: 4.5e-3, gguf.TypeQ5_1: 3.2e-3,
		gguf.TypeIQ4_NL: 1.4e-2, gguf.TypeIQ4_XS: 1.4e-2, gguf.TypeQ2_K: 0.22, gguf.TypeQ3_K: 6e-2, gguf.TypeQ4_K: 1.3e-2, gguf.TypeQ5_K: 3.2e-3, gguf.TypeQ6_K: 8.5e-4,
		gguf.TypeIQ3_S: 6e-2}
	var convs []*converted
	for _, typ := range allTypes {
		if _, ok := weightedNMSE[typ]; !ok {
			continue
		}
		plain := convert(t, ck, typ)
		c := convertWith(t, ck, typ, gguf.ConvertOptions{Type: typ, Imatrix: imatrix})
		if w := c.res.Warnings; len(w) != 1 || !strings.Contains(w[0], "no entry for token_embd.weight:") {
			t.Errorf("%s: warnings %v, want one naming token_embd, the only weight without importances", typ, w)
		}
		a, _ := plain.file.TensorData("blk.0.attn_q.weight")
		b, _ := c.file.TensorData("blk.0.attn_q.weight")
		if bytes.Equal(a, b) {
			t.Errorf("%s: blk.0.attn_q.weight is the same with and without the importances", typ)
		}
		checkWeights(t, ck, c, weightedNMSE[typ])
		convs = append(convs, c)
	}
	// What follows needs llama.cpp.
	node := llamaCppAvailable(t)
	prompts := tinyPrompts(t, ck.dir)
	req := llamaRequest{}
	for _, c := range convs {
		req.Models = append(req.Models, llamaModel{Path: c.path, Context: 48, Logits: prompts})
	}
	resp := runLlamaCpp(t, node, req)
	for i, c := range convs {
		t.Run(c.typ.String(), func(t *testing.T) {
			ours := nextLogProbs(t, loadRuntime(t, newGGUFWeights(c, ck.cfg), ck.cfg), prompts)
			d := llamaDiff(t, resp.Models[i].LogProbs, ours, ck.cfg.VocabSize)
			t.Logf("%s with importances: llama.cpp vs our runtime on the same weights: %v", c.typ, d)
			llamaTolerances[c.typ].check(t, "llama.cpp vs our runtime on "+c.typ.String()+" with importances", d)
		})
	}
}

// randomImatrix gives every linear weight of ck random importances
// spread over four decades (what llama-imatrix would give each column);
// token_embd has none, as in llama-imatrix's files.
func randomImatrix(ck *checkpoint) *gguf.Imatrix {
	r := rand.New(rand.NewPCG(11, 12))
	m := &gguf.Imatrix{Entries: map[string]gguf.ImatrixEntry{}}
	h, q, ff := ck.cfg.HiddenSize, ck.cfg.NumAttentionHeads*ck.cfg.HeadDim, ck.cfg.IntermediateSize
	for i := range ck.cfg.NumHiddenLayers {
		for _, w := range []struct {
			name string
			n    int
		}{{"attn_q", h}, {"attn_k", h}, {"attn_v", h}, {"attn_output", q}, {"ffn_gate", h}, {"ffn_up", h}, {"ffn_down", ff}} {
			sum2 := make([]float32, w.n)
			for j := range sum2 {
				sum2[j] = float32(math.Pow(10, 4*r.Float64()-2))
			}
			m.Entries["blk."+strconv.Itoa(i)+"."+w.name+".weight"] = gguf.ImatrixEntry{Sum2: sum2, Count: 1}
		}
	}
	return m
}

// TestQ2_K_SNeedsImatrix: Q2_K_S, which llama-quantize refuses without an
// importance matrix, is refused before anything is written, without one
// and with one that lacks a Q2_K weight's entry (named); token_embd needs
// none (llama-imatrix's files have none for it), nor does a model none of
// whose weights stays in Q2_K (stories260K's rows of 64 and 172 fall back
// to Q4_0 and F16), which llama-quantize converts without one.
func TestQ2_K_SNeedsImatrix(t *testing.T) {
	ck := openCheckpoint(t, "models/openchat-tiny")
	mix, _ := gguf.ParseMix("q2_k_s")
	m := randomImatrix(ck)
	partial := &gguf.Imatrix{Entries: maps.Clone(m.Entries)}
	delete(partial.Entries, "blk.3.ffn_up.weight")
	for _, tc := range []struct {
		imatrix *gguf.Imatrix
		want    string
	}{
		{nil, "Q2_K_S needs an importance matrix"},
		{partial, "none for blk.3.ffn_up.weight"},
	} {
		dir := t.TempDir()
		_, err := gguf.FromCheckpoint(filepath.Join(dir, "x.gguf"), ck.set, ck.cfg, ck.tok, gguf.ConvertOptions{Mix: mix, Imatrix: tc.imatrix})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("imatrix %v: %v, want an error containing %q", tc.imatrix != nil, err, tc.want)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("the refusal left %v", entries)
		}
	}
	if err := gguf.Check(openCheckpoint(t, "models/stories260K-hf-mistral").cfg, gguf.ConvertOptions{Mix: mix}); err != nil {
		t.Errorf("stories260K in Q2_K_S, no weight in Q2_K, without an importance matrix: %v", err)
	}
	c := convertWith(t, ck, gguf.TypeQ2_K, gguf.ConvertOptions{Mix: mix, Imatrix: m})
	if c.res.FileType != 21 {
		t.Errorf("file type %d, want 21 (MOSTLY_Q2_K_S)", c.res.FileType)
	}
}

// TestOutputAndEmbeddingTypes: OutputType and TokenEmbeddingType
// (llama-quantize's --output-tensor-type and --token-embedding-type) set
// those weights' types over the mix's, a tied token_embd (openchat-tiny's)
// taking TokenEmbeddingType first, then OutputType; stories260K's untied
// output and token_embd each take their own, falling back where their rows
// (64) are not whole blocks; a type Convert does not write is refused.
func TestOutputAndEmbeddingTypes(t *testing.T) {
	q8, f16, q6 := gguf.TypeQ8_0, gguf.TypeF16, gguf.TypeQ6_K
	tiny := openCheckpoint(t, "models/openchat-tiny")
	stories := openCheckpoint(t, "models/stories260K-hf-mistral")
	mix, _ := gguf.ParseMix("q4_k_m")
	q40, _ := gguf.ParseMix("q4_0")
	for _, tc := range []struct {
		name          string
		ck            *checkpoint
		mix           gguf.Mix
		out, embd     *gguf.TensorType
		wantEmbd      gguf.TensorType
		wantOut       gguf.TensorType // for an untied model
		wantFallbacks int             // of token_embd and output
	}{
		{"tied, embedding type", tiny, mix, &f16, &q8, gguf.TypeQ8_0, 0, 0},
		{"tied, output type", tiny, mix, &q8, nil, gguf.TypeQ8_0, 0, 0},
		{"tied, neither", tiny, mix, nil, nil, gguf.TypeQ6_K, 0, 0},
		{"untied, both", stories, q40, &q8, &f16, gguf.TypeF16, gguf.TypeQ8_0, 0},
		{"untied, Q6_K falls back", stories, q40, &q6, nil, gguf.TypeQ4_0, gguf.TypeQ8_0, 1},
	} {
		c := convertWith(t, tc.ck, tc.mix.Base, gguf.ConvertOptions{Mix: tc.mix, OutputType: tc.out, TokenEmbeddingType: tc.embd})
		types := map[string]gguf.TensorType{}
		for _, ti := range c.file.Tensors() {
			types[ti.Name] = ti.Type
		}
		if got := types["token_embd.weight"]; got != tc.wantEmbd {
			t.Errorf("%s: token_embd %s, want %s", tc.name, got, tc.wantEmbd)
		}
		if got, ok := types["output.weight"]; ok != (tc.wantOut != 0) || got != tc.wantOut {
			t.Errorf("%s: output %s (present %v), want %s", tc.name, got, ok, tc.wantOut)
		}
		n := 0
		for _, fb := range c.res.Fallbacks {
			if fb.Tensor == "token_embd.weight" || fb.Tensor == "output.weight" {
				n++
			}
		}
		if n != tc.wantFallbacks {
			t.Errorf("%s: fallbacks %v, want %d of token_embd and output", tc.name, c.res.Fallbacks, tc.wantFallbacks)
		}
	}
	bad := gguf.TypeTQ1_0
	if _, err := gguf.FromCheckpoint(filepath.Join(t.TempDir(), "x.gguf"), tiny.set, tiny.cfg, tiny.tok, gguf.ConvertOptions{Mix: mix, OutputType: &bad}); err == nil || !strings.Contains(err.Error(), "output tensor type TQ1_0: want F32, F16, Q4_0") {
		t.Errorf("output type TQ1_0: %v", err)
	}
}
