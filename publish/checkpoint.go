package publish

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/formats/half"
	"github.com/gptqtool/gptqtool/formats/hfconfig"
	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/quantize"
	"github.com/gptqtool/gptqtool/runtime/model"
)

// copiedFiles are the files of a model directory that a quantized checkpoint
// carries over unchanged (tokenizer and generation settings).
var copiedFiles = []string{
	"generation_config.json",
	"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
	"special_tokens_map.json", "added_tokens.json",
}

// Checkpoint writes one GPTQ checkpoint (spec §1–2) as the driver produces
// it: the plain tensors are copied as fp16, the quantized modules of each
// layer are packed and streamed when the layer is done, and the directory is
// built under a temporary name and renamed into place by Commit.
type Checkpoint struct {
	dir, tmp string
	src      model.Weights
	cfg      *hfconfig.Config
	qc       gptq.QuantizeConfig
	w        *safetensors.Writer
	format   gptq.Format
	modelDir string
}

// CheckpointOptions configure NewCheckpoint.
type CheckpointOptions struct {
	MaxShardBytes int64 // 0: one model.safetensors
	Force         bool  // replace an existing output directory
}

// NewCheckpoint prepares the output directory dir for a checkpoint of the
// model in modelDir (weights src, config cfg) quantized with qc. The data is
// written under dir's temporary sibling until Commit.
func NewCheckpoint(dir, modelDir string, src model.Weights, cfg *hfconfig.Config, qc gptq.QuantizeConfig, opts CheckpointOptions) (*Checkpoint, error) {
	if err := CheckOut(dir, modelDir, opts.Force); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(dir)), 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(dir)), "."+filepath.Base(dir)+".partial-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	c := &Checkpoint{dir: dir, tmp: tmp, src: src, cfg: cfg, qc: qc, format: gptq.Format(qc.CheckpointFormat), modelDir: modelDir}
	infos, err := Plan(cfg, qc)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	meta := map[string]string{
		"gptq_bits":              fmt.Sprint(qc.Bits),
		"gptq_group_size":        fmt.Sprint(qc.GroupSize),
		"gptq_desc_act":          fmt.Sprint(qc.DescAct),
		"gptq_damp_percent":      fmt.Sprint(qc.DampPercent),
		"gptq_checkpoint_format": qc.CheckpointFormat,
		"gptq_quant_method":      "gptq",
	}
	c.w, err = safetensors.Create(tmp, infos, safetensors.WriterOptions{MaxShardBytes: opts.MaxShardBytes, Metadata: meta})
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	// The embedding comes first in the file; stream it now.
	if err := c.copyPlain("model.embed_tokens.weight"); err != nil {
		c.Abort()
		return nil, err
	}
	return c, nil
}

// CheckOut checks that out may receive a checkpoint quantized from modelDir:
// it must not exist unless force, and must never be modelDir, hold it, or
// lie inside it (replacing out would delete the model being read).
func CheckOut(out, modelDir string, force bool) error {
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			return filepath.Clean(p)
		}
		if r, err := filepath.EvalSymlinks(a); err == nil {
			return r
		}
		return a
	}
	o, m := abs(out), abs(modelDir)
	if rel, err := filepath.Rel(o, m); err == nil && (rel == "." || !strings.HasPrefix(rel, "..")) {
		return fmt.Errorf("output directory %s holds the model %s: choose another --out", out, modelDir)
	}
	if rel, err := filepath.Rel(m, o); err == nil && !strings.HasPrefix(rel, "..") {
		return fmt.Errorf("output directory %s lies inside the model directory %s: choose another --out", out, modelDir)
	}
	if _, err := os.Stat(out); err == nil && !force {
		return fmt.Errorf("output directory %s exists (use --force to replace it)", out)
	}
	return nil
}

