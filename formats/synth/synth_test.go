package synth

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
)

func fixture(t *testing.T, rel string) string {
	t.Helper()
	p := filepath.Join("..", "..", "..", "shared", "fixtures", rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("fixture %s missing: %v", p, err)
	}
	return p
}

// TestWrite writes a synthetic openchat-tiny shape twice with different
// thread counts: the same bytes, the declared shards, the config's layer
// override, and Linear weights with the documented spread.
func TestWrite(t *testing.T) {
	cfgDir := fixture(t, "models/openchat-tiny")
	dir := t.TempDir()
	write := func(name string, threads int) string {
		out := filepath.Join(dir, name)
		sum, err := Write(Options{ConfigDir: cfgDir, TokenizerDir: cfgDir, Out: out, Layers: 2, Seed: 7, Threads: threads})
		if err != nil {
			t.Fatal(err)
		}
		if sum.Shards != 3 || sum.Tensors != 1+2*9+1 {
			t.Errorf("%d shards, %d tensors; want 3 and 20", sum.Shards, sum.Tensors)
		}
		return out
	}
	a, b := write("a", 1), write("b", 3)
	for _, f := range []string{"model-00001-of-00003.safetensors", "model-00003-of-00003.safetensors", "config.json", "tokenizer.json"} {
		x, err1 := os.ReadFile(filepath.Join(a, f))
		y, err2 := os.ReadFile(filepath.Join(b, f))
		if err1 != nil || err2 != nil || string(x) != string(y) {
			t.Errorf("%s differs between thread counts (%v, %v)", f, err1, err2)
		}
	}
	cfg, err := hfconfig.Load(a)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NumHiddenLayers != 2 || cfg.Raw["torch_dtype"] != "bfloat16" {
		t.Errorf("config: %d layers, dtype %v; want 2, bfloat16", cfg.NumHiddenLayers, cfg.Raw["torch_dtype"])
	}
	set, err := safetensors.OpenDir(a)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	w, err := set.Tensor("model.layers.1.mlp.down_proj.weight")
	if err != nil {
		t.Fatal(err)
	}
	v, err := w.Float32()
	if err != nil {
		t.Fatal(err)
	}
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	std, want := math.Sqrt(ss/float64(len(v))), 0.9/math.Sqrt(float64(cfg.IntermediateSize))
	if math.Abs(std/want-1) > 0.02 {
		t.Errorf("down_proj std %.5f, want %.5f", std, want)
	}
	if _, err := Write(Options{ConfigDir: cfgDir, Out: a}); err == nil {
		t.Errorf("an existing output directory was overwritten")
	}
}
