package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// WriterOptions configures Create.
type WriterOptions struct {
	// BaseName is the file name stem: "model" (the default) writes
	// model.safetensors or model-00001-of-00002.safetensors and
	// model.safetensors.index.json.
	BaseName string
	// MaxShardBytes caps the tensor data bytes of one shard, as
	// transformers' max_shard_size does (headers are not counted). A tensor
	// larger than the cap gets a shard of its own. 0 never shards.
	MaxShardBytes int64
	// Metadata goes into every file's __metadata__; "format":"pt" is always
	// set, as transformers requires.
	Metadata map[string]string
	// Resumable names the temporary shard files after their final names
	// (".<final>.partial") instead of random ones, so that State and Resume
	// can continue an interrupted write. dir must then be private to the
	// writer (a run's own partial directory).
	Resumable bool
	// Rename gives the name each tensor is stored under in the headers
	// and the index (a multimodal checkpoint's text model under its
	// prefix: Set.DiskName); the Writer's methods take the declared
	// names. Nil stores the declared names.
	Rename func(string) string
}

// WriterState is how far a Writer got: every tensor before Next is
// written, and Written[i] bytes of shard i's data follow its header. A
// state taken by State after a Sync survives the process (SIGKILL, power
// loss): Resume continues from it.
type WriterState struct {
	Next    int     `json:"next"`
	Written []int64 `json:"written"`
}

// Writer streams a checkpoint to disk: the tensors are declared to Create,
// then their data is passed to Write one tensor at a time in declaration
// order. Nothing is visible under the final names until Close succeeds.
// A Writer is not safe for concurrent use.
type Writer struct {
	dir      string
	opts     WriterOptions
	tensors  []TensorInfo
	sizes    []int64
	shardOf  []int // tensor index -> shard index
	shards   []*shard
	next     int // index of the next tensor to write
	err      error
	finished bool
}

// shard is one output file being written under a temporary name.
type shard struct {
	final   string // file name (no dir)
	first   int    // first tensor index
	last    int    // one past the last tensor index
	header  []byte // 8-byte length + padded JSON
	tmp     *os.File
	buf     *bufio.Writer
	written int64
	done    bool // flushed, synced and closed (tmp keeps the name)
}

// Create validates the declared tensors, plans the shards and returns a
// Writer for dir (which must exist). Names must be unique and non-empty,
// dtypes recognised, shapes non-negative.
func Create(dir string, tensors []TensorInfo, opts WriterOptions) (*Writer, error) {
	if opts.BaseName == "" {
		opts.BaseName = "model"
	}
	if opts.BaseName != filepath.Base(opts.BaseName) || opts.BaseName == "." || opts.BaseName == ".." {
		return nil, fmt.Errorf("safetensors writer: base name %q is not a plain file name", opts.BaseName)
	}
	if opts.MaxShardBytes < 0 {
		return nil, fmt.Errorf("safetensors writer: negative MaxShardBytes %d", opts.MaxShardBytes)
	}
	meta := map[string]string{}
	maps.Copy(meta, opts.Metadata)
	meta["format"] = "pt"
	opts.Metadata = meta
	if st, err := os.Stat(dir); err != nil {
		return nil, err
	} else if !st.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", dir)
	}
	w := &Writer{dir: dir, opts: opts}
	seen := map[string]bool{}
	for _, t := range tensors {
		if t.Name == "" || t.Name == MetadataKey {
			return nil, fmt.Errorf("safetensors writer: invalid tensor name %q", t.Name)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("safetensors writer: tensor %q declared twice", t.Name)
		}
		seen[t.Name] = true
		n := int64(1)
		for _, d := range t.Shape {
			if d < 0 || (d > 0 && n > maxInt64/int64(d)) {
				return nil, fmt.Errorf("safetensors writer: tensor %q: invalid shape %v", t.Name, t.Shape)
			}
			n *= int64(d)
		}
		size, err := byteSize(t.DType, n)
		if err != nil {
			return nil, fmt.Errorf("safetensors writer: tensor %q: %w", t.Name, err)
		}
		w.tensors = append(w.tensors, TensorInfo{Name: t.Name, DType: t.DType, Shape: slices.Clone(t.Shape)})
		w.sizes = append(w.sizes, size)
	}
	w.planShards()
	for _, s := range w.shards {
		h, err := encodeHeader(w.stored(w.tensors[s.first:s.last]), w.sizes[s.first:s.last], meta)
		if err != nil {
			return nil, err
		}
		s.header = h
	}
	return w, nil
}