// Plan lists every tensor of the GPTQ checkpoint of a model quantized with
// qc, in the order the Checkpoint writes them: the embedding, then per layer
// its norms and the packed modules, then the final norm and (untied) head.
// The error names the tensor whose shape the bits/group size do not allow.
func Plan(cfg *hfconfig.Config, qc gptq.QuantizeConfig) ([]safetensors.TensorInfo, error) {
	infos := []safetensors.TensorInfo{{Name: "model.embed_tokens.weight", DType: safetensors.F16, Shape: []int{cfg.VocabSize, cfg.HiddenSize}}}
	for li := 0; li < cfg.NumHiddenLayers; li++ {
		p := model.LayerPrefix(li) + "."
		for _, n := range []string{"input_layernorm.weight", "post_attention_layernorm.weight"} {
			infos = append(infos, safetensors.TensorInfo{Name: p + n, DType: safetensors.F16, Shape: []int{cfg.HiddenSize}})
		}
		for _, m := range model.LinearModules {
			K, N, ok := model.LinearShape(cfg, m)
			if !ok {
				return nil, fmt.Errorf("%s: %s%s: sizes the model cannot run (hidden %d, heads %d/%d, head_dim %d)", cfg.File, p, m, cfg.HiddenSize, cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.HeadDim)
			}
			qw, qz, sc, _, err := gptq.ShapesFor(K, N, qc.Bits, qc.GroupSize)
			if err != nil {
				return nil, fmt.Errorf("tensor %s%s.weight [%d %d]: %d-bit, group %d: %w", p, m, N, K, qc.Bits, qc.GroupSize, err)
			}
			infos = append(infos,
				safetensors.TensorInfo{Name: p + m + ".qweight", DType: safetensors.I32, Shape: qw[:]},
				safetensors.TensorInfo{Name: p + m + ".qzeros", DType: safetensors.I32, Shape: qz[:]},
				safetensors.TensorInfo{Name: p + m + ".scales", DType: safetensors.F16, Shape: sc[:]},
				safetensors.TensorInfo{Name: p + m + ".g_idx", DType: safetensors.I32, Shape: []int{K}},
			)
		}
	}
	infos = append(infos, safetensors.TensorInfo{Name: "model.norm.weight", DType: safetensors.F16, Shape: []int{cfg.HiddenSize}})
	if !cfg.TieWordEmbeddings {
		infos = append(infos, safetensors.TensorInfo{Name: "lm_head.weight", DType: safetensors.F16, Shape: []int{cfg.VocabSize, cfg.HiddenSize}})
	}
	return infos, nil
}

// copyPlain writes a source tensor converted to fp16.
func (c *Checkpoint) copyPlain(name string) error {
	t, err := c.src.Tensor(name)
	if err != nil {
		return err
	}
	var data []byte
	if t.DType == safetensors.F16 {
		data = t.Data
	} else {
		f, err := t.Float32()
		if err != nil {
			return err
		}
		data = make([]byte, 2*len(f))
		half.F32ToF16Bytes(data, f)
	}
	return c.w.Write(name, data)
}

// Layer packs and writes one quantized layer (driver Job.Layer).
func (c *Checkpoint) Layer(li int, modules []quantize.ModuleResult) error {
	p := model.LayerPrefix(li) + "."
	for _, n := range []string{"input_layernorm.weight", "post_attention_layernorm.weight"} {
		if err := c.copyPlain(p + n); err != nil {
			return err
		}
	}
	for _, m := range modules {
		lin, err := Pack(m.Result, c.qc.Bits, c.qc.GroupSize, c.format)
		if err != nil {
			return fmt.Errorf("%s: %w", m.Name(), err)
		}
		name := m.Name()
		if err := c.w.Write(name+".qweight", int32Bytes(lin.QWeight)); err != nil {
			return err
		}
		if err := c.w.Write(name+".qzeros", int32Bytes(lin.QZeros)); err != nil {
			return err
		}
		if err := c.w.Write(name+".scales", uint16Bytes(lin.Scales)); err != nil {
			return err
		}
		if err := c.w.Write(name+".g_idx", int32Bytes(lin.GIdx)); err != nil {
			return err
		}
	}
	if li == c.cfg.NumHiddenLayers-1 {
		if err := c.copyPlain("model.norm.weight"); err != nil {
			return err
		}
		if !c.cfg.TieWordEmbeddings {
			if err := c.copyPlain("lm_head.weight"); err != nil {
				return err
			}
		}
	}
	return nil
}

