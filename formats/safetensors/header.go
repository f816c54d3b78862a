package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxHeaderSize is the largest JSON header accepted (100 MiB, the limit of
// the safetensors Rust crate).
const MaxHeaderSize = 100 << 20

// MetadataKey is the header key holding the string-to-string metadata map.
const MetadataKey = "__metadata__"

// entry is one tensor of a parsed header; begin and end are byte offsets
// relative to the start of the data section.
type entry struct {
	TensorInfo
	begin, end int64
}

// header is a parsed, validated safetensors header.
type header struct {
	dataStart int64             // 8 + JSON length
	entries   []entry           // in data-offset order (ties by name)
	metadata  map[string]string // nil when absent
}

type rawEntry struct {
	DType       *string `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// parseHeader parses and validates the header of the safetensors file image
// buf; file names the file in errors. Every tensor is checked against the
// data section: offsets in range, byte size matching shape and dtype, and,
// as the safetensors library checks (its validate), the tensors packed
// from the section's first byte to its last, no byte shared, none left
// over: a gap or bytes after the last tensor mean a damaged file (a write
// cut short and appended to, two files run together), which that library
// and so transformers, vLLM and TGI refuse.
func parseHeader(file string, buf []byte) (*header, error) {
	if len(buf) < 8 {
		return nil, fmt.Errorf("%s: %d bytes, too short for the 8-byte header length", file, len(buf))
	}
	n := binary.LittleEndian.Uint64(buf)
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("%s: header length %d exceeds the %d-byte limit", file, n, MaxHeaderSize)
	}
	if n > uint64(len(buf)-8) {
		return nil, fmt.Errorf("%s: header length %d exceeds the %d bytes after the length field (truncated file?)", file, n, len(buf)-8)
	}
	h := &header{dataStart: 8 + int64(n)}
	dataLen := int64(len(buf)) - h.dataStart
	js := buf[8:h.dataStart]
	if !utf8.Valid(js) {
		return nil, fmt.Errorf("%s: header is not valid UTF-8", file)
	}
	if len(bytes.TrimLeft(js, " \t\r\n")) == 0 || bytes.TrimLeft(js, " \t\r\n")[0] != '{' {
		return nil, fmt.Errorf("%s: header is not a JSON object", file)
	}
	if !json.Valid(js) {
		// Said as such, before a key's entry is blamed for it.
		var raw json.RawMessage
		err := json.Unmarshal(js, &raw)
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se) && strings.Contains(se.Error(), "after top-level value"):
			return nil, fmt.Errorf("%s: header JSON: trailing data after the object (at byte %d of %d)", file, se.Offset, len(js))
		case errors.As(err, &se):
			return nil, fmt.Errorf("%s: header JSON is not valid: at byte %d of %d: %w", file, se.Offset, len(js), err)
		}
		return nil, fmt.Errorf("%s: header JSON is not valid: %w", file, err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // the '{' checked above
		return nil, fmt.Errorf("%s: header JSON: %w", file, err)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%s: header JSON: %w", file, err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%s: header JSON: key %v is not a string", file, tok)
		}
		if seen[name] {
			return nil, fmt.Errorf("%s: header: duplicate key %q", file, name)
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%s: header JSON at key %q: %w", file, name, err)
		}
		if name == MetadataKey {
			if err := json.Unmarshal(raw, &h.metadata); err != nil {
				return nil, fmt.Errorf("%s: header: %s must map strings to strings: %w", file, MetadataKey, err)
			}
			continue
		}
		e, err := parseEntry(name, raw, dataLen)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", file, name, err)
		}
		h.entries = append(h.entries, e)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, fmt.Errorf("%s: header JSON: %w", file, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s: header JSON: trailing data after the object", file)
	}
	slices.SortFunc(h.entries, func(a, b entry) int {
		if c := cmp.Compare(a.begin, b.begin); c != 0 {
			return c
		}
		if c := cmp.Compare(a.end, b.end); c != 0 {
			return c // (an empty tensor before the one starting where it sits)
		}
		return strings.Compare(a.Name, b.Name)
	})
	var prev *entry // the last tensor holding bytes
	var end int64   // where it ends: where the next tensor must begin
	for i := range h.entries {
		e := &h.entries[i]
		switch {
		case e.begin < end:
			return nil, fmt.Errorf("%s: tensor %q: data_offsets [%d %d] overlap tensor %q at [%d %d]", file, e.Name, e.begin, e.end, prev.Name, prev.begin, prev.end)
		case e.begin > end && prev == nil:
			return nil, fmt.Errorf("%s: tensor %q: data_offsets [%d %d] leave the data section's first %d bytes unused: tensors are packed from its start (a damaged file?)", file, e.Name, e.begin, e.end, e.begin)
		case e.begin > end:
			return nil, fmt.Errorf("%s: tensor %q: data_offsets [%d %d] leave %d unused bytes after tensor %q at [%d %d]: tensors are packed without gaps (a damaged file?)", file, e.Name, e.begin, e.end, e.begin-end, prev.Name, prev.begin, prev.end)
		}
		if e.end > e.begin {
			prev, end = e, e.end
		}
	}
	if end != dataLen {
		return nil, fmt.Errorf("%s: %d bytes after the tensors' end at %d of the %d-byte data section: the format allows none (a damaged file, or two run together?)", file, dataLen-end, end, dataLen)
	}
	return h, nil
}

func parseEntry(name string, raw json.RawMessage, dataLen int64) (entry, error) {
	var r rawEntry
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&r); err != nil {
		return entry{}, fmt.Errorf("entry %s: %w", raw, err)
	}
	switch {
	case r.DType == nil:
		return entry{}, errors.New(`missing "dtype"`)
	case r.Shape == nil:
		return entry{}, errors.New(`missing "shape"`)
	case r.DataOffsets == nil:
		return entry{}, errors.New(`missing "data_offsets"`)
	case len(r.DataOffsets) != 2:
		return entry{}, fmt.Errorf("data_offsets %v: want [begin end]", r.DataOffsets)
	}
	e := entry{TensorInfo: TensorInfo{Name: name, DType: DType(*r.DType), Shape: make([]int, len(r.Shape))}}
	elems := int64(1)
	for i, d := range r.Shape {
		if d < 0 {
			return entry{}, fmt.Errorf("shape %v: negative dimension", r.Shape)
		}
		if d > 0 && elems > maxInt64/d {
			return entry{}, fmt.Errorf("shape %v: element count overflows", r.Shape)
		}
		elems *= d
		if int64(int(d)) != d {
			return entry{}, fmt.Errorf("shape %v: dimension too large for this platform", r.Shape)
		}
		e.Shape[i] = int(d)
	}
	size, err := byteSize(e.DType, elems)
	if err != nil {
		return entry{}, err
	}
	e.begin, e.end = r.DataOffsets[0], r.DataOffsets[1]
	switch {
	case e.begin < 0 || e.end < e.begin:
		return entry{}, fmt.Errorf("data_offsets [%d %d]: want 0 <= begin <= end", e.begin, e.end)
	case e.end > dataLen:
		return entry{}, fmt.Errorf("data_offsets [%d %d] end past the %d-byte data section (a truncated file?)", e.begin, e.end, dataLen)
	case e.end-e.begin != size:
		return entry{}, fmt.Errorf("data_offsets [%d %d] hold %d bytes, shape %v %s needs %d", e.begin, e.end, e.end-e.begin, e.Shape, e.DType, size)
	}
	return e, nil
}
