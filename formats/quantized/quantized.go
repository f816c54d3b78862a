package quantized

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/gptqtool/gptqtool/formats/awq"
	"github.com/gptqtool/gptqtool/formats/compressed"
	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/weights"
)

// Method is a quantization method, as quant_method spells it.
type Method string

// The methods ReadConfig recognises.
const (
	GPTQ              Method = "gptq"
	AWQ               Method = "awq"
	CompressedTensors Method = "compressed-tensors"
)

// Config is a checkpoint directory's quantization config.
type Config struct {
	Method Method
	// Source is the path of the file the config came from.
	Source string
	// GPTQ is the config of a GPTQ checkpoint (Method GPTQ) as read; for
	// the other methods Open returns the GPTQ config they read as.
	GPTQ *gptq.QuantizeConfig
	// AWQ is set for Method AWQ, Compressed for CompressedTensors.
	AWQ        *awq.Config
	Compressed *compressed.Config
}

// ReadConfig reads the quantization config of the checkpoint in dir (see
// the package doc for where it looks). A directory without any returns an
// error wrapping gptq.ErrNotQuantized.
func ReadConfig(dir string) (*Config, error) {
	cfgFile := filepath.Join(dir, "config.json")
	block, method, err := configBlock(cfgFile)
	if err != nil {
		return nil, err
	}
	where := cfgFile + ": quantization_config"
	switch method {
	case string(AWQ):
		c, err := awq.ParseConfig(block, where)
		if err != nil {
			return nil, err
		}
		if err := awqAgreement(dir, c); err != nil {
			return nil, err
		}
		return &Config{Method: AWQ, Source: cfgFile, AWQ: c}, nil
	case string(CompressedTensors):
		c, err := compressed.ParseConfig(block, where)
		if err != nil {
			return nil, err
		}
		return &Config{Method: CompressedTensors, Source: cfgFile, Compressed: c}, nil
	}
	// AutoAWQ's own quant_config.json has no quant_method: its version and
	// zero_point keys, which no GPTQ tool writes, tell it apart.
	if _, err := os.Stat(filepath.Join(dir, "quantize_config.json")); errors.Is(err, fs.ErrNotExist) && method == "" {
		file := filepath.Join(dir, "quant_config.json")
		if data, isAWQ, err := awqFile(file); err != nil {
			return nil, err
		} else if isAWQ {
			c, err := awq.ParseConfig(data, file)
			if err != nil {
				return nil, err
			}
			return &Config{Method: AWQ, Source: file, AWQ: c}, nil
		}
	}
	qc, src, err := gptq.ReadQuantizeConfig(dir)
	if err != nil {
		return nil, err
	}
	return &Config{Method: GPTQ, Source: src, GPTQ: qc}, nil
}

// configBlock returns config.json's quantization_config block and its
// quant_method ("" where either is absent).
func configBlock(file string) (json.RawMessage, string, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	var doc struct {
		Q json.RawMessage `json:"quantization_config"`
	}
	if err := json.Unmarshal(data, &doc); err != nil || len(doc.Q) == 0 || string(bytes.TrimSpace(doc.Q)) == "null" {
		return nil, "", nil // (package gptq and hfconfig report a bad config.json)
	}
	var m struct {
		Method string `json:"quant_method"`
	}
	_ = json.Unmarshal(doc.Q, &m)
	return doc.Q, strings.ToLower(m.Method), nil
}

// awqFile reads file and reports whether it is an AWQ config: quant_method
// "awq", or none and AutoAWQ's version or zero_point key.
func awqFile(file string) ([]byte, bool, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var doc map[string]json.RawMessage
	if json.Unmarshal(data, &doc) != nil {
		return data, false, nil // (package gptq reports it)
	}
	if m, ok := doc["quant_method"]; ok {
		var s string
		_ = json.Unmarshal(m, &s)
		return data, strings.ToLower(s) == string(AWQ), nil
	}
	_, v := doc["version"]
	_, z := doc["zero_point"]
	return data, v || z, nil
}

// awqAgreement refuses a quant_config.json beside config.json's AWQ block
// that reads the tensors otherwise (AutoAWQ reads one, transformers and
// vLLM the other).
func awqAgreement(dir string, c *awq.Config) error {
	file := filepath.Join(dir, "quant_config.json")
	data, isAWQ, err := awqFile(file)
	if err != nil || !isAWQ {
		return err
	}
	o, err := awq.ParseConfig(data, file)
	if err != nil {
		return err
	}
	if o.Bits != c.Bits || o.GroupSize != c.GroupSize || o.Version != c.Version || o.ZeroPoint != c.ZeroPoint {
		return fmt.Errorf("awq: %s (bits %d, group_size %d, version %s) disagrees with %s (bits %d, group_size %d, version %s)",
			file, o.Bits, o.GroupSize, o.Version, c.File, c.Bits, c.GroupSize, c.Version)
	}
	return nil
}

