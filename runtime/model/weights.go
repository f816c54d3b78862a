package model

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"slices"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/runtime"
)

// Weights gives tensors by Hugging Face name; *safetensors.Set satisfies it.
// A missing tensor is an error wrapping fs.ErrNotExist (a Set's does):
// CheckBiases asks for biases that a checkpoint may well not hold.
type Weights interface {
	Tensor(name string) (safetensors.Tensor, error)
}

// binder loads tensors by name into backend tensors, validating dtype and
// shape, and remembers them so that a failed load frees what it made.
type binder struct {
	w     Weights
	b     runtime.Backend
	quant *gptq.QuantizeConfig // nil: floating-point checkpoint
	dt    runtime.DType        // dtype of the bound tensors (the zero value is F32)
	// dequant binds GPTQ weights dequantized even where the backend could
	// keep them quantized (the reference path).
	dequant bool
	// widen binds 16-bit Linear weights in the model's F32 even where the
	// backend could keep them 16-bit (runtime.WeightLoader; the reference
	// path).
	widen bool
	made  []runtime.Tensor
}

func (bd *binder) free() {
	for _, t := range bd.made {
		bd.b.Free(t)
	}
	bd.made = nil
}

func (bd *binder) upload(name string, vals []float32, shape ...int) (runtime.Tensor, error) {
	t, err := bd.b.Alloc(bd.dt, shape...)
	if err != nil {
		return nil, fmt.Errorf("model: tensor %q: %w", name, err)
	}
	bd.made = append(bd.made, t)
	if err := bd.b.Upload(t, vals); err != nil {
		return nil, fmt.Errorf("model: tensor %q: %w", name, err)
	}
	return t, nil
}

// float reads a floating-point tensor of the given shape as host fp32.
func float(w Weights, name string, shape ...int) ([]float32, error) {
	t, err := w.Tensor(name)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	switch t.DType {
	case safetensors.F32, safetensors.F16, safetensors.BF16:
	default:
		return nil, fmt.Errorf("model: %s: tensor %q: dtype %s, want F32, F16 or BF16", t.File, name, t.DType)
	}
	if !slices.Equal(t.Shape, shape) {
		return nil, fmt.Errorf("model: %s: tensor %q: shape %v, want %v", t.File, name, t.Shape, shape)
	}
	v, err := t.Float32()
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	return v, nil
}

// fp binds a floating-point tensor. In a dtype other than F32 the
// checkpoint's bytes go to the backend as they are (it converts), so a bf16
// checkpoint reaches a bf16 device without a pass through fp32.
func (bd *binder) fp(name string, shape ...int) (runtime.Tensor, error) {
	if bd.dt != runtime.F32 {
		return bd.raw(name, shape...)
	}
	v, err := float(bd.w, name, shape...)
	if err != nil {
		return nil, err
	}
	return bd.upload(name, v, shape...)
}

func (bd *binder) raw(name string, shape ...int) (runtime.Tensor, error) {
	t, err := bd.w.Tensor(name)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	var dt runtime.DType
	switch t.DType {
	case safetensors.F32:
		dt = runtime.F32
	case safetensors.F16:
		dt = runtime.F16
	case safetensors.BF16:
		dt = runtime.BF16
	default:
		return nil, fmt.Errorf("model: %s: tensor %q: dtype %s, want F32, F16 or BF16", t.File, name, t.DType)
	}
	if !slices.Equal(t.Shape, shape) {
		return nil, fmt.Errorf("model: %s: tensor %q: shape %v, want %v", t.File, name, t.Shape, shape)
	}
	dst, err := bd.b.Alloc(bd.dt, shape...)
	if err != nil {
		return nil, fmt.Errorf("model: tensor %q: %w", name, err)
	}
	bd.made = append(bd.made, dst)
	if err := bd.b.UploadRaw(dst, t.Data, dt); err != nil {
		return nil, fmt.Errorf("model: %s: tensor %q: %w", t.File, name, err)
	}
	return dst, nil
}

// bias binds a Linear's bias [n] (name is module.bias; F32, F16 or BF16,
// as GPTQ checkpoints keep it beside qweight) in the model's dtype, or
// returns nil where the checkpoint has none or it is all zeros: transformers
// zeroes a bias the checkpoint lacks (_init_weights), and a nil bias keeps
// the fused decode paths (Missing asks for the biases a qwen2 checkpoint
// must hold).
func (bd *binder) bias(name string, n int) (runtime.Tensor, error) {
	if _, err := bd.w.Tensor(name); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	v, err := float(bd.w, name, n)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(v, func(x float32) bool { return x != 0 }) {
		return nil, nil
	}
	if bd.dt == runtime.F32 {
		return bd.upload(name, v, n)
	}
	return bd.raw(name, n)
}

