package publish

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gptqtool/gptqtool/formats/safetensors"
	"github.com/gptqtool/gptqtool/quantize"
)

// A partial output is the directory a checkpoint is built in,
// "<out>.partial" beside its final place, renamed into place when
// complete. It holds, besides the checkpoint files written so far:
//
//	gptqtool-progress.json  who writes it (pid, host, start), the command,
//	                        the fingerprint of model, samples and options,
//	                        and how far it got (layers done, writer state)
//	gptqtool.lock           locked (flock) while a run writes it
//
// The progress record is rewritten (atomically, after an fsync of the
// data) each time a layer is complete, so that a run killed at any point
// can be resumed from its last complete layer.
const (
	progressFile  = "gptqtool-progress.json"
	lockFile      = "gptqtool.lock"
	progressMagic = "gptqtool-partial/1"
)

// PartialDir is where the checkpoint for dir is built.
func PartialDir(dir string) string { return filepath.Clean(dir) + ".partial" }

// Progress is the record of a partial output.
type Progress struct {
	Format      string                  `json:"format"`
	PID         int                     `json:"pid"`
	Host        string                  `json:"host"`
	Started     time.Time               `json:"started"`
	Updated     time.Time               `json:"updated"`
	Command     string                  `json:"command"`
	Version     string                  `json:"version"`
	Branch      string                  `json:"branch"`
	Fingerprint Fingerprint             `json:"fingerprint"`
	Layers      int                     `json:"num_hidden_layers"`
	LayersDone  int                     `json:"layers_done"`
	Writer      safetensors.WriterState `json:"writer"`
}

// Fingerprint identifies what a run quantizes: a resumed run must match
// the interrupted one in all three.
type Fingerprint struct {
	Model   string `json:"model"`
	Samples string `json:"samples"`
	Options string `json:"options"`
	// Values are the options Options hashes (JSON), kept so that a refused
	// resume can name what changed; records of earlier versions lack them.
	Values json.RawMessage `json:"option_values,omitempty"`
	// NSamples is the number of calibration samples (not hashed: Samples
	// covers them), kept so that a refused resume can name --nsamples
	// before the samples are read; 0 where unknown (round to nearest
	// without data, records of earlier versions).
	NSamples int `json:"nsamples,omitempty"`
}

// nsamplesChanged names a changed --nsamples with both values, or "".
func (f Fingerprint) nsamplesChanged(g Fingerprint) string {
	if f.NSamples > 0 && g.NSamples > 0 && f.NSamples != g.NSamples {
		return fmt.Sprintf("--nsamples: %d in the interrupted run, %d now", f.NSamples, g.NSamples)
	}
	return ""
}

// diff names the parts of f (the interrupted run's) that differ from g
// (this run's).
func (f Fingerprint) diff(g Fingerprint) []string {
	var out []string
	if f.Model != g.Model {
		out = append(out, "the model files")
	}
	if f.Samples != g.Samples {
		what := "the calibration samples (dataset, --nsamples, --seq-len, --seed, --mode or rendering)"
		if n := f.nsamplesChanged(g); n != "" {
			what = "the calibration samples (" + n + ")"
		}
		out = append(out, what)
	}
	if f.Options != g.Options {
		what := "the quantization options"
		if changed := changedOptions(f.Values, g.Values); len(changed) > 0 {
			what += " (" + strings.Join(changed, "; ") + ")"
		}
		out = append(out, what)
	}
	return out
}

// diffBeforeSamples is diff for a run whose samples are not read yet (the
// preflight): the model files, and the options by their values (records
// of earlier versions, which lack them, are compared once the samples
// exist).
func (f Fingerprint) diffBeforeSamples(g Fingerprint) []string {
	var out []string
	if f.Model != g.Model {
		out = append(out, "the model files")
	}
	if n := f.nsamplesChanged(g); n != "" {
		out = append(out, "the calibration samples ("+n+")")
	}
	if changed := changedOptions(f.Values, g.Values); len(changed) > 0 {
		out = append(out, "the quantization options ("+strings.Join(changed, "; ")+")")
	}
	return out
}

// optionNames are the user's names of the options a fingerprint holds, by
// their path in its values (a table's hold a list of branches' values).
var optionNames = map[string]string{
	"Version": "the gptqtool version", "Branch.name": "the branch name", "Branch.bits": "--bits",
	"Branch.group_size": "--group", "Branch.desc_act": "--act-order", "Branch.damp_percent": "--damp",
	"Branch.static_groups": "--static-groups", "Branch.description": "the branch's description",
	"Sym": "--sym", "TrueSeq": "--true-sequential", "MSE": "--mse", "RTN": "--rtn",
	"RefGroups": "--reference-groups", "Format": "--checkpoint-format", "BlockSize": "the block size",
	"ChunkRows": "--chunk-rows", "SeqLen": "--seq-len", "MaxShard": "--max-shard-size",
	"Solver": "the solver (--device)", "Activations": "--activations", "Dataset": "--dataset",
	"BaseModel": "the model directory's name", "Skip": "--skip-modules", "": "the branches",
}

