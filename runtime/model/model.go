package model

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/gptqtool/gptqtool/formats/fused"
	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/quantized"
	"github.com/gptqtool/gptqtool/formats/weights"
	"github.com/gptqtool/gptqtool/runtime"
)

// Model is a loaded decoder model: immutable config and weights on a
// backend, plus reusable scratch state.
type Model struct {
	// Config is the parsed config.json.
	Config *hfconfig.Config
	// Quant is the GPTQ configuration of a quantized checkpoint, nil for a
	// floating-point one.
	Quant *gptq.QuantizeConfig
	// EOSTokenIDs are the end-of-sequence ids of config.json and
	// generation_config.json, deduplicated, in that order.
	EOSTokenIDs []int

	// ctx is the context the model runs with (Options.Context, else
	// max_position_embeddings; 0 where neither is known), rope the RoPE
	// scaling as it applies there.
	ctx  int
	rope hfconfig.RopeScaling

	b      runtime.Backend
	d      dims
	bd     binder
	embed  runtime.Tensor // [vocab, hidden]
	norm   runtime.Tensor // [hidden]
	head   runtime.Tensor // [vocab, hidden]; embed when tied
	layers []layerWeights

	s      scratch
	logits runtime.Tensor // [rows, vocab], rows of the largest head MatMul so far
}

// Options configure LoadWith.
type Options struct {
	// DType is the dtype of the activations, the KV cache and the bound
	// floating-point weights: F32 (the zero value), or F16/BF16 where the
	// backend has them. Logits are F32 whatever it is.
	DType runtime.DType
	// Dequantize binds GPTQ weights dequantized even on a backend that
	// multiplies by them quantized (runtime.KeepsQuant: the CUDA backend
	// in 16-bit, the CPU backend in F32, whose products equal the
	// dequantized weights' bit for bit): the reference path.
	Dequantize bool
	// WidenWeights binds an F16 or BF16 checkpoint's Linear weights
	// converted to fp32 even on a backend that keeps them 16-bit in an F32
	// model (runtime.WeightLoader: the CPU backend, whose products equal
	// the converted weights' bit for bit): the reference path.
	WidenWeights bool
	// Context is the longest sequence (prompt and generated tokens, a
	// perplexity window) the model is run with, in positions: 0 (the
	// default) is max_position_embeddings. It chooses Phi-3's longrope
	// factors, once for the model: the short ones where Context <=
	// original_max_position_embeddings, the long ones past it
	// (hfconfig.RopeScaling.ForContext). transformers chooses per
	// sequence, switching to the long factors once a sequence passes the
	// original length; a model with a KV cache cannot, since the keys it
	// holds were rotated by the table of their time and would be read
	// against positions rotated by the other (transformers recomputes
	// every key each step; llama.cpp also chooses once, by n_ctx).
	// NewPagedCache refuses a maxLen past it, verify a window past it.
	Context int
}

// Load reads a checkpoint directory (config.json, *.safetensors, and for
// GPTQ quantize_config.json or config.json quantization_config; AWQ and
// compressed-tensors checkpoints read as the GPTQ checkpoint they are
// equivalent to, package quantized) and binds
// every tensor on b in fp32. Floating-point tensors may be F32, F16 or
// BF16; GPTQ Linear modules are dequantized to fp32, or kept packed where
// b multiplies by them in F32 (the CPU backend, with the same products),
// and 16-bit Linear weights stay 16-bit there too (runtime.WeightLoader).
func Load(dir string, b runtime.Backend) (*Model, error) {
	return LoadWith(dir, b, Options{})
}

// LoadWith is Load with the model's dtype and the handling of GPTQ weights
// given by o.
func LoadWith(dir string, b runtime.Backend, o Options) (*Model, error) {
	cfg, quant, set, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	defer set.Close()
	m, err := bind(set, cfg, quant, b, o)
	if err != nil {
		return nil, err
	}
	gen, err := loadGeneration(dir)
	if err != nil {
		m.Close()
		return nil, err
	}
	m.EOSTokenIDs = eosIDs(cfg, gen)
	return m, nil
}

