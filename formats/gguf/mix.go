package gguf

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
)

// Mix is one of llama-quantize's file types (llama.h llama_ftype): most
// 2-D weights in Base, the output weight in Q6_K (Q5_K in IQ3_XXS and the
// 1- and 2-bit IQ file types; Q8_0 where its rows are not whole blocks of
// Base), and some layers' attn_v, attn_output and ffn_down weights (in
// IQ3_XS and IQ3_XXS also attn_q and attn_k, in IQ3_XS ffn_gate and
// ffn_up; in IQ3_XXS and the 1- and 2-bit IQ file types token_embd) in
// other types, as llama.cpp's llama_tensor_get_type picks them. Some
// rules depend on the model's grouped-query attention (heads per KV head),
// some on whether an importance matrix is given; in a model of 80 layers
// with grouped-query attention (llama.cpp's LLM_TYPE_70B, never a model
// with experts) an attn_v the rules leave in Q3_K or Q4_K is written in
// Q5_K (but in the 1- and 2-bit IQ file types, whose own rules come
// before that one). A mixture of experts has rules of its own (moeType):
// a stacked ffn_gate_exps, ffn_up_exps or ffn_down_exps, and a shared
// expert's ffn_*_shexp, takes ffn_gate's, ffn_up's or ffn_down's rules
// (llama.cpp's categories match the name's "ffn_gate", "ffn_up",
// "ffn_down"), the routers none (never quantized).
type Mix struct {
	Name     string     // "Q4_K_M"
	FileType uint32     // general.file_type
	Base     TensorType // the weights the rules leave alone
	// NeedsImatrix: llama-quantize refuses the mix without an importance
	// matrix for its Base weights (Q2_K_S). (Weights in IQ3_XXS and the
	// 1- and 2-bit IQ types need one in any file: requiresImatrix.)
	NeedsImatrix bool
	// attnV, attnOut and ffnDown give the type of an attn_v, attn_output
	// or ffn_down weight at site s (nil: Base); attnQ, attnK, ffnGate and
	// ffnUp likewise for attn_q, attn_k, ffn_gate and ffn_up.
	attnV, attnOut, ffnDown      func(s site) TensorType
	attnQ, attnK, ffnGate, ffnUp func(s site) TensorType
	// output is the type of the output weight (and of a tied token_embd)
	// whose rows are whole blocks of Base (0: Q6_K); tokenEmbd that of an
	// untied token_embd (0: Base). (llama.cpp picks both by the file type
	// alone.)
	output, tokenEmbd TensorType
	// lowIQ: the 1- and 2-bit IQ file types' own branch of rules
	// (lowIQMix), before which neither the 70B attn_v rule nor the
	// 8-expert rules of the others apply.
	lowIQ bool
}

// site is where a weight sits, for a mix's rules: layer i of n, gqa query
// heads per KV head, the model's experts (0 for a dense model), and
// whether an importance matrix is given.
type site struct {
	i, n, gqa, experts int
	imatrix            bool
}