// linear binds module's [n, k] weight: module.weight in a floating-point
// checkpoint, or the GPTQ tensors module.qweight/qzeros/scales/g_idx in a
// quantized one: kept quantized (act order made sequential) on a backend
// that multiplies by them with the model's activations (keepsQuant),
// dequantized (spec §1.1) otherwise. A quantized checkpoint may
// leave some modules unquantized; then module.weight is used.
func (bd *binder) linear(module string, n, k int) (runtime.Tensor, error) {
	if bd.quant != nil {
		_, err := bd.w.Tensor(module + ".qweight")
		switch {
		case err == nil:
			l, err := readLinear(bd.w, module, n, k, bd.quant)
			if err != nil {
				return nil, err
			}
			if t, ok, err := bd.quantized(module, l); ok || err != nil {
				return t, err
			}
			v, err := l.Dequantize()
			if err != nil {
				return nil, fmt.Errorf("model: %s: %w", module, err)
			}
			return bd.upload(module+".qweight", v, n, k)
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("model: %w", err)
		}
	}
	return bd.weight(module+".weight", n, k)
}

// weight binds a floating-point Linear weight [n, k]: kept in the
// checkpoint's F16 or BF16 where the model computes in F32 on a backend
// that multiplies by such weights (runtime.WeightLoader, the CPU's: half
// the memory, the same products), else as fp binds it.
func (bd *binder) weight(name string, n, k int) (runtime.Tensor, error) {
	wl, ok := bd.b.(runtime.WeightLoader)
	if !ok || bd.dt != runtime.F32 || bd.widen {
		return bd.fp(name, n, k)
	}
	t, err := bd.w.Tensor(name)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	var dt runtime.DType
	switch t.DType {
	case safetensors.F16:
		dt = runtime.F16
	case safetensors.BF16:
		dt = runtime.BF16
	default:
		return bd.fp(name, n, k)
	}
	if !slices.Equal(t.Shape, []int{n, k}) {
		return nil, fmt.Errorf("model: %s: tensor %q: shape %v, want %v", t.File, name, t.Shape, []int{n, k})
	}
	w, err := wl.LoadWeight(t.Data, dt, n, k)
	switch {
	case errors.Is(err, runtime.ErrWeightUnsupported):
		return bd.fp(name, n, k)
	case err != nil:
		return nil, fmt.Errorf("model: %s: tensor %q: %w", t.File, name, err)
	}
	bd.made = append(bd.made, w)
	return w, nil
}

// quantized binds l as a backend quantized weight where the backend and
// the model's dtype allow it; ok false means: dequantize instead.
func (bd *binder) quantized(module string, l *gptq.Linear) (runtime.Tensor, bool, error) {
	if !bd.keepsQuant() {
		return nil, false, nil
	}
	qw, err := Sequential(l)
	if err != nil {
		return nil, false, fmt.Errorf("model: %s: %w", module, err)
	}
	if qw == nil {
		return nil, false, nil
	}
	return bd.loadQuant(module, qw)
}

// keepsQuant reports whether GPTQ weights stay quantized on the backend:
// it multiplies by them with the model's activations (runtime.KeepsQuant:
// the CUDA backend in 16-bit, the CPU backend in F32), unless the
// dequantized reference path is asked for.
func (bd *binder) keepsQuant() bool {
	return bd.quant != nil && !bd.dequant && runtime.KeepsQuant(bd.b, bd.dt)
}

// loadQuant loads qw, module's weight, on the backend; ok false (no
// error) where its kernels do not take it.
func (bd *binder) loadQuant(module string, qw *runtime.QuantWeight) (runtime.Tensor, bool, error) {
	t, err := bd.b.(runtime.QuantLoader).LoadQuant(qw)
	switch {
	case errors.Is(err, runtime.ErrQuantUnsupported):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("model: tensor %q: %w", module+".qweight", err)
	}
	bd.made = append(bd.made, t)
	return t, true, nil
}

