package gguf_test

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
)

// legacyTolerance bounds llama.cpp's next-token log-probabilities against
// our runtime on the same file's weights for the legacy and IQ4 types.
// llama.cpp multiplies Q4_0, Q5_0 and IQ4_NL weights against activations
// quantized to Q8_0 blocks, Q4_1 and Q5_1 against Q8_1 and IQ4_XS against
// Q8_K, so the error is of Q8_0's and Q4_K's size (llamaTolerances).
// Measured on openchat-tiny, worst of three prompts, max|Δlogp| / NMSE /
// KL, without | with TestLlamaCppLegacyTypes's importance matrix:
//
//	Q4_0    0.197 / 5.4e-4 / 9.6e-4  |  0.163 / 2.7e-4 / 3.8e-4
//	Q4_1    0.161 / 2.3e-4 / 4.5e-4  |  0.183 / 3.1e-4 / 4.1e-4
//	Q5_0    0.158 / 3.1e-4 / 2.3e-4  |  0.221 / 1.3e-3 / 9.9e-4
//	Q5_1    0.162 / 5.9e-4 / 1.4e-3  |  0.211 / 3.0e-4 / 4.8e-4
//	IQ4_NL  0.187 / 2.3e-4 / 9.8e-4  |  0.163 / 7.9e-4 / 4.1e-4
//	IQ4_XS  0.273 / 1.9e-3 / 4.8e-4  |  0.240 / 9.4e-4 / 8.9e-4
//
// Bounds: about 3–5× the worst, as llamaTolerances', for llama.cpp's other
// CPU kernels summing in other orders.
var legacyTolerance = tolerance{maxAbs: 0.75, nmse: 1e-2, kl: 5e-3}

// TestLlamaCppLegacyTypes: openchat-tiny converted to each of Q4_0, Q4_1,
// Q5_0, Q5_1, IQ4_NL and IQ4_XS, without and with an importance matrix,
// holds the type asked for in every 2-D weight (IQ4_XS's ffn_down, rows of
// 896, falls back to Q8_0) and llama.h's general.file_type, and llama.cpp
// computes the next-token distribution our runtime computes from the
// file's dequantized weights. A block layout that llama.cpp reads
// otherwise than we write gives a log-probability NMSE near 1.
func TestLlamaCppLegacyTypes(t *testing.T) {
	if testing.Short() {
		t.Skip("converts openchat-tiny 12 times and runs each in llama.cpp")
	}
	ck := openCheckpoint(t, "models/openchat-tiny")
	node := llamaCppAvailable(t)
	imatrix := randomImatrix(ck)
	fileTypes := map[gguf.TensorType]uint32{gguf.TypeQ4_0: 2, gguf.TypeQ4_1: 3, gguf.TypeQ5_0: 8, gguf.TypeQ5_1: 9, gguf.TypeIQ4_NL: 25, gguf.TypeIQ4_XS: 30}
	var convs []*converted
	var names []string
	for _, typ := range []gguf.TensorType{gguf.TypeQ4_0, gguf.TypeQ4_1, gguf.TypeQ5_0, gguf.TypeQ5_1, gguf.TypeIQ4_NL, gguf.TypeIQ4_XS} {
		for _, im := range []*gguf.Imatrix{nil, imatrix} {
			c := convertWith(t, ck, typ, gguf.ConvertOptions{Type: typ, Imatrix: im})
			name := typ.String()
			if im != nil {
				name += "+imatrix"
			}
			if ft, _ := c.file.Get("general.file_type"); c.res.FileType != fileTypes[typ] || ft != fileTypes[typ] {
				t.Errorf("%s: general.file_type %v (result %d), want %d", name, ft, c.res.FileType, fileTypes[typ])
			}
			for _, ti := range c.file.Tensors() {
				want := typ
				switch {
				case len(ti.Shape) == 1:
					want = gguf.TypeF32
				case typ == gguf.TypeIQ4_XS && strings.HasSuffix(ti.Name, "ffn_down.weight"):
					want = gguf.TypeQ8_0
				}
				if ti.Type != want {
					t.Errorf("%s: tensor %s: %s, want %s", name, ti.Name, ti.Type, want)
				}
			}
			convs, names = append(convs, c), append(names, name)
		}
	}
	var ref struct {
		Greedy struct {
			Prompt []int `json:"prompt_ids"`
			IDs    []int `json:"ids"`
		} `json:"greedy_fp32"`
	}
	readJSON(t, filepath.Join(ck.dir, "reference.json"), &ref)
	prompts := [][]int{ref.Greedy.Prompt, ref.Greedy.IDs[:40], {1}}
	req := llamaRequest{}
	for _, c := range convs {
		req.Models = append(req.Models, llamaModel{Path: c.path, Context: 48, Logits: prompts})
	}
	resp := runLlamaCpp(t, node, req)
	t.Logf("llama.cpp %s", resp.LlamaCpp)
	for i, c := range convs {
		t.Run(names[i], func(t *testing.T) {
			ours := nextLogProbs(t, loadRuntime(t, newGGUFWeights(c, ck.cfg), ck.cfg), prompts)
			d := llamaDiff(t, resp.Models[i].LogProbs, ours, ck.cfg.VocabSize)
			t.Logf("%s: llama.cpp vs our runtime on the same weights: %v", names[i], d)
			legacyTolerance.check(t, "llama.cpp vs our runtime on "+names[i], d)
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
