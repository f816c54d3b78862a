package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/gptqtool/gptqtool/formats/fused"
	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/quantized"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/weights"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// Check is one conformance check of a GPTQ checkpoint.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"` // what was wrong ("not checked: ..." where nothing could be examined), or a count of what was checked
}

// FormatReport is the outcome of CheckFormat.
type FormatReport struct {
	Dir string `json:"dir"`
	// Method is the checkpoint's quant_method: "gptq", or "awq" or
	// "compressed-tensors", checked as the GPTQ checkpoint they read as,
	// without GPTQ's loader table.
	Method  string               `json:"quant_method"`
	OK      bool                 `json:"ok"`
	Checks  []Check              `json:"checks"`
	Loaders []gptq.LoaderSupport `json:"loaders"`
}

// maxProblems bounds how many offending tensors a check lists.
const maxProblems = 5

// CheckFormat checks a GPTQ checkpoint against the on-disk format of spec
// §1–2: configs present and consistent, every Linear of every layer stored as
// qweight/qzeros/scales/g_idx with the right dtypes and shapes, the plain
// tensors in fp16, sym zero points at 2^(bits-1), g_idx consistent with the
// group size and act order, scales finite and positive, "format":"pt"
// metadata. It reports every check rather than stopping at the first failure.
// An AWQ or compressed-tensors checkpoint is checked as the GPTQ checkpoint
// it reads as (package quantized): its own tensors' dtypes and shapes
// against its config, then g_idx, scales, modules left unquantized and
// tensors explained, without GPTQ's config, fp16, sym and loader checks.
func CheckFormat(dir string) (*FormatReport, error) {
	cfg, err := hfconfig.Load(dir)
	if err != nil {
		return nil, err
	}
	qconf, err := quantized.ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	qc, src := qconf.GPTQ, qconf.Source
	base, err := weights.OpenText(dir, cfg)
	if err != nil {
		return nil, err
	}
	defer base.Close()
	r := &FormatReport{Dir: dir, Method: string(qconf.Method)}
	add := func(name string, problems []string, detail string) {
		c := Check{Name: name, OK: len(problems) == 0, Detail: detail}
		if !c.OK {
			c.Detail = summarize(problems)
		}
		r.Checks = append(r.Checks, c)
	}
	// An AWQ or compressed-tensors checkpoint is checked as the GPTQ
	// checkpoint it reads as (quantized.Config.Open), which first checks
	// its own tensors against its config: the checks of GPTQ's configs
	// and loaders do not apply to it.
	set := tensorSet(base)
	// A fused module (Phi-3's qkv_proj, gate_up_proj) is checked as its
	// parts, as the model loads it (package fused).
	var ws weights.Set = base
	if mods := fused.Modules(cfg); mods != nil {
		fs, err := fused.Open(base, cfg.NumHiddenLayers, mods)
		if err != nil {
			add("quantized tensors: dtypes and shapes", []string{err.Error()}, "")
			return r, nil
		}
		set, ws = fs, fs
	}
	foreign := qconf.Method != quantized.GPTQ
	if foreign {
		linears, err := model.QuantLinears(cfg)
		if err != nil {
			return nil, err
		}
		add("quantization config", nil, fmt.Sprintf("from %s (%s, read as GPTQ)", filepath.Base(src), qconf.Method))
		if set, qc, err = qconf.Open(ws, linears); err != nil {
			add("quantized tensors: dtypes and shapes", []string{err.Error()}, "")
			return r, nil
		}
	} else {
		add("quantization config", configProblems(dir, qc, src, cfg), fmt.Sprintf("from %s", filepath.Base(src)))
	}
	add("safetensors metadata format=pt", metadataProblems(base), "")
	inSet := map[string]bool{}
	for _, n := range set.Names() {
		inSet[n] = true
	}

	var shapeP, zeroP, gidxP, scaleP, leftP, skipP []string
	var shapes []gptq.LinearShape
	read := 0    // modules whose tensors passed the dtype and shape check
	skipped := 0 // modules the config leaves unquantized
	format := qc.Format()
	for li := 0; li < cfg.NumHiddenLayers; li++ {
		// (A mixture-of-experts layer's experts in place of its MLP.)
		for _, m := range model.LayerModules(cfg, li) {
			name := fmt.Sprintf("model.layers.%d.%s", li, m)
			K, N, _ := model.LinearShape(cfg, m)
			shapes = append(shapes, gptq.LinearShape{Name: name, K: K, N: N})
			switch skip, err := qc.Skipped(name); {
			case err != nil:
				skipP = append(skipP, fmt.Sprintf("%s: %v", name, err))
				continue
			case skip:
				// GPTQModel's dynamic "-:" rule (or modules_in_block_to_quantize)
				// leaves it unquantized: an fp16 weight, no GPTQ tensors.
				skipped++
				if p := skippedProblem(set, inSet, name, K, N); p != "" {
					skipP = append(skipP, p)
				}
				continue
			}
			if inSet[name+".weight"] {
				leftP = append(leftP, fmt.Sprintf("%s.weight is stored unquantized", name))
			}
			lin, err := readLinear(set, name, K, N, qc)
			if err != nil {
				shapeP = append(shapeP, err.Error())
				continue
			}
			read++
			if qc.Sym {
				if p := symZeroProblem(name, lin, format); p != "" {
					zeroP = append(zeroP, p)
				}
			}
			if p := gIdxProblem(name, lin.GIdx, K, qc); p != "" {
				gidxP = append(gidxP, p)
			}
			for i, s := range lin.Scales {
				f := float64(half.F16ToF32(s))
				if !(f > 0) || math.IsInf(f, 0) {
					scaleP = append(scaleP, fmt.Sprintf("%s.scales[%d] = %g, want finite and > 0", name, i, f))
					break
				}
			}
		}
	}
	nMod := fmt.Sprintf("%d modules", len(shapes))
	if skipped > 0 {
		nMod = fmt.Sprintf("%d modules (%d left unquantized by the config)", len(shapes)-skipped, skipped)
	}
	// The checks of the values see only the modules that could be read: a
	// count of all would pass modules nobody looked at.
	nRead := nMod
	if quant := len(shapes) - skipped; read < quant {
		nRead = fmt.Sprintf("%d of %d modules checked (%d failed the dtype and shape check)", read, quant, quant-read)
	}
	// With no module read (bits or group_size wrong in the configs) they
	// examined nothing: they fail as not checked, not pass on no evidence.
	values := func(problems []string) []string {
		if read == 0 {
			return []string{fmt.Sprintf("not checked: none of the %d modules passed the dtype and shape check", len(shapes))}
		}
		return problems
	}
	add("quantized tensors: dtypes and shapes", shapeP, nMod)
	add("no unquantized Linear weights left", leftP, nMod)
	if skipped > 0 || len(skipP) > 0 {
		add("modules the config leaves unquantized: fp16 weight only", skipP, fmt.Sprintf("%d modules", skipped))
	}
	if qc.Sym && !foreign {
		add(fmt.Sprintf("sym zero points = %d (%s)", 1<<(qc.Bits-1), format), values(zeroP), nRead)
	}
	add("g_idx consistent with group size and act order", values(gidxP), nRead)
	add("scales finite and positive", values(scaleP), nRead)
	if !foreign {
		plain := "plain tensors (embedding, norms, head) in fp16"
		if cfg.MoE != nil {
			plain = "plain tensors (embedding, norms, routers, head) in fp16"
		}
		add(plain, plainProblems(set, cfg), "")
	}
	var extraP []string
	for _, n := range model.Unexplained(set.Names(), cfg, qc) {
		extraP = append(extraP, fmt.Sprintf("%s: not explained by %s (num_hidden_layers %d)", n, filepath.Base(cfg.File), cfg.NumHiddenLayers))
	}
	add("every tensor explained by config.json", extraP, fmt.Sprintf("%d tensors", len(set.Names())))
	if !foreign {
		r.Loaders = gptq.Loaders(*qc, shapes)
	}
	r.OK = true
	for _, c := range r.Checks {
		r.OK = r.OK && c.OK
	}
	return r, nil
}

