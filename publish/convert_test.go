package publish_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/publish"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
)

func convert(t *testing.T, o publish.ConvertOptions) *publish.ConvertSummary {
	t.Helper()
	sum, err := publish.Convert(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// tensors reads every tensor of a checkpoint directory (a copy).
func tensors(t *testing.T, dir string) map[string]safetensors.Tensor {
	t.Helper()
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	out := map[string]safetensors.Tensor{}
	for _, n := range set.Names() {
		tt, err := set.Tensor(n)
		if err != nil {
			t.Fatal(err)
		}
		tt.Data = bytes.Clone(tt.Data)
		out[n] = tt
	}
	return out
}

// rtnCheckpoint quantizes openchat-tiny by round to nearest (instant).
func rtnCheckpoint(t *testing.T, bits, group int, sym bool) string {
	t.Helper()
	format := gptq.FormatV1
	if !sym {
		format = gptq.FormatV2 // v1 cannot store a zero point of 0
	}
	dir := filepath.Join(t.TempDir(), "q")
	_, err := publish.Quantize(context.Background(), publish.RunOptions{
		ModelDir: fixture(t, "models/openchat-tiny"), Out: dir, RTN: true, Sym: sym, TrueSequential: true, Backend: cpu.New(0),
		Format:   format,
		Branches: []publish.Branch{{Name: "q", Bits: bits, GroupSize: group, Damp: 0.01}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestConvertDTypes: fp16 → fp32 → fp16 and bf16 → fp32 → bf16 are byte
// exact; fp32 → bf16 rounds to nearest even; sharding and merging keep
// every tensor, and the sharded checkpoint runs with the same logits.
func TestConvertDTypes(t *testing.T) {
	src := fixture(t, "models/openchat-tiny")
	tmp := t.TempDir()
	orig := tensors(t, src)
	f32 := filepath.Join(tmp, "f32")
	convert(t, publish.ConvertOptions{In: src, Out: f32, DType: "f32"})
	back := filepath.Join(tmp, "f16")
	convert(t, publish.ConvertOptions{In: f32, Out: back, DType: "f16"})
	for n, want := range orig {
		if got := tensors(t, back)[n]; !bytes.Equal(got.Data, want.Data) || got.DType != want.DType {
			t.Fatalf("fp16 → fp32 → fp16: %s differs", n)
		}
	}
	bf := filepath.Join(tmp, "bf16")
	convert(t, publish.ConvertOptions{In: f32, Out: bf, DType: "bf16", MaxShardBytes: 5 << 20})
	shards, _ := filepath.Glob(filepath.Join(bf, "model-*-of-*.safetensors"))
	if len(shards) < 3 {
		t.Fatalf("5 MB shards: %v", shards)
	}
	f32s := tensors(t, f32)
	bfs := tensors(t, bf)
	for n, want := range f32s {
		got := bfs[n]
		f, _ := want.Float32()
		for i, v := range f {
			if h := binary.LittleEndian.Uint16(got.Data[2*i:]); h != half.F32ToBF16(v) {
				t.Fatalf("%s[%d]: bf16 %#04x, want round-to-nearest-even %#04x of %g", n, i, h, half.F32ToBF16(v), v)
			}
		}
	}
	f32b := filepath.Join(tmp, "f32b")
	convert(t, publish.ConvertOptions{In: bf, Out: f32b, DType: "f32"})
	bfb := filepath.Join(tmp, "bf16b")
	sum := convert(t, publish.ConvertOptions{In: f32b, Out: bfb, DType: "bf16"}) // merged: one file
	if len(sum.Files) != 1 {
		t.Errorf("merged into %v", sum.Files)
	}
	for n, want := range bfs {
		if got := tensors(t, bfb)[n]; !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("bf16 → fp32 → bf16: %s differs", n)
		}
	}
	// The sharded bf16 checkpoint and the merged one give the same logits.
	logits := func(dir string) []float32 {
		m, err := model.Load(dir, cpu.New(0))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		out, err := m.ForwardLast([]int{1, 415, 2936, 9060}, m.NewCache(4), nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if !slices.Equal(logits(bf), logits(bfb)) {
		t.Error("sharded and merged checkpoints give different logits")
	}
}

// TestConvertFP16Overflow: values beyond fp16's range are counted by
// tensor and refused, or clamped with AllowOverflow; nothing is left
// behind by the refusal.
func TestConvertFP16Overflow(t *testing.T) {
	src := fixture(t, "models/stories260K-hf-mistral") // fp32
	dir := filepath.Join(t.TempDir(), "big")
	copyTree(t, src, dir)
	rewrite(t, dir, "model.norm.weight", func(d []byte) {
		binary.LittleEndian.PutUint32(d[0:], math.Float32bits(1e5))
		binary.LittleEndian.PutUint32(d[4:], math.Float32bits(-7e4))
		binary.LittleEndian.PutUint32(d[8:], math.Float32bits(65519)) // rounds to 65504
	})
	out := filepath.Join(t.TempDir(), "f16")
	_, err := publish.Convert(context.Background(), publish.ConvertOptions{In: dir, Out: out, DType: "f16"})
	if err == nil || !strings.Contains(err.Error(), "model.norm.weight (2)") {
		t.Fatalf("err = %v, want a refusal naming model.norm.weight and 2 values", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
		t.Fatalf("refusal left %v", entries)
	}
	sum := convert(t, publish.ConvertOptions{In: dir, Out: out, DType: "f16", AllowOverflow: true})
	if sum.Overflows["model.norm.weight"] != 2 {
		t.Errorf("overflows %v", sum.Overflows)
	}
	n := tensors(t, out)["model.norm.weight"]
	for i, want := range []float32{65504, -65504, 65504} {
		if got := half.F16ToF32(binary.LittleEndian.Uint16(n.Data[2*i:])); got != want {
			t.Errorf("value %d: %g, want %g", i, got, want)
		}
	}
}

// TestConvertGGUFF16Overflow: a GGUF file's F16 weights are refused where
// they hold values beyond fp16's range, as an f16 safetensors output is
// (they were written as Inf), naming the tensor, the flags that help, and
// leaving nothing behind; AllowOverflow clamps and counts them.
func TestConvertGGUFF16Overflow(t *testing.T) {
	src := fixture(t, "models/stories260K-hf-mistral") // fp32
	dir := filepath.Join(t.TempDir(), "big")
	copyTree(t, src, dir)
	const name = "model.layers.0.mlp.down_proj.weight"
	rewrite(t, dir, name, func(d []byte) {
		binary.LittleEndian.PutUint32(d[0:], math.Float32bits(1e5))
	})
	out := filepath.Join(t.TempDir(), "f16.gguf")
	_, err := publish.Convert(context.Background(), publish.ConvertOptions{In: dir, Out: out, GGUF: "f16"})
	if err == nil || !strings.Contains(err.Error(), name+" (1): use --gguf bf16 or f32, or --allow-overflow") {
		t.Fatalf("err = %v, want a refusal naming %s (1) and --allow-overflow", err, name)
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
		t.Fatalf("refusal left %v", entries)
	}
	sum := convert(t, publish.ConvertOptions{In: dir, Out: out, GGUF: "f16", AllowOverflow: true})
	if len(sum.Overflows) != 1 || sum.Overflows[name] != 1 {
		t.Errorf("overflows %v, want %s: 1", sum.Overflows, name)
	}
}

// TestConvertGGUFPath: a GGUF file is written only under a name ending in
// .gguf (in any case), which --force asks of a file it replaces: a GGUF
// file written as "stories" could never be replaced. Nothing is written
// by the refusal.
func TestConvertGGUFPath(t *testing.T) {
	src := fixture(t, "models/stories260K-hf-mistral")
	dir := t.TempDir()
	out := filepath.Join(dir, "stories")
	_, err := publish.Convert(context.Background(), publish.ConvertOptions{In: src, Out: out, GGUF: "f16"})
	if err == nil || !strings.Contains(err.Error(), "--out "+out+", want a path ending in .gguf") {
		t.Fatalf("err = %v, want a refusal of --out %s", err, out)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("refusal left %v", entries)
	}
	upper := filepath.Join(dir, "STORIES.GGUF")
	convert(t, publish.ConvertOptions{In: src, Out: upper, GGUF: "f16"})
	convert(t, publish.ConvertOptions{In: src, Out: upper, GGUF: "q8_0", Force: true})
	// A directory named like a GGUF file is refused without suggesting a
	// --force that would refuse it too.
	dirOut := filepath.Join(dir, "dir.gguf")
	os.Mkdir(dirOut, 0o755)
	for _, force := range []bool{false, true} {
		_, err := publish.Convert(context.Background(), publish.ConvertOptions{In: src, Out: dirOut, GGUF: "q8_0", Force: force})
		if err == nil || strings.Contains(err.Error(), "use --force") || !strings.Contains(err.Error(), "not a file") {
			t.Errorf("--out %s, a directory, force %v: err = %v, want one saying it is not a file, without suggesting --force", dirOut, force, err)
		}
	}
	// Folders that do not exist yet are made, as for a directory output.
	nested := filepath.Join(dir, "a", "b", "stories.gguf")
	convert(t, publish.ConvertOptions{In: src, Out: nested, GGUF: "q8_0"})
	if _, err := os.Stat(nested); err != nil {
		t.Fatal(err)
	}
	// A file where a folder should be is named.
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o644)
	bad := filepath.Join(dir, "file", "stories.gguf")
	_, err = publish.Convert(context.Background(), publish.ConvertOptions{In: src, Out: bad, GGUF: "q8_0"})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "file")) || strings.Contains(err.Error(), ".partial") {
		t.Errorf("--out %s under a file: err = %v, want one naming %s (not a temporary file)", bad, err, filepath.Join(dir, "file"))
	}
}

// TestConvertGGUFStalePartial checks that a GGUF conversion removes the
// hidden partial file a killed run left beside its --out (".NAME.N.partial",
// found by a QA pass after SIGKILL: 309 MB no later run mentioned), saying
// so, and leaves alone files that only look alike: another output's partial
// file, and a file of NAME's without the suffix.
func TestConvertGGUFStalePartial(t *testing.T) {
	src := fixture(t, "models/stories260K-hf-mistral")
	dir := t.TempDir()
	out := filepath.Join(dir, "m[1].gguf")
	stale := filepath.Join(dir, ".m[1].gguf.12345.partial")
	keep := []string{filepath.Join(dir, ".other.gguf.1.partial"), filepath.Join(dir, ".m[1].gguf.notes"), filepath.Join(dir, ".m[1].gguf.partial")}
	for _, p := range append([]string{stale}, keep...) {
		if err := os.WriteFile(p, []byte("left"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var log strings.Builder
	if _, err := publish.Convert(context.Background(), publish.ConvertOptions{In: src, Out: out, GGUF: "f32", Log: &log}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: still there (%v)", stale, err)
	}
	if !strings.Contains(log.String(), "removed "+stale+", the partial file of an interrupted run") {
		t.Errorf("log %q does not name the removed file", log.String())
	}
	for _, p := range keep {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: removed too (%v)", p, err)
		}
	}
}

// TestConvertGPTQFormat: v1 → v2 → v1 is byte-exact for every bit width
// (3 bits included), v2 holds the real zero points, and v2 → v1 refuses a
// zero point of 0 naming the tensor.
func TestConvertGPTQFormat(t *testing.T) {
	for _, bits := range []int{2, 3, 4, 8} {
		q := rtnCheckpoint(t, bits, 128, true)
		tmp := t.TempDir()
		v2 := filepath.Join(tmp, "v2")
		convert(t, publish.ConvertOptions{In: q, Out: v2, Format: gptq.FormatV2})
		qc, _, err := gptq.ReadQuantizeConfig(v2)
		if err != nil || qc.Format() != gptq.FormatV2 {
			t.Fatalf("%d bits: v2 config %+v, %v", bits, qc, err)
		}
		z := tensors(t, v2)["model.layers.0.self_attn.q_proj.qzeros"]
		words, _ := z.Int32()
		zs, err := gptq.UnpackQZeros(words, z.Shape[0], z.Shape[1]*32/bits, bits, gptq.FormatV2)
		if err != nil || zs[0] != uint8(1<<(bits-1)) {
			t.Fatalf("%d bits: v2 zero point %v, want %d (%v)", bits, zs[:1], 1<<(bits-1), err)
		}
		v1 := filepath.Join(tmp, "v1")
		convert(t, publish.ConvertOptions{In: v2, Out: v1, Format: gptq.FormatV1})
		for _, f := range []string{"model.safetensors", "config.json", "quantize_config.json", "tokenizer.json"} {
			a, _ := os.ReadFile(filepath.Join(q, f))
			b, _ := os.ReadFile(filepath.Join(v1, f))
			if !bytes.Equal(a, b) {
				t.Errorf("%d bits: v1 → v2 → v1: %s differs", bits, f)
			}
		}
	}
	asym := rtnCheckpoint(t, 4, 128, false) // gptq_v2
	// Give one group of one column a zero point of 0 (v2 stores it as is).
	rewrite(t, asym, "model.layers.1.mlp.up_proj.qzeros", func(d []byte) {
		binary.LittleEndian.PutUint32(d, binary.LittleEndian.Uint32(d)&^0xf)
	})
	_, err := publish.Convert(context.Background(), publish.ConvertOptions{In: asym, Out: filepath.Join(t.TempDir(), "v1"), Format: gptq.FormatV1})
	if err == nil || !strings.Contains(err.Error(), "model.layers.1.mlp.up_proj.qzeros") || !strings.Contains(err.Error(), "zero point 0") {
		t.Fatalf("v2 → v1 with zero points of 0: err = %v", err)
	}
}

// TestConvertDequantize: GPTQ → fp32 gives the runtime's logits bit for
// bit (the same dequantization); GPTQ → fp16 holds exactly the fp16
// rounding of those weights, and the config loses quantization_config.
func TestConvertDequantize(t *testing.T) {
	q := rtnCheckpoint(t, 4, 32, true)
	tmp := t.TempDir()
	f32 := filepath.Join(tmp, "f32")
	convert(t, publish.ConvertOptions{In: q, Out: f32, Dequantize: true, DType: "f32"})
	if _, _, err := gptq.ReadQuantizeConfig(f32); err == nil {
		t.Fatal("the dequantized checkpoint still has a quantization config")
	}
	if _, err := os.Stat(filepath.Join(f32, "quantize_config.json")); !os.IsNotExist(err) {
		t.Errorf("quantize_config.json copied: %v", err)
	}
	ids := []int{1, 415, 2936, 9060, 285}
	logits := func(dir string) []float32 {
		m, err := model.Load(dir, cpu.New(0))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		out, err := m.Forward(ids, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if !slices.Equal(logits(f32), logits(q)) {
		t.Error("the fp32 dequantized checkpoint's logits differ from the GPTQ checkpoint's")
	}
	f16 := filepath.Join(tmp, "f16")
	convert(t, publish.ConvertOptions{In: q, Out: f16, Dequantize: true})
	w32, w16 := tensors(t, f32), tensors(t, f16)
	for n, a := range w32 {
		b := w16[n]
		if a.DType != safetensors.F32 || b.DType != safetensors.F16 {
			t.Fatalf("%s: %s and %s", n, a.DType, b.DType)
		}
		f, _ := a.Float32()
		for i, v := range f {
			if h := binary.LittleEndian.Uint16(b.Data[2*i:]); h != half.F32ToF16(v) {
				t.Fatalf("%s[%d]: %#04x, want fp16(%g) = %#04x", n, i, h, v, half.F32ToF16(v))
			}
		}
	}
	if _, ok := w16["model.layers.0.mlp.down_proj.weight"]; !ok || len(w16) != 56 {
		t.Errorf("dequantized checkpoint holds %d tensors", len(w16))
	}
	// Refusals.
	for _, o := range []publish.ConvertOptions{
		{In: fixture(t, "models/openchat-tiny"), Out: filepath.Join(tmp, "x"), Dequantize: true},
		{In: q, Out: filepath.Join(tmp, "y"), DType: "bf16"},
		{In: q, Out: f16},
	} {
		if _, err := publish.Convert(context.Background(), o); err == nil {
			t.Errorf("%+v: accepted", o)
		}
	}
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	os.MkdirAll(dst, 0o755)
	entries, _ := os.ReadDir(src)
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644)
	}
}

// rewrite changes one tensor of dir/model.safetensors.
func rewrite(t *testing.T, dir, name string, fn func([]byte)) {
	t.Helper()
	fixtures.RewriteTensors(t, dir, func(tt *safetensors.Tensor) bool {
		if tt.Name == name {
			fn(tt.Data)
		}
		return true
	})
}

// TestConvertPyTorch: stories260K saved by a real torch (single file and
// two shards with an index) converts to safetensors holding the original
// tensors bit for bit, and the converted model reproduces the fixture's
// greedy continuation; a tied checkpoint keeps one copy of the shared
// storage, as transformers does.
func TestConvertPyTorch(t *testing.T) {
	orig := tensors(t, fixture(t, "models/stories260K-hf-mistral"))
	for _, dir := range []string{"testdata/stories-bin", "testdata/stories-sharded"} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "st")
			sum := convert(t, publish.ConvertOptions{In: dir, Out: out})
			if sum.Source != "pytorch" || sum.Tensors != len(orig) {
				t.Fatalf("summary %+v, want %d tensors from pytorch", sum, len(orig))
			}
			got := tensors(t, out)
			for n, want := range orig {
				if g := got[n]; g.DType != want.DType || !slices.Equal(g.Shape, want.Shape) || !bytes.Equal(g.Data, want.Data) {
					t.Errorf("%s differs from the original", n)
				}
			}
			set, err := safetensors.OpenDir(out)
			if err != nil {
				t.Fatal(err)
			}
			if set.Metadata()["format"] != "pt" {
				t.Errorf("metadata %v, want format pt", set.Metadata())
			}
			set.Close()
			m, err := model.Load(out, cpu.New(0))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			logits, err := m.ForwardLast([]int{1, 403, 407}, m.NewCache(3), nil)
			if err != nil || len(logits) != 512 {
				t.Fatalf("forward: %v", err)
			}
		})
	}
	out := filepath.Join(t.TempDir(), "tied")
	sum := convert(t, publish.ConvertOptions{In: "testdata/tied", Out: out})
	got := tensors(t, out)
	if _, ok := got["lm_head.weight"]; ok || len(sum.Dropped) != 1 {
		t.Errorf("tied lm_head.weight kept (dropped %v)", sum.Dropped)
	}
	if _, err := model.Load(out, cpu.New(0)); err != nil {
		t.Errorf("the tied checkpoint does not load: %v", err)
	}
}

// TestConvertRefusesBadPyTorch: a pickle naming os.system is refused and
// nothing runs; a truncated file names the file; nothing is left behind.
func TestConvertRefusesBadPyTorch(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(dir string)
		want string
	}{
		{"os.system", func(dir string) {
			b, _ := os.ReadFile("../formats/pytorch/testdata/malicious_os.bin")
			os.WriteFile(filepath.Join(dir, "pytorch_model.bin"), b, 0o644)
		}, "system"},
		{"truncated", func(dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "pytorch_model.bin"))
			os.WriteFile(filepath.Join(dir, "pytorch_model.bin"), b[:len(b)/2], 0o644)
		}, "pytorch_model.bin"},
		{"legacy", func(dir string) {
			b, _ := os.ReadFile("../formats/pytorch/testdata/legacy.bin")
			os.WriteFile(filepath.Join(dir, "pytorch_model.bin"), b, 0o644)
		}, "legacy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "in")
			copyTree(t, "testdata/stories-bin", dir)
			tc.mod(dir)
			cwd, _ := os.Getwd()
			work := t.TempDir()
			os.Chdir(work)
			defer os.Chdir(cwd)
			out := filepath.Join(t.TempDir(), "out")
			_, err := publish.Convert(context.Background(), publish.ConvertOptions{In: dir, Out: out})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
			if entries, _ := os.ReadDir(work); len(entries) != 0 {
				t.Errorf("something ran: %v appeared", entries)
			}
			if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
				t.Errorf("left behind: %v", entries)
			}
		})
	}
}

