package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
)

// ggufTypes runs inspect --json on a GGUF file and returns its tensor
// count by type.
func ggufTypes(t *testing.T, path string) map[string]int {
	t.Helper()
	stdout, _, err := run(t, "inspect", "--json", path)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Types map[string]int `json:"tensor_types"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	return rep.Types
}

// TestConvertTensorFlags: llama-quantize's per-tensor flags on convert
// --gguf. openchat-tiny (6 layers, tied, ffn_down rows of 896) in Q4_K_M
// with --pure and --tensor-type ffn_down=q8_0: token_embd and the 36
// attention, gate and up weights Q4_K, the 6 ffn_down Q8_0, 13 F32 norms.
// With a list, the flags apply to each file: attn_q=q8_0 gives the Q4_0
// file 6 Q8_0 weights and the F16 file none (llama-quantize applies
// --tensor-type to quantized types only). A bad regular expression, an
// unknown type, a malformed value and contradicting flags are usage
// errors naming the flag and value; what does not fit the model is an
// error naming the tensor or pattern; neither writes a file.
// --tensor-type-file's values take their place among the --tensor-type
// flags; a bad value is named with its file.
func TestConvertTensorFlags(t *testing.T) {
	tiny := fixturePath(t, "models/openchat-tiny")
	tmp := t.TempDir()
	out := filepath.Join(tmp, "pure.gguf")
	if _, stderr, err := run(t, "convert", "--in", tiny, "--out", out, "--gguf", "q4_k_m", "--pure", "--tensor-type", "ffn_down=q8_0"); err != nil {
		t.Fatalf("convert --pure --tensor-type: %v\n%s", err, stderr)
	}
	if got, want := ggufTypes(t, out), map[string]int{"F32": 13, "Q4_K": 37, "Q8_0": 6}; !maps.Equal(got, want) {
		t.Errorf("Q4_K_M --pure --tensor-type ffn_down=q8_0: tensor types %v, want %v", got, want)
	}
	list := filepath.Join(tmp, "list")
	if _, stderr, err := run(t, "convert", "--in", tiny, "--out", list, "--gguf", "q4_0,f16", "--tensor-type", "attn_q=q8_0"); err != nil {
		t.Fatalf("convert --gguf q4_0,f16 --tensor-type: %v\n%s", err, stderr)
	}
	for file, want := range map[string]map[string]int{
		"openchat-tiny.Q4_0.gguf": {"F32": 13, "Q4_0": 36, "Q8_0": 6, "Q6_K": 1},
		"openchat-tiny.F16.gguf":  {"F32": 13, "F16": 43},
	} {
		if got := ggufTypes(t, filepath.Join(list, file)); !maps.Equal(got, want) {
			t.Errorf("--gguf q4_0,f16 --tensor-type attn_q=q8_0: %s: tensor types %v, want %v", file, got, want)
		}
	}
	for _, tc := range []struct {
		args  []string
		usage bool
		want  string
	}{
		{[]string{"--tensor-type", "(ffn=q8_0"}, true, `--tensor-type "(ffn=q8_0": pattern: error parsing regexp: missing closing )`},
		{[]string{"--tensor-type", `(?!ffn)down=q8_0`}, true, "no backreferences or lookaround"},
		{[]string{"--tensor-type", "ffn_down=q9_k"}, true, `--tensor-type "ffn_down=q9_k": type "q9_k": want a type gptqtool writes`},
		{[]string{"--tensor-type", "ffn_down"}, true, `--tensor-type "ffn_down": want PATTERN=TYPE`},
		{[]string{"--include-weights", "attn"}, true, "--include-weights and --exclude-weights select the entries of an importance matrix: add --imatrix"},
		{[]string{"--imatrix", "x.gguf", "--include-weights", "attn", "--exclude-weights", "ffn"}, true, "use one of them"},
		{[]string{"--leave-output-tensor", "--output-tensor-type", "q8_0"}, true, "--leave-output-tensor leaves output.weight unquantized, --output-tensor-type q8_0"},
		{[]string{"--tensor-type", "ffn_dwn=q8_0"}, false, "--tensor-type ffn_dwn=Q8_0: the pattern matches none of the model's 2-D weights"},
		{[]string{"--leave-output-tensor"}, false, "ties the output to token_embd.weight"},
	} {
		dst := filepath.Join(tmp, "bad.gguf")
		_, _, err := run(t, append([]string{"convert", "--in", tiny, "--out", dst, "--gguf", "q4_k_m"}, tc.args...)...)
		var ue usageError
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.As(err, &ue) != tc.usage {
			t.Errorf("convert %v: %v (usage error %v), want an error containing %q (usage error %v)", tc.args, err, errors.As(err, &ue), tc.want, tc.usage)
		}
		if _, err := os.Stat(dst); !os.IsNotExist(err) {
			t.Errorf("convert %v: %s: %v, want nothing written", tc.args, dst, err)
		}
	}
	// --tensor-type-file's values join the --tensor-type list where the
	// file is named: with ffn_down=q5_0 given first, ffn_down keeps Q5_0
	// and the file's ffn=q8_0 takes gate and up; with the file first, it
	// takes all 18 ffn weights (its attn_v=q8_0 six more in both).
	types := filepath.Join(tmp, "types.txt")
	if err := os.WriteFile(types, []byte("  ffn=q8_0\n\tattn_v=q8_0 \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want map[string]int
	}{
		{[]string{"--tensor-type", "ffn_down=q5_0", "--tensor-type-file", types}, map[string]int{"F32": 13, "Q4_K": 19, "Q5_0": 6, "Q8_0": 18}},
		{[]string{"--tensor-type-file", types, "--tensor-type", "ffn_down=q5_0"}, map[string]int{"F32": 13, "Q4_K": 19, "Q8_0": 24}},
	} {
		dst := filepath.Join(tmp, "file.gguf")
		if _, stderr, err := run(t, append([]string{"convert", "--in", tiny, "--out", dst, "--gguf", "q4_k_m", "--pure", "--force"}, tc.args...)...); err != nil {
			t.Fatalf("convert %v: %v\n%s", tc.args, err, stderr)
		}
		if got := ggufTypes(t, dst); !maps.Equal(got, tc.want) {
			t.Errorf("convert --pure %v: tensor types %v, want %v", tc.args, got, tc.want)
		}
	}
	bad := filepath.Join(tmp, "bad.txt")
	if err := os.WriteFile(bad, []byte("ffn=q8_0\nffn_dwn\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--gguf", "q4_k_m", "--tensor-type-file", bad}, bad + `: value 2: "ffn_dwn": want PATTERN=TYPE`},
		{[]string{"--gguf", "q4_k_m", "--tensor-type-file", filepath.Join(tmp, "none.txt")}, "none.txt: no such file"},
		{[]string{"--tensor-type-file", types}, "--tensor-type-file sets how a GGUF file is quantized: add --gguf"},
	} {
		dst := filepath.Join(tmp, "bad2.gguf")
		_, _, err := run(t, append([]string{"convert", "--in", tiny, "--out", dst}, tc.args...)...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("convert %v: %v, want a usage error containing %q", tc.args, err, tc.want)
		}
		if _, err := os.Stat(dst); !os.IsNotExist(err) {
			t.Errorf("convert %v: %s: %v, want nothing written", tc.args, dst, err)
		}
	}
	// Without --gguf they have nothing to act on.
	_, _, err := run(t, "convert", "--in", tiny, "--out", filepath.Join(tmp, "st"), "--pure")
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--pure sets how a GGUF file is quantized: add --gguf") {
		t.Errorf("convert --pure without --gguf: %v, want the usage error", err)
	}
}

// TestConvertGGUFShardSize: --max-shard-size with --gguf is a usage error,
// as --dtype and --checkpoint-format are, and nothing is written, where
// convert ignored it and wrote one file past the size asked for (a QA
// pass: --gguf q4_k_m --max-shard-size 1MB wrote one 10.8 MB file).
func TestConvertGGUFShardSize(t *testing.T) {
	tmp := t.TempDir()
	for _, tc := range []struct{ gguf, out string }{
		{"q8_0", filepath.Join(tmp, "s.gguf")},
		{"q8_0,q4_0", filepath.Join(tmp, "list")},
	} {
		_, _, err := run(t, "convert", "--in", "../../publish/testdata/stories-bin", "--out", tc.out, "--gguf", tc.gguf, "--max-shard-size", "100KB")
		var ue usageError
		if want := "--gguf " + tc.gguf + ": a GGUF file is written whole"; !errors.As(err, &ue) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "drop --max-shard-size") {
			t.Errorf("convert --gguf %s --max-shard-size 100KB: %v, want a usage error with %q", tc.gguf, err, want)
		}
		if _, err := os.Stat(tc.out); !os.IsNotExist(err) {
			t.Errorf("convert --gguf %s --max-shard-size 100KB: %s: %v, want nothing written", tc.gguf, tc.out, err)
		}
	}
}

// TestConvertDryRun: convert --gguf LIST --dry-run writes nothing and
// prints, per file, each tensor's name, shape, type and bytes (the
// fallback's type and reason where one applies) and the size of the file
// the conversion then writes, byte for byte; --json gives the same plan
// as one document. --dry-run without --gguf is a usage error.
func TestConvertDryRun(t *testing.T) {
	tiny := fixturePath(t, "models/openchat-tiny")
	out := filepath.Join(t.TempDir(), "gguf")
	args := []string{"convert", "--in", tiny, "--out", out, "--gguf", "q4_k_m,q8_0"}
	stdout, stderr, err := run(t, append(args, "--dry-run")...)
	if err != nil {
		t.Fatalf("convert --dry-run: %v\n%s", err, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("--dry-run made %s (%v)", out, err)
	}
	jsonOut, stderr, err := run(t, append(args, "--dry-run", "--json")...)
	if err != nil {
		t.Fatalf("convert --dry-run --json: %v\n%s", err, stderr)
	}
	var plan struct {
		DryRun bool `json:"dry_run"`
		Files  []struct {
			File          string  `json:"file"`
			SizeBytes     int64   `json:"size_bytes"`
			BitsPerWeight float64 `json:"bits_per_weight"`
			Tensors       []struct {
				Name     string `json:"name"`
				Type     string `json:"type"`
				Fallback string `json:"fallback_from"`
			} `json:"tensors"`
		} `json:"gguf_files"`
	}
	if err := json.Unmarshal([]byte(jsonOut), &plan); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := run(t, args...); err != nil {
		t.Fatalf("convert: %v\n%s", err, stderr)
	}
	if !plan.DryRun || len(plan.Files) != 2 {
		t.Fatalf("--json plan: %+v", plan)
	}
	for _, f := range plan.Files {
		fi, err := os.Stat(filepath.Join(out, f.File))
		if err != nil {
			t.Fatal(err)
		}
		if f.SizeBytes != fi.Size() {
			t.Errorf("%s: --json plans %d bytes, the file has %d", f.File, f.SizeBytes, fi.Size())
		}
		if !strings.Contains(stdout, fmt.Sprintf("  size %d bytes (", fi.Size())) {
			t.Errorf("%s: the plan does not print the file's size, %d bytes:\n%s", f.File, fi.Size(), stdout)
		}
		types := map[string]int{}
		for _, ts := range f.Tensors {
			types[ts.Type]++
		}
		if got := ggufTypes(t, filepath.Join(out, f.File)); !maps.Equal(got, types) {
			t.Errorf("%s: planned tensor types %v, the file's %v", f.File, types, got)
		}
	}
	// blk.2's ffn_down, Q6_K in Q4_K_M, falls back to Q8_0 (rows of 896).
	for _, want := range []string{
		"openchat-tiny.Q4_K_M.gguf: Q4_K_M (general.file_type 15), 56 tensors, not written (--dry-run)\n",
		"openchat-tiny.Q8_0.gguf: Q8_0 (general.file_type 7), 56 tensors, not written (--dry-run)\n",
		"blk.2.ffn_down.weight [256 896] Q8_0 243712 bytes fallback from Q6_K: row length 896 is not a multiple of the Q6_K block size 256\n",
		"blk.0.attn_k.weight [128 256] Q4_K 18432 bytes\n",
		"bits per weight\n2 files, ",
	} {
		if norm := strings.Join(strings.Fields(stdout), " "); !strings.Contains(stdout, want) && !strings.Contains(norm, strings.Join(strings.Fields(want), " ")) {
			t.Errorf("the plan lacks %q:\n%s", want, stdout)
		}
	}
	_, _, err = run(t, "convert", "--in", tiny, "--out", filepath.Join(t.TempDir(), "st"), "--dry-run")
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--dry-run plans GGUF files: add --gguf") {
		t.Errorf("convert --dry-run without --gguf: %v, want the usage error", err)
	}
}

// TestConvertOverrideKV: --override-kv KEY=TYPE:VALUE, repeatable, one
// value a flag (a comma stays in the value, as llama-quantize takes it),
// sets the keys in the written file; a malformed value or a key that
// describes the tensors is a usage error naming the flag and value, an
// override of a key gptqtool writes with another type an error before
// anything is written; without --gguf it is a usage error.
func TestConvertOverrideKV(t *testing.T) {
	src := fixturePath(t, "models/stories260K-hf-mistral")
	out := filepath.Join(t.TempDir(), "o.gguf")
	if _, stderr, err := run(t, "convert", "--in", src, "--out", out, "--gguf", "q8_0", "--override-kv", "general.name=str:a,b", "--override-kv", "my.ratio=float:0.5"); err != nil {
		t.Fatalf("convert --override-kv: %v\n%s", err, stderr)
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for key, want := range map[string]any{"general.name": "a,b", "my.ratio": float32(0.5)} {
		if got, _ := f.Get(key); got != want {
			t.Errorf("%s = %v (%T), want %v (%T)", key, got, got, want, want)
		}
	}
	for _, tc := range []struct {
		args  []string
		usage bool
		want  string
	}{
		{[]string{"--gguf", "q8_0", "--override-kv", "general.name=text:x"}, true, `--override-kv "general.name=text:x": type "text": want int, float, bool or str`},
		{[]string{"--gguf", "q8_0", "--override-kv", "a=bool:yes"}, true, `--override-kv "a=bool:yes": bool value "yes": want true or false`},
		{[]string{"--gguf", "q8_0", "--override-kv", "general.architecture=str:mistral"}, true, "--override-kv general.architecture=str:mistral: gptqtool derives general.architecture from the tensors it writes"},
		{[]string{"--override-kv", "general.name=str:x"}, true, "--override-kv general.name=str:x sets a GGUF file's metadata: add --gguf"},
		{[]string{"--gguf", "q8_0", "--override-kv", "llama.context_length=str:long"}, false, "gptqtool writes llama.context_length as an integer, the type llama.cpp reads it as: want int:VALUE"},
	} {
		dst := filepath.Join(t.TempDir(), "bad.gguf")
		_, _, err := run(t, append([]string{"convert", "--in", src, "--out", dst}, tc.args...)...)
		var ue usageError
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.As(err, &ue) != tc.usage {
			t.Errorf("convert %v: %v (usage error %v), want an error containing %q (usage error %v)", tc.args, err, errors.As(err, &ue), tc.want, tc.usage)
		}
		if _, err := os.Stat(dst); !os.IsNotExist(err) {
			t.Errorf("convert %v: %s: %v, want nothing written", tc.args, dst, err)
		}
	}
}
