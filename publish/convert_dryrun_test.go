package publish_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gptqtool/gptqtool/formats/gguf"
	"github.com/gptqtool/gptqtool/publish"
)

// TestConvertGGUFDryRun: a dry run writes nothing and plans each file of
// a --gguf list as the conversion with the same options then writes it:
// the same files, each of the size on disk byte for byte, its tensors'
// names, shapes, types and data sizes those the file's tensor infos give
// read back, its general.file_type, and bits per weight its tensor data
// over its elements; the same fallbacks. For stories260K (whose rows of
// 64 and 172 fall back) and openchat-tiny with llama-quantize's
// per-tensor flags.
func TestConvertGGUFDryRun(t *testing.T) {
	for _, o := range []publish.ConvertOptions{
		{In: fixture(t, "models/stories260K-hf-mistral"), GGUF: "q8_0,q4_k_m,iq4_xs,f16"},
		{In: fixture(t, "models/openchat-tiny"), GGUF: "q4_k_m,q3_k_s", TensorTypes: []string{"ffn_up=q8_0"}, TokenEmbeddingType: "q5_0"},
	} {
		o.Out = filepath.Join(t.TempDir(), "gguf")
		dry := o
		dry.DryRun = true
		plan := convert(t, dry)
		if _, err := os.Stat(o.Out); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("--dry-run made %s (%v)", o.Out, err)
		}
		real := convert(t, o)
		if !plan.DryRun || real.DryRun || !slices.Equal(plan.Files, real.Files) || plan.SizeBytes != real.SizeBytes || !slices.Equal(plan.Fallbacks, real.Fallbacks) || plan.Tensors != real.Tensors {
			t.Errorf("--gguf %s: dry run %+v\nthe conversion %+v", o.GGUF, plan, real)
		}
		for i, p := range plan.GGUF {
			path := filepath.Join(o.Out, p.File)
			f, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, _ := os.Stat(path)
			if p.SizeBytes != fi.Size() {
				t.Errorf("%s: planned %d bytes, written %d", p.File, p.SizeBytes, fi.Size())
			}
			var data, elems int64
			var tensors []publish.GGUFTensor
			for _, ti := range f.Tensors() {
				size, _ := ti.Size()
				data += size
				elems += ti.NumElements()
				tensors = append(tensors, publish.GGUFTensor{Name: ti.Name, Shape: ti.Shape, Type: ti.Type.String(), SizeBytes: size})
			}
			for j := range min(len(tensors), len(p.Tensors)) {
				tensors[j].Fallback, tensors[j].FallbackReason = p.Tensors[j].Fallback, p.Tensors[j].FallbackReason
			}
			if !reflect.DeepEqual(p.Tensors, tensors) {
				t.Errorf("%s: planned tensors %v\nthe file's %v", p.File, p.Tensors, tensors)
			}
			if bpw := float64(data) * 8 / float64(elems); p.TensorBytes != data || p.Parameters != elems || p.BitsPerWeight != bpw {
				t.Errorf("%s: planned %d bytes of tensor data, %d weights, %g bits per weight; the file's %d, %d, %g", p.File, p.TensorBytes, p.Parameters, p.BitsPerWeight, data, elems, bpw)
			}
			if ft, _ := f.Get("general.file_type"); ft != p.FileType {
				t.Errorf("%s: planned general.file_type %d, the file's %v", p.File, p.FileType, ft)
			}
			w := real.GGUF[i]
			if w.File != p.File || w.Type != p.Type || w.FileType != p.FileType || w.SizeBytes != p.SizeBytes || w.TensorBytes != p.TensorBytes || w.BitsPerWeight != p.BitsPerWeight || w.Tensors != nil {
				t.Errorf("%s: the conversion's summary %+v, the plan's %+v", p.File, w, p)
			}
		}
		fallbacks := 0
		for _, p := range plan.GGUF {
			for _, ts := range p.Tensors {
				if ts.Fallback != "" {
					fallbacks++
				}
			}
		}
		if fallbacks != len(plan.Fallbacks) || fallbacks == 0 {
			t.Errorf("--gguf %s: %d tensors name a fallback, the summary lists %d", o.GGUF, fallbacks, len(plan.Fallbacks))
		}
	}
}

// TestConvertGGUFDryRunRefuses: a dry run refuses what the conversion
// refuses before it reads a weight, with the same error (an IQ type
// without an importance matrix, which llama-quantize --dry-run only warns
// of; an existing file without --force), leaves an existing file alone
// with --force, and reads no weight: F16 values beyond fp16's range, which
// the conversion refuses once it reads them, pass.
func TestConvertGGUFDryRunRefuses(t *testing.T) {
	src := fixture(t, "models/stories260K-hf-mistral")
	dir := t.TempDir()
	existing := filepath.Join(dir, "there.gguf")
	if err := os.WriteFile(existing, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, o := range []publish.ConvertOptions{
		{In: fixture(t, "models/openchat-tiny"), Out: filepath.Join(dir, "iq2.gguf"), GGUF: "iq2_xxs"},
		{In: src, Out: existing, GGUF: "q8_0"},
	} {
		_, err := publish.Convert(context.Background(), o)
		dry := o
		dry.DryRun = true
		_, derr := publish.Convert(context.Background(), dry)
		if err == nil || derr == nil || err.Error() != derr.Error() {
			t.Errorf("--gguf %s --out %s: dry run %v, the conversion %v: want the same refusal", o.GGUF, o.Out, derr, err)
		}
	}
	if _, err := publish.Convert(context.Background(), publish.ConvertOptions{In: src, Out: existing, GGUF: "q8_0", Force: true, DryRun: true}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(existing); !bytes.Equal(b, []byte("keep")) {
		t.Errorf("--dry-run --force changed %s: %q", existing, b)
	}
	big := filepath.Join(t.TempDir(), "big")
	copyTree(t, src, big)
	rewrite(t, big, "model.layers.0.mlp.down_proj.weight", func(d []byte) {
		binary.LittleEndian.PutUint32(d[0:], math.Float32bits(1e5))
	})
	out := filepath.Join(t.TempDir(), "f16.gguf")
	if _, err := publish.Convert(context.Background(), publish.ConvertOptions{In: big, Out: out, GGUF: "f16", DryRun: true}); err != nil {
		t.Errorf("dry run of a checkpoint whose values overflow fp16: %v, want none (the weights are not read)", err)
	}
	if _, err := publish.Convert(context.Background(), publish.ConvertOptions{In: big, Out: out, GGUF: "f16"}); err == nil || !strings.Contains(err.Error(), "fp16's range") {
		t.Errorf("the conversion of it: %v, want the overflow refusal", err)
	}
	if _, err := publish.Convert(context.Background(), publish.ConvertOptions{In: src, Out: filepath.Join(dir, "st"), DryRun: true}); err == nil || !strings.Contains(err.Error(), "--dry-run plans GGUF files: add --gguf") {
		t.Errorf("--dry-run without --gguf: %v", err)
	}
}
