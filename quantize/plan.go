package quantize

import (
	"slices"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// HostPlan is the host memory a run needs: the bytes the driver keeps
// live at its peak, by item. Go's collector lets the heap grow to about
// twice the live bytes unless a memory limit holds it down (Peak), so
// Need, the live bytes with some slack, is what must be free.
type HostPlan struct {
	Parts []PlanPart
	Live  int64 // sum of Parts
	Need  int64 // what a run under a memory limit needs
	Peak  int64 // what a run grows to without one
}

// hostBase is the runtime, the binary, the tokenizer and what else a run
// holds regardless of the model: measured on openchat-tiny (about 60 MB),
// rounded up.
const hostBase = 96 << 20

// PlanHost sizes the host memory of a run over cfg with S samples of T
// tokens for jobs: the reference driver's activations, attention outputs,
// layer, Hessians and solver state, or (device) the device driver's host
// side. extra is what the caller holds besides (dataset, writers).
//
// workers is the number of samples the reference driver runs at once (the
// CPU backend's threads): each has its own forward scratch and may hold a
// sample's intermediates while they wait to be folded.
func PlanHost(cfg *hfconfig.Config, S, T, workers int, jobs []Job, device bool, extra []PlanPart) *HostPlan {
	p := &HostPlan{}
	add := func(what string, n int64) {
		if n > 0 {
			p.Parts = append(p.Parts, PlanPart{what, n})
		}
	}
	h, q, kv, I := int64(cfg.HiddenSize), int64(cfg.NumAttentionHeads*cfg.HeadDim), int64(cfg.NumKeyValueHeads*cfg.HeadDim), int64(cfg.IntermediateSize)
	V := int64(cfg.VocabSize)
	mlp := mlpSizes(cfg)
	layerParams := h*(q+2*kv) + q*h + mlp.params + 2*h
	rows := int64(S) * int64(T)
	gptqJobs := 0
	for _, j := range jobs {
		if !j.RTN {
			gptqJobs++
		}
	}
	add("runtime", hostBase)
	add("sample ids", rows*9)
	// Converting the embedding for the checkpoint (f32 then f16).
	embedConv := V * h * 6
	if device {
		// Layers are staged through host fp32 on their way to the device;
		// activations and Hessians live on the device.
		add("layer staging", layerParams*4*2)
		add("embedding conversion", embedConv)
	} else {
		if gptqJobs > 0 {
			acts := rows * h * 4
			if gptqJobs > 1 {
				acts *= 2 // the shared layer-0 inputs and the job's own copy
			}
			add("activations", acts)
			add("attention outputs", rows*q*4)
			// The widest Hessian in float64, the Gram products in fp32
			// (host and backend; one per input of a group: every expert's
			// at once), layer 0's shared Hessian.
			grams := 2 * (I*int64(T)*4 + I*I*4)
			if mlp.grams > 0 {
				W := mlp.gramWidth
				grams = max(grams, mlp.grams*2*(W*int64(T)*4+W*W*4))
			}
			add("Hessians", mlp.group*8+grams+h*h*8)
			// Each worker's forward scratch, and the intermediates of up to
			// two samples per worker waiting for the fold.
			w := int64(max(1, min(workers, S)))
			add("forward scratch", w*int64(T)*(6*h+2*q+4*kv+3*I+mlp.scratch)*4)
			add("intermediates awaiting the fold", 2*w*int64(T)*(2*h+q+I+mlp.row)*4)
		}
		// The layer in fp32 and its quantized results (codes and weights).
		add("layer", layerParams*4+layerParams*5)
		// The largest solve: weights in float64, codes, H and its inverse.
		var solve int64
		for _, m := range mlp.modules {
			K, N, _ := model.LinearShape(cfg, m)
			solve = max(solve, int64(N)*int64(K)*14+2*int64(K)*int64(K)*8)
		}
		add("GPTQ solve", solve)
		add("embedding conversion", max(0, embedConv-rows*h*4)) // before the activations exist
	}
	p.Parts = append(p.Parts, extra...)
	for _, part := range p.Parts {
		p.Live += part.Bytes
	}
	p.Need = p.Live + p.Live/8
	p.Peak = 2*(p.Live-hostBase) + hostBase
	return p
}

// mlpPlan sizes a layer's MLP for the plans: the parameters of its largest
// layer's (a sparse layer's router and experts, and shared expert), the widest group's
// Hessian elements (the dense MLP's intermediate_size², or every expert's
// input or SwiGLU output at once), the values a row's expert intermediates
// add (each expert's zero-padded input and output), the values a row's
// layer scratch adds (the router's logits, the experts' stack of TopK rows
// a row, the padded buffers, the TopK routing weights last), the Gram products a
// group holds at once (one an expert) and their widest width, and the
// distinct Linear modules of the layers (for the largest solve).
type mlpPlan struct {
	params, group, row, scratch int64
	grams, gramWidth            int64
	modules                     []string
}

func mlpSizes(cfg *hfconfig.Config) mlpPlan {
	h, I := int64(cfg.HiddenSize), int64(cfg.IntermediateSize)
	p := mlpPlan{params: 3 * h * I, group: I * I, modules: model.LinearModules}
	if m := cfg.MoE; m != nil {
		E, ES := int64(m.Experts), int64(m.ExpertSize)
		p.params = max(p.params, E*h+3*E*h*ES)
		p.group = max(p.group, E*max(h*h, ES*ES))
		p.row = E * (h + ES)
		K := int64(m.TopK)
		p.scratch = E + (2*K+1)*h + (2*K+1)*ES + K
		p.grams, p.gramWidth = E, max(h, ES)
		ex := m.ExpertModules(0)
		p.modules = append(slices.Clone(model.LinearModules), ex[:]...)
		if S := int64(m.SharedSize); S > 0 {
			// Qwen2-MoE's shared expert: its Linears and gate, its
			// SwiGLU output's Gram beside the experts' (its input's is
			// ffn_norm's, one more of h²), its gate/up products and
			// logit in the scratch.
			p.params += 3*h*S + h
			p.group = max(p.group, E*max(h*h, ES*ES)+max(h*h, S*S))
			p.row += S
			p.scratch += 2*S + 1
			p.grams, p.gramWidth = E+1, max(h, ES, S)
			sh := m.SharedModules()
			p.modules = append(p.modules, sh[:]...)
		}
	}
	return p
}
