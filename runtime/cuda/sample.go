package cuda

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/gptqtool/gptqtool/runtime"
)

// sampleRowBytes is the size of kernels/sample.cu's SampleRow.
const sampleRowBytes = 40

// SampleTokens implements runtime.TokenSampler: one block a row
// (kernels/sample.cu), the rules and penalties in one upload, the tokens in
// one download.
func (b *Backend) SampleTokens(dst []int32, logits runtime.Tensor, rows []int, p []runtime.SampleParams) error {
	if len(dst) != len(rows) {
		return fmt.Errorf("cuda: sample %d tokens from %d rows", len(dst), len(rows))
	}
	raw, err := b.sampleRules(logits, rows, p)
	if err != nil || len(rows) == 0 {
		return err
	}
	b.enter()
	defer b.exit()
	out, err := b.transient(&b.stoks, int64(4*len(rows)))
	if err != nil {
		return err
	}
	if err := b.sampleLaunch(out.Ptr, b.tensor(logits), rows, p, raw); err != nil {
		return err
	}
	return b.dtohI32(dst, out.Ptr)
}

// SampleTokensTo implements runtime.TokenFeeder: the draw goes to dst and,
// by an asynchronous copy, to page-locked host memory, one of two that
// alternate (a third draw first waits for the first's tokens); an event
// marks the copy's end. Without page-locked memory or events it waits.
func (b *Backend) SampleTokensTo(dst, logits runtime.Tensor, rows []int, p []runtime.SampleParams) (runtime.PendingTokens, error) {
	d := b.tensor(dst)
	if d.dt != runtime.I32 || d.n < len(rows) {
		return nil, fmt.Errorf("cuda: sample %d tokens into %v tensor %v", len(rows), d.dt, d.shape)
	}
	raw, err := b.sampleRules(logits, rows, p)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return &pendingTokens{done: true}, nil
	}
	b.enter()
	defer b.exit()
	if err := b.sampleLaunch(d.ptr, b.tensor(logits), rows, p, raw); err != nil {
		return nil, err
	}
	return b.ahead.start(b, d.ptr, len(rows))
}

// kernelTemperature is the temperature sample_rows gets for t: t in
// float32, but a positive t below float32's smallest normal number
// (1.2e-38, where t rounds to 0 or a subnormal that flushes to 0, or 1/t
// overflows: the kernel weighs a logit v by exp((v - max) * (1/t)), and
// 0 * inf is NaN) is that number, so that the draw stays on the sampling
// path and the largest logit keeps weight 1, as the CPU's float64 draw
// gives it at any positive temperature.
func kernelTemperature(t float64) float32 {
	const minNormal = 0x1p-126
	if t > 0 && t < minNormal {
		return minNormal
	}
	return float32(t)
}

// sampleRules checks a draw's arguments and packs its rules: [rows]
// SampleRow, then the adjustments' tokens, biases, rep and sub factors
// (adjBytes each), then the masks of the rows with one (Allow), each
// ceil(V/32) 32-bit words.
func (b *Backend) sampleRules(logits runtime.Tensor, rows []int, p []runtime.SampleParams) ([]byte, error) {
	lt := b.tensor(logits)
	n := runtime.Rows(lt)
	if lt.dt != runtime.F32 || len(lt.shape) != 2 || len(p) != len(rows) {
		return nil, fmt.Errorf("cuda: sample %d rows from logits %v %v with %d rules", len(rows), lt.dt, lt.shape, len(p))
	}
	nadj, nmask := 0, 0
	V := runtime.Cols(lt)
	maskWords := (V + 31) / 32
	for i, r := range rows {
		if r < 0 || r >= n {
			return nil, fmt.Errorf("cuda: sample from row %d of logits %v", r, lt.shape)
		}
		nadj += len(p[i].Adjust)
		if a := p[i].Allow; a != nil {
			if len(a) < (V+63)/64 {
				return nil, fmt.Errorf("cuda: sample from logits %v with a mask of %d words", lt.shape, len(a))
			}
			nmask++
		}
	}
	raw := make([]byte, sampleRowBytes*len(rows)+adjBytes*nadj+4*maskWords*nmask)
	adjs := raw[sampleRowBytes*len(rows) : sampleRowBytes*len(rows)+adjBytes*nadj]
	masks := raw[sampleRowBytes*len(rows)+adjBytes*nadj:]
	tok, bias, rep, sub := adjs, adjs[4*nadj:], adjs[8*nadj:], adjs[12*nadj:]
	le := binary.LittleEndian
	a, m := 0, 0
	for i, r := range rows {
		q := p[i]
		o := raw[sampleRowBytes*i:]
		le.PutUint32(o[0:], uint32(r))
		// In float32 a top-p just under 1 must stay below it, or the rule
		// would change (a tiny temperature: kernelTemperature).
		temp, topP := kernelTemperature(q.Temperature), float32(q.TopP)
		if q.TopP < 1 && topP >= 1 {
			topP = math.Nextafter32(1, 0)
		}
		le.PutUint32(o[4:], math.Float32bits(temp))
		le.PutUint32(o[8:], uint32(int32(min(q.TopK, math.MaxInt32))))
		le.PutUint32(o[12:], math.Float32bits(topP))
		// A greedy draw takes no uniform number: 0, so that its rules are
		// the same bytes step after step (sampleLaunch then skips their
		// upload).
		if u := min(max(q.U, 0), 0x1.fffffffffffffp-1); temp > 0 && q.TopK != 1 {
			le.PutUint64(o[16:], uint64(math.Ldexp(u, 53))<<11)
		}
		le.PutUint32(o[24:], uint32(a))
		le.PutUint32(o[28:], uint32(len(q.Adjust)))
		mask0 := int32(-1)
		if q.Allow != nil {
			// Bit id of the mask is bit id%32 of 32-bit word id/32.
			mask0 = int32(maskWords * m)
			for w := range maskWords {
				le.PutUint32(masks[4*(maskWords*m+w):], uint32(q.Allow[w/2]>>(32*(w%2))))
			}
			m++
		}
		le.PutUint32(o[32:], uint32(mask0))
		for _, adj := range q.Adjust {
			le.PutUint32(tok[4*a:], uint32(int32(adj.Token)))
			le.PutUint32(bias[4*a:], math.Float32bits(adj.Bias))
			le.PutUint32(rep[4*a:], math.Float32bits(adj.Rep))
			le.PutUint32(sub[4*a:], math.Float32bits(adj.Sub))
			a++
		}
	}
	return raw, nil
}

