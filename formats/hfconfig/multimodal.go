package hfconfig

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Multimodal checkpoints whose language model the project runs and
// quantizes, as GPTQModel and llm-compressor quantize them: the vision
// tower and projector are kept as they are, never loaded, and image token
// ids are tokens like any other. Each wraps a text model of a type Parse
// reads:
//
//   - gemma3 (Gemma3ForConditionalGeneration: gemma-3-4b/12b/27b):
//     text_config a gemma3_text config (Gemma3TextConfig's defaults for
//     the keys it omits), a SigLIP vision_tower and multi_modal_projector;
//   - mistral3 (Mistral3ForConditionalGeneration: Mistral-Small-3.1 and
//     3.2-24B, Magistral-Small-2506/2509): text_config a mistral config
//     (MistralConfig's defaults), a Pixtral vision_tower and
//     multi_modal_projector;
//   - qwen2_vl and qwen2_5_vl (Qwen2VLForConditionalGeneration,
//     Qwen2_5_VLForConditionalGeneration: Qwen2-VL-2B/7B/72B,
//     Qwen2.5-VL-3B/7B/32B/72B): a qwen2 text model, whose keys sit at the
//     top level (before transformers 4.52) or in text_config (model_type
//     qwen2_vl_text / qwen2_5_vl_text, which then takes precedence, as
//     in transformers), and a vision tower named visual;
//   - qwen3_vl (Qwen3VLForConditionalGeneration: Qwen3-VL-2B … 32B):
//     text_config a qwen3 text model (qwen3_vl_text), the vision tower
//     visual (its deepstack features are added to the hidden states of
//     image positions alone: text runs without them);
//   - qwen3_vl_moe (Qwen3VLMoeForConditionalGeneration: Qwen3-VL-30B-A3B,
//     235B-A22B): text_config a qwen3_moe text model (qwen3_vl_moe_text;
//     norm_topk_prob true where absent), whose experts a checkpoint in
//     floating point stores fused (Config.FusedExperts; package fused).
//
// The Qwen text models rotate by M-RoPE: rope_scaling's mrope_section
// splits each head's frequencies into temporal, height and width parts
// (interleaved in Qwen3-VL), each rotated by its own position. A text
// token's three positions are its index (get_rope_index), so every part
// rotates as plain RoPE does: the text model runs as plain RoPE, and
// mrope_section is checked (three counts summing to head_dim/2). An
// older config's rope type "mrope" is "default", as transformers reads it.
//
// The text model's tensors are stored in one of two layouts: the older
// one (the published Gemma 3, Mistral Small 3.1 and Qwen2-VL/Qwen2.5-VL
// checkpoints), language_model.model.… and language_model.lm_head (gemma3,
// mistral3: beside vision_tower.… and multi_modal_projector.…) or the text
// model's own names (qwen2_vl, qwen2_5_vl: beside visual.…); and the newer
// one, transformers' module names since 4.52 (Qwen3-VL's checkpoints, and
// those saved without 4.x's mapping back), model.language_model.… and
// lm_head (beside model.vision_tower.…, model.multi_modal_projector.… or
// model.visual.…). A checkpoint holding both is refused.

// wrapper describes one multimodal model_type.
type wrapper struct {
	text      string            // the text model's model_type where text_config names none
	textTypes map[string]string // text_config.model_type values, and the model_type each is read as
	defaults  map[string]any    // the text model class's defaults for keys Parse requires or reads otherwise
	// required are keys whose default in the text model class differs
	// from text's (Qwen2_5_VLTextConfig's rope_theta is not Qwen2Config's):
	// refused where absent, rather than read with the wrong default.
	required []string
	// outer are top-level keys the text model takes over text_config's;
	// fallback are top-level keys it takes where text_config has none.
	outer, fallback []string
	flat            bool   // without text_config, the text model's keys are the top level's
	mrope           bool   // rope_scaling may carry mrope_section
	legacy          string // the text model's prefix in the older layout: "language_model." or "" (its own names)
}

// outerKeys are the top-level keys a wrapper's text model takes: the
// dtype the checkpoint was saved in and the quantization_config that
// GPTQModel writes there.
var outerKeys = []string{"torch_dtype", "dtype", "quantization_config"}

