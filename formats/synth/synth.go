// Package synth writes random-weight checkpoints of a real model's shape,
// for benchmarks that need the real sizes but not the real values (speed
// and memory do not depend on them): the config of the real model, its
// tokenizer files, and weights laid out as the Hugging Face repository
// lays them out (sharded safetensors with an index).
//
// The weights are drawn so that GPTQ is not degenerate on them: Linear
// weights are zero-mean with standard deviation 0.9/√K and mildly heavy
// tails (a 2% share of values 2.5× wider: kurtosis ≈ 4, as measured on the
// trained openchat-tiny fixture, 3.0-3.9), the embedding and head likewise,
// norm weights near the trained fixture's (0.7, 0.8 and 2.0 with small
// spreads). The same seed gives the same bytes whatever the thread count.
//
// With Options.GPTQ the Linear modules are written already quantized, as a
// GPTQ checkpoint (v1, symmetric) in the layout every loader reads: random
// codes, zero points at the middle of the range, fp16 scales giving the
// float synth's spread, and with desc_act a g_idx of a random processing
// order shared by the modules that read one input (q/k/v, gate/up), as
// GPTQ's one Hessian per input gives; the other tensors in fp16. Decode and
// load benchmarks then need neither the float checkpoint nor a calibration.
package synth

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
)

// Options configure Write.
type Options struct {
	// ConfigDir holds config.json (and optionally generation_config.json).
	ConfigDir string
	// TokenizerDir holds the tokenizer files to copy; "" copies none.
	TokenizerDir string
	// Out is the checkpoint directory to create; it must not exist.
	Out string
	// Layers overrides num_hidden_layers when > 0.
	Layers int
	// DType is "bf16" (default), "f16" or "f32".
	DType string
	// Seed selects the random stream.
	Seed uint64
	// Shards is the number of safetensors files (0: 3, as openchat-3.5-1210).
	Shards int
	// Threads bounds the generators (0: all cores).
	Threads int
	// GPTQ, when not nil, writes the Linear modules quantized with its
	// bits, group size and desc_act (sym, v1); DType must then be "" or
	// "f16".
	GPTQ *gptq.QuantizeConfig
}

// Summary is what Write reports.
type Summary struct {
	Out        string `json:"out"`
	Tensors    int    `json:"tensors"`
	Parameters int64  `json:"parameters"`
	Bytes      int64  `json:"bytes"`
	Shards     int    `json:"shards"`
}

// tokenizerFiles are copied from TokenizerDir when present.
var tokenizerFiles = []string{
	"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
}

// checkTokenizerDir refuses a TokenizerDir that is not a directory holding
// tokenizer.json or tokenizer.model, where the copy found nothing to copy
// and the checkpoint came out without a tokenizer.
func checkTokenizerDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("synth: tokenizer: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("synth: tokenizer %s is a file: want the directory that holds tokenizer.json or tokenizer.model", dir)
	}
	for _, f := range []string{"tokenizer.json", "tokenizer.model"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return nil
		}
	}
	return fmt.Errorf("synth: tokenizer %s holds neither tokenizer.json nor tokenizer.model", dir)
}

// dist is how one tensor's values are drawn.
type dist struct {
	kind      kind
	mean, std float64
	tail      bool // 2% of values 2.5x wider
	// GPTQ tensors: the module's K, N and bits, its group size, and for
	// g_idx with act order the key of its input's processing order.
	k, n, bits, gs int
	permKey        uint64
	// params is the model parameters the tensor holds (a qweight: K·N).
	params int64
}

// kind is what a tensor holds.
type kind int

const (
	floats  kind = iota // drawn values in the checkpoint dtype
	codes               // a qweight: uniformly random packed codes
	zeros               // a qzeros: every zero point 2^(bits-1)
	scales              // fp16 scales around the float synth's spread
	groupOf             // g_idx
)