// sampleLaunch uploads a draw's rules (sampleRules) and launches it into
// out; the caller holds the backend.
func (b *Backend) sampleLaunch(out uint64, lt *Tensor, rows []int, p []runtime.SampleParams, raw []byte) error {
	if b.err != nil {
		return b.err
	}
	nadj, masked := 0, false
	for _, q := range p {
		nadj += len(q.Adjust)
		masked = masked || q.Allow != nil
	}
	in, err := b.transient(&b.srules, int64(len(raw)))
	if err != nil {
		return err
	}
	var work uint64
	if nadj > 0 || masked {
		wb, err := b.transient(&b.swork, int64(len(rows))*int64(runtime.Cols(lt))*4)
		if err != nil {
			return err
		}
		work = wb.Ptr
	}
	// The rules of the last draw are still there (they change with the
	// penalties and the uniform numbers; a greedy decode's repeat): an
	// upload is a copy in the stream between the step and the draw.
	// (A buffer grown since is a new one: srulesIn tells them apart.)
	if in != b.srulesIn || !bytes.Equal(raw, b.srulesUp) {
		b.srulesIn = nil // until the copy is queued
		// From pageable memory the copy has taken raw when it returns.
		if err := b.htod(in.Ptr, raw); err != nil {
			return err
		}
		b.srulesIn, b.srulesUp = in, append(b.srulesUp[:0], raw...)
	}
	base := in.Ptr + uint64(sampleRowBytes*len(rows))
	if b.argmax && nadj == 0 && !masked && allGreedy(p) {
		// argmax_rows: AG blocks a row, their partials and a counter a row.
		pb, err := b.transient(&b.sargp, int64(len(rows))*argmaxBlocks*8)
		if err != nil {
			return err
		}
		count, err := b.counters(&b.sargc, len(rows))
		if err != nil {
			return err
		}
		return b.argmaxLaunch(lt, len(rows), in.Ptr, pb.Ptr, count, out, [3]uint64{})
	}
	return b.launch("sample.cu", "sample_rows", Dim{X: len(rows)}, Dim{X: 512}, 0, lt.ptr, int32(runtime.Cols(lt)), in.Ptr,
		base, base+uint64(4*nadj), base+uint64(8*nadj), base+uint64(12*nadj), base+uint64(adjBytes*nadj), work, out)
}

// adjBytes is the bytes of one runtime.LogitAdjust in a draw's rules:
// its token, bias, rep and sub, four bytes each.
const adjBytes = 16

// argmaxBlocks is kernels/sample.cu's AG: the blocks of a row of
// argmax_rows.
const argmaxBlocks = 32

