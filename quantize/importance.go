package quantize

import (
	"context"
	"fmt"
	"strings"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
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
	// Samples counts the samples run (imatrix.chunk_count), SeqLen is
	// their length (imatrix.chunk_size).
	Samples, SeqLen int
}

// CollectImportance runs every sample through m, unquantized, and sums the
// squares of each Linear's input features over the samples' real tokens
// (padding, which a record-mode sample holds at its end, is left out). A
// Linear's input is the intermediate model.Linears names (q/k/v share the
// attention norm's output, gate/up the MLP norm's). The sums of a sample
// are formed where the activations live (runtime.ColumnSquares: on the
// device, cols float64 values come back for each intermediate) and added up
// across samples in float64. progress, when set, is called after each
// sample. A model CheckImportance refuses is refused before any sample
// runs.
func CollectImportance(ctx context.Context, m *model.Model, samples []Sample, progress func(done, total int)) (*Importance, error) {
	if err := CheckImportance(m.Config); err != nil {
		return nil, fmt.Errorf("importance: %w", err)
	}
	imp := &Importance{Sum2: map[string][]float64{}, Samples: len(samples)}
	// modules maps an intermediate's hook suffix to the Linears it feeds.
	modules := map[string][]string{}
	for _, l := range model.Linears {
		modules[l.Input] = append(modules[l.Input], l.Name)
	}
	b := m.Backend()
	tap := func(name string, x runtime.Tensor) error {
		rest, ok := strings.CutPrefix(name, "model.layers.")
		if !ok {
			return nil
		}
		layer, inter, ok := strings.Cut(rest, ".")
		if !ok || modules[inter] == nil {
			return nil
		}
		sums, err := runtime.ColumnSquares(b, x)
		if err != nil {
			return err
		}
		for _, mod := range modules[inter] {
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

// CheckImportance refuses a config whose importance matrix
// CollectImportance cannot form: a mixture-of-experts model
// (hfconfig.Config.MoE), whose experts each read only the tokens routed to
// them (llama.cpp sums those per expert, under its merged ffn_*_exps
// tensors). The error names the config file and its model_type.
func CheckImportance(cfg *hfconfig.Config) error {
	if cfg.MoE == nil {
		return nil
	}
	return fmt.Errorf("%s: model_type %s: importance matrices of mixture-of-experts models are not supported", cfg.File, cfg.ModelType)
}
