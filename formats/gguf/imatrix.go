package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gptqtool/gptqtool/formats/hfconfig"
)

// Imatrix is an importance matrix as llama.cpp's llama-imatrix writes it:
// for each 2-D weight, by its GGUF name ("blk.0.attn_q.weight"), the sum
// over the calibration tokens of each input feature's square, and how many
// tokens were summed. llama-quantize weighs each weight's quantization
// error by its column's mean square (Importance); so does Convert with
// ConvertOptions.Imatrix.
type Imatrix struct {
	Entries   map[string]ImatrixEntry
	Chunks    int      // imatrix.chunk_count: the samples summed
	ChunkSize int      // imatrix.chunk_size: tokens a sample
	Datasets  []string // imatrix.datasets
	// Path is the base name of the file ReadImatrix read (Convert records
	// it as quantize.imatrix.file, as llama-quantize does).
	Path string
}

// ImatrixEntry is one weight's sums: Sum2[j] = Σ x_j² over Count tokens.
// A mixture of experts' stacked weight (ffn_gate_exps …) has one row of
// sums an expert, Sum2[e·n+j] over Counts[e], the tokens routed to expert
// e (llama-imatrix's in_sum2 [n, experts] and counts [1, experts]); Count
// is then unused. A dense weight's Counts is nil.
type ImatrixEntry struct {
	Sum2   []float32
	Count  float32
	Counts []float32
}

// rowCounts is e's count a row of sums: Counts, or a dense weight's Count.
func (e ImatrixEntry) rowCounts() []float32 {
	if e.Counts == nil {
		return []float32{e.Count}
	}
	return e.Counts
}

// Importance returns the mean square of each input feature of the weight
// named name (a GGUF name), nil when the matrix has no entry for it; for a
// stacked weight, each expert's row by its own count, one after another.
// As llama-quantize's load_imatrix, a count is rounded to an integer, and
// a row of no tokens (a count of 0: an expert no token reached) weighs
// every column 1. An entry whose sums are not whole rows of its counts is
// none (nil; Convert's checks name it).
func (m *Imatrix) Importance(name string) []float32 {
	e, ok := m.Entries[name]
	if !ok {
		return nil
	}
	counts := e.rowCounts()
	if len(e.Sum2) < len(counts) || len(e.Sum2)%len(counts) != 0 {
		return nil
	}
	n := len(e.Sum2) / len(counts)
	out := make([]float32, len(e.Sum2))
	for j, s := range e.Sum2 {
		if count := float32(math.Round(float64(counts[j/n]))); count > 0 {
			out[j] = s / count
		} else {
			out[j] = 1
		}
	}
	return out
}

// Imatrix GGUF keys and tensor suffixes (llama.cpp imatrix.cpp).
const (
	imatrixType       = "imatrix"
	imatrixDatasets   = "imatrix.datasets"
	imatrixChunkCount = "imatrix.chunk_count"
	imatrixChunkSize  = "imatrix.chunk_size"
	imatrixSum2       = ".in_sum2"
	imatrixCounts     = ".counts"
)

// Write writes m to path as llama.cpp's GGUF imatrix (general.type
// "imatrix"; NAME.in_sum2 [1, n] and NAME.counts [1], F32; a stacked
// weight's [experts, n] and [experts, 1]), which llama-quantize --imatrix
// reads; the file appears only when complete.
func (m *Imatrix) Write(path string) error {
	names := slices.Sorted(maps.Keys(m.Entries))
	var infos []TensorInfo
	for _, n := range names {
		e := m.Entries[n]
		sums, counts := []int{1, len(e.Sum2)}, []int{1}
		if e.Counts != nil {
			sums, counts = []int{len(e.Counts), len(e.Sum2) / len(e.Counts)}, []int{len(e.Counts), 1}
		}
		infos = append(infos,
			TensorInfo{Name: n + imatrixSum2, Shape: sums, Type: TypeF32},
			TensorInfo{Name: n + imatrixCounts, Shape: counts, Type: TypeF32})
	}
	datasets := m.Datasets
	if datasets == nil {
		datasets = []string{}
	}
	kvs := []KV{
		{"general.type", imatrixType},
		{imatrixDatasets, datasets},
		{imatrixChunkCount, uint32(m.Chunks)},
		{imatrixChunkSize, uint32(m.ChunkSize)},
	}
	w, err := Create(path, kvs, infos)
	if err != nil {
		return err
	}
	for _, n := range names {
		e := m.Entries[n]
		if err := w.WriteFloat32(n+imatrixSum2, e.Sum2); err != nil {
			w.Abort()
			return err
		}
		if err := w.WriteFloat32(n+imatrixCounts, e.rowCounts()); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Close()
}

// ReadImatrix reads an importance matrix written by llama-imatrix (or
// Write): the GGUF form, or the legacy .dat form (int32 entry count; per
// entry an int32-prefixed name, int32 ncall, int32 n and n float32 values,
// the mean squares times ncall; then optionally the chunk count and an
// int32-prefixed dataset name). Errors name the file and what is wrong.
func ReadImatrix(path string) (*Imatrix, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("imatrix: %w", err)
	}
	var m *Imatrix
	if bytes.HasPrefix(b, []byte("GGUF")) {
		m, err = readImatrixGGUF(path)
	} else if m, err = readImatrixLegacy(b); err != nil {
		err = fmt.Errorf("imatrix %s: %w (want llama-imatrix's GGUF or legacy .dat file)", path, err)
	}
	if err != nil {
		return nil, err
	}
	m.Path = filepath.Base(path)
	return m, nil
}

