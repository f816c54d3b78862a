package model

import (
	"slices"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
)

// Linear describes one Linear module of a Mistral/Llama decoder layer: the
// one table the model, the GPTQ driver, the checkpoint writer and the
// format check read (shapes come from the config through LinearShape).
type Linear struct {
	// Name is the module name under model.layers.<i>, e.g. "self_attn.q_proj".
	Name string
	// Input is the intermediate (see Intermediates) that feeds the module.
	Input string
	// Group is the true-sequential group (spec §4.5): GPTQ quantizes the
	// groups in order, each seeing the quantized outputs of the earlier ones;
	// the modules of a group share one input and so one Hessian.
	Group int
	// Order is the module's place inside its group in the reference's
	// quantization order (REF llama.py: k, v, q; up, gate).
	Order int
	// Fused names the module that vLLM (and SGLang) fuse this one into, its
	// packed_modules_mapping: one weight for q/k/v ("self_attn.qkv_proj")
	// and for gate/up ("mlp.gate_up_proj"), which must be quantized all
	// alike. "" for a module loaded on its own.
	Fused string
}

// Linears lists the Linear modules in execution order (LinearModules).
var Linears = []Linear{
	{Name: "self_attn.q_proj", Input: "attn_norm", Group: 0, Order: 2, Fused: "self_attn.qkv_proj"},
	{Name: "self_attn.k_proj", Input: "attn_norm", Group: 0, Order: 0, Fused: "self_attn.qkv_proj"},
	{Name: "self_attn.v_proj", Input: "attn_norm", Group: 0, Order: 1, Fused: "self_attn.qkv_proj"},
	{Name: "self_attn.o_proj", Input: "attn_out", Group: 1, Order: 0},
	{Name: "mlp.gate_proj", Input: "ffn_norm", Group: 2, Order: 1, Fused: "mlp.gate_up_proj"},
	{Name: "mlp.up_proj", Input: "ffn_norm", Group: 2, Order: 0, Fused: "mlp.gate_up_proj"},
	{Name: "mlp.down_proj", Input: "ffn_act", Group: 3, Order: 0},
}

// LinearModules are the Linear modules of a decoder layer, in execution
// order, named as in the checkpoint under model.layers.<i>.
var LinearModules = func() []string {
	out := make([]string, len(Linears))
	for i, l := range Linears {
		out[i] = l.Name
	}
	return out
}()

// LinearInput returns the intermediate (hook name suffix after
// "model.layers.<i>.") that feeds the given Linear module, or "" for an
// unknown module.
func LinearInput(module string) string {
	for _, l := range Linears {
		if l.Name == module {
			return l.Input
		}
	}
	return ""
}

// ModuleGroups returns the Linear modules in the order GPTQ quantizes them
// (spec §4.5), grouped: with trueSequential one group per Linear.Group, each
// quantized after the previous ones; without, one group of all seven in
// the reference's order.
func ModuleGroups(trueSequential bool) [][]string {
	var groups [][]string
	for _, l := range Linears {
		for len(groups) <= l.Group {
			groups = append(groups, nil)
		}
	}
	for g := range groups {
		var mods []Linear
		for _, l := range Linears {
			if l.Group == g {
				mods = append(mods, l)
			}
		}
		ordered := make([]string, len(mods))
		for _, l := range mods {
			ordered[l.Order] = l.Name
		}
		groups[g] = ordered
	}
	if trueSequential {
		return groups
	}
	var all []string
	for _, g := range groups {
		all = append(all, g...)
	}
	return [][]string{all}
}

// LayerLinears lists decoder layer li's Linear modules in execution order:
// Linears in a dense layer; in a mixture-of-experts layer
// (hfconfig.Config.Sparse) the attention's four, then each expert's gate,
// up and down (hfconfig.MoE.ExpertModules), whose inputs are ExpertInput
// and ExpertAct: the rows of the tokens the router sends that expert, then
// a shared expert's gate, up and down (hfconfig.MoE.SharedModules: every
// row's ffn_norm, and SharedAct). The router itself (hfconfig.MoE.RouterName)
// and a shared expert's gate are no Linears of this list: they stay in
// floating point, as GPTQModel and vLLM keep them.
func LayerLinears(cfg *hfconfig.Config, li int) []Linear {
	if !cfg.Sparse(li) {
		return Linears
	}
	out := slices.Clone(Linears[:oProj+1])
	// (A shared expert's modules come first in their groups, as the
	// reference quantizes them: up, gate, then every expert's.)
	sh := 0
	if cfg.MoE.SharedSize > 0 {
		sh = 1
	}
	for e := range cfg.MoE.Experts {
		m := cfg.MoE.ExpertModules(e)
		in, act := ExpertInput(cfg.MoE, e), ExpertAct(cfg.MoE, e)
		out = append(out,
			Linear{Name: m[0], Input: in, Group: 2, Order: 2*(e+sh) + 1},
			Linear{Name: m[1], Input: in, Group: 2, Order: 2 * (e + sh)},
			Linear{Name: m[2], Input: act, Group: 3, Order: e + sh})
	}
	if sh > 0 {
		m := cfg.MoE.SharedModules()
		out = append(out,
			Linear{Name: m[0], Input: "ffn_norm", Group: 2, Order: 1, Fused: cfg.MoE.Block + ".shared_expert.gate_up_proj"},
			Linear{Name: m[1], Input: "ffn_norm", Group: 2, Order: 0, Fused: cfg.MoE.Block + ".shared_expert.gate_up_proj"},
			Linear{Name: m[2], Input: SharedAct(cfg.MoE), Group: 3, Order: 0})
	}
	return out
}

// LayerModules is the names of LayerLinears(cfg, li).
func LayerModules(cfg *hfconfig.Config, li int) []string {
	if !cfg.Sparse(li) {
		return LinearModules
	}
	ls := LayerLinears(cfg, li)
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Name
	}
	return out
}

// LayerModuleGroups is ModuleGroups for decoder layer li of cfg: the same
// four groups in a dense layer; in a mixture-of-experts layer the third
// group is every expert's up and gate (in the reference's order within an
// expert, expert by expert) and the fourth every expert's down, each
// expert's modules reading its own input (LayerLinears). Without
// trueSequential, one group of all of them.
func LayerModuleGroups(cfg *hfconfig.Config, li int, trueSequential bool) [][]string {
	if !cfg.Sparse(li) {
		return ModuleGroups(trueSequential)
	}
	var groups [][]string
	for _, l := range LayerLinears(cfg, li) {
		for len(groups) <= l.Group {
			groups = append(groups, nil)
		}
		groups[l.Group] = append(groups[l.Group], "")
	}
	for _, l := range LayerLinears(cfg, li) {
		groups[l.Group][l.Order] = l.Name
	}
	if trueSequential {
		return groups
	}
	return [][]string{slices.Concat(groups...)}
}

// LayerInputs maps each Linear module of decoder layer li of cfg to the
// intermediate that feeds it (LayerLinears' Input), for drivers that look
// up many modules of a layer (a mixture of experts has hundreds).
func LayerInputs(cfg *hfconfig.Config, li int) map[string]string {
	ls := LayerLinears(cfg, li)
	out := make(map[string]string, len(ls))
	for _, l := range ls {
		out[l.Name] = l.Input
	}
	return out
}