// Mixes lists the mixes Convert writes, in llama.h's order.
var Mixes = []Mix{
	{Name: "Q4_0", FileType: 2, Base: TypeQ4_0,
		ffnDown: func(s site) TensorType { return pick(s.imatrix && s.i < s.n/8, TypeQ4_1, TypeQ4_0) }},
	{Name: "Q4_1", FileType: 3, Base: TypeQ4_1},
	{Name: "Q5_0", FileType: 8, Base: TypeQ5_0,
		ffnDown: func(s site) TensorType { return pick(s.imatrix && s.i < s.n/8, TypeQ5_1, TypeQ5_0) }},
	{Name: "Q5_1", FileType: 9, Base: TypeQ5_1},
	{Name: "Q2_K", FileType: 10, Base: TypeQ2_K,
		attnV:   func(s site) TensorType { return pick(s.gqa >= 4, TypeQ4_K, TypeQ3_K) },
		attnOut: func(site) TensorType { return TypeQ3_K },
		ffnDown: func(site) TensorType { return TypeQ3_K }},
	{Name: "Q3_K_S", FileType: 11, Base: TypeQ3_K},
	{Name: "Q3_K_M", FileType: 12, Base: TypeQ3_K,
		attnV:   func(s site) TensorType { return pick(s.i < 2, TypeQ5_K, TypeQ4_K) },
		attnOut: func(site) TensorType { return TypeQ4_K },
		ffnDown: func(s site) TensorType { return pick(s.i < s.n/16, TypeQ5_K, TypeQ4_K) }},
	{Name: "Q3_K_L", FileType: 13, Base: TypeQ3_K,
		attnV:   func(site) TensorType { return TypeQ5_K },
		attnOut: func(site) TensorType { return TypeQ5_K },
		ffnDown: func(site) TensorType { return TypeQ5_K }},
	{Name: "Q4_K_S", FileType: 14, Base: TypeQ4_K,
		attnV:   func(s site) TensorType { return pick(s.i < 4, TypeQ5_K, TypeQ4_K) },
		ffnDown: func(s site) TensorType { return pick(s.i < s.n/8, TypeQ5_K, TypeQ4_K) }},
	{Name: "Q4_K_M", FileType: 15, Base: TypeQ4_K,
		attnV:   func(s site) TensorType { return pick(useMoreBits(s.i, s.n), TypeQ6_K, TypeQ4_K) },
		ffnDown: func(s site) TensorType { return pick(useMoreBits(s.i, s.n), TypeQ6_K, TypeQ4_K) }},
	{Name: "Q5_K_S", FileType: 16, Base: TypeQ5_K},
	{Name: "Q5_K_M", FileType: 17, Base: TypeQ5_K,
		attnV:   func(s site) TensorType { return pick(useMoreBits(s.i, s.n), TypeQ6_K, TypeQ5_K) },
		ffnDown: func(s site) TensorType { return pick(useMoreBits(s.i, s.n), TypeQ6_K, TypeQ5_K) }},
	{Name: "Q6_K", FileType: 18, Base: TypeQ6_K},
	// The 1- and 2-bit IQ file types (IQ1_S, IQ2_S, IQ2_M and IQ1_M
	// below too) have llama.cpp's own branch of rules
	// (llama_tensor_get_type_impl), the output in Q5_K: lowIQMix.
	lowIQMix("IQ2_XXS", 19, TypeIQ2_XXS, TypeQ2_K, TypeIQ2_XXS),
	lowIQMix("IQ2_XS", 20, TypeIQ2_XS, TypeQ2_K, TypeIQ2_XS),
	{Name: "Q2_K_S", FileType: 21, Base: TypeQ2_K, NeedsImatrix: true,
		attnV:   func(s site) TensorType { return pick(s.gqa >= 4, TypeQ4_K, TypeQ2_K) },
		ffnDown: func(s site) TensorType { return pick(s.i < s.n/8, TypeQ4_K, TypeQ2_K) }},
	{Name: "IQ3_XS", FileType: 22, Base: TypeIQ3_S,
		attnV:   func(s site) TensorType { return pick(s.gqa >= 4, TypeQ4_K, TypeIQ3_S) },
		attnQ:   func(site) TensorType { return TypeIQ3_XXS },
		attnK:   func(site) TensorType { return TypeIQ3_XXS },
		ffnGate: middleIQ3XXS,
		ffnUp:   middleIQ3XXS},
	{Name: "IQ3_XXS", FileType: 23, Base: TypeIQ3_XXS, output: TypeQ5_K, tokenEmbd: TypeIQ3_S,
		attnV: func(s site) TensorType {
			return pick(s.gqa >= 4, TypeQ4_K, pick(s.imatrix, TypeIQ3_XXS, TypeIQ3_S))
		},
		attnQ:   func(site) TensorType { return TypeIQ2_S },
		attnK:   func(site) TensorType { return TypeIQ2_S },
		attnOut: func(site) TensorType { return TypeIQ3_S },
		ffnDown: func(s site) TensorType {
			return pick(s.imatrix, TypeIQ3_XXS, pick(s.i < s.n/8, TypeQ4_K, TypeQ3_K))
		}},
	// IQ1_S: as IQ2_XXS, attn_output in IQ2_XXS.
	lowIQMix("IQ1_S", 24, TypeIQ1_S, TypeQ2_K, TypeIQ2_XXS),
	{Name: "IQ4_NL", FileType: 25, Base: TypeIQ4_NL,
		attnV:   func(s site) TensorType { return pick(s.gqa >= 4, TypeQ5_K, TypeIQ4_NL) },
		ffnDown: func(s site) TensorType { return pick(!s.imatrix && s.i < s.n/8, TypeQ5_K, TypeIQ4_NL) }},
	{Name: "IQ3_S", FileType: 26, Base: TypeIQ3_S,
		attnV: func(s site) TensorType { return pick(s.gqa >= 4, TypeQ4_K, TypeIQ3_S) }},
	{Name: "IQ3_M", FileType: 27, Base: TypeIQ3_S,
		attnV:   func(site) TensorType { return TypeQ4_K },
		attnOut: func(site) TensorType { return TypeQ4_K },
		ffnDown: func(s site) TensorType { return pick(s.i < s.n/8, TypeQ4_K, TypeIQ3_S) }},
	// IQ2_S's weights are IQ2_XS (llama_ftype_get_default_type), IQ2_M's
	// IQ2_S.
	lowIQMix("IQ2_S", 28, TypeIQ2_XS, TypeIQ3_S, TypeIQ3_S),
	lowIQMix("IQ2_M", 29, TypeIQ2_S, TypeIQ3_S, TypeIQ3_S),
	{Name: "IQ4_XS", FileType: 30, Base: TypeIQ4_XS,
		attnV:   func(s site) TensorType { return pick(s.gqa >= 4, TypeQ5_K, TypeIQ4_XS) },
		ffnDown: func(s site) TensorType { return pick(!s.imatrix && s.i < s.n/8, TypeQ5_K, TypeIQ4_XS) }},
	// IQ1_M: as IQ1_S (lowIQMix).
	lowIQMix("IQ1_M", 31, TypeIQ1_M, TypeQ2_K, TypeIQ2_XXS),
}