// planShards splits the tensors greedily in declaration order, starting a
// new shard when the next tensor would push the current one past the cap.
func (w *Writer) planShards() {
	w.shardOf = make([]int, len(w.tensors))
	cur := &shard{}
	var curBytes int64
	for i, size := range w.sizes {
		if w.opts.MaxShardBytes > 0 && cur.last > cur.first && curBytes+size > w.opts.MaxShardBytes {
			w.shards = append(w.shards, cur)
			cur = &shard{first: i, last: i}
			curBytes = 0
		}
		cur.last = i + 1
		curBytes += size
		w.shardOf[i] = len(w.shards)
	}
	w.shards = append(w.shards, cur)
	if len(w.shards) == 1 {
		w.shards[0].final = w.opts.BaseName + ".safetensors"
		return
	}
	for i, s := range w.shards {
		s.final = ShardName(w.opts.BaseName, i+1, len(w.shards))
	}
}

// ShardName returns the file name transformers gives shard i (1-based) of
// n: ShardName("model", 1, 3) is "model-00001-of-00003.safetensors".
func ShardName(base string, i, n int) string {
	return fmt.Sprintf("%s-%05d-of-%05d.safetensors", base, i, n)
}

// Shards returns the final file names the writer will produce, in order.
func (w *Writer) Shards() []string {
	out := make([]string, len(w.shards))
	for i, s := range w.shards {
		out[i] = s.final
	}
	return out
}

// stored returns tensors under the names opts.Rename stores them under.
func (w *Writer) stored(tensors []TensorInfo) []TensorInfo {
	if w.opts.Rename == nil {
		return tensors
	}
	out := make([]TensorInfo, len(tensors))
	for i, t := range tensors {
		out[i] = TensorInfo{Name: w.opts.Rename(t.Name), DType: t.DType, Shape: t.Shape}
	}
	return out
}

// encodeHeader returns the 8-byte length and the JSON header, padded with
// spaces so the data section starts at a multiple of 8. Tensors are laid out
// contiguously in the given order.
func encodeHeader(tensors []TensorInfo, sizes []int64, meta map[string]string) ([]byte, error) {
	var js bytes.Buffer
	js.WriteByte('{')
	mb, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("safetensors writer: metadata: %w", err)
	}
	js.WriteString(`"` + MetadataKey + `":`)
	js.Write(mb)
	var off int64
	for i, t := range tensors {
		nb, err := json.Marshal(t.Name)
		if err != nil {
			return nil, fmt.Errorf("safetensors writer: tensor %q: %w", t.Name, err)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		sb, _ := json.Marshal(shape)
		db, _ := json.Marshal(string(t.DType))
		js.WriteByte(',')
		js.Write(nb)
		fmt.Fprintf(&js, `:{"dtype":%s,"shape":%s,"data_offsets":[%d,%d]}`, db, sb, off, off+sizes[i])
		off += sizes[i]
	}
	js.WriteByte('}')
	for js.Len()%8 != 0 {
		js.WriteByte(' ')
	}
	if js.Len() > MaxHeaderSize {
		return nil, fmt.Errorf("safetensors writer: header of %d bytes exceeds the %d-byte limit", js.Len(), MaxHeaderSize)
	}
	out := make([]byte, 8, 8+js.Len())
	binary.LittleEndian.PutUint64(out, uint64(js.Len()))
	return append(out, js.Bytes()...), nil
}

// Write writes the data of the next declared tensor, which must be name,
// little-endian and exactly its byte size. After an error the Writer is
// spent: Close reports the error and removes the temporary files.
func (w *Writer) Write(name string, data []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.finished {
		return fmt.Errorf("safetensors writer: tensor %q: write after Close", name)
	}
	if w.next >= len(w.tensors) {
		return w.fail(fmt.Errorf("safetensors writer: tensor %q: all %d declared tensors already written", name, len(w.tensors)))
	}
	t := w.tensors[w.next]
	if name != t.Name {
		return w.fail(fmt.Errorf("safetensors writer: tensor %q written, want %q next (declaration order)", name, t.Name))
	}
	if int64(len(data)) != w.sizes[w.next] {
		return w.fail(fmt.Errorf("safetensors writer: tensor %q: %d bytes, shape %v %s needs %d", name, len(data), t.Shape, t.DType, w.sizes[w.next]))
	}
	s := w.shards[w.shardOf[w.next]]
	if s.tmp == nil {
		if err := w.openShard(s); err != nil {
			return w.fail(err)
		}
	}
	if _, err := s.buf.Write(data); err != nil {
		return w.fail(fmt.Errorf("%s: tensor %q: %w", s.tmp.Name(), name, err))
	}
	s.written += int64(len(data))
	w.next++
	// A shard is finished with its last tensor: close it now, so that a
	// checkpoint of many shards holds one open file and one buffer at a time.
	if w.next == s.last {
		if err := s.finish(); err != nil {
			return w.fail(err)
		}
	}
	return nil
}

