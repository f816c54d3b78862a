package compressed

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/gptqtool/gptqtool/formats/gptq"
)

// ErrUnsupported is wrapped by the refusals of compressed-tensors schemes
// and formats this package does not read.
var ErrUnsupported = errors.New("unsupported compressed-tensors scheme")

// PackQuantized is the compression format this package reads.
const PackQuantized = "pack-quantized"

// Weights are a config group's weights arguments (QuantizationArgs),
// resolved: Strategy is "group" or "channel", GroupSize -1 for channel.
type Weights struct {
	NumBits   int
	Symmetric bool
	Strategy  string
	GroupSize int
	// ActOrder is "group", "weight" or "" (aliases resolved: dynamic is
	// group, static is weight, true is group).
	ActOrder string
}

// Group is one entry of config_groups.
type Group struct {
	Name    string
	Targets []string
	Weights Weights
	targets []matcher
}

// Config is a compressed-tensors quantization config (config.json's
// quantization_config block).
type Config struct {
	// Format is the top-level format ("pack-quantized").
	Format string
	// Groups are config_groups in name order.
	Groups []Group
	// Ignore lists the modules left unquantized: names, or "re:" patterns.
	Ignore []string
	// File names where the config came from, for errors.
	File   string
	ignore []matcher
}

// matcher is one target or ignore entry: compressed-tensors' _match_name
// (an exact name, or "re:" and Python's re.match, anchored at the start
// only), or a class name, of which only "Linear" names the modules asked
// about here.
type matcher struct {
	entry string
	re    *regexp.Regexp
}

func newMatcher(entry, where string) (matcher, error) {
	m := matcher{entry: entry}
	if p, ok := strings.CutPrefix(entry, "re:"); ok {
		re, err := regexp.Compile(`^(?:` + p + `)`)
		if err != nil {
			return m, fmt.Errorf("%s: %q: %w", where, entry, err)
		}
		m.re = re
	}
	return m, nil
}

// match reports whether the entry names the Linear module.
func (m matcher) match(module string) bool {
	if m.re != nil {
		return m.re.MatchString(module)
	}
	return m.entry == module || m.entry == "Linear"
}

