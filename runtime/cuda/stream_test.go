package cuda_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime/cuda"
)

// total is the device memory the stream benchmarks cycle through: far
// more than L2 holds.
const total = 2 << 30

// streamBuffers returns the backend, total bytes to stream from and 256
// zeroed bytes (a sink, a barrier's counters), freed as b ends.
func streamBuffers(b *testing.B) (*cuda.Backend, *cuda.Buffer, *cuda.Buffer) {
	be := gputest.Backend(b)
	buf, err := be.AllocBuffer(total)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.FreeBuffer(buf) })
	scratch, err := be.AllocBuffer(256)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.FreeBuffer(scratch) })
	return be, buf, scratch
}

// decodeLayer returns the bytes of a 7B decode layer's four products at 4
// bits (q/k/v, o_proj, gate/up, down), their sum, and how many such layers
// the stream benchmarks' total holds.
func decodeLayer() (products [4]int64, layer, layers int64) {
	products = [4]int64{6144 * 4096 / 2, 4096 * 4096 / 2, 28672 * 4096 / 2, 4096 * 14336 / 2}
	for _, p := range products {
		layer += p
	}
	return products, layer, total / layer
}

// median returns v's median (the upper of the two middle values of an
// even count; NaN for none), sorting v.
func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

// timeRuns times run (launches) to completion: once untimed (the
// kernels' compile and first touch), then b's loop.
func timeRuns(b *testing.B, be *cuda.Backend, run func()) {
	sync := func() {
		if err := be.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	run()
	sync()
	b.ResetTimer()
	for b.Loop() {
		run()
		sync()
	}
}

// BenchmarkStream measures how fast SMs stream weights from device memory
// by each way of loading them, and with the one-tile product's work on
// every chunk (kernels/stream.cu; stream_wg: that work on warpgroup MMA,
// sm_90a; stream_mmr: with its ring in registers, at 16 and 24 warps;
// stream_i8: with int8 activations, the codes split into bytes for int8
// mma or dp4a):
// every warp reads its own contiguous
// stretch of 512-byte chunks, as a product's warps do, under evict_first.
// One block an SM (its shared memory padded past half an SM's) of 24 or 32
// warps, on every SM or on 16 only (what one SM can stream when device
// memory is not the limit). Each launch reads a region of the size of
// gate/up's weights (64 MiB, 16 on 16 SMs) or larger, the launches cycling
// through 2 GiB so that nothing is read from L2; GB/s counts the bytes read
// (launch gaps included), GB/s/SM the same over the SMs used.
func BenchmarkStream(b *testing.B) {
	be, buf, scratch := streamBuffers(b)
	sink := scratch.Ptr
	const chunk = 512
	// Shared memory a warp (the rings) and a block (stream_mma's x).
	kinds := []struct {
		name        string
		warp, block int
	}{
		{"stream_ldg8", 0, 0},
		{"stream_ldg16", 0, 0},
		{"stream_cpa8", 8 * chunk, 0},
		{"stream_cpa16", 16 * chunk, 0},
		{"stream_bulk_c2_s4", 8 * chunk, 0},
		{"stream_bulk_c4_s4", 16 * chunk, 0},
		{"stream_mma0", 8 * chunk, 8 * 1032 * 2},
		{"stream_mma1", 8 * chunk, 8 * 1032 * 2},
		{"stream_mma2", 8 * chunk, 8 * 1032 * 2},
		{"stream_mma3", 8 * chunk, 8 * 1032 * 2},
		{"stream_mma4", 8 * chunk, 8 * 1032 * 2},
		{"stream_mma5", 8 * chunk, 8 * 1032 * 2},
		{"stream_mma6", 8 * chunk, 8 * 1032 * 2},
		{"stream_wg7", 8 * chunk, 17 * 1024},
		{"stream_wg8", 8 * chunk, 17 * 1024},
		{"stream_mmr0_d4", 0, 8 * 1032 * 2},
		{"stream_mmr0_d8", 0, 8 * 1032 * 2},
		{"stream_mmr2_d8", 0, 8 * 1032 * 2},
		{"stream_i8_0", 8 * chunk, 8 * 1040},
		{"stream_i8_2", 8 * chunk, 8 * 1040},
		{"stream_i8_7", 8 * chunk, 8 * 1040},
		{"stream_i8_8", 8 * chunk, 8 * 1040},
	}
	pad := be.SharedMemory()/2 + 4096 // one block an SM
	for _, sms := range []int{be.SMs(), 16} {
		region := int64(64 << 20)
		if sms < be.SMs() {
			region = 16 << 20
		}
		for _, k := range kinds {
			ws := []int{24, 32}
			if strings.HasPrefix(k.name, "stream_mmr") {
				ws = []int{16, 24} // (launch bounds of 768 threads)
			}
			for _, warps := range ws {
				shared := max(pad, warps*k.warp+k.block)
				if shared > be.SharedMemory() {
					continue
				}
				b.Run(fmt.Sprintf("sms%d/%s/warps%d", sms, k.name, warps), func(b *testing.B) {
					launch := func() {
						for off := int64(0); off+region <= total; off += region {
							if err := be.Launch("stream.cu", k.name, cuda.Dim{X: sms}, cuda.Dim{X: 32 * warps}, shared,
								buf.Ptr+uint64(off), region/chunk, sink, int32(1)); err != nil {
								b.Fatal(err)
							}
						}
					}
					timeRuns(b, be, launch)
					gbs := float64(total/region*region) * float64(b.N) / b.Elapsed().Seconds() / 1e9
					b.ReportMetric(gbs, "GB/s")
					b.ReportMetric(gbs/float64(sms), "GB/s/SM")
				})
			}
		}
	}
}

// BenchmarkGridPhases measures what a persistent decode kernel would pay
// at its phase boundaries (kernels/stream.cu): a barrier of the whole grid
// (one block an SM of 32 warps, or two of 16), alone; and a layer's four
// products' weights (the 7B shape at 4 bits: q/k/v 12.6 MB, o_proj 8.4,
// gate/up 58.7, down 29.4) streamed as four launches of stream_cpa8 in a
// row, as one launch of four phases with a grid barrier between them, and
// as one launch of the whole. The layers cycle through 2 GiB, so nothing
// is read from L2; µs/layer is a layer's time, launches and gaps
// included. The same with the rings running on across the barriers
// (stream_layer: the next phase's first chunks in flight through them), and
// with 11 µs of waiting after the first barrier, as attention takes; and
// the same with the copy engine's copies (stream_layer_bulk: bulk4 two
// chunks a stage, four stages a warp in flight, 128 KiB an SM; bulk6 six
// stages, 192 KiB), whose copies in flight the SM's load slots do not
// limit. And the rings carried across boundaries where each block waits
// only for the blocks it would read (stream_flow: flow1 every block at
// each boundary, through flags instead of the barrier; flow the slices of
// a decode layer, 8 after q/k/v (a KV group's heads), 1 after o_proj (the
// norm needs the whole row), 7 after gate/up (down's K-slices); flow87
// the same with the norm taken apart), what a dataflow decode kernel would
// pay at its boundaries. And each phase's chunks taken from a counter by
// the warps, in batches of 16 or 32 (stream_dyn: dyn16 and dyn32 the four
// phases with barriers, dynwhole the layer as one phase; the counters are
// zeroed once a run, one memset for all its layers), against phases and
// whole: whether the boundaries' cost is the blocks' imbalance (the nh
// cases copy without the evict_first hint the others give). And
// launches/LOOP and whole/LOOP: the four launches and the one with a
// product's one-row loop on every chunk (mma0 main's fp16 mma; i8_0, i8_7,
// i8_8 int8 activations on mma, dp4a, dp4a with two int8 parts), whose
// headroom over an SM's share of memory differs; launches/w16.LOOP at 16
// warps, two blocks an SM, and launches/pdl_LOOP the same launched with
// PDL as the products are (stream_pdl_*), a launch's blocks beside the
// last one's.
func BenchmarkGridPhases(b *testing.B) {
	dynKernel := func(how string) string { // the nh cases copy without the L2 hint
		if strings.HasSuffix(how, "nh") {
			return "stream_dyn_nh"
		}
		return "stream_dyn"
	}
	be, buf, scratch := streamBuffers(b)
	sink, bar := scratch.Ptr, scratch.Ptr+64 // bar: count, generation (zeroed)
	flags, err := be.AllocBuffer(int64(3 * 4 * be.SMs()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.FreeBuffer(flags) })
	if err := be.Memset(flags.Ptr, int64(3*4*be.SMs())); err != nil {
		b.Fatal(err)
	}
	// grid_barriers_tree's counters: the generation, the top count and up
	// to 33 more, a 128-byte line each (zeroed).
	tree, err := be.AllocBuffer(35 * 128)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.FreeBuffer(tree) })
	if err := be.Memset(tree.Ptr, 35*128); err != nil {
		b.Fatal(err)
	}
	gen := uint32(0) // stream_flow's launches so far (its flags' generation)
	pad := be.SharedMemory()/2 + 4096
	// Barriers of the grid, 1,000 in a row: the flat one (grid_barriers,
	// k 0) and the tree of k counters (grid_barriers_tree), one or two
	// blocks an SM (pad: the block's shared memory past half an SM's).
	for _, c := range []struct {
		blocksPerSM, warps, k int
		pad                   bool
	}{{1, 32, 0, true}, {2, 16, 0, false}, {1, 16, 0, false},
		{2, 16, 1, false}, {2, 16, 4, false}, {2, 16, 8, false}, {2, 16, 16, false}, {2, 16, 33, false}, {1, 16, 8, false}, {1, 16, 12, false}} {
		name := fmt.Sprintf("barrier/blocks%dx%d", c.blocksPerSM, c.warps)
		if c.k > 0 {
			name += fmt.Sprintf("/tree%d", c.k)
		}
		b.Run(name, func(b *testing.B) {
			const rounds = 1000
			grid, block, shared := cuda.Dim{X: c.blocksPerSM * be.SMs()}, cuda.Dim{X: 32 * c.warps}, 0
			if c.pad {
				shared = pad
			}
			timeRuns(b, be, func() {
				var err error
				if c.k == 0 {
					err = be.Launch("stream.cu", "grid_barriers", grid, block, shared, bar, int32(rounds))
				} else {
					err = be.Launch("stream.cu", "grid_barriers_tree", grid, block, shared, tree.Ptr, int32(rounds), int32(c.k))
				}
				if err != nil {
					b.Fatal(err)
				}
			})
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)/rounds*1e6, "µs/barrier")
		})
	}
	const chunk = 512
	products, layer, layers := decodeLayer()
	// stream_dyn's counters: four a layer of a run.
	ctrs, err := be.AllocBuffer(layers * 16)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.FreeBuffer(ctrs) })
	// One block an SM: 32 warps with rings of 8 chunks, or (carry16) 24
	// with rings of 16. idle: µs of waiting after the first phase's
	// barrier, as attention takes between q/k/v and o_proj.
	grid := cuda.Dim{X: be.SMs()}
	for _, c := range []struct {
		how   string
		idle  int
		warps int
	}{
		{"launches", 0, 32}, {"phases", 0, 32}, {"whole", 0, 32}, {"carry8", 0, 32}, {"carry16", 0, 24},
		{"bulk4", 0, 32}, {"bulk6", 0, 32},
		{"phases", 11, 32}, {"carry8", 11, 32}, {"carry16", 11, 24}, {"bulk4", 11, 32}, {"bulk6", 11, 32},
		{"flow1", 0, 32}, {"flow", 0, 32}, {"flow87", 0, 32},
		{"dyn16", 0, 32}, {"dyn32", 0, 32}, {"dynwhole", 0, 32}, {"dyn16nh", 0, 32}, {"dynwholenh", 0, 32},
		{"launches/mma0", 0, 32}, {"whole/mma0", 0, 32}, {"launches/i8_0", 0, 32}, {"whole/i8_0", 0, 32},
		{"launches/i8_7", 0, 32}, {"whole/i8_7", 0, 32},
		{"launches/w16.cpa8", 0, 16}, {"launches/pdl_cpa8", 0, 16}, {"launches/w16.mma0", 0, 16},
		{"launches/pdl_mma0", 0, 16}, {"launches/w16.i8_7", 0, 16}, {"launches/pdl_i8_7", 0, 16},
		{"launches/w16.i8_8", 0, 16}, {"launches/pdl_i8_8", 0, 16}, {"launches/w16.i8_0", 0, 16}, {"launches/pdl_i8_0", 0, 16},
	} {
		// how/loop: the four launches or the whole layer with a product's
		// one-row loop on every chunk (stream_mma0: today's fp16 loop;
		// stream_i8_0 / _7: int8 activations on mma / dp4a), whose headroom
		// over an SM's share of memory differs, against stream_cpa8's.
		// w16. and pdl_ (launches only): 16 warps, two blocks an SM
		// (no padding), so that a launch's block starts on an SM beside the
		// one before's; pdl_ as the products are launched (stream_pdl_*:
		// the ring's first chunks, then the wait for the kernel before).
		how, loop, _ := strings.Cut(c.how, "/")
		loop, w16 := strings.CutPrefix(loop, "w16.")
		kernel, xs := "stream_cpa8", 0
		if loop != "" {
			kernel, xs = "stream_"+loop, 8*1040
			if strings.HasSuffix(loop, "mma0") {
				xs = 8 * 1032 * 2
			}
			if strings.HasSuffix(loop, "cpa8") {
				xs = 0
			}
		}
		two := w16 || strings.HasPrefix(loop, "pdl_")
		depth := map[string]int{"carry16": 16, "bulk4": 8, "bulk6": 12}[c.how] // chunks a warp in flight
		if depth == 0 {
			depth = 8
		}
		block, ring := cuda.Dim{X: 32 * c.warps}, max(pad, c.warps*depth*chunk+xs)
		if two {
			ring = c.warps*depth*chunk + xs
		}
		idle := int64(c.idle) * 1000
		b.Run(fmt.Sprintf("layer/%s/idle%dus", c.how, c.idle), func(b *testing.B) {
			run := func() {
				if strings.HasPrefix(c.how, "dyn") {
					if err := be.Memset(ctrs.Ptr, layers*16); err != nil {
						b.Fatal(err)
					}
				}
				for l := range layers {
					base := buf.Ptr + uint64(l*layer)
					var err error
					switch how {
					case "launches":
						off := uint64(0)
						for _, p := range products {
							if err = be.Launch("stream.cu", kernel, grid, block, ring, base+off, p/chunk, sink, int32(1)); err != nil {
								break
							}
							off += uint64(p)
						}
					case "phases", "carry8", "carry16", "bulk4", "bulk6":
						name := map[string]string{"phases": "stream_phases", "carry8": "stream_layer8", "carry16": "stream_layer16",
							"bulk4": "stream_layer_bulk_c2_s4", "bulk6": "stream_layer_bulk_c2_s6"}[c.how]
						err = be.Launch("stream.cu", name, grid, block, ring, base, products[0]/chunk, products[1]/chunk,
							products[2]/chunk, products[3]/chunk, idle, sink, bar)
					case "dyn16", "dyn32", "dyn16nh":
						err = be.Launch("stream.cu", dynKernel(c.how), grid, block, ring, base, products[0]/chunk, products[1]/chunk,
							products[2]/chunk, products[3]/chunk, sink, bar, ctrs.Ptr+uint64(l*16), int32(max(16, map[string]int{"dyn32": 32}[c.how])))
					case "dynwhole", "dynwholenh":
						err = be.Launch("stream.cu", dynKernel(c.how), grid, block, ring, base, layer/chunk, int64(0), int64(0), int64(0),
							sink, bar, ctrs.Ptr+uint64(l*16), int32(16))
					case "flow1", "flow", "flow87":
						sl := map[string][3]int32{"flow1": {1, 1, 1}, "flow": {8, 1, 7}, "flow87": {8, 7, 7}}[c.how]
						gen++
						err = be.Launch("stream.cu", "stream_flow8", grid, block, ring, base, products[0]/chunk, products[1]/chunk,
							products[2]/chunk, products[3]/chunk, idle, sink, flags.Ptr, gen, sl[0], sl[1], sl[2])
					default:
						err = be.Launch("stream.cu", kernel, grid, block, ring, base, layer/chunk, sink, int32(1))
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			timeRuns(b, be, run)
			per := b.Elapsed().Seconds() / float64(b.N) / float64(layers)
			b.ReportMetric(per*1e6, "µs/layer")
			b.ReportMetric(float64(layer)/per/1e12, "TB/s")
		})
	}
}

// BenchmarkGridPhaseStamps: where the time of a layer's phase boundaries
// goes (stream_phases_ts: stream_phases with each block's and warp's times
// read from the global timer). A layer's four products' weights at 4 bits
// streamed by one block an SM of 32 warps with rings of 8 chunks, as four
// phases with a barrier of the grid between them, or as one stream
// (whole). After the timed runs, the last run's launches (one a layer) are
// read back and summarized, medians over the launches, in µs: for each
// phase, the blocks' ends after the phase's start (the first block's exit
// from the barrier before it, or the first block's start), first / median
// / last; the barrier's release after the last block's end (the median
// block's exit); the warps' spread within a block (last warp's end less
// the first's, the median block); the ramp, from a block's start or exit
// to its first warp's first chunk (the median block); and the phase's
// bytes.
func BenchmarkGridPhaseStamps(b *testing.B) {
	be, buf, scratch := streamBuffers(b)
	sink, bar := scratch.Ptr, scratch.Ptr+64
	pad := be.SharedMemory()/2 + 4096
	const chunk = 512
	products, layer, layers := decodeLayer()
	nb := be.SMs()
	per := int64(nb * (8 + 8*32)) // stamps a launch
	ts, err := be.AllocBuffer(layers * per * 8)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.FreeBuffer(ts) })
	grid, block, ring := cuda.Dim{X: nb}, cuda.Dim{X: 1024}, max(pad, 32*8*chunk)
	for _, how := range []string{"phases", "whole"} {
		b.Run(how, func(b *testing.B) {
			n := products
			if how == "whole" {
				n = [4]int64{layer, 0, 0, 0}
			}
			run := func() {
				for l := range layers {
					if err := be.Launch("stream.cu", "stream_phases_ts", grid, block, ring, buf.Ptr+uint64(l*layer),
						n[0]/chunk, n[1]/chunk, n[2]/chunk, n[3]/chunk, sink, bar, ts.Ptr+uint64(l*per*8)); err != nil {
						b.Fatal(err)
					}
				}
			}
			timeRuns(b, be, run)
			perLayer := b.Elapsed().Seconds() / float64(b.N) / float64(layers)
			b.ReportMetric(perLayer*1e6, "µs/layer")
			raw := make([]byte, layers*per*8)
			if err := be.CopyToHost(raw, ts.Ptr); err != nil {
				b.Fatal(err)
			}
			phases := 4
			if how == "whole" {
				phases = 1
			}
			// stats[ph][k]: per launch, k = first / median / last block end,
			// barrier exit after the last end, warps' spread, ramp.
			stats := make([][6][]float64, phases)
			for l := range layers {
				st := func(i int) float64 {
					o := (int64(l)*per + int64(i)) * 8
					return float64(binary.LittleEndian.Uint64(raw[o:])) / 1e3
				}
				start := math.Inf(1)
				for k := range nb {
					start = math.Min(start, st(k))
				}
				for ph := range phases {
					begin := start
					if ph > 0 {
						begin = math.Inf(1)
						for k := range nb {
							begin = math.Min(begin, st((4+ph)*nb+k))
						}
					}
					ends := make([]float64, nb)
					spreads := make([]float64, nb)
					ramps := make([]float64, nb)
					for k := range nb {
						own := st(k) // this block's start, or its exit from the barrier before
						if ph > 0 {
							own = st((4+ph)*nb + k)
						}
						arrive := math.Inf(1)
						for w := range 32 {
							arrive = math.Min(arrive, st(8*nb+4*nb*32+(ph*nb+k)*32+w))
						}
						ramps[k] = arrive - own
						ends[k] = st((1+ph)*nb+k) - begin
						lo, hi := math.Inf(1), math.Inf(-1)
						for w := range 32 {
							t := st(8*nb + (ph*nb+k)*32 + w)
							lo, hi = math.Min(lo, t), math.Max(hi, t)
						}
						spreads[k] = hi - lo
					}
					sort.Float64s(ends)
					s := &stats[ph]
					s[0] = append(s[0], ends[0])
					s[1] = append(s[1], ends[nb/2])
					s[2] = append(s[2], ends[nb-1])
					if ph+1 < phases {
						exits := make([]float64, nb)
						for k := range nb {
							exits[k] = st((5+ph)*nb+k) - begin - ends[nb-1]
						}
						s[3] = append(s[3], median(exits))
					}
					s[4] = append(s[4], median(spreads))
					s[5] = append(s[5], median(ramps))
				}
			}
			for ph := range phases {
				s := stats[ph]
				b.Logf("%s phase %d (%.1f MB): ramp %.2f µs, block ends %.2f / %.2f / %.2f µs, barrier's release %.2f µs after the last, warps' spread %.2f µs",
					how, ph, float64(n[ph])/1e6, median(s[5]), median(s[0]), median(s[1]), median(s[2]), median(s[3]), median(s[4]))
			}
		})
	}
}

