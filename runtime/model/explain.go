package model

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
)

// ErrUnexplained is wrapped by CheckExplained's error.
var ErrUnexplained = fmt.Errorf("tensors that the config does not explain")

// Unexplained returns the tensor names that a checkpoint of cfg (GPTQ with
// quant, nil for floating point) has no place for, in the order given: a
// layer past num_hidden_layers, a module the architecture does not have, a
// stray tensor, a floating-point Linear's bias that config.json gives no
// attention_bias or mlp_bias for (transformers would drop it; a model with
// q/k/v biases under a llama or mistral config, Qwen2's for one, would run
// without them). Buffers that older transformers saved
// (self_attn.rotary_emb.inv_freq) and an lm_head.weight kept beside tied
// embeddings are tolerated: loaders ignore them.
func Unexplained(names []string, cfg *hfconfig.Config, quant *gptq.QuantizeConfig) []string {
	var out []string
	for _, n := range names {
		if !explained(n, cfg, quant) {
			out = append(out, n)
		}
	}
	return out
}

func explained(name string, cfg *hfconfig.Config, quant *gptq.QuantizeConfig) bool {
	if cfg.Multimodal() && !hfconfig.TextModelName(name) {
		// A multimodal checkpoint's vision tower and projector: kept as
		// they are, never loaded.
		return true
	}
	switch name {
	case "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight":
		return true
	}
	if rest, ok := strings.CutPrefix(name, "lm_head."); ok {
		return quant != nil && quant.LMHead && gptqTensor(rest)
	}
	rest, ok := strings.CutPrefix(name, "model.layers.")
	if !ok {
		return false
	}
	idx, rest, ok := strings.Cut(rest, ".")
	li, err := strconv.Atoi(idx)
	if !ok || err != nil || li < 0 || li >= cfg.NumHiddenLayers || strconv.Itoa(li) != idx {
		return false
	}
	switch rest {
	case "post_attention_layernorm.weight", "self_attn.rotary_emb.inv_freq":
		return true
	case "input_layernorm.weight":
		return cfg.PreNorms()
	}
	if rest == "self_attn.q_norm.weight" || rest == "self_attn.k_norm.weight" {
		return cfg.QKNorm()
	}
	if rest == "pre_feedforward_layernorm.weight" {
		return cfg.GemmaPostNorms()
	}
	if rest == "post_feedforward_layernorm.weight" {
		return cfg.GemmaPostNorms() || cfg.Olmo2()
	}
	if cfg.Sparse(li) && (name == cfg.MoE.RouterName(li) || (cfg.MoE.SharedSize > 0 && name == cfg.MoE.SharedGateName(li))) {
		return true
	}
	for _, m := range LayerModules(cfg, li) {
		if suffix, ok := strings.CutPrefix(rest, m+"."); ok {
			return suffix == "weight" || (suffix == "bias" && (cfg.LinearBias(m) || biasKey(cfg, m))) || (quant != nil && gptqTensor(suffix))
		}
	}
	return false
}

// biasKey reports whether config.json sets LlamaConfig's key for the
// Linear module's bias, attention_bias or mlp_bias, whatever its
// model_type: a mistral config with one explains bias tensors, which must
// then be zeros (CheckBiases), as MistralAttention has none to load them
// into.
func biasKey(cfg *hfconfig.Config, module string) bool {
	key := "attention_bias"
	if strings.HasPrefix(module, "mlp.") {
		key = "mlp_bias"
	}
	b, _ := cfg.Raw[key].(bool)
	return b
}

// addedBias reports whether the model adds module's bias (a name of
// LinearModules): an attention projection that config.json gives one
// (hfconfig.Config.LinearBias: Qwen2's q/k/v, llama's attention_bias).
func addedBias(cfg *hfconfig.Config, module string) bool {
	return strings.HasPrefix(module, "self_attn.") && cfg.LinearBias(module)
}

// ErrLinearBias is wrapped by CheckBiases's error.
var ErrLinearBias = errors.New("a Linear bias that gptqtool does not apply")