// argmaxLaunch launches argmax_rows over n rows of lt: rules their
// SampleRows (0: rows 0..n-1), partials n·argmaxBlocks values then as many
// indices, count n counters; host the mapped host slots and the device's
// slot index (zeros: none).
func (b *Backend) argmaxLaunch(lt *Tensor, n int, rules, partials, count, out uint64, host [3]uint64) error {
	return b.launch("sample.cu", "argmax_rows", Dim{X: argmaxBlocks, Y: n}, Dim{X: 256}, 0, lt.ptr, int32(runtime.Cols(lt)),
		rules, partials, partials+uint64(n)*argmaxBlocks*4, count, out, host[0], host[1], host[2])
}

// allGreedy reports whether every rule of a draw takes the largest logit
// (sample_rows' greedy rule: temperature <= 0 or top-k 1), so that
// argmax_rows may draw it where no rule has penalties.
func allGreedy(p []runtime.SampleParams) bool {
	for _, q := range p {
		if !q.Greedy() {
			return false
		}
	}
	return true
}

// GreedySlot implements runtime.GreedyDrawer: the slots alternate, and a
// slot's earlier draw, if still pending, is waited for. -1 under
// GPTQTOOL_ARGMAX=0 or GPTQTOOL_GRAPH_DRAW=0, or where the driver cannot
// map page-locked memory for the device.
func (b *Backend) GreedySlot() int {
	b.enter()
	defer b.exit()
	a := &b.greedy
	if !b.argmax || !b.graphDraw || b.err != nil || !a.ready(4*greedyRows) || a.dev[1] == 0 {
		return -1
	}
	return a.take()
}

// greedyRows is the most rows of a greedy draw recorded in a graph
// (DrawGreedy): the host slots are made once at this size, since graphs
// keep their addresses.
const greedyRows = 256

// DrawGreedy implements runtime.GreedyDrawer with argmax_rows, its
// scratch kept while graphs may use it.
func (b *Backend) DrawGreedy(dst, logits, slot runtime.Tensor) {
	d, lt, sl := b.tensor(dst), b.tensor(logits), b.tensor(slot)
	n := runtime.Rows(lt)
	b.enter()
	defer b.exit()
	if b.err != nil {
		return
	}
	a := &b.greedy
	switch {
	case d.dt != runtime.I32 || d.n < n || sl.dt != runtime.I32 || sl.n < 1 || lt.dt != runtime.F32 || len(lt.shape) != 2:
		b.fail(fmt.Errorf("cuda: greedy draw of logits %v %v into %v tensor %v, host slot %v tensor %v", lt.dt, lt.shape, d.dt, d.shape, sl.dt, sl.shape))
		return
	case n > greedyRows || a.dev[1] == 0:
		b.fail(fmt.Errorf("cuda: greedy draw of %d rows without host slots of %d (GreedySlot first)", n, greedyRows))
		return
	}
	pb, err := b.scratch(&b.sgrp, int64(n)*argmaxBlocks*8)
	if err != nil {
		b.fail(err)
		return
	}
	count, err := b.counters(&b.sargc, n)
	if err != nil {
		b.fail(err)
		return
	}
	if err := b.argmaxLaunch(lt, n, 0, pb.Ptr, count, d.ptr, [3]uint64{a.dev[0], a.dev[1], sl.ptr}); err != nil {
		b.fail(err)
	}
}

// GreedyPending implements runtime.GreedyDrawer: an event after the draw
// marks its tokens in host slot s.
func (b *Backend) GreedyPending(s, n int) (runtime.PendingTokens, error) {
	b.enter()
	defer b.exit()
	a := &b.greedy
	if s < 0 || s > 1 || n < 0 || n > greedyRows || a.dev[1] == 0 {
		return nil, fmt.Errorf("cuda: %d tokens of greedy host slot %d", n, s)
	}
	if b.err != nil {
		return nil, b.err
	}
	return a.mark(b, s, n)
}

// aheadCopies are two page-locked buffers and their events, made on first
// use: SampleTokensTo's copies (Backend.ahead) or, mapped for the device,
// the slots that greedy draws write (Backend.greedy).
type aheadCopies struct {
	host  [2]unsafe.Pointer
	dev   [2]uint64 // the device's addresses of host (mapped only)
	ev    [2]uintptr
	size  int // bytes of each buffer
	pend  [2]*pendingTokens
	next  int
	unfit bool // the driver lacks page-locked memory or events: copies wait
	// mapped: the buffers are made once with their device addresses, and
	// never again while the backend lives (graphs keep the addresses).
	mapped bool
}

// pendingTokens is a draw whose tokens are on their way to host memory.
type pendingTokens struct {
	b    *Backend
	a    *aheadCopies
	slot int
	n    int
	done bool
	toks []int32
	err  error
}

