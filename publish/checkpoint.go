package publish

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gptqtool/gptqtool/formats/fused"
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
	// The chat template, where transformers (4.47 on) saves it rather than
	// in tokenizer_config.json.
	"chat_template.jinja", "chat_template.json",
}

// Checkpoint writes one GPTQ checkpoint (spec §1–2) as the driver produces
// it: the plain tensors are copied as fp16, the quantized modules of each
// layer are packed and streamed when the layer is done, and the directory is
// built as a partial output (PartialDir) renamed into place by Commit. Each
// complete layer is synced and recorded, so that a killed run resumes from
// its last complete layer (CheckpointOptions.Resume).
type Checkpoint struct {
	dir, tmp string
	src      model.Weights
	cfg      *hfconfig.Config
	qc       gptq.QuantizeConfig
	w        *safetensors.Writer
	format   gptq.Format
	modelDir string
	lock     *os.File
	progress Progress
	// join writes the parts of fused modules (Phi-3's q/k/v_proj and
	// gate/up_proj) as their fused tensors; nil for other models.
	join *fused.Joiner
	// kept are a multimodal checkpoint's tensors outside its text model
	// (vision tower, projector), written last byte for byte under their
	// own names; nil for other models.
	kept []string
	done bool // committed
	// Start is the number of layers an interrupted run already wrote
	// (0 for a fresh checkpoint): the driver's Job.Start.
	Start int
}

// CheckpointOptions configure NewCheckpoint.
type CheckpointOptions struct {
	MaxShardBytes int64 // 0: one model.safetensors
	Force         bool  // replace an existing output directory, discard a partial one
	// Resume continues the partial output of an interrupted run when its
	// fingerprint matches Record's (else the run is refused).
	Resume bool
	// Record describes the run (Command, Version, Branch, Fingerprint) for
	// the progress record; pid, host and times are filled in.
	Record Progress
	Log    io.Writer // what was found and resumed; nil: discard
}

// NewCheckpoint prepares the output directory dir for a checkpoint of the
// model in modelDir (weights src, config cfg) quantized with qc. The data is
// written to dir's partial output until Commit.
func NewCheckpoint(dir, modelDir string, src model.Weights, cfg *hfconfig.Config, qc gptq.QuantizeConfig, opts CheckpointOptions) (*Checkpoint, error) {
	if err := CheckOut(dir, modelDir, opts.Force); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(dir)), 0o755); err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	join, err := planJoin(cfg, qc)
	if err != nil {
		return nil, err
	}
	infos := join.Infos()
	wopts := writerOptions(qc, opts.MaxShardBytes)
	kept, keptInfos, rename, err := keptTensors(src, cfg)
	if err != nil {
		return nil, err
	}
	infos = append(infos, keptInfos...)
	wopts.Rename = rename
	tmp := PartialDir(dir)
	c := &Checkpoint{dir: dir, tmp: tmp, src: src, cfg: cfg, qc: qc, format: gptq.Format(qc.CheckpointFormat), modelDir: modelDir, join: join, kept: kept}
	prev, err := c.claim(opts, log)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	if prev != nil {
		if c.w, err = safetensors.Resume(tmp, infos, wopts, prev.Writer); err != nil {
			c.unlock()
			return nil, fmt.Errorf("%s: %w (--force discards it)", tmp, err)
		}
		// The record keeps the first run's start and command (the model
		// card shows the command that made the checkpoint).
		c.progress = *prev
		c.progress.PID, c.progress.Host = os.Getpid(), host
		c.Start = prev.LayersDone
		c.join.Resume(prev.Writer.Next)
		fmt.Fprintf(log, "%s: resuming at layer %d (%d of %d layers kept; layers are numbered from 0)\n", dir, prev.LayersDone, prev.LayersDone, prev.Layers)
		return c, nil
	}
	c.progress = opts.Record
	c.progress.Format, c.progress.PID, c.progress.Host = progressMagic, os.Getpid(), host
	c.progress.Started = time.Now().UTC().Truncate(time.Second)
	c.progress.Layers = cfg.NumHiddenLayers
	if c.w, err = safetensors.Create(tmp, infos, wopts); err != nil {
		c.Abort()
		return nil, err
	}
	// The embedding comes first in the file; stream it now.
	if err := c.copyPlain("model.embed_tokens.weight"); err != nil {
		c.Abort()
		return nil, err
	}
	if err := c.record(0); err != nil {
		c.Abort()
		return nil, err
	}
	return c, nil
}

