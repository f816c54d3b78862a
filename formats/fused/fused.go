package fused

import (
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/weights"
)

// Part is one module of a fused Linear: its name within the layer
// ("self_attn.q_proj") and its output rows N.
type Part struct {
	Module string
	N      int
}

// Module is a fused Linear of a decoder layer: its name within the layer
// ("self_attn.qkv_proj") and its parts in row order.
type Module struct {
	Name  string
	Parts []Part
}

// Rows returns the fused module's output rows, the sum of its parts'.
func (m Module) Rows() int {
	n := 0
	for _, p := range m.Parts {
		n += p.N
	}
	return n
}

// Modules returns the fused Linears of cfg's decoder layers: for phi3,
// self_attn.qkv_proj (q_proj [heads·head_dim], k_proj and v_proj
// [kv_heads·head_dim]) and mlp.gate_up_proj (gate_proj and up_proj
// [intermediate_size]); none for the other model types.
func Modules(cfg *hfconfig.Config) []Module {
	if cfg.ModelType != "phi3" {
		return nil
	}
	q, kv := cfg.NumAttentionHeads*cfg.HeadDim, cfg.NumKeyValueHeads*cfg.HeadDim
	return []Module{
		{"self_attn.qkv_proj", []Part{{"self_attn.q_proj", q}, {"self_attn.k_proj", kv}, {"self_attn.v_proj", kv}}},
		{"mlp.gate_up_proj", []Part{{"mlp.gate_proj", cfg.IntermediateSize}, {"mlp.up_proj", cfg.IntermediateSize}}},
	}
}

// FusedName returns the name of the fused module holding part (both
// within the layer) among mods, "" where none does.
func FusedName(mods []Module, part string) string {
	for _, m := range mods {
		for _, p := range m.Parts {
			if p.Module == part {
				return m.Name
			}
		}
	}
	return ""
}

// partRef is where a part's tensor lies: part i of a fused tensor.
type partRef struct {
	t Tensor
	i int
}

// Set is a weights.Set whose fused Linears read as their parts.
type Set struct {
	base   weights.Set
	parts  map[string]partRef // part tensor name → its fused tensor
	hidden map[string]bool    // fused tensor names
	listing
}

// Open wraps base for layers decoder layers whose modules mods are fused.
// With no mods, or none of their tensors in base, the Set passes base
// through.
func Open(base weights.Set, layers int, mods []Module) (*Set, error) {
	s := &Set{base: base, parts: map[string]partRef{}, hidden: map[string]bool{}}
	byName := map[string]safetensors.TensorInfo{}
	for _, ti := range base.Infos() {
		byName[ti.Name] = ti
	}
	for i := range layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		for _, m := range mods {
			for _, suffix := range Suffixes {
				name := p + m.Name + "." + suffix
				ti, ok := byName[name]
				if !ok {
					continue
				}
				t, _, err := layout(p, m, suffix, ti.DType, ti.Shape)
				if err != nil {
					return nil, fmt.Errorf("fused: %s: tensor %q: %w", file(base, name), name, err)
				}
				s.hidden[name] = true
				for k, pn := range t.Parts {
					if _, dup := byName[pn]; dup {
						return nil, fmt.Errorf("fused: %s: tensor %q beside %q, which holds it", file(base, pn), pn, name)
					}
					s.parts[pn] = partRef{t, k}
					s.infos = append(s.infos, t.PartInfo(k))
				}
			}
		}
	}
	s.finish(base, s.hidden)
	return s, nil
}

// describe names m's parts in row order.
func describe(m Module) string {
	var b strings.Builder
	for i, p := range m.Parts {
		if i > 0 {
			b.WriteString(", then ")
		}
		fmt.Fprintf(&b, "%s's %d rows", p.Module, p.N)
	}
	return b.String()
}

// file names the file holding name in base, for errors.
func file(base weights.Set, name string) string {
	if t, err := base.Tensor(name); err == nil {
		return t.File
	}
	return strings.Join(base.Files(), ", ")
}

