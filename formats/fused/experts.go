package fused

import (
	"fmt"
	"io/fs"
	"slices"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/weights"
)

// A qwen3_vl_moe checkpoint in floating point stores a sparse layer's
// experts fused (hfconfig.Config.FusedExperts), as transformers'
// Qwen3VLMoeTextExperts multiplies them (x @ gate_up_proj[e], the first
// half of its columns gate, the second up; (act(gate)·up) @ down_proj[e]):
//
//	model.layers.N.mlp.experts.gate_up_proj [experts, hidden, 2·moe_intermediate]
//	model.layers.N.mlp.experts.down_proj    [experts, moe_intermediate, hidden]
//
// An ExpertSet reads them as the per-expert Linears of qwen3_moe's layout,
// model.layers.N.mlp.experts.E.{gate,up}_proj.weight [moe_intermediate,
// hidden] and down_proj.weight [hidden, moe_intermediate]: expert E's
// block of the fused tensor, transposed (a copy), in its dtype.

// expertPart is one per-expert weight of a fused experts tensor.
type expertPart struct {
	src    string // the fused tensor
	e      int    // the expert
	col    int    // the first column of the expert's block it takes
	rows   int    // the fused block's rows (hidden, or moe_intermediate for down)
	cols   int    // the fused block's columns (2·moe_intermediate, or hidden)
	n      int    // the columns it takes (its output rows)
	info   safetensors.TensorInfo
	stride int // the fused block's size in elements
}

// ExpertSet is a weights.Set whose fused experts read as per-expert
// Linears (OpenExperts).
type ExpertSet struct {
	base   weights.Set
	parts  map[string]expertPart
	hidden map[string]bool
	listing
}

// OpenExperts returns base with cfg's fused experts read as per-expert
// Linears where cfg stores them fused (hfconfig.Config.FusedExperts) and
// base holds them so (a GPTQ checkpoint holds per-expert modules: base is
// returned as it is). A fused tensor of another shape than cfg gives, or
// a per-expert tensor beside the fused one, is refused naming the tensor
// and file.
func OpenExperts(base weights.Set, cfg *hfconfig.Config) (weights.Set, error) {
	if !cfg.FusedExperts() || cfg.MoE == nil {
		return base, nil
	}
	byName := map[string]safetensors.TensorInfo{}
	for _, ti := range base.Infos() {
		byName[ti.Name] = ti
	}
	s := &ExpertSet{base: base, parts: map[string]expertPart{}, hidden: map[string]bool{}}
	h, in, ne := cfg.HiddenSize, cfg.MoE.ExpertSize, cfg.MoE.Experts
	for l := range cfg.NumHiddenLayers {
		p := fmt.Sprintf("model.layers.%d.mlp.experts.", l)
		for _, f := range []struct {
			name       string
			rows, cols int
			parts      []string
		}{
			{"gate_up_proj", h, 2 * in, []string{"gate_proj", "up_proj"}},
			{"down_proj", in, h, []string{"down_proj"}},
		} {
			ti, ok := byName[p+f.name]
			if !ok {
				continue
			}
			if want := []int{ne, f.rows, f.cols}; !slices.Equal(ti.Shape, want) {
				return nil, fmt.Errorf("fused: %s: tensor %q: shape %v, want %v (experts, then the block x multiplies: Qwen3VLMoeTextExperts' layout)", file(base, ti.Name), ti.Name, ti.Shape, want)
			}
			s.hidden[ti.Name] = true
			n := f.cols / len(f.parts)
			for e := range ne {
				for k, part := range f.parts {
					name := fmt.Sprintf("%s%d.%s.weight", p, e, part)
					if _, dup := byName[name]; dup {
						return nil, fmt.Errorf("fused: %s: tensor %q beside %q, which holds it", file(base, name), name, ti.Name)
					}
					info := safetensors.TensorInfo{Name: name, DType: ti.DType, Shape: []int{n, f.rows}}
					s.parts[name] = expertPart{src: ti.Name, e: e, col: k * n, rows: f.rows, cols: f.cols, n: n, info: info, stride: f.rows * f.cols}
					s.infos = append(s.infos, info)
				}
			}
		}
	}
	if len(s.hidden) == 0 {
		return base, nil
	}
	s.finish(base, s.hidden)
	return s, nil
}