// Write creates the checkpoint. The directory is built under a temporary
// name and renamed when complete; a failure, or ctx ending (an interrupt),
// removes it, between tensors, and returns the error (ctx's).
func Write(ctx context.Context, o Options) (*Summary, error) {
	cfgPath := filepath.Join(o.ConfigDir, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	cfg, err := hfconfig.Parse(raw, cfgPath)
	if err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	if o.Layers > 0 {
		cfg.NumHiddenLayers = o.Layers
	}
	var sdt safetensors.DType
	var torchDType string
	if o.GPTQ != nil {
		if o.DType != "" && o.DType != "f16" {
			return nil, fmt.Errorf("synth: dtype %q with GPTQ: the other tensors of a GPTQ checkpoint are f16", o.DType)
		}
		if err := o.GPTQ.Validate(); err != nil {
			return nil, fmt.Errorf("synth: %w", err)
		}
		o.DType = "f16"
	}
	switch o.DType {
	case "", "bf16":
		sdt, torchDType = safetensors.BF16, "bfloat16"
	case "f16":
		sdt, torchDType = safetensors.F16, "float16"
	case "f32":
		sdt, torchDType = safetensors.F32, "float32"
	default:
		return nil, fmt.Errorf("synth: dtype %q: want bf16, f16 or f32", o.DType)
	}
	if o.TokenizerDir != "" {
		if err := checkTokenizerDir(o.TokenizerDir); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(o.Out); err == nil {
		return nil, fmt.Errorf("synth: output directory %s exists", o.Out)
	}
	infos, dists, err := plan(cfg, sdt, o.GPTQ)
	if err != nil {
		return nil, err
	}
	sizes := make([]int64, len(infos))
	for i, ti := range infos {
		sizes[i] = int64(numel(ti.Shape)) * int64(ti.DType.Size())
	}
	shards := o.Shards
	if shards <= 0 {
		shards = 3
	}
	maxShard := shardCap(sizes, shards)
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(o.Out)), 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(o.Out)), "."+filepath.Base(o.Out)+".partial-")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	os.Chmod(tmp, 0o755)
	w, err := safetensors.Create(tmp, infos, safetensors.WriterOptions{MaxShardBytes: maxShard, Metadata: map[string]string{"format": "pt"}})
	if err != nil {
		return nil, err
	}
	threads := o.Threads
	if threads <= 0 {
		threads = goruntime.NumCPU()
	}
	// Generate the next tensor while the current one is written; stop
	// ends the generator after the tensor it is drawing.
	type gen struct {
		data []byte
	}
	next, stop := make(chan gen, 1), make(chan struct{})
	go func() {
		defer close(next)
		for i, ti := range infos {
			select {
			case next <- gen{data: fill(ti, dists[i], o.Seed, uint64(i), threads)}:
			case <-stop:
				return
			}
		}
	}()
	for _, ti := range infos {
		g := <-next
		err := ctx.Err()
		if err == nil {
			err = w.Write(ti.Name, g.data)
		}
		if err != nil {
			w.Abort()
			close(stop)
			for range next {
			}
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	extra := map[string]any{"num_hidden_layers": cfg.NumHiddenLayers}
	for _, k := range cfg.DTypeKeys() {
		extra[k] = torchDType
	}
	if o.GPTQ != nil {
		extra["quantization_config"] = o.GPTQ.ConfigJSONBlock()
		qc, err := o.GPTQ.MarshalQuantizeConfig()
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(tmp, "quantize_config.json"), qc, 0o644); err != nil {
			return nil, err
		}
	}
	cfgJSON, err := cfg.MarshalWith(extra)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "config.json"), cfgJSON, 0o644); err != nil {
		return nil, err
	}
	copies := []string{filepath.Join(o.ConfigDir, "generation_config.json")}
	if o.TokenizerDir != "" {
		for _, f := range tokenizerFiles {
			copies = append(copies, filepath.Join(o.TokenizerDir, f))
		}
	}
	for _, src := range copies {
		data, err := os.ReadFile(src)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(tmp, filepath.Base(src)), data, 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.Rename(tmp, o.Out); err != nil {
		return nil, err
	}
	ok = true
	files, _ := filepath.Glob(filepath.Join(o.Out, "*.safetensors"))
	var size int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			size += st.Size()
		}
	}
	var params int64
	for _, d := range dists {
		params += d.params
	}
	return &Summary{Out: o.Out, Tensors: len(infos), Parameters: params, Bytes: size, Shards: len(files)}, nil
}