// TestConvertGPTQToGGUF: a GPTQ checkpoint converted to GGUF F32 holds
// exactly the weights the runtime dequantizes (q/k rows in llama.cpp's
// order, undone here); llama.cpp reading such files is checked in
// formats/gguf.
func TestConvertGPTQToGGUF(t *testing.T) {
	q := rtnCheckpoint(t, 4, 128, true)
	dq := filepath.Join(t.TempDir(), "f32")
	convert(t, publish.ConvertOptions{In: q, Out: dq, Dequantize: true, DType: "f32"})
	want := tensors(t, dq)
	path := filepath.Join(t.TempDir(), "q.gguf")
	sum := convert(t, publish.ConvertOptions{In: q, Out: path, GGUF: "f32"})
	if sum.Tensors != 56 {
		t.Fatalf("%d tensors", sum.Tensors)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, _ := hfconfig.Load(q)
	for _, c := range []struct {
		gguf, hf string
		heads    int
	}{
		{"blk.3.attn_q.weight", "model.layers.3.self_attn.q_proj.weight", cfg.NumAttentionHeads},
		{"blk.3.attn_k.weight", "model.layers.3.self_attn.k_proj.weight", cfg.NumKeyValueHeads},
		{"blk.3.attn_v.weight", "model.layers.3.self_attn.v_proj.weight", 0},
		{"blk.5.ffn_down.weight", "model.layers.5.mlp.down_proj.weight", 0},
	} {
		got, err := f.Float32(c.gguf)
		if err != nil {
			t.Fatal(err)
		}
		w := want[c.hf]
		ref, _ := w.Float32()
		if c.heads > 0 {
			un := make([]float32, len(got))
			if err := gguf.UnpermuteQK(un, got, w.Shape[0], w.Shape[1], c.heads); err != nil {
				t.Fatal(err)
			}
			got = un
		}
		if !slices.Equal(got, ref) {
			t.Errorf("%s differs from the runtime's dequantization of %s", c.gguf, c.hf)
		}
	}
	if _, err := publish.Convert(context.Background(), publish.ConvertOptions{In: q, Out: path, GGUF: "q4_k"}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("existing GGUF without --force: %v", err)
	}
}

// TestConvertRefusesWhatConfigDoesNotDescribe: a checkpoint whose
// config.json gives more layers than its weights hold (tensors missing) or
// fewer (tensors it has no place for) is refused before anything is
// written, into safetensors and into GGUF, naming the tensors; so is a
// .bin index that names a shard which is not there, naming the index and
// the shard rather than saying there are no weights.
func TestConvertRefusesWhatConfigDoesNotDescribe(t *testing.T) {
	layers := func(n int) func(dir string) {
		return func(dir string) {
			path := filepath.Join(dir, "config.json")
			raw, _ := os.ReadFile(path)
			raw = bytes.Replace(raw, []byte(`"num_hidden_layers": 5`), []byte(`"num_hidden_layers": `+strconv.Itoa(n)), 1)
			os.WriteFile(path, raw, 0o644)
		}
	}
	for _, tc := range []struct {
		name, src string
		mod       func(dir string)
		want      []string
	}{
		{"more layers", "stories-bin", layers(7), []string{"missing", "model.layers.5.input_layernorm.weight", "hold 5 layers", "num_hidden_layers 7"}},
		{"fewer layers", "stories-bin", layers(3), []string{"does not explain", "model.layers.3.", "hold 5 layers", "num_hidden_layers 3"}},
		{"shard missing", "stories-sharded", func(dir string) {
			os.Remove(filepath.Join(dir, "pytorch_model-00002-of-00002.bin"))
		}, []string{"pytorch_model.bin.index.json", `shard "pytorch_model-00002-of-00002.bin" is missing`}},
	} {
		for _, gg := range []string{"", "f32"} {
			t.Run(tc.name+"/gguf="+gg, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "in")
				copyTree(t, filepath.Join("testdata", tc.src), dir)
				tc.mod(dir)
				out := filepath.Join(t.TempDir(), "out")
				if gg != "" {
					out += ".gguf"
				}
				_, err := publish.Convert(context.Background(), publish.ConvertOptions{In: dir, Out: out, GGUF: gg})
				for _, w := range tc.want {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("err = %v, want one naming %q", err, w)
					}
				}
				if err != nil && strings.Contains(err.Error(), "no weights") {
					t.Errorf("err = %v: the weights are there", err)
				}
				if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
					t.Errorf("left behind: %v", entries)
				}
			})
		}
	}
}