// BenchmarkPieces: gate/up's weights at 8 bits (117 MB, 28672 × 4096)
// streamed as the wide GLU kernels stream them, 256 blocks of 14 warps
// (two an SM) with rings of 4 chunks a warp (or 8: the -d8 cases), the
// launches cycling through the stream benchmarks' total (stream_pieces):
// each block's share fixed (static) or taken as pieces of C chunks a warp
// from a counter (dynC, a fifteenth warp taking them), or the tail left
// to a second launch that the block scheduler places (tailT-NB, below).
// After the timed runs, the last run's blocks' ends are summarized (µs
// after the launch's median block, medians over the launches: first and
// last block); with
// GPTQTOOL_PIECES_OUT=FILE each launch's (SM, end) pairs go to FILE as
// JSON, to group by GPC.
func BenchmarkPieces(b *testing.B) {
	be, buf, scratch := streamBuffers(b)
	sink := scratch.Ptr
	const chunk, blocks, warps = 512, 256, 14
	const bytes = int64(28672 * 4096)
	launches := total / bytes
	ctrs, err := be.AllocBuffer(launches * 4)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.FreeBuffer(ctrs) })
	ends, err := be.AllocBuffer(launches * blocks * 12)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.FreeBuffer(ends) })
	dump := map[string][][][2]float64{}
	for _, c := range []struct {
		how             string
		dyn, per, depth int
	}{{"static", 0, 4, 4}, {"dyn4", 1, 4, 4}, {"dyn8", 1, 8, 4}, {"dyn16", 1, 16, 4}, {"static-c8", 0, 8, 4}, {"static-d8", 0, 8, 8}, {"dyn8-d8", 1, 8, 8}} {
		b.Run(c.how, func(b *testing.B) {
			block := cuda.Dim{X: 32 * (warps + c.dyn)}
			ring := warps * c.depth * chunk
			kernel := map[int]string{4: "stream_pieces", 8: "stream_pieces_d8"}[c.depth]
			run := func() {
				if err := be.Memset(ctrs.Ptr, launches*4); err != nil {
					b.Fatal(err)
				}
				for l := range launches {
					if err := be.Launch("stream.cu", kernel, cuda.Dim{X: blocks}, block, ring, buf.Ptr+uint64(l*bytes), bytes/chunk,
						int32(c.per), int32(c.dyn), ctrs.Ptr+uint64(l*4), sink, ends.Ptr+uint64(l*blocks*8),
						ends.Ptr+uint64(launches*blocks*8+l*blocks*4)); err != nil {
						b.Fatal(err)
					}
				}
			}
			timeRuns(b, be, run)
			per := b.Elapsed().Seconds() / float64(b.N) / float64(launches)
			b.ReportMetric(per*1e6, "µs/launch")
			b.ReportMetric(float64(bytes)/per/1e12, "TB/s")
			raw := make([]byte, launches*blocks*12)
			if err := be.CopyToHost(raw, ends.Ptr); err != nil {
				b.Fatal(err)
			}
			var first, last []float64
			for l := range launches {
				e := make([]float64, blocks)
				pairs := make([][2]float64, blocks)
				for k := range blocks {
					e[k] = float64(binary.LittleEndian.Uint64(raw[(l*blocks+int64(k))*8:])) / 1e3
					sm := binary.LittleEndian.Uint32(raw[launches*blocks*8+(l*blocks+int64(k))*4:])
					pairs[k] = [2]float64{float64(sm), e[k]}
				}
				dump[c.how] = append(dump[c.how], pairs)
				sort.Float64s(e)
				first = append(first, e[0]-e[blocks/2])
				last = append(last, e[blocks-1]-e[blocks/2])
			}
			b.Logf("%s: blocks' ends after the median block's: first %.2f µs, last %.2f µs (medians over %d launches)",
				c.how, median(first), median(last), launches)
		})
	}
	// The tail as a second launch (stream_tail): the first streams the
	// first (10-tenths)/10 of the bytes as static does and lets the second
	// start at once; the second's nb blocks (14 warps, rings of 4) stream
	// the rest, with shared memory for one an SM beside one of the first
	// launch's blocks but not two, so that the block scheduler gives the
	// tail to the SMs the first launch leaves first. µs/launch is the pair.
	tailEnds, err := be.AllocBuffer(1024 * 12)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.FreeBuffer(tailEnds) })
	for _, c := range []struct{ tenths, nb int }{{1, 264}, {1, 528}, {2, 264}, {2, 528}, {3, 528}} {
		b.Run(fmt.Sprintf("tail%d-%d", c.tenths, c.nb), func(b *testing.B) {
			block := cuda.Dim{X: 32 * warps}
			ring := warps * 4 * chunk
			const tailShared = 185 << 10 // (two of the first launch's blocks take about 61 KB of an SM's 228)
			nA := bytes / chunk * int64(10-c.tenths) / 10
			nB := bytes/chunk - nA
			run := func() {
				for l := range launches {
					src := buf.Ptr + uint64(l*bytes)
					if err := be.Launch("stream.cu", "stream_pieces", cuda.Dim{X: blocks}, block, ring, src, nA,
						int32(4), int32(2), ctrs.Ptr, sink, ends.Ptr, ends.Ptr+uint64(launches*blocks*8)); err != nil {
						b.Fatal(err)
					}
					if err := be.Launch("stream.cu", "stream_tail", cuda.Dim{X: c.nb}, block, tailShared, src+uint64(nA*chunk), nB,
						int32(4), sink, tailEnds.Ptr, tailEnds.Ptr+1024*8); err != nil {
						b.Fatal(err)
					}
				}
			}
			timeRuns(b, be, run)
			per := b.Elapsed().Seconds() / float64(b.N) / float64(launches)
			b.ReportMetric(per*1e6, "µs/launch")
			b.ReportMetric(float64(bytes)/per/1e12, "TB/s")
		})
	}
	if f := os.Getenv("GPTQTOOL_PIECES_OUT"); f != "" {
		js, err := json.Marshal(dump)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(f, js, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}
