package quantize

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// Skip is the set of Linear modules a run leaves unquantized (kept in
// 16-bit, as GPTQModel's dynamic "-:" rules and llm-compressor's ignore
// list keep them). The zero Skip skips nothing.
type Skip struct {
	patterns []string        // as given, for the record
	mods     map[string]bool // full module names
	layers   int
	// cfg, where ParseSkipFor made the Skip, gives each layer's modules
	// (model.LayerModules: a sparse layer's experts); nil: every layer
	// has model.LinearModules.
	cfg *hfconfig.Config
}

// modules lists layer li's Linear modules in execution order.
func (s Skip) modules(li int) []string {
	if s.cfg == nil {
		return model.LinearModules
	}
	return model.LayerModules(s.cfg, li)
}

// linears lists layer li's Linears (model.LayerLinears).
func (s Skip) linears(li int) []model.Linear {
	if s.cfg == nil {
		return model.Linears
	}
	return model.LayerLinears(s.cfg, li)
}

// ParseSkipFor is ParseSkip for the layers of cfg, each with its own
// modules (model.LayerModules: a mixture-of-experts layer's experts, e.g.
// "re:model\.layers\.\d+\.block_sparse_moe\.experts\.7\..*").
func ParseSkipFor(patterns []string, cfg *hfconfig.Config) (Skip, error) {
	return parseSkip(patterns, cfg.NumHiddenLayers, cfg)
}

// ErrSkip is wrapped by ParseSkip's errors: a pattern that does not
// compile or matches nothing, or a list that skips every module.
var ErrSkip = errors.New("skip pattern")

// SplitSkipList splits a comma-separated list of skip patterns; a comma
// inside brackets, braces or parentheses (a regular expression's {1,2})
// does not split, and a backslash-escaped bracket (\( \[) opens nothing.
func SplitSkipList(list string) []string {
	var out []string
	depth, start, escaped := 0, 0, false
	for i, c := range list {
		if escaped {
			escaped = false
			continue
		}
		switch c {
		case '\\':
			escaped = true
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth = max(0, depth-1)
		case ',':
			if depth == 0 {
				out = append(out, list[start:i])
				start = i + 1
			}
		}
	}
	out = append(out, list[start:])
	return slices.DeleteFunc(out, func(s string) bool { return strings.TrimSpace(s) == "" })
}

// ParseSkip resolves patterns, each an exact module name
// ("model.layers.0.mlp.down_proj") or "re:REGEX" matched against the whole
// module name (llm-compressor's convention), against the Linear modules of
// a model of the given number of layers. A pattern that matches none of
// them, or a regular expression that does not compile, is an error naming
// it; so is a list that leaves no module to quantize.
func ParseSkip(patterns []string, layers int) (Skip, error) {
	return parseSkip(patterns, layers, nil)
}

func parseSkip(patterns []string, layers int, cfg *hfconfig.Config) (Skip, error) {
	s := Skip{mods: map[string]bool{}, layers: layers, cfg: cfg}
	total := 0
	for li := range layers {
		total += len(s.modules(li))
	}
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		s.patterns = append(s.patterns, p)
		match := func(name string) bool { return name == p }
		if expr, ok := strings.CutPrefix(p, "re:"); ok {
			re, err := regexp.Compile(`^(?:` + expr + `)$`)
			if err != nil {
				return Skip{}, fmt.Errorf("%w %q: %w", ErrSkip, p, err)
			}
			match = re.MatchString
		}
		n := 0
		for li := range layers {
			for _, m := range s.modules(li) {
				if name := model.LayerPrefix(li) + "." + m; match(name) {
					s.mods[name] = true
					n++
				}
			}
		}
		if n == 0 {
			last := s.modules(layers - 1)
			return Skip{}, fmt.Errorf("%w %q matches no quantizable Linear module (%s.%s ... %s.%s; a regular expression needs \"re:\" and must match the whole name)",
				ErrSkip, p, model.LayerPrefix(0), s.modules(0)[0], model.LayerPrefix(layers-1), last[len(last)-1])
		}
	}
	if layers > 0 && len(s.mods) == total {
		return Skip{}, fmt.Errorf("%w %s: every Linear module would be left unquantized: nothing to quantize", ErrSkip, strings.Join(s.patterns, ","))
	}
	return s, nil
}

// Empty reports whether nothing is skipped.
func (s Skip) Empty() bool { return len(s.mods) == 0 }

// Patterns are the patterns as given (recorded with a run, so that a
// resumed run must give the same).
func (s Skip) Patterns() []string { return s.patterns }

// Has reports whether module (e.g. "mlp.down_proj") of layer li is skipped.
func (s Skip) Has(li int, module string) bool {
	return s.mods[model.LayerPrefix(li)+"."+module]
}

