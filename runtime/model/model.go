package model

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
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

	b      runtime.Backend
	d      dims
	bd     binder
	embed  runtime.Tensor // [vocab, hidden]
	norm   runtime.Tensor // [hidden]
	head   runtime.Tensor // [vocab, hidden]; embed when tied
	layers []layerWeights

	s      scratch
	logits runtime.Tensor // [s.rows, vocab]
	tmp    *Cache         // the cache of Forward calls given none
}

// Load reads a checkpoint directory (config.json, *.safetensors, and for
// GPTQ quantize_config.json or config.json quantization_config) and binds
// every tensor on b. Floating-point tensors may be F32, F16 or BF16; GPTQ
// Linear modules are dequantized to fp32.
func Load(dir string, b runtime.Backend) (*Model, error) {
	cfg, err := hfconfig.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	quant, _, err := gptq.ReadQuantizeConfig(dir)
	switch {
	case errors.Is(err, gptq.ErrNotQuantized):
		quant = nil
	case err != nil:
		return nil, fmt.Errorf("model: %w", err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	defer set.Close()
	m, err := bind(set, cfg, quant, b)
	if err != nil {
		return nil, err
	}
	m.EOSTokenIDs = appendNew(nil, cfg.EOSTokenIDs...)
	gen, err := hfconfig.LoadGeneration(dir)
	switch {
	case err == nil:
		m.EOSTokenIDs = appendNew(m.EOSTokenIDs, gen.EOSTokenIDs...)
	case !errors.Is(err, fs.ErrNotExist):
		m.Close()
		return nil, fmt.Errorf("model: %w", err)
	}
	return m, nil
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
	m, err := bind(w, cfg, quant, b)
	if err != nil {
		return nil, err
	}
	m.EOSTokenIDs = appendNew(nil, cfg.EOSTokenIDs...)
	return m, nil
}

func bind(w Weights, cfg *hfconfig.Config, quant *gptq.QuantizeConfig, b runtime.Backend) (*Model, error) {
	d, err := dimsOf(cfg)
	if err != nil {
		return nil, err
	}
	m := &Model{Config: cfg, Quant: quant, b: b, d: d, bd: binder{w: w, b: b, quant: quant}}
	fail := func(err error) (*Model, error) {
		m.bd.free()
		return nil, err
	}
	if m.embed, err = m.bd.fp("model.embed_tokens.weight", d.vocab, d.hidden); err != nil {
		return fail(err)
	}
	m.layers = make([]layerWeights, cfg.NumHiddenLayers)
	for i := range m.layers {
		if m.layers[i], err = bindLayer(&m.bd, d, i); err != nil {
			return fail(err)
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
	} else if m.head, err = m.bd.fp("lm_head.weight", d.vocab, d.hidden); err != nil {
		return fail(err)
	}
	return m, nil
}

// Backend returns the backend the model runs on.
func (m *Model) Backend() runtime.Backend { return m.b }

// Close frees the model's weights, scratch and internal cache.
func (m *Model) Close() {
	m.bd.free()
	m.s.free(m.b)
	m.b.Free(m.logits)
	m.logits = nil
	if m.tmp != nil {
		m.tmp.Free()
		m.tmp = nil
	}
}

// Cache is a KV cache: per layer, K (after RoPE) and V of shape
// [capacity, kvHeads*headDim], position p in row p, allocated once.
type Cache struct {
	b    runtime.Backend
	k, v []runtime.Tensor
	n    int
	cap  int
	err  error // allocation failure, reported by the first Forward
}

// NewCache returns an empty cache for up to maxTokens positions. An
// allocation failure is reported by the first Forward that uses the cache.
func (m *Model) NewCache(maxTokens int) *Cache {
	c := &Cache{b: m.b, cap: maxTokens}
	if maxTokens <= 0 {
		c.err = fmt.Errorf("model: cache of %d tokens", maxTokens)
		return c
	}
	for range m.layers {
		for _, dst := range []*[]runtime.Tensor{&c.k, &c.v} {
			t, err := m.b.Alloc(runtime.F32, maxTokens, m.d.kvDim())
			if err != nil {
				c.Free()
				c.err = fmt.Errorf("model: kv cache of %d tokens: %w", maxTokens, err)
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
		c.err = errors.New("model: cache used after Free")
	}
}

// Forward runs ids as the continuation of the sequence in cache (positions
// cache.Len()...; a nil cache starts a fresh sequence at position 0) and
// returns the logits [len(ids), vocab], host row-major. The new positions'
// K and V are appended to cache.
func (m *Model) Forward(ids []int, cache *Cache, hook Hook) ([]float32, error) {
	return m.forward(ids, cache, hook, false)
}

// ForwardLast is Forward returning only the last token's logits [vocab];
// it skips the head for the other tokens (prompt prefill in generation).
func (m *Model) ForwardLast(ids []int, cache *Cache, hook Hook) ([]float32, error) {
	return m.forward(ids, cache, hook, true)
}

func (m *Model) forward(ids []int, cache *Cache, hook Hook, lastOnly bool) ([]float32, error) {
	T := len(ids)
	if T == 0 {
		return nil, errors.New("model: forward of no tokens")
	}
	for _, id := range ids {
		if id < 0 || id >= m.d.vocab {
			return nil, fmt.Errorf("model: token id %d outside vocab [0, %d)", id, m.d.vocab)
		}
	}
	if cache == nil {
		if m.tmp == nil || m.tmp.cap < T {
			if m.tmp != nil {
				m.tmp.Free()
			}
			m.tmp = m.NewCache(T)
		}
		m.tmp.Reset()
		cache = m.tmp
	}
	if cache.err != nil {
		return nil, cache.err
	}
	if len(cache.k) != len(m.layers) {
		return nil, fmt.Errorf("model: cache has %d layers, model %d", len(cache.k), len(m.layers))
	}
	pos0 := cache.n
	if pos0+T > cache.cap {
		return nil, fmt.Errorf("model: cache holds %d of %d positions; %d more do not fit", pos0, cache.cap, T)
	}
	if err := m.s.ensure(m.b, m.d, T); err != nil {
		return nil, err
	}
	b := m.b
	x := b.View(m.s.x, 0, T)
	b.Embedding(x, m.embed, ids)
	if err := emit(b, hook, "model.embed", x); err != nil {
		return nil, err
	}
	for i := range m.layers {
		if err := m.layers[i].forward(b, m.d, &m.s, x, cache.k[i], cache.v[i], pos0, LayerPrefix(i)+".", hook, "", false); err != nil {
			return nil, err
		}
	}
	cache.n = pos0 + T

	rows := T
	if lastOnly {
		x, rows = b.View(x, T-1, 1), 1
	}
	xn := b.View(m.s.xn, 0, rows)
	b.RMSNorm(xn, x, m.norm, m.d.eps)
	if err := emit(b, hook, "model.norm", xn); err != nil {
		return nil, err
	}
	if m.logits == nil || runtime.Rows(m.logits) < rows {
		b.Free(m.logits)
		m.logits = nil
		t, err := b.Alloc(runtime.F32, rows, m.d.vocab)
		if err != nil {
			return nil, fmt.Errorf("model: logits for %d tokens: %w", rows, err)
		}
		m.logits = t
	}
	lg := b.View(m.logits, 0, rows)
	b.MatMul(lg, xn, m.head)
	out := make([]float32, rows*m.d.vocab)
	if err := b.Download(out, lg); err != nil {
		return nil, fmt.Errorf("model: logits: %w", err)
	}
	if hook != nil {
		hook("logits", out, rows, m.d.vocab)
	}
	return out, nil
}
