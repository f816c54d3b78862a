package gguf_test

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
)

// target parses a --gguf type ("q4_k_m", "f16") into Convert's options.
func target(t *testing.T, name string) gguf.ConvertOptions {
	t.Helper()
	tg, err := gguf.ParseTarget(name)
	if err != nil {
		t.Fatal(err)
	}
	return gguf.ConvertOptions{Type: tg.Type, Mix: tg.Mix}
}

// TestPlan: Plan, which reads no tensor, gives what Convert writes: the
// size of the file on disk byte for byte (header, metadata, padding,
// data), every tensor's type, shape and data size as the file's tensor
// infos give them read back, the fallbacks, warnings and file type of
// Convert's result; with llama-quantize's mixes and flags and an
// importance matrix.
func TestPlan(t *testing.T) {
	stories := openCheckpoint(t, "models/stories260K-hf-mistral")
	tiny := openCheckpoint(t, "models/openchat-tiny")
	q8 := gguf.TypeQ8_0
	for _, tc := range []struct {
		name string
		ck   *checkpoint
		opts func(gguf.ConvertOptions) gguf.ConvertOptions
		typ  string
	}{
		{"stories f16", stories, nil, "f16"},
		{"stories q4_k_m", stories, nil, "q4_k_m"},
		{"stories iq2_xxs imatrix", stories, func(o gguf.ConvertOptions) gguf.ConvertOptions {
			o.Imatrix = randomImatrix(stories) // no token_embd, output entries: a warning
			return o
		}, "iq2_xxs"},
		{"tiny q4_k_m", tiny, nil, "q4_k_m"},
		{"tiny q3_k_s pure", tiny, func(o gguf.ConvertOptions) gguf.ConvertOptions {
			o.Pure, o.TokenEmbeddingType = true, &q8
			o.TensorTypes = []gguf.TensorTypeOverride{{Pattern: "attn_v", Type: gguf.TypeQ5_0}}
			return o
		}, "q3_k_s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := target(t, tc.typ)
			if tc.opts != nil {
				opts = tc.opts(opts)
			}
			plan, err := gguf.Plan(tc.ck.cfg, tc.ck.tok, opts)
			if err != nil {
				t.Fatal(err)
			}
			c := convertWith(t, tc.ck, opts.Type, opts)
			fi, err := os.Stat(c.path)
			if err != nil {
				t.Fatal(err)
			}
			if plan.SizeBytes != fi.Size() || c.res.SizeBytes != fi.Size() {
				t.Errorf("planned size %d bytes, Convert's result %d, the file %d", plan.SizeBytes, c.res.SizeBytes, fi.Size())
			}
			file := c.file.Tensors()
			if len(file) != len(plan.Tensors) {
				t.Fatalf("planned %d tensors, the file has %d", len(plan.Tensors), len(file))
			}
			for i, ti := range file {
				size, _ := ti.Size()
				if p := plan.Tensors[i]; p.Name != ti.Name || p.Type != ti.Type || !slices.Equal(p.Shape, ti.Shape) || p.Size != size {
					t.Errorf("tensor %d: planned %s %v %s %d bytes, the file's %s %v %s %d bytes", i, p.Name, p.Shape, p.Type, p.Size, ti.Name, ti.Shape, ti.Type, size)
				}
			}
			c.res.Path, c.res.Overflows = "", nil
			if !reflect.DeepEqual(plan, c.res) {
				t.Errorf("plan %+v\nConvert's result %+v", plan, c.res)
			}
			if ft, _ := c.file.Get("general.file_type"); ft != plan.FileType {
				t.Errorf("general.file_type %v, planned %d", ft, plan.FileType)
			}
		})
	}
}

// TestPlanRefuses: Plan refuses what Convert refuses before reading a
// tensor, with the same error: an IQ type that needs an importance matrix
// without one (llama-quantize --dry-run only warns, but its conversion
// refuses).
func TestPlanRefuses(t *testing.T) {
	ck := openCheckpoint(t, "models/openchat-tiny")
	opts := target(t, "iq2_xxs")
	_, err := gguf.Plan(ck.cfg, ck.tok, opts)
	if want := "IQ2_XXS needs an importance matrix"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Plan iq2_xxs: %v, want an error containing %q", err, want)
	}
	path := t.TempDir() + "/x.gguf"
	if _, cerr := gguf.FromCheckpoint(path, ck.set, ck.cfg, ck.tok, opts); cerr == nil || err == nil || cerr.Error() != err.Error() {
		t.Errorf("Convert iq2_xxs: %v, want Plan's error %v", cerr, err)
	}
}
