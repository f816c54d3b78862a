package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// IndexSuffix ends the name of a shard index: model.safetensors.index.json.
const IndexSuffix = ".safetensors.index.json"

// Set is a whole checkpoint: one or more open safetensors files whose tensor
// names are unique across the set. Its methods are safe for concurrent use
// until Close.
type Set struct {
	dir    string
	files  []*File          // in Files() order
	byName map[string]*File // tensor name -> file holding it
	names  []string         // sorted
	// stored maps a renamed tensor's name to its name in the file, and
	// disk any name back (Rename); both nil when not renamed.
	stored map[string]string
	disk   func(string) string
}

// Index is the content of a model.safetensors.index.json file.
type Index struct {
	Metadata  map[string]any    `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

// OpenDir opens the checkpoint in dir, choosing in this order:
// model.safetensors; model.safetensors.index.json and the shards it names;
// the only *.safetensors.index.json; else every *.safetensors file in dir,
// which must not share tensor names.
func OpenDir(dir string) (*Set, error) {
	single := filepath.Join(dir, "model.safetensors")
	if st, err := os.Stat(single); err == nil && st.Mode().IsRegular() {
		return openFiles(dir, []string{single})
	}
	index := filepath.Join(dir, "model"+IndexSuffix)
	if _, err := os.Stat(index); err == nil {
		return openIndex(dir, index)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var indexes, paths []string
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() && e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		switch {
		case strings.HasSuffix(name, IndexSuffix):
			indexes = append(indexes, filepath.Join(dir, name))
		case strings.HasSuffix(name, ".safetensors") && !strings.HasPrefix(name, "."):
			paths = append(paths, filepath.Join(dir, name))
		}
	}
	if len(indexes) == 1 {
		return openIndex(dir, indexes[0])
	}
	if len(indexes) > 1 {
		return nil, fmt.Errorf("%s: %d shard indexes %v, want at most one", dir, len(indexes), baseNames(indexes))
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s: no model.safetensors, %s or *.safetensors file: %w", dir, "model"+IndexSuffix, fs.ErrNotExist)
	}
	return openFiles(dir, paths)
}

// ReadIndex reads and checks a shard index: it must hold a weight_map
// naming, for each tensor, a plain file name in the index's directory.
func ReadIndex(path string) (*Index, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var idx Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if idx.WeightMap == nil {
		return nil, fmt.Errorf("%s: no \"weight_map\" object", path)
	}
	for name, file := range idx.WeightMap {
		if file == "" || file != filepath.Base(file) || file == "." || file == ".." || strings.ContainsAny(file, `/\`) {
			return nil, fmt.Errorf("%s: tensor %q: shard %q is not a file name in the index's directory", path, name, file)
		}
	}
	return &idx, nil
}

// Shards returns the paths in dir of the files the index names, sorted,
// each once.
func (idx *Index) Shards(dir string) []string {
	var paths []string
	for _, file := range idx.WeightMap {
		paths = append(paths, filepath.Join(dir, file))
	}
	slices.Sort(paths)
	return slices.Compact(paths)
}

func openIndex(dir, indexPath string) (*Set, error) {
	idx, err := ReadIndex(indexPath)
	if err != nil {
		return nil, err
	}
	// A shard the index names that is not there is named with the index
	// and the tensors it should hold, as transformers names it, where the
	// open's error left the index out.
	for _, p := range idx.Shards(dir) {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			var held []string
			for name, file := range idx.WeightMap {
				if filepath.Join(dir, file) == p {
					held = append(held, name)
				}
			}
			slices.Sort(held)
			return nil, fmt.Errorf("%s names shard %s (for %d tensors, %q first), which does not exist: %w",
				indexPath, filepath.Base(p), len(held), held[0], fs.ErrNotExist)
		}
	}
	s, err := openAll(dir, idx.Shards(dir))
	if err != nil {
		return nil, err
	}
	s.byName = make(map[string]*File, len(idx.WeightMap))
	byPath := map[string]*File{}
	for _, f := range s.files {
		byPath[f.path] = f
	}
	for name, file := range idx.WeightMap {
		f := byPath[filepath.Join(dir, file)]
		if _, ok := f.index[name]; !ok {
			s.Close()
			where := ""
			for _, o := range s.files {
				if _, ok := o.index[name]; ok {
					where = fmt.Sprintf(" (it is in %s: the index names the wrong shard)", filepath.Base(o.path))
					break
				}
			}
			return nil, fmt.Errorf("%s: tensor %q: listed in %s but missing from the shard%s", f.path, name, filepath.Base(indexPath), where)
		}
		s.byName[name] = f
		s.names = append(s.names, name)
	}
	slices.Sort(s.names)
	return s, nil
}

func openFiles(dir string, paths []string) (*Set, error) {
	slices.Sort(paths)
	s, err := openAll(dir, paths)
	if err != nil {
		return nil, err
	}
	s.byName = map[string]*File{}
	for _, f := range s.files {
		for _, name := range f.names {
			if other, dup := s.byName[name]; dup {
				s.Close()
				return nil, fmt.Errorf("%s: tensor %q: also in %s", f.path, name, other.path)
			}
			s.byName[name] = f
			s.names = append(s.names, name)
		}
	}
	slices.Sort(s.names)
	return s, nil
}

func openAll(dir string, paths []string) (*Set, error) {
	s := &Set{dir: dir}
	for _, p := range paths {
		f, err := Open(p)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.files = append(s.files, f)
	}
	return s, nil
}

// Dir returns the directory the set was opened from.
func (s *Set) Dir() string { return s.dir }

// Names returns the sorted tensor names of the set.
func (s *Set) Names() []string { return append([]string(nil), s.names...) }

// Has reports whether the set holds the named tensor.
func (s *Set) Has(name string) bool {
	_, ok := s.byName[name]
	return ok
}

// ErrNotInCheckpoint is the error of a tensor that no file holds. It is
// fs.ErrNotExist for errors.Is, and reads as what it is, not as a missing
// file.
var ErrNotInCheckpoint error = notInCheckpoint{}

type notInCheckpoint struct{}

func (notInCheckpoint) Error() string        { return "not in the checkpoint" }
func (notInCheckpoint) Is(target error) bool { return target == fs.ErrNotExist }

// Tensor returns the named tensor (a zero-copy view, valid until Close) or
// an error naming the tensor and the directory.
func (s *Set) Tensor(name string) (Tensor, error) {
	f, ok := s.byName[name]
	if !ok {
		return Tensor{}, fmt.Errorf("%s: tensor %q: %w", s.dir, name, ErrNotInCheckpoint)
	}
	t, _ := f.Tensor(s.inFile(name))
	t.Name = name
	return t, nil
}

// inFile returns the name the file holds the tensor name under.
func (s *Set) inFile(name string) string {
	if n, ok := s.stored[name]; ok {
		return n
	}
	return name
}

// Rename gives the set's tensors the names toNew makes of their stored
// ones (for a checkpoint whose tensors sit under a prefix: a multimodal
// model's text model); toOld maps any name back, as DiskName reports it
// to a writer of a checkpoint in the same layout. Two tensors given one
// name are refused.
func (s *Set) Rename(toNew, toOld func(string) string) error {
	byName := make(map[string]*File, len(s.byName))
	stored := map[string]string{}
	names := make([]string, 0, len(s.names))
	for _, old := range s.names {
		f := s.byName[old]
		n := toNew(s.inFile(old))
		if _, dup := byName[n]; dup {
			return fmt.Errorf("%s: tensor %q: two tensors renamed to it", s.dir, n)
		}
		byName[n] = f
		if n != s.inFile(old) {
			stored[n] = s.inFile(old)
		}
		names = append(names, n)
	}
	slices.Sort(names)
	s.byName, s.stored, s.names, s.disk = byName, stored, names, toOld
	return nil
}

// DiskName returns the name a tensor named name is stored under in the
// set's layout: name itself unless the set was renamed (Rename's toOld).
func (s *Set) DiskName(name string) string {
	if s.disk == nil {
		return name
	}
	return s.disk(name)
}

// Infos returns name, dtype and shape of every tensor, in Names order.
func (s *Set) Infos() []TensorInfo {
	out := make([]TensorInfo, 0, len(s.names))
	for _, n := range s.names {
		f := s.byName[n]
		e := f.hdr.entries[f.index[s.inFile(n)]]
		out = append(out, TensorInfo{Name: n, DType: e.DType, Shape: append([]int(nil), e.Shape...)})
	}
	return out
}

// FileOrder returns the tensor names as they lie on disk: file by file (in
// Files order), each in data-offset order. Rewriting a checkpoint in this
// order keeps its layout.
func (s *Set) FileOrder() []string {
	back := make(map[string]string, len(s.stored))
	for n, old := range s.stored {
		back[old] = n
	}
	var out []string
	for _, f := range s.files {
		for _, e := range f.hdr.entries {
			if n, ok := back[e.Name]; ok {
				out = append(out, n)
				continue
			}
			out = append(out, e.Name)
		}
	}
	return out
}

// Files returns the paths of the set's files, sorted.
func (s *Set) Files() []string {
	out := make([]string, len(s.files))
	for i, f := range s.files {
		out[i] = f.path
	}
	return out
}

// TotalBytes returns the summed data size of the set's tensors.
func (s *Set) TotalBytes() int64 {
	var n int64
	for name, f := range s.byName {
		e := f.hdr.entries[f.index[s.inFile(name)]]
		n += e.end - e.begin
	}
	return n
}

// Metadata returns a copy of the __metadata__ map of the first file.
func (s *Set) Metadata() map[string]string {
	if len(s.files) == 0 {
		return map[string]string{}
	}
	return s.files[0].Metadata()
}

// Close closes every file of the set and returns their errors joined.
func (s *Set) Close() error {
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

func baseNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}

// Release tells the system that the named tensors' data will not be read
// again soon: their pages leave this process's resident memory (they are
// read from the file again if needed). A streaming reader calls it after
// uploading a layer, so that reading a 15 GB checkpoint does not make a
// 15 GB process. Unknown names are ignored.
func (s *Set) Release(names ...string) {
	for _, n := range names {
		if t, err := s.Tensor(n); err == nil {
			dropPages(t.Data)
		}
	}
}

// Prefetch asks the system to start reading the named tensors' data in the
// background (madvise WILLNEED), ahead of their use.
func (s *Set) Prefetch(names ...string) {
	for _, n := range names {
		if t, err := s.Tensor(n); err == nil {
			prefetchPages(t.Data)
		}
	}
}
