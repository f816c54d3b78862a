package runtime

// PagedDecoder is a Backend whose decode-step ops read their per-token
// positions, cache slots, ids and block tables from I32 tensors on the
// backend, so that a step issues no host transfer between its first op and
// its logits and can be recorded once as a Graph and replayed.
//
// The paged KV cache of one layer is a pair of tensors kc, vc [slots,
// kvHeads*headDim]; a sequence's position p lives in row
// tables[r, p/blockSize]*blockSize + p%blockSize.
type PagedDecoder interface {
	// EmbeddingAt sets dst[r,:] = table[ids[r],:] for ids I32 [rows]
	// (in range: the caller checks them on the host).
	EmbeddingAt(dst, table, ids Tensor)
	// RoPEStore rotates rows r of q [rows, Hq*D] and k [rows, Hkv*D] in
	// place as RoPE does (inverse frequencies inv [rotaryDim/2], the
	// channels past rotaryDim = 2·len(inv) kept), each at its
	// own position pos[r] (I32 [rows]), then copies row r of k and of v
	// into row slot[r] of kc and vc.
	RoPEStore(q, k, v, kc, vc, pos, slot Tensor, headDim int, inv []float32)
	// PagedAttention sets dst row r to the attention of query row r of q (at
	// position pos[r]) over positions 0..pos[r] of its sequence, whose block
	// table is row r of tables (I32 [rows, width]), under p's head size,
	// window and scale (p.Pos0 is unused). dst must not alias q. Head sizes
	// up to 256 and up to 8 query heads a kv head are supported.
	PagedAttention(dst, q, kc, vc, tables, pos Tensor, blockSize int, p AttentionParams)
	// The index tensors (ids, pos, slot, tables) are a step's inputs,
	// written by transfers from the host before the step, never by an op:
	// a backend may read them before the ops ahead of their reader finish.
}

// Graph is a recorded sequence of a backend's ops, replayed by Launch with
// the tensors it was recorded with (their current contents).
type Graph interface {
	// Launch replays the ops; like the ops, it does not wait for them.
	Launch() error
	// Free releases the graph.
	Free()
}

// Grapher is a Backend that records ops as a Graph: Capture calls fn, whose
// ops are recorded instead of run. fn must not transfer data, wait, or
// allocate (run it once uncaptured first, so that every scratch buffer
// exists); tensors it uses must outlive the graph.
type Grapher interface {
	Capture(fn func() error) (Graph, error)
}

// InputOrderer is a backend whose quantized weights read their input
// columns in an order of their own (act order made sequential at load), so
// that every product with them gathers its input first. A decode step can
// instead have each input's producer write it in that order once (the
// activation permuted once per distinct input) and multiply with weights
// that read it as it is.
type InputOrderer interface {
	// InputSlots is nil when w reads its input as it is, else an I32 tensor
	// [K] (the backend's, valid while w is): input column c is the
	// slots[c]-th that w reads. Weights that share an input are ordered
	// together only when they return the same tensor (a fused weight).
	InputSlots(w Tensor) Tensor
	// InOrder is w reading input column slots[c] as its column c (w itself
	// when InputSlots(w) is nil); a view of w, valid while w is.
	InOrder(w Tensor) Tensor
	// RMSNormTo, AddRMSNormTo, PagedAttentionTo and MatMulGLUTo are
	// RMSNorm, AddRMSNorm, PagedAttention and MatMulGLU writing column c of
	// each output row to column slots[c] (slots nil: as they do).
	RMSNormTo(dst, x, weight, slots Tensor, eps float32)
	AddRMSNormTo(norm, x, delta, weight, slots Tensor, eps float32)
	PagedAttentionTo(dst, q, kc, vc, tables, pos Tensor, blockSize int, p AttentionParams, slots Tensor)
	MatMulGLUTo(dst, x, w, slots Tensor)
}

// AttentionProjector is a PagedDecoder that can multiply paged attention's
// output by the next weight (o_proj) without writing the output whole
// first: PagedAttentionMatMul(dst, att, q, kc, vc, tables, pos, blockSize,
// p, w) sets dst = x·wᵀ for x = PagedAttention(q, kc, vc, tables, pos,
// blockSize, p), w as LoadQuant gave it (any act order its own), with att
// [rows, Cols(q)] as scratch: afterwards att holds nothing a caller may
// read. (The CUDA backend leaves short rows' attention in per-split parts
// that the product's kernel combines as it reads them.)
type AttentionProjector interface {
	PagedAttentionMatMul(dst, att, q, kc, vc, tables, pos Tensor, blockSize int, p AttentionParams, w Tensor)
}

// ResidualAttentionProjector is an AttentionProjector whose product can
// add into the residual stream: PagedAttentionMatMulAdd(x, att, q, kc, vc,
// tables, pos, blockSize, p, w) sets x = x + PagedAttention(…)·wᵀ, the sum
// rounded once. A model uses it where gate/up then normalizes x itself
// (GLUNormer), in place of PagedAttention and MatMulAdd.
type ResidualAttentionProjector interface {
	PagedAttentionMatMulAdd(x, att, q, kc, vc, tables, pos Tensor, blockSize int, p AttentionParams, w Tensor)
}

// ResidualProjector is a Backend whose decode steps of some row counts
// run o_proj after paged attention as a product added into the residual
// stream: ResidualProjects(rows) reports whether a model should, for a
// step of rows rows, run PagedAttention, then MatMulAdd into x (the sum
// rounded once) and a plain RMSNorm after it, instead of
// PagedAttentionMatMul (AttentionProjector) or MatMul, and AddRMSNorm
// (which rounds the product first, so the two differ in the last place).
type ResidualProjector interface {
	ResidualProjects(rows int) bool
}

