package publish_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/fused"
	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/publish"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/verify"
)

// phi3Samples are random calibration sequences of the random Phi-3's
// vocabulary (256 tokens).
func phi3Samples(n, seqLen int) []quantize.Sample {
	r := rand.New(rand.NewPCG(5, 6))
	out := make([]quantize.Sample, n)
	for i := range out {
		out[i].IDs = make([]int, seqLen)
		for j := range out[i].IDs {
			out[i].IDs[j] = r.IntN(256)
		}
	}
	return out
}

// splitPhi3 writes the llama checkpoint of the same weights as the phi3
// checkpoint src: config.json as llama's (Phi-3 without a window or
// longrope is llama), the fused tensors as their parts (package fused's
// row slices, checked against Phi-3's forward in runtime/model).
func splitPhi3(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	editConfig(t, src, dir, func(cfg map[string]any) {
		cfg["model_type"], cfg["architectures"] = "llama", []string{"LlamaForCausalLM"}
		for _, k := range []string{"original_max_position_embeddings", "sliding_window", "embd_pdrop", "resid_pdrop"} {
			delete(cfg, k)
		}
	})
	st, c := fixtures.OpenCheckpoint(t, src)
	set, err := fused.Open(st, c.NumHiddenLayers, fused.Modules(c))
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, n := range set.Names() {
		tn, err := set.Tensor(n)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tn)
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

// editConfig writes src's config.json into dir with edit applied.
func editConfig(t *testing.T, src, dir string, edit func(cfg map[string]any)) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	edit(cfg)
	if raw, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestQuantizePhi3 quantizes a random Phi-3 (fused qkv_proj and
// gate_up_proj) and the llama checkpoint of the same weights split
// (splitPhi3) with the same samples, act order with and without static
// groups. The Phi-3 checkpoint holds qkv_proj and gate_up_proj as one
// GPTQ module each (GPTQModel's names) and no part; each fused tensor's
// column blocks (qweight, scales; qzeros by packed word) are the split
// checkpoint's q/k/v (gate/up) tensors byte for byte, its g_idx each
// part's; every other tensor is equal. Loaded, the two give the same
// logits; the format check and inspect pass; KL against the float source
// is small.
func TestQuantizePhi3(t *testing.T) {
	if testing.Short() {
		t.Skip("quantizes two models twice")
	}
	src := fixtures.Phi3(t, nil, synth.Options{DType: "f32", Seed: 1})
	split := splitPhi3(t, src)
	samples := phi3Samples(8, 64)
	branches := []publish.Branch{
		{Name: "act", Bits: 4, GroupSize: 32, DescAct: true, Damp: 0.1},
		{Name: "static", Bits: 4, GroupSize: 32, DescAct: true, StaticGroups: true, Damp: 0.1},
	}
	run := func(modelDir string) string {
		out := filepath.Join(t.TempDir(), "q")
		_, err := publish.Quantize(context.Background(), publish.RunOptions{ModelDir: modelDir, Out: out, Branches: branches, Table: true,
			Sym: true, TrueSequential: true, Samples: samples, SeqLen: 64, Backend: cpu.New(0)})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	phi, llama := run(src), run(split)
	_, cfg := fixtures.OpenCheckpoint(t, src)
	mods := fused.Modules(cfg)
	for _, br := range branches {
		t.Run(br.Name, func(t *testing.T) {
			pd, ld := filepath.Join(phi, br.Name), filepath.Join(llama, br.Name)
			pt, lt := tensors(t, pd), tensors(t, ld)
			explained := map[string]bool{}
			for li := range cfg.NumHiddenLayers {
				p := fmt.Sprintf("model.layers.%d.", li)
				for _, m := range mods {
					for _, suffix := range []string{"qweight", "scales", "qzeros", "g_idx"} {
						f, ok := pt[p+m.Name+"."+suffix]
						if !ok {
							t.Fatalf("%s%s.%s missing", p, m.Name, suffix)
						}
						col := 0 // in elements of f's rows
						for _, part := range m.Parts {
							name := p + part.Module + "." + suffix
							explained[name] = true
							if _, ok := pt[name]; ok {
								t.Errorf("%s written beside %s", name, f.Name)
							}
							want := lt[name]
							if suffix == "g_idx" {
								if !bytes.Equal(f.Data, want.Data) {
									t.Errorf("%s differs from the split checkpoint's %s", f.Name, name)
								}
								continue
							}
							es, rows, cols := f.DType.Size(), f.Shape[0], f.Shape[1]
							w := want.Shape[1]
							if want.Shape[0] != rows {
								t.Fatalf("%s %v beside %s %v", f.Name, f.Shape, name, want.Shape)
							}
							for r := range rows {
								got := f.Data[(r*cols+col)*es : (r*cols+col+w)*es]
								if !bytes.Equal(got, want.Data[r*w*es:(r+1)*w*es]) {
									t.Fatalf("%s: row %d, columns [%d, %d) differ from %s", f.Name, r, col, col+w, name)
								}
							}
							col += w
						}
						if suffix != "g_idx" && col != f.Shape[1] {
							t.Errorf("%s: %d columns, the parts have %d", f.Name, f.Shape[1], col)
						}
						explained[f.Name] = true
					}
				}
			}
			for n, want := range lt {
				if explained[n] {
					continue
				}
				if got, ok := pt[n]; !ok || !bytes.Equal(got.Data, want.Data) {
					t.Errorf("%s missing or differs from the split checkpoint's", n)
				}
			}
			if len(pt) != len(lt)-4*(3+2)*cfg.NumHiddenLayers+4*2*cfg.NumHiddenLayers {
				t.Errorf("%d tensors, want %d", len(pt), len(lt)-12*cfg.NumHiddenLayers)
			}

			rep, err := verify.CheckFormat(pd)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range rep.Checks {
				if !c.OK {
					t.Errorf("format check %q failed: %s", c.Name, c.Detail)
				}
			}
			ins, err := verify.Inspect(pd)
			if err != nil {
				t.Fatal(err)
			}
			if len(ins.Problems) > 0 {
				t.Errorf("inspect: %v", ins.Problems)
			}

			ids := phi3Samples(1, 128)[0].IDs
			logits := func(dir string) []float32 {
				m, err := model.Load(dir, cpu.New(0))
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				l, err := m.Forward(ids[:32], nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			a, b := logits(pd), logits(ld)
			for i := range a {
				if a[i] != b[i] {
					t.Fatalf("logit %d: phi3 checkpoint %g, split %g", i, a[i], b[i])
				}
			}
			base, err := model.Load(src, cpu.New(0))
			if err != nil {
				t.Fatal(err)
			}
			defer base.Close()
			m, err := model.Load(pd, cpu.New(0))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			r, err := verify.KL(context.Background(), m, base, ids, verify.PerplexityOptions{Ctx: 64, MaxWindows: 2})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("mean KL against the float source: %.4g", r.MeanKL)
			if !(r.MeanKL < 0.1) {
				t.Errorf("mean KL %.4g against the float source, want < 0.1", r.MeanKL)
			}
		})
	}
}

// TestQuantizePhi3LongropeContext: quantize loads a longrope Phi-3's
// layers for its samples' length, as transformers (GPTQModel) chooses the
// factors for a calibration sequence: a Phi-3 of 512 positions over an
// original 64, quantized with samples of 64 positions (the boundary
// included), is byte for byte the same weights quantized under a config
// whose long factors are its short ones (so that the short table is the
// only one); with samples of 128 it is the one whose short factors are its
// long ones. The two tables give different checkpoints at 64 (else the
// test could not tell), and the log says the choice. Both drivers.
func TestQuantizePhi3LongropeContext(t *testing.T) {
	if testing.Short() {
		t.Skip("quantizes three models twice for two drivers")
	}
	short := []float64{1, 1.25, 1.5, 2, 2, 3, 4, 4}
	long := []float64{1, 2, 4, 8, 12, 16, 24, 32}
	src := fixtures.Phi3(t, map[string]any{"max_position_embeddings": 512, "original_max_position_embeddings": 64,
		"rope_scaling": map[string]any{"type": "longrope", "short_factor": short, "long_factor": long}},
		synth.Options{DType: "f32", Seed: 1})
	// withFactors is src's weights under a config whose longrope factors
	// are s and l.
	withFactors := func(s, l []float64) string {
		t.Helper()
		dir := t.TempDir()
		editConfig(t, src, dir, func(cfg map[string]any) {
			cfg["rope_scaling"] = map[string]any{"type": "longrope", "short_factor": s, "long_factor": l}
		})
		fixtures.CopyFiles(t, src, dir, "model.safetensors")
		return dir
	}
	onlyShort, onlyLong := withFactors(short, short), withFactors(long, long)
	br := publish.Branch{Name: "main", Bits: 4, GroupSize: 32, DescAct: true, Damp: 0.1}
	for _, solver := range []quantize.Solver{nil, quantize.HostSolver{}} {
		name := "reference"
		if solver != nil {
			name = "device"
		}
		t.Run(name, func(t *testing.T) {
			quant := func(modelDir string, seqLen int) (map[string]safetensors.Tensor, string) {
				t.Helper()
				out := filepath.Join(t.TempDir(), "q")
				var log bytes.Buffer
				_, err := publish.Quantize(context.Background(), publish.RunOptions{ModelDir: modelDir, Out: out, Branches: []publish.Branch{br},
					Sym: true, TrueSequential: true, Samples: phi3Samples(4, seqLen), SeqLen: seqLen, Backend: cpu.New(0), Solver: solver, Log: &log})
				if err != nil {
					t.Fatal(err)
				}
				return tensors(t, out), log.String()
			}
			same := func(a, b map[string]safetensors.Tensor) string {
				for n, want := range b {
					if got, ok := a[n]; !ok || !bytes.Equal(got.Data, want.Data) {
						return n
					}
				}
				if len(a) != len(b) {
					return fmt.Sprintf("%d tensors, want %d", len(a), len(b))
				}
				return ""
			}
			s64, _ := quant(onlyShort, 64)
			l64, _ := quant(onlyLong, 64)
			if same(s64, l64) == "" {
				t.Fatal("the short and the long table quantize to the same checkpoint at 64 positions: the test could not tell")
			}
			got64, log64 := quant(src, 64)
			if d := same(got64, s64); d != "" {
				t.Errorf("samples of 64: %s differs from the short-table checkpoint's", d)
			}
			if w := "calibration context: 64 positions, rope longrope (8 factors, the short ones applying"; !strings.Contains(log64, w) {
				t.Errorf("samples of 64: no %q in the log:\n%s", w, log64)
			}
			got128, log128 := quant(src, 128)
			l128, _ := quant(onlyLong, 128)
			if d := same(got128, l128); d != "" {
				t.Errorf("samples of 128: %s differs from the long-table checkpoint's", d)
			}
			if w := "calibration context: 128 positions, rope longrope (8 factors, the long ones applying"; !strings.Contains(log128, w) {
				t.Errorf("samples of 128: no %q in the log:\n%s", w, log128)
			}
		})
	}
}

// TestQuantizePhi3SkipPart: --skip-modules naming a part of a fused
// module (or a pattern matching one) is refused naming the fused module,
// before anything is written.
func TestQuantizePhi3SkipPart(t *testing.T) {
	src := fixtures.Phi3(t, nil, synth.Options{DType: "f32", Seed: 1})
	for _, tc := range []struct{ pattern, want string }{
		{"model.layers.1.self_attn.k_proj", "model.layers.1.self_attn.k_proj is part of model.layers.1.self_attn.qkv_proj"},
		{"re:.*up_proj", "model.layers.0.mlp.up_proj is part of model.layers.0.mlp.gate_up_proj"},
	} {
		out := filepath.Join(t.TempDir(), "out")
		_, err := publish.Quantize(context.Background(), publish.RunOptions{ModelDir: src, Out: out, SkipModules: []string{tc.pattern},
			Branches: []publish.Branch{{Name: "main", Bits: 4, GroupSize: 32, Damp: 0.1}}, Sym: true, Samples: phi3Samples(2, 16), Backend: cpu.New(0)})
		if !errors.Is(err, quantize.ErrSkip) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.pattern, err, tc.want)
		}
		if _, serr := os.Stat(out); !errors.Is(serr, fs.ErrNotExist) {
			t.Errorf("%s written (stat: %v)", out, serr)
		}
	}
}

// TestConvertPhi3: a GPTQ phi3 checkpoint converted v1 → v2 → v1 is
// itself again byte for byte, the v2 one holds the fused modules (their
// zero points one higher) and gives the same logits; dequantized to f32
// it holds the fused float weights and gives the GPTQ checkpoint's
// logits; the float source converted to f16 holds its fused tensors,
// each value the source's rounded to fp16.
func TestConvertPhi3(t *testing.T) {
	src := fixtures.Phi3(t, nil, synth.Options{DType: "f32", Seed: 1})
	q := filepath.Join(t.TempDir(), "q")
	if _, err := publish.Quantize(context.Background(), publish.RunOptions{ModelDir: src, Out: q, Sym: true, TrueSequential: true,
		Branches: []publish.Branch{{Name: "main", Bits: 4, GroupSize: 32, DescAct: true, Damp: 0.1}},
		Samples:  phi3Samples(4, 64), SeqLen: 64, Backend: cpu.New(0)}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	v2, v1, dq, f16 := filepath.Join(dir, "v2"), filepath.Join(dir, "v1"), filepath.Join(dir, "dq"), filepath.Join(dir, "f16")
	convert(t, publish.ConvertOptions{In: q, Out: v2, Format: "gptq_v2"})
	convert(t, publish.ConvertOptions{In: v2, Out: v1, Format: "gptq"})
	convert(t, publish.ConvertOptions{In: q, Out: dq, Dequantize: true, DType: "f32"})
	convert(t, publish.ConvertOptions{In: src, Out: f16, DType: "f16"})
	qt, v2t, v1t, dqt, f16t := tensors(t, q), tensors(t, v2), tensors(t, v1), tensors(t, dq), tensors(t, f16)
	if len(v1t) != len(qt) {
		t.Errorf("v1 again: %d tensors, want %d", len(v1t), len(qt))
	}
	for n, want := range qt {
		if got, ok := v1t[n]; !ok || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("v1 again: %s missing or differs", n)
		}
	}
	z1, z2 := qt["model.layers.0.self_attn.qkv_proj.qzeros"], v2t["model.layers.0.self_attn.qkv_proj.qzeros"]
	if len(z1.Data) == 0 || binary.LittleEndian.Uint32(z1.Data) != 0x77777777 || binary.LittleEndian.Uint32(z2.Data) != 0x88888888 {
		t.Errorf("qkv_proj.qzeros: v1 %x, v2 %x, want words 77777777 and 88888888", z1.Data[:4], z2.Data[:4])
	}
	for _, n := range []string{"model.layers.1.self_attn.qkv_proj.weight", "model.layers.1.mlp.gate_up_proj.weight"} {
		if got, ok := dqt[n]; !ok || got.DType != safetensors.F32 {
			t.Errorf("dequantized: %s missing or not F32", n)
		}
		st := tensors(t, src)[n]
		want, _ := st.Float32()
		got, ok := f16t[n]
		if !ok || got.DType != safetensors.F16 {
			t.Fatalf("f16: %s missing or not F16", n)
		}
		g, _ := got.Float32()
		for i := range want {
			if g[i] != half.F16ToF32(half.F32ToF16(want[i])) {
				t.Fatalf("f16: %s[%d] = %g, want %g rounded to fp16", n, i, g[i], want[i])
			}
		}
	}
	for n := range dqt {
		if strings.Contains(n, "q_proj") || strings.Contains(n, "gate_proj") {
			t.Errorf("dequantized: part %s written", n)
		}
	}
	ids := phi3Samples(1, 32)[0].IDs
	logits := func(dir string) []float32 {
		m, err := model.Load(dir, cpu.New(0))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		l, err := m.Forward(ids, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a := logits(q)
	for _, d := range []string{v2, dq} {
		b := logits(d)
		for i := range a {
			if diff := a[i] - b[i]; diff > 1e-4 || diff < -1e-4 {
				t.Fatalf("%s: logit %d: %g, GPTQ checkpoint %g", filepath.Base(d), i, b[i], a[i])
			}
		}
	}
}

// TestConvertPhi3GGUF converts a float phi3 checkpoint (openchat's
// SentencePiece tokenizer, a window of 8) with convert --gguf: the F32
// file is llama.cpp's phi3 architecture (fused attn_qkv and ffn_up, the
// window's key, tokenizer pre "default"), warns that llama.cpp disables
// the window, and loads as generate and serve load a GGUF file (HFConfig
// and Weights) into the model the checkpoint is: the same logits; a
// Q4_K_M file is written too (attn_qkv typed as attn_v).
func TestConvertPhi3GGUF(t *testing.T) {
	tok := fixture(t, "models/openchat-tiny")
	src := fixtures.Phi3(t, map[string]any{"vocab_size": 32002, "sliding_window": 8}, synth.Options{DType: "f32", Seed: 3, TokenizerDir: tok})
	dir := t.TempDir()
	out := filepath.Join(dir, "phi3-f32.gguf")
	sum := convert(t, publish.ConvertOptions{In: src, Out: out, GGUF: "f32"})
	if !slices.ContainsFunc(sum.Warnings, func(w string) bool { return strings.Contains(w, "llama.cpp's phi3 architecture disables the window") }) {
		t.Errorf("warnings %q, want the window's", sum.Warnings)
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for key, want := range map[string]any{"general.architecture": "phi3", "phi3.attention.sliding_window": uint32(8), "tokenizer.ggml.pre": "default"} {
		if got, ok := f.Get(key); !ok || got != want {
			t.Errorf("%s = %v (%v), want %v", key, got, ok, want)
		}
	}
	for _, name := range []string{"blk.1.attn_qkv.weight", "blk.1.ffn_up.weight"} {
		if _, ok := f.Tensor(name); !ok {
			t.Errorf("no tensor %s", name)
		}
	}
	cfg, err := f.HFConfig()
	if err != nil {
		t.Fatal(err)
	}
	got, err := model.FromWeights(f.Weights(cfg), cfg, nil, cpu.New(0))
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	want, err := model.Load(src, cpu.New(0))
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	ids := []int{1, 415, 5565, 302, 4843, 349, 264, 1628, 28723, 415, 5565, 302, 7293, 349}
	a, b := lastLogits(t, got, ids), lastLogits(t, want, ids)
	for i := range b {
		if a[i] != b[i] {
			t.Fatalf("logit %d: the GGUF file %g, the checkpoint %g", i, a[i], b[i])
		}
	}
	q := filepath.Join(dir, "phi3-q4_k_m.gguf")
	qs := convert(t, publish.ConvertOptions{In: src, Out: q, GGUF: "q4_k_m"})
	if len(qs.GGUF) != 1 {
		t.Fatalf("q4_k_m: %+v", qs)
	}
	qf, err := gguf.Open(q)
	if err != nil {
		t.Fatal(err)
	}
	defer qf.Close()
	// (Q4_K_M's use_more_bits: the last of 2 layers' attn_v in Q6_K, here
	// Q8_0 for rows of 64; ffn_up the base Q4_K, here Q5_0)
	for name, want := range map[string]gguf.TensorType{"blk.1.attn_qkv.weight": gguf.TypeQ8_0, "blk.1.ffn_up.weight": gguf.TypeQ5_0} {
		if ti, ok := qf.Tensor(name); !ok || ti.Type != want {
			t.Errorf("%s: %+v (%v), want %s", name, ti, ok, want)
		}
	}
}

// TestConvertPhi3GPTQToGGUF converts a GPTQ phi3 checkpoint (act order,
// fused qkv_proj and gate_up_proj modules) to GGUF F32 and F16: each
// module dequantized through its parts and stacked again (attn_qkv rows
// q, k, v; ffn_up gate, up). The F32 file's fused tensors are the
// runtime's dequantization of the checkpoint (its dequantized copy's
// fused tensors) exactly and give the checkpoint's logits; the F16 file's
// are those rounded to fp16 and give them within 1e-2; the float source
// before quantization is further from them than that (so the check tells
// the GPTQ weights from the float ones). llama.cpp on the F32 file:
// formats/gguf's TestLlamaCppPhi3GPTQ.
func TestConvertPhi3GPTQToGGUF(t *testing.T) {
	tok := fixture(t, "models/openchat-tiny")
	src := fixtures.Phi3(t, map[string]any{"vocab_size": 32002}, synth.Options{DType: "f32", Seed: 3, TokenizerDir: tok})
	q := filepath.Join(t.TempDir(), "q")
	samples := phi3Samples(4, 64) // (ids below 256: within the vocabulary)
	if _, err := publish.Quantize(context.Background(), publish.RunOptions{ModelDir: src, Out: q, Sym: true, TrueSequential: true,
		Branches: []publish.Branch{{Name: "main", Bits: 4, GroupSize: 32, DescAct: true, Damp: 0.1}},
		Samples:  samples, SeqLen: 64, Backend: cpu.New(0)}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dq := filepath.Join(dir, "dq")
	convert(t, publish.ConvertOptions{In: q, Out: dq, Dequantize: true, DType: "f32"})
	dqt := tensors(t, dq)
	ids := []int{1, 415, 5565, 302, 4843, 349, 264, 1628, 28723, 415, 5565, 302, 7293, 349}
	load := func(dir string) []float32 {
		m, err := model.Load(dir, cpu.New(0))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		return lastLogits(t, m, ids)
	}
	want, float := load(q), load(src)
	maxDiff := func(a, b []float32) float64 {
		var d float64
		for i := range a {
			d = max(d, math.Abs(float64(a[i])-float64(b[i])))
		}
		return d
	}
	d := maxDiff(float, want)
	t.Logf("the float source's logits within %g of the GPTQ checkpoint's", d)
	if !(d > 1e-2) {
		t.Fatalf("the float source's logits are within %g of the GPTQ checkpoint's: the check cannot tell them", d)
	}
	for _, tc := range []struct {
		typ   string
		round func(float32) float32
		tol   float64
	}{
		{"f32", func(v float32) float32 { return v }, 0},
		{"f16", func(v float32) float32 { return half.F16ToF32(half.F32ToF16(v)) }, 1e-2},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			out := filepath.Join(dir, "phi3-"+tc.typ+".gguf")
			convert(t, publish.ConvertOptions{In: q, Out: out, GGUF: tc.typ})
			f, err := gguf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for li := range 2 {
				for gg, hf := range map[string]string{"attn_qkv": "self_attn.qkv_proj", "ffn_up": "mlp.gate_up_proj"} {
					name := fmt.Sprintf("blk.%d.%s.weight", li, gg)
					got, err := f.Float32(name)
					if err != nil {
						t.Fatal(err)
					}
					w := dqt[fmt.Sprintf("model.layers.%d.%s.weight", li, hf)]
					ref, err := w.Float32()
					if err != nil || len(got) != len(ref) {
						t.Fatalf("%s: %d values, the dequantized %s %v (%v)", name, len(got), w.Name, w.Shape, err)
					}
					for i := range ref {
						if got[i] != tc.round(ref[i]) {
							t.Fatalf("%s[%d] = %g, want the dequantized %s's %g in %s", name, i, got[i], w.Name, ref[i], tc.typ)
						}
					}
				}
			}
			cfg, err := f.HFConfig()
			if err != nil {
				t.Fatal(err)
			}
			m, err := model.FromWeights(f.Weights(cfg), cfg, nil, cpu.New(0))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			d := maxDiff(lastLogits(t, m, ids), want)
			t.Logf("logits within %g of the GPTQ checkpoint's", d)
			if !(d <= tc.tol) {
				t.Errorf("logits differ from the GPTQ checkpoint's by up to %g, want at most %g", d, tc.tol)
			}
		})
	}
}

// lastLogits is m's logits after ids.
func lastLogits(t *testing.T, m *model.Model, ids []int) []float32 {
	t.Helper()
	c := m.NewCache(len(ids))
	defer c.Free()
	lg, err := m.ForwardLast(ids, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Clone(lg)
}

// TestQuantizePhi3Partial quantizes a random Phi-3 with Phi-4-mini's
// partial RoPE (partial_rotary_factor 0.75: 12 of head_dim 16 rotated;
// longrope with 6 factors a table past an original 64), with both
// drivers: the checkpoint keeps partial_rotary_factor, passes the format
// check, loads rotating 12 channels and is close to the float source (KL
// < 0.1); the same weights under a factor of 0.5 (8 channels, the first 4
// factors) quantize to other weights, so the calibration forward rotates
// the config's part of each head.
func TestQuantizePhi3Partial(t *testing.T) {
	if testing.Short() {
		t.Skip("quantizes two models for two drivers")
	}
	short, long := []float64{1, 1.125, 1.25, 1.5, 2, 2.5}, []float64{1, 1.5, 2, 3, 4, 8}
	src := fixtures.Phi3(t, map[string]any{"partial_rotary_factor": 0.75, "max_position_embeddings": 512, "original_max_position_embeddings": 64,
		"rope_scaling": map[string]any{"type": "longrope", "short_factor": short, "long_factor": long}},
		synth.Options{DType: "f32", Seed: 1})
	half := t.TempDir()
	editConfig(t, src, half, func(cfg map[string]any) {
		cfg["partial_rotary_factor"] = 0.5
		cfg["rope_scaling"] = map[string]any{"type": "longrope", "short_factor": short[:4], "long_factor": long[:4]}
	})
	fixtures.CopyFiles(t, src, half, "model.safetensors")
	br := publish.Branch{Name: "main", Bits: 4, GroupSize: 32, DescAct: true, Damp: 0.1}
	for _, solver := range []quantize.Solver{nil, quantize.HostSolver{}} {
		name := "reference"
		if solver != nil {
			name = "device"
		}
		t.Run(name, func(t *testing.T) {
			quant := func(modelDir string) string {
				t.Helper()
				out := filepath.Join(t.TempDir(), "q")
				_, err := publish.Quantize(context.Background(), publish.RunOptions{ModelDir: modelDir, Out: out, Branches: []publish.Branch{br},
					Sym: true, TrueSequential: true, Samples: phi3Samples(4, 96), SeqLen: 96, Backend: cpu.New(0), Solver: solver})
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
			out := quant(src)
			rep, err := verify.CheckFormat(out)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range rep.Checks {
				if !c.OK {
					t.Errorf("format check %q failed: %s", c.Name, c.Detail)
				}
			}
			m, err := model.Load(out, cpu.New(0))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if c, err := hfconfig.Load(out); err != nil || c.RoPEDim() != 12 {
				t.Errorf("the quantized checkpoint's config: %v, want 12 of 16 channels rotated", err)
			}
			base, err := model.Load(src, cpu.New(0))
			if err != nil {
				t.Fatal(err)
			}
			defer base.Close()
			ids := phi3Samples(1, 128)[0].IDs
			r, err := verify.KL(context.Background(), m, base, ids, verify.PerplexityOptions{Ctx: 64, MaxWindows: 2})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("mean KL against the float source: %.4g", r.MeanKL)
			if !(r.MeanKL < 0.1) {
				t.Errorf("mean KL %.4g against the float source, want < 0.1", r.MeanKL)
			}
			a, b := tensors(t, out), tensors(t, quant(half))
			differ := false
			for n, want := range b {
				if got, ok := a[n]; ok && strings.HasSuffix(n, "o_proj.qweight") && !bytes.Equal(got.Data, want.Data) {
					differ = true
				}
			}
			if !differ {
				t.Error("rotating 8 channels quantizes o_proj as rotating 12 does: the calibration forward's RoPE is not the config's")
			}
		})
	}
}
