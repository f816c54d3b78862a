package verify

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gptqtool/gptqtool/formats/fused"
	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/quantized"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/weights"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// Report describes a checkpoint directory: its architecture and shape (with
// config.json's key names), what its weight files hold, and for GPTQ
// checkpoints the quantization and which loaders accept it.
type Report struct {
	Dir string `json:"dir"`
	// Format is what holds the weights: safetensors or pytorch (.bin files,
	// read without executing them).
	Format                string   `json:"weights_format"`
	ModelType             string   `json:"model_type"`
	Architectures         []string `json:"architectures"`
	HiddenSize            int      `json:"hidden_size"`
	IntermediateSize      int      `json:"intermediate_size"`
	NumHiddenLayers       int      `json:"num_hidden_layers"`
	NumAttentionHeads     int      `json:"num_attention_heads"`
	NumKeyValueHeads      int      `json:"num_key_value_heads"`
	HeadDim               int      `json:"head_dim"`
	VocabSize             int      `json:"vocab_size"`
	MaxPositionEmbeddings int      `json:"max_position_embeddings"`
	RopeTheta             float64  `json:"rope_theta"`
	// PartialRotaryFactor is the part of each head RoPE rotates
	// (RotaryDim/HeadDim: phi3's partial_rotary_factor, Phi-4-mini's
	// 0.75); absent for whole heads.
	PartialRotaryFactor float64 `json:"partial_rotary_factor,omitempty"`
	RotaryDim           int     `json:"rotary_dim,omitempty"`
	// RopeScaling is config.json's RoPE scaling under its keys; absent for
	// plain RoPE.
	RopeScaling   *RopeScaling `json:"rope_scaling,omitempty"`
	SlidingWindow int          `json:"sliding_window"` // 0: none
	// LayerTypes, RopeLocalBaseFreq and QueryPreAttnScalar are Gemma's
	// (hfconfig.Config's LayerTypes, RopeLocalTheta, QueryPreAttnScalar):
	// sliding_window applies to the sliding_attention layers alone, which
	// in Gemma 3 rotate by rope_local_base_freq; absent for other models
	// (and Gemma's query_pre_attn_scalar for the first version, which
	// scales by head_dim**-0.5 as Llama does).
	LayerTypes         []string `json:"layer_types,omitempty"`
	RopeLocalBaseFreq  float64  `json:"rope_local_base_freq,omitempty"`
	QueryPreAttnScalar float64  `json:"query_pre_attn_scalar,omitempty"`
	// Granite is granite's multipliers (embedding_multiplier,
	// attention_multiplier, residual_multiplier, logits_scaling); absent
	// for other models.
	Granite *GraniteMultipliers `json:"granite,omitempty"`
	// AttnLogitSoftcapping and FinalLogitSoftcapping are Gemma 2's
	// soft-capping of the attention scores and of the logits
	// (hfconfig.Config's AttnSoftcap, FinalSoftcap); absent: none.
	AttnLogitSoftcapping  float64 `json:"attn_logit_softcapping,omitempty"`
	FinalLogitSoftcapping float64 `json:"final_logit_softcapping,omitempty"`
	TieWordEmbeddings     bool    `json:"tie_word_embeddings"`
	TorchDType            string  `json:"torch_dtype"`
	// MoE describes a mixture-of-experts model's sparse MLPs
	// (hfconfig.MoE); absent for dense models.
	MoE *MoE `json:"mixture_of_experts,omitempty"`
	// NumParameters counts the parameters the weight files hold (a
	// quantized Linear counts K·N, as unquantized).
	NumParameters int64 `json:"num_parameters"`
	// ConfigParameters is the count config.json implies; it differs from
	// NumParameters when the two disagree (see Problems).
	ConfigParameters int64 `json:"config_parameters"`
	// VisionParameters counts a multimodal checkpoint's parameters outside
	// its language model (vision tower, projector), which are kept and
	// never loaded, and which NumParameters leaves out; 0 (absent) for
	// other models.
	VisionParameters int64 `json:"vision_parameters,omitempty"`
	// Wrapper is a multimodal checkpoint's model_type (gemma3, mistral3,
	// qwen2_vl, qwen2_5_vl, qwen3_vl, qwen3_vl_moe), whose language model ModelType
	// names; "" (absent) for other models.
	Wrapper string `json:"multimodal_type,omitempty"`
	// QueryScale is a ministral3 text model's position-dependent query
	// scale (llama_4_scaling_beta), whose positions past its original
	// length are not run: MaxPositionEmbeddings is capped there.
	QueryScale *hfconfig.QueryScale `json:"query_scale,omitempty"`
	// TensorElements is the sum of the stored tensors' element counts; equal
	// to NumParameters for an unquantized checkpoint.
	TensorElements int64          `json:"tensor_elements"`
	NumTensors     int            `json:"num_tensors"`
	DTypes         map[string]int `json:"dtypes"` // tensors per dtype
	Files          []string       `json:"files"`
	SizeBytes      int64          `json:"size_bytes"` // weight files on disk
	Quantization   *Quantization  `json:"quantization_config,omitempty"`
	// Problems are disagreements between config.json and the weight files
	// (tensors the config does not explain or needs and lacks, tensors of
	// another shape than it gives, parameter counts that differ).
	Problems []string `json:"problems,omitempty"`
}