// start copies n tokens at src to the next buffer; the caller holds the
// backend.
func (a *aheadCopies) start(b *Backend, src uint64, n int) (*pendingTokens, error) {
	if !a.ready(4 * n) {
		p := &pendingTokens{b: b, n: n, done: true, toks: make([]int32, n)}
		if err := b.dtohI32(p.toks, src); err != nil {
			return nil, err
		}
		return p, nil
	}
	s := a.take()
	if err := cuErr("cuMemcpyDtoHAsync", drv.cuMemcpyDtoHAsync(a.host[s], src, uint64(4*n), b.stream)); err != nil {
		return nil, err
	}
	return a.mark(b, s, n)
}

// take returns the next buffer, its earlier tokens, if still pending,
// waited for and kept (the next draw overwrites them); the caller holds
// the backend.
func (a *aheadCopies) take() int {
	s := a.next
	a.next ^= 1
	if q := a.pend[s]; q != nil {
		q.resolve()
	}
	return s
}

// mark records buffer s's event at this point of the stream and returns
// its n tokens, pending until then; the caller holds the backend.
func (a *aheadCopies) mark(b *Backend, s, n int) (*pendingTokens, error) {
	if err := cuErr("cuEventRecord", drv.cuEventRecord(a.ev[s], b.stream)); err != nil {
		return nil, err
	}
	p := &pendingTokens{b: b, a: a, slot: s, n: n}
	a.pend[s] = p
	return p, nil
}

// ready makes the buffers hold at least n bytes and the events, and
// reports whether copies can be left pending.
func (a *aheadCopies) ready(n int) bool {
	if a.unfit || drv.cuMemAllocHost == nil || drv.cuEventCreate == nil {
		a.unfit = true
		return false
	}
	if a.ev[1] == 0 {
		for s := range 2 {
			// CU_EVENT_DISABLE_TIMING: a marker only.
			if drv.cuEventCreate(&a.ev[s], 2) != 0 {
				a.unfit = true
				return false
			}
		}
	}
	if n > a.size {
		if a.mapped && a.size > 0 {
			return false
		}
		a.releaseHost()
		size := max(n, 1024)
		for s := range 2 {
			if drv.cuMemAllocHost(&a.host[s], uint64(size)) != 0 {
				a.free()
				a.unfit = true
				return false
			}
			if a.mapped && (drv.cuMemHostGetDevicePointer == nil || drv.cuMemHostGetDevicePointer(&a.dev[s], a.host[s], 0) != 0) {
				a.free()
				a.unfit = true
				return false
			}
		}
		a.size = size
	}
	return true
}

// releaseHost waits for the copies in flight (keeping their tokens) and
// frees the page-locked buffers.
func (a *aheadCopies) releaseHost() {
	for s := range 2 {
		if q := a.pend[s]; q != nil {
			q.resolve()
		}
		if a.host[s] != nil {
			drv.cuMemFreeHost(a.host[s])
			a.host[s], a.dev[s] = nil, 0
		}
	}
	a.size = 0
}

// free releases the buffers and events (with the context current).
func (a *aheadCopies) free() {
	a.releaseHost()
	for s := range 2 {
		if a.ev[s] != 0 {
			drv.cuEventDestroy(a.ev[s])
			a.ev[s] = 0
		}
	}
}

// resolve waits for the copy and keeps the tokens; the caller holds the
// backend.
func (p *pendingTokens) resolve() {
	if p.done {
		return
	}
	a := p.a
	p.done = true
	a.pend[p.slot] = nil
	if p.err = cuErr("cuEventSynchronize", drv.cuEventSynchronize(a.ev[p.slot])); p.err != nil {
		p.b.fail(p.err)
		return
	}
	p.toks = slices.Clone(unsafe.Slice((*int32)(a.host[p.slot]), p.n))
}

// Wait implements runtime.PendingTokens.
func (p *pendingTokens) Wait(dst []int32) error {
	if !p.done {
		p.b.enter()
		p.resolve()
		p.b.exit()
	}
	if p.err != nil {
		return p.err
	}
	if len(dst) != len(p.toks) {
		return fmt.Errorf("cuda: wait for %d tokens of a draw of %d", len(dst), len(p.toks))
	}
	copy(dst, p.toks)
	return nil
}

// dtohI32 sets dst from the little-endian int32s at device address src
// (waiting for the copy); the caller holds the backend.
func (b *Backend) dtohI32(dst []int32, src uint64) error {
	raw := make([]byte, 4*len(dst))
	if err := b.dtoh(raw, src); err != nil {
		return err
	}
	for i := range dst {
		dst[i] = int32(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return nil
}

var (
	_ runtime.TokenSampler = (*Backend)(nil)
	_ runtime.TokenFeeder  = (*Backend)(nil)
	_ runtime.GreedyDrawer = (*Backend)(nil)
)