// Open returns set, the checkpoint's weights, as the GPTQ checkpoint it
// reads as, and that checkpoint's config: a GPTQ checkpoint's own, or for
// AWQ and compressed-tensors a view (see the package doc). linears names
// the model's Linear modules with their sizes (decoder layers' and, where
// it has its own, lm_head): each is checked against the config (quantized
// or left unquantized as it says, a layer's at least; lm_head of an AWQ
// checkpoint as its tensors say, since AutoAWQ never quantizes it and
// lists it nowhere) and its tensors' dtypes and shapes against its sizes,
// before any tensor's data is read. The view is closed with set.
func (c *Config) Open(set weights.Set, linears []gptq.LinearShape) (weights.Set, *gptq.QuantizeConfig, error) {
	if c.Method == GPTQ {
		return set, c.GPTQ, nil
	}
	v := &view{Set: set, method: c.Method, infos: map[string]safetensors.TensorInfo{}, hidden: map[string]bool{}, mods: map[string]*module{}}
	for _, ti := range set.Infos() {
		v.infos[ti.Name] = ti
	}
	qc := gptq.DefaultQuantizeConfig()
	qc.CheckpointFormat = string(gptq.FormatV2)
	qc.DescAct = false
	first := ""
	for _, l := range linears {
		m, err := v.module(c, l)
		if err != nil {
			return nil, nil, err
		}
		if m == nil {
			if l.Name != "lm_head" {
				qc.Dynamic = append(qc.Dynamic, gptq.DynamicRule{Pattern: regexp.QuoteMeta(l.Name) + "$", Skip: true})
			}
			continue
		}
		bits, gs, sym := m.bits, m.groupSize, m.sym
		if first == "" {
			first, qc.Bits, qc.GroupSize, qc.Sym = l.Name, bits, gs, sym
			qc.DescAct = m.actOrder
		} else if bits != qc.Bits || gs != qc.GroupSize || sym != qc.Sym {
			return nil, nil, fmt.Errorf("%s: %s: %s is quantized with %d bits, group size %d, symmetric %v, %s with %d, %d, %v: one GPTQ config holds one scheme",
				c.Method, c.Source, l.Name, bits, gs, sym, first, qc.Bits, qc.GroupSize, qc.Sym)
		}
		if l.Name == "lm_head" {
			qc.LMHead = true
		}
		v.mods[l.Name] = m
		qw, qz, sc, gi, err := gptq.ShapesFor(l.K, l.N, bits, gs)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %s: %w", c.Method, l.Name, err)
		}
		for _, s := range m.src {
			v.hidden[s] = true
			delete(v.infos, s)
		}
		for _, t := range []struct {
			suffix string
			dt     safetensors.DType
			shape  []int
		}{{"qweight", safetensors.I32, qw[:]}, {"qzeros", safetensors.I32, qz[:]}, {"scales", safetensors.F16, sc[:]}, {"g_idx", safetensors.I32, gi[:1]}} {
			name := l.Name + "." + t.suffix
			if _, ok := v.infos[name]; ok {
				return nil, nil, fmt.Errorf("%s: tensor %q: not a tensor of the %s format", c.Method, name, c.Method)
			}
			v.infos[name] = safetensors.TensorInfo{Name: name, DType: t.dt, Shape: slices.Clone(t.shape)}
		}
	}
	if first == "" {
		return nil, nil, fmt.Errorf("%s: %s: no Linear module is stored quantized", c.Method, c.Source)
	}
	v.names = slices.Sorted(maps.Keys(v.infos))
	return v, &qc, nil
}

// module is one quantized Linear of the view: how to read it.
type module struct {
	name          string
	K, N          int
	bits          int
	groupSize     int
	sym, actOrder bool
	src           []string // the checkpoint's tensors it replaces
	read          func(v *view) (*gptq.Linear, error)
}

// module checks Linear l against the config and returns how to read it,
// or nil where it is left unquantized.
func (v *view) module(c *Config, l gptq.LinearShape) (*module, error) {
	switch c.Method {
	case AWQ:
		return v.awqModule(c.AWQ, l)
	case CompressedTensors:
		return v.ctModule(c.Compressed, l)
	}
	return nil, fmt.Errorf("quantized: method %q", c.Method)
}