// finish flushes, fsyncs and closes a shard's temporary file.
func (s *shard) finish() error {
	if s.done {
		return nil
	}
	if err := s.buf.Flush(); err != nil {
		return fmt.Errorf("%s: %w", s.tmp.Name(), err)
	}
	if err := s.tmp.Sync(); err != nil {
		return fmt.Errorf("%s: fsync: %w", s.tmp.Name(), err)
	}
	if err := s.tmp.Close(); err != nil {
		return fmt.Errorf("%s: %w", s.tmp.Name(), err)
	}
	s.done, s.buf = true, nil
	return nil
}

// filePerm is the mode of the files the Writer creates.
const filePerm = 0o644

// partialName is the temporary name of a resumable shard.
func partialName(final string) string { return "." + final + ".partial" }

func (w *Writer) openShard(s *shard) error {
	var f *os.File
	var err error
	if w.opts.Resumable {
		f, err = os.OpenFile(filepath.Join(w.dir, partialName(s.final)), os.O_RDWR|os.O_CREATE|os.O_TRUNC, filePerm)
	} else {
		f, err = os.CreateTemp(w.dir, "."+s.final+".*.tmp")
	}
	if err != nil {
		return err
	}
	s.tmp = f
	// CreateTemp makes the file 0600; a checkpoint is read by others.
	if err := f.Chmod(filePerm); err != nil {
		return err
	}
	s.buf = bufio.NewWriterSize(f, 1<<20)
	if _, err := s.buf.Write(s.header); err != nil {
		return fmt.Errorf("%s: header: %w", f.Name(), err)
	}
	return nil
}

// Sync makes everything written so far durable (flush and fsync of the
// shard being written) and returns the state Resume continues from.
func (w *Writer) Sync() (WriterState, error) {
	if w.err != nil {
		return WriterState{}, w.err
	}
	if !w.opts.Resumable {
		return WriterState{}, errors.New("safetensors writer: Sync needs a resumable writer")
	}
	st := WriterState{Next: w.next, Written: make([]int64, len(w.shards))}
	for i, s := range w.shards {
		st.Written[i] = s.written
		if s.tmp == nil || s.done {
			continue
		}
		if err := s.buf.Flush(); err != nil {
			return WriterState{}, w.fail(fmt.Errorf("%s: %w", s.tmp.Name(), err))
		}
		if err := s.tmp.Sync(); err != nil {
			return WriterState{}, w.fail(fmt.Errorf("%s: fsync: %w", s.tmp.Name(), err))
		}
	}
	syncDir(w.dir)
	return st, nil
}

// Resume is Create for a resumable write interrupted after state st: the
// shard files in dir must hold the headers Create would write and at least
// the data st records (CheckResume); anything past it (a tensor half
// written when the process died) is cut off, and writing continues with
// tensor st.Next.
func Resume(dir string, tensors []TensorInfo, opts WriterOptions, st WriterState) (*Writer, error) {
	opts.Resumable = true
	w, err := Create(dir, tensors, opts)
	if err != nil {
		return nil, err
	}
	wants, err := w.checkState(st)
	if err != nil {
		return nil, err
	}
	for i, s := range w.shards {
		if s.first >= st.Next {
			continue // not started: opened (and truncated) when reached
		}
		path := filepath.Join(dir, partialName(s.final))
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			w.cleanupFiles()
			return nil, fmt.Errorf("safetensors writer: resume: %w", err)
		}
		s.tmp = f
		end := int64(len(s.header)) + wants[i]
		if err := f.Truncate(end); err != nil {
			w.cleanupFiles()
			return nil, fmt.Errorf("safetensors writer: resume: %s: %w", path, err)
		}
		if _, err := f.Seek(end, 0); err != nil {
			w.cleanupFiles()
			return nil, fmt.Errorf("safetensors writer: resume: %s: %w", path, err)
		}
		s.written = wants[i]
		if st.Next >= s.last {
			if err := f.Close(); err != nil {
				w.cleanupFiles()
				return nil, err
			}
			s.done = true
		} else {
			s.buf = bufio.NewWriterSize(f, 1<<20)
		}
	}
	w.next = st.Next
	return w, nil
}

