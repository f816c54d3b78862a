package verify_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/synth"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/publish"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
	"github.com/gptqtool/gptqtool/verify"
)

func fixture(t *testing.T, rel string) string { t.Helper(); return fixtures.Path(t, rel) }

func TestCrossEntropy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		logits []float32
		target int
		want   float64
	}{
		{"uniform over 4", []float32{0, 0, 0, 0}, 2, math.Log(4)},
		{"two classes", []float32{0, float32(math.Log(3))}, 1, math.Log(4.0 / 3)},     // p = 3/4
		{"shift invariant", []float32{80, 80 + float32(math.Log(3))}, 0, math.Log(4)}, // exp(80) overflows float32 without the max subtracted
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := verify.CrossEntropy(tc.logits, tc.target); math.Abs(got-tc.want) > 1e-5 {
				t.Errorf("CrossEntropy = %.8f, want %.8f", got, tc.want)
			}
		})
	}
}

func TestWindows(t *testing.T) {
	for _, tc := range []struct{ n, ctx, max, want int }{
		{328880, 1024, 0, 321}, // reference.json: 321 windows of wiki.test.raw at ctx 1024
		{328880, 1024, 16, 16},
		{1023, 1024, 0, 0},
		{2048, 1024, 0, 2},
	} {
		if got := verify.Windows(tc.n, tc.ctx, tc.max); got != tc.want {
			t.Errorf("Windows(%d, %d, %d) = %d, want %d", tc.n, tc.ctx, tc.max, got, tc.want)
		}
	}
}

// TestPerplexityReference reproduces reference.json's transformers fp32
// figure on the first 16 windows of 1024 tokens (130.0166) within 0.05%.
func TestPerplexityReference(t *testing.T) {
	if testing.Short() {
		t.Skip("16 windows of openchat-tiny: the runtime's own test covers a shorter run")
	}
	m, err := model.Load(fixture(t, "models/openchat-tiny"), cpu.New(0))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, err := verify.Perplexity(context.Background(), m, fixtures.WikiIDs(t), verify.PerplexityOptions{Ctx: 1024, MaxWindows: 16})
	if err != nil {
		t.Fatal(err)
	}
	if r.Windows != 16 || r.Tokens != 16*1024 || r.Scored != 16*1023 {
		t.Errorf("windows %d tokens %d scored %d, want 16, 16384, 16368", r.Windows, r.Tokens, r.Scored)
	}
	if rel := math.Abs(r.PPL/130.0166 - 1); rel > 5e-4 {
		t.Errorf("ppl %.4f, reference 130.0166 (off by %.3f%%)", r.PPL, 100*rel)
	}
}

// TestKLAgainstItself: a model's KL from itself is 0 and its argmaxes agree.
func TestKLAgainstItself(t *testing.T) {
	dir := fixture(t, "models/stories260K-hf-mistral")
	m, err := model.Load(dir, cpu.New(0))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ids := []int{1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338}
	r, err := verify.KL(context.Background(), m, m, ids, verify.PerplexityOptions{Ctx: 8})
	if err != nil {
		t.Fatal(err)
	}
	if r.MeanKL > 1e-9 || r.Top1Agree != 1 || r.PPL != r.BaselinePPL || r.Windows != 2 || r.Tokens != 16 {
		t.Errorf("self KL: %+v", r)
	}
}

