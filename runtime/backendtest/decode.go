package backendtest

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"testing"

	"github.com/gptqtool/gptqtool/runtime"
)

func (e *env) indices(v []int32) runtime.Tensor {
	e.t.Helper()
	tn, err := e.b.Alloc(runtime.I32, len(v))
	if err != nil {
		e.t.Fatalf("alloc I32 [%d]: %v", len(v), err)
	}
	raw := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], uint32(x))
	}
	if err := e.b.UploadRaw(tn, raw, runtime.I32); err != nil {
		e.t.Fatalf("upload I32: %v", err)
	}
	return tn
}

// testPagedDecoder checks the decode-step ops of a runtime.PagedDecoder
// against float64 references: rows at their own positions, block tables
// that scatter the positions over the cache, GQA groups of 1 to 8, head
// sizes that are and are not multiples of 8, windows, and contexts long
// enough for a backend to split them, up to 5,120 positions.
func testPagedDecoder(e *env) {
	pd, ok := e.b.(runtime.PagedDecoder)
	if !ok {
		e.t.Skipf("%s has no PagedDecoder ops", e.b.Name())
	}
	for _, s := range []struct {
		rows, hq, hkv, hd, bs, window, rd int
		cap                               float32
	}{
		{1, 1, 1, 8, 4, 0, 0, 0},
		{3, 4, 2, 8, 4, 0, 0, 0},
		{2, 8, 1, 12, 8, 0, 0, 0},
		{4, 6, 2, 16, 16, 5, 0, 0},
		{2, 4, 4, 6, 4, 0, 0, 0},
		{3, 8, 2, 128, 16, 0, 0, 0},
		{2, 4, 1, 256, 16, 100, 0, 0},
		// Contexts of 1,280 to 5,120 positions: a backend splitting them in
		// tiles of 128 takes 10 to 32 splits (and its cap at the longest).
		{2, 8, 2, 32, 32, 0, 0, 0},
		{3, 4, 2, 64, 64, 300, 0, 0},
		{1, 4, 1, 64, 128, 0, 0, 0},
		// Partial RoPE (rd of hd rotated, the rest kept and stored):
		// Phi-4-mini's 96 of 128, and a small head.
		{3, 8, 2, 128, 16, 0, 96, 0},
		{2, 4, 2, 12, 4, 0, 4, 0},
		// Soft-capped scores (Gemma 2's), split and not.
		{2, 4, 1, 256, 16, 100, 0, 1},
		{3, 4, 2, 64, 64, 0, 0, 1.5},
	} {
		e.t.Run(fmt.Sprintf("rows%d_hq%d_hkv%d_d%d_bs%d_w%d_rd%d_cap%g", s.rows, s.hq, s.hkv, s.hd, s.bs, s.window, s.rd, s.cap), func(t *testing.T) {
			e := &env{t: t, b: e.b, rng: e.rng}
			const width, blocks, vocab = 40, 48, 11
			qc, kvc := s.hq*s.hd, s.hkv*s.hd
			pos, slot, ids := make([]int32, s.rows), make([]int32, s.rows), make([]int32, s.rows)
			tables := make([]int32, s.rows*width)
			perm := e.rng.Perm(blocks)
			for r := range s.rows {
				pos[r] = int32(e.rng.IntN(width * s.bs))
				if r == 0 {
					pos[r] = int32(width*s.bs - 1) // the longest context
				}
				ids[r] = int32(e.rng.IntN(vocab))
				for j := range width {
					tables[r*width+j] = int32(perm[(r*5+j)%blocks])
				}
				slot[r] = tables[r*width+int(pos[r])/s.bs]*int32(s.bs) + pos[r]%int32(s.bs)
			}
			if s.rows > 1 && pos[1]/int32(s.bs) == pos[0]/int32(s.bs) {
				pos[1] = 0 // distinct slots
				slot[1] = tables[width] * int32(s.bs)
			}
			table, q, k, v := e.randn(vocab*qc), e.randn(s.rows*qc), e.randn(s.rows*kvc), e.randn(s.rows*kvc)
			kc, vc := e.randn(blocks*s.bs*kvc), e.randn(blocks*s.bs*kvc)
			tt, qt, kt, vt := e.upload(table, vocab, qc), e.upload(q, s.rows, qc), e.upload(k, s.rows, kvc), e.upload(v, s.rows, kvc)
			kct, vct := e.upload(kc, blocks*s.bs, kvc), e.upload(vc, blocks*s.bs, kvc)
			post, slott, idt, tabt := e.indices(pos), e.indices(slot), e.indices(ids), e.indices(tables)
			x, dst := e.alloc(s.rows, qc), e.alloc(s.rows, qc)

			pd.EmbeddingAt(x, tt, idt)
			wantX := make([]float64, s.rows*qc)
			for r, id := range ids {
				copy(wantX[r*qc:(r+1)*qc], f64(table[int(id)*qc:(int(id)+1)*qc]))
			}
			e.check("embedding at", e.download(x), wantX, tolExact)

			// Llama 3's head sizes rotate by its scaled table.
			tab := ropeTableOf(cmp.Or(s.rd, s.hd), s.hd == 64 || s.hd == 128)
			pd.RoPEStore(qt, kt, vt, kct, vct, post, slott, s.hd, tab.inv)
			wantQ, wantK := make([]float64, len(q)), make([]float64, len(k))
			for r := range s.rows {
				p := int(pos[r])
				copy(wantQ[r*qc:], refRoPE(q[r*qc:(r+1)*qc], qc, s.hd, p, tab.ref))
				copy(wantK[r*kvc:], refRoPE(k[r*kvc:(r+1)*kvc], kvc, s.hd, p, tab.ref))
			}
			tolR := tolRoPE * float64(1+width*s.bs*width*s.bs)
			e.check("rope-store q", e.download(qt), wantQ, tolR)
			gotKC, gotVC := e.download(kct), e.download(vct)
			wantKC, wantVC := f64(kc), f64(vc)
			for r := range s.rows {
				o := int(slot[r]) * kvc
				copy(wantKC[o:o+kvc], wantK[r*kvc:(r+1)*kvc])
				copy(wantVC[o:o+kvc], f64(v[r*kvc:(r+1)*kvc]))
			}
			e.check("rope-store k cache", gotKC, wantKC, tolR)
			e.check("rope-store v cache", gotVC, wantVC, tolExact)

			// The reference reads each row's positions through its table from
			// the caches as the backend left them.
			q2 := e.download(qt)
			p := runtime.AttentionParams{HeadDim: s.hd, Window: s.window, Scale: float32(1 / math.Sqrt(float64(s.hd))), Softcap: s.cap}
			pd.PagedAttention(dst, qt, kct, vct, tabt, post, s.bs, p)
			want := make([]float64, s.rows*qc)
			for r := range s.rows {
				n := int(pos[r]) + 1
				ks, vs := make([]float32, n*kvc), make([]float32, n*kvc)
				for j := range n {
					row := int(tables[r*width+j/s.bs])*s.bs + j%s.bs
					copy(ks[j*kvc:], gotKC[row*kvc:(row+1)*kvc])
					copy(vs[j*kvc:], gotVC[row*kvc:(row+1)*kvc])
				}
				pr := p
				pr.Pos0 = n - 1
				copy(want[r*qc:], RefAttention(q2[r*qc:(r+1)*qc], ks, vs, 1, s.hq, s.hkv, pr))
			}
			e.check("paged attention", e.download(dst), want, tolAttn)
			for _, tn := range []runtime.Tensor{tt, qt, kt, vt, kct, vct, post, slott, idt, tabt, x, dst} {
				e.b.Free(tn)
			}
		})
	}
}
