package pytorch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gptqtool/gptqtool/formats/safetensors"
)

// Checkpoint file names as transformers writes them (transformers
// utils/__init__.py WEIGHTS_NAME, WEIGHTS_INDEX_NAME).
const (
	WeightsName = "pytorch_model.bin"
	IndexName   = "pytorch_model.bin.index.json"
	indexSuffix = ".bin.index.json"
)

// ErrNoWeights is wrapped by OpenDir's error for a directory without
// PyTorch weight files (it wraps fs.ErrNotExist), as against one whose
// files are there but damaged or incomplete.
var ErrNoWeights = fmt.Errorf("%w", fs.ErrNotExist)

// Set is a whole PyTorch checkpoint: one file, or the shards of an index.
// Its methods are safe for concurrent use until Close.
type Set struct {
	dir    string
	files  []*File          // sorted by path
	byName map[string]*File // tensor name -> file holding it
	names  []string         // sorted
}

// OpenDir opens the PyTorch checkpoint in dir, choosing in this order:
// pytorch_model.bin; pytorch_model.bin.index.json and the shards its
// weight_map names; the only *.bin.index.json in dir; the only *.bin file
// in dir (AutoGPTQ's gptq_model-4bit-128g.bin). Every listed tensor
// must be in its shard; tensors a shard holds beyond the index are ignored,
// as transformers ignores them.
func OpenDir(dir string) (*Set, error) {
	single := filepath.Join(dir, WeightsName)
	if st, err := os.Stat(single); err == nil && st.Mode().IsRegular() {
		return openSingle(dir, single)
	}
	index := filepath.Join(dir, IndexName)
	if _, err := os.Stat(index); err == nil {
		return openIndex(dir, index)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var indexes, bins []string
	for _, e := range entries {
		switch n := e.Name(); {
		case strings.HasPrefix(n, "."):
		case strings.HasSuffix(n, indexSuffix):
			indexes = append(indexes, n)
		case strings.HasSuffix(n, ".bin") && !trainingFiles[n]:
			// A link (a Hugging Face cache snapshot's are) counts as
			// the file it names.
			if st, err := os.Stat(filepath.Join(dir, n)); err == nil && st.Mode().IsRegular() {
				bins = append(bins, n)
			}
		}
	}
	switch len(indexes) {
	case 0:
	case 1:
		return openIndex(dir, filepath.Join(dir, indexes[0]))
	default:
		return nil, fmt.Errorf("%s: %d shard indexes %v, want at most one", dir, len(indexes), indexes)
	}
	// One file of another name: AutoGPTQ (use_safetensors=False) names it
	// after model_file_base_name, gptq_model-4bit-128g.bin.
	switch len(bins) {
	case 0:
		return nil, fmt.Errorf("%s: no %s, %s or *%s file: %w", dir, WeightsName, IndexName, indexSuffix, ErrNoWeights)
	case 1:
		return openSingle(dir, filepath.Join(dir, bins[0]))
	}
	return nil, fmt.Errorf("%s: no %s or shard index, and %d .bin files (%s): which one holds the model is unclear; name it %s", dir, WeightsName, len(bins), strings.Join(bins, ", "), WeightsName)
}

// trainingFiles are the pickles that transformers' Trainer and accelerate
// save beside a checkpoint, which hold no weights.
var trainingFiles = map[string]bool{
	"training_args.bin": true, "optimizer.bin": true, "scheduler.bin": true, "scaler.bin": true,
}

// openSingle opens a checkpoint of one file.
func openSingle(dir, file string) (*Set, error) {
	f, err := Open(file)
	if err != nil {
		return nil, err
	}
	s := &Set{dir: dir, files: []*File{f}, byName: make(map[string]*File, len(f.names)), names: f.Names()}
	for _, n := range f.names {
		s.byName[n] = f
	}
	return s, nil
}

func openIndex(dir, indexPath string) (*Set, error) {
	idx, err := safetensors.ReadIndex(indexPath)
	if err != nil {
		return nil, err
	}
	s := &Set{dir: dir, byName: make(map[string]*File, len(idx.WeightMap))}
	byPath := map[string]*File{}
	for _, p := range idx.Shards(dir) {
		f, err := Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			// The index names a shard that is not there: say which
			// tensors it was to hold.
			s.Close()
			var held []string
			for name, file := range idx.WeightMap {
				if filepath.Join(dir, file) == p {
					held = append(held, name)
				}
			}
			slices.Sort(held)
			return nil, fmt.Errorf("%s: shard %q is missing (it is to hold %d tensors, %q first): %w", indexPath, filepath.Base(p), len(held), clip(held[0]), err)
		}
		if err != nil {
			s.Close()
			return nil, err
		}
		s.files = append(s.files, f)
		byPath[p] = f
	}
	for name, file := range idx.WeightMap {
		f := byPath[filepath.Join(dir, file)]
		if _, ok := f.tensors[name]; !ok {
			s.Close()
			return nil, fmt.Errorf("%s: tensor %q: listed in %s but missing from the shard", f.path, clip(name), filepath.Base(indexPath))
		}
		s.byName[name] = f
		s.names = append(s.names, name)
	}
	slices.Sort(s.names)
	return s, nil
}

// Dir returns the directory the set was opened from.
func (s *Set) Dir() string { return s.dir }

// Files returns the paths of the set's files, sorted.
func (s *Set) Files() []string {
	out := make([]string, len(s.files))
	for i, f := range s.files {
		out[i] = f.path
	}
	return out
}

// Names returns the sorted tensor names of the set.
func (s *Set) Names() []string { return append([]string(nil), s.names...) }

// Infos returns name, dtype and shape of every tensor of the set, sorted by
// name, without reading data.
func (s *Set) Infos() []safetensors.TensorInfo {
	out := make([]safetensors.TensorInfo, len(s.names))
	for i, n := range s.names {
		info := s.byName[n].tensors[n].info
		info.Shape = append([]int(nil), info.Shape...)
		out[i] = info
	}
	return out
}

// Tensor reads the named tensor from the shard holding it (see
// File.Tensor). A name not in the set gives an error wrapping
// fs.ErrNotExist.
func (s *Set) Tensor(name string) (safetensors.Tensor, error) {
	f, ok := s.byName[name]
	if !ok {
		return safetensors.Tensor{}, fmt.Errorf("%s: tensor %q: %w", s.dir, clip(name), safetensors.ErrNotInCheckpoint)
	}
	return f.Tensor(name)
}

// Close closes every file of the set and returns their errors joined.
func (s *Set) Close() error {
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}