// ParseConfig parses a compressed-tensors quantization config; file names
// it in errors ("config.json: quantization_config"). Every config group
// with weights must be a weight-only integer scheme of 4 or 8 bits, group
// or channel strategy, in format pack-quantized (the group's format, else
// the top-level one); see the package doc for what is refused.
func ParseConfig(data []byte, file string) (*Config, error) {
	var doc struct {
		QuantMethod    string                     `json:"quant_method"`
		Format         string                     `json:"format"`
		ConfigGroups   map[string]json.RawMessage `json:"config_groups"`
		Ignore         []string                   `json:"ignore"`
		KVCacheScheme  json.RawMessage            `json:"kv_cache_scheme"`
		Sparsity       json.RawMessage            `json:"sparsity_config"`
		Transform      json.RawMessage            `json:"transform_config"`
		Status         string                     `json:"quantization_status"`
		GlobalCompress json.RawMessage            `json:"global_compression_ratio"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("compressed-tensors: %s: %w", file, err)
	}
	fail := func(format string, a ...any) (*Config, error) {
		return nil, fmt.Errorf("compressed-tensors: %s: "+format, append([]any{file}, a...)...)
	}
	if doc.QuantMethod != "compressed-tensors" {
		return fail("quant_method %q, want \"compressed-tensors\"", doc.QuantMethod)
	}
	if given(doc.KVCacheScheme) {
		return fail("kv_cache_scheme %s: %w: the KV cache is not quantized by gptqtool", bytes.TrimSpace(doc.KVCacheScheme), ErrUnsupported)
	}
	if given(doc.Transform) {
		return fail("transform_config: %w: transforms (rotations) are not applied by gptqtool", ErrUnsupported)
	}
	if given(doc.Sparsity) {
		var sp struct {
			Format string `json:"format"`
		}
		// ({} says no sparsity, as "dense" does.)
		if err := json.Unmarshal(doc.Sparsity, &sp); err != nil || (sp.Format != "dense" && string(bytes.TrimSpace(doc.Sparsity)) != "{}") {
			return fail("sparsity_config format %q: %w: only dense weights are read", sp.Format, ErrUnsupported)
		}
	}
	if doc.Status != "" && doc.Status != "compressed" {
		return fail("quantization_status %q: %w: only \"compressed\" checkpoints store packed weights", doc.Status, ErrUnsupported)
	}
	if len(doc.ConfigGroups) == 0 {
		return fail("config_groups: missing or empty")
	}
	c := &Config{Format: doc.Format, Ignore: doc.Ignore, File: file}
	for i, e := range doc.Ignore {
		m, err := newMatcher(e, fmt.Sprintf("ignore[%d]", i))
		if err != nil {
			return fail("%w", err)
		}
		c.ignore = append(c.ignore, m)
	}
	for _, name := range slices.Sorted(maps.Keys(doc.ConfigGroups)) {
		g, err := parseGroup(name, doc.ConfigGroups[name], doc.Format)
		if err != nil {
			return fail("%w", err)
		}
		c.Groups = append(c.Groups, *g)
	}
	return c, nil
}

func given(raw json.RawMessage) bool {
	s := string(bytes.TrimSpace(raw))
	return s != "" && s != "null"
}

// parseGroup reads one config group (QuantizationScheme).
func parseGroup(name string, raw json.RawMessage, format string) (*Group, error) {
	var s struct {
		Targets []string                   `json:"targets"`
		Weights map[string]json.RawMessage `json:"weights"`
		Input   json.RawMessage            `json:"input_activations"`
		Output  json.RawMessage            `json:"output_activations"`
		Format  *string                    `json:"format"`
	}
	where := "config_groups." + name
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if s.Format != nil && *s.Format != "" {
		format = *s.Format
	}
	if format != PackQuantized {
		return nil, fmt.Errorf("%s: format %q: %w: only %q is read", where, format, ErrUnsupported, PackQuantized)
	}
	if given(s.Input) || given(s.Output) {
		return nil, fmt.Errorf("%s: input_activations/output_activations: %w: only weight-only schemes (W4A16, W8A16) are read", where, ErrUnsupported)
	}
	if len(s.Targets) == 0 {
		return nil, fmt.Errorf("%s: targets: missing or empty", where)
	}
	if s.Weights == nil {
		return nil, fmt.Errorf("%s: weights: missing: a weight-only scheme quantizes weights", where)
	}
	g := &Group{Name: name, Targets: s.Targets}
	for i, e := range s.Targets {
		m, err := newMatcher(e, fmt.Sprintf("%s.targets[%d]", where, i))
		if err != nil {
			return nil, err
		}
		g.targets = append(g.targets, m)
	}
	w, err := parseWeights(s.Weights, where+".weights")
	if err != nil {
		return nil, err
	}
	g.Weights = *w
	return g, nil
}

// parseWeights reads QuantizationArgs with compressed-tensors' defaults
// (num_bits 8, type int, symmetric true, dynamic false) and its strategy
// inference (group_size > 0: group; -1: channel; absent: tensor).
func parseWeights(a map[string]json.RawMessage, where string) (*Weights, error) {
	w := &Weights{NumBits: 8, Symmetric: true}
	get := func(key string, dst any) (bool, error) {
		v, ok := a[key]
		if !ok || !given(v) {
			return false, nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return true, fmt.Errorf("%s.%s: got %s: %w", where, key, bytes.TrimSpace(v), err)
		}
		return true, nil
	}
	var bits float64 = 8
	if _, err := get("num_bits", &bits); err != nil {
		return nil, err
	}
	if bits != 4 && bits != 8 {
		return nil, fmt.Errorf("%s.num_bits %v: %w: 4 or 8 bits are read", where, bits, ErrUnsupported)
	}
	w.NumBits = int(bits)
	typ := "int"
	if _, err := get("type", &typ); err != nil {
		return nil, err
	}
	if strings.ToLower(typ) != "int" {
		return nil, fmt.Errorf("%s.type %q: %w: only integer weights are read", where, typ, ErrUnsupported)
	}
	if _, err := get("symmetric", &w.Symmetric); err != nil {
		return nil, err
	}
	var dynamic any
	if _, err := get("dynamic", &dynamic); err != nil {
		return nil, err
	}
	if dynamic != nil && dynamic != false {
		return nil, fmt.Errorf("%s.dynamic %v: %w: weights must be static", where, dynamic, ErrUnsupported)
	}
	if ok, _ := get("block_structure", new(any)); ok {
		return nil, fmt.Errorf("%s.block_structure: %w: block strategy is not read", where, ErrUnsupported)
	}
	gs := math.NaN()
	hasGS, err := get("group_size", &gs)
	if err != nil {
		return nil, err
	}
	if hasGS && (gs != math.Trunc(gs) || gs < -1 || gs == 0 || gs > math.MaxInt32) {
		return nil, fmt.Errorf("%s.group_size %v: want -1 or a positive integer", where, gs)
	}
	if _, err := get("strategy", &w.Strategy); err != nil {
		return nil, err
	}
	w.Strategy = strings.ToLower(w.Strategy)
	if w.Strategy == "" {
		switch {
		case !hasGS:
			w.Strategy = "tensor"
		case gs > 0:
			w.Strategy = "group"
		default:
			w.Strategy = "channel"
		}
	}
	switch w.Strategy {
	case "group":
		if !hasGS || gs <= 0 {
			return nil, fmt.Errorf("%s.group_size: strategy group needs a positive group_size", where)
		}
		w.GroupSize = int(gs)
	case "channel":
		if hasGS && gs > 0 {
			return nil, fmt.Errorf("%s.group_size %v: strategy channel takes none", where, gs)
		}
		w.GroupSize = -1
	default:
		return nil, fmt.Errorf("%s.strategy %q: %w: only group and channel weights are read", where, w.Strategy, ErrUnsupported)
	}
	var order any
	if _, err := get("actorder", &order); err != nil {
		return nil, err
	}
	switch o := order.(type) {
	case nil:
	case bool:
		if o {
			w.ActOrder = "group"
		}
	case string:
		switch strings.ToLower(o) {
		case "group", "dynamic":
			w.ActOrder = "group"
		case "weight", "static":
			w.ActOrder = "weight"
		default:
			return nil, fmt.Errorf("%s.actorder %q: want group, weight, dynamic or static", where, o)
		}
	default:
		return nil, fmt.Errorf("%s.actorder %v: want a string or a boolean", where, o)
	}
	if w.ActOrder != "" && w.Strategy != "group" {
		return nil, fmt.Errorf("%s.actorder %q: needs strategy group", where, w.ActOrder)
	}
	return w, nil
}

// Scheme returns the weights arguments the config gives the Linear module
// (its full name) and the name of its config group, or nil where no
// group targets it or ignore lists it (left unquantized). Where several
// groups target it, they must agree.
func (c *Config) Scheme(module string) (*Weights, string) {
	for _, m := range c.ignore {
		if m.match(module) {
			return nil, ""
		}
	}
	for i := range c.Groups {
		for _, m := range c.Groups[i].targets {
			if m.match(module) {
				return &c.Groups[i].Weights, c.Groups[i].Name
			}
		}
	}
	return nil, ""
}

// Linear is one quantized Linear's compressed-tensors tensors, as read.
type Linear struct {
	K, N    int
	Weights Weights
	Packed  []int32  // weight_packed [N, K/pf]
	Scale   []uint16 // weight_scale [N, G], fp16 bits
	Zero    []int32  // weight_zero_point [N/pf, G]; nil when symmetric
	GIdx    []int32  // weight_g_idx [K]; nil where absent
}

// ToGPTQ returns l as a gptq.Linear in FormatV2 (real zero points): the
// same codes (the stored unsigned values), scales and zero points (the
// stored unsigned ones, 2^(bits-1) for a symmetric scheme), and g_idx
// from weight_g_idx where it is given without a -1, else k/groupSize.
func (l *Linear) ToGPTQ() (*gptq.Linear, error) {
	K, N, bits := l.K, l.N, l.Weights.NumBits
	pf := 32 / bits
	gs := l.Weights.GroupSize
	G := gptq.Groups(K, gs)
	if G == 0 || N <= 0 || K%pf != 0 || N%pf != 0 {
		return nil, fmt.Errorf("compressed-tensors: [N %d, K %d] at %d bits: both must be multiples of %d (padded packing is not read)", N, K, bits, pf)
	}
	switch {
	case len(l.Packed) != N*K/pf:
		return nil, fmt.Errorf("compressed-tensors: weight_packed: %w: %d elements, want [%d %d]", gptq.ErrShape, len(l.Packed), N, K/pf)
	case len(l.Scale) != N*G:
		return nil, fmt.Errorf("compressed-tensors: weight_scale: %w: %d elements, want [%d %d]", gptq.ErrShape, len(l.Scale), N, G)
	case !l.Weights.Symmetric && len(l.Zero) != N/pf*G:
		return nil, fmt.Errorf("compressed-tensors: weight_zero_point: %w: %d elements, want [%d %d]", gptq.ErrShape, len(l.Zero), N/pf, G)
	case l.GIdx != nil && len(l.GIdx) != K:
		return nil, fmt.Errorf("compressed-tensors: weight_g_idx: %w: %d elements, want [%d]", gptq.ErrShape, len(l.GIdx), K)
	}
	mask := uint32(1)<<bits - 1
	// codes [K, N]: weight_packed row n, word k/pf, field k%pf.
	q := make([]uint8, K*N)
	for n := range N {
		row := l.Packed[n*K/pf : (n+1)*K/pf]
		for k := range K {
			q[k*N+n] = uint8(uint32(row[k/pf]) >> (bits * (k % pf)) & mask)
		}
	}
	// zero points [G, N]: weight_zero_point row n/pf, column g, field n%pf.
	z := make([]uint8, G*N)
	for g := range G {
		for n := range N {
			if l.Weights.Symmetric {
				z[g*N+n] = uint8(1 << (bits - 1))
				continue
			}
			z[g*N+n] = uint8(uint32(l.Zero[(n/pf)*G+g]) >> (bits * (n % pf)) & mask)
		}
	}
	out := &gptq.Linear{K: K, N: N, Bits: bits, GroupSize: gs, Format: gptq.FormatV2, Scales: make([]uint16, G*N)}
	for n := range N {
		for g := range G {
			out.Scales[g*N+n] = l.Scale[n*G+g]
		}
	}
	var err error
	if out.QWeight, err = gptq.PackQWeight(q, K, N, bits); err != nil {
		return nil, fmt.Errorf("compressed-tensors: %w", err)
	}
	if out.QZeros, err = gptq.PackQZeros(z, G, N, bits, gptq.FormatV2); err != nil {
		return nil, fmt.Errorf("compressed-tensors: %w", err)
	}
	if l.GIdx != nil && !slices.Contains(l.GIdx, -1) {
		out.GIdx = l.GIdx
	} else {
		out.GIdx = gptq.GIdx(K, gs, nil, false)
	}
	return out, nil
}
