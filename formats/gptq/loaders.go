package gptq

import (
	"fmt"
	"slices"
	"strings"
)

// LinearShape names one quantized Linear and its shape (K in, N out), for
// Loaders' per-tensor checks.
type LinearShape struct {
	Name string
	K, N int
}

// LoaderSupport says whether one loader can run a checkpoint. Reason is short
// and concrete: why not, or a caveat (kernel chosen, dtype) when OK.
type LoaderSupport struct {
	Loader string `json:"loader"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason"`
}

// LoaderNames lists the loaders Loaders reports on, in its order (spec §3).
var LoaderNames = []string{
	"transformers/optimum", "AutoGPTQ", "GPTQModel", "ExLlama v1", "ExLlamaV2",
	"vLLM gptq", "vLLM gptq_marlin", "TGI",
}

// Loaders evaluates the loader table of spec §3 for a config and the shapes
// of its quantized Linears (single GPU: no tensor-parallel partitioning).
// It returns one entry per name in LoaderNames, in that order.
func Loaders(c QuantizeConfig, shapes []LinearShape) []LoaderSupport {
	v2 := c.Format() == FormatV2
	bits := c.Bits
	gs := c.GroupSize
	inSet := func(v int, set ...int) bool {
		for _, s := range set {
			if v == s {
				return true
			}
		}
		return false
	}
	// firstShape returns the first shape failing ok, formatted for a reason.
	firstShape := func(ok func(s LinearShape) bool) (string, bool) {
		for _, s := range shapes {
			if !ok(s) {
				return fmt.Sprintf("%s [K=%d, N=%d]", s.Name, s.K, s.N), false
			}
		}
		return "", true
	}
	groupsDivideK := func(s LinearShape) bool { return gs == -1 || s.K%gs == 0 }

	var out []LoaderSupport
	add := func(name string, ok bool, reason string) {
		out = append(out, LoaderSupport{Loader: name, OK: ok, Reason: reason})
	}
	if err := c.Validate(); err != nil {
		for _, n := range LoaderNames {
			add(n, false, err.Error())
		}
		return out
	}

	// transformers/optimum: runs on AutoGPTQ's or GPTQModel's kernels.
	switch {
	case bits == 4:
		add(LoaderNames[0], true, "exllama kernel")
	default:
		add(LoaderNames[0], true, fmt.Sprintf("%d-bit: no exllama kernel, slower cuda/torch kernel", bits))
	}

	// AutoGPTQ: cuda kernels take 2/3/4/8; exllama 4-bit; marlin needs sym, !desc_act.
	switch {
	case !c.Sym && !v2:
		add(LoaderNames[1], true, "asym v1: zero points of 0 are corrupted by the zero-1 storage")
	case bits == 4:
		add(LoaderNames[1], true, "exllama kernel")
	default:
		add(LoaderNames[1], true, fmt.Sprintf("%d-bit: cuda kernel", bits))
	}

	// GPTQModel v2.2.0: torch kernel takes 2/3/4/8; group size limited.
	if !inSet(gs, -1, 16, 32, 64, 128) {
		add(LoaderNames[2], false, fmt.Sprintf("group size %d: GPTQModel kernels take -1, 16, 32, 64, 128", gs))
	} else if bits == 4 {
		add(LoaderNames[2], true, "exllama kernel")
	} else {
		add(LoaderNames[2], true, fmt.Sprintf("%d-bit: torch kernel", bits))
	}

	// ExLlama v1 and v2: 4-bit only.
	exReason := func(name string) (bool, string) {
		if bits != 4 {
			return false, fmt.Sprintf("%d-bit: %s loads 4-bit only", bits, name)
		}
		if where, ok := firstShape(groupsDivideK); !ok {
			return false, fmt.Sprintf("%s: group size %d does not divide K, so the inferred group size is wrong", where, gs)
		}
		return true, ""
	}
	ok, why := exReason("ExLlama")
	if ok && v2 {
		ok, why = false, "gptq_v2: ExLlama v1 reads qzeros as v1 (zero-1)"
	}
	add(LoaderNames[3], ok, why)
	ok, why = exReason("ExLlamaV2")
	if ok && gs != -1 && gs&(gs-1) != 0 {
		ok, why = false, fmt.Sprintf("group size %d: ExLlamaV2 infers a power-of-two group size", gs)
	}
	if ok {
		if where, fits := firstShape(func(s LinearShape) bool { return s.K <= 1<<15 }); !fits {
			ok, why = false, where+": K over 32768 overflows ExLlamaV2's int16 q_perm"
		}
	}
	add(LoaderNames[4], ok, why)

	// vLLM gptq: 2/3/4/8 bits, K % group size, fp16 activations only.
	if where, fits := firstShape(groupsDivideK); !fits {
		add(LoaderNames[5], false, fmt.Sprintf("%s: group size %d does not divide K", where, gs))
	} else {
		add(LoaderNames[5], true, "fp16 activations only")
	}

	// vLLM gptq_marlin: 4/8 bits, sym, gs in {-1,32,64,128}, N%64, K%128, K%gs.
	marlin := func() (bool, string) {
		if !inSet(bits, 4, 8) {
			return false, fmt.Sprintf("%d-bit: marlin takes 4 or 8 bits", bits)
		}
		if !c.Sym {
			return false, "marlin needs sym (it ignores qzeros)"
		}
		if !inSet(gs, -1, 32, 64, 128) {
			return false, fmt.Sprintf("group size %d: marlin takes -1, 32, 64, 128", gs)
		}
		if where, fits := firstShape(func(s LinearShape) bool { return s.N%64 == 0 && s.K%128 == 0 && groupsDivideK(s) }); !fits {
			return false, where + ": marlin needs N%64 == 0, K%128 == 0 and K%group size == 0"
		}
		return true, ""
	}
	mOK, mWhy := marlin()
	if mOK {
		add(LoaderNames[6], true, "SM >= 7.5")
	} else {
		add(LoaderNames[6], false, mWhy)
	}

	// TGI: marlin when possible (SM >= 8.0), else exllama for 4-bit without
	// desc_act, else triton (2, 4, 8 bits).
	switch {
	case mOK:
		add(LoaderNames[7], true, "marlin kernel, SM >= 8.0")
	case bits == 4 && !c.DescAct:
		add(LoaderNames[7], true, "exllama kernel; "+mWhy)
	case inSet(bits, 2, 4, 8):
		add(LoaderNames[7], true, "triton kernel; "+mWhy)
	default:
		// (mWhy already starts with the bit width: only 3 bits get here.)
		add(LoaderNames[7], false, mWhy+"; TGI's triton kernel takes 2, 4, 8 bits")
	}
	skipLoaders(c, shapes, out)
	for i := range out {
		out[i].Reason = strings.TrimSpace(out[i].Reason)
	}
	return out
}

