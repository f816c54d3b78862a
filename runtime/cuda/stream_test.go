package cuda_test

import (
	"fmt"
	"testing"

	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime/cuda"
)

// BenchmarkStream measures how fast a grid streams weights from device
// memory by each way of loading them (kernels/stream.cu): every warp reads
// its own contiguous stretch of 512-byte chunks, as a product's warps do,
// at several blocks an SM, under evict_first. Each launch reads a region
// of the size of gate/up's weights (64 MiB) or a larger one, the launches
// cycling through 2 GiB so that nothing is read from L2; GB/s counts the
// bytes read (launch gaps included: a region of 64 MiB takes about 16 µs).
func BenchmarkStream(b *testing.B) {
	be := gputest.Backend(b)
	const total = 2 << 30
	buf, err := be.AllocBuffer(total)
	if err != nil {
		b.Fatal(err)
	}
	defer be.FreeBuffer(buf)
	sink, err := be.AllocBuffer(256)
	if err != nil {
		b.Fatal(err)
	}
	defer be.FreeBuffer(sink)
	ring := 8 * 512 // a warp's chunk slots, times 8 warps a block
	kinds := []struct {
		name   string
		shared int
		bps    []int
	}{
		{"stream_ldg4", 0, []int{4, 8}},
		{"stream_ldg8", 0, []int{2, 4, 8}},
		{"stream_ldg16", 0, []int{2, 4}},
		{"stream_cpa8", 8 * ring, []int{3, 4, 6}},
		{"stream_cpa16", 16 * ring, []int{2, 3}},
		{"stream_bulk_c1_s8", 8 * ring, []int{3, 4, 6}},
		{"stream_bulk_c2_s4", 8 * ring, []int{3, 4, 6}},
		{"stream_bulk_c4_s4", 16 * ring, []int{2, 3}},
		{"stream_bulk_c8_s4", 32 * ring, []int{1}},
	}
	for _, region := range []int64{64 << 20, 512 << 20} {
		for _, k := range kinds {
			for _, bps := range k.bps {
				if bps*(k.shared+1024) > be.SharedMemory()+1024 && bps > 1 {
					continue
				}
				b.Run(fmt.Sprintf("%dMiB/%s/bps%d", region>>20, k.name, bps), func(b *testing.B) {
					grid := cuda.Dim{X: bps * be.SMs()}
					launch := func() {
						for off := int64(0); off+region <= total; off += region {
							if err := be.Launch("stream.cu", k.name, grid, cuda.Dim{X: 256}, k.shared,
								buf.Ptr+uint64(off), region/512, sink.Ptr, int32(1)); err != nil {
								b.Fatal(err)
							}
						}
					}
					launch()
					if err := be.Sync(); err != nil {
						b.Fatal(err)
					}
					b.ResetTimer()
					for b.Loop() {
						launch()
						if err := be.Sync(); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(total/region*region)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
				})
			}
		}
	}
}