func readImatrixGGUF(path string) (*Imatrix, error) {
	f, err := Open(path)
	if err != nil {
		return nil, fmt.Errorf("imatrix: %w", err)
	}
	defer f.Close()
	if t, _ := Value[string](f, "general.type"); t != imatrixType {
		return nil, fmt.Errorf("imatrix %s: general.type %q, want %q (a model file, not an importance matrix?)", path, t, imatrixType)
	}
	m := &Imatrix{Entries: map[string]ImatrixEntry{}}
	if v, err := Value[uint32](f, imatrixChunkCount); err == nil {
		m.Chunks = int(v)
	}
	if v, err := Value[uint32](f, imatrixChunkSize); err == nil {
		m.ChunkSize = int(v)
	}
	if v, err := Value[[]string](f, imatrixDatasets); err == nil {
		m.Datasets = v
	}
	for _, ti := range f.Tensors() {
		name, ok := strings.CutSuffix(ti.Name, imatrixSum2)
		if !ok {
			continue
		}
		sums, err := f.Float32(ti.Name)
		if err != nil {
			return nil, fmt.Errorf("imatrix %s: %w", path, err)
		}
		counts, err := f.Float32(name + imatrixCounts)
		if err != nil {
			return nil, fmt.Errorf("imatrix %s: tensor %q: %w", path, name+imatrixCounts, err)
		}
		// A dense weight has one matrix: sums [1, n], counts [1]; a
		// mixture of experts' stacked weight one row of sums and a count
		// an expert.
		if len(counts) == 0 || len(sums)%len(counts) != 0 {
			return nil, fmt.Errorf("imatrix %s: tensor %q holds %d counts for %d sums, want one count a row of sums", path, name+imatrixCounts, len(counts), len(sums))
		}
		for _, c := range counts {
			if c := float64(c); math.IsNaN(c) || math.IsInf(c, 0) || c < 0 {
				return nil, fmt.Errorf("imatrix %s: tensor %q holds %g, want finite token counts", path, name+imatrixCounts, c)
			}
		}
		for j, v := range sums {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) || v < 0 {
				return nil, fmt.Errorf("imatrix %s: tensor %q: value %d is %g, want a finite non-negative sum of squares", path, ti.Name, j, v)
			}
		}
		e := ImatrixEntry{Sum2: sums, Count: counts[0]}
		if len(counts) > 1 {
			e.Counts = counts
		}
		m.Entries[name] = e
	}
	if len(m.Entries) == 0 {
		return nil, fmt.Errorf("imatrix %s: no %s tensors", path, imatrixSum2)
	}
	return m, nil
}