// keptTensors lists a multimodal checkpoint's tensors outside its text model
// (the vision tower's and the projector's, as GPTQModel and llm-compressor
// leave them), which the checkpoint keeps as they are, and returns the
// names the text model's tensors are stored under (the source's layout:
// language_model.model.… or model.language_model.…). Other models keep
// none and store the names as they are.
func keptTensors(src model.Weights, cfg *hfconfig.Config) ([]string, []safetensors.TensorInfo, func(string) string, error) {
	if !cfg.Multimodal() {
		return nil, nil, nil, nil
	}
	set, ok := src.(interface {
		Names() []string
		DiskName(string) string
	})
	if !ok {
		return nil, nil, nil, fmt.Errorf("%s: a multimodal %s checkpoint's weights do not list their tensors", cfg.File, cfg.Wrapper)
	}
	var names []string
	var infos []safetensors.TensorInfo
	for _, n := range set.Names() {
		if hfconfig.TextModelName(n) {
			continue
		}
		t, err := src.Tensor(n)
		if err != nil {
			return nil, nil, nil, err
		}
		names = append(names, n)
		infos = append(infos, t.TensorInfo)
	}
	return names, infos, set.DiskName, nil
}

// writerOptions are the options the weights of a checkpoint quantized
// with qc are written with.
func writerOptions(qc gptq.QuantizeConfig, maxShardBytes int64) safetensors.WriterOptions {
	meta := map[string]string{
		"gptq_bits":              fmt.Sprint(qc.Bits),
		"gptq_group_size":        fmt.Sprint(qc.GroupSize),
		"gptq_desc_act":          fmt.Sprint(qc.DescAct),
		"gptq_damp_percent":      fmt.Sprint(qc.DampPercent),
		"gptq_checkpoint_format": qc.CheckpointFormat,
		"gptq_quant_method":      "gptq",
	}
	return safetensors.WriterOptions{MaxShardBytes: maxShardBytes, Metadata: meta, Resumable: true}
}

// claim makes c's partial output its own: a fresh directory, or (with
// opts.Resume) the matching one an interrupted run left, whose record it
// returns. A partial output another process is writing, one that
// does not match, or one left without --resume or --force, is refused.
func (c *Checkpoint) claim(opts CheckpointOptions, log io.Writer) (*Progress, error) {
	tmp := c.tmp
	if _, err := os.Lstat(tmp); err == nil {
		lock, err := lockDir(filepath.Join(tmp, lockFile))
		prev, perr := readProgress(tmp)
		switch {
		case errors.Is(err, errBusy):
			who := "another process"
			if perr == nil {
				who = fmt.Sprintf("pid %d on %s (started %s)", prev.PID, prev.Host, prev.Started.Local().Format("2006-01-02 15:04:05"))
			}
			return nil, fmt.Errorf("%s is being written by %s: wait for it, or choose another --out", tmp, who)
		case err != nil:
			return nil, fmt.Errorf("%s: %w", tmp, err)
		}
		c.lock = lock
		if perr == nil && opts.Resume {
			if diff := prev.Fingerprint.diff(opts.Record.Fingerprint); len(diff) > 0 {
				c.unlock()
				return nil, fmt.Errorf("cannot resume %s (%s): %s changed since: rerun with what it was made from, or --force to discard it", tmp, prev.describe(), strings.Join(diff, ", "))
			}
			if prev.Layers != c.cfg.NumHiddenLayers || prev.Branch != opts.Record.Branch {
				c.unlock()
				return nil, fmt.Errorf("cannot resume %s (%s): it is not this branch of this model (--force discards it)", tmp, prev.describe())
			}
			return prev, nil
		}
		if !opts.Force {
			c.unlock()
			if perr != nil {
				return nil, fmt.Errorf("%s exists and is not a gptqtool partial output (%v): remove it, or choose another --out", tmp, perr)
			}
			return nil, fmt.Errorf("%s holds an interrupted run (%s): --resume continues it, --force discards it", tmp, prev.describe())
		}
		if perr != nil {
			if ours, what := IsOurs(tmp); !ours && !onlyPartialFiles(tmp) {
				c.unlock()
				return nil, fmt.Errorf("--force would delete %s, which is not a gptqtool partial output: %s; remove it yourself", tmp, what)
			}
		}
		fmt.Fprintf(log, "%s: discarding the partial output of an earlier run (--force)\n", tmp)
		c.unlock()
		if err := os.RemoveAll(tmp); err != nil {
			return nil, err
		}
	} else if opts.Resume {
		fmt.Fprintf(log, "%s: no interrupted run to resume: starting from the first layer\n", c.dir)
	}
	for _, d := range staleDebris(c.dir) {
		if opts.Force {
			fmt.Fprintf(log, "removing %s, left by a run of an earlier version that was killed (--force)\n", d)
			os.RemoveAll(d)
		} else {
			fmt.Fprintf(log, "warning: %s was left by a run of an earlier version that was killed: remove it (or run with --force)\n", d)
		}
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return nil, err
	}
	lock, err := lockDir(filepath.Join(tmp, lockFile))
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	c.lock = lock
	return nil, nil
}

