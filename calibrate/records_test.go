package calibrate

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

const (
	fixtures     = "../../shared/fixtures"
	alpacaJSON   = fixtures + "/datasets/instruct/alpaca_en_demo.json"
	alpacaPQ     = fixtures + "/datasets/instruct/alpaca_en_demo.parquet"
	wikiRaw      = fixtures + "/datasets/wikitext-2-raw/wiki.test.raw"
	openchatTiny = fixtures + "/models/openchat-tiny"
)

// need skips the test when a shared fixture is missing.
func need(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("fixture %s missing: %v", p, err)
		}
	}
}

func TestAlpacaParquetEqualsJSON(t *testing.T) {
	need(t, alpacaJSON, alpacaPQ)
	fromJSON, err := ReadRecords([]string{alpacaJSON}, "")
	if err != nil {
		t.Fatal(err)
	}
	fromPQ, err := ReadRecords([]string{alpacaPQ}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(fromJSON) != 999 || len(fromPQ) != 999 {
		t.Fatalf("records: json %d, parquet %d, want 999 each", len(fromJSON), len(fromPQ))
	}
	for i := range fromJSON {
		if !reflect.DeepEqual(fromPQ[i].Fields, fromJSON[i].Fields) {
			t.Fatalf("record %d: parquet %v, json %v", i, fromPQ[i].Fields, fromJSON[i].Fields)
		}
	}
	if got, want := Columns(fromPQ), []string{"input", "instruction", "output"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Columns = %v, want %v", got, want)
	}
}

type pqTurn struct {
	From  string `parquet:"from"`
	Value string `parquet:"value"`
}

type pqMeta struct {
	Lang string `parquet:"lang"`
}

type pqRow struct {
	ID            int64    `parquet:"id"`
	Text          string   `parquet:"text"`
	Conversations []pqTurn `parquet:"conversations,list"`
	Tags          []string `parquet:"tags,list"`
	Meta          pqMeta   `parquet:"meta"`
	Note          *string  `parquet:"note,optional"`
}

// writeParquet writes rows with the given codec, rowsPerGroup rows to a
// row group, and returns the file's path.
func writeParquet(t *testing.T, rows []pqRow, codec parquet.WriterOption, rowsPerGroup int) string {
	t.Helper()
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[pqRow](&buf, codec)
	for i := 0; i < len(rows); i += rowsPerGroup {
		if _, err := w.Write(rows[i:min(i+rowsPerGroup, len(rows))]); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil { // ends the row group
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rows.parquet")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func testRows(n int) []pqRow {
	rows := make([]pqRow, n)
	for i := range rows {
		note := "note " + strings.Repeat("x", i%3)
		rows[i] = pqRow{
			ID:   int64(i),
			Text: "row " + strings.Repeat("é", i%5),
			Conversations: []pqTurn{
				{From: "human", Value: "question " + string(rune('a'+i%26))},
				{From: "gpt", Value: "answer"},
			},
			Tags: []string{"t1", "t2"},
			Meta: pqMeta{Lang: "en"},
		}
		if i%2 == 0 {
			rows[i].Note = &note
		}
	}
	return rows
}

func TestReadParquetRowGroupsAndCodecs(t *testing.T) {
	rows := testRows(23)
	for _, tc := range []struct {
		name  string
		codec parquet.WriterOption
	}{
		{"zstd", parquet.Compression(&parquet.Zstd)},
		{"snappy", parquet.Compression(&parquet.Snappy)},
		{"gzip", parquet.Compression(&parquet.Gzip)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeParquet(t, rows, tc.codec, 5)
			fh, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			st, _ := fh.Stat()
			f, err := parquet.OpenFile(fh, st.Size())
			if err != nil {
				t.Fatal(err)
			}
			if got := len(f.RowGroups()); got != 5 {
				t.Fatalf("the test file has %d row groups, want 5", got)
			}
			recs, err := ReadFile(path, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != len(rows) {
				t.Fatalf("records = %d, want %d", len(recs), len(rows))
			}
			for i, r := range recs {
				want := rows[i]
				if got, _ := lookup(r.Fields, "text"); got != want.Text {
					t.Errorf("row %d text = %q, want %q", i, got, want.Text)
				}
				if got, _ := lookup(r.Fields, "meta.lang"); got != "en" {
					t.Errorf("row %d meta.lang = %v, want en", i, got)
				}
				for _, p := range []string{"conversations.value", "conversations.list.element.value"} {
					got, _ := lookup(r.Fields, p)
					wantV := []any{want.Conversations[0].Value, want.Conversations[1].Value}
					if !reflect.DeepEqual(got, wantV) {
						t.Errorf("row %d %s = %#v, want %#v", i, p, got, wantV)
					}
				}
				msgs, isChat, err := turns(r.Fields["conversations"])
				if err != nil || !isChat || len(msgs) != 2 || msgs[0].Role != "user" || msgs[1].Role != "assistant" || msgs[0].Content != want.Conversations[0].Value {
					t.Errorf("row %d turns = %v, %v, %v", i, msgs, isChat, err)
				}
				note, _ := lookup(r.Fields, "note")
				if (want.Note == nil) != (note == nil) || (want.Note != nil && note != *want.Note) {
					t.Errorf("row %d note = %#v, want %v", i, note, want.Note)
				}
				if got, _ := valueText(r.Fields["tags"]); got != "t1\nt2" {
					t.Errorf("row %d tags text = %q, want %q", i, got, "t1\nt2")
				}
			}
		})
	}
}

func TestReadText(t *testing.T) {
	need(t, wikiRaw)
	data, err := os.ReadFile(wikiRaw)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := ReadFile(wikiRaw, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Fields["text"] != string(data) {
		t.Fatalf("text format: %d records, want the whole file as one", len(recs))
	}
	docs, err := ReadFile(wikiRaw, FormatParagraphs)
	if err != nil {
		t.Fatal(err)
	}
	// Independent count: python3 -c 'import itertools; d = open(path,
	// encoding="utf-8").read(); print(sum(k for k, _ in
	// itertools.groupby(l.strip() != "" for l in d.split("\n"))))' gives 1320.
	if len(docs) != 1320 {
		t.Errorf("paragraphs = %d, want 1320", len(docs))
	}
	if got := docs[0].Fields["text"]; got != " = Robert Boulter = " {
		t.Errorf("first document = %q", got)
	}
}

func TestReadSmallFormats(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, file, body, format string
		want                     []map[string]any
	}{
		{"jsonl", "a.jsonl", "{\"text\":\"one\"}\n\n  {\"text\":\"two\",\"n\":1.50}\n\"three\"\n", "",
			[]map[string]any{{"text": "one"}, {"text": "two", "n": "1.50"}, {"text": "three"}}},
		{"json strings", "b.json", "\xef\xbb\xbf[\"x\", {\"text\": \"y\"}]", "",
			[]map[string]any{{"text": "x"}, {"text": "y"}}},
		{"paragraphs", "c.txt", "\n\nfirst doc\nline two\n \t\nsecond\n\n\n", FormatParagraphs,
			[]map[string]any{{"text": "first doc\nline two"}, {"text": "second"}}},
		{"forced jsonl", "d.data", "{\"a\":\"b\"}", FormatJSONL, []map[string]any{{"a": "b"}}},
		{"text by default", "e.md", "# hi", "", []map[string]any{{"text": "# hi"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := ReadFile(write(tc.file, tc.body), tc.format)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != len(tc.want) {
				t.Fatalf("%d records, want %d", len(recs), len(tc.want))
			}
			for i, r := range recs {
				got := map[string]any{}
				for k, v := range r.Fields {
					got[k] = fmt.Sprint(v) // strings and json.Number only here
				}
				if !reflect.DeepEqual(got, tc.want[i]) || r.Index != i {
					t.Errorf("record %d = %v (index %d), want %v", i, got, r.Index, tc.want[i])
				}
			}
		})
	}
}

func TestResolvePaths(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"b.json", "a.jsonl", "sub/c.txt", ".hidden.json", "README.md"} {
		p := filepath.Join(dir, n)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("[]"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pqDir := filepath.Join(dir, "hub")
	for _, n := range []string{"data/train-00001-of-00002.parquet", "data/train-00000-of-00002.parquet", "dataset_info.json"} {
		p := filepath.Join(pqDir, n)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, nil, 0o644)
	}
	tests := []struct {
		name  string
		paths []string
		want  []string
	}{
		{"dir", []string{filepath.Join(dir, "sub"), dir + "/b.json"}, []string{"sub/c.txt", "b.json"}},
		{"glob", []string{dir + "/*.json*"}, []string{"a.jsonl", "b.json"}},
		{"parquet dir", []string{pqDir}, []string{"hub/data/train-00000-of-00002.parquet", "hub/data/train-00001-of-00002.parquet"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolvePaths(tc.paths)
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				got[i], _ = filepath.Rel(dir, got[i])
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ResolvePaths = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	need(t, alpacaPQ)
	pq, err := os.ReadFile(alpacaPQ)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, body []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	corrupt := bytes.Clone(pq)
	for i := len(pq) / 4; i < len(pq)/2; i += 7 {
		corrupt[i] ^= 0x5a
	}
	badStr := "bad \xff\xfe text"
	badPQ := func() string {
		rows := testRows(3)
		rows[2].Text = badStr
		return writeParquet(t, rows, parquet.Compression(&parquet.Snappy), 2)
	}()
	tests := []struct {
		name  string
		paths []string
		want  []string // substrings of the error
		is    error
	}{
		{"truncated parquet", []string{write("trunc.parquet", pq[:len(pq)/2])}, []string{"trunc.parquet", "parquet"}, nil},
		{"corrupt parquet", []string{write("corrupt.parquet", corrupt)}, []string{"corrupt.parquet"}, nil},
		{"not parquet", []string{write("text.parquet", []byte("hello, not parquet at all"))}, []string{"text.parquet", "parquet"}, nil},
		{"non-UTF-8 text", []string{write("latin1.txt", []byte("caf\xe9 au lait"))}, []string{"latin1.txt", "invalid UTF-8 at byte 3"}, nil},
		{"non-UTF-8 parquet", []string{badPQ}, []string{"row 2", `column "text"`, "invalid UTF-8"}, nil},
		{"json object", []string{write("obj.json", []byte(`{"text": "x"}`))}, []string{"obj.json", "JSON array"}, nil},
		{"json number rows", []string{write("nums.json", []byte(`[1, 2]`))}, []string{"nums.json", "element 0", "a number"}, nil},
		{"json empty", []string{write("empty.json", nil)}, []string{"empty.json", "the file is empty"}, nil},
		{"json truncated", []string{write("cut.json", []byte("[{\"text\": \"a\"},\n{\"text\""))}, []string{"cut.json", "ends at byte 23", "truncated"}, nil},
		{"json syntax", []string{write("syntax.json", []byte("[{\"text\": \"a\"},\n{\"text\" \"b\"}]"))}, []string{"syntax.json", "line 2, column 9"}, nil},
		{"jsonl bad line", []string{write("bad.jsonl", []byte("{\"a\":1}\n{oops}\n"))}, []string{"bad.jsonl", "line 2"}, nil},
		{"missing file", []string{filepath.Join(dir, "nope.parquet")}, []string{"nope.parquet"}, os.ErrNotExist},
		{"hub wikitext2", []string{"wikitext2"}, []string{"wikitext2", "Hub", "pass"}, ErrHubDataset},
		{"hub c4", []string{"c4"}, []string{"allenai/c4"}, ErrHubDataset},
		{"hub open-instruct", []string{"open-instruct"}, []string{"VMware/open-instruct"}, ErrHubDataset},
		{"hub repo id", []string{"VMware/open-instruct"}, []string{"huggingface-cli download --repo-type dataset VMware/open-instruct"}, ErrHubDataset},
		{"empty glob", []string{dir + "/*.nothing"}, []string{"matches no files"}, nil},
		{"no paths", nil, []string{"no dataset"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadRecords(tc.paths, "")
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
		})
	}
}

// TestReadGzip: gzip-compressed JSON, JSONL and text files are read as their
// uncompressed form, as the Hub ships allenai/c4 (en/c4-train.00000-of-01024.json.gz,
// JSON Lines under a .json name, the shard AutoGPTQ and GPTQModel calibrate on),
// and a directory holding them gives them.
func TestReadGzip(t *testing.T) {
	dir := t.TempDir()
	gz := func(name, body string) string {
		t.Helper()
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write([]byte(body))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c4 := "{\"text\":\"one\",\"timestamp\":\"2019-04-25T12:57:54Z\",\"url\":\"https://a\"}\n{\"text\":\"two\",\"timestamp\":\"2019-04-25T12:57:55Z\",\"url\":\"https://b\"}\n"
	tests := []struct {
		name, path, format string
		want               []string
	}{
		{"c4 shard", gz("c4/en/c4-train.00000-of-01024.json.gz", c4), "", []string{"one", "two"}},
		{"jsonl.gz", gz("b.jsonl.gz", c4), "", []string{"one", "two"}},
		{"json array", gz("c.json.gz", `[{"text": "x"}, "y"]`), "", []string{"x", "y"}},
		{"text", gz("d.txt.gz", "whole file"), "", []string{"whole file"}},
		{"forced paragraphs", gz("e.gz", "a\n\nb"), FormatParagraphs, []string{"a", "b"}},
		{"c4 directory", filepath.Join(dir, "c4"), "", []string{"one", "two"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := ReadRecords([]string{tc.path}, tc.format)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range recs {
				got = append(got, fmt.Sprint(r.Fields["text"]))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("texts = %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("damaged", func(t *testing.T) {
		p := gz("f.jsonl.gz", c4)
		data, _ := os.ReadFile(p)
		os.WriteFile(p, data[:len(data)/2], 0o644)
		_, err := ReadFile(p, "")
		if err == nil || !strings.Contains(err.Error(), "f.jsonl.gz: gzip") {
			t.Fatalf("error = %v, want one naming the file and gzip", err)
		}
	})
}

// TestUnreadFormats: files of formats gptqtool does not read (CSV, Arrow,
// other compressions) are refused naming the file and what is read, where a
// CSV was calibrated on as plain text, header and commas included; forced
// --dataset-format text still reads one as text.
func TestUnreadFormats(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"train.csv", "train.tsv", "data-00000-of-00001.arrow", "a.jsonl.zst", "b.json.bz2"} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte("text,label\nhello,1\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadFile(p, "")
			if err == nil || !strings.Contains(err.Error(), name+": ") || !strings.Contains(err.Error(), "--dataset-format text") {
				t.Fatalf("error = %v, want one naming %s and --dataset-format text", err, name)
			}
			recs, err := ReadFile(p, FormatText)
			if err != nil || len(recs) != 1 {
				t.Fatalf("forced text: %d records, error %v; want 1 record", len(recs), err)
			}
		})
	}
}