// loadGeneration reads dir's generation_config.json, nil where there is
// none.
func loadGeneration(dir string) (*hfconfig.GenerationConfig, error) {
	gen, err := hfconfig.LoadGeneration(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("model: %w", err)
	}
	return gen, nil
}

// eosIDs are the ids that end generation: config.json's, then
// generation_config.json's (gen may be nil).
func eosIDs(cfg *hfconfig.Config, gen *hfconfig.GenerationConfig) []int {
	ids := appendNew(nil, cfg.EOSTokenIDs...)
	if gen != nil {
		ids = appendNew(ids, gen.EOSTokenIDs...)
	}
	return ids
}

// Checkpoint is a checkpoint directory read up to its tensors' values
// (Open): its configs and its weight files' headers, each read once and
// checked as Check checks them, for Load to bind without reading them
// again. A command that runs one checkpoint after another opens the later
// ones first, so that a bad one is refused before the first has run.
type Checkpoint struct {
	Dir    string
	Config *hfconfig.Config
	// Quant is the GPTQ config (for AWQ and compressed-tensors, the one
	// they read as), nil for a floating-point checkpoint.
	Quant *gptq.QuantizeConfig
	// Generation is generation_config.json, nil where there is none.
	Generation *hfconfig.GenerationConfig
	set        weights.Set
}

// Open reads and checks the checkpoint in dir as Check does, plus its
// generation config, and keeps its weight files mapped (none of their
// data read) until Close.
func Open(dir string) (*Checkpoint, error) {
	cfg, quant, set, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	if err := check(dir, cfg, quant, set); err != nil {
		set.Close()
		return nil, err
	}
	gen, err := loadGeneration(dir)
	if err != nil {
		set.Close()
		return nil, err
	}
	return &Checkpoint{Dir: dir, Config: cfg, Quant: quant, Generation: gen, set: set}, nil
}

// Load binds the checkpoint's weights on b as LoadWith does, from what
// Open read. The checkpoint may be closed once it returns.
func (c *Checkpoint) Load(b runtime.Backend, o Options) (*Model, error) {
	m, err := bind(c.set, c.Config, c.Quant, b, o)
	if err != nil {
		return nil, err
	}
	m.EOSTokenIDs = eosIDs(c.Config, c.Generation)
	return m, nil
}

// Close releases the weight files.
func (c *Checkpoint) Close() error { return c.set.Close() }

// openDir reads a checkpoint directory's configs and opens its weights as
// LoadWith does; quant is nil for a floating-point checkpoint. An AWQ or
// compressed-tensors checkpoint's weights are its GPTQ view
// (quantized.Config.Open).
func openDir(dir string) (*hfconfig.Config, *gptq.QuantizeConfig, weights.Set, error) {
	cfg, err := hfconfig.Load(dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("model: %w", err)
	}
	qconf, err := quantized.ReadConfig(dir)
	switch {
	case errors.Is(err, gptq.ErrNotQuantized):
		qconf = nil
	case err != nil:
		return nil, nil, nil, fmt.Errorf("model: %w", err)
	case qconf.Method == quantized.GPTQ:
		if err := gptq.CheckAgreement(dir, qconf.GPTQ, qconf.Source, true); err != nil {
			return nil, nil, nil, fmt.Errorf("model: %w", err)
		}
	}
	st, err := weights.OpenText(dir, cfg)
	if err != nil {
		// A PyTorch checkpoint (AutoGPTQ's use_safetensors=False, older
		// transformers) is read by convert alone: say so, rather than only
		// that there is no safetensors file.
		if bins, _ := filepath.Glob(filepath.Join(dir, "*.bin")); errors.Is(err, fs.ErrNotExist) && len(bins) > 0 {
			return nil, nil, nil, fmt.Errorf("model: %s holds PyTorch weights (%s), which are loaded only as safetensors: convert them first (gptqtool convert --in %s --out DIR): %w", dir, filepath.Base(bins[0]), dir, err)
		}
		return nil, nil, nil, fmt.Errorf("model: %w", err)
	}
	// Phi-3's fused qkv_proj and gate_up_proj read as their parts, a
	// qwen3_vl_moe's fused experts as per-expert Linears, so that the rest
	// of the loader sees the llama layout (package fused).
	set, err := fused.View(st, cfg)
	if err != nil {
		st.Close()
		return nil, nil, nil, fmt.Errorf("model: %w", err)
	}
	if qconf == nil {
		return cfg, nil, set, nil
	}
	linears, err := QuantLinears(cfg)
	if err != nil {
		set.Close()
		return nil, nil, nil, err
	}
	w, quant, err := qconf.Open(set, linears)
	if err != nil {
		set.Close()
		return nil, nil, nil, fmt.Errorf("model: %w", err)
	}
	return cfg, quant, w, nil
}