// Names lists the skipped modules' full names, by layer and in each
// layer's module order.
func (s Skip) Names() []string {
	var out []string
	for li := range s.layers {
		for _, m := range s.modules(li) {
			if s.Has(li, m) {
				out = append(out, model.LayerPrefix(li)+"."+m)
			}
		}
	}
	return out
}

// filter returns the modules of mods that are not skipped in layer li.
func (s Skip) filter(li int, mods []string) []string {
	var out []string
	for _, m := range mods {
		if !s.Has(li, m) {
			out = append(out, m)
		}
	}
	return out
}

// fusedGroup lists the modules of layer li fused with m (m included), or nil.
func (s Skip) fusedGroup(li int, m string) []string {
	ls := s.linears(li)
	var fused string
	for _, l := range ls {
		if l.Name == m {
			fused = l.Fused
		}
	}
	if fused == "" {
		return nil
	}
	var out []string
	for _, l := range ls {
		if l.Fused == fused {
			out = append(out, l.Name)
		}
	}
	return out
}

// PartialFused describes each fused group (model.Linear.Fused) of which
// some modules are skipped and others not, naming both: vLLM loads a
// fused weight all quantized or all not, so it cannot load such a
// checkpoint.
func (s Skip) PartialFused() []string {
	var out []string
	for li := range s.layers {
		done := map[string]bool{}
		for _, l := range s.linears(li) {
			if l.Fused == "" || done[l.Fused] {
				continue
			}
			done[l.Fused] = true
			var skipped, kept []string
			for _, m := range s.fusedGroup(li, l.Name) {
				name := model.LayerPrefix(li) + "." + m
				if s.mods[name] {
					skipped = append(skipped, name)
				} else {
					kept = append(kept, name)
				}
			}
			if len(skipped) > 0 && len(kept) > 0 {
				out = append(out, fmt.Sprintf("%s skipped but %s quantized (vLLM loads them as one %s.%s)",
					strings.Join(skipped, ", "), strings.Join(kept, ", "), model.LayerPrefix(li), l.Fused))
			}
		}
	}
	return out
}

// Dynamic returns GPTQModel's dynamic rules for the skipped modules, one
// "-:" rule per module, anchored with $ (re.match anchors only the start:
// layer 1 must not match layer 10). Where a module's whole fused group is
// skipped, its rule matches the fused name too, which is the prefix vLLM
// matches (model.layers.L.self_attn.qkv_proj, model.layers.L.mlp.gate_up_proj).
// The patterns use only syntax that Python's re and Go's RE2 read alike.
func (s Skip) Dynamic() []gptq.DynamicRule {
	var out []gptq.DynamicRule
	for li := range s.layers { // (the order of Names)
		for _, l := range s.linears(li) {
			if !s.Has(li, l.Name) {
				continue
			}
			alts := []string{l.Name}
			if l.Fused != "" && len(s.filter(li, s.fusedGroup(li, l.Name))) == 0 {
				alts = append(alts, l.Fused)
			}
			// "self_attn.q_proj" and "self_attn.qkv_proj" share
			// "self_attn.": the alternation is over what follows it.
			dir, _, _ := strings.Cut(l.Name, ".")
			var leaves []string
			for _, a := range alts {
				leaves = append(leaves, regexp.QuoteMeta(strings.TrimPrefix(a, dir+".")))
			}
			leaf := leaves[0]
			if len(leaves) > 1 {
				leaf = "(?:" + strings.Join(leaves, "|") + ")"
			}
			pat := regexp.QuoteMeta(model.LayerPrefix(li)+"."+dir+".") + leaf + "$"
			out = append(out, gptq.DynamicRule{Pattern: pat, Skip: true})
		}
	}
	return out
}

// ModulesInBlock returns optimum's modules_in_block_to_quantize where the
// same modules are skipped in every layer (the only skip transformers and
// optimum can load): the quantized modules in the reference's groups and
// order; nil otherwise.
func (s Skip) ModulesInBlock() [][]string {
	if s.Empty() {
		return nil
	}
	for li := 1; li < s.layers; li++ {
		if !slices.Equal(s.modules(li), s.modules(0)) {
			return nil // (qwen3_moe's dense layers among its sparse ones)
		}
		for _, m := range s.modules(0) {
			if s.Has(li, m) != s.Has(0, m) {
				return nil
			}
		}
	}
	var out [][]string
	groups := model.ModuleGroups(true)
	if s.cfg != nil {
		groups = model.LayerModuleGroups(s.cfg, 0, true)
	}
	for _, g := range groups {
		if kept := s.filter(0, g); len(kept) > 0 {
			out = append(out, slices.Clone(kept))
		}
	}
	return out
}