// onlyPartialFiles reports whether dir holds nothing but what a partial
// output holds before its checkpoint's files are written (the lock, the
// record, shard files being written, a record being replaced): a run
// killed before its first record, or one whose record is damaged.
func onlyPartialFiles(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		n := e.Name()
		switch {
		case n == lockFile, n == progressFile:
		case strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".safetensors.partial"):
		case strings.HasPrefix(n, "."+progressFile+".tmp-"): // (writeFileAtomic's, killed)
		default:
			return false
		}
	}
	return true
}

// errBusy is lockDir's answer for a lock another process holds.
var errBusy = errors.New("locked by another process")

func (c *Checkpoint) unlock() {
	if c.lock != nil {
		c.lock.Close()
		c.lock = nil
	}
}

// record syncs what was written and records that layers layers are done.
func (c *Checkpoint) record(layers int) error {
	st, err := c.w.Sync()
	if err != nil {
		return err
	}
	c.progress.LayersDone, c.progress.Writer = layers, st
	return writeProgress(c.tmp, &c.progress)
}

// LayersDone is the number of complete layers written so far.
func (c *Checkpoint) LayersDone() int { return c.progress.LayersDone }

// Command is the command line recorded for the model card: the first
// run's when resumed.
func (c *Checkpoint) Command() string { return c.progress.Command }

// Replay returns the dequantized weights of a layer already written (the
// driver's Job.Replay): [N, K] float32 per module, as the quantizer's
// Result.W holds them.
func (c *Checkpoint) Replay(li int) (map[string][]float32, error) {
	out := map[string][]float32{}
	for _, m := range model.LayerModules(c.cfg, li) {
		name := model.LayerPrefix(li) + "." + m
		if skipped, err := c.qc.Skipped(name); err != nil || skipped {
			if err != nil {
				return nil, err
			}
			continue // the driver keeps the source weight (Job.Replay)
		}
		K, N, _ := model.LinearShape(c.cfg, m)
		l := gptq.Linear{K: K, N: N, Bits: c.qc.Bits, GroupSize: c.qc.GroupSize, Format: c.format}
		read := func(suffix string) ([]byte, error) { return c.readBack(name + suffix) }
		b, err := read(".qweight")
		if err != nil {
			return nil, err
		}
		l.QWeight = bytesInt32(b)
		if b, err = read(".qzeros"); err != nil {
			return nil, err
		}
		l.QZeros = bytesInt32(b)
		if b, err = read(".g_idx"); err != nil {
			return nil, err
		}
		l.GIdx = bytesInt32(b)
		if b, err = read(".scales"); err != nil {
			return nil, err
		}
		l.Scales = make([]uint16, len(b)/2)
		for i := range l.Scales {
			l.Scales[i] = binary.LittleEndian.Uint16(b[2*i:])
		}
		w, err := l.Dequantize()
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", c.tmp, name, err)
		}
		out[m] = w
	}
	return out, nil
}