// CheckResume reports whether Resume would take the write in dir
// interrupted after state st, changing nothing: the state must fit the
// planned shards, and each shard file begun must hold at least the data st
// records, under the header Create would write. The error is Resume's,
// naming the file.
func CheckResume(dir string, tensors []TensorInfo, opts WriterOptions, st WriterState) error {
	opts.Resumable = true
	w, err := Create(dir, tensors, opts)
	if err != nil {
		return err
	}
	_, err = w.checkState(st)
	return err
}

// checkState checks st against the plan and the shard files on disk
// (read only), and returns the data bytes st records per shard.
func (w *Writer) checkState(st WriterState) ([]int64, error) {
	if st.Next < 0 || st.Next > len(w.tensors) || len(st.Written) != len(w.shards) {
		return nil, fmt.Errorf("safetensors writer: resume state (tensor %d, %d shards) does not fit %d tensors in %d shards", st.Next, len(st.Written), len(w.tensors), len(w.shards))
	}
	wants := make([]int64, len(w.shards))
	for i, s := range w.shards {
		// The data the state says each shard holds: whole tensors only.
		var want int64
		for t := s.first; t < min(s.last, st.Next); t++ {
			want += w.sizes[t]
		}
		if st.Written[i] != want {
			return nil, fmt.Errorf("safetensors writer: resume state: shard %s holds %d bytes, tensors before %d need %d", s.final, st.Written[i], st.Next, want)
		}
		wants[i] = want
		if s.first >= st.Next {
			continue
		}
		path := filepath.Join(w.dir, partialName(s.final))
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("safetensors writer: resume: %w", err)
		}
		end := int64(len(s.header)) + want
		short := fmt.Errorf("safetensors writer: resume: %s: shorter than the %d bytes recorded as written", path, end)
		fi, err := f.Stat()
		if err != nil || fi.Size() < int64(len(s.header)) {
			f.Close()
			return nil, short // (not even a header: cut short, not another plan's)
		}
		head := make([]byte, len(s.header))
		_, err = f.ReadAt(head, 0)
		f.Close()
		if err != nil || !bytes.Equal(head, s.header) {
			return nil, fmt.Errorf("safetensors writer: resume: %s: the header differs from the planned one (written by another plan)", path)
		}
		if fi.Size() < end {
			return nil, short
		}
	}
	return wants, nil
}

// ReadBack returns the data of a tensor this writer has already written
// (resumable writers only), read from its shard file.
func (w *Writer) ReadBack(name string) ([]byte, error) {
	i := slices.IndexFunc(w.tensors, func(t TensorInfo) bool { return t.Name == name })
	if i < 0 || i >= w.next {
		return nil, fmt.Errorf("safetensors writer: tensor %q: not written yet", name)
	}
	s := w.shards[w.shardOf[i]]
	if s.buf != nil {
		if err := s.buf.Flush(); err != nil {
			return nil, w.fail(err)
		}
	}
	off := int64(len(s.header))
	for t := s.first; t < i; t++ {
		off += w.sizes[t]
	}
	f, err := os.Open(filepath.Join(w.dir, partialName(s.final)))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data := make([]byte, w.sizes[i])
	if _, err := f.ReadAt(data, off); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.Name(), name, err)
	}
	return data, nil
}

// Suspend ends a resumable write without finishing it: what was written
// is flushed and synced, the files are closed and left in place for
// Resume, and the returned state says how far the write got. The Writer
// cannot be used afterwards.
func (w *Writer) Suspend() (WriterState, error) {
	st, err := w.Sync()
	for _, s := range w.shards {
		if s.tmp != nil && !s.done {
			s.tmp.Close()
		}
		s.tmp = nil
	}
	w.finished = true
	if w.err == nil {
		w.err = errors.New("safetensors writer: suspended")
	}
	return st, err
}

// cleanupFiles closes the files Resume opened without removing them: a
// failed resume leaves the partial output as it found it.
func (w *Writer) cleanupFiles() {
	for _, s := range w.shards {
		if s.tmp != nil && !s.done {
			s.tmp.Close()
		}
		s.tmp = nil
	}
	w.finished = true
	w.err = errors.New("safetensors writer: resume failed")
}

