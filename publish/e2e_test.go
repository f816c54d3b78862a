package publish_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/publish"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/verify"
)

func fixture(t *testing.T, rel string) string { t.Helper(); return fixtures.Path(t, rel) }

// calibration is the reference recipe's samples (internal/fixtures).
func calibration(t *testing.T, modelDir string, nsamples, seqLen int) []quantize.Sample {
	t.Helper()
	return quantize.SamplesOf(fixtures.Calibration(t, modelDir, nsamples, seqLen))
}

func perplexity(t *testing.T, dir string, ids []int, windows int) float64 {
	t.Helper()
	m, err := model.Load(dir, cpu.New(0))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, err := verify.Perplexity(context.Background(), m, ids, verify.PerplexityOptions{Ctx: 512, MaxWindows: windows})
	if err != nil {
		t.Fatal(err)
	}
	return r.PPL
}

var mainBranch = publish.Branch{Name: "main", Bits: 4, GroupSize: 128, DescAct: true, Damp: 0.1}

// TestPipelineOpenchatTiny runs the whole CPU pipeline at small settings:
// calibrate, GPTQ (main branch recipe) and RTN, write, check the format, and
// measure perplexity: GPTQ must beat RTN and stay close to fp16.
func TestPipelineOpenchatTiny(t *testing.T) {
	modelDir := fixture(t, "models/openchat-tiny")
	samples := calibration(t, modelDir, 32, 256)
	out := t.TempDir()
	run := func(name string, rtn bool) string {
		dir := filepath.Join(out, name)
		_, err := publish.Quantize(context.Background(), publish.RunOptions{
			ModelDir: modelDir, Out: dir, Branches: []publish.Branch{mainBranch},
			Sym: true, TrueSequential: true, RTN: rtn, Samples: samples, SeqLen: 256, Backend: cpu.New(0),
		})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return dir
	}
	gptqDir, rtnDir := run("gptq", false), run("rtn", true)

	rep, err := verify.CheckFormat(gptqDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Checks {
		if !c.OK {
			t.Errorf("format check %q failed: %s", c.Name, c.Detail)
		}
	}
	for _, f := range []string{"config.json", "quantize_config.json", "tokenizer.json", "tokenizer_config.json", "README.md", "model.safetensors"} {
		if _, err := os.Stat(filepath.Join(gptqDir, f)); err != nil {
			t.Errorf("checkpoint lacks %s: %v", f, err)
		}
	}
	// No temporary directory is left beside the outputs.
	entries, _ := os.ReadDir(out)
	if len(entries) != 2 {
		t.Errorf("output parent holds %d entries, want the 2 checkpoints", len(entries))
	}

	ids := fixtures.WikiIDs(t)
	const windows = 8
	fp := perplexity(t, modelDir, ids, windows)
	g := perplexity(t, gptqDir, ids, windows)
	r := perplexity(t, rtnDir, ids, windows)
	t.Logf("ppl on %d windows of 512: fp16 %.4f, gptq %.4f, rtn %.4f", windows, fp, g, r)
	if !(g < r) {
		t.Errorf("GPTQ ppl %.4f not below RTN %.4f", g, r)
	}
	if g > fp*1.06 {
		t.Errorf("GPTQ ppl %.4f more than 6%% above fp16 %.4f", g, fp)
	}
}

// TestCheckpointDequantizesToQuantizerWeights checks that what is written
// dequantizes exactly to the weights the quantizer chose (the scales are
// rounded to fp16 as they are chosen, so there is no further rounding).
func TestCheckpointDequantizesToQuantizerWeights(t *testing.T) {
	modelDir := fixture(t, "models/openchat-tiny")
	cfg, err := hfconfig.Load(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	for _, br := range []publish.Branch{
		{Name: "4bit-act", Bits: 4, GroupSize: 128, DescAct: true, Damp: 0.1},
		{Name: "3bit-static", Bits: 3, GroupSize: 64, DescAct: true, StaticGroups: true, Damp: 0.1},
		{Name: "8bit-channel", Bits: 8, GroupSize: -1, DescAct: true, Damp: 0.1},
		{Name: "2bit-noact", Bits: 2, GroupSize: 32, Damp: 0.01},
	} {
		t.Run(br.Name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), br.Name)
			qc := gptq.DefaultQuantizeConfig()
			qc.Bits, qc.GroupSize, qc.DescAct, qc.StaticGroups, qc.DampPercent = br.Bits, br.GroupSize, br.DescAct, br.StaticGroups, br.Damp
			cp, err := publish.NewCheckpoint(dir, modelDir, set, cfg, qc, publish.CheckpointOptions{})
			if err != nil {
				t.Fatal(err)
			}
			chosen := map[string]quantize.ModuleResult{}
			job := quantize.Job{
				Name: br.Name, TrueSequential: true,
				GPTQ: quantize.Options{Bits: br.Bits, GroupSize: br.GroupSize, Sym: true, ActOrder: br.DescAct, StaticGroups: br.StaticGroups, Damp: br.Damp, Fp16Scales: true},
				Layer: func(li int, mods []quantize.ModuleResult) error {
					for _, m := range mods {
						chosen[m.Name()] = m
					}
					return cp.Layer(li, mods)
				},
				Done: func(float64) error {
					_, err := cp.Commit(func(int64) []byte { return nil })
					return err
				},
			}
			samples := calibration(t, modelDir, 4, 128)
			if err := quantize.Run(context.Background(), set, cfg, cpu.New(0), samples, []quantize.Job{job}, quantize.DriverOptions{}); err != nil {
				cp.Abort()
				t.Fatal(err)
			}
			q, err := safetensors.OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			if len(chosen) != cfg.NumHiddenLayers*7 {
				t.Fatalf("got %d quantized modules, want %d", len(chosen), cfg.NumHiddenLayers*7)
			}
			for name, m := range chosen {
				want := m.W
				K, N, _ := model.LinearShape(cfg, m.Module)
				lin := readLinear(t, q, name, K, N, qc)
				got, err := lin.Dequantize()
				if err != nil {
					t.Fatal(err)
				}
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("%s: dequantized[%d] = %g, quantizer chose %g", name, i, got[i], want[i])
					}
				}
			}
		})
	}
}