// QuantLinears lists the Linear modules a quantized checkpoint of cfg may
// quantize, with their sizes: every decoder layer's, and lm_head where the
// model has its own (not tied to the embeddings). An error says why
// cfg's sizes are invalid.
func QuantLinears(cfg *hfconfig.Config) ([]gptq.LinearShape, error) {
	d, err := dimsOf(cfg)
	if err != nil {
		return nil, err
	}
	var out []gptq.LinearShape
	for i := range cfg.NumHiddenLayers {
		for _, m := range LayerModules(cfg, i) {
			n, k, _ := d.linearShape(m)
			out = append(out, gptq.LinearShape{Name: LayerPrefix(i) + "." + m, K: k, N: n})
		}
	}
	if !cfg.TieWordEmbeddings {
		out = append(out, gptq.LinearShape{Name: "lm_head", K: d.hidden, N: d.vocab})
	}
	return out, nil
}

// Check refuses a checkpoint directory that LoadWith would refuse before
// reading a tensor's values (Linear biases aside, which it reads): its
// configs, each weight file's header and length, sizes the model cannot
// run, tensors config.json does not explain or lacks and biases that are
// not zeros (CheckWeights), and tensors of another shape than it gives
// (CheckShapes). It binds nothing: a command that loads checkpoints one
// after another (a model, then its baseline) checks the later ones first,
// so that a bad one is refused before the first has been run.
func Check(dir string) error {
	cfg, quant, set, err := openDir(dir)
	if err != nil {
		return err
	}
	defer set.Close()
	return check(dir, cfg, quant, set)
}

// check is Check of an opened directory.
func check(dir string, cfg *hfconfig.Config, quant *gptq.QuantizeConfig, set weights.Set) error {
	if _, err := dimsOf(cfg); err != nil {
		return err
	}
	if err := CheckWeights(set, cfg, quant); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	if err := CheckShapes(dir, set.Infos(), cfg, quant); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	return nil
}

func appendNew(dst []int, ids ...int) []int {
	for _, id := range ids {
		if id >= 0 && !slices.Contains(dst, id) {
			dst = append(dst, id)
		}
	}
	return dst
}

// FromWeights binds a model from already opened weights; quant is nil for a
// floating-point checkpoint. The weights may be closed once it returns.
func FromWeights(w Weights, cfg *hfconfig.Config, quant *gptq.QuantizeConfig, b runtime.Backend) (*Model, error) {
	return FromWeightsWith(w, cfg, quant, b, Options{})
}

// FromWeightsWith is FromWeights with load options (LoadWith's).
func FromWeightsWith(w Weights, cfg *hfconfig.Config, quant *gptq.QuantizeConfig, b runtime.Backend, o Options) (*Model, error) {
	m, err := bind(w, cfg, quant, b, o)
	if err != nil {
		return nil, err
	}
	m.EOSTokenIDs = appendNew(nil, cfg.EOSTokenIDs...)
	return m, nil
}

// contextOf resolves Options.Context for cfg: 0 is max_position_embeddings;
// below 0, or past max_position_embeddings, refused.
func contextOf(cfg *hfconfig.Config, ctx int) (int, error) {
	switch max := cfg.MaxPositionEmbeddings; {
	case ctx < 0:
		return 0, fmt.Errorf("model: context %d: want 0 (max_position_embeddings) or more", ctx)
	case ctx == 0:
		return max, nil
	case max > 0 && ctx > max:
		return 0, fmt.Errorf("model: context %d exceeds the model's %s", ctx, cfg.ContextLimit())
	}
	return ctx, nil
}

