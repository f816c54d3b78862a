package gguf_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/fused"
	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/formats/tokenizer"
	"github.com/gptqtool/gptqtool/formats/weights"
	"github.com/gptqtool/gptqtool/runtime/cpu"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// fixture returns a shared fixture ($GPTQTOOL_FIXTURES, else
// ../shared/fixtures beside the checkout), skipping the test naming the
// missing path.
func fixture(t testing.TB, rel string) string {
	t.Helper()
	dir := os.Getenv("GPTQTOOL_FIXTURES")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "fixtures")
	}
	p := filepath.Join(dir, rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("fixture %s missing: %v", p, err)
	}
	return p
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// checkpoint is an opened Hugging Face checkpoint directory.
type checkpoint struct {
	dir string
	set *safetensors.Set
	cfg *hfconfig.Config
	tok *tokenizer.Tokenizer
}

func openCheckpoint(t testing.TB, rel string) *checkpoint {
	t.Helper()
	return openCheckpointDir(t, fixture(t, rel))
}

// openCheckpointDir opens the checkpoint in dir: its tensors, config and
// tokenizer.
func openCheckpointDir(t testing.TB, dir string) *checkpoint {
	t.Helper()
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	cfg, err := hfconfig.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &checkpoint{dir: dir, set: set, cfg: cfg, tok: tok}
}

// converted is a checkpoint written to GGUF in one type.
type converted struct {
	typ  gguf.TensorType
	path string
	res  *gguf.ConvertResult
	file *gguf.File
}

// convert converts ck with every 2-D weight in typ: with fullImatrix's
// importances for imatrixTypes, which llama-quantize writes only with an
// importance matrix (Convert refuses them without), else without.
func convert(t testing.TB, ck *checkpoint, typ gguf.TensorType) *converted {
	t.Helper()
	opts := gguf.ConvertOptions{Type: typ}
	if slices.Contains(imatrixTypes, typ) {
		opts.Imatrix = fullImatrix(ck)
	}
	return convertWith(t, ck, typ, opts)
}

// convertWith converts ck with opts into a temporary file, read back; typ
// names it (and picks the tolerances of the checks that take one).
func convertWith(t testing.TB, ck *checkpoint, typ gguf.TensorType, opts gguf.ConvertOptions) *converted {
	t.Helper()
	name := typ.String()
	if opts.Mix.Name != "" {
		name = opts.Mix.Name
	}
	path := filepath.Join(t.TempDir(), filepath.Base(ck.dir)+"-"+name+".gguf")
	var w gguf.Weights = ck.set
	if ck.cfg.FusedExperts() {
		w = fusedView(t, ck.set, ck.cfg)
	}
	res, err := gguf.FromCheckpoint(path, w, ck.cfg, ck.tok, opts)
	if err != nil {
		t.Fatalf("convert %s to %s: %v", ck.dir, name, err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatalf("reading back %s: %v", path, err)
	}
	t.Cleanup(func() { f.Close() })
	return &converted{typ: typ, path: path, res: res, file: f}
}

// llamaDiff compares llama.cpp's next-token log-probabilities (nil where
// it reported none), renormalized, with ours, prompt by prompt, and
// returns the worst.
func llamaDiff(t testing.TB, llama [][]*float64, ours [][]float64, vocab int) diff {
	t.Helper()
	var ds []diff
	for j, lp := range llama {
		if len(lp) != vocab {
			t.Fatalf("prompt %d: llama.cpp gave %d probabilities, want %d", j, len(lp), vocab)
		}
		g := make([]float64, len(lp))
		sum := 0.0
		for k, v := range lp {
			g[k] = math.NaN()
			if v != nil {
				g[k] = *v
				sum += math.Exp(*v)
			}
		}
		// llama.cpp's probabilities are a float32 softmax over the
		// vocabulary, whose sum is off 1 by its rounding (±1e-6 to 1e-4
		// measured): a shift of every log p alike, which KL counts in full
		// (a 32064-id phi3's F32 file: KL 1.6e-6, max|Δlogp| 1.2e-5).
		// Renormalized, so that the comparison measures the logits.
		for k := range g {
			g[k] -= math.Log(sum)
		}
		ds = append(ds, compare(g, ours[j]))
	}
	return worst(ds)
}

// ggufWeights serves a converted file to the runtime under Hugging Face
// names: each tensor dequantized to F32 and, for a llama file's
// q_proj/k_proj, the head permutation undone. Running the runtime on it shows what the GGUF
// file holds, independently of llama.cpp.
type ggufWeights struct {
	c       *converted
	cfg     *hfconfig.Config
	sources map[string]gguf.ConvertedTensor
}

func newGGUFWeights(c *converted, cfg *hfconfig.Config) *ggufWeights {
	w := &ggufWeights{c: c, cfg: cfg, sources: map[string]gguf.ConvertedTensor{}}
	for _, ct := range c.res.Tensors {
		w.sources[ct.Source] = ct
	}
	return w
}

func (w *ggufWeights) float32(name string) ([]float32, []int, error) {
	ct, ok := w.sources[name]
	if !ok {
		return nil, nil, fmt.Errorf("%s: no tensor converted from %q: %w", w.c.path, name, fs.ErrNotExist)
	}
	vals, err := w.c.file.Float32(ct.Name)
	if err != nil {
		return nil, nil, err
	}
	heads := 0
	switch {
	case gguf.Arch(w.cfg) != "llama":
		// (qwen2's and qwen3's rows keep Hugging Face's order: llama.cpp
		// rotates them by halves)
	case strings.HasSuffix(name, ".q_proj.weight"):
		heads = w.cfg.NumAttentionHeads
	case strings.HasSuffix(name, ".k_proj.weight"):
		heads = w.cfg.NumKeyValueHeads
	}
	if heads > 0 {
		out := make([]float32, len(vals))
		if err := gguf.UnpermuteQK(out, vals, ct.Shape[0], ct.Shape[1], heads); err != nil {
			return nil, nil, err
		}
		vals = out
	}
	return vals, ct.Shape, nil
}

func (w *ggufWeights) Tensor(name string) (safetensors.Tensor, error) {
	vals, shape, err := w.float32(name)
	if err != nil {
		return safetensors.Tensor{}, err
	}
	data := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	return safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: name, DType: safetensors.F32, Shape: shape}, Data: data, File: w.c.path}, nil
}