// mlp binds a layer's gate/up as one GLU weight (fused) and, where
// down_proj has act order, folds its input order into gate/up's output
// columns (runtime.QuantWeight.PermuteOutputs): the GLU product then
// writes down_proj's input in the order down_proj reads it, and down_proj
// is bound without its permutation, so that no pass gathers its input
// (the layer's "ffn_act" intermediate is then in that order too). A nil
// tensor, without error, is left to the one-by-one path.
func (bd *binder) mlp(p string, d dims) (gateUp, down runtime.Tensor, err error) {
	var dq *runtime.QuantWeight
	module := p + LinearModules[downProj]
	if _, fuses := bd.b.(runtime.FusedQuantLoader); fuses && bd.keepsQuant() {
		if _, err := bd.w.Tensor(module + ".qweight"); err == nil {
			n, k, _ := d.linearShape(LinearModules[downProj])
			l, err := readLinear(bd.w, module, n, k, bd.quant)
			if err != nil {
				return nil, nil, err
			}
			if dq, err = Sequential(l); err != nil {
				return nil, nil, fmt.Errorf("model: %s: %w", module, err)
			}
		}
	}
	var cols []int32
	if dq != nil {
		cols = dq.Perm
	}
	if gateUp, err = bd.fused(p, d, []int{gateProj, upProj}, true, cols); err != nil || dq == nil {
		return gateUp, nil, err
	}
	if gateUp == nil || cols == nil {
		// down_proj as it is (where the backend does not take it, the
		// one-by-one path dequantizes it).
		down, _, err = bd.loadQuant(module, dq)
		return gateUp, down, err
	}
	seq := *dq
	seq.Perm = nil
	if down, ok, err := bd.loadQuant(module, &seq); ok || err != nil {
		return gateUp, down, err
	}
	down, err = bd.upload(module+".qweight", seq.Dequantize(), seq.N, seq.K)
	return gateUp, down, err
}

// fused binds the Linear modules js of the layer with prefix p (indices
// into LinearModules) as one tensor where the backend fuses quantized
// weights (runtime.FusedQuantLoader) and all of them are GPTQ weights it
// keeps quantized with one layout: split outputs, or with glu the gate/up
// product. cols, when not nil, reorders the weights' output columns as
// runtime.QuantWeight.PermuteOutputs does, while their codes are unpacked
// (sequential). It returns nil, without error,
// where they are bound one by one.
func (bd *binder) fused(p string, d dims, js []int, glu bool, cols []int32) (runtime.Tensor, error) {
	fl, ok := bd.b.(runtime.FusedQuantLoader)
	if !ok || !bd.keepsQuant() {
		return nil, nil
	}
	var ws []*runtime.QuantWeight
	for _, j := range js {
		module := p + LinearModules[j]
		if _, err := bd.w.Tensor(module + ".qweight"); err != nil {
			return nil, nil // unquantized, or missing: the one-by-one path says which
		}
		n, k, _ := d.linearShape(LinearModules[j])
		l, err := readLinear(bd.w, module, n, k, bd.quant)
		if err != nil {
			return nil, err
		}
		// cols reorders the output columns as the codes are unpacked.
		qw, err := sequential(l, cols)
		if err != nil {
			return nil, fmt.Errorf("model: %s: %w", module, err)
		}
		if qw == nil {
			return nil, nil
		}
		ws = append(ws, qw)
	}
	if !runtime.SamePermutation(ws...) {
		return nil, nil
	}
	var t runtime.Tensor
	var err error
	if glu {
		t, err = fl.LoadQuantGLU(ws[0], ws[1])
	} else {
		t, err = fl.LoadQuantSplit(ws)
	}
	switch {
	case errors.Is(err, runtime.ErrQuantUnsupported):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("model: layer %s fused %v: %w", p, js, err)
	}
	bd.made = append(bd.made, t)
	return t, nil
}

// fuseNorms prepares lw's norm weights for its fused products to apply in
// decode steps (runtime.NormFuser), where the backend has them: the input
// norm for q/k/v, and the post-attention norm for gate/up where its product
// writes down_proj's input as it is (no output slots: down_proj's order
// folded into gate/up, or no act order); and the post-attention norm for
// gate/up's own product (runtime.GLUNormer), where the backend has that.
func (bd *binder) fuseNorms(lw *layerWeights) error {
	if gn, ok := bd.b.(runtime.GLUNormer); ok && lw.gateUp != nil && gn.GLUNormRows() > 0 {
		// (gate/up's own weight, which gathers the stream through its
		// input order, and writes down_proj's input in down_proj's.)
		t, err := gn.FuseGLUNorm(lw.ffnNorm, lw.gateUp)
		if err != nil {
			return err
		}
		if t != nil {
			bd.made = append(bd.made, t)
			lw.normed.glu = t
		}
	}
	if err := bd.fuseNorm(&lw.normed.attn, lw.attnNorm, lw.qkv); err != nil {
		return err
	}
	if lw.order != nil && lw.order.slots.down != nil {
		return nil
	}
	return bd.fuseNorm(&lw.normed.ffn, lw.ffnNorm, lw.gateUp)
}

