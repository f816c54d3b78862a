package cpu

import (
	"fmt"
	"math"

	"github.com/gptqtool/gptqtool/runtime"
)

// Attention implements runtime.Backend. One task is one (query row, head)
// pair: scores over the visible keys, a softmax with the max subtracted and
// the sum in float64, then the probability-weighted sum of value rows.
func (b *Backend) Attention(dst, q, k, v runtime.Tensor, p runtime.AttentionParams) {
	d, qt, kt, vt := tensorOf(dst), tensorOf(q), tensorOf(k), tensorOf(v)
	hd := p.HeadDim
	T, qc, kvc := qt.rows(), qt.cols(), kt.cols()
	if hd <= 0 || qc%hd != 0 || kvc%hd != 0 || vt.cols() != kvc || d.rows() != T || d.cols() != qc ||
		kt.rows() < p.Pos0+T || vt.rows() < p.Pos0+T || p.Pos0 < 0 || p.Window < 0 {
		panic(fmt.Sprintf("cpu: attention dst %v q %v k %v v %v params %+v: shape mismatch", d.shape, qt.shape, kt.shape, vt.shape, p))
	}
	hq, hkv := qc/hd, kvc/hd
	if hq%hkv != 0 {
		panic(fmt.Sprintf("cpu: attention %d query heads over %d kv heads", hq, hkv))
	}
	if d.dt != qt.dt || kt.dt != qt.dt || vt.dt != qt.dt {
		panic(fmt.Sprintf("cpu: attention dst %v q %v k %v v %v: one dtype, as the CUDA backend asks", d.dt, qt.dt, kt.dt, vt.dt))
	}
	group := hq / hkv
	if T >= blockedMinRows || d.dt != runtime.F32 {
		b.attentionBlocked(d, qt, kt, vt, p, hq, hkv)
		b.round(d)
		return
	}
	kern := b.kern
	// Each task owns a query row and a head; work grows with position, so
	// tasks are taken from the end (longest first) to balance threads.
	n := T * hq
	b.parallel(n, func(task int) {
		task = n - 1 - task
		t, h := task/hq, task%hq
		i := p.Pos0 + t
		j0 := 0
		if p.Window > 0 {
			j0 = max(0, i-p.Window+1)
		}
		nk := i - j0 + 1
		// Tasks are at least headDim×keys FLOPs, so a fresh score slice
		// per task is cheap next to them.
		sc := make([]float32, nk)
		qr := qt.data[t*qc+h*hd : t*qc+(h+1)*hd]
		kh := (h / group) * hd
		kbase := kt.data[kh:]
		var acc [4]float32
		j := 0
		for ; j+4 <= nk; j += 4 {
			kern.dot1x4(hd, qr, kbase[(j0+j)*kvc:], kvc, &acc)
			sc[j], sc[j+1], sc[j+2], sc[j+3] = acc[0], acc[1], acc[2], acc[3]
		}
		for ; j < nk; j++ {
			r := (j0 + j) * kvc
			sc[j] = dotGo(qr, kbase[r:r+hd])
		}
		inv := softmax(sc, capScores(sc, p.Scale, p.Softcap))
		out := d.data[t*qc+h*hd : t*qc+(h+1)*hd]
		clear(out)
		vbase := vt.data[kh:]
		for j, s := range sc {
			r := (j0 + j) * kvc
			kern.axpy(s*inv, vbase[r:r+hd], out)
		}
	})
}

// capScores soft-caps the raw scores sc (runtime.AttentionParams.Softcap):
// each becomes cap·tanh(s·scale/cap), in fp32, and the scale left to apply
// is 1; with cap 0 it leaves sc and returns scale.
func capScores(sc []float32, scale, cap float32) float32 {
	if cap <= 0 {
		return scale
	}
	for j, s := range sc {
		sc[j] = cap * float32(math.Tanh(float64(s*scale/cap)))
	}
	return 1
}

// softmax scales the scores sc, replaces them by exp(score − max) and
// returns 1/Σ, the sum in float64 (the normalisation is left to the caller,
// folded into the weights of the value rows).
func softmax(sc []float32, scale float32) float32 {
	mx := float32(math.Inf(-1))
	for j := range sc {
		sc[j] *= scale
		mx = max(mx, sc[j])
	}
	var sum float64
	for j, s := range sc {
		e := float32(math.Exp(float64(s - mx)))
		sc[j] = e
		sum += float64(e)
	}
	return float32(1 / sum)
}

// blockedMinRows is the query count from which Attention transposes V and
// runs both products through the 3×4 dot kernel; below it (decode) the
// transpose would cost more than it saves.
const blockedMinRows = 16

