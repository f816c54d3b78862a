package model

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/internal/fixtures"
	"github.com/gptqtool/gptqtool/runtime/cpu"
)

// TestCheckShapes: a config whose sizes disagree with the weights is
// reported tensor by tensor, the first three with both shapes and a count
// of the rest; tensors the config does not explain are left to
// CheckExplained.
func TestCheckShapes(t *testing.T) {
	dir := fixture(t, "models/stories260K-hf-mistral")
	set, cfg := fixtures.OpenCheckpoint(t, dir)
	for _, tc := range []struct {
		name string
		edit func(c *hfconfig.Config)
		want []string // substrings of the error; none: no error
	}{
		{"sound", func(c *hfconfig.Config) {}, nil},
		{"intermediate_size", func(c *hfconfig.Config) { c.IntermediateSize = 200 }, []string{
			"15 tensors of another shape than the config gives",
			"intermediate_size 200",
			`tensor "model.layers.0.mlp.down_proj.weight": shape [64 172], want [64 200]`,
			`tensor "model.layers.0.mlp.gate_proj.weight": shape [172 64], want [200 64]`,
			"; and 12 more",
		}},
		{"vocab_size", func(c *hfconfig.Config) { c.VocabSize = 500 }, []string{
			"2 tensors of another shape",
			`tensor "lm_head.weight": shape [512 64], want [500 64]; tensor "model.embed_tokens.weight": shape [512 64], want [500 64]`,
		}},
		{"fewer layers", func(c *hfconfig.Config) { c.NumHiddenLayers = 3 }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := *cfg
			tc.edit(&c)
			err := CheckShapes(dir, set.Infos(), &c, nil)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrMisshapen) {
				t.Fatalf("err = %v, want one wrapping ErrMisshapen", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, lacks %q", err, w)
				}
			}
			if strings.Contains(tc.name, "vocab") && strings.Contains(err.Error(), "more") {
				t.Errorf("err = %v counts more tensors than it names", err)
			}
		})
	}
}

// TestWantShape: the shapes of a GPTQ checkpoint's tensors (spec §1.1) for
// stories260K's q_proj and k_proj (K 64, N 64 and 32) at 4 bits, one group.
func TestWantShape(t *testing.T) {
	_, cfg := fixtures.OpenCheckpoint(t, fixture(t, "models/stories260K-hf-mistral"))
	q := gptq.DefaultQuantizeConfig()
	q.Bits, q.GroupSize = 4, 128
	for _, tc := range []struct {
		name  string
		quant *gptq.QuantizeConfig
		want  []int
	}{
		{"model.layers.1.self_attn.q_proj.qweight", &q, []int{8, 64}},
		{"model.layers.1.self_attn.k_proj.qweight", &q, []int{8, 32}},
		{"model.layers.1.self_attn.k_proj.qzeros", &q, []int{1, 4}},
		{"model.layers.1.self_attn.k_proj.scales", &q, []int{1, 32}},
		{"model.layers.1.self_attn.k_proj.g_idx", &q, []int{64}},
		{"model.layers.1.self_attn.k_proj.weight", nil, []int{32, 64}},
		{"model.layers.1.mlp.down_proj.weight", nil, []int{64, 172}},
		{"model.layers.1.post_attention_layernorm.weight", nil, []int{64}},
		{"lm_head.weight", nil, []int{512, 64}},
		{"model.layers.1.self_attn.k_proj.qweight", nil, nil}, // not explained without quant
		{"model.layers.5.self_attn.k_proj.weight", nil, nil},  // past num_hidden_layers
		{"model.layers.1.self_attn.rotary_emb.inv_freq", nil, nil},
	} {
		if got := WantShape(tc.name, cfg, tc.quant); !slices.Equal(got, tc.want) {
			t.Errorf("WantShape(%s, quant %v) = %v, want %v", tc.name, tc.quant != nil, got, tc.want)
		}
	}
}

