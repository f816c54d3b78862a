package cpu

import (
	"fmt"
	"slices"

	"github.com/gptqtool/gptqtool/runtime"
)

// RoutesExperts implements runtime.ExpertRouter: any experts of one shape,
// for fewer slots than runtime.ExpertOrder's runs encode.
func (b *Backend) RoutesExperts(ws []runtime.Tensor, slots int) bool {
	if slots >= runtime.ExpertRunSlots {
		return false
	}
	for _, w := range ws {
		if !slices.Equal(tensorOf(w).shape, tensorOf(ws[0]).shape) {
			return false
		}
	}
	return len(ws) > 0
}

// RouteTopK implements runtime.ExpertRouter with runtime.RouteRow.
func (b *Backend) RouteTopK(ids, weights, order, logits runtime.Tensor, dt runtime.DType, topK int, normTopK bool) {
	lt, wt := tensorOf(logits), tensorOf(weights)
	rows, experts := lt.rows(), lt.cols()
	slots := rows * topK
	idx, ord := indexOf("route", ids, slots), indexOf("route", order, 2*slots)
	if wt.dt != runtime.F32 || wt.Len() != slots || tensorOf(ids).Len() != slots || tensorOf(order).Len() != 2*slots {
		panic(fmt.Sprintf("cpu: route %v logits to ids %v, weights %v %v, order %v for top %d", lt.shape, tensorOf(ids).shape, wt.dt, wt.shape, tensorOf(order).shape, topK))
	}
	probs, l := make([]float32, experts), make([]float32, experts)
	for r := range rows {
		id, w := idx[r*topK:(r+1)*topK], wt.data[r*topK:(r+1)*topK]
		copy(l, lt.data[r*experts:(r+1)*experts])
		roundTo(dt, l)
		n := runtime.RouteRow(l, topK, normTopK, probs, id, w)
		// Ascending experts, then the slots left empty.
		sortPairs(id[:n], w[:n])
		for i := n; i < topK; i++ {
			id[i], w[i] = -1, 0
		}
	}
	runtime.ExpertOrder(idx[:slots], experts, ord[:2*slots])
}

// sortPairs sorts ids ascending, weights alongside (a few entries).
func sortPairs(ids []int32, weights []float32) {
	for i := 1; i < len(ids); i++ {
		for j := i; j > 0 && ids[j] < ids[j-1]; j-- {
			ids[j], ids[j-1] = ids[j-1], ids[j]
			weights[j], weights[j-1] = weights[j-1], weights[j]
		}
	}
}

// ExpertMatMul implements runtime.ExpertRouter: each expert's slots (a
// stretch of order's first half) gathered into one product a weight list, as a host-routed
// layer multiplies an expert's rows.
func (b *Backend) ExpertMatMul(dsts []runtime.Tensor, x runtime.Tensor, ws [][]runtime.Tensor, ids, order runtime.Tensor, div int) {
	xt := tensorOf(x)
	if len(dsts) == 0 || len(dsts) != len(ws) {
		panic(fmt.Sprintf("cpu: expert matmul into %d outputs with %d weight lists", len(dsts), len(ws)))
	}
	slots, K := tensorOf(dsts[0]).rows(), xt.cols()
	idx, ord := indexOf("expert matmul", ids, slots), indexOf("expert matmul", order, slots)
	if div < 1 || xt.rows()*div != slots {
		panic(fmt.Sprintf("cpu: expert matmul of x %v for %d slots, %d a row", xt.shape, slots, div))
	}
	for i := 0; i < slots; {
		e := idx[ord[i]]
		j := i + 1
		for j < slots && idx[ord[j]] == e {
			j++
		}
		if e >= 0 {
			// (Host scratch of its own, outside Alloc's accounting.)
			n := j - i
			in := &Tensor{shape: []int{n, K}, data: make([]float32, n*K), dt: xt.dt}
			for r, s := range ord[i:j] {
				copy(in.data[r*K:(r+1)*K], xt.data[int(s)/div*K:(int(s)/div+1)*K])
			}
			for p, dst := range dsts {
				d := tensorOf(dst)
				N := d.cols()
				if d.rows() != slots {
					panic(fmt.Sprintf("cpu: expert matmul outputs %v and %v", tensorOf(dsts[0]).shape, d.shape))
				}
				out := &Tensor{shape: []int{n, N}, data: make([]float32, n*N), dt: d.dt}
				b.MatMul(out, in, ws[p][e])
				for r, s := range ord[i:j] {
					copy(d.data[int(s)*N:(int(s)+1)*N], out.data[r*N:(r+1)*N])
				}
			}
		}
		i = j
	}
}

// CombineExperts implements runtime.ExpertRouter.
func (b *Backend) CombineExperts(x, out, weights, ids, extra runtime.Tensor, topK int) {
	xt, ot, wt := tensorOf(x), tensorOf(out), tensorOf(weights)
	rows, H := xt.rows(), xt.cols()
	idx := indexOf("combine experts", ids, rows*topK)
	if ot.rows() != rows*topK || ot.cols() != H || wt.Len() != rows*topK || ot.dt != xt.dt {
		panic(fmt.Sprintf("cpu: combine experts %v %v into x %v %v, top %d", ot.dt, ot.shape, xt.dt, xt.shape, topK))
	}
	var et *Tensor
	if extra != nil {
		et = tensorOf(extra)
		sameLen("combine experts extra", et, xt)
		if et.dt != xt.dt {
			panic(fmt.Sprintf("cpu: combine experts extra %v into x %v", et.dt, xt.dt))
		}
	}
	r1 := func(v float32) float32 {
		s := [1]float32{v}
		roundTo(xt.dt, s[:])
		return s[0]
	}
	b.parallelRange(rows*H, minChunk, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			r, c := i/H, i%H
			acc, any := float32(0), false
			for k := range topK {
				s := r*topK + k
				if idx[s] < 0 {
					continue
				}
				v := r1(ot.data[s*H+c] * wt.data[s])
				if any {
					v = r1(acc + v)
				}
				acc, any = v, true
			}
			if et != nil && any {
				acc = r1(acc + et.data[i])
			} else if et != nil {
				acc = et.data[i]
			}
			xt.data[i] = r1(xt.data[i] + acc)
		}
	})
}

var _ runtime.ExpertRouter = (*Backend)(nil)
