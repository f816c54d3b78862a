package quantize

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// Sample is one calibration sequence. Mask, when not nil, marks real tokens
// (true) and padding (false); padding never enters a Hessian.
type Sample struct {
	IDs  []int
	Mask []bool
}

// moduleGroups returns the Linear modules of a Mistral/Llama layer in the
// order they are quantized (spec §4.5): with true_sequential each group is
// quantized after the previous ones, seeing their quantized outputs.
func moduleGroups(trueSequential bool) [][]string {
	if trueSequential {
		return [][]string{
			{"self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"},
			{"self_attn.o_proj"},
			{"mlp.up_proj", "mlp.gate_proj"},
			{"mlp.down_proj"},
		}
	}
	return [][]string{{
		"self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj", "self_attn.o_proj",
		"mlp.up_proj", "mlp.gate_proj", "mlp.down_proj",
	}}
}

// ModuleResult is one quantized Linear of one layer.
type ModuleResult struct {
	Layer  int
	Module string // e.g. "self_attn.q_proj"
	*Result
	Seconds float64
}

// Name is the HF module name, e.g. "model.layers.3.self_attn.q_proj".
func (m ModuleResult) Name() string { return fmt.Sprintf("model.layers.%d.%s", m.Layer, m.Module) }

// Job is one quantization recipe run by the driver: the GPTQ options, the
// module grouping and where the quantized layers go.
type Job struct {
	Name           string // branch name, used in logs
	GPTQ           Options
	TrueSequential bool
	// RTN quantizes with plain round-to-nearest (the same quantizer and
	// layout, no Hessian, no error feedback): the baseline GPTQ is measured
	// against.
	RTN bool
	// Layer receives the quantized modules of one layer once the whole layer
	// is done (modules in LinearModules order).
	Layer func(layer int, modules []ModuleResult) error
	// Done is called once the last layer has been handed to Layer, with the
	// seconds the job took. May be nil.
	Done func(seconds float64) error
}

// DriverOptions configure Run.
type DriverOptions struct {
	Log io.Writer // per-module losses and warnings; nil = discard
	// Progress is called after each module with the job name, the number of
	// modules done and the total (for progress bars). May be nil.
	Progress func(job string, done, total int)
}

// Run quantizes every layer of a checkpoint for each job, layer by layer
// (spec §4.5): it embeds the calibration samples once (shared by all jobs),
// then for each job and layer loads the layer, accumulates the Hessians of
// each module group's inputs while running the samples through it, quantizes
// the group, and continues with the quantized weights so that later groups
// and the next layer see the quantized layer's outputs. Memory holds one
// layer plus the calibration activations.
func Run(ctx context.Context, w model.Weights, cfg *hfconfig.Config, b runtime.Backend, samples []Sample, jobs []Job, opts DriverOptions) error {
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	for _, j := range jobs {
		if err := j.GPTQ.Validate(cfg.HiddenSize); err != nil {
			return fmt.Errorf("quantize: job %s: %w", j.Name, err)
		}
		if len(samples) == 0 && !j.RTN {
			return fmt.Errorf("quantize: job %s: GPTQ needs calibration samples", j.Name)
		}
	}
	// The layer-0 inputs are the same for every job: embed once.
	embedded := make([][]float32, len(samples))
	for s, smp := range samples {
		x, err := model.Embed(w, cfg, smp.IDs)
		if err != nil {
			return fmt.Errorf("quantize: embedding sample %d: %w", s, err)
		}
		embedded[s] = x
	}
	// The Hessian of layer 0's first group is the same for every job too.
	shared := map[string]*Hessian{}
	for _, j := range jobs {
		if err := runJob(ctx, w, cfg, b, samples, embedded, j, shared, log, opts.Progress); err != nil {
			return fmt.Errorf("quantize: %s: %w", j.Name, err)
		}
	}
	return nil
}