// RopeScaling is a Report's RoPE scaling (hfconfig.RopeScaling) under
// transformers' keys; the llama3 keys only for llama3, yarn's (its
// defaults and attention factor resolved) only for yarn, longrope's
// attention factor and which factors apply only for longrope.
type RopeScaling struct {
	RopeType                      string  `json:"rope_type"`
	Factor                        float64 `json:"factor"`
	LowFreqFactor                 float64 `json:"low_freq_factor,omitempty"`
	HighFreqFactor                float64 `json:"high_freq_factor,omitempty"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings,omitempty"`
	BetaFast                      float64 `json:"beta_fast,omitempty"`
	BetaSlow                      float64 `json:"beta_slow,omitempty"`
	Truncate                      *bool   `json:"truncate,omitempty"`
	AttentionFactor               float64 `json:"attention_factor,omitempty"`
	// LongFactor, for longrope alone, says the runtime's table takes
	// long_factor at the default context, max_position_embeddings (which
	// is > original), not short_factor. A model loaded for a context of
	// at most original positions (verify's --ctx, serve's --max-len,
	// generate's prompt and --max-tokens) takes short_factor whatever it
	// says (hfconfig.RopeScaling.ForContext).
	LongFactor *bool `json:"long_factor_applies,omitempty"`
}

// ropeScalingOf is s as a Report gives it: nil for plain RoPE.
func ropeScalingOf(s hfconfig.RopeScaling) *RopeScaling {
	if s.IsDefault() {
		return nil
	}
	r := &RopeScaling{RopeType: s.Type, Factor: s.Factor, LowFreqFactor: s.LowFreqFactor, HighFreqFactor: s.HighFreqFactor,
		OriginalMaxPositionEmbeddings: s.OriginalMaxPositionEmbeddings}
	switch s.Type {
	case hfconfig.RopeYarn:
		r.BetaFast, r.BetaSlow, r.Truncate, r.AttentionFactor = s.BetaFast, s.BetaSlow, &s.Truncate, s.AttentionFactor
	case hfconfig.RopeLongrope:
		r.AttentionFactor = s.AttentionFactor
		r.LongFactor = &s.Long
	}
	return r
}

// String describes r as config.json spells it.
func (r *RopeScaling) String() string {
	switch r.RopeType {
	case hfconfig.RopeLlama3:
		return fmt.Sprintf("llama3 (factor %g, low_freq_factor %g, high_freq_factor %g, original_max_position_embeddings %d)",
			r.Factor, r.LowFreqFactor, r.HighFreqFactor, r.OriginalMaxPositionEmbeddings)
	case hfconfig.RopeYarn:
		return fmt.Sprintf("yarn (factor %g, original_max_position_embeddings %d, beta_fast %g, beta_slow %g, truncate %v, attention_factor %.6g)",
			r.Factor, r.OriginalMaxPositionEmbeddings, r.BetaFast, r.BetaSlow, r.Truncate != nil && *r.Truncate, r.AttentionFactor)
	case hfconfig.RopeLongrope:
		which := "short_factor at the default context (max_position_embeddings, within the original)"
		if r.LongFactor != nil && *r.LongFactor {
			which = fmt.Sprintf("long_factor at the default context (max_position_embeddings, past the original), short_factor for a context of at most %d (--ctx, --max-len)", r.OriginalMaxPositionEmbeddings)
		}
		return fmt.Sprintf("longrope (%s; factor %g, original_max_position_embeddings %d, attention_factor %.6g with either)",
			which, r.Factor, r.OriginalMaxPositionEmbeddings, r.AttentionFactor)
	}
	return fmt.Sprintf("%s (factor %g)", r.RopeType, r.Factor)
}

