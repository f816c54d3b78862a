package gpu_test

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/quantize/gpu"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// TestMoEQuantizeOnDevice quantizes a random Mixtral checkpoint (hidden
// 256, 8 experts of 512, 2 a token, 2 layers; fp32 weights) with the
// device driver on the GPU (fp32 activations, forward, routing and
// Hessians on the device, the device solver) and with the reference
// driver on the CPU: every module of layer 0, the attention's and each
// expert's, agrees in most dequantized weights, and every module of both
// layers in its loss. The per-row work of the
// experts' routing runs on the CUDA backend's generic ops here.
func TestMoEQuantizeOnDevice(t *testing.T) {
	b := gputest.Backend(t)
	dir := fixtures.Mixtral(t, map[string]any{"hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4,
		"num_key_value_heads": 2, "vocab_size": 1000}, synth.Options{DType: "f32", Seed: 12})
	set, cfg := fixtures.OpenCheckpoint(t, dir)
	r := rand.New(rand.NewPCG(3, 4))
	samples := make([]quantize.Sample, 16)
	for i := range samples {
		samples[i].IDs = make([]int, 128)
		for j := range samples[i].IDs {
			samples[i].IDs[j] = r.IntN(cfg.VocabSize)
		}
	}
	opts := quantize.Options{Bits: 4, GroupSize: 128, Sym: true, ActOrder: true, Damp: 0.1, Fp16Scales: true}
	run := func(driver quantize.DriverOptions, onDevice bool) map[string]*quantize.Result {
		got := map[string]*quantize.Result{}
		job := quantize.Job{Name: "moe", GPTQ: opts, TrueSequential: true, Layer: func(li int, mods []quantize.ModuleResult) error {
			for _, m := range mods {
				got[m.Name()] = m.Result
			}
			return nil
		}}
		var log bytes.Buffer
		driver.Log = &log
		start := time.Now()
		var bk runtime.Backend = cpu.New(0)
		if onDevice {
			bk = b
		}
		if err := quantize.Run(context.Background(), set, cfg, bk, samples, []quantize.Job{job}, driver); err != nil {
			t.Fatal(err)
		}
		t.Logf("device %v: %d modules in %.2fs", onDevice, len(got), time.Since(start).Seconds())
		if strings.Contains(log.String(), "no calibration token") {
			t.Logf("%s", log.String())
		}
		return got
	}
	dev := run(quantize.DriverOptions{Solver: gpu.New(b), Activations: "f32"}, true)
	ref := run(quantize.DriverOptions{}, false)
	if want := 2 * (4 + 3*8); len(dev) != want || len(ref) != want {
		t.Fatalf("%d modules on the device, %d on the CPU, want %d", len(dev), len(ref), want)
	}
	for name, rr := range ref {
		d := dev[name]
		if d.Packed == nil {
			t.Fatalf("%s: the device solver packed nothing", name)
		}
		// The device solver packs on the device: compare the dequantized
		// weights, equal where the codes (and their group's scale) are.
		w, err := d.Packed.Dequantize()
		if err != nil {
			t.Fatal(err)
		}
		same := 0
		for i, v := range rr.W {
			if math.Abs(float64(w[i]-v)) <= 1e-2*math.Abs(float64(v))+1e-6 {
				same++
			}
		}
		// Layer 0 sees the same inputs on both; layer 1 the outputs of
		// two quantized layers 0 (fp32 Gram sums against float64 ones
		// flip a few codes), which move some tokens to other experts and
		// the experts' small Hessians (about as many rows as columns) a
		// lot: there the losses alone must agree.
		if a := float64(same) / float64(len(rr.W)); a < 0.95 && strings.HasPrefix(name, "model.layers.0.") {
			t.Errorf("%s: %.4f of the dequantized weights agree with the CPU reference's", name, a)
		}
		if rel := (d.Loss - rr.Loss) / rr.Loss; math.Abs(rel) > 0.05 {
			t.Errorf("%s: loss %.6g, CPU reference %.6g", name, d.Loss, rr.Loss)
		}
	}
}
