package gguf

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzNewFile feeds arbitrary file images to the reader: it must never
// panic, every accepted tensor must lie inside the file and decode, a
// llama config read from it (HFConfig) has a RoPE scaling the runtime
// computes, and an accepted file that the writer also accepts must survive
// a write and re-read with the same metadata, tensor infos and bytes.
func FuzzNewFile(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "*.gguf"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(handFile())
	f.Add(header(0, 1).str(KeyAlignment).u32(4).u32(64).b)
	f.Add(header(1, 1).str("k").u32(9).u32(9).u64(1).u32(8).u64(1).str("s").
		str("t").u32(2).u64(256).u64(1).u32(uint32(TypeQ4_K)).u64(0).pad(32).raw(make([]byte, 144)...).pad(32).b)
	// A llama model's metadata with a linear scaling, with Llama 3's
	// rope_freqs (head_dim 4: two factors), and with yarn.
	for _, extra := range [][]KV{{{"llama.rope.scaling.type", "linear"}, {"llama.rope.scaling.factor", float32(2)}}, nil,
		{{"llama.rope.scaling.type", "yarn"}, {"llama.rope.scaling.factor", float32(4)}, {"llama.rope.scaling.original_context_length", uint32(8)}, {"llama.rope.scaling.attn_factor", float32(1.25)}}} {
		kvs := append([]KV{{"general.architecture", "llama"}, {"llama.embedding_length", uint32(8)}, {"llama.feed_forward_length", uint32(8)},
			{"llama.block_count", uint32(1)}, {"llama.attention.head_count", uint32(2)}, {"llama.context_length", uint32(16)},
			{"llama.attention.layer_norm_rms_epsilon", float32(1e-5)}}, extra...)
		infos := []TensorInfo{{Name: "token_embd.weight", Shape: []int{4, 8}, Type: TypeF32}}
		if extra == nil {
			infos = append(infos, TensorInfo{Name: RopeFreqsTensor, Shape: []int{2}, Type: TypeF32})
		}
		path := filepath.Join(f.TempDir(), "seed.gguf")
		w, err := Create(path, kvs, infos)
		if err != nil {
			f.Fatal(err)
		}
		for _, ti := range infos {
			vals := make([]float32, ti.NumElements())
			for i := range vals {
				vals[i] = 1 + float32(i)
			}
			if err := w.WriteFloat32(ti.Name, vals); err != nil {
				f.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := NewFile(bytes.NewReader(data), int64(len(data)), "fuzz.gguf")
		if err != nil {
			return
		}
		if cfg, err := file.HFConfig(); err == nil {
			s := cfg.RopeScaling
			if err := s.Validate(); err != nil || s.FreqFactors != nil && len(s.FreqFactors) != cfg.HeadDim/2 {
				t.Fatalf("HFConfig gave a RoPE scaling the runtime refuses: %+v (%v)", s, err)
			}
		}
		infos := file.Tensors()
		raws := make([][]byte, len(infos))
		for i, ti := range infos {
			size, err := ti.Size()
			if err != nil {
				t.Fatalf("tensor %q accepted with an invalid size: %v", ti.Name, err)
			}
			if file.DataOffset+ti.Offset+size > int64(len(data)) && size > 0 {
				t.Fatalf("tensor %q: [%d, %d) beyond the %d-byte file", ti.Name, file.DataOffset+ti.Offset, file.DataOffset+ti.Offset+size, len(data))
			}
			if raws[i], err = file.TensorData(ti.Name); err != nil {
				t.Fatalf("TensorData(%q): %v", ti.Name, err)
			}
			if ti.Type.Convertible() && ti.NumElements() <= 1<<20 {
				if _, err := file.Float32(ti.Name); err != nil {
					t.Fatalf("Float32(%q): %v", ti.Name, err)
				}
			}
		}
		path := filepath.Join(t.TempDir(), "again.gguf")
		w, err := Create(path, file.KVs(), infos)
		if err != nil {
			return // the writer is stricter: alignment ≥ 8, names < 64 bytes, UTF-8 keys
		}
		for i, ti := range infos {
			if err := w.WriteTensor(ti.Name, raws[i]); err != nil {
				t.Fatalf("rewriting tensor %q: %v", ti.Name, err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatalf("rewriting: %v", err)
		}
		again, err := Open(path)
		if err != nil {
			t.Fatalf("re-reading a written file: %v", err)
		}
		defer again.Close()
		if !kvsEqual(again.KVs(), file.KVs()) {
			t.Fatalf("metadata changed in a round trip")
		}
		got := again.Tensors()
		if len(got) != len(infos) {
			t.Fatalf("%d tensors after a round trip, want %d", len(got), len(infos))
		}
		for i, ti := range got {
			if ti.Name != infos[i].Name || ti.Type != infos[i].Type || !slices.Equal(ti.Shape, infos[i].Shape) {
				t.Fatalf("tensor %d: %+v after a round trip, want %+v", i, ti, infos[i])
			}
			b, err := again.TensorData(ti.Name)
			if err != nil || !bytes.Equal(b, raws[i]) {
				t.Fatalf("tensor %q: data changed in a round trip (%v)", ti.Name, err)
			}
		}
	})
}

// FuzzParseKVOverride feeds arbitrary --override-kv values to the parser:
// it must never panic, an accepted value is a pair the writer takes, and
// it round-trips: written back as KEY=TYPE:VALUE (overrideString), it
// parses to the same pair.
func FuzzParseKVOverride(f *testing.F) {
	for _, s := range []string{"general.name=str:my-model", "a=str:b=c:d", "llama.context_length=int:8192", "a=int:+7",
		"llama.rope.freq_base=float:1e6", "a=float:-inf", "a=float:nan", "tokenizer.ggml.add_bos_token=bool:false",
		"general.alignment=int:64", "general.architecture=str:x", "=str:x", "a=INT:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		kv, err := ParseKVOverride(s)
		if err != nil {
			return
		}
		if _, err := newLayout("fuzz", []KV{kv}, nil); err != nil {
			t.Fatalf("ParseKVOverride(%q) = %v (%T), which the writer refuses: %v", s, kv.Value, kv.Value, err)
		}
		back, err := ParseKVOverride(overrideString(kv))
		same := err == nil && back.Key == kv.Key && (back.Value == kv.Value || fmt.Sprint(back.Value) == "NaN" && fmt.Sprint(kv.Value) == "NaN")
		if !same {
			t.Fatalf("ParseKVOverride(%q) = %v (%T); written back as %q it parses to %v (%T), %v", s, kv.Value, kv.Value, overrideString(kv), back.Value, back.Value, err)
		}
	})
}