// changedOptions names the options whose values differ between the
// interrupted run's fingerprint values a and this run's b, with both
// values ("--damp: 0.1 in the interrupted run, 0.05 now"; a table's
// prefixed with the branch's name), in a stable order; nil where either
// lacks them.
func changedOptions(a, b json.RawMessage) []string {
	if len(a) == 0 || len(b) == 0 {
		return nil
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return nil
	}
	fa, fb := map[string]string{}, map[string]string{}
	flattenJSON("", va, fa)
	flattenJSON("", vb, fb)
	keys := map[string]bool{}
	for k := range fa {
		keys[k] = true
	}
	for k := range fb {
		keys[k] = true
	}
	value := func(m map[string]string, k string) string {
		if v, ok := m[k]; ok {
			return v
		}
		return "none"
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if fa[k] == fb[k] {
			continue
		}
		path, prefix := k, ""
		// (A table's paths start with the branch's index.)
		if i := strings.IndexByte(k, ']'); strings.HasPrefix(k, "[") && i > 0 {
			path = strings.TrimPrefix(k[i+1:], ".")
			var name string
			if json.Unmarshal([]byte(value(fb, k[:i+1]+".Branch.name")), &name) == nil && name != "" {
				prefix = "branch " + name + ": "
			}
		}
		name, ok := optionNames[path]
		if !ok {
			name = path
		}
		out = append(out, fmt.Sprintf("%s%s: %s in the interrupted run, %s now", prefix, name, value(fa, k), value(fb, k)))
	}
	if len(out) > 6 {
		out = append(out[:6], fmt.Sprintf("and %d more", len(out)-6))
	}
	return out
}

// flattenJSON records every leaf of v under its path (objects' keys joined
// by dots, arrays' elements as [i]).
func flattenJSON(path string, v any, out map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			p := k
			if path != "" {
				p = path + "." + k
			}
			flattenJSON(p, e, out)
		}
	case []any:
		for i, e := range v {
			flattenJSON(fmt.Sprintf("%s[%d]", path, i), e, out)
		}
		if len(v) == 0 {
			out[path] = "[]"
		}
	default:
		b, _ := json.Marshal(v)
		out[path] = string(b)
	}
}

// describe says who wrote a partial output and how far it got.
func (p *Progress) describe() string {
	return fmt.Sprintf("branch %s, %d of %d layers done, started %s by pid %d on %s",
		p.Branch, p.LayersDone, p.Layers, p.Started.Local().Format("2006-01-02 15:04:05"), p.PID, p.Host)
}

// readProgress reads a partial output's record; a directory without one
// is not a partial output of ours.
func readProgress(dir string) (*Progress, error) {
	var p Progress
	return &p, readRecord(filepath.Join(dir, progressFile), &p, func() bool { return p.Format == progressMagic })
}

// readRecord reads one of our JSON records into v; ours says whether what
// was read carries the record's format marker.
func readRecord(path string, v any, ours func() bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil || !ours() {
		return fmt.Errorf("%s: not a gptqtool record", path)
	}
	return nil
}

// writeProgress replaces the record atomically.
func writeProgress(dir string, p *Progress) error {
	p.Updated = time.Now().UTC().Truncate(time.Second)
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, progressFile), append(b, '\n'))
}

// ModelFingerprint identifies a model directory's files without reading
// all of them: for each file its name, size and modification time; the
// small files (configs, tokenizer) whole; for weight files their header and
// 64 KiB every 256 MiB plus the last 64 KiB. A replaced or rewritten file
// changes it.
func ModelFingerprint(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00", e.Name(), fi.Size(), fi.ModTime().UnixNano())
		if err := hashSampled(h, filepath.Join(dir, e.Name()), fi.Size()); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashSampled(h io.Writer, path string, size int64) error {
	const whole, block, stride = 64 << 20, 64 << 10, 256 << 20
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if size <= whole {
		_, err := io.Copy(h, f)
		return err
	}
	buf := make([]byte, block)
	read := func(off int64) error {
		n, err := f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: %w", path, err)
		}
		h.Write(buf[:n])
		return nil
	}
	// The safetensors header (tensor names, shapes, offsets) whole.
	var n [8]byte
	if _, err := f.ReadAt(n[:], 0); err == nil {
		if hl := int64(binary.LittleEndian.Uint64(n[:])); hl > 0 && hl < min(size, safetensors.MaxHeaderSize) {
			if _, err := io.Copy(h, io.NewSectionReader(f, 0, 8+hl)); err != nil {
				return err
			}
		}
	}
	for off := int64(0); off < size; off += stride {
		if err := read(off); err != nil {
			return err
		}
	}
	return read(max(0, size-block))
}

