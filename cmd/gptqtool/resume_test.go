package main

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// treeBytes reads every file under dir, by path relative to dir.
func treeBytes(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, got, want map[string][]byte, what string) {
	t.Helper()
	for name, b := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s: %s missing", what, name)
		} else if !bytes.Equal(g, b) {
			t.Errorf("%s: %s differs from the uninterrupted run (%d vs %d bytes)", what, name, len(g), len(b))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: extra file %s", what, name)
		}
	}
}

// layersDone reads a partial output's progress record (-1 if none yet).
func layersDone(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	var p struct {
		LayersDone int `json:"layers_done"`
	}
	if json.Unmarshal(b, &p) != nil {
		return -1
	}
	return p.LayersDone
}

// killAt starts cmd and kills it (SIGKILL; TerminateProcess on Windows)
// once the progress record at record says at least layers layers are done
// (0: once the record exists). It reports the layers the record held when
// the process died.
func killAt(t *testing.T, cmd interface {
	Start() error
	Wait() error
}, pid func() int, record string, layers int) int {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for layersDone(record) < layers && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if p, err := os.FindProcess(pid()); err == nil {
		p.Kill()
	}
	err := cmd.Wait()
	if err == nil {
		t.Fatalf("the run finished before it was killed at layer %d", layers)
	}
	return layersDone(record)
}