// shardCap is the smallest MaxShardBytes for which the safetensors writer's
// greedy plan (a shard closes before the tensor that would overflow it)
// makes at most n shards, so that the shards come out as even as the
// tensor order allows; 0 (one file) for n <= 1.
func shardCap(sizes []int64, n int) int64 {
	if n <= 1 {
		return 0
	}
	count := func(limit int64) int {
		k, cur := 1, int64(0)
		for _, s := range sizes {
			if cur > 0 && cur+s > limit {
				k++
				cur = 0
			}
			cur += s
		}
		return k
	}
	var lo, hi int64 = 1, 0
	for _, s := range sizes {
		hi += s
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		if count(mid) <= n {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// plan lists the tensors in the Hugging Face order (embedding, layers,
// final norm, head) with their distributions; with q the Linear modules
// as GPTQ tensors (qweight, qzeros, scales, g_idx). A Linear that the
// config gives a bias (hfconfig.Config.LinearBias: Qwen2's q/k/v) gets
// module.bias [N] too, and a config with per-head q/k norms
// (hfconfig.Config.QKNorm: Qwen3) self_attn.q_norm/k_norm.weight
// [head_dim], floating point in a GPTQ checkpoint too; a gemma2 or gemma3_text
// config pre_feedforward_layernorm and post_feedforward_layernorm too; a
// mixture-of-experts layer (hfconfig.Config.Sparse) its router (floating
// point) and its experts' Linears in place of the MLP's, and Qwen2-MoE's
// shared expert's Linears and its gate (floating point). A phi3 config gets
// Phi-3's fused self_attn.qkv_proj [q; k; v] and mlp.gate_up_proj
// [gate; up] in their place (floating point only).
func plan(cfg *hfconfig.Config, dt safetensors.DType, q *gptq.QuantizeConfig) ([]safetensors.TensorInfo, []dist, error) {
	h, inter := cfg.HiddenSize, cfg.IntermediateSize
	qd, kv := cfg.NumAttentionHeads*cfg.HeadDim, cfg.NumKeyValueHeads*cfg.HeadDim
	var infos []safetensors.TensorInfo
	var dists []dist
	add := func(name string, d dist, shape ...int) {
		infos = append(infos, safetensors.TensorInfo{Name: name, DType: dt, Shape: shape})
		d.params = int64(numel(shape))
		dists = append(dists, d)
	}
	var err error
	// lin adds module's weight [N, K], or its GPTQ tensors reading the
	// input of processing order key.
	lin := func(module string, N, K int, key uint64) {
		if _, m, _ := strings.Cut(module[len("model.layers."):], "."); cfg.LinearBias(m) {
			// Qwen2's q/k/v biases: of the products' own scale (a GPTQ
			// checkpoint keeps them in fp16, as its other float tensors).
			add(module+".bias", dist{std: 0.5}, N)
		}
		d := dist{std: 0.9 / math.Sqrt(float64(K)), tail: true}
		if q == nil {
			add(module+".weight", d, N, K)
			return
		}
		qs, zs, ss, gs, e := gptq.ShapesFor(K, N, q.Bits, q.GroupSize)
		if e != nil {
			err = fmt.Errorf("synth: %s [%d %d] at %d bits: %w", module, N, K, q.Bits, e)
			return
		}
		g := dist{k: K, n: N, bits: q.Bits, gs: q.GroupSize, std: d.std}
		for _, t := range []struct {
			suffix string
			kind   kind
			dt     safetensors.DType
			shape  [2]int
		}{{".qweight", codes, safetensors.I32, qs}, {".qzeros", zeros, safetensors.I32, zs}, {".scales", scales, safetensors.F16, ss}, {".g_idx", groupOf, safetensors.I32, gs}} {
			shape := []int{t.shape[0], t.shape[1]}
			if t.kind == groupOf {
				shape = []int{t.shape[0]}
			}
			infos = append(infos, safetensors.TensorInfo{Name: module + t.suffix, DType: t.dt, Shape: shape})
			gd := g
			gd.kind = t.kind
			if t.kind == codes {
				gd.params = int64(K) * int64(N)
			}
			if t.kind == groupOf && q.DescAct {
				gd.permKey = key
			}
			dists = append(dists, gd)
		}
	}
	phi3 := cfg.ModelType == "phi3"
	if phi3 && q != nil {
		return nil, nil, fmt.Errorf("synth: %s: a GPTQ phi3 checkpoint is not written (its fused qkv_proj and gate_up_proj)", cfg.File)
	}
	add("model.embed_tokens.weight", dist{std: 0.9 / math.Sqrt(float64(h)), tail: true}, cfg.VocabSize, h)
	// normW is a norm weight's distribution about mean: Gemma's norms
	// multiply by 1 + w, so its weights sit one lower to scale alike.
	normW := func(mean, std float64) dist {
		if cfg.Gemma() {
			mean--
		}
		return dist{mean: mean, std: std}
	}
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		// One processing order per input: q/k/v share theirs, as do gate/up.
		key := func(input uint64) uint64 { return uint64(i)<<8 | input }
		if cfg.PreNorms() {
			add(p+"input_layernorm.weight", normW(0.7, 0.04), h)
		}
		if cfg.Sparse(i) {
			// A mixture-of-experts layer: the router, whose logits
			// spread over about one unit so that tokens pick different
			// experts, then each expert's three Linears (an input order
			// of its own for its gate/up, another for its down).
			m := cfg.MoE
			add(m.RouterName(i), dist{std: 1.5 / math.Sqrt(float64(h))}, m.Experts, h)
			for e := range m.Experts {
				names := m.ExpertModules(e)
				lin(p+names[0], m.ExpertSize, h, key(1<<32|uint64(2*e)))
				lin(p+names[1], m.ExpertSize, h, key(1<<32|uint64(2*e)))
				lin(p+names[2], h, m.ExpertSize, key(1<<32|uint64(2*e+1)))
			}
			if m.SharedSize > 0 {
				// Qwen2-MoE's shared expert and its gate, whose
				// logits spread about zero as the router's.
				add(m.SharedGateName(i), dist{std: 1.5 / math.Sqrt(float64(h))}, 1, h)
				names := m.SharedModules()
				lin(p+names[0], m.SharedSize, h, key(1<<32|uint64(2*m.Experts)))
				lin(p+names[1], m.SharedSize, h, key(1<<32|uint64(2*m.Experts)))
				lin(p+names[2], h, m.SharedSize, key(1<<32|uint64(2*m.Experts+1)))
			}
		} else {
			lin(p+"mlp.down_proj", h, inter, key(4))
		}
		switch {
		case cfg.Sparse(i):
		case phi3:
			// Phi-3's fused gate_up_proj [gate; up] and qkv_proj [q; k; v]:
			// the parts' distribution (all read the hidden state).
			lin(p+"mlp.gate_up_proj", 2*inter, h, key(3))
		default:
			lin(p+"mlp.gate_proj", inter, h, key(3))
			lin(p+"mlp.up_proj", inter, h, key(3))
		}
		add(p+"post_attention_layernorm.weight", normW(0.8, 0.06), h)
		if cfg.GemmaPostNorms() || cfg.Olmo2() {
			// Gemma 2's and 3's other two norms (OLMo 2's second).
			add(p+"post_feedforward_layernorm.weight", normW(1.5, 0.06), h)
		}
		if cfg.GemmaPostNorms() {
			add(p+"pre_feedforward_layernorm.weight", normW(1.3, 0.06), h)
		}
		if cfg.QKNorm() {
			// Qwen3's per-head norms: spread out, as released ones are,
			// so that where they apply (before RoPE) tells.
			_, kw := cfg.QKNormWidths()
			add(p+"self_attn.k_norm.weight", normW(1.0, 0.4), kw)
		}
		if phi3 {
			lin(p+"self_attn.o_proj", h, qd, key(2))
			lin(p+"self_attn.qkv_proj", qd+2*kv, h, key(1))
			continue
		}
		lin(p+"self_attn.k_proj", kv, h, key(1))
		lin(p+"self_attn.o_proj", h, qd, key(2))
		if cfg.QKNorm() {
			qw, _ := cfg.QKNormWidths()
			add(p+"self_attn.q_norm.weight", normW(1.0, 0.4), qw)
		}
		lin(p+"self_attn.q_proj", qd, h, key(1))
		lin(p+"self_attn.v_proj", kv, h, key(1))
	}
	add("model.norm.weight", normW(2.0, 0.1), h)
	if !cfg.TieWordEmbeddings {
		add("lm_head.weight", dist{std: 0.9 / math.Sqrt(float64(h)), tail: true}, cfg.VocabSize, h)
	}
	return infos, dists, err
}

// chunk is the values per generator stream; each chunk's stream is seeded
// by (seed, tensor, chunk), so the output does not depend on threads.
const chunk = 1 << 20

// fill draws one tensor's values and encodes them.
func fill(ti safetensors.TensorInfo, d dist, seed, tensor uint64, threads int) []byte {
	dt := ti.DType
	switch d.kind {
	case zeros, groupOf:
		return fillGPTQ(d, seed)
	}
	n := numel(ti.Shape)
	out := make([]byte, n*dt.Size())
	chunks := (n + chunk - 1) / chunk
	var wg sync.WaitGroup
	work := make(chan int, chunks)
	for c := range chunks {
		work <- c
	}
	close(work)
	// The tail mixture's variance is 0.98 + 0.02·2.5² = 1.105.
	norm := 1.0
	if d.tail {
		norm = 1 / math.Sqrt(1.105)
	}
	for range min(threads, chunks) {
		wg.Go(func() {
			vals := make([]float32, chunk)
			for c := range work {
				lo, hi := c*chunk, min((c+1)*chunk, n)
				r := rand.New(rand.NewPCG(seed^0x9e3779b97f4a7c15, tensor<<32|uint64(c)))
				switch d.kind {
				case codes:
					// Every bit pattern is a valid code at any width.
					dst := out[lo*4 : hi*4]
					for i := 0; i < len(dst); i += 8 {
						if i+8 > len(dst) {
							binary.LittleEndian.PutUint32(dst[i:], r.Uint32())
							break
						}
						binary.LittleEndian.PutUint64(dst[i:], r.Uint64())
					}
					continue
				case scales:
					// Codes uniform over 2^bits values around the zero point
					// have a spread of 2^bits/sqrt(12) steps.
					s0 := d.std * math.Sqrt(12) / float64(int(1)<<d.bits)
					for i := range hi - lo {
						binary.LittleEndian.PutUint16(out[2*(lo+i):], half.F32ToF16(float32(s0*(0.8+0.4*r.Float64()))))
					}
					continue
				}
				v := vals[:hi-lo]
				for i := range v {
					x := r.NormFloat64()
					if d.tail && r.Uint32()%50 == 0 {
						x *= 2.5
					}
					v[i] = float32(d.mean + d.std*norm*x)
				}
				dst := out[lo*dt.Size() : hi*dt.Size()]
				switch dt {
				case safetensors.BF16:
					half.F32ToBF16Bytes(dst, v)
				case safetensors.F16:
					half.F32ToF16Bytes(dst, v)
				default:
					for i, f := range v {
						binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(f))
					}
				}
			}
		})
	}
	wg.Wait()
	return out
}

// fillGPTQ encodes a module's qzeros (every zero point 2^(bits-1)) or
// g_idx (groups of the input order permKey's random permutation, or in
// order).
func fillGPTQ(d dist, seed uint64) []byte {
	G := gptq.Groups(d.k, d.gs)
	var words []int32
	if d.kind == zeros {
		z := make([]uint8, G*d.n)
		for i := range z {
			z[i] = uint8(1 << (d.bits - 1))
		}
		var err error
		if words, err = gptq.PackQZeros(z, G, d.n, d.bits, gptq.FormatV1); err != nil {
			panic("synth: " + err.Error()) // the shapes were checked by plan
		}
	} else {
		var perm []int
		if d.permKey != 0 {
			perm = rand.New(rand.NewPCG(seed^0x51ed270b27a3f1c3, d.permKey)).Perm(d.k)
		}
		words = gptq.GIdx(d.k, d.gs, perm, false)
	}
	out := make([]byte, 4*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint32(out[4*i:], uint32(w))
	}
	return out
}