// lowIQMix is a 1- or 2-bit IQ file type of base weights: attn_v in Q4_K
// with 4 or more query heads a KV head, else in more; the first eighth of
// ffn_down and an untied token_embd in more; attn_output in out; the
// output in Q5_K; no 70B rule. (Its IQ1 and IQ2 weights need an
// importance matrix: requiresImatrix.)
func lowIQMix(name string, fileType uint32, base, more, out TensorType) Mix {
	return Mix{Name: name, FileType: fileType, Base: base, output: TypeQ5_K, tokenEmbd: more, lowIQ: true,
		attnV:   func(s site) TensorType { return pick(s.gqa >= 4, TypeQ4_K, more) },
		attnOut: func(site) TensorType { return out },
		ffnDown: func(s site) TensorType { return pick(s.i < s.n/8, more, base) },
	}
}

// FileTypeName names general.file_type id as llama.h's llama_ftype does
// ("Q4_K_M", "MOSTLY_F16" as "F16"), for the types this package writes; ""
// for others.
func FileTypeName(id uint32) string {
	for _, m := range Mixes {
		if m.FileType == id {
			return m.Name
		}
	}
	for t, f := range fileTypes {
		if f == id {
			return t.String()
		}
	}
	return ""
}

// ParseMix finds the mix named s (case-insensitive).
func ParseMix(s string) (Mix, bool) {
	for _, m := range Mixes {
		if strings.EqualFold(m.Name, s) {
			return m, true
		}
	}
	return Mix{}, false
}

// middleIQ3XXS is IQ3_XS's rule for ffn_gate and ffn_up: IQ3_XXS but in
// the first and last eighth of the layers.
func middleIQ3XXS(s site) TensorType {
	return pick(s.i >= s.n/8 && s.i < 7*s.n/8, TypeIQ3_XXS, TypeIQ3_S)
}

// useMoreBits is llama.cpp's rule for the layers whose attn_v and
// ffn_down the _M mixes keep in Q6_K: the first and last eighth, and every
// third layer between.
func useMoreBits(i, n int) bool {
	return i < n/8 || i >= 7*n/8 || (i-n/8)%3 == 2
}

func pick(c bool, a, b TensorType) TensorType {
	if c {
		return a
	}
	return b
}

// typeFor is the type the mix wants for the 2-D weight named name (a GGUF
// name: "output.weight", "blk.3.attn_v.weight") of a model of config cfg,
// quantized with an importance matrix or not, before any fallback for
// rows that are not whole blocks (weightType).
func (m Mix) typeFor(name string, cfg *hfconfig.Config, imatrix bool) TensorType {
	return m.typeAt(name, layerOf(name), cfg, imatrix)
}

