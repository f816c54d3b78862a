package calibrate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// addSeeds adds the files matching pattern to the fuzzer's corpus.
func addSeeds(f *testing.F, pattern string) {
	f.Helper()
	paths, err := filepath.Glob(pattern)
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seed files %s (%v)", pattern, err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// checkRead checks what every reader promises: an error names the file;
// records are numbered from 0 in order, name their file and hold fields.
func checkRead(t *testing.T, name string, recs []Record, err error) {
	t.Helper()
	if err != nil {
		if !strings.Contains(err.Error(), name) {
			t.Fatalf("error %q does not name the file %s", err, name)
		}
		return
	}
	for i, r := range recs {
		if r.Index != i || r.Source != name || r.Fields == nil {
			t.Fatalf("record %d: index %d, source %q, fields %v", i, r.Index, r.Source, r.Fields)
		}
	}
}

// checkRender runs the default rendering and the text checks over records
// read without error: they may refuse the data but must not panic, an
// error names the file, and it is the same on a second run.
func checkRender(t *testing.T, name string, recs []Record) {
	t.Helper()
	if len(recs) == 0 {
		return
	}
	rd, err := newRenderer(Options{}, Columns(recs))
	if err != nil {
		return
	}
	err = checkText(recs, rd)
	if err != nil && !strings.Contains(err.Error(), name) && !strings.Contains(err.Error(), "no text") {
		t.Fatalf("text check error %q names neither the file nor the lack of text", err)
	}
	if again := checkText(recs, rd); fmt.Sprint(again) != fmt.Sprint(err) {
		t.Fatalf("text check: %v, then %v", err, again)
	}
}

// sameFields reports whether two record lists hold the same fields, in
// order (compared by their printed form, where NaN equals NaN).
func sameFields(a, b []Record) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if fmt.Sprintf("%#v", a[i].Fields) != fmt.Sprintf("%#v", b[i].Fields) {
			return false
		}
	}
	return true
}

func fieldsOf(recs []Record) []map[string]any {
	out := make([]map[string]any, len(recs))
	for i, r := range recs {
		out[i] = r.Fields
	}
	return out
}

// jsonValue decodes one JSON document as encoding/json does, numbers kept
// as json.Number; ok is false for invalid JSON.
func jsonValue(b []byte) (v any, ok bool) {
	if !json.Valid(b) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return v, dec.Decode(&v) == nil
}

// isRecord reports whether a decoded JSON value makes a record: an object
// or a string.
func isRecord(v any) bool {
	switch v.(type) {
	case map[string]any, string:
		return true
	}
	return false
}