// TestConvertRoPEScaling: a checkpoint whose config.json has a RoPE
// scaling the runtime does not implement (dynamic) is still converted to
// another dtype (its config kept, rope_scaling and all), and refused for
// GGUF, whose metadata would have to carry the scaling; a linear one
// converts to GGUF with llama.rope.scaling.type and .factor (formats/gguf
// tests the file).
func TestConvertRoPEScaling(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "in")
	copyTree(t, "testdata/stories-bin", dir)
	path := filepath.Join(dir, "config.json")
	raw, _ := os.ReadFile(path)
	raw = bytes.Replace(raw, []byte(`"rope_theta": 10000,`), []byte(`"rope_theta": 10000, "rope_scaling": {"rope_type": "dynamic", "factor": 4},`), 1)
	os.WriteFile(path, raw, 0o644)
	out := filepath.Join(t.TempDir(), "f16")
	convert(t, publish.ConvertOptions{In: dir, Out: out, DType: "f16"})
	got, err := os.ReadFile(filepath.Join(out, "config.json"))
	if err != nil || !bytes.Contains(got, []byte(`"rope_scaling"`)) || !bytes.Contains(got, []byte(`"dynamic"`)) {
		t.Errorf("the converted config lost its rope_scaling (%v):\n%s", err, got)
	}
	if _, err := publish.Convert(context.Background(), publish.ConvertOptions{In: dir, Out: filepath.Join(t.TempDir(), "x.gguf"), GGUF: "f32"}); err == nil || !strings.Contains(err.Error(), `rope type "dynamic"`) {
		t.Errorf("GGUF of a dynamic RoPE scaling: %v, want a refusal naming it", err)
	}
	raw = bytes.Replace(raw, []byte(`{"rope_type": "dynamic", "factor": 4}`), []byte(`{"type": "linear", "factor": 2}`), 1)
	os.WriteFile(path, raw, 0o644)
	gg := filepath.Join(t.TempDir(), "x.gguf")
	if _, err := publish.Convert(context.Background(), publish.ConvertOptions{In: dir, Out: gg, GGUF: "f32"}); err != nil {
		t.Fatalf("GGUF of a linear RoPE scaling: %v", err)
	}
	f, err := gguf.Open(gg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if typ, _ := f.Get("llama.rope.scaling.type"); typ != "linear" {
		t.Errorf("llama.rope.scaling.type %v, want linear", typ)
	}
	if factor, _ := f.Get("llama.rope.scaling.factor"); factor != float32(2) {
		t.Errorf("llama.rope.scaling.factor %v, want 2", factor)
	}
}

