package gptq

import (
	"bytes"
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
)

// ErrNotQuantized is wrapped by ReadQuantizeConfig when a directory has no
// GPTQ configuration at all (a floating-point checkpoint).
var ErrNotQuantized = errors.New("no GPTQ quantization config")

// QuantizeConfig is the GPTQ configuration of a checkpoint: the keys of
// AutoGPTQ's quantize_config.json (spec §2.1).
type QuantizeConfig struct {
	Bits              int
	GroupSize         int // -1: one group over all of K
	DampPercent       float64
	DescAct           bool
	StaticGroups      bool
	Sym               bool
	TrueSequential    bool
	ModelNameOrPath   *string
	ModelFileBaseName *string
	QuantMethod       string // "gptq"
	CheckpointFormat  string // "gptq" (v1) or "gptq_v2"
	// LMHead reports a GPTQModel checkpoint whose lm_head is quantized too
	// (GPTQModel's lm_head key). Read only; not written by MarshalQuantizeConfig.
	LMHead bool
	// Dynamic is GPTQModel's dynamic key, its rules in file order: a
	// module takes the first rule whose pattern Python's re.match matches
	// at the start of its name (GPTQModel dynamic_get, vLLM
	// get_dynamic_override). Only skip rules ("-:") are written.
	Dynamic []DynamicRule
	// ModulesInBlockToQuantize is optimum's modules_in_block_to_quantize:
	// the module names inside a decoder layer ("self_attn.q_proj") that are
	// quantized, grouped as the quantizer ran them; nil quantizes all.
	// transformers/optimum quantize a Linear whose name ends with one of
	// them; vLLM one whose name contains one.
	ModulesInBlockToQuantize [][]string
}

// DynamicRule is one entry of GPTQModel's dynamic key.
type DynamicRule struct {
	// Pattern is the regular expression without its "-:" or "+:" prefix.
	Pattern string
	// Skip marks a "-:" rule: the matching modules are left unquantized
	// (stored as module.weight).
	Skip bool
}

// Skipped reports whether the checkpoint leaves the Linear module (its
// full name, "model.layers.0.mlp.down_proj") unquantized: the first
// dynamic rule matching it is a "-:" rule, or modules_in_block_to_quantize
// is given and no entry ends the name. A pattern that Go's RE2 cannot
// compile (Python-only syntax) is an error.
func (c QuantizeConfig) Skipped(module string) (bool, error) {
	for _, r := range c.Dynamic {
		re, err := matchRule(r.Pattern)
		if err != nil {
			return false, err
		}
		if re.MatchString(module) {
			if r.Skip {
				return true, nil
			}
			break
		}
	}
	if len(c.ModulesInBlockToQuantize) == 0 {
		return false, nil
	}
	for _, g := range c.ModulesInBlockToQuantize {
		for _, m := range g {
			if strings.HasSuffix(module, m) {
				return false, nil
			}
		}
	}
	return true, nil
}

// ruleRegexps caches matchRule's compiled patterns: Skipped runs for
// every module of every layer (the plan, the writer, verify).
var ruleRegexps sync.Map // pattern -> *regexp.Regexp

// matchRule compiles a dynamic rule's pattern as Python's re.match reads
// it (anchored at the start only), once per pattern.
func matchRule(pattern string) (*regexp.Regexp, error) {
	if re, ok := ruleRegexps.Load(pattern); ok {
		return re.(*regexp.Regexp), nil
	}
	re, err := regexp.Compile(`^(?:` + pattern + `)`)
	if err != nil {
		return nil, fmt.Errorf("dynamic %q: %w", pattern, err)
	}
	ruleRegexps.Store(pattern, re)
	return re, nil
}

// DefaultQuantizeConfig returns AutoGPTQ's BaseQuantizeConfig defaults
// (spec §2.1): 4 bits, group_size -1, damp_percent 0.01, desc_act true,
// static_groups false, sym true, true_sequential true, quant_method "gptq",
// checkpoint_format "gptq".
func DefaultQuantizeConfig() QuantizeConfig {
	return QuantizeConfig{
		Bits:             4,
		GroupSize:        -1,
		DampPercent:      0.01,
		DescAct:          true,
		StaticGroups:     false,
		Sym:              true,
		TrueSequential:   true,
		QuantMethod:      "gptq",
		CheckpointFormat: string(FormatV1),
	}
}