// attentionBlocked is Attention for many query rows. A task is a block of
// up to 3 consecutive query rows of one head: scores are 3×4 tiles of
// q·k, masked keys get probability 0, and the probability-weighted sum of
// values is a product with Vᵀ [kvHeads*headDim, S] built once per call, so
// that every value column is a contiguous dot product. For F16/BF16
// tensors of heads of 64 or 128 the softmax is the CUDA flash kernel's
// (flashWeights).
func (b *Backend) attentionBlocked(d, qt, kt, vt *Tensor, p runtime.AttentionParams, hq, hkv int) {
	hd := p.HeadDim
	T, qc, kvc := qt.rows(), qt.cols(), kt.cols()
	S := p.Pos0 + T
	group := hq / hkv
	kern := b.kern
	vT := make([]float32, kvc*S)
	b.parallelRange(kvc, 1, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			col := vT[c*S : (c+1)*S]
			for j := range col {
				col[j] = vt.data[j*kvc+c]
			}
		}
	})
	flash := d.dt != runtime.F32 && (hd == 64 || hd == 128)
	blocks := (T + 2) / 3
	n := blocks * hq
	b.parallel(n, func(task int) {
		task = n - 1 - task
		blk, h := task/hq, task%hq
		t0 := blk * 3
		nr := min(3, T-t0)
		kh := (h / group) * hd
		// Key range of the block: from the first row's window start to the
		// last row's own position.
		lo := func(i int) int {
			if p.Window > 0 {
				return max(0, i-p.Window+1)
			}
			return 0
		}
		j0 := lo(p.Pos0 + t0)
		j1 := p.Pos0 + t0 + nr // exclusive
		L := j1 - j0
		sc := make([]float32, 3*L)
		qrow := func(r int) []float32 { return qt.data[(t0+r)*qc+h*hd:] }
		var acc12 [12]float32
		var acc4 [4]float32
		j := 0
		for ; j+4 <= L; j += 4 {
			kb := kt.data[(j0+j)*kvc+kh:]
			if nr == 3 {
				kern.dot3x4(hd, qrow(0), qc, kb, kvc, &acc12)
				for r := range 3 {
					copy(sc[r*L+j:r*L+j+4], acc12[4*r:4*r+4])
				}
				continue
			}
			for r := range nr {
				kern.dot1x4(hd, qrow(r), kb, kvc, &acc4)
				copy(sc[r*L+j:r*L+j+4], acc4[:])
			}
		}
		for ; j < L; j++ {
			kb := kt.data[(j0+j)*kvc+kh : (j0+j)*kvc+kh+hd]
			for r := range nr {
				sc[r*L+j] = dotGo(qrow(r)[:hd], kb)
			}
		}
		for r := range nr {
			i := p.Pos0 + t0 + r
			row := sc[r*L : (r+1)*L]
			a, z := lo(i)-j0, i-j0+1 // visible keys row[a:z]
			scale := capScores(row[a:z], p.Scale, p.Softcap)
			if flash {
				flashWeights(row, a, z, j0, scale, d.dt)
				continue
			}
			mx := float32(math.Inf(-1))
			for _, s := range row[a:z] {
				mx = max(mx, s*scale)
			}
			var sum float64
			for jj := a; jj < z; jj++ {
				e := float32(math.Exp(float64(row[jj]*scale - mx)))
				row[jj] = e
				sum += float64(e)
			}
			inv := float32(1 / sum)
			clear(row[:a])
			clear(row[z:])
			for jj := a; jj < z; jj++ {
				row[jj] *= inv
			}
		}
		// out[r, c] = Σ_j P[r, j] · Vᵀ[kh+c, j0+j]
		out := func(r int) []float32 { return d.data[(t0+r)*qc+h*hd : (t0+r)*qc+(h+1)*hd] }
		c := 0
		for ; c+4 <= hd; c += 4 {
			vb := vT[(kh+c)*S+j0:]
			if nr == 3 {
				kern.dot3x4(L, sc, L, vb, S, &acc12)
				for r := range 3 {
					copy(out(r)[c:c+4], acc12[4*r:4*r+4])
				}
				continue
			}
			for r := range nr {
				kern.dot1x4(L, sc[r*L:], vb, S, &acc4)
				copy(out(r)[c:c+4], acc4[:])
			}
		}
		for ; c < hd; c++ {
			vb := vT[(kh+c)*S+j0 : (kh+c)*S+j0+L]
			for r := range nr {
				out(r)[c] = dotGo(sc[r*L:(r+1)*L], vb)
			}
		}
	})
}

// flashTile is the key tile of the CUDA flash kernel (attention.cu BN).
const flashTile = 64

// flashWeights replaces the scores row[a:z] of one query row (row[jj] the
// key at position j0+jj) by the weights of its value rows as the CUDA
// flash kernel forms them, and clears the rest of row: keys in tiles of
// flashTile positions, scores in the log2 domain (scale·log2 e), a running
// maximum m updated once a tile, each probability exp2(s − m) rounded to
// dt before it weights a value row (the kernel's second product is in
// dt), the sum l of the unrounded ones in fp32, the weights of earlier
// tiles scaled by exp2(m_old − m_new) as the kernel scales its
// accumulator, and 1/l applied at the end.
func flashWeights(row []float32, a, z, j0 int, scale float32, dt runtime.DType) {
	sl := scale * float32(math.Log2E)
	m := float32(math.Inf(-1))
	var l float32
	for t0 := a; t0 < z; {
		t1 := min(z, ((j0+t0)/flashTile+1)*flashTile-j0) // the tile's end
		mx := m
		for _, s := range row[t0:t1] {
			mx = max(mx, s*sl)
		}
		c := exp2f(m - mx)
		l *= c
		for jj := a; jj < t0; jj++ {
			row[jj] *= c
		}
		for jj := t0; jj < t1; jj++ {
			e := exp2f(row[jj]*sl - mx)
			l += e
			row[jj] = e
		}
		roundTo(dt, row[t0:t1])
		m = mx
		t0 = t1
	}
	inv := float32(0)
	if l > 0 {
		inv = 1 / l
	}
	clear(row[:a])
	clear(row[z:])
	for jj := a; jj < z; jj++ {
		row[jj] *= inv
	}
}

func exp2f(x float32) float32 { return float32(math.Exp2(float64(x))) }
