package quantize_test

import (
	"testing"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// allocCounter is the CPU backend counting the bytes it allocates.
type allocCounter struct {
	*cpu.Backend
	bytes int64
}

func (a *allocCounter) Alloc(dt runtime.DType, shape ...int) (runtime.Tensor, error) {
	n := int64(4) // (the CPU backend holds every dtype's values in fp32)
	for _, d := range shape {
		n *= int64(d)
	}
	a.bytes += n
	return a.Backend.Alloc(dt, shape...)
}

// TestMoEPlanChunkScratch: the device plan's chunk scratch covers what a
// mixture-of-experts layer's pass over a chunk allocates (its scratch,
// the experts' stack of rows·TopK rows, the padded expert buffers), at 2
// and at 8 experts a token (the plan counted 6 rows of each width a row,
// TopK 2's, and 8's stack outgrew it).
func TestMoEPlanChunkScratch(t *testing.T) {
	for _, k := range []int{2, 8} {
		dir := fixtures.Qwen3MoE(t, map[string]any{"num_experts_per_tok": k}, synth.Options{DType: "f32", Seed: 3})
		set, cfg := fixtures.OpenCheckpoint(t, dir)
		const T = 32
		p, err := quantize.PlanDeviceShape(set, cfg, cpu.New(1), quantize.HostSolver{}, 1, T, false, []quantize.Job{{Name: "main", TrueSequential: true}}, T, "f32")
		if err != nil {
			t.Fatal(err)
		}
		var planned int64
		for _, part := range p.Parts {
			if part.What == "chunk scratch" {
				planned = part.Bytes
			}
		}
		b := &allocCounter{Backend: cpu.New(1)}
		l, err := model.LoadLayer(set, cfg, 0, b)
		if err != nil {
			t.Fatal(err)
		}
		x, err := b.Alloc(runtime.F32, T, cfg.HiddenSize)
		if err != nil {
			t.Fatal(err)
		}
		before := b.bytes
		if err := l.Run(x, T, model.FromInput, nil, "", func(string, runtime.Tensor) error { return nil }); err != nil {
			t.Fatal(err)
		}
		// (Beyond the rows: the stacks' zero rows, ein's, egate's and eout's.)
		zeros := int64(4 * (cfg.MoE.ExpertSize + 2*cfg.HiddenSize))
		if got := b.bytes - before; got > planned+zeros {
			t.Errorf("top %d: a pass over a chunk of %d rows allocates %d bytes, the plan's chunk scratch is %d", k, T, got, planned)
		}
		l.Free()
	}
}

// TestMoEPlanHost: the reference driver's host plan covers, for a
// mixture-of-experts model, a worker's forward scratch (what a layer's
// pass over a sample allocates) and the Gram products of a
// true-sequential group, one for each expert's input at once (gram.go:
// the transposed rows on the host and the backend, the product on both)
// beside the group's float64 Hessians.
func TestMoEPlanHost(t *testing.T) {
	dir := fixtures.Qwen3MoE(t, map[string]any{"num_experts_per_tok": 8}, synth.Options{DType: "f32", Seed: 3})
	set, cfg := fixtures.OpenCheckpoint(t, dir)
	const T = 32
	p := quantize.PlanHost(cfg, 1, T, 1, []quantize.Job{{Name: "main", TrueSequential: true}}, false, nil)
	part := func(what string) int64 {
		for _, q := range p.Parts {
			if q.What == what {
				return q.Bytes
			}
		}
		t.Fatalf("no %q in %v", what, p.Parts)
		return 0
	}
	b := &allocCounter{Backend: cpu.New(1)}
	l, err := model.LoadLayer(set, cfg, 0, b)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Free()
	x, err := b.Alloc(runtime.F32, T, cfg.HiddenSize)
	if err != nil {
		t.Fatal(err)
	}
	before := b.bytes
	if err := l.Run(x, T, model.FromInput, nil, "", func(string, runtime.Tensor) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got, plan := b.bytes-before, part("forward scratch"); got > plan {
		t.Errorf("a pass over a sample allocates %d bytes, the plan's forward scratch is %d", got, plan)
	}
	E, H, ES := int64(cfg.MoE.Experts), int64(cfg.HiddenSize), int64(cfg.MoE.ExpertSize)
	W := max(H, ES)
	group := E*W*W*8 + E*2*(W*T*4+W*W*4)
	if plan := part("Hessians"); plan < group {
		t.Errorf("an expert group's Hessians and Gram products take %d bytes, the plan's Hessians %d", group, plan)
	}
}