// Quantization is the GPTQ part of a Report. An AWQ or compressed-tensors
// checkpoint (QuantMethod) gives the parameters of the GPTQ checkpoint it
// reads as (checkpoint_format gptq_v2), and no loaders: the table is
// GPTQ's.
type Quantization struct {
	QuantMethod      string               `json:"quant_method"`
	Source           string               `json:"source"` // the file the parameters came from
	Bits             int                  `json:"bits"`
	GroupSize        int                  `json:"group_size"`
	DescAct          bool                 `json:"desc_act"`
	StaticGroups     bool                 `json:"static_groups"`
	Sym              bool                 `json:"sym"`
	DampPercent      float64              `json:"damp_percent"`
	TrueSequential   bool                 `json:"true_sequential"`
	CheckpointFormat string               `json:"checkpoint_format"`
	QuantizedModules int                  `json:"quantized_modules"`
	Loaders          []gptq.LoaderSupport `json:"loaders"`
}

// MoE is a Report's mixture of experts (hfconfig.MoE), under
// qwen3_moe's config keys (mixtral's num_local_experts is num_experts,
// its intermediate_size moe_intermediate_size).
type MoE struct {
	NumExperts          int  `json:"num_experts"`
	NumExpertsPerTok    int  `json:"num_experts_per_tok"`
	MoEIntermediateSize int  `json:"moe_intermediate_size"`
	NormTopKProb        bool `json:"norm_topk_prob"`
	// SparseLayers counts the layers with experts (hfconfig.Config.Sparse);
	// the others have a dense MLP of intermediate_size.
	SparseLayers int `json:"sparse_layers"`
	// SharedExpertIntermediateSize is a shared expert's width (qwen2_moe;
	// 0 and left out elsewhere).
	SharedExpertIntermediateSize int `json:"shared_expert_intermediate_size,omitempty"`
}

// moeOf is cfg's MoE for a Report, nil for a dense model.
func moeOf(cfg *hfconfig.Config) *MoE {
	if cfg.MoE == nil {
		return nil
	}
	m := &MoE{NumExperts: cfg.MoE.Experts, NumExpertsPerTok: cfg.MoE.TopK, MoEIntermediateSize: cfg.MoE.ExpertSize, NormTopKProb: cfg.MoE.NormTopK,
		SharedExpertIntermediateSize: cfg.MoE.SharedSize}
	for li := range cfg.NumHiddenLayers {
		if cfg.Sparse(li) {
			m.SparseLayers++
		}
	}
	return m
}