func TestPerplexityErrors(t *testing.T) {
	m, err := model.Load(fixture(t, "models/stories260K-hf-mistral"), cpu.New(1))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, tc := range []struct {
		name string
		ids  []int
		ctx  int
		want string
	}{
		{"ctx too small", []int{1, 2, 3}, 1, "at least 2"},
		{"text shorter than a window", []int{1, 2, 3}, 8, "fewer than one window"},
		{"ctx beyond the model", make([]int, 1024), 1024, "max_position_embeddings 512"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := verify.Perplexity(context.Background(), m, tc.ids, verify.PerplexityOptions{Ctx: tc.ctx})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestInspectFixtures(t *testing.T) {
	for _, tc := range []struct {
		dir      string
		params   int64
		dtype    string
		tensors  int
		layers   int
		tied     bool
		hasQuant bool
	}{
		{"models/openchat-tiny", 13504256, "F16", 56, 6, true, false},
		{"models/stories260K-hf-mistral", 292800, "F32", 48, 5, false, false},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			r, err := verify.Inspect(fixture(t, tc.dir))
			if err != nil {
				t.Fatal(err)
			}
			if r.NumParameters != tc.params || r.TensorElements != tc.params {
				t.Errorf("parameters %d (tensor elements %d), want %d", r.NumParameters, r.TensorElements, tc.params)
			}
			if r.DTypes[tc.dtype] != tc.tensors || len(r.DTypes) != 1 || r.NumTensors != tc.tensors {
				t.Errorf("dtypes %v, %d tensors, want %d %s", r.DTypes, r.NumTensors, tc.tensors, tc.dtype)
			}
			if r.NumHiddenLayers != tc.layers || r.TieWordEmbeddings != tc.tied || (r.Quantization != nil) != tc.hasQuant {
				t.Errorf("layers %d tied %v quant %v", r.NumHiddenLayers, r.TieWordEmbeddings, r.Quantization)
			}
			if r.SizeBytes <= 0 || len(r.Files) != 1 || r.Files[0] != "model.safetensors" {
				t.Errorf("files %v size %d", r.Files, r.SizeBytes)
			}
		})
	}
}

// TestInspectRefusesTruncated: a truncated safetensors file is refused with
// an error naming the file.
func TestInspectRefusesTruncated(t *testing.T) {
	src := fixture(t, "models/stories260K-hf-mistral")
	dir := t.TempDir()
	for _, f := range []string{"config.json", "model.safetensors"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "model.safetensors" {
			data = data[:len(data)/2]
		}
		os.WriteFile(filepath.Join(dir, f), data, 0o644)
	}
	_, err := verify.Inspect(dir)
	if err == nil || !strings.Contains(err.Error(), "model.safetensors") {
		t.Fatalf("err = %v, want an error naming model.safetensors", err)
	}
}

// TestInspectNoWeights: a directory with a config and no weight file of any
// format is told it has no weights, not which PyTorch files it lacks.
func TestInspectNoWeights(t *testing.T) {
	src := fixture(t, "models/stories260K-hf-mistral")
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644)
	_, err = verify.Inspect(dir)
	if err == nil || !strings.Contains(err.Error(), dir+": no weights (*.safetensors") {
		t.Fatalf("err = %v, want %s: no weights (*.safetensors, ...)", err, dir)
	}
}