// want checks that tensor name exists with dtype among dts and shape.
// hint says where the wanted shape comes from.
func (v *view) want(method Method, name, hint string, shape []int, dts ...safetensors.DType) (safetensors.TensorInfo, error) {
	ti, ok := v.infos[name]
	if !ok {
		return ti, fmt.Errorf("%s: tensor %q: missing: %w", method, name, fs.ErrNotExist)
	}
	if !slices.Contains(dts, ti.DType) || !slices.Equal(ti.Shape, shape) {
		return ti, fmt.Errorf("%s: %s: tensor %q: %s %v, want %s %v (%s)", method, v.fileOf(name), name, ti.DType, ti.Shape, dts[0], shape, hint)
	}
	return ti, nil
}

// fileOf names the file holding the checkpoint's tensor name.
func (v *view) fileOf(name string) string {
	if t, err := v.Set.Tensor(name); err == nil {
		return t.File
	}
	return "weights"
}

func (v *view) awqModule(c *awq.Config, l gptq.LinearShape) (*module, error) {
	name := l.Name
	_, quantized := v.infos[name+".qweight"]
	_, plain := v.infos[name+".weight"]
	skipped := c.Skipped(name)
	switch {
	case quantized && plain:
		return nil, fmt.Errorf("awq: %s: both %s.qweight and %s.weight are stored", v.fileOf(name+".qweight"), name, name)
	case quantized && skipped:
		return nil, fmt.Errorf("awq: %s: modules_to_not_convert %q leaves %s unquantized, but %s stores %s.qweight", c.File, c.ModulesToNotConvert, name, v.fileOf(name+".qweight"), name)
	case !quantized && name == "lm_head":
		return nil, nil
	case !quantized && !skipped && plain:
		return nil, fmt.Errorf("awq: %s: %s is stored unquantized (%s.weight), but modules_to_not_convert %q does not name it", v.fileOf(name+".weight"), name, name, c.ModulesToNotConvert)
	case !quantized && !skipped:
		return nil, fmt.Errorf("awq: tensor %q: missing: %w", name+".qweight", fs.ErrNotExist)
	case !quantized:
		return nil, nil
	}
	K, N, gs := l.K, l.N, c.GroupSize
	G := gptq.Groups(K, gs)
	hint := fmt.Sprintf("K %d, N %d, group_size %d of %s", K, N, gs, c.File)
	if N%8 != 0 {
		return nil, fmt.Errorf("awq: %s: N %d is not a multiple of 8", name, N)
	}
	if _, err := v.want(AWQ, name+".qweight", hint, []int{K, N / 8}, safetensors.I32); err != nil {
		return nil, err
	}
	if _, err := v.want(AWQ, name+".qzeros", hint, []int{G, N / 8}, safetensors.I32); err != nil {
		return nil, err
	}
	if _, err := v.want(AWQ, name+".scales", hint, []int{G, N}, safetensors.F16, safetensors.BF16, safetensors.F32); err != nil {
		return nil, err
	}
	if _, ok := v.infos[name+".g_idx"]; ok {
		return nil, fmt.Errorf("awq: %s: tensor %q: AWQ stores no g_idx (a GPTQ tensor?)", v.fileOf(name+".g_idx"), name+".g_idx")
	}
	return &module{name: name, K: K, N: N, bits: awq.Bits, groupSize: gs,
		src: []string{name + ".qweight", name + ".qzeros", name + ".scales"},
		read: func(v *view) (*gptq.Linear, error) {
			qw, err := v.ints(name + ".qweight")
			if err != nil {
				return nil, err
			}
			qz, err := v.ints(name + ".qzeros")
			if err != nil {
				return nil, err
			}
			sc, err := v.scales(name + ".scales")
			if err != nil {
				return nil, err
			}
			l, err := awq.ToGPTQ(qw, qz, sc, K, N, gs)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			return l, nil
		}}, nil
}