// typeAt is typeFor with i as the layer its rules see. llama.cpp's rules
// take it not from the name but from a count of the weights of that kind
// they have typed so far (qs.i_attention_wv, i_ffn_down, i_ffn_gate,
// i_ffn_up): a weight a --tensor-type pattern types is not counted, so
// the same kind's weights after it are typed as if a layer earlier
// (typeRules.want keeps the count).
func (m Mix) typeAt(name string, i int, cfg *hfconfig.Config, imatrix bool) TensorType {
	gqa := 1
	if cfg.NumKeyValueHeads > 0 {
		gqa = cfg.NumAttentionHeads / cfg.NumKeyValueHeads
	}
	s := site{i: i, n: cfg.NumHiddenLayers, gqa: gqa, imatrix: imatrix}
	if cfg.MoE != nil {
		s.experts = cfg.MoE.Experts
	}
	t := m.typeOf(name, s, !cfg.TieWordEmbeddings, cfg.HiddenSize)
	if s.experts > 0 {
		return m.moeType(name, t, s)
	}
	if (t == TypeQ3_K || t == TypeQ4_K) && strings.HasSuffix(name, ".attn_v.weight") &&
		cfg.NumHiddenLayers == 80 && gqa > 1 && !m.lowIQ {
		return TypeQ5_K
	}
	return t
}

// moeAttnOutQ5K are the file types whose attn_output llama.cpp writes in
// Q5_K in a model of 8 experts (the others keep their base type there).
var moeAttnOutQ5K = []string{"Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ3_S", "IQ3_M", "IQ4_XS"}

// moeType is llama_tensor_get_type_impl's type for the weight name of a
// model with s.experts experts, t the dense rules' type (typeOf's). The
// 1- and 2-bit IQ file types: attn_v in Q4_K with 4 or more experts,
// attn_k in Q4_K and attn_output in Q5_K with 8. The others, with 8
// experts: attn_v and attn_k in Q8_0; attn_output in Q5_K for
// moeAttnOutQ5K's types, else in the base type (their dense rules do not
// apply); IQ3_M's ffn_down also in Q4_K in useMoreBits' layers. With
// another number of experts the dense rules stand.
func (m Mix) moeType(name string, t TensorType, s site) TensorType {
	kind := weightKind(name)
	if m.lowIQ {
		switch {
		case (kind == "attn_v.weight" || kind == "attn_qkv.weight") && s.experts >= 4:
			return TypeQ4_K
		case kind == "attn_k.weight" && s.experts == 8:
			return TypeQ4_K
		case kind == "attn_output.weight" && s.experts == 8:
			return TypeQ5_K
		}
		return t
	}
	if s.experts != 8 {
		return t
	}
	switch kind {
	case "attn_v.weight", "attn_qkv.weight", "attn_k.weight":
		return TypeQ8_0
	case "attn_output.weight":
		if slices.Contains(moeAttnOutQ5K, m.Name) {
			return TypeQ5_K
		}
		return m.Base
	case "ffn_down.weight":
		if m.Name == "IQ3_M" && useMoreBits(s.i, s.n) {
			return TypeQ4_K
		}
	}
	return t
}

// weightKind is a layer weight's kind, its name after "blk.N." with a
// stacked expert tensor's "_exps" or a shared expert's "_shexp" dropped
// ("ffn_down_exps.weight", "ffn_down_shexp.weight": "ffn_down.weight"),
// as llama.cpp's categories match them (name.find("ffn_down")); "" outside
// the layers.
func weightKind(name string) string {
	rest, ok := strings.CutPrefix(name, "blk.")
	if !ok {
		return ""
	}
	_, kind, _ := strings.Cut(rest, ".")
	kind = strings.Replace(kind, "_exps.weight", ".weight", 1)
	return strings.Replace(kind, "_shexp.weight", ".weight", 1)
}