// readBack returns the data of a tensor written so far: a part of a fused
// tensor as its slice of the fused tensor's.
func (c *Checkpoint) readBack(name string) ([]byte, error) {
	f := c.join.PartOf(name)
	if f == "" {
		return c.w.ReadBack(name)
	}
	t, _ := c.join.Fused(f)
	data, err := c.w.ReadBack(f)
	if err != nil {
		return nil, err
	}
	return t.Part(data, slices.Index(t.Parts, name))
}

// write writes a tensor of the part-named plan (planJoin): a part of a
// fused tensor is kept until the fused tensor is complete.
func (c *Checkpoint) write(name string, data []byte) error {
	out, err := c.join.Add(name, data)
	if err != nil {
		return err
	}
	for _, t := range out {
		if err := c.w.Write(t.Name, t.Data); err != nil {
			return err
		}
	}
	return nil
}

func bytesInt32(b []byte) []int32 {
	v := make([]int32, len(b)/4)
	for i := range v {
		v[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// CheckOut checks that out may receive a checkpoint quantized from modelDir:
// it must not exist unless force, and must never be modelDir, hold it, or
// lie inside it (replacing out would delete the model being read). With
// force, an existing out must be something gptqtool wrote (IsOurs), and
// neither the working directory (or one above it) nor a mount point.
func CheckOut(out, modelDir string, force bool) error {
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			return filepath.Clean(p)
		}
		// Resolve links through the deepest folder that exists: an out
		// that does not exist yet, reached through a link to the model's
		// folder, still lies inside the model.
		rest := ""
		for d := a; ; d = filepath.Dir(d) {
			if r, err := filepath.EvalSymlinks(d); err == nil {
				return filepath.Join(r, rest)
			}
			if filepath.Dir(d) == d {
				return a
			}
			rest = filepath.Join(filepath.Base(d), rest)
		}
	}
	o, m := abs(out), abs(modelDir)
	if rel, err := filepath.Rel(o, m); err == nil && !relOutside(rel) {
		return fmt.Errorf("output directory %s holds the model %s: choose another --out", out, modelDir)
	}
	if rel, err := filepath.Rel(m, o); err == nil && !relOutside(rel) {
		return fmt.Errorf("output directory %s lies inside the model directory %s: choose another --out", out, modelDir)
	}
	fi, err := os.Stat(out)
	if err != nil {
		// The output is made with its parents once the work is done: a file
		// in the way, or a folder that takes no new entries (no write
		// permission, a read-only file system), is refused now, not then.
		for d := filepath.Dir(filepath.Clean(out)); ; d = filepath.Dir(d) {
			if pfi, err := os.Stat(d); err == nil {
				if !pfi.IsDir() {
					return fmt.Errorf("output directory %s cannot be made: %s is a file, not a directory: choose another --out", out, d)
				}
				if err := writable(d); err != nil {
					return fmt.Errorf("output directory %s cannot be made: %s is not writable (%v): choose another --out", out, d, err)
				}
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
		return nil
	}
	if !force {
		// Suggest --force only where it would replace the output.
		if !fi.IsDir() {
			return fmt.Errorf("output %s is a file, not a directory: remove it yourself or choose another --out", out)
		}
		if ours, what := IsOurs(out); !ours {
			if strings.HasPrefix(what, foreignWhat) {
				return fmt.Errorf("output directory %s exists and is %s; move those away or choose another --out", out, what)
			}
			return fmt.Errorf("output directory %s exists and is not a gptqtool output: %s; remove it yourself or choose another --out", out, what)
		}
		return fmt.Errorf("output directory %s exists (use --force to replace it)", out)
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(o, abs(wd)); err == nil && !relOutside(rel) {
			return fmt.Errorf("--force cannot replace %s: it is (or holds) the working directory: choose another --out", out)
		}
	}
	if !fi.IsDir() {
		return fmt.Errorf("--force would replace %s, which is a file, not a gptqtool output: remove it yourself or choose another --out", out)
	}
	if !sameDevice(out, filepath.Dir(o)) {
		return fmt.Errorf("--force cannot replace %s: it is a mount point: choose a directory inside it as --out", out)
	}
	if ours, what := IsOurs(out); !ours {
		if strings.HasPrefix(what, foreignWhat) {
			return fmt.Errorf("--force would delete %s, %s; move those away or choose another --out", out, what)
		}
		return fmt.Errorf("--force would delete %s, which is not a gptqtool output: %s; remove it yourself or choose another --out", out, what)
	}
	// The replacement is built beside it and renamed into its place.
	if err := writable(filepath.Dir(o)); err != nil {
		return fmt.Errorf("--force cannot replace %s: %s is not writable (%v): choose another --out", out, filepath.Dir(o), err)
	}
	return nil
}

// relOutside reports whether rel, a path filepath.Rel(base, target)
// returned, leaves base: it is ".." or starts with ".." and a separator. A
// name such as "..x" is a folder inside base.
func relOutside(rel string) bool {
	return rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// Plan lists every tensor of the GPTQ checkpoint of a model quantized with
// qc, in the order the Checkpoint writes them: the embedding, then per layer
// its norms and the packed modules (a module that qc leaves unquantized,
// gptq.QuantizeConfig.Skipped, as its fp16 weight), then the final norm and
// (untied) head. A fused module (Phi-3's qkv_proj and gate_up_proj, package
// fused) is one quantized module, as GPTQModel writes it, in place of its
// parts. The error names the tensor whose shape the bits/group size do not
// allow.
func Plan(cfg *hfconfig.Config, qc gptq.QuantizeConfig) ([]safetensors.TensorInfo, error) {
	j, err := planJoin(cfg, qc)
	if err != nil {
		return nil, err
	}
	return j.Infos(), nil
}

// planJoin plans the checkpoint's tensors with the parts of its fused
// modules (planParts), joined into the fused ones (fused.Join).
func planJoin(cfg *hfconfig.Config, qc gptq.QuantizeConfig) (*fused.Joiner, error) {
	infos, err := planParts(cfg, qc)
	if err != nil {
		return nil, err
	}
	return fused.Join(infos, cfg.NumHiddenLayers, fused.Modules(cfg))
}

// planParts lists the tensors of the checkpoint as the llama layout has
// them: fused modules as their parts.
func planParts(cfg *hfconfig.Config, qc gptq.QuantizeConfig) ([]safetensors.TensorInfo, error) {
	infos := []safetensors.TensorInfo{{Name: "model.embed_tokens.weight", DType: safetensors.F16, Shape: []int{cfg.VocabSize, cfg.HiddenSize}}}
	for li := 0; li < cfg.NumHiddenLayers; li++ {
		p := model.LayerPrefix(li) + "."
		for _, n := range model.LayerNormNames(cfg, li) {
			infos = append(infos, safetensors.TensorInfo{Name: n, DType: safetensors.F16, Shape: model.WantShape(n, cfg, nil)})
		}
		if cfg.Sparse(li) {
			// The router (and a shared expert's gate) stays in floating
			// point, as GPTQModel keeps it.
			infos = append(infos, safetensors.TensorInfo{Name: cfg.MoE.RouterName(li), DType: safetensors.F16, Shape: []int{cfg.MoE.Experts, cfg.HiddenSize}})
			if cfg.MoE.SharedSize > 0 {
				infos = append(infos, safetensors.TensorInfo{Name: cfg.MoE.SharedGateName(li), DType: safetensors.F16, Shape: []int{1, cfg.HiddenSize}})
			}
		}
		for _, m := range model.LayerModules(cfg, li) {
			K, N, ok := model.LinearShape(cfg, m)
			if !ok {
				return nil, fmt.Errorf("%s: %s%s: sizes the model cannot run (hidden %d, heads %d/%d, head_dim %d)", cfg.File, p, m, cfg.HiddenSize, cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.HeadDim)
			}
			skipped, err := qc.Skipped(p + m)
			if err != nil {
				return nil, err
			}
			if skipped {
				infos = append(infos, safetensors.TensorInfo{Name: p + m + ".weight", DType: safetensors.F16, Shape: []int{N, K}})
				infos = appendBias(infos, cfg, p, m, N)
				continue
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
			infos = appendBias(infos, cfg, p, m, N)
		}
	}
	infos = append(infos, safetensors.TensorInfo{Name: "model.norm.weight", DType: safetensors.F16, Shape: []int{cfg.HiddenSize}})
	if !cfg.TieWordEmbeddings {
		infos = append(infos, safetensors.TensorInfo{Name: "lm_head.weight", DType: safetensors.F16, Shape: []int{cfg.VocabSize, cfg.HiddenSize}})
	}
	return infos, nil
}

// appendBias appends module m's bias [N] (fp16, as GPTQModel and AutoGPTQ
// keep a quantized Linear's bias beside qweight) where the config gives it
// one (hfconfig.Config.LinearBias: Qwen2's q/k/v).
func appendBias(infos []safetensors.TensorInfo, cfg *hfconfig.Config, p, m string, N int) []safetensors.TensorInfo {
	if !cfg.LinearBias(m) {
		return infos
	}
	return append(infos, safetensors.TensorInfo{Name: p + m + ".bias", DType: safetensors.F16, Shape: []int{N}})
}

// copyBias writes module's bias in fp16 where the config gives it one: the
// source's, or zeros where the source has none (a llama config's
// attention_bias over weights without biases, which transformers zeroes).
func (c *Checkpoint) copyBias(module string) error {
	_, m, _ := strings.Cut(strings.TrimPrefix(module, "model.layers."), ".")
	if !c.cfg.LinearBias(m) {
		return nil
	}
	name := module + ".bias"
	if _, err := c.src.Tensor(name); errors.Is(err, fs.ErrNotExist) {
		_, N, _ := model.LinearShape(c.cfg, m)
		return c.write(name, make([]byte, 2*N))
	}
	return c.copyPlain(name)
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
	return c.write(name, data)
}

// Layer packs and writes one quantized layer (driver Job.Layer); a
// skipped module is copied in fp16 as module.weight, as the checkpoint's
// other unquantized tensors are.
func (c *Checkpoint) Layer(li int, modules []quantize.ModuleResult) error {
	for _, n := range model.LayerNormNames(c.cfg, li) {
		if err := c.copyPlain(n); err != nil {
			return err
		}
	}
	if c.cfg.Sparse(li) {
		if err := c.copyPlain(c.cfg.MoE.RouterName(li)); err != nil {
			return err
		}
		if c.cfg.MoE.SharedSize > 0 {
			if err := c.copyPlain(c.cfg.MoE.SharedGateName(li)); err != nil {
				return err
			}
		}
	}
	if err := checkFusedPerms(c.cfg, modules); err != nil {
		return err
	}
	for _, m := range modules {
		skipped, err := c.qc.Skipped(m.Name())
		if err != nil {
			return err
		}
		if skipped != m.Skipped {
			// (The driver's Job.Skip and the config's dynamic rules are
			// made from one list: a difference is our bug.)
			return fmt.Errorf("%s: the driver skipped it: %v, the checkpoint's config: %v", m.Name(), m.Skipped, skipped)
		}
		if m.Skipped {
			if err := c.copyPlain(m.Name() + ".weight"); err != nil {
				return err
			}
			if err := c.copyBias(m.Name()); err != nil {
				return err
			}
			continue
		}
		lin, err := Pack(m.Result, c.qc.Bits, c.qc.GroupSize, c.format)
		if err != nil {
			return fmt.Errorf("%s: %w", m.Name(), err)
		}
		name := m.Name()
		if err := c.write(name+".qweight", int32Bytes(lin.QWeight)); err != nil {
			return err
		}
		if err := c.write(name+".qzeros", int32Bytes(lin.QZeros)); err != nil {
			return err
		}
		if err := c.write(name+".scales", uint16Bytes(lin.Scales)); err != nil {
			return err
		}
		if err := c.write(name+".g_idx", int32Bytes(lin.GIdx)); err != nil {
			return err
		}
		if err := c.copyBias(name); err != nil {
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
	return c.record(li + 1)
}

// checkFusedPerms checks that the parts of each fused module of cfg
// (package fused) were quantized in one act order: they share one
// Hessian, whose diagonal GPTQ sorts, so their permutations are equal
// and one g_idx serves them all (with static groups too, where g_idx
// does not show the order).
func checkFusedPerms(cfg *hfconfig.Config, modules []quantize.ModuleResult) error {
	byName := map[string]quantize.ModuleResult{}
	for _, m := range modules {
		byName[m.Module] = m
	}
	for _, f := range fused.Modules(cfg) {
		first := byName[f.Parts[0].Module]
		for _, p := range f.Parts[1:] {
			m := byName[p.Module]
			if first.Result == nil || m.Result == nil || first.Perm == nil && m.Perm == nil {
				continue
			}
			if !slices.Equal(first.Perm, m.Perm) {
				return fmt.Errorf("%s and %s, parts of %s.%s, were quantized in different act orders: they must share one", first.Name(), m.Name(), model.LayerPrefix(m.Layer), f.Name)
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
	c.done = true
	return size, nil
}

func (c *Checkpoint) commit(card func(int64) []byte) (int64, error) {
	for _, n := range c.kept {
		t, err := c.src.Tensor(n)
		if err != nil {
			return 0, err
		}
		if err := c.w.Write(n, t.Data); err != nil {
			return 0, err
		}
	}
	if err := c.w.Close(); err != nil {
		return 0, err
	}
	size, err := weightBytes(c.tmp)
	if err != nil {
		return 0, err
	}
	extra := map[string]any{"quantization_config": c.qc.ConfigJSONBlock()}
	for _, k := range c.cfg.DTypeKeys() {
		extra[k] = "float16"
	}
	cfgJSON, err := c.cfg.MarshalWith(extra)
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
	if err := copyChatTemplates(c.modelDir, c.tmp); err != nil {
		return 0, err
	}
	// The bookkeeping goes last: until the rename, a kill leaves a
	// partial output that resumes at the end.
	if err := os.Remove(filepath.Join(c.tmp, progressFile)); err != nil {
		return 0, err
	}
	os.Remove(filepath.Join(c.tmp, lockFile))
	c.unlock()
	if err := os.RemoveAll(c.dir); err != nil {
		return 0, err
	}
	if err := os.Rename(c.tmp, c.dir); err != nil {
		return 0, err
	}
	syncParent(c.dir)
	return size, nil
}

// syncParent makes a rename in dir's parent durable where the platform
// allows it.
func syncParent(dir string) {
	if d, err := os.Open(filepath.Dir(filepath.Clean(dir))); err == nil {
		d.Sync()
		d.Close()
	}
}

// Abort removes the partial output.
func (c *Checkpoint) Abort() {
	if c.done {
		return
	}
	if c.w != nil {
		c.w.Abort()
	}
	c.unlock()
	os.RemoveAll(c.tmp)
}

// Suspend ends the run without finishing the checkpoint, keeping the
// partial output for --resume, with the layers recorded as done. A
// checkpoint with no complete layer is removed instead (nothing to keep).
// It reports whether the partial output was kept.
func (c *Checkpoint) Suspend() bool {
	if c.done {
		return false
	}
	if c.progress.LayersDone == 0 || c.w == nil {
		c.Abort()
		return false
	}
	c.w.Suspend() // the record already says how far the data is good
	c.unlock()
	return true
}

// chatTemplatesDir holds a model's named chat templates besides the
// default one (transformers 4.47 on: additional_chat_templates/NAME.jinja).
const chatTemplatesDir = "additional_chat_templates"

// copyChatTemplates copies srcDir's chatTemplatesDir/*.jinja, if any, into
// dstDir (links copied as the files they name).
func copyChatTemplates(srcDir, dstDir string) error {
	files, err := filepath.Glob(filepath.Join(srcDir, chatTemplatesDir, "*.jinja"))
	if err != nil || len(files) == 0 {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dstDir, chatTemplatesDir), 0o755); err != nil {
		return err
	}
	for _, f := range files {
		if err := copyFile(f, filepath.Join(dstDir, chatTemplatesDir, filepath.Base(f))); err != nil {
			return err
		}
	}
	return nil
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