// Tensor returns the tensor called name: an expert's weight transposed
// out of its fused tensor (a copy), or base's tensor. A fused name is not
// found (an error wrapping fs.ErrNotExist).
func (s *ExpertSet) Tensor(name string) (safetensors.Tensor, error) {
	if s.hidden[name] {
		return safetensors.Tensor{}, fmt.Errorf("fused: tensor %q reads as its experts' Linears: %w", name, fs.ErrNotExist)
	}
	p, ok := s.parts[name]
	if !ok {
		return s.base.Tensor(name)
	}
	t, err := s.base.Tensor(p.src)
	if err != nil {
		return safetensors.Tensor{}, err
	}
	es := t.DType.Size()
	if es == 0 || len(t.Data) != p.stride*(t.Shape[0])*es {
		return safetensors.Tensor{}, fmt.Errorf("fused: %s: tensor %q: %d bytes of %s for shape %v", t.File, p.src, len(t.Data), t.DType, t.Shape)
	}
	block := t.Data[p.e*p.stride*es : (p.e+1)*p.stride*es]
	out := make([]byte, p.n*p.rows*es)
	transpose(out, block, es, p.rows, p.cols, p.col, p.n)
	return safetensors.Tensor{TensorInfo: p.info, Data: out, File: t.File}, nil
}

// transpose writes columns col … col+n-1 of block, a row-major [rows,
// cols] matrix of es-byte elements, as the rows of out [n, rows]: out's
// row r is the block's column col+r. (About 3–5 ms for one of
// Qwen3-VL-30B-A3B's bf16 experts on a 2-core machine, BenchmarkTranspose;
// 32×32 tiles measured no faster there.)
func transpose(out, block []byte, es, rows, cols, col, n int) {
	for r := range n {
		for c := range rows {
			src := (c*cols + col + r) * es
			copy(out[(r*rows+c)*es:(r*rows+c+1)*es], block[src:src+es])
		}
	}
}

// Release passes names to base's Release, where it has one, a per-expert
// weight as its fused tensor.
func (s *ExpertSet) Release(names ...string) { release(s.base, names, s.source) }

// Prefetch passes names to base's Prefetch, a per-expert weight as its
// fused tensor.
func (s *ExpertSet) Prefetch(names ...string) { prefetch(s.base, names, s.source) }

// source is the fused tensor a per-expert weight reads from.
func (s *ExpertSet) source(n string) (string, bool) {
	p, ok := s.parts[n]
	return p.src, ok
}

// DiskName passes a name to base's DiskName (a multimodal checkpoint's
// stored names), where it has one.
func (s *ExpertSet) DiskName(name string) string {
	if d, ok := s.base.(interface{ DiskName(string) string }); ok {
		return d.DiskName(name)
	}
	return name
}

// Files lists base's files.
func (s *ExpertSet) Files() []string { return s.base.Files() }

// Close closes base.
func (s *ExpertSet) Close() error { return s.base.Close() }

// View returns base as cfg's model reads it: Phi-3's fused modules as
// their parts (Open) and a qwen3_vl_moe's fused experts as per-expert
// Linears (OpenExperts); base itself for other models.
func View(base weights.Set, cfg *hfconfig.Config) (weights.Set, error) {
	if mods := Modules(cfg); mods != nil {
		s, err := Open(base, cfg.NumHiddenLayers, mods)
		if err != nil {
			return nil, err
		}
		base = s
	}
	return OpenExperts(base, cfg)
}