// SamplesFingerprint identifies calibration samples (ids and masks).
func SamplesFingerprint(samples []quantize.Sample) string {
	h := sha256.New()
	var b [8]byte
	for _, s := range samples {
		binary.LittleEndian.PutUint64(b[:], uint64(len(s.IDs)))
		h.Write(b[:])
		for _, id := range s.IDs {
			binary.LittleEndian.PutUint32(b[:4], uint32(id))
			h.Write(b[:4])
		}
		for _, m := range s.Mask {
			if m {
				h.Write([]byte{1})
			} else {
				h.Write([]byte{0})
			}
		}
		h.Write([]byte{0xff})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// optionsFingerprint identifies everything besides model and samples that
// decides the bytes of a branch.
func optionsFingerprint(v any) string {
	sum := sha256.Sum256(optionValues(v))
	return hex.EncodeToString(sum[:])
}

// optionValues is the JSON that optionsFingerprint hashes.
func optionValues(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs of our own
	}
	return b
}

// IsOurs reports whether dir is something a gptqtool run wrote and --force
// may replace: a checkpoint or table (README.md says "quantized_by:
// gptqtool"), a git repository of branches made by GitRepo, a partial
// output, or an empty directory. what describes a directory that is not.
func IsOurs(dir string) (ours bool, what string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err.Error()
	}
	if len(entries) == 0 {
		return true, ""
	}
	if b, err := os.ReadFile(filepath.Join(dir, "README.md")); err == nil {
		switch {
		case strings.Contains(string(b), "\nconverted_by: gptqtool"):
			// (A conversion carries every file of its input, and the card
			// of a converted gptqtool checkpoint keeps its quantized_by.)
			return true, ""
		case strings.Contains(string(b), "\nquantized_by: gptqtool"):
			// A quantized checkpoint or table holds only what gptqtool
			// writes; anything else was put there since, and --force
			// would delete it unseen.
			if foreign := foreignEntries(dir, entries); len(foreign) > 0 {
				return false, fmt.Sprintf("%s %s, which gptqtool did not write", foreignWhat, listSome(foreign))
			}
			return true, ""
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "description")); err == nil && strings.HasPrefix(string(b), gitDescription) {
		return true, ""
	}
	if _, err := readProgress(dir); err == nil {
		return true, ""
	}
	if _, err := readTableRecord(dir); err == nil {
		return true, "" // an interrupted table
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return false, fmt.Sprintf("it holds %s and no gptqtool model card", listSome(names))
}

// foreignWhat begins IsOurs's description of a gptqtool output that holds
// files gptqtool did not write.
const foreignWhat = "a gptqtool output that also holds"

// listSome joins the first five names and counts the rest.
func listSome(names []string) string {
	more := ""
	if len(names) > 5 {
		more = fmt.Sprintf(" and %d more", len(names)-5)
	}
	return strings.Join(names[:min(len(names), 5)], ", ") + more
}

// foreignEntries lists the entries of a quantized checkpoint or table
// directory that no gptqtool run writes there: what is neither one of a
// checkpoint's files (weights, shards and index, configs, model card, the
// tokenizer and generation files it copies, a run's records, the temporary
// files of a write that was killed) nor a directory that is itself a
// gptqtool output (a table's branches, their partial outputs, the debris
// of earlier versions' partial outputs).
func foreignEntries(dir string, entries []os.DirEntry) []string {
	var out []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() {
			if n == chatTemplatesDir {
				continue // copied from the model
			}
			path := filepath.Join(dir, n)
			ours, _ := IsOurs(path)
			partial := strings.HasSuffix(n, ".partial") && onlyPartialFiles(path)
			debris := strings.HasPrefix(n, ".") && strings.Contains(n, ".partial-")
			if !ours && !partial && !debris {
				out = append(out, n+"/")
			}
			continue
		}
		switch {
		case strings.HasPrefix(n, ".") && strings.Contains(n, ".tmp-"): // (writeFileAtomic's, killed)
		case n == "README.md", n == "config.json", n == "quantize_config.json", n == progressFile, n == tableFile, n == lockFile,
			slices.Contains(copiedFiles, n), n == "model.safetensors", n == "model"+safetensors.IndexSuffix,
			strings.HasPrefix(n, "model-") && strings.HasSuffix(n, ".safetensors"):
		default:
			out = append(out, n)
		}
	}
	return out
}

// staleDebris lists the temporary directories that earlier versions left
// beside dir (".<name>.partial-<random>") when killed.
func staleDebris(dir string) []string {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(filepath.Clean(dir)), "."+filepath.Base(filepath.Clean(dir))+".partial-*"))
	return slices.DeleteFunc(matches, func(m string) bool {
		fi, err := os.Stat(m)
		return err != nil || !fi.IsDir()
	})
}