// TestConvertGGUFLinearBias: a config.json with attention_bias or
// mlp_bias true converts to GGUF where the bias tensors are absent or
// zeros (transformers builds zero biases, a no-op, as the runtime takes
// them), into the very file the config without the key gives; a bias that
// is not zeros, which llama.cpp's llama architecture would not apply, is
// refused naming the tensor and its value, and nothing is written.
func TestConvertGGUFLinearBias(t *testing.T) {
	src := fixture(t, "models/stories260K-hf-mistral")
	files := []string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"}
	// checkpoint copies src under root/stories (general.name is the
	// directory's name), with key set true in its config.json and extra
	// appended to its tensors.
	checkpoint := func(t *testing.T, key string, extra ...safetensors.Tensor) string {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "stories")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join(src, f))
			if err != nil {
				t.Fatal(err)
			}
			if f == "config.json" && key != "" {
				b = bytes.Replace(b, []byte(`"tie_word_embeddings"`), []byte(`"`+key+`": true, "tie_word_embeddings"`), 1)
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if len(extra) > 0 {
			fixtures.RewriteTensors(t, dir, nil, extra...)
		}
		return dir
	}
	bias := func(name string, n, at int, v float32) safetensors.Tensor {
		data := make([]byte, 4*n)
		if at >= 0 {
			binary.LittleEndian.PutUint32(data[4*at:], math.Float32bits(v))
		}
		return safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: name, DType: safetensors.F32, Shape: []int{n}}, Data: data}
	}
	ref := filepath.Join(t.TempDir(), "ref.gguf")
	convert(t, publish.ConvertOptions{In: checkpoint(t, ""), Out: ref, GGUF: "f16"})
	want, err := os.ReadFile(ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key string
		extra     []safetensors.Tensor
		err       string // a substring of the error; "": converts to want
	}{
		{"attention_bias absent", "attention_bias", nil, ""},
		{"mlp_bias absent", "mlp_bias", nil, ""},
		{"attention_bias zeros", "attention_bias", []safetensors.Tensor{
			bias("model.layers.0.self_attn.q_proj.bias", 64, -1, 0), bias("model.layers.4.self_attn.v_proj.bias", 32, -1, 0)}, ""},
		{"attention_bias", "attention_bias", []safetensors.Tensor{
			bias("model.layers.0.self_attn.q_proj.bias", 64, -1, 0), bias("model.layers.2.self_attn.k_proj.bias", 32, 3, -0.5)},
			`tensor "model.layers.2.self_attn.k_proj.bias": largest |value| 0.5 (element 3), want all zeros`},
		{"mlp_bias", "mlp_bias", []safetensors.Tensor{bias("model.layers.4.mlp.down_proj.bias", 64, 0, float32(math.NaN()))},
			`tensor "model.layers.4.mlp.down_proj.bias": largest |value| NaN (element 0), want all zeros`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := checkpoint(t, tc.key, tc.extra...)
			outDir := t.TempDir()
			out := filepath.Join(outDir, "m.gguf")
			_, err := publish.Convert(context.Background(), publish.ConvertOptions{In: in, Out: out, GGUF: "f16"})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				// A dry run reads the biases too, and refuses alike.
				_, derr := publish.Convert(context.Background(), publish.ConvertOptions{In: in, Out: out, GGUF: "f16", DryRun: true})
				if derr == nil || derr.Error() != err.Error() {
					t.Errorf("dry run: %v, want the conversion's %v", derr, err)
				}
				if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
					t.Errorf("refusal left %v", entries)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the GGUF of the config without %s", out, tc.key)
			}
		})
	}
}

