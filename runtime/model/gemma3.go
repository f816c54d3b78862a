package model

import (
	"fmt"
	"math"

	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/runtime"
)

// gemma3 sets the dims of Gemma 3's text model (transformers
// Gemma3TextModel): each layer's RoPE table (rope_local_base_freq
// unscaled in the sliding layers, rope_theta with the config's scaling in
// the full ones) and window, the attention scale
// query_pre_attn_scalar**-0.5 (times the square of a RoPE attention
// factor, as dimsAt folds it) and the embedding scale sqrt(hidden_size).
func (d *dims) gemma3(cfg *hfconfig.Config, ctx int) error {
	d.gemma = true
	d.embedScale = float32(math.Sqrt(float64(d.hidden)))
	af := runtime.AttentionFactor(cfg.RopeScaling)
	d.scale = float32(af * af * cfg.AttentionScale())
	n := cfg.NumHiddenLayers
	d.layerRope, d.layerWindow = make([][]float32, n), make([]int, n)
	tables := map[float64][]float32{}
	for i := range n {
		theta, s := cfg.LayerRope(i)
		d.layerWindow[i] = cfg.LayerWindow(i)
		if d.layerWindow[i] < 0 {
			return fmt.Errorf("layer %d: window %d", i, d.layerWindow[i])
		}
		if t, ok := tables[theta]; ok && s.IsDefault() {
			d.layerRope[i] = t
			continue
		}
		inv, err := runtime.RoPEFreqs(d.headDim, theta, s.ForContext(ctx))
		if err != nil {
			return err
		}
		if s.IsDefault() {
			tables[theta] = inv
		}
		d.layerRope[i] = inv
	}
	return nil
}

// scaleEmbeddings multiplies Gemma's embedded rows x by sqrt(hidden_size)
// rounded to x's dtype (Gemma3TextScaledWordEmbedding: embed_scale
// .to(weight.dtype)); a no-op elsewhere.
func (d dims) scaleEmbeddings(b runtime.Backend, x runtime.Tensor) {
	if !d.gemma {
		return
	}
	s := d.embedScale
	switch x.DType() {
	case runtime.F16:
		s = half.F16ToF32(half.F32ToF16(s))
	case runtime.BF16:
		s = half.BF16ToF32(half.F32ToBF16(s))
	}
	b.(runtime.Scaler).Scale(x, x, s)
}

// checkGemma refuses a backend without the ops Gemma 3's layers need.
func checkGemma(d dims, b runtime.Backend) error {
	if !d.gemma {
		return nil
	}
	if _, ok := b.(runtime.OffsetRMSNormer); !ok {
		return fmt.Errorf("model: backend %s has no Gemma RMSNorm (runtime.OffsetRMSNormer), which gemma3_text needs", b.Name())
	}
	if _, ok := b.(runtime.GELUGLUer); !ok {
		return fmt.Errorf("model: backend %s has no GELU-tanh GLU (runtime.GELUGLUer), which gemma3_text needs", b.Name())
	}
	if _, ok := b.(runtime.Scaler); !ok {
		return fmt.Errorf("model: backend %s has no Scale (runtime.Scaler), which gemma3_text's embeddings need", b.Name())
	}
	return nil
}

// gemmaDecodeOps issues the layers and head of a decode step of Gemma 3
// over ds's rows, whose embeddings x holds: op by op, as the layer's
// forward (Gemma3DecoderLayer), each layer with its own RoPE table and
// window; the step's fusions are Llama's layer and stay off.
func (m *Model) gemmaDecodeOps(c *PagedCache, ds *decodeState) {
	b, d, s := m.b, m.d, &ds.s
	pd := b.(runtime.PagedDecoder)
	x := s.x
	d.scaleEmbeddings(b, x)
	for li := range m.layers {
		lw := &m.layers[li]
		d.norm(b, s.xn, x, lw.attnNorm)
		lw.project(b, s.xn, s.q, s.k, s.v)
		lw.addQKVBias(b, s.q, s.k, s.v)
		lw.normQK(b, d, s.q, s.k)
		pd.RoPEStore(s.q, s.k, s.v, c.k[li], c.v[li], ds.pos, ds.slot, d.headDim, d.ropeOf(li))
		p := runtime.AttentionParams{HeadDim: d.headDim, Window: d.windowOf(li), Scale: d.scale, CacheSettled: !ds.verify}
		pd.PagedAttention(s.att, s.q, c.k[li], c.v[li], ds.tables, ds.pos, c.Pool.BlockSize(), p)
		b.MatMul(s.o, s.att, lw.lin[oProj])
		if lw.bias[oProj] != nil {
			b.AddBias(s.o, lw.bias[oProj])
		}
		d.norm(b, s.o, s.o, lw.postAttnNorm)
		b.Add(x, x, s.o)
		d.norm(b, s.xn, x, lw.ffnNorm)
		lw.act(b, s.xn, s.gate, s.up)
		b.MatMul(s.o, s.gate, lw.lin[downProj])
		d.norm(b, s.o, s.o, lw.postFFNorm)
		b.Add(x, x, s.o)
	}
	d.norm(b, s.xn, x, m.norm)
	b.MatMul(ds.logits, s.xn, m.head)
}