// FuzzReadJSON feeds arbitrary file images to the JSON array reader: it
// must not panic, must accept exactly the UTF-8 JSON arrays of objects and
// strings (as encoding/json parses them), give the same records on a second
// read, and read its records back unchanged after writing them as JSON.
func FuzzReadJSON(f *testing.F) {
	addSeeds(f, "testdata/*.json")
	f.Add([]byte(`[{"text": 123}, {"text": [1, {"a": null}]}, "s", {"x": 1e999, "y": -0.0}]`))
	f.Add([]byte("\xef\xbb\xbf[\"a\", {\"text\": \"b\\u00e9\"}]"))
	f.Add([]byte(`[{"instruction": " ", "input": null, "output": "\t"}]`))
	f.Add([]byte(`{"text": "an object, not an array"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.json"
		recs, err := decodeText(name, FormatJSON, data)
		checkRead(t, name, recs, err)
		body := bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
		doc, valid := jsonValue(body)
		want, isArray := doc.([]any)
		valid = valid && isArray && utf8.Valid(body)
		for _, v := range want {
			valid = valid && isRecord(v)
		}
		if err != nil {
			if valid {
				t.Fatalf("a JSON array of objects and strings refused: %v", err)
			}
			return
		}
		if !valid || len(recs) != len(want) {
			t.Fatalf("accepted %d records from input encoding/json reads as %d (valid %v)", len(recs), len(want), valid)
		}
		again, err := decodeText(name, FormatJSON, data)
		if err != nil || !sameFields(recs, again) {
			t.Fatalf("second read: %v, records differ: %v", err, !sameFields(recs, again))
		}
		out, err := json.Marshal(fieldsOf(recs))
		if err != nil {
			t.Fatalf("writing the records as JSON: %v", err)
		}
		back, err := decodeText(name, FormatJSON, out)
		if err != nil || !sameFields(recs, back) {
			t.Fatalf("round trip: %v\n%s", err, out)
		}
		checkRender(t, name, recs)
	})
}

// FuzzReadJSONL feeds arbitrary file images to the JSONL reader: it must
// not panic, must accept exactly the UTF-8 files whose non-blank lines each
// hold one JSON object or string, number records by non-blank line with the
// right line numbers, and read its records back unchanged after writing them
// one per line.
func FuzzReadJSONL(f *testing.F) {
	addSeeds(f, "testdata/*.jsonl")
	f.Add([]byte("{\"text\": 1}\n\n  {\"text\": true}\r\n\"s\"\n{\"a\": {\"b\": [1, 2]}}"))
	f.Add([]byte("{\"a\": 1} {\"b\": 2}\n"))
	f.Add([]byte("[1]\nnull\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.jsonl"
		recs, err := decodeText(name, FormatJSONL, data)
		checkRead(t, name, recs, err)
		body := bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
		lines := bytes.Split(body, []byte("\n"))
		valid, n := utf8.Valid(body), 0
		var nonBlank []int // 1-based numbers of the non-blank lines
		for i, l := range lines {
			l = bytes.TrimSpace(l)
			if len(l) == 0 {
				continue
			}
			nonBlank = append(nonBlank, i+1)
			v, ok := jsonValue(l)
			valid = valid && ok && isRecord(v)
			n++
		}
		if err != nil {
			if valid {
				t.Fatalf("a JSONL file of objects and strings refused: %v", err)
			}
			return
		}
		if !valid || len(recs) != n {
			t.Fatalf("accepted %d records from input with %d valid lines (valid %v)", len(recs), n, valid)
		}
		for i, r := range recs {
			if r.Line != nonBlank[i] {
				t.Fatalf("record %d: line %d, want %d", i, r.Line, nonBlank[i])
			}
		}
		var out bytes.Buffer
		for _, r := range recs {
			b, err := json.Marshal(r.Fields)
			if err != nil {
				t.Fatalf("writing record %d: %v", r.Index, err)
			}
			out.Write(append(b, '\n'))
		}
		back, err := decodeText(name, FormatJSONL, out.Bytes())
		if err != nil || !sameFields(recs, back) {
			t.Fatalf("round trip: %v\n%s", err, out.Bytes())
		}
		checkRender(t, name, recs)
	})
}

// FuzzReadText feeds arbitrary file images to the text readers. Whole-file
// text is the file minus its byte order mark; paragraphs are its non-blank
// lines, in order, grouped at blank lines, and survive being written back
// separated by blank lines. A text is refused as "no text" exactly when it
// is empty or whitespace only.
func FuzzReadText(f *testing.F) {
	addSeeds(f, "testdata/*.txt")
	f.Add([]byte("  \n\t\r\n \u00a0\n"))
	f.Add([]byte("\xef\xbb\xbfa\r\nb\r\n\r\n\r\nc"))
	f.Add([]byte("caf\xe9"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.txt"
		body := bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
		recs, err := decodeText(name, FormatText, data)
		checkRead(t, name, recs, err)
		if (err == nil) != utf8.Valid(body) {
			t.Fatalf("UTF-8 valid %v, error %v", utf8.Valid(body), err)
		}
		if err != nil {
			return
		}
		if len(recs) != 1 || recs[0].Fields["text"] != string(body) {
			t.Fatalf("text: %d records, want the file as one", len(recs))
		}
		rd, err := newRenderer(Options{}, Columns(recs))
		if err != nil {
			t.Fatal(err)
		}
		if err := checkText(recs, rd); (err != nil) != isBlank(string(body)) {
			t.Fatalf("text check of a blank (%v) text: %v", isBlank(string(body)), err)
		}

		docs, err := decodeText(name, FormatParagraphs, data)
		checkRead(t, name, docs, err)
		if err != nil {
			t.Fatalf("paragraphs: %v", err)
		}
		var wantLines, gotLines []string
		for _, l := range strings.Split(string(body), "\n") {
			if strings.TrimSpace(l) != "" {
				wantLines = append(wantLines, strings.TrimSuffix(l, "\r"))
			}
		}
		var texts []string
		for _, d := range docs {
			s := d.Fields["text"].(string)
			lines := strings.Split(s, "\n")
			for _, l := range lines {
				if strings.TrimSpace(l) == "" {
					t.Fatalf("document %d holds a blank line: %q", d.Index, s)
				}
			}
			gotLines = append(gotLines, lines...)
			texts = append(texts, s)
		}
		if strings.Join(gotLines, "\n") != strings.Join(wantLines, "\n") || len(gotLines) != len(wantLines) {
			t.Fatalf("documents hold lines %q, want the non-blank lines %q", gotLines, wantLines)
		}
		// Written back with CRLF line ends, so that a document line that ends
		// in "\r" (from "x\r\r\n", 16dd2f8e79e8750c) keeps it, after a byte
		// order mark, so that a document that starts with U+FEFF keeps it
		// (e698c2f464426385).
		crlf := "\ufeff" + strings.ReplaceAll(strings.Join(texts, "\n\n"), "\n", "\r\n") + "\r\n"
		back, err := decodeText(name, FormatParagraphs, []byte(crlf))
		if err != nil || !sameFields(docs, back) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzReadParquet feeds arbitrary file images to the parquet reader: it
// must not panic or allocate far beyond the file's size, must give the same
// records on a second read, and a file parquet-go writes from the records
// it accepted must be accepted again with the same records.
func FuzzReadParquet(f *testing.F) {
	addSeeds(f, "testdata/*.parquet")
	for _, seed := range parquetSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(fuzzParquet)
}

// fuzzParquet is the body of FuzzReadParquet.
func fuzzParquet(t *testing.T, data []byte) {
	const name = "fuzz.parquet"
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	recs, schema, err := readParquet(name, bytes.NewReader(data), int64(len(data)))
	runtime.ReadMemStats(&after)
	// Budgets: 64 values a byte, 1024 uncompressed bytes a byte, pages
	// of at least 4 MiB; what parquet-go makes of them is a small
	// multiple.
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(256<<20+4096*len(data)); got > limit {
		t.Fatalf("reading %d bytes allocated %d bytes, over %d (error %v)", len(data), got, limit, err)
	}
	checkRead(t, name, recs, err)
	if err != nil {
		return
	}
	again, _, err := readParquet(name, bytes.NewReader(data), int64(len(data)))
	if err != nil || !sameFields(recs, again) {
		t.Fatalf("second read: %v, records differ: %v", err, err == nil)
	}
	if len(recs) > 0 {
		if rd, err := newRenderer(Options{}, Columns(recs)); err == nil {
			if err := checkParquetText(name, schema, rd.cols); err != nil && !strings.Contains(err.Error(), name) {
				t.Fatalf("schema check error %q does not name the file", err)
			}
		}
	}
	checkRender(t, name, recs)

	var buf bytes.Buffer
	if !writable(schema) || !writeRecords(&buf, schema, recs) {
		return // parquet-go does not write every schema it reads
	}
	back, _, err := readParquet(name, bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatalf("reading a file parquet-go wrote from %d accepted records: %v", len(recs), err)
	}
	if !sameFields(recs, back) {
		t.Fatalf("round trip changed the records:\n%v\n%v", fieldsOf(recs), fieldsOf(back))
	}
}

// writeRecords writes recs through schema with parquet-go; false when
// parquet-go refuses (or panics on) the schema or the values.
func writeRecords(buf *bytes.Buffer, schema *parquet.Schema, recs []Record) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	w := parquet.NewGenericWriter[map[string]any](buf, schema)
	rows := fieldsOf(recs)
	if _, err := w.Write(rows); err != nil {
		return false
	}
	return w.Close() == nil
}

// writable reports whether parquet-go can write what it reads through the
// schema: no NULL columns, and no node its Type method panics on.
func writable(schema *parquet.Schema) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return !hasNullColumn(schema)
}

// hasNullColumn reports whether the schema holds a column of the NULL
// logical type: parquet-go reads those but does not read back what it
// writes for them (testdata/fuzz/FuzzReadParquet/94cfa326f7471792, a
// required NULL column: three rows written, none read).
func hasNullColumn(n parquet.Node) bool {
	if n.Leaf() {
		if lt := n.Type().LogicalType(); lt != nil {
			_, null := lt.Value.(*format.NullType)
			return null
		}
		return false
	}
	for _, f := range n.Fields() {
		if hasNullColumn(f) {
			return true
		}
	}
	return false
}

// parquetSeeds are small files of the shapes the readers meet: nested
// lists and structs, optional and non-string columns, several row groups
// and codecs, dictionary pages.
func parquetSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	type typed struct {
		Text  string   `parquet:"text,optional"`
		N     int32    `parquet:"n"`
		F     float64  `parquet:"f"`
		B     bool     `parquet:"b"`
		Bin   [4]byte  `parquet:"bin"`
		Words []string `parquet:"words,list"`
	}
	type text struct {
		Text string `parquet:"text,dict"`
	}
	return [][]byte{
		parquetBytes(tb, testRows(4), parquet.Compression(&parquet.Gzip)),
		parquetBytes(tb, []typed{{"a", 1, 1.5, true, [4]byte{1, 2, 3, 4}, []string{"x"}}, {"", -2, math.Copysign(0, -1), false, [4]byte{}, nil}}),
		parquetBytes(tb, []text{{" "}, {"\t"}, {" "}}, parquet.Compression(&parquet.Uncompressed)),
		parquetBytes(tb, []text{}),
	}
}

// parquetBytes writes rows as a parquet file image in one row group.
func parquetBytes[T any](tb testing.TB, rows []T, opts ...parquet.WriterOption) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := parquet.Write(&buf, rows, opts...); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}
