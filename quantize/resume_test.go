package quantize_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// runJobs runs jobs (only Name, GPTQ, TrueSequential, RTN, Start and
// Replay are read) and returns, per job, the results by module name.
func runJobs(t *testing.T, solver quantize.Solver, modelDir string, samples []quantize.Sample, jobs []quantize.Job) []map[string]*quantize.Result {
	t.Helper()
	set, cfg := fixtures.OpenCheckpoint(t, modelDir)
	out := make([]map[string]*quantize.Result, len(jobs))
	for i := range jobs {
		got := map[string]*quantize.Result{}
		out[i] = got
		jobs[i].Layer = func(li int, mods []quantize.ModuleResult) error {
			if li < jobs[i].Start {
				return fmt.Errorf("Layer called for replayed layer %d", li)
			}
			for _, m := range mods {
				got[m.Name()] = m.Result
			}
			return nil
		}
	}
	err := quantize.Run(context.Background(), set, cfg, cpu.New(0), samples, jobs, quantize.DriverOptions{Solver: solver, ChunkRows: 3 * len(samples[0].IDs)})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestResumeReplay: a job resumed at layer k, fed the quantized weights of
// layers < k from a full run, quantizes layers k.. bit for bit as the full
// run did (codes, scales, zeros, g_idx, loss), with both drivers, true
// sequential or not, round to nearest, and several jobs with the shared
// layer-0 Hessian.
func TestResumeReplay(t *testing.T) {
	modelDir := fixture(t, "models/openchat-tiny")
	samples := calibration(t, modelDir, 6, 96)
	main := quantize.Options{Bits: 4, GroupSize: 128, Sym: true, ActOrder: true, Damp: 0.1, Fp16Scales: true}
	other := quantize.Options{Bits: 8, GroupSize: 32, Sym: true, Damp: 0.1, Fp16Scales: true}
	for _, solver := range []quantize.Solver{nil, quantize.HostSolver{}} {
		name := "reference"
		if solver != nil {
			name = "device"
		}
		t.Run(name, func(t *testing.T) {
			jobs := func() []quantize.Job {
				return []quantize.Job{
					{Name: "main", GPTQ: main, TrueSequential: true},
					{Name: "noseq", GPTQ: other, TrueSequential: false},
					{Name: "rtn", GPTQ: main, RTN: true},
				}
			}
			full := runJobs(t, solver, modelDir, samples, jobs())
			for _, starts := range [][]int{{6, 2, 5}, {0, 4, 1}} {
				resumed := jobs()
				for i := range resumed {
					i := i
					resumed[i].Start = starts[i]
					resumed[i].Replay = func(li int) (map[string][]float32, error) {
						ws := map[string][]float32{}
						for _, m := range model.LinearModules {
							ws[m] = full[i][model.LayerPrefix(li)+"."+m].W
						}
						return ws, nil
					}
				}
				got := runJobs(t, solver, modelDir, samples, resumed)
				for i, j := range resumed {
					if want := (6 - j.Start) * len(model.LinearModules); len(got[i]) != want {
						t.Fatalf("starts %v: job %s gave %d modules, want %d", starts, j.Name, len(got[i]), want)
					}
					for mod, r := range got[i] {
						f := full[i][mod]
						if !slices.Equal(r.Q, f.Q) || !slices.Equal(r.Scales, f.Scales) || !slices.Equal(r.Zeros, f.Zeros) || !slices.Equal(r.GIdx, f.GIdx) || r.Loss != f.Loss {
							t.Errorf("starts %v: job %s %s differs from the uninterrupted run (loss %g vs %g)", starts, j.Name, mod, r.Loss, f.Loss)
						}
					}
				}
			}
		})
	}
}

// TestThreadsSameResult: the reference driver runs samples on as many
// workers as the backend has threads; codes, scales, zeros and losses are
// bit for bit the same with 1, 3 or 8 threads (and so are checkpoints).
func TestThreadsSameResult(t *testing.T) {
	modelDir := fixture(t, "models/openchat-tiny")
	samples := calibration(t, modelDir, 7, 96)
	opts := quantize.Options{Bits: 4, GroupSize: 64, Sym: true, ActOrder: true, Damp: 0.1, Fp16Scales: true}
	refs := map[bool]map[string]*quantize.Result{}
	for _, threads := range []int{1, 3, 8} {
		for _, trueSeq := range []bool{true, false} {
			got := collect(t, cpu.New(threads), nil, modelDir, samples, opts, trueSeq, 0)
			if threads == 1 {
				refs[trueSeq] = got
				continue
			}
			for name, r := range refs[trueSeq] {
				g := got[name]
				if !slices.Equal(g.Q, r.Q) || !slices.Equal(g.Scales, r.Scales) || !slices.Equal(g.Zeros, r.Zeros) || g.Loss != r.Loss {
					t.Errorf("%d threads, true sequential %v: %s differs from 1 thread (loss %g vs %g)", threads, trueSeq, name, g.Loss, r.Loss)
				}
			}
		}
	}
}