var wrappers = map[string]wrapper{
	"gemma3": {text: "gemma3_text", textTypes: map[string]string{"gemma3_text": "gemma3_text"}, defaults: gemma3TextDefaults,
		outer: append(slices.Clone(outerKeys), "bos_token_id", "eos_token_id", "pad_token_id"), legacy: "language_model."},
	"mistral3": {text: "mistral", textTypes: map[string]string{"mistral": "mistral", "ministral3": "ministral3"},
		outer: append(slices.Clone(outerKeys), "bos_token_id", "eos_token_id", "pad_token_id"), legacy: "language_model."},
	// (Qwen2VLTextConfig's and Qwen2_5_VLTextConfig's defaults are the
	// 72B model's: 8 KV heads, rope_theta 1e6, where Qwen2Config's are 32
	// and 1e4; tie_word_embeddings false in each text config, which
	// transformers ties by.)
	"qwen2_vl": {text: "qwen2", textTypes: map[string]string{"qwen2_vl_text": "qwen2", "qwen2": "qwen2"}, required: []string{"rope_theta", "rms_norm_eps", "num_key_value_heads"},
		outer: outerKeys, fallback: []string{"bos_token_id", "eos_token_id", "pad_token_id"}, flat: true, mrope: true},
	"qwen2_5_vl": {text: "qwen2", textTypes: map[string]string{"qwen2_5_vl_text": "qwen2", "qwen2": "qwen2"}, required: []string{"rope_theta", "rms_norm_eps", "num_key_value_heads"},
		outer: outerKeys, fallback: []string{"bos_token_id", "eos_token_id", "pad_token_id"}, flat: true, mrope: true},
	// (Qwen3VLTextConfig: rope_theta 5e6 and max_position_embeddings
	// 128000 where Qwen3Config's are 1e4 and 40960.)
	"qwen3_vl": {text: "qwen3", textTypes: map[string]string{"qwen3_vl_text": "qwen3", "qwen3": "qwen3"}, defaults: map[string]any{"rope_theta": 5000000, "max_position_embeddings": 128000},
		outer: outerKeys, fallback: []string{"bos_token_id", "eos_token_id", "pad_token_id"}, mrope: true},
	// Qwen3VLMoeTextSparseMoeBlock renormalizes the chosen experts'
	// weights (Qwen3VLMoeTextConfig's norm_topk_prob true, where
	// Qwen3MoeConfig's is false).
	"qwen3_vl_moe": {text: "qwen3_moe", textTypes: map[string]string{"qwen3_vl_moe_text": "qwen3_moe", "qwen3_moe": "qwen3_moe"}, defaults: map[string]any{"norm_topk_prob": true},
		required: []string{"rope_theta", "max_position_embeddings", "num_experts", "num_experts_per_tok", "moe_intermediate_size", "num_key_value_heads"},
		outer:    outerKeys, fallback: []string{"bos_token_id", "eos_token_id", "pad_token_id"}, mrope: true},
}