func bind(w Weights, cfg *hfconfig.Config, quant *gptq.QuantizeConfig, b runtime.Backend, o Options) (*Model, error) {
	ctx, err := contextOf(cfg, o.Context)
	if err != nil {
		return nil, err
	}
	d, err := dimsAt(cfg, ctx)
	if err != nil {
		return nil, err
	}
	if !runtime.Supports(b, o.DType) || o.DType == runtime.I32 {
		return nil, fmt.Errorf("model: backend %s has no %v activations", b.Name(), o.DType)
	}
	if err := checkLayerOps(d, b); err != nil {
		return nil, err
	}
	if err := checkMoE(d, b); err != nil {
		return nil, err
	}
	if err := CheckWeights(w, cfg, quant); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if p, ok := b.(runtime.Preparer); ok {
		// The backend readies its kernels while the weights upload.
		spec := runtime.ModelSpec{DType: o.DType, HeadDim: d.headDim, QueryHeads: d.heads, KVHeads: d.kvHeads, MoE: d.moe != nil}
		if quant != nil && runtime.KeepsQuant(b, o.DType) && !o.Dequantize {
			spec.Bits, spec.Sym = []int{quant.Bits}, quant.Sym
		}
		p.Prepare(spec)
	}
	m := &Model{Config: cfg, Quant: quant, ctx: ctx, rope: cfg.RopeScaling.ForContext(ctx), b: b, d: d, bd: binder{w: w, b: b, quant: quant, dt: o.DType, dequant: o.Dequantize, widen: o.WidenWeights}, s: scratch{dt: o.DType}}
	fail := func(err error) (*Model, error) {
		m.bd.free()
		return nil, err
	}
	if m.embed, err = m.bd.fp("model.embed_tokens.weight", d.vocab, d.hidden); err != nil {
		return fail(err)
	}
	m.layers = make([]layerWeights, cfg.NumHiddenLayers)
	io, _ := b.(runtime.InputOrderer)
	for i := range m.layers {
		if m.layers[i], err = bindLayer(&m.bd, d, i); err != nil {
			return fail(err)
		}
		if d.moe != nil {
			// A mixture-of-experts model's decode step (moeDecodeOps)
			// takes the attention's fusions that need no input order:
			// q/k/v normalizing x itself.
			if err := m.bd.fuseNorm(&m.layers[i].normed.attn, m.layers[i].attnNorm, m.layers[i].qkv); err != nil {
				return fail(fmt.Errorf("model: layer %d: %w", i, err))
			}
			continue
		}
		if d.unfused() {
			continue
		}
		if io != nil {
			m.layers[i].order = orderLayer(io, &m.layers[i])
		}
		if err := m.bd.fuseNorms(&m.layers[i]); err != nil {
			return fail(fmt.Errorf("model: layer %d: %w", i, err))
		}
		if err := m.bd.fuseMLP(&m.layers[i]); err != nil {
			return fail(fmt.Errorf("model: layer %d: %w", i, err))
		}
	}
	if m.norm, err = m.bd.fp("model.norm.weight", d.hidden); err != nil {
		return fail(err)
	}
	if cfg.TieWordEmbeddings {
		m.head = m.embed
	} else if quant != nil && quant.LMHead {
		if m.head, err = m.bd.linear("lm_head", d.vocab, d.hidden); err != nil {
			return fail(err)
		}
	} else if m.head, err = m.bd.weight("lm_head.weight", d.vocab, d.hidden); err != nil {
		return fail(err)
	}
	return m, nil
}

// CheckWeights refuses weights holding tensors cfg does not explain
// (CheckExplained) or lacking tensors it needs (CheckComplete), where w can
// list its tensors (a safetensors.Set can): a load then names every
// missing tensor, not the first one the binder asks for. Where both fail,
// the error wraps both (ErrUnexplained first, then ErrIncomplete). Then it
// refuses a Linear bias other than zeros (CheckBiases), which the model
// would not add.
func CheckWeights(w Weights, cfg *hfconfig.Config, quant *gptq.QuantizeConfig) error {
	lister, ok := w.(interface{ Names() []string })
	if !ok {
		return CheckBiases(w, cfg)
	}
	where := "weights"
	if f, ok := w.(interface{ Files() []string }); ok {
		if files := f.Files(); len(files) == 1 {
			where = files[0]
		} else if len(files) > 1 {
			where = filepath.Dir(files[0]) + " (" + strconv.Itoa(len(files)) + " files)"
		}
	}
	names := lister.Names()
	extra := CheckExplained(where, names, cfg, quant)
	missing := CheckComplete(where, names, cfg, quant)
	switch {
	case extra != nil && missing != nil:
		return fmt.Errorf("%w; %w", extra, missing)
	case extra != nil:
		return extra
	case missing != nil:
		return missing
	}
	return CheckBiases(w, cfg)
}

