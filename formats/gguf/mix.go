package gguf

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
)

// Mix is one of llama-quantize's k-quant file types (llama.h llama_ftype):
// most 2-D weights in Base, the output weight in Q6_K, and for the _M and
// Q4_K_S mixes some layers' attn_v and ffn_down weights in a larger type,
// as llama.cpp's llama_tensor_get_type picks them for a dense model (no
// experts; for these types its rules do not depend on whether an
// importance matrix is given), with its 70B rule: in a model of
// 80 layers with grouped-query attention (llama.cpp's LLM_TYPE_70B), an
// attn_v the rules leave in Q4_K is written in Q5_K.
type Mix struct {
	Name     string     // "Q4_K_M"
	FileType uint32     // general.file_type
	Base     TensorType // the weights the rules leave alone
	// attnV and ffnDown give the type of layer i's attn_v or ffn_down
	// weight of n layers (nil: Base).
	attnV, ffnDown func(i, n int) TensorType
}

// Mixes lists the mixes Convert writes.
var Mixes = []Mix{
	{Name: "Q4_K_S", FileType: 14, Base: TypeQ4_K,
		attnV:   func(i, n int) TensorType { return pick(i < 4, TypeQ5_K, TypeQ4_K) },
		ffnDown: func(i, n int) TensorType { return pick(i < n/8, TypeQ5_K, TypeQ4_K) }},
	{Name: "Q4_K_M", FileType: 15, Base: TypeQ4_K,
		attnV:   func(i, n int) TensorType { return pick(useMoreBits(i, n), TypeQ6_K, TypeQ4_K) },
		ffnDown: func(i, n int) TensorType { return pick(useMoreBits(i, n), TypeQ6_K, TypeQ4_K) }},
	{Name: "Q5_K_S", FileType: 16, Base: TypeQ5_K},
	{Name: "Q5_K_M", FileType: 17, Base: TypeQ5_K,
		attnV:   func(i, n int) TensorType { return pick(useMoreBits(i, n), TypeQ6_K, TypeQ5_K) },
		ffnDown: func(i, n int) TensorType { return pick(useMoreBits(i, n), TypeQ6_K, TypeQ5_K) }},
	{Name: "Q6_K", FileType: 18, Base: TypeQ6_K},
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

// typeFor is typeOf for a model of config cfg, with llama.cpp's rule for
// its LLM_TYPE_70B (a llama of 80 layers whose heads share K/V heads:
// Llama-2/3 70B): attn_v in Q4_K (after the rules) is raised to Q5_K.
func (m Mix) typeFor(name string, cfg *hfconfig.Config) TensorType {
	t := m.typeOf(name, cfg.NumHiddenLayers, !cfg.TieWordEmbeddings)
	if t == TypeQ4_K && strings.HasSuffix(name, ".attn_v.weight") &&
		cfg.NumHiddenLayers == 80 && cfg.NumAttentionHeads != cfg.NumKeyValueHeads {
		return TypeQ5_K
	}
	return t
}

// typeOf is the type the mix wants for the 2-D weight named name (a GGUF
// name: "output.weight", "blk.3.attn_v.weight") of a model of n layers;
// hasOutput says the file has an output weight (else token_embd, tied, is
// the output, as llama.cpp treats it).
func (m Mix) typeOf(name string, n int, hasOutput bool) TensorType {
	if name == "output.weight" || (!hasOutput && name == "token_embd.weight") {
		return TypeQ6_K
	}
	rest, ok := strings.CutPrefix(name, "blk.")
	if !ok {
		return m.Base
	}
	num, kind, _ := strings.Cut(rest, ".")
	i, err := strconv.Atoi(num)
	if err != nil {
		panic(fmt.Sprintf("gguf: tensor name %q", name))
	}
	switch {
	case kind == "attn_v.weight" && m.attnV != nil:
		return m.attnV(i, n)
	case kind == "ffn_down.weight" && m.ffnDown != nil:
		return m.ffnDown(i, n)
	}
	return m.Base
}