func (w *Writer) fail(err error) error {
	w.err = err
	return err
}

// Close finishes the checkpoint: if every declared tensor was written it
// flushes and fsyncs each shard, renames the temporary files to their final
// names and, when sharded, writes <base>.safetensors.index.json
// ({"metadata":{"total_size":N},"weight_map":{name:file}}) the same way.
// Otherwise, or on any failure, it removes the temporary files and returns
// an error.
func (w *Writer) Close() error {
	if w.finished {
		return w.err
	}
	w.finished = true
	if w.err == nil && w.next < len(w.tensors) {
		w.err = fmt.Errorf("safetensors writer: closed after %d of %d tensors, tensor %q not written", w.next, len(w.tensors), w.tensors[w.next].Name)
	}
	if w.err != nil {
		w.cleanup()
		return w.err
	}
	for _, s := range w.shards {
		if s.tmp == nil { // a shard of empty tensors only, or no tensors at all
			if err := w.openShard(s); err != nil {
				w.err = err
				w.cleanup()
				return err
			}
		}
		if err := s.finish(); err != nil {
			w.err = err
		}
		if w.err != nil {
			w.cleanup()
			return w.err
		}
	}
	var index string
	if len(w.shards) > 1 {
		var err error
		if index, err = w.writeIndexTemp(); err != nil {
			w.err = err
			w.cleanup()
			return err
		}
	}
	for _, s := range w.shards {
		if err := os.Rename(s.tmp.Name(), filepath.Join(w.dir, s.final)); err != nil {
			w.err = err
			w.cleanup()
			if index != "" {
				os.Remove(index)
			}
			return err
		}
		s.tmp = nil
	}
	// The index goes last: its presence means every shard is in place.
	if index != "" {
		if err := os.Rename(index, filepath.Join(w.dir, w.opts.BaseName+IndexSuffix)); err != nil {
			os.Remove(index)
			w.err = err
			return err
		}
	}
	syncDir(w.dir)
	return nil
}

func (w *Writer) writeIndexTemp() (string, error) {
	var total int64
	wm := make(map[string]string, len(w.tensors))
	for i, t := range w.tensors {
		total += w.sizes[i]
		name := t.Name
		if w.opts.Rename != nil {
			name = w.opts.Rename(name)
		}
		wm[name] = w.shards[w.shardOf[i]].final
	}
	b, err := json.MarshalIndent(struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{map[string]int64{"total_size": total}, wm}, "", "  ")
	if err != nil {
		return "", fmt.Errorf("safetensors writer: index: %w", err)
	}
	return writeTemp(w.dir, w.opts.BaseName+IndexSuffix, append(b, '\n'))
}

// writeTemp writes b to a synced temporary file next to final and returns
// its path.
func writeTemp(dir, final string, b []byte) (string, error) {
	f, err := os.CreateTemp(dir, "."+final+".*.tmp")
	if err != nil {
		return "", err
	}
	err = f.Chmod(filePerm)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("%s: %w", f.Name(), err)
	}
	return f.Name(), nil
}

// Abort removes the temporary files; the Writer cannot be used afterwards.
// Aborting after a successful Close does nothing.
func (w *Writer) Abort() {
	if w.finished {
		return
	}
	w.finished = true
	if w.err == nil {
		w.err = errors.New("safetensors writer: aborted")
	}
	w.cleanup()
}

func (w *Writer) cleanup() {
	for _, s := range w.shards {
		if s.tmp != nil {
			if !s.done {
				s.tmp.Close()
			}
			os.Remove(s.tmp.Name())
			s.tmp = nil
		}
	}
}

// syncDir makes the renames durable where the platform allows it; failure
// only weakens crash safety, so it is not reported.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// WriteFile writes tensors, in the given order, to a single safetensors file
// at path with metadata (plus "format":"pt"), via a temporary file renamed
// when complete. It is meant for small files such as test vectors.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) error {
	infos := make([]TensorInfo, len(tensors))
	for i, t := range tensors {
		infos[i] = t.TensorInfo
	}
	base := filepath.Base(path)
	w, err := Create(filepath.Dir(path), infos, WriterOptions{BaseName: base, Metadata: metadata})
	if err != nil {
		return err
	}
	w.shards[0].final = base // the exact name, not base+".safetensors"
	for _, t := range tensors {
		if err := w.Write(t.Name, t.Data); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Close()
}
