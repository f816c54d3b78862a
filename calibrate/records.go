package calibrate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
)

// Record is one row of a dataset: a parquet row, a JSON object, or a text
// document (Fields {"text": …}).
type Record struct {
	// Source is the file the record was read from.
	Source string
	// Index is the record's 0-based position in Source (row, array element,
	// non-blank line, or document).
	Index int
	// Fields maps column names to values: string, json.Number, int64,
	// float64, bool, nil (null), []any (lists) and map[string]any (structs,
	// JSON objects).
	Fields map[string]any
}

// where names the record in errors: file and record index.
func (r Record) where() string { return fmt.Sprintf("%s: record %d", r.Source, r.Index) }

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
	fm, err := formatOf(path, format)
	if err != nil {
		return nil, err
	}
	if fm == FormatParquet {
		return readParquet(path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("dataset %s: invalid UTF-8 at byte %d", path, invalidUTF8At(data))
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

// invalidUTF8At returns the offset of the first invalid UTF-8 sequence.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
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
		if errors.As(err, &ute) && ute.Field == "" {
			return nil, fmt.Errorf("dataset %s: want a JSON array of objects (for one object per line use .jsonl or format jsonl), got a JSON %s", path, ute.Value)
		}
		return nil, fmt.Errorf("dataset %s: %w", path, err)
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
		recs = append(recs, Record{Source: path, Index: len(recs), Fields: f})
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

// readParquet reads every row group of a parquet file into records through
// the file's own schema. Nested groups become map[string]any, LIST columns
// []any.
func readParquet(path string) (recs []Record, err error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	// parquet-go trusts offsets and lengths from the footer and page headers;
	// a damaged file can make it index out of range. Report that as the
	// corrupt-file error it is.
	defer func() {
		if p := recover(); p != nil {
			recs, err = nil, fmt.Errorf("dataset %s: corrupt parquet file: %v", path, p)
		}
	}()
	f, err := parquet.OpenFile(fh, st.Size(), parquet.SkipBloomFilters(true), parquet.SkipPageIndex(true))
	if err != nil {
		return nil, fmt.Errorf("dataset %s: not a readable parquet file: %w", path, err)
	}
	r := parquet.NewReader(f, f.Schema())
	defer r.Close()
	n := f.NumRows()
	recs = make([]Record, 0, n)
	for i := int64(0); i < n; i++ {
		m := map[string]any{}
		if err := r.Read(&m); err != nil {
			if err == io.EOF {
				return nil, fmt.Errorf("dataset %s: corrupt parquet file: %d rows, want %d from the footer", path, i, n)
			}
			return nil, fmt.Errorf("dataset %s: row %d: %w", path, i, err)
		}
		if col, bad := invalidUTF8Path(m); bad {
			return nil, fmt.Errorf("dataset %s: row %d: column %q: invalid UTF-8", path, i, col)
		}
		recs = append(recs, Record{Source: path, Index: int(i), Fields: m})
	}
	return recs, nil
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
