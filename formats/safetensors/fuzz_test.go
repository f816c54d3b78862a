package safetensors

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzParseHeader feeds arbitrary file images to the header parser: it must
// never panic, every accepted tensor must lie inside the data, and an
// accepted file must survive a write and re-read unchanged.
func FuzzParseHeader(f *testing.F) {
	for _, pattern := range []string{"testdata/*.safetensors", "testdata/*/*.safetensors"} {
		paths, _ := filepath.Glob(pattern)
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)))
	f.Add(rawFile(`{"__metadata__":{"format":"pt"},"x":{"dtype":"BF16","shape":[0,3],"data_offsets":[0,0]}}`, nil))
	f.Add(rawFile(`{"x":{"dtype":"F4","shape":[4],"data_offsets":[0,2]}}`, []byte{1, 2}))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parseHeader("fuzz", data)
		if err != nil {
			return
		}
		dataLen := int64(len(data)) - h.dataStart
		var tensors []TensorInfo
		var sizes []int64
		var payload []byte
		for _, e := range h.entries {
			if e.begin < 0 || e.end < e.begin || e.end > dataLen {
				t.Fatalf("tensor %q: accepted offsets [%d %d] outside %d data bytes", e.Name, e.begin, e.end, dataLen)
			}
			x := Tensor{TensorInfo: e.TensorInfo, Data: data[h.dataStart+e.begin : h.dataStart+e.end]}
			if x.DType.Size() > 0 && int64(x.ByteSize()) != e.end-e.begin {
				t.Fatalf("tensor %q: ByteSize %d, offsets hold %d", e.Name, x.ByteSize(), e.end-e.begin)
			}
			x.Float32()
			x.Int32()
			tensors = append(tensors, e.TensorInfo)
			sizes = append(sizes, e.end-e.begin)
			payload = append(payload, x.Data...)
		}
		hdr, err := encodeHeader(tensors, sizes, h.metadata)
		if err != nil {
			t.Fatalf("re-encoding an accepted header: %v", err)
		}
		again, err := parseHeader("fuzz-again", append(hdr, payload...))
		if err != nil {
			t.Fatalf("re-reading a written header: %v", err)
		}
		if len(again.entries) != len(h.entries) {
			t.Fatalf("%d tensors after a round trip, want %d", len(again.entries), len(h.entries))
		}
		pos := map[string]entry{}
		for _, e := range again.entries {
			pos[e.Name] = e
		}
		var off int64
		for i, e := range h.entries {
			g, ok := pos[e.Name]
			if !ok || g.DType != e.DType || !slices.Equal(g.Shape, e.Shape) {
				t.Fatalf("tensor %q: round trip gave %+v", e.Name, g)
			}
			got := append(hdr, payload...)[again.dataStart+g.begin : again.dataStart+g.end]
			if !bytes.Equal(got, payload[off:off+sizes[i]]) {
				t.Fatalf("tensor %q: data changed in the round trip", e.Name)
			}
			off += sizes[i]
		}
	})
}