// MultimodalTypes lists the multimodal model_type values whose text model
// Parse reads.
var MultimodalTypes = []string{"gemma3", "mistral3", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"}

// parseWrapped parses a multimodal config (model_type mt, described by
// w): its text model's keys (text_config, else the top level of a flat
// one) as a w.text config, with w's defaults and the top level's keys
// over them; Outer keeps the whole document.
func parseWrapped(raw map[string]any, file, mt string, w wrapper, anyRoPE bool) (*Config, error) {
	var sub map[string]any
	text := w.text
	nested := raw["text_config"] != nil
	switch v := raw["text_config"]; {
	case nested:
		tc, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: text_config: got %s, want an object", file, jsonKind(v))
		}
		if t, ok := tc["model_type"]; ok {
			if text, ok = w.textTypes[fmt.Sprint(t)]; !ok {
				return nil, fmt.Errorf("%s: text_config.model_type %v: %w (%s's text model is %s)", file, t, ErrUnsupported, mt, strings.Join(slices.Sorted(maps.Keys(w.textTypes)), " or "))
			}
		}
		sub = maps.Clone(tc)
	case w.flat:
		sub = maps.Clone(raw)
		delete(sub, "vision_config")
		delete(sub, "text_config")
	default:
		return nil, fmt.Errorf("%s: model_type %q: missing required key \"text_config\" (the text model's config)", file, mt)
	}
	sub["model_type"] = text
	for k, d := range w.defaults {
		if _, ok := sub[k]; !ok {
			if n, ok := d.(int); ok {
				d = json.Number(strconv.Itoa(n))
			}
			sub[k] = d
		}
	}
	if v, ok := sub["norm_topk_prob"]; ok && v == false && mt == "qwen3_vl_moe" {
		return nil, fmt.Errorf("%s: text_config.norm_topk_prob false: %w (Qwen3VLMoeTextTopKRouter always renormalizes the chosen experts' weights)", file, ErrUnsupported)
	}
	for _, k := range w.required {
		if v, ok := sub[k]; (!ok || v == nil) && !(k == "rope_theta" && ropeTheta(sub)) {
			return nil, fmt.Errorf("%s: model_type %q: missing required key %q (the text model's default is not %s's)", file, mt, k, text)
		}
	}
	if _, ok := raw["dtype"]; ok {
		delete(sub, "torch_dtype") // the top level's dtype, whichever key the text model spells it with
	} else if _, ok := raw["torch_dtype"]; ok {
		delete(sub, "dtype")
	}
	for _, k := range w.outer {
		if v, ok := raw[k]; ok {
			sub[k] = v
		}
	}
	for _, k := range w.fallback {
		if _, ok := sub[k]; !ok {
			if v, ok := raw[k]; ok {
				sub[k] = v
			}
		}
	}
	var sections []int
	var interleaved bool
	if w.mrope {
		var err error
		if sections, interleaved, err = mropeSections(sub, file); err != nil {
			return nil, err
		}
	}
	data, err := json.Marshal(sub)
	if err != nil {
		return nil, fmt.Errorf("%s: text_config: %w", file, err)
	}
	name := file + ": text_config"
	if !nested {
		name = file
	}
	c, err := parse(data, name, anyRoPE)
	if err != nil {
		return nil, err
	}
	if sections != nil {
		sum := 0
		for _, n := range sections {
			sum += n
		}
		if sum != c.HeadDim/2 {
			return nil, fmt.Errorf("%s: rope_scaling.mrope_section %v: sums to %d, want head_dim/2 = %d", file, sections, sum, c.HeadDim/2)
		}
	}
	c.MRoPESection, c.MRoPEInterleaved = sections, interleaved && sections != nil
	c.File = file
	c.Outer = raw
	c.Wrapper = mt
	c.Architectures = (&reader{m: raw, file: file}).stringList("architectures")
	return c, nil
}

// mropeSections reads and removes the M-RoPE keys of sub's rope_scaling
// (or rope_parameters): mrope_section, three non-negative counts, and
// mrope_interleaved; a type "mrope" reads as "default". It returns the
// sections, nil where the config has none, and whether they interleave.
func mropeSections(sub map[string]any, file string) ([]int, bool, error) {
	var sections []int
	interleaved := false
	for _, key := range []string{"rope_scaling", "rope_parameters"} {
		m, ok := sub[key].(map[string]any)
		if !ok {
			continue
		}
		m = maps.Clone(m)
		sub[key] = m
		for _, tk := range []string{"type", "rope_type"} {
			if m[tk] == "mrope" {
				m[tk] = RopeDefault // Qwen2VLConfig: "mrope" is "default"
			}
		}
		if v, ok := m["mrope_interleaved"].(bool); ok && v {
			interleaved = true
		}
		delete(m, "mrope_interleaved")
		v, ok := m["mrope_section"]
		if !ok {
			continue
		}
		delete(m, "mrope_section")
		list, ok := v.([]any)
		if !ok || len(list) != 3 {
			return nil, false, fmt.Errorf("%s: %s.mrope_section: got %v, want three counts (temporal, height, width)", file, key, v)
		}
		var s []int
		for _, e := range list {
			n, err := toInt(e)
			if err != nil || n < 0 {
				return nil, false, fmt.Errorf("%s: %s.mrope_section: got %v, want three non-negative counts", file, key, v)
			}
			s = append(s, n)
		}
		if sections != nil && !slices.Equal(s, sections) {
			return nil, false, fmt.Errorf("%s: %s.mrope_section %v, but rope_scaling's is %v: they must agree", file, key, s, sections)
		}
		sections = s
	}
	return sections, interleaved, nil
}