func readLinear(t *testing.T, s *safetensors.Set, name string, K, N int, qc gptq.QuantizeConfig) *gptq.Linear {
	t.Helper()
	get := func(suffix string) safetensors.Tensor {
		tt, err := s.Tensor(name + suffix)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	lin := &gptq.Linear{K: K, N: N, Bits: qc.Bits, GroupSize: qc.GroupSize, Format: qc.Format()}
	var err error
	if lin.QWeight, err = get(".qweight").Int32(); err != nil {
		t.Fatal(err)
	}
	if lin.QZeros, err = get(".qzeros").Int32(); err != nil {
		t.Fatal(err)
	}
	if lin.GIdx, err = get(".g_idx").Int32(); err != nil {
		t.Fatal(err)
	}
	sc := get(".scales")
	lin.Scales = make([]uint16, len(sc.Data)/2)
	for i := range lin.Scales {
		lin.Scales[i] = uint16(sc.Data[2*i]) | uint16(sc.Data[2*i+1])<<8
	}
	if err := lin.Validate(name); err != nil {
		t.Fatal(err)
	}
	return lin
}

// TestQuantizeRefusesBadInput covers the errors users meet.
func TestQuantizeRefusesBadInput(t *testing.T) {
	modelDir := fixture(t, "models/openchat-tiny")
	stories := fixture(t, "models/stories260K-hf-mistral")
	samples := []quantize.Sample{{IDs: []int{1, 2, 3, 4, 5, 6, 7, 8}}}
	empty := t.TempDir()
	badArch := t.TempDir()
	cfg, _ := os.ReadFile(filepath.Join(modelDir, "config.json"))
	var raw map[string]any
	json.Unmarshal(cfg, &raw)
	raw["model_type"] = "gpt2"
	b, _ := json.Marshal(raw)
	os.WriteFile(filepath.Join(badArch, "config.json"), b, 0o644)
	exists := t.TempDir()
	// openchat-tiny's files under a config.json with another hidden_size:
	// links, or copies where links cannot be made (Windows without
	// Developer Mode).
	wrongHidden := t.TempDir()
	entries, _ := os.ReadDir(modelDir)
	for _, e := range entries {
		if e.Name() != "config.json" && os.Symlink(filepath.Join(modelDir, e.Name()), filepath.Join(wrongHidden, e.Name())) != nil {
			fixtures.CopyFiles(t, modelDir, wrongHidden, e.Name())
		}
	}
	json.Unmarshal(cfg, &raw)
	raw["model_type"], raw["hidden_size"] = "mistral", 512
	b, _ = json.Marshal(raw)
	os.WriteFile(filepath.Join(wrongHidden, "config.json"), b, 0o644)

	for _, tc := range []struct {
		name, model, out string
		samples          []quantize.Sample
		want             []string
	}{
		{"no config", empty, "", samples, []string{"config.json"}},
		{"unsupported architecture", badArch, "", samples, []string{"gpt2", "mistral", "llama"}},
		{"dimension does not allow bits", stories, "", samples, []string{"model.layers.0.mlp.gate_proj", "172", "4 bits"}},
		{"config disagrees with the weights", wrongHidden, "", samples, []string{`"model.embed_tokens.weight"`, "shape [32002 256], want [32002 512]", "hidden_size 512"}},
		{"output exists", modelDir, exists, samples, []string{exists, "--force"}},
		{"no samples", modelDir, "", nil, []string{"calibration samples"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := tc.out
			if out == "" {
				out = filepath.Join(t.TempDir(), "q")
			}
			_, err := publish.Quantize(context.Background(), publish.RunOptions{
				ModelDir: tc.model, Out: out, Branches: []publish.Branch{mainBranch},
				Sym: true, TrueSequential: true, Samples: tc.samples, Backend: cpu.New(1),
			})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tc.out == "" {
				if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("output %s left behind after the error", out)
				}
				if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".*")); len(left) > 0 {
					t.Errorf("temporary files left behind: %v", left)
				}
			}
		})
	}
}