// TestConvertRefusesShapesConfigDoesNotGive: a checkpoint whose tensors
// have other shapes than its configs give is refused before anything is
// written, naming the tensor and both shapes, as every loading command
// refuses it; found by a QA pass, where a 4-bit GPTQ checkpoint whose
// configs said 8 bits was "converted" to gptq_v2 with its zero points
// unpacked as 8-bit ones, and an fp checkpoint with a wrong
// intermediate_size was copied into another one no loader runs.
func TestConvertRefusesShapesConfigDoesNotGive(t *testing.T) {
	edit := func(t *testing.T, path, old, new string) {
		t.Helper()
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(raw, []byte(old)) {
			t.Fatalf("%s holds no %s", path, old)
		}
		if err := os.WriteFile(path, bytes.ReplaceAll(raw, []byte(old), []byte(new)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	q := rtnCheckpoint(t, 4, 128, true)
	for _, tc := range []struct {
		name string
		in   func(t *testing.T) string
		o    publish.ConvertOptions
		want string
	}{
		{"gptq bits", func(t *testing.T) string {
			dir := filepath.Join(t.TempDir(), "in")
			copyTree(t, q, dir)
			edit(t, filepath.Join(dir, "config.json"), `"bits": 4`, `"bits": 8`)
			edit(t, filepath.Join(dir, "quantize_config.json"), `"bits": 4`, `"bits": 8`)
			return dir
		}, publish.ConvertOptions{Format: gptq.FormatV2}, `tensor "model.layers.0.mlp.down_proj.qweight": shape [112 256], want [224 256]`},
		{"intermediate_size", func(t *testing.T) string {
			dir := filepath.Join(t.TempDir(), "in")
			copyTree(t, "testdata/stories-bin", dir)
			edit(t, filepath.Join(dir, "config.json"), `"intermediate_size": 172`, `"intermediate_size": 176`)
			return dir
		}, publish.ConvertOptions{DType: "f16"}, `tensor "model.layers.0.mlp.down_proj.weight": shape [64 172], want [64 176]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.In, o.Out = tc.in(t), filepath.Join(t.TempDir(), "out")
			_, err := publish.Convert(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %s", err, tc.want)
			}
			if entries, _ := os.ReadDir(filepath.Dir(o.Out)); len(entries) != 0 {
				t.Errorf("left behind: %v", entries)
			}
		})
	}
}

// TestConvertGGUFSentencePieceVocab: a checkpoint with tokenizer.model is
// written with the vocabulary llama.cpp's converter writes (hand-derived
// here from openchat-tiny's files: tokenizer_config.json lists <unk>, <s>,
// </s>, <|end_of_turn|> and <|pad_0|> as special, so each is a control
// token scored -1000; byte pieces keep type byte and score 0), where the
// tokenizer.json derivation typed <unk> unknown and scored it 0.
func TestConvertGGUFSentencePieceVocab(t *testing.T) {
	in := fixture(t, "models/openchat-tiny")
	path := filepath.Join(t.TempDir(), "m.gguf")
	convert(t, publish.ConvertOptions{In: in, Out: path, GGUF: "q8_0"})
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tokens, err := gguf.Value[[]string](f, "tokenizer.ggml.tokens")
	if err != nil {
		t.Fatal(err)
	}
	scores, err := gguf.Value[[]float32](f, "tokenizer.ggml.scores")
	if err != nil {
		t.Fatal(err)
	}
	types, err := gguf.Value[[]int32](f, "tokenizer.ggml.token_type")
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 32002 || len(scores) != 32002 || len(types) != 32002 {
		t.Fatalf("%d tokens, %d scores, %d types, want 32002 each", len(tokens), len(scores), len(types))
	}
	for _, w := range []struct {
		id    int
		piece string
		score float32
		typ   int32
	}{
		{0, "<unk>", -1000, 3}, {1, "<s>", -1000, 3}, {2, "</s>", -1000, 3}, {13, "<0x0A>", 0, 6},
		{32000, "<|end_of_turn|>", -1000, 3}, {32001, "<|pad_0|>", -1000, 3},
	} {
		if tokens[w.id] != w.piece || scores[w.id] != w.score || types[w.id] != w.typ {
			t.Errorf("id %d: (%q, score %g, type %d), want (%q, score %g, type %d)", w.id, tokens[w.id], scores[w.id], types[w.id], w.piece, w.score, w.typ)
		}
	}
}

// TestConvertGPTQKeepsLoaderKeys: the keys of a GPTQ checkpoint's configs
// that convert does not write itself (GPTQModel's dynamic, lm_head and
// meta, Transformers' modules_in_block_to_quantize and use_exllama, the
// older "format" spelling) are kept in both config.json's
// quantization_config and quantize_config.json, with only the checkpoint
// format changed: vLLM, GPTQModel and transformers read them to know which
// modules are quantized and how.
func TestConvertGPTQKeepsLoaderKeys(t *testing.T) {
	q := rtnCheckpoint(t, 4, 128, true)
	kept := map[string]any{
		"dynamic":                      map[string]any{"-:model.layers.5.mlp.down_proj": map[string]any{}},
		"lm_head":                      false,
		"meta":                         map[string]any{"quantizer": []any{"gptqmodel:2.2.0"}},
		"modules_in_block_to_quantize": []any{[]any{"self_attn.q_proj"}},
		"use_exllama":                  true,
	}
	editJSON := func(file string, edit func(map[string]any)) {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		edit(doc)
		if b, err = json.MarshalIndent(doc, "", "  "); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	add := func(block map[string]any) {
		for k, v := range kept {
			block[k] = v
		}
		block["format"] = "gptq"
	}
	editJSON(filepath.Join(q, "config.json"), func(doc map[string]any) { add(doc["quantization_config"].(map[string]any)) })
	editJSON(filepath.Join(q, "quantize_config.json"), add)
	for _, tc := range []struct {
		name   string
		format gptq.Format
		want   string
	}{
		{"v1 to v2", gptq.FormatV2, "gptq_v2"},
		{"reshard", "", "gptq"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			convert(t, publish.ConvertOptions{In: q, Out: out, Format: tc.format})
			var cfg struct {
				Q map[string]any `json:"quantization_config"`
			}
			var qc map[string]any
			for file, v := range map[string]any{"config.json": &cfg, "quantize_config.json": &qc} {
				b, err := os.ReadFile(filepath.Join(out, file))
				if err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(b, v); err != nil {
					t.Fatalf("%s: %v", file, err)
				}
			}
			for file, block := range map[string]map[string]any{"config.json quantization_config": cfg.Q, "quantize_config.json": qc} {
				for k, want := range kept {
					if got, ok := block[k]; !ok || !reflect.DeepEqual(got, want) {
						t.Errorf("%s: %s = %v (present %v), want %v", file, k, got, ok, want)
					}
				}
				for _, k := range []string{"checkpoint_format", "format"} {
					if block[k] != tc.want {
						t.Errorf("%s: %s = %v, want %q", file, k, block[k], tc.want)
					}
				}
			}
		})
	}
}

// TestConvertCardOnce: a converted checkpoint converted again has one
// converted_by key in its model card's front matter, where the Hub's YAML
// reader refuses a key given twice ("duplicated mapping key").
func TestConvertCardOnce(t *testing.T) {
	tmp := t.TempDir()
	first, second := filepath.Join(tmp, "sharded"), filepath.Join(tmp, "merged")
	convert(t, publish.ConvertOptions{In: fixture(t, "models/openchat-tiny"), Out: first, MaxShardBytes: 5 << 20, Version: "1.0"})
	convert(t, publish.ConvertOptions{In: first, Out: second, Version: "1.1"})
	b, err := os.ReadFile(filepath.Join(second, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	rest, ok := strings.CutPrefix(string(b), "---\n")
	front, _, ok2 := strings.Cut(rest, "\n---\n")
	if !ok || !ok2 {
		t.Fatalf("README.md has no front matter:\n%s", b)
	}
	seen := map[string]int{}
	for _, line := range strings.Split(front, "\n") {
		if k, _, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "-") {
			seen[k]++
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("front matter key %s given %d times:\n%s", k, n, front)
		}
	}
	if !strings.Contains(front, "converted_by: gptqtool 1.1") {
		t.Errorf("front matter does not name the last conversion (gptqtool 1.1):\n%s", front)
	}
}

// TestConvertDequantizeCard: the card of a dequantized checkpoint says
// "exactly as gptqtool's runtime dequantizes it" only of fp32 weights;
// fp16 and bf16 round each weight once more (README, convert --help).
func TestConvertDequantizeCard(t *testing.T) {
	q := rtnCheckpoint(t, 4, 128, true)
	for _, dtype := range []string{"f32", "f16", "bf16"} {
		t.Run(dtype, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "dq")
			convert(t, publish.ConvertOptions{In: q, Out: out, Dequantize: true, DType: dtype})
			b, err := os.ReadFile(filepath.Join(out, "README.md"))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := strings.Contains(string(b), "exactly"), dtype == "f32"; got != want {
				t.Errorf("README.md says \"exactly\": %v, want %v:\n%s", got, want, b)
			}
		})
	}
}

// TestConvertHubCacheSnapshot: a Hugging Face cache snapshot, whose files
// are links to ../../blobs/<hash>, converts with its tokenizer and
// generation files copied (their contents), as from a plain directory.
func TestConvertHubCacheSnapshot(t *testing.T) {
	src := fixture(t, "models/openchat-tiny")
	hub := filepath.Join(t.TempDir(), "models--openchat--openchat-tiny")
	blobs, snap := filepath.Join(hub, "blobs"), filepath.Join(hub, "snapshots", "0123abc")
	for _, d := range []string{blobs, snap} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		blob := "blob" + strconv.Itoa(i)
		if err := os.WriteFile(filepath.Join(blobs, blob), b, 0o644); err != nil {
			t.Fatal(err)
		}
		symlink(t, filepath.Join("..", "..", "blobs", blob), filepath.Join(snap, e.Name()))
		names = append(names, e.Name())
	}
	out := filepath.Join(t.TempDir(), "out")
	convert(t, publish.ConvertOptions{In: snap, Out: out})
	for _, n := range names {
		if n == "config.json" || strings.HasSuffix(n, ".safetensors") {
			continue
		}
		want, _ := os.ReadFile(filepath.Join(src, n))
		fi, err := os.Lstat(filepath.Join(out, n))
		if err != nil {
			t.Errorf("%s not copied: %v", n, err)
			continue
		}
		got, _ := os.ReadFile(filepath.Join(out, n))
		if !fi.Mode().IsRegular() || !bytes.Equal(got, want) {
			t.Errorf("%s: mode %v, %d bytes, want a regular file of the source's %d bytes", n, fi.Mode(), len(got), len(want))
		}
	}
	// The model is named by its Hub id, not by the snapshot's commit.
	if b, _ := os.ReadFile(filepath.Join(out, "README.md")); !strings.Contains(string(b), "\nbase_model: openchat/openchat-tiny\n") {
		t.Errorf("README.md does not give base_model openchat/openchat-tiny:\n%s", b)
	}
	path := filepath.Join(t.TempDir(), "m.gguf")
	convert(t, publish.ConvertOptions{In: snap, Out: path, GGUF: "q8_0"})
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, err := gguf.Value[string](f, "general.name"); got != "openchat-tiny" {
		t.Errorf("general.name = %q (%v), want openchat-tiny", got, err)
	}
	// A link whose blob is missing is named, not skipped.
	if err := os.Remove(filepath.Join(blobs, "blob0")); err != nil {
		t.Fatal(err)
	}
	_, err = publish.Convert(context.Background(), publish.ConvertOptions{In: snap, Out: filepath.Join(t.TempDir(), "out")})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(snap, names[0])) {
		t.Errorf("a dangling link %s: err = %v, want one naming it", names[0], err)
	}
}

// TestConvertDTypeKey: a transformers 5.x config gives the weights' dtype
// as "dtype", which 5.x reads before "torch_dtype": convert --dtype sets
// that key, where it added a torch_dtype beside the old dtype and the
// output's config said bfloat16 over fp16 weights.
func TestConvertDTypeKey(t *testing.T) {
	in := v5Config(t)
	out := filepath.Join(t.TempDir(), "bf16")
	convert(t, publish.ConvertOptions{In: in, Out: out, DType: "bf16"})
	checkDTypeKey(t, out, "bfloat16")
}

// TestQuantizeDTypeKey: a checkpoint quantized from a transformers 5.x
// config says float16 (its plain tensors' dtype) in the config's dtype key.
func TestQuantizeDTypeKey(t *testing.T) {
	in := filepath.Join(t.TempDir(), "bf16")
	convert(t, publish.ConvertOptions{In: v5Config(t), Out: in, DType: "bf16"})
	dir := filepath.Join(t.TempDir(), "q")
	_, err := publish.Quantize(context.Background(), publish.RunOptions{
		ModelDir: in, Out: dir, RTN: true, Sym: true, TrueSequential: true, Backend: cpu.New(0),
		Branches: []publish.Branch{{Name: "q", Bits: 4, GroupSize: 128, Damp: 0.01}},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkDTypeKey(t, dir, "float16")
}

// v5Config is a copy of openchat-tiny whose config.json gives "dtype" as
// transformers 5.x writes it, not "torch_dtype".
func v5Config(t *testing.T) string {
	t.Helper()
	in := filepath.Join(t.TempDir(), "v5")
	copyTree(t, fixture(t, "models/openchat-tiny"), in)
	file := filepath.Join(in, "config.json")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	doc["dtype"] = doc["torch_dtype"]
	delete(doc, "torch_dtype")
	if b, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return in
}

// checkDTypeKey checks that dir's config.json gives want in "dtype" and
// has no "torch_dtype", read as JSON and by hfconfig.
func checkDTypeKey(t *testing.T, dir, want string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got["dtype"] != want {
		t.Errorf("config.json dtype = %v, want %s", got["dtype"], want)
	}
	if v, ok := got["torch_dtype"]; ok {
		t.Errorf("config.json torch_dtype = %v, want no such key (the input had none)", v)
	}
	cfg, err := hfconfig.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DType != want {
		t.Errorf("hfconfig reads the output's dtype as %q, want %s", cfg.DType, want)
	}
}

// TestChatTemplateJinja: a checkpoint saved by transformers 4.47 or later
// keeps its chat template in chat_template.jinja, not in
// tokenizer_config.json: convert --gguf writes it as
// tokenizer.chat_template (as llama.cpp's converter does), and quantize
// and convert carry the file over.
func TestChatTemplateJinja(t *testing.T) {
	src := fixture(t, "models/openchat-tiny")
	in := filepath.Join(t.TempDir(), "m")
	copyTree(t, src, in)
	file := filepath.Join(in, "tokenizer_config.json")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	tmpl, _ := doc["chat_template"].(string)
	if tmpl == "" {
		t.Fatalf("%s has no chat_template", file)
	}
	delete(doc, "chat_template")
	if b, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(file, b, 0o644)
	os.WriteFile(filepath.Join(in, "chat_template.jinja"), []byte(tmpl), 0o644)
	os.MkdirAll(filepath.Join(in, "additional_chat_templates"), 0o755)
	const tools = "{{ tools }}"
	os.WriteFile(filepath.Join(in, "additional_chat_templates", "tool_use.jinja"), []byte(tools), 0o644)

	path := filepath.Join(t.TempDir(), "m.gguf")
	convert(t, publish.ConvertOptions{In: in, Out: path, GGUF: "q8_0"})
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, err := gguf.Value[string](f, "tokenizer.chat_template"); err != nil || got != tmpl {
		t.Errorf("tokenizer.chat_template = %q (%v), want chat_template.jinja's %q", got, err, tmpl)
	}
	if got, err := gguf.Value[string](f, "tokenizer.chat_template.tool_use"); err != nil || got != tools {
		t.Errorf("tokenizer.chat_template.tool_use = %q (%v), want additional_chat_templates/tool_use.jinja's %q", got, err, tools)
	}

	out := filepath.Join(t.TempDir(), "f32")
	convert(t, publish.ConvertOptions{In: in, Out: out, DType: "f32"})
	q := filepath.Join(t.TempDir(), "q")
	_, err = publish.Quantize(context.Background(), publish.RunOptions{
		ModelDir: in, Out: q, RTN: true, Sym: true, TrueSequential: true, Backend: cpu.New(0),
		Branches: []publish.Branch{{Name: "q", Bits: 4, GroupSize: 128, Damp: 0.01}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The folder is the quantized checkpoint's own: --force replaces it.
	_, err = publish.Quantize(context.Background(), publish.RunOptions{
		ModelDir: in, Out: q, RTN: true, Sym: true, TrueSequential: true, Backend: cpu.New(0), Force: true,
		Branches: []publish.Branch{{Name: "q", Bits: 4, GroupSize: 128, Damp: 0.01}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{out, q} {
		if got, err := os.ReadFile(filepath.Join(dir, "chat_template.jinja")); err != nil || string(got) != tmpl {
			t.Errorf("%s: chat_template.jinja %q (%v), want the input's", dir, got, err)
		}
		if got, err := os.ReadFile(filepath.Join(dir, "additional_chat_templates", "tool_use.jinja")); err != nil || string(got) != tools {
			t.Errorf("%s: additional_chat_templates/tool_use.jinja %q (%v), want the input's", dir, got, err)
		}
	}
}

// TestCardZeroPoints: a checkpoint's model card says how its zero points
// are stored as its configs do (sym and checkpoint_format), where every
// card said "sym, GPTQ v1 zeros"; a checkpoint converted to the other
// format says the format it now has.
func TestCardZeroPoints(t *testing.T) {
	card := func(dir string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	check := func(what, text string, want, notWant []string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("%s: card does not say %q:\n%s", what, w, text)
			}
		}
		for _, w := range notWant {
			if strings.Contains(text, w) {
				t.Errorf("%s: card says %q:\n%s", what, w, text)
			}
		}
	}
	sym := rtnCheckpoint(t, 4, 128, true)
	check("sym v1", card(sym), []string{"sym, GPTQ v1 zeros"}, []string{"v2 zeros"})
	asym := rtnCheckpoint(t, 4, 128, false)
	check("asym v2", card(asym), []string{"sym=false, GPTQ v2 zeros"}, []string{"v1 zeros", " sym, "})

	v2 := filepath.Join(t.TempDir(), "v2")
	convert(t, publish.ConvertOptions{In: sym, Out: v2, Format: gptq.FormatV2})
	check("sym converted to v2", card(v2), []string{"GPTQ v2 zeros", "checkpoint_format gptq_v2"}, []string{"v1 zeros"})
	back := filepath.Join(t.TempDir(), "v1")
	convert(t, publish.ConvertOptions{In: v2, Out: back, Format: gptq.FormatV1})
	check("back to v1", card(back), []string{"GPTQ v1 zeros", "checkpoint_format gptq"}, []string{"v2 zeros", "gptq_v2"})
}

// TestConvertGPTQDTypeMessage: --dtype without --dequantize on a GPTQ
// checkpoint is refused saying what convert does with its plain tensors
// (copies them in their own dtype, naming it), where it said they "stay
// fp16" also of a checkpoint whose plain tensors are bf16.
func TestConvertGPTQDTypeMessage(t *testing.T) {
	q := rtnCheckpoint(t, 4, 128, true) // plain tensors fp16
	bf := filepath.Join(t.TempDir(), "bf")
	copyTree(t, q, bf)
	fixtures.RewriteTensors(t, bf, func(tt *safetensors.Tensor) bool {
		if tt.DType != safetensors.F16 || strings.HasSuffix(tt.Name, ".scales") {
			return true
		}
		f, err := tt.Float32()
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range f {
			binary.LittleEndian.PutUint16(tt.Data[2*i:], half.F32ToBF16(v))
		}
		tt.DType = safetensors.BF16
		return true
	})
	for _, c := range []struct{ name, in, dtype, want string }{
		{"bf16 plain", bf, "f16", "(bf16)"},
		{"fp16 plain", q, "bf16", "(f16)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := publish.Convert(context.Background(), publish.ConvertOptions{In: c.in, Out: filepath.Join(t.TempDir(), "o"), DType: c.dtype})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "--dequantize") || strings.Contains(err.Error(), "stay fp16") {
				t.Errorf("err = %v, want a refusal saying the plain tensors are copied as they are %s and naming --dequantize", err, c.want)
			}
		})
	}
}

// TestConvertFP16OverflowBeforeWriting: values of plain tensors beyond
// fp16's range are refused before any tensor is written (no progress is
// reported, nothing is left), naming every such tensor, where the check ran
// after the last tensor was written and a large conversion failed at its
// very end.
func TestConvertFP16OverflowBeforeWriting(t *testing.T) {
	src := fixture(t, "models/stories260K-hf-mistral") // fp32
	dir := filepath.Join(t.TempDir(), "big")
	copyTree(t, src, dir)
	rewrite(t, dir, "model.layers.4.mlp.down_proj.weight", func(d []byte) {
		binary.LittleEndian.PutUint32(d[0:], math.Float32bits(7e4))
	})
	rewrite(t, dir, "model.norm.weight", func(d []byte) {
		binary.LittleEndian.PutUint32(d[0:], math.Float32bits(-1e6))
	})
	out := filepath.Join(t.TempDir(), "f16")
	written := 0
	_, err := publish.Convert(context.Background(), publish.ConvertOptions{In: dir, Out: out, DType: "f16",
		Progress: func(done, total int) { written = done }})
	if err == nil || !strings.Contains(err.Error(), "model.layers.4.mlp.down_proj.weight (1)") || !strings.Contains(err.Error(), "model.norm.weight (1)") {
		t.Fatalf("err = %v, want a refusal naming both tensors", err)
	}
	if written != 0 {
		t.Errorf("%d tensors were written before the refusal, want 0", written)
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
		t.Errorf("refusal left %v", entries)
	}
}

// TestConvertCardExLlama: a checkpoint converted to gptq_v2 has its card's
// ExLlama column say No (ExLlama v1 reads checkpoint_format gptq only,
// spec §3), and one converted back to gptq says again what ExLlama makes of
// each row, where the carried-over table kept saying Yes of a v2
// checkpoint.
func TestConvertCardExLlama(t *testing.T) {
	// exllama returns the ExLlama cell of every row of the card's table.
	exllama := func(dir string) []string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		col := -1
		var cells []string
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(l, "|") || strings.HasPrefix(l, "|---") {
				continue
			}
			f := strings.Split(l, "|")
			if col < 0 {
				col = slices.IndexFunc(f, func(s string) bool { return strings.TrimSpace(s) == "ExLlama" })
				continue
			}
			cells = append(cells, strings.TrimSpace(f[col]))
		}
		if col < 0 || len(cells) == 0 {
			t.Fatalf("%s: no ExLlama column in the card:\n%s", dir, b)
		}
		return cells
	}
	q := rtnCheckpoint(t, 4, 128, true)
	if got := exllama(q); !slices.Equal(got, []string{"Yes"}) {
		t.Fatalf("4-bit sym gptq card: ExLlama %v, want [Yes]", got)
	}
	v2 := filepath.Join(t.TempDir(), "v2")
	convert(t, publish.ConvertOptions{In: q, Out: v2, Format: gptq.FormatV2})
	if got := exllama(v2); !slices.Equal(got, []string{"No"}) {
		t.Errorf("converted to gptq_v2: ExLlama %v, want [No]", got)
	}
	back := filepath.Join(t.TempDir(), "v1")
	convert(t, publish.ConvertOptions{In: v2, Out: back, Format: gptq.FormatV1})
	if got := exllama(back); !slices.Equal(got, []string{"Yes"}) {
		t.Errorf("converted back to gptq: ExLlama %v, want [Yes]", got)
	}
	// A checkpoint quantized as gptq_v2 says No, and Yes once converted.
	asym := rtnCheckpoint(t, 4, 128, false)
	if got := exllama(asym); !slices.Equal(got, []string{"No"}) {
		t.Fatalf("gptq_v2 card: ExLlama %v, want [No]", got)
	}
}

// TestConvertGGUFTable: a --gguf list writes one file a type into the
// directory --out, named as model repositories name them, each the same
// file a one-type run writes; every path is checked before anything is
// written, and a list with a .gguf --out is refused.
func TestConvertGGUFTable(t *testing.T) {
	src := fixture(t, "models/stories260K-hf-mistral")
	dir := filepath.Join(t.TempDir(), "gguf")
	sum := convert(t, publish.ConvertOptions{In: src, Out: dir, GGUF: "q8_0, F16,q4_k_m"})
	want := []string{"stories260K-hf-mistral.Q8_0.gguf", "stories260K-hf-mistral.F16.gguf", "stories260K-hf-mistral.Q4_K_M.gguf"}
	if !slices.Equal(sum.Files, want) || len(sum.GGUF) != 3 {
		t.Fatalf("files %v (%+v), want %v", sum.Files, sum.GGUF, want)
	}
	var total int64
	for i, f := range sum.GGUF {
		if f.File != want[i] || f.Type != []string{"Q8_0", "F16", "Q4_K_M"}[i] {
			t.Errorf("file %d: %+v", i, f)
		}
		total += f.SizeBytes
		one := filepath.Join(t.TempDir(), "one.gguf")
		convert(t, publish.ConvertOptions{In: src, Out: one, GGUF: f.Type})
		a, _ := os.ReadFile(filepath.Join(dir, f.File))
		b, _ := os.ReadFile(one)
		if len(a) == 0 || !bytes.Equal(a, b) || int64(len(a)) != f.SizeBytes {
			t.Errorf("%s: %d bytes, not the %d-byte file --gguf %s alone writes", f.File, len(a), len(b), f.Type)
		}
	}
	if total != sum.SizeBytes {
		t.Errorf("size %d, files %d", sum.SizeBytes, total)
	}
	// One existing file stops the run before any other is written.
	fresh := filepath.Join(t.TempDir(), "gguf")
	os.MkdirAll(fresh, 0o755)
	os.WriteFile(filepath.Join(fresh, "stories260K-hf-mistral.Q6_K.gguf"), []byte("x"), 0o644)
	_, err := publish.Convert(context.Background(), publish.ConvertOptions{In: src, Out: fresh, GGUF: "q8_0,q6_k"})
	if err == nil || !strings.Contains(err.Error(), "Q6_K.gguf exists") {
		t.Errorf("existing file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(fresh, "stories260K-hf-mistral.Q8_0.gguf")); err == nil {
		t.Error("a file was written before the refusal")
	}
	for _, tc := range []struct{ out, list, msg string }{
		{filepath.Join(t.TempDir(), "x.gguf"), "q8_0,f16", "writes 2 files into the directory --out"},
		{t.TempDir(), "q8_0,Q8_0", "given twice"},
		{t.TempDir(), "q8_0,q9_k", `unknown GGUF type "q9_k"`},
	} {
		if _, err := publish.Convert(context.Background(), publish.ConvertOptions{In: src, Out: tc.out, GGUF: tc.list}); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("--gguf %s --out %s: %v, want %q", tc.list, tc.out, err, tc.msg)
		}
	}
}

// TestConvertGGUFTableChecksFirst: what would refuse a file of a --gguf
// list before a tensor is read (Q2_K_S without an importance matrix, an
// importance matrix entry of another length than its weight's rows)
// refuses the run before the list's first file is written.
func TestConvertGGUFTableChecksFirst(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.imatrix.gguf")
	m := &gguf.Imatrix{Entries: map[string]gguf.ImatrixEntry{"blk.0.attn_q.weight": {Sum2: []float32{1, 2, 3}, Count: 1}}}
	if err := m.Write(bad); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ model, list, imatrix, msg string }{
		{"models/openchat-tiny", "q8_0,q2_k_s", "", "Q2_K_S needs an importance matrix"},
		{"models/stories260K-hf-mistral", "f16,q4_k_m", bad, `imatrix entry "blk.0.attn_q.weight" has 3 values`},
	} {
		out := filepath.Join(t.TempDir(), "gguf")
		_, err := publish.Convert(context.Background(), publish.ConvertOptions{In: fixture(t, tc.model), Out: out, GGUF: tc.list, Imatrix: tc.imatrix})
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("--gguf %s: %v, want an error containing %q", tc.list, err, tc.msg)
		}
		if entries, err := os.ReadDir(out); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("--gguf %s: the refusal left %v in --out", tc.list, entries)
		}
	}
}

// TestConvertGGUFTableFails: a file of a --gguf list that fails once
// written to (here the run is cancelled in the list's second file) leaves
// the files before it complete, none of its own, and an error that names
// the file, the files kept and the types not written.
func TestConvertGGUFTableFails(t *testing.T) {
	src := fixture(t, "models/stories260K-hf-mistral")
	out := filepath.Join(t.TempDir(), "gguf")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	progress := func(done, total int) {
		if done > total/3 {
			cancel()
		}
	}
	_, err := publish.Convert(ctx, publish.ConvertOptions{In: src, Out: out, GGUF: "q8_0,f16,q4_k_m", Progress: progress})
	first, second := filepath.Join(out, "stories260K-hf-mistral.Q8_0.gguf"), filepath.Join(out, "stories260K-hf-mistral.F16.gguf")
	want := []string{"convert: " + second + ": ", "context canceled; written before it, complete and kept: stories260K-hf-mistral.Q8_0.gguf; not written: Q4_K_M"}
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), want[0]) || !strings.HasSuffix(err.Error(), want[1]) {
		t.Errorf("error %v, want %q … %q", err, want[0], want[1])
	}
	if f, err := gguf.Open(first); err != nil {
		t.Errorf("the file before the failure: %v", err)
	} else {
		f.Close()
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 1 {
		t.Errorf("--out holds %v, want the Q8_0 file alone", entries)
	}
}