// fuseNorm sets *dst to the RMSNorm weight prepared for w's products
// (runtime.NormFuser's FuseNorm), where the backend has them normalize
// their input; it leaves *dst nil otherwise, or where w is nil.
func (bd *binder) fuseNorm(dst *runtime.Tensor, weight, w runtime.Tensor) error {
	nf, ok := bd.b.(runtime.NormFuser)
	if !ok || w == nil {
		return nil
	}
	t, err := nf.FuseNorm(weight, w)
	if err != nil || t == nil {
		return err
	}
	bd.made = append(bd.made, t)
	*dst = t
	return nil
}

// fuseMLP makes lw's gate/up and down one decode-step op where the backend
// fuses them (runtime.MLPFuser): from the weights the step reads (lw.order's
// where the layer has an order), when the GLU product writes down_proj's
// input as down_proj reads it (no output slots).
func (bd *binder) fuseMLP(lw *layerWeights) error {
	mf, ok := bd.b.(runtime.MLPFuser)
	if !ok {
		return nil
	}
	w := lw
	if lw.order != nil {
		if lw.order.slots.down != nil {
			return nil
		}
		w = &lw.order.w
	}
	if w.gateUp == nil || w.lin[downProj] == nil {
		return nil
	}
	t, err := mf.FuseMLP(w.gateUp, w.lin[downProj])
	if err != nil || t == nil {
		return err
	}
	bd.made = append(bd.made, t)
	lw.mlp = t
	return nil
}

// Sequential returns l in the runtime's neutral quantized layout with act
// order made sequential: inputs sorted by group (stable), so that each
// group is a contiguous run of GroupSize inputs, and Perm mapping them back
// (nil when g_idx is already in order). It returns nil, without error, when
// the groups are not runs of equal size once sorted (a g_idx no GPTQ tool
// writes, which the dequantized path still handles).
func Sequential(l *gptq.Linear) (*runtime.QuantWeight, error) {
	return sequential(l, nil)
}

// sequential is Sequential with the output columns in the order cols (nil:
// as they are), in the same pass over the codes: the result is
// Sequential(l).PermuteOutputs(cols), without the second copy of the codes.
func sequential(l *gptq.Linear, cols []int32) (*runtime.QuantWeight, error) {
	K, N := l.K, l.N
	G := gptq.Groups(K, l.GroupSize)
	gs := l.GroupSize
	if gs == -1 || gs > K {
		gs = K // one group (a group size past K, as of a narrow expert's down_proj, holds every input)
	}
	perm := make([]int32, K)
	for i := range perm {
		perm[i] = int32(i)
	}
	slices.SortStableFunc(perm, func(a, b int32) int { return int(l.GIdx[a]) - int(l.GIdx[b]) })
	ordered := true
	for k, p := range perm {
		if int(l.GIdx[p]) != k/gs {
			return nil, nil
		}
		ordered = ordered && int(p) == k
	}
	if ordered {
		perm = nil
	}
	if cols != nil && len(cols) != N {
		return nil, fmt.Errorf("%w: output order of %d columns for N %d", runtime.ErrQuantLayout, len(cols), N)
	}
	codes, err := gptq.UnpackQWeightPermuted(l.QWeight, K, N, l.Bits, perm, cols)
	if err != nil {
		return nil, err
	}
	zeros, err := l.ZeroPoints()
	if err != nil {
		return nil, err
	}
	q := &runtime.QuantWeight{Bits: l.Bits, K: K, N: N, GroupSize: gs, Codes: codes, Perm: perm,
		Scales: l.Scales, Zeros: make([]uint16, G*N)}
	if cols == nil {
		for i, z := range zeros {
			q.Zeros[i] = uint16(z)
		}
		return q, nil
	}
	q.Scales = make([]uint16, G*N)
	for g := range G {
		row, zrow := l.Scales[g*N:(g+1)*N], zeros[g*N:(g+1)*N]
		for j, c := range cols {
			q.Scales[g*N+j] = row[c]
			q.Zeros[g*N+j] = uint16(zrow[c])
		}
	}
	return q, nil
}

