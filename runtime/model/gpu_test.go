package model

import (
	"testing"

	"github.com/gptqtool/gptqtool/internal/gputest"
	"github.com/gptqtool/gptqtool/runtime"
	"github.com/gptqtool/gptqtool/runtime/backendtest"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// This file's tests run the model on the CUDA backend (skipped where none
// opens): scripts/gpu.sh runs them from model.test.

// stepMany is stepAll with 20 sequences (decode steps of 24 rows, the
// warpgroup-MMA kernels' range).
func stepMany(t *testing.T, m *Model, n int) [][][]float32 {
	t.Helper()
	prompts := make([][]int, 20)
	for i := range prompts {
		prompts[i] = []int{1, 300 + 11*i, 2000 + 37*i}
	}
	all, _ := stepPrompts(t, m, prompts, n)
	return all
}

// TestDecodeNormDeferOnDevice decodes an act-order GPTQ checkpoint of
// openchat-tiny (fp16 activations, 20 sequences) on the device with its
// norms taken apart (runtime.NormDeferrer: 2L-1 of a step's 2L+1 norm
// kernels gone) and with the norm kernels: every step's logits agree
// within fp16 rounding, and both match the fp32 CPU emulation of the same
// checkpoint.
func TestDecodeNormDeferOnDevice(t *testing.T) {
	b := gputest.Backend(t)
	if !b.WarpgroupMMA() {
		t.Skip("no warpgroup MMA on this device: norms are never taken apart")
	}
	open := func(be runtime.Backend, dt runtime.DType) *Model {
		qw, cfg, qcfg, _ := actOrderGPTQ(t, "models/openchat-tiny")
		m, err := bind(qw, cfg, qcfg, be, Options{DType: dt})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	defer b.SetNormDefer(b.NormDeferFrom())
	b.SetNormDefer(17)
	if !b.NormDeferred(24) {
		t.Skip("the kernels are not compiled for deferred norms: run with GPTQTOOL_KERNEL_DEFINES=QN_WG=1 or QN_ALL=1")
	}
	md := open(b, runtime.F16)
	defer md.Close()
	for i, lw := range md.layers {
		if lw.deferred.ffn == nil || (i > 0) != (lw.deferred.attn != nil) {
			t.Fatalf("layer %d: deferred norms %+v, want the post-attention one, and the input one past layer 0", i, lw.deferred)
		}
	}
	got := stepMany(t, md, 4)
	b.SetNormDefer(0)
	want := stepMany(t, md, 4)
	mc := open(&quantCPU{Backend: cpu.New(0), t: t, widths: map[runtime.Tensor][]int{}}, runtime.BF16)
	defer mc.Close()
	ref := stepMany(t, mc, 4)
	for step := range want {
		for i := range want[step] {
			w64 := make([]float64, len(ref[step][i]))
			for j, v := range ref[step][i] {
				w64[j] = float64(v)
			}
			nd, np := backendtest.NMSE(got[step][i], w64), backendtest.NMSE(want[step][i], w64)
			// The norm kernels' fp16 path sets the scale of what rounding
			// moves; taken apart, the normed rows are never rounded.
			if !(nd < 1e-4) || !(nd < 4*np+1e-7) {
				t.Errorf("step %d sequence %d: logits nmse against the fp32 CPU %.3g taken apart, %.3g with the norm kernels", step, i, nd, np)
			}
		}
	}
}