// rtnCheckpoint quantizes openchat-tiny with RTN at 4 bits, group 128, into
// a temporary directory.
func rtnCheckpoint(t *testing.T) string {
	t.Helper()
	modelDir := fixture(t, "models/openchat-tiny")
	dir := filepath.Join(t.TempDir(), "q")
	_, err := publish.Quantize(context.Background(), publish.RunOptions{
		ModelDir: modelDir, Out: dir, RTN: true, Sym: true, TrueSequential: true, Backend: cpu.New(1),
		Branches: []publish.Branch{{Name: "q", Bits: 4, GroupSize: 128, Damp: 0.01}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestCheckFormatCatchesCorruption quantizes openchat-tiny (RTN, instant),
// checks that the format check passes, then breaks one zero point and one
// g_idx and checks that the right checks fail and name the tensor.
func TestCheckFormatCatchesCorruption(t *testing.T) {
	dir := rtnCheckpoint(t)
	r, err := verify.CheckFormat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK {
		t.Fatalf("fresh checkpoint fails the format check: %+v", r.Checks)
	}
	fixtures.RewriteTensors(t, dir, func(tt *safetensors.Tensor) bool {
		switch tt.Name {
		case "model.layers.2.mlp.up_proj.qzeros":
			binary.LittleEndian.PutUint32(tt.Data, 0x77777778) // one zero point of 9
		case "model.layers.3.self_attn.o_proj.g_idx":
			binary.LittleEndian.PutUint32(tt.Data, 1) // column 0 in group 1 without act order
		}
		return true
	})
	r, err = verify.CheckFormat(dir)
	if err != nil {
		t.Fatal(err)
	}
	failed := map[string]string{}
	for _, c := range r.Checks {
		if !c.OK {
			failed[c.Name] = c.Detail
		}
	}
	if r.OK || len(failed) != 2 {
		t.Fatalf("want exactly 2 failed checks, got %v", failed)
	}
	for name, detail := range failed {
		switch {
		case strings.HasPrefix(name, "sym zero points"):
			if !strings.Contains(detail, "model.layers.2.mlp.up_proj.qzeros") {
				t.Errorf("zero check detail %q does not name the tensor", detail)
			}
		case strings.HasPrefix(name, "g_idx"):
			if !strings.Contains(detail, "model.layers.3.self_attn.o_proj.g_idx[0]") {
				t.Errorf("g_idx check detail %q does not name the tensor", detail)
			}
		default:
			t.Errorf("unexpected failed check %q: %s", name, detail)
		}
	}
}

// TestCheckFormatCountsModulesRead: a module whose tensors fail the dtype and
// shape check is not read, so the checks of the values (zero points, g_idx,
// scales) say how many of openchat-tiny's 42 Linears (6 layers × 7) they
// looked at, where they counted all 42 as checked.
func TestCheckFormatCountsModulesRead(t *testing.T) {
	dir := rtnCheckpoint(t)
	const bad = "model.layers.1.mlp.down_proj.scales"
	fixtures.RewriteTensors(t, dir, func(tt *safetensors.Tensor) bool {
		if tt.Name == bad {
			tt.DType = safetensors.BF16 // the same bytes, the wrong dtype
		}
		return true
	})
	r, err := verify.CheckFormat(dir)
	if err != nil {
		t.Fatal(err)
	}
	const want = "41 of 42 modules checked (1 failed the dtype and shape check)"
	seen := 0
	for _, c := range r.Checks {
		switch {
		case strings.HasPrefix(c.Name, "quantized tensors"):
			if c.OK || !strings.Contains(c.Detail, bad) {
				t.Errorf("%s: ok %v, detail %q, want a failure naming %s", c.Name, c.OK, c.Detail, bad)
			}
		case strings.HasPrefix(c.Name, "sym zero points"), strings.HasPrefix(c.Name, "g_idx"), strings.HasPrefix(c.Name, "scales"):
			seen++
			if !c.OK || c.Detail != want {
				t.Errorf("%s: ok %v, detail %q, want ok with %q", c.Name, c.OK, c.Detail, want)
			}
		}
	}
	if seen != 3 {
		t.Errorf("%d checks of the values, want 3 (zero points, g_idx, scales): %+v", seen, r.Checks)
	}
}

// TestCheckFormatNothingRead: with bits wrong in the configs (8 for a 4-bit
// checkpoint) no module passes the dtype and shape check, and the checks of
// the values, which then looked at nothing, fail saying they were not
// checked and why, where they said ok with "0 of 42 modules checked".
func TestCheckFormatNothingRead(t *testing.T) {
	dir := rtnCheckpoint(t)
	for _, f := range []string{"config.json", "quantize_config.json"} {
		path := filepath.Join(dir, f)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		qc := doc
		if f == "config.json" {
			qc = doc["quantization_config"].(map[string]any)
		}
		qc["bits"] = 8
		if data, err = json.Marshal(doc); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, err := verify.CheckFormat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.OK {
		t.Errorf("report ok with bits 8 in the configs of a 4-bit checkpoint")
	}
	const want = "not checked: none of the 42 modules passed the dtype and shape check"
	seen := 0
	for _, c := range r.Checks {
		switch {
		case strings.HasPrefix(c.Name, "quantized tensors"):
			if c.OK {
				t.Errorf("%s: ok, want a failure", c.Name)
			}
		case strings.HasPrefix(c.Name, "sym zero points"), strings.HasPrefix(c.Name, "g_idx"), strings.HasPrefix(c.Name, "scales"):
			seen++
			if c.OK || c.Detail != want {
				t.Errorf("%s: ok %v, detail %q, want not ok with %q", c.Name, c.OK, c.Detail, want)
			}
		}
	}
	if seen != 3 {
		t.Errorf("%d checks of the values, want 3 (zero points, g_idx, scales): %+v", seen, r.Checks)
	}
}

// TestInspectBiases: a Qwen2 checkpoint's q/k/v biases are counted as
// config.json counts them; a llama config's attention_bias over weights
// without biases (the model transformers builds, biases zeros) is no
// problem, and one whose biases are there counts them.
func TestInspectBiases(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   map[string]any
		strip  bool
		biases int64 // bias parameters in the files
	}{
		// 2 layers of q 64 + k 32 + v 32.
		{"qwen2", nil, false, 2 * 128},
		{"llama attention_bias", map[string]any{"model_type": "llama", "attention_bias": true, "use_sliding_window": nil}, false, 2 * (128 + 64)},
		{"llama attention_bias absent", map[string]any{"model_type": "llama", "attention_bias": true, "use_sliding_window": nil}, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := fixtures.Qwen2(t, tc.edit, synth.Options{DType: "f32", Seed: 1})
			if tc.strip {
				fixtures.RewriteTensors(t, dir, func(tn *safetensors.Tensor) bool { return !strings.HasSuffix(tn.Name, ".bias") })
			}
			r, err := verify.Inspect(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Problems) > 0 {
				t.Errorf("problems: %v", r.Problems)
			}
			if r.NumParameters != r.TensorElements || r.TensorElements == 0 {
				t.Errorf("parameters %d, tensor elements %d", r.NumParameters, r.TensorElements)
			}
			var biases int64
			set, _ := fixtures.OpenCheckpoint(t, dir)
			for _, ti := range set.Infos() {
				if strings.HasSuffix(ti.Name, ".bias") {
					biases += int64(ti.NumElements())
				}
			}
			if biases != tc.biases {
				t.Errorf("%d bias parameters in the files, want %d", biases, tc.biases)
			}
		})
	}
}
