package gguf_test

import (
	"bytes"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
)

// k23Tolerances bounds llama.cpp's next-token log-probabilities on the
// Q2_K and Q3_K files against our runtime on the same weights
// (llamaTolerances' measure): llama.cpp multiplies these blocks against
// activations quantized to Q8_K, ffn_down's Q8_0 against Q8_0 blocks.
// Measured, worst prompt (max|Δlogp| / NMSE / KL): Q2_K 0.30 / 3.1e-4 /
// 1.6e-3, with the importances 0.19 / 4.4e-4 / 1.3e-3; Q3_K 0.21 /
// 6.6e-4 / 1.2e-3, with them 0.21 / 2.4e-4 / 6.1e-4. (Our decoding with
// the quarters' shifts of qs and bits of hmask in reverse order gave NMSE
// 3–6, max|Δlogp| 20, and no argmax agreeing.)
// Bounds: 3–5×, as llamaTolerances'.
var k23Tolerances = map[gguf.TensorType]tolerance{
	gguf.TypeQ2_K: {1.2, 2e-3, 6e-3},
	gguf.TypeQ3_K: {0.8, 3e-3, 5e-3},
}

// k23WeightNMSE bounds the worst tensor's NMSE against the checkpoint.
// Measured (token_embd): Q2_K 0.094, with the importances 0.123 (they
// weigh some columns 10⁴ times others, which costs plain NMSE); Q3_K
// 0.025, with them 0.030. Bounds: about 2×.
var k23WeightNMSE = map[gguf.TensorType]float64{gguf.TypeQ2_K: 0.25, gguf.TypeQ3_K: 0.06}

// TestLlamaCppQ2_KQ3_K: openchat-tiny converted with Type Q2_K and Q3_K,
// without and with an importance matrix (llama-quantize's _ref and _impl
// quantizers), holds every 2-D weight in that type (the tied token_embd
// included) but ffn_down, whose rows of 896 fall back to Q8_0, under
// general.file_type 10 (MOSTLY_Q2_K) or 11 (MOSTLY_Q3_K_S); and
// llama.cpp's next-token log-probabilities on each file match our runtime
// on the file's dequantized weights, so that only llama.cpp's reading and
// arithmetic differ: a misread block would give NMSE near 1.
func TestLlamaCppQ2_KQ3_K(t *testing.T) {
	ck := openCheckpoint(t, "models/openchat-tiny")
	var convs []*converted
	var names []string
	for _, typ := range []gguf.TensorType{gguf.TypeQ2_K, gguf.TypeQ3_K} {
		plain := convert(t, ck, typ)
		// Importances over four decades for every 2-D weight (the mean
		// squares of an imatrix of one token).
		r := rand.New(rand.NewPCG(uint64(typ), 5))
		m := &gguf.Imatrix{Entries: map[string]gguf.ImatrixEntry{}}
		for _, ct := range plain.res.Tensors {
			if len(ct.Shape) == 2 {
				e := gguf.ImatrixEntry{Sum2: make([]float32, ct.Shape[1]), Count: 1}
				for j := range e.Sum2 {
					e.Sum2[j] = float32(math.Pow(10, 4*r.Float64()-2))
				}
				m.Entries[ct.Name] = e
			}
		}
		weighted := convertWith(t, ck, typ, gguf.ConvertOptions{Type: typ, Imatrix: m})
		convs = append(convs, plain, weighted)
		names = append(names, typ.String(), typ.String()+" with importances")

		wantFT := map[gguf.TensorType]uint32{gguf.TypeQ2_K: 10, gguf.TypeQ3_K: 11}[typ]
		for _, c := range []*converted{plain, weighted} {
			if ft, _ := c.file.Get("general.file_type"); c.res.FileType != wantFT || ft != wantFT {
				t.Errorf("%s: general.file_type %v (result %d), want %d", typ, ft, c.res.FileType, wantFT)
			}
			checkWeights(t, ck, c, k23WeightNMSE[typ])
			if len(c.res.Warnings) > 0 {
				t.Errorf("%s: warnings %v", typ, c.res.Warnings)
			}
			for _, ti := range c.file.Tensors() {
				want := typ
				switch {
				case len(ti.Shape) == 1:
					want = gguf.TypeF32
				case strings.HasSuffix(ti.Name, "ffn_down.weight"):
					want = gguf.TypeQ8_0
				}
				if ti.Type != want {
					t.Errorf("%s: tensor %s: %s, want %s", typ, ti.Name, ti.Type, want)
				}
			}
		}
		a, _ := plain.file.TensorData("blk.0.attn_q.weight")
		b, _ := weighted.file.TensorData("blk.0.attn_q.weight")
		if bytes.Equal(a, b) {
			t.Errorf("%s: blk.0.attn_q.weight is the same with and without the importances", typ)
		}
	}
	var ref struct {
		Greedy struct {
			Prompt []int `json:"prompt_ids"`
			IDs    []int `json:"ids"`
		} `json:"greedy_fp32"`
	}
	// The files' types need no llama.cpp; what follows does.
	node := llamaCppAvailable(t)
	readJSON(t, filepath.Join(ck.dir, "reference.json"), &ref)
	prompts := [][]int{ref.Greedy.Prompt, ref.Greedy.IDs[:40], {1}}
	req := llamaRequest{}
	for _, c := range convs {
		req.Models = append(req.Models, llamaModel{Path: c.path, Context: 48, Logits: prompts})
	}
	resp := runLlamaCpp(t, node, req)
	t.Logf("llama.cpp %s", resp.LlamaCpp)
	for i, c := range convs {
		ours := nextLogProbs(t, loadRuntime(t, newGGUFWeights(c, ck.cfg), ck.cfg), prompts)
		d := llamaDiff(t, resp.Models[i].LogProbs, ours, ck.cfg.VocabSize)
		t.Logf("%s: llama.cpp vs our runtime on the same weights: %v", names[i], d)
		k23Tolerances[c.typ].check(t, "llama.cpp vs our runtime on "+names[i], d)
	}
}