// Context returns the context the model was loaded for, in positions:
// Options.Context, else max_position_embeddings (0 where the config has
// none). Its RoPE table is the one of that context (RopeScaling).
func (m *Model) Context() int { return m.ctx }

// RopeScaling returns the config's RoPE scaling as the model applies it:
// for longrope, Long says whether its table takes the long factors at
// Context.
func (m *Model) RopeScaling() hfconfig.RopeScaling { return m.rope }

// Backend returns the backend the model runs on.
func (m *Model) Backend() runtime.Backend { return m.b }

// Close frees the model's weights and scratch.
func (m *Model) Close() {
	m.bd.free()
	m.s.free(m.b)
	m.b.Free(m.logits)
	m.logits = nil
}

// Cache is a KV cache: per layer, K (after RoPE) and V of shape
// [capacity, kvHeads*headDim], position p in row p, allocated once.
type Cache struct {
	b    runtime.Backend
	k, v []runtime.Tensor
	n    int
	cap  int
	err  error // allocation failure or use after Free, reported (wrapped) by the next forward
}

// NewCache returns an empty cache for up to maxTokens positions. An
// allocation failure is reported by the first Forward that uses the cache.
func (m *Model) NewCache(maxTokens int) *Cache {
	c := &Cache{b: m.b, cap: maxTokens}
	if maxTokens <= 0 {
		c.err = fmt.Errorf("cache of %d tokens", maxTokens)
		return c
	}
	for range m.layers {
		for _, dst := range []*[]runtime.Tensor{&c.k, &c.v} {
			t, err := m.b.Alloc(m.dtype(), maxTokens, m.d.kvDim())
			if err != nil {
				c.Free()
				c.err = fmt.Errorf("kv cache of %d tokens: %w", maxTokens, err)
				return c
			}
			*dst = append(*dst, t)
		}
	}
	return c
}

// Len returns the number of positions held.
func (c *Cache) Len() int { return c.n }

// Cap returns the number of positions the cache can hold.
func (c *Cache) Cap() int { return c.cap }

// Reset empties the cache for a new sequence, keeping its memory.
func (c *Cache) Reset() { c.n = 0 }

// Truncate drops the positions from n on (n <= Len), e.g. to re-run a
// shared prefix.
func (c *Cache) Truncate(n int) {
	if n >= 0 && n < c.n {
		c.n = n
	}
}

// Free releases the cache's memory; the cache is unusable afterwards.
func (c *Cache) Free() {
	for _, t := range c.k {
		c.b.Free(t)
	}
	for _, t := range c.v {
		c.b.Free(t)
	}
	c.k, c.v, c.n, c.cap = nil, nil, 0, 0
	if c.err == nil {
		c.err = errors.New("cache used after Free")
	}
}

