package verify_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"testing"

	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/verify"
)

// relDiff is |got-want| / |want|, 0 when both are equal.
func relDiff(got, want float64) float64 {
	if got == want {
		return 0
	}
	return math.Abs(got-want) / math.Abs(want)
}

// scaled is Weights with one tensor multiplied by a factor (as F32).
type scaled struct {
	model.Weights
	name   string
	factor float32
}

func (s scaled) Tensor(name string) (safetensors.Tensor, error) {
	t, err := s.Weights.Tensor(name)
	if err != nil || name != s.name {
		return t, err
	}
	v, err := t.Float32()
	if err != nil {
		return t, err
	}
	data := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(x*s.factor))
	}
	t.DType, t.Data = safetensors.F32, data
	return t, nil
}

// TestBatchedWindows: evaluating windows several per forward call gives
// the Perplexity and KL of one window per call, with the same counts and
// one Progress call per window, in order. 7 windows leave a partial last
// batch; ctx 64, 65 and 66 shift the rows of each window against the CPU
// MatMul's 3-row blocks.
//
// On the portable backend the results are bit for bit. The AVX MatMul
// sums a row of a 3-row block in another order than a leftover row, and
// which rows are leftovers depends on the stacking (see
// model.TestForwardBatch): a window's last one or two rows change by
// rounding, which moves mean NLL by < 1e-9 relative but KL, a difference
// of two nearly equal sums, by up to ~2e-8 relative at ctx 65 (tolerance
// 1e-6).
func TestBatchedWindows(t *testing.T) {
	for _, tc := range []struct {
		name         string
		b            func() *cpu.Backend
		pplTol, kTol float64
	}{
		{"portable", func() *cpu.Backend { return cpu.NewPortable(0) }, 0, 0},
		{"avx", func() *cpu.Backend { return cpu.New(0) }, 1e-9, 1e-6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testBatchedWindows(t, tc.b, tc.pplTol, tc.kTol)
		})
	}
}

func testBatchedWindows(t *testing.T, backend func() *cpu.Backend, pplTol, kTol float64) {
	dir := fixture(t, "models/stories260K-hf-mistral")
	m, err := model.Load(dir, backend())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// The baseline of KL: the same model with the final norm's weight
	// scaled, so that the two distributions differ everywhere.
	set, cfg := fixtures.OpenCheckpoint(t, dir)
	base, err := model.FromWeights(scaled{set, "model.norm.weight", 0.7}, cfg, nil, backend())
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	ids := make([]int, 7*66)
	for i := range ids {
		ids[i] = (1 + 7919*i) % m.Config.VocabSize
	}
	ids[0] = 1
	const windows = 7
	for _, ctx := range []int{64, 65, 66} {
		one := verify.PerplexityOptions{Ctx: ctx, MaxWindows: windows}
		wantP, err := verify.Perplexity(context.Background(), m, ids, one)
		if err != nil {
			t.Fatal(err)
		}
		wantK, err := verify.KL(context.Background(), m, base, ids, one)
		if err != nil {
			t.Fatal(err)
		}
		if wantK.MeanKL < 1e-3 {
			t.Fatalf("ctx %d: mean KL %g from the scaled baseline, want a clear difference", ctx, wantK.MeanKL)
		}
		for _, batch := range []int{2, 4, 64} {
			var done []int
			opts := one
			opts.Batch = batch
			opts.Progress = func(d, total int) {
				if total != windows {
					t.Errorf("Progress total %d, want %d", total, windows)
				}
				done = append(done, d)
			}
			gotP, err := verify.Perplexity(context.Background(), m, ids, opts)
			if err != nil {
				t.Fatal(err)
			}
			if d := relDiff(gotP.MeanNLL, wantP.MeanNLL); d > pplTol || gotP.Windows != wantP.Windows || gotP.Scored != wantP.Scored {
				t.Errorf("ctx %d batch %d: perplexity %+v, one window per call %+v (rel %.2g)", ctx, batch, gotP, wantP, d)
			}
			gotK, err := verify.KL(context.Background(), m, base, ids, opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name      string
				got, want float64
			}{
				{"mean_kl", gotK.MeanKL, wantK.MeanKL},
				{"max_kl", gotK.MaxKL, wantK.MaxKL},
				{"top1_agreement", gotK.Top1Agree, wantK.Top1Agree},
				{"ppl", gotK.PPL, wantK.PPL},
				{"baseline_ppl", gotK.BaselinePPL, wantK.BaselinePPL},
			} {
				if d := relDiff(c.got, c.want); d > kTol {
					t.Errorf("ctx %d batch %d: kl %s = %v, one window per call %v (rel %.2g)", ctx, batch, c.name, c.got, c.want, d)
				}
			}
			if gotK.Tokens != wantK.Tokens || gotK.Windows != wantK.Windows {
				t.Errorf("ctx %d batch %d: kl counted %d tokens in %d windows, want %d in %d", ctx, batch, gotK.Tokens, gotK.Windows, wantK.Tokens, wantK.Windows)
			}
			want := []int{1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, 5, 6, 7}
			if len(done) != len(want) {
				t.Fatalf("ctx %d batch %d: Progress saw %v, want %v", ctx, batch, done, want)
			}
			for i := range want {
				if done[i] != want[i] {
					t.Fatalf("ctx %d batch %d: Progress saw %v, want %v", ctx, batch, done, want)
				}
			}
			t.Logf("ctx %d batch %d: perplexity rel %.2g, mean KL rel %.2g", ctx, batch,
				relDiff(gotP.MeanNLL, wantP.MeanNLL), relDiff(gotK.MeanKL, wantK.MeanKL))
		}
	}
}

func TestBatchNegative(t *testing.T) {
	m, err := model.Load(fixture(t, "models/stories260K-hf-mistral"), cpu.New(1))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	opts := verify.PerplexityOptions{Ctx: 4, Batch: -1}
	if _, err := verify.Perplexity(context.Background(), m, make([]int, 8), opts); err == nil {
		t.Errorf("Perplexity with batch -1: no error")
	}
	if _, err := verify.KL(context.Background(), m, m, make([]int, 8), opts); err == nil {
		t.Errorf("KL with batch -1: no error")
	}
}

// BenchmarkPerplexityBatch measures openchat-tiny perplexity at ctx 1024
// over 4 windows, one window per forward call against 2 and 4.
func BenchmarkPerplexityBatch(b *testing.B) {
	m, err := model.Load(fixtures.Path(b, "models/openchat-tiny"), cpu.New(0))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ids := fixtures.WikiIDs(b)[:4*1024] // 4 windows
	for _, batch := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("ctx1024x4/batch%d", batch), func(b *testing.B) {
			var tokens int
			for b.Loop() {
				r, err := verify.Perplexity(context.Background(), m, ids, verify.PerplexityOptions{Ctx: 1024, Batch: batch})
				if err != nil {
					b.Fatal(err)
				}
				tokens += r.Tokens
			}
			b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}