func readImatrixLegacy(b []byte) (*Imatrix, error) {
	r := bytes.NewReader(b)
	i32 := func(what string) (int, error) {
		var v int32
		if err := binary.Read(r, binary.LittleEndian, &v); err != nil {
			return 0, fmt.Errorf("%s: %w", what, errors.Join(err, io.ErrUnexpectedEOF))
		}
		return int(v), nil
	}
	str := func(what string) (string, error) {
		n, err := i32(what + " length")
		if err != nil {
			return "", err
		}
		if n < 0 || n > r.Len() {
			return "", fmt.Errorf("%s length %d, %d bytes left", what, n, r.Len())
		}
		s := make([]byte, n)
		r.Read(s)
		return string(s), nil
	}
	n, err := i32("entry count")
	if err != nil {
		return nil, err
	}
	if n <= 0 || n > r.Len()/16 {
		return nil, fmt.Errorf("entry count %d in %d bytes", n, len(b))
	}
	m := &Imatrix{Entries: map[string]ImatrixEntry{}}
	for i := range n {
		name, err := str(fmt.Sprintf("entry %d name", i))
		if err != nil {
			return nil, err
		}
		ncall, err := i32("entry " + name + " ncall")
		if err != nil {
			return nil, err
		}
		nval, err := i32("entry " + name + " value count")
		if err != nil {
			return nil, err
		}
		if nval < 0 || nval > r.Len()/4 {
			return nil, fmt.Errorf("entry %s: %d values, %d bytes left", name, nval, r.Len())
		}
		vals := make([]float32, nval)
		binary.Read(r, binary.LittleEndian, vals)
		for j, v := range vals {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) || v < 0 {
				return nil, fmt.Errorf("entry %s: value %d is %g, want a finite non-negative mean square", name, j, v)
			}
		}
		m.Entries[name] = ImatrixEntry{Sum2: vals, Count: float32(max(ncall, 1))}
		m.Chunks = max(m.Chunks, ncall)
	}
	// Optional trailer: the chunk count and the dataset's name.
	if r.Len() >= 4 {
		if c, err := i32("chunk count"); err == nil && c > 0 {
			m.Chunks = c
		}
		if r.Len() >= 4 {
			if d, err := str("dataset name"); err == nil && d != "" {
				m.Datasets = []string{d}
			}
		}
	}
	return m, nil
}

// NewImatrix is the importance matrix of sums (Σ x² of each input
// feature, by Hugging Face weight name: "model.layers.0.mlp.down_proj.weight")
// over tokens tokens of samples samples of seqLen, named for cfg's GGUF
// file (the names Convert writes); counts, by the same names, holds the
// tokens of the sums that are over fewer (a mixture of experts' experts,
// each over the tokens routed to it), whose stacked tensor's entry has a
// row and a count an expert. A name the file does not have, or an expert
// whose stack lacks another's sums, is an error.
func NewImatrix(cfg *hfconfig.Config, sums map[string][]float64, counts map[string]int64, tokens int64, samples, seqLen int, datasets []string) (*Imatrix, error) {
	type slot struct {
		name   string
		expert int // -1: a weight of its own
		of     int // the stack's experts
	}
	names := map[string]slot{}
	for _, s := range tensorSpecs(cfg) {
		switch {
		case s.experts != nil:
			for e, hf := range s.experts {
				names[hf] = slot{s.name, e, len(s.experts)}
			}
		case s.source != "":
			names[s.source] = slot{s.name, -1, 0}
		}
	}
	m := &Imatrix{Entries: map[string]ImatrixEntry{}, Chunks: samples, ChunkSize: seqLen, Datasets: datasets}
	filled := map[string]int{} // a stack's experts given
	for hf, v := range sums {
		sl, ok := names[hf]
		if !ok {
			return nil, fmt.Errorf("imatrix: %s has no GGUF tensor", hf)
		}
		n, ok := counts[hf]
		if !ok {
			n = tokens
		}
		if sl.expert < 0 {
			e := ImatrixEntry{Sum2: make([]float32, len(v)), Count: float32(n)}
			for j, x := range v {
				e.Sum2[j] = float32(x)
			}
			m.Entries[sl.name] = e
			continue
		}
		e, ok := m.Entries[sl.name]
		if !ok {
			e = ImatrixEntry{Sum2: make([]float32, sl.of*len(v)), Counts: make([]float32, sl.of)}
		}
		if len(e.Sum2) != sl.of*len(v) {
			return nil, fmt.Errorf("imatrix: %s has %d sums, its stack %s's other experts %d", hf, len(v), sl.name, len(e.Sum2)/sl.of)
		}
		for j, x := range v {
			e.Sum2[sl.expert*len(v)+j] = float32(x)
		}
		e.Counts[sl.expert] = float32(n)
		m.Entries[sl.name] = e
		filled[sl.name]++
	}
	for name, n := range filled {
		if of := len(m.Entries[name].Counts); n != of {
			return nil, fmt.Errorf("imatrix: %s: sums of %d of its %d experts", name, n, of)
		}
	}
	return m, nil
}
