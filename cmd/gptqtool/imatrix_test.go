package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
)

// TestImatrixCommand: imatrix writes llama.cpp's GGUF imatrix for every
// Linear of openchat-tiny (6 layers × 7), over the samples' tokens, and
// convert --gguf q4_k_m --imatrix uses it (the tied token_embd, the output
// weight, has no entry and is named); bad uses are usage errors naming
// the flag, and an imatrix that is a model file is refused.
func TestImatrixCommand(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	data := fixturePath(t, "datasets/instruct/alpaca_en_demo.json")
	dir := t.TempDir()
	im := filepath.Join(dir, "oc.imatrix.gguf")
	stdout, _, err := run(t, "imatrix", "--model", model, "--dataset", data, "--nsamples", "4", "--seq-len", "64", "--device", "cpu", "--out", im)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "42 weights, 4 samples, 256 tokens") {
		t.Errorf("imatrix summary: %s", stdout)
	}
	m, err := gguf.ReadImatrix(im)
	if err != nil {
		t.Fatal(err)
	}
	q := m.Importance("blk.5.ffn_down.weight")
	if len(m.Entries) != 42 || len(q) != 896 || m.Chunks != 4 || m.ChunkSize != 64 || len(m.Datasets) != 1 || m.Datasets[0] != "alpaca_en_demo.json" {
		t.Errorf("imatrix: %d entries, ffn_down %d values, chunks %d × %d, datasets %v", len(m.Entries), len(q), m.Chunks, m.ChunkSize, m.Datasets)
	}
	out := filepath.Join(dir, "oc.gguf")
	_, stderr, err := run(t, "convert", "--in", model, "--out", out, "--gguf", "q4_k_m", "--imatrix", im)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "no entry for token_embd.weight") {
		t.Errorf("convert with the imatrix does not name the weight it has no entry for:\n%s", stderr)
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{"quantize.imatrix.file": "oc.imatrix.gguf", "quantize.imatrix.entries_count": uint32(42),
		"quantize.imatrix.chunks_count": uint32(4), "quantize.imatrix.dataset": "alpaca_en_demo.json"} {
		if got, _ := f.Get(key); got != want {
			t.Errorf("%s = %v (%T), want %v", key, got, got, want)
		}
	}
	f.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"imatrix", "--model", model, "--dataset", data, "--out", filepath.Join(dir, "x.dat")}, "ending in .gguf"},
		{[]string{"imatrix", "--model", model, "--dataset", data, "--out", im}, "exists"},
		{[]string{"convert", "--in", model, "--out", filepath.Join(dir, "st"), "--imatrix", im}, "add --gguf"},
	} {
		_, _, err := run(t, tc.args...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want a usage error saying %q", tc.args, err, tc.want)
		}
	}
	if _, _, err := run(t, "convert", "--in", model, "--out", filepath.Join(dir, "y.gguf"), "--gguf", "q4_k", "--imatrix", out); err == nil || !strings.Contains(err.Error(), "general.type") {
		t.Errorf("a model file as --imatrix: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "y.gguf")); err == nil {
		t.Error("refused, yet y.gguf was written")
	}
}