// vllmFused is vLLM's packed_modules_mapping for Llama/Mistral: the
// modules it loads as one weight, quantized or not as a whole.
var vllmFused = map[string][]string{
	"qkv_proj":     {"q_proj", "k_proj", "v_proj"},
	"gate_up_proj": {"gate_proj", "up_proj"},
}

// exl2Fused is, for a module ExLlamaV2 (0.2.7: attn.py, mlp.py) runs in a
// fused kernel, the module whose being quantized makes it build that
// kernel: it asserts that q_proj's siblings are quantized with it (and
// gate_proj with up_proj) and passes down_proj's GPTQ handle, which an
// fp16 down_proj does not have. With the key module fp16 it runs each
// Linear on its own, any of them fp16.
var exl2Fused = map[string]string{
	"k_proj": "q_proj", "v_proj": "q_proj", "o_proj": "q_proj",
	"gate_proj": "up_proj", "down_proj": "up_proj",
}

// expertsBlock is the prefix shared by the experts of a
// mixture-of-experts layer for an expert's Linear, e.g.
// "model.layers.0.block_sparse_moe.experts." for
// "model.layers.0.block_sparse_moe.experts.3.w1" (transformers' naming in
// Mixtral, Qwen-MoE and kin); false for another module.
func expertsBlock(name string) (string, bool) {
	i := strings.LastIndex(name, ".experts.")
	if i < 0 {
		return "", false
	}
	block := name[:i+len(".experts.")]
	idx, _, ok := strings.Cut(name[len(block):], ".")
	if !ok || idx == "" || strings.Trim(idx, "0123456789") != "" {
		return "", false
	}
	return block, true
}