// TestRTNWritesNoActOrder: round to nearest takes the columns in order, so
// a branch asking for act order is written with desc_act false in both
// configs (g_idx is k/group_size), which keeps loaders on their fast path.
func TestRTNWritesNoActOrder(t *testing.T) {
	out := filepath.Join(t.TempDir(), "q")
	_, err := publish.Quantize(context.Background(), publish.RunOptions{
		ModelDir: fixture(t, "models/stories260K-hf-mistral"), Out: out, RTN: true, Sym: true, Backend: cpu.New(1),
		Branches: []publish.Branch{{Name: "b", Bits: 8, GroupSize: 32, DescAct: true, Damp: 0.1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	qc, src, err := gptq.ReadQuantizeConfig(out)
	if err != nil {
		t.Fatal(err)
	}
	if qc.DescAct {
		t.Errorf("%s: desc_act true for a round-to-nearest checkpoint", src)
	}
	if err := gptq.CheckAgreement(out, qc, src, false); err != nil {
		t.Error(err)
	}
}

// TestQuantizeProtectsTheModel: --out may not be the model, hold it or lie
// inside it, even with --force (replacing it would delete the model).
func TestQuantizeProtectsTheModel(t *testing.T) {
	src := fixture(t, "models/stories260K-hf-mistral")
	parent := t.TempDir()
	modelDir := filepath.Join(parent, "m")
	os.Mkdir(modelDir, 0o755)
	for _, f := range []string{"config.json", "model.safetensors"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(modelDir, f), data, 0o644)
	}
	br := []publish.Branch{{Name: "b", Bits: 8, GroupSize: -1, Damp: 0.01}}
	for _, out := range []string{modelDir, parent, filepath.Join(modelDir, "q"), modelDir + "/."} {
		_, err := publish.Quantize(context.Background(), publish.RunOptions{
			ModelDir: modelDir, Out: out, Branches: br, RTN: true, Sym: true, Force: true, Backend: cpu.New(1),
		})
		if err == nil || !strings.Contains(err.Error(), "choose another --out") {
			t.Errorf("--out %s: err = %v, want a refusal", out, err)
		}
	}
	if _, err := os.Stat(filepath.Join(modelDir, "model.safetensors")); err != nil {
		t.Fatalf("the model was damaged: %v", err)
	}
}

// TestTableFailureLeavesNothing: a branch table that fails before any
// branch is complete leaves no directory, so the same command can be rerun.
func TestTableFailureLeavesNothing(t *testing.T) {
	stories := fixture(t, "models/stories260K-hf-mistral")
	out := filepath.Join(t.TempDir(), "table")
	_, err := publish.Quantize(context.Background(), publish.RunOptions{
		ModelDir: stories, Out: out, Table: true, RTN: true, Sym: true, Backend: cpu.New(1),
		Branches: []publish.Branch{{Name: "8bit", Bits: 8, GroupSize: -1, Damp: 0.01}, mainBranch}, // 4-bit cannot pack K=172
	})
	if err == nil {
		t.Fatal("no error")
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed table run left %s behind", out)
	}
}

// TestQuantizeInterrupted checks that a cancelled run leaves nothing that
// looks like a checkpoint.
func TestQuantizeInterrupted(t *testing.T) {
	modelDir := fixture(t, "models/openchat-tiny")
	// The reference driver, and the device driver (here on the CPU).
	for _, solver := range []quantize.Solver{nil, quantize.HostSolver{}} {
		parent := t.TempDir()
		out := filepath.Join(parent, "q")
		ctx, cancel := context.WithCancel(context.Background())
		_, err := publish.Quantize(ctx, publish.RunOptions{
			ModelDir: modelDir, Out: out, Branches: []publish.Branch{mainBranch}, Sym: true, TrueSequential: true,
			Samples: []quantize.Sample{{IDs: make([]int, 64)}}, Backend: cpu.New(1), Solver: solver,
			Progress: func(string, int, int) { cancel() }, // interrupt after the first module
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("solver %v: err = %v, want context.Canceled", solver, err)
		}
		if entries, _ := os.ReadDir(parent); len(entries) != 0 {
			t.Errorf("solver %v: interrupted run left %d entries in %s", solver, len(entries), parent)
		}
	}
}

// TestShardedBF16Input quantizes a model stored like the real
// openchat-3.5-1210 repository — bf16, sharded with an index, untied head —
// here stories260K converted to that layout, at 8 bits (its intermediate
// size 172 allows 8-bit packing but not 4-bit), and writes a sharded output.
func TestShardedBF16Input(t *testing.T) {
	src := fixture(t, "models/stories260K-hf-mistral")
	set, err := safetensors.OpenDir(src)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	dir := t.TempDir()
	var infos []safetensors.TensorInfo
	for _, n := range set.Names() {
		tt, _ := set.Tensor(n)
		infos = append(infos, safetensors.TensorInfo{Name: n, DType: safetensors.BF16, Shape: tt.Shape})
	}
	w, err := safetensors.Create(dir, infos, safetensors.WriterOptions{MaxShardBytes: 200_000})
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range infos {
		tt, _ := set.Tensor(info.Name)
		f, err := tt.Float32()
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 2*len(f))
		half.F32ToBF16Bytes(b, f)
		if err := w.Write(info.Name, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "tokenizer.json", "tokenizer_config.json"} {
		data, _ := os.ReadFile(filepath.Join(src, f))
		os.WriteFile(filepath.Join(dir, f), data, 0o644)
	}
	if shards, _ := filepath.Glob(filepath.Join(dir, "model-*-of-*.safetensors")); len(shards) < 2 {
		t.Fatalf("input has %d shards, want several", len(shards))
	}

	samples := make([]quantize.Sample, 8)
	for i := range samples {
		ids := make([]int, 64)
		for j := range ids {
			ids[j] = (i*131 + j*17) % 512
		}
		samples[i] = quantize.Sample{IDs: ids}
	}
	out := filepath.Join(t.TempDir(), "q")
	_, err = publish.Quantize(context.Background(), publish.RunOptions{
		ModelDir: dir, Out: out, Branches: []publish.Branch{{Name: "8bit", Bits: 8, GroupSize: -1, DescAct: true, Damp: 0.1}},
		Sym: true, TrueSequential: true, Samples: samples, Backend: cpu.New(0), MaxShardBytes: 100_000,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "model.safetensors.index.json")); err != nil {
		t.Errorf("sharded output has no index: %v", err)
	}
	rep, err := verify.CheckFormat(out)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Errorf("format check failed: %+v", rep.Checks)
	}
	// The 8-bit model still tells the story: greedy continuation equal to
	// the fp32 model's for the first tokens.
	ids := []int{1, 403, 407, 261, 378}
	want := greedy(t, src, ids, 8)
	if got := greedy(t, out, ids, 8); !slices.Equal(got, want) {
		t.Errorf("8-bit greedy %v, fp32 %v", got, want)
	}
}

func greedy(t *testing.T, dir string, prompt []int, n int) []int {
	t.Helper()
	m, err := model.Load(dir, cpu.New(0))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ids := slices.Clone(prompt)
	for range n {
		logits, err := m.Forward(ids, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		last := logits[(len(ids)-1)*m.Config.VocabSize:]
		best := 0
		for i, v := range last {
			if v > last[best] {
				best = i
			}
		}
		ids = append(ids, best)
	}
	return ids[len(prompt):]
}

// TestGitRepo writes a branch table and its git repository: one git branch
// per table branch holding exactly that checkpoint's files, HEAD on the
// first branch when there is no "main". Both paths are relative, as a user
// types them.
func TestGitRepo(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skipf("git not installed: %v", err)
	}
	stories, err := filepath.Abs(fixture(t, "models/stories260K-hf-mistral"))
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	out, repo := "table", "repo.git"
	branches := []publish.Branch{
		{Name: "gptq-8bit-128g-actorder_True", Bits: 8, GroupSize: 128, DescAct: true, Damp: 0.1},
		{Name: "gptq-8bit--1g-actorder_True", Bits: 8, GroupSize: -1, DescAct: true, Damp: 0.1},
	}
	_, err = publish.Quantize(context.Background(), publish.RunOptions{
		ModelDir: stories, Out: out, Table: true, GitRepo: repo, RTN: true, Sym: true, Backend: cpu.New(1), Branches: branches,
	})
	if err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) string {
		t.Helper()
		b, err := exec.Command("git", append([]string{"--git-dir", repo}, args...)...).Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(b))
	}
	if head := git("symbolic-ref", "HEAD"); head != "refs/heads/"+branches[0].Name {
		t.Errorf("HEAD = %s", head)
	}
	for _, b := range branches {
		want, err := os.ReadFile(filepath.Join(out, b.Name, "model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		if got := git("show", b.Name+":model.safetensors"); got != strings.TrimSpace(string(want)) {
			t.Errorf("branch %s: model.safetensors differs from %s", b.Name, filepath.Join(out, b.Name))
		}
		files := strings.Fields(git("ls-tree", "--name-only", b.Name))
		if !slices.Contains(files, "quantize_config.json") || !slices.Contains(files, ".gitattributes") {
			t.Errorf("branch %s holds %v", b.Name, files)
		}
	}
}

// TestForceOverOurOutputs: --force replaces what gptqtool wrote, including
// a conversion of a gptqtool checkpoint (its card keeps quantized_by and
// carries the input's other files) and a table holding a branch's partial
// output killed before its first record, or a record's temporary file; a
// table holding a file of the user's is refused, naming it.
func TestForceOverOurOutputs(t *testing.T) {
	q := rtnCheckpoint(t, 8, 128, true)
	os.WriteFile(filepath.Join(q, ".gitattributes"), []byte("*.safetensors filter=lfs\n"), 0o644) // as a Hub download has
	conv := filepath.Join(t.TempDir(), "v2")
	convert(t, publish.ConvertOptions{In: q, Out: conv, Format: gptq.FormatV2})
	if _, err := publish.Convert(context.Background(), publish.ConvertOptions{In: q, Out: conv, Format: gptq.FormatV2, Force: true}); err != nil {
		t.Errorf("--force over a conversion of a gptqtool checkpoint: %v", err)
	}

	out := filepath.Join(t.TempDir(), "table")
	opts := publish.RunOptions{ModelDir: fixture(t, "models/stories260K-hf-mistral"), Out: out, Table: true, RTN: true, Sym: true, Backend: cpu.New(1),
		Branches: []publish.Branch{{Name: "a", Bits: 8, GroupSize: 32, Damp: 0.1}, {Name: "b", Bits: 8, GroupSize: -1, Damp: 0.1}}}
	if _, err := publish.Quantize(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(out, "a.partial"), 0o755)
	os.WriteFile(filepath.Join(out, "a.partial", "gptqtool.lock"), nil, 0o644)
	os.WriteFile(filepath.Join(out, ".README.md.tmp-123"), []byte("x"), 0o644)
	opts.Force = true
	if _, err := publish.Quantize(context.Background(), opts); err != nil {
		t.Errorf("--force over a table with a fresh partial branch: %v", err)
	}
	os.WriteFile(filepath.Join(out, "notes.txt"), []byte("mine"), 0o644)
	if _, err := publish.Quantize(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "notes.txt") {
		t.Errorf("--force over a table holding notes.txt: %v, want a refusal naming it", err)
	}
}

// TestTableInterruptedKeepsBranches: a table interrupted before any layer
// of a later branch is complete keeps its complete branches for --resume and
// says so, where it was reported as leaving nothing.
func TestTableInterruptedKeepsBranches(t *testing.T) {
	stories := fixture(t, "models/stories260K-hf-mistral")
	out := filepath.Join(t.TempDir(), "table")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := publish.Quantize(ctx, publish.RunOptions{
		ModelDir: stories, Out: out, Table: true, RTN: true, Sym: true, Backend: cpu.New(1),
		Branches: []publish.Branch{{Name: "a", Bits: 8, GroupSize: -1, Damp: 0.01}, {Name: "b", Bits: 8, GroupSize: 64, Damp: 0.01}},
		Progress: func(job string, done, total int) {
			if job == "a" && done == total {
				cancel() // as a is complete, before any layer of b is
			}
		},
	})
	var se *publish.SuspendedError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want a SuspendedError keeping %s", err, out)
	}
	if want := out + " (1 of 2 branches complete)"; !slices.Contains(se.Kept, want) {
		t.Errorf("kept %q, want %q among them", se.Kept, want)
	}
	if _, err := os.Stat(filepath.Join(out, "a", "model.safetensors")); err != nil {
		t.Errorf("the complete branch is gone: %v", err)
	}
}