// typeOf is typeAt's rules without the 70B one: s gives the layer the
// rules see, the layer count, the heads per KV head and the importance
// matrix; hasOutput says the file has an output weight (else token_embd,
// tied, is the output, as llama.cpp treats it); rowLen is the output
// weight's row length (the hidden size).
func (m Mix) typeOf(name string, s site, hasOutput bool, rowLen int) TensorType {
	if name == "output.weight" || (!hasOutput && name == "token_embd.weight") {
		// (llama.cpp also keeps a Q8_0 file's output in Q8_0; no mix has
		// that base: q8_0 is one type for every weight, ParseTarget.)
		if rowLen%m.Base.BlockSize() != 0 {
			return TypeQ8_0
		}
		return cmp.Or(m.output, TypeQ6_K)
	}
	kind := weightKind(name)
	if kind == "" {
		if name == "token_embd.weight" {
			return cmp.Or(m.tokenEmbd, m.Base)
		}
		return m.Base
	}
	var rule func(site) TensorType
	switch kind {
	case "attn_v.weight", "attn_qkv.weight":
		// (phi3's fused attn_qkv: llama-quantize's category_is_attn_v
		// types it by attn_v's rules, counted as attn_v)
		rule = m.attnV
	case "attn_output.weight":
		rule = m.attnOut
	case "ffn_down.weight":
		rule = m.ffnDown
	case "attn_q.weight":
		rule = m.attnQ
	case "attn_k.weight":
		rule = m.attnK
	case "ffn_gate.weight":
		rule = m.ffnGate
	case "ffn_up.weight":
		rule = m.ffnUp
	}
	if rule == nil {
		return m.Base
	}
	return rule(s)
}

// layerOf is the layer of the weight named name ("blk.3.attn_v.weight":
// 3); 0 for a weight outside the layers. It panics on a malformed layer
// number, which tensorSpecs never gives.
func layerOf(name string) int {
	rest, ok := strings.CutPrefix(name, "blk.")
	if !ok {
		return 0
	}
	num, _, _ := strings.Cut(rest, ".")
	i, err := strconv.Atoi(num)
	if err != nil {
		panic(fmt.Sprintf("gguf: tensor name %q", name))
	}
	return i
}

// uniformTypes are the names ParseTarget reads as one tensor type for
// every 2-D weight, the output included. Q6_K and Q8_0 are also
// llama-quantize's file types, which hold every weight in that type
// anyway; but llama-quantize reads "Q3_K", "Q4_K" and "Q5_K" as its _M
// mixes, which here Q3_K_M, Q4_K_M and Q5_K_M alone name.
var uniformTypes = []TensorType{TypeF32, TypeF16, TypeBF16, TypeQ8_0, TypeQ6_K, TypeQ5_K, TypeQ4_K, TypeQ3_K}

// Target is what one GGUF file is converted to: every 2-D weight in Type,
// or, when Mix.Name is set, one of llama-quantize's file types.
type Target struct {
	Type TensorType
	Mix  Mix
}

// Name is the target as llama.cpp's tools and model repositories name it:
// the mix ("Q4_K_M"), else the type ("Q8_0", "F16").
func (t Target) Name() string {
	if t.Mix.Name != "" {
		return t.Mix.Name
	}
	return t.Type.String()
}

// ParseTarget reads what a GGUF conversion is asked for (case-insensitive):
// one of the uniform types f32, f16, bf16, q8_0, q6_k, q5_k, q4_k, q3_k
// (every 2-D weight in that type), else one of llama-quantize's file types
// (Mixes: q4_0 is llama-quantize's Q4_0 file, its output weight in Q6_K).
func ParseTarget(s string) (Target, error) {
	for _, t := range uniformTypes {
		if strings.EqualFold(s, t.String()) {
			return Target{Type: t}, nil
		}
	}
	if m, ok := ParseMix(s); ok {
		return Target{Mix: m}, nil
	}
	return Target{}, fmt.Errorf("unknown GGUF type %q (want %s)", s, TargetNames())
}

// ParseTargets reads a comma-separated list of ParseTarget's names, each
// at most once ("q4_k_m, q5_k_m,q8_0").
func ParseTargets(list string) ([]Target, error) {
	var ts []Target
	for f := range strings.SplitSeq(list, ",") {
		t, err := ParseTarget(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(ts, func(u Target) bool { return u.Name() == t.Name() }) {
			return nil, fmt.Errorf("GGUF type %s given twice", t.Name())
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// TargetNames lists what ParseTarget reads, lowercase: the uniform types,
// then the mixes.
func TargetNames() string {
	var names []string
	for _, t := range uniformTypes {
		names = append(names, strings.ToLower(t.String()))
	}
	for _, m := range Mixes {
		if !slices.ContainsFunc(uniformTypes, func(t TensorType) bool { return strings.EqualFold(t.String(), m.Name) }) {
			names = append(names, strings.ToLower(m.Name))
		}
	}
	return orList(names)
}

// orList joins names as a sentence offers a choice: "a, b or c".
func orList(names []string) string {
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
