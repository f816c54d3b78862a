package runtime

import "fmt"

// DType is the element type of a backend tensor.
type DType uint8

// Element types. Host data crosses the interface as fp32 (Upload,
// Download) or as raw little-endian bytes of any of these types (UploadRaw,
// DownloadRaw); a backend converts between the host type and the tensor's.
const (
	F32 DType = iota
	F16
	BF16
	I32
)

// Size is the number of bytes of one element.
func (d DType) Size() int {
	switch d {
	case F16, BF16:
		return 2
	case F32, I32:
		return 4
	}
	panic(fmt.Sprintf("runtime: size of %v", d))
}

// String returns the safetensors spelling of the dtype.
func (d DType) String() string {
	switch d {
	case F32:
		return "F32"
	case F16:
		return "F16"
	case BF16:
		return "BF16"
	case I32:
		return "I32"
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Tensor is a dense row-major array owned by a Backend. Its methods only
// describe it; data moves through Backend.Upload and Backend.Download.
type Tensor interface {
	// DType is the element type.
	DType() DType
	// Shape is the size of each dimension, PyTorch order. Callers must not
	// modify the returned slice.
	Shape() []int
	// Len is the number of elements.
	Len() int
}

// Rows returns the product of all dimensions but the last.
func Rows(t Tensor) int {
	s := t.Shape()
	if len(s) == 0 {
		return 1
	}
	return t.Len() / max(s[len(s)-1], 1)
}

// Cols returns the last dimension.
func Cols(t Tensor) int {
	s := t.Shape()
	if len(s) == 0 {
		return 1
	}
	return s[len(s)-1]
}

// AttentionParams describes one causal attention call.
type AttentionParams struct {
	// HeadDim is the size of one head; the numbers of query and KV heads
	// follow from the column counts of q and k.
	HeadDim int
	// Pos0 is the position of the first query row; query row t sits at
	// position Pos0+t and keys are cache rows 0..Pos0+T-1.
	Pos0 int
	// Window is the sliding window (0 = none): a query at position i sees
	// keys j with i-Window < j <= i, i.e. the last Window positions
	// including itself, as transformers' Mistral masks j <= i-Window.
	Window int
	// Scale multiplies q·k before the softmax, normally 1/sqrt(HeadDim).
	Scale float32
	// Softcap, where positive, caps the scaled scores s before the mask
	// and the softmax: s becomes Softcap·tanh(s/Softcap), in fp32 (Gemma
	// 2's attn_logit_softcapping). 0: none.
	Softcap float32
	// CacheSettled (PagedAttention) says that every cache row a query row
	// reads, other than its own position's, was written before the step's
	// first op (a decode step: one token a sequence, sequences in blocks of
	// their own), so that a backend may read those rows before the op
	// ahead of the attention ends.
	CacheSettled bool
}

// Backend owns memory and runs the ops of a Mistral/Llama forward pass.
//
// Memory and transfer methods return errors (a device can run out of
// memory); ops do not: arguments were validated when the model was bound,
// and an inconsistent call panics.
type Backend interface {
	// Name identifies the backend and its configuration, e.g. "cpu(2)".
	Name() string

	// Alloc returns a zeroed tensor.
	Alloc(dt DType, shape ...int) (Tensor, error)
	// Free releases a tensor made by Alloc. Freeing nil is a no-op.
	Free(t Tensor)
	// View returns rows [row0, row0+rows) of t's first dimension, sharing
	// storage with t.
	View(t Tensor, row0, rows int) Tensor
	// Reshape returns t (a tensor or a View, contiguous either way) with
	// another shape of the same number of elements, sharing storage with
	// t: a row-wise op then runs over other rows (q [T, heads·headDim] as
	// [T·heads, headDim] for a per-head RMSNorm).
	Reshape(t Tensor, shape ...int) Tensor
	// Upload copies host fp32 values into t (converting to t's dtype);
	// len(src) must equal t.Len().
	Upload(t Tensor, src []float32) error
	// Download copies t into host fp32 values; len(dst) must equal t.Len().
	// It waits for all ops issued before it.
	Download(dst []float32, t Tensor) error
	// UploadRaw copies src, t.Len() little-endian values of type dt, into t,
	// converting to t's dtype (I32 only into I32 tensors).
	UploadRaw(t Tensor, src []byte, dt DType) error
	// DownloadRaw copies t into dst as t.Len() little-endian values of type
	// dt, converting from t's dtype; it waits like Download.
	DownloadRaw(dst []byte, dt DType, t Tensor) error
	// Sync waits for all issued ops and reports a deferred device error.
	Sync() error
	// DTypes lists the floating-point dtypes Alloc accepts, F32 first.
	DTypes() []DType

	// Copy sets dst = src (same shape).
	Copy(dst, src Tensor)
	// Embedding sets dst[t,:] = table[ids[t],:]; dst [T,H], table [V,H].
	Embedding(dst, table Tensor, ids []int)
	// RMSNorm sets dst[r,:] = x[r,:] / sqrt(mean(x[r,:]²)+eps) * weight,
	// the mean in fp32 or wider (transformers MistralRMSNorm); dst may be x;
	// weight [Cols].
	RMSNorm(dst, x, weight Tensor, eps float32)
	// MatMul sets dst[M,N] = x[M,K] · w[N,K]ᵀ (torch linear, no bias).
	// dst must not alias x or w.
	MatMul(dst, x, w Tensor)
	// Add sets dst = a + b elementwise; dst may alias a or b.
	Add(dst, a, b Tensor)
	// AddBias adds bias [N] to every row of x [M, N] in place (the bias
	// of a torch Linear, added to MatMul's product: x[r,j] += bias[j],
	// the sum in fp32 rounded once to x's dtype); bias has x's dtype.
	AddBias(x, bias Tensor)
	// Mul sets dst = a * b elementwise; dst may alias a or b.
	Mul(dst, a, b Tensor)
	// SiLU sets dst = x * sigmoid(x) elementwise; dst may alias x.
	SiLU(dst, x Tensor)
	// RoPE rotates x [T, heads*headDim] in place with rotate-half rotary
	// embeddings (transformers apply_rotary_pos_emb) for positions
	// pos0..pos0+T-1: with d2 = len(inv), 1 <= d2 <= headDim/2, and for
	// j < d2, inv [d2] the inverse frequencies (RoPEFreqs: plain or
	// scaled), a = float32(pos)*inv[j] (fp32 product, as transformers
	// computes it), and in each head
	// x[j], x[j+d2] = x[j]cos a - x[j+d2] sin a, x[j+d2]cos a + x[j] sin a;
	// channels 2·d2..headDim-1 are left as they are (partial RoPE: the
	// rotary dimension is the table's 2·d2, see the package doc).
	// A backend may keep a copy of inv (a device table) for later calls
	// with equal contents; the caller may reuse the slice.
	RoPE(x Tensor, headDim, pos0 int, inv []float32)
	// Attention computes causal softmax attention with grouped KV heads:
	// q [T, Hq*D], k and v [S, Hkv*D] with S >= Pos0+T (rows beyond
	// Pos0+T-1 are ignored), dst [T, Hq*D]; query head h reads KV head
	// h/(Hq/Hkv). dst must not alias q, k or v.
	Attention(dst, q, k, v Tensor, p AttentionParams)
	// Gram accumulates the Gram matrix of the rows of x [rows, K] into dst
	// [K, K] F32: dst[i][j] += Σ_r mask[r]·x[r][i]·x[r][j] for j >= i, with
	// fp32 (or wider) products and sums (x's products are exact in fp32 for
	// F16/BF16 x). mask is nil (every row counts) or an F32 [rows] tensor
	// holding 1 for a row to keep and 0 for one to drop (padding). Entries below
	// the diagonal are unspecified: read the upper triangle. This is the
	// Hessian product of GPTQ (spec §4.1) kept on the device.
	Gram(dst, x, mask Tensor)
}

// Supports reports whether b allocates floating-point tensors of dtype dt.
func Supports(b Backend, dt DType) bool {
	for _, d := range b.DTypes() {
		if d == dt {
			return true
		}
	}
	return false
}

// SwiGLUer is a Backend with a fused SwiGLU: dst = silu(gate) * up
// elementwise (transformers MistralMLP act_fn(gate_proj(x)) * up_proj(x));
// dst may alias gate or up.
type SwiGLUer interface {
	SwiGLU(dst, gate, up Tensor)
}

// GELUGLUer is a Backend with dst = gelu_tanh(gate) * up elementwise
// (transformers Gemma3MLP: act_fn(gate_proj(x)) * up_proj(x), act_fn
// gelu_pytorch_tanh, 0.5·g·(1 + tanh(sqrt(2/π)·(g + 0.044715·g³)))),
// in fp32 rounded once; dst may alias gate or up. Gemma 3's models need
// it (there is no composed fallback: the Backend has no GELU).
type GELUGLUer interface {
	GELUGLU(dst, gate, up Tensor)
}

// OffsetRMSNormer is a Backend with Gemma's RMSNorm: dst[r,:] = x[r,:] /
// sqrt(mean(x[r,:]²)+eps) * (1 + weight), the mean, the product and 1 +
// weight in fp32 (transformers Gemma3RMSNorm), rounded once; dst may be
// x; weight [Cols]. Folding 1 + weight into a half-precision weight would
// round it, so Gemma 3's models need it.
type OffsetRMSNormer interface {
	OffsetRMSNorm(dst, x, weight Tensor, eps float32)
}

// Scaler is a Backend with dst = x * s elementwise, the product in fp32
// rounded once to dst's dtype (Gemma's embedding scale; the caller rounds
// s to the activation dtype as transformers does); dst may be x.
type Scaler interface {
	Scale(dst, x Tensor, s float32)
}

// Softcapper is a Backend with dst = c·tanh(x/c) elementwise, in fp32
// rounded once to dst's dtype; dst may be x (Gemma 2's
// final_logit_softcapping on the logits).
type Softcapper interface {
	Softcap(dst, x Tensor, c float32)
}

// RowScaler is a Backend with dst[r, :] = x[r, :] * scales[r], each product
// in fp32 rounded once to dst's dtype; scales is an F32 tensor of one value
// a row of x, and dst may be x (a mixture of experts' routing weights on
// its experts' stacked output rows).
type RowScaler interface {
	ScaleRows(dst, x, scales Tensor)
}

// SigmoidGater is a Backend with dst[r, :] = x[r, :] · σ(logits[r]), σ
// the logistic sigmoid in fp32 or better (the CPU's in float64) rounded
// to x's dtype, each product in fp32
// rounded once to dst's dtype; logits [rows, 1] has x's dtype, and dst
// may be x (Qwen2-MoE's shared expert, weighted by the sigmoid of its
// gate's logit as transformers computes it in the model's dtype).
type SigmoidGater interface {
	SigmoidGateRows(dst, x, logits Tensor)
}

// ExpertRouter is a Backend that routes a mixture-of-experts layer's rows
// on the device, so that a decode step of such a model transfers nothing
// in its middle and can be recorded (Grapher). A slot is one of a row's
// topK experts: slot s = r·topK + k of row r.
type ExpertRouter interface {
	// RoutesExperts reports whether ExpertMatMul takes ws (a layer's
	// experts' gate, up or down weights, one an expert, of one shape) for
	// dst of slots rows.
	RoutesExperts(ws []Tensor, slots int) bool
	// RouteTopK chooses each row's topK experts from a router's logits
	// [rows, experts] (F32, rounded to dt first: the activation dtype
	// transformers' router computes them in) as transformers'
	// MixtralTopKRouter does: a softmax
	// over all the experts in fp32, the topK largest probabilities (the
	// lower expert first among equal ones), divided by their sum where
	// normTopK. It writes row r's experts in ascending order to its slots
	// of ids (I32 [rows·topK]) and their weights to weights (F32, the
	// same slots); a row whose logits hold a NaN has none, and a slot
	// left without an expert holds -1 and 0. order (I32 [2·rows·topK])
	// is ExpertOrder's: the slots by expert (stably; slots of -1 last),
	// the order ExpertMatMul takes them in, then that list's runs of at
	// most ExpertRun slots of one expert. topK is at most 16, experts at
	// most 256.
	RouteTopK(ids, weights, order, logits Tensor, dt DType, topK int, normTopK bool)
	// ExpertMatMul sets dsts[j][s, :] = x[s/div, :] · ws[j][ids[s]]ᵀ for
	// every slot s of each dsts[j] [slots, N] (x [slots/div, K], as MatMul
	// takes it; one or two products of x, e.g. the experts' gate and up),
	// taking the slots in order's order (RouteTopK's order, both halves);
	// a slot of id -1 gets any finite row or none.
	ExpertMatMul(dsts []Tensor, x Tensor, ws [][]Tensor, ids, order Tensor, div int)
	// CombineExperts adds each row's experts' outputs out [rows·topK, H],
	// weighted, into x [rows, H] as ScaleRows and Add would: acc = w·out
	// of the row's first slot, then acc + w·out of each next one, every
	// product and sum rounded to x's dtype, then acc + extra where extra
	// [rows, H] is not nil (Qwen2-MoE's shared expert's output), then x +
	// acc; slots of id -1 are left out.
	CombineExperts(x, out, weights, ids, extra Tensor, topK int)
}

// AddRMSNormer is a Backend with a fused residual add and RMSNorm:
// x += delta, then norm = RMSNorm(x, weight, eps).
type AddRMSNormer interface {
	AddRMSNorm(norm, x, delta, weight Tensor, eps float32)
}

// TailScaler is a Backend that scales the last channels of every head in
// place: ScaleTail(x, headDim, c0, f) sets x[t, h·headDim+c] *= f for
// c0 <= c < headDim (the fp32 product rounded once to x's dtype). The
// model scales partial RoPE's unrotated channels of q by it (see
// ScaleTail).
type TailScaler interface {
	ScaleTail(x Tensor, headDim, c0 int, f float32)
}

// ScaleTail multiplies channels c0..headDim-1 of every head of x [T,
// heads·headDim] by f in place, by b's TailScaler, else on the host
// (Download, scale, Upload: correct, slow, and outside a graph). With
// partial RoPE and an attention factor af (longrope's), transformers
// multiplies only the rotated channels' cos and sin by af, so q·k is
// af²·(rotated part) + (unrotated part); the model folds af² into the
// attention scale as for whole-head RoPE and scales q's unrotated
// channels by 1/af² to give the latter its own weight back.
func ScaleTail(b Backend, x Tensor, headDim, c0 int, f float32) {
	if s, ok := b.(TailScaler); ok {
		s.ScaleTail(x, headDim, c0, f)
		return
	}
	cols := Cols(x)
	if headDim <= 0 || cols%headDim != 0 || c0 < 0 || c0 > headDim {
		panic(fmt.Sprintf("runtime: scale tail head dim %d from %d for %v", headDim, c0, x.Shape()))
	}
	buf := make([]float32, Rows(x)*cols)
	if err := b.Download(buf, x); err != nil {
		panic(fmt.Sprintf("runtime: scale tail: %v", err))
	}
	for h0 := 0; h0 < len(buf); h0 += headDim {
		for c := c0; c < headDim; c++ {
			buf[h0+c] *= f
		}
	}
	if err := b.Upload(x, buf); err != nil {
		panic(fmt.Sprintf("runtime: scale tail: %v", err))
	}
}

// SwiGLU sets dst = silu(gate) * up, fused when b implements SwiGLUer.
func SwiGLU(b Backend, dst, gate, up Tensor) {
	if f, ok := b.(SwiGLUer); ok {
		f.SwiGLU(dst, gate, up)
		return
	}
	b.SiLU(dst, gate)
	b.Mul(dst, dst, up)
}

// AddRMSNorm sets x += delta and norm = RMSNorm(x, weight, eps), fused when
// b implements AddRMSNormer.
func AddRMSNorm(b Backend, norm, x, delta, weight Tensor, eps float32) {
	if f, ok := b.(AddRMSNormer); ok {
		f.AddRMSNorm(norm, x, delta, weight, eps)
		return
	}
	b.Add(x, x, delta)
	b.RMSNorm(norm, x, weight, eps)
}

// CrossEntropyer is a Backend that scores rows of logits where they are:
// nll[r] = -log softmax(logits[r])[targets[r]] for logits [rows, vocab]
// F32, with the max subtracted and the sum in float64 (as the host
// reference verify.CrossEntropy), so that perplexity downloads rows values
// instead of rows×vocab.
type CrossEntropyer interface {
	CrossEntropy(logits Tensor, targets []int) ([]float64, error)
}

// RowScorer is a Backend that scores a prompt's rows of logits where they
// are (echo with logprobs: lm-evaluation-harness's loglikelihood), so
// that a step brings back rows·(1+2k) values instead of rows×vocab. For
// logits [rows, vocab] F32: lp[r] = log softmax(logits[r])[targets[r]],
// and for k > 0 the k largest entries of row r in descending order (ties
// to the lower id), ids[r·k+j], with their log-softmax top[r·k+j]; the max
// subtracted and the sum in float64, as the engine scores on the host.
// Entries that are not numbers are never among the top: a row with fewer
// than k numbers has ids -1 and top NaN past them (and a row with a NaN
// has a NaN log-probability), so that one bad row does not fail the step.
type RowScorer interface {
	// ScoresRows reports whether ScoreRows is to be used (a backend may
	// turn it off).
	ScoresRows() bool
	ScoreRows(logits Tensor, targets []int, k int) (lp []float64, ids []int32, top []float64, err error)
}

// ColumnSquarer is a Backend that sums each column's squares where x
// lives: sums[j] = Σ_r x[r][j]² for x [rows, cols], products and sums in
// float64, so that an importance matrix (llama.cpp's imatrix) brings back
// cols values of a layer's input instead of rows×cols.
type ColumnSquarer interface {
	ColumnSquares(x Tensor) ([]float64, error)
}

// ColumnSquares returns Σ_r x[r][j]² for each column j of x [rows, cols] in
// float64: on the device when b implements ColumnSquarer, else from a
// downloaded copy, rows added in order.
func ColumnSquares(b Backend, x Tensor) ([]float64, error) {
	if c, ok := b.(ColumnSquarer); ok {
		return c.ColumnSquares(x)
	}
	rows, cols := Rows(x), Cols(x)
	h := make([]float32, x.Len())
	if err := b.Download(h, x); err != nil {
		return nil, err
	}
	sums := make([]float64, cols)
	for r := range rows {
		for j, v := range h[r*cols : (r+1)*cols] {
			sums[j] += float64(v) * float64(v)
		}
	}
	return sums, nil
}

// ModelSpec is what a Preparer needs to know of a model before its first
// op: the activation dtype, the bit widths of its GPTQ weights (none for a
// floating-point model), whether they are symmetric (every zero
// 2^(bits-1), as the checkpoint's quantize_config says) and its attention
// heads.
type ModelSpec struct {
	DType      DType
	Bits       []int
	Sym        bool
	HeadDim    int
	QueryHeads int
	KVHeads    int
	// MoE: the model has mixture-of-experts layers (ExpertRouter's ops).
	MoE bool
}

// Preparer is a backend that can ready ahead of use what running a model
// needs (the CUDA backend compiles its kernels, several at once, while the
// weights upload). Prepare returns at once; the ops wait for what they need.
type Preparer interface {
	Prepare(ModelSpec)
}
