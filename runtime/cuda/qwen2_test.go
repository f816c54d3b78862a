package cuda_test

import (
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/kvcache"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// qwen2Synth writes a random-weight Qwen2 checkpoint (q/k/v biases) of
// openchat-tiny's shape (hidden 256, 2 heads of 128 over 1 KV head,
// intermediate 896), 2 layers, vocab 2000: dtype "f32", "f16" or "bf16",
// or with q a GPTQ one (f16 besides).
func qwen2Synth(t *testing.T, dtype string, q *gptq.QuantizeConfig) string {
	t.Helper()
	return fixtures.Qwen2(t, map[string]any{"hidden_size": 256, "intermediate_size": 896, "num_attention_heads": 2,
		"num_key_value_heads": 1, "head_dim": 128, "vocab_size": 2000}, synth.Options{DType: dtype, Seed: 11, GPTQ: q})
}

// TestQwen2DecodeOnDevice decodes three sequences of Qwen2 checkpoints in
// fp16 through the paged decode step, with CUDA graphs and op by op: a
// 4-bit act-order GPTQ one, whose q/k/v are one fused quantized product
// that must not rotate in its epilogue (the bias comes first) and so takes
// the product, AddBias and RoPEStore; and a bf16 one. Replayed and op-by-op
// steps must agree exactly, and the last step match the fp32 CPU reference
// of each sequence alone.
func TestQwen2DecodeOnDevice(t *testing.T) {
	b := gputest.Backend(t)
	q := gptq.DefaultQuantizeConfig()
	q.Bits, q.GroupSize, q.DescAct = 4, 128, true
	for _, tc := range []struct {
		name string
		dir  string
		dt   runtime.DType
	}{
		{"gptq-4bit", qwen2Synth(t, "", &q), runtime.F16},
		{"bf16", qwen2Synth(t, "bf16", nil), runtime.BF16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			decodeMatchesCPU(t, b, tc.dir, tc.dt)
		})
	}
}

// halfDecodeMatchesCPU is decodeMatchesCPU in fp16 and in bf16 on the
// checkpoint synth writes in that dtype.
func halfDecodeMatchesCPU(t *testing.T, synth func(t *testing.T, dtype string) string) {
	b := gputest.Backend(t)
	for _, tc := range []struct {
		name string
		dt   runtime.DType
	}{
		{"f16", runtime.F16},
		{"bf16", runtime.BF16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			decodeMatchesCPU(t, b, synth(t, tc.name), tc.dt)
		})
	}
}

// decodeMatchesCPU decodes three sequences of the checkpoint in dir in dt
// through the paged decode step on b, with CUDA graphs and op by op: the
// replayed and op-by-op steps must agree exactly, and the last step match
// the fp32 CPU reference of each sequence alone (TestQwen2DecodeOnDevice,
// TestQwen3DecodeOnDevice, TestPhi3DecodeOnDevice, TestMoEDecodeOnDevice:
// its GPTQ Mixtral routed on the device and recorded, its floating-point
// Qwen3-MoE routed on the host and never recorded).
func decodeMatchesCPU(t *testing.T, b runtime.Backend, dir string, dt runtime.DType) {
	t.Helper()
	mc := load(t, dir, cpu.New(0))
	mg, err := model.LoadWith(dir, b, model.Options{DType: dt})
	if err != nil {
		t.Fatal(err)
	}
	defer mg.Close()
	ids := make([]int, 200)
	for i, id := range fixtures.WikiIDs(t)[:200] {
		ids[i] = id % mg.Vocab()
	}
	prompts := [][]int{ids[:37], ids[40:45], ids[50:150]}
	logits := map[bool][][][]float32{}
	for _, graphs := range []bool{true, false} {
		c, err := mg.NewPagedCache(64, 16, 256)
		if err != nil {
			t.Fatal(err)
		}
		c.NoGraphs = !graphs
		seqs := make([]kvcache.Seq, len(prompts))
		var steps []model.StepSeq
		for i, p := range prompts {
			if err := c.Pool.Reserve(&seqs[i], len(p)+8); err != nil {
				t.Fatal(err)
			}
			steps = append(steps, model.StepSeq{Seq: &seqs[i], Tokens: p, Logits: true})
		}
		var all [][][]float32
		for step := range 7 {
			out, err := mg.Step(c, steps)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, out)
			for i := range steps {
				steps[i].Tokens = []int{ids[160+step*3+i]}
			}
		}
		if graphs && c.GraphErr() != nil {
			t.Fatalf("decode steps were not recorded: %v", c.GraphErr())
		}
		logits[graphs] = all
		c.Free()
	}
	for step := range logits[true] {
		for i := range prompts {
			g, e := logits[true][step][i], logits[false][step][i]
			for j := range g {
				if g[j] != e[j] {
					t.Fatalf("step %d sequence %d: replayed logit %d = %v, op by op %v", step, i, j, g[j], e[j])
				}
			}
		}
	}
	for i, p := range prompts {
		seq := append([]int(nil), p...)
		for step := range 6 {
			seq = append(seq, ids[160+step*3+i])
		}
		want, err := mc.ForwardLast(seq, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		w64 := make([]float64, len(want))
		for j, v := range want {
			w64[j] = float64(v)
		}
		// bf16 activations round 8 bits where fp16 rounds 11.
		tol := 1e-4
		if dt == runtime.BF16 {
			tol = 2e-3
		}
		if nmse := backendtest.NMSE(logits[true][6][i], w64); !(nmse < tol) {
			t.Errorf("sequence %d: %v decode logits nmse %.3g against the fp32 CPU", i, dt, nmse)
		}
	}
}
