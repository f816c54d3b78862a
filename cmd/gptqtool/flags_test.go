package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/safetensors"
)

// TestDTypeNames checks that --dtype takes the names users bring from
// PyTorch, transformers and llama.cpp in any case (convert writes the dtype
// asked for: the tensors of stories260K, f32, come out BF16 for
// "BFloat16" and F16 for "FP16"), and that the commands loading a model
// take them too (generate on the CPU with --dtype Float32), where only
// f32, f16 and bf16 were accepted.
func TestDTypeNames(t *testing.T) {
	for v, want := range map[string]string{"fp16": "f16", "Float16": "f16", "half": "f16", "BFloat16": "bf16", "BF16": "bf16",
		"FP32": "f32", "float": "f32", "Auto": "auto", "fp8": "fp8"} {
		if got := dtypeFlag(v); got != want {
			t.Errorf("dtypeFlag(%q) = %q, want %q", v, got, want)
		}
	}
	model := fixturePath(t, "models/stories260K-hf-mistral")
	for flag, want := range map[string]safetensors.DType{"BFloat16": safetensors.BF16, "FP16": safetensors.F16} {
		out := filepath.Join(t.TempDir(), "out")
		if _, stderr, err := run(t, "convert", "--in", model, "--out", out, "--dtype", flag); err != nil {
			t.Fatalf("convert --dtype %s: %v\n%s", flag, err, stderr)
		}
		set, err := safetensors.OpenDir(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range set.Names() {
			tn, err := set.Tensor(name)
			if err != nil {
				t.Fatal(err)
			}
			if tn.DType != want {
				t.Errorf("convert --dtype %s: tensor %q is %s, want %s", flag, name, tn.DType, want)
				break
			}
		}
		set.Close()
	}
	stdout, stderr, err := run(t, "generate", "--device", "cpu", "--model", model, "--prompt", "Once upon a time", "--max-tokens", "4",
		"--temperature", "0", "--dtype", "Float32")
	if err != nil || strings.TrimSpace(stdout) == "" {
		t.Errorf("generate --dtype Float32: %v, output %q\n%s", err, stdout, stderr)
	}
}

// TestShortTextNamed checks that a text shorter than one window is refused
// naming the --text file and counting its tokens in English ("1 token"
// for an empty file: BOS alone), where the message named neither the file
// nor the flag and said "1 tokens".
func TestShortTextNamed(t *testing.T) {
	model := fixturePath(t, "models/stories260K-hf-mistral")
	empty := filepath.Join(t.TempDir(), "empty.txt")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"verify", "perplexity"}, {"verify", "kl", "--baseline", model}} {
		_, _, err := run(t, append(cmd, "--device", "cpu", "--model", model, "--text", empty, "--ctx", "64")...)
		if err == nil || !strings.Contains(err.Error(), "--text "+empty+": 1 token (BOS included), fewer than one window of --ctx 64") {
			t.Errorf("%s, empty text: %v", cmd[1], err)
		}
	}
}

// TestKLVocabNamed checks that verify kl of two checkpoints whose
// vocabularies differ names both config.json files, where the message gave
// only the two sizes.
func TestKLVocabNamed(t *testing.T) {
	tiny, stories := fixturePath(t, "models/openchat-tiny"), fixturePath(t, "models/stories260K-hf-mistral")
	text := filepath.Join(t.TempDir(), "text.txt")
	if err := os.WriteFile(text, []byte(strings.Repeat("Once upon a time, there was a little girl who liked to read. ", 20)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, "verify", "kl", "--device", "cpu", "--model", tiny, "--baseline", stories, "--text", text, "--ctx", "64")
	want := fmt.Sprintf("vocab sizes differ: model 32002 (%s), baseline 512 (%s)", filepath.Join(tiny, "config.json"), filepath.Join(stories, "config.json"))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want one containing %q", err, want)
	}
}
