package calibrate

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"

	"github.com/gptqtool/gptqtool/formats/tokenizer"
)

// Record is one row of a dataset: a parquet row, a JSON object, or a text
// document (Fields {"text": …}).
type Record struct {
	// Source is the file the record was read from.
	Source string
	// Index is the record's 0-based position in Source (row, array element,
	// non-blank line, or document).
	Index int
	// Line is the 1-based line of a JSONL record in Source; 0 in other
	// formats.
	Line int
	// Fields maps column names to values: string, json.Number (JSON
	// numbers), bool, nil (null), []any (lists) and map[string]any (structs,
	// JSON objects); parquet also gives int32, int64, float32, float64 and
	// []byte (fixed-length binary).
	Fields map[string]any
}

// where names the record in errors: file, 0-based record index and, for
// JSONL, the 1-based line.
func (r Record) where() string {
	if r.Line > 0 {
		return fmt.Sprintf("%s: record %d (0-based), line %d", r.Source, r.Index, r.Line)
	}
	return fmt.Sprintf("%s: record %d (0-based)", r.Source, r.Index)
}

// ReadRecords reads the records of the given files, directories and globs
// (see ResolvePaths) in order, each file in format, or by its extension when
// format is "". Text must be valid UTF-8; a leading UTF-8 byte order mark is
// dropped.
func ReadRecords(paths []string, format string) ([]Record, error) {
	files, err := ResolvePaths(paths)
	if err != nil {
		return nil, err
	}
	var recs []Record
	for _, f := range files {
		r, err := ReadFile(f, format)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r...)
	}
	return recs, nil
}

// ReadFile reads the records of one file in format ("" = by extension).
func ReadFile(path, format string) ([]Record, error) {
	recs, _, err := readFile(path, format)
	return recs, err
}

// readFile reads the records of one file and, for parquet, its schema (nil
// for other formats).
func readFile(path, format string) ([]Record, *parquet.Schema, error) {
	fm, err := formatOf(path, format)
	if err != nil {
		return nil, nil, err
	}
	if fm == FormatParquet {
		fh, err := os.Open(path)
		if err != nil {
			return nil, nil, fmt.Errorf("dataset: %w", err)
		}
		defer fh.Close()
		st, err := fh.Stat()
		if err != nil {
			return nil, nil, fmt.Errorf("dataset: %w", err)
		}
		return readParquet(path, fh, st.Size())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("dataset: %w", err)
	}
	if data, err = gunzip(path, data); err != nil {
		return nil, nil, err
	}
	recs, err := decodeText(path, fm, data)
	return recs, nil, err
}

// gunzip returns the uncompressed bytes of a gzip file (recognised by its
// magic number, whatever its name; concatenated members are read as one),
// and any other data as is.
func gunzip(path string, data []byte) ([]byte, error) {
	if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		return data, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("dataset %s: gzip: %w", path, err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("dataset %s: gzip: %w (a truncated file?)", path, err)
	}
	return out, nil
}

// decodeText decodes the records of a JSON, JSONL or text file image: a
// leading UTF-8 byte order mark is dropped, the rest must be valid UTF-8.
func decodeText(path, fm string, data []byte) ([]Record, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("dataset %s: invalid UTF-8 at byte %d", path, tokenizer.InvalidUTF8At(data))
	}
	switch fm {
	case FormatJSON:
		return readJSON(path, data)
	case FormatJSONL:
		return readJSONL(path, data)
	case FormatParagraphs:
		return readParagraphs(path, data), nil
	default:
		return []Record{{Source: path, Fields: map[string]any{"text": string(data)}}}, nil
	}
}

// recordOf turns one decoded JSON value into record fields: an object as
// is, a string as {"text": s}.
func recordOf(v any) (map[string]any, bool) {
	switch v := v.(type) {
	case map[string]any:
		return v, true
	case string:
		return map[string]any{"text": v}, true
	}
	return nil, false
}