// tensorSet is a checkpoint's weights: a *safetensors.Set, or the GPTQ
// view of an AWQ or compressed-tensors one.
type tensorSet interface {
	Names() []string
	Tensor(name string) (safetensors.Tensor, error)
}

// readLinear binds the four tensors of a quantized Linear, checking dtypes and
// shapes against spec §1.1.
func readLinear(set tensorSet, name string, K, N int, qc *gptq.QuantizeConfig) (*gptq.Linear, error) {
	qw, qz, sc, _, err := gptq.ShapesFor(K, N, qc.Bits, qc.GroupSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	want := []struct {
		suffix string
		dtype  safetensors.DType
		shape  []int
	}{
		{".qweight", safetensors.I32, qw[:]},
		{".qzeros", safetensors.I32, qz[:]},
		{".scales", safetensors.F16, sc[:]},
		{".g_idx", safetensors.I32, []int{K}},
	}
	ts := make([]safetensors.Tensor, len(want))
	for i, w := range want {
		t, err := set.Tensor(name + w.suffix)
		if err != nil {
			return nil, err
		}
		if t.DType != w.dtype || !slices.Equal(t.Shape, w.shape) {
			return nil, fmt.Errorf("tensor %q: %s %v, want %s %v", name+w.suffix, t.DType, t.Shape, w.dtype, w.shape)
		}
		ts[i] = t
	}
	lin := &gptq.Linear{K: K, N: N, Bits: qc.Bits, GroupSize: qc.GroupSize, Format: qc.Format()}
	if lin.QWeight, err = ts[0].Int32(); err != nil {
		return nil, err
	}
	if lin.QZeros, err = ts[1].Int32(); err != nil {
		return nil, err
	}
	lin.Scales = make([]uint16, len(ts[2].Data)/2)
	for i := range lin.Scales {
		lin.Scales[i] = uint16(ts[2].Data[2*i]) | uint16(ts[2].Data[2*i+1])<<8
	}
	if lin.GIdx, err = ts[3].Int32(); err != nil {
		return nil, err
	}
	if err := lin.Validate(name); err != nil && !errors.Is(err, gptq.ErrBadScale) {
		return nil, err
	}
	return lin, nil // damaged scales are the scale check's to report
}

// symZeroProblem checks that every zero point of a sym checkpoint is
// 2^(bits-1): the Marlin kernels ignore qzeros and assume it (spec §1.4).
func symZeroProblem(name string, lin *gptq.Linear, format gptq.Format) string {
	G := gptq.Groups(lin.K, lin.GroupSize)
	z, err := gptq.UnpackQZeros(lin.QZeros, G, lin.N, lin.Bits, format)
	if err != nil {
		return fmt.Sprintf("%s.qzeros: %v", name, err)
	}
	want := uint8(1 << (lin.Bits - 1))
	for i, v := range z {
		if v != want {
			return fmt.Sprintf("%s.qzeros: zero point %d at group %d column %d, want %d", name, v, i/lin.N, i%lin.N, want)
		}
	}
	return ""
}

// gIdxProblem checks g_idx against spec §1.5: k/gs without act order (and
// with static groups); with act order every group but the last holds exactly
// gs columns.
func gIdxProblem(name string, g []int32, K int, qc *gptq.QuantizeConfig) string {
	gs := qc.GroupSize
	if gs <= 0 {
		gs = K
	}
	G := (K + gs - 1) / gs
	if !qc.DescAct || qc.StaticGroups {
		for k, v := range g {
			if int(v) != k/gs {
				return fmt.Sprintf("%s.g_idx[%d] = %d, want %d (k/group_size)", name, k, v, k/gs)
			}
		}
		return ""
	}
	count := make([]int, G)
	for k, v := range g {
		if v < 0 || int(v) >= G {
			return fmt.Sprintf("%s.g_idx[%d] = %d, outside [0,%d)", name, k, v, G)
		}
		count[v]++
	}
	for i, c := range count {
		want := gs
		if i == G-1 {
			want = K - gs*(G-1)
		}
		if c != want {
			return fmt.Sprintf("%s.g_idx: group %d holds %d columns, want %d", name, i, c, want)
		}
	}
	return ""
}

// plainProblems lists the tensors a GPTQ checkpoint keeps unquantized
// (embedding, norms, the routers of mixture-of-experts layers, head) that
// are missing, not fp16 or not of the config's shape.
func plainProblems(set tensorSet, cfg *hfconfig.Config) []string {
	type want struct {
		name  string
		shape []int
	}
	ws := []want{{"model.embed_tokens.weight", []int{cfg.VocabSize, cfg.HiddenSize}}, {"model.norm.weight", []int{cfg.HiddenSize}}}
	if !cfg.TieWordEmbeddings {
		ws = append(ws, want{"lm_head.weight", []int{cfg.VocabSize, cfg.HiddenSize}})
	}
	for li := 0; li < cfg.NumHiddenLayers; li++ {
		for _, n := range model.LayerNormNames(cfg, li) {
			ws = append(ws, want{n, model.WantShape(n, cfg, nil)})
		}
		if cfg.Sparse(li) {
			// The router (and a shared expert's gate) stays in floating
			// point, as GPTQModel keeps it.
			n := cfg.MoE.RouterName(li)
			ws = append(ws, want{n, model.WantShape(n, cfg, nil)})
			if cfg.MoE.SharedSize > 0 {
				n := cfg.MoE.SharedGateName(li)
				ws = append(ws, want{n, model.WantShape(n, cfg, nil)})
			}
		}
	}
	var ps []string
	for _, w := range ws {
		t, err := set.Tensor(w.name)
		if err != nil {
			ps = append(ps, err.Error())
			continue
		}
		if t.DType != safetensors.F16 || !slices.Equal(t.Shape, w.shape) {
			ps = append(ps, fmt.Sprintf("tensor %q: %s %v, want F16 %v", w.name, t.DType, t.Shape, w.shape))
		}
	}
	return ps
}

func metadataProblems(set *safetensors.Set) []string {
	var ps []string
	for _, f := range set.Files() {
		file, err := safetensors.Open(f)
		if err != nil {
			ps = append(ps, err.Error())
			continue
		}
		if got := file.Metadata()["format"]; got != "pt" {
			ps = append(ps, fmt.Sprintf("%s: __metadata__ format %q, want \"pt\"", filepath.Base(f), got))
		}
		file.Close()
	}
	return ps
}

// configProblems checks that config.json carries a quantization_config (vLLM
// and TGI read it first, spec §2.4) and that quantize_config.json, when
// present, agrees with it.
func configProblems(dir string, qc *gptq.QuantizeConfig, src string, cfg *hfconfig.Config) []string {
	var ps []string
	if qc.QuantMethod != "" && qc.QuantMethod != "gptq" {
		ps = append(ps, fmt.Sprintf("%s: quant_method %q, want \"gptq\"", filepath.Base(src), qc.QuantMethod))
	}
	if len(cfg.QuantizationConfig) == 0 {
		ps = append(ps, "config.json: no quantization_config block (vLLM and TGI read it first)")
	} else {
		fromCfg, err := gptq.ParseQuantizeConfig(cfg.QuantizationConfig, filepath.Join(dir, "config.json"))
		if err != nil {
			ps = append(ps, err.Error())
		} else if d := gptq.Differences(qc, fromCfg); d != "" {
			ps = append(ps, fmt.Sprintf("config.json quantization_config disagrees with %s: %s", filepath.Base(src), d))
		}
		var raw map[string]json.RawMessage
		if json.Unmarshal(cfg.QuantizationConfig, &raw) == nil {
			if _, ok := raw["sym"]; !ok {
				ps = append(ps, "config.json quantization_config: no \"sym\" key (TGI then assumes sym=false)")
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "quantize_config.json")); err != nil {
		ps = append(ps, "no quantize_config.json (AutoGPTQ and ExLlama read it)")
	}
	return ps
}

func summarize(problems []string) string {
	var buf bytes.Buffer
	for i, p := range problems {
		if i == maxProblems {
			fmt.Fprintf(&buf, "; and %d more", len(problems)-maxProblems)
			break
		}
		if i > 0 {
			buf.WriteString("; ")
		}
		buf.WriteString(p)
	}
	return buf.String()
}

// skippedProblem checks a Linear that the config leaves unquantized (its
// dynamic key or modules_in_block_to_quantize): its weight of shape [N,
// K] in a float type the loaders read (gptqtool writes F16; GPTQModel may
// keep the model's BF16), and none of the GPTQ tensors.
func skippedProblem(set tensorSet, inSet map[string]bool, name string, K, N int) string {
	for _, sfx := range []string{".qweight", ".qzeros", ".scales", ".g_idx"} {
		if inSet[name+sfx] {
			return fmt.Sprintf("%s%s: the config leaves %s unquantized (dynamic or modules_in_block_to_quantize), yet it has GPTQ tensors", name, sfx, name)
		}
	}
	t, err := set.Tensor(name + ".weight")
	if err != nil {
		return fmt.Sprintf("%s.weight: missing, and the config leaves %s unquantized (dynamic or modules_in_block_to_quantize)", name, name)
	}
	if (t.DType != safetensors.F16 && t.DType != safetensors.BF16 && t.DType != safetensors.F32) || !slices.Equal(t.Shape, []int{N, K}) {
		return fmt.Sprintf("%s.weight: %s %v, want F16, BF16 or F32 [%d %d]", name, t.DType, t.Shape, N, K)
	}
	return ""
}