// Format returns the checkpoint format as a Format ("" reads as FormatV1).
func (c QuantizeConfig) Format() Format {
	if c.CheckpointFormat == "" {
		return FormatV1
	}
	return Format(c.CheckpointFormat)
}

// Validate checks the values AutoGPTQ checks, plus the method and format this
// package can read.
func (c QuantizeConfig) Validate() error {
	if err := CheckBits(c.Bits); err != nil {
		return fmt.Errorf("quantize config: %w", err)
	}
	if c.GroupSize != -1 && c.GroupSize <= 0 {
		return fmt.Errorf("quantize config: group_size %d: want -1 or a positive integer", c.GroupSize)
	}
	if !(c.DampPercent > 0 && c.DampPercent < 1) {
		return fmt.Errorf("quantize config: damp_percent %g: want a value in (0, 1)", c.DampPercent)
	}
	if c.QuantMethod != "gptq" {
		return fmt.Errorf("quantize config: quant_method %q: only \"gptq\" is supported", c.QuantMethod)
	}
	if f := c.Format(); f != FormatV1 && f != FormatV2 {
		return fmt.Errorf("quantize config: checkpoint_format %q: want %q or %q", c.CheckpointFormat, FormatV1, FormatV2)
	}
	return nil
}

// quantizeConfigJSON fixes the key order of AutoGPTQ's to_dict (spec §2.1).
type quantizeConfigJSON struct {
	Bits              int     `json:"bits"`
	GroupSize         int     `json:"group_size"`
	DampPercent       float64 `json:"damp_percent"`
	DescAct           bool    `json:"desc_act"`
	StaticGroups      bool    `json:"static_groups"`
	Sym               bool    `json:"sym"`
	TrueSequential    bool    `json:"true_sequential"`
	ModelNameOrPath   *string `json:"model_name_or_path"`
	ModelFileBaseName *string `json:"model_file_base_name"`
	QuantMethod       string  `json:"quant_method"`
	CheckpointFormat  string  `json:"checkpoint_format"`
	// (GPTQModel's and optimum's keys, written where a module is left
	// unquantized.)
	Dynamic                  dynamicJSON `json:"dynamic,omitempty"`
	ModulesInBlockToQuantize [][]string  `json:"modules_in_block_to_quantize,omitempty"`
}

// dynamicJSON renders dynamic rules as GPTQModel writes them, in order:
// {"-:pattern": {}}.
type dynamicJSON []DynamicRule

