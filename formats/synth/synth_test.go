package synth

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
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

// sameFiles fails unless files are byte for byte the same in directories a
// and b (written with different thread counts).
func sameFiles(t *testing.T, a, b string, files ...string) {
	t.Helper()
	for _, f := range files {
		x, err1 := os.ReadFile(filepath.Join(a, f))
		y, err2 := os.ReadFile(filepath.Join(b, f))
		if err1 != nil || err2 != nil || string(x) != string(y) {
			t.Errorf("%s differs between thread counts (%v, %v)", f, err1, err2)
		}
	}
}

// TestWrite writes a synthetic openchat-tiny shape twice with different
// thread counts: the same bytes, the declared shards, the config's layer
// override, and Linear weights with the documented spread.
func TestWrite(t *testing.T) {
	cfgDir := fixture(t, "models/openchat-tiny")
	dir := t.TempDir()
	write := func(name string, threads int) string {
		out := filepath.Join(dir, name)
		sum, err := Write(context.Background(), Options{ConfigDir: cfgDir, TokenizerDir: cfgDir, Out: out, Layers: 2, Seed: 7, Threads: threads})
		if err != nil {
			t.Fatal(err)
		}
		if sum.Shards != 3 || sum.Tensors != 1+2*9+1 {
			t.Errorf("%d shards, %d tensors; want 3 and 20", sum.Shards, sum.Tensors)
		}
		return out
	}
	a, b := write("a", 1), write("b", 3)
	sameFiles(t, a, b, "model-00001-of-00003.safetensors", "model-00003-of-00003.safetensors", "config.json", "tokenizer.json")
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
	if _, err := Write(context.Background(), Options{ConfigDir: cfgDir, Out: a}); err == nil {
		t.Errorf("an existing output directory was overwritten")
	}
}