func (v *view) ctModule(c *compressed.Config, l gptq.LinearShape) (*module, error) {
	name := l.Name
	_, quantized := v.infos[name+".weight_packed"]
	_, plain := v.infos[name+".weight"]
	w, group := c.Scheme(name)
	switch {
	case quantized && plain:
		return nil, fmt.Errorf("compressed-tensors: %s: both %s.weight_packed and %s.weight are stored", v.fileOf(name+".weight_packed"), name, name)
	case quantized && w == nil:
		return nil, fmt.Errorf("compressed-tensors: %s: no config group targets %s, or ignore %q lists it, but %s stores %s.weight_packed", c.File, name, c.Ignore, v.fileOf(name+".weight_packed"), name)
	case !quantized && w != nil && plain:
		return nil, fmt.Errorf("compressed-tensors: %s: %s is stored unquantized (%s.weight), but config_groups.%s targets it and ignore %q does not list it", v.fileOf(name+".weight"), name, name, group, c.Ignore)
	case !quantized && w != nil:
		return nil, fmt.Errorf("compressed-tensors: tensor %q: missing: %w", name+".weight_packed", fs.ErrNotExist)
	case !quantized:
		return nil, nil
	}
	K, N, bits, gs := l.K, l.N, w.NumBits, w.GroupSize
	pf := 32 / bits
	G := gptq.Groups(K, gs)
	where := fmt.Sprintf("config_groups.%s", group)
	hint := fmt.Sprintf("K %d, N %d, %d bits, group_size %d of %s %s", K, N, bits, gs, c.File, where)
	if K%pf != 0 || N%pf != 0 {
		return nil, fmt.Errorf("compressed-tensors: %s: [N %d, K %d] at %d bits (%s): both must be multiples of %d", name, N, K, bits, where, pf)
	}
	if gs > 0 && K%gs != 0 {
		return nil, fmt.Errorf("compressed-tensors: %s: K %d is not a multiple of %s.weights.group_size %d", name, K, where, gs)
	}
	if _, err := v.want(CompressedTensors, name+".weight_packed", hint, []int{N, K / pf}, safetensors.I32); err != nil {
		return nil, err
	}
	if _, err := v.want(CompressedTensors, name+".weight_scale", hint, []int{N, G}, safetensors.F16, safetensors.BF16, safetensors.F32); err != nil {
		return nil, err
	}
	src := []string{name + ".weight_packed", name + ".weight_scale"}
	_, hasZero := v.infos[name+".weight_zero_point"]
	switch {
	case !w.Symmetric:
		if _, err := v.want(CompressedTensors, name+".weight_zero_point", hint, []int{N / pf, G}, safetensors.I32); err != nil {
			return nil, err
		}
		src = append(src, name+".weight_zero_point")
	case hasZero:
		return nil, fmt.Errorf("compressed-tensors: %s: tensor %q: %s.weights.symmetric is true, which stores no zero point", v.fileOf(name+".weight_zero_point"), name+".weight_zero_point", where)
	}
	_, hasGIdx := v.infos[name+".weight_g_idx"]
	if hasGIdx {
		if _, err := v.want(CompressedTensors, name+".weight_g_idx", hint, []int{K}, safetensors.I32); err != nil {
			return nil, err
		}
		src = append(src, name+".weight_g_idx")
	}
	_, hasShape := v.infos[name+".weight_shape"]
	if hasShape {
		if _, err := v.want(CompressedTensors, name+".weight_shape", hint, []int{2}, safetensors.DType("I64"), safetensors.I32); err != nil {
			return nil, err
		}
		src = append(src, name+".weight_shape")
	}
	weights := *w
	return &module{name: name, K: K, N: N, bits: bits, groupSize: gs, sym: w.Symmetric, actOrder: w.ActOrder == "group",
		src: src,
		read: func(v *view) (*gptq.Linear, error) {
			if hasShape {
				t, err := v.Set.Tensor(name + ".weight_shape")
				if err != nil {
					return nil, err
				}
				size := t.DType.Size()
				var dims [2]int64
				for i := range dims {
					if size == 8 {
						dims[i] = int64(binary.LittleEndian.Uint64(t.Data[8*i:]))
					} else {
						dims[i] = int64(int32(binary.LittleEndian.Uint32(t.Data[4*i:])))
					}
				}
				if dims != [2]int64{int64(N), int64(K)} {
					return nil, fmt.Errorf("compressed-tensors: %s: tensor %q: %v, want [%d %d]", t.File, t.Name, dims, N, K)
				}
			}
			l := compressed.Linear{K: K, N: N, Weights: weights}
			var err error
			if l.Packed, err = v.ints(name + ".weight_packed"); err != nil {
				return nil, err
			}
			if l.Scale, err = v.scales(name + ".weight_scale"); err != nil {
				return nil, err
			}
			if !weights.Symmetric {
				if l.Zero, err = v.ints(name + ".weight_zero_point"); err != nil {
					return nil, err
				}
			}
			if hasGIdx {
				if l.GIdx, err = v.ints(name + ".weight_g_idx"); err != nil {
					return nil, err
				}
			}
			g, err := l.ToGPTQ()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			return g, nil
		}}, nil
}