// Names, Infos, Files and Close make ggufWeights a weights.Set (for
// package fused, which reads a phi3 file's fused tensors as their parts:
// fusedView): the tensors converted from a Hugging Face tensor, F32.
func (w *ggufWeights) Names() []string {
	var names []string
	for _, ti := range w.Infos() {
		names = append(names, ti.Name)
	}
	return names
}

func (w *ggufWeights) Infos() []safetensors.TensorInfo {
	var infos []safetensors.TensorInfo
	for _, ct := range w.c.res.Tensors {
		if ct.Source != "" {
			infos = append(infos, safetensors.TensorInfo{Name: ct.Source, DType: safetensors.F32, Shape: ct.Shape})
		}
	}
	return infos
}

func (w *ggufWeights) Files() []string { return []string{w.c.path} }
func (w *ggufWeights) Close() error    { return nil }

// fusedView returns w as the runtime binds it: for a model whose Linears
// are fused (phi3), w through package fused, which gives the parts.
func fusedView(t testing.TB, w weights.Set, cfg *hfconfig.Config) model.Weights {
	t.Helper()
	if cfg.FusedExperts() {
		x, err := fused.OpenExperts(w, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	mods := fused.Modules(cfg)
	if mods == nil {
		return w
	}
	fs, err := fused.Open(w, cfg.NumHiddenLayers, mods)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func loadRuntime(t testing.TB, w model.Weights, cfg *hfconfig.Config) *model.Model {
	t.Helper()
	m, err := model.FromWeights(w, cfg, nil, cpu.New(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// logSoftmax returns log-probabilities in float64.
func logSoftmax(logits []float32) []float64 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v) - mx)
	}
	lse := mx + math.Log(sum)
	out := make([]float64, len(logits))
	for i, v := range logits {
		out[i] = float64(v) - lse
	}
	return out
}

// nextLogProbs returns the runtime's log-probabilities of the token after
// each prompt.
func nextLogProbs(t testing.TB, m *model.Model, prompts [][]int) [][]float64 {
	t.Helper()
	var out [][]float64
	for _, p := range prompts {
		c := m.NewCache(len(p))
		lg, err := m.ForwardLast(p, c, nil)
		c.Free()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, logSoftmax(lg))
	}
	return out
}

// greedy continues prompt with the runtime until total ids.
func greedy(t testing.TB, m *model.Model, prompt []int, total int) []int {
	t.Helper()
	c := m.NewCache(total)
	defer c.Free()
	ids := slices.Clone(prompt)
	next := prompt
	for len(ids) < total {
		lg, err := m.ForwardLast(next, c, nil)
		if err != nil {
			t.Fatal(err)
		}
		id := argmax(lg)
		ids = append(ids, id)
		next = []int{id}
	}
	return ids
}

func argmax[T float32 | float64](x []T) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// diff compares two distributions over the vocabulary given as
// log-probabilities (got may hold NaN where the reader reported nothing).
type diff struct {
	maxAbs  float64 // max |Δ log p| over all tokens, rare ones included
	nmse    float64 // Σ(Δ log p)² / Σ(log p − mean)²: the error relative to the spread of the logits
	kl      float64 // KL(want ‖ got) in nats, llama-perplexity's measure of a quantization
	argmax  bool    // same most likely token
	missing int     // tokens got lacks
}

func compare(got, want []float64) diff {
	var d diff
	var mean float64
	for _, v := range want {
		mean += v
	}
	mean /= float64(len(want))
	var num, den float64
	for i, w := range want {
		den += (w - mean) * (w - mean)
		if math.IsNaN(got[i]) {
			d.missing++
			continue
		}
		e := got[i] - w
		num += e * e
		d.maxAbs = math.Max(d.maxAbs, math.Abs(e))
		d.kl -= math.Exp(w) * e
	}
	d.nmse = num / den
	gotArg := 0
	for i, v := range got {
		if !math.IsNaN(v) && (math.IsNaN(got[gotArg]) || v > got[gotArg]) {
			gotArg = i
		}
	}
	d.argmax = gotArg == argmax(want)
	return d
}

// worst merges the diffs of several prompts.
func worst(ds []diff) diff {
	var w diff
	w.argmax = true
	for _, d := range ds {
		w.maxAbs = math.Max(w.maxAbs, d.maxAbs)
		w.nmse = math.Max(w.nmse, d.nmse)
		w.kl = math.Max(w.kl, d.kl)
		w.argmax = w.argmax && d.argmax
		w.missing += d.missing
	}
	return w
}

func (d diff) String() string {
	return fmt.Sprintf("max|Δlogp| %.3g, NMSE %.3g, KL %.3g, argmax agrees %v, missing %d", d.maxAbs, d.nmse, d.kl, d.argmax, d.missing)
}

// tolerance bounds a diff; argmax must always agree and nothing be
// missing.
type tolerance struct {
	maxAbs, nmse, kl float64
}

func (tol tolerance) check(t testing.TB, what string, d diff) {
	t.Helper()
	if d.maxAbs > tol.maxAbs || d.nmse > tol.nmse || d.kl > tol.kl || !d.argmax || d.missing > 0 {
		t.Errorf("%s: %v; want max|Δlogp| ≤ %.3g, NMSE ≤ %.3g, KL ≤ %.3g, argmax agreeing, none missing", what, d, tol.maxAbs, tol.nmse, tol.kl)
	}
}

// tinyGreedy reads openchat-tiny's reference greedy run (reference.json's
// greedy_fp32 in dir): its prompt, and the ids from the prompt on.
func tinyGreedy(t testing.TB, dir string) (prompt, ids []int) {
	t.Helper()
	var ref struct {
		Greedy struct {
			Prompt []int `json:"prompt_ids"`
			IDs    []int `json:"ids"`
		} `json:"greedy_fp32"`
	}
	readJSON(t, filepath.Join(dir, "reference.json"), &ref)
	return ref.Greedy.Prompt, ref.Greedy.IDs
}

// tinyPrompts are the prompts whose next-token distributions the
// openchat-tiny tests compare: the greedy run's prompt, its first 40 ids,
// BOS alone.
func tinyPrompts(t testing.TB, dir string) [][]int {
	t.Helper()
	prompt, ids := tinyGreedy(t, dir)
	return [][]int{prompt, ids[:40], {1}}
}