// FusedQuantLoader is a QuantLoader that loads quantized weights sharing
// one input (the same K, bits, group size and permutation: q/k/v, or
// gate/up) as one tensor, multiplied in one pass over the input. It returns
// ErrQuantUnsupported for weights it does not fuse; the model then loads
// them one by one.
type FusedQuantLoader interface {
	// LoadQuantSplit loads ws as one weight for MatMulSplit.
	LoadQuantSplit(ws []*QuantWeight) (Tensor, error)
	// MatMulSplit sets dsts[i] = x·ws[i]ᵀ for w = LoadQuantSplit(ws).
	MatMulSplit(dsts []Tensor, x, w Tensor)
	// LoadQuantGLU loads gate and up (the same shape) as one weight for
	// MatMulGLU.
	LoadQuantGLU(gate, up *QuantWeight) (Tensor, error)
	// MatMulGLU sets dst = silu(x·gateᵀ) * (x·upᵀ) for w = LoadQuantGLU(gate,
	// up) (transformers MistralMLP's act_fn(gate_proj(x)) * up_proj(x)).
	MatMulGLU(dst, x, w Tensor)
}

// NormFuser is a FusedQuantLoader whose fused products can apply the
// RMSNorm of their input themselves: MatMulSplitNorm(dsts, x, nw, eps, w)
// is MatMulSplit(dsts, RMSNorm(x, weight, eps), w), and MatMulGLUNorm
// likewise MatMulGLU, without the normed rows being written first (a decode
// step then runs no norm kernel before its q/k/v and gate/up products).
type NormFuser interface {
	// FuseNorm returns weight, an RMSNorm weight [K], prepared for the
	// products by w (of LoadQuantSplit or LoadQuantGLU), or nil (no error)
	// where they do not normalize; Free releases it.
	FuseNorm(weight, w Tensor) (Tensor, error)
	// NormFusedRows is the most rows whose products normalize as they go;
	// with more, the methods run the norm first (a caller that has the
	// normed rows written in order anyway may prefer its own path there).
	NormFusedRows() int
	MatMulSplitNorm(dsts []Tensor, x, nw Tensor, eps float32, w Tensor)
	MatMulGLUNorm(dst, x, nw Tensor, eps float32, w Tensor)
}

// GLUNormer is a FusedQuantLoader whose GLU product can normalize its own
// input in decode steps of up to GLUNormRows rows: a model then adds
// o_proj's product into the residual stream (MatMulAdd, or
// PagedAttentionMatMulAdd where the backend is a
// ResidualAttentionProjector) and has the GLU
// product normalize the stream as it reads it, with no norm kernel
// between (the sum x + o rounded once, as with a ResidualProjector).
type GLUNormer interface {
	// GLUNormRows is the most rows whose GLU products normalize their
	// input (0: none).
	GLUNormRows() int
	// FuseGLUNorm returns weight, an RMSNorm weight [K], prepared for
	// MatMulGLUNormTo with w (of LoadQuantGLU, reading its input in its own
	// order), or nil (no error) where w's products do not normalize; Free
	// releases it.
	FuseGLUNorm(weight, w Tensor) (Tensor, error)
	// MatMulGLUNormTo is MatMulGLU(dst, RMSNorm(x, weight, eps), w), its
	// output column c written to column slots[c] (slots nil: as it is),
	// for nw = FuseGLUNorm(weight, w).
	MatMulGLUNormTo(dst, x, nw Tensor, eps float32, w, slots Tensor)
}

// MLPFuser is a FusedQuantLoader that runs a decode step's whole MLP as
// one op: MatMulMLP(x, xn, w) sets x += down(silu(xn·gateᵀ) · (xn·upᵀ)) for
// w = FuseMLP(gateUp, down), where gateUp (of LoadQuantGLU, reading its
// input as it is: no permutation of its own) writes its outputs in the
// order down (reading its input as it is too) reads them, and xn holds
// the normed rows in gate/up's input order. FuseMLP returns nil, without
// error, where the backend does not fuse the pair; the fused weight
// refers to gateUp and down, which must outlive it; Free releases it.
// MLPFusedRows is the most rows MatMulMLP takes.
type MLPFuser interface {
	FuseMLP(gateUp, down Tensor) (Tensor, error)
	MLPFusedRows() int
	MatMulMLP(x, xn, w Tensor)
}

// RoPEFuser is a FusedQuantLoader whose q/k/v products can apply RoPE and
// the KV-cache store of a decode step in their epilogue:
// MatMulSplitRoPE(dsts, x, nw, eps, w, kc, vc, pos, slot, headDim, inv) is
// MatMulSplit(dsts, x, w) (MatMulSplitNorm with nw, a NormFuser's FuseNorm
// weight, when nw is not nil) followed by RoPEStore(dsts[0], dsts[1],
// dsts[2], kc, vc, pos, slot, headDim, inv), with the same results (for a
// table of any length RoPEStore takes: an implementation that rotates
// whole heads only runs the composed form for a shorter one).
type RoPEFuser interface {
	MatMulSplitRoPE(dsts []Tensor, x, nw Tensor, eps float32, w Tensor, kc, vc, pos, slot Tensor, headDim int, inv []float32)
}

// SamePermutation reports whether the weights can be fused: equal bits, K,
// group size and permutation.
func SamePermutation(ws ...*QuantWeight) bool {
	for _, w := range ws[1:] {
		if w.Bits != ws[0].Bits || w.K != ws[0].K || w.GroupSize != ws[0].GroupSize || len(w.Perm) != len(ws[0].Perm) {
			return false
		}
		for i, p := range w.Perm {
			if ws[0].Perm[i] != p {
				return false
			}
		}
	}
	return true
}