// view is a checkpoint's weights with its quantized Linears read as GPTQ.
type view struct {
	weights.Set
	method Method
	names  []string
	infos  map[string]safetensors.TensorInfo // the view's tensors
	hidden map[string]bool                   // the checkpoint's tensors the view replaces
	mods   map[string]*module

	mu    sync.Mutex
	last  string // the module whose GPTQ tensors cached holds
	cache map[string]safetensors.Tensor
}

// Names lists the view's tensors, sorted.
func (v *view) Names() []string { return slices.Clone(v.names) }

// Infos lists the view's tensors' dtypes and shapes, sorted by name.
func (v *view) Infos() []safetensors.TensorInfo {
	out := make([]safetensors.TensorInfo, len(v.names))
	for i, n := range v.names {
		out[i] = v.infos[n]
	}
	return out
}

type notInView struct{}

func (notInView) Error() string        { return "not in the checkpoint" }
func (notInView) Is(target error) bool { return target == fs.ErrNotExist }

// Tensor returns the view's tensor name: a quantized Linear's GPTQ tensor
// (its module converted once for its four tensors), or the checkpoint's
// own.
func (v *view) Tensor(name string) (safetensors.Tensor, error) {
	module, suffix := name, ""
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		module, suffix = name[:i], name[i+1:]
	}
	m, ok := v.mods[module]
	switch {
	case ok && (suffix == "qweight" || suffix == "qzeros" || suffix == "scales" || suffix == "g_idx"):
		return v.gptqTensor(m, name)
	case v.hidden[name]:
		return safetensors.Tensor{}, fmt.Errorf("tensor %q: %w", name, notInView{})
	}
	return v.Set.Tensor(name)
}

func (v *view) gptqTensor(m *module, name string) (safetensors.Tensor, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.last != m.name {
		l, err := m.read(v)
		if err != nil {
			return safetensors.Tensor{}, err
		}
		file := v.fileOf(m.src[0]) // (the packed codes' file: read already)
		// (Damaged scales are left to the reader's own Validate, which
		// names them, as in a GPTQ checkpoint.)
		if err := l.Validate(m.name); err != nil && !errors.Is(err, gptq.ErrBadScale) {
			return safetensors.Tensor{}, fmt.Errorf("%s: %s: %w (the GPTQ form of %s)", v.method, file, err, strings.Join(m.src, ", "))
		}
		v.cache = map[string]safetensors.Tensor{}
		put := func(suffix string, data []byte) {
			n := m.name + "." + suffix
			v.cache[n] = safetensors.Tensor{TensorInfo: v.infos[n], Data: data, File: file}
		}
		put("qweight", i32Bytes(l.QWeight))
		put("qzeros", i32Bytes(l.QZeros))
		put("g_idx", i32Bytes(l.GIdx))
		sc := make([]byte, 2*len(l.Scales))
		for i, s := range l.Scales {
			binary.LittleEndian.PutUint16(sc[2*i:], s)
		}
		put("scales", sc)
		v.last = m.name
	}
	return v.cache[name], nil
}

func i32Bytes(v []int32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
	}
	return b
}

// ints reads the checkpoint's I32 tensor name.
func (v *view) ints(name string) ([]int32, error) {
	t, err := v.Set.Tensor(name)
	if err != nil {
		return nil, err
	}
	return t.Int32()
}

// scales reads the checkpoint's scale tensor name as float16 bits: F16 as
// it is, BF16 or F32 where every value is exactly a float16.
func (v *view) scales(name string) ([]uint16, error) {
	t, err := v.Set.Tensor(name)
	if err != nil {
		return nil, err
	}
	if t.DType == safetensors.F16 {
		out := make([]uint16, len(t.Data)/2)
		for i := range out {
			out[i] = binary.LittleEndian.Uint16(t.Data[2*i:])
		}
		return out, nil
	}
	f, err := t.Float32()
	if err != nil {
		return nil, err
	}
	out := make([]uint16, len(f))
	for i, x := range f {
		h := half.F32ToF16(x)
		if y := half.F16ToF32(h); y != x && !(math.IsNaN(float64(x)) && math.IsNaN(float64(y))) {
			cols := t.Shape[len(t.Shape)-1]
			return nil, fmt.Errorf("%s: %s: tensor %q: element [%d %d] = %g (%s) is not exactly a float16, the scale type of GPTQ and of gptqtool's runtime", v.method, t.File, name, i/cols, i%cols, x, t.DType)
		}
		out[i] = h
	}
	return out, nil
}