// readLinear reads and validates module's GPTQ tensors.
func readLinear(w Weights, module string, n, k int, q *gptq.QuantizeConfig) (*gptq.Linear, error) {
	qw, qz, sc, gi, err := gptq.ShapesFor(k, n, q.Bits, q.GroupSize)
	if err != nil {
		return nil, fmt.Errorf("model: %s: %w", module, err)
	}
	ints := func(suffix string, shape [2]int) ([]int32, error) {
		name := module + suffix
		t, err := w.Tensor(name)
		if err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
		want := []int{shape[0], shape[1]}
		if shape[1] == 0 {
			want = want[:1]
		}
		if t.DType != safetensors.I32 || !slices.Equal(t.Shape, want) {
			return nil, fmt.Errorf("model: %s: tensor %q: %s %v, want I32 %v", t.File, name, t.DType, t.Shape, want)
		}
		v, err := t.Int32()
		if err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
		return v, nil
	}
	l := &gptq.Linear{K: k, N: n, Bits: q.Bits, GroupSize: q.GroupSize, Format: q.Format()}
	if l.QWeight, err = ints(".qweight", qw); err != nil {
		return nil, err
	}
	if l.QZeros, err = ints(".qzeros", qz); err != nil {
		return nil, err
	}
	if l.GIdx, err = ints(".g_idx", gi); err != nil {
		return nil, err
	}
	st, err := w.Tensor(module + ".scales")
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if st.DType != safetensors.F16 || !slices.Equal(st.Shape, []int{sc[0], sc[1]}) || len(st.Data) != 2*sc[0]*sc[1] {
		return nil, fmt.Errorf("model: %s: tensor %q: %s %v, want F16 %v", st.File, module+".scales", st.DType, st.Shape, sc)
	}
	l.Scales = make([]uint16, sc[0]*sc[1])
	for i := range l.Scales {
		l.Scales[i] = binary.LittleEndian.Uint16(st.Data[2*i:])
	}
	if err := l.Validate(module); err != nil {
		if errors.Is(err, gptq.ErrBadScale) {
			return nil, fmt.Errorf("model: %s: %w", st.File, err)
		}
		return nil, fmt.Errorf("model: %w", err)
	}
	return l, nil
}

// Embed returns the embeddings of ids, [len(ids), hidden] host fp32,
// converting only the rows it needs from model.embed_tokens.weight, scaled
// as the model scales them in fp32 activations (EmbedScale: Gemma's,
// Granite's): layer 0's input.
func Embed(w Weights, cfg *hfconfig.Config, ids []int) ([]float32, error) {
	const name = "model.embed_tokens.weight"
	t, err := w.Tensor(name)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	h, v := cfg.HiddenSize, cfg.VocabSize
	if !slices.Equal(t.Shape, []int{v, h}) {
		return nil, fmt.Errorf("model: %s: tensor %q: shape %v, want [%d %d]", t.File, name, t.Shape, v, h)
	}
	size := t.DType.Size()
	switch t.DType {
	case safetensors.F32, safetensors.F16, safetensors.BF16:
	default:
		return nil, fmt.Errorf("model: %s: tensor %q: dtype %s, want F32, F16 or BF16", t.File, name, t.DType)
	}
	if len(t.Data) != v*h*size {
		return nil, fmt.Errorf("model: %s: tensor %q: %d data bytes, want %d", t.File, name, len(t.Data), v*h*size)
	}
	out := make([]float32, len(ids)*h)
	for r, id := range ids {
		if id < 0 || id >= v {
			return nil, fmt.Errorf("model: embed: token id %d outside vocab [0, %d)", id, v)
		}
		src := t.Data[id*h*size : (id+1)*h*size]
		dst := out[r*h : (r+1)*h]
		switch t.DType {
		case safetensors.F32:
			for i := range dst {
				dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
			}
		case safetensors.F16:
			half.F16BytesToF32(dst, src)
		case safetensors.BF16:
			half.BF16BytesToF32(dst, src)
		}
	}
	if s, ok := EmbedScale(cfg, runtime.F32); ok {
		for i := range out {
			out[i] *= s
		}
	}
	return out, nil
}