// SkipSupport says, for a config that leaves modules of shapes unquantized
// (QuantizeConfig.Skipped), whether each loader of LoaderNames (in that
// order) loads them, as its code reads them; nil when none is skipped.
// An OK entry's Reason says how:
//   - GPTQModel and vLLM read the dynamic key (vLLM also
//     modules_in_block_to_quantize), but vLLM cannot split a fused weight,
//     nor a mixture-of-experts layer's experts, which its FusedMoE stacks
//     into one weight;
//   - transformers/optimum read only modules_in_block_to_quantize;
//   - AutoGPTQ, ExLlama v1 (Ex4bitLinear) and TGI want every module's
//     qweight (TGI's gptq_marlin loader; its other GPTQ loader's skip
//     branch, for modules_to_not_convert, calls its fallback unbound:
//     db931fcf, layers/gptq/__init__.py);
//   - ExLlamaV2 reads neither key but loads an fp16 module.weight wherever
//     it finds one, except inside a fused kernel (exl2Fused).
func SkipSupport(c QuantizeConfig, shapes []LinearShape) []LoaderSupport {
	skipped := func(name string) bool { s, err := c.Skipped(name); return s || err != nil }
	some, partial, exl2 := false, "", ""
	for _, s := range shapes {
		if !skipped(s.Name) {
			continue
		}
		some = true
		dir, leaf := s.Name, ""
		if i := strings.LastIndexByte(s.Name, '.'); i >= 0 {
			dir, leaf = s.Name[:i+1], s.Name[i+1:]
		}
		if key, ok := exl2Fused[leaf]; ok && exl2 == "" && !skipped(dir+key) {
			part := "attention"
			if key == "up_proj" {
				part = "MLP"
			}
			exl2 = fmt.Sprintf("%s%s unquantized but %s%s quantized: ExLlamaV2 then runs the layer's %s as one GPTQ kernel", dir, leaf, dir, key, part)
		}
		if block, ok := expertsBlock(s.Name); ok && partial == "" {
			for _, o := range shapes {
				if strings.HasPrefix(o.Name, block) && !skipped(o.Name) {
					partial = fmt.Sprintf("%s unquantized but %s quantized: vLLM loads a layer's experts as one FusedMoE weight, quantized alike", s.Name, o.Name)
					break
				}
			}
		}
		for fused, parts := range vllmFused {
			if !slices.Contains(parts, leaf) {
				continue
			}
			for _, p := range parts {
				if !skipped(dir+p) && partial == "" {
					partial = fmt.Sprintf("%s%s unquantized but %s%s quantized: vLLM loads them as one %s%s", dir, leaf, dir, p, dir, fused)
				}
			}
		}
	}
	if !some {
		return nil
	}
	out := make([]LoaderSupport, len(LoaderNames))
	for i, n := range LoaderNames {
		l := LoaderSupport{Loader: n, OK: true}
		switch i {
		case 0:
			if c.ModulesInBlockToQuantize == nil {
				l.OK, l.Reason = false, "reads no dynamic key, and modules_in_block_to_quantize skips a module only in every layer alike"
			} else {
				l.Reason = "modules_in_block_to_quantize"
			}
		case 1:
			l.OK, l.Reason = false, "reads neither the dynamic key nor modules_in_block_to_quantize, and wants every module quantized"
		case 2:
			l.Reason = "reads the dynamic key"
		case 3:
			l.OK, l.Reason = false, "reads no dynamic key, and wants every module's qweight"
		case 4:
			if exl2 != "" {
				l.OK, l.Reason = false, exl2
			} else {
				l.Reason = "each as an fp16 Linear of its own"
			}
		case 5, 6:
			if partial != "" {
				l.OK, l.Reason = false, partial
			} else {
				l.Reason = "reads the dynamic key, its rules matched against the fused qkv_proj/gate_up_proj names too"
			}
		case 7:
			l.OK, l.Reason = false, "reads no dynamic key, and wants every module's qweight"
		}
		out[i] = l
	}
	return out
}

// skipLoaders corrects out (Loaders' entries) with SkipSupport.
func skipLoaders(c QuantizeConfig, shapes []LinearShape, out []LoaderSupport) {
	for i, s := range SkipSupport(c, shapes) {
		l := &out[i]
		switch {
		case !l.OK:
		case !s.OK:
			l.OK, l.Reason = false, "modules left unquantized: "+s.Reason
		case l.Reason == "":
			l.Reason = s.Reason
		default:
			l.Reason += "; " + s.Reason
		}
	}
}