// TestWriteDTypeKey: a transformers 5.x config gives its dtype as
// "dtype", which 5.x and hfconfig read before torch_dtype: the synthetic
// checkpoint's config says its weights' dtype there, where a torch_dtype
// was added beside the config's own dtype.
func TestWriteDTypeKey(t *testing.T) {
	src := fixture(t, "models/openchat-tiny")
	cfgDir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	doc["dtype"] = doc["torch_dtype"] // float16; the synthetic weights are bf16
	delete(doc, "torch_dtype")
	if b, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	if _, err := Write(context.Background(), Options{ConfigDir: cfgDir, TokenizerDir: src, Out: out, Layers: 1, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	cfg, err := hfconfig.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.Raw["torch_dtype"]; cfg.DType != "bfloat16" || ok {
		t.Errorf("config: dtype %q (read), torch_dtype present %v; want bfloat16 and no torch_dtype", cfg.DType, ok)
	}
}

// TestWriteGPTQ writes openchat-tiny's shape as a 4-bit act-order GPTQ
// checkpoint: the GPTQ tensors of every Linear module with their shapes,
// zero points of 8, one processing order for q/k/v and one for gate/up
// (another for o_proj), scales whose dequantized weights have the float
// synth's spread, the configs a loader reads, the same bytes for any
// thread count.
func TestWriteGPTQ(t *testing.T) {
	cfgDir := fixture(t, "models/openchat-tiny")
	dir := t.TempDir()
	q := gptq.DefaultQuantizeConfig()
	q.Bits, q.GroupSize, q.DescAct = 4, 128, true
	write := func(name string, threads int) string {
		out := filepath.Join(dir, name)
		sum, err := Write(context.Background(), Options{ConfigDir: cfgDir, TokenizerDir: cfgDir, Out: out, Layers: 2, Seed: 3, Threads: threads, GPTQ: &q})
		if err != nil {
			t.Fatal(err)
		}
		// Embedding, 2 norms + 7 modules × 4 tensors a layer, final norm.
		if sum.Tensors != 1+2*(2+7*4)+1 {
			t.Errorf("%d tensors, want %d", sum.Tensors, 1+2*(2+7*4)+1)
		}
		return out
	}
	a, b := write("a", 1), write("b", 4)
	sameFiles(t, a, b, "model-00001-of-00003.safetensors", "model-00003-of-00003.safetensors", "config.json", "quantize_config.json")
	rq, _, err := gptq.ReadQuantizeConfig(a)
	if err != nil || rq.Bits != 4 || rq.GroupSize != 128 || !rq.DescAct || !rq.Sym {
		t.Fatalf("quantize config %+v, %v", rq, err)
	}
	cfg, err := hfconfig.Load(a)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Raw["torch_dtype"] != "float16" || cfg.Raw["quantization_config"] == nil {
		t.Errorf("config.json: torch_dtype %v, quantization_config %v", cfg.Raw["torch_dtype"], cfg.Raw["quantization_config"])
	}
	set, err := safetensors.OpenDir(a)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	i32s := func(name string) []int32 {
		t.Helper()
		x, err := set.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		v := make([]int32, len(x.Data)/4)
		for i := range v {
			v[i] = int32(binary.LittleEndian.Uint32(x.Data[4*i:]))
		}
		return v
	}
	p := "model.layers.1."
	gq, gk, gv, go_, gg, gu := i32s(p+"self_attn.q_proj.g_idx"), i32s(p+"self_attn.k_proj.g_idx"), i32s(p+"self_attn.v_proj.g_idx"),
		i32s(p+"self_attn.o_proj.g_idx"), i32s(p+"mlp.gate_proj.g_idx"), i32s(p+"mlp.up_proj.g_idx")
	if !slices.Equal(gq, gk) || !slices.Equal(gq, gv) || !slices.Equal(gg, gu) {
		t.Error("modules reading one input have different g_idx")
	}
	if slices.Equal(gq, go_) || slices.IsSorted(gq) {
		t.Error("g_idx of q_proj is in order or equals o_proj's: no act order")
	}
	K, N := cfg.HiddenSize, cfg.IntermediateSize
	l := &gptq.Linear{K: K, N: N, Bits: 4, GroupSize: 128, QWeight: i32s(p + "mlp.gate_proj.qweight"), QZeros: i32s(p + "mlp.gate_proj.qzeros"), GIdx: gg}
	sc, err := set.Tensor(p + "mlp.gate_proj.scales")
	if err != nil {
		t.Fatal(err)
	}
	l.Scales = make([]uint16, len(sc.Data)/2)
	for i := range l.Scales {
		l.Scales[i] = binary.LittleEndian.Uint16(sc.Data[2*i:])
	}
	if err := l.Validate(p + "mlp.gate_proj"); err != nil {
		t.Fatal(err)
	}
	z, err := l.ZeroPoints()
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range z {
		if v != 8 {
			t.Fatalf("zero point %d is %d, want 8", i, v)
		}
	}
	w, err := l.Dequantize()
	if err != nil {
		t.Fatal(err)
	}
	var ss float64
	for _, x := range w {
		ss += float64(x) * float64(x)
	}
	if std, want := math.Sqrt(ss/float64(len(w))), 0.9/math.Sqrt(float64(K)); math.Abs(std/want-1) > 0.05 {
		t.Errorf("gate_proj dequantized std %.5f, want %.5f", std, want)
	}
	if _, err := Write(context.Background(), Options{ConfigDir: cfgDir, Out: filepath.Join(dir, "c"), GPTQ: &q, DType: "bf16"}); err == nil {
		t.Error("a GPTQ synth in bf16 was not refused")
	}
}

// TestWriteCancelled: a context ended (an interrupt) stops Write between
// tensors with its error and leaves neither the output nor its temporary
// directory, where Write ran to the end or, killed by the signal, left a
// hidden .OUT.partial-N directory holding the shard being written.
func TestWriteCancelled(t *testing.T) {
	src := fixture(t, "models/openchat-tiny")
	dir := t.TempDir()
	out := filepath.Join(dir, "s")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Write(ctx, Options{ConfigDir: src, TokenizerDir: src, Out: out, Layers: 2}); !errors.Is(err, context.Canceled) {
		t.Errorf("Write with an ended context: %v, want context.Canceled", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left %v, want nothing", entries)
	}
}