// Forward runs ids as the continuation of the sequence in cache (positions
// cache.Len()...; a nil cache starts a fresh sequence at position 0) and
// returns the logits [len(ids), vocab], host row-major. The new positions'
// K and V are appended to cache. It is ForwardBatch of one sequence.
func (m *Model) Forward(ids []int, cache *Cache, hook Hook) ([]float32, error) {
	out, err := m.forward([][]int{ids}, []*Cache{cache}, hook, false)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// ForwardLast is Forward returning only the last token's logits [vocab];
// it skips the head for the other tokens (prompt prefill in generation).
func (m *Model) ForwardLast(ids []int, cache *Cache, hook Hook) ([]float32, error) {
	out, err := m.forward([][]int{ids}, []*Cache{cache}, hook, true)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// ForwardBatch runs several sequences in one pass: seqs[i] continues the
// sequence in caches[i] (positions caches[i].Len()...), or starts a fresh
// one at position 0 when caches is nil or caches[i] is nil; lengths may
// differ. It returns each sequence's logits [len(seqs[i]), vocab], host
// row-major, and appends each sequence's K and V to its cache.
//
// The rows of all sequences are stacked, so the embedding, norms, every
// MatMul, SwiGLU and the residual adds run once on [ΣT, ...]; RoPE and
// attention run per sequence. A sequence's logits equal those of Forward
// up to the order of additions inside the backend's MatMul, which may
// depend on a row's place in the stacked matrix (see TestForwardBatch).
// Hooks see the stacked rows [ΣT, cols], sequences in order.
//
// Nothing is run, and no cache changes, when an argument is invalid: no
// sequence, an empty sequence, len(caches) other than 0 or len(seqs), one
// cache given twice, or a sequence that does not fit its cache.
func (m *Model) ForwardBatch(seqs [][]int, caches []*Cache, hook Hook) ([][]float32, error) {
	return m.forward(seqs, caches, hook, false)
}

// ForwardBatchLast is ForwardBatch returning only each sequence's last
// token's logits [vocab] (batched decoding); the head runs on those rows
// alone.
func (m *Model) ForwardBatchLast(seqs [][]int, caches []*Cache, hook Hook) ([][]float32, error) {
	return m.forward(seqs, caches, hook, true)
}

// headRows bounds the rows of one head MatMul when several sequences are
// stacked, so that the logits buffer of a large batch stays near the size
// of one long sequence's; a single sequence always runs in one MatMul.
const headRows = 1024

// spans validates a batch and lays its sequences out as consecutive rows.
func (m *Model) spans(seqs [][]int, caches []*Cache) ([]span, error) {
	if len(seqs) == 0 {
		return nil, errors.New("model: forward of no sequences")
	}
	if len(caches) != 0 && len(caches) != len(seqs) {
		return nil, fmt.Errorf("model: %d caches for %d sequences", len(caches), len(seqs))
	}
	spans := make([]span, len(seqs))
	rows := 0
	for i, ids := range seqs {
		if len(ids) == 0 {
			return nil, fmt.Errorf("model: sequence %d: forward of no tokens", i)
		}
		for _, id := range ids {
			if id < 0 || id >= m.d.vocab {
				return nil, fmt.Errorf("model: sequence %d: token id %d outside vocab [0, %d)", i, id, m.d.vocab)
			}
		}
		sp := span{row0: rows, rows: len(ids)}
		if len(caches) != 0 && caches[i] != nil {
			c := caches[i]
			if c.err != nil {
				return nil, fmt.Errorf("model: sequence %d: %w", i, c.err)
			}
			if len(c.k) != len(m.layers) {
				return nil, fmt.Errorf("model: sequence %d: cache has %d layers, model %d", i, len(c.k), len(m.layers))
			}
			if slices.Contains(caches[:i], c) {
				return nil, fmt.Errorf("model: sequence %d: cache already used by sequence %d", i, slices.Index(caches, c))
			}
			if c.n+len(ids) > c.cap {
				return nil, fmt.Errorf("model: sequence %d: cache holds %d of %d positions; %d more do not fit", i, c.n, c.cap, len(ids))
			}
			sp.pos0, sp.cache = c.n, c
		}
		spans[i] = sp
		rows += len(ids)
	}
	return spans, nil
}

// body runs the embedding and every layer over the stacked sequences and
// advances the caches; x holds the last layer's output rows.
func (m *Model) body(seqs [][]int, caches []*Cache, hook Hook) ([]span, runtime.Tensor, error) {
	spans, err := m.spans(seqs, caches)
	if err != nil {
		return nil, nil, err
	}
	x, err := m.run(spans, slices.Concat(seqs...), observer{hook: hook})
	return spans, x, err
}

// Observe runs ids as a fresh sequence through the embedding and every
// layer, without a cache and without the head, and passes the embedding's
// output and each layer's intermediates to tap where they live, named and
// ordered as ForwardLast's hook sees them ("model.embed",
// "model.layers.<i>.attn_norm" …), so that statistics of the activations
// (the importance matrix) need not download them.
func (m *Model) Observe(ids []int, tap Tap) error {
	spans, err := m.spans([][]int{ids}, nil)
	if err != nil {
		return err
	}
	_, err = m.run(spans, ids, observer{tap: tap})
	return err
}

// run embeds ids (the stacked rows of spans) and runs every layer; caches
// advance; x holds the last layer's output rows.
func (m *Model) run(spans []span, ids []int, obs observer) (runtime.Tensor, error) {
	last := spans[len(spans)-1]
	T := last.row0 + last.rows
	if err := m.s.ensure(m.b, m.d, T); err != nil {
		return nil, err
	}
	b := m.b
	x := b.View(m.s.x, 0, T)
	b.Embedding(x, m.embed, ids)
	m.d.scaleEmbeddings(b, x)
	if err := obs.emit(b, "model.embed", x); err != nil {
		return nil, err
	}
	for i := range m.layers {
		if err := m.layers[i].forward(b, m.d, &m.s, x, spans, i, obs, "", FromInput, nil); err != nil {
			return nil, err
		}
	}
	for _, sp := range spans {
		switch {
		case sp.cache != nil:
			sp.cache.n = sp.pos0 + sp.rows
		case sp.seq != nil:
			sp.seq.Len = sp.pos0 + sp.rows
		}
	}
	return x, nil
}

func (m *Model) forward(seqs [][]int, caches []*Cache, hook Hook, lastOnly bool) ([][]float32, error) {
	spans, x, err := m.body(seqs, caches, hook)
	if err != nil {
		return nil, err
	}
	b := m.b
	last := spans[len(spans)-1]
	T := last.row0 + last.rows

	// The head's input rows: all rows, or each sequence's last row gathered
	// into rows 0..len(seqs)-1 of the norm output.
	rows := T
	if lastOnly {
		rows = len(spans)
		for i, sp := range spans {
			m.d.norm(b, b.View(m.s.xn, i, 1), b.View(x, sp.row0+sp.rows-1, 1), m.norm)
		}
	} else {
		m.d.norm(b, b.View(m.s.xn, 0, T), x, m.norm)
	}
	xn := b.View(m.s.xn, 0, rows)
	if err := emit(b, hook, "model.norm", xn); err != nil {
		return nil, err
	}
	out := make([]float32, rows*m.d.vocab)
	logits := make([][]float32, len(spans))
	if lastOnly {
		if err := m.logitsOf(xn, out); err != nil {
			return nil, err
		}
		for i := range logits {
			logits[i] = out[i*m.d.vocab : (i+1)*m.d.vocab : (i+1)*m.d.vocab]
		}
	} else {
		// Runs of whole sequences of at most headRows rows (or one longer
		// sequence) share a head MatMul.
		err := headRuns(spans, func(r0, r1, _, _ int) error {
			return m.logitsOf(b.View(xn, r0, r1-r0), out[r0*m.d.vocab:r1*m.d.vocab])
		})
		if err != nil {
			return nil, err
		}
		for i, sp := range spans {
			lo, hi := sp.row0*m.d.vocab, (sp.row0+sp.rows)*m.d.vocab
			logits[i] = out[lo:hi:hi]
		}
	}
	if hook != nil {
		hook("logits", out, rows, m.d.vocab)
	}
	return logits, nil
}

// logitsOf sets dst (host, [Rows(xn), vocab]) to the logits of the normed rows
// xn, through the model's logits buffer.
func (m *Model) logitsOf(xn runtime.Tensor, dst []float32) error {
	b, rows := m.b, runtime.Rows(xn)
	if err := m.ensureLogits(rows); err != nil {
		return err
	}
	lg := b.View(m.logits, 0, rows)
	m.headInto(lg, xn)
	if err := b.Download(dst, lg); err != nil {
		return fmt.Errorf("model: logits: %w", err)
	}
	return nil
}

// headRun calls fn for runs of whole sequences of at most headRows rows (or
// one longer sequence): rows [r0, r1) and the sequences [i0, i1).
func headRuns(spans []span, fn func(r0, r1, i0, i1 int) error) error {
	for i := 0; i < len(spans); {
		i0 := i
		r0, r1 := spans[i].row0, spans[i].row0+spans[i].rows
		for i++; i < len(spans) && r1+spans[i].rows-r0 <= headRows; i++ {
			r1 += spans[i].rows
		}
		if err := fn(r0, r1, i0, i); err != nil {
			return err
		}
	}
	return nil
}

// Scorer reports whether the backend scores logits where they are
// (runtime.CrossEntropyer), so that ScoreBatch downloads no logits.
func (m *Model) Scorer() bool {
	_, ok := m.b.(runtime.CrossEntropyer)
	return ok
}

// ScoreBatch runs fresh sequences (no cache) and returns, per sequence, the
// cross-entropy of each token after the first given the ones before it:
// -log softmax(logits[t])[seq[t+1]] for t < len(seq)-1, in float64 with the
// max subtracted (verify.CrossEntropy). On a backend that implements
// runtime.CrossEntropyer the logits never leave the device.
func (m *Model) ScoreBatch(seqs [][]int) ([][]float64, error) {
	ce, ok := m.b.(runtime.CrossEntropyer)
	if !ok {
		return nil, fmt.Errorf("model: backend %s does not score on the device", m.b.Name())
	}
	for i, s := range seqs {
		if len(s) < 2 {
			return nil, fmt.Errorf("model: sequence %d: %d tokens, want at least 2 to score", i, len(s))
		}
	}
	spans, x, err := m.body(seqs, nil, nil)
	if err != nil {
		return nil, err
	}
	b := m.b
	last := spans[len(spans)-1]
	T := last.row0 + last.rows
	m.d.norm(b, b.View(m.s.xn, 0, T), x, m.norm)
	xn := b.View(m.s.xn, 0, T)
	out := make([][]float64, len(seqs))
	err = headRuns(spans, func(r0, r1, i0, i1 int) error {
		rows := r1 - r0
		if err := m.ensureLogits(rows); err != nil {
			return err
		}
		lg := b.View(m.logits, 0, rows)
		m.headInto(lg, b.View(xn, r0, rows))
		targets := make([]int, 0, rows)
		for i := i0; i < i1; i++ {
			// The last token of a sequence predicts nothing scored: target 0.
			targets = append(append(targets, seqs[i][1:]...), 0)
		}
		nll, err := ce.CrossEntropy(lg, targets)
		if err != nil {
			return fmt.Errorf("model: scores: %w", err)
		}
		for i := i0; i < i1; i++ {
			o := spans[i].row0 - r0
			out[i] = nll[o : o+spans[i].rows-1 : o+spans[i].rows-1]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ensureLogits grows the logits buffer to at least rows rows.
func (m *Model) ensureLogits(rows int) error {
	if m.logits != nil && runtime.Rows(m.logits) >= rows {
		return nil
	}
	m.b.Free(m.logits)
	m.logits = nil
	t, err := m.b.Alloc(runtime.F32, rows, m.d.vocab)
	if err != nil {
		return fmt.Errorf("model: logits for %d tokens: %w", rows, err)
	}
	m.logits = t
	return nil
}

// Vocab is the number of rows of the model's logits: its vocabulary.
func (m *Model) Vocab() int { return m.d.vocab }

// dtype is the dtype of the model's activations and KV cache.
func (m *Model) dtype() runtime.DType { return m.s.dt }

// DType is the dtype of the model's activations and KV cache.
func (m *Model) DType() runtime.DType { return m.s.dt }

// StepBytes is the weight memory one decode step of one row reads: every
// layer's weights, the final norm and the head (the embedding table is read
// a row a token); of a mixture-of-experts layer's experts, the top k that a
// row runs (their mean size times k). Over the device's bandwidth it bounds
// the tokens per second of a batch-1 decode.
func (m *Model) StepBytes() int64 {
	size := func(t runtime.Tensor) int64 {
		if d, ok := t.(interface{ ReadBytes() int64 }); ok {
			return d.ReadBytes()
		}
		return int64(t.Len()) * int64(t.DType().Size())
	}
	n := size(m.norm) + size(m.head)
	for _, l := range m.layers {
		var experts int64
		for _, e := range l.experts {
			experts += size(e.gate) + size(e.up) + size(e.down)
		}
		if len(l.experts) > 0 {
			n += experts * int64(m.d.moe.TopK) / int64(len(l.experts))
		}
		for _, t := range l.tensors() {
			n += size(t)
		}
	}
	return n
}