// Multimodal reports whether the config is a multimodal checkpoint's
// (Config.Wrapper: gemma3, mistral3, qwen2_vl, qwen2_5_vl, qwen3_vl),
// whose text model the Config describes.
func (c *Config) Multimodal() bool { return c.Outer != nil }

// TextModelName reports whether name is one of the text model's tensors
// as the runtime names them: model.embed_tokens, model.layers.N…,
// model.norm, lm_head.
func TextModelName(name string) bool {
	for _, p := range []string{"model.embed_tokens.", "model.layers.", "model.norm.", "lm_head."} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// TextNames returns, for a multimodal checkpoint holding the tensors
// names, the maps from a stored name to the text model's name
// (model.language_model.layers.0.… to model.layers.0.…; in the older
// layout, language_model.model.… and language_model.lm_head.… to model.…
// and lm_head.…, or, for qwen2_vl and qwen2_5_vl, the names themselves)
// and back; other names map to themselves. Both are nil where
// c is not multimodal. A checkpoint with none of its layouts' text
// tensors is refused.
func (c *Config) TextNames(names []string) (toText, toStored func(string) string, err error) {
	if !c.Multimodal() {
		return nil, nil, nil
	}
	w := wrappers[c.Wrapper]
	var stored, head string // the text model's prefix of "model." and "lm_head."
	var newer, older string // a tensor of each layout
	for _, n := range names {
		switch {
		case strings.HasPrefix(n, "model.language_model."):
			newer = n
		case w.legacy != "" && strings.HasPrefix(n, w.legacy):
			older = n
		case w.legacy == "" && (strings.HasPrefix(n, "model.layers.") || strings.HasPrefix(n, "model.embed_tokens.")):
			older = n
		}
	}
	switch {
	case newer != "" && older != "":
		return nil, nil, fmt.Errorf("%s: model_type %q: tensors of two layouts, %q and %q: want the text model under one prefix", c.File, c.Wrapper, older, newer)
	case newer != "":
		stored, head = "model.language_model.", "lm_head."
	case older != "" && w.legacy != "":
		stored, head = w.legacy+"model.", w.legacy+"lm_head."
	case older != "":
		stored, head = "model.", "lm_head."
	}
	if stored == "" {
		old := w.legacy + "model."
		if w.legacy == "" {
			old = "model.layers."
		}
		return nil, nil, fmt.Errorf("%s: model_type %q: no tensor under %s or model.language_model. (the text model's prefix)", c.File, c.Wrapper, old)
	}
	toText = func(n string) string {
		if rest, ok := strings.CutPrefix(n, stored); ok && stored != "model." {
			return "model." + rest
		}
		if rest, ok := strings.CutPrefix(n, head); ok {
			return "lm_head." + rest
		}
		return n
	}
	toStored = func(n string) string {
		if !TextModelName(n) {
			return n
		}
		if rest, ok := strings.CutPrefix(n, "lm_head."); ok {
			return head + rest
		}
		return stored + strings.TrimPrefix(n, "model.")
	}
	return toText, toStored, nil
}

// FusedExperts reports whether the config's checkpoints in floating point
// store each sparse layer's experts as two 3-D tensors (a qwen3_vl_moe's
// mlp.experts.gate_up_proj [experts, hidden, 2·moe_intermediate] and
// down_proj [experts, moe_intermediate, hidden], as transformers'
// Qwen3VLMoeTextExperts multiplies them), which package fused reads as
// per-expert Linears.
func (c *Config) FusedExperts() bool { return c.Wrapper == "qwen3_vl_moe" }

// ropeTheta reports whether the text model's transformers 5.x
// rope_parameters gives its rope_theta (as Parse reads it there; a
// rope_theta in rope_scaling is not read).
func ropeTheta(sub map[string]any) bool {
	m, ok := sub["rope_parameters"].(map[string]any)
	return ok && m["rope_theta"] != nil
}