// CheckBiases returns an error naming the first Linear bias of w (a decoder
// layer's LinearModules, then lm_head) that holds a value other than 0,
// with its largest |value|, among those the model does not add (all but
// the attention projections' that config.json gives biases, see
// addedBias: the MLP's of mlp_bias, lm_head's, and any of a module that
// config.json gives none, as AutoGPTQ writes them): the model would run,
// and convert would write it, as another model. Absent biases and biases
// of zeros alone are a no-op and pass: AutoGPTQ's QuantLinear writes
// zeros when the float Linear had no bias, and a config.json with
// attention_bias or mlp_bias true over weights without the tensors is the
// model transformers builds (LlamaPreTrainedModel._init_weights zeroes a
// bias the checkpoint lacks).
func CheckBiases(w Weights, cfg *hfconfig.Config) error {
	modules := make([]string, 0, cfg.NumHiddenLayers*len(LinearModules)+1)
	for i := range cfg.NumHiddenLayers {
		for _, m := range LinearModules {
			if !addedBias(cfg, m) {
				modules = append(modules, "model.layers."+strconv.Itoa(i)+"."+m)
			}
		}
	}
	for _, module := range append(modules, "lm_head") {
		name := module + ".bias"
		t, err := w.Tensor(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		v, err := t.Float32()
		if err != nil {
			return err
		}
		at, largest := -1, float32(0)
		for i, x := range v {
			if x != x { // NaN
				at, largest = i, x
				break
			}
			if a := float32(math.Abs(float64(x))); a > largest {
				at, largest = i, a
			}
		}
		if at >= 0 {
			return fmt.Errorf("%s: tensor %q: largest |value| %g (element %d), want all zeros: %w", t.File, name, largest, at, ErrLinearBias)
		}
	}
	return nil
}

func gptqTensor(suffix string) bool {
	switch suffix {
	case "qweight", "qzeros", "scales", "g_idx", "bias":
		return true
	}
	return false
}

// CheckExplained returns an error naming the tensors of names (from file,
// for the message) that cfg does not explain, or nil. A checkpoint whose
// config.json gives fewer layers than its weights hold would otherwise run,
// or be quantized, as a truncated model.
func CheckExplained(file string, names []string, cfg *hfconfig.Config, quant *gptq.QuantizeConfig) error {
	extra := Unexplained(names, cfg, quant)
	if len(extra) == 0 {
		return nil
	}
	hint := ""
	if maxLayer := layersHeld(extra); maxLayer >= cfg.NumHiddenLayers {
		hint = layersHint(maxLayer, cfg)
	}
	return fmt.Errorf("%s: %d %w (%s)%s", file, len(extra), ErrUnexplained, someNames(extra), hint)
}

// someNames joins the first four names and counts the rest, for errors.
func someNames(names []string) string {
	shown := names[:min(len(names), 4)]
	if len(names) > len(shown) {
		return fmt.Sprintf("%s and %d more", strings.Join(shown, ", "), len(names)-len(shown))
	}
	return strings.Join(shown, ", ")
}

// layersHint says how many layers the weights hold (maxLayer the largest
// index) against the config's num_hidden_layers.
func layersHint(maxLayer int, cfg *hfconfig.Config) string {
	return fmt.Sprintf(": the weights hold %d layers, %s says num_hidden_layers %d", maxLayer+1, cfg.File, cfg.NumHiddenLayers)
}

// layersHeld is the largest layer index among names, -1 if none.
func layersHeld(names []string) int {
	most := -1
	for _, n := range names {
		rest, ok := strings.CutPrefix(n, "model.layers.")
		if !ok {
			continue
		}
		idx, _, _ := strings.Cut(rest, ".")
		if li, err := strconv.Atoi(idx); err == nil && li > most {
			most = li
		}
	}
	return most
}

// ErrIncomplete is wrapped by CheckComplete's error.
var ErrIncomplete = fmt.Errorf("tensors that the config needs are missing")

// Missing returns the tensors that a checkpoint of cfg (GPTQ with quant, nil
// for floating point) needs and names lacks, in load order: the embedding,
// each layer's norms, router (a mixture-of-experts layer's) and Linears
// (LayerModules: module.weight, or with quant the four
// GPTQ tensors where module.qweight is present: a quantized checkpoint may
// leave modules unquantized; in a qwen2 checkpoint q/k/v_proj's biases
// too; in a qwen3 one the per-head q_norm and k_norm), the final norm and, unless the embeddings are tied, the head.
// (A llama config's attention_bias over weights without biases is the
// model transformers builds, its biases zeros: not missing.)
func Missing(names []string, cfg *hfconfig.Config, quant *gptq.QuantizeConfig) []string {
	have := make(map[string]bool, len(names))
	for _, n := range names {
		have[n] = true
	}
	var out []string
	need := func(n string) {
		if !have[n] {
			out = append(out, n)
		}
	}
	linear := func(module string) {
		if quant != nil && have[module+".qweight"] {
			for _, s := range []string{"qzeros", "scales", "g_idx"} {
				need(module + "." + s)
			}
			return
		}
		need(module + ".weight")
	}
	need("model.embed_tokens.weight")
	for i := range cfg.NumHiddenLayers {
		p := "model.layers." + strconv.Itoa(i) + "."
		for _, n := range LayerNormNames(cfg, i) {
			need(n)
		}
		if cfg.Sparse(i) {
			need(cfg.MoE.RouterName(i))
			if cfg.MoE.SharedSize > 0 {
				need(cfg.MoE.SharedGateName(i))
			}
		}
		for _, m := range LayerModules(cfg, i) {
			linear(p + m)
			if (cfg.ModelType == "qwen2" || cfg.ModelType == "qwen2_moe") && addedBias(cfg, m) {
				need(p + m + ".bias")
			}
		}
	}
	need("model.norm.weight")
	switch {
	case cfg.TieWordEmbeddings:
	case quant != nil && quant.LMHead:
		linear("lm_head")
	default:
		need("lm_head.weight")
	}
	return out
}

// CheckComplete returns an error naming the tensors that cfg needs and
// names (from file, for the message) lacks, or nil: a checkpoint that no
// loader could run, e.g. one whose config.json gives more layers than its
// weights hold.
func CheckComplete(file string, names []string, cfg *hfconfig.Config, quant *gptq.QuantizeConfig) error {
	missing := Missing(names, cfg, quant)
	if len(missing) == 0 {
		return nil
	}
	hint := ""
	if maxLayer := layersHeld(names); maxLayer+1 < cfg.NumHiddenLayers {
		hint = layersHint(maxLayer, cfg)
	}
	return fmt.Errorf("%s: %d %w (%s)%s", file, len(missing), ErrIncomplete, someNames(missing), hint)
}

// ErrMisshapen is wrapped by CheckShapes's error.
var ErrMisshapen = fmt.Errorf("tensors of another shape than the config gives")

// WantShape returns the shape that a checkpoint of cfg (GPTQ with quant,
// nil for floating point) gives the tensor name, the shapes the loader
// binds: [vocab_size, hidden_size] for the embedding and the head,
// [hidden_size] for the norms, [N, K] for a Linear's weight and [N] for
// its bias, and with quant the GPTQ tensors of gptq.ShapesFor (spec §1.1).
// It returns nil for a name it does not size: one the config does not
// explain (see Unexplained), a buffer (rotary_emb.inv_freq), or a Linear
// whose sizes the model cannot run or pack.
func WantShape(name string, cfg *hfconfig.Config, quant *gptq.QuantizeConfig) []int {
	if !explained(name, cfg, quant) {
		return nil
	}
	switch name {
	case "model.embed_tokens.weight", "lm_head.weight":
		return []int{cfg.VocabSize, cfg.HiddenSize}
	case "model.norm.weight":
		return []int{cfg.HiddenSize}
	}
	var K, N int
	var suffix string
	if rest, ok := strings.CutPrefix(name, "lm_head."); ok {
		K, N, suffix = cfg.HiddenSize, cfg.VocabSize, rest
	} else {
		rest := strings.TrimPrefix(name, "model.layers.")
		idx, rest, _ := strings.Cut(rest, ".")
		if li, err := strconv.Atoi(idx); err == nil && cfg.Sparse(li) && name == cfg.MoE.RouterName(li) {
			return []int{cfg.MoE.Experts, cfg.HiddenSize}
		} else if err == nil && cfg.Sparse(li) && cfg.MoE.SharedSize > 0 && name == cfg.MoE.SharedGateName(li) {
			return []int{1, cfg.HiddenSize}
		}
		switch rest {
		case "input_layernorm.weight", "post_attention_layernorm.weight":
			return []int{cfg.HiddenSize}
		case "pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight":
			if cfg.GemmaPostNorms() || (cfg.Olmo2() && rest == "post_feedforward_layernorm.weight") {
				return []int{cfg.HiddenSize}
			}
			return nil
		case "self_attn.q_norm.weight":
			q, _ := cfg.QKNormWidths()
			return []int{q}
		case "self_attn.k_norm.weight":
			_, k := cfg.QKNormWidths()
			return []int{k}
		}
		module, sfx, _ := cutLast(rest, ".")
		if K, N, ok = LinearShape(cfg, module); !ok {
			return nil
		}
		suffix = sfx
	}
	switch suffix {
	case "weight":
		return []int{N, K}
	case "bias":
		return []int{N}
	}
	if quant == nil {
		return nil
	}
	qw, qz, sc, gi, err := gptq.ShapesFor(K, N, quant.Bits, quant.GroupSize)
	if err != nil {
		return nil
	}
	switch suffix {
	case "qweight":
		return qw[:]
	case "qzeros":
		return qz[:]
	case "scales":
		return sc[:]
	case "g_idx":
		return gi[:1]
	}
	return nil
}

// cutLast is strings.Cut at the last sep.
func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// CheckShapes returns an error naming the first tensors of infos (from
// file, for the message) whose shape is not the one cfg gives them
// (WantShape), each with both shapes, and how many more there are; or nil.
// A config.json whose hidden_size, intermediate_size or vocab_size
// disagrees with the weights is found this way, tensor by tensor, where a
// parameter count only says that something differs.
func CheckShapes(file string, infos []safetensors.TensorInfo, cfg *hfconfig.Config, quant *gptq.QuantizeConfig) error {
	var bad []string
	for _, t := range infos {
		if want := WantShape(t.Name, cfg, quant); want != nil && !slices.Equal(t.Shape, want) {
			bad = append(bad, fmt.Sprintf("tensor %q: shape %v, want %v", t.Name, t.Shape, want))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	shown := bad[:min(len(bad), 3)]
	more := ""
	if len(bad) > len(shown) {
		more = fmt.Sprintf("; and %d more", len(bad)-len(shown))
	}
	return fmt.Errorf("%s: %d %w (%s: hidden_size %d, intermediate_size %d, vocab_size %d): %s%s",
		file, len(bad), ErrMisshapen, cfg.File, cfg.HiddenSize, cfg.IntermediateSize, cfg.VocabSize, strings.Join(shown, "; "), more)
}