// listing is a view's tensors (a Set's parts in place of fused ones, an
// ExpertSet's per-expert Linears), sorted by name once finished.
type listing struct{ infos []safetensors.TensorInfo }

// finish adds base's tensors but the hidden ones and sorts the list.
func (l *listing) finish(base weights.Set, hidden map[string]bool) {
	for _, ti := range base.Infos() {
		if !hidden[ti.Name] {
			l.infos = append(l.infos, ti)
		}
	}
	slices.SortFunc(l.infos, func(a, b safetensors.TensorInfo) int { return strings.Compare(a.Name, b.Name) })
}

// Names lists the tensors, sorted.
func (l *listing) Names() []string {
	names := make([]string, len(l.infos))
	for i, ti := range l.infos {
		names[i] = ti.Name
	}
	return names
}

// Infos lists the tensors' names, dtypes and shapes, sorted by name.
func (l *listing) Infos() []safetensors.TensorInfo { return slices.Clone(l.infos) }

// sources returns names with each of a view's tensors replaced by the
// base tensor it reads from (of), once each.
func sources(names []string, of func(string) (string, bool)) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if src, ok := of(n); ok {
			n = src
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// release passes names to base's Release, where it has one (a
// safetensors.Set drops its pages of the tensors), each as the base tensor
// it reads from (of, where it is a view's).
func release(base weights.Set, names []string, of func(string) (string, bool)) {
	if r, ok := base.(interface{ Release(...string) }); ok {
		r.Release(sources(names, of)...)
	}
}

// prefetch passes names to base's Prefetch, where it has one (a
// safetensors.Set starts reading them), as release does.
func prefetch(base weights.Set, names []string, of func(string) (string, bool)) {
	if p, ok := base.(interface{ Prefetch(...string) }); ok {
		p.Prefetch(sources(names, of)...)
	}
}

// Tensor returns the tensor called name: a part's rows of its fused
// tensor, sharing its data, or base's tensor. A fused name is not found
// (an error wrapping fs.ErrNotExist).
func (s *Set) Tensor(name string) (safetensors.Tensor, error) {
	if s.hidden[name] {
		return safetensors.Tensor{}, fmt.Errorf("fused: tensor %q reads as its parts: %w", name, fs.ErrNotExist)
	}
	ref, ok := s.parts[name]
	if !ok {
		return s.base.Tensor(name)
	}
	t, err := s.base.Tensor(ref.t.Name)
	if err != nil {
		return safetensors.Tensor{}, err
	}
	data, err := ref.t.Part(t.Data, ref.i)
	if err != nil {
		return safetensors.Tensor{}, fmt.Errorf("%s: %w", t.File, err)
	}
	return safetensors.Tensor{TensorInfo: ref.t.PartInfo(ref.i), Data: data, File: t.File}, nil
}

// Release passes names to base's Release, where it has one (a
// safetensors.Set drops its pages of the tensors), a part as its fused
// tensor.
func (s *Set) Release(names ...string) { release(s.base, names, s.source) }

// Prefetch passes names to base's Prefetch, a part as its fused tensor.
func (s *Set) Prefetch(names ...string) { prefetch(s.base, names, s.source) }

// source is the fused tensor a part reads from.
func (s *Set) source(n string) (string, bool) {
	ref, ok := s.parts[n]
	return ref.t.Name, ok
}

// Expand returns names with each fused tensor replaced by its parts, in
// their order (a list of base's names, such as its file order, as the
// Set's).
func (s *Set) Expand(names []string) []string {
	parts := map[string][]string{}
	for _, ref := range s.parts {
		parts[ref.t.Name] = ref.t.Parts
	}
	var out []string
	for _, n := range names {
		if ps, ok := parts[n]; ok {
			out = append(out, ps...)
		} else {
			out = append(out, n)
		}
	}
	return out
}

// Files lists base's files.
func (s *Set) Files() []string { return s.base.Files() }

// Close closes base.
func (s *Set) Close() error { return s.base.Close() }