// Inspect reads a checkpoint directory's config.json, weight headers and
// quantization config. Only headers are read (safetensors files are mapped;
// PyTorch .bin files are read without executing anything, storages not at
// all).
func Inspect(dir string) (*Report, error) {
	cfg, err := hfconfig.Load(dir)
	if err != nil {
		return nil, err
	}
	set, format, err := weights.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer set.Close()
	if err := weights.ForText(set, cfg); err != nil {
		return nil, err
	}
	// Phi-3's fused qkv_proj and gate_up_proj, and a qwen3_vl_moe's fused
	// experts, are counted and checked as their parts, as the model loads
	// them (package fused).
	if set, err = fused.View(set, cfg); err != nil {
		return nil, err
	}
	// An AWQ or compressed-tensors checkpoint is reported as the GPTQ
	// checkpoint it reads as (package quantized): its tensors, once
	// checked against its config, as GPTQ's.
	qconf, qerr := quantized.ReadConfig(dir)
	var foreign *gptq.QuantizeConfig
	if qerr == nil && qconf.Method != quantized.GPTQ {
		linears, err := model.QuantLinears(cfg)
		if err != nil {
			return nil, err
		}
		if set, foreign, err = qconf.Open(set, linears); err != nil {
			return nil, err
		}
	}
	r := &Report{Format: format,
		Dir: dir, ModelType: cfg.ModelType, Architectures: cfg.Architectures,
		HiddenSize: cfg.HiddenSize, IntermediateSize: cfg.IntermediateSize, NumHiddenLayers: cfg.NumHiddenLayers,
		NumAttentionHeads: cfg.NumAttentionHeads, NumKeyValueHeads: cfg.NumKeyValueHeads, HeadDim: cfg.HeadDim,
		VocabSize: cfg.VocabSize, MaxPositionEmbeddings: cfg.MaxPositionEmbeddings, RopeTheta: cfg.RopeTheta, RopeScaling: ropeScalingOf(cfg.RopeScaling),
		SlidingWindow: cfg.SlidingWindow, TieWordEmbeddings: cfg.TieWordEmbeddings, TorchDType: cfg.DType,
		LayerTypes: cfg.LayerTypes, RopeLocalBaseFreq: cfg.RopeLocalTheta, QueryPreAttnScalar: cfg.QueryPreAttnScalar,
		AttnLogitSoftcapping: cfg.AttnSoftcap, FinalLogitSoftcapping: cfg.FinalSoftcap,
		ConfigParameters: cfg.NumParameters(), DTypes: map[string]int{}, MoE: moeOf(cfg), Wrapper: cfg.Wrapper, QueryScale: cfg.QueryScale,
	}
	if cfg.Gemma1() {
		r.QueryPreAttnScalar = 0
	}
	if g := cfg.Granite; g != nil {
		r.Granite = &GraniteMultipliers{g.EmbeddingMultiplier, g.AttentionMultiplier, g.ResidualMultiplier, g.LogitsScaling}
	}
	if rd := cfg.RoPEDim(); rd != cfg.HeadDim {
		r.PartialRotaryFactor, r.RotaryDim = float64(rd)/float64(cfg.HeadDim), rd
	}
	var shapes []gptq.LinearShape
	infos := map[string]safetensors.TensorInfo{}
	for _, t := range set.Infos() {
		infos[t.Name] = t
	}
	for _, name := range set.Names() {
		t := infos[name]
		r.NumTensors++
		r.DTypes[string(t.DType)]++
		r.TensorElements += int64(t.NumElements())
		switch {
		case cfg.Multimodal() && !hfconfig.TextModelName(name):
			r.VisionParameters += int64(t.NumElements())
		case strings.HasSuffix(name, ".qweight"):
			mod := strings.TrimSuffix(name, ".qweight")
			if g, ok := infos[mod+".g_idx"]; ok && len(t.Shape) == 2 && len(g.Shape) == 1 {
				shapes = append(shapes, gptq.LinearShape{Name: mod, K: g.Shape[0], N: t.Shape[1]})
				r.NumParameters += int64(g.Shape[0]) * int64(t.Shape[1])
			}
		case strings.HasSuffix(name, ".qzeros"), strings.HasSuffix(name, ".scales"), strings.HasSuffix(name, ".g_idx"),
			strings.HasSuffix(name, ".rotary_emb.inv_freq"), name == "lm_head.weight" && cfg.TieWordEmbeddings,
			strings.HasSuffix(name, "_proj.bias") && !configBias(cfg, name), name == "lm_head.bias":
			// quantization parameters, buffers, a duplicate of tied weights
			// and Linear biases that the config gives none (AutoGPTQ writes
			// zeros; CheckWeights reports any other, and CheckExplained one
			// the config has no place for); those it gives (Qwen2's q/k/v)
			// are in its count
		default:
			r.NumParameters += int64(t.NumElements())
		}
	}
	for _, f := range set.Files() {
		r.Files = append(r.Files, filepath.Base(f))
		st, err := os.Stat(f)
		if err != nil {
			return nil, err
		}
		r.SizeBytes += st.Size()
	}
	sort.Strings(r.Files)
	var qc *gptq.QuantizeConfig
	var src string
	err = qerr
	switch {
	case foreign != nil:
		qc, src = foreign, qconf.Source
	case qerr == nil:
		qc, src = qconf.GPTQ, qconf.Source
	}
	if err == nil || errors.Is(err, gptq.ErrNotQuantized) {
		if err := model.CheckWeights(set, cfg, qc); err != nil {
			// Tensors unexplained and tensors missing are two problems.
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				for _, e := range j.Unwrap() {
					r.Problems = append(r.Problems, e.Error())
				}
			} else {
				r.Problems = append(r.Problems, err.Error())
			}
		}
		if err := model.CheckShapes(dir, set.Infos(), cfg, qc); err != nil {
			r.Problems = append(r.Problems, err.Error())
		}
		if qc != nil && foreign == nil {
			if err := gptq.CheckAgreement(dir, qc, src, false); err != nil {
				r.Problems = append(r.Problems, err.Error())
			}
		}
	}
	// A llama config's attention_bias or mlp_bias over weights without the
	// biases is the model transformers builds (the biases zeros): their
	// count is not missing. (A qwen2 checkpoint must hold its own.)
	held := r.ConfigParameters
	if cfg.ModelType != "qwen2" {
		for li := range cfg.NumHiddenLayers {
			for _, n := range model.LayerBiasNames(cfg, li) {
				if _, ok := infos[n]; !ok {
					_, m, _ := strings.Cut(strings.TrimPrefix(strings.TrimSuffix(n, ".bias"), model.LayerPrefix(li)), ".")
					if _, N, ok := model.LinearShape(cfg, m); ok {
						held -= int64(N)
					}
				}
			}
		}
	}
	if r.NumParameters != held {
		r.Problems = append(r.Problems, fmt.Sprintf("the weight files hold %d parameters, %s implies %d", r.NumParameters, cfg.File, held))
	}
	switch {
	case errors.Is(err, gptq.ErrNotQuantized):
		if len(shapes) > 0 {
			return nil, fmt.Errorf("%s: holds GPTQ tensors (%s.qweight) but no quantize_config.json, quant_config.json or config.json quantization_config", dir, shapes[0].Name)
		}
	case err != nil:
		return nil, err
	default:
		// The loaders see the modules the config leaves unquantized too
		// (fp16 module.weight, no qweight): gptq.SkipSupport.
		all, quantized := shapes, map[string]bool{}
		for _, s := range shapes {
			quantized[s.Name] = true
		}
		for li := range cfg.NumHiddenLayers {
			for _, m := range model.LayerModules(cfg, li) {
				name := model.LayerPrefix(li) + "." + m
				if s, err := qc.Skipped(name); (s || err != nil) && !quantized[name] {
					K, N, _ := model.LinearShape(cfg, m)
					all = append(all, gptq.LinearShape{Name: name, K: K, N: N})
				}
			}
		}
		r.Quantization = &Quantization{
			Source: filepath.Base(src), Bits: qc.Bits, GroupSize: qc.GroupSize, DescAct: qc.DescAct,
			StaticGroups: qc.StaticGroups, Sym: qc.Sym, DampPercent: qc.DampPercent, TrueSequential: qc.TrueSequential,
			CheckpointFormat: qc.CheckpointFormat, QuantizedModules: len(shapes), QuantMethod: "gptq",
		}
		if foreign != nil {
			r.Quantization.QuantMethod = string(qconf.Method)
		} else {
			r.Quantization.Loaders = gptq.Loaders(*qc, all)
		}
	}
	return r, nil
}

// configBias reports whether the tensor name, a decoder layer's
// "model.layers.<i>.<module>.bias", is a bias that cfg gives its module
// (hfconfig.Config.LinearBias).
func configBias(cfg *hfconfig.Config, name string) bool {
	rest, ok := strings.CutPrefix(name, "model.layers.")
	if !ok {
		return false
	}
	_, module, _ := strings.Cut(strings.TrimSuffix(rest, ".bias"), ".")
	return cfg.LinearBias(module)
}

// GraniteMultipliers are a Granite config's multipliers under its keys.
type GraniteMultipliers struct {
	EmbeddingMultiplier float64 `json:"embedding_multiplier"`
	AttentionMultiplier float64 `json:"attention_multiplier"`
	ResidualMultiplier  float64 `json:"residual_multiplier"`
	LogitsScaling       float64 `json:"logits_scaling"`
}
