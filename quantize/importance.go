package quantize

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// Importance is what an importance matrix (llama.cpp's imatrix) holds: for
// each Linear weight ("model.layers.0.self_attn.q_proj.weight"), the sum
// over the calibration tokens of each input feature's square, and the
// token count.
type Importance struct {
	Sum2   map[string][]float64
	Tokens int64
	// Counts holds the tokens of the sums that are over fewer than Tokens:
	// a mixture of experts' experts, each over the tokens routed to it (by
	// weight name, as Sum2).
	Counts map[string]int64
	// Samples counts the samples run (imatrix.chunk_count), SeqLen is
	// their length (imatrix.chunk_size).
	Samples, SeqLen int
}

// CollectImportance runs every sample through m, unquantized, and sums the
// squares of each Linear's input features over the samples' real tokens
// (padding, which a record-mode sample holds at its end, is left out). A
// Linear's input is the intermediate model.Linears names (q/k/v share the
// attention norm's output, gate/up the MLP norm's). A mixture of experts'
// expert sums over the tokens routed to it, as llama-imatrix does: its
// gate/up from its input (model.ExpertInput, zeros in the other tokens'
// rows), its down from its SwiGLU output (model.ExpertAct), each counted
// in Counts (model.Model.ExpertRows). The sums of a sample are formed
// where the activations live (runtime.ColumnSquares: on the device, cols
// float64 values come back for each intermediate) and added up across
// samples in float64. progress, when set, is called after each sample.
func CollectImportance(ctx context.Context, m *model.Model, samples []Sample, progress func(done, total int)) (*Importance, error) {
	imp := &Importance{Sum2: map[string][]float64{}, Counts: map[string]int64{}, Samples: len(samples)}
	// modules maps each layer's intermediates (hook suffixes) to the
	// Linears they feed (model.LayerLinears: a sparse layer's experts').
	modules := make([]map[string][]string, m.Config.NumHiddenLayers)
	for li := range modules {
		modules[li] = map[string][]string{}
		for _, l := range model.LayerLinears(m.Config, li) {
			modules[li][l.Input] = append(modules[li][l.Input], l.Name)
		}
	}
	b := m.Backend()
	var rows []int // the current sparse layer's rows routed to each expert
	tap := func(name string, x runtime.Tensor) error {
		rest, ok := strings.CutPrefix(name, "model.layers.")
		if !ok {
			return nil
		}
		layer, inter, ok := strings.Cut(rest, ".")
		li, err := strconv.Atoi(layer)
		if !ok || err != nil || li < 0 || li >= len(modules) {
			return nil
		}
		mods := modules[li][inter]
		if e, act, expert := model.ExpertOf(m.Config.MoE, inter); expert {
			if e == 0 && !act {
				rows = m.ExpertRows()
			}
			if e >= len(rows) {
				return fmt.Errorf("layer %d: expert %d's rows not counted", li, e)
			}
			for _, mod := range mods {
				imp.Counts["model.layers."+layer+"."+mod+".weight"] += int64(rows[e])
			}
		}
		if mods == nil {
			return nil
		}
		sums, err := runtime.ColumnSquares(b, x)
		if err != nil {
			return err
		}
		for _, mod := range mods {
			key := "model.layers." + layer + "." + mod + ".weight"
			acc := imp.Sum2[key]
			if acc == nil {
				acc = make([]float64, len(sums))
				imp.Sum2[key] = acc
			}
			for j, v := range sums {
				acc[j] += v
			}
		}
		return nil
	}
	for s, smp := range samples {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := len(smp.IDs)
		for n > 0 && smp.Mask != nil && !smp.Mask[n-1] {
			n--
		}
		imp.SeqLen = max(imp.SeqLen, len(smp.IDs))
		if n == 0 {
			continue
		}
		m.ExpertRows() // (what earlier passes of m counted)
		if err := m.Observe(smp.IDs[:n], tap); err != nil {
			return nil, fmt.Errorf("importance: sample %d: %w", s, err)
		}
		imp.Tokens += int64(n)
		if progress != nil {
			progress(s+1, len(samples))
		}
	}
	return imp, nil
}
