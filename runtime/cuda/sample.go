package cuda

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/gptqtool/gptqtool/runtime"
)

// sampleRowBytes is the size of kernels/sample.cu's SampleRow.
const sampleRowBytes = 32

// SampleTokens implements runtime.TokenSampler: one block a row
// (kernels/sample.cu), the rules and penalties in one upload, the tokens in
// one download.
func (b *Backend) SampleTokens(dst []int32, logits runtime.Tensor, rows []int, p []runtime.SampleParams) error {
	lt := b.tensor(logits)
	n, V := runtime.Rows(lt), runtime.Cols(lt)
	if lt.dt != runtime.F32 || len(lt.shape) != 2 || len(dst) != len(rows) || len(p) != len(rows) {
		return fmt.Errorf("cuda: sample %d tokens from logits %v %v with %d rules", len(dst), lt.dt, lt.shape, len(p))
	}
	if len(rows) == 0 {
		return nil
	}
	nadj := 0
	for i, r := range rows {
		if r < 0 || r >= n {
			return fmt.Errorf("cuda: sample from row %d of logits %v", r, lt.shape)
		}
		nadj += len(p[i].Adjust)
	}
	// [rows]SampleRow, then the penalties' tokens, rep and sub factors.
	raw := make([]byte, sampleRowBytes*len(rows)+12*nadj)
	tok, rep, sub := raw[sampleRowBytes*len(rows):], raw[sampleRowBytes*len(rows)+4*nadj:], raw[sampleRowBytes*len(rows)+8*nadj:]
	le := binary.LittleEndian
	a := 0
	for i, r := range rows {
		q := p[i]
		o := raw[sampleRowBytes*i:]
		le.PutUint32(o[0:], uint32(r))
		// In float32 a tiny temperature must stay above 0 and a top-p just
		// under 1 below it, or the rule would change.
		temp, topP := float32(q.Temperature), float32(q.TopP)
		if q.Temperature > 0 && temp == 0 {
			temp = math.SmallestNonzeroFloat32
		}
		if q.TopP < 1 && topP >= 1 {
			topP = math.Nextafter32(1, 0)
		}
		le.PutUint32(o[4:], math.Float32bits(temp))
		le.PutUint32(o[8:], uint32(int32(min(q.TopK, math.MaxInt32))))
		le.PutUint32(o[12:], math.Float32bits(topP))
		le.PutUint64(o[16:], uint64(math.Ldexp(min(max(q.U, 0), 0x1.fffffffffffffp-1), 53))<<11)
		le.PutUint32(o[24:], uint32(a))
		le.PutUint32(o[28:], uint32(len(q.Adjust)))
		for _, adj := range q.Adjust {
			le.PutUint32(tok[4*a:], uint32(int32(adj.Token)))
			le.PutUint32(rep[4*a:], math.Float32bits(adj.Rep))
			le.PutUint32(sub[4*a:], math.Float32bits(adj.Sub))
			a++
		}
	}
	b.enter()
	defer b.exit()
	if b.err != nil {
		return b.err
	}
	in, err := b.transient(&b.srules, int64(len(raw)))
	if err != nil {
		return err
	}
	out, err := b.transient(&b.stoks, int64(4*len(rows)))
	if err != nil {
		return err
	}
	var work uint64
	if nadj > 0 {
		wb, err := b.transient(&b.swork, int64(len(rows))*int64(V)*4)
		if err != nil {
			return err
		}
		work = wb.Ptr
	}
	if err := b.htod(in.Ptr, raw); err != nil {
		return err
	}
	base := in.Ptr + uint64(sampleRowBytes*len(rows))
	if err := b.launch("sample.cu", "sample_rows", Dim{X: len(rows)}, Dim{X: 512}, 0, lt.ptr, int32(V), in.Ptr,
		base, base+uint64(4*nadj), base+uint64(8*nadj), work, out.Ptr); err != nil {
		return err
	}
	res := make([]byte, 4*len(rows))
	if err := b.dtoh(res, out.Ptr); err != nil {
		return err
	}
	for i := range dst {
		dst[i] = int32(le.Uint32(res[4*i:]))
	}
	return nil
}

var _ runtime.TokenSampler = (*Backend)(nil)
