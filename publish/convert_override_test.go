package publish_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/publish"
)

// TestConvertGGUFOverrideKV: --override-kv sets its keys in every file of
// a --gguf list, read back as written (general.file_type the override's,
// as llama-quantize writes it, in the summary too); what the metadata
// cannot take is refused before the first file is written, a malformed
// value or a key that describes the tensors by CheckFlags.
func TestConvertGGUFOverrideKV(t *testing.T) {
	src := fixture(t, "models/stories260K-hf-mistral")
	out := filepath.Join(t.TempDir(), "gguf")
	overrides := []string{"general.name=str:renamed, with a comma", "general.file_type=int:7", "llama.context_length=int:1024", "tokenizer.ggml.add_bos_token=bool:false"}
	sum := convert(t, publish.ConvertOptions{In: src, Out: out, GGUF: "q4_k_m,f16", KVOverrides: overrides})
	for _, file := range sum.GGUF {
		f, err := gguf.Open(filepath.Join(out, file.File))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for key, want := range map[string]any{"general.name": "renamed, with a comma", "general.file_type": uint32(7), "llama.context_length": uint32(1024), "tokenizer.ggml.add_bos_token": false} {
			if got, _ := f.Get(key); got != want {
				t.Errorf("%s: %s = %v (%T), want %v (%T)", file.File, key, got, got, want, want)
			}
		}
		if file.FileType != 7 {
			t.Errorf("%s: summary's file type %d, want the override's 7", file.File, file.FileType)
		}
	}
	for _, tc := range []struct {
		overrides []string
		want      string
	}{
		{[]string{"general.name=int:5"}, "--gguf Q4_K_M: gguf convert: --override-kv general.name=int:5: gptqtool writes general.name as a string"},
		{[]string{"tokenizer.ggml.eos_token_id=int:512"}, "token id outside the vocabulary of 512 ids"},
		{[]string{"general.name"}, `--override-kv "general.name": want KEY=TYPE:VALUE`},
		{[]string{"llama.block_count=int:3"}, "--override-kv llama.block_count=int:3: gptqtool derives llama.block_count from the tensors it writes"},
	} {
		out := filepath.Join(t.TempDir(), "gguf")
		_, err := publish.Convert(context.Background(), publish.ConvertOptions{In: src, Out: out, GGUF: "q4_k_m,f16", KVOverrides: tc.overrides})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--override-kv %v: %v, want an error containing %q", tc.overrides, err, tc.want)
		}
		if entries, err := os.ReadDir(out); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("--override-kv %v: the refusal left %v", tc.overrides, entries)
		}
	}
	o := publish.ConvertOptions{In: src, Out: filepath.Join(t.TempDir(), "st"), KVOverrides: []string{"general.name=str:x"}}
	if err := o.CheckFlags(); err == nil || !strings.Contains(err.Error(), "--override-kv general.name=str:x sets a GGUF file's metadata: add --gguf") {
		t.Errorf("--override-kv without --gguf: %v", err)
	}
}
