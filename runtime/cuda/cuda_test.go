package cuda_test

import (
	"errors"
	"math"
	"math/rand/v2"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/kernels"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
	"github.com/gptqtool/gptqtool/runtime/cuda"
	"github.com/gptqtool/gptqtool/verify"
)

// TestConformance runs the backend conformance suite (fp32 against float64
// references, then f16 and bf16) on the device.
func TestConformance(t *testing.T) {
	b := gputest.Backend(t)
	backendtest.Run(t, func() runtime.Backend { return b })
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestKernelsCompile launches a kernel of every kernel source, compiled
// with NVRTC for the device (a compile error carries NVRTC's log); of
// qgemv.cu and decode.cu that compiles one part each (TestModuleParts
// compiles them all).
func TestKernelsCompile(t *testing.T) {
	b := gputest.Backend(t)
	names := map[string]string{
		"elementwise.cu": "add_bf16", "norm.cu": "rmsnorm_bf16", "rope.cu": "rope_seq_bf16",
		"attention.cu": "flash_bf16_d128", "gptq.cu": "gptq_block", "qgemv.cu": "qmma4_t1_f16",
		"decode.cu": "paged_attn_c4_g4_f16", "sample.cu": "sample_rows", "gemv.cu": "gemv_rows_m1_f16",
		"stream.cu": "stream_ldg8", "head.cu": "head_wg_t1_f16", "mlp.cu": "fmlp_relayout4",
		"qglu.cu": "qglu4_w16d8_f16", "moe.cu": "moe_combine_bf16",
	}
	for _, src := range kernels.Names() {
		k, ok := names[src]
		if !ok {
			t.Errorf("%s: no kernel named for this test", src)
			continue
		}
		if src == "head.cu" && !b.WarpgroupMMA() {
			continue // sm_90a only
		}
		if err := b.Launch(src, k, cuda.Dim{}, cuda.Dim{X: 1}, 0); err != nil {
			t.Errorf("%s: %v", src, err)
		}
	}
}

// TestRoPESeq checks the stacked-sequence RoPE against per-sequence calls.
func TestRoPESeq(t *testing.T) {
	b := gputest.Backend(t)
	const seqs, seq, cols, hd = 3, 17, 256, 128
	r := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, seqs*seq*cols)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	a, _ := b.Alloc(runtime.BF16, seqs*seq, cols)
	c, _ := b.Alloc(runtime.BF16, seqs*seq, cols)
	b.Upload(a, x)
	b.Upload(c, x)
	inv := llama31RoPE(t, hd)
	b.RoPESeq(a, hd, 5, seq, inv)
	for s := range seqs {
		b.RoPE(b.View(c, s*seq, seq), hd, 5, inv)
	}
	ga, gc := make([]float32, len(x)), make([]float32, len(x))
	b.Download(ga, a)
	b.Download(gc, c)
	for i := range ga {
		if ga[i] != gc[i] {
			t.Fatalf("element %d: stacked %v, per sequence %v", i, ga[i], gc[i])
		}
	}
}

// TestAllocatorAccounting checks that every byte is accounted for, that
// freed memory is reused, and that a memory limit turns into an error
// naming the request.
func TestAllocatorAccounting(t *testing.T) {
	b := gputest.Backend(t)
	before := b.MemStats()
	x, err := b.Alloc(runtime.F32, 1<<20) // 4 MiB
	if err != nil {
		t.Fatal(err)
	}
	mid := b.MemStats()
	if got := mid.InUse - before.InUse; got != 4<<20 {
		t.Errorf("in use grew by %d, want %d", got, 4<<20)
	}
	if mid.PeakInUse < mid.InUse {
		t.Errorf("peak %d below in use %d", mid.PeakInUse, mid.InUse)
	}
	b.Free(x)
	after := b.MemStats()
	if after.InUse != before.InUse {
		t.Errorf("in use %d after free, want %d", after.InUse, before.InUse)
	}
	y, err := b.Alloc(runtime.F32, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if b.MemStats().Reserved != after.Reserved {
		t.Errorf("a freed block of the same size was not reused")
	}
	b.Free(y)
	huge := int64(math.MaxInt32) * 1024
	if _, err := b.AllocBuffer(huge); err == nil || !cuda.OutOfMemory(err) || !strings.Contains(err.Error(), "TiB") && !strings.Contains(err.Error(), "GiB") {
		t.Errorf("alloc of %d bytes: %v, want an out-of-memory error naming the size", huge, err)
	}
}

// TestNotAvailableIsTyped checks that a backend for a device that does not
// exist is refused with ErrNotAvailable (what --device auto falls back on).
func TestNotAvailableIsTyped(t *testing.T) {
	gputest.Backend(t)
	_, err := cuda.New(cuda.Options{Device: 1000})
	if !errors.Is(err, cuda.ErrNotAvailable) {
		t.Errorf("device 1000: %v, want ErrNotAvailable", err)
	}
}

// TestCrossEntropy checks the device scores of given logits against the
// host reference verify.CrossEntropy on the same values.
func TestCrossEntropy(t *testing.T) {
	b := gputest.Backend(t)
	const rows, V = 37, 32002
	r := rand.New(rand.NewPCG(5, 5))
	x := make([]float32, rows*V)
	for i := range x {
		x[i] = float32(3 * r.NormFloat64())
	}
	targets := make([]int, rows)
	for i := range targets {
		targets[i] = r.IntN(V)
	}
	lt, _ := b.Alloc(runtime.F32, rows, V)
	defer b.Free(lt)
	b.Upload(lt, x)
	got, err := b.CrossEntropy(lt, targets)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range got {
		want := verify.CrossEntropy(x[i*V:(i+1)*V], targets[i])
		if d := (g - want) / want; d > 1e-12 || d < -1e-12 {
			t.Errorf("row %d: %.15g, host %.15g", i, g, want)
		}
	}
	if _, err := b.CrossEntropy(lt, targets[:3]); err == nil {
		t.Errorf("3 targets for %d rows accepted", rows)
	}
}

// TestDroppedBackend checks that a backend dropped without Close is
// collected without the panic of a Pinner collected while it pins (its
// launch arguments): verify perplexity on the H200 once died so after
// printing its result, the command having not closed its backend.
func TestDroppedBackend(t *testing.T) {
	gputest.Backend(t) // skips where no device loads
	for range 3 {
		b, err := cuda.New(cuda.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		goruntime.GC()
		time.Sleep(10 * time.Millisecond) // the cleanups and finalizers run in their own goroutine
	}
}