func readJSON(path string, data []byte) ([]Record, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var rows []any
	if err := dec.Decode(&rows); err != nil {
		var ute *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &ute) && ute.Field == "":
			// The Hub's json loader reads JSON Lines under a .json name
			// (allenai/c4's shards): several objects, one per line.
			if ute.Value == "object" {
				if recs, lerr := readJSONL(path, data); lerr == nil && len(recs) > 1 {
					return recs, nil
				}
			}
			return nil, fmt.Errorf("dataset %s: want a JSON array of objects (for one object per line use .jsonl or format jsonl), got a JSON %s", path, ute.Value)
		case len(bytes.TrimSpace(data)) == 0:
			return nil, fmt.Errorf("dataset %s: the file is empty: want a JSON array of objects", path)
		case err == io.ErrUnexpectedEOF:
			return nil, fmt.Errorf("dataset %s: the JSON ends at byte %d before its array closes (a truncated file?)", path, len(data))
		case errors.As(err, &se):
			line, col := position(data, se.Offset-1) // (Offset counts the bad byte)
			return nil, fmt.Errorf("dataset %s: line %d, column %d: %w", path, line, col, err)
		}
		return nil, fmt.Errorf("dataset %s: %w", path, err)
	}
	if rows == nil {
		return nil, fmt.Errorf("dataset %s: want a JSON array of objects, got a JSON null", path)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("dataset %s: data after the JSON array (for one object per line use .jsonl or format jsonl)", path)
	}
	recs := make([]Record, 0, len(rows))
	for i, v := range rows {
		f, ok := recordOf(v)
		if !ok {
			return nil, fmt.Errorf("dataset %s: element %d: want a JSON object or string, got %s", path, i, jsonKind(v))
		}
		recs = append(recs, Record{Source: path, Index: i, Fields: f})
	}
	return recs, nil
}

// position turns the byte offset of a byte of data into its line and
// column, both from 1.
func position(data []byte, offset int64) (line, col int) {
	offset = min(max(offset, 0), int64(len(data)))
	before := data[:offset]
	line = 1 + bytes.Count(before, []byte("\n"))
	return line, int(offset) - bytes.LastIndexByte(before, '\n')
}

func readJSONL(path string, data []byte) ([]Record, error) {
	var recs []Record
	for line := 1; len(data) > 0; line++ {
		var l []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			l, data = data, nil
		}
		l = bytes.TrimSpace(l)
		if len(l) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(l))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("dataset %s: line %d: %w", path, line, err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, fmt.Errorf("dataset %s: line %d: more than one JSON value on the line", path, line)
		}
		f, ok := recordOf(v)
		if !ok {
			return nil, fmt.Errorf("dataset %s: line %d: want a JSON object or string, got %s", path, line, jsonKind(v))
		}
		recs = append(recs, Record{Source: path, Index: len(recs), Line: line, Fields: f})
	}
	return recs, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}

// readParagraphs splits text into documents at blank lines (lines of
// whitespace only); a document is its lines joined with "\n", unchanged.
func readParagraphs(path string, data []byte) []Record {
	var recs []Record
	var doc []string
	flush := func() {
		if len(doc) > 0 {
			recs = append(recs, Record{Source: path, Index: len(recs), Fields: map[string]any{"text": strings.Join(doc, "\n")}})
			doc = doc[:0]
		}
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(l) == "" {
			flush()
			continue
		}
		doc = append(doc, strings.TrimSuffix(l, "\r"))
	}
	flush()
	return recs
}

// invalidUTF8Path reports whether v holds a string that is not valid UTF-8,
// and the dotted path below v to the first one ("" for v itself).
func invalidUTF8Path(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return "", !utf8.ValidString(v)
	case []byte:
		return "", !utf8.Valid(v)
	case []any:
		for _, e := range v {
			if p, bad := invalidUTF8Path(e); bad {
				return p, true
			}
		}
	case map[string]any:
		for _, k := range sortedKeys(v) {
			if p, bad := invalidUTF8Path(v[k]); bad {
				if p != "" {
					k += "." + p
				}
				return k, true
			}
		}
	}
	return "", false
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Columns returns the sorted union of the top-level column names of recs.
func Columns(recs []Record) []string {
	seen := map[string]bool{}
	var cols []string
	for _, r := range recs {
		for k := range r.Fields {
			if !seen[k] {
				seen[k] = true
				cols = append(cols, k)
			}
		}
	}
	sort.Strings(cols)
	return cols
}
