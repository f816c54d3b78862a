package gguf

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
)

// TensorTypeOverride is one of llama-quantize's --tensor-type
// PATTERN=TYPE: the 2-D weights whose GGUF name Pattern matches anywhere
// (std::regex_search) take Type in place of what the mix gives them.
type TensorTypeOverride struct {
	// Pattern is a regular expression in Go's syntax (RE2), matched
	// against the whole GGUF name ("blk.3.ffn_down.weight") unanchored:
	// "ffn_down" matches every layer's, `^blk\.0\.` layer 0's weights.
	Pattern string
	Type    TensorType
}

// String gives the override as the flag reads it: "ffn_down=Q8_0".
func (o TensorTypeOverride) String() string { return o.Pattern + "=" + o.Type.String() }

// ParseTensorTypeOverride reads PATTERN=TYPE as llama-quantize's
// parse_tensor_type does (tools/quantize/quantize.cpp): split at the first
// '=' (so the pattern holds none), the pattern lowercased (so \D, \W, \S
// and \B mean \d, \w, \s and \b there as here), TYPE a ggml type name in
// any case ("q8_0", "Q4_K", "f16"), of the types Convert writes. The
// pattern must compile as Go's RE2. On tensor names (ASCII, one line) an
// RE2 pattern matches wherever llama.cpp's std::regex (ECMAScript) does,
// but RE2 has no backreferences (\1) or lookahead ((?=, (?!), which
// ECMAScript has: such a pattern is refused. RE2 also takes a few forms ECMAScript lacks
// ((?i), (?P<name>…)), which llama-quantize would refuse.
func ParseTensorTypeOverride(s string) (TensorTypeOverride, error) {
	pattern, typ, ok := strings.Cut(s, "=")
	switch {
	case !ok:
		return TensorTypeOverride{}, fmt.Errorf("%q: want PATTERN=TYPE (ffn_down=q8_0)", s)
	case pattern == "":
		return TensorTypeOverride{}, fmt.Errorf("%q: missing tensor name pattern before '='", s)
	case typ == "":
		return TensorTypeOverride{}, fmt.Errorf("%q: missing type after '='", s)
	}
	// llama-quantize lowercases the pattern byte by byte (C tolower).
	pattern = strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, pattern)
	o := TensorTypeOverride{Pattern: pattern}
	t, err := ParseTensorType(typ)
	if err != nil || !t.Convertible() {
		return TensorTypeOverride{}, fmt.Errorf("%q: type %q: want a type gptqtool writes (%s)", s, typ, strings.ToLower(TypeNames()))
	}
	o.Type = t
	if _, err := compileOverride(o); err != nil {
		return TensorTypeOverride{}, fmt.Errorf("%q: %w", s, err)
	}
	return o, nil
}

// compileOverride compiles o's pattern, naming what RE2 lacks of
// llama.cpp's ECMAScript syntax when it does not compile.
func compileOverride(o TensorTypeOverride) (*regexp.Regexp, error) {
	re, err := regexp.Compile(o.Pattern)
	if err != nil {
		return nil, fmt.Errorf("pattern: %w (gptqtool reads Go's RE2 syntax: unlike llama-quantize's ECMAScript, no backreferences or lookaround)", err)
	}
	return re, nil
}

// typeRules is what plan needs to pick each 2-D weight's type as
// llama-quantize's llama_tensor_get_type does (src/llama-quant.cpp).
type typeRules struct {
	opts      ConvertOptions
	cfg       *hfconfig.Config
	imatrix   bool // an importance matrix with entries, after Include/ExcludeWeights
	overrides []*regexp.Regexp
	// typed counts, by kind ("attn_v.weight"), the layers' weights the
	// mix's rules have typed so far: the layer llama.cpp's rules see
	// (Mix.typeAt).
	typed map[string]int
}

// want is the type of the 2-D weight s before weightType's fallback, and
// whether the fallback applies, in llama_tensor_get_type's order:
//
//  1. LeaveOutput: output.weight is not quantized (tensor_allows_quantization:
//     params->quantize_output_tensor), so no fallback either;
//  2. TokenEmbeddingType for token_embd, then OutputType for output.weight;
//  3. for a quantized file type only (ggml_is_quantized(default_type)), the
//     first TensorTypes pattern that matches the name, in the order given;
//     else, without Pure, the mix's rules (llama_tensor_get_type_impl,
//     where a tied token_embd takes OutputType, as the output), a layer's
//     weight typed as the rules' count of the weights of its kind before
//     it gives its layer (a pattern that types some layers' ffn_down
//     moves the later ffn_down's layer rules down, as in llama-quantize);
//     else the base type;
//  4. tensor_type_fallback where rows are not whole blocks.
//
// Where the file type is not quantized (F32, F16, BF16), step 3's
// overrides and Pure do not apply, as in llama-quantize; a tied token_embd
// still takes OutputType there (llama-quantize would leave it in the file's
// type). want must see the weights in llama-quantize's order, layer by
// layer (tensorSpecs').
func (r *typeRules) want(s tensorSpec) (TensorType, bool) {
	o := r.opts
	base := o.Type
	if o.Mix.Name != "" {
		base = o.Mix.Base
	}
	tied := r.cfg.TieWordEmbeddings && s.name == "token_embd.weight"
	switch {
	case o.LeaveOutput && s.name == "output.weight":
		if base.BlockSize() > 1 {
			return TypeF16, false
		}
		return base, false
	case s.name == "token_embd.weight" && o.TokenEmbeddingType != nil:
		return *o.TokenEmbeddingType, true
	case s.name == "output.weight" && o.OutputType != nil:
		return *o.OutputType, true
	case base.BlockSize() == 1:
		if tied && o.OutputType != nil {
			return *o.OutputType, true
		}
		return base, true
	}
	for i, re := range r.overrides {
		if re.MatchString(s.name) {
			return o.TensorTypes[i].Type, true
		}
	}
	switch {
	case o.Pure:
		return base, true
	case tied && o.OutputType != nil:
		return *o.OutputType, true
	case o.Mix.Name != "":
		i := layerOf(s.name)
		if kind := weightKind(s.name); kind != "" {
			// (a stacked ffn_down_exps, and a shared expert's
			// ffn_down_shexp, counts as an ffn_down, as llama.cpp's
			// i_ffn_down counts its category: by name)
			i = r.typed[kind]
			r.typed[kind]++
			if r.cfg.MoE != nil && !o.Mix.lowIQ && (kind == "ffn_down.weight" || kind == "ffn_gate.weight" || kind == "ffn_up.weight") {
				// With experts llama.cpp's layer_info takes these
				// kinds' layer from the name, not the count (but in
				// the 1- and 2-bit IQ branch, which counts ffn_down).
				i = layerOf(s.name)
			}
		}
		return o.Mix.typeAt(s.name, i, r.cfg, r.imatrix), true
	}
	return base, true
}

