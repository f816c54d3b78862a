package model

import (
	"fmt"
	"math"

	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/runtime"
)

// gemmaDims sets the dims of Gemma 2's and Gemma 3's text models
// (transformers Gemma2Model, Gemma3TextModel): each layer's RoPE table
// (Gemma 3: rope_local_base_freq unscaled in the sliding layers,
// rope_theta with the config's scaling in the full ones; Gemma 2:
// rope_theta in all) and window, the attention scale
// query_pre_attn_scalar**-0.5 (times the square of a RoPE attention
// factor, as dimsAt folds it), the embedding scale sqrt(hidden_size) and
// Gemma 2's soft-capping.
func (d *dims) gemmaDims(cfg *hfconfig.Config, ctx int) error {
	d.gemma, d.postNorms = true, cfg.GemmaPostNorms()
	d.attnCap, d.finalCap = float32(cfg.AttnSoftcap), float32(cfg.FinalSoftcap)
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

// scaleEmbeddings multiplies the embedded rows x by embedScaleFor's
// factor for x's dtype; a no-op where the model scales none.
func (d dims) scaleEmbeddings(b runtime.Backend, x runtime.Tensor) {
	if s, ok := d.embedScaleFor(x.DType()); ok {
		b.(runtime.Scaler).Scale(x, x, s)
	}
}

// embedScaleFor returns the factor the model multiplies its embedded rows
// by in activations of dtype dt: Gemma's sqrt(hidden_size) rounded to dt
// (Gemma3TextScaledWordEmbedding: embed_scale.to(weight.dtype)), Granite's
// embedding_multiplier (a Python float there, not rounded); ok is false
// where the model scales none.
func (d dims) embedScaleFor(dt runtime.DType) (s float32, ok bool) {
	if d.granite != nil {
		return float32(d.granite.EmbeddingMultiplier), d.granite.EmbeddingMultiplier != 1
	}
	if !d.gemma {
		return 0, false
	}
	s = float32(math.Sqrt(float64(d.hidden)))
	switch dt {
	case runtime.F16:
		s = half.F16ToF32(half.F32ToF16(s))
	case runtime.BF16:
		s = half.BF16ToF32(half.F32ToBF16(s))
	}
	return s, true
}

// EmbedScale is the factor cfg's model multiplies its embedded rows by in
// activations of dtype dt (Gemma's sqrt(hidden_size), Granite's
// embedding_multiplier; ok false for the others), for the GPTQ drivers'
// layer-0 inputs, which embed without the model.
func EmbedScale(cfg *hfconfig.Config, dt runtime.DType) (float32, bool) {
	d := dims{hidden: cfg.HiddenSize, gemma: cfg.Gemma(), granite: cfg.Granite}
	return d.embedScaleFor(dt)
}

// checkLayerOps refuses a backend without the ops Gemma's layers need
// (Granite's: Scale).
func checkLayerOps(d dims, b runtime.Backend) error {
	if d.granite != nil {
		if _, ok := b.(runtime.Scaler); !ok {
			return fmt.Errorf("model: backend %s has no Scale (runtime.Scaler), which Granite's multipliers need", b.Name())
		}
		return nil
	}
	if !d.gemma {
		return nil
	}
	if _, ok := b.(runtime.OffsetRMSNormer); !ok {
		return fmt.Errorf("model: backend %s has no Gemma RMSNorm (runtime.OffsetRMSNormer), which Gemma's layers need", b.Name())
	}
	if _, ok := b.(runtime.GELUGLUer); !ok {
		return fmt.Errorf("model: backend %s has no GELU-tanh GLU (runtime.GELUGLUer), which Gemma's layers need", b.Name())
	}
	if _, ok := b.(runtime.Scaler); !ok {
		return fmt.Errorf("model: backend %s has no Scale (runtime.Scaler), which Gemma's embeddings need", b.Name())
	}
	if _, ok := b.(runtime.Softcapper); !ok && d.finalCap > 0 {
		return fmt.Errorf("model: backend %s has no Softcap (runtime.Softcapper), which Gemma 2's final_logit_softcapping needs", b.Name())
	}
	return nil
}

// headInto sets lg to the logits of the normed rows xn: the head's
// product, soft-capped where the model caps its logits (Gemma 2's
// final_logit_softcapping, in fp32 on the fp32 logits), divided by
// Granite's logits_scaling (as a product by its inverse).
func (m *Model) headInto(lg, xn runtime.Tensor) {
	m.b.MatMul(lg, xn, m.head)
	if m.d.finalCap > 0 {
		m.b.(runtime.Softcapper).Softcap(lg, lg, m.d.finalCap)
	}
	if g := m.d.granite; g != nil && g.LogitsScaling != 1 {
		m.b.(runtime.Scaler).Scale(lg, lg, float32(1/g.LogitsScaling))
	}
}

// residual adds a layer's attention or MLP output o into the residual
// stream x: x += o, Granite's o multiplied by residual_multiplier first
// (rounded to the activation dtype, as transformers multiplies).
func (d dims) residual(b runtime.Backend, x, o runtime.Tensor) {
	if g := d.granite; g != nil && g.ResidualMultiplier != 1 {
		b.(runtime.Scaler).Scale(o, o, float32(g.ResidualMultiplier))
	}
	b.Add(x, x, o)
}

// unfusedDecodeOps issues the layers and head of a decode step of Gemma,
// Granite or OLMo 2 over ds's rows, whose embeddings x holds: op by op, as
// the layer's forward (GemmaDecoderLayer, Gemma2DecoderLayer,
// Gemma3DecoderLayer, GraniteDecoderLayer, Olmo2DecoderLayer), each layer
// with its own RoPE table and window; the step's fusions are Llama's layer
// and stay off.
func (m *Model) unfusedDecodeOps(c *PagedCache, ds *decodeState) {
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
		p := runtime.AttentionParams{HeadDim: d.headDim, Window: d.windowOf(li), Scale: d.scale, Softcap: d.attnCap, CacheSettled: !ds.verify}
		pd.PagedAttention(s.att, s.q, c.k[li], c.v[li], ds.tables, ds.pos, c.Pool.BlockSize(), p)
		b.MatMul(s.o, s.att, lw.lin[oProj])
		if lw.bias[oProj] != nil {
			b.AddBias(s.o, lw.bias[oProj])
		}
		if lw.postAttnNorm != nil {
			d.norm(b, s.o, s.o, lw.postAttnNorm)
		}
		d.residual(b, x, s.o)
		d.norm(b, s.xn, x, lw.ffnNorm)
		lw.act(b, d, s.xn, s.gate, s.up)
		b.MatMul(s.o, s.gate, lw.lin[downProj])
		if lw.postFFNorm != nil {
			d.norm(b, s.o, s.o, lw.postFFNorm)
		}
		d.residual(b, x, s.o)
	}
	d.norm(b, s.xn, x, m.norm)
	m.headInto(ds.logits, s.xn)
}
