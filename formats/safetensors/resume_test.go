package safetensors

import (
	"bytes"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// dirBytes reads every file of dir.
func dirBytes(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, n := range dirNames(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		out[n] = b
	}
	return out
}

// TestResume writes a sharded checkpoint, abandons the writer after each
// possible synced state (with part of the next tensor written and
// garbage behind it, as a process killed mid-write leaves), resumes and
// checks that the result is byte-identical to an uninterrupted write.
func TestResume(t *testing.T) {
	tensors := randomTensors(rand.New(rand.NewPCG(7, 8)))
	infos := make([]TensorInfo, len(tensors))
	for i, x := range tensors {
		infos[i] = x.TensorInfo
	}
	opts := WriterOptions{MaxShardBytes: 700, Metadata: map[string]string{"k": "v"}, Resumable: true}
	ref := t.TempDir()
	shards := writeAll(t, ref, tensors, opts)
	if len(shards) < 3 {
		t.Fatalf("want at least 3 shards to cross, got %v", shards)
	}
	want := dirBytes(t, ref)
	for stop := 0; stop <= len(tensors); stop++ {
		dir := t.TempDir()
		w, err := Create(dir, infos, opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range tensors[:stop] {
			if err := w.Write(x.Name, x.Data); err != nil {
				t.Fatal(err)
			}
		}
		st, err := w.Sync()
		if err != nil {
			t.Fatal(err)
		}
		if stop < len(tensors) {
			// Half of the next tensor reaches the disk, then the process dies.
			x := tensors[stop]
			w.Write(x.Name, x.Data)
			w.Sync()
			s := w.shards[w.shardOf[stop]]
			if s.tmp != nil {
				if f, err := os.OpenFile(s.tmp.Name(), os.O_WRONLY|os.O_APPEND, 0); err == nil {
					f.Write([]byte("garbage after the crash"))
					f.Close()
				}
			}
		}
		// Abandoned: no Close, no Abort (the files stay as they are).
		w2, err := Resume(dir, infos, opts, st)
		if err != nil {
			t.Fatalf("stop %d: %v", stop, err)
		}
		for i, x := range tensors[:stop] {
			got, err := w2.ReadBack(x.Name)
			if err != nil || !bytes.Equal(got, x.Data) {
				t.Fatalf("stop %d: ReadBack(%s) = %d bytes, %v; want tensor %d's data", stop, x.Name, len(got), err, i)
			}
		}
		for _, x := range tensors[stop:] {
			if err := w2.Write(x.Name, x.Data); err != nil {
				t.Fatalf("stop %d: %v", stop, err)
			}
		}
		if err := w2.Close(); err != nil {
			t.Fatalf("stop %d: %v", stop, err)
		}
		got := dirBytes(t, dir)
		if g, w := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)); !slices.Equal(g, w) {
			t.Fatalf("stop %d: files %v, want %v", stop, g, w)
		}
		for n, b := range want {
			if !bytes.Equal(got[n], b) {
				t.Errorf("stop %d: %s differs from the uninterrupted write", stop, n)
			}
		}
	}
}

// syncedPartial is a resumable write of randomTensors in shards of 700
// bytes, in a temporary folder, synced after its first four tensors: what
// an interrupted run leaves for Resume and CheckResume.
func syncedPartial(t *testing.T) (dir string, tensors []Tensor, infos []TensorInfo, opts WriterOptions, w *Writer, st WriterState) {
	t.Helper()
	tensors = randomTensors(rand.New(rand.NewPCG(1, 2)))
	infos = make([]TensorInfo, len(tensors))
	for i, x := range tensors {
		infos[i] = x.TensorInfo
	}
	opts = WriterOptions{MaxShardBytes: 700, Resumable: true}
	dir = t.TempDir()
	w, err := Create(dir, infos, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range tensors[:4] {
		w.Write(x.Name, x.Data)
	}
	if st, err = w.Sync(); err != nil {
		t.Fatal(err)
	}
	return dir, tensors, infos, opts, w, st
}

// TestResumeRefuses: a state that does not fit the plan, a header written
// for another plan and a file shorter than the state are refused, and the
// partial files are left as they were.
func TestResumeRefuses(t *testing.T) {
	dir, _, infos, opts, w, st := syncedPartial(t)
	before := dirBytes(t, dir)
	other := slices.Clone(infos)
	other[0].Shape = []int{16, 16}
	short := st
	short.Written = slices.Clone(st.Written)
	short.Written[0] -= 2
	cases := map[string]func() error{
		"another plan": func() error { _, err := Resume(dir, other, opts, st); return err },
		"bad state":    func() error { _, err := Resume(dir, infos, opts, short); return err },
		"past the end": func() error {
			s := st
			s.Next = len(infos) + 1
			_, err := Resume(dir, infos, opts, s)
			return err
		},
	}
	for name, fn := range cases {
		t.Run(name, func(t *testing.T) {
			if err := fn(); err == nil {
				t.Fatal("resumed")
			}
			after := dirBytes(t, dir)
			for n, b := range before {
				if !bytes.Equal(after[n], b) {
					t.Errorf("%s changed", n)
				}
			}
		})
	}
	os.Truncate(filepath.Join(dir, partialName(w.shards[0].final)), 20)
	if _, err := Resume(dir, infos, opts, st); err == nil {
		t.Error("resumed from a truncated file")
	}
}

// TestCheckResume: CheckResume takes what Resume takes and refuses what it
// refuses, with its error, changing no file: a sound state, one that does
// not fit the plan, a header of another plan, a shard file cut short.
func TestCheckResume(t *testing.T) {
	dir, tensors, infos, opts, w, st := syncedPartial(t)
	w.Write(tensors[4].Name, tensors[4].Data[:len(tensors[4].Data)/2]) // (refused: a short tensor)
	w.Suspend()
	before := dirBytes(t, dir)
	if err := CheckResume(dir, infos, opts, st); err != nil {
		t.Fatalf("sound state: %v", err)
	}
	other := slices.Clone(infos)
	other[0].Shape = []int{16, 16}
	short := st
	short.Written = slices.Clone(st.Written)
	short.Written[0] -= 2
	for name, tc := range map[string]struct {
		infos []TensorInfo
		st    WriterState
		want  string
	}{
		"another plan": {other, st, "the header differs from the planned one"},
		"bad state":    {infos, short, "resume state: shard"},
	} {
		t.Run(name, func(t *testing.T) {
			err := CheckResume(dir, tc.infos, opts, tc.st)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CheckResume: %v, want an error containing %q", err, tc.want)
			}
			if _, rerr := Resume(dir, tc.infos, opts, tc.st); rerr == nil || rerr.Error() != err.Error() {
				t.Errorf("CheckResume: %v, but Resume: %v", err, rerr)
			}
		})
	}
	after := dirBytes(t, dir)
	for n, b := range before {
		if !bytes.Equal(after[n], b) {
			t.Errorf("%s changed", n)
		}
	}
	path := filepath.Join(dir, partialName(w.shards[0].final))
	os.Truncate(path, 20)
	if err := CheckResume(dir, infos, opts, st); err == nil || !strings.Contains(err.Error(), path+": shorter than") {
		t.Errorf("truncated shard: %v, want an error naming %s", err, path)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 20 {
		t.Errorf("the truncated shard changed: %v", err)
	}
}