func runJob(ctx context.Context, w model.Weights, cfg *hfconfig.Config, b runtime.Backend, samples []Sample, embedded [][]float32, j Job, shared map[string]*Hessian, log io.Writer, progress func(string, int, int)) error {
	start := time.Now()
	xs := make([][]float32, len(embedded))
	for s := range embedded {
		xs[s] = append([]float32(nil), embedded[s]...)
	}
	groups := moduleGroups(j.TrueSequential)
	total := cfg.NumHiddenLayers * len(model.LinearModules)
	done := 0
	for li := 0; li < cfg.NumHiddenLayers; li++ {
		layer, err := model.LoadLayer(w, cfg, li, b)
		if err != nil {
			return err
		}
		results := map[string]ModuleResult{}
		for gi, group := range groups {
			if err := ctx.Err(); err != nil {
				layer.Free()
				return err
			}
			inputs := map[string]*Hessian{}
			for _, m := range group {
				inputs[model.LinearInput(m)] = nil
			}
			// Only layer 0's first group sees inputs that no job has changed yet.
			cacheable := li == 0 && gi == 0
			missing := false
			if j.RTN {
				if err := quantizeGroupRTN(layer, cfg, li, group, j, results, log); err != nil {
					layer.Free()
					return err
				}
				done += len(group)
				if progress != nil {
					progress(j.Name, done, total)
				}
				continue
			}
			for name := range inputs {
				if h, ok := shared[name]; cacheable && ok {
					inputs[name] = h
				} else {
					missing = true
				}
			}
			if missing {
				hs, err := collectHessians(ctx, layer, li, xs, samples, inputs, cfg)
				if err != nil {
					layer.Free()
					return err
				}
				for name, h := range hs {
					inputs[name] = h
					if cacheable {
						shared[name] = h
					}
				}
			}
			for _, m := range group {
				start := time.Now()
				wt := layer.Weight(m)
				h := inputs[model.LinearInput(m)]
				K := h.K
				N := len(wt) / K
				name := fmt.Sprintf("model.layers.%d.%s", li, m)
				res, err := GPTQ(wt, N, K, h, j.GPTQ, prefixWriter{log, name})
				if err != nil {
					layer.Free()
					return fmt.Errorf("%s: %w", name, err)
				}
				if err := layer.SetWeight(m, res.W); err != nil {
					layer.Free()
					return fmt.Errorf("%s: %w", name, err)
				}
				secs := time.Since(start).Seconds()
				fmt.Fprintf(log, "%s %s: loss %.6g damp %.3g %.2fs\n", j.Name, name, res.Loss, res.Damp, secs)
				results[m] = ModuleResult{Layer: li, Module: m, Result: res, Seconds: secs}
				done++
				if progress != nil {
					progress(j.Name, done, total)
				}
			}
		}
		// Re-run the quantized layer: its outputs are the next layer's inputs.
		// Round to nearest needs no activations.
		for s := range xs {
			if j.RTN {
				break
			}
			out, err := layer.Forward(xs[s], nil)
			if err != nil {
				layer.Free()
				return fmt.Errorf("layer %d: %w", li, err)
			}
			xs[s] = out
		}
		layer.Free()
		ordered := make([]ModuleResult, 0, len(model.LinearModules))
		for _, m := range model.LinearModules {
			ordered = append(ordered, results[m])
		}
		if j.Layer != nil {
			if err := j.Layer(li, ordered); err != nil {
				return err
			}
		}
	}
	if j.Done != nil {
		return j.Done(time.Since(start).Seconds())
	}
	return nil
}

// collectHessians runs every sample through the layer and accumulates, for
// each intermediate named in want, the Hessian of that Linear input.
func collectHessians(ctx context.Context, layer *model.Layer, li int, xs [][]float32, samples []Sample, want map[string]*Hessian, cfg *hfconfig.Config) (map[string]*Hessian, error) {
	hs := map[string]*Hessian{}
	prefix := fmt.Sprintf("model.layers.%d.", li)
	var mask []bool
	hook := func(name string, x []float32, rows, cols int) {
		if len(name) <= len(prefix) || name[:len(prefix)] != prefix {
			return
		}
		inter := name[len(prefix):]
		if _, ok := want[inter]; !ok {
			return
		}
		h := hs[inter]
		if h == nil {
			h = NewHessian(cols)
			hs[inter] = h
		}
		if mask != nil {
			h.AddMasked(x, rows, mask)
		} else {
			h.Add(x, rows)
		}
	}
	stop := lastIntermediate(want)
	for s := range xs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		mask = samples[s].Mask
		if _, err := layer.ForwardUntil(xs[s], stop, hook); err != nil {
			return nil, fmt.Errorf("layer %d: %w", li, err)
		}
	}
	for inter := range want {
		if hs[inter] == nil {
			return nil, fmt.Errorf("layer %d: the model never produced intermediate %q", li, inter)
		}
	}
	_ = cfg
	return hs, nil
}

// lastIntermediate is the latest (in forward order) of the intermediates in
// want, so the forward pass can stop once it has been produced.
func lastIntermediate(want map[string]*Hessian) string {
	last, pos := "", -1
	for name := range want {
		for i, n := range model.Intermediates {
			if n == name && i > pos {
				last, pos = n, i
			}
		}
	}
	return last
}

// prefixWriter prefixes each write with a module name, so the GPTQ core's
// messages (damp retries) say which module they concern.
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := fmt.Fprintf(p.w, "%s: %s", p.prefix, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// quantizeGroupRTN rounds each module of a group to nearest.
func quantizeGroupRTN(layer *model.Layer, cfg *hfconfig.Config, li int, group []string, j Job, results map[string]ModuleResult, log io.Writer) error {
	for _, m := range group {
		start := time.Now()
		wt := layer.Weight(m)
		K, N, _ := model.LinearShape(cfg, m)
		name := fmt.Sprintf("model.layers.%d.%s", li, m)
		res, err := RTN(wt, N, K, j.GPTQ)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := layer.SetWeight(m, res.W); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		secs := time.Since(start).Seconds()
		fmt.Fprintf(log, "%s %s: round to nearest %.2fs\n", j.Name, name, secs)
		results[m] = ModuleResult{Layer: li, Module: m, Result: res, Seconds: secs}
	}
	return nil
}