// TestResumeAfterSIGKILL kills real quantize runs (this test binary as
// gptqtool) with SIGKILL at several points, resumes each with --resume
// (killing one resume again), and checks that the result is byte-identical
// to an uninterrupted run; then the same for a branch table killed in its
// second branch. A changed dataset or option is refused.
func TestResumeAfterSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("runs quantize a dozen times")
	}
	model := fixturePath(t, "models/openchat-tiny")
	data, err := filepath.Abs("../../testdata/datasets/alpaca_en_demo.parquet")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"quantize", "--model", model, "--dataset", data, "--nsamples", "12", "--seq-len", "256",
		"--bits", "4", "--group", "128", "--act-order", "--damp", "0.1", "--out", "q", "--estimate=false"}
	ref := t.TempDir()
	if out, err := gptqtool(t, ref, nil, args...).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, out)
	}
	want := treeBytes(t, filepath.Join(ref, "q"))

	for _, tc := range []struct {
		name  string
		kills []int // layers recorded done at each kill
	}{
		{"before layer 0", []int{0}},
		{"after layer 1", []int{1}},
		{"after layer 3, again after 5", []int{3, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			record := filepath.Join(dir, "q.partial", "gptqtool-progress.json")
			for i, k := range tc.kills {
				a := args
				if i > 0 {
					a = append(append([]string(nil), args...), "--resume")
				}
				c := gptqtool(t, dir, nil, a...)
				got := killAt(t, c, func() int { return c.Process.Pid }, record, k)
				if got < k {
					t.Fatalf("killed with %d layers recorded, want >= %d", got, k)
				}
			}
			// Without --resume the interrupted run is pointed out, not lost.
			out, err := gptqtool(t, dir, nil, args...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), "--resume continues it") {
				t.Fatalf("rerun without --resume: %v\n%s", err, out)
			}
			out, err = gptqtool(t, dir, nil, append(args, "--resume")...).CombinedOutput()
			if err != nil {
				t.Fatalf("resume: %v\n%s", err, out)
			}
			if last := tc.kills[len(tc.kills)-1]; last > 0 && !strings.Contains(string(out), "resuming at layer") {
				t.Errorf("the resumed run did not resume:\n%s", out)
			}
			sameTree(t, treeBytes(t, filepath.Join(dir, "q")), want, tc.name)
			if _, err := os.Stat(filepath.Join(dir, "q.partial")); !os.IsNotExist(err) {
				t.Errorf("the partial output is still there: %v", err)
			}
		})
	}

	t.Run("refuses changes", func(t *testing.T) {
		dir := t.TempDir()
		c := gptqtool(t, dir, nil, args...)
		killAt(t, c, func() int { return c.Process.Pid }, filepath.Join(dir, "q.partial", "gptqtool-progress.json"), 2)
		for what, change := range map[string][]string{
			"the calibration samples": {"--seed", "7"},
			"the quantization options (--damp: 0.1 in the interrupted run, 0.05 now)": {"--damp", "0.05"},
		} {
			a := append(append([]string(nil), args...), "--resume")
			a = append(a, change...)
			out, err := gptqtool(t, dir, nil, a...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), what) || !strings.Contains(string(out), "changed") {
				t.Errorf("resume with %v: %v\n%s", change, err, out)
			}
		}
	})

	t.Run("table", func(t *testing.T) {
		branches := filepath.Join(t.TempDir(), "branches.json")
		os.WriteFile(branches, []byte(`[
			{"name": "a", "bits": 4, "group_size": 128, "desc_act": true, "damp_percent": 0.1},
			{"name": "b", "bits": 8, "group_size": 64, "desc_act": false, "damp_percent": 0.1},
			{"name": "c", "bits": 3, "group_size": 128, "desc_act": true, "damp_percent": 0.1}]`), 0o644)
		targs := []string{"quantize", "--model", model, "--dataset", data, "--nsamples", "12", "--seq-len", "256",
			"--branches", branches, "--out", "t", "--estimate=false"}
		ref := t.TempDir()
		if out, err := gptqtool(t, ref, nil, targs...).CombinedOutput(); err != nil {
			t.Fatalf("uninterrupted table: %v\n%s", err, out)
		}
		want := treeBytes(t, filepath.Join(ref, "t"))
		dir := t.TempDir()
		c := gptqtool(t, dir, nil, targs...)
		if got := killAt(t, c, func() int { return c.Process.Pid }, filepath.Join(dir, "t", "b.partial", "gptqtool-progress.json"), 2); got < 2 {
			t.Fatalf("killed with %d layers of branch b", got)
		}
		// Resuming with one branch's damp changed is refused, naming it.
		changed := filepath.Join(t.TempDir(), "branches.json")
		raw, _ := os.ReadFile(branches)
		os.WriteFile(changed, bytes.Replace(raw, []byte(`"group_size": 64, "desc_act": false, "damp_percent": 0.1`), []byte(`"group_size": 64, "desc_act": false, "damp_percent": 0.05`), 1), 0o644)
		cargs := append(slices.Clone(targs), "--resume")
		cargs[slices.Index(cargs, branches)] = changed
		if out, err := gptqtool(t, dir, nil, cargs...).CombinedOutput(); err == nil || !strings.Contains(string(out), "the quantization options (branch b: --damp: 0.1 in the interrupted run, 0.05 now) changed") {
			t.Errorf("table resumed with another damp: %v\n%s", err, out)
		}
		out, err := gptqtool(t, dir, nil, append(targs, "--resume")...).CombinedOutput()
		if err != nil {
			t.Fatalf("resume: %v\n%s", err, out)
		}
		for _, w := range []string{"a: complete from the interrupted run", "t/b: resuming at layer"} {
			if !strings.Contains(string(out), w) {
				t.Errorf("resumed table output lacks %q:\n%s", w, out)
			}
		}
		sameTree(t, treeBytes(t, filepath.Join(dir, "t")), want, "table")

		// An interrupted table discarded with --force: a fresh run.
		dir = t.TempDir()
		c = gptqtool(t, dir, nil, targs...)
		killAt(t, c, func() int { return c.Process.Pid }, filepath.Join(dir, "t", "a.partial", "gptqtool-progress.json"), 3)
		if out, err := gptqtool(t, dir, nil, append(targs, "--force")...).CombinedOutput(); err != nil {
			t.Fatalf("--force over an interrupted table: %v\n%s", err, out)
		}
		// The model cards show the command, which now ends in --force.
		got := treeBytes(t, filepath.Join(dir, "t"))
		for name, b := range got {
			if filepath.Base(name) == "README.md" {
				got[name] = bytes.ReplaceAll(b, []byte(" --force"), nil)
			}
		}
		sameTree(t, got, want, "table after --force")
	})
}