// newTypeRules checks the per-tensor options of opts against the model's
// tensors specs and returns the rules plan applies: each TensorTypes entry
// of a type Convert writes, its pattern compiling and matching a 2-D
// weight; LeaveOutput with an output.weight (an untied model) and without
// OutputType. opts.Imatrix is the one Convert weighs with
// (weightedImatrix).
func newTypeRules(cfg *hfconfig.Config, opts ConvertOptions, specs []tensorSpec) (typeRules, error) {
	r := typeRules{opts: opts, cfg: cfg, imatrix: opts.Imatrix != nil, typed: map[string]int{}}
	for _, o := range opts.TensorTypes {
		if !o.Type.Convertible() {
			return r, fmt.Errorf("gguf convert: --tensor-type %s: type %s: want %s", o, o.Type, TypeNames())
		}
		re, err := compileOverride(o)
		if err != nil {
			return r, fmt.Errorf("gguf convert: --tensor-type %s: %w", o, err)
		}
		if !slices.ContainsFunc(specs, func(s tensorSpec) bool { return s.weight() && re.MatchString(s.name) }) {
			return r, fmt.Errorf("gguf convert: --tensor-type %s: the pattern matches none of the model's 2-D weights (token_embd.weight, blk.N.attn_q.weight, …, blk.N.ffn_down.weight, output.weight)", o)
		}
		r.overrides = append(r.overrides, re)
	}
	if opts.LeaveOutput {
		switch {
		case cfg.TieWordEmbeddings:
			return r, fmt.Errorf("gguf convert: --leave-output-tensor: %s ties the output to token_embd.weight (tie_word_embeddings), so there is no output.weight to leave unquantized: --token-embedding-type f16 keeps the tied weight in F16", cfg.File)
		case opts.OutputType != nil:
			return r, fmt.Errorf("gguf convert: --leave-output-tensor leaves output.weight unquantized, --output-tensor-type %s would quantize it: drop one of them", *opts.OutputType)
		}
	}
	return r, nil
}

// weightedImatrix returns the importance matrix Convert quantizes with:
// Imatrix, less the entries whose name contains an ExcludeWeights string,
// or only those whose name contains an IncludeWeights string, as
// llama-quantize's prepare_imatrix does (substring match,
// std::string::find); nil when none is left, as llama-quantize then
// quantizes without one. Both lists at once, either without an importance
// matrix, or a string that is in no entry's name is an error.
func (o ConvertOptions) weightedImatrix() (*Imatrix, error) {
	in, ex := o.IncludeWeights, o.ExcludeWeights
	switch {
	case len(in) == 0 && len(ex) == 0:
		return o.Imatrix, nil
	case len(in) > 0 && len(ex) > 0:
		return nil, fmt.Errorf("gguf convert: --include-weights %s and --exclude-weights %s: use one of them, as llama-quantize", strings.Join(in, ","), strings.Join(ex, ","))
	}
	flag, names := "--include-weights", in
	if len(ex) > 0 {
		flag, names = "--exclude-weights", ex
	}
	if o.Imatrix == nil {
		return nil, fmt.Errorf("gguf convert: %s %s selects the importance matrix's entries: add --imatrix FILE", flag, strings.Join(names, ","))
	}
	m := *o.Imatrix
	m.Entries = map[string]ImatrixEntry{}
	for _, s := range names {
		found := false
		for name, e := range o.Imatrix.Entries {
			if strings.Contains(name, s) {
				found = true
				if len(in) > 0 {
					m.Entries[name] = e
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("gguf convert: %s %s: no entry of the importance matrix has it in its name (its entries: %s)", flag, s, someEntries(o.Imatrix))
		}
	}
	if len(ex) > 0 {
		for name, e := range o.Imatrix.Entries {
			if !slices.ContainsFunc(ex, func(s string) bool { return strings.Contains(name, s) }) {
				m.Entries[name] = e
			}
		}
	}
	if len(m.Entries) == 0 {
		return nil, nil
	}
	return &m, nil
}

// someEntries names an importance matrix's first entries in sorted order.
func someEntries(m *Imatrix) string {
	names := slices.Sorted(maps.Keys(m.Entries))
	switch {
	case len(names) == 0:
		return "none"
	case len(names) > 3:
		names = append(names[:3], "…")
	}
	return strings.Join(names, ", ")
}