// TestCheck: Check passes a sound checkpoint and refuses, naming the file,
// what Load refuses before binding a tensor: a truncated weight file, a
// config whose sizes disagree with the weights, tensors it lacks. It binds
// nothing, so it needs no backend.
func TestCheck(t *testing.T) {
	src := fixture(t, "models/stories260K-hf-mistral")
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, dir string)
		want string // a substring of the error; "": no error
	}{
		{"sound", func(*testing.T, string) {}, ""},
		{"truncated", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, "model.safetensors"), 600_000); err != nil {
				t.Fatal(err)
			}
		}, "model.safetensors: tensor "},
		{"intermediate_size", func(t *testing.T, dir string) {
			editConfig(t, dir, `"intermediate_size": 172`, `"intermediate_size": 200`)
		}, `tensor "model.layers.0.mlp.down_proj.weight": shape [64 172], want [64 200]`},
		{"more layers", func(t *testing.T, dir string) {
			editConfig(t, dir, `"num_hidden_layers": 5`, `"num_hidden_layers": 6`)
		}, "missing (model.layers.5.input_layernorm.weight"},
		{"no config", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "config.json"))
		}, "config.json"},
		// A config that gives the Linears biases runs where the biases are
		// absent (transformers zero-initialises them) or zeros; a model
		// with q/k/v biases (Qwen2's) ran and was quantized without them.
		{"attention_bias absent", func(t *testing.T, dir string) {
			editConfig(t, dir, `"tie_word_embeddings": false`, `"tie_word_embeddings": false, "attention_bias": true`)
		}, ""},
		{"attention_bias zeros", func(t *testing.T, dir string) {
			editConfig(t, dir, `"tie_word_embeddings": false`, `"tie_word_embeddings": false, "attention_bias": true`)
			addTensors(t, dir, biasTensor("model.layers.0.self_attn.q_proj.bias", 64, -1, 0))
		}, ""},
		{"attention_bias", func(t *testing.T, dir string) {
			editConfig(t, dir, `"tie_word_embeddings": false`, `"tie_word_embeddings": false, "attention_bias": true`)
			addTensors(t, dir, biasTensor("model.layers.0.self_attn.q_proj.bias", 64, -1, 0),
				biasTensor("model.layers.2.self_attn.k_proj.bias", 32, 3, -0.5))
		}, `model.safetensors: tensor "model.layers.2.self_attn.k_proj.bias": largest |value| 0.5 (element 3), want all zeros: a Linear bias that gptqtool does not apply`},
		{"mlp_bias", func(t *testing.T, dir string) {
			editConfig(t, dir, `"tie_word_embeddings": false`, `"tie_word_embeddings": false, "mlp_bias": true`)
			addTensors(t, dir, biasTensor("model.layers.4.mlp.down_proj.bias", 64, 0, float32(math.NaN())))
		}, `tensor "model.layers.4.mlp.down_proj.bias": largest |value| NaN (element 0)`},
		{"bias tensors", func(t *testing.T, dir string) {
			addTensors(t, dir, safetensors.Tensor{
				TensorInfo: safetensors.TensorInfo{Name: "model.layers.0.self_attn.q_proj.bias", DType: safetensors.F32, Shape: []int{64}},
				Data:       make([]byte, 4*64),
			})
		}, "1 tensors that the config does not explain (model.layers.0.self_attn.q_proj.bias)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fixtures.CopyFiles(t, src, dir, "config.json", "model.safetensors")
			tc.edit(t, dir)
			err := Check(dir)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check: %v, want an error containing %q", err, tc.want)
			}
			if _, lerr := Load(dir, cpu.New(1)); (lerr == nil) != (err == nil) {
				t.Errorf("Check: %v, but Load: %v", err, lerr)
			}
		})
	}
}

// TestOpenReadsOnce: Open reads a checkpoint's configs and weight headers
// once, and LoadWith's bind of what it opened reads none of them again:
// the directory renamed away after Open, Load binds the model, with the
// generation config's EOS ids, and its logits are Load's of the directory.
// (verify kl and perplexity check a baseline with Open before the model
// runs and load it from there, where they read its headers twice.) A
// directory Check refuses, Open refuses alike.
func TestOpenReadsOnce(t *testing.T) {
	src := fixture(t, "models/stories260K-hf-mistral")
	dir := filepath.Join(t.TempDir(), "m")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fixtures.CopyFiles(t, src, dir, "config.json", "model.safetensors")
	if err := os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(`{"eos_token_id": [2, 7]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	b := cpu.New(1)
	want, err := Load(dir, b)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	ids := []int{1, 403, 407, 261}
	wantLogits, err := want.Forward(ids, nil, nil)
	if err != nil {
		t.Fatal(err)
	}

	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Config.NumHiddenLayers != 5 || c.Quant != nil || c.Dir != dir {
		t.Errorf("Open: %d layers, quant %v, dir %q", c.Config.NumHiddenLayers, c.Quant, c.Dir)
	}
	if err := os.Rename(dir, dir+".gone"); err != nil {
		t.Fatal(err)
	}
	m, err := c.Load(b, Options{})
	if err != nil {
		t.Fatalf("Load after the directory went: %v", err)
	}
	defer m.Close()
	if !slices.Equal(m.EOSTokenIDs, want.EOSTokenIDs) || !slices.Contains(m.EOSTokenIDs, 7) {
		t.Errorf("EOSTokenIDs = %v, want %v (7 from generation_config.json)", m.EOSTokenIDs, want.EOSTokenIDs)
	}
	got, err := m.Forward(ids, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, wantLogits) {
		t.Errorf("the logits differ from Load's")
	}

	os.Truncate(filepath.Join(dir+".gone", "model.safetensors"), 600_000)
	if _, err := Open(dir + ".gone"); err == nil || !strings.Contains(err.Error(), "model.safetensors: tensor ") {
		t.Errorf("Open of a truncated checkpoint: %v", err)
	}
}

// TestPyTorchDirNamed: a PyTorch checkpoint (transformers'
// save_pretrained(safe_serialization=False) of stories260K) is refused by
// Load and Check naming its .bin file and convert, where the error said
// only that there was no safetensors file.
func TestPyTorchDirNamed(t *testing.T) {
	dir := "../../publish/testdata/stories-bin"
	want := dir + " holds PyTorch weights (pytorch_model.bin), which are loaded only as safetensors: convert them first (gptqtool convert --in " + dir + " --out DIR)"
	_, lerr := Load(dir, cpu.New(1))
	for _, err := range []error{lerr, Check(dir)} {
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want fs.ErrNotExist containing %q", err, want)
		}
	}
}

// biasTensor returns an F32 bias [n] of zeros but for v at element at (none
// for at -1).
func biasTensor(name string, n, at int, v float32) safetensors.Tensor {
	data := make([]byte, 4*n)
	if at >= 0 {
		binary.LittleEndian.PutUint32(data[4*at:], math.Float32bits(v))
	}
	return safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: name, DType: safetensors.F32, Shape: []int{n}}, Data: data}
}

// addTensors rewrites dir/model.safetensors with extra appended to its
// tensors.
func addTensors(t *testing.T, dir string, extra ...safetensors.Tensor) {
	t.Helper()
	fixtures.RewriteTensors(t, dir, nil, extra...)
}

// editConfig replaces old by new in dir's config.json, which must hold it.
func editConfig(t *testing.T, dir, old, new string) {
	t.Helper()
	p := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s holds no %s", p, old)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}