// Pack turns a GPTQ result into the on-disk tensors of spec §1 (a result
// packed on the device is checked and returned as it is).
func Pack(r *quantize.Result, bits, groupSize int, format gptq.Format) (*gptq.Linear, error) {
	if p := r.Packed; p != nil {
		if p.Bits != bits || p.GroupSize != groupSize || p.Format != format || p.K != r.K || p.N != r.N {
			return nil, fmt.Errorf("packed result is %d-bit g%d %s [%d %d], want %d-bit g%d %s", p.Bits, p.GroupSize, p.Format, p.K, p.N, bits, groupSize, format)
		}
		return p, p.Validate("")
	}
	qw, err := gptq.PackQWeight(r.Q, r.K, r.N, bits)
	if err != nil {
		return nil, err
	}
	qz, err := gptq.PackQZeros(r.Zeros, r.G, r.N, bits, format)
	if err != nil {
		return nil, err
	}
	scales := make([]uint16, len(r.Scales))
	for i, s := range r.Scales {
		h := half.F32ToF16(s)
		if f := half.F16ToF32(h); f <= 0 || math.IsInf(float64(f), 0) || math.IsNaN(float64(f)) {
			return nil, fmt.Errorf("scale %d is %g, not a finite positive fp16 value", i, s)
		}
		scales[i] = h
	}
	l := &gptq.Linear{K: r.K, N: r.N, Bits: bits, GroupSize: groupSize, QWeight: qw, QZeros: qz, Scales: scales, GIdx: r.GIdx, Format: format}
	return l, l.Validate("")
}

// Commit finishes the weights, writes the configs, copies the tokenizer and
// generation files and the model card that card renders for the measured
// size of the weight files, and renames the directory into place. It returns
// that size.
func (c *Checkpoint) Commit(card func(weightBytes int64) []byte) (int64, error) {
	size, err := c.commit(card)
	if err != nil {
		c.Abort()
		return 0, err
	}
	return size, nil
}

func (c *Checkpoint) commit(card func(int64) []byte) (int64, error) {
	if err := c.w.Close(); err != nil {
		return 0, err
	}
	size, err := weightBytes(c.tmp)
	if err != nil {
		return 0, err
	}
	cfgJSON, err := c.cfg.MarshalWith(map[string]any{
		"quantization_config": c.qc.ConfigJSONBlock(),
		"torch_dtype":         "float16",
	})
	if err != nil {
		return 0, err
	}
	qcJSON, err := c.qc.MarshalQuantizeConfig()
	if err != nil {
		return 0, err
	}
	files := map[string][]byte{"config.json": cfgJSON, "quantize_config.json": qcJSON}
	if md := card(size); md != nil {
		files["README.md"] = md
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(c.tmp, name), data, 0o644); err != nil {
			return 0, err
		}
	}
	for _, name := range copiedFiles {
		err := copyFile(filepath.Join(c.modelDir, name), filepath.Join(c.tmp, name))
		if err != nil && !os.IsNotExist(err) {
			return 0, err
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		return 0, err
	}
	return size, os.Rename(c.tmp, c.dir)
}

// Abort removes everything written so far.
func (c *Checkpoint) Abort() {
	if c.w != nil {
		c.w.Abort()
	}
	os.RemoveAll(c.tmp)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func int32Bytes(v []int32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
	}
	return b
}

func uint16Bytes(v []uint16) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], x)
	}
	return b
}