// TestPartialOutputs: a partial output another run holds is refused; one
// left by a killed run names its owner and start; debris of earlier
// versions is pointed out and removed by --force (issue 11, finding 3).
func TestPartialOutputs(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	dir := t.TempDir()
	debris := filepath.Join(dir, ".q.partial-123456")
	os.MkdirAll(debris, 0o755)
	os.WriteFile(filepath.Join(debris, ".model.safetensors.1.tmp"), []byte("x"), 0o644)
	args := []string{"quantize", "--model", model, "--rtn", "--bits", "8", "--group", "-1", "--out", filepath.Join(dir, "q"), "--estimate=false"}
	_, stderr, err := run(t, args...)
	if err != nil || !strings.Contains(stderr, debris) {
		t.Fatalf("debris not pointed out: %v\n%s", err, stderr)
	}
	_, stderr, err = run(t, append(args, "--force")...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(debris); !os.IsNotExist(err) {
		t.Errorf("--force left %s: %v\n%s", debris, err, stderr)
	}

	// A killed run's partial output: who and when, and what to do.
	os.RemoveAll(filepath.Join(dir, "q"))
	partial := filepath.Join(dir, "q.partial")
	os.MkdirAll(partial, 0o755)
	rec := `{"format":"gptqtool-partial/1","pid":4242,"host":"h","started":"2026-11-30T10:00:00Z","branch":"q","num_hidden_layers":6,"layers_done":2}`
	os.WriteFile(filepath.Join(partial, "gptqtool-progress.json"), []byte(rec), 0o644)
	_, _, err = run(t, args...)
	if err == nil || !strings.Contains(err.Error(), "pid 4242") || !strings.Contains(err.Error(), "2 of 6 layers") || !strings.Contains(err.Error(), "--resume") {
		t.Errorf("interrupted run: err = %v", err)
	}
	// Held by a live run (this process holds the lock).
	lock, err := os.OpenFile(filepath.Join(partial, "gptqtool.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	holdLock(t, lock)
	c := gptqtool(t, dir, nil, append(args, "--force")...)
	out, err := c.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "being written by") {
		t.Errorf("partial output in use: %v\n%s", err, out)
	}
}

// TestRunInProgressNotInterrupted: an output whose partial directory another
// run holds locked is refused as being written, with or without --resume,
// where without --resume it was called an interrupted run that --resume
// would continue and --force discard (a QA pass: two runs to one --out).
func TestRunInProgressNotInterrupted(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	data, err := filepath.Abs("../../testdata/datasets/alpaca_en_demo.parquet")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args := []string{"quantize", "--device", "cpu", "--model", model, "--dataset", data, "--nsamples", "4", "--seq-len", "64",
		"--out", "q", "--estimate=false"}
	record := filepath.Join(dir, "q.partial", "gptqtool-progress.json")
	c := gptqtool(t, dir, nil, args...)
	killAt(t, c, func() int { return c.Process.Pid }, record, 1)
	// This test stands for the run that holds the partial output.
	lock, err := os.OpenFile(filepath.Join(dir, "q.partial", "gptqtool.lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	holdLock(t, lock)
	for _, extra := range [][]string{nil, {"--resume"}} {
		out, err := gptqtool(t, dir, nil, append(append([]string(nil), args...), extra...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "being written by another gptqtool run") || strings.Contains(string(out), "interrupted run") {
			t.Errorf("%v: err = %v, want a refusal saying the output is being written, not interrupted:\n%s", extra, err, out)
		}
	}
}

// TestResumeCheckedAtPreflight: --resume over a partial output that cannot
// be resumed is refused in the preflight, before a layer is timed or the
// dataset read, where each was found after both: options that differ from
// the interrupted run's (named, with both values), a record that is not
// JSON and a shard file cut short (each named, with --force, which then
// starts again). --resume over a complete checkpoint says there is nothing
// left to resume and exits 0, reading nothing, where it was refused as
// existing; over one of other options it names them.
func TestResumeCheckedAtPreflight(t *testing.T) {
	if testing.Short() {
		t.Skip("runs quantize several times")
	}
	model := fixturePath(t, "models/openchat-tiny")
	data, err := filepath.Abs("../../testdata/datasets/alpaca_en_demo.parquet")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"quantize", "--device", "cpu", "--model", model, "--dataset", data, "--nsamples", "4", "--seq-len", "64",
		"--damp", "0.1", "--out", "q"}
	killed := t.TempDir()
	c := gptqtool(t, killed, nil, append(slices.Clone(args), "--estimate=false")...)
	killAt(t, c, func() int { return c.Process.Pid }, filepath.Join(killed, "q.partial", "gptqtool-progress.json"), 2)
	// noWork checks that a run did neither of the expensive things.
	noWork := func(t *testing.T, out []byte) {
		t.Helper()
		for _, w := range []string{"timing one layer", "calibrate: read"} {
			if strings.Contains(string(out), w) {
				t.Errorf("%q before the refusal:\n%s", w, out)
			}
		}
	}
	resume := func(t *testing.T, dir string, extra ...string) ([]byte, int) {
		t.Helper()
		out, err := gptqtool(t, dir, nil, append(append(slices.Clone(args), "--resume"), extra...)...).CombinedOutput()
		return out, exitStatus(t, err)
	}
	partialCopy := func(t *testing.T) string {
		t.Helper()
		dir := t.TempDir()
		copyDir(t, filepath.Join(killed, "q.partial"), filepath.Join(dir, "q.partial"))
		return dir
	}

	t.Run("other options", func(t *testing.T) {
		dir := partialCopy(t)
		out, code := resume(t, dir, "--damp", "0.05", "--bits", "8")
		if code != 1 {
			t.Errorf("exit status %d, want 1:\n%s", code, out)
		}
		for _, w := range []string{"cannot resume q.partial", "--bits: 4 in the interrupted run, 8 now", "--damp: 0.1 in the interrupted run, 0.05 now", "--force"} {
			if !strings.Contains(string(out), w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
		noWork(t, out)
	})

	// The samples' count is named with both values, before the dataset
	// is read, where the refusal came once the samples were read and
	// listed "dataset, --nsamples, --seq-len, --seed, --mode or rendering"
	// (a QA pass).
	t.Run("other nsamples", func(t *testing.T) {
		dir := partialCopy(t)
		out, code := resume(t, dir, "--nsamples", "8")
		if code != 1 {
			t.Errorf("exit status %d, want 1:\n%s", code, out)
		}
		for _, w := range []string{"cannot resume q.partial", "--nsamples: 4 in the interrupted run, 8 now", "--force"} {
			if !strings.Contains(string(out), w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
		noWork(t, out)
	})

	for _, tc := range []struct {
		name, file string
		damage     func(path string) error
		want       string
	}{
		{"record not JSON", "gptqtool-progress.json", func(p string) error { return os.WriteFile(p, []byte(`{"format": "gptqtool-par`), 0o644) }, "not a gptqtool record"},
		{"shard cut short", ".model.safetensors.partial", func(p string) error { return os.Truncate(p, 100) }, "shorter than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := partialCopy(t)
			path := filepath.Join("q.partial", tc.file)
			if err := tc.damage(filepath.Join(dir, path)); err != nil {
				t.Fatal(err)
			}
			out, code := resume(t, dir)
			if code != 1 {
				t.Errorf("exit status %d, want 1:\n%s", code, out)
			}
			for _, w := range []string{path, tc.want, "damaged", "--force discards it"} {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			noWork(t, out)
			if out, err := gptqtool(t, dir, nil, append(slices.Clone(args), "--force", "--estimate=false")...).CombinedOutput(); err != nil {
				t.Fatalf("--force over the damaged partial output: %v\n%s", err, out)
			}
		})
	}

	t.Run("complete", func(t *testing.T) {
		dir := partialCopy(t)
		if out, code := resume(t, dir, "--estimate=false"); code != 0 {
			t.Fatalf("resume: exit status %d:\n%s", code, out)
		}
		want := treeBytes(t, filepath.Join(dir, "q"))
		out, code := resume(t, dir)
		if code != 0 || !strings.Contains(string(out), "q is already complete: nothing left to resume") {
			t.Errorf("exit status %d, want 0 saying q is complete:\n%s", code, out)
		}
		noWork(t, out)
		sameTree(t, treeBytes(t, filepath.Join(dir, "q")), want, "the complete checkpoint")
		out, code = resume(t, dir, "--bits", "8")
		if code != 1 || !strings.Contains(string(out), "bits: 4 there, 8 now") || !strings.Contains(string(out), "--force replaces it") {
			t.Errorf("--resume --bits 8 over a 4-bit checkpoint: exit status %d:\n%s", code, out)
		}
		noWork(t, out)
	})
}

// TestResumeCompleteOtherRecipe: --resume over a complete checkpoint is
// refused, naming the option with both values, where the checkpoint records
// an option that differs from the run's (true_sequential in
// quantize_config.json; the dataset and the sequence length in the model
// card's row), as it is for bits or damp. It said "already complete:
// nothing left to resume" and exited 0 for --true-sequential=false, --rtn,
// another --seq-len or another dataset over a GPTQ checkpoint of other ones.
func TestResumeCompleteOtherRecipe(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	parquet, err := filepath.Abs("../../testdata/datasets/alpaca_en_demo.parquet")
	if err != nil {
		t.Fatal(err)
	}
	jsonData := fixturePath(t, "datasets/instruct/alpaca_en_demo.json")
	dir := t.TempDir()
	base := []string{"quantize", "--device", "cpu", "--model", model, "--nsamples", "2", "--estimate=false", "--out", "q"}
	quantize := func(extra ...string) ([]byte, int) {
		t.Helper()
		out, err := gptqtool(t, dir, nil, append(slices.Clone(base), extra...)...).CombinedOutput()
		return out, exitStatus(t, err)
	}
	if out, code := quantize("--dataset", parquet, "--seq-len", "32"); code != 0 {
		t.Fatalf("quantize: exit status %d:\n%s", code, out)
	}
	want := treeBytes(t, filepath.Join(dir, "q"))
	// Nothing left to resume is a success: --json prints its summary, the
	// checkpoint kept (it printed nothing on stdout, exit 0).
	t.Run("json", func(t *testing.T) {
		c := gptqtool(t, dir, nil, append(slices.Clone(base), "--dataset", parquet, "--seq-len", "32", "--resume", "--json")...)
		var stderr bytes.Buffer
		c.Stderr = &stderr
		out, err := c.Output()
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr.String())
		}
		var doc struct {
			Summary struct {
				Branches []struct {
					Name      string `json:"name"`
					Bits      int    `json:"bits"`
					SizeBytes int64  `json:"size_bytes"`
					Reused    bool   `json:"reused"`
				} `json:"branches"`
			} `json:"summary"`
		}
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("stdout is not one JSON document: %v\n%q", err, out)
		}
		if b := doc.Summary.Branches; len(b) != 1 || b[0].Name != "q" || b[0].Bits != 4 || !b[0].Reused || b[0].SizeBytes <= 0 {
			t.Errorf("summary branches = %+v, want q, 4 bits, reused, its size", b)
		}
	})
	for _, tc := range []struct {
		name  string
		extra []string
		want  string // "" for nothing left to resume
	}{
		{"same", []string{"--dataset", parquet, "--seq-len", "32"}, ""},
		{"true sequential", []string{"--dataset", parquet, "--seq-len", "32", "--true-sequential=false"}, "true_sequential: true there, false now"},
		{"rtn", []string{"--rtn", "--dataset", parquet, "--seq-len", "32"}, "dataset: alpaca_en_demo.parquet there, none (round to nearest) now"},
		{"dataset", []string{"--dataset", jsonData, "--seq-len", "32"}, "dataset: alpaca_en_demo.parquet there, alpaca_en_demo.json now"},
		{"seq len", []string{"--dataset", parquet, "--seq-len", "48"}, "seq_len: 32 there, 48 now"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := quantize(append(slices.Clone(tc.extra), "--resume")...)
			if tc.want == "" {
				if code != 0 || !strings.Contains(string(out), "q is already complete: nothing left to resume") {
					t.Errorf("exit status %d, want 0 saying q is complete:\n%s", code, out)
				}
			} else if code != 1 || !strings.Contains(string(out), "q is a complete checkpoint of other options ("+tc.want) {
				t.Errorf("exit status %d, want 1 naming %q:\n%s", code, tc.want, out)
			}
			sameTree(t, treeBytes(t, filepath.Join(dir, "q")), want, "the complete checkpoint")
		})
	}
}

// TestModelCardStatesZeros: the model card's description of the format
// agrees with the checkpoint's quantize_config.json: sym or sym=false, and v1 or
// v2 zeros. It said "sym, GPTQ v1 zeros" for every checkpoint, --sym=false
// (asymmetric, gptq_v2) and --checkpoint-format gptq_v2 ones included.
func TestModelCardStatesZeros(t *testing.T) {
	model := fixturePath(t, "models/openchat-tiny")
	data, err := filepath.Abs("../../testdata/datasets/alpaca_en_demo.parquet")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"sym v1", nil},
		{"asym", []string{"--sym=false"}},
		{"sym v2", []string{"--checkpoint-format", "gptq_v2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"quantize", "--device", "cpu", "--model", model, "--dataset", data, "--nsamples", "2", "--seq-len", "32",
				"--estimate=false", "--out", "q"}, tc.extra...)
			if out, err := gptqtool(t, dir, nil, args...).CombinedOutput(); err != nil {
				t.Fatalf("quantize: %v\n%s", err, out)
			}
			raw, err := os.ReadFile(filepath.Join(dir, "q", "quantize_config.json"))
			if err != nil {
				t.Fatal(err)
			}
			var qc struct {
				Sym    bool   `json:"sym"`
				Format string `json:"checkpoint_format"`
			}
			if err := json.Unmarshal(raw, &qc); err != nil {
				t.Fatal(err)
			}
			want := "sym=false, GPTQ v2 zeros"
			switch {
			case qc.Sym && qc.Format == "gptq":
				want = "sym, GPTQ v1 zeros"
			case qc.Sym:
				want = "sym, GPTQ v2 zeros"
			}
			card, err := os.ReadFile(filepath.Join(dir, "q", "README.md"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(card), "`quantization_config`, "+want+")") {
				t.Errorf("quantize_config.json has sym %v, checkpoint_format %s; the card does not say %q:\n%s", qc.Sym, qc.Format, want, card)
			}
		})
	}
}

// TestGitRepoBranchNameChecked: with --git-repo, a branch that git cannot
// name (a space, a tilde) is refused at preflight, naming it, before the
// dataset is read, where the whole table was quantized and written and the
// repository then failed on "git update-ref" (exit 1, no repository).
func TestGitRepoBranchNameChecked(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not found: --git-repo needs it")
	}
	model := fixturePath(t, "models/openchat-tiny")
	data := fixturePath(t, "datasets/instruct/alpaca_en_demo.json")
	dir := t.TempDir()
	branches := filepath.Join(dir, "branches.json")
	if err := os.WriteFile(branches, []byte(`[{"name":"ok","bits":4,"group_size":128},{"name":"a b~1","bits":8,"group_size":128}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := gptqtool(t, dir, nil, "quantize", "--device", "cpu", "--model", model, "--dataset", data, "--nsamples", "2", "--seq-len", "16",
		"--estimate=false", "--branches", branches, "--out", "t", "--git-repo", "t.git").CombinedOutput()
	if code := exitStatus(t, err); code != 1 {
		t.Errorf("exit status %d, want 1:\n%s", code, out)
	}
	if want := `--git-repo: branch "a b~1" is not a valid git branch name`; !strings.Contains(string(out), want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
	if strings.Contains(string(out), "calibrate: read") {
		t.Errorf("the dataset was read before the refusal:\n%s", out)
	}
	for _, p := range []string{"t", "t.git"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			t.Errorf("%s was written", p)
		}
	}
}