func (d dynamicJSON) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, r := range d {
		if !r.Skip {
			return nil, fmt.Errorf("dynamic %q: only skip (\"-:\") rules are written", r.Pattern)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal("-:" + r.Pattern)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteString(":{}")
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// MarshalQuantizeConfig renders quantize_config.json with every AutoGPTQ key
// in AutoGPTQ's order and a 2-space indent (spec §2.1). An empty QuantMethod
// or CheckpointFormat is written as "gptq".
func (c QuantizeConfig) MarshalQuantizeConfig() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	v := quantizeConfigJSON{
		Bits: c.Bits, GroupSize: c.GroupSize, DampPercent: c.DampPercent,
		DescAct: c.DescAct, StaticGroups: c.StaticGroups, Sym: c.Sym, TrueSequential: c.TrueSequential,
		ModelNameOrPath: c.ModelNameOrPath, ModelFileBaseName: c.ModelFileBaseName,
		QuantMethod: c.QuantMethod, CheckpointFormat: string(c.Format()),
		Dynamic: c.Dynamic, ModulesInBlockToQuantize: c.ModulesInBlockToQuantize,
	}
	return marshalIndent(v)
}

// MarshalQuantizeConfigWith is MarshalQuantizeConfig followed by the keys
// of extra that it does not write itself, sorted: keys of another tool's
// config that convert carries over (GPTQModel's dynamic, lm_head, meta).
func (c QuantizeConfig) MarshalQuantizeConfigWith(extra map[string]any) ([]byte, error) {
	b, err := c.MarshalQuantizeConfig()
	if err != nil || len(extra) == 0 {
		return b, err
	}
	var written map[string]json.RawMessage
	if err := json.Unmarshal(b, &written); err != nil {
		return nil, err
	}
	keys := slices.Sorted(maps.Keys(extra))
	keys = slices.DeleteFunc(keys, func(k string) bool { _, ok := written[k]; return ok })
	if len(keys) == 0 {
		return b, nil
	}
	// b ends in "\n}\n": the extra keys go before the closing brace.
	out := bytes.TrimSuffix(bytes.TrimRight(b, "\n"), []byte("}"))
	out = bytes.TrimRight(out, "\n")
	for _, k := range keys {
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		v, err := marshalIndent(extra[k])
		if err != nil {
			return nil, fmt.Errorf("quantize_config.json: key %s: %w", kb, err)
		}
		v = bytes.ReplaceAll(bytes.TrimRight(v, "\n"), []byte("\n"), []byte("\n  "))
		out = append(out, ",\n  "...)
		out = append(append(append(out, kb...), ": "...), v...)
	}
	return append(out, "\n}\n"...), nil
}

func marshalIndent(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ConfigBlock is config.json's quantization_config block as we write it
// (spec §2.4 item 1); json.Marshal renders its keys in this order.
type ConfigBlock struct {
	QuantMethod      string  `json:"quant_method"`
	Bits             int     `json:"bits"`
	GroupSize        int     `json:"group_size"`
	DescAct          bool    `json:"desc_act"`
	Sym              bool    `json:"sym"`
	DampPercent      float64 `json:"damp_percent"`
	TrueSequential   bool    `json:"true_sequential"`
	StaticGroups     bool    `json:"static_groups"`
	CheckpointFormat string  `json:"checkpoint_format"`
	// Dynamic and ModulesInBlockToQuantize as in quantize_config.json
	// (transformers, vLLM and TGI read config.json).
	Dynamic                  dynamicJSON `json:"dynamic,omitempty"`
	ModulesInBlockToQuantize [][]string  `json:"modules_in_block_to_quantize,omitempty"`
}

// ConfigJSONBlock returns the config.json quantization_config block (spec
// §2.4 item 1) as a ConfigBlock. meta is omitted on purpose: GPTQModel reads
// meta.quantizer to recognise its own checkpoints.
func (c QuantizeConfig) ConfigJSONBlock() any {
	qm := c.QuantMethod
	if qm == "" {
		qm = "gptq"
	}
	return ConfigBlock{
		QuantMethod: qm, Bits: c.Bits, GroupSize: c.GroupSize, DescAct: c.DescAct, Sym: c.Sym,
		DampPercent: c.DampPercent, TrueSequential: c.TrueSequential, StaticGroups: c.StaticGroups,
		CheckpointFormat: string(c.Format()),
		Dynamic:          c.Dynamic, ModulesInBlockToQuantize: c.ModulesInBlockToQuantize,
	}
}

// ReadQuantizeConfig reads the GPTQ configuration of a checkpoint directory
// the way AutoGPTQ does: quantize_config.json, else quant_config.json, else
// config.json's quantization_config block. It returns the config and the path
// of the file it came from. With none of them it returns an error wrapping
// ErrNotQuantized. See ParseQuantizeConfig for the keys and defaults.
func ReadQuantizeConfig(dir string) (*QuantizeConfig, string, error) {
	for _, name := range []string{"quantize_config.json", "quant_config.json"} {
		file := filepath.Join(dir, name)
		data, err := os.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, file, fmt.Errorf("gptq: %w", err)
		}
		c, err := ParseQuantizeConfig(data, file)
		return c, file, err
	}
	file := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("gptq: %s: no quantize_config.json, quant_config.json or config.json: %w", dir, ErrNotQuantized)
	}
	if err != nil {
		return nil, file, fmt.Errorf("gptq: %w", err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, file, fmt.Errorf("gptq: %s: invalid JSON: %w", file, err)
	}
	block, ok := doc["quantization_config"]
	if !ok || string(bytes.TrimSpace(block)) == "null" {
		return nil, file, fmt.Errorf("gptq: %s: no quantization_config, and no quantize_config.json or quant_config.json: %w", file, ErrNotQuantized)
	}
	c, err := ParseQuantizeConfig(block, file+": quantization_config")
	return c, file, err
}

// Differences lists, as "key a vs b" joined by "; ", the keys on which two
// configs of one checkpoint differ among those that decide how loaders read
// its tensors and act order (bits, group_size, desc_act, sym, static_groups,
// checkpoint_format); "" when they agree.
func Differences(a, b *QuantizeConfig) string {
	var out []string
	diff := func(key string, x, y any) {
		if x != y {
			out = append(out, fmt.Sprintf("%s %v vs %v", key, x, y))
		}
	}
	diff("bits", a.Bits, b.Bits)
	diff("group_size", a.GroupSize, b.GroupSize)
	diff("desc_act", a.DescAct, b.DescAct)
	diff("sym", a.Sym, b.Sym)
	diff("static_groups", a.StaticGroups, b.StaticGroups)
	diff("checkpoint_format", a.Format(), b.Format())
	return strings.Join(out, "; ")
}

// CheckAgreement returns an error where dir's config.json carries a
// quantization_config that disagrees with qc, read from src (by
// ReadQuantizeConfig: quantize_config.json or quant_config.json), on a key
// that both files give: loaders that read config.json (transformers, vLLM,
// TGI) and those that read quantize_config.json (AutoGPTQ, ExLlama) would
// then read the weights differently. Keys config.json leaves out or sets
// to null are not compared (their defaults differ between loaders); a
// block that does not parse is an error. With tensorsOnly, only the keys
// that decide how the tensors themselves read are compared (bits,
// group_size, sym, checkpoint_format): desc_act and static_groups change
// which kernels some loaders pick, not the values, since g_idx gives each
// row's group.
func CheckAgreement(dir string, qc *QuantizeConfig, src string, tensorsOnly bool) error {
	file := filepath.Join(dir, "config.json")
	if src == "" || filepath.Clean(src) == filepath.Clean(file) {
		return nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil // (config.json itself is read, and its absence reported, elsewhere)
	}
	var doc map[string]json.RawMessage
	if json.Unmarshal(data, &doc) != nil {
		return nil
	}
	block, ok := doc["quantization_config"]
	if !ok || string(bytes.TrimSpace(block)) == "null" {
		return nil
	}
	fromCfg, err := ParseQuantizeConfig(block, file+": quantization_config")
	if err != nil {
		return err
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(block, &keys); err != nil {
		return nil
	}
	given := func(names ...string) bool {
		for _, n := range names {
			if v, ok := keys[n]; ok && string(bytes.TrimSpace(v)) != "null" {
				return true
			}
		}
		return false
	}
	// Compare the keys config.json gives: the rest take qc's values.
	both := *qc
	if given("bits", "w_bit") {
		both.Bits = fromCfg.Bits
	}
	if given("group_size", "q_group_size") {
		both.GroupSize = fromCfg.GroupSize
	}
	if given("desc_act") && !tensorsOnly {
		both.DescAct = fromCfg.DescAct
	}
	if given("sym") {
		both.Sym = fromCfg.Sym
	}
	if given("static_groups") && !tensorsOnly {
		both.StaticGroups = fromCfg.StaticGroups
	}
	if given("checkpoint_format", "format") {
		both.CheckpointFormat = fromCfg.CheckpointFormat
	}
	if d := Differences(qc, &both); d != "" {
		return fmt.Errorf("gptq: %s: quantization_config disagrees with %s (%s vs config.json: %s); loaders read one or the other, so the two must agree", file, filepath.Base(src), filepath.Base(src), d)
	}
	return nil
}

// ParseQuantizeConfig parses one GPTQ config object: quantize_config.json,
// quant_config.json or config.json's quantization_config block; file names it
// in errors. Accepted keys and defaults (AutoGPTQ's, spec §2.1):
//
//	bits (alias w_bit)              required
//	group_size (alias q_group_size) -1
//	damp_percent                    0.01 (GPTQModel's meta.damp_percent also read)
//	desc_act                        true
//	static_groups                   false (also meta.static_groups)
//	sym                             true when absent, as AutoGPTQ (TGI assumes false)
//	true_sequential                 true (also meta.true_sequential)
//	model_name_or_path, model_file_base_name  null
//	quant_method                    "gptq"; anything else is an error
//	checkpoint_format (alias format) "gptq"; "gptq_v2" accepted
//	pack_dtype (GPTQModel)          must be "int32" when present
//	lm_head (GPTQModel)             false
//
// Unknown keys (Transformers' tokenizer, dataset, use_exllama, ...) are ignored.
// The result is validated.
func ParseQuantizeConfig(data []byte, file string) (*QuantizeConfig, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("gptq: %s: invalid JSON: %w", file, err)
	}
	if doc == nil {
		return nil, fmt.Errorf("gptq: %s: got null, want a JSON object", file)
	}
	var meta map[string]json.RawMessage
	if m, ok := doc["meta"]; ok && !isNull(m) {
		if err := json.Unmarshal(m, &meta); err != nil {
			return nil, fmt.Errorf("gptq: %s: meta: want an object: %w", file, err)
		}
	}
	p := parser{doc: doc, meta: meta, file: file}
	c := DefaultQuantizeConfig()
	c.Bits = 0
	if !p.int(&c.Bits, "bits", "w_bit") {
		if _, ok := doc["bits"]; ok {
			p.fail(fmt.Errorf("bits: got null, want an integer"))
		} else {
			p.fail(fmt.Errorf("missing required key \"bits\""))
		}
	}
	p.int(&c.GroupSize, "group_size", "q_group_size")
	p.float(&c.DampPercent, "damp_percent")
	p.bool(&c.DescAct, "desc_act")
	p.bool(&c.StaticGroups, "static_groups")
	p.bool(&c.Sym, "sym")
	p.bool(&c.TrueSequential, "true_sequential")
	p.bool(&c.LMHead, "lm_head")
	c.ModelNameOrPath = p.nullableString("model_name_or_path")
	c.ModelFileBaseName = p.nullableString("model_file_base_name")
	p.string(&c.QuantMethod, "quant_method")
	p.string(&c.CheckpointFormat, "checkpoint_format", "format")
	packDType := "int32"
	p.string(&packDType, "pack_dtype")
	if p.err != nil {
		return nil, p.err
	}
	c.CheckpointFormat = string(c.Format()) // "" reads as "gptq"
	if c.QuantMethod != "gptq" {
		return nil, fmt.Errorf("gptq: %s: quant_method %q: only \"gptq\" checkpoints are supported", file, c.QuantMethod)
	}
	if packDType != "int32" {
		return nil, fmt.Errorf("gptq: %s: pack_dtype %q: only int32 packing is supported", file, packDType)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("gptq: %s: %w", file, err)
	}
	if err := checkDynamic(doc["dynamic"], c); err != nil {
		return nil, fmt.Errorf("gptq: %s: %w", file, err)
	}
	var err error
	if c.Dynamic, err = dynamicRules(doc["dynamic"]); err != nil {
		return nil, fmt.Errorf("gptq: %s: %w", file, err)
	}
	if c.ModulesInBlockToQuantize, err = modulesInBlock(doc["modules_in_block_to_quantize"]); err != nil {
		return nil, fmt.Errorf("gptq: %s: %w", file, err)
	}
	return &c, nil
}

// checkDynamic refuses GPTQModel's per-module overrides (the dynamic key:
// {"[+:|-:]regex": {key: value}}) that change how a module's tensors read,
// its bits or group_size, which gptqtool does not apply: it would read
// such a module with the checkpoint's own. Entries that leave a module
// unquantized ("-:"), or repeat the checkpoint's values, are kept as they
// are.
func checkDynamic(raw json.RawMessage, c QuantizeConfig) error {
	if raw == nil || isNull(raw) {
		return nil
	}
	var dyn map[string]map[string]json.RawMessage
	if err := json.Unmarshal(raw, &dyn); err != nil {
		return fmt.Errorf("dynamic: want an object of {pattern: {key: value}}: %w", err)
	}
	for _, pattern := range slices.Sorted(maps.Keys(dyn)) {
		if strings.HasPrefix(pattern, "-:") {
			continue
		}
		for _, kv := range []struct {
			key  string
			have int
		}{{"bits", c.Bits}, {"group_size", c.GroupSize}} {
			v, ok := dyn[pattern][kv.key]
			if !ok || isNull(v) {
				continue
			}
			var n int
			if err := json.Unmarshal(v, &n); err != nil || n != kv.have {
				return fmt.Errorf("dynamic %q: %s %s, where the checkpoint's is %d: per-module overrides (GPTQModel's dynamic) are not supported", pattern, kv.key, bytes.TrimSpace(v), kv.have)
			}
		}
	}
	return nil
}

// dynamicRules reads the dynamic key's patterns in file order (the first
// match decides, so the order of a JSON object matters here).
func dynamicRules(raw json.RawMessage) ([]DynamicRule, error) {
	if raw == nil || isNull(raw) {
		return nil, nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("dynamic: want an object of {pattern: {key: value}}")
	}
	var rules []DynamicRule
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("dynamic: %w", err)
		}
		key, _ := t.(string)
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			return nil, fmt.Errorf("dynamic %q: %w", key, err)
		}
		r := DynamicRule{Pattern: strings.TrimPrefix(key, "+:")}
		if p, ok := strings.CutPrefix(key, "-:"); ok {
			r = DynamicRule{Pattern: p, Skip: true}
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// modulesInBlock reads modules_in_block_to_quantize: a list of lists of
// names (optimum's form) or a flat list (accepted by vLLM).
func modulesInBlock(raw json.RawMessage) ([][]string, error) {
	if raw == nil || isNull(raw) {
		return nil, nil
	}
	var nested [][]string
	if err := json.Unmarshal(raw, &nested); err == nil {
		return nested, nil
	}
	var flat []string
	if err := json.Unmarshal(raw, &flat); err != nil {
		return nil, fmt.Errorf("modules_in_block_to_quantize: got %s, want a list of lists of module names", bytes.TrimSpace(raw))
	}
	return [][]string{flat}, nil
}

func isNull(m json.RawMessage) bool { return string(bytes.TrimSpace(m)) == "null" }

// parser reads typed keys from a config object (falling back to GPTQModel's
// meta object), keeping the first error.
type parser struct {
	doc, meta map[string]json.RawMessage
	file      string
	err       error
}

func (p *parser) fail(err error) {
	if p.err == nil {
		p.err = fmt.Errorf("gptq: %s: %w", p.file, err)
	}
}

// lookup returns the first non-null value among keys (top level first, then
// meta) and the key it was found under.
func (p *parser) lookup(keys ...string) (json.RawMessage, string, bool) {
	for _, src := range []map[string]json.RawMessage{p.doc, p.meta} {
		for _, k := range keys {
			if v, ok := src[k]; ok && !isNull(v) {
				return v, k, true
			}
		}
	}
	return nil, "", false
}

func (p *parser) int(dst *int, keys ...string) bool {
	v, k, ok := p.lookup(keys...)
	if !ok {
		return false
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil || f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
		p.fail(fmt.Errorf("%s: got %s, want an integer", k, v))
		return true
	}
	*dst = int(f)
	return true
}

func (p *parser) float(dst *float64, keys ...string) {
	v, k, ok := p.lookup(keys...)
	if !ok {
		return
	}
	if err := json.Unmarshal(v, dst); err != nil {
		p.fail(fmt.Errorf("%s: got %s, want a number", k, v))
	}
}

func (p *parser) bool(dst *bool, keys ...string) {
	v, k, ok := p.lookup(keys...)
	if !ok {
		return
	}
	if err := json.Unmarshal(v, dst); err != nil {
		p.fail(fmt.Errorf("%s: got %s, want true or false", k, v))
	}
}

func (p *parser) string(dst *string, keys ...string) {
	v, k, ok := p.lookup(keys...)
	if !ok {
		return
	}
	if err := json.Unmarshal(v, dst); err != nil {
		p.fail(fmt.Errorf("%s: got %s, want a string", k, v))
	}
}

func (p *parser) nullableString(key string) *string {
	var s string
	v, _, ok := p.lookup(key)
	if !ok {
		return nil
	}
	if err := json.Unmarshal(v, &s); err != nil {
		p.fail(fmt.Errorf("%s: got %s, want a string or null", key, v))
		return nil
	}
	return &s
}