// LoadTensor binds one floating-point tensor of w by name on b in dtype dt,
// checking its shape (the GPTQ device driver's embedding table).
func LoadTensor(w Weights, b runtime.Backend, dt runtime.DType, name string, shape ...int) (runtime.Tensor, error) {
	bd := binder{w: w, b: b, dt: dt}
	t, err := bd.fp(name, shape...)
	if err != nil {
		bd.free()
		return nil, err
	}
	return t, nil
}

// LayerWeightNames lists the floating-point tensors of decoder layer i of
// cfg as an unquantized checkpoint names them: LayerTensorNames', then
// the q/k and Gemma norms and the biases cfg gives.
func LayerWeightNames(cfg *hfconfig.Config, i int) []string {
	return slices.Concat(LayerTensorNames(cfg, i), QKNormNames(cfg, i), GemmaNormNames(cfg, i), LayerBiasNames(cfg, i))
}

// LayerTensorNames lists the floating-point tensors of decoder layer i of
// cfg as an unquantized checkpoint names them: its two norms (twoNorms)
// and its Linears' weights (LayerModules: a sparse layer's router, shared
// expert gate and experts in place of the dense MLP; LayerBiasNames adds
// the biases).
func LayerTensorNames(cfg *hfconfig.Config, i int) []string {
	p := LayerPrefix(i) + "."
	names := twoNorms(cfg, i)
	if cfg.Sparse(i) {
		names = append(names, cfg.MoE.RouterName(i))
		if cfg.MoE.SharedSize > 0 {
			names = append(names, cfg.MoE.SharedGateName(i))
		}
	}
	for _, m := range LayerModules(cfg, i) {
		names = append(names, p+m+".weight")
	}
	return names
}

// LayerNormNames lists decoder layer i's norm weights: its two norms
// [hidden_size] (twoNorms), Gemma 2's and 3's other two (GemmaNormNames),
// and where cfg has q/k norms (hfconfig.Config.QKNorm) self_attn.q_norm
// and k_norm (QKNormNames). None is quantized: a GPTQ checkpoint keeps
// them in fp16.
func LayerNormNames(cfg *hfconfig.Config, i int) []string {
	return slices.Concat(twoNorms(cfg, i), GemmaNormNames(cfg, i), QKNormNames(cfg, i))
}

// twoNorms lists the two norms every decoder layer has: input_layernorm
// and post_attention_layernorm, or OLMo 2's post_attention_layernorm and
// post_feedforward_layernorm (after the sublayers; no input norms).
func twoNorms(cfg *hfconfig.Config, i int) []string {
	p := LayerPrefix(i) + "."
	if cfg.Olmo2() {
		return []string{p + "post_attention_layernorm.weight", p + "post_feedforward_layernorm.weight"}
	}
	return []string{p + "input_layernorm.weight", p + "post_attention_layernorm.weight"}
}

// GemmaNormNames lists decoder layer i's norm weights of Gemma's own,
// pre_feedforward_layernorm and post_feedforward_layernorm [hidden]
// (hfconfig.Config.GemmaPostNorms: Gemma 2 and 3); none elsewhere.
func GemmaNormNames(cfg *hfconfig.Config, i int) []string {
	if !cfg.GemmaPostNorms() {
		return nil
	}
	p := LayerPrefix(i) + "."
	return []string{p + "pre_feedforward_layernorm.weight", p + "post_feedforward_layernorm.weight"}
}

// QKNormNames lists decoder layer i's q/k norm weights, self_attn.q_norm
// and k_norm (hfconfig.Config.QKNormWidths: [head_dim] per head, OLMo 2's
// over the whole projection), where cfg has them (hfconfig.Config.QKNorm:
// Qwen3, Gemma 3, OLMo 2); none elsewhere.
func QKNormNames(cfg *hfconfig.Config, i int) []string {
	if !cfg.QKNorm() {
		return nil
	}
	p := LayerPrefix(i) + "."
	return []string{p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight"}
}

// LayerBiasNames lists the Linear biases of decoder layer i that cfg
// gives (hfconfig.Config.LinearBias: Qwen2's q/k/v), which a qwen2
// checkpoint holds and a llama one with attention_bias may.
func LayerBiasNames(cfg *hfconfig.Config, i int) []string {
	p := LayerPrefix(i) + "."
	var names []string
	for _, m := range LinearModules {
		if cfg.LinearBias(m) {
			names = append(names, p+m+".bias")
		}
	}
	return names
}
